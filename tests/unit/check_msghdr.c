/*
 * check_msghdr — the header/body splitter and the field readers.
 *
 * Every splitter case is run whole, split at every single point, and byte
 * by byte; each run is recorded as a transcript ("F<field>|E<eoh>|B<body>"
 * with a field's pieces joined and body chunks merged, since how they are
 * cut follows the input) that must equal the expected one, and the
 * concatenation of all callback bytes must equal the input.  The pieces of
 * a field must come as START (its name and colon, exactly), pieces, END.
 * Random inputs built from header-like and body-like lines check the
 * invariants the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msghdr.h"
#include "suites.h"

struct rec {
	struct buf	 all;	/* every callback byte, in order */
	struct buf	 log;	/* the transcript */
	int		 last;	/* kind of the last call: 'F', 'E', 'B' */
	int		 eoh_calls;
	int		 fields;
	bool		 open;		/* a field between START and END */
	bool		 order_bad;	/* a field after eoh, or body before it */
	const char	*why;		/* what was out of order */
	size_t		 max_piece;	/* the longest value piece */
	size_t		 pieces;
};

static void
rec_put(struct rec *r, int kind, const char *p, size_t n)
{
	buf_add(&r->all, p, n);
	if (kind == 'B' && r->last == 'B') {
		buf_add(&r->log, p, n);	/* merge body chunks */
	} else {
		if (r->log.len > 0)
			buf_add(&r->log, "|", 1);
		buf_add(&r->log, &kind, 1);
		buf_add(&r->log, p, n);
	}
	r->last = kind;
}

static void
bad(struct rec *r, const char *why)
{
	if (!r->order_bad)
		r->why = why;
	r->order_bad = true;
}

static void
cb_field(void *ctx, const char *p, size_t n, unsigned flags)
{
	struct rec *r = ctx;

	if (r->eoh_calls > 0)
		bad(r, "a field after eoh");
	if (flags == MSGHDR_START) {
		if (r->open)
			bad(r, "START inside a field");
		if (n == 0 || p[n - 1] != ':' || memchr(p, ':', n) != p + n - 1)
			bad(r, "START is not exactly a name and its colon");
		r->open = true;
		r->fields++;
		rec_put(r, 'F', p, n);
	} else if (flags == MSGHDR_END) {
		if (!r->open || n != 0)
			bad(r, "END outside a field, or with octets");
		r->open = false;
	} else if (flags == 0) {
		if (!r->open || n == 0)
			bad(r, "a piece outside a field, or empty");
		buf_add(&r->all, p, n);
		buf_add(&r->log, p, n);
		if (n > r->max_piece)
			r->max_piece = n;
		r->pieces++;
	} else {
		bad(r, "unknown flags");
	}
}

static void
cb_eoh(void *ctx, const char *p, size_t n)
{
	struct rec *r = ctx;

	if (r->last == 'B')
		bad(r, "eoh after body");
	if (r->open)
		bad(r, "eoh inside a field");
	r->eoh_calls++;
	rec_put(r, 'E', p, n);
}

static void
cb_body(void *ctx, const char *p, size_t n)
{
	struct rec *r = ctx;

	if (r->eoh_calls == 0)
		bad(r, "body before eoh");
	if (n > 0)
		rec_put(r, 'B', p, n);
}

/* Runs the splitter over text cut at the given points (sorted, may repeat). */
static void
run(const char *text, size_t len, const size_t *cuts, size_t ncuts, struct rec *r)
{
	struct msghdr_cb cb = { cb_field, cb_eoh, cb_body, r };
	struct hdrsplit h;
	size_t at = 0;

	memset(r, 0, sizeof(*r));
	buf_init(&r->all);
	buf_init(&r->log);
	msghdr_init(&h, &cb);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		msghdr_feed(&h, text + at, end - at);
		at = end;
	}
	msghdr_finish(&h);
	msghdr_free(&h);
}

static void
rec_free(struct rec *r)
{
	buf_free(&r->all);
	buf_free(&r->log);
}

/* The invariants every run must keep, and the transcript equal to want. */
static void
check_run(const char *what, const char *text, size_t len, const struct rec *r, const char *want)
{
	ck_assert_msg(r->all.len == len && memcmp(r->all.p == NULL ? "" : r->all.p, text, len) == 0,
	    "%s: callback bytes differ from the input", what);
	ck_assert_msg(r->eoh_calls == 1, "%s: eoh called %d times", what, r->eoh_calls);
	ck_assert_msg(!r->order_bad, "%s: callbacks out of order: %s", what, r->why);
	if (want != NULL)
		ck_assert_msg(strcmp(r->log.p == NULL ? "" : r->log.p, want) == 0,
		    "%s: transcript\n  got  %s\n  want %s", what, r->log.p, want);
}

/* Whole, every single split point, every pair for short text, byte by byte. */
static void
check_all_splits(const char *text, size_t len, const char *want)
{
	struct rec r;
	size_t cuts[2];
	char what[64];

	run(text, len, NULL, 0, &r);
	check_run("whole", text, len, &r, want);
	rec_free(&r);
	for (size_t i = 0; i <= len; i++) {
		cuts[0] = i;
		run(text, len, cuts, 1, &r);
		snprintf(what, sizeof(what), "split at %zu", i);
		check_run(what, text, len, &r, want);
		rec_free(&r);
	}
	if (len <= 64) {
		for (size_t i = 0; i <= len; i++) {
			for (size_t j = i; j <= len; j++) {
				cuts[0] = i;
				cuts[1] = j;
				run(text, len, cuts, 2, &r);
				snprintf(what, sizeof(what), "split at %zu and %zu", i, j);
				check_run(what, text, len, &r, want);
				rec_free(&r);
			}
		}
	}
	{
		size_t *all = malloc((len + 1) * sizeof(*all));

		ck_assert_ptr_nonnull(all);
		for (size_t i = 0; i < len; i++)
			all[i] = i + 1;
		run(text, len, all, len, &r);
		check_run("byte by byte", text, len, &r, want);
		rec_free(&r);
		free(all);
	}
}

struct split_case {
	const char	*text;
	const char	*want;
};

static const struct split_case split_cases[] = {
	{ "", "E" },
	{ "\r\n", "E\r\n" },
	{ "\r\n\r\n", "E\r\n|B\r\n" },
	{ "Subject: hi\r\n\r\nbody\r\n", "FSubject: hi\r\n|E\r\n|Bbody\r\n" },
	{ "From: a@x.org\r\nTo: b@y.org\r\n\r\nhello\r\nworld\r\n",
	  "FFrom: a@x.org\r\n|FTo: b@y.org\r\n|E\r\n|Bhello\r\nworld\r\n" },
	/* Folded fields: continuation lines with space or tab stay with it. */
	{ "Subject: a\r\n b\r\n\tc\r\nX: y\r\n\r\nz",
	  "FSubject: a\r\n b\r\n\tc\r\n|FX: y\r\n|E\r\n|Bz" },
	{ "Subject: a\r\n b\r\n\r\n", "FSubject: a\r\n b\r\n|E\r\n" },
	/* No blank line: the text ends inside the header section. */
	{ "Subject: a\r\n", "FSubject: a\r\n|E" },
	{ "Subject: a\r\n b\r\n", "FSubject: a\r\n b\r\n|E" },
	/* The text ends inside a field's last line (the decoder never does
	 * that): the field ends there; an unfinished name is no field. */
	{ "Subject: a", "FSubject: a|E" },
	{ "Subject:", "FSubject:|E" },
	{ "A: 1\r\nSubject", "FA: 1\r\n|E|BSubject" },
	{ "A: 1\r\nSubject ", "FA: 1\r\n|E|BSubject " },
	{ "A: 1\r\n\r", "FA: 1\r\n|E|B\r" },
	/* A line that is no field ends the section and starts the body. */
	{ "A: 1\r\nnot a header\r\nB: 2\r\n", "FA: 1\r\n|E|Bnot a header\r\nB: 2\r\n" },
	{ "hello world\r\n", "E|Bhello world\r\n" },
	{ " leading space\r\nA: 1\r\n", "E|B leading space\r\nA: 1\r\n" },
	{ ": no name\r\n", "E|B: no name\r\n" },
	{ "A: 1\r\nB@c d: 2\r\n", "FA: 1\r\n|E|BB@c d: 2\r\n" },
	{ "A: 1\r\n\xc3\xa9: 2\r\n", "FA: 1\r\n|E|B\xc3\xa9: 2\r\n" },
	{ "A: 1\r\n\rX\r\n", "FA: 1\r\n|E|B\rX\r\n" },
	{ "A: 1\r\n\n\r\n", "FA: 1\r\n|E|B\n\r\n" },
	{ "A: 1\r\n--boundary\r\n", "FA: 1\r\n|E|B--boundary\r\n" },
	/* Obsolete white space before the colon. */
	{ "FROM : x@y\r\nTo\t:z\r\n\r\n", "FFROM : x@y\r\n|FTo\t:z\r\n|E\r\n" },
	{ "Name Two: x\r\n", "E|BName Two: x\r\n" },
	/* Empty values and odd but valid names. */
	{ "X-Empty:\r\nX-A.b_c~!: v\r\n\r\n", "FX-Empty:\r\n|FX-A.b_c~!: v\r\n|E\r\n" },
	/* Body lines that look like fields are body. */
	{ "Subject: s\r\n\r\nFrom: x@evil.org\r\nTo: y\r\n\r\n",
	  "FSubject: s\r\n|E\r\n|BFrom: x@evil.org\r\nTo: y\r\n\r\n" },
	{ "\r\nFrom: x\r\n", "E\r\n|BFrom: x\r\n" },
	/* A folded field whose continuation starts with a tab, and a folded
	 * domain literal (its CRLF stays in the field). */
	{ "From: a@[1.2.3.4\r\n 550 forged]\r\nSubject: x\r\n\r\n",
	  "FFrom: a@[1.2.3.4\r\n 550 forged]\r\n|FSubject: x\r\n|E\r\n" },
	/* Bare LF line ends inside a field (the decoder never sends them). */
	{ "A: 1\nB: 2\n\r\nbody", "FA: 1\n|FB: 2\n|E\r\n|Bbody" },
	/* Colons and 8-bit in values are fine. */
	{ "Subject: a: b \xc3\xa9\r\n\r\n", "FSubject: a: b \xc3\xa9\r\n|E\r\n" },
};

START_TEST(test_split_cases)
{
	const struct split_case *c = &split_cases[_i];

	check_all_splits(c->text, strlen(c->text), c->want);
}
END_TEST

/*
 * A field of any length is one field, its value passed on as it comes
 * (pieces no longer than the input chunks), and the fields after it are
 * fields: the splitter buffers no value, whatever its size.
 */
START_TEST(test_long_field)
{
	size_t n = 300 * 1024, len;
	char *text = malloc(n + 128), *want = malloc(n + 128);
	struct rec r;
	size_t cuts[3];

	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(want);
	/* "A: 1", then a long folded X-Big, then a field and a body. */
	strcpy(text, "A: 1\r\nX-Big: ");
	len = strlen(text);
	while (len < n) {
		memset(text + len, 'x', 47);
		memcpy(text + len + 47, "\r\n ", 3);
		len += 50;
	}
	memcpy(text + len, "end\r\nB: 2\r\n\r\nbody\r\n", 20);
	len += 19;
	snprintf(want, n + 128, "FA: 1\r\n|F%.*s|FB: 2\r\n|E\r\n|Bbody\r\n",
	    (int)(len - 6 - 19 + 5), text + 6);

	run(text, len, NULL, 0, &r);
	check_run("whole", text, len, &r, want);
	ck_assert_int_eq(r.fields, 3);
	rec_free(&r);
	cuts[0] = 3;
	cuts[1] = 1000;
	cuts[2] = 200 * 1024 + 7;
	run(text, len, cuts, 3, &r);
	check_run("cut", text, len, &r, want);
	ck_assert_int_eq(r.fields, 3);
	ck_assert_uint_le(r.max_piece, 200 * 1024 + 7 - 1000);
	rec_free(&r);
	free(text);
	free(want);
}
END_TEST

/* The splitter's own memory: a name, never a value. */
static void
feed_in_chunks(struct hdrsplit *h, const char *text, size_t len, size_t chunk)
{
	for (size_t at = 0; at < len; at += chunk)
		msghdr_feed(h, text + at, len - at < chunk ? len - at : chunk);
}

START_TEST(test_memory_is_a_name)
{
	size_t len = 1 << 20;
	char *text = malloc(len);
	struct rec r;
	struct msghdr_cb cb = { cb_field, cb_eoh, cb_body, &r };
	struct hdrsplit h;

	ck_assert_ptr_nonnull(text);
	memset(text, 'v', len);
	memcpy(text, "Subject: ", 9);
	memset(&r, 0, sizeof(r));
	buf_init(&r.all);
	buf_init(&r.log);
	msghdr_init(&h, &cb);
	feed_in_chunks(&h, text, len, 4096);
	ck_assert_uint_le(h.name.cap, 64);
	ck_assert_uint_eq(r.pieces, len / 4096);
	msghdr_finish(&h);
	msghdr_free(&h);
	ck_assert_int_eq(r.fields, 1);
	rec_free(&r);
	free(text);
}
END_TEST

/*
 * A name (with white space and colon) of MSGHDR_NAME_MAX octets is one;
 * one octet more is no field name: the line starts the body.  And a long
 * run with no colon is bounded the same way.
 */
START_TEST(test_name_too_long)
{
	size_t len = MSGHDR_NAME_MAX * 4;
	char *text = malloc(len);
	struct rec r;

	ck_assert_ptr_nonnull(text);
	memset(text, 'n', len);
	memcpy(text + MSGHDR_NAME_MAX - 1, ": v\r\n\r\n", 7);
	run(text, MSGHDR_NAME_MAX + 6, NULL, 0, &r);
	check_run("name at the bound", text, MSGHDR_NAME_MAX + 6, &r, NULL);
	ck_assert_int_eq(r.fields, 1);
	rec_free(&r);

	memset(text, 'n', len);
	memcpy(text + MSGHDR_NAME_MAX, ": v\r\n\r\n", 7);
	run(text, MSGHDR_NAME_MAX + 7, NULL, 0, &r);
	check_run("name over the bound", text, MSGHDR_NAME_MAX + 7, &r, NULL);
	ck_assert_int_eq(r.fields, 0);
	rec_free(&r);

	memset(text, 'n', len);
	run(text, len, NULL, 0, &r);
	check_run("long name", text, len, &r, NULL);
	ck_assert_int_eq(r.fields, 0);
	rec_free(&r);
	free(text);
}
END_TEST

/* Random texts of header-like and body-like lines, random cuts. */
START_TEST(test_random)
{
	static const char *const pieces[] = {
		"From: a@x.org\r\n", "Subject: hi\r\n", " cont\r\n", "\tcont\r\n", "\r\n",
		"body line\r\n", "X :y\r\n", ":\r\n", "\r", "\n", "a", "B: ", " ", "\xc3\xa9",
		"To: <b@y.org>\r\n", "--b\r\n",
	};
	unsigned seed = 12345;
	char text[512];
	size_t cuts[8];
	struct rec r, whole;

	for (int iter = 0; iter < 3000; iter++) {
		size_t len = 0, ncuts;
		int npieces;

		seed = seed * 1103515245u + 12345u;
		npieces = (int)((seed >> 16) % 20);
		for (int k = 0; k < npieces; k++) {
			const char *p;

			seed = seed * 1103515245u + 12345u;
			p = pieces[(seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
			if (len + strlen(p) >= sizeof(text))
				break;
			memcpy(text + len, p, strlen(p));
			len += strlen(p);
		}
		seed = seed * 1103515245u + 12345u;
		ncuts = (seed >> 16) % 8;
		for (size_t k = 0; k < ncuts; k++) {
			seed = seed * 1103515245u + 12345u;
			cuts[k] = len == 0 ? 0 : (seed >> 16) % (len + 1);
		}
		/* sort the cuts */
		for (size_t a = 1; a < ncuts; a++)
			for (size_t b = a; b > 0 && cuts[b - 1] > cuts[b]; b--) {
				size_t t = cuts[b];

				cuts[b] = cuts[b - 1];
				cuts[b - 1] = t;
			}
		run(text, len, NULL, 0, &whole);
		check_run("random whole", text, len, &whole, NULL);
		run(text, len, cuts, ncuts, &r);
		check_run("random cut", text, len, &r, whole.log.p == NULL ? "" : whole.log.p);
		rec_free(&r);
		rec_free(&whole);
	}
}
END_TEST

START_TEST(test_is)
{
#define IS(f, name) msghdr_is(f, strlen(f), name)
	ck_assert(IS("From: a@x.org\r\n", "From"));
	ck_assert(IS("FROM: a@x.org\r\n", "from"));
	ck_assert(IS("from:a\r\n", "From"));
	ck_assert(IS("From : a\r\n", "From"));
	ck_assert(IS("From\t \t: a\r\n", "From"));
	ck_assert(IS("From:", "From"));
	ck_assert(IS("Content-Type: text/plain\r\n", "content-type"));
	ck_assert(!IS("From-X: a\r\n", "From"));
	ck_assert(!IS("Fro: a\r\n", "From"));
	ck_assert(!IS("Frommer: a\r\n", "From"));
	ck_assert(!IS("From", "From"));
	ck_assert(!IS("From x: a\r\n", "From"));
	ck_assert(!IS("Reply-To: a\r\n", "To"));
	ck_assert(!IS("", "From"));
	ck_assert(!IS(": a\r\n", ""));
	/* n bounds the field: the colon beyond it does not count. */
	ck_assert(!msghdr_is("From: a", 4, "From"));
	ck_assert(msghdr_is("From: a", 5, "From"));
#undef IS
}
END_TEST

struct dom_case {
	const char	*field;
	const char	*domain;	/* NULL: must return false */
};

static const struct dom_case dom_cases[] = {
	{ "From: ann@example.com\r\n", "example.com" },
	{ "From: Ann <ann@Example.COM>\r\n", "example.com" },
	{ "From: ann@example.com (Ann)\r\n", "example.com" },
	{ "From: \"Doe, J\" <j@x.org>\r\n", "x.org" },
	{ "From: \"Doe, J (x@evil.org)\" <j@x.org>\r\n", "x.org" },
	{ "From: \"a@evil.org\" <j@x.org>\r\n", "x.org" },
	{ "From: (comment with a@evil.org, and comma) j@x.org\r\n", "x.org" },
	{ "From: j@x.org (nested (comment@evil.org) here)\r\n", "x.org" },
	{ "From: Ann (the (real) one) <ann@sub.EXAMPLE.org> (trailing)\r\n", "sub.example.org" },
	{ "From: <ann@example.com>\r\n", "example.com" },
	{ "From:<ann@example.com>", "example.com" },
	{ "FROM : ann@example.com\r\n", "example.com" },
	{ "From: Ann Lee\r\n <ann@\r\n\texample.com>\r\n", "example.com" },
	{ "From: ann@example.com\r\n (folded\r\n comment)\r\n", "example.com" },
	{ "From: \"ann lee\"@example.com\r\n", "example.com" },
	{ "From: \"odd\\\"q@evil.org\" <a@x.org>\r\n", "x.org" },
	{ "From: a.b.c@x.org\r\n", "x.org" },
	{ "From: a . b @ x . org\r\n", "x.org" },
	{ "From: <@route.example,@r2.example:ann@x.org>\r\n", "x.org" },
	{ "From: ann@[192.0.2.1]\r\n", "[192.0.2.1]" },
	/* a folded literal is unfolded: no CR or LF in the domain */
	{ "From: a@[1.2.3.4\r\n 550 forged]\r\n", "[1.2.3.4 550 forged]" },
	{ "From: a@[\r\n\t1.2.3.4\r\n ]\r\n", "[\t1.2.3.4 ]" },
	{ "From: Ann <ann@[IPv6:2001:DB8::1]>\r\n", "[ipv6:2001:db8::1]" },
	{ "From: J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc" "cher.example>\r\n", "b\xc3\xbc" "cher.example" },
	{ "From: grp: a@x.org;\r\n", "x.org" },
	{ "From: a@x.org,\r\n", "x.org" },
	{ "From: , a@x.org , \r\n", "x.org" },
	/* No mailbox, more than one, malformed. */
	{ "From: undisclosed-recipients:;\r\n", NULL },
	{ "From: a@x.org, b@y.org\r\n", NULL },
	{ "From: Ann <a@x.org>, Bob <b@y.org>\r\n", NULL },
	{ "From: a@x.org b@y.org\r\n", NULL },
	{ "From: grp: a@x.org, b@y.org;\r\n", NULL },
	{ "From: grp: a@x.org\r\n", NULL },
	{ "From: ann\r\n", NULL },
	{ "From: Ann <ann>\r\n", NULL },
	{ "From: Ann\r\n", NULL },
	{ "From: \r\n", NULL },
	{ "From:", NULL },
	{ "From no colon", NULL },
	{ "From: @x.org\r\n", NULL },
	{ "From: ann@\r\n", NULL },
	{ "From: ann@x.org>\r\n", NULL },
	{ "From: <ann@x.org\r\n", NULL },
	{ "From: Ann <ann@x.org> junk\r\n", NULL },
	{ "From: ann@x.org (unclosed\r\n", NULL },
	{ "From: \"unclosed <a@x.org>\r\n", NULL },
	{ "From: ann@[1.2.3.4\r\n", NULL },
	{ "From: ann@x y.org\r\n", NULL },
	{ "From: Ann Lee ann@x.org\r\n", NULL },
	{ "From: ann@.x.org\r\n", NULL },
	{ "From: ann@x.org.\r\n", NULL },
	{ "From: a@b@c.org\r\n", NULL },
	{ "From: <a@x.org> <b@y.org>\r\n", NULL },
	{ "From: a\\@b@x.org\r\n", NULL },
};

START_TEST(test_addr_domain)
{
	const struct dom_case *c = &dom_cases[_i];
	char out[256];
	bool ok;

	memset(out, 'Z', sizeof(out));
	ok = msghdr_addr_domain(c->field, strlen(c->field), out, sizeof(out));
	if (c->domain == NULL) {
		ck_assert_msg(!ok, "case %d \"%s\": got true, domain \"%s\"", _i, c->field, out);
	} else {
		ck_assert_msg(ok, "case %d \"%s\": got false", _i, c->field);
		ck_assert_str_eq(out, c->domain);
	}
}
END_TEST

START_TEST(test_addr_domain_bounds)
{
	const char *f = "From: Ann <ann@Example.COM>\r\n";
	char out[12];

	/* "example.com" is 11 octets: fits in 12, not in 11. */
	ck_assert(msghdr_addr_domain(f, strlen(f), out, 12));
	ck_assert_str_eq(out, "example.com");
	ck_assert(!msghdr_addr_domain(f, strlen(f), out, 11));
	ck_assert_str_eq(out, "");
	ck_assert(!msghdr_addr_domain(f, strlen(f), out, 0));
	/* n bounds the field. */
	ck_assert(msghdr_addr_domain("From: a@x.org, b@y.org", 13, out, sizeof(out)));
	ck_assert_str_eq(out, "x.org");
}
END_TEST

/* Fields as the splitter gives them work with the readers. */
struct from_ctx {
	struct buf	 field;
	bool		 from;
	char		 dom[64];
};

static void
find_from(void *ctx, const char *p, size_t n, unsigned flags)
{
	struct from_ctx *f = ctx;

	if (flags & MSGHDR_START) {
		buf_reset(&f->field);
		f->from = msghdr_is(p, n, "From");
	}
	buf_add(&f->field, p, n);
	if ((flags & MSGHDR_END) && f->from)
		ck_assert(msghdr_addr_domain(f->field.p, f->field.len, f->dom, sizeof(f->dom)));
}

static void
ignore(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
}

START_TEST(test_together)
{
	static const char text[] = "Subject: x\r\nfrom : \"Lee, Ann\"\r\n <ann@Mail.Example.NET>\r\n"
	    "\r\nFrom: other@evil.org\r\n";
	struct from_ctx f = { .dom = "" };
	struct msghdr_cb cb = { find_from, ignore, ignore, &f };
	struct hdrsplit h;

	buf_init(&f.field);
	msghdr_init(&h, &cb);
	for (size_t i = 0; i < sizeof(text) - 1; i++)
		msghdr_feed(&h, text + i, 1);
	msghdr_finish(&h);
	msghdr_free(&h);
	buf_free(&f.field);
	ck_assert_str_eq(f.dom, "mail.example.net");
}
END_TEST

Suite *
msghdr_suite(void)
{
	Suite *s = suite_create("msghdr");
	TCase *tc = tcase_create("split");

	tcase_add_loop_test(tc, test_split_cases, 0, sizeof(split_cases) / sizeof(split_cases[0]));
	tcase_add_test(tc, test_long_field);
	tcase_add_test(tc, test_memory_is_a_name);
	tcase_add_test(tc, test_name_too_long);
	tcase_add_test(tc, test_random);
	suite_add_tcase(s, tc);

	tc = tcase_create("fields");
	tcase_add_test(tc, test_is);
	tcase_add_loop_test(tc, test_addr_domain, 0, sizeof(dom_cases) / sizeof(dom_cases[0]));
	tcase_add_test(tc, test_addr_domain_bounds);
	tcase_add_test(tc, test_together);
	suite_add_tcase(s, tc);
	return s;
}
