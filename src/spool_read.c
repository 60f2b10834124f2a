/*
 * spool_read.c: the reader of queue files (see spool.h): one file's envelope
 * (spool_entry_read) and the walk of queue/ in MID order (spool_scan). The
 * format is described at the top of spool.c, which writes it.
 */
#include "spool_int.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- reading queue files ---- */

void
spool_entry_free(struct spool_entry *e)
{
	free(e->listener);
	free(e->client);
	free(e->helo);
	free(e->sender);
	free(e->body);
	free(e->kind);
	for (size_t i = 0; i < e->n_rcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free(e->path);
	memset(e, 0, sizeof(*e));
}

/* "2026-11-28T20:10:00Z", nothing more, nothing less */
static bool
spool_parse_time(const char *s, time_t *out)
{
	struct tm tm;
	int n = -1;

	memset(&tm, 0, sizeof(tm));
	if (strlen(s) != 20)
		return false;
	/* NOLINTNEXTLINE(cert-err34-c): every one of the 20 characters is checked below */
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 20)
		return false;
	for (int i = 0; i < 20; i++) {
		bool digit = s[i] >= '0' && s[i] <= '9';
		if ((i == 4 || i == 7 || i == 10 || i == 13 || i == 16 || i == 19) == digit)
			return false;
	}
	if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*out = timegm(&tm);
	return true;
}

/* "<...>": the address inside, a new string */
static char *
spool_angle(const char *v)
{
	size_t len = strlen(v);

	if (len < 2 || v[0] != '<' || v[len - 1] != '>') {
		errno = EINVAL;
		return NULL;
	}
	return strndup(v + 1, len - 2);
}

static int
spool_set_str(char **dst, const char *v, const char **why)
{
	if (*dst != NULL) {
		*why = "repeated key";
		return -1;
	}
	if ((*dst = strdup(v)) == NULL) {
		*why = "out of memory";
		return -1;
	}
	return 0;
}

/* envelope keys that must not repeat, and the two that must be there */
enum { K_MID = 1, K_ARRIVAL = 2, K_ICID = 4 };

/* one envelope line, without its LF; 0 if taken or ignored, -1 and why */
static int
spool_entry_line(struct spool_entry *e, char *line, unsigned *seen, const char **why)
{
	char *val, *addr;
	uint64_t v;

	if ((val = strchr(line, ' ')) != NULL)
		*val++ = '\0';

	if (strcmp(line, "mid") == 0) {
		if (val == NULL || (*seen & K_MID) || !spool_parse_mid(val, &e->mid))
			goto bad;
		*seen |= K_MID;
	} else if (strcmp(line, "arrival") == 0) {
		if (val == NULL || (*seen & K_ARRIVAL) || !spool_parse_time(val, &e->arrival))
			goto bad;
		*seen |= K_ARRIVAL;
	} else if (strcmp(line, "icid") == 0) {
		if (val == NULL || (*seen & K_ICID) || !spool_parse_u64(val, &e->icid))
			goto bad;
		*seen |= K_ICID;
	} else if (strcmp(line, "listener") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->listener, val, why);
	} else if (strcmp(line, "client") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->client, val, why);
	} else if (strcmp(line, "helo") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->helo, val, why);
	} else if (strcmp(line, "body") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->body, val, why);
	} else if (strcmp(line, "kind") == 0) {
		if (val == NULL)
			goto bad;
		return spool_set_str(&e->kind, val, why);
	} else if (strcmp(line, "sender") == 0) {
		if (val == NULL || e->sender != NULL || (e->sender = spool_angle(val)) == NULL)
			goto bad;
	} else if (strcmp(line, "rcpt") == 0) {
		/* "rcpt RID <addr>", RIDs from 0 in order */
		if (val == NULL || (addr = strchr(val, ' ')) == NULL)
			goto bad;
		*addr++ = '\0';
		if (!spool_parse_u64(val, &v) || v != e->n_rcpts)
			goto bad;
		char **r = reallocarray(e->rcpts, e->n_rcpts + 1, sizeof(*r));
		if (r == NULL) {
			*why = "out of memory";
			return -1;
		}
		e->rcpts = r;
		if ((r[e->n_rcpts] = spool_angle(addr)) == NULL)
			goto bad;
		e->n_rcpts++;
	}
	/* anything else: a key from a later version, ignored */
	return 0;
bad:
	*why = "bad value";
	return -1;
}

int
spool_entry_read(const char *path, struct spool_entry *e, char *err, size_t errlen)
{
	struct stat st;
	const char *why = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long off = 0;
	unsigned lineno = 0, seen = 0;
	FILE *f;

	memset(e, 0, sizeof(*e));
	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		fclose(f);
		return -1;
	}
	for (;;) {
		n = getline(&line, &cap, f);
		lineno++;
		if (n == -1) {
			why = ferror(f) ? strerror(errno) : "envelope ends without a blank line";
			break;
		}
		off += n;
		if (line[n - 1] != '\n') {
			why = "envelope ends without a blank line";
			break;
		}
		line[--n] = '\0';
		if (n > SPOOL_LINE_MAX || strlen(line) != (size_t)n || !spool_printable(line)) {
			why = "bad octet or overlong line in the envelope";
			break;
		}
		if (lineno == 1) {
			if (strcmp(line, SPOOL_MAGIC) != 0) {
				why = "not a mailgate spool file";
				break;
			}
			continue;
		}
		if (n == 0) {
			if ((seen & (K_MID | K_ARRIVAL)) != (K_MID | K_ARRIVAL) || e->sender == NULL)
				why = "envelope lacks mid, arrival or sender";
			break;
		}
		if (spool_entry_line(e, line, &seen, &why) == -1)
			break;
	}
	free(line);
	fclose(f);
	if (why != NULL) {
		snprintf(err, errlen, "line %u: %s", lineno, why);
		spool_entry_free(e);
		return -1;
	}
	e->data_offset = off;
	e->size = (uint64_t)st.st_size - (uint64_t)off;
	if ((e->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		spool_entry_free(e);
		return -1;
	}
	return 0;
}

int
spool_cmp_mid(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
spool_scan(const char *spooldir, int (*fn)(const struct spool_entry *, void *), void *arg,
    char *err, size_t errlen)
{
	struct spool_entry e;
	struct dirent *de;
	uint64_t *mids = NULL, *grown, mid;
	size_t n = 0, cap = 0;
	char why[256], *qdir, *path;
	int r = 0;
	DIR *d;

	if (asprintf(&qdir, "%s/queue", spooldir) == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((d = opendir(qdir)) == NULL) {
		int e0 = errno;
		free(qdir);
		if (e0 == ENOENT)
			return 0;		/* no queue yet: an empty one */
		snprintf(err, errlen, "%s/queue: %s", spooldir, strerror(e0));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (!spool_parse_mid(de->d_name, &mid))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			if ((grown = reallocarray(mids, cap, sizeof(*mids))) == NULL) {
				snprintf(err, errlen, "out of memory");
				r = -1;
				goto out;
			}
			mids = grown;
		}
		mids[n++] = mid;
	}
	if (n > 0)		/* mids is NULL for an empty queue/ */
		qsort(mids, n, sizeof(*mids), spool_cmp_mid);

	for (size_t i = 0; i < n && r == 0; i++) {
		if (asprintf(&path, "%s/%" PRIu64, qdir, mids[i]) == -1) {
			snprintf(err, errlen, "out of memory");
			r = -1;
			break;
		}
		if (spool_entry_read(path, &e, why, sizeof(why)) == -1) {
			/* gone since readdir (delivered): not worth a word */
			if (access(path, F_OK) == 0)
				fprintf(stderr, "mailgate: spool: %s: %s (skipped)\n", path, why);
		} else if (e.mid != mids[i]) {
			fprintf(stderr, "mailgate: spool: %s: envelope says MID %" PRIu64
			    " (skipped)\n", path, e.mid);
			spool_entry_free(&e);
		} else {
			r = fn(&e, arg);
			spool_entry_free(&e);
		}
		free(path);
	}
out:
	closedir(d);
	free(qdir);
	free(mids);
	return r;
}
