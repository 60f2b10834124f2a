/*
 * spool_int.h: the spool's internals, private to spool.c, spool_open.c,
 * spool_read.c and spool_state.c; nothing else includes it (the rest of the
 * program sees only spool.h). The spool is one store run by several threads
 * (the event loop, the committer and its helpers, the opener, the state
 * thread) that share one struct spool and its queues; its files each hold one
 * role, so they share the structs, the limits and the few functions one file
 * calls in another, declared here. Which thread may touch which field is said
 * next to the field.
 */
#ifndef MAILGATE_SPOOL_INT_H
#define MAILGATE_SPOOL_INT_H

#include "spool.h"

#include <sys/queue.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;

#define SPOOL_MAGIC		"mailgate-spool 1"
#define SPOOL_BUF		(64 * 1024)	/* one write() per this many octets */
#define SPOOL_MID_BLOCK		1000		/* MIDs reserved by one sync of "mid" */
#define SPOOL_LINE_MAX		(64 * 1024)	/* longest envelope line a reader takes */
#define SPOOL_NAME_MAX		24		/* a uint64 in decimal, and a NUL */
#define SPOOL_MEM_MAX		(4 * 1024 * 1024) /* a message's buffer while its file is not open yet */
#define SPOOL_SYNC_THREADS	32		/* the committer and its helpers sync a batch in parallel */
#define SPOOL_POOL		256		/* empty files the opener keeps ready in pool/ */

enum spool_fault {
	FAULT_NONE,
	FAULT_ENOSPC,
	FAULT_EIO,
	FAULT_SYNC_EIO,
	FAULT_ENOMEM,		/* test-only: the session plays a failed allocation */
};

/* the loop asks the committer for the next MID block; the committer answers */
enum spool_reserve {
	RESERVE_IDLE,
	RESERVE_WANTED,
	RESERVE_READY,
};

/* a message's file, opened by the opener thread (never by the loop) */
enum spool_open_state {
	OPEN_PENDING,
	OPEN_READY,				/* fd is valid */
	OPEN_FAILED,				/* open_err says why */
};

TAILQ_HEAD(spool_msgq, spool_msg);

struct spool_msg {
	TAILQ_ENTRY(spool_msg) entry;		/* pending or completed list */
	TAILQ_ENTRY(spool_msg) oentry;		/* the opener's queue */
	struct spool *sp;
	uint64_t mid;
	char name[SPOOL_NAME_MAX];		/* tmp/<name> then queue/<name> */
	int fd;					/* set by the opener before OPEN_READY */
	_Atomic int open_state;			/* enum spool_open_state */
	int open_err;
	bool created;				/* opener: tmp/<name> is ours to remove */
	bool opener_owned;			/* under mu: on the opener's queue or being opened */
	bool abandoned;				/* under mu: aborted; the opener frees it */
	char *buf;				/* message octets not written yet */
	size_t cap;				/* SPOOL_BUF, more while the file is not open */
	size_t used;
	uint64_t size;				/* message octets after the envelope */
	int err;				/* sticky write error, then the result */
	bool renamed;				/* committer: now in queue/ */
	bool forgotten;				/* loop only: no callback */
	enum spool_fault fault;
	uint64_t appended;			/* octets appended so far, envelope included */
	uint64_t seq;				/* loop: the order it was handed over in */
	struct spool_entry *env;		/* for the commit hook, when there is one */
	void (*done)(void *, int);
	void *arg;
};

/* a state append or a removal: the committer's other work (spool.h) */
enum spool_op_kind { OP_APPEND, OP_REMOVE };

struct spool_op {
	TAILQ_ENTRY(spool_op) entry;
	enum spool_op_kind kind;
	uint64_t mid;
	uint64_t size;				/* OP_REMOVE: the message's octets */
	char *text;				/* OP_APPEND */
	size_t len;
	bool sync;				/* OP_APPEND: fdatasync'ed before done() */
	int err;
	bool created;				/* committer: the append made the file */
	bool removed;				/* committer: the removal unlinked it */
	uint64_t seq;				/* loop: the order it was handed over in */
	void (*done)(void *, int);
	void *arg;
};

TAILQ_HEAD(spool_opq, spool_op);

/* items of one round for the helpers: the committer's messages, or the state thread's ops */
struct spool_jobset {
	TAILQ_ENTRY(spool_jobset) entry;
	void **items;
	void (*fn)(struct spool *, void *, enum spool_fault);
	enum spool_fault fault;
	size_t n, next, left;
};

struct spool {
	struct event_base *base;
	char *dir;
	int lockfd;
	int dirfd;
	int tmpfd;
	int poolfd;
	int queuefd;
	int statefd;
	struct spool_opts opts;
	spool_commit_hook hook;			/* loop only */
	void *hook_arg;

	/* loop thread only */
	uint64_t mid_next;			/* the current block is [mid_next, mid_end) */
	uint64_t mid_end;
	unsigned inflight;			/* committed, done() not yet delivered */
	uint64_t seq;				/* messages and ops handed over so far */
	struct event *done_ev;

	/* committer thread only (after spool_open) */
	uint64_t mark;				/* the durable high-water mark */

	/* shared */
	atomic_int reserve_state;
	uint64_t reserve_lo;			/* valid while RESERVE_READY */
	uint64_t reserve_hi;
	_Atomic uint64_t free_bytes;
	_Atomic uint64_t count;
	_Atomic uint64_t bytes;

	pthread_t thread;
	bool thread_started;
	pthread_t opener;
	bool opener_started;
	pthread_t stater;
	bool stater_started;
	pthread_t helpers[SPOOL_SYNC_THREADS - 1];
	unsigned n_helpers;
	pthread_mutex_t mu;			/* guards what follows */
	pthread_cond_t cv;
	pthread_cond_t opener_cv;		/* work for the opener */
	pthread_cond_t opened_cv;		/* the opener finished a message's open */
	pthread_cond_t state_cv;		/* work for the state thread */
	bool state_dir_dirty;			/* state thread: a name in state/ not fsync'ed yet */
	uint64_t busy_seq;			/* the first message of the batch being committed */
	bool stop;
	bool state_stop;
	bool opener_stop;
	bool opener_busy;
	bool opener_hold;			/* test builds: spool_test_hold_opener */
	struct spool_msgq opener_q;		/* loop -> opener: files to open or remove */
	uint64_t pool[SPOOL_POOL];		/* opener only: pool/p<n> ready, a stack */
	size_t pool_n;
	uint64_t pool_next;			/* opener only: the next pool name */
	bool pool_failed;			/* opener only: a fill failed; none until the next open */
	struct spool_msgq pending;		/* loop -> committer */
	struct spool_msgq completed;		/* committer -> loop */
	struct spool_opq ops_pending;		/* the same for state appends and removals */
	struct spool_opq ops_completed;

	/* the batch being synced, shared by the committer and its helpers */
	pthread_mutex_t wmu;			/* guards what follows */
	pthread_cond_t wcv;			/* a new set of jobs, or stop */
	pthread_cond_t wdone_cv;		/* a set is finished */
	TAILQ_HEAD(, spool_jobset) work;	/* sets with jobs nobody took yet */
	bool work_stop;
};

/* spool.c */
void spool_msg_free(struct spool_msg *);
bool spool_printable(const char *);
bool spool_parse_mid(const char *, uint64_t *);
bool spool_parse_u64(const char *, uint64_t *);
void spool_mid_name(char *, uint64_t);
void spool_run_parallel(struct spool *, void **, size_t,
    void (*)(struct spool *, void *, enum spool_fault), enum spool_fault);

/* spool_open.c */
void *spool_opener(void *);
void spool_opener_queue(struct spool *, struct spool_msg *);

/* spool_read.c */
int spool_cmp_mid(const void *, const void *);

/* spool_state.c */
void *spool_stater(void *);

#endif
