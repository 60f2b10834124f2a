/*
 * hat_bench.c: what hat_match() costs as a Host Access Table grows, through
 * the listener's index and through the walk it replaces.
 *
 * For 10, 1,000, 10,000 and 100,000 entries of mixed forms (IPv4 and IPv6
 * CIDR blocks, ranges, partial addresses, host names, suffixes), one entry per
 * sender group (the last has three), every client matches only the last
 * group: the walk's worst case. The clients take turns: an IPv4 address, an IPv6 address, a name under
 * a suffix, an IPv4 address with a name that matches nothing. Before timing,
 * every client is checked to get the last group both ways.
 *
 * Not part of the test suite; build an optimised tree and run it:
 *	meson setup /tmp/hatrel --buildtype=release -Dtests=disabled
 *	ninja -C /tmp/hatrel hat_bench && /tmp/hatrel/hat_bench
 */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "hat.h"

#define HAT_BENCH_CLIENTS	4

struct hat_bench_client {
	struct sockaddr_storage ss;
	const char *revname;
};

static volatile uintptr_t hat_bench_sink;

static void __attribute__((noreturn))
hat_bench_die(const char *what)
{
	fprintf(stderr, "hat_bench: %s\n", what);
	exit(1);
}

static double
hat_bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* entry i of a table, none of which any client matches; k spreads them out */
static void
hat_bench_entry(size_t i, char *buf, size_t len)
{
	unsigned k = (unsigned)(i / 6);

	switch (i % 6) {
	case 0:
		snprintf(buf, len, "%u.%u.%u.0/24", 10 + (k >> 16), (k >> 8) & 255, k & 255);
		break;
	case 1:
		snprintf(buf, len, "2001:db8:%x:%x::/64", k >> 16, k & 0xffff);
		break;
	case 2:
		snprintf(buf, len, "%u.%u.%u.10-20", 100 + (k >> 16), (k >> 8) & 255, k & 255);
		break;
	case 3:
		snprintf(buf, len, "%u.%u.%u.", 120 + (k >> 16), (k >> 8) & 255, k & 255);
		break;
	case 4:
		snprintf(buf, len, "host%u.example.net", k);
		break;
	default:
		snprintf(buf, len, ".d%u.example.org", k);
		break;
	}
}

static void
hat_bench_host(const char *text, struct hat_host *h)
{
	char err[128];

	if (hat_host_parse(text, h, err, sizeof(err)) == -1)
		hat_bench_die(err);
}

static void
hat_bench_sa(const char *addr, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		hat_bench_die("bad client address");
}

/* mean nanoseconds per hat_match() over iters rounds of every client */
static double
hat_bench_time(const struct listener_conf *l, const struct hat_bench_client *c, long iters)
{
	double t0 = hat_bench_now();

	for (long i = 0; i < iters; i++) {
		const struct hat_bench_client *cl = &c[i % HAT_BENCH_CLIENTS];
		const struct hat_host *m;

		hat_bench_sink ^= (uintptr_t)hat_match(l, (const struct sockaddr *)&cl->ss,
		    cl->revname, &m);
	}
	return (hat_bench_now() - t0) / (double)iters;
}

static void
hat_bench_run(size_t n)
{
	struct policy pol = { .action = ACTION_ACCEPT };
	struct hat_rule *rules;
	struct hat_host *hosts;
	struct listener_conf l = { .name = "bench" };
	struct hat_bench_client c[HAT_BENCH_CLIENTS];
	struct hat_index *ix;
	struct mallinfo2 m0, m1;
	char text[64];
	double t0, build_ms, ns_index, ns_walk;
	long iters;

	/* n - 1 entries that miss, then the last group with the three that hit */
	if ((rules = calloc(n, sizeof(*rules))) == NULL ||
	    (hosts = calloc(n + 2, sizeof(*hosts))) == NULL)
		hat_bench_die("out of memory");
	for (size_t i = 0; i + 1 < n; i++) {
		hat_bench_entry(i, text, sizeof(text));
		hat_bench_host(text, &hosts[i]);
		rules[i].group = "MISS";
		rules[i].hosts = &hosts[i];
		rules[i].n_hosts = 1;
		rules[i].policy = &pol;
	}
	hat_bench_host("198.51.100.0/24", &hosts[n - 1]);
	hat_bench_host("2001:db8:ffff::/48", &hosts[n]);
	hat_bench_host(".last.example", &hosts[n + 1]);
	rules[n - 1].group = "LAST";
	rules[n - 1].hosts = &hosts[n - 1];
	rules[n - 1].n_hosts = 3;
	rules[n - 1].policy = &pol;
	l.hat = rules;
	l.n_hat = n;

	hat_bench_sa("198.51.100.7", &c[0].ss);
	c[0].revname = NULL;
	hat_bench_sa("2001:db8:ffff::25", &c[1].ss);
	c[1].revname = NULL;
	hat_bench_sa("192.0.2.1", &c[2].ss);
	c[2].revname = "mail.last.example";
	hat_bench_sa("198.51.100.200", &c[3].ss);
	c[3].revname = "host1.example.org";

	m0 = mallinfo2();
	t0 = hat_bench_now();
	if ((ix = hat_index_build(rules, n)) == NULL)
		hat_bench_die("hat_index_build: out of memory");
	build_ms = (hat_bench_now() - t0) / 1e6;
	m1 = mallinfo2();

	for (size_t i = 0; i < HAT_BENCH_CLIENTS; i++) {
		const struct hat_rule *walk, *indexed;

		l.hat_index = NULL;
		walk = hat_match(&l, (const struct sockaddr *)&c[i].ss, c[i].revname, NULL);
		l.hat_index = ix;
		indexed = hat_match(&l, (const struct sockaddr *)&c[i].ss, c[i].revname, NULL);
		if (walk != &rules[n - 1] || indexed != walk)
			hat_bench_die("a client did not match the last group both ways");
	}

	/* about a second of work per measurement, whatever the size */
	l.hat_index = ix;
	ns_index = hat_bench_time(&l, c, 4000000);
	l.hat_index = NULL;
	iters = (long)(50000000 / n);
	if (iters < 100)
		iters = 100;
	ns_walk = hat_bench_time(&l, c, iters);

	printf("| %7zu | %14.1f | %15.1f | %7.1fx | %9.0f | %8.2f |\n", n, ns_index, ns_walk,
	    ns_walk / ns_index, (double)(m1.uordblks - m0.uordblks) / 1024.0, build_ms);

	hat_index_free(ix);
	for (size_t i = 0; i < n + 2; i++)
		hat_host_free(&hosts[i]);
	free(hosts);
	free(rules);
}

int
main(void)
{
	static const size_t sizes[] = { 10, 1000, 10000, 100000 };

	printf("| entries | index ns/match | linear ns/match | speed-up "
	    "| index KiB | build ms |\n");
	printf("|--------:|---------------:|----------------:|---------:"
	    "|----------:|---------:|\n");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		hat_bench_run(sizes[i]);
	return 0;
}
