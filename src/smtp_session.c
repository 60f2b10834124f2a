/*
 * smtp_session.c: the inbound SMTP state machine (RFC 5321), one per connection.
 *
 * A session is driven by three things: lines and data bytes from io.c, timers,
 * and the spool's "durable now" callback. Commands go through one table: the
 * loop checks what every command shares (verb, stray bytes, arguments where none
 * are allowed), then calls the verb's handler, which checks order and syntax and
 * acts. Replies come only from the reply table (smtp_reply.c), so the bad-command
 * count, the log line of every refusal and the close after a 421 happen in one
 * place (session_reply). The transaction (s->tx) exists from MAIL to the end of
 * the message: "in a transaction" is s->tx != NULL. A session has one way out,
 * session_free(), reached only from io's closed callback, never from inside the
 * command loop.
 *
 * What resets what (RFC 5321 4.1.1.1, 4.1.1.5): HELO/EHLO and RSET drop the
 * transaction; HELO/EHLO also set the greeting. Nothing else is reset.
 */
#include "smtp_session.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "data.h"
#include "dns.h"
#include "hat.h"
#include "hostcount.h"
#include "io.h"
#include "listener.h"
#include "maillog.h"
#include "server.h"
#include "smtp_reply.h"
#include "smtp_syntax.h"
#include "spool.h"
#include "util.h"

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF */
#define SMTP_LINE_MAX	512

enum session_state {
	S_LOOKUP,		/* who is the client? (reverse DNS); input waits */
	S_GREET,		/* waiting out the greet delay: any byte now is an early talker */
	S_CMD,			/* reading command lines */
	S_DATA,			/* reading message data, up to <CRLF>.<CRLF> */
	S_COMMIT,		/* the message is being made durable; input waits */
	S_CLOSING,		/* the last reply is being sent */
};

struct smtp_tx {
	uint64_t mid;
	char sender[SMTP_PATH_MAX + 1];
	const char *body;	/* "7BIT", "8BITMIME" or NULL */
	char **rcpts;
	size_t n_rcpts, cap_rcpts;
	struct spool_msg *msg;	/* from DATA on */
	struct data_filter df;
	int write_errno;	/* the spool write that failed, if one did */
};

struct smtp_session {
	struct smtp_session *next, *prev;
	struct server *srv;
	struct listener *listener;
	struct config *cfg;
	const struct listener_conf *lc;
	const struct policy *pol;
	struct io *io;
	struct log_ids ids;
	char addr[INET6_ADDRSTRLEN];
	bool addr_v6;
	struct sockaddr_storage peer;
	struct hat_addr haddr;		/* the client, for per-host counting */
	bool host_counted;		/* holds one of hostcount's connections */
	char local[INET6_ADDRSTRLEN + 8];
	char helo[SMTP_LINE_MAX];
	bool helo_done;
	bool esmtp;
	enum session_state state;
	unsigned bad_commands;
	unsigned messages;
	bool time_up;			/* max_connection_time passed during a message */
	bool injection_up;		/* injection_timeout passed during a message */
	bool drain_requested;		/* suspended or stopping: 421 at the next command */
	bool output_blocked;		/* paused until the client reads our replies */
	struct event *ev_command;	/* command_timeout */
	struct event *ev_lifetime;	/* max_connection_time */
	struct event *ev_injection;	/* injection_timeout (public listeners) */
	struct event *ev_greet;		/* greet_delay */
	struct smtp_tx *tx;
	struct spool_msg *committing;	/* handed to the spool, waiting for its callback */
	struct dns_query *lookup;	/* the client's reverse name, while S_LOOKUP */
	bool announced;			/* "New SMTP ICID" was logged */
};

struct smtp_cmd {
	const char *verb;
	void (*handler)(struct smtp_session *, const struct smtp_cmdline *);
	unsigned flags;
	const char *help;
};

#define CMD_NO_ARG	0x01	/* an argument is a syntax error (DATA, RSET, QUIT) */

static void cmd_helo(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_ehlo(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_mail(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_rcpt(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_data(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_rset(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_noop(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_quit(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_help(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_vrfy(struct smtp_session *, const struct smtp_cmdline *);
static void cmd_auth(struct smtp_session *, const struct smtp_cmdline *);

static const struct smtp_cmd commands[] = {
	{ "HELO", cmd_helo, 0, "HELO <hostname>" },
	{ "EHLO", cmd_ehlo, 0, "EHLO <hostname>" },
	{ "MAIL", cmd_mail, 0, "MAIL FROM:<sender> [SIZE=<octets>] [BODY=7BIT|8BITMIME]" },
	{ "RCPT", cmd_rcpt, 0, "RCPT TO:<recipient>" },
	{ "DATA", cmd_data, CMD_NO_ARG, "DATA" },
	{ "RSET", cmd_rset, CMD_NO_ARG, "RSET" },
	{ "NOOP", cmd_noop, 0, "NOOP" },
	{ "QUIT", cmd_quit, CMD_NO_ARG, "QUIT" },
	{ "HELP", cmd_help, 0, "HELP [<command>]" },
	{ "VRFY", cmd_vrfy, 0, "VRFY <address>" },
	{ "AUTH", cmd_auth, 0, "AUTH <mechanism> [<initial response>]" },
};

/* the HELP list (replies.md 1): continuation lines get "214- ", the last "214 " */
static const char *const help_lines[] = {
	"auth data ehlo helo",
	"help mail noop quit",
	"rcpt rset vrfy",
};

static void session_process(struct smtp_session *);
static void session_close(struct smtp_session *);
static void session_free(struct smtp_session *);
static void session_greet(struct smtp_session *);
static void tx_abort(struct smtp_session *, const char *why);

/* ---------------------------------------------------------------- helpers */

static const struct limits *
lim(const struct smtp_session *s)
{
	return &s->cfg->limits;
}

static void
timer_arm(struct event *ev, unsigned secs)
{
	struct timeval tv = { .tv_sec = secs, .tv_usec = 0 };

	if (ev != NULL && secs > 0)
		evtimer_add(ev, &tv);
}

static void
timer_stop(struct event *ev)
{
	if (ev != NULL)
		evtimer_del(ev);
}

/*
 * The one way a reply leaves. Every 4xx/5xx also leaves a log line saying why
 * (logs.md), written before the reply so a client that reads the reply finds
 * the line. A bad command past the limit gets the 421 instead of its own reply.
 */
static void
session_reply_code(struct smtp_session *s, enum smtp_reply_id id, int code, const char *arg,
    const char *detail)
{
	const struct smtp_reply_def *d;
	char buf[1024];
	size_t n;

	if (s->state == S_CLOSING)
		return;
	d = smtp_reply_def(id);
	if ((d->flags & REPLY_BAD) && ++s->bad_commands > lim(s)->bad_command_limit) {
		/* the bad command gets the 421 instead; one log line says both */
		maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " Receiving Failed: %s (limit %u; "
		    "the last: %s%s%s)", s->ids.icid, smtp_reply_def(RPL_BAD_COMMAND_LIMIT)->why,
		    lim(s)->bad_command_limit, d->why, detail ? ": " : "", detail ? detail : "");
		id = RPL_BAD_COMMAND_LIMIT;
		code = 0;
		arg = NULL;
		d = smtp_reply_def(id);
	} else if ((code ? code : d->code) >= 400) {
		maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " Receiving Failed: %s%s%s%s",
		    s->ids.icid, d->why, detail ? " (" : "", detail ? detail : "",
		    detail ? ")" : "");
	}
	n = smtp_reply_format_code(buf, sizeof(buf), id, code, arg);
	io_write(s->io, buf, n);
	if (d->flags & REPLY_CLOSE)
		session_close(s);
}

static void
session_reply(struct smtp_session *s, enum smtp_reply_id id, const char *arg,
    const char *detail)
{
	session_reply_code(s, id, 0, arg, detail);
}

/* a reply that echoes client text: made safe (replies.md: 64 printable octets) */
static void
session_reply_echo(struct smtp_session *s, enum smtp_reply_id id, const char *p, size_t len)
{
	char echo[65], esc[300];

	smtp_echo(p, len, echo);
	util_escape(esc, sizeof(esc), p, len < 200 ? len : 200);
	session_reply(s, id, echo, esc);
}

/* a multi-line reply: every line but the last gets '-' after the code */
static void
session_reply_lines(struct smtp_session *s, enum smtp_reply_id first, const char *first_arg,
    enum smtp_reply_id rest, const char *const *args, size_t n_args)
{
	char buf[1024];
	size_t n;

	n = smtp_reply_format(buf, sizeof(buf), first, first_arg);
	if (n_args > 0)
		buf[3] = '-';
	io_write(s->io, buf, n);
	for (size_t i = 0; i < n_args; i++) {
		n = smtp_reply_format(buf, sizeof(buf), rest, args[i]);
		if (i + 1 < n_args)
			buf[3] = '-';
		io_write(s->io, buf, n);
	}
}

static void
session_close(struct smtp_session *s)
{
	if (s->state == S_CLOSING)
		return;
	s->state = S_CLOSING;
	timer_stop(s->ev_command);
	timer_stop(s->ev_lifetime);
	timer_stop(s->ev_injection);
	timer_stop(s->ev_greet);
	io_shutdown(s->io);
}

static void
session_set_ids_mid(struct smtp_session *s, uint64_t mid)
{
	s->ids.mid = mid;
}

/* ---------------------------------------------------------------- transaction */

static void
tx_free(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	if (tx == NULL)
		return;
	if (tx->msg != NULL)
		spool_msg_abort(tx->msg);
	for (size_t i = 0; i < tx->n_rcpts; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	free(tx);
	s->tx = NULL;
	session_set_ids_mid(s, 0);
}

/* the transaction ends without a message: RSET, HELO/EHLO, QUIT, a failure, a close */
static void
tx_abort(struct smtp_session *s, const char *why)
{
	if (s->tx == NULL)
		return;
	maillog(LOG_INFO, &s->ids, "Message aborted MID %" PRIu64 " %s", s->tx->mid, why);
	tx_free(s);
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

/* ---------------------------------------------------------------- commands */

static void
session_reset_greeting(struct smtp_session *s, const struct smtp_cmdline *cl, bool esmtp)
{
	tx_abort(s, "Receiving aborted by a new greeting");
	memcpy(s->helo, cl->arg.p, cl->arg.len);
	s->helo[cl->arg.len] = '\0';
	s->helo_done = true;
	s->esmtp = esmtp;
}

static void
cmd_helo(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	/* the reference takes HELO without an argument (replies.md 1) */
	if (cl->arg.len > 0 && !smtp_valid_helo(cl->arg.p, cl->arg.len)) {
		session_reply_echo(s, RPL_SYNTAX, cl->arg.p, cl->arg.len);
		return;
	}
	session_reset_greeting(s, cl, false);
	session_reply(s, RPL_HELO, s->cfg->hostname, NULL);
}

static void
cmd_ehlo(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	char size[32];
	const char *ext[3];

	if (cl->arg.len == 0) {
		session_reply(s, RPL_EHLO_NEEDS_DOMAIN, NULL, NULL);
		return;
	}
	if (!smtp_valid_helo(cl->arg.p, cl->arg.len)) {
		session_reply_echo(s, RPL_SYNTAX, cl->arg.p, cl->arg.len);
		return;
	}
	session_reset_greeting(s, cl, true);
	snprintf(size, sizeof(size), "SIZE %" PRIu64, s->pol->max_message_size);
	ext[0] = "8BITMIME";
	ext[1] = size;
	ext[2] = "PIPELINING";
	session_reply_lines(s, RPL_EHLO, s->cfg->hostname, RPL_EHLO, ext, ARRAY_LEN(ext));
}

/* MAIL's parameters (RFC 1870 SIZE, RFC 6152 BODY); false when a reply was sent */
static bool
mail_params(struct smtp_session *s, const struct smtp_params *ps, const char **body)
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
		} else {
			session_reply_echo(s, RPL_PARAM_UNRECOGNIZED, p->key_raw.p, p->key_raw.len);
			return false;
		}
	}
	return true;
}

static void
cmd_mail(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	struct smtp_path path;
	struct smtp_params params;
	struct smtp_span bad;
	const char *body = NULL;
	char esc[SMTP_PATH_MAX * 4 + 1], d[64];
	uint64_t mid;

	if (!s->helo_done) {
		session_reply(s, RPL_HELO_FIRST, NULL, NULL);
		return;
	}
	if (s->tx != NULL) {
		session_reply(s, RPL_NESTED_MAIL, NULL, NULL);
		return;
	}
	if (s->pol->max_messages_per_connection > 0 &&
	    s->messages >= s->pol->max_messages_per_connection) {
		snprintf(d, sizeof(d), "limit %u", s->pol->max_messages_per_connection);
		session_reply(s, RPL_TOO_MANY_MESSAGES, NULL, d);
		return;
	}
	if (smtp_parse_path_arg(&cl->arg, "FROM", true, false, &path, &params, &bad) !=
	    SMTP_PARSE_OK) {
		session_reply_echo(s, RPL_SYNTAX, bad.p, bad.len);
		return;
	}
	if (!mail_params(s, &params, &body))
		return;
	if (spool_count(s->srv->spool) >= lim(s)->queue_max_messages ||
	    spool_bytes(s->srv->spool) >= lim(s)->queue_max_bytes) {
		session_reply(s, RPL_QUEUE_FULL, NULL, NULL);
		return;
	}
	if (spool_space_low(s->srv->spool)) {
		session_reply(s, RPL_RESOURCES_LOW, NULL, "spool free space below min_free_disk");
		return;
	}
	if ((mid = spool_next_mid(s->srv->spool)) == 0) {
		session_reply(s, RPL_SERVER_ERROR, NULL, "no message ID available");
		return;
	}
	if ((s->tx = calloc(1, sizeof(*s->tx))) == NULL) {
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		return;
	}
	s->tx->mid = mid;
	s->tx->body = body;
	memcpy(s->tx->sender, path.addr, path.addr_len + 1);
	session_set_ids_mid(s, mid);
	util_escape(esc, sizeof(esc), path.addr, path.addr_len);
	maillog(LOG_INFO, &s->ids, "Start MID %" PRIu64 " ICID %" PRIu64, mid, s->ids.icid);
	maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " ICID %" PRIu64 " From: <%s>", mid,
	    s->ids.icid, esc);
	session_reply(s, RPL_MAIL_OK, s->tx->sender, NULL);
}

/* may this recipient be taken? relay policies take any; accept policies pass the RAT */
static bool
rcpt_allowed(const struct smtp_session *s, const struct smtp_path *path)
{
	if (s->pol->action == ACTION_RELAY)
		return true;
	if (!s->lc->public)
		return true;
	return hat_rat_accepts(s->lc, path->addr, path->domain);
}

static void
cmd_rcpt(struct smtp_session *s, const struct smtp_cmdline *cl)
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
	/* the hour counts what was accepted; an allocation failure costs a retry, not the session */
	if (tx_add_rcpt(tx, path.addr) == -1) {
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

static void
cmd_data(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	struct smtp_tx *tx = s->tx;
	struct spool_envelope env;
	struct data_limits dl;

	(void)cl;
	if (tx == NULL) {
		session_reply(s, RPL_MAIL_FIRST, NULL, NULL);
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
		tx_abort(s, "Receiving aborted: message text before the 354");
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
		tx_abort(s, "Receiving aborted: spool write failed");
		session_reply(s, RPL_SERVER_ERROR, NULL, d);
		return;
	}
	dl.max_size = s->pol->max_message_size;
	dl.max_header_lines = lim(s)->max_header_lines;
	data_filter_init(&tx->df, &dl, data_to_spool, tx);
	s->state = S_DATA;
	session_reply(s, RPL_DATA_GO, NULL, NULL);
}

static void
cmd_rset(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	(void)cl;
	tx_abort(s, "Receiving aborted by RSET");
	session_reply(s, RPL_OK, NULL, NULL);
}

static void
cmd_noop(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	(void)cl;
	session_reply(s, RPL_OK, NULL, NULL);
}

static void
cmd_quit(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	(void)cl;
	tx_abort(s, "Receiving aborted by QUIT");
	session_reply(s, RPL_QUIT, s->cfg->hostname, NULL);
	session_close(s);
}

static const struct smtp_cmd *
cmd_find(const char *verb, size_t len)
{
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		if (util_span_ieq(verb, len, commands[i].verb))
			return &commands[i];
	return NULL;
}

static void
cmd_help(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	const char *lines[ARRAY_LEN(help_lines)];
	char buf[ARRAY_LEN(help_lines)][64];
	const struct smtp_cmd *c;

	if (cl->arg.len > 0) {
		if ((c = cmd_find(cl->arg.p, cl->arg.len)) == NULL) {
			session_reply_echo(s, RPL_HELP_UNKNOWN, cl->arg.p, cl->arg.len);
			return;
		}
		session_reply(s, RPL_HELP_TOPIC, c->help, NULL);
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(help_lines); i++) {
		/* "214- auth ..." but "214 rcpt ...": the reference's own spacing */
		snprintf(buf[i], sizeof(buf[i]), "%s%s", i + 1 < ARRAY_LEN(help_lines) ? " " : "",
		    help_lines[i]);
		lines[i] = buf[i];
	}
	session_reply_lines(s, RPL_HELP, NULL, RPL_HELP_TOPIC, lines, ARRAY_LEN(lines));
}

static void
cmd_vrfy(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	(void)cl;
	session_reply(s, RPL_VRFY, NULL, NULL);
}

static void
cmd_auth(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	(void)cl;
	if (s->tx != NULL) {
		session_reply(s, RPL_AUTH_IN_TX, NULL, NULL);
		return;
	}
	/* SMTP AUTH is its own issue: until then no policy offers it */
	session_reply(s, RPL_AUTH_NOT_AVAILABLE, NULL, NULL);
}

/* ---------------------------------------------------------------- the loop */

static void
session_line(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_cmdline cl;
	const struct smtp_cmd *cmd;

	smtp_split_command(line, len, &cl);
	cmd = cl.verb_ok ? cmd_find(cl.verb, strlen(cl.verb)) : NULL;
	if (cmd == NULL && cl.bad_bytes) {
		/* "RSET<LF>QUIT": a known verb with a stray byte is a syntax error (replies.md 3) */
		size_t v = 0;
		while (v < len && v < SMTP_VERB_MAX && (isalnum((unsigned char)line[v]) ||
		    line[v] == '-'))
			v++;
		if (v > 0 && v < len && line[v] != ' ' && cmd_find(line, v) != NULL) {
			session_reply_echo(s, RPL_SYNTAX, line, len);
			return;
		}
	}
	if (cmd == NULL) {
		char esc[128];
		util_escape(esc, sizeof(esc), line, len < 30 ? len : 30);
		session_reply(s, RPL_NOT_RECOGNIZED, NULL, esc);
		return;
	}
	if (s->drain_requested) {
		session_reply(s, RPL_SERVICE_UNAVAILABLE, s->cfg->hostname,
		    "listener suspended or server stopping");
		return;
	}
	/* a NUL, bare CR/LF or 8-bit byte: never parse past it (hostile.md 9) */
	if (cl.bad_bytes) {
		session_reply_echo(s, RPL_SYNTAX, cl.arg.len ? cl.arg.p : line,
		    cl.arg.len ? cl.arg.len : len);
		return;
	}
	if ((cmd->flags & CMD_NO_ARG) && cl.arg.len > 0) {
		session_reply_echo(s, RPL_SYNTAX, cl.arg.p, cl.arg.len);
		return;
	}
	cmd->handler(s, &cl);
}

/* after a message, accepted or not: the checks that wait for the end of data */
static void
session_after_message(struct smtp_session *s)
{
	if (s->drain_requested)
		session_reply(s, RPL_SERVICE_UNAVAILABLE, s->cfg->hostname,
		    "listener suspended or server stopping");
	else if (s->time_up)
		session_reply(s, RPL_CONNECTION_TIME, NULL, NULL);
	else if (s->injection_up)
		session_reply(s, RPL_INJECTION_TIMEOUT, NULL, NULL);
}

static void
commit_done(void *arg, int err)
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
		tx_abort(s, "Receiving aborted: spool sync failed");
		s->state = S_CMD;
		session_reply(s, RPL_SERVER_ERROR, NULL, d);
	} else {
		/* durable now: only from here on may the client hear 250 (spool.h) */
		snprintf(mid, sizeof(mid), "%" PRIu64, tx->mid);
		maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " queued for delivery", tx->mid);
		tx_free(s);
		s->messages++;
		s->injection_up = false;
		timer_stop(s->ev_injection);
		if (s->lc->public)
			timer_arm(s->ev_injection, lim(s)->injection_timeout);
		s->state = S_CMD;
		session_reply(s, RPL_ACCEPTED, mid, NULL);
	}
	if (s->state == S_CMD)
		session_after_message(s);
	if (s->state == S_CMD) {
		timer_arm(s->ev_command, lim(s)->command_timeout);
		io_resume(s->io);
		/* commands pipelined after the final dot were held back until now */
		session_process(s);
	}
}

/* the real end of data was read: refuse the message or hand it to the spool */
static void
session_data_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct data_filter *df = &tx->df;
	enum smtp_reply_id fail = RPL__COUNT;
	char esc[DATA_CAPTURE_MAX * 4 + 1], sender[SMTP_PATH_MAX * 4 + 1], d[128] = "";

	if (df->too_big) {
		fail = RPL_MESSAGE_TOO_BIG;
		snprintf(d, sizeof(d), "limit %" PRIu64, s->pol->max_message_size);
	} else if (df->too_many_headers) {
		fail = RPL_HEADER_TOO_BIG;
		snprintf(d, sizeof(d), "limit %u", lim(s)->max_header_lines);
	} else if (df->received > lim(s)->max_hops) {
		fail = RPL_TOO_MANY_HOPS;
		snprintf(d, sizeof(d), "%u Received: headers, limit %u", df->received,
		    lim(s)->max_hops);
	} else if ((df->bare_cr || df->bare_lf) && s->pol->bare_crlf == BARE_CRLF_REJECT) {
		fail = RPL_BARE_CRLF;
		snprintf(d, sizeof(d), "bare %s", df->bare_cr ? "CR" : "LF");
	} else if (df->sink_failed) {
		fail = RPL_SERVER_ERROR;
		snprintf(d, sizeof(d), "spool write: %s", strerror(tx->write_errno));
		maillog(LOG_WARNING, &s->ids, "MID %" PRIu64 " spool write failed: %s", tx->mid,
		    strerror(tx->write_errno));
	}
	if (fail != RPL__COUNT) {
		char why[160];
		snprintf(why, sizeof(why), "Receiving aborted: %s", smtp_reply_def(fail)->why);
		tx_abort(s, why);
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
	timer_stop(s->ev_command);
	io_pause(s->io);
	s->committing = tx->msg;
	tx->msg = NULL;
	spool_msg_commit(s->committing, commit_done, s);
}

/* feed what has arrived to the data filter; false when it wants more */
static bool
session_data(struct smtp_session *s)
{
	struct evbuffer *in = io_input(s->io);
	struct evbuffer_iovec v[16];
	struct data_filter *df = &s->tx->df;
	size_t used = 0;
	int n;

	n = evbuffer_peek(in, -1, NULL, v, ARRAY_LEN(v));
	if (n <= 0)
		return false;
	if (n > (int)ARRAY_LEN(v))
		n = ARRAY_LEN(v);
	for (int i = 0; i < n && !df->done; i++)
		used += data_filter_feed(df, v[i].iov_base, v[i].iov_len);
	io_consume(s->io, used);
	timer_arm(s->ev_command, lim(s)->command_timeout);
	if (df->done)
		session_data_end(s);
	return true;
}

static void
session_process(struct smtp_session *s)
{
	char line[SMTP_LINE_MAX + 1];
	size_t len;

	for (;;) {
		/* a client that does not read its replies gets no more of them */
		if (s->state != S_CLOSING && io_output_full(s->io)) {
			s->output_blocked = true;
			io_pause(s->io);
			return;
		}
		switch (s->state) {
		case S_CMD:
			switch (io_getline(s->io, line, sizeof(line), SMTP_LINE_MAX, &len)) {
			case IO_NEED_MORE:
				return;
			case IO_TOO_LONG:
				timer_arm(s->ev_command, lim(s)->command_timeout);
				session_reply(s, RPL_LINE_TOO_LONG, NULL, NULL);
				break;
			case IO_LINE:
				timer_arm(s->ev_command, lim(s)->command_timeout);
				session_line(s, line, len);
				break;
			}
			break;
		case S_DATA:
			if (!session_data(s))
				return;
			break;
		case S_GREET:
			/* nothing may arrive before the banner (hostile.md 5) */
			timer_stop(s->ev_greet);
			s->state = S_CMD;
			session_reply(s, RPL_SYNC_ERROR, NULL, "input before the banner");
			return;
		case S_LOOKUP:
		case S_COMMIT:
		case S_CLOSING:
			return;
		}
	}
}

/* ---------------------------------------------------------------- events */

static void
on_input(void *arg)
{
	session_process(arg);
}

static void
on_drained(void *arg)
{
	struct smtp_session *s = arg;

	if (s->output_blocked) {
		s->output_blocked = false;
		if (s->state != S_COMMIT)
			io_resume(s->io);
		session_process(s);
	}
}

static void
on_closed(void *arg)
{
	session_free(arg);
}

static const struct io_callbacks session_io = { on_input, on_drained, on_closed };

static void
on_command_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	if (s->state == S_DATA)
		tx_abort(s, "Receiving aborted: timed out waiting for data");
	if (s->state == S_CMD || s->state == S_DATA) {
		s->state = S_CMD;
		session_reply(s, RPL_COMMAND_TIMEOUT, NULL, NULL);
	}
}

static void
on_lifetime(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	/* never cut a message in half: wait for its end (replies.md 2) */
	if (s->state == S_CMD)
		session_reply(s, RPL_CONNECTION_TIME, NULL, NULL);
	else
		s->time_up = true;
}

static void
on_injection(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	if (s->state == S_CMD)
		session_reply(s, RPL_INJECTION_TIMEOUT, NULL, NULL);
	else
		s->injection_up = true;
}

static void
on_greet(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	if (s->state == S_GREET)
		session_greet(s);
}

/* ---------------------------------------------------------------- life */

static void
session_greet(struct smtp_session *s)
{
	char arg[512];

	snprintf(arg, sizeof(arg), "%s %s", s->cfg->hostname, s->pol->banner_text);
	s->state = S_CMD;
	/* anything already here was sent before the banner (hostile.md 5) */
	if (io_pending(s->io) > 0) {
		session_reply(s, RPL_SYNC_ERROR, NULL, "input before the banner");
		return;
	}
	session_reply_code(s, RPL_BANNER, s->pol->banner_code, arg, NULL);
	timer_arm(s->ev_command, lim(s)->command_timeout);
}

static void
session_free(struct smtp_session *s)
{
	if (s->lookup != NULL)
		dns_cancel(s->lookup);
	if (s->committing != NULL) {
		/* the commit goes on and the message will be delivered: nobody to tell */
		spool_msg_forget(s->committing);
		tx_free(s);
	}
	tx_abort(s, "Receiving aborted: connection closed");
	/* a client gone before it was identified was never announced: nothing to close */
	if (s->announced)
		maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " close", s->ids.icid);
	event_free(s->ev_command);
	event_free(s->ev_lifetime);
	if (s->ev_injection)
		event_free(s->ev_injection);
	event_free(s->ev_greet);
	io_free(s->io);
	if (s->host_counted)
		hostcount_conn_close(s->srv->hosts, &s->haddr);
	if (s->prev)
		s->prev->next = s->next;
	else
		s->srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->srv->n_sessions--;
	s->listener->n_sessions--;
	config_unref(s->cfg);
	server_session_gone(s->srv);
	free(s);
}

static void
sockaddr_text(const struct sockaddr *sa, char *out, size_t cap, bool *v6)
{
	*v6 = false;
	out[0] = '\0';
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, cap);
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			inet_ntop(AF_INET, &a->s6_addr[12], out, cap);
		} else {
			inet_ntop(AF_INET6, a, out, cap);
			*v6 = true;
		}
	}
}

struct smtp_session *
smtp_session_next(struct smtp_session *s)
{
	return s->next;
}

void
smtp_session_kill(struct smtp_session *s)
{
	session_free(s);
}

struct listener *
smtp_session_listener(const struct smtp_session *s)
{
	return s->listener;
}

void
smtp_session_drain(struct smtp_session *s)
{
	s->drain_requested = true;
	if (s->state == S_CMD || s->state == S_GREET) {
		s->state = S_CMD;
		session_reply(s, RPL_SERVICE_UNAVAILABLE, s->cfg->hostname,
		    "listener suspended or server stopping");
	}
}

/*
 * The client is identified (its reverse name known or not): log the connection,
 * match the HAT, apply the connection limits, then greet or refuse.
 */
static void
session_admit(struct smtp_session *s, const char *revname, bool verified)
{
	struct server *srv = s->srv;
	const struct hat_rule *rule;
	const struct hat_host *host = NULL;
	const char *action;
	char d[64], name[300];
	unsigned n;

	/* only a verified name may match a HAT host name (config.md) */
	util_escape(name, sizeof(name), revname ? revname : "unknown",
	    strlen(revname ? revname : "unknown"));
	rule = hat_match(s->lc, (struct sockaddr *)&s->peer, verified ? revname : NULL, &host);
	s->pol = rule ? rule->policy : &s->cfg->policy_defaults;
	action = !rule ? "REJECT" :
	    s->pol->action == ACTION_RELAY ? "RELAY" :
	    s->pol->action == ACTION_REJECT ? "REJECT" :
	    s->pol->action == ACTION_TCPREFUSE ? "TCPREFUSE" : "ACCEPT";

	/* a refused TCP connection gets no ICID of its own: the reference logs it as 0 */
	if (rule != NULL && s->pol->action == ACTION_TCPREFUSE)
		s->ids.icid = 0;
	else
		s->ids.icid = ++srv->next_icid;
	s->announced = true;
	maillog(LOG_INFO, &s->ids,
	    "New SMTP ICID %" PRIu64 " interface %s (%s) address %s reverse dns host %s "
	    "verified %s", s->ids.icid, s->lc->name, s->local, s->addr, name,
	    verified ? "yes" : "no");
	maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " %s SG %s match %s", s->ids.icid, action,
	    rule ? rule->group : "(none)", host ? host->text : "(none)");
	if (rule != NULL && s->pol->action == ACTION_TCPREFUSE) {
		session_close(s);
		return;
	}

	timer_arm(s->ev_lifetime, lim(s)->max_connection_time);
	if (s->lc->public)
		timer_arm(s->ev_injection, lim(s)->injection_timeout);

	if (rule == NULL || s->pol->action == ACTION_REJECT) {
		char arg[512];
		snprintf(arg, sizeof(arg), "%s %s", s->cfg->hostname, s->pol->reject_text);
		session_reply_code(s, RPL_HAT_REJECT, s->pol->reject_code, arg,
		    rule ? rule->group : "no sender group matched");
		return;
	}
	if (srv->stopping || s->listener->suspended) {
		session_reply(s, RPL_SERVICE_UNAVAILABLE, s->cfg->hostname,
		    srv->stopping ? "server stopping" : "listener suspended");
		return;
	}
	if (srv->n_sessions > lim(s)->max_connections) {
		snprintf(d, sizeof(d), "limit %u", lim(s)->max_connections);
		session_reply(s, RPL_CONN_TO_HOST, NULL, d);
		return;
	}
	if (s->listener->n_sessions > s->lc->max_connections) {
		snprintf(d, sizeof(d), "limit %u", s->lc->max_connections);
		session_reply(s, RPL_CONN_TO_LISTENER, NULL, d);
		return;
	}
	if ((n = hostcount_conn_open(srv->hosts, &s->haddr)) > 0)
		s->host_counted = true;
	if (s->pol->max_connections_per_host > 0 && n > s->pol->max_connections_per_host) {
		snprintf(d, sizeof(d), "limit %u", s->pol->max_connections_per_host);
		session_reply(s, RPL_CONN_FROM_HOST, NULL, d);
		return;
	}
	if (s->pol->greet_delay > 0) {
		s->state = S_GREET;
		timer_arm(s->ev_greet, s->pol->greet_delay);
		return;
	}
	session_greet(s);
}

static void
session_identified(void *arg, const char *name, bool verified)
{
	struct smtp_session *s = arg;

	s->lookup = NULL;
	session_admit(s, name, verified);
}

void
smtp_session_accept(struct listener *l, int fd, const struct sockaddr *sa, socklen_t salen,
    const char *local_text)
{
	struct server *srv = l->srv;
	struct smtp_session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return;
	}
	memcpy(&s->peer, sa, salen < sizeof(s->peer) ? salen : sizeof(s->peer));
	s->srv = srv;
	s->cfg = config_ref(srv->cfg);
	s->lc = config_listener(s->cfg, l->name);
	s->ids.rid = -1;
	sockaddr_text(sa, s->addr, sizeof(s->addr), &s->addr_v6);
	hat_addr_from_sockaddr(sa, &s->haddr);
	util_strlcpy(s->local, local_text, sizeof(s->local));
	s->state = S_LOOKUP;
	s->io = io_new(srv->base, fd, &session_io, s);
	s->ev_command = evtimer_new(srv->base, on_command_timeout, s);
	s->ev_lifetime = evtimer_new(srv->base, on_lifetime, s);
	s->ev_greet = evtimer_new(srv->base, on_greet, s);
	if (s->lc->public)
		s->ev_injection = evtimer_new(srv->base, on_injection, s);
	if (s->io == NULL || s->ev_command == NULL || s->ev_lifetime == NULL ||
	    s->ev_greet == NULL || (s->lc->public && s->ev_injection == NULL)) {
		if (s->io == NULL)
			close(fd);
		if (s->ev_injection)
			event_free(s->ev_injection);
		if (s->ev_command)
			event_free(s->ev_command);
		if (s->ev_lifetime)
			event_free(s->ev_lifetime);
		if (s->ev_greet)
			event_free(s->ev_greet);
		io_free(s->io);
		config_unref(s->cfg);
		free(s);
		return;
	}
	s->listener = l;
	l->n_sessions++;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->n_sessions++;
	io_set_write_timeout(s->io, lim(s)->command_timeout);
	if (!s->cfg->dns.reverse_lookups) {
		session_admit(s, NULL, false);
		return;
	}
	/* the HAT may name hosts: learn the client's verified name first, off the loop */
	if ((s->lookup = dns_lookup_client(srv->dns, sa, session_identified, s)) == NULL)
		session_admit(s, NULL, false);
}
