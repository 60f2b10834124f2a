/*
 * smtp_reply.c: the reply table (see smtp_reply.h). The texts are the contract:
 * the reference's replies byte for byte, so an administrator's scripts and habits
 * carry over. Tests walk this table; nothing else in the server spells a reply.
 */
#include "smtp_reply.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#define E(id, code, text, flags, why, setting, advice) \
	[id] = { id, code, text, flags, why, setting, advice }

const struct smtp_reply_def smtp_reply_table[RPL__COUNT] = {
	E(RPL_HELO, 250, "%s", 0, "HELO accepted", NULL, NULL),
	E(RPL_EHLO, 250, "%s", 0, "EHLO accepted; the extensions follow", NULL, NULL),
	E(RPL_MAIL_OK, 250, "sender <%s> ok", 0, "sender accepted", NULL, NULL),
	E(RPL_RCPT_OK, 250, "recipient <%s> ok", 0, "recipient accepted", NULL, NULL),
	E(RPL_DATA_GO, 354, "go ahead", 0, "ready for the message", NULL, NULL),
	E(RPL_ACCEPTED, 250, "ok: Message %s accepted", 0,
	    "the message is on stable storage and queued for delivery", NULL, NULL),
	E(RPL_QUIT, 221, "%s", 0, "closing the connection", NULL, NULL),
	E(RPL_OK, 250, "ok", 0, "command done", NULL, NULL),
	E(RPL_VRFY, 252, "Cannot VRFY user, but will accept message and attempt delivery", 0,
	    "VRFY is never answered, so addresses cannot be harvested", NULL, NULL),
	E(RPL_HELP, 214, "The following commands are recognized", 0,
	    "the list of commands, one per line", NULL, NULL),
	E(RPL_HELP_TOPIC, 214, "%s", 0, "help on one command", NULL, NULL),
	E(RPL_STARTTLS_GO, 220, "Go ahead with TLS", 0, "TLS handshake next", NULL, NULL),
	E(RPL_AUTH_OK, 235, "#2.7.0 Authentication succeeded", 0, "authenticated", NULL, NULL),
	E(RPL_AUTH_FAILED, 535, "#5.7.8 Authentication credentials invalid", 0,
	    "authentication failed: wrong user name or password",
	    "auth.users, limits.auth_failure_limit",
	    "check the user name and password; repeated failures close the connection"),
	E(RPL_RAT_REJECT, 550, "#5.1.0 Address rejected", 0,
	    "the recipient is not in the listener's Recipient Access Table", "listeners.*.rat",
	    "this gateway does not accept mail for that address; check the address"),
	E(RPL_BANNER, 220, "%s", REPLY_POLICY, "greeting",
	    "hostname, policies.*.banner_code, policies.*.banner_text, policies.*.greet_delay",
	    "go on with EHLO"),
	E(RPL_HAT_REJECT, 554, "%s", REPLY_POLICY | REPLY_CLOSE,
	    "the client's address matched a sender group whose policy rejects it",
	    "listeners.*.hat, policies.*.action, policies.*.reject_code, policies.*.reject_text",
	    "this host does not take mail from you; contact the recipient's postmaster"),
	E(RPL_MERGE_OK, 250, "OK", 0, "mail merge: command done (XMRG, XDFN, a part)", NULL,
	    NULL),
	E(RPL_PART_GO, 354, "OK, send part", 0, "mail merge: ready for the part", NULL, NULL),

	E(RPL_TOO_MANY_TLS, 421, "#4.4.5 Too many TLS sessions at this time", REPLY_CLOSE,
	    "the server holds its maximum of TLS sessions", "limits.max_tls_sessions",
	    "retry later"),
	E(RPL_CONN_FROM_HOST, 421, "#4.4.5 Too many connections from your host", REPLY_CLOSE,
	    "your address already holds the most connections its policy allows",
	    "policies.*.max_connections_per_host", "use fewer parallel connections; retry later"),
	E(RPL_CONN_TO_HOST, 421, "#4.4.5 Too many connections to this host", REPLY_CLOSE,
	    "all listeners together hold the server's maximum of connections",
	    "limits.max_connections", "retry later"),
	E(RPL_CONN_TO_LISTENER, 421, "#4.4.5 Too many connections to this listener", REPLY_CLOSE,
	    "this listener holds its maximum of connections", "listeners.*.max_connections",
	    "retry later"),
	E(RPL_TOO_MANY_MESSAGES, 421, "#4.x.2 Too many messages for this session", REPLY_CLOSE,
	    "the session already delivered the most messages its policy allows",
	    "policies.*.max_messages_per_connection",
	    "open a new connection for the remaining messages"),
	E(RPL_SERVICE_UNAVAILABLE, 421, "%s Service not available, closing transaction channel",
	    REPLY_CLOSE, "the listener is suspended or the server is shutting down",
	    "mailgate listener suspend/resume (a command, not a setting)", "retry later"),
	E(RPL_CONNECTION_TIME, 421, "Exceeded allowable connection time", REPLY_CLOSE,
	    "the session lasted longer than allowed", "limits.max_connection_time",
	    "reconnect and continue"),
	E(RPL_BAD_COMMAND_LIMIT, 421, "Exceeded bad SMTP command limit, disconnecting",
	    REPLY_CLOSE, "too many bad commands in one session", "limits.bad_command_limit",
	    "fix the client: it sends commands the server cannot accept"),
	E(RPL_LICENSE_EXPIRED, 421, "The evaluation license has expired", REPLY_CLOSE,
	    "never sent by mailgate, which has no licence keys", NULL,
	    "if a Cisco ESA sent it, its administrator must renew the licence; retry later"),
	E(RPL_COMMAND_TIMEOUT, 421, "Timed out waiting for command, disconnecting", REPLY_CLOSE,
	    "no command (or no data) arrived within the command timeout",
	    "limits.command_timeout", "the client stalled; retry"),
	E(RPL_INJECTION_TIMEOUT, 421,
	    "Timed out waiting for successful message injection, disconnecting.", REPLY_CLOSE,
	    "no message was accepted within the injection timeout", "limits.injection_timeout",
	    "send the message sooner after connecting; retry"),
	E(RPL_SERVER_ERROR, 451, "#4.3.0 Server Error", 0,
	    "the message could not be written or synced to the spool; it was not kept",
	    "spool", "retry later; the operator should check the spool's disk"),
	E(RPL_QUEUE_FULL, 452, "#4.3.1 queue full", 0, "the spool holds its maximum of messages",
	    "limits.queue_max_messages, limits.queue_max_bytes", "retry later"),
	E(RPL_RESOURCES_LOW, 452, "#4.3.1 server resources low - try again later", 0,
	    "the spool's filesystem is short of free space", "limits.min_free_disk",
	    "retry later; the operator should free disk space"),
	E(RPL_TEMP_SYSTEM_ERROR, 452, "#4.3.1 temporary system error (%s)", 0,
	    "the server ran out of memory (the number is the errno)", NULL,
	    "retry later; the session survives, so the same command may succeed"),
	E(RPL_TOO_MANY_RCPTS, 452, "#4.5.3 Too many recipients", 0,
	    "more recipients than the policy allows in one message",
	    "policies.*.max_recipients_per_message",
	    "send the remaining recipients in another message"),
	E(RPL_RCPTS_PER_HOUR, 452, "#4.5.3 Too many recipients received this hour", 0,
	    "your address sent more recipients this hour than its policy allows",
	    "policies.*.max_recipients_per_hour", "retry later"),
	E(RPL_TLS_UNAVAILABLE, 454, "TLS not available due to a temporary reason", 0,
	    "TLS is configured but its certificate cannot be used now",
	    "tls.certificate, tls.key, listeners.*.tls",
	    "retry later, or without TLS"),

	E(RPL_NOT_RECOGNIZED, 500, "#5.5.1 command not recognized", REPLY_BAD,
	    "unknown command", "policies.*.tls, listeners.*.ipmm",
	    "check the command's spelling; STARTTLS exists only where the policy offers TLS, "
	    "XMRG/XDFN/XPRT only where mail merge is on"),
	E(RPL_LINE_TOO_LONG, 500, "Line too long", REPLY_BAD,
	    "a command line longer than 512 octets with its CRLF (4096 for XDFN)", NULL,
	    "fix the client: a command line, CRLF included, fits in 512 octets (RFC 5321)"),
	E(RPL_EHLO_NEEDS_DOMAIN, 501, "#5.0.0 EHLO requires domain address", REPLY_BAD,
	    "EHLO without an argument", NULL, "send EHLO with the client's host name"),
	E(RPL_SYNTAX, 501, "#5.5.2 syntax error %s", REPLY_BAD,
	    "a malformed argument", NULL, "fix the address or argument named in the reply"),
	E(RPL_AUTH_ARGS, 501, "#5.5.4 Invalid arguments to AUTH command", REPLY_BAD,
	    "AUTH with bad base64 or a garbled credential", NULL,
	    "fix the client: send the credentials in valid base64 (RFC 4954)"),
	E(RPL_HELP_UNKNOWN, 501, "Unknown command %s", REPLY_BAD,
	    "HELP for a topic that is not a command", NULL,
	    "ask HELP about one of the commands plain HELP lists"),
	E(RPL_UNKNOWN_OPTION, 501, "Unknown option %s", REPLY_BAD,
	    "an option word the command does not take", NULL,
	    "drop the option the reply names"),
	E(RPL_UNKNOWN_VALUE, 501, "Unknown value %s", REPLY_BAD,
	    "a known parameter with a value it does not take", NULL,
	    "send a value the parameter takes (BODY=7BIT or 8BITMIME, SIZE=a number)"),
	E(RPL_AUTH_NOT_AVAILABLE, 503, "#5.3.3 AUTH not available", REPLY_BAD,
	    "AUTH where the policy does not offer it", "policies.*.auth",
	    "send without AUTH here, or use a listener whose policy offers it"),
	E(RPL_AUTH_IN_TX, 503, "#5.5.0 AUTH not permitted during a mail transaction", REPLY_BAD,
	    "AUTH between MAIL and the end of the message", NULL,
	    "authenticate before MAIL, or send RSET first"),
	E(RPL_AUTH_ALREADY, 503, "#5.5.0 Already authenticated", REPLY_BAD,
	    "AUTH after a successful AUTH", NULL, "authenticate once per session"),
	E(RPL_MAIL_FIRST, 503, "#5.5.1 MAIL first", REPLY_BAD,
	    "RCPT or DATA without MAIL", NULL, "send MAIL FROM first"),
	E(RPL_RCPT_FIRST, 503, "#5.5.1 RCPT first", REPLY_BAD,
	    "DATA without an accepted recipient", NULL, "send RCPT TO first"),
	E(RPL_DATA_IN_MERGE, 503, "Bad sequence of commands: DATA within mailmerge transaction",
	    REPLY_BAD, "DATA after XMRG FROM", "listeners.*.ipmm", "send the parts with XPRT"),
	E(RPL_XPRT_IN_PLAIN, 503, "Bad sequence of commands: XPRT within plain transaction",
	    REPLY_BAD, "XPRT after MAIL FROM", "listeners.*.ipmm",
	    "use DATA, or start with XMRG FROM"),
	E(RPL_RECEIVING_PARTS, 503, "Bad sequence of commands: now receiving parts", REPLY_BAD,
	    "XDFN or RCPT after the first XPRT", "listeners.*.ipmm",
	    "send every XDFN and RCPT before the first XPRT"),
	E(RPL_NOT_IN_MERGE, 503, "Not in a mailmerge transaction", REPLY_BAD,
	    "XDFN or XPRT without XMRG FROM", "listeners.*.ipmm",
	    "start the mail merge with XMRG FROM"),
	E(RPL_AUTH_MECH, 504, "#5.5.1 AUTH mechanism %s is not available", REPLY_BAD,
	    "AUTH with a mechanism not offered", "policies.*.auth",
	    "use a mechanism EHLO lists (PLAIN or LOGIN)"),
	E(RPL_PARAM_UNRECOGNIZED, 504, "Command parameter %s unrecognized", REPLY_BAD,
	    "an ESMTP parameter the server does not support", NULL,
	    "send only the parameters EHLO advertised"),
	E(RPL_XDFN_SYNTAX, 504, "Invalid XDFN syntax", REPLY_BAD,
	    "XDFN that is not a list of KEY=VALUE pairs", "listeners.*.ipmm",
	    "send XDFN KEY=VALUE pairs"),
	E(RPL_PART_NUMBER, 504, "Invalid part number", REPLY_BAD,
	    "XPRT without a positive part number", "listeners.*.ipmm",
	    "number the parts 1, 2, 3 ..."),
	E(RPL_PART_NUMBER_DUP, 504, "Invalid part number %s", REPLY_BAD,
	    "XPRT with a part number already sent", "listeners.*.ipmm", "send each part once"),
	E(RPL_XDFN_NO_VALUE, 504, "No variable value specified", REPLY_BAD,
	    "XDFN KEY= with nothing after the =", "listeners.*.ipmm",
	    "give every variable a value"),
	E(RPL_PARTS_MISSING, 504, "Other parts still missing", REPLY_BAD,
	    "XPRT n LAST while a part some recipient needs was never sent", "listeners.*.ipmm",
	    "send every part a recipient's *PARTS names before the LAST one"),
	E(RPL_RESERVED_VAR, 504, "Reserved variable name", REPLY_BAD,
	    "XDFN defining a reserved * name", "listeners.*.ipmm",
	    "rename the variable: names starting with * are reserved, except *PARTS and *DK"),
	E(RPL_PARTS_SYNTAX, 504, "Syntax error in *parts syntax", REPLY_BAD,
	    "*PARTS is not a comma-separated list of positive integers", "listeners.*.ipmm",
	    "write *PARTS as part numbers separated by commas: *PARTS=1,2,3"),
	E(RPL_XDFN_NUL, 504, "XDFN command must not contain NULL characters", REPLY_BAD,
	    "a NUL byte in an XDFN line", "listeners.*.ipmm", "remove the NUL byte"),
	E(RPL_STARTTLS_FIRST, 530, "#5.7.0 Must issue a STARTTLS command first", 0,
	    "the policy requires TLS before mail", "policies.*.tls",
	    "send STARTTLS first"),
	E(RPL_SENDER_STARTTLS, 530, "#5.7.0 This sender must issue a STARTTLS command first", 0,
	    "this envelope sender must use TLS", "policies.*.tls_required_senders",
	    "send STARTTLS first"),
	E(RPL_AUTH_REQUIRED, 530, "Authentication required", 0,
	    "the policy requires AUTH before mail", "policies.*.auth", "authenticate first"),
	E(RPL_ENCRYPTION_REQUIRED, 538, "#5.7.11 Encryption required", 0,
	    "AUTH without TLS while the policy requires TLS for it",
	    "policies.*.auth_requires_tls", "send STARTTLS, then AUTH"),
	E(RPL_HEADER_TOO_BIG, 552, "#5.3.4 message header size exceeds limit", 0,
	    "the header has more lines than allowed", "limits.max_header_lines",
	    "shorten the message header"),
	E(RPL_MESSAGE_TOO_BIG, 552, "#5.3.4 message size exceeds limit", 0,
	    "the message is larger than the policy allows", "policies.*.max_message_size",
	    "send a smaller message"),
	E(RPL_SIZE_EXCEEDED, 552, "size limit exceeded", 0,
	    "MAIL announced a SIZE above the policy's limit", "policies.*.max_message_size",
	    "send a smaller message"),
	E(RPL_PERM_ERROR, 554, "#5.3.0 Server Error", 0,
	    "a permanent internal failure for this message", NULL,
	    "the same message will fail again; the operator should read the server's log"),
	E(RPL_TOO_MANY_HOPS, 554, "Too many hops", 0,
	    "the message carries more Received: headers than allowed: a mail loop",
	    "limits.max_hops", "fix the mail loop"),
	E(RPL_BARE_CRLF, 554, "message body contains illegal bare CR/LF characters.", 0,
	    "the data holds a CR or LF that is not part of a CRLF",
	    "policies.*.bare_crlf", "fix the client to send CRLF line endings"),

	E(RPL_HELO_FIRST, 503, "#5.5.1 HELO or EHLO first", REPLY_BAD,
	    "MAIL before HELO or EHLO", NULL, "send EHLO first"),
	E(RPL_TLS_ACTIVE, 503, "#5.5.1 TLS already active", REPLY_BAD,
	    "STARTTLS inside TLS", NULL, "send STARTTLS once; the session is already encrypted"),
	E(RPL_STARTTLS_IN_TX, 503, "#5.5.0 STARTTLS not permitted during a mail transaction",
	    REPLY_BAD, "STARTTLS between MAIL and the end of the message", NULL,
	    "send STARTTLS before MAIL, or RSET first"),
	E(RPL_SYNC_ERROR, 554, "SMTP synchronization error", REPLY_CLOSE,
	    "the client sent before the banner, or message text before the 354",
	    "policies.*.greet_delay",
	    "fix the client: it must wait for the server's replies"),
	E(RPL_NESTED_MAIL, 503, "#5.5.1 Nested MAIL command", REPLY_BAD,
	    "MAIL inside a transaction", NULL, "send RSET or finish the message first"),
	E(RPL_AUTH_CHALLENGE, 334, "%s", REPLY_KEEP_SPACE, "an AUTH challenge (base64)", NULL,
	    NULL),
	E(RPL_AUTH_CANCELLED, 501, "#5.0.0 Authentication cancelled", REPLY_BAD,
	    "the client cancelled AUTH with \"*\" (RFC 4954 4)", NULL, NULL),
	E(RPL_AUTH_FAIL_LIMIT, 421, "#4.7.0 Too many failed authentication attempts", REPLY_CLOSE,
	    "the session failed AUTH as often as allowed: the connection is closed",
	    "limits.auth_failure_limit",
	    "check the user name and password before trying again"),
};

const struct smtp_reply_def *
smtp_reply_def(enum smtp_reply_id id)
{
	assert(id >= 0 && id < RPL__COUNT);
	return &smtp_reply_table[id];
}

size_t
smtp_reply_format(char *buf, size_t cap, enum smtp_reply_id id, const char *arg)
{
	return smtp_reply_format_code(buf, cap, id, 0, arg);
}

size_t
smtp_reply_format_code(char *buf, size_t cap, enum smtp_reply_id id, int code,
    const char *arg)
{
	const struct smtp_reply_def *d = smtp_reply_def(id);
	const char *t = d->text, *pct = strstr(t, "%s");
	size_t n;
	int w;

	if (arg == NULL)
		arg = "";
	/* the text is ours, never a format string: copy around the one "%s" */
	if (pct != NULL)
		w = snprintf(buf, cap, "%d %.*s%s%s", code ? code : d->code, (int)(pct - t), t, arg, pct + 2);
	else
		w = snprintf(buf, cap, "%d %s", code ? code : d->code, t);
	if (w < 0 || cap < 6)
		return 0;
	n = (size_t)w < cap - 2 ? (size_t)w : cap - 3;
	/* an empty argument at the end would leave a trailing space */
	while (n > 4 && buf[n - 1] == ' ' && !(d->flags & REPLY_KEEP_SPACE))
		n--;
	buf[n++] = '\r';
	buf[n++] = '\n';
	buf[n] = '\0';
	return n;
}
