/*
 * test_hat.c: hat.c's golden cases: every host form (address, CIDR, range,
 * partial, ALL, name, suffix) matched and not matched at its edges, IPv4
 * clients given both as AF_INET and as v4-mapped AF_INET6, the malformed
 * forms with their reasons, the rule walk (first match wins, rules with a
 * "continue" policy skipped) and the RAT's recipient forms. The index
 * (hat_index_build()) is checked against the walk: on the golden cases, on
 * overlapping entries, and on thousands of random rule sets and clients.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hat.h"

/* "192.0.2.1" as AF_INET, or as ::ffff:192.0.2.1 when mapped; v6 text as AF_INET6 */
static void
make_sa(const char *addr, bool mapped, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;
	char buf[64];

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1 && !mapped) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(12345);
		return;
	}
	if (inet_pton(AF_INET, addr, buf) == 1) {
		snprintf(buf, sizeof(buf), "::ffff:%s", addr);
		addr = buf;
	}
	assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(12345);
}

/* one rule holding one host, matched against a client */
static bool
host_matches(const char *host, const char *client, const char *revname, bool mapped)
{
	struct policy pol = { .action = ACTION_ACCEPT };
	struct hat_host h;
	struct hat_rule rule = { .group = "G", .hosts = &h, .n_hosts = 1, .policy = &pol };
	struct listener_conf l = { .name = "l", .hat = &rule, .n_hat = 1 };
	const struct hat_host *matched = NULL;
	struct sockaddr_storage ss;
	const struct hat_rule *r;
	char err[128];

	if (hat_host_parse(host, &h, err, sizeof(err)) != 0) {
		print_error("\"%s\" rejected: %s\n", host, err);
		fail();
	}
	make_sa(client, mapped, &ss);
	r = hat_match(&l, (struct sockaddr *)&ss, revname, &matched);
	assert_true((r == NULL) == (matched == NULL));
	if (r != NULL) {
		assert_ptr_equal(r, &rule);
		assert_ptr_equal(matched, &h);
	}
	/* every golden case once more through the index */
	assert_non_null(l.hat_index = hat_index_build(&rule, 1));
	assert_ptr_equal(hat_match(&l, (struct sockaddr *)&ss, revname, &matched), r);
	assert_ptr_equal(matched, r != NULL ? &h : NULL);
	hat_index_free(l.hat_index);
	hat_host_free(&h);
	return r != NULL;
}

struct golden {
	const char *host, *client, *revname;
	bool match;
};

static void
run_golden(const struct golden *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct in_addr a4;
		bool v4 = inet_pton(AF_INET, g[i].client, &a4) == 1;

		/* an IPv4 client must match the same whichever way the socket reports it */
		for (int mapped = 0; mapped <= (v4 ? 1 : 0); mapped++) {
			bool got = host_matches(g[i].host, g[i].client, g[i].revname, mapped);

			if (got != g[i].match)
				print_error("host \"%s\" client %s%s rev %s: got %d, want %d\n",
				    g[i].host, mapped ? "::ffff:" : "", g[i].client,
				    g[i].revname ? g[i].revname : "(null)", got, g[i].match);
			assert_int_equal(got, g[i].match);
		}
	}
}

static void
test_all(void **state)
{
	static const struct golden g[] = {
		{ "ALL", "192.0.2.1", NULL, true },
		{ "all", "2001:db8::1", NULL, true },
		{ "All", "0.0.0.0", "x.example", true },
		{ "ALL", "::", NULL, true },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_address(void **state)
{
	static const struct golden g[] = {
		{ "192.0.2.7", "192.0.2.7", NULL, true },
		{ "192.0.2.7", "192.0.2.8", NULL, false },
		{ "192.0.2.7", "192.0.2.6", NULL, false },
		{ "192.0.2.7", "2001:db8::1", NULL, false },
		{ "192.0.2.7", "::192.0.2.7", NULL, false },	/* v4-compatible is not mapped */
		{ "2001:db8::1", "2001:db8::1", NULL, true },
		{ "2001:db8::1", "2001:db8::2", NULL, false },
		{ "2001:db8::1", "2001:db8::", NULL, false },
		{ "2001:DB8:0:0::1", "2001:db8::1", NULL, true },
		{ "::1", "::1", NULL, true },
		{ "::1", "127.0.0.1", NULL, false },
		{ "::ffff:192.0.2.7", "192.0.2.7", NULL, true },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_cidr_v4(void **state)
{
	static const struct golden g[] = {
		{ "10.0.0.0/8", "10.0.0.0", NULL, true },
		{ "10.0.0.0/8", "10.255.255.255", NULL, true },
		{ "10.0.0.0/8", "9.255.255.255", NULL, false },
		{ "10.0.0.0/8", "11.0.0.0", NULL, false },
		{ "10.1.2.3/8", "10.200.0.1", NULL, true },	/* host bits are masked */
		{ "10.1.2.3/8", "11.1.2.3", NULL, false },
		{ "192.0.2.0/25", "192.0.2.127", NULL, true },
		{ "192.0.2.0/25", "192.0.2.128", NULL, false },
		{ "192.0.2.128/25", "192.0.2.128", NULL, true },
		{ "192.0.2.128/25", "192.0.2.127", NULL, false },
		{ "192.0.2.7/32", "192.0.2.7", NULL, true },
		{ "192.0.2.7/32", "192.0.2.6", NULL, false },
		{ "0.0.0.0/0", "255.255.255.255", NULL, true },
		{ "0.0.0.0/0", "0.0.0.0", NULL, true },
		{ "0.0.0.0/0", "2001:db8::1", NULL, false },	/* IPv4 only */
		{ "127.0.0.0/8", "127.0.0.1", NULL, true },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_cidr_v6(void **state)
{
	static const struct golden g[] = {
		{ "2001:db8::/32", "2001:db8::", NULL, true },
		{ "2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", NULL, true },
		{ "2001:db8::/32", "2001:db9::", NULL, false },
		{ "2001:db8::/32", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", NULL, false },
		{ "2001:db8::/32", "10.0.0.1", NULL, false },
		{ "2001:db8:0:0:8000::/65", "2001:db8::8000:0:0:0", NULL, true },
		{ "2001:db8:0:0:8000::/65", "2001:db8::ffff:ffff:ffff:ffff", NULL, true },
		{ "2001:db8:0:0:8000::/65", "2001:db8::7fff:ffff:ffff:ffff", NULL, false },
		{ "2001:db8::/127", "2001:db8::1", NULL, true },
		{ "2001:db8::/127", "2001:db8::2", NULL, false },
		{ "2001:db8::1/128", "2001:db8::1", NULL, true },
		{ "2001:db8::1/128", "2001:db8::", NULL, false },
		{ "2001:db8::ff/120", "2001:db8::", NULL, true },	/* host bits masked */
		{ "2001:db8::ff/120", "2001:db8::100", NULL, false },
		{ "::/0", "2001:db8::1", NULL, true },
		{ "::/0", "192.0.2.1", NULL, true },		/* mapped space is inside */
		{ "::ffff:0:0/96", "192.0.2.1", NULL, true },
		{ "::ffff:10.0.0.0/104", "10.9.8.7", NULL, true },
		{ "::ffff:10.0.0.0/104", "11.0.0.0", NULL, false },
		{ "fe80::/10", "febf:ffff::1", NULL, true },
		{ "fe80::/10", "fec0::", NULL, false },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_range(void **state)
{
	static const struct golden g[] = {
		{ "192.0.2.10-20", "192.0.2.9", NULL, false },
		{ "192.0.2.10-20", "192.0.2.10", NULL, true },
		{ "192.0.2.10-20", "192.0.2.15", NULL, true },
		{ "192.0.2.10-20", "192.0.2.20", NULL, true },
		{ "192.0.2.10-20", "192.0.2.21", NULL, false },
		{ "192.0.2.10-20", "192.0.3.15", NULL, false },
		{ "192.0.2.5-5", "192.0.2.5", NULL, true },
		{ "192.0.2.5-5", "192.0.2.6", NULL, false },
		{ "192.0.2.0-255", "192.0.2.0", NULL, true },
		{ "192.0.2.0-255", "192.0.2.255", NULL, true },
		{ "192.0.2.0-255", "192.0.3.0", NULL, false },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_partial(void **state)
{
	static const struct golden g[] = {
		{ "10.", "10.0.0.0", NULL, true },
		{ "10.", "10.255.255.255", NULL, true },
		{ "10.", "9.255.255.255", NULL, false },
		{ "10.", "11.0.0.0", NULL, false },
		{ "10.1.", "10.1.0.0", NULL, true },
		{ "10.1.", "10.1.255.255", NULL, true },
		{ "10.1.", "10.2.0.0", NULL, false },
		{ "10.1.", "10.0.255.255", NULL, false },
		{ "10.1.2.", "10.1.2.0", NULL, true },
		{ "10.1.2.", "10.1.2.255", NULL, true },
		{ "10.1.2.", "10.1.3.0", NULL, false },
		{ "10.1.2.", "2001:db8::1", NULL, false },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_name(void **state)
{
	static const struct golden g[] = {
		{ "mail.example.com", "192.0.2.1", "mail.example.com", true },
		{ "mail.example.com", "2001:db8::1", "mail.example.com", true },
		{ "mail.example.com", "192.0.2.1", "MAIL.Example.COM", true },
		{ "mail.example.com", "192.0.2.1", "mail.example.com.", true },
		{ "Mail.Example.COM", "192.0.2.1", "mail.example.com", true },
		{ "mail.example.com.", "192.0.2.1", "mail.example.com", true },
		{ "mail.example.com", "192.0.2.1", "xmail.example.com", false },
		{ "mail.example.com", "192.0.2.1", "a.mail.example.com", false },
		{ "mail.example.com", "192.0.2.1", "mail.example.co", false },
		{ "mail.example.com", "192.0.2.1", "", false },
		{ "mail.example.com", "192.0.2.1", NULL, false },
		{ "localhost", "127.0.0.1", "localhost", true },
		{ "mx-1.example", "192.0.2.1", "mx-1.example", true },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_suffix(void **state)
{
	static const struct golden g[] = {
		{ ".example.com", "192.0.2.1", "a.example.com", true },
		{ ".example.com", "192.0.2.1", "a.b.example.com", true },
		{ ".example.com", "192.0.2.1", "A.EXAMPLE.COM", true },
		{ ".example.com", "192.0.2.1", "a.example.com.", true },
		{ ".Example.COM", "2001:db8::1", "a.example.com", true },
		{ ".example.com", "192.0.2.1", "example.com", false },
		{ ".example.com", "192.0.2.1", "badexample.com", false },
		{ ".example.com", "192.0.2.1", ".example.com", false },
		{ ".example.com", "192.0.2.1", "a.example.com.evil", false },
		{ ".example.com", "192.0.2.1", NULL, false },
		{ ".com", "192.0.2.1", "example.com", true },
	};

	(void)state;
	run_golden(g, sizeof(g) / sizeof(g[0]));
}

static void
test_parse_forms(void **state)
{
	struct hat_host h;
	char err[128];

	(void)state;
	assert_int_equal(hat_host_parse("ALL", &h, err, sizeof(err)), 0);
	assert_int_equal(h.kind, HAT_ALL);
	assert_string_equal(h.text, "ALL");
	hat_host_free(&h);
	hat_host_free(&h);		/* twice is harmless */

	assert_int_equal(hat_host_parse("Mail.Example.COM.", &h, err, sizeof(err)), 0);
	assert_int_equal(h.kind, HAT_NAME);
	assert_string_equal(h.text, "Mail.Example.COM.");
	assert_string_equal(h.name, "mail.example.com");
	hat_host_free(&h);

	assert_int_equal(hat_host_parse(".Corp.Example", &h, err, sizeof(err)), 0);
	assert_int_equal(h.kind, HAT_SUFFIX);
	assert_string_equal(h.name, ".corp.example");
	hat_host_free(&h);

	/* IPv4 kept in ::ffff:0:0/96 */
	assert_int_equal(hat_host_parse("192.0.2.10-20", &h, err, sizeof(err)), 0);
	assert_int_equal(h.kind, HAT_RANGE);
	{
		static const uint8_t lo[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
		    192, 0, 2, 10 };
		static const uint8_t hi[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
		    192, 0, 2, 20 };

		assert_memory_equal(h.lo.b, lo, 16);
		assert_memory_equal(h.hi.b, hi, 16);
	}
	assert_null(h.name);
	hat_host_free(&h);
}

static void
test_parse_errors(void **state)
{
	static const struct { const char *text, *reason; } bad[] = {
		{ "", "not an address" },
		{ "10.0.0.0/33", "IPv4 prefix length must be 0..32" },
		{ "10.0.0.0/", "IPv4 prefix length" },
		{ "10.0.0.0/-1", "IPv4 prefix length" },
		{ "10.0.0.0/8x", "IPv4 prefix length" },
		{ "2001:db8::/129", "IPv6 prefix length must be 0..128" },
		{ "/8", "not an address" },
		{ "mail.example/8", "not an address" },
		{ "192.0.2.20-10", "range end is below its start" },
		{ "192.0.2.10-256", "range end must be 0..255" },
		{ "192.0.2.10-", "range end must be 0..255" },
		{ "192.0.2-10", "not an address" },
		{ "2001:db8::1-2", "not an address" },
		{ "10.1.2.3.", "not an address" },
		{ "10..", "not an address" },
		{ "256.", "not an address" },
		{ "1.2.3", "not an address" },		/* not partial without the dot */
		{ "192.0.2.300", "not an address" },
		{ "bad host!", "not an address" },
		{ "-a.example", "not an address" },
		{ "a-.example", "not an address" },
		{ "a..example", "not an address" },
		{ "mail_x.example", "not an address" },
		{ ".", "not an address" },
		{ "..example", "not an address" },
		{ "[192.0.2.1]", "not an address" },
	};
	char label[80], longname[300];
	struct hat_host h;
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = hat_host_parse(bad[i].text, &h, err, sizeof(err));

		if (rc != -1 || strstr(err, bad[i].reason) == NULL)
			print_error("\"%s\": rc %d, reason \"%s\"\n", bad[i].text, rc, err);
		assert_int_equal(rc, -1);
		assert_non_null(strstr(err, bad[i].reason));
	}
	assert_int_equal(hat_host_parse("x", &h, err, sizeof(err)), 0);
	hat_host_free(&h);
	assert_string_equal(err, "");
	hat_host_parse("bad host!", &h, err, sizeof(err));
	assert_string_equal(err,
	    "not an address, CIDR block, range, partial address or host name");

	/* a 63-octet label is fine, 64 is not; a name is at most 255 octets */
	memset(label, 'a', 63);
	strcpy(label + 63, ".example");
	assert_int_equal(hat_host_parse(label, &h, err, sizeof(err)), 0);
	hat_host_free(&h);
	memset(label, 'a', 64);
	strcpy(label + 64, ".example");
	assert_int_equal(hat_host_parse(label, &h, err, sizeof(err)), -1);
	for (size_t i = 0; i < 256; i += 2)
		memcpy(longname + i, "a.", 2);
	longname[255] = '\0';			/* 255 octets, last label "a" */
	assert_int_equal(hat_host_parse(longname, &h, err, sizeof(err)), 0);
	hat_host_free(&h);
	longname[255] = 'b';
	longname[256] = '\0';
	assert_int_equal(hat_host_parse(longname, &h, err, sizeof(err)), -1);
}

static void
test_addr_from_sockaddr(void **state)
{
	struct sockaddr_storage a, b;
	struct hat_addr x, y;

	(void)state;
	make_sa("192.0.2.1", false, &a);
	make_sa("192.0.2.1", true, &b);
	hat_addr_from_sockaddr((struct sockaddr *)&a, &x);
	hat_addr_from_sockaddr((struct sockaddr *)&b, &y);
	assert_memory_equal(x.b, y.b, 16);
	assert_int_equal(x.b[10], 0xff);
	assert_int_equal(x.b[11], 0xff);
	assert_int_equal(x.b[12], 192);
	assert_int_equal(x.b[15], 1);
	make_sa("2001:db8::1", false, &a);
	hat_addr_from_sockaddr((struct sockaddr *)&a, &x);
	assert_int_equal(x.b[0], 0x20);
	assert_int_equal(x.b[15], 1);
}

/* a listener with rules built from (hosts, action) pairs */
struct fixture {
	struct policy pol[4];
	struct hat_rule rules[4];
	struct hat_host hosts[4][3];
	struct listener_conf l;
};

static void
add_rule(struct fixture *f, const char *group, enum policy_action action,
    const char *h0, const char *h1)
{
	size_t i = f->l.n_hat++;
	const char *hs[2] = { h0, h1 };
	char err[128];

	f->pol[i].action = action;
	f->rules[i].group = (char *)(uintptr_t)group;
	f->rules[i].policy = &f->pol[i];
	f->rules[i].hosts = f->hosts[i];
	for (size_t j = 0; j < 2 && hs[j] != NULL; j++) {
		assert_int_equal(hat_host_parse(hs[j], &f->hosts[i][j], err, sizeof(err)), 0);
		f->rules[i].n_hosts++;
	}
	f->l.hat = f->rules;
}

static void
fixture_free(struct fixture *f)
{
	for (size_t i = 0; i < f->l.n_hat; i++)
		for (size_t j = 0; j < f->rules[i].n_hosts; j++)
			hat_host_free(&f->hosts[i][j]);
}

static const char *
match_group(const struct fixture *f, const char *client, const char *revname, bool mapped,
    const char **host)
{
	struct sockaddr_storage ss;
	const struct hat_host *m = NULL;
	const struct hat_rule *r;

	make_sa(client, mapped, &ss);
	r = hat_match(&f->l, (struct sockaddr *)&ss, revname, &m);
	if (host != NULL)
		*host = m != NULL ? m->text : NULL;
	return r != NULL ? r->group : NULL;
}

static void
test_first_match(void **state)
{
	struct fixture f;
	const char *host;

	(void)state;
	memset(&f, 0, sizeof(f));
	add_rule(&f, "RELAYLIST", ACTION_RELAY, "10.0.0.0/8", ".corp.example");
	add_rule(&f, "BLOCKED", ACTION_REJECT, "10.1.", "bad.example");
	add_rule(&f, "ALL", ACTION_ACCEPT, "ALL", NULL);

	/* 10.1.2.3 is in both the first and second rule: the first wins */
	assert_string_equal(match_group(&f, "10.1.2.3", NULL, false, &host), "RELAYLIST");
	assert_string_equal(host, "10.0.0.0/8");
	assert_string_equal(match_group(&f, "10.1.2.3", NULL, true, &host), "RELAYLIST");
	/* the second host of a rule */
	assert_string_equal(match_group(&f, "192.0.2.1", "a.corp.example", false, &host),
	    "RELAYLIST");
	assert_string_equal(host, ".corp.example");
	assert_string_equal(match_group(&f, "192.0.2.1", "bad.example", false, &host),
	    "BLOCKED");
	assert_string_equal(host, "bad.example");
	assert_string_equal(match_group(&f, "192.0.2.1", NULL, false, &host), "ALL");
	assert_string_equal(host, "ALL");
	assert_string_equal(match_group(&f, "2001:db8::1", "x.example", false, NULL), "ALL");
	fixture_free(&f);
}

static void
test_continue_and_none(void **state)
{
	struct fixture f;
	const char *host = "x";

	(void)state;
	memset(&f, 0, sizeof(f));
	add_rule(&f, "WATCH", ACTION_CONTINUE, "ALL", NULL);
	add_rule(&f, "TRUSTED", ACTION_RELAY, "192.0.2.0/24", NULL);
	add_rule(&f, "SUSPECT", ACTION_TCPREFUSE, ".dialup.example", NULL);

	/* a "continue" rule is never the answer, even when it matches */
	assert_string_equal(match_group(&f, "192.0.2.9", NULL, false, &host), "TRUSTED");
	assert_string_equal(match_group(&f, "198.51.100.1", "h.dialup.example", true, NULL),
	    "SUSPECT");
	/* nothing matches: NULL, and *matched is cleared */
	assert_null(match_group(&f, "198.51.100.1", NULL, false, &host));
	assert_null(host);
	assert_null(match_group(&f, "2001:db8::1", "dialup.example", false, NULL));
	fixture_free(&f);

	/* no rules at all */
	memset(&f, 0, sizeof(f));
	assert_null(match_group(&f, "192.0.2.1", NULL, false, NULL));
}

/* the embedded default: this machine relays, everyone else is blocked */
static void
test_default_config(void **state)
{
	char err[1024];
	struct config *c = config_load(NULL, err, sizeof(err));
	const struct listener_conf *l;
	struct sockaddr_storage ss;
	const struct hat_rule *r;

	(void)state;
	assert_non_null(c);
	l = config_listener(c, "default");
	make_sa("127.0.0.1", false, &ss);
	r = hat_match(l, (struct sockaddr *)&ss, NULL, NULL);
	assert_string_equal(r->group, "RELAYLIST");
	assert_int_equal(r->policy->action, ACTION_RELAY);
	make_sa("127.8.9.10", true, &ss);
	assert_string_equal(hat_match(l, (struct sockaddr *)&ss, NULL, NULL)->group,
	    "RELAYLIST");
	make_sa("::1", false, &ss);
	assert_string_equal(hat_match(l, (struct sockaddr *)&ss, NULL, NULL)->group,
	    "RELAYLIST");
	make_sa("192.0.2.1", false, &ss);
	r = hat_match(l, (struct sockaddr *)&ss, "localhost", NULL);
	assert_string_equal(r->group, "ALL");
	assert_int_equal(r->policy->action, ACTION_REJECT);
	config_unref(c);
}

/* the spec's RAT: example.com and its subdomains accepted, the rest rejected */
static void
test_rat(void **state)
{
	struct rat_rule rat[] = {
		{ .recipient = "blocked@example.com", .action = RAT_REJECT },
		{ .recipient = "example.com", .action = RAT_ACCEPT },
		{ .recipient = ".example.com", .action = RAT_ACCEPT },
		{ .recipient = "partner@other.example", .action = RAT_ACCEPT },
		{ .recipient = "ALL", .action = RAT_REJECT },
	};
	struct listener_conf l = { .name = "in", .public = true, .rat = rat, .n_rat = 5 };
	static const struct { const char *addr, *domain; bool ok; } g[] = {
		{ "a@example.com", "example.com", true },
		{ "a@EXAMPLE.Com", "EXAMPLE.Com", true },
		{ "a@example.com.", "example.com.", true },
		{ "a@mail.example.com", "mail.example.com", true },
		{ "a@x.y.example.com", "x.y.example.com", true },
		{ "a@badexample.com", "badexample.com", false },
		{ "a@example.com.evil", "example.com.evil", false },
		{ "a@example.org", "example.org", false },
		{ "blocked@example.com", "example.com", false },	/* first match wins */
		{ "Blocked@Example.COM", "Example.COM", false },
		{ "partner@other.example", "other.example", true },
		{ "someone@other.example", "other.example", false },
		{ "postmaster", NULL, false },
		{ NULL, NULL, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		bool got = hat_rat_accepts(&l, g[i].addr, g[i].domain);

		if (got != g[i].ok)
			print_error("%s: got %d\n", g[i].addr ? g[i].addr : "(null)", got);
		assert_int_equal(got, g[i].ok);
	}
	/* no entry matches: reject; an empty RAT rejects everything */
	l.n_rat = 4;
	assert_false(hat_rat_accepts(&l, "a@example.org", "example.org"));
	assert_true(hat_rat_accepts(&l, "a@example.com", "example.com"));
	l.n_rat = 0;
	assert_false(hat_rat_accepts(&l, "a@example.com", "example.com"));
	/* ALL accepting takes everyone, "postmaster" with no domain included */
	rat[0].recipient = "ALL";
	rat[0].action = RAT_ACCEPT;
	l.n_rat = 1;
	assert_true(hat_rat_accepts(&l, "postmaster", NULL));
	assert_true(hat_rat_accepts(&l, "a@b.example", "b.example"));
}

/* the RAT as the spec's example config writes it */
static void
test_rat_from_config(void **state)
{
	char err[1024];
	struct config *c = config_load_string(
	    "listeners = ( { name = \"in\"; listen = \"127.0.0.1:25\";\n"
	    "  rat = ( { recipient = \"example.com\";  action = \"accept\"; },\n"
	    "          { recipient = \".example.com\"; action = \"accept\"; },\n"
	    "          { recipient = \"ALL\";          action = \"reject\"; } ); } );\n",
	    "rat", err, sizeof(err));
	const struct listener_conf *l;

	(void)state;
	assert_non_null(c);
	l = config_listener(c, "in");
	assert_true(hat_rat_accepts(l, "u@example.com", "example.com"));
	assert_true(hat_rat_accepts(l, "u@a.example.com", "a.example.com"));
	assert_false(hat_rat_accepts(l, "u@example.net", "example.net"));
	config_unref(c);
}

/*
 * The index (hat_index_build()) against the walk: hat_match() walks the rules
 * when the listener has no index, so the same listener asked with and without
 * one must give the same rule and the same host, on every case.
 */
static const char *
match_both(struct listener_conf *l, struct hat_index *ix, const char *client, bool mapped,
    const char *revname, const char **host)
{
	struct sockaddr_storage ss;
	const struct hat_host *m1 = NULL, *m2 = NULL;
	const struct hat_rule *r1, *r2;

	make_sa(client, mapped, &ss);
	l->hat_index = NULL;
	r1 = hat_match(l, (struct sockaddr *)&ss, revname, &m1);
	l->hat_index = ix;
	r2 = hat_match(l, (struct sockaddr *)&ss, revname, &m2);
	if (r1 != r2 || m1 != m2)
		print_error("client %s%s rev %s: walk %s/%s, index %s/%s\n",
		    mapped ? "::ffff:" : "", client, revname ? revname : "(null)",
		    r1 ? r1->group : "-", m1 ? m1->text : "-",
		    r2 ? r2->group : "-", m2 ? m2->text : "-");
	assert_ptr_equal(r1, r2);
	assert_ptr_equal(m1, m2);
	if (host != NULL)
		*host = m2 != NULL ? m2->text : NULL;
	return r2 != NULL ? r2->group : NULL;
}

/* overlapping ranges, names and suffixes: the earliest rule, then its first host */
static void
test_index_first_match(void **state)
{
	struct fixture f;
	struct hat_index *ix;
	const char *host;

	(void)state;
	memset(&f, 0, sizeof(f));
	add_rule(&f, "WATCH", ACTION_CONTINUE, "10.1.2.0/24", "mail.example.com");
	add_rule(&f, "NARROW", ACTION_RELAY, "10.1.2.5-9", "mail.example.com");
	add_rule(&f, "WIDE", ACTION_REJECT, "10.0.0.0/8", ".example.com");
	add_rule(&f, "V6", ACTION_ACCEPT, "2001:db8::/32", "ffff::/16");
	assert_non_null(ix = hat_index_build(f.rules, f.l.n_hat));

	/* inside the narrow range the earlier rule wins; around it the wide one */
	assert_string_equal(match_both(&f.l, ix, "10.1.2.7", false, NULL, &host), "NARROW");
	assert_string_equal(host, "10.1.2.5-9");
	assert_string_equal(match_both(&f.l, ix, "10.1.2.5", true, NULL, NULL), "NARROW");
	assert_string_equal(match_both(&f.l, ix, "10.1.2.9", false, NULL, NULL), "NARROW");
	assert_string_equal(match_both(&f.l, ix, "10.1.2.4", false, NULL, &host), "WIDE");
	assert_string_equal(host, "10.0.0.0/8");
	assert_string_equal(match_both(&f.l, ix, "10.1.2.10", true, NULL, NULL), "WIDE");
	assert_string_equal(match_both(&f.l, ix, "10.255.255.255", false, NULL, NULL), "WIDE");
	assert_null(match_both(&f.l, ix, "11.0.0.0", false, NULL, &host));
	assert_null(host);
	assert_null(match_both(&f.l, ix, "9.255.255.255", false, NULL, NULL));
	/* two hosts of one rule match: the first is reported, as the walk does */
	assert_string_equal(match_both(&f.l, ix, "10.1.2.6", false, "mail.example.com", &host),
	    "NARROW");
	assert_string_equal(host, "10.1.2.5-9");
	assert_string_equal(match_both(&f.l, ix, "192.0.2.1", false, "MAIL.Example.COM.", &host),
	    "NARROW");
	assert_string_equal(host, "mail.example.com");
	/* ".example.com": a name under it, never the domain itself or a look-alike */
	assert_string_equal(match_both(&f.l, ix, "192.0.2.1", false, "a.example.com", &host),
	    "WIDE");
	assert_string_equal(host, ".example.com");
	assert_string_equal(match_both(&f.l, ix, "192.0.2.1", false, "x.y.example.com.", NULL),
	    "WIDE");
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, "example.com", NULL));
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, "example.com.", NULL));
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, "badexample.com", NULL));
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, ".example.com", NULL));
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, "example.com.evil", NULL));
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, "", NULL));
	/* IPv6, up to the very last address (a range with nothing after it) */
	assert_string_equal(match_both(&f.l, ix, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
	    false, NULL, NULL), "V6");
	assert_string_equal(match_both(&f.l, ix, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	    false, NULL, &host), "V6");
	assert_string_equal(host, "ffff::/16");
	assert_null(match_both(&f.l, ix, "2001:db9::", false, NULL, NULL));
	assert_null(match_both(&f.l, ix, "::", false, NULL, NULL));
	hat_index_free(ix);
	fixture_free(&f);
}

/* no rules, or only "continue" rules: an index that matches nothing */
static void
test_index_empty(void **state)
{
	struct fixture f;
	struct hat_index *ix;

	(void)state;
	memset(&f, 0, sizeof(f));
	assert_non_null(ix = hat_index_build(NULL, 0));
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, "a.example", NULL));
	hat_index_free(ix);
	assert_non_null(ix = hat_index_build(f.rules, 0));
	hat_index_free(ix);
	hat_index_free(NULL);

	add_rule(&f, "WATCH", ACTION_CONTINUE, "ALL", ".example");
	add_rule(&f, "WATCH2", ACTION_CONTINUE, "::/0", "a.example");
	assert_non_null(ix = hat_index_build(f.rules, f.l.n_hat));
	assert_null(match_both(&f.l, ix, "192.0.2.1", false, "a.example", NULL));
	assert_null(match_both(&f.l, ix, "2001:db8::1", false, "b.a.example", NULL));
	hat_index_free(ix);
	fixture_free(&f);
}

/* xorshift64*: the same cases on every run, and a seed to print when one fails */
static uint64_t rng;

static uint32_t
rnd(uint32_t n)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)((rng * 2685821657736338717ull) >> 32) % n;
}

#define PICK(a)	((a)[rnd(sizeof(a) / sizeof((a)[0]))])

/*
 * A small universe, so that random entries overlap, nest and share edges
 * often: a few networks, octets at the edges of ranges and blocks, a few
 * names under a few domains (badexample.com next to example.com).
 */
static const unsigned u_a[] = { 0, 10, 11, 192, 255 };
static const unsigned u_b[] = { 0, 1, 255 };
static const unsigned u_c[] = { 0, 1, 2, 255 };
static const unsigned u_d[] = { 0, 1, 2, 5, 9, 10, 20, 127, 128, 200, 254, 255 };
static const unsigned u_bits4[] = { 0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 30, 31, 32 };
static const unsigned u_bits6[] = { 0, 1, 16, 31, 32, 33, 64, 95, 96, 97, 104, 120, 127, 128 };
static const char *const u_v6[] = { "2001:db8::", "2001:db8::1", "2001:db8:0:1::",
	"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", "::", "::1", "fe80::1",
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff::", "::ffff:10.1.2.5",
	"::ffff:0.0.0.0", "::fffe:ffff:ffff" };
static const char *const u_label[] = { "a", "b", "mail", "x.a" };
static const char *const u_domain[] = { "example.com", "badexample.com", "b.example.com",
	"example.org", "com", "org", "a.example.com" };

static void
rand_v4(char *buf, size_t len)
{
	unsigned d = rnd(4) == 0 ? rnd(256) : PICK(u_d);

	snprintf(buf, len, "%u.%u.%u.%u", PICK(u_a), PICK(u_b), PICK(u_c), d);
}

/* one host entry of any form, as the config would write it */
static void
rand_host(char *buf, size_t len)
{
	char a[64];
	unsigned lo, hi;

	switch (rnd(20)) {
	case 0:
		snprintf(buf, len, "ALL");
		break;
	case 1: case 2:
		rand_v4(buf, len);
		break;
	case 3: case 4: case 5:
		rand_v4(a, sizeof(a));
		snprintf(buf, len, "%s/%u", a, PICK(u_bits4));
		break;
	case 6: case 7:
		lo = PICK(u_d);
		hi = PICK(u_d);
		snprintf(buf, len, "%u.%u.%u.%u-%u", PICK(u_a), PICK(u_b), PICK(u_c),
		    lo < hi ? lo : hi, lo < hi ? hi : lo);
		break;
	case 8:
		snprintf(buf, len, "%u.", PICK(u_a));
		break;
	case 9:
		snprintf(buf, len, "%u.%u.%u.", PICK(u_a), PICK(u_b), PICK(u_c));
		break;
	case 10:
		snprintf(buf, len, "%s", PICK(u_v6));
		break;
	case 11: case 12: case 13:
		snprintf(buf, len, "%s/%u", PICK(u_v6), PICK(u_bits6));
		break;
	case 14: case 15: case 16:
		snprintf(buf, len, "%s.%s", PICK(u_label), PICK(u_domain));
		break;
	case 17:
		snprintf(buf, len, "%s", PICK(u_domain));
		break;
	default:
		snprintf(buf, len, ".%s", PICK(u_domain));
		break;
	}
}

/* a client's reverse name: unknown, or from the universe, any case, dots at the edges */
static const char *
rand_revname(char *buf, size_t len)
{
	static const char *const pre[] = { "", "a.", "b.", "mail.", "x.a.", "A.", "MAIL.",
		"z.", ".", "a.." };
	static const char *const odd[] = { "", ".", "example", ".example.com",
		"EXAMPLE.COM", "a.EXAMPLE.com." };

	switch (rnd(8)) {
	case 0: case 1:
		return NULL;
	case 2:
		return PICK(odd);
	default:
		snprintf(buf, len, "%s%s%s", PICK(pre), PICK(u_domain), rnd(4) == 0 ? "." : "");
		return buf;
	}
}

struct rset {
	struct policy pol[4];
	struct hat_rule *rules;
	struct hat_host *hosts;
	size_t n_hosts;
	struct listener_conf l;
};

/* n rules of 1..4 random hosts each, about a quarter of them "continue" */
static void
rset_make(struct rset *s, size_t n, void (*host)(char *, size_t))
{
	static const enum policy_action acts[] = { ACTION_ACCEPT, ACTION_RELAY, ACTION_REJECT,
		ACTION_CONTINUE };
	char text[128], err[128];

	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < 4; i++)
		s->pol[i].action = acts[i];
	assert_non_null(s->rules = calloc(n, sizeof(*s->rules)));
	assert_non_null(s->hosts = calloc(4 * n, sizeof(*s->hosts)));
	for (size_t i = 0; i < n; i++) {
		struct hat_rule *r = &s->rules[i];

		r->group = (char *)(uintptr_t)"G";
		/* a rule whose policy did not resolve counts as deciding, in both */
		r->policy = rnd(30) == 0 ? NULL : &s->pol[rnd(4)];
		r->hosts = &s->hosts[s->n_hosts];
		for (size_t j = rnd(4) + 1; j > 0; j--) {
			host(text, sizeof(text));
			if (hat_host_parse(text, &r->hosts[r->n_hosts], err, sizeof(err)) != 0) {
				print_error("\"%s\": %s\n", text, err);
				fail();
			}
			r->n_hosts++;
			s->n_hosts++;
		}
	}
	s->l.name = (char *)(uintptr_t)"l";
	s->l.hat = s->rules;
	s->l.n_hat = n;
}

static void
rset_free(struct rset *s)
{
	for (size_t i = 0; i < s->n_hosts; i++)
		hat_host_free(&s->hosts[i]);
	free(s->hosts);
	free(s->rules);
}

/* every form, v4 (both socket families) and v6 clients, names: 400 sets x 100 clients */
static void
test_index_random(void **state)
{
	size_t cases = 0;

	(void)state;
	for (unsigned round = 0; round < 400; round++) {
		struct rset s;
		struct hat_index *ix;

		rng = 0x9e3779b97f4a7c15ull + round;
		rset_make(&s, rnd(30) + 1, rand_host);
		assert_non_null(ix = hat_index_build(s.rules, s.l.n_hat));
		for (unsigned q = 0; q < 100; q++) {
			char addr[64], name[128];
			const char *rev = rand_revname(name, sizeof(name));
			bool mapped = false;

			if (rnd(3) == 0)
				snprintf(addr, sizeof(addr), "%s", PICK(u_v6));
			else {
				rand_v4(addr, sizeof(addr));
				mapped = rnd(2) == 0;
			}
			match_both(&s.l, ix, addr, mapped, rev, NULL);
			cases++;
		}
		hat_index_free(ix);
		rset_free(&s);
	}
	print_message("%zu random cases agree\n", cases);
}

/* address forms packed into 10.0.0.0/23, so that they overlap densely */
static void
rand_dense_v4(char *buf, size_t len)
{
	static const unsigned bits[] = { 8, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32 };
	unsigned c = rnd(2), lo = rnd(256), hi = rnd(256);

	switch (rnd(5)) {
	case 0:
		snprintf(buf, len, "10.0.%u.%u/%u", c, rnd(256), PICK(bits));
		break;
	case 1: case 2:
		snprintf(buf, len, "10.0.%u.%u-%u", c, lo < hi ? lo : hi, lo < hi ? hi : lo);
		break;
	case 3:
		snprintf(buf, len, "10.0.%u.%u", c, lo);
		break;
	default:
		snprintf(buf, len, rnd(3) == 0 ? "10." : "10.0.%u.", c);
		break;
	}
}

/* the sweep: every address of the area, and the ones just outside it */
static void
test_index_dense_ranges(void **state)
{
	(void)state;
	for (unsigned round = 0; round < 150; round++) {
		struct rset s;
		struct hat_index *ix;
		char addr[32];

		rng = 0x2545f4914f6cdd1dull + round;
		rset_make(&s, rnd(60) + 1, rand_dense_v4);
		assert_non_null(ix = hat_index_build(s.rules, s.l.n_hat));
		for (unsigned i = 0; i < 512; i++) {
			snprintf(addr, sizeof(addr), "10.0.%u.%u", i / 256, i % 256);
			match_both(&s.l, ix, addr, i % 2 == 1, NULL, NULL);
		}
		match_both(&s.l, ix, "9.255.255.255", false, NULL, NULL);
		match_both(&s.l, ix, "10.0.2.0", false, NULL, NULL);
		match_both(&s.l, ix, "10.255.255.255", false, NULL, NULL);
		match_both(&s.l, ix, "11.0.0.0", false, NULL, NULL);
		hat_index_free(ix);
		rset_free(&s);
	}
}

/* config_load() builds each listener's index after resolving the policies */
static void
test_index_from_config(void **state)
{
	char err[1024];
	struct config *c = config_load_string(
	    "policies = { WATCH = { action = \"continue\"; };\n"
	    "             RELAYED = { action = \"relay\"; }; };\n"
	    "listeners = ( { name = \"in\"; listen = \"127.0.0.1:25\";\n"
	    "  hat = ( { group = \"W\"; hosts = [ \"10.0.0.0/8\" ]; policy = \"WATCH\"; },\n"
	    "          { group = \"R\"; hosts = [ \"10.1.\", \".corp.example\" ];\n"
	    "            policy = \"RELAYED\"; } ); } );\n",
	    "index", err, sizeof(err));
	const struct listener_conf *l;
	struct listener_conf copy;

	(void)state;
	if (c == NULL)
		print_error("%s\n", err);
	assert_non_null(c);
	l = config_listener(c, "in");
	assert_non_null(l->hat_index);
	copy = *l;
	assert_string_equal(match_both(&copy, l->hat_index, "10.1.2.3", false, NULL, NULL), "R");
	assert_string_equal(match_both(&copy, l->hat_index, "192.0.2.1", true, "a.corp.example",
	    NULL), "R");
	assert_null(match_both(&copy, l->hat_index, "10.2.0.1", false, NULL, NULL));
	config_unref(c);

	/* the embedded default has one too */
	assert_non_null(c = config_load(NULL, err, sizeof(err)));
	assert_non_null(config_listener(c, "default")->hat_index);
	config_unref(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all),
		cmocka_unit_test(test_address),
		cmocka_unit_test(test_cidr_v4),
		cmocka_unit_test(test_cidr_v6),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_suffix),
		cmocka_unit_test(test_parse_forms),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_addr_from_sockaddr),
		cmocka_unit_test(test_first_match),
		cmocka_unit_test(test_continue_and_none),
		cmocka_unit_test(test_default_config),
		cmocka_unit_test(test_rat),
		cmocka_unit_test(test_rat_from_config),
		cmocka_unit_test(test_index_first_match),
		cmocka_unit_test(test_index_empty),
		cmocka_unit_test(test_index_random),
		cmocka_unit_test(test_index_dense_ranges),
		cmocka_unit_test(test_index_from_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
