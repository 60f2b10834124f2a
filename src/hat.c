/*
 * hat.c: the Host Access Table (see hat.h). hat_host_parse() turns one host
 * form of the config into a [lo, hi] range of 128-bit addresses or a name;
 * hat_match() finds the first rule, top to bottom, that matches a client:
 * through the listener's index when it has one, else by walking the rules.
 * IPv4 lives in ::ffff:0:0/96, so a client on a dual-stack socket matches the
 * same rules whether the kernel hands it over as AF_INET or as v4-mapped IPv6.
 * hat_rat_accepts() is the listener's Recipient Access Table. Parsing fails
 * with a reason for the config's error message; matching never fails and
 * never allocates.
 */
#include "hat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "util.h"

#define HAT_REASON	"not an address, CIDR block, range, partial address or host name"
#define HAT_NAME_MAX	255

static void
addr_from_v4(const uint8_t v4[4], struct hat_addr *a)
{
	memset(a->b, 0, 10);
	a->b[10] = 0xff;
	a->b[11] = 0xff;
	memcpy(a->b + 12, v4, 4);
}

/* lo = a with the host bits cleared, hi = a with them set; bits in 0..128 */
static void
range_from_prefix(const struct hat_addr *a, unsigned bits, struct hat_host *h)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
		uint8_t mask = (uint8_t)(0xff00u >> keep);

		h->lo.b[i] = a->b[i] & mask;
		h->hi.b[i] = a->b[i] | (uint8_t)~mask;
	}
}

/* a decimal number of at most maxdigits digits spanning [p, end), or -1 */
static long
decimal(const char *p, const char *end, int maxdigits)
{
	long v = 0;

	if (p == end || end - p > maxdigits)
		return -1;
	for (; p < end; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

static int
fail(char *err, size_t errlen, const char *why)
{
	util_strlcpy(err, why, errlen);
	return -1;
}

/* "10.0.0.0/8", "2001:db8::/32"; host bits may be set, they are masked */
static int
parse_cidr(const char *text, const char *slash, struct hat_host *h, char *err,
    size_t errlen)
{
	char buf[INET6_ADDRSTRLEN];
	uint8_t v4[4];
	struct hat_addr a;
	size_t alen = (size_t)(slash - text);
	long bits;

	if (alen == 0 || alen >= sizeof(buf))
		return fail(err, errlen, HAT_REASON);
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	bits = decimal(slash + 1, slash + strlen(slash), 3);
	if (inet_pton(AF_INET, buf, v4) == 1) {
		if (bits < 0 || bits > 32)
			return fail(err, errlen, "IPv4 prefix length must be 0..32");
		addr_from_v4(v4, &a);
		bits += 96;
	} else if (inet_pton(AF_INET6, buf, a.b) == 1) {
		if (bits < 0 || bits > 128)
			return fail(err, errlen, "IPv6 prefix length must be 0..128");
	} else
		return fail(err, errlen, HAT_REASON);
	h->kind = HAT_RANGE;
	range_from_prefix(&a, (unsigned)bits, h);
	return 0;
}

/* "192.0.2.10-20": the last octet runs from the address's own to 20 */
static int
parse_range(const char *text, const char *dash, struct hat_host *h, char *err,
    size_t errlen)
{
	char buf[INET_ADDRSTRLEN];
	uint8_t v4[4];
	size_t alen = (size_t)(dash - text);
	long last;

	if (alen == 0 || alen >= sizeof(buf))
		return fail(err, errlen, HAT_REASON);
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, v4) != 1)
		return fail(err, errlen, HAT_REASON);
	last = decimal(dash + 1, dash + strlen(dash), 3);
	if (last < 0 || last > 255)
		return fail(err, errlen, "range end must be 0..255");
	if (last < v4[3])
		return fail(err, errlen, "range end is below its start");
	h->kind = HAT_RANGE;
	addr_from_v4(v4, &h->lo);
	v4[3] = (uint8_t)last;
	addr_from_v4(v4, &h->hi);
	return 0;
}

/* "10.", "10.1.", "10.1.2.": the octets given, anything after them */
static int
parse_partial(const char *text, struct hat_host *h, char *err, size_t errlen)
{
	uint8_t lo[4] = { 0, 0, 0, 0 }, hi[4] = { 255, 255, 255, 255 };
	const char *p = text;
	int n = 0;

	while (*p != '\0') {
		const char *dot = strchr(p, '.');
		long v;

		if (dot == NULL || n == 3)
			return fail(err, errlen, HAT_REASON);
		v = decimal(p, dot, 3);
		if (v < 0 || v > 255)
			return fail(err, errlen, HAT_REASON);
		lo[n] = hi[n] = (uint8_t)v;
		n++;
		p = dot + 1;
	}
	if (n == 0)
		return fail(err, errlen, HAT_REASON);
	h->kind = HAT_RANGE;
	addr_from_v4(lo, &h->lo);
	addr_from_v4(hi, &h->hi);
	return 0;
}

/*
 * RFC 1123 host name syntax: labels of letters, digits and hyphens, 1..63
 * octets, no hyphen at either end. The last label may not be all digits,
 * so that a mistyped address ("192.0.2.300") is an error, not a host name.
 */
static bool
valid_name(const char *s)
{
	size_t len = strlen(s), label = 0;
	bool digits_only = true;

	if (len == 0 || len > HAT_NAME_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			if (c == '\0')
				break;
			label = 0;
			digits_only = true;
			continue;
		}
		if (!isalnum(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (!isdigit(c))
			digits_only = false;
		if (++label > 63)
			return false;
	}
	return !digits_only;
}

static int
parse_name(const char *text, struct hat_host *h, char *err, size_t errlen)
{
	bool suffix = text[0] == '.';
	size_t len;
	char *name;

	if ((name = strdup(text)) == NULL)
		return fail(err, errlen, "out of memory");
	len = strlen(name);
	if (len > 1 && name[len - 1] == '.')
		name[len - 1] = '\0';		/* "mail.example.com." is absolute */
	for (char *p = name; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!valid_name(suffix ? name + 1 : name)) {
		free(name);
		return fail(err, errlen, HAT_REASON);
	}
	h->kind = suffix ? HAT_SUFFIX : HAT_NAME;
	h->name = name;
	return 0;
}

int
hat_host_parse(const char *text, struct hat_host *out, char *err, size_t errlen)
{
	struct hat_host h;
	const char *p;
	uint8_t v4[4];
	size_t len = strlen(text);
	int rc;

	memset(&h, 0, sizeof(h));
	if (errlen > 0)
		err[0] = '\0';
	if (strcasecmp(text, "ALL") == 0) {
		h.kind = HAT_ALL;
		rc = 0;
	} else if ((p = strchr(text, '/')) != NULL)
		rc = parse_cidr(text, p, &h, err, errlen);
	else if (inet_pton(AF_INET, text, v4) == 1) {
		h.kind = HAT_RANGE;
		addr_from_v4(v4, &h.lo);
		h.hi = h.lo;
		rc = 0;
	} else if (inet_pton(AF_INET6, text, h.lo.b) == 1) {
		h.kind = HAT_RANGE;
		h.hi = h.lo;
		rc = 0;
	} else if (len > 0 && strspn(text, "0123456789.") == len && text[len - 1] == '.')
		rc = parse_partial(text, &h, err, errlen);
	else if ((p = strchr(text, '-')) != NULL &&
	    strspn(text, "0123456789.-") == len)
		rc = parse_range(text, p, &h, err, errlen);
	else
		rc = parse_name(text, &h, err, errlen);
	if (rc == -1)
		return -1;
	if ((h.text = strdup(text)) == NULL) {
		free(h.name);
		return fail(err, errlen, "out of memory");
	}
	*out = h;
	return 0;
}

void
hat_host_free(struct hat_host *h)
{
	if (h == NULL)
		return;
	free(h->text);
	free(h->name);
	h->text = h->name = NULL;
}

void
hat_addr_from_sockaddr(const struct sockaddr *sa, struct hat_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

		addr_from_v4((const uint8_t *)&sin->sin_addr, out);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

		memcpy(out->b, &sin6->sin6_addr, 16);
	}
}

/* revname compared without a trailing dot, as parse_name() stored the rule */
static bool
host_matches(const struct hat_host *h, const struct hat_addr *a, const char *revname,
    size_t revlen)
{
	size_t nlen;

	switch (h->kind) {
	case HAT_ALL:
		return true;
	case HAT_RANGE:
		return memcmp(h->lo.b, a->b, 16) <= 0 && memcmp(a->b, h->hi.b, 16) <= 0;
	case HAT_NAME:
		return revname != NULL && strlen(h->name) == revlen &&
		    strncasecmp(revname, h->name, revlen) == 0;
	case HAT_SUFFIX:
		/* the suffix keeps its dot: ".example.com" never matches "badexample.com" */
		nlen = strlen(h->name);
		return revname != NULL && revlen > nlen &&
		    strncasecmp(revname + revlen - nlen, h->name, nlen) == 0;
	}
	return false;
}

/*
 * The walk: top to bottom, every host of every rule. Without an index this is
 * hat_match(); with one it is the reference the tests hold the index to.
 */
static const struct hat_rule *
hat_match_linear(const struct listener_conf *l, const struct hat_addr *a, const char *revname,
    size_t revlen, const struct hat_host **matched)
{
	for (size_t i = 0; i < l->n_hat; i++) {
		const struct hat_rule *r = &l->hat[i];

		if (r->policy != NULL && r->policy->action == ACTION_CONTINUE)
			continue;
		for (size_t j = 0; j < r->n_hosts; j++) {
			if (host_matches(&r->hosts[j], a, revname, revlen)) {
				*matched = &r->hosts[j];
				return r;
			}
		}
	}
	*matched = NULL;
	return NULL;
}

/*
 * The index. Every host of a rule that can decide a match (its policy is not
 * "continue") gets an ordinal in walk order: rule by rule, host by host. The
 * walk answers the matching host with the smallest ordinal, so the index
 * answers the smallest ordinal any of its parts finds:
 *  - address forms: the ranges swept into sorted segments that do not
 *    overlap, each holding the smallest ordinal covering it; a binary search
 *    finds the client's segment;
 *  - names and suffixes: one hash table each, name -> smallest ordinal; the
 *    suffix table is probed with every ".label..." tail of the client's name;
 *  - ALL: the smallest ordinal of an ALL host.
 * Ordinals rather than rule numbers so that *matched is the host the walk
 * would report when one rule has several hosts that match.
 */
#define HAT_NONE	UINT32_MAX
#define HAT_FNV_BASIS	2166136261u
#define HAT_FNV_PRIME	16777619u

/* an address as two host-order halves: two compares instead of a memcmp() */
struct hat_u128 {
	uint64_t hi, lo;
};

struct hat_slot {
	const char *name;			/* the host's own, lower case; NULL = free */
	uint32_t hash;
	uint32_t ord;
};

/* open addressing, linear probing; slots NULL when nothing is in it */
struct hat_table {
	struct hat_slot *slots;
	size_t mask;
};

struct hat_entry {
	const struct hat_rule *rule;
	const struct hat_host *host;
};

struct hat_index {
	struct hat_entry *ent;			/* by ordinal */
	size_t n_ent;
	struct hat_u128 *seg_start;		/* segment i: [start[i], start[i + 1]) */
	uint32_t *seg_ord;			/* HAT_NONE: a gap between ranges */
	size_t n_seg;				/* the last one runs to the top of the space */
	struct hat_table names, suffixes;
	uint32_t all;
};

/* a range being swept */
struct hat_span {
	struct hat_u128 lo, hi;
	uint32_t ord;
};

static struct hat_u128
hat_u128_from_addr(const struct hat_addr *a)
{
	struct hat_u128 v = { 0, 0 };

	for (unsigned i = 0; i < 8; i++) {
		v.hi = v.hi << 8 | a->b[i];
		v.lo = v.lo << 8 | a->b[8 + i];
	}
	return v;
}

static int
hat_u128_cmp(const struct hat_u128 *a, const struct hat_u128 *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

/* a + 1; false when a was the last address, so nothing follows a range ending there */
static bool
hat_u128_inc(struct hat_u128 *a)
{
	if (++a->lo != 0)
		return true;
	return ++a->hi != 0;
}

static int
hat_u128_qcmp(const void *a, const void *b)
{
	return hat_u128_cmp(a, b);
}

static int
hat_span_qcmp(const void *a, const void *b)
{
	return hat_u128_cmp(&((const struct hat_span *)a)->lo, &((const struct hat_span *)b)->lo);
}

/* ASCII only, as strncasecmp() in the C locale: rule names are ASCII (valid_name()) */
static uint32_t
hat_hash_step(uint32_t h, char c)
{
	unsigned char u = (unsigned char)c;

	if (u >= 'A' && u <= 'Z')
		u = (unsigned char)(u - 'A' + 'a');
	return (h ^ u) * HAT_FNV_PRIME;
}

/*
 * FNV-1a over the name from its last octet to its first, so that one pass
 * over a client's name yields the hash of each of its tails on the way.
 */
static uint32_t
hat_name_hash(const char *s, size_t len)
{
	uint32_t h = HAT_FNV_BASIS;

	while (len-- > 0)
		h = hat_hash_step(h, s[len]);
	return h;
}

/* FNV's low bits are weak on similar names; mix before masking */
static size_t
hat_slot_of(uint32_t h, size_t mask)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h & mask;
}

/* room for count names at most two thirds full, so probes stay short */
static int
hat_table_init(struct hat_table *t, size_t count)
{
	size_t cap = 8;

	if (count == 0)
		return 0;
	while (cap < count + count / 2)
		cap *= 2;
	if ((t->slots = calloc(cap, sizeof(*t->slots))) == NULL)
		return -1;
	t->mask = cap - 1;
	return 0;
}

/* s[0..len) is a name, or a tail of one, already hashed by hat_name_hash() */
static uint32_t
hat_table_find(const struct hat_table *t, const char *s, size_t len, uint32_t h)
{
	if (t->slots == NULL)
		return HAT_NONE;
	for (size_t i = hat_slot_of(h, t->mask);; i = (i + 1) & t->mask) {
		const struct hat_slot *e = &t->slots[i];

		if (e->name == NULL)
			return HAT_NONE;
		if (e->hash == h && strncasecmp(e->name, s, len) == 0 && e->name[len] == '\0')
			return e->ord;
	}
}

/* ordinals come in increasing order: a name already in holds the smaller one */
static void
hat_table_add(struct hat_table *t, const char *name, uint32_t ord)
{
	size_t len = strlen(name);
	uint32_t h = hat_name_hash(name, len);
	size_t i;

	if (hat_table_find(t, name, len, h) != HAT_NONE)
		return;
	for (i = hat_slot_of(h, t->mask); t->slots[i].name != NULL; i = (i + 1) & t->mask)
		continue;
	t->slots[i].name = name;
	t->slots[i].hash = h;
	t->slots[i].ord = ord;
}

/* a binary min-heap of spans by ordinal: the spans covering the sweep's point */
static void
hat_heap_push(const struct hat_span **heap, size_t *n, const struct hat_span *s)
{
	size_t i = (*n)++;

	while (i > 0 && heap[(i - 1) / 2]->ord > s->ord) {
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = s;
}

static void
hat_heap_pop(const struct hat_span **heap, size_t *n)
{
	const struct hat_span *last = heap[--*n];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < *n) {
		if (c + 1 < *n && heap[c + 1]->ord < heap[c]->ord)
			c++;
		if (heap[c]->ord >= last->ord)
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (*n > 0)
		heap[i] = last;
}

/*
 * Flatten the spans: every start and every end + 1 is a point where the
 * answer may change; between two such points it cannot. Walking the points in
 * order with a heap of the spans that have begun, the answer at a point is
 * the smallest ordinal whose span has not ended yet (spans that ended are
 * dropped only when they come to the top: each is pushed and popped once, so
 * the sweep is O(n log n)). Neighbours with the same answer are one segment.
 */
static int
hat_index_sweep(struct hat_index *ix, struct hat_span *spans, size_t n)
{
	struct hat_u128 *pts;
	const struct hat_span **heap;
	size_t npts = 0, nheap = 0, next = 0;

	if (n == 0)
		return 0;
	pts = calloc(2 * n, sizeof(*pts));
	heap = calloc(n, sizeof(*heap));
	ix->seg_start = calloc(2 * n, sizeof(*ix->seg_start));
	ix->seg_ord = calloc(2 * n, sizeof(*ix->seg_ord));
	if (pts == NULL || heap == NULL || ix->seg_start == NULL || ix->seg_ord == NULL) {
		free(pts);
		free(heap);
		return -1;
	}
	qsort(spans, n, sizeof(*spans), hat_span_qcmp);
	for (size_t i = 0; i < n; i++) {
		struct hat_u128 end = spans[i].hi;

		pts[npts++] = spans[i].lo;
		if (hat_u128_inc(&end))
			pts[npts++] = end;
	}
	qsort(pts, npts, sizeof(*pts), hat_u128_qcmp);
	for (size_t i = 0; i < npts; i++) {
		uint32_t ord;

		if (i > 0 && hat_u128_cmp(&pts[i - 1], &pts[i]) == 0)
			continue;
		while (next < n && hat_u128_cmp(&spans[next].lo, &pts[i]) <= 0)
			hat_heap_push(heap, &nheap, &spans[next++]);
		while (nheap > 0 && hat_u128_cmp(&heap[0]->hi, &pts[i]) < 0)
			hat_heap_pop(heap, &nheap);
		ord = nheap > 0 ? heap[0]->ord : HAT_NONE;
		if (ix->n_seg == 0 ? ord == HAT_NONE : ix->seg_ord[ix->n_seg - 1] == ord)
			continue;
		ix->seg_start[ix->n_seg] = pts[i];
		ix->seg_ord[ix->n_seg++] = ord;
	}
	free(pts);
	free(heap);
	return 0;
}

/* the segment holding a: the last one starting at or below it */
static uint32_t
hat_index_find_addr(const struct hat_index *ix, const struct hat_u128 *a)
{
	size_t lo = 0, hi = ix->n_seg;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (hat_u128_cmp(&ix->seg_start[mid], a) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 ? HAT_NONE : ix->seg_ord[lo - 1];
}

/* as hat_match_linear() skips: a rule without a policy still decides */
static bool
hat_rule_decides(const struct hat_rule *r)
{
	return r->policy == NULL || r->policy->action != ACTION_CONTINUE;
}

struct hat_index *
hat_index_build(const struct hat_rule *rules, size_t n)
{
	struct hat_index *ix;
	struct hat_span *spans = NULL;
	size_t n_ent = 0, n_range = 0, n_name = 0, n_suffix = 0, n_span = 0;

	if ((ix = calloc(1, sizeof(*ix))) == NULL)
		return NULL;
	ix->all = HAT_NONE;
	for (size_t i = 0; i < n; i++) {
		if (!hat_rule_decides(&rules[i]))
			continue;
		for (size_t j = 0; j < rules[i].n_hosts; j++) {
			const struct hat_host *h = &rules[i].hosts[j];

			n_ent++;
			n_range += h->kind == HAT_RANGE;
			n_name += h->kind == HAT_NAME && h->name != NULL;
			n_suffix += h->kind == HAT_SUFFIX && h->name != NULL;
		}
	}
	/* HAT_NONE must stay above every ordinal */
	if (n_ent >= HAT_NONE)
		goto fail;
	if (n_ent > 0 && (ix->ent = calloc(n_ent, sizeof(*ix->ent))) == NULL)
		goto fail;
	if (n_range > 0 && (spans = calloc(n_range, sizeof(*spans))) == NULL)
		goto fail;
	if (hat_table_init(&ix->names, n_name) == -1 ||
	    hat_table_init(&ix->suffixes, n_suffix) == -1)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (!hat_rule_decides(&rules[i]))
			continue;
		for (size_t j = 0; j < rules[i].n_hosts; j++) {
			const struct hat_host *h = &rules[i].hosts[j];
			uint32_t ord = (uint32_t)ix->n_ent++;

			ix->ent[ord].rule = &rules[i];
			ix->ent[ord].host = h;
			switch (h->kind) {
			case HAT_ALL:
				if (ix->all == HAT_NONE)
					ix->all = ord;
				break;
			case HAT_RANGE:
				/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): spans holds n_range > 0 entries here */
				spans[n_span].lo = hat_u128_from_addr(&h->lo);
				spans[n_span].hi = hat_u128_from_addr(&h->hi);
				spans[n_span].ord = ord;
				/* lo > hi matches nothing in the walk either */
				if (hat_u128_cmp(&spans[n_span].lo, &spans[n_span].hi) <= 0)
					n_span++;
				break;
			case HAT_NAME:
				if (h->name != NULL)
					hat_table_add(&ix->names, h->name, ord);
				break;
			case HAT_SUFFIX:
				if (h->name != NULL)
					hat_table_add(&ix->suffixes, h->name, ord);
				break;
			}
		}
	}
	if (hat_index_sweep(ix, spans, n_span) == -1)
		goto fail;
	free(spans);
	return ix;
fail:
	free(spans);
	hat_index_free(ix);
	return NULL;
}

void
hat_index_free(struct hat_index *ix)
{
	if (ix == NULL)
		return;
	free(ix->ent);
	free(ix->seg_start);
	free(ix->seg_ord);
	free(ix->names.slots);
	free(ix->suffixes.slots);
	free(ix);
}

static const struct hat_rule *
hat_match_index(const struct hat_index *ix, const struct hat_addr *a, const char *revname,
    size_t revlen, const struct hat_host **matched)
{
	struct hat_u128 v = hat_u128_from_addr(a);
	uint32_t best = ix->all, ord;

	if ((ord = hat_index_find_addr(ix, &v)) < best)
		best = ord;
	if (revname != NULL && (ix->names.slots != NULL || ix->suffixes.slots != NULL)) {
		uint32_t h = HAT_FNV_BASIS;

		for (size_t i = revlen; i-- > 0;) {
			h = hat_hash_step(h, revname[i]);
			/* i > 0: a suffix needs a label before it, as in host_matches() */
			if (revname[i] == '.' && i > 0 && (ord = hat_table_find(&ix->suffixes,
			    revname + i, revlen - i, h)) < best)
				best = ord;
		}
		if ((ord = hat_table_find(&ix->names, revname, revlen, h)) < best)
			best = ord;
	}
	if (best == HAT_NONE) {
		*matched = NULL;
		return NULL;
	}
	*matched = ix->ent[best].host;
	return ix->ent[best].rule;
}

const struct hat_rule *
hat_match(const struct listener_conf *l, const struct sockaddr *sa, const char *revname,
    const struct hat_host **matched)
{
	const struct hat_host *dummy;
	struct hat_addr a;
	size_t revlen = 0;

	if (matched == NULL)
		matched = &dummy;
	hat_addr_from_sockaddr(sa, &a);
	if (revname != NULL) {
		revlen = strlen(revname);
		if (revlen > 0 && revname[revlen - 1] == '.')
			revlen--;
	}
	if (l->hat_index != NULL)
		return hat_match_index(l->hat_index, &a, revname, revlen, matched);
	return hat_match_linear(l, &a, revname, revlen, matched);
}

/* domain equal to name, or under it when name is ".suffix"; no trailing dots */
static bool
domain_matches(const char *name, const char *domain, size_t dlen)
{
	size_t nlen = strlen(name);

	if (name[0] == '.')
		return dlen > nlen && strncasecmp(domain + dlen - nlen, name, nlen) == 0;
	return dlen == nlen && strncasecmp(domain, name, nlen) == 0;
}

/*
 * Addresses compare case-insensitively as a whole: RFC 5321 lets a local part
 * be case-sensitive, but no site tells "Sales@" from "sales@" apart, and a RAT
 * that did would bounce mail people expect to arrive.
 */
bool
hat_rat_accepts(const struct listener_conf *l, const char *addr, const char *domain)
{
	size_t dlen;

	if (domain == NULL)
		domain = "";
	dlen = strlen(domain);
	if (dlen > 0 && domain[dlen - 1] == '.')
		dlen--;
	for (size_t i = 0; i < l->n_rat; i++) {
		const struct rat_rule *r = &l->rat[i];
		bool hit;

		if (r->recipient == NULL)
			continue;
		if (strcasecmp(r->recipient, "ALL") == 0)
			hit = true;
		else if (strchr(r->recipient, '@') != NULL)
			hit = addr != NULL && strcasecmp(r->recipient, addr) == 0;
		else
			hit = domain_matches(r->recipient, domain, dlen);
		if (hit)
			return r->action == RAT_ACCEPT;
	}
	return false;
}
