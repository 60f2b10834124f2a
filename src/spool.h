/*
 * spool.h: the durable message store.
 *
 * Layout under the spool directory:
 *   lock        held (flock) by the running server; a second server refuses to start
 *   mid         the MID high-water mark: no MID at or above it was ever handed out
 *   tmp/        messages being received; anything here at start is a crash leftover
 *   pool/       empty files the opener makes ahead and renames into tmp/; emptied at start
 *   queue/<mid> committed messages: an envelope, a blank line, the message
 *   state/<mid> what delivery made of a committed message's recipients (appended)
 *
 * A message's file tmp/<mid> is made by the opener thread (from pool/) while the event loop
 * buffers the first octets; a message bigger than the buffer is written into it
 * from the loop (page cache only) as it arrives. At the end the committer thread
 * writes the rest and syncs many messages at once (group commit: the batch's
 * files fdatasync'ed in parallel by the committer and its helper threads, each
 * renamed into queue/, one fsync of queue/), and only then calls back on the
 * event loop, where the session says 250. The loop never opens, syncs, renames
 * or removes a file. MIDs come
 * from blocks reserved durably ahead of use, so they increase strictly and are
 * never reused across restarts or crashes. Delivery outcomes go a similar way:
 * the scheduler appends lines to state/<mid> through the state thread, which
 * syncs final ones (group commit again, beside the committer's rounds) before
 * the callback that lets the outcome count; a deferral is only written.
 */
#ifndef MAILGATE_SPOOL_H
#define MAILGATE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct event_base;
struct spool;
struct spool_msg;
struct spool_entry;

/* what the envelope records; strings are copied, may hold only printable ASCII */
struct spool_envelope {
	uint64_t mid;
	time_t arrival;
	uint64_t icid;
	const char *listener;
	const char *client;			/* address text */
	const char *helo;			/* may be "" */
	const char *sender;			/* without <>; "" for the null sender */
	const char *body;			/* "7BIT", "8BITMIME" or NULL */
	const char *kind;			/* NULL: a message; "ipmm-job": a mail merge job */
	const char *const *rcpts;		/* without <> */
	size_t n_rcpts;
};

struct spool_opts {
	uint64_t min_free_disk;
};

/*
 * Open (and create) the spool at dir: take the lock, remove tmp/ leftovers, count
 * what queue/ holds, reserve the first MID block and start the committer thread.
 * Blocking: call before the event loop runs. NULL and a reason in err on failure.
 */
struct spool *spool_open(struct event_base *, const char *dir, const struct spool_opts *,
    char *err, size_t errlen);

/*
 * Once the loop has stopped, on its thread, with every begun message committed
 * or aborted: commits already handed over are finished (made durable or
 * removed) but their done() is not called; the lock is released.
 */
void spool_close(struct spool *);

/* the next MID; 0 when the reserved block ran out (the caller answers 451) */
uint64_t spool_next_mid(struct spool *);

/* free space on the spool's filesystem is below min_free_disk (refreshed off the loop) */
bool spool_space_low(const struct spool *);

/* test builds (MAILGATE_FAULT_HOOKS): <spool>/fault says "enomem"; else always false */
bool spool_fault_enomem(const struct spool *);

/* committed messages and their octets, for queue limits and status */
uint64_t spool_count(const struct spool *);
uint64_t spool_bytes(const struct spool *);

/*
 * Start a message in tmp/ with its envelope; NULL with errno set on failure.
 * begin, write and abort touch only the message and read-only spool fields, so
 * a worker thread may build a message it alone holds (the mail merge splitter
 * does); spool_next_mid and commit stay on the loop.
 */
struct spool_msg *spool_msg_begin(struct spool *, const struct spool_envelope *);

/* append message bytes (buffered); -1 with errno set on failure, after which only abort is allowed */
int spool_msg_write(struct spool_msg *, const void *buf, size_t len);

/* drop a message that will not be committed: its file is closed and removed off the loop */
void spool_msg_abort(struct spool_msg *);

/*
 * Blocking: wait until the opener has done everything asked of it so far (files
 * created for begun messages, removed for aborted ones). For tests.
 */
void spool_settle(struct spool *);

#ifdef MAILGATE_FAULT_HOOKS
/* test builds: while held, the opener opens and removes nothing (spool_settle would wait) */
void spool_test_hold_opener(struct spool *, bool hold);
#endif

/*
 * Hand the message to the committer. done(arg, 0) on the event loop once the
 * message is on stable storage in queue/, or done(arg, errno) if it could not
 * be made durable (the file is then removed). The spool_msg is freed by the
 * spool after done returns. The caller may cancel the callback (not the commit)
 * with spool_msg_forget() if it goes away first (on the loop, before done ran).
 * While commits are in flight the spool keeps an event added on the base, so
 * event_base_dispatch() does not return before their callbacks have run.
 */
void spool_msg_commit(struct spool_msg *, void (*done)(void *arg, int err), void *arg);
void spool_msg_forget(struct spool_msg *);

/*
 * Called on the loop after every successful commit (after the committer's
 * done() for that message), with the message's envelope as the file has it
 * (path, data_offset and size filled in). Valid during the call only. For the
 * scheduler: the spool says when a message exists, never the session.
 */
typedef void (*spool_commit_hook)(void *arg, const struct spool_entry *);
void spool_set_commit_hook(struct spool *, spool_commit_hook, void *arg);

/* ---- delivery state: state/<mid>, one line per event (format in spool_state.c) ---- */

enum spool_rcpt_state {
	SPOOL_RCPT_QUEUED = 0,		/* not tried yet */
	SPOOL_RCPT_DEFERRED,		/* tried, to be tried again at "when" */
	SPOOL_RCPT_DELIVERED,		/* done */
	SPOOL_RCPT_BOUNCED,		/* done: failed for good */
};

struct spool_rcpt_status {
	enum spool_rcpt_state state;
	time_t when;			/* deferred: next attempt; else when it happened */
	unsigned attempts;
	char *reason;			/* "451 4.7.1 text" of the last line, or NULL */
};

struct spool_state {
	bool held;
	struct spool_rcpt_status *rcpts;	/* n_rcpts of them, by RID */
	size_t n_rcpts;
	unsigned bad_lines;		/* lines that did not parse (skipped) */
	bool torn;			/* the last line had no LF: a crash mid-append (ignored) */
	long good_len;			/* octets up to and including the last LF */
};

/* "queued", "deferred", "delivered", "bounced" */
const char *spool_rcpt_state_name(enum spool_rcpt_state);

/*
 * One recipient line (with its LF) into buf: "rid N <state> <when> <attempts>
 * <reason>". Octets of reason outside 0x20..0x7e become '?', so no reason can
 * end or forge a line. The length, or -1 if it does not fit.
 */
int spool_state_format(char *buf, size_t cap, uint32_t rid, enum spool_rcpt_state,
    time_t when, unsigned attempts, const char *reason);
/* "held <when>" or "released <when>", with its LF */
int spool_state_format_hold(char *buf, size_t cap, bool held, time_t when);

/*
 * Replay state/<mid> for a message of n_rcpts recipients: the last line about
 * each RID wins, held/released toggle. A missing file is all queued. A last
 * line without its LF (torn by a crash) is ignored. 0, or -1 and why in err.
 * Reads only: safe next to a running server.
 */
int spool_state_read(const char *spooldir, uint64_t mid, size_t n_rcpts, struct spool_state *,
    char *err, size_t errlen);
void spool_state_free(struct spool_state *);

/*
 * The server's replay at start-up (blocking: before the loop runs): as
 * spool_state_read, and a torn last line is cut off the file, so the next
 * append cannot glue onto it and forge another line.
 */
int spool_state_recover(struct spool *, uint64_t mid, size_t n_rcpts, struct spool_state *,
    char *err, size_t errlen);

/*
 * Append text (whole lines) to state/<mid>: written off the loop, by the
 * state thread, many at once, and with sync fdatasync'ed (and
 * state/ fsync'ed when the file's name is not on disk yet); a message commit
 * handed over earlier is durable no later than this (it waits for that
 * message's batch). done(arg, 0) on the loop once it is written (and with
 * sync durable), done(arg, errno) if not (nothing of it is left in the file).
 * Never from inside this call. -1 with errno (ENOMEM) if it could not be
 * queued. Without sync the lines may be lost in a crash (not in a kill): for
 * what only costs a retry when lost, a deferral.
 */
int spool_state_append(struct spool *, uint64_t mid, const char *text, size_t len, bool sync,
    void (*done)(void *arg, int err), void *arg);

/*
 * Remove a message that is finished: queue/<mid> unlinked and queue/ fsync'ed
 * off the loop, then state/<mid>; count and bytes drop by one message of size
 * octets. done (may be NULL) on the loop as for an append. -1 with errno.
 */
int spool_remove(struct spool *, uint64_t mid, uint64_t size, void (*done)(void *arg, int err),
    void *arg);

/* ---- reading the queue, for `mailgate queue` (no server needed) ---- */

struct spool_entry {
	uint64_t mid;
	time_t arrival;
	uint64_t icid;
	char *listener;
	char *client;
	char *helo;
	char *sender;
	char *body;
	char *kind;				/* NULL for a message; "ipmm-job" (ipmm_job.h) */
	char **rcpts;
	size_t n_rcpts;
	uint64_t size;				/* octets of the message after the envelope */
	long data_offset;			/* where the message starts in the file */
	char *path;
};

/* read the envelope of one queue file; -1 and a reason in err if it is not one */
int spool_entry_read(const char *path, struct spool_entry *, char *err, size_t errlen);
void spool_entry_free(struct spool_entry *);

/*
 * every committed message in MID order; calls fn for each, stops if fn returns
 * non-zero and returns that value; 0 after the last one (a spool without queue/
 * is empty); -1 and a reason in err if queue/ cannot be read. Files that do not
 * parse are named on stderr and skipped.
 */
int spool_scan(const char *spooldir, int (*fn)(const struct spool_entry *, void *), void *arg,
    char *err, size_t errlen);

#endif
