/*
 * smtp_client_reply.c: the server-reply parser of the outbound client (see
 * smtp_client_reply.h). One byte at a time through a small state machine, so a
 * reply split anywhere parses the same; the only memory is the text kept for
 * logs and bounces, with a fixed cap.
 *
 * Lenient where leniency cannot desynchronise us (a bare LF ends a line, a bare
 * CR is text), strict where it could: every line must start with three digits,
 * a continuation is only "ddd-", and all lines of a reply carry the same code.
 */
#include "smtp_client_reply.h"

#include <string.h>

#include "util.h"

enum {
	RS_D0,		/* the first digit of a line's code */
	RS_D1,
	RS_D2,
	RS_SEP,		/* '-', ' ' or the end of the line */
	RS_TEXT,
	RS_CR,		/* a CR: the end of the line if an LF follows */
	RS_DONE,
	RS_ERROR,
};

void
smtp_client_reply_init(struct smtp_client_reply *r)
{
	r->code = 0;
	r->enhanced[0] = '\0';
	r->n_lines = 0;
	r->truncated = false;
	r->state = RS_D0;
	r->last = false;
	r->line_code = 0;
	r->line_len = 0;
	r->text_len = 0;
	r->err = NULL;
	r->text[0] = '\0';
}

static void
reply_store(struct smtp_client_reply *r, char c)
{
	/* the texts are C strings: a NUL from the server must not cut them */
	if (c == '\0')
		c = '?';
	if (r->text_len < SMTP_CLIENT_REPLY_TEXT_MAX)
		r->text[r->text_len++] = c;
	else
		r->truncated = true;
}

/*
 * RFC 3463 / RFC 2034: "class.subject.detail" at the start of the text, the
 * class being the reply code's first digit, subject and detail of one to three
 * digits, then a space or the end. Anything else is ordinary text.
 */
static void
reply_enhanced(struct smtp_client_reply *r)
{
	const char *p = smtp_client_reply_line(r, 0);
	size_t i = 0, n;

	if (p[0] != '0' + r->code / 100 || p[1] != '.')
		return;
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (n = 0; n < 3 && p[i] >= '0' && p[i] <= '9'; n++)
			i++;
		if (n == 0)
			return;
		if (part == 0 && p[i++] != '.')
			return;
	}
	if (p[i] != '\0' && p[i] != ' ')
		return;
	memcpy(r->enhanced, p, i);
	r->enhanced[i] = '\0';
}

static enum smtp_client_reply_status
reply_fail(struct smtp_client_reply *r, const char *why)
{
	r->state = RS_ERROR;
	r->err = why;
	return SMTP_CLIENT_REPLY_ERROR;
}

/* a line is over: DONE if it was the last one */
static bool
reply_end_line(struct smtp_client_reply *r)
{
	/* room is reserved: one NUL per line beyond SMTP_CLIENT_REPLY_TEXT_MAX */
	r->text[r->text_len++] = '\0';
	r->n_lines++;
	if (!r->last) {
		r->state = RS_D0;
		return false;
	}
	reply_enhanced(r);
	r->state = RS_DONE;
	return true;
}

enum smtp_client_reply_status
smtp_client_reply_feed(struct smtp_client_reply *r, const char *buf, size_t len,
    size_t *used)
{
	size_t i;

	*used = 0;
	if (r->state == RS_DONE)
		return SMTP_CLIENT_REPLY_DONE;
	if (r->state == RS_ERROR)
		return SMTP_CLIENT_REPLY_ERROR;
	for (i = 0; i < len; i++) {
		char c = buf[i];

		*used = i;
		if (r->state == RS_D0) {
			if (r->n_lines == SMTP_CLIENT_REPLY_LINES_MAX)
				return reply_fail(r, "too many lines in one reply");
			r->line_off[r->n_lines] = (uint16_t)r->text_len;
			r->line_len = 0;
			r->line_code = 0;
		}
		if (++r->line_len > SMTP_CLIENT_REPLY_LINE_MAX)
			return reply_fail(r, "reply line too long");
		switch (r->state) {
		case RS_D0:
			/* RFC 5321 4.2.1: the first digit is 2, 3, 4 or 5 (1yz is unused) */
			if (c < '2' || c > '5')
				return reply_fail(r, "a reply line must start with a code 2xx-5xx");
			r->line_code = (c - '0') * 100;
			r->state = RS_D1;
			break;
		case RS_D1:
		case RS_D2:
			if (c < '0' || c > '9')
				return reply_fail(r, "a reply code has three digits");
			r->line_code += (c - '0') * (r->state == RS_D1 ? 10 : 1);
			if (r->state == RS_D2) {
				/* RFC 5321 4.2.1: every line of a multiline reply has the same code */
				if (r->n_lines > 0 && r->line_code != r->code)
					return reply_fail(r, "the lines of a reply have different codes");
				r->code = r->line_code;
			}
			r->state++;
			break;
		case RS_SEP:
			if (c == ' ' || c == '\r' || c == '\n')
				r->last = true;
			else if (c == '-')
				r->last = false;
			else
				return reply_fail(r, "no space or hyphen after the reply code");
			if (c == '\r')
				r->state = RS_CR;
			else if (c == '\n') {
				if (reply_end_line(r)) {
					*used = i + 1;
					return SMTP_CLIENT_REPLY_DONE;
				}
			} else
				r->state = RS_TEXT;
			break;
		case RS_TEXT:
			if (c == '\r')
				r->state = RS_CR;
			else if (c == '\n') {
				/* a bare LF: take it as the end of the line, the server meant it */
				if (reply_end_line(r)) {
					*used = i + 1;
					return SMTP_CLIENT_REPLY_DONE;
				}
			} else
				reply_store(r, c);
			break;
		case RS_CR:
			if (c == '\n') {
				if (reply_end_line(r)) {
					*used = i + 1;
					return SMTP_CLIENT_REPLY_DONE;
				}
				break;
			}
			/* the CR was bare: it is text, and so may this byte be */
			reply_store(r, '\r');
			if (c != '\r') {
				reply_store(r, c);
				r->state = RS_TEXT;
			}
			break;
		}
	}
	*used = len;
	return SMTP_CLIENT_REPLY_MORE;
}

const char *
smtp_client_reply_line(const struct smtp_client_reply *r, size_t i)
{
	if (i >= r->n_lines)
		return "";
	return r->text + r->line_off[i];
}

const char *
smtp_client_reply_error(const struct smtp_client_reply *r)
{
	return r->err != NULL ? r->err : "no error";
}

size_t
smtp_client_reply_join(const struct smtp_client_reply *r, char *out, size_t cap)
{
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < r->n_lines && n + 1 < cap; i++) {
		const char *t = smtp_client_reply_line(r, i);
		size_t len = strlen(t);

		if (i > 0)
			out[n++] = ' ';
		if (len > cap - 1 - n)
			len = cap - 1 - n;
		memcpy(out + n, t, len);
		n += len;
		out[n] = '\0';
	}
	return n;
}

/* "SIZE 10240000": the value, 0 when absent, malformed or beyond 64 bits */
static uint64_t
ext_size(const char *p)
{
	uint64_t v = 0;

	while (*p == ' ')
		p++;
	if (*p < '0' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	return *p == '\0' || *p == ' ' ? v : 0;
}

void
smtp_client_ext_parse(const struct smtp_client_reply *r, struct smtp_client_ext *e)
{
	memset(e, 0, sizeof(*e));
	/* the first line is the server's name and greeting, not a keyword */
	for (size_t i = 1; i < r->n_lines; i++) {
		const char *t = smtp_client_reply_line(r, i);
		size_t kw = strcspn(t, " ");

		if (util_span_ieq(t, kw, "PIPELINING"))
			e->pipelining = true;
		else if (util_span_ieq(t, kw, "STARTTLS"))
			e->starttls = true;
		else if (util_span_ieq(t, kw, "8BITMIME"))
			e->eightbitmime = true;
		else if (util_span_ieq(t, kw, "SIZE")) {
			e->size = true;
			e->size_max = ext_size(t + kw);
		} else if (util_span_ieq(t, kw, "ENHANCEDSTATUSCODES"))
			e->enhancedstatuscodes = true;
		else if (util_span_ieq(t, kw, "SMTPUTF8"))
			e->smtputf8 = true;
		else if (util_span_ieq(t, kw, "CHUNKING"))
			e->chunking = true;
		else if (util_span_ieq(t, kw, "DSN"))
			e->dsn = true;
	}
}
