/*
 * ipmm_split.h: splitting committed mail merge jobs into messages.
 *
 * A job (ipmm_job.h) becomes one message per recipient, each with its own MID,
 * spooled like any other and so delivered by the scheduler. The assembly runs
 * on one worker thread, streaming (ipmm_assemble.h); the loop hands it MIDs
 * and commits what it built, at most a window of messages at a time, so memory
 * does not grow with the job. Progress is durable and the split happens once
 * per recipient: before a message is committed, "rid N deferred ... splitting
 * into MID M" (the intent) is made durable in the job's state file; once it is
 * committed, "rid N delivered ... split into MID M". The job is removed when a
 * run has found every recipient split. After a crash the job is replayed at
 * start: a recipient with a done line is skipped, and one with only an intent
 * is skipped if queue/<M> exists (its message was committed; had it been
 * delivered and removed, its done line would be durable: that append is
 * queued before the delivery's own) and made again with a new MID if not.
 */
#ifndef MAILGATE_IPMM_SPLIT_H
#define MAILGATE_IPMM_SPLIT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct spool;
struct spool_msg;
struct ipmm_split;
struct ipmm_commit;

/*
 * Replay the spool's jobs (blocking: at start, after spool_open, before the
 * listeners accept) and start the worker. NULL and why in err on failure.
 */
struct ipmm_split *ipmm_split_new(struct event_base *, struct spool *, const char *spooldir,
    const char *hostname, char *err, size_t errlen);

/* after the loop has stopped, before spool_close: the worker stops, work in flight is dropped */
void ipmm_split_free(struct ipmm_split *);

/*
 * Commit a job the session has written: spool_msg_commit, and once it is
 * durable the job is split, whether or not the session is still there. done
 * (on the loop, as spool_msg_commit's) may be cancelled with ipmm_split_forget.
 */
struct ipmm_commit *ipmm_split_commit(struct ipmm_split *, struct spool_msg *, uint64_t mid,
    void (*done)(void *arg, int err), void *arg);
void ipmm_split_forget(struct ipmm_commit *);

#endif
