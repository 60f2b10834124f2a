/*
 * test_smtp_reply.c: the reply table is the contract. Every entry is well formed,
 * the cross-cutting flags follow from the code (every 421 closes, every
 * 500/501/503/504 counts as a bad command), and the reference texts are byte for
 * byte what the spec's table says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_reply.h"

static void
test_table_well_formed(void **state)
{
	(void)state;
	for (int i = 0; i < RPL__COUNT; i++) {
		const struct smtp_reply_def *d = &smtp_reply_table[i];
		const char *pct;

		assert_int_equal(d->id, i);
		assert_true(d->code >= 200 && d->code <= 599);
		assert_non_null(d->text);
		assert_non_null(d->why);
		pct = strchr(d->text, '%');
		if (pct != NULL) {
			/* at most one "%s" and no other conversion */
			assert_memory_equal(pct, "%s", 2);
			assert_null(strchr(pct + 1, '%'));
		}
		if (d->code == 421)
			assert_true(d->flags & REPLY_CLOSE);
		if (d->code == 500 || d->code == 501 || d->code == 503 || d->code == 504)
			assert_true(d->flags & REPLY_BAD);
		else
			assert_false(d->flags & REPLY_BAD);
	}
}

struct golden {
	enum smtp_reply_id id;
	const char *arg;
	const char *line;
};

/* replies.md, byte for byte */
static const struct golden goldens[] = {
	{ RPL_HELO, "mx.example.com", "250 mx.example.com\r\n" },
	{ RPL_MAIL_OK, "test@test.com", "250 sender <test@test.com> ok\r\n" },
	{ RPL_MAIL_OK, "", "250 sender <> ok\r\n" },
	{ RPL_RCPT_OK, "user@other.com", "250 recipient <user@other.com> ok\r\n" },
	{ RPL_DATA_GO, NULL, "354 go ahead\r\n" },
	{ RPL_ACCEPTED, "214", "250 ok: Message 214 accepted\r\n" },
	{ RPL_QUIT, "mx.example.com", "221 mx.example.com\r\n" },
	{ RPL_OK, NULL, "250 ok\r\n" },
	{ RPL_VRFY, NULL, "252 Cannot VRFY user, but will accept message and attempt delivery\r\n" },
	{ RPL_HELP, NULL, "214 The following commands are recognized\r\n" },
	{ RPL_STARTTLS_GO, NULL, "220 Go ahead with TLS\r\n" },
	{ RPL_AUTH_OK, NULL, "235 #2.7.0 Authentication succeeded\r\n" },
	{ RPL_AUTH_FAILED, NULL, "535 #5.7.8 Authentication credentials invalid\r\n" },
	{ RPL_RAT_REJECT, NULL, "550 #5.1.0 Address rejected\r\n" },
	{ RPL_MERGE_OK, NULL, "250 OK\r\n" },
	{ RPL_PART_GO, NULL, "354 OK, send part\r\n" },
	{ RPL_COMMAND_TIMEOUT, NULL, "421 Timed out waiting for command, disconnecting\r\n" },
	{ RPL_INJECTION_TIMEOUT, NULL,
	    "421 Timed out waiting for successful message injection, disconnecting.\r\n" },
	{ RPL_RCPTS_PER_HOUR, NULL, "452 #4.5.3 Too many recipients received this hour\r\n" },
	{ RPL_TOO_MANY_TLS, NULL, "421 #4.4.5 Too many TLS sessions at this time\r\n" },
	{ RPL_CONN_FROM_HOST, NULL, "421 #4.4.5 Too many connections from your host\r\n" },
	{ RPL_CONN_TO_HOST, NULL, "421 #4.4.5 Too many connections to this host\r\n" },
	{ RPL_CONN_TO_LISTENER, NULL, "421 #4.4.5 Too many connections to this listener\r\n" },
	{ RPL_TOO_MANY_MESSAGES, NULL, "421 #4.x.2 Too many messages for this session\r\n" },
	{ RPL_SERVICE_UNAVAILABLE, "mx.example.com",
	    "421 mx.example.com Service not available, closing transaction channel\r\n" },
	{ RPL_CONNECTION_TIME, NULL, "421 Exceeded allowable connection time\r\n" },
	{ RPL_BAD_COMMAND_LIMIT, NULL, "421 Exceeded bad SMTP command limit, disconnecting\r\n" },
	{ RPL_LICENSE_EXPIRED, NULL, "421 The evaluation license has expired\r\n" },
	{ RPL_SERVER_ERROR, NULL, "451 #4.3.0 Server Error\r\n" },
	{ RPL_QUEUE_FULL, NULL, "452 #4.3.1 queue full\r\n" },
	{ RPL_RESOURCES_LOW, NULL, "452 #4.3.1 server resources low - try again later\r\n" },
	{ RPL_TEMP_SYSTEM_ERROR, "12", "452 #4.3.1 temporary system error (12)\r\n" },
	{ RPL_TOO_MANY_RCPTS, NULL, "452 #4.5.3 Too many recipients\r\n" },
	{ RPL_TLS_UNAVAILABLE, NULL, "454 TLS not available due to a temporary reason\r\n" },
	{ RPL_NOT_RECOGNIZED, NULL, "500 #5.5.1 command not recognized\r\n" },
	{ RPL_LINE_TOO_LONG, NULL, "500 Line too long\r\n" },
	{ RPL_EHLO_NEEDS_DOMAIN, NULL, "501 #5.0.0 EHLO requires domain address\r\n" },
	{ RPL_SYNTAX, "<a@>", "501 #5.5.2 syntax error <a@>\r\n" },
	{ RPL_AUTH_ARGS, NULL, "501 #5.5.4 Invalid arguments to AUTH command\r\n" },
	{ RPL_HELP_UNKNOWN, "FOO", "501 Unknown command FOO\r\n" },
	{ RPL_UNKNOWN_OPTION, "NOW", "501 Unknown option NOW\r\n" },
	{ RPL_UNKNOWN_VALUE, "9BIT", "501 Unknown value 9BIT\r\n" },
	{ RPL_AUTH_NOT_AVAILABLE, NULL, "503 #5.3.3 AUTH not available\r\n" },
	{ RPL_AUTH_IN_TX, NULL, "503 #5.5.0 AUTH not permitted during a mail transaction\r\n" },
	{ RPL_AUTH_ALREADY, NULL, "503 #5.5.0 Already authenticated\r\n" },
	{ RPL_MAIL_FIRST, NULL, "503 #5.5.1 MAIL first\r\n" },
	{ RPL_RCPT_FIRST, NULL, "503 #5.5.1 RCPT first\r\n" },
	{ RPL_DATA_IN_MERGE, NULL,
	    "503 Bad sequence of commands: DATA within mailmerge transaction\r\n" },
	{ RPL_XPRT_IN_PLAIN, NULL,
	    "503 Bad sequence of commands: XPRT within plain transaction\r\n" },
	{ RPL_RECEIVING_PARTS, NULL, "503 Bad sequence of commands: now receiving parts\r\n" },
	{ RPL_NOT_IN_MERGE, NULL, "503 Not in a mailmerge transaction\r\n" },
	{ RPL_AUTH_MECH, "CRAM-MD5", "504 #5.5.1 AUTH mechanism CRAM-MD5 is not available\r\n" },
	{ RPL_PARAM_UNRECOGNIZED, "FOO", "504 Command parameter FOO unrecognized\r\n" },
	{ RPL_XDFN_SYNTAX, NULL, "504 Invalid XDFN syntax\r\n" },
	{ RPL_PART_NUMBER, NULL, "504 Invalid part number\r\n" },
	{ RPL_PART_NUMBER_DUP, "2", "504 Invalid part number 2\r\n" },
	{ RPL_XDFN_NO_VALUE, NULL, "504 No variable value specified\r\n" },
	{ RPL_PARTS_MISSING, NULL, "504 Other parts still missing\r\n" },
	{ RPL_RESERVED_VAR, NULL, "504 Reserved variable name\r\n" },
	{ RPL_PARTS_SYNTAX, NULL, "504 Syntax error in *parts syntax\r\n" },
	{ RPL_XDFN_NUL, NULL, "504 XDFN command must not contain NULL characters\r\n" },
	{ RPL_STARTTLS_FIRST, NULL, "530 #5.7.0 Must issue a STARTTLS command first\r\n" },
	{ RPL_SENDER_STARTTLS, NULL,
	    "530 #5.7.0 This sender must issue a STARTTLS command first\r\n" },
	{ RPL_AUTH_REQUIRED, NULL, "530 Authentication required\r\n" },
	{ RPL_ENCRYPTION_REQUIRED, NULL, "538 #5.7.11 Encryption required\r\n" },
	{ RPL_HEADER_TOO_BIG, NULL, "552 #5.3.4 message header size exceeds limit\r\n" },
	{ RPL_MESSAGE_TOO_BIG, NULL, "552 #5.3.4 message size exceeds limit\r\n" },
	{ RPL_SIZE_EXCEEDED, NULL, "552 size limit exceeded\r\n" },
	{ RPL_PERM_ERROR, NULL, "554 #5.3.0 Server Error\r\n" },
	{ RPL_TOO_MANY_HOPS, NULL, "554 Too many hops\r\n" },
	{ RPL_BARE_CRLF, NULL, "554 message body contains illegal bare CR/LF characters.\r\n" },
	{ RPL_HELO_FIRST, NULL, "503 #5.5.1 HELO or EHLO first\r\n" },
	{ RPL_TLS_ACTIVE, NULL, "503 #5.5.1 TLS already active\r\n" },
	{ RPL_STARTTLS_IN_TX, NULL,
	    "503 #5.5.0 STARTTLS not permitted during a mail transaction\r\n" },
	{ RPL_SYNC_ERROR, NULL, "554 SMTP synchronization error\r\n" },
};

static void
test_goldens(void **state)
{
	char buf[512];

	(void)state;
	for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++) {
		size_t n = smtp_reply_format(buf, sizeof(buf), goldens[i].id, goldens[i].arg);
		assert_string_equal(buf, goldens[i].line);
		assert_int_equal(n, strlen(goldens[i].line));
	}
}

static void
test_policy_code(void **state)
{
	char buf[512];

	(void)state;
	smtp_reply_format_code(buf, sizeof(buf), RPL_HAT_REJECT, 550, "mx.example.com Go away");
	assert_string_equal(buf, "550 mx.example.com Go away\r\n");
	smtp_reply_format_code(buf, sizeof(buf), RPL_BANNER, 220, "mx.example.com ESMTP");
	assert_string_equal(buf, "220 mx.example.com ESMTP\r\n");
}

static void
test_format_never_overflows(void **state)
{
	char big[2000], buf[64];
	size_t n;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = smtp_reply_format(buf, sizeof(buf), RPL_SYNTAX, big);
	assert_int_equal(n, strlen(buf));
	assert_true(n < sizeof(buf));
	assert_memory_equal(buf + n - 2, "\r\n", 2);
	/* an arg is data, never a format: "%s%n" is echoed as is */
	smtp_reply_format(buf, sizeof(buf), RPL_SYNTAX, "%s%n");
	assert_string_equal(buf, "501 #5.5.2 syntax error %s%n\r\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_well_formed),
		cmocka_unit_test(test_goldens),
		cmocka_unit_test(test_policy_code),
		cmocka_unit_test(test_format_never_overflows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
