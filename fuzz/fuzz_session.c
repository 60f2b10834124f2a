/*
 * fuzz_session: a whole inbound SMTP session, through the real state machine
 * (smtp_session.c, smtp_tx.c, smtp_auth.c, data.c, the spool and AUTH threads),
 * so the fuzzer explores command sequences, not single parsers.
 *
 * The transport is in memory: each input gets a libevent bufferevent_pair. One
 * end goes to smtp_session_accept_bev() as if a listener had accepted it (io.c
 * runs on it exactly as on a socket's bufferevent), the other is the client,
 * driven here on the same real event_base. No socket, no system call per
 * byte: nothing leaves the process. The server around the session is the real struct
 * server with what a session touches: the config (one, loaded at start), the
 * spool (a private directory under /dev/shm, emptied after every input), the
 * per-host counts, and AUTH with one user; no DNS (reverse_lookups = false)
 * and no TLS (no certificate: STARTTLS is refused as the policy says).
 *
 * Input: byte 0 picks the client address (so the HAT picks the policy:
 * relay with AUTH, accept with a RAT, AUTH required, reject, tcprefuse,
 * continue into a policy with small limits) and the log format. The rest
 * is what the client sends, after the banner. A 0xFF byte is
 * not sent: it means "wait until the server has answered everything so far",
 * so the fuzzer can both pipeline (no 0xFF) and wait for the 354 (0xFF after
 * DATA). At the end the client ends its input (EOF) and the session must go away.
 *
 * Checked after every input, besides ASan/UBSan/LSan: every reply line is
 * "NNN" + " " or "-", printable, CRLF-ended and at most 512 octets; the
 * session is gone and every count is back to zero; tmp/ holds no leftover;
 * every file in queue/ reads back as an envelope, and there are no more of
 * them than "354" replies (no message smuggled in another's data); every
 * "250 ok: Message N accepted" names a file in queue/ (no 250 without a
 * durable message).
 * FUZZ_SESSION_TRACE=1 in the environment prints the replies of each input.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "auth.h"
#include "config.h"
#include "hostcount.h"
#include "listener.h"
#include "maillog.h"
#include "server.h"
#include "smtp_session.h"
#include "smtp_session_int.h"
#include "spool.h"

#define WAIT_BYTE	0xff
#define REPLY_CAP	(1024 * 1024)

static const char users_text[] =
    "alice:$6$rounds=1000$fuzzsalt$VaozQpX6.rHlYgQ8XkQuQwnkNdGdaeCOvmZC4qxWknLh/eg/UKI7X"
    "rlNFcouj7rjYRe.I0VJYPdKlgC8OexQQ0\n";		/* password "secret" */

static const char config_fmt[] =
    "hostname = \"mx.fuzz.example\";\n"
    "spool = \"%s/spool\";\n"
    "control = \"%s/control.sock\";\n"
    "log = { file = \"-\"; };\n"
    "dns = { reverse_lookups = false; };\n"
    "auth = { users = \"%s/users\"; };\n"
    "limits = { max_header_lines = 40; max_hops = 5; bad_command_limit = 6;\n"
    "  queue_max_messages = 1000000000000L; queue_max_bytes = \"1000G\"; };\n"
    "policy_defaults = { max_message_size = \"64K\"; max_recipients_per_message = 8;\n"
    "  max_messages_per_connection = 4; };\n"
    "policies = {\n"
    "  RELAYED = { action = \"relay\"; auth = \"preferred\"; auth_requires_tls = false;\n"
    "    bare_crlf = \"accept\"; };\n"
    "  AUTHREQ = { action = \"accept\"; auth = \"required\"; auth_requires_tls = false;\n"
    "    max_message_size = \"2K\"; max_recipients_per_message = 2; };\n"
    "  ACCEPTED = { action = \"accept\"; };\n"
    "  BLOCKED = { action = \"reject\"; };\n"
    "  REFUSED = { action = \"tcprefuse\"; };\n"
    "  CONT = { action = \"continue\"; };\n"
    "  SMALL = { action = \"accept\"; max_message_size = \"300\"; bare_crlf = \"accept\";\n"
    "    max_recipients_per_message = 3; };\n"
    "};\n"
    "listeners = ( { name = \"fuzz\"; listen = [ \"127.0.0.1:2525\" ]; type = \"public\";\n"
    "  hat = ( { group = \"RELAYLIST\"; hosts = [ \"127.0.0.0/8\", \"::1\" ]; policy = \"RELAYED\"; },\n"
    "          { group = \"AUTHLIST\"; hosts = [ \"10.9.0.0/16\" ]; policy = \"AUTHREQ\"; },\n"
    "          { group = \"BLOCKLIST\"; hosts = [ \"192.0.2.0/24\" ]; policy = \"BLOCKED\"; },\n"
    "          { group = \"REFUSE\"; hosts = [ \"198.51.100.1-20\" ]; policy = \"REFUSED\"; },\n"
    "          { group = \"CONTLIST\"; hosts = [ \"203.0.113.\" ]; policy = \"CONT\"; },\n"
    "          { group = \"SMALLLIST\"; hosts = [ \"203.0.113.0/24\" ]; policy = \"SMALL\"; },\n"
    "          { group = \"ALL\"; hosts = [ \"ALL\" ]; policy = \"ACCEPTED\"; } );\n"
    "  rat = ( { recipient = \"example.com\"; action = \"accept\"; },\n"
    "          { recipient = \".example.com\"; action = \"accept\"; },\n"
    "          { recipient = \"postmaster@fuzz.example\"; action = \"accept\"; },\n"
    "          { recipient = \"ALL\"; action = \"reject\"; } ); } );\n";

static const char *const peers[] = {
	"127.0.0.1", "10.1.2.3", "10.9.1.1", "192.0.2.7", "198.51.100.9", "203.0.113.5",
	"::1", "::ffff:10.9.3.4",
};

static char dir[200], spooldir[256];
static struct event_base *base;
static struct server srv;
static struct listener lsn;
static char lsn_name[] = "fuzz";
static int log_format = -1;

/* the client end */
static struct client {
	struct bufferevent *bev;
	char *replies;
	size_t rlen;
	unsigned long reads;		/* read callbacks that got bytes */
} cl;

/*
 * A user not in the users file is checked against a yescrypt setting, so a
 * wrong name costs as much as a wrong password (auth.c): about 100 ms, which
 * would make most of the fuzzer's AUTH attempts the whole of its time. Here,
 * and only here, that check fails at once; the answer is the same (an unknown
 * user never verifies), only the timing defence is gone. Every other hash
 * (alice's sha512-crypt with 1000 rounds) goes to libcrypt.
 */
char *
crypt_rn(const char *phrase, const char *setting, void *data, int size)
{
	static char *(*real)(const char *, const char *, void *, int);

	if (strncmp(setting, "$y$", 3) == 0) {
		errno = EINVAL;
		return NULL;
	}
	if (real == NULL &&
	    (*(void **)&real = dlsym(RTLD_NEXT, "crypt_rn")) == NULL)
		abort();
	return real(phrase, setting, data, size);
}

static void
cleanup(void)
{
	if (srv.spool != NULL)
		spool_close(srv.spool);
	if (srv.auth != NULL)
		auth_free(srv.auth);
	if (srv.hosts != NULL)
		hostcount_free(srv.hosts);
	config_unref(srv.cfg);
	memset(&srv, 0, sizeof(srv));
	if (base != NULL)
		event_base_free(base);
	base = NULL;
	maillog_close();
	fz_rmtree(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char err[2048], path[300], *text;
	FILE *fp;

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/mailgate-fuzz-XXXXXX", tmp);
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(spooldir, sizeof(spooldir), "%s/spool", dir);
	snprintf(path, sizeof(path), "%s/users", dir);
	if ((fp = fopen(path, "w")) == NULL || fputs(users_text, fp) == EOF || fclose(fp) != 0)
		abort();
	if (asprintf(&text, config_fmt, dir, dir, dir) == -1)
		abort();
	if ((srv.cfg = config_load_string(text, "fuzz_session.conf", err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: config: %s\n", err);
		abort();
	}
	free(text);
	if (evthread_use_pthreads() == -1 || (srv.base = base = event_base_new()) == NULL)
		abort();
	if (maillog_open("/dev/null", LOG_FORMAT_ESA) == -1)
		abort();
	log_format = LOG_FORMAT_ESA;
	if ((srv.spool = spool_open(base, srv.cfg->spool, NULL, err, sizeof(err))) == NULL ||
	    (srv.auth = auth_new(base, srv.cfg->auth.users, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	auth_set_fail_delay(srv.auth, 0);
	if ((srv.hosts = hostcount_new()) == NULL)
		abort();
	lsn.srv = &srv;
	lsn.name = lsn_name;
	if ((cl.replies = malloc(REPLY_CAP)) == NULL)
		abort();
	atexit(cleanup);
	return 0;
}

static void
client_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = evbuffer_get_length(in), take = n;

	(void)arg;
	if (n == 0)
		return;
	if (take > REPLY_CAP - cl.rlen)
		take = REPLY_CAP - cl.rlen;
	evbuffer_remove(in, cl.replies + cl.rlen, take);
	evbuffer_drain(in, n - take);
	cl.rlen += take;
	cl.reads++;
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	(void)arg;
}

static struct smtp_session *
session(void)
{
	return srv.sessions;
}

/*
 * Run the loop until nothing moves: the client sent its chunk, the server
 * read it and answered, the client read the answer. A session waiting on a
 * thread (the disk, a password hash) is waited for.
 */
static void
settle(void)
{
	int idle = 0;

	for (int i = 0; i < 100000 && idle < 4; i++) {
		struct smtp_session *s = session();
		unsigned long reads = cl.reads;
		size_t unsent = evbuffer_get_length(bufferevent_get_output(cl.bev));

		if (s != NULL && (s->state == S_COMMIT || s->state == S_AUTH_WAIT)) {
			event_base_loop(base, EVLOOP_ONCE);
			idle = 0;
			continue;
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (cl.reads == reads &&
		    evbuffer_get_length(bufferevent_get_output(cl.bev)) == unsent)
			idle++;
		else
			idle = 0;
	}
}

/* every reply line well formed: RFC 5321 4.2, 4.5.3.1.5 */
static void
check_replies(void)
{
	size_t i = 0;

	while (i < cl.rlen) {
		const char *p = cl.replies + i;
		const char *lf = memchr(p, '\n', cl.rlen - i);
		size_t len;

		if (lf == NULL) {
			/* cut at REPLY_CAP, or a reply with no CRLF */
			FUZZ_CHECK(cl.rlen == REPLY_CAP, "a reply without CRLF: \"%.*s\"",
			    (int)(cl.rlen - i), p);
			return;
		}
		len = (size_t)(lf - p) + 1;
		FUZZ_CHECK(len >= 6 && p[len - 2] == '\r', "reply line \"%.*s\"", (int)len, p);
		FUZZ_CHECK(p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' &&
		    p[2] >= '0' && p[2] <= '9' && (p[3] == ' ' || p[3] == '-'),
		    "reply line \"%.*s\"", (int)len, p);
		FUZZ_CHECK(len <= 512, "reply line of %zu octets", len);
		for (size_t k = 0; k < len - 2; k++)
			FUZZ_CHECK((unsigned char)p[k] >= 0x20 && (unsigned char)p[k] <= 0x7e,
			    "byte 0x%02x in reply \"%.*s\"", (unsigned char)p[k], (int)len - 2, p);
		i += len;
	}
}

/* every queued message reads back; every 250 names one of them */
static void
check_spool(void)
{
	char qdir[300], tdir[300], path[600], err[256];
	struct spool_entry e;
	struct dirent *de;
	DIR *dp;
	const char *p, *end = cl.replies + cl.rlen;
	static const char acc[] = "250 ok: Message ";
	unsigned go_aheads = 0, queued = 0;

	snprintf(tdir, sizeof(tdir), "%s/tmp", spooldir);
	if ((dp = opendir(tdir)) != NULL) {
		while ((de = readdir(dp)) != NULL)
			FUZZ_CHECK(de->d_name[0] == '.', "tmp/%s left behind", de->d_name);
		closedir(dp);
	}
	for (p = cl.replies; (p = memmem(p, (size_t)(end - p), acc, sizeof(acc) - 1)) != NULL;
	    p++) {
		unsigned long long mid;
		if (p > cl.replies && p[-1] != '\n')
			continue;		/* client text echoed inside another reply */
		mid = strtoull(p + sizeof(acc) - 1, NULL, 10);
		snprintf(path, sizeof(path), "%s/queue/%llu", spooldir, mid);
		FUZZ_CHECK(access(path, F_OK) == 0, "250 for MID %llu, but no queue file", mid);
	}
	/* a message needs its own 354: none may ride in on another's data (hostile.md 1) */
	for (p = cl.replies; (p = memmem(p, (size_t)(end - p), "354 ", 4)) != NULL; p++)
		if (p == cl.replies || p[-1] == '\n')
			go_aheads++;
	snprintf(qdir, sizeof(qdir), "%s/queue", spooldir);
	if ((dp = opendir(qdir)) == NULL)
		abort();
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		FUZZ_CHECK(++queued <= go_aheads, "%u messages queued after %u \"354\" replies",
		    queued, go_aheads);
		snprintf(path, sizeof(path), "%s/%s", qdir, de->d_name);
		FUZZ_CHECK(spool_entry_read(path, &e, err, sizeof(err)) == 0,
		    "queue/%s does not read back: %s", de->d_name, err);
		FUZZ_CHECK(e.n_rcpts >= 1, "queue/%s has no recipient", de->d_name);
		spool_entry_free(&e);
		unlink(path);
	}
	closedir(dp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	const char *peer;
	int fmt;
	size_t i, start;

	if (size < 1)
		return 0;
	peer = peers[data[0] % (sizeof(peers) / sizeof(peers[0]))];
	fmt = data[0] & 0x08 ? LOG_FORMAT_JSON : LOG_FORMAT_ESA;
	data++;
	size--;
	if (fmt != log_format) {
		if (maillog_open("/dev/null", (enum log_format)fmt) == -1)
			abort();
		log_format = fmt;
	}

	memset(&ss, 0, sizeof(ss));
	if (strchr(peer, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(40000);
		inet_pton(AF_INET6, peer, &s6->sin6_addr);
		sslen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(40000);
		inet_pton(AF_INET, peer, &s4->sin_addr);
		sslen = sizeof(*s4);
	}

	struct bufferevent *pair[2];

	if (bufferevent_pair_new(base, BEV_OPT_DEFER_CALLBACKS, pair) == -1)
		abort();
	cl.bev = pair[1];
	cl.rlen = 0;
	cl.reads = 0;
	bufferevent_setcb(cl.bev, client_read, NULL, client_event, NULL);
	bufferevent_enable(cl.bev, EV_READ | EV_WRITE);

	smtp_session_accept_bev(&lsn, pair[0], (struct sockaddr *)&ss, sslen, "127.0.0.1:2525");
	/* the banner first: a client that talks before it is refused, as it should be */
	settle();

	for (start = i = 0; i <= size; i++) {
		if (i < size && data[i] != WAIT_BYTE)
			continue;
		if (i > start && session() != NULL) {
			bufferevent_write(cl.bev, data + start, i - start);
			settle();
		}
		start = i + 1;
	}

	/* the client is done: end of input (the server sees EOF), and the session must end */
	bufferevent_flush(cl.bev, EV_WRITE, BEV_FINISHED);
	while (session() != NULL)
		event_base_loop(base, EVLOOP_ONCE);
	/* the rest of the replies, and any commit still in flight */
	event_base_dispatch(base);
	client_read(cl.bev, NULL);

	FUZZ_CHECK(srv.n_sessions == 0 && lsn.n_sessions == 0 && srv.sessions == NULL,
	    "sessions %u/%u left", srv.n_sessions, lsn.n_sessions);
	if (getenv("FUZZ_SESSION_TRACE") != NULL)
		fprintf(stderr, "--- %s ---\n%.*s", peer, (int)cl.rlen, cl.replies);
	check_replies();
	check_spool();

	bufferevent_free(cl.bev);
	return 0;
}
