/*
 * hat.c: the Host Access Table (see hat.h). hat_host_parse() turns one host
 * form of the config into a [lo, hi] range of 128-bit addresses or a name;
 * hat_match() walks a listener's rules top to bottom, first match wins.
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

const struct hat_rule *
hat_match(const struct listener_conf *l, const struct sockaddr *sa, const char *revname,
    const struct hat_host **matched)
{
	struct hat_addr a;
	size_t revlen = 0;

	hat_addr_from_sockaddr(sa, &a);
	if (revname != NULL) {
		revlen = strlen(revname);
		if (revlen > 0 && revname[revlen - 1] == '.')
			revlen--;
	}
	for (size_t i = 0; i < l->n_hat; i++) {
		const struct hat_rule *r = &l->hat[i];

		if (r->policy != NULL && r->policy->action == ACTION_CONTINUE)
			continue;
		for (size_t j = 0; j < r->n_hosts; j++) {
			if (host_matches(&r->hosts[j], &a, revname, revlen)) {
				if (matched != NULL)
					*matched = &r->hosts[j];
				return r;
			}
		}
	}
	if (matched != NULL)
		*matched = NULL;
	return NULL;
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
