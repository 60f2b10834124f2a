/*
 * delivery.h: the contract between the scheduler (which message goes where,
 * when) and the delivery agents that carry a batch out: the outbound SMTP client
 * (mta_session.c), local maildir, /dev/null. A batch is one message, some of its
 * recipients, and one route target. An agent fills in every recipient's outcome
 * and calls done() exactly once, on the event loop, never from inside the call
 * that handed it the batch. The scheduler alone writes the outcome to the spool.
 */
#ifndef MAILGATE_DELIVERY_H
#define MAILGATE_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct route_target;

enum delivery_status {
	DELIVERY_PENDING = 0,		/* not tried yet in this batch */
	DELIVERY_OK,			/* 2xx: done */
	DELIVERY_TEMPFAIL,		/* 4xx, connection failure, timeout: retry later */
	DELIVERY_PERMFAIL,		/* 5xx: bounce */
};

struct delivery_rcpt {
	uint32_t rid;			/* the recipient's index in its message (log RID) */
	const char *address;		/* without <> */
	enum delivery_status status;	/* out */
	int code;			/* out: the reply code (0 if none: connection error) */
	char enhanced[16];		/* out: "5.1.1" as the server gave it, or ours */
	char reply[512];		/* out: the server's reply text, or our reason (escaped) */
};

struct delivery_batch {
	uint64_t mid;
	const char *path;		/* the queue file */
	long data_offset;		/* where the message starts in it */
	uint64_t size;			/* octets of the message */
	const char *sender;		/* without <>; "" for the null sender */
	const char *domain;		/* the recipients' domain (all the same in a batch) */
	const struct route_target *target;
	struct delivery_rcpt *rcpts;
	size_t n_rcpts;
	uint64_t dcid;			/* out: the delivery connection that carried it, 0 if none */
	void (*done)(struct delivery_batch *, void *arg);
	void *arg;
};

#endif
