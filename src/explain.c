/*
 * explain.c: what a reply means (see explain.h), and `mailgate explain`.
 *
 * mailgate's own replies are explained only from smtp_reply_table: this file
 * never spells one of their texts. What other servers send is explained from
 * three small tables here: the pairs of code and enhanced code seen every day,
 * the RFC 5321 reply codes, and the RFC 3463 enhanced codes (class, subject,
 * detail). A lookup tries the most specific reading first and stops at the first
 * that finds something, so a whole reply line gets one answer and a bare code
 * gets every entry it can stand for.
 */
#include "explain.h"

#include <ctype.h>
#include <libconfig.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "smtp_reply.h"
#include "util.h"

#define EXPLAIN_TEXT_MAX	1024	/* of a query's text part; the rest is ignored */
#define EXPLAIN_VALUE_MAX	400	/* a shown setting value is cut after this */

/* ---------------------------------------------------------------- other servers */

/* a reply other servers commonly send; words: '|'-separated, lower case */
struct explain_foreign {
	int code;
	const char *enh;
	const char *words;
	const char *why;
	const char *advice;
};

static const struct explain_foreign explain_foreign_table[] = {
	{ 550, "5.1.1", "user unknown|unknown user|no such user|does not exist|"
	    "invalid recipient|recipient not found|no mailbox",
	    "the recipient's mailbox does not exist at that server (user unknown)",
	    "check the address for typos; the person may have left. Do not retry it unchanged" },
	{ 550, "5.1.2", "host unknown|domain not found|no such domain",
	    "the recipient's domain is not one that server knows or serves",
	    "check the domain part of the address and its MX records" },
	{ 550, "5.1.10", "null mx",
	    "the recipient's domain publishes a null MX: it receives no mail at all",
	    "the address cannot receive mail; do not retry" },
	{ 556, "5.1.10", "null mx",
	    "the recipient's domain publishes a null MX: it receives no mail at all",
	    "the address cannot receive mail; do not retry" },
	{ 553, "5.1.8", "sender address rejected|sender domain|domain not found|"
	    "domain does not exist",
	    "the envelope sender's domain does not exist or has no MX or A record, so that "
	    "server will not take mail from it",
	    "send from an address whose domain resolves in DNS" },
	{ 501, "5.1.3", "bad address|address syntax|invalid address",
	    "the address is malformed", "fix the address: local-part@domain, in <...>" },
	{ 550, "5.4.1", "access denied|recipient address rejected",
	    "the recipient is refused by that server's directory check (for example "
	    "Microsoft 365's directory-based edge blocking): unknown there, or the domain "
	    "is not accepted",
	    "check the address; the recipient's administrator must accept the domain or user" },
	{ 450, "4.7.1", "greylist|greylisted|try again later|temporarily rejected|deferred",
	    "greylisting or a policy deferral: the server turns away a first attempt from "
	    "an unknown sender or host, or a rate or reputation check said \"not now\"",
	    "retry later, as every mail queue does; a greylist lets the retry through "
	    "after a few minutes" },
	{ 451, "4.7.1", "greylist|greylisted|try again later|temporarily rejected|deferred",
	    "greylisting or a policy deferral: the server turns away a first attempt from "
	    "an unknown sender or host, or a rate or reputation check said \"not now\"",
	    "retry later, as every mail queue does; a greylist lets the retry through "
	    "after a few minutes" },
	{ 554, "5.7.1", "relay|relaying",
	    "relay access denied: that server does not take mail for the recipient's domain "
	    "from you (it is not that domain's mail exchanger and you did not authenticate)",
	    "send to the MX of the recipient's domain, or authenticate (AUTH) to relay "
	    "through this server" },
	{ 550, "5.7.1", "spam|policy|blocked|blacklist|blocklist|denied|rejected|rbl",
	    "refused by policy: the sender, the sending address or the content was judged "
	    "spam or is blocked",
	    "look up the sending address on the blocklists the reply names, check SPF, DKIM "
	    "and DMARC of the sender's domain and the content; ask the recipient's "
	    "postmaster" },
	{ 554, "5.7.0", NULL,
	    "the transaction is refused for a security or policy reason the server does "
	    "not name",
	    "send the whole reply to the recipient's postmaster" },
	{ 550, "5.7.23", "spf",
	    "SPF validation failed: the sending host is not authorised by the SPF record "
	    "of the envelope sender's domain",
	    "add the sending host to the SPF record of the sender's domain" },
	{ 550, "5.7.25", "reverse dns|ptr|rdns",
	    "reverse DNS validation failed: the sending address has no PTR record, or its "
	    "name does not resolve back to it",
	    "give the sending address a PTR record whose name resolves to that address" },
	{ 550, "5.7.26", "dmarc|unauthenticated",
	    "several authentication checks failed (DMARC): the message is neither SPF- nor "
	    "DKIM-aligned with its From: domain",
	    "sign with DKIM and/or fix SPF for the From: domain" },
	{ 421, "4.7.0", "rate|too many|tls|try again later|temporarily",
	    "the server defers you: rate limiting (too many connections or messages), a "
	    "poor reputation, or it requires TLS",
	    "slow down and retry later; use STARTTLS if the server offers it" },
	{ 454, "4.7.0", "tls not available|temporary authentication failure",
	    "TLS or authentication is temporarily not available at that server",
	    "retry later, or without TLS/AUTH if the sender allows it" },
	{ 530, "5.7.0", "authentication required|must authenticate|auth",
	    "the server requires authentication before it takes mail (a submission server)",
	    "authenticate with AUTH, usually after STARTTLS, before MAIL" },
	{ 535, "5.7.8", "authentication|credentials|password",
	    "authentication failed: wrong user name or password",
	    "check the credentials; repeated failures get the client blocked" },
	{ 552, "5.2.2", "mailbox full|quota|insufficient storage|over quota",
	    "the recipient's mailbox is full (over its quota)",
	    "retry later or reach the recipient another way; they must make room" },
	{ 452, "4.2.2", "mailbox full|quota|insufficient storage|over quota",
	    "the recipient's mailbox is full (over its quota) for now",
	    "retry later; a mail queue does this by itself" },
	{ 552, "5.3.4", "too big|too large|size",
	    "the message is larger than that server accepts",
	    "send a smaller message (fewer or smaller attachments)" },
	{ 451, "4.3.0", "local error|temporary|try again",
	    "a temporary error inside that server (disk, queue, a content filter or a "
	    "lookup failed)",
	    "retry later; a mail queue does this by itself" },
	{ 452, "4.3.1", "insufficient system storage|queue full",
	    "that server is short of storage or its queue is full",
	    "retry later" },
	{ 451, "4.4.3", "dns|lookup|directory",
	    "a lookup (DNS or a directory) failed at that server for now",
	    "retry later; if it persists, check the DNS of the domains involved" },
	{ 452, "4.5.3", "too many recipients",
	    "more recipients in one message than that server accepts; it took the ones "
	    "before",
	    "send the remaining recipients in another message (a mail queue does this "
	    "by itself)" },
	{ 554, "5.4.6", "loop|hop",
	    "a routing loop: the message has passed through too many servers",
	    "fix the forwarding or MX records that send the message round in a circle" },
	{ 503, "5.5.1", "bad sequence|sequence",
	    "bad sequence of commands: e.g. RCPT before MAIL, DATA before an accepted RCPT, "
	    "or MAIL before EHLO",
	    "fix the client's order of commands" },
	{ 500, "5.5.2", "syntax error|unrecognized|not recognized",
	    "the command was not understood", "fix the client" },
	{ 502, "5.5.1", "not implemented",
	    "the server does not implement that command",
	    "use only the commands and extensions the server advertises in EHLO" },
	{ 555, "5.5.4", "parameter|not recognized|not implemented",
	    "a MAIL or RCPT parameter the server does not recognise",
	    "send only the parameters the server advertised in EHLO" },
	{ 521, "5.3.2", "does not accept mail",
	    "that host does not accept mail at all (RFC 7504)",
	    "do not send to this host; check the MX records of the domain" },
};

/* a lookup's matches: some of mailgate's, the foreign ones, one of the RFCs' */
_Static_assert(ARRAY_LEN(explain_foreign_table) + 1 <= EXPLAIN_MAX - RPL__COUNT,
    "EXPLAIN_MAX too small");

/* RFC 5321 4.2 (plus RFC 3207, 4954, 7504): what each reply code says */
struct explain_code {
	int code;
	const char *what;
};

static const struct explain_code explain_code_table[] = {
	{ 211, "system status, or a system help reply" },
	{ 214, "a help message" },
	{ 220, "the server is ready: its greeting (banner), or the go-ahead for the TLS "
	    "handshake after STARTTLS" },
	{ 221, "the server is closing the connection, as asked by QUIT" },
	{ 235, "authentication succeeded" },
	{ 250, "the requested action is done" },
	{ 251, "the user is not local; the server will forward the message" },
	{ 252, "the server cannot verify the user but will accept the message and try "
	    "to deliver it" },
	{ 334, "an AUTH challenge: the server waits for the next step of authentication" },
	{ 354, "the server waits for the message text, ended by <CRLF>.<CRLF>" },
	{ 421, "the service is not available and the server closes the connection "
	    "(overloaded, limited, shutting down)" },
	{ 432, "a password transition is needed" },
	{ 450, "the mailbox is unavailable for now (busy, or temporarily blocked by policy)" },
	{ 451, "the action was aborted by a local error in processing" },
	{ 452, "the action was not taken: insufficient system storage, or too many "
	    "recipients" },
	{ 454, "TLS or authentication is temporarily not available" },
	{ 455, "the server cannot accommodate the parameters now" },
	{ 500, "syntax error: the command was not recognised (or the line was too long)" },
	{ 501, "syntax error in the command's parameters or arguments" },
	{ 502, "the command is not implemented" },
	{ 503, "bad sequence of commands" },
	{ 504, "a command parameter is not implemented" },
	{ 521, "this host does not accept mail" },
	{ 530, "authentication (or TLS) is required first" },
	{ 534, "the authentication mechanism is too weak" },
	{ 535, "authentication credentials invalid" },
	{ 538, "encryption is required for the requested authentication mechanism" },
	{ 550, "the action was not taken: the mailbox is unavailable (not found, no access, "
	    "or refused by policy)" },
	{ 551, "the user is not local" },
	{ 552, "the action was aborted: exceeded storage allocation (the message is too big "
	    "or the mailbox full)" },
	{ 553, "the mailbox name is not allowed (a bad address)" },
	{ 554, "the transaction failed, or, in the greeting, there is no SMTP service for "
	    "this client here" },
	{ 555, "MAIL FROM or RCPT TO parameters not recognised or not implemented" },
	{ 556, "the domain does not accept mail" },
};

/* RFC 3463 (with RFC 4954, 5248, 7372, 7505): subject and detail of X.s.d */
static const char *const explain_subjects[] = {
	"other or undefined status", "addressing", "mailbox", "mail system",
	"network and routing", "mail delivery protocol", "message content or media",
	"security or policy",
};

struct explain_detail {
	int subject, detail;
	const char *what;
};

static const struct explain_detail explain_detail_table[] = {
	{ 0, 0, "other undefined status" },
	{ 1, 0, "other address status" },
	{ 1, 1, "bad destination mailbox address" },
	{ 1, 2, "bad destination system address" },
	{ 1, 3, "bad destination mailbox address syntax" },
	{ 1, 4, "destination mailbox address ambiguous" },
	{ 1, 5, "destination address valid" },
	{ 1, 6, "destination mailbox has moved, no forwarding address" },
	{ 1, 7, "bad sender's mailbox address syntax" },
	{ 1, 8, "bad sender's system address" },
	{ 1, 10, "recipient address has null MX" },
	{ 2, 0, "other or undefined mailbox status" },
	{ 2, 1, "mailbox disabled, not accepting messages" },
	{ 2, 2, "mailbox full" },
	{ 2, 3, "message length exceeds administrative limit" },
	{ 2, 4, "mailing list expansion problem" },
	{ 3, 0, "other or undefined mail system status" },
	{ 3, 1, "mail system full" },
	{ 3, 2, "system not accepting network messages" },
	{ 3, 3, "system not capable of selected features" },
	{ 3, 4, "message too big for system" },
	{ 3, 5, "system incorrectly configured" },
	{ 4, 0, "other or undefined network or routing status" },
	{ 4, 1, "no answer from host" },
	{ 4, 2, "bad connection" },
	{ 4, 3, "directory server failure" },
	{ 4, 4, "unable to route" },
	{ 4, 5, "mail system congestion" },
	{ 4, 6, "routing loop detected" },
	{ 4, 7, "delivery time expired" },
	{ 5, 0, "other or undefined protocol status" },
	{ 5, 1, "invalid command" },
	{ 5, 2, "syntax error" },
	{ 5, 3, "too many recipients" },
	{ 5, 4, "invalid command arguments" },
	{ 5, 5, "wrong protocol version" },
	{ 5, 6, "authentication exchange line is too long" },
	{ 6, 0, "other or undefined media error" },
	{ 6, 1, "media not supported" },
	{ 6, 2, "conversion required and prohibited" },
	{ 6, 3, "conversion required but not supported" },
	{ 6, 4, "conversion with loss performed" },
	{ 6, 5, "conversion failed" },
	{ 7, 0, "other or undefined security status" },
	{ 7, 1, "delivery not authorized, message refused" },
	{ 7, 2, "mailing list expansion prohibited" },
	{ 7, 3, "security conversion required but not possible" },
	{ 7, 4, "security features not supported" },
	{ 7, 5, "cryptographic failure" },
	{ 7, 6, "cryptographic algorithm not supported" },
	{ 7, 7, "message integrity failure" },
	{ 7, 8, "authentication credentials invalid" },
	{ 7, 9, "authentication mechanism is too weak" },
	{ 7, 10, "encryption needed" },
	{ 7, 11, "encryption required for requested authentication mechanism" },
	{ 7, 12, "a password transition is needed" },
	{ 7, 13, "user account disabled" },
	{ 7, 14, "trust relationship required" },
	{ 7, 20, "no passing DKIM signature found" },
	{ 7, 21, "no acceptable DKIM signature found" },
	{ 7, 22, "no valid author-matched DKIM signature found" },
	{ 7, 23, "SPF validation failed" },
	{ 7, 24, "SPF validation error" },
	{ 7, 25, "reverse DNS validation failed" },
	{ 7, 26, "multiple authentication checks failed" },
	{ 7, 27, "sender address has null MX" },
};

static const char *
explain_class_advice(int cls)
{
	switch (cls) {
	case 2:
		return "nothing: the command succeeded";
	case 3:
		return "go on: the server waits for the rest (the message after 354, the next "
		    "AUTH step after 334)";
	case 4:
		return "retry later: the condition is temporary, and a mail queue retries by "
		    "itself";
	default:
		return "do not retry unchanged: fix what the reply names, or ask the "
		    "recipient's postmaster";
	}
}

/* ---------------------------------------------------------------- the query */

struct explain_query {
	int code;			/* 0 = none */
	char enh[16];			/* "4.5.3" without '#'; "" = none */
	bool hash;			/* written "#4.5.3": mailgate's style */
	char text[EXPLAIN_TEXT_MAX];	/* the rest, trimmed; "" = none */
};

/*
 * An enhanced code at p: "[#]c.s.d" with c one of 2, 4, 5, s and d of 1-3 digits
 * or 'x' (the reference's literal "#4.x.2"), then the end or a space. Returns the
 * bytes used, 0 if there is none.
 */
static size_t
explain_parse_enh(const char *p, char *enh, size_t cap, bool *hash)
{
	size_t i = 0, start;

	*hash = p[0] == '#';
	if (*hash)
		i++;
	start = i;
	if (p[i] != '2' && p[i] != '4' && p[i] != '5')
		return 0;
	i++;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;

		if (p[i++] != '.')
			return 0;
		if (p[i] == 'x' || p[i] == 'X') {
			i++;
			continue;
		}
		while (n < 3 && isdigit((unsigned char)p[i])) {
			i++;
			n++;
		}
		if (n == 0)
			return 0;
	}
	if (p[i] != '\0' && !isspace((unsigned char)p[i]))
		return 0;
	if (i - start >= cap)
		return 0;
	for (size_t k = start; k < i; k++)
		*enh++ = (char)tolower((unsigned char)p[k]);
	*enh = '\0';
	return i;
}

static const char *
explain_skip_space(const char *p)
{
	while (isspace((unsigned char)*p))
		p++;
	return p;
}

static void
explain_parse(const char *s, struct explain_query *q)
{
	const char *p = explain_skip_space(s);
	size_t n;

	memset(q, 0, sizeof(*q));
	if (p[0] >= '2' && p[0] <= '5' && isdigit((unsigned char)p[1]) &&
	    isdigit((unsigned char)p[2]) &&
	    (p[3] == '\0' || p[3] == '-' || isspace((unsigned char)p[3]))) {
		q->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		p += p[3] == '-' ? 4 : 3;
		p = explain_skip_space(p);
	}
	if ((n = explain_parse_enh(p, q->enh, sizeof(q->enh), &q->hash)) > 0)
		p = explain_skip_space(p + n);
	else
		q->hash = false;
	util_strlcpy(q->text, p, sizeof(q->text));
	n = strlen(q->text);
	while (n > 0 && isspace((unsigned char)q->text[n - 1]))
		q->text[--n] = '\0';
}

/* one component of an enhanced code: a number, or -1 for 'x' */
static const char *
explain_enh_part(const char *p, int *v)
{
	if (*p == 'x' || *p == 'X') {
		*v = -1;
		return p + 1;
	}
	*v = 0;
	for (; isdigit((unsigned char)*p); p++)
		if (*v < 10000)			/* no code has that many digits */
			*v = *v * 10 + (*p - '0');
	return p;
}

/* "5.7.1" -> 5, 7, 1; false when it is not one */
static bool
explain_enh_split(const char *enh, int v[3])
{
	const char *p = enh;

	for (int i = 0; i < 3; i++) {
		if (i > 0 && *p++ != '.')
			return false;
		if (!isdigit((unsigned char)*p) && *p != 'x' && *p != 'X')
			return false;
		p = explain_enh_part(p, &v[i]);
	}
	return *p == '\0';
}

/* equal, an 'x' on either side matching any number */
static bool
explain_enh_eq(const char *a, const char *b)
{
	int x[3], y[3];

	if (!explain_enh_split(a, x) || !explain_enh_split(b, y))
		return false;
	for (int i = 0; i < 3; i++)
		if (x[i] != y[i] && x[i] != -1 && y[i] != -1)
			return false;
	return true;
}

/* ---------------------------------------------------------------- mailgate's table */

/* a table text split into its "#c.s.d" (without '#') and the words after it */
static const char *
explain_split_text(const char *text, char *enh, size_t cap)
{
	bool hash;
	size_t n;

	enh[0] = '\0';
	if (text[0] != '#' || (n = explain_parse_enh(text, enh, cap, &hash)) == 0) {
		enh[0] = '\0';
		return text;
	}
	return explain_skip_space(text + n);
}

enum explain_tier {
	EXPLAIN_TIER_NONE,
	EXPLAIN_TIER_EXACT,		/* the whole text, the placeholder standing for anything */
	EXPLAIN_TIER_CONTAINS,		/* the entry's fixed text appears in the query */
	EXPLAIN_TIER_FRAGMENT,		/* the query is a piece of the entry's text */
	EXPLAIN_TIER_WILDCARD,		/* the entry is nothing but a placeholder */
};

/* how the text of a query matches an entry's words; *score: fixed text length */
static enum explain_tier
explain_match_text(const char *words, const char *q, size_t *score)
{
	char pre[256], post[256], flat[512];
	const char *pct = strstr(words, "%s"), *s;
	size_t a, b, ql = strlen(q);

	if (pct == NULL) {
		util_strlcpy(pre, words, sizeof(pre));
		post[0] = '\0';
	} else {
		a = (size_t)(pct - words);
		if (a >= sizeof(pre))
			a = sizeof(pre) - 1;
		memcpy(pre, words, a);
		pre[a] = '\0';
		util_strlcpy(post, explain_skip_space(pct + 2), sizeof(post));
	}
	/* the placeholder's own spaces belong to the argument (an empty one is cut) */
	a = strlen(pre);
	while (a > 0 && pre[a - 1] == ' ')
		pre[--a] = '\0';
	b = strlen(post);
	*score = a + b;
	if (a + b == 0)
		return EXPLAIN_TIER_WILDCARD;
	if (pct == NULL ? strcasecmp(q, pre) == 0 :
	    ql >= a + b && strncasecmp(q, pre, a) == 0 && strcasecmp(q + ql - b, post) == 0) {
		/* "250 OK" (mail merge) and "250 ok": the one in the same case first */
		if (pct == NULL ? strcmp(q, pre) == 0 :
		    strncmp(q, pre, a) == 0 && strcmp(q + ql - b, post) == 0)
			(*score)++;
		return EXPLAIN_TIER_EXACT;
	}
	if (a > 0 && (s = strcasestr(q, pre)) != NULL) {
		if (b == 0 || strcasestr(s + a, post) != NULL)
			return EXPLAIN_TIER_CONTAINS;
	} else if (a == 0 && strcasestr(q, post) != NULL)
		return EXPLAIN_TIER_CONTAINS;
	/* "ignoring %s placeholders": the entry's words with the placeholder left out */
	if (pct != NULL)
		snprintf(flat, sizeof(flat), "%.*s%s", (int)(pct - words), words, pct + 2);
	else
		util_strlcpy(flat, words, sizeof(flat));
	if (strcasestr(flat, q) != NULL)
		return EXPLAIN_TIER_FRAGMENT;
	return EXPLAIN_TIER_NONE;
}

struct explain_acc {
	struct explain_match *out;
	size_t cap, n;
};

static void
explain_add(struct explain_acc *acc, const struct explain_match *m)
{
	if (acc->n < acc->cap)
		acc->out[acc->n] = *m;
	acc->n++;
}

static void
explain_add_mailgate(struct explain_acc *acc, const struct smtp_reply_def *d)
{
	struct explain_match m;

	memset(&m, 0, sizeof(m));
	m.kind = EXPLAIN_MAILGATE;
	m.reply = d;
	m.code = d->code;
	explain_split_text(d->text, m.enh, sizeof(m.enh));
	m.why = d->why;
	m.setting = d->setting;
	m.advice = d->advice != NULL ? d->advice : explain_class_advice(d->code / 100);
	explain_add(acc, &m);
}

/* the query's code and enhanced code allow this entry */
static bool
explain_mailgate_fits(const struct explain_query *q, const struct smtp_reply_def *d,
    const char **words)
{
	char enh[16];

	*words = explain_split_text(d->text, enh, sizeof(enh));
	if (q->code != 0 && q->code != d->code)
		return false;
	if (q->enh[0] != '\0' && (enh[0] == '\0' || !explain_enh_eq(q->enh, enh)))
		return false;
	return true;
}

/* entries whose words match the query's text: only the best tier, the best score */
static void
explain_mailgate_by_text(const struct explain_query *q, struct explain_acc *acc)
{
	enum explain_tier tier[RPL__COUNT], best = EXPLAIN_TIER_NONE;
	size_t score[RPL__COUNT], top = 0;
	const char *words;

	for (int i = 0; i < RPL__COUNT; i++) {
		const struct smtp_reply_def *d = &smtp_reply_table[i];

		tier[i] = EXPLAIN_TIER_NONE;
		score[i] = 0;
		if (!explain_mailgate_fits(q, d, &words))
			continue;
		tier[i] = explain_match_text(words, q->text, &score[i]);
		if (tier[i] == EXPLAIN_TIER_WILDCARD)
			tier[i] = EXPLAIN_TIER_NONE;	/* only once nothing else knows it */
		if (tier[i] != EXPLAIN_TIER_NONE && (best == EXPLAIN_TIER_NONE || tier[i] < best)) {
			best = tier[i];
			top = 0;
		}
		if (tier[i] == best && score[i] > top)
			top = score[i];
	}
	if (best == EXPLAIN_TIER_NONE)
		return;
	/* the best score first (an exact match in the same case), then the rest of the tier */
	for (int i = 0; i < RPL__COUNT; i++)
		if (tier[i] == best && score[i] == top)
			explain_add_mailgate(acc, &smtp_reply_table[i]);
	for (int i = 0; i < RPL__COUNT; i++)
		if (tier[i] == best && best != EXPLAIN_TIER_CONTAINS && score[i] != top)
			explain_add_mailgate(acc, &smtp_reply_table[i]);
}

/* entries that are all placeholder ("250 <host>", the policy's banner and reject) */
static void
explain_mailgate_wildcards(const struct explain_query *q, struct explain_acc *acc)
{
	const char *words;
	size_t score;

	for (int i = 0; i < RPL__COUNT; i++) {
		const struct smtp_reply_def *d = &smtp_reply_table[i];

		if (explain_mailgate_fits(q, d, &words) &&
		    explain_match_text(words, "", &score) == EXPLAIN_TIER_WILDCARD)
			explain_add_mailgate(acc, d);
	}
}

static void
explain_mailgate_by_code(const struct explain_query *q, struct explain_acc *acc)
{
	const char *words;

	for (int i = 0; i < RPL__COUNT; i++)
		if (explain_mailgate_fits(q, &smtp_reply_table[i], &words))
			explain_add_mailgate(acc, &smtp_reply_table[i]);
}

/* ---------------------------------------------------------------- other servers */

static bool
explain_has_word(const char *words, const char *text)
{
	char w[64];

	while (words != NULL && *words != '\0') {
		const char *bar = strchr(words, '|');
		size_t n = bar != NULL ? (size_t)(bar - words) : strlen(words);

		if (n > 0 && n < sizeof(w)) {
			memcpy(w, words, n);
			w[n] = '\0';
			if (strcasestr(text, w) != NULL)
				return true;
		}
		words = bar != NULL ? bar + 1 : NULL;
	}
	return false;
}

/* by code and enhanced code; with only a text (or a code and a text), by its words */
static void
explain_foreign(const struct explain_query *q, struct explain_acc *acc)
{
	for (size_t i = 0; i < ARRAY_LEN(explain_foreign_table); i++) {
		const struct explain_foreign *f = &explain_foreign_table[i];
		struct explain_match m;

		if (q->code != 0 && q->code != f->code)
			continue;
		if (q->enh[0] != '\0' && !explain_enh_eq(q->enh, f->enh))
			continue;
		if (q->enh[0] == '\0' && q->text[0] != '\0' &&
		    (f->words == NULL || !explain_has_word(f->words, q->text)))
			continue;
		memset(&m, 0, sizeof(m));
		m.kind = EXPLAIN_FOREIGN;
		m.code = f->code;
		util_strlcpy(m.enh, f->enh, sizeof(m.enh));
		m.why = f->why;
		m.advice = f->advice;
		explain_add(acc, &m);
	}
}

static const char *
explain_code_meaning(int code)
{
	static const char *const cls[] = {
		[2] = "a success reply with no standard meaning of its own",
		[3] = "an intermediate reply: the server waits for more",
		[4] = "a temporary failure",
		[5] = "a permanent failure",
	};

	for (size_t i = 0; i < ARRAY_LEN(explain_code_table); i++)
		if (explain_code_table[i].code == code)
			return explain_code_table[i].what;
	return cls[code / 100];
}

static const char *
explain_detail_meaning(int subject, int detail)
{
	for (size_t i = 0; i < ARRAY_LEN(explain_detail_table); i++)
		if (explain_detail_table[i].subject == subject &&
		    explain_detail_table[i].detail == detail)
			return explain_detail_table[i].what;
	return NULL;
}

void
explain_enhanced(const char *enh, char *buf, size_t cap)
{
	static const char *const cls[] = {
		[2] = "success", [4] = "temporary failure", [5] = "permanent failure",
	};
	const char *detail;
	int v[3];

	buf[0] = '\0';
	if (!explain_enh_split(enh, v) || v[0] < 2 || v[0] > 5 || v[0] == 3)
		return;
	if (v[1] < 0 || v[1] >= (int)ARRAY_LEN(explain_subjects)) {
		snprintf(buf, cap, "%s", cls[v[0]]);
		return;
	}
	detail = v[2] >= 0 ? explain_detail_meaning(v[1], v[2]) : NULL;
	snprintf(buf, cap, "%s; %s%s%s", cls[v[0]], explain_subjects[v[1]],
	    detail != NULL ? ": " : "", detail != NULL ? detail : "");
}

/* what the RFCs alone say about the code and/or enhanced code */
static void
explain_rfc(const struct explain_query *q, struct explain_acc *acc)
{
	struct explain_match m;
	int v[3];

	memset(&m, 0, sizeof(m));
	m.kind = EXPLAIN_RFC;
	m.code = q->code;
	util_strlcpy(m.enh, q->enh, sizeof(m.enh));
	if (q->code != 0) {
		m.why = explain_code_meaning(q->code);
		m.advice = explain_class_advice(q->code / 100);
	} else if (explain_enh_split(q->enh, v) && v[1] >= 0 &&
	    v[1] < (int)ARRAY_LEN(explain_subjects)) {
		/* the detail's meaning, else the subject's; explain_enhanced() says more */
		m.why = v[2] >= 0 ? explain_detail_meaning(v[1], v[2]) : NULL;
		if (m.why == NULL)
			m.why = explain_subjects[v[1]];
		m.advice = explain_class_advice(v[0]);
	} else
		return;
	explain_add(acc, &m);
}

size_t
explain_lookup(const char *query, struct explain_match *out, size_t cap)
{
	struct explain_query q;
	struct explain_acc acc = { out, cap, 0 };

	explain_parse(query, &q);
	if (q.text[0] != '\0') {
		explain_mailgate_by_text(&q, &acc);
		if (acc.n == 0)
			explain_foreign(&q, &acc);
		if (acc.n == 0 && q.code != 0 && q.enh[0] == '\0')
			explain_mailgate_wildcards(&q, &acc);
		if (acc.n == 0)
			explain_rfc(&q, &acc);
	} else if (q.code != 0 || q.enh[0] != '\0') {
		explain_mailgate_by_code(&q, &acc);
		/* "#" is mailgate's way of writing it: no need for the others' */
		if (!q.hash || acc.n == 0)
			explain_foreign(&q, &acc);
		if (acc.n == 0 || (q.code != 0 && q.enh[0] == '\0'))
			explain_rfc(&q, &acc);
	}
	return acc.n;
}

void
explain_label(const struct explain_match *m, char *buf, size_t cap)
{
	const char *hash = m->kind == EXPLAIN_MAILGATE ? "#" : "";

	if (m->code != 0 && m->enh[0] != '\0')
		snprintf(buf, cap, "%d %s%s", m->code, hash, m->enh);
	else if (m->code != 0)
		snprintf(buf, cap, "%d", m->code);
	else
		snprintf(buf, cap, "%s%s", hash, m->enh);
}

/* ---------------------------------------------------------------- settings' values */

struct explain_buf {
	char *p;
	size_t cap, len;
};

static void
explain_put(struct explain_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (b->len + 1 >= b->cap)
		return;
	if (n > b->cap - 1 - b->len)
		n = b->cap - 1 - b->len;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* a setting's value in libconfig syntax, on one line */
static void
explain_value(const config_setting_t *s, struct explain_buf *b)
{
	char tmp[64];
	int n;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		snprintf(tmp, sizeof(tmp), "%lld", config_setting_get_int64(s));
		explain_put(b, tmp);
		break;
	case CONFIG_TYPE_FLOAT:
		snprintf(tmp, sizeof(tmp), "%g", config_setting_get_float(s));
		explain_put(b, tmp);
		break;
	case CONFIG_TYPE_BOOL:
		explain_put(b, config_setting_get_bool(s) ? "true" : "false");
		break;
	case CONFIG_TYPE_STRING: {
		const char *v = config_setting_get_string(s);

		explain_put(b, "\"");
		for (; v != NULL && *v != '\0'; v++) {
			char c[3] = { '\\', *v, '\0' };

			explain_put(b, *v == '"' || *v == '\\' ? c : c + 1);
		}
		explain_put(b, "\"");
		break;
	}
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
	case CONFIG_TYPE_GROUP: {
		int t = config_setting_type(s);

		explain_put(b, t == CONFIG_TYPE_ARRAY ? "[" : t == CONFIG_TYPE_LIST ? "(" : "{");
		n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

			explain_put(b, i > 0 && t != CONFIG_TYPE_GROUP ? ", " : " ");
			if (t == CONFIG_TYPE_GROUP) {
				explain_put(b, config_setting_name(e));
				explain_put(b, " = ");
			}
			explain_value(e, b);
			if (t == CONFIG_TYPE_GROUP)
				explain_put(b, ";");
		}
		explain_put(b, t == CONFIG_TYPE_ARRAY ? " ]" :
		    t == CONFIG_TYPE_LIST ? " )" : " }");
		break;
	}
	default:
		explain_put(b, "?");
	}
}

static void
explain_value_str(const config_setting_t *s, char *out, size_t cap)
{
	struct explain_buf b = { out, cap, 0 };

	out[0] = '\0';
	explain_value(s, &b);
	if (b.len + 1 >= cap && cap > 4)
		memcpy(out + cap - 4, "...", 4);
}

/* the effective config as libconfig sees it: what `mailgate check` prints */
static bool
explain_conf_open(const struct config *cfg, config_t *lc)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp;

	if (cfg == NULL || (fp = open_memstream(&text, &len)) == NULL)
		return false;
	config_print(cfg, fp);
	if (fclose(fp) != 0) {
		free(text);
		return false;
	}
	config_init(lc);
	if (config_read_string(lc, text) != CONFIG_TRUE) {
		config_destroy(lc);
		free(text);
		return false;
	}
	free(text);
	return true;
}

struct explain_out {
	FILE *fp;
	bool color;
	config_t *lc;		/* NULL: no values shown */
	int lines;		/* setting lines printed for the current entry */
};

static void
explain_setting_line(struct explain_out *o, const char *name, const char *value)
{
	fprintf(o->fp, "%s%s%s%s\n", o->lines++ == 0 ? "  setting:        " : "                  ",
	    name, value != NULL ? " = " : "", value != NULL ? value : "");
}

/* "policies.*.X": the policy_defaults value, then each policy that differs from it */
static void
explain_policy_setting(struct explain_out *o, const char *key)
{
	char path[256], dflt[EXPLAIN_VALUE_MAX], v[EXPLAIN_VALUE_MAX + 64];
	const config_setting_t *s, *pols;
	int n;

	/* keys come from the reply table's setting names: short, but say so to the compiler */
	snprintf(path, sizeof(path), "policy_defaults.%.100s", key);
	if ((s = config_lookup(o->lc, path)) == NULL) {
		snprintf(path, sizeof(path), "policies.*.%s", key);
		explain_setting_line(o, path, NULL);
		return;
	}
	explain_value_str(s, dflt, sizeof(dflt));
	snprintf(v, sizeof(v), "%s  (every policy that does not set it)", dflt);
	explain_setting_line(o, path, v);
	if ((pols = config_lookup(o->lc, "policies")) == NULL)
		return;
	n = config_setting_length(pols);
	for (int i = 0; i < n; i++) {
		const config_setting_t *p = config_setting_get_elem(pols, (unsigned)i);

		if ((s = config_setting_get_member(p, key)) == NULL)
			continue;
		explain_value_str(s, v, sizeof(v));
		if (strcmp(v, dflt) == 0)
			continue;
		snprintf(path, sizeof(path), "policies.%s.%s", config_setting_name(p), key);
		explain_setting_line(o, path, v);
	}
}

/* "listeners.*.X": each listener's value, by the listener's name */
static void
explain_listener_setting(struct explain_out *o, const char *key)
{
	char path[128], v[EXPLAIN_VALUE_MAX];
	const config_setting_t *ls, *s;
	const char *name;
	int n, shown = 0;

	if ((ls = config_lookup(o->lc, "listeners")) != NULL) {
		n = config_setting_length(ls);
		for (int i = 0; i < n; i++) {
			const config_setting_t *l = config_setting_get_elem(ls, (unsigned)i);

			if (config_setting_lookup_string(l, "name", &name) != CONFIG_TRUE)
				name = "?";
			snprintf(path, sizeof(path), "listeners.%s.%s", name, key);
			if ((s = config_setting_get_member(l, key)) == NULL) {
				snprintf(v, sizeof(v), "%s (not set)", path);
				explain_setting_line(o, v, NULL);
			} else {
				explain_value_str(s, v, sizeof(v));
				explain_setting_line(o, path, v);
			}
			shown++;
		}
	}
	if (shown == 0) {
		snprintf(path, sizeof(path), "listeners.*.%s", key);
		explain_setting_line(o, path, NULL);
	}
}

/* the setting field: names separated by ", "; a name with a space is prose */
static void
explain_settings(struct explain_out *o, const char *setting)
{
	char tok[128], v[EXPLAIN_VALUE_MAX];
	const config_setting_t *s;

	o->lines = 0;
	if (setting == NULL) {
		explain_setting_line(o, "none", NULL);
		return;
	}
	while (*setting != '\0') {
		const char *comma = strstr(setting, ", ");
		size_t n = comma != NULL ? (size_t)(comma - setting) : strlen(setting);

		if (n >= sizeof(tok))
			n = sizeof(tok) - 1;
		memcpy(tok, setting, n);
		tok[n] = '\0';
		setting = comma != NULL ? comma + 2 : setting + strlen(setting);
		if (o->lc == NULL || strchr(tok, ' ') != NULL)
			explain_setting_line(o, tok, NULL);
		else if (strncmp(tok, "policies.*.", 11) == 0)
			explain_policy_setting(o, tok + 11);
		else if (strncmp(tok, "listeners.*.", 12) == 0)
			explain_listener_setting(o, tok + 12);
		else if ((s = config_lookup(o->lc, tok)) != NULL) {
			explain_value_str(s, v, sizeof(v));
			explain_setting_line(o, tok, v);
		} else {
			snprintf(v, sizeof(v), "%s (not set)", tok);
			explain_setting_line(o, v, NULL);
		}
	}
}

/* ---------------------------------------------------------------- `mailgate explain` */

static const char *
explain_color(int code)
{
	switch (code / 100) {
	case 2:
	case 3:
		return "\033[1;32m";
	case 4:
		return "\033[1;33m";
	case 5:
		return "\033[1;31m";
	default:
		return "\033[1m";
	}
}

/* what stands in for an entry's "%s" when it is shown */
static const char *
explain_placeholder(const struct smtp_reply_def *d, const struct config *cfg)
{
	switch (d->id) {
	case RPL_HELO:
	case RPL_EHLO:
	case RPL_QUIT:
	case RPL_SERVICE_UNAVAILABLE:
		return cfg != NULL ? cfg->hostname : "HOST";
	case RPL_MAIL_OK:
	case RPL_RCPT_OK:
		return "ADDRESS";
	case RPL_ACCEPTED:
		return "MID";
	case RPL_TEMP_SYSTEM_ERROR:
		return "12";
	case RPL_HELP_TOPIC:
		return "TEXT";
	default:
		return "XXX";
	}
}

/* the reply as the server sends it, with the policy defaults' code and text */
static void
explain_as_sent(const struct explain_match *m, const struct config *cfg, char *buf, size_t cap)
{
	const struct smtp_reply_def *d = m->reply;
	char arg[512];
	size_t n;
	int code = 0;

	if (d == NULL) {
		explain_label(m, buf, cap);
		return;
	}
	util_strlcpy(arg, explain_placeholder(d, cfg), sizeof(arg));
	if (d->flags & REPLY_POLICY) {
		const struct policy *p = cfg != NULL ? &cfg->policy_defaults : NULL;
		bool banner = d->id == RPL_BANNER;

		code = p == NULL ? 0 : banner ? p->banner_code : p->reject_code;
		snprintf(arg, sizeof(arg), "%s %s", cfg != NULL ? cfg->hostname : "HOST",
		    p == NULL ? "TEXT" : banner ? p->banner_text : p->reject_text);
	}
	n = smtp_reply_format_code(buf, cap, d->id, code, arg);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
}

static void
explain_print(struct explain_out *o, const struct explain_match *m, const struct config *cfg)
{
	char head[600], rfc[200];
	const char *note = m->kind == EXPLAIN_MAILGATE ? "" :
	    m->kind == EXPLAIN_FOREIGN ? "  (as other servers send it)" : "  (RFC 5321/3463)";

	explain_as_sent(m, cfg, head, sizeof(head));
	if (o->color)
		fprintf(o->fp, "%s%s\033[0m%s\n", explain_color(m->code), head, note);
	else
		fprintf(o->fp, "%s%s\n", head, note);
	fprintf(o->fp, "  what happened:  %s\n", m->why);
	if (m->kind == EXPLAIN_MAILGATE)
		explain_settings(o, m->setting);
	if (m->kind != EXPLAIN_MAILGATE && m->enh[0] != '\0') {
		explain_enhanced(m->enh, rfc, sizeof(rfc));
		if (rfc[0] != '\0')
			fprintf(o->fp, "  RFC 3463:       %s: %s\n", m->enh, rfc);
	}
	fprintf(o->fp, "  what to do:     %s\n", m->advice);
}

static void
explain_usage(FILE *fp)
{
	fputs("usage: mailgate explain [-c FILE] REPLY...\n"
	    "\n"
	    "What a reply means, which setting controls it (with its current value)\n"
	    "and what the sending side should do. The words are joined by spaces:\n"
	    "  mailgate explain 421 \"Too many connections from your host\"\n"
	    "  mailgate explain \"452 #4.5.3\"      (code and enhanced code)\n"
	    "  mailgate explain 5.7.1             (an enhanced code alone)\n"
	    "  mailgate explain \"Line too long\"   (a piece of the text)\n"
	    "  mailgate explain 550               (every reply with that code)\n"
	    "Replies of other servers are explained from RFC 5321 and RFC 3463.\n"
	    "Exit status: 0 explained, 1 nothing known, 2 usage.\n", fp);
}

int
explain_main(int argc, char **argv, const struct config *cfg)
{
	struct explain_match m[EXPLAIN_MAX];
	struct explain_out o;
	config_t lc;
	char query[EXPLAIN_TEXT_MAX + 16];
	size_t n, qlen = 0;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		explain_usage(stdout);
		return 0;
	}
	if (argc < 2) {
		explain_usage(stderr);
		return 2;
	}
	query[0] = '\0';
	for (int i = 1; i < argc; i++) {
		int w = snprintf(query + qlen, sizeof(query) - qlen, "%s%s", i > 1 ? " " : "",
		    argv[i]);

		if (w < 0 || (size_t)w >= sizeof(query) - qlen) {
			fprintf(stderr, "mailgate explain: the reply is too long\n");
			return 2;
		}
		qlen += (size_t)w;
	}
	n = explain_lookup(query, m, EXPLAIN_MAX);
	if (n == 0) {
		char esc[200];

		util_escape(esc, sizeof(esc), query, qlen);
		fprintf(stderr, "mailgate explain: nothing known about \"%s\": give a reply code "
		    "(550), an enhanced code (5.7.1) or a piece of a reply's text\n", esc);
		return 1;
	}
	if (n > EXPLAIN_MAX)
		n = EXPLAIN_MAX;
	o.fp = stdout;
	o.color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
	o.lc = explain_conf_open(cfg, &lc) ? &lc : NULL;
	o.lines = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			fputc('\n', stdout);
		explain_print(&o, &m[i], cfg);
	}
	if (o.lc != NULL)
		config_destroy(&lc);
	return 0;
}
