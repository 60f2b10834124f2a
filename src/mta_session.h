/*
 * mta_session.h: the outbound SMTP client, the delivery agent for SMTP routes
 * (host[:port], [address][:port] and USEDNS); the mirror of smtp_session.c.
 *
 * mta_deliver() takes a batch (delivery.h) whose target is TARGET_HOST or
 * TARGET_USEDNS, finds the addresses (A/AAAA of the host; or MX by preference,
 * equal preferences shuffled, the domain itself when it has no MX, RFC 5321
 * 5.1), and tries them in order, the next one when a connection cannot be made
 * or the server will not talk (no greeting, a 4xx/5xx greeting, EHLO/HELO
 * refused). On a connection it speaks EHLO (HELO if EHLO gets a 5xx),
 * opportunistic STARTTLS (RFC 3207, certificate not verified), PIPELINING (RFC
 * 2920), SIZE (RFC 1870), BODY=8BITMIME (RFC 6152) when the spool envelope says
 * so, and streams the message from the queue file, dot-stuffed. Every recipient
 * gets an outcome: 2xx after the final dot OK, 4xx or any connection trouble
 * TEMPFAIL (code 0 and our reason when the server said nothing), 5xx PERMFAIL.
 * Then batch->done() is called exactly once, on the loop, never from inside
 * mta_deliver().
 *
 * At most delivery.max_connections connections in all and
 * max_connections_per_destination to one address:port are open; batches beyond
 * that wait in a queue, in order. A connection that finished a message carries
 * the next batch for the same destination (RSET first), and closes after a short
 * idle time. Each connection has a DCID and logs New SMTP DCID, Delivery start,
 * Message done, TLS success/failed and DCID close; Delayed and Bounced are the
 * scheduler's to log. The queue file is only read, never changed.
 */
#ifndef MAILGATE_MTA_SESSION_H
#define MAILGATE_MTA_SESSION_H

#include <stdint.h>

struct event_base;
struct dns;
struct config;
struct delivery_batch;
struct hoststats;
struct mta;

/*
 * An agent on base that resolves through dns (both must outlive it). The
 * config's hostname (for EHLO) and delivery limits are copied; NULL when out of
 * memory.
 */
struct mta *mta_new(struct event_base *, struct dns *, const struct config *);

/* a reload: new limits and hostname for connections opened from now on */
int mta_set_config(struct mta *, const struct config *);

/*
 * Closes every connection at once and forgets every batch in progress without
 * calling its done(): their outcomes were never reported, so the scheduler still
 * owes them a delivery (at worst a duplicate, never a loss). Loop thread only.
 */
void mta_free(struct mta *);

/*
 * Start delivering batch (target TARGET_HOST or TARGET_USEDNS). The batch and
 * every string it points to must stay valid until its done() is called. The
 * agent writes only the recipients' status, code, enhanced and reply, and dcid.
 */
void mta_deliver(struct mta *, struct delivery_batch *);

/* for `mailgate status`: delivery connections open now */
unsigned mta_connections(const struct mta *);

/* for `mailgate tophosts`: each connection carrying a batch counts for its domain */
int mta_hoststats(const struct mta *, struct hoststats *);

/*
 * ---- for tests ----
 * A test build (-Dfault_hooks=true) also reads, in mta_new(), the environment's
 * MAILGATE_TEST_MX_PORT (the port USEDNS connects to) and
 * MAILGATE_TEST_MTA_TIMEOUT_MS (every timeout but the idle one): the
 * integration tests cannot bind port 25 nor wait minutes for a silent server.
 */

/* every timeout, in milliseconds (the defaults are RFC 5321 4.5.3.2's) */
struct mta_timeouts {
	unsigned connect;	/* TCP connect */
	unsigned greeting;	/* the 220: 5 min */
	unsigned helo;		/* EHLO, HELO, STARTTLS, RSET */
	unsigned tls;		/* the TLS handshake */
	unsigned mail;		/* MAIL: 5 min */
	unsigned rcpt;		/* each RCPT: 5 min */
	unsigned data;		/* DATA's 354: 2 min */
	unsigned block;		/* each block of message data to be taken: 3 min */
	unsigned dot;		/* the reply to the final dot: 10 min */
	unsigned quit;
	unsigned idle;		/* a connection waiting for another batch */
};

void mta_set_timeouts_for_tests(struct mta *, const struct mta_timeouts *);

/* USEDNS connects to this port instead of 25 (0 = 25 again): tests cannot bind 25 */
void mta_set_port_for_tests(struct mta *, uint16_t port);

#endif
