/*
 * fuzz_spool_roundtrip: whatever the spool writes, it reads back identical.
 * An envelope is built from the fuzzer's bytes (strings made printable, as the
 * session's parsers guarantee; any mid but 0, any ICID, any arrival in years
 * 1970..9999), written with the real writer, spool_msg_begin() and
 * spool_msg_write(), made durable with spool_msg_commit() (its callback comes
 * through a real event loop: the committer thread fdatasyncs, renames into
 * queue/ and fsyncs the directory, on /dev/shm so that costs little), then
 * read with spool_entry_read(): every field and every message byte must come
 * back. The spool lives in a private directory, emptied after every input.
 *
 * Input: mid (8 bytes), icid (8), arrival (8), the number of recipients (1),
 * a flags byte (bit 0: no BODY), then length-prefixed strings: listener,
 * client, helo, sender, body, the recipients; the rest is the message.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "spool.h"

#define MAX_RCPTS	32
#define LAST_ARRIVAL	253402300799LL		/* 9999-12-31T23:59:59Z */

static char dir[256];
static struct event_base *base;
static struct spool *sp;

static void
cleanup(void)
{
	if (sp != NULL)
		spool_close(sp);
	sp = NULL;
	if (base != NULL)
		event_base_free(base);
	base = NULL;
	fz_rmtree(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char err[512];

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/mailgate-fuzz-XXXXXX", tmp);
	if (mkdtemp(dir) == NULL || evthread_use_pthreads() == -1 ||
	    (base = event_base_new()) == NULL)
		abort();
	if ((sp = spool_open(base, dir, NULL, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_spool_roundtrip: %s\n", err);
		abort();
	}
	atexit(cleanup);
	return 0;
}

/* a string the session could hand over: printable ASCII, as spool.h requires */
static char *
printable_string(struct fz *in)
{
	size_t len;
	const uint8_t *p = fz_lenbytes(in, &len);
	char *s = fz_strndup(p, len);

	for (size_t i = 0; i < len; i++)
		s[i] = (char)(0x20 + (uint8_t)s[i] % 95);
	return s;
}

struct done {
	bool called;
	int err;
};

static void
on_done(void *arg, int err)
{
	struct done *d = arg;

	d->called = true;
	d->err = err;
}

static bool
streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size };
	struct spool_envelope env;
	struct spool_msg *m;
	struct spool_entry e;
	struct done d = { false, 0 };
	char *listener, *client, *helo, *sender, *body, *rcpts[MAX_RCPTS], path[300], err[256];
	const uint8_t *msg;
	size_t n_rcpts, msglen;
	uint64_t arrival;
	uint8_t flags;
	char *back;
	FILE *fp;

	memset(&env, 0, sizeof(env));
	env.mid = fz_u64(&in);
	env.icid = fz_u64(&in);
	arrival = fz_u64(&in) % (uint64_t)(LAST_ARRIVAL + 1);
	env.arrival = (time_t)arrival;
	n_rcpts = fz_u8(&in) % (MAX_RCPTS + 1);
	flags = fz_u8(&in);
	if (env.mid == 0)
		env.mid = 1;
	listener = printable_string(&in);
	client = printable_string(&in);
	helo = printable_string(&in);
	sender = printable_string(&in);
	body = printable_string(&in);
	for (size_t i = 0; i < n_rcpts; i++)
		rcpts[i] = printable_string(&in);
	msg = fz_bytes(&in, in.n, &msglen);
	env.listener = listener;
	env.client = client;
	env.helo = helo;
	env.sender = sender;
	env.body = flags & 1 ? NULL : body;
	env.rcpts = (const char *const *)rcpts;
	env.n_rcpts = n_rcpts;

	m = spool_msg_begin(sp, &env);
	FUZZ_CHECK(m != NULL, "spool_msg_begin: %s", strerror(errno));
	/* in two writes, so a buffer edge can fall anywhere */
	FUZZ_CHECK(spool_msg_write(m, msg, msglen / 2) == 0 &&
	    spool_msg_write(m, msg + msglen / 2, msglen - msglen / 2) == 0,
	    "spool_msg_write: %s", strerror(errno));
	spool_msg_commit(m, on_done, &d);
	while (!d.called)
		event_base_loop(base, EVLOOP_ONCE);
	FUZZ_CHECK(d.err == 0, "commit: %s", strerror(d.err));

	snprintf(path, sizeof(path), "%s/queue/%llu", dir, (unsigned long long)env.mid);
	FUZZ_CHECK(spool_entry_read(path, &e, err, sizeof(err)) == 0,
	    "what the writer wrote does not read back: %s", err);
	FUZZ_CHECK(e.mid == env.mid && e.icid == env.icid && e.arrival == env.arrival,
	    "mid %llu/%llu icid %llu/%llu arrival %lld/%lld", (unsigned long long)e.mid,
	    (unsigned long long)env.mid, (unsigned long long)e.icid,
	    (unsigned long long)env.icid, (long long)e.arrival, (long long)env.arrival);
	FUZZ_CHECK(streq(e.listener, listener) && streq(e.client, client) &&
	    streq(e.helo, helo) && streq(e.sender, sender), "a string came back changed");
	FUZZ_CHECK(env.body == NULL ? e.body == NULL : streq(e.body, body), "body");
	FUZZ_CHECK(e.n_rcpts == n_rcpts, "%zu recipients, wrote %zu", e.n_rcpts, n_rcpts);
	for (size_t i = 0; i < n_rcpts; i++)
		FUZZ_CHECK(streq(e.rcpts[i], rcpts[i]), "recipient %zu", i);
	FUZZ_CHECK(e.size == msglen, "message %llu octets, wrote %zu",
	    (unsigned long long)e.size, msglen);
	back = malloc(msglen + 1);
	if (back == NULL || (fp = fopen(path, "re")) == NULL)
		abort();
	FUZZ_CHECK(fseek(fp, e.data_offset, SEEK_SET) == 0 &&
	    fread(back, 1, msglen + 1, fp) == msglen &&
	    (msglen == 0 || memcmp(back, msg, msglen) == 0), "message bytes differ");
	fclose(fp);
	free(back);
	spool_entry_free(&e);
	unlink(path);

	free(listener);
	free(client);
	free(helo);
	free(sender);
	free(body);
	for (size_t i = 0; i < n_rcpts; i++)
		free(rcpts[i]);
	return 0;
}
