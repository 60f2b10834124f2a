/*
 * bounce.h: delivery status notifications (RFC 3464) for the sender of a message
 * that failed or is delayed.
 *
 * bounce_write() is a pure generator: given what the scheduler knows about one
 * message and the outcome of some of its recipients, it writes one whole DSN
 * message (header section and body, CRLF line ends, no line over 998 octets,
 * 7-bit) to a FILE. It touches nothing else: the scheduler gives the DSN its own
 * MID, spools it with the null reverse-path (RFC 5321 4.5.5) and the original
 * sender as its one recipient, and logs BOUNCE_LOG_FMT.
 *
 * The DSN is a multipart/report (RFC 6522) of three parts: a text/plain
 * explanation for people, the message/delivery-status report (RFC 3464 2.1),
 * and the original header section as text/rfc822-headers. It comes from
 * "Mail Delivery System <MAILER-DAEMON@hostname>" and carries
 * "Auto-Submitted: auto-replied" (RFC 3834 5) so vacation responders keep quiet.
 *
 * Everything that came from outside (addresses, replies of remote servers, the
 * original headers) is made safe before it is written: control characters and
 * 8-bit octets never reach a header line of the DSN or its report, long values are
 * folded, and the MIME boundary is checked to occur nowhere in the content.
 */
#ifndef MAILGATE_BOUNCE_H
#define MAILGATE_BOUNCE_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* the most of the original header section a DSN returns (bounce_read_headers' cap) */
#define BOUNCE_HEADERS_MAX	(64 * 1024)

/* the mail log line for a generated DSN: new MID, original MID */
#define BOUNCE_LOG_FMT		"MID %" PRIu64 " was generated for bounce of MID %" PRIu64

/* one recipient's outcome; strings are not kept past the call */
struct bounce_rcpt {
	const char *address;		/* without <> */
	const char *status;		/* RFC 3463 "5.1.1"; NULL or malformed: 5.0.0 / 4.0.0 */
	const char *action;		/* "failed" or "delayed" (RFC 3464 2.3.3) */
	const char *remote_mta;		/* "dns; mx.example.com", or NULL */
	const char *diagnostic;		/* "smtp; 550 5.1.1 User unknown", or NULL */
	time_t last_attempt;		/* 0: not written */
	time_t will_retry_until;	/* "delayed": when we give up; 0: not written */
};

struct bounce_info {
	const char *hostname;		/* ours: Reporting-MTA, From, Message-ID */
	uint64_t orig_mid;
	const char *orig_sender;	/* without <>; "" is the null sender: no DSN */
	time_t arrival;			/* of the original message; 0: not written */
	const struct bounce_rcpt *rcpts;
	size_t n_rcpts;			/* at least one */
	time_t now;			/* Date: and the Message-ID; 0: time(NULL) */
};

/*
 * Write the whole DSN to out. orig_headers is the original message's header
 * section as stored (see bounce_read_headers); only up to its first empty line
 * is used, and it may be NULL or empty, in which case the third part is left
 * out. Returns 0, or -1 with errno: EINVAL for a null sender, no recipients, a
 * recipient without address or with an action other than failed/delayed, or a
 * hostname with spaces or control characters; ENOMEM; or the write error (EIO if
 * the stream gives none). Nothing is written to out before the whole DSN is built,
 * so only a failing stream can leave part of one there.
 */
int bounce_write(FILE *out, const struct bounce_info *, const char *orig_headers,
    size_t orig_len);

/*
 * The header section of a queued message: the bytes of the file at path from
 * data_offset up to and including the first empty line ("\r\n" or "\n" alone),
 * or to the end of the file when there is none (a message without a body). At
 * most cap octets, cut after the last whole line that fits (mid-line only when
 * not even one line fits). Returns a malloc'd, NUL-terminated copy (it may hold
 * NULs itself; *len is its length), or NULL with errno set.
 */
char *bounce_read_headers(const char *path, long data_offset, size_t cap, size_t *len);

#endif
