/*
 * util — allocation wrappers and small string helpers shared by every module.
 *
 * Allocation failure is the one fatal error in relayd: the x* functions log
 * and abort rather than return NULL, so callers never check.
 */
#ifndef RELAYD_UTIL_H
#define RELAYD_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Growable byte buffer; always NUL-terminated after its len bytes. */
struct buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};
void buf_init(struct buf *b);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_addstr(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);	/* len = 0, keeps the memory */
void buf_free(struct buf *b);	/* releases the memory, buffer reusable after buf_init */

/* ASCII-only case-insensitive comparisons (no locale). */
int ascii_strcasecmp(const char *a, const char *b);
int ascii_strncasecmp(const char *a, const char *b, size_t n);
void ascii_lower(char *s);

/*
 * The length of the well-formed UTF-8 sequence of one non-ASCII character
 * at p (n octets there), or 0 if there is none: the table of RFC 3629
 * section 4, so no overlong form, no surrogate, nothing past U+10FFFF.
 * Its code point goes to *cp.
 */
bool has_8bit(const char *s, size_t n);	/* some octet >= 0x80 in s[0..n) */
size_t utf8_char(const unsigned char *p, size_t n, uint32_t *cp);

/*
 * OpenSSL's passphrase callback (pem_password_cb) for every key relayd
 * reads: its keys have none, and OpenSSL's own default would prompt on
 * the terminal, where relayd -n or relayd -d would wait for it.
 */
int no_passphrase(char *buf, int size, int rwflag, void *u);

/* Full-write helpers for blocking fds; return 0 or -1 with errno set.
 * pwritev_full may modify iov. */
struct iovec;
int write_full(int fd, const void *p, size_t n);
int pwrite_full(int fd, const void *p, size_t n, uint64_t off);
int pwritev_full(int fd, struct iovec *iov, int iovcnt, uint64_t off);

/* Wall clock in microseconds since the epoch. */
int64_t now_us(void);		/* CLOCK_REALTIME, microseconds */
int64_t mono_us(void);		/* CLOCK_MONOTONIC, microseconds */

/* RFC 5322 date, e.g. "Mon, 23 Nov 2026 10:00:00 +0000", into out (>= 40 bytes). */
void rfc5322_date(int64_t t_sec, char *out, size_t outlen);

#endif
