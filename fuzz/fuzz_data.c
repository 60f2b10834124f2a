/*
 * fuzz_data: the DATA filter (data.c), fed three ways: the whole stream in
 * one data_filter_feed() call, in pieces cut where the input says, and one
 * byte a call. Everything must agree: the bytes the sink got (plus what is
 * still pending), where the end of data was found, every flag and counter,
 * Subject and Message-ID. data.h promises exactly this; hostile.md 1-3 are
 * why (SMTP smuggling, reject-then-keep-reading, dot lines at buffer edges).
 *
 * And against a reference written here: only <CRLF>.<CRLF> (or ".<CRLF>" as
 * the very first line) ends the data, leading dots go, the unstuffed size is
 * counted past a size limit while the sink gets exactly the first max_size
 * octets, bare CR and bare LF are flagged.
 *
 * Input: max_size (2 bytes, 0 = none), max_header_lines (1 byte, 0 = none),
 * a sink that fails after N calls (1 byte, 0 = never), the number of cuts
 * (1 byte, at most 32) and the cuts (2 bytes each); the rest is the stream.
 */
#include "fuzz.h"

#include "data.h"

struct sink {
	char *buf;
	size_t len, cap;
	unsigned calls, fail_after;		/* fail the call after fail_after (0 = never) */
	bool failed;				/* a call failed (the filter's or sink_finish's) */
};

static int
sink_fn(void *arg, const char *buf, size_t len)
{
	struct sink *s = arg;

	if (s->fail_after != 0 && s->calls++ >= s->fail_after) {
		s->failed = true;
		return -1;
	}
	if (len == 0)
		return 0;
	if (s->len + len > s->cap) {
		size_t ncap = (s->len + len) * 2 + 64;
		if ((s->buf = realloc(s->buf, ncap)) == NULL)
			abort();
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	return 0;
}

/* the sink's bytes and what the filter still holds for it */
static void
sink_finish(struct sink *s, const struct data_filter *f)
{
	if (!f->sink_failed)
		(void)sink_fn(s, f->out, f->out_len);
}

static void
same(const struct data_filter *a, size_t ca, const struct sink *sa,
    const struct data_filter *b, size_t cb, const struct sink *sb, const char *how)
{
	FUZZ_CHECK(ca == cb, "%s: consumed %zu, one call %zu", how, cb, ca);
	FUZZ_CHECK(a->done == b->done && a->too_big == b->too_big &&
	    a->too_many_headers == b->too_many_headers && a->bare_cr == b->bare_cr &&
	    a->bare_lf == b->bare_lf && a->size == b->size &&
	    a->header_lines == b->header_lines && a->received == b->received &&
	    a->have_subject == b->have_subject && a->have_message_id == b->have_message_id,
	    "%s: verdict differs: done %d/%d too_big %d/%d headers %d/%d bare_cr %d/%d "
	    "bare_lf %d/%d size %llu/%llu header_lines %u/%u received %u/%u", how,
	    a->done, b->done, a->too_big, b->too_big, a->too_many_headers, b->too_many_headers,
	    a->bare_cr, b->bare_cr, a->bare_lf, b->bare_lf, (unsigned long long)a->size,
	    (unsigned long long)b->size, a->header_lines, b->header_lines, a->received,
	    b->received);
	FUZZ_CHECK(strcmp(a->subject, b->subject) == 0 &&
	    strcmp(a->message_id, b->message_id) == 0, "%s: captures differ", how);
	/*
	 * A failing sink stops at a call count, and calls depend on the split (the
	 * last call may be sink_finish's own, which the filter never hears of).
	 */
	if (!a->sink_failed && !b->sink_failed && !sa->failed && !sb->failed)
		FUZZ_CHECK(sa->len == sb->len && (sa->len == 0 ||
		    memcmp(sa->buf, sb->buf, sa->len) == 0),
		    "%s: output differs (%zu octets, one call %zu)", how, sb->len, sa->len);
}

/* the reference: where the data ends (0 = not in buf) and the unstuffed text before it */
static size_t
ref_end(const char *buf, size_t len, struct sink *out, bool *bare_cr, bool *bare_lf)
{
	size_t i, end = 0;

	for (i = 0; i + 3 <= len; i++) {
		if (memcmp(buf + i, ".\r\n", 3) == 0 &&
		    (i == 0 || (i >= 2 && buf[i - 2] == '\r' && buf[i - 1] == '\n'))) {
			end = i + 3;
			break;
		}
	}
	if (end == 0)
		return 0;
	*bare_cr = *bare_lf = false;
	for (i = 0; i < end - 3; i++) {
		bool bol = i == 0 || (i >= 2 && buf[i - 2] == '\r' && buf[i - 1] == '\n');
		if (buf[i] == '\r' && buf[i + 1] != '\n')
			*bare_cr = true;
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			*bare_lf = true;
		if (bol && buf[i] == '.')
			continue;
		(void)sink_fn(out, buf + i, 1);
	}
	return end;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size };
	struct data_limits lim;
	struct data_filter *one, *cut, *byte;
	struct sink s1 = { 0 }, s2 = { 0 }, s3 = { 0 }, ref = { 0 };
	size_t cuts[33], ncuts, len, c1, c2 = 0, c3 = 0, prev, end;
	unsigned fail_after;
	const char *buf;
	bool bare_cr = false, bare_lf = false;

	lim.max_size = fz_u16(&in);
	lim.max_header_lines = fz_u8(&in);
	fail_after = fz_u8(&in);
	ncuts = fz_u8(&in) % 33;
	for (size_t i = 0; i < ncuts; i++)
		cuts[i] = fz_u16(&in);
	buf = (const char *)fz_bytes(&in, in.n, &len);
	for (size_t i = 0; i < ncuts; i++)
		cuts[i] = len ? cuts[i] % (len + 1) : 0;
	/* sorted cut points (insertion sort: at most 32) */
	for (size_t i = 1; i < ncuts; i++)
		for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
			size_t t = cuts[j];
			cuts[j] = cuts[j - 1];
			cuts[j - 1] = t;
		}
	cuts[ncuts] = len;

	one = malloc(sizeof(*one));
	cut = malloc(sizeof(*cut));
	byte = malloc(sizeof(*byte));
	if (one == NULL || cut == NULL || byte == NULL)
		abort();
	s1.fail_after = s2.fail_after = s3.fail_after = fail_after;

	data_filter_init(one, &lim, sink_fn, &s1);
	c1 = data_filter_feed(one, buf, len);
	FUZZ_CHECK(c1 <= len && (one->done ? c1 >= 3 : c1 == len), "one call: consumed %zu "
	    "of %zu, done %d", c1, len, one->done);
	FUZZ_CHECK(data_filter_feed(one, buf + c1, len - c1) == (one->done ? 0 : len - c1),
	    "feeding after the end");
	sink_finish(&s1, one);

	data_filter_init(cut, &lim, sink_fn, &s2);
	prev = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t n = data_filter_feed(cut, buf + prev, cuts[i] - prev);
		c2 += n;
		if (cut->done) {
			/* the rest belongs to the next command: nothing more is taken */
			FUZZ_CHECK(data_filter_feed(cut, buf + c2, len - c2) == 0, "after done");
			break;
		}
		FUZZ_CHECK(n == cuts[i] - prev, "a piece half consumed without the end");
		prev = cuts[i];
	}
	sink_finish(&s2, cut);
	same(one, c1, &s1, cut, c2, &s2, "cut");

	data_filter_init(byte, &lim, sink_fn, &s3);
	for (size_t i = 0; i < len && !byte->done; i++)
		c3 += data_filter_feed(byte, buf + i, 1);
	sink_finish(&s3, byte);
	same(one, c1, &s1, byte, c3, &s3, "byte");

	/* the reference end of data and unstuffed text */
	end = ref_end(buf, len, &ref, &bare_cr, &bare_lf);
	FUZZ_CHECK(one->done == (end != 0) && (!one->done || c1 == end),
	    "end of data at %zu (done %d), reference %zu", c1, one->done, end);
	if (one->done) {
		FUZZ_CHECK(one->size == ref.len, "size %llu, reference %zu",
		    (unsigned long long)one->size, ref.len);
		FUZZ_CHECK(one->bare_cr == bare_cr && one->bare_lf == bare_lf,
		    "bare CR %d LF %d, reference %d %d", one->bare_cr, one->bare_lf, bare_cr,
		    bare_lf);
		if (!one->sink_failed) {
			size_t want = ref.len;
			if (lim.max_size != 0 && want > lim.max_size)
				want = (size_t)lim.max_size;
			FUZZ_CHECK(one->too_big == (lim.max_size != 0 && ref.len > lim.max_size),
			    "too_big %d", one->too_big);
			if (one->too_many_headers)
				FUZZ_CHECK(s1.len <= want && (s1.len == 0 ||
				    memcmp(s1.buf, ref.buf, s1.len) == 0),
				    "output is no prefix of the reference");
			else
				FUZZ_CHECK(s1.len == want && (want == 0 ||
				    memcmp(s1.buf, ref.buf, want) == 0),
				    "output differs from the reference (%zu octets, want %zu)",
				    s1.len, want);
		}
	}
	if (lim.max_size != 0 && !one->sink_failed)
		FUZZ_CHECK(s1.len <= lim.max_size, "%zu octets passed a limit of %llu", s1.len,
		    (unsigned long long)lim.max_size);
	if (lim.max_header_lines != 0)
		FUZZ_CHECK(one->too_many_headers == (one->header_lines > lim.max_header_lines),
		    "header limit %u, lines %u, flag %d", lim.max_header_lines,
		    one->header_lines, one->too_many_headers);

	free(s1.buf);
	free(s2.buf);
	free(s3.buf);
	free(ref.buf);
	free(one);
	free(cut);
	free(byte);
	return 0;
}
