/*
 * test_ipmm.c: the mail merge parsers (XDFN pairs, *PARTS, XPRT), the
 * substitution fed at every split (one call, one byte per call, every split
 * point), and the job file: written as the session writes it, read back by the
 * splitter's reader, assembled per recipient; damaged jobs are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ipmm_assemble.h"
#include "ipmm_job.h"
#include "ipmm_syntax.h"
#include "spool.h"

#define S(lit)	(lit), (sizeof(lit) - 1)

/* ---------------------------------------------------------------- XDFN */

static enum ipmm_xdfn_result
xdfn(const char *arg, size_t len, struct ipmm_var *vars, char *buf, size_t *n)
{
	return ipmm_parse_xdfn(arg, len, buf, vars, 16, n);
}

static void
assert_var(const struct ipmm_var *v, const char *key, const char *val, size_t val_len)
{
	assert_int_equal(v->key_len, strlen(key));
	assert_memory_equal(v->key, key, strlen(key));
	assert_int_equal(v->val_len, val_len);
	if (val_len > 0)
		assert_memory_equal(v->val, val, val_len);
}

static void
test_xdfn_ok(void **state)
{
	struct ipmm_var v[16];
	char buf[512];
	size_t n;

	(void)state;
	assert_int_equal(xdfn(S("first_name=\"Jane\" last_name=\"User\" color=\"red\" *PARTS=1,2"),
	    v, buf, &n), IPMM_XDFN_OK);
	assert_int_equal(n, 4);
	assert_var(&v[0], "first_name", S("Jane"));
	assert_var(&v[1], "last_name", S("User"));
	assert_var(&v[2], "color", S("red"));
	assert_var(&v[3], "*PARTS", S("1,2"));

	/* wrapping, quotes with spaces, '/' escapes, empty quoted value, extra spaces */
	assert_int_equal(xdfn(S("  <a=1>  [b=\"two words\"] c=x/ y d=\"q/\"uote\" e=\"\" f=a/>b "),
	    v, buf, &n), IPMM_XDFN_OK);
	assert_int_equal(n, 6);
	assert_var(&v[0], "a", S("1"));
	assert_var(&v[1], "b", S("two words"));
	assert_var(&v[2], "c", S("x y"));
	assert_var(&v[3], "d", S("q\"uote"));
	assert_var(&v[4], "e", S(""));
	assert_var(&v[5], "f", S("a>b"));
	assert_int_equal(xdfn(S("<k=a/>b> [k2=/]/]]"), v, buf, &n), IPMM_XDFN_OK);
	assert_var(&v[0], "k", S("a>b"));
	assert_var(&v[1], "k2", S("]]"));

	/* 8-bit values are data; *DK in any case */
	assert_int_equal(xdfn(S("name=Jos\xc3\xa9 *dk=profile *parts=3"), v, buf, &n),
	    IPMM_XDFN_OK);
	assert_var(&v[0], "name", S("Jos\xc3\xa9"));
	assert_int_equal(n, 3);
}

static void
test_xdfn_errors(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		enum ipmm_xdfn_result want;
	} cases[] = {
		{ S(""), IPMM_XDFN_SYNTAX },
		{ S("   "), IPMM_XDFN_SYNTAX },
		{ S("foo"), IPMM_XDFN_SYNTAX },
		{ S("a=b c"), IPMM_XDFN_SYNTAX },
		{ S("=b"), IPMM_XDFN_SYNTAX },
		{ S("a b=c"), IPMM_XDFN_SYNTAX },
		{ S("a=\"open"), IPMM_XDFN_SYNTAX },
		{ S("a=\"x\"y"), IPMM_XDFN_SYNTAX },
		{ S("a=x\"y"), IPMM_XDFN_SYNTAX },
		{ S("a=x/"), IPMM_XDFN_SYNTAX },
		{ S("<a=b"), IPMM_XDFN_SYNTAX },
		{ S("<a=b]"), IPMM_XDFN_SYNTAX },
		{ S("<a=b>c"), IPMM_XDFN_SYNTAX },
		{ S("a\xff=b"), IPMM_XDFN_SYNTAX },
		{ S("a=b\rc"), IPMM_XDFN_SYNTAX },
		{ S("a=\"b\nc\""), IPMM_XDFN_SYNTAX },
		{ S("*=1"), IPMM_XDFN_SYNTAX },
		{ S("a="), IPMM_XDFN_NO_VALUE },
		{ S("a= b=c"), IPMM_XDFN_NO_VALUE },
		{ S("<a=>"), IPMM_XDFN_NO_VALUE },
		{ S("[a=]"), IPMM_XDFN_NO_VALUE },
		{ S("*FOO=1"), IPMM_XDFN_RESERVED },
		{ S("*TO=a@b"), IPMM_XDFN_RESERVED },
		{ S("a=1 *DATE=x"), IPMM_XDFN_RESERVED },
		{ S("*PARTS=1,,2"), IPMM_XDFN_PARTS },
		{ S("*PARTS=0"), IPMM_XDFN_PARTS },
		{ S("*PARTS=1,"), IPMM_XDFN_PARTS },
		{ S("*PARTS=,1"), IPMM_XDFN_PARTS },
		{ S("*PARTS=\"1, 2\""), IPMM_XDFN_PARTS },
		{ S("*PARTS=10001"), IPMM_XDFN_PARTS },
		{ S("*PARTS=x"), IPMM_XDFN_PARTS },
		{ S("a=b\0c"), IPMM_XDFN_NUL },
		{ S("foo\0"), IPMM_XDFN_NUL },
		/* the first error from the left wins, a NUL anywhere wins over all */
		{ S("*FOO=1 a="), IPMM_XDFN_RESERVED },
		{ S("a= *FOO=1"), IPMM_XDFN_NO_VALUE },
		{ S("*FOO=1 \0"), IPMM_XDFN_NUL },
	};
	struct ipmm_var v[16];
	char buf[512];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum ipmm_xdfn_result r = xdfn(cases[i].in, cases[i].len, v, buf, &n);
		if (r != cases[i].want)
			fail_msg("case %zu \"%s\": got %d, want %d", i, cases[i].in, r, cases[i].want);
	}
}

static void
test_xdfn_limits(void **state)
{
	char name[IPMM_NAME_MAX + 4], line[IPMM_NAME_MAX + 8], buf[4096 * 2];
	struct ipmm_var *v = calloc(IPMM_VARS_MAX + 1, sizeof(*v));
	char *many;
	size_t n, o = 0;

	(void)state;
	memset(name, 'n', sizeof(name));
	snprintf(line, sizeof(line), "%.*s=1", IPMM_NAME_MAX, name);
	assert_int_equal(ipmm_parse_xdfn(line, strlen(line), buf, v, 4, &n), IPMM_XDFN_OK);
	snprintf(line, sizeof(line), "%.*s=1", IPMM_NAME_MAX + 1, name);
	assert_int_equal(ipmm_parse_xdfn(line, strlen(line), buf, v, 4, &n), IPMM_XDFN_SYNTAX);
	/* more pairs than the caller has room for: a syntax error, never an overflow */
	many = malloc(8 * (IPMM_VARS_MAX + 1));
	for (int i = 0; i <= IPMM_VARS_MAX; i++)
		o += (size_t)sprintf(many + o, "a=b ");
	assert_int_equal(ipmm_parse_xdfn(many, o, buf, v, IPMM_VARS_MAX, &n), IPMM_XDFN_SYNTAX);
	assert_int_equal(ipmm_parse_xdfn(many, o - 4, buf, v, IPMM_VARS_MAX, &n), IPMM_XDFN_OK);
	assert_int_equal(n, IPMM_VARS_MAX);
	free(many);
	free(v);
}

static void
test_parts(void **state)
{
	uint32_t p[8];
	size_t n;

	(void)state;
	assert_int_equal(ipmm_parse_parts(S("1,2"), p, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(p[0], 1);
	assert_int_equal(p[1], 2);
	assert_int_equal(ipmm_parse_parts(S("3,1,3"), p, 8, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(p[2], 3);
	assert_int_equal(ipmm_parse_parts(S("10000"), p, 8, &n), 0);
	assert_int_equal(ipmm_parse_parts(S("007"), p, 8, &n), 0);
	assert_int_equal(p[0], 7);
	assert_int_equal(ipmm_parse_parts(S(""), p, 8, &n), -1);
	assert_int_equal(ipmm_parse_parts(S("10001"), p, 8, &n), -1);
	assert_int_equal(ipmm_parse_parts(S("99999999999999999999999"), p, 8, &n), -1);
	assert_int_equal(ipmm_parse_parts(S("1 ,2"), p, 8, &n), -1);
	assert_int_equal(ipmm_parse_parts(S("+1"), p, 8, &n), -1);
	assert_int_equal(ipmm_parse_parts(S("1,2,3"), p, 2, &n), -1);
}

static void
test_xprt(void **state)
{
	uint32_t part;
	bool last;
	const char *bad;
	size_t bad_len;

	(void)state;
	assert_int_equal(ipmm_parse_xprt(S("1"), &part, &last, &bad, &bad_len), IPMM_XPRT_OK);
	assert_int_equal(part, 1);
	assert_false(last);
	assert_int_equal(ipmm_parse_xprt(S("12 last"), &part, &last, &bad, &bad_len),
	    IPMM_XPRT_OK);
	assert_int_equal(part, 12);
	assert_true(last);
	assert_int_equal(ipmm_parse_xprt(S("2   LAST"), &part, &last, &bad, &bad_len),
	    IPMM_XPRT_OK);
	assert_int_equal(ipmm_parse_xprt(S(""), &part, &last, &bad, &bad_len), IPMM_XPRT_NUMBER);
	assert_int_equal(ipmm_parse_xprt(S("0"), &part, &last, &bad, &bad_len), IPMM_XPRT_NUMBER);
	assert_int_equal(ipmm_parse_xprt(S("-1"), &part, &last, &bad, &bad_len), IPMM_XPRT_NUMBER);
	assert_int_equal(ipmm_parse_xprt(S("1x"), &part, &last, &bad, &bad_len), IPMM_XPRT_NUMBER);
	assert_int_equal(ipmm_parse_xprt(S("LAST"), &part, &last, &bad, &bad_len),
	    IPMM_XPRT_NUMBER);
	assert_int_equal(ipmm_parse_xprt(S("4294967297"), &part, &last, &bad, &bad_len),
	    IPMM_XPRT_NUMBER);
	assert_int_equal(ipmm_parse_xprt(S("1 NOW"), &part, &last, &bad, &bad_len),
	    IPMM_XPRT_OPTION);
	assert_int_equal(bad_len, 3);
	assert_memory_equal(bad, "NOW", 3);
	assert_int_equal(ipmm_parse_xprt(S("1 LAST x"), &part, &last, &bad, &bad_len),
	    IPMM_XPRT_OPTION);
	assert_memory_equal(bad, "x", 1);
}

/* ---------------------------------------------------------------- substitution */

struct out {
	char *p;
	size_t len, cap;
};

static int
out_sink(void *arg, const char *buf, size_t len)
{
	struct out *o = arg;

	if (o->len + len > o->cap) {
		o->cap = (o->len + len) * 2 + 64;
		o->p = realloc(o->p, o->cap);
		assert_non_null(o->p);
	}
	memcpy(o->p + o->len, buf, len);
	o->len += len;
	return 0;
}

static struct ipmm_rcpt
rcpt_of(struct ipmm_var *vars, size_t n)
{
	struct ipmm_rcpt r;

	memset(&r, 0, sizeof(r));
	strcpy(r.addr, "jane@company.com");
	r.vars = vars;
	r.n_vars = n;
	return r;
}

static void
check_subst(const struct ipmm_rcpt *r, const char *in, size_t len, const char *want)
{
	/* one call, one byte per call, and every two-piece split give the same bytes */
	for (size_t split = 0; split <= len + 1; split++) {
		struct ipmm_subst s;
		struct out o = { 0 };

		ipmm_subst_init(&s, r, "jane@company.com", "user@domain.com", "DATE", out_sink, &o);
		if (split == len + 1) {
			for (size_t i = 0; i < len; i++)
				assert_int_equal(ipmm_subst_feed(&s, in + i, 1), 0);
		} else {
			assert_int_equal(ipmm_subst_feed(&s, in, split), 0);
			assert_int_equal(ipmm_subst_feed(&s, in + split, len - split), 0);
		}
		assert_int_equal(ipmm_subst_end(&s), 0);
		if (o.len != strlen(want) || memcmp(o.p, want, o.len) != 0)
			fail_msg("split %zu of \"%s\": got \"%.*s\", want \"%s\"", split, in,
			    (int)o.len, o.p ? o.p : "", want);
		free(o.p);
	}
}

static void
test_substitution(void **state)
{
	struct ipmm_var vars[] = {
		{ "first_name", 10, "Jane", 4 },
		{ "color", 5, "red", 3 },
		{ "color", 5, "blue", 4 },		/* the last definition wins */
		{ "loop", 4, "&first_name;", 12 },	/* inserted, never read again */
		{ "empty", 5, "", 0 },
	};
	struct ipmm_rcpt r = rcpt_of(vars, 5);
	char longname[IPMM_NAME_MAX + 8];

	(void)state;
	check_subst(&r, S("Dear &first_name;,"), "Dear Jane,");
	check_subst(&r, S("&color;&color;"), "blueblue");
	check_subst(&r, S("To: <&*TO;> from &*from; on &*Date;"),
	    "To: <jane@company.com> from user@domain.com on DATE");
	check_subst(&r, S("&trade; &unknown; &First_name; &*PARTS; &*X;"),
	    "&trade; &unknown; &First_name; &*PARTS; &*X;");
	check_subst(&r, S("&loop;"), "&first_name;");
	check_subst(&r, S("[&empty;]"), "[]");
	check_subst(&r, S("& &; &&first_name; &first_name &*; a&b"),
	    "& &; &Jane &first_name &*; a&b");
	check_subst(&r, S("trailing &first_name"), "trailing &first_name");
	check_subst(&r, S("&"), "&");
	check_subst(&r, S(""), "");
	/* a name longer than any variable's passes through unchanged */
	memset(longname, 'x', sizeof(longname));
	longname[0] = '&';
	longname[IPMM_NAME_MAX + 2] = ';';
	longname[IPMM_NAME_MAX + 3] = '\0';
	check_subst(&r, longname, strlen(longname), longname);
}

/* ---------------------------------------------------------------- the job file */

/* a job as smtp_ipmm.c writes it, after a small envelope */
static char *
write_job(const char *const *rcpt_recs, size_t n_rcpts, const uint32_t *nums,
    const char *const *parts, size_t n_parts, long *body, uint64_t *size)
{
	static char path[] = "/tmp/mailgate-test-ipmm-XXXXXX";
	struct ipmm_part idx[8];
	char trailer[1024];
	FILE *f;
	int fd;
	long b;

	strcpy(path, "/tmp/mailgate-test-ipmm-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("mailgate-spool 1\nmid 5\narrival 2026-11-28T20:10:00Z\nsender <s@x.example>\n"
	    "kind ipmm-job\n\n", f);
	b = ftell(f);
	fputs(IPMM_JOB_MAGIC, f);
	for (size_t i = 0; i < n_rcpts; i++)
		fputs(rcpt_recs[i], f);
	for (size_t i = 0; i < n_parts; i++) {
		fprintf(f, "part %u\n", nums[i]);
		idx[i].n = nums[i];
		idx[i].off = (uint64_t)(ftell(f) - b);
		idx[i].len = strlen(parts[i]);
		fputs(parts[i], f);
		fputs("\n", f);
	}
	int n = ipmm_job_format_index(trailer, sizeof(trailer), idx, n_parts, n_rcpts,
	    (uint64_t)(ftell(f) - b));
	assert_true(n > 0);
	fwrite(trailer, 1, (size_t)n, f);
	*size = (uint64_t)(ftell(f) - b);
	*body = b;
	fclose(f);
	return path;
}

static void
test_job_roundtrip(void **state)
{
	static const char *const recs[] = {
		"rcpt 0 4 <jane@company.com>\nfirst_name=Jane\nlast_name=User\ncolor=red\n"
		    "*PARTS=1,2\n",
		"rcpt 1 4 <joe@company1.com>\nfirst_name=Joe\nlast_name=User\ncolor=black\n"
		    "*PARTS=1\n",
		"rcpt 2 0 <all@x.example>\n",
		"rcpt 3 2 <rev@x.example>\n*PARTS=2,1\nv=a=b&c;\n",
	};
	static const uint32_t nums[] = { 2, 1 };
	static const char *const parts[] = {
		"P.S. &first_name;\r\n",
		"To: &first_name; &last_name; <&*TO;>\r\n\r\nA &color; sprocket. &v;\r\n",
	};
	struct ipmm_job j;
	struct ipmm_rcpt r;
	char err[256], *path;
	long body;
	uint64_t size;
	const char *want[] = {
		"To: Jane User <jane@company.com>\r\n\r\nA red sprocket. &v;\r\nP.S. Jane\r\n",
		"To: Joe User <joe@company1.com>\r\n\r\nA black sprocket. &v;\r\n",
		"To: &first_name; &last_name; <all@x.example>\r\n\r\nA &color; sprocket. &v;\r\n"
		    "P.S. &first_name;\r\n",
		"P.S. &first_name;\r\nTo: &first_name; &last_name; <rev@x.example>\r\n\r\n"
		    "A &color; sprocket. a=b&c;\r\n",
	};

	(void)state;
	path = write_job(recs, 4, nums, parts, 2, &body, &size);
	/* the spool reader sees a job: its kind, no recipients, the body where we put it */
	struct spool_entry e;
	assert_int_equal(spool_entry_read(path, &e, err, sizeof(err)), 0);
	assert_string_equal(e.kind, IPMM_JOB_KIND);
	assert_int_equal(e.n_rcpts, 0);
	assert_int_equal(e.data_offset, body);
	assert_int_equal(e.size, size);
	spool_entry_free(&e);
	assert_int_equal(ipmm_job_open(&j, path, body, size, err, sizeof(err)), 0);
	assert_int_equal(j.n_rcpts, 4);
	assert_int_equal(j.n_parts, 2);
	assert_int_equal(j.parts[0].n, 1);	/* sorted */
	assert_non_null(ipmm_job_part(&j, 2));
	assert_null(ipmm_job_part(&j, 3));
	memset(&r, 0, sizeof(r));
	for (size_t i = 0; i < 4; i++) {
		struct out o = { 0 };

		assert_int_equal(ipmm_job_next(&j, &r, err, sizeof(err)), 1);
		assert_int_equal(r.rid, i);
		assert_int_equal(ipmm_assemble(&j, &r, "user@domain.com", "DATE", out_sink, &o,
		    err, sizeof(err)), 0);
		if (o.len != strlen(want[i]) || memcmp(o.p, want[i], o.len) != 0)
			fail_msg("rcpt %zu: got \"%.*s\"", i, (int)o.len, o.p ? o.p : "");
		free(o.p);
	}
	assert_string_equal(r.addr, "rev@x.example");
	assert_int_equal(ipmm_job_next(&j, &r, err, sizeof(err)), 0);
	ipmm_rcpt_free(&r);
	ipmm_job_close(&j);
	unlink(path);
}

static void
test_job_damaged(void **state)
{
	static const char *const recs[] = { "rcpt 0 1 <a@b.example>\nx=1\n" };
	static const uint32_t nums[] = { 1 };
	static const char *const parts[] = { "hello\r\n" };
	struct ipmm_job j;
	struct ipmm_rcpt r;
	char err[256], *path;
	long body;
	uint64_t size;

	(void)state;
	path = write_job(recs, 1, nums, parts, 1, &body, &size);
	/* cut short: no end line */
	assert_int_equal(ipmm_job_open(&j, path, body, size - 1, err, sizeof(err)), -1);
	/* not a job at all */
	assert_int_equal(ipmm_job_open(&j, path, 0, size, err, sizeof(err)), -1);
	assert_int_equal(ipmm_job_open(&j, path, body, 10, err, sizeof(err)), -1);
	assert_int_equal(ipmm_job_open(&j, path, body, size, err, sizeof(err)), 0);
	ipmm_job_close(&j);
	unlink(path);

	/* a recipient record that says more variables than there are lines */
	static const char *const bad[] = { "rcpt 0 3 <a@b.example>\nx=1\n" };
	path = write_job(bad, 1, nums, parts, 1, &body, &size);
	assert_int_equal(ipmm_job_open(&j, path, body, size, err, sizeof(err)), 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(ipmm_job_next(&j, &r, err, sizeof(err)), -1);
	ipmm_rcpt_free(&r);
	ipmm_job_close(&j);
	unlink(path);

	/* *PARTS naming a part the job lacks is an assembly error, not a crash */
	static const char *const lack[] = { "rcpt 0 1 <a@b.example>\n*PARTS=1,9\n" };
	path = write_job(lack, 1, nums, parts, 1, &body, &size);
	assert_int_equal(ipmm_job_open(&j, path, body, size, err, sizeof(err)), 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(ipmm_job_next(&j, &r, err, sizeof(err)), 1);
	struct out o = { 0 };
	assert_int_equal(ipmm_assemble(&j, &r, "", "", out_sink, &o, err, sizeof(err)), -1);
	free(o.p);
	ipmm_rcpt_free(&r);
	ipmm_job_close(&j);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xdfn_ok),
		cmocka_unit_test(test_xdfn_errors),
		cmocka_unit_test(test_xdfn_limits),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_xprt),
		cmocka_unit_test(test_substitution),
		cmocka_unit_test(test_job_roundtrip),
		cmocka_unit_test(test_job_damaged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
