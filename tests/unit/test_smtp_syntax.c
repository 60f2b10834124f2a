/*
 * test_smtp_syntax.c: golden tables for the command-line parsers of
 * smtp_syntax.c: verbs, paths (RFC 5321 4.1.2, limits of 4.5.3.1), ESMTP
 * parameters, HELO names, SIZE, xtext (RFC 3461) and reply echoes. Each table
 * row is one line to extend; a failure names the row. The hostile classes of
 * spec/hostile.md 6-9 and 11 (code-like strings, lengths, parameters, NUL and
 * 8-bit, relay tricks) each have rows here, and class 10 (AUTH: base64 of every
 * length mod 4, "=" and "*", missing or extra NULs, overlong fields) has the
 * SASL rows at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_syntax.h"

/* a string literal with its length, so rows may hold NUL bytes */
#define S(lit)	(lit), (sizeof(lit) - 1)

static void
span_equal(const struct smtp_span *sp, const char *want, size_t wlen, const char *row)
{
	if (sp->len != wlen || (wlen > 0 && memcmp(sp->p, want, wlen) != 0))
		fail_msg("row \"%s\": span \"%.*s\" (%zu), want \"%.*s\" (%zu)", row,
		    (int)sp->len, sp->p != NULL ? sp->p : "", sp->len, (int)wlen, want, wlen);
}

/* ---- smtp_split_command ---- */

static const struct split_row {
	const char *line;
	size_t len;
	const char *verb;
	bool verb_ok;
	const char *arg;
	size_t arg_len;
	bool bad_bytes;
} split_rows[] = {
	{ S("MAIL FROM:<a@b>"), "MAIL", true, S("FROM:<a@b>"), false },
	{ S("mail from: <a@b>"), "MAIL", true, S("from: <a@b>"), false },
	{ S("Rcpt To:<x@y>"), "RCPT", true, S("To:<x@y>"), false },
	{ S("QUIT"), "QUIT", true, S(""), false },
	{ S("quit   "), "QUIT", true, S(""), false },
	{ S("EHLO   host.example   "), "EHLO", true, S("host.example"), false },
	{ S("MAIL  FROM:<a@b>  SIZE=10"), "MAIL", true, S("FROM:<a@b>  SIZE=10"), false },
	{ S("HELO a b"), "HELO", true, S("a b"), false },
	{ S("X-VERB arg"), "X-VERB", true, S("arg"), false },
	{ S("XMRG FROM:<a@b>"), "XMRG", true, S("FROM:<a@b>"), false },
	{ S("123 x"), "123", true, S("x"), false },
	{ S("ABCDEFGHIJKLMNO x"), "ABCDEFGHIJKLMNO", true, S("x"), false },
	{ S("ABCDEFGHIJKLMNOP x"), "ABCDEFGHIJKLMNO", false, S("x"), false },
	{ S(""), "", false, S(""), false },
	{ S("   "), "", false, S(""), false },
	{ S("  QUIT"), "", false, S("QUIT"), false },
	{ S("MAIL\tFROM:<a@b>"), "MAIL?FROM:<A@B>", false, S(""), false },
	{ S("MA_IL x"), "MA_IL", false, S("x"), false },
	{ S("MAIL: x"), "MAIL:", false, S("x"), false },
	{ S("DATA\r"), "DATA?", false, S(""), true },
	{ S("QUIT\0junk"), "QUIT?JUNK", false, S(""), true },
	{ S("RCPT TO:<a@b>\n"), "RCPT", true, S("TO:<a@b>\n"), true },
	{ S("NOOP \0x"), "NOOP", true, S("\0x"), true },
	{ S("NOOP \xc3\xa9"), "NOOP", true, S("\xc3\xa9"), true },
	{ S("\xffMAIL x"), "?MAIL", false, S("x"), true },
	{ S("MAIL FROM:<a@b>\rRCPT TO:<c@d>"), "MAIL", true, S("FROM:<a@b>\rRCPT TO:<c@d>"), true },
	{ S("AUTH PLAIN AGEAYg=="), "AUTH", true, S("PLAIN AGEAYg=="), false },
	{ S("data"), "DATA", true, S(""), false },
};

static void
test_split_command(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(split_rows) / sizeof(split_rows[0]); i++) {
		const struct split_row *r = &split_rows[i];
		struct smtp_cmdline c;
		char row[65];

		smtp_echo(r->line, r->len, row);
		smtp_split_command(r->line, r->len, &c);
		if (strcmp(c.verb, r->verb) != 0)
			fail_msg("row \"%s\": verb \"%s\", want \"%s\"", row, c.verb, r->verb);
		if (c.verb_ok != r->verb_ok)
			fail_msg("row \"%s\": verb_ok %d", row, c.verb_ok);
		if (c.bad_bytes != r->bad_bytes)
			fail_msg("row \"%s\": bad_bytes %d", row, c.bad_bytes);
		span_equal(&c.arg, r->arg, r->arg_len, row);
	}
}

/* a split never reads past len: the byte after the line is poison */
static void
test_split_command_bounds(void **state)
{
	char *buf = malloc(5);

	(void)state;
	assert_non_null(buf);
	memcpy(buf, "NOOP ", 5);
	struct smtp_cmdline c;
	smtp_split_command(buf, 5, &c);
	assert_string_equal(c.verb, "NOOP");
	assert_int_equal(c.arg.len, 0);
	smtp_split_command(buf, 4, &c);
	assert_string_equal(c.verb, "NOOP");
	smtp_split_command(NULL, 0, &c);
	assert_false(c.verb_ok);
	assert_int_equal(c.arg.len, 0);
	free(buf);
}

/* ---- smtp_parse_path_arg: paths ---- */

enum { NUL_OK = 1, PM_OK = 2 };

static const struct path_row {
	const char *arg;
	size_t len;
	const char *kw;
	int flags;
	enum smtp_parse_result want;
	const char *addr;		/* OK: the addr; else: the bad token */
	size_t addr_len;
	const char *domain;		/* OK only */
	const char *unquoted;		/* OK only */
} path_rows[] = {
	/* good */
	{ S("FROM:<a@b>"), "FROM", NUL_OK, SMTP_PARSE_OK, S("a@b"), "b", "a" },
	{ S("from:<a@b>"), "FROM", NUL_OK, SMTP_PARSE_OK, S("a@b"), "b", "a" },
	{ S("FrOm: <a@b>"), "FROM", NUL_OK, SMTP_PARSE_OK, S("a@b"), "b", "a" },
	{ S("FROM:   <User@Example.COM>"), "FROM", 0, SMTP_PARSE_OK, S("User@Example.COM"),
	    "Example.COM", "User" },
	{ S("FROM:test@test.com"), "FROM", 0, SMTP_PARSE_OK, S("test@test.com"), "test.com", "test" },
	{ S("TO:<user@other.com>"), "TO", PM_OK, SMTP_PARSE_OK, S("user@other.com"), "other.com",
	    "user" },
	{ S("TO:<a.b.c@d-e.f>"), "TO", 0, SMTP_PARSE_OK, S("a.b.c@d-e.f"), "d-e.f", "a.b.c" },
	{ S("TO:<!#$%&'*+-/=?^_`{|}~@x>"), "TO", 0, SMTP_PARSE_OK, S("!#$%&'*+-/=?^_`{|}~@x"), "x",
	    "!#$%&'*+-/=?^_`{|}~" },
	{ S("TO:<a@1.2.3.4>"), "TO", 0, SMTP_PARSE_OK, S("a@1.2.3.4"), "1.2.3.4", "a" },
	{ S("TO:<a@xn--bcher-kva.example>"), "TO", 0, SMTP_PARSE_OK, S("a@xn--bcher-kva.example"),
	    "xn--bcher-kva.example", "a" },
	/* relay tricks are valid syntax (hostile.md 11): the relay check judges */
	{ S("TO:<user%host@local>"), "TO", 0, SMTP_PARSE_OK, S("user%host@local"), "local",
	    "user%host" },
	{ S("TO:<host!user@local>"), "TO", 0, SMTP_PARSE_OK, S("host!user@local"), "local",
	    "host!user" },
	{ S("TO:<\"user@host\"@local>"), "TO", 0, SMTP_PARSE_OK, S("\"user@host\"@local"), "local",
	    "user@host" },
	{ S("TO:<@a,@b.c:user@host>"), "TO", 0, SMTP_PARSE_OK, S("user@host"), "host", "user" },
	{ S("TO:<@a:user@host>"), "TO", 0, SMTP_PARSE_OK, S("user@host"), "host", "user" },
	{ S("TO:<a@[1.2.3.4]>"), "TO", 0, SMTP_PARSE_OK, S("a@[1.2.3.4]"), "[1.2.3.4]", "a" },
	{ S("TO:<a@[IPv6:::1]>"), "TO", 0, SMTP_PARSE_OK, S("a@[IPv6:::1]"), "[IPv6:::1]", "a" },
	{ S("TO:<a@[ipv6:2001:db8::1]>"), "TO", 0, SMTP_PARSE_OK, S("a@[ipv6:2001:db8::1]"),
	    "[ipv6:2001:db8::1]", "a" },
	{ S("TO:<a@[IPv6:::ffff:1.2.3.4]>"), "TO", 0, SMTP_PARSE_OK, S("a@[IPv6:::ffff:1.2.3.4]"),
	    "[IPv6:::ffff:1.2.3.4]", "a" },
	/* quoted local parts */
	{ S("TO:<\"a b\"@c>"), "TO", 0, SMTP_PARSE_OK, S("\"a b\"@c"), "c", "a b" },
	{ S("TO:<\"a\\\"b\"@c>"), "TO", 0, SMTP_PARSE_OK, S("\"a\\\"b\"@c"), "c", "a\"b" },
	{ S("TO:<\"a\\\\b\"@c>"), "TO", 0, SMTP_PARSE_OK, S("\"a\\\\b\"@c"), "c", "a\\b" },
	{ S("TO:<\"a>b\"@c>"), "TO", 0, SMTP_PARSE_OK, S("\"a>b\"@c"), "c", "a>b" },
	{ S("TO:<\"\"@c>"), "TO", 0, SMTP_PARSE_OK, S("\"\"@c"), "c", "" },
	{ S("TO:<\"a.b\"@c>"), "TO", 0, SMTP_PARSE_OK, S("\"a.b\"@c"), "c", "a.b" },
	/* code-like strings are literal data where RFC 5321 allows them (hostile.md 6) */
	{ S("TO:<${run{x}}@y>"), "TO", 0, SMTP_PARSE_OK, S("${run{x}}@y"), "y", "${run{x}}" },
	{ S("TO:<%s%n@y>"), "TO", 0, SMTP_PARSE_OK, S("%s%n@y"), "y", "%s%n" },
	{ S("TO:<\"; rm -rf /\"@y>"), "TO", 0, SMTP_PARSE_OK, S("\"; rm -rf /\"@y"), "y",
	    "; rm -rf /" },
	/* null and postmaster */
	{ S("FROM:<>"), "FROM", NUL_OK, SMTP_PARSE_OK, S(""), "", "" },
	{ S("FROM: <>"), "FROM", NUL_OK, SMTP_PARSE_OK, S(""), "", "" },
	{ S("TO:<postmaster>"), "TO", PM_OK, SMTP_PARSE_OK, S("postmaster"), "", "postmaster" },
	{ S("TO:<PostMaster>"), "TO", PM_OK, SMTP_PARSE_OK, S("PostMaster"), "", "PostMaster" },
	{ S("TO:postmaster"), "TO", PM_OK, SMTP_PARSE_OK, S("postmaster"), "", "postmaster" },
	{ S("TO:<postmaster@example.com>"), "TO", PM_OK, SMTP_PARSE_OK, S("postmaster@example.com"),
	    "example.com", "postmaster" },

	/* bad keyword: the whole argument */
	{ S("FORM:<a@b>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("FORM:<a@b>"), NULL, NULL },
	{ S("FROM <a@b>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("FROM <a@b>"), NULL, NULL },
	{ S("FROM :<a@b>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("FROM :<a@b>"), NULL, NULL },
	{ S("FROM"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("FROM"), NULL, NULL },
	{ S("FROM:"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("FROM:"), NULL, NULL },
	{ S("FROM:   "), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("FROM:   "), NULL, NULL },
	{ S("TO:<a@b>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("TO:<a@b>"), NULL, NULL },
	{ S("FROMX:<a@b>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("FROMX:<a@b>"), NULL, NULL },
	{ S(""), "TO", 0, SMTP_PARSE_SYNTAX, S(""), NULL, NULL },
	/* bad path: the path */
	{ S("FROM:<a@b"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<a@b"), NULL, NULL },
	{ S("FROM:<a@b SIZE=1"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<a@b"), NULL, NULL },
	{ S("FROM:<a@b>>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<a@b>>"), NULL, NULL },
	{ S("FROM:<a@b>SIZE=1"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<a@b>SIZE=1"), NULL, NULL },
	{ S("FROM:<a@b>\tSIZE=1"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<a@b>\tSIZE=1"), NULL, NULL },
	{ S("TO:<a@b>,<c@d>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b>,<c@d>"), NULL, NULL },
	{ S("FROM:<<a@b>>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<<a@b>>"), NULL, NULL },
	{ S("TO:<>"), "TO", PM_OK, SMTP_PARSE_SYNTAX, S("<>"), NULL, NULL },
	{ S("TO:< >"), "TO", 0, SMTP_PARSE_SYNTAX, S("< >"), NULL, NULL },
	{ S("FROM:<postmaster>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<postmaster>"), NULL, NULL },
	{ S("TO:<postmaster.>"), "TO", PM_OK, SMTP_PARSE_SYNTAX, S("<postmaster.>"), NULL, NULL },
	{ S("TO:<@>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@>"), NULL, NULL },
	{ S("TO:<a@>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@>"), NULL, NULL },
	{ S("TO:<@b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@b>"), NULL, NULL },
	{ S("TO:<a b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a b@c>"), NULL, NULL },
	{ S("TO:<a@b c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b c>"), NULL, NULL },
	{ S("TO:<a@b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b@c>"), NULL, NULL },
	{ S("TO:<user@host@local>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<user@host@local>"), NULL, NULL },
	{ S("TO:<ab>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<ab>"), NULL, NULL },
	{ S("TO:<.a@b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<.a@b>"), NULL, NULL },
	{ S("TO:<a.@b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a.@b>"), NULL, NULL },
	{ S("TO:<a..b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a..b@c>"), NULL, NULL },
	{ S("TO:<a@-b.c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@-b.c>"), NULL, NULL },
	{ S("TO:<a@b-.c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b-.c>"), NULL, NULL },
	{ S("TO:<a@b..c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b..c>"), NULL, NULL },
	{ S("TO:<a@b.>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b.>"), NULL, NULL },
	{ S("TO:<a@.b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@.b>"), NULL, NULL },
	{ S("TO:<a@b_c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b_c>"), NULL, NULL },
	{ S("TO:<a@b/c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b/c>"), NULL, NULL },
	{ S("TO:<a(b)@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a(b)@c>"), NULL, NULL },
	{ S("TO:<a,b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a,b@c>"), NULL, NULL },
	{ S("TO:<a\"b\"@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a\"b\"@c>"), NULL, NULL },
	{ S("TO:<\"a\"b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<\"a\"b@c>"), NULL, NULL },
	{ S("TO:<\"a@b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<\"a@b>"), NULL, NULL },
	{ S("TO:<\"a\\\"@b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<\"a\\\"@b>"), NULL, NULL },
	{ S("TO:<\"a\rb\"@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<\"a\rb\"@c>"), NULL, NULL },
	{ S("TO:<\"a\\\rb\"@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<\"a\\\rb\"@c>"), NULL, NULL },
	{ S("TO:<\"a\xc3\xa9\"@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<\"a\xc3\xa9\"@c>"), NULL, NULL },
	{ S("TO:<\"a\0\"@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<\"a\0\"@c>"), NULL, NULL },
	{ S("TO:<a\xc3\xa9@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a\xc3\xa9@c>"), NULL, NULL },
	{ S("TO:<a@b\xc3\xa9>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b\xc3\xa9>"), NULL, NULL },
	{ S("TO:<a\0@b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a\0@b>"), NULL, NULL },
	{ S("TO:<a@b\0.c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b\0.c>"), NULL, NULL },
	{ S("TO:<a@b\r\n>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@b\r\n>"), NULL, NULL },
	/* source routes */
	{ S("TO:<@a,b:c@d>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@a,b:c@d>"), NULL, NULL },
	{ S("TO:<@a:b>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@a:b>"), NULL, NULL },
	{ S("TO:<@a,@:b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@a,@:b@c>"), NULL, NULL },
	{ S("TO:<@:b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@:b@c>"), NULL, NULL },
	{ S("TO:<@-a:b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@-a:b@c>"), NULL, NULL },
	{ S("TO:<@[1.2.3.4]:b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@[1.2.3.4]:b@c>"), NULL, NULL },
	{ S("TO:<@a:>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<@a:>"), NULL, NULL },
	/* address literals */
	{ S("TO:<a@[1.2.3]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[1.2.3]>"), NULL, NULL },
	{ S("TO:<a@[256.1.1.1]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[256.1.1.1]>"), NULL, NULL },
	{ S("TO:<a@[1.2.3.4.5]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[1.2.3.4.5]>"), NULL, NULL },
	{ S("TO:<a@[::1]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[::1]>"), NULL, NULL },
	{ S("TO:<a@[IPv6:1.2.3.4]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[IPv6:1.2.3.4]>"), NULL, NULL },
	{ S("TO:<a@[IPv6:fe80::1%eth0]>"), "TO", 0, SMTP_PARSE_SYNTAX,
	    S("<a@[IPv6:fe80::1%eth0]>"), NULL, NULL },
	{ S("TO:<a@[IPv6:]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[IPv6:]>"), NULL, NULL },
	{ S("TO:<a@[]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[]>"), NULL, NULL },
	{ S("TO:<a@[1.2.3.4>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[1.2.3.4>"), NULL, NULL },
	{ S("TO:<a@[1.2.3.4\0]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[1.2.3.4\0]>"), NULL, NULL },
	{ S("TO:<a@[1.2.3.4]x>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[1.2.3.4]x>"), NULL, NULL },
	{ S("TO:<a@[x:y]>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a@[x:y]>"), NULL, NULL },
	/* code-like strings that RFC 5321 forbids (CVE-2020-7247, CVE-2019-10149) */
	{ S("FROM:<;sleep 66;>"), "FROM", NUL_OK, SMTP_PARSE_SYNTAX, S("<;sleep 66;>"), NULL, NULL },
	{ S("TO:<${run{/bin/sh -c id}}@y>"), "TO", 0, SMTP_PARSE_SYNTAX,
	    S("<${run{/bin/sh -c id}}@y>"), NULL, NULL },
	{ S("TO:<a\\b@c>"), "TO", 0, SMTP_PARSE_SYNTAX, S("<a\\b@c>"), NULL, NULL },
	/* bare addresses end at the first space */
	{ S("FROM:a@b =c"), "FROM", 0, SMTP_PARSE_SYNTAX, S("=c"), NULL, NULL },
	{ S("FROM:a b@c"), "FROM", 0, SMTP_PARSE_SYNTAX, S("a"), NULL, NULL },
	{ S("TO:Postmaster"), "TO", 0, SMTP_PARSE_SYNTAX, S("Postmaster"), NULL, NULL },
};

static void
test_paths(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(path_rows) / sizeof(path_rows[0]); i++) {
		const struct path_row *r = &path_rows[i];
		struct smtp_span arg = { r->arg, r->len }, bad;
		struct smtp_path path;
		struct smtp_params params;
		enum smtp_parse_result res;
		char row[65];

		smtp_echo(r->arg, r->len, row);
		res = smtp_parse_path_arg(&arg, r->kw, r->flags & NUL_OK, r->flags & PM_OK, &path,
		    &params, &bad);
		if (res != r->want)
			fail_msg("row \"%s\": result %d, want %d", row, res, r->want);
		if (res != SMTP_PARSE_OK) {
			span_equal(&bad, r->addr, r->addr_len, row);
			assert_true(bad.p >= r->arg && bad.p + bad.len <= r->arg + r->len);
			continue;
		}
		if (strcmp(path.addr, r->addr) != 0 || path.addr_len != strlen(r->addr))
			fail_msg("row \"%s\": addr \"%s\", want \"%s\"", row, path.addr, r->addr);
		if (strcmp(path.domain, r->domain) != 0)
			fail_msg("row \"%s\": domain \"%s\", want \"%s\"", row, path.domain, r->domain);
		if (strcmp(path.local_unquoted, r->unquoted) != 0)
			fail_msg("row \"%s\": local_unquoted \"%s\", want \"%s\"", row,
			    path.local_unquoted, r->unquoted);
		assert_true(path.domain >= path.addr && path.domain <= path.addr + path.addr_len);
		if (!path.null && !path.postmaster) {
			assert_int_equal(path.addr[path.local_len], '@');
			assert_ptr_equal(path.domain, path.addr + path.local_len + 1);
		}
		assert_int_equal(params.n, 0);
	}
}

static void
test_path_flags(void **state)
{
	struct smtp_path path;
	struct smtp_params params;
	struct smtp_span bad, arg;

	(void)state;
	arg = (struct smtp_span){ S("FROM:<>") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &params, &bad),
	    SMTP_PARSE_OK);
	assert_true(path.null);
	assert_false(path.postmaster);
	assert_int_equal(path.addr_len, 0);
	assert_string_equal(path.domain, "");

	arg = (struct smtp_span){ S("TO:<postmaster>") };
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &params, &bad),
	    SMTP_PARSE_OK);
	assert_true(path.postmaster);
	assert_false(path.null);
	assert_int_equal(path.local_len, 10);

	arg = (struct smtp_span){ S("TO:<\"user@host\"@local>") };
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &params, &bad),
	    SMTP_PARSE_OK);
	assert_true(path.quoted_local);
	assert_false(path.domain_literal);
	assert_int_equal(path.local_len, 11);

	arg = (struct smtp_span){ S("TO:<a@[IPv6:::1]>") };
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &params, &bad),
	    SMTP_PARSE_OK);
	assert_true(path.domain_literal);
	assert_false(path.quoted_local);

	/* an error leaves an empty path, never half a parse */
	arg = (struct smtp_span){ S("TO:<a@b@c>") };
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &params, &bad),
	    SMTP_PARSE_SYNTAX);
	assert_int_equal(path.addr_len, 0);
	assert_string_equal(path.addr, "");
	assert_string_equal(path.domain, "");

	/* the arg is not NUL-terminated: nothing past len is read */
	char *heap = malloc(8);
	assert_non_null(heap);
	memcpy(heap, "TO:<a@b>", 8);
	arg = (struct smtp_span){ heap, 8 };
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &params, &bad),
	    SMTP_PARSE_OK);
	arg.len = 7;
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &params, &bad),
	    SMTP_PARSE_SYNTAX);
	free(heap);

	arg = (struct smtp_span){ NULL, 0 };
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &params, &bad),
	    SMTP_PARSE_SYNTAX);
}

/* ---- lengths (RFC 5321 4.5.3.1, CVE-2019-16928) ---- */

static enum smtp_parse_result
parse_built(const char *local, size_t llen, const char *dom, size_t dlen, bool brackets,
    struct smtp_path *path, struct smtp_span *bad, char *buf, size_t cap)
{
	struct smtp_params params;
	struct smtp_span arg;
	size_t n = 0;

	assert_true(llen + dlen + 8 <= cap);
	memcpy(buf + n, "TO:", 3);
	n += 3;
	if (brackets)
		buf[n++] = '<';
	memcpy(buf + n, local, llen);
	n += llen;
	buf[n++] = '@';
	memcpy(buf + n, dom, dlen);
	n += dlen;
	if (brackets)
		buf[n++] = '>';
	arg.p = buf;
	arg.len = n;
	return smtp_parse_path_arg(&arg, "TO", false, false, path, &params, bad);
}

/* a host name of n octets: labels of 62 'a's joined by dots */
static void
make_domain(char *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = (i % 63 == 62) ? '.' : 'a';
	if (d[n - 1] == '.')
		d[n - 1] = 'b';
}

static void
test_path_lengths(void **state)
{
	static char buf[2048], local[1024], dom[1024];
	struct smtp_path path;
	struct smtp_span bad;

	(void)state;
	memset(local, 'l', sizeof(local));

	/* local part: 64 is fine, 65 is too long, and bad names the path */
	assert_int_equal(parse_built(local, 64, "b", 1, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_OK);
	assert_int_equal(path.local_len, 64);
	assert_int_equal(strlen(path.local_unquoted), 64);
	assert_int_equal(parse_built(local, 65, "b", 1, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);
	assert_int_equal(bad.len, 65 + 4);
	assert_int_equal(bad.p[0], '<');
	assert_int_equal(parse_built(local, 65, "b", 1, false, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);
	assert_int_equal(parse_built(local, 1000, "b", 1, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);

	/* a quoted local part counts its quotes: "62 chars" is 64 */
	local[0] = '"';
	local[63] = '"';
	assert_int_equal(parse_built(local, 64, "b", 1, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_OK);
	assert_int_equal(strlen(path.local_unquoted), 62);
	local[63] = 'l';
	local[64] = '"';
	assert_int_equal(parse_built(local, 65, "b", 1, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);
	memset(local, 'l', sizeof(local));

	/* domain: 255 is a valid name, 256 is not (4.5.3.1.2) */
	make_domain(dom, 255);
	assert_true(smtp_valid_helo(dom, 255));
	make_domain(dom, 256);
	assert_false(smtp_valid_helo(dom, 256));
	assert_int_equal(parse_built(local, 1, dom, 256, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);
	make_domain(dom, 255);
	/* <a@ + 255 + > is 259 octets: past the path limit of 256 (4.5.3.1.3) */
	assert_int_equal(parse_built(local, 1, dom, 255, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);
	assert_int_equal(bad.len, 259);

	/* path: 256 octets with its brackets is the most */
	make_domain(dom, 252);
	assert_int_equal(parse_built(local, 1, dom, 252, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_OK);
	assert_int_equal(path.addr_len, 254);
	make_domain(dom, 253);
	assert_int_equal(parse_built(local, 1, dom, 253, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);
	/* a bare address is measured as if it had its brackets */
	make_domain(dom, 252);
	assert_int_equal(parse_built(local, 1, dom, 252, false, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_OK);
	make_domain(dom, 253);
	assert_int_equal(parse_built(local, 1, dom, 253, false, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);
	/* "<" 64 "@" 189 ">" is 256 */
	make_domain(dom, 189);
	assert_int_equal(parse_built(local, 64, dom, 189, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_OK);
	make_domain(dom, 190);
	assert_int_equal(parse_built(local, 64, dom, 190, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_TOO_LONG);

	/* a label of 64 octets is no label (RFC 1035 2.3.4) */
	memset(dom, 'a', 64);
	assert_int_equal(parse_built(local, 1, dom, 63, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_OK);
	assert_int_equal(parse_built(local, 1, dom, 64, true, &path, &bad, buf, sizeof(buf)),
	    SMTP_PARSE_SYNTAX);

	/* a long source route makes the path too long, though it is dropped */
	{
		char arg[400];
		struct smtp_span a;
		struct smtp_params params;
		size_t n = 0;
		memcpy(arg, "TO:<", 4);
		n = 4;
		for (int k = 0; k < 30; k++) {
			memcpy(arg + n, k == 0 ? "@abcdefgh" : ",@abcdefgh", k == 0 ? 9 : 10);
			n += k == 0 ? 9 : 10;
		}
		memcpy(arg + n, ":a@b>", 5);
		n += 5;
		a = (struct smtp_span){ arg, n };
		assert_int_equal(smtp_parse_path_arg(&a, "TO", false, false, &path, &params, &bad),
		    SMTP_PARSE_TOO_LONG);
		/* and a short one is fine */
		a = (struct smtp_span){ S("TO:<@abcdefgh,@x.y:a@b>") };
		assert_int_equal(smtp_parse_path_arg(&a, "TO", false, false, &path, &params, &bad),
		    SMTP_PARSE_OK);
		assert_string_equal(path.addr, "a@b");
	}

	/* a 1 MiB argument is no trouble */
	{
		size_t n = 1 << 20;
		char *big = malloc(n);
		struct smtp_span a;
		struct smtp_params params;
		assert_non_null(big);
		memcpy(big, "TO:<", 4);
		memset(big + 4, 'x', n - 4);
		a = (struct smtp_span){ big, n };
		assert_int_equal(smtp_parse_path_arg(&a, "TO", false, false, &path, &params, &bad),
		    SMTP_PARSE_SYNTAX);
		big[n - 3] = '@';
		big[n - 1] = '>';
		assert_int_equal(smtp_parse_path_arg(&a, "TO", false, false, &path, &params, &bad),
		    SMTP_PARSE_TOO_LONG);
		free(big);
	}
}

/* ---- parameters ---- */

static void
test_params_good(void **state)
{
	struct smtp_path path;
	struct smtp_params pa;
	struct smtp_span bad, arg;

	(void)state;
	arg = (struct smtp_span){ S("FROM:<a@b> SIZE=100 BODY=8BITMIME") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_int_equal(pa.n, 2);
	assert_string_equal(pa.p[0].key, "SIZE");
	assert_true(pa.p[0].has_value);
	span_equal(&pa.p[0].value, S("100"), "size");
	assert_string_equal(pa.p[1].key, "BODY");
	span_equal(&pa.p[1].value, S("8BITMIME"), "body");

	/* keywords are upper-cased; key_raw keeps them as written for the 504 echo */
	arg = (struct smtp_span){ S("FROM:<a@b>   size=1   x-Foo-9=bar  smtputf8  ") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_int_equal(pa.n, 3);
	assert_string_equal(pa.p[0].key, "SIZE");
	span_equal(&pa.p[0].key_raw, S("size"), "raw");
	assert_string_equal(pa.p[1].key, "X-FOO-9");
	span_equal(&pa.p[1].key_raw, S("x-Foo-9"), "raw");
	span_equal(&pa.p[1].value, S("bar"), "value");
	assert_string_equal(pa.p[2].key, "SMTPUTF8");
	assert_false(pa.p[2].has_value);
	assert_int_equal(pa.p[2].value.len, 0);

	/* "KEY=": a value that is there and empty */
	arg = (struct smtp_span){ S("FROM:<a@b> SIZE=") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_int_equal(pa.n, 1);
	assert_true(pa.p[0].has_value);
	assert_int_equal(pa.p[0].value.len, 0);

	/* the parser does not judge keys: FOO is the session's 504 */
	arg = (struct smtp_span){ S("TO:<a@b> FOO=1 NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c") };
	assert_int_equal(smtp_parse_path_arg(&arg, "TO", false, true, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_int_equal(pa.n, 3);
	span_equal(&pa.p[2].value, S("rfc822;a+2Bb@c"), "orcpt");

	/* null and bare paths take params too */
	arg = (struct smtp_span){ S("FROM:<> SIZE=1") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_true(path.null);
	assert_int_equal(pa.n, 1);
	arg = (struct smtp_span){ S("FROM:a@b SIZE=1") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_string_equal(path.addr, "a@b");
	assert_int_equal(pa.n, 1);

	/* a key of 31 octets fits key[] */
	arg = (struct smtp_span){ S("FROM:<a@b> ABCDEFGHIJKLMNOPQRSTUVWXYZ01234=1") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_string_equal(pa.p[0].key, "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234");

	/* a longer one is cut in key[] but whole in key_raw: the session answers 504 with it */
	arg = (struct smtp_span){ S("FROM:<a@b> ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=1") };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_string_equal(pa.p[0].key, "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234");
	span_equal(&pa.p[0].key_raw, S("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), "long key");
}

static const struct param_row {
	const char *arg;
	size_t len;
	const char *bad;
} param_bad_rows[] = {
	{ S("FROM:<a@b> SIZE=1 size=2"), "size=2" },
	{ S("FROM:<a@b> BODY=7BIT SIZE=1 Body=8BITMIME"), "Body=8BITMIME" },
	{ S("FROM:<a@b> SMTPUTF8 SMTPUTF8"), "SMTPUTF8" },
	{ S("FROM:<a@b> =x"), "=x" },
	{ S("FROM:<a@b> ="), "=" },
	{ S("FROM:<a@b> -X=1"), "-X=1" },
	{ S("FROM:<a@b> X_Y=1"), "X_Y=1" },
	{ S("FROM:<a@b> X.Y"), "X.Y" },
	{ S("FROM:<a@b> A=b=c"), "A=b=c" },
	{ S("FROM:<a@b> A=="), "A==" },
	{ S("FROM:<a@b> A=\x01"), "A=\x01" },
	{ S("FROM:<a@b> A=\x7f"), "A=\x7f" },
	{ S("FROM:<a@b> A=\xc3\xa9"), "A=\xc3\xa9" },
	{ S("FROM:<a@b> A=x\ty"), "A=x\ty" },
	{ S("FROM:<a@b> \xc3\xa9=1"), "\xc3\xa9=1" },
	{ S("FROM:<a@b> SIZE=1 A\rB=2"), "A\rB=2" },
	{ S("FROM:<a@b> LONG-KEY-ABCDEFGHIJKLMNOPQRSTUVWXYZ=1 long-key-abcdefghijklmnopqrstuvwxyz=2"),
	    "long-key-abcdefghijklmnopqrstuvwxyz=2" },
};

static void
test_params_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(param_bad_rows) / sizeof(param_bad_rows[0]); i++) {
		const struct param_row *r = &param_bad_rows[i];
		struct smtp_span arg = { r->arg, r->len }, bad;
		struct smtp_path path;
		struct smtp_params pa;
		char row[65];

		smtp_echo(r->arg, r->len, row);
		if (smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad) !=
		    SMTP_PARSE_SYNTAX)
			fail_msg("row \"%s\": not a syntax error", row);
		span_equal(&bad, r->bad, strlen(r->bad), row);
	}
}

static void
test_params_too_many(void **state)
{
	char buf[512];
	struct smtp_path path;
	struct smtp_params pa;
	struct smtp_span bad, arg;
	size_t n;

	(void)state;
	n = (size_t)snprintf(buf, sizeof(buf), "FROM:<a@b>");
	for (int k = 0; k < SMTP_PARAMS_MAX; k++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " K%d=%d", k, k);
	arg = (struct smtp_span){ buf, n };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_OK);
	assert_int_equal(pa.n, SMTP_PARAMS_MAX);
	assert_string_equal(pa.p[15].key, "K15");

	n += (size_t)snprintf(buf + n, sizeof(buf) - n, " K16");
	arg = (struct smtp_span){ buf, n };
	assert_int_equal(smtp_parse_path_arg(&arg, "FROM", true, false, &path, &pa, &bad),
	    SMTP_PARSE_SYNTAX);
	span_equal(&bad, S("K16"), "17th");
}

/* ---- HELO ---- */

static const struct helo_row {
	const char *s;
	size_t len;
	bool ok;
} helo_rows[] = {
	{ S("localhost"), true },
	{ S("my_pc"), true },
	{ S("[127.0.0.1]"), true },
	{ S("mail.example.com"), true },
	{ S("mail.example.com."), true },
	{ S("MAIL-1.Example.COM"), true },
	{ S("[IPv6:::1]"), true },
	{ S("[IPv6:2001:db8::25]"), true },
	{ S("123"), true },
	{ S("a"), true },
	{ S(""), false },
	{ S("a b"), false },
	{ S("a\tb"), false },
	{ S("a\rb"), false },
	{ S("a\nb"), false },
	{ S("a\0b"), false },
	{ S("\xc3\xa9t\xc3\xa9"), false },
	{ S("[1.2.3.4"), false },
	{ S("[999.1.1.1]"), false },
	{ S("[::1]"), false },
	{ S("[1.2.3.4\0]"), false },
	{ S("[]"), false },
	{ S("a/b"), false },
	{ S("a@b"), false },
	{ S("${run{x}}"), false },
	{ S("-"), false },
	{ S("."), false },
	{ S("host;id"), false },
};

static void
test_helo(void **state)
{
	char big[300];

	(void)state;
	for (size_t i = 0; i < sizeof(helo_rows) / sizeof(helo_rows[0]); i++) {
		char row[65];
		smtp_echo(helo_rows[i].s, helo_rows[i].len, row);
		if (smtp_valid_helo(helo_rows[i].s, helo_rows[i].len) != helo_rows[i].ok)
			fail_msg("row \"%s\": want %d", row, helo_rows[i].ok);
	}
	memset(big, 'a', sizeof(big));
	assert_true(smtp_valid_helo(big, 255));
	assert_false(smtp_valid_helo(big, 256));
	/* len is the end: "localhost" in a longer buffer */
	assert_true(smtp_valid_helo("localhost junk", 9));
}

/* ---- SIZE ---- */

static const struct size_row {
	const char *s;
	size_t len;
	int ret;
	uint64_t v;
} size_rows[] = {
	{ S("0"), 0, 0 },
	{ S("100"), 0, 100 },
	{ S("000123"), 0, 123 },
	{ S("10485760"), 0, 10485760 },
	{ S("18446744073709551614"), 0, UINT64_MAX - 1 },
	{ S("18446744073709551615"), 0, UINT64_MAX },
	{ S("18446744073709551616"), 0, UINT64_MAX },
	{ S("18446744073709551620"), 0, UINT64_MAX },
	{ S("99999999999999999999"), 0, UINT64_MAX },
	{ S("36893488147419103232"), 0, UINT64_MAX },	/* 2^65: a wrap would give 0 */
	{ S("9999999999999999999999999999999999999999999999999999999999999999"), 0, UINT64_MAX },
	{ S(""), -1, 0 },
	{ S("-1"), -1, 0 },
	{ S("12a"), -1, 0 },
	{ S("+5"), -1, 0 },
	{ S(" 5"), -1, 0 },
	{ S("5 "), -1, 0 },
	{ S("0x10"), -1, 0 },
	{ S("1\0"), -1, 0 },
	{ S("1.5"), -1, 0 },
};

static void
test_size_value(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(size_rows) / sizeof(size_rows[0]); i++) {
		struct smtp_span v = { size_rows[i].s, size_rows[i].len };
		uint64_t out = 42;
		int r = smtp_parse_size_value(&v, &out);
		if (r != size_rows[i].ret)
			fail_msg("row %zu \"%s\": ret %d", i, size_rows[i].s, r);
		if (r == 0 && out != size_rows[i].v)
			fail_msg("row %zu \"%s\": %llu", i, size_rows[i].s, (unsigned long long)out);
	}
	/* a thousand digits saturate, never wrap */
	char many[1000];
	memset(many, '9', sizeof(many));
	struct smtp_span v = { many, sizeof(many) };
	uint64_t out = 0;
	assert_int_equal(smtp_parse_size_value(&v, &out), 0);
	assert_true(out == UINT64_MAX);
	assert_int_equal(smtp_parse_size_value(NULL, &out), -1);
}

/* ---- xtext ---- */

static const struct xtext_row {
	const char *in;
	size_t len;
	int ret;
	const char *out;
} xtext_rows[] = {
	{ S("abc"), 3, "abc" },
	{ S(""), 0, "" },
	{ S("a+2Bb"), 3, "a+b" },
	{ S("+3D"), 1, "=" },
	{ S("+20"), 1, " " },
	{ S("+7E"), 1, "~" },
	{ S("+41+42"), 2, "AB" },
	{ S("rfc822;user+40host"), 16, "rfc822;user@host" },
	{ S("a+2bb"), -1, NULL },		/* lower-case hex (RFC 3461 4) */
	{ S("a+2B+"), -1, NULL },
	{ S("+2"), -1, NULL },
	{ S("+"), -1, NULL },
	{ S("+GG"), -1, NULL },
	{ S("+ 20"), -1, NULL },
	{ S("a+b"), -1, NULL },
	{ S("+0D"), -1, NULL },			/* CR */
	{ S("+0A"), -1, NULL },			/* LF */
	{ S("+00"), -1, NULL },			/* NUL */
	{ S("+09"), -1, NULL },
	{ S("+1B"), -1, NULL },
	{ S("+7F"), -1, NULL },
	{ S("+80"), -1, NULL },
	{ S("+FF"), -1, NULL },
	{ S("a=b"), -1, NULL },
	{ S("a b"), -1, NULL },
	{ S("a\rb"), -1, NULL },
	{ S("a\0b"), -1, NULL },
	{ S("\xc3\xa9"), -1, NULL },
	{ S("a\x7f"), -1, NULL },
};

static void
test_xtext(void **state)
{
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(xtext_rows) / sizeof(xtext_rows[0]); i++) {
		struct smtp_span in = { xtext_rows[i].in, xtext_rows[i].len };
		char row[65];
		int r = smtp_xtext_decode(&in, out, sizeof(out));

		smtp_echo(xtext_rows[i].in, xtext_rows[i].len, row);
		if (r != xtext_rows[i].ret)
			fail_msg("row \"%s\": ret %d, want %d", row, r, xtext_rows[i].ret);
		if (r >= 0 && strcmp(out, xtext_rows[i].out) != 0)
			fail_msg("row \"%s\": \"%s\"", row, out);
	}

	/* cap holds the NUL: 4 decoded bytes need 5 */
	struct smtp_span in = { S("abcd") };
	assert_int_equal(smtp_xtext_decode(&in, out, 4), -1);
	assert_int_equal(smtp_xtext_decode(&in, out, 5), 4);
	assert_string_equal(out, "abcd");
	in = (struct smtp_span){ S("ab+2B") };
	assert_int_equal(smtp_xtext_decode(&in, out, 3), -1);
	assert_int_equal(smtp_xtext_decode(&in, out, 4), 3);
	assert_int_equal(smtp_xtext_decode(&in, out, 0), -1);
	in = (struct smtp_span){ S("") };
	assert_int_equal(smtp_xtext_decode(&in, out, 1), 0);
	assert_string_equal(out, "");
}

/* ---- echo ---- */

static void
test_echo(void **state)
{
	char out[65], in[100];

	(void)state;
	assert_string_equal(smtp_echo(S("abc"), out), "abc");
	assert_string_equal(smtp_echo(S("a\r\nb"), out), "a??b");
	assert_string_equal(smtp_echo(S("\0"), out), "?");
	assert_string_equal(smtp_echo(S("\xc3\xa9\x7f\x1f~ "), out), "????~ ");
	assert_string_equal(smtp_echo(NULL, 0, out), "");
	memset(in, 'x', sizeof(in));
	smtp_echo(in, sizeof(in), out);
	assert_int_equal(strlen(out), 64);
	smtp_echo(in, 64, out);
	assert_int_equal(strlen(out), 64);
	smtp_echo(in, 63, out);
	assert_int_equal(strlen(out), 63);
	assert_ptr_equal(smtp_echo(in, 1, out), out);
}

/* random arguments: no crash, bad inside the input, and what parses re-parses the same */
static uint32_t
xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
test_random_args(void **state)
{
	static const char *tok[] = {
		"a", "b.", "x", "\"", "\\", " ", "@", "@", "x.y", "[1.2.3.4]", "[IPv6:::1]", "<",
		">", ":", ",", "@r", "-", "%", "!", "\0", "\xff", "=", " SIZE=1", "postmaster",
		"\r", ".", "..", "[", "]",
	};
	uint32_t seed = 0xc0ffee;
	char arg[300], again[300];
	unsigned ok = 0;

	(void)state;
	for (int iter = 0; iter < 200000; iter++) {
		struct smtp_span a, bad;
		struct smtp_path path, p2;
		struct smtp_params pa, pa2;
		size_t n = 3, ntok = xorshift(&seed) % 8;
		enum smtp_parse_result r;

		memcpy(arg, "TO:", 3);
		if (xorshift(&seed) % 4 != 0)
			arg[n++] = '<';
		for (size_t k = 0; k < ntok; k++) {
			const char *t = tok[xorshift(&seed) % (sizeof(tok) / sizeof(tok[0]))];
			size_t l = t[0] == '\0' ? 1 : strlen(t);
			memcpy(arg + n, t, l);
			n += l;
		}
		if (xorshift(&seed) % 2)
			arg[n++] = '>';
		a = (struct smtp_span){ arg, n };
		r = smtp_parse_path_arg(&a, "TO", seed & 1, seed & 2, &path, &pa, &bad);
		if (r != SMTP_PARSE_OK) {
			assert_true(bad.p >= arg && bad.p + bad.len <= arg + n);
			assert_int_equal(path.addr_len, 0);
			continue;
		}
		ok++;
		assert_true(path.addr_len <= SMTP_PATH_MAX);
		assert_true(path.local_len <= SMTP_LOCAL_MAX);
		assert_true(strlen(path.domain) <= SMTP_DOMAIN_MAX);
		assert_int_equal(strlen(path.addr), path.addr_len);
		for (size_t k = 0; k < path.addr_len; k++)
			assert_true(path.addr[k] >= 0x20 && path.addr[k] <= 0x7e);
		if (path.null || path.postmaster)
			continue;
		n = (size_t)snprintf(again, sizeof(again), "TO:<%s>", path.addr);
		a = (struct smtp_span){ again, n };
		assert_int_equal(smtp_parse_path_arg(&a, "TO", false, false, &p2, &pa2, &bad),
		    SMTP_PARSE_OK);
		assert_string_equal(p2.addr, path.addr);
		assert_string_equal(p2.local_unquoted, path.local_unquoted);
		assert_int_equal(p2.quoted_local, path.quoted_local);
		assert_int_equal(p2.domain_literal, path.domain_literal);
	}
	/* the generator must reach the good paths too, or this test proves little */
	assert_true(ok > 2000);
}

/* ---- SASL: base64 (RFC 4648), responses (RFC 4954 4), PLAIN (RFC 4616) ---- */

static void
test_base64_decode(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;		/* NULL: must fail */
		size_t olen;
	} rows[] = {
		/* RFC 4648 10 */
		{ S(""), "", 0 },
		{ S("Zg=="), S("f") },
		{ S("Zm8="), S("fo") },
		{ S("Zm9v"), S("foo") },
		{ S("Zm9vYg=="), S("foob") },
		{ S("Zm9vYmE="), S("fooba") },
		{ S("Zm9vYmFy"), S("foobar") },
		{ S("AGFsaWNlAHNlY3JldA=="), S("\0alice\0secret") },
		{ S("+/+/"), S("\xfb\xff\xbf") },
		{ S("AAAA"), S("\0\0\0") },
		/* every length mod 4 that is not 0: padding is mandatory */
		{ S("Z"), NULL, 0 },
		{ S("Zg"), NULL, 0 },
		{ S("Zg="), NULL, 0 },
		{ S("Zm9"), NULL, 0 },
		{ S("Zm9vY"), NULL, 0 },
		{ S("Zm9vYg"), NULL, 0 },
		{ S("Zm9vYmF"), NULL, 0 },
		{ S("="), NULL, 0 },
		{ S("=="), NULL, 0 },
		/* padding in the wrong place, too much of it, non-zero pad bits */
		{ S("===="), NULL, 0 },
		{ S("Z==="), NULL, 0 },
		{ S("Zg=a"), NULL, 0 },
		{ S("Z=g="), NULL, 0 },
		{ S("Zg==Zg=="), NULL, 0 },
		{ S("Zm8=Zm9v"), NULL, 0 },
		{ S("Zh=="), NULL, 0 },
		{ S("Zm9="), NULL, 0 },
		/* no white space, no other alphabet, no NUL, no 8-bit */
		{ S("Zm9v\n"), NULL, 0 },
		{ S("Zm 9v"), NULL, 0 },
		{ S(" Zm9v"), NULL, 0 },
		{ S("Zm9v\r\nZm9v"), NULL, 0 },
		{ S("-_-_"), NULL, 0 },
		{ S("Zm\0v"), NULL, 0 },
		{ S("Zm9\xff"), NULL, 0 },
		{ S("Zm9v*==="), NULL, 0 },
	};
	unsigned char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int r = smtp_base64_decode(rows[i].in, rows[i].len, out, sizeof(out));
		char e[65];
		smtp_echo(rows[i].in, rows[i].len, e);
		if (rows[i].out == NULL) {
			if (r != -1)
				fail_msg("row \"%s\": decoded %d octets, want -1", e, r);
			continue;
		}
		if (r != (int)rows[i].olen || memcmp(out, rows[i].out, rows[i].olen) != 0)
			fail_msg("row \"%s\": got %d octets, want %zu", e, r, rows[i].olen);
	}
}

/*
 * CVE-2018-6789: never one octet past the buffer. Every input length from 0 to
 * 64 and every cap from 0 to 50, with a canary after cap.
 */
static void
test_base64_decode_bounds(void **state)
{
	char in[65];
	unsigned char out[64];

	(void)state;
	memset(in, 'Q', sizeof(in));
	for (size_t len = 0; len <= 64; len++) {
		for (size_t cap = 0; cap <= 50; cap++) {
			int r;
			memset(out, 0xa5, sizeof(out));
			r = smtp_base64_decode(in, len, out, cap);
			if (len % 4 != 0 || len / 4 * 3 > cap)
				assert_int_equal(r, -1);
			else
				assert_int_equal(r, (int)(len / 4 * 3));
			for (size_t k = cap; k < sizeof(out); k++)
				assert_int_equal(out[k], 0xa5);
		}
	}
	/* the exact size is enough, one less is not */
	assert_int_equal(smtp_base64_decode(S("Zm9vYmE="), out, 5), 5);
	assert_int_equal(smtp_base64_decode(S("Zm9vYmE="), out, 4), -1);
	assert_int_equal(smtp_base64_decode(S("Zg=="), out, 1), 1);
	assert_int_equal(smtp_base64_decode(S("Zg=="), out, 0), -1);
	assert_int_equal(smtp_base64_decode(NULL, 0, NULL, 0), 0);
}

static void
test_base64_encode(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} rows[] = {
		{ S(""), "" },
		{ S("f"), "Zg==" },
		{ S("fo"), "Zm8=" },
		{ S("foo"), "Zm9v" },
		{ S("foob"), "Zm9vYg==" },
		{ S("fooba"), "Zm9vYmE=" },
		{ S("foobar"), "Zm9vYmFy" },
		/* the 334 challenges of AUTH LOGIN */
		{ S("Username:"), "VXNlcm5hbWU6" },
		{ S("Password:"), "UGFzc3dvcmQ6" },
		{ S("\0\xff\xfe"), "AP/+" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int r = smtp_base64_encode((const unsigned char *)rows[i].in, rows[i].len, out,
		    sizeof(out));
		assert_int_equal(r, (int)strlen(rows[i].out));
		assert_string_equal(out, rows[i].out);
	}
	/* room for the NUL is required */
	assert_int_equal(smtp_base64_encode((const unsigned char *)"foo", 3, out, 5), 4);
	assert_int_equal(smtp_base64_encode((const unsigned char *)"foo", 3, out, 4), -1);
	assert_int_equal(smtp_base64_encode((const unsigned char *)"", 0, out, 1), 0);
	assert_int_equal(smtp_base64_encode((const unsigned char *)"", 0, out, 0), -1);
}

static void
test_base64_round_trip(void **state)
{
	uint32_t seed = 0xba5e64;
	unsigned char in[200], back[200];
	char enc[300];

	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = xorshift(&seed) % sizeof(in);
		int e, d;
		for (size_t k = 0; k < len; k++)
			in[k] = (unsigned char)xorshift(&seed);
		e = smtp_base64_encode(in, len, enc, sizeof(enc));
		assert_int_equal(e, (int)((len + 2) / 3 * 4));
		d = smtp_base64_decode(enc, (size_t)e, back, sizeof(back));
		assert_int_equal(d, (int)len);
		assert_memory_equal(in, back, len);
		/* any one byte changed to a non-alphabet byte must be refused */
		if (e > 0) {
			size_t at = xorshift(&seed) % (size_t)e;
			char keep = enc[at];
			enc[at] = "\0 \r\n-_.*"[xorshift(&seed) % 8];
			assert_int_equal(smtp_base64_decode(enc, (size_t)e, back, sizeof(back)), -1);
			enc[at] = keep;
		}
	}
}

/* random bytes from a base64-ish alphabet: never a crash, never past cap */
static void
test_base64_random(void **state)
{
	static const char alpha[] = "ABZaz09+/=Qg\0 \r\n*-";
	uint32_t seed = 0x5a5105;
	char in[40];
	unsigned char out[40];
	unsigned ok = 0;

	(void)state;
	for (int iter = 0; iter < 200000; iter++) {
		size_t len = xorshift(&seed) % 33, cap = xorshift(&seed) % 33;
		int r;
		for (size_t k = 0; k < len; k++)
			in[k] = alpha[xorshift(&seed) % (sizeof(alpha) - 1)];
		memset(out, 0xa5, sizeof(out));
		r = smtp_base64_decode(in, len, out, cap);
		for (size_t k = cap; k < sizeof(out); k++)
			assert_int_equal(out[k], 0xa5);
		if (r < 0)
			continue;
		ok++;
		assert_true((size_t)r <= cap);
		assert_int_equal(len % 4, 0);
		/* what decodes, re-encodes to exactly the input: one encoding per payload */
		{
			char again[64];
			int e = smtp_base64_encode(out, (size_t)r, again, sizeof(again));
			assert_int_equal(e, (int)len);
			assert_memory_equal(again, in, len);
		}
	}
	assert_true(ok > 1000);
}

static void
test_sasl_decode(void **state)
{
	unsigned char out[SMTP_SASL_LINE_MAX];
	char *big;

	(void)state;
	assert_int_equal(smtp_sasl_decode(S("="), out, sizeof(out)), 0);
	assert_int_equal(smtp_sasl_decode(S("*"), out, sizeof(out)), SMTP_SASL_CANCEL);
	assert_int_equal(smtp_sasl_decode(S(""), out, sizeof(out)), 0);
	assert_int_equal(smtp_sasl_decode(S("**"), out, sizeof(out)), -1);
	assert_int_equal(smtp_sasl_decode(S("=="), out, sizeof(out)), -1);
	assert_int_equal(smtp_sasl_decode(S("*="), out, sizeof(out)), -1);
	assert_int_equal(smtp_sasl_decode(S("Zg"), out, sizeof(out)), -1);
	assert_int_equal(smtp_sasl_decode(S("AGFsaWNlAHNlY3JldA=="), out, sizeof(out)), 13);
	assert_memory_equal(out, "\0alice\0secret", 13);

	/* RFC 4954 4: 12288 octets are taken, one more is not */
	big = malloc(SMTP_SASL_LINE_MAX + 4);
	assert_non_null(big);
	memset(big, 'A', SMTP_SASL_LINE_MAX + 4);
	assert_int_equal(smtp_sasl_decode(big, SMTP_SASL_LINE_MAX, out, sizeof(out)),
	    SMTP_SASL_LINE_MAX / 4 * 3);
	assert_int_equal(smtp_sasl_decode(big, SMTP_SASL_LINE_MAX + 4, out, sizeof(out)), -1);
	/* and the output buffer still bounds it */
	assert_int_equal(smtp_sasl_decode(big, SMTP_SASL_LINE_MAX, out, 100), -1);
	free(big);
}

static void
test_sasl_plain(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		int r;
		const char *authzid, *user, *pass;
	} rows[] = {
		{ S("\0alice\0secret"), 0, "", "alice", "secret" },
		{ S("alice\0alice\0secret"), 0, "alice", "alice", "secret" },
		{ S("admin\0alice\0s e c r e t"), 0, "admin", "alice", "s e c r e t" },
		{ S("\0a\0b"), 0, "", "a", "b" },
		/* exactly two NULs */
		{ S(""), -1, "", "", "" },
		{ S("alice"), -1, "", "", "" },
		{ S("alice\0secret"), -1, "", "", "" },
		{ S("\0alice\0sec\0ret"), -1, "", "", "" },
		{ S("\0alice\0secret\0"), -1, "", "", "" },
		{ S("\0\0alice\0secret"), -1, "", "", "" },
		{ S("\0\0\0"), -1, "", "", "" },
		/* authcid and passwd not empty */
		{ S("\0\0secret"), -1, "", "", "" },
		{ S("\0alice\0"), -1, "", "", "" },
		{ S("\0\0"), -1, "", "", "" },
		{ S("authz\0\0"), -1, "", "", "" },
	};
	char az[16], user[16], pass[16];
	unsigned char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char e[65];
		int r;
		memcpy(buf, rows[i].in, rows[i].len);
		memset(az, 'z', sizeof(az));
		memset(user, 'z', sizeof(user));
		memset(pass, 'z', sizeof(pass));
		r = smtp_sasl_plain(buf, rows[i].len, az, sizeof(az), user, sizeof(user), pass,
		    sizeof(pass));
		smtp_echo(rows[i].in, rows[i].len, e);
		if (r != rows[i].r || strcmp(az, rows[i].authzid) != 0 ||
		    strcmp(user, rows[i].user) != 0 || strcmp(pass, rows[i].pass) != 0)
			fail_msg("row \"%s\": got %d \"%s\" \"%s\" \"%s\"", e, r, az, user, pass);
	}

	/* a field must fit its buffer with its NUL: 15 octets go in 16, 16 do not */
	memcpy(buf, "\0" "uuuuuuuuuuuuuuu" "\0" "ppppppppppppppp", 32);
	assert_int_equal(smtp_sasl_plain(buf, 32, az, sizeof(az), user, sizeof(user), pass,
	    sizeof(pass)), 0);
	assert_int_equal(strlen(user), 15);
	assert_int_equal(strlen(pass), 15);
	memcpy(buf, "\0" "uuuuuuuuuuuuuuuu" "\0" "p", 19);
	assert_int_equal(smtp_sasl_plain(buf, 19, az, sizeof(az), user, sizeof(user), pass,
	    sizeof(pass)), -1);
	memcpy(buf, "\0" "u" "\0" "pppppppppppppppp", 19);
	assert_int_equal(smtp_sasl_plain(buf, 19, az, sizeof(az), user, sizeof(user), pass,
	    sizeof(pass)), -1);
	assert_string_equal(pass, "");
	memcpy(buf, "aaaaaaaaaaaaaaaa" "\0" "u" "\0" "p", 20);
	assert_int_equal(smtp_sasl_plain(buf, 20, az, sizeof(az), user, sizeof(user), pass,
	    sizeof(pass)), -1);
	assert_int_equal(smtp_sasl_plain(buf, 20, az, 0, user, sizeof(user), pass,
	    sizeof(pass)), -1);
}

/* random bytes with many NULs: never past a buffer, and a success is consistent */
static void
test_sasl_plain_random(void **state)
{
	uint32_t seed = 0x9a55;
	unsigned char buf[40];
	char az[9], user[9], pass[9];
	unsigned ok = 0;

	(void)state;
	for (int iter = 0; iter < 200000; iter++) {
		size_t len = xorshift(&seed) % sizeof(buf);
		for (size_t k = 0; k < len; k++)
			buf[k] = xorshift(&seed) % 4 == 0 ? 0 : (unsigned char)('a' + xorshift(&seed) % 3);
		if (smtp_sasl_plain(buf, len, az, sizeof(az), user, sizeof(user), pass,
		    sizeof(pass)) != 0) {
			assert_string_equal(pass, "");
			continue;
		}
		ok++;
		assert_int_equal(strlen(az) + 1 + strlen(user) + 1 + strlen(pass), len);
		assert_true(strlen(user) > 0 && strlen(pass) > 0);
		assert_memory_equal(buf + strlen(az) + 1, user, strlen(user));
	}
	assert_true(ok > 100);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_command),
		cmocka_unit_test(test_split_command_bounds),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_path_flags),
		cmocka_unit_test(test_path_lengths),
		cmocka_unit_test(test_params_good),
		cmocka_unit_test(test_params_bad),
		cmocka_unit_test(test_params_too_many),
		cmocka_unit_test(test_helo),
		cmocka_unit_test(test_size_value),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_echo),
		cmocka_unit_test(test_random_args),
		cmocka_unit_test(test_base64_decode),
		cmocka_unit_test(test_base64_decode_bounds),
		cmocka_unit_test(test_base64_encode),
		cmocka_unit_test(test_base64_round_trip),
		cmocka_unit_test(test_base64_random),
		cmocka_unit_test(test_sasl_decode),
		cmocka_unit_test(test_sasl_plain),
		cmocka_unit_test(test_sasl_plain_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
