/*
 * ipmm_job.c: the job file of a mail merge (format in ipmm_job.h). The writer
 * is the session (smtp_ipmm.c), which streams the job into the spool; this is
 * the trailer it ends with, and the reader the splitter uses. The reader
 * trusts nothing: every number is bounded by the file's size.
 */
#include "ipmm_job.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int
ipmm_job_format_index(char *buf, size_t cap, const struct ipmm_part *parts, size_t n_parts,
    uint64_t n_rcpts, uint64_t index_off)
{
	size_t o = 0;
	int w;

	w = snprintf(buf, cap, "index %zu %" PRIu64 "\n", n_parts, n_rcpts);
	if (w < 0 || (size_t)w >= cap)
		return -1;
	o = (size_t)w;
	for (size_t i = 0; i < n_parts; i++) {
		w = snprintf(buf + o, cap - o, "part %" PRIu32 " %" PRIu64 " %" PRIu64 "\n",
		    parts[i].n, parts[i].off, parts[i].len);
		if (w < 0 || (size_t)w >= cap - o)
			return -1;
		o += (size_t)w;
	}
	w = snprintf(buf + o, cap - o, "ipmm-end %020" PRIu64 "\n", index_off);
	if (w != IPMM_JOB_END_LEN || (size_t)w >= cap - o)
		return -1;
	return (int)(o + (size_t)w);
}

static int
parse_u64(const char *s, char **end, uint64_t *out)
{
	char *e;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno != 0)
		return -1;
	*out = v;
	*end = e;
	return 0;
}

static int
part_cmp(const void *a, const void *b)
{
	const struct ipmm_part *x = a, *y = b;

	return x->n < y->n ? -1 : x->n > y->n;
}

void
ipmm_job_close(struct ipmm_job *j)
{
	if (j->f != NULL)
		fclose(j->f);
	if (j->fd != -1)
		close(j->fd);
	free(j->parts);
	memset(j, 0, sizeof(*j));
	j->fd = -1;
}

int
ipmm_job_open(struct ipmm_job *j, const char *path, long body, uint64_t size, char *err,
    size_t errlen)
{
	char end[IPMM_JOB_END_LEN + 1], magic[sizeof(IPMM_JOB_MAGIC)], *line = NULL, *p;
	uint64_t index_off, np, v;
	size_t cap = 0;
	const char *why = "bad index";

	memset(j, 0, sizeof(*j));
	j->fd = -1;
	j->body = body;
	j->size = size;
	if (size < sizeof(IPMM_JOB_MAGIC) - 1 + IPMM_JOB_END_LEN) {
		snprintf(err, errlen, "job too short");
		return -1;
	}
	if ((j->fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    (j->f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s", strerror(errno));
		ipmm_job_close(j);
		return -1;
	}
	if (pread(j->fd, magic, sizeof(magic) - 1, body) != (ssize_t)sizeof(magic) - 1 ||
	    memcmp(magic, IPMM_JOB_MAGIC, sizeof(magic) - 1) != 0) {
		snprintf(err, errlen, "not a mail merge job");
		ipmm_job_close(j);
		return -1;
	}
	if (pread(j->fd, end, IPMM_JOB_END_LEN, body + (long)size - IPMM_JOB_END_LEN) !=
	    IPMM_JOB_END_LEN || memcmp(end, "ipmm-end ", 9) != 0 ||
	    end[IPMM_JOB_END_LEN - 1] != '\n') {
		snprintf(err, errlen, "job without its end line (incomplete)");
		ipmm_job_close(j);
		return -1;
	}
	end[IPMM_JOB_END_LEN - 1] = '\0';
	if (parse_u64(end + 9, &p, &index_off) == -1 || *p != '\0' ||
	    index_off >= size - IPMM_JOB_END_LEN)
		goto bad;
	if (fseeko(j->f, body + (off_t)index_off, SEEK_SET) == -1 ||
	    getline(&line, &cap, j->f) <= 0 || strncmp(line, "index ", 6) != 0 ||
	    parse_u64(line + 6, &p, &np) == -1 || *p != ' ' ||
	    parse_u64(p + 1, &p, &j->n_rcpts) == -1 || *p != '\n' || np > IPMM_PART_MAX)
		goto bad;
	if (np > 0 && (j->parts = calloc(np, sizeof(*j->parts))) == NULL) {
		why = "out of memory";
		goto bad;
	}
	for (uint64_t i = 0; i < np; i++) {
		struct ipmm_part *pt = &j->parts[i];

		if (getline(&line, &cap, j->f) <= 0 || strncmp(line, "part ", 5) != 0 ||
		    parse_u64(line + 5, &p, &v) == -1 || v == 0 || v > IPMM_PART_MAX || *p != ' ' ||
		    parse_u64(p + 1, &p, &pt->off) == -1 || *p != ' ' ||
		    parse_u64(p + 1, &p, &pt->len) == -1 || *p != '\n' ||
		    pt->off > index_off || pt->len > index_off - pt->off)
			goto bad;
		pt->n = (uint32_t)v;
		j->n_parts++;
	}
	qsort(j->parts, j->n_parts, sizeof(*j->parts), part_cmp);
	for (size_t i = 1; i < j->n_parts; i++)
		if (j->parts[i].n == j->parts[i - 1].n)
			goto bad;
	/* the recipients start after the magic line */
	if (fseeko(j->f, body + (off_t)sizeof(IPMM_JOB_MAGIC) - 1, SEEK_SET) == -1)
		goto bad;
	free(line);
	return 0;
bad:
	free(line);
	snprintf(err, errlen, "%s", why);
	ipmm_job_close(j);
	return -1;
}

const struct ipmm_part *
ipmm_job_part(const struct ipmm_job *j, uint32_t n)
{
	struct ipmm_part key = { .n = n };

	if (j->n_parts == 0)
		return NULL;
	return bsearch(&key, j->parts, j->n_parts, sizeof(key), part_cmp);
}

void
ipmm_rcpt_free(struct ipmm_rcpt *r)
{
	free(r->vars);
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

const struct ipmm_var *
ipmm_rcpt_var(const struct ipmm_rcpt *r, const char *name, size_t len)
{
	for (size_t i = r->n_vars; i-- > 0;) {
		const struct ipmm_var *v = &r->vars[i];
		if (v->key_len != len)
			continue;
		if (len > 0 && name[0] == '*' ? strncasecmp(v->key, name, len) == 0 :
		    memcmp(v->key, name, len) == 0)
			return v;
	}
	return NULL;
}

int
ipmm_job_next(struct ipmm_job *j, struct ipmm_rcpt *r, char *err, size_t errlen)
{
	char *line = NULL, *p, *a;
	size_t cap = 0, o = 0;
	ssize_t n;
	uint64_t rid, nv;
	const char *why = "bad recipient record";

	if (j->next_rid == j->n_rcpts)
		return 0;
	if ((n = getline(&line, &cap, j->f)) <= 0 || line[n - 1] != '\n' ||
	    strncmp(line, "rcpt ", 5) != 0 || parse_u64(line + 5, &p, &rid) == -1 ||
	    rid != j->next_rid || *p != ' ' || parse_u64(p + 1, &p, &nv) == -1 || *p != ' ' ||
	    nv > j->size)
		goto bad;
	a = p + 1;
	line[n - 1] = '\0';
	if (*a != '<' || strlen(a) < 2 || a[strlen(a) - 1] != '>' || strlen(a) - 2 >= sizeof(r->addr))
		goto bad;
	memcpy(r->addr, a + 1, strlen(a) - 2);
	r->addr[strlen(a) - 2] = '\0';
	r->rid = rid;
	r->n_vars = 0;
	r->buf_len = 0;
	if (nv > r->cap_vars) {
		struct ipmm_var *g = reallocarray(r->vars, nv, sizeof(*g));
		if (g == NULL) {
			why = "out of memory";
			goto bad;
		}
		r->vars = g;
		r->cap_vars = nv;
	}
	/* first every line into buf (it may move), then the pointers */
	for (uint64_t i = 0; i < nv; i++) {
		if ((n = getline(&line, &cap, j->f)) <= 0 || line[n - 1] != '\n' ||
		    (p = memchr(line, '=', (size_t)n)) == NULL || p == line)
			goto bad;
		if (r->buf_len + (size_t)n > r->buf_cap) {
			size_t nc = (r->buf_len + (size_t)n) * 2;
			char *g = realloc(r->buf, nc);
			if (g == NULL) {
				why = "out of memory";
				goto bad;
			}
			r->buf = g;
			r->buf_cap = nc;
		}
		memcpy(r->buf + r->buf_len, line, (size_t)n);
		r->buf_len += (size_t)n;
	}
	for (uint64_t i = 0; i < nv; i++) {
		char *s = r->buf + o, *nl = memchr(s, '\n', r->buf_len - o), *eq = memchr(s, '=',
		    (size_t)(nl - s));
		r->vars[i].key = s;
		r->vars[i].key_len = (size_t)(eq - s);
		r->vars[i].val = eq + 1;
		r->vars[i].val_len = (size_t)(nl - eq - 1);
		o = (size_t)(nl - r->buf) + 1;
	}
	r->n_vars = nv;
	j->next_rid++;
	free(line);
	return 1;
bad:
	free(line);
	snprintf(err, errlen, "%s (RID %" PRIu64 ")", why, j->next_rid);
	return -1;
}
