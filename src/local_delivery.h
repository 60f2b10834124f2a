/*
 * local_delivery.h: the delivery agents that need no network (delivery.h):
 * /dev/null (every recipient accepted and the message discarded) and maildir
 * (one file per recipient in <path>/<mailbox>/new/, written to tmp/, fsync'ed,
 * renamed, new/ fsync'ed: only then is the recipient delivered). The disk work
 * runs on the agent's own thread; done() comes back on the event loop.
 */
#ifndef MAILGATE_LOCAL_DELIVERY_H
#define MAILGATE_LOCAL_DELIVERY_H

#include <stddef.h>

#include "delivery.h"

struct event_base;
struct local_agent;

/* start the worker thread; NULL and why in err on failure */
struct local_agent *local_agent_new(struct event_base *, char *err, size_t errlen);

/*
 * Once the loop has stopped: the worker finishes the file it is writing and
 * exits; batches not finished are dropped without their done() (their
 * recipients are tried again after a restart: at worst a duplicate). NULL is fine.
 */
void local_agent_free(struct local_agent *);

/*
 * Deliver a batch whose target is TARGET_DEVNULL or TARGET_MAILDIR. 0: done()
 * will be called later on the loop with every recipient's outcome filled in.
 * -1 with errno (ENOMEM, or EINVAL for another kind of target): nothing taken.
 */
int local_deliver(struct local_agent *, struct delivery_batch *);

/*
 * The directory name of an address's mailbox: lower-cased; '/', spaces and
 * control octets become '_', as do a leading '.' and the second '.' of "..",
 * so no name can leave <path>. Different addresses may share a name. 0, or -1
 * when none fits in cap (or the address is empty or longer than 255 octets).
 */
int local_mailbox_name(const char *address, char *out, size_t cap);

#endif
