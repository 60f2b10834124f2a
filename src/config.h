/*
 * config.h: the configuration of a running mailgate, as one immutable struct.
 *
 * config_load() reads a libconfig file (or the embedded default), fills in every
 * default, validates every setting and either returns a whole config or an error
 * naming "file:line: message". Nothing is half-loaded: a config with an error is
 * never used. config_print() writes the effective config back in libconfig syntax
 * (what `mailgate check` shows). A config is shared by reference: sessions hold it
 * with config_ref() so a reload can swap in a new one while old sessions finish.
 */
#ifndef MAILGATE_CONFIG_H
#define MAILGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "hat.h"

enum policy_action {
	ACTION_ACCEPT,
	ACTION_RELAY,
	ACTION_REJECT,
	ACTION_TCPREFUSE,
	ACTION_CONTINUE,
};

/* tls and auth per policy */
enum offer_mode { MODE_OFF, MODE_PREFERRED, MODE_REQUIRED };

enum bare_crlf_mode { BARE_CRLF_REJECT, BARE_CRLF_ACCEPT };

enum log_format { LOG_FORMAT_ESA, LOG_FORMAT_JSON };

/* a mail flow policy: every field filled (from policy_defaults where left out) */
struct policy {
	char *name;
	int line;
	enum policy_action action;
	uint64_t max_message_size;		/* octets */
	unsigned max_connections_per_host;	/* 0 = no limit */
	unsigned max_messages_per_connection;	/* 0 = no limit */
	unsigned max_recipients_per_message;	/* 0 = no limit */
	unsigned max_recipients_per_hour;	/* 0 = no limit */
	int banner_code;
	char *banner_text;
	int reject_code;
	char *reject_text;
	enum offer_mode tls;
	char **tls_required_senders;
	size_t n_tls_required_senders;
	enum offer_mode auth;
	bool auth_requires_tls;
	enum bare_crlf_mode bare_crlf;
	unsigned greet_delay;			/* seconds before the banner; 0 = none */
};

struct tls_files {
	char *certificate;			/* NULL when not set */
	char *key;
};

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char *text;				/* as written: "127.0.0.1:2525", "[::1]:25" */
};

struct hat_rule {
	char *group;				/* sender group name */
	int line;
	struct hat_host *hosts;			/* parsed host entries, see hat.h */
	size_t n_hosts;
	struct policy *policy;			/* points into config->policies */
};

enum rat_action { RAT_ACCEPT, RAT_REJECT };

struct rat_rule {
	char *recipient;			/* "example.com", ".example.com", "a@b", "ALL" */
	int line;
	enum rat_action action;
};

struct listener_conf {
	char *name;
	int line;
	struct listen_addr *addrs;
	size_t n_addrs;
	bool public;				/* type = "public" */
	unsigned max_connections;
	bool ipmm;
	bool tls_wrapper;
	struct tls_files tls;			/* per-listener override, fields NULL if unset */
	struct hat_rule *hat;
	size_t n_hat;
	struct rat_rule *rat;
	size_t n_rat;
	struct hat_index *hat_index;		/* hat compiled for hat_match(), see hat.h */
};

enum route_target_kind {
	TARGET_HOST,				/* host[:port] or [address][:port] */
	TARGET_USEDNS,
	TARGET_DEVNULL,
	TARGET_MAILDIR,
};

struct route_target {
	enum route_target_kind kind;
	char *text;				/* as written */
	char *host;				/* TARGET_HOST: name or address literal */
	uint16_t port;				/* TARGET_HOST: default 25 */
	char *path;				/* TARGET_MAILDIR */
};

struct route {
	char *domain;				/* "example.com", ".example.com" or "ALL" */
	int line;
	struct route_target *to;
	size_t n_to;
};

struct limits {
	unsigned max_connections;
	unsigned max_tls_sessions;
	unsigned max_header_lines;		/* 0 = no limit */
	unsigned max_connection_time;		/* seconds */
	unsigned injection_timeout;		/* seconds */
	unsigned command_timeout;		/* seconds */
	unsigned bad_command_limit;
	unsigned auth_failure_limit;
	unsigned max_hops;
	uint64_t queue_max_messages;
	uint64_t queue_max_bytes;
	uint64_t min_free_disk;
};

struct dns_conf {
	char **resolvers;			/* "addr[:port]" */
	size_t n_resolvers;
	char *hosts_file;
	bool reverse_lookups;
	unsigned timeout;			/* seconds */
};

struct delivery_conf {
	unsigned max_connections;
	unsigned max_connections_per_destination;
	unsigned retry_initial;			/* seconds */
	unsigned retry_max;
	unsigned max_lifetime;
};

struct config {
	int refs;
	char *file;				/* "(embedded default)" when no file */
	char *hostname;
	char *spool;
	char *control;
	struct {
		char *file;			/* "-" = standard error */
		enum log_format format;
	} log;
	struct limits limits;
	struct dns_conf dns;
	struct tls_files tls;
	struct {
		char *users;
	} auth;
	struct policy policy_defaults;
	struct policy *policies;
	size_t n_policies;
	struct listener_conf *listeners;
	size_t n_listeners;
	struct route *routes;
	size_t n_routes;
	struct delivery_conf delivery;
};

/* the text of the embedded default config (libconfig syntax) */
extern const char config_default_text[];

/*
 * Load path, or the embedded default when path is NULL. On error returns NULL
 * and writes "file:line: message" (one or more lines) into err.
 */
struct config *config_load(const char *path, char *err, size_t errlen);

/* the same from a string; name is used in error messages */
struct config *config_load_string(const char *text, const char *name, char *err,
    size_t errlen);

/* which file a subcommand uses: -c FILE, else ./mailgate.conf if it exists, else NULL */
const char *config_pick_path(const char *given);

struct config *config_ref(struct config *);
void config_unref(struct config *);

/* the effective config, every default filled in, in libconfig syntax */
void config_print(const struct config *, FILE *);

const struct policy *config_policy(const struct config *, const char *name);
const struct listener_conf *config_listener(const struct config *, const char *name);

/* "10M" -> octets, "5m" -> seconds; return -1 on a malformed value */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, unsigned *out);

#endif
