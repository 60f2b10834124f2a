/*
 * test_explain.c: explain_lookup() finds every reply of mailgate's table by each
 * way an administrator may quote it (the whole formatted line, code and text,
 * text alone, code and enhanced code), the spec's examples, the replies other
 * servers commonly send, the RFC fallbacks, and says nothing for nonsense.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "explain.h"
#include "smtp_reply.h"

static struct explain_match m[EXPLAIN_MAX];

static size_t
lookup(const char *q)
{
	size_t n = explain_lookup(q, m, EXPLAIN_MAX);

	assert_true(n <= EXPLAIN_MAX);
	return n;
}

static bool
found(size_t n, enum smtp_reply_id id)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].kind == EXPLAIN_MAILGATE && m[i].reply->id == id)
			return true;
	return false;
}

static bool
found_foreign(size_t n, int code, const char *enh)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].kind == EXPLAIN_FOREIGN && m[i].code == code && strcmp(m[i].enh, enh) == 0)
			return true;
	return false;
}

/* the words of a table text after its "#c.s.d", with arg in place of "%s" */
static void
words(const struct smtp_reply_def *d, const char *arg, char *buf, size_t cap,
    bool *has_enh)
{
	char line[600];
	size_t n = smtp_reply_format(line, sizeof(line), d->id, arg);
	const char *t = line + 4;

	assert_true(n > 6);
	line[n - 2] = '\0';
	*has_enh = t[0] == '#';
	if (*has_enh)
		t = strchr(t, ' ') != NULL ? strchr(t, ' ') + 1 : "";
	snprintf(buf, cap, "%s", t);
}

static bool
is_placeholder_only(const struct smtp_reply_def *d)
{
	return strcmp(d->text, "%s") == 0;
}

/* every entry, by its whole formatted line: found, and first unless all placeholder */
static void
test_table_by_full_line(void **state)
{
	(void)state;
	for (int i = 0; i < RPL__COUNT; i++) {
		const struct smtp_reply_def *d = &smtp_reply_table[i];
		char line[600];
		size_t n, len = smtp_reply_format(line, sizeof(line), d->id, "arg7");

		line[len - 2] = '\0';
		n = lookup(line);
		if (!found(n, d->id))
			fail_msg("\"%s\" (entry %d) not found", line, i);
		if (!is_placeholder_only(d) && m[0].reply != d)
			fail_msg("\"%s\": first match is not entry %d", line, i);
		for (size_t k = 0; k < n; k++) {
			assert_non_null(m[k].why);
			assert_non_null(m[k].advice);
		}
	}
}

/* every entry by code and text (the enhanced code left out), and by its text alone */
static void
test_table_by_code_and_text(void **state)
{
	(void)state;
	for (int i = 0; i < RPL__COUNT; i++) {
		const struct smtp_reply_def *d = &smtp_reply_table[i];
		char w[600], q[700];
		bool enh;
		size_t n;

		words(d, "arg7", w, sizeof(w), &enh);
		snprintf(q, sizeof(q), "%d %s", d->code, w);
		n = lookup(q);
		if (!found(n, d->id))
			fail_msg("\"%s\" (entry %d) not found", q, i);
		if (is_placeholder_only(d))
			continue;
		/* the text alone; without the argument, as someone would type a piece of it */
		n = lookup(w);
		if (!found(n, d->id))
			fail_msg("text \"%s\" (entry %d) not found", w, i);
		words(d, "", w, sizeof(w), &enh);
		n = lookup(w);
		if (!found(n, d->id))
			fail_msg("text \"%s\" (entry %d) not found", w, i);
	}
}

/* every entry with an enhanced code by code + enhanced code, with and without '#' */
static void
test_table_by_code_and_enhanced(void **state)
{
	(void)state;
	for (int i = 0; i < RPL__COUNT; i++) {
		const struct smtp_reply_def *d = &smtp_reply_table[i];
		char q[64], enh[16];
		size_t n;

		if (d->text[0] != '#')
			continue;
		snprintf(enh, sizeof(enh), "%.*s", (int)strcspn(d->text + 1, " "), d->text + 1);
		snprintf(q, sizeof(q), "%d #%s", d->code, enh);
		n = lookup(q);
		if (!found(n, d->id))
			fail_msg("\"%s\" (entry %d) not found", q, i);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(m[k].kind, EXPLAIN_MAILGATE);
		snprintf(q, sizeof(q), "%d %s", d->code, enh);
		if (!found(lookup(q), d->id))
			fail_msg("\"%s\" (entry %d) not found", q, i);
		if (!found(lookup(enh), d->id))
			fail_msg("\"%s\" (entry %d) not found", enh, i);
	}
}

static void
test_spec_examples(void **state)
{
	size_t n;

	(void)state;
	n = lookup("421 Too many connections from your host");
	assert_int_equal(n, 1);
	assert_int_equal(m[0].reply->id, RPL_CONN_FROM_HOST);
	assert_non_null(strstr(m[0].setting, "max_connections_per_host"));

	n = lookup("452 #4.5.3");
	assert_int_equal(n, 2);
	assert_true(found(n, RPL_TOO_MANY_RCPTS) && found(n, RPL_RCPTS_PER_HOUR));
	assert_non_null(strstr(m[0].setting, "max_recipients_per_message"));

	n = lookup("5.7.1");
	assert_true(found_foreign(n, 550, "5.7.1") && found_foreign(n, 554, "5.7.1"));

	n = lookup("Line too long");
	assert_int_equal(n, 1);
	assert_int_equal(m[0].reply->id, RPL_LINE_TOO_LONG);
	assert_int_equal(lookup("  line TOO long  "), 1);
	assert_int_equal(m[0].reply->id, RPL_LINE_TOO_LONG);
}

/* the whole lines a session sends, with arguments, pick their own entry */
static void
test_whole_lines(void **state)
{
	(void)state;
	assert_true(lookup("452 #4.5.3 Too many recipients received this hour") == 1);
	assert_int_equal(m[0].reply->id, RPL_RCPTS_PER_HOUR);
	assert_true(lookup("452 #4.5.3 Too many recipients") == 1);
	assert_int_equal(m[0].reply->id, RPL_TOO_MANY_RCPTS);
	assert_true(lookup("501 #5.5.2 syntax error <a@b") >= 1);
	assert_int_equal(m[0].reply->id, RPL_SYNTAX);
	assert_true(lookup("504 Invalid part number 3") == 1);
	assert_int_equal(m[0].reply->id, RPL_PART_NUMBER_DUP);
	assert_true(lookup("421 mx.example.com Service not available, closing transaction "
	    "channel") == 1);
	assert_int_equal(m[0].reply->id, RPL_SERVICE_UNAVAILABLE);
	/* the policy's reject, whatever its text */
	assert_true(lookup("554 mx.example.com Access denied") >= 1);
	assert_int_equal(m[0].reply->id, RPL_HAT_REJECT);
	assert_true(lookup("250 ok: Message 214 accepted") >= 1);
	assert_int_equal(m[0].reply->id, RPL_ACCEPTED);
	/* "#4.x.2" is literal in the table; a digit in its place still finds it */
	assert_true(found(lookup("421 #4.x.2"), RPL_TOO_MANY_MESSAGES));
	assert_true(found(lookup("421 4.7.2"), RPL_TOO_MANY_MESSAGES));
	/* RFC 2034 style, without '#' */
	assert_true(lookup("421 4.4.5 Too many connections from your host") == 1);
	assert_int_equal(m[0].reply->id, RPL_CONN_FROM_HOST);
	/* a multi-line reply as the probe passes it */
	assert_true(lookup("550-5.1.1 The email account that you tried to reach does not "
	    "exist. 5.1.1 Please try again") >= 1);
	assert_int_equal(m[0].kind, EXPLAIN_FOREIGN);
	assert_string_equal(m[0].enh, "5.1.1");
}

static void
test_code_alone_lists_every_entry(void **state)
{
	int codes[] = { 421, 452, 500, 501, 503, 504, 550, 554 };

	(void)state;
	for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
		char q[8];
		size_t n, want = 0, got = 0;

		snprintf(q, sizeof(q), "%d", codes[c]);
		n = lookup(q);
		for (int i = 0; i < RPL__COUNT; i++) {
			if (smtp_reply_table[i].code != codes[c])
				continue;
			want++;
			assert_true(found(n, (enum smtp_reply_id)i));
		}
		for (size_t k = 0; k < n; k++)
			if (m[k].kind == EXPLAIN_MAILGATE)
				got++;
		assert_int_equal(got, want);
		/* and the RFC's general meaning, last */
		assert_int_equal(m[n - 1].kind, EXPLAIN_RFC);
		assert_int_equal(m[n - 1].code, codes[c]);
	}
}

static void
test_foreign_replies(void **state)
{
	static const struct {
		const char *q;
		int code;
		const char *enh;
	} cases[] = {
		{ "550 5.1.1", 550, "5.1.1" },
		{ "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown", 550,
		    "5.1.1" },
		{ "550 User unknown", 550, "5.1.1" },
		{ "450 4.7.1 <x@example.com>: Recipient address rejected: Greylisted", 450, "4.7.1" },
		{ "451 4.7.1 Please try again later", 451, "4.7.1" },
		{ "554 5.7.1 <x@example.com>: Relay access denied", 554, "5.7.1" },
		{ "550 5.7.1 Message rejected as spam", 550, "5.7.1" },
		{ "552 5.2.2 Mailbox full", 552, "5.2.2" },
		{ "452 4.2.2 Over quota", 452, "4.2.2" },
		{ "421 4.7.0 Too many connections, slow down", 421, "4.7.0" },
		{ "530 5.7.0 Authentication required", 530, "5.7.0" },
		{ "535 5.7.8 Error: authentication failed", 535, "5.7.8" },
		{ "553 5.1.8 <a@nowhere.invalid>: Sender address rejected: Domain not found", 553,
		    "5.1.8" },
		{ "451 4.3.0 Error: queue file write error", 451, "4.3.0" },
		{ "503 5.5.1 Error: need RCPT command", 503, "5.5.1" },
		{ "554 5.7.0 Transaction refused", 554, "5.7.0" },
		{ "550 5.7.26 Unauthenticated email is not accepted", 550, "5.7.26" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = lookup(cases[i].q);

		if (n == 0 || m[0].kind != EXPLAIN_FOREIGN || m[0].code != cases[i].code ||
		    strcmp(m[0].enh, cases[i].enh) != 0)
			fail_msg("\"%s\": expected the %d %s entry", cases[i].q, cases[i].code,
			    cases[i].enh);
		assert_null(m[0].setting);
	}
}

/* what only the RFCs know: the code's meaning and RFC 3463's class and subject */
static void
test_rfc_fallbacks(void **state)
{
	char buf[200];
	int basics[] = { 220, 221, 250, 354 };
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(basics) / sizeof(basics[0]); i++) {
		char q[8];

		snprintf(q, sizeof(q), "%d", basics[i]);
		n = lookup(q);
		assert_true(n >= 1);
		assert_int_equal(m[n - 1].kind, EXPLAIN_RFC);
		assert_non_null(m[n - 1].why);
	}
	n = lookup("550 5.1.9 something new");
	assert_int_equal(n, 1);
	assert_int_equal(m[0].kind, EXPLAIN_RFC);
	assert_int_equal(m[0].code, 550);
	assert_string_equal(m[0].enh, "5.1.9");
	explain_enhanced("5.1.9", buf, sizeof(buf));
	assert_string_equal(buf, "permanent failure; addressing");
	explain_enhanced("4.7.99", buf, sizeof(buf));
	assert_string_equal(buf, "temporary failure; security or policy");
	explain_enhanced("5.7.1", buf, sizeof(buf));
	assert_string_equal(buf, "permanent failure; security or policy: delivery not "
	    "authorized, message refused");
	explain_enhanced("not.a.code", buf, sizeof(buf));
	assert_string_equal(buf, "");
	explain_enhanced("5.123456789012345678901.1", buf, sizeof(buf));	/* no overflow */
	assert_string_equal(buf, "permanent failure");
	n = lookup("4.7.99");
	assert_int_equal(n, 1);
	assert_int_equal(m[0].kind, EXPLAIN_RFC);
	assert_string_equal(m[0].why, "security or policy");
	/* a code nobody defines still has a class */
	n = lookup("299");
	assert_int_equal(n, 1);
	assert_non_null(m[0].why);
}

static void
test_no_match(void **state)
{
	(void)state;
	assert_int_equal(lookup("foo bar"), 0);
	assert_int_equal(lookup("999"), 0);
	assert_int_equal(lookup(""), 0);
	assert_int_equal(lookup("   "), 0);
	assert_int_equal(lookup("6.1.1"), 0);
	assert_int_equal(lookup("the quick brown fox"), 0);
}

static void
test_cap_and_label(void **state)
{
	struct explain_match one[1];
	char buf[64];

	(void)state;
	assert_true(explain_lookup("421", one, 1) > 1);
	assert_int_equal(one[0].kind, EXPLAIN_MAILGATE);
	explain_label(&one[0], buf, sizeof(buf));
	assert_string_equal(buf, "421 #4.4.5");
	lookup("550 5.1.1");
	explain_label(&m[0], buf, sizeof(buf));
	assert_string_equal(buf, "550 5.1.1");
	lookup("Line too long");
	explain_label(&m[0], buf, sizeof(buf));
	assert_string_equal(buf, "500");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_by_full_line),
		cmocka_unit_test(test_table_by_code_and_text),
		cmocka_unit_test(test_table_by_code_and_enhanced),
		cmocka_unit_test(test_spec_examples),
		cmocka_unit_test(test_whole_lines),
		cmocka_unit_test(test_code_alone_lists_every_entry),
		cmocka_unit_test(test_foreign_replies),
		cmocka_unit_test(test_rfc_fallbacks),
		cmocka_unit_test(test_no_match),
		cmocka_unit_test(test_cap_and_label),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
