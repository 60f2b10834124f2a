/*
 * hoststats.c: per-host delivery counters (see hoststats.h): a chained hash
 * table of lower-cased names, grown by doubling, sorted only when asked.
 */
#include "hoststats.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

struct hs_entry {
	struct hs_entry *next;
	uint64_t col[HS_NCOLS];
	char host[];
};

struct hoststats {
	struct hs_entry **buckets;
	size_t n_buckets, n;
};

static const char *const hs_names[HS_NCOLS] = {
	[HS_ACTIVE] = "active", [HS_CONNS] = "connections", [HS_DELIVERED] = "delivered",
	[HS_SOFT] = "soft", [HS_HARD] = "hard",
};

static const char *const hs_keys[HS_NCOLS] = {
	[HS_ACTIVE] = "active_recipients", [HS_CONNS] = "connections_out",
	[HS_DELIVERED] = "delivered", [HS_SOFT] = "soft_bounced", [HS_HARD] = "hard_bounced",
};

static size_t
hs_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 16777619u;
	}
	return h & (n - 1);
}

struct hoststats *
hoststats_new(void)
{
	struct hoststats *hs;

	if ((hs = calloc(1, sizeof(*hs))) == NULL)
		return NULL;
	hs->n_buckets = 64;
	if ((hs->buckets = calloc(hs->n_buckets, sizeof(*hs->buckets))) == NULL) {
		free(hs);
		return NULL;
	}
	return hs;
}

void
hoststats_free(struct hoststats *hs)
{
	struct hs_entry *e;

	if (hs == NULL)
		return;
	for (size_t i = 0; i < hs->n_buckets; i++)
		while ((e = hs->buckets[i]) != NULL) {
			hs->buckets[i] = e->next;
			free(e);
		}
	free(hs->buckets);
	free(hs);
}

static int
hs_grow(struct hoststats *hs)
{
	size_t n = hs->n_buckets * 2;
	struct hs_entry **nb, *e;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return -1;
	for (size_t i = 0; i < hs->n_buckets; i++)
		while ((e = hs->buckets[i]) != NULL) {
			hs->buckets[i] = e->next;
			e->next = nb[hs_hash(e->host, n)];
			nb[hs_hash(e->host, n)] = e;
		}
	free(hs->buckets);
	hs->buckets = nb;
	hs->n_buckets = n;
	return 0;
}

/* the row of host, made if need be; past HOSTSTATS_MAX rows "(other)" unless !capped */
static struct hs_entry *
hs_get(struct hoststats *hs, const char *host, bool capped)
{
	struct hs_entry *e;
	size_t len, h;

	if (host[0] == '\0')
		host = "(none)";
	for (e = hs->buckets[hs_hash(host, hs->n_buckets)]; e != NULL; e = e->next)
		if (strcasecmp(e->host, host) == 0)
			return e;
	/* full: the rest share one row */
	if (capped && hs->n >= HOSTSTATS_MAX && strcmp(host, HOSTSTATS_OTHER) != 0)
		return hs_get(hs, HOSTSTATS_OTHER, false);
	if (hs->n + 1 > hs->n_buckets && hs_grow(hs) == -1)
		return NULL;
	len = strlen(host);
	if ((e = calloc(1, sizeof(*e) + len + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++)
		e->host[i] = host[i] >= 'A' && host[i] <= 'Z' ? (char)(host[i] - 'A' + 'a') :
		    host[i];
	h = hs_hash(e->host, hs->n_buckets);
	e->next = hs->buckets[h];
	hs->buckets[h] = e;
	hs->n++;
	return e;
}

static int
hs_add(struct hoststats *hs, const char *host, enum hoststats_col col, uint64_t n,
    bool capped)
{
	struct hs_entry *e;

	if ((e = hs_get(hs, host, capped)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	e->col[col] += n;
	return 0;
}

int
hoststats_add(struct hoststats *hs, const char *host, enum hoststats_col col, uint64_t n)
{
	return hs_add(hs, host, col, n, true);
}

struct hoststats *
hoststats_copy(const struct hoststats *src)
{
	struct hoststats *hs = hoststats_new();
	const struct hs_entry *e;

	if (hs == NULL)
		return NULL;
	for (size_t i = 0; i < src->n_buckets; i++)
		for (e = src->buckets[i]; e != NULL; e = e->next)
			for (int c = 0; c < HS_NCOLS; c++)
				/* row for row, whatever order the buckets give */
				if (hs_add(hs, e->host, (enum hoststats_col)c, e->col[c],
				    false) == -1) {
					hoststats_free(hs);
					return NULL;
				}
	return hs;
}

int
hoststats_col_by_name(const char *name)
{
	for (int c = 0; c < HS_NCOLS; c++)
		if (strcmp(name, hs_names[c]) == 0)
			return c;
	return -1;
}

static enum hoststats_col hs_sort_col;

static int
hs_cmp(const void *a, const void *b)
{
	const struct hs_entry *x = *(const struct hs_entry *const *)a;
	const struct hs_entry *y = *(const struct hs_entry *const *)b;

	if (x->col[hs_sort_col] != y->col[hs_sort_col])
		return x->col[hs_sort_col] > y->col[hs_sort_col] ? -1 : 1;
	return strcmp(x->host, y->host);
}

json_t *
hoststats_json(const struct hoststats *hs, enum hoststats_col sort, size_t limit)
{
	struct hs_entry **all;
	json_t *rows, *res = NULL;
	size_t k = 0;

	if ((all = calloc(hs->n > 0 ? hs->n : 1, sizeof(*all))) == NULL ||
	    (rows = json_array()) == NULL) {
		free(all);
		return NULL;
	}
	for (size_t i = 0; i < hs->n_buckets; i++)
		for (struct hs_entry *e = hs->buckets[i]; e != NULL; e = e->next)
			all[k++] = e;
	/* the loop thread is the only caller: a static for qsort's comparator is safe */
	hs_sort_col = sort;
	qsort(all, k, sizeof(*all), hs_cmp);
	for (size_t i = 0; i < k && (limit == 0 || i < limit); i++) {
		json_t *row = json_pack("{s:s}", "host", all[i]->host);

		for (int c = 0; row != NULL && c < HS_NCOLS; c++)
			if (json_object_set_new(row, hs_keys[c],
			    json_integer((json_int_t)all[i]->col[c])) == -1) {
				json_decref(row);
				row = NULL;
			}
		if (row == NULL || json_array_append_new(rows, row) == -1)
			goto out;
	}
	res = json_pack("{s:s, s:I, s:O}", "sort", hs_names[sort], "total_hosts",
	    (json_int_t)k, "hosts", rows);
out:
	json_decref(rows);
	free(all);
	return res;
}
