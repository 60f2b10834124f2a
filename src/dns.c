/*
 * dns.c: asynchronous lookups on libunbound (see dns.h for the contract).
 *
 * libunbound resolves in a thread of its own (ub_ctx_async(ctx, 1)) and writes
 * each answer into a pipe; a persistent read event on ub_fd() calls ub_process(),
 * which runs dns_on_answer() on the loop thread. Each query owns one evtimer: first
 * its deadline, then, once the query is ready, a zero timeout that delivers it.
 * Every callback therefore runs from that timer: never inside the call that asked
 * and never inside ub_process(), so a callback may cancel, ask, or dns_free().
 */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <unbound.h>

#include "config.h"
#include "util.h"

/* RFC 1035 3.2.2, RFC 3596 2.1 */
#define DNS_RR_A	1
#define DNS_RR_PTR	12
#define DNS_RR_MX	15
#define DNS_RR_AAAA	28
#define DNS_CLASS_IN	1
#define DNS_RCODE_NOERROR	0
#define DNS_RCODE_NXDOMAIN	3

/* "f.e.d. ... .ip6.arpa." is 73 octets */
#define DNS_REVERSE_MAX	80

enum dns_kind { DNS_KIND_CLIENT, DNS_KIND_MX, DNS_KIND_ADDR };

struct dns_host {
	char *name;			/* lower case, no trailing dot */
	int family;
	uint8_t addr[16];		/* IPv4 in the first 4, the rest zero */
	size_t seq;			/* order in the file */
};

struct dns {
	struct event_base *base;
	struct ub_ctx *ctx;
	struct event *ev_read;		/* ub_fd(ctx) readable: answers are waiting */
	struct timeval timeout;
	bool reverse_lookups;
	struct dns_host *hosts;		/* sorted by name, then file order */
	struct dns_host **hosts_byaddr;	/* sorted by address, then file order */
	size_t n_hosts;
	TAILQ_HEAD(, dns_query) queries;
};

/* one libunbound query of a lookup */
struct dns_sub {
	struct dns_query *q;
	int rrtype;
	int id;				/* libunbound's async id, while inflight */
	bool inflight;
	bool done;
	int status;			/* enum dns_status, once done */
	struct sockaddr_storage *addrs;	/* DNS_KIND_ADDR */
	size_t n_addrs;
};

struct dns_query {
	struct dns *dns;
	TAILQ_ENTRY(dns_query) link;
	enum dns_kind kind;
	struct event *ev;		/* the deadline, then the delivery */
	bool ready;
	void *arg;
	dns_client_cb client_cb;
	dns_mx_cb mx_cb;
	dns_addr_cb addr_cb;
	struct dns_sub sub[2];		/* client: PTR, forward; addr: A, AAAA; mx: MX */
	/* client */
	int family;
	uint8_t addr[16];
	char name[DNS_NAME_MAX + 1];	/* "" while unknown */
	bool verified;
	/* mx */
	int status;
	struct dns_mx *mx;
	size_t n_mx;
};

/*
 * The default local zones of libunbound (RFC 6303 reverse zones of private and
 * documentation space, RFC 6761 names, RFC 7686, RFC 8375) would answer 127.0.0.1,
 * 10/8, 192.168/16, 192.0.2/24, 2001:db8::/32 ... from inside the library with
 * NXDOMAIN or "localhost" and never ask the resolvers. mailgate is a stub: the
 * resolvers the admin configured own these names (an internal relay's PTR in 10/8
 * must be found), so each default zone is made "transparent" (with no local data:
 * asked upstream). "local-zone: X nodefault" through ub_ctx_set_option() is
 * ignored by libunbound 1.17; a zone of our own with the same name is not.
 * Listing a zone that is not a default is harmless, so newer defaults are here too.
 */
static const char *const dns_default_zones[] = {
	"localhost.", "127.in-addr.arpa.", "onion.", "test.", "invalid.", "home.arpa.",
	"resolver.arpa.", "service.arpa.", "local.",
	"0.in-addr.arpa.", "10.in-addr.arpa.", "254.169.in-addr.arpa.",
	"168.192.in-addr.arpa.", "2.0.192.in-addr.arpa.", "100.51.198.in-addr.arpa.",
	"113.0.203.in-addr.arpa.", "255.255.255.255.in-addr.arpa.",
	"0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
	"d.f.ip6.arpa.", "8.e.f.ip6.arpa.", "9.e.f.ip6.arpa.", "a.e.f.ip6.arpa.",
	"b.e.f.ip6.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa.",
};

static void dns_on_timer(evutil_socket_t, short, void *);
static void dns_on_answer(void *, int, struct ub_result *);
static void dns_client_forward(struct dns_query *);

const char *
dns_status_str(int status)
{
	switch (status) {
	case DNS_OK:		return "ok";
	case DNS_NXDOMAIN:	return "nxdomain";
	case DNS_NODATA:	return "nodata";
	case DNS_TEMPFAIL:	return "tempfail";
	case DNS_NULLMX:	return "null MX";
	default:		return "unknown status";
	}
}

/*
 * Names
 */

static bool
dns_ldh(char c, bool lenient)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-' || (lenient && c == '_');
}

/*
 * A host name (RFC 952, RFC 1123 2.1): labels of 1..63 letters, digits and
 * hyphens, no hyphen at either end, at most 253 octets, and a last label not all
 * digits (RFC 3696 2), so a PTR of "192.0.2.1" is never taken for an address.
 * lenient (names we only look up, never trust): '_' (SRV-style owners, sloppy
 * zones) and any last label. Copies the name lower-cased, without a trailing
 * dot, to out (DNS_NAME_MAX + 1). Returns false on a malformed name, out untouched.
 */
static bool
dns_name_norm(const char *in, size_t len, bool lenient, char *out)
{
	char buf[DNS_NAME_MAX + 1];
	size_t i, label = 0, start = 0;
	bool digits = true;

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	for (i = 0; i <= len; i++) {
		if (i == len || in[i] == '.') {
			if (label == 0 || label > 63)
				return false;
			if (!lenient && (in[start] == '-' || in[i - 1] == '-'))
				return false;
			label = 0;
			start = i + 1;
			if (i == len)
				break;
			buf[i] = '.';
			digits = true;
			continue;
		}
		if (!dns_ldh(in[i], lenient))
			return false;
		if (in[i] < '0' || in[i] > '9')
			digits = false;
		buf[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
		label++;
	}
	buf[len] = '\0';
	if (!lenient && digits)
		return false;
	memcpy(out, buf, len + 1);
	return true;
}

/* an uncompressed wire-format name (RFC 1035 3.1), as libunbound gives rdata, to a host name */
static bool
dns_wire_host(const uint8_t *p, size_t len, bool lenient, char *out)
{
	char text[DNS_NAME_MAX + 2];
	size_t off = 0, t = 0;

	while (off < len && p[off] != 0) {
		size_t n = p[off++];

		/* a compression pointer or an extended label type: not here */
		if (n > 63 || off + n > len || t + n + 1 > sizeof(text) - 1)
			return false;
		for (size_t i = 0; i < n; i++) {
			/* a dot or NUL inside a label would forge another name */
			if (!dns_ldh((char)p[off + i], lenient))
				return false;
			text[t++] = (char)p[off + i];
		}
		off += n;
		text[t++] = '.';
	}
	if (off >= len)
		return false;
	return dns_name_norm(text, t, lenient, out);
}

static bool
dns_is_root(const uint8_t *p, size_t len)
{
	return len == 1 && p[0] == 0;
}

/* the family and address of sa; IPv4-mapped IPv6 (RFC 4291 2.5.5.2) as IPv4 */
static int
dns_sa_addr(const struct sockaddr *sa, int *family, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		*family = AF_INET;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		const struct in6_addr *a6 = &sin6->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(addr, a6->s6_addr + 12, 4);
			*family = AF_INET;
		} else {
			memcpy(addr, a6->s6_addr, 16);
			*family = AF_INET6;
		}
		return 0;
	}
	return -1;
}

/* an address literal; IPv4-mapped IPv6 as IPv4 */
static bool
dns_literal(const char *s, int *family, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, s, addr) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, addr) != 1)
		return false;
	*family = AF_INET6;
	if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)addr)) {
		memmove(addr, addr + 12, 4);
		memset(addr + 4, 0, 12);
		*family = AF_INET;
	}
	return true;
}

static size_t
dns_addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

static void
dns_addr_sa(int family, const uint8_t *addr, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
	}
}

/* the PTR owner of an address (RFC 1035 3.5, RFC 3596 2.5) */
static void
dns_reverse_name(int family, const uint8_t *a, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;

	if (family == AF_INET) {
		snprintf(out, cap, "%u.%u.%u.%u.in-addr.arpa.", a[3], a[2], a[1], a[0]);
		return;
	}
	for (int i = 15; i >= 0; i--) {
		*p++ = hex[a[i] & 0xf];
		*p++ = '.';
		*p++ = hex[a[i] >> 4];
		*p++ = '.';
	}
	util_strlcpy(p, "ip6.arpa.", cap - (size_t)(p - out));
}

/*
 * The hosts file: "address name [alias ...]" lines (hosts(5)), # comments.
 * Every (address, name) pair is one entry, kept in two orders: by name for A and
 * AAAA, by address for PTR (the first name of the first line, as gethostbyaddr).
 */

static int
dns_host_cmp_name(const void *a, const void *b)
{
	const struct dns_host *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static int
dns_host_cmp_addr(const void *a, const void *b)
{
	const struct dns_host *x = *(const struct dns_host *const *)a;
	const struct dns_host *y = *(const struct dns_host *const *)b;
	int c;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if ((c = memcmp(x->addr, y->addr, 16)) != 0)
		return c;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int
dns_hosts_add(struct dns *dns, size_t *cap, int family, const uint8_t *addr, const char *name)
{
	struct dns_host *h;

	if (dns->n_hosts == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;

		if ((h = reallocarray(dns->hosts, ncap, sizeof(*h))) == NULL)
			return -1;
		dns->hosts = h;
		*cap = ncap;
	}
	h = &dns->hosts[dns->n_hosts];
	if ((h->name = strdup(name)) == NULL)
		return -1;
	h->family = family;
	memcpy(h->addr, addr, 16);
	h->seq = dns->n_hosts++;
	return 0;
}

/* a missing file is an empty table (as the C library does); an unreadable one an error */
static int
dns_hosts_load(struct dns *dns, const char *path, char *err, size_t errlen)
{
	char *line = NULL, *save, *tok, name[DNS_NAME_MAX + 1];
	size_t linecap = 0, cap = 0;
	uint8_t addr[16];
	int family, rc = -1;
	FILE *f;

	if (path == NULL || path[0] == '\0')
		return 0;
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "dns: hosts_file %s: %s", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &linecap, f) != -1) {
		line[strcspn(line, "#")] = '\0';
		if ((tok = strtok_r(line, " \t\r\n", &save)) == NULL)
			continue;
		if (!dns_literal(tok, &family, addr))
			continue;	/* "fe80::1%lo0", garbage: not ours to answer */
		while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
			if (!dns_name_norm(tok, strlen(tok), false, name))
				continue;
			if (dns_hosts_add(dns, &cap, family, addr, name) == -1) {
				snprintf(err, errlen, "dns: hosts_file %s: out of memory", path);
				goto out;
			}
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "dns: hosts_file %s: %s", path, strerror(errno));
		goto out;
	}
	if (dns->n_hosts > 0) {
		if ((dns->hosts_byaddr = calloc(dns->n_hosts, sizeof(*dns->hosts_byaddr))) ==
		    NULL) {
			snprintf(err, errlen, "dns: hosts_file %s: out of memory", path);
			goto out;
		}
		qsort(dns->hosts, dns->n_hosts, sizeof(*dns->hosts), dns_host_cmp_name);
		for (size_t i = 0; i < dns->n_hosts; i++)
			dns->hosts_byaddr[i] = &dns->hosts[i];
		qsort(dns->hosts_byaddr, dns->n_hosts, sizeof(*dns->hosts_byaddr),
		    dns_host_cmp_addr);
	}
	rc = 0;
out:
	free(line);
	fclose(f);
	return rc;
}

/* the entries of name (lower case, no trailing dot): *n of them from the result */
static const struct dns_host *
dns_hosts_name(const struct dns *dns, const char *name, size_t *n)
{
	size_t lo = 0, hi = dns->n_hosts, end;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(dns->hosts[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo; end < dns->n_hosts && strcmp(dns->hosts[end].name, name) == 0; end++)
		;
	*n = end - lo;
	return *n > 0 ? &dns->hosts[lo] : NULL;
}

/* the first entry (in file order) of an address, or NULL */
static const struct dns_host *
dns_hosts_addr(const struct dns *dns, int family, const uint8_t *addr)
{
	size_t lo = 0, hi = dns->n_hosts;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct dns_host *h = dns->hosts_byaddr[mid];
		int c = h->family != family ? (h->family < family ? -1 : 1) :
		    memcmp(h->addr, addr, 16);

		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < dns->n_hosts && dns->hosts_byaddr[lo]->family == family &&
	    memcmp(dns->hosts_byaddr[lo]->addr, addr, 16) == 0)
		return dns->hosts_byaddr[lo];
	return NULL;
}

static void
dns_hosts_free(struct dns *dns)
{
	for (size_t i = 0; i < dns->n_hosts; i++)
		free(dns->hosts[i].name);
	free(dns->hosts);
	free(dns->hosts_byaddr);
	dns->hosts = NULL;
	dns->hosts_byaddr = NULL;
	dns->n_hosts = 0;
}

/*
 * The context
 */

/* "addr", "addr:port", "v6addr", "[v6addr]", "[v6addr]:port" -> "addr@port" for ub_ctx_set_fwd */
static int
dns_fwd_text(const char *s, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN];
	const char *port = NULL, *end;
	uint8_t a[16];
	int family = AF_INET;
	char *ep;
	unsigned long p;

	if (inet_pton(AF_INET6, s, a) == 1) {
		snprintf(out, cap, "%s", s);
		return 0;
	}
	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL || (end[1] != '\0' && end[1] != ':'))
			return -1;
		if (end[1] == ':')
			port = end + 2;
		s++;
		family = AF_INET6;
	} else if ((end = strchr(s, ':')) != NULL)
		port = end + 1;
	else
		end = s + strlen(s);
	if (end == s || (size_t)(end - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(end - s));
	host[end - s] = '\0';
	if (inet_pton(family, host, a) != 1)
		return -1;
	if (port == NULL) {
		snprintf(out, cap, "%s", host);
		return 0;
	}
	errno = 0;
	p = strtoul(port, &ep, 10);
	if (port[0] < '0' || port[0] > '9' || *ep != '\0' || errno != 0 || p < 1 || p > 65535)
		return -1;
	snprintf(out, cap, "%s@%lu", host, p);
	return 0;
}

static int
dns_ctx_setup(struct dns *dns, const struct dns_conf *conf, char *err, size_t errlen)
{
	char fwd[INET6_ADDRSTRLEN + 8], zone[128];
	int r;

	/*
	 * libunbound's log goes to stderr by default, which is where the mail log
	 * may be ("-"): a stray line there would break its format. A NULL log file
	 * silences it (process-wide: the setting is global in libunbound).
	 */
	ub_ctx_debugout(dns->ctx, NULL);
	if ((r = ub_ctx_async(dns->ctx, 1)) != 0) {
		snprintf(err, errlen, "dns: cannot use a resolver thread: %s", ub_strerror(r));
		return -1;
	}
	/* a resolver on 127.0.0.1 (a local cache, systemd-resolved, the tests' stub) */
	if ((r = ub_ctx_set_option(dns->ctx, "do-not-query-localhost:", "no")) != 0 ||
	    /* keep answer order, so "the first PTR" is the server's first */
	    (r = ub_ctx_set_option(dns->ctx, "rrset-roundrobin:", "no")) != 0 ||
	    /*
	     * library mode has 16 outgoing ports, and a query we gave up on keeps its
	     * port for libunbound's own retries (~30 s): a burst of clients from a dead
	     * reverse zone would starve every other lookup. Give it room, and give up
	     * sooner on a server that does not answer.
	     */
	    (r = ub_ctx_set_option(dns->ctx, "outgoing-range:", "512")) != 0 ||
	    (r = ub_ctx_set_option(dns->ctx, "num-queries-per-thread:", "1024")) != 0) {
		snprintf(err, errlen, "dns: libunbound option: %s", ub_strerror(r));
		return -1;
	}
	for (size_t i = 0; i < ARRAY_LEN(dns_default_zones); i++) {
		snprintf(zone, sizeof(zone), "%s transparent", dns_default_zones[i]);
		if ((r = ub_ctx_set_option(dns->ctx, "local-zone:", zone)) != 0) {
			snprintf(err, errlen, "dns: libunbound local-zone %s: %s",
			    dns_default_zones[i], ub_strerror(r));
			return -1;
		}
	}
	for (int i = 16; i <= 31; i++) {
		snprintf(zone, sizeof(zone), "%d.172.in-addr.arpa. transparent", i);
		if ((r = ub_ctx_set_option(dns->ctx, "local-zone:", zone)) != 0)
			goto zone_err;
	}
	for (int i = 64; i <= 127; i++) {	/* 100.64/10, RFC 6598 */
		snprintf(zone, sizeof(zone), "%d.100.in-addr.arpa. transparent", i);
		if ((r = ub_ctx_set_option(dns->ctx, "local-zone:", zone)) != 0)
			goto zone_err;
	}
	if (conf->n_resolvers == 0) {
		r = ub_ctx_resolvconf(dns->ctx, NULL);
		/* resolv.conf(5): without the file (or a nameserver line), the local host */
		if (r == UB_READFILE && errno == ENOENT)
			r = ub_ctx_set_fwd(dns->ctx, "127.0.0.1");
		if (r != 0) {
			snprintf(err, errlen, "dns: /etc/resolv.conf: %s", r == UB_READFILE ?
			    strerror(errno) : ub_strerror(r));
			return -1;
		}
	}
	for (size_t i = 0; i < conf->n_resolvers; i++) {
		if (dns_fwd_text(conf->resolvers[i], fwd, sizeof(fwd)) == -1 ||
		    ub_ctx_set_fwd(dns->ctx, fwd) != 0) {
			snprintf(err, errlen, "dns: resolver \"%s\" is not addr[:port] or "
			    "[v6addr]:port", conf->resolvers[i]);
			return -1;
		}
	}
	return 0;
zone_err:
	snprintf(err, errlen, "dns: libunbound local-zone %s: %s", zone, ub_strerror(r));
	return -1;
}

static void
dns_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;

	(void)fd;
	(void)what;
	/* answers only mark queries ready (see the top): nothing in here frees dns */
	if (ub_process(dns->ctx) == UB_PIPE) {
		/*
		 * The resolver thread is gone (its end of the pipe closed): stop
		 * watching an fd that would stay readable forever. What is pending,
		 * and whatever is asked later, fails at its deadline.
		 */
		event_del(dns->ev_read);
	}
}

struct dns *
dns_new(struct event_base *base, const struct dns_conf *conf, char *err, size_t errlen)
{
	const struct timeval *ct;
	struct dns *dns;

	if ((dns = calloc(1, sizeof(*dns))) == NULL) {
		snprintf(err, errlen, "dns: out of memory");
		return NULL;
	}
	dns->base = base;
	TAILQ_INIT(&dns->queries);
	dns->timeout.tv_sec = conf->timeout > 0 ? conf->timeout : 5;
	/* every query has the same deadline: a common timeout is a queue, not a heap */
	if ((ct = event_base_init_common_timeout(base, &dns->timeout)) != NULL)
		dns->timeout = *ct;
	dns->reverse_lookups = conf->reverse_lookups;
	if ((dns->ctx = ub_ctx_create()) == NULL) {
		snprintf(err, errlen, "dns: cannot create a libunbound context: %s",
		    strerror(errno));
		goto fail;
	}
	if (dns_ctx_setup(dns, conf, err, errlen) == -1 ||
	    dns_hosts_load(dns, conf->hosts_file, err, errlen) == -1)
		goto fail;
	if ((dns->ev_read = event_new(base, ub_fd(dns->ctx), EV_READ | EV_PERSIST,
	    dns_on_readable, dns)) == NULL || event_add(dns->ev_read, NULL) == -1) {
		snprintf(err, errlen, "dns: cannot watch the resolver's pipe");
		goto fail;
	}
	return dns;
fail:
	if (dns->ev_read)
		event_free(dns->ev_read);
	if (dns->ctx)
		ub_ctx_delete(dns->ctx);
	dns_hosts_free(dns);
	free(dns);
	return NULL;
}

/*
 * Queries
 */

/* stop what is in flight; libunbound drops a cancelled answer without a callback */
static void
dns_q_stop(struct dns_query *q)
{
	for (size_t i = 0; i < ARRAY_LEN(q->sub); i++) {
		if (q->sub[i].inflight) {
			(void)ub_cancel(q->dns->ctx, q->sub[i].id);
			q->sub[i].inflight = false;
		}
	}
}

static void
dns_q_free(struct dns_query *q)
{
	event_free(q->ev);
	for (size_t i = 0; i < ARRAY_LEN(q->sub); i++)
		free(q->sub[i].addrs);
	free(q->mx);
	free(q);
}

static struct dns_query *
dns_q_new(struct dns *dns, enum dns_kind kind, void *arg)
{
	struct dns_query *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->ev = evtimer_new(dns->base, dns_on_timer, q)) == NULL ||
	    evtimer_add(q->ev, &dns->timeout) == -1) {
		if (q->ev)
			event_free(q->ev);
		free(q);
		return NULL;
	}
	q->dns = dns;
	q->kind = kind;
	q->arg = arg;
	for (size_t i = 0; i < ARRAY_LEN(q->sub); i++)
		q->sub[i].q = q;
	TAILQ_INSERT_TAIL(&dns->queries, q, link);
	return q;
}

/* the answer is complete: deliver it from the loop, on the next turn */
static void
dns_q_ready(struct dns_query *q)
{
	static const struct timeval now = { 0, 0 };

	dns_q_stop(q);
	q->ready = true;
	/* re-arming a pending timer replaces its timeout: cannot fail once added */
	(void)evtimer_add(q->ev, &now);
}

static int
dns_sub_start(struct dns_sub *s, const char *name, int rrtype)
{
	struct dns *dns = s->q->dns;

	s->rrtype = rrtype;
	s->done = false;
	if (ub_resolve_async(dns->ctx, name, rrtype, DNS_CLASS_IN, s, dns_on_answer,
	    &s->id) != 0)
		return -1;
	s->inflight = true;
	return 0;
}

/* the outcome of a finished libunbound query */
static int
dns_result_status(int err, const struct ub_result *res)
{
	if (err != 0 || res == NULL || res->bogus)
		return DNS_TEMPFAIL;
	if (res->rcode == DNS_RCODE_NXDOMAIN)
		return DNS_NXDOMAIN;
	if (res->rcode != DNS_RCODE_NOERROR)
		return DNS_TEMPFAIL;	/* SERVFAIL, REFUSED, ... */
	return res->havedata ? DNS_OK : DNS_NODATA;
}

/*
 * Client lookups
 */

static void
dns_client_answer(struct dns_query *q, struct dns_sub *s, int err, struct ub_result *res)
{
	size_t alen = dns_addr_len(q->family);

	if (s->rrtype == DNS_RR_PTR) {
		/* the first name only: which one a client "is" must not be its choice */
		if (dns_result_status(err, res) == DNS_OK && res->data[0] != NULL &&
		    res->len[0] > 0 &&
		    dns_wire_host((const uint8_t *)res->data[0], (size_t)res->len[0], false,
		    q->name))
			dns_client_forward(q);
		else
			dns_q_ready(q);
		return;
	}
	if (dns_result_status(err, res) == DNS_OK) {
		for (size_t i = 0; res->data[i] != NULL; i++)
			if ((size_t)res->len[i] == alen && memcmp(res->data[i], q->addr, alen) == 0)
				q->verified = true;
	}
	dns_q_ready(q);
}

/* q->name is known: does it lead back to the address? */
static void
dns_client_forward(struct dns_query *q)
{
	const struct dns_host *h;
	size_t n;

	if ((h = dns_hosts_name(q->dns, q->name, &n)) != NULL) {
		for (size_t i = 0; i < n; i++)
			if (h[i].family == q->family && memcmp(h[i].addr, q->addr, 16) == 0)
				q->verified = true;
		dns_q_ready(q);
		return;
	}
	if (dns_sub_start(&q->sub[1], q->name,
	    q->family == AF_INET ? DNS_RR_A : DNS_RR_AAAA) == -1)
		dns_q_ready(q);		/* the name, unverified */
}

struct dns_query *
dns_lookup_client(struct dns *dns, const struct sockaddr *sa, dns_client_cb cb, void *arg)
{
	char rname[DNS_REVERSE_MAX];
	const struct dns_host *h;
	struct dns_query *q;

	if ((q = dns_q_new(dns, DNS_KIND_CLIENT, arg)) == NULL)
		return NULL;
	q->client_cb = cb;
	if (!dns->reverse_lookups || dns_sa_addr(sa, &q->family, q->addr) == -1) {
		dns_q_ready(q);
		return q;
	}
	if ((h = dns_hosts_addr(dns, q->family, q->addr)) != NULL) {
		util_strlcpy(q->name, h->name, sizeof(q->name));
		dns_client_forward(q);
		return q;
	}
	dns_reverse_name(q->family, q->addr, rname, sizeof(rname));
	if (dns_sub_start(&q->sub[0], rname, DNS_RR_PTR) == -1)
		dns_q_ready(q);
	return q;
}

/*
 * MX lookups
 */

static void
dns_mx_answer(struct dns_query *q, int err, struct ub_result *res)
{
	size_t n = 0, roots = 0, total = 0;

	if ((q->status = dns_result_status(err, res)) != DNS_OK) {
		dns_q_ready(q);
		return;
	}
	while (res->data[total] != NULL)
		total++;
	if ((q->mx = calloc(total, sizeof(*q->mx))) == NULL) {
		q->status = DNS_TEMPFAIL;
		dns_q_ready(q);
		return;
	}
	for (size_t i = 0; i < total; i++) {
		const uint8_t *p = (const uint8_t *)res->data[i];
		size_t len = (size_t)res->len[i], j;
		struct dns_mx mx;

		if (len < 3)
			continue;	/* RFC 1035 3.3.9: 16-bit preference, then a name */
		mx.preference = (uint16_t)(p[0] << 8 | p[1]);
		if (dns_is_root(p + 2, len - 2)) {
			roots++;
			continue;
		}
		if (!dns_wire_host(p + 2, len - 2, false, mx.host))
			continue;
		/* insertion keeps answer order among equal preferences */
		for (j = n; j > 0 && q->mx[j - 1].preference > mx.preference; j--)
			q->mx[j] = q->mx[j - 1];
		q->mx[j] = mx;
		n++;
	}
	q->n_mx = n;
	/* RFC 7505: "0 ." alone says no mail; "." among others is only skipped */
	if (n == 0)
		q->status = roots > 0 ? DNS_NULLMX : DNS_TEMPFAIL;
	dns_q_ready(q);
}

/* a name given to look up: lenient syntax; anything else cannot exist */
static bool
dns_lookup_name(const char *in, char *out)
{
	return in != NULL && dns_name_norm(in, strlen(in), true, out);
}

struct dns_query *
dns_lookup_mx(struct dns *dns, const char *domain, dns_mx_cb cb, void *arg)
{
	char name[DNS_NAME_MAX + 1];
	struct dns_query *q;

	if ((q = dns_q_new(dns, DNS_KIND_MX, arg)) == NULL)
		return NULL;
	q->mx_cb = cb;
	if (!dns_lookup_name(domain, name)) {
		q->status = DNS_NXDOMAIN;
		dns_q_ready(q);
	} else if (dns_sub_start(&q->sub[0], name, DNS_RR_MX) == -1) {
		q->status = DNS_TEMPFAIL;
		dns_q_ready(q);
	}
	return q;
}

/*
 * Address lookups
 */

static void
dns_addr_answer(struct dns_query *q, struct dns_sub *s, int err, struct ub_result *res)
{
	int family = s->rrtype == DNS_RR_A ? AF_INET : AF_INET6;
	size_t alen = dns_addr_len(family), total = 0;

	s->done = true;
	if ((s->status = dns_result_status(err, res)) == DNS_OK) {
		while (res->data[total] != NULL)
			total++;
		if ((s->addrs = calloc(total, sizeof(*s->addrs))) == NULL)
			s->status = DNS_TEMPFAIL;
		for (size_t i = 0; s->addrs != NULL && i < total; i++)
			if ((size_t)res->len[i] == alen)
				dns_addr_sa(family, (const uint8_t *)res->data[i],
				    &s->addrs[s->n_addrs++]);
		if (s->status == DNS_OK && s->n_addrs == 0)
			s->status = DNS_NODATA;
	}
	if (q->sub[0].done && q->sub[1].done)
		dns_q_ready(q);
}

/* the name is in the hosts file: the answer is the file's alone */
static void
dns_addr_hosts(struct dns_query *q, const struct dns_host *h, size_t n)
{
	for (size_t i = 0; i < ARRAY_LEN(q->sub); i++) {
		struct dns_sub *s = &q->sub[i];
		int family = i == 0 ? AF_INET : AF_INET6;

		s->done = true;
		if ((s->addrs = calloc(n, sizeof(*s->addrs))) == NULL) {
			s->status = DNS_TEMPFAIL;
			continue;
		}
		for (size_t j = 0; j < n; j++)
			if (h[j].family == family)
				dns_addr_sa(family, h[j].addr, &s->addrs[s->n_addrs++]);
		s->status = s->n_addrs > 0 ? DNS_OK : DNS_NODATA;
	}
}

struct dns_query *
dns_lookup_addr(struct dns *dns, const char *host, dns_addr_cb cb, void *arg)
{
	char name[DNS_NAME_MAX + 1];
	const struct dns_host *h;
	struct dns_query *q;
	uint8_t a[16];
	int family;
	size_t n;

	if ((q = dns_q_new(dns, DNS_KIND_ADDR, arg)) == NULL)
		return NULL;
	q->addr_cb = cb;
	q->sub[0].rrtype = DNS_RR_A;
	q->sub[1].rrtype = DNS_RR_AAAA;
	if (host != NULL && dns_literal(host, &family, a)) {
		/* a literal is its own answer */
		struct dns_sub *s = &q->sub[family == AF_INET ? 0 : 1];

		q->sub[0].status = q->sub[1].status = DNS_NODATA;
		if ((s->addrs = calloc(1, sizeof(*s->addrs))) != NULL) {
			dns_addr_sa(family, a, &s->addrs[0]);
			s->n_addrs = 1;
		}
		s->status = s->n_addrs > 0 ? DNS_OK : DNS_TEMPFAIL;
		q->sub[0].done = q->sub[1].done = true;
	} else if (!dns_lookup_name(host, name)) {
		q->sub[0].status = q->sub[1].status = DNS_NXDOMAIN;
		q->sub[0].done = q->sub[1].done = true;
	} else if ((h = dns_hosts_name(dns, name, &n)) != NULL)
		dns_addr_hosts(q, h, n);
	else if (dns_sub_start(&q->sub[0], name, DNS_RR_A) == 0 &&
	    dns_sub_start(&q->sub[1], name, DNS_RR_AAAA) == 0)
		return q;
	/* answered already, or a failure to ask: a sub not done is a temporary failure */
	dns_q_ready(q);
	return q;
}

/* both answers in (or the deadline passed): one status, A first then AAAA */
static void
dns_addr_deliver(struct dns_query *q)
{
	struct dns_sub *a = &q->sub[0], *b = &q->sub[1];
	struct sockaddr_storage *all = NULL;
	size_t n = a->n_addrs + b->n_addrs;
	int status;

	if (n > 0) {
		/* whatever did answer, even when the other family timed out */
		if ((all = calloc(n, sizeof(*all))) != NULL) {
			if (a->n_addrs > 0)
				memcpy(all, a->addrs, a->n_addrs * sizeof(*all));
			if (b->n_addrs > 0)
				memcpy(all + a->n_addrs, b->addrs, b->n_addrs * sizeof(*all));
		}
		status = all != NULL ? DNS_OK : DNS_TEMPFAIL;
	} else if (!a->done || !b->done || a->status == DNS_TEMPFAIL ||
	    b->status == DNS_TEMPFAIL)
		status = DNS_TEMPFAIL;
	else if (a->status == DNS_NXDOMAIN && b->status == DNS_NXDOMAIN)
		status = DNS_NXDOMAIN;
	else
		status = DNS_NODATA;
	q->addr_cb(q->arg, status, all, all != NULL ? n : 0);
	free(all);
}

/*
 * Delivery, cancel, free
 */

static void
dns_on_answer(void *arg, int err, struct ub_result *res)
{
	struct dns_sub *s = arg;
	struct dns_query *q = s->q;

	s->inflight = false;
	s->done = true;
	switch (q->kind) {
	case DNS_KIND_CLIENT:
		dns_client_answer(q, s, err, res);
		break;
	case DNS_KIND_MX:
		dns_mx_answer(q, err, res);
		break;
	case DNS_KIND_ADDR:
		dns_addr_answer(q, s, err, res);
		break;
	}
	ub_resolve_free(res);
}

static void
dns_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	(void)fd;
	(void)what;
	TAILQ_REMOVE(&q->dns->queries, q, link);
	dns_q_stop(q);
	switch (q->kind) {
	case DNS_KIND_CLIENT:
		/* at the deadline the client is unknown, even with a PTR name in hand */
		if (!q->ready)
			q->name[0] = '\0';
		q->client_cb(q->arg, q->name[0] != '\0' ? q->name : NULL,
		    q->name[0] != '\0' && q->verified);
		break;
	case DNS_KIND_MX:
		if (!q->ready) {
			q->status = DNS_TEMPFAIL;
			q->n_mx = 0;
		}
		q->mx_cb(q->arg, q->status, q->n_mx > 0 ? q->mx : NULL, q->n_mx);
		break;
	case DNS_KIND_ADDR:
		dns_addr_deliver(q);
		break;
	}
	/* q is off the list: a callback that freed dns left it to us */
	dns_q_free(q);
}

void
dns_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	TAILQ_REMOVE(&q->dns->queries, q, link);
	dns_q_stop(q);
	dns_q_free(q);
}

void
dns_free(struct dns *dns)
{
	struct dns_query *q;

	if (dns == NULL)
		return;
	while ((q = TAILQ_FIRST(&dns->queries)) != NULL)
		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses the list's links (a known false positive on sys/queue.h) */
		dns_cancel(q);
	event_free(dns->ev_read);
	/* stops the resolver thread and frees what it still had in flight */
	ub_ctx_delete(dns->ctx);
	dns_hosts_free(dns);
	free(dns);
}
