/*
 * test_mta.c: the outbound SMTP client on a real event_base against a scripted
 * SMTP server inside the test (a thread per connection on 127.0.0.1, blocking
 * sockets, OpenSSL for STARTTLS with a certificate made by the openssl CLI) and
 * a stub DNS server on 127.0.0.1 that answers MX queries from a table (host
 * addresses come from a temporary hosts file). Nothing is ever sent anywhere
 * but 127.0.0.1. Queue files are written by hand in the spool's format.
 *
 * The server proves what it tests: in PIPELINING mode it holds its MAIL and
 * RCPT replies until DATA arrives, so a client that waited would hang; without
 * PIPELINING it notes any command that arrives before its reply was sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "delivery.h"
#include "dns.h"
#include "maillog.h"
#include "mta_session.h"

static char dir[] = "/tmp/mailgate-test-mta-XXXXXX";
static char hosts_path[300], log_path[300];
static SSL_CTX *server_tls;		/* NULL when the openssl CLI could not make a cert */

/*
 * The stub DNS server: MX from a table, NXDOMAIN for names it does not know
 */

#define T_A	1
#define T_MX	15
#define T_ANY	0

static const struct {
	const char *name;
	uint16_t type;
	const char *data;	/* MX: the host ("" = the root: null MX); "SERVFAIL" */
	uint16_t pref;
} dns_table[] = {
	{ "mx.test", T_MX, "second.mx.test", 20 },
	{ "mx.test", T_MX, "first.mx.test", 10 },
	{ "nullmx.test", T_MX, "", 0 },
	{ "nomx.test", T_A, "127.0.0.1", 0 },
	{ "servfail.test", T_ANY, "SERVFAIL", 0 },
	{ "badmx.test", T_MX, "nowhere.mx.test", 10 },
};

/* every name the test connects to is here: 127.0.0.1 only */
static const char hosts_text[] = "127.0.0.1 first.mx.test second.mx.test nomx.test\n";

struct stub {
	int fd, stop[2];
	uint16_t port;
	pthread_t thread;
};

static struct stub stub;

static size_t
put_name(uint8_t *out, const char *name)
{
	size_t n = 0;

	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t len = dot != NULL ? (size_t)(dot - name) : strlen(name);

		out[n++] = (uint8_t)len;
		memcpy(out + n, name, len);
		n += len;
		name += len + (*(name + len) == '.');
	}
	out[n++] = 0;
	return n;
}

static size_t
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

static size_t
stub_answer(const uint8_t *in, size_t inlen, uint8_t *out)
{
	char qname[256];
	size_t off = 12, t = 0, qend, n;
	uint16_t qtype, an = 0, rcode = 0;
	bool found = false;

	if (inlen < 12 || (in[2] & 0x80) || in[4] != 0 || in[5] != 1)
		return 0;
	while (off < inlen && in[off] != 0) {
		size_t len = in[off++];

		if (len > 63 || off + len > inlen || t + len + 1 >= sizeof(qname))
			return 0;
		for (size_t i = 0; i < len; i++) {
			char c = (char)in[off + i];

			qname[t++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		qname[t++] = '.';
		off += len;
	}
	if (off + 5 > inlen)
		return 0;
	qname[t > 0 ? t - 1 : 0] = '\0';
	qtype = (uint16_t)(in[off + 1] << 8 | in[off + 2]);
	qend = off + 5;
	memcpy(out, in, qend);
	n = qend;
	for (size_t i = 0; i < sizeof(dns_table) / sizeof(dns_table[0]); i++) {
		uint8_t rdata[300];
		size_t rdlen;

		if (strcmp(dns_table[i].name, qname) != 0)
			continue;
		found = true;
		if (strcmp(dns_table[i].data, "SERVFAIL") == 0) {
			rcode = 2;
			break;
		}
		if (dns_table[i].type != qtype || qtype != T_MX)
			continue;
		rdlen = put16(rdata, dns_table[i].pref);
		rdlen += put_name(rdata + 2, dns_table[i].data);
		n += put16(out + n, 0xc00c);
		n += put16(out + n, T_MX);
		n += put16(out + n, 1);
		n += put16(out + n, 0);
		n += put16(out + n, 60);
		n += put16(out + n, (uint16_t)rdlen);
		memcpy(out + n, rdata, rdlen);
		n += rdlen;
		an++;
	}
	out[2] = (uint8_t)(0x84 | (in[2] & 0x79));
	out[3] = (uint8_t)(0x80 | (rcode != 0 ? rcode : (found ? 0 : 3)));
	if (rcode != 0) {
		an = 0;
		n = qend;
	}
	put16(out + 6, an);
	put16(out + 8, 0);
	put16(out + 10, 0);
	if (in[10] != 0 || in[11] != 0) {
		/* EDNS0 asked: an OPT back (RFC 6891 7) */
		out[n++] = 0;
		n += put16(out + n, 41);
		n += put16(out + n, 1232);
		n += put16(out + n, 0);
		n += put16(out + n, 0);
		n += put16(out + n, 0);
		put16(out + 10, 1);
	}
	return n;
}

static void *
stub_run(void *arg)
{
	struct stub *st = arg;
	uint8_t in[1500], out[4096];

	for (;;) {
		struct pollfd pfd[2] = { { st->fd, POLLIN, 0 }, { st->stop[0], POLLIN, 0 } };
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		ssize_t len;
		size_t n;

		if (poll(pfd, 2, -1) == -1 || pfd[1].revents != 0)
			break;
		len = recvfrom(st->fd, in, sizeof(in), 0, (struct sockaddr *)&peer, &plen);
		if (len > 0 && (n = stub_answer(in, (size_t)len, out)) > 0)
			(void)sendto(st->fd, out, n, 0, (struct sockaddr *)&peer, plen);
	}
	return NULL;
}

static void
stub_start(struct stub *st)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_int_not_equal(st->fd = socket(AF_INET, SOCK_DGRAM, 0), -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(st->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(st->fd, (struct sockaddr *)&sin, &len), 0);
	st->port = ntohs(sin.sin_port);
	assert_int_equal(pipe(st->stop), 0);
	assert_int_equal(pthread_create(&st->thread, NULL, stub_run, st), 0);
}

static void
stub_stop(struct stub *st)
{
	assert_int_equal(write(st->stop[1], "x", 1), 1);
	pthread_join(st->thread, NULL);
	close(st->fd);
	close(st->stop[0]);
	close(st->stop[1]);
}

/*
 * The scripted SMTP server
 */

#define SRV_CONNS	16
#define SRV_MSGS	8

struct srv_conf {
	const char *greeting;		/* NULL: "220 sink.test ESMTP" */
	bool silent;			/* never greet */
	bool pipelining;		/* announce it; hold MAIL/RCPT replies until DATA */
	bool no_ehlo;			/* 502 to EHLO */
	const char *ehlo_raw;		/* this instead of an EHLO reply */
	bool starttls;			/* announce STARTTLS */
	bool tls_garbage;		/* 220 to STARTTLS, then anything but TLS */
	bool eightbit;
	bool size;			/* announce SIZE size_max */
	uint64_t size_max;
	const char *mail_reply;		/* NULL: 250 */
	const char *final;		/* NULL: "250 2.0.0 Ok: queued as X" */
	bool stall_dot;			/* never answer the end of data */
	bool close_in_data;		/* close once the first data bytes are in */
	int reset_first;		/* reset this many connections at once */
	bool close_after_msg;		/* hang up after answering the end of data */
	unsigned hold_ms;		/* before answering the end of data */
};

struct srv {
	struct srv_conf conf;
	int lfd, stop[2];
	uint16_t port;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_t threads[SRV_CONNS];
	int fds[SRV_CONNS];
	int n_threads;
	int conns, cur, max_cur, msgs, tls_ok;
	bool violation;			/* a command came before the reply it had to wait for */
	char log[32768];		/* "<conn>: <command>\n" */
	size_t log_len;
	char *msg[SRV_MSGS];		/* each message's data as received (still dot-stuffed) */
	size_t msg_len[SRV_MSGS];
};

struct sconn {
	struct srv *s;
	int fd, idx;
	SSL *ssl;
	char in[16384];
	size_t len;
	char out[8192];
	size_t olen;
};

static void
srv_note(struct srv *s, int idx, const char *line)
{
	pthread_mutex_lock(&s->mu);
	s->log_len += (size_t)snprintf(s->log + s->log_len, sizeof(s->log) - s->log_len,
	    "%d: %s\n", idx, line);
	if (s->log_len >= sizeof(s->log))
		s->log_len = sizeof(s->log) - 1;
	pthread_mutex_unlock(&s->mu);
}

static int
sc_read(struct sconn *sc)
{
	ssize_t n;

	if (sc->len == sizeof(sc->in))
		return -1;
	if (sc->ssl != NULL)
		n = SSL_read(sc->ssl, sc->in + sc->len, (int)(sizeof(sc->in) - sc->len));
	else
		n = recv(sc->fd, sc->in + sc->len, sizeof(sc->in) - sc->len, 0);
	if (n <= 0)
		return -1;
	sc->len += (size_t)n;
	return 0;
}

static int
sc_line(struct sconn *sc, char *line, size_t cap)
{
	for (;;) {
		char *p = memmem(sc->in, sc->len, "\r\n", 2);

		if (p != NULL) {
			size_t n = (size_t)(p - sc->in);

			if (n >= cap)
				return -1;
			memcpy(line, sc->in, n);
			line[n] = '\0';
			memmove(sc->in, p + 2, sc->len - n - 2);
			sc->len -= n + 2;
			return 0;
		}
		if (sc_read(sc) == -1)
			return -1;
	}
}

/* is there input already, or within ms? */
static bool
sc_pending(struct sconn *sc, int ms)
{
	struct pollfd pfd = { sc->fd, POLLIN, 0 };

	if (sc->len > 0 || (sc->ssl != NULL && SSL_pending(sc->ssl) > 0))
		return true;
	return poll(&pfd, 1, ms) > 0;
}

static void sc_reply(struct sconn *sc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sc_reply(struct sconn *sc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sc->olen += (size_t)vsnprintf(sc->out + sc->olen, sizeof(sc->out) - sc->olen, fmt, ap);
	va_end(ap);
	sc->olen += (size_t)snprintf(sc->out + sc->olen, sizeof(sc->out) - sc->olen, "\r\n");
}

static void
sc_flush(struct sconn *sc)
{
	size_t off = 0;

	while (off < sc->olen) {
		ssize_t n = sc->ssl != NULL ?
		    SSL_write(sc->ssl, sc->out + off, (int)(sc->olen - off)) :
		    send(sc->fd, sc->out + off, sc->olen - off, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	sc->olen = 0;
}

/* the data up to <CRLF>.<CRLF>, as sent (dot-stuffed, with the last line's CRLF) */
static int
sc_data(struct sconn *sc, char **msg, size_t *mlen)
{
	size_t cap = 65536, dl = 2;
	char *d = malloc(cap);

	if (d == NULL)
		return -1;
	memcpy(d, "\r\n", 2);	/* the data starts at a line start */
	for (;;) {
		if (sc->len > 0) {
			size_t from = dl >= 4 ? dl - 4 : 0;
			char *p;

			if (sc->s->conf.close_in_data) {
				/* gone with the message half read */
				free(d);
				return -1;
			}

			while (dl + sc->len > cap) {
				char *nd = realloc(d, cap *= 2);

				if (nd == NULL) {
					free(d);
					return -1;
				}
				d = nd;
			}
			memcpy(d + dl, sc->in, sc->len);
			dl += sc->len;
			sc->len = 0;
			if ((p = memmem(d + from, dl - from, "\r\n.\r\n", 5)) != NULL) {
				size_t q = (size_t)(p - d), end = q + 5;

				/* what follows the end of data is the next command */
				memcpy(sc->in, d + end, dl - end);
				sc->len = dl - end;
				memmove(d, d + 2, q);
				*msg = d;
				*mlen = q;
				return 0;
			}
		}
		if (sc_read(sc) == -1) {
			free(d);
			return -1;
		}
	}
}

static bool
cmd_is(const char *line, const char *verb)
{
	return strncasecmp(line, verb, strlen(verb)) == 0;
}

static void
srv_ehlo(struct sconn *sc)
{
	const struct srv_conf *cf = &sc->s->conf;

	sc_reply(sc, "250-sink.test");
	if (cf->pipelining)
		sc_reply(sc, "250-PIPELINING");
	if (cf->size)
		sc_reply(sc, "250-SIZE %" PRIu64, cf->size_max);
	if (cf->starttls && sc->ssl == NULL)
		sc_reply(sc, "250-STARTTLS");
	if (cf->eightbit)
		sc_reply(sc, "250-8BITMIME");
	sc_reply(sc, "250 ENHANCEDSTATUSCODES");
}

static void *
srv_conn(void *arg)
{
	struct sconn *sc = arg;
	struct srv *s = sc->s;
	const struct srv_conf *cf = &s->conf;
	char line[2048];
	int rcpts = 0;
	bool in_tx = false;

	if (sc->idx < cf->reset_first) {
		/* SO_LINGER 0: the close sends a RST */
		struct linger l = { 1, 0 };

		setsockopt(sc->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		goto out;
	}
	if (cf->silent) {
		while (sc_read(sc) == 0)
			sc->len = 0;
		goto out;
	}
	sc_reply(sc, "%s", cf->greeting != NULL ? cf->greeting : "220 sink.test ESMTP");
	sc_flush(sc);
	while (sc_line(sc, line, sizeof(line)) == 0) {
		bool hold = false;

		srv_note(s, sc->idx, line);
		if (cmd_is(line, "EHLO ")) {
			if (cf->ehlo_raw != NULL) {
				sc->olen = (size_t)snprintf(sc->out, sizeof(sc->out), "%s",
				    cf->ehlo_raw);
			} else if (cf->no_ehlo)
				sc_reply(sc, "502 5.5.2 Error: command not recognized");
			else
				srv_ehlo(sc);
		} else if (cmd_is(line, "HELO ")) {
			sc_reply(sc, "250 sink.test");
		} else if (cmd_is(line, "STARTTLS")) {
			sc_reply(sc, "220 2.0.0 Ready to start TLS");
			sc_flush(sc);
			if (cf->tls_garbage || server_tls == NULL) {
				static const char junk[] = "this is no TLS handshake\r\n";

				(void)send(sc->fd, junk, sizeof(junk) - 1, MSG_NOSIGNAL);
				goto out;
			}
			sc->len = 0;
			if ((sc->ssl = SSL_new(server_tls)) == NULL)
				goto out;
			SSL_set_fd(sc->ssl, sc->fd);
			if (SSL_accept(sc->ssl) != 1)
				goto out;
			pthread_mutex_lock(&s->mu);
			s->tls_ok++;
			pthread_mutex_unlock(&s->mu);
			continue;
		} else if (cmd_is(line, "MAIL FROM:")) {
			if (!cf->pipelining && sc_pending(sc, 50))
				s->violation = true;
			rcpts = 0;
			if (cf->mail_reply != NULL) {
				sc_reply(sc, "%s", cf->mail_reply);
				in_tx = cf->mail_reply[0] == '2';
			} else {
				sc_reply(sc, "250 2.1.0 Ok");
				in_tx = true;
			}
			hold = cf->pipelining;
		} else if (cmd_is(line, "RCPT TO:")) {
			if (!cf->pipelining && sc_pending(sc, 50))
				s->violation = true;
			if (!in_tx)
				sc_reply(sc, "503 5.5.1 Error: need MAIL command");
			else if (cmd_is(line + 9, "bad"))
				sc_reply(sc, "550 5.1.1 %s: Recipient address rejected", line + 8);
			else if (cmd_is(line + 9, "temp"))
				sc_reply(sc, "451 4.2.0 Mailbox busy");
			else {
				sc_reply(sc, "250 2.1.5 Ok");
				rcpts++;
			}
			hold = cf->pipelining;
		} else if (cmd_is(line, "DATA")) {
			char *msg;
			size_t mlen;

			if (rcpts == 0) {
				sc_reply(sc, "554 5.5.1 Error: no valid recipients");
				sc_flush(sc);
				continue;
			}
			sc_reply(sc, "354 End data with <CR><LF>.<CR><LF>");
			sc_flush(sc);
			if (sc_data(sc, &msg, &mlen) == -1)
				goto out;
			pthread_mutex_lock(&s->mu);
			if (s->msgs < SRV_MSGS) {
				s->msg[s->msgs] = msg;
				s->msg_len[s->msgs] = mlen;
			} else
				free(msg);
			s->msgs++;
			pthread_mutex_unlock(&s->mu);
			srv_note(s, sc->idx, "<message>");
			if (cf->stall_dot) {
				while (sc_read(sc) == 0)
					sc->len = 0;
				goto out;
			}
			if (cf->hold_ms > 0)
				usleep(cf->hold_ms * 1000);
			sc_reply(sc, "%s", cf->final != NULL ? cf->final :
			    "250 2.0.0 Ok: queued as X");
			in_tx = false;
			rcpts = 0;
			if (cf->close_after_msg) {
				sc_flush(sc);
				goto out;
			}
		} else if (cmd_is(line, "RSET")) {
			sc_reply(sc, "250 2.0.0 Ok");
			in_tx = false;
			rcpts = 0;
		} else if (cmd_is(line, "QUIT")) {
			sc_reply(sc, "221 2.0.0 Bye");
			sc_flush(sc);
			goto out;
		} else
			sc_reply(sc, "502 5.5.2 Error: command not recognized");
		if (!hold)
			sc_flush(sc);
	}
out:
	pthread_mutex_lock(&s->mu);
	if (sc->ssl != NULL)
		SSL_free(sc->ssl);
	close(sc->fd);
	for (int i = 0; i < s->n_threads; i++)
		if (s->fds[i] == sc->fd)
			s->fds[i] = -1;
	s->cur--;
	pthread_mutex_unlock(&s->mu);
	free(sc);
	return NULL;
}

static void *
srv_accept(void *arg)
{
	struct srv *s = arg;

	for (;;) {
		struct pollfd pfd[2] = { { s->lfd, POLLIN, 0 }, { s->stop[0], POLLIN, 0 } };
		struct sconn *sc;
		int fd;

		if (poll(pfd, 2, -1) == -1 || pfd[1].revents != 0)
			break;
		if ((fd = accept(s->lfd, NULL, NULL)) == -1)
			continue;
		pthread_mutex_lock(&s->mu);
		if (s->n_threads == SRV_CONNS || (sc = calloc(1, sizeof(*sc))) == NULL) {
			pthread_mutex_unlock(&s->mu);
			close(fd);
			continue;
		}
		sc->s = s;
		sc->fd = fd;
		sc->idx = s->conns++;
		if (++s->cur > s->max_cur)
			s->max_cur = s->cur;
		s->fds[s->n_threads] = fd;
		if (pthread_create(&s->threads[s->n_threads], NULL, srv_conn, sc) == 0)
			s->n_threads++;
		pthread_mutex_unlock(&s->mu);
	}
	return NULL;
}

static void
srv_start(struct srv *s, const struct srv_conf *conf)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int one = 1;

	memset(s, 0, sizeof(*s));
	if (conf != NULL)
		s->conf = *conf;
	pthread_mutex_init(&s->mu, NULL);
	assert_int_not_equal(s->lfd = socket(AF_INET, SOCK_STREAM, 0), -1);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(s->lfd, 16), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sin, &len), 0);
	s->port = ntohs(sin.sin_port);
	assert_int_equal(pipe(s->stop), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, srv_accept, s), 0);
	s->running = true;
}

/* after it, every connection thread has ended: the counters and log are final */
static void
srv_stop(struct srv *s)
{
	if (!s->running)
		return;
	s->running = false;
	if (write(s->stop[1], "x", 1) != 1)
		fail_msg("cannot stop the server");
	pthread_join(s->thread, NULL);
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->n_threads; i++)
		if (s->fds[i] != -1)
			shutdown(s->fds[i], SHUT_RDWR);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < s->n_threads; i++)
		pthread_join(s->threads[i], NULL);
	close(s->lfd);
	close(s->stop[0]);
	close(s->stop[1]);
	pthread_mutex_destroy(&s->mu);
}

static void
srv_free(struct srv *s)
{
	srv_stop(s);
	for (int i = 0; i < SRV_MSGS; i++) {
		free(s->msg[i]);
		s->msg[i] = NULL;
	}
}

/*
 * The fixture: a loop, a resolver pointed at the stub, an agent, up to two servers
 */

struct fx {
	struct event_base *base;
	struct dns *dns;
	struct config cfg;
	struct mta *mta;
	struct srv srv[2];
	struct event *guard;
	int done, want;
	bool timed_out;
};

struct msg {
	struct fx *fx;
	struct delivery_batch b;
	struct delivery_rcpt r[4];
	struct route_target t;
	char path[300];
	struct msg *next;		/* handed to the agent when this one is done */
	int done_calls;
};

static void
on_done(struct delivery_batch *b, void *arg)
{
	struct msg *m = arg;

	assert_ptr_equal(b, &m->b);
	m->done_calls++;
	m->fx->done++;
	if (m->next != NULL)
		mta_deliver(m->fx->mta, &m->next->b);
	if (m->fx->done >= m->fx->want)
		event_base_loopbreak(m->fx->base);
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *fx = arg;

	(void)fd;
	(void)what;
	fx->timed_out = true;
	event_base_loopbreak(fx->base);
}

static int
group_setup(void **state)
{
	char cmd[1024], cert[320], key[320];
	FILE *f;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	assert_non_null(mkdtemp(dir));
	snprintf(hosts_path, sizeof(hosts_path), "%s/hosts", dir);
	snprintf(log_path, sizeof(log_path), "%s/mail.log", dir);
	assert_non_null(f = fopen(hosts_path, "w"));
	fputs(hosts_text, f);
	fclose(f);
	assert_int_equal(maillog_open(log_path, LOG_FORMAT_ESA), 0);
	stub_start(&stub);
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s -days 2 -subj /CN=sink.test "
	    ">/dev/null 2>&1", key, cert);
	if (system(cmd) == 0 && (server_tls = SSL_CTX_new(TLS_server_method())) != NULL &&
	    (SSL_CTX_use_certificate_chain_file(server_tls, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(server_tls, key, SSL_FILETYPE_PEM) != 1)) {
		SSL_CTX_free(server_tls);
		server_tls = NULL;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[400];

	(void)state;
	stub_stop(&stub);
	maillog_close();
	SSL_CTX_free(server_tls);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return 0;
}

static uint16_t closed_port(void);

static int
setup(void **state)
{
	static char resolver[32];
	static char *resolvers[1];
	struct dns_conf dc;
	struct fx *fx = calloc(1, sizeof(*fx));
	char err[256];

	assert_non_null(fx);
	assert_int_equal(truncate(log_path, 0), 0);
	assert_non_null(fx->base = event_base_new());
	assert_non_null(fx->guard = evtimer_new(fx->base, guard_cb, fx));
	snprintf(resolver, sizeof(resolver), "127.0.0.1:%u", stub.port);
	resolvers[0] = resolver;
	memset(&dc, 0, sizeof(dc));
	dc.resolvers = resolvers;
	dc.n_resolvers = 1;
	dc.hosts_file = hosts_path;
	dc.timeout = 5;
	if ((fx->dns = dns_new(fx->base, &dc, err, sizeof(err))) == NULL)
		fail_msg("dns_new: %s", err);
	fx->cfg.hostname = (char *)"mta.test";
	fx->cfg.delivery.max_connections = 10;
	fx->cfg.delivery.max_connections_per_destination = 5;
	assert_non_null(fx->mta = mta_new(fx->base, fx->dns, &fx->cfg));
	/* never port 25, even in a test that forgets to pick a server: a closed port */
	mta_set_port_for_tests(fx->mta, closed_port());
	*state = fx;
	return 0;
}

/* the agent goes first: its sockets close, so the server threads end */
static void
fx_finish(struct fx *fx)
{
	mta_free(fx->mta);
	fx->mta = NULL;
	srv_stop(&fx->srv[0]);
	srv_stop(&fx->srv[1]);
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	mta_free(fx->mta);
	srv_free(&fx->srv[0]);
	srv_free(&fx->srv[1]);
	dns_free(fx->dns);
	event_free(fx->guard);
	event_base_free(fx->base);
	free(fx);
	return 0;
}

static void
fx_run(struct fx *fx, int want)
{
	struct timeval tv = { 20, 0 };

	fx->want = want;
	if (fx->done < want) {
		evtimer_add(fx->guard, &tv);
		event_base_loop(fx->base, 0);
		evtimer_del(fx->guard);
	}
	assert_false(fx->timed_out);
	assert_int_equal(fx->done, want);
}

static void
fx_timeouts(struct fx *fx, unsigned ms)
{
	struct mta_timeouts to = {
		.connect = ms, .greeting = ms, .helo = ms, .tls = ms, .mail = ms, .rcpt = ms,
		.data = ms, .block = ms, .dot = ms, .quit = ms, .idle = 5000,
	};

	mta_set_timeouts_for_tests(fx->mta, &to);
}

/* a queue file in the spool's format, and a batch for it to 127.0.0.1:port */
static void
msg_make(struct fx *fx, struct msg *m, uint64_t mid, const char *body, size_t len,
    bool body8, const char *const *rcpts, size_t n, uint16_t port)
{
	FILE *f;

	assert_true(n <= 4);
	memset(m, 0, sizeof(*m));
	m->fx = fx;
	snprintf(m->path, sizeof(m->path), "%s/%" PRIu64, dir, mid);
	assert_non_null(f = fopen(m->path, "w"));
	fprintf(f, "mailgate-spool 1\nmid %" PRIu64 "\narrival 2026-11-28T20:00:00Z\nicid 1\n"
	    "listener test\nclient 127.0.0.1\nhelo client.test\nsender <s@x.test>\n", mid);
	if (body8)
		fprintf(f, "body 8BITMIME\n");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "rcpt %zu <r%zu@x.test>\n", i, i);
	fprintf(f, "\n");
	m->b.data_offset = ftell(f);
	assert_int_equal(fwrite(body, 1, len, f), len);
	fclose(f);
	m->b.mid = mid;
	m->b.path = m->path;
	m->b.size = len;
	m->b.sender = "s@x.test";
	m->b.domain = "x.test";
	m->b.target = &m->t;
	m->b.rcpts = m->r;
	m->b.n_rcpts = n;
	m->b.done = on_done;
	m->b.arg = m;
	for (size_t i = 0; i < n; i++) {
		m->r[i].rid = (uint32_t)i;
		m->r[i].address = rcpts[i];
	}
	m->t.kind = TARGET_HOST;
	m->t.text = (char *)"127.0.0.1";
	m->t.host = (char *)"127.0.0.1";
	m->t.port = port;
}

static void
msg_usedns(struct msg *m, const char *domain)
{
	m->t.kind = TARGET_USEDNS;
	m->t.text = (char *)"USEDNS";
	m->t.host = NULL;
	m->b.domain = domain;
}

static const char body1[] = "Subject: hi\r\n\r\nhello\r\n";
static const char *const two[] = { "a@x.test", "b@x.test" };
static const char *const one[] = { "a@x.test" };

static void
simple(struct fx *fx, struct msg *m, const char *const *rcpts, size_t n)
{
	msg_make(fx, m, 7, body1, sizeof(body1) - 1, false, rcpts, n, fx->srv[0].port);
}

static void
assert_rcpt(const struct delivery_rcpt *r, enum delivery_status st, int code,
    const char *enhanced, const char *reply_part)
{
	if (r->status != st || r->code != code || strcmp(r->enhanced, enhanced) != 0 ||
	    strstr(r->reply, reply_part) == NULL)
		fail_msg("rcpt %s: got status %d code %d enhanced '%s' reply '%s'; want %d %d "
		    "'%s' '...%s...'", r->address, r->status, r->code, r->enhanced, r->reply, st,
		    code, enhanced, reply_part);
}

static char *
read_log(void)
{
	static char buf[65536];
	FILE *f = fopen(log_path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void assert_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
assert_log(const char *fmt, ...)
{
	char want[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	if (strstr(read_log(), want) == NULL)
		fail_msg("log lacks \"%s\":\n%s", want, read_log());
}

static void
assert_transcript(const struct srv *s, const char *part, bool present)
{
	if ((strstr(s->log, part) != NULL) != present)
		fail_msg("server transcript %s \"%s\":\n%s", present ? "lacks" : "has", part,
		    s->log);
}

static void
assert_message(const struct srv *s, int i, const char *want, size_t len)
{
	assert_true(s->msgs > i);
	if (s->msg_len[i] != len || memcmp(s->msg[i], want, len) != 0)
		fail_msg("message %d: got %zu octets \"%.*s\", want %zu \"%s\"", i, s->msg_len[i],
		    (int)s->msg_len[i], s->msg[i], len, want);
}

/*
 * The tests
 */

static void
test_pipelining(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .size = true, .eightbit = true };
	struct msg m;
	char want[128];

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	assert_int_equal(fx->done, 0);		/* never from inside mta_deliver */
	fx_run(fx, 1);
	assert_int_equal(m.done_calls, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "2.0.0 Ok: queued as X");
	assert_rcpt(&m.r[1], DELIVERY_OK, 250, "2.0.0", "Ok: queued");
	assert_int_equal(m.b.dcid, 1);
	fx_finish(fx);
	assert_int_equal(fx->srv[0].conns, 1);
	assert_false(fx->srv[0].violation);
	assert_message(&fx->srv[0], 0, body1, sizeof(body1) - 1);
	snprintf(want, sizeof(want), "0: EHLO mta.test\n0: MAIL FROM:<s@x.test> SIZE=%zu\n"
	    "0: RCPT TO:<a@x.test>\n0: RCPT TO:<b@x.test>\n0: DATA\n0: <message>\n",
	    sizeof(body1) - 1);
	assert_transcript(&fx->srv[0], want, true);
	assert_transcript(&fx->srv[0], "BODY=", false);
	assert_log("Info: New SMTP DCID 1 interface 127.0.0.1 address 127.0.0.1 port %u",
	    fx->srv[0].port);
	assert_log("Info: Delivery start DCID 1 MID 7 to RID [0, 1]\n");
	assert_log("Info: Message done DCID 1 MID 7 to RID [0, 1]\n");
	assert_log("Info: DCID 1 close\n");
}

static void
test_no_pipelining(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	srv_start(&fx->srv[0], NULL);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&m.r[1], DELIVERY_OK, 250, "2.0.0", "Ok");
	fx_finish(fx);
	/* each command waited for the reply before it */
	assert_false(fx->srv[0].violation);
	assert_transcript(&fx->srv[0], "0: MAIL FROM:<s@x.test>\n0: RCPT TO:<a@x.test>\n"
	    "0: RCPT TO:<b@x.test>\n0: DATA\n0: <message>\n", true);
	assert_message(&fx->srv[0], 0, body1, sizeof(body1) - 1);
}

static void
test_helo_fallback(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .no_ehlo = true };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, one, 1);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	fx_finish(fx);
	/* no extension after HELO: no SIZE= */
	assert_transcript(&fx->srv[0], "0: EHLO mta.test\n0: HELO mta.test\n"
	    "0: MAIL FROM:<s@x.test>\n0: RCPT TO:<a@x.test>\n0: DATA\n", true);
}

static void
test_rcpt_mixed(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true };
	static const char *const rc[] = { "good@x.test", "bad@x.test", "temp@x.test" };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, rc, 3);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&m.r[1], DELIVERY_PERMFAIL, 550, "5.1.1",
	    "5.1.1 <bad@x.test>: Recipient address rejected");
	assert_rcpt(&m.r[2], DELIVERY_TEMPFAIL, 451, "4.2.0", "Mailbox busy");
	fx_finish(fx);
	assert_int_equal(fx->srv[0].msgs, 1);
	assert_log("Delivery start DCID 1 MID 7 to RID [0, 1, 2]\n");
	assert_log("Message done DCID 1 MID 7 to RID [0]\n");
}

static void
test_451_after_data(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .final = "451 4.3.0 Error: queue file write error" };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 451, "4.3.0", "queue file write error");
	assert_rcpt(&m.r[1], DELIVERY_TEMPFAIL, 451, "4.3.0", "queue file write error");
	fx_finish(fx);
	if (strstr(read_log(), "Message done") != NULL)
		fail_msg("Message done logged for a 451:\n%s", read_log());
}

static void
test_550_after_data(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .final = "554 Transaction failed" };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	/* no enhanced code from the server: the class alone */
	assert_rcpt(&m.r[0], DELIVERY_PERMFAIL, 554, "5.0.0", "Transaction failed");
	assert_rcpt(&m.r[1], DELIVERY_PERMFAIL, 554, "5.0.0", "Transaction failed");
}

/* a port nothing listens on */
static uint16_t
closed_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void
test_connect_refused(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	msg_make(fx, &m, 7, body1, sizeof(body1) - 1, false, two, 2, closed_port());
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.4.1", "Connection refused");
	assert_rcpt(&m.r[1], DELIVERY_TEMPFAIL, 0, "4.4.1", "connect to 127.0.0.1 port");
	assert_int_equal(m.b.dcid, 0);
	fx_finish(fx);
	if (strstr(read_log(), "New SMTP DCID") != NULL)
		fail_msg("a DCID for a connection never made:\n%s", read_log());
}

/* MX 10 and MX 20 (both 127.0.0.1 here): the first resets, the second takes it */
static void
test_next_address(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .reset_first = 1 };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	mta_set_port_for_tests(fx->mta, fx->srv[0].port);
	simple(fx, &m, two, 2);
	msg_usedns(&m, "mx.test");
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&m.r[1], DELIVERY_OK, 250, "2.0.0", "Ok");
	/* the reset may beat the connect's completion: then the first never had a DCID */
	assert_true(m.b.dcid == 1 || m.b.dcid == 2);
	fx_finish(fx);
	assert_int_equal(fx->srv[0].conns, 2);
	assert_int_equal(fx->srv[0].msgs, 1);
	assert_log("New SMTP DCID %" PRIu64 " interface 127.0.0.1 address 127.0.0.1 port %u",
	    m.b.dcid, fx->srv[0].port);
	assert_log("Delivery start DCID %" PRIu64 " MID 7 to RID [0, 1]", m.b.dcid);
}

static void
test_every_address_fails(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	mta_set_port_for_tests(fx->mta, closed_port());
	simple(fx, &m, one, 1);
	msg_usedns(&m, "mx.test");
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.4.1", "Connection refused");
}

static void
test_null_mx(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	simple(fx, &m, two, 2);
	msg_usedns(&m, "nullmx.test");
	mta_deliver(fx->mta, &m.b);
	assert_int_equal(fx->done, 0);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_PERMFAIL, 556, "5.1.10", "null MX");
	assert_rcpt(&m.r[1], DELIVERY_PERMFAIL, 556, "5.1.10", "nullmx.test accepts no mail");
	assert_int_equal(m.b.dcid, 0);
}

/* RFC 5321 5.1: no MX, the domain's own address */
static void
test_implicit_mx(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	srv_start(&fx->srv[0], NULL);
	mta_set_port_for_tests(fx->mta, fx->srv[0].port);
	simple(fx, &m, one, 1);
	msg_usedns(&m, "nomx.test");
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
}

static void
test_dns_failures(void **state)
{
	struct fx *fx = *state;
	struct msg a, b, c;

	simple(fx, &a, one, 1);
	msg_usedns(&a, "nowhere.test");
	simple(fx, &b, one, 1);
	msg_usedns(&b, "servfail.test");
	simple(fx, &c, one, 1);
	msg_usedns(&c, "badmx.test");
	mta_deliver(fx->mta, &a.b);
	mta_deliver(fx->mta, &b.b);
	mta_deliver(fx->mta, &c.b);
	fx_run(fx, 3);
	assert_rcpt(&a.r[0], DELIVERY_PERMFAIL, 0, "5.1.2", "nowhere.test does not exist");
	assert_rcpt(&b.r[0], DELIVERY_TEMPFAIL, 0, "4.4.3", "temporary DNS failure");
	assert_rcpt(&c.r[0], DELIVERY_PERMFAIL, 0, "5.4.4", "no mail exchanger of badmx.test");
}

static void
test_greeting_timeout(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .silent = true };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	fx_timeouts(fx, 300);
	simple(fx, &m, one, 1);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.4.2",
	    "timed out while waiting for the greeting");
	assert_int_equal(m.b.dcid, 1);
	fx_finish(fx);
	assert_log("DCID 1 close");
}

static void
test_dot_timeout(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .stall_dot = true };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	fx_timeouts(fx, 300);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.4.2",
	    "timed out while waiting for the reply to the end of data");
	assert_rcpt(&m.r[1], DELIVERY_TEMPFAIL, 0, "4.4.2", "end of data");
}

static void
test_two_batches_one_connection(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true };
	struct msg a, b;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &a, one, 1);
	msg_make(fx, &b, 8, body1, sizeof(body1) - 1, false, two, 2, fx->srv[0].port);
	a.next = &b;
	mta_deliver(fx->mta, &a.b);
	fx_run(fx, 2);
	assert_rcpt(&a.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&b.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&b.r[1], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_int_equal(a.b.dcid, 1);
	assert_int_equal(b.b.dcid, 1);
	fx_finish(fx);
	assert_int_equal(fx->srv[0].conns, 1);
	assert_int_equal(fx->srv[0].msgs, 2);
	assert_transcript(&fx->srv[0], "0: <message>\n0: RSET\n0: MAIL FROM:<s@x.test>\n", true);
	assert_log("Delivery start DCID 1 MID 7 to RID [0]");
	assert_log("Message done DCID 1 MID 8 to RID [0, 1]");
}

/* a kept connection the server hung up on: the next batch goes on a new one */
static void
test_kept_connection_closed(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .close_after_msg = true };
	struct msg a, b;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &a, one, 1);
	msg_make(fx, &b, 8, body1, sizeof(body1) - 1, false, two, 2, fx->srv[0].port);
	a.next = &b;
	mta_deliver(fx->mta, &a.b);
	fx_run(fx, 2);
	assert_rcpt(&a.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&b.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&b.r[1], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_int_equal(b.b.dcid, 2);
	fx_finish(fx);
	assert_int_equal(fx->srv[0].conns, 2);
	assert_int_equal(fx->srv[0].msgs, 2);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* an idle connection says QUIT when nothing more came for it */
static void
test_idle_quit(void **state)
{
	struct fx *fx = *state;
	struct mta_timeouts to = { .connect = 5000, .greeting = 5000, .helo = 5000,
	    .tls = 5000, .mail = 5000, .rcpt = 5000, .data = 5000, .block = 5000, .dot = 5000,
	    .quit = 5000, .idle = 100 };
	struct timeval tv = { 0, 600 * 1000 };
	struct msg m;

	srv_start(&fx->srv[0], NULL);
	mta_set_timeouts_for_tests(fx->mta, &to);
	simple(fx, &m, one, 1);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_int_equal(event_base_once(fx->base, -1, EV_TIMEOUT, stop_cb, fx->base, &tv), 0);
	event_base_loop(fx->base, 0);
	/* the close is logged by the agent itself, before anything is freed */
	assert_log("Info: DCID 1 close");
	fx_finish(fx);
	assert_transcript(&fx->srv[0], "0: <message>\n0: QUIT\n", true);
}

static void
test_per_destination_limit(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .hold_ms = 100 };
	struct msg m[3];

	fx->cfg.delivery.max_connections_per_destination = 1;
	assert_int_equal(mta_set_config(fx->mta, &fx->cfg), 0);
	srv_start(&fx->srv[0], &sc);
	for (int i = 0; i < 3; i++) {
		msg_make(fx, &m[i], 10 + (uint64_t)i, body1, sizeof(body1) - 1, false, one, 1,
		    fx->srv[0].port);
		mta_deliver(fx->mta, &m[i].b);
	}
	fx_run(fx, 3);
	for (int i = 0; i < 3; i++)
		assert_rcpt(&m[i].r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	fx_finish(fx);
	assert_int_equal(fx->srv[0].max_cur, 1);
	assert_int_equal(fx->srv[0].conns, 1);
	assert_int_equal(fx->srv[0].msgs, 3);
}

static void
test_per_destination_parallel(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .hold_ms = 300 };
	struct msg m[3];

	fx->cfg.delivery.max_connections_per_destination = 2;
	assert_int_equal(mta_set_config(fx->mta, &fx->cfg), 0);
	srv_start(&fx->srv[0], &sc);
	for (int i = 0; i < 3; i++) {
		msg_make(fx, &m[i], 10 + (uint64_t)i, body1, sizeof(body1) - 1, false, one, 1,
		    fx->srv[0].port);
		mta_deliver(fx->mta, &m[i].b);
	}
	fx_run(fx, 3);
	fx_finish(fx);
	/* two at once, never three; the third rode on one of them */
	assert_int_equal(fx->srv[0].conns, 2);
	assert_int_equal(fx->srv[0].max_cur, 2);
	assert_int_equal(fx->srv[0].msgs, 3);
}

/* one connection in all: the idle one to A gives way to B with a QUIT */
static void
test_max_connections(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true };
	struct msg a, b;

	fx->cfg.delivery.max_connections = 1;
	assert_int_equal(mta_set_config(fx->mta, &fx->cfg), 0);
	srv_start(&fx->srv[0], &sc);
	srv_start(&fx->srv[1], &sc);
	msg_make(fx, &a, 7, body1, sizeof(body1) - 1, false, one, 1, fx->srv[0].port);
	msg_make(fx, &b, 8, body1, sizeof(body1) - 1, false, one, 1, fx->srv[1].port);
	mta_deliver(fx->mta, &a.b);
	mta_deliver(fx->mta, &b.b);
	fx_run(fx, 2);
	assert_rcpt(&a.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&b.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_int_equal(b.b.dcid, 2);
	fx_finish(fx);
	assert_transcript(&fx->srv[0], "0: <message>\n0: QUIT\n", true);
	assert_int_equal(fx->srv[1].conns, 1);
}

static void
test_dot_stuffing(void **state)
{
	struct fx *fx = *state;
	static const char body[] = ".hidden\r\n..two\r\nmid.dle\r\n.\r\nbare\nlf\rcr\r\n.\nlast";
	static const char want[] = "..hidden\r\n...two\r\nmid.dle\r\n..\r\nbare\r\nlf\r\ncr\r\n"
	    "..\r\nlast\r\n";
	struct msg m;

	srv_start(&fx->srv[0], NULL);
	msg_make(fx, &m, 7, body, sizeof(body) - 1, false, one, 1, fx->srv[0].port);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	fx_finish(fx);
	assert_message(&fx->srv[0], 0, want, sizeof(want) - 1);
}

static void
test_empty_message(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	srv_start(&fx->srv[0], NULL);
	msg_make(fx, &m, 7, "", 0, false, one, 1, fx->srv[0].port);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	fx_finish(fx);
	assert_message(&fx->srv[0], 0, "", 0);
}

/* the reference: every line starting with '.' gets another (CRLF lines only) */
static size_t
ref_stuff(const char *in, size_t n, char *out)
{
	size_t o = 0;
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		if (bol && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		bol = in[i] == '\n';
	}
	return o;
}

/* several 64 KiB chunks, dot lines on and around the chunk boundaries, over TLS too */
static void
big_message(struct fx *fx, bool tls)
{
	struct srv_conf sc = { .pipelining = true, .starttls = tls };
	size_t len = 0, cap = 700 * 1024, slen;
	char *body = malloc(cap), *want = malloc(2 * cap);
	struct msg m;
	unsigned seed = 7;

	assert_non_null(body);
	assert_non_null(want);
	while (len < 600 * 1024) {
		size_t line;

		seed = seed * 1103515245 + 12345;
		line = 1 + (seed >> 16) % 200;
		/* a dot line exactly at each chunk boundary, and just before and after */
		if (len % 65536 > 65536 - 3 || len % 65536 < 3)
			body[len++] = '.';
		else if ((seed >> 8) % 5 == 0)
			body[len++] = '.';
		for (size_t i = 0; i < line; i++)
			body[len++] = (char)('a' + (i + seed) % 26);
		body[len++] = '\r';
		body[len++] = '\n';
	}
	slen = ref_stuff(body, len, want);
	srv_start(&fx->srv[0], &sc);
	msg_make(fx, &m, 7, body, len, false, one, 1, fx->srv[0].port);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	fx_finish(fx);
	assert_int_equal(fx->srv[0].tls_ok, tls ? 1 : 0);
	assert_int_equal(fx->srv[0].msg_len[0], slen);
	assert_memory_equal(fx->srv[0].msg[0], want, slen);
	free(body);
	free(want);
}

static void
test_big_message(void **state)
{
	big_message(*state, false);
}

static void
test_big_message_tls(void **state)
{
	if (server_tls == NULL)
		skip();
	big_message(*state, true);
}

static void
test_starttls(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .starttls = true };
	struct msg m;

	if (server_tls == NULL)
		skip();
	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	fx_finish(fx);
	assert_int_equal(fx->srv[0].tls_ok, 1);
	/* RFC 3207 4.2: EHLO again after the handshake */
	assert_transcript(&fx->srv[0], "0: EHLO mta.test\n0: STARTTLS\n0: EHLO mta.test\n"
	    "0: MAIL FROM:", true);
	assert_message(&fx->srv[0], 0, body1, sizeof(body1) - 1);
	assert_log("Info: DCID 1 TLS success protocol TLSv1.3 cipher ");
}

/* a handshake that fails: logged, the destination marked, the batch again in plain text */
static void
test_starttls_failure(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .starttls = true, .tls_garbage = true };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, one, 1);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_int_equal(m.b.dcid, 2);
	fx_finish(fx);
	assert_int_equal(fx->srv[0].conns, 2);
	assert_transcript(&fx->srv[0], "0: STARTTLS\n", true);
	assert_transcript(&fx->srv[0], "1: STARTTLS\n", false);
	assert_transcript(&fx->srv[0], "1: EHLO mta.test\n1: MAIL FROM:", true);
	assert_log("Info: DCID 1 TLS failed: ");
	assert_log("Info: DCID 1 close");
}

static void
test_size_limit(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .size = true, .size_max = 10 };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_PERMFAIL, 0, "5.3.4", "exceeds the limit 10");
	assert_rcpt(&m.r[1], DELIVERY_PERMFAIL, 0, "5.3.4", "message size");
	fx_finish(fx);
	assert_transcript(&fx->srv[0], "MAIL FROM", false);
}

/* MAIL refused in a pipelined group: its reply, not the 503s after it, for everyone */
static void
test_mail_refused(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .size = true,
	    .mail_reply = "552 5.3.4 Message size exceeds fixed limit" };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_PERMFAIL, 552, "5.3.4", "Message size exceeds");
	assert_rcpt(&m.r[1], DELIVERY_PERMFAIL, 552, "5.3.4", "Message size exceeds");
	fx_finish(fx);
	assert_int_equal(fx->srv[0].msgs, 0);
}

static void
test_mail_tempfail_plain(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .mail_reply = "452 4.3.1 Insufficient system storage" };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 452, "4.3.1", "Insufficient");
	fx_finish(fx);
	/* without PIPELINING nothing follows a refused MAIL */
	assert_transcript(&fx->srv[0], "RCPT", false);
}

static void
test_8bitmime(void **state)
{
	struct fx *fx = *state;
	struct srv_conf with = { .eightbit = true, .size = true };
	struct srv_conf without = { .size = true };
	struct msg a, b;
	char want[128];

	srv_start(&fx->srv[0], &with);
	srv_start(&fx->srv[1], &without);
	msg_make(fx, &a, 7, body1, sizeof(body1) - 1, true, one, 1, fx->srv[0].port);
	msg_make(fx, &b, 8, body1, sizeof(body1) - 1, true, one, 1, fx->srv[1].port);
	mta_deliver(fx->mta, &a.b);
	mta_deliver(fx->mta, &b.b);
	fx_run(fx, 2);
	fx_finish(fx);
	snprintf(want, sizeof(want), "0: MAIL FROM:<s@x.test> SIZE=%zu BODY=8BITMIME\n",
	    sizeof(body1) - 1);
	assert_transcript(&fx->srv[0], want, true);
	/* not announced: not sent (RFC 6152 3) */
	assert_transcript(&fx->srv[1], "BODY=", false);
}

static void
test_greeting_refused(void **state)
{
	struct fx *fx = *state;
	struct srv_conf perm = { .greeting = "554 5.7.1 No SMTP service here" };
	struct srv_conf temp = { .greeting = "421 4.3.2 Too busy" };
	struct msg a, b;

	srv_start(&fx->srv[0], &perm);
	srv_start(&fx->srv[1], &temp);
	msg_make(fx, &a, 7, body1, sizeof(body1) - 1, false, two, 2, fx->srv[0].port);
	msg_make(fx, &b, 8, body1, sizeof(body1) - 1, false, one, 1, fx->srv[1].port);
	mta_deliver(fx->mta, &a.b);
	mta_deliver(fx->mta, &b.b);
	fx_run(fx, 2);
	assert_rcpt(&a.r[0], DELIVERY_PERMFAIL, 554, "5.7.1", "No SMTP service here");
	assert_rcpt(&a.r[1], DELIVERY_PERMFAIL, 554, "5.7.1", "No SMTP service here");
	assert_rcpt(&b.r[0], DELIVERY_TEMPFAIL, 421, "4.3.2", "Too busy");
	fx_finish(fx);
	/* RFC 5321 3.1: a 554 greeting still gets its QUIT */
	assert_transcript(&fx->srv[0], "0: QUIT\n", true);
	assert_transcript(&fx->srv[0], "EHLO", false);
}

static void
test_lost_in_data(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true, .close_in_data = true };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, two, 2);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.4.2", "lost connection with 127.0.0.1");
	assert_rcpt(&m.r[1], DELIVERY_TEMPFAIL, 0, "4.4.2", "lost connection");
}

static void
test_bad_reply(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .ehlo_raw = "250-sink.test\r\n251 mixed\r\n" };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, one, 1);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.5.0", "different codes");
}

/* a CR or LF in an address would be a command of its own: never sent */
static void
test_bad_addresses(void **state)
{
	struct fx *fx = *state;
	static const char *const rc[] = { "ok@x.test", "evil@x.test>\r\nRSET\r\nRCPT TO:<x" };
	struct msg a, b;

	srv_start(&fx->srv[0], NULL);
	simple(fx, &a, rc, 2);
	msg_make(fx, &b, 8, body1, sizeof(body1) - 1, false, one, 1, fx->srv[0].port);
	b.b.sender = "s@x.test\r\nDATA";
	mta_deliver(fx->mta, &a.b);
	mta_deliver(fx->mta, &b.b);
	fx_run(fx, 2);
	assert_rcpt(&a.r[0], DELIVERY_OK, 250, "2.0.0", "Ok");
	assert_rcpt(&a.r[1], DELIVERY_PERMFAIL, 0, "5.1.3", "bad recipient address");
	assert_rcpt(&b.r[0], DELIVERY_PERMFAIL, 0, "5.1.7", "bad sender address");
	fx_finish(fx);
	assert_int_equal(fx->srv[0].msgs, 1);
	assert_transcript(&fx->srv[0], "evil", false);
	assert_transcript(&fx->srv[0], "0: RSET", false);
}

static void
test_missing_queue_file(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	srv_start(&fx->srv[0], NULL);
	simple(fx, &m, one, 1);
	unlink(m.path);
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.3.0", "cannot read the queue file of MID 7");
	fx_finish(fx);
	assert_transcript(&fx->srv[0], "MAIL", false);
}

/* a queue file shorter than the batch says: the connection is dropped, no final dot */
static void
test_short_queue_file(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .pipelining = true };
	struct msg m;

	srv_start(&fx->srv[0], &sc);
	simple(fx, &m, one, 1);
	m.b.size += 100;
	mta_deliver(fx->mta, &m.b);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.3.0", "shorter than its envelope");
	fx_finish(fx);
	assert_int_equal(fx->srv[0].msgs, 0);
}

static void
test_not_smtp_target(void **state)
{
	struct fx *fx = *state;
	struct msg m;

	simple(fx, &m, one, 1);
	m.t.kind = TARGET_DEVNULL;
	mta_deliver(fx->mta, &m.b);
	assert_int_equal(fx->done, 0);
	fx_run(fx, 1);
	assert_rcpt(&m.r[0], DELIVERY_TEMPFAIL, 0, "4.3.5", "not an SMTP route");
}

/* mta_free with batches in flight: no callback, no leak (ASan checks the latter) */
static void
test_free_in_flight(void **state)
{
	struct fx *fx = *state;
	struct srv_conf sc = { .silent = true };
	struct msg a, b;

	srv_start(&fx->srv[0], &sc);
	mta_set_port_for_tests(fx->mta, fx->srv[0].port);
	simple(fx, &a, one, 1);
	msg_make(fx, &b, 8, body1, sizeof(body1) - 1, false, one, 1, fx->srv[0].port);
	msg_usedns(&b, "mx.test");
	mta_deliver(fx->mta, &a.b);
	mta_deliver(fx->mta, &b.b);
	event_base_loop(fx->base, EVLOOP_NONBLOCK);
	mta_free(fx->mta);
	fx->mta = NULL;
	event_base_loop(fx->base, EVLOOP_NONBLOCK);
	assert_int_equal(fx->done, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_helo_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rcpt_mixed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_451_after_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_550_after_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_address_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null_mx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_implicit_mx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dns_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_greeting_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dot_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_batches_one_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_connection_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_destination_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_destination_parallel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dot_stuffing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_message_tls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starttls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starttls_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mail_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mail_tempfail_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_8bitmime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_greeting_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_in_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_queue_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_queue_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_smtp_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
