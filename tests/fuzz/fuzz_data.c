/*
 * fuzz_data — the DATA stream decoder (data.c): the end of the message,
 * dot-stuffing, bare CR and LF, long lines, the size bound.
 *
 * Input: four octets seed the chunk sizes, one picks the line limit and
 * one the size limit; the rest is what a client sends after DATA.  It is
 * decoded twice, in one piece and in chunks of 1 to 64 octets.
 * Properties:
 *  - the chunking changes nothing: output, octets consumed, flags;
 *  - the message ends exactly at the first <CR><LF>.<CR><LF> (the CRLF
 *    that ended DATA counting as the first), never elsewhere: no bare LF
 *    or CR trick ends it (SMTP smuggling), and nothing after it is taken;
 *  - the output has no bare CR and no bare LF, ends with CRLF when the
 *    message ended and is not empty, has no line over the line limit,
 *    and stops at the size limit (overflow said so);
 *  - decoding is stable: the output, dot-stuffed again and terminated,
 *    decodes to itself.
 */
#include "acconfig.h"

#include "data.h"
#include "fuzz.h"
#include "util.h"

struct run {
	struct buf	 out;
	size_t		 used;
	struct data_dec	 d;
};

static void
collect(void *ctx, const char *p, size_t n)
{
	struct buf *b = ctx;

	FUZZ_CHECK(n > 0, "an empty output piece");
	buf_add(b, p, n);
}

/* Feeds p[0..n) in chunks (bits 0: in one piece); stops once it is done. */
static void
decode(struct run *r, const char *p, size_t n, size_t max_line, uint64_t max_size,
    uint32_t seed, unsigned bits)
{
	struct fuzz_chunker ch;

	buf_init(&r->out);
	data_dec_init(&r->d, collect, &r->out, max_line, max_size);
	fuzz_chunker_init(&ch, seed, bits);
	r->used = 0;
	while (r->used < n && !r->d.done) {
		size_t k = bits ? fuzz_chunk(&ch, n - r->used) : n - r->used;
		char *chunk = fuzz_dup(p + r->used, k, false);
		size_t got = data_dec_feed(&r->d, chunk, k);

		free(chunk);
		FUZZ_CHECK(got <= k, "consumed %zu of %zu", got, k);
		FUZZ_CHECK(got == k || r->d.done, "stopped early without the end");
		r->used += got;
	}
}

/* Where the message ends: after the first CRLF.CRLF, the one that ended
 * the DATA command counting; 0 if none (n + 1 would be past). */
static size_t
terminator_end(const char *p, size_t n)
{
	if (n >= 3 && memcmp(p, ".\r\n", 3) == 0)
		return 3;
	const char *t = memmem(p, n, "\r\n.\r\n", 5);

	return t != NULL ? (size_t)(t - p) + 5 : 0;
}

static void
check_output(const struct run *r, uint64_t max_size)
{
	const char *o = r->out.p;
	size_t n = r->out.len, line = 0, max_line = r->d.max_line;

	FUZZ_CHECK(n <= max_size, "%zu octets out with a limit of %llu", n,
	    (unsigned long long)max_size);
	FUZZ_CHECK(r->d.overflow == (r->d.size > max_size), "overflow flag wrong");
	FUZZ_CHECK(r->d.overflow || r->d.size == n, "size %llu, output %zu",
	    (unsigned long long)r->d.size, n);
	for (size_t i = 0; i < n; i++) {
		if (o[i] == '\r') {
			/* At the very end a CR may wait for its LF: when the
			 * input ended before the message did, or the size cut
			 * fell between them. */
			FUZZ_CHECK((i + 1 < n && o[i + 1] == '\n') ||
			    ((r->d.overflow || !r->d.done) && i + 1 == n),
			    "a bare CR at output offset %zu", i);
		} else if (o[i] == '\n') {
			FUZZ_CHECK(i > 0 && o[i - 1] == '\r', "a bare LF at output offset %zu", i);
			line = 0;
			continue;
		}
		if (o[i] != '\r' && ++line > max_line && max_line != 0)
			FUZZ_CHECK(false, "a line of more than %zu octets at output offset %zu",
			    max_line, i);
	}
	if (r->d.done && n > 0 && !r->d.overflow)
		FUZZ_CHECK(n >= 2 && o[n - 2] == '\r' && o[n - 1] == '\n',
		    "the message does not end with CRLF");
}

/* Dot-stuffs CRLF text again and adds the terminator. */
static void
restuff(const char *p, size_t n, struct buf *b)
{
	bool bol = true;

	buf_init(b);
	for (size_t i = 0; i < n; i++) {
		if (bol && p[i] == '.')
			buf_add(b, ".", 1);
		buf_add(b, p + i, 1);
		bol = p[i] == '\n';
	}
	buf_addstr(b, ".\r\n");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t lines[] = { 0, 998, 1, 2, 3, 7, 78, 64 };
	static const uint64_t sizes[] = { UINT64_MAX, 1u << 20, 0, 1, 2, 5, 64, 512 };
	struct fuzz_in in = { data, size };
	uint32_t seed = (uint32_t)fuzz_le(&in, 4);
	size_t max_line = lines[fuzz_byte(&in) % 8];
	uint64_t max_size = sizes[fuzz_byte(&in) % 8];
	const char *p = (const char *)in.p;
	size_t n = in.n;
	struct run one, cut;

	decode(&one, p, n, max_line, max_size, 0, 0);
	decode(&cut, p, n, max_line, max_size, seed, 6);

	FUZZ_CHECK(one.used == cut.used && one.d.done == cut.d.done &&
	    one.d.size == cut.d.size && one.d.overflow == cut.d.overflow &&
	    one.d.eightbit == cut.d.eightbit && one.d.bare_lf == cut.d.bare_lf,
	    "chunking changed the result: used %zu/%zu done %d/%d size %llu/%llu", one.used,
	    cut.used, one.d.done, cut.d.done, (unsigned long long)one.d.size,
	    (unsigned long long)cut.d.size);
	FUZZ_CHECK(one.out.len == cut.out.len &&
	    (one.out.len == 0 || memcmp(one.out.p, cut.out.p, one.out.len) == 0),
	    "chunking changed the output (%zu / %zu octets)", one.out.len, cut.out.len);

	size_t end = terminator_end(p, n);
	FUZZ_CHECK(one.d.done == (end != 0), "done %d, but the terminator ends at %zu",
	    one.d.done, end);
	FUZZ_CHECK(!one.d.done || one.used == end, "ended after %zu octets, the terminator "
	    "after %zu", one.used, end);
	FUZZ_CHECK(one.d.done || one.used == n, "not done, %zu of %zu used", one.used, n);
	check_output(&one, max_size);

	bool eight = false;
	for (size_t i = 0; i < one.used; i++)
		eight |= (unsigned char)p[i] >= 0x80;
	FUZZ_CHECK(one.d.eightbit == eight, "eightbit %d, input says %d", one.d.eightbit, eight);

	if (one.d.done && !one.d.overflow) {
		struct buf again;
		struct run two;

		restuff(one.out.p, one.out.len, &again);
		decode(&two, again.p, again.len, max_line, max_size, seed, 0);
		FUZZ_CHECK(two.d.done && two.used == again.len && !two.d.bare_lf,
		    "the re-stuffed output does not end where it should");
		FUZZ_CHECK(two.out.len == one.out.len &&
		    (one.out.len == 0 || memcmp(two.out.p, one.out.p, one.out.len) == 0),
		    "the re-stuffed output decodes differently");
		buf_free(&again);
		buf_free(&two.out);
	}
	buf_free(&one.out);
	buf_free(&cut.out);
	return 0;
}
