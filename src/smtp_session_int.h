/*
 * smtp_session_int.h: the inside of an inbound SMTP session, shared by the
 * files that make up the state machine and by nothing else:
 *   smtp_session.c  the loop, the reply path, life and timers, the simple verbs
 *   smtp_tx.c       the transaction: MAIL, RCPT, DATA, end of data, commit
 *   smtp_auth.c     AUTH (RFC 4954): SASL PLAIN and LOGIN
 */
#ifndef MAILGATE_SMTP_SESSION_INT_H
#define MAILGATE_SMTP_SESSION_INT_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "data.h"
#include "hat.h"
#include "maillog.h"
#include "smtp_reply.h"
#include "smtp_syntax.h"

struct event;
struct io;
struct server;
struct listener;
struct spool_msg;
struct dns_query;
struct auth_check;
struct ipmm_tx;
struct ipmm_commit;

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF */
#define SMTP_LINE_MAX	512

enum session_state {
	S_LOOKUP,		/* who is the client? (reverse DNS); input waits */
	S_GREET,		/* waiting out the greet delay: any byte now is an early talker */
	S_CMD,			/* reading command lines */
	S_DATA,			/* reading message data, up to <CRLF>.<CRLF> */
	S_COMMIT,		/* the message is being made durable; input waits */
	S_TLS,			/* the TLS handshake runs (STARTTLS or implicit TLS) */
	S_AUTH,			/* reading a SASL response line after a 334 */
	S_AUTH_WAIT,		/* the password is being checked; input waits */
	S_CLOSING,		/* the last reply is being sent */
};

struct smtp_tx {
	uint64_t mid;
	char sender[SMTP_PATH_MAX + 1];
	const char *body;	/* "7BIT", "8BITMIME" or NULL */
	char **rcpts;
	size_t n_rcpts, cap_rcpts;
	struct spool_msg *msg;	/* from DATA on */
	struct data_filter df;
	int write_errno;	/* the spool write that failed, if one did */
	struct ipmm_tx *mm;	/* XMRG FROM: a mail merge job (smtp_ipmm.c); NULL for MAIL */
};

struct smtp_session {
	struct smtp_session *next, *prev;
	struct server *srv;
	struct listener *listener;
	struct config *cfg;
	const struct listener_conf *lc;
	const struct policy *pol;
	struct io *io;
	struct log_ids ids;
	char addr[INET6_ADDRSTRLEN];
	bool addr_v6;
	struct sockaddr_storage peer;
	struct hat_addr haddr;		/* the client, for per-host counting */
	bool host_counted;		/* holds one of hostcount's connections */
	char local[INET6_ADDRSTRLEN + 8];
	char helo[SMTP_LINE_MAX];
	bool helo_done;
	bool esmtp;
	enum session_state state;
	unsigned bad_commands;
	unsigned messages;
	bool time_up;			/* max_connection_time passed during a message */
	bool injection_up;		/* injection_timeout passed during a message */
	bool drain_requested;		/* suspended or stopping: 421 at the next command */
	bool output_blocked;		/* paused until the client reads our replies */
	struct event *ev_command;	/* command_timeout */
	struct event *ev_lifetime;	/* max_connection_time */
	struct event *ev_injection;	/* injection_timeout (public listeners) */
	struct event *ev_greet;		/* greet_delay */
	struct smtp_tx *tx;
	struct spool_msg *committing;	/* handed to the spool, waiting for its callback */
	struct dns_query *lookup;	/* the client's reverse name, while S_LOOKUP */
	bool announced;			/* "New SMTP ICID" was logged */
	bool tls_counted;		/* holds one of limits.max_tls_sessions */
	bool tls_logged_late;		/* implicit TLS: log its line once the ICID exists */
	bool authenticated;
	unsigned auth_failures;
	int auth_step;			/* smtp_auth.c: which response S_AUTH waits for */
	char auth_user[256];		/* LOGIN: the user name, between the two 334s */
	struct auth_check *auth_check;	/* while S_AUTH_WAIT */
	bool ackrcpt_off;		/* XLSMTP-ACKRCPT OFF: RCPT in a merge gets no reply */
	bool mute;			/* this command's replies are logged, not sent */
	struct ipmm_commit *job_commit;	/* a merge job being made durable */
};

/* every verb handler */
typedef void smtp_verb_fn(struct smtp_session *, const struct smtp_cmdline *);

/* smtp_session.c */
const struct limits *session_limits(const struct smtp_session *);
void session_timer_arm(struct event *, unsigned secs);
void session_timer_stop(struct event *);
void session_reply(struct smtp_session *, enum smtp_reply_id, const char *arg,
    const char *detail);
void session_reply_code(struct smtp_session *, enum smtp_reply_id, int code, const char *arg,
    const char *detail);
void session_reply_echo(struct smtp_session *, enum smtp_reply_id, const char *p, size_t len);
void session_close(struct smtp_session *);
void session_process(struct smtp_session *);
void session_after_message(struct smtp_session *);

/* whether the policy offers STARTTLS here (configured, not off, not already in TLS) */
bool session_tls_offered(const struct smtp_session *);
/* whether EHLO lists AUTH now (offered, and TLS is up if the policy wants it first) */
bool session_auth_offered(const struct smtp_session *);

/* smtp_auth.c */
smtp_verb_fn smtp_auth_cmd;
/* a response line while S_AUTH */
void smtp_auth_line(struct smtp_session *, const char *line, size_t len);
/* the session is going away: drop a pending check and wipe what it knew */
void smtp_auth_forget(struct smtp_session *);

/* smtp_tx.c */
smtp_verb_fn smtp_tx_mail, smtp_tx_rcpt, smtp_tx_data;
/* MAIL or XMRG: the checks and the MID; false when a reply was sent */
bool smtp_tx_begin(struct smtp_session *, const struct smtp_cmdline *, bool merge);
/* the reply a message (or part) that ended must get instead of going on, or RPL__COUNT */
enum smtp_reply_id smtp_tx_data_failure(struct smtp_session *, char *detail, size_t cap);
/* the spool's answer to a commit: 250 or 451 */
void smtp_tx_commit_done(void *arg, int err);
/* feed arrived message bytes to the data filter; false when it wants more */
bool smtp_tx_data_input(struct smtp_session *);
/* the transaction ends without a message (logged with why), or is simply freed */
void smtp_tx_abort(struct smtp_session *, const char *why);
void smtp_tx_free(struct smtp_session *);

/* smtp_ipmm.c: mail merge (XMRG, XDFN, XPRT, XLSMTP-ACKRCPT) */
smtp_verb_fn smtp_ipmm_xmrg, smtp_ipmm_xdfn, smtp_ipmm_xprt, smtp_ipmm_ackrcpt;
/* RCPT in a merge accepted: bind the pending variables to addr; false when a reply was sent */
bool smtp_ipmm_bind(struct smtp_session *, const char *addr);
/* after every RCPT in a merge, taken or not: the next one starts with no variables */
void smtp_ipmm_rcpt_done(struct smtp_session *);
/* the end of a part was read */
void smtp_ipmm_part_end(struct smtp_session *);
void smtp_ipmm_tx_free(struct ipmm_tx *);
/* the first XPRT was sent: no more XDFN or RCPT */
bool smtp_ipmm_in_parts(const struct ipmm_tx *);

#endif
