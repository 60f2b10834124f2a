/*
 * rates.c: per-minute rates from a ring of minute samples (see rates.h).
 */
#include "rates.h"

#include <string.h>

static const unsigned rates_windows[] = { 1, 5, 15 };

void
rates_init(struct rates *r, size_t n, int64_t now, const uint64_t *vals)
{
	memset(r, 0, sizeof(*r));
	r->n = n < RATES_COUNTERS ? n : RATES_COUNTERS;
	r->head = RATES_SLOTS - 1;
	rates_sample(r, now, vals);
}

void
rates_sample(struct rates *r, int64_t now, const uint64_t *vals)
{
	r->head = (r->head + 1) % RATES_SLOTS;
	r->at[r->head] = now;
	memcpy(r->v[r->head], vals, r->n * sizeof(*vals));
	if (r->count < RATES_SLOTS)
		r->count++;
}

double
rates_per_minute(const struct rates *r, size_t i, unsigned minutes, int64_t now,
    uint64_t current)
{
	int64_t cut = now - (int64_t)minutes * 60000, dt;
	size_t k, base;

	if (i >= r->n || r->count == 0)
		return 0;
	/* from the newest sample back: the first at or before the cut, else the oldest */
	base = (r->head + RATES_SLOTS - (r->count - 1)) % RATES_SLOTS;
	for (size_t j = 0; j < r->count; j++) {
		k = (r->head + RATES_SLOTS - j) % RATES_SLOTS;
		if (r->at[k] <= cut) {
			base = k;
			break;
		}
	}
	dt = now - r->at[base];
	if (dt <= 0 || current < r->v[base][i])
		return 0;
	return (double)(current - r->v[base][i]) * 60000.0 / (double)dt;
}

json_t *
rates_json(const struct rates *r, int64_t now, const uint64_t *current,
    const char *const *names)
{
	json_t *res = json_pack("{s:[i, i, i]}", "windows", rates_windows[0], rates_windows[1],
	    rates_windows[2]), *a;

	for (size_t i = 0; res != NULL && i < r->n; i++) {
		if ((a = json_array()) == NULL || json_object_set_new(res, names[i], a) == -1) {
			json_decref(res);
			return NULL;
		}
		for (size_t w = 0; w < sizeof(rates_windows) / sizeof(*rates_windows); w++) {
			double x = rates_per_minute(r, i, rates_windows[w], now, current[i]);

			/* two decimals are plenty for an operator */
			if (json_array_append_new(a, json_real((double)(int64_t)(x * 100 + 0.5) /
			    100)) == -1) {
				json_decref(res);
				return NULL;
			}
		}
	}
	return res;
}
