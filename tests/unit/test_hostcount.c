/*
 * test_hostcount.c: per-address counters: connections open and close, the
 * recipient hour slides minute by minute, addresses are kept apart, and idle
 * addresses are dropped when the table grows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hostcount.h"

static struct hat_addr
addr(uint32_t n)
{
	struct hat_addr a;

	memset(&a, 0, sizeof(a));
	a.b[10] = a.b[11] = 0xff;
	a.b[12] = (uint8_t)(n >> 24);
	a.b[13] = (uint8_t)(n >> 16);
	a.b[14] = (uint8_t)(n >> 8);
	a.b[15] = (uint8_t)n;
	return a;
}

static void
test_connections(void **state)
{
	struct hostcount *hc = hostcount_new();
	struct hat_addr a = addr(0x7f000001), b = addr(0x7f000002);

	(void)state;
	assert_int_equal(hostcount_conn_open(hc, &a), 1);
	assert_int_equal(hostcount_conn_open(hc, &a), 2);
	assert_int_equal(hostcount_conn_open(hc, &b), 1);
	hostcount_conn_close(hc, &a);
	assert_int_equal(hostcount_conn_open(hc, &a), 2);
	hostcount_conn_close(hc, &a);
	hostcount_conn_close(hc, &a);
	hostcount_conn_close(hc, &a);	/* one too many: stays at zero */
	assert_int_equal(hostcount_conn_open(hc, &a), 1);
	hostcount_free(hc);
}

static void
test_sliding_hour(void **state)
{
	struct hostcount *hc = hostcount_new();
	struct hat_addr a = addr(0x0a000001);
	time_t t0 = 1700000000 - 1700000000 % 60;

	(void)state;
	for (int i = 0; i < 5; i++)
		assert_true(hostcount_rcpt_add(hc, &a, t0));
	assert_true(hostcount_rcpt_add(hc, &a, t0 + 30 * 60));
	assert_int_equal(hostcount_rcpts_last_hour(hc, &a, t0 + 30 * 60), 6);
	/* 59 minutes after the first five they still count; at 60 they have slid out */
	assert_int_equal(hostcount_rcpts_last_hour(hc, &a, t0 + 59 * 60), 6);
	assert_int_equal(hostcount_rcpts_last_hour(hc, &a, t0 + 60 * 60), 1);
	assert_int_equal(hostcount_rcpts_last_hour(hc, &a, t0 + 90 * 60), 0);
	/* a bucket reused an hour later starts from zero */
	assert_true(hostcount_rcpt_add(hc, &a, t0 + 60 * 60));
	assert_int_equal(hostcount_rcpts_last_hour(hc, &a, t0 + 60 * 60), 2);
	hostcount_free(hc);
}

static void
test_many_addresses(void **state)
{
	struct hostcount *hc = hostcount_new();

	(void)state;
	for (uint32_t i = 0; i < 10000; i++) {
		struct hat_addr a = addr(i);
		assert_int_equal(hostcount_conn_open(hc, &a), 1);
	}
	assert_int_equal(hostcount_size(hc), 10000);
	for (uint32_t i = 0; i < 10000; i++) {
		struct hat_addr a = addr(i);
		assert_int_equal(hostcount_conn_open(hc, &a), 2);
		hostcount_conn_close(hc, &a);
		hostcount_conn_close(hc, &a);
	}
	/* all idle now: growing the table again drops them */
	for (uint32_t i = 20000; i < 30000; i++) {
		struct hat_addr a = addr(i);
		assert_int_equal(hostcount_conn_open(hc, &a), 1);
	}
	assert_true(hostcount_size(hc) < 20000);
	hostcount_free(hc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connections),
		cmocka_unit_test(test_sliding_hour),
		cmocka_unit_test(test_many_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
