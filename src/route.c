/*
 * route.c: route selection (see route.h). Pure functions over an immutable
 * config, so the scheduler may call them for every recipient on the loop; a
 * route table is short (first match wins, as in the reference's smtproutes),
 * so a linear walk is the index.
 */
#include "route.h"

#include <string.h>
#include <strings.h>

/* a.b.example.com is under example.com; example.com itself is not */
static bool
route_is_subdomain(const char *d, size_t dlen, const char *parent, size_t plen)
{
	return dlen > plen + 1 && d[dlen - plen - 1] == '.' &&
	    strncasecmp(d + dlen - plen, parent, plen) == 0;
}

static bool
route_matches(const char *pattern, const char *d, size_t dlen)
{
	size_t plen;

	if (strcasecmp(pattern, "ALL") == 0)
		return true;
	if (pattern[0] == '.') {
		pattern++;
		plen = strlen(pattern);
		if (plen > 0 && pattern[plen - 1] == '.')
			plen--;
		return plen > 0 && route_is_subdomain(d, dlen, pattern, plen);
	}
	plen = strlen(pattern);
	if (plen > 0 && pattern[plen - 1] == '.')
		plen--;
	return plen == dlen && strncasecmp(pattern, d, dlen) == 0;
}

const struct route *
route_for(const struct config *cfg, const char *domain)
{
	size_t dlen = strlen(domain);

	/* "example.com." is the same name as "example.com" */
	if (dlen > 0 && domain[dlen - 1] == '.')
		dlen--;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct route *r = &cfg->routes[i];

		if (r->n_to > 0 && route_matches(r->domain, domain, dlen))
			return r;
	}
	return NULL;
}

const char *
route_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	return at == NULL ? "" : at + 1;
}
