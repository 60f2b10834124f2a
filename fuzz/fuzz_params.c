/*
 * fuzz_params: ESMTP parameters of MAIL and RCPT (RFC 5321 4.1.2) as the
 * session sees them, and the two value parsers behind them: SIZE=
 * (smtp_parse_size_value, RFC 1870) and xtext (smtp_xtext_decode, RFC 3461 4).
 * Both value parsers are checked against a plain reference written here from
 * the RFCs (a differential), and a decoded xtext is encoded again and must
 * decode to the same bytes. hostile.md 7 (huge SIZE, no wrap) and 8 (empty,
 * repeated, malformed, decoding to CR/LF/NUL).
 *
 * Input: byte 0 is the xtext output capacity (1..256); the rest is what
 * follows "MAIL FROM:<a@b.example>" on the command line.
 */
#include "fuzz.h"

#include <limits.h>

#include "smtp_syntax.h"

/* RFC 1870: 1*DIGIT; saturated at UINT64_MAX as smtp_syntax.h promises */
static int
ref_size(const char *p, size_t len, uint64_t *out)
{
	unsigned __int128 v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(p[i] - '0');
		if (v > UINT64_MAX)
			v = (unsigned __int128)UINT64_MAX + 1;	/* stays too big */
	}
	*out = v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
	return 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 3461 4, and smtp_syntax.h: decoded bytes only 0x20..0x7e, -1 past cap */
static int
ref_xtext(const char *p, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return -1;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)p[i];
		if (c == '+') {
			if (len - i < 3 || hexval(p[i + 1]) < 0 || hexval(p[i + 2]) < 0)
				return -1;
			c = (unsigned char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
			i += 3;
		} else if (c >= 33 && c <= 126 && c != '=') {
			i++;
		} else
			return -1;
		if (c < 0x20 || c > 0x7e)
			return -1;
		if (o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

/* xtext again: xchar as is, everything else (and '+', '=') as "+XX" */
static size_t
enc_xtext(const char *in, size_t len, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 33 && c <= 126 && c != '+' && c != '=') {
			out[o++] = (char)c;
		} else {
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	return o;
}

static void
check_value(const struct smtp_span *v, size_t cap)
{
	uint64_t got = 0, want = 0;
	int r1, r2;
	char *out1, *out2, *again;
	size_t n;

	r1 = smtp_parse_size_value(v, &got);
	r2 = ref_size(v->p, v->len, &want);
	FUZZ_CHECK(r1 == r2 && (r1 == -1 || got == want), "SIZE=%.*s: %d %llu, want %d %llu",
	    (int)v->len, v->p, r1, (unsigned long long)got, r2, (unsigned long long)want);

	out1 = malloc(cap);
	out2 = malloc(cap);
	if (out1 == NULL || out2 == NULL)
		abort();
	memset(out1, 0x55, cap);
	r1 = smtp_xtext_decode(v, out1, cap);
	r2 = ref_xtext(v->p, v->len, out2, cap);
	FUZZ_CHECK(r1 == r2, "xtext \"%.*s\" cap %zu: %d, want %d", (int)v->len, v->p, cap, r1,
	    r2);
	if (r1 >= 0) {
		FUZZ_CHECK((size_t)r1 < cap && out1[r1] == '\0' &&
		    memcmp(out1, out2, (size_t)r1) == 0, "xtext output differs");
		/* what reaches a header or the envelope: printable, nothing else */
		for (int i = 0; i < r1; i++)
			FUZZ_CHECK(out1[i] >= 0x20 && out1[i] <= 0x7e, "decoded byte 0x%02x",
			    (unsigned char)out1[i]);
		again = malloc((size_t)r1 * 3 + 1);
		if (again == NULL)
			abort();
		n = enc_xtext(out1, (size_t)r1, again);
		{
			struct smtp_span s = { again, n };
			r2 = smtp_xtext_decode(&s, out2, cap);
			FUZZ_CHECK(r2 == r1 && memcmp(out1, out2, (size_t)r1) == 0,
			    "xtext round trip");
		}
		free(again);
	}
	free(out1);
	free(out2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char head[] = "FROM:<a@b.example>";
	struct smtp_path path;
	struct smtp_params params;
	struct smtp_span arg, bad, whole;
	size_t cap;
	char *line;

	if (size < 1)
		return 0;
	cap = (size_t)data[0] + 1;
	data++;
	size--;

	/* the values alone first: no parameter syntax in the way */
	whole.p = (const char *)data;
	whole.len = size;
	check_value(&whole, cap);

	if ((line = malloc(sizeof(head) + size)) == NULL)
		abort();
	memcpy(line, head, sizeof(head) - 1);
	line[sizeof(head) - 1] = ' ';
	memcpy(line + sizeof(head), data, size);
	arg.p = line;
	arg.len = sizeof(head) + size;
	if (smtp_parse_path_arg(&arg, "FROM", true, false, &path, &params, &bad) ==
	    SMTP_PARSE_OK) {
		for (size_t i = 0; i < params.n; i++) {
			const struct smtp_param *pm = &params.p[i];
			if (pm->has_value)
				check_value(&pm->value, cap);
		}
	}
	free(line);
	return 0;
}
