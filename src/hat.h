/*
 * hat.h: the Host Access Table's host forms, parsed once at config load and
 * matched on every connection.
 *
 * A HAT host is one of: ALL; an address (IPv4 or IPv6); a CIDR block; an IPv4
 * range "192.0.2.10-20"; a partial address "10.1."; a hostname; a ".suffix".
 * Addresses, blocks, ranges and partials are all kept as [lo, hi] ranges of
 * 128-bit addresses (IPv4 mapped into ::ffff:0:0/96) so one comparison serves them.
 * Hostnames and suffixes match the client's verified reverse name.
 */
#ifndef MAILGATE_HAT_H
#define MAILGATE_HAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct config;
struct listener_conf;
struct hat_rule;
struct hat_index;

enum hat_host_kind {
	HAT_ALL,
	HAT_RANGE,				/* address, CIDR, range, partial */
	HAT_NAME,				/* exact hostname */
	HAT_SUFFIX,				/* ".example.com": the name ends with it */
};

/* a 128-bit address, big-endian bytes; IPv4 as ::ffff:a.b.c.d */
struct hat_addr {
	uint8_t b[16];
};

struct hat_host {
	enum hat_host_kind kind;
	char *text;				/* as written */
	struct hat_addr lo, hi;			/* HAT_RANGE */
	char *name;				/* HAT_NAME / HAT_SUFFIX, lower case */
};

/* parse one host form; returns -1 and a reason in err on a malformed entry */
int hat_host_parse(const char *text, struct hat_host *out, char *err, size_t errlen);
void hat_host_free(struct hat_host *);

/* a socket address as a hat_addr (IPv4 and v4-mapped IPv6 are the same) */
void hat_addr_from_sockaddr(const struct sockaddr *sa, struct hat_addr *out);

/*
 * The rule that matches a client, first match wins, top to bottom; a rule whose
 * policy action is "continue" is skipped. revname is the verified reverse name,
 * or NULL when unknown. Sets *matched to the host entry that matched. NULL when
 * no rule matches (the caller refuses the connection). Uses the listener's
 * hat_index when it has one, else walks the rules; the answer is the same.
 */
const struct hat_rule *hat_match(const struct listener_conf *, const struct sockaddr *sa,
    const char *revname, const struct hat_host **matched);

/*
 * A listener's rules compiled for hat_match(), built once at config load:
 * addresses in O(log n), names in O(length of the name), whatever the number
 * of entries. It points into rules (the rules, their hosts and their policies
 * must outlive it and not move) and reads each rule's policy action when built,
 * so build it after the policies are resolved. NULL when out of memory.
 * Zero rules give an index that matches nothing.
 */
struct hat_index *hat_index_build(const struct hat_rule *rules, size_t n);
void hat_index_free(struct hat_index *);

/*
 * The Recipient Access Table of a public listener: does it accept this
 * recipient? addr is the mailbox ("local@domain"), domain its domain part (the
 * real destination, after any source route was dropped). Entries are matched top
 * to bottom: a full address, a domain, a ".subdomain" suffix, or ALL. No
 * matching entry means reject.
 */
bool hat_rat_accepts(const struct listener_conf *, const char *addr, const char *domain);

#endif
