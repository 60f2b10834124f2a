/*
 * probe.c: `mailgate probe` (see probe.h). One blocking conversation, every wait
 * bounded by poll() and the --timeout deadline; a CLI, not the server's event loop.
 * What the server says is shown escaped (it may be anyone), what the probe sends
 * is shown as sent, except credentials. Every reply that is not 2xx/3xx is
 * explained with explain_lookup(), the same table as `mailgate explain`. The
 * verdict is the last line; --json prints the same as one JSON document instead.
 */
#include "probe.h"

#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "explain.h"
#include "smtp_reply.h"
#include "util.h"

#define PROBE_EXIT_ACCEPTED	0
#define PROBE_EXIT_REFUSED	1
#define PROBE_EXIT_TROUBLE	2

#define PROBE_LINE_MAX		1024		/* a reply line kept for display, escaped */
#define PROBE_RAW_MAX		4096		/* a reply line read; the rest of it is dropped */
#define PROBE_LINES_MAX		64		/* reply lines kept; more are only counted */
#define PROBE_REPLY_MAX		10000		/* lines in one reply: more is not SMTP */
#define PROBE_DATA_MAX		(256u << 20)	/* --data: a probe, not a bulk mailer */
#define PROBE_SHOW_LINES	12		/* message lines shown in the transcript */
#define PROBE_TIMEOUT_MAX	3600

#define PROBE_COL_DIM		"\033[2m"
#define PROBE_COL_GREEN		"\033[32m"
#define PROBE_COL_CYAN		"\033[36m"
#define PROBE_COL_YELLOW	"\033[33m"
#define PROBE_COL_RED		"\033[31m"
#define PROBE_COL_BOLD		"\033[1m"
#define PROBE_COL_OFF		"\033[0m"

enum probe_io {
	PROBE_IO_OK, PROBE_IO_TIMEOUT, PROBE_IO_CLOSED, PROBE_IO_ERROR, PROBE_IO_GARBLED
};

/* PROBE_LOST: no connection, or the conversation broke (timeout, close, garbage) */
enum probe_result { PROBE_UNDECIDED, PROBE_ACCEPTED, PROBE_REFUSED, PROBE_LOST };

struct probe_reply {
	int code;
	size_t n, more;
	char line[PROBE_LINES_MAX][PROBE_LINE_MAX];	/* "250-text", escaped */
	int64_t ms;
};

struct probe {
	/* options */
	const char *from_opt, *helo_opt, *user, *data_path;
	const char **to;
	size_t n_to;
	int plain_helo, starttls, no_data, quiet, json;	/* getopt_long flags */
	int timeout_s;
	char host[256], port[32], target[300];
	char localname[256], default_to[300], default_from[300];
	char *password;
	char *msg;			/* the message, CRLF lines, dot-stuffed, without the "." */
	size_t msg_len, msg_lines;

	/* the connection */
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char rbuf[16384];
	size_t roff, rlen;
	char ioerr[256];
	char addr[INET6_ADDRSTRLEN];

	/* what EHLO offered */
	bool auth_plain, auth_login;

	/* output */
	bool color;
	json_t *root, *steps;
	struct probe_reply r;

	/* the verdict */
	enum probe_result result;
	const char *vstep;
	int vcode;
	long long mid;			/* -1: none */
	char vtext[1200];
};

/* ---------------------------------------------------------------- small helpers */

static int64_t
probe_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
probe_code_color(int code)
{
	static const char *const col[] = { [2] = PROBE_COL_GREEN, [3] = PROBE_COL_CYAN,
	    [4] = PROBE_COL_YELLOW, [5] = PROBE_COL_RED };

	return code >= 200 && code < 600 ? col[code / 100] : PROBE_COL_RED;
}

static void
probe_say(struct probe *p, const char *color, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* one transcript line (not with --quiet or --json) */
static void
probe_say(struct probe *p, const char *color, const char *fmt, ...)
{
	va_list ap;

	if (p->quiet || p->json)
		return;
	if (p->color && color != NULL)
		fputs(color, stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (p->color && color != NULL)
		fputs(PROBE_COL_OFF, stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

static json_t *
probe_json_str(const char *s)
{
	char esc[PROBE_LINE_MAX * 2];

	/* escaped text is ASCII, so always valid UTF-8 for jansson */
	util_escape(esc, sizeof(esc), s, strlen(s));
	return json_string(esc);
}

/* ---------------------------------------------------------------- connection I/O */

/* wait for events on the socket until deadline: OK, TIMEOUT or ERROR */
static enum probe_io
probe_wait(struct probe *p, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = p->fd, .events = events };

	for (;;) {
		int64_t left = deadline - probe_now();
		int r;

		if (left <= 0)
			return PROBE_IO_TIMEOUT;
		r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r > 0)
			return PROBE_IO_OK;
		if (r == 0)
			return PROBE_IO_TIMEOUT;
		if (errno != EINTR) {
			snprintf(p->ioerr, sizeof(p->ioerr), "poll: %s", strerror(errno));
			return PROBE_IO_ERROR;
		}
	}
}

static void
probe_ssl_error(struct probe *p, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[200];

	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(p->ioerr, sizeof(p->ioerr), "%s: %s", what, buf);
	} else if (errno != 0)
		snprintf(p->ioerr, sizeof(p->ioerr), "%s: %s", what, strerror(errno));
	else
		snprintf(p->ioerr, sizeof(p->ioerr), "%s: the connection was cut", what);
	ERR_clear_error();
}

/* after an SSL call returned r <= 0: wait as it asks, or say why it failed */
static enum probe_io
probe_ssl_wait(struct probe *p, int r, int64_t deadline, const char *what)
{
	switch (SSL_get_error(p->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return probe_wait(p, POLLIN, deadline);
	case SSL_ERROR_WANT_WRITE:
		return probe_wait(p, POLLOUT, deadline);
	case SSL_ERROR_ZERO_RETURN:
		return PROBE_IO_CLOSED;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && errno == 0)
			return PROBE_IO_CLOSED;
		/* FALLTHROUGH */
	default:
		probe_ssl_error(p, what);
		return PROBE_IO_ERROR;
	}
}

/* one read (rd) or write, plain or TLS, waiting as needed: *done octets moved */
static enum probe_io
probe_xfer(struct probe *p, bool rd, char *buf, size_t len, size_t *done, int64_t deadline)
{
	enum probe_io io;

	for (;;) {
		if (p->ssl != NULL) {
			int r;

			errno = 0;
			r = rd ? SSL_read_ex(p->ssl, buf, len, done) :
			    SSL_write_ex(p->ssl, buf, len, done);
			if (r == 1)
				return PROBE_IO_OK;
			io = probe_ssl_wait(p, r, deadline, rd ? "TLS read" : "TLS write");
		} else {
			ssize_t r = rd ? recv(p->fd, buf, len, 0) :
			    send(p->fd, buf, len, MSG_NOSIGNAL);

			if (r > 0) {
				*done = (size_t)r;
				return PROBE_IO_OK;
			}
			if (r == 0)
				return PROBE_IO_CLOSED;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				snprintf(p->ioerr, sizeof(p->ioerr), "%s", strerror(errno));
				return errno == EPIPE || errno == ECONNRESET ? PROBE_IO_CLOSED :
				    PROBE_IO_ERROR;
			}
			io = probe_wait(p, rd ? POLLIN : POLLOUT, deadline);
		}
		if (io != PROBE_IO_OK)
			return io;
	}
}

/* write all of buf; each wait for room is bounded by the timeout */
static enum probe_io
probe_send(struct probe *p, const char *buf, size_t len)
{
	enum probe_io io;
	size_t put = 0;

	for (; len > 0; buf += put, len -= put) {
		io = probe_xfer(p, false, (char *)buf, len, &put,	/* only read */
		    probe_now() + (int64_t)p->timeout_s * 1000);
		if (io != PROBE_IO_OK)
			return io;
	}
	return PROBE_IO_OK;
}

/* one line without its CRLF (or bare LF), cut to cap - 1 bytes */
static enum probe_io
probe_getline(struct probe *p, char *raw, size_t cap, size_t *len, int64_t deadline)
{
	size_t n = 0;
	bool cut = false;
	enum probe_io io;

	for (;;) {
		while (p->roff < p->rlen) {
			char c = p->rbuf[p->roff++];

			if (c == '\n') {
				if (n > 0 && raw[n - 1] == '\r' && !cut)
					n--;
				raw[n] = '\0';
				*len = n;
				return PROBE_IO_OK;
			}
			if (n < cap - 1)
				raw[n++] = c;
			else
				cut = true;
		}
		p->roff = p->rlen = 0;
		io = probe_xfer(p, true, p->rbuf, sizeof(p->rbuf), &p->rlen, deadline);
		if (io != PROBE_IO_OK)
			return io;
	}
}

/* a whole reply into p->r; the deadline counts from start */
static enum probe_io
probe_read_reply(struct probe *p, int64_t start)
{
	struct probe_reply *r = &p->r;
	int64_t deadline = start + (int64_t)p->timeout_s * 1000;
	char raw[PROBE_RAW_MAX];
	enum probe_io io = PROBE_IO_OK;
	size_t len;

	r->code = 0;
	r->n = r->more = 0;
	for (size_t i = 0; ; i++) {
		bool ok;

		if ((io = probe_getline(p, raw, sizeof(raw), &len, deadline)) != PROBE_IO_OK)
			break;
		if (r->n < PROBE_LINES_MAX)
			util_escape(r->line[r->n++], PROBE_LINE_MAX, raw, len);
		else
			r->more++;
		ok = len >= 3 && raw[0] >= '2' && raw[0] <= '5' && raw[1] >= '0' &&
		    raw[1] <= '9' && raw[2] >= '0' && raw[2] <= '9' &&
		    (len == 3 || raw[3] == ' ' || raw[3] == '-');
		if (!ok || i >= PROBE_REPLY_MAX) {
			io = PROBE_IO_GARBLED;
			break;
		}
		if (i == 0)
			r->code = (raw[0] - '0') * 100 + (raw[1] - '0') * 10 + (raw[2] - '0');
		if (len == 3 || raw[3] == ' ')
			break;
	}
	r->ms = probe_now() - start;
	return io;
}

/* ---------------------------------------------------------------- connecting */

static bool
probe_is_ip(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* connect to the first address that answers; the timeout covers them all */
static bool
probe_connect(struct probe *p)
{
	struct addrinfo hints, *res = NULL, *ai;
	int64_t deadline = probe_now() + (int64_t)p->timeout_s * 1000;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(p->host, p->port, &hints, &res)) != 0) {
		snprintf(p->ioerr, sizeof(p->ioerr), "%s",
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return false;
	}
	p->fd = -1;
	snprintf(p->ioerr, sizeof(p->ioerr), "no address");
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int err = 0;
		socklen_t elen = sizeof(err);

		if (fd == -1) {
			snprintf(p->ioerr, sizeof(p->ioerr), "%s", strerror(errno));
			continue;
		}
		p->fd = fd;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
			if (errno != EINPROGRESS)
				err = errno;
			else if (probe_wait(p, POLLOUT, deadline) == PROBE_IO_TIMEOUT) {
				snprintf(p->ioerr, sizeof(p->ioerr), "timed out after %d s",
				    p->timeout_s);
				close(fd);
				p->fd = -1;
				break;
			} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
				err = errno;
		}
		if (err == 0) {
			getnameinfo(ai->ai_addr, ai->ai_addrlen, p->addr, sizeof(p->addr), NULL, 0,
			    NI_NUMERICHOST);
			break;
		}
		snprintf(p->ioerr, sizeof(p->ioerr), "%s", strerror(err));
		close(fd);
		p->fd = -1;
	}
	freeaddrinfo(res);
	return p->fd != -1;
}

/* ---------------------------------------------------------------- the transcript */

static void
probe_show_client(struct probe *p, const char *shown)
{
	char esc[PROBE_LINE_MAX];

	util_escape(esc, sizeof(esc), shown, strlen(shown));
	probe_say(p, PROBE_COL_DIM, "C: %s", esc);
}

/* the explanation of a refusal: printed, and as a JSON object */
static json_t *
probe_explain(struct probe *p)
{
	struct explain_match m[EXPLAIN_MAX];
	char query[PROBE_LINE_MAX * 3], label[64], rfc[200];
	size_t q = 0;
	json_t *o;

	/* the code and the text of every line ("550-5.1.1 a" "550 5.1.1 b") */
	for (size_t i = 0; i < p->r.n && q < sizeof(query) - 1; i++) {
		const char *t = strlen(p->r.line[i]) > 4 ? p->r.line[i] + 4 : "";

		q += (size_t)snprintf(query + q, sizeof(query) - q, "%s%s",
		    i == 0 ? "" : " ", i == 0 ? p->r.line[0] : t);
	}
	if (q >= sizeof(query))
		query[sizeof(query) - 1] = '\0';
	if (explain_lookup(query, m, EXPLAIN_MAX) == 0)
		return json_null();
	explain_label(&m[0], label, sizeof(label));
	probe_say(p, NULL, "   -> %s", m[0].why);
	if (m[0].kind == EXPLAIN_MAILGATE && m[0].setting != NULL)
		probe_say(p, NULL, "      setting: %s", m[0].setting);
	rfc[0] = '\0';
	if (m[0].kind != EXPLAIN_MAILGATE && m[0].enh[0] != '\0') {
		explain_enhanced(m[0].enh, rfc, sizeof(rfc));
		if (rfc[0] != '\0')
			probe_say(p, NULL, "      RFC 3463 %s: %s", m[0].enh, rfc);
	}
	probe_say(p, NULL, "      what to do: %s", m[0].advice);
	o = json_object();
	json_object_set_new(o, "matched", json_string(label));
	json_object_set_new(o, "source", json_string(m[0].kind == EXPLAIN_MAILGATE ?
	    "mailgate" : m[0].kind == EXPLAIN_FOREIGN ? "common" : "rfc"));
	json_object_set_new(o, "what", json_string(m[0].why));
	json_object_set_new(o, "setting", m[0].kind == EXPLAIN_MAILGATE && m[0].setting ?
	    json_string(m[0].setting) : json_null());
	json_object_set_new(o, "rfc3463", rfc[0] ? json_string(rfc) : json_null());
	json_object_set_new(o, "advice", json_string(m[0].advice));
	return o;
}

static const char *
probe_io_text(struct probe *p, enum probe_io io, const char *waiting, char *buf, size_t cap)
{
	switch (io) {
	case PROBE_IO_TIMEOUT:
		snprintf(buf, cap, "timed out after %d s waiting for %s", p->timeout_s, waiting);
		break;
	case PROBE_IO_CLOSED:
		snprintf(buf, cap, "the server closed the connection");
		break;
	case PROBE_IO_GARBLED:
		snprintf(buf, cap, "not an SMTP reply: \"%s\"",
		    p->r.n > 0 ? p->r.line[p->r.n - 1] : "");
		break;
	default:
		snprintf(buf, cap, "%s", p->ioerr);
	}
	return buf;
}

static void
probe_verdict(struct probe *p, enum probe_result res, const char *step, int code,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
probe_verdict(struct probe *p, enum probe_result res, const char *step, int code,
    const char *fmt, ...)
{
	va_list ap;

	p->result = res;
	p->vstep = step;
	p->vcode = code;
	va_start(ap, fmt);
	vsnprintf(p->vtext, sizeof(p->vtext), fmt, ap);
	va_end(ap);
}

/*
 * Show the reply in p->r (or what went wrong reading it) and record the step.
 * Returns true when a whole reply came; otherwise the verdict says the
 * conversation broke.
 */
static bool
probe_record(struct probe *p, const char *step, const char *shown, enum probe_io io,
    int64_t start)
{
	char why[PROBE_LINE_MAX + 64], waiting[64];
	json_t *s = json_object(), *lines = json_array(), *expl = json_null();

	for (size_t i = 0; i < p->r.n; i++) {
		bool last = i + 1 == p->r.n && p->r.more == 0;
		const char *col = io == PROBE_IO_OK ? probe_code_color(p->r.code) : PROBE_COL_RED;

		if (last && io == PROBE_IO_OK)
			probe_say(p, col, "S: %s  (%" PRId64 " ms)", p->r.line[i], p->r.ms);
		else
			probe_say(p, col, "S: %s", p->r.line[i]);
		json_array_append_new(lines, json_string(p->r.line[i]));
	}
	if (p->r.more > 0)
		probe_say(p, NULL, "S: ... (%zu more lines)  (%" PRId64 " ms)", p->r.more,
		    p->r.ms);
	if (io == PROBE_IO_OK && p->r.code >= 400)
		expl = probe_explain(p);
	json_object_set_new(s, "step", json_string(step));
	json_object_set_new(s, "command", shown != NULL ? probe_json_str(shown) : json_null());
	json_object_set_new(s, "code", io == PROBE_IO_OK ? json_integer(p->r.code) : json_null());
	json_object_set_new(s, "lines", lines);
	json_object_set_new(s, "elapsed_ms", json_integer(io == PROBE_IO_OK ? p->r.ms :
	    probe_now() - start));
	json_object_set_new(s, "explanation", expl);
	if (io != PROBE_IO_OK) {
		snprintf(waiting, sizeof(waiting), strcmp(step, "connect") == 0 ?
		    "the banner" : "the reply to %s", step);
		probe_io_text(p, io, waiting, why, sizeof(why));
		json_object_set_new(s, "error", json_string(why));
		if (strcmp(step, "QUIT") == 0)		/* the verdict came before QUIT */
			probe_say(p, PROBE_COL_DIM, "   (no reply to QUIT: %s)", why);
		else {
			probe_say(p, PROBE_COL_RED, "   !! %s", why);
			if (strcmp(step, "connect") == 0)
				probe_verdict(p, PROBE_LOST, step, 0, "could not connect to %s: %s",
				    p->target, why);
			else
				probe_verdict(p, PROBE_LOST, step, 0, "connection lost at %s: %s",
				    step, why);
		}
	}
	if (p->steps != NULL)
		json_array_append_new(p->steps, s);
	else
		json_decref(s);
	return io == PROBE_IO_OK;
}

/* send one command line (shown as `shown` when given), read and record its reply */
static bool
probe_cmd(struct probe *p, const char *step, const char *cmd, const char *shown)
{
	char line[PROBE_RAW_MAX];
	int64_t start;
	enum probe_io io;
	int n;

	n = snprintf(line, sizeof(line), "%s\r\n", cmd);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	probe_show_client(p, shown != NULL ? shown : cmd);
	start = probe_now();
	io = probe_send(p, line, (size_t)n);
	explicit_bzero(line, sizeof(line));		/* it may hold credentials */
	if (io == PROBE_IO_OK)
		io = probe_read_reply(p, start);
	else
		p->r.n = p->r.more = 0;
	return probe_record(p, step, shown != NULL ? shown : cmd, io, start);
}

static bool
probe_ok(const struct probe *p)
{
	return p->r.code >= 200 && p->r.code < 400;
}

static void
probe_refused(struct probe *p, const char *step)
{
	probe_verdict(p, PROBE_REFUSED, step, p->r.code, "refused at %s: %s%s", step,
	    p->r.line[0], p->r.n > 1 ? " ..." : "");
}

/* the server has closed its side and nothing of it is left to read */
static bool
probe_peer_closed(struct probe *p)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
	char c;

	if (p->ssl != NULL || p->roff < p->rlen)
		return false;
	return poll(&pfd, 1, 0) == 1 && recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* QUIT after the verdict; nothing it brings changes the verdict */
static void
probe_quit(struct probe *p)
{
	if (probe_peer_closed(p)) {
		probe_say(p, PROBE_COL_DIM, "   (the server closed the connection)");
		return;
	}
	probe_cmd(p, "QUIT", "QUIT", NULL);
}

/* ---------------------------------------------------------------- EHLO, TLS, AUTH */

/* what the EHLO reply offers that the probe may use */
static void
probe_extensions(struct probe *p)
{
	p->auth_plain = p->auth_login = false;
	for (size_t i = 1; i < p->r.n; i++) {
		const char *e = p->r.line[i] + 4;

		if (strlen(p->r.line[i]) < 4)
			continue;
		if (strncasecmp(e, "AUTH ", 5) == 0 || strncasecmp(e, "AUTH=", 5) == 0) {
			char mechs[PROBE_LINE_MAX], *save = NULL;

			util_strlcpy(mechs, e + 5, sizeof(mechs));
			for (char *t = strtok_r(mechs, " ", &save); t != NULL;
			    t = strtok_r(NULL, " ", &save)) {
				if (strcasecmp(t, "PLAIN") == 0)
					p->auth_plain = true;
				if (strcasecmp(t, "LOGIN") == 0)
					p->auth_login = true;
			}
		}
	}
}

/* EHLO (HELO with --plain-helo, or when EHLO gets a 5xx); false: verdict set */
static bool
probe_greet(struct probe *p)
{
	char cmd[512];

	if (!p->plain_helo) {
		snprintf(cmd, sizeof(cmd), "EHLO %s", p->helo_opt);
		if (!probe_cmd(p, "EHLO", cmd, NULL))
			return false;
		if (probe_ok(p)) {
			probe_extensions(p);
			return true;
		}
		if (p->r.code < 500) {
			probe_refused(p, "EHLO");
			return false;
		}
		probe_say(p, NULL, "   (EHLO refused: trying HELO)");
	}
	snprintf(cmd, sizeof(cmd), "HELO %s", p->helo_opt);
	if (!probe_cmd(p, "HELO", cmd, NULL))
		return false;
	if (!probe_ok(p)) {
		probe_refused(p, "HELO");
		return false;
	}
	return true;
}

/* a certificate name, or else a time, as OpenSSL prints it, escaped */
static void
probe_cert_text(X509_NAME *name, const ASN1_TIME *t, char *buf, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	char raw[512];
	int n = 0;

	if (b != NULL && (name != NULL ? X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0 :
	    ASN1_TIME_print(b, t) == 1))
		n = BIO_read(b, raw, (int)sizeof(raw));
	util_escape(buf, cap, raw, n > 0 ? (size_t)n : 0);
	BIO_free(b);
}

/* show the negotiated session and the server's certificate */
static void
probe_tls_report(struct probe *p, int64_t ms)
{
	char subject[1100], issuer[1100], nb[64], na[64];
	X509 *cert = SSL_get1_peer_certificate(p->ssl);
	long vr = SSL_get_verify_result(p->ssl);
	const char *proto = SSL_get_version(p->ssl), *cipher = SSL_get_cipher_name(p->ssl);
	json_t *t = json_object();

	probe_say(p, NULL, "   TLS: %s, cipher %s  (%" PRId64 " ms)", proto, cipher, ms);
	json_object_set_new(t, "protocol", json_string(proto));
	json_object_set_new(t, "cipher", json_string(cipher));
	json_object_set_new(t, "handshake_ms", json_integer(ms));
	if (cert != NULL) {
		probe_cert_text(X509_get_subject_name(cert), NULL, subject, sizeof(subject));
		probe_cert_text(X509_get_issuer_name(cert), NULL, issuer, sizeof(issuer));
		probe_cert_text(NULL, X509_get0_notBefore(cert), nb, sizeof(nb));
		probe_cert_text(NULL, X509_get0_notAfter(cert), na, sizeof(na));
		probe_say(p, NULL, "   TLS: subject   %s", subject);
		probe_say(p, NULL, "   TLS: issuer    %s", issuer);
		json_object_set_new(t, "subject", json_string(subject));
		json_object_set_new(t, "issuer", json_string(issuer));
		probe_say(p, NULL, "   TLS: notBefore %s", nb);
		probe_say(p, NULL, "   TLS: notAfter  %s", na);
		json_object_set_new(t, "not_before", json_string(nb));
		json_object_set_new(t, "not_after", json_string(na));
		X509_free(cert);
	} else
		probe_say(p, NULL, "   TLS: the server sent no certificate");
	/* verification is off (a diagnostic goes on), but say what it would have said */
	if (vr == X509_V_OK && cert != NULL)
		probe_say(p, NULL, "   TLS: chain     verified for %s", p->host);
	else
		probe_say(p, NULL, "   TLS: chain     NOT verified: %s (going on: the probe "
		    "does not require it)", X509_verify_cert_error_string(vr));
	json_object_set_new(t, "verified", json_boolean(vr == X509_V_OK && cert != NULL));
	json_object_set_new(t, "verify_result", json_string(X509_verify_cert_error_string(vr)));
	if (p->root != NULL)
		json_object_set_new(p->root, "tls", t);
	else
		json_decref(t);
}

/* STARTTLS, the handshake, and EHLO again; false: verdict set */
static bool
probe_starttls(struct probe *p)
{
	char why[300];
	int64_t start, deadline;
	enum probe_io io;
	int r;

	if (!probe_cmd(p, "STARTTLS", "STARTTLS", NULL))
		return false;
	if (p->r.code != 220) {
		probe_refused(p, "STARTTLS");
		return false;
	}
	if (p->roff < p->rlen) {
		/* bytes after the 220 were sent in clear: never take them as TLS replies */
		probe_say(p, PROBE_COL_RED, "   !! the server sent %zu bytes after its 220 "
		    "before the handshake (ignored)", p->rlen - p->roff);
		p->roff = p->rlen = 0;
	}
	/* the system's CAs, only to say whether the chain would have verified */
	if ((p->ctx = SSL_CTX_new(TLS_client_method())) != NULL)
		SSL_CTX_set_default_verify_paths(p->ctx);
	if (p->ctx == NULL || (p->ssl = SSL_new(p->ctx)) == NULL ||
	    SSL_set_fd(p->ssl, p->fd) != 1) {
		probe_ssl_error(p, "TLS setup");
		probe_verdict(p, PROBE_LOST, "STARTTLS", 0, "connection lost at STARTTLS: %s",
		    p->ioerr);
		return false;
	}
	SSL_set_verify(p->ssl, SSL_VERIFY_NONE, NULL);
	if (probe_is_ip(p->host))
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), p->host);
	else {
		SSL_set_tlsext_host_name(p->ssl, p->host);
		SSL_set1_host(p->ssl, p->host);
	}
	start = probe_now();
	deadline = start + (int64_t)p->timeout_s * 1000;
	for (;;) {
		errno = 0;
		if ((r = SSL_connect(p->ssl)) == 1)
			break;
		if ((io = probe_ssl_wait(p, r, deadline, "TLS handshake")) != PROBE_IO_OK) {
			probe_io_text(p, io, "the TLS handshake", why, sizeof(why));
			probe_say(p, PROBE_COL_RED, "   !! TLS handshake failed: %s", why);
			probe_verdict(p, PROBE_LOST, "STARTTLS", 0,
			    "connection lost at STARTTLS: TLS handshake failed: %s", why);
			return false;
		}
	}
	probe_tls_report(p, probe_now() - start);
	return probe_greet(p);
}

static void
probe_b64(const void *in, size_t len, char *out, size_t cap)
{
	if (4 * ((len + 2) / 3) + 1 > cap) {
		out[0] = '\0';
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* AUTH PLAIN when offered, else LOGIN; false: verdict set */
static bool
probe_auth(struct probe *p)
{
	char cred[1024], b64[1400], cmd[1500];
	size_t ul = strlen(p->user), pl = strlen(p->password);
	bool ok;

	if (p->auth_plain || !p->auth_login) {
		if (ul + pl + 2 > sizeof(cred))
			pl = sizeof(cred) - ul - 2;	/* not reached: both are checked */
		/* authzid empty, authcid, password (RFC 4616) */
		cred[0] = '\0';
		memcpy(cred + 1, p->user, ul);
		cred[1 + ul] = '\0';
		memcpy(cred + 2 + ul, p->password, pl);
		probe_b64(cred, ul + pl + 2, b64, sizeof(b64));
		explicit_bzero(cred, sizeof(cred));
		snprintf(cmd, sizeof(cmd), "AUTH PLAIN %s", b64);
		ok = probe_cmd(p, "AUTH", cmd, "AUTH PLAIN <credentials hidden>");
		explicit_bzero(b64, sizeof(b64));
		explicit_bzero(cmd, sizeof(cmd));
	} else {
		if (!probe_cmd(p, "AUTH", "AUTH LOGIN", NULL))
			return false;
		if (p->r.code != 334)
			goto refused;
		probe_b64(p->user, ul, b64, sizeof(b64));
		if (!probe_cmd(p, "AUTH", b64, NULL))
			return false;
		if (p->r.code != 334)
			goto refused;
		probe_b64(p->password, pl, b64, sizeof(b64));
		ok = probe_cmd(p, "AUTH", b64, "<password hidden>");
		explicit_bzero(b64, sizeof(b64));
	}
	if (!ok)
		return false;
	if (p->r.code / 100 == 2)
		return true;
refused:
	probe_refused(p, "AUTH");
	return false;
}

/* ---------------------------------------------------------------- the message */

/* the default test message: the headers a filter expects, a line of text */
static char *
probe_default_message(struct probe *p, const char *from)
{
	char date[64], *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	struct timespec ts;

	if (fp == NULL)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	util_rfc5322_date(date, sizeof(date), ts.tv_sec);
	fprintf(fp, "Subject: mailgate probe test\n");
	fprintf(fp, "Date: %s\n", date);
	fprintf(fp, "Message-ID: <probe.%lld.%09ld.%d@%s>\n", (long long)ts.tv_sec,
	    ts.tv_nsec, (int)getpid(), p->localname);
	fprintf(fp, "From: <%s>\n", from);
	fprintf(fp, "To: ");
	for (size_t i = 0; i < p->n_to; i++)
		fprintf(fp, "%s<%s>", i > 0 ? ", " : "", p->to[i]);
	fprintf(fp, "\n\nThis is a test message sent by `mailgate probe` to check that this\n"
	    "server accepts mail. It can be deleted.\n");
	if (fclose(fp) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* all of fp, up to PROBE_DATA_MAX octets (NUL bytes and all) */
static char *
probe_read_all(FILE *fp, size_t *len)
{
	char chunk[65536], *buf = NULL;
	size_t r, total = 0;
	FILE *mem = open_memstream(&buf, len);

	if (mem == NULL)
		return NULL;
	while ((r = fread(chunk, 1, sizeof(chunk), fp)) > 0 && total <= PROBE_DATA_MAX) {
		fwrite(chunk, 1, r, mem);
		total += r;
	}
	if (fclose(mem) != 0 || ferror(fp) || total > PROBE_DATA_MAX) {
		errno = total > PROBE_DATA_MAX ? EFBIG : errno ? errno : EIO;
		free(buf);
		return NULL;
	}
	return buf;
}

/* CRLF for every line end (CRLF, bare LF, bare CR), a '.' before a leading '.' */
static bool
probe_prepare_message(struct probe *p, const char *in, size_t len)
{
	size_t cap = len * 2 + 8, o = 0;
	bool bol = true;
	char *out = malloc(cap);

	if (out == NULL)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (bol && c == '.')
			out[o++] = '.';
		bol = false;
		if (c == '\r' || c == '\n') {
			if (c == '\r' && i + 1 < len && in[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			p->msg_lines++;
			bol = true;
			continue;
		}
		out[o++] = c;
	}
	if (!bol) {
		out[o++] = '\r';
		out[o++] = '\n';
		p->msg_lines++;
	}
	p->msg = out;
	p->msg_len = o;
	return true;
}

/* the first lines of the message as C: lines, then how much more there is */
static void
probe_show_message(struct probe *p)
{
	const char *s = p->msg, *end = p->msg + p->msg_len;
	char esc[PROBE_LINE_MAX];
	size_t shown = 0;

	while (s < end && shown < PROBE_SHOW_LINES) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = (size_t)(nl - s);

		util_escape(esc, sizeof(esc), s, n > 0 && s[n - 1] == '\r' ? n - 1 : n);
		probe_say(p, PROBE_COL_DIM, "C: %s", esc);
		s = nl + 1;
		shown++;
	}
	if (shown < p->msg_lines)
		probe_say(p, PROBE_COL_DIM, "C: ... (%zu more lines, %zu octets in all)",
		    p->msg_lines - shown, p->msg_len);
	probe_say(p, PROBE_COL_DIM, "C: .");
}

/* the MID of mailgate's "250 ok: Message <MID> accepted", from the reply table */
static long long
probe_mid(const struct probe *p)
{
	const char *t = smtp_reply_def(RPL_ACCEPTED)->text, *pct = strstr(t, "%s");
	const char *line, *end;
	char *stop;
	size_t pre, post, n;
	long long mid;

	if (p->r.n == 0 || pct == NULL || strlen(p->r.line[p->r.n - 1]) < 4)
		return -1;
	line = p->r.line[p->r.n - 1] + 4;
	n = strlen(line);
	pre = (size_t)(pct - t);
	post = strlen(pct + 2);
	if (n <= pre + post || strncmp(line, t, pre) != 0 || strcmp(line + n - post, pct + 2) != 0)
		return -1;
	end = line + n - post;
	errno = 0;
	mid = strtoll(line + pre, &stop, 10);
	if (stop != end || errno != 0 || mid <= 0 || line[pre] < '0' || line[pre] > '9')
		return -1;
	return mid;
}

static void
probe_data(struct probe *p)
{
	int64_t start;
	enum probe_io io;

	if (!probe_cmd(p, "DATA", "DATA", NULL))
		return;
	if (p->r.code != 354) {
		probe_refused(p, "DATA");
		probe_quit(p);
		return;
	}
	probe_show_message(p);
	io = probe_send(p, p->msg, p->msg_len);
	if (io == PROBE_IO_OK)
		io = probe_send(p, ".\r\n", 3);
	start = probe_now();
	if (io == PROBE_IO_OK)
		io = probe_read_reply(p, start);
	else
		p->r.n = p->r.more = 0;
	if (!probe_record(p, "end of data", ".", io, start))
		return;
	if (p->r.code / 100 != 2) {
		probe_refused(p, "end of data");
	} else if ((p->mid = probe_mid(p)) > 0) {
		probe_verdict(p, PROBE_ACCEPTED, "end of data", p->r.code,
		    "accepted: message queued as MID %lld", p->mid);
	} else {
		probe_verdict(p, PROBE_ACCEPTED, "end of data", p->r.code, "accepted: %s",
		    p->r.line[p->r.n - 1]);
	}
	if (p->r.code != 421)
		probe_quit(p);
}

/* ---------------------------------------------------------------- the session */

static void
probe_session(struct probe *p)
{
	char cmd[PROBE_RAW_MAX];
	int64_t start;
	enum probe_io io;
	const char *refused_step = NULL;
	int refused_code = 0;
	char refused_line[PROBE_LINE_MAX] = "";
	bool more = false;

	probe_say(p, PROBE_COL_DIM, "connecting to %s ...", p->target);
	start = probe_now();
	if (!probe_connect(p)) {
		probe_verdict(p, PROBE_LOST, "connect", 0, "could not connect to %s: %s",
		    p->target, p->ioerr);
		return;
	}
	probe_say(p, PROBE_COL_DIM, "connected to %s (%" PRId64 " ms)", p->addr,
	    probe_now() - start);
	start = probe_now();
	io = probe_read_reply(p, start);
	if (!probe_record(p, "connect", NULL, io, start))
		return;
	if (!probe_ok(p)) {
		probe_refused(p, "connect");
		if (p->r.code != 421)
			probe_quit(p);
		return;
	}
	if (!probe_greet(p) || (p->starttls && !probe_starttls(p)) ||
	    (p->user != NULL && !probe_auth(p)))
		goto refused;

	snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>", p->from_opt);
	if (!probe_cmd(p, "MAIL", cmd, NULL))
		return;
	if (!probe_ok(p)) {
		probe_refused(p, "MAIL");
		goto refused;
	}
	/* every recipient is tried, so the transcript shows each one's fate */
	for (size_t i = 0; i < p->n_to; i++) {
		snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>", p->to[i]);
		if (!probe_cmd(p, "RCPT", cmd, NULL))
			return;
		if (probe_ok(p))
			continue;
		if (refused_step == NULL) {
			refused_step = "RCPT";
			refused_code = p->r.code;
			more = p->r.n > 1;
			util_strlcpy(refused_line, p->r.line[0], sizeof(refused_line));
		}
		if (p->r.code == 421)
			break;
	}
	if (refused_step != NULL) {
		probe_verdict(p, PROBE_REFUSED, refused_step, refused_code,
		    "refused at RCPT: %s%s", refused_line, more ? " ..." : "");
		if (p->r.code != 421)
			probe_quit(p);
		return;
	}
	if (p->no_data) {
		probe_verdict(p, PROBE_ACCEPTED, "RCPT", p->r.code,
		    "accepted: every step succeeded (stopped before DATA: --no-data)");
		probe_quit(p);
		return;
	}
	probe_data(p);
	return;
refused:
	/* the verdict is set; say goodbye unless the server is gone or going */
	if (p->result == PROBE_REFUSED && p->r.code != 421)
		probe_quit(p);
}

/* ---------------------------------------------------------------- options */

static void
probe_usage(FILE *fp)
{
	fputs("usage: mailgate probe [OPTIONS] HOST[:PORT]\n"
	    "\n"
	    "Talks SMTP to HOST (port 25 unless given; IPv6 as [::1]:2525) the way an\n"
	    "administrator would with telnet, shows the transcript with the time of each\n"
	    "reply, explains every refusal, and ends with a verdict.\n"
	    "\n"
	    "  --from ADDR        envelope sender (default probe@<local hostname>)\n"
	    "  --to ADDR          recipient, repeatable (default postmaster@<HOST>)\n"
	    "  --helo NAME        the name given in EHLO/HELO (default the local hostname)\n"
	    "  --ehlo             greet with EHLO, falling back to HELO on a 5xx (default)\n"
	    "  --plain-helo       greet with HELO\n"
	    "  --starttls         STARTTLS, show the certificate and the session, EHLO again\n"
	    "                     (the certificate is not required to verify)\n"
	    "  --auth USER        authenticate (PLAIN, else LOGIN); the password comes from\n"
	    "                     MAILGATE_PASSWORD or is asked for on the terminal\n"
	    "  --data FILE|-      send this message (line ends made CRLF, dot-stuffed)\n"
	    "                     instead of a short test message\n"
	    "  --no-data          stop after RCPT\n"
	    "  --timeout SECONDS  for connecting and for each reply (default 30)\n"
	    "  --quiet            print only the verdict\n"
	    "  --json             print the transcript and the verdict as one JSON document\n"
	    "\n"
	    "Exit status: 0 accepted (with --no-data: every step succeeded), 1 refused,\n"
	    "2 usage error, could not connect, timeout or a broken conversation.\n", fp);
}

/* "host", "host:port", "[v6]", "[v6]:port", "v6" */
static bool
probe_parse_target(struct probe *p, const char *arg)
{
	const char *port = NULL, *colon = strchr(arg, ':');
	size_t hl;

	if (arg[0] == '[') {
		const char *rb = strchr(arg, ']');

		if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
			return false;
		hl = (size_t)(rb - arg - 1);
		memcpy(p->host, arg + 1, hl < sizeof(p->host) ? hl : 0);
		if (rb[1] == ':')
			port = rb + 2;
	} else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		hl = (size_t)(colon - arg);
		memcpy(p->host, arg, hl < sizeof(p->host) ? hl : 0);
		port = colon + 1;
	} else {
		hl = strlen(arg);
		memcpy(p->host, arg, hl < sizeof(p->host) ? hl : 0);
	}
	if (hl == 0 || hl >= sizeof(p->host))
		return false;
	p->host[hl] = '\0';
	if (port != NULL) {
		char *end;
		long v = strtol(port, &end, 10);

		if (*port == '\0' || *end != '\0' || v < 1 || v > 65535)
			return false;
	}
	snprintf(p->port, sizeof(p->port), "%s", port != NULL ? port : "25");
	snprintf(p->target, sizeof(p->target), strchr(p->host, ':') != NULL ? "[%s]:%s" :
	    "%s:%s", p->host, p->port);
	return true;
}

/* the password: MAILGATE_PASSWORD, else asked on /dev/tty without echo */
static char *
probe_password(const char *user)
{
	const char *env = getenv("MAILGATE_PASSWORD");
	struct termios old, quiet;
	char buf[512], *nl;
	FILE *tty;
	bool restore;

	if (env != NULL)
		return strdup(env);
	if ((tty = fopen("/dev/tty", "r+e")) == NULL) {
		fprintf(stderr, "mailgate probe: no password for %s: set MAILGATE_PASSWORD or run "
		    "on a terminal\n", user);
		return NULL;
	}
	/*
	 * Echo off before the prompt, and without flushing: a password typed (or
	 * pasted) the moment the prompt shows must be neither echoed nor dropped.
	 */
	restore = tcgetattr(fileno(tty), &old) == 0;
	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fileno(tty), TCSANOW, &quiet);
	}
	fprintf(tty, "password for %s: ", user);
	fflush(tty);
	nl = fgets(buf, sizeof(buf), tty);
	if (restore)
		tcsetattr(fileno(tty), TCSANOW, &old);
	fputc('\n', tty);
	fclose(tty);
	if (nl == NULL) {
		fprintf(stderr, "mailgate probe: no password read\n");
		return NULL;
	}
	buf[strcspn(buf, "\r\n")] = '\0';
	nl = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return nl;
}

/* a recipient domain for HOST: a name as it is, an address as a literal */
static void
probe_default_to(struct probe *p)
{
	unsigned char a[16];

	if (inet_pton(AF_INET, p->host, a) == 1)
		snprintf(p->default_to, sizeof(p->default_to), "postmaster@[%s]", p->host);
	else if (inet_pton(AF_INET6, p->host, a) == 1)
		snprintf(p->default_to, sizeof(p->default_to), "postmaster@[IPv6:%s]", p->host);
	else
		snprintf(p->default_to, sizeof(p->default_to), "postmaster@%s", p->host);
}

/* the options that take a value; the flags are set by getopt_long itself */
enum { PROBE_OPT_FROM = 256, PROBE_OPT_TO, PROBE_OPT_HELO, PROBE_OPT_AUTH, PROBE_OPT_DATA,
	PROBE_OPT_TIMEOUT };

/* a command argument must not end the line early or smuggle another command */
static bool
probe_clean_arg(const char *what, const char *s)
{
	for (const char *c = s; *c != '\0'; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			fprintf(stderr, "mailgate probe: %s holds a control character\n", what);
			return false;
		}
	}
	if (strlen(s) > 400) {
		fprintf(stderr, "mailgate probe: %s is too long\n", what);
		return false;
	}
	return true;
}

/* parse argv into p; returns -1 to go on, else the exit status */
static int
probe_options_parse(struct probe *p, int argc, char **argv)
{
	const struct option opts[] = {
		{ "from", required_argument, NULL, PROBE_OPT_FROM },
		{ "to", required_argument, NULL, PROBE_OPT_TO },
		{ "helo", required_argument, NULL, PROBE_OPT_HELO },
		{ "auth", required_argument, NULL, PROBE_OPT_AUTH },
		{ "data", required_argument, NULL, PROBE_OPT_DATA },
		{ "timeout", required_argument, NULL, PROBE_OPT_TIMEOUT },
		{ "ehlo", no_argument, &p->plain_helo, 0 },
		{ "plain-helo", no_argument, &p->plain_helo, 1 },
		{ "starttls", no_argument, &p->starttls, 1 },
		{ "no-data", no_argument, &p->no_data, 1 },
		{ "quiet", no_argument, &p->quiet, 1 },
		{ "json", no_argument, &p->json, 1 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char **nt;
	char *end;
	long v;
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 0:
			break;
		case PROBE_OPT_FROM:
			p->from_opt = optarg;
			break;
		case PROBE_OPT_TO:
			if ((nt = realloc(p->to, (p->n_to + 1) * sizeof(*nt))) == NULL) {
				perror("mailgate probe");
				return PROBE_EXIT_TROUBLE;
			}
			p->to = nt;
			p->to[p->n_to++] = optarg;
			break;
		case PROBE_OPT_HELO:
			p->helo_opt = optarg;
			break;
		case PROBE_OPT_AUTH:
			p->user = optarg;
			break;
		case PROBE_OPT_DATA:
			p->data_path = optarg;
			break;
		case PROBE_OPT_TIMEOUT:
			v = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || v < 1 || v > PROBE_TIMEOUT_MAX) {
				fprintf(stderr, "mailgate probe: --timeout takes whole seconds, "
				    "1 to %d\n", PROBE_TIMEOUT_MAX);
				return PROBE_EXIT_TROUBLE;
			}
			p->timeout_s = (int)v;
			break;
		case 'h':
			probe_usage(stdout);
			return PROBE_EXIT_ACCEPTED;
		default:
			/* optopt: a known option missing its value, else 0 or a letter */
			fprintf(stderr, "mailgate probe: %s: %s\n", argv[optind - 1],
			    optopt >= PROBE_OPT_FROM ? "needs a value" : "unknown option");
			probe_usage(stderr);
			return PROBE_EXIT_TROUBLE;
		}
	}
	if (optind != argc - 1 || !probe_parse_target(p, argv[optind])) {
		if (optind == argc - 1)
			fprintf(stderr, "mailgate probe: %s: not HOST[:PORT]\n", argv[optind]);
		probe_usage(stderr);
		return PROBE_EXIT_TROUBLE;
	}
	if (p->no_data && p->data_path != NULL) {
		fprintf(stderr, "mailgate probe: --data and --no-data together make no sense\n");
		return PROBE_EXIT_TROUBLE;
	}
	if (gethostname(p->localname, sizeof(p->localname) - 1) == -1 || p->localname[0] == '\0')
		snprintf(p->localname, sizeof(p->localname), "localhost");
	if (p->helo_opt == NULL)
		p->helo_opt = p->localname;
	if (p->from_opt == NULL) {
		snprintf(p->default_from, sizeof(p->default_from), "probe@%s", p->localname);
		p->from_opt = p->default_from;
	}
	if (p->n_to == 0) {
		probe_default_to(p);
		if ((p->to = malloc(sizeof(*p->to))) == NULL)
			return PROBE_EXIT_TROUBLE;
		p->to[p->n_to++] = p->default_to;
	}
	if (!probe_clean_arg("--from", p->from_opt) || !probe_clean_arg("--helo", p->helo_opt) ||
	    (p->user != NULL && !probe_clean_arg("--auth", p->user)))
		return PROBE_EXIT_TROUBLE;
	for (size_t i = 0; i < p->n_to; i++)
		if (!probe_clean_arg("--to", p->to[i]))
			return PROBE_EXIT_TROUBLE;
	return -1;
}

/* the message to send, read before connecting so no server waits on a file */
static int
probe_load_message(struct probe *p)
{
	char *text;
	size_t len = 0;
	FILE *fp;
	bool ok;

	if (p->no_data)
		return -1;
	if (p->data_path == NULL) {
		if ((text = probe_default_message(p, p->from_opt)) == NULL) {
			perror("mailgate probe");
			return PROBE_EXIT_TROUBLE;
		}
		len = strlen(text);
	} else {
		fp = strcmp(p->data_path, "-") == 0 ? stdin : fopen(p->data_path, "rbe");
		if (fp == NULL || (text = probe_read_all(fp, &len)) == NULL) {
			fprintf(stderr, "mailgate probe: %s: %s\n", p->data_path, strerror(errno));
			if (fp != NULL && fp != stdin)
				fclose(fp);
			return PROBE_EXIT_TROUBLE;
		}
		if (fp != stdin)
			fclose(fp);
	}
	ok = probe_prepare_message(p, text, len);
	free(text);
	if (!ok) {
		perror("mailgate probe");
		return PROBE_EXIT_TROUBLE;
	}
	return -1;
}

static void
probe_print_verdict(struct probe *p)
{
	const char *res = p->result == PROBE_ACCEPTED ? "accepted" :
	    p->result == PROBE_REFUSED ? "refused" : "no-connection";
	json_t *v;

	if (!p->json) {
		if (p->color)
			printf("%s%s%s%s\n", PROBE_COL_BOLD, p->result == PROBE_ACCEPTED ?
			    PROBE_COL_GREEN : p->result == PROBE_REFUSED ? PROBE_COL_RED :
			    PROBE_COL_YELLOW, p->vtext, PROBE_COL_OFF);
		else
			printf("%s\n", p->vtext);
		return;
	}
	v = json_object();
	json_object_set_new(v, "result", json_string(res));
	json_object_set_new(v, "step", p->vstep != NULL ? json_string(p->vstep) : json_null());
	json_object_set_new(v, "code", p->vcode != 0 ? json_integer(p->vcode) : json_null());
	json_object_set_new(v, "mid", p->mid > 0 ? json_integer(p->mid) : json_null());
	json_object_set_new(v, "text", probe_json_str(p->vtext));
	json_object_set_new(p->root, "verdict", v);
	json_dumpf(p->root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

int
probe_main(int argc, char **argv)
{
	struct probe *p = calloc(1, sizeof(*p));
	int status;

	if (p == NULL) {
		perror("mailgate probe");
		return PROBE_EXIT_TROUBLE;
	}
	p->fd = -1;
	p->mid = -1;
	p->timeout_s = 30;
	status = probe_options_parse(p, argc, argv);
	if (status == -1)
		status = probe_load_message(p);
	if (status == -1 && p->user != NULL && (p->password = probe_password(p->user)) == NULL)
		status = PROBE_EXIT_TROUBLE;
	if (status == -1 && p->password != NULL && strlen(p->password) > 500) {
		fprintf(stderr, "mailgate probe: the password is too long\n");
		status = PROBE_EXIT_TROUBLE;
	}
	if (status == -1) {
		/* a peer that closes while we write must not kill us with SIGPIPE */
		signal(SIGPIPE, SIG_IGN);
		p->color = !p->json && isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
		if (p->json) {
			p->root = json_object();
			json_object_set_new(p->root, "target", probe_json_str(p->target));
			p->steps = json_array();
			json_object_set_new(p->root, "steps", p->steps);
		}
		probe_session(p);
		if (p->json)
			json_object_set_new(p->root, "address", p->addr[0] ? json_string(p->addr) :
			    json_null());
		probe_print_verdict(p);
		status = p->result == PROBE_ACCEPTED ? PROBE_EXIT_ACCEPTED :
		    p->result == PROBE_REFUSED ? PROBE_EXIT_REFUSED : PROBE_EXIT_TROUBLE;
	}
	if (p->ssl != NULL) {
		SSL_shutdown(p->ssl);
		SSL_free(p->ssl);
	}
	SSL_CTX_free(p->ctx);
	if (p->fd != -1)
		close(p->fd);
	json_decref(p->root);
	if (p->password != NULL) {
		explicit_bzero(p->password, strlen(p->password));
		free(p->password);
	}
	free(p->to);
	free(p->msg);
	free(p);
	return status;
}
