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
#include "smtp_session_int.h"

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
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

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
#include "tls.h"
#include "auth.h"
#include "util.h"

struct smtp_cmd {
	const char *verb;
	smtp_verb_fn *handler;
	unsigned flags;
	const char *help;
};

#define CMD_NO_ARG	0x01	/* an argument is a syntax error (DATA, RSET, QUIT) */
#define CMD_NEEDS_TLS	0x02	/* refused before STARTTLS where the policy requires TLS */

static smtp_verb_fn cmd_helo, cmd_ehlo, cmd_rset, cmd_noop, cmd_quit, cmd_help, cmd_vrfy,
    cmd_starttls;

static const struct smtp_cmd commands[] = {
	{ "HELO", cmd_helo, 0, "HELO <hostname>" },
	{ "EHLO", cmd_ehlo, 0, "EHLO <hostname>" },
	{ "MAIL", smtp_tx_mail, CMD_NEEDS_TLS, "MAIL FROM:<sender> [SIZE=<octets>] [BODY=7BIT|8BITMIME]" },
	{ "RCPT", smtp_tx_rcpt, CMD_NEEDS_TLS, "RCPT TO:<recipient>" },
	{ "DATA", smtp_tx_data, CMD_NO_ARG | CMD_NEEDS_TLS, "DATA" },
	{ "RSET", cmd_rset, CMD_NO_ARG, "RSET" },
	{ "NOOP", cmd_noop, 0, "NOOP" },
	{ "QUIT", cmd_quit, CMD_NO_ARG, "QUIT" },
	{ "HELP", cmd_help, 0, "HELP [<command>]" },
	{ "VRFY", cmd_vrfy, 0, "VRFY <address>" },
	{ "AUTH", smtp_auth_cmd, CMD_NEEDS_TLS, "AUTH <mechanism> [<initial response>]" },
	{ "STARTTLS", cmd_starttls, CMD_NO_ARG, "STARTTLS" },
};

/* the HELP list (replies.md 1): continuation lines get "214- ", the last "214 " */
static const char *const help_lines[] = {
	"auth data ehlo helo",
	"help mail noop quit",
	"rcpt rset vrfy",
};
/* the same last line where STARTTLS is offered */
#define HELP_LAST_TLS	"rcpt rset starttls vrfy"

static void session_free(struct smtp_session *);
static void session_greet(struct smtp_session *);

/* ---------------------------------------------------------------- helpers */

const struct limits *
session_limits(const struct smtp_session *s)
{
	return &s->cfg->limits;
}

void
session_timer_arm(struct event *ev, unsigned secs)
{
	struct timeval tv = { .tv_sec = secs, .tv_usec = 0 };

	if (ev != NULL && secs > 0)
		evtimer_add(ev, &tv);
}

void
session_timer_stop(struct event *ev)
{
	if (ev != NULL)
		evtimer_del(ev);
}

/*
 * The one way a reply leaves. Every 4xx/5xx also leaves a log line saying why
 * (logs.md), written before the reply so a client that reads the reply finds
 * the line. A bad command past the limit gets the 421 instead of its own reply.
 */
void
session_reply_code(struct smtp_session *s, enum smtp_reply_id id, int code, const char *arg,
    const char *detail)
{
	const struct smtp_reply_def *d;
	char buf[1024];
	size_t n;

	if (s->state == S_CLOSING)
		return;
	d = smtp_reply_def(id);
	if ((d->flags & REPLY_BAD) && ++s->bad_commands > session_limits(s)->bad_command_limit) {
		/* the bad command gets the 421 instead; one log line says both */
		maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " Receiving Failed: %s (limit %u; "
		    "the last: %s%s%s)", s->ids.icid, smtp_reply_def(RPL_BAD_COMMAND_LIMIT)->why,
		    session_limits(s)->bad_command_limit, d->why, detail ? ": " : "", detail ? detail : "");
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

void
session_reply(struct smtp_session *s, enum smtp_reply_id id, const char *arg,
    const char *detail)
{
	session_reply_code(s, id, 0, arg, detail);
}

/* a reply that echoes client text: made safe (replies.md: 64 printable octets) */
void
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

void
session_close(struct smtp_session *s)
{
	if (s->state == S_CLOSING)
		return;
	s->state = S_CLOSING;
	session_timer_stop(s->ev_command);
	session_timer_stop(s->ev_lifetime);
	session_timer_stop(s->ev_injection);
	session_timer_stop(s->ev_greet);
	io_shutdown(s->io);
}

/* ---------------------------------------------------------------- transaction */

/* ---------------------------------------------------------------- commands */

static void
session_reset_greeting(struct smtp_session *s, const struct smtp_cmdline *cl, bool esmtp)
{
	smtp_tx_abort(s, "Receiving aborted by a new greeting");
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
	const char *ext[5];
	size_t n = 0;

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
	ext[n++] = "8BITMIME";
	ext[n++] = size;
	ext[n++] = "PIPELINING";
	if (session_tls_offered(s))
		ext[n++] = "STARTTLS";
	if (session_auth_offered(s))
		ext[n++] = "AUTH PLAIN LOGIN";
	session_reply_lines(s, RPL_EHLO, s->cfg->hostname, RPL_EHLO, ext, n);
}

static void
cmd_rset(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	(void)cl;
	smtp_tx_abort(s, "Receiving aborted by RSET");
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
	smtp_tx_abort(s, "Receiving aborted by QUIT");
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
		bool last = i + 1 == ARRAY_LEN(help_lines);
		snprintf(buf[i], sizeof(buf[i]), "%s%s", last ? "" : " ",
		    last && s->pol->tls != MODE_OFF ? HELP_LAST_TLS : help_lines[i]);
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

/* ---------------------------------------------------------------- TLS */

bool
session_tls_offered(const struct smtp_session *s)
{
	return s->pol->tls != MODE_OFF && !io_tls_active(s->io) &&
	    tls_configured(s->cfg, s->lc);
}

bool
session_auth_offered(const struct smtp_session *s)
{
	return s->pol->auth != MODE_OFF && !s->authenticated &&
	    (io_tls_active(s->io) || !s->pol->auth_requires_tls);
}

static void session_identify(struct smtp_session *);
static void session_identified(void *, const char *, bool);
static void session_discard(struct smtp_session *);
static void session_start(struct smtp_session *, struct listener *);

static void
tls_done(void *arg, bool ok)
{
	struct smtp_session *s = arg;

	if (!ok) {
		char why[200];
		util_escape(why, sizeof(why), io_tls_error(s->io), strlen(io_tls_error(s->io)));
		if (!s->announced) {
			/* implicit TLS failed before the banner: still say who it was */
			s->ids.icid = ++s->srv->next_icid;
			s->announced = true;
			maillog(LOG_INFO, &s->ids, "New SMTP ICID %" PRIu64 " interface %s (%s) "
			    "address %s reverse dns host unknown verified no", s->ids.icid,
			    s->lc->name, s->local, s->addr);
		}
		maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " TLS failed: %s", s->ids.icid, why);
		/* no reply can be read by a client whose handshake failed: just close */
		s->state = S_CMD;
		session_close(s);
		return;
	}
	if (s->announced)
		maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " TLS success protocol %s cipher %s",
		    s->ids.icid, io_tls_protocol(s->io), io_tls_cipher(s->io));
	if (s->lc->tls_wrapper && !s->announced) {
		/* implicit TLS: now the client can be identified and greeted, inside TLS */
		s->state = S_LOOKUP;
		s->tls_logged_late = true;
		session_identify(s);
		return;
	}
	s->state = S_CMD;
	session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
	session_process(s);
}

/* start the handshake; false (and the session closing or answered) if it cannot */
static bool
session_start_tls(struct smtp_session *s)
{
	SSL_CTX *ctx;
	int r;

	if (s->srv->n_tls >= session_limits(s)->max_tls_sessions) {
		char d[32];
		snprintf(d, sizeof(d), "limit %u", session_limits(s)->max_tls_sessions);
		session_reply(s, RPL_TOO_MANY_TLS, NULL, d);
		return false;
	}
	if ((ctx = tls_store_ctx(s->srv->tls, s->lc)) == NULL) {
		session_reply(s, RPL_TLS_UNAVAILABLE, NULL, "no usable certificate");
		return false;
	}
	if (!s->lc->tls_wrapper || s->announced)
		session_reply(s, RPL_STARTTLS_GO, NULL, NULL);
	r = io_start_tls(s->io, ctx, tls_done);
	SSL_CTX_free(ctx);		/* the SSL holds its own reference */
	if (r == -1) {
		maillog(LOG_WARNING, &s->ids, "ICID %" PRIu64 " TLS failed: cannot start (out of "
		    "memory)", s->ids.icid);
		session_close(s);
		return false;
	}
	s->state = S_TLS;
	s->srv->n_tls++;
	s->tls_counted = true;
	/* a stalled handshake is bounded like any other wait on the client */
	session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
	return true;
}

static void
cmd_starttls(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	(void)cl;
	if (io_tls_active(s->io)) {
		session_reply(s, RPL_TLS_ACTIVE, NULL, NULL);
		return;
	}
	if (s->tx != NULL) {
		session_reply(s, RPL_STARTTLS_IN_TX, NULL, NULL);
		return;
	}
	if (!session_start_tls(s))
		return;
	/*
	 * RFC 3207 4.2: forget everything learnt before TLS. The session is as before
	 * EHLO: no greeting, no transaction, no authentication (hostile.md 4).
	 */
	s->helo_done = false;
	s->esmtp = false;
	s->helo[0] = '\0';
	s->authenticated = false;
	smtp_auth_forget(s);
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
	/* STARTTLS is no command at all where TLS is not offered (replies.md 2) */
	if (cmd->handler == cmd_starttls &&
	    (s->pol->tls == MODE_OFF || !tls_configured(s->cfg, s->lc))) {
		session_reply(s, RPL_NOT_RECOGNIZED, NULL, "STARTTLS while TLS is off");
		return;
	}
	if ((cmd->flags & CMD_NO_ARG) && cl.arg.len > 0) {
		session_reply_echo(s, RPL_SYNTAX, cl.arg.p, cl.arg.len);
		return;
	}
	if ((cmd->flags & CMD_NEEDS_TLS) && s->pol->tls == MODE_REQUIRED &&
	    !io_tls_active(s->io)) {
		session_reply(s, RPL_STARTTLS_FIRST, NULL, NULL);
		return;
	}
	cmd->handler(s, &cl);
}

/* after a message, accepted or not: the checks that wait for the end of data */
void
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

/*
 * A TLS ClientHello where a command belongs (a client that wanted implicit TLS,
 * hostile.md 12): it will never send a CRLF, so answer now and close rather than
 * let both sides wait for the command timeout.
 */
static bool
tls_client_hello(struct smtp_session *s)
{
	unsigned char b[3];

	if (io_peek(s->io, b, sizeof(b)) < sizeof(b) || b[0] != 0x16 || b[1] != 0x03 ||
	    b[2] > 0x04)
		return false;
	session_reply(s, RPL_NOT_RECOGNIZED, NULL, "a TLS handshake on a plaintext port");
	session_close(s);
	return true;
}

void
session_process(struct smtp_session *s)
{
	/* AUTH may carry a 12,288-octet response (RFC 4954 4); other commands 512 */
	char line[SMTP_SASL_LINE_MAX + 16];
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
		case S_AUTH:
			if (s->state == S_CMD && tls_client_hello(s))
				return;
			switch (io_getline(s->io, line, sizeof(line), SMTP_SASL_LINE_MAX + 2, &len)) {
			case IO_NEED_MORE:
				return;
			case IO_TOO_LONG:
				session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
				if (s->state == S_AUTH) {
					s->state = S_CMD;
					session_reply(s, RPL_AUTH_ARGS, NULL, "response too long");
				} else
					session_reply(s, RPL_LINE_TOO_LONG, NULL, NULL);
				break;
			case IO_LINE:
				session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
				if (s->state == S_AUTH)
					smtp_auth_line(s, line, len);
				else if (len + 2 > SMTP_LINE_MAX && !util_span_ieq(line, 5, "AUTH "))
					session_reply(s, RPL_LINE_TOO_LONG, NULL, NULL);
				else
					session_line(s, line, len);
				break;
			}
			break;
		case S_DATA:
			if (!smtp_tx_data_input(s))
				return;
			break;
		case S_GREET:
			/* nothing may arrive before the banner (hostile.md 5) */
			session_timer_stop(s->ev_greet);
			s->state = S_CMD;
			session_reply(s, RPL_SYNC_ERROR, NULL, "input before the banner");
			return;
		case S_LOOKUP:
		case S_COMMIT:
		case S_TLS:
		case S_AUTH_WAIT:
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
		smtp_tx_abort(s, "Receiving aborted: timed out waiting for data");
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
	session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
}

static void
session_free(struct smtp_session *s)
{
	if (s->lookup != NULL)
		dns_cancel(s->lookup);
	smtp_auth_forget(s);
	if (s->tls_counted)
		s->srv->n_tls--;
	if (s->committing != NULL) {
		/* the commit goes on and the message will be delivered: nobody to tell */
		spool_msg_forget(s->committing);
		smtp_tx_free(s);
	}
	smtp_tx_abort(s, "Receiving aborted: connection closed");
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
	if (s->tls_logged_late)
		maillog(LOG_INFO, &s->ids, "ICID %" PRIu64 " TLS success protocol %s cipher %s",
		    s->ids.icid, io_tls_protocol(s->io), io_tls_cipher(s->io));
	if (rule != NULL && s->pol->action == ACTION_TCPREFUSE) {
		session_close(s);
		return;
	}

	session_timer_arm(s->ev_lifetime, session_limits(s)->max_connection_time);
	if (s->lc->public)
		session_timer_arm(s->ev_injection, session_limits(s)->injection_timeout);

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
	if (srv->n_sessions > session_limits(s)->max_connections) {
		snprintf(d, sizeof(d), "limit %u", session_limits(s)->max_connections);
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
		session_timer_arm(s->ev_greet, s->pol->greet_delay);
		return;
	}
	session_greet(s);
}

/* the HAT may name hosts: learn the client's verified name first, off the loop */
static void
session_identify(struct smtp_session *s)
{
	if (!s->cfg->dns.reverse_lookups) {
		session_admit(s, NULL, false);
		return;
	}
	s->state = S_LOOKUP;
	if ((s->lookup = dns_lookup_client(s->srv->dns, (struct sockaddr *)&s->peer,
	    session_identified, s)) == NULL)
		session_admit(s, NULL, false);
}

static void
session_identified(void *arg, const char *name, bool verified)
{
	struct smtp_session *s = arg;

	s->lookup = NULL;
	session_admit(s, name, verified);
}

/* a session with its timers, not yet counted nor with a transport */
static struct smtp_session *
session_new(struct listener *l, const struct sockaddr *sa, socklen_t salen,
    const char *local_text)
{
	struct server *srv = l->srv;
	struct smtp_session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	memcpy(&s->peer, sa, salen < sizeof(s->peer) ? salen : sizeof(s->peer));
	s->srv = srv;
	s->cfg = config_ref(srv->cfg);
	s->lc = config_listener(s->cfg, l->name);
	s->ids.rid = -1;
	sockaddr_text(sa, s->addr, sizeof(s->addr), &s->addr_v6);
	hat_addr_from_sockaddr(sa, &s->haddr);
	util_strlcpy(s->local, local_text, sizeof(s->local));
	s->state = S_LOOKUP;
	s->ev_command = evtimer_new(srv->base, on_command_timeout, s);
	s->ev_lifetime = evtimer_new(srv->base, on_lifetime, s);
	s->ev_greet = evtimer_new(srv->base, on_greet, s);
	if (s->lc->public)
		s->ev_injection = evtimer_new(srv->base, on_injection, s);
	if (s->ev_command == NULL || s->ev_lifetime == NULL || s->ev_greet == NULL ||
	    (s->lc->public && s->ev_injection == NULL)) {
		session_discard(s);
		return NULL;
	}
	return s;
}

/* undo session_new (the transport, if any, is the caller's) */
static void
session_discard(struct smtp_session *s)
{
	if (s->ev_injection)
		event_free(s->ev_injection);
	if (s->ev_command)
		event_free(s->ev_command);
	if (s->ev_lifetime)
		event_free(s->ev_lifetime);
	if (s->ev_greet)
		event_free(s->ev_greet);
	config_unref(s->cfg);
	free(s);
}

void
smtp_session_accept(struct listener *l, int fd, const struct sockaddr *sa, socklen_t salen,
    const char *local_text)
{
	struct smtp_session *s = session_new(l, sa, salen, local_text);

	if (s == NULL || (s->io = io_new(l->srv->base, fd, &session_io, s)) == NULL) {
		if (s != NULL)
			session_discard(s);
		close(fd);
		return;
	}
	session_start(s, l);
}

void
smtp_session_accept_bev(struct listener *l, struct bufferevent *bev, const struct sockaddr *sa,
    socklen_t salen, const char *local_text)
{
	struct smtp_session *s = session_new(l, sa, salen, local_text);

	if (s == NULL || (s->io = io_new_bev(l->srv->base, bev, &session_io, s)) == NULL) {
		if (s != NULL)
			session_discard(s);
		bufferevent_free(bev);
		return;
	}
	session_start(s, l);
}

/* count the session in, then TLS first (implicit TLS) or the HAT */
static void
session_start(struct smtp_session *s, struct listener *l)
{
	struct server *srv = l->srv;

	s->listener = l;
	l->n_sessions++;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->n_sessions++;
	io_set_write_timeout(s->io, session_limits(s)->command_timeout);
	if (s->lc->tls_wrapper) {
		/* implicit TLS (RFC 8314): the handshake first, the banner inside it */
		if (srv->n_tls >= session_limits(s)->max_tls_sessions ||
		    !tls_configured(s->cfg, s->lc)) {
			maillog(LOG_WARNING, NULL, "listener %s: connection from %s closed: %s",
			    s->lc->name, s->addr, tls_configured(s->cfg, s->lc) ?
			    "too many TLS sessions" : "no certificate for implicit TLS");
			session_close(s);
			return;
		}
		session_start_tls(s);
		return;
	}
	session_identify(s);
}
