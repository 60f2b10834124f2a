/*
 * test_bounce.c: the DSN generator. Every produced message is parsed back the
 * way a mail client would (header unfolding, MIME splitting on the boundary,
 * the report's field groups) and checked field by field: one recipient and
 * several, failed against delayed, CRLF everywhere and no line over 998, hostile
 * original headers (a boundary-looking line, bare LF, NUL, a 5,000-octet line),
 * remote text with CR/LF trying to start header lines of its own, refusals
 * (null sender first), a failing stream, and the header section read back from
 * spool files written here in the spool's format.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "spool.h"

#define NOW	((time_t)1700000000)	/* Tue, 14 Nov 2023 22:13:20 +0000 */

/* ---- a small MIME reader ---- */

struct field {
	char *name;
	char *value;			/* unfolded (CRLF removed), leading WSP trimmed */
};

struct fields {
	struct field f[64];
	size_t n;
};

struct part {
	struct fields hdr;
	const char *body;
	size_t len;
};

struct dsn {
	char *raw;
	size_t len;
	struct fields top;
	char boundary[128];
	struct part part[4];
	size_t n_parts;
	struct fields per_msg;		/* part 2, first group */
	struct fields rcpt[16];		/* part 2, the per-recipient groups */
	size_t n_rcpt;
};

/* RFC 5322 2.2.3 unfolding: a line that starts with WSP continues the field */
static void
parse_fields(const char *p, size_t len, struct fields *out)
{
	const char *end = p + len, *eol, *colon;

	memset(out, 0, sizeof(*out));
	while (p < end) {
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		assert_non_null(eol);
		if (*p == ' ' || *p == '\t') {
			struct field *f;
			size_t old, add = (size_t)(eol - p);

			assert_true(out->n > 0);
			f = &out->f[out->n - 1];
			old = strlen(f->value);
			f->value = realloc(f->value, old + add + 1);
			assert_non_null(f->value);
			memcpy(f->value + old, p, add);
			f->value[old + add] = '\0';
		} else {
			assert_true(out->n < 64);
			colon = memchr(p, ':', (size_t)(eol - p));
			assert_non_null(colon);
			assert_null(memchr(p, ' ', (size_t)(colon - p)));
			out->f[out->n].name = strndup(p, (size_t)(colon - p));
			colon++;
			while (colon < eol && (*colon == ' ' || *colon == '\t'))
				colon++;
			out->f[out->n].value = strndup(colon, (size_t)(eol - colon));
			out->n++;
		}
		p = eol + 2;
	}
}

static void
free_fields(struct fields *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		free(fs->f[i].name);
		free(fs->f[i].value);
	}
	fs->n = 0;
}

static size_t
field_count(const struct fields *fs, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < fs->n; i++)
		if (strcasecmp(fs->f[i].name, name) == 0)
			n++;
	return n;
}

/* the one field of that name, NULL if none; fails if it repeats */
static const char *
field_get(const struct fields *fs, const char *name)
{
	assert_true(field_count(fs, name) <= 1);
	for (size_t i = 0; i < fs->n; i++)
		if (strcasecmp(fs->f[i].name, name) == 0)
			return fs->f[i].value;
	return NULL;
}

static void
assert_field(const struct fields *fs, const char *name, const char *want)
{
	const char *v = field_get(fs, name);

	if (v == NULL)
		fail_msg("no %s field", name);
	if (strcmp(v, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", name, v, want);
}

/* CRLF only, every line at most 998 octets, printable ASCII and TAB only */
static void
check_wire(const char *m, size_t len)
{
	size_t ls = 0;

	assert_true(len >= 2);
	assert_memory_equal(m + len - 2, "\r\n", 2);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)m[i];

		if (c == '\r') {
			assert_true(i + 1 < len && m[i + 1] == '\n');
		} else if (c == '\n') {
			assert_true(i > 0 && m[i - 1] == '\r');
			if (i - 1 - ls > 998)
				fail_msg("line at %zu is %zu octets", ls, i - 1 - ls);
			ls = i + 1;
		} else if (c != '\t' && (c < 0x20 || c >= 0x7f))
			fail_msg("octet 0x%02x at %zu", c, i);
	}
}

/* no line of the whole message starts with this (a forged header line) */
static void
assert_no_line_starts(const char *m, size_t len, const char *prefix)
{
	size_t pl = strlen(prefix);

	for (size_t i = 0; i < len; i++)
		if ((i == 0 || m[i - 1] == '\n') && len - i >= pl &&
		    strncasecmp(m + i, prefix, pl) == 0)
			fail_msg("a line starts with \"%s\" at %zu", prefix, i);
}

static void
split_groups(struct dsn *d, const char *p, size_t len)
{
	const char *end = p + len, *sep;
	bool first = true;

	while (p < end) {
		sep = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		size_t glen = sep != NULL ? (size_t)(sep - p) + 2 : (size_t)(end - p);

		if (first)
			parse_fields(p, glen, &d->per_msg);
		else {
			assert_true(d->n_rcpt < 16);
			parse_fields(p, glen, &d->rcpt[d->n_rcpt++]);
		}
		first = false;
		p += glen + (sep != NULL ? 2 : 0);
	}
}

static void
dsn_parse(struct dsn *d, char *raw, size_t len)
{
	const char *sep, *ct, *b, *body, *bend, *line, *eol, *start = NULL;
	char dl[160], cl[160];
	bool closed = false;

	memset(d, 0, sizeof(*d));
	d->raw = raw;
	d->len = len;
	check_wire(raw, len);
	sep = memmem(raw, len, "\r\n\r\n", 4);
	assert_non_null(sep);
	parse_fields(raw, (size_t)(sep - raw) + 2, &d->top);
	ct = field_get(&d->top, "Content-Type");
	assert_non_null(ct);
	b = strstr(ct, "boundary=\"");
	assert_non_null(b);
	b += strlen("boundary=\"");
	assert_non_null(strchr(b, '"'));
	assert_true((size_t)(strchr(b, '"') - b) <= 70);	/* RFC 2046 5.1.1 */
	memcpy(d->boundary, b, (size_t)(strchr(b, '"') - b));
	snprintf(dl, sizeof(dl), "--%s", d->boundary);
	snprintf(cl, sizeof(cl), "--%s--", d->boundary);

	body = sep + 4;
	bend = raw + len;
	for (line = body; line < bend; line = eol + 2) {
		size_t ll;

		eol = memmem(line, (size_t)(bend - line), "\r\n", 2);
		assert_non_null(eol);
		ll = (size_t)(eol - line);
		if (ll == strlen(dl) && memcmp(line, dl, ll) == 0) {
			if (start != NULL) {
				assert_true(d->n_parts < 4);
				d->part[d->n_parts].body = start;
				d->part[d->n_parts].len = (size_t)(line - 2 - start);
				d->n_parts++;
			}
			start = eol + 2;
		} else if (ll == strlen(cl) && memcmp(line, cl, ll) == 0) {
			assert_non_null(start);
			assert_true(d->n_parts < 4);
			d->part[d->n_parts].body = start;
			d->part[d->n_parts].len = (size_t)(line - 2 - start);
			d->n_parts++;
			assert_true(eol + 2 == bend);		/* nothing after the close */
			closed = true;
		} else if (ll >= strlen(dl) && memcmp(line, dl, strlen(dl)) == 0)
			fail_msg("a line looks like the boundary: %.*s", (int)ll, line);
	}
	assert_true(closed);

	/* each part: its own header block, an empty line, its content */
	for (size_t i = 0; i < d->n_parts; i++) {
		struct part *pt = &d->part[i];
		const char *s = memmem(pt->body, pt->len, "\r\n\r\n", 4);

		assert_non_null(s);
		parse_fields(pt->body, (size_t)(s - pt->body) + 2, &pt->hdr);
		pt->len -= (size_t)(s + 4 - pt->body);
		pt->body = s + 4;
	}
	assert_true(d->n_parts >= 2);
	assert_field(&d->part[0].hdr, "Content-Type", "text/plain; charset=us-ascii");
	assert_field(&d->part[1].hdr, "Content-Type", "message/delivery-status");
	if (d->n_parts > 2)
		assert_field(&d->part[2].hdr, "Content-Type", "text/rfc822-headers");
	split_groups(d, d->part[1].body, d->part[1].len);
}

static void
dsn_free(struct dsn *d)
{
	free_fields(&d->top);
	for (size_t i = 0; i < d->n_parts; i++)
		free_fields(&d->part[i].hdr);
	free_fields(&d->per_msg);
	for (size_t i = 0; i < d->n_rcpt; i++)
		free_fields(&d->rcpt[i]);
	free(d->raw);
}

/* bounce_write into memory; returns its rc, the text in *out (always freeable) */
static int
gen(const struct bounce_info *bi, const char *h, size_t hlen, char **out, size_t *len)
{
	FILE *f;
	int rc, e;

	*out = NULL;
	*len = 0;
	f = open_memstream(out, len);
	assert_non_null(f);
	errno = 0;
	rc = bounce_write(f, bi, h, hlen);
	e = errno;
	assert_int_equal(fclose(f), 0);
	errno = e;
	return rc;
}

static void
gen_parse(struct dsn *d, const struct bounce_info *bi, const char *h, size_t hlen)
{
	char *raw;
	size_t len;

	assert_int_equal(gen(bi, h, hlen, &raw, &len), 0);
	dsn_parse(d, raw, len);
}

/* the text part contains s (after undoing its word-wrap) */
static bool
text_has(const struct dsn *d, const char *s)
{
	char *flat = malloc(d->part[0].len + 1);
	size_t n = 0;
	bool found;

	assert_non_null(flat);
	for (size_t i = 0; i < d->part[0].len; i++) {
		char c = d->part[0].body[i];

		if (c == '\r')
			continue;
		if (c == '\n' || c == ' ') {
			if (n > 0 && flat[n - 1] != ' ')
				flat[n++] = ' ';
			continue;
		}
		flat[n++] = c;
	}
	flat[n] = '\0';
	found = strstr(flat, s) != NULL;
	free(flat);
	return found;
}

static void
assert_text(const struct dsn *d, const char *s)
{
	if (!text_has(d, s))
		fail_msg("the text part lacks \"%s\":\n%.*s", s, (int)d->part[0].len,
		    d->part[0].body);
}

static const char orig_std[] =
    "Received: from client.example ([127.0.0.1])\r\n"
    "\tby mx.example.com (mailgate) with ESMTP id 42 (ICID 5)\r\n"
    "\tfor <bob@other.com>;\r\n"
    "\tTue, 14 Nov 2023 19:26:40 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@other.com>\r\n"
    "Subject: Lunch?\r\n"
    "Message-ID: <abc@example.org>\r\n"
    "\r\n"
    "The body, which must not come back.\r\n";

/* the header section of orig_std: through the last header line */
static size_t
orig_std_hdr_len(void)
{
	return (size_t)(strstr(orig_std, "\r\n\r\n") - orig_std) + 2;
}

static const struct bounce_rcpt rcpt_bob = {
	.address = "bob@other.com", .status = "5.1.1", .action = "failed",
	.remote_mta = "dns; mx.other.com", .diagnostic = "smtp; 550 5.1.1 User unknown",
	.last_attempt = NOW - 10,
};

static struct bounce_info
info_for(const struct bounce_rcpt *r, size_t n)
{
	struct bounce_info bi = {
		.hostname = "mx.example.com", .orig_mid = 42, .orig_sender = "alice@example.org",
		.arrival = NOW - 10000, .rcpts = r, .n_rcpts = n, .now = NOW,
	};

	return bi;
}

/* ---- the tests ---- */

static void
test_one_failed(void **state)
{
	struct bounce_info bi = info_for(&rcpt_bob, 1);
	struct dsn d;
	const char *mid;
	char want[256];

	(void)state;
	gen_parse(&d, &bi, orig_std, sizeof(orig_std) - 1);

	/* the DSN's own header section */
	assert_field(&d.top, "From", "Mail Delivery System <MAILER-DAEMON@mx.example.com>");
	assert_field(&d.top, "To", "<alice@example.org>");
	assert_field(&d.top, "Subject", "Undelivered Mail Returned to Sender");
	assert_field(&d.top, "Date", "Tue, 14 Nov 2023 22:13:20 +0000");
	assert_field(&d.top, "Auto-Submitted", "auto-replied");
	assert_field(&d.top, "MIME-Version", "1.0");
	mid = field_get(&d.top, "Message-ID");
	assert_non_null(mid);
	assert_true(strncmp(mid, "<bounce.42.1700000000.", 22) == 0);
	assert_true(strlen(mid) > 22 + 16);
	assert_string_equal(mid + strlen(mid) - 16, "@mx.example.com>");
	for (const char *p = mid + 22; *p != '@'; p++)
		assert_true(*p >= '0' && *p <= '9');
	snprintf(want, sizeof(want),
	    "multipart/report; report-type=delivery-status; boundary=\"%s\"", d.boundary);
	assert_field(&d.top, "Content-Type", want);
	assert_string_equal(d.boundary, "=_bounce.42.1700000000.0000000000000000");
	assert_int_equal(d.top.n, 8);

	/* the three parts */
	assert_int_equal(d.n_parts, 3);
	assert_text(&d, "mail system at mx.example.com");
	assert_text(&d, "message received Tue, 14 Nov 2023 19:26:40 +0000 (our reference: MID 42).");
	assert_text(&d, "could not be delivered to the recipient below");
	assert_text(&d, "<bob@other.com>");
	assert_text(&d, "The mailbox does not exist (5.1.1).");
	assert_text(&d, "The server mx.other.com answered: 550 5.1.1 User unknown");
	assert_false(text_has(&d, "not been delivered yet"));

	/* the report: per message, then one recipient */
	assert_int_equal(d.per_msg.n, 3);
	assert_string_equal(d.per_msg.f[0].name, "Reporting-MTA");
	assert_field(&d.per_msg, "Reporting-MTA", "dns; mx.example.com");
	assert_field(&d.per_msg, "Arrival-Date", "Tue, 14 Nov 2023 19:26:40 +0000");
	assert_field(&d.per_msg, "X-Mailgate-MID", "42");
	assert_int_equal(d.n_rcpt, 1);
	assert_int_equal(d.rcpt[0].n, 6);
	assert_string_equal(d.rcpt[0].f[0].name, "Final-Recipient");
	assert_field(&d.rcpt[0], "Final-Recipient", "rfc822; bob@other.com");
	assert_field(&d.rcpt[0], "Action", "failed");
	assert_field(&d.rcpt[0], "Status", "5.1.1");
	assert_field(&d.rcpt[0], "Remote-MTA", "dns; mx.other.com");
	assert_field(&d.rcpt[0], "Diagnostic-Code", "smtp; 550 5.1.1 User unknown");
	assert_field(&d.rcpt[0], "Last-Attempt-Date", "Tue, 14 Nov 2023 22:13:10 +0000");

	/* the original headers, exactly, and not one octet of the body */
	assert_int_equal(d.part[2].len, orig_std_hdr_len());
	assert_memory_equal(d.part[2].body, orig_std, orig_std_hdr_len());
	assert_null(memmem(d.raw, d.len, "must not come back", 18));
	dsn_free(&d);
}

static void
test_several(void **state)
{
	const struct bounce_rcpt r[] = {
		rcpt_bob,
		{ .address = "carol@other.com", .status = "5.2.2", .action = "failed",
		  .remote_mta = "dns; mx.other.com",
		  .diagnostic = "smtp; 552 5.2.2 Mailbox full", .last_attempt = NOW - 5 },
		{ .address = "dave@third.net", .status = "4.4.1", .action = "delayed",
		  .remote_mta = NULL, .diagnostic = "X-Mailgate; connection refused",
		  .last_attempt = NOW - 60, .will_retry_until = NOW + 86400 },
		{ .address = "erin@fourth.org", .status = "5.4.7", .action = "failed" },
	};
	struct bounce_info bi = info_for(r, 4);
	struct dsn d;

	(void)state;
	gen_parse(&d, &bi, orig_std, sizeof(orig_std) - 1);
	/* one delayed among failed ones: still a failure notice */
	assert_field(&d.top, "Subject", "Undelivered Mail Returned to Sender");
	assert_int_equal(d.n_parts, 3);
	assert_int_equal(d.n_rcpt, 4);
	for (size_t i = 0; i < 4; i++) {
		char fr[64];

		snprintf(fr, sizeof(fr), "rfc822; %s", r[i].address);
		assert_field(&d.rcpt[i], "Final-Recipient", fr);
		assert_field(&d.rcpt[i], "Action", r[i].action);
		assert_field(&d.rcpt[i], "Status", r[i].status);
	}
	assert_field(&d.rcpt[1], "Diagnostic-Code", "smtp; 552 5.2.2 Mailbox full");
	assert_field(&d.rcpt[1], "Last-Attempt-Date", "Tue, 14 Nov 2023 22:13:15 +0000");
	assert_null(field_get(&d.rcpt[1], "Will-Retry-Until"));
	assert_null(field_get(&d.rcpt[2], "Remote-MTA"));
	assert_field(&d.rcpt[2], "Diagnostic-Code", "X-Mailgate; connection refused");
	assert_field(&d.rcpt[2], "Will-Retry-Until", "Wed, 15 Nov 2023 22:13:20 +0000");
	/* nothing known but the status: only the required fields */
	assert_int_equal(d.rcpt[3].n, 3);

	assert_text(&d, "could not be delivered to the recipients below");
	assert_text(&d, "<carol@other.com> The mailbox is full (5.2.2).");
	assert_text(&d, "<erin@fourth.org> The message could not be delivered in time");
	assert_text(&d, "It has also not been delivered yet to the recipient below");
	assert_text(&d, "keeps trying until Wed, 15 Nov 2023 22:13:20 +0000");
	assert_text(&d, "<dave@third.net> The receiving server did not answer (4.4.1).");
	assert_text(&d, "Details: connection refused");
	/* the failed ones are listed before the delayed one */
	assert_true(strstr(d.part[0].body, "erin@") < strstr(d.part[0].body, "dave@"));
	dsn_free(&d);
}

static void
test_all_delayed(void **state)
{
	const struct bounce_rcpt r[] = {
		{ .address = "bob@other.com", .status = "4.2.2", .action = "delayed",
		  .remote_mta = "dns; mx.other.com",
		  .diagnostic = "smtp; 452 4.2.2 Mailbox full, try later",
		  .last_attempt = NOW - 30, .will_retry_until = NOW + 3600 },
		{ .address = "carol@other.com", .status = NULL, .action = "delayed" },
	};
	struct bounce_info bi = info_for(r, 2);
	struct dsn d;

	(void)state;
	gen_parse(&d, &bi, orig_std, sizeof(orig_std) - 1);
	assert_field(&d.top, "Subject", "Delayed Mail (still being retried)");
	assert_int_equal(d.n_rcpt, 2);
	assert_field(&d.rcpt[0], "Action", "delayed");
	assert_field(&d.rcpt[0], "Status", "4.2.2");
	assert_field(&d.rcpt[0], "Will-Retry-Until", "Tue, 14 Nov 2023 23:13:20 +0000");
	assert_field(&d.rcpt[1], "Action", "delayed");
	assert_field(&d.rcpt[1], "Status", "4.0.0");	/* none given: the class alone */
	assert_text(&d, "It has not been delivered yet to the recipients below");
	assert_text(&d, "You do not need to send it again");
	assert_false(text_has(&d, "permanent failure"));
	assert_int_equal(d.n_parts, 3);

	/* one delayed recipient alone is a delay notice too */
	dsn_free(&d);
	bi = info_for(r, 1);
	gen_parse(&d, &bi, orig_std, sizeof(orig_std) - 1);
	assert_field(&d.top, "Subject", "Delayed Mail (still being retried)");
	dsn_free(&d);
}

/* the original headers fight back */
static void
test_hostile_headers(void **state)
{
	const struct bounce_rcpt r = { .address = "bob@other.com", .status = "5.1.1",
	    .action = "failed" };
	struct bounce_info bi = info_for(&r, 1);
	char *h, *p, *flat;
	size_t hl, n;
	static const char head[] =
	    "--=_bounce.7.1700000000.0000000000000000\r\n"
	    "X-Note: =_bounce.7.1700000000.0000000000000001--\r\n"
	    "A: bare\r\nB: lf\r\n"
	    "C: nul?here\r\n"
	    "D: lone?cr\r\n"
	    "E: caf????\tend\r\n"
	    "X-Long:aaaa";
	struct dsn d;
	const char *b3;

	(void)state;
	bi.orig_mid = 7;
	h = malloc(16384);
	assert_non_null(h);
	p = h;
	/* the first two boundaries mailgate would try, one as a delimiter line */
	p += sprintf(p, "--=_bounce.7.1700000000.0000000000000000\r\n");
	p += sprintf(p, "X-Note: =_bounce.7.1700000000.0000000000000001--\r\n");
	p += sprintf(p, "A: bare\nB: lf\n");
	memcpy(p, "C: nul\0here\r\n", 13);
	p += 13;
	p += sprintf(p, "D: lone\rcr\r\n");
	p += sprintf(p, "E: caf\xc3\xa9\x7f\x01\tend\r\n");
	/* 5,000 octets without a space: cut, continued with CRLF SP */
	p += sprintf(p, "X-Long:");
	memset(p, 'a', 4993);
	p += 4993;
	p += sprintf(p, "\r\n");
	/* 3,000 octets of words: folded at spaces, unfolds to the same */
	p += sprintf(p, "X-Words:");
	for (int i = 0; i < 500; i++)
		p += sprintf(p, " w%04d", i);
	p += sprintf(p, "\r\n");
	p += sprintf(p, "Last: one\n\n");
	/* the body, which must not count (it holds the third candidate) */
	p += sprintf(p, "--=_bounce.7.1700000000.0000000000000002\r\nbody\r\n");
	hl = (size_t)(p - h);

	gen_parse(&d, &bi, h, hl);
	/* candidates 0 and 1 occur in the headers: the third one is taken */
	assert_string_equal(d.boundary, "=_bounce.7.1700000000.0000000000000002");
	assert_int_equal(d.n_parts, 3);
	assert_int_equal(d.n_rcpt, 1);
	assert_field(&d.rcpt[0], "Final-Recipient", "rfc822; bob@other.com");

	b3 = d.part[2].body;
	n = d.part[2].len;
	assert_true(n > 8000);
	/* copied as received, but CRLF, and '?' for what a 7-bit body may not hold */
	assert_true(n > sizeof(head) - 1);
	assert_memory_equal(b3, head, sizeof(head) - 1);
	assert_non_null(memmem(b3, n, "\r\nLast: one\r\n", 13));
	assert_memory_equal(b3 + n - 11, "Last: one\r\n", 11);	/* the body is not there */
	assert_null(memmem(b3, n, "body", 4));

	/* X-Long: lines of 998, and CRLF SP removed gives back the line exactly */
	{
		const char *s = memmem(b3, n, "X-Long:", 7), *e = memmem(b3, n, "X-Words:", 8);
		size_t k = 0;

		assert_non_null(s);
		assert_non_null(e);
		assert_memory_equal(s + 998, "\r\n a", 4);
		flat = malloc((size_t)(e - s) + 1);
		assert_non_null(flat);
		for (const char *q = s; q < e; q++) {
			if (q[0] == '\r' && q[1] == '\n' && q + 2 < e && q[2] == ' ') {
				q += 2;
				continue;
			}
			flat[k++] = *q;
		}
		assert_int_equal(k, 5000 + 2);
		assert_memory_equal(flat, "X-Long:aaaa", 11);
		for (size_t i = 7; i < 5000; i++)
			assert_int_equal(flat[i], 'a');
		free(flat);
	}
	/* X-Words: standard unfolding restores it */
	{
		struct fields fs;
		const char *s = memmem(b3, n, "X-Words:", 8), *e = memmem(b3, n, "Last:", 5);
		char *want = malloc(4000), *w = want;

		assert_non_null(want);
		for (int i = 0; i < 500; i++)
			w += sprintf(w, " w%04d", i);
		parse_fields(s, (size_t)(e - s), &fs);
		assert_int_equal(fs.n, 1);
		assert_string_equal(fs.f[0].value, want + 1);
		assert_true((size_t)(e - s) >= 3008 + 2 + 2 * 3);	/* it was folded */
		free_fields(&fs);
		free(want);
	}
	dsn_free(&d);
	free(h);
}

/* remote replies and addresses with CR/LF cannot start a line of their own */
static void
test_injection(void **state)
{
	char big[2100];
	const struct bounce_rcpt r[] = {
		{ .address = "bob@other.com\r\nBcc: victim@evil.example", .status = "5.1.1",
		  .action = "failed", .remote_mta = "dns; mx.other.com\r\nX-Injected: 1",
		  .diagnostic = "smtp; 550-5.1.1 first line\r\n550 5.1.1 second\r\n"
		  "Subject: pwned\r\n\r\n--=_bounce.42.1700000000.0000000000000000" },
		{ .address = "carol@other.com", .status = "5.1", .action = "failed",
		  .remote_mta = "mx.other.com", .diagnostic = "550 5.7.1 \x01nope\x7f\xff" },
		{ .address = "dave@other.com", .status = "5.1.1x", .action = "failed",
		  .diagnostic = big },
		{ .address = "erin@other.com", .status = "2.0.0", .action = "failed" },
		{ .address = "frank@other.com", .status = "5.1.1", .action = "delayed" },
		{ .address = "gina@other.com", .status = "4.4.7", .action = "failed" },
	};
	struct bounce_info bi = info_for(r, 6);
	struct dsn d;
	char *flat;

	(void)state;
	memset(big, 0, sizeof(big));
	memcpy(big, "smtp; 550", 9);
	for (size_t i = 9; i < 2000; i++)
		big[i] = i % 7 == 0 ? ' ' : 'x';
	memset(big + 1000, 'y', 1050);	/* and one word longer than a line */
	bi.orig_sender = "alice@example.org\r\nBcc: everyone@evil.example";

	gen_parse(&d, &bi, orig_std, sizeof(orig_std) - 1);
	assert_no_line_starts(d.raw, d.len, "Bcc:");
	assert_no_line_starts(d.raw, d.len, "X-Injected");
	assert_no_line_starts(d.raw, d.len, "Subject: pwned");
	assert_int_equal(field_count(&d.top, "Subject"), 1);
	assert_field(&d.top, "To", "<alice@example.org Bcc: everyone@evil.example>");
	/* the diagnostic held the first boundary candidate: another one is used */
	assert_string_not_equal(d.boundary, "=_bounce.42.1700000000.0000000000000000");
	assert_int_equal(d.n_parts, 3);
	assert_int_equal(d.n_rcpt, 6);
	assert_field(&d.rcpt[0], "Final-Recipient",
	    "rfc822; bob@other.com Bcc: victim@evil.example");
	assert_field(&d.rcpt[0], "Remote-MTA", "dns; mx.other.com X-Injected: 1");
	assert_field(&d.rcpt[0], "Diagnostic-Code", "smtp; 550-5.1.1 first line 550 5.1.1 "
	    "second Subject: pwned --=_bounce.42.1700000000.0000000000000000");
	/* a malformed status says the class; untyped values get their type */
	assert_field(&d.rcpt[1], "Status", "5.0.0");
	assert_field(&d.rcpt[1], "Remote-MTA", "dns; mx.other.com");
	assert_field(&d.rcpt[1], "Diagnostic-Code", "smtp; 550 5.7.1 ?nope??");
	assert_field(&d.rcpt[2], "Status", "5.0.0");
	assert_field(&d.rcpt[3], "Status", "5.0.0");	/* "failed" is not a success */
	assert_field(&d.rcpt[4], "Status", "4.0.0");	/* "delayed" is not permanent */
	assert_field(&d.rcpt[5], "Status", "4.4.7");	/* ran out of time on 4xx: as given */
	/* the long one is folded within 998 (check_wire) and keeps every word */
	{
		const char *v = field_get(&d.rcpt[2], "Diagnostic-Code");
		size_t k = 0;

		assert_non_null(v);
		flat = malloc(strlen(v) + 1);
		assert_non_null(flat);
		for (const char *q = v; *q != '\0'; q++)
			if (*q != ' ')
				flat[k++] = *q;
		flat[k] = '\0';
		assert_true(k > 1900);
		assert_non_null(strstr(flat, "yyyyyyyyyy"));
		assert_true(strspn(strstr(flat, "y"), "y") == 1050);
		free(flat);
	}
	assert_text(&d, "answered: 550-5.1.1 first line 550 5.1.1 second Subject: pwned");
	assert_text(&d, "The server mx.other.com answered: 550 5.7.1 ?nope??");
	dsn_free(&d);
}

static void
test_refusals(void **state)
{
	struct bounce_rcpt r = rcpt_bob;
	struct bounce_info bi = info_for(&r, 1);
	char *out;
	size_t len;

	(void)state;
	/* never a DSN for a null sender */
	bi.orig_sender = "";
	assert_int_equal(gen(&bi, orig_std, sizeof(orig_std) - 1, &out, &len), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(len, 0);
	free(out);
	bi.orig_sender = NULL;
	assert_int_equal(gen(&bi, orig_std, sizeof(orig_std) - 1, &out, &len), -1);
	assert_int_equal(errno, EINVAL);
	free(out);

	bi = info_for(&r, 0);
	assert_int_equal(gen(&bi, NULL, 0, &out, &len), -1);
	assert_int_equal(errno, EINVAL);
	free(out);

	bi = info_for(&r, 1);
	r.action = "delivered";
	assert_int_equal(gen(&bi, NULL, 0, &out, &len), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(len, 0);
	free(out);
	r = rcpt_bob;
	r.address = "";
	assert_int_equal(gen(&bi, NULL, 0, &out, &len), -1);
	assert_int_equal(errno, EINVAL);
	free(out);
	r = rcpt_bob;
	bi.hostname = "mx.example.com\r\nX: y";
	assert_int_equal(gen(&bi, NULL, 0, &out, &len), -1);
	assert_int_equal(errno, EINVAL);
	free(out);
	bi.hostname = "";
	assert_int_equal(gen(&bi, NULL, 0, &out, &len), -1);
	assert_int_equal(errno, EINVAL);
	free(out);
	assert_int_equal(bounce_write(NULL, &bi, NULL, 0), -1);
}

static void
test_no_headers_and_unique_ids(void **state)
{
	struct bounce_info bi = info_for(&rcpt_bob, 1);
	struct dsn a, b;

	(void)state;
	/* nothing to return: the optional third part is left out (RFC 6522 3) */
	gen_parse(&a, &bi, NULL, 0);
	assert_int_equal(a.n_parts, 2);
	assert_int_equal(a.n_rcpt, 1);
	/* the same message bounced twice in one second: two Message-IDs */
	gen_parse(&b, &bi, "", 0);
	assert_int_equal(b.n_parts, 2);
	assert_string_not_equal(field_get(&a.top, "Message-ID"), field_get(&b.top, "Message-ID"));
	dsn_free(&a);
	dsn_free(&b);

	/* a header section that is only its empty line: nothing to return either */
	gen_parse(&a, &bi, "\r\nbody\r\n", 8);
	assert_int_equal(a.n_parts, 2);
	dsn_free(&a);
	/* no arrival, no last attempt: those fields are left out */
	bi.arrival = 0;
	{
		struct bounce_rcpt r = rcpt_bob;

		r.last_attempt = 0;
		bi.rcpts = &r;
		gen_parse(&a, &bi, orig_std, sizeof(orig_std) - 1);
		assert_null(field_get(&a.per_msg, "Arrival-Date"));
		assert_null(field_get(&a.rcpt[0], "Last-Attempt-Date"));
		dsn_free(&a);
	}
}

static void
test_long_values_fold(void **state)
{
	char addr[1500];
	struct bounce_rcpt r = rcpt_bob;
	struct bounce_info bi = info_for(&r, 1);
	struct dsn d;

	(void)state;
	memset(addr, 'l', sizeof(addr));
	memcpy(addr + sizeof(addr) - 12, "@example.com", 12);
	addr[sizeof(addr) - 1] = '\0';
	r.address = addr;
	bi.orig_sender = addr;
	gen_parse(&d, &bi, orig_std, sizeof(orig_std) - 1);	/* check_wire: <= 998 */
	/* cut, continued with a space: the only change */
	{
		const char *v = field_get(&d.rcpt[0], "Final-Recipient");
		char *nospace = strdup(v);
		size_t k = 0;

		assert_non_null(nospace);
		for (const char *q = v; *q != '\0'; q++)
			if (*q != ' ')
				nospace[k++] = *q;
		nospace[k] = '\0';
		assert_true(strncmp(nospace, "rfc822;", 7) == 0);
		assert_string_equal(nospace + 7, addr);
		free(nospace);
	}
	{
		const char *v = field_get(&d.top, "To");
		size_t k = 0;
		char *nospace;

		assert_non_null(v);
		nospace = strdup(v);
		assert_non_null(nospace);
		for (const char *q = v; *q != '\0'; q++)
			if (*q != ' ')
				nospace[k++] = *q;
		nospace[k] = '\0';
		assert_int_equal(k, strlen(addr) + 2);
		assert_int_equal(nospace[0], '<');
		assert_memory_equal(nospace + 1, addr, strlen(addr));
		free(nospace);
	}
	dsn_free(&d);
}

/* a stream that fails: -1 and the stream's errno */
static void
test_write_error(void **state)
{
	struct bounce_info bi = info_for(&rcpt_bob, 1);
	FILE *f;

	(void)state;
	if ((f = fopen("/dev/full", "w")) == NULL)
		skip();
	assert_int_equal(bounce_write(f, &bi, orig_std, sizeof(orig_std) - 1), -1);
	assert_int_equal(errno, ENOSPC);
	fclose(f);
}

/* ---- bounce_read_headers on spool files ---- */

struct spoolfile {
	char path[64];
	struct spool_entry e;
};

/* a queue file as spool.c writes it: envelope, blank line, the message */
static void
spool_write(struct spoolfile *sf, const char *msg, size_t len)
{
	static const char env[] =
	    "mailgate-spool 1\n"
	    "mid 42\n"
	    "arrival 2023-11-14T19:26:40Z\n"
	    "icid 5\n"
	    "listener default\n"
	    "client 127.0.0.1\n"
	    "helo client.example\n"
	    "sender <alice@example.org>\n"
	    "rcpt 0 <bob@other.com>\n"
	    "\n";
	char err[128];
	FILE *f;
	int fd;

	snprintf(sf->path, sizeof(sf->path), "/tmp/test_bounce.XXXXXX");
	fd = mkstemp(sf->path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(env, 1, sizeof(env) - 1, f), sizeof(env) - 1);
	if (len > 0)
		assert_int_equal(fwrite(msg, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	if (spool_entry_read(sf->path, &sf->e, err, sizeof(err)) == -1)
		fail_msg("spool_entry_read: %s", err);
	assert_int_equal(sf->e.data_offset, (long)sizeof(env) - 1);
	assert_int_equal(sf->e.size, len);
}

static void
spool_done(struct spoolfile *sf)
{
	spool_entry_free(&sf->e);
	unlink(sf->path);
}

/* read with cap, compare with want (len wl) */
static void
assert_read(const char *msg, size_t len, size_t cap, const char *want, size_t wl)
{
	struct spoolfile sf;
	size_t got;
	char *h;

	spool_write(&sf, msg, len);
	h = bounce_read_headers(sf.path, sf.e.data_offset, cap, &got);
	assert_non_null(h);
	assert_int_equal(got, wl);
	assert_memory_equal(h, want, wl);
	assert_int_equal(h[got], '\0');
	free(h);
	spool_done(&sf);
}

static void
test_read_headers(void **state)
{
	static const char nobody[] = "Subject: x\r\nFrom: <a@b>\r\n\r\n";
	static const char noblank[] = "Subject: x\r\nFrom: <a@b>\r\n";
	static const char unterminated[] = "Subject: x\r\nFrom: <a@b>";
	static const char lf[] = "Subject: x\nFrom: <a@b>\n\nbody\n";
	static const char lines[] = "A: 123456\r\nB: 123456\r\nC: 123456\r\n\r\nbody\r\n";
	size_t got;

	(void)state;
	/* a message with a body: through the empty line */
	assert_read(orig_std, sizeof(orig_std) - 1, BOUNCE_HEADERS_MAX, orig_std,
	    orig_std_hdr_len() + 2);
	/* no body after the empty line, no empty line at all, not even a last LF */
	assert_read(nobody, sizeof(nobody) - 1, BOUNCE_HEADERS_MAX, nobody, sizeof(nobody) - 1);
	assert_read(noblank, sizeof(noblank) - 1, BOUNCE_HEADERS_MAX, noblank,
	    sizeof(noblank) - 1);
	assert_read(unterminated, sizeof(unterminated) - 1, BOUNCE_HEADERS_MAX, unterminated,
	    sizeof(unterminated) - 1);
	/* bare LF line ends (bare_crlf = accept) */
	assert_read(lf, sizeof(lf) - 1, BOUNCE_HEADERS_MAX, lf, 24);
	/* an empty message */
	assert_read("", 0, BOUNCE_HEADERS_MAX, "", 0);
	/* the cap: whole lines only (each is 11 octets) */
	assert_read(lines, sizeof(lines) - 1, 30, lines, 22);
	assert_read(lines, sizeof(lines) - 1, 33, lines, 33);
	assert_read(lines, sizeof(lines) - 1, 34, lines, 33);	/* the empty line does not fit */
	assert_read(lines, sizeof(lines) - 1, 35, lines, 35);
	/* not even one line fits: cap octets */
	assert_read(lines, sizeof(lines) - 1, 5, lines, 5);
	/* exactly the header lines and no more in the file: all of them */
	assert_read(noblank, sizeof(noblank) - 1, sizeof(noblank) - 1, noblank,
	    sizeof(noblank) - 1);

	/* no such file; bad arguments */
	assert_null(bounce_read_headers("/nonexistent/queue/1", 0, 100, &got));
	assert_int_equal(errno, ENOENT);
	assert_null(bounce_read_headers("/dev/null", -1, 100, &got));
	assert_int_equal(errno, EINVAL);
}

/* a big header section from the spool, capped, becomes part 3 */
static void
test_read_then_write(void **state)
{
	struct bounce_info bi = info_for(&rcpt_bob, 1);
	struct spoolfile sf;
	struct dsn d;
	char *msg, *p, *h;
	size_t len, hl;

	(void)state;
	msg = malloc(200000);
	assert_non_null(msg);
	p = msg;
	for (int i = 0; i < 2000; i++)
		p += sprintf(p, "X-Filler-%04d: %s\r\n", i, "0123456789012345678901234567890123456789");
	p += sprintf(p, "\r\nbody\r\n");
	len = (size_t)(p - msg);
	spool_write(&sf, msg, len);
	h = bounce_read_headers(sf.path, sf.e.data_offset, BOUNCE_HEADERS_MAX, &hl);
	assert_non_null(h);
	assert_true(hl <= BOUNCE_HEADERS_MAX);
	assert_true(hl > BOUNCE_HEADERS_MAX - 100);
	assert_memory_equal(h + hl - 2, "\r\n", 2);
	gen_parse(&d, &bi, h, hl);
	assert_int_equal(d.part[2].len, hl);
	assert_memory_equal(d.part[2].body, msg, hl);
	dsn_free(&d);
	free(h);
	free(msg);
	spool_done(&sf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_failed),
		cmocka_unit_test(test_several),
		cmocka_unit_test(test_all_delayed),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_injection),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_no_headers_and_unique_ids),
		cmocka_unit_test(test_long_values_fold),
		cmocka_unit_test(test_write_error),
		cmocka_unit_test(test_read_headers),
		cmocka_unit_test(test_read_then_write),
	};

	/* dates in the DSN are local time: make them +0000 here */
	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
