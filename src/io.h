/*
 * io.h: a connection's bytes: the socket, its buffers and (later) TLS.
 *
 * The session never calls read(), write() or SSL_*: it gets callbacks (input
 * ready, output drained, closed) and takes capped CRLF lines or raw data bytes
 * from here, and queues replies here. Replies queued during one callback go out
 * together when the loop next runs (RFC 2920: a pipelined group's replies leave
 * in one flush). Lines end only at CRLF; a longer line than the cap is reported
 * once and the rest of it is dropped without being buffered.
 */
#ifndef MAILGATE_IO_H
#define MAILGATE_IO_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event_base;
struct evbuffer;
struct io;
typedef struct ssl_ctx_st SSL_CTX;

struct io_callbacks {
	void (*input)(void *arg);	/* bytes arrived */
	void (*drained)(void *arg);	/* the output buffer fell below the low mark */
	void (*closed)(void *arg);	/* EOF, error or write timeout: the peer is gone */
};

enum io_line_result {
	IO_LINE,		/* a line (without CRLF) was copied out */
	IO_NEED_MORE,		/* no complete line yet */
	IO_TOO_LONG,		/* a line past the cap: the rest of it will be dropped */
};

struct io *io_new(struct event_base *, int fd, const struct io_callbacks *, void *arg);
/*
 * A transport that is a bufferevent already, with no socket under it (one end of
 * a bufferevent_pair: the session fuzzer's in-memory client). The io owns it once
 * this succeeds; on NULL the caller still does.
 */
struct io *io_new_bev(struct event_base *, struct bufferevent *, const struct io_callbacks *,
    void *arg);
void io_free(struct io *);

/* bytes waiting to be read (before the first read, as the kernel reports them) */
size_t io_pending(struct io *);

/* the next CRLF line of at most max octets with its CRLF, copied into buf (cap >= max) */
enum io_line_result io_getline(struct io *, char *buf, size_t cap, size_t max, size_t *len);

/* copy up to n bytes from the start of the input without taking them; 0 inside an overlong line */
size_t io_peek(struct io *, void *buf, size_t n);

/* raw input, for the data filter: look with evbuffer_peek, then io_consume() */
struct evbuffer *io_input(struct io *);
void io_consume(struct io *, size_t n);

void io_write(struct io *, const void *buf, size_t len);

/* so much output is queued that the session should stop answering until drained */
bool io_output_full(struct io *);

/* stop and start taking bytes from the socket (back-pressure, waiting on the disk) */
void io_pause(struct io *);
void io_resume(struct io *);

/* give up on a peer that does not read what we send within secs */
void io_set_write_timeout(struct io *, unsigned secs);

/* send what is queued, then report closed; no more input is delivered */
void io_shutdown(struct io *);

/*
 * Become the TLS server side of the connection (STARTTLS, or at once for implicit
 * TLS). What is queued for output (the 220) still goes out in the clear first;
 * every byte already received is discarded unread: a command sent in the same
 * packet as STARTTLS must never be answered (CVE-2011-0411). done(arg, true) once
 * the handshake is over, done(arg, false) with the reason in io_tls_error() if it
 * failed. -1 if TLS could not even start (out of memory).
 */
int io_start_tls(struct io *, SSL_CTX *, void (*done)(void *arg, bool ok));
bool io_tls_active(const struct io *);
/* after a handshake: "TLSv1.3", the cipher name; after a failure: the reason */
const char *io_tls_protocol(const struct io *);
const char *io_tls_cipher(const struct io *);
const char *io_tls_error(const struct io *);

#endif
