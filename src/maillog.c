/*
 * maillog.c: writes the mail log (see maillog.h). A line is formatted whole in a
 * stack buffer and written with one write(): no stdio buffering to lose at a
 * crash, no interleaving between threads. Lines longer than the buffer are cut.
 */
#include "maillog.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int log_fd = STDERR_FILENO;
static enum log_format log_fmt = LOG_FORMAT_ESA;

static const char *const level_names[] = { "Info", "Warning", "Critical" };

int
maillog_open(const char *file, enum log_format fmt)
{
	int fd = STDERR_FILENO;

	if (strcmp(file, "-") != 0) {
		fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd == -1)
			return -1;
	}
	maillog_close();
	log_fd = fd;
	log_fmt = fmt;
	return 0;
}

void
maillog_close(void)
{
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
}

static void
write_line(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(log_fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;		/* nowhere to report a log failure */
		buf += w;
		len -= (size_t)w;
	}
}

static void
emit_json(enum log_level level, const struct log_ids *ids, const char *text)
{
	char ts[32];
	json_t *o = json_object();
	char *s;

	if (o == NULL)
		return;
	util_rfc3339(ts, sizeof(ts), time(NULL));
	json_object_set_new(o, "time", json_string(ts));
	json_object_set_new(o, "level", json_string(level_names[level]));
	if (ids != NULL) {
		if (ids->icid)
			json_object_set_new(o, "icid", json_integer((json_int_t)ids->icid));
		if (ids->mid)
			json_object_set_new(o, "mid", json_integer((json_int_t)ids->mid));
		if (ids->rid >= 0)
			json_object_set_new(o, "rid", json_integer((json_int_t)ids->rid));
		if (ids->dcid)
			json_object_set_new(o, "dcid", json_integer((json_int_t)ids->dcid));
	}
	/* the text is ASCII (client text arrives escaped), so it is valid UTF-8 */
	json_object_set_new(o, "text", json_string(text));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL)
		return;
	size_t n = strlen(s);
	s[n] = '\n';		/* json_dumps leaves room: replace the NUL */
	write_line(s, n + 1);
	free(s);
}

void
maillog(enum log_level level, const struct log_ids *ids, const char *fmt, ...)
{
	char text[2048], line[2200], ts[40];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (log_fmt == LOG_FORMAT_JSON) {
		emit_json(level, ids, text);
		return;
	}
	util_ctime(ts, sizeof(ts), time(NULL));
	n = snprintf(line, sizeof(line), "%s %s: %s\n", ts, level_names[level], text);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	write_line(line, (size_t)n);
}
