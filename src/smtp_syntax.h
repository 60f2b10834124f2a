/*
 * smtp_syntax.h: pure parsers for what an SMTP client sends in a command line.
 *
 * No I/O, no allocation, no global state: every function takes a buffer and a
 * length and writes into caller-owned structs, so each one can be unit-tested
 * and fuzzed on its own. Input may hold any byte (NUL, CR, LF, 8-bit): a parser
 * never reads past len and never trusts a terminator. On a syntax error a parser
 * says which token failed, so the session can echo it (smtp_echo()).
 */
#ifndef MAILGATE_SMTP_SYNTAX_H
#define MAILGATE_SMTP_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1 */
#define SMTP_LOCAL_MAX		64
#define SMTP_DOMAIN_MAX		255
#define SMTP_PATH_MAX		256
#define SMTP_VERB_MAX		16
#define SMTP_PARAMS_MAX		16

/* a piece of the input line: not NUL-terminated */
struct smtp_span {
	const char *p;
	size_t len;
};

/*
 * A command line split into verb and argument. The verb is the run of bytes up
 * to the first space (upper-cased into verb[], cut to SMTP_VERB_MAX - 1: a verb
 * that long is no verb we know). arg is what follows the spaces after it, with
 * trailing spaces removed; arg.len == 0 when there is none.
 * bad_bytes is true when the line holds a NUL, a CR or an LF, or a byte >= 0x80
 * (the line was ended by CRLF, so any of these is a bare one).
 */
struct smtp_cmdline {
	char verb[SMTP_VERB_MAX];
	bool verb_ok;				/* verb is only letters/digits/'-' and short enough */
	struct smtp_span arg;
	bool bad_bytes;
};

void smtp_split_command(const char *line, size_t len, struct smtp_cmdline *out);

/*
 * A reverse-path or forward-path, "<...>" or a bare address.
 * addr is the mailbox as the client wrote it, without angle brackets and without
 * a source route ("@a,@b:" is parsed and dropped, RFC 5321 4.1.1.3 / C).
 * For "<>" null is true and addr is empty. For the RCPT special "<postmaster>"
 * (any case) domain is empty and postmaster is true.
 * local and domain point into addr; a quoted local part is kept quoted in addr,
 * and local_unquoted holds its value with the quoting removed (so "a@b"@c has
 * local_unquoted a@b, which the relay check must see).
 */
struct smtp_path {
	char addr[SMTP_PATH_MAX + 1];
	size_t addr_len;
	bool null;
	bool postmaster;
	bool quoted_local;
	bool domain_literal;			/* [1.2.3.4] or [IPv6:...] */
	size_t local_len;			/* addr[0 .. local_len) */
	const char *domain;			/* into addr, NUL-terminated; "" when none */
	char local_unquoted[SMTP_LOCAL_MAX + 1];
};

struct smtp_param {
	char key[SMTP_VERB_MAX + 16];		/* upper-cased keyword */
	struct smtp_span key_raw;		/* as written, for echoing */
	struct smtp_span value;			/* after '='; has_value false when no '=' */
	bool has_value;
};

struct smtp_params {
	struct smtp_param p[SMTP_PARAMS_MAX];
	size_t n;
};

enum smtp_parse_result {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX,			/* 501 #5.5.2 syntax error <bad> */
	SMTP_PARSE_TOO_LONG,			/* a local part, domain or path past its limit: also 501 */
};

/*
 * "FROM:<path> params" (keyword "FROM") or "TO:<path> params" (keyword "TO").
 * The keyword is case-insensitive; spaces are allowed after the colon. On error
 * *bad is the token that failed (the whole argument when nothing better fits).
 * allow_null: MAIL/XMRG accept "<>"; allow_postmaster: RCPT accepts "<postmaster>".
 * Params are split on spaces into KEY[=VALUE]; a repeated keyword, an empty
 * keyword or more than SMTP_PARAMS_MAX params is a syntax error.
 */
enum smtp_parse_result smtp_parse_path_arg(const struct smtp_span *arg, const char *keyword,
    bool allow_null, bool allow_postmaster, struct smtp_path *path,
    struct smtp_params *params, struct smtp_span *bad);

/* a domain name or address literal as HELO/EHLO give it */
bool smtp_valid_helo(const char *s, size_t len);

/*
 * The value of SIZE=: decimal digits only. Returns 0 and *out (saturated at
 * UINT64_MAX, never wrapped) or -1 when empty, signed or not a number.
 */
int smtp_parse_size_value(const struct smtp_span *v, uint64_t *out);

/*
 * xtext (RFC 3461 4): "+XX" hex escapes. Decodes into out (cap bytes with the
 * NUL); returns the decoded length, or -1 on malformed xtext, on a decoded
 * byte that is a control character (CR, LF, NUL, ...) or on overflow.
 */
int smtp_xtext_decode(const struct smtp_span *in, char *out, size_t cap);

/*
 * A token made safe to echo in a reply: at most 64 bytes, every byte outside
 * 0x20..0x7e replaced by '?'. out must hold 65 bytes. Returns out.
 */
char *smtp_echo(const char *p, size_t len, char out[65]);

/*
 * SASL for AUTH (RFC 4954). A client's AUTH line and each response may be
 * SMTP_SASL_LINE_MAX octets (4): the session's line reader must take that much,
 * and these functions refuse more.
 */
#define SMTP_SASL_LINE_MAX	12288
#define SMTP_SASL_CANCEL	(-2)		/* the client sent "*" */

/*
 * Strict base64 (RFC 4648 4): the standard alphabet, no white space, padding
 * required (so len % 4 == 0), '=' only at the end, pad bits zero. Writes at most
 * cap octets to out (not NUL-terminated: the payload may hold NULs). Returns
 * the decoded length, or -1 on any malformed input or when cap is too small.
 */
int smtp_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/* base64 with padding, NUL-terminated: the length, or -1 when cap is too small */
int smtp_base64_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/*
 * A SASL response as the client sends it: "*" is SMTP_SASL_CANCEL (meaningful
 * only as a reply to a 334 challenge), "=" alone is an empty response (4: how
 * an empty initial response is sent), anything else is smtp_base64_decode().
 * -1 on bad base64 or when longer than SMTP_SASL_LINE_MAX.
 */
int smtp_sasl_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/*
 * A decoded PLAIN message (RFC 4616 2): [authzid] NUL authcid NUL passwd.
 * Exactly two NULs; authcid and passwd not empty; each field is copied
 * NUL-terminated and must fit its buffer (len < cap). Returns 0, or -1 with
 * nothing copied (each buffer holds "").
 */
int smtp_sasl_plain(const unsigned char *buf, size_t len, char *authzid, size_t azcap,
    char *user, size_t ucap, char *pass, size_t pcap);

#endif
