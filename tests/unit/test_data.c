/*
 * test_data.c: the end-of-data machine of data.c against the attacks of
 * spec/hostile.md 1-3 and 7: every fake end of data of SMTP smuggling, limits
 * hit mid-message, dot lines at every buffer edge. Every input is fed three
 * ways (one call, one byte per call, random splits with a fixed seed) and the
 * three must agree byte for byte. A naive reference model, written from the
 * rules and not from data.c, is the oracle for generated inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data.h"

#define S(lit)	(lit), (sizeof(lit) - 1)

/* ---- a sink that keeps everything ---- */

struct sinkbuf {
	char *p;
	size_t len, cap;
	unsigned calls;
	unsigned fail_at;		/* this call (1-based) returns -1; 0: never */
};

static int
sink(void *arg, const char *buf, size_t len)
{
	struct sinkbuf *s = arg;

	s->calls++;
	assert_true(len > 0);
	if (s->fail_at != 0 && s->calls >= s->fail_at)
		return -1;
	if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 256;
		while (cap < s->len + len)
			cap *= 2;
		s->p = realloc(s->p, cap);
		assert_non_null(s->p);
		s->cap = cap;
	}
	memcpy(s->p + s->len, buf, len);
	s->len += len;
	return 0;
}

/* ---- feeding ---- */

enum mode { ONE, BYTES, SPLITS };

struct result {
	struct data_filter f;
	struct sinkbuf out;
	size_t consumed;
};

static uint32_t
rnd(uint32_t *s)
{
	/* xorshift32: a fixed, portable sequence */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
run(const char *in, size_t len, const struct data_limits *lim, enum mode m, uint32_t seed,
    unsigned fail_at, struct result *r)
{
	size_t i = 0;

	memset(&r->out, 0, sizeof(r->out));
	r->out.fail_at = fail_at;
	r->consumed = 0;
	data_filter_init(&r->f, lim, sink, &r->out);
	if (m == ONE) {
		r->consumed = data_filter_feed(&r->f, in, len);
		assert_true(r->consumed == len || r->f.done);
		return;
	}
	while (i < len && !r->f.done) {
		size_t chunk = 1, n;
		if (m == SPLITS) {
			uint32_t x = rnd(&seed);
			/* mostly small pieces, some larger than the output buffer */
			chunk = 1 + (x >> 8) % ((x & 3) == 0 ? 9000 : 17);
			if (chunk > len - i)
				chunk = len - i;
		}
		n = data_filter_feed(&r->f, in + i, chunk);
		assert_true(n == chunk || (r->f.done && n < chunk) || (r->f.done && n == chunk));
		r->consumed += n;
		i += n;
	}
}

static void
same(const struct result *a, const struct result *b, const char *what)
{
	if (a->out.len != b->out.len || (a->out.len && memcmp(a->out.p, b->out.p, a->out.len)))
		fail_msg("%s: output differs (%zu vs %zu bytes)", what, a->out.len, b->out.len);
	if (a->consumed != b->consumed)
		fail_msg("%s: consumed %zu vs %zu", what, a->consumed, b->consumed);
#define SAME(x) do {							\
	if (a->f.x != b->f.x)						\
		fail_msg("%s: " #x " %llu vs %llu", what,		\
		    (unsigned long long)a->f.x, (unsigned long long)b->f.x);	\
} while (0)
	SAME(done);
	SAME(too_big);
	SAME(too_many_headers);
	SAME(bare_cr);
	SAME(bare_lf);
	SAME(sink_failed);
	SAME(size);
	SAME(header_lines);
	SAME(received);
	SAME(have_subject);
	SAME(have_message_id);
#undef SAME
	if (strcmp(a->f.subject, b->f.subject) != 0 ||
	    strcmp(a->f.message_id, b->f.message_id) != 0)
		fail_msg("%s: captures differ", what);
}

/* the same input three ways; returns the one-call result (free r->out.p) */
static void
run3(const char *in, size_t len, const struct data_limits *lim, uint32_t seed, struct result *r)
{
	struct result *b = malloc(sizeof(*b)), *c = malloc(sizeof(*c));

	assert_non_null(b);
	assert_non_null(c);
	run(in, len, lim, ONE, 0, 0, r);
	run(in, len, lim, BYTES, 0, 0, b);
	run(in, len, lim, SPLITS, seed, 0, c);
	same(r, b, "one call vs byte by byte");
	same(r, c, "one call vs random splits");
	free(b->out.p);
	free(c->out.p);
	free(b);
	free(c);
}

static void
output_is(const struct result *r, const char *want, size_t wlen)
{
	if (r->out.len != wlen || (wlen > 0 && memcmp(r->out.p, want, wlen) != 0)) {
		size_t k = 0;
		while (k < wlen && k < r->out.len && r->out.p[k] == want[k])
			k++;
		fail_msg("output of %zu bytes, want %zu; first difference at %zu", r->out.len,
		    wlen, k);
	}
}

/* ---- the reference model: the rules, naively, on a whole input ---- */

struct ref {
	char *out;
	size_t len;
	size_t consumed;
	bool done, bare_cr, bare_lf;
	unsigned header_lines, received;
	size_t hdr_end[64 * 1024];	/* output offset where header line k+1 starts */
	char subject[DATA_CAPTURE_MAX + 1];
	bool have_subject;
};

static bool
starts_ci(const char *p, size_t len, const char *s)
{
	size_t n = strlen(s);

	if (len < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != s[i])
			return false;
	}
	return true;
}

static void
reference(const char *in, size_t len, struct ref *r)
{
	size_t i = 0, o = 0, ls, cap = 0;
	bool bol = true, inhdr = true, capturing = false;

	r->out = malloc(len + 1);
	assert_non_null(r->out);
	r->done = r->bare_cr = r->bare_lf = false;
	r->header_lines = r->received = 0;
	r->have_subject = false;
	r->subject[0] = '\0';
	r->consumed = len;
	while (i < len) {
		if (bol && in[i] == '.') {
			if (i + 2 < len + 0 && in[i + 1] == '\r' && in[i + 2] == '\n') {
				r->done = true;
				r->consumed = i + 3;
				break;
			}
			i++;			/* the stuffed dot */
			if (i == len)
				break;
		}
		char c = in[i];
		if (c == '\r' && !(i + 1 < len && in[i + 1] == '\n'))
			r->bare_cr = true;
		if (c == '\n' && !(i > 0 && in[i - 1] == '\r'))
			r->bare_lf = true;
		bol = c == '\n' && i > 0 && in[i - 1] == '\r';
		r->out[o++] = c;
		i++;
	}
	r->len = o;

	/* the header section: CRLF-ended lines of the output before the first empty one */
	for (ls = 0; ls < r->len && inhdr;) {
		size_t le = ls;
		while (le + 1 < r->len && !(r->out[le] == '\r' && r->out[le + 1] == '\n'))
			le++;
		if (le + 1 >= r->len)
			le = r->len;		/* no CRLF left: the rest is one line */
		if (le == ls && le < r->len) {
			inhdr = false;		/* the empty line */
			break;
		}
		if (r->header_lines < sizeof(r->hdr_end) / sizeof(r->hdr_end[0]))
			r->hdr_end[r->header_lines] = ls;
		r->header_lines++;
		const char *l = r->out + ls;
		size_t ll = le - ls, v = 0;
		bool cont = ll > 0 && (l[0] == ' ' || l[0] == '\t');
		if (!cont)
			capturing = false;
		if (!cont && starts_ci(l, ll, "received:"))
			r->received++;
		if (!cont && !r->have_subject && starts_ci(l, ll, "subject:")) {
			r->have_subject = true;
			capturing = true;
			v = 8;
		}
		if (capturing) {
			for (; v < ll; v++) {
				if (cap == 0 && (l[v] == ' ' || l[v] == '\t'))
					continue;
				if (cap < DATA_CAPTURE_MAX)
					r->subject[cap++] = l[v] ? l[v] : '?';
			}
			r->subject[cap] = '\0';
		}
		ls = le + 2;
	}
}

/* a result must agree with the reference (with no limits hit) */
static void
matches_ref(const struct result *res, const struct ref *ref)
{
	output_is(res, ref->out, ref->len);
	assert_int_equal(res->consumed, ref->consumed);
	assert_int_equal(res->f.done, ref->done);
	assert_int_equal(res->f.size, ref->len);
	if (ref->done) {
		/* a CR last in a truncated input is not known to be bare yet */
		assert_int_equal(res->f.bare_cr, ref->bare_cr);
		assert_int_equal(res->f.header_lines, ref->header_lines);
		assert_int_equal(res->f.received, ref->received);
		assert_int_equal(res->f.have_subject, ref->have_subject);
		assert_string_equal(res->f.subject, ref->subject);
	}
	assert_int_equal(res->f.bare_lf, ref->bare_lf);
}

/* ---- hostile.md 1: SMTP smuggling ---- */

static const struct fake {
	const char *in;
	size_t len;
	const char *out;		/* what the fake turns into as data */
	size_t outlen;
	bool bare_cr, bare_lf;
} fakes[] = {
	{ S("\n.\n"), S("\n.\n"), false, true },
	{ S("\n.\r\n"), S("\n.\r\n"), false, true },
	{ S("\r.\r"), S("\r.\r"), true, false },
	{ S("\r.\n"), S("\r.\n"), true, true },
	{ S("\r\n.\n"), S("\r\n\n"), false, true },
	{ S("\r\n.\r"), S("\r\n\r"), true, false },
	{ S("\r\n\0.\r\n"), S("\r\n\0.\r\n"), false, false },
	{ S("\r\n.\r\r\n"), S("\r\n\r\r\n"), true, false },
	{ S("\n\n.\n\n"), S("\n\n.\n\n"), false, true },
	{ S("\r\r.\r\r"), S("\r\r.\r\r"), true, false },
	{ S("\r\n .\r\n"), S("\r\n .\r\n"), false, false },
	{ S("\r\n.\0\r\n"), S("\r\n\0\r\n"), false, false },
	{ S("\r\n..\r\n"), S("\r\n.\r\n"), false, false },
	{ S("\n\r\n.\n"), S("\n\r\n\n"), false, true },
	{ S("\r\n\xef\xbb\xbf.\r\n"), S("\r\n\xef\xbb\xbf.\r\n"), false, false },
	{ S("\r\n.\t\r\n"), S("\r\n\t\r\n"), false, false },
	{ S("\r\n.\r\n\r"), NULL, 0, false, false },	/* the real end: not a fake */
};

static const char second[] = "MAIL FROM:<evil@attacker.example>\r\n"
    "RCPT TO:<victim@example.com>\r\nDATA\r\nFrom: ceo@example.com\r\n\r\nsmuggled";
static const char real_end[] = "\r\n.\r\n";
static const char after[] = "QUIT\r\n";

static void
test_smuggling(void **state)
{
	static const char *prefixes[] = { "Subject: s\r\n\r\nbody", "Subject: s", "" };
	char in[1024], want[1024];

	(void)state;
	for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
		for (size_t k = 0; fakes[k].out != NULL; k++) {
			const struct fake *fk = &fakes[k];
			size_t n = 0, w = 0, plen = strlen(prefixes[p]);
			struct result r;

			memcpy(in + n, prefixes[p], plen);
			n += plen;
			memcpy(in + n, fk->in, fk->len);
			n += fk->len;
			memcpy(in + n, second, sizeof(second) - 1);
			n += sizeof(second) - 1;
			memcpy(in + n, real_end, sizeof(real_end) - 1);
			n += sizeof(real_end) - 1;
			memcpy(in + n, after, sizeof(after) - 1);
			n += sizeof(after) - 1;

			memcpy(want + w, prefixes[p], plen);
			w += plen;
			memcpy(want + w, fk->out, fk->outlen);
			w += fk->outlen;
			memcpy(want + w, second, sizeof(second) - 1);
			w += sizeof(second) - 1;
			memcpy(want + w, "\r\n", 2);
			w += 2;

			run3(in, n, NULL, (uint32_t)(k * 7919 + p + 1), &r);
			if (!r.f.done || r.consumed != n - (sizeof(after) - 1))
				fail_msg("prefix %zu fake %zu: done %d consumed %zu of %zu", p, k,
				    r.f.done, r.consumed, n);
			output_is(&r, want, w);
			if (r.f.bare_cr != fk->bare_cr || r.f.bare_lf != fk->bare_lf)
				fail_msg("prefix %zu fake %zu: bare_cr %d bare_lf %d", p, k,
				    r.f.bare_cr, r.f.bare_lf);
			assert_int_equal(r.f.size, w);
			free(r.out.p);

			/* everything but the last LF of the real end: not done, all consumed */
			run(in, n - (sizeof(after) - 1) - 1, NULL, BYTES, 0, 0, &r);
			assert_false(r.f.done);
			assert_int_equal(r.consumed, n - (sizeof(after) - 1) - 1);
			free(r.out.p);
		}
	}
}

/* a fake end of data is never an end, however many follow */
static void
test_smuggling_all_at_once(void **state)
{
	char in[4096];
	size_t n = 0;
	struct result r;

	(void)state;
	memcpy(in, "Subject: x\r\n\r\n", 14);
	n = 14;
	for (size_t k = 0; fakes[k].out != NULL; k++) {
		memcpy(in + n, "line", 4);
		n += 4;
		memcpy(in + n, fakes[k].in, fakes[k].len);
		n += fakes[k].len;
		memcpy(in + n, second, sizeof(second) - 1);
		n += sizeof(second) - 1;
	}
	memcpy(in + n, "\r\n.\r\nRSET\r\n", 11);
	n += 11;
	run3(in, n, NULL, 99, &r);
	assert_true(r.f.done);
	assert_int_equal(r.consumed, n - 6);
	assert_true(r.f.bare_cr);
	assert_true(r.f.bare_lf);
	free(r.out.p);
}

/* ---- hostile.md 3: dot lines ---- */

static void
test_dot_unstuffing(void **state)
{
	static const char in[] = "A: b\r\n\r\n..x\r\n.y\r\n...\r\n..\r\nz.\r\n. \r\n.\r\nNEXT";
	static const char want[] = "A: b\r\n\r\n.x\r\ny\r\n..\r\n.\r\nz.\r\n \r\n";
	struct result r;

	(void)state;
	run3(in, sizeof(in) - 1, NULL, 5, &r);
	assert_true(r.f.done);
	output_is(&r, want, sizeof(want) - 1);
	assert_int_equal(r.consumed, sizeof(in) - 1 - 4);
	assert_int_equal(r.f.size, sizeof(want) - 1);
	assert_false(r.f.bare_cr);
	assert_false(r.f.bare_lf);
	free(r.out.p);

	/* a stuffed dot in the header section is gone before the header is read */
	static const char in2[] = ".Subject: hi\r\n..Received: x\r\n.\r\n";
	run3(in2, sizeof(in2) - 1, NULL, 6, &r);
	output_is(&r, S("Subject: hi\r\n.Received: x\r\n"));
	assert_string_equal(r.f.subject, "hi");
	assert_int_equal(r.f.received, 0);
	assert_int_equal(r.f.header_lines, 2);
	free(r.out.p);
}

static void
test_empty_message(void **state)
{
	struct result r;

	(void)state;
	run3(S(".\r\nQUIT\r\n"), NULL, 1, &r);
	assert_true(r.f.done);
	assert_int_equal(r.consumed, 3);
	assert_int_equal(r.out.len, 0);
	assert_int_equal(r.out.calls, 0);
	assert_int_equal(r.f.size, 0);
	assert_int_equal(r.f.header_lines, 0);
	assert_false(r.f.have_subject);
	assert_string_equal(r.f.subject, "");
	free(r.out.p);

	/* an empty line then the end: the message is that CRLF */
	run3(S("\r\n.\r\n"), NULL, 2, &r);
	assert_true(r.f.done);
	output_is(&r, S("\r\n"));
	assert_int_equal(r.f.header_lines, 0);
	free(r.out.p);

	/* ".\n" first is no end */
	run3(S(".\n.\r\n"), NULL, 3, &r);
	assert_false(r.f.done);
	output_is(&r, S(""));	/* nothing is flushed before the end */
	assert_int_equal(r.f.size, 4);
	assert_true(r.f.bare_lf);
	assert_int_equal(r.consumed, 5);
	free(r.out.p);
}

static void
test_header_only(void **state)
{
	static const char in[] = "Subject: x\r\nFrom: y\r\nTo: z\r\n.\r\n";
	struct result r;

	(void)state;
	run3(in, sizeof(in) - 1, NULL, 4, &r);
	assert_true(r.f.done);
	output_is(&r, S("Subject: x\r\nFrom: y\r\nTo: z\r\n"));
	assert_int_equal(r.f.header_lines, 3);
	assert_string_equal(r.f.subject, "x");
	assert_int_equal(r.consumed, sizeof(in) - 1);
	free(r.out.p);
}

/* NUL and 8-bit pass through byte for byte (hostile.md 9) */
static void
test_binary(void **state)
{
	char in[600], want[600];
	size_t n = 0, w = 0;
	struct result r;

	(void)state;
	memcpy(in, "X: \0\xff\r\n\r\n", 9);
	memcpy(want, in, 9);
	n = w = 9;
	for (int c = 0; c < 256; c++) {
		if (c == '\r' || c == '\n')
			continue;
		in[n++] = (char)c;
		want[w++] = (char)c;
	}
	memcpy(in + n, "\r\n.\r\n", 5);
	n += 5;
	memcpy(want + w, "\r\n", 2);
	w += 2;
	run3(in, n, NULL, 8, &r);
	assert_true(r.f.done);
	output_is(&r, want, w);
	assert_false(r.f.bare_cr);
	assert_false(r.f.bare_lf);
	assert_int_equal(r.f.header_lines, 1);
	free(r.out.p);
}

/* ---- headers ---- */

static void
test_capture(void **state)
{
	static const char in[] =
	    "Subject:   Hello\r\n world\r\n\tagain\r\n"
	    "Message-ID: <id@x>\r\n"
	    "subject: second\r\n"
	    "\r\n"
	    "Subject: body\r\n.\r\n";
	struct result r;

	(void)state;
	run3(in, sizeof(in) - 1, NULL, 10, &r);
	assert_true(r.f.done);
	assert_true(r.f.have_subject);
	assert_true(r.f.have_message_id);
	assert_string_equal(r.f.subject, "Hello world\tagain");
	assert_string_equal(r.f.message_id, "<id@x>");
	assert_int_equal(r.f.header_lines, 5);
	free(r.out.p);

	/* an empty first line of a folded value; NUL shown as '?'; names any case */
	run3(S("SUBJECT:\r\n  folded \r\n  more\r\nmessage-id:<a\0b>\r\n\r\n.\r\n"), NULL, 11,
	    &r);
	assert_string_equal(r.f.subject, "folded   more");
	assert_string_equal(r.f.message_id, "<a?b>");
	assert_int_equal(r.f.header_lines, 4);
	free(r.out.p);

	/* not these: a space before the colon, a longer name, a body line */
	run3(S("Subject : no\r\nX-Subject: no\r\nSubjects: no\r\n\r\nSubject: no\r\n.\r\n"),
	    NULL, 12, &r);
	assert_false(r.f.have_subject);
	assert_string_equal(r.f.subject, "");
	assert_int_equal(r.f.header_lines, 3);
	free(r.out.p);

	/* an empty value is still a Subject: header */
	run3(S("Subject:\r\nTo: x\r\n.\r\n"), NULL, 13, &r);
	assert_true(r.f.have_subject);
	assert_string_equal(r.f.subject, "");
	free(r.out.p);

	/* a bare CR or LF inside a value is kept (the log escapes it) */
	run3(S("Subject: a\rb\nc\r\n.\r\n"), NULL, 14, &r);
	assert_string_equal(r.f.subject, "a\rb\nc");
	assert_true(r.f.bare_cr);
	assert_true(r.f.bare_lf);
	assert_int_equal(r.f.header_lines, 1);
	free(r.out.p);

	/* the capture stops at DATA_CAPTURE_MAX; the rest still goes to the sink */
	{
		size_t n = 9 + 5000 + 5;
		char *in2 = malloc(n);
		assert_non_null(in2);
		memcpy(in2, "Subject: ", 9);
		for (size_t i = 0; i < 5000; i++)
			in2[9 + i] = (char)('a' + i % 26);
		memcpy(in2 + 9 + 5000, "\r\n.\r\n", 5);
		run3(in2, n, NULL, 15, &r);
		assert_int_equal(strlen(r.f.subject), DATA_CAPTURE_MAX);
		assert_memory_equal(r.f.subject, in2 + 9, DATA_CAPTURE_MAX);
		output_is(&r, in2, n - 3);
		free(r.out.p);
		free(in2);
	}

	/* a folded Subject after another header that was captured keeps to itself */
	run3(S("Message-ID: <m>\r\n x\r\nSubject: s\r\n y\r\nFoo: z\r\n w\r\n.\r\n"), NULL, 16,
	    &r);
	assert_string_equal(r.f.message_id, "<m> x");
	assert_string_equal(r.f.subject, "s y");
	free(r.out.p);
}

static void
test_header_counts(void **state)
{
	static const char in[] =
	    "Received: a\r\n"
	    "received: b\r\n"
	    "RECEIVED:c\r\n"
	    " Received: a continuation\r\n"
	    "X-Received: d\r\n"
	    "Received : e\r\n"
	    "\r\n"
	    "Received: in the body\r\n"
	    "\r\n"
	    "Received: still the body\r\n.\r\n";
	struct result r;

	(void)state;
	run3(in, sizeof(in) - 1, NULL, 20, &r);
	assert_int_equal(r.f.received, 3);
	assert_int_equal(r.f.header_lines, 6);
	free(r.out.p);

	/* a header line that starts with a bare CR is a line, not the end of headers */
	run3(S("A: b\r\n\rX: y\r\nReceived: z\r\n\r\nbody\r\n.\r\n"), NULL, 21, &r);
	assert_int_equal(r.f.header_lines, 3);
	assert_int_equal(r.f.received, 1);
	assert_true(r.f.bare_cr);
	output_is(&r, S("A: b\r\n\rX: y\r\nReceived: z\r\n\r\nbody\r\n"));
	free(r.out.p);

	/* a bare LF does not start a line: this Received: hides in the Subject line */
	run3(S("Subject: a\nReceived: x\r\n.\r\n"), NULL, 22, &r);
	assert_int_equal(r.f.header_lines, 1);
	assert_int_equal(r.f.received, 0);
	free(r.out.p);
}

/* ---- hostile.md 2 and 7: limits, then keep reading ---- */

static void
test_size_limit(void **state)
{
	struct data_limits lim = { .max_size = 100 };
	char *in = malloc(20000), *want = malloc(20000);
	size_t n = 0, w = 0, body;
	struct result r;

	(void)state;
	assert_non_null(in);
	assert_non_null(want);
	memcpy(in, "Subject: big\r\n\r\n", 16);
	memcpy(want, in, 16);
	n = w = 16;
	for (int l = 0; l < 150; l++) {
		/* lines that look like commands must stay data after the limit */
		n += (size_t)snprintf(in + n, 20000 - n, "%sRCPT TO:<x%d@y>\r\n",
		    l % 3 == 0 ? "." : "", l);
		w += (size_t)snprintf(want + w, 20000 - w, "RCPT TO:<x%d@y>\r\n", l);
	}
	body = n;
	memcpy(in + n, ".\r\nQUIT\r\n", 9);
	n += 9;

	run3(in, n, &lim, 30, &r);
	assert_true(r.f.done);
	assert_true(r.f.too_big);
	assert_int_equal(r.consumed, n - 6);
	output_is(&r, want, 100);
	assert_int_equal(r.f.size, body - 50);		/* 50 stuffed dots removed */
	assert_int_equal(r.f.size, w);
	free(r.out.p);

	/* exactly the limit is fine; one more octet is not */
	lim.max_size = body - 50;
	run3(in, n, &lim, 31, &r);
	assert_false(r.f.too_big);
	output_is(&r, want, w);
	free(r.out.p);
	lim.max_size = body - 51;
	run3(in, n, &lim, 32, &r);
	assert_true(r.f.too_big);
	output_is(&r, want, w - 1);
	assert_true(r.f.done);
	free(r.out.p);

	/* a limit of 1 on a 1 MiB line with no newline, then the end */
	{
		size_t big = 1 << 20;
		char *b = malloc(big + 5);
		assert_non_null(b);
		memset(b, 'x', big);
		memcpy(b + big, "\r\n.\r\n", 5);
		lim.max_size = 1;
		run3(b, big + 5, &lim, 33, &r);
		assert_true(r.f.too_big);
		assert_true(r.f.done);
		assert_int_equal(r.out.len, 1);
		assert_int_equal(r.f.size, big + 2);
		free(r.out.p);
		free(b);
	}
	free(want);
	free(in);
}

static void
test_header_limit(void **state)
{
	static const char in[] = "A: 1\r\nB: 2\r\n 2b\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\nbody\r\n.\r\nQUIT\r\n";
	struct data_limits lim = { .max_header_lines = 3 };
	struct result r;

	(void)state;
	run3(in, sizeof(in) - 1, &lim, 40, &r);
	assert_true(r.f.done);
	assert_true(r.f.too_many_headers);
	assert_false(r.f.too_big);
	output_is(&r, S("A: 1\r\nB: 2\r\n 2b\r\n"));
	assert_int_equal(r.f.header_lines, 6);
	assert_int_equal(r.consumed, sizeof(in) - 1 - 6);
	assert_int_equal(r.f.size, sizeof(in) - 1 - 6 - 3);
	free(r.out.p);

	lim.max_header_lines = 6;
	run3(in, sizeof(in) - 1, &lim, 41, &r);
	assert_false(r.f.too_many_headers);
	assert_int_equal(r.out.len, sizeof(in) - 1 - 9);
	free(r.out.p);

	/* the line past the limit starts with a stuffed dot, a bare CR, a space */
	lim.max_header_lines = 1;
	run3(S("A: 1\r\n.B: 2\r\n.\r\n"), &lim, 42, &r);
	assert_true(r.f.too_many_headers);
	output_is(&r, S("A: 1\r\n"));
	free(r.out.p);
	run3(S("A: 1\r\n\rB: 2\r\n.\r\n"), &lim, 43, &r);
	assert_true(r.f.too_many_headers);
	output_is(&r, S("A: 1\r\n"));
	free(r.out.p);
	run3(S("A: 1\r\n.\rB: 2\r\n.\r\n"), &lim, 44, &r);
	assert_true(r.f.too_many_headers);
	output_is(&r, S("A: 1\r\n"));
	free(r.out.p);
	run3(S("A: 1\r\n more\r\n.\r\n"), &lim, 45, &r);
	assert_true(r.f.too_many_headers);
	output_is(&r, S("A: 1\r\n"));
	free(r.out.p);

	/* 100,000 header lines (hostile.md 7): counted, bounded, the end still found */
	{
		size_t n = 100000 * 6 + 5;
		char *b = malloc(n);
		assert_non_null(b);
		for (size_t i = 0; i < 100000; i++)
			memcpy(b + i * 6, "X: y\r\n", 6);
		memcpy(b + n - 5, "\r\n.\r\n", 5);
		lim.max_header_lines = 1000;
		run3(b, n, &lim, 46, &r);
		assert_int_equal(r.f.header_lines, 100000);
		assert_true(r.f.too_many_headers);
		assert_int_equal(r.out.len, 6000);
		assert_true(r.f.done);
		free(r.out.p);
		free(b);
	}
}

static void
test_sink_failure(void **state)
{
	size_t n = 3 * 4096 + 100;
	char *in = malloc(n + 5 + 6);
	struct result r;

	(void)state;
	assert_non_null(in);
	for (size_t i = 0; i < n; i++)
		in[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'a';
	memcpy(in + n, "\r\n.\r\nQUIT\r\n", 11);

	/* the first flush fails: no second call, the data is still read to its end */
	run(in, n + 11, NULL, BYTES, 0, 1, &r);
	assert_true(r.f.sink_failed);
	assert_true(r.f.done);
	assert_int_equal(r.out.calls, 1);
	assert_int_equal(r.consumed, n + 5);
	assert_int_equal(r.f.size, n + 2);
	free(r.out.p);

	run(in, n + 11, NULL, ONE, 0, 2, &r);
	assert_true(r.f.sink_failed);
	assert_true(r.f.done);
	assert_int_equal(r.out.calls, 2);
	free(r.out.p);

	/* a sink that never fails is called in batches, not per line */
	run(in, n + 11, NULL, BYTES, 0, 0, &r);
	assert_false(r.f.sink_failed);
	assert_true(r.out.calls <= 4);
	assert_int_equal(r.out.len, n + 2);
	free(r.out.p);
	free(in);
}

static void
test_after_done(void **state)
{
	struct data_filter f;
	struct sinkbuf s;

	(void)state;
	memset(&s, 0, sizeof(s));
	data_filter_init(&f, NULL, sink, &s);
	assert_int_equal(data_filter_feed(&f, S("a\r\n.\r\nb\r\n.\r\n")), 6);
	assert_true(f.done);
	assert_int_equal(data_filter_feed(&f, S("b\r\n.\r\n")), 0);
	assert_int_equal(data_filter_feed(&f, "", 0), 0);
	assert_int_equal(s.len, 3);
	assert_int_equal(s.calls, 1);
	assert_int_equal(f.size, 3);
	free(s.p);

	/* no sink at all: the verdict alone */
	data_filter_init(&f, NULL, NULL, NULL);
	assert_int_equal(data_filter_feed(&f, S("Subject: q\r\n\r\nx\r\n.\r\n")), 20);
	assert_true(f.done);
	assert_string_equal(f.subject, "q");

	/* a zero-length feed before the end changes nothing */
	data_filter_init(&f, NULL, NULL, NULL);
	assert_int_equal(data_filter_feed(&f, "", 0), 0);
	assert_false(f.done);
}

/* ---- hostile.md 3: a line of N octets then the end, for N around 2^k ---- */

static void
pow2_case(size_t nlen, int variant, struct data_limits *lim, uint32_t seed)
{
	static const char pre[] = "Subject: p\r\n\r\n";
	size_t n = 0, plen = variant == 2 ? sizeof(pre) - 1 : 0;
	size_t total = plen + nlen + 5 + 6;
	char *in = malloc(total);
	struct result r;
	struct ref *ref = malloc(sizeof(*ref));

	assert_non_null(in);
	assert_non_null(ref);
	memcpy(in, pre, plen);
	n = plen;
	for (size_t i = 0; i < nlen; i++) {
		char c = (char)('a' + i % 26);
		if (variant == 1 && i == 0)
			c = '.';		/* a stuffed line */
		if (variant == 3 && i % 7 == 5)
			c = '\r';		/* many short lines, some stuffed */
		if (variant == 3 && i % 7 == 6)
			c = '\n';
		if (variant == 3 && i % 14 == 0)
			c = '.';
		in[n++] = c;
	}
	memcpy(in + n, "\r\n.\r\nQUIT\r\n", 11);
	n += 11;

	run3(in, n, lim, seed, &r);
	reference(in, n, ref);
	if (lim == NULL) {
		matches_ref(&r, ref);
	} else {
		size_t keep = ref->len < lim->max_size ? ref->len : lim->max_size;
		output_is(&r, ref->out, keep);
		assert_int_equal(r.f.too_big, ref->len > lim->max_size);
		assert_int_equal(r.f.size, ref->len);
		assert_int_equal(r.consumed, ref->consumed);
	}
	assert_true(r.f.done);
	/* the bytes after the end are the next command's (a "." line may end it sooner) */
	if (variant == 0 || variant == 2 || (variant == 1 && nlen > 1))
		assert_int_equal(r.consumed, n - 6);
	if (variant == 0 && lim == NULL) {
		assert_int_equal(r.out.len, nlen + 2);
		assert_memory_equal(r.out.p, in, nlen + 2);
	}
	if (variant == 1 && nlen > 1 && lim == NULL)
		assert_memory_equal(r.out.p, in + 1, nlen + 1);
	free(r.out.p);
	free(ref->out);
	free(ref);
	free(in);
}

static void
test_powers_of_two(void **state)
{
	(void)state;
	for (int k = 0; k <= 17; k++) {
		size_t p = (size_t)1 << k;
		for (size_t nlen = p - 1; nlen <= p + 1; nlen++) {
			for (int v = 0; v < 4; v++)
				pow2_case(nlen, v, NULL, (uint32_t)(nlen * 31 + (size_t)v + 1));
			/* the size limit falls on the same edges */
			if (nlen > 0) {
				struct data_limits lim = { .max_size = nlen };
				pow2_case(nlen, 0, &lim, (uint32_t)nlen + 77);
				lim.max_size = nlen / 2 + 1;
				pow2_case(nlen, 3, &lim, (uint32_t)nlen + 78);
			}
		}
	}
}

/* ---- generated inputs against the reference model ---- */

static void
test_generated(void **state)
{
	static const char *tok[] = {
		"\r", "\n", ".", "\r\n", "a", "bc", " ", "\t", ":", "\0", "\xff",
		"Subject: ", "Received: ", "Message-ID: ", "\r\n\r\n", "..", "\r\n.", ".\r",
		"\r\n ", "\n.",
	};
	uint32_t seed = 0x5eed;
	char *in = malloc(8192);
	struct ref *ref = malloc(sizeof(*ref));

	(void)state;
	assert_non_null(in);
	assert_non_null(ref);
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = 0, ntok = rnd(&seed) % 300;
		struct result r;

		for (size_t t = 0; t < ntok; t++) {
			size_t w = rnd(&seed) % (sizeof(tok) / sizeof(tok[0]));
			/* "\0" is one byte, strlen() would say none */
			size_t l = tok[w][0] == '\0' ? 1 : strlen(tok[w]);
			memcpy(in + n, tok[w], l);
			n += l;
		}
		memcpy(in + n, "\r\n.\r\nNEXT", 9);
		n += 9;

		run3(in, n, NULL, (uint32_t)iter + 1000, &r);
		reference(in, n, ref);
		matches_ref(&r, ref);
		free(r.out.p);

		/* limits on the same input: the output is a prefix of the unlimited one */
		struct data_limits lim = {
			.max_size = rnd(&seed) % (ref->len + 2) + 1,
			.max_header_lines = rnd(&seed) % 4 + 1,
		};
		size_t keep = ref->len;
		if (lim.max_size < keep)
			keep = lim.max_size;
		if (ref->header_lines > lim.max_header_lines &&
		    ref->hdr_end[lim.max_header_lines] < keep)
			keep = ref->hdr_end[lim.max_header_lines];
		run3(in, n, &lim, (uint32_t)iter + 5000, &r);
		output_is(&r, ref->out, keep);
		assert_int_equal(r.f.too_big, ref->len > lim.max_size);
		assert_int_equal(r.f.too_many_headers, ref->header_lines > lim.max_header_lines);
		assert_int_equal(r.f.size, ref->len);
		assert_int_equal(r.consumed, ref->consumed);
		free(r.out.p);
		free(ref->out);
	}
	free(ref);
	free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_smuggling_all_at_once),
		cmocka_unit_test(test_dot_unstuffing),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_header_only),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_capture),
		cmocka_unit_test(test_header_counts),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_header_limit),
		cmocka_unit_test(test_sink_failure),
		cmocka_unit_test(test_after_done),
		cmocka_unit_test(test_powers_of_two),
		cmocka_unit_test(test_generated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
