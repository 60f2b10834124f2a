/*
 * test_util.c: the shared helpers, chiefly the escaping that keeps client text
 * from splitting or forging a log line (logs.md).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

static void
test_escape(void **state)
{
	char out[64];

	(void)state;
	assert_string_equal(util_escape(out, sizeof(out), "plain text", 10), "plain text");
	assert_string_equal(util_escape(out, sizeof(out), "a\r\nb", 4), "a\\x0d\\x0ab");
	assert_string_equal(util_escape(out, sizeof(out), "a\0b", 3), "a\\x00b");
	assert_string_equal(util_escape(out, sizeof(out), "\\x41", 4), "\\x5cx41");
	assert_string_equal(util_escape(out, sizeof(out), "\xff\x80", 2), "\\xff\\x80");
	/* cut on whole escapes only */
	assert_string_equal(util_escape(out, 6, "ab\r\n", 4), "ab");
	assert_string_equal(util_escape(out, 1, "abc", 3), "");
}

static void
test_strlcpy(void **state)
{
	char out[4];

	(void)state;
	assert_int_equal(util_strlcpy(out, "abcdef", sizeof(out)), 6);
	assert_string_equal(out, "abc");
	assert_int_equal(util_strlcpy(out, "ab", sizeof(out)), 2);
	assert_string_equal(out, "ab");
}

static void
test_human(void **state)
{
	char out[32];

	(void)state;
	util_human_size(out, sizeof(out), 1000);
	assert_string_equal(out, "1000");
	util_human_size(out, sizeof(out), 1536);
	assert_string_equal(out, "1.5K");
	util_human_size(out, sizeof(out), 10 * 1024 * 1024);
	assert_string_equal(out, "10.0M");
	util_human_age(out, sizeof(out), 59);
	assert_string_equal(out, "59s");
	util_human_age(out, sizeof(out), 3600 * 5);
	assert_string_equal(out, "5h");
	util_human_age(out, sizeof(out), -3);
	assert_string_equal(out, "0s");
}

static void
test_dates(void **state)
{
	char out[64];

	(void)state;
	util_rfc3339(out, sizeof(out), 0);
	assert_string_equal(out, "1970-01-01T00:00:00Z");
	util_ctime(out, sizeof(out), 0);
	assert_int_equal(strlen(out), 24);	/* "Thu Jan  1 00:00:00 1970" in any zone */
	util_rfc5322_date(out, sizeof(out), 0);
	assert_non_null(strstr(out, "1970"));
}

static void
test_span_ieq(void **state)
{
	(void)state;
	assert_true(util_span_ieq("MaIl", 4, "MAIL"));
	assert_false(util_span_ieq("MAIL", 3, "MAIL"));
	assert_false(util_span_ieq("MAILX", 5, "MAIL"));
}

/* mkdir -p: what is missing is made 0700, what is there is fine, a file in the way is not */
static void
test_mkdirs(void **state)
{
	char base[] = "/tmp/mailgate-test-util-XXXXXX", path[128], file[128];
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/a/b/c", base);
	assert_int_equal(util_mkdirs(path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(util_mkdirs(path), 0);		/* there already */
	snprintf(path, sizeof(path), "%s/a/d/", base);
	assert_int_equal(util_mkdirs(path), 0);		/* a trailing slash */
	assert_int_equal(stat(path, &st), 0);
	snprintf(file, sizeof(file), "%s/f", base);
	assert_true((fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600)) != -1);
	close(fd);
	snprintf(path, sizeof(path), "%s/f/g", base);
	assert_int_equal(util_mkdirs(path), -1);
	assert_int_equal(errno, ENOTDIR);
	errno = 0;
	assert_int_equal(util_mkdirs(""), -1);
	assert_int_equal(errno, ENOENT);

	unlink(file);
	snprintf(path, sizeof(path), "%s/a/b/c", base);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a/b", base);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a/d", base);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a", base);
	rmdir(path);
	rmdir(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_strlcpy),
		cmocka_unit_test(test_human),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_span_ieq),
		cmocka_unit_test(test_mkdirs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
