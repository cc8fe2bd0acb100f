/*
 * check_log — the log emitter keeps every line one line: log_escape()'s
 * escapes, how it cuts a text too long for its buffer, and lines written
 * through log_info() with CR, LF and other controls in their arguments,
 * read back from the stderr they went to.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "suites.h"

struct esc_case {
	const char	*in;
	size_t		 n;
	const char	*want;
};

#define C(s, w) { s, sizeof(s) - 1, w }

static const struct esc_case esc_cases[] = {
	C("", ""),
	C("plain text, 8-bit \xc3\xa9 too", "plain text, 8-bit \xc3\xa9 too"),
	C("a\r\n550 forged", "a\\r\\n550 forged"),
	C("tab\there", "tab\\there"),
	C("\x01\x02\x1b[31m\x1f\x7f", "\\x01\\x02\\x1b[31m\\x1f\\x7f"),
	C("nul\0inside", "nul\\x00inside"),
	C("bare\rcr", "bare\\rcr"),
	/* a backslash stays as it is (log.h says why) */
	C("C:\\temp \"a\\\"b\"@x", "C:\\temp \"a\\\"b\"@x"),
	C("\x80\xff", "\x80\xff"),
};

START_TEST(test_escape_cases)
{
	const struct esc_case *c = &esc_cases[_i];
	char out[256];
	size_t n = log_escape(out, sizeof(out), c->in, c->n);

	ck_assert_str_eq(out, c->want);
	ck_assert_uint_eq(n, strlen(c->want));
}
END_TEST

/* Every octet value: the output has no control character, and only
 * controls grow. */
START_TEST(test_escape_every_octet)
{
	char in[256], out[1100];

	for (int i = 0; i < 256; i++)
		in[i] = (char)i;
	size_t n = log_escape(out, sizeof(out), in, sizeof(in));

	ck_assert_uint_eq(n, strlen(out));
	for (size_t i = 0; i < n; i++)
		ck_assert_msg((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] != 0x7f,
		    "control 0x%02x at %zu", (unsigned char)out[i], i);
	/* 32 + 1 controls: \r \n \t take 2, the other 30 take 4 */
	ck_assert_uint_eq(n, 256 + 3 * 1 + 30 * 3);
}
END_TEST

/* Too small an output: cut before an escape, never inside one. */
START_TEST(test_escape_cut)
{
	char out[8];

	ck_assert_uint_eq(log_escape(out, sizeof(out), "abcd\r\nxyz", 9), 6);
	ck_assert_str_eq(out, "abcd\\r");
	ck_assert_uint_eq(log_escape(out, sizeof(out), "abcde\x01", 6), 5);
	ck_assert_str_eq(out, "abcde");
	ck_assert_uint_eq(log_escape(out, 1, "abc", 3), 0);
	ck_assert_str_eq(out, "");
	ck_assert_uint_eq(log_escape(out, 0, "abc", 3), 0);
}
END_TEST

/* Runs fn with stderr going to a file; returns what was written. */
static char *
capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/check_log.XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	char *text;
	off_t len;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(saved, 0);
	unlink(path);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	fn();
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
	len = lseek(fd, 0, SEEK_END);
	ck_assert_int_ge(len, 0);
	text = calloc(1, (size_t)len + 1);
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(pread(fd, text, (size_t)len, 0), len);
	close(fd);
	return text;
}

static void
log_forgery(void)
{
	log_init(true, true);
	log_info("%s: reject: From: domain %s is not configured", "Q1",
	    "[1.2.3.4\r\n 550 forged]");
	log_debug("%s", "<<< 220 up ESMTP\rforged: greeting");
	log_warn("tab\tand \x01 and %s", "end");
	log_set_debug(false);
}

/* Three calls, three lines; the controls escaped inside them. */
START_TEST(test_emitter_lines)
{
	char *text = capture_stderr(log_forgery);
	size_t lines = 0;

	for (char *p = text; *p; p++) {
		if (*p == '\n')
			lines++;
		else
			ck_assert_msg((unsigned char)*p >= 0x20 && *p != 0x7f,
			    "control 0x%02x in %s", (unsigned char)*p, text);
	}
	ck_assert_uint_eq(lines, 3);
	ck_assert_ptr_nonnull(strstr(text, "relayd["));
	ck_assert_ptr_nonnull(strstr(text,
	    "]: Q1: reject: From: domain [1.2.3.4\\r\\n 550 forged] is not configured\n"));
	ck_assert_ptr_nonnull(strstr(text, "]: <<< 220 up ESMTP\\rforged: greeting\n"));
	ck_assert_ptr_nonnull(strstr(text, "]: warning: tab\\tand \\x01 and end\n"));
	free(text);
}
END_TEST

static void
log_long(void)
{
	char big[6000];

	memset(big, '\n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_init(true, false);
	log_info("long: %s", big);
	log_info("after");
}

/* A line longer than the buffer is cut, still one line, still escaped. */
START_TEST(test_emitter_long_line)
{
	char *text = capture_stderr(log_long);
	char *nl = strchr(text, '\n');

	ck_assert_ptr_nonnull(nl);
	ck_assert_ptr_nonnull(strstr(text, "]: long: \\n\\n"));
	ck_assert_ptr_nonnull(strstr(nl + 1, "]: after\n"));
	ck_assert_ptr_null(strchr(strstr(nl + 1, "]: after\n") + 9, '\n'));
	ck_assert_uint_le((size_t)(nl - text) + 1, 4096);
	free(text);
}
END_TEST

Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("escape");

	tcase_add_loop_test(tc, test_escape_cases, 0, sizeof(esc_cases) / sizeof(esc_cases[0]));
	tcase_add_test(tc, test_escape_every_octet);
	tcase_add_test(tc, test_escape_cut);
	tcase_add_test(tc, test_emitter_lines);
	tcase_add_test(tc, test_emitter_long_line);
	suite_add_tcase(s, tc);
	return s;
}
