/*
 * test_local_delivery.c: the maildir and /dev/null agents against a real event
 * loop and real files under /tmp: one file per recipient in <root>/<mailbox>/new/,
 * byte for byte the message of the queue file (from data_offset), nothing left
 * in tmp/, unique names; done() never from inside local_deliver(); failures
 * (a root that is a file, a queue file that is gone) are temporary; mailbox
 * names cannot leave the root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <dirent.h>
#include <ftw.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "local_delivery.h"

#define ENVELOPE "mailgate-spool 1\nmid 7\narrival 2026-11-28T20:10:00Z\nsender <a@b>\n\n"

struct fix {
	char dir[64];
	char queue[128];			/* the fake queue file */
	char *msg;				/* the message octets in it */
	size_t len;
	struct event_base *base;
	struct local_agent *la;
	int done;
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
	char err[256];
	FILE *fp;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_local.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	/* every octet value, CRLF lines, longer than one copy buffer */
	f->len = 200 * 1024 + 3;
	f->msg = malloc(f->len);
	assert_non_null(f->msg);
	for (size_t i = 0; i < f->len; i++)
		f->msg[i] = (char)(i % 80 == 78 ? '\r' : i % 80 == 79 ? '\n' : (char)(i * 31 + 7));
	snprintf(f->queue, sizeof(f->queue), "%s/queue-7", f->dir);
	assert_non_null(fp = fopen(f->queue, "w"));
	fputs(ENVELOPE, fp);
	assert_int_equal(fwrite(f->msg, 1, f->len, fp), f->len);
	fclose(fp);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->la = local_agent_new(f->base, err, sizeof(err));
	if (f->la == NULL)
		fail_msg("local_agent_new: %s", err);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;

	local_agent_free(f->la);
	event_base_free(f->base);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f->msg);
	free(f);
	return 0;
}

static void
on_done(struct delivery_batch *b, void *arg)
{
	struct fix *f = arg;

	(void)b;
	f->done++;
}

static void
noop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* run the loop until done() was called, with a deadline */
static void
run(struct fix *f)
{
	struct event *keep = event_new(f->base, -1, EV_PERSIST, noop, NULL);
	struct timeval tv = { 0, 100000 };

	event_add(keep, &tv);
	for (int i = 0; f->done == 0 && i < 300; i++)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(keep);
	assert_int_equal(f->done, 1);
}

static struct delivery_batch *
batch(struct fix *f, const struct route_target *t, const char *const *rcpts, size_t n)
{
	struct delivery_batch *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->rcpts = calloc(n, sizeof(*b->rcpts));
	assert_non_null(b->rcpts);
	b->mid = 7;
	b->path = f->queue;
	b->data_offset = (long)strlen(ENVELOPE);
	b->size = f->len;
	b->sender = "a@b";
	b->domain = "example.com";
	b->target = t;
	b->n_rcpts = n;
	b->done = on_done;
	b->arg = f;
	for (size_t i = 0; i < n; i++) {
		b->rcpts[i].rid = (uint32_t)i;
		b->rcpts[i].address = rcpts[i];
	}
	return b;
}

static void
batch_free(struct delivery_batch *b)
{
	free(b->rcpts);
	free(b);
}

/* the names in dir, sorted; how many */
static size_t
list(const char *dir, char names[][256], size_t cap)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return (size_t)-1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' && n < cap)
			snprintf(names[n++], 256, "%s", de->d_name);
	closedir(d);
	return n;
}

static char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	FILE *fp;

	assert_non_null(fp = fopen(path, "r"));
	assert_int_equal(fstat(fileno(fp), &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	*len = fread(buf, 1, (size_t)st.st_size, fp);
	fclose(fp);
	return buf;
}

/* <root>/<box>/new holds exactly one file, the message; tmp/ is empty, cur/ exists */
static void
assert_one_file(struct fix *f, const char *root, const char *box, char *name_out)
{
	char path[512], names[8][256];
	regex_t re;
	size_t len;
	char *got;

	snprintf(path, sizeof(path), "%s/%s/new", root, box);
	assert_int_equal(list(path, names, 8), 1);
	assert_int_equal(regcomp(&re, "^[0-9]+\\.[0-9]+_[0-9]+\\.[^/:]+$", REG_EXTENDED), 0);
	assert_int_equal(regexec(&re, names[0], 0, NULL, 0), 0);
	regfree(&re);
	if (name_out != NULL)
		strcpy(name_out, names[0]);
	snprintf(path, sizeof(path), "%s/%s/new/%s", root, box, names[0]);
	got = slurp(path, &len);
	assert_int_equal(len, f->len);
	assert_memory_equal(got, f->msg, f->len);
	free(got);
	snprintf(path, sizeof(path), "%s/%s/tmp", root, box);
	assert_int_equal(list(path, names, 8), 0);
	snprintf(path, sizeof(path), "%s/%s/cur", root, box);
	assert_int_equal(list(path, names, 8), 0);
}

static void
test_maildir_delivers_each_recipient(void **state)
{
	struct fix *f = *state;
	static const char *const rcpts[] = { "User@Example.COM", "a/b@example.com" };
	char root[128], first[256], again[256];
	struct route_target t = { .kind = TARGET_MAILDIR, .text = "maildir:x" };
	struct delivery_batch *b;

	/* a root that does not exist yet, two levels deep */
	snprintf(root, sizeof(root), "%s/mail/boxes", f->dir);
	t.path = root;
	b = batch(f, &t, rcpts, 2);
	assert_int_equal(local_deliver(f->la, b), 0);
	assert_int_equal(f->done, 0);		/* never from inside the call */
	run(f);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(b->rcpts[i].status, DELIVERY_OK);
		assert_int_equal(b->rcpts[i].code, 250);
		assert_string_equal(b->rcpts[i].enhanced, "2.0.0");
	}
	assert_one_file(f, root, "user@example.com", first);
	assert_one_file(f, root, "a_b@example.com", NULL);

	/* the same recipient again: a second file with another name */
	f->done = 0;
	b->n_rcpts = 1;
	assert_int_equal(local_deliver(f->la, b), 0);
	run(f);
	assert_int_equal(b->rcpts[0].status, DELIVERY_OK);
	{
		char path[512], names[8][256];

		snprintf(path, sizeof(path), "%s/user@example.com/new", root);
		assert_int_equal(list(path, names, 8), 2);
		snprintf(again, sizeof(again), "%s", strcmp(names[0], first) == 0 ? names[1] :
		    names[0]);
		assert_string_not_equal(again, first);
	}
	batch_free(b);
}

static void
test_devnull_accepts_all(void **state)
{
	struct fix *f = *state;
	static const char *const rcpts[] = { "x@null.example", "y@null.example", "z@null.example" };
	struct route_target t = { .kind = TARGET_DEVNULL, .text = "/dev/null" };
	struct delivery_batch *b = batch(f, &t, rcpts, 3);

	/* no queue file needed: nothing is read */
	b->path = "/nonexistent/queue/7";
	assert_int_equal(local_deliver(f->la, b), 0);
	assert_int_equal(f->done, 0);
	run(f);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(b->rcpts[i].status, DELIVERY_OK);
		assert_int_equal(b->rcpts[i].code, 250);
	}
	batch_free(b);
}

static void
test_failures_are_temporary(void **state)
{
	struct fix *f = *state;
	static const char *const rcpts[] = { "u@example.com" };
	struct route_target t = { .kind = TARGET_MAILDIR, .text = "maildir:x" };
	struct delivery_batch *b = batch(f, &t, rcpts, 1);
	char root[128];
	FILE *fp;

	/* the root is a file */
	snprintf(root, sizeof(root), "%s/plainfile", f->dir);
	assert_non_null(fp = fopen(root, "w"));
	fclose(fp);
	t.path = root;
	assert_int_equal(local_deliver(f->la, b), 0);
	run(f);
	assert_int_equal(b->rcpts[0].status, DELIVERY_TEMPFAIL);
	assert_int_equal(b->rcpts[0].code, 451);
	assert_string_equal(b->rcpts[0].enhanced, "4.3.0");
	assert_non_null(strstr(b->rcpts[0].reply, "plainfile"));

	/* the queue file is gone */
	f->done = 0;
	snprintf(root, sizeof(root), "%s/mail", f->dir);
	b->path = "/nonexistent/queue/7";
	assert_int_equal(local_deliver(f->la, b), 0);
	run(f);
	assert_int_equal(b->rcpts[0].status, DELIVERY_TEMPFAIL);

	/* a USEDNS batch is not ours */
	t.kind = TARGET_USEDNS;
	assert_int_equal(local_deliver(f->la, b), -1);
	batch_free(b);
}

static void
test_mailbox_names(void **state)
{
	char out[300], big[300];

	(void)state;
	assert_int_equal(local_mailbox_name("User@Example.COM", out, sizeof(out)), 0);
	assert_string_equal(out, "user@example.com");
	assert_int_equal(local_mailbox_name("a/b@x", out, sizeof(out)), 0);
	assert_string_equal(out, "a_b@x");
	assert_int_equal(local_mailbox_name(".hidden@x", out, sizeof(out)), 0);
	assert_string_equal(out, "_hidden@x");
	assert_int_equal(local_mailbox_name("../../etc@x", out, sizeof(out)), 0);
	assert_null(strstr(out, ".."));
	assert_null(strchr(out, '/'));
	assert_int_equal(local_mailbox_name("a..b@x", out, sizeof(out)), 0);
	assert_string_equal(out, "a._b@x");
	assert_int_equal(local_mailbox_name("\"a b\"@x", out, sizeof(out)), 0);
	assert_string_equal(out, "\"a_b\"@x");
	assert_int_equal(local_mailbox_name("..", out, sizeof(out)), 0);
	assert_string_not_equal(out, "..");
	assert_string_not_equal(out, ".");
	assert_int_equal(local_mailbox_name("", out, sizeof(out)), -1);
	memset(big, 'a', 256);
	big[256] = '\0';
	assert_int_equal(local_mailbox_name(big, out, sizeof(out)), -1);
	assert_int_equal(local_mailbox_name("abc@x", out, 5), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_maildir_delivers_each_recipient, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_devnull_accepts_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failures_are_temporary, setup, teardown),
		cmocka_unit_test(test_mailbox_names),
	};

	evthread_use_pthreads();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
