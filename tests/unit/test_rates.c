/* rates.c: per-minute rates over 1, 5 and 15 minutes from minute samples */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rates.h"

#define T0	1000000
#define S	1000		/* a second, in the unit of the clock */

static void
test_young_server(void **state)
{
	struct rates r;
	uint64_t v[2] = { 0, 10 };

	(void)state;
	rates_init(&r, 2, T0, v);
	/* nothing elapsed: no rate, not a division by zero */
	assert_true(rates_per_minute(&r, 0, 1, T0, 5) == 0);
	/* 30 s old, 6 more: 12 a minute, whatever the window */
	assert_true(rates_per_minute(&r, 0, 1, T0 + 30 * S, 6) == 12);
	assert_true(rates_per_minute(&r, 0, 15, T0 + 30 * S, 6) == 12);
	/* counted from the first sample, not from zero */
	assert_true(rates_per_minute(&r, 1, 5, T0 + 60 * S, 13) == 3);
	/* a counter out of range, or going back: 0 */
	assert_true(rates_per_minute(&r, 5, 1, T0 + 60 * S, 13) == 0);
	assert_true(rates_per_minute(&r, 1, 1, T0 + 60 * S, 9) == 0);
}

static void
test_windows(void **state)
{
	struct rates r;
	uint64_t v[1] = { 0 };
	json_t *j, *a;
	static const char *const names[] = { "msgs" };

	(void)state;
	rates_init(&r, 1, T0, v);
	/* 20 minutes: 10 a minute for the first 10, then 1 a minute */
	for (int m = 1; m <= 20; m++) {
		v[0] += m <= 10 ? 10 : 1;
		rates_sample(&r, T0 + m * 60 * S, v);
	}
	assert_true(rates_per_minute(&r, 0, 1, T0 + 20 * 60 * S, v[0]) == 1);
	assert_true(rates_per_minute(&r, 0, 5, T0 + 20 * 60 * S, v[0]) == 1);
	/* 15 minutes back: 5 at 10 and 10 at 1 */
	assert_true(rates_per_minute(&r, 0, 15, T0 + 20 * 60 * S, v[0]) == 4);
	/* between samples: from the newest sample at least a window old */
	assert_true(rates_per_minute(&r, 0, 1, T0 + (20 * 60 + 30) * S, v[0] + 2) == 2);

	j = rates_json(&r, T0 + 20 * 60 * S, v, names);
	assert_non_null(j);
	a = json_object_get(j, "msgs");
	assert_int_equal(json_array_size(a), 3);
	assert_true(json_real_value(json_array_get(a, 0)) == 1);
	assert_true(json_real_value(json_array_get(a, 2)) == 4);
	assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "windows"), 2)),
	    15);
	json_decref(j);
}

/* two decimals */
static void
test_rounding(void **state)
{
	struct rates r;
	uint64_t v[1] = { 0 };
	json_t *j;
	static const char *const names[] = { "x" };

	(void)state;
	rates_init(&r, 1, T0, v);
	v[0] = 2;
	/* 2 in 15 minutes: 0.1333... shown as 0.13 */
	j = rates_json(&r, T0 + 15 * 60 * S, v, names);
	assert_non_null(j);
	assert_true(json_real_value(json_array_get(json_object_get(j, "x"), 2)) == 0.13);
	json_decref(j);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_young_server),
		cmocka_unit_test(test_windows),
		cmocka_unit_test(test_rounding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
