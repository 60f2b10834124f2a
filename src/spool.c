/*
 * spool.c: the durable message store (see spool.h): messages begun, written and
 * committed (the committer thread and its helpers: group commit), the MID
 * high-water mark and its blocks, open and close (with the cleaning of tmp/,
 * pool/ and state/ and the count of queue/ at start), and the small helpers the
 * spool files share. The opener thread is in spool_open.c, delivery state
 * (state/<mid> and the state thread) in spool_state.c, the reader of queue
 * files in spool_read.c; spool_int.h holds what they share.
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
 * state/<mid>, the delivery record of queue/<mid>: see spool_state.c.
 */
#include "spool_int.h"
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

static void spool_done_cb(evutil_socket_t, short, void *);

void
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

bool
spool_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* a MID as queue/ names it: decimal, no sign, no leading zero, not 0 */
bool
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
bool
spool_parse_u64(const char *s, uint64_t *out)
{
	if (strcmp(s, "0") == 0) {
		*out = 0;
		return true;
	}
	return spool_parse_mid(s, out);
}

void
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
void
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

/* ---- open and close ---- */

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
	if (util_mkdirs(dir) == -1) {
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
