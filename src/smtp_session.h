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

/* the server is stopping: answer 421 at the next command and close */
void smtp_session_shutdown(struct smtp_session *);

/* the server's list of sessions */
struct smtp_session *smtp_session_next(struct smtp_session *);

/* free at once, without a reply (the server's final teardown) */
void smtp_session_kill(struct smtp_session *);

#endif
