/*
 * fuzz.h: what every libFuzzer target in fuzz/ shares: the entry points'
 * prototypes (the build has -Wmissing-prototypes), a small reader that takes
 * typed values off the front of the fuzzer's bytes, and FUZZ_CHECK(), which
 * aborts (a crash libFuzzer records, with the input) when a property that
 * must hold does not.
 */
#ifndef MAILGATE_FUZZ_H
#define MAILGATE_FUZZ_H

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...) do {						\
	if (!(cond)) {								\
		fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__,	\
		    __LINE__, #cond);						\
		fprintf(stderr, "  " __VA_ARGS__);				\
		fputc('\n', stderr);						\
		abort();							\
	}									\
} while (0)

/* the fuzzer's bytes, eaten from the front; past the end every value is 0 */
struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t
fz_u8(struct fz *f)
{
	uint8_t v = 0;

	if (f->n > 0) {
		v = f->p[0];
		f->p++;
		f->n--;
	}
	return v;
}

static inline uint16_t
fz_u16(struct fz *f)
{
	uint16_t hi = fz_u8(f);

	return (uint16_t)(hi << 8 | fz_u8(f));
}

static inline uint64_t
fz_u64(struct fz *f)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | fz_u8(f);
	return v;
}

/* up to want bytes (fewer at the end); *len says how many */
static inline const uint8_t *
fz_bytes(struct fz *f, size_t want, size_t *len)
{
	const uint8_t *p = f->p;

	if (want > f->n)
		want = f->n;
	f->p += want;
	f->n -= want;
	*len = want;
	return p;
}

/* a byte-string of length given by the next byte (so fields are easy to mutate) */
static inline const uint8_t *
fz_lenbytes(struct fz *f, size_t *len)
{
	return fz_bytes(f, fz_u8(f), len);
}

/* a malloc'ed copy with a NUL after it (the input may hold NULs of its own) */
static inline char *
fz_strndup(const uint8_t *p, size_t len)
{
	char *s = malloc(len + 1);

	if (s == NULL)
		abort();
	if (len > 0)
		memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

static inline int
fz_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* remove a scratch directory and everything in it (at exit) */
static inline void
fz_rmtree(const char *dir)
{
	if (dir[0] != '\0')
		(void)nftw(dir, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
