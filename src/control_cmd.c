/*
 * control_cmd.c: `mailgate status`, `tophosts`, `reload`, `listener suspend|resume` and
 * `queue delete|bounce|hold|release|deliver`, and control_call(), the
 * blocking client of the control protocol (see control_cmd.h and control.h).
 *
 * The client runs in the command, never in the server, so it may block, but
 * never for longer than CONTROL_CALL_TIMEOUT in all: a server that accepts and
 * then says nothing must not hang an operator's shell or a script. status
 * prints whatever the server's handler returns, in its order, so a counter
 * added there shows up here without a change.
 */
#include "control_cmd.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "hoststats.h"

/* the longest answer we read (a queue listing is the largest there will be) */
#define CONTROL_MAX_REPLY	(64 * 1024 * 1024)

/* ---- the client ---- */

static int64_t
control_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait for events on fd until deadline: 1 ready, 0 timed out, -1 error */
static int
control_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left;
	int r;

	for (;;) {
		if ((left = deadline - control_now_ms()) <= 0)
			return 0;
		r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r == -1 && errno == EINTR)
			continue;
		return r > 0 ? 1 : r;
	}
}

/* "{"command": ..., "args": {...}}\n", malloc'ed; NULL on ENOMEM */
static char *
control_request_text(const char *command, json_t *args, size_t *len)
{
	json_t *req = json_object();
	char *body = NULL, *text = NULL;

	if (req == NULL || json_object_set_new(req, "command", json_string(command)) == -1 ||
	    json_object_set_new(req, "args", args ? json_incref(args) : json_object()) == -1 ||
	    (body = json_dumps(req, JSON_COMPACT)) == NULL)
		goto out;
	*len = strlen(body) + 1;
	if ((text = malloc(*len + 1)) != NULL) {
		memcpy(text, body, *len - 1);
		memcpy(text + *len - 1, "\n", 2);
	}
out:
	free(body);
	json_decref(req);
	return text;
}

/* connect, with the whole call's deadline as the connect timeout; -1 with errno */
static int
control_connect(const char *path, int64_t deadline)
{
	struct sockaddr_un sun;
	struct timeval tv;
	int64_t left = deadline - control_now_ms();
	int fd, e;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	/* a UNIX connect blocks only on a full backlog; SO_SNDTIMEO bounds that */
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/*
 * Send text; a server that closes early (it refused us, or the request was too
 * large) has its answer waiting, so EPIPE ends the sending, not the call.
 * 0, or -1 with errno (ETIMEDOUT past the deadline).
 */
static int
control_send(int fd, const char *text, size_t len, int64_t deadline)
{
	size_t off = 0;
	ssize_t n;
	int r;

	while (off < len) {
		if ((n = send(fd, text + off, len - off, MSG_NOSIGNAL)) > 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			return 0;
		if (errno != EAGAIN)
			return -1;
		if ((r = control_wait(fd, POLLOUT, deadline)) <= 0) {
			if (r == 0)
				errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

/* read one answer line (or up to EOF); malloc'ed in *out; -1 with errno */
static int
control_recv(int fd, char **out, size_t *outlen, int64_t deadline)
{
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	ssize_t n;
	int r;

	for (;;) {
		if (cap - len < 4096) {
			if (cap >= CONTROL_MAX_REPLY) {
				errno = EMSGSIZE;
				goto fail;
			}
			cap = cap ? cap * 2 : 16384;
			if ((nb = realloc(buf, cap)) == NULL)
				goto fail;
			buf = nb;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n > 0) {
			char *nl = memchr(buf + len, '\n', (size_t)n);

			len += (size_t)n;
			if (nl != NULL) {
				len = (size_t)(nl - buf);
				break;
			}
			continue;
		}
		if (n == 0 || (errno == ECONNRESET && len > 0))
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			goto fail;
		if ((r = control_wait(fd, POLLIN, deadline)) <= 0) {
			if (r == 0)
				errno = ETIMEDOUT;
			goto fail;
		}
	}
	*out = buf;
	*outlen = len;
	return 0;
fail:
	free(buf);
	return -1;
}

int
control_call(const char *path, const char *command, json_t *args, json_t **result,
    char *err, size_t errlen)
{
	int64_t deadline = control_now_ms() + CONTROL_CALL_TIMEOUT * 1000;
	char *req = NULL, *ans = NULL;
	size_t reqlen, anslen;
	json_t *resp = NULL, *ok, *res;
	json_error_t jerr;
	int fd = -1, status = 2;

	if (result)
		*result = NULL;
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "control socket %s: the path is too long", path);
		return 2;
	}
	if ((req = control_request_text(command, args, &reqlen)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return 2;
	}
	if ((fd = control_connect(path, deadline)) == -1) {
		if (errno == EACCES || errno == EPERM)
			snprintf(err, errlen, "cannot talk to the mailgate server (control socket "
			    "%s: %s)", path, strerror(errno));
		else if (errno == EAGAIN || errno == ETIMEDOUT)
			snprintf(err, errlen, "the mailgate server did not answer within %d "
			    "seconds (control socket %s)", CONTROL_CALL_TIMEOUT, path);
		else
			snprintf(err, errlen, "no mailgate server is running (control socket "
			    "%s: %s)", path, strerror(errno));
		goto out;
	}
	if (control_send(fd, req, reqlen, deadline) == -1 ||
	    control_recv(fd, &ans, &anslen, deadline) == -1) {
		if (errno == ETIMEDOUT)
			snprintf(err, errlen, "the mailgate server did not answer within %d "
			    "seconds (control socket %s)", CONTROL_CALL_TIMEOUT, path);
		else
			snprintf(err, errlen, "cannot talk to the mailgate server (control socket "
			    "%s: %s)", path, strerror(errno));
		goto out;
	}
	if (anslen == 0) {
		snprintf(err, errlen, "the mailgate server closed the connection without an "
		    "answer (control socket %s)", path);
		goto out;
	}
	if ((resp = json_loadb(ans, anslen, 0, &jerr)) == NULL ||
	    !json_is_boolean(ok = json_object_get(resp, "ok"))) {
		snprintf(err, errlen, "the mailgate server's answer is malformed (control socket "
		    "%s)", path);
		goto out;
	}
	if (json_is_false(ok)) {
		const char *e = json_string_value(json_object_get(resp, "error"));

		snprintf(err, errlen, "%s", e ? e : "the server refused without a reason");
		status = 1;
		goto out;
	}
	if (result) {
		res = json_object_get(resp, "result");
		*result = res ? json_incref(res) : json_object();
		if (*result == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	status = 0;
out:
	if (fd != -1)
		close(fd);
	json_decref(resp);
	free(ans);
	free(req);
	return status;
}

/* ---- printing ---- */

/* server text onto a terminal: no control characters (newlines when lines) */
static void
control_put(FILE *f, const char *s, bool lines)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p < 0x20 && *p != '\t' && !(lines && *p == '\n')) || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			putc(*p, f);
	}
}

static bool
control_is_scalar(const json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

static void
control_put_scalar(FILE *f, const json_t *v)
{
	/* cppcheck-suppress nullPointerRedundantCheck ; callers pass a value: control_call's status 0 comes with a result */
	switch (json_typeof(v)) {
	case JSON_STRING:
		control_put(f, json_string_value(v), false);
		break;
	case JSON_INTEGER:
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		fprintf(f, "%g", json_real_value(v));
		break;
	case JSON_TRUE:
		fputs("true", f);
		break;
	case JSON_FALSE:
		fputs("false", f);
		break;
	default:
		fputs("-", f);
		break;
	}
}

/* an array of scalars only, which fits on one line */
static bool
control_is_flat(const json_t *a)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
		if (!control_is_scalar(v))
			return false;
	return true;
}

/* a flat array on one line: "a, b, c" */
static void
control_put_inline(FILE *f, const json_t *a)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v) {
		if (i > 0)
			fputs(", ", f);
		control_put_scalar(f, v);
	}
}

static void control_print_object(FILE *, const json_t *, int indent, const char *skip);

/* an array of objects: each under its "name" when it has one, else its index */
static void
control_print_array(FILE *f, const json_t *a, int indent)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));

		fprintf(f, "%*s", indent, "");
		if (json_is_object(v) && name != NULL) {
			control_put(f, name, false);
			fputs(":\n", f);
			control_print_object(f, v, indent + 2, "name");
		} else if (json_is_object(v)) {
			fprintf(f, "[%zu]:\n", i);
			control_print_object(f, v, indent + 2, NULL);
		} else if (json_is_array(v)) {
			fprintf(f, "[%zu]:\n", i);
			control_print_array(f, v, indent + 2);
		} else {
			fputs("- ", f);
			control_put_scalar(f, v);
			putc('\n', f);
		}
	}
}

/* "key: value" lines, the values of one object aligned; nested ones indented */
static void
control_print_object(FILE *f, const json_t *obj, int indent, const char *skip)
{
	const char *key;
	json_t *v;
	size_t width = 0;

	json_object_foreach((json_t *)obj, key, v)
		if ((skip == NULL || strcmp(key, skip) != 0) && strlen(key) > width)
			width = strlen(key);
	json_object_foreach((json_t *)obj, key, v) {
		if (skip != NULL && strcmp(key, skip) == 0)
			continue;
		fprintf(f, "%*s", indent, "");
		control_put(f, key, false);
		putc(':', f);
		if (json_is_object(v) && json_object_size(v) > 0) {
			putc('\n', f);
			control_print_object(f, v, indent + 2, NULL);
			continue;
		}
		if (json_is_array(v) && !control_is_flat(v)) {
			putc('\n', f);
			control_print_array(f, v, indent + 2);
			continue;
		}
		fprintf(f, "%*s ", (int)(width - strlen(key)), "");
		if ((json_is_object(v) || json_is_array(v)) &&
		    (json_is_object(v) ? json_object_size(v) : json_array_size(v)) == 0)
			fputs("(none)", f);
		else if (json_is_array(v))
			control_put_inline(f, v);
		else
			control_put_scalar(f, v);
		putc('\n', f);
	}
}

/* ---- the subcommands ---- */

static int
control_fail(int status, const char *err)
{
	fputs("mailgate: ", stderr);
	control_put(stderr, err, true);
	putc('\n', stderr);
	return status;
}

static int
control_usage(const char *text)
{
	fprintf(stderr, "usage: %s\n", text);
	return 2;
}

int
control_cmd_status(int argc, char **argv, const struct config *cfg)
{
	static const char usage[] = "mailgate status [-c FILE] [detail] [--json]";
	bool detail = false, as_json = false;
	json_t *args, *result;
	char err[4096];
	int status;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "detail") == 0 && !detail)
			detail = true;
		else if (strcmp(argv[i], "--json") == 0 && !as_json)
			as_json = true;
		else
			return control_usage(usage);
	}
	if ((args = json_pack("{s:b}", "detail", detail)) == NULL)
		return control_fail(2, "out of memory");
	status = control_call(cfg->control, "status", args, &result, err, sizeof(err));
	json_decref(args);
	if (status != 0)
		return control_fail(status, err);
	if (as_json) {
		json_dumpf(result, stdout, JSON_COMPACT);
		putchar('\n');
	} else if (json_is_object(result))
		control_print_object(stdout, result, 0, NULL);
	else if (json_is_array(result))
		control_print_array(stdout, result, 0);
	else {
		control_put_scalar(stdout, result);
		putchar('\n');
	}
	json_decref(result);
	return 0;
}

int
control_cmd_reload(int argc, char **argv, const struct config *cfg)
{
	char err[4096];
	int status;

	(void)argv;
	if (argc != 1)
		return control_usage("mailgate reload [-c FILE]");
	status = control_call(cfg->control, "reload", NULL, NULL, err, sizeof(err));
	if (status != 0)
		return control_fail(status, err);
	printf("the server reloaded its configuration\n");
	return 0;
}

int
control_cmd_listener(int argc, char **argv, const struct config *cfg)
{
	static const char usage[] = "mailgate listener [-c FILE] suspend NAME [SECONDS]\n"
	    "       mailgate listener [-c FILE] resume NAME";
	unsigned secs = 30;
	bool suspend;
	json_t *args;
	char err[4096];
	int status;

	if (argc < 3)
		return control_usage(usage);
	if (strcmp(argv[1], "suspend") == 0 && argc <= 4)
		suspend = true;
	else if (strcmp(argv[1], "resume") == 0 && argc == 3)
		suspend = false;
	else
		return control_usage(usage);
	/* "30", "30s", "2m": the config's duration syntax */
	if (argc == 4 && config_parse_duration(argv[3], &secs) == -1) {
		fprintf(stderr, "mailgate: not a number of seconds: ");
		control_put(stderr, argv[3], false);
		putc('\n', stderr);
		return 2;
	}
	args = suspend ? json_pack("{s:s, s:I}", "name", argv[2], "seconds", (json_int_t)secs) :
	    json_pack("{s:s}", "name", argv[2]);
	if (args == NULL)
		return control_fail(2, "out of memory (or the name is not UTF-8)");
	status = control_call(cfg->control, suspend ? "listener-suspend" : "listener-resume",
	    args, NULL, err, sizeof(err));
	json_decref(args);
	if (status != 0)
		return control_fail(status, err);
	printf("listener ");
	control_put(stdout, argv[2], false);
	fputs(suspend ? " suspended\n" : " resumed\n", stdout);
	return 0;
}

/* ---- tophosts ---- */

/* one table row's counter, "-" when the server did not send it */
static void
control_put_count(const json_t *row, const char *key, int width)
{
	const json_t *v = json_object_get(row, key);

	if (json_is_integer(v))
		printf(" %*" JSON_INTEGER_FORMAT, width, json_integer_value(v));
	else
		printf(" %*s", width, "-");
}

int
control_cmd_tophosts(int argc, char **argv, const struct config *cfg)
{
	static const char usage[] = "mailgate tophosts [-c FILE] "
	    "[active|connections|delivered|soft|hard] [--all] [--json]";
	static const char *const keys[] = { "active_recipients", "connections_out",
	    "delivered", "soft_bounced", "hard_bounced" };
	const char *sort = "active";
	bool as_json = false, all = false, sorted = false;
	json_t *args, *result, *rows, *row;
	size_t i, width = 14;
	char err[4096];
	int status;

	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--json") == 0 && !as_json)
			as_json = true;
		else if (strcmp(argv[k], "--all") == 0 && !all)
			all = true;
		else if (!sorted && hoststats_col_by_name(argv[k]) != -1) {
			sort = argv[k];
			sorted = true;
		} else
			return control_usage(usage);
	}
	if ((args = json_pack("{s:s, s:I}", "sort", sort, "limit", (json_int_t)(all ? 0 : 20)))
	    == NULL)
		return control_fail(2, "out of memory (or the sort order is not UTF-8)");
	status = control_call(cfg->control, "tophosts", args, &result, err, sizeof(err));
	json_decref(args);
	if (status != 0)
		return control_fail(status, err);
	rows = json_object_get(result, "hosts");
	if (as_json) {
		json_dumpf(result, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(result);
		return 0;
	}
	json_array_foreach(rows, i, row) {
		const char *h = json_string_value(json_object_get(row, "host"));

		if (h != NULL && strlen(h) > width)
			width = strlen(h) > 60 ? 60 : strlen(h);
	}
	/* the reference's table: the recipient host, then five counters */
	printf("%-4s %-*s %8s %8s %8s %8s %8s\n", "", (int)width, "", "Active", "Conn.",
	    "Deliv.", "Soft", "Hard");
	printf("%-4s %-*s %8s %8s %8s %8s %8s\n", "#", (int)width, "Recipient Host", "Recip.",
	    "Out", "Recip.", "Bounced", "Bounced");
	json_array_foreach(rows, i, row) {
		const char *h = json_string_value(json_object_get(row, "host"));

		printf("%-4zu ", i + 1);
		control_put(stdout, h != NULL ? h : "-", false);
		printf("%*s", h != NULL && strlen(h) < width ? (int)(width - strlen(h)) : 0, "");
		for (size_t k = 0; k < sizeof(keys) / sizeof(*keys); k++)
			control_put_count(row, keys[k], 8);
		putchar('\n');
	}
	if (json_array_size(rows) == 0)
		printf("(no recipient host yet)\n");
	else if (json_integer_value(json_object_get(result, "total_hosts")) >
	    (json_int_t)json_array_size(rows))
		printf("(%zu of %" JSON_INTEGER_FORMAT " hosts; --all for every one)\n",
		    json_array_size(rows),
		    json_integer_value(json_object_get(result, "total_hosts")));
	json_decref(result);
	return 0;
}

/* ---- queue actions ---- */

static const char *const control_queue_actions[] = {
	"delete", "bounce", "hold", "release", "deliver",
};

bool
control_cmd_is_queue_action(const char *name)
{
	for (size_t i = 0; i < sizeof(control_queue_actions) / sizeof(*control_queue_actions); i++)
		if (strcmp(name, control_queue_actions[i]) == 0)
			return true;
	return false;
}

/* a MID as the operator types it: a positive decimal */
static bool
control_parse_mid(const char *s, json_int_t *out)
{
	json_int_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return v > 0;
}

int
control_cmd_queue(int argc, char **argv, const struct config *cfg)
{
	static const char usage[] = "mailgate queue [-c FILE] delete|bounce|hold|release MID...\n"
	    "       mailgate queue [-c FILE] deliver [DOMAIN]";
	char command[32], err[4096];
	json_t *args, *mids, *result = NULL;
	json_int_t mid;
	int status;

	if (argc < 1 || !control_cmd_is_queue_action(argv[0]))
		return control_usage(usage);
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: %s\n", usage);
		return 0;
	}
	snprintf(command, sizeof(command), "queue-%s", argv[0]);
	if (strcmp(argv[0], "deliver") == 0) {
		if (argc > 2)
			return control_usage(usage);
		args = argc == 2 ? json_pack("{s:s}", "domain", argv[1]) : json_object();
	} else {
		if (argc < 2)
			return control_usage(usage);
		if ((args = json_object()) == NULL || (mids = json_array()) == NULL ||
		    json_object_set_new(args, "mids", mids) == -1) {
			json_decref(args);
			return control_fail(2, "out of memory");
		}
		for (int i = 1; i < argc; i++) {
			if (!control_parse_mid(argv[i], &mid)) {
				fprintf(stderr, "mailgate: not a MID (a positive number): ");
				control_put(stderr, argv[i], false);
				putc('\n', stderr);
				json_decref(args);
				return control_usage(usage);
			}
			if (json_array_append_new(mids, json_integer(mid)) == -1) {
				json_decref(args);
				return control_fail(2, "out of memory");
			}
		}
	}
	if (args == NULL)
		return control_fail(2, "out of memory (or the domain is not UTF-8)");
	status = control_call(cfg->control, command, args, &result, err, sizeof(err));
	json_decref(args);
	if (status != 0)
		return control_fail(status, err);
	if (strcmp(argv[0], "deliver") == 0) {
		json_int_t n = json_integer_value(json_object_get(result, "rescheduled"));

		printf("%" JSON_INTEGER_FORMAT " deferred recipient%s due now", n,
		    n == 1 ? "" : "s");
		if (argc == 2) {
			fputs(" for ", stdout);
			control_put(stdout, argv[1], false);
		}
		putchar('\n');
	} else {
		const char *done = json_string_value(json_object_get(result, "action"));
		size_t i;
		json_t *v;

		/* the server's word, if it is a plain one */
		if (done == NULL || strspn(done, "abcdefghijklmnopqrstuvwxyz") != strlen(done))
			done = "done";
		json_array_foreach(json_object_get(result, "mids"), i, v)
			printf("MID %" JSON_INTEGER_FORMAT " %s\n", json_integer_value(v), done);
	}
	json_decref(result);
	return 0;
}
