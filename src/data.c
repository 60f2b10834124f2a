/*
 * data.c: the DATA/XPRT byte stream, from the byte after the 354 to the end of
 * data (see data.h). Only <CRLF>.<CRLF> ends it (RFC 5321 4.1.1.4), and a line
 * starts only at the first byte or after CRLF, so the fake ends of SMTP
 * smuggling (CVE-2023-51764/-51765/-51766: <LF>.<LF>, <CR>.<CR>, <CRLF>.<LF>,
 * ...) are message text with their bare CR/LF flagged. A line that starts with
 * '.' loses it (4.5.2). All state lives in struct data_filter, so any split of
 * the input gives the same output and verdict. Body runs go through memchr();
 * only line starts and the header section go byte by byte. No allocation.
 */
#include "data.h"

#include <limits.h>
#include <string.h>

enum {
	D_BOL = 0,		/* at a line start: the first byte, or after CRLF */
	D_BOL_DOT,		/* "." at a line start, held back */
	D_BOL_DOT_CR,		/* ".<CR>" at a line start: the end if <LF> follows */
	D_HDR_BOL_CR,		/* <CR> at a header line start: the empty line if <LF> follows */
	D_TEXT,			/* inside a line, the last byte was no CR */
	D_CR,			/* inside a line, after a CR already passed on */
	D_DONE,
};

enum {
	CAP_NONE = 0,
	CAP_SUBJECT,
	CAP_MESSAGE_ID,
};

/* hdr_name_len at this value: the name of the current header line is known */
#define NAME_DONE	(sizeof(((struct data_filter *)0)->hdr_name))

void
data_filter_init(struct data_filter *f, const struct data_limits *lim, data_sink_fn sink,
    void *sink_arg)
{
	memset(f, 0, sizeof(*f));
	if (lim != NULL)
		f->lim = *lim;
	f->sink = sink;
	f->sink_arg = sink_arg;
	f->state = D_BOL;
	f->in_header = true;
	f->hdr_capture = CAP_NONE;
	f->hdr_name_len = NAME_DONE;
}

static void
flush(struct data_filter *f)
{
	if (f->out_len > 0 && !f->sink_failed && f->sink != NULL &&
	    f->sink(f->sink_arg, f->out, f->out_len) < 0)
		f->sink_failed = true;
	f->out_len = 0;
}

static void
put(struct data_filter *f, const char *p, size_t n)
{
	while (n > 0 && !f->sink_failed) {
		size_t room;

		/* a long run skips the copy: same bytes, fewer calls */
		if (f->out_len == 0 && n >= sizeof(f->out)) {
			if (f->sink != NULL && f->sink(f->sink_arg, p, n) < 0)
				f->sink_failed = true;
			return;
		}
		room = sizeof(f->out) - f->out_len;
		if (room > n)
			room = n;
		memcpy(f->out + f->out_len, p, room);
		f->out_len += room;
		p += room;
		n -= room;
		if (f->out_len == sizeof(f->out))
			flush(f);
	}
}

/*
 * n unstuffed octets of the message. size counts them all, even past a limit
 * (it says how big the message was); the sink gets exactly the first
 * lim.max_size of them, so the output never depends on how the input was split.
 */
static void
emit(struct data_filter *f, const char *p, size_t n)
{
	uint64_t before = f->size;

	f->size += n;
	if (f->too_big)
		return;
	if (f->lim.max_size != 0 && f->size > f->lim.max_size) {
		f->too_big = true;
		n = (size_t)(f->lim.max_size - before);
	}
	if (n > 0 && !f->too_many_headers && !f->sink_failed)
		put(f, p, n);
}

static void
capture(struct data_filter *f, unsigned char c)
{
	char *dst = f->hdr_capture == CAP_SUBJECT ? f->subject : f->message_id;

	/* leading white space of the value is skipped, across folds too */
	if (f->cap_len == 0 && (c == ' ' || c == '\t'))
		return;
	if (f->cap_len >= DATA_CAPTURE_MAX)
		return;
	dst[f->cap_len++] = c == '\0' ? '?' : (char)c;
	dst[f->cap_len] = '\0';
}

static bool
name_is(const struct data_filter *f, const char *s)
{
	size_t i;

	if (strlen(s) != f->hdr_name_len)
		return false;
	for (i = 0; i < f->hdr_name_len; i++) {
		unsigned char c = (unsigned char)f->hdr_name[i];
		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		if (c != (unsigned char)s[i])
			return false;
	}
	return true;
}

/* a header line ends with its name: "Received:" counts (hops), two are captured */
static void
hdr_name_end(struct data_filter *f)
{
	if (name_is(f, "RECEIVED")) {
		if (f->received < UINT_MAX)
			f->received++;
	}
	else if (name_is(f, "SUBJECT") && !f->have_subject) {
		f->have_subject = true;
		f->hdr_capture = CAP_SUBJECT;
		f->cap_len = 0;
	} else if (name_is(f, "MESSAGE-ID") && !f->have_message_id) {
		f->have_message_id = true;
		f->hdr_capture = CAP_MESSAGE_ID;
		f->cap_len = 0;
	}
	f->hdr_name_len = NAME_DONE;
}

/* c is the first unstuffed byte of a header line that is not the empty line */
static void
hdr_line_begin(struct data_filter *f, unsigned char c)
{
	/* saturated: with no size limit a client could send 2^32 lines */
	if (f->header_lines < UINT_MAX)
		f->header_lines++;
	if (f->lim.max_header_lines != 0 && f->header_lines > f->lim.max_header_lines)
		f->too_many_headers = true;
	/* RFC 5322 2.2.3: a line starting with WSP continues the field above */
	if (c == ' ' || c == '\t')
		return;
	f->hdr_capture = CAP_NONE;
	f->hdr_name_len = 0;
}

/* one unstuffed byte of a header line's content (not the CRLF ending it) */
static void
hdr_content(struct data_filter *f, unsigned char c)
{
	if (f->hdr_name_len < NAME_DONE) {
		if (c == ':')
			hdr_name_end(f);
		else if (f->hdr_name_len < NAME_DONE - 1)
			f->hdr_name[f->hdr_name_len++] = (char)c;
		else
			f->hdr_name_len = NAME_DONE;	/* longer than any name we look for */
		return;
	}
	if (f->hdr_capture != CAP_NONE)
		capture(f, c);
}

/* header bytes the header logic has no use for: no name to read, nothing to capture */
static bool
hdr_passive(const struct data_filter *f)
{
	return f->hdr_name_len == NAME_DONE &&
	    (f->hdr_capture == CAP_NONE || f->cap_len >= DATA_CAPTURE_MAX);
}

/* one byte inside a line (state D_TEXT or D_CR) */
static void
text_byte(struct data_filter *f, unsigned char c)
{
	if (f->state == D_CR) {
		if (c == '\n') {
			emit(f, "\n", 1);
			f->state = D_BOL;
			if (f->in_header)
				f->hdr_name_len = NAME_DONE;
			return;
		}
		/* the CR passed on before was a bare one: content, not a line end */
		f->bare_cr = true;
		if (f->in_header)
			hdr_content(f, '\r');
		f->state = D_TEXT;
	}
	if (c == '\r') {
		emit(f, "\r", 1);
		f->state = D_CR;
		return;
	}
	if (c == '\n')
		f->bare_lf = true;
	emit(f, (const char *)&c, 1);
	if (f->in_header)
		hdr_content(f, c);
}

/* the byte-by-byte machine; true when c is the <LF> of the real end of data */
static bool
step(struct data_filter *f, unsigned char c)
{
	switch (f->state) {
	case D_BOL:
		if (c == '.') {
			f->state = D_BOL_DOT;
			return false;
		}
		if (f->in_header) {
			if (c == '\r') {
				f->state = D_HDR_BOL_CR;
				return false;
			}
			hdr_line_begin(f, c);
		}
		f->state = D_TEXT;
		break;
	case D_BOL_DOT:
		if (c == '\r') {
			f->state = D_BOL_DOT_CR;
			return false;
		}
		/* RFC 5321 4.5.2: the first dot of the line goes ("..x" is ".x") */
		if (f->in_header)
			hdr_line_begin(f, c);
		f->state = D_TEXT;
		break;
	case D_BOL_DOT_CR:
		if (c == '\n') {
			/* <CRLF>.<CRLF>: the only end of data (4.1.1.4) */
			f->state = D_DONE;
			f->done = true;
			return true;
		}
		/* ".<CR>x" (<CRLF>.<CR> of the smuggling attacks) is text: the dot goes, the CR stays */
		if (f->in_header)
			hdr_line_begin(f, '\r');
		emit(f, "\r", 1);
		f->state = D_CR;
		break;
	case D_HDR_BOL_CR:
		if (c == '\n') {
			/* the empty line ends the header section (RFC 5322 2.1) */
			emit(f, "\r\n", 2);
			f->in_header = false;
			f->hdr_capture = CAP_NONE;
			f->state = D_BOL;
			return false;
		}
		hdr_line_begin(f, '\r');
		emit(f, "\r", 1);
		f->state = D_CR;
		break;
	default:
		break;
	}
	text_byte(f, c);
	return false;
}

/*
 * Body text from state D_TEXT: everything up to a line that starts with '.',
 * or to the end of buf, in one emit(). Stops in D_BOL (before the dot, or at the
 * end after CRLF), in D_CR (a CR last) or in D_TEXT. Returns bytes consumed.
 */
static size_t
body_run(struct data_filter *f, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;

	for (;;) {
		const char *cr = memchr(p, '\r', (size_t)(end - p));
		const char *stop = cr != NULL ? cr : end;

		/* no CR before it in this run: every LF here is a bare one */
		if (!f->bare_lf && memchr(p, '\n', (size_t)(stop - p)) != NULL)
			f->bare_lf = true;
		if (cr == NULL) {
			p = end;
			f->state = D_TEXT;
			break;
		}
		if (cr + 1 == end) {
			p = end;
			f->state = D_CR;
			break;
		}
		if (cr[1] != '\n') {
			f->bare_cr = true;
			p = cr + 1;
			continue;
		}
		p = cr + 2;
		if (p == end || *p == '.') {
			f->state = D_BOL;
			break;
		}
	}
	emit(f, buf, (size_t)(p - buf));
	return (size_t)(p - buf);
}

/* header text the header logic ignores, up to the next CR (left for step()) */
static size_t
hdr_run(struct data_filter *f, const char *buf, size_t len)
{
	const char *cr = memchr(buf, '\r', len);
	size_t n = cr != NULL ? (size_t)(cr - buf) : len;

	if (!f->bare_lf && memchr(buf, '\n', n) != NULL)
		f->bare_lf = true;
	emit(f, buf, n);
	return n;
}

size_t
data_filter_feed(struct data_filter *f, const char *buf, size_t len)
{
	size_t i = 0;

	if (f->state == D_DONE)
		return 0;
	while (i < len) {
		if (!f->in_header &&
		    (f->state == D_TEXT || (f->state == D_BOL && buf[i] != '.'))) {
			f->state = D_TEXT;
			i += body_run(f, buf + i, len - i);
			continue;
		}
		if (f->in_header && f->state == D_TEXT && hdr_passive(f)) {
			i += hdr_run(f, buf + i, len - i);
			if (i == len)
				break;
		}
		if (step(f, (unsigned char)buf[i++])) {
			flush(f);
			return i;
		}
	}
	return i;
}
