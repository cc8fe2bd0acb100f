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
 * (every lookup of NAME fails, as a timeout does).  Lookups answer as a
 * recursive resolver would: CNAMEs followed (at most DNS_MAX_CNAME),
 * NXDOMAIN for a name the zone does not hold, NODATA otherwise.  The
 * domain checked is example.org; the keys are the unit tests'.
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
#include "fuzz.h"
#include "resolve.h"
#include "util.h"

#define DOMAIN	"example.org"

struct rr {
	char		*name;
	int		 type;		/* enum dns_type, or 0: lookups fail */
	char		*value;
};

struct zone {
	struct rr		*rr;
	size_t			 n;
	/* answers handed out: they live as long as the zone (resolve.h) */
	struct dns_answer	**ans;
	char			**key;
	size_t			 nans;
};

static char *
lower_name(const char *s, size_t n)
{
	char *k = xstrndup(s, n);
	size_t l = strlen(k);

	if (l > 1 && k[l - 1] == '.')
		k[l - 1] = '\0';
	ascii_lower(k);
	return k;
}

static void
zone_add(struct zone *z, const char *name, size_t nlen, int type, const char *v, size_t vlen)
{
	z->rr = xrealloc(z->rr, (z->n + 1) * sizeof(*z->rr));
	z->rr[z->n].name = lower_name(name, nlen);
	z->rr[z->n].type = type;
	z->rr[z->n].value = type == DNS_T_CNAME || type == DNS_T_MX ? lower_name(v, vlen) :
	    xstrndup(v, vlen);
	z->n++;
}

static void
zone_parse(struct zone *z, const char *p, size_t n)
{
	static const struct { const char *name; int type; } types[] = {
		{ "A", DNS_T_A }, { "AAAA", DNS_T_AAAA }, { "MX", DNS_T_MX },
		{ "TXT", DNS_T_TXT }, { "CNAME", DNS_T_CNAME }, { "ERR", 0 },
	};
	struct fuzz_in in = { (const uint8_t *)p, n };

	memset(z, 0, sizeof(*z));
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

				zone_add(z, l, ns, types[t].type, l + v, len - v);
				break;
			}
	}
}

static void
zone_free(struct zone *z)
{
	for (size_t i = 0; i < z->n; i++) {
		free(z->rr[i].name);
		free(z->rr[i].value);
	}
	for (size_t i = 0; i < z->nans; i++) {
		dns_answer_free(z->ans[i]);
		free(z->key[i]);
	}
	free(z->rr);
	free(z->ans);
	free(z->key);
}

static bool
has(const struct zone *z, const char *name, int type)
{
	for (size_t i = 0; i < z->n; i++)
		if (strcmp(z->rr[i].name, name) == 0 && (type < 0 || z->rr[i].type == type))
			return true;
	return false;
}

static void
push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
}

static const struct dns_answer *
zone_lookup(void *ctx, const char *name, enum dns_type type)
{
	struct zone *z = ctx;
	char *cur = lower_name(name, strlen(name)), *key = xasprintf("%d %s", type, cur);
	struct dns_answer *a;

	for (size_t i = 0; i < z->nans; i++)
		if (strcmp(z->key[i], key) == 0) {
			free(key);
			free(cur);
			return z->ans[i];
		}
	a = xcalloc(1, sizeof(*a));
	for (;;) {
		const char *target = NULL;

		if (has(z, cur, 0)) {
			a->status = DNS_ERROR;
			snprintf(a->why, sizeof(a->why), "timed out: no answer (fuzz)");
			break;
		}
		for (size_t i = 0; i < z->n && type != DNS_T_CNAME && !target; i++)
			if (z->rr[i].type == DNS_T_CNAME && strcmp(z->rr[i].name, cur) == 0)
				target = z->rr[i].value;
		if (target != NULL && a->nchain < DNS_MAX_CNAME) {
			push(&a->chain, &a->nchain, target);
			free(cur);
			cur = xstrdup(target);
			continue;
		}
		for (size_t i = 0; i < z->n; i++)
			if (z->rr[i].type == (int)type && strcmp(z->rr[i].name, cur) == 0)
				push(&a->rr, &a->n, z->rr[i].value);
		a->status = a->n > 0 ? DNS_ANSWER : has(z, cur, -1) ? DNS_NODATA : DNS_NXDOMAIN;
		break;
	}
	free(cur);
	z->ans = xrealloc(z->ans, (z->nans + 1) * sizeof(*z->ans));
	z->key = xrealloc(z->key, (z->nans + 1) * sizeof(*z->key));
	z->ans[z->nans] = a;
	z->key[z->nans++] = key;
	return a;
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
 * more) published in z: each replaces what its name held (TXT records,
 * and a CNAME, which cannot stand beside them).
 */
static void
publish(struct zone *z, const char *sugg)
{
	const char *p = sugg;

	while ((p = strstr(p, " IN TXT")) != NULL) {
		const char *start = p, *end = strstr(p + 1, " IN TXT");
		struct buf v;

		while (start > sugg && start[-1] != '\n')
			start--;
		char *name = lower_name(start, (size_t)(p - start));
		for (size_t i = 0; i < z->n; i++)
			if (strcmp(z->rr[i].name, name) == 0 &&
			    (z->rr[i].type == DNS_T_TXT || z->rr[i].type == DNS_T_CNAME)) {
				free(z->rr[i].name);
				free(z->rr[i].value);
				z->rr[i--] = z->rr[--z->n];
			}
		buf_init(&v);
		buf_addstr(&v, "");
		for (const char *q = strchr(p, '"'); q != NULL && (end == NULL || q < end); ) {
			const char *close = strchr(q + 1, '"');

			FUZZ_CHECK(close != NULL, "an unterminated string in \"%s\"", sugg);
			buf_add(&v, q + 1, (size_t)(close - q - 1));
			q = strchr(close + 1, '"');
		}
		zone_add(z, name, strlen(name), DNS_T_TXT, v.p, v.len);
		free(name);
		buf_free(&v);
		p += 7;
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
	struct dns_source src = { zone_lookup, &z };
	dnscheck_domain(&s.sec, DOMAIN, &src, &d);
	check_forms(&d);

	for (size_t i = 0; i < d.n; i++) {
		const struct check *c = &d.c[i];
		struct zone z2;
		struct domain_checks d2;

		if (c->status != CHECK_FAIL || c->suggestion == NULL)
			continue;
		zone_parse(&z2, (const char *)in.p, in.n);
		publish(&z2, c->suggestion);
		struct dns_source src2 = { zone_lookup, &z2 };
		dnscheck_domain(&s.sec, DOMAIN, &src2, &d2);
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
