/*
 * test_auth.c: the users file and the password checks against a real event
 * loop and a real worker thread. yescrypt, bcrypt and sha512-crypt lines made
 * here with libcrypt; right and wrong passwords, unknown users, the failure
 * delay (the one timing assertion: it is the security property under test),
 * cancel, reload, a missing file, malformed lines, and freeing with checks in
 * flight (ASan in build-test sees leaks).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <crypt.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth.h"

#define TEST_DELAY_MS	300

struct fix {
	char dir[64];
	char users[128];
	struct event_base *base;
	struct auth *a;
	char err[256];
};

struct result {
	int calls;
	bool ok;
	struct timespec at;
};

static int
setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_auth.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->users, sizeof(f->users), "%s/users", f->dir);
	f->base = event_base_new();
	assert_non_null(f->base);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;
	char p[160];

	auth_free(f->a);
	event_base_free(f->base);
	unlink(f->users);
	snprintf(p, sizeof(p), "%s/other", f->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/sub", f->dir);
	rmdir(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void
make_hash(const char *prefix, const char *pass, char *out, size_t cap)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *h;

	assert_non_null(cd);
	assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, (int)sizeof(setting)));
	h = crypt_rn(pass, setting, cd, (int)sizeof(*cd));
	assert_non_null(h);
	assert_true(h[0] != '*');
	assert_true(strlen(h) < cap);
	snprintf(out, cap, "%s", h);
	free(cd);
}

static void
write_file(const char *path, const char *text, size_t len)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void
on_result(void *arg, bool ok)
{
	struct result *r = arg;

	r->calls++;
	r->ok = ok;
	clock_gettime(CLOCK_MONOTONIC, &r->at);
}

static void
noop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* run the loop until nothing is pending, and at least ms milliseconds */
static void
drain(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	assert_int_equal(event_base_once(base, -1, EV_TIMEOUT, noop_cb, NULL, &tv), 0);
	assert_int_not_equal(event_base_dispatch(base), -1);
}

/* one check, answered: the result */
static bool
check(struct fix *f, const char *user, const char *pass)
{
	struct result r = { 0 };

	assert_non_null(auth_verify(f->a, user, pass, on_result, &r));
	assert_int_not_equal(event_base_dispatch(f->base), -1);
	assert_int_equal(r.calls, 1);
	return r.ok;
}

static long
elapsed_ms(const struct timespec *from, const struct timespec *to)
{
	return (long)(to->tv_sec - from->tv_sec) * 1000 +
	    (to->tv_nsec - from->tv_nsec) / 1000000;
}

/* alice yescrypt, bob bcrypt, carol sha512-crypt */
static void
write_three(struct fix *f)
{
	char ya[CRYPT_OUTPUT_SIZE], bb[CRYPT_OUTPUT_SIZE], sc[CRYPT_OUTPUT_SIZE];
	char text[2048];
	int n;

	make_hash("$y$", "alice-pw", ya, sizeof(ya));
	make_hash("$2b$", "bob-pw", bb, sizeof(bb));
	make_hash("$6$", "carol-pw", sc, sizeof(sc));
	n = snprintf(text, sizeof(text), "# users\n\nalice:%s\nbob:%s\ncarol:%s\n", ya, bb, sc);
	write_file(f->users, text, (size_t)n);
}

static void
test_three_methods(void **state)
{
	struct fix *f = *state;

	write_three(f);
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, 0);
	assert_int_equal(auth_user_count(f->a), 3);

	assert_true(check(f, "alice", "alice-pw"));
	assert_true(check(f, "bob", "bob-pw"));
	assert_true(check(f, "carol", "carol-pw"));

	assert_false(check(f, "alice", "alice-pW"));
	assert_false(check(f, "bob", "alice-pw"));
	assert_false(check(f, "carol", ""));
	assert_false(check(f, "carol", "carol-pw "));
	/* names are case-sensitive, and another user's password is no key */
	assert_false(check(f, "Alice", "alice-pw"));
	assert_false(check(f, "alice", "bob-pw"));
}

static void
test_unknown_user_fails(void **state)
{
	struct fix *f = *state;
	char name[AUTH_NAME_MAX + 2];

	write_three(f);
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, 0);
	assert_false(check(f, "mallory", "alice-pw"));
	assert_false(check(f, "", ""));
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_false(check(f, name, "x"));
}

static void
test_long_password_fails(void **state)
{
	struct fix *f = *state;
	char hash[CRYPT_OUTPUT_SIZE], text[512], *pass;
	int n;

	/* a password of exactly AUTH_PASS_MAX octets is fine, one more never verifies */
	pass = malloc(AUTH_PASS_MAX + 2);
	assert_non_null(pass);
	memset(pass, 'p', AUTH_PASS_MAX);
	pass[AUTH_PASS_MAX] = '\0';
	make_hash("$y$", pass, hash, sizeof(hash));
	n = snprintf(text, sizeof(text), "long:%s\n", hash);
	write_file(f->users, text, (size_t)n);
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, 0);
	assert_true(check(f, "long", pass));
	pass[AUTH_PASS_MAX] = 'p';
	pass[AUTH_PASS_MAX + 1] = '\0';
	assert_false(check(f, "long", pass));
	free(pass);
}

/*
 * The security property: a failure is answered TEST_DELAY_MS after it was
 * asked, whether the user exists or not; success is not held back.
 */
static void
test_failure_delay(void **state)
{
	struct fix *f = *state;
	struct result wrong = { 0 }, unknown = { 0 }, right = { 0 };
	struct timespec t0;

	write_three(f);
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, TEST_DELAY_MS);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_non_null(auth_verify(f->a, "alice", "nope", on_result, &wrong));
	assert_non_null(auth_verify(f->a, "nobody", "nope", on_result, &unknown));
	assert_non_null(auth_verify(f->a, "carol", "carol-pw", on_result, &right));
	assert_int_not_equal(event_base_dispatch(f->base), -1);

	assert_int_equal(wrong.calls, 1);
	assert_int_equal(unknown.calls, 1);
	assert_int_equal(right.calls, 1);
	assert_false(wrong.ok);
	assert_false(unknown.ok);
	assert_true(right.ok);
	assert_true(elapsed_ms(&t0, &wrong.at) >= TEST_DELAY_MS);
	assert_true(elapsed_ms(&t0, &unknown.at) >= TEST_DELAY_MS);
}

static void
test_callback_never_inside_verify(void **state)
{
	struct fix *f = *state;
	struct result r = { 0 };

	/* no file, no delay: even the fastest failure comes through the loop */
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, 0);
	assert_non_null(auth_verify(f->a, "x", "y", on_result, &r));
	usleep(300 * 1000);
	assert_int_equal(r.calls, 0);
	assert_int_not_equal(event_base_dispatch(f->base), -1);
	assert_int_equal(r.calls, 1);
	assert_false(r.ok);
}

struct cancel_ctx {
	struct auth_check *victim;
	struct result r;
};

static void
cancel_other(void *arg, bool ok)
{
	struct cancel_ctx *c = arg;

	on_result(&c->r, ok);
	auth_cancel(c->victim);
}

static void
test_cancel_no_callback(void **state)
{
	struct fix *f = *state;
	struct result first = { 0 }, queued = { 0 }, delayed = { 0 }, last = { 0 };
	struct cancel_ctx cc = { 0 };
	struct auth_check *c1, *c2;

	write_three(f);
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, TEST_DELAY_MS);
	auth_cancel(NULL);

	/* pending or already running: either way, no callback */
	c1 = auth_verify(f->a, "alice", "alice-pw", on_result, &first);
	c2 = auth_verify(f->a, "bob", "bob-pw", on_result, &queued);
	assert_non_null(c1);
	assert_non_null(c2);
	auth_cancel(c2);
	auth_cancel(c1);

	/*
	 * Held back by the failure delay: the worker answers in order, so when the
	 * success after it is called back, the failure is waiting on its timer. The
	 * delay is a minute, so however slow the worker, it is still waiting then;
	 * the loop ends once nothing is left, which without the cancel would be a
	 * minute later, with the failure's callback.
	 */
	auth_set_fail_delay(f->a, 60 * 1000);
	cc.victim = auth_verify(f->a, "alice", "wrong", on_result, &delayed);
	assert_non_null(cc.victim);
	assert_non_null(auth_verify(f->a, "carol", "carol-pw", cancel_other, &cc));
	assert_non_null(auth_verify(f->a, "bob", "bob-pw", on_result, &last));
	assert_int_not_equal(event_base_dispatch(f->base), -1);

	assert_int_equal(first.calls, 0);
	assert_int_equal(queued.calls, 0);
	assert_int_equal(delayed.calls, 0);
	assert_int_equal(cc.r.calls, 1);
	assert_true(cc.r.ok);
	assert_int_equal(last.calls, 1);
	assert_true(last.ok);
}

static void
test_reload(void **state)
{
	struct fix *f = *state;
	char hash[CRYPT_OUTPUT_SIZE], text[512], sub[160];
	int n;

	write_three(f);
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, 0);
	assert_true(check(f, "alice", "alice-pw"));

	/* unreadable (a directory): an error, and the old table stays */
	snprintf(sub, sizeof(sub), "%s/sub", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	f->err[0] = '\0';
	assert_int_equal(auth_reload(f->a, sub, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, sub));
	assert_int_equal(auth_user_count(f->a), 3);
	assert_true(check(f, "alice", "alice-pw"));

	/* a good file replaces the table: alice is gone, dave is in */
	make_hash("$y$", "dave-pw", hash, sizeof(hash));
	n = snprintf(text, sizeof(text), "dave:%s\n", hash);
	write_file(f->users, text, (size_t)n);
	assert_int_equal(auth_reload(f->a, f->users, f->err, sizeof(f->err)), 0);
	assert_int_equal(auth_user_count(f->a), 1);
	assert_false(check(f, "alice", "alice-pw"));
	assert_true(check(f, "dave", "dave-pw"));

	/* a check asked before a reload is judged on the table it was asked under */
	{
		struct result r = { 0 };
		assert_non_null(auth_verify(f->a, "dave", "dave-pw", on_result, &r));
		unlink(f->users);
		assert_int_equal(auth_reload(f->a, f->users, f->err, sizeof(f->err)), 0);
		assert_int_equal(auth_user_count(f->a), 0);
		assert_int_not_equal(event_base_dispatch(f->base), -1);
		assert_int_equal(r.calls, 1);
		assert_true(r.ok);
	}
	assert_false(check(f, "dave", "dave-pw"));
}

static void
test_missing_file(void **state)
{
	struct fix *f = *state;

	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, 0);
	assert_int_equal(auth_user_count(f->a), 0);
	assert_false(check(f, "alice", "alice-pw"));
	assert_false(check(f, "root", ""));
}

static void
test_unreadable_file_is_an_error(void **state)
{
	struct fix *f = *state;

	/* a directory reads as EISDIR, whoever runs the test (root ignores modes) */
	f->a = auth_new(f->base, f->dir, f->err, sizeof(f->err));
	assert_null(f->a);
	assert_non_null(strstr(f->err, f->dir));
}

static void
test_malformed_lines_skipped(void **state)
{
	struct fix *f = *state;
	char y[CRYPT_OUTPUT_SIZE], b[CRYPT_OUTPUT_SIZE], s6[CRYPT_OUTPUT_SIZE];
	char md5[CRYPT_OUTPUT_SIZE], des[CRYPT_OUTPUT_SIZE], y2[CRYPT_OUTPUT_SIZE];
	char text[8192], longline[AUTH_NAME_MAX + 8];
	size_t n = 0;

	make_hash("$y$", "pw", y, sizeof(y));
	make_hash("$2b$", "pw", b, sizeof(b));
	make_hash("$6$", "pw", s6, sizeof(s6));
	make_hash("$1$", "pw", md5, sizeof(md5));
	snprintf(des, sizeof(des), "abJnggxhB/yWI");	/* traditional DES */
	make_hash("$y$", "other", y2, sizeof(y2));
	memset(longline, 'n', AUTH_NAME_MAX + 1);
	longline[AUTH_NAME_MAX + 1] = '\0';

#define LINE(...)	(n += (size_t)snprintf(text + n, sizeof(text) - n, __VA_ARGS__))
	LINE("# a comment\n");
	LINE("   # an indented comment\n");
	LINE("\n \t \n");
	LINE("good1:%s\n", y);				/* kept */
	LINE("good2:%s\r\n", b);			/* kept: CRLF */
	LINE("good3:%s  \t\n", s6);			/* kept: trailing blanks */
	LINE("nocolon\n");
	LINE(":%s\n", y);				/* empty name */
	LINE("two words:%s\n", y);			/* space in name */
	LINE("ctl\x01:%s\n", y);			/* control byte */
	LINE("%s:%s\n", longline, y);			/* name too long */
	LINE("md5:%s\n", md5);				/* legacy method */
	LINE("des:%s\n", des);
	LINE("empty:\n");
	LINE("locked:!%s\n", y);
	LINE("cut:%.*s\n", (int)strlen(y) - 5, y);	/* truncated hash */
	LINE("long:%sAAAA\n", y);
	LINE("bcut:%.*s\n", (int)strlen(b) - 1, b);
	LINE("s6cut:%.*s\n", (int)strlen(s6) - 1, s6);
	LINE("badchar:%.*s*\n", (int)strlen(y) - 1, y);
	LINE("good1:%s\n", y2);				/* duplicate: the first one wins */
	LINE("%s\n", "good4:$6$rounds=5000$saltsalt$"
	    "X0Fu1yDjZ8wDnF2wmzPOGnlvxvM4mJfTdX0nDpfdoSeXU5GiiqgoH/XIiu/u6tbHrRIIYW5x1uMmsMLNVxYO/.");
	LINE("badrounds:$6$rounds=5x00$saltsalt$"
	    "X0Fu1yDjZ8wDnF2wmzPOGnlvxvM4mJfTdX0nDpfdoSeXU5GiiqgoH/XIiu/u6tbHrRIIYW5x1uMmsMLNVxYO/.\n");
	LINE("no-newline-at-end:%s", y);		/* kept */
#undef LINE
	/* a NUL in the middle of a line */
	{
		char nul[] = "nul\0x:";
		char *text2 = malloc(n + sizeof(nul) + 2);
		assert_non_null(text2);
		memcpy(text2, nul, sizeof(nul) - 1);
		text2[sizeof(nul) - 1] = '\n';
		memcpy(text2 + sizeof(nul), text, n);
		write_file(f->users, text2, n + sizeof(nul));
		free(text2);
	}

	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, 0);
	assert_int_equal(auth_user_count(f->a), 5);
	assert_true(check(f, "good1", "pw"));
	assert_false(check(f, "good1", "other"));
	assert_true(check(f, "good2", "pw"));
	assert_true(check(f, "good3", "pw"));
	assert_true(check(f, "no-newline-at-end", "pw"));
	assert_false(check(f, "md5", "pw"));
	assert_false(check(f, "cut", "pw"));
}

static void
test_free_with_checks_in_flight(void **state)
{
	struct fix *f = *state;
	struct result r[8];

	write_three(f);
	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	auth_set_fail_delay(f->a, TEST_DELAY_MS);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 8; i++)
		assert_non_null(auth_verify(f->a, i % 2 ? "alice" : "nobody", "x", on_result,
		    &r[i]));
	/* let some reach the delay timer, some the completed list */
	usleep(200 * 1000);
	assert_int_equal(event_base_loop(f->base, EVLOOP_NONBLOCK), 0);
	auth_free(f->a);
	f->a = NULL;
	drain(f->base, 50);
	for (int i = 0; i < 8; i++)
		assert_int_equal(r[i].calls, 0);
}

static void
test_pending_cap(void **state)
{
	struct fix *f = *state;
	struct result r = { 0 };
	int n = 0;

	f->a = auth_new(f->base, f->users, f->err, sizeof(f->err));
	assert_non_null(f->a);
	for (; n < AUTH_MAX_PENDING + 16; n++) {
		errno = 0;
		if (auth_verify(f->a, "u", "p", on_result, &r) == NULL)
			break;
	}
	assert_int_equal(errno, EAGAIN);
	assert_true(n >= AUTH_MAX_PENDING);
	auth_free(f->a);
	f->a = NULL;
	assert_int_equal(r.calls, 0);
}

static void
test_valid_name(void **state)
{
	static const struct {
		const char *name;
		bool ok;
	} rows[] = {
		{ "alice", true },
		{ "alice@example.com", true },
		{ "a.b-c_d+e=f/g", true },
		{ "", false },
		{ "a:b", false },
		{ "a b", false },
		{ " alice", false },
		{ "tab\t", false },
		{ "del\x7f", false },
		{ "cr\r", false },
		{ "8bit\xc3\xa9", false },
	};
	char big[AUTH_NAME_MAX + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (auth_valid_name(rows[i].name, strlen(rows[i].name)) != rows[i].ok)
			fail_msg("row \"%s\": want %d", rows[i].name, rows[i].ok);
	memset(big, 'x', sizeof(big));
	assert_true(auth_valid_name(big, AUTH_NAME_MAX));
	assert_false(auth_valid_name(big, AUTH_NAME_MAX + 1));
	assert_false(auth_valid_name("a\0b", 3));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_three_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_user_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_password_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_delay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_never_inside_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_no_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_lines_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_checks_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_cap, setup, teardown),
		cmocka_unit_test(test_valid_name),
	};
	int r;

	/* the worker thread activates an event on the loop's base */
	evthread_use_pthreads();
	r = cmocka_run_group_tests(tests, NULL, NULL);
	libevent_global_shutdown();
	return r;
}
