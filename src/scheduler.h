/*
 * scheduler.h: which recipient of which queued message is tried when, and where.
 *
 * The scheduler replays the spool at start (every committed message and its
 * state/<mid> record), then hears of each new message from the spool's commit
 * hook. It groups a message's due recipients by destination (route and domain)
 * into delivery batches (delivery.h), hands each to the agent for its target
 * (maildir and /dev/null here, SMTP through a function pointer), at most
 * delivery.max_connections batches at once and max_connections_per_destination
 * per destination, and records every outcome durably in the spool before it
 * counts: a crash repeats a delivery at worst, never loses one. Everything runs
 * on the event loop; the disk work is the spool's committer's and the agents'.
 */
#ifndef MAILGATE_SCHEDULER_H
#define MAILGATE_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "delivery.h"

struct config;
struct control;
struct delivery_conf;
struct event_base;
struct hoststats;
struct route_target;
struct sched;
struct spool;

/*
 * An agent for TARGET_HOST and TARGET_USEDNS batches (the outbound SMTP
 * client). 0: the batch is taken and its done() will be called on the loop,
 * later, exactly once. -1: not taken (the scheduler defers its recipients with
 * what the agent wrote into them, or "delivery agent refused" if nothing).
 */
typedef int (*sched_agent_fn)(void *ctx, struct delivery_batch *);

/* one recipient that bounced; strings valid during the hook's call only */
struct sched_bounce_rcpt {
	uint32_t rid;
	const char *address;		/* without <> */
	int code;			/* the reply code, 0 when no server answered */
	const char *enhanced;		/* "5.1.1" */
	const char *reply;		/* the reply text or our reason, printable ASCII */
	time_t last_attempt;
};

struct sched_bounce {
	uint64_t mid;			/* the bounced message */
	const char *path;		/* its queue file (still there during the call) */
	long data_offset;
	uint64_t size;
	const char *sender;		/* the DSN's recipient; never "" (no DSN to <>) */
	time_t arrival;
	uint64_t dcid;			/* the connection that got the answer, 0 if none */
	const struct route_target *target;	/* where it was tried; NULL for the operator's */
	const struct sched_bounce_rcpt *rcpts;
	size_t n_rcpts;
};

/*
 * Called on the loop for the recipients of a message that bounced in one go
 * (one batch's outcome, a lifetime run out, or `queue bounce`), when the
 * sender is not null, before the "bounced" lines are appended to the state
 * file. A DSN handed to spool_msg_commit() from inside the hook is committed
 * no later than those lines (spool.h), so a crash may repeat a DSN, not lose it.
 */
typedef void (*sched_bounce_fn)(void *ctx, const struct sched_bounce *);

/*
 * Replay the spool (blocking: call at start-up, after spool_open and before
 * the listeners accept) and install the spool's commit hook. Holds a
 * reference to cfg. NULL and why in err on failure.
 */
struct sched *sched_new(struct event_base *, struct spool *, struct config *, char *err,
    size_t errlen);

/*
 * After the loop has stopped, and after the SMTP agent has been freed (it must
 * drop its batches without calling done()). Batches in flight are dropped:
 * their recipients are tried again after a restart. Before spool_close().
 */
void sched_free(struct sched *);

/* a reloaded config: routes and limits from now on (batches in flight keep theirs) */
void sched_set_config(struct sched *, struct config *);

/*
 * The SMTP agent. NULL (until there is one): such recipients are deferred
 * with "no SMTP delivery yet", logged, in memory only (nothing was tried, so
 * nothing is recorded: on disk they stay queued), and bounce at max_lifetime.
 */
void sched_set_smtp_agent(struct sched *, sched_agent_fn, void *ctx);

/* the DSN generator; NULL: bounces are logged and recorded, no DSN is sent */
void sched_set_bounce(struct sched *, sched_bounce_fn, void *ctx);

/*
 * Register queue-delete, queue-bounce, queue-hold, queue-release (args
 * {"mids": [N, ...]}: every MID must be queued, or nothing is done) and
 * queue-deliver (args {"domain": "example.com"} or none). 0, or -1 with errno.
 */
int sched_register_control(struct sched *, struct control *);

/*
 * counters for `mailgate status`, a new object: since the start, messages and
 * recipients received (committed, DSNs apart), DSNs generated, recipients
 * delivered and bounced, deferrals; now, messages and recipients waiting, held
 * messages, batches at the agents
 */
json_t *sched_status(const struct sched *);

/* the counters that only grow, since the start (for rates) */
struct sched_counters {
	uint64_t messages_received, recipients_received, dsns_generated;
	uint64_t delivered, bounced, deferred;
};

void sched_counters(const struct sched *, struct sched_counters *);

/*
 * For `mailgate tophosts`: a new table (hoststats.h) with each recipient
 * domain's delivered, soft and hard bounced counts since the start and its
 * recipients in the queue now; the caller adds the connections and frees it.
 * NULL when out of memory.
 */
struct hoststats *sched_hoststats(const struct sched *);

/* seconds to wait after the attempts-th failed attempt: retry_initial doubling, up to retry_max */
unsigned sched_backoff(const struct delivery_conf *, unsigned attempts);

#endif
