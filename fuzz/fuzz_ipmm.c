/*
 * fuzz_ipmm: the mail merge parsers a client reaches (ipmm_syntax.c) and the
 * substitution of the assembly (ipmm_assemble.c).
 *
 * The input is used four ways:
 *  - as the argument of XDFN (ipmm_parse_xdfn), with exact-size heap buffers:
 *    a NUL anywhere is IPMM_XDFN_NUL; what is taken has 1..IPMM_NAME_MAX name
 *    characters per key (after one optional '*', and then only *PARTS or *DK),
 *    every key inside the line, every value inside the output buffer and free
 *    of NUL, CR and LF, and a *PARTS value that passes ipmm_parse_parts;
 *  - as a *PARTS value, against a reference parser written here;
 *  - as the argument of XPRT: a part number 1..IPMM_PART_MAX when taken, and
 *    the offending word inside the input when an option is refused;
 *  - as a template for ipmm_subst: fed in one call, one byte a call, and cut at
 *    a point the input chooses, the three outputs must be the same bytes; a
 *    template without '&' comes out unchanged.
 */
#include "fuzz.h"

#include "ipmm_assemble.h"
#include "ipmm_syntax.h"

static int
ref_parts(const uint8_t *p, size_t len, uint32_t *out, size_t cap, size_t *n)
{
	size_t i = 0;

	*n = 0;
	if (len == 0)
		return -1;
	while (i <= len) {
		uint64_t v = 0;
		size_t start = i;

		while (i < len && p[i] >= '0' && p[i] <= '9' && v <= IPMM_PART_MAX)
			v = v * 10 + (p[i++] - '0');
		if (i < len && p[i] >= '0' && p[i] <= '9')
			return -1;		/* more digits: too big */
		if (i == start || v == 0 || v > IPMM_PART_MAX || *n == cap)
			return -1;
		out[(*n)++] = (uint32_t)v;
		if (i == len)
			return 0;
		if (p[i] != ',')
			return -1;
		i++;
	}
	return -1;
}

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int
sink(void *arg, const char *b, size_t len)
{
	struct buf *o = arg;

	if (o->len + len > o->cap) {
		size_t cap = (o->len + len) * 2 + 64;
		uint8_t *g = realloc(o->p, cap);
		FUZZ_CHECK(g != NULL, "out of memory");
		o->p = g;
		o->cap = cap;
	}
	memcpy(o->p + o->len, b, len);
	o->len += len;
	return 0;
}

static void
subst(const struct ipmm_rcpt *r, const uint8_t *data, size_t size, int way, size_t cut,
    struct buf *o)
{
	struct ipmm_subst s;

	memset(o, 0, sizeof(*o));
	ipmm_subst_init(&s, r, "to@x.example", "from@x.example", "DATE", sink, o);
	if (way == 0)
		FUZZ_CHECK(ipmm_subst_feed(&s, (const char *)data, size) == 0, "feed");
	else if (way == 1) {
		for (size_t i = 0; i < size; i++)
			FUZZ_CHECK(ipmm_subst_feed(&s, (const char *)data + i, 1) == 0, "feed");
	} else {
		FUZZ_CHECK(ipmm_subst_feed(&s, (const char *)data, cut) == 0, "feed");
		FUZZ_CHECK(ipmm_subst_feed(&s, (const char *)data + cut, size - cut) == 0, "feed");
	}
	FUZZ_CHECK(ipmm_subst_end(&s) == 0, "end");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size ? size : 1), *out = malloc(size ? size : 1);
	size_t cap = 1 + (size % 64), n;
	struct ipmm_var *vars = malloc(cap * sizeof(*vars));
	uint32_t *parts = malloc((size + 1) * sizeof(*parts)), *ref = malloc((size + 1) *
	    sizeof(*ref));
	size_t np, nr;
	enum ipmm_xdfn_result r;

	FUZZ_CHECK(line && out && vars && parts && ref, "out of memory");
	memcpy(line, data, size);

	/* XDFN */
	r = ipmm_parse_xdfn(line, size, out, vars, cap, &n);
	if (memchr(data, '\0', size) != NULL)
		FUZZ_CHECK(r == IPMM_XDFN_NUL, "a NUL gave %d", r);
	if (r == IPMM_XDFN_OK) {
		FUZZ_CHECK(n >= 1 && n <= cap, "n %zu cap %zu", n, cap);
		for (size_t i = 0; i < n; i++) {
			const struct ipmm_var *v = &vars[i];
			size_t k = 0;

			FUZZ_CHECK(v->key >= line && v->key + v->key_len <= line + size, "key out");
			FUZZ_CHECK(v->val >= out && v->val + v->val_len <= out + size, "value out");
			if (v->key[0] == '*')
				k = 1;
			FUZZ_CHECK(v->key_len > k && v->key_len <= IPMM_NAME_MAX, "key length");
			for (size_t j = k; j < v->key_len; j++)
				FUZZ_CHECK(ipmm_name_char((unsigned char)v->key[j]), "key char");
			for (size_t j = 0; j < v->val_len; j++)
				FUZZ_CHECK(v->val[j] != '\0' && v->val[j] != '\r' && v->val[j] != '\n',
				    "value byte");
			if (k == 1) {
				FUZZ_CHECK(ipmm_is_parts_name(v->key, v->key_len) ||
				    (v->key_len == 3 && (v->key[1] | 0x20) == 'd' &&
				    (v->key[2] | 0x20) == 'k'), "reserved name taken");
				if (ipmm_is_parts_name(v->key, v->key_len))
					FUZZ_CHECK(ipmm_parse_parts(v->val, v->val_len, parts, size + 1,
					    &np) == 0, "*PARTS taken but not valid");
			}
		}
	}

	/* *PARTS, against the reference */
	int a = ipmm_parse_parts(line, size, parts, cap, &np);
	int b = ref_parts(data, size, ref, cap, &nr);
	FUZZ_CHECK(a == b, "parts %d, reference %d", a, b);
	if (a == 0) {
		FUZZ_CHECK(np == nr, "count %zu vs %zu", np, nr);
		for (size_t i = 0; i < np; i++)
			FUZZ_CHECK(parts[i] == ref[i], "part %zu", i);
	}

	/* XPRT */
	uint32_t part;
	bool last;
	const char *bad;
	size_t bad_len;
	enum ipmm_xprt_result x = ipmm_parse_xprt(line, size, &part, &last, &bad, &bad_len);
	if (x == IPMM_XPRT_OK)
		FUZZ_CHECK(part >= 1 && part <= IPMM_PART_MAX, "part %u", part);
	if (x == IPMM_XPRT_OPTION)
		FUZZ_CHECK(bad >= line && bad_len > 0 && bad + bad_len <= line + size, "bad word");

	/* substitution, three ways */
	static struct ipmm_var rv[] = {
		{ "a", 1, "A", 1 },
		{ "name", 4, "&name;", 6 },
		{ "e", 1, "", 0 },
		{ "x-y.z_1", 7, "long value with spaces", 22 },
	};
	struct ipmm_rcpt rc;
	struct buf o1, o2, o3;

	memset(&rc, 0, sizeof(rc));
	strcpy(rc.addr, "to@x.example");
	rc.vars = rv;
	rc.n_vars = sizeof(rv) / sizeof(rv[0]);
	subst(&rc, data, size, 0, 0, &o1);
	subst(&rc, data, size, 1, 0, &o2);
	subst(&rc, data, size, 2, size ? data[0] % (size + 1) : 0, &o3);
	FUZZ_CHECK(o1.len == o2.len && (o1.len == 0 || memcmp(o1.p, o2.p, o1.len) == 0),
	    "one call and one byte a call differ");
	FUZZ_CHECK(o1.len == o3.len && (o1.len == 0 || memcmp(o1.p, o3.p, o1.len) == 0),
	    "a cut changes the output");
	if (memchr(data, '&', size) == NULL)
		FUZZ_CHECK(o1.len == size && (size == 0 || memcmp(o1.p, data, size) == 0),
		    "text without '&' changed");
	free(o1.p);
	free(o2.p);
	free(o3.p);
	free(line);
	free(out);
	free(vars);
	free(parts);
	free(ref);
	return 0;
}
