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
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* the output fill above which the session stops producing replies */
#define IO_OUTPUT_HIGH	(256 * 1024)
/* the input we hold unprocessed (waiting on DNS or the disk) before we stop reading */
#define IO_INPUT_HIGH	(256 * 1024)

struct io {
	struct bufferevent *bev;
	int fd;
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
io_writecb(struct bufferevent *bev, void *arg)
{
	struct io *io = arg;

	(void)bev;
	if (io->shutting_down) {
		io->cb->closed(io->arg);
		return;
	}
	io->cb->drained(io->arg);
}

static void
io_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct io *io = arg;

	(void)bev;
	(void)what;
	/* EOF, a socket error or a write timeout: the peer is gone either way */
	io->cb->closed(io->arg);
}

struct io *
io_new(struct event_base *base, int fd, const struct io_callbacks *cb, void *arg)
{
	struct io *io = calloc(1, sizeof(*io));

	if (io == NULL)
		return NULL;
	io->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (io->bev == NULL) {
		free(io);
		return NULL;
	}
	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	/* drained fires when the output is empty again */
	bufferevent_setwatermark(io->bev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(io->bev, EV_READ, 0, IO_INPUT_HIGH);
	bufferevent_setcb(io->bev, io_readcb, io_writecb, io_eventcb, io);
	bufferevent_enable(io->bev, EV_READ | EV_WRITE);
	return io;
}

void
io_free(struct io *io)
{
	if (io == NULL)
		return;
	bufferevent_free(io->bev);
	free(io);
}

size_t
io_pending(struct io *io)
{
	int n = 0;

	if (ioctl(io->fd, FIONREAD, &n) == -1 || n < 0)
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

	bufferevent_set_timeouts(io->bev, NULL, secs ? &tv : NULL);
}

void
io_shutdown(struct io *io)
{
	if (io->shutting_down)
		return;
	io->shutting_down = true;
	bufferevent_disable(io->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(io->bev)) == 0) {
		/* nothing left to send: report from the loop, never re-entrantly */
		bufferevent_trigger(io->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}
