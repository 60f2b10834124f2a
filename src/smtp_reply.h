/*
 * smtp_reply.h: every reply the SMTP server sends, in one table.
 *
 * The texts are the reference's (the Cisco ESA listener) byte for byte, plus the
 * few of mailgate's own. A session never writes a reply text of its own: it names
 * an entry and, for entries whose text has a "%s", one argument (the host, an
 * echoed token already made safe with smtp_echo(), a MID). The same table feeds
 * the log ("Receiving Failed: <why>"), the bad-command counting, the 421 close,
 * and the explanations of `mailgate explain`.
 */
#ifndef MAILGATE_SMTP_REPLY_H
#define MAILGATE_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

enum smtp_reply_id {
	/* ordinary replies */
	RPL_HELO,
	RPL_EHLO,
	RPL_MAIL_OK,
	RPL_RCPT_OK,
	RPL_DATA_GO,
	RPL_ACCEPTED,
	RPL_QUIT,
	RPL_OK,
	RPL_VRFY,
	RPL_HELP,			/* first line of the HELP list */
	RPL_HELP_TOPIC,
	RPL_STARTTLS_GO,
	RPL_AUTH_OK,
	RPL_AUTH_FAILED,
	RPL_RAT_REJECT,
	RPL_BANNER,		/* code and text from the policy */
	RPL_HAT_REJECT,		/* code and text from the policy */
	RPL_MERGE_OK,		/* mail merge: XMRG, XDFN, XLSMTP-ACKRCPT, a part */
	RPL_PART_GO,		/* mail merge: XPRT */

	/* 4xx */
	RPL_TOO_MANY_TLS,
	RPL_CONN_FROM_HOST,
	RPL_CONN_TO_HOST,
	RPL_CONN_TO_LISTENER,
	RPL_TOO_MANY_MESSAGES,
	RPL_SERVICE_UNAVAILABLE,
	RPL_CONNECTION_TIME,
	RPL_BAD_COMMAND_LIMIT,
	RPL_LICENSE_EXPIRED,
	RPL_COMMAND_TIMEOUT,
	RPL_INJECTION_TIMEOUT,
	RPL_SERVER_ERROR,
	RPL_QUEUE_FULL,
	RPL_RESOURCES_LOW,
	RPL_TEMP_SYSTEM_ERROR,
	RPL_TOO_MANY_RCPTS,
	RPL_RCPTS_PER_HOUR,
	RPL_TLS_UNAVAILABLE,

	/* 5xx */
	RPL_NOT_RECOGNIZED,
	RPL_LINE_TOO_LONG,
	RPL_EHLO_NEEDS_DOMAIN,
	RPL_SYNTAX,
	RPL_AUTH_ARGS,
	RPL_HELP_UNKNOWN,
	RPL_UNKNOWN_OPTION,
	RPL_UNKNOWN_VALUE,
	RPL_AUTH_NOT_AVAILABLE,
	RPL_AUTH_IN_TX,
	RPL_AUTH_ALREADY,
	RPL_MAIL_FIRST,
	RPL_RCPT_FIRST,
	RPL_DATA_IN_MERGE,
	RPL_XPRT_IN_PLAIN,
	RPL_RECEIVING_PARTS,
	RPL_NOT_IN_MERGE,
	RPL_AUTH_MECH,
	RPL_PARAM_UNRECOGNIZED,
	RPL_XDFN_SYNTAX,
	RPL_PART_NUMBER,
	RPL_PART_NUMBER_DUP,
	RPL_XDFN_NO_VALUE,
	RPL_PARTS_MISSING,
	RPL_RESERVED_VAR,
	RPL_PARTS_SYNTAX,
	RPL_XDFN_NUL,
	RPL_STARTTLS_FIRST,
	RPL_SENDER_STARTTLS,
	RPL_AUTH_REQUIRED,
	RPL_ENCRYPTION_REQUIRED,
	RPL_HEADER_TOO_BIG,
	RPL_MESSAGE_TOO_BIG,
	RPL_SIZE_EXCEEDED,
	RPL_PERM_ERROR,
	RPL_TOO_MANY_HOPS,
	RPL_BARE_CRLF,

	/* mailgate's own, beyond the reference table */
	RPL_HELO_FIRST,
	RPL_TLS_ACTIVE,
	RPL_STARTTLS_IN_TX,
	RPL_SYNC_ERROR,
	RPL_NESTED_MAIL,
	RPL_AUTH_CHALLENGE,
	RPL_AUTH_CANCELLED,
	RPL_AUTH_FAIL_LIMIT,

	RPL__COUNT
};

/* reply flags */
#define REPLY_BAD	0x01	/* counts toward the bad-command limit */
#define REPLY_CLOSE	0x02	/* the connection is closed after it */
#define REPLY_POLICY	0x04	/* code and text come from the mail flow policy */
#define REPLY_KEEP_SPACE 0x08	/* "334 " with an empty challenge keeps its space (RFC 4954 4) */

struct smtp_reply_def {
	enum smtp_reply_id id;
	int code;
	const char *text;	/* after "<code> "; at most one "%s" */
	unsigned flags;
	const char *why;	/* what happened, for the log and for explain */
	const char *setting;	/* the setting that controls it, or NULL */
	const char *advice;	/* what the sending side should do, or NULL */
};

/* the whole table, in enum order (RPL__COUNT entries) */
extern const struct smtp_reply_def smtp_reply_table[];

const struct smtp_reply_def *smtp_reply_def(enum smtp_reply_id);

/*
 * "<code> <text>\r\n" with arg in place of the "%s" (NULL = ""). Returns the
 * length written (always a whole line, cut to fit cap), 0 if cap is too small.
 */
size_t smtp_reply_format(char *buf, size_t cap, enum smtp_reply_id, const char *arg);

/* the same with the code given (the policy's banner and reject codes); 0 = the table's */
size_t smtp_reply_format_code(char *buf, size_t cap, enum smtp_reply_id, int code,
    const char *arg);

#endif
