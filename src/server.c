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
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include <jansson.h>

#include "config.h"
#include "control.h"
#include "dns.h"
#include "hoststats.h"
#include "auth.h"
#include "tls.h"
#include "util.h"
#include "hostcount.h"
#include "listener.h"
#include "maillog.h"
#include "rates.h"
#include "scheduler.h"
#include "mta_session.h"
#include "bounce_spool.h"
#include "ipmm_split.h"
#include "delivery.h"
#include "smtp_session.h"
#include "spool.h"

/* how long open sessions may go on after SIGTERM (as `listener suspend`'s default) */
#define STOP_GRACE_SECS 30
/* how long after that a session still in a message may take before we exit anyway */
#define STOP_FORCE_SECS 30

/*
 * The delivery scheduler. Here rather than in struct server (server.h) only
 * because this file is the one place that needs it: start, reload, stop.
 */
static struct sched *server_sched;
static struct mta *server_mta;

/* the 1, 5 and 15 minute rates of `status`: the scheduler's counters, sampled each minute */
enum { RATE_MSGS, RATE_RCPTS, RATE_DELIVERED, RATE_BOUNCED, RATE_N };
static const char *const server_rate_names[RATE_N] = {
	"messages_received", "recipients_received", "recipients_delivered",
	"recipients_bounced",
};
static struct rates server_rates;
static struct event *server_ev_rates;

static int64_t
server_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
server_rate_values(uint64_t *v)
{
	struct sched_counters c;

	sched_counters(server_sched, &c);
	v[RATE_MSGS] = c.messages_received;
	v[RATE_RCPTS] = c.recipients_received;
	v[RATE_DELIVERED] = c.delivered;
	v[RATE_BOUNCED] = c.bounced;
}

static void
server_rates_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v[RATE_N];

	(void)fd;
	(void)what;
	(void)arg;
	server_rate_values(v);
	rates_sample(&server_rates, server_now(), v);
}

/* the scheduler's SMTP agent: the batch is taken, done() comes later on the loop */
static int
server_smtp_agent(void *ctx, struct delivery_batch *b)
{
	mta_deliver(ctx, b);
	return 0;
}

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
	struct timeval tv = { STOP_GRACE_SECS + STOP_FORCE_SECS, 0 };

	if (srv->stopping)
		return;
	srv->stopping = true;
	notify("STOPPING=1");
	maillog(LOG_INFO, NULL, "mailgate stopping: %u open sessions", srv->n_sessions);
	/* as a suspend of every listener: new clients get 421, open ones a grace delay */
	for (size_t i = 0; i < srv->n_listeners; i++)
		listener_suspend(srv->listeners[i], STOP_GRACE_SECS);
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
	    srv->n_sessions, STOP_GRACE_SECS + STOP_FORCE_SECS);
	event_base_loopexit(srv->base, NULL);
}

static void
server_tls_log(int warning, const char *msg)
{
	maillog(warning ? LOG_WARNING : LOG_INFO, NULL, "%s", msg);
}

/* 0, or -1 with the reason in why (when given: the control socket's reload) */
static int
server_reload(struct server *srv, char *why, size_t whylen)
{
	char err[4096];
	struct config *cfg;

	notify("RELOADING=1");
	cfg = config_load(srv->config_path, err, sizeof(err));
	if (cfg == NULL) {
		maillog(LOG_WARNING, NULL, "reload failed, keeping the running config: %s", err);
		notify("READY=1");
		if (why) {
			err[strcspn(err, "\n")] = '\0';
			snprintf(why, whylen, "reload failed, keeping the running config: %s", err);
		}
		return -1;
	}
	/* listening sockets are bound at start: a new or moved listener needs a restart */
	for (size_t i = 0; i < srv->n_listeners; i++) {
		if (config_listener(cfg, srv->listeners[i]->name) == NULL) {
			maillog(LOG_WARNING, NULL, "reload refused: listener %s is gone from the "
			    "config (restart to remove it)", srv->listeners[i]->name);
			if (why)
				snprintf(why, whylen, "reload refused: listener %s is gone from the "
				    "config (restart to remove it)", srv->listeners[i]->name);
			config_unref(cfg);
			notify("READY=1");
			return -1;
		}
	}
	if (maillog_open(cfg->log.file, cfg->log.format) == -1)
		maillog(LOG_WARNING, NULL, "reload: cannot open log %s: %s", cfg->log.file,
		    strerror(errno));
	config_unref(srv->cfg);
	srv->cfg = cfg;
	if (server_sched != NULL)
		sched_set_config(server_sched, cfg);
	if (server_mta != NULL && mta_set_config(server_mta, cfg) == -1)
		maillog(LOG_WARNING, NULL, "reload: the outbound client keeps its old settings");
	/* certificates and users: a bad one keeps the old and says so (issue 4) */
	(void)tls_store_load(srv->tls, cfg, server_tls_log);
	if (auth_reload(srv->auth, cfg->auth.users, err, sizeof(err)) == -1)
		maillog(LOG_WARNING, NULL, "reload: keeping the old users: %s", err);
	maillog(LOG_INFO, NULL, "reloaded the configuration from %s", cfg->file);
	notify("READY=1");
	return 0;
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)server_reload(arg, NULL, 0);
}


/* `mailgate status`: counters and gauges (args "detail" is for later counters) */
static json_t *
server_ctl_status(void *arg, const json_t *args, char *err, size_t errlen)
{
	struct server *srv = arg;
	struct timespec now;
	json_t *res, *ls = json_array();

	(void)args;
	clock_gettime(CLOCK_MONOTONIC, &now);
	for (size_t i = 0; ls != NULL && i < srv->n_listeners; i++) {
		const struct listener *l = srv->listeners[i];

		if (json_array_append_new(ls, json_pack("{s:s, s:I, s:b}", "name", l->name,
		    "sessions", (json_int_t)l->n_sessions, "suspended", l->suspended)) == -1) {
			json_decref(ls);
			ls = NULL;
		}
	}
	res = ls == NULL ? NULL : json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I}, s:{s:I, s:I}, s:O}",
	    "pid", (json_int_t)getpid(),
	    "uptime", (json_int_t)(now.tv_sec - srv->started.tv_sec),
	    "sessions", (json_int_t)srv->n_sessions,
	    "connections_total", (json_int_t)srv->next_icid,
	    "queue", "messages", (json_int_t)spool_count(srv->spool),
	    "bytes", (json_int_t)spool_bytes(srv->spool),
	    "memory", "rss", (json_int_t)util_rss_bytes(),
	    "heap", (json_int_t)util_heap_bytes(),
	    "listeners", ls);
	json_decref(ls);
	/* what delivery did since the start, and what it is doing */
	if (res != NULL && server_sched != NULL) {
		json_t *d = sched_status(server_sched), *r;
		uint64_t v[RATE_N];
		bool bad;

		server_rate_values(v);
		r = rates_json(&server_rates, server_now(), v, server_rate_names);
		bad = d == NULL || r == NULL;
		if (!bad && server_mta != NULL)
			bad = json_object_set_new(d, "connections_out",
			    json_integer((json_int_t)mta_connections(server_mta))) == -1;
		if (bad) {
			json_decref(d);
			json_decref(r);
		} else {
			/* json_object_set_new() takes the reference, even when it fails */
			bad = json_object_set_new(res, "delivery", d) == -1;
			bad = json_object_set_new(res, "rates_per_minute", r) == -1 || bad;
		}
		if (bad) {
			json_decref(res);
			res = NULL;
		}
	}
	if (res == NULL)
		snprintf(err, errlen, "out of memory");
	return res;
}

/* `mailgate tophosts`: args {"sort": "active"|..., "limit": N} */
static json_t *
server_ctl_tophosts(void *arg, const json_t *args, char *err, size_t errlen)
{
	const char *sort = json_string_value(json_object_get(args, "sort"));
	json_t *lim = json_object_get(args, "limit");
	json_int_t limit = lim != NULL ? json_integer_value(lim) : 20;
	struct hoststats *hs;
	json_t *res = NULL;
	int col = sort != NULL ? hoststats_col_by_name(sort) : HS_ACTIVE;

	(void)arg;
	if (col == -1 || limit < 0 || (lim != NULL && !json_is_integer(lim))) {
		snprintf(err, errlen, "sort by active, connections, delivered, soft or hard; "
		    "a limit of 0 (all) or more");
		return NULL;
	}
	if ((hs = sched_hoststats(server_sched)) != NULL &&
	    (server_mta == NULL || mta_hoststats(server_mta, hs) == 0))
		res = hoststats_json(hs, (enum hoststats_col)col, (size_t)limit);
	hoststats_free(hs);
	if (res == NULL)
		snprintf(err, errlen, "out of memory");
	return res;
}

static struct listener *
server_find_listener(struct server *srv, const json_t *args, char *err, size_t errlen)
{
	const char *name = json_string_value(json_object_get(args, "name"));

	for (size_t i = 0; name != NULL && i < srv->n_listeners; i++)
		if (strcmp(srv->listeners[i]->name, name) == 0)
			return srv->listeners[i];
	snprintf(err, errlen, "no listener named %s", name ? name : "(none given)");
	return NULL;
}

/* `mailgate listener suspend NAME [SECONDS]` */
static json_t *
server_ctl_suspend(void *arg, const json_t *args, char *err, size_t errlen)
{
	struct server *srv = arg;
	struct listener *l = server_find_listener(srv, args, err, errlen);
	json_t *v = json_object_get(args, "seconds");
	json_int_t secs = v ? json_integer_value(v) : 30;

	if (l == NULL)
		return NULL;
	if (secs < 0 || secs > 86400) {
		snprintf(err, errlen, "a grace delay from 0 to 86400 seconds, not %lld",
		    (long long)secs);
		return NULL;
	}
	listener_suspend(l, (unsigned)secs);
	maillog(LOG_INFO, NULL, "listener %s suspended: open sessions have %llds to finish",
	    l->name, (long long)secs);
	return json_pack("{s:s, s:b, s:I}", "name", l->name, "suspended", 1, "seconds", secs);
}

/* `mailgate listener resume NAME` */
static json_t *
server_ctl_resume(void *arg, const json_t *args, char *err, size_t errlen)
{
	struct server *srv = arg;
	struct listener *l = server_find_listener(srv, args, err, errlen);

	if (l == NULL)
		return NULL;
	if (srv->stopping) {
		snprintf(err, errlen, "the server is stopping");
		return NULL;
	}
	listener_resume(l);
	maillog(LOG_INFO, NULL, "listener %s resumed", l->name);
	return json_pack("{s:s, s:b}", "name", l->name, "suspended", 0);
}

/* `mailgate reload`: what SIGHUP does, with the outcome told to the caller */
static json_t *
server_ctl_reload(void *arg, const json_t *args, char *err, size_t errlen)
{
	json_t *res;

	(void)args;
	if (server_reload(arg, err, errlen) == -1)
		return NULL;
	if ((res = json_pack("{s:b}", "reloaded", 1)) == NULL)
		snprintf(err, errlen, "out of memory");
	return res;
}

static void
server_cleanup(struct server *srv)
{
	/* the outbound client first: it uses the resolver and holds the scheduler's batches */
	if (server_mta != NULL)
		mta_free(server_mta);
	server_mta = NULL;
	control_close(srv->control);
	while (srv->sessions != NULL)
		smtp_session_kill(srv->sessions);
	if (srv->dns)
		dns_free(srv->dns);
	if (srv->auth)
		auth_free(srv->auth);
	if (srv->tls)
		tls_store_free(srv->tls);
	for (size_t i = 0; i < srv->n_listeners; i++)
		/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): n_listeners > 0 only once listeners is allocated */
		listener_close(srv->listeners[i]);
	free(srv->listeners);
	if (server_ev_rates != NULL)
		event_free(server_ev_rates);
	server_ev_rates = NULL;
	/* the SMTP agent goes before this: it must not hold a batch the scheduler frees */
	/* after the sessions (a job commit may name one), before the spool closes */
	ipmm_split_free(srv->ipmm);
	srv->ipmm = NULL;
	sched_free(server_sched);
	server_sched = NULL;
	if (srv->spool)
		spool_close(srv->spool);
	hostcount_free(srv->hosts);
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
	clock_gettime(CLOCK_MONOTONIC, &srv.started);
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
	if ((srv.dns = dns_new(srv.base, &cfg->dns, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailgate: dns: %s\n", err);
		maillog(LOG_CRITICAL, NULL, "dns: %s", err);
		status = 2;
		goto out;
	}
	/* a certificate that does not load leaves STARTTLS answering 454, not the server down */
	if ((srv.tls = tls_store_new()) == NULL || tls_store_load(srv.tls, cfg, server_tls_log) < 0)
		goto fail_mem;
	if ((srv.auth = auth_new(srv.base, cfg->auth.users, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailgate: auth: %s\n", err);
		maillog(LOG_CRITICAL, NULL, "auth: %s", err);
		status = 2;
		goto out;
	}
	/* replays the queue (blocking, as the spool's own recovery) before anyone can connect */
	if ((server_sched = sched_new(srv.base, srv.spool, cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailgate: %s\n", err);
		maillog(LOG_CRITICAL, NULL, "%s", err);
		status = 2;
		goto out;
	}
	/* mail merge jobs left by a crash are split again (blocking, like the replay above) */
	if ((srv.ipmm = ipmm_split_new(srv.base, srv.spool, cfg->spool, cfg->hostname, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "mailgate: %s\n", err);
		maillog(LOG_CRITICAL, NULL, "%s", err);
		status = 2;
		goto out;
	}
	/* delivery: SMTP routes and USEDNS through the outbound client, bounces as DSNs */
	if ((server_mta = mta_new(srv.base, srv.dns, cfg)) == NULL)
		goto fail_mem;
	sched_set_smtp_agent(server_sched, server_smtp_agent, server_mta);
	sched_set_bounce(server_sched, bounce_spool_hook, &srv);
	{
		static const struct timeval minute = { 60, 0 };
		uint64_t v[RATE_N];

		server_rate_values(v);
		rates_init(&server_rates, RATE_N, server_now(), v);
		if ((server_ev_rates = event_new(srv.base, -1, EV_PERSIST, server_rates_cb,
		    NULL)) == NULL || event_add(server_ev_rates, &minute) == -1)
			goto fail_mem;
	}
	if ((srv.hosts = hostcount_new()) == NULL ||
	    (srv.listeners = calloc(cfg->n_listeners, sizeof(*srv.listeners))) == NULL)
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
	if ((srv.control = control_open(srv.base, cfg->control, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailgate: %s\n", err);
		maillog(LOG_CRITICAL, NULL, "%s", err);
		status = 2;
		goto out;
	}
	if (control_register(srv.control, "status", server_ctl_status, &srv) == -1 ||
	    control_register(srv.control, "tophosts", server_ctl_tophosts, &srv) == -1 ||
	    control_register(srv.control, "reload", server_ctl_reload, &srv) == -1 ||
	    control_register(srv.control, "listener-suspend", server_ctl_suspend, &srv) == -1 ||
	    control_register(srv.control, "listener-resume", server_ctl_resume, &srv) == -1 ||
	    sched_register_control(server_sched, srv.control) == -1)
		goto fail_mem;
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
	/* deliveries cut here are tried again after a restart; their DCID close first */
	mta_free(server_mta);
	server_mta = NULL;
	maillog(LOG_INFO, NULL, "mailgate stopped");
	goto out;
fail_mem:
	fprintf(stderr, "mailgate: cannot start: %s\n", strerror(errno ? errno : ENOMEM));
	status = 2;
out:
	server_cleanup(&srv);
	return status;
}
