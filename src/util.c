/*
 * util — allocation wrappers and small string helpers.
 *
 * Allocation failure aborts: a relay that cannot allocate a few bytes cannot
 * do anything useful, and checking every allocation would hide the real
 * error handling (replies with enhanced status codes) in noise.
 */
#include "acconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void __attribute__((noreturn))
oom(size_t n)
{
	/* Logging may itself allocate; keep it to syslog + a fixed message. */
	syslog(LOG_MAIL | LOG_CRIT, "out of memory allocating %zu bytes", n);
	fprintf(stderr, "relayd: out of memory allocating %zu bytes\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		oom(nmemb * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom(n);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xvasprintf(const char *fmt, va_list ap)
{
	char *p;

	if (vasprintf(&p, fmt, ap) < 0)
		oom(strlen(fmt));
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

void
buf_init(struct buf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

static void
buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
buf_addstr(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->p);
	buf_init(b);
}

static int
ascii_tolower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

int
ascii_strncasecmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int ca = ascii_tolower((unsigned char)a[i]);
		int cb = ascii_tolower((unsigned char)b[i]);

		if (ca != cb)
			return ca - cb;
		if (ca == '\0')
			return 0;
	}
	return 0;
}

int
ascii_strcasecmp(const char *a, const char *b)
{
	return ascii_strncasecmp(a, b, (size_t)-1);
}

void
ascii_lower(char *s)
{
	for (; *s; s++)
		*s = (char)ascii_tolower((unsigned char)*s);
}

size_t
utf8_char(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char	 lo = 0x80, hi = 0xbf;
	size_t		 need, i;
	uint32_t	 v;

	if (n == 0 || p[0] < 0xc2 || p[0] > 0xf4)
		return 0;	/* ASCII, continuation, or C0/C1 overlong lead */
	if (p[0] < 0xe0) {
		need = 2;
		v = p[0] & 0x1f;
	} else if (p[0] < 0xf0) {
		need = 3;
		v = p[0] & 0x0f;
		if (p[0] == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (p[0] == 0xed)
			hi = 0x9f;	/* surrogates */
	} else {
		need = 4;
		v = p[0] & 0x07;
		if (p[0] == 0xf0)
			lo = 0x90;	/* overlong */
		else if (p[0] == 0xf4)
			hi = 0x8f;	/* above U+10FFFF */
	}
	if (n < need)
		return 0;
	for (i = 1; i < need; i++) {
		unsigned char c = p[i];

		if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xbf))
			return 0;
		v = (v << 6) | (c & 0x3f);
	}
	*cp = v;
	return need;
}

int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

int
write_full(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int
pwritev_full(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
	for (;;) {
		while (iovcnt > 0 && iov->iov_len == 0) {	/* nothing to write there */
			iov++;
			iovcnt--;
		}
		if (iovcnt == 0)
			break;
		ssize_t w = pwritev(fd, iov, iovcnt, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		off += (uint64_t)w;
		while (iovcnt > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int
pwrite_full(int fd, const void *p, size_t n, uint64_t off)
{
	struct iovec iov = { (void *)(uintptr_t)p, n };

	return pwritev_full(fd, &iov, 1, off);
}

int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool
has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
rfc5322_date(int64_t t_sec, char *out, size_t outlen)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)t_sec;
	struct tm tm;
	long off;
	char sign = '+';

	/* Local time with its numeric offset, as MTAs conventionally write it;
	 * names are fixed English per RFC 5322, independent of the locale. */
	localtime_r(&t, &tm);
	off = tm.tm_gmtoff / 60;
	if (off < 0) {
		sign = '-';
		off = -off;
	}
	snprintf(out, outlen, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday], tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
}
