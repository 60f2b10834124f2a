/*
 * smtp_auth.c: SMTP AUTH (RFC 4954) with SASL PLAIN (RFC 4616) and LOGIN, for the
 * inbound session. The exchange is a small state machine on top of the session's
 * (S_AUTH reads a response line of up to 12,288 octets, S_AUTH_WAIT waits for the
 * password check, which runs on auth.c's worker thread, never on the loop).
 * A failure is answered only after auth.c's fixed delay, the same whether the
 * user exists or not; after limits.auth_failure_limit failures the session is
 * closed with a 421. Credentials are wiped as soon as they are handed over.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "io.h"
#include "server.h"
#include "smtp_session_int.h"
#include "util.h"

enum auth_step {
	AUTH_PLAIN_RESPONSE = 1,	/* PLAIN without an initial response */
	AUTH_LOGIN_USER,
	AUTH_LOGIN_PASS,
};

#define MECH_PLAIN	"PLAIN"
#define MECH_LOGIN	"LOGIN"

/* base64 of "Username:" and "Password:", the LOGIN mechanism's challenges */
#define LOGIN_USER_CHALLENGE	"VXNlcm5hbWU6"
#define LOGIN_PASS_CHALLENGE	"UGFzc3dvcmQ6"

static void
auth_done(void *arg, bool ok)
{
	struct smtp_session *s = arg;
	const char *mech = s->auth_step == AUTH_LOGIN_PASS ? MECH_LOGIN : MECH_PLAIN;
	char user[sizeof(s->auth_user) * 4];

	s->auth_check = NULL;
	s->state = S_CMD;
	util_escape(user, sizeof(user), s->auth_user, strlen(s->auth_user));
	if (ok) {
		s->authenticated = true;
		maillog(LOG_INFO, &s->ids, "SMTP Auth: (ICID %" PRIu64 ") succeeded for user: %s "
		    "using AUTH mechanism: %s", s->ids.icid, user, mech);
		session_reply(s, RPL_AUTH_OK, NULL, NULL);
	} else {
		s->auth_failures++;
		maillog(LOG_INFO, &s->ids, "SMTP Auth: (ICID %" PRIu64 ") failed for user: %s "
		    "using AUTH mechanism: %s", s->ids.icid, user, mech);
		session_reply(s, RPL_AUTH_FAILED, NULL, user);
		if (s->auth_failures >= session_limits(s)->auth_failure_limit) {
			char d[32];
			snprintf(d, sizeof(d), "%u failures", s->auth_failures);
			session_reply(s, RPL_AUTH_FAIL_LIMIT, NULL, d);
		}
	}
	explicit_bzero(s->auth_user, sizeof(s->auth_user));
	s->auth_step = 0;
	if (s->state == S_CMD) {
		session_timer_arm(s->ev_command, session_limits(s)->command_timeout);
		io_resume(s->io);
		session_process(s);
	}
}

/*
 * Hand the credentials to the worker; the caller wipes them right after. logged is
 * the name the log shows; check is the name checked ("" can never succeed).
 */
static void
auth_check(struct smtp_session *s, const char *logged, const char *check, const char *pass)
{
	util_strlcpy(s->auth_user, logged, sizeof(s->auth_user));
	s->auth_check = auth_verify(s->srv->auth, check, pass, auth_done, s);
	if (s->auth_check == NULL) {
		s->state = S_CMD;
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		return;
	}
	s->state = S_AUTH_WAIT;
	session_timer_stop(s->ev_command);
	io_pause(s->io);
}

/* a bad response: the exchange is over (RFC 4954 4: 501) */
static void
auth_abort(struct smtp_session *s, enum smtp_reply_id id, const char *detail)
{
	explicit_bzero(s->auth_user, sizeof(s->auth_user));
	s->auth_step = 0;
	s->state = S_CMD;
	session_reply(s, id, NULL, detail);
}

static void
auth_plain(struct smtp_session *s, const unsigned char *msg, size_t len)
{
	char authzid[256], user[256], pass[256];

	if (smtp_sasl_plain(msg, len, authzid, sizeof(authzid), user, sizeof(user), pass,
	    sizeof(pass)) == -1) {
		auth_abort(s, RPL_AUTH_ARGS, "garbled PLAIN credentials");
		return;
	}
	/*
	 * No proxy authorization: an authzid must name the user itself. Anything else
	 * fails like a wrong password, after the same delay.
	 */
	s->auth_step = AUTH_PLAIN_RESPONSE;
	if (authzid[0] != '\0' && strcmp(authzid, user) != 0)
		auth_check(s, user, "", pass);
	else
		auth_check(s, user, user, pass);
	explicit_bzero(pass, sizeof(pass));
}

/* a decoded LOGIN field: text without NUL, as long as the buffers allow */
static bool
login_field(const unsigned char *p, int n, char *out, size_t cap)
{
	if (n <= 0 || (size_t)n >= cap || memchr(p, '\0', (size_t)n) != NULL)
		return false;
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
	return true;
}

void
smtp_auth_line(struct smtp_session *s, const char *line, size_t len)
{
	unsigned char buf[SMTP_SASL_LINE_MAX];
	char pass[256];
	int n;

	n = smtp_sasl_decode(line, len, buf, sizeof(buf));
	if (n == SMTP_SASL_CANCEL) {
		auth_abort(s, RPL_AUTH_CANCELLED, NULL);
		return;
	}
	if (n < 0) {
		auth_abort(s, RPL_AUTH_ARGS, "bad base64");
		return;
	}
	switch (s->auth_step) {
	case AUTH_PLAIN_RESPONSE:
		auth_plain(s, buf, (size_t)n);
		break;
	case AUTH_LOGIN_USER:
		if (!login_field(buf, n, s->auth_user, sizeof(s->auth_user))) {
			auth_abort(s, RPL_AUTH_ARGS, "bad LOGIN user name");
			break;
		}
		s->auth_step = AUTH_LOGIN_PASS;
		session_reply(s, RPL_AUTH_CHALLENGE, LOGIN_PASS_CHALLENGE, NULL);
		break;
	case AUTH_LOGIN_PASS:
		if (!login_field(buf, n, pass, sizeof(pass))) {
			auth_abort(s, RPL_AUTH_ARGS, "bad LOGIN password");
			break;
		}
		char user[sizeof(s->auth_user)];
		memcpy(user, s->auth_user, sizeof(user));
		auth_check(s, user, user, pass);
		explicit_bzero(pass, sizeof(pass));
		explicit_bzero(user, sizeof(user));
		break;
	default:
		auth_abort(s, RPL_AUTH_ARGS, NULL);
		break;
	}
	explicit_bzero(buf, sizeof(buf));
}

void
smtp_auth_cmd(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	const char *p = cl->arg.p, *sp;
	size_t len = cl->arg.len, mlen;

	if (s->pol->auth == MODE_OFF) {
		session_reply(s, RPL_AUTH_NOT_AVAILABLE, NULL, NULL);
		return;
	}
	if (s->authenticated) {
		session_reply(s, RPL_AUTH_ALREADY, NULL, NULL);
		return;
	}
	if (s->tx != NULL) {
		session_reply(s, RPL_AUTH_IN_TX, NULL, NULL);
		return;
	}
	/* credentials never cross the wire in the clear when the policy says so */
	if (s->pol->auth_requires_tls && !io_tls_active(s->io)) {
		session_reply(s, RPL_ENCRYPTION_REQUIRED, NULL, NULL);
		return;
	}
	/* "AUTH mechanism [initial-response]": one or two words, one space between */
	sp = memchr(p, ' ', len);
	mlen = sp ? (size_t)(sp - p) : len;
	if (len == 0 || mlen == 0 || (sp && (sp + 1 == p + len ||
	    memchr(sp + 1, ' ', len - mlen - 1) != NULL))) {
		session_reply(s, RPL_AUTH_ARGS, NULL, "AUTH needs a mechanism and at most one "
		    "initial response");
		return;
	}
	if (util_span_ieq(p, mlen, MECH_PLAIN)) {
		s->state = S_AUTH;
		if (sp == NULL) {
			s->auth_step = AUTH_PLAIN_RESPONSE;
			session_reply(s, RPL_AUTH_CHALLENGE, "", NULL);
			return;
		}
		s->auth_step = AUTH_PLAIN_RESPONSE;
		smtp_auth_line(s, sp + 1, len - mlen - 1);
	} else if (util_span_ieq(p, mlen, MECH_LOGIN)) {
		s->state = S_AUTH;
		if (sp == NULL) {
			s->auth_step = AUTH_LOGIN_USER;
			session_reply(s, RPL_AUTH_CHALLENGE, LOGIN_USER_CHALLENGE, NULL);
			return;
		}
		/* RFC 4954 4: LOGIN with an initial response carries the user name */
		s->auth_step = AUTH_LOGIN_USER;
		smtp_auth_line(s, sp + 1, len - mlen - 1);
	} else {
		session_reply_echo(s, RPL_AUTH_MECH, p, mlen);
	}
}

void
smtp_auth_forget(struct smtp_session *s)
{
	if (s->auth_check != NULL)
		auth_cancel(s->auth_check);
	s->auth_check = NULL;
	explicit_bzero(s->auth_user, sizeof(s->auth_user));
}
