/*
 * auth.h: SMTP AUTH credentials (RFC 4954) checked against the users file, a
 * file of "name:<crypt(3) hash>" lines (yescrypt, bcrypt, sha512-crypt), with
 * libxcrypt on a worker thread so no password hash ever runs on the event loop.
 * A failure is answered a fixed time after it was asked, whether the user exists
 * or not, which also slows brute force down.
 */
#ifndef MAILGATE_AUTH_H
#define MAILGATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

/* every failure is answered no sooner than this after auth_verify() */
#ifndef AUTH_FAIL_DELAY_MS
#define AUTH_FAIL_DELAY_MS	1000
#endif

#define AUTH_NAME_MAX		255	/* octets in a user name */
/* a longer password never verifies: libcrypt hashes at most 511 octets */
#define AUTH_PASS_MAX		511
#define AUTH_MAX_PENDING	256	/* checks queued at once; then auth_verify says EAGAIN */

struct auth;
struct auth_check;

typedef void (*auth_cb)(void *arg, bool ok);

/*
 * Read the users file. A missing file is no error: no users, every AUTH fails.
 * A malformed line (bad name, unsupported or broken hash, duplicate name) is
 * skipped with a warning in the mail log. NULL with the reason in err when the
 * file cannot be read or the worker thread cannot start. The base must be
 * thread-enabled (evthread_use_pthreads() before event_base_new()).
 */
struct auth *auth_new(struct event_base *, const char *users_path, char *err, size_t errlen);

/* read the users file again: 0, or -1 with the reason in err and the old table kept */
int auth_reload(struct auth *, const char *users_path, char *err, size_t errlen);

/* number of users in the table (for the log and the tests) */
size_t auth_user_count(const struct auth *);

/* override AUTH_FAIL_DELAY_MS for this instance (tests keep it short) */
void auth_set_fail_delay(struct auth *, unsigned ms);

/*
 * From the loop's thread, not from inside an auth_cb: joins the worker. Checks
 * still pending are dropped without a callback.
 */
void auth_free(struct auth *);

/*
 * Check user/pass. Both are copied (the copy of pass is wiped after use; the
 * caller wipes its own). cb(arg, ok) runs later on the loop's thread, never from
 * inside auth_verify; after it ran the handle is gone. NULL with errno set when
 * the check cannot even be queued (ENOMEM, or EAGAIN past AUTH_MAX_PENDING):
 * answer that as a temporary failure.
 */
struct auth_check *auth_verify(struct auth *, const char *user, const char *pass, auth_cb,
    void *arg);

/* the session went away: no callback. NULL is ignored. */
void auth_cancel(struct auth_check *);

/* a user name of the users file: 1..AUTH_NAME_MAX printable ASCII octets, no ':' */
bool auth_valid_name(const char *name, size_t len);

#endif
