/*
 * maillog.h: the mail log, one line per event, in the reference's mail_logs form
 * ("<ctime> Info: New SMTP ICID 5 ...") or as JSON objects with the IDs as fields.
 *
 * Each line goes out in one write() on an O_APPEND descriptor, so lines from the
 * event loop and the spool's thread never interleave. Text that came from a client
 * must be escaped by the caller with util_escape() before it is formatted here.
 */
#ifndef MAILGATE_MAILLOG_H
#define MAILGATE_MAILLOG_H

#include <stdint.h>

#include "config.h"

enum log_level { LOG_INFO, LOG_WARNING, LOG_CRITICAL };

/* the IDs a line is about; 0 (or -1 for rid) = not about one */
struct log_ids {
	uint64_t icid;
	uint64_t mid;
	int64_t rid;
	uint64_t dcid;
};

/* open the log named by the config ("-" = standard error); -1 with errno on failure */
int maillog_open(const char *file, enum log_format);
void maillog_close(void);

void maillog(enum log_level, const struct log_ids *, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
