/*
 * server.h: the life of the serving process: the event loop, the spool, the
 * listeners, the open sessions, signals (SIGHUP reloads, SIGTERM drains and
 * stops), and the counters every module reads. One event-loop thread runs every
 * session; the spool's committer thread does the syncing.
 */
#ifndef MAILGATE_SERVER_H
#define MAILGATE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct event_base;
struct spool;
struct listener;
struct smtp_session;
struct hostcount;
struct control;
struct dns;
struct tls_store;
struct auth;
struct ipmm_split;

struct server {
	struct event_base *base;
	struct config *cfg;			/* the current config; sessions hold their own ref */
	struct spool *spool;
	struct hostcount *hosts;		/* per client address, across listeners */
	struct control *control;		/* the control socket */
	struct dns *dns;			/* client names for the HAT (off the loop) */
	struct tls_store *tls;			/* certificates, reloaded on SIGHUP */
	struct auth *auth;			/* the users file and its hashing thread */
	struct ipmm_split *ipmm;		/* mail merge jobs into messages (a worker) */
	unsigned n_tls;				/* TLS sessions, all listeners */
	struct timespec started;		/* CLOCK_MONOTONIC, for uptime */
	struct listener **listeners;
	size_t n_listeners;
	struct smtp_session *sessions;		/* every open session (a list) */
	unsigned n_sessions;			/* across all listeners */
	uint64_t next_icid;
	bool stopping;				/* SIGTERM: drain, then exit */
	char *config_path;			/* what SIGHUP reloads; NULL = embedded default */
	struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_stop_grace;
};

/* run the server with cfg until SIGTERM; returns the process exit status */
int server_run(struct config *cfg, const char *config_path);

/* a session ended and left the list (called by the session's single teardown path) */
void server_session_gone(struct server *);

#endif
