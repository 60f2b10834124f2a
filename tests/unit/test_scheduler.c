/*
 * test_scheduler.c: the scheduler and the spool's delivery state, against a
 * real event loop and a real spool under /tmp. The backoff schedule; the state
 * file's format, replay (last line wins, held/released, bad lines skipped, a
 * torn last line ignored and cut off at start); durable appends and removal;
 * the commit hook; and the scheduler end to end with /dev/null, maildir and a
 * fake SMTP agent: delivered messages leave the queue, 4xx defers with the
 * backoff, 5xx and a lifetime run out bounce (with the bounce hook), a
 * connection failure tries the route's next target, no SMTP agent defers
 * without a record, and a restart replays.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "scheduler.h"
#include "spool.h"

struct fix {
	char dir[64];
	char spooldir[96];
	struct event_base *base;
	struct spool *sp;
	struct sched *s;
	struct config *cfg;
	/* the fake SMTP agent: the batches it holds, answered by the test */
	struct delivery_batch *held[8];
	int n_held;
	int smtp_calls;
	/* the bounce hook */
	int bounces;
	char bounce_sender[64];
	char bounce_enh[16];
	uint32_t bounce_rid;
	/* appends */
	int appended;
	int append_err;
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
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_sched.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->spooldir, sizeof(f->spooldir), "%s/spool", f->dir);
	f->base = event_base_new();
	assert_non_null(f->base);
	*state = f;
	return 0;
}

static void
stop(struct fix *f)
{
	sched_free(f->s);
	f->s = NULL;
	spool_close(f->sp);
	f->sp = NULL;
	config_unref(f->cfg);
	f->cfg = NULL;
}

static int
teardown(void **state)
{
	struct fix *f = *state;

	stop(f);
	event_base_free(f->base);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void
open_spool(struct fix *f)
{
	struct spool_opts o = { .min_free_disk = 0 };
	char err[256];

	if ((f->sp = spool_open(f->base, f->spooldir, &o, err, sizeof(err))) == NULL)
		fail_msg("spool_open: %s", err);
}

/* a config with these routes and delivery settings, spool in the fixture */
static void
load_config(struct fix *f, const char *routes, const char *delivery)
{
	char text[4096], err[1024];

	snprintf(text, sizeof(text), "spool = \"%s\";\n"
	    "listeners = ( { name = \"l\"; listen = \"127.0.0.1:2525\"; } );\n"
	    "routes = ( %s );\ndelivery = { %s };\n", f->spooldir, routes,
	    delivery != NULL ? delivery : "retry_initial = \"1m\"; retry_max = \"1h\";");
	if ((f->cfg = config_load_string(text, "test", err, sizeof(err))) == NULL)
		fail_msg("config: %s", err);
}

static void
start(struct fix *f)
{
	char err[512];

	open_spool(f);
	if ((f->s = sched_new(f->base, f->sp, f->cfg, err, sizeof(err))) == NULL)
		fail_msg("sched_new: %s", err);
}

static void
noop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* turn the loop until cond(f) holds, with a deadline of about 10 s */
static bool
run_until(struct fix *f, bool (*cond)(struct fix *))
{
	struct event *keep = event_new(f->base, -1, EV_PERSIST, noop, NULL);
	struct timeval tv = { 0, 50000 };
	bool ok = false;

	event_add(keep, &tv);
	for (int i = 0; i < 200 && !(ok = cond(f)); i++)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(keep);
	return ok;
}

static char path_buf[256];

static const char *
path_of(struct fix *f, const char *sub, uint64_t mid)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s/%" PRIu64, f->spooldir, sub, mid);
	return path_buf;
}

static bool
exists(struct fix *f, const char *sub, uint64_t mid)
{
	return access(path_of(f, sub, mid), F_OK) == 0;
}

static char *
slurp(const char *path)
{
	static char buf[8192];
	size_t n;
	FILE *fp = fopen(path, "r");

	if (fp == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* a committed message, written by hand as a crash would leave it (before start) */
static void
write_queue(struct fix *f, uint64_t mid, const char *sender, const char *rcpts, time_t arrival)
{
	char text[2048], date[32], qdir[128];
	struct tm tm;

	snprintf(qdir, sizeof(qdir), "%s/queue", f->spooldir);
	mkdir(f->spooldir, 0700);
	mkdir(qdir, 0700);
	gmtime_r(&arrival, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(text, sizeof(text), "mailgate-spool 1\nmid %" PRIu64 "\narrival %s\nicid 1\n"
	    "listener l\nclient 127.0.0.1\nhelo h\nsender <%s>\n%s\nSubject: t\r\n\r\nbody\r\n",
	    mid, date, sender, rcpts);
	write_file(path_of(f, "queue", mid), text);
}

static void
write_state(struct fix *f, uint64_t mid, const char *text)
{
	char sdir[128];

	snprintf(sdir, sizeof(sdir), "%s/state", f->spooldir);
	mkdir(f->spooldir, 0700);
	mkdir(sdir, 0700);
	write_file(path_of(f, "state", mid), text);
}

/* ---- the fake SMTP agent and the bounce hook ---- */

static int
fake_smtp(void *ctx, struct delivery_batch *b)
{
	struct fix *f = ctx;

	f->smtp_calls++;
	if (f->n_held == 8)
		return -1;
	f->held[f->n_held++] = b;
	return 0;
}

/* answer the oldest held batch: every recipient gets code/enh/text */
static void
answer(struct fix *f, int code, const char *enh, const char *text)
{
	struct delivery_batch *b = f->held[0];

	assert_true(f->n_held > 0);
	memmove(&f->held[0], &f->held[1], (size_t)(--f->n_held) * sizeof(f->held[0]));
	b->dcid = 42;
	for (size_t i = 0; i < b->n_rcpts; i++) {
		b->rcpts[i].status = code == 0 || code / 100 == 4 ? DELIVERY_TEMPFAIL :
		    code / 100 == 2 ? DELIVERY_OK : DELIVERY_PERMFAIL;
		b->rcpts[i].code = code;
		snprintf(b->rcpts[i].enhanced, sizeof(b->rcpts[i].enhanced), "%s", enh);
		snprintf(b->rcpts[i].reply, sizeof(b->rcpts[i].reply), "%s", text);
	}
	b->done(b, b->arg);
}

static void
on_bounce(void *ctx, const struct sched_bounce *bi)
{
	struct fix *f = ctx;

	f->bounces++;
	snprintf(f->bounce_sender, sizeof(f->bounce_sender), "%s", bi->sender);
	assert_true(bi->n_rcpts >= 1);
	snprintf(f->bounce_enh, sizeof(f->bounce_enh), "%s", bi->rcpts[0].enhanced);
	f->bounce_rid = bi->rcpts[0].rid;
	/* the message is still there for the DSN's headers */
	assert_int_equal(access(bi->path, R_OK), 0);
}

/* ---- conditions ---- */

static uint64_t cond_mid;

static bool
queue_gone(struct fix *f)
{
	return !exists(f, "queue", cond_mid) && !exists(f, "state", cond_mid);
}

/* both recipients of the local test delivered (recorded) and the message gone */
static bool
two_delivered(struct fix *f)
{
	json_t *st = sched_status(f->s);
	json_int_t n = json_integer_value(json_object_get(st, "delivered"));

	json_decref(st);
	return n == 2 && queue_gone(f);
}

static bool
one_deferred(struct fix *f)
{
	json_t *st = sched_status(f->s);
	json_int_t n = json_integer_value(json_object_get(st, "deferred"));

	json_decref(st);
	return n == 1;
}

static bool
state_has_deferred(struct fix *f)
{
	const char *s = slurp(path_of(f, "state", cond_mid));

	return s != NULL && strstr(s, " deferred ") != NULL;
}

static bool
state_has_rid2_delivered(struct fix *f)
{
	const char *s = slurp(path_of(f, "state", cond_mid));

	return s != NULL && strstr(s, "rid 2 delivered ") != NULL;
}

static bool
smtp_holds_one(struct fix *f)
{
	return f->n_held > 0;
}

static bool
appended(struct fix *f)
{
	return f->appended > 0;
}

/* ---- backoff ---- */

static void
test_backoff_schedule(void **state)
{
	struct delivery_conf dc = { .retry_initial = 60, .retry_max = 3600,
	    .max_lifetime = 259200 };
	static const unsigned want[] = { 60, 60, 120, 240, 480, 960, 1920, 3600, 3600 };

	(void)state;
	for (unsigned a = 0; a < sizeof(want) / sizeof(want[0]); a++)
		assert_int_equal(sched_backoff(&dc, a), want[a]);
	/* no overflow however many attempts */
	assert_int_equal(sched_backoff(&dc, 1000000), 3600);
	dc.retry_initial = dc.retry_max = 300;
	assert_int_equal(sched_backoff(&dc, 1), 300);
	assert_int_equal(sched_backoff(&dc, 50), 300);
	dc.retry_initial = 1;
	dc.retry_max = 30 * 86400;
	assert_int_equal(sched_backoff(&dc, 3), 4);
	assert_int_equal(sched_backoff(&dc, 64), 30 * 86400);
}

/* ---- the state file ---- */

static void
test_state_format_and_replay(void **state)
{
	struct fix *f = *state;
	struct spool_state st;
	char buf[1024], text[4096] = "", err[256];
	int n;

	n = spool_state_format(buf, sizeof(buf), 1, SPOOL_RCPT_DEFERRED, 1795900200, 1,
	    "451 4.7.1 greylisted\r\nrid 0 delivered 1 1 x");
	assert_true(n > 0);
	/* the reason cannot end the line */
	assert_string_equal(buf, "rid 1 deferred 1795900200 1 451 4.7.1 greylisted??rid 0 "
	    "delivered 1 1 x\n");
	strcat(text, buf);
	assert_int_equal(spool_state_format(buf, 20, 1, SPOOL_RCPT_DEFERRED, 1, 1, "long reason"),
	    -1);
	spool_state_format(buf, sizeof(buf), 0, SPOOL_RCPT_DELIVERED, 1795896601, 1,
	    "250 2.0.0 ok");
	strcat(text, buf);
	spool_state_format_hold(buf, sizeof(buf), true, 1795896700);
	strcat(text, buf);
	strcat(text, "this is not a line we know\n");
	strcat(text, "rid 9 delivered 1 1 out of range\n");
	strcat(text, "rid 2 bounced 1795903800 2 550 5.1.1 no such user\n");
	strcat(text, "rid 1 deferred 1795903800 2 451 4.4.1 again\n");
	write_state(f, 5, text);

	assert_int_equal(spool_state_read(f->spooldir, 5, 4, &st, err, sizeof(err)), 0);
	assert_true(st.held);
	assert_false(st.torn);
	assert_int_equal(st.bad_lines, 2);
	assert_int_equal(st.rcpts[0].state, SPOOL_RCPT_DELIVERED);
	assert_string_equal(st.rcpts[0].reason, "250 2.0.0 ok");
	/* the last line about a RID wins */
	assert_int_equal(st.rcpts[1].state, SPOOL_RCPT_DEFERRED);
	assert_int_equal(st.rcpts[1].when, 1795903800);
	assert_int_equal(st.rcpts[1].attempts, 2);
	assert_string_equal(st.rcpts[1].reason, "451 4.4.1 again");
	assert_int_equal(st.rcpts[2].state, SPOOL_RCPT_BOUNCED);
	assert_int_equal(st.rcpts[3].state, SPOOL_RCPT_QUEUED);
	assert_null(st.rcpts[3].reason);
	spool_state_free(&st);

	/* released after held */
	strcat(text, "released 1795896800\n");
	write_state(f, 5, text);
	assert_int_equal(spool_state_read(f->spooldir, 5, 4, &st, err, sizeof(err)), 0);
	assert_false(st.held);
	spool_state_free(&st);

	/* no file: every recipient queued */
	assert_int_equal(spool_state_read(f->spooldir, 6, 2, &st, err, sizeof(err)), 0);
	assert_int_equal(st.rcpts[0].state, SPOOL_RCPT_QUEUED);
	assert_int_equal(st.rcpts[1].state, SPOOL_RCPT_QUEUED);
	spool_state_free(&st);
}

static void
test_state_torn_line_ignored_and_cut(void **state)
{
	struct fix *f = *state;
	static const char good[] = "rid 0 deferred 1795900200 1 451 4.7.1 later\n";
	struct spool_state st;
	char text[512], err[256];
	struct stat sb;

	/* a crash in the middle of "rid 1 delivered ...": no LF */
	write_queue(f, 9, "s@x", "rcpt 0 <a@x>\nrcpt 1 <b@x>\n", time(NULL));
	snprintf(text, sizeof(text), "%srid 1", good);
	write_state(f, 9, text);
	assert_int_equal(spool_state_read(f->spooldir, 9, 2, &st, err, sizeof(err)), 0);
	assert_true(st.torn);
	assert_int_equal(st.good_len, (long)strlen(good));
	assert_int_equal(st.bad_lines, 0);
	assert_int_equal(st.rcpts[0].state, SPOOL_RCPT_DEFERRED);
	assert_int_equal(st.rcpts[1].state, SPOOL_RCPT_QUEUED);
	spool_state_free(&st);
	/* reading leaves the file alone */
	assert_int_equal(stat(path_of(f, "state", 9), &sb), 0);
	assert_int_equal(sb.st_size, (off_t)strlen(text));

	/* the server's replay cuts the torn line off, so no append can complete it */
	open_spool(f);
	assert_int_equal(spool_state_recover(f->sp, 9, 2, &st, err, sizeof(err)), 0);
	spool_state_free(&st);
	assert_int_equal(stat(path_of(f, "state", 9), &sb), 0);
	assert_int_equal(sb.st_size, (off_t)strlen(good));
	assert_string_equal(slurp(path_of(f, "state", 9)), good);
}

static void
on_appended(void *arg, int err)
{
	struct fix *f = arg;

	f->appended++;
	f->append_err = err;
}

static void
test_state_append_and_remove(void **state)
{
	struct fix *f = *state;
	static const char line[] = "rid 0 delivered 1795896601 1 250 2.0.0 ok\n";
	struct spool_state st;
	char err[256];

	write_queue(f, 11, "s@x", "rcpt 0 <a@x>\nrcpt 1 <b@x>\n", time(NULL));
	open_spool(f);
	assert_int_equal(spool_count(f->sp), 1);
	assert_int_equal(spool_state_append(f->sp, 11, line, strlen(line), true, on_appended, f), 0);
	assert_int_equal(f->appended, 0);		/* never from inside the call */
	assert_true(run_until(f, appended));
	assert_int_equal(f->append_err, 0);
	assert_string_equal(slurp(path_of(f, "state", 11)), line);
	assert_int_equal(spool_state_read(f->spooldir, 11, 2, &st, err, sizeof(err)), 0);
	assert_int_equal(st.rcpts[0].state, SPOOL_RCPT_DELIVERED);
	spool_state_free(&st);

	f->appended = 0;
	assert_int_equal(spool_remove(f->sp, 11, 0, on_appended, f), 0);
	assert_true(run_until(f, appended));
	assert_int_equal(f->append_err, 0);
	assert_false(exists(f, "queue", 11));
	assert_false(exists(f, "state", 11));
	assert_int_equal(spool_count(f->sp), 0);

	/* a state file left without its message goes at the next start */
	spool_close(f->sp);
	f->sp = NULL;
	write_state(f, 12, line);
	open_spool(f);
	assert_false(exists(f, "state", 12));
}

/* ---- the scheduler ---- */

static const char *const two[] = { "x@null.example", "y@local.example" };

static uint64_t
commit(struct fix *f, const char *const *rcpts, size_t n, const char *sender)
{
	struct spool_envelope env = {
		.arrival = time(NULL), .icid = 1, .listener = "l", .client = "127.0.0.1",
		.helo = "h", .sender = sender, .rcpts = rcpts, .n_rcpts = n,
	};
	struct spool_msg *m;
	static const char body[] = "Subject: sched\r\n\r\nhello\r\n";

	env.mid = spool_next_mid(f->sp);
	m = spool_msg_begin(f->sp, &env);
	assert_non_null(m);
	assert_int_equal(spool_msg_write(m, body, sizeof(body) - 1), 0);
	spool_msg_commit(m, NULL, NULL);
	return env.mid;
}

static void
test_local_routes_leave_the_queue(void **state)
{
	struct fix *f = *state;
	char mail[128], route[512];
	json_t *status;

	snprintf(mail, sizeof(mail), "%s/mail", f->dir);
	snprintf(route, sizeof(route), "{ domain = \"null.example\"; to = [ \"/dev/null\" ]; },"
	    "{ domain = \"local.example\"; to = [ \"maildir:%s\" ]; }", mail);
	load_config(f, route, NULL);
	start(f);
	cond_mid = commit(f, two, 2, "s@x");
	/* the commit hook hands it over; both recipients delivered, the message removed */
	assert_true(run_until(f, two_delivered));
	assert_int_equal(spool_count(f->sp), 0);
	assert_int_equal(spool_bytes(f->sp), 0);
	snprintf(route, sizeof(route), "%s/y@local.example/new", mail);
	assert_int_equal(access(route, F_OK), 0);
	status = sched_status(f->s);
	assert_non_null(status);
	assert_int_equal(json_integer_value(json_object_get(status, "delivered")), 2);
	assert_int_equal(json_integer_value(json_object_get(status, "messages")), 0);
	json_decref(status);
}

static void
test_smtp_outcomes(void **state)
{
	struct fix *f = *state;
	static const char *const one[] = { "u@remote.example" };
	time_t before = time(NULL);
	const char *st;

	load_config(f, "{ domain = \"ALL\"; to = [ \"10.0.0.1\", \"10.0.0.2:2525\" ]; }",
	    "retry_initial = \"1m\"; retry_max = \"1h\";");
	start(f);
	sched_set_smtp_agent(f->s, fake_smtp, f);
	sched_set_bounce(f->s, on_bounce, f);

	/* 451: deferred for retry_initial, the message stays */
	cond_mid = commit(f, one, 1, "s@x");
	assert_true(run_until(f, smtp_holds_one));
	assert_string_equal(f->held[0]->target->text, "10.0.0.1");
	assert_string_equal(f->held[0]->domain, "remote.example");
	answer(f, 451, "4.7.1", "greylisted");
	assert_true(run_until(f, state_has_deferred));
	st = slurp(path_of(f, "state", cond_mid));
	{
		long long next;
		unsigned att;

		assert_int_equal(sscanf(st, "rid 0 deferred %lld %u", &next, &att), 2);
		assert_int_equal(att, 1);
		assert_true(next >= before + 60 && next <= time(NULL) + 60);
	}
	assert_non_null(strstr(st, "451 4.7.1 greylisted"));
	assert_true(exists(f, "queue", cond_mid));
	assert_int_equal(f->bounces, 0);
	assert_int_equal(f->smtp_calls, 1);

	/* a connection failure on the first target: the second is tried at once */
	cond_mid = commit(f, one, 1, "s@x");
	assert_true(run_until(f, smtp_holds_one));
	answer(f, 0, "", "connection refused");
	assert_true(run_until(f, smtp_holds_one));
	assert_string_equal(f->held[0]->target->text, "10.0.0.2:2525");
	/* 550 there: bounced, the hook called, the message finished */
	answer(f, 550, "5.1.1", "no such user");
	assert_true(run_until(f, queue_gone));
	assert_int_equal(f->bounces, 1);
	assert_string_equal(f->bounce_sender, "s@x");
	assert_string_equal(f->bounce_enh, "5.1.1");

	/* a null sender bounces without a DSN */
	cond_mid = commit(f, one, 1, "");
	assert_true(run_until(f, smtp_holds_one));
	answer(f, 554, "5.7.1", "refused");
	assert_true(run_until(f, queue_gone));
	assert_int_equal(f->bounces, 1);
}

static void
test_no_smtp_agent_defers(void **state)
{
	struct fix *f = *state;
	static const char *const one[] = { "u@dead.example" };

	load_config(f, "{ domain = \"ALL\"; to = [ \"127.0.0.1:9\" ]; }", NULL);
	start(f);
	cond_mid = commit(f, one, 1, "s@x");
	assert_true(run_until(f, one_deferred));
	/* nothing was tried: nothing recorded, the message stays */
	assert_false(exists(f, "state", cond_mid));
	assert_true(exists(f, "queue", cond_mid));
}

static void
test_lifetime_over_bounces(void **state)
{
	struct fix *f = *state;

	/* arrived three days ago, max_lifetime one day: the next 4xx is the last */
	write_queue(f, 21, "s@x", "rcpt 0 <u@remote.example>\n", time(NULL) - 3 * 86400);
	load_config(f, "{ domain = \"ALL\"; to = [ \"USEDNS\" ]; }",
	    "retry_initial = \"1m\"; retry_max = \"1h\"; max_lifetime = \"1d\";");
	start(f);
	sched_set_smtp_agent(f->s, fake_smtp, f);
	sched_set_bounce(f->s, on_bounce, f);
	cond_mid = 21;
	assert_true(run_until(f, smtp_holds_one));
	assert_int_equal(f->held[0]->target->kind, TARGET_USEDNS);
	answer(f, 421, "4.4.2", "try later");
	assert_true(run_until(f, queue_gone));
	assert_int_equal(f->bounces, 1);
	assert_string_equal(f->bounce_enh, "5.4.7");
}

static void
test_replay_after_restart(void **state)
{
	struct fix *f = *state;
	char line[256];

	/*
	 * MID 31: rid 0 delivered, rid 1 deferred until far in the future, rid 2
	 * queued, and a torn last line: only rid 2 is due now.
	 */
	write_queue(f, 31, "s@x", "rcpt 0 <a@remote.example>\nrcpt 1 <b@remote.example>\n"
	    "rcpt 2 <c@other.example>\n", time(NULL));
	snprintf(line, sizeof(line), "rid 0 delivered %lld 1 250 ok\nrid 1 deferred %lld 1 "
	    "451 4.0.0 later\nrid 2 deliv", (long long)time(NULL), (long long)time(NULL) + 3600);
	write_state(f, 31, line);
	/* MID 32: every recipient done before the crash: removed at start */
	write_queue(f, 32, "s@x", "rcpt 0 <a@remote.example>\n", time(NULL));
	write_state(f, 32, "rid 0 bounced 1795896601 1 550 5.1.1 no\n");
	/* MID 33: held */
	write_queue(f, 33, "s@x", "rcpt 0 <a@remote.example>\n", time(NULL));
	write_state(f, 33, "held 1795896601\n");

	load_config(f, "{ domain = \"ALL\"; to = [ \"10.0.0.1\" ]; }", NULL);
	start(f);
	sched_set_smtp_agent(f->s, fake_smtp, f);
	assert_true(run_until(f, smtp_holds_one));
	assert_int_equal(f->held[0]->mid, 31);
	assert_int_equal(f->held[0]->n_rcpts, 1);
	assert_int_equal(f->held[0]->rcpts[0].rid, 2);
	cond_mid = 32;
	assert_true(run_until(f, queue_gone));
	answer(f, 250, "2.0.0", "ok");
	cond_mid = 31;
	assert_true(run_until(f, state_has_rid2_delivered));
	/* rid 1 is still deferred: the message stays, its record whole */
	assert_true(exists(f, "queue", 31));
	{
		const char *st = slurp(path_of(f, "state", 31));

		assert_null(strstr(st, "deliv\n"));
		assert_non_null(strstr(st, "rid 2 delivered "));
	}
	/* the held message was never handed out */
	assert_int_equal(f->smtp_calls, 1);
	assert_true(exists(f, "queue", 33));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_schedule),
		cmocka_unit_test_setup_teardown(test_state_format_and_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_torn_line_ignored_and_cut, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_state_append_and_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_routes_leave_the_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_smtp_outcomes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_smtp_agent_defers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifetime_over_bounces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_after_restart, setup, teardown),
	};

	evthread_use_pthreads();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
