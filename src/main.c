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
#include "control_cmd.h"
#include "explain.h"
#include "passwd_cmd.h"
#include "probe.h"
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
static int cmd_status(int, char **);
static int cmd_tophosts(int, char **);
static int cmd_reload(int, char **);
static int cmd_listener(int, char **);
static int cmd_probe(int, char **);
static int cmd_explain(int, char **);
static int cmd_passwd(int, char **);
static int cmd_help(int, char **);

static const struct subcommand subcommands[] = {
	{ "serve", cmd_serve, "mailgate serve [-c FILE]",
	    "run the server in the foreground (SIGHUP reloads, SIGTERM drains and stops)" },
	{ "check", cmd_check, "mailgate check [-c FILE]",
	    "validate a config and print the effective one" },
	{ "queue", cmd_queue, "mailgate queue [-c FILE] list [--json] | show MID | "
	    "delete|bounce|hold|release MID... | deliver [DOMAIN]",
	    "list the queued messages or show one (from the spool); act on them (server)" },
	{ "status", cmd_status, "mailgate status [-c FILE] [detail] [--json]",
	    "counters and gauges of the running server" },
	{ "tophosts", cmd_tophosts, "mailgate tophosts [-c FILE] "
	    "[active|connections|delivered|soft|hard] [--all] [--json]",
	    "recipient hosts by active recipients, connections out, delivered, bounced" },
	{ "reload", cmd_reload, "mailgate reload [-c FILE]",
	    "make the running server reload its config (same as SIGHUP)" },
	{ "listener", cmd_listener, "mailgate listener [-c FILE] suspend|resume NAME",
	    "stop accepting on a listener (suspend NAME [SECONDS]: default 30), or start again" },
	{ "probe", cmd_probe, "mailgate probe [OPTIONS] HOST[:PORT]",
	    "the telnet test of an SMTP server, automated and explained (--help: options)" },
	{ "explain", cmd_explain, "mailgate explain [-c FILE] REPLY...",
	    "what a reply means, the setting behind it and what the sender should do" },
	{ "passwd", cmd_passwd, "mailgate passwd [USER]",
	    "read a password on standard input and print a users-file line (yescrypt)" },
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
		fprintf(f, "  %s\n      %s\n", subcommands[i].usage, subcommands[i].summary);
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
take_config_opt(int *argc, char **argv, const char **path, bool anywhere)
{
	*path = NULL;
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "-c") != 0) {
			/* explain's words are free text: there -c counts only first */
			if (!anywhere)
				break;
			continue;
		}
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
	if (take_config_opt(&argc, argv, &given, true) == -1 || argc != 1)
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
	if (take_config_opt(&argc, argv, &given, true) == -1 || argc != 1)
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
	if (take_config_opt(&argc, argv, &given, true) == -1 || argc < 2)
		return sub_usage("queue", stderr, EXIT_USAGE);
	if ((cfg = load_config(given, NULL, &status)) == NULL)
		return status;
	/* list and show read the spool; the actions are the running server's */
	if (control_cmd_is_queue_action(argv[1]))
		status = control_cmd_queue(argc - 1, argv + 1, cfg);
	else
		status = queue_cmd_main(argc - 1, argv + 1, cfg->spool);
	config_unref(cfg);
	return status;
}

/* the control subcommands: the config only names the control socket */
static int
cmd_status(int argc, char **argv)
{
	const char *given;
	struct config *cfg;
	int status;

	/* --help before or after -c FILE */
	if (take_config_opt(&argc, argv, &given, true) == -1)
		return sub_usage("status", stderr, EXIT_USAGE);
	if (argc > 1 && is_help(argv[1]))
		return sub_usage("status", stdout, 0);
	if ((cfg = load_config(given, NULL, &status)) == NULL)
		return status;
	status = control_cmd_status(argc, argv, cfg);
	config_unref(cfg);
	return status;
}

static int
cmd_tophosts(int argc, char **argv)
{
	const char *given;
	struct config *cfg;
	int status;

	/* --help before or after -c FILE */
	if (take_config_opt(&argc, argv, &given, true) == -1)
		return sub_usage("tophosts", stderr, EXIT_USAGE);
	if (argc > 1 && is_help(argv[1]))
		return sub_usage("tophosts", stdout, 0);
	if ((cfg = load_config(given, NULL, &status)) == NULL)
		return status;
	status = control_cmd_tophosts(argc, argv, cfg);
	config_unref(cfg);
	return status;
}

static int
cmd_reload(int argc, char **argv)
{
	const char *given;
	struct config *cfg;
	int status;

	/* --help before or after -c FILE */
	if (take_config_opt(&argc, argv, &given, true) == -1)
		return sub_usage("reload", stderr, EXIT_USAGE);
	if (argc > 1 && is_help(argv[1]))
		return sub_usage("reload", stdout, 0);
	if ((cfg = load_config(given, NULL, &status)) == NULL)
		return status;
	status = control_cmd_reload(argc, argv, cfg);
	config_unref(cfg);
	return status;
}

static int
cmd_listener(int argc, char **argv)
{
	const char *given;
	struct config *cfg;
	int status;

	/* --help before or after -c FILE */
	if (take_config_opt(&argc, argv, &given, true) == -1)
		return sub_usage("listener", stderr, EXIT_USAGE);
	if (argc > 1 && is_help(argv[1]))
		return sub_usage("listener", stdout, 0);
	if ((cfg = load_config(given, NULL, &status)) == NULL)
		return status;
	status = control_cmd_listener(argc, argv, cfg);
	config_unref(cfg);
	return status;
}

static int
cmd_probe(int argc, char **argv)
{
	return probe_main(argc, argv);
}

/* explain shows current values, but a broken config must not stop an explanation */
static int
cmd_explain(int argc, char **argv)
{
	const char *given;
	struct config *cfg;
	int status;

	if (argc > 1 && is_help(argv[1]))
		return explain_main(argc, argv, NULL);
	if (take_config_opt(&argc, argv, &given, false) == -1)
		return sub_usage("explain", stderr, EXIT_USAGE);
	if ((cfg = load_config(given, NULL, &status)) == NULL && status == EXIT_USAGE)
		return status;
	if (cfg == NULL)
		fprintf(stderr, "mailgate explain: the config has errors; current values are "
		    "not shown\n");
	status = explain_main(argc, argv, cfg);
	if (cfg != NULL)
		config_unref(cfg);
	return status;
}

/* no config: the line printed goes into whichever users file the admin keeps */
static int
cmd_passwd(int argc, char **argv)
{
	if (argc > 1 && is_help(argv[1]))
		return sub_usage("passwd", stdout, 0);
	return passwd_cmd_main(argc, argv);
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
