/*
 * hostcount.c: per-address counters (see hostcount.h) in an open hash table
 * keyed by the 128-bit address. The recipient count of the last hour is kept in
 * 60 per-minute buckets, each tagged with its minute, so the window slides
 * without timers; an address with no open connection and no recipient in the
 * last hour is dropped the next time the table grows or is swept.
 */
#include "hostcount.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_BUCKETS 60

struct hc_entry {
	struct hat_addr addr;
	unsigned conns;
	uint32_t minute[HOUR_BUCKETS];	/* epoch minute each bucket counts for */
	uint32_t rcpts[HOUR_BUCKETS];
	bool used;
};

struct hostcount {
	struct hc_entry *tab;
	size_t cap;			/* a power of two */
	size_t n;
	time_t last_sweep;
};

/* FNV-1a over the address: the table is on the loop and keyed by what clients control */
static size_t
hc_hash(const struct hat_addr *a)
{
	uint64_t h = 1469598103934665603ULL;

	for (int i = 0; i < 16; i++) {
		h ^= a->b[i];
		h *= 1099511628211ULL;
	}
	return (size_t)(h ^ (h >> 29));
}

struct hostcount *
hostcount_new(void)
{
	struct hostcount *hc = calloc(1, sizeof(*hc));

	if (hc == NULL)
		return NULL;
	hc->cap = 64;
	if ((hc->tab = calloc(hc->cap, sizeof(*hc->tab))) == NULL) {
		free(hc);
		return NULL;
	}
	return hc;
}

void
hostcount_free(struct hostcount *hc)
{
	if (hc == NULL)
		return;
	free(hc->tab);
	free(hc);
}

size_t
hostcount_size(const struct hostcount *hc)
{
	return hc->n;
}

static unsigned
hour_sum(const struct hc_entry *e, time_t now)
{
	uint32_t cur = (uint32_t)(now / 60);
	unsigned sum = 0;

	for (int i = 0; i < HOUR_BUCKETS; i++)
		if (e->rcpts[i] && cur - e->minute[i] < HOUR_BUCKETS)
			sum += e->rcpts[i];
	return sum;
}

static bool
idle(const struct hc_entry *e, time_t now)
{
	return e->conns == 0 && hour_sum(e, now) == 0;
}

static struct hc_entry *
slot(struct hc_entry *tab, size_t cap, const struct hat_addr *a)
{
	size_t i = hc_hash(a) & (cap - 1);

	while (tab[i].used && memcmp(&tab[i].addr, a, sizeof(*a)) != 0)
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

/* rebuild into cap slots, dropping idle addresses */
static bool
rehash(struct hostcount *hc, size_t cap, time_t now)
{
	struct hc_entry *tab = calloc(cap, sizeof(*tab));

	if (tab == NULL)
		return false;
	hc->n = 0;
	for (size_t i = 0; i < hc->cap; i++) {
		if (!hc->tab[i].used || idle(&hc->tab[i], now))
			continue;
		*slot(tab, cap, &hc->tab[i].addr) = hc->tab[i];
		hc->n++;
	}
	free(hc->tab);
	hc->tab = tab;
	hc->cap = cap;
	hc->last_sweep = now;
	return true;
}

static struct hc_entry *
lookup(struct hostcount *hc, const struct hat_addr *a, bool create, time_t now)
{
	struct hc_entry *e = slot(hc->tab, hc->cap, a);

	if (e->used || !create)
		return e->used ? e : NULL;
	/* keep the load under one half; sweep idle entries at most once a minute */
	if ((hc->n + 1) * 2 > hc->cap) {
		size_t cap = hc->cap;
		if (now - hc->last_sweep < 60 || !rehash(hc, cap, now) || (hc->n + 1) * 2 > cap)
			if (!rehash(hc, cap * 2, now))
				return NULL;
		e = slot(hc->tab, hc->cap, a);
	}
	memset(e, 0, sizeof(*e));
	e->addr = *a;
	e->used = true;
	hc->n++;
	return e;
}

unsigned
hostcount_conn_open(struct hostcount *hc, const struct hat_addr *a)
{
	struct hc_entry *e = lookup(hc, a, true, time(NULL));

	if (e == NULL)
		return 0;
	return ++e->conns;
}

void
hostcount_conn_close(struct hostcount *hc, const struct hat_addr *a)
{
	struct hc_entry *e = lookup(hc, a, false, 0);

	if (e != NULL && e->conns > 0)
		e->conns--;
}

unsigned
hostcount_rcpts_last_hour(struct hostcount *hc, const struct hat_addr *a, time_t now)
{
	struct hc_entry *e = lookup(hc, a, false, now);

	return e ? hour_sum(e, now) : 0;
}

bool
hostcount_rcpt_add(struct hostcount *hc, const struct hat_addr *a, time_t now)
{
	struct hc_entry *e = lookup(hc, a, true, now);
	uint32_t cur = (uint32_t)(now / 60);
	int b = (int)(cur % HOUR_BUCKETS);

	if (e == NULL)
		return false;
	if (e->minute[b] != cur) {
		e->minute[b] = cur;
		e->rcpts[b] = 0;
	}
	e->rcpts[b]++;
	return true;
}
