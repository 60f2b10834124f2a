/*
 * bounce_spool.c: a scheduler bounce becomes a queued DSN (see bounce_spool.h).
 * The DSN gets its own MID and the log line "MID <n> was generated for bounce of
 * MID <orig>". It is handed to the committer before the scheduler appends the
 * "bounced" lines, so a crash may repeat a DSN but never lose one. The original
 * header section is read from the queue file on the loop: it is at most 64 KiB
 * and was written moments ago (page cache).
 */
#include "bounce_spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounce.h"
#include "config.h"
#include "maillog.h"
#include "scheduler.h"
#include "server.h"
#include "spool.h"

static void
bounce_committed(void *arg, int err)
{
	uint64_t mid = (uint64_t)(uintptr_t)arg;

	if (err != 0)
		maillog(LOG_WARNING, NULL, "MID %" PRIu64 " (a bounce) could not be spooled: %s",
		    mid, strerror(err));
}

void
bounce_spool_hook(void *ctx, const struct sched_bounce *b)
{
	struct server *srv = ctx;
	struct bounce_rcpt *rcpts;
	struct bounce_info info;
	struct spool_envelope env;
	struct spool_msg *m;
	char (*diag)[600], *headers, *dsn = NULL;
	size_t hlen = 0, dlen = 0;
	const char *to[1];
	uint64_t mid;
	FILE *out;

	if (b->sender == NULL || b->sender[0] == '\0' || b->n_rcpts == 0)
		return;			/* never a DSN to the null sender (RFC 3464 / 5321 4.5.5) */
	rcpts = calloc(b->n_rcpts, sizeof(*rcpts));
	diag = calloc(b->n_rcpts, sizeof(*diag));
	if (rcpts == NULL || diag == NULL)
		goto fail;
	for (size_t i = 0; i < b->n_rcpts; i++) {
		const struct sched_bounce_rcpt *r = &b->rcpts[i];
		if (r->code > 0)
			snprintf(diag[i], sizeof(diag[i]), "smtp; %d %s", r->code, r->reply);
		else
			snprintf(diag[i], sizeof(diag[i]), "%s", r->reply);
		rcpts[i].address = r->address;
		rcpts[i].status = r->enhanced;
		rcpts[i].action = "failed";
		rcpts[i].diagnostic = diag[i];
		rcpts[i].last_attempt = r->last_attempt;
	}
	memset(&info, 0, sizeof(info));
	info.hostname = srv->cfg->hostname;
	info.orig_mid = b->mid;
	info.orig_sender = b->sender;
	info.arrival = b->arrival;
	info.rcpts = rcpts;
	info.n_rcpts = b->n_rcpts;
	headers = bounce_read_headers(b->path, b->data_offset, BOUNCE_HEADERS_MAX, &hlen);
	if ((out = open_memstream(&dsn, &dlen)) == NULL) {
		free(headers);
		goto fail;
	}
	if (bounce_write(out, &info, headers, headers ? hlen : 0) == -1) {
		fclose(out);
		free(headers);
		goto fail;
	}
	fclose(out);
	free(headers);

	if ((mid = spool_next_mid(srv->spool)) == 0)
		goto fail;
	memset(&env, 0, sizeof(env));
	to[0] = b->sender;
	env.mid = mid;
	env.arrival = time(NULL);
	env.listener = BOUNCE_SPOOL_LISTENER;
	env.client = "127.0.0.1";
	env.helo = srv->cfg->hostname;
	env.sender = "";
	env.rcpts = to;
	env.n_rcpts = 1;
	if ((m = spool_msg_begin(srv->spool, &env)) == NULL)
		goto fail;
	if (spool_msg_write(m, dsn, dlen) == -1) {
		spool_msg_abort(m);
		goto fail;
	}
	maillog(LOG_INFO, NULL, "MID %" PRIu64 " was generated for bounce of MID %" PRIu64, mid,
	    b->mid);
	spool_msg_commit(m, bounce_committed, (void *)(uintptr_t)mid);
	free(dsn);
	free(rcpts);
	free(diag);
	return;
fail:
	maillog(LOG_WARNING, NULL, "MID %" PRIu64 ": no bounce could be generated: %s", b->mid,
	    strerror(errno ? errno : ENOMEM));
	free(dsn);
	free(rcpts);
	free(diag);
}
