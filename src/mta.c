/*
 * mta.c: the outbound SMTP agent (see mta_session.h): a batch's addresses (a
 * route's host, or MX by RFC 5321 5.1 with the null MX of RFC 7505), the
 * destinations (address:port) with their connection counts and TLS memory, and
 * the pump that hands waiting batches to connections within the limits: a kept
 * idle connection first, then a new one, and when every slot is taken an idle
 * connection elsewhere gives way. The conversation itself is mta_session.c's.
 * batch->done() is always called from an event of its own.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "delivery.h"
#include "dns.h"
#include "hoststats.h"
#include "maillog.h"
#include "mta_int.h"
#include "tls.h"
#include "util.h"

static void mta_job_next(struct mta_job *);

/*
 * Outcomes
 */

void
mta_rcpt_set(struct delivery_rcpt *r, enum delivery_status st, int code, const char *enh,
    const char *text)
{
	r->status = st;
	r->code = code;
	util_strlcpy(r->enhanced, enh, sizeof(r->enhanced));
	util_strlcpy(r->reply, text, sizeof(r->reply));
}

/* every recipient still open gets this outcome */
void
mta_job_fail(struct mta_job *j, enum delivery_status st, int code, const char *enh,
    const char *text)
{
	for (size_t i = 0; i < j->b->n_rcpts; i++)
		if (j->b->rcpts[i].status == DELIVERY_PENDING)
			mta_rcpt_set(&j->b->rcpts[i], st, code, enh, text);
}

void
mta_job_failf(struct mta_job *j, enum delivery_status st, int code, const char *enh,
    const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	mta_job_fail(j, st, code, enh, text);
}

/*
 * Jobs: a batch, its addresses, its place in the queue
 */

static void
mta_job_cancel_dns(struct mta_job *j)
{
	if (j->q != NULL)
		dns_cancel(j->q);
	j->q = NULL;
	for (size_t i = 0; j->mx != NULL && i < j->n_mx; i++)
		if (j->mx[i].q != NULL)
			dns_cancel(j->mx[i].q);
	free(j->mx);
	j->mx = NULL;
}

static void
mta_job_free(struct mta_job *j)
{
	mta_job_cancel_dns(j);
	if (j->ev_done != NULL)
		event_free(j->ev_done);
	if (j->fd != -1)
		close(j->fd);
	for (size_t i = 0; i < MTA_MX_MAX; i++)
		free(j->names[i]);
	free(j->rs);
	free(j);
}

static void
mta_job_unwait(struct mta_job *j)
{
	if (j->waiting) {
		TAILQ_REMOVE(&j->mta->waiting, j, wentry);
		j->waiting = false;
	}
}

/* queue for a connection to addrs[ai]; a retry goes first, it has waited already */
static void
mta_job_wait(struct mta_job *j, bool front)
{
	if (!j->waiting) {
		if (front)
			TAILQ_INSERT_HEAD(&j->mta->waiting, j, wentry);
		else
			TAILQ_INSERT_TAIL(&j->mta->waiting, j, wentry);
		j->waiting = true;
	}
	mta_pump_later(j->mta);
}

static void
mta_job_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_job *j = arg;
	struct delivery_batch *b = j->b;

	(void)fd;
	(void)what;
	TAILQ_REMOVE(&j->mta->jobs, j, entry);
	mta_job_free(j);
	/* last: done() may hand us the next batch, or free the agent */
	b->done(b, b->arg);
}

/* every recipient has its outcome: hand the batch back from a callback of its own */
void
mta_job_finish(struct mta_job *j)
{
	static const struct timeval now = { 0, 0 };

	if (j->finished)
		return;
	j->finished = true;
	mta_job_unwait(j);
	mta_job_cancel_dns(j);
	if (j->conn != NULL) {
		j->conn->job = NULL;
		j->conn = NULL;
	}
	if (j->fd != -1) {
		close(j->fd);
		j->fd = -1;
	}
	/* nothing may stay pending: the scheduler would never hear of it */
	mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.0", "internal error: no outcome");
	evtimer_add(j->ev_done, &now);
}

static void
mta_err_set(struct mta_err *e, int code, const char *enh, const char *text)
{
	e->set = true;
	e->code = code;
	util_strlcpy(e->enhanced, enh, sizeof(e->enhanced));
	util_strlcpy(e->text, text, sizeof(e->text));
}

/*
 * Every address failed before a transaction. A temporary reason wins over a
 * permanent one: a 5xx greeting from one MX does not bounce mail another MX
 * might take once it is reachable again.
 */
static void
mta_job_exhausted(struct mta_job *j)
{
	const struct mta_err *e = j->temp.set ? &j->temp : &j->perm;

	if (!e->set)
		mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.4.1", "no address to deliver to");
	else
		mta_job_fail(j, j->temp.set ? DELIVERY_TEMPFAIL : DELIVERY_PERMFAIL, e->code,
		    e->enhanced, e->text);
	mta_job_finish(j);
}

/* RFC 5321 5.1: the next address, when one cannot be reached or will not talk */
static void
mta_job_next(struct mta_job *j)
{
	if (++j->ai < j->n_addrs)
		mta_job_wait(j, true);
	else
		mta_job_exhausted(j);
}

/* the connection carrying j failed before MAIL: why, and what next */
void
mta_job_addr_failed(struct mta_job *j, const struct mta_conn *c, enum delivery_status st,
    int code, const char *enh, const char *text)
{
	mta_err_set(st == DELIVERY_PERMFAIL ? &j->perm : &j->temp, code, enh, text);
	if (c->n_msgs > 0 && !j->reuse_retry) {
		/* a kept connection that died while idle is no fault of the address */
		j->reuse_retry = true;
		mta_job_wait(j, true);
	} else if (c->tls_failed && !j->plain_retry) {
		/* the destination is marked no-TLS now: the same address, in plain text */
		j->plain_retry = true;
		mta_job_wait(j, true);
	} else
		mta_job_next(j);
}

static void
mta_job_add_addr(struct mta_job *j, const struct sockaddr_storage *ss, const char *name)
{
	struct mta_addr *a;

	if (j->n_addrs == MTA_ADDRS_MAX)
		return;
	a = &j->addrs[j->n_addrs++];
	a->ss = *ss;
	a->name = name;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(j->port);
	else
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(j->port);
}

/* the addresses of every MX host are in: in MX order, A before AAAA within a host */
static void
mta_job_mx_done(struct mta_job *j)
{
	const char *domain = j->b->domain;
	const char *temp_host = NULL;

	for (size_t i = 0; i < j->n_mx; i++) {
		for (size_t k = 0; k < j->mx[i].n_addrs; k++)
			mta_job_add_addr(j, &j->mx[i].addrs[k], j->names[i]);
		if (j->mx[i].status == DNS_TEMPFAIL && temp_host == NULL)
			temp_host = j->names[i];
	}
	free(j->mx);
	j->mx = NULL;
	if (j->n_addrs > 0) {
		mta_job_wait(j, false);
		return;
	}
	if (temp_host != NULL)
		mta_job_failf(j, DELIVERY_TEMPFAIL, 0, "4.4.3",
		    "temporary DNS failure looking up the address of %s", temp_host);
	/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): names[i] is set for every i < n_mx */
	else if (j->n_mx == 1 && strcasecmp(j->names[0], domain) == 0)
		mta_job_failf(j, DELIVERY_PERMFAIL, 0, "5.4.4",
		    "%s has no MX and no address record", domain);
	else
		mta_job_failf(j, DELIVERY_PERMFAIL, 0, "5.4.4",
		    "no mail exchanger of %s has an address", domain);
	mta_job_finish(j);
}

static void
mta_on_mx_addr(void *arg, int status, const struct sockaddr_storage *addrs, size_t n)
{
	struct mta_mxhost *h = arg;
	struct mta_job *j = h->job;

	h->q = NULL;
	h->status = status;
	for (size_t i = 0; status == DNS_OK && i < n && h->n_addrs < MTA_ADDRS_MAX; i++)
		h->addrs[h->n_addrs++] = addrs[i];
	if (--j->mx_pending == 0)
		mta_job_mx_done(j);
}

/* look up the address of every host in j->names[0..n_mx-1], all at once */
static void
mta_job_mx_lookup(struct mta_job *j)
{
	size_t n = j->n_mx;

	if ((j->mx = calloc(n, sizeof(*j->mx))) == NULL) {
		mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
		mta_job_finish(j);
		return;
	}
	j->mx_pending = n;
	for (size_t i = 0; i < n; i++) {
		j->mx[i].job = j;
		j->mx[i].status = DNS_TEMPFAIL;
	}
	for (size_t i = 0; i < n; i++) {
		j->mx[i].q = dns_lookup_addr(j->mta->dns, j->names[i], mta_on_mx_addr, &j->mx[i]);
		if (j->mx[i].q == NULL && --j->mx_pending == 0) {
			mta_job_mx_done(j);
			return;
		}
	}
}

static void
mta_on_mx(void *arg, int status, const struct dns_mx *mx, size_t n)
{
	struct mta_job *j = arg;
	const char *domain = j->b->domain;

	j->q = NULL;
	switch (status) {
	case DNS_OK:
		if (n > MTA_MX_MAX)
			n = MTA_MX_MAX;
		for (size_t i = 0; i < n; i++)
			if ((j->names[i] = strdup(mx[i].host)) == NULL)
				goto nomem;
		j->n_mx = n;
		/*
		 * RFC 5321 5.1: MX hosts of equal preference are tried in random
		 * order, to spread the load (dns.c gives them sorted, in answer order)
		 */
		for (size_t lo = 0, hi; lo < n; lo = hi) {
			for (hi = lo + 1; hi < n && mx[hi].preference == mx[lo].preference; hi++)
				;
			for (size_t i = hi - 1; i > lo; i--) {
				size_t k = lo + arc4random_uniform((uint32_t)(i - lo + 1));
				char *t = j->names[i];

				j->names[i] = j->names[k];
				j->names[k] = t;
			}
		}
		mta_job_mx_lookup(j);
		return;
	case DNS_NODATA:
		/* RFC 5321 5.1: no MX, the domain itself is the implicit MX */
		if ((j->names[0] = strdup(domain)) == NULL)
			goto nomem;
		j->n_mx = 1;
		mta_job_mx_lookup(j);
		return;
	case DNS_NULLMX:
		/* RFC 7505 3, RFC 7504 3: a null MX fails at once, with 556 5.1.10 */
		mta_job_failf(j, DELIVERY_PERMFAIL, 556, "5.1.10",
		    "Recipient address has null MX: %s accepts no mail", domain);
		break;
	case DNS_NXDOMAIN:
		mta_job_failf(j, DELIVERY_PERMFAIL, 0, "5.1.2", "domain %s does not exist",
		    domain);
		break;
	default:
		mta_job_failf(j, DELIVERY_TEMPFAIL, 0, "4.4.3",
		    "temporary DNS failure looking up the MX of %s", domain);
		break;
	}
	mta_job_finish(j);
	return;
nomem:
	mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
	mta_job_finish(j);
}

/* a route's host: its addresses alone, no MX (the route already chose the host) */
static void
mta_on_host(void *arg, int status, const struct sockaddr_storage *addrs, size_t n)
{
	struct mta_job *j = arg;

	j->q = NULL;
	if (status != DNS_OK || n == 0) {
		/* a route names a host the admin chose: its failure is local, so wait */
		mta_job_failf(j, DELIVERY_TEMPFAIL, 0, "4.4.3", "cannot resolve %s: %s",
		    j->b->target->host, dns_status_str(status));
		mta_job_finish(j);
		return;
	}
	for (size_t i = 0; i < n; i++)
		mta_job_add_addr(j, &addrs[i], j->names[0]);
	mta_job_wait(j, false);
}

/* no CR, LF or other control in a path we put in a command (command injection) */
static bool
mta_path_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* last resort when a job cannot be allocated: done() from the loop anyway */
static void
mta_nomem_done(evutil_socket_t fd, short what, void *arg)
{
	struct delivery_batch *b = arg;

	(void)fd;
	(void)what;
	b->done(b, b->arg);
}

void
mta_deliver(struct mta *m, struct delivery_batch *b)
{
	static const struct timeval now = { 0, 0 };
	const struct route_target *t = b->target;
	struct mta_job *j;
	bool any = false;
	uint8_t a[16];

	b->dcid = 0;
	for (size_t i = 0; i < b->n_rcpts; i++) {
		struct delivery_rcpt *r = &b->rcpts[i];

		mta_rcpt_set(r, DELIVERY_PENDING, 0, "", "");
		if (!mta_path_ok(r->address))
			mta_rcpt_set(r, DELIVERY_PERMFAIL, 0, "5.1.3",
			    "bad recipient address syntax");
		else
			any = true;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL ||
	    (j->ev_done = evtimer_new(m->base, mta_job_done_cb, j)) == NULL) {
		free(j);
		for (size_t i = 0; i < b->n_rcpts; i++)
			if (b->rcpts[i].status == DELIVERY_PENDING)
				mta_rcpt_set(&b->rcpts[i], DELIVERY_TEMPFAIL, 0, "4.3.0",
				    "out of memory");
		if (event_base_once(m->base, -1, EV_TIMEOUT, mta_nomem_done, b, &now) == -1) {
			maillog(LOG_CRITICAL, NULL, "delivery: out of memory, batch of MID %"
			    PRIu64 " answered at once", b->mid);
			b->done(b, b->arg);
		}
		return;
	}
	j->mta = m;
	j->b = b;
	j->fd = -1;
	TAILQ_INSERT_TAIL(&m->jobs, j, entry);
	if (!any) {
		mta_job_finish(j);
		return;
	}
	if (!mta_path_ok(b->sender)) {
		mta_job_fail(j, DELIVERY_PERMFAIL, 0, "5.1.7", "bad sender address syntax");
		mta_job_finish(j);
		return;
	}
	if (t == NULL || (t->kind != TARGET_HOST && t->kind != TARGET_USEDNS)) {
		mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.5", "not an SMTP route");
		mta_job_finish(j);
		return;
	}
	if (t->kind == TARGET_USEDNS) {
		j->port = m->mx_port != 0 ? m->mx_port : 25;
		j->q = dns_lookup_mx(m->dns, b->domain, mta_on_mx, j);
	} else {
		j->port = t->port;
		/* a name is also the TLS server name (SNI); an address literal is not */
		if (inet_pton(AF_INET, t->host, a) != 1 && inet_pton(AF_INET6, t->host, a) != 1 &&
		    (j->names[0] = strdup(t->host)) == NULL) {
			mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
			mta_job_finish(j);
			return;
		}
		j->q = dns_lookup_addr(m->dns, t->host, mta_on_host, j);
	}
	if (j->q == NULL) {
		mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
		mta_job_finish(j);
	}
}

/*
 * Destinations: address:port, what the per-destination limit and TLS memory are about
 */

void
mta_sa_text(const struct sockaddr_storage *ss, char *addr, size_t cap, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, addr, (socklen_t)cap);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, addr, (socklen_t)cap);
		*port = ntohs(sin6->sin6_port);
	}
}

static struct mta_dest *
mta_dest_get(struct mta *m, const struct sockaddr_storage *ss)
{
	char addr[INET6_ADDRSTRLEN], key[sizeof(((struct mta_dest *)0)->key)];
	struct mta_dest *d;
	uint16_t port;

	mta_sa_text(ss, addr, sizeof(addr), &port);
	snprintf(key, sizeof(key), ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", addr, port);
	TAILQ_FOREACH(d, &m->dests, entry)
		if (strcmp(d->key, key) == 0)
			return d;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	memcpy(d->key, key, sizeof(key));
	TAILQ_INSERT_TAIL(&m->dests, d, entry);
	return d;
}

/* forget destinations nothing refers to any more */
void
mta_dest_sweep(struct mta *m)
{
	struct mta_dest *d, *next;
	time_t now = time(NULL);

	for (d = TAILQ_FIRST(&m->dests); d != NULL; d = next) {
		next = TAILQ_NEXT(d, entry);
		if (d->refs == 0 && d->notls_until <= now) {
			TAILQ_REMOVE(&m->dests, d, entry);
			free(d);
		}
	}
}

/*
 * The pool: which waiting batch may go where, now
 */

static struct mta_conn *
mta_idle_conn(struct mta *m, const struct mta_dest *d)
{
	struct mta_conn *c;

	TAILQ_FOREACH(c, &m->conns, entry)
		if (!c->closing && c->state == MS_READY && (d == NULL || c->dest == d))
			return c;
	return NULL;
}

static void
mta_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta *m = arg;
	struct mta_job *j, *next;
	struct mta_conn *c;
	struct mta_dest *d;

	(void)fd;
	(void)what;
	for (j = TAILQ_FIRST(&m->waiting); j != NULL; j = next) {
		next = TAILQ_NEXT(j, wentry);
		if ((d = mta_dest_get(m, &j->addrs[j->ai].ss)) == NULL)
			continue;
		if ((c = mta_idle_conn(m, d)) != NULL) {
			mta_job_unwait(j);
			mta_conn_take(c, j);
			continue;
		}
		if (d->n_conns >= m->max_per_dest)
			continue;
		if (m->n_conns >= m->max_conns) {
			/* a connection kept idle for another destination gives way */
			if ((c = mta_idle_conn(m, NULL)) == NULL)
				continue;
			mta_conn_quit(c);
		}
		mta_job_unwait(j);
		mta_conn_open(m, d, j);
		/* opening may have failed at once and queued j again: next is still valid */
	}
}

void
mta_pump_later(struct mta *m)
{
	static const struct timeval now = { 0, 0 };

	evtimer_add(m->ev_pump, &now);
}

/*
 * The agent
 */

int
mta_set_config(struct mta *m, const struct config *cfg)
{
	char *h = strdup(cfg->hostname != NULL && cfg->hostname[0] != '\0' ? cfg->hostname :
	    "localhost");

	if (h == NULL)
		return -1;
	free(m->hostname);
	m->hostname = h;
	m->max_conns = cfg->delivery.max_connections > 0 ? cfg->delivery.max_connections : 1;
	m->max_per_dest = cfg->delivery.max_connections_per_destination > 0 ?
	    cfg->delivery.max_connections_per_destination : 1;
	if (m->ev_pump != NULL)
		mta_pump_later(m);
	return 0;
}

#ifdef MAILGATE_FAULT_HOOKS
/* a positive decimal from the environment, or 0 */
static unsigned long
mta_test_env(const char *name, unsigned long max)
{
	const char *v = getenv(name);
	unsigned long n = 0;

	for (; v != NULL && *v >= '0' && *v <= '9' && n <= max; v++)
		n = n * 10 + (unsigned long)(*v - '0');
	return v != NULL && *v == '\0' && n <= max ? n : 0;
}

/*
 * Test builds only (-Dfault_hooks=true), never a release: the integration
 * tests cannot bind port 25 nor wait minutes for a silent server, so
 * MAILGATE_TEST_MX_PORT is the port USEDNS connects to, and
 * MAILGATE_TEST_MTA_TIMEOUT_MS every timeout but the idle one.
 */
static void
mta_test_hooks(struct mta *m)
{
	unsigned long port = mta_test_env("MAILGATE_TEST_MX_PORT", 65535);
	unsigned long ms = mta_test_env("MAILGATE_TEST_MTA_TIMEOUT_MS", 3600 * 1000);

	if (port != 0)
		m->mx_port = (uint16_t)port;
	if (ms != 0)
		m->to.connect = m->to.greeting = m->to.helo = m->to.tls = m->to.mail =
		    m->to.rcpt = m->to.data = m->to.block = m->to.dot = m->to.quit =
		    (unsigned)ms;
}
#else
static void
mta_test_hooks(struct mta *m)
{
	(void)m;
}
#endif

struct mta *
mta_new(struct event_base *base, struct dns *dns, const struct config *cfg)
{
	struct mta *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->base = base;
	m->dns = dns;
	TAILQ_INIT(&m->jobs);
	TAILQ_INIT(&m->waiting);
	TAILQ_INIT(&m->conns);
	TAILQ_INIT(&m->dests);
	m->to = (struct mta_timeouts){
		.connect = MTA_TIMEOUT_CONNECT * 1000,
		.greeting = MTA_TIMEOUT_GREETING * 1000,
		.helo = MTA_TIMEOUT_HELO * 1000,
		.tls = MTA_TIMEOUT_TLS * 1000,
		.mail = MTA_TIMEOUT_MAIL * 1000,
		.rcpt = MTA_TIMEOUT_RCPT * 1000,
		.data = MTA_TIMEOUT_DATA * 1000,
		.block = MTA_TIMEOUT_BLOCK * 1000,
		.dot = MTA_TIMEOUT_DOT * 1000,
		.quit = MTA_TIMEOUT_QUIT * 1000,
		.idle = MTA_TIMEOUT_IDLE * 1000,
	};
	if (mta_set_config(m, cfg) == -1 ||
	    (m->chunk = malloc(MTA_CHUNK)) == NULL ||
	    (m->stuffed = malloc(2 * MTA_CHUNK + 8)) == NULL ||
	    (m->ev_pump = evtimer_new(base, mta_pump_cb, m)) == NULL) {
		mta_free(m);
		return NULL;
	}
	/* without a client context there is no STARTTLS, and mail still flows */
	if ((m->tls_ctx = tls_client_ctx_new()) == NULL)
		maillog(LOG_WARNING, NULL, "delivery: no TLS client context, STARTTLS not used");
	mta_test_hooks(m);
	return m;
}

void
mta_free(struct mta *m)
{
	struct mta_conn *c;
	struct mta_job *j;
	struct mta_dest *d;

	if (m == NULL)
		return;
	while ((j = TAILQ_FIRST(&m->jobs)) != NULL) {
		TAILQ_REMOVE(&m->jobs, j, entry);
		mta_job_free(j);
	}
	while ((c = TAILQ_FIRST(&m->conns)) != NULL) {
		struct log_ids ids = { .dcid = c->dcid, .rid = -1 };

		if (!c->closing && c->dcid != 0)
			maillog(LOG_INFO, &ids, "DCID %" PRIu64 " close", c->dcid);
		mta_conn_free(c);
	}
	while ((d = TAILQ_FIRST(&m->dests)) != NULL) {
		TAILQ_REMOVE(&m->dests, d, entry);
		free(d);
	}
	if (m->ev_pump != NULL)
		event_free(m->ev_pump);
	SSL_CTX_free(m->tls_ctx);
	free(m->chunk);
	free(m->stuffed);
	free(m->hostname);
	free(m);
}

unsigned
mta_connections(const struct mta *m)
{
	return m->n_conns;
}

int
mta_hoststats(const struct mta *m, struct hoststats *hs)
{
	const struct mta_conn *c;

	TAILQ_FOREACH(c, &m->conns, entry)
		if (!c->closing && c->job != NULL &&
		    hoststats_add(hs, c->job->b->domain, HS_CONNS, 1) == -1)
			return -1;
	return 0;
}

void
mta_set_timeouts_for_tests(struct mta *m, const struct mta_timeouts *to)
{
	m->to = *to;
}

void
mta_set_port_for_tests(struct mta *m, uint16_t port)
{
	m->mx_port = port;
}
