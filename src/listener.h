/*
 * listener.h: the listening sockets of one configured listener, accept, and the
 * connection counts the limits are checked against.
 */
#ifndef MAILGATE_LISTENER_H
#define MAILGATE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

struct server;
struct listen_socket;

struct listener {
	struct server *srv;
	char *name;				/* the listener_conf of this name in srv->cfg */
	struct listen_socket **socks;		/* one per configured address */
	size_t n_socks;
	unsigned n_sessions;
	bool suspended;				/* new connections get 421 */
	bool draining;				/* ...and, the grace delay over, open sessions too */
	struct event *ev_drain;
};

/* bind every address of the listener named name; NULL and a reason in err */
struct listener *listener_open(struct server *, const char *name, char *err, size_t errlen);
void listener_close(struct listener *);

/*
 * Suspend: new connections get "421 <host> Service not available"; open sessions
 * may go on for grace seconds, then get the same 421 at their next command (idle
 * ones at once). Resume undoes it.
 */
void listener_suspend(struct listener *, unsigned grace);
void listener_resume(struct listener *);

/* stop accepting (final shutdown) */
void listener_disable(struct listener *);

#endif
