/*
 * test_control.c: the control socket, server and client, over a real UNIX
 * socket in a temporary directory. The server's loop runs in a thread while
 * the test talks to it with control_call() or raw bytes: handler results and
 * failures, unknown commands, malformed and oversized requests, the read
 * timeout, the socket's mode, stale and live sockets at open, and (as root)
 * the refusal of another uid.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include <jansson.h>

#include "control.h"
#include "control_cmd.h"

struct fix {
	char dir[64];
	char path[128];
	struct event_base *base;
	struct control *ctl;
	pthread_t loop;
	bool running;
	char err[1024];
	int calls;				/* of the echo handler (loop thread) */
};

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static json_t *
echo_handler(void *arg, const json_t *args, char *err, size_t errlen)
{
	struct fix *f = arg;

	(void)err;
	(void)errlen;
	f->calls++;
	return json_pack("{s:O, s:i}", "args", (json_t *)args, "answer", 42);
}

static json_t *
fail_handler(void *arg, const json_t *args, char *err, size_t errlen)
{
	(void)arg;
	(void)args;
	snprintf(err, errlen, "the handler says no");
	return NULL;
}

static int
setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_control.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/control.sock", f->dir);
	f->base = event_base_new();
	assert_non_null(f->base);
	*state = f;
	return 0;
}

static void
stop_loop(struct fix *f)
{
	if (!f->running)
		return;
	event_base_loopexit(f->base, NULL);
	pthread_join(f->loop, NULL);
	f->running = false;
}

static int
teardown(void **state)
{
	struct fix *f = *state;

	stop_loop(f);
	control_close(f->ctl);
	event_base_free(f->base);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void *
loop_main(void *arg)
{
	struct fix *f = arg;

	event_base_loop(f->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* open the server with the echo and fail handlers and run its loop in a thread */
static void
serve(struct fix *f)
{
	f->ctl = control_open(f->base, f->path, f->err, sizeof(f->err));
	if (f->ctl == NULL)
		fail_msg("control_open: %s", f->err);
	assert_int_equal(control_register(f->ctl, "echo", echo_handler, f), 0);
	assert_int_equal(control_register(f->ctl, "fail", fail_handler, f), 0);
	assert_int_equal(pthread_create(&f->loop, NULL, loop_main, f), 0);
	f->running = true;
}

/* a plain blocking client socket, with a receive timeout so a test cannot hang */
static int
raw_connect(const char *path)
{
	struct sockaddr_un sun;
	struct timeval tv = { 20, 0 };
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

/* send raw bytes (then shut down our side when shut), return the answer line */
static char *
raw_exchange(const char *path, const char *req, size_t len, bool shut)
{
	char *buf = calloc(1, 65536);
	size_t got = 0;
	ssize_t n;
	int fd;

	assert_non_null(buf);
	fd = raw_connect(path);
	if (len > 0)
		assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	if (shut)
		shutdown(fd, SHUT_WR);
	while (got < 65535 && (n = recv(fd, buf + got, 65535 - got, 0)) > 0)
		got += (size_t)n;
	close(fd);
	return buf;
}

/* the "error" of a raw answer, which must be {"ok": false, ...} */
static void
assert_raw_error(const char *answer, const char *prefix)
{
	json_error_t jerr;
	json_t *resp = json_loads(answer, 0, &jerr);
	const char *e;

	if (resp == NULL)
		fail_msg("answer is not JSON (%s): %s", jerr.text, answer);
	assert_true(answer[strlen(answer) - 1] == '\n');
	assert_true(json_is_false(json_object_get(resp, "ok")));
	e = json_string_value(json_object_get(resp, "error"));
	assert_non_null(e);
	if (strncmp(e, prefix, strlen(prefix)) != 0)
		fail_msg("error %s does not start with %s", e, prefix);
	json_decref(resp);
}

/* ---- tests ---- */

static void
test_handler_result(void **state)
{
	struct fix *f = *state;
	json_t *args, *res = NULL;

	serve(f);
	args = json_pack("{s:s, s:i}", "x", "y", "n", 7);
	assert_int_equal(control_call(f->path, "echo", args, &res, f->err, sizeof(f->err)), 0);
	json_decref(args);
	assert_non_null(res);
	assert_int_equal(json_integer_value(json_object_get(res, "answer")), 42);
	assert_string_equal(json_string_value(json_object_get(json_object_get(res, "args"), "x")),
	    "y");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "args"), "n")), 7);
	json_decref(res);

	/* no args: the handler still gets an (empty) object */
	assert_int_equal(control_call(f->path, "echo", NULL, &res, f->err, sizeof(f->err)), 0);
	assert_true(json_is_object(json_object_get(res, "args")));
	assert_int_equal(json_object_size(json_object_get(res, "args")), 0);
	json_decref(res);

	/* a result not wanted */
	assert_int_equal(control_call(f->path, "echo", NULL, NULL, f->err, sizeof(f->err)), 0);
}

static void
test_handler_failure(void **state)
{
	struct fix *f = *state;
	json_t *res = (json_t *)1;

	serve(f);
	assert_int_equal(control_call(f->path, "fail", NULL, &res, f->err, sizeof(f->err)), 1);
	assert_null(res);
	assert_string_equal(f->err, "the handler says no");
}

static void
test_unknown_command(void **state)
{
	struct fix *f = *state;

	serve(f);
	assert_int_equal(control_call(f->path, "bogus", NULL, NULL, f->err, sizeof(f->err)), 1);
	assert_string_equal(f->err, "unknown command bogus");
	/* the name comes back escaped, never raw control characters */
	assert_int_equal(control_call(f->path, "a\nb", NULL, NULL, f->err, sizeof(f->err)), 1);
	assert_string_equal(f->err, "unknown command a\\x0ab");
}

static void
test_oversized_request(void **state)
{
	struct fix *f = *state;
	size_t n = CONTROL_MAX_REQUEST + 1000;
	char *big = malloc(n + 1);
	json_t *args;

	assert_non_null(big);
	memset(big, 'a', n);
	big[n] = '\0';
	serve(f);
	args = json_pack("{s:s}", "blob", big);
	assert_int_equal(control_call(f->path, "echo", args, NULL, f->err, sizeof(f->err)), 1);
	assert_non_null(strstr(f->err, "request too large"));
	json_decref(args);

	/* much larger than any socket buffer: the client still reads the answer */
	free(big);
	n = 4 * 1024 * 1024;
	assert_non_null(big = malloc(n + 1));
	memset(big, 'b', n);
	big[n] = '\0';
	args = json_pack("{s:s}", "blob", big);
	assert_int_equal(control_call(f->path, "echo", args, NULL, f->err, sizeof(f->err)), 1);
	assert_non_null(strstr(f->err, "request too large"));
	json_decref(args);
	free(big);

	/* just under the cap is fine */
	assert_non_null(big = malloc(CONTROL_MAX_REQUEST));
	memset(big, 'c', CONTROL_MAX_REQUEST - 100);
	big[CONTROL_MAX_REQUEST - 100] = '\0';
	args = json_pack("{s:s}", "blob", big);
	assert_int_equal(control_call(f->path, "echo", args, NULL, f->err, sizeof(f->err)), 0);
	json_decref(args);
	free(big);
	assert_int_equal(f->calls, 1);
}

static void
test_malformed_json(void **state)
{
	struct fix *f = *state;
	static const char *bad[] = {
		"{not json\n",
		"[1, 2]\n",
		"{\"command\": 5}\n",
		"{\"args\": {}}\n",
		"{\"command\": \"echo\", \"args\": [1]}\n",
		"\n",
	};
	char *ans;

	serve(f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ans = raw_exchange(f->path, bad[i], strlen(bad[i]), false);
		assert_raw_error(ans, "malformed request");
		free(ans);
	}
	assert_int_equal(f->calls, 0);

	/* a request without its newline, ended by a shutdown, is still a request */
	ans = raw_exchange(f->path, "{\"command\": \"echo\"}", 19, true);
	assert_non_null(strstr(ans, "\"ok\":true"));
	free(ans);
	/* and a client that says nothing at all is simply closed */
	ans = raw_exchange(f->path, "", 0, true);
	assert_string_equal(ans, "");
	free(ans);
}

/* the timeout is for the whole request: a client dripping an octet every 2 s is cut off */
static void
test_read_timeout(void **state)
{
	struct fix *f = *state;
	struct timespec t0, t1;
	struct pollfd pfd;
	char ans[1024];
	ssize_t n;
	size_t got = 0;
	int fd;

	serve(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = raw_connect(f->path);
	assert_int_equal(send(fd, "{\"command\":", 11, MSG_NOSIGNAL), 11);
	for (int i = 0; i < 10; i++) {
		pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 2000) != 0)
			break;
		(void)send(fd, " ", 1, MSG_NOSIGNAL);
	}
	while (got < sizeof(ans) - 1 && (n = recv(fd, ans + got, sizeof(ans) - 1 - got, 0)) > 0)
		got += (size_t)n;
	ans[got] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	assert_raw_error(ans, "request timed out");
	assert_true(t1.tv_sec - t0.tv_sec >= CONTROL_READ_TIMEOUT - 1);
	assert_true(t1.tv_sec - t0.tv_sec <= CONTROL_READ_TIMEOUT + 3);
}

static void
test_socket_mode(void **state)
{
	struct fix *f = *state;
	struct stat st;

	serve(f);
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	/* control_close unlinks it */
	stop_loop(f);
	control_close(f->ctl);
	f->ctl = NULL;
	assert_int_equal(lstat(f->path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void
test_directory_created(void **state)
{
	struct fix *f = *state;
	struct stat st;
	char dir[96];

	snprintf(dir, sizeof(dir), "%s/run/mailgate", f->dir);
	snprintf(f->path, sizeof(f->path), "%s/control.sock", dir);
	serve(f);
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(control_call(f->path, "echo", NULL, NULL, f->err, sizeof(f->err)), 0);
}

static void
test_no_server(void **state)
{
	struct fix *f = *state;
	char want[512];
	json_t *res = (json_t *)1;

	assert_int_equal(control_call(f->path, "status", NULL, &res, f->err, sizeof(f->err)), 2);
	assert_null(res);
	snprintf(want, sizeof(want), "no mailgate server is running (control socket %s: %s)",
	    f->path, strerror(ENOENT));
	assert_string_equal(f->err, want);
}

/* a socket file left by a server that died: bound, never listened, closed */
static void
make_stale(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
}

static void
test_stale_socket_replaced(void **state)
{
	struct fix *f = *state;
	char want[512];
	struct stat st;

	make_stale(f->path);
	/* the client sees a refused connection as no server */
	assert_int_equal(control_call(f->path, "echo", NULL, NULL, f->err, sizeof(f->err)), 2);
	snprintf(want, sizeof(want), "no mailgate server is running (control socket %s: %s)",
	    f->path, strerror(ECONNREFUSED));
	assert_string_equal(f->err, want);
	serve(f);
	assert_int_equal(control_call(f->path, "echo", NULL, NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(lstat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
}

static void
test_second_open_fails(void **state)
{
	struct fix *f = *state;
	struct control *again;
	char err[512];

	/* no loop needed: the kernel accepts into the backlog of a listening socket */
	f->ctl = control_open(f->base, f->path, f->err, sizeof(f->err));
	assert_non_null(f->ctl);
	again = control_open(f->base, f->path, err, sizeof(err));
	assert_null(again);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "another mailgate server is answering"));
	/* and the failed open left the first one's socket in place */
	assert_int_equal(access(f->path, F_OK), 0);
}

static void
test_not_a_socket(void **state)
{
	struct fix *f = *state;
	FILE *fp = fopen(f->path, "w");

	assert_non_null(fp);
	fclose(fp);
	assert_null(control_open(f->base, f->path, f->err, sizeof(f->err)));
	assert_non_null(strstr(f->err, "not a socket"));
	assert_int_equal(access(f->path, F_OK), 0);
}

static void
test_path_too_long(void **state)
{
	struct fix *f = *state;
	char path[200];

	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_null(control_open(f->base, path, f->err, sizeof(f->err)));
	assert_non_null(strstr(f->err, "too long"));
	assert_int_equal(control_call(path, "status", NULL, NULL, f->err, sizeof(f->err)), 2);
}

static void
test_register_duplicate(void **state)
{
	struct fix *f = *state;

	serve(f);
	assert_int_equal(control_register(f->ctl, "echo", echo_handler, f), -1);
	assert_int_equal(errno, EEXIST);
}

static void
test_many_calls(void **state)
{
	struct fix *f = *state;

	serve(f);
	for (int i = 0; i < 200; i++)
		assert_int_equal(control_call(f->path, "echo", NULL, NULL, f->err,
		    sizeof(f->err)), 0);
	assert_int_equal(f->calls, 200);
}

/* as root: a process of another uid that reaches the socket is still refused */
static void
test_other_uid_refused(void **state)
{
	struct fix *f = *state;
	int status;
	pid_t pid;

	if (geteuid() != 0)
		skip();
	serve(f);
	/* loosen the modes by hand, as an administrator might by mistake */
	assert_int_equal(chmod(f->dir, 0755), 0);
	assert_int_equal(chmod(f->path, 0666), 0);
	if ((pid = fork()) == 0) {
		char err[512];
		int r;

		if (setgid(65534) == -1 || setuid(65534) == -1)
			_exit(10);
		r = control_call(f->path, "echo", NULL, NULL, err, sizeof(err));
		if (r != 1)
			_exit(11);
		if (strncmp(err, "permission denied: uid 65534", 28) != 0)
			_exit(12);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(f->calls, 0);
	/* while root still gets through */
	assert_int_equal(control_call(f->path, "echo", NULL, NULL, f->err, sizeof(f->err)), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handler_result, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handler_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_open_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_duplicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_uid_refused, setup, teardown),
	};

	if (evthread_use_pthreads() == -1) {
		fprintf(stderr, "evthread_use_pthreads failed\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
