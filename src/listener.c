/*
 * listener.c: the sockets of one listener (see listener.h). Binding happens at
 * start-up, before the loop runs; accepting happens on the loop, and each new
 * connection goes straight to smtp_session_accept(). An IPv6 socket is bound
 * v6-only, so "0.0.0.0:25" and "[::]:25" can both be listed, as in the spec.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "maillog.h"
#include "server.h"
#include "smtp_session.h"
#include "util.h"

/* how long accepting pauses when the process is out of descriptors */
#define ACCEPT_PAUSE_SECS 1

static void drain_cb(evutil_socket_t, short, void *);

struct listen_socket {
	struct listener *l;
	struct evconnlistener *evl;
	struct event *ev_resume;
};

static void
local_text(int fd, char *out, size_t cap)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len = sizeof(ss);

	out[0] = '\0';
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, cap);
	} else if (ss.ss_family == AF_INET6) {
		struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], out, cap);
		else
			inet_ntop(AF_INET6, a, out, cap);
	}
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct listen_socket *ls = arg;
	char local[INET6_ADDRSTRLEN];

	(void)evl;
	local_text(fd, local, sizeof(local));
	smtp_session_accept(ls->l, fd, sa, (socklen_t)salen, local);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listen_socket *ls = arg;

	(void)fd;
	(void)what;
	if (!ls->l->srv->stopping)
		evconnlistener_enable(ls->evl);
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listen_socket *ls = arg;
	struct timeval tv = { ACCEPT_PAUSE_SECS, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE/ENFILE would make the loop spin on a readable socket: back off */
	maillog(LOG_WARNING, NULL, "listener %s: accept failed: %s; pausing %ds", ls->l->name,
	    strerror(err), ACCEPT_PAUSE_SECS);
	evconnlistener_disable(evl);
	evtimer_add(ls->ev_resume, &tv);
}

static int
bind_one(const struct listen_addr *a, char *err, size_t errlen)
{
	int fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto fail;
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1)
		goto fail;
	if (listen(fd, 1024) == -1)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

struct listener *
listener_open(struct server *srv, const char *name, char *err, size_t errlen)
{
	const struct listener_conf *lc = config_listener(srv->cfg, name);
	struct listener *l;

	if (lc == NULL) {
		snprintf(err, errlen, "no listener named %s", name);
		return NULL;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL || (l->name = strdup(name)) == NULL ||
	    (l->socks = calloc(lc->n_addrs, sizeof(*l->socks))) == NULL) {
		snprintf(err, errlen, "out of memory");
		listener_close(l);
		return NULL;
	}
	l->srv = srv;
	if ((l->ev_drain = evtimer_new(srv->base, drain_cb, l)) == NULL) {
		snprintf(err, errlen, "out of memory");
		listener_close(l);
		return NULL;
	}
	for (size_t i = 0; i < lc->n_addrs; i++) {
		struct listen_socket *ls;
		int fd = bind_one(&lc->addrs[i], err, errlen);

		if (fd == -1) {
			listener_close(l);
			return NULL;
		}
		if ((ls = calloc(1, sizeof(*ls))) == NULL) {
			close(fd);
			snprintf(err, errlen, "out of memory");
			listener_close(l);
			return NULL;
		}
		ls->l = l;
		ls->ev_resume = evtimer_new(srv->base, resume_cb, ls);
		/* backlog -1: listen() was called above */
		ls->evl = evconnlistener_new(srv->base, accept_cb, ls, LEV_OPT_CLOSE_ON_FREE, -1,
		    fd);
		if (ls->evl == NULL || ls->ev_resume == NULL) {
			if (ls->evl == NULL)
				close(fd);
			else
				evconnlistener_free(ls->evl);
			if (ls->ev_resume)
				event_free(ls->ev_resume);
			free(ls);
			snprintf(err, errlen, "cannot listen on %s", lc->addrs[i].text);
			listener_close(l);
			return NULL;
		}
		evconnlistener_set_error_cb(ls->evl, accept_error_cb);
		l->socks[l->n_socks++] = ls;
	}
	return l;
}

static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct smtp_session *s, *next;

	(void)fd;
	(void)what;
	l->draining = true;
	maillog(LOG_INFO, NULL, "listener %s: grace delay over, closing its %u sessions",
	    l->name, l->n_sessions);
	for (s = l->srv->sessions; s != NULL; s = next) {
		next = smtp_session_next(s);
		if (smtp_session_listener(s) == l)
			smtp_session_drain(s);
	}
}

void
listener_suspend(struct listener *l, unsigned grace)
{
	struct timeval tv = { grace, 0 };

	l->suspended = true;
	if (l->draining)
		return;
	evtimer_del(l->ev_drain);
	evtimer_add(l->ev_drain, &tv);
}

void
listener_resume(struct listener *l)
{
	l->suspended = false;
	l->draining = false;
	evtimer_del(l->ev_drain);
}

void
listener_disable(struct listener *l)
{
	for (size_t i = 0; i < l->n_socks; i++) {
		struct listen_socket *ls = l->socks[i];
		evconnlistener_disable(ls->evl);
		evtimer_del(ls->ev_resume);
	}
}

void
listener_close(struct listener *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n_socks; i++) {
		struct listen_socket *ls = l->socks[i];
		evconnlistener_free(ls->evl);
		event_free(ls->ev_resume);
		free(ls);
	}
	free(l->socks);
	if (l->ev_drain)
		event_free(l->ev_drain);
	free(l->name);
	free(l);
}
