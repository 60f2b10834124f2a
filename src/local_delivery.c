/*
 * local_delivery.c: the /dev/null and maildir agents (see local_delivery.h).
 *
 * One worker thread does every blocking step of a maildir delivery (mkdir,
 * open, copy, fsync, rename, fsync of new/) so the event loop never waits for
 * the disk; results come back through a completion list and one event, as the
 * spool's committer does it. A maildir file is named "<time>.<pid>_<n>.<host>"
 * and is complete in new/ or not there at all: a crash leaves at most a stray
 * file in tmp/ (which maildir readers ignore) or, between the rename and the
 * scheduler's record, a delivered recipient that is delivered again.
 */
#include "local_delivery.h"

#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "maillog.h"
#include "util.h"

#define LOCAL_COPY_BUF		(64 * 1024)
#define LOCAL_NAME_MAX		256

struct local_job {
	TAILQ_ENTRY(local_job) entry;
	struct delivery_batch *batch;
};

TAILQ_HEAD(local_jobq, local_job);

struct local_agent {
	struct event_base *base;
	struct event *done_ev;
	char host[LOCAL_NAME_MAX];		/* for file names, '/' and ':' escaped */
	unsigned counter;			/* worker only */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;			/* guards what follows */
	pthread_cond_t cv;
	bool stop;
	struct local_jobq pending;		/* loop -> worker */
	struct local_jobq done;			/* worker (or devnull) -> loop */
};

int
local_mailbox_name(const char *address, char *out, size_t cap)
{
	size_t len = strlen(address);

	if (len == 0 || len > 255 || len >= cap)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)address[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		/* nothing that leaves the directory or confuses a shell listing */
		if (c == '/' || c <= 0x20 || c >= 0x7f)
			c = '_';
		if (c == '.' && (i == 0 || out[i - 1] == '.'))
			c = '_';
		out[i] = (char)c;
	}
	out[len] = '\0';
	return 0;
}

/* ---- the worker's side ---- */

static void
local_set(struct delivery_rcpt *r, enum delivery_status st, int code, const char *enh,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
local_set(struct delivery_rcpt *r, enum delivery_status st, int code, const char *enh,
    const char *fmt, ...)
{
	char text[sizeof(r->reply)];
	va_list ap;

	r->status = st;
	r->code = code;
	util_strlcpy(r->enhanced, enh, sizeof(r->enhanced));
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* paths and addresses in the reason: printable for the log and the state file */
	util_escape(r->reply, sizeof(r->reply), text, strlen(text));
}

/* a failure of ours: retry later, or, for a full disk, the code that says so */
static void
local_tempfail(struct delivery_rcpt *r, int err, const char *what, const char *path)
{
	if (err == ENOSPC || err == EDQUOT)
		local_set(r, DELIVERY_TEMPFAIL, 452, "4.3.1", "maildir %s: %s: %s", path, what,
		    strerror(err));
	else
		local_set(r, DELIVERY_TEMPFAIL, 451, "4.3.0", "maildir %s: %s: %s", path, what,
		    strerror(err));
}

/* a directory we made must be named on disk before a file in it counts */
static int
local_mkdir(int parent, const char *name)
{
	if (mkdirat(parent, name, 0700) == 0)
		return fsync(parent);
	return errno == EEXIST ? 0 : -1;
}

/* the message octets of the queue file into fd */
static int
local_copy(int out, int in, long offset, uint64_t size)
{
	char buf[LOCAL_COPY_BUF];
	off_t off = offset;
	ssize_t n;

	while (size > 0) {
		size_t want = size < sizeof(buf) ? (size_t)size : sizeof(buf);

		if ((n = pread(in, buf, want, off)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;	/* the queue file is shorter than its envelope says */
			return -1;
		}
		if (util_write_all(out, buf, (size_t)n) == -1)
			return -1;
		off += n;
		size -= (uint64_t)n;
	}
	return 0;
}

/*
 * One recipient: <root>/<mailbox>/{tmp,new,cur}, the file into tmp/, fsync,
 * rename into new/, fsync new/. 0, or -1 with r filled in.
 */
static int
local_maildir_one(struct local_agent *la, const char *root, int rootfd, int in,
    const struct delivery_batch *b, struct delivery_rcpt *r)
{
	char box[LOCAL_NAME_MAX], file[LOCAL_NAME_MAX + 64];
	int boxfd = -1, tmpfd = -1, newfd = -1, fd, e;
	const char *what;

	if (local_mailbox_name(r->address, box, sizeof(box)) == -1) {
		local_set(r, DELIVERY_PERMFAIL, 550, "5.1.3", "no mailbox name can be made of "
		    "this address");
		return -1;
	}
	what = "cannot create the mailbox";
	if (local_mkdir(rootfd, box) == -1 ||
	    (boxfd = openat(rootfd, box, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    local_mkdir(boxfd, "tmp") == -1 || local_mkdir(boxfd, "new") == -1 ||
	    local_mkdir(boxfd, "cur") == -1 ||
	    (tmpfd = openat(boxfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    (newfd = openat(boxfd, "new", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto fail;
	snprintf(file, sizeof(file), "%lld.%ld_%u.%s", (long long)time(NULL), (long)getpid(),
	    ++la->counter, la->host);
	what = "cannot write the message";
	if ((fd = openat(tmpfd, file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1)
		goto fail;
	if (local_copy(fd, in, b->data_offset, b->size) == -1 || fsync(fd) == -1) {
		e = errno;
		close(fd);
		unlinkat(tmpfd, file, 0);
		errno = e;
		goto fail;
	}
	if (close(fd) == -1) {
		e = errno;
		unlinkat(tmpfd, file, 0);
		errno = e;
		goto fail;
	}
	/* the file is whole on disk: only now may a reader of new/ see it */
	what = "cannot move the message into new/";
	if (renameat(tmpfd, file, newfd, file) == -1) {
		e = errno;
		unlinkat(tmpfd, file, 0);
		errno = e;
		goto fail;
	}
	if (fsync(newfd) == -1) {
		what = "cannot sync new/";
		goto fail;
	}
	close(newfd);
	close(tmpfd);
	close(boxfd);
	local_set(r, DELIVERY_OK, 250, "2.0.0", "delivered to maildir %s/new/%s", box, file);
	return 0;
fail:
	e = errno;
	if (newfd != -1)
		close(newfd);
	if (tmpfd != -1)
		close(tmpfd);
	if (boxfd != -1)
		close(boxfd);
	local_tempfail(r, e, what, root);
	return -1;
}

static void
local_maildir(struct local_agent *la, struct delivery_batch *b)
{
	const char *root = b->target->path;
	int in, rootfd = -1;

	if ((in = open(b->path, O_RDONLY | O_CLOEXEC)) == -1) {
		for (size_t i = 0; i < b->n_rcpts; i++)
			local_tempfail(&b->rcpts[i], errno, "cannot read the queue file", root);
		return;
	}
	if (util_mkdirs(root) == -1 ||
	    (rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		for (size_t i = 0; i < b->n_rcpts; i++)
			local_tempfail(&b->rcpts[i], errno, "cannot open the maildir root", root);
		close(in);
		return;
	}
	for (size_t i = 0; i < b->n_rcpts; i++)
		(void)local_maildir_one(la, root, rootfd, in, b, &b->rcpts[i]);
	close(rootfd);
	close(in);
}

static void *
local_worker(void *arg)
{
	struct local_agent *la = arg;
	struct local_job *j;

	pthread_mutex_lock(&la->mu);
	for (;;) {
		while (!la->stop && TAILQ_EMPTY(&la->pending))
			pthread_cond_wait(&la->cv, &la->mu);
		if (la->stop)
			break;
		j = TAILQ_FIRST(&la->pending);
		TAILQ_REMOVE(&la->pending, j, entry);
		pthread_mutex_unlock(&la->mu);

		local_maildir(la, j->batch);

		pthread_mutex_lock(&la->mu);
		TAILQ_INSERT_TAIL(&la->done, j, entry);
		event_active(la->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&la->mu);
	return NULL;
}

/* ---- the loop's side ---- */

/* "[0, 1, 2]" of the recipients with status st; false if there are none */
static bool
local_rids(const struct delivery_batch *b, enum delivery_status st, char *out, size_t cap)
{
	size_t len = 0;
	bool any = false;

	out[0] = '\0';
	for (size_t i = 0; i < b->n_rcpts && len + 16 < cap; i++) {
		if (b->rcpts[i].status != st)
			continue;
		len += (size_t)snprintf(out + len, cap - len, "%s%" PRIu32, any ? ", " : "[",
		    b->rcpts[i].rid);
		any = true;
	}
	if (any)
		snprintf(out + len, cap - len, "]");
	return any;
}

static void
local_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct local_agent *la = arg;
	struct local_jobq done;
	struct local_job *j;
	char rids[1024];

	(void)fd;
	(void)what;
	TAILQ_INIT(&done);
	pthread_mutex_lock(&la->mu);
	TAILQ_CONCAT(&done, &la->done, entry);
	pthread_mutex_unlock(&la->mu);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses the list's links (a known false positive on sys/queue.h) */
		struct delivery_batch *b = j->batch;
		struct log_ids ids = { .mid = b->mid, .rid = -1 };

		TAILQ_REMOVE(&done, j, entry);
		free(j);
		if (local_rids(b, DELIVERY_OK, rids, sizeof(rids)))
			maillog(LOG_INFO, &ids, "Message done DCID 0 MID %" PRIu64 " to RID %s",
			    b->mid, rids);
		b->done(b, b->arg);
	}
}

int
local_deliver(struct local_agent *la, struct delivery_batch *b)
{
	struct log_ids ids = { .mid = b->mid, .rid = -1 };
	struct local_job *j;
	char rids[1024];

	if (b->target->kind != TARGET_DEVNULL && b->target->kind != TARGET_MAILDIR) {
		errno = EINVAL;
		return -1;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	j->batch = b;
	b->dcid = 0;
	for (size_t i = 0; i < b->n_rcpts; i++)
		b->rcpts[i].status = DELIVERY_PENDING;
	if (local_rids(b, DELIVERY_PENDING, rids, sizeof(rids)))
		maillog(LOG_INFO, &ids, "Delivery start DCID 0 MID %" PRIu64 " to RID %s",
		    b->mid, rids);
	pthread_mutex_lock(&la->mu);
	if (b->target->kind == TARGET_DEVNULL) {
		/* nothing to wait for, but done() must not run inside this call */
		for (size_t i = 0; i < b->n_rcpts; i++)
			local_set(&b->rcpts[i], DELIVERY_OK, 250, "2.0.0", "discarded (/dev/null)");
		TAILQ_INSERT_TAIL(&la->done, j, entry);
		event_active(la->done_ev, EV_READ, 0);
	} else {
		TAILQ_INSERT_TAIL(&la->pending, j, entry);
		pthread_cond_signal(&la->cv);
	}
	pthread_mutex_unlock(&la->mu);
	return 0;
}

/* the host part of maildir names: '/' and ':' may not appear (maildir(5)) */
static void
local_hostname(char *out, size_t cap)
{
	char h[LOCAL_NAME_MAX];
	size_t o = 0;

	if (gethostname(h, sizeof(h)) == -1 || h[0] == '\0')
		util_strlcpy(h, "localhost", sizeof(h));
	h[sizeof(h) - 1] = '\0';
	for (const char *p = h; *p != '\0' && o + 5 < cap; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '/' || c == ':' || c <= 0x20 || c >= 0x7f)
			o += (size_t)snprintf(out + o, cap - o, "\\%03o", c);
		else
			out[o++] = *p;
	}
	out[o] = '\0';
}

struct local_agent *
local_agent_new(struct event_base *base, char *err, size_t errlen)
{
	struct local_agent *la;
	int r;

	if ((la = calloc(1, sizeof(*la))) == NULL) {
		snprintf(err, errlen, "local delivery: out of memory");
		return NULL;
	}
	la->base = base;
	TAILQ_INIT(&la->pending);
	TAILQ_INIT(&la->done);
	pthread_mutex_init(&la->mu, NULL);
	pthread_cond_init(&la->cv, NULL);
	local_hostname(la->host, sizeof(la->host));
	if ((la->done_ev = event_new(base, -1, 0, local_done_cb, la)) == NULL) {
		snprintf(err, errlen, "local delivery: cannot create an event");
		local_agent_free(la);
		return NULL;
	}
	if ((r = pthread_create(&la->thread, NULL, local_worker, la)) != 0) {
		snprintf(err, errlen, "local delivery: cannot start the worker: %s", strerror(r));
		local_agent_free(la);
		return NULL;
	}
	la->thread_started = true;
	return la;
}

void
local_agent_free(struct local_agent *la)
{
	struct local_job *j;

	if (la == NULL)
		return;
	if (la->thread_started) {
		pthread_mutex_lock(&la->mu);
		la->stop = true;
		pthread_cond_signal(&la->cv);
		pthread_mutex_unlock(&la->mu);
		pthread_join(la->thread, NULL);
	}
	/* the batches belong to the scheduler: only our wrappers go */
	while ((j = TAILQ_FIRST(&la->pending)) != NULL) {
		TAILQ_REMOVE(&la->pending, j, entry);
		free(j);
	}
	while ((j = TAILQ_FIRST(&la->done)) != NULL) {
		TAILQ_REMOVE(&la->done, j, entry);
		free(j);
	}
	if (la->done_ev != NULL)
		event_free(la->done_ev);
	pthread_cond_destroy(&la->cv);
	pthread_mutex_destroy(&la->mu);
	free(la);
}
