/*
 * ipmm_syntax.c: the mail merge parsers (see ipmm_syntax.h). Values come from
 * bulk senders' databases, so they are taken as bytes (8-bit names survive);
 * only NUL, CR and LF are refused, because a value is stored one per line.
 */
#include "ipmm_syntax.h"

#include <string.h>
#include <strings.h>

bool
ipmm_name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '_' || c == '-' || c == '.';
}

static bool
span_ieq(const char *p, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(p, lit, len) == 0;
}

bool
ipmm_is_parts_name(const char *key, size_t len)
{
	return span_ieq(key, len, "*PARTS");
}

int
ipmm_parse_parts(const char *v, size_t len, uint32_t *out, size_t cap, size_t *n)
{
	size_t i = 0;

	*n = 0;
	if (len == 0)
		return -1;
	for (;;) {
		uint32_t num = 0;
		size_t start = i;

		while (i < len && v[i] >= '0' && v[i] <= '9') {
			num = num * 10 + (uint32_t)(v[i] - '0');
			if (num > IPMM_PART_MAX)
				return -1;
			i++;
		}
		if (i == start || num == 0 || *n == cap)
			return -1;
		out[(*n)++] = num;
		if (i == len)
			return 0;
		if (v[i] != ',')
			return -1;
		i++;
	}
}

/* where a name ends, or 0 if none starts at p */
static size_t
name_len(const char *p, size_t len)
{
	size_t i = 0;

	if (i < len && p[i] == '*')
		i++;
	while (i < len && ipmm_name_char((unsigned char)p[i]))
		i++;
	if (i == 0 || (p[0] == '*' && i == 1))
		return 0;
	return i;
}

enum ipmm_xdfn_result
ipmm_parse_xdfn(const char *arg, size_t len, char *buf, struct ipmm_var *vars, size_t cap,
    size_t *n)
{
	size_t i = 0, o = 0;

	*n = 0;
	if (memchr(arg, '\0', len) != NULL)
		return IPMM_XDFN_NUL;
	if (len == 0)
		return IPMM_XDFN_SYNTAX;
	for (;;) {
		char close = 0;
		size_t k, klen;
		struct ipmm_var *v;

		while (i < len && arg[i] == ' ')
			i++;
		if (i == len)
			break;
		if (arg[i] == '<' || arg[i] == '[') {
			close = arg[i] == '<' ? '>' : ']';
			i++;
		}
		k = i;
		klen = name_len(arg + i, len - i);
		if (klen == 0 || klen > IPMM_NAME_MAX)
			return IPMM_XDFN_SYNTAX;
		i += klen;
		if (i == len || arg[i] != '=')
			return IPMM_XDFN_SYNTAX;
		i++;
		if (*n == cap)
			return IPMM_XDFN_SYNTAX;
		v = &vars[*n];
		v->key = arg + k;
		v->key_len = klen;
		v->val = buf + o;
		if (i == len || arg[i] == ' ' || (close && arg[i] == close))
			return IPMM_XDFN_NO_VALUE;
		if (arg[i] == '"') {
			i++;
			for (;;) {
				if (i == len)
					return IPMM_XDFN_SYNTAX;	/* no closing quote */
				if (arg[i] == '"') {
					i++;
					break;
				}
				if (arg[i] == '/' && ++i == len)
					return IPMM_XDFN_SYNTAX;
				if (arg[i] == '\r' || arg[i] == '\n')
					return IPMM_XDFN_SYNTAX;
				buf[o++] = arg[i++];
			}
		} else {
			while (i < len && arg[i] != ' ' && !(close && arg[i] == close)) {
				/* a quote inside a bare value is a client's mistake, not data */
				if (arg[i] == '"')
					return IPMM_XDFN_SYNTAX;
				if (arg[i] == '/' && ++i == len)
					return IPMM_XDFN_SYNTAX;
				if (arg[i] == '\r' || arg[i] == '\n')
					return IPMM_XDFN_SYNTAX;
				buf[o++] = arg[i++];
			}
		}
		if (close) {
			if (i == len || arg[i] != close)
				return IPMM_XDFN_SYNTAX;
			i++;
		}
		if (i < len && arg[i] != ' ')
			return IPMM_XDFN_SYNTAX;
		v->val_len = (size_t)(buf + o - v->val);
		if (arg[k] == '*') {
			if (ipmm_is_parts_name(v->key, klen)) {
				uint32_t parts[IPMM_XDFN_LINE_MAX / 2];
				size_t np;
				if (ipmm_parse_parts(v->val, v->val_len, parts,
				    sizeof(parts) / sizeof(parts[0]), &np) == -1)
					return IPMM_XDFN_PARTS;
			} else if (!span_ieq(v->key, klen, "*DK"))
				return IPMM_XDFN_RESERVED;
		}
		(*n)++;
	}
	return *n == 0 ? IPMM_XDFN_SYNTAX : IPMM_XDFN_OK;
}

enum ipmm_xprt_result
ipmm_parse_xprt(const char *arg, size_t len, uint32_t *part, bool *last, const char **bad,
    size_t *bad_len)
{
	size_t i = 0, w;
	uint32_t num = 0;

	*part = 0;
	*last = false;
	*bad = NULL;
	*bad_len = 0;
	while (i < len && arg[i] >= '0' && arg[i] <= '9') {
		num = num * 10 + (uint32_t)(arg[i] - '0');
		if (num > IPMM_PART_MAX)
			return IPMM_XPRT_NUMBER;
		i++;
	}
	if (i == 0 || num == 0 || (i < len && arg[i] != ' '))
		return IPMM_XPRT_NUMBER;
	*part = num;
	while (i < len && arg[i] == ' ')
		i++;
	if (i == len)
		return IPMM_XPRT_OK;
	for (w = i; w < len && arg[w] != ' '; w++)
		;
	if (!span_ieq(arg + i, w - i, "LAST")) {
		*bad = arg + i;
		*bad_len = w - i;
		return IPMM_XPRT_OPTION;
	}
	*last = true;
	i = w;
	while (i < len && arg[i] == ' ')
		i++;
	if (i < len) {
		for (w = i; w < len && arg[w] != ' '; w++)
			;
		*bad = arg + i;
		*bad_len = w - i;
		return IPMM_XPRT_OPTION;
	}
	return IPMM_XPRT_OK;
}
