/*
 * auth.c: the users file and the password checks of SMTP AUTH (see auth.h).
 * Two threads: the event loop (table, verify, cancel, callbacks) and a worker
 * for crypt_rn(), slow by design, so other sessions never stall. The loop hands
 * the worker a copy of the stored hash (for an unknown user, a dummy yescrypt
 * setting: the same work, so the work does not tell who exists); the verdict
 * comes back through a list and event_active(), as in spool.c. A failure is
 * held until AUTH_FAIL_DELAY_MS after it was asked: a 535 takes as long for a
 * wrong password as for a user that does not exist.
 */
#include "auth.h"
#include "maillog.h"

#include <sys/queue.h>

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#define AUTH_LINE_MAX		4096	/* a longer users-file line is malformed */

_Static_assert(AUTH_PASS_MAX < CRYPT_MAX_PASSPHRASE_SIZE, "crypt_rn() refuses longer phrases");

struct auth_user {
	char *name;
	char *hash;
	unsigned line;
};

struct auth_table {
	struct auth_user *u;			/* sorted by name, names unique */
	size_t n;
};

enum auth_state {
	CHECK_PENDING,				/* in a->pending, the worker has not taken it */
	CHECK_RUNNING,				/* the worker is hashing */
	CHECK_COMPLETED,			/* in a->completed, for the loop */
	CHECK_LOOP,				/* the loop is handling it */
	CHECK_DELAYED,				/* failed; in a->delayed, timer armed */
};

TAILQ_HEAD(auth_checkq, auth_check);

struct auth_check {
	TAILQ_ENTRY(auth_check) entry;
	struct auth *a;
	enum auth_state state;			/* guarded by a->mu until CHECK_LOOP */
	bool cancelled;				/* set while running: drop the result */
	bool known;				/* the user is in the table */
	bool ok;				/* the worker's verdict */
	struct timespec due;			/* a failure is not answered before this */
	struct event *timer;
	auth_cb cb;
	void *arg;
	char hash[CRYPT_OUTPUT_SIZE];		/* stored hash, or the dummy setting */
	char pass[AUTH_PASS_MAX + 1];		/* wiped once hashed */
};

struct auth {
	struct event_base *base;
	struct auth_table *table;		/* loop thread only */
	char dummy[CRYPT_GENSALT_OUTPUT_SIZE];	/* "$y$..." setting for unknown users */
	unsigned fail_delay_ms;
	struct event *done_ev;
	unsigned inflight;			/* loop only: pending + running + completed */
	struct auth_checkq delayed;		/* loop only */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;			/* guards what follows, and check states */
	pthread_cond_t cv;
	bool stop;
	size_t npending;
	struct auth_checkq pending;		/* loop -> worker */
	struct auth_checkq completed;		/* worker -> loop */
};

/* ---- the users file ---- */

bool
auth_valid_name(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len > AUTH_NAME_MAX)
		return false;
	/* visible ASCII: no space, no control byte, and ':' ends the name in the file */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f || c == ':')
			return false;
	}
	return true;
}

static bool
auth_b64char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '/';
}

/* n octets of the crypt base64 alphabet, then the end of the string */
static bool
auth_b64run(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!auth_b64char(p[i]))
			return false;
	return p[n] == '\0';
}

/* a run of at least one and at most max octets up to '$': the next field, or NULL */
static const char *
auth_field(const char *p, size_t max)
{
	size_t i;

	for (i = 0; p[i] != '\0' && p[i] != '$'; i++)
		if (i == max)
			return NULL;
	if (i == 0 || p[i] != '$')
		return NULL;
	return p + i + 1;
}

/*
 * Only the strong families the README names, checked field by field, so that a
 * hash cut short by a copy and paste is reported here and not at the first
 * login. crypt_checksalt() (no hashing: cheap enough for the loop) then says
 * whether this libcrypt runs the method at all.
 */
static const char *
auth_hash_problem(const char *h, size_t len)
{
	const char *p;
	bool shape;

	if (len == 0)
		return "empty hash";
	if (len >= CRYPT_OUTPUT_SIZE)
		return "hash too long";
	if (strncmp(h, "$y$", 3) == 0) {
		/* $y$<params>$<salt>$<43> */
		shape = (p = auth_field(h + 3, 64)) != NULL && (p = auth_field(p, 128)) != NULL &&
		    auth_b64run(p, 43);
	} else if (strncmp(h, "$2b$", 4) == 0 || strncmp(h, "$2y$", 4) == 0 ||
	    strncmp(h, "$2a$", 4) == 0) {
		/* $2b$<cost 04..31>$<22 salt + 31 hash> */
		shape = len == 60 && h[4] >= '0' && h[4] <= '3' && h[5] >= '0' && h[5] <= '9' &&
		    h[6] == '$' && auth_b64run(h + 7, 53);
	} else if (strncmp(h, "$6$", 3) == 0) {
		/* $6$[rounds=N$]<salt, 1..16>$<86> */
		p = h + 3;
		if (strncmp(p, "rounds=", 7) == 0) {
			const char *d = p + 7;
			for (p = auth_field(d, 10); p != NULL && d < p - 1; d++)
				if (*d < '0' || *d > '9')
					p = NULL;
		}
		shape = p != NULL && (p = auth_field(p, 16)) != NULL && auth_b64run(p, 86);
	} else
		return "not a yescrypt ($y$), bcrypt ($2b$) or sha512-crypt ($6$) hash";
	if (!shape)
		return "malformed hash";
	switch (crypt_checksalt(h)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_TOO_CHEAP:
		return NULL;
	case CRYPT_SALT_METHOD_LEGACY:
	case CRYPT_SALT_METHOD_DISABLED:
		return "hash method disabled in libcrypt";
	default:
		return "malformed hash";
	}
}

static void
auth_table_free(struct auth_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++) {
		free(t->u[i].name);
		free(t->u[i].hash);
	}
	free(t->u);
	free(t);
}

static int
auth_user_cmp(const void *x, const void *y)
{
	const struct auth_user *a = x, *b = y;
	int c = strcmp(a->name, b->name);

	if (c != 0)
		return c;
	return a->line < b->line ? -1 : a->line > b->line;
}

static int
auth_name_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct auth_user *)elem)->name);
}

static bool
auth_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* one line, trailing white space cut: 0 added, 1 skipped (warned), -1 no memory */
static int
auth_parse_line(struct auth_table *t, size_t *cap, const char *path, unsigned lineno,
    char *line, size_t len)
{
	const char *why;
	char *colon, *hash;
	size_t i, nlen = 0;

	for (i = 0; i < len && auth_blank(line[i]); i++)
		;
	if (i == len || line[i] == '#')
		return 1;
	colon = memchr(line, ':', len);
	if (colon != NULL)
		nlen = (size_t)(colon - line);
	if (memchr(line, '\0', len) != NULL)
		why = "NUL byte";
	else if (len > AUTH_LINE_MAX)
		why = "line too long";
	else if (colon == NULL)
		why = "no ':' after the name";
	else if (!auth_valid_name(line, nlen))
		why = "bad user name";
	else
		why = auth_hash_problem(colon + 1, len - nlen - 1);
	if (why != NULL) {
		/* never the line itself: it may be a password typed in the wrong place */
		maillog(LOG_WARNING, NULL, "users file %s:%u: %s, line skipped", path, lineno,
		    why);
		return 1;
	}
	if (t->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct auth_user *u = reallocarray(t->u, ncap, sizeof(*u));
		if (u == NULL)
			return -1;
		t->u = u;
		*cap = ncap;
	}
	*colon = '\0';
	hash = colon + 1;
	if ((t->u[t->n].name = strdup(line)) == NULL)
		return -1;
	if ((t->u[t->n].hash = strdup(hash)) == NULL) {
		free(t->u[t->n].name);
		return -1;
	}
	t->u[t->n].line = lineno;
	t->n++;
	return 0;
}

/* sort, and keep the first line of a name given twice */
static void
auth_table_finish(struct auth_table *t, const char *path)
{
	size_t i, o = 0;

	if (t->n > 1)
		qsort(t->u, t->n, sizeof(*t->u), auth_user_cmp);
	for (i = 0; i < t->n; i++) {
		if (o > 0 && strcmp(t->u[o - 1].name, t->u[i].name) == 0) {
			maillog(LOG_WARNING, NULL, "users file %s:%u: user %s given again on "
			    "line %u, line skipped", path, t->u[i].line, t->u[i].name,
			    t->u[o - 1].line);
			free(t->u[i].name);
			free(t->u[i].hash);
			continue;
		}
		t->u[o++] = t->u[i];
	}
	t->n = o;
}

static struct auth_table *
auth_table_load(const char *path, char *err, size_t errlen)
{
	struct auth_table *t;
	char *line = NULL;
	size_t linecap = 0, cap = 0;
	unsigned lineno = 0;
	ssize_t n;
	FILE *f;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errlen, "users file %s: out of memory", path);
		return NULL;
	}
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT) {
			maillog(LOG_WARNING, NULL, "users file %s does not exist: no AUTH "
			    "user can log in", path);
			return t;
		}
		snprintf(err, errlen, "users file %s: %s", path, strerror(errno));
		free(t);
		return NULL;
	}
	while (errno = 0, (n = getline(&line, &linecap, f)) != -1) {
		size_t len = (size_t)n;
		lineno++;
		while (len > 0 && auth_blank(line[len - 1]))
			len--;
		line[len] = '\0';
		if (auth_parse_line(t, &cap, path, lineno, line, len) == -1) {
			snprintf(err, errlen, "users file %s: out of memory", path);
			goto fail;
		}
	}
	if (ferror(f) || errno == ENOMEM) {
		snprintf(err, errlen, "users file %s: %s", path,
		    strerror(errno ? errno : EIO));
		goto fail;
	}
	free(line);
	fclose(f);
	auth_table_finish(t, path);
	return t;

fail:
	free(line);
	fclose(f);
	auth_table_free(t);
	return NULL;
}

static const struct auth_user *
auth_lookup(const struct auth_table *t, const char *name)
{
	if (t->n == 0)
		return NULL;
	return bsearch(name, t->u, t->n, sizeof(*t->u), auth_name_cmp);
}

size_t
auth_user_count(const struct auth *a)
{
	return a->table->n;
}

int
auth_reload(struct auth *a, const char *users_path, char *err, size_t errlen)
{
	struct auth_table *t;

	/* checks already asked carry their own copy of the hash: swapping is safe */
	if ((t = auth_table_load(users_path, err, errlen)) == NULL)
		return -1;
	auth_table_free(a->table);
	a->table = t;
	return 0;
}

/* ---- the worker ---- */

static void
auth_check_free(struct auth_check *c)
{
	if (c->timer != NULL)
		event_free(c->timer);
	explicit_bzero(c->pass, sizeof(c->pass));
	free(c);
}

static bool
auth_hash_equal(const char *computed, const char *stored)
{
	size_t len = strlen(stored);

	/* lengths are not secret (the method fixes them); the octets are */
	return strlen(computed) == len && CRYPTO_memcmp(computed, stored, len) == 0;
}

static void
auth_hash_check(struct auth_check *c, struct crypt_data *cd)
{
	const char *out;

	out = crypt_rn(c->pass, c->hash, cd, (int)sizeof(*cd));
	/* a failing crypt_rn() returns NULL or a string starting with '*' */
	c->ok = c->known && out != NULL && out[0] != '*' && auth_hash_equal(out, c->hash);
	explicit_bzero(c->pass, sizeof(c->pass));
	/* the state may hold values derived from the password */
	explicit_bzero(cd, sizeof(*cd));
}

static void *
auth_worker(void *arg)
{
	struct auth *a = arg;
	struct crypt_data *cd;
	struct auth_check *c;

	/* ~32 KiB: not on a thread stack; zeroed as crypt_rn() wants the first time */
	cd = calloc(1, sizeof(*cd));
	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (!a->stop && TAILQ_EMPTY(&a->pending))
			pthread_cond_wait(&a->cv, &a->mu);
		if (a->stop)
			break;
		c = TAILQ_FIRST(&a->pending);
		TAILQ_REMOVE(&a->pending, c, entry);
		a->npending--;
		c->state = CHECK_RUNNING;
		pthread_mutex_unlock(&a->mu);

		if (cd != NULL)
			auth_hash_check(c, cd);
		else {
			/* no memory for crypt: nobody gets in */
			explicit_bzero(c->pass, sizeof(c->pass));
			c->ok = false;
		}

		pthread_mutex_lock(&a->mu);
		c->state = CHECK_COMPLETED;
		TAILQ_INSERT_TAIL(&a->completed, c, entry);
		pthread_mutex_unlock(&a->mu);
		/* libevent is thread-enabled: this wakes the loop */
		event_active(a->done_ev, EV_READ, 0);
		pthread_mutex_lock(&a->mu);
	}
	pthread_mutex_unlock(&a->mu);
	free(cd);
	return NULL;
}

/* ---- the loop side ---- */

static void
auth_inflight_dec(struct auth *a)
{
	if (--a->inflight == 0)
		event_del(a->done_ev);
}

static void
auth_deliver(struct auth_check *c)
{
	auth_cb cb = c->cb;
	void *arg = c->arg;
	bool ok = c->ok;

	if (c->state == CHECK_DELAYED)
		TAILQ_REMOVE(&c->a->delayed, c, entry);
	auth_check_free(c);
	cb(arg, ok);
}

static bool
auth_time_before(const struct timespec *x, const struct timespec *y)
{
	return x->tv_sec < y->tv_sec || (x->tv_sec == y->tv_sec && x->tv_nsec < y->tv_nsec);
}

/*
 * Answer a failure at c->due, not before. libevent's clock may be coarser than
 * ours, so a timer that fires a little early is armed again for the rest.
 */
static void
auth_fail_at_due(struct auth_check *c)
{
	struct timespec now;
	struct timeval tv;
	long long ns;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!auth_time_before(&now, &c->due)) {
		auth_deliver(c);
		return;
	}
	ns = (long long)(c->due.tv_sec - now.tv_sec) * 1000000000LL +
	    (c->due.tv_nsec - now.tv_nsec);
	/* round up to the next microsecond */
	tv.tv_sec = (time_t)(ns / 1000000000LL);
	tv.tv_usec = (suseconds_t)((ns % 1000000000LL + 999) / 1000);
	if (tv.tv_usec >= 1000000) {
		tv.tv_sec++;
		tv.tv_usec -= 1000000;
	}
	if (c->state != CHECK_DELAYED) {
		c->state = CHECK_DELAYED;
		TAILQ_INSERT_TAIL(&c->a->delayed, c, entry);
	}
	if (evtimer_add(c->timer, &tv) == -1)
		auth_deliver(c);	/* cannot wait: late is better than never */
}

static void
auth_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	auth_fail_at_due(arg);
}

static void
auth_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth *a = arg;
	struct auth_check *c;

	(void)fd;
	(void)what;
	/* one at a time: a callback may verify or cancel other checks */
	for (;;) {
		pthread_mutex_lock(&a->mu);
		if ((c = TAILQ_FIRST(&a->completed)) != NULL) {
			TAILQ_REMOVE(&a->completed, c, entry);
			c->state = CHECK_LOOP;
		}
		pthread_mutex_unlock(&a->mu);
		if (c == NULL)
			break;
		auth_inflight_dec(a);
		if (c->cancelled)
			auth_check_free(c);
		else if (c->ok)
			auth_deliver(c);	/* success: no reason to wait */
		else
			auth_fail_at_due(c);
	}
}

struct auth_check *
auth_verify(struct auth *a, const char *user, const char *pass, auth_cb cb, void *arg)
{
	static const struct timeval forever = { 365 * 24 * 3600, 0 };
	const struct auth_user *u = NULL;
	struct auth_check *c;
	size_t plen = strlen(pass);

	pthread_mutex_lock(&a->mu);
	if (a->npending >= AUTH_MAX_PENDING) {
		pthread_mutex_unlock(&a->mu);
		errno = EAGAIN;
		return NULL;
	}
	pthread_mutex_unlock(&a->mu);

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->timer = evtimer_new(a->base, auth_timer_cb, c)) == NULL) {
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	c->a = a;
	c->cb = cb;
	c->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &c->due);
	c->due.tv_sec += a->fail_delay_ms / 1000;
	c->due.tv_nsec += (long)(a->fail_delay_ms % 1000) * 1000000L;
	if (c->due.tv_nsec >= 1000000000L) {
		c->due.tv_sec++;
		c->due.tv_nsec -= 1000000000L;
	}

	if (strlen(user) <= AUTH_NAME_MAX)
		u = auth_lookup(a->table, user);
	/*
	 * An unknown user, or a password too long to be one, costs the same
	 * yescrypt work as a real check against the dummy, and always fails.
	 */
	c->known = u != NULL && plen <= AUTH_PASS_MAX;
	snprintf(c->hash, sizeof(c->hash), "%s", c->known ? u->hash : a->dummy);
	memcpy(c->pass, pass, plen <= AUTH_PASS_MAX ? plen : AUTH_PASS_MAX);

	if (a->inflight++ == 0)
		event_add(a->done_ev, &forever);	/* keeps the loop running until answered */
	pthread_mutex_lock(&a->mu);
	c->state = CHECK_PENDING;
	TAILQ_INSERT_TAIL(&a->pending, c, entry);
	a->npending++;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return c;
}

void
auth_cancel(struct auth_check *c)
{
	struct auth *a;

	if (c == NULL)
		return;
	a = c->a;
	pthread_mutex_lock(&a->mu);
	switch (c->state) {
	case CHECK_PENDING:
		TAILQ_REMOVE(&a->pending, c, entry);
		a->npending--;
		break;
	case CHECK_COMPLETED:
		TAILQ_REMOVE(&a->completed, c, entry);
		break;
	case CHECK_RUNNING:
		/* the worker holds it: auth_done_cb frees it when it comes back */
		c->cancelled = true;
		pthread_mutex_unlock(&a->mu);
		return;
	case CHECK_DELAYED:
		TAILQ_REMOVE(&a->delayed, c, entry);
		pthread_mutex_unlock(&a->mu);
		auth_check_free(c);
		return;
	case CHECK_LOOP:
		/* only inside auth_done_cb; not reachable from a session */
		pthread_mutex_unlock(&a->mu);
		return;
	}
	pthread_mutex_unlock(&a->mu);
	auth_inflight_dec(a);
	auth_check_free(c);
}

void
auth_set_fail_delay(struct auth *a, unsigned ms)
{
	a->fail_delay_ms = ms;
}

/* ---- new and free ---- */

struct auth *
auth_new(struct event_base *base, const char *users_path, char *err, size_t errlen)
{
	struct auth *a;
	int r;

	if ((a = calloc(1, sizeof(*a))) == NULL) {
		snprintf(err, errlen, "auth: out of memory");
		return NULL;
	}
	a->base = base;
	a->fail_delay_ms = AUTH_FAIL_DELAY_MS;
	TAILQ_INIT(&a->pending);
	TAILQ_INIT(&a->completed);
	TAILQ_INIT(&a->delayed);
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);

	/*
	 * A setting, not a full hash: crypt_rn() over it does all the yescrypt
	 * work of a real check, and nothing hashes on the loop at startup.
	 */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, a->dummy, (int)sizeof(a->dummy)) == NULL ||
	    a->dummy[0] == '*') {
		snprintf(err, errlen, "auth: libcrypt cannot make a yescrypt salt: %s",
		    strerror(errno));
		goto fail;
	}
	if ((a->table = auth_table_load(users_path, err, errlen)) == NULL)
		goto fail;
	if ((a->done_ev = event_new(base, -1, EV_PERSIST, auth_done_cb, a)) == NULL) {
		snprintf(err, errlen, "auth: cannot create an event");
		goto fail;
	}
	if ((r = pthread_create(&a->thread, NULL, auth_worker, a)) != 0) {
		snprintf(err, errlen, "auth: cannot start the worker: %s", strerror(r));
		goto fail;
	}
	a->thread_started = true;
	return a;

fail:
	auth_free(a);
	return NULL;
}

static void
auth_drop(struct auth_checkq *q)
{
	struct auth_check *c;

	while ((c = TAILQ_FIRST(q)) != NULL) {
		TAILQ_REMOVE(q, c, entry);
		auth_check_free(c);
	}
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	if (a->thread_started) {
		pthread_mutex_lock(&a->mu);
		a->stop = true;
		pthread_cond_signal(&a->cv);
		pthread_mutex_unlock(&a->mu);
		/* a check being hashed finishes first: it lands in completed */
		pthread_join(a->thread, NULL);
	}
	auth_drop(&a->pending);
	auth_drop(&a->completed);
	auth_drop(&a->delayed);
	if (a->done_ev != NULL)
		event_free(a->done_ev);
	auth_table_free(a->table);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	explicit_bzero(a->dummy, sizeof(a->dummy));
	free(a);
}
