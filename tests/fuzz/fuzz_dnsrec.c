/*
 * fuzz_dnsrec — the TXT records `relayctl check-dns` reads, as text:
 * SPF records (spf.c: the term parser, the normalized keys, the record
 * it suggests), DMARC records and organizational domains (dmarc.c).
 *
 * Input: up to 8 records, one per line (a NUL ends the input).  Each is
 * read as SPF and as DMARC, and as a domain name; all of them together
 * are merged into a suggestion, as check-dns does with a domain's SPF
 * records.  Properties:
 *  - spf_parse: the result and the count of invalid terms agree, every
 *    term is a word of the record, a reason comes with each invalid one;
 *  - a term's key is a valid term whose key is itself (normalizing twice
 *    changes nothing);
 *  - the suggestion is valid SPF (no invalid term), ends in one "all" or
 *    one redirect, holds the include asked for and every valid mechanism
 *    of the records (but "all" and the dropped one);
 *  - dmarc_parse accepts only what dmarc_is_record calls a record, with
 *    a valid policy, pct within 0..100, rua a mailto: or nothing, and
 *    says why it refuses;
 *  - the organizational domain is a lower-case suffix of the domain,
 *    its own organizational domain, and aligned with the domain.
 */
#include "acconfig.h"

#include <ctype.h>

#include "dmarc.h"
#include "fuzz.h"
#include "spf.h"
#include "util.h"

#define ADD	"include:_spf.example.net"

static void
check_key(const char *term)
{
	char *k = spf_term_key(term, "example.org"), *k2;
	struct spf_record r;
	char *rec;

	if (k == NULL)
		return;
	for (const char *c = k; *c; c++)
		FUZZ_CHECK(!isupper((unsigned char)*c) || strchr(k, '%') != NULL,
		    "key \"%s\" not lower case", k);
	rec = xasprintf("v=spf1 %s", k);
	FUZZ_CHECK(spf_parse(rec, &r) == 0 && r.n == 1, "key \"%s\" of \"%s\" is no valid term",
	    k, term);
	spf_record_free(&r);
	free(rec);
	k2 = spf_term_key(k, "other.example");
	FUZZ_CHECK(k2 != NULL && strcmp(k, k2) == 0, "key \"%s\" of \"%s\" has key \"%s\"", k,
	    term, k2 ? k2 : "(none)");
	free(k);
	free(k2);
}

static void
check_spf(const char *txt, struct spf_record *r)
{
	int rc = spf_parse(txt, r);
	int bad = 0;

	FUZZ_CHECK((rc == 0) == (r->nbad == 0) && (r->why != NULL) == (r->nbad > 0),
	    "rc %d with %d bad terms", rc, r->nbad);
	for (size_t i = 0; i < r->n; i++) {
		const struct spf_term *t = &r->t[i];

		FUZZ_CHECK(t->text != NULL && t->text[0] != '\0' && strchr(t->text, ' ') == NULL &&
		    strstr(txt, t->text) != NULL, "term \"%s\" is no word of the record", t->text);
		if (t->kind == SPF_INVALID) {
			FUZZ_CHECK(t->why != NULL, "an invalid term without a reason");
			bad++;
		} else {
			FUZZ_CHECK(t->cidr4 >= 0 && t->cidr4 <= 32 && t->cidr6 >= 0 && t->cidr6 <= 128,
			    "prefix lengths %d %d", t->cidr4, t->cidr6);
			check_key(t->text);
		}
	}
	FUZZ_CHECK(bad <= r->nbad, "%d invalid terms, %d counted", bad, r->nbad);
}

static void
check_suggestion(char **recs, size_t n, const struct spf_record *parsed)
{
	const char *drop = n > 0 && parsed[0].n > 0 ? parsed[0].t[0].text : "";
	char *s = spf_suggest((const char *const *)recs, n, ADD, &drop, 1);
	struct spf_record r;
	int alls = 0, redirects = 0;
	bool add = false;

	FUZZ_CHECK(spf_parse(s, &r) == 0, "suggestion \"%s\" is not valid SPF: %s", s,
	    r.why ? r.why : "");
	for (size_t i = 0; i < r.n; i++) {
		alls += r.t[i].kind == SPF_ALL;
		redirects += r.t[i].kind == SPF_REDIRECT;
		add |= ascii_strcasecmp(r.t[i].text, ADD) == 0;
	}
	FUZZ_CHECK(alls + redirects == 1, "suggestion \"%s\": %d all, %d redirect", s, alls,
	    redirects);
	FUZZ_CHECK(add, "suggestion \"%s\" without %s", s, ADD);
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < parsed[k].n; i++) {
			const struct spf_term *t = &parsed[k].t[i];
			bool found = false;

			if (t->kind == SPF_INVALID || t->kind == SPF_ALL || t->kind == SPF_REDIRECT ||
			    t->kind == SPF_EXP || t->kind == SPF_MODIFIER ||
			    ascii_strcasecmp(t->text, drop) == 0)
				continue;
			for (size_t j = 0; j < r.n && !found; j++)
				found = ascii_strcasecmp(r.t[j].text, t->text) == 0;
			FUZZ_CHECK(found, "suggestion \"%s\" lost \"%s\"", s, t->text);
		}
	spf_record_free(&r);
	free(s);
}

static void
check_dmarc(const char *txt)
{
	struct dmarc_record d;

	if (dmarc_parse(txt, &d) == 0) {
		FUZZ_CHECK(dmarc_is_record(txt), "\"%s\" parsed, but is no DMARC record", txt);
		FUZZ_CHECK(d.p <= DMARC_REJECT && d.sp <= DMARC_REJECT && d.pct >= 0 && d.pct <= 100,
		    "policy %d/%d pct %d", d.p, d.sp, d.pct);
		FUZZ_CHECK(d.rua[0] == '\0' || ascii_strncasecmp(d.rua, "mailto:", 7) == 0,
		    "rua \"%s\"", d.rua);
	} else {
		FUZZ_CHECK(d.why[0] != '\0', "\"%s\" refused without a reason", txt);
	}
	FUZZ_CHECK(memchr(d.why, '\0', sizeof(d.why)) != NULL, "why not terminated");
}

static void
check_org(const char *dom)
{
	char org[256], again[256], low[512];
	size_t n = strlen(dom), o;

	/* (only of names: an empty label makes no domain) */
	if (n >= sizeof(low) - 1 || n == 0 || dom[0] == '.' || strstr(dom, "..") != NULL)
		return;
	dmarc_org_domain(dom, org, sizeof(org));
	snprintf(low, sizeof(low), "%s", dom);
	ascii_lower(low);
	if (n > 0 && low[n - 1] == '.')
		low[--n] = '\0';
	o = strlen(org);
	if (n < sizeof(org)) {
		FUZZ_CHECK(o <= n && strcmp(low + n - o, org) == 0 &&
		    (o == n || low[n - o - 1] == '.'),
		    "organizational domain \"%s\" is no suffix of \"%s\"", org, dom);
		dmarc_org_domain(org, again, sizeof(again));
		FUZZ_CHECK(strcmp(org, again) == 0, "\"%s\": \"%s\", then \"%s\"", dom, org, again);
		FUZZ_CHECK(dmarc_aligned(dom, org), "\"%s\" not aligned with \"%s\"", dom, org);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	char *recs[8];
	struct spf_record parsed[8];
	size_t n = 0;

	while (in.n > 0 && n < 8) {
		size_t len;
		const uint8_t *l = fuzz_field(&in, '\n', &len);

		recs[n++] = fuzz_dup(l, len, true);
	}
	for (size_t i = 0; i < n; i++) {
		check_spf(recs[i], &parsed[i]);
		check_dmarc(recs[i]);
		check_org(recs[i]);
	}
	check_suggestion(recs, n, parsed);
	for (size_t i = 0; i < n; i++) {
		spf_record_free(&parsed[i]);
		free(recs[i]);
	}
	return 0;
}
