/*
 * util.h: small helpers every module shares: bounded string copies, escaping of
 * client text for logs, dates in the formats mail uses, mkdir -p.
 */
#ifndef MAILGATE_UTIL_H
#define MAILGATE_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* copy with truncation, always NUL-terminated (cap > 0); returns strlen(src) */
size_t util_strlcpy(char *dst, const char *src, size_t cap);

/*
 * Client text made safe for one log line: bytes outside 0x20..0x7e, and '\',
 * become "\xNN". Output cut to cap - 1 bytes (whole escapes only). Returns out.
 */
char *util_escape(char *out, size_t cap, const char *in, size_t len);

/* "Sat, 28 Nov 2026 20:10:00 +0000" (RFC 5322 3.3), local time */
void util_rfc5322_date(char *out, size_t cap, time_t t);

/* "2026-11-28T20:10:00Z" (RFC 3339, UTC) */
void util_rfc3339(char *out, size_t cap, time_t t);

/* "Sat Nov 28 20:10:00 2026" (ctime without the newline), local time */
void util_ctime(char *out, size_t cap, time_t t);

/* case-insensitive ASCII compare of a counted string with a C string */
bool util_span_ieq(const char *p, size_t len, const char *s);

/* "1.2K", "3.4M": a size for people */
void util_human_size(char *out, size_t cap, uint64_t n);

/*
 * The process's memory, for `mailgate status`: the resident set (from
 * /proc/self/statm, 0 if unreadable) and the heap in use (malloc'ed and not
 * freed: mallinfo2, or the sanitizer allocator's count in an ASan build, where
 * freed memory sits in a quarantine and RSS says little).
 */
uint64_t util_rss_bytes(void);

/*
 * write(2) until all of p is written, through EINTR and short writes; a regular
 * file that takes nothing is full (ENOSPC). 0, or -1 with errno. A write may wait
 * for the disk: the event loop uses it only for a received message's bytes into
 * the page cache (spool.c); syncing is always another thread's.
 */
int util_write_all(int fd, const void *p, size_t len);
uint64_t util_heap_bytes(void);

/* "5s", "3m", "2h", "4d": an age for people */
void util_human_age(char *out, size_t cap, int64_t secs);

/*
 * mkdir -p: each missing directory of path created, mode 0700, and made
 * durable by an fsync of its parent, where its name lives (the spool's
 * directory, a maildir root). 0, or -1 with errno (ENOENT for an empty path).
 */
int util_mkdirs(const char *path);

#endif
