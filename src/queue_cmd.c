/*
 * queue_cmd.c: `mailgate queue list [--json]` and `mailgate queue show MID`
 * (see queue_cmd.h).
 *
 * Output is for people (aligned columns, human sizes and ages) or, with
 * --json, for programs: one JSON object per line and nothing else on stdout.
 * A recipient's state comes from the scheduler's record, state/<mid>: queued
 * (never tried), deferred, delivered, bounced, or held (not done, and the
 * message held). The record is append-only and a torn last line is ignored,
 * so reading it next to a running server is safe. Envelope and state text are
 * printable ASCII by the spool reader's rules, so nothing here can put a
 * control sequence on the operator's terminal. The actions (delete, bounce,
 * hold, release, deliver) are the server's: main sends them to control_cmd.c.
 */
#include "queue_cmd.h"
#include "spool.h"
#include "util.h"

#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static void
queue_usage(FILE *fp)
{
	fputs("usage: mailgate queue [-c FILE] list [--json]\n"
	    "       mailgate queue [-c FILE] show MID\n"
	    "       mailgate queue [-c FILE] delete|bounce|hold|release MID...\n"
	    "       mailgate queue [-c FILE] deliver [DOMAIN]\n"
	    "\n"
	    "list and show read the spool directly; the other actions need the\n"
	    "running server.\n", fp);
}

static bool
queue_is_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* ---- list ---- */

struct queue_row {
	char mid[24];
	char age[16];
	char size[16];
	char *sender;
	char *rcpts;
};

struct queue_list {
	const char *spooldir;
	bool json;
	time_t now;
	struct queue_row *rows;
	size_t n, cap;
	uint64_t total;
	int err;				/* ENOMEM, to stop the scan */
};

/* a recipient's state for the operator: "held" covers what is not done yet */
static const char *
queue_state(const struct spool_state *st, size_t i)
{
	enum spool_rcpt_state s = st->rcpts[i].state;

	if (st->held && s != SPOOL_RCPT_DELIVERED && s != SPOOL_RCPT_BOUNCED)
		return "held";
	return spool_rcpt_state_name(s);
}

/* the record of e; unreadable, it is said on stderr and everything shows queued */
static int
queue_state_load(const char *spooldir, const struct spool_entry *e, struct spool_state *st)
{
	char err[256];

	if (spool_state_read(spooldir, e->mid, e->n_rcpts, st, err, sizeof(err)) == 0)
		return 0;
	fprintf(stderr, "mailgate queue: MID %" PRIu64 ": %s\n", e->mid, err);
	memset(st, 0, sizeof(*st));
	if ((st->rcpts = calloc(e->n_rcpts > 0 ? e->n_rcpts : 1, sizeof(*st->rcpts))) == NULL)
		return ENOMEM;
	st->n_rcpts = e->n_rcpts;
	return 0;
}

/* "a@b (queued), c@d (deferred)" */
static char *
queue_rcpts_text(const struct spool_entry *e, const struct spool_state *st)
{
	size_t len = 1;
	char *s, *p;

	for (size_t i = 0; i < e->n_rcpts; i++)
		len += strlen(e->rcpts[i]) + strlen(queue_state(st, i)) + 5;
	if ((s = p = malloc(len)) == NULL)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < e->n_rcpts; i++)
		p += sprintf(p, "%s%s (%s)", i > 0 ? ", " : "", e->rcpts[i], queue_state(st, i));
	return s;
}

static int
queue_list_json(const struct spool_entry *e, const struct spool_state *st)
{
	char date[32];
	json_t *obj, *rcpts;

	if ((rcpts = json_array()) == NULL)
		return ENOMEM;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		json_t *r = json_pack("{s:I, s:s, s:s}", "rid", (json_int_t)i,
		    "address", e->rcpts[i], "state", queue_state(st, i));
		if (r == NULL || json_array_append_new(rcpts, r) == -1) {
			json_decref(rcpts);
			return ENOMEM;
		}
	}
	util_rfc3339(date, sizeof(date), e->arrival);
	/* "o" steals the reference to rcpts, even on failure */
	obj = json_pack("{s:I, s:s, s:I, s:s, s:o}", "mid", (json_int_t)e->mid,
	    "arrival", date, "size", (json_int_t)e->size, "sender", e->sender,
	    "recipients", rcpts);
	if (obj == NULL)
		return ENOMEM;
	json_dumpf(obj, stdout, JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(obj);
	return 0;
}

static int
queue_list_cb(const struct spool_entry *e, void *arg)
{
	struct queue_list *ql = arg;
	struct spool_state st;
	struct queue_row *row;

	ql->total += e->size;
	if ((ql->err = queue_state_load(ql->spooldir, e, &st)) != 0)
		return 1;
	if (ql->json) {
		ql->err = queue_list_json(e, &st);
		spool_state_free(&st);
		return ql->err != 0;
	}
	/* columns are as wide as their widest value: collect first */
	if (ql->n == ql->cap) {
		size_t cap = ql->cap == 0 ? 64 : ql->cap * 2;
		struct queue_row *rows = reallocarray(ql->rows, cap, sizeof(*rows));
		if (rows == NULL) {
			spool_state_free(&st);
			ql->err = ENOMEM;
			return 1;
		}
		ql->rows = rows;
		ql->cap = cap;
	}
	row = &ql->rows[ql->n];
	snprintf(row->mid, sizeof(row->mid), "%" PRIu64, e->mid);
	util_human_age(row->age, sizeof(row->age), (int64_t)(ql->now - e->arrival));
	util_human_size(row->size, sizeof(row->size), e->size);
	row->sender = strdup(e->sender[0] == '\0' ? "<>" : e->sender);
	row->rcpts = queue_rcpts_text(e, &st);
	spool_state_free(&st);
	if (row->sender == NULL || row->rcpts == NULL) {
		free(row->sender);
		free(row->rcpts);
		ql->err = ENOMEM;
		return 1;
	}
	ql->n++;
	return 0;
}

static int
queue_width(int w, const char *s)
{
	int len = (int)strlen(s);

	return len > w ? len : w;
}

static void
queue_list_print(const struct queue_list *ql)
{
	int wm = 3, wa = 3, ws = 4, wf = 6;	/* the headers' own widths */
	char total[16];

	for (size_t i = 0; i < ql->n; i++) {
		wm = queue_width(wm, ql->rows[i].mid);
		wa = queue_width(wa, ql->rows[i].age);
		ws = queue_width(ws, ql->rows[i].size);
		wf = queue_width(wf, ql->rows[i].sender);
	}
	printf("%-*s  %-*s  %-*s  %-*s  %s\n", wm, "MID", wa, "AGE", ws, "SIZE", wf, "SENDER",
	    "RECIPIENTS");
	for (size_t i = 0; i < ql->n; i++) {
		const struct queue_row *r = &ql->rows[i];
		printf("%-*s  %-*s  %-*s  %-*s  %s\n", wm, r->mid, wa, r->age, ws, r->size,
		    wf, r->sender, r->rcpts);
	}
	util_human_size(total, sizeof(total), ql->total);
	printf("%zu message%s, %s\n", ql->n, ql->n == 1 ? "" : "s", total);
}

static int
queue_list(int argc, char **argv, const char *spooldir)
{
	struct queue_list ql = { 0 };
	char err[512], name[64];
	int r, status = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			ql.json = true;
		else if (queue_is_help(argv[i])) {
			queue_usage(stdout);
			return 0;
		} else {
			util_escape(name, sizeof(name), argv[i], strlen(argv[i]));
			fprintf(stderr, "mailgate queue list: unknown option '%s'\n", name);
			queue_usage(stderr);
			return 2;
		}
	}
	ql.now = time(NULL);
	ql.spooldir = spooldir;
	r = spool_scan(spooldir, queue_list_cb, &ql, err, sizeof(err));
	if (r == -1) {
		fprintf(stderr, "mailgate queue list: %s\n", err);
		status = 2;
	} else if (ql.err != 0) {
		fprintf(stderr, "mailgate queue list: %s\n", strerror(ql.err));
		status = 2;
	} else if (!ql.json) {
		if (ql.n == 0)
			puts("queue is empty");
		else
			queue_list_print(&ql);
	}
	for (size_t i = 0; i < ql.n; i++) {
		free(ql.rows[i].sender);
		free(ql.rows[i].rcpts);
	}
	free(ql.rows);
	if (fflush(stdout) == EOF && status == 0) {
		fprintf(stderr, "mailgate queue list: stdout: %s\n", strerror(errno));
		status = 2;
	}
	return status;
}

/* ---- show ---- */

/* a positive decimal; leading zeros are harmless here, signs and spaces are not */
static bool
queue_parse_mid(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return v > 0;
}

/* the message after the envelope, byte for byte */
static int
queue_copy_message(const struct spool_entry *e)
{
	char buf[64 * 1024];
	size_t n;
	FILE *fp;
	int r = 0;

	if ((fp = fopen(e->path, "re")) == NULL)
		return -1;
	if (fseek(fp, e->data_offset, SEEK_SET) == -1) {
		fclose(fp);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
		if (fwrite(buf, 1, n, stdout) != n) {
			r = -1;
			break;
		}
	if (ferror(fp))
		r = -1;
	fclose(fp);
	return r;
}

/* one recipient: its state, attempts, next attempt and last error */
static void
queue_show_rcpt(const struct spool_entry *e, const struct spool_state *st, size_t i, time_t now)
{
	const struct spool_rcpt_status *r = &st->rcpts[i];
	char date[32], age[16];

	printf("%s%zu <%s> %s", i == 0 ? "Recipients: " : "            ", i, e->rcpts[i],
	    queue_state(st, i));
	if (r->attempts > 0)
		printf(", %u attempt%s", r->attempts, r->attempts == 1 ? "" : "s");
	if (r->state == SPOOL_RCPT_DEFERRED) {
		util_rfc3339(date, sizeof(date), r->when);
		if (r->when > now) {
			util_human_age(age, sizeof(age), (int64_t)(r->when - now));
			printf(", next %s (in %s)", date, age);
		} else
			printf(", next %s (due)", date);
	} else if (r->state != SPOOL_RCPT_QUEUED) {
		util_rfc3339(date, sizeof(date), r->when);
		printf(", %s", date);
	}
	putchar('\n');
	if (r->reason != NULL)
		printf("              %s: %s\n", r->state == SPOOL_RCPT_DELIVERED ? "reply" :
		    "last error", r->reason);
}

static void
queue_show_envelope(const struct spool_entry *e, const struct spool_state *st, time_t now)
{
	char date[32], age[16], size[16];

	util_rfc3339(date, sizeof(date), e->arrival);
	util_human_age(age, sizeof(age), (int64_t)(now - e->arrival));
	util_human_size(size, sizeof(size), e->size);
	printf("MID:        %" PRIu64 "\n", e->mid);
	printf("Arrival:    %s (%s ago)\n", date, age);
	printf("ICID:       %" PRIu64 "\n", e->icid);
	printf("Listener:   %s\n", e->listener != NULL ? e->listener : "");
	printf("Client:     %s\n", e->client != NULL ? e->client : "");
	printf("HELO:       %s\n", e->helo != NULL && e->helo[0] != '\0' ? e->helo : "(none)");
	printf("Sender:     <%s>\n", e->sender);
	printf("Body:       %s\n", e->body != NULL ? e->body : "(not given)");
	printf("Held:       %s\n", st->held ? "yes (queue release MID to deliver)" : "no");
	if (e->n_rcpts == 0)
		printf("Recipients: (none)\n");
	for (size_t i = 0; i < e->n_rcpts; i++)
		queue_show_rcpt(e, st, i, now);
	printf("Size:       %s (%" PRIu64 " octets)\n", size, e->size);
	printf("File:       %s\n", e->path);
	putchar('\n');
}

static int
queue_show(int argc, char **argv, const char *spooldir)
{
	struct spool_entry e;
	struct spool_state ss;
	struct stat st;
	uint64_t mid;
	char *path, err[512];
	int status = 0;

	if (argc == 2 && queue_is_help(argv[1])) {
		queue_usage(stdout);
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "mailgate queue show: needs exactly one MID\n");
		queue_usage(stderr);
		return 2;
	}
	if (!queue_parse_mid(argv[1], &mid)) {
		util_escape(err, sizeof(err), argv[1], strlen(argv[1]));
		fprintf(stderr, "mailgate queue show: '%s' is not a MID (a positive number)\n", err);
		queue_usage(stderr);
		return 2;
	}
	if (asprintf(&path, "%s/queue/%" PRIu64, spooldir, mid) == -1) {
		fprintf(stderr, "mailgate queue show: out of memory\n");
		return 2;
	}
	if (stat(path, &st) == -1 && errno == ENOENT) {
		fprintf(stderr, "mailgate queue show: no message %" PRIu64 " in the queue\n", mid);
		free(path);
		return 1;
	}
	if (spool_entry_read(path, &e, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailgate queue show: %s: %s\n", path, err);
		free(path);
		return 2;
	}
	free(path);
	if (e.mid != mid) {
		fprintf(stderr, "mailgate queue show: %s: envelope says MID %" PRIu64 "\n",
		    e.path, e.mid);
		spool_entry_free(&e);
		return 2;
	}
	if (queue_state_load(spooldir, &e, &ss) != 0) {
		fprintf(stderr, "mailgate queue show: out of memory\n");
		spool_entry_free(&e);
		return 2;
	}
	queue_show_envelope(&e, &ss, time(NULL));
	spool_state_free(&ss);
	if (queue_copy_message(&e) == -1) {
		fprintf(stderr, "mailgate queue show: %s: %s\n", e.path, strerror(errno));
		status = 2;
	}
	spool_entry_free(&e);
	if (fflush(stdout) == EOF && status == 0) {
		fprintf(stderr, "mailgate queue show: stdout: %s\n", strerror(errno));
		status = 2;
	}
	return status;
}

/* ---- dispatch ---- */

int
queue_cmd_main(int argc, char **argv, const char *spooldir)
{
	static const char *const need_server[] = {
		"delete", "bounce", "hold", "release", "deliver",
	};
	char name[64];

	if (argc < 1) {
		queue_usage(stderr);
		return 2;
	}
	if (queue_is_help(argv[0]) || strcmp(argv[0], "help") == 0) {
		queue_usage(stdout);
		return 0;
	}
	if (spooldir == NULL || spooldir[0] == '\0') {
		fprintf(stderr, "mailgate queue: no spool directory in the config\n");
		return 2;
	}
	if (strcmp(argv[0], "list") == 0)
		return queue_list(argc, argv, spooldir);
	if (strcmp(argv[0], "show") == 0)
		return queue_show(argc, argv, spooldir);
	for (size_t i = 0; i < ARRAY_LEN(need_server); i++)
		if (strcmp(argv[0], need_server[i]) == 0) {
			fprintf(stderr, "mailgate queue %s: the running server does this (through "
			    "its control socket, not the spool)\n", argv[0]);
			return 2;
		}
	util_escape(name, sizeof(name), argv[0], strlen(argv[0]));
	fprintf(stderr, "mailgate queue: unknown action '%s'\n", name);
	queue_usage(stderr);
	return 2;
}
