/*
 * fuzz_checkdns — `relayctl check-dns` over a zone the fuzzer writes:
 * dnscheck.c (SPF: spf_walk and check_host() through includes,
 * redirects, a, mx, exists; DMARC), dkimcheck.c (the key records: tags,
 * p= against the key relayd signs with, CNAME delegation) and both
 * output forms.
 *
 * Input: two octets pick the configuration (the upstream's host among
 * known providers and in-house servers, its spf setting, whether the
 * domain has dkim selectors, one or two); then the zone, one record a line:
 * "NAME TYPE VALUE" with TYPE A, AAAA, MX, TXT or CNAME, or "NAME ERR"
 * (every lookup of NAME fails, as SERVFAIL does); names (and CNAME targets)
 * as resolve.c has them from ldns, in presentation form (see presented()).  The unit tests'
 * fakedns answers as a recursive resolver would: CNAMEs followed (at most
 * DNS_MAX_CNAME), NXDOMAIN for a name with nothing at or below it,
 * NODATA otherwise.  The domain checked is example.org; the keys are the
 * unit tests'.
 * Properties:
 *  - every check is PASS, WARN or FAIL with a reason; the text form has
 *    no control character in a line, the JSON form is valid JSON;
 *  - what is suggested fixes what it is offered for (dnscheck.h: "Every
 *    record suggested is checked as if published"): the zone with the
 *    suggested records published in place of those they replace gives
 *    that check no FAIL.
 */
#include "acconfig.h"

#include <ctype.h>

#include <jansson.h>

#include "config.h"
#include "dnscheck.h"
#include "fakedns.h"
#include "fuzz.h"
#include "resolve.h"
#include "util.h"

#define DOMAIN	"example.org"

/* The zone: records the input names, owned here (fakedns reads them). */
struct zone {
	struct fake_rr	*rr;		/* ends with a NULL name */
	size_t		 n;
};

static void
zone_add(struct zone *z, const char *name, size_t nlen, int type, const char *v, size_t vlen)
{
	z->rr = xrealloc(z->rr, (z->n + 2) * sizeof(*z->rr));
	z->rr[z->n].name = xstrndup(name, nlen);
	z->rr[z->n].type = type;
	z->rr[z->n].value = xstrndup(v, vlen);
	z->rr[++z->n].name = NULL;
}

/*
 * A name as ldns_rdf2str() presents one, and so as resolve.c hands names
 * to check-dns: printable ASCII, with space and ;()"\\ escaped (here:
 * absent; fakedns does not model escapes).  A name of a record or a CNAME
 * target outside that form is left out of the zone.
 */
static bool
presented(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] <= 0x20 || p[i] >= 0x7f || strchr(";()\"\\", p[i]) != NULL)
			return false;
	return true;
}

static void
zone_parse(struct zone *z, const char *p, size_t n)
{
	static const struct { const char *name; int type; } types[] = {
		{ "A", DNS_T_A }, { "AAAA", DNS_T_AAAA }, { "MX", DNS_T_MX },
		{ "TXT", DNS_T_TXT }, { "CNAME", DNS_T_CNAME }, { "ERR", FAKE_SERVFAIL },
	};
	struct fuzz_in in = { (const uint8_t *)p, n };

	z->rr = xcalloc(1, sizeof(*z->rr));	/* (the end: a NULL name) */
	z->n = 0;
	while (in.n > 0) {
		size_t len, i = 0, ns, te;
		const char *l = (const char *)fuzz_field(&in, '\n', &len);

		while (i < len && l[i] != ' ')
			i++;
		ns = i;
		while (i < len && l[i] == ' ')
			i++;
		te = i;
		while (te < len && l[te] != ' ')
			te++;
		for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
			if (ns > 0 && te - i == strlen(types[t].name) &&
			    ascii_strncasecmp(l + i, types[t].name, te - i) == 0) {
				size_t v = te < len ? te + 1 : te;

				if (presented(l, ns) && (types[t].type != DNS_T_CNAME ||
				    presented(l + v, len - v)))
					zone_add(z, l, ns, types[t].type, l + v, len - v);
				break;
			}
	}
}

static void
zone_free(struct zone *z)
{
	for (size_t i = 0; i < z->n; i++) {
		free((char *)z->rr[i].name);
		free((char *)z->rr[i].value);
	}
	free(z->rr);
}

/* Checks the domain against zone z (fakedns answers as a resolver). */
static void
check_zone(const struct cfg_domain *sec, const struct zone *z, struct domain_checks *out)
{
	struct fakedns f;
	struct dns_source src = fakedns_source(&f, z->rr);

	dnscheck_domain(sec, DOMAIN, &src, out);
	fakedns_free(&f);
}

/* The configuration the first octet picks. */
struct setup {
	struct cfg_upstream	up;
	struct cfg_dkim		dkim[2];
	struct cfg_domain	sec;
};

/* b: the host (bits 0-2), the spf setting (3-4), the Mailgun username
 * (5), the section's name (6), no dkim block (7); c: the keys (OpenSSL 3
 * takes milliseconds to read one, so most runs read one or none). */
static void
setup_init(struct setup *s, unsigned b, unsigned c)
{
	static const char *const hosts[] = { "smtp.eu.mailgun.org", "smtp.office365.com",
	    "smtp.gmail.com", "smtp.sendgrid.net", "mail.example.org", "192.0.2.25",
	    "2001:db8::25", "smtp.mailgun.org" };
	static const char *const spf[] = { NULL, "include:_spf.example.net", "ip4:192.0.2.0/24",
	    "a:mail.example.org" };

	memset(s, 0, sizeof(*s));
	s->up.name = (char *)"up";
	s->up.host = (char *)hosts[b % 8];
	s->up.spf = (char *)spf[(b >> 3) % 4];
	s->up.username = (char *)((b & 0x20) ? "postmaster@mg.example.org" : "user@mailgun.net");
	s->up.line = 7;
	s->dkim[0].selector = (char *)"s1";
	s->dkim[0].key_file = (char *)FUZZ_DATADIR "/dkim-rsa2048.key";
	s->dkim[1].selector = (char *)"s2";
	s->dkim[1].key_file = (char *)FUZZ_DATADIR "/dkim-ed25519.key";
	s->dkim[1].algorithm = CFG_DKIM_ED25519_SHA256;
	s->sec.name = (char *)((b & 0x40) ? "*" : DOMAIN);
	s->sec.upstream = &s->up;
	s->sec.dkim = (c & 1) ? s->dkim : s->dkim + 1;
	s->sec.ndkim = (b & 0x80) ? 0 : (c & 1) ? 2 : 1;
}

static void
check_forms(const struct domain_checks *d)
{
	struct buf text;
	char *j = dnscheck_format_json(d, 1);
	json_error_t err;
	json_t *v = json_loads(j, 0, &err);

	FUZZ_CHECK(v != NULL && json_is_array(v), "check-dns --json printed invalid JSON: %s",
	    err.text);
	json_decref(v);
	free(j);
	buf_init(&text);
	buf_addstr(&text, "");
	dnscheck_format_text(d, 1, &text);
	for (size_t i = 0; i < text.len; i++)
		FUZZ_CHECK((unsigned char)text.p[i] >= 0x20 || text.p[i] == '\n' || text.p[i] == '\t',
		    "control octet 0x%02x in the text output", (unsigned char)text.p[i]);
	buf_free(&text);
	for (size_t i = 0; i < d->n; i++)
		FUZZ_CHECK(d->c[i].status <= CHECK_FAIL && d->c[i].reason != NULL &&
		    d->c[i].reason[0] != '\0', "check %s without a reason", d->c[i].name);
}

/*
 * The records of a suggestion ("NAME. IN TXT ( "..." "..." )", one or
 * more, each string in zone-file form: \" \\ \DDD) published in z: each
 * replaces what its name held (TXT records, and a CNAME, which cannot
 * stand beside them).  The strings are read as a zone file reads them, so
 * " IN TXT" inside one is text.
 */
static void
publish(struct zone *z, const char *sugg)
{
	const char *p = sugg;

	while ((p = strstr(p, " IN TXT (")) != NULL) {
		const char *start = p, *q = p + strlen(" IN TXT (");
		struct buf v;
		size_t nlen;

		while (start > sugg && start[-1] != '\n')
			start--;
		nlen = (size_t)(p - start);
		if (nlen > 1 && start[nlen - 1] == '.')
			nlen--;
		for (size_t i = 0; i < z->n; i++)
			if (strlen(z->rr[i].name) == nlen &&
			    ascii_strncasecmp(z->rr[i].name, start, nlen) == 0 &&
			    (z->rr[i].type == DNS_T_TXT || z->rr[i].type == DNS_T_CNAME)) {
				free((char *)z->rr[i].name);
				free((char *)z->rr[i].value);
				z->rr[i--] = z->rr[--z->n];
				z->rr[z->n].name = NULL;
			}
		buf_init(&v);
		buf_addstr(&v, "");
		for (;;) {
			q += strspn(q, " \t\n");
			if (*q == ')')
				break;
			FUZZ_CHECK(*q == '"', "not a quoted string at \"%.20s\" in \"%s\"", q, sugg);
			for (q++; *q != '"'; q++) {
				FUZZ_CHECK(*q >= 0x20 && *q <= 0x7e, "octet 0x%02x unescaped in \"%s\"",
				    (unsigned char)*q, sugg);
				if (*q != '\\') {
					buf_add(&v, q, 1);
					continue;
				}
				if (isdigit((unsigned char)q[1]) && isdigit((unsigned char)q[2]) &&
				    isdigit((unsigned char)q[3])) {
					int o = (q[1] - '0') * 100 + (q[2] - '0') * 10 + (q[3] - '0');

					FUZZ_CHECK(o <= 255, "\\%.3s in \"%s\"", q + 1, sugg);
					char ch = (char)o;
					buf_add(&v, &ch, 1);
					q += 3;
				} else {
					FUZZ_CHECK(q[1] == '"' || q[1] == '\\', "\\%c in \"%s\"", q[1], sugg);
					buf_add(&v, ++q, 1);
				}
			}
			q++;
		}
		zone_add(z, start, nlen, DNS_T_TXT, v.p, v.len);
		buf_free(&v);
		p = q;
	}
}

/* The check of d that c is again (same name; for DKIM, same selector). */
static const struct check *
same_check(const struct domain_checks *d, const struct check *c)
{
	size_t sel = strcspn(c->reason, ":");

	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->c[i].name, c->name) == 0 && (strcmp(c->name, "DKIM") != 0 ||
		    strncmp(d->c[i].reason, c->reason, sel + 1) == 0))
			return &d->c[i];
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct setup s;
	struct zone z;
	struct domain_checks d;

	unsigned b = fuzz_byte(&in);

	setup_init(&s, b, fuzz_byte(&in));
	zone_parse(&z, (const char *)in.p, in.n);
	check_zone(&s.sec, &z, &d);
	check_forms(&d);

	for (size_t i = 0; i < d.n; i++) {
		const struct check *c = &d.c[i];
		struct zone z2;
		struct domain_checks d2;

		if (c->status != CHECK_FAIL || c->suggestion == NULL)
			continue;
		zone_parse(&z2, (const char *)in.p, in.n);
		publish(&z2, c->suggestion);
		check_zone(&s.sec, &z2, &d2);
		const struct check *again = same_check(&d2, c);
		FUZZ_CHECK(again != NULL && again->status != CHECK_FAIL,
		    "%s: published as suggested,\n%s\n  it still fails: %s\n  (before: %s)", c->name,
		    c->suggestion, again ? again->reason : "(no check)", c->reason);
		dnscheck_free(&d2);
		zone_free(&z2);
	}
	dnscheck_free(&d);
	zone_free(&z);
	return 0;
}
