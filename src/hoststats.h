/*
 * hoststats.h: delivery counters per recipient host (the domain after the '@'),
 * for `mailgate tophosts`: active recipients, connections out, delivered
 * recipients, soft bounce events (a deferral), hard bounced recipients.
 *
 * The scheduler keeps one table of what happened since the start (delivered,
 * soft, hard); tophosts takes a copy, adds the gauges of the moment (active
 * recipients from the scheduler, connections from the outbound client) and
 * turns it into JSON, sorted. Names are compared without case. The table is
 * bounded: past HOSTSTATS_MAX hosts, new ones are counted under "(other)", so a
 * flood of random domains cannot grow it without end. Loop thread only.
 */
#ifndef MAILGATE_HOSTSTATS_H
#define MAILGATE_HOSTSTATS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define HOSTSTATS_MAX		10000
#define HOSTSTATS_OTHER		"(other)"

enum hoststats_col {
	HS_ACTIVE,		/* recipients in the queue, not yet delivered or bounced */
	HS_CONNS,		/* delivery connections carrying its mail now */
	HS_DELIVERED,		/* recipients delivered */
	HS_SOFT,		/* deferrals (each failed attempt that will be retried) */
	HS_HARD,		/* recipients bounced */
	HS_NCOLS
};

struct hoststats;

/* NULL when out of memory */
struct hoststats *hoststats_new(void);
void hoststats_free(struct hoststats *);

/* a copy (the cumulative table, before the gauges go in); NULL when out of memory */
struct hoststats *hoststats_copy(const struct hoststats *);

/* add n to a host's column; host is a domain ("" counts as "(none)"). -1 on ENOMEM */
int hoststats_add(struct hoststats *, const char *host, enum hoststats_col, uint64_t n);

/* the column named "active", "connections", "delivered", "soft" or "hard"; -1 if none */
int hoststats_col_by_name(const char *);

/*
 * {"hosts": [{"host", "active_recipients", "connections_out", "delivered",
 * "soft_bounced", "hard_bounced"}, ...]} sorted by col (descending, then by
 * name), at most limit rows (0: all), plus "total_hosts". NULL on ENOMEM.
 */
json_t *hoststats_json(const struct hoststats *, enum hoststats_col sort, size_t limit);

#endif
