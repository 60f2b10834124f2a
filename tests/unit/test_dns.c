/*
 * test_dns.c: the asynchronous resolver against a stub DNS server inside the test
 * (a thread answering UDP on 127.0.0.1 from a small table, packets built by hand).
 * Every dns_conf here points at the stub and at a temporary hosts file: no packet
 * ever leaves 127.0.0.1. The stub counts what it is asked, so "no query sent" is a
 * test, not a hope.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "dns.h"

#define T_A	1
#define T_CNAME	5
#define T_PTR	12
#define T_MX	15
#define T_AAAA	28
#define T_OPT	41
#define T_ANY	0		/* in the table: every type */

/* data "DROP": never answer; "SERVFAIL": that rcode */
struct stub_rr {
	const char *name;	/* owner: lower case, no trailing dot */
	uint16_t type;
	const char *data;	/* A/AAAA: address; PTR/CNAME/MX: a name (any bytes) */
	uint16_t pref;		/* MX */
};

static const struct stub_rr table[] = {
	/* a verified client, the PTR in mixed case with a trailing dot */
	{ "10.2.0.192.in-addr.arpa", T_PTR, "Mail.Test.Example.", 0 },
	{ "mail.test.example", T_A, "192.0.2.10", 0 },
	{ "mail.test.example", T_A, "192.0.2.77", 0 },
	/* IPv6 */
	{ "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", T_PTR,
	    "six.test.example", 0 },
	{ "six.test.example", T_AAAA, "2001:db8::25", 0 },
	{ "six.test.example", T_A, "192.0.2.10", 0 },
	/* a PTR that lies: the name does not lead back */
	{ "11.2.0.192.in-addr.arpa", T_PTR, "liar.test.example", 0 },
	{ "liar.test.example", T_A, "192.0.2.99", 0 },
	/* a PTR that is no host name */
	{ "13.2.0.192.in-addr.arpa", T_PTR, "bad_name!.test.example", 0 },
	{ "bad_name!.test.example", T_A, "192.0.2.13", 0 },
	{ "14.2.0.192.in-addr.arpa", T_PTR, "192.0.2.14", 0 },
	/* several PTRs: the first counts */
	{ "15.2.0.192.in-addr.arpa", T_PTR, "first.test.example", 0 },
	{ "15.2.0.192.in-addr.arpa", T_PTR, "second.test.example", 0 },
	{ "first.test.example", T_A, "192.0.2.15", 0 },
	/* a PTR through a CNAME (RFC 2317 classless delegation) */
	{ "16.2.0.192.in-addr.arpa", T_CNAME, "16.0-25.2.0.192.in-addr.arpa", 0 },
	{ "16.0-25.2.0.192.in-addr.arpa", T_PTR, "classless.test.example", 0 },
	{ "classless.test.example", T_A, "192.0.2.16", 0 },
	/* the forward lookup never answers */
	{ "17.2.0.192.in-addr.arpa", T_PTR, "slow.test.example", 0 },
	{ "slow.test.example", T_ANY, "DROP", 0 },
	/* a PTR server that never answers */
	{ "18.2.0.192.in-addr.arpa", T_ANY, "DROP", 0 },
	/* address space unbound would answer itself (its default local zones) */
	{ "1.0.0.127.in-addr.arpa", T_PTR, "loopback.test.example", 0 },
	{ "loopback.test.example", T_A, "127.0.0.1", 0 },
	{ "3.2.1.10.in-addr.arpa", T_PTR, "ten.test.example", 0 },
	{ "ten.test.example", T_A, "10.1.2.3", 0 },
	/* MX */
	{ "mx.test.example", T_MX, "b.mx.test.example", 20 },
	{ "mx.test.example", T_MX, "a.mx.test.example", 10 },
	{ "mx.test.example", T_MX, "c.mx.test.example.", 30 },
	{ "mx.test.example", T_MX, "A2.MX.test.example", 10 },
	{ "mx.test.example", T_MX, "bad host.test.example", 5 },
	{ "null.test.example", T_MX, "", 0 },
	{ "mixed.test.example", T_MX, "", 0 },
	{ "mixed.test.example", T_MX, "real.test.example", 10 },
	{ "onlybad.test.example", T_MX, "-bad-.test.example", 10 },
	{ "nomx.test.example", T_A, "192.0.2.30", 0 },
	{ "servfail.test.example", T_ANY, "SERVFAIL", 0 },
	{ "dropmx.test.example", T_ANY, "DROP", 0 },
	/* addresses */
	{ "both.test.example", T_AAAA, "2001:db8::1", 0 },
	{ "both.test.example", T_A, "192.0.2.1", 0 },
	{ "both.test.example", T_A, "192.0.2.2", 0 },
	{ "v6only.test.example", T_AAAA, "2001:db8::6", 0 },
	{ "halfdrop.test.example", T_A, "192.0.2.3", 0 },
	{ "halfdrop.test.example", T_AAAA, "DROP", 0 },
	{ "alias.test.example", T_CNAME, "both.test.example", 0 },
};

/*
 * The stub server
 */

struct stub {
	int fd;
	int stop[2];
	uint16_t port;
	pthread_t thread;
	atomic_int packets;
	pthread_mutex_t lock;
	char asked[64][272];		/* "name type", the first 64 questions */
	int n_asked;
};

static size_t
put_name(uint8_t *out, const char *name)
{
	size_t n = 0;

	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t len = dot != NULL ? (size_t)(dot - name) : strlen(name);

		out[n++] = (uint8_t)len;
		memcpy(out + n, name, len);
		n += len;
		name += len;
		if (*name == '.')
			name++;
	}
	out[n++] = 0;
	return n;
}

static size_t
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

/* the answer to one query, 0 to stay silent */
static size_t
stub_answer(struct stub *st, const uint8_t *in, size_t inlen, uint8_t *out)
{
	char qname[256];
	size_t off = 12, t = 0, qend, n;
	uint16_t qtype, an = 0, rcode = 0;
	const char *owner;
	bool found = false;

	if (inlen < 12 || (in[2] & 0x80) || in[4] != 0 || in[5] != 1)
		return 0;
	while (off < inlen && in[off] != 0) {
		size_t len = in[off++];

		if (len > 63 || off + len > inlen || t + len + 1 >= sizeof(qname))
			return 0;
		for (size_t i = 0; i < len; i++) {
			char c = (char)in[off + i];

			qname[t++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		qname[t++] = '.';
		off += len;
	}
	if (off + 5 > inlen)
		return 0;
	qname[t > 0 ? t - 1 : 0] = '\0';
	qtype = (uint16_t)(in[off + 1] << 8 | in[off + 2]);
	qend = off + 5;
	pthread_mutex_lock(&st->lock);
	if (st->n_asked < 64)
		snprintf(st->asked[st->n_asked++], sizeof(st->asked[0]), "%s %u", qname, qtype);
	pthread_mutex_unlock(&st->lock);

	memcpy(out, in, qend);
	n = qend;
	owner = qname;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct stub_rr *rr = &table[i];
		uint8_t rdata[300];
		size_t rdlen = 0;

		if (strcmp(rr->name, owner) != 0)
			continue;
		found = true;
		if (rr->type != T_ANY && rr->type != qtype && rr->type != T_CNAME)
			continue;
		if (strcmp(rr->data, "DROP") == 0)
			return 0;
		if (strcmp(rr->data, "SERVFAIL") == 0) {
			rcode = 2;
			an = 0;
			n = qend;
			break;
		}
		if (rr->type == T_A)
			inet_pton(AF_INET, rr->data, rdata), rdlen = 4;
		else if (rr->type == T_AAAA)
			inet_pton(AF_INET6, rr->data, rdata), rdlen = 16;
		else if (rr->type == T_PTR || rr->type == T_CNAME)
			rdlen = put_name(rdata, rr->data);
		else if (rr->type == T_MX) {
			rdlen = put16(rdata, rr->pref);
			rdlen += put_name(rdata + 2, rr->data);
		}
		/* owner: the question name at offset 12 (RFC 1035 4.1.4), or spelled out */
		if (owner == qname)
			n += put16(out + n, 0xc00c);
		else
			n += put_name(out + n, owner);
		n += put16(out + n, rr->type);
		n += put16(out + n, 1);
		n += put16(out + n, 0);
		n += put16(out + n, 60);
		n += put16(out + n, (uint16_t)rdlen);
		memcpy(out + n, rdata, rdlen);
		n += rdlen;
		an++;
		if (rr->type == T_CNAME && qtype != T_CNAME) {
			/* follow it: the rest of the answer belongs to the target */
			owner = rr->data;
			i = (size_t)-1;
		}
	}
	/* QR AA RD RA, the query's id and opcode (RFC 1035 4.1.1) */
	out[2] = (uint8_t)(0x84 | (in[2] & 0x79));
	out[3] = (uint8_t)(0x80 | (rcode != 0 ? rcode : (found ? 0 : 3)));
	put16(out + 6, an);
	put16(out + 8, 0);
	put16(out + 10, 0);
	if (in[10] != 0 || in[11] != 0) {
		/* EDNS0 in the query: an OPT in the answer (RFC 6891 7) */
		out[n++] = 0;
		n += put16(out + n, T_OPT);
		n += put16(out + n, 1232);
		n += put16(out + n, 0);
		n += put16(out + n, 0);
		n += put16(out + n, 0);
		put16(out + 10, 1);
	}
	return n;
}

static void *
stub_run(void *arg)
{
	struct stub *st = arg;
	uint8_t in[1500], out[4096];

	for (;;) {
		struct pollfd pfd[2] = { { st->fd, POLLIN, 0 }, { st->stop[0], POLLIN, 0 } };
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		ssize_t len;
		size_t n;

		if (poll(pfd, 2, -1) == -1 || pfd[1].revents != 0)
			break;
		len = recvfrom(st->fd, in, sizeof(in), 0, (struct sockaddr *)&peer, &plen);
		if (len <= 0)
			continue;
		atomic_fetch_add(&st->packets, 1);
		if ((n = stub_answer(st, in, (size_t)len, out)) > 0)
			(void)sendto(st->fd, out, n, 0, (struct sockaddr *)&peer, plen);
	}
	return NULL;
}

static void
stub_start(struct stub *st)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&st->lock, NULL);
	assert_int_not_equal(st->fd = socket(AF_INET, SOCK_DGRAM, 0), -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(st->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(st->fd, (struct sockaddr *)&sin, &len), 0);
	st->port = ntohs(sin.sin_port);
	assert_int_equal(pipe(st->stop), 0);
	assert_int_equal(pthread_create(&st->thread, NULL, stub_run, st), 0);
}

static void
stub_stop(struct stub *st)
{
	assert_int_equal(write(st->stop[1], "x", 1), 1);
	pthread_join(st->thread, NULL);
	close(st->fd);
	close(st->stop[0]);
	close(st->stop[1]);
	pthread_mutex_destroy(&st->lock);
}

static int
stub_asked(struct stub *st, const char *what)
{
	int n = 0;

	pthread_mutex_lock(&st->lock);
	for (int i = 0; i < st->n_asked; i++)
		n += strcmp(st->asked[i], what) == 0;
	pthread_mutex_unlock(&st->lock);
	return n;
}

/*
 * The fixture: a stub, a loop, a conf pointing at both, a temporary hosts file
 */

struct fx {
	struct stub stub;
	struct event_base *base;
	struct dns_conf conf;
	char resolver[32];
	char *resolvers[1];
	char hosts[64];
	struct dns *dns;
	int calls;			/* callbacks so far */
	int want;			/* stop the loop at this many */
	/* the last client answer */
	char name[DNS_NAME_MAX + 1];
	bool have_name, verified;
	/* the last MX or address answer */
	int status;
	struct dns_mx mx[8];
	size_t n;
	struct sockaddr_storage addrs[8];
};

static const char hosts_text[] =
    "# a comment line\n"
    "192.0.2.50   Hosted.Test.Example  alias.hosts.example   # trailing comment\n"
    "2001:db8::50\thosted6.test.example\n"
    "192.0.2.51   bad_name  second.test.example\n"
    "fe80::1%lo0  linklocal\n"
    "::ffff:192.0.2.52 mapped.test.example\n"
    "192.0.2.53 stale.test.example\n"
    "192.0.2.54 stale.test.example\n"
    "garbage line\n";

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	int fd;

	assert_non_null(fx);
	stub_start(&fx->stub);
	assert_non_null(fx->base = event_base_new());
	snprintf(fx->resolver, sizeof(fx->resolver), "127.0.0.1:%u", fx->stub.port);
	fx->resolvers[0] = fx->resolver;
	snprintf(fx->hosts, sizeof(fx->hosts), "/tmp/test_dns_hosts.XXXXXX");
	assert_int_not_equal(fd = mkstemp(fx->hosts), -1);
	assert_int_equal(write(fd, hosts_text, sizeof(hosts_text) - 1),
	    (ssize_t)sizeof(hosts_text) - 1);
	close(fd);
	fx->conf.resolvers = fx->resolvers;
	fx->conf.n_resolvers = 1;
	fx->conf.hosts_file = fx->hosts;
	fx->conf.reverse_lookups = true;
	fx->conf.timeout = 5;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	dns_free(fx->dns);
	event_base_free(fx->base);
	stub_stop(&fx->stub);
	unlink(fx->hosts);
	free(fx);
	return 0;
}

static struct dns *
fx_dns(struct fx *fx)
{
	char err[256] = "";

	fx->dns = dns_new(fx->base, &fx->conf, err, sizeof(err));
	if (fx->dns == NULL)
		fail_msg("dns_new: %s", err);
	return fx->dns;
}

static void
fx_done(struct fx *fx)
{
	if (++fx->calls >= fx->want)
		event_base_loopbreak(fx->base);
}

static void
on_client(void *arg, const char *name, bool verified)
{
	struct fx *fx = arg;

	fx->have_name = name != NULL;
	snprintf(fx->name, sizeof(fx->name), "%s", name ? name : "");
	fx->verified = verified;
	fx_done(fx);
}

static void
on_mx(void *arg, int status, const struct dns_mx *mx, size_t n)
{
	struct fx *fx = arg;

	fx->status = status;
	fx->n = n;
	assert_true(n <= 8);
	if (n > 0)
		memcpy(fx->mx, mx, n * sizeof(*mx));
	fx_done(fx);
}

static void
on_addr(void *arg, int status, const struct sockaddr_storage *addrs, size_t n)
{
	struct fx *fx = arg;

	fx->status = status;
	fx->n = n;
	assert_true(n <= 8);
	if (n > 0)
		memcpy(fx->addrs, addrs, n * sizeof(*addrs));
	fx_done(fx);
}

static void
on_never(void *arg, const char *name, bool verified)
{
	(void)arg;
	(void)name;
	(void)verified;
	fail_msg("a cancelled lookup called back");
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
on_alarm(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* run the loop for at most ms (a timer of our own: a loopexit would outlive us) */
static void
fx_loop(struct fx *fx, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *alarm = evtimer_new(fx->base, on_alarm, fx->base);

	assert_non_null(alarm);
	evtimer_add(alarm, &tv);
	event_base_dispatch(fx->base);
	event_free(alarm);
}

/* run the loop until want callbacks in all, or fail after secs */
static void
fx_wait(struct fx *fx, int want, int secs)
{
	fx->want = want;
	if (fx->calls < want)
		fx_loop(fx, secs * 1000);
	if (fx->calls < want)
		fail_msg("%d callbacks after %ds, wanted %d", fx->calls, secs, want);
}

/* run the loop for ms milliseconds, whatever happens */
static void
fx_run(struct fx *fx, int ms)
{
	fx->want = 1 << 30;
	fx_loop(fx, ms);
}

static struct sockaddr_storage
sa_of(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(25);
		assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(25);
		assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
	}
	return ss;
}

static const char *
sa_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	if (ss->ss_family == AF_INET)
		return inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf,
		    (socklen_t)cap);
	return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf,
	    (socklen_t)cap);
}

/* one client lookup, waited for */
static void
client(struct fx *fx, const char *addr)
{
	struct sockaddr_storage ss = sa_of(addr);
	int before = fx->calls;

	assert_non_null(dns_lookup_client(fx->dns, (struct sockaddr *)&ss, on_client, fx));
	assert_int_equal(fx->calls, before);	/* never from inside the call */
	fx_wait(fx, before + 1, 10);
}

/*
 * Client lookups
 */

static void
test_client_verified(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	client(fx, "192.0.2.10");
	assert_true(fx->have_name);
	assert_string_equal(fx->name, "mail.test.example");
	assert_true(fx->verified);
	assert_int_equal(stub_asked(&fx->stub, "10.2.0.192.in-addr.arpa 12"), 1);
	assert_int_equal(stub_asked(&fx->stub, "mail.test.example 1"), 1);
}

static void
test_client_ipv6(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	client(fx, "2001:db8::25");
	assert_string_equal(fx->name, "six.test.example");
	assert_true(fx->verified);
	/* AAAA for an IPv6 client, never A */
	assert_int_equal(stub_asked(&fx->stub, "six.test.example 28"), 1);
	assert_int_equal(stub_asked(&fx->stub, "six.test.example 1"), 0);

	/* an IPv4-mapped client is the IPv4 one: in-addr.arpa and A */
	client(fx, "::ffff:192.0.2.10");
	assert_string_equal(fx->name, "mail.test.example");
	assert_true(fx->verified);
}

static void
test_client_mismatch(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	client(fx, "192.0.2.11");
	assert_true(fx->have_name);
	assert_string_equal(fx->name, "liar.test.example");
	assert_false(fx->verified);
}

static void
test_client_unknown(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	/* NXDOMAIN */
	client(fx, "192.0.2.12");
	assert_false(fx->have_name);
	assert_false(fx->verified);
	assert_int_equal(stub_asked(&fx->stub, "12.2.0.192.in-addr.arpa 12"), 1);
	/* a PTR that is not a host name: no forward lookup either */
	client(fx, "192.0.2.13");
	assert_false(fx->have_name);
	assert_int_equal(stub_asked(&fx->stub, "bad_name!.test.example 1"), 0);
	/* a PTR that looks like an address */
	client(fx, "192.0.2.14");
	assert_false(fx->have_name);
	/* not an internet address */
	{
		struct sockaddr sa = { .sa_family = AF_UNIX };

		assert_non_null(dns_lookup_client(fx->dns, &sa, on_client, fx));
		fx_wait(fx, fx->calls + 1, 5);
		assert_false(fx->have_name);
	}
}

static void
test_client_first_ptr_cname(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	client(fx, "192.0.2.15");
	assert_string_equal(fx->name, "first.test.example");
	assert_true(fx->verified);
	assert_int_equal(stub_asked(&fx->stub, "second.test.example 1"), 0);
	client(fx, "192.0.2.16");
	assert_string_equal(fx->name, "classless.test.example");
	assert_true(fx->verified);
}

/* unbound's default local zones must not answer for the resolvers */
static void
test_client_private_space(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	client(fx, "127.0.0.1");
	assert_string_equal(fx->name, "loopback.test.example");
	assert_true(fx->verified);
	client(fx, "10.1.2.3");
	assert_string_equal(fx->name, "ten.test.example");
	assert_true(fx->verified);
	assert_int_equal(stub_asked(&fx->stub, "1.0.0.127.in-addr.arpa 12"), 1);
	assert_int_equal(stub_asked(&fx->stub, "3.2.1.10.in-addr.arpa 12"), 1);
}

static void
test_client_timeout(void **state)
{
	struct fx *fx = *state;
	double t0, dt;

	fx->conf.timeout = 1;
	fx_dns(fx);
	/* the PTR never comes */
	t0 = now();
	client(fx, "192.0.2.18");
	dt = now() - t0;
	assert_false(fx->have_name);
	assert_false(fx->verified);
	assert_true(dt > 0.9 && dt < 3.0);
	/* the PTR does, its forward lookup does not: still unknown at the deadline */
	t0 = now();
	client(fx, "192.0.2.17");
	dt = now() - t0;
	assert_false(fx->have_name);
	assert_true(dt > 0.9 && dt < 3.0);
	assert_true(stub_asked(&fx->stub, "slow.test.example 1") >= 1);
}

static void
test_client_reverse_off(void **state)
{
	struct fx *fx = *state;

	fx->conf.reverse_lookups = false;
	fx_dns(fx);
	client(fx, "192.0.2.10");
	assert_false(fx->have_name);
	assert_false(fx->verified);
	/* not even the hosts file: every client is unknown */
	client(fx, "192.0.2.50");
	assert_false(fx->have_name);
	fx_run(fx, 100);
	assert_int_equal(atomic_load(&fx->stub.packets), 0);
}

static void
test_hosts_file(void **state)
{
	struct fx *fx = *state;
	char buf[64];

	fx_dns(fx);
	client(fx, "192.0.2.50");
	assert_string_equal(fx->name, "hosted.test.example");
	assert_true(fx->verified);
	client(fx, "2001:db8::50");
	assert_string_equal(fx->name, "hosted6.test.example");
	assert_true(fx->verified);
	/* an invalid name is skipped: the next one on the line is the first */
	client(fx, "192.0.2.51");
	assert_string_equal(fx->name, "second.test.example");
	assert_true(fx->verified);
	client(fx, "192.0.2.52");
	assert_string_equal(fx->name, "mapped.test.example");
	assert_true(fx->verified);

	assert_non_null(dns_lookup_addr(fx->dns, "ALIAS.hosts.example.", on_addr, fx));
	assert_int_equal(fx->calls, 4);
	fx_wait(fx, 5, 5);
	assert_int_equal(fx->status, DNS_OK);
	assert_int_equal(fx->n, 1);
	assert_string_equal(sa_text(&fx->addrs[0], buf, sizeof(buf)), "192.0.2.50");
	assert_non_null(dns_lookup_addr(fx->dns, "stale.test.example", on_addr, fx));
	fx_wait(fx, 6, 5);
	assert_int_equal(fx->n, 2);
	assert_string_equal(sa_text(&fx->addrs[0], buf, sizeof(buf)), "192.0.2.53");
	assert_string_equal(sa_text(&fx->addrs[1], buf, sizeof(buf)), "192.0.2.54");

	fx_run(fx, 100);
	assert_int_equal(atomic_load(&fx->stub.packets), 0);
}

static void
test_hosts_file_missing(void **state)
{
	struct fx *fx = *state;
	char err[256];
	struct dns *dns;

	/* missing: an empty table, as the C library has it */
	fx->conf.hosts_file = "/nonexistent/mailgate-test-hosts";
	fx_dns(fx);
	client(fx, "192.0.2.10");
	assert_string_equal(fx->name, "mail.test.example");
	/* unreadable: an error naming the setting */
	fx->conf.hosts_file = "/";
	dns = dns_new(fx->base, &fx->conf, err, sizeof(err));
	assert_null(dns);
	assert_non_null(strstr(err, "hosts_file"));
	fx->conf.hosts_file = fx->hosts;
}

static void
test_bad_resolver(void **state)
{
	struct fx *fx = *state;
	static const char *const bad[] = { "mail.example.com", "192.0.2.1:0", "192.0.2.1:x",
	    "[2001:db8::1", "[192.0.2.1]:53", "" };
	char *one[1], err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		one[0] = (char *)bad[i];
		fx->conf.resolvers = one;
		assert_null(dns_new(fx->base, &fx->conf, err, sizeof(err)));
		assert_non_null(strstr(err, "resolver"));
	}
	/* every accepted form (no query is sent: nothing is looked up) */
	{
		static const char *const good[] = { "192.0.2.53", "192.0.2.53:5353",
		    "2001:db8::53", "[2001:db8::53]", "[2001:db8::53]:5353" };
		char *all[5];

		for (size_t i = 0; i < 5; i++)
			all[i] = (char *)good[i];
		fx->conf.resolvers = all;
		fx->conf.n_resolvers = 5;
		fx_dns(fx);
		dns_free(fx->dns);
		fx->dns = NULL;
	}
	/* none: /etc/resolv.conf, read but not asked */
	fx->conf.n_resolvers = 0;
	fx_dns(fx);
	fx->conf.resolvers = fx->resolvers;
	fx->conf.n_resolvers = 1;
}

/*
 * MX
 */

static void
mx(struct fx *fx, const char *domain)
{
	int before = fx->calls;

	memset(fx->mx, 0, sizeof(fx->mx));
	assert_non_null(dns_lookup_mx(fx->dns, domain, on_mx, fx));
	assert_int_equal(fx->calls, before);
	fx_wait(fx, before + 1, 10);
}

static void
test_mx_sorted(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	mx(fx, "mx.test.example");
	assert_int_equal(fx->status, DNS_OK);
	assert_int_equal(fx->n, 4);
	/* by preference, answer order among equals; "bad host" left out */
	assert_int_equal(fx->mx[0].preference, 10);
	assert_string_equal(fx->mx[0].host, "a.mx.test.example");
	assert_int_equal(fx->mx[1].preference, 10);
	assert_string_equal(fx->mx[1].host, "a2.mx.test.example");
	assert_int_equal(fx->mx[2].preference, 20);
	assert_string_equal(fx->mx[2].host, "b.mx.test.example");
	assert_int_equal(fx->mx[3].preference, 30);
	assert_string_equal(fx->mx[3].host, "c.mx.test.example");
}

static void
test_mx_null_and_failures(void **state)
{
	struct fx *fx = *state;

	fx_dns(fx);
	mx(fx, "null.test.example");
	assert_int_equal(fx->status, DNS_NULLMX);
	assert_int_equal(fx->n, 0);
	/* "." among real MX records is skipped */
	mx(fx, "mixed.test.example");
	assert_int_equal(fx->status, DNS_OK);
	assert_int_equal(fx->n, 1);
	assert_string_equal(fx->mx[0].host, "real.test.example");
	mx(fx, "onlybad.test.example");
	assert_int_equal(fx->status, DNS_TEMPFAIL);
	assert_int_equal(fx->n, 0);
	mx(fx, "nomx.test.example");
	assert_int_equal(fx->status, DNS_NODATA);
	mx(fx, "nowhere.test.example");
	assert_int_equal(fx->status, DNS_NXDOMAIN);
	mx(fx, "servfail.test.example");
	assert_int_equal(fx->status, DNS_TEMPFAIL);
	/* a name that cannot exist is not sent */
	mx(fx, "bad\\.name.example");
	assert_int_equal(fx->status, DNS_NXDOMAIN);
	mx(fx, "");
	assert_int_equal(fx->status, DNS_NXDOMAIN);
	assert_int_equal(stub_asked(&fx->stub, "bad\\.name.example 15"), 0);
	assert_string_equal(dns_status_str(DNS_NULLMX), "null MX");
}

static void
test_mx_timeout(void **state)
{
	struct fx *fx = *state;
	double t0 = now(), dt;

	fx->conf.timeout = 1;
	fx_dns(fx);
	mx(fx, "dropmx.test.example");
	dt = now() - t0;
	assert_int_equal(fx->status, DNS_TEMPFAIL);
	assert_int_equal(fx->n, 0);
	assert_true(dt > 0.9 && dt < 3.0);
}

/*
 * Addresses
 */

static void
addr(struct fx *fx, const char *host)
{
	int before = fx->calls;

	assert_non_null(dns_lookup_addr(fx->dns, host, on_addr, fx));
	assert_int_equal(fx->calls, before);
	fx_wait(fx, before + 1, 10);
}

static void
test_addr(void **state)
{
	struct fx *fx = *state;
	char buf[64];
	int packets;

	fx_dns(fx);
	addr(fx, "both.test.example");
	assert_int_equal(fx->status, DNS_OK);
	assert_int_equal(fx->n, 3);
	/* A first, then AAAA */
	assert_string_equal(sa_text(&fx->addrs[0], buf, sizeof(buf)), "192.0.2.1");
	assert_string_equal(sa_text(&fx->addrs[1], buf, sizeof(buf)), "192.0.2.2");
	assert_string_equal(sa_text(&fx->addrs[2], buf, sizeof(buf)), "2001:db8::1");
	/* through a CNAME */
	addr(fx, "alias.test.example");
	assert_int_equal(fx->n, 3);
	addr(fx, "v6only.test.example");
	assert_int_equal(fx->status, DNS_OK);
	assert_int_equal(fx->n, 1);
	assert_int_equal(fx->addrs[0].ss_family, AF_INET6);
	addr(fx, "nowhere.test.example");
	assert_int_equal(fx->status, DNS_NXDOMAIN);
	assert_int_equal(fx->n, 0);
	addr(fx, "mx.test.example");
	assert_int_equal(fx->status, DNS_NODATA);
	addr(fx, "servfail.test.example");
	assert_int_equal(fx->status, DNS_TEMPFAIL);

	/* literals answer themselves, without a packet */
	packets = atomic_load(&fx->stub.packets);

	addr(fx, "192.0.2.9");
	assert_int_equal(fx->status, DNS_OK);
	assert_int_equal(fx->n, 1);
	assert_string_equal(sa_text(&fx->addrs[0], buf, sizeof(buf)), "192.0.2.9");
	addr(fx, "::ffff:192.0.2.9");
	assert_int_equal(fx->addrs[0].ss_family, AF_INET);
	addr(fx, "2001:db8::9");
	assert_string_equal(sa_text(&fx->addrs[0], buf, sizeof(buf)), "2001:db8::9");
	addr(fx, "a b");
	assert_int_equal(fx->status, DNS_NXDOMAIN);
	assert_int_equal(atomic_load(&fx->stub.packets), packets);
}

/* AAAA never answers: the A records still arrive at the deadline (RFC 4074) */
static void
test_addr_partial(void **state)
{
	struct fx *fx = *state;
	char buf[64];

	fx->conf.timeout = 1;
	fx_dns(fx);
	addr(fx, "halfdrop.test.example");
	assert_int_equal(fx->status, DNS_OK);
	assert_int_equal(fx->n, 1);
	assert_string_equal(sa_text(&fx->addrs[0], buf, sizeof(buf)), "192.0.2.3");
}

/* many at once, each answered once (libunbound's mesh holds them all) */
static void
on_count(void *arg, const char *name, bool verified)
{
	struct fx *fx = arg;

	if (name != NULL && verified)
		fx->n++;
	fx_done(fx);
}

static void
test_many(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_storage ss;
	char text[32];

	fx_dns(fx);
	fx->n = 0;
	for (int i = 0; i < 300; i++) {
		snprintf(text, sizeof(text), i % 3 == 0 ? "192.0.2.10" : "198.51.100.%d",
		    i % 250);
		ss = sa_of(text);
		assert_non_null(dns_lookup_client(fx->dns, (struct sockaddr *)&ss, on_count, fx));
	}
	assert_int_equal(fx->calls, 0);
	fx_wait(fx, 300, 20);
	assert_int_equal(fx->n, 100);
	fx_run(fx, 100);
	assert_int_equal(fx->calls, 300);
}

/*
 * Cancel and free
 */

static void
on_mx_never(void *arg, int status, const struct dns_mx *m, size_t n)
{
	(void)arg;
	(void)status;
	(void)m;
	(void)n;
	fail_msg("a cancelled MX lookup called back");
}

static void
on_addr_never(void *arg, int status, const struct sockaddr_storage *a, size_t n)
{
	(void)arg;
	(void)status;
	(void)a;
	(void)n;
	fail_msg("a cancelled address lookup called back");
}

static void
test_cancel(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_storage ss = sa_of("192.0.2.10"), slow = sa_of("192.0.2.17");
	struct dns_query *q;

	fx->conf.timeout = 1;
	fx_dns(fx);
	/* at once: asked, never answered */
	dns_cancel(dns_lookup_client(fx->dns, (struct sockaddr *)&ss, on_never, fx));
	dns_cancel(dns_lookup_mx(fx->dns, "mx.test.example", on_mx_never, fx));
	dns_cancel(dns_lookup_addr(fx->dns, "both.test.example", on_addr_never, fx));
	/* answered from the hosts file, not delivered yet */
	ss = sa_of("192.0.2.50");
	dns_cancel(dns_lookup_client(fx->dns, (struct sockaddr *)&ss, on_never, fx));
	/* half way: the PTR answered, the forward lookup in flight */
	q = dns_lookup_client(fx->dns, (struct sockaddr *)&slow, on_never, fx);
	for (int i = 0; i < 100 && stub_asked(&fx->stub, "slow.test.example 1") == 0; i++)
		fx_run(fx, 20);
	assert_int_equal(stub_asked(&fx->stub, "17.2.0.192.in-addr.arpa 12"), 1);
	assert_true(stub_asked(&fx->stub, "slow.test.example 1") >= 1);
	dns_cancel(q);
	dns_cancel(NULL);
	/* past every deadline: nothing calls back */
	fx_run(fx, 1500);
	assert_int_equal(fx->calls, 0);
	/* and the resolver still works */
	client(fx, "192.0.2.10");
	assert_string_equal(fx->name, "mail.test.example");
}

static void
test_free_pending(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_storage a = sa_of("192.0.2.18"), b = sa_of("192.0.2.17"),
	    c = sa_of("192.0.2.50");

	fx_dns(fx);
	assert_non_null(dns_lookup_client(fx->dns, (struct sockaddr *)&a, on_never, fx));
	assert_non_null(dns_lookup_client(fx->dns, (struct sockaddr *)&b, on_never, fx));
	assert_non_null(dns_lookup_mx(fx->dns, "dropmx.test.example", on_mx_never, fx));
	assert_non_null(dns_lookup_addr(fx->dns, "halfdrop.test.example", on_addr_never, fx));
	/* in flight in the resolver thread; then one answered, not yet delivered */
	fx_run(fx, 200);
	assert_non_null(dns_lookup_client(fx->dns, (struct sockaddr *)&c, on_never, fx));
	assert_non_null(dns_lookup_addr(fx->dns, "192.0.2.1", on_addr_never, fx));
	dns_free(fx->dns);
	fx->dns = NULL;
	fx_run(fx, 300);
	assert_int_equal(fx->calls, 0);
	/* LeakSanitizer checks at exit that nothing was left behind */
}

/* a callback may free the resolver with other lookups pending */
static void
on_client_free(void *arg, const char *name, bool verified)
{
	struct fx *fx = arg;

	on_client(arg, name, verified);
	dns_free(fx->dns);
	fx->dns = NULL;
}

static void
test_free_from_callback(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_storage a = sa_of("192.0.2.10"), b = sa_of("192.0.2.18");

	fx_dns(fx);
	assert_non_null(dns_lookup_client(fx->dns, (struct sockaddr *)&b, on_never, fx));
	assert_non_null(dns_lookup_mx(fx->dns, "dropmx.test.example", on_mx_never, fx));
	assert_non_null(dns_lookup_client(fx->dns, (struct sockaddr *)&a, on_client_free, fx));
	fx_wait(fx, 1, 10);
	assert_null(fx->dns);
	assert_string_equal(fx->name, "mail.test.example");
	fx_run(fx, 300);
	assert_int_equal(fx->calls, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_client_verified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_ipv6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_first_ptr_cname, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_private_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_reverse_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hosts_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hosts_file_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_resolver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mx_sorted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mx_null_and_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mx_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addr_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_from_callback, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
