/*
 * config_fields.h: private to config.c and config_print.c, never included
 * elsewhere. The field-table types, the tables config.c defines and
 * config_print.c walks, the accessors that reach a field inside its struct,
 * and the number formatter both use for sizes and durations.
 */
#ifndef MAILGATE_CONFIG_FIELDS_H
#define MAILGATE_CONFIG_FIELDS_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* enums are stored through an int; make sure they are one */
static_assert(sizeof(enum policy_action) == sizeof(int), "enum size");
static_assert(sizeof(enum offer_mode) == sizeof(int), "enum size");
static_assert(sizeof(enum bare_crlf_mode) == sizeof(int), "enum size");
static_assert(sizeof(enum log_format) == sizeof(int), "enum size");
static_assert(sizeof(enum rat_action) == sizeof(int), "enum size");

enum ftype {
	F_STR,		/* char *: non-empty, no control characters; no dflt = unset (NULL) */
	F_TEXT,		/* char *: printable ASCII, may be empty; it goes into replies */
	F_BOOL,		/* bool */
	F_INT,		/* int */
	F_UINT,		/* unsigned */
	F_U64,		/* uint64_t */
	F_SIZE,		/* uint64_t octets: 1048576 or "1M" */
	F_DURATION,	/* unsigned seconds: 300 or "5m" */
	F_ENUM,		/* an enum: the index of one of words[] */
	F_STRLIST,	/* char ** with its count at off_n; a string or an array of them */
	F_GROUP,	/* a nested group: sub, relative to base + off */
	F_SPECIAL,	/* parsed and printed by hand; listed for the unknown-name check */
};

struct field {
	const char *name;
	enum ftype type;
	size_t off;
	uint64_t min, max;			/* F_INT .. F_DURATION */
	const char *dflt;			/* the default, as config text without quotes */
	const char *const *words;		/* F_ENUM */
	const struct field *sub;		/* F_GROUP */
	size_t off_n;				/* F_STRLIST */
	int (*check)(const char *, char *, size_t);	/* F_STR, F_STRLIST elements */
	bool required;				/* no default: must be given */
};

typedef char **strv;

#define AT(base, f, T)	((T *)(void *)((char *)(base) + (f)->off))
#define CAT(base, f, T)	((const T *)(const void *)((const char *)(base) + (f)->off))
#define COUNT(base, f)	(*(size_t *)(void *)((char *)(base) + (f)->off_n))
#define CCOUNT(base, f)	(*(const size_t *)(const void *)((const char *)(base) + (f)->off_n))

/* the tables config_print.c needs; the group-only ones stay static in config.c */
extern const struct field config_root_fields[];
extern const struct field config_policy_fields[];
extern const struct field config_listener_fields[];
extern const struct field config_hat_fields[];
extern const struct field config_rat_fields[];
extern const struct field config_route_fields[];

/* v as text: sizes and durations in their largest exact unit ("10M"); true if a string */
bool config_fmt_number(char *buf, size_t cap, const struct field *f, uint64_t v);

#endif
