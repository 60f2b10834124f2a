/*
 * data.h: the DATA (and XPRT) byte stream, from the first byte after the 354 to
 * the real end of data.
 *
 * Only <CRLF>.<CRLF> ends the data (RFC 5321 4.1.1.4; the SMTP smuggling fixes):
 * a dot line ended any other way is data, and a bare CR or LF is noted. Lines
 * starting with '.' lose that dot (4.5.2). The filter counts header lines and
 * Received: headers, measures the unstuffed size, captures Subject and
 * Message-ID for the log, and passes the unstuffed bytes to a sink until a
 * limit is hit; after that it keeps reading (and dropping) to the real end of
 * data, so nothing in an oversized message is ever read as a command.
 *
 * The filter is resumable at every byte: the same input gives the same output
 * and the same verdict however it is split into data_filter_feed() calls.
 */
#ifndef MAILGATE_DATA_H
#define MAILGATE_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DATA_CAPTURE_MAX 998			/* Subject / Message-ID kept for the log */

/* receives unstuffed message bytes; returns 0, or -1 to stop calling it (write failed) */
typedef int (*data_sink_fn)(void *arg, const char *buf, size_t len);

struct data_limits {
	uint64_t max_size;			/* unstuffed octets; 0 = no limit */
	unsigned max_header_lines;		/* 0 = no limit */
};

struct data_filter {
	/* set up by data_filter_init */
	struct data_limits lim;
	data_sink_fn sink;
	void *sink_arg;

	/* verdict, read after data_filter_feed() says done */
	bool done;				/* <CRLF>.<CRLF> seen */
	bool too_big;				/* size passed lim.max_size */
	bool too_many_headers;			/* header lines passed lim.max_header_lines */
	bool bare_cr;				/* a CR not followed by LF */
	bool bare_lf;				/* an LF not preceded by CR */
	bool sink_failed;			/* the sink returned -1 */
	uint64_t size;				/* unstuffed octets of the message */
	unsigned header_lines;
	unsigned received;			/* Received: header lines */
	char subject[DATA_CAPTURE_MAX + 1];	/* raw value (may hold any byte but NUL), unfolded */
	char message_id[DATA_CAPTURE_MAX + 1];
	bool have_subject, have_message_id;

	/* private parser state */
	int state;
	bool in_header;
	int hdr_capture;			/* which header is being captured, if any */
	char hdr_name[16];			/* the first bytes of the current header line */
	size_t hdr_name_len;
	size_t cap_len;
	char out[4096];				/* pending output for the sink */
	size_t out_len;
};

void data_filter_init(struct data_filter *, const struct data_limits *, data_sink_fn sink,
    void *sink_arg);

/*
 * Feed bytes that follow the 354. Returns how many were consumed: all of len,
 * or fewer when the end of data was found (the rest belongs to the next command).
 * Once done is set, further calls consume nothing.
 */
size_t data_filter_feed(struct data_filter *, const char *buf, size_t len);

#endif
