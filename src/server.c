/*
 * server.c: process life (see server.h). Start-up may block and may fail with a
 * message (fatal environment: bad spool, port in use); once the loop runs,
 * nothing here blocks. SIGTERM stops accepting, tells every idle session 421 and
 * lets busy ones finish their message, then exits when the last one closes (or
 * after a grace period). SIGHUP reloads the config for new sessions and reopens
 * the log (rotation); sessions keep the config they started with.
 */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "listener.h"
#include "maillog.h"
#include "smtp_session.h"
#include "spool.h"

/* how long busy sessions may take to finish after SIGTERM */
#define STOP_GRACE_SECS 30

/* the systemd notify protocol (sd_notify(3)): one datagram, no library needed */
static void
notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(sun.sun_path))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (path[0] == '@')
		sun.sun_path[0] = '\0';		/* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	(void)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
	close(fd);
}

static void
server_stop(struct server *srv)
{
	struct timeval tv = { STOP_GRACE_SECS, 0 };

	if (srv->stopping)
		return;
	srv->stopping = true;
	notify("STOPPING=1");
	maillog(LOG_INFO, NULL, "mailgate stopping: %u open sessions", srv->n_sessions);
	for (size_t i = 0; i < srv->n_listeners; i++)
		listener_disable(srv->listeners[i]);
	for (struct smtp_session *s = srv->sessions, *next; s != NULL; s = next) {
		next = smtp_session_next(s);
		smtp_session_shutdown(s);
	}
	if (srv->n_sessions == 0)
		event_base_loopexit(srv->base, NULL);
	else
		evtimer_add(srv->ev_stop_grace, &tv);
}

void
server_session_gone(struct server *srv)
{
	if (srv->stopping && srv->n_sessions == 0)
		event_base_loopexit(srv->base, NULL);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	server_stop(arg);
}

static void
on_stop_grace(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	maillog(LOG_WARNING, NULL, "mailgate stopping: %u sessions still open after %ds, closing",
	    srv->n_sessions, STOP_GRACE_SECS);
	event_base_loopexit(srv->base, NULL);
}

static void
server_reload(struct server *srv)
{
	char err[4096];
	struct config *cfg;

	notify("RELOADING=1");
	cfg = config_load(srv->config_path, err, sizeof(err));
	if (cfg == NULL) {
		maillog(LOG_WARNING, NULL, "reload failed, keeping the running config: %s", err);
		notify("READY=1");
		return;
	}
	/* listening sockets are bound at start: a new or moved listener needs a restart */
	for (size_t i = 0; i < srv->n_listeners; i++) {
		if (config_listener(cfg, srv->listeners[i]->name) == NULL) {
			maillog(LOG_WARNING, NULL, "reload refused: listener %s is gone from the "
			    "config (restart to remove it)", srv->listeners[i]->name);
			config_unref(cfg);
			notify("READY=1");
			return;
		}
	}
	if (maillog_open(cfg->log.file, cfg->log.format) == -1)
		maillog(LOG_WARNING, NULL, "reload: cannot open log %s: %s", cfg->log.file,
		    strerror(errno));
	config_unref(srv->cfg);
	srv->cfg = cfg;
	maillog(LOG_INFO, NULL, "reloaded the configuration from %s", cfg->file);
	notify("READY=1");
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	server_reload(arg);
}

static void
server_cleanup(struct server *srv)
{
	while (srv->sessions != NULL)
		smtp_session_kill(srv->sessions);
	for (size_t i = 0; i < srv->n_listeners; i++)
		listener_close(srv->listeners[i]);
	free(srv->listeners);
	if (srv->spool)
		spool_close(srv->spool);
	if (srv->ev_sigterm)
		event_free(srv->ev_sigterm);
	if (srv->ev_sigint)
		event_free(srv->ev_sigint);
	if (srv->ev_sighup)
		event_free(srv->ev_sighup);
	if (srv->ev_stop_grace)
		event_free(srv->ev_stop_grace);
	if (srv->base)
		event_base_free(srv->base);
	config_unref(srv->cfg);
	free(srv->config_path);
	maillog_close();
}

int
server_run(struct config *cfg, const char *config_path)
{
	struct server srv;
	struct spool_opts so;
	char err[1024];
	int status = 0;

	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	if (config_path && (srv.config_path = strdup(config_path)) == NULL)
		goto fail_mem;
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() == -1 || (srv.base = event_base_new()) == NULL)
		goto fail_mem;
	if (maillog_open(cfg->log.file, cfg->log.format) == -1) {
		fprintf(stderr, "mailgate: cannot open log %s: %s\n", cfg->log.file,
		    strerror(errno));
		status = 2;
		goto out;
	}
	so.min_free_disk = cfg->limits.min_free_disk;
	if ((srv.spool = spool_open(srv.base, cfg->spool, &so, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailgate: %s\n", err);
		maillog(LOG_CRITICAL, NULL, "cannot open the spool: %s", err);
		status = 2;
		goto out;
	}
	if ((srv.listeners = calloc(cfg->n_listeners, sizeof(*srv.listeners))) == NULL)
		goto fail_mem;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct listener *l = listener_open(&srv, cfg->listeners[i].name, err, sizeof(err));
		if (l == NULL) {
			fprintf(stderr, "mailgate: listener %s: %s\n", cfg->listeners[i].name, err);
			maillog(LOG_CRITICAL, NULL, "listener %s: %s", cfg->listeners[i].name, err);
			status = 2;
			goto out;
		}
		srv.listeners[srv.n_listeners++] = l;
	}
	srv.ev_sigterm = evsignal_new(srv.base, SIGTERM, on_stop_signal, &srv);
	srv.ev_sigint = evsignal_new(srv.base, SIGINT, on_stop_signal, &srv);
	srv.ev_sighup = evsignal_new(srv.base, SIGHUP, on_hup, &srv);
	srv.ev_stop_grace = evtimer_new(srv.base, on_stop_grace, &srv);
	if (!srv.ev_sigterm || !srv.ev_sigint || !srv.ev_sighup || !srv.ev_stop_grace ||
	    evsignal_add(srv.ev_sigterm, NULL) || evsignal_add(srv.ev_sigint, NULL) ||
	    evsignal_add(srv.ev_sighup, NULL))
		goto fail_mem;

	for (size_t i = 0; i < cfg->n_listeners; i++)
		for (size_t j = 0; j < cfg->listeners[i].n_addrs; j++)
			maillog(LOG_INFO, NULL, "listener %s listening on %s",
			    cfg->listeners[i].name, cfg->listeners[i].addrs[j].text);
	maillog(LOG_INFO, NULL, "mailgate started: hostname %s, spool %s, config %s",
	    cfg->hostname, cfg->spool, cfg->file);
	notify("READY=1");
	if (event_base_dispatch(srv.base) == -1)
		status = 2;
	maillog(LOG_INFO, NULL, "mailgate stopped");
	goto out;
fail_mem:
	fprintf(stderr, "mailgate: cannot start: %s\n", strerror(errno ? errno : ENOMEM));
	status = 2;
out:
	server_cleanup(&srv);
	return status;
}
