/*
 * mta_session.c: one outbound SMTP connection, the mirror of the inbound state
 * machine: one state per reply awaited, a table of what each state waits for and
 * for how long (RFC 5321 4.5.3.2), one handler per state. EHLO (HELO after a
 * 5xx), opportunistic STARTTLS (RFC 3207), PIPELINING (RFC 2920), SIZE (RFC
 * 1870), BODY=8BITMIME (RFC 6152), the message streamed from the queue file in
 * chunks with back-pressure, dot-stuffed, and QUIT.
 *
 * Bytes go through a libevent bufferevent (the OpenSSL filter over it after
 * STARTTLS); io.c is the accepting side and owns no connect(). A connection has
 * one way out, mta_conn_close(), and is freed from an event of its own, never
 * under a caller's feet. Which batch rides on which connection is mta.c's.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config.h"
#include "delivery.h"
#include "dns.h"
#include "maillog.h"
#include "mta_int.h"
#include "smtp_client_reply.h"
#include "spool.h"
#include "util.h"

/* what each state waits for (in reasons: "timed out while ...") and for how long */
static const struct {
	const char *what;
	size_t timeout;			/* offset in struct mta_timeouts */
} mta_states[] = {
	[MS_CONNECTING] = { "connecting", offsetof(struct mta_timeouts, connect) },
	[MS_GREETING] = { "waiting for the greeting", offsetof(struct mta_timeouts, greeting) },
	[MS_EHLO] = { "waiting for the reply to EHLO", offsetof(struct mta_timeouts, helo) },
	[MS_HELO] = { "waiting for the reply to HELO", offsetof(struct mta_timeouts, helo) },
	[MS_STARTTLS] = { "waiting for the reply to STARTTLS",
	    offsetof(struct mta_timeouts, helo) },
	[MS_TLS] = { "in the TLS handshake", offsetof(struct mta_timeouts, tls) },
	[MS_READY] = { "idle", offsetof(struct mta_timeouts, idle) },
	[MS_RSET] = { "waiting for the reply to RSET", offsetof(struct mta_timeouts, helo) },
	[MS_MAIL] = { "waiting for the reply to MAIL FROM", offsetof(struct mta_timeouts, mail) },
	[MS_RCPT] = { "waiting for the reply to RCPT TO", offsetof(struct mta_timeouts, rcpt) },
	[MS_DATA] = { "waiting for the reply to DATA", offsetof(struct mta_timeouts, data) },
	[MS_BODY] = { "sending the message", offsetof(struct mta_timeouts, block) },
	[MS_DOT] = { "waiting for the reply to the end of data",
	    offsetof(struct mta_timeouts, dot) },
	[MS_QUIT] = { "waiting for the reply to QUIT", offsetof(struct mta_timeouts, quit) },
};

static void mta_conn_close(struct mta_conn *);
static void mta_conn_next(struct mta_conn *);
static void mta_conn_abort(struct mta_conn *, bool quit, enum delivery_status, int code,
    const char *enhanced, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/*
 * Outcomes
 */

/* what a server reply means for a recipient: the code's class, its text made safe */
struct mta_outcome {
	enum delivery_status st;
	int code;
	char enhanced[16];
	char text[512];
};

static void
mta_outcome(const struct smtp_client_reply *r, struct mta_outcome *o)
{
	char raw[512];
	size_t n;

	o->code = r->code;
	o->st = r->code < 300 ? DELIVERY_OK :
	    r->code >= 500 ? DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL;
	/* RFC 3463: without an enhanced code from the server, the class alone */
	if (r->enhanced[0] != '\0')
		util_strlcpy(o->enhanced, r->enhanced, sizeof(o->enhanced));
	else
		snprintf(o->enhanced, sizeof(o->enhanced), "%d.0.0",
		    o->st == DELIVERY_PERMFAIL ? 5 : o->st == DELIVERY_OK ? 2 : 4);
	n = smtp_client_reply_join(r, raw, sizeof(raw));
	util_escape(o->text, sizeof(o->text), raw, n);
}

/* "[0, 1, 5]": the recipients in state want (R_SENT: every one tried) */
static const char *
mta_rids(const struct mta_job *j, int want, char *buf, size_t cap)
{
	size_t n = 0;
	bool first = true;

	n += (size_t)snprintf(buf, cap, "[");
	for (size_t i = 0; i < j->b->n_rcpts && n < cap; i++) {
		if (want == R_SENT ? j->rs[i] == R_SKIP : j->rs[i] != want)
			continue;
		if (cap - n < 16) {
			/* a long list is cut, visibly */
			snprintf(buf + n, cap - n, "%s...", first ? "" : ", ");
			n = strlen(buf);
			break;
		}
		n += (size_t)snprintf(buf + n, cap - n, "%s%" PRIu32, first ? "" : ", ",
		    j->b->rcpts[i].rid);
		first = false;
	}
	if (n < cap)
		snprintf(buf + n, cap - n, "]");
	return buf;
}

/*
 * The queue file: the envelope for BODY=, then the message, only read
 */

static int
mta_job_open_file(struct mta_job *j, char *why, size_t cap)
{
	struct spool_entry e;
	char err[256];

	if (spool_entry_read(j->b->path, &e, err, sizeof(err)) == -1) {
		snprintf(why, cap, "cannot read the queue file of MID %" PRIu64 ": %s", j->b->mid,
		    err);
		return -1;
	}
	j->body8 = e.body != NULL && strcasecmp(e.body, "8BITMIME") == 0;
	spool_entry_free(&e);
	if ((j->fd = open(j->b->path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(why, cap, "cannot open the queue file of MID %" PRIu64 ": %s", j->b->mid,
		    strerror(errno));
		return -1;
	}
	if ((j->rs = calloc(j->b->n_rcpts, 1)) == NULL) {
		snprintf(why, cap, "out of memory");
		return -1;
	}
	j->file_ready = true;
	return 0;
}

/*
 * Connections: open, timers, the one way out
 */

static void
mta_conn_uncount(struct mta_conn *c)
{
	if (c->counted) {
		c->counted = false;
		c->mta->n_conns--;
		c->dest->n_conns--;
	}
}

static void
mta_expect(struct mta_conn *c, enum mta_state st)
{
	unsigned ms = *(const unsigned *)((const char *)&c->mta->to + mta_states[st].timeout);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	c->state = st;
	evtimer_add(c->ev_timer, &tv);
}

static void
mta_send(struct mta_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
mta_send(struct mta_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
}

void
mta_conn_free(struct mta_conn *c)
{
	TAILQ_REMOVE(&c->mta->conns, c, entry);
	c->dest->refs--;
	if (c->ev_connect != NULL)
		event_free(c->ev_connect);
	if (c->ev_timer != NULL)
		event_free(c->ev_timer);
	if (c->ev_free != NULL)
		event_free(c->ev_free);
	if (c->bev != NULL)
		bufferevent_free(c->bev);	/* the TLS filter frees the SSL and the socket */
	else if (c->fd != -1)
		close(c->fd);
	free(c);
}

static void
mta_conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_conn *c = arg;
	struct mta *m = c->mta;

	(void)fd;
	(void)what;
	mta_conn_free(c);
	mta_dest_sweep(m);
}

/* the one way out: the job (if any) was given its outcome or sent on by the caller */
static void
mta_conn_close(struct mta_conn *c)
{
	static const struct timeval now = { 0, 0 };
	struct log_ids ids = { .dcid = c->dcid, .rid = -1 };

	if (c->closing)
		return;
	c->closing = true;
	if (c->job != NULL) {
		/* a caller that forgot the job: it must not be lost */
		struct mta_job *j = c->job;

		c->job = NULL;
		j->conn = NULL;
		mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.4.2", "connection closed");
		mta_job_finish(j);
	}
	mta_conn_uncount(c);
	if (c->dcid != 0)
		maillog(LOG_INFO, &ids, "DCID %" PRIu64 " close", c->dcid);
	evtimer_del(c->ev_timer);
	if (c->ev_connect != NULL)
		event_del(c->ev_connect);
	if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	evtimer_add(c->ev_free, &now);
	mta_pump_later(c->mta);
}

static bool
mta_in_tx(const struct mta_conn *c)
{
	return c->state >= MS_MAIL && c->state <= MS_DOT;
}

/*
 * Something went wrong on c. In a transaction every recipient still open gets
 * the outcome (RFC 5321 3.8: a connection lost is a 451); before one, the
 * address failed and the job moves on. Then QUIT (a server that answered is
 * owed one, 3.1) or just close (a broken or timed-out stream).
 */
static void
mta_conn_abort(struct mta_conn *c, bool quit, enum delivery_status st, int code,
    const char *enh, const char *fmt, ...)
{
	struct mta_job *j = c->job;
	char text[512];
	va_list ap;

	if (c->closing)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (j != NULL) {
		c->job = NULL;
		j->conn = NULL;
		if (mta_in_tx(c)) {
			mta_job_fail(j, st, code, enh, text);
			mta_job_finish(j);
		} else
			mta_job_addr_failed(j, c, st, code, enh, text);
	}
	if (quit && code != 421)
		mta_conn_quit(c);
	else
		mta_conn_close(c);
}

/* a reply that ends the session: its outcome for the job, then QUIT */
static void
mta_conn_refused(struct mta_conn *c)
{
	struct mta_outcome o;

	mta_outcome(&c->reply, &o);
	if (o.st == DELIVERY_OK)
		o.st = DELIVERY_TEMPFAIL;
	mta_conn_abort(c, true, o.st, o.code, o.enhanced, "%s", o.text);
}

static void
mta_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->closing)
		return;
	if (c->state == MS_READY)
		mta_conn_quit(c);
	else if (c->state == MS_QUIT)
		mta_conn_close(c);
	else
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.4.2",
		    "conversation with %s port %u timed out while %s", c->addr, c->port,
		    mta_states[c->state].what);
}

/* RFC 5321 4.1.1.10: QUIT, wait for the 221 (or the close), then close */
void
mta_conn_quit(struct mta_conn *c)
{
	if (c->closing || c->state == MS_QUIT)
		return;
	/* saying goodbye carries no mail: the slot is free for a new connection now */
	mta_conn_uncount(c);
	mta_send(c, "QUIT\r\n");
	mta_expect(c, MS_QUIT);
	mta_pump_later(c->mta);
}

static void
mta_send_ehlo(struct mta_conn *c)
{
	memset(&c->ext, 0, sizeof(c->ext));
	mta_send(c, "EHLO %s\r\n", c->mta->hostname);
	mta_expect(c, MS_EHLO);
}

static void mta_tx_start(struct mta_conn *);

/* greeted and introduced: STARTTLS if we may, else the first transaction */
static void
mta_conn_session_ready(struct mta_conn *c)
{
	if (c->ext.starttls && !c->tls && c->mta->tls_ctx != NULL &&
	    c->dest->notls_until <= time(NULL)) {
		mta_send(c, "STARTTLS\r\n");
		mta_expect(c, MS_STARTTLS);
		return;
	}
	if (c->job != NULL)
		mta_tx_start(c);
	else
		mta_conn_next(c);
}

/*
 * STARTTLS (RFC 3207)
 */

static void mta_read_cb(struct bufferevent *, void *);
static void mta_write_cb(struct bufferevent *, void *);
static void mta_event_cb(struct bufferevent *, short, void *);

static void
mta_tls_start(struct mta_conn *c)
{
	struct bufferevent *filter;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	SSL *ssl;

	if ((ssl = SSL_new(c->mta->tls_ctx)) == NULL) {
		mta_conn_abort(c, true, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
		return;
	}
	if (c->sni[0] != '\0')
		SSL_set_tlsext_host_name(ssl, c->sni);
	/*
	 * Whatever the server sent after its 220 came in plain text and must never
	 * be read as if it had come over TLS (RFC 3207 5; the response injection
	 * attacks on clients, e.g. CVE-2011-1431's mirror)
	 */
	evbuffer_drain(in, evbuffer_get_length(in));
	/* the filter writes to the socket only while it holds less than this */
	bufferevent_setwatermark(c->bev, EV_WRITE, MTA_OUT_LOW, MTA_OUT_HIGH);
	filter = bufferevent_openssl_filter_new(c->mta->base, c->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (filter == NULL) {
		SSL_free(ssl);
		mta_conn_abort(c, true, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(filter, 1);
	c->bev = filter;
	c->tls = true;
	bufferevent_setwatermark(filter, EV_WRITE, MTA_OUT_LOW, 0);
	bufferevent_setcb(filter, mta_read_cb, mta_write_cb, mta_event_cb, c);
	bufferevent_enable(filter, EV_READ | EV_WRITE);
	smtp_client_reply_init(&c->reply);
	mta_expect(c, MS_TLS);
}

static void
mta_tls_done(struct mta_conn *c)
{
	struct log_ids ids = { .dcid = c->dcid, .rid = -1 };
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

	maillog(LOG_INFO, &ids, "DCID %" PRIu64 " TLS success protocol %s cipher %s", c->dcid,
	    SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	/* RFC 3207 4.2: forget what the server said before TLS; EHLO again */
	mta_send_ehlo(c);
}

static void
mta_tls_failed(struct mta_conn *c)
{
	struct log_ids ids = { .dcid = c->dcid, .rid = -1 };
	const char *why = NULL;
	char reason[160];
	unsigned long e;

	while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
		if (ERR_reason_error_string(e) != NULL)
			why = ERR_reason_error_string(e);
	snprintf(reason, sizeof(reason), "%s", why != NULL ? why :
	    "connection closed during the handshake");
	maillog(LOG_INFO, &ids, "DCID %" PRIu64 " TLS failed: %s", c->dcid, reason);
	/* opportunistic TLS: remember, and deliver in plain text rather than not at all */
	c->dest->notls_until = time(NULL) + MTA_NOTLS_SECS;
	c->tls_failed = true;
	mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.7.5",
	    "TLS handshake with %s port %u failed: %s", c->addr, c->port, reason);
}

/*
 * The transaction
 */

static void
mta_tx_end(struct mta_conn *c)
{
	struct mta_job *j = c->job;

	c->n_msgs++;
	if (j != NULL)
		mta_job_finish(j);
	mta_conn_next(c);
}

static size_t
mta_next_rcpt(const struct mta_job *j, size_t i)
{
	while (i < j->b->n_rcpts && j->rs[i] != R_SENT)
		i++;
	return i;
}

static void
mta_send_rcpt(struct mta_conn *c, size_t i)
{
	mta_send(c, "RCPT TO:<%s>\r\n", c->job->b->rcpts[i].address);
}

static void
mta_tx_start(struct mta_conn *c)
{
	struct mta_job *j = c->job;
	struct delivery_batch *b = j->b;
	struct log_ids ids = { .dcid = c->dcid, .mid = b->mid, .rid = -1 };
	char why[512], rids[1024];
	size_t n = 0;

	if (!j->file_ready && mta_job_open_file(j, why, sizeof(why)) == -1) {
		mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.0", why);
		mta_job_finish(j);
		mta_conn_next(c);
		return;
	}
	/* RFC 1870 6: a message larger than the server's fixed limit is not offered */
	if (c->ext.size && c->ext.size_max > 0 && b->size > c->ext.size_max) {
		mta_job_failf(j, DELIVERY_PERMFAIL, 0, "5.3.4", "message size %" PRIu64
		    " exceeds the limit %" PRIu64 " of %s port %u", b->size, c->ext.size_max,
		    c->addr, c->port);
		mta_job_finish(j);
		mta_conn_next(c);
		return;
	}
	for (size_t i = 0; i < b->n_rcpts; i++) {
		j->rs[i] = b->rcpts[i].status == DELIVERY_PENDING ? R_SENT : R_SKIP;
		n += j->rs[i] == R_SENT;
	}
	if (n == 0) {
		mta_job_finish(j);
		mta_conn_next(c);
		return;
	}
	b->dcid = c->dcid;
	c->ri = mta_next_rcpt(j, 0);
	c->n_accepted = 0;
	c->mail_failed = c->no_rcpt_data = false;
	maillog(LOG_INFO, &ids, "Delivery start DCID %" PRIu64 " MID %" PRIu64 " to RID %s",
	    c->dcid, b->mid, mta_rids(j, R_SENT, rids, sizeof(rids)));
	/* RFC 1870 3, RFC 6152 3: parameters only when the server announced them */
	mta_send(c, "MAIL FROM:<%s>", b->sender);
	if (c->ext.size)
		mta_send(c, " SIZE=%" PRIu64, b->size);
	if (j->body8 && c->ext.eightbitmime)
		mta_send(c, " BODY=8BITMIME");
	mta_send(c, "\r\n");
	if (c->ext.pipelining) {
		/* RFC 2920 3.1: MAIL, every RCPT and DATA in one group, DATA last */
		for (size_t i = c->ri; i < b->n_rcpts; i = mta_next_rcpt(j, i + 1))
			mta_send_rcpt(c, i);
		mta_send(c, "DATA\r\n");
	}
	mta_expect(c, MS_MAIL);
}

static void
mta_on_mail(struct mta_conn *c)
{
	struct mta_outcome o;

	if (c->reply.code / 100 == 2) {
		if (!c->ext.pipelining)
			mta_send_rcpt(c, c->ri);
		mta_expect(c, MS_RCPT);
		return;
	}
	mta_outcome(&c->reply, &o);
	if (o.st == DELIVERY_OK || c->reply.code / 100 == 3) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.5.0",
		    "unexpected reply %d from %s port %u to MAIL FROM", c->reply.code, c->addr,
		    c->port);
		return;
	}
	mta_job_fail(c->job, o.st, o.code, o.enhanced, o.text);
	if (c->ext.pipelining) {
		/* the RCPTs and DATA are on their way: read their replies, ignore them */
		c->mail_failed = true;
		mta_expect(c, MS_RCPT);
		return;
	}
	mta_tx_end(c);
}

static void
mta_on_rcpt(struct mta_conn *c)
{
	struct mta_job *j = c->job;
	struct mta_outcome o;

	if (!c->mail_failed) {
		mta_outcome(&c->reply, &o);
		if (o.st == DELIVERY_OK) {
			j->rs[c->ri] = R_ACCEPTED;
			c->n_accepted++;
		} else
			mta_rcpt_set(&j->b->rcpts[c->ri], o.st, o.code, o.enhanced, o.text);
	}
	c->ri = mta_next_rcpt(j, c->ri + 1);
	if (c->ri < j->b->n_rcpts) {
		if (!c->ext.pipelining)
			mta_send_rcpt(c, c->ri);
		mta_expect(c, MS_RCPT);
		return;
	}
	if (c->ext.pipelining) {
		mta_expect(c, MS_DATA);
		return;
	}
	if (c->n_accepted == 0) {
		/* no recipient took it: no DATA at all */
		mta_tx_end(c);
		return;
	}
	mta_send(c, "DATA\r\n");
	mta_expect(c, MS_DATA);
}

/* the accepted recipients get the outcome of DATA or of the end of data */
static void
mta_accepted_set(struct mta_conn *c, const struct mta_outcome *o)
{
	struct mta_job *j = c->job;

	for (size_t i = 0; i < j->b->n_rcpts; i++)
		if (j->rs[i] == R_ACCEPTED)
			mta_rcpt_set(&j->b->rcpts[i], o->st, o->code, o->enhanced, o->text);
}

static void mta_body_fill(struct mta_conn *);

static void
mta_on_data(struct mta_conn *c)
{
	struct mta_outcome o;

	if (c->reply.code == 354) {
		if (c->n_accepted == 0) {
			/*
			 * Pipelined, every recipient refused, yet the server wants
			 * the data (RFC 2920 3.1 says it should not): an empty end of
			 * data keeps us in step, and no message goes out
			 */
			c->no_rcpt_data = true;
			mta_send(c, ".\r\n");
			mta_expect(c, MS_DOT);
			return;
		}
		c->sent = 0;
		c->bol = true;
		c->cr = false;
		c->state = MS_BODY;
		mta_body_fill(c);
		return;
	}
	mta_outcome(&c->reply, &o);
	if (o.st == DELIVERY_OK || c->reply.code / 100 == 3) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.5.0",
		    "unexpected reply %d from %s port %u to DATA", c->reply.code, c->addr,
		    c->port);
		return;
	}
	if (!c->mail_failed)
		mta_accepted_set(c, &o);
	mta_tx_end(c);
}

/*
 * On the way out (RFC 5321 4.5.2) a line that starts with '.' gets one more;
 * and every bare CR or LF becomes CRLF (2.3.8: a client MUST NOT send them
 * otherwise). So whatever the spool holds, no receiver can find an end of data
 * in it that we did not put there (SMTP smuggling: "<LF>.<CR><LF>" and kin).
 * out needs room for 2 * n + 4 octets.
 */
static size_t
mta_stuff(struct mta_conn *c, const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = in[i];

		if (c->cr) {
			c->cr = false;
			out[o++] = '\r';
			out[o++] = '\n';
			c->bol = true;
			if (ch == '\n')
				continue;
		}
		if (ch == '\r') {
			c->cr = true;
			continue;
		}
		if (ch == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			c->bol = true;
			continue;
		}
		if (c->bol && ch == '.')
			out[o++] = '.';
		c->bol = false;
		out[o++] = ch;
	}
	return o;
}

/* the message from the queue file, a chunk at a time while the socket keeps up */
static void
mta_body_fill(struct mta_conn *c)
{
	struct mta *m = c->mta;
	struct mta_job *j = c->job;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (evbuffer_get_length(out) < MTA_OUT_HIGH) {
		uint64_t left = j->b->size - c->sent;
		size_t want = left < MTA_CHUNK ? (size_t)left : MTA_CHUNK;
		ssize_t n;

		if (left == 0) {
			/* the last line ends in CRLF, then the end of data (4.1.1.4) */
			if (c->cr || !c->bol)
				evbuffer_add(out, "\r\n", 2);
			evbuffer_add(out, ".\r\n", 3);
			mta_expect(c, MS_DOT);
			return;
		}
		n = pread(j->fd, m->chunk, want, j->b->data_offset + (off_t)c->sent);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			/*
			 * Never the final dot after a short read: that would deliver
			 * a truncated message. Closing mid-data makes the server drop it.
			 */
			mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.3.0",
			    "cannot read the queue file of MID %" PRIu64 ": %s", j->b->mid,
			    n == 0 ? "shorter than its envelope says" : strerror(errno));
			return;
		}
		c->sent += (uint64_t)n;
		evbuffer_add(out, m->stuffed, mta_stuff(c, m->chunk, (size_t)n, m->stuffed));
	}
	/* RFC 5321 4.5.3.2.5: the timer runs per block; the socket took the last one */
	mta_expect(c, MS_BODY);
}

/* a reply while the message is still going out: the server gave up on it */
static void
mta_on_body_reply(struct mta_conn *c)
{
	struct mta_outcome o;

	mta_outcome(&c->reply, &o);
	if (o.st == DELIVERY_OK || c->reply.code / 100 == 3)
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.5.0",
		    "unexpected reply %d from %s port %u while sending the message",
		    c->reply.code, c->addr, c->port);
	else
		mta_conn_abort(c, false, o.st, o.code, o.enhanced, "%s", o.text);
}

static void
mta_on_dot(struct mta_conn *c)
{
	struct mta_job *j = c->job;
	struct log_ids ids = { .dcid = c->dcid, .mid = j->b->mid, .rid = -1 };
	struct mta_outcome o;
	char rids[1024];

	if (c->no_rcpt_data) {
		mta_tx_end(c);
		return;
	}
	mta_outcome(&c->reply, &o);
	if (c->reply.code / 100 == 3) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.5.0",
		    "unexpected reply %d from %s port %u to the end of data", c->reply.code,
		    c->addr, c->port);
		return;
	}
	mta_accepted_set(c, &o);
	if (o.st == DELIVERY_OK)
		maillog(LOG_INFO, &ids, "Message done DCID %" PRIu64 " MID %" PRIu64
		    " to RID %s", c->dcid, j->b->mid, mta_rids(j, R_ACCEPTED, rids, sizeof(rids)));
	mta_tx_end(c);
}

/* one reply has arrived whole: what it means depends on what we were waiting for */
static void
mta_conn_reply(struct mta_conn *c)
{
	const struct smtp_client_reply *r = &c->reply;
	int cls = r->code / 100;

	if (c->state == MS_READY || c->state == MS_QUIT) {
		/* QUIT's 221, or a server closing an idle connection (421) */
		mta_conn_close(c);
		return;
	}
	if (r->code == 421) {
		/* RFC 5321 3.8: the server is closing the channel; nothing more is read */
		struct mta_outcome o;

		mta_outcome(r, &o);
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, o.code, o.enhanced, "%s", o.text);
		return;
	}
	switch (c->state) {
	case MS_GREETING:
		/* RFC 5321 3.1: a 554 (or 4xx) greeting still wants our QUIT */
		if (cls != 2)
			mta_conn_refused(c);
		else
			mta_send_ehlo(c);
		break;
	case MS_EHLO:
		if (cls == 2) {
			smtp_client_ext_parse(r, &c->ext);
			mta_conn_session_ready(c);
		} else if (cls == 5) {
			/* RFC 5321 3.2: a server that knows no EHLO may know HELO */
			mta_send(c, "HELO %s\r\n", c->mta->hostname);
			mta_expect(c, MS_HELO);
		} else
			mta_conn_refused(c);
		break;
	case MS_HELO:
		if (cls == 2)
			mta_conn_session_ready(c);
		else
			mta_conn_refused(c);
		break;
	case MS_STARTTLS:
		if (r->code == 220)
			mta_tls_start(c);
		else if (c->job != NULL)
			/* RFC 3207 4: opportunistic, so go on in plain text */
			mta_tx_start(c);
		else
			mta_conn_next(c);
		break;
	case MS_RSET:
		if (cls == 2)
			mta_tx_start(c);
		else
			mta_conn_refused(c);
		break;
	case MS_MAIL:
		mta_on_mail(c);
		break;
	case MS_RCPT:
		mta_on_rcpt(c);
		break;
	case MS_DATA:
		mta_on_data(c);
		break;
	case MS_BODY:
		mta_on_body_reply(c);
		break;
	case MS_DOT:
		mta_on_dot(c);
		break;
	default:
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.5.0",
		    "unexpected reply %d from %s port %u while %s", r->code, c->addr, c->port,
		    mta_states[c->state].what);
		break;
	}
}

/*
 * Bufferevent callbacks
 */

static void
mta_read_cb(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;

	(void)bev;
	while (!c->closing && c->state != MS_TLS) {
		/* c->bev, not bev: STARTTLS replaces it inside the loop */
		struct evbuffer *in = bufferevent_get_input(c->bev);
		struct evbuffer_iovec v;
		enum smtp_client_reply_status st;
		size_t used;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		st = smtp_client_reply_feed(&c->reply, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (st == SMTP_CLIENT_REPLY_MORE)
			continue;
		if (st == SMTP_CLIENT_REPLY_ERROR) {
			/* out of step with the server: nothing it says can be trusted now */
			mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.5.0",
			    "bad reply from %s port %u while %s: %s", c->addr, c->port,
			    mta_states[c->state].what, smtp_client_reply_error(&c->reply));
			return;
		}
		mta_conn_reply(c);
		if (!c->closing && c->state != MS_TLS)
			smtp_client_reply_init(&c->reply);
	}
}

static void
mta_write_cb(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;

	(void)bev;
	if (!c->closing && c->state == MS_BODY)
		mta_body_fill(c);
}

static void
mta_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct mta_conn *c = arg;
	int err = errno;

	(void)bev;
	if (c->closing)
		return;
	if (c->state == MS_TLS) {
		if (what & BEV_EVENT_CONNECTED)
			mta_tls_done(c);
		else
			mta_tls_failed(c);
		return;
	}
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (c->state == MS_READY || c->state == MS_QUIT) {
		mta_conn_close(c);
		return;
	}
	if ((what & BEV_EVENT_EOF) || err == 0)
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.4.2",
		    "lost connection with %s port %u while %s", c->addr, c->port,
		    mta_states[c->state].what);
	else
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.4.2",
		    "lost connection with %s port %u while %s: %s", c->addr, c->port,
		    mta_states[c->state].what, strerror(err));
}

/*
 * Connecting
 */

static void
mta_conn_connected(struct mta_conn *c)
{
	struct mta *m = c->mta;
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	char src[INET6_ADDRSTRLEN] = "unknown";
	struct log_ids ids = { .rid = -1 };
	uint16_t sport;

	if ((c->bev = bufferevent_socket_new(m->base, c->fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
		return;
	}
	if (getsockname(c->fd, (struct sockaddr *)&local, &len) == 0)
		mta_sa_text(&local, src, sizeof(src), &sport);
	c->fd = -1;
	bufferevent_setwatermark(c->bev, EV_WRITE, MTA_OUT_LOW, 0);
	bufferevent_setcb(c->bev, mta_read_cb, mta_write_cb, mta_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->dcid = ids.dcid = ++m->last_dcid;
	if (c->job != NULL)
		c->job->b->dcid = c->dcid;
	maillog(LOG_INFO, &ids, "New SMTP DCID %" PRIu64 " interface %s address %s port %u",
	    c->dcid, src, c->addr, c->port);
	mta_expect(c, MS_GREETING);
}

static void
mta_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_conn *c = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	if (what & EV_TIMEOUT) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.4.1",
		    "connect to %s port %u: timed out", c->addr, c->port);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.4.1", "connect to %s port %u: %s",
		    c->addr, c->port, strerror(err));
		return;
	}
	mta_conn_connected(c);
}

/* a new connection to addrs[ai] of j, which rides on it */
void
mta_conn_open(struct mta *m, struct mta_dest *d, struct mta_job *j)
{
	const struct mta_addr *a = &j->addrs[j->ai];
	struct mta_conn *c;
	struct timeval tv;
	socklen_t salen;

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->ev_timer = evtimer_new(m->base, mta_conn_timer_cb, c)) == NULL ||
	    (c->ev_free = evtimer_new(m->base, mta_conn_free_cb, c)) == NULL) {
		if (c != NULL && c->ev_timer != NULL)
			event_free(c->ev_timer);
		free(c);
		mta_job_fail(j, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
		mta_job_finish(j);
		return;
	}
	c->mta = m;
	c->dest = d;
	c->fd = -1;
	c->ss = a->ss;
	mta_sa_text(&a->ss, c->addr, sizeof(c->addr), &c->port);
	util_strlcpy(c->sni, a->name != NULL ? a->name : "", sizeof(c->sni));
	smtp_client_reply_init(&c->reply);
	TAILQ_INSERT_TAIL(&m->conns, c, entry);
	c->counted = true;
	m->n_conns++;
	d->n_conns++;
	d->refs++;
	c->job = j;
	j->conn = c;
	c->state = MS_CONNECTING;

	salen = a->ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
	c->fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.4.1", "connect to %s port %u: %s",
		    c->addr, c->port, strerror(errno));
		return;
	}
	if (connect(c->fd, (const struct sockaddr *)&a->ss, salen) == 0) {
		mta_conn_connected(c);
		return;
	}
	if (errno != EINPROGRESS) {
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.4.1", "connect to %s port %u: %s",
		    c->addr, c->port, strerror(errno));
		return;
	}
	tv.tv_sec = m->to.connect / 1000;
	tv.tv_usec = (m->to.connect % 1000) * 1000;
	if ((c->ev_connect = event_new(m->base, c->fd, EV_WRITE, mta_connect_cb, c)) == NULL ||
	    event_add(c->ev_connect, &tv) == -1)
		mta_conn_abort(c, false, DELIVERY_TEMPFAIL, 0, "4.3.0", "out of memory");
}

/*
 * Between transactions
 */

/* a kept connection starts its next transaction with RSET */
void
mta_conn_take(struct mta_conn *c, struct mta_job *j)
{
	c->job = j;
	j->conn = c;
	j->b->dcid = c->dcid;
	mta_send(c, "RSET\r\n");
	mta_expect(c, MS_RSET);
}

/* a transaction is over: keep the connection for the next batch, for a while */
static void
mta_conn_next(struct mta_conn *c)
{
	if (c->closing)
		return;
	if (c->n_msgs >= MTA_MSGS_PER_CONN) {
		mta_conn_quit(c);
		return;
	}
	mta_expect(c, MS_READY);
	mta_pump_later(c->mta);
}
