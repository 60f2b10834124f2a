/*
 * test_route.c: route selection against spec/config.md: first match wins, an
 * exact domain in any case, a ".suffix" for subdomains only (never the domain
 * itself), ALL for the rest, a trailing dot ignored, no match without ALL; and
 * the domain of an address (after its last '@').
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "route.h"

#define LISTENER "listeners = ( { name = \"l\"; listen = \"127.0.0.1:2525\"; } );\n"

static struct config *
load(const char *routes)
{
	char text[4096], err[1024];
	struct config *c;

	snprintf(text, sizeof(text), "%s%s", LISTENER, routes);
	if ((c = config_load_string(text, "test", err, sizeof(err))) == NULL)
		fail_msg("config: %s", err);
	return c;
}

/* the first target's text of the route domain takes, or "(none)" */
static const char *
target(const struct config *c, const char *domain)
{
	const struct route *r = route_for(c, domain);

	return r == NULL ? "(none)" : r->to[0].text;
}

static void
test_first_match_wins(void **state)
{
	struct config *c = load("routes = (\n"
	    "  { domain = \"sub.example.com\"; to = [ \"10.0.0.1:25\" ]; },\n"
	    "  { domain = \".example.com\"; to = [ \"10.0.0.2\" ]; },\n"
	    "  { domain = \"example.com\"; to = [ \"10.0.0.3:2525\", \"10.0.0.4\" ]; },\n"
	    "  { domain = \"discard.example\"; to = [ \"/dev/null\" ]; },\n"
	    "  { domain = \"local.example\"; to = [ \"maildir:/var/mail\" ]; },\n"
	    "  { domain = \"ALL\"; to = [ \"USEDNS\" ]; },\n"
	    "  { domain = \"never.example\"; to = [ \"10.9.9.9\" ]; }\n"
	    ");\n");

	(void)state;
	/* the exact entry comes before the suffix that also matches it */
	assert_string_equal(target(c, "sub.example.com"), "10.0.0.1:25");
	assert_string_equal(target(c, "a.sub.example.com"), "10.0.0.2");
	assert_string_equal(target(c, "mx.example.com"), "10.0.0.2");
	/* ".example.com" is for subdomains: example.com itself takes its own entry */
	assert_string_equal(target(c, "example.com"), "10.0.0.3:2525");
	assert_int_equal(route_for(c, "example.com")->n_to, 2);
	assert_int_equal(route_for(c, "example.com")->to[1].kind, TARGET_HOST);
	assert_int_equal(route_for(c, "discard.example")->to[0].kind, TARGET_DEVNULL);
	assert_int_equal(route_for(c, "local.example")->to[0].kind, TARGET_MAILDIR);
	assert_string_equal(route_for(c, "local.example")->to[0].path, "/var/mail");
	/* everything else, including what a later entry names, goes to ALL */
	assert_string_equal(target(c, "other.org"), "USEDNS");
	assert_string_equal(target(c, "never.example"), "USEDNS");
	assert_string_equal(target(c, "notexample.com"), "USEDNS");
	assert_string_equal(target(c, "xexample.com"), "USEDNS");
	assert_string_equal(target(c, ""), "USEDNS");
	config_unref(c);
}

static void
test_case_and_trailing_dot(void **state)
{
	struct config *c = load("routes = (\n"
	    "  { domain = \"Example.COM\"; to = [ \"10.0.0.3\" ]; },\n"
	    "  { domain = \".Corp.Example\"; to = [ \"10.0.0.4\" ]; }\n"
	    ");\n");

	(void)state;
	assert_string_equal(target(c, "example.com"), "10.0.0.3");
	assert_string_equal(target(c, "EXAMPLE.com"), "10.0.0.3");
	assert_string_equal(target(c, "example.com."), "10.0.0.3");
	assert_string_equal(target(c, "MX.CORP.example"), "10.0.0.4");
	assert_string_equal(target(c, "mx.corp.example."), "10.0.0.4");
	/* no ALL: nothing matches these */
	assert_string_equal(target(c, "corp.example"), "(none)");
	assert_string_equal(target(c, "example.org"), "(none)");
	assert_string_equal(target(c, "example.com.."), "(none)");
	assert_string_equal(target(c, "[192.0.2.1]"), "(none)");
	config_unref(c);
}

static void
test_no_routes_means_usedns(void **state)
{
	struct config *c = load("");

	(void)state;
	assert_int_equal(route_for(c, "anything.example")->to[0].kind, TARGET_USEDNS);
	config_unref(c);
}

static void
test_route_domain(void **state)
{
	(void)state;
	assert_string_equal(route_domain("user@example.com"), "example.com");
	assert_string_equal(route_domain("\"a@b\"@example.com"), "example.com");
	assert_string_equal(route_domain("postmaster"), "");
	assert_string_equal(route_domain("user@"), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_match_wins),
		cmocka_unit_test(test_case_and_trailing_dot),
		cmocka_unit_test(test_no_routes_means_usedns),
		cmocka_unit_test(test_route_domain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
