/*
 * ipmm_split.c: the mail merge splitter (see ipmm_split.h).
 *
 * Two threads. The worker takes one job at a time: it reads the envelope and
 * the state file, then streams the recipients, and for each one not yet split
 * takes a MID from the pool, builds the message in tmp/ (spool_msg_begin and
 * write, which a thread may do for a message it alone holds) and hands it to
 * the loop. The loop appends the intent line, commits the message once that
 * is durable, logs the split, appends the done line (each append once per
 * batch and job), and refills the MID pool: the pool plus the messages not yet recorded
 * never exceed SPLIT_WINDOW, which bounds memory and keeps the worker from
 * running ahead of the disk. Nothing here blocks the loop: no file is read or
 * synced on it.
 */
#include "ipmm_split.h"

#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ipmm_assemble.h"
#include "ipmm_job.h"
#include "maillog.h"
#include "spool.h"
#include "util.h"

#define SPLIT_WINDOW		128		/* MIDs in the pool plus messages not yet recorded */
/* the reason of an intent line: "rid N deferred <when> 0 000 4.0.0 splitting into MID M" */
#define SPLIT_INTENT		"000 4.0.0 splitting into MID "
#define SPLIT_RETRY_SECS	30		/* a job whose split failed (a full disk) is tried again */

/* state lines not yet handed to the spool, and the messages they are about */
struct split_lines {
	char *buf;
	size_t len, cap;
	TAILQ_HEAD(split_itemq, split_item) items;
};

struct split_job {
	TAILQ_ENTRY(split_job) entry;		/* the worker's queue (mu) */
	TAILQ_ENTRY(split_job) all;		/* every job (loop) */
	struct ipmm_split *sp;
	uint64_t mid;
	uint64_t size;				/* the job's octets, from the worker's end */
	unsigned outstanding;			/* messages built, not yet recorded */
	bool queued;				/* with the worker */
	bool worker_done;
	bool failed, permanent;
	char why[256];
	struct event *ev_retry;
	struct split_lines intent;		/* "splitting RID into MID", before the commit */
	struct split_lines done;		/* "split into MID", after it */
	bool rec_scheduled;			/* lines wait for split_record_cb */
};

enum item_kind { ITEM_MSG, ITEM_END };

struct split_item {
	TAILQ_ENTRY(split_item) entry;
	TAILQ_ENTRY(split_item) rec;		/* in a job's or a record's list */
	enum item_kind kind;
	struct split_job *job;
	uint64_t rid, mid;
	struct spool_msg *msg;			/* NULL: building it failed */
	uint64_t size;				/* ITEM_END */
	uint64_t n_done, n_made;		/* ITEM_END: RIDs found split before, made before */
	bool failed, permanent;
	char why[256];
};

TAILQ_HEAD(split_jobq, split_job);

/* one append of progress lines, for many messages of one job */
struct split_record {
	TAILQ_ENTRY(split_record) entry;	/* in flight (loop) */
	bool intent;				/* intent lines, else done lines */
	struct split_job *job;
	struct split_itemq items;
};

struct ipmm_commit {
	TAILQ_ENTRY(ipmm_commit) entry;
	struct ipmm_split *sp;
	uint64_t mid;
	void (*done)(void *, int);
	void *arg;
};

struct ipmm_split {
	struct event_base *base;
	struct spool *spool;
	char *dir;
	char *hostname;
	struct event *ev_done;			/* the worker left items */
	struct event *ev_refill;		/* no MID was free: try again shortly */
	struct event *ev_record;		/* progress lines wait: append them */

	/* loop only */
	struct split_jobq all;
	struct split_itemq busy;		/* items being committed or recorded */
	TAILQ_HEAD(, ipmm_commit) commits;
	TAILQ_HEAD(, split_record) records;	/* appends in flight */
	unsigned inflight;			/* MIDs handed out, not yet recorded or burnt */
	unsigned active;			/* jobs not finished */

	pthread_t thread;
	bool started;
	pthread_mutex_t mu;			/* guards what follows */
	pthread_cond_t cv;
	bool stop;
	struct split_jobq queue;		/* loop -> worker */
	uint64_t pool[SPLIT_WINDOW];		/* loop -> worker: MIDs */
	size_t pool_n;
	struct split_itemq done;		/* worker -> loop */
};

static void split_refill(struct ipmm_split *);
static void split_settle(struct split_job *);

/* ---------------------------------------------------------------- the worker */

static void
split_push(struct ipmm_split *sp, struct split_item *it)
{
	pthread_mutex_lock(&sp->mu);
	TAILQ_INSERT_TAIL(&sp->done, it, entry);
	pthread_mutex_unlock(&sp->mu);
	event_active(sp->ev_done, EV_READ, 0);
}

static void
split_end(struct ipmm_split *sp, struct split_job *job, struct split_item *it, uint64_t size,
    bool failed, bool permanent, const char *why)
{
	it->kind = ITEM_END;
	it->job = job;
	it->size = size;
	it->failed = failed;
	it->permanent = permanent;
	util_strlcpy(it->why, why ? why : "", sizeof(it->why));
	split_push(sp, it);
}

/* a MID from the loop's pool; 0 when stopping */
static uint64_t
split_take_mid(struct ipmm_split *sp)
{
	uint64_t mid = 0;

	pthread_mutex_lock(&sp->mu);
	while (!sp->stop && sp->pool_n == 0)
		pthread_cond_wait(&sp->cv, &sp->mu);
	if (!sp->stop) {
		/* oldest first: a job's messages get increasing MIDs in RID order */
		mid = sp->pool[0];
		memmove(sp->pool, sp->pool + 1, --sp->pool_n * sizeof(sp->pool[0]));
	}
	pthread_mutex_unlock(&sp->mu);
	return mid;
}

static int
split_sink(void *arg, const char *buf, size_t len)
{
	return spool_msg_write(arg, buf, len);
}

/* one recipient's message in tmp/: our Received: header, then the assembled parts */
static struct spool_msg *
split_build(struct ipmm_split *sp, const struct spool_entry *e, const struct ipmm_job *j,
    const struct ipmm_rcpt *r, uint64_t mid, char *err, size_t errlen)
{
	struct spool_envelope env;
	struct spool_msg *m;
	const char *rcpts[1] = { r->addr };
	char date[64], hdr[1024];
	time_t now = time(NULL);
	int n;

	memset(&env, 0, sizeof(env));
	env.mid = mid;
	env.arrival = now;
	env.icid = e->icid;
	env.listener = e->listener;
	env.client = e->client;
	env.helo = e->helo;
	env.sender = e->sender;
	env.body = e->body;
	env.rcpts = rcpts;
	env.n_rcpts = 1;
	if ((m = spool_msg_begin(sp->spool, &env)) == NULL) {
		snprintf(err, errlen, "spool: %s", strerror(errno));
		return NULL;
	}
	util_rfc5322_date(date, sizeof(date), now);
	n = snprintf(hdr, sizeof(hdr),
	    "Received: from %s ([%s%s])\r\n"
	    "\tby %s (mailgate) with ESMTP id %" PRIu64 " (ICID %" PRIu64 ")\r\n"
	    "\tfor <%s>;\r\n"
	    "\t%s\r\n",
	    e->helo && e->helo[0] ? e->helo : "unknown",
	    e->client && strchr(e->client, ':') ? "IPv6:" : "", e->client ? e->client : "",
	    sp->hostname, mid, e->icid, r->addr, date);
	if (n < 0 || (size_t)n >= sizeof(hdr) || spool_msg_write(m, hdr, (size_t)n) == -1) {
		snprintf(err, errlen, "spool: %s", strerror(n < 0 || (size_t)n >= sizeof(hdr) ?
		    EOVERFLOW : errno));
		spool_msg_abort(m);
		return NULL;
	}
	if (ipmm_assemble(j, r, e->sender, date, split_sink, m, err, errlen) == -1) {
		spool_msg_abort(m);
		return NULL;
	}
	return m;
}

/*
 * An intent line whose message is in queue/: it was committed before a crash
 * and not yet delivered (a delivered one was removed only after its done line
 * was durable: the done line is queued before the delivery's own lines).
 */
static bool
split_made(struct ipmm_split *sp, const struct spool_rcpt_status *rs)
{
	char path[4096];
	uint64_t mid;
	char *end;

	if (rs->state != SPOOL_RCPT_DEFERRED || rs->reason == NULL ||
	    strncmp(rs->reason, SPLIT_INTENT, strlen(SPLIT_INTENT)) != 0)
		return false;
	errno = 0;
	mid = strtoull(rs->reason + strlen(SPLIT_INTENT), &end, 10);
	if (errno != 0 || mid == 0 || *end != '\0')
		return false;
	snprintf(path, sizeof(path), "%s/queue/%" PRIu64, sp->dir, mid);
	return access(path, F_OK) == 0;
}

static void
split_run(struct ipmm_split *sp, struct split_job *job)
{
	struct spool_entry e;
	struct spool_state st;
	struct ipmm_job j;
	struct ipmm_rcpt r;
	struct split_item *end;
	char path[4096], err[256];
	int got;

	/* the end item is allocated first: the loop must always hear how the run ended */
	while ((end = calloc(1, sizeof(*end))) == NULL) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);		/* out of memory: wait, never lose the job */
	}
	snprintf(path, sizeof(path), "%s/queue/%" PRIu64, sp->dir, job->mid);
	if (spool_entry_read(path, &e, err, sizeof(err)) == -1) {
		split_end(sp, job, end, 0, true, true, err);
		return;
	}
	if (ipmm_job_open(&j, path, e.data_offset, e.size, err, sizeof(err)) == -1) {
		split_end(sp, job, end, e.size, true, true, err);
		spool_entry_free(&e);
		return;
	}
	if (spool_state_read(sp->dir, job->mid, j.n_rcpts, &st, err, sizeof(err)) == -1) {
		split_end(sp, job, end, e.size, true, false, err);
		ipmm_job_close(&j);
		spool_entry_free(&e);
		return;
	}
	memset(&r, 0, sizeof(r));
	err[0] = '\0';
	while ((got = ipmm_job_next(&j, &r, err, sizeof(err))) == 1) {
		struct split_item *it;
		enum spool_rcpt_state rs = st.rcpts[r.rid].state;

		if (rs == SPOOL_RCPT_DELIVERED || rs == SPOOL_RCPT_BOUNCED) {
			end->n_done++;		/* split before a restart */
			continue;
		}
		if (split_made(sp, &st.rcpts[r.rid])) {
			end->n_made++;		/* committed, its done line lost in a crash */
			continue;
		}
		if ((it = calloc(1, sizeof(*it))) == NULL) {
			snprintf(err, sizeof(err), "out of memory");
			got = -2;
			break;
		}
		if ((it->mid = split_take_mid(sp)) == 0) {
			free(it);
			snprintf(err, sizeof(err), "stopping");
			got = -2;
			break;
		}
		it->kind = ITEM_MSG;
		it->job = job;
		it->rid = r.rid;
		it->msg = split_build(sp, &e, &j, &r, it->mid, it->why, sizeof(it->why));
		uint64_t mid = it->mid;
		bool built = it->msg != NULL;
		split_push(sp, it);		/* the loop's from here on: not touched again */
		if (!built) {
			/* the loop burns the MID; the run stops and is tried again later */
			snprintf(err, sizeof(err), "MID %" PRIu64 " not built", mid);
			got = -2;
			break;
		}
	}
	/* -1: the file is bad (permanent); -2: something passing */
	split_end(sp, job, end, e.size, got != 0, got == -1, err);
	ipmm_rcpt_free(&r);
	spool_state_free(&st);
	ipmm_job_close(&j);
	spool_entry_free(&e);
}

static void *
split_worker(void *arg)
{
	struct ipmm_split *sp = arg;
	struct split_job *job;

	pthread_mutex_lock(&sp->mu);
	for (;;) {
		while (!sp->stop && TAILQ_EMPTY(&sp->queue))
			pthread_cond_wait(&sp->cv, &sp->mu);
		if (sp->stop)
			break;
		job = TAILQ_FIRST(&sp->queue);
		TAILQ_REMOVE(&sp->queue, job, entry);
		pthread_mutex_unlock(&sp->mu);
		split_run(sp, job);
		pthread_mutex_lock(&sp->mu);
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

/* ---------------------------------------------------------------- the loop */

static void
split_job_free(struct split_job *job)
{
	TAILQ_REMOVE(&job->sp->all, job, all);
	if (job->ev_retry != NULL)
		event_free(job->ev_retry);
	free(job->intent.buf);
	free(job->done.buf);
	free(job);
}

static void
split_queue(struct split_job *job)
{
	struct ipmm_split *sp = job->sp;

	job->queued = true;
	job->worker_done = false;
	job->failed = false;
	job->why[0] = '\0';
	pthread_mutex_lock(&sp->mu);
	TAILQ_INSERT_TAIL(&sp->queue, job, entry);
	pthread_cond_broadcast(&sp->cv);
	pthread_mutex_unlock(&sp->mu);
	split_refill(sp);
}

static void
split_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	split_queue(arg);
}

static struct split_job *
split_job_new(struct ipmm_split *sp, uint64_t mid)
{
	struct split_job *job;

	if ((job = calloc(1, sizeof(*job))) == NULL)
		return NULL;
	TAILQ_INIT(&job->intent.items);
	TAILQ_INIT(&job->done.items);
	job->sp = sp;
	job->mid = mid;
	if ((job->ev_retry = evtimer_new(sp->base, split_retry_cb, job)) == NULL) {
		free(job);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&sp->all, job, all);
	sp->active++;
	return job;
}

static void
split_removed(void *arg, int err)
{
	struct log_ids ids = { .mid = (uint64_t)(uintptr_t)arg, .rid = -1 };

	if (err != 0)
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " removing the split job failed: %s",
		    ids.mid, strerror(err));
}

/* the run is over and every message it built is recorded: finish, or try again */
static void
split_settle(struct split_job *job)
{
	struct ipmm_split *sp = job->sp;
	struct log_ids ids = { .mid = job->mid, .rid = -1 };

	if (!job->worker_done || job->outstanding > 0)
		return;
	job->queued = false;
	if (job->failed) {
		if (job->permanent) {
			maillog(LOG_CRITICAL, &ids, "MID %" PRIu64 " mail merge job cannot be split: "
			    "%s (left in the queue)", job->mid, job->why);
			sp->active--;
			split_job_free(job);
			return;
		}
		struct timeval tv = { SPLIT_RETRY_SECS, 0 };
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " mail merge split interrupted: %s "
		    "(resumed in %ds)", job->mid, job->why, SPLIT_RETRY_SECS);
		evtimer_add(job->ev_retry, &tv);
		return;
	}
	/* every recipient's line is durable: the job may go */
	if (spool_remove(sp->spool, job->mid, job->size, split_removed,
	    (void *)(uintptr_t)job->mid) == -1)
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " removing the split job failed: %s "
		    "(removed at the next start)", job->mid, strerror(errno));
	maillog(LOG_INFO, &ids, "Message finished MID %" PRIu64 " done", job->mid);
	sp->active--;
	split_job_free(job);
}

static void
split_fail(struct split_job *job, const char *why)
{
	if (!job->failed)
		util_strlcpy(job->why, why, sizeof(job->why));
	job->failed = true;
}

static void
split_item_gone(struct ipmm_split *sp, struct split_item *it)
{
	struct split_job *job = it->job;

	TAILQ_REMOVE(&sp->busy, it, entry);
	job->outstanding--;
	sp->inflight--;
	free(it);
	split_settle(job);
	split_refill(sp);
}

static void split_committed(void *, int);

/* a state line about one message into a job's batch of lines; -1 if no memory */
static int
split_line(struct split_job *job, struct split_lines *l, struct split_item *it,
    enum spool_rcpt_state st, unsigned attempts, const char *reason)
{
	char line[160];
	int n;

	n = spool_state_format(line, sizeof(line), (uint32_t)it->rid, st, time(NULL), attempts,
	    reason);
	if (n < 0)
		return -1;
	if (l->len + (size_t)n > l->cap) {
		size_t cap = (l->len + (size_t)n) * 2;
		char *g = realloc(l->buf, cap);
		if (g == NULL)
			return -1;
		l->buf = g;
		l->cap = cap;
	}
	memcpy(l->buf + l->len, line, (size_t)n);
	l->len += (size_t)n;
	TAILQ_INSERT_TAIL(&l->items, it, rec);
	if (!job->rec_scheduled) {
		job->rec_scheduled = true;
		event_active(job->sp->ev_record, EV_READ, 0);
	}
	return 0;
}

/* the message can no longer become part of the job's progress */
static void
split_drop(struct ipmm_split *sp, struct split_item *it)
{
	if (it->msg != NULL) {
		spool_msg_abort(it->msg);
		it->msg = NULL;
	}
	split_item_gone(sp, it);
}

/*
 * The lines of one append are durable (or not). Intent lines ("this RID is
 * being split into this MID"): now the messages may be committed. Done lines:
 * their messages count as split.
 */
static void
split_recorded(void *arg, int err)
{
	struct split_record *rec = arg;
	struct split_job *job = rec->job;
	struct ipmm_split *sp = job->sp;
	struct split_item *it;

	TAILQ_REMOVE(&sp->records, rec, entry);
	if (err != 0)
		split_fail(job, strerror(err));
	/* the job stays while it has outstanding messages: settle runs after the last */
	while ((it = TAILQ_FIRST(&rec->items)) != NULL) {
		TAILQ_REMOVE(&rec->items, it, rec);
		if (rec->intent && err == 0) {
			spool_msg_commit(it->msg, split_committed, it);
			it->msg = NULL;
		} else
			split_drop(sp, it);
	}
	free(rec);
}

/* one append of a job's waiting lines; false (the items dropped) if it cannot be queued */
static void
split_flush(struct split_job *job, struct split_lines *l, bool intent)
{
	struct ipmm_split *sp = job->sp;
	struct split_record *rec;
	struct split_item *it;

	if (l->len == 0)
		return;
	if ((rec = calloc(1, sizeof(*rec))) != NULL) {
		rec->job = job;
		rec->intent = intent;
		TAILQ_INIT(&rec->items);
		TAILQ_CONCAT(&rec->items, &l->items, rec);
		if (spool_state_append(sp->spool, job->mid, l->buf, l->len, true, split_recorded,
		    rec) == 0) {
			TAILQ_INSERT_TAIL(&sp->records, rec, entry);
			l->len = 0;
			return;
		}
		TAILQ_CONCAT(&l->items, &rec->items, rec);
		free(rec);
	}
	l->len = 0;
	split_fail(job, "cannot record the split");
	while ((it = TAILQ_FIRST(&l->items)) != NULL) {
		TAILQ_REMOVE(&l->items, it, rec);
		split_drop(sp, it);
	}
}

/*
 * Once per loop turn: every job's waiting lines in one append each, so a batch
 * of split messages costs two fdatasyncs of the job's state file, not two each.
 */
static void
split_record_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipmm_split *sp = arg;
	struct split_job *job, *next;

	(void)fd;
	(void)what;
	for (job = TAILQ_FIRST(&sp->all); job != NULL; job = next) {
		next = TAILQ_NEXT(job, all);
		if (!job->rec_scheduled)
			continue;
		job->rec_scheduled = false;
		/* the job is not freed here: its items are outstanding until dropped last */
		split_flush(job, &job->done, false);
		split_flush(job, &job->intent, true);
	}
}

static void
split_committed(void *arg, int err)
{
	struct split_item *it = arg;
	struct split_job *job = it->job;
	struct ipmm_split *sp = job->sp;
	struct log_ids ids = { .mid = it->mid, .rid = -1 };
	char reason[64];

	if (err != 0) {
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " split from MID %" PRIu64 " not "
		    "committed: %s", it->mid, job->mid, strerror(err));
		split_fail(job, strerror(err));
		split_item_gone(sp, it);
		return;
	}
	maillog(LOG_INFO, &ids, "MID %" PRIu64 " was split creating MID %" PRIu64, job->mid,
	    it->mid);
	snprintf(reason, sizeof(reason), "250 2.0.0 split into MID %" PRIu64, it->mid);
	if (split_line(job, &job->done, it, SPOOL_RCPT_DELIVERED, 1, reason) == -1) {
		split_fail(job, "cannot record the split");
		split_item_gone(sp, it);
	}
}

static void
split_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipmm_split *sp = arg;
	struct split_itemq q;
	struct split_item *it;

	(void)fd;
	(void)what;
	TAILQ_INIT(&q);
	pthread_mutex_lock(&sp->mu);
	TAILQ_CONCAT(&q, &sp->done, entry);
	pthread_mutex_unlock(&sp->mu);
	while ((it = TAILQ_FIRST(&q)) != NULL) {
		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses the list's links (a known false positive on sys/queue.h) */
		struct split_job *job = it->job;

		TAILQ_REMOVE(&q, it, entry);
		if (it->kind == ITEM_END) {
			if (it->n_done > 0 || it->n_made > 0) {
				struct log_ids ids = { .mid = job->mid, .rid = -1 };
				maillog(LOG_INFO, &ids, "MID %" PRIu64 " mail merge split resumed: %"
				    PRIu64 " recipients split before, %" PRIu64 " more whose message "
				    "was already in the queue", job->mid, it->n_done, it->n_made);
			}
			job->worker_done = true;
			job->size = it->size;
			if (it->failed) {
				split_fail(job, it->why);
				job->permanent = it->permanent;
			}
			free(it);
			split_settle(job);
			continue;
		}
		job->outstanding++;
		TAILQ_INSERT_TAIL(&sp->busy, it, entry);
		if (it->msg == NULL) {
			struct log_ids ids = { .mid = job->mid, .rid = -1 };
			maillog(LOG_WARNING, &ids, "MID %" PRIu64 " RID %" PRIu64 " not split: %s",
			    job->mid, it->rid, it->why);
			split_fail(job, it->why);
			split_item_gone(sp, it);
			continue;
		}
		/* the intent first: after a crash, queue/<MID> tells whether it was made */
		char reason[64];
		snprintf(reason, sizeof(reason), SPLIT_INTENT "%" PRIu64, it->mid);
		if (split_line(job, &job->intent, it, SPOOL_RCPT_DEFERRED, 0, reason) == -1) {
			split_fail(job, "cannot record the split");
			split_drop(sp, it);
		}
	}
	split_refill(sp);
}

static void
split_refill_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	split_refill(arg);
}

/* MIDs for the worker, while there is work and room in the window */
static void
split_refill(struct ipmm_split *sp)
{
	uint64_t mid;

	while (sp->active > 0 && sp->inflight < SPLIT_WINDOW) {
		if ((mid = spool_next_mid(sp->spool)) == 0) {
			/* the next block is being reserved by the committer */
			struct timeval tv = { 0, 20 * 1000 };
			evtimer_add(sp->ev_refill, &tv);
			return;
		}
		pthread_mutex_lock(&sp->mu);
		sp->pool[sp->pool_n++] = mid;
		pthread_cond_broadcast(&sp->cv);
		pthread_mutex_unlock(&sp->mu);
		sp->inflight++;
	}
}

static void
split_add(struct ipmm_split *sp, uint64_t mid)
{
	struct split_job *job;
	struct log_ids ids = { .mid = mid, .rid = -1 };

	if ((job = split_job_new(sp, mid)) == NULL) {
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " mail merge job not split: out of "
		    "memory (it is, at the next start)", mid);
		return;
	}
	split_queue(job);
}

static void
split_commit_cb(void *arg, int err)
{
	struct ipmm_commit *c = arg;

	TAILQ_REMOVE(&c->sp->commits, c, entry);
	if (err == 0)
		split_add(c->sp, c->mid);
	if (c->done != NULL)
		c->done(c->arg, err);
	free(c);
}

struct ipmm_commit *
ipmm_split_commit(struct ipmm_split *sp, struct spool_msg *m, uint64_t mid,
    void (*done)(void *, int), void *arg)
{
	struct ipmm_commit *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		spool_msg_abort(m);
		return NULL;
	}
	c->sp = sp;
	c->mid = mid;
	c->done = done;
	c->arg = arg;
	TAILQ_INSERT_TAIL(&sp->commits, c, entry);
	spool_msg_commit(m, split_commit_cb, c);
	return c;
}

void
ipmm_split_forget(struct ipmm_commit *c)
{
	c->done = NULL;
	c->arg = NULL;
}

/* start-up: a job found in queue/ */
static int
split_replay_one(const struct spool_entry *e, void *arg)
{
	struct ipmm_split *sp = arg;
	struct spool_state st;
	struct ipmm_job j;
	char err[256];
	struct log_ids ids = { .mid = e->mid, .rid = -1 };

	if (e->kind == NULL || strcmp(e->kind, IPMM_JOB_KIND) != 0)
		return 0;
	/* cut a torn last line now, before any append can glue onto it */
	if (ipmm_job_open(&j, e->path, e->data_offset, e->size, err, sizeof(err)) == 0) {
		if (spool_state_recover(sp->spool, e->mid, j.n_rcpts, &st, err, sizeof(err)) == 0)
			spool_state_free(&st);
		ipmm_job_close(&j);
	}
	maillog(LOG_INFO, &ids, "MID %" PRIu64 " mail merge job found at start: splitting",
	    e->mid);
	split_add(sp, e->mid);
	return 0;
}

struct ipmm_split *
ipmm_split_new(struct event_base *base, struct spool *spool, const char *spooldir,
    const char *hostname, char *err, size_t errlen)
{
	struct ipmm_split *sp;
	char why[512];
	int r;

	if ((sp = calloc(1, sizeof(*sp))) == NULL) {
		snprintf(err, errlen, "mail merge: out of memory");
		return NULL;
	}
	sp->base = base;
	sp->spool = spool;
	TAILQ_INIT(&sp->all);
	TAILQ_INIT(&sp->busy);
	TAILQ_INIT(&sp->commits);
	TAILQ_INIT(&sp->records);
	TAILQ_INIT(&sp->queue);
	TAILQ_INIT(&sp->done);
	pthread_mutex_init(&sp->mu, NULL);
	pthread_cond_init(&sp->cv, NULL);
	if ((sp->dir = strdup(spooldir)) == NULL || (sp->hostname = strdup(hostname)) == NULL ||
	    (sp->ev_done = event_new(base, -1, 0, split_done_cb, sp)) == NULL ||
	    (sp->ev_refill = evtimer_new(base, split_refill_cb, sp)) == NULL ||
	    (sp->ev_record = event_new(base, -1, 0, split_record_cb, sp)) == NULL) {
		snprintf(err, errlen, "mail merge: out of memory");
		ipmm_split_free(sp);
		return NULL;
	}
	if ((r = pthread_create(&sp->thread, NULL, split_worker, sp)) != 0) {
		snprintf(err, errlen, "mail merge: thread: %s", strerror(r));
		ipmm_split_free(sp);
		return NULL;
	}
	sp->started = true;
	if (spool_scan(spooldir, split_replay_one, sp, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "mail merge: %s", why);
		ipmm_split_free(sp);
		return NULL;
	}
	return sp;
}

void
ipmm_split_free(struct ipmm_split *sp)
{
	struct split_item *it;
	struct ipmm_commit *c;
	struct split_job *job;

	if (sp == NULL)
		return;
	if (sp->started) {
		pthread_mutex_lock(&sp->mu);
		sp->stop = true;
		pthread_cond_broadcast(&sp->cv);
		pthread_mutex_unlock(&sp->mu);
		pthread_join(sp->thread, NULL);
	}
	/* built but never handed to the committer: not ours to keep */
	TAILQ_CONCAT(&sp->busy, &sp->done, entry);
	while ((it = TAILQ_FIRST(&sp->busy)) != NULL) {
		TAILQ_REMOVE(&sp->busy, it, entry);
		if (it->msg != NULL)
			spool_msg_abort(it->msg);
		free(it);
	}
	struct split_record *rec;
	while ((rec = TAILQ_FIRST(&sp->records)) != NULL) {
		TAILQ_REMOVE(&sp->records, rec, entry);
		free(rec);
	}
	while ((c = TAILQ_FIRST(&sp->commits)) != NULL) {
		TAILQ_REMOVE(&sp->commits, c, entry);
		free(c);
	}
	while ((job = TAILQ_FIRST(&sp->all)) != NULL)
		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses the list's links (a known false positive on sys/queue.h) */
		split_job_free(job);
	if (sp->ev_done != NULL)
		event_free(sp->ev_done);
	if (sp->ev_refill != NULL)
		event_free(sp->ev_refill);
	if (sp->ev_record != NULL)
		event_free(sp->ev_record);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->cv);
	free(sp->dir);
	free(sp->hostname);
	free(sp);
}
