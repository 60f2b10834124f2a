/*
 * smtp_ipmm.c: the mail merge transaction of an inbound session (IronPort Mail
 * Merge): XMRG FROM starts it in place of MAIL FROM, XDFN sets variables for
 * the next RCPT, RCPT binds them, XPRT n sends part n through the same data
 * filter as DATA, and XPRT n LAST ends the job. The merge is a kind of
 * transaction (s->tx->mm != NULL), in the one command table and state machine.
 *
 * The job is written to the spool as it arrives (ipmm_job.h: recipients and
 * their variables, then the parts, then an index), so memory holds one
 * recipient's pending variables and the part table, whatever the number of
 * recipients. After the last part the job is committed like a message: the
 * final 250 comes only once it is durable, and then it is split
 * (ipmm_split.h) into one message per recipient.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "io.h"
#include "ipmm_job.h"
#include "ipmm_split.h"
#include "ipmm_syntax.h"
#include "server.h"
#include "smtp_session_int.h"
#include "spool.h"
#include "util.h"

#define PENDING_MAX	(64 * 1024)	/* one recipient's variables, as stored */
#define BITS		((IPMM_PART_MAX + 8) / 8)

struct ipmm_tx {
	char *pend;			/* "name=value\n" lines for the next RCPT */
	size_t pend_len, pend_cap;
	size_t pend_n;
	uint32_t *pend_parts;		/* the last *PARTS of the pending variables */
	size_t pend_n_parts;
	bool pend_has_parts;
	bool in_parts;			/* the first XPRT was taken */
	uint64_t body;			/* octets written after the envelope */
	uint64_t size;			/* part octets, for max_message_size */
	uint8_t sent[BITS];		/* parts received */
	uint8_t wanted[BITS];		/* parts some recipient's *PARTS names */
	struct ipmm_part *parts;
	size_t n_parts, cap_parts;
	uint32_t cur;			/* the part being received */
	bool cur_last;
	uint64_t cur_off;
};

static bool
bit(const uint8_t *b, uint32_t n)
{
	return (b[n / 8] >> (n % 8)) & 1;
}

static void
bit_set(uint8_t *b, uint32_t n)
{
	b[n / 8] |= (uint8_t)(1u << (n % 8));
}

void
smtp_ipmm_tx_free(struct ipmm_tx *mm)
{
	if (mm == NULL)
		return;
	free(mm->pend);
	free(mm->pend_parts);
	free(mm->parts);
	free(mm);
}

bool
smtp_ipmm_in_parts(const struct ipmm_tx *mm)
{
	return mm->in_parts;
}

/* job bytes into the spool file; -1 and the transaction is over with a 451 */
static int
job_write(struct smtp_session *s, const void *buf, size_t len)
{
	struct smtp_tx *tx = s->tx;

	if (spool_msg_write(tx->msg, buf, len) == -1) {
		char d[128];
		snprintf(d, sizeof(d), "spool write: %s", strerror(errno));
		maillog(LOG_WARNING, &s->ids, "MID %" PRIu64 " spool write failed: %s", tx->mid,
		    strerror(errno));
		smtp_tx_abort(s, "Receiving aborted: spool write failed");
		session_reply(s, RPL_SERVER_ERROR, NULL, d);
		return -1;
	}
	tx->mm->body += len;
	return 0;
}

/* the data filter's sink for a part: into the job, counted */
static int
part_sink(void *arg, const char *buf, size_t len)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	if (spool_msg_write(tx->msg, buf, len) == -1) {
		tx->write_errno = errno;
		return -1;
	}
	tx->mm->body += len;
	return 0;
}

void
smtp_ipmm_xmrg(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	struct spool_envelope env;
	struct smtp_tx *tx;

	/* a server without the splitter (a test harness) could not finish the job */
	if (s->srv->ipmm == NULL) {
		session_reply(s, RPL_SERVER_ERROR, NULL, "mail merge splitter not running");
		return;
	}
	if (!smtp_tx_begin(s, cl, true))
		return;
	tx = s->tx;
	if ((tx->mm = calloc(1, sizeof(*tx->mm))) == NULL) {
		smtp_tx_abort(s, "Receiving aborted: out of memory");
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		return;
	}
	/* the job goes to the spool as it comes: no recipient list in the envelope */
	memset(&env, 0, sizeof(env));
	env.mid = tx->mid;
	env.arrival = time(NULL);
	env.icid = s->ids.icid;
	env.listener = s->lc->name;
	env.client = s->addr;
	env.helo = s->helo;
	env.sender = tx->sender;
	env.body = tx->body;
	env.kind = IPMM_JOB_KIND;
	if ((tx->msg = spool_msg_begin(s->srv->spool, &env)) == NULL) {
		char d[128];
		snprintf(d, sizeof(d), "spool: %s", strerror(errno));
		maillog(LOG_WARNING, &s->ids, "MID %" PRIu64 " spool write failed: %s", tx->mid,
		    strerror(errno));
		smtp_tx_abort(s, "Receiving aborted: spool write failed");
		session_reply(s, RPL_SERVER_ERROR, NULL, d);
		return;
	}
	if (job_write(s, IPMM_JOB_MAGIC, sizeof(IPMM_JOB_MAGIC) - 1) == -1)
		return;
	session_reply(s, RPL_MERGE_OK, NULL, NULL);
}

void
smtp_ipmm_ackrcpt(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	if (util_span_ieq(cl->arg.p, cl->arg.len, "ON"))
		s->ackrcpt_off = false;
	else if (util_span_ieq(cl->arg.p, cl->arg.len, "OFF"))
		s->ackrcpt_off = true;
	else {
		session_reply_echo(s, RPL_UNKNOWN_VALUE, cl->arg.p, cl->arg.len);
		return;
	}
	session_reply(s, RPL_MERGE_OK, NULL, NULL);
}

static bool
pend_add(struct ipmm_tx *mm, const struct ipmm_var *v)
{
	size_t need = v->key_len + 1 + v->val_len + 1;

	if (mm->pend_len + need > PENDING_MAX)
		return false;
	if (mm->pend_len + need > mm->pend_cap) {
		size_t cap = mm->pend_cap ? mm->pend_cap : 1024;
		char *g;
		while (cap < mm->pend_len + need)
			cap *= 2;
		if ((g = realloc(mm->pend, cap)) == NULL)
			return false;
		mm->pend = g;
		mm->pend_cap = cap;
	}
	memcpy(mm->pend + mm->pend_len, v->key, v->key_len);
	mm->pend[mm->pend_len + v->key_len] = '=';
	memcpy(mm->pend + mm->pend_len + v->key_len + 1, v->val, v->val_len);
	mm->pend[mm->pend_len + need - 1] = '\n';
	mm->pend_len += need;
	mm->pend_n++;
	return true;
}

void
smtp_ipmm_xdfn(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	static const enum smtp_reply_id map[] = {
		[IPMM_XDFN_SYNTAX] = RPL_XDFN_SYNTAX,
		[IPMM_XDFN_NO_VALUE] = RPL_XDFN_NO_VALUE,
		[IPMM_XDFN_RESERVED] = RPL_RESERVED_VAR,
		[IPMM_XDFN_PARTS] = RPL_PARTS_SYNTAX,
		[IPMM_XDFN_NUL] = RPL_XDFN_NUL,
	};
	struct ipmm_var *vars;
	struct ipmm_tx *mm;
	enum ipmm_xdfn_result r;
	char *buf;
	size_t n;

	/* a NUL is refused whatever else is wrong (replies.md) */
	if (memchr(cl->arg.p, '\0', cl->arg.len) != NULL) {
		session_reply(s, RPL_XDFN_NUL, NULL, NULL);
		return;
	}
	if (s->tx == NULL || (mm = s->tx->mm) == NULL) {
		session_reply(s, RPL_NOT_IN_MERGE, NULL, NULL);
		return;
	}
	if (mm->in_parts) {
		session_reply(s, RPL_RECEIVING_PARTS, NULL, NULL);
		return;
	}
	vars = malloc(IPMM_VARS_MAX * sizeof(*vars));
	buf = malloc(cl->arg.len + 1);
	if (vars == NULL || buf == NULL) {
		free(vars);
		free(buf);
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		return;
	}
	r = ipmm_parse_xdfn(cl->arg.p, cl->arg.len, buf, vars, IPMM_VARS_MAX, &n);
	if (r != IPMM_XDFN_OK) {
		char esc[128];
		util_escape(esc, sizeof(esc), cl->arg.p, cl->arg.len < 40 ? cl->arg.len : 40);
		session_reply(s, map[r], NULL, esc);
		goto out;
	}
	/* a line is taken whole or not at all */
	size_t need = mm->pend_len;
	for (size_t i = 0; i < n; i++)
		need += vars[i].key_len + vars[i].val_len + 2;
	if (need > PENDING_MAX) {
		session_reply(s, RPL_XDFN_SYNTAX, NULL, "variables for one recipient past 64 KiB");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!pend_add(mm, &vars[i])) {
			smtp_tx_abort(s, "Receiving aborted: out of memory");
			session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
			goto out;
		}
		if (ipmm_is_parts_name(vars[i].key, vars[i].key_len)) {
			/* the last *PARTS wins, as the assembly reads it */
			uint32_t *p = realloc(mm->pend_parts, (vars[i].val_len / 2 + 1) * sizeof(*p));
			if (p == NULL) {
				smtp_tx_abort(s, "Receiving aborted: out of memory");
				session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
				goto out;
			}
			mm->pend_parts = p;
			(void)ipmm_parse_parts(vars[i].val, vars[i].val_len, p, vars[i].val_len / 2 + 1,
			    &mm->pend_n_parts);
			mm->pend_has_parts = true;
		}
	}
	session_reply(s, RPL_MERGE_OK, NULL, NULL);
out:
	free(vars);
	free(buf);
}

void
smtp_ipmm_rcpt_done(struct smtp_session *s)
{
	struct ipmm_tx *mm = s->tx != NULL ? s->tx->mm : NULL;

	if (mm == NULL)
		return;
	mm->pend_len = 0;
	mm->pend_n = 0;
	mm->pend_n_parts = 0;
	mm->pend_has_parts = false;
}

bool
smtp_ipmm_bind(struct smtp_session *s, const char *addr)
{
	struct smtp_tx *tx = s->tx;
	struct ipmm_tx *mm = tx->mm;
	char head[SMTP_PATH_MAX + 64];
	int n;

	n = snprintf(head, sizeof(head), "rcpt %zu %zu <%s>\n", tx->n_rcpts, mm->pend_n, addr);
	if (n < 0 || (size_t)n >= sizeof(head)) {
		session_reply(s, RPL_SYNTAX, addr, "address too long for the job");
		return false;
	}
	if (job_write(s, head, (size_t)n) == -1 || job_write(s, mm->pend, mm->pend_len) == -1)
		return false;
	for (size_t i = 0; i < mm->pend_n_parts; i++)
		bit_set(mm->wanted, mm->pend_parts[i]);
	tx->n_rcpts++;
	return true;
}

void
smtp_ipmm_xprt(struct smtp_session *s, const struct smtp_cmdline *cl)
{
	struct smtp_tx *tx = s->tx;
	struct ipmm_tx *mm;
	struct data_limits dl;
	const char *bad;
	size_t bad_len;
	uint32_t part;
	bool last;
	char head[32], num[16];

	if (tx == NULL) {
		session_reply(s, RPL_NOT_IN_MERGE, NULL, NULL);
		return;
	}
	if ((mm = tx->mm) == NULL) {
		session_reply(s, RPL_XPRT_IN_PLAIN, NULL, NULL);
		return;
	}
	switch (ipmm_parse_xprt(cl->arg.p, cl->arg.len, &part, &last, &bad, &bad_len)) {
	case IPMM_XPRT_NUMBER:
		session_reply_echo(s, RPL_PART_NUMBER, cl->arg.p, cl->arg.len);
		return;
	case IPMM_XPRT_OPTION:
		session_reply_echo(s, RPL_UNKNOWN_OPTION, bad, bad_len);
		return;
	case IPMM_XPRT_OK:
		break;
	}
	if (bit(mm->sent, part)) {
		snprintf(num, sizeof(num), "%" PRIu32, part);
		session_reply(s, RPL_PART_NUMBER_DUP, num, "part already sent");
		return;
	}
	if (tx->n_rcpts == 0) {
		session_reply(s, RPL_RCPT_FIRST, NULL, NULL);
		return;
	}
	if (last) {
		for (uint32_t i = 1; i <= IPMM_PART_MAX; i++)
			if (bit(mm->wanted, i) && !bit(mm->sent, i) && i != part) {
				char d[64];
				snprintf(d, sizeof(d), "part %" PRIu32 " never sent", i);
				session_reply(s, RPL_PARTS_MISSING, NULL, d);
				return;
			}
	}
	if (mm->n_parts == mm->cap_parts) {
		size_t cap = mm->cap_parts ? mm->cap_parts * 2 : 8;
		struct ipmm_part *p = reallocarray(mm->parts, cap, sizeof(*p));
		if (p == NULL) {
			session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
			return;
		}
		mm->parts = p;
		mm->cap_parts = cap;
	}
	/* as DATA: XPRT ends a pipelined group; text before the 354 is an early talker */
	if (io_pending(s->io) > 0) {
		smtp_tx_abort(s, "Receiving aborted: message text before the 354");
		session_reply(s, RPL_SYNC_ERROR, NULL, "part text before the 354");
		return;
	}
	snprintf(head, sizeof(head), "part %" PRIu32 "\n", part);
	if (job_write(s, head, strlen(head)) == -1)
		return;
	mm->in_parts = true;
	mm->cur = part;
	mm->cur_last = last;
	mm->cur_off = mm->body;
	/* the same filter and limits as DATA; the size limit counts every part so far */
	dl.max_size = 0;
	if (s->pol->max_message_size > 0)
		dl.max_size = mm->size < s->pol->max_message_size ?
		    s->pol->max_message_size - mm->size : 1;
	dl.max_header_lines = session_limits(s)->max_header_lines;
	data_filter_init(&tx->df, &dl, part_sink, s);
	s->state = S_DATA;
	session_reply(s, RPL_PART_GO, NULL, NULL);
}

/* the job is durable (or not): the session, if still there, hears it like a message */
static void
job_committed(void *arg, int err)
{
	struct smtp_session *s = arg;

	s->job_commit = NULL;
	smtp_tx_commit_done(s, err);
}

void
smtp_ipmm_part_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct ipmm_tx *mm = tx->mm;
	struct data_filter *df = &tx->df;
	enum smtp_reply_id fail;
	char d[128] = "", sender[SMTP_PATH_MAX * 4 + 1];
	struct ipmm_part *p;
	char *idx;
	int n;

	fail = smtp_tx_data_failure(s, d, sizeof(d));
	if (fail == RPL__COUNT && s->pol->max_message_size > 0 &&
	    mm->size + df->size > s->pol->max_message_size) {
		fail = RPL_MESSAGE_TOO_BIG;
		snprintf(d, sizeof(d), "limit %" PRIu64, s->pol->max_message_size);
	}
	if (fail != RPL__COUNT) {
		char why[160];
		snprintf(why, sizeof(why), "Receiving aborted: %s (part %" PRIu32 ")",
		    smtp_reply_def(fail)->why, mm->cur);
		smtp_tx_abort(s, why);
		s->state = S_CMD;
		session_reply(s, fail, NULL, d);
		if (s->state == S_CMD)
			session_after_message(s);
		return;
	}
	p = &mm->parts[mm->n_parts++];
	p->n = mm->cur;
	p->off = mm->cur_off;
	p->len = df->size;
	mm->size += df->size;
	bit_set(mm->sent, mm->cur);
	s->state = S_CMD;
	if (job_write(s, "\n", 1) == -1)
		return;
	if (!mm->cur_last) {
		session_reply(s, RPL_MERGE_OK, NULL, NULL);
		return;
	}
	/* the index, then the fixed-width last line that points at it */
	size_t cap = 64 + mm->n_parts * 64;
	if ((idx = malloc(cap)) == NULL ||
	    (n = ipmm_job_format_index(idx, cap, mm->parts, mm->n_parts, tx->n_rcpts,
	    mm->body)) < 0) {
		free(idx);
		smtp_tx_abort(s, "Receiving aborted: out of memory");
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		return;
	}
	if (job_write(s, idx, (size_t)n) == -1) {
		free(idx);
		return;
	}
	free(idx);
	util_escape(sender, sizeof(sender), tx->sender, strlen(tx->sender));
	maillog(LOG_INFO, &s->ids, "MID %" PRIu64 " ready %" PRIu64 " bytes from <%s> (mail "
	    "merge: %zu recipients, %zu parts)", tx->mid, mm->size, sender, tx->n_rcpts,
	    mm->n_parts);
	/* the 250 waits for the committer; the split starts once the job is durable */
	s->state = S_COMMIT;
	session_timer_stop(s->ev_command);
	io_pause(s->io);
	s->job_commit = ipmm_split_commit(s->srv->ipmm, tx->msg, tx->mid, job_committed, s);
	tx->msg = NULL;
	if (s->job_commit == NULL) {
		s->state = S_CMD;
		smtp_tx_abort(s, "Receiving aborted: out of memory");
		session_reply(s, RPL_TEMP_SYSTEM_ERROR, "12", "out of memory");
		io_resume(s->io);
	}
}
