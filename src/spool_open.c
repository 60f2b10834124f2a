/*
 * spool_open.c: the spool's opener thread and its pool of empty files in pool/
 * (see spool.h; the threads around it are described in spool.c).
 */
#include "spool_int.h"

#include <sys/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

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
	int fd, save;

	while (sp->pool_n > 0) {
		snprintf(pname, sizeof(pname), "p%" PRIu64, sp->pool[--sp->pool_n]);
		/* NOREPLACE, like O_EXCL below: a MID is never reused, so a file there is a bug */
		if (renameat2(sp->poolfd, pname, sp->tmpfd, name, RENAME_NOREPLACE) == -1) {
			if (errno == EEXIST) {
				sp->pool_n++;	/* still there, still ours */
				return -1;
			}
			if (errno == ENOENT)
				continue;	/* gone (someone cleaned pool/): the next one */
			/* pool/ unusable (another filesystem?): create, and fill no more for now */
			sp->pool_failed = true;
			break;
		}
		if ((fd = openat(sp->tmpfd, name, O_WRONLY | O_CLOEXEC)) != -1)
			return fd;
		save = errno;
		unlinkat(sp->tmpfd, name, 0);
		errno = save;
		return -1;
	}
	return openat(sp->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

/*
 * The opener thread: makes tmp/<mid> for each message the loop begins (from
 * the pool, else created; the loop never opens, renames or unlinks a file
 * itself), removes the files of aborted messages, and between them fills the
 * pool. One thread, first come first served, so a message's removal always
 * follows its open.
 */
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

void *
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
void
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
