/*
 * fuzz_spool_read: spool_entry_read(), the envelope reader of queue files
 * (`mailgate queue`, and the spool's count at start), on a file holding the
 * fuzzer's bytes. What it accepts must be what spool.c describes: a mid that
 * is not 0, a sender, printable strings, RIDs 0..n-1, the message starting
 * right after the blank line. The file lives in a private directory under
 * /dev/shm (or $TMPDIR), removed at exit.
 */
#include "fuzz.h"

#include <fcntl.h>
#include <unistd.h>

#include "spool.h"

static char dir[256], path[300];

static void
cleanup(void)
{
	fz_rmtree(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/mailgate-fuzz-XXXXXX", base);
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/1", dir);
	atexit(cleanup);
	return 0;
}

static bool
printable(const char *s)
{
	if (s == NULL)
		return true;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_entry e;
	char err[256];
	size_t off = 0;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1)
		abort();
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	close(fd);

	err[0] = '\0';
	if (spool_entry_read(path, &e, err, sizeof(err)) == -1) {
		FUZZ_CHECK(err[0] != '\0', "refused without a reason");
		FUZZ_CHECK(e.listener == NULL && e.sender == NULL && e.rcpts == NULL &&
		    e.path == NULL, "a refused entry holds memory");
		return 0;
	}
	FUZZ_CHECK(e.mid != 0 && e.sender != NULL, "mid %llu sender %p",
	    (unsigned long long)e.mid, (void *)e.sender);
	FUZZ_CHECK(e.data_offset > 0 && (size_t)e.data_offset <= size &&
	    e.size == size - (size_t)e.data_offset, "offset %ld size %llu of %zu",
	    e.data_offset, (unsigned long long)e.size, size);
	/* the envelope ends with an empty line: "\n\n" just before the message */
	FUZZ_CHECK(e.data_offset >= 2 && data[e.data_offset - 1] == '\n' &&
	    data[e.data_offset - 2] == '\n', "no blank line before the message");
	FUZZ_CHECK(memchr(data, '\0', (size_t)e.data_offset) == NULL, "NUL in the envelope");
	FUZZ_CHECK(printable(e.listener) && printable(e.client) && printable(e.helo) &&
	    printable(e.sender) && printable(e.body), "unprintable envelope string");
	for (size_t i = 0; i < e.n_rcpts; i++)
		FUZZ_CHECK(e.rcpts[i] != NULL && printable(e.rcpts[i]), "rcpt %zu", i);
	FUZZ_CHECK(strcmp(e.path, path) == 0, "path");
	spool_entry_free(&e);
	return 0;
}
