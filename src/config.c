/*
 * config.c: loads and validates the configuration (see config.h and
 * spec/config.md); config_print.c prints it. Every plain setting is declared
 * once in a field table (config_fields.h) with its type, default and bounds;
 * the same tables drive the defaults, parsing, the unknown-name check,
 * freeing, copying (policy inheritance) and printing.
 * Lists whose entries need cross-checks (policies, listeners, HAT, RAT, routes)
 * are parsed by hand. A load either returns a whole config or NULL with every
 * error found as "file:line: path: message" lines; nothing is half-loaded.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config_fields.h"
#include "hat.h"
#include "util.h"

#define EMBEDDED_NAME	"(embedded default)"
#define DEFAULTS_NAME	"policy_defaults"	/* a HAT rule may name it */
#define MAX_ERRORS	20			/* error lines reported, then a count */
#define MAX_FILE_SIZE	(16u << 20)
#define MAX_INCLUDE	10			/* libconfig's own include depth */
#define MAX_TEXT	400			/* a reply line is <= 512 (RFC 5321 4.5.3.1.5) */

#define KB		1024ull
#define MB		(KB * 1024)
#define GB		(MB * 1024)
#define TB		(GB * 1024)
#define MINUTE		60u
#define HOUR		(60 * MINUTE)
#define DAY		(24 * HOUR)

static const char *const type_names[] = {
	[F_STR] = "a string", [F_TEXT] = "a string", [F_BOOL] = "true or false",
	[F_INT] = "an integer", [F_UINT] = "an integer", [F_U64] = "an integer",
	[F_SIZE] = "a size: an integer or a string such as \"10M\"",
	[F_DURATION] = "a duration: an integer or a string such as \"5m\"",
	[F_ENUM] = "a string", [F_STRLIST] = "a string or an array of strings",
	[F_GROUP] = "a group { ... }", [F_SPECIAL] = "something else",
};

#define FIELD(st, m, t, ...) { .name = #m, .type = t, .off = offsetof(st, m), __VA_ARGS__ }
#define LIST(st, m, ...) { .name = #m, .type = F_STRLIST, .off = offsetof(st, m), \
	.off_n = offsetof(st, n_##m), __VA_ARGS__ }
#define SPECIAL(n) { .name = (n), .type = F_SPECIAL }

static int check_hostname(const char *, char *, size_t);
static int check_resolver(const char *, char *, size_t);
static int check_address(const char *, char *, size_t);
static int check_listener_name(const char *, char *, size_t);
static int check_route_domain(const char *, char *, size_t);
static int check_rat_recipient(const char *, char *, size_t);

static const char *const action_words[] = { "accept", "relay", "reject", "tcprefuse",
    "continue", NULL };
static const char *const mode_words[] = { "off", "preferred", "required", NULL };
static const char *const bare_crlf_words[] = { "reject", "accept", NULL };
static const char *const log_format_words[] = { "esa", "json", NULL };
static const char *const rat_words[] = { "accept", "reject", NULL };

/*
 * Bounds. Counts that mean "no limit" at 0 start at 0; everything else at 1.
 * Timeouts stay under a day (a client holding a slot longer is an attack),
 * queue lifetimes under a year, reply codes in their class: banners 2xx,
 * rejects 4xx or 5xx. greet_delay stays under command_timeout's default.
 */
static const struct field log_fields[] = {
	{ .name = "file", .type = F_STR, .off = offsetof(struct config, log.file), .dflt = "-" },
	{ .name = "format", .type = F_ENUM, .off = offsetof(struct config, log.format),
	  .dflt = "esa", .words = log_format_words },
	{ .name = NULL }
};

static const struct field limits_fields[] = {
	FIELD(struct limits, max_connections, F_UINT, .min = 1, .max = 1000000, .dflt = "50"),
	FIELD(struct limits, max_tls_sessions, F_UINT, .min = 1, .max = 1000000, .dflt = "100"),
	FIELD(struct limits, max_header_lines, F_UINT, .min = 0, .max = 1000000, .dflt = "1000"),
	FIELD(struct limits, max_connection_time, F_DURATION, .min = 1, .max = 7 * DAY,
	    .dflt = "15m"),
	FIELD(struct limits, injection_timeout, F_DURATION, .min = 1, .max = DAY, .dflt = "5m"),
	FIELD(struct limits, command_timeout, F_DURATION, .min = 1, .max = DAY, .dflt = "5m"),
	FIELD(struct limits, bad_command_limit, F_UINT, .min = 1, .max = 1000, .dflt = "4"),
	FIELD(struct limits, auth_failure_limit, F_UINT, .min = 1, .max = 1000, .dflt = "3"),
	FIELD(struct limits, max_hops, F_UINT, .min = 1, .max = 1000, .dflt = "50"),
	FIELD(struct limits, queue_max_messages, F_U64, .min = 1, .max = 1000000000000ull,
	    .dflt = "1000000"),
	FIELD(struct limits, queue_max_bytes, F_SIZE, .min = 1, .max = 1024 * TB, .dflt = "20G"),
	FIELD(struct limits, min_free_disk, F_SIZE, .min = 0, .max = 1024 * TB, .dflt = "1G"),
	{ .name = NULL }
};

static const struct field dns_fields[] = {
	LIST(struct dns_conf, resolvers, .check = check_resolver),
	FIELD(struct dns_conf, hosts_file, F_STR, .dflt = "/etc/hosts"),
	FIELD(struct dns_conf, reverse_lookups, F_BOOL, .dflt = "true"),
	FIELD(struct dns_conf, timeout, F_DURATION, .min = 1, .max = 300, .dflt = "5s"),
	{ .name = NULL }
};

static const struct field tls_fields[] = {
	FIELD(struct tls_files, certificate, F_STR),
	FIELD(struct tls_files, key, F_STR),
	{ .name = NULL }
};

static const struct field auth_fields[] = {
	{ .name = "users", .type = F_STR, .off = offsetof(struct config, auth.users),
	  .dflt = "/etc/mailgate/users" },
	{ .name = NULL }
};

const struct field config_policy_fields[] = {
	FIELD(struct policy, action, F_ENUM, .words = action_words, .dflt = "accept"),
	FIELD(struct policy, max_message_size, F_SIZE, .min = 1, .max = TB, .dflt = "10M"),
	FIELD(struct policy, max_connections_per_host, F_UINT, .max = 1000000, .dflt = "10"),
	FIELD(struct policy, max_messages_per_connection, F_UINT, .max = 1000000, .dflt = "10"),
	FIELD(struct policy, max_recipients_per_message, F_UINT, .max = 1000000, .dflt = "50"),
	FIELD(struct policy, max_recipients_per_hour, F_UINT, .max = 1000000000, .dflt = "0"),
	FIELD(struct policy, banner_code, F_INT, .min = 200, .max = 299, .dflt = "220"),
	FIELD(struct policy, banner_text, F_TEXT, .dflt = "ESMTP"),
	FIELD(struct policy, reject_code, F_INT, .min = 400, .max = 599, .dflt = "554"),
	FIELD(struct policy, reject_text, F_TEXT, .dflt = "Access denied"),
	FIELD(struct policy, tls, F_ENUM, .words = mode_words, .dflt = "off"),
	LIST(struct policy, tls_required_senders, .check = check_address),
	FIELD(struct policy, auth, F_ENUM, .words = mode_words, .dflt = "off"),
	FIELD(struct policy, auth_requires_tls, F_BOOL, .dflt = "true"),
	FIELD(struct policy, bare_crlf, F_ENUM, .words = bare_crlf_words, .dflt = "reject"),
	FIELD(struct policy, greet_delay, F_DURATION, .min = 0, .max = 300, .dflt = "0"),
	{ .name = NULL }
};

static const struct field delivery_fields[] = {
	FIELD(struct delivery_conf, max_connections, F_UINT, .min = 1, .max = 100000,
	    .dflt = "100"),
	FIELD(struct delivery_conf, max_connections_per_destination, F_UINT, .min = 1,
	    .max = 100000, .dflt = "20"),
	FIELD(struct delivery_conf, retry_initial, F_DURATION, .min = 1, .max = DAY,
	    .dflt = "1m"),
	FIELD(struct delivery_conf, retry_max, F_DURATION, .min = 1, .max = 30 * DAY,
	    .dflt = "1h"),
	FIELD(struct delivery_conf, max_lifetime, F_DURATION, .min = 1, .max = 365 * DAY,
	    .dflt = "72h"),
	{ .name = NULL }
};

/* defaults of max_connections and ipmm depend on limits and type: set by hand */
const struct field config_listener_fields[] = {
	FIELD(struct listener_conf, name, F_STR, .required = true, .check = check_listener_name),
	SPECIAL("listen"),
	SPECIAL("type"),
	FIELD(struct listener_conf, max_connections, F_UINT, .min = 1, .max = 1000000),
	FIELD(struct listener_conf, ipmm, F_BOOL),
	FIELD(struct listener_conf, tls_wrapper, F_BOOL, .dflt = "false"),
	FIELD(struct listener_conf, tls, F_GROUP, .sub = tls_fields),
	SPECIAL("hat"),
	SPECIAL("rat"),
	{ .name = NULL }
};

const struct field config_hat_fields[] = {
	FIELD(struct hat_rule, group, F_STR, .required = true),
	SPECIAL("hosts"),
	SPECIAL("policy"),
	{ .name = NULL }
};

const struct field config_rat_fields[] = {
	FIELD(struct rat_rule, recipient, F_STR, .required = true, .check = check_rat_recipient),
	FIELD(struct rat_rule, action, F_ENUM, .required = true, .words = rat_words),
	{ .name = NULL }
};

const struct field config_route_fields[] = {
	FIELD(struct route, domain, F_STR, .required = true, .check = check_route_domain),
	SPECIAL("to"),
	{ .name = NULL }
};

/* printed in this order; groups whose fields address struct config directly sit at 0 */
const struct field config_root_fields[] = {
	FIELD(struct config, hostname, F_STR, .check = check_hostname),
	FIELD(struct config, spool, F_STR, .dflt = "/var/spool/mailgate"),
	FIELD(struct config, control, F_STR, .dflt = "/run/mailgate/control.sock"),
	{ .name = "log", .type = F_GROUP, .off = 0, .sub = log_fields },
	FIELD(struct config, limits, F_GROUP, .sub = limits_fields),
	FIELD(struct config, dns, F_GROUP, .sub = dns_fields),
	FIELD(struct config, tls, F_GROUP, .sub = tls_fields),
	{ .name = "auth", .type = F_GROUP, .off = 0, .sub = auth_fields },
	FIELD(struct config, policy_defaults, F_GROUP, .sub = config_policy_fields),
	SPECIAL("policies"),
	SPECIAL("listeners"),
	SPECIAL("routes"),
	FIELD(struct config, delivery, F_GROUP, .sub = delivery_fields),
	{ .name = NULL }
};

struct loadctx {
	struct config *cfg;
	const char *name;			/* the main file, as named in messages */
	const char *incdir;			/* libconfig's include dir, or NULL */
	char *err;
	size_t errlen, used;
	int nerr;
};

static void __attribute__((noreturn))
oom(void)
{
	fprintf(stderr, "mailgate: config: out of memory\n");
	abort();
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size);

	if (p == NULL)
		oom();
	return p;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		oom();
	return p;
}

/*
 * Errors
 */

static void err_at(struct loadctx *, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void lerr(struct loadctx *, const config_setting_t *, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
err_append(struct loadctx *ctx, const char *line)
{
	if (ctx->errlen == 0 || ctx->used + 1 >= ctx->errlen)
		return;
	if (ctx->used > 0)
		ctx->err[ctx->used++] = '\n';
	util_strlcpy(ctx->err + ctx->used, line, ctx->errlen - ctx->used);
	ctx->used += strlen(ctx->err + ctx->used);
}

static void
err_at(struct loadctx *ctx, const char *file, int line, const char *fmt, ...)
{
	char msg[512], buf[1024];
	va_list ap;

	if (++ctx->nerr > MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(buf, sizeof(buf), "%s:%d: %s", file, line > 0 ? line : 1, msg);
	err_append(ctx, buf);
}

/* libconfig names an included file as written in @include: add the include dir */
static const char *
source_name(struct loadctx *ctx, const char *file, char *buf, size_t cap)
{
	if (file == NULL)
		return ctx->name;
	if (ctx->incdir == NULL || file[0] == '/')
		return file;
	snprintf(buf, cap, "%s/%s", ctx->incdir, file);
	return buf;
}

/* "listeners[0].hat[1].hosts": where a setting sits, for messages */
static void
setting_path(const config_setting_t *s, char *buf, size_t cap)
{
	const config_setting_t *chain[32];
	size_t n = 0, used = 0;

	buf[0] = '\0';
	for (; s != NULL && !config_setting_is_root(s) && n < ARRAY_LEN(chain);
	    s = config_setting_parent(s))
		chain[n++] = s;
	while (n-- > 0 && used < cap) {
		const char *name = config_setting_name(chain[n]);
		int w;

		if (name != NULL && config_setting_is_group(config_setting_parent(chain[n])))
			w = snprintf(buf + used, cap - used, "%s%s", used > 0 ? "." : "", name);
		else
			w = snprintf(buf + used, cap - used, "[%d]",
			    config_setting_index(chain[n]));
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* at the setting's own line, or its nearest ancestor's (the root has none) */
static void
lerr(struct loadctx *ctx, const config_setting_t *s, const char *fmt, ...)
{
	char msg[512], path[256], fbuf[PATH_MAX];
	const config_setting_t *at = s;
	va_list ap;

	while (at != NULL && config_setting_source_line(at) == 0)
		at = config_setting_parent(at);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	setting_path(s, path, sizeof(path));
	err_at(ctx, source_name(ctx, at != NULL ? config_setting_source_file(at) : NULL,
	    fbuf, sizeof(fbuf)), at != NULL ? config_setting_source_line(at) : 1,
	    "%s%s%s", path, path[0] != '\0' ? ": " : "", msg);
}

/*
 * Sizes and durations
 */

static int
parse_unit(const char *s, uint64_t *out, const char *units, const uint64_t *mult, uint64_t max)
{
	uint64_t v = 0, m = 1;
	const char *p = s, *u;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		uint64_t d = (uint64_t)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (*p != '\0') {
		if ((u = strchr(units, *p)) == NULL || p[1] != '\0')
			return -1;
		m = mult[u - units];
	}
	if (v > max / m)
		return -1;
	*out = v * m;
	return 0;
}

/* units are powers of 1024, either case */
int
config_parse_size(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = { KB, MB, GB, TB, KB, MB, GB, TB };

	return parse_unit(s, out, "KMGTkmgt", mult, UINT64_MAX);
}

/* lower case only: "1M" is too easily read as a month */
int
config_parse_duration(const char *s, unsigned *out)
{
	static const uint64_t mult[] = { 1, MINUTE, HOUR, DAY };
	uint64_t v;

	if (parse_unit(s, &v, "smhd", mult, UINT_MAX) == -1)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/*
 * The largest exact unit ("10M", "3d"); sizes that are no multiple of 1K stay
 * plain digits. Returns whether the text is a string (needs quotes).
 */
static bool
fmt_unit(char *buf, size_t cap, uint64_t v, bool duration)
{
	static const uint64_t sm[] = { TB, GB, MB, KB }, dm[] = { DAY, HOUR, MINUTE, 1 };
	const uint64_t *m = duration ? dm : sm;

	for (size_t i = 0; i < 4; i++) {
		if (v > 0 && v % m[i] == 0) {
			snprintf(buf, cap, "%" PRIu64 "%c", v / m[i],
			    (duration ? "dhms" : "TGMK")[i]);
			return true;
		}
	}
	snprintf(buf, cap, "%" PRIu64, v);
	return false;
}

/*
 * Checks of string values; each returns -1 with a reason
 */

static int
check_plain(const char *s, char *why, size_t cap)
{
	if (*s == '\0') {
		util_strlcpy(why, "must not be empty", cap);
		return -1;
	}
	for (const char *p = s; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			util_strlcpy(why, "contains a control character", cap);
			return -1;
		}
	}
	return 0;
}

static int
check_text(const char *s, char *why, size_t cap)
{
	if (strlen(s) > MAX_TEXT) {
		snprintf(why, cap, "longer than %d characters", MAX_TEXT);
		return -1;
	}
	for (const char *p = s; *p != '\0'; p++) {
		/* CR or LF here would let a config inject extra reply lines */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
			util_strlcpy(why, "only printable ASCII is allowed in reply text", cap);
			return -1;
		}
	}
	return 0;
}

/* one definition of a host name for the whole config: the HAT's */
static bool
valid_hostname(const char *s)
{
	struct hat_host h;
	char why[8];
	bool ok;

	if (s[0] == '.' || hat_host_parse(s, &h, why, sizeof(why)) == -1)
		return false;
	ok = h.kind == HAT_NAME;
	hat_host_free(&h);
	return ok;
}

static int
check_hostname(const char *s, char *why, size_t cap)
{
	size_t len = strlen(s);

	/* looser than valid_hostname(): machine names may hold '_' or be all digits */
	if (len == 0 || len > 255 || s[0] == '.' || s[len - 1] == '.' || strstr(s, "..") != NULL ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
	    len) {
		snprintf(why, cap, "\"%s\" is not a valid host name", s);
		return -1;
	}
	return 0;
}

/* an address or a domain: no white space */
static int
check_address(const char *s, char *why, size_t cap)
{
	if (strpbrk(s, " \t") != NULL || strlen(s) > 255) {
		snprintf(why, cap, "\"%s\" is not an address or domain", s);
		return -1;
	}
	return 0;
}

/* the name shows in logs and control commands: one plain word */
static int
check_listener_name(const char *s, char *why, size_t cap)
{
	if (strlen(s) > 64 || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_.-") != strlen(s)) {
		snprintf(why, cap, "\"%s\": use letters, digits, '_', '.', '-' (at most 64)", s);
		return -1;
	}
	return 0;
}

static int
check_route_domain(const char *s, char *why, size_t cap)
{
	if (strcasecmp(s, "ALL") != 0 && !valid_hostname(s[0] == '.' ? s + 1 : s)) {
		snprintf(why, cap, "\"%s\" is not ALL, a domain or a .domain", s);
		return -1;
	}
	return 0;
}

/* the forms hat_rat_accepts() knows: ALL, local@domain, domain, .domain */
static int
check_rat_recipient(const char *s, char *why, size_t cap)
{
	const char *at = strchr(s, '@');

	if (strcasecmp(s, "ALL") == 0 || (at != NULL && at != s && at[1] != '\0' &&
	    strchr(at + 1, '@') == NULL && check_address(s, why, cap) == 0) ||
	    (at == NULL && valid_hostname(s[0] == '.' ? s + 1 : s)))
		return 0;
	snprintf(why, cap, "\"%s\" is not ALL, local@domain, a domain or a .domain", s);
	return -1;
}

static int
parse_port(const char *p, uint16_t *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(p, &end, 10);
	if (!isdigit((unsigned char)*p) || *end != '\0' || errno != 0 || v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/*
 * "host", "host:port", "[host]", "[host]:port": the host into buf, *port NULL
 * when there is none. -2 for an IPv6 address without brackets (its last group
 * could be a port), -1 for anything else malformed.
 */
static int
split_hostport(const char *text, char *buf, size_t cap, const char **port, bool *bracketed)
{
	const char *hs = text, *he;

	if ((*bracketed = text[0] == '[')) {
		if ((he = strchr(++hs, ']')) == NULL || (he[1] != '\0' && he[1] != ':'))
			return -1;
		*port = he[1] == ':' ? he + 2 : NULL;
	} else {
		if ((he = strchr(hs, ':')) != NULL && strchr(he + 1, ':') != NULL)
			return -2;
		*port = he != NULL ? he + 1 : NULL;
		if (he == NULL)
			he = hs + strlen(hs);
	}
	if (he == hs || (size_t)(he - hs) >= cap)
		return -1;
	memcpy(buf, hs, (size_t)(he - hs));
	buf[he - hs] = '\0';
	return 0;
}

/* "192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353" */
static int
check_resolver(const char *s, char *why, size_t cap)
{
	char host[INET6_ADDRSTRLEN];
	const char *port;
	uint8_t a[16];
	uint16_t p;
	bool br;

	if (inet_pton(AF_INET6, s, a) == 1)
		return 0;
	if (split_hostport(s, host, sizeof(host), &port, &br) != 0 ||
	    inet_pton(br ? AF_INET6 : AF_INET, host, a) != 1 ||
	    (port != NULL && parse_port(port, &p) == -1)) {
		util_strlcpy(why, "not a resolver: \"addr\", \"addr:port\" or \"[v6addr]:port\"",
		    cap);
		return -1;
	}
	return 0;
}

/*
 * Generic fields: defaults, values, freeing, copying
 */

static void
set_enum(void *base, const struct field *f, int v)
{
	memcpy(AT(base, f, char), &v, sizeof(v));
}

static int
word_index(const char *const *words, const char *s)
{
	for (int i = 0; words[i] != NULL; i++)
		if (strcasecmp(words[i], s) == 0)
			return i;
	return -1;
}

static void
store_number(void *base, const struct field *f, uint64_t v)
{
	if (f->type == F_INT)
		*AT(base, f, int) = (int)v;
	else if (f->type == F_U64 || f->type == F_SIZE)
		*AT(base, f, uint64_t) = v;
	else
		*AT(base, f, unsigned) = (unsigned)v;
}

/* sizes and durations in their unit, for messages and printing; true if a string */
bool
config_fmt_number(char *buf, size_t cap, const struct field *f, uint64_t v)
{
	if (f->type == F_SIZE || f->type == F_DURATION)
		return fmt_unit(buf, cap, v, f->type == F_DURATION);
	snprintf(buf, cap, "%" PRIu64, v);
	return false;
}

static void
free_strlist(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static void
free_fields(const struct field *tab, void *base)
{
	for (const struct field *f = tab; f->name != NULL; f++) {
		if (f->type == F_STR || f->type == F_TEXT) {
			free(*AT(base, f, char *));
			*AT(base, f, char *) = NULL;
		} else if (f->type == F_STRLIST) {
			free_strlist(*AT(base, f, strv), COUNT(base, f));
			*AT(base, f, strv) = NULL;
			COUNT(base, f) = 0;
		} else if (f->type == F_GROUP)
			free_fields(f->sub, AT(base, f, char));
	}
}

/* dst is a byte copy of another: give it its own strings */
static void
dup_fields(const struct field *tab, void *dst)
{
	for (const struct field *f = tab; f->name != NULL; f++) {
		if ((f->type == F_STR || f->type == F_TEXT) && *AT(dst, f, char *) != NULL)
			*AT(dst, f, char *) = xstrdup(*AT(dst, f, char *));
		else if (f->type == F_STRLIST && *AT(dst, f, strv) != NULL) {
			char **copy = xcalloc(COUNT(dst, f), sizeof(char *));

			for (size_t i = 0; i < COUNT(dst, f); i++)
				copy[i] = xstrdup((*AT(dst, f, strv))[i]);
			*AT(dst, f, strv) = copy;
		} else if (f->type == F_GROUP)
			dup_fields(f->sub, AT(dst, f, char));
	}
}

/* the built-in defaults; they are constants, so a failure is a bug here */
static void
apply_defaults(const struct field *tab, void *base)
{
	for (const struct field *f = tab; f->name != NULL; f++) {
		uint64_t v = 0;
		unsigned d = 0;
		int rc = 0;

		if (f->type == F_GROUP)
			apply_defaults(f->sub, AT(base, f, char));
		if (f->dflt == NULL)
			continue;
		if (f->type == F_STR || f->type == F_TEXT) {
			free(*AT(base, f, char *));
			*AT(base, f, char *) = xstrdup(f->dflt);
		} else if (f->type == F_BOOL)
			*AT(base, f, bool) = strcmp(f->dflt, "true") == 0;
		else if (f->type == F_ENUM)
			set_enum(base, f, rc = word_index(f->words, f->dflt));
		else if (f->type == F_DURATION) {
			rc = config_parse_duration(f->dflt, &d);
			store_number(base, f, d);
		} else {
			rc = config_parse_size(f->dflt, &v);
			store_number(base, f, v);
		}
		assert(rc >= 0);
	}
}

/* an integer field's value, or a unit string for sizes and durations */
static int
get_number(struct loadctx *ctx, const config_setting_t *s, const struct field *f,
    uint64_t *out)
{
	int t = config_setting_type(s);
	char lo[32], hi[32];
	long long ll = 0;
	unsigned d = 0;

	if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
		ll = config_setting_get_int64(s);
		*out = ll < 0 ? 0 : (uint64_t)ll;
	} else if (t == CONFIG_TYPE_STRING && (f->type == F_SIZE || f->type == F_DURATION)) {
		const char *str = config_setting_get_string(s);
		int rc = f->type == F_SIZE ? config_parse_size(str, out) :
		    config_parse_duration(str, &d);

		if (rc == -1) {
			lerr(ctx, s, "\"%s\" is not %s", str, type_names[f->type]);
			return -1;
		}
		if (f->type == F_DURATION)
			*out = d;
	} else {
		lerr(ctx, s, "expected %s", type_names[f->type]);
		return -1;
	}
	if (ll >= 0 && *out >= f->min && *out <= f->max)
		return 0;
	config_fmt_number(lo, sizeof(lo), f, f->min);
	config_fmt_number(hi, sizeof(hi), f, f->max);
	lerr(ctx, s, "value out of range (%s..%s)", lo, hi);
	return -1;
}

/* a single string or an array or list of strings: how many, or -1 after an error */
static int
strings_len(struct loadctx *ctx, const config_setting_t *s)
{
	int n;

	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return 1;
	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		lerr(ctx, s, "expected a string or an array of strings");
		return -1;
	}
	n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			lerr(ctx, e, "expected a string");
			return -1;
		}
	}
	return n;
}

static const config_setting_t *
strings_elem(const config_setting_t *s, int i)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return s;
	return config_setting_get_elem(s, (unsigned)i);
}

/* the string checks of a field; NULL when str passes, else the reason in why */
static const char *
check_string(const struct field *f, const char *str, char *why, size_t cap)
{
	if ((f->type == F_TEXT ? check_text(str, why, cap) : check_plain(str, why, cap)) == -1 ||
	    (f->check != NULL && f->check(str, why, cap) == -1))
		return why;
	return NULL;
}

static void
parse_strlist(struct loadctx *ctx, const config_setting_t *s, const struct field *f,
    void *base)
{
	char why[256], **list;
	int n;

	if ((n = strings_len(ctx, s)) == -1)
		return;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = strings_elem(s, i);

		if (check_string(f, config_setting_get_string(e), why, sizeof(why)) != NULL) {
			lerr(ctx, e, "%s", why);
			return;
		}
	}
	list = xcalloc((size_t)n, sizeof(char *));
	for (int i = 0; i < n; i++)
		list[i] = xstrdup(config_setting_get_string(strings_elem(s, i)));
	free_strlist(*AT(base, f, strv), COUNT(base, f));
	*AT(base, f, strv) = list;
	COUNT(base, f) = (size_t)n;
}

static void
parse_value(struct loadctx *ctx, const config_setting_t *s, const struct field *f,
    void *base)
{
	int t = config_setting_type(s), idx;
	char why[256], list[128] = "";
	const char *str;
	uint64_t v = 0;

	if ((t != CONFIG_TYPE_STRING && (f->type == F_STR || f->type == F_TEXT ||
	    f->type == F_ENUM)) || (t != CONFIG_TYPE_BOOL && f->type == F_BOOL)) {
		lerr(ctx, s, "expected %s", type_names[f->type]);
		return;
	}
	switch (f->type) {
	case F_STR:
	case F_TEXT:
		str = config_setting_get_string(s);
		if (check_string(f, str, why, sizeof(why)) != NULL) {
			lerr(ctx, s, "%s", why);
			return;
		}
		free(*AT(base, f, char *));
		*AT(base, f, char *) = xstrdup(str);
		break;
	case F_BOOL:
		*AT(base, f, bool) = config_setting_get_bool(s) != 0;
		break;
	case F_ENUM:
		str = config_setting_get_string(s);
		if ((idx = word_index(f->words, str)) == -1) {
			for (int i = 0; f->words[i] != NULL; i++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				    i > 0 ? ", " : "", f->words[i]);
			lerr(ctx, s, "unknown value \"%s\" (one of: %s)", str, list);
			return;
		}
		set_enum(base, f, idx);
		break;
	case F_STRLIST:
		parse_strlist(ctx, s, f, base);
		break;
	default:
		if (get_number(ctx, s, f, &v) == 0)
			store_number(base, f, v);
		break;
	}
}

static const struct field *
field_find(const struct field *tab, const char *name)
{
	for (const struct field *f = tab; f->name != NULL; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* s must be a group whose every member is in tab; false if s is no group */
static bool
check_group(struct loadctx *ctx, const config_setting_t *s, const struct field *tab)
{
	int n;

	if (!config_setting_is_group(s)) {
		lerr(ctx, s, "expected a group { ... }");
		return false;
	}
	n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);

		if (field_find(tab, config_setting_name(m)) == NULL)
			lerr(ctx, m, "unknown setting");
	}
	return true;
}

/* the members of s that tab declares (F_SPECIAL left to the caller) */
static void
parse_fields(struct loadctx *ctx, const config_setting_t *s, const struct field *tab,
    void *base)
{
	for (const struct field *f = tab; f->name != NULL; f++) {
		const config_setting_t *m = config_setting_get_member(s, f->name);

		if (m == NULL && f->required)
			lerr(ctx, s, "missing required setting \"%s\"", f->name);
		if (f->type == F_SPECIAL || m == NULL)
			continue;
		if (f->type != F_GROUP)
			parse_value(ctx, m, f, base);
		else if (check_group(ctx, m, f->sub))
			parse_fields(ctx, m, f->sub, AT(base, f, char));
	}
}

/* a required member holding one string or an array of them: how many, or -1 */
static int
required_strings(struct loadctx *ctx, const config_setting_t *s, const char *name,
    const config_setting_t **m)
{
	int n;

	if ((*m = config_setting_get_member(s, name)) == NULL) {
		lerr(ctx, s, "missing required setting \"%s\"", name);
		return -1;
	}
	if ((n = strings_len(ctx, *m)) == 0)
		lerr(ctx, *m, "at least one entry is needed");
	return n > 0 ? n : -1;
}

/* a "( { ... }, ... )" list: its length, or -1 after an error */
static int
group_list_len(struct loadctx *ctx, const config_setting_t *s)
{
	if (!config_setting_is_list(s)) {
		lerr(ctx, s, "expected a list ( { ... }, ... )");
		return -1;
	}
	return config_setting_length(s);
}

static void
check_tls_pair(struct loadctx *ctx, const config_setting_t *s, const struct tls_files *t)
{
	if ((t->certificate == NULL) != (t->key == NULL))
		lerr(ctx, config_setting_get_member(s, "tls"),
		    "certificate and key must be given together");
}

/*
 * Policies: every setting a named policy leaves out comes from policy_defaults
 */

static void
parse_policies(struct loadctx *ctx, const config_setting_t *s)
{
	struct config *cfg = ctx->cfg;
	int n;

	if (!config_setting_is_group(s)) {
		lerr(ctx, s, "expected a group of named policies");
		return;
	}
	n = config_setting_length(s);
	cfg->policies = xcalloc((size_t)n, sizeof(struct policy));
	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
		struct policy *p = &cfg->policies[cfg->n_policies];

		if (strcmp(config_setting_name(m), DEFAULTS_NAME) == 0) {
			lerr(ctx, m, "\"%s\" is reserved", DEFAULTS_NAME);
			continue;
		}
		if (!check_group(ctx, m, config_policy_fields))
			continue;
		*p = cfg->policy_defaults;
		dup_fields(config_policy_fields, p);
		p->name = xstrdup(config_setting_name(m));
		p->line = config_setting_source_line(m);
		cfg->n_policies++;
		parse_fields(ctx, m, config_policy_fields, p);
	}
}

const struct policy *
config_policy(const struct config *cfg, const char *name)
{
	if (strcmp(name, DEFAULTS_NAME) == 0)
		return &cfg->policy_defaults;
	for (size_t i = 0; i < cfg->n_policies; i++)
		if (strcmp(cfg->policies[i].name, name) == 0)
			return &cfg->policies[i];
	return NULL;
}

/*
 * Listeners
 */

/* "127.0.0.1:2525" or "[::1]:2525": a numeric host and a port, both required */
static const char *
parse_listen(const char *text, struct listen_addr *la)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&la->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&la->ss;
	char host[INET6_ADDRSTRLEN];
	const char *port;
	uint16_t p;
	bool br;
	int rc;

	memset(la, 0, sizeof(*la));
	if ((rc = split_hostport(text, host, sizeof(host), &port, &br)) == -2)
		return "an IPv6 address goes in brackets: \"[::1]:25\"";
	if (rc == -1 || port == NULL)
		return "expected \"address:port\" or \"[address]:port\"";
	if (parse_port(port, &p) == -1)
		return "the port must be 1..65535";
	if (!br && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(p);
		la->len = sizeof(*sin);
	} else if (br && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(p);
		la->len = sizeof(*sin6);
	} else
		return br ? "not a numeric IPv6 address" : "not a numeric IPv4 address";
	la->text = xstrdup(text);
	return NULL;
}

/* the same address twice would fail at bind(): say so at load */
static const struct listener_conf *
addr_owner(const struct config *cfg, const struct listener_conf *upto,
    const struct listen_addr *la)
{
	for (const struct listener_conf *o = cfg->listeners; o <= upto; o++)
		for (size_t k = 0; k < o->n_addrs; k++)
			if (o->addrs[k].len == la->len &&
			    memcmp(&o->addrs[k].ss, &la->ss, la->len) == 0)
				return o;
	return NULL;
}

static void
parse_listen_addrs(struct loadctx *ctx, const config_setting_t *s, struct listener_conf *l)
{
	const config_setting_t *m;
	const struct listener_conf *o;
	const char *why;
	int n;

	if ((n = required_strings(ctx, s, "listen", &m)) == -1)
		return;
	l->addrs = xcalloc((size_t)n, sizeof(struct listen_addr));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = strings_elem(m, i);
		const char *text = config_setting_get_string(e);
		struct listen_addr *la = &l->addrs[l->n_addrs];

		if ((why = parse_listen(text, la)) != NULL)
			lerr(ctx, e, "\"%s\": %s", text, why);
		else if ((o = addr_owner(ctx->cfg, l, la)) != NULL) {
			lerr(ctx, e, "\"%s\" is already used by listener \"%s\"", text,
			    o->name != NULL ? o->name : "?");
			free(la->text);
		} else
			l->n_addrs++;
	}
}

static void
parse_hat_rule(struct loadctx *ctx, const config_setting_t *s, struct hat_rule *r)
{
	const config_setting_t *hosts, *m = config_setting_get_member(s, "policy");
	char why[128];
	int n;

	if (!check_group(ctx, s, config_hat_fields))
		return;
	r->line = config_setting_source_line(s);
	parse_fields(ctx, s, config_hat_fields, r);
	if (m == NULL)
		lerr(ctx, s, "missing required setting \"policy\"");
	else if (config_setting_type(m) != CONFIG_TYPE_STRING)
		lerr(ctx, m, "expected a string");
	else if ((r->policy = (struct policy *)config_policy(ctx->cfg,
	    config_setting_get_string(m))) == NULL)
		lerr(ctx, m, "no policy named \"%s\"", config_setting_get_string(m));
	if ((n = required_strings(ctx, s, "hosts", &hosts)) == -1)
		return;
	r->hosts = xcalloc((size_t)n, sizeof(struct hat_host));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = strings_elem(hosts, i);
		const char *text = config_setting_get_string(e);

		if (hat_host_parse(text, &r->hosts[r->n_hosts], why, sizeof(why)) == -1)
			lerr(ctx, e, "\"%s\": %s", text, why);
		else
			r->n_hosts++;
	}
}


/* no hat: one rule, ALL hosts get policy_defaults */
static void
default_hat(struct config *cfg, struct listener_conf *l)
{
	char why[64];

	l->hat = xcalloc(1, sizeof(struct hat_rule));
	l->n_hat = 1;
	l->hat->group = xstrdup("ALL");
	l->hat->line = l->line;
	l->hat->hosts = xcalloc(1, sizeof(struct hat_host));
	if (hat_host_parse("ALL", l->hat->hosts, why, sizeof(why)) == 0)
		l->hat->n_hosts = 1;
	l->hat->policy = &cfg->policy_defaults;
}


static void
parse_listener(struct loadctx *ctx, const config_setting_t *s, struct listener_conf *l)
{
	const config_setting_t *m;
	const char *v;
	int n;

	if (!check_group(ctx, s, config_listener_fields))
		return;
	l->line = config_setting_source_line(s);
	l->public = true;
	if ((m = config_setting_get_member(s, "type")) != NULL) {
		v = config_setting_type(m) == CONFIG_TYPE_STRING ?
		    config_setting_get_string(m) : "";
		if (strcasecmp(v, "private") == 0)
			l->public = false;
		else if (strcasecmp(v, "public") != 0)
			lerr(ctx, m, "expected \"public\" or \"private\"");
	}
	apply_defaults(config_listener_fields, l);
	l->max_connections = ctx->cfg->limits.max_connections;
	l->ipmm = !l->public;		/* mail merge is for trusted injectors */
	parse_fields(ctx, s, config_listener_fields, l);
	for (const struct listener_conf *o = ctx->cfg->listeners; o < l; o++)
		if (l->name != NULL && o->name != NULL && strcmp(o->name, l->name) == 0)
			lerr(ctx, config_setting_get_member(s, "name"), "duplicate listener "
			    "name \"%s\" (first at line %d)", l->name, o->line);
	parse_listen_addrs(ctx, s, l);
	check_tls_pair(ctx, s, &l->tls);

	if ((m = config_setting_get_member(s, "hat")) == NULL)
		default_hat(ctx->cfg, l);
	else if ((n = group_list_len(ctx, m)) >= 0) {
		l->hat = xcalloc((size_t)n, sizeof(struct hat_rule));
		l->n_hat = (size_t)n;
		for (int i = 0; i < n; i++)
			parse_hat_rule(ctx, config_setting_get_elem(m, (unsigned)i), &l->hat[i]);
	}
	/* the rules and their policies are final: hat_match() uses this from now on */
	if ((l->hat_index = hat_index_build(l->hat, l->n_hat)) == NULL)
		oom();
	/* TLS offered or required, or implicit, needs a certificate (global or own) */
	if (l->tls.certificate == NULL && ctx->cfg->tls.certificate == NULL) {
		if (l->tls_wrapper)
			lerr(ctx, s, "listener %s: tls_wrapper needs a certificate (tls = { "
			    "certificate = ...; key = ...; })", l->name ? l->name : "");
		for (size_t i = 0; i < l->n_hat; i++)
			if (l->hat[i].policy != NULL && l->hat[i].policy->tls != MODE_OFF) {
				lerr(ctx, s, "listener %s: policy %s has tls = \"%s\" but no "
				    "certificate is configured", l->name ? l->name : "",
				    l->hat[i].policy->name, l->hat[i].policy->tls ==
				    MODE_REQUIRED ? "required" : "preferred");
				break;
			}
	}
	if ((m = config_setting_get_member(s, "rat")) != NULL &&
	    (n = group_list_len(ctx, m)) >= 0) {
		l->rat = xcalloc((size_t)n, sizeof(struct rat_rule));
		l->n_rat = (size_t)n;
		for (int i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);

			l->rat[i].line = config_setting_source_line(e);
			if (check_group(ctx, e, config_rat_fields))
				parse_fields(ctx, e, config_rat_fields, &l->rat[i]);
		}
	}
}

static void
parse_listeners(struct loadctx *ctx, const config_setting_t *root)
{
	const config_setting_t *s = config_setting_get_member(root, "listeners");
	struct config *cfg = ctx->cfg;
	int n;

	if (s == NULL) {
		lerr(ctx, root, "no listeners defined: add listeners = ( { name = ...; "
		    "listen = ...; } );");
		return;
	}
	if ((n = group_list_len(ctx, s)) == -1)
		return;
	if (n == 0) {
		lerr(ctx, s, "at least one listener is needed");
		return;
	}
	cfg->listeners = xcalloc((size_t)n, sizeof(struct listener_conf));
	cfg->n_listeners = (size_t)n;
	for (int i = 0; i < n; i++)
		parse_listener(ctx, config_setting_get_elem(s, (unsigned)i), &cfg->listeners[i]);
}

const struct listener_conf *
config_listener(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (cfg->listeners[i].name != NULL && strcmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	return NULL;
}

static void
listener_free(struct listener_conf *l)
{
	for (size_t i = 0; i < l->n_addrs; i++)
		free(l->addrs[i].text);
	free(l->addrs);
	free_fields(config_listener_fields, l);
	hat_index_free(l->hat_index);
	for (size_t i = 0; i < l->n_hat; i++) {
		for (size_t j = 0; j < l->hat[i].n_hosts; j++)
			hat_host_free(&l->hat[i].hosts[j]);
		free(l->hat[i].hosts);
		free_fields(config_hat_fields, &l->hat[i]);
	}
	free(l->hat);
	for (size_t i = 0; i < l->n_rat; i++)
		free_fields(config_rat_fields, &l->rat[i]);
	free(l->rat);
}

/*
 * Routes
 */

/* host[:port], [address][:port], USEDNS, /dev/null, maildir:/path */
static const char *
parse_target(const char *text, struct route_target *t)
{
	char host[256];
	const char *port;
	uint8_t a[16];
	bool br;
	int rc;

	memset(t, 0, sizeof(*t));
	t->port = 25;
	if (strcasecmp(text, "USEDNS") == 0)
		t->kind = TARGET_USEDNS;
	else if (strcmp(text, "/dev/null") == 0)
		t->kind = TARGET_DEVNULL;
	else if (strncmp(text, "maildir:", 8) == 0) {
		if (text[8] == '\0')
			return "maildir: needs a directory";
		t->kind = TARGET_MAILDIR;
		t->path = xstrdup(text + 8);
	} else {
		if ((rc = split_hostport(text, host, sizeof(host), &port, &br)) == -2)
			return "an IPv6 address goes in brackets: \"[2001:db8::1]:25\"";
		if (rc == -1 || (port != NULL && parse_port(port, &t->port) == -1) ||
		    (br && inet_pton(AF_INET6, host, a) != 1 && inet_pton(AF_INET, host, a) != 1) ||
		    (!br && !valid_hostname(host) && inet_pton(AF_INET, host, a) != 1))
			return "not host[:port], [address][:port], USEDNS, /dev/null or "
			    "maildir:/path";
		t->kind = TARGET_HOST;
		t->host = xstrdup(host);
	}
	t->text = xstrdup(text);
	return NULL;
}

static void
route_free(struct route *r)
{
	free_fields(config_route_fields, r);
	for (size_t i = 0; i < r->n_to; i++) {
		free(r->to[i].text);
		free(r->to[i].host);
		free(r->to[i].path);
	}
	free(r->to);
}

static void
parse_route(struct loadctx *ctx, const config_setting_t *s, struct route *r, int index)
{
	const config_setting_t *to;
	const char *why;
	int n;

	if (!check_group(ctx, s, config_route_fields))
		return;
	r->line = config_setting_source_line(s);
	parse_fields(ctx, s, config_route_fields, r);
	for (int i = 0; i < index && r->domain != NULL; i++) {
		const struct route *o = &ctx->cfg->routes[i];

		/* first match wins: a second entry could never be used */
		if (o->domain != NULL && strcasecmp(o->domain, r->domain) == 0)
			lerr(ctx, config_setting_get_member(s, "domain"),
			    "\"%s\" is already routed at line %d", r->domain, o->line);
	}
	if ((n = required_strings(ctx, s, "to", &to)) == -1)
		return;
	r->to = xcalloc((size_t)n, sizeof(struct route_target));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = strings_elem(to, i);
		const char *text = config_setting_get_string(e);

		if ((why = parse_target(text, &r->to[r->n_to])) != NULL)
			lerr(ctx, e, "\"%s\": %s", text, why);
		else
			r->n_to++;
	}
}

/* no routes at all: deliver everything by MX, as any MTA would */
static void
parse_routes(struct loadctx *ctx, const config_setting_t *root)
{
	const config_setting_t *s = config_setting_get_member(root, "routes");
	struct config *cfg = ctx->cfg;
	int n;

	if (s == NULL) {
		cfg->routes = xcalloc(1, sizeof(struct route));
		cfg->n_routes = 1;
		cfg->routes->domain = xstrdup("ALL");
		cfg->routes->to = xcalloc(1, sizeof(struct route_target));
		if (parse_target("USEDNS", cfg->routes->to) == NULL)
			cfg->routes->n_to = 1;
		return;
	}
	if ((n = group_list_len(ctx, s)) == -1)
		return;
	cfg->routes = xcalloc((size_t)n, sizeof(struct route));
	cfg->n_routes = (size_t)n;
	for (int i = 0; i < n; i++)
		parse_route(ctx, config_setting_get_elem(s, (unsigned)i), &cfg->routes[i], i);
}

/*
 * libconfig 1.5 reads an integer without an L suffix through a 32-bit int and
 * silently wraps it: 3000000000 becomes -1294967296 and 21474836480 becomes 0
 * (hyperrealm/libconfig issues 69 and 153). So before trusting any number we
 * scan the text, and the files it includes, for such literals.
 */
static void scan_wide_ints(struct loadctx *, const char *text, const char *file, int depth);

static char *
read_text(const char *path, char *why, size_t cap)
{
	FILE *fp;
	char *buf;
	size_t n;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(why, cap, "%s", strerror(errno));
		return NULL;
	}
	buf = xcalloc(MAX_FILE_SIZE + 1, 1);
	n = fread(buf, 1, MAX_FILE_SIZE + 1, fp);
	if (ferror(fp) || n > MAX_FILE_SIZE) {
		snprintf(why, cap, "%s", ferror(fp) ? strerror(errno) : "file too large");
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	return buf;
}

/* p at "@include": scan that file as libconfig will find it */
static void
scan_include(struct loadctx *ctx, const char *p, const char *file, int line, int depth)
{
	char path[PATH_MAX], why[128], *text;
	const char *name = p + strlen("@include"), *end;

	name += strspn(name, " \t");
	if (*name++ != '"' || (end = strchr(name, '"')) == NULL)
		return;				/* libconfig reports the syntax */
	if (depth >= MAX_INCLUDE) {
		err_at(ctx, file, line, "includes nested too deeply");
		return;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s%s%.*s", ctx->incdir != NULL ?
	    ctx->incdir : "", ctx->incdir != NULL ? "/" : "", (int)(end - name), name) >=
	    sizeof(path) || (text = read_text(path, why, sizeof(why))) == NULL)
		return;				/* libconfig reports it */
	scan_wide_ints(ctx, text, path, depth + 1);
	free(text);
}

static void
scan_wide_ints(struct loadctx *ctx, const char *text, const char *file, int depth)
{
	const char *p = text, *start;
	int line = 1;

	while (*p != '\0') {
		uint64_t v = 0;
		bool neg = false, hex, big = false;

		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p != '\0' && !(p[0] == '*' && p[1] == '/'); p++)
				line += *p == '\n';
			p += *p != '\0' ? 2 : 0;
		} else if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				p += *p == '\\' && p[1] != '\0';
				line += *p == '\n';
			}
			p += *p != '\0';
		} else if (strncmp(p, "@include", 8) == 0) {
			scan_include(ctx, p, file, line, depth);
			p += strcspn(p, "\n");
		} else if (isalpha((unsigned char)*p) || *p == '*') {
			p += strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789-_*");		/* a name; digits in it are no number */
		} else if (isdigit((unsigned char)*p) ||
		    ((*p == '-' || *p == '+') && isdigit((unsigned char)p[1]))) {
			start = p;
			if (*p == '-' || *p == '+')
				neg = *p++ == '-';
			hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
			for (p += hex ? 2 : 0; hex ? isxdigit((unsigned char)*p) :
			    isdigit((unsigned char)*p); p++) {
				big |= v > 0xffffffffull;
				v = v * (hex ? 16 : 10) + (uint64_t)(isdigit((unsigned char)*p) ?
				    *p - '0' : tolower((unsigned char)*p) - 'a' + 10);
			}
			if (!hex && (*p == '.' || *p == 'e' || *p == 'E'))
				p += strspn(p, "0123456789.eE+-");	/* a float */
			else if (*p == 'L')
				p += p[1] == 'L' ? 2 : 1;		/* 64 bits: fine */
			else if (big || v > (neg ? 2147483648ull : (uint64_t)INT_MAX))
				err_at(ctx, file, line, "integer %.*s does not fit in 32 bits: "
				    "add an L suffix (%.*sL) or use a unit (\"20G\")",
				    (int)(p - start), start, (int)(p - start), start);
		} else
			p++;
	}
}

/*
 * Loading
 */

static void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free_fields(config_root_fields, cfg);
	free(cfg->policy_defaults.name);
	for (size_t i = 0; i < cfg->n_policies; i++) {
		free_fields(config_policy_fields, &cfg->policies[i]);
		free(cfg->policies[i].name);
	}
	free(cfg->policies);
	for (size_t i = 0; i < cfg->n_listeners; i++)
		listener_free(&cfg->listeners[i]);
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->n_routes; i++)
		route_free(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->file);
	free(cfg);
}

/* gethostname() only: a DNS lookup at start would hang on a broken resolver */
static char *
default_hostname(void)
{
	char buf[256], why[300];

	/* what we print must load back, and it goes into every reply */
	if (gethostname(buf, sizeof(buf)) == -1)
		return xstrdup("localhost");
	buf[sizeof(buf) - 1] = '\0';
	if (check_plain(buf, why, sizeof(why)) == -1 || check_hostname(buf, why, sizeof(why)) == -1)
		return xstrdup("localhost");
	return xstrdup(buf);
}

static struct config *
load_text(const char *text, const char *name, const char *incdir, char *err, size_t errlen)
{
	struct loadctx ctx = { .name = name, .incdir = incdir, .err = err, .errlen = errlen };
	const config_setting_t *root, *s;
	char fbuf[PATH_MAX], more[64];
	struct config *cfg;
	config_t lc;

	if (errlen > 0)
		err[0] = '\0';
	config_init(&lc);
	if (incdir != NULL)
		config_set_include_dir(&lc, incdir);
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		err_at(&ctx, source_name(&ctx, config_error_file(&lc), fbuf, sizeof(fbuf)),
		    config_error_line(&lc), "%s", config_error_text(&lc));
		config_destroy(&lc);
		return NULL;
	}
	scan_wide_ints(&ctx, text, name, 0);
	if (ctx.nerr > 0) {
		config_destroy(&lc);
		return NULL;
	}

	cfg = ctx.cfg = xcalloc(1, sizeof(*cfg));
	cfg->refs = 1;
	cfg->file = xstrdup(name);
	apply_defaults(config_root_fields, cfg);
	cfg->policy_defaults.name = xstrdup(DEFAULTS_NAME);
	root = config_root_setting(&lc);
	check_group(&ctx, root, config_root_fields);
	parse_fields(&ctx, root, config_root_fields, cfg);
	if (cfg->hostname == NULL)
		cfg->hostname = default_hostname();
	/* named policies copy policy_defaults, and HAT rules point at policies */
	if ((s = config_setting_get_member(root, "policies")) != NULL)
		parse_policies(&ctx, s);
	parse_listeners(&ctx, root);
	parse_routes(&ctx, root);
	if (cfg->delivery.retry_initial > cfg->delivery.retry_max)
		lerr(&ctx, config_setting_get_member(root, "delivery"),
		    "retry_initial is longer than retry_max");
	check_tls_pair(&ctx, root, &cfg->tls);
	config_destroy(&lc);

	if (ctx.nerr == 0)
		return cfg;
	if (ctx.nerr > MAX_ERRORS) {
		snprintf(more, sizeof(more), "... and %d more", ctx.nerr - MAX_ERRORS);
		err_append(&ctx, more);
	}
	config_free(cfg);
	return NULL;
}

struct config *
config_load_string(const char *text, const char *name, char *err, size_t errlen)
{
	return load_text(text, name != NULL ? name : "(string)", NULL, err, errlen);
}

/*
 * @include is relative to the file's directory. libconfig 1.5 puts that
 * directory before every include, so an absolute @include path does not work.
 */
struct config *
config_load(const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX], why[128];
	const char *slash;
	struct config *cfg;
	char *text;

	if (path == NULL)
		return load_text(config_default_text, EMBEDDED_NAME, NULL, err, errlen);
	if ((text = read_text(path, why, sizeof(why))) == NULL) {
		if (errlen > 0)
			snprintf(err, errlen, "%s: %s", path, why);
		return NULL;
	}
	if ((slash = strrchr(path, '/')) == NULL)
		util_strlcpy(dir, ".", sizeof(dir));
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	cfg = load_text(text, path, dir, err, errlen);
	free(text);
	return cfg;
}

const char *
config_pick_path(const char *given)
{
	if (given != NULL)
		return given;
	if (access("./mailgate.conf", R_OK) == 0)
		return "./mailgate.conf";
	return NULL;
}

/* sessions on worker threads take and drop references while a reload swaps configs */
struct config *
config_ref(struct config *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void
config_unref(struct config *cfg)
{
	if (cfg != NULL && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}
