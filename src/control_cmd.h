/*
 * control_cmd.h: the subcommands that talk to the running server through its
 * control socket (status, reload, listener suspend/resume, the queue actions),
 * and the client side of the control protocol they share (control.h is the
 * server side).
 * Exit statuses follow spec/cli.md: 0 done, 1 the server said no, 2 usage
 * error or no server to talk to.
 */
#ifndef MAILGATE_CONTROL_CMD_H
#define MAILGATE_CONTROL_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct config;

/* seconds a whole control_call() may take */
#define CONTROL_CALL_TIMEOUT	30

/*
 * Send one command (args may be NULL; it is not consumed) and wait for the
 * answer, blocking. 0: *result holds the result (a new reference; result may
 * be NULL when not wanted). 1: the server said no; err holds its reason.
 * 2: no server could be talked to; err says why, e.g. "no mailgate server is
 * running (control socket PATH: No such file or directory)".
 */
int control_call(const char *path, const char *command, json_t *args, json_t **result,
    char *err, size_t errlen);

/*
 * argv[0] is the subcommand's name ("status", ...), without the "-c FILE"
 * that main has already taken. Each returns the exit status.
 *   status [detail] [--json]
 *   reload
 *   listener suspend NAME [SECONDS] | resume NAME
 */
int control_cmd_status(int argc, char **argv, const struct config *);
int control_cmd_reload(int argc, char **argv, const struct config *);
int control_cmd_listener(int argc, char **argv, const struct config *);

/*
 *   tophosts [active|connections|delivered|soft|hard] [--all] [--json]
 * the recipient hosts sorted by that column (default active), the top 20
 * unless --all
 */
int control_cmd_tophosts(int argc, char **argv, const struct config *);

/* delete, bounce, hold, release, deliver: the queue actions the server does */
bool control_cmd_is_queue_action(const char *);

/*
 *   queue delete|bounce|hold|release MID...   (every MID queued, or nothing done: 1)
 *   queue deliver [DOMAIN]
 */
int control_cmd_queue(int argc, char **argv, const struct config *);

#endif
