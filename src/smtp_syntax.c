/*
 * smtp_syntax.c: parsers for what a client writes on a command line: the verb
 * and its argument (RFC 5321 4.1.1), reverse- and forward-paths (4.1.2), ESMTP
 * parameters, HELO names, SIZE values (RFC 1870) and xtext (RFC 3461 4).
 *
 * Contract (see smtp_syntax.h): pure functions, no I/O, no allocation, no
 * globals, no locale. Each reads exactly len bytes that may hold any byte (NUL,
 * CR, LF, 8-bit) and never relies on a terminator. On a syntax error the parser
 * names the token that failed so the session can echo it through smtp_echo().
 * Syntax only: whether an address may relay is the policy's business.
 */
#include "smtp_syntax.h"

#include <arpa/inet.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

/* ASCII classes by hand: <ctype.h> depends on the locale and on signedness */
static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static unsigned char
to_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* RFC 5322 3.2.3 atext, which RFC 5321 4.1.2 uses for Atom */
static bool
is_atext(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
span_ieq(const char *p, size_t len, const char *s)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] == '\0' || to_upper((unsigned char)p[i]) != to_upper((unsigned char)s[i]))
			return false;
	return s[len] == '\0';
}

void
smtp_split_command(const char *line, size_t len, struct smtp_cmdline *out)
{
	size_t i, v, n;

	memset(out, 0, sizeof(*out));
	out->arg.p = line;

	/* the line ended at CRLF: any CR, LF or NUL left in it is a bare one */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80) {
			out->bad_bytes = true;
			break;
		}
	}

	/* only a space ends the verb (4.1.1: verb SP argument); "MAIL\tFROM" is one bad verb */
	for (v = 0; v < len && line[v] != ' '; v++)
		;
	out->verb_ok = v >= 1 && v <= SMTP_VERB_MAX - 1;
	for (i = 0; i < v; i++) {
		unsigned char c = (unsigned char)line[i];
		if (!is_alnum(c) && c != '-')
			out->verb_ok = false;
		if (i < SMTP_VERB_MAX - 1) {
			/* a NUL must not turn "QUIT\0junk" into the C string "QUIT" */
			if (c < 0x20 || c > 0x7e)
				c = '?';
			out->verb[i] = (char)to_upper(c);
		}
	}

	i = v;
	while (i < len && line[i] == ' ')
		i++;
	n = len;
	while (n > i && line[n - 1] == ' ')
		n--;
	if (n > i) {
		out->arg.p = line + i;
		out->arg.len = n - i;
	}
}

/*
 * A Domain of 4.1.2 as a host name: labels of letters, digits and hyphens, not
 * starting or ending with a hyphen, 63 octets at most (RFC 1035 2.3.4), no
 * empty label, no trailing dot. Too long past SMTP_DOMAIN_MAX (4.5.3.1.2).
 */
static enum smtp_parse_result
check_hostname(const char *p, size_t len)
{
	size_t i, lab = 0;

	if (len == 0)
		return SMTP_PARSE_SYNTAX;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '.') {
			if (lab == 0 || p[i - 1] == '-')
				return SMTP_PARSE_SYNTAX;
			lab = 0;
			continue;
		}
		if (!is_alnum(c) && (c != '-' || lab == 0))
			return SMTP_PARSE_SYNTAX;
		if (++lab > 63)
			return SMTP_PARSE_SYNTAX;
	}
	if (lab == 0 || p[len - 1] == '-')
		return SMTP_PARSE_SYNTAX;
	if (len > SMTP_DOMAIN_MAX)
		return SMTP_PARSE_TOO_LONG;
	return SMTP_PARSE_OK;
}

/*
 * An address literal of 4.1.3: "[1.2.3.4]" or "[IPv6:...]", checked by
 * inet_pton(). The General-address-literal form is not taken. The bytes are
 * checked first: inet_pton() reads a C string and would stop at a NUL.
 */
static bool
check_literal(const char *p, size_t len)
{
	char tmp[INET6_ADDRSTRLEN + 1];
	unsigned char addr[16];
	int af = AF_INET;
	size_t i;

	if (len < 3 || p[0] != '[' || p[len - 1] != ']')
		return false;
	p++;
	len -= 2;
	if (len > 5 && span_ieq(p, 5, "IPv6:")) {
		af = AF_INET6;
		p += 5;
		len -= 5;
	}
	if (len >= sizeof(tmp))
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (!is_alnum(c) && c != '.' && c != ':')
			return false;
	}
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	return inet_pton(af, tmp, addr) == 1;
}

/*
 * The inside of a path: "" (null), "postmaster", or [A-d-l ":"] Mailbox. written
 * is the path's length as the client wrote it, with its angle brackets (the
 * 256-octet limit of 4.5.3.1.3 counts the punctuation).
 */
static enum smtp_parse_result
parse_path(const char *p, size_t len, size_t written, bool allow_null, bool allow_postmaster,
    struct smtp_path *path)
{
	enum smtp_parse_result r, route = SMTP_PARSE_OK;
	size_t i, at, dlen, u;
	bool quoted = false;

	if (len == 0) {
		/* "<>": the null reverse-path of 4.5.5 (bounces) */
		if (!allow_null)
			return SMTP_PARSE_SYNTAX;
		path->null = true;
		return SMTP_PARSE_OK;
	}
	if (allow_postmaster && span_ieq(p, len, "postmaster")) {
		/* 4.1.1.3: RCPT TO:<Postmaster> without a domain, any case */
		memcpy(path->addr, p, len);
		path->addr[len] = '\0';
		path->addr_len = len;
		path->local_len = len;
		path->domain = path->addr + len;
		memcpy(path->local_unquoted, p, len);
		path->local_unquoted[len] = '\0';
		path->postmaster = true;
		return SMTP_PARSE_OK;
	}

	/* A-d-l: "@a,@b:" is parsed and checked, then dropped (4.1.1.3, appendix C) */
	if (p[0] == '@') {
		i = 0;
		for (;;) {
			size_t s = ++i;
			while (i < len && p[i] != ',' && p[i] != ':')
				i++;
			if (i == len)
				return SMTP_PARSE_SYNTAX;
			r = check_hostname(p + s, i - s);
			if (r == SMTP_PARSE_SYNTAX)
				return r;
			if (r == SMTP_PARSE_TOO_LONG)
				route = r;
			if (p[i++] == ':')
				break;
			if (i == len || p[i] != '@')
				return SMTP_PARSE_SYNTAX;
		}
		p += i;
		len -= i;
	}

	/* Local-part = Dot-string / Quoted-string (4.1.2); no 8-bit (no SMTPUTF8) */
	if (len > 0 && p[0] == '"') {
		quoted = true;
		for (i = 1;; i++) {
			unsigned char c;
			if (i >= len)
				return SMTP_PARSE_SYNTAX;
			c = (unsigned char)p[i];
			if (c == '"') {
				i++;
				break;
			}
			if (c == '\\') {
				/* quoted-pairSMTP = "\" %d32-126 */
				if (++i >= len)
					return SMTP_PARSE_SYNTAX;
				c = (unsigned char)p[i];
			}
			if (c < 0x20 || c > 0x7e)
				return SMTP_PARSE_SYNTAX;
		}
	} else {
		for (i = 0; i < len && p[i] != '@'; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c == '.') {
				if (i == 0 || p[i - 1] == '.')
					return SMTP_PARSE_SYNTAX;
			} else if (!is_atext(c))
				return SMTP_PARSE_SYNTAX;
		}
		if (i == 0 || p[i - 1] == '.')
			return SMTP_PARSE_SYNTAX;
	}
	at = i;
	if (at >= len || p[at] != '@')
		return SMTP_PARSE_SYNTAX;

	/* "@" Domain / address-literal: "a@b@c" fails here, the domain "b@c" */
	dlen = len - at - 1;
	if (dlen > 0 && p[at + 1] == '[') {
		if (!check_literal(p + at + 1, dlen))
			return SMTP_PARSE_SYNTAX;
		path->domain_literal = true;
	} else {
		r = check_hostname(p + at + 1, dlen);
		if (r == SMTP_PARSE_SYNTAX)
			return r;
	}

	/* 4.5.3.1: the limits, once the syntax is known to be right */
	if (at > SMTP_LOCAL_MAX || dlen > SMTP_DOMAIN_MAX || written > SMTP_PATH_MAX ||
	    route != SMTP_PARSE_OK)
		return SMTP_PARSE_TOO_LONG;

	/* written <= 256 with its brackets, so len <= 254 fits addr[] */
	memcpy(path->addr, p, len);
	path->addr[len] = '\0';
	path->addr_len = len;
	path->local_len = at;
	path->domain = path->addr + at + 1;
	path->quoted_local = quoted;
	if (quoted) {
		/* the value the relay check must see: "a@b"@c is a@b at c */
		u = 0;
		for (i = 1; i < at - 1; i++) {
			if (p[i] == '\\')
				i++;
			path->local_unquoted[u++] = p[i];
		}
		path->local_unquoted[u] = '\0';
	} else {
		memcpy(path->local_unquoted, p, at);
		path->local_unquoted[at] = '\0';
	}
	return SMTP_PARSE_OK;
}

/*
 * Mail-parameters / Rcpt-parameters (4.1.2): esmtp-param *(SP esmtp-param),
 * esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"),
 * esmtp-value = 1*(%d33-60 / %d62-126); an empty value after "=" is kept (with
 * has_value) so the session can say which parameter lacks one.
 */
static enum smtp_parse_result
parse_params(const char *p, size_t len, struct smtp_params *params, struct smtp_span *bad)
{
	size_t i = 0, s, e, k, j;

	while (i < len) {
		struct smtp_param *pm;
		if (p[i] == ' ') {
			i++;
			continue;
		}
		s = i;
		while (i < len && p[i] != ' ')
			i++;
		e = i;
		bad->p = p + s;
		bad->len = e - s;
		if (params->n == SMTP_PARAMS_MAX)
			return SMTP_PARSE_SYNTAX;
		pm = &params->p[params->n];
		memset(pm, 0, sizeof(*pm));

		for (k = s; k < e && p[k] != '='; k++)
			;
		if (k == s || !is_alnum((unsigned char)p[s]))
			return SMTP_PARSE_SYNTAX;
		/*
		 * A long keyword is kept cut in key[] (it matches no keyword we know, so the
		 * session answers 504 with the whole of it from key_raw), not refused as syntax.
		 */
		for (j = s; j < k; j++) {
			unsigned char c = (unsigned char)p[j];
			if (!is_alnum(c) && c != '-')
				return SMTP_PARSE_SYNTAX;
			if (j - s < sizeof(pm->key) - 1)
				pm->key[j - s] = (char)to_upper(c);
		}
		pm->key_raw.p = p + s;
		pm->key_raw.len = k - s;
		if (k < e) {
			pm->has_value = true;
			pm->value.p = p + k + 1;
			pm->value.len = e - k - 1;
			for (j = k + 1; j < e; j++) {
				unsigned char c = (unsigned char)p[j];
				if (c < 33 || c > 126 || c == '=')
					return SMTP_PARSE_SYNTAX;
			}
		} else {
			pm->value.p = p + e;
			pm->value.len = 0;
		}
		/* a repeated keyword: which one would count is anyone's guess */
		for (j = 0; j < params->n; j++)
			if (params->p[j].key_raw.len == pm->key_raw.len &&
			    strncasecmp(params->p[j].key_raw.p, pm->key_raw.p, pm->key_raw.len) == 0)
				return SMTP_PARSE_SYNTAX;
		params->n++;
	}
	return SMTP_PARSE_OK;
}

enum smtp_parse_result
smtp_parse_path_arg(const struct smtp_span *arg, const char *keyword, bool allow_null,
    bool allow_postmaster, struct smtp_path *path, struct smtp_params *params,
    struct smtp_span *bad)
{
	const char *p = arg->p;
	size_t len = arg->len, kl = strlen(keyword), i, start, end, written;
	const char *in;
	size_t inlen;
	enum smtp_parse_result r;

	memset(path, 0, sizeof(*path));
	path->domain = path->addr;
	params->n = 0;
	bad->p = p;
	bad->len = len;

	/* "FROM:" / "TO:", any case; RFC 5321 has no space before the colon */
	if (len <= kl || !span_ieq(p, kl, keyword) || p[kl] != ':')
		return SMTP_PARSE_SYNTAX;
	i = kl + 1;
	/* not RFC 5321, but people and clients type "MAIL FROM: <a@b>" */
	while (i < len && p[i] == ' ')
		i++;
	if (i == len)
		return SMTP_PARSE_SYNTAX;
	start = i;

	if (p[start] == '<') {
		bool inq = false;
		/* the closing '>' is the first outside a quoted string: <"a>b"@c> */
		for (end = start + 1; end < len; end++) {
			if (inq) {
				if (p[end] == '\\')
					end++;
				else if (p[end] == '"')
					inq = false;
			} else if (p[end] == '"')
				inq = true;
			else if (p[end] == '>')
				break;
		}
		if (end >= len) {
			/* no '>': blame the path as far as the next space */
			for (end = start; end < len && p[end] != ' '; end++)
				;
			bad->p = p + start;
			bad->len = end - start;
			return SMTP_PARSE_SYNTAX;
		}
		end++;
		if (end < len && p[end] != ' ') {
			/* "<a@b>>" or "<a@b>SIZE=1": the path runs into junk */
			while (end < len && p[end] != ' ')
				end++;
			bad->p = p + start;
			bad->len = end - start;
			return SMTP_PARSE_SYNTAX;
		}
		in = p + start + 1;
		inlen = end - start - 2;
		written = end - start;
	} else {
		/* a bare address: not RFC 5321, but common; it ends at a space */
		for (end = start; end < len && p[end] != ' '; end++)
			;
		in = p + start;
		inlen = end - start;
		written = inlen + 2;
	}

	bad->p = p + start;
	bad->len = end - start;
	r = parse_path(in, inlen, written, allow_null, allow_postmaster, path);
	if (r == SMTP_PARSE_OK)
		r = parse_params(p + end, len - end, params, bad);
	if (r != SMTP_PARSE_OK) {
		/* never half a parse: on error the path and params are empty */
		memset(path, 0, sizeof(*path));
		path->domain = path->addr;
		params->n = 0;
		return r;
	}
	bad->p = p;
	bad->len = 0;
	return SMTP_PARSE_OK;
}

/*
 * HELO/EHLO (4.1.1.1) want a Domain or an address-literal, but real clients
 * send "localhost", "my_pc" or a name with a trailing dot. Taken: an address
 * literal that inet_pton() accepts, or 1..255 octets of [A-Za-z0-9-_.] with at
 * least one letter or digit. Never a space, a control character or 8-bit.
 */
bool
smtp_valid_helo(const char *s, size_t len)
{
	bool alnum = false;
	size_t i;

	if (len == 0 || len > SMTP_DOMAIN_MAX)
		return false;
	if (s[0] == '[')
		return check_literal(s, len);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_alnum(c))
			alnum = true;
		else if (c != '-' && c != '_' && c != '.')
			return false;
	}
	return alnum;
}

int
smtp_parse_size_value(const struct smtp_span *v, uint64_t *out)
{
	uint64_t n = 0;
	size_t i;

	if (v == NULL || v->len == 0)
		return -1;
	for (i = 0; i < v->len; i++) {
		unsigned char c = (unsigned char)v->p[i];
		unsigned d;
		if (!is_digit(c))
			return -1;
		d = c - '0';
		/* saturate: SIZE=99999999999999999999 is "too big", never a small wrap */
		if (n > (UINT64_MAX - d) / 10)
			n = UINT64_MAX;
		else
			n = n * 10 + d;
	}
	*out = n;
	return 0;
}

static int
xdigit_upper(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * RFC 3461 4: xtext = *( xchar / hexchar ), xchar = %d33-42 / %d44-60 / %d62-126,
 * hexchar = "+" 2(%x30-39 / %x41-46): upper-case hex only. ENVID and ORCPT
 * decode to printable US-ASCII (4.2, 4.4), so a control byte or 8-bit byte
 * after decoding is refused: it must never reach a header or the envelope.
 */
int
smtp_xtext_decode(const struct smtp_span *in, char *out, size_t cap)
{
	size_t i = 0, o = 0;

	if (cap == 0 || (in->len > 0 && in->p == NULL))
		return -1;
	while (i < in->len) {
		unsigned char c = (unsigned char)in->p[i];
		if (c == '+') {
			int hi, lo;
			if (in->len - i < 3)
				return -1;
			hi = xdigit_upper((unsigned char)in->p[i + 1]);
			lo = xdigit_upper((unsigned char)in->p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			i += 3;
		} else if (c < 33 || c > 126 || c == '=')
			return -1;
		else
			i++;
		if (c < 0x20 || c >= 0x7f)
			return -1;
		if (o + 1 >= cap || o >= INT_MAX)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

char *
smtp_echo(const char *p, size_t len, char out[65])
{
	size_t i, n = len < 64 ? len : 64;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		out[i] = c >= 0x20 && c <= 0x7e ? (char)c : '?';
	}
	out[n] = '\0';
	return out;
}

/* ---- SASL for AUTH (RFC 4954, RFC 4616) ---- */

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * CVE-2018-6789 (Exim): the decoder sized its buffer as 3 * (len / 4) and then
 * wrote one octet more for an input of 4n+3 characters. Here the length is
 * checked first (padding is mandatory, so only 4n is valid), and every octet
 * is checked against cap just before it is written, whatever the input says.
 * The pad bits must be zero so that one payload has one encoding.
 */
int
smtp_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	size_t i, o = 0;

	if (len % 4 != 0 || len / 4 > INT_MAX / 3 || (len > 0 && in == NULL))
		return -1;
	for (i = 0; i < len; i += 4) {
		const unsigned char *q = (const unsigned char *)in + i;
		bool last = i + 4 == len;
		int a = b64_value(q[0]), b = b64_value(q[1]), c, d;
		unsigned char v[3];
		size_t n;

		if (a < 0 || b < 0)
			return -1;
		if (last && q[2] == '=') {
			if (q[3] != '=' || (b & 0x0f) != 0)
				return -1;
			v[0] = (unsigned char)(a << 2 | b >> 4);
			n = 1;
		} else if (last && q[3] == '=') {
			if ((c = b64_value(q[2])) < 0 || (c & 0x03) != 0)
				return -1;
			v[0] = (unsigned char)(a << 2 | b >> 4);
			v[1] = (unsigned char)((b & 0x0f) << 4 | c >> 2);
			n = 2;
		} else {
			if ((c = b64_value(q[2])) < 0 || (d = b64_value(q[3])) < 0)
				return -1;
			v[0] = (unsigned char)(a << 2 | b >> 4);
			v[1] = (unsigned char)((b & 0x0f) << 4 | c >> 2);
			v[2] = (unsigned char)((c & 0x03) << 6 | d);
			n = 3;
		}
		if (n > cap - o)
			return -1;
		memcpy(out + o, v, n);
		o += n;
	}
	return (int)o;
}

int
smtp_base64_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	if (len > (size_t)(INT_MAX - 4) / 4 * 3 || cap < (len + 2) / 3 * 4 + 1)
		return -1;
	for (i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		size_t rest = len - i;

		if (rest > 1)
			v |= (unsigned)in[i + 1] << 8;
		if (rest > 2)
			v |= in[i + 2];
		out[o++] = alphabet[v >> 18 & 0x3f];
		out[o++] = alphabet[v >> 12 & 0x3f];
		out[o++] = rest > 1 ? alphabet[v >> 6 & 0x3f] : '=';
		out[o++] = rest > 2 ? alphabet[v & 0x3f] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

int
smtp_sasl_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	if (len > SMTP_SASL_LINE_MAX)
		return -1;
	/* RFC 4954 4: "*" cancels the exchange, "=" is a zero-length initial response */
	if (len == 1 && in[0] == '*')
		return SMTP_SASL_CANCEL;
	if (len == 1 && in[0] == '=')
		return 0;
	return smtp_base64_decode(in, len, out, cap);
}

/*
 * RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. A third NUL
 * would end a field early and let the rest of a password be ignored, so the
 * count is exact; nothing is copied until the whole message is known good.
 */
int
smtp_sasl_plain(const unsigned char *buf, size_t len, char *authzid, size_t azcap,
    char *user, size_t ucap, char *pass, size_t pcap)
{
	const unsigned char *n1, *n2;
	size_t azlen, ulen, plen;

	if (azcap == 0 || ucap == 0 || pcap == 0)
		return -1;
	authzid[0] = user[0] = pass[0] = '\0';
	if (len == 0 || buf == NULL || (n1 = memchr(buf, '\0', len)) == NULL)
		return -1;
	azlen = (size_t)(n1 - buf);
	if ((n2 = memchr(n1 + 1, '\0', len - azlen - 1)) == NULL)
		return -1;
	ulen = (size_t)(n2 - n1 - 1);
	plen = len - azlen - 1 - ulen - 1;
	if (memchr(n2 + 1, '\0', plen) != NULL)
		return -1;
	if (ulen == 0 || plen == 0 || azlen >= azcap || ulen >= ucap || plen >= pcap)
		return -1;
	memcpy(authzid, buf, azlen);
	authzid[azlen] = '\0';
	memcpy(user, n1 + 1, ulen);
	user[ulen] = '\0';
	memcpy(pass, n2 + 1, plen);
	pass[plen] = '\0';
	return 0;
}
