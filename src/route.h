/*
 * route.h: which route a recipient's domain takes (spec/config.md, "routes").
 * The routes are tried top to bottom and the first match wins: an exact domain
 * (case-insensitive), a ".suffix" (its subdomains only, not the domain itself),
 * or ALL. A route's targets are then tried in order by the scheduler.
 */
#ifndef MAILGATE_ROUTE_H
#define MAILGATE_ROUTE_H

#include "config.h"

/* the route for domain (without a trailing dot or with one), NULL if none matches */
const struct route *route_for(const struct config *, const char *domain);

/* the domain of an address: what follows its last '@', "" when it has none */
const char *route_domain(const char *address);

#endif
