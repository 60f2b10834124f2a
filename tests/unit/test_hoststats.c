/* hoststats.c: per-host counters, case folding, the sort, the bound */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hoststats.h"

static json_int_t
col(json_t *row, const char *key)
{
	return json_integer_value(json_object_get(row, key));
}

static void
test_counts_and_sort(void **state)
{
	struct hoststats *hs = hoststats_new(), *cp;
	json_t *j, *rows;

	(void)state;
	assert_non_null(hs);
	assert_int_equal(hoststats_add(hs, "a.example", HS_DELIVERED, 2), 0);
	assert_int_equal(hoststats_add(hs, "A.Example", HS_DELIVERED, 1), 0);
	assert_int_equal(hoststats_add(hs, "b.example", HS_SOFT, 5), 0);
	assert_int_equal(hoststats_add(hs, "c.example", HS_HARD, 1), 0);
	cp = hoststats_copy(hs);
	assert_non_null(cp);
	/* the gauges go into the copy only */
	assert_int_equal(hoststats_add(cp, "c.example", HS_ACTIVE, 7), 0);
	assert_int_equal(hoststats_add(cp, "", HS_ACTIVE, 1), 0);

	j = hoststats_json(cp, HS_ACTIVE, 0);
	assert_non_null(j);
	rows = json_object_get(j, "hosts");
	assert_int_equal(json_array_size(rows), 4);
	assert_int_equal(json_integer_value(json_object_get(j, "total_hosts")), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "host")),
	    "c.example");
	assert_int_equal(col(json_array_get(rows, 0), "active_recipients"), 7);
	assert_int_equal(col(json_array_get(rows, 0), "hard_bounced"), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "host")),
	    "(none)");
	/* ties by name */
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 2), "host")),
	    "a.example");
	assert_int_equal(col(json_array_get(rows, 2), "delivered"), 3);
	json_decref(j);

	j = hoststats_json(hs, HS_SOFT, 1);
	rows = json_object_get(j, "hosts");
	assert_int_equal(json_array_size(rows), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "host")),
	    "b.example");
	assert_int_equal(col(json_array_get(rows, 0), "soft_bounced"), 5);
	assert_int_equal(col(json_array_get(rows, 0), "active_recipients"), 0);
	assert_int_equal(json_integer_value(json_object_get(j, "total_hosts")), 3);
	json_decref(j);
	hoststats_free(cp);
	hoststats_free(hs);
}

static void
test_col_names(void **state)
{
	(void)state;
	assert_int_equal(hoststats_col_by_name("active"), HS_ACTIVE);
	assert_int_equal(hoststats_col_by_name("connections"), HS_CONNS);
	assert_int_equal(hoststats_col_by_name("delivered"), HS_DELIVERED);
	assert_int_equal(hoststats_col_by_name("soft"), HS_SOFT);
	assert_int_equal(hoststats_col_by_name("hard"), HS_HARD);
	assert_int_equal(hoststats_col_by_name("Active"), -1);
	assert_int_equal(hoststats_col_by_name(""), -1);
}

/* a flood of domains stops at HOSTSTATS_MAX rows; the rest is "(other)" */
static void
test_bounded(void **state)
{
	struct hoststats *hs = hoststats_new(), *cp;
	json_t *j, *rows;
	char name[64];

	(void)state;
	for (int i = 0; i < HOSTSTATS_MAX + 50; i++) {
		snprintf(name, sizeof(name), "d%d.example", i);
		assert_int_equal(hoststats_add(hs, name, HS_SOFT, 1), 0);
	}
	j = hoststats_json(hs, HS_SOFT, 1);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "total_hosts")), HOSTSTATS_MAX + 1);
	rows = json_object_get(j, "hosts");
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "host")),
	    HOSTSTATS_OTHER);
	assert_int_equal(col(json_array_get(rows, 0), "soft_bounced"), 50);
	json_decref(j);

	/* a copy has the same rows, (other) included; only new hosts go to (other) */
	cp = hoststats_copy(hs);
	assert_non_null(cp);
	assert_int_equal(hoststats_add(cp, "d7.example", HS_ACTIVE, 1), 0);
	assert_int_equal(hoststats_add(cp, "new.example", HS_ACTIVE, 2), 0);
	j = hoststats_json(cp, HS_SOFT, 0);
	assert_int_equal(json_integer_value(json_object_get(j, "total_hosts")), HOSTSTATS_MAX + 1);
	rows = json_object_get(j, "hosts");
	for (size_t i = 0; i < json_array_size(rows); i++) {
		json_t *row = json_array_get(rows, i);
		const char *h = json_string_value(json_object_get(row, "host"));

		if (strcmp(h, HOSTSTATS_OTHER) == 0) {
			assert_int_equal(col(row, "soft_bounced"), 50);
			assert_int_equal(col(row, "active_recipients"), 2);
		} else {
			assert_int_equal(col(row, "soft_bounced"), 1);
			assert_int_equal(col(row, "active_recipients"),
			    strcmp(h, "d7.example") == 0 ? 1 : 0);
		}
	}
	json_decref(j);
	hoststats_free(cp);
	hoststats_free(hs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts_and_sort),
		cmocka_unit_test(test_col_names),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
