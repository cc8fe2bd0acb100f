/*
 * check_spf — the SPF term parser (RFC 7208 12), the lookup counter
 * (4.6.4: 10 DNS-querying terms through include and redirect, 2 void
 * lookups, 10 MX names), check_host() and the suggestion builder, against
 * zones in memory (fakedns).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fakedns.h"
#include "spf.h"
#include "suites.h"

/* The kind of the only term of "v=spf1 TERM", SPF_INVALID if invalid. */
static enum spf_kind
kind_of(const char *term)
{
	char *txt = malloc(strlen(term) + 8);
	struct spf_record rec;
	enum spf_kind k;

	strcpy(txt, "v=spf1 ");
	strcat(txt, term);
	spf_parse(txt, &rec);
	ck_assert_uint_eq(rec.n, 1);
	k = rec.t[0].kind;
	spf_record_free(&rec);
	free(txt);
	return k;
}

START_TEST(test_is_record)
{
	ck_assert(spf_is_record("v=spf1"));
	ck_assert(spf_is_record("v=spf1 -all"));
	ck_assert(spf_is_record("V=SPF1 ~ALL"));
	ck_assert(!spf_is_record("v=spf10 -all"));
	ck_assert(!spf_is_record("v=spf1-all"));
	ck_assert(!spf_is_record(" v=spf1 -all"));
	ck_assert(!spf_is_record("spf2.0/pra -all"));
	ck_assert(!spf_is_record("google-site-verification=abc"));
}
END_TEST

START_TEST(test_terms_valid)
{
	static const struct { const char *t; enum spf_kind k; } ok[] = {
		{ "all", SPF_ALL }, { "-all", SPF_ALL }, { "~ALL", SPF_ALL },
		{ "include:_spf.eu.mailgun.org", SPF_INCLUDE },
		{ "include:spf.protection.outlook.com.", SPF_INCLUDE },
		{ "a", SPF_A }, { "a/24", SPF_A }, { "a:mail.example.com", SPF_A },
		{ "a:mail.example.com/24//64", SPF_A }, { "a//64", SPF_A },
		{ "mx", SPF_MX }, { "mx:example.net/28", SPF_MX }, { "ptr", SPF_PTR },
		{ "ip4:192.0.2.1", SPF_IP4 }, { "ip4:192.0.2.0/24", SPF_IP4 },
		{ "ip4:0.0.0.0/0", SPF_IP4 }, { "ip6:2001:db8::/32", SPF_IP6 },
		{ "ip6:::1", SPF_IP6 },
		{ "exists:%{i}._spf.example.com", SPF_EXISTS },
		{ "include:%{l1r+-}.%{d}", SPF_INCLUDE },
		{ "redirect=_spf.example.com", SPF_REDIRECT },
		{ "exp=explain.%{d}", SPF_EXP },
		{ "foo=bar", SPF_MODIFIER }, { "x-custom.1=%%value", SPF_MODIFIER },
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(kind_of(ok[i].t) == ok[i].k, "%s: kind %d, expected %d", ok[i].t,
		    kind_of(ok[i].t), ok[i].k);
}
END_TEST

START_TEST(test_terms_invalid)
{
	static const char *const bad[] = {
		"inclde:_spf.example.com", "include:", "include", "include:localhost",
		"include:1.2.3.4", "include:example..com", "exists", "all:x", "+",
		"ip4:300.1.1.1", "ip4:192.0.2.0/33", "ip4:192.0.2.0/024", "ip4:2001:db8::1",
		"ip6:192.0.2.1", "ip6:2001:db8::/129", "ip4", "a:example.com/33",
		"a:example.com//129", "exists:%{x}.example.com", "exists:%{i.example.com",
		"include:%{c}.example.com", "include:50%.example.com", "+redirect=x.example.com",
		"redirect=", "ip4:192.0.2.1\x01", "1foo=bar", "spf2.0/pra",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(kind_of(bad[i]) == SPF_INVALID, "%s was accepted", bad[i]);
}
END_TEST

START_TEST(test_record_fields)
{
	struct spf_record rec;

	ck_assert_int_eq(spf_parse("v=spf1  a:mail.example.com/24//64 ?ip4:192.0.2.7/28 "
	    "-include:x.example.net.  redirect=r.example.org", &rec), 0);
	ck_assert_uint_eq(rec.n, 4);
	ck_assert_str_eq(rec.t[0].domain, "mail.example.com");
	ck_assert_int_eq(rec.t[0].cidr4, 24);
	ck_assert_int_eq(rec.t[0].cidr6, 64);
	ck_assert_int_eq(rec.t[0].qual, '+');
	ck_assert_int_eq(rec.t[1].qual, '?');
	ck_assert_int_eq(rec.t[1].cidr4, 28);
	ck_assert_int_eq(rec.t[2].qual, '-');
	ck_assert_str_eq(rec.t[2].domain, "x.example.net");
	ck_assert_str_eq(rec.t[3].domain, "r.example.org");
	ck_assert_int_eq(spf_find_all(&rec), -1);
	spf_record_free(&rec);

	/* two redirects: the second one is the error, and named */
	ck_assert_int_eq(spf_parse("v=spf1 redirect=a.example.com redirect=b.example.com",
	    &rec), -1);
	ck_assert_int_eq(rec.t[0].kind, SPF_REDIRECT);
	ck_assert_int_eq(rec.t[1].kind, SPF_INVALID);
	ck_assert_ptr_nonnull(strstr(rec.why, "redirect=b.example.com"));
	spf_record_free(&rec);

	/* strings joined without a space (the classic "v=spf1" "include:..." mistake) */
	ck_assert_int_eq(spf_parse("v=spf1 include:_spf.google.com~all", &rec), -1);
	spf_record_free(&rec);
}
END_TEST

START_TEST(test_term_key)
{
	char *k;

	k = spf_term_key("include:_SPF.EU.Mailgun.org.", "example.com");
	ck_assert_str_eq(k, "include:_spf.eu.mailgun.org");
	free(k);
	k = spf_term_key("a", "Example.com");
	ck_assert_str_eq(k, "a:example.com");
	free(k);
	k = spf_term_key("ip4:192.0.2.77/24", "example.com");
	ck_assert_str_eq(k, "ip4:192.0.2.0/24");
	free(k);
	ck_assert_ptr_null(spf_term_key("-include:x.example.com", "example.com"));
	ck_assert_ptr_null(spf_term_key("nonsense", "example.com"));
}
END_TEST

/* ---- the counter ------------------------------------------------------- */

static const struct fake_rr zone[] = {
	{ "ten.example", DNS_T_TXT, "v=spf1 a mx include:inc1.example include:inc2.example "
	    "include:_spf.eu.mailgun.org ~all" },		/* 1 + 1 + 1 + 5 + 2 = 10 */
	{ "ten.example", DNS_T_A, "198.51.100.1" },
	{ "ten.example", DNS_T_MX, "mx.ten.example" },
	{ "mx.ten.example", DNS_T_A, "198.51.100.2" },
	{ "inc1.example", DNS_T_TXT, "v=spf1 ip4:198.51.100.0/28 -all" },
	{ "inc2.example", DNS_T_TXT, "v=spf1 include:n1.example include:n2.example "
	    "include:n3.example -all" },
	{ "n1.example", DNS_T_TXT, "v=spf1 ip4:203.0.113.1 -all" },
	{ "n2.example", DNS_T_TXT, "v=spf1 ip4:203.0.113.2 -all" },
	{ "n3.example", DNS_T_TXT, "v=spf1 include:n4.example -all" },
	{ "n4.example", DNS_T_TXT, "v=spf1 ip4:203.0.113.4 -all" },
	{ "_spf.eu.mailgun.org", DNS_T_TXT, "v=spf1 include:_spf2.eu.mailgun.org ~all" },
	{ "_spf2.eu.mailgun.org", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 ~all" },
	{ "eleven.example", DNS_T_TXT, "v=spf1 a mx include:inc1.example include:inc2.example "
	    "include:_spf.eu.mailgun.org ptr ~all" },
	{ "eleven.example", DNS_T_A, "198.51.100.1" },
	{ "eleven.example", DNS_T_MX, "mx.ten.example" },
	{ "redir.example", DNS_T_TXT, "v=spf1 ip4:198.51.100.9 redirect=_spf.eu.mailgun.org" },
	{ "redir-ignored.example", DNS_T_TXT, "v=spf1 -all redirect=_spf.eu.mailgun.org" },
	{ "dead.example", DNS_T_TXT, "v=spf1 include:gone.example ~all" },
	{ "nospf.example", DNS_T_TXT, "v=spf1 include:plain.example ~all" },
	{ "plain.example", DNS_T_TXT, "some verification token" },
	{ "voids.example", DNS_T_TXT, "v=spf1 a:v1.example a:v2.example mx:v3.example ~all" },
	{ "twovoids.example", DNS_T_TXT, "v=spf1 a:v1.example a:v2.example ~all" },
	{ "broken.example", DNS_T_TXT, "v=spf1 include:sf.example ~all" },
	{ "sf.example", FAKE_SERVFAIL, NULL },
	{ "loop1.example", DNS_T_TXT, "v=spf1 include:loop2.example ~all" },
	{ "loop2.example", DNS_T_TXT, "v=spf1 include:loop1.example ~all" },
	{ "neg.example", DNS_T_TXT, "v=spf1 -include:_spf.eu.mailgun.org ~all" },
	{ "twice.example", DNS_T_TXT, "v=spf1 -all" },
	{ "twice.example", DNS_T_TXT, "v=spf1 include:_spf.eu.mailgun.org ~all" },
	{ "manymx.example", DNS_T_TXT, "v=spf1 mx ~all" },
	{ "manymx.example", DNS_T_MX, "m1.example" }, { "manymx.example", DNS_T_MX, "m2.example" },
	{ "manymx.example", DNS_T_MX, "m3.example" }, { "manymx.example", DNS_T_MX, "m4.example" },
	{ "manymx.example", DNS_T_MX, "m5.example" }, { "manymx.example", DNS_T_MX, "m6.example" },
	{ "manymx.example", DNS_T_MX, "m7.example" }, { "manymx.example", DNS_T_MX, "m8.example" },
	{ "manymx.example", DNS_T_MX, "m9.example" }, { "manymx.example", DNS_T_MX, "m10.example" },
	{ "manymx.example", DNS_T_MX, "m11.example" },
	{ NULL, 0, NULL }
};

static void
walk(const char *domain, const char *txt, struct spf_walk *w, struct fakedns *f)
{
	struct dns_source dns = fakedns_source(f, zone);

	spf_walk(&dns, domain, txt, w);
}

static bool
reached(const struct spf_walk *w, const char *key)
{
	for (size_t i = 0; i < w->nreached; i++)
		if (strcmp(w->reached[i], key) == 0)
			return true;
	return false;
}

START_TEST(test_count_ten_and_eleven)
{
	struct fakedns f;
	struct spf_walk w;

	walk("ten.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_OK);
	ck_assert_int_eq(w.lookups, 10);
	ck_assert_int_eq(w.voids, 0);
	ck_assert_uint_eq(w.nterms, 6);
	ck_assert_int_eq(w.cost[0], 1);		/* a */
	ck_assert_int_eq(w.cost[3], 5);		/* include:inc2.example and its three */
	ck_assert_int_eq(w.cost[4], 2);
	ck_assert(reached(&w, "include:_spf2.eu.mailgun.org"));	/* nested */
	ck_assert(reached(&w, "include:n4.example"));
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("eleven.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_PERMERROR);
	ck_assert_int_eq(w.lookups, 11);
	ck_assert_ptr_nonnull(strstr(w.why, "more than 10 DNS lookups"));
	ck_assert_ptr_nonnull(strstr(w.why, "ptr"));
	spf_walk_free(&w);
	fakedns_free(&f);
}
END_TEST

START_TEST(test_count_redirect)
{
	struct fakedns f;
	struct spf_walk w;

	walk("redir.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_OK);
	ck_assert_int_eq(w.lookups, 2);
	ck_assert(reached(&w, "include:_spf.eu.mailgun.org"));
	spf_walk_free(&w);
	fakedns_free(&f);

	/* with "all" the redirect is never used: neither counted nor reached */
	walk("redir-ignored.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_OK);
	ck_assert_int_eq(w.lookups, 0);
	ck_assert(!reached(&w, "include:_spf.eu.mailgun.org"));
	spf_walk_free(&w);
	fakedns_free(&f);
}
END_TEST

START_TEST(test_count_errors)
{
	struct fakedns f;
	struct spf_walk w;

	walk("dead.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_PERMERROR);
	ck_assert_int_eq(w.err_term, 0);
	ck_assert_ptr_nonnull(strstr(w.why, "gone.example does not exist"));
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("nospf.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_PERMERROR);
	ck_assert_ptr_nonnull(strstr(w.why, "plain.example has no SPF record"));
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("broken.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_TEMPERROR);
	ck_assert_ptr_nonnull(strstr(w.why, "SERVFAIL"));
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("twice.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_PERMERROR);
	ck_assert_ptr_nonnull(strstr(w.why, "2 SPF records"));
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("absent.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_NONE);
	spf_walk_free(&w);
	fakedns_free(&f);
}
END_TEST

START_TEST(test_count_voids)
{
	struct fakedns f;
	struct spf_walk w;

	walk("twovoids.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_OK);
	ck_assert_int_eq(w.voids, 2);
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("voids.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_PERMERROR);
	ck_assert_int_eq(w.voids, 3);
	ck_assert_int_eq(w.void_of[2], 1);
	ck_assert_ptr_nonnull(strstr(w.why, "void lookups"));
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("manymx.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_PERMERROR);
	ck_assert_ptr_nonnull(strstr(w.why, "11 MX records"));
	spf_walk_free(&w);
	fakedns_free(&f);
}
END_TEST

START_TEST(test_count_loop_and_negative)
{
	struct fakedns f;
	struct spf_walk w;

	walk("loop1.example", NULL, &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_PERMERROR);
	ck_assert_int_le(w.lookups, 4 * SPF_MAX_LOOKUPS + 1);
	spf_walk_free(&w);
	fakedns_free(&f);

	walk("neg.example", NULL, &w, &f);
	ck_assert(!reached(&w, "include:_spf.eu.mailgun.org"));
	ck_assert(!reached(&w, "include:_spf2.eu.mailgun.org"));
	spf_walk_free(&w);
	fakedns_free(&f);

	/* a record given in place of the published one (a suggestion) */
	walk("dead.example", "v=spf1 include:_spf.eu.mailgun.org ~all", &w, &f);
	ck_assert_int_eq(w.err, SPF_WALK_OK);
	ck_assert_int_eq(w.lookups, 2);
	spf_walk_free(&w);
	fakedns_free(&f);
}
END_TEST

/* ---- check_host() ----------------------------------------------------- */

static enum spf_result
check(const char *domain, const char *ip)
{
	struct fakedns f;
	struct dns_source dns = fakedns_source(&f, zone);
	unsigned char bin[16];
	int af = strchr(ip, ':') ? AF_INET6 : AF_INET;
	char why[300];
	enum spf_result r;

	ck_assert_int_eq(inet_pton(af, ip, bin), 1);
	r = spf_check_host(&dns, domain, NULL, af, bin, why, sizeof(why));
	fakedns_free(&f);
	return r;
}

START_TEST(test_check_host)
{
	ck_assert_int_eq(check("ten.example", "192.0.2.55"), SPF_R_PASS);	/* nested include */
	ck_assert_int_eq(check("ten.example", "198.51.100.2"), SPF_R_PASS);	/* mx */
	ck_assert_int_eq(check("ten.example", "203.0.113.4"), SPF_R_PASS);
	ck_assert_int_eq(check("ten.example", "240.0.0.1"), SPF_R_SOFTFAIL);
	ck_assert_int_eq(check("redir.example", "192.0.2.1"), SPF_R_PASS);
	ck_assert_int_eq(check("redir.example", "240.0.0.1"), SPF_R_SOFTFAIL);
	ck_assert_int_eq(check("redir-ignored.example", "192.0.2.1"), SPF_R_FAIL);
	ck_assert_int_eq(check("dead.example", "240.0.0.1"), SPF_R_PERMERROR);
	ck_assert_int_eq(check("broken.example", "240.0.0.1"), SPF_R_TEMPERROR);
	ck_assert_int_eq(check("twice.example", "192.0.2.1"), SPF_R_PERMERROR);
	ck_assert_int_eq(check("absent.example", "192.0.2.1"), SPF_R_NONE);
	ck_assert_int_eq(check("neg.example", "192.0.2.1"), SPF_R_FAIL);
	ck_assert_int_eq(check("voids.example", "240.0.0.1"), SPF_R_PERMERROR);
	ck_assert_int_eq(check("eleven.example", "240.0.0.1"), SPF_R_PERMERROR);
	/* an early match ends it before the 11th lookup, as for receivers */
	ck_assert_int_eq(check("eleven.example", "198.51.100.1"), SPF_R_PASS);
}
END_TEST

/* ---- the suggestion --------------------------------------------------- */

static void
suggests(const char *const *recs, size_t n, const char *add, const char *drop, const char *want)
{
	const char *d[1] = { drop };
	char *s = spf_suggest(recs, n, add, d, drop != NULL ? 1 : 0);

	ck_assert_str_eq(s, want);
	free(s);
}

START_TEST(test_suggest)
{
	const char *web[] = { "v=spf1 a mx include:_spf.webhost.no ~all" };
	const char *two[] = { "v=spf1 a mx include:_spf.webhost.no -all",
	    "v=spf1 include:_spf.eu.mailgun.org mx ~all" };
	const char *plus[] = { "v=spf1 mx +all" };
	const char *quest[] = { "v=spf1 mx ?all" };
	const char *noall[] = { "v=spf1 mx" };
	const char *redir[] = { "v=spf1 mx redirect=_spf.webhost.no" };
	const char *bad[] = { "v=spf1 mx inclde:x.example include:dead.example ~all" };
	const char *redir2[] = { "v=spf1 redirect=_spf.webhost.no",
	    "v=spf1 ip4:192.0.2.1 -all redirect=never.example" };

	/* Vitec's guide: the include goes into the web host's record, before ~all */
	suggests(web, 1, "include:_spf.eu.mailgun.org", NULL,
	    "v=spf1 a mx include:_spf.webhost.no include:_spf.eu.mailgun.org ~all");
	/* two records merged: order kept, duplicates once, the first all */
	suggests(two, 2, "include:_spf.eu.mailgun.org", NULL,
	    "v=spf1 a mx include:_spf.webhost.no include:_spf.eu.mailgun.org -all");
	suggests(plus, 1, NULL, NULL, "v=spf1 mx ~all");
	suggests(quest, 1, NULL, NULL, "v=spf1 mx ~all");
	suggests(noall, 1, "include:sendgrid.net", NULL, "v=spf1 mx include:sendgrid.net ~all");
	suggests(redir, 1, "include:sendgrid.net", NULL,
	    "v=spf1 mx include:sendgrid.net redirect=_spf.webhost.no");
	suggests(bad, 1, "include:sendgrid.net", "include:dead.example",
	    "v=spf1 mx include:sendgrid.net ~all");
	/* a redirect beside another record's all becomes an include; one of a
	 * record with all was never used and goes */
	suggests(redir2, 2, NULL, NULL, "v=spf1 include:_spf.webhost.no ip4:192.0.2.1 -all");
	suggests(NULL, 0, "include:_spf.google.com", NULL, "v=spf1 include:_spf.google.com ~all");
}
END_TEST

Suite *
spf_suite(void)
{
	Suite *s = suite_create("spf");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_is_record);
	tcase_add_test(tc, test_terms_valid);
	tcase_add_test(tc, test_terms_invalid);
	tcase_add_test(tc, test_record_fields);
	tcase_add_test(tc, test_term_key);
	suite_add_tcase(s, tc);
	tc = tcase_create("count");
	tcase_add_test(tc, test_count_ten_and_eleven);
	tcase_add_test(tc, test_count_redirect);
	tcase_add_test(tc, test_count_errors);
	tcase_add_test(tc, test_count_voids);
	tcase_add_test(tc, test_count_loop_and_negative);
	tcase_add_test(tc, test_check_host);
	suite_add_tcase(s, tc);
	tc = tcase_create("suggest");
	tcase_add_test(tc, test_suggest);
	suite_add_tcase(s, tc);
	return s;
}
