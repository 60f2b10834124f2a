/*
 * test_smtp_client_reply.c: the outbound reply parser against golden replies,
 * every one also fed split at every byte and one byte at a time (the result
 * must not depend on the split), pipelined replies in one buffer, garbage,
 * overlong lines, too many lines, mismatched codes, enhanced status codes, the
 * joined text, the EHLO keywords, and random bytes in random splits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client_reply.h"

/*
 * Every reply in input, as one canonical string: "code|enhanced|line|line;" per
 * reply, "ERR(reason)" for an error, "MORE" if input ends inside a reply. The
 * input is fed in pieces of the sizes given by cut (0 = all at once).
 */
static void
describe(const char *in, size_t len, size_t cut, char *out, size_t cap)
{
	struct smtp_client_reply *r = malloc(sizeof(*r));
	size_t off = 0, o = 0;
	bool inside = false;

	assert_non_null(r);
	out[0] = '\0';
	smtp_client_reply_init(r);
	while (off < len) {
		size_t n = cut == 0 || len - off < cut ? len - off : cut, used;
		enum smtp_client_reply_status st = smtp_client_reply_feed(r, in + off, n, &used);

		assert_true(used <= n);
		off += used;
		inside = true;
		if (st == SMTP_CLIENT_REPLY_MORE) {
			assert_int_equal(used, n);
			continue;
		}
		if (st == SMTP_CLIENT_REPLY_ERROR) {
			o += (size_t)snprintf(out + o, cap - o, "ERR(%s)",
			    smtp_client_reply_error(r));
			free(r);
			return;
		}
		o += (size_t)snprintf(out + o, cap - o, "%d|%s", r->code, r->enhanced);
		for (size_t i = 0; i < r->n_lines; i++)
			o += (size_t)snprintf(out + o, cap - o, "|%s", smtp_client_reply_line(r, i));
		o += (size_t)snprintf(out + o, cap - o, ";");
		smtp_client_reply_init(r);
		inside = false;
	}
	if (inside)
		snprintf(out + o, cap - o, "MORE");
	free(r);
}

/* whole, at every split into two, and byte by byte: always the same, and as expected */
static void
check(const char *in, const char *want)
{
	size_t len = strlen(in);
	char got[8192], split[8192];

	describe(in, len, 0, got, sizeof(got));
	if (strcmp(got, want) != 0)
		fail_msg("input %s\n got  %s\n want %s", in, got, want);
	describe(in, len, 1, split, sizeof(split));
	assert_string_equal(split, want);
	for (size_t cut = 2; cut < len; cut++) {
		describe(in, len, cut, split, sizeof(split));
		assert_string_equal(split, want);
	}
	/* two pieces: the first k bytes, then the rest */
	for (size_t k = 1; k < len; k++) {
		struct smtp_client_reply r;
		size_t used, off = 0;
		enum smtp_client_reply_status st;

		smtp_client_reply_init(&r);
		st = smtp_client_reply_feed(&r, in, k, &used);
		off = used;
		if (st == SMTP_CLIENT_REPLY_MORE)
			st = smtp_client_reply_feed(&r, in + k, len - k, &used), off += used;
		if (strncmp(want, "ERR", 3) == 0)
			assert_true(st == SMTP_CLIENT_REPLY_ERROR || st == SMTP_CLIENT_REPLY_DONE);
		else if (strstr(want, "MORE") == NULL)
			assert_int_equal(st, SMTP_CLIENT_REPLY_DONE);
		(void)off;
	}
}

static void
test_golden(void **state)
{
	(void)state;
	check("250 ok\r\n", "250||ok;");
	check("220 mx.example.com ESMTP Postfix\r\n", "220||mx.example.com ESMTP Postfix;");
	check("250 2.1.0 Ok\r\n", "250|2.1.0|2.1.0 Ok;");
	check("550 5.1.1 <u@example.com>: Recipient address rejected\r\n",
	    "550|5.1.1|5.1.1 <u@example.com>: Recipient address rejected;");
	check("451 4.7.1 Try again\r\n", "451|4.7.1|4.7.1 Try again;");
	check("354 End data with <CR><LF>.<CR><LF>\r\n", "354||End data with <CR><LF>.<CR><LF>;");
	/* RFC 5321 4.2: the text may be empty, with or without the space */
	check("250\r\n", "250||;");
	check("250 \r\n", "250||;");
	check("250-\r\n250 x\r\n", "250|||x;");
	/* the EHLO answer */
	check("250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
	    "250-8BITMIME\r\n250 STARTTLS\r\n",
	    "250||mx.example.com Hello|PIPELINING|SIZE 10240000|8BITMIME|STARTTLS;");
	/* RFC 2034: the code on every line; the first line's counts */
	check("550-5.1.1 The email account does not exist.\r\n550 5.1.1 Try again.\r\n",
	    "550|5.1.1|5.1.1 The email account does not exist.|5.1.1 Try again.;");
}

static void
test_line_ends(void **state)
{
	(void)state;
	/* a bare LF ends a line; a bare CR is text */
	check("220 hi\n", "220||hi;");
	check("250-a\n250 b\r\n", "250||a|b;");
	check("250 a\rb\r\n", "250||a\rb;");
	check("250 a\r\rb\r\n", "250||a\r\rb;");
	check("250 a\r\r\n", "250||a\r;");
	/* input that stops inside a reply */
	check("250-a\r\n250 b", "MORE");
	check("250 a\r\n250-b\r\n", "250||a;MORE");
	check("250-a\r\n", "MORE");
	check("25", "MORE");
}

static void
test_pipelined(void **state)
{
	struct smtp_client_reply r;
	const char *in = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n354 go\r\n";
	size_t len = strlen(in), off = 0, used;
	const int codes[] = { 250, 250, 550, 354 };

	(void)state;
	check(in, "250|2.1.0|2.1.0 Ok;250|2.1.5|2.1.5 Ok;550|5.1.1|5.1.1 no;354||go;");
	/* each feed stops right after a reply's last line */
	for (int i = 0; i < 4; i++) {
		smtp_client_reply_init(&r);
		assert_int_equal(smtp_client_reply_feed(&r, in + off, len - off, &used),
		    SMTP_CLIENT_REPLY_DONE);
		assert_int_equal(r.code, codes[i]);
		off += used;
		/* once done, nothing more is consumed until init */
		assert_int_equal(smtp_client_reply_feed(&r, in + off, len - off, &used),
		    SMTP_CLIENT_REPLY_DONE);
		assert_int_equal(used, 0);
	}
	assert_int_equal(off, len);
}

static void
test_garbage(void **state)
{
	(void)state;
	check("hello\r\n", "ERR(a reply line must start with a code 2xx-5xx)");
	check("\r\n", "ERR(a reply line must start with a code 2xx-5xx)");
	check("150 x\r\n", "ERR(a reply line must start with a code 2xx-5xx)");
	check("650 x\r\n", "ERR(a reply line must start with a code 2xx-5xx)");
	check("25x ok\r\n", "ERR(a reply code has three digits)");
	check("2 5\r\n", "ERR(a reply code has three digits)");
	check("2500 ok\r\n", "ERR(no space or hyphen after the reply code)");
	check("250_ok\r\n", "ERR(no space or hyphen after the reply code)");
	check("250-a\r\nxyz\r\n", "ERR(a reply line must start with a code 2xx-5xx)");
	/* after an error nothing is consumed */
	struct smtp_client_reply r;
	size_t used;

	smtp_client_reply_init(&r);
	assert_int_equal(smtp_client_reply_feed(&r, "x", 1, &used), SMTP_CLIENT_REPLY_ERROR);
	assert_int_equal(used, 0);
	assert_int_equal(smtp_client_reply_feed(&r, "250 ok\r\n", 8, &used),
	    SMTP_CLIENT_REPLY_ERROR);
	assert_int_equal(used, 0);
}

static void
test_mismatched_codes(void **state)
{
	(void)state;
	check("250-a\r\n251 b\r\n", "ERR(the lines of a reply have different codes)");
	check("250-a\r\n550 b\r\n", "ERR(the lines of a reply have different codes)");
	check("250-a\r\n250-b\r\n250 c\r\n", "250||a|b|c;");
}

static void
test_overlong(void **state)
{
	char *in = malloc(SMTP_CLIENT_REPLY_LINE_MAX + 16);
	struct smtp_client_reply *r = malloc(sizeof(*r));
	size_t n, used;

	(void)state;
	assert_non_null(in);
	assert_non_null(r);
	/* exactly the cap, CRLF included: accepted, though past RFC 5321's 512 */
	memcpy(in, "250 ", 4);
	n = SMTP_CLIENT_REPLY_LINE_MAX - 2;
	memset(in + 4, 'a', n - 4);
	memcpy(in + n, "\r\n", 3);
	smtp_client_reply_init(r);
	assert_int_equal(smtp_client_reply_feed(r, in, strlen(in), &used),
	    SMTP_CLIENT_REPLY_DONE);
	assert_int_equal(used, SMTP_CLIENT_REPLY_LINE_MAX);
	assert_int_equal(strlen(smtp_client_reply_line(r, 0)), SMTP_CLIENT_REPLY_LINE_MAX - 6);
	/* one octet more: refused, however it is split, before the line ends */
	memset(in + 4, 'a', n - 3);
	memcpy(in + n + 1, "\r\n", 3);
	check(in, "ERR(reply line too long)");
	smtp_client_reply_init(r);
	for (size_t i = 0; i < strlen(in); i++) {
		enum smtp_client_reply_status st = smtp_client_reply_feed(r, in + i, 1, &used);

		if (st == SMTP_CLIENT_REPLY_ERROR) {
			assert_int_equal(i, SMTP_CLIENT_REPLY_LINE_MAX);
			break;
		}
		assert_int_equal(st, SMTP_CLIENT_REPLY_MORE);
	}
	/* a line that never ends is refused at the cap, not buffered */
	memset(in, '2', 3);
	in[3] = ' ';
	memset(in + 4, 'z', SMTP_CLIENT_REPLY_LINE_MAX + 8);
	smtp_client_reply_init(r);
	assert_int_equal(smtp_client_reply_feed(r, in, SMTP_CLIENT_REPLY_LINE_MAX + 12, &used),
	    SMTP_CLIENT_REPLY_ERROR);
	assert_int_equal(used, SMTP_CLIENT_REPLY_LINE_MAX);
	free(in);
	free(r);
}

static void
test_line_count(void **state)
{
	size_t cap = (SMTP_CLIENT_REPLY_LINES_MAX + 2) * 16;
	char *in = malloc(cap), *p;
	struct smtp_client_reply *r = malloc(sizeof(*r));
	size_t used;

	(void)state;
	assert_non_null(in);
	assert_non_null(r);
	/* the most lines a reply may have */
	p = in;
	for (int i = 0; i < SMTP_CLIENT_REPLY_LINES_MAX - 1; i++)
		p += sprintf(p, "250-l%d\r\n", i);
	p += sprintf(p, "250 end\r\n");
	smtp_client_reply_init(r);
	assert_int_equal(smtp_client_reply_feed(r, in, strlen(in), &used),
	    SMTP_CLIENT_REPLY_DONE);
	assert_int_equal(r->n_lines, SMTP_CLIENT_REPLY_LINES_MAX);
	assert_string_equal(smtp_client_reply_line(r, 0), "l0");
	assert_string_equal(smtp_client_reply_line(r, SMTP_CLIENT_REPLY_LINES_MAX - 1), "end");
	assert_string_equal(smtp_client_reply_line(r, SMTP_CLIENT_REPLY_LINES_MAX), "");
	/* one more */
	p = in;
	for (int i = 0; i < SMTP_CLIENT_REPLY_LINES_MAX; i++)
		p += sprintf(p, "250-l%d\r\n", i);
	p += sprintf(p, "250 end\r\n");
	check(in, "ERR(too many lines in one reply)");
	free(in);
	free(r);
}

/* more text than is kept: the reply still parses, its text is cut, never overrun */
static void
test_text_truncated(void **state)
{
	size_t line = 1000, lines = 10, cap = lines * (line + 8) + 1;
	char *in = malloc(cap), *p = in;
	struct smtp_client_reply *r = malloc(sizeof(*r));
	size_t used, total = 0;

	(void)state;
	assert_non_null(in);
	assert_non_null(r);
	for (size_t i = 0; i < lines; i++) {
		p += sprintf(p, "550%c", i + 1 < lines ? '-' : ' ');
		memset(p, 'a' + (char)i, line);
		p += line;
		p += sprintf(p, "\r\n");
	}
	smtp_client_reply_init(r);
	assert_int_equal(smtp_client_reply_feed(r, in, strlen(in), &used),
	    SMTP_CLIENT_REPLY_DONE);
	assert_int_equal(used, strlen(in));
	assert_true(r->truncated);
	assert_int_equal(r->n_lines, lines);
	for (size_t i = 0; i < lines; i++)
		total += strlen(smtp_client_reply_line(r, i));
	/* the cap counts the NUL after each stored line too */
	assert_true(total <= SMTP_CLIENT_REPLY_TEXT_MAX);
	assert_true(total >= SMTP_CLIENT_REPLY_TEXT_MAX - lines);
	assert_int_equal(strlen(smtp_client_reply_line(r, lines - 1)), 0);
	free(in);
	free(r);
}

static void
test_nul_and_controls(void **state)
{
	struct smtp_client_reply r;
	const char in[] = "250 a\0b\tc\r\n";
	size_t used;

	(void)state;
	smtp_client_reply_init(&r);
	assert_int_equal(smtp_client_reply_feed(&r, in, sizeof(in) - 1, &used),
	    SMTP_CLIENT_REPLY_DONE);
	/* a NUL cannot cut the text short; other bytes stay, the caller escapes them */
	assert_string_equal(smtp_client_reply_line(&r, 0), "a?b\tc");
}

static void
test_enhanced(void **state)
{
	(void)state;
	check("550 5.1.1\r\n", "550|5.1.1|5.1.1;");
	check("550 5.123.456 x\r\n", "550|5.123.456|5.123.456 x;");
	/* the class must be the reply's (RFC 3463 2) */
	check("550 4.1.1 x\r\n", "550||4.1.1 x;");
	check("250 5.0.0 x\r\n", "250||5.0.0 x;");
	/* the shape must be exact */
	check("550 5.1.1x\r\n", "550||5.1.1x;");
	check("550 5.1234.1 x\r\n", "550||5.1234.1 x;");
	check("550 5.1.1234 x\r\n", "550||5.1.1234 x;");
	check("550 5..1 x\r\n", "550||5..1 x;");
	check("550 5.1. x\r\n", "550||5.1. x;");
	check("550 5.1 x\r\n", "550||5.1 x;");
	check("550 x 5.1.1\r\n", "550||x 5.1.1;");
	/* only the first line's counts */
	check("550-first\r\n550 5.1.1 second\r\n", "550||first|5.1.1 second;");
}

static void
test_join(void **state)
{
	struct smtp_client_reply r;
	const char *in = "550-5.1.1 first\r\n550-\r\n550 5.1.1 second\r\n";
	char out[64], tiny[8];
	size_t used, n;

	(void)state;
	smtp_client_reply_init(&r);
	assert_int_equal(smtp_client_reply_feed(&r, in, strlen(in), &used),
	    SMTP_CLIENT_REPLY_DONE);
	n = smtp_client_reply_join(&r, out, sizeof(out));
	assert_string_equal(out, "5.1.1 first  5.1.1 second");
	assert_int_equal(n, strlen(out));
	n = smtp_client_reply_join(&r, tiny, sizeof(tiny));
	assert_string_equal(tiny, "5.1.1 f");
	assert_int_equal(n, 7);
	n = smtp_client_reply_join(&r, tiny, 1);
	assert_string_equal(tiny, "");
	assert_int_equal(n, 0);
}

static void
ext_of(const char *in, struct smtp_client_ext *e)
{
	struct smtp_client_reply r;
	size_t used;

	smtp_client_reply_init(&r);
	assert_int_equal(smtp_client_reply_feed(&r, in, strlen(in), &used),
	    SMTP_CLIENT_REPLY_DONE);
	smtp_client_ext_parse(&r, e);
}

static void
test_ext(void **state)
{
	struct smtp_client_ext e;

	(void)state;
	ext_of("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
	    "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n"
	    "250 DSN\r\n", &e);
	assert_true(e.pipelining && e.size && e.eightbitmime && e.starttls &&
	    e.enhancedstatuscodes && e.smtputf8 && e.chunking && e.dsn);
	assert_int_equal(e.size_max, 10240000);

	/* case-insensitive keywords (RFC 5321 2.4); unknown ones and AUTH ignored */
	ext_of("250-mx\r\n250-pipelining\r\n250-Size\r\n250-AUTH PLAIN LOGIN\r\n"
	    "250 XFOO bar\r\n", &e);
	assert_true(e.pipelining && e.size);
	assert_int_equal(e.size_max, 0);
	assert_false(e.starttls || e.eightbitmime);

	/* the first line is the server's name, even when it looks like a keyword */
	ext_of("250 PIPELINING\r\n", &e);
	assert_false(e.pipelining);

	/* a keyword must be the whole word */
	ext_of("250-mx\r\n250-PIPELININGX\r\n250 STARTTLSX\r\n", &e);
	assert_false(e.pipelining || e.starttls);

	/* SIZE values that are not a number, or too big: no fixed limit */
	ext_of("250-mx\r\n250 SIZE abc\r\n", &e);
	assert_true(e.size);
	assert_int_equal(e.size_max, 0);
	ext_of("250-mx\r\n250 SIZE 99999999999999999999999\r\n", &e);
	assert_int_equal(e.size_max, 0);
	ext_of("250-mx\r\n250 SIZE 12x\r\n", &e);
	assert_int_equal(e.size_max, 0);
	ext_of("250-mx\r\n250 SIZE 18446744073709551609\r\n", &e);
	assert_int_equal(e.size_max, UINT64_C(18446744073709551609));
}

/* random bytes biased toward reply syntax: never a crash, always the same as whole */
static void
test_random(void **state)
{
	static const char alphabet[] = "2345-0 \r\n\r\n.a\0\xff";
	uint32_t seed = 12345;
	char in[600], whole[8192], split[8192];

	(void)state;
	for (int round = 0; round < 3000; round++) {
		size_t len = 0, target;

		seed = seed * 1103515245 + 12345;
		target = (seed >> 8) % sizeof(in);
		while (len < target) {
			seed = seed * 1103515245 + 12345;
			/* mostly plausible lines, some noise */
			if ((seed >> 24) % 4 == 0 && len + 8 < target) {
				len += (size_t)sprintf(in + len, "%d%c", 200 + (int)((seed >> 9) % 400),
				    (seed >> 20) & 1 ? '-' : ' ');
				continue;
			}
			in[len++] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		describe(in, len, 0, whole, sizeof(whole));
		seed = seed * 1103515245 + 12345;
		describe(in, len, 1 + (seed >> 16) % 17, split, sizeof(split));
		assert_string_equal(whole, split);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_mismatched_codes),
		cmocka_unit_test(test_overlong),
		cmocka_unit_test(test_line_count),
		cmocka_unit_test(test_text_truncated),
		cmocka_unit_test(test_nul_and_controls),
		cmocka_unit_test(test_enhanced),
		cmocka_unit_test(test_join),
		cmocka_unit_test(test_ext),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
