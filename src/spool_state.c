/*
 * spool_state.c: delivery state (see spool.h): the state/<mid> line format, its
 * reader and the cut of a torn last line, and the state thread, which does
 * delivery's appends and removals in rounds of their own beside the committer's
 * (spool.c).
 *
 * state/<mid> is the delivery record of queue/<mid>, append-only, one event a
 * line, written only by the state thread (spool_state_append) and replayed at start:
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
#include "spool_int.h"
#include "util.h"

#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

/* ---- the state thread ---- */

/*
 * State appends and removals, on the state thread, once every message handed
 * over before them is durable (spool_stater), so a message committed before an
 * append (a DSN before the "bounced" line that asked for it) is on disk no
 * later than the append. One fsync of state/ for every file created in the
 * round, one of queue/ for every removal.
 */
/* one append or removal (on the state thread or a helper); the result in op */
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
	size_t n = 0, syncs = 0, i;
	bool distinct = true;

	TAILQ_FOREACH(op, batch, entry) {
		n++;
		syncs += op->kind == OP_APPEND && op->sync;
	}
	/* only syncs are worth threads: appends and unlinks alone contend for the directory */
	if (syncs < 2)
		n = 0;
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
void *
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
