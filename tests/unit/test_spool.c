/*
 * test_spool.c: the spool against a real event loop and a real directory.
 * MIDs increase and survive a restart; a committed message reads back exactly;
 * many commits complete in order; aborts, crash leftovers, the lock and the
 * envelope's refusal of line breaks; with MAILGATE_FAULT_HOOKS, a full disk and
 * a failing sync never look like success.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "spool.h"

struct fix {
	char dir[64];
	struct event_base *base;
	struct spool *sp;
	char err[256];
};

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_spool.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->base = event_base_new();
	assert_non_null(f->base);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;

	spool_close(f->sp);
	event_base_free(f->base);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct spool *
open_spool(struct fix *f)
{
	struct spool_opts o = { .min_free_disk = 0 };
	struct spool *sp = spool_open(f->base, f->dir, &o, f->err, sizeof(f->err));

	if (sp == NULL)
		fail_msg("spool_open: %s", f->err);
	return sp;
}

static int
count_files(const char *dir, const char *sub)
{
	char path[256];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool
exists(const char *dir, const char *sub, uint64_t mid)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s/%" PRIu64, dir, sub, mid);
	return access(path, F_OK) == 0;
}

static void
write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* what done() saw, in the order it saw it */
struct rec {
	int calls;
	int last_err;
	uint64_t order[512];
	int errs[512];
};

struct tag {
	struct rec *rec;
	uint64_t mid;
};

static void
on_done(void *arg, int err)
{
	struct tag *t = arg;

	if (t->rec->calls < 512) {
		t->rec->order[t->rec->calls] = t->mid;
		t->rec->errs[t->rec->calls] = err;
	}
	t->rec->calls++;
	t->rec->last_err = err;
}

static const char *const two_rcpts[] = { "user@other.com", "other@other.com" };

static struct spool_envelope
envelope(uint64_t mid)
{
	struct spool_envelope env = {
		.mid = mid,
		.arrival = 1795896600,		/* 2026-11-28T20:10:00Z */
		.icid = 5,
		.listener = "default",
		.client = "127.0.0.1",
		.helo = "client.example",
		.sender = "test@test.com",
		.body = "8BITMIME",
		.rcpts = two_rcpts,
		.n_rcpts = 2,
	};
	return env;
}

/* ---- MIDs ---- */

static void
test_mids_increase_and_survive_reopen(void **state)
{
	struct fix *f = *state;
	uint64_t prev = 0, mid;

	f->sp = open_spool(f);
	/* 2,500 MIDs: two block switches, the reservation racing the loop */
	for (int i = 0; i < 2500; i++) {
		int tries = 0;
		while ((mid = spool_next_mid(f->sp)) == 0) {
			/* the next block is being synced: a 451, then it comes */
			assert_true(++tries < 5000);
			usleep(1000);
		}
		assert_true(mid > prev);
		prev = mid;
	}
	spool_close(f->sp);
	f->sp = NULL;
	f->sp = open_spool(f);
	mid = spool_next_mid(f->sp);
	assert_true(mid > prev);
	spool_close(f->sp);
	f->sp = NULL;

	/* the mark is not behind a message in queue/ (someone lost "mid") */
	char path[256];
	snprintf(path, sizeof(path), "%s/mid", f->dir);
	assert_int_equal(unlink(path), 0);
	write_file(f->dir, "queue/99999", "mailgate-spool 1\nmid 99999\n"
	    "arrival 2026-11-28T20:10:00Z\nsender <>\n\nx");
	f->sp = open_spool(f);
	assert_true(spool_next_mid(f->sp) > 99999);
}

static void
test_lock_refuses_second_open(void **state)
{
	struct fix *f = *state;
	struct spool_opts o = { 0 };
	char err[256];

	f->sp = open_spool(f);
	assert_null(spool_open(f->base, f->dir, &o, err, sizeof(err)));
	assert_non_null(strstr(err, "is in use by another mailgate (lock)"));
	spool_close(f->sp);
	f->sp = NULL;
	/* released at close */
	f->sp = open_spool(f);
}

/* ---- commit ---- */

static void
test_commit_round_trip(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct spool_entry e;
	struct spool_envelope env;
	struct spool_msg *m;
	struct tag t = { &rec, 0 };
	size_t len = 200 * 1024 + 17, off = 0;
	char *msg, path[256], err[256];
	FILE *fp;

	f->sp = open_spool(f);
	msg = malloc(len);
	assert_non_null(msg);
	for (size_t i = 0; i < len; i++)
		msg[i] = (char)(i * 7 + i / 251);	/* every octet value */

	env = envelope(spool_next_mid(f->sp));
	t.mid = env.mid;
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	spool_settle(f->sp);			/* the opener creates the file */
	assert_true(exists(f->dir, "tmp", env.mid));
	/* uneven pieces across the 64 KiB buffer's edges */
	for (size_t step = 1; off < len; step = step * 3 + 1) {
		size_t n = step > len - off ? len - off : step;
		assert_int_equal(spool_msg_write(m, msg + off, n), 0);
		off += n;
	}
	spool_msg_commit(m, on_done, &t);
	assert_int_equal(rec.calls, 0);		/* never from inside commit */
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.last_err, 0);

	assert_false(exists(f->dir, "tmp", env.mid));
	assert_true(exists(f->dir, "queue", env.mid));
	assert_int_equal(spool_count(f->sp), 1);
	assert_int_equal(spool_bytes(f->sp), len);

	snprintf(path, sizeof(path), "%s/queue/%" PRIu64, f->dir, env.mid);
	if (spool_entry_read(path, &e, err, sizeof(err)) == -1)
		fail_msg("%s: %s", path, err);
	assert_int_equal(e.mid, env.mid);
	assert_int_equal(e.arrival, env.arrival);
	assert_int_equal(e.icid, 5);
	assert_string_equal(e.listener, "default");
	assert_string_equal(e.client, "127.0.0.1");
	assert_string_equal(e.helo, "client.example");
	assert_string_equal(e.sender, "test@test.com");
	assert_string_equal(e.body, "8BITMIME");
	assert_int_equal(e.n_rcpts, 2);
	assert_string_equal(e.rcpts[0], "user@other.com");
	assert_string_equal(e.rcpts[1], "other@other.com");
	assert_int_equal(e.size, len);
	assert_string_equal(e.path, path);

	/* the envelope is the documented text, the message follows byte for byte */
	char *all = malloc((size_t)e.data_offset + len + 1);
	assert_non_null(all);
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_int_equal(fread(all, 1, (size_t)e.data_offset + len + 1, fp),
	    (size_t)e.data_offset + len);
	fclose(fp);
	const char *want = "mailgate-spool 1\nmid %" PRIu64 "\narrival 2026-11-28T20:10:00Z\n"
	    "icid 5\nlistener default\nclient 127.0.0.1\nhelo client.example\n"
	    "sender <test@test.com>\nbody 8BITMIME\nrcpt 0 <user@other.com>\n"
	    "rcpt 1 <other@other.com>\n\n";
	char head[512];
	snprintf(head, sizeof(head), want, env.mid);
	assert_int_equal(e.data_offset, strlen(head));
	assert_memory_equal(all, head, strlen(head));
	assert_memory_equal(all + e.data_offset, msg, len);
	free(all);
	free(msg);
	spool_entry_free(&e);

	/* counted again at the next start */
	spool_close(f->sp);
	f->sp = NULL;
	f->sp = open_spool(f);
	assert_int_equal(spool_count(f->sp), 1);
	assert_int_equal(spool_bytes(f->sp), len);
}

/* null sender, empty HELO, no BODY=, an empty message */
static void
test_commit_minimal_envelope(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct spool_entry e;
	struct spool_envelope env = envelope(0);
	struct tag t = { &rec, 0 };
	struct spool_msg *m;
	char path[256], err[256];

	f->sp = open_spool(f);
	env.mid = t.mid = spool_next_mid(f->sp);
	env.sender = "";
	env.helo = "";
	env.body = NULL;
	env.n_rcpts = 1;
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	spool_msg_commit(m, on_done, &t);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.last_err, 0);

	snprintf(path, sizeof(path), "%s/queue/%" PRIu64, f->dir, env.mid);
	assert_int_equal(spool_entry_read(path, &e, err, sizeof(err)), 0);
	assert_string_equal(e.sender, "");
	assert_string_equal(e.helo, "");
	assert_null(e.body);
	assert_int_equal(e.n_rcpts, 1);
	assert_int_equal(e.size, 0);
	spool_entry_free(&e);
}

static void
test_many_commits_in_order(void **state)
{
	struct fix *f = *state;
	enum { N = 200 };
	static struct tag tags[N];
	struct rec rec = { 0 };
	char body[300];

	f->sp = open_spool(f);
	/* all of them handed over before the loop runs a single callback */
	for (int i = 0; i < N; i++) {
		struct spool_envelope env = envelope(spool_next_mid(f->sp));
		struct spool_msg *m = spool_msg_begin(f->sp, &env);

		assert_non_null(m);
		int n = snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody %d\r\n", i, i);
		assert_int_equal(spool_msg_write(m, body, (size_t)n), 0);
		tags[i].rec = &rec;
		tags[i].mid = env.mid;
		spool_msg_commit(m, on_done, &tags[i]);
	}
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(rec.order[i], tags[i].mid);
		assert_int_equal(rec.errs[i], 0);
	}
	assert_int_equal(count_files(f->dir, "queue"), N);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	assert_int_equal(spool_count(f->sp), N);
}

static void
test_abort_removes_file(void **state)
{
	struct fix *f = *state;
	struct spool_envelope env;
	struct spool_msg *m;

	f->sp = open_spool(f);
	env = envelope(spool_next_mid(f->sp));
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, "x\r\n", 3), 0);
	spool_settle(f->sp);
	assert_true(exists(f->dir, "tmp", env.mid));
	spool_msg_abort(m);
	spool_settle(f->sp);			/* the opener removes it */
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	assert_int_equal(count_files(f->dir, "queue"), 0);
	assert_int_equal(spool_count(f->sp), 0);
}

static void
test_forget_suppresses_callback(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t1 = { &rec, 0 }, t2 = { &rec, 0 };
	struct spool_envelope e1, e2;
	struct spool_msg *m1, *m2;

	f->sp = open_spool(f);
	e1 = envelope(spool_next_mid(f->sp));
	e2 = envelope(spool_next_mid(f->sp));
	t1.mid = e1.mid;
	t2.mid = e2.mid;
	m1 = spool_msg_begin(f->sp, &e1);
	m2 = spool_msg_begin(f->sp, &e2);
	assert_non_null(m1);
	assert_non_null(m2);
	spool_msg_commit(m1, on_done, &t1);
	spool_msg_commit(m2, on_done, &t2);
	spool_msg_forget(m1);			/* its session went away */
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.order[0], e2.mid);
	/* the commit itself went ahead */
	assert_true(exists(f->dir, "queue", e1.mid));
	assert_true(exists(f->dir, "queue", e2.mid));
}

/*
 * State appends and removals share the committer's rounds with messages: an
 * append handed over after a message is durable no earlier than the message
 * (its callback comes later), two appends to one file keep their order, and a
 * removal takes the message and then its state file.
 */
static void
test_ops_follow_messages(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag tm = { &rec, 0 }, ta1 = { &rec, 0 }, ta2 = { &rec, 0 }, tb = { &rec, 0 },
	    tr = { &rec, 0 };
	struct spool_envelope ea, eb;
	struct spool_state st;
	struct spool_msg *m;
	char line1[128], line2[128], err[256];
	int n1, n2;

	f->sp = open_spool(f);
	ea = envelope(spool_next_mid(f->sp));
	eb = envelope(spool_next_mid(f->sp));
	tm.mid = ea.mid;
	tb.mid = eb.mid;
	ta1.mid = ta2.mid = tr.mid = 1000000 + ea.mid;	/* told apart from the messages */
	m = spool_msg_begin(f->sp, &ea);
	assert_non_null(m);
	spool_msg_commit(m, on_done, &tm);
	n1 = spool_state_format(line1, sizeof(line1), 0, SPOOL_RCPT_DEFERRED, 1795900200, 1,
	    "451 4.7.1 first");
	n2 = spool_state_format(line2, sizeof(line2), 0, SPOOL_RCPT_DEFERRED, 1795900800, 2,
	    "451 4.7.1 second");
	assert_true(n1 > 0 && n2 > 0);
	/* a deferral written without a sync, then a synced line: one file, in order */
	assert_int_equal(spool_state_append(f->sp, ea.mid, line1, (size_t)n1, false, on_done,
	    &ta1), 0);
	assert_int_equal(spool_state_append(f->sp, ea.mid, line2, (size_t)n2, true, on_done,
	    &ta2), 0);
	m = spool_msg_begin(f->sp, &eb);
	assert_non_null(m);
	spool_msg_commit(m, on_done, &tb);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(rec.errs[i], 0);
	/* the message first, then its appends, in order */
	assert_int_equal(rec.order[0], ea.mid);
	for (int i = 1; i < 4; i++)
		if (rec.order[i] != eb.mid)
			assert_int_equal(rec.order[i], ta1.mid);
	assert_int_equal(spool_state_read(f->dir, ea.mid, 2, &st, err, sizeof(err)), 0);
	assert_int_equal(st.rcpts[0].state, SPOOL_RCPT_DEFERRED);
	assert_int_equal(st.rcpts[0].attempts, 2);		/* the last line wins */
	assert_string_equal(st.rcpts[0].reason, "451 4.7.1 second");
	assert_int_equal(st.bad_lines, 0);
	spool_state_free(&st);
	assert_true(exists(f->dir, "state", ea.mid));
	assert_int_equal(spool_count(f->sp), 2);

	assert_int_equal(spool_remove(f->sp, ea.mid, 0, on_done, &tr), 0);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 5);
	assert_int_equal(rec.errs[4], 0);
	assert_false(exists(f->dir, "queue", ea.mid));
	assert_false(exists(f->dir, "state", ea.mid));
	assert_true(exists(f->dir, "queue", eb.mid));
	assert_int_equal(spool_count(f->sp), 1);
}

/* commits in flight at close are finished, their callbacks dropped */
static void
test_close_finishes_pending(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t = { &rec, 0 };
	struct spool_envelope env;
	struct spool_msg *m;

	f->sp = open_spool(f);
	env = envelope(spool_next_mid(f->sp));
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	spool_msg_commit(m, on_done, &t);
	spool_close(f->sp);
	f->sp = NULL;
	assert_int_equal(rec.calls, 0);
	assert_true(exists(f->dir, "queue", env.mid));
	assert_int_equal(count_files(f->dir, "tmp"), 0);
}

/* ---- start-up ---- */

static void
test_open_cleans_tmp_and_counts_queue(void **state)
{
	struct fix *f = *state;

	/* a first open makes the layout; then play a crash */
	f->sp = open_spool(f);
	spool_close(f->sp);
	f->sp = NULL;
	write_file(f->dir, "tmp/123", "mailgate-spool 1\nmid 123\n");
	write_file(f->dir, "tmp/junk", "half a message");
	write_file(f->dir, "queue/5", "mailgate-spool 1\nmid 5\narrival 2026-11-28T20:10:00Z\n"
	    "sender <a@b>\nrcpt 0 <c@d>\n\nhello");
	write_file(f->dir, "queue/7", "garbage\n");		/* logged, left alone */
	write_file(f->dir, "queue/notes.txt", "an operator's file\n");

	f->sp = open_spool(f);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	assert_int_equal(count_files(f->dir, "queue"), 3);
	assert_int_equal(spool_count(f->sp), 1);
	assert_int_equal(spool_bytes(f->sp), 5);
}

static void
test_envelope_refuses_line_breaks(void **state)
{
	struct fix *f = *state;
	static const char *const bad_rcpt[] = { "a@b", "c@d>\nrcpt 2 <evil@x" };
	struct spool_envelope env;

	f->sp = open_spool(f);
	env = envelope(spool_next_mid(f->sp));
	env.sender = "a@b>\r\nrcpt 9 <evil@x";
	errno = 0;
	assert_null(spool_msg_begin(f->sp, &env));
	assert_int_equal(errno, EINVAL);

	env = envelope(spool_next_mid(f->sp));
	env.rcpts = bad_rcpt;
	errno = 0;
	assert_null(spool_msg_begin(f->sp, &env));
	assert_int_equal(errno, EINVAL);

	env = envelope(spool_next_mid(f->sp));
	env.helo = "x\x7f";
	assert_null(spool_msg_begin(f->sp, &env));
	env = envelope(spool_next_mid(f->sp));
	env.listener = "caf\xc3\xa9";
	assert_null(spool_msg_begin(f->sp, &env));
	env = envelope(spool_next_mid(f->sp));
	env.body = "8BIT\rMIME";
	assert_null(spool_msg_begin(f->sp, &env));
	env = envelope(0);
	assert_null(spool_msg_begin(f->sp, &env));	/* no MID */
	assert_int_equal(count_files(f->dir, "tmp"), 0);
}

/* ---- reading ---- */

static int
collect(const struct spool_entry *e, void *arg)
{
	uint64_t *out = arg;

	out[++out[0]] = e->mid;
	return e->mid == 1000 ? 42 : 0;
}

static void
test_scan_in_mid_order(void **state)
{
	struct fix *f = *state;
	static const uint64_t mids[] = { 10, 9, 100, 2, 1000, 2000 };
	uint64_t got[16] = { 0 };
	char name[64], text[256], err[256];

	assert_int_equal(mkdir(strcat(strcpy(text, f->dir), "/queue"), 0700), 0);
	for (size_t i = 0; i < sizeof(mids) / sizeof(mids[0]); i++) {
		snprintf(name, sizeof(name), "queue/%" PRIu64, mids[i]);
		snprintf(text, sizeof(text), "mailgate-spool 1\nmid %" PRIu64
		    "\narrival 2026-11-28T20:10:00Z\nsender <a@b>\nrcpt 0 <c@d>\n\nx", mids[i]);
		write_file(f->dir, name, text);
	}
	write_file(f->dir, "queue/0100", "not a MID name\n");
	write_file(f->dir, "queue/3", "mailgate-spool 1\nmid 4\n"	/* name and MID disagree */
	    "arrival 2026-11-28T20:10:00Z\nsender <a@b>\n\n");
	/* numeric order, not readdir's or strcmp's; stops at fn's non-zero */
	assert_int_equal(spool_scan(f->dir, collect, got, err, sizeof(err)), 42);
	assert_int_equal(got[0], 5);
	assert_int_equal(got[1], 2);
	assert_int_equal(got[2], 9);
	assert_int_equal(got[3], 10);
	assert_int_equal(got[4], 100);
	assert_int_equal(got[5], 1000);

	/* no queue/ at all is an empty queue */
	memset(got, 0, sizeof(got));
	snprintf(text, sizeof(text), "%s/nothing-here", f->dir);
	assert_int_equal(spool_scan(text, collect, got, err, sizeof(err)), 0);
	assert_int_equal(got[0], 0);
}

static void
test_reader_is_strict(void **state)
{
	struct fix *f = *state;
	static const struct {
		const char *text;
		bool ok;
	} cases[] = {
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\n\n", true },
		/* unknown keys: a later version's, ignored */
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\n"
		  "x-future some value\nflag\n\n", true },
		{ "mailgate-spool 2\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\n\n", false },
		{ "From x\nmid 1\n\n", false },
		{ "", false },
		/* no blank line: a torn file */
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\n", false },
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>", false },
		{ "mailgate-spool 1\nmid 1\r\narrival 2026-11-28T20:10:00Z\nsender <>\n\n", false },
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\nhelo \x01\n\n", false },
		{ "mailgate-spool 1\nmid 0\narrival 2026-11-28T20:10:00Z\nsender <>\n\n", false },
		{ "mailgate-spool 1\nmid 1x\narrival 2026-11-28T20:10:00Z\nsender <>\n\n", false },
		{ "mailgate-spool 1\nmid 1\nmid 2\narrival 2026-11-28T20:10:00Z\nsender <>\n\n", false },
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28 20:10:00\nsender <>\n\n", false },
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender a@b\n\n", false },
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\n\n", false },
		{ "mailgate-spool 1\narrival 2026-11-28T20:10:00Z\nsender <>\n\n", false },
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\n"
		  "rcpt 1 <a@b>\n\n", false },		/* RIDs from 0 */
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\n"
		  "rcpt 0 <a@b>\nrcpt 0 <c@d>\n\n", false },
		{ "mailgate-spool 1\nmid 1\narrival 2026-11-28T20:10:00Z\nsender <>\n"
		  "helo a\nhelo b\n\n", false },
	};
	struct spool_entry e;
	char path[256], err[256];

	snprintf(path, sizeof(path), "%s/f", f->dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *fp = fopen(path, "w");
		assert_non_null(fp);
		fputs(cases[i].text, fp);
		fclose(fp);
		int r = spool_entry_read(path, &e, err, sizeof(err));
		if ((r == 0) != cases[i].ok)
			fail_msg("case %zu: got %d (%s)", i, r, r == 0 ? "" : err);
		if (r == 0)
			spool_entry_free(&e);
	}
	assert_int_equal(spool_entry_read("/nonexistent/x", &e, err, sizeof(err)), -1);
}

/* ---- faults (test-only hooks) ---- */

#ifdef MAILGATE_FAULT_HOOKS
static void
rm_fault(struct fix *f)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/fault", f->dir);
	unlink(path);
}

static void
test_fault_enospc(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t = { &rec, 0 };
	struct spool_envelope env;
	struct spool_msg *m;

	f->sp = open_spool(f);
	write_file(f->dir, "fault", "enospc\n");
	env = envelope(spool_next_mid(f->sp));
	errno = 0;
	assert_null(spool_msg_begin(f->sp, &env));
	assert_int_equal(errno, ENOSPC);

	/* the disk fills mid-message: the write that reaches it fails */
	rm_fault(f);
	env = envelope(spool_next_mid(f->sp));
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, "small\r\n", 7), 0);
	write_file(f->dir, "fault", "enospc");
	char *big = calloc(1, 70000);
	assert_non_null(big);
	errno = 0;
	assert_int_equal(spool_msg_write(m, big, 70000), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(spool_msg_write(m, "x", 1), -1);	/* sticky */
	free(big);
	spool_msg_abort(m);

	/* ...or the last flush, at commit: done() still comes later, from the loop */
	rm_fault(f);
	env = envelope(spool_next_mid(f->sp));
	t.mid = env.mid;
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, "small\r\n", 7), 0);
	write_file(f->dir, "fault", "enospc");
	spool_msg_commit(m, on_done, &t);
	assert_int_equal(rec.calls, 0);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.last_err, ENOSPC);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	assert_int_equal(count_files(f->dir, "queue"), 0);
	assert_int_equal(spool_count(f->sp), 0);
}

static void
test_fault_eio_on_write(void **state)
{
	struct fix *f = *state;
	struct spool_envelope env;
	struct spool_msg *m;

	f->sp = open_spool(f);
	write_file(f->dir, "fault", "eio\n");
	env = envelope(spool_next_mid(f->sp));
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	errno = 0;
	assert_int_equal(spool_msg_write(m, "x", 1), -1);
	assert_int_equal(errno, EIO);
	spool_msg_abort(m);
	spool_settle(f->sp);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
}

static void
test_fault_sync_eio(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t[3] = { { &rec, 0 }, { &rec, 0 }, { &rec, 0 } };

	f->sp = open_spool(f);
	write_file(f->dir, "fault", "sync-eio\n");
	for (int i = 0; i < 3; i++) {
		struct spool_envelope env = envelope(spool_next_mid(f->sp));
		struct spool_msg *m = spool_msg_begin(f->sp, &env);

		assert_non_null(m);
		assert_int_equal(spool_msg_write(m, "hello\r\n", 7), 0);
		t[i].mid = env.mid;
		spool_msg_commit(m, on_done, &t[i]);
	}
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rec.errs[i], EIO);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	assert_int_equal(count_files(f->dir, "queue"), 0);
	assert_int_equal(spool_count(f->sp), 0);
}

/* ---- the opener: the loop never waits for a file ---- */

static char *
pattern(size_t len)
{
	char *p = malloc(len);

	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (char)(i * 13 + i / 509);
	return p;
}

/* the file is not open yet: the bytes wait in memory, then all reach the file */
static void
test_open_late_buffer_grows(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t = { &rec, 0 };
	struct spool_entry e;
	struct spool_envelope env;
	struct spool_msg *m;
	size_t len = 1024 * 1024 + 99;
	char *msg = pattern(len), *got, path[256], err[256];
	FILE *fp;

	f->sp = open_spool(f);
	spool_test_hold_opener(f->sp, true);
	env = envelope(spool_next_mid(f->sp));
	t.mid = env.mid;
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, msg, len / 2), 0);
	assert_false(exists(f->dir, "tmp", env.mid));	/* nothing opened, nothing failed */
	spool_test_hold_opener(f->sp, false);
	spool_settle(f->sp);
	assert_true(exists(f->dir, "tmp", env.mid));
	/* the next full buffer goes to the file, from where the first half left off */
	assert_int_equal(spool_msg_write(m, msg + len / 2, len - len / 2), 0);
	spool_msg_commit(m, on_done, &t);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.last_err, 0);

	snprintf(path, sizeof(path), "%s/queue/%" PRIu64, f->dir, env.mid);
	assert_int_equal(spool_entry_read(path, &e, err, sizeof(err)), 0);
	assert_int_equal(e.size, len);
	got = malloc(len);
	assert_non_null(got);
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, e.data_offset, SEEK_SET), 0);
	assert_int_equal(fread(got, 1, len, fp), len);
	fclose(fp);
	assert_memory_equal(got, msg, len);
	free(got);
	free(msg);
	spool_entry_free(&e);
}

/* committed before its file exists: the committer waits for the opener, not the loop */
static void
test_commit_before_open(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t = { &rec, 0 };
	struct spool_envelope env;
	struct spool_msg *m;

	f->sp = open_spool(f);
	spool_test_hold_opener(f->sp, true);
	env = envelope(spool_next_mid(f->sp));
	t.mid = env.mid;
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, "Subject: early\r\n\r\nx\r\n", 21), 0);
	spool_msg_commit(m, on_done, &t);
	spool_test_hold_opener(f->sp, false);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.last_err, 0);
	assert_true(exists(f->dir, "queue", env.mid));
	assert_int_equal(count_files(f->dir, "tmp"), 0);
}

/* past SPOOL_MEM_MAX with the file still not open: EAGAIN (a 451), nothing left behind */
static void
test_open_late_cap(void **state)
{
	struct fix *f = *state;
	struct spool_envelope env;
	struct spool_msg *m;
	size_t len = 5 * 1024 * 1024;
	char *msg = pattern(len);

	f->sp = open_spool(f);
	spool_test_hold_opener(f->sp, true);
	env = envelope(spool_next_mid(f->sp));
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	errno = 0;
	assert_int_equal(spool_msg_write(m, msg, len), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(spool_msg_write(m, "x", 1), -1);	/* sticky */
	spool_msg_abort(m);
	spool_test_hold_opener(f->sp, false);
	spool_settle(f->sp);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	free(msg);
}

/* aborted before the opener got to it: no file is ever made */
static void
test_abort_before_open(void **state)
{
	struct fix *f = *state;
	struct spool_envelope env;
	struct spool_msg *m;

	f->sp = open_spool(f);
	spool_test_hold_opener(f->sp, true);
	env = envelope(spool_next_mid(f->sp));
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	spool_msg_abort(m);
	spool_test_hold_opener(f->sp, false);
	spool_settle(f->sp);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	/* and the spool goes on */
	env = envelope(spool_next_mid(f->sp));
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	spool_msg_abort(m);
	spool_settle(f->sp);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
}

/* the open fails (here: the name is taken): done() gets its errno, and the file that was there stays */
static void
test_open_fails(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t = { &rec, 0 };
	struct spool_envelope env;
	struct spool_msg *m;
	char name[64];

	f->sp = open_spool(f);
	env = envelope(spool_next_mid(f->sp));
	t.mid = env.mid;
	snprintf(name, sizeof(name), "tmp/%" PRIu64, env.mid);
	write_file(f->dir, name, "not ours");
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, "x\r\n", 3), 0);
	spool_msg_commit(m, on_done, &t);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.last_err, EEXIST);
	assert_true(exists(f->dir, "tmp", env.mid));
	assert_false(exists(f->dir, "queue", env.mid));
	assert_int_equal(spool_count(f->sp), 0);
}
#endif

/* the inode numbers of pool/'s files once the opener has filled it (256) */
static size_t
pool_full(const char *dir, ino_t *ino, size_t cap)
{
	char path[256];
	struct timespec pause = { 0, 1000000 };
	struct dirent *de;
	struct stat st;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/pool", dir);
	/* a poll with a deadline (10 s): the opener fills the pool off the loop */
	for (int i = 0; i < 10000 && n != 256; i++) {
		if (i > 0)
			nanosleep(&pause, NULL);
		d = opendir(path);
		assert_non_null(d);
		n = 0;
		while ((de = readdir(d)) != NULL && n < cap) {
			if (de->d_name[0] == '.')
				continue;
			assert_int_equal(de->d_name[0], 'p');
			assert_int_equal(fstatat(dirfd(d), de->d_name, &st, 0), 0);
			assert_int_equal(st.st_size, 0);
			ino[n++] = st.st_ino;
		}
		closedir(d);
	}
	return n;
}

/*
 * A new message's file comes from pool/ (made ahead, empty) and ends in
 * queue/; what start finds in pool/ is removed.
 */
static void
test_pool_feeds_messages(void **state)
{
	struct fix *f = *state;
	struct rec rec = { 0 };
	struct tag t = { &rec, 0 };
	struct spool_envelope env;
	struct spool_msg *m;
	struct stat st;
	char path[256];
	ino_t ino[300];
	size_t n;
	bool found = false;

	snprintf(path, sizeof(path), "%s/pool", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	write_file(f->dir, "pool/junk", "left by a crash");
	f->sp = open_spool(f);
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/pool/junk", f->dir);
	assert_int_equal(access(path, F_OK), -1);

	/* full, the opener makes no more: the file the message takes is one of these */
	n = pool_full(f->dir, ino, sizeof(ino) / sizeof(ino[0]));
	assert_int_equal(n, 256);
	env = envelope(spool_next_mid(f->sp));
	t.mid = env.mid;
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, "Subject: x\r\n\r\nbody\r\n", 21), 0);
	spool_msg_commit(m, on_done, &t);
	event_base_dispatch(f->base);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.last_err, 0);
	snprintf(path, sizeof(path), "%s/queue/%" PRIu64, f->dir, env.mid);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 21);
	for (size_t i = 0; i < n; i++)
		found |= ino[i] == st.st_ino;
	assert_true(found);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mids_increase_and_survive_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_refuses_second_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_minimal_envelope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_commits_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_removes_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_feeds_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget_suppresses_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ops_follow_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_finishes_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_cleans_tmp_and_counts_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_envelope_refuses_line_breaks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_in_mid_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_is_strict, setup, teardown),
#ifdef MAILGATE_FAULT_HOOKS
		cmocka_unit_test_setup_teardown(test_fault_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_eio_on_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_sync_eio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_late_buffer_grows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_before_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_late_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_before_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_fails, setup, teardown),
#endif
	};
	int r;

	/* the committer thread activates an event on the loop's base */
	evthread_use_pthreads();
	r = cmocka_run_group_tests(tests, NULL, NULL);
	libevent_global_shutdown();
	return r;
}
