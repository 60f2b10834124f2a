/*
 * test_config.c: config.c against spec/config.md: the embedded default, the
 * spec's full example value by value, defaults, policy inheritance, the size
 * and duration parsers, every class of error with its file:line, and the
 * print -> load round trip. Files are written under /tmp with mkstemp.
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
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "hat.h"

/* spec/config.md's example, with the tls files it names */
static const char spec_example[] =
"hostname = \"mx.example.com\";\n"
"spool    = \"/var/spool/mailgate\";\n"
"control  = \"/run/mailgate/control.sock\";\n"
"log      = { file = \"-\"; format = \"esa\"; };\n"
"\n"
"limits = {\n"
"  max_connections     = 50;\n"
"  max_tls_sessions    = 100;\n"
"  max_header_lines    = 1000;\n"
"  max_connection_time = \"15m\";\n"
"  injection_timeout   = \"5m\";\n"
"  command_timeout     = \"5m\";\n"
"  bad_command_limit   = 4;\n"
"  auth_failure_limit  = 3;\n"
"  max_hops            = 50;\n"
"  queue_max_messages  = 1000000;\n"
"  queue_max_bytes     = \"20G\";\n"
"  min_free_disk       = \"1G\";\n"
"};\n"
"\n"
"dns = {\n"
"  resolvers = [ ];\n"
"  hosts_file = \"/etc/hosts\";\n"
"  reverse_lookups = true;\n"
"  timeout = \"5s\";\n"
"};\n"
"\n"
"tls  = { certificate = \"/etc/mailgate/cert.pem\"; key = \"/etc/mailgate/key.pem\"; };\n"
"auth = { users = \"/etc/mailgate/users\"; };\n"
"\n"
"policies = {\n"
"  ACCEPTED = {\n"
"    action = \"accept\";\n"
"    max_message_size = \"10M\";\n"
"    max_connections_per_host = 10;\n"
"    max_messages_per_connection = 10;\n"
"    max_recipients_per_message = 50;\n"
"    max_recipients_per_hour = 0;\n"
"    banner_code = 220;  banner_text = \"ESMTP\";\n"
"    reject_code = 554;  reject_text = \"Access denied\";\n"
"    tls = \"off\";\n"
"    tls_required_senders = [ ];\n"
"    auth = \"off\";\n"
"    auth_requires_tls = true;\n"
"    bare_crlf = \"reject\";\n"
"  };\n"
"  RELAYED = { action = \"relay\"; };\n"
"  BLOCKED = { action = \"reject\"; };\n"
"};\n"
"\n"
"listeners = (\n"
"  { name = \"IncomingMail\";\n"
"    listen = [ \"0.0.0.0:25\", \"[::]:25\" ];\n"
"    type = \"public\";\n"
"    max_connections = 50;\n"
"    ipmm = false;\n"
"    tls_wrapper = false;\n"
"    hat = ( { group = \"RELAYLIST\"; hosts = [ \"10.0.0.0/8\", \".corp.example\" ]; policy = \"RELAYED\"; },\n"
"            { group = \"ALL\";       hosts = [ \"ALL\" ];                         policy = \"ACCEPTED\"; } );\n"
"    rat = ( { recipient = \"example.com\";  action = \"accept\"; },\n"
"            { recipient = \".example.com\"; action = \"accept\"; },\n"
"            { recipient = \"ALL\";          action = \"reject\"; } );\n"
"  }\n"
");\n"
"\n"
"routes = (\n"
"  { domain = \"example.com\"; to = [ \"10.1.1.5:25\", \"10.1.1.6:25\" ]; },\n"
"  { domain = \"discard.example\"; to = [ \"/dev/null\" ]; },\n"
"  { domain = \"ALL\"; to = [ \"USEDNS\" ]; }\n"
");\n"
"\n"
"delivery = {\n"
"  max_connections = 100;\n"
"  max_connections_per_destination = 20;\n"
"  retry_initial = \"1m\";  retry_max = \"1h\";\n"
"  max_lifetime = \"72h\";\n"
"};\n";

/* the smallest valid config: one listener */
#define MINIMAL "listeners = ( { name = \"l\"; listen = \"127.0.0.1:2525\"; } );\n"

/* a file under /tmp holding text; returns its malloc'd path */
static char *
write_tmp(const char *text)
{
	char *path = strdup("/tmp/mailgate-test-config-XXXXXX");
	FILE *fp;
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	return path;
}

static struct config *
load_tmp(const char *text)
{
	char err[2048], *path = write_tmp(text);
	struct config *cfg = config_load(path, err, sizeof(err));

	if (cfg == NULL)
		print_error("unexpected error: %s\n", err);
	assert_non_null(cfg);
	unlink(path);
	free(path);
	return cfg;
}

/* loading text fails, and the error holds "<file>:<line>: " and want */
static void
expect_error(const char *text, int line, const char *want)
{
	char err[2048], prefix[128], *path = write_tmp(text);
	struct config *cfg = config_load(path, err, sizeof(err));

	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	if (cfg != NULL || strstr(err, prefix) == NULL || strstr(err, want) == NULL)
		print_error("wanted \"%s\" and \"%s\", got \"%s\"\n", prefix, want, err);
	assert_null(cfg);
	assert_non_null(strstr(err, prefix));
	assert_non_null(strstr(err, want));
	unlink(path);
	free(path);
}

static char *
print_to_string(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	assert_non_null(fp);
	config_print(cfg, fp);
	assert_int_equal(fclose(fp), 0);
	return buf;
}

static const char *
port_addr(const struct listen_addr *la, char *buf, size_t cap, int *port)
{
	if (la->ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)&la->ss;

		*port = ntohs(sin->sin_port);
		return inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)cap);
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)&la->ss;

		*port = ntohs(sin6->sin6_port);
		return inet_ntop(AF_INET6, &sin6->sin6_addr, buf, (socklen_t)cap);
	}
}

static void
check_builtin_policy(const struct policy *p)
{
	assert_int_equal(p->max_message_size, 10 * 1024 * 1024);
	assert_int_equal(p->max_connections_per_host, 10);
	assert_int_equal(p->max_messages_per_connection, 10);
	assert_int_equal(p->max_recipients_per_message, 50);
	assert_int_equal(p->max_recipients_per_hour, 0);
	assert_int_equal(p->banner_code, 220);
	assert_string_equal(p->banner_text, "ESMTP");
	assert_int_equal(p->reject_code, 554);
	assert_string_equal(p->reject_text, "Access denied");
	assert_int_equal(p->tls, MODE_OFF);
	assert_int_equal(p->n_tls_required_senders, 0);
	assert_int_equal(p->auth, MODE_OFF);
	assert_true(p->auth_requires_tls);
	assert_int_equal(p->bare_crlf, BARE_CRLF_REJECT);
	assert_int_equal(p->greet_delay, 0);
}

static void
check_builtin_globals(const struct config *c)
{
	assert_int_equal(c->limits.max_connections, 50);
	assert_int_equal(c->limits.max_tls_sessions, 100);
	assert_int_equal(c->limits.max_header_lines, 1000);
	assert_int_equal(c->limits.max_connection_time, 15 * 60);
	assert_int_equal(c->limits.injection_timeout, 5 * 60);
	assert_int_equal(c->limits.command_timeout, 5 * 60);
	assert_int_equal(c->limits.bad_command_limit, 4);
	assert_int_equal(c->limits.auth_failure_limit, 3);
	assert_int_equal(c->limits.max_hops, 50);
	assert_int_equal(c->limits.queue_max_messages, 1000000);
	assert_true(c->limits.queue_max_bytes == 20ull << 30);
	assert_true(c->limits.min_free_disk == 1ull << 30);
	assert_int_equal(c->dns.n_resolvers, 0);
	assert_string_equal(c->dns.hosts_file, "/etc/hosts");
	assert_true(c->dns.reverse_lookups);
	assert_int_equal(c->dns.timeout, 5);
	assert_string_equal(c->auth.users, "/etc/mailgate/users");
	assert_int_equal(c->delivery.max_connections, 100);
	assert_int_equal(c->delivery.max_connections_per_destination, 20);
	assert_int_equal(c->delivery.retry_initial, 60);
	assert_int_equal(c->delivery.retry_max, 3600);
	assert_int_equal(c->delivery.max_lifetime, 72 * 3600);
	assert_int_equal(c->policy_defaults.action, ACTION_ACCEPT);
	check_builtin_policy(&c->policy_defaults);
}

static void
test_embedded_default(void **state)
{
	char err[1024], host[256], buf[64];
	struct config *c = config_load(NULL, err, sizeof(err));
	const struct listener_conf *l;
	int port;

	(void)state;
	assert_non_null(c);
	assert_int_equal(c->refs, 1);
	assert_string_equal(c->file, "(embedded default)");
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_string_equal(c->hostname, host);
	assert_string_equal(c->spool, "./mailgate-spool");
	assert_string_equal(c->control, "./mailgate-spool/control.sock");
	assert_string_equal(c->log.file, "-");
	assert_int_equal(c->log.format, LOG_FORMAT_ESA);
	assert_null(c->tls.certificate);
	assert_null(c->tls.key);
	check_builtin_globals(c);

	assert_int_equal(c->n_policies, 2);
	assert_int_equal(config_policy(c, "RELAYED")->action, ACTION_RELAY);
	assert_int_equal(config_policy(c, "BLOCKED")->action, ACTION_REJECT);
	check_builtin_policy(config_policy(c, "BLOCKED"));

	assert_int_equal(c->n_listeners, 1);
	l = config_listener(c, "default");
	assert_non_null(l);
	assert_false(l->public);
	assert_true(l->ipmm);
	assert_false(l->tls_wrapper);
	assert_int_equal(l->max_connections, 50);
	assert_int_equal(l->n_addrs, 1);
	assert_string_equal(l->addrs[0].text, "127.0.0.1:2525");
	assert_string_equal(port_addr(&l->addrs[0], buf, sizeof(buf), &port), "127.0.0.1");
	assert_int_equal(port, 2525);
	assert_int_equal(l->addrs[0].len, sizeof(struct sockaddr_in));
	assert_int_equal(l->n_hat, 2);
	assert_string_equal(l->hat[0].group, "RELAYLIST");
	assert_int_equal(l->hat[0].n_hosts, 2);
	assert_string_equal(l->hat[0].hosts[0].text, "127.0.0.0/8");
	assert_string_equal(l->hat[0].hosts[1].text, "::1");
	assert_ptr_equal(l->hat[0].policy, config_policy(c, "RELAYED"));
	assert_string_equal(l->hat[1].group, "ALL");
	assert_int_equal(l->hat[1].hosts[0].kind, HAT_ALL);
	assert_ptr_equal(l->hat[1].policy, config_policy(c, "BLOCKED"));
	assert_int_equal(l->n_rat, 0);

	assert_int_equal(c->n_routes, 1);
	assert_string_equal(c->routes[0].domain, "ALL");
	assert_int_equal(c->routes[0].n_to, 1);
	assert_int_equal(c->routes[0].to[0].kind, TARGET_MAILDIR);
	assert_string_equal(c->routes[0].to[0].path, "./mailgate-spool/mailboxes");
	config_unref(c);
}

static void
test_spec_example(void **state)
{
	struct config *c = load_tmp(spec_example);
	const struct listener_conf *l;
	const struct policy *acc;
	char buf[64];
	int port;

	(void)state;
	assert_string_equal(c->hostname, "mx.example.com");
	assert_string_equal(c->spool, "/var/spool/mailgate");
	assert_string_equal(c->control, "/run/mailgate/control.sock");
	assert_string_equal(c->log.file, "-");
	assert_int_equal(c->log.format, LOG_FORMAT_ESA);
	assert_string_equal(c->tls.certificate, "/etc/mailgate/cert.pem");
	assert_string_equal(c->tls.key, "/etc/mailgate/key.pem");
	check_builtin_globals(c);

	assert_int_equal(c->n_policies, 3);
	assert_string_equal(c->policies[0].name, "ACCEPTED");
	assert_string_equal(c->policies[1].name, "RELAYED");
	assert_string_equal(c->policies[2].name, "BLOCKED");
	acc = config_policy(c, "ACCEPTED");
	assert_int_equal(acc->action, ACTION_ACCEPT);
	check_builtin_policy(acc);
	assert_int_equal(acc->line, 32);
	assert_int_equal(config_policy(c, "RELAYED")->action, ACTION_RELAY);
	check_builtin_policy(config_policy(c, "RELAYED"));
	assert_int_equal(config_policy(c, "BLOCKED")->action, ACTION_REJECT);
	assert_null(config_policy(c, "NOPE"));
	assert_ptr_equal(config_policy(c, "policy_defaults"), &c->policy_defaults);

	assert_int_equal(c->n_listeners, 1);
	l = config_listener(c, "IncomingMail");
	assert_non_null(l);
	assert_null(config_listener(c, "nope"));
	assert_int_equal(l->line, 52);
	assert_true(l->public);
	assert_false(l->ipmm);
	assert_false(l->tls_wrapper);
	assert_int_equal(l->max_connections, 50);
	assert_null(l->tls.certificate);
	assert_int_equal(l->n_addrs, 2);
	assert_string_equal(port_addr(&l->addrs[0], buf, sizeof(buf), &port), "0.0.0.0");
	assert_int_equal(port, 25);
	assert_int_equal(l->addrs[1].ss.ss_family, AF_INET6);
	assert_int_equal(l->addrs[1].len, sizeof(struct sockaddr_in6));
	assert_string_equal(port_addr(&l->addrs[1], buf, sizeof(buf), &port), "::");
	assert_int_equal(port, 25);
	assert_string_equal(l->addrs[1].text, "[::]:25");

	assert_int_equal(l->n_hat, 2);
	assert_string_equal(l->hat[0].group, "RELAYLIST");
	assert_int_equal(l->hat[0].line, 58);
	assert_int_equal(l->hat[0].n_hosts, 2);
	assert_int_equal(l->hat[0].hosts[0].kind, HAT_RANGE);
	assert_int_equal(l->hat[0].hosts[1].kind, HAT_SUFFIX);
	assert_string_equal(l->hat[0].hosts[1].name, ".corp.example");
	assert_ptr_equal(l->hat[0].policy, config_policy(c, "RELAYED"));
	assert_ptr_equal(l->hat[1].policy, acc);

	assert_int_equal(l->n_rat, 3);
	assert_string_equal(l->rat[0].recipient, "example.com");
	assert_int_equal(l->rat[0].action, RAT_ACCEPT);
	assert_string_equal(l->rat[1].recipient, ".example.com");
	assert_int_equal(l->rat[1].action, RAT_ACCEPT);
	assert_string_equal(l->rat[2].recipient, "ALL");
	assert_int_equal(l->rat[2].action, RAT_REJECT);
	assert_int_equal(l->rat[2].line, 62);

	assert_int_equal(c->n_routes, 3);
	assert_string_equal(c->routes[0].domain, "example.com");
	assert_int_equal(c->routes[0].n_to, 2);
	assert_int_equal(c->routes[0].to[0].kind, TARGET_HOST);
	assert_string_equal(c->routes[0].to[0].host, "10.1.1.5");
	assert_int_equal(c->routes[0].to[0].port, 25);
	assert_string_equal(c->routes[0].to[1].text, "10.1.1.6:25");
	assert_int_equal(c->routes[1].to[0].kind, TARGET_DEVNULL);
	assert_string_equal(c->routes[2].domain, "ALL");
	assert_int_equal(c->routes[2].to[0].kind, TARGET_USEDNS);
	config_unref(c);
}

static void
test_defaults_filled(void **state)
{
	struct config *c = load_tmp(MINIMAL);
	const struct listener_conf *l = &c->listeners[0];
	char host[256];

	(void)state;
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_string_equal(c->hostname, host);
	assert_string_equal(c->spool, "/var/spool/mailgate");
	assert_string_equal(c->control, "/run/mailgate/control.sock");
	assert_string_equal(c->log.file, "-");
	assert_int_equal(c->log.format, LOG_FORMAT_ESA);
	assert_null(c->tls.certificate);
	assert_null(c->tls.key);
	check_builtin_globals(c);
	assert_int_equal(c->n_policies, 0);

	/* a public listener by default, with one HAT rule: ALL -> policy_defaults */
	assert_string_equal(l->name, "l");
	assert_true(l->public);
	assert_false(l->ipmm);
	assert_false(l->tls_wrapper);
	assert_int_equal(l->max_connections, 50);
	assert_int_equal(l->n_hat, 1);
	assert_string_equal(l->hat[0].group, "ALL");
	assert_int_equal(l->hat[0].n_hosts, 1);
	assert_int_equal(l->hat[0].hosts[0].kind, HAT_ALL);
	assert_ptr_equal(l->hat[0].policy, &c->policy_defaults);
	assert_int_equal(l->n_rat, 0);

	/* no routes: everything by MX */
	assert_int_equal(c->n_routes, 1);
	assert_string_equal(c->routes[0].domain, "ALL");
	assert_int_equal(c->routes[0].to[0].kind, TARGET_USEDNS);
	config_unref(c);
}

static void
test_listener_settings(void **state)
{
	struct config *c = load_tmp(
	    "limits = { max_connections = 7; };\n"
	    "listeners = (\n"
	    "  { name = \"sub\"; listen = [ \"[::1]:2587\" ]; type = \"private\";\n"
	    "    tls_wrapper = true; tls = { certificate = \"c.pem\"; key = \"k.pem\"; }; },\n"
	    "  { name = \"p2\"; listen = \"127.0.0.1:26\"; type = \"private\"; ipmm = false;\n"
	    "    max_connections = 3; hat = ( ); }\n"
	    ");\n"
	    "routes = ( );\n");
	const struct listener_conf *l;

	(void)state;
	l = config_listener(c, "sub");
	assert_false(l->public);
	assert_true(l->ipmm);
	assert_true(l->tls_wrapper);
	assert_int_equal(l->max_connections, 7);
	assert_string_equal(l->tls.certificate, "c.pem");
	assert_string_equal(l->tls.key, "k.pem");
	assert_int_equal(l->addrs[0].ss.ss_family, AF_INET6);
	l = config_listener(c, "p2");
	assert_false(l->ipmm);
	assert_int_equal(l->max_connections, 3);
	assert_int_equal(l->n_hat, 0);
	assert_int_equal(c->n_routes, 0);
	config_unref(c);
}

static void
test_err_tls_without_certificate(void **state)
{
	char err[4096];
	struct config *c;

	(void)state;
	c = config_load_string("policy_defaults = { tls = \"required\"; };\n" MINIMAL,
	    "t.conf", err, sizeof(err));
	assert_null(c);
	assert_non_null(strstr(err, "t.conf:"));
	assert_non_null(strstr(err, "has tls = \"required\" but no certificate"));
	c = config_load_string("listeners = ( { name = \"w\"; listen = \"127.0.0.1:4465\"; "
	    "tls_wrapper = true; } );\n", "t.conf", err, sizeof(err));
	assert_null(c);
	assert_non_null(strstr(err, "tls_wrapper needs a certificate"));
}

static void
test_policy_inheritance(void **state)
{
	struct config *c = load_tmp(
	    /* a policy that offers TLS needs a certificate somewhere (not read at load) */
	    "tls = { certificate = \"/etc/mailgate/cert.pem\"; key = \"/etc/mailgate/key.pem\"; };\n"
	    "policy_defaults = { action = \"relay\"; max_message_size = \"20M\";\n"
	    "  tls = \"preferred\"; tls_required_senders = [ \"bank.example\" ];\n"
	    "  banner_text = \"hello\"; greet_delay = \"5s\"; };\n"
	    "policies = {\n"
	    "  A = { };\n"
	    "  B = { action = \"reject\"; max_message_size = 1000; banner_text = \"B\";\n"
	    "        tls_required_senders = \"x@y.example\"; greet_delay = 0; };\n"
	    "  C = { action = \"continue\"; auth = \"required\"; bare_crlf = \"accept\"; };\n"
	    "};\n"
	    MINIMAL);
	const struct policy *d = &c->policy_defaults, *a, *b, *cc;

	(void)state;
	assert_int_equal(d->action, ACTION_RELAY);
	assert_int_equal(d->max_message_size, 20 << 20);
	assert_int_equal(d->tls, MODE_PREFERRED);
	assert_int_equal(d->greet_delay, 5);
	/* what policy_defaults leaves out comes from the built-in values */
	assert_int_equal(d->max_recipients_per_message, 50);

	a = config_policy(c, "A");
	assert_int_equal(a->action, ACTION_RELAY);
	assert_int_equal(a->max_message_size, 20 << 20);
	assert_int_equal(a->tls, MODE_PREFERRED);
	assert_int_equal(a->n_tls_required_senders, 1);
	assert_string_equal(a->tls_required_senders[0], "bank.example");
	assert_ptr_not_equal(a->tls_required_senders, d->tls_required_senders);
	assert_string_equal(a->banner_text, "hello");
	assert_int_equal(a->greet_delay, 5);

	b = config_policy(c, "B");
	assert_int_equal(b->action, ACTION_REJECT);
	assert_int_equal(b->max_message_size, 1000);
	assert_string_equal(b->banner_text, "B");
	assert_int_equal(b->n_tls_required_senders, 1);
	assert_string_equal(b->tls_required_senders[0], "x@y.example");
	assert_int_equal(b->greet_delay, 0);
	assert_int_equal(b->tls, MODE_PREFERRED);

	cc = config_policy(c, "C");
	assert_int_equal(cc->action, ACTION_CONTINUE);
	assert_int_equal(cc->auth, MODE_REQUIRED);
	assert_int_equal(cc->bare_crlf, BARE_CRLF_ACCEPT);
	assert_string_equal(cc->reject_text, "Access denied");
	config_unref(c);
}

static void
test_parse_size(void **state)
{
	static const struct { const char *s; uint64_t v; } good[] = {
		{ "0", 0 }, { "1", 1 }, { "1000", 1000 }, { "512K", 512 << 10 },
		{ "512k", 512 << 10 }, { "10M", 10 << 20 }, { "10m", 10 << 20 },
		{ "2G", 2ull << 30 }, { "1T", 1ull << 40 }, { "0K", 0 },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *bad[] = { "10X", "", "-1", "M", "10 M", " 10", "10MB", "1.5M",
	    "+1", "0x10", "18446744073709551616", "16777216T", "K10" };
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		assert_int_equal(config_parse_size(good[i].s, &v), 0);
		assert_true(v == good[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_size(bad[i], &v) != -1)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_int_equal(config_parse_size(bad[i], &v), -1);
	}
}

static void
test_parse_duration(void **state)
{
	static const struct { const char *s; unsigned v; } good[] = {
		{ "0", 0 }, { "30", 30 }, { "30s", 30 }, { "5m", 300 }, { "1h", 3600 },
		{ "3d", 259200 }, { "72h", 259200 }, { "4294967295", 4294967295u },
	};
	static const char *bad[] = { "10X", "", "-1", "m", "5M", "1.5h", "5 m", "1w",
	    "4294967296", "49711d", "s5" };
	unsigned v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		assert_int_equal(config_parse_duration(good[i].s, &v), 0);
		assert_int_equal(v, good[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_duration(bad[i], &v) != -1)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_int_equal(config_parse_duration(bad[i], &v), -1);
	}
}

/* integers, int64 and strings in settings */
static void
test_number_forms(void **state)
{
	struct config *c = load_tmp(
	    "limits = { queue_max_bytes = 21474836480L; min_free_disk = 1000;\n"
	    "  max_connection_time = 90; command_timeout = 60L; };\n"
	    "policy_defaults = { max_message_size = 1048576; };\n"
	    MINIMAL);

	(void)state;
	assert_true(c->limits.queue_max_bytes == 20ull << 30);
	assert_int_equal(c->limits.min_free_disk, 1000);
	assert_int_equal(c->limits.max_connection_time, 90);
	assert_int_equal(c->limits.command_timeout, 60);
	assert_int_equal(c->policy_defaults.max_message_size, 1 << 20);
	config_unref(c);
}

static void
test_err_unknown_top(void **state)
{
	(void)state;
	expect_error(MINIMAL "\nbogus = 1;\n", 3, "bogus: unknown setting");
	expect_error("limits = {\n  max_conections = 5;\n};\n" MINIMAL, 2,
	    "limits.max_conections: unknown setting");
}

static void
test_err_unknown_in_lists(void **state)
{
	(void)state;
	expect_error("policies = {\n  P = { action = \"relay\";\n    colour = \"blue\"; };\n};\n"
	    MINIMAL, 3, "policies.P.colour: unknown setting");
	expect_error("policy_defaults = { nope = 1; };\n" MINIMAL, 1,
	    "policy_defaults.nope: unknown setting");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  port = 25; } );\n", 2, "listeners[0].port: unknown setting");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  hat = ( { group = \"G\"; hosts = \"ALL\"; policy = \"policy_defaults\";\n"
	    "            extra = true; } ); } );\n", 3, "listeners[0].hat[0].extra: unknown");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  rat = ( { recipient = \"ALL\"; action = \"accept\"; x = 1; } ); } );\n", 2,
	    "listeners[0].rat[0].x: unknown setting");
	expect_error(MINIMAL "routes = ( { domain = \"ALL\"; to = \"USEDNS\";\n"
	    "  via = 1; } );\n", 3, "routes[0].via: unknown setting");
	expect_error(MINIMAL "delivery = { tries = 3; };\n", 2, "delivery.tries: unknown");
	expect_error(MINIMAL "dns = {\n  resolver = [ ];\n};\n", 3, "dns.resolver: unknown");
	expect_error(MINIMAL "log = { file = \"-\"; level = 3; };\n", 2, "log.level: unknown");
}

static void
test_err_wrong_type(void **state)
{
	(void)state;
	expect_error("spool = 5;\n" MINIMAL, 1, "spool: expected a string");
	expect_error(MINIMAL "limits = {\n  max_hops = \"50\";\n};\n", 3,
	    "limits.max_hops: expected an integer");
	expect_error(MINIMAL "dns = { reverse_lookups = 1; };\n", 2,
	    "dns.reverse_lookups: expected true or false");
	expect_error(MINIMAL "limits = 5;\n", 2, "limits: expected a group");
	expect_error(MINIMAL "limits = { max_hops = 5.0; };\n", 2, "expected an integer");
	expect_error(MINIMAL "policy_defaults = { max_message_size = true; };\n", 2,
	    "expected a size");
	expect_error(MINIMAL "policy_defaults = { max_message_size = \"10X\"; };\n", 2,
	    "\"10X\" is not a size");
	expect_error(MINIMAL "limits = { command_timeout = \"5 minutes\"; };\n", 2,
	    "is not a duration");
	expect_error(MINIMAL "policies = [ 1 ];\n", 2, "policies: expected a group");
	expect_error("listeners = { a = 1; };\n", 1, "listeners: expected a list");
	expect_error(MINIMAL "dns = { resolvers = [ 1, 2 ]; };\n", 2, "expected a string");
}

static void
test_err_out_of_range(void **state)
{
	(void)state;
	expect_error(MINIMAL "limits = { max_connections = 0; };\n", 2,
	    "limits.max_connections: value out of range (1..1000000)");
	expect_error(MINIMAL "limits = { bad_command_limit = -1; };\n", 2, "out of range");
	expect_error(MINIMAL "policy_defaults = {\n  banner_code = 554;\n};\n", 3,
	    "policy_defaults.banner_code: value out of range (200..299)");
	expect_error(MINIMAL "policies = { P = { reject_code = 250; }; };\n", 2,
	    "policies.P.reject_code: value out of range (400..599)");
	expect_error(MINIMAL "limits = { command_timeout = \"2d\"; };\n", 2,
	    "value out of range (1s..1d)");
	expect_error(MINIMAL "policy_defaults = { max_message_size = 0; };\n", 2,
	    "value out of range (1..1T)");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  max_connections = 0; } );\n", 2, "listeners[0].max_connections: value out");
	expect_error(MINIMAL "delivery = { retry_initial = \"2h\"; retry_max = \"1h\"; };\n",
	    2, "retry_initial is longer than retry_max");
	expect_error(MINIMAL "policy_defaults = { banner_text = \"a\\r\\n250 b\"; };\n", 2,
	    "printable ASCII");
}

static void
test_hostname(void **state)
{
	struct config *c = load_tmp("hostname = \"mx_1.Example.org\";\n" MINIMAL);

	(void)state;
	assert_string_equal(c->hostname, "mx_1.Example.org");
	config_unref(c);
	c = load_tmp("hostname = \"12345\";\n" MINIMAL);
	assert_string_equal(c->hostname, "12345");
	config_unref(c);
	expect_error("hostname = \"mx example\";\n" MINIMAL, 1,
	    "hostname: \"mx example\" is not a valid host name");
	expect_error("hostname = \"mx.example.\";\n" MINIMAL, 1, "is not a valid host name");
	expect_error("hostname = \"a..b\";\n" MINIMAL, 1, "is not a valid host name");
	expect_error("hostname = \"\";\n" MINIMAL, 1, "hostname: must not be empty");
	expect_error("hostname = \"a\\r\\nb\";\n" MINIMAL, 1, "control character");
}

static void
test_err_words(void **state)
{
	(void)state;
	expect_error(MINIMAL "policies = { P = { action = \"bounce\"; }; };\n", 2,
	    "policies.P.action: unknown value \"bounce\" (one of: accept, relay, reject, "
	    "tcprefuse, continue)");
	expect_error(MINIMAL "log = { format = \"xml\"; };\n", 2, "unknown value \"xml\"");
	expect_error(MINIMAL "policy_defaults = { tls = \"on\"; };\n", 2, "unknown value");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  type = \"secret\"; } );\n", 2, "listeners[0].type: expected \"public\"");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  rat = ( { recipient = \"a.example\";\n  action = \"relay\"; } ); } );\n", 3,
	    "listeners[0].rat[0].action: unknown value \"relay\" (one of: accept, reject)");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  rat = ( { recipient = \"ALL\"; action = \"accept\"; },\n"
	    "          { recipient = \"@example.com\"; action = \"accept\"; } ); } );\n", 3,
	    "listeners[0].rat[1].recipient: \"@example.com\" is not ALL, local@domain, a "
	    "domain or a .domain");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  rat = ( { action = \"accept\"; } ); } );\n", 2,
	    "listeners[0].rat[0]: missing required setting \"recipient\"");
}

static void
test_err_unknown_policy(void **state)
{
	(void)state;
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  hat = ( { group = \"G\"; hosts = \"ALL\";\n"
	    "            policy = \"RELAYED\"; } ); } );\n", 3,
	    "listeners[0].hat[0].policy: no policy named \"RELAYED\"");
	expect_error(MINIMAL "policies = { policy_defaults = { }; };\n", 2, "is reserved");
}

static void
test_err_missing_required(void **state)
{
	(void)state;
	/* the enclosing group's line */
	expect_error("listeners = (\n  { listen = \"127.0.0.1:25\"; }\n);\n", 2,
	    "listeners[0]: missing required setting \"name\"");
	expect_error("listeners = (\n  { name = \"x\"; }\n);\n", 2,
	    "missing required setting \"listen\"");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  hat = ( { group = \"G\"; policy = \"policy_defaults\"; } ); } );\n", 2,
	    "listeners[0].hat[0]: missing required setting \"hosts\"");
	expect_error("spool = \"/tmp\";\n", 1, "no listeners defined");
	expect_error("listeners = ( );\n", 1, "at least one listener");
	expect_error(MINIMAL "tls = { certificate = \"c.pem\"; };\n", 2,
	    "tls: certificate and key must be given together");
}

static void
test_err_listeners(void **state)
{
	(void)state;
	expect_error("listeners = ( { name = \"l\";\n  listen = [ \"localhost:25\" ]; } );\n", 2,
	    "listeners[0].listen[0]: \"localhost:25\": not a numeric IPv4 address");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1\"; } );\n", 1,
	    "expected \"address:port\"");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:0\"; } );\n", 1,
	    "the port must be 1..65535");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:65536\"; } );\n", 1,
	    "the port must be 1..65535");
	expect_error("listeners = ( { name = \"l\"; listen = \"::1:25\"; } );\n", 1,
	    "in brackets");
	expect_error("listeners = ( { name = \"l\"; listen = \"[::1]\"; } );\n", 1,
	    "\"[::1]\": expected \"address:port\" or \"[address]:port\"");
	expect_error("listeners = ( { name = \"l\"; listen = \"[127.0.0.1]:25\"; } );\n", 1,
	    "not a numeric IPv6 address");
	expect_error("listeners = ( { name = \"l\"; listen = [ ]; } );\n", 1,
	    "listeners[0].listen: at least one entry is needed");
	expect_error("listeners = (\n { name = \"a\"; listen = \"127.0.0.1:25\"; },\n"
	    " { name = \"a\"; listen = \"127.0.0.1:26\"; }\n);\n", 3,
	    "duplicate listener name \"a\" (first at line 2)");
	expect_error("listeners = (\n { name = \"a\"; listen = \"127.0.0.1:25\"; },\n"
	    " { name = \"b\"; listen = [ \"[::1]:25\", \"127.0.0.1:25\" ]; }\n);\n", 3,
	    "\"127.0.0.1:25\" is already used by listener \"a\"");
	expect_error("listeners = ( { name = \"a b\"; listen = \"127.0.0.1:25\"; } );\n", 1,
	    "use letters, digits");
}

static void
test_err_hat_host(void **state)
{
	(void)state;
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  hat = ( { group = \"G\"; policy = \"policy_defaults\";\n"
	    "            hosts = [ \"ALL\", \"10.0.0.0/33\" ]; } ); } );\n", 3,
	    "listeners[0].hat[0].hosts[1]: \"10.0.0.0/33\": IPv4 prefix length must be 0..32");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  hat = ( { group = \"G\"; policy = \"policy_defaults\";\n"
	    "            hosts = \"bad host!\"; } ); } );\n", 3,
	    "\"bad host!\": not an address, CIDR block, range, partial address or host name");
	expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:25\";\n"
	    "  hat = ( { group = \"G\"; policy = \"policy_defaults\"; hosts = [ ]; } ); } );\n",
	    2, "listeners[0].hat[0].hosts: at least one entry is needed");
}

static void
test_err_route_target(void **state)
{
	(void)state;
	expect_error(MINIMAL "routes = (\n  { domain = \"a.example\";\n"
	    "    to = [ \"USEDNS\", \"smtp://x\" ]; }\n);\n", 4,
	    "routes[0].to[1]: \"smtp://x\": not host[:port], [address][:port], USEDNS, "
	    "/dev/null or maildir:/path");
	expect_error(MINIMAL "routes = ( { domain = \"ALL\"; to = \"mx.example:0\"; } );\n", 2,
	    "not host[:port]");
	expect_error(MINIMAL "routes = ( { domain = \"ALL\"; to = \"2001:db8::1\"; } );\n", 2,
	    "in brackets");
	expect_error(MINIMAL "routes = ( { domain = \"ALL\"; to = \"[mx.example]\"; } );\n", 2,
	    "not host[:port]");
	expect_error(MINIMAL "routes = ( { domain = \"ALL\"; to = \"maildir:\"; } );\n", 2,
	    "maildir: needs a directory");
	expect_error(MINIMAL "routes = ( { domain = \"bad domain\"; to = \"USEDNS\"; } );\n", 2,
	    "is not ALL, a domain or a .domain");
	expect_error(MINIMAL "routes = (\n { domain = \"a.example\"; to = \"USEDNS\"; },\n"
	    " { domain = \"A.example\"; to = \"USEDNS\"; }\n);\n", 4, "already routed at line 3");
}

static void
test_err_syntax(void **state)
{
	(void)state;
	expect_error(MINIMAL "limits = {\n  max_hops = ;\n};\n", 3, "syntax error");
	expect_error("a = 1;\na = 2;\n", 2, "duplicate setting name");
}

/* libconfig 1.5 would wrap these to 32 bits without a word */
static void
test_err_wide_integer(void **state)
{
	(void)state;
	expect_error(MINIMAL "limits = {\n  queue_max_bytes = 21474836480; # 20G\n};\n", 3,
	    "integer 21474836480 does not fit in 32 bits");
	expect_error(MINIMAL "limits = { max_hops = -3000000000; };\n", 2,
	    "integer -3000000000 does not fit");
	expect_error(MINIMAL "limits = { max_hops = 0x1FFFFFFFF; };\n", 2, "does not fit");
}

static void
test_err_several(void **state)
{
	char err[2048], *path = write_tmp(
	    "spool = 5;\n"
	    "bogus = 1;\n"
	    MINIMAL);
	struct config *c = config_load(path, err, sizeof(err));
	char want[128];

	(void)state;
	assert_null(c);
	snprintf(want, sizeof(want), "%s:1: spool: expected a string", path);
	assert_non_null(strstr(err, want));
	snprintf(want, sizeof(want), "%s:2: bogus: unknown setting", path);
	assert_non_null(strstr(err, want));
	assert_non_null(strchr(err, '\n'));
	unlink(path);
	free(path);

	/* a missing file */
	assert_null(config_load("/nonexistent/mailgate.conf", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/mailgate.conf: "));
	/* a tiny buffer is still a terminated string */
	assert_null(config_load_string("x = 1;", "t", err, 5));
	assert_int_equal(strlen(err), 4);
}

static void
test_include(void **state)
{
	char dir[] = "/tmp/mailgate-test-incXXXXXX", path[256], inc[256], err[2048], want[300];
	struct config *c;
	FILE *fp;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/main.conf", dir);
	snprintf(inc, sizeof(inc), "%s/limits.conf", dir);
	fp = fopen(inc, "w");
	assert_non_null(fp);
	fputs("limits = { max_hops = 7; };\n", fp);
	fclose(fp);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(MINIMAL "@include \"limits.conf\"\n", fp);
	fclose(fp);
	c = config_load(path, err, sizeof(err));
	if (c == NULL)
		print_error("%s\n", err);
	assert_non_null(c);
	assert_int_equal(c->limits.max_hops, 7);
	config_unref(c);

	/* an error in the included file names that file */
	fp = fopen(inc, "w");
	assert_non_null(fp);
	fputs("\nlimits = { max_hops = 0; };\n", fp);
	fclose(fp);
	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:2: limits.max_hops: value out of range", inc);
	if (strstr(err, want) == NULL)
		print_error("%s\n", err);
	assert_non_null(strstr(err, want));

	fp = fopen(inc, "w");
	assert_non_null(fp);
	fputs("limits = { max_hops = 4000000000; };\n", fp);
	fclose(fp);
	assert_null(config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:1: integer 4000000000", inc);
	assert_non_null(strstr(err, want));
	unlink(inc);
	unlink(path);
	rmdir(dir);
}

/* print, load what was printed, print again: the same text after the header */
static void
round_trip(struct config *c)
{
	char err[2048], *a = print_to_string(c), *b;
	struct config *c2 = config_load_string(a, "printed", err, sizeof(err));

	if (c2 == NULL)
		print_error("printed config does not load: %s\n%s\n", err, a);
	assert_non_null(c2);
	b = print_to_string(c2);
	assert_non_null(strchr(a, '\n'));
	assert_string_equal(strchr(a, '\n'), strchr(b, '\n'));
	assert_int_equal(strncmp(b, "# effective configuration of printed\n", 37), 0);
	free(a);
	free(b);
	config_unref(c2);
}

static void
test_round_trip(void **state)
{
	char err[1024];
	struct config *c;
	char *text;

	(void)state;
	c = config_load(NULL, err, sizeof(err));
	assert_non_null(c);
	text = print_to_string(c);
	assert_int_equal(strncmp(text, "# effective configuration of (embedded default)\n", 48), 0);
	assert_non_null(strstr(text, "max_lifetime = \"3d\";"));
	assert_non_null(strstr(text, "queue_max_bytes = \"20G\";"));
	assert_non_null(strstr(text, "policy = \"RELAYED\";"));
	free(text);
	round_trip(c);
	config_unref(c);

	c = load_tmp(spec_example);
	round_trip(c);
	config_unref(c);

	c = load_tmp(
	    "hostname = \"mx.example.org\";\n"
	    "log = { file = \"/var/log/mail \\\"x\\\".log\"; format = \"json\"; };\n"
	    "limits = { queue_max_bytes = 21474836481L; min_free_disk = 0;\n"
	    "  max_connection_time = 90; queue_max_messages = 5000000000L; };\n"
	    "dns = { resolvers = [ \"192.0.2.53\", \"[2001:db8::53]:5353\" ];\n"
	    "  reverse_lookups = false; };\n"
	    "policy_defaults = { max_message_size = 1536; banner_text = \"a \\\\ b\";\n"
	    "  tls_required_senders = [ \"x@y\", \".z\" ]; };\n"
	    "policies = { P = { action = \"tcprefuse\"; greet_delay = \"1m\"; }; };\n"
	    "listeners = ( { name = \"x\"; listen = \"[::1]:25\"; type = \"private\";\n"
	    "  tls = { certificate = \"c\"; key = \"k\"; };\n"
	    "  rat = ( { recipient = \"a@b\"; action = \"reject\"; } ); } );\n"
	    "routes = ( { domain = \".example\";\n"
	    "  to = [ \"[192.0.2.1]:2525\", \"mx.x:26\" ]; } );\n");
	text = print_to_string(c);
	assert_non_null(strstr(text, "queue_max_bytes = 21474836481L;"));
	assert_non_null(strstr(text, "queue_max_messages = 5000000000L;"));
	assert_non_null(strstr(text, "max_connection_time = \"90s\";"));
	assert_non_null(strstr(text, "max_message_size = 1536;"));
	assert_non_null(strstr(text, "min_free_disk = 0;"));
	assert_non_null(strstr(text, "greet_delay = \"1m\";"));
	assert_non_null(strstr(text, "policy = \"policy_defaults\";"));
	free(text);
	round_trip(c);
	config_unref(c);
}

static void
test_load_string(void **state)
{
	char err[1024];
	struct config *c = config_load_string(MINIMAL, "inline", err, sizeof(err));

	(void)state;
	assert_non_null(c);
	assert_string_equal(c->file, "inline");
	config_unref(c);
	assert_null(config_load_string("spool = 1;\n" MINIMAL, "inline", err, sizeof(err)));
	assert_non_null(strstr(err, "inline:1: spool: expected a string"));
	assert_null(config_load_string("spool = ;", "inline", err, sizeof(err)));
	assert_non_null(strstr(err, "inline:1: syntax error"));
}

static void
test_pick_path(void **state)
{
	char old[1024], dir[] = "/tmp/mailgate-test-pickXXXXXX";
	FILE *fp;

	(void)state;
	assert_string_equal(config_pick_path("/etc/x.conf"), "/etc/x.conf");
	assert_non_null(getcwd(old, sizeof(old)));
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chdir(dir), 0);
	assert_null(config_pick_path(NULL));
	fp = fopen("mailgate.conf", "w");
	assert_non_null(fp);
	fclose(fp);
	assert_string_equal(config_pick_path(NULL), "./mailgate.conf");
	unlink("mailgate.conf");
	assert_int_equal(chdir(old), 0);
	rmdir(dir);
}

static void
test_refs(void **state)
{
	char err[256];
	struct config *c = config_load(NULL, err, sizeof(err));

	(void)state;
	assert_int_equal(c->refs, 1);
	assert_ptr_equal(config_ref(c), c);
	assert_int_equal(c->refs, 2);
	config_unref(c);
	assert_int_equal(c->refs, 1);
	config_unref(c);		/* freed: LeakSanitizer checks the rest */
	config_unref(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_embedded_default),
		cmocka_unit_test(test_spec_example),
		cmocka_unit_test(test_defaults_filled),
		cmocka_unit_test(test_listener_settings),
		cmocka_unit_test(test_policy_inheritance),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_number_forms),
		cmocka_unit_test(test_err_unknown_top),
		cmocka_unit_test(test_err_unknown_in_lists),
		cmocka_unit_test(test_err_wrong_type),
		cmocka_unit_test(test_err_out_of_range),
		cmocka_unit_test(test_hostname),
		cmocka_unit_test(test_err_words),
		cmocka_unit_test(test_err_unknown_policy),
		cmocka_unit_test(test_err_missing_required),
		cmocka_unit_test(test_err_listeners),
		cmocka_unit_test(test_err_tls_without_certificate),
		cmocka_unit_test(test_err_hat_host),
		cmocka_unit_test(test_err_route_target),
		cmocka_unit_test(test_err_syntax),
		cmocka_unit_test(test_err_wide_integer),
		cmocka_unit_test(test_err_several),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_load_string),
		cmocka_unit_test(test_pick_path),
		cmocka_unit_test(test_refs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
