/*
 * ipmm_syntax.h: pure parsers for the mail merge commands (IronPort Mail Merge):
 * the arguments of XDFN (variables for the next recipient), the value of the
 * reserved *PARTS variable, and the argument of XPRT.
 *
 * Like smtp_syntax.h: no I/O, no allocation, no global state; input may hold
 * any byte and is never read past len. Each result names the reply of the
 * reference it stands for, so the session only maps it to the reply table.
 */
#ifndef MAILGATE_IPMM_SYNTAX_H
#define MAILGATE_IPMM_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IPMM_XDFN_LINE_MAX	4096	/* an XDFN line, CRLF included */
#define IPMM_NAME_MAX		64	/* a variable name, '*' included */
#define IPMM_PART_MAX		10000	/* the highest part number */
#define IPMM_VARS_MAX		1024	/* pairs on one XDFN line */

/* one KEY=VALUE pair: key points into the line, val into the caller's buffer */
struct ipmm_var {
	const char *key;
	size_t key_len;
	const char *val;
	size_t val_len;
};

enum ipmm_xdfn_result {
	IPMM_XDFN_OK = 0,
	IPMM_XDFN_SYNTAX,		/* 504 Invalid XDFN syntax */
	IPMM_XDFN_NO_VALUE,		/* 504 No variable value specified */
	IPMM_XDFN_RESERVED,		/* 504 Reserved variable name */
	IPMM_XDFN_PARTS,		/* 504 Syntax error in *parts syntax */
	IPMM_XDFN_NUL,			/* 504 XDFN command must not contain NULL characters */
};

/*
 * The argument of XDFN: pairs KEY=VALUE separated by spaces; a pair may be
 * wrapped in <...> or [...]; a value may be "quoted" (then it may hold spaces);
 * inside a value '/' takes the next octet literally. A key is 1..IPMM_NAME_MAX
 * letters, digits, '_', '-' or '.', or one of those after a leading '*'; of the
 * '*' names only *PARTS and *DK may be defined (any case), and *PARTS must pass
 * ipmm_parse_parts(). Values may hold any octet but NUL, CR and LF.
 * buf must hold len octets: the unescaped values are written there. At most
 * cap pairs (more is a syntax error); the first error from the left wins, and
 * a NUL anywhere in the line wins over everything.
 */
enum ipmm_xdfn_result ipmm_parse_xdfn(const char *arg, size_t len, char *buf,
    struct ipmm_var *vars, size_t cap, size_t *n);

/* a '*' name the client may define: *PARTS or *DK, any case */
bool ipmm_is_parts_name(const char *key, size_t len);

/*
 * *PARTS: part numbers 1..IPMM_PART_MAX separated by commas, nothing else (no
 * spaces, no empty element). Up to cap numbers go to out (more is an error).
 * Returns 0, or -1 on any other input.
 */
int ipmm_parse_parts(const char *v, size_t len, uint32_t *out, size_t cap, size_t *n);

enum ipmm_xprt_result {
	IPMM_XPRT_OK = 0,
	IPMM_XPRT_NUMBER,		/* 504 Invalid part number */
	IPMM_XPRT_OPTION,		/* 501 Unknown option <bad> */
};

/*
 * The argument of XPRT: "n" or "n LAST" (LAST in any case), n a part number
 * 1..IPMM_PART_MAX. On IPMM_XPRT_OPTION, *bad is the word that is not LAST.
 */
enum ipmm_xprt_result ipmm_parse_xprt(const char *arg, size_t len, uint32_t *part, bool *last,
    const char **bad, size_t *bad_len);

/* a byte that may appear in a variable name (after an optional leading '*') */
bool ipmm_name_char(unsigned char c);

#endif
