/*
 * passwd_cmd.c: `mailgate passwd [USER]` (spec/cli.md). One line of standard
 * input is the password (the newline is not part of it); the output is a line
 * for the users file with a fresh yescrypt hash, for the administrator to append.
 * Nothing is echoed or prompted: the password comes from a pipe or a redirect.
 */
#include "passwd_cmd.h"
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PASSWD_EXIT_USAGE	2

/* one line of stdin without its line end; NULL (reason printed) when unusable */
static char *
passwd_read(size_t *lenp)
{
	char *line = NULL;
	size_t cap = 0, len;
	ssize_t n;

	/* unbuffered: no copy of the password left in a stdio buffer, nothing read past it */
	setvbuf(stdin, NULL, _IONBF, 0);
	if ((n = getline(&line, &cap, stdin)) == -1) {
		if (ferror(stdin))
			fprintf(stderr, "mailgate passwd: reading standard input: %s\n",
			    strerror(errno));
		else
			fprintf(stderr, "mailgate passwd: no password on standard input\n");
		free(line);
		return NULL;
	}
	len = (size_t)n;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	/* a line typed or saved on Windows: the CR is no more part of it */
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	*lenp = len;
	if (len == 0)
		fprintf(stderr, "mailgate passwd: the password is empty\n");
	else if (memchr(line, '\0', len) != NULL)
		fprintf(stderr, "mailgate passwd: the password holds a NUL byte\n");
	else if (len > AUTH_PASS_MAX)
		fprintf(stderr, "mailgate passwd: the password is longer than %d octets\n",
		    AUTH_PASS_MAX);
	else
		return line;
	explicit_bzero(line, cap);
	free(line);
	return NULL;
}

int
passwd_cmd_main(int argc, char **argv)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *user, *hash;
	struct passwd *pw;
	char *pass;
	size_t plen;
	int status = 0;

	if (argc > 2) {
		fprintf(stderr, "usage: mailgate passwd [USER]\n");
		return PASSWD_EXIT_USAGE;
	}
	if (argc == 2)
		user = argv[1];
	else if ((pw = getpwuid(getuid())) != NULL)
		user = pw->pw_name;
	else {
		fprintf(stderr, "mailgate passwd: no login name for uid %ld: give USER\n",
		    (long)getuid());
		return PASSWD_EXIT_USAGE;
	}
	/* the same rule as the users file, so the line printed is one it accepts */
	if (!auth_valid_name(user, strlen(user))) {
		fprintf(stderr, "mailgate passwd: a user name is 1 to %d printable characters "
		    "without ':', spaces or control characters\n", AUTH_NAME_MAX);
		return PASSWD_EXIT_USAGE;
	}
	if ((pass = passwd_read(&plen)) == NULL)
		return PASSWD_EXIT_USAGE;

	/* ~32 KiB, zeroed before the first crypt_rn() as libcrypt asks */
	if ((cd = calloc(1, sizeof(*cd))) == NULL) {
		fprintf(stderr, "mailgate passwd: out of memory\n");
		status = PASSWD_EXIT_USAGE;
	} else if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, (int)sizeof(setting)) == NULL ||
	    setting[0] == '*' ||
	    (hash = crypt_rn(pass, setting, cd, (int)sizeof(*cd))) == NULL || hash[0] == '*') {
		fprintf(stderr, "mailgate passwd: libcrypt cannot make a yescrypt hash: %s\n",
		    strerror(errno));
		status = PASSWD_EXIT_USAGE;
	} else if (printf("%s:%s\n", user, hash) < 0 || fflush(stdout) == EOF) {
		fprintf(stderr, "mailgate passwd: writing standard output: %s\n",
		    strerror(errno));
		status = PASSWD_EXIT_USAGE;
	}
	explicit_bzero(pass, plen);
	free(pass);
	if (cd != NULL) {
		explicit_bzero(cd, sizeof(*cd));
		free(cd);
	}
	return status;
}
