/*
 * smtp_session.h: the inbound SMTP state machine, one per accepted connection.
 */
#ifndef MAILGATE_SMTP_SESSION_H
#define MAILGATE_SMTP_SESSION_H

#include <sys/socket.h>

struct listener;
struct smtp_session;

/*
 * Take over an accepted socket: match the HAT, then greet (or refuse) the
 * client. local_text is the listener address the client connected to.
 */
void smtp_session_accept(struct listener *, int fd, const struct sockaddr *sa,
    socklen_t salen, const char *local_text);

/*
 * The same over a bufferevent with no socket under it (the session fuzzer's
 * in-memory transport, one end of a bufferevent_pair); sa is the peer to
 * pretend. The session owns bev from here, and frees it if it cannot start.
 */
struct bufferevent;
void smtp_session_accept_bev(struct listener *, struct bufferevent *,
    const struct sockaddr *sa, socklen_t salen, const char *local_text);

/*
 * The session's listener is suspended (or the server stopping) and the grace
 * delay is over: 421 now if idle, else at the next command or after the message.
 */
void smtp_session_drain(struct smtp_session *);

/* the listener a session came in on */
struct listener *smtp_session_listener(const struct smtp_session *);

/* the server's list of sessions */
struct smtp_session *smtp_session_next(struct smtp_session *);

/* free at once, without a reply (the server's final teardown) */
void smtp_session_kill(struct smtp_session *);

#endif
