/*
 * ipmm_job.h: the spool format of a mail merge job, and its reader.
 *
 * A job is one ordinary spool file, queue/<mid>, so it is made durable by the
 * same committer as any message (one file, one fdatasync, however many
 * recipients). Its envelope has the line "kind ipmm-job" and no rcpt lines;
 * what follows the blank line is the job, written front to back while the
 * client sends it (nothing is ever rewritten):
 *
 *	mailgate-ipmm 1
 *	rcpt 0 3 <jane@company.com>		(RID, number of variables, address)
 *	first_name=Jane				(one "name=value" line per variable)
 *	color=red
 *	*PARTS=1,2
 *	rcpt 1 ...
 *	part 1					(then the part's octets, dot-unstuffed,
 *	<octets>				 exactly as received, then one LF)
 *	part 2
 *	<octets>
 *	index 2 2				(parts, recipients)
 *	part 1 <offset> <length>		(offsets from the first octet after the
 *	part 2 <offset> <length>		 envelope's blank line)
 *	ipmm-end 00000000000000000123		(the index's offset: fixed width, last)
 *
 * Values hold any octet but NUL, CR and LF (the XDFN parser refuses those), so
 * a value cannot end its line. A reader finds the index from the fixed-width
 * last line, reads the part table, then streams the recipients one at a time:
 * memory grows with one recipient's variables, never with the job.
 */
#ifndef MAILGATE_IPMM_JOB_H
#define MAILGATE_IPMM_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ipmm_syntax.h"

#define IPMM_JOB_KIND		"ipmm-job"
#define IPMM_JOB_MAGIC		"mailgate-ipmm 1\n"
#define IPMM_JOB_END_LEN	30		/* "ipmm-end " + 20 digits + LF */

struct ipmm_part {
	uint32_t n;
	uint64_t off;			/* from the start of the job body */
	uint64_t len;
};

/* the trailer of a job: the index lines and the fixed-width last line, into buf */
int ipmm_job_format_index(char *buf, size_t cap, const struct ipmm_part *, size_t n_parts,
    uint64_t n_rcpts, uint64_t index_off);

struct ipmm_job {
	FILE *f;			/* recipients, read in order */
	int fd;				/* parts, read with pread */
	long body;			/* where the job body starts in the file */
	uint64_t size;
	struct ipmm_part *parts;	/* sorted by number */
	size_t n_parts;
	uint64_t n_rcpts;
	uint64_t next_rid;		/* the next recipient ipmm_job_next() gives */
};

/* one recipient: vars point into buf; the last definition of a name wins */
struct ipmm_rcpt {
	uint64_t rid;
	char addr[260];
	struct ipmm_var *vars;
	size_t n_vars, cap_vars;
	char *buf;
	size_t buf_len, buf_cap;
};

/*
 * Open the job in path whose body starts at body and has size octets (from
 * the envelope): check the magic, read the index. 0, or -1 and why in err.
 */
int ipmm_job_open(struct ipmm_job *, const char *path, long body, uint64_t size, char *err,
    size_t errlen);
void ipmm_job_close(struct ipmm_job *);

/* the next recipient: 1, 0 after the last, -1 and why in err if the file is bad */
int ipmm_job_next(struct ipmm_job *, struct ipmm_rcpt *, char *err, size_t errlen);
void ipmm_rcpt_free(struct ipmm_rcpt *);

/* a recipient's variable, the last one defined (a '*' name matched in any case) */
const struct ipmm_var *ipmm_rcpt_var(const struct ipmm_rcpt *, const char *name, size_t len);

/* a part by number, or NULL */
const struct ipmm_part *ipmm_job_part(const struct ipmm_job *, uint32_t n);

#endif
