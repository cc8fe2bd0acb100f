/*
 * check_addr — unit tests for addr.c: the RFC 5321 Path / Mailbox grammar,
 * RFC 6531 UTF-8, length limits.  Each input is copied into a heap buffer of
 * exactly its length, without a NUL, so that a read past the length given is
 * caught by AddressSanitizer in the sanitizer build.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "suites.h"

#define WHOLE	((size_t)-1)	/* *end must be at the end of the input */

struct path_case {
	const char		*in;
	bool			 allow_null;
	bool			 utf8;
	enum addr_status	 want;
	const char		*out;	/* mailbox on ADDR_OK */
	size_t			 endoff;	/* offset of *end, or WHOLE */
};

static const struct path_case path_cases[] = {
	/* plain */
	{ "<a@b.no>", false, false, ADDR_OK, "a@b.no", WHOLE },
	{ "<post@mab.no>", false, false, ADDR_OK, "post@mab.no", WHOLE },
	{ "<John.Smith+tag@Example.COM>", false, false, ADDR_OK,
	    "John.Smith+tag@Example.COM", WHOLE },
	{ "<!#$%&'*+-/=?^_`{|}~@x.org>", false, false, ADDR_OK,
	    "!#$%&'*+-/=?^_`{|}~@x.org", WHOLE },
	{ "<a@localhost>", false, false, ADDR_OK, "a@localhost", WHOLE },
	{ "<a@x-y.no>", false, false, ADDR_OK, "a@x-y.no", WHOLE },
	{ "<a@1.2.3.4>", false, false, ADDR_OK, "a@1.2.3.4", WHOLE },
	{ "<a@xn--exmple-cua.com>", false, false, ADDR_OK,
	    "a@xn--exmple-cua.com", WHOLE },
	/* *end stops just past '>'; what follows is the caller's business */
	{ "<a@b.no> SIZE=1", false, false, ADDR_OK, "a@b.no", 8 },
	{ "<a@b.no>>", false, false, ADDR_OK, "a@b.no", 8 },
	/* null path */
	{ "<>", true, false, ADDR_OK, "", WHOLE },
	{ "<> SIZE=1", true, false, ADDR_OK, "", 2 },
	{ "<>", false, false, ADDR_SYNTAX, NULL, 0 },
	/* quoted local parts */
	{ "<\"john doe\"@example.com>", false, false, ADDR_OK,
	    "\"john doe\"@example.com", WHOLE },
	{ "<\"a\\\"b\"@x.org>", false, false, ADDR_OK, "\"a\\\"b\"@x.org", WHOLE },
	{ "<\"a\\\\b\"@x.org>", false, false, ADDR_OK, "\"a\\\\b\"@x.org", WHOLE },
	{ "<\"a@b\"@x.org>", false, false, ADDR_OK, "\"a@b\"@x.org", WHOLE },
	{ "<\"a..b\"@x.org>", false, false, ADDR_OK, "\"a..b\"@x.org", WHOLE },
	{ "<\"\"@x.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<\"abc@x.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<\"a\"b@x.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<\"a\tb\"@x.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<\"a\\\x01\"@x.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<\"a\\\"@x.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	/* address literals */
	{ "<u@[192.0.2.1]>", false, false, ADDR_OK, "u@[192.0.2.1]", WHOLE },
	{ "<u@[IPv6:2001:db8::1]>", false, false, ADDR_OK,
	    "u@[IPv6:2001:db8::1]", WHOLE },
	{ "<u@[ipv6:::1]>", false, false, ADDR_OK, "u@[ipv6:::1]", WHOLE },
	{ "<u@[IPv6:::ffff:192.0.2.1]>", false, false, ADDR_OK,
	    "u@[IPv6:::ffff:192.0.2.1]", WHOLE },
	{ "<u@[IPv6:192.0.2.1]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[2001:db8::1]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[IPv6:2001:db8::g]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[IPv6:fe80::1%eth0]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[192.0.2.256]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[192.0.2]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[ 192.0.2.1]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[192.0.2.1>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[x-tag:foo]>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<u@[192.0.2.1].no>", false, false, ADDR_SYNTAX, NULL, 0 },
	/* source routes: checked, dropped */
	{ "<@a.org,@b.org:u@c.org>", false, false, ADDR_OK, "u@c.org", WHOLE },
	{ "<@a.org:u@c.org>", false, false, ADDR_OK, "u@c.org", WHOLE },
	{ "<@a.org,b.org:u@c.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<@a.org u@c.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<@a.org:>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<@:u@c.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<@-a.org:u@c.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<@[192.0.2.1]:u@c.org>", false, false, ADDR_SYNTAX, NULL, 0 },
	/* the interface's examples and their kin */
	{ "<post@@mab.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<post.bleken.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<@>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a..b@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<.a@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a.@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@-x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@x-.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@x..no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@.x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@x.no.>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@b_c.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@b@c.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	/* spaces and controls */
	{ "<a b@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "< a@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@x.no >", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@x .no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a\x01" "b@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a\x7f@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a\tb@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@x\r.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a(comment)@x.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	/* brackets */
	{ "a@b.no", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@b.no", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "a@b.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<<a@b.no>>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ " <a@b.no>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<", true, false, ADDR_SYNTAX, NULL, 0 },
	{ "", true, false, ADDR_SYNTAX, NULL, 0 },
	{ ">", true, false, ADDR_SYNTAX, NULL, 0 },
	/* UTF-8 (RFC 6531) */
	{ "<用户@例子.广告>", false, true, ADDR_OK, "用户@例子.广告", WHOLE },
	{ "<用户@例子.广告>", false, false, ADDR_NEEDS_UTF8, NULL, 0 },
	{ "<josé@exämple.com>", false, true, ADDR_OK, "josé@exämple.com", WHOLE },
	{ "<josé@exämple.com>", false, false, ADDR_NEEDS_UTF8, NULL, 0 },
	{ "<jose@exämple.com>", false, false, ADDR_NEEDS_UTF8, NULL, 0 },
	{ "<josé@example.com>", false, false, ADDR_NEEDS_UTF8, NULL, 0 },
	{ "<\"josé d\"@example.com>", false, true, ADDR_OK,
	    "\"josé d\"@example.com", WHOLE },
	{ "<@exämple.org:a@b.no>", false, false, ADDR_NEEDS_UTF8, NULL, 0 },
	{ "<a@-ä.no>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<a@ä-.no>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<\xf4\x8f\xbf\xbf@x.no>", false, true, ADDR_OK,
	    "\xf4\x8f\xbf\xbf@x.no", WHOLE },	/* U+10FFFF, highest */
	{ "<\xc2\xa0@x.no>", false, true, ADDR_OK, "\xc2\xa0@x.no", WHOLE },
	/* malformed UTF-8 is a syntax error with or without SMTPUTF8 */
	{ "<\xc3\x28@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<\xc3\x28@x.com>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<a@\xc3\x28.com>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<a@\xc3\x28.com>", false, false, ADDR_SYNTAX, NULL, 0 },
	{ "<\"\xc3\x28\"@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<\xc0\xaf@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* overlong '/' */
	{ "<\xc1\xbf@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* overlong */
	{ "<\xe0\x80\xaf@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* overlong */
	{ "<\xf0\x80\x80\xaf@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<\xed\xa0\x80@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* surrogate */
	{ "<\xed\xbf\xbf@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* surrogate */
	{ "<\xf4\x90\x80\x80@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* > U+10FFFF */
	{ "<\xf5\x80\x80\x80@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<\xff@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<\x80@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* lone continuation */
	{ "<\xe4\xbd@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* truncated */
	{ "<a@x.com\xe4\xbd>", false, true, ADDR_SYNTAX, NULL, 0 },
	{ "<\xc2\x85@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* C1 NEL */
	{ "<\xc2\x9f@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* C1 */
	{ "<\"\xc2\x80\"@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },	/* C1 */
	{ "<\"a\\\xc3\xa9\"@x.com>", false, true, ADDR_SYNTAX, NULL, 0 },
};

/* A heap copy of exactly n bytes, no NUL: overreads hit ASan's redzone. */
static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	ck_assert_ptr_nonnull(p);
	memcpy(p, s, n);
	return p;
}

START_TEST(test_parse_path_table)
{
	const struct path_case	*c = &path_cases[_i];
	size_t			 n = strlen(c->in);
	char			*in = dup_exact(c->in, n);
	char			 out[ADDR_PATH_MAX + 1];
	const char		*end = NULL;
	enum addr_status	 st;

	memset(out, 'X', sizeof(out));
	st = addr_parse_path(in, n, c->allow_null, c->utf8, out, &end);
	ck_assert_msg(st == c->want, "case %d \"%s\" utf8=%d: got %d, want %d",
	    _i, c->in, c->utf8, st, c->want);
	if (c->want == ADDR_OK) {
		ck_assert_str_eq(out, c->out);
		ck_assert_ptr_eq(end, in + (c->endoff == WHOLE ? n : c->endoff));
	} else
		ck_assert_ptr_null(end);	/* ours leaves it alone on failure */
	free(in);
}
END_TEST

/* The parser must honour len: the same text cut short is not an address. */
START_TEST(test_parse_path_respects_len)
{
	const char	*s = "<a@b.no>";
	char		 out[ADDR_PATH_MAX + 1];
	const char	*end;

	ck_assert_int_eq(addr_parse_path(s, 7, false, false, out, &end),
	    ADDR_SYNTAX);
	ck_assert_int_eq(addr_parse_path(s, 1, true, false, out, &end),
	    ADDR_SYNTAX);
	ck_assert_int_eq(addr_parse_path(s, 0, true, false, out, &end),
	    ADDR_SYNTAX);
	ck_assert_int_eq(addr_parse_path("<>", 1, true, false, out, &end),
	    ADDR_SYNTAX);
	/* an embedded NUL is just a bad byte */
	ck_assert_int_eq(addr_parse_path("<a\0b@x.no>", 10, false, false, out,
	    &end), ADDR_SYNTAX);
	ck_assert_int_eq(addr_parse_path("<u@[1.2.3.4\0]>", 14, false, false,
	    out, &end), ADDR_SYNTAX);
}
END_TEST

/* Builds "<" local "@" domain ">" into buf and parses it. */
static enum addr_status
parse_built(char *buf, size_t cap, const char *local, const char *domain,
    bool utf8, char *out)
{
	const char	*end;
	size_t		 n = (size_t)snprintf(buf, cap, "<%s@%s>", local, domain);
	char		*in;
	enum addr_status st;

	ck_assert_uint_lt(n, cap);
	in = dup_exact(buf, n);
	st = addr_parse_path(in, n, false, utf8, out, &end);
	if (st == ADDR_OK)
		ck_assert_ptr_eq(end, in + n);
	free(in);
	return st;
}

static void
fill(char *dst, const char *unit, size_t times)
{
	dst[0] = '\0';
	while (times-- > 0)
		strcat(dst, unit);
}

START_TEST(test_local_part_length)
{
	char	buf[2048], local[512], out[ADDR_PATH_MAX + 1];

	fill(local, "a", 64);
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", false, out),
	    ADDR_OK);
	ck_assert_uint_eq(strlen(out), 64 + 5);
	fill(local, "a", 65);
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", false, out),
	    ADDR_TOO_LONG);

	/* quoted: the 64 octets include the quotes */
	strcpy(local, "\"");
	fill(local + 1, "b", 62);
	strcat(local, "\"");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", false, out),
	    ADDR_OK);
	strcpy(local, "\"");
	fill(local + 1, "b", 63);
	strcat(local, "\"");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", false, out),
	    ADDR_TOO_LONG);

	/* UTF-8: octets, not characters (é is 2 octets) */
	fill(local, "é", 32);
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", true, out),
	    ADDR_OK);
	fill(local, "é", 33);
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", true, out),
	    ADDR_TOO_LONG);
	/* too long beats "needs SMTPUTF8"; a syntax error beats both */
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", false, out),
	    ADDR_TOO_LONG);
	fill(local, "a", 70);
	local[10] = '.';
	local[11] = '.';
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, "x.no", false, out),
	    ADDR_SYNTAX);
}
END_TEST

START_TEST(test_label_and_path_length)
{
	char	buf[2048], local[128], dom[1024], out[ADDR_PATH_MAX + 1];

	/* label: 63 octets fine, 64 not */
	fill(dom, "l", 63);
	strcat(dom, ".no");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, false, out),
	    ADDR_OK);
	fill(dom, "l", 64);
	strcat(dom, ".no");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, false, out),
	    ADDR_TOO_LONG);

	/* path: "<" 64 "@" 189 ">" = 256 octets is the maximum */
	fill(local, "u", 64);
	fill(dom, "d", 63);
	strcat(dom, ".");
	fill(dom + strlen(dom), "e", 63);
	strcat(dom, ".");
	fill(dom + strlen(dom), "f", 61);
	ck_assert_uint_eq(strlen(dom), 189);
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, dom, false, out),
	    ADDR_OK);
	ck_assert_uint_eq(strlen(out), 254);
	strcat(dom, "f");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), local, dom, false, out),
	    ADDR_TOO_LONG);

	/* a domain of more than 255 octets */
	dom[0] = '\0';
	for (int k = 0; k < 8; k++)
		strcat(dom, "abcdefghijklmnopqrstuvwxyzabcdef.");
	strcat(dom, "no");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, false, out),
	    ADDR_TOO_LONG);
}
END_TEST

/*
 * The 63-octet label limit applies to the A-label (RFC 5890), whose length
 * differs from the UTF-8 one.  Expected lengths were computed with Python's
 * punycode codec: "ä"*57 -> 63, "ä"*58 -> 64, "a"*55+"ä" -> 63,
 * "a"*56+"ä" -> 64.
 */
START_TEST(test_ulabel_length)
{
	char	buf[2048], dom[1024], out[ADDR_PATH_MAX + 1];

	fill(dom, "ä", 57);	/* 114 octets of UTF-8, 63 as an A-label */
	strcat(dom, ".no");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, true, out),
	    ADDR_OK);
	fill(dom, "ä", 58);
	strcat(dom, ".no");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, true, out),
	    ADDR_TOO_LONG);

	fill(dom, "a", 55);
	strcat(dom, "ä.no");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, true, out),
	    ADDR_OK);
	fill(dom, "a", 56);
	strcat(dom, "ä.no");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, true, out),
	    ADDR_TOO_LONG);

	/* 21 CJK characters: 63 octets of UTF-8, "xn--" + 43 = 47 */
	strcpy(dom, "\xe4\xb8\x80\xe4\xb8\xa5\xe4\xb9\x8a\xe4\xb9\xaf\xe4\xba"
	    "\x94\xe4\xba\xb9\xe4\xbb\x9e\xe4\xbc\x83\xe4\xbc\xa8\xe4\xbd\x8d"
	    "\xe4\xbd\xb2\xe4\xbe\x97\xe4\xbe\xbc\xe4\xbf\xa1\xe5\x80\x86\xe5"
	    "\x80\xab\xe5\x81\x90\xe5\x81\xb5\xe5\x82\x9a\xe5\x82\xbf\xe5\x83"
	    "\xa4.cn");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, true, out),
	    ADDR_OK);
	/* 15 scattered astral characters: 60 octets of UTF-8, A-label 65 */
	strcpy(dom, "\xf4\x8f\xbf\xbd\xf3\xbe\xbf\xbd\xf3\xad\xbf\xbd\xf3\x9c"
	    "\xbf\xbd\xf3\x8b\xbf\xbd\xf2\xba\xbf\xbd\xf2\xa9\xbf\xbd\xf2\x98"
	    "\xbf\xbd\xf2\x87\xbf\xbd\xf1\xb6\xbf\xbd\xf1\xa5\xbf\xbd\xf1\x94"
	    "\xbf\xbd\xf1\x83\xbf\xbd\xf0\xb2\xbf\xbd\xf0\xa1\xbf\xbd.cn");
	ck_assert_int_eq(parse_built(buf, sizeof(buf), "a", dom, true, out),
	    ADDR_TOO_LONG);
}
END_TEST

/* Long input must be handled in bounded time and never overflow out. */
START_TEST(test_huge_input)
{
	static char	big[8192];
	char		out[ADDR_PATH_MAX + 1];
	const char	*end;
	char		*in;

	big[0] = '<';
	memset(big + 1, 'a', sizeof(big) - 1);
	big[4000] = '@';
	in = dup_exact(big, sizeof(big));
	ck_assert_int_eq(addr_parse_path(in, sizeof(big), false, false, out, &end),
	    ADDR_SYNTAX);
	in[sizeof(big) - 1] = '>';
	ck_assert_int_eq(addr_parse_path(in, sizeof(big), false, false, out, &end),
	    ADDR_TOO_LONG);
	free(in);
}
END_TEST

struct mailbox_case {
	const char		*in;
	bool			 utf8;
	enum addr_status	 want;
};

static const struct mailbox_case mailbox_cases[] = {
	{ "a@b.no", false, ADDR_OK },
	{ "archive@example.com", false, ADDR_OK },
	{ "\"x y\"@b.no", false, ADDR_OK },
	{ "a@[192.0.2.1]", false, ADDR_OK },
	{ "a@[IPv6:::1]", false, ADDR_OK },
	{ "用户@例子.广告", true, ADDR_OK },
	{ "用户@例子.广告", false, ADDR_NEEDS_UTF8 },
	{ "\xc3\x28@x.com", true, ADDR_SYNTAX },
	{ "<a@b.no>", false, ADDR_SYNTAX },
	{ "a@b.no ", false, ADDR_SYNTAX },
	{ " a@b.no", false, ADDR_SYNTAX },
	{ "a@b.no>", false, ADDR_SYNTAX },
	{ "", false, ADDR_SYNTAX },
	{ "a", false, ADDR_SYNTAX },
	{ "a@", false, ADDR_SYNTAX },
	{ "@b.no", false, ADDR_SYNTAX },
	{ "a@b@c.no", false, ADDR_SYNTAX },
	{ "post@@mab.no", false, ADDR_SYNTAX },
	{ "post.bleken.no", false, ADDR_SYNTAX },
	{ "@a.org:u@c.org", false, ADDR_SYNTAX },	/* no route in a bare mailbox */
	{ "a@x.no.", false, ADDR_SYNTAX },
};

START_TEST(test_check_mailbox_table)
{
	const struct mailbox_case	*c = &mailbox_cases[_i];
	enum addr_status		 st = addr_check_mailbox(c->in, c->utf8);

	ck_assert_msg(st == c->want, "case %d \"%s\": got %d, want %d", _i,
	    c->in, st, c->want);
}
END_TEST

START_TEST(test_check_mailbox_length)
{
	char buf[600];

	fill(buf, "a", 64);
	strcat(buf, "@x.no");
	ck_assert_int_eq(addr_check_mailbox(buf, false), ADDR_OK);
	fill(buf, "a", 65);
	strcat(buf, "@x.no");
	ck_assert_int_eq(addr_check_mailbox(buf, false), ADDR_TOO_LONG);
	/* 254 octets fit in a 256-octet path, 255 do not */
	fill(buf, "u", 64);
	strcat(buf, "@");
	fill(buf + strlen(buf), "d", 63);
	strcat(buf, ".");
	fill(buf + strlen(buf), "e", 63);
	strcat(buf, ".");
	fill(buf + strlen(buf), "f", 61);
	ck_assert_uint_eq(strlen(buf), 254);
	ck_assert_int_eq(addr_check_mailbox(buf, false), ADDR_OK);
	strcat(buf, "f");
	ck_assert_int_eq(addr_check_mailbox(buf, false), ADDR_TOO_LONG);
}
END_TEST

START_TEST(test_domain)
{
	const char *m = "a@b.no";
	const char *q = "\"a@b\"@c.no";
	const char *r = "x@[192.0.2.1]";

	ck_assert_ptr_eq(addr_domain(m), m + 2);
	ck_assert_str_eq(addr_domain(m), "b.no");
	ck_assert_str_eq(addr_domain(q), "c.no");
	ck_assert_str_eq(addr_domain(r), "[192.0.2.1]");
	ck_assert_str_eq(addr_domain("用户@例子.广告"), "例子.广告");
	ck_assert_str_eq(addr_domain("postmaster"), "");
	ck_assert_str_eq(addr_domain(""), "");
	ck_assert_str_eq(addr_domain("a@"), "");
}
END_TEST

Suite *
addr_suite(void)
{
	Suite	*s = suite_create("addr");
	TCase	*tc = tcase_create("addr");

	tcase_add_loop_test(tc, test_parse_path_table, 0,
	    (int)(sizeof(path_cases) / sizeof(path_cases[0])));
	tcase_add_test(tc, test_parse_path_respects_len);
	tcase_add_test(tc, test_local_part_length);
	tcase_add_test(tc, test_label_and_path_length);
	tcase_add_test(tc, test_ulabel_length);
	tcase_add_test(tc, test_huge_input);
	tcase_add_loop_test(tc, test_check_mailbox_table, 0,
	    (int)(sizeof(mailbox_cases) / sizeof(mailbox_cases[0])));
	tcase_add_test(tc, test_check_mailbox_length);
	tcase_add_test(tc, test_domain);
	suite_add_tcase(s, tc);
	return s;
}
