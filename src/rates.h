/*
 * rates.h: the 1, 5 and 15 minute rates of counters that only grow (messages
 * received, recipients delivered, ...), for `mailgate status`.
 *
 * The owner samples the counters once a minute (rates_sample); a rate over N
 * minutes is the growth since the newest sample at least N minutes old, per
 * minute of the time between; while the server is younger than N minutes,
 * since the first sample. No allocation, no clock of its own: the caller gives
 * the time (monotonic milliseconds), so tests can play the minutes.
 */
#ifndef MAILGATE_RATES_H
#define MAILGATE_RATES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define RATES_COUNTERS	8		/* counters per table, at most */
#define RATES_SLOTS	16		/* one a minute: 15 minutes back, and now */

struct rates {
	size_t n;				/* counters in use */
	uint64_t v[RATES_SLOTS][RATES_COUNTERS];
	int64_t at[RATES_SLOTS];
	size_t head, count;			/* the newest sample, samples kept */
};

/* n counters (at most RATES_COUNTERS); the first sample, at now */
void rates_init(struct rates *, size_t n, int64_t now, const uint64_t *vals);

/* a sample of the counters at now (call once a minute) */
void rates_sample(struct rates *, int64_t now, const uint64_t *vals);

/* the growth per minute of counter i over the last minutes, given its value now */
double rates_per_minute(const struct rates *, size_t i, unsigned minutes, int64_t now,
    uint64_t current);

/*
 * {"windows": [1, 5, 15], names[i]: [r1, r5, r15], ...} with each rate per
 * minute rounded to 2 decimals; NULL when out of memory
 */
json_t *rates_json(const struct rates *, int64_t now, const uint64_t *current,
    const char *const *names);

#endif
