/*
 * bounce.c: delivery status notifications (see bounce.h).
 *
 * The DSN is built in memory, part by part, and only then written out, for two
 * reasons: the MIME boundary can be checked against the final bytes of every part
 * (RFC 2046 5.1.1: it must not occur in the encapsulated content), and a failure
 * half-way (ENOMEM) leaves nothing half-written in the caller's stream.
 *
 * Two kinds of text go in, and they are treated differently:
 *  - values in header lines of the DSN and fields of its report (the sender, the
 *    recipients, remote replies): squeezed to one line of printable ASCII (CR,
 *    LF and TAB become a space, any other control or 8-bit octet a '?'), then
 *    folded at spaces (RFC 5322 2.2.3) so no line passes 78 octets if it can help
 *    it and none passes 998 at all. No outside text can start a line of its own.
 *  - the original header section (part 3): copied line by line as received, with
 *    line ends made CRLF and lines over 998 octets folded; octets that may not be
 *    in a 7-bit body (RFC 2045 2.7: NUL, a bare CR, other controls but TAB, 8-bit)
 *    become '?'. mailgate offers no SMTPUTF8, so header text is ASCII (RFC 5322
 *    2.2) and the DSN stays 7-bit, which any relay can carry.
 */
#include "bounce.h"

#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define BOUNCE_LINE_SOFT	78	/* RFC 5322 2.1.1: SHOULD */
#define BOUNCE_LINE_HARD	998	/* RFC 5322 2.1.1: MUST (without the CRLF) */
#define BOUNCE_TEXT_WIDTH	72	/* the text/plain part */

/* makes Message-IDs unique when one message bounces twice in one second */
static atomic_uint_fast64_t bounce_seq = 1;

/* ---- a growing buffer that remembers its first failure ---- */

struct bbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void
bb_add(struct bbuf *b, const void *s, size_t n)
{
	size_t want, ncap;
	char *np;

	if (b->failed)
		return;
	if (n > SIZE_MAX - b->len - 1) {
		b->failed = true;
		return;
	}
	want = b->len + n + 1;
	if (want > b->cap) {
		ncap = b->cap != 0 ? b->cap : 512;
		while (ncap < want)
			ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
		if ((np = realloc(b->p, ncap)) == NULL) {
			b->failed = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
bb_str(struct bbuf *b, const char *s)
{
	bb_add(b, s, strlen(s));
}

static void
bb_char(struct bbuf *b, char c)
{
	bb_add(b, &c, 1);
}

static void bb_printf(struct bbuf *, const char *, ...) __attribute__((format(printf, 2, 3)));

static void
bb_printf(struct bbuf *b, const char *fmt, ...)
{
	char small[256], *big;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		bb_add(b, small, (size_t)n);
		return;
	}
	if ((big = malloc((size_t)n + 1)) == NULL) {
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	bb_add(b, big, (size_t)n);
	free(big);
}

/* empty again, keeping the memory */
static void
bb_reset(struct bbuf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

static void
bb_free(struct bbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* the buffer's text, "" while empty (so it can be used as a C string) */
static const char *
bb_text(const struct bbuf *b)
{
	return b->p != NULL ? b->p : "";
}

/* ---- outside text made safe for one header or report line ---- */

/*
 * Append s as one line of printable ASCII: runs of CR, LF, TAB and space become
 * one space (a folded multi-line reply reads as one), leading and trailing ones
 * go, anything else below 0x20 or from 0x7f up becomes '?'.
 */
static void
bounce_clean(struct bbuf *b, const char *s)
{
	bool gap = false, any = false;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			gap = true;
			continue;
		}
		if (gap && any)
			bb_char(b, ' ');
		gap = false;
		any = true;
		bb_char(b, c < 0x20 || c >= 0x7f ? '?' : (char)c);
	}
}

/*
 * "Name: value" with the value folded at its spaces (RFC 5322 2.2.3): a word
 * goes to a new line when it would take the line past 78 octets. value must be
 * clean (bounce_clean: single spaces, no controls). A word too long for even a
 * line of its own is cut at 998 octets and goes on after CRLF SP: the one case
 * where unfolding gives back a space that was not there, and only for a word
 * of hostile length.
 */
static void
bounce_field(struct bbuf *b, const char *name, const char *value)
{
	size_t col = strlen(name) + 1, wl, k;
	const char *p = value, *sp;
	bool first = true;

	bb_str(b, name);
	bb_char(b, ':');
	while (*p != '\0') {
		sp = strchr(p, ' ');
		wl = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (!first && col + 1 + wl > BOUNCE_LINE_SOFT) {
			bb_str(b, "\r\n");
			col = 0;
		}
		bb_char(b, ' ');
		col++;
		while (wl > BOUNCE_LINE_HARD - col) {
			k = BOUNCE_LINE_HARD - col;
			bb_add(b, p, k);
			bb_str(b, "\r\n ");
			col = 1;
			p += k;
			wl -= k;
		}
		bb_add(b, p, wl);
		col += wl;
		p += wl;
		if (*p == ' ')
			p++;
		first = false;
	}
	bb_str(b, "\r\n");
}

static void
bounce_field_date(struct bbuf *b, const char *name, time_t t)
{
	char date[64];

	util_rfc5322_date(date, sizeof(date), t);
	bounce_field(b, name, date);
}

/*
 * Clean text for people, word-wrapped at BOUNCE_TEXT_WIDTH with every line
 * indented by indent spaces; a word longer than a line is cut at 998.
 */
static void
bounce_wrap(struct bbuf *b, size_t indent, const char *text)
{
	static const char spaces[] = "                ";
	struct bbuf v = { 0 };
	const char *p, *sp;
	size_t col = 0, wl, k;

	if (indent > sizeof(spaces) - 1)
		indent = sizeof(spaces) - 1;
	bounce_clean(&v, text);
	if (v.failed) {
		b->failed = true;
		return;
	}
	for (p = bb_text(&v); *p != '\0'; ) {
		sp = strchr(p, ' ');
		wl = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (col > indent && col + 1 + wl > BOUNCE_TEXT_WIDTH) {
			bb_str(b, "\r\n");
			col = 0;
		}
		if (col == 0) {
			bb_add(b, spaces, indent);
			col = indent;
		} else {
			bb_char(b, ' ');
			col++;
		}
		while (wl > BOUNCE_LINE_HARD - col) {
			k = BOUNCE_LINE_HARD - col;
			bb_add(b, p, k);
			bb_str(b, "\r\n");
			bb_add(b, spaces, indent);
			col = indent;
			p += k;
			wl -= k;
		}
		bb_add(b, p, wl);
		col += wl;
		p += wl;
		if (*p == ' ')
			p++;
	}
	if (col > 0)
		bb_str(b, "\r\n");
	bb_free(&v);
}

/* ---- status codes (RFC 3463) ---- */

/* "class.subject.detail": class 2, 4 or 5, then 1 to 3 digits each (RFC 3463 2) */
static bool
bounce_status_ok(const char *s, int *subject, int *detail)
{
	int part[2] = { 0, 0 };

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int i = 0; i < 2; i++) {
		int n = 0;

		while (*s >= '0' && *s <= '9' && n < 4) {
			part[i] = part[i] * 10 + (*s - '0');
			s++;
			n++;
		}
		if (n == 0 || n > 3)
			return false;
		if (i == 0 && *s++ != '.')
			return false;
	}
	if (*s != '\0')
		return false;
	*subject = part[0];
	*detail = part[1];
	return true;
}

static bool
bounce_is_delayed(const struct bounce_rcpt *r)
{
	return strcmp(r->action, "delayed") == 0;
}

/*
 * The status a recipient is reported with: its own when well-formed and of a
 * class that fits the action (failed: 5, or 4 for a temporary failure that ran
 * out of time; delayed: 4), else just the class (RFC 3463 3.1: X.0.0).
 */
static const char *
bounce_status(const struct bounce_rcpt *r, int *subject, int *detail)
{
	bool delayed = bounce_is_delayed(r);

	if (bounce_status_ok(r->status, subject, detail) &&
	    (r->status[0] == '4' || (r->status[0] == '5' && !delayed)))
		return r->status;
	*subject = 0;
	*detail = 0;
	return delayed ? "4.0.0" : "5.0.0";
}

/* the status in plain words, for the text part */
static const char *
bounce_status_words(int subject, int detail)
{
	static const struct {
		int subject, detail;
		const char *words;
	} known[] = {
		{ 1, 1, "the mailbox does not exist" },
		{ 1, 2, "the recipient's domain does not exist or takes no mail" },
		{ 1, 3, "the recipient's address is not valid" },
		{ 1, 6, "the mailbox has moved" },
		{ 1, 10, "the recipient's domain says it takes no mail (null MX)" },
		{ 2, 1, "the mailbox is disabled" },
		{ 2, 2, "the mailbox is full" },
		{ 2, 3, "the message is larger than the mailbox takes" },
		{ 3, 4, "the message is too big for the receiving system" },
		{ 4, 1, "the receiving server did not answer" },
		{ 4, 2, "the connection to the receiving server broke off" },
		{ 4, 4, "no way to reach the recipient's domain was found" },
		{ 4, 6, "the message went round in a loop" },
		{ 4, 7, "the message could not be delivered in time" },
		{ 5, 3, "the message had too many recipients" },
		{ 7, 1, "the receiving system refused the message" },
	};
	/* by subject alone (RFC 3463 3.1 to 3.8) */
	static const char *const subjects[] = {
		"no reason was given",
		"there is a problem with the recipient's address",
		"there is a problem with the recipient's mailbox",
		"there is a problem with the receiving mail system",
		"there is a network or routing problem",
		"the receiving server did not understand our mail system",
		"there is a problem with the content of the message",
		"the message was refused by a security or policy rule",
	};

	for (size_t i = 0; i < ARRAY_LEN(known); i++)
		if (known[i].subject == subject && known[i].detail == detail)
			return known[i].words;
	if (subject >= 0 && (size_t)subject < ARRAY_LEN(subjects))
		return subjects[subject];
	return subjects[0];
}

/* ---- typed values: "dns; host", "smtp; 550 ..." (RFC 3464 2.3.5, 2.3.6) ---- */

/* the length of a valid type ("dns", "smtp", "X-Foo") before the ';', or 0 */
static size_t
bounce_type_len(const char *v)
{
	size_t n = 0;

	while ((v[n] >= 'A' && v[n] <= 'Z') || (v[n] >= 'a' && v[n] <= 'z') ||
	    (v[n] >= '0' && v[n] <= '9') || v[n] == '-')
		n++;
	return n > 0 && v[n] == ';' ? n : 0;
}

/*
 * Clean a typed value; one that lacks its type gets deftype, or for a
 * diagnostic that starts with a reply code, "smtp". Returns the value's text
 * after "type;" (for people) through *rest, or NULL when the value is empty.
 */
static const char *
bounce_typed(struct bbuf *out, const char *in, const char *deftype, const char **rest)
{
	struct bbuf v = { 0 };
	const char *t;
	size_t tl;

	*rest = NULL;
	if (in == NULL)
		return NULL;
	bounce_clean(&v, in);
	if (v.failed) {
		out->failed = true;
		bb_free(&v);
		return NULL;
	}
	t = bb_text(&v);
	if (*t == '\0') {
		bb_free(&v);
		return NULL;
	}
	if ((tl = bounce_type_len(t)) > 0) {
		bb_str(out, t);
		t += tl + 1;
		while (*t == ' ')
			t++;
	} else {
		if (deftype == NULL)
			deftype = t[0] >= '2' && t[0] <= '5' && t[1] >= '0' && t[1] <= '9' &&
			    t[2] >= '0' && t[2] <= '9' && (t[3] == '\0' || t[3] == ' ' ||
			    t[3] == '-') ? "smtp" : "X-Mailgate";
		bb_printf(out, "%s; %s", deftype, t);
	}
	/* *rest points into out: same text after the type */
	*rest = out->failed ? NULL : out->p + (out->len - strlen(t));
	bb_free(&v);
	return out->failed ? NULL : bb_text(out);
}

/* ---- the three parts ---- */

/* one recipient in the text part: the address, why, what the server said */
static void
bounce_text_rcpt(struct bbuf *b, const struct bounce_rcpt *r)
{
	struct bbuf line = { 0 }, mta = { 0 }, diag = { 0 };
	const char *host = NULL, *said = NULL, *dtype;
	const char *status;
	int subject, detail;

	bb_str(&line, "<");
	bounce_clean(&line, r->address);
	bb_str(&line, ">");
	bounce_wrap(b, 4, bb_text(&line));
	bb_reset(&line);

	status = bounce_status(r, &subject, &detail);
	bb_printf(&line, "%s (%s).", bounce_status_words(subject, detail), status);
	if (line.p != NULL && line.p[0] >= 'a' && line.p[0] <= 'z')
		line.p[0] = (char)(line.p[0] - 'a' + 'A');
	bounce_wrap(b, 6, bb_text(&line));

	(void)bounce_typed(&mta, r->remote_mta, "dns", &host);
	dtype = bounce_typed(&diag, r->diagnostic, NULL, &said);
	if (said != NULL && *said != '\0') {
		bb_reset(&line);
		if (strncasecmp(dtype, "smtp;", 5) == 0) {
			if (host != NULL && *host != '\0')
				bb_printf(&line, "The server %s answered: %s", host, said);
			else
				bb_printf(&line, "The receiving server answered: %s", said);
		} else
			bb_printf(&line, "Details: %s", said);
		bounce_wrap(b, 6, bb_text(&line));
	} else if (host != NULL && *host != '\0') {
		bb_reset(&line);
		bb_printf(&line, "Last tried at %s.", host);
		bounce_wrap(b, 6, bb_text(&line));
	}
	bb_str(b, "\r\n");
	if (line.failed || mta.failed || diag.failed)
		b->failed = true;
	bb_free(&line);
	bb_free(&mta);
	bb_free(&diag);
}

/* part 1, text/plain: what happened, in plain words */
static void
bounce_text(struct bbuf *b, const struct bounce_info *bi, const char *host,
    size_t n_failed, size_t n_delayed)
{
	struct bbuf s = { 0 };
	char date[64];
	time_t until = 0;

	bb_printf(&s, "This is the mail system at %s.", host);
	bounce_wrap(b, 0, bb_text(&s));
	bb_str(b, "\r\n");

	bb_reset(&s);
	bb_str(&s, "This is about your message");
	if (bi->arrival != 0) {
		util_rfc5322_date(date, sizeof(date), bi->arrival);
		bb_printf(&s, " received %s", date);
	}
	bb_printf(&s, " (our reference: MID %" PRIu64 ").", bi->orig_mid);
	bounce_wrap(b, 0, bb_text(&s));
	bb_str(b, "\r\n");

	if (n_failed > 0) {
		bounce_wrap(b, 0, n_failed == 1 ?
		    "It could not be delivered to the recipient below. This is a permanent "
		    "failure: the mail system has given up on this address." :
		    "It could not be delivered to the recipients below. This is a permanent "
		    "failure: the mail system has given up on these addresses.");
		bb_str(b, "\r\n");
		for (size_t i = 0; i < bi->n_rcpts; i++)
			if (!bounce_is_delayed(&bi->rcpts[i]))
				bounce_text_rcpt(b, &bi->rcpts[i]);
	}
	if (n_delayed > 0) {
		for (size_t i = 0; i < bi->n_rcpts; i++)
			if (bounce_is_delayed(&bi->rcpts[i]) &&
			    bi->rcpts[i].will_retry_until > until)
				until = bi->rcpts[i].will_retry_until;
		bb_reset(&s);
		bb_printf(&s, "%s not been delivered yet to the %s below. The mail system "
		    "keeps trying", n_failed > 0 ? "It has also" : "It has",
		    n_delayed == 1 ? "recipient" : "recipients");
		if (until != 0) {
			util_rfc5322_date(date, sizeof(date), until);
			bb_printf(&s, " until %s", date);
		}
		bb_str(&s, ". You do not need to send it again; you will be told if it "
		    "finally fails.");
		bounce_wrap(b, 0, bb_text(&s));
		bb_str(b, "\r\n");
		for (size_t i = 0; i < bi->n_rcpts; i++)
			if (bounce_is_delayed(&bi->rcpts[i]))
				bounce_text_rcpt(b, &bi->rcpts[i]);
	}
	bounce_wrap(b, 0, "The attached report says the same for mail software; the "
	    "headers of your message follow it.");
	if (s.failed)
		b->failed = true;
	bb_free(&s);
}

/* part 2, message/delivery-status (RFC 3464 2.1, fields in the order of its ABNF) */
static void
bounce_report(struct bbuf *b, const struct bounce_info *bi, const char *host)
{
	struct bbuf v = { 0 };
	const char *rest;
	char mid[32];
	int subject, detail;

	/* per-message: Reporting-MTA (2.2.2), Arrival-Date (2.2.5), extensions last */
	bb_printf(&v, "dns; %s", host);
	bounce_field(b, "Reporting-MTA", bb_text(&v));
	if (bi->arrival != 0)
		bounce_field_date(b, "Arrival-Date", bi->arrival);
	snprintf(mid, sizeof(mid), "%" PRIu64, bi->orig_mid);
	bounce_field(b, "X-Mailgate-MID", mid);

	for (size_t i = 0; i < bi->n_rcpts; i++) {
		const struct bounce_rcpt *r = &bi->rcpts[i];

		/* each recipient's group follows an empty line (2.1) */
		bb_str(b, "\r\n");
		/* 2.3.2: the address type is rfc822 for an SMTP address (RFC 3461 4.2) */
		bb_reset(&v);
		bb_str(&v, "rfc822; ");
		bounce_clean(&v, r->address);
		bounce_field(b, "Final-Recipient", bb_text(&v));
		bounce_field(b, "Action", r->action);
		/* 2.3.4: Status is required */
		bounce_field(b, "Status", bounce_status(r, &subject, &detail));
		bb_reset(&v);
		if (bounce_typed(&v, r->remote_mta, "dns", &rest) != NULL)
			bounce_field(b, "Remote-MTA", bb_text(&v));
		bb_reset(&v);
		if (bounce_typed(&v, r->diagnostic, NULL, &rest) != NULL)
			bounce_field(b, "Diagnostic-Code", bb_text(&v));
		if (r->last_attempt != 0)
			bounce_field_date(b, "Last-Attempt-Date", r->last_attempt);
		/* 2.3.9: only meaningful for a delayed recipient */
		if (bounce_is_delayed(r) && r->will_retry_until != 0)
			bounce_field_date(b, "Will-Retry-Until", r->will_retry_until);
	}
	if (v.failed)
		b->failed = true;
	bb_free(&v);
}

/* one line of the original headers (no line end), folded to at most 998 octets */
static void
bounce_orig_line(struct bbuf *b, const char *q, size_t m)
{
	size_t pos = 0, budget, j;
	bool lead = false;		/* the piece needs a leading SP to be a continuation */

	while (m - pos + (lead ? 1 : 0) > BOUNCE_LINE_HARD) {
		budget = BOUNCE_LINE_HARD - (lead ? 1 : 0);
		/* fold before the last WSP that leaves a non-empty piece (RFC 5322 2.2.3) */
		for (j = pos + budget; j > pos; j--)
			if (q[j] == ' ' || q[j] == '\t')
				break;
		if (lead)
			bb_char(b, ' ');
		if (j > pos) {
			bb_add(b, q + pos, j - pos);
			pos = j;
			lead = false;
		} else {
			/* no WSP in reach: cut, and go on as a continuation line */
			bb_add(b, q + pos, budget);
			pos += budget;
			lead = true;
		}
		bb_str(b, "\r\n");
	}
	if (lead)
		bb_char(b, ' ');
	bb_add(b, q + pos, m - pos);
	bb_str(b, "\r\n");
}

/* part 3, text/rfc822-headers (RFC 6522 4): the header section up to its empty line */
static void
bounce_orig(struct bbuf *b, const char *h, size_t n)
{
	struct bbuf line = { 0 };

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c == '\r' && i + 1 < n && h[i + 1] == '\n')
			continue;		/* the LF ends the line */
		if (c == '\n') {
			if (line.len == 0)
				break;		/* the empty line: the end of the headers */
			bounce_orig_line(b, line.p, line.len);
			bb_reset(&line);
			continue;
		}
		if (c != '\t' && (c < 0x20 || c >= 0x7f))
			c = '?';
		bb_char(&line, (char)c);
	}
	if (line.len > 0)
		bounce_orig_line(b, line.p, line.len);
	if (line.failed)
		b->failed = true;
	bb_free(&line);
}

static bool
bounce_contains(const struct bbuf *b, const char *s)
{
	return b->len > 0 && memmem(b->p, b->len, s, strlen(s)) != NULL;
}

/* ---- the message ---- */

/* the hostname is ours (config), but it lands in header lines: no space, no controls */
static bool
bounce_host_ok(const char *h)
{
	if (h == NULL || *h == '\0')
		return false;
	for (; *h != '\0'; h++)
		if ((unsigned char)*h <= 0x20 || (unsigned char)*h >= 0x7f)
			return false;
	return true;
}

int
bounce_write(FILE *out, const struct bounce_info *bi, const char *orig_headers, size_t orig_len)
{
	struct bbuf text = { 0 }, report = { 0 }, orig = { 0 }, msg = { 0 }, v = { 0 };
	char boundary[80], date[64];
	const struct bbuf *parts[3];
	uint64_t seq, attempt;
	size_t n_failed = 0, n_delayed = 0, n_parts;
	time_t now;
	int rc = -1, err = ENOMEM;

	if (out == NULL || bi == NULL || !bounce_host_ok(bi->hostname) ||
	    bi->orig_sender == NULL || bi->orig_sender[0] == '\0' ||
	    bi->rcpts == NULL || bi->n_rcpts == 0) {
		/* above all the null sender: no DSN about a DSN (RFC 5321 4.5.5, 6.1) */
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < bi->n_rcpts; i++) {
		const struct bounce_rcpt *r = &bi->rcpts[i];

		if (r->address == NULL || r->address[0] == '\0' || r->action == NULL) {
			errno = EINVAL;
			return -1;
		}
		if (strcmp(r->action, "failed") == 0)
			n_failed++;
		else if (strcmp(r->action, "delayed") == 0)
			n_delayed++;
		else {
			errno = EINVAL;
			return -1;
		}
	}
	now = bi->now != 0 ? bi->now : time(NULL);
	seq = atomic_fetch_add(&bounce_seq, 1);

	bounce_text(&text, bi, bi->hostname, n_failed, n_delayed);
	bounce_report(&report, bi, bi->hostname);
	if (orig_headers != NULL && orig_len > 0)
		bounce_orig(&orig, orig_headers, orig_len);
	if (text.failed || report.failed || orig.failed)
		goto done;
	parts[0] = &text;
	parts[1] = &report;
	parts[2] = &orig;
	n_parts = orig.len > 0 ? 3 : 2;

	/*
	 * RFC 2046 5.1.1: the boundary must not occur in any part. Ours is at most
	 * 9 + 20 + 1 + 20 + 1 + 16 = 67 of the 70 octets allowed; the attempt number
	 * has a fixed width, so each position in the content rules out at most one
	 * candidate and the search ends after at most content-length tries.
	 */
	for (attempt = 0;; attempt++) {
		bool clash = false;

		snprintf(boundary, sizeof(boundary), "=_bounce.%" PRIu64 ".%lld.%016" PRIx64,
		    bi->orig_mid, (long long)now, attempt);
		for (size_t i = 0; i < n_parts && !clash; i++)
			clash = bounce_contains(parts[i], boundary);
		if (!clash)
			break;
	}

	bb_printf(&v, "Mail Delivery System <MAILER-DAEMON@%s>", bi->hostname);
	bounce_field(&msg, "From", bb_text(&v));
	bb_reset(&v);
	bb_str(&v, "<");
	bounce_clean(&v, bi->orig_sender);
	bb_str(&v, ">");
	bounce_field(&msg, "To", bb_text(&v));
	bounce_field(&msg, "Subject", n_delayed == bi->n_rcpts ?
	    "Delayed Mail (still being retried)" : "Undelivered Mail Returned to Sender");
	util_rfc5322_date(date, sizeof(date), now);
	bounce_field(&msg, "Date", date);
	/* RFC 5322 3.6.4: unique, so the sequence number even within one second */
	bb_reset(&v);
	bb_printf(&v, "<bounce.%" PRIu64 ".%lld.%" PRIu64 "@%s>", bi->orig_mid, (long long)now,
	    seq, bi->hostname);
	bounce_field(&msg, "Message-ID", bb_text(&v));
	/* RFC 3834 5: generated in answer to a message; autoresponders stay silent */
	bounce_field(&msg, "Auto-Submitted", "auto-replied");
	bounce_field(&msg, "MIME-Version", "1.0");
	/* RFC 6522 3: report-type names the second part's type */
	bb_reset(&v);
	bb_printf(&v, "multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary);
	bounce_field(&msg, "Content-Type", bb_text(&v));
	bb_str(&msg, "\r\nThis is a MIME-encapsulated message.\r\n");

	/*
	 * Each part's content ends with CRLF; the CRLF before "--boundary" belongs
	 * to the delimiter (RFC 2046 5.1.1), hence the extra one.
	 */
	bb_printf(&msg, "\r\n--%s\r\n", boundary);
	bb_str(&msg, "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	bb_add(&msg, text.p, text.len);
	bb_printf(&msg, "\r\n--%s\r\n", boundary);
	bb_str(&msg, "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n");
	bb_add(&msg, report.p, report.len);
	if (n_parts == 3) {
		bb_printf(&msg, "\r\n--%s\r\n", boundary);
		bb_str(&msg, "Content-Description: Undelivered message headers\r\n"
		    "Content-Type: text/rfc822-headers\r\n\r\n");
		bb_add(&msg, orig.p, orig.len);
	}
	bb_printf(&msg, "\r\n--%s--\r\n", boundary);
	if (msg.failed || v.failed)
		goto done;

	errno = 0;
	if (fwrite(msg.p, 1, msg.len, out) != msg.len || fflush(out) == EOF) {
		err = errno != 0 ? errno : EIO;
		goto done;
	}
	rc = 0;
done:
	bb_free(&text);
	bb_free(&report);
	bb_free(&orig);
	bb_free(&msg);
	bb_free(&v);
	if (rc == -1)
		errno = err;
	return rc;
}

/* ---- reading the original headers from the spool ---- */

char *
bounce_read_headers(const char *path, long data_offset, size_t cap, size_t *len)
{
	struct stat st;
	size_t want, n, end, ls;
	char *buf, *nl;
	bool found = false;
	FILE *f;
	int e;

	if (path == NULL || len == NULL || data_offset < 0 || cap > SIZE_MAX - 2) {
		errno = EINVAL;
		return NULL;
	}
	*len = 0;
	if ((f = fopen(path, "re")) == NULL)
		return NULL;
	if (fstat(fileno(f), &st) == -1)
		goto fail;
	/* read one octet more than cap: whether the headers go on past it */
	want = cap + 1;
	if (st.st_size <= (off_t)data_offset)
		want = 0;
	else if ((uintmax_t)(st.st_size - data_offset) < want)
		want = (size_t)(st.st_size - data_offset);
	if ((buf = malloc(want + 1)) == NULL)
		goto fail;
	if (want > 0 && fseek(f, data_offset, SEEK_SET) == -1) {
		e = errno;
		free(buf);
		errno = e;
		goto fail;
	}
	errno = 0;
	n = want > 0 ? fread(buf, 1, want, f) : 0;
	if (ferror(f)) {
		e = errno != 0 ? errno : EIO;
		free(buf);
		errno = e;
		goto fail;
	}
	fclose(f);

	/* the first empty line: "\n" or "\r\n" right after a line end (or at the start) */
	end = n > cap ? cap : n;
	for (size_t i = ls = 0; i < end; i++) {
		if (buf[i] != '\n')
			continue;
		if (i == ls || (i == ls + 1 && buf[ls] == '\r')) {
			end = i + 1;
			found = true;
			break;
		}
		ls = i + 1;
	}
	/* past the cap: keep whole lines, or cap octets when not one line fits */
	if (!found && n > cap && (nl = memrchr(buf, '\n', end)) != NULL)
		end = (size_t)(nl - buf) + 1;
	buf[end] = '\0';
	*len = end;
	return buf;
fail:
	e = errno;
	fclose(f);
	errno = e;
	return NULL;
}
