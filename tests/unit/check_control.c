/*
 * check_control — the control socket's protocol without a socket: the
 * daemon's reading of a request line (control_parse_request) and
 * relayctl's reading and printing of the answers (ctl_queue_print,
 * ctl_simple_print, ctl_wait_print), at a fixed time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control.h"
#include "ctlclient.h"
#include "suites.h"
#include "util.h"

#define NOW	1700000000

/* What a reader printed, and its exit status. */
struct printed {
	char	*out;
	int	 rc;
};

enum reader { R_QUEUE, R_JSON, R_FLUSH, R_WAIT };

static struct printed
print(enum reader r, const char *answer)
{
	struct printed p = { NULL, 0 };
	size_t len = 0;
	char *ans = xstrdup(answer);
	FILE *f = open_memstream(&p.out, &len);

	ck_assert_ptr_nonnull(f);
	switch (r) {
	case R_QUEUE:
		p.rc = ctl_queue_print(ans, false, NOW, f);
		break;
	case R_JSON:
		p.rc = ctl_queue_print(ans, true, NOW, f);
		break;
	case R_FLUSH:
		p.rc = ctl_simple_print("flush", ans, f);
		break;
	case R_WAIT:
		p.rc = ctl_wait_print("0A1b2C3d4E5", ans, f);
		break;
	}
	fclose(f);
	free(ans);
	return p;
}

START_TEST(test_request_words)
{
	struct control_request r;
	char line[] = " flush\t0A1b2C3d4E5  0A1b2C3d4E6 ", empty[] = " \t ", other[] = "list x";

	ck_assert_int_eq(control_parse_request(line, &r), 0);
	ck_assert_int_eq(r.cmd, CONTROL_FLUSH);
	ck_assert_uint_eq(r.nids, 2);
	ck_assert_str_eq(r.ids[0], "0A1b2C3d4E5");
	ck_assert_str_eq(r.ids[1], "0A1b2C3d4E6");
	control_request_free(&r);
	ck_assert_int_eq(control_parse_request(empty, &r), -1);
	control_request_free(&r);
	ck_assert_int_eq(control_parse_request(other, &r), 0);
	ck_assert_int_eq(r.cmd, CONTROL_UNKNOWN);
	control_request_free(&r);
}
END_TEST

static const char queue_answer[] =
    "M\t0A1b2C3d4E5\t1699999000000000\t1234\tann@example.com\t0\t1700000600\n"
    "R\tbob@example.net\tpending\t2\t1700000600\t4.4.1\tconnect to mx[192.0.2.1]:25: refused\n"
    "R\tcy@example.net\tsent\t1\t0\t2.0.0\t\n.\n";

START_TEST(test_queue_table)
{
	struct printed p = print(R_QUEUE, queue_answer);

	ck_assert_int_eq(p.rc, 0);
	ck_assert_msg(strstr(p.out, "0A1b2C3d4E5  16m40s") != NULL &&
	    strstr(p.out, "<bob@example.net>  attempts 2, next in 10m00s") != NULL &&
	    strstr(p.out, "last error: 4.4.1 connect to mx[192.0.2.1]:25: refused") != NULL &&
	    strstr(p.out, "cy@example.net") == NULL, "%s", p.out);
	free(p.out);
	p = print(R_QUEUE, ".\n");
	ck_assert_str_eq(p.out, "Mail queue is empty\n");
	free(p.out);
}
END_TEST

START_TEST(test_queue_json)
{
	struct printed p = print(R_JSON, queue_answer);
	json_error_t err;
	json_t *a = json_loads(p.out, 0, &err), *m, *r;

	ck_assert_msg(a != NULL, "%s: %s", err.text, p.out);
	ck_assert_uint_eq(json_array_size(a), 1);
	m = json_array_get(a, 0);
	ck_assert_str_eq(json_string_value(json_object_get(m, "arrival")), "2023-11-14T21:56:40Z");
	r = json_array_get(json_object_get(m, "recipients"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(r, "next_attempt")),
	    "2023-11-14T22:23:20Z");
	ck_assert_uint_eq(json_array_size(json_object_get(m, "recipients")), 1);
	json_decref(a);
	free(p.out);
}
END_TEST

/*
 * The daemon's fields are any octets an upstream or a client sent (a
 * reply's text in last_error): what is not UTF-8 is written \xHH, as
 * check-dns --json does, so that the JSON stays valid (fuzz_control: an
 * octet 0xac in a sender made relayctl queue --json print what no JSON
 * parser reads).
 */
START_TEST(test_queue_json_not_utf8)
{
	struct printed p = print(R_JSON, "M\tid\t1\t2\tj\xc3\xb6r\xac\xacg@example.com\t0\t0\n"
	    "R\tr@x\tpending\t1\t5\t5.7.1\t\xff caf\xc3\xa9 \xe2\x82 \xed\xa0\x80 \xc0\xaf\n.\n");
	json_error_t err;
	json_t *a = json_loads(p.out, 0, &err), *m;

	ck_assert_msg(a != NULL, "%s: %s", err.text, p.out);
	m = json_array_get(a, 0);
	ck_assert_str_eq(json_string_value(json_object_get(m, "sender")),
	    "j\xc3\xb6r\\xac\\xacg@example.com");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(m,
	    "recipients"), 0), "last_error")),
	    "\\xff caf\xc3\xa9 \\xe2\\x82 \\xed\\xa0\\x80 \\xc0\\xaf");
	json_decref(a);
	free(p.out);
}
END_TEST

START_TEST(test_flush_and_wait)
{
	static const struct {
		enum reader	 r;
		const char	*answer, *out;	/* out NULL: not compared */
		int		 rc;
	} cases[] = {
		{ R_FLUSH, "ok\t3\n.\n", "3 messages scheduled for delivery now\n", 0 },
		{ R_FLUSH, "error\tx: unknown queue id\nok\t0\n.\n", NULL, 1 },
		{ R_WAIT, "O\tbob@example.net\tsent\t2.0.0\t250 ok\n.\n",
		    "0A1b2C3d4E5: to=<bob@example.net>, dsn=2.0.0, status=sent (250 ok)\n", 0 },
		{ R_WAIT, "O\tbob@example.net\tdeferred\t4.4.1\tno\n.\n", NULL, 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct printed p = print(cases[i].r, cases[i].answer);

		ck_assert_int_eq(p.rc, cases[i].rc);
		if (cases[i].out != NULL)
			ck_assert_str_eq(p.out, cases[i].out);
		free(p.out);
	}
}
END_TEST

Suite *
control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("protocol");

	tcase_add_test(tc, test_request_words);
	tcase_add_test(tc, test_queue_table);
	tcase_add_test(tc, test_queue_json);
	tcase_add_test(tc, test_queue_json_not_utf8);
	tcase_add_test(tc, test_flush_and_wait);
	suite_add_tcase(s, tc);
	return s;
}
