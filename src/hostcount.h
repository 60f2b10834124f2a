/*
 * hostcount.h: what each client address is doing right now, across every
 * listener: its open connections (policies' max_connections_per_host) and the
 * recipients it sent over the last hour (max_recipients_per_hour, a sliding
 * hour in one-minute steps). Lives on the event-loop thread; never blocks.
 */
#ifndef MAILGATE_HOSTCOUNT_H
#define MAILGATE_HOSTCOUNT_H

#include <stdbool.h>
#include <time.h>

#include "hat.h"

struct hostcount;

struct hostcount *hostcount_new(void);
void hostcount_free(struct hostcount *);

/* a connection from a opened: the address's open connections, this one included; 0 if
 * it could not be counted (out of memory: the caller lets it in uncounted) */
unsigned hostcount_conn_open(struct hostcount *, const struct hat_addr *a);
void hostcount_conn_close(struct hostcount *, const struct hat_addr *a);

/* recipients accepted from a in the hour before now */
unsigned hostcount_rcpts_last_hour(struct hostcount *, const struct hat_addr *a, time_t now);

/* one more recipient accepted from a; false if it could not be counted (out of memory) */
bool hostcount_rcpt_add(struct hostcount *, const struct hat_addr *a, time_t now);

/* addresses tracked (for status and tests) */
size_t hostcount_size(const struct hostcount *);

#endif
