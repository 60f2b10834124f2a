/*
 * spool.c: the durable message store (see spool.h).
 *
 * Promise: done(arg, 0) runs only after the message file has been fdatasync'ed,
 * renamed into queue/ and queue/ itself fsync'ed, so a 250 sent from done()
 * survives kill -9 and power loss. Anything else (a write error, a failed sync)
 * reaches done() as an errno and leaves no file behind, so the session says 451.
 * Threads: the event loop (begin, write, abort, commit, callbacks), which touches
 * a message file only to write() into it once the message outgrows its 64 KiB
 * buffer; the opener, which makes tmp/<mid> for each begun message (from a pool
 * of empty files it creates ahead, in pool/) and removes the files of aborted ones; the committer, which commits messages; the state
 * thread, which does delivery's state appends and removals; and their helpers,
 * which fdatasync a round's files in parallel with them.
 *
 * On-disk format of queue/<mid> (text, readable with less):
 *
 *	mailgate-spool 1
 *	mid 214
 *	arrival 2026-11-28T20:10:00Z
 *	icid 5
 *	listener default
 *	client 127.0.0.1
 *	helo client.example
 *	sender <test@test.com>
 *	body 8BITMIME
 *	rcpt 0 <user@other.com>
 *	rcpt 1 <other@other.com>
 *
 *	<the message as stored: our Received: header, then the client's
 *	 bytes after dot-unstuffing, byte for byte>
 *
 * One "key value" line each, ended by LF, up to an empty line. The first line
 * names the format and its version. "arrival" is RFC 3339 UTC. "sender <>" is
 * the null sender. "helo " (with an empty value) when the client sent none.
 * "body" is left out when MAIL FROM had no BODY=. "kind" is left out for a
 * message; "kind ipmm-job" marks a mail merge job (ipmm_job.h), which is not
 * delivered itself but split into messages. "rcpt N" lines number the
 * recipients (the RID) from 0 in order. Values hold only octets 0x20..0x7e:
 * the writer refuses anything else (EINVAL), so no client text can end a line
 * and forge an envelope field. Readers refuse a file whose first line is not
 * "mailgate-spool 1", and ignore keys they do not know (forward compatibility).
 *
 * The "mid" file holds the high-water mark in decimal: every MID handed out is
 * below it. It is replaced by write mid.tmp, fdatasync, rename, fsync(dir).
 *
 * state/<mid> is the delivery record of queue/<mid>, append-only, one event a
 * line, written only by the committer (spool_state_append) and replayed at start:
 *
 *	rid 1 deferred 1795900200 1 451 4.7.1 greylisted, try later
 *	rid 0 delivered 1795896601 1 250 2.0.0 maildir
 *	held 1795896700
 *	released 1795896760
 *	rid 1 bounced 1795903800 2 550 5.1.1 no such user
 *
 * "rid N <state> <when> <attempts> <reason>": state is deferred (when = the
 * next attempt, epoch seconds), delivered or bounced (when = the event); the
 * attempts made so far; the reason, to the end of the line, is "<code>
 * <enhanced> <text>" (code 000 when no server answered), printable ASCII only.
 * "held"/"released" stop and restart delivery of the whole message. The last
 * line about a RID wins; a RID with no line is queued (never tried). A last
 * line without its LF is a crash mid-append: readers ignore it and the server
 * cuts it off at start (an append after it could otherwise complete a forged
 * line); an append that fails is truncated back off. Unknown lines are skipped.
 * A final line (delivered, bounced), "held", "released" and the mail merge's
 * lines are synced: none counts before its fdatasync and the fsync of state/
 * that puts its file's name on disk. A "deferred" line is only written (the
 * page cache takes it to disk when it will, or the next synced line of the
 * file does): losing it in a crash loses a retry time and an attempt count,
 * nothing else, so a queue that cannot be delivered costs one synced file
 * per message, not two (Postfix does not sync its deferral logs either). An
 * outcome lost in a crash means a recipient tried again (at worst a
 * duplicate), never one dropped. A message whose recipients are all
 * delivered or bounced is removed: queue/<mid> unlinked, queue/ fsync'ed, then
 * state/<mid> unlinked; a state file without its message is removed at start.
 */
#include "spool.h"
#include "util.h"

#include <sys/file.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

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

static void spool_done_cb(evutil_socket_t, short, void *);
static int spool_cmp_mid(const void *, const void *);

static void
spool_msg_free(struct spool_msg *m)
{
	if (m->fd != -1)
		close(m->fd);
	free(m->buf);
	if (m->env != NULL) {
		spool_entry_free(m->env);
		free(m->env);
	}
	free(m);
}

static void
spool_op_free(struct spool_op *op)
{
	free(op->text);
	free(op);
}

/* ---- small helpers ---- */

static bool
spool_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* a MID as queue/ names it: decimal, no sign, no leading zero, not 0 */
static bool
spool_parse_mid(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s < '1' || *s > '9')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

/* plain decimal, "0" allowed */
static bool
spool_parse_u64(const char *s, uint64_t *out)
{
	if (strcmp(s, "0") == 0) {
		*out = 0;
		return true;
	}
	return spool_parse_mid(s, out);
}

static void
spool_mid_name(char *out, uint64_t mid)
{
	snprintf(out, SPOOL_NAME_MAX, "%" PRIu64, mid);
}

static uint64_t
spool_statvfs(int fd)
{
	struct statvfs st;

	if (fstatvfs(fd, &st) == -1)
		return UINT64_MAX;		/* unknown: do not refuse mail over it */
	return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

#ifdef MAILGATE_FAULT_HOOKS
/*
 * Test-only: <spooldir>/fault, if present, names a disk fault to simulate so
 * the integration tests can play a full or failing disk. Its first word:
 * "enospc", "eio" or "sync-eio"; or "enomem", which spool_fault_enomem() reports
 * so the session can play a failed allocation.
 */
static enum spool_fault
spool_fault_read(const struct spool *sp)
{
	char buf[64];
	ssize_t n;
	size_t len;
	int fd;

	if ((fd = openat(sp->dirfd, "fault", O_RDONLY | O_CLOEXEC)) == -1)
		return FAULT_NONE;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return FAULT_NONE;
	buf[n] = '\0';
	len = strcspn(buf, " \t\r\n");
	if (util_span_ieq(buf, len, "enospc"))
		return FAULT_ENOSPC;
	if (util_span_ieq(buf, len, "eio"))
		return FAULT_EIO;
	if (util_span_ieq(buf, len, "sync-eio"))
		return FAULT_SYNC_EIO;
	if (util_span_ieq(buf, len, "enomem"))
		return FAULT_ENOMEM;
	return FAULT_NONE;
}
#else
#define spool_fault_read(sp)	((void)(sp), FAULT_NONE)
#endif

bool
spool_fault_enomem(const struct spool *sp)
{
	return spool_fault_read(sp) == FAULT_ENOMEM;
}

/* the write error a fault stands for, 0 if it is not one */
static int
spool_fault_write_errno(enum spool_fault f)
{
	switch (f) {
	case FAULT_ENOSPC:
		return ENOSPC;
	case FAULT_EIO:
		return EIO;
	default:
		return 0;
	}
}

/* ---- the MID high-water mark ---- */

/* 1 if the file is missing, 0 and the mark, or -1 */
static int
spool_mark_read(int dirfd, uint64_t *mark)
{
	char buf[32];
	ssize_t n;
	int fd;

	if ((fd = openat(dirfd, "mid", O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 1;
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n == -1)
		return -1;
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	if (!spool_parse_mid(buf, mark)) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/*
 * Durably replace "mid": a crash leaves either the old or the new mark, never
 * a torn one, and the rename is on disk before any MID below the new mark is
 * handed out.
 */
static int
spool_mark_write(int dirfd, uint64_t mark)
{
	char buf[32];
	int fd, n, save;

	n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", mark);
	fd = openat(dirfd, "mid.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (util_write_all(fd, buf, (size_t)n) == -1 || fdatasync(fd) == -1) {
		save = errno;
		close(fd);
		errno = save;
		return -1;
	}
	if (close(fd) == -1)
		return -1;
	if (renameat(dirfd, "mid.tmp", dirfd, "mid") == -1)
		return -1;
	return fsync(dirfd);
}

/* committer: the block after the current one, asked for by spool_next_mid */
static void
spool_reserve_next(struct spool *sp)
{
	uint64_t lo = sp->mark;

	if (lo > UINT64_MAX - SPOOL_MID_BLOCK || spool_mark_write(sp->dirfd, lo + SPOOL_MID_BLOCK) == -1) {
		/* the loop asks again when it next takes a MID */
		fprintf(stderr, "mailgate: spool %s: cannot reserve MIDs: %s\n", sp->dir,
		    strerror(errno));
		atomic_store(&sp->reserve_state, RESERVE_IDLE);
		return;
	}
	sp->mark = lo + SPOOL_MID_BLOCK;
	sp->reserve_lo = lo;
	sp->reserve_hi = sp->mark;
	atomic_store(&sp->reserve_state, RESERVE_READY);
}

/* ---- the committer thread ---- */

/*
 * Off the loop, on the committer or one of its helpers: wait for the message's
 * file to be open, write what the loop left in the buffer and fdatasync it.
 * The result lands in m->err. Many of these run at once, one per thread, so a
 * batch costs about one device flush, not one per message: concurrent syncs
 * share the flushes (and on a journalled filesystem one journal commit).
 */
static void
spool_msg_finish(struct spool *sp, void *item, enum spool_fault fault)
{
	struct spool_msg *m = item;
	int e;

	if (atomic_load(&m->open_state) == OPEN_PENDING) {
		pthread_mutex_lock(&sp->mu);
		while (atomic_load(&m->open_state) == OPEN_PENDING)
			pthread_cond_wait(&sp->opened_cv, &sp->mu);
		pthread_mutex_unlock(&sp->mu);
	}
	if (m->err == 0 && atomic_load(&m->open_state) == OPEN_FAILED)
		m->err = m->open_err;
	if (m->err == 0 && m->used > 0) {
		/* test-only: as spool_msg_flush, a fault hits the next real write() */
		if (m->fault == FAULT_NONE)
			m->fault = fault;
		if ((e = spool_fault_write_errno(m->fault)) != 0)
			m->err = e;
		else if (util_write_all(m->fd, m->buf, m->used) == -1)
			m->err = errno;
		else
			m->used = 0;
	}
	if (m->err == 0) {
		if (fault == FAULT_SYNC_EIO)
			m->err = EIO;
		else if (fdatasync(m->fd) == -1)
			m->err = errno;
	}
	free(m->buf);
	m->buf = NULL;
}

/* a helper thread: take jobs of whatever set the committer or the state thread posts */
static void *
spool_helper(void *arg)
{
	struct spool *sp = arg;
	struct spool_jobset *js;
	void *item;

	pthread_mutex_lock(&sp->wmu);
	for (;;) {
		while (!sp->work_stop && TAILQ_EMPTY(&sp->work))
			pthread_cond_wait(&sp->wcv, &sp->wmu);
		if ((js = TAILQ_FIRST(&sp->work)) == NULL)
			break;			/* stopping */
		item = js->items[js->next++];
		if (js->next == js->n)
			TAILQ_REMOVE(&sp->work, js, entry);
		pthread_mutex_unlock(&sp->wmu);
		js->fn(sp, item, js->fault);
		pthread_mutex_lock(&sp->wmu);
		if (--js->left == 0)
			pthread_cond_broadcast(&sp->wdone_cv);
	}
	pthread_mutex_unlock(&sp->wmu);
	return NULL;
}

/*
 * fn on each of the n items, the caller (the committer or the state thread)
 * and the helpers taking them in turn; back when all are done
 */
static void
spool_run_parallel(struct spool *sp, void **v, size_t n,
    void (*fn)(struct spool *, void *, enum spool_fault), enum spool_fault fault)
{
	struct spool_jobset js = { .items = v, .fn = fn, .fault = fault, .n = n, .left = n };
	void *item;

	if (n == 0)
		return;
	pthread_mutex_lock(&sp->wmu);
	TAILQ_INSERT_TAIL(&sp->work, &js, entry);
	/* as many helpers as there are items besides ours: a wake-up is a context switch */
	for (size_t i = 1; i < n && i <= sp->n_helpers; i++)
		pthread_cond_signal(&sp->wcv);
	while (js.next < js.n) {
		item = v[js.next++];
		if (js.next == js.n)
			TAILQ_REMOVE(&sp->work, &js, entry);
		pthread_mutex_unlock(&sp->wmu);
		fn(sp, item, fault);
		pthread_mutex_lock(&sp->wmu);
		js.left--;
	}
	while (js.left > 0)
		pthread_cond_wait(&sp->wdone_cv, &sp->wmu);
	pthread_mutex_unlock(&sp->wmu);
}

/* committer: finish every message of the batch, with the helpers */
static void
spool_finish_all(struct spool *sp, struct spool_msgq *batch, enum spool_fault fault)
{
	struct spool_msg *m;
	void **v;
	size_t n = 0;

	TAILQ_FOREACH(m, batch, entry)
		n++;
	if ((v = malloc(n * sizeof(*v))) == NULL) {
		/* no array to share: finish them here, one after another */
		TAILQ_FOREACH(m, batch, entry)
			spool_msg_finish(sp, m, fault);
		return;
	}
	n = 0;
	TAILQ_FOREACH(m, batch, entry)
		v[n++] = m;
	spool_run_parallel(sp, v, n, spool_msg_finish, fault);
	free(v);
}

/*
 * Group commit: every message that arrived while the previous batch was being
 * synced goes in this one, so a thousand sessions share a directory fsync.
 * The order is the durability contract: data on disk (fdatasync, of all the
 * batch's files at once), then the name in queue/ (rename), then the name on
 * disk (fsync of queue/), and only then the callback that lets the session say
 * 250. A crash between rename and the directory fsync may leave the file in
 * tmp/ (removed at start) or in queue/; either way no 250 was sent for it.
 */
static void
spool_commit_batch(struct spool *sp, struct spool_msgq *batch)
{
	struct spool_msg *m;
	enum spool_fault fault = spool_fault_read(sp);
	bool any_renamed = false;
	int err;

	spool_finish_all(sp, batch, fault);
	TAILQ_FOREACH(m, batch, entry) {
		/*
		 * after a failed write or fdatasync the kernel may have dropped
		 * the dirty pages: the file cannot be trusted, so it goes
		 */
		if (m->err == 0 && renameat(sp->tmpfd, m->name, sp->queuefd, m->name) == -1)
			m->err = errno;
		if (m->err != 0) {
			if (m->created)
				unlinkat(sp->tmpfd, m->name, 0);
		} else {
			m->renamed = true;
			any_renamed = true;
		}
	}
	if (any_renamed && fsync(sp->queuefd) == -1) {
		/*
		 * we cannot know which names reached the disk: refuse them all.
		 * If a removed name comes back after a crash, the message is
		 * delivered although the client was told 451: a duplicate, not a loss.
		 */
		err = errno;
		TAILQ_FOREACH(m, batch, entry) {
			if (!m->renamed)
				continue;
			unlinkat(sp->queuefd, m->name, 0);
			m->renamed = false;
			m->err = err;
		}
	}
	TAILQ_FOREACH(m, batch, entry) {
		if (m->fd != -1)
			close(m->fd);
		m->fd = -1;
		if (m->err == 0) {
			atomic_fetch_add(&sp->count, 1);
			atomic_fetch_add(&sp->bytes, m->size);
		}
	}

	pthread_mutex_lock(&sp->mu);
	TAILQ_CONCAT(&sp->completed, batch, entry);
	pthread_mutex_unlock(&sp->mu);
	/* libevent is thread-enabled: this wakes the loop, which calls done() */
	event_active(sp->done_ev, EV_READ, 0);
}

/*
 * State appends and removals, on the state thread, once every message handed
 * over before them is durable (spool_stater), so a message committed before an
 * append (a DSN before the "bounced" line that asked for it) is on disk no
 * later than the append. One fsync of state/ for every file created in the
 * round, one of queue/ for every removal.
 */
/* one append or removal (on the committer or a helper); the result in op */
static void
spool_op_do(struct spool *sp, void *item, enum spool_fault fault)
{
	struct spool_op *op = item;
	struct stat st;
	char name[SPOOL_NAME_MAX];
	int fd;

	(void)fault;
	spool_mid_name(name, op->mid);
	if (op->kind == OP_REMOVE) {
		if (unlinkat(sp->queuefd, name, 0) == 0) {
			op->removed = true;
			atomic_fetch_sub(&sp->count, 1);
			atomic_fetch_sub(&sp->bytes, op->size);
		} else if (errno != ENOENT)	/* ENOENT: gone already, not counted */
			op->err = errno;
		return;
	}
	fd = openat(sp->statefd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1 || fstat(fd, &st) == -1) {
		op->err = errno;
		if (fd != -1)
			close(fd);
		return;
	}
	if (util_write_all(fd, op->text, op->len) == -1 || (op->sync && fdatasync(fd) == -1)) {
		op->err = errno;
		/* no half line may stay for the next append to complete */
		if (ftruncate(fd, st.st_size) == 0 && op->sync)
			(void)fdatasync(fd);
	}
	close(fd);
	if (st.st_size == 0)
		op->created = true;
}

/* do the ops in parallel, but only when no two touch the same MID: their order matters */
static void
spool_ops_run(struct spool *sp, struct spool_opq *batch)
{
	struct spool_op *op;
	uint64_t *mids = NULL;
	void **v = NULL;
	size_t n = 0, i;
	bool distinct = true;

	/* only syncs are worth threads: appends and unlinks alone contend for the directory */
	TAILQ_FOREACH(op, batch, entry)
		n += op->kind == OP_APPEND && op->sync;
	if (n > 1) {
		n = 0;
		TAILQ_FOREACH(op, batch, entry)
			n++;
	}
	if (n > 1 && (v = malloc(n * sizeof(*v))) != NULL &&
	    (mids = malloc(n * sizeof(*mids))) != NULL) {
		i = 0;
		TAILQ_FOREACH(op, batch, entry) {
			v[i] = op;
			mids[i++] = op->mid;
		}
		qsort(mids, n, sizeof(*mids), spool_cmp_mid);
		for (i = 1; i < n && distinct; i++)
			distinct = mids[i] != mids[i - 1];
		if (distinct)
			spool_run_parallel(sp, v, n, spool_op_do, FAULT_NONE);
	}
	if (n <= 1 || v == NULL || mids == NULL || !distinct)
		TAILQ_FOREACH(op, batch, entry)
			spool_op_do(sp, op, FAULT_NONE);
	free(mids);
	free(v);
}

static void
spool_ops_batch(struct spool *sp, struct spool_opq *batch)
{
	struct spool_op *op;
	char name[SPOOL_NAME_MAX];
	bool created = false, removed = false, synced = false;
	int err;

	spool_ops_run(sp, batch);
	TAILQ_FOREACH(op, batch, entry) {
		if (op->kind == OP_APPEND && op->created && !op->sync)
			sp->state_dir_dirty = true;
		created |= op->created && op->sync;
		synced |= op->kind == OP_APPEND && op->sync;
		removed |= op->removed;
	}
	/*
	 * A synced line counts only once its file's name is on disk too: the
	 * file may be new, or made earlier by an unsynced append (a deferral).
	 */
	if (created || (synced && sp->state_dir_dirty)) {
		if (fsync(sp->statefd) == -1) {
			err = errno;
			TAILQ_FOREACH(op, batch, entry)
				if (op->kind == OP_APPEND && op->sync && op->err == 0)
					op->err = err;
		} else
			sp->state_dir_dirty = false;
	}
	if (removed && fsync(sp->queuefd) == -1) {
		/*
		 * the unlinks may not be on disk: keep the state files, so a
		 * message that comes back after a crash comes back with its record
		 */
		err = errno;
		TAILQ_FOREACH(op, batch, entry)
			if (op->kind == OP_REMOVE && op->err == 0)
				op->err = err;
	}
	TAILQ_FOREACH(op, batch, entry) {
		if (op->kind != OP_REMOVE || op->err != 0)
			continue;
		spool_mid_name(name, op->mid);
		/* no sync needed: a state file without its message is removed at start */
		(void)unlinkat(sp->statefd, name, 0);
	}

	pthread_mutex_lock(&sp->mu);
	TAILQ_CONCAT(&sp->ops_completed, batch, entry);
	pthread_mutex_unlock(&sp->mu);
	event_active(sp->done_ev, EV_READ, 0);
}

static void *
spool_committer(void *arg)
{
	struct spool *sp = arg;
	struct spool_msgq batch;
	struct timespec deadline;
	bool reserve, stopping;

	pthread_mutex_lock(&sp->mu);
	for (;;) {
		/* wake for work, and at least once a second to refresh free space */
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += 1;
		while (!sp->stop && TAILQ_EMPTY(&sp->pending) &&
		    atomic_load(&sp->reserve_state) != RESERVE_WANTED) {
			if (pthread_cond_timedwait(&sp->cv, &sp->mu, &deadline) == ETIMEDOUT)
				break;
		}
		TAILQ_INIT(&batch);
		TAILQ_CONCAT(&batch, &sp->pending, entry);
		if (!TAILQ_EMPTY(&batch))
			sp->busy_seq = TAILQ_FIRST(&batch)->seq;
		reserve = atomic_load(&sp->reserve_state) == RESERVE_WANTED;
		stopping = sp->stop;
		pthread_mutex_unlock(&sp->mu);

		if (reserve)
			spool_reserve_next(sp);
		if (!TAILQ_EMPTY(&batch)) {
			spool_commit_batch(sp, &batch);
			/* durable now: appends handed over after them may go */
			pthread_mutex_lock(&sp->mu);
			sp->busy_seq = UINT64_MAX;
			pthread_cond_signal(&sp->state_cv);
			pthread_mutex_unlock(&sp->mu);
		}
		atomic_store(&sp->free_bytes, spool_statvfs(sp->dirfd));

		pthread_mutex_lock(&sp->mu);
		if (stopping && TAILQ_EMPTY(&sp->pending))
			break;
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

/* under sp->mu: appends and removals handed over before this may be done now */
static uint64_t
spool_ops_limit(const struct spool *sp)
{
	uint64_t limit = sp->busy_seq;

	if (!TAILQ_EMPTY(&sp->pending) && TAILQ_FIRST(&sp->pending)->seq < limit)
		limit = TAILQ_FIRST(&sp->pending)->seq;
	return limit;
}

/*
 * The state thread: delivery's appends and removals, in rounds of their own
 * beside the committer's, so a session's next message never waits behind the
 * record of its last one (at one session that would be two more flushes
 * before every 250). An append or removal is taken only once every message
 * handed over before it is durable: it was handed over before the first
 * message the committer holds or has waiting.
 */
static void *
spool_stater(void *arg)
{
	struct spool *sp = arg;
	struct spool_opq ops;
	struct spool_op *op;
	uint64_t limit;

	pthread_mutex_lock(&sp->mu);
	for (;;) {
		for (;;) {
			limit = spool_ops_limit(sp);
			op = TAILQ_FIRST(&sp->ops_pending);
			if ((op != NULL && op->seq < limit) || (op == NULL && sp->state_stop))
				break;
			pthread_cond_wait(&sp->state_cv, &sp->mu);
		}
		if (op == NULL)
			break;			/* stopping, and nothing left */
		TAILQ_INIT(&ops);
		while ((op = TAILQ_FIRST(&sp->ops_pending)) != NULL && op->seq < limit) {
			TAILQ_REMOVE(&sp->ops_pending, op, entry);
			TAILQ_INSERT_TAIL(&ops, op, entry);
		}
		pthread_mutex_unlock(&sp->mu);
		spool_ops_batch(sp, &ops);
		pthread_mutex_lock(&sp->mu);
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

/*
 * The opener thread: creates tmp/<mid> for each message the loop begins (the
 * loop never opens, renames or unlinks a file itself), and removes the files
 * of aborted messages. One thread, first come first served, so a message's
 * removal always follows its open.
 */
/*
 * The pool: empty files made ahead in pool/, so that a burst of new messages
 * (a hundred sessions reaching DATA at once) costs a rename each instead of
 * a file creation, which on some filesystems is the dearest system call of a
 * message (ext4 without a journal scans past recently deleted inodes). Nothing
 * in pool/ is ever synced: it is emptied at start.
 */
static void
spool_pool_fill(struct spool *sp)
{
	char name[SPOOL_NAME_MAX + 1];
	int fd;

	snprintf(name, sizeof(name), "p%" PRIu64, sp->pool_next);
	fd = openat(sp->poolfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		/* a name left there is skipped; anything else: no pool until the next message */
		if (errno == EEXIST)
			sp->pool_next++;
		else
			sp->pool_failed = true;
		return;
	}
	close(fd);
	sp->pool[sp->pool_n++] = sp->pool_next++;
}

/* tmp/<name> for a message, from the pool if it has a file, else created */
static int
spool_pool_take(struct spool *sp, const char *name)
{
	char pname[SPOOL_NAME_MAX + 1];
	int fd;

	while (sp->pool_n > 0) {
		snprintf(pname, sizeof(pname), "p%" PRIu64, sp->pool[--sp->pool_n]);
		/* NOREPLACE, like O_EXCL below: a MID is never reused, so a file there is a bug */
		if (renameat2(sp->poolfd, pname, sp->tmpfd, name, RENAME_NOREPLACE) == -1) {
			if (errno == EEXIST) {
				sp->pool_n++;	/* still there, still ours */
				return -1;
			}
			continue;		/* gone (someone cleaned pool/): the next one */
		}
		if ((fd = openat(sp->tmpfd, name, O_WRONLY | O_CLOEXEC)) != -1)
			return fd;
		unlinkat(sp->tmpfd, name, 0);
		return -1;
	}
	return openat(sp->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

static void
spool_open_one(struct spool *sp, struct spool_msg *m)
{
	bool abandoned, open;
	int fd = -1, err = 0;

	pthread_mutex_lock(&sp->mu);
	open = !m->abandoned && atomic_load(&m->open_state) == OPEN_PENDING;
	pthread_mutex_unlock(&sp->mu);
	if (open && (fd = spool_pool_take(sp, m->name)) == -1)
		err = errno;
	/*
	 * one critical section: once the open is published and the message let
	 * go of, a committer may finish it and the loop free it at any moment
	 */
	pthread_mutex_lock(&sp->mu);
	if (open) {
		m->fd = fd;
		m->open_err = err;
		m->created = fd != -1;
		/* publishes fd to the loop (acquire in spool_msg_flush) */
		atomic_store(&m->open_state, fd != -1 ? OPEN_READY : OPEN_FAILED);
		pthread_cond_broadcast(&sp->opened_cv);
	}
	abandoned = m->abandoned;
	m->opener_owned = false;
	pthread_mutex_unlock(&sp->mu);
	if (!abandoned)
		return;
	/* aborted: the loop has let go of it, it is ours to remove */
	if (m->fd != -1) {
		close(m->fd);
		m->fd = -1;
	}
	if (m->created)
		unlinkat(sp->tmpfd, m->name, 0);
	spool_msg_free(m);
}

static void *
spool_opener(void *arg)
{
	struct spool *sp = arg;
	struct spool_msg *m;

	pthread_mutex_lock(&sp->mu);
	for (;;) {
		while (!sp->opener_stop && (TAILQ_EMPTY(&sp->opener_q) || sp->opener_hold) &&
		    (sp->pool_n == SPOOL_POOL || sp->pool_failed || sp->opener_hold))
			pthread_cond_wait(&sp->opener_cv, &sp->mu);
		if ((m = TAILQ_FIRST(&sp->opener_q)) == NULL) {
			if (sp->opener_stop)
				break;		/* stopping, and nothing left */
			/* nothing to open: one more file for the pool, then look again */
			pthread_mutex_unlock(&sp->mu);
			spool_pool_fill(sp);
			pthread_mutex_lock(&sp->mu);
			continue;
		}
		TAILQ_REMOVE(&sp->opener_q, m, oentry);
		sp->opener_busy = true;
		sp->pool_failed = false;
		pthread_mutex_unlock(&sp->mu);
		spool_open_one(sp, m);
		pthread_mutex_lock(&sp->mu);
		sp->opener_busy = false;
		if (TAILQ_EMPTY(&sp->opener_q))
			pthread_cond_broadcast(&sp->opened_cv);	/* spool_settle waits on it */
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

/* loop: hand a message to the opener (under sp->mu) */
static void
spool_opener_queue(struct spool *sp, struct spool_msg *m)
{
	m->opener_owned = true;
	TAILQ_INSERT_TAIL(&sp->opener_q, m, oentry);
	pthread_cond_signal(&sp->opener_cv);
}

#ifdef MAILGATE_FAULT_HOOKS
void
spool_test_hold_opener(struct spool *sp, bool hold)
{
	pthread_mutex_lock(&sp->mu);
	sp->opener_hold = hold;
	pthread_cond_signal(&sp->opener_cv);
	pthread_mutex_unlock(&sp->mu);
}
#endif

void
spool_settle(struct spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	while (!TAILQ_EMPTY(&sp->opener_q) || sp->opener_busy)
		pthread_cond_wait(&sp->opened_cv, &sp->mu);
	pthread_mutex_unlock(&sp->mu);
}

/* ---- open and close ---- */

/* make a directory we just created durable: its name lives in the parent */
static void
spool_sync_parent(const char *path)
{
	char *copy, *slash;
	const char *parent;
	int fd;

	if ((copy = strdup(path)) == NULL)
		return;
	if ((slash = strrchr(copy, '/')) == NULL)
		parent = ".";
	else if (slash == copy)
		parent = "/";
	else {
		*slash = '\0';
		parent = copy;
	}
	if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

/* mkdir -p, mode 0700 for what we create */
static int
spool_mkdirs(const char *path)
{
	char *p, *s, c;
	int save;

	if (*path == '\0') {
		errno = ENOENT;
		return -1;
	}
	if ((p = strdup(path)) == NULL)
		return -1;
	for (s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		c = *s;
		*s = '\0';
		if (mkdir(p, 0700) == 0)
			spool_sync_parent(p);
		else if (errno != EEXIST) {
			save = errno;
			free(p);
			errno = save;
			return -1;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return 0;
}

static int
spool_subdir(int dirfd, const char *name)
{
	int fd;

	if (mkdirat(dirfd, name, 0700) == 0)
		fsync(dirfd);
	else if (errno != EEXIST)
		return -1;
	if ((fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	return fd;
}

/*
 * remove everything in tmp/ or pool/: in tmp/ what a crash left, never
 * acknowledged, so never delivered; in pool/ empty files
 */
static int
spool_clean_dir(struct spool *sp, int dirfd, const char *what)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if ((fd = dup(dirfd)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd, de->d_name, 0) == -1 && errno != ENOENT)
			fprintf(stderr, "mailgate: spool %s: %s/%s: %s\n", sp->dir, what,
			    de->d_name, strerror(errno));
	}
	closedir(d);
	return 0;
}

/* count what queue/ holds; *maxmid is the largest MID named there */
static int
spool_count_queue(struct spool *sp, uint64_t *maxmid)
{
	struct spool_entry e;
	struct dirent *de;
	char err[256], *path;
	uint64_t mid;
	DIR *d;
	int fd;

	*maxmid = 0;
	if ((fd = dup(sp->queuefd)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!spool_parse_mid(de->d_name, &mid))
			continue;
		/* a MID is spent once named, whether or not its file reads */
		if (mid > *maxmid)
			*maxmid = mid;
		if (asprintf(&path, "%s/queue/%s", sp->dir, de->d_name) == -1) {
			closedir(d);
			errno = ENOMEM;
			return -1;
		}
		if (spool_entry_read(path, &e, err, sizeof(err)) == -1) {
			fprintf(stderr, "mailgate: spool: %s: %s (left alone)\n", path, err);
		} else {
			atomic_fetch_add(&sp->count, 1);
			atomic_fetch_add(&sp->bytes, e.size);
			spool_entry_free(&e);
		}
		free(path);
	}
	closedir(d);
	return 0;
}

/*
 * state/<mid> whose queue/<mid> is gone: the removal got as far as the
 * message (or a crash came between the two unlinks). MIDs are never reused,
 * so nothing could ever read it again.
 */
static int
spool_clean_state(struct spool *sp)
{
	struct dirent *de;
	struct stat st;
	uint64_t mid;
	DIR *d;
	int fd;

	if ((fd = dup(sp->statefd)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!spool_parse_mid(de->d_name, &mid))
			continue;
		if (fstatat(sp->queuefd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
		    errno != ENOENT)
			continue;
		if (unlinkat(sp->statefd, de->d_name, 0) == -1 && errno != ENOENT)
			fprintf(stderr, "mailgate: spool %s: state/%s: %s\n", sp->dir,
			    de->d_name, strerror(errno));
	}
	closedir(d);
	return 0;
}

static void
spool_free(struct spool *sp)
{
	struct spool_msg *m;
	struct spool_op *op;

	/* results nobody will hear of: the loop has stopped */
	while ((m = TAILQ_FIRST(&sp->completed)) != NULL) {
		TAILQ_REMOVE(&sp->completed, m, entry);
		spool_msg_free(m);
	}
	while ((op = TAILQ_FIRST(&sp->ops_completed)) != NULL) {
		TAILQ_REMOVE(&sp->ops_completed, op, entry);
		spool_op_free(op);
	}
	if (sp->done_ev != NULL)
		event_free(sp->done_ev);
	if (sp->queuefd != -1)
		close(sp->queuefd);
	if (sp->statefd != -1)
		close(sp->statefd);
	if (sp->tmpfd != -1)
		close(sp->tmpfd);
	if (sp->poolfd != -1)
		close(sp->poolfd);
	if (sp->dirfd != -1)
		close(sp->dirfd);
	if (sp->lockfd != -1)
		close(sp->lockfd);		/* releases the flock */
	pthread_cond_destroy(&sp->cv);
	pthread_cond_destroy(&sp->opener_cv);
	pthread_cond_destroy(&sp->opened_cv);
	pthread_cond_destroy(&sp->state_cv);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->wcv);
	pthread_cond_destroy(&sp->wdone_cv);
	pthread_mutex_destroy(&sp->wmu);
	free(sp->dir);
	free(sp);
}

/*
 * The committer first (it finishes the messages handed over, and may wait for
 * the opener meanwhile), then the state thread (every append may go then),
 * then the opener (it removes what was aborted), then the helpers, idle by then.
 */
/* set a thread's stop flag under sp->mu, wake it, wait for it to end */
static void
spool_stop_one(struct spool *sp, bool *started, bool *stop, pthread_cond_t *cv,
    pthread_t thread)
{
	if (!*started)
		return;
	pthread_mutex_lock(&sp->mu);
	*stop = true;
	pthread_cond_signal(cv);
	pthread_mutex_unlock(&sp->mu);
	pthread_join(thread, NULL);
	*started = false;
}

static void
spool_stop_threads(struct spool *sp)
{
	spool_stop_one(sp, &sp->thread_started, &sp->stop, &sp->cv, sp->thread);
	spool_stop_one(sp, &sp->stater_started, &sp->state_stop, &sp->state_cv, sp->stater);
	spool_stop_one(sp, &sp->opener_started, &sp->opener_stop, &sp->opener_cv, sp->opener);
	if (sp->n_helpers > 0) {
		pthread_mutex_lock(&sp->wmu);
		sp->work_stop = true;
		pthread_cond_broadcast(&sp->wcv);
		pthread_mutex_unlock(&sp->wmu);
		for (unsigned i = 0; i < sp->n_helpers; i++)
			pthread_join(sp->helpers[i], NULL);
		sp->n_helpers = 0;
	}
}

struct spool *
spool_open(struct event_base *base, const char *dir, const struct spool_opts *opts,
    char *err, size_t errlen)
{
	struct spool *sp;
	pthread_condattr_t ca;
	uint64_t mark, maxmid;
	char pid[32];
	int r, n;

	if ((sp = calloc(1, sizeof(*sp))) == NULL) {
		snprintf(err, errlen, "spool %s: out of memory", dir);
		return NULL;
	}
	sp->base = base;
	sp->lockfd = sp->dirfd = sp->tmpfd = sp->poolfd = sp->queuefd = sp->statefd = -1;
	if (opts != NULL)
		sp->opts = *opts;
	TAILQ_INIT(&sp->pending);
	TAILQ_INIT(&sp->completed);
	TAILQ_INIT(&sp->ops_pending);
	TAILQ_INIT(&sp->ops_completed);
	TAILQ_INIT(&sp->opener_q);
	pthread_mutex_init(&sp->mu, NULL);
	pthread_cond_init(&sp->opener_cv, NULL);
	pthread_cond_init(&sp->opened_cv, NULL);
	pthread_cond_init(&sp->state_cv, NULL);
	sp->busy_seq = UINT64_MAX;
	TAILQ_INIT(&sp->work);
	pthread_mutex_init(&sp->wmu, NULL);
	pthread_cond_init(&sp->wcv, NULL);
	pthread_cond_init(&sp->wdone_cv, NULL);
	/* a monotonic clock, so a clock step does not stall the space refresh */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&sp->reserve_state, RESERVE_IDLE);
	atomic_init(&sp->free_bytes, UINT64_MAX);
	atomic_init(&sp->count, 0);
	atomic_init(&sp->bytes, 0);

	if ((sp->dir = strdup(dir)) == NULL) {
		snprintf(err, errlen, "spool %s: out of memory", dir);
		goto fail;
	}
	if (spool_mkdirs(dir) == -1) {
		snprintf(err, errlen, "spool %s: cannot create: %s", dir, strerror(errno));
		goto fail;
	}
	if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
		goto fail;
	}
	sp->lockfd = openat(sp->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (sp->lockfd == -1) {
		snprintf(err, errlen, "spool %s: lock: %s", dir, strerror(errno));
		goto fail;
	}
	if (flock(sp->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			snprintf(err, errlen, "spool %s is in use by another mailgate (lock)", dir);
		else
			snprintf(err, errlen, "spool %s: lock: %s", dir, strerror(errno));
		goto fail;
	}
	/* for the operator who wonders who holds it; nothing reads it back */
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(sp->lockfd, 0) == 0)
		(void)!pwrite(sp->lockfd, pid, (size_t)n, 0);

	if ((sp->tmpfd = spool_subdir(sp->dirfd, "tmp")) == -1 ||
	    (sp->queuefd = spool_subdir(sp->dirfd, "queue")) == -1 ||
	    (sp->statefd = spool_subdir(sp->dirfd, "state")) == -1 ||
	    (sp->poolfd = spool_subdir(sp->dirfd, "pool")) == -1) {
		snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (spool_clean_state(sp) == -1) {
		snprintf(err, errlen, "spool %s/state: %s", dir, strerror(errno));
		goto fail;
	}
	if (spool_clean_dir(sp, sp->tmpfd, "tmp") == -1) {
		snprintf(err, errlen, "spool %s/tmp: %s", dir, strerror(errno));
		goto fail;
	}
	if (spool_clean_dir(sp, sp->poolfd, "pool") == -1) {
		snprintf(err, errlen, "spool %s/pool: %s", dir, strerror(errno));
		goto fail;
	}
	if (spool_count_queue(sp, &maxmid) == -1) {
		snprintf(err, errlen, "spool %s/queue: %s", dir, strerror(errno));
		goto fail;
	}

	if ((r = spool_mark_read(sp->dirfd, &mark)) == -1) {
		snprintf(err, errlen, "spool %s/mid: %s", dir,
		    errno == EINVAL ? "not a MID high-water mark" : strerror(errno));
		goto fail;
	}
	if (r == 1)
		mark = 1;
	/* someone removed or rolled back "mid": never reuse a queued MID */
	if (maxmid >= mark)
		mark = maxmid + 1;
	if (mark > UINT64_MAX - SPOOL_MID_BLOCK) {
		snprintf(err, errlen, "spool %s/mid: MIDs exhausted", dir);
		goto fail;
	}
	if (spool_mark_write(sp->dirfd, mark + SPOOL_MID_BLOCK) == -1) {
		snprintf(err, errlen, "spool %s/mid: %s", dir, strerror(errno));
		goto fail;
	}
	sp->mid_next = mark;
	sp->mid_end = sp->mark = mark + SPOOL_MID_BLOCK;
	atomic_store(&sp->free_bytes, spool_statvfs(sp->dirfd));

	/*
	 * persistent, so it can stay added (with a long timeout) while commits
	 * are in flight: that keeps event_base_dispatch from returning before
	 * the callbacks of acknowledged-to-be messages have run
	 */
	sp->done_ev = event_new(base, -1, EV_PERSIST, spool_done_cb, sp);
	if (sp->done_ev == NULL) {
		snprintf(err, errlen, "spool %s: cannot create an event", dir);
		goto fail;
	}
	if ((r = pthread_create(&sp->thread, NULL, spool_committer, sp)) != 0) {
		snprintf(err, errlen, "spool %s: cannot start the committer: %s", dir,
		    strerror(r));
		goto fail;
	}
	sp->thread_started = true;
	if ((r = pthread_create(&sp->opener, NULL, spool_opener, sp)) != 0) {
		snprintf(err, errlen, "spool %s: cannot start the opener: %s", dir, strerror(r));
		goto fail;
	}
	sp->opener_started = true;
	if ((r = pthread_create(&sp->stater, NULL, spool_stater, sp)) != 0) {
		snprintf(err, errlen, "spool %s: cannot start the state thread: %s", dir,
		    strerror(r));
		goto fail;
	}
	sp->stater_started = true;
	/* helpers are an optimisation: with fewer, batches are synced by fewer threads */
	while (sp->n_helpers < ARRAY_LEN(sp->helpers) &&
	    pthread_create(&sp->helpers[sp->n_helpers], NULL, spool_helper, sp) == 0)
		sp->n_helpers++;
	return sp;

fail:
	spool_stop_threads(sp);
	spool_free(sp);
	return NULL;
}

/*
 * Finish what was handed to the committer (it is made durable, or removed),
 * but call no done(): the loop is going away. Call after the loop stopped,
 * from the loop's thread, with every begun message committed or aborted.
 */
void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	spool_stop_threads(sp);
	spool_free(sp);
}

/* ---- the loop side ---- */

uint64_t
spool_next_mid(struct spool *sp)
{
	uint64_t mid;

	if (sp->mid_next == sp->mid_end) {
		if (atomic_load(&sp->reserve_state) != RESERVE_READY)
			return 0;
		/* the READY store published reserve_lo/hi */
		sp->mid_next = sp->reserve_lo;
		sp->mid_end = sp->reserve_hi;
		atomic_store(&sp->reserve_state, RESERVE_IDLE);
	}
	mid = sp->mid_next++;
	/* half the block left: have the next one on disk before we need it */
	if (sp->mid_end - sp->mid_next < SPOOL_MID_BLOCK / 2 &&
	    atomic_load(&sp->reserve_state) == RESERVE_IDLE) {
		pthread_mutex_lock(&sp->mu);
		atomic_store(&sp->reserve_state, RESERVE_WANTED);
		pthread_cond_signal(&sp->cv);
		pthread_mutex_unlock(&sp->mu);
	}
	return mid;
}

bool
spool_space_low(const struct spool *sp)
{
	return atomic_load(&((struct spool *)sp)->free_bytes) < sp->opts.min_free_disk;
}

uint64_t
spool_count(const struct spool *sp)
{
	return atomic_load(&((struct spool *)sp)->count);
}

uint64_t
spool_bytes(const struct spool *sp)
{
	return atomic_load(&((struct spool *)sp)->bytes);
}

/*
 * The buffer is full: write it out if the opener has the file open by now,
 * else let the buffer grow (up to SPOOL_MEM_MAX) until it has. The loop never
 * waits for the file: a message that outgrows the cap before its file is open
 * fails with EAGAIN (451, the client tries again), one whose open failed with
 * the open's errno.
 */
static int
spool_msg_flush(struct spool_msg *m)
{
	char *grown;
	int e;

	if (m->err != 0) {
		errno = m->err;
		return -1;
	}
	if (m->used < m->cap)
		return 0;
	/* test-only: a fault created mid-message hits at the next real write() */
	if (m->fault == FAULT_NONE)
		m->fault = spool_fault_read(m->sp);
	if ((e = spool_fault_write_errno(m->fault)) != 0) {
		m->err = e;
		errno = e;
		return -1;
	}
	switch (atomic_load(&m->open_state)) {
	case OPEN_READY:
		if (util_write_all(m->fd, m->buf, m->used) == -1) {
			m->err = errno;
			return -1;
		}
		m->used = 0;
		return 0;
	case OPEN_FAILED:
		m->err = m->open_err;
		break;
	default:
		if (m->cap * 2 <= SPOOL_MEM_MAX && (grown = realloc(m->buf, m->cap * 2)) != NULL) {
			m->buf = grown;
			m->cap *= 2;
			return 0;
		}
		m->err = m->cap * 2 <= SPOOL_MEM_MAX ? ENOMEM : EAGAIN;
		break;
	}
	errno = m->err;
	return -1;
}

static int
spool_msg_append(struct spool_msg *m, const void *buf, size_t len)
{
	const char *p = buf;
	size_t n;

	while (len > 0) {
		n = m->cap - m->used;
		if (n > len)
			n = len;
		memcpy(m->buf + m->used, p, n);
		m->used += n;
		m->appended += n;
		p += n;
		len -= n;
		if (m->used == m->cap && spool_msg_flush(m) == -1)
			return -1;
	}
	return 0;
}

static int
spool_msg_line(struct spool_msg *m, const char *key, const char *val, bool angle)
{
	if (spool_msg_append(m, key, strlen(key)) == -1 ||
	    spool_msg_append(m, angle ? " <" : " ", angle ? 2 : 1) == -1 ||
	    spool_msg_append(m, val, strlen(val)) == -1 ||
	    spool_msg_append(m, angle ? ">\n" : "\n", angle ? 2 : 1) == -1)
		return -1;
	return 0;
}

static const char *
spool_str(const char *s)
{
	return s == NULL ? "" : s;
}

/* every value printable ASCII: nothing a client sent can start a new line */
static bool
spool_envelope_valid(const struct spool_envelope *env)
{
	if (env->mid == 0)
		return false;
	if (!spool_printable(spool_str(env->listener)) ||
	    !spool_printable(spool_str(env->client)) ||
	    !spool_printable(spool_str(env->helo)) ||
	    !spool_printable(spool_str(env->sender)) ||
	    !spool_printable(spool_str(env->body)) ||
	    !spool_printable(spool_str(env->kind)) || strchr(spool_str(env->kind), ' ') != NULL)
		return false;
	if (env->n_rcpts > 0 && env->rcpts == NULL)
		return false;
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (env->rcpts[i] == NULL || !spool_printable(env->rcpts[i]))
			return false;
	return true;
}

static int
spool_envelope_write(struct spool_msg *m, const struct spool_envelope *env)
{
	char num[32], date[64];

	if (spool_msg_append(m, SPOOL_MAGIC "\n", sizeof(SPOOL_MAGIC)) == -1)
		return -1;
	snprintf(num, sizeof(num), "%" PRIu64, env->mid);
	if (spool_msg_line(m, "mid", num, false) == -1)
		return -1;
	util_rfc3339(date, sizeof(date), env->arrival);
	if (spool_msg_line(m, "arrival", date, false) == -1)
		return -1;
	snprintf(num, sizeof(num), "%" PRIu64, env->icid);
	if (spool_msg_line(m, "icid", num, false) == -1 ||
	    spool_msg_line(m, "listener", spool_str(env->listener), false) == -1 ||
	    spool_msg_line(m, "client", spool_str(env->client), false) == -1 ||
	    spool_msg_line(m, "helo", spool_str(env->helo), false) == -1 ||
	    spool_msg_line(m, "sender", spool_str(env->sender), true) == -1)
		return -1;
	if (env->body != NULL && spool_msg_line(m, "body", env->body, false) == -1)
		return -1;
	if (env->kind != NULL && spool_msg_line(m, "kind", env->kind, false) == -1)
		return -1;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		snprintf(num, sizeof(num), "rcpt %zu", i);
		if (spool_msg_line(m, num, env->rcpts[i], true) == -1)
			return -1;
	}
	return spool_msg_append(m, "\n", 1);
}

/* the envelope as spool_entry_read() would give it back, for the commit hook */
static struct spool_entry *
spool_entry_from(const struct spool *sp, const struct spool_envelope *env, uint64_t off)
{
	struct spool_entry *e;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->mid = env->mid;
	e->arrival = env->arrival;
	e->icid = env->icid;
	e->data_offset = (long)off;
	if (asprintf(&e->path, "%s/queue/%" PRIu64, sp->dir, env->mid) == -1) {
		e->path = NULL;
		goto fail;
	}
	if ((e->listener = strdup(spool_str(env->listener))) == NULL ||
	    (e->client = strdup(spool_str(env->client))) == NULL ||
	    (e->helo = strdup(spool_str(env->helo))) == NULL ||
	    (e->sender = strdup(spool_str(env->sender))) == NULL ||
	    (env->body != NULL && (e->body = strdup(env->body)) == NULL) ||
	    (env->kind != NULL && (e->kind = strdup(env->kind)) == NULL))
		goto fail;
	if (env->n_rcpts > 0 && (e->rcpts = calloc(env->n_rcpts, sizeof(*e->rcpts))) == NULL)
		goto fail;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		if ((e->rcpts[i] = strdup(env->rcpts[i])) == NULL)
			goto fail;
		e->n_rcpts++;
	}
	return e;
fail:
	spool_entry_free(e);
	free(e);
	return NULL;
}

struct spool_msg *
spool_msg_begin(struct spool *sp, const struct spool_envelope *env)
{
	struct spool_msg *m;
	int e;

	if (!spool_envelope_valid(env)) {
		errno = EINVAL;
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->sp = sp;
	m->mid = env->mid;
	m->fd = -1;
	atomic_init(&m->open_state, OPEN_PENDING);
	spool_mid_name(m->name, env->mid);
	m->fault = spool_fault_read(sp);
	if (m->fault == FAULT_ENOSPC) {
		free(m);
		errno = ENOSPC;
		return NULL;
	}
	if ((m->buf = malloc(SPOOL_BUF)) == NULL) {
		free(m);
		errno = ENOMEM;
		return NULL;
	}
	m->cap = SPOOL_BUF;
	/* the opener creates tmp/<mid> meanwhile; the bytes wait in the buffer */
	pthread_mutex_lock(&sp->mu);
	spool_opener_queue(sp, m);
	pthread_mutex_unlock(&sp->mu);
	if (spool_envelope_write(m, env) == -1) {
		e = errno;
		spool_msg_abort(m);
		errno = e;
		return NULL;
	}
	if (sp->hook != NULL && (m->env = spool_entry_from(sp, env, m->appended)) == NULL) {
		spool_msg_abort(m);
		errno = ENOMEM;
		return NULL;
	}
	return m;
}

int
spool_msg_write(struct spool_msg *m, const void *buf, size_t len)
{
	int e;

	if (m->err != 0) {
		errno = m->err;
		return -1;
	}
	if ((e = spool_fault_write_errno(m->fault)) != 0) {
		m->err = e;
		errno = e;
		return -1;
	}
	if (spool_msg_append(m, buf, len) == -1)
		return -1;
	m->size += len;
	return 0;
}

/* the opener closes and removes the file (after its open, if that is still to come) */
void
spool_msg_abort(struct spool_msg *m)
{
	struct spool *sp;

	if (m == NULL)
		return;
	sp = m->sp;
	pthread_mutex_lock(&sp->mu);
	m->abandoned = true;
	if (!m->opener_owned)
		spool_opener_queue(sp, m);
	pthread_mutex_unlock(&sp->mu);
}

void
spool_msg_commit(struct spool_msg *m, void (*done)(void *, int), void *arg)
{
	struct spool *sp = m->sp;
	static const struct timeval keepalive = { 3600, 0 };

	m->done = done;
	m->arg = arg;
	m->seq = ++sp->seq;
	if (sp->inflight++ == 0)
		event_add(sp->done_ev, &keepalive);
	/*
	 * what is left in the buffer (all of a message up to 64 KiB) is written
	 * by the committer's threads, with the fdatasync: the loop makes no
	 * system call on the file here
	 */
	pthread_mutex_lock(&sp->mu);
	TAILQ_INSERT_TAIL(&sp->pending, m, entry);
	pthread_cond_signal(&sp->cv);
	pthread_mutex_unlock(&sp->mu);
}

void
spool_msg_forget(struct spool_msg *m)
{
	m->forgotten = true;
}

/* on the loop: deliver the results the committer (or a failed flush) left */
static void
spool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spool *sp = arg;
	struct spool_msgq done;
	struct spool_opq ops;
	struct spool_msg *m;
	struct spool_op *op;

	(void)fd;
	(void)what;
	TAILQ_INIT(&done);
	TAILQ_INIT(&ops);
	pthread_mutex_lock(&sp->mu);
	TAILQ_CONCAT(&done, &sp->completed, entry);
	TAILQ_CONCAT(&ops, &sp->ops_completed, entry);
	pthread_mutex_unlock(&sp->mu);

	while ((m = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, m, entry);
		sp->inflight--;
		if (!m->forgotten && m->done != NULL)
			m->done(m->arg, m->err);
		/* committed, whether or not its session is still there to hear it */
		if (m->err == 0 && m->env != NULL && sp->hook != NULL) {
			m->env->size = m->size;
			sp->hook(sp->hook_arg, m->env);
		}
		spool_msg_free(m);
	}
	while ((op = TAILQ_FIRST(&ops)) != NULL) {
		TAILQ_REMOVE(&ops, op, entry);
		sp->inflight--;
		if (op->done != NULL)
			op->done(op->arg, op->err);
		spool_op_free(op);
	}
	if (sp->inflight == 0)
		event_del(sp->done_ev);
}

void
spool_set_commit_hook(struct spool *sp, spool_commit_hook hook, void *arg)
{
	sp->hook = hook;
	sp->hook_arg = arg;
}

/* ---- delivery state: the loop side ---- */

static void
spool_op_queue(struct spool *sp, struct spool_op *op)
{
	static const struct timeval keepalive = { 3600, 0 };

	op->seq = ++sp->seq;
	if (sp->inflight++ == 0)
		event_add(sp->done_ev, &keepalive);
	pthread_mutex_lock(&sp->mu);
	TAILQ_INSERT_TAIL(&sp->ops_pending, op, entry);
	pthread_cond_signal(&sp->state_cv);
	pthread_mutex_unlock(&sp->mu);
}

int
spool_state_append(struct spool *sp, uint64_t mid, const char *text, size_t len, bool sync,
    void (*done)(void *, int), void *arg)
{
	struct spool_op *op;

	if ((op = calloc(1, sizeof(*op))) == NULL || (op->text = malloc(len + 1)) == NULL) {
		free(op);
		errno = ENOMEM;
		return -1;
	}
	memcpy(op->text, text, len);
	op->text[len] = '\0';
	op->len = len;
	op->sync = sync;
	op->kind = OP_APPEND;
	op->mid = mid;
	op->done = done;
	op->arg = arg;
	spool_op_queue(sp, op);
	return 0;
}

int
spool_remove(struct spool *sp, uint64_t mid, uint64_t size, void (*done)(void *, int),
    void *arg)
{
	struct spool_op *op;

	if ((op = calloc(1, sizeof(*op))) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	op->kind = OP_REMOVE;
	op->mid = mid;
	op->size = size;
	op->done = done;
	op->arg = arg;
	spool_op_queue(sp, op);
	return 0;
}

/* ---- delivery state: the format ---- */

static const char *const spool_rcpt_states[] = {
	[SPOOL_RCPT_QUEUED] = "queued",
	[SPOOL_RCPT_DEFERRED] = "deferred",
	[SPOOL_RCPT_DELIVERED] = "delivered",
	[SPOOL_RCPT_BOUNCED] = "bounced",
};

const char *
spool_rcpt_state_name(enum spool_rcpt_state st)
{
	if ((size_t)st >= ARRAY_LEN(spool_rcpt_states))
		return "unknown";
	return spool_rcpt_states[st];
}

int
spool_state_format(char *buf, size_t cap, uint32_t rid, enum spool_rcpt_state st, time_t when,
    unsigned attempts, const char *reason)
{
	size_t len;
	int n;

	if ((size_t)st >= ARRAY_LEN(spool_rcpt_states) || when < 0)
		return -1;
	n = snprintf(buf, cap, "rid %" PRIu32 " %s %lld %u ", rid, spool_rcpt_states[st],
	    (long long)when, attempts);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	len = (size_t)n;
	for (const char *p = reason != NULL ? reason : ""; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (len + 2 >= cap)
			return -1;
		buf[len++] = c < 0x20 || c > 0x7e ? '?' : (char)c;
	}
	if (len + 2 > cap)
		return -1;
	buf[len++] = '\n';
	buf[len] = '\0';
	return (int)len;
}

int
spool_state_format_hold(char *buf, size_t cap, bool held, time_t when)
{
	int n = snprintf(buf, cap, "%s %lld\n", held ? "held" : "released", (long long)when);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* the next space-separated word of *p (one space between words) */
static char *
spool_word(char **p)
{
	char *w = *p, *sp;

	if (w == NULL || *w == '\0')
		return NULL;
	if ((sp = strchr(w, ' ')) != NULL) {
		*sp = '\0';
		*p = sp + 1;
	} else
		*p = NULL;
	return w;
}

static bool
spool_parse_epoch(const char *s, time_t *out)
{
	uint64_t v;

	if (!spool_parse_u64(s, &v) || v > (uint64_t)INT64_MAX)
		return false;
	*out = (time_t)v;
	return true;
}

/* one line without its LF; -1 if it is not one we know */
static int
spool_state_line(struct spool_state *st, char *line)
{
	struct spool_rcpt_status *r;
	char *p = line, *w, *reason;
	uint64_t rid, att;
	size_t i;
	time_t when;

	if ((w = spool_word(&p)) == NULL)
		return -1;
	if (strcmp(w, "held") == 0 || strcmp(w, "released") == 0) {
		bool held = w[0] == 'h';

		if ((w = spool_word(&p)) == NULL || p != NULL || !spool_parse_epoch(w, &when))
			return -1;
		st->held = held;
		return 0;
	}
	if (strcmp(w, "rid") != 0 || (w = spool_word(&p)) == NULL ||
	    !spool_parse_u64(w, &rid) || rid >= st->n_rcpts)
		return -1;
	r = &st->rcpts[rid];
	if ((w = spool_word(&p)) == NULL)
		return -1;
	for (i = 0; i < ARRAY_LEN(spool_rcpt_states); i++)
		if (strcmp(w, spool_rcpt_states[i]) == 0)
			break;
	if (i == ARRAY_LEN(spool_rcpt_states))
		return -1;
	if ((w = spool_word(&p)) == NULL || !spool_parse_epoch(w, &when))
		return -1;
	if ((w = spool_word(&p)) == NULL || !spool_parse_u64(w, &att) || att > UINT32_MAX)
		return -1;
	reason = NULL;
	if (p != NULL && *p != '\0' && (reason = strdup(p)) == NULL)
		return -1;
	r->state = (enum spool_rcpt_state)i;
	r->when = when;
	r->attempts = (unsigned)att;
	free(r->reason);
	r->reason = reason;
	return 0;
}

void
spool_state_free(struct spool_state *st)
{
	for (size_t i = 0; st->rcpts != NULL && i < st->n_rcpts; i++)
		free(st->rcpts[i].reason);
	free(st->rcpts);
	memset(st, 0, sizeof(*st));
}

int
spool_state_read(const char *spooldir, uint64_t mid, size_t n_rcpts, struct spool_state *st,
    char *err, size_t errlen)
{
	char *path, *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long off = 0;
	FILE *f;

	memset(st, 0, sizeof(*st));
	if ((st->rcpts = calloc(n_rcpts > 0 ? n_rcpts : 1, sizeof(*st->rcpts))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	st->n_rcpts = n_rcpts;
	if (asprintf(&path, "%s/state/%" PRIu64, spooldir, mid) == -1) {
		snprintf(err, errlen, "out of memory");
		spool_state_free(st);
		return -1;
	}
	f = fopen(path, "re");
	free(path);
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;		/* never tried: every recipient queued */
		snprintf(err, errlen, "state/%" PRIu64 ": %s", mid, strerror(errno));
		spool_state_free(st);
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n') {
			st->torn = true;
			break;
		}
		off += n;
		st->good_len = off;
		line[--n] = '\0';
		if (n > SPOOL_LINE_MAX || strlen(line) != (size_t)n || !spool_printable(line) ||
		    spool_state_line(st, line) == -1)
			st->bad_lines++;
	}
	free(line);
	if (ferror(f)) {
		snprintf(err, errlen, "state/%" PRIu64 ": %s", mid, strerror(errno));
		fclose(f);
		spool_state_free(st);
		return -1;
	}
	fclose(f);
	return 0;
}

int
spool_state_recover(struct spool *sp, uint64_t mid, size_t n_rcpts, struct spool_state *st,
    char *err, size_t errlen)
{
	char name[SPOOL_NAME_MAX];
	int fd;

	if (spool_state_read(sp->dir, mid, n_rcpts, st, err, errlen) == -1)
		return -1;
	if (!st->torn)
		return 0;
	spool_mid_name(name, mid);
	if ((fd = openat(sp->statefd, name, O_WRONLY | O_CLOEXEC)) == -1 ||
	    ftruncate(fd, st->good_len) == -1 || fdatasync(fd) == -1) {
		snprintf(err, errlen, "state/%s: cannot cut the torn last line: %s", name,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		spool_state_free(st);
		return -1;
	}
	close(fd);
	return 0;
}

/* ---- reading queue files ---- */

void
spool_entry_free(struct spool_entry *e)
{
	free(e->listener);
	free(e->client);
	free(e->helo);
	free(e->sender);
	free(e->body);
	free(e->kind);
	for (size_t i = 0; i < e->n_rcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free(e->path);
	memset(e, 0, sizeof(*e));
}

/* "2026-11-28T20:10:00Z", nothing more, nothing less */
static bool
spool_parse_time(const char *s, time_t *out)
{
	struct tm tm;
	int n = -1;

	memset(&tm, 0, sizeof(tm));
	if (strlen(s) != 20)
		return false;
	/* NOLINTNEXTLINE(cert-err34-c): every one of the 20 characters is checked below */
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 20)
		return false;
	for (int i = 0; i < 20; i++) {
		bool digit = s[i] >= '0' && s[i] <= '9';
		if ((i == 4 || i == 7 || i == 10 || i == 13 || i == 16 || i == 19) == digit)
			return false;
	}
	if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*out = timegm(&tm);
	return true;
}

/* "<...>": the address inside, a new string */
static char *
spool_angle(const char *v)
{
	size_t len = strlen(v);

	if (len < 2 || v[0] != '<' || v[len - 1] != '>') {
		errno = EINVAL;
		return NULL;
	}
	return strndup(v + 1, len - 2);
}

static int
spool_set_str(char **dst, const char *v, const char **why)
{
	if (*dst != NULL) {
		*why = "repeated key";
		return -1;
	}
	if ((*dst = strdup(v)) == NULL) {
		*why = "out of memory";
		return -1;
	}
	return 0;
}

/* envelope keys that must not repeat, and the two that must be there */
enum { K_MID = 1, K_ARRIVAL = 2, K_ICID = 4 };

/* one envelope line, without its LF; 0 if taken or ignored, -1 and why */
static int
spool_entry_line(struct spool_entry *e, char *line, unsigned *seen, const char **why)
{
	char *val, *addr;
	uint64_t v;

	if ((val = strchr(line, ' ')) != NULL)
		*val++ = '\0';

	if (strcmp(line, "mid") == 0) {
		if (val == NULL || (*seen & K_MID) || !spool_parse_mid(val, &e->mid))
			goto bad;
		*seen |= K_MID;
	} else if (strcmp(line, "arrival") == 0) {
		if (val == NULL || (*seen & K_ARRIVAL) || !spool_parse_time(val, &e->arrival))
			goto bad;
		*seen |= K_ARRIVAL;
	} else if (strcmp(line, "icid") == 0) {
		if (val == NULL || (*seen & K_ICID) || !spool_parse_u64(val, &e->icid))
			goto bad;
		*seen |= K_ICID;
	} else if (strcmp(line, "listener") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->listener, val, why);
	} else if (strcmp(line, "client") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->client, val, why);
	} else if (strcmp(line, "helo") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->helo, val, why);
	} else if (strcmp(line, "body") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->body, val, why);
	} else if (strcmp(line, "kind") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->kind, val, why);
	} else if (strcmp(line, "sender") == 0) {
		if (val == NULL || e->sender != NULL || (e->sender = spool_angle(val)) == NULL)
			goto bad;
	} else if (strcmp(line, "rcpt") == 0) {
		/* "rcpt RID <addr>", RIDs from 0 in order */
		if (val == NULL || (addr = strchr(val, ' ')) == NULL)
			goto bad;
		*addr++ = '\0';
		if (!spool_parse_u64(val, &v) || v != e->n_rcpts)
			goto bad;
		char **r = reallocarray(e->rcpts, e->n_rcpts + 1, sizeof(*r));
		if (r == NULL) {
			*why = "out of memory";
			return -1;
		}
		e->rcpts = r;
		if ((r[e->n_rcpts] = spool_angle(addr)) == NULL)
			goto bad;
		e->n_rcpts++;
	}
	/* anything else: a key from a later version, ignored */
	return 0;
bad:
	*why = "bad value";
	return -1;
}

int
spool_entry_read(const char *path, struct spool_entry *e, char *err, size_t errlen)
{
	struct stat st;
	const char *why = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long off = 0;
	unsigned lineno = 0, seen = 0;
	FILE *f;

	memset(e, 0, sizeof(*e));
	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		fclose(f);
		return -1;
	}
	for (;;) {
		n = getline(&line, &cap, f);
		lineno++;
		if (n == -1) {
			why = ferror(f) ? strerror(errno) : "envelope ends without a blank line";
			break;
		}
		off += n;
		if (line[n - 1] != '\n') {
			why = "envelope ends without a blank line";
			break;
		}
		line[--n] = '\0';
		if (n > SPOOL_LINE_MAX || strlen(line) != (size_t)n || !spool_printable(line)) {
			why = "bad octet or overlong line in the envelope";
			break;
		}
		if (lineno == 1) {
			if (strcmp(line, SPOOL_MAGIC) != 0) {
				why = "not a mailgate spool file";
				break;
			}
			continue;
		}
		if (n == 0) {
			if ((seen & (K_MID | K_ARRIVAL)) != (K_MID | K_ARRIVAL) || e->sender == NULL)
				why = "envelope lacks mid, arrival or sender";
			break;
		}
		if (spool_entry_line(e, line, &seen, &why) == -1)
			break;
	}
	free(line);
	fclose(f);
	if (why != NULL) {
		snprintf(err, errlen, "line %u: %s", lineno, why);
		spool_entry_free(e);
		return -1;
	}
	e->data_offset = off;
	e->size = (uint64_t)st.st_size - (uint64_t)off;
	if ((e->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		spool_entry_free(e);
		return -1;
	}
	return 0;
}

static int
spool_cmp_mid(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
spool_scan(const char *spooldir, int (*fn)(const struct spool_entry *, void *), void *arg,
    char *err, size_t errlen)
{
	struct spool_entry e;
	struct dirent *de;
	uint64_t *mids = NULL, *grown, mid;
	size_t n = 0, cap = 0;
	char why[256], *qdir, *path;
	int r = 0;
	DIR *d;

	if (asprintf(&qdir, "%s/queue", spooldir) == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((d = opendir(qdir)) == NULL) {
		int e0 = errno;
		free(qdir);
		if (e0 == ENOENT)
			return 0;		/* no queue yet: an empty one */
		snprintf(err, errlen, "%s/queue: %s", spooldir, strerror(e0));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (!spool_parse_mid(de->d_name, &mid))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			if ((grown = reallocarray(mids, cap, sizeof(*mids))) == NULL) {
				snprintf(err, errlen, "out of memory");
				r = -1;
				goto out;
			}
			mids = grown;
		}
		mids[n++] = mid;
	}
	if (n > 0)		/* mids is NULL for an empty queue/ */
		qsort(mids, n, sizeof(*mids), spool_cmp_mid);

	for (size_t i = 0; i < n && r == 0; i++) {
		if (asprintf(&path, "%s/%" PRIu64, qdir, mids[i]) == -1) {
			snprintf(err, errlen, "out of memory");
			r = -1;
			break;
		}
		if (spool_entry_read(path, &e, why, sizeof(why)) == -1) {
			/* gone since readdir (delivered): not worth a word */
			if (access(path, F_OK) == 0)
				fprintf(stderr, "mailgate: spool: %s: %s (skipped)\n", path, why);
		} else if (e.mid != mids[i]) {
			fprintf(stderr, "mailgate: spool: %s: envelope says MID %" PRIu64
			    " (skipped)\n", path, e.mid);
			spool_entry_free(&e);
		} else {
			r = fn(&e, arg);
			spool_entry_free(&e);
		}
		free(path);
	}
out:
	closedir(d);
	free(qdir);
	free(mids);
	return r;
}
