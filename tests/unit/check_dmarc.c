/*
 * check_dmarc — DMARC records (RFC 7489 6.3, 6.4): what counts as a
 * record, what makes one invalid (no v=DMARC1 first, no valid p=), what
 * is only noted; and the organizational domain without the Public Suffix
 * List.
 */
#include <string.h>

#include "dmarc.h"
#include "suites.h"

START_TEST(test_is_record)
{
	ck_assert(dmarc_is_record("v=DMARC1; p=none"));
	ck_assert(dmarc_is_record("v = DMARC1 ;p=reject"));
	ck_assert(dmarc_is_record("v=DMARC1"));
	ck_assert(dmarc_is_record("v=DMARC1 p=none"));	/* a record, but an invalid one */
	ck_assert(!dmarc_is_record("v=DMARC10; p=none"));
	ck_assert(!dmarc_is_record("v=dmarc1; p=none"));
	ck_assert(!dmarc_is_record("p=none; v=DMARC1"));
	ck_assert(!dmarc_is_record("v=spf1 -all"));
}
END_TEST

START_TEST(test_parse_valid)
{
	struct dmarc_record r;

	ck_assert_int_eq(dmarc_parse("v=DMARC1; p=none; rua=mailto:d@example.com", &r), 0);
	ck_assert_int_eq(r.p, DMARC_NONE);
	ck_assert_int_eq(r.sp, DMARC_NONE);
	ck_assert_str_eq(r.rua, "mailto:d@example.com");
	ck_assert_str_eq(r.why, "");

	ck_assert_int_eq(dmarc_parse("v=DMARC1;p=quarantine;sp=reject;pct=50;", &r), 0);
	ck_assert_int_eq(r.p, DMARC_QUARANTINE);
	ck_assert_int_eq(r.sp, DMARC_REJECT);
	ck_assert_int_eq(r.pct, 50);

	ck_assert_int_eq(dmarc_parse(" v = DMARC1 ; p = reject ; adkim=s", &r), 0);
	ck_assert_int_eq(r.p, DMARC_REJECT);

	/* a bad optional tag: still a policy, with a note */
	ck_assert_int_eq(dmarc_parse("v=DMARC1; p=reject; pct=150", &r), 0);
	ck_assert_int_eq(r.pct, 100);
	ck_assert_ptr_nonnull(strstr(r.why, "pct=150"));
}
END_TEST

START_TEST(test_parse_invalid)
{
	static const char *const bad[] = {
		"v=DMARC1",			/* no p= */
		"v=DMARC1 p=none",		/* the missing ';': v's value is "DMARC1 p=none" */
		"v=DMARC1; p=nothing",
		"v=DMARC1; p=None",
		"p=none; v=DMARC1",
		"v=DMARC1; rua=mailto:x@example.com",
		"v=DMARC1; p=none; junk",
		/* what dmarc_is_record refuses is no record (fuzz_dnsrec: an
		 * empty tag before v=DMARC1 was passed over) */
		"; v=DMARC1; p=reject",
		" ;v=DMARC1; p=none",
	};
	struct dmarc_record r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(dmarc_parse(bad[i], &r) == -1, "%s was accepted", bad[i]);
		ck_assert_msg(r.why[0] != '\0', "%s: no reason", bad[i]);
	}
}
END_TEST

static void
org(const char *domain, const char *want)
{
	char out[256];

	dmarc_org_domain(domain, out, sizeof(out));
	ck_assert_str_eq(out, want);
}

START_TEST(test_org_domain)
{
	org("example.com", "example.com");
	org("mg.example.com", "example.com");
	org("a.b.c.Example.COM.", "example.com");
	org("customer.no", "customer.no");
	org("shop.customer.co.uk", "customer.co.uk");
	org("customer.co.uk", "customer.co.uk");
	org("co.uk", "co.uk");
	org("com", "com");
	ck_assert(dmarc_aligned("mg.example.com", "example.com"));
	ck_assert(dmarc_aligned("bounce.example.com", "news.example.com"));
	ck_assert(!dmarc_aligned("mg.vitec.no", "customer.no"));
	ck_assert(!dmarc_aligned("a.co.uk", "b.co.uk"));
}
END_TEST

Suite *
dmarc_suite(void)
{
	Suite *s = suite_create("dmarc");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_is_record);
	tcase_add_test(tc, test_parse_valid);
	tcase_add_test(tc, test_parse_invalid);
	tcase_add_test(tc, test_org_domain);
	suite_add_tcase(s, tc);
	return s;
}
