/*
 * smtp_client_reply.h: the outbound client's parser of server replies, and of
 * the EHLO keywords in them. Pure: no I/O, no allocation, no clock.
 *
 * A reply is "ddd-text" lines ended by one "ddd text" (or bare "ddd") line
 * (RFC 5321 4.2). The parser is resumable at every byte: bytes may arrive in
 * any split, and it stops right after a reply's last line, so pipelined replies
 * (RFC 2920) queued in one buffer come out one at a time. It never holds more
 * than one line's worth of state: an overlong line, too many lines, a line that
 * is not a reply, or lines whose codes differ are an error, after which the
 * connection can no longer be trusted to be in step.
 */
#ifndef MAILGATE_SMTP_CLIENT_REPLY_H
#define MAILGATE_SMTP_CLIENT_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF ... */
#define SMTP_CLIENT_REPLY_RFC_LINE	512
/* ... but real servers overrun it (long EHLO lines, banners): accept up to this */
#define SMTP_CLIENT_REPLY_LINE_MAX	2048
/* lines in one reply; EHLO answers need a few dozen at most */
#define SMTP_CLIENT_REPLY_LINES_MAX	100
/* text kept of a reply (all lines); the rest is read and dropped, truncated is set */
#define SMTP_CLIENT_REPLY_TEXT_MAX	4096

enum smtp_client_reply_status {
	SMTP_CLIENT_REPLY_MORE,		/* every byte consumed, the reply is not complete yet */
	SMTP_CLIENT_REPLY_DONE,		/* a whole reply: read it, then init before the next */
	SMTP_CLIENT_REPLY_ERROR,	/* not a valid reply: smtp_client_reply_error() says why */
};

struct smtp_client_reply {
	/* the reply, valid after SMTP_CLIENT_REPLY_DONE */
	int code;				/* 200..599 */
	char enhanced[16];			/* "5.1.1" (RFC 3463) from the first line, or "" */
	size_t n_lines;
	bool truncated;				/* some text did not fit in text[] */

	/* private: parser state and the lines' texts, NUL-terminated, one after another */
	int state;
	bool last;				/* the current line ends the reply */
	int line_code;
	size_t line_len;			/* octets of the current line so far */
	size_t text_len;
	const char *err;
	uint16_t line_off[SMTP_CLIENT_REPLY_LINES_MAX];
	char text[SMTP_CLIENT_REPLY_TEXT_MAX + SMTP_CLIENT_REPLY_LINES_MAX];
};

void smtp_client_reply_init(struct smtp_client_reply *);

/*
 * Feed len bytes. *used is set to the bytes consumed: all of them for MORE, up
 * to and including the reply's final LF for DONE (the rest is the next reply),
 * up to the offending byte for ERROR. Once DONE or ERROR, further calls consume
 * nothing and return the same status until smtp_client_reply_init().
 */
enum smtp_client_reply_status smtp_client_reply_feed(struct smtp_client_reply *,
    const char *buf, size_t len, size_t *used);

/* the text of line i (after "ddd-" / "ddd "), "" past the end; valid until init */
const char *smtp_client_reply_line(const struct smtp_client_reply *, size_t i);

/* why the input is not a reply, after SMTP_CLIENT_REPLY_ERROR */
const char *smtp_client_reply_error(const struct smtp_client_reply *);

/*
 * Every line's text joined by single spaces into out (cut to fit, always
 * NUL-terminated, cap > 0), for logs and recipient outcomes: the raw bytes,
 * the caller escapes them. Returns the length written.
 */
size_t smtp_client_reply_join(const struct smtp_client_reply *, char *out, size_t cap);

/* what an EHLO reply announces (RFC 5321 4.1.1.1: keywords on lines after the first) */
struct smtp_client_ext {
	bool pipelining;			/* RFC 2920 */
	bool starttls;				/* RFC 3207 */
	bool eightbitmime;			/* RFC 6152 */
	bool size;				/* RFC 1870 */
	uint64_t size_max;			/* SIZE's value; 0 = no fixed limit */
	bool enhancedstatuscodes;		/* RFC 2034 */
	bool smtputf8;				/* RFC 6531 */
	bool chunking;				/* RFC 3030 */
	bool dsn;				/* RFC 3461 */
};

/* keywords are matched case-insensitively (RFC 5321 2.4); unknown ones ignored */
void smtp_client_ext_parse(const struct smtp_client_reply *, struct smtp_client_ext *);

#endif
