/*
 * check_data — the DATA stream decoder.  Each case is checked three ways:
 * its expected output and flags, then the same input split at every
 * possible point (and every pair of points for short inputs, and byte by
 * byte), which must give identical output, consumption and flags.  Random
 * inputs are compared against a deliberately naive reference decoder
 * written here, which works on whole lines one byte at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "suites.h"

/* What one decoding run produced. */
struct result {
	char		*out;
	size_t		 outlen;
	size_t		 outcap;
	int		 calls;		/* out() calls that were made */
	size_t		 consumed;
	uint64_t	 size;
	bool		 overflow;
	bool		 eightbit;
	bool		 bare_lf;
	bool		 done;
};

static void
res_put(struct result *r, const char *p, size_t n)
{
	if (r->outlen + n + 1 > r->outcap) {
		r->outcap = (r->outlen + n + 1) * 2;
		r->out = realloc(r->out, r->outcap);
		if (r->out == NULL)
			ck_abort_msg("out of memory");
	}
	memcpy(r->out + r->outlen, p, n);
	r->outlen += n;
	r->out[r->outlen] = '\0';
}

static void
sink_out(void *ctx, const char *p, size_t n)
{
	struct result *r = ctx;

	/* Plain ifs in the hot paths: every ck_assert costs a message to Check. */
	if (n == 0)
		ck_abort_msg("out() called with nothing");
	res_put(r, p, n);
	r->calls++;
}

static void
res_free(struct result *r)
{
	free(r->out);
	memset(r, 0, sizeof(*r));
}

/*
 * Feeds in[0..n) in chunks ending at the given cut points (ascending, each
 * in 1..n-1), as a session would: stop offering input once the decoder is
 * done.  A chunk is consumed whole unless the terminator is in it.
 */
static void
run_cuts(const char *in, size_t n, size_t max_line, uint64_t max_size,
    const size_t *cuts, size_t ncuts, struct result *r)
{
	struct data_dec	d;
	size_t		off = 0, end, c, k;

	memset(r, 0, sizeof(*r));
	res_put(r, "", 0);
	data_dec_init(&d, sink_out, r, max_line, max_size);
	for (k = 0; k <= ncuts && off < n; k++) {
		end = k < ncuts ? cuts[k] : n;
		c = data_dec_feed(&d, in + off, end - off);
		if (c > end - off || (!d.done && c != end - off))
			ck_abort_msg("fed %zu, consumed %zu, done %d", end - off,
			    c, d.done);
		off += c;
		if (d.done)
			break;
	}
	r->consumed = off;
	r->size = d.size;
	r->overflow = d.overflow;
	r->eightbit = d.eightbit;
	r->bare_lf = d.bare_lf;
	r->done = d.done;
	if (d.done && off < n && data_dec_feed(&d, in + off, n - off) != 0)
		ck_abort_msg("input consumed after the end");
}

static void
run_once(const char *in, size_t n, size_t max_line, uint64_t max_size,
    struct result *r)
{
	run_cuts(in, n, max_line, max_size, NULL, 0, r);
}

/* Printable form of a buffer for failure messages (static, truncated). */
static const char *
show(const char *p, size_t n)
{
	static char	buf[4][400];
	static int	which;
	char		*b = buf[which++ % 4];
	size_t		i, o = 0;

	for (i = 0; i < n && o + 8 < sizeof(buf[0]); i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r')
			o += (size_t)snprintf(b + o, sizeof(buf[0]) - o, "\\r");
		else if (c == '\n')
			o += (size_t)snprintf(b + o, sizeof(buf[0]) - o, "\\n");
		else if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(b + o, sizeof(buf[0]) - o, "\\x%02x", c);
		else
			b[o++] = (char)c;
	}
	b[o] = '\0';
	if (i < n)
		snprintf(b + o, sizeof(buf[0]) - o, "...");
	return b;
}

static void
assert_same(const struct result *a, const struct result *b, const char *what,
    const char *in, size_t n)
{
	if (a->outlen != b->outlen || memcmp(a->out, b->out, a->outlen) != 0)
		ck_abort_msg("%s: input \"%s\": output \"%s\" != \"%s\"", what,
		    show(in, n), show(b->out, b->outlen), show(a->out, a->outlen));
	if (a->consumed != b->consumed)
		ck_abort_msg("%s: input \"%s\": consumed %zu != %zu", what,
		    show(in, n), b->consumed, a->consumed);
	if (a->size != b->size || a->overflow != b->overflow ||
	    a->eightbit != b->eightbit || a->bare_lf != b->bare_lf ||
	    a->done != b->done)
		ck_abort_msg("%s: input \"%s\": flags differ (size %llu/%llu "
		    "overflow %d/%d eightbit %d/%d bare_lf %d/%d done %d/%d)", what,
		    show(in, n), (unsigned long long)b->size,
		    (unsigned long long)a->size, b->overflow, a->overflow,
		    b->eightbit, a->eightbit, b->bare_lf, a->bare_lf, b->done,
		    a->done);
}

/*
 * The chunking invariance check: every single cut, every pair of cuts when
 * the input is short (if asked), and byte-by-byte feeding all equal the
 * one-shot run.
 */
static void
check_splits(const char *in, size_t n, size_t max_line, uint64_t max_size,
    const struct result *once, bool pairs)
{
	struct result	 r;
	size_t		 cuts[2], i, j, *all;
	char		 what[64];

	for (i = 1; i < n; i++) {
		cuts[0] = i;
		run_cuts(in, n, max_line, max_size, cuts, 1, &r);
		snprintf(what, sizeof(what), "split at %zu", i);
		assert_same(once, &r, what, in, n);
		res_free(&r);
	}
	if (pairs && n <= 64) {
		for (i = 1; i < n; i++)
			for (j = i + 1; j < n; j++) {
				cuts[0] = i;
				cuts[1] = j;
				run_cuts(in, n, max_line, max_size, cuts, 2, &r);
				snprintf(what, sizeof(what), "split at %zu,%zu",
				    i, j);
				assert_same(once, &r, what, in, n);
				res_free(&r);
			}
	}
	if (n > 1) {
		all = calloc(n - 1, sizeof(*all));
		ck_assert_ptr_nonnull(all);
		for (i = 1; i < n; i++)
			all[i - 1] = i;
		run_cuts(in, n, max_line, max_size, all, n - 1, &r);
		assert_same(once, &r, "byte by byte", in, n);
		res_free(&r);
		free(all);
	}
}

/* ---- fixed cases ------------------------------------------------------ */

struct dcase {
	const char	*name;
	const char	*in;
	const char	*out;
	size_t		 consumed;	/* 0: all of in */
	size_t		 max_line;
	uint64_t	 max_size;	/* 0: large */
	bool		 bare_lf;
	bool		 eightbit;
	bool		 overflow;
	uint64_t	 size;		/* 0: strlen(out) */
};

static const struct dcase dcases[] = {
	{ "normal", "From: a@example.com\r\nSubject: hi\r\n\r\nHello\r\nworld\r\n.\r\n",
	    "From: a@example.com\r\nSubject: hi\r\n\r\nHello\r\nworld\r\n", 0, 998, 0,
	    false, false, false, 0 },
	{ "empty message", ".\r\n", "", 0, 998, 0, false, false, false, 0 },
	{ "empty line only", "\r\n.\r\n", "\r\n", 0, 998, 0, false, false, false, 0 },
	{ "abc", "abc\r\n.\r\n", "abc\r\n", 0, 998, 0, false, false, false, 0 },
	{ "dot-stuffed", "..leading dot\r\nx\r\n.hidden\r\n.\r\n",
	    ".leading dot\r\nx\r\nhidden\r\n", 0, 998, 0, false, false, false, 0 },
	{ "two dots", "a\r\n..\r\n.\r\n", "a\r\n.\r\n", 0, 998, 0, false, false, false, 0 },
	{ "three dots", "...\r\n.\r\n", "..\r\n", 0, 998, 0, false, false, false, 0 },
	{ "dot line by bare LF", "a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 0, 998, 0,
	    true, false, false, 0 },
	{ "dot line first, bare LF", ".\n.\r\n.\r\n", ".\r\n.\r\n", 0, 998, 0,
	    true, false, false, 0 },
	{ "smuggling LF dot LF", "hello\n.\nMAIL FROM:<x@evil>\r\n.\r\n",
	    "hello\r\n.\r\nMAIL FROM:<x@evil>\r\n", 0, 998, 0, true, false, false, 0 },
	{ "smuggling CRLF dot LF", "hello\r\n.\nRCPT TO:<y@evil>\r\n.\r\n",
	    "hello\r\n.\r\nRCPT TO:<y@evil>\r\n", 0, 998, 0, true, false, false, 0 },
	{ "smuggling LF dot CRLF", "hello\n.\r\nDATA\r\n.\r\n",
	    "hello\r\n.\r\nDATA\r\n", 0, 998, 0, true, false, false, 0 },
	{ "smuggling CR dot CR", "hello\r.\rQUIT\r\n.\r\n",
	    "hello\r\n.\r\nQUIT\r\n", 0, 998, 0, true, false, false, 0 },
	{ "smuggling CRLF dot CR", "hello\r\n.\rX\r\n.\r\n",
	    "hello\r\n.\r\nX\r\n", 0, 998, 0, true, false, false, 0 },
	{ "bare CR", "a\rb\r\n.\r\n", "a\r\nb\r\n", 0, 998, 0, true, false, false, 0 },
	{ "CR CR LF", "a\r\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n", 0, 998, 0,
	    true, false, false, 0 },
	{ "bare LF at start", "\n.\r\n.\r\n", "\r\n.\r\n", 0, 998, 0,
	    true, false, false, 0 },
	{ "stuffed dot after bare LF", "a\n..b\r\n.\r\n", "a\r\n.b\r\n", 0, 998, 0,
	    true, false, false, 0 },
	{ "eight bit", "caf\xc3\xa9\r\n.\r\n", "caf\xc3\xa9\r\n", 0, 998, 0,
	    false, true, false, 0 },
	{ "eight bit after end not seen", "a\r\n.\r\n\xc3\xa9", "a\r\n", 6, 998, 0,
	    false, false, false, 0 },
	{ "pipelined QUIT", "abc\r\n.\r\nQUIT\r\n", "abc\r\n", 8, 998, 0,
	    false, false, false, 0 },
	{ "pipelined after empty", ".\r\nRSET\r\n", "", 3, 998, 0,
	    false, false, false, 0 },
	{ "overflow", "abcdefghij\r\n0123456789\r\n.\r\nQUIT\r\n",
	    "abcdefghij\r\n012", 27, 998, 15, false, false, true, 24 },
	{ "exactly max_size", "abcdefghij\r\n.\r\n", "abcdefghij\r\n", 0, 998, 12,
	    false, false, false, 0 },
	{ "max_line 1 raised to 2", "abcd\r\n.\r\n", "ab\r\n c\r\n d\r\n", 0, 1, 0,
	    false, false, false, 0 },
	{ "max_line 0 unlimited", "abcdefgh\r\n.\r\n", "abcdefgh\r\n", 0, 0, 0,
	    false, false, false, 0 },
	{ "break is no line start", "abcd.\r\n.\r\n", "abcd\r\n .\r\n", 0, 4, 0,
	    false, false, false, 0 },
	{ "stuffed dot not counted", ".abcd\r\n.\r\n", "abcd\r\n", 0, 4, 0,
	    false, false, false, 0 },
};

static void
check_case(const char *in, size_t n, const char *out, size_t outlen,
    size_t consumed, size_t max_line, uint64_t max_size, bool bare_lf,
    bool eightbit, bool overflow, uint64_t size)
{
	struct result	r;

	run_once(in, n, max_line, max_size, &r);
	ck_assert_msg(r.outlen == outlen && memcmp(r.out, out, outlen) == 0,
	    "input \"%s\": got \"%s\", want \"%s\"", show(in, n),
	    show(r.out, r.outlen), show(out, outlen));
	ck_assert_uint_eq(r.consumed, consumed);
	ck_assert(r.done);
	ck_assert_int_eq(r.bare_lf, bare_lf);
	ck_assert_int_eq(r.eightbit, eightbit);
	ck_assert_int_eq(r.overflow, overflow);
	ck_assert_uint_eq(r.size, size);
	check_splits(in, n, max_line, max_size, &r, true);
	res_free(&r);
}

START_TEST(test_cases)
{
	const struct dcase	*c = &dcases[_i];
	size_t			 n = strlen(c->in), outlen = strlen(c->out);
	uint64_t		 size = c->size ? c->size : outlen;

	check_case(c->in, n, c->out, outlen, c->consumed ? c->consumed : n,
	    c->max_line, c->max_size ? c->max_size : 1 << 20, c->bare_lf,
	    c->eightbit, c->overflow, size);
}
END_TEST

/* Builds a line of len 'x' octets followed by CRLF . CRLF. */
static char *
long_input(size_t len, size_t *n)
{
	char	*s = malloc(len + 6);

	ck_assert_ptr_nonnull(s);
	memset(s, 'x', len);
	memcpy(s + len, "\r\n.\r\n", 5);
	*n = len + 5;
	return s;
}

/* The expected output for a line of len 'x' with the given max_line. */
static char *
long_expect(size_t len, size_t max_line, size_t *outlen)
{
	char	*s = malloc(len * 2 + 16);
	size_t	 o = 0, col = 0, i;

	ck_assert_ptr_nonnull(s);
	for (i = 0; i < len; i++) {
		if (col == max_line) {
			memcpy(s + o, "\r\n ", 3);
			o += 3;
			col = 1;
		}
		s[o++] = 'x';
		col++;
	}
	memcpy(s + o, "\r\n", 2);
	*outlen = o + 2;
	return s;
}

START_TEST(test_long_lines)
{
	static const size_t	lens[] = { 997, 998, 999, 1995, 1996, 2000 };
	size_t			len = lens[_i], n, outlen;
	char			*in = long_input(len, &n);
	char			*out = long_expect(len, 998, &outlen);

	check_case(in, n, out, outlen, n, 998, 1 << 20, false, false, false,
	    outlen);
	free(in);
	free(out);
}
END_TEST

/* The expected shapes spelled out, so long_expect itself is checked. */
START_TEST(test_long_line_shape)
{
	struct result	r;
	size_t		n;
	char		*in;

	in = long_input(998, &n);
	run_once(in, n, 998, 1 << 20, &r);
	ck_assert_uint_eq(r.outlen, 1000);
	ck_assert_int_eq(memchr(r.out, ' ', r.outlen) == NULL, 1);
	res_free(&r);
	free(in);

	in = long_input(999, &n);
	run_once(in, n, 998, 1 << 20, &r);
	ck_assert_uint_eq(r.outlen, 998 + 3 + 1 + 2);
	ck_assert_mem_eq(r.out + 998, "\r\n x\r\n", 6);
	res_free(&r);
	free(in);

	/* 2000 = 998 + (1 space + 997) + (1 space + 5) */
	in = long_input(2000, &n);
	run_once(in, n, 998, 1 << 20, &r);
	ck_assert_uint_eq(r.outlen, 2000 + 2 * 3 + 2);
	ck_assert_mem_eq(r.out + 998, "\r\n x", 4);
	ck_assert_mem_eq(r.out + 998 + 3 + 997, "\r\n xxxxx\r\n", 11);
	ck_assert_uint_eq(r.size, r.outlen);
	res_free(&r);
	free(in);
}
END_TEST

/* An ordinary message in one chunk is passed on in a single out() call. */
START_TEST(test_single_out_call)
{
	const char	*in = "From: a@example.com\r\nTo: b@example.net\r\n"
	    "Subject: test\r\n\r\nline one\r\nline two\r\n\r\n.\r\nQUIT\r\n";
	struct result	 r;

	run_once(in, strlen(in), 998, 1 << 20, &r);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_uint_eq(r.consumed, strlen(in) - 6);
	ck_assert_uint_eq(r.outlen, strlen(in) - 6 - 3);
	ck_assert_mem_eq(r.out, in, r.outlen);
	res_free(&r);

	/* Only the changes cut the run: here the one stuffed dot. */
	in = "a\r\n..b\r\nc\r\n.\r\n";
	run_once(in, strlen(in), 998, 1 << 20, &r);
	ck_assert_int_eq(r.calls, 2);
	ck_assert_str_eq(r.out, "a\r\n.b\r\nc\r\n");
	res_free(&r);
}
END_TEST

START_TEST(test_feed_after_done)
{
	struct result	r;
	struct data_dec	d;

	memset(&r, 0, sizeof(r));
	data_dec_init(&d, sink_out, &r, 998, 1000);
	ck_assert_uint_eq(data_dec_feed(&d, "x\r\n.\r", 5), 5);
	ck_assert(!d.done);
	ck_assert_uint_eq(data_dec_feed(&d, "\nNOOP\r\n", 7), 1);
	ck_assert(d.done);
	ck_assert_uint_eq(data_dec_feed(&d, "NOOP\r\n", 6), 0);
	ck_assert_uint_eq(data_dec_feed(&d, ".\r\n", 3), 0);
	ck_assert_uint_eq(r.outlen, 3);
	ck_assert_mem_eq(r.out, "x\r\n", 3);
	ck_assert_uint_eq(d.size, 3);
	res_free(&r);
}
END_TEST

/* Without a terminator everything is consumed and nothing is done. */
START_TEST(test_unfinished)
{
	struct result	r;
	struct data_dec	d;

	memset(&r, 0, sizeof(r));
	data_dec_init(&d, sink_out, &r, 998, 1000);
	ck_assert_uint_eq(data_dec_feed(&d, "a\n.\n", 4), 4);
	ck_assert_uint_eq(data_dec_feed(&d, "\r\n.\n", 4), 4);
	ck_assert_uint_eq(data_dec_feed(&d, "", 0), 0);
	ck_assert(!d.done);
	ck_assert_str_eq(r.out, "a\r\n.\r\n\r\n.\r\n");
	/* That "." line ended bare, so this is content, not the end... */
	ck_assert_uint_eq(data_dec_feed(&d, ".\r\n", 3), 3);
	ck_assert(!d.done);
	/* ...but this one follows a real CRLF. */
	ck_assert_uint_eq(data_dec_feed(&d, ".\r\nQUIT", 7), 3);
	ck_assert(d.done);
	ck_assert_str_eq(r.out, "a\r\n.\r\n\r\n.\r\n.\r\n");
	res_free(&r);
}
END_TEST

/* ---- randomised comparison with a reference --------------------------- */

/*
 * The reference: collect a line byte by byte, decide at its end.  No runs,
 * no carried state between chunks (it sees the whole input), so it shares
 * nothing with the decoder's structure.
 */
static void
ref_decode(const char *in, size_t n, size_t max_line, uint64_t max_size,
    struct result *r)
{
	char		*line = malloc(n + 1);
	size_t		 ll = 0, i = 0, next, j, col;
	bool		 after_real = true, real;
	struct result	 full;

	if (line == NULL)
		ck_abort_msg("out of memory");
	memset(r, 0, sizeof(*r));
	memset(&full, 0, sizeof(full));
	res_put(&full, "", 0);
	if (max_line == 1)
		max_line = 2;
	while (i < n) {
		unsigned char c = (unsigned char)in[i];

		if (c != '\r' && c != '\n') {
			line[ll++] = (char)c;
			if (c >= 0x80)
				r->eightbit = true;
			i++;
			continue;
		}
		if (c == '\r' && i + 1 == n)
			break;		/* undecided; never with our inputs */
		real = c == '\r' && in[i + 1] == '\n';
		next = real ? i + 2 : i + 1;
		if (after_real && real && ll == 1 && line[0] == '.') {
			r->done = true;
			i = next;
			break;
		}
		col = 0;
		for (j = (ll > 1 && line[0] == '.') ? 1 : 0; j < ll; j++) {
			if (max_line != 0 && col == max_line) {
				res_put(&full, "\r\n ", 3);
				col = 1;
			}
			res_put(&full, &line[j], 1);
			col++;
		}
		res_put(&full, "\r\n", 2);
		if (!real)
			r->bare_lf = true;
		after_real = real;
		ll = 0;
		i = next;
	}
	r->consumed = i;
	r->size = full.outlen;
	r->overflow = full.outlen > max_size;
	res_put(r, full.out, full.outlen > max_size ? (size_t)max_size :
	    full.outlen);
	res_free(&full);
	free(line);
}

static uint64_t
rnd_next(uint64_t *s)
{
	/* xorshift64*: fixed seed, same sequence everywhere. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

START_TEST(test_random)
{
	static const char	 alpha[] = { '.', '\r', '\n', 'a', (char)0xC3 };
	static const size_t	 max_lines[] = { 0, 2, 3, 7, 998 };
	uint64_t		 seed = 0x5eed1234abcdULL;
	char			 in[128];
	size_t			 cuts[16], n, k, ncuts, max_line, iter;
	uint64_t		 max_size;
	struct result		 once, ref, chunked;
	int			 terminated_early = 0, overflowed = 0;

	for (iter = 0; iter < 5000; iter++) {
		n = rnd_next(&seed) % 60;
		for (k = 0; k < n; k++)
			in[k] = alpha[rnd_next(&seed) % sizeof(alpha)];
		/* A guaranteed end, then a pipelined command. */
		memcpy(in + n, "\r\n.\r\nQUIT\r\n", 11);
		n += 11;
		max_line = max_lines[rnd_next(&seed) % 5];
		max_size = rnd_next(&seed) % 4 == 0 ? rnd_next(&seed) % 40 :
		    1 << 20;

		run_once(in, n, max_line, max_size, &once);
		ref_decode(in, n, max_line, max_size, &ref);
		assert_same(&ref, &once, "against reference", in, n);
		if (!once.done)
			ck_abort_msg("input \"%s\": no end found", show(in, n));
		if (once.consumed < n - 6)
			terminated_early++;
		if (once.overflow)
			overflowed++;

		ncuts = rnd_next(&seed) % 8;
		for (k = 0; k < ncuts; k++)
			cuts[k] = 1 + rnd_next(&seed) % (n - 1);
		/* sort and dedupe the cut points */
		for (k = 1; k < ncuts; k++) {
			size_t v = cuts[k], j = k;

			while (j > 0 && cuts[j - 1] > v) {
				cuts[j] = cuts[j - 1];
				j--;
			}
			cuts[j] = v;
		}
		for (k = 1; k < ncuts; ) {
			if (cuts[k] == cuts[k - 1]) {
				memmove(cuts + k, cuts + k + 1,
				    (ncuts - k - 1) * sizeof(*cuts));
				ncuts--;
			} else
				k++;
		}
		run_cuts(in, n, max_line, max_size, cuts, ncuts, &chunked);
		assert_same(&once, &chunked, "random chunks", in, n);
		if (iter % 8 == 0)
			check_splits(in, n, max_line, max_size, &once, false);
		res_free(&once);
		res_free(&ref);
		res_free(&chunked);
	}
	/* The inputs did exercise the interesting paths. */
	ck_assert_int_gt(terminated_early, 25);
	ck_assert_int_gt(overflowed, 25);
}
END_TEST

Suite *
data_suite(void)
{
	Suite	*s = suite_create("data");
	TCase	*tc = tcase_create("decode");

	tcase_add_loop_test(tc, test_cases, 0,
	    (int)(sizeof(dcases) / sizeof(dcases[0])));
	tcase_add_loop_test(tc, test_long_lines, 0, 6);
	tcase_add_test(tc, test_long_line_shape);
	tcase_add_test(tc, test_single_out_call);
	tcase_add_test(tc, test_feed_after_done);
	tcase_add_test(tc, test_unfinished);
	suite_add_tcase(s, tc);

	tc = tcase_create("random");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_random);
	suite_add_tcase(s, tc);
	return s;
}
