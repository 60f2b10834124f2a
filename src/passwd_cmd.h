/*
 * passwd_cmd.h: `mailgate passwd [USER]`, which reads a password on standard
 * input and prints the users-file line ("USER:<yescrypt hash>") for auth.users.
 */
#ifndef MAILGATE_PASSWD_CMD_H
#define MAILGATE_PASSWD_CMD_H

/* argv[0] is "passwd"; returns the exit status (0, or 2 on a usage or input error) */
int passwd_cmd_main(int argc, char **argv);

#endif
