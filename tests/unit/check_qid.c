/* Unit tests for qid: encoding, order, monotonicity, the restart floor. */
#include <stdlib.h>
#include <string.h>

#include "qid.h"
#include "suites.h"
#include "util.h"

START_TEST(roundtrip)
{
	const uint64_t vals[] = { 1, 61, 62, 3843, 1700000000000000ULL, UINT64_MAX };
	char id[QID_SIZE];
	uint64_t v;

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		qid_encode(vals[i], id);
		ck_assert_uint_eq(strlen(id), QID_LEN);
		ck_assert_msg(qid_decode(id, &v), "decode %s", id);
		ck_assert_uint_eq(v, vals[i]);
	}
	qid_encode(0, id);
	ck_assert_str_eq(id, "00000000000");
	qid_encode(62, id);
	ck_assert_str_eq(id, "00000000010");
}
END_TEST

START_TEST(rejects_bad)
{
	uint64_t v;

	ck_assert(!qid_decode("", &v));
	ck_assert(!qid_decode("0000000000", &v));	/* 10 digits */
	ck_assert(!qid_decode("000000000000", &v));	/* 12 digits */
	ck_assert(!qid_decode("0000000000-", &v));
	ck_assert(!qid_decode("zzzzzzzzzzz", &v));	/* > 2^64 */
}
END_TEST

START_TEST(string_order_is_numeric_order)
{
	char a[QID_SIZE], b[QID_SIZE];
	uint64_t x = 1;

	srandom(7);
	for (int i = 0; i < 10000; i++) {
		uint64_t y = ((uint64_t)random() << 33) ^ ((uint64_t)random() << 2) ^ (uint64_t)i;

		qid_encode(x, a);
		qid_encode(y, b);
		ck_assert_int_eq(strcmp(a, b) < 0, x < y);
		x = y;
	}
}
END_TEST

START_TEST(next_is_increasing_and_respects_floor)
{
	char prev[QID_SIZE], cur[QID_SIZE];
	uint64_t far = (uint64_t)now_us() + 3600ULL * 1000000;	/* an hour ahead */

	qid_next(prev);
	for (int i = 0; i < 1000; i++) {
		qid_next(cur);
		ck_assert_msg(strcmp(prev, cur) < 0, "%s !< %s", prev, cur);
		memcpy(prev, cur, QID_SIZE);
	}
	/* A spool holding ids from a clock that ran ahead: never reuse them. */
	qid_init(far);
	ck_assert_uint_eq(qid_next(cur), far + 1);
	ck_assert_uint_eq(qid_next(cur), far + 2);
}
END_TEST

Suite *
qid_suite(void)
{
	Suite *s = suite_create("qid");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, roundtrip);
	tcase_add_test(tc, rejects_bad);
	tcase_add_test(tc, string_order_is_numeric_order);
	tcase_add_test(tc, next_is_increasing_and_respects_floor);
	suite_add_tcase(s, tc);
	return s;
}
