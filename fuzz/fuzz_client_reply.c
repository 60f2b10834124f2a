/*
 * fuzz_client_reply: the outbound client's reply parser (smtp_client_reply.c),
 * which reads whatever a remote server sends us, and the EHLO keyword parser
 * behind it.
 *
 * Properties:
 * - the same bytes fed whole and fed in the splits the input chooses give the
 *   same sequence of results (status, code, enhanced code, lines, consumed
 *   length): the parser is resumable at every byte, as its header promises;
 * - a DONE reply has a code in 200..599, 1..LINES_MAX lines, and every line's
 *   text is NUL-terminated inside text[]; its consumed bytes end with a LF;
 * - MORE consumes everything; DONE and ERROR stay put until init.
 *
 * Input: byte 0 seeds the split sizes (0 = one byte at a time); the rest is
 * what the server sends, as many pipelined replies as it holds.
 */
#include "fuzz.h"

#include "smtp_client_reply.h"

#define MAX_REPLIES 64

struct result {
	enum smtp_client_reply_status st;
	int code;
	char enhanced[16];
	size_t n_lines;
	size_t consumed;		/* offset in the input just after this result */
	uint32_t text_hash;
};

static uint32_t
hash_lines(const struct smtp_client_reply *r)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < r->n_lines; i++) {
		for (const char *p = smtp_client_reply_line(r, i); *p; p++)
			h = (h ^ (uint8_t)*p) * 16777619u;
		h = (h ^ 0xff) * 16777619u;
	}
	return h;
}

static void
check_done(const struct smtp_client_reply *r, const uint8_t *in, size_t end)
{
	char joined[64];

	FUZZ_CHECK(r->code >= 200 && r->code <= 599, "code %d", r->code);
	FUZZ_CHECK(r->n_lines >= 1 && r->n_lines <= SMTP_CLIENT_REPLY_LINES_MAX,
	    "%zu lines", r->n_lines);
	FUZZ_CHECK(memchr(r->enhanced, '\0', sizeof(r->enhanced)) != NULL, "enhanced unterminated");
	FUZZ_CHECK(end > 0 && in[end - 1] == '\n', "a reply ends after a LF");
	for (size_t i = 0; i < r->n_lines; i++) {
		const char *t = smtp_client_reply_line(r, i);
		FUZZ_CHECK(t >= r->text && t < r->text + sizeof(r->text), "line %zu outside text", i);
		FUZZ_CHECK(memchr(t, '\0', (size_t)(r->text + sizeof(r->text) - t)) != NULL,
		    "line %zu unterminated", i);
	}
	FUZZ_CHECK(smtp_client_reply_line(r, r->n_lines)[0] == '\0', "a line past the end");
	FUZZ_CHECK(smtp_client_reply_join(r, joined, sizeof(joined)) < sizeof(joined), "join");

	struct smtp_client_ext ext;
	smtp_client_ext_parse(r, &ext);
}

/* feed in[0..len) in chunks of the sizes split() gives; results into out[] */
static size_t
run(const uint8_t *in, size_t len, uint8_t seed, bool whole, struct result *out)
{
	struct smtp_client_reply *r = malloc(sizeof(*r));
	size_t off = 0, n = 0, chunk_end = 0;
	uint32_t rng = seed * 2654435761u + 1;

	FUZZ_CHECK(r != NULL, "oom");
	smtp_client_reply_init(r);
	while (off < len && n < MAX_REPLIES) {
		if (chunk_end <= off) {
			size_t step = 1;
			if (whole)
				step = len - off;
			else if (seed != 0) {
				rng = rng * 1103515245u + 12345u;
				step = 1 + (rng >> 16) % 64;
			}
			chunk_end = off + step > len ? len : off + step;
		}
		size_t used = 0;
		enum smtp_client_reply_status st = smtp_client_reply_feed(r,
		    (const char *)in + off, chunk_end - off, &used);

		FUZZ_CHECK(used <= chunk_end - off, "used %zu of %zu", used, chunk_end - off);
		off += used;
		if (st == SMTP_CLIENT_REPLY_MORE) {
			FUZZ_CHECK(off == chunk_end, "MORE must consume everything");
			continue;
		}
		/* DONE and ERROR stay put */
		size_t again = 99;
		FUZZ_CHECK(smtp_client_reply_feed(r, (const char *)in + off, chunk_end - off,
		    &again) == st && again == 0, "a finished parser moved");
		out[n] = (struct result){ .st = st, .consumed = off };
		if (st == SMTP_CLIENT_REPLY_DONE) {
			check_done(r, in, off);
			out[n].code = r->code;
			memcpy(out[n].enhanced, r->enhanced, sizeof(r->enhanced));
			out[n].n_lines = r->n_lines;
			out[n].text_hash = hash_lines(r);
			n++;
			smtp_client_reply_init(r);
			continue;
		}
		FUZZ_CHECK(smtp_client_reply_error(r) != NULL, "ERROR without a reason");
		n++;
		break;
	}
	free(r);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result a[MAX_REPLIES], b[MAX_REPLIES];
	struct fz f = { data, size };
	uint8_t seed = fz_u8(&f);
	size_t na = run(f.p, f.n, seed, true, a);
	size_t nb = run(f.p, f.n, seed, false, b);

	FUZZ_CHECK(na == nb, "%zu results whole, %zu split (seed %u)", na, nb, seed);
	for (size_t i = 0; i < na; i++) {
		FUZZ_CHECK(a[i].st == b[i].st && a[i].consumed == b[i].consumed &&
		    a[i].code == b[i].code && a[i].n_lines == b[i].n_lines &&
		    a[i].text_hash == b[i].text_hash &&
		    strcmp(a[i].enhanced, b[i].enhanced) == 0,
		    "result %zu differs between whole and split feeding (seed %u)", i, seed);
	}
	return 0;
}
