/*
 * probe.h: `mailgate probe [OPTIONS] HOST[:PORT]`, the administrator's telnet test
 * of an SMTP server, automated (spec/cli.md). It connects, speaks EHLO (or HELO),
 * optionally STARTTLS and AUTH, MAIL, RCPT, DATA and QUIT, prints the transcript
 * with the time of each reply and an explanation of each refusal (explain.h), and
 * ends with a verdict. Exit status: 0 accepted, 1 refused at some step, 2 usage
 * error, no connection, timeout or a broken conversation.
 */
#ifndef MAILGATE_PROBE_H
#define MAILGATE_PROBE_H

/* argv[0] is "probe" */
int probe_main(int argc, char **argv);

#endif
