/*
 * util.c: shared helpers (see util.h). Nothing here allocates but util_mkdirs (a
 * copy of its path); the only system calls are util_write_all's writes,
 * util_rss_bytes' read of /proc and util_mkdirs' mkdir, open, fsync and close.
 */
#include "util.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UTIL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UTIL_ASAN 1
#endif
#ifdef UTIL_ASAN
/* the sanitizer runtime's public interface (sanitizer/allocator_interface.h, which
 * gcc does not install) */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

size_t
util_strlcpy(char *dst, const char *src, size_t cap)
{
	size_t n = strlen(src);

	if (cap > 0) {
		size_t c = n < cap - 1 ? n : cap - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

char *
util_escape(char *out, size_t cap, const char *in, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (cap == 0)
		return out;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 0x20 && c <= 0x7e && c != '\\') {
			if (o + 1 >= cap)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= cap)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

void
util_rfc5322_date(char *out, size_t cap, time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	if (strftime(out, cap, "%a, %d %b %Y %H:%M:%S %z", &tm) == 0 && cap > 0)
		out[0] = '\0';
}

void
util_rfc3339(char *out, size_t cap, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	if (strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && cap > 0)
		out[0] = '\0';
}

void
util_ctime(char *out, size_t cap, time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	if (strftime(out, cap, "%a %b %e %H:%M:%S %Y", &tm) == 0 && cap > 0)
		out[0] = '\0';
}

bool
util_span_ieq(const char *p, size_t len, const char *s)
{
	return strlen(s) == len && strncasecmp(p, s, len) == 0;
}

void
util_human_size(char *out, size_t cap, uint64_t n)
{
	static const char units[] = "KMGTP";
	double v = (double)n / 1024;
	int u = 0;

	if (n < 1024) {
		snprintf(out, cap, "%llu", (unsigned long long)n);
		return;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, cap, "%.1f%c", v, units[u]);
}

void
util_human_age(char *out, size_t cap, int64_t secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 60)
		snprintf(out, cap, "%llds", (long long)secs);
	else if (secs < 3600)
		snprintf(out, cap, "%lldm", (long long)(secs / 60));
	else if (secs < 86400)
		snprintf(out, cap, "%lldh", (long long)(secs / 3600));
	else
		snprintf(out, cap, "%lldd", (long long)(secs / 86400));
}

uint64_t
util_rss_bytes(void)
{
	char buf[128];
	unsigned long long size, resident;
	ssize_t n;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)	/* NOLINT(cert-err34-c): kernel text */
		return 0;
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

uint64_t
util_heap_bytes(void)
{
#ifdef UTIL_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();

	return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
#endif
}

int
util_write_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len > 0) {
		ssize_t n = write(fd, c, len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = ENOSPC;
			return -1;
		}
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

int
util_mkdirs(const char *path)
{
	char *p, *s, *slash, c;
	int fd, save;

	if (*path == '\0') {
		errno = ENOENT;
		return -1;
	}
	if ((p = strdup(path)) == NULL)
		return -1;
	for (s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		c = *s;
		*s = '\0';
		if (mkdir(p, 0700) == 0) {
			/* make it durable: its name lives in the parent */
			if ((slash = strrchr(p, '/')) == NULL)
				fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			else if (slash == p)
				fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			else {
				*slash = '\0';
				fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				*slash = '/';
			}
			if (fd != -1) {
				(void)fsync(fd);
				close(fd);
			}
		} else if (errno != EEXIST) {
			save = errno;
			free(p);
			errno = save;
			return -1;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return 0;
}
