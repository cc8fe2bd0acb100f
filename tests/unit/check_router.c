/*
 * check_router — which domain section a domain routes to: exact name, then
 * "*.parent" patterns most specific first, then "*"; case-insensitive,
 * trailing dot ignored.  The snapshot is built by hand: routing is pure.
 */
#include <stddef.h>
#include <string.h>

#include "router.h"
#include "suites.h"

static struct cfg_domain domains[] = {
	{ .name = (char *)"*.example.org" },		/* 0 */
	{ .name = (char *)"example.com" },		/* 1 */
	{ .name = (char *)"*.b.example.org" },		/* 2 */
	{ .name = (char *)"*" },			/* 3 */
	{ .name = (char *)"mail.example.com" },		/* 4 */
	{ .name = (char *)"*.example.com" },		/* 5 */
	{ .name = (char *)"x.b.example.org" },		/* 6 */
};

/* The index of the section router_lookup picks, -1 for none. */
static int
route(size_t ndomains, const char *domain)
{
	struct config cfg;
	const struct cfg_domain *d;

	memset(&cfg, 0, sizeof(cfg));
	cfg.domains = domains;
	cfg.ndomains = ndomains;
	d = router_lookup(&cfg, domain);
	return d == NULL ? -1 : (int)(d - domains);
}

#define ALL	(sizeof(domains) / sizeof(domains[0]))
#define NO_STAR	3	/* the first three sections: no catch-all */

START_TEST(test_exact)
{
	ck_assert_int_eq(route(ALL, "example.com"), 1);
	ck_assert_int_eq(route(ALL, "mail.example.com"), 4);
	ck_assert_int_eq(route(ALL, "x.b.example.org"), 6);
}
END_TEST

START_TEST(test_case_and_trailing_dot)
{
	ck_assert_int_eq(route(ALL, "EXAMPLE.Com"), 1);
	ck_assert_int_eq(route(ALL, "example.com."), 1);
	ck_assert_int_eq(route(ALL, "Mail.Example.COM."), 4);
	ck_assert_int_eq(route(ALL, "A.B.EXAMPLE.ORG"), 2);
	ck_assert_int_eq(route(NO_STAR, "Host.Example.Org."), 0);
}
END_TEST

START_TEST(test_wildcard_depth)
{
	/* "*.example.org" matches at any depth... */
	ck_assert_int_eq(route(NO_STAR, "a.example.org"), 0);
	ck_assert_int_eq(route(NO_STAR, "a.c.example.org"), 0);
	ck_assert_int_eq(route(1, "a.b.example.org"), 0);
	ck_assert_int_eq(route(1, "d.c.b.a.example.org"), 0);
	/* ...but never the parent itself, nor a name merely ending alike. */
	ck_assert_int_eq(route(NO_STAR, "example.org"), -1);
	ck_assert_int_eq(route(NO_STAR, "badexample.org"), -1);
	ck_assert_int_eq(route(NO_STAR, "example.org.evil"), -1);
}
END_TEST

START_TEST(test_specificity)
{
	/* "*.b.example.org" beats "*.example.org", wherever it is listed. */
	ck_assert_int_eq(route(ALL, "a.b.example.org"), 2);
	ck_assert_int_eq(route(ALL, "z.y.b.example.org"), 2);
	ck_assert_int_eq(route(ALL, "b.example.org"), 0);
	ck_assert_int_eq(route(ALL, "c.example.org"), 0);
	/* An exact name beats any pattern. */
	ck_assert_int_eq(route(ALL, "x.b.example.org"), 6);
	ck_assert_int_eq(route(ALL, "y.x.b.example.org"), 2);
	/* "*.example.com" covers the rest of example.com's subdomains. */
	ck_assert_int_eq(route(ALL, "www.example.com"), 5);
	ck_assert_int_eq(route(ALL, "a.mail.example.com"), 5);
}
END_TEST

START_TEST(test_catch_all)
{
	ck_assert_int_eq(route(ALL, "example.net"), 3);
	ck_assert_int_eq(route(ALL, "example.org"), 3);
	ck_assert_int_eq(route(ALL, "localhost"), 3);
	ck_assert_int_eq(route(ALL, ""), 3);	/* null sender, no From: domain */
	ck_assert_int_eq(route(ALL, NULL), 3);
}
END_TEST

START_TEST(test_no_match)
{
	ck_assert_int_eq(route(NO_STAR, "example.net"), -1);
	ck_assert_int_eq(route(NO_STAR, "org"), -1);
	ck_assert_int_eq(route(NO_STAR, ""), -1);
	ck_assert_int_eq(route(NO_STAR, "."), -1);
	ck_assert_int_eq(route(0, "example.com"), -1);
	ck_assert_ptr_null(router_lookup(NULL, "example.com"));
}
END_TEST

/* The section that signs: the From: domain's own, only if it has keys
 * (no fallback to a wider section that has some). */
START_TEST(test_signing_section)
{
	struct cfg_dkim key = { 0 };
	struct cfg_domain doms[] = {
		{ .name = (char *)"example.com", .dkim = &key, .ndkim = 1 },	/* 0 */
		{ .name = (char *)"plain.example.com" },			/* 1 */
		{ .name = (char *)"*.example.com", .dkim = &key, .ndkim = 1 },	/* 2 */
	};
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.domains = doms;
	cfg.ndomains = 3;
	ck_assert_ptr_eq(router_signing_section(&cfg, "example.com"), &doms[0]);
	ck_assert_ptr_eq(router_signing_section(&cfg, "a.example.com"), &doms[2]);
	ck_assert_ptr_null(router_signing_section(&cfg, "plain.example.com"));
	ck_assert_ptr_null(router_signing_section(&cfg, "example.net"));
	ck_assert_ptr_null(router_signing_section(&cfg, ""));
}
END_TEST

Suite *
router_suite(void)
{
	Suite *s = suite_create("router");
	TCase *tc = tcase_create("lookup");

	tcase_add_test(tc, test_exact);
	tcase_add_test(tc, test_case_and_trailing_dot);
	tcase_add_test(tc, test_wildcard_depth);
	tcase_add_test(tc, test_specificity);
	tcase_add_test(tc, test_catch_all);
	tcase_add_test(tc, test_no_match);
	tcase_add_test(tc, test_signing_section);
	suite_add_tcase(s, tc);
	return s;
}
