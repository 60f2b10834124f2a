/*
 * ipmm_assemble.c: personalising one message of a mail merge (ipmm_assemble.h).
 * A byte-level state machine, so a name split across two reads of the job (or
 * across two parts) is found all the same.
 */
#include "ipmm_assemble.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define ASSEMBLE_BUF	(64 * 1024)

void
ipmm_subst_init(struct ipmm_subst *s, const struct ipmm_rcpt *r, const char *to,
    const char *from, const char *date, ipmm_sink_fn sink, void *arg)
{
	memset(s, 0, sizeof(*s));
	s->rcpt = r;
	s->to = to;
	s->from = from;
	s->date = date;
	s->sink = sink;
	s->arg = arg;
}

static int
emit(struct ipmm_subst *s, const char *p, size_t n)
{
	if (s->failed)
		return -1;
	if (n > 0 && s->sink(s->arg, p, n) == -1) {
		s->failed = true;
		return -1;
	}
	return 0;
}

/* "&name;" complete: its value, or the text as it was */
static int
resolve(struct ipmm_subst *s)
{
	const char *n = s->name + 1, *val = NULL;
	size_t len = s->name_len - 1, vlen = 0;
	const struct ipmm_var *v;

	if (len > 0 && n[0] == '*') {
		if (len == 3 && strncasecmp(n, "*TO", 3) == 0)
			val = s->to;
		else if (len == 5 && strncasecmp(n, "*FROM", 5) == 0)
			val = s->from;
		else if (len == 5 && strncasecmp(n, "*DATE", 5) == 0)
			val = s->date;
		if (val != NULL)
			vlen = strlen(val);
	} else if (s->rcpt != NULL && (v = ipmm_rcpt_var(s->rcpt, n, len)) != NULL) {
		val = v->val;
		vlen = v->val_len;
	}
	s->in_name = false;
	if (val == NULL) {
		if (emit(s, s->name, s->name_len) == -1 || emit(s, ";", 1) == -1)
			return -1;
		return 0;
	}
	return emit(s, val, vlen);
}

int
ipmm_subst_feed(struct ipmm_subst *s, const char *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (!s->in_name) {
			const char *amp = memchr(buf + i, '&', len - i);
			size_t run = amp ? (size_t)(amp - (buf + i)) : len - i;

			if (emit(s, buf + i, run) == -1)
				return -1;
			i += run;
			if (amp == NULL)
				break;
			s->in_name = true;
			s->name[0] = '&';
			s->name_len = 1;
			i++;
			continue;
		}
		unsigned char c = (unsigned char)buf[i];
		if (c == ';' && s->name_len > 1 && !(s->name_len == 2 && s->name[1] == '*')) {
			i++;
			if (resolve(s) == -1)
				return -1;
		} else if ((ipmm_name_char(c) || (c == '*' && s->name_len == 1)) &&
		    s->name_len < IPMM_NAME_MAX + 1) {
			s->name[s->name_len++] = (char)c;
			i++;
		} else {
			/* no name after all: what was held goes out; c is looked at again */
			s->in_name = false;
			if (emit(s, s->name, s->name_len) == -1)
				return -1;
		}
	}
	return s->failed ? -1 : 0;
}

int
ipmm_subst_end(struct ipmm_subst *s)
{
	if (s->in_name) {
		s->in_name = false;
		if (emit(s, s->name, s->name_len) == -1)
			return -1;
	}
	return s->failed ? -1 : 0;
}

static int
assemble_part(const struct ipmm_job *j, const struct ipmm_part *p, struct ipmm_subst *s,
    char *buf, char *err, size_t errlen)
{
	uint64_t done = 0;

	while (done < p->len) {
		size_t want = p->len - done < ASSEMBLE_BUF ? (size_t)(p->len - done) : ASSEMBLE_BUF;
		ssize_t n = pread(j->fd, buf, want, j->body + (off_t)(p->off + done));

		if (n <= 0) {
			snprintf(err, errlen, "reading part %" PRIu32 ": %s", p->n,
			    n == 0 ? "short file" : strerror(errno));
			return -1;
		}
		if (ipmm_subst_feed(s, buf, (size_t)n) == -1) {
			snprintf(err, errlen, "writing: %s", strerror(errno));
			return -1;
		}
		done += (uint64_t)n;
	}
	return 0;
}

int
ipmm_assemble(const struct ipmm_job *j, const struct ipmm_rcpt *r, const char *from,
    const char *date, ipmm_sink_fn sink, void *arg, char *err, size_t errlen)
{
	const struct ipmm_var *pv = NULL;
	struct ipmm_subst s;
	char *buf;
	int rc = -1;

	if ((buf = malloc(ASSEMBLE_BUF)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ipmm_subst_init(&s, r, r->addr, from, date, sink, arg);
	for (size_t i = 0; i < r->n_vars; i++)
		if (ipmm_is_parts_name(r->vars[i].key, r->vars[i].key_len))
			pv = &r->vars[i];
	if (pv != NULL) {
		/* validated at XDFN; parsed again, one number at a time, from the file */
		const char *v = pv->val, *e = pv->val + pv->val_len;
		while (v < e) {
			const char *c = memchr(v, ',', (size_t)(e - v));
			uint32_t n;
			size_t cnt;
			const struct ipmm_part *p;

			if (c == NULL)
				c = e;
			if (ipmm_parse_parts(v, (size_t)(c - v), &n, 1, &cnt) == -1 ||
			    (p = ipmm_job_part(j, n)) == NULL) {
				snprintf(err, errlen, "*PARTS names a part the job lacks");
				goto out;
			}
			if (assemble_part(j, p, &s, buf, err, errlen) == -1)
				goto out;
			v = c + 1;
		}
	} else {
		for (size_t i = 0; i < j->n_parts; i++)
			if (assemble_part(j, &j->parts[i], &s, buf, err, errlen) == -1)
				goto out;
	}
	if (ipmm_subst_end(&s) == -1) {
		snprintf(err, errlen, "writing: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}
