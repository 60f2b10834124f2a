/*
 * main.c: the `mailgate` command. Parses argv and dispatches to a subcommand.
 * Exit status (spec/cli.md): 0 success, 1 the operation said no (a check failed,
 * a server refused), 2 usage or environment error.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "queue_cmd.h"
#include "server.h"

#define EXIT_NO		1
#define EXIT_USAGE	2

struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *summary;
};

static int cmd_serve(int, char **);
static int cmd_check(int, char **);
static int cmd_queue(int, char **);
static int cmd_help(int, char **);

static const struct subcommand subcommands[] = {
	{ "serve", cmd_serve, "mailgate serve [-c FILE]",
	    "run the server in the foreground (SIGHUP reloads, SIGTERM drains and stops)" },
	{ "check", cmd_check, "mailgate check [-c FILE]",
	    "validate a config and print the effective one" },
	{ "queue", cmd_queue, "mailgate queue [-c FILE] list [--json] | show MID",
	    "list the queued messages, or show one" },
	{ "help", cmd_help, "mailgate help [SUBCOMMAND]", "usage of mailgate or of a subcommand" },
};

static const struct subcommand *
find_subcommand(const char *name)
{
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (strcmp(subcommands[i].name, name) == 0)
			return &subcommands[i];
	return NULL;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: mailgate SUBCOMMAND [ARGS]\n\nsubcommands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(f, "  %-50s %s\n", subcommands[i].usage, subcommands[i].summary);
	fprintf(f, "\nWithout -c, ./mailgate.conf is used if it exists, else the embedded "
	    "default.\n");
}

static bool
is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/*
 * Take "-c FILE" (right after the subcommand's name, or anywhere after it) out of
 * argv. Returns 0, or -1 on a usage error. *path is NULL when not given.
 */
static int
take_config_opt(int *argc, char **argv, const char **path)
{
	*path = NULL;
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "-c") != 0)
			continue;
		if (i + 1 >= *argc || *path != NULL)
			return -1;
		*path = argv[i + 1];
		memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof(*argv));
		*argc -= 2;
		argv[*argc] = NULL;
		i--;
	}
	return 0;
}

/* load the config a subcommand uses; prints errors; NULL with *status set */
static struct config *
load_config(const char *given, const char **used, int *status)
{
	char err[8192];
	const char *path = config_pick_path(given);
	struct config *cfg;

	if (given != NULL && access(given, R_OK) == -1) {
		fprintf(stderr, "mailgate: %s: %s\n", given, strerror(errno));
		*status = EXIT_USAGE;
		return NULL;
	}
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
		*status = EXIT_NO;
		return NULL;
	}
	if (used)
		*used = path;
	return cfg;
}

static int
sub_usage(const char *name, FILE *f, int status)
{
	fprintf(f, "usage: %s\n", find_subcommand(name)->usage);
	return status;
}

static int
cmd_serve(int argc, char **argv)
{
	const char *given, *path = NULL;
	struct config *cfg;
	int status;

	if (argc > 1 && is_help(argv[1]))
		return sub_usage("serve", stdout, 0);
	if (take_config_opt(&argc, argv, &given) == -1 || argc != 1)
		return sub_usage("serve", stderr, EXIT_USAGE);
	if ((cfg = load_config(given, &path, &status)) == NULL)
		return status;
	return server_run(cfg, path);
}

static int
cmd_check(int argc, char **argv)
{
	const char *given;
	struct config *cfg;
	int status;

	if (argc > 1 && is_help(argv[1]))
		return sub_usage("check", stdout, 0);
	if (take_config_opt(&argc, argv, &given) == -1 || argc != 1)
		return sub_usage("check", stderr, EXIT_USAGE);
	if ((cfg = load_config(given, NULL, &status)) == NULL)
		return status;
	config_print(cfg, stdout);
	config_unref(cfg);
	return 0;
}

static int
cmd_queue(int argc, char **argv)
{
	const char *given;
	struct config *cfg;
	int status;

	if (argc > 1 && is_help(argv[1]))
		return sub_usage("queue", stdout, 0);
	if (take_config_opt(&argc, argv, &given) == -1 || argc < 2)
		return sub_usage("queue", stderr, EXIT_USAGE);
	if ((cfg = load_config(given, NULL, &status)) == NULL)
		return status;
	status = queue_cmd_main(argc - 1, argv + 1, cfg->spool);
	config_unref(cfg);
	return status;
}

static int
cmd_help(int argc, char **argv)
{
	const struct subcommand *sc;

	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	if ((sc = find_subcommand(argv[1])) == NULL) {
		fprintf(stderr, "mailgate: no subcommand %s\n", argv[1]);
		return EXIT_USAGE;
	}
	printf("usage: %s\n  %s\n", sc->usage, sc->summary);
	return 0;
}

int
main(int argc, char **argv)
{
	const struct subcommand *sc;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (is_help(argv[1])) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("mailgate %s\n", MAILGATE_VERSION);
		return 0;
	}
	if ((sc = find_subcommand(argv[1])) == NULL) {
		fprintf(stderr, "mailgate: unknown subcommand '%s'\n\n", argv[1]);
		usage(stderr);
		return EXIT_USAGE;
	}
	return sc->run(argc - 1, argv + 1);
}
