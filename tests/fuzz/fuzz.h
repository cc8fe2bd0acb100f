/*
 * fuzz.h — what the libFuzzer targets of tests/fuzz share: the check of a
 * property (a failed one aborts, so libFuzzer saves the input as a crash),
 * a reader that takes structure out of the input bytes, and the cutting of
 * input into chunks, for the parsers that promise the same result
 * whatever the chunking.
 *
 * Every target is one file fuzz_<name>.c defining LLVMFuzzerTestOneInput;
 * tests/fuzz/run builds and runs them (README: Testing).  A target reads
 * only its input and the files of its own temporary directory: the same
 * input always gives the same run.
 */
#ifndef RELAYD_FUZZ_H
#define RELAYD_FUZZ_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * Where a violated property is reported: the standard error the program
 * started with, kept before libFuzzer runs, so that tests/fuzz/run can
 * silence what the code under test prints (-close_fd_mask=3: log lines,
 * relayctl's messages) and still show every report.
 */
static int fuzz_report_fd = 2;

__attribute__((constructor)) static void
fuzz_keep_stderr(void)
{
	int fd = fcntl(2, F_DUPFD_CLOEXEC, 10);

	if (fd >= 0)
		fuzz_report_fd = fd;
}

static inline void fuzz_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* (vdprintf: ldns's headers define a macro named dprintf) */
static inline void
fuzz_report(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdprintf(fuzz_report_fd, fmt, ap);
	va_end(ap);
}

/* A property that must hold: if not, say which and abort (a crash input). */
#define FUZZ_CHECK(cond, ...) do {						\
	if (!(cond)) {								\
		fuzz_report("\nfuzz property violated at %s:%d: %s\n  ",	\
		    __FILE__, __LINE__, #cond);					\
		fuzz_report(__VA_ARGS__);					\
		fuzz_report("\n");						\
		abort();							\
	}									\
} while (0)

/* The input, consumed from the front. */
struct fuzz_in {
	const uint8_t	*p;
	size_t		 n;
};

/* One byte, 0 once the input is used up. */
static inline unsigned
fuzz_byte(struct fuzz_in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

/* An n-octet little-endian number (n <= 8); missing octets are 0. */
static inline uint64_t
fuzz_le(struct fuzz_in *in, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)fuzz_byte(in) << (8 * i);
	return v;
}

/* Up to max bytes (fewer if the input ends); *len says how many. */
static inline const uint8_t *
fuzz_bytes(struct fuzz_in *in, size_t max, size_t *len)
{
	const uint8_t *p = in->p;

	*len = max < in->n ? max : in->n;
	in->p += *len;
	in->n -= *len;
	return p;
}

/*
 * The bytes up to the next separator byte sep (not included; consumed),
 * or to the end: how a target cuts its input into fields that the fuzzer
 * can grow and shrink freely.
 */
static inline const uint8_t *
fuzz_field(struct fuzz_in *in, uint8_t sep, size_t *len)
{
	const uint8_t *p = in->p, *e = memchr(in->p, sep, in->n);

	*len = e != NULL ? (size_t)(e - p) : in->n;
	in->p += *len + (e != NULL);
	in->n -= *len + (e != NULL);
	return p;
}

/* A copy of p[0..n) in a buffer of exactly n bytes (+1 with a NUL), so
 * that ASan sees any read past the length a parser was given. */
static inline char *
fuzz_dup(const void *p, size_t n, bool nul)
{
	char *s = malloc(n + (nul ? 1 : 0) + (n == 0 && !nul));

	if (s == NULL)
		abort();
	if (n > 0)
		memcpy(s, p, n);
	if (nul)
		s[n] = '\0';
	return s;
}

/*
 * Chunk sizes for feeding n bytes in pieces: 1 to 2^k bytes each, from a
 * small generator seeded by the target (from its input), so that a crash
 * replays with the same cuts.
 */
struct fuzz_chunker {
	uint32_t	 state;
	unsigned	 bits;
};

static inline void
fuzz_chunker_init(struct fuzz_chunker *c, uint32_t seed, unsigned bits)
{
	c->state = seed * 2654435761u + 1;
	c->bits = bits > 16 ? 16 : bits;
}

static inline size_t
fuzz_chunk(struct fuzz_chunker *c, size_t left)
{
	size_t k;

	c->state ^= c->state << 13;
	c->state ^= c->state >> 17;
	c->state ^= c->state << 5;
	k = 1 + (c->state >> 8) % ((size_t)1 << c->bits);
	return k < left ? k : left;
}

#endif
