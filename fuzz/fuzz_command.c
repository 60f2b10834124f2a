/*
 * fuzz_command: a command line as io.c hands it over (CRLF taken off, any
 * other byte possible), through smtp_split_command(), then the MAIL/RCPT path
 * parser smtp_parse_path_arg() (FROM with the null path allowed, TO with
 * <postmaster> allowed, as the session calls them), smtp_valid_helo() and
 * smtp_echo(). Besides memory errors it checks the promises of smtp_syntax.h:
 * spans stay inside the line, a parsed address holds no byte that could end a
 * line or forge an envelope or log field (hostile.md 6, 9), the limits of RFC
 * 5321 4.5.3.1 hold, and an error leaves nothing half parsed.
 */
#include "fuzz.h"

#include "smtp_syntax.h"

static bool
inside(const struct smtp_span *s, const char *p, size_t len)
{
	return s->p >= p && s->p <= p + len && s->len <= (size_t)(p + len - s->p);
}

static bool
printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static void
check_path(const struct smtp_span *arg, const char *kw, bool allow_null, bool allow_pm)
{
	struct smtp_path path;
	struct smtp_params params;
	struct smtp_span bad;
	enum smtp_parse_result r;
	char echo[65];

	r = smtp_parse_path_arg(arg, kw, allow_null, allow_pm, &path, &params, &bad);
	FUZZ_CHECK(r == SMTP_PARSE_OK || r == SMTP_PARSE_SYNTAX || r == SMTP_PARSE_TOO_LONG,
	    "result %d", (int)r);
	FUZZ_CHECK(inside(&bad, arg->p, arg->len), "bad span outside the argument");
	smtp_echo(bad.p, bad.len, echo);
	FUZZ_CHECK(strlen(echo) <= 64 && printable(echo, strlen(echo)), "echo \"%s\"", echo);
	if (r != SMTP_PARSE_OK) {
		FUZZ_CHECK(path.addr_len == 0 && path.addr[0] == '\0' && params.n == 0 &&
		    !path.null && !path.postmaster && path.domain == path.addr,
		    "half a parse left after an error");
		return;
	}
	FUZZ_CHECK(bad.len == 0, "bad span on success");
	FUZZ_CHECK(path.addr_len <= SMTP_PATH_MAX && strlen(path.addr) == path.addr_len,
	    "addr_len %zu strlen %zu", path.addr_len, strlen(path.addr));
	/* nothing a client sent may end a line, hide after a NUL or carry 8-bit */
	FUZZ_CHECK(printable(path.addr, path.addr_len), "unprintable address \"%s\"", path.addr);
	FUZZ_CHECK(path.domain >= path.addr && path.domain <= path.addr + path.addr_len,
	    "domain outside addr");
	FUZZ_CHECK(strlen(path.local_unquoted) <= SMTP_LOCAL_MAX &&
	    printable(path.local_unquoted, strlen(path.local_unquoted)), "local_unquoted");
	if (path.null) {
		FUZZ_CHECK(allow_null && path.addr_len == 0, "null path where not allowed");
	} else if (path.postmaster) {
		FUZZ_CHECK(allow_pm && path.domain[0] == '\0' && path.addr_len == 10,
		    "postmaster \"%s\"", path.addr);
	} else {
		FUZZ_CHECK(path.local_len >= 1 && path.local_len <= SMTP_LOCAL_MAX &&
		    path.addr[path.local_len] == '@' &&
		    path.domain == path.addr + path.local_len + 1 &&
		    strlen(path.domain) >= 1 && strlen(path.domain) <= SMTP_DOMAIN_MAX,
		    "address \"%s\" local_len %zu", path.addr, path.local_len);
		FUZZ_CHECK(path.quoted_local == (path.addr[0] == '"'), "quoted_local");
		FUZZ_CHECK(path.domain_literal == (path.domain[0] == '['), "domain_literal");
		if (!path.quoted_local)
			FUZZ_CHECK(strlen(path.local_unquoted) == path.local_len &&
			    memcmp(path.local_unquoted, path.addr, path.local_len) == 0,
			    "local_unquoted of a dot-string");
	}
	FUZZ_CHECK(params.n <= SMTP_PARAMS_MAX, "%zu params", params.n);
	for (size_t i = 0; i < params.n; i++) {
		const struct smtp_param *pm = &params.p[i];
		size_t kl = strlen(pm->key);

		FUZZ_CHECK(inside(&pm->key_raw, arg->p, arg->len) &&
		    inside(&pm->value, arg->p, arg->len), "param %zu outside the line", i);
		FUZZ_CHECK(kl >= 1 && kl < sizeof(pm->key) &&
		    (kl == pm->key_raw.len || (kl == sizeof(pm->key) - 1 && pm->key_raw.len > kl)),
		    "key \"%s\" raw %zu", pm->key, pm->key_raw.len);
		for (size_t j = 0; j < kl; j++)
			FUZZ_CHECK((pm->key[j] >= 'A' && pm->key[j] <= 'Z') ||
			    (pm->key[j] >= '0' && pm->key[j] <= '9') || pm->key[j] == '-',
			    "key \"%s\"", pm->key);
		for (size_t j = 0; j < pm->value.len; j++) {
			unsigned char c = (unsigned char)pm->value.p[j];
			FUZZ_CHECK(c >= 33 && c <= 126 && c != '=', "value byte 0x%02x", c);
		}
		FUZZ_CHECK(pm->has_value || pm->value.len == 0, "value without '='");
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(params.p[j].key, pm->key) != 0 ||
			    kl == sizeof(pm->key) - 1, "repeated keyword %s", pm->key);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct smtp_cmdline cl;
	struct smtp_span whole = { line, size };
	char echo[65];

	smtp_split_command(line, size, &cl);
	FUZZ_CHECK(memchr(cl.verb, '\0', sizeof(cl.verb)) != NULL, "verb not terminated");
	FUZZ_CHECK(printable(cl.verb, strlen(cl.verb)), "verb \"%s\"", cl.verb);
	FUZZ_CHECK(inside(&cl.arg, line, size), "arg outside the line");
	if (cl.arg.len > 0)
		FUZZ_CHECK(cl.arg.p[0] != ' ' && cl.arg.p[cl.arg.len - 1] != ' ',
		    "arg keeps its spaces");
	if (cl.verb_ok)
		FUZZ_CHECK(strlen(cl.verb) >= 1 && strlen(cl.verb) <= SMTP_VERB_MAX - 1 &&
		    memchr(line, ' ', strlen(cl.verb)) == NULL, "verb_ok for \"%s\"", cl.verb);
	if (!cl.bad_bytes)
		for (size_t i = 0; i < size; i++)
			FUZZ_CHECK(data[i] != 0 && data[i] != '\r' && data[i] != '\n' &&
			    data[i] < 0x80, "bad byte 0x%02x not flagged", data[i]);
	smtp_echo(cl.arg.p, cl.arg.len, echo);
	FUZZ_CHECK(strlen(echo) == (cl.arg.len < 64 ? cl.arg.len : 64), "echo length");

	/* as the session calls them, whatever the verb: MAIL FROM, XMRG, RCPT TO */
	check_path(&cl.arg, "FROM", true, false);
	check_path(&cl.arg, "TO", false, true);
	/* and the whole line as an argument, so no verb is needed to get there */
	check_path(&whole, "FROM", true, false);

	if (smtp_valid_helo(cl.arg.p, cl.arg.len))
		FUZZ_CHECK(cl.arg.len <= SMTP_DOMAIN_MAX && printable(cl.arg.p, cl.arg.len) &&
		    memchr(cl.arg.p, ' ', cl.arg.len) == NULL, "HELO name taken");
	(void)smtp_valid_helo(line, size);
	return 0;
}
