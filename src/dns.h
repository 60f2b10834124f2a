/*
 * dns.h: asynchronous DNS for the event loop, on libunbound (a resolver thread of
 * its own; answers are read on the loop through a pipe, so nothing here blocks).
 *
 * Every lookup calls its callback exactly once, on the loop thread, never from
 * inside the call that started it, and within dns_conf.timeout seconds (one
 * deadline for the whole lookup, both steps of a client lookup included); unless
 * it is cancelled with dns_cancel() or its struct dns is freed, which call no
 * callback at all. A query handle is valid until its callback returns or it is
 * cancelled. The hosts_file is consulted before any query: a name or an address
 * found there is answered from the file alone, without a packet sent.
 */
#ifndef MAILGATE_DNS_H
#define MAILGATE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct dns_conf;
struct dns;
struct dns_query;

/* the longest host name in text, without the trailing dot (RFC 1035 2.3.4) */
#define DNS_NAME_MAX	253

enum dns_status {
	DNS_OK = 0,
	DNS_NXDOMAIN,		/* the name does not exist (or cannot: malformed) */
	DNS_NODATA,		/* the name exists, without records of that type */
	DNS_TEMPFAIL,		/* SERVFAIL, timeout, resolver unreachable: try later */
	DNS_NULLMX,		/* "MX 0 ." (RFC 7505): the domain accepts no mail */
};

struct dns_mx {
	uint16_t preference;
	char host[DNS_NAME_MAX + 1];	/* lower case, no trailing dot */
};

/*
 * A resolver on base, configured from conf (copied: conf may go away): resolvers
 * empty means those of /etc/resolv.conf. On error returns NULL with a message in
 * err. Create it after any fork(): the resolver thread does not survive one.
 */
struct dns *dns_new(struct event_base *base, const struct dns_conf *conf, char *err,
    size_t errlen);

/* cancels every pending query without calling back; may be called from a callback */
void dns_free(struct dns *);

/*
 * Client identity for the HAT: the PTR of the address (IPv4-mapped IPv6 taken as
 * IPv4), its first name (lower-cased, no trailing dot, a syntactically valid host
 * name, else unknown), then A (IPv4) or AAAA (IPv6) of that name. name is NULL
 * when unknown: no PTR, a failure, the timeout, or reverse_lookups off (then no
 * query is sent). verified is true only when the forward lookup of name contains
 * the address. A PTR whose forward lookup does not match gives the name with
 * verified false: only verified names may match a HAT hostname entry, the session
 * decides what else the name is good for (logs). name is valid during the callback.
 * Returns NULL only on allocation failure.
 */
typedef void (*dns_client_cb)(void *arg, const char *name, bool verified);
struct dns_query *dns_lookup_client(struct dns *, const struct sockaddr *sa,
    dns_client_cb cb, void *arg);

/*
 * MX of domain for delivery: status DNS_OK with mx[0..n-1] sorted by preference
 * (equal preferences in answer order: shuffling them, RFC 5321 5.1, is the
 * caller's), DNS_NULLMX with n == 0, or a failure with n == 0. Entries whose host
 * is not a valid host name, and "." among other MX records, are left out; if
 * nothing is left the status is DNS_TEMPFAIL (or DNS_NULLMX when only "." was
 * there). mx is valid during the callback.
 */
typedef void (*dns_mx_cb)(void *arg, int status, const struct dns_mx *mx, size_t n);
struct dns_query *dns_lookup_mx(struct dns *, const char *domain, dns_mx_cb cb, void *arg);

/*
 * A and AAAA of host, asked at once: DNS_OK with the A answers first, then the
 * AAAA ones (port 0), or a failure with n == 0. An address literal is answered as
 * itself. At the timeout, the addresses of a family that did answer are returned
 * (DNS_OK) rather than a failure: a server that drops AAAA queries (RFC 4074)
 * must not stop delivery over IPv4. addrs is valid during the callback.
 */
typedef void (*dns_addr_cb)(void *arg, int status, const struct sockaddr_storage *addrs,
    size_t n);
struct dns_query *dns_lookup_addr(struct dns *, const char *host, dns_addr_cb cb, void *arg);

/* the callback will not be called; q must still be pending (NULL is ignored) */
void dns_cancel(struct dns_query *q);

/* "ok", "nxdomain", "nodata", "tempfail", "null MX": for logs */
const char *dns_status_str(int status);

#endif
