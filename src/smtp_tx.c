/*
 * smtp_tx.c: the mail transaction of an inbound session, from MAIL to the 250
 * (RFC 5321 3.3). MAIL checks the session's limits and the spool's room and
 * takes a MID; RCPT checks the recipient against the policy, the RAT and the
 * recipient limits; DATA opens the spool file and streams the message through
 * the data filter; at the real end of data the message is refused or handed to
 * the spool's committer, and the 250 waits for its "durable" callback.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include "hostcount.h"
#include "io.h"
#include "server.h"
#include "smtp_session_int.h"
#include "spool.h"
#include "util.h"

void
smtp_tx_free(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	if (tx == NULL)
		return;
	if (tx->msg != NULL)
		spool_msg_abort(tx->msg);
	for (size_t i = 0; i < tx->n_rcpts && tx->rcpts != NULL; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	smtp_ipmm_tx_free(tx->mm);
	free(tx);
	s->tx = NULL;
	s->ids.mid = 0;
}

/* the transaction ends without a message: RSET, HELO/EHLO, QUIT, a failure, a close */
void
smtp_tx_abort(struct smtp_session *s, const char *why)
{
	if (s->tx == NULL)
		return;
	maillog(LOG_INFO, &s->ids, "Message aborted MID %" PRIu64 " %s", s->tx->mid, why);
	smtp_tx_free(s);
}

static int
tx_add_rcpt(struct smtp_tx *tx, const char *addr)
{
	if (tx->n_rcpts == tx->cap_rcpts) {
		size_t cap = tx->cap_rcpts ? tx->cap_rcpts * 2 : 8;
		char **r = realloc(tx->rcpts, cap * sizeof(*r));
		if (r == NULL)
			return -1;
		tx->rcpts = r;
		tx->cap_rcpts = cap;
	}
	if ((tx->rcpts[tx->n_rcpts] = strdup(addr)) == NULL)
		return -1;
	tx->n_rcpts++;
	return 0;
}

/* MAIL's parameters (RFC 1870 SIZE, RFC 6152 BODY); false when a reply was sent */
static bool
mail_params(struct smtp_session *s, const struct smtp_params *ps, const char **body, bool merge)
{
	for (size_t i = 0; i < ps->n; i++) {
		const struct smtp_param *p = &ps->p[i];
		if (strcmp(p->key, "SIZE") == 0) {
			uint64_t n;
			if (!p->has_value || smtp_parse_size_value(&p->value, &n) == -1) {
				session_reply_echo(s, RPL_UNKNOWN_VALUE, p->value.p, p->value.len);
				return false;
			}
			/* saturated, never wrapped: any number of digits is just "too big" */
			if (n > s->pol->max_message_size) {
				char d[64];
				snprintf(d, sizeof(d), "SIZE %" PRIu64 " above limit %" PRIu64, n,
				    s->pol->max_message_size);
				session_reply(s, RPL_SIZE_EXCEEDED, NULL, d);
				return false;
			}
		} else if (strcmp(p->key, "BODY") == 0) {
			if (p->has_value && util_span_ieq(p->value.p, p->value.len, "7BIT"))
				*body = "7BIT";
			else if (p->has_value && util_span_ieq(p->value.p, p->value.len, "8BITMIME"))
				*body = "8BITMIME";
			else {
				session_reply_echo(s, RPL_UNKNOWN_VALUE, p->value.p, p->value.len);
				return false;
			}
		} else if (merge && strcmp(p->key, "VERSION") == 0) {
			/* XMRG FROM's VERSION=1: the only version of the protocol */
			if (!p->has_value || !util_span_ieq(p->value.p, p->value.len, "1")) {
				session_reply_echo(s, RPL_UNKNOWN_VALUE, p->value.p, p->value.len);
				return false;
			}
		} else if (strcmp(p->key, "AUTH") == 0 &&
		    (session_auth_offered(s) || s->authenticated)) {
			/* RFC 4954 5: taken where AUTH is offered (or done); the value is not trusted */
			char who[SMTP_PATH_MAX + 1];
			if (!p->has_value ||
			    smtp_xtext_decode(&p->value, who, sizeof(who)) < 0) {
				session_reply_echo(s, RPL_SYNTAX, p->key_raw.p,
				    (size_t)(p->value.p + p->value.len - p->key_raw.p));
				return false;
			}
		} else {
			session_reply_echo(s, RPL_PARAM_UNRECOGNIZED, p->key_raw.p, p->key_raw.len);
			return false;
		}
	}
	return true;
}

/* is this sender, by address or by domain, one that must use TLS (replies.md 2)? */
static bool
tls_required_sender(const struct policy *pol, const struct smtp_path *path)
{
	for (size_t i = 0; i < pol->n_tls_required_senders; i++) {
		const char *e = pol->tls_required_senders[i];
		if (strchr(e, '@') != NULL ? strcasecmp(e, path->addr) == 0 :
		    (path->domain[0] != '\0' && strcasecmp(e, path->domain) == 0))
			return true;
	}
	return false;
}

void
smtp_tx_mail(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	if (smtp_tx_begin(s, cl, false))
		session_reply(s, RPL_MAIL_OK, s->tx->sender, NULL);
}

/* MAIL FROM and XMRG FROM: every check, then the transaction with its MID */
bool
smtp_tx_begin(struct smtp_session *s, const struct smtp_cmdline *cl, bool merge)
{
	struct smtp_path path;
	struct smtp_params params;
	struct smtp_span bad;
	const char *body = NULL;
	char esc[SMTP_PATH_MAX * 4 + 1], d[64];
	uint64_t mid;

	if (!s->helo_done) {
		session_reply(s, RPL_HELO_FIRST, NULL, NULL);
		return false;
	}
	if (s->tx != NULL) {
		session_reply(s, RPL_NESTED_MAIL, NULL, NULL);
		return false;
	}
	if (s->pol->max_messages_per_connection > 0 &&
	    s->messages >= s->pol->max_messages_per_connection) {
		snprintf(d, sizeof(d), "limit %u", s->pol->max_messages_per_connection);
		session_reply(s, RPL_TOO_MANY_MESSAGES, NULL, d);
		return false;
	}
	if (smtp_parse_path_arg(&cl->arg, "FROM", true, false, &path, &params, &bad) !=
	    SMTP_PARSE_OK) {
		session_reply_echo(s, RPL_SYNTAX, bad.p, bad.len);
		return false;
	}
	if (!mail_params(s, &params, &body, merge))
		return false;
	if (s->pol->auth == MODE_REQUIRED && !s->authenticated) {
		session_reply(s, RPL_AUTH_REQUIRED, NULL, NULL);
		return false;
	}
	if (!io_tls_active(s->io) && tls_required_sender(s->pol, &path)) {
		session_reply(s, RPL_SENDER_STARTTLS, NULL, path.addr);
		return false;
	}
	if (spool_count(s->srv->spool) >= session_limits(s)->queue_max_messages ||
	    spool_bytes(s->srv->spool) >= session_limits(s)->queue_max_bytes) {
		session_reply(s, RPL_QUEUE_FULL, NULL, NULL);
		return false;
	}
	if (spool_space_low(s->srv->spool)) {
		session_reply(s, RPL_RESOURCES_LOW, NULL, "spool free space below min_free_disk");
		return false;
	}
	if ((mid = spool_next_mid(s->srv->spool)) == 0) {
		session_reply(s, RPL_SERVER_ERROR, NULL, "no message ID available");
		return false;
	}
	if (spool_fault_enomem(s->srv->spool) || (s->tx = calloc(1, sizeof(*s->tx))) == NULL) {
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		return false;
	}
	s->tx->mid = mid;
	s->tx->body = body;
	memcpy(s->tx->sender, path.addr, path.addr_len + 1);
	s->ids.mid = mid;
	util_escape(esc, sizeof(esc), path.addr, path.addr_len);
	maillog(LOG_INFO, &s->ids, "Start MID %" PRIu64 " ICID %" PRIu64, mid, s->ids.icid);
	maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " ICID %" PRIu64 " From: <%s>", mid,
	    s->ids.icid, esc);
	return true;
}

/* may this recipient be taken? relay policies take any; accept policies pass the RAT */
static bool
rcpt_allowed(const struct smtp_session *s, const struct smtp_path *path)
{
	/* the reference's SMTP AUTH relay: an authenticated client may relay */
	if (s->pol->action == ACTION_RELAY || s->authenticated)
		return true;
	if (!s->lc->public)
		return true;
	return hat_rat_accepts(s->lc, path->addr, path->domain);
}

void
smtp_tx_rcpt(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	struct smtp_path path;
	struct smtp_params params;
	struct smtp_span bad;
	struct smtp_tx *tx = s->tx;
	char esc[SMTP_PATH_MAX * 4 + 1], d[64];

	if (tx == NULL) {
		session_reply(s, RPL_MAIL_FIRST, NULL, NULL);
		return;
	}
	if (tx->mm != NULL && smtp_ipmm_in_parts(tx->mm)) {
		session_reply(s, RPL_RECEIVING_PARTS, NULL, NULL);
		return;
	}
	if (smtp_parse_path_arg(&cl->arg, "TO", false, true, &path, &params, &bad) !=
	    SMTP_PARSE_OK) {
		session_reply_echo(s, RPL_SYNTAX, bad.p, bad.len);
		return;
	}
	/* no RCPT parameter is advertised (no DSN): every one is unknown */
	if (params.n > 0) {
		session_reply_echo(s, RPL_PARAM_UNRECOGNIZED, params.p[0].key_raw.p,
		    params.p[0].key_raw.len);
		return;
	}
	if (s->pol->max_recipients_per_message > 0 &&
	    tx->n_rcpts >= s->pol->max_recipients_per_message) {
		snprintf(d, sizeof(d), "limit %u", s->pol->max_recipients_per_message);
		session_reply(s, RPL_TOO_MANY_RCPTS, NULL, d);
		return;
	}
	if (s->pol->max_recipients_per_hour > 0 &&
	    hostcount_rcpts_last_hour(s->srv->hosts, &s->haddr, time(NULL)) >=
	    s->pol->max_recipients_per_hour) {
		snprintf(d, sizeof(d), "limit %u per hour", s->pol->max_recipients_per_hour);
		session_reply(s, RPL_RCPTS_PER_HOUR, NULL, d);
		return;
	}
	util_escape(esc, sizeof(esc), path.addr, path.addr_len);
	if (!rcpt_allowed(s, &path)) {
		maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " ICID %" PRIu64 " To: <%s> Rejected by RAT",
		    tx->mid, s->ids.icid, esc);
		session_reply(s, RPL_RAT_REJECT, NULL, esc);
		return;
	}
	/* a merge keeps its recipients in the job file, with their variables */
	if (tx->mm != NULL) {
		if (!smtp_ipmm_bind(s, path.addr))
			return;
	} else if (tx_add_rcpt(tx, path.addr) == -1) {
		/* the hour counts what was accepted; an allocation failure costs a retry */
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		return;
	}
	if (s->pol->max_recipients_per_hour > 0)
		(void)hostcount_rcpt_add(s->srv->hosts, &s->haddr, time(NULL));
	struct log_ids ids = s->ids;
	ids.rid = (int64_t)tx->n_rcpts - 1;
	maillog(LOG_INFO, &ids, "MID %" PRIu64 " ICID %" PRIu64 " RID %zu To: <%s>", tx->mid,
	    s->ids.icid, tx->n_rcpts - 1, esc);
	session_reply(s, RPL_RCPT_OK, path.addr, NULL);
}

/* the data filter's sink: message bytes go to the spool file */
static int
data_to_spool(void *arg, const char *buf, size_t len)
{
	struct smtp_tx *tx = arg;

	if (spool_msg_write(tx->msg, buf, len) == -1) {
		tx->write_errno = errno;
		return -1;
	}
	return 0;
}

/* our trace header (RFC 5321 4.4), the first line of the stored message */
static int
write_received(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	char date[64], buf[1024], forr[SMTP_PATH_MAX + 16] = "";
	int n;

	util_rfc5322_date(date, sizeof(date), time(NULL));
	if (tx->n_rcpts == 1)
		snprintf(forr, sizeof(forr), "\r\n\tfor <%s>", tx->rcpts[0]);
	n = snprintf(buf, sizeof(buf),
	    "Received: from %s ([%s%s])\r\n"
	    "\tby %s (mailgate) with %s id %" PRIu64 " (ICID %" PRIu64 ")%s;\r\n"
	    "\t%s\r\n",
	    s->helo[0] ? s->helo : "unknown", s->addr_v6 ? "IPv6:" : "", s->addr,
	    s->cfg->hostname, s->esmtp ? "ESMTP" : "SMTP", tx->mid, s->ids.icid, forr, date);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		errno = EOVERFLOW;
		return -1;
	}
	return spool_msg_write(tx->msg, buf, (size_t)n);
}

void
smtp_tx_data(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	struct smtp_tx *tx = s->tx;
	struct spool_envelope env;
	struct data_limits dl;

	(void)cl;
	if (tx == NULL) {
		session_reply(s, RPL_MAIL_FIRST, NULL, NULL);
		return;
	}
	if (tx->mm != NULL) {
		session_reply(s, RPL_DATA_IN_MERGE, NULL, NULL);
		return;
	}
	if (tx->n_rcpts == 0) {
		session_reply(s, RPL_RCPT_FIRST, NULL, NULL);
		return;
	}
	/*
	 * RFC 2920 3.1: DATA ends a pipelined group, so the client must wait for the
	 * 354. Bytes already here came before it: an early talker (hostile.md 5).
	 */
	if (io_pending(s->io) > 0) {
		smtp_tx_abort(s, "Receiving aborted: message text before the 354");
		session_reply(s, RPL_SYNC_ERROR, NULL, "message text before the 354");
		return;
	}
	memset(&env, 0, sizeof(env));
	env.mid = tx->mid;
	env.arrival = time(NULL);
	env.icid = s->ids.icid;
	env.listener = s->lc->name;
	env.client = s->addr;
	env.helo = s->helo;
	env.sender = tx->sender;
	env.body = tx->body;
	env.rcpts = (const char *const *)tx->rcpts;
	env.n_rcpts = tx->n_rcpts;
	if ((tx->msg = spool_msg_begin(s->srv->spool, &env)) == NULL ||
	    write_received(s) == -1) {
		char d[128];
		snprintf(d, sizeof(d), "spool: %s", strerror(errno));
		maillog(LOG_WARNING, &s->ids, "MID %" PRIu64 " spool write failed: %s", tx->mid,
		    strerror(errno));
		smtp_tx_abort(s, "Receiving aborted: spool write failed");
		session_reply(s, RPL_SERVER_ERROR, NULL, d);
		return;
	}
	dl.max_size = s->pol->max_message_size;
	dl.max_header_lines = session_limits(s)->max_header_lines;
	data_filter_init(&tx->df, &dl, data_to_spool, tx);
	s->state = S_DATA;
	session_reply(s, RPL_DATA_GO, NULL, NULL);
}

void
smtp_tx_commit_done(void *arg, int err)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;
	char mid[24];

	s->committing = NULL;
	if (err != 0) {
		char d[128];
		snprintf(d, sizeof(d), "spool sync: %s", strerror(err));
		maillog(LOG_WARNING, &s->ids, "MID %" PRIu64 " spool sync failed: %s", tx->mid,
		    strerror(err));
		smtp_tx_abort(s, "Receiving aborted: spool sync failed");
		s->state = S_CMD;
		session_reply(s, RPL_SERVER_ERROR, NULL, d);
	} else {
		/* durable now: only from here on may the client hear 250 (spool.h) */
		snprintf(mid, sizeof(mid), "%" PRIu64, tx->mid);
		maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " queued for delivery", tx->mid);
		smtp_tx_free(s);
		s->messages++;
		s->injection_up = false;
		session_timer_stop(s->ev_injection);
		if (s->lc->public)
			session_timer_arm(s->ev_injection, session_limits(s)->injection_timeout);
		s->state = S_CMD;
		session_reply(s, RPL_ACCEPTED, mid, NULL);
	}
	if (s->state == S_CMD)
		session_after_message(s);
	if (s->state == S_CMD) {
		session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
		io_resume(s->io);
		/* commands pipelined after the final dot were held back until now */
		session_process(s);
	}
}

/* what the data filter's verdict says the client must hear instead of a 250 */
enum smtp_reply_id
smtp_tx_data_failure(struct smtp_session *s, char *d, size_t cap)
{
	struct smtp_tx *tx = s->tx;
	struct data_filter *df = &tx->df;
	enum smtp_reply_id fail = RPL__COUNT;

	if (df->too_big) {
		fail = RPL_MESSAGE_TOO_BIG;
		snprintf(d, cap, "limit %" PRIu64, s->pol->max_message_size);
	} else if (df->too_many_headers) {
		fail = RPL_HEADER_TOO_BIG;
		snprintf(d, cap, "limit %u", session_limits(s)->max_header_lines);
	} else if (df->received > session_limits(s)->max_hops) {
		fail = RPL_TOO_MANY_HOPS;
		snprintf(d, cap, "%u Received: headers, limit %u", df->received,
		    session_limits(s)->max_hops);
	} else if ((df->bare_cr || df->bare_lf) && s->pol->bare_crlf == BARE_CRLF_REJECT) {
		fail = RPL_BARE_CRLF;
		snprintf(d, cap, "bare %s", df->bare_cr ? "CR" : "LF");
	} else if (df->sink_failed) {
		fail = RPL_SERVER_ERROR;
		snprintf(d, cap, "spool write: %s", strerror(tx->write_errno));
		maillog(LOG_WARNING, &s->ids, "MID %" PRIu64 " spool write failed: %s", tx->mid,
		    strerror(tx->write_errno));
	}
	return fail;
}

/* the real end of data was read: refuse the message or hand it to the spool */
static void
session_data_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct data_filter *df = &tx->df;
	enum smtp_reply_id fail;
	char esc[DATA_CAPTURE_MAX * 4 + 1], sender[SMTP_PATH_MAX * 4 + 1], d[128] = "";

	fail = smtp_tx_data_failure(s, d, sizeof(d));
	if (fail != RPL__COUNT) {
		char why[160];
		snprintf(why, sizeof(why), "Receiving aborted: %s", smtp_reply_def(fail)->why);
		smtp_tx_abort(s, why);
		s->state = S_CMD;
		session_reply(s, fail, NULL, d);
		if (s->state == S_CMD)
			session_after_message(s);
		return;
	}
	if (df->have_message_id) {
		util_escape(esc, sizeof(esc), df->message_id, strlen(df->message_id));
		maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " Message-ID '%s'", tx->mid, esc);
	}
	if (df->have_subject) {
		util_escape(esc, sizeof(esc), df->subject, strlen(df->subject));
		maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " Subject '%s'", tx->mid, esc);
	}
	util_escape(sender, sizeof(sender), tx->sender, strlen(tx->sender));
	maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " ready %" PRIu64 " bytes from <%s>", tx->mid,
	    df->size, sender);
	/* the 250 waits for the committer's callback: fsync before reply */
	s->state = S_COMMIT;
	session_timer_stop(s->ev_command);
	io_pause(s->io);
	s->committing = tx->msg;
	tx->msg = NULL;
	spool_msg_commit(s->committing, smtp_tx_commit_done, s);
}

/* feed what has arrived to the data filter; false when it wants more */
bool
smtp_tx_data_input(struct smtp_session *s)
{
	struct evbuffer *in = io_input(s->io);
	struct evbuffer_iovec v[16];
	struct data_filter *df = &s->tx->df;
	size_t used = 0;
	int n;

	/* the TLS filter can leave empty chains: look at the length, not the chains */
	if (evbuffer_get_length(in) == 0)
		return false;
	n = evbuffer_peek(in, -1, NULL, v, ARRAY_LEN(v));
	if (n <= 0)
		return false;
	if (n > (int)ARRAY_LEN(v))
		n = ARRAY_LEN(v);
	for (int i = 0; i < n && !df->done; i++)
		used += data_filter_feed(df, v[i].iov_base, v[i].iov_len);
	if (used == 0 && !df->done)
		return false;
	io_consume(s->io, used);
	session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
	if (df->done) {
		if (s->tx->mm != NULL)
			smtp_ipmm_part_end(s);
		else
			session_data_end(s);
	}
	return true;
}
