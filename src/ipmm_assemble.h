/*
 * ipmm_assemble.h: one recipient's message of a mail merge job, streamed.
 *
 * The parts the recipient's *PARTS names, in that order (every part in
 * ascending order when it names none), each read from the job file through one
 * fixed buffer, with "&name;" replaced by the recipient's value of name and
 * "&*TO;", "&*FROM;", "&*DATE;" by the reserved values. A "&word;" that names
 * no variable, and any '&' that starts no "&name;", is passed on as it is
 * (HTML entities such as "&trade;" survive). Values are inserted as bytes and
 * never scanned again. Memory: one buffer and one name, whatever the sizes.
 */
#ifndef MAILGATE_IPMM_ASSEMBLE_H
#define MAILGATE_IPMM_ASSEMBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipmm_job.h"

/* receives output bytes; 0, or -1 to stop (write failed) */
typedef int (*ipmm_sink_fn)(void *arg, const char *buf, size_t len);

struct ipmm_subst {
	const struct ipmm_rcpt *rcpt;
	const char *to, *from, *date;		/* the reserved values */
	ipmm_sink_fn sink;
	void *arg;
	bool in_name;				/* after an '&', collecting a name */
	char name[IPMM_NAME_MAX + 2];		/* '&' and the name so far */
	size_t name_len;
	bool failed;
};

void ipmm_subst_init(struct ipmm_subst *, const struct ipmm_rcpt *, const char *to,
    const char *from, const char *date, ipmm_sink_fn, void *arg);
/* feed text of any split: the output is the same; -1 once the sink failed */
int ipmm_subst_feed(struct ipmm_subst *, const char *buf, size_t len);
/* the end of the text: a pending '&...' goes out as it is */
int ipmm_subst_end(struct ipmm_subst *);

/*
 * The whole message of r (to = r's address, from = the sender, date = the
 * RFC 5322 date to put for &*DATE;) to sink. 0, or -1 with why in err (the sink
 * failed, a read failed, or *PARTS names a part the job lacks).
 */
int ipmm_assemble(const struct ipmm_job *, const struct ipmm_rcpt *r, const char *from,
    const char *date, ipmm_sink_fn, void *arg, char *err, size_t errlen);

#endif
