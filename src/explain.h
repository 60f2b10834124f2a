/*
 * explain.h: what an SMTP reply means, for `mailgate explain` and `mailgate probe`.
 *
 * explain_lookup() takes a reply or a piece of one ("452 #4.5.3", "5.7.1",
 * "Line too long", "421 Too many connections from your host", a whole reply line
 * from some server) and finds what it means: first in mailgate's own reply table
 * (smtp_reply_table, the one source of its texts and explanations), then in a
 * table of what other servers commonly send (RFC 5321 codes, RFC 3463 enhanced
 * codes). It never allocates and keeps no state; the matches point into the tables.
 */
#ifndef MAILGATE_EXPLAIN_H
#define MAILGATE_EXPLAIN_H

#include <stddef.h>

#include "smtp_reply.h"

struct config;

enum explain_kind {
	EXPLAIN_MAILGATE,	/* an entry of smtp_reply_table */
	EXPLAIN_FOREIGN,	/* a reply other servers commonly send: code and enhanced code */
	EXPLAIN_RFC,		/* only the RFC 5321 code and/or RFC 3463 enhanced code known */
};

struct explain_match {
	enum explain_kind kind;
	const struct smtp_reply_def *reply;	/* EXPLAIN_MAILGATE, else NULL */
	int code;				/* 0 when not known */
	char enh[16];				/* "5.1.1", "4.x.2", "" when none */
	const char *why;			/* what happened; never NULL */
	const char *setting;			/* EXPLAIN_MAILGATE: the setting(s), or NULL */
	const char *advice;			/* what the sending side should do; never NULL */
};

/* enough for every match of any query */
#define EXPLAIN_MAX	(RPL__COUNT + 64)

/*
 * The matches of query, best first, into out[0 .. cap). Returns how many were
 * found (may exceed cap; only cap are written); 0 = nothing known.
 */
size_t explain_lookup(const char *query, struct explain_match *out, size_t cap);

/*
 * The RFC 3463 meaning of an enhanced code such as "5.7.1": "permanent failure;
 * security or policy: delivery not authorized, message refused". Empty when enh
 * is not one.
 */
void explain_enhanced(const char *enh, char *buf, size_t cap);

/* the "code enh" a match stands for, e.g. "550 5.1.1" or "452 #4.5.3" */
void explain_label(const struct explain_match *, char *buf, size_t cap);

/*
 * `mailgate explain [-c FILE] REPLY...`: argv[0] is "explain"; cfg (may be NULL)
 * is the config whose current values are shown next to each setting.
 * --help prints the usage. Returns the exit status: 0 explained, 1 nothing
 * known, 2 usage.
 */
int explain_main(int argc, char **argv, const struct config *cfg);

#endif
