/*
 * control.h: the control socket server, through which the `mailgate` command
 * talks to the running server. A UNIX stream socket (mode 0600) on the event
 * loop; only root and the server's own uid may use it. One request per
 * connection, newline-delimited JSON: the client sends
 * {"command": "status", "args": {...}}, the server answers {"ok": true,
 * "result": {...}} or {"ok": false, "error": "text"} and closes. The client
 * side, control_call(), lives with the subcommands in control_cmd.h.
 */
#ifndef MAILGATE_CONTROL_H
#define MAILGATE_CONTROL_H

#include <stddef.h>

#include <jansson.h>

struct event_base;
struct control;

/* a request line (without its newline) may be at most this long */
#define CONTROL_MAX_REQUEST	(64 * 1024)
/* seconds a client has to send its whole request */
#define CONTROL_READ_TIMEOUT	10

/*
 * A command's handler, run on the loop (it must not block). args is always an
 * object (empty when the request had none). Returns the result (the server
 * takes the reference and frees it), or NULL with a reason in err.
 */
typedef json_t *(*control_handler)(void *arg, const json_t *args, char *err, size_t errlen);

/*
 * Listen on path: creates its directory (0700) if missing, replaces a stale
 * socket nobody answers on, refuses if another server answers. NULL and a
 * reason naming the path in err on failure.
 */
struct control *control_open(struct event_base *, const char *path, char *err,
    size_t errlen);

/* 0, or -1 with errno (EEXIST: already registered, ENOMEM) */
int control_register(struct control *, const char *command, control_handler, void *arg);

/* close every connection and the socket, and unlink it (if it is still ours); NULL is fine */
void control_close(struct control *);

#endif
