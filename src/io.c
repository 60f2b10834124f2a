/*
 * io.c: the connection byte layer (see io.h), on a libevent bufferevent.
 *
 * Line splitting is ours, not libevent's: evbuffer's EOL modes accept a bare LF,
 * and SMTP commands end only at CRLF (RFC 5321 2.3.8). An overlong line is never
 * buffered whole: once the buffer holds more than the cap without a CRLF, it is
 * dropped up to the next CRLF, so a 1 MiB line costs no more memory than 512
 * octets.
 */
#include "io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* the output fill above which the session stops producing replies */
#define IO_OUTPUT_HIGH	(256 * 1024)
/* the input we hold unprocessed (waiting on DNS or the disk) before we stop reading */
#define IO_INPUT_HIGH	(256 * 1024)

struct io {
	struct bufferevent *bev;		/* the socket, or the TLS filter over it */
	struct event_base *base;
	int fd;					/* -1 without a socket (io_new_bev) */
	SSL *ssl;				/* owned by the filter bufferevent */
	void (*tls_done)(void *arg, bool ok);	/* while the handshake runs */
	char tls_err[160];
	unsigned write_timeout;
	struct event *ev_closed;		/* reports closed once all output is out */
	struct evbuffer_cb_entry *under_cb;	/* watches the socket's output under TLS */
	bool close_notify_sent;
	const struct io_callbacks *cb;
	void *arg;
	bool discarding;		/* inside an overlong line */
	bool shutting_down;
	bool paused;
};

static void
io_readcb(struct bufferevent *bev, void *arg)
{
	struct io *io = arg;

	(void)bev;
	if (!io->shutting_down)
		io->cb->input(io->arg);
}

static void
io_closed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct io *io = arg;

	(void)fd;
	(void)what;
	io->cb->closed(io->arg);
}

static void io_maybe_closed(struct io *);

static void
io_under_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	(void)info;
	io_maybe_closed(arg);
}

/*
 * Shutting down: report closed once every byte is out, from a callback of its
 * own (never from inside libevent's write path). With TLS the last reply sits
 * encrypted in the socket bufferevent under the filter: wait for that one too.
 */
static void
io_maybe_closed(struct io *io)
{
	struct bufferevent *under = io->ssl ? bufferevent_get_underlying(io->bev) : NULL;
	struct timeval now = { 0, 0 };

	if (evbuffer_get_length(bufferevent_get_output(io->bev)) > 0)
		return;
	/* every reply is encrypted by now: end TLS properly (RFC 8446 6.1) */
	if (io->ssl != NULL && !io->tls_done && !io->close_notify_sent) {
		io->close_notify_sent = true;
		(void)SSL_shutdown(io->ssl);
		ERR_clear_error();
	}
	if (under != NULL && evbuffer_get_length(bufferevent_get_output(under)) > 0) {
		if (io->under_cb == NULL)
			io->under_cb = evbuffer_add_cb(bufferevent_get_output(under), io_under_cb,
			    io);
		return;
	}
	if (io->ev_closed == NULL &&
	    (io->ev_closed = evtimer_new(io->base, io_closed_cb, io)) == NULL) {
		io->cb->closed(io->arg);	/* out of memory: close now, unsent or not */
		return;
	}
	evtimer_add(io->ev_closed, &now);
}

static void
io_writecb(struct bufferevent *bev, void *arg)
{
	struct io *io = arg;

	(void)bev;
	if (io->shutting_down) {
		io_maybe_closed(io);
		return;
	}
	io->cb->drained(io->arg);
}

static void
io_tls_reason(struct io *io)
{
	unsigned long e;
	const char *why = NULL;

	while ((e = bufferevent_get_openssl_error(io->bev)) != 0)
		why = ERR_reason_error_string(e) ? ERR_reason_error_string(e) : why;
	snprintf(io->tls_err, sizeof(io->tls_err), "%s", why ? why : "connection closed "
	    "during the handshake");
}

static void
io_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct io *io = arg;
	void (*done)(void *, bool) = io->tls_done;

	(void)bev;
	if (done != NULL) {
		io->tls_done = NULL;
		if (what & BEV_EVENT_CONNECTED) {
			done(io->arg, true);
			return;
		}
		io_tls_reason(io);
		done(io->arg, false);
		return;
	}
	/* EOF, a socket error or a write timeout: the peer is gone either way */
	io->cb->closed(io->arg);
}

static struct io *
io_alloc(struct event_base *base, const struct io_callbacks *cb, void *arg)
{
	struct io *io = calloc(1, sizeof(*io));

	if (io == NULL)
		return NULL;
	io->fd = -1;
	io->base = base;
	io->cb = cb;
	io->arg = arg;
	return io;
}

static struct io *
io_attach(struct io *io, struct bufferevent *bev)
{
	io->bev = bev;
	/* drained fires when the output is empty again */
	bufferevent_setwatermark(io->bev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(io->bev, EV_READ, 0, IO_INPUT_HIGH);
	bufferevent_setcb(io->bev, io_readcb, io_writecb, io_eventcb, io);
	bufferevent_enable(io->bev, EV_READ | EV_WRITE);
	return io;
}

struct io *
io_new(struct event_base *base, int fd, const struct io_callbacks *cb, void *arg)
{
	struct io *io = io_alloc(base, cb, arg);
	struct bufferevent *bev;

	if (io == NULL)
		return NULL;
	if ((bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(io);
		return NULL;
	}
	io->fd = fd;
	return io_attach(io, bev);
}

struct io *
io_new_bev(struct event_base *base, struct bufferevent *bev, const struct io_callbacks *cb,
    void *arg)
{
	struct io *io = io_alloc(base, cb, arg);

	return io == NULL ? NULL : io_attach(io, bev);
}

void
io_free(struct io *io)
{
	if (io == NULL)
		return;
	if (io->under_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(bufferevent_get_underlying(io->bev)),
		    io->under_cb);
	if (io->ev_closed != NULL)
		event_free(io->ev_closed);
	bufferevent_free(io->bev);
	free(io);
}

size_t
io_pending(struct io *io)
{
	int n = 0;

	if (io->fd == -1 || ioctl(io->fd, FIONREAD, &n) == -1 || n < 0)
		n = 0;
	return (size_t)n + evbuffer_get_length(bufferevent_get_input(io->bev));
}

enum io_line_result
io_getline(struct io *io, char *buf, size_t cap, size_t max, size_t *len)
{
	struct evbuffer *in = bufferevent_get_input(io->bev);
	struct evbuffer_ptr eol;
	size_t eol_len, avail;

	for (;;) {
		avail = evbuffer_get_length(in);
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
		if (io->discarding) {
			if (eol.pos == -1) {
				/* keep a trailing CR: it may be half of the CRLF */
				size_t keep = 0;
				if (avail > 0) {
					char last;
					struct evbuffer_ptr p;
					evbuffer_ptr_set(in, &p, avail - 1, EVBUFFER_PTR_SET);
					evbuffer_copyout_from(in, &p, &last, 1);
					keep = last == '\r';
				}
				evbuffer_drain(in, avail - keep);
				return IO_NEED_MORE;
			}
			evbuffer_drain(in, (size_t)eol.pos + eol_len);
			io->discarding = false;
			continue;
		}
		if (eol.pos == -1) {
			if (avail < max)
				return IO_NEED_MORE;
			/* no CRLF within max octets: the line is too long however it ends */
			io->discarding = true;
			return IO_TOO_LONG;
		}
		if ((size_t)eol.pos + eol_len > max || (size_t)eol.pos >= cap) {
			evbuffer_drain(in, (size_t)eol.pos + eol_len);
			return IO_TOO_LONG;
		}
		evbuffer_remove(in, buf, (size_t)eol.pos);
		evbuffer_drain(in, eol_len);
		buf[eol.pos] = '\0';
		*len = (size_t)eol.pos;
		return IO_LINE;
	}
}

size_t
io_peek(struct io *io, void *buf, size_t n)
{
	ev_ssize_t r;

	if (io->discarding)
		return 0;
	r = evbuffer_copyout(bufferevent_get_input(io->bev), buf, n);
	return r < 0 ? 0 : (size_t)r;
}

struct evbuffer *
io_input(struct io *io)
{
	return bufferevent_get_input(io->bev);
}

void
io_consume(struct io *io, size_t n)
{
	evbuffer_drain(bufferevent_get_input(io->bev), n);
}

void
io_write(struct io *io, const void *buf, size_t len)
{
	if (!io->shutting_down)
		bufferevent_write(io->bev, buf, len);
}

bool
io_output_full(struct io *io)
{
	return evbuffer_get_length(bufferevent_get_output(io->bev)) >= IO_OUTPUT_HIGH;
}

void
io_pause(struct io *io)
{
	if (!io->paused) {
		io->paused = true;
		bufferevent_disable(io->bev, EV_READ);
	}
}

void
io_resume(struct io *io)
{
	if (io->paused && !io->shutting_down) {
		io->paused = false;
		bufferevent_enable(io->bev, EV_READ);
	}
}

void
io_set_write_timeout(struct io *io, unsigned secs)
{
	struct timeval tv = { .tv_sec = secs, .tv_usec = 0 };

	io->write_timeout = secs;
	bufferevent_set_timeouts(io->bev, NULL, secs ? &tv : NULL);
}

int
io_start_tls(struct io *io, SSL_CTX *ctx, void (*done)(void *arg, bool ok))
{
	struct bufferevent *filter;
	struct timeval wtv;
	SSL *ssl;

	if ((ssl = SSL_new(ctx)) == NULL)
		return -1;
	/* the client's bytes before the handshake are plaintext it had no right to send */
	evbuffer_drain(bufferevent_get_input(io->bev),
	    evbuffer_get_length(bufferevent_get_input(io->bev)));
	filter = bufferevent_openssl_filter_new(io->base, io->bev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (filter == NULL) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(filter, 1);
	/* the filter now owns the socket bufferevent: move our settings over */
	bufferevent_setwatermark(filter, EV_WRITE, 0, 0);
	bufferevent_setwatermark(filter, EV_READ, 0, IO_INPUT_HIGH);
	if (io->write_timeout > 0) {
		wtv.tv_sec = io->write_timeout;
		wtv.tv_usec = 0;
		bufferevent_set_timeouts(filter, NULL, &wtv);
	}
	io->bev = filter;
	io->ssl = ssl;
	io->tls_done = done;
	bufferevent_setcb(filter, io_readcb, io_writecb, io_eventcb, io);
	bufferevent_enable(filter, EV_READ | EV_WRITE);
	io->paused = false;
	return 0;
}

bool
io_tls_active(const struct io *io)
{
	return io->ssl != NULL;
}

const char *
io_tls_protocol(const struct io *io)
{
	return io->ssl ? SSL_get_version(io->ssl) : "";
}

const char *
io_tls_cipher(const struct io *io)
{
	return io->ssl ? SSL_get_cipher_name(io->ssl) : "";
}

const char *
io_tls_error(const struct io *io)
{
	return io->tls_err;
}

void
io_shutdown(struct io *io)
{
	if (io->shutting_down)
		return;
	io->shutting_down = true;
	bufferevent_disable(io->bev, EV_READ);
	io_maybe_closed(io);
}
