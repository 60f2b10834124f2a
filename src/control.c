/*
 * control.c: the control socket server (see control.h). Binding happens at
 * start-up, before the loop runs, and may block briefly; everything after it
 * runs on the loop and never blocks: each connection is a bufferevent with a
 * read timeout and a size cap, answered by one synchronous handler call.
 * Permission is the socket's mode (0600, in a 0700 directory when we create
 * it) and, because modes can be loosened by hand, the peer's uid from
 * SO_PEERCRED.
 */
#include "control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "maillog.h"
#include "util.h"

/* open control connections at once; more are closed unanswered */
#define CONTROL_MAX_CONNS	32
/* seconds a client has to read its answer */
#define CONTROL_WRITE_TIMEOUT	10
/* how long accepting pauses when the process is out of descriptors */
#define CONTROL_ACCEPT_PAUSE	1

struct control_command {
	char *name;
	control_handler fn;
	void *arg;
};

struct control_conn {
	struct control *ctl;
	struct bufferevent *bev;
	struct control_conn *next, *prev;
	int64_t deadline;			/* ms, CLOCK_MONOTONIC: the whole request */
	bool replied;				/* the answer is queued; only writing is left */
};

struct control {
	struct event_base *base;
	char *path;
	dev_t dev;				/* of the socket file we bound: unlink only that */
	ino_t ino;
	struct evconnlistener *evl;
	struct event *ev_resume;
	struct control_command *cmds;
	size_t n_cmds;
	struct control_conn *conns;
	unsigned n_conns;
};

static void control_event_cb(struct bufferevent *, short, void *);

/* ---- connections ---- */

static void
control_conn_free(struct control_conn *c)
{
	struct control *ctl = c->ctl;

	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ctl->n_conns--;
	if (c->bev)
		bufferevent_free(c->bev);
	free(c);
}

static void
control_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;

	/* called when the output has drained: the answer is out, we are done */
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		control_conn_free(c);
}

/* queue the answer (takes resp) and close once it is written */
static void
control_reply(struct control_conn *c, json_t *resp)
{
	static const char oom[] = "{\"ok\": false, \"error\": \"out of memory\"}\n";
	char *text = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
	int r;

	json_decref(resp);
	c->replied = true;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, control_write_cb, control_event_cb, c);
	if (text != NULL) {
		r = bufferevent_write(c->bev, text, strlen(text));
		if (r == 0)
			r = bufferevent_write(c->bev, "\n", 1);
		free(text);
	} else
		r = bufferevent_write(c->bev, oom, sizeof(oom) - 1);
	if (r == -1 || bufferevent_enable(c->bev, EV_WRITE) == -1)
		control_conn_free(c);
}

static void
control_reply_error(struct control_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
control_reply_error(struct control_conn *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	json_t *resp;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	resp = json_object();
	if (resp != NULL && (json_object_set_new(resp, "ok", json_false()) == -1 ||
	    json_object_set_new(resp, "error", json_string(msg)) == -1)) {
		json_decref(resp);
		resp = NULL;
	}
	control_reply(c, resp);
}

static const struct control_command *
control_find(const struct control *ctl, const char *name)
{
	for (size_t i = 0; i < ctl->n_cmds; i++)
		if (strcmp(ctl->cmds[i].name, name) == 0)
			return &ctl->cmds[i];
	return NULL;
}

/* one request line (without its newline): parse, dispatch, answer */
static void
control_request(struct control_conn *c, const char *line, size_t len)
{
	const struct control_command *cmd;
	json_t *req, *args, *empty = NULL, *result, *resp;
	json_error_t jerr;
	const char *name;
	char err[1024], esc[256];

	/* evbuffer_pullup() of an empty line is NULL */
	if ((req = json_loadb(len > 0 ? line : "", len, 0, &jerr)) == NULL) {
		control_reply_error(c, "malformed request: %s (column %d)", jerr.text,
		    jerr.column);
		return;
	}
	if (!json_is_object(req) || !json_is_string(json_object_get(req, "command"))) {
		control_reply_error(c, "malformed request: not an object with a \"command\" "
		    "string");
		goto out;
	}
	name = json_string_value(json_object_get(req, "command"));
	args = json_object_get(req, "args");
	if (args == NULL || json_is_null(args)) {
		if ((args = empty = json_object()) == NULL) {
			control_reply(c, NULL);
			goto out;
		}
	} else if (!json_is_object(args)) {
		control_reply_error(c, "malformed request: \"args\" is not an object");
		goto out;
	}
	if ((cmd = control_find(c->ctl, name)) == NULL) {
		/* the name goes back to a terminal: keep it printable and short */
		util_escape(esc, sizeof(esc), name, strlen(name));
		control_reply_error(c, "unknown command %s", esc);
		goto out;
	}
	err[0] = '\0';
	if ((result = cmd->fn(cmd->arg, args, err, sizeof(err))) == NULL) {
		control_reply_error(c, "%s", err[0] ? err : "the command failed");
		goto out;
	}
	/* set_new takes the reference even when it fails */
	if ((resp = json_object()) == NULL) {
		json_decref(result);
		control_reply(c, NULL);
		goto out;
	}
	if (json_object_set_new(resp, "ok", json_true()) == -1 ||
	    json_object_set_new(resp, "result", result) == -1) {
		json_decref(resp);
		resp = NULL;
	}
	control_reply(c, resp);
out:
	json_decref(empty);
	json_decref(req);
}

/*
 * A bufferevent's read timeout restarts with every read; what is left of the
 * deadline keeps a client that sends one octet at a time from holding on.
 */
static int64_t
control_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
control_rearm(struct control_conn *c)
{
	struct timeval rtv, wtv = { CONTROL_WRITE_TIMEOUT, 0 };
	int64_t left = c->deadline - control_now_ms();

	if (left < 1)
		left = 1;
	rtv.tv_sec = left / 1000;
	rtv.tv_usec = (left % 1000) * 1000;
	bufferevent_set_timeouts(c->bev, &rtv, &wtv);
}

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr eol;
	size_t eol_len;

	if (c->replied)
		return;
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos == -1) {
		/* the read high-water mark stops the buffer just past the cap */
		if (evbuffer_get_length(in) > CONTROL_MAX_REQUEST)
			control_reply_error(c, "request too large (over %d octets)",
			    CONTROL_MAX_REQUEST);
		else
			control_rearm(c);
		return;
	}
	if ((size_t)eol.pos > CONTROL_MAX_REQUEST) {
		control_reply_error(c, "request too large (over %d octets)", CONTROL_MAX_REQUEST);
		return;
	}
	control_request(c, (const char *)evbuffer_pullup(in, eol.pos), (size_t)eol.pos);
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;

	if (!c->replied && (what & BEV_EVENT_READING)) {
		if (what & BEV_EVENT_TIMEOUT) {
			control_reply_error(c, "request timed out after %d seconds",
			    CONTROL_READ_TIMEOUT);
			return;
		}
		/* a client that shut down its side without a newline: take what it sent */
		if ((what & BEV_EVENT_EOF) && (len = evbuffer_get_length(in)) > 0) {
			control_request(c, (const char *)evbuffer_pullup(in, -1), len);
			return;
		}
	}
	/* EOF with nothing said, an error, or a client that does not read its answer */
	control_conn_free(c);
}

/* only root and the uid the server runs as */
static bool
control_peer_ok(int fd, unsigned *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	*uid = (unsigned)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 || len != sizeof(cred))
		return false;
	*uid = (unsigned)cred.uid;
	return cred.uid == 0 || cred.uid == geteuid();
}

static void
control_accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct control *ctl = arg;
	struct control_conn *c;
	struct timeval rtv = { CONTROL_READ_TIMEOUT, 0 }, wtv = { CONTROL_WRITE_TIMEOUT, 0 };
	unsigned uid;

	(void)evl;
	(void)sa;
	(void)salen;
	if (ctl->n_conns >= CONTROL_MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	if ((c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->ctl = ctl;
	c->next = ctl->conns;
	if (ctl->conns)
		ctl->conns->prev = c;
	ctl->conns = c;
	ctl->n_conns++;
	c->deadline = control_now_ms() + CONTROL_READ_TIMEOUT * 1000;
	bufferevent_set_timeouts(c->bev, &rtv, &wtv);
	if (!control_peer_ok(fd, &uid)) {
		maillog(LOG_WARNING, NULL, "control socket: refused a connection from uid %d",
		    (int)uid);
		control_reply_error(c, "permission denied: uid %d may not use the control "
		    "socket", (int)uid);
		return;
	}
	bufferevent_setcb(c->bev, control_read_cb, NULL, control_event_cb, c);
	/* one octet past the cap, so an over-long line is seen, never buffered whole */
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONTROL_MAX_REQUEST + 1);
	if (bufferevent_enable(c->bev, EV_READ) == -1)
		control_conn_free(c);
}

static void
control_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(ctl->evl);
}

static void
control_accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct control *ctl = arg;
	struct timeval tv = { CONTROL_ACCEPT_PAUSE, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE/ENFILE would make the loop spin on a readable socket: back off */
	maillog(LOG_WARNING, NULL, "control socket: accept failed: %s; pausing %ds",
	    strerror(err), CONTROL_ACCEPT_PAUSE);
	evconnlistener_disable(evl);
	evtimer_add(ctl->ev_resume, &tv);
}

/* ---- opening ---- */

/* mkdir -p of the directory part of path; components we create are 0700 */
static int
control_mkdirs(const char *path, char *err, size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	util_strlcpy(dir, path, sizeof(dir));
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; ; p++) {
		struct stat st;
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		/* stat first: mkdir of an existing /run may say EACCES, not EEXIST */
		if (stat(dir, &st) == -1 && mkdir(dir, 0700) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "control socket %s: cannot create directory %s: %s",
			    path, dir, strerror(errno));
			return -1;
		}
		if ((*p = c) == '\0')
			return 0;
	}
}

/*
 * Is a server answering on the socket file at path? 1 yes, 0 no (stale: safe to
 * unlink), -1 with a reason in err (not a socket, or we cannot tell).
 */
static int
control_probe(const struct sockaddr_un *sun, char *err, size_t errlen)
{
	struct stat st;
	int fd, r;

	if (lstat(sun->sun_path, &st) == -1) {
		if (errno == ENOENT)
			return 0;
		goto fail;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "control socket %s: the file exists and is not a socket",
		    sun->sun_path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	if (r == -1 && (errno == ECONNREFUSED || errno == ENOENT)) {
		close(fd);
		return 0;
	}
	if (r == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		/* EAGAIN: a full backlog, which only a listening socket has */
		close(fd);
		return 1;
	}
	r = errno;
	close(fd);
	errno = r;
fail:
	snprintf(err, errlen, "control socket %s: cannot tell whether a server answers on it: "
	    "%s", sun->sun_path, strerror(errno));
	return -1;
}

/* bind the socket file mode 0600, replacing a stale one; -1 with err */
static int
control_bind(int fd, const struct sockaddr_un *sun, char *err, size_t errlen)
{
	mode_t old;
	int r, e;

	for (int tries = 0; ; tries++) {
		/* umask is per process: briefly restrictive for everyone, never looser */
		old = umask(0177);
		r = bind(fd, (const struct sockaddr *)sun, sizeof(*sun));
		e = errno;
		umask(old);
		if (r == 0)
			return 0;
		if (e != EADDRINUSE || tries > 0)
			break;
		switch (control_probe(sun, err, errlen)) {
		case 1:
			snprintf(err, errlen, "control socket %s: another mailgate server is "
			    "answering on it", sun->sun_path);
			return -1;
		case -1:
			return -1;
		}
		if (unlink(sun->sun_path) == -1 && errno != ENOENT) {
			e = errno;
			break;
		}
	}
	snprintf(err, errlen, "control socket %s: %s", sun->sun_path, strerror(e));
	return -1;
}

struct control *
control_open(struct event_base *base, const char *path, char *err, size_t errlen)
{
	struct control *ctl;
	struct sockaddr_un sun;
	struct stat st;
	int fd = -1;
	bool bound = false;

	if (path == NULL || path[0] == '\0') {
		snprintf(err, errlen, "control socket: no path configured");
		return NULL;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket %s: the path is too long (at most %zu "
		    "octets)", path, sizeof(sun.sun_path) - 1);
		return NULL;
	}
	if ((ctl = calloc(1, sizeof(*ctl))) == NULL || (ctl->path = strdup(path)) == NULL)
		goto fail_errno;
	ctl->base = base;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (control_mkdirs(path, err, errlen) == -1)
		goto fail;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		goto fail_errno;
	if (control_bind(fd, &sun, err, errlen) == -1)
		goto fail;
	bound = true;
	if (lstat(path, &st) == -1 || listen(fd, 16) == -1)
		goto fail_errno;
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	if ((ctl->ev_resume = evtimer_new(base, control_resume_cb, ctl)) == NULL)
		goto fail_errno;
	ctl->evl = evconnlistener_new(base, control_accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (ctl->evl == NULL)
		goto fail_errno;
	evconnlistener_set_error_cb(ctl->evl, control_accept_error_cb);
	return ctl;
fail_errno:
	snprintf(err, errlen, "control socket %s: %s", path, strerror(errno ? errno : ENOMEM));
fail:
	if (fd != -1)
		close(fd);
	if (bound)
		unlink(path);
	if (ctl) {
		if (ctl->ev_resume)
			event_free(ctl->ev_resume);
		free(ctl->path);
		free(ctl);
	}
	return NULL;
}

int
control_register(struct control *ctl, const char *command, control_handler fn, void *arg)
{
	struct control_command *cmds;
	char *name;

	if (control_find(ctl, command) != NULL) {
		errno = EEXIST;
		return -1;
	}
	if ((name = strdup(command)) == NULL)
		return -1;
	if ((cmds = reallocarray(ctl->cmds, ctl->n_cmds + 1, sizeof(*cmds))) == NULL) {
		free(name);
		return -1;
	}
	ctl->cmds = cmds;
	cmds[ctl->n_cmds].name = name;
	cmds[ctl->n_cmds].fn = fn;
	cmds[ctl->n_cmds].arg = arg;
	ctl->n_cmds++;
	return 0;
}

void
control_close(struct control *ctl)
{
	struct stat st;

	if (ctl == NULL)
		return;
	while (ctl->conns != NULL)
		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the head has no prev, which the analyzer does not know */
		control_conn_free(ctl->conns);
	if (ctl->evl)
		evconnlistener_free(ctl->evl);
	if (ctl->ev_resume)
		event_free(ctl->ev_resume);
	/* a newer server may have replaced our file: leave that one alone */
	if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
	for (size_t i = 0; i < ctl->n_cmds; i++)
		free(ctl->cmds[i].name);
	free(ctl->cmds);
	free(ctl->path);
	free(ctl);
}
