/*
 * scheduler.c: the delivery scheduler (see scheduler.h).
 *
 * State lives in three places: the spool (queue/<mid> and state/<mid>, the
 * truth), and here, in memory, a copy rebuilt from the spool at start. A
 * recipient's outcome changes the copy only once its line is durable, so what
 * we act on (remove the message, stop trying) is never ahead of the disk.
 * Messages are found by MID in a hash table; future due times sit in a
 * min-heap (stale entries are skipped by a generation number) under one timer;
 * messages with recipients due now wait on the ready list until a batch slot
 * is free. Batches in flight are counted in total and per destination.
 */
#include "scheduler.h"

#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "bounce_spool.h"
#include "config.h"
#include "control.h"
#include "hoststats.h"
#include "local_delivery.h"
#include "maillog.h"
#include "route.h"
#include "spool.h"
#include "util.h"

#define SCHED_NEVER		((time_t)INT64_MAX)
#define SCHED_DEST_BUCKETS	1024
#define SCHED_REASON_MAX	600		/* "451 4.7.1 " and a reply of 512 */
#define SCHED_LINE_MAX		(SCHED_REASON_MAX + 96)

struct sched_rcpt {
	char *address;
	enum spool_rcpt_state state;
	time_t next;				/* DEFERRED: the next attempt */
	unsigned attempts;
	char *reason;				/* "451 4.7.1 text", the last outcome's */
	bool busy;				/* in a batch, or its outcome being recorded */
};

struct sched_msg {
	uint64_t mid;
	char *path;
	long data_offset;
	uint64_t size;
	char *sender;
	time_t arrival;
	struct sched_rcpt *rcpts;
	size_t n_rcpts;
	bool held;
	bool deleted;				/* by the operator: removed when not busy */
	bool bounce_now;			/* by the operator: what comes back bounces */
	unsigned busy;				/* batches, and their records, in flight */
	uint64_t gen;				/* heap entries of other generations are stale */
	bool in_ready;
	TAILQ_ENTRY(sched_msg) all;
	TAILQ_ENTRY(sched_msg) ready;
	struct sched_msg *hnext;
};

/* a due time in the heap */
struct sched_due {
	time_t at;
	uint64_t mid;
	uint64_t gen;
};

/* batches at agents for one destination ("mx:<domain>" or "to:<target>") */
struct sched_dest {
	struct sched_dest *next;
	unsigned n;
	char key[];
};

/* what a recipient becomes once its line is on disk */
struct sched_outcome {
	enum spool_rcpt_state state;
	time_t when;
	unsigned attempts;
	char enhanced[16];			/* ours when we changed it (5.4.7) */
	char reason[SCHED_REASON_MAX];
};

struct sched_batch {
	struct delivery_batch b;		/* handed to the agent */
	struct sched *s;
	struct sched_msg *m;
	struct config *cfg;			/* a reference: route and target point into it */
	const struct route *route;		/* NULL: no route matched, or the operator */
	size_t target;				/* index into route->to */
	struct sched_dest *dest;		/* counted while at an agent */
	bool ours;				/* no agent tried it: nothing happened to record */
	char *domain;
	struct sched_outcome *out;
	TAILQ_ENTRY(sched_batch) entry;
};

TAILQ_HEAD(sched_msgq, sched_msg);
TAILQ_HEAD(sched_batchq, sched_batch);

struct sched {
	struct event_base *base;
	struct spool *spool;
	struct config *cfg;
	struct local_agent *local;
	sched_agent_fn smtp;
	void *smtp_ctx;
	sched_bounce_fn bounce;
	void *bounce_ctx;
	struct event *ev_timer;			/* the earliest future due time */
	struct event *ev_run;			/* something changed: dispatch on the next turn */
	struct event *ev_ours;			/* batches completed by us, not an agent */
	time_t timer_at;
	struct sched_msgq all;
	struct sched_msgq ready;
	struct sched_batchq batches;		/* every batch not yet freed */
	struct sched_batchq ours;
	struct sched_msg **buckets;
	size_t n_buckets, n_msgs;
	struct sched_due *heap;
	size_t n_heap, cap_heap;
	struct sched_dest *dests[SCHED_DEST_BUCKETS];
	unsigned inflight;			/* batches at agents */
	uint64_t n_delivered, n_bounced, n_deferred;
	uint64_t n_rx_msgs, n_rx_rcpts, n_dsns;	/* committed since the start */
	struct hoststats *hosts;		/* the same, per recipient domain */
};

static void sched_kick(struct sched *);
static void sched_touch(struct sched *, struct sched_msg *);
static void sched_outcomes(struct sched_batch *, time_t now, const char *why);

/* ---- the MID table ---- */

static size_t
sched_hash(uint64_t mid, size_t n)
{
	mid ^= mid >> 33;
	mid *= 0xff51afd7ed558ccdULL;
	mid ^= mid >> 33;
	return (size_t)(mid & (n - 1));
}

static struct sched_msg *
sched_find(const struct sched *s, uint64_t mid)
{
	struct sched_msg *m;

	for (m = s->buckets[sched_hash(mid, s->n_buckets)]; m != NULL; m = m->hnext)
		if (m->mid == mid)
			return m;
	return NULL;
}

static int
sched_insert(struct sched *s, struct sched_msg *m)
{
	struct sched_msg **nb, *x;
	size_t i, n;

	if (s->n_msgs + 1 > s->n_buckets) {
		n = s->n_buckets * 2;
		if ((nb = calloc(n, sizeof(*nb))) == NULL)
			return -1;
		for (i = 0; i < s->n_buckets; i++)
			while ((x = s->buckets[i]) != NULL) {
				s->buckets[i] = x->hnext;
				x->hnext = nb[sched_hash(x->mid, n)];
				nb[sched_hash(x->mid, n)] = x;
			}
		free(s->buckets);
		s->buckets = nb;
		s->n_buckets = n;
	}
	i = sched_hash(m->mid, s->n_buckets);
	m->hnext = s->buckets[i];
	s->buckets[i] = m;
	s->n_msgs++;
	TAILQ_INSERT_TAIL(&s->all, m, all);
	return 0;
}

static void
sched_msg_free(struct sched_msg *m)
{
	for (size_t i = 0; i < m->n_rcpts; i++) {
		free(m->rcpts[i].address);
		free(m->rcpts[i].reason);
	}
	free(m->rcpts);
	free(m->path);
	free(m->sender);
	free(m);
}

/* out of the table and the lists; heap entries for it go stale */
static void
sched_unlink(struct sched *s, struct sched_msg *m)
{
	struct sched_msg **pp = &s->buckets[sched_hash(m->mid, s->n_buckets)];

	while (*pp != m)
		pp = &(*pp)->hnext;
	*pp = m->hnext;
	s->n_msgs--;
	TAILQ_REMOVE(&s->all, m, all);
	if (m->in_ready) {
		TAILQ_REMOVE(&s->ready, m, ready);
		m->in_ready = false;
	}
}

/* ---- the heap of due times ---- */

static void
sched_heap_swap(struct sched *s, size_t a, size_t b)
{
	struct sched_due t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
}

static int
sched_heap_push(struct sched *s, time_t at, uint64_t mid, uint64_t gen)
{
	struct sched_due *nh;
	size_t i, p;

	if (s->n_heap == s->cap_heap) {
		size_t cap = s->cap_heap == 0 ? 256 : s->cap_heap * 2;

		if ((nh = reallocarray(s->heap, cap, sizeof(*nh))) == NULL)
			return -1;
		s->heap = nh;
		s->cap_heap = cap;
	}
	i = s->n_heap++;
	s->heap[i] = (struct sched_due){ at, mid, gen };
	for (; i > 0 && s->heap[p = (i - 1) / 2].at > s->heap[i].at; i = p)
		sched_heap_swap(s, i, p);
	return 0;
}

static void
sched_heap_pop(struct sched *s)
{
	size_t i = 0, c;

	s->heap[0] = s->heap[--s->n_heap];
	for (;;) {
		c = 2 * i + 1;
		if (c >= s->n_heap)
			break;
		if (c + 1 < s->n_heap && s->heap[c + 1].at < s->heap[c].at)
			c++;
		if (s->heap[i].at <= s->heap[c].at)
			break;
		sched_heap_swap(s, i, c);
		i = c;
	}
}

/* the top entry if it is still meant, dropping stale ones; NULL when empty */
static const struct sched_due *
sched_heap_top(struct sched *s)
{
	while (s->n_heap > 0) {
		const struct sched_due *d = &s->heap[0];
		const struct sched_msg *m = sched_find(s, d->mid);

		if (m != NULL && m->gen == d->gen)
			return d;
		sched_heap_pop(s);
	}
	return NULL;
}

/* the one timer, for the earliest entry of the heap */
static void
sched_arm(struct sched *s)
{
	const struct sched_due *d = sched_heap_top(s);
	struct timeval tv = { 0, 0 };
	time_t now;

	if (d == NULL) {
		evtimer_del(s->ev_timer);
		s->timer_at = SCHED_NEVER;
		return;
	}
	if (d->at == s->timer_at && evtimer_pending(s->ev_timer, NULL))
		return;
	now = time(NULL);
	tv.tv_sec = d->at > now ? d->at - now : 0;
	s->timer_at = d->at;
	evtimer_add(s->ev_timer, &tv);
}

/* ---- destinations ---- */

static size_t
sched_dest_hash(const char *k)
{
	uint32_t h = 2166136261u;

	for (; *k != '\0'; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h % SCHED_DEST_BUCKETS;
}

/* the destination key of a batch: one MX domain, or one configured target */
static void
sched_dest_key(char *out, size_t cap, const struct route *r, const char *domain)
{
	size_t n;

	if (r->to[0].kind == TARGET_USEDNS)
		snprintf(out, cap, "mx:%s", domain);
	else
		snprintf(out, cap, "to:%s", r->to[0].text);
	for (n = 0; out[n] != '\0'; n++)
		if (out[n] >= 'A' && out[n] <= 'Z')
			out[n] = (char)(out[n] - 'A' + 'a');
}

static struct sched_dest *
sched_dest_get(struct sched *s, const char *key, bool create)
{
	size_t h = sched_dest_hash(key);
	struct sched_dest *d;

	for (d = s->dests[h]; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	if (!create || (d = calloc(1, sizeof(*d) + strlen(key) + 1)) == NULL)
		return NULL;
	memcpy(d->key, key, strlen(key) + 1);
	d->next = s->dests[h];
	s->dests[h] = d;
	return d;
}

static void
sched_dest_put(struct sched *s, struct sched_dest *d)
{
	struct sched_dest **pp;

	if (--d->n > 0)
		return;
	for (pp = &s->dests[sched_dest_hash(d->key)]; *pp != d; pp = &(*pp)->next)
		;
	*pp = d->next;
	free(d);
}

/* ---- policy: backoff and the words of the log ---- */

unsigned
sched_backoff(const struct delivery_conf *dc, unsigned attempts)
{
	uint64_t d = dc->retry_initial > 0 ? dc->retry_initial : 1;

	for (unsigned i = 1; i < attempts && d < dc->retry_max; i++)
		d *= 2;
	if (d > dc->retry_max)
		d = dc->retry_max;
	return (unsigned)d;
}

/* the reference's words for an enhanced code's subject (RFC 3463 3.x) */
static const char *
sched_reason_words(const char *enh)
{
	static const char *const subject[] = {
		"Unknown error", "Unknown address error", "Other mailbox problem",
		"Other mail system problem", "Other network problem", "Other protocol problem",
		"Other media error", "Other security problem",
	};
	unsigned sub, det;
	char cls;

	/* NOLINTNEXTLINE(cert-err34-c): a wrapped value is out of range of subject[] and unknown */
	if (sscanf(enh, "%c.%u.%u", &cls, &sub, &det) != 3 || sub >= ARRAY_LEN(subject))
		return "Unknown error";
	if (sub == 4 && det == 7)
		return "Delivery expired (message too old)";
	return subject[sub];
}

/* "4.0.0" for a 4xx without an enhanced code, and so on */
static void
sched_enhanced(const struct delivery_rcpt *r, char *out, size_t cap)
{
	char c;

	if (r->enhanced[0] >= '2' && r->enhanced[0] <= '5' && r->enhanced[1] == '.') {
		util_strlcpy(out, r->enhanced, cap);
		return;
	}
	c = r->status == DELIVERY_OK ? '2' : r->status == DELIVERY_PERMFAIL ? '5' : '4';
	if (r->code >= 200 && r->code < 600)
		c = (char)('0' + r->code / 100);
	snprintf(out, cap, "%c.%s", c, r->code == 0 && c == '4' ? "4.0" : "0.0");
}

/* an agent's text, printable only (it should be already; a log line must not split) */
static void
sched_clean(char *out, size_t cap, const char *in)
{
	size_t o = 0;

	for (; *in != '\0' && o + 1 < cap; in++)
		out[o++] = (unsigned char)*in < 0x20 || (unsigned char)*in > 0x7e ? '?' : *in;
	out[o] = '\0';
}

/* ---- batches ---- */

static void
sched_batch_free(struct sched_batch *sb)
{
	TAILQ_REMOVE(&sb->s->batches, sb, entry);
	config_unref(sb->cfg);
	free(sb->b.rcpts);
	free(sb->out);
	free(sb->domain);
	free(sb);
}

static void sched_batch_done(struct delivery_batch *, void *);

static struct sched_batch *
sched_batch_new(struct sched *s, struct sched_msg *m, const struct route *r, const char *domain,
    const size_t *rids, size_t n)
{
	struct sched_batch *sb;

	if ((sb = calloc(1, sizeof(*sb))) == NULL)
		return NULL;
	if ((sb->b.rcpts = calloc(n, sizeof(*sb->b.rcpts))) == NULL ||
	    (sb->out = calloc(n, sizeof(*sb->out))) == NULL ||
	    (sb->domain = strdup(domain)) == NULL) {
		free(sb->b.rcpts);
		free(sb->out);
		free(sb);
		return NULL;
	}
	sb->s = s;
	sb->m = m;
	sb->route = r;
	if (r != NULL)
		sb->cfg = config_ref(s->cfg);
	sb->b.mid = m->mid;
	sb->b.path = m->path;
	sb->b.data_offset = m->data_offset;
	sb->b.size = m->size;
	sb->b.sender = m->sender;
	sb->b.domain = sb->domain;
	sb->b.n_rcpts = n;
	sb->b.done = sched_batch_done;
	sb->b.arg = sb;
	for (size_t i = 0; i < n; i++) {
		sb->b.rcpts[i].rid = (uint32_t)rids[i];
		sb->b.rcpts[i].address = m->rcpts[rids[i]].address;
		m->rcpts[rids[i]].busy = true;
	}
	m->busy++;
	TAILQ_INSERT_TAIL(&s->batches, sb, entry);
	return sb;
}

/* fill what the agent left pending; the batch then completes on the next turn */
static void
sched_complete_ours(struct sched *s, struct sched_batch *sb, int code, const char *enh,
    const char *text)
{
	for (size_t i = 0; i < sb->b.n_rcpts; i++) {
		struct delivery_rcpt *r = &sb->b.rcpts[i];

		if (r->status != DELIVERY_PENDING)
			continue;
		r->status = code >= 500 ? DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL;
		r->code = code;
		util_strlcpy(r->enhanced, enh, sizeof(r->enhanced));
		util_strlcpy(r->reply, text, sizeof(r->reply));
	}
	sb->ours = true;
	TAILQ_REMOVE(&s->batches, sb, entry);
	TAILQ_INSERT_TAIL(&s->ours, sb, entry);
	event_active(s->ev_ours, EV_READ, 0);
}

/* to the agent of the batch's current target */
static void
sched_handoff(struct sched *s, struct sched_batch *sb)
{
	const struct route_target *t;
	char why[128];
	int r;

	if (sb->route == NULL) {
		sched_complete_ours(s, sb, 0, "4.4.0", "no route for this domain in the config");
		return;
	}
	sb->ours = false;
	t = sb->b.target = &sb->route->to[sb->target];
	for (size_t i = 0; i < sb->b.n_rcpts; i++)
		sb->b.rcpts[i].status = DELIVERY_PENDING;
	sb->b.dcid = 0;
	switch (t->kind) {
	case TARGET_DEVNULL:
	case TARGET_MAILDIR:
		r = local_deliver(s->local, &sb->b);
		break;
	default:
		if (s->smtp == NULL) {
			sched_complete_ours(s, sb, 0, "4.4.0", "no SMTP delivery yet");
			return;
		}
		r = s->smtp(s->smtp_ctx, &sb->b);
		break;
	}
	if (r == -1) {
		snprintf(why, sizeof(why), "delivery agent refused the batch: %s", strerror(errno));
		sched_complete_ours(s, sb, 0, "4.3.0", why);
	}
}

static void
sched_ours_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	struct sched_batchq q;
	struct sched_batch *sb;

	(void)fd;
	(void)what;
	TAILQ_INIT(&q);
	TAILQ_CONCAT(&q, &s->ours, entry);
	while ((sb = TAILQ_FIRST(&q)) != NULL) {
		TAILQ_REMOVE(&q, sb, entry);
		TAILQ_INSERT_TAIL(&s->batches, sb, entry);
		sched_batch_done(&sb->b, sb);
	}
}

/* every recipient failed to connect anywhere: worth the route's next target now */
static bool
sched_failover(struct sched_batch *sb)
{
	if (sb->route == NULL || sb->target + 1 >= sb->route->n_to || sb->m->deleted)
		return false;
	for (size_t i = 0; i < sb->b.n_rcpts; i++)
		if (sb->b.rcpts[i].status != DELIVERY_TEMPFAIL || sb->b.rcpts[i].code != 0)
			return false;
	return true;
}

/* the agent is done with it (on the loop) */
static void
sched_batch_done(struct delivery_batch *b, void *arg)
{
	struct sched_batch *sb = arg;
	struct sched *s = sb->s;

	(void)b;
	if (sched_failover(sb)) {
		sb->target++;
		sched_handoff(s, sb);
		return;
	}
	if (sb->dest != NULL) {
		s->inflight--;
		sched_dest_put(s, sb->dest);
		sb->dest = NULL;
	}
	sched_outcomes(sb, time(NULL), NULL);
	sched_kick(s);			/* a slot is free */
}

/* ---- messages: finishing ---- */

static void
sched_removed(void *arg, int err)
{
	uint64_t mid = (uint64_t)(uintptr_t)arg;
	struct log_ids ids = { .mid = mid, .rid = -1 };

	if (err != 0)
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " could not be removed from the spool: "
		    "%s (it is removed at the next start)", mid, strerror(err));
}

static void
sched_remove(struct sched *s, struct sched_msg *m)
{
	struct log_ids ids = { .mid = m->mid, .rid = -1 };

	/* MIDs fit a pointer on every platform we build for; only the log needs it */
	if (spool_remove(s->spool, m->mid, m->size, sched_removed, (void *)(uintptr_t)m->mid) == -1)
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " could not be removed from the spool: "
		    "%s", m->mid, strerror(errno));
	sched_unlink(s, m);
	sched_msg_free(m);
}

static bool
sched_final(enum spool_rcpt_state st)
{
	return st == SPOOL_RCPT_DELIVERED || st == SPOOL_RCPT_BOUNCED;
}

/* removed when deleted or when every recipient is done; else rescheduled */
static void
sched_settle(struct sched *s, struct sched_msg *m)
{
	struct log_ids ids = { .mid = m->mid, .rid = -1 };
	size_t i;

	if (m->busy > 0)
		return;
	if (m->deleted) {
		sched_remove(s, m);
		return;
	}
	for (i = 0; i < m->n_rcpts; i++)
		if (!sched_final(m->rcpts[i].state))
			break;
	if (i == m->n_rcpts) {
		maillog(LOG_INFO, &ids, "Message finished MID %" PRIu64 " done", m->mid);
		sched_remove(s, m);
		return;
	}
	sched_touch(s, m);
}

/* ---- outcomes ---- */

static void
sched_recorded(void *arg, int err)
{
	struct sched_batch *sb = arg;
	struct sched *s = sb->s;
	struct sched_msg *m = sb->m;
	struct log_ids ids = { .mid = m->mid, .rid = -1 };
	time_t now = time(NULL);

	if (err != 0)
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " delivery state not recorded: %s "
		    "(recipients tried again later)", m->mid, strerror(err));
	for (size_t i = 0; i < sb->b.n_rcpts; i++) {
		struct sched_rcpt *r = &m->rcpts[sb->b.rcpts[i].rid];
		const struct sched_outcome *o = &sb->out[i];
		char *reason;

		r->busy = false;
		if (err != 0) {
			/* not durable, so it does not count: tried again, maybe twice */
			if (!sched_final(r->state)) {
				r->state = SPOOL_RCPT_DEFERRED;
				r->next = now + (time_t)s->cfg->delivery.retry_initial;
			}
			continue;
		}
		if ((reason = strdup(o->reason)) != NULL) {
			free(r->reason);
			r->reason = reason;
		}
		r->state = o->state;
		r->attempts = o->attempts;
		r->next = o->state == SPOOL_RCPT_DEFERRED ? o->when : 0;
		if (o->state == SPOOL_RCPT_DELIVERED)
			s->n_delivered++;
		else if (o->state == SPOOL_RCPT_BOUNCED)
			s->n_bounced++;
		else
			s->n_deferred++;
		/* a lost count (ENOMEM) is no reason to stop delivering */
		(void)hoststats_add(s->hosts, route_domain(r->address),
		    o->state == SPOOL_RCPT_DELIVERED ? HS_DELIVERED :
		    o->state == SPOOL_RCPT_BOUNCED ? HS_HARD : HS_SOFT, 1);
	}
	m->busy--;
	sched_batch_free(sb);
	sched_settle(s, m);
}

static void
sched_log_outcome(const struct sched_batch *sb, const struct delivery_rcpt *d,
    const struct sched_outcome *o, const char *enh, const char *why)
{
	struct log_ids ids = { .mid = sb->m->mid, .rid = d->rid, .dcid = sb->b.dcid };
	char text[sizeof(d->reply)];

	if (o->state == SPOOL_RCPT_DELIVERED)
		return;			/* the agent's "Message done" says it */
	sched_clean(text, sizeof(text), d->reply);
	maillog(LOG_INFO, &ids, "%s: DCID %" PRIu64 " MID %" PRIu64 " to RID [%" PRIu32 "] - %s - "
	    "%s ('%03d', ['%s'])", o->state == SPOOL_RCPT_BOUNCED ? "Bounced" : "Delayed",
	    sb->b.dcid, sb->m->mid, d->rid, enh, why != NULL ? why : sched_reason_words(enh),
	    d->code, text);
}

static void
sched_call_bounce(struct sched *s, struct sched_batch *sb, time_t now)
{
	struct sched_bounce_rcpt *br;
	struct sched_bounce bi;
	size_t n = 0;

	if (s->bounce == NULL || sb->m->sender[0] == '\0')
		return;
	if ((br = calloc(sb->b.n_rcpts, sizeof(*br))) == NULL) {
		struct log_ids ids = { .mid = sb->m->mid, .rid = -1 };

		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " no DSN: out of memory", sb->m->mid);
		return;
	}
	for (size_t i = 0; i < sb->b.n_rcpts; i++) {
		const struct delivery_rcpt *d = &sb->b.rcpts[i];

		if (sb->out[i].state != SPOOL_RCPT_BOUNCED)
			continue;
		/* the log's and the DSN's code: 5.x.x even when a 4xx ran out of time */
		br[n] = (struct sched_bounce_rcpt){ .rid = d->rid, .address = d->address,
		    .code = d->code, .enhanced = sb->out[i].enhanced, .reply = d->reply,
		    .last_attempt = now };
		n++;
	}
	if (n > 0) {
		bi = (struct sched_bounce){ .mid = sb->m->mid, .path = sb->m->path,
		    .data_offset = sb->m->data_offset, .size = sb->m->size,
		    .sender = sb->m->sender, .arrival = sb->m->arrival, .dcid = sb->b.dcid,
		    .target = sb->route != NULL ? sb->b.target : NULL, .rcpts = br, .n_rcpts = n };
		s->bounce(s->bounce_ctx, &bi);
	}
	free(br);
}

/*
 * A batch's outcome: each recipient delivered, bounced (5xx, lifetime over,
 * the operator's bounce) or deferred with the next attempt after the backoff.
 * Logged now, recorded (synced when any is final: a lost deferral only costs
 * a retry), and applied to the copy here in sched_recorded() once written.
 * why overrides the log's words (the operator's).
 */
static void
sched_outcomes(struct sched_batch *sb, time_t now, const char *why)
{
	struct sched *s = sb->s;
	struct sched_msg *m = sb->m;
	const struct delivery_conf *dc = &s->cfg->delivery;
	time_t deadline = m->arrival + (time_t)dc->max_lifetime;
	char enh[16], text[sizeof(sb->b.rcpts[0].reply)], *buf;
	bool record = !sb->ours, final = false;
	size_t len = 0, skip;
	int n;

	if (m->deleted) {
		/* the operator removed it meanwhile: nothing to record */
		for (size_t i = 0; i < sb->b.n_rcpts; i++)
			m->rcpts[sb->b.rcpts[i].rid].busy = false;
		m->busy--;
		sched_batch_free(sb);
		sched_settle(s, m);
		return;
	}
	if ((buf = malloc(sb->b.n_rcpts * SCHED_LINE_MAX)) == NULL) {
		sched_recorded(sb, ENOMEM);
		return;
	}
	for (size_t i = 0; i < sb->b.n_rcpts; i++) {
		struct delivery_rcpt *d = &sb->b.rcpts[i];
		struct sched_rcpt *r = &m->rcpts[d->rid];
		struct sched_outcome *o = &sb->out[i];
		const char *w = why;

		if (d->status == DELIVERY_PENDING) {
			d->status = DELIVERY_TEMPFAIL;
			d->code = 0;
			util_strlcpy(d->enhanced, "4.3.0", sizeof(d->enhanced));
			util_strlcpy(d->reply, "no outcome from the delivery agent",
			    sizeof(d->reply));
		}
		sched_enhanced(d, enh, sizeof(enh));
		/* no agent, no route: not an attempt */
		o->attempts = r->attempts + (sb->ours ? 0 : 1);
		o->when = now;
		if (d->status == DELIVERY_OK)
			o->state = SPOOL_RCPT_DELIVERED;
		else if (d->status == DELIVERY_PERMFAIL)
			o->state = SPOOL_RCPT_BOUNCED;
		else if (m->bounce_now) {
			o->state = SPOOL_RCPT_BOUNCED;
			util_strlcpy(enh, "5.0.0", sizeof(enh));
			w = "Bounced by operator";
		} else if (now >= deadline) {
			o->state = SPOOL_RCPT_BOUNCED;
			util_strlcpy(enh, "5.4.7", sizeof(enh));
		} else {
			o->state = SPOOL_RCPT_DEFERRED;
			o->when = now + (time_t)sched_backoff(dc,
			    o->attempts > 0 ? o->attempts : 1);
			/* the last try is at the end of the lifetime, not after it */
			if (o->when > deadline)
				o->when = deadline;
		}
		util_strlcpy(o->enhanced, enh, sizeof(o->enhanced));
		sched_clean(text, sizeof(text), d->reply);
		/* "451 4.2.2 4.2.2 mailbox full": a server's text often starts with the code */
		skip = strlen(enh);
		if (strncmp(text, enh, skip) != 0 || text[skip] != ' ')
			skip = 0;
		else
			skip++;
		snprintf(o->reason, sizeof(o->reason), "%03d %s %s",
		    d->code >= 0 && d->code < 1000 ? d->code : 0, enh, text + skip);
		sched_log_outcome(sb, d, o, enh, w);
		if (o->state != SPOOL_RCPT_DEFERRED)
			record = final = true;
		n = spool_state_format(buf + len, SCHED_LINE_MAX, d->rid, o->state, o->when,
		    o->attempts, o->reason);
		if (n > 0)
			len += (size_t)n;
	}
	sched_call_bounce(s, sb, now);
	if (!record) {
		/*
		 * Nothing was tried (no SMTP agent yet, no route, an agent that
		 * refused), so on disk the recipients stay what they were and only
		 * the copy here waits for the backoff: a crash just means an
		 * earlier retry. Nor does the spool open a file for it.
		 */
		free(buf);
		sched_recorded(sb, 0);
		return;
	}
	/* synced if any line is final: a lost deferral only costs a retry (spool_state.c) */
	if (spool_state_append(s->spool, m->mid, buf, len, final, sched_recorded, sb) == -1) {
		free(buf);
		sched_recorded(sb, errno);
		return;
	}
	free(buf);
}

/* ---- dispatch ---- */

static bool
sched_due(const struct sched_rcpt *r, time_t now)
{
	if (r->busy || sched_final(r->state))
		return false;
	return r->state == SPOOL_RCPT_QUEUED || r->next <= now;
}

/*
 * The message's due recipients into batches, one per route and domain, as
 * far as the caps allow. True when none is left waiting for a slot.
 */
static bool
sched_dispatch_msg(struct sched *s, struct sched_msg *m, time_t now)
{
	const struct delivery_conf *dc = &s->cfg->delivery;
	const struct route **routes;
	struct sched_batch *sb;
	struct sched_dest *d;
	size_t *rids, n;
	bool *taken, blocked = false;
	char key[600];

	if (m->held || m->deleted)
		return true;
	routes = calloc(m->n_rcpts, sizeof(*routes));
	rids = calloc(m->n_rcpts, sizeof(*rids));
	taken = calloc(m->n_rcpts, sizeof(*taken));
	if (routes == NULL || rids == NULL || taken == NULL) {
		free(routes);
		free(rids);
		free(taken);
		return false;		/* tried again at the next kick */
	}
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (sched_due(&m->rcpts[i], now))
			routes[i] = route_for(s->cfg, route_domain(m->rcpts[i].address));
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const char *dom = route_domain(m->rcpts[i].address);

		if (taken[i] || !sched_due(&m->rcpts[i], now))
			continue;
		if (s->inflight >= dc->max_connections) {
			blocked = true;
			break;
		}
		/* this recipient and every later one with the same route and domain */
		n = 0;
		for (size_t j = i; j < m->n_rcpts; j++) {
			if (taken[j] || !sched_due(&m->rcpts[j], now) || routes[j] != routes[i] ||
			    strcasecmp(route_domain(m->rcpts[j].address), dom) != 0)
				continue;
			taken[j] = true;
			rids[n++] = j;
		}
		d = NULL;
		if (routes[i] != NULL) {
			sched_dest_key(key, sizeof(key), routes[i], dom);
			if ((d = sched_dest_get(s, key, true)) == NULL ||
			    d->n >= dc->max_connections_per_destination) {
				blocked = true;
				continue;
			}
		}
		if ((sb = sched_batch_new(s, m, routes[i], dom, rids, n)) == NULL) {
			blocked = true;
			continue;
		}
		if (d != NULL) {
			d->n++;
			sb->dest = d;
			s->inflight++;
		}
		sched_handoff(s, sb);
	}
	free(routes);
	free(rids);
	free(taken);
	return !blocked;
}

/* a new dest entry made for a batch that could not be created: none left at 0 */
static void
sched_dest_sweep(struct sched *s)
{
	for (size_t h = 0; h < SCHED_DEST_BUCKETS; h++) {
		struct sched_dest **pp = &s->dests[h], *d;

		while ((d = *pp) != NULL) {
			if (d->n == 0) {
				*pp = d->next;
				free(d);
			} else
				pp = &d->next;
		}
	}
}

static void
sched_run(struct sched *s)
{
	const struct sched_due *d;
	struct sched_msg *m, *next;
	bool swept = false;
	time_t now = time(NULL);

	while ((d = sched_heap_top(s)) != NULL && d->at <= now) {
		m = sched_find(s, d->mid);
		sched_heap_pop(s);
		m->gen++;		/* consumed: the ready list has it now */
		if (!m->in_ready) {
			TAILQ_INSERT_TAIL(&s->ready, m, ready);
			m->in_ready = true;
		}
	}
	for (m = TAILQ_FIRST(&s->ready); m != NULL; m = next) {
		next = TAILQ_NEXT(m, ready);
		if (s->inflight >= s->cfg->delivery.max_connections)
			break;
		if (!sched_dispatch_msg(s, m, now)) {
			if (!swept) {
				sched_dest_sweep(s);
				swept = true;
			}
			continue;
		}
		TAILQ_REMOVE(&s->ready, m, ready);
		m->in_ready = false;
		sched_touch(s, m);
	}
	sched_arm(s);
}

static void
sched_run_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sched_run(arg);
}

/* dispatch on the loop's next turn (never inside an agent's or the spool's call) */
static void
sched_kick(struct sched *s)
{
	event_active(s->ev_run, EV_READ, 0);
}

/*
 * After a change to m: due now, it goes on the ready list; due later, its
 * time goes into the heap (a new generation, so older entries go stale).
 */
static void
sched_touch(struct sched *s, struct sched_msg *m)
{
	time_t due = SCHED_NEVER, now;

	if (m->in_ready) {
		sched_kick(s);
		return;
	}
	m->gen++;
	if (m->held || m->deleted)
		return;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct sched_rcpt *r = &m->rcpts[i];

		if (r->busy || sched_final(r->state))
			continue;
		if (r->state == SPOOL_RCPT_QUEUED)
			due = 0;
		else if (r->next < due)
			due = r->next;
	}
	if (due == SCHED_NEVER)
		return;
	now = time(NULL);
	if (due <= now) {
		TAILQ_INSERT_TAIL(&s->ready, m, ready);
		m->in_ready = true;
		sched_kick(s);
		return;
	}
	if (sched_heap_push(s, due, m->mid, m->gen) == -1) {
		/* no memory for the heap: look again at the next kick */
		TAILQ_INSERT_TAIL(&s->ready, m, ready);
		m->in_ready = true;
		return;
	}
	if (due < s->timer_at)
		sched_arm(s);
}

/* ---- messages: arriving ---- */

static struct sched_msg *
sched_add(struct sched *s, const struct spool_entry *e, const struct spool_state *st)
{
	struct sched_msg *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->mid = e->mid;
	m->data_offset = e->data_offset;
	m->size = e->size;
	m->arrival = e->arrival;
	m->held = st != NULL && st->held;
	if ((m->path = strdup(e->path)) == NULL || (m->sender = strdup(e->sender)) == NULL ||
	    (e->n_rcpts > 0 && (m->rcpts = calloc(e->n_rcpts, sizeof(*m->rcpts))) == NULL))
		goto fail;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		struct sched_rcpt *r = &m->rcpts[m->n_rcpts];

		if ((r->address = strdup(e->rcpts[i])) == NULL)
			goto fail;
		m->n_rcpts++;
		if (st == NULL)
			continue;
		r->state = st->rcpts[i].state;
		r->attempts = st->rcpts[i].attempts;
		r->next = st->rcpts[i].when;
		if (st->rcpts[i].reason != NULL &&
		    (r->reason = strdup(st->rcpts[i].reason)) == NULL)
			goto fail;
	}
	if (sched_insert(s, m) == -1)
		goto fail;
	return m;
fail:
	sched_msg_free(m);
	return NULL;
}

/* the spool's commit hook: a new message, every recipient queued */
static void
sched_committed(void *arg, const struct spool_entry *e)
{
	struct sched *s = arg;
	struct log_ids ids = { .mid = e->mid, .rid = -1 };
	struct sched_msg *m;

	/* a mail merge job is not delivered: its split messages are (ipmm_split.c) */
	if (e->kind != NULL || sched_find(s, e->mid) != NULL)
		return;
	if (e->listener != NULL && strcmp(e->listener, BOUNCE_SPOOL_LISTENER) == 0)
		s->n_dsns++;
	else {
		s->n_rx_msgs++;
		s->n_rx_rcpts += e->n_rcpts;
	}
	if ((m = sched_add(s, e, NULL)) == NULL) {
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " not scheduled: out of memory (it is, "
		    "at the next start)", e->mid);
		return;
	}
	sched_settle(s, m);
}

/* start-up: one committed message and what its state file says */
static int
sched_replay_one(const struct spool_entry *e, void *arg)
{
	struct sched *s = arg;
	struct log_ids ids = { .mid = e->mid, .rid = -1 };
	struct spool_state st;
	struct sched_msg *m;
	char err[256];

	if (e->kind != NULL)
		return 0;		/* a mail merge job: ipmm_split.c replays it */
	if (spool_state_recover(s->spool, e->mid, e->n_rcpts, &st, err, sizeof(err)) == -1) {
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " not scheduled: %s", e->mid, err);
		return 0;
	}
	if (st.bad_lines > 0)
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " state file: %u lines skipped", e->mid,
		    st.bad_lines);
	m = sched_add(s, e, &st);
	spool_state_free(&st);
	if (m == NULL) {
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " not scheduled: out of memory", e->mid);
		return 0;
	}
	sched_settle(s, m);
	return 0;
}

/* ---- the operator's actions ---- */

struct sched_note {
	uint64_t mid;
	const char *what;
};

static void
sched_noted(void *arg, int err)
{
	struct sched_note *n = arg;
	struct log_ids ids = { .mid = n->mid, .rid = -1 };

	if (err != 0)
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " %s not recorded: %s (lost at a "
		    "restart)", n->mid, n->what, strerror(err));
	free(n);
}

static void
sched_hold(struct sched *s, struct sched_msg *m, bool held)
{
	struct log_ids ids = { .mid = m->mid, .rid = -1 };
	struct sched_note *n;
	char line[64];
	int len;

	if (m->held == held)
		return;
	m->held = held;
	maillog(LOG_INFO, &ids, "MID %" PRIu64 " %s by operator", m->mid,
	    held ? "held" : "released");
	len = spool_state_format_hold(line, sizeof(line), held, time(NULL));
	if ((n = malloc(sizeof(*n))) != NULL)
		*n = (struct sched_note){ m->mid, held ? "hold" : "release" };
	if (len < 0 || spool_state_append(s->spool, m->mid, line, (size_t)len, true,
	    n != NULL ? sched_noted : NULL, n) == -1) {
		maillog(LOG_WARNING, &ids, "MID %" PRIu64 " %s not recorded: out of memory", m->mid,
		    held ? "hold" : "release");
		free(n);
	}
	if (held && m->in_ready) {
		TAILQ_REMOVE(&s->ready, m, ready);
		m->in_ready = false;
	}
	sched_touch(s, m);
}

static void
sched_delete(struct sched *s, struct sched_msg *m)
{
	struct log_ids ids = { .mid = m->mid, .rid = -1 };

	maillog(LOG_INFO, &ids, "Message aborted MID %" PRIu64 " deleted by operator", m->mid);
	m->deleted = true;
	if (m->in_ready) {
		TAILQ_REMOVE(&s->ready, m, ready);
		m->in_ready = false;
	}
	sched_settle(s, m);
}

/* every recipient not done or in flight bounces now; those in flight bounce when back */
static void
sched_bounce_msg(struct sched *s, struct sched_msg *m)
{
	static const char text[] = "bounced by operator";
	struct sched_batch *sb;
	size_t *rids, n = 0;

	m->bounce_now = true;
	if ((rids = calloc(m->n_rcpts > 0 ? m->n_rcpts : 1, sizeof(*rids))) == NULL)
		return;
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (!m->rcpts[i].busy && !sched_final(m->rcpts[i].state))
			rids[n++] = i;
	if (n > 0 && (sb = sched_batch_new(s, m, NULL, "", rids, n)) != NULL) {
		for (size_t i = 0; i < n; i++) {
			struct delivery_rcpt *d = &sb->b.rcpts[i];

			d->status = DELIVERY_PERMFAIL;
			util_strlcpy(d->enhanced, "5.0.0", sizeof(d->enhanced));
			util_strlcpy(d->reply, text, sizeof(d->reply));
		}
		if (m->in_ready) {
			TAILQ_REMOVE(&s->ready, m, ready);
			m->in_ready = false;
		}
		sched_outcomes(sb, time(NULL), "Bounced by operator");
	}
	free(rids);
}

/* recipients deferred (of domain, or all) are due now; the count */
static size_t
sched_deliver_now(struct sched *s, const char *domain)
{
	struct sched_msg *m, *next;
	size_t n = 0;
	bool any;

	for (m = TAILQ_FIRST(&s->all); m != NULL; m = next) {
		next = TAILQ_NEXT(m, all);
		if (m->held || m->deleted)
			continue;
		any = false;
		for (size_t i = 0; i < m->n_rcpts; i++) {
			struct sched_rcpt *r = &m->rcpts[i];

			if (r->busy || r->state != SPOOL_RCPT_DEFERRED || (domain != NULL &&
			    strcasecmp(route_domain(r->address), domain) != 0))
				continue;
			r->next = 0;
			any = true;
			n++;
		}
		if (any)
			sched_touch(s, m);
	}
	return n;
}

enum sched_action { ACT_DELETE, ACT_BOUNCE, ACT_HOLD, ACT_RELEASE };

static json_t *
sched_ctl_mids(struct sched *s, const json_t *args, enum sched_action act, char *err,
    size_t errlen)
{
	static const char *const done[] = { "deleted", "bounced", "held", "released" };
	const json_t *mids = json_object_get(args, "mids");
	struct sched_msg *m;
	json_t *v, *res;
	size_t i;

	if (!json_is_array(mids) || json_array_size(mids) == 0) {
		snprintf(err, errlen, "no MIDs given");
		return NULL;
	}
	/* all or nothing: a typo in one MID must not leave the others half done */
	json_array_foreach(mids, i, v) {
		json_int_t mid = json_integer_value(v);

		if (!json_is_integer(v) || mid <= 0) {
			snprintf(err, errlen, "not a MID: a positive number");
			return NULL;
		}
		if ((m = sched_find(s, (uint64_t)mid)) == NULL || m->deleted) {
			snprintf(err, errlen, "no message %" JSON_INTEGER_FORMAT " in the queue",
			    mid);
			return NULL;
		}
	}
	json_array_foreach(mids, i, v) {
		if ((m = sched_find(s, (uint64_t)json_integer_value(v))) == NULL || m->deleted)
			continue;		/* named twice and deleted the first time */
		switch (act) {
		case ACT_DELETE:
			sched_delete(s, m);
			break;
		case ACT_BOUNCE:
			sched_bounce_msg(s, m);
			break;
		case ACT_HOLD:
		case ACT_RELEASE:
			sched_hold(s, m, act == ACT_HOLD);
			break;
		}
	}
	sched_kick(s);
	if ((res = json_pack("{s:s, s:O}", "action", done[act], "mids", mids)) == NULL)
		snprintf(err, errlen, "out of memory");
	return res;
}

static json_t *
sched_ctl_delete(void *arg, const json_t *args, char *err, size_t errlen)
{
	return sched_ctl_mids(arg, args, ACT_DELETE, err, errlen);
}

static json_t *
sched_ctl_bounce(void *arg, const json_t *args, char *err, size_t errlen)
{
	return sched_ctl_mids(arg, args, ACT_BOUNCE, err, errlen);
}

static json_t *
sched_ctl_hold(void *arg, const json_t *args, char *err, size_t errlen)
{
	return sched_ctl_mids(arg, args, ACT_HOLD, err, errlen);
}

static json_t *
sched_ctl_release(void *arg, const json_t *args, char *err, size_t errlen)
{
	return sched_ctl_mids(arg, args, ACT_RELEASE, err, errlen);
}

static json_t *
sched_ctl_deliver(void *arg, const json_t *args, char *err, size_t errlen)
{
	const json_t *d = json_object_get(args, "domain");
	const char *domain = NULL;
	json_t *res;
	size_t n;

	if (d != NULL && !json_is_null(d)) {
		if (!json_is_string(d) || json_string_length(d) == 0) {
			snprintf(err, errlen, "the domain must be a non-empty string");
			return NULL;
		}
		domain = json_string_value(d);
	}
	n = sched_deliver_now(arg, domain);
	if (domain != NULL)
		res = json_pack("{s:I, s:s}", "rescheduled", (json_int_t)n, "domain", domain);
	else
		res = json_pack("{s:I}", "rescheduled", (json_int_t)n);
	if (res == NULL)
		snprintf(err, errlen, "out of memory");
	return res;
}

int
sched_register_control(struct sched *s, struct control *c)
{
	if (control_register(c, "queue-delete", sched_ctl_delete, s) == -1 ||
	    control_register(c, "queue-bounce", sched_ctl_bounce, s) == -1 ||
	    control_register(c, "queue-hold", sched_ctl_hold, s) == -1 ||
	    control_register(c, "queue-release", sched_ctl_release, s) == -1 ||
	    control_register(c, "queue-deliver", sched_ctl_deliver, s) == -1)
		return -1;
	return 0;
}

json_t *
sched_status(const struct sched *s)
{
	size_t pending = 0, held = 0;
	const struct sched_msg *m;

	TAILQ_FOREACH(m, &s->all, all) {
		if (m->held)
			held++;
		for (size_t i = 0; i < m->n_rcpts; i++)
			pending += !sched_final(m->rcpts[i].state);
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	    "messages_received", (json_int_t)s->n_rx_msgs,
	    "recipients_received", (json_int_t)s->n_rx_rcpts,
	    "dsns_generated", (json_int_t)s->n_dsns,
	    "messages", (json_int_t)s->n_msgs, "held", (json_int_t)held,
	    "recipients_pending", (json_int_t)pending, "batches_in_flight", (json_int_t)s->inflight,
	    "delivered", (json_int_t)s->n_delivered, "bounced", (json_int_t)s->n_bounced,
	    "deferred", (json_int_t)s->n_deferred);
}

void
sched_counters(const struct sched *s, struct sched_counters *c)
{
	*c = (struct sched_counters){ .messages_received = s->n_rx_msgs,
	    .recipients_received = s->n_rx_rcpts, .dsns_generated = s->n_dsns,
	    .delivered = s->n_delivered, .bounced = s->n_bounced, .deferred = s->n_deferred };
}

struct hoststats *
sched_hoststats(const struct sched *s)
{
	struct hoststats *hs = hoststats_copy(s->hosts);
	const struct sched_msg *m;

	if (hs == NULL)
		return NULL;
	TAILQ_FOREACH(m, &s->all, all)
		for (size_t i = 0; i < m->n_rcpts; i++)
			if (!sched_final(m->rcpts[i].state) &&
			    hoststats_add(hs, route_domain(m->rcpts[i].address), HS_ACTIVE,
			    1) == -1) {
				hoststats_free(hs);
				return NULL;
			}
	return hs;
}

/* ---- life ---- */

void
sched_set_config(struct sched *s, struct config *cfg)
{
	config_unref(s->cfg);
	s->cfg = config_ref(cfg);
	sched_kick(s);
}

void
sched_set_smtp_agent(struct sched *s, sched_agent_fn fn, void *ctx)
{
	s->smtp = fn;
	s->smtp_ctx = ctx;
}

void
sched_set_bounce(struct sched *s, sched_bounce_fn fn, void *ctx)
{
	s->bounce = fn;
	s->bounce_ctx = ctx;
}

struct sched *
sched_new(struct event_base *base, struct spool *sp, struct config *cfg, char *err,
    size_t errlen)
{
	struct sched *s;
	char why[512];

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "scheduler: out of memory");
		return NULL;
	}
	s->base = base;
	s->spool = sp;
	s->cfg = config_ref(cfg);
	s->timer_at = SCHED_NEVER;
	TAILQ_INIT(&s->all);
	TAILQ_INIT(&s->ready);
	TAILQ_INIT(&s->batches);
	TAILQ_INIT(&s->ours);
	s->n_buckets = 1024;
	if ((s->buckets = calloc(s->n_buckets, sizeof(*s->buckets))) == NULL ||
	    (s->ev_timer = evtimer_new(base, sched_run_cb, s)) == NULL ||
	    (s->ev_run = event_new(base, -1, 0, sched_run_cb, s)) == NULL ||
	    (s->ev_ours = event_new(base, -1, 0, sched_ours_cb, s)) == NULL) {
		snprintf(err, errlen, "scheduler: out of memory");
		sched_free(s);
		return NULL;
	}
	if ((s->hosts = hoststats_new()) == NULL) {
		snprintf(err, errlen, "scheduler: out of memory");
		sched_free(s);
		return NULL;
	}
	if ((s->local = local_agent_new(base, err, errlen)) == NULL) {
		sched_free(s);
		return NULL;
	}
	if (spool_scan(cfg->spool, sched_replay_one, s, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "scheduler: %s", why);
		sched_free(s);
		return NULL;
	}
	spool_set_commit_hook(sp, sched_committed, s);
	return s;
}

void
sched_free(struct sched *s)
{
	struct sched_batch *sb;
	struct sched_msg *m;

	if (s == NULL)
		return;
	if (s->spool != NULL)
		spool_set_commit_hook(s->spool, NULL, NULL);
	/* the worker stops first: then nothing else touches a batch */
	local_agent_free(s->local);
	TAILQ_CONCAT(&s->batches, &s->ours, entry);
	while ((sb = TAILQ_FIRST(&s->batches)) != NULL)
		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses the list's links (a known false positive on sys/queue.h) */
		sched_batch_free(sb);
	while ((m = TAILQ_FIRST(&s->all)) != NULL) {
		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses the list's links (a known false positive on sys/queue.h) */
		sched_unlink(s, m);
		sched_msg_free(m);
	}
	for (size_t h = 0; h < SCHED_DEST_BUCKETS; h++)
		while (s->dests[h] != NULL) {
			struct sched_dest *d = s->dests[h];

			s->dests[h] = d->next;
			free(d);
		}
	if (s->ev_timer != NULL)
		event_free(s->ev_timer);
	if (s->ev_run != NULL)
		event_free(s->ev_run);
	if (s->ev_ours != NULL)
		event_free(s->ev_ours);
	free(s->heap);
	hoststats_free(s->hosts);
	free(s->buckets);
	config_unref(s->cfg);
	free(s);
}
