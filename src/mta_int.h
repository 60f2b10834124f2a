/*
 * mta_int.h: the inside of the outbound SMTP client, shared by its two files
 * and by nothing else:
 *   mta.c          the agent: batches, their addresses (DNS), destinations, the
 *                  limits and the wait queue, connections kept for the next batch
 *   mta_session.c  one connection: the SMTP client state machine, STARTTLS, the
 *                  message streamed from the queue file
 * The public contract is mta_session.h.
 */
#ifndef MAILGATE_MTA_INT_H
#define MAILGATE_MTA_INT_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "delivery.h"
#include "dns.h"
#include "mta_session.h"
#include "smtp_client_reply.h"

struct event;
struct event_base;
struct bufferevent;
typedef struct ssl_ctx_st SSL_CTX;

/* RFC 5321 4.5.3.2, in seconds */
#define MTA_TIMEOUT_GREETING	(5 * 60)	/* 4.5.3.2.1 initial 220 */
#define MTA_TIMEOUT_MAIL	(5 * 60)	/* 4.5.3.2.2 */
#define MTA_TIMEOUT_RCPT	(5 * 60)	/* 4.5.3.2.3 */
#define MTA_TIMEOUT_DATA	(2 * 60)	/* 4.5.3.2.4 DATA initiation */
#define MTA_TIMEOUT_BLOCK	(3 * 60)	/* 4.5.3.2.5 data block */
#define MTA_TIMEOUT_DOT		(10 * 60)	/* 4.5.3.2.6 DATA termination */
/* not in the RFC: ours (EHLO, STARTTLS, RSET are given MAIL's) */
#define MTA_TIMEOUT_CONNECT	30
#define MTA_TIMEOUT_HELO	(5 * 60)
#define MTA_TIMEOUT_TLS		60
#define MTA_TIMEOUT_QUIT	30
#define MTA_TIMEOUT_IDLE	5

#define MTA_MX_MAX		10		/* MX hosts of one domain looked up */
#define MTA_ADDRS_MAX		20		/* addresses tried for one batch */
#define MTA_MSGS_PER_CONN	100		/* then a fresh connection */
#define MTA_NOTLS_SECS		3600		/* no STARTTLS to a host whose handshake failed */
#define MTA_CHUNK		(64 * 1024)	/* one read of the queue file */
#define MTA_OUT_LOW		(64 * 1024)	/* refill the socket below this ... */
#define MTA_OUT_HIGH		(256 * 1024)	/* ... up to this */

enum mta_state {
	MS_CONNECTING,
	MS_GREETING,
	MS_EHLO,
	MS_HELO,
	MS_STARTTLS,
	MS_TLS,			/* the handshake */
	MS_READY,		/* idle, kept for the next batch */
	MS_RSET,		/* before a connection's next transaction */
	MS_MAIL,
	MS_RCPT,
	MS_DATA,
	MS_BODY,		/* streaming the message */
	MS_DOT,
	MS_QUIT,
};

/* a recipient during a transaction */
enum { R_SKIP, R_SENT, R_ACCEPTED };

struct mta_addr {
	struct sockaddr_storage ss;		/* with the port */
	const char *name;			/* the host it came from (SNI), NULL for a literal */
};

/* one MX host's address lookup */
struct mta_mxhost {
	struct mta_job *job;
	struct dns_query *q;
	int status;
	struct sockaddr_storage addrs[MTA_ADDRS_MAX];
	size_t n_addrs;
};

/* why an address did not work, kept for when none does */
struct mta_err {
	bool set;
	int code;
	char enhanced[16];
	char text[512];
};

struct mta_job {
	TAILQ_ENTRY(mta_job) entry;		/* mta->jobs */
	TAILQ_ENTRY(mta_job) wentry;		/* mta->waiting */
	struct mta *mta;
	struct delivery_batch *b;
	bool waiting, finished;
	struct dns_query *q;			/* the MX or host lookup */
	struct mta_mxhost *mx;			/* the MX hosts' lookups, while they run */
	size_t n_mx, mx_pending;
	char *names[MTA_MX_MAX];		/* host names, for SNI and reasons */
	uint16_t port;
	struct mta_addr addrs[MTA_ADDRS_MAX];
	size_t n_addrs, ai;			/* the address being tried */
	bool plain_retry;			/* retried once without TLS after a failed handshake */
	bool reuse_retry;			/* retried once after a kept connection had died */
	struct mta_conn *conn;
	struct mta_err temp, perm;
	bool file_ready;			/* from the first transaction on */
	int fd;
	bool body8;				/* the envelope says BODY=8BITMIME */
	uint8_t *rs;				/* R_* per recipient */
	struct event *ev_done;
};

struct mta_dest {
	TAILQ_ENTRY(mta_dest) entry;
	char key[INET6_ADDRSTRLEN + 10];	/* "192.0.2.1:25", "[2001:db8::1]:25" */
	unsigned n_conns;			/* holding a slot */
	unsigned refs;				/* connections pointing here, quitting ones too */
	time_t notls_until;
};

struct mta_conn {
	TAILQ_ENTRY(mta_conn) entry;		/* mta->conns */
	struct mta *mta;
	struct mta_dest *dest;
	struct mta_job *job;			/* NULL when idle or quitting */
	uint64_t dcid;				/* 0 until connected */
	enum mta_state state;
	int fd;					/* until the bufferevent owns it */
	struct event *ev_connect;
	struct bufferevent *bev;
	struct event *ev_timer;
	struct event *ev_free;
	bool counted;				/* holds a slot in the limits */
	bool closing;
	bool tls, tls_failed;
	bool mail_failed;			/* MAIL refused: drain the pipelined group */
	bool no_rcpt_data;			/* a 354 with no recipient: an empty end of data */
	unsigned n_msgs;			/* transactions carried */
	size_t ri;				/* the recipient whose RCPT reply is next */
	size_t n_accepted;
	uint64_t sent;				/* message octets read from the file */
	bool bol, cr;				/* the dot-stuffer: at a line start, a CR held */
	struct sockaddr_storage ss;
	char addr[INET6_ADDRSTRLEN];
	uint16_t port;
	char sni[DNS_NAME_MAX + 1];
	struct smtp_client_ext ext;
	struct smtp_client_reply reply;
};

struct mta {
	struct event_base *base;
	struct dns *dns;
	char *hostname;
	unsigned max_conns, max_per_dest;
	struct mta_timeouts to;
	uint16_t mx_port;
	SSL_CTX *tls_ctx;			/* NULL: no STARTTLS */
	uint64_t last_dcid;
	unsigned n_conns;
	TAILQ_HEAD(, mta_job) jobs;		/* every batch not yet handed back */
	TAILQ_HEAD(, mta_job) waiting;		/* for a connection, in order */
	TAILQ_HEAD(, mta_conn) conns;
	TAILQ_HEAD(, mta_dest) dests;
	struct event *ev_pump;
	char *chunk;				/* MTA_CHUNK read from a queue file */
	char *stuffed;				/* the same dot-stuffed: 2 * MTA_CHUNK + 8 */
};

/* mta.c */
void mta_rcpt_set(struct delivery_rcpt *, enum delivery_status, int code, const char *enh,
    const char *text);
void mta_job_fail(struct mta_job *, enum delivery_status, int code, const char *enh,
    const char *text);
void mta_job_failf(struct mta_job *, enum delivery_status, int code, const char *enh,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void mta_job_finish(struct mta_job *);
void mta_job_addr_failed(struct mta_job *, const struct mta_conn *, enum delivery_status,
    int code, const char *enh, const char *text);
void mta_sa_text(const struct sockaddr_storage *, char *addr, size_t cap, uint16_t *port);
void mta_dest_sweep(struct mta *);
void mta_pump_later(struct mta *);

/* mta_session.c */
void mta_conn_open(struct mta *, struct mta_dest *, struct mta_job *);
void mta_conn_take(struct mta_conn *, struct mta_job *);
void mta_conn_quit(struct mta_conn *);
void mta_conn_free(struct mta_conn *);

#endif
