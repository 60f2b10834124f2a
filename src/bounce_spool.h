/*
 * bounce_spool.h: the scheduler's bounce hook. Turns the bounced recipients of a
 * message into an RFC 3464 DSN (bounce.c) and commits it to the spool as a new
 * message from the null sender to the original sender, which the scheduler then
 * delivers like any other.
 */
#ifndef MAILGATE_BOUNCE_SPOOL_H
#define MAILGATE_BOUNCE_SPOOL_H

struct sched_bounce;

/* the envelope's listener of a DSN: how the queue tells it from received mail */
#define BOUNCE_SPOOL_LISTENER	"(bounce)"

/* ctx is the struct server */
void bounce_spool_hook(void *ctx, const struct sched_bounce *);

#endif
