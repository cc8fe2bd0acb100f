/*
 * check_smtp_reply — reply lines gathered into replies, and EHLO replies
 * read one extension per line: lengths at and past every limit, malformed
 * lines, continuation lines, enhanced codes, a bare SIZE before STARTTLS
 * and AUTH, and keywords in the greeting text that are not extensions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"
#include "suites.h"

/* Feeds "\n"-separated lines; returns the last result. */
static enum smtp_reply_rc
feed(struct smtp_reply *r, const char *text, char *err, size_t errlen)
{
	enum smtp_reply_rc rc = SMTP_REPLY_MORE;
	char *dup = strdup(text), *save = NULL;

	for (char *l = strtok_r(dup, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		rc = smtp_reply_add(r, l, strlen(l), err, errlen);
		if (rc != SMTP_REPLY_MORE)
			break;
	}
	free(dup);
	return rc;
}

START_TEST(test_single_and_multi)
{
	struct smtp_reply r;
	char err[256];

	smtp_reply_init(&r);
	ck_assert_int_eq(feed(&r, "250 2.1.0 Ok", err, sizeof(err)), SMTP_REPLY_DONE);
	ck_assert_int_eq(r.code, 250);
	ck_assert_str_eq(r.enh, "2.1.0");
	ck_assert_str_eq(smtp_reply_str(&r), "250 2.1.0 Ok");
	ck_assert_uint_eq(r.nlines, 1);

	smtp_reply_reset(&r);
	ck_assert_int_eq(feed(&r, "550-5.7.1 Rejected\n550-5.7.1 see https://x\n550 5.7.1 bye",
	    err, sizeof(err)), SMTP_REPLY_DONE);
	ck_assert_int_eq(r.code, 550);
	ck_assert_str_eq(r.enh, "5.7.1");
	/* the repeated enhanced code is kept once */
	ck_assert_str_eq(smtp_reply_str(&r), "550 5.7.1 Rejected see https://x bye");
	ck_assert_uint_eq(r.nlines, 3);
	ck_assert_str_eq(r.lines[1], "5.7.1 see https://x");

	/* a bare code, and a code with nothing but a space */
	smtp_reply_reset(&r);
	ck_assert_int_eq(feed(&r, "354", err, sizeof(err)), SMTP_REPLY_DONE);
	ck_assert_int_eq(r.code, 354);
	ck_assert_str_eq(smtp_reply_str(&r), "354");
	ck_assert_str_eq(r.enh, "");
	smtp_reply_reset(&r);
	ck_assert_int_eq(feed(&r, "220 ", err, sizeof(err)), SMTP_REPLY_DONE);
	ck_assert_int_eq(r.code, 220);

	/* not an enhanced code: too many digits, a wrong class, no space */
	static const char *const not_enh[] = { "451 4.3.0000 x", "451 3.1.1 x", "451 4.3.0x",
	    "451 44.3.0 x", "451 4..0 x" };
	for (size_t i = 0; i < sizeof(not_enh) / sizeof(not_enh[0]); i++) {
		smtp_reply_reset(&r);
		ck_assert_int_eq(feed(&r, not_enh[i], err, sizeof(err)), SMTP_REPLY_DONE);
		ck_assert_msg(r.enh[0] == '\0', "%s: enh %s", not_enh[i], r.enh);
	}
	/* the code of the last line counts (as Postfix reads it) */
	smtp_reply_reset(&r);
	ck_assert_int_eq(feed(&r, "250-a\n251 b", err, sizeof(err)), SMTP_REPLY_DONE);
	ck_assert_int_eq(r.code, 251);
	/* and the text, which logs and DSNs quote, says so too
	 * (fuzz_smtp_reply: "114-x\n525" read as 525 with the text "114 x") */
	ck_assert_str_eq(smtp_reply_str(&r), "251 a b");
	smtp_reply_reset(&r);
	ck_assert_int_eq(feed(&r, "250-ok\n250-fine\n550 no such user", err, sizeof(err)),
	    SMTP_REPLY_DONE);
	ck_assert_int_eq(r.code, 550);
	ck_assert_str_eq(smtp_reply_str(&r), "550 ok fine no such user");
	smtp_reply_free(&r);
}
END_TEST

START_TEST(test_malformed)
{
	static const char *const bad[] = { "", "25", "2x0 ok", "250ok", "250_ok", "abc def",
	    "-250 x" };
	struct smtp_reply r;
	char err[256];

	smtp_reply_init(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		smtp_reply_reset(&r);
		ck_assert_msg(smtp_reply_add(&r, bad[i], strlen(bad[i]), err, sizeof(err)) ==
		    SMTP_REPLY_BAD, "accepted: \"%s\"", bad[i]);
		ck_assert_ptr_nonnull(strstr(err, "malformed"));
	}
	/*
	 * The reason quotes only the line's own octets: the line is len
	 * octets, with no NUL after it (fuzz_smtp_reply: "\n" alone made the
	 * reason read past the 0-octet line, an ASan heap-buffer-overflow).
	 */
	static const char *const cut[] = { "25|0 next line", "x|yz", "|250 ok" };
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		size_t len = (size_t)(strchr(cut[i], '|') - cut[i]);

		smtp_reply_reset(&r);
		ck_assert_int_eq(smtp_reply_add(&r, cut[i], len, err, sizeof(err)), SMTP_REPLY_BAD);
		ck_assert_msg(strstr(err, "|") == NULL && strlen(strstr(err, ": ") + 2) == len,
		    "\"%.*s\" quoted as: %s", (int)len, cut[i], err);
	}
	/* a NUL inside a line does not cut it short */
	smtp_reply_reset(&r);
	ck_assert_int_eq(smtp_reply_add(&r, "250 a\0b", 7, err, sizeof(err)), SMTP_REPLY_DONE);
	ck_assert_str_eq(smtp_reply_str(&r), "250 a b");
	smtp_reply_free(&r);
}
END_TEST

START_TEST(test_limits)
{
	struct smtp_reply r;
	char err[256];
	char *line = malloc(SMTP_REPLY_LINE_MAX + 2);

	/* exactly at the limit: taken whole */
	memset(line, 'x', SMTP_REPLY_LINE_MAX + 1);
	memcpy(line, "451 4.3.0 ", 10);
	smtp_reply_init(&r);
	ck_assert_int_eq(smtp_reply_add(&r, line, SMTP_REPLY_LINE_MAX, err, sizeof(err)),
	    SMTP_REPLY_DONE);
	ck_assert_uint_eq(strlen(smtp_reply_str(&r)), SMTP_REPLY_LINE_MAX);
	/* one octet over: refused, nothing stored */
	smtp_reply_reset(&r);
	ck_assert_int_eq(smtp_reply_add(&r, line, SMTP_REPLY_LINE_MAX + 1, err, sizeof(err)),
	    SMTP_REPLY_BAD);
	ck_assert_ptr_nonnull(strstr(err, "longer than 4096"));
	ck_assert_uint_eq(r.nlines, 0);

	/* an endless multi-line reply: cut at the line count */
	smtp_reply_reset(&r);
	enum smtp_reply_rc rc = SMTP_REPLY_MORE;
	size_t n = 0;
	while (rc == SMTP_REPLY_MORE && n < 100000) {
		rc = smtp_reply_add(&r, "250-more", 8, err, sizeof(err));
		n++;
	}
	ck_assert_int_eq(rc, SMTP_REPLY_BAD);
	ck_assert_uint_eq(n, SMTP_REPLY_LINES_MAX + 1);
	/* and at the octet count, with long lines */
	smtp_reply_reset(&r);
	line[3] = '-';
	rc = SMTP_REPLY_MORE;
	n = 0;
	while (rc == SMTP_REPLY_MORE && n < 1000) {
		rc = smtp_reply_add(&r, line, SMTP_REPLY_LINE_MAX, err, sizeof(err));
		n++;
	}
	ck_assert_int_eq(rc, SMTP_REPLY_BAD);
	ck_assert_uint_le(r.size, SMTP_REPLY_MAX);
	smtp_reply_free(&r);
	free(line);
}
END_TEST

static void
ehlo(const char *text, struct smtp_ext *x)
{
	struct smtp_reply r;
	char err[256];

	smtp_reply_init(&r);
	ck_assert_int_eq(feed(&r, text, err, sizeof(err)), SMTP_REPLY_DONE);
	smtp_reply_ehlo(&r, x);
	smtp_reply_free(&r);
}

START_TEST(test_ehlo_lines)
{
	struct smtp_ext x;

	ehlo("250-mx.example greets you\n250-PIPELINING\n250-SIZE 10240000\n250-8BITMIME\n"
	    "250-SMTPUTF8\n250-STARTTLS\n250 AUTH PLAIN LOGIN XOAUTH2", &x);
	ck_assert(x.pipelining && x.starttls && x.eightbitmime && x.smtputf8 && x.size);
	ck_assert_uint_eq(x.size_limit, 10240000);
	ck_assert_uint_eq(x.auth, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN | SMTP_AUTH_XOAUTH2);
	ck_assert_str_eq(x.auth_offered, "PLAIN LOGIN XOAUTH2");

	/* a bare SIZE (RFC 1870; Postfix with message_size_limit = 0) does
	 * not swallow the line after it */
	ehlo("250-mx\n250-SIZE\n250 STARTTLS", &x);
	ck_assert(x.size && x.starttls);
	ck_assert_uint_eq(x.size_limit, 0);
	ehlo("250-mx\n250-SIZE\n250 AUTH PLAIN", &x);
	ck_assert_uint_eq(x.auth, SMTP_AUTH_PLAIN);
	ehlo("250-mx\n250-SIZE\n250 PIPELINING", &x);
	ck_assert(x.pipelining);
	ehlo("250-mx\n250 SIZE 0", &x);
	ck_assert(x.size);
	ck_assert_uint_eq(x.size_limit, 0);

	/* words in the greeting line are not extensions */
	ehlo("250-mx.example PIPELINING STARTTLS AUTH PLAIN\n250 8BITMIME", &x);
	ck_assert(!x.pipelining && !x.starttls && x.auth == 0);
	ck_assert(x.eightbitmime);
	ehlo("250 mx.example STARTTLS", &x);
	ck_assert(!x.starttls);

	/* keywords are whole words, any case; AUTH= (old servers) counts */
	ehlo("250-mx\n250-PIPELININGX\n250-starttls\n250-AUTH=LOGIN\n250 SIZEX 12", &x);
	ck_assert(!x.pipelining && x.starttls && !x.size);
	ck_assert_uint_eq(x.auth, SMTP_AUTH_LOGIN);
	/* unknown mechanisms are listed, not used */
	ehlo("250-mx\n250 AUTH CRAM-MD5 GSSAPI", &x);
	ck_assert_uint_eq(x.auth, 0);
	ck_assert_str_eq(x.auth_offered, "CRAM-MD5 GSSAPI");
	/* a one-line reply offers nothing */
	ehlo("250 mx", &x);
	ck_assert(!x.pipelining && !x.size && x.auth == 0);
}
END_TEST

Suite *
smtp_reply_suite(void)
{
	Suite *s = suite_create("smtp_reply");
	TCase *tc = tcase_create("reply");

	tcase_add_test(tc, test_single_and_multi);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_ehlo_lines);
	suite_add_tcase(s, tc);
	return s;
}
