/*
 * queue_cmd.h: `mailgate queue ...`, the operator's view of the queue.
 *
 * list and show read the spool directory directly, so they work with or
 * without a running server (committed files are complete: they appear in
 * queue/ by rename). The actions that change the queue (delete, bounce, hold,
 * release, deliver) need the server's control socket and are refused for now.
 */
#ifndef MAILGATE_QUEUE_CMD_H
#define MAILGATE_QUEUE_CMD_H

/*
 * argv[0] is the action ("list", "show", ...), without the "-c FILE" that
 * main has already taken. Returns the exit status: 0 done, 1 no such message,
 * 2 usage or environment error.
 */
int queue_cmd_main(int argc, char **argv, const char *spooldir);

#endif
