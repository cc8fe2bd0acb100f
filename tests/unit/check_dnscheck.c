/*
 * check_dnscheck — check-dns verdicts against zones in memory (fakedns),
 * with domain and upstream sections built by hand, and the two output
 * forms (text lines, JSON).  What is asserted: the status, the words an
 * admin acts on, and that every record suggested passes once published
 * (the zone is changed to hold it and the domain checked again).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dnscheck.h"
#include "fakedns.h"
#include "suites.h"

static struct cfg_upstream mailgun_eu = {
	.name = (char *)"mailgun", .host = (char *)"smtp.eu.mailgun.org",
	.username = (char *)"postmaster@mg.vitec.no",
};
static struct cfg_upstream sendgrid = {
	.name = (char *)"sendgrid", .host = (char *)"smtp.sendgrid.net",
	.username = (char *)"apikey",
};
static struct cfg_upstream inhouse = {
	.name = (char *)"inhouse", .host = (char *)"mail.example.se",
};

/* A zone of up to 32 records, the last ones replaceable by the test. */
struct zone {
	struct fake_rr	rr[40];
	size_t		n;
};

static void
zone_add(struct zone *z, const char *name, int type, const char *value)
{
	ck_assert_uint_lt(z->n, 39);
	z->rr[z->n].name = name;
	z->rr[z->n].type = type;
	z->rr[z->n++].value = value;
	z->rr[z->n].name = NULL;
}

/* The value of a TXT zone-file record "OWNER IN TXT ( "..." "..." )". */
static char *
record_value(const char *rec)
{
	struct buf b;
	const char *p = strchr(rec, '"');

	buf_init(&b);
	buf_addstr(&b, "");
	while (p != NULL) {
		const char *q = strchr(p + 1, '"');

		ck_assert_ptr_nonnull(q);
		buf_add(&b, p + 1, (size_t)(q - p - 1));
		p = strchr(q + 1, '"');
	}
	return b.p;
}

static void
run(struct cfg_domain *sec, const char *domain, struct zone *z, struct domain_checks *out)
{
	struct fakedns f;
	struct dns_source dns = fakedns_source(&f, z->rr);

	dnscheck_domain(sec, domain, &dns, out);
	fakedns_free(&f);
}

static const struct check *
find(const struct domain_checks *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->c[i].name, name) == 0)
			return &d->c[i];
	ck_abort_msg("no %s check", name);
	return NULL;
}

static void
common(struct zone *z)
{
	z->n = 0;
	zone_add(z, "_spf.eu.mailgun.org", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 ~all");
	zone_add(z, "sendgrid.net", DNS_T_TXT, "v=spf1 ip4:198.18.0.0/24 ~all");
	zone_add(z, "_spf.webhost.no", DNS_T_TXT, "v=spf1 ip4:203.0.113.0/24 -all");
	zone_add(z, "mail.example.se", DNS_T_A, "198.51.100.25");
}

START_TEST(test_spf_vitec)
{
	struct cfg_domain sec = { .name = (char *)"customer.no", .upstream = &mailgun_eu };
	struct domain_checks d, again;
	const struct check *c;
	struct zone z;
	char *v;

	common(&z);
	zone_add(&z, "customer.no", DNS_T_TXT, "v=spf1 a mx include:_spf.webhost.no ~all");
	zone_add(&z, "customer.no", DNS_T_A, "203.0.113.10");
	zone_add(&z, "customer.no", DNS_T_MX, "mx.customer.no");
	zone_add(&z, "mx.customer.no", DNS_T_A, "203.0.113.11");
	run(&sec, "customer.no", &z, &d);
	c = find(&d, "SPF");
	ck_assert_int_eq(c->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(c->reason, "does not authorize upstream mailgun"));
	ck_assert_ptr_nonnull(strstr(c->reason, "add include:_spf.eu.mailgun.org"));
	ck_assert_ptr_nonnull(c->suggestion);
	v = record_value(c->suggestion);
	ck_assert_str_eq(v, "v=spf1 a mx include:_spf.webhost.no include:_spf.eu.mailgun.org ~all");
	ck_assert_ptr_nonnull(strstr(c->suggestion, "customer.no. IN TXT"));

	/* published, it passes */
	z.rr[4].value = v;
	run(&sec, "customer.no", &z, &again);
	c = find(&again, "SPF");
	ck_assert_msg(c->status == CHECK_PASS, "the suggestion did not pass: %s", c->reason);
	ck_assert_ptr_null(c->suggestion);
	dnscheck_free(&again);
	dnscheck_free(&d);
	free(v);
}
END_TEST

START_TEST(test_spf_two_records_and_all)
{
	struct cfg_domain sec = { .name = (char *)"example.com", .upstream = &sendgrid };
	struct domain_checks d, again;
	const struct check *c;
	struct zone z;
	char *v;

	common(&z);
	zone_add(&z, "example.com", DNS_T_TXT, "v=spf1 include:_spf.webhost.no +all");
	zone_add(&z, "example.com", DNS_T_TXT, "v=spf1 include:sendgrid.net ~all");
	run(&sec, "example.com", &z, &d);
	c = find(&d, "SPF");
	ck_assert_int_eq(c->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(c->reason, "2 SPF records"));
	v = record_value(c->suggestion);
	ck_assert_str_eq(v, "v=spf1 include:_spf.webhost.no include:sendgrid.net ~all");
	z.rr[z.n - 2].value = v;
	z.rr[--z.n].name = NULL;
	run(&sec, "example.com", &z, &again);
	ck_assert_int_eq(find(&again, "SPF")->status, CHECK_PASS);
	dnscheck_free(&again);
	dnscheck_free(&d);
	free(v);

	/* +all alone */
	common(&z);
	zone_add(&z, "example.com", DNS_T_TXT, "v=spf1 include:sendgrid.net +all");
	run(&sec, "example.com", &z, &d);
	c = find(&d, "SPF");
	ck_assert_int_eq(c->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(c->reason, "+all lets every server"));
	v = record_value(c->suggestion);
	ck_assert_str_eq(v, "v=spf1 include:sendgrid.net ~all");
	dnscheck_free(&d);
	free(v);

	/* ?all: a warning, nothing to publish */
	common(&z);
	zone_add(&z, "example.com", DNS_T_TXT, "v=spf1 include:sendgrid.net ?all");
	run(&sec, "example.com", &z, &d);
	c = find(&d, "SPF");
	ck_assert_int_eq(c->status, CHECK_WARN);
	ck_assert_ptr_nonnull(strstr(c->reason, "?all"));
	dnscheck_free(&d);
}
END_TEST

START_TEST(test_spf_no_suggestion_when_it_would_fail)
{
	struct cfg_domain sec = { .name = (char *)"example.com", .upstream = &sendgrid };
	struct domain_checks d;
	const struct check *c;
	struct zone z;

	common(&z);
	/* 10 lookups already: adding sendgrid's include would make 11 */
	zone_add(&z, "example.com", DNS_T_TXT, "v=spf1 include:a.example include:b.example "
	    "include:c.example include:d.example include:e.example include:f.example "
	    "include:g.example include:h.example include:i.example include:j.example ~all");
	for (const char *n = "abcdefghij"; *n != '\0'; n++) {
		static char names[10][16];

		snprintf(names[n - "abcdefghij"], sizeof(names[0]), "%c.example", *n);
		zone_add(&z, names[n - "abcdefghij"], DNS_T_TXT, "v=spf1 ip4:203.0.113.1 -all");
	}
	run(&sec, "example.com", &z, &d);
	c = find(&d, "SPF");
	ck_assert_int_eq(c->status, CHECK_FAIL);
	ck_assert_ptr_null(c->suggestion);
	ck_assert_ptr_nonnull(strstr(c->reason, "no record to suggest"));
	ck_assert_ptr_nonnull(strstr(c->reason, "11 DNS lookups"));
	dnscheck_free(&d);
}
END_TEST

START_TEST(test_spf_inhouse)
{
	struct cfg_domain sec = { .name = (char *)"example.se", .upstream = &inhouse };
	struct domain_checks d;
	struct zone z;

	common(&z);
	zone_add(&z, "example.se", DNS_T_TXT, "v=spf1 mx ~all");
	zone_add(&z, "example.se", DNS_T_MX, "mail.example.se");
	run(&sec, "example.se", &z, &d);
	ck_assert_msg(find(&d, "SPF")->status == CHECK_PASS, "%s", find(&d, "SPF")->reason);
	ck_assert_ptr_nonnull(strstr(find(&d, "SPF")->reason, "198.51.100.25"));
	dnscheck_free(&d);

	common(&z);
	zone_add(&z, "example.se", DNS_T_TXT, "v=spf1 ip4:203.0.113.0/24 ~all");
	run(&sec, "example.se", &z, &d);
	ck_assert_int_eq(find(&d, "SPF")->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(find(&d, "SPF")->suggestion,
	    "v=spf1 ip4:203.0.113.0/24 a:mail.example.se ~all"));
	dnscheck_free(&d);
}
END_TEST

START_TEST(test_spf_bad_spf_key)
{
	struct cfg_upstream odd = { .name = (char *)"odd", .host = (char *)"smtp.odd.example",
	    .spf = (char *)"-include:_spf.odd.example", .line = 7 };
	struct cfg_domain sec = { .name = (char *)"example.com", .upstream = &odd };
	struct domain_checks d;
	struct zone z;

	common(&z);
	zone_add(&z, "example.com", DNS_T_TXT, "v=spf1 -include:_spf.odd.example ~all");
	run(&sec, "example.com", &z, &d);
	ck_assert_int_eq(find(&d, "SPF")->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(find(&d, "SPF")->reason, "upstream odd's spf = "
	    "\"-include:_spf.odd.example\" (line 7 of the configuration)"));
	ck_assert_ptr_null(find(&d, "SPF")->suggestion);
	dnscheck_free(&d);
}
END_TEST

START_TEST(test_spf_lookup_failure)
{
	struct cfg_domain sec = { .name = (char *)"example.com", .upstream = &sendgrid };
	struct domain_checks d;
	struct zone z;

	common(&z);
	zone_add(&z, "example.com", FAKE_SERVFAIL, NULL);
	zone_add(&z, "_dmarc.example.com", FAKE_SERVFAIL, NULL);
	run(&sec, "example.com", &z, &d);
	ck_assert_int_eq(find(&d, "SPF")->status, CHECK_FAIL);
	ck_assert_int_eq(find(&d, "DMARC")->status, CHECK_FAIL);
	ck_assert_ptr_null(find(&d, "SPF")->suggestion);
	ck_assert_ptr_null(find(&d, "DMARC")->suggestion);
	ck_assert_ptr_nonnull(strstr(find(&d, "SPF")->reason, "lookup of TXT example.com "
	    "failed: 127.0.0.1 answered SERVFAIL"));
	ck_assert_ptr_nonnull(strstr(find(&d, "DMARC")->reason, "SERVFAIL"));
	ck_assert_ptr_null(strstr(find(&d, "SPF")->reason, "no SPF record"));
	dnscheck_free(&d);
}
END_TEST

START_TEST(test_dmarc)
{
	struct cfg_domain sec = { .name = (char *)"customer.no", .upstream = &mailgun_eu };
	struct cfg_domain own = { .name = (char *)"example.com", .upstream = &inhouse };
	struct domain_checks d;
	const struct check *c;
	struct zone z;

	common(&z);
	run(&own, "example.com", &z, &d);
	c = find(&d, "DMARC");
	ck_assert_int_eq(c->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(c->suggestion,
	    "_dmarc.example.com. IN TXT ( \"v=DMARC1; p=none; rua=mailto:postmaster@example.com\" )"));
	dnscheck_free(&d);

	/* a subdomain falls back to the organizational domain's record (sp=) */
	common(&z);
	zone_add(&z, "_dmarc.example.com", DNS_T_TXT, "v=DMARC1; p=none; sp=reject");
	run(&own, "mg.example.com", &z, &d);
	c = find(&d, "DMARC");
	ck_assert_int_eq(c->status, CHECK_PASS);
	ck_assert_ptr_nonnull(strstr(c->reason, "p=reject at _dmarc.example.com"));
	dnscheck_free(&d);

	/* Mailgun with another organization's domain, no DKIM: cannot align */
	common(&z);
	zone_add(&z, "_dmarc.customer.no", DNS_T_TXT, "v=DMARC1; p=none");
	run(&sec, "customer.no", &z, &d);
	c = find(&d, "DMARC");
	ck_assert_int_eq(c->status, CHECK_WARN);
	ck_assert_ptr_nonnull(strstr(c->reason, "mg.vitec.no"));
	ck_assert_ptr_nonnull(strstr(c->reason, "dkim-keygen customer.no"));
	ck_assert_str_eq(find(&d, "DKIM")->reason, "no selector configured: relayd does not "
	    "sign mail from customer.no; add a dkim block to domain \"customer.no\" and run "
	    "relayctl dkim-keygen customer.no SELECTOR");
	dnscheck_free(&d);

	z.rr[z.n - 1].value = "v=DMARC1; p=quarantine";
	run(&sec, "customer.no", &z, &d);
	ck_assert_int_eq(find(&d, "DMARC")->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(find(&d, "DMARC")->reason, "spam"));
	dnscheck_free(&d);

	/* two records count as none */
	common(&z);
	zone_add(&z, "_dmarc.example.com", DNS_T_TXT, "v=DMARC1; p=reject");
	zone_add(&z, "_dmarc.example.com", DNS_T_TXT, "v=DMARC1; p=none");
	run(&own, "example.com", &z, &d);
	c = find(&d, "DMARC");
	ck_assert_int_eq(c->status, CHECK_FAIL);
	ck_assert_ptr_nonnull(strstr(c->reason, "2 DMARC records"));
	ck_assert_ptr_nonnull(strstr(c->suggestion, "p=reject"));
	dnscheck_free(&d);

	/*
	 * The one to keep is offered only if it passes once kept: Mailgun
	 * with another organization's domain and no DKIM fails p=quarantine
	 * (fuzz_checkdns: it was offered, and the zone holding it alone
	 * failed DMARC all the same).
	 */
	common(&z);
	zone_add(&z, "_dmarc.customer.no", DNS_T_TXT, "v=DMARC1; p=quarantine");
	zone_add(&z, "_dmarc.customer.no", DNS_T_TXT, "v=DMARC1; p=bogus");
	run(&sec, "customer.no", &z, &d);
	c = find(&d, "DMARC");
	ck_assert_int_eq(c->status, CHECK_FAIL);
	ck_assert_msg(c->suggestion == NULL, "offered: %s", c->suggestion);
	ck_assert_msg(strstr(c->reason, "2 DMARC records") != NULL &&
	    strstr(c->reason, "would still fail") != NULL && strstr(c->reason, "spam") != NULL,
	    "%s", c->reason);
	dnscheck_free(&d);
}
END_TEST

static struct domain_checks *
sample(void)
{
	static struct domain_checks d[2];

	memset(d, 0, sizeof(d));
	d[0].domain = strdup("example.com");
	dnscheck_add(&d[0], "SPF", CHECK_FAIL, "example.com. IN TXT ( \"v=spf1 a ~all\" )",
	    "no SPF record");
	dnscheck_add(&d[0], "DKIM", CHECK_FAIL, "s1._domainkey.example.com. IN TXT ( \"a\"\n"
	    "\t\"b\" )", "s1: no key record");
	dnscheck_add(&d[0], "DMARC", CHECK_WARN, "never shown", "p=none\x1b[31m at _dmarc");
	d[1].domain = strdup("example.org");
	dnscheck_add(&d[1], "SPF", CHECK_PASS, NULL, "fine \"quoted\"");
	return d;
}

START_TEST(test_format_text)
{
	struct domain_checks *d = sample();
	struct buf b;

	buf_init(&b);
	dnscheck_format_text(d, 2, &b);
	ck_assert_str_eq(b.p,
	    "FAIL example.com SPF: no SPF record\n"
	    "    example.com. IN TXT ( \"v=spf1 a ~all\" )\n"
	    "FAIL example.com DKIM: s1: no key record\n"
	    "    s1._domainkey.example.com. IN TXT ( \"a\"\n"
	    "    \t\"b\" )\n"
	    "WARN example.com DMARC: p=none\\x1b[31m at _dmarc\n"
	    "PASS example.org SPF: fine \"quoted\"\n");
	ck_assert(dnscheck_any_failed(d, 2));
	ck_assert(!dnscheck_any_failed(d + 1, 1));
	buf_free(&b);
	dnscheck_free(&d[0]);
	dnscheck_free(&d[1]);
}
END_TEST

/* A record offered to keep is the domain's own and may hold octets a zone
 * file must escape (fuzz_checkdns: a kept DMARC record with '\\' and 0x8c
 * in rua= was printed raw inside the quotes). */
START_TEST(test_record_escaped)
{
	char *r = dnscheck_record("_dmarc.example.org", "v=DMARC1; p=none; rua=mailto:a\"b\\c\x8c@x");
	char big[300];

	ck_assert_str_eq(r, "_dmarc.example.org. IN TXT ( \"v=DMARC1; p=none; "
	    "rua=mailto:a\\\"b\\\\c\\140@x\" )");
	free(r);
	/* the plain form, as dkim-keygen prints it, when nothing needs escaping */
	r = dnscheck_record("example.org", "v=spf1 -all");
	ck_assert_str_eq(r, "example.org. IN TXT ( \"v=spf1 -all\" )");
	free(r);
	/* 255 octets a string, counted before escaping */
	memset(big, 'a', sizeof(big));
	big[0] = '"';
	big[299] = '\0';
	r = dnscheck_record("x.example.org", big);
	ck_assert_ptr_nonnull(strstr(r, "( \"\\\"aaa"));
	ck_assert_ptr_nonnull(strstr(r, "a\"\n\t\"aaaa"));
	ck_assert_int_eq(strlen(r), strlen("x.example.org. IN TXT ( \"\" )") + 299 + 1 + 4);
	free(r);
}
END_TEST

START_TEST(test_format_json)
{
	struct domain_checks *d = sample();
	char *s = dnscheck_format_json(d, 2);
	json_error_t e;
	json_t *j = json_loads(s, 0, &e), *c;

	ck_assert_msg(j != NULL, "not JSON: %s", e.text);
	ck_assert(json_is_array(j));
	ck_assert_uint_eq(json_array_size(j), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "domain")),
	    "example.com");
	c = json_object_get(json_array_get(j, 0), "checks");
	ck_assert_uint_eq(json_array_size(c), 3);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c, 0), "check")), "SPF");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c, 0), "status")),
	    "FAIL");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c, 1), "suggestion")),
	    "s1._domainkey.example.com. IN TXT ( \"a\"\n\t\"b\" )");
	/* only a FAIL has a suggestion */
	ck_assert(json_is_null(json_object_get(json_array_get(c, 2), "suggestion")));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c, 2), "reason")),
	    "p=none\x1b[31m at _dmarc");
	ck_assert_uint_eq(json_object_size(json_array_get(c, 0)), 4);
	json_decref(j);
	free(s);

	/* a name given on the command line need not be ASCII; JSON must stay UTF-8 */
	free(d[1].domain);
	d[1].domain = strdup("bl\xe5" "b\xe6" "r.no");
	s = dnscheck_format_json(d + 1, 1);
	j = json_loads(s, 0, &e);
	ck_assert_msg(j != NULL, "not JSON: %s", e.text);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "domain")),
	    "bl\\xe5b\\xe6r.no");
	json_decref(j);
	free(s);
	dnscheck_free(&d[0]);
	dnscheck_free(&d[1]);
}
END_TEST

Suite *
dnscheck_suite(void)
{
	Suite *s = suite_create("dnscheck");
	TCase *tc = tcase_create("verdicts");

	tcase_add_test(tc, test_spf_vitec);
	tcase_add_test(tc, test_spf_two_records_and_all);
	tcase_add_test(tc, test_spf_no_suggestion_when_it_would_fail);
	tcase_add_test(tc, test_spf_inhouse);
	tcase_add_test(tc, test_spf_bad_spf_key);
	tcase_add_test(tc, test_spf_lookup_failure);
	tcase_add_test(tc, test_dmarc);
	suite_add_tcase(s, tc);
	tc = tcase_create("format");
	tcase_add_test(tc, test_format_text);
	tcase_add_test(tc, test_format_json);
	tcase_add_test(tc, test_record_escaped);
	suite_add_tcase(s, tc);
	return s;
}
