/*
 * dnscheck — `relayctl check-dns` for one sender domain: SPF and DMARC
 * here, DKIM in dkimcheck.c, and the output forms (see dnscheck.h).
 *
 * What "authorizes the upstream" means (SPF): the upstream's SPF term —
 * its `spf` key, else the built-in one of a known provider (chosen by the
 * upstream's host, table below) — is reached from the domain's record
 * through include and redirect, with a '+' qualifier all the way (a
 * provider whose alternatives are listed is reached by any of them).  An
 * upstream relayd knows no term for (an in-house server) is authorized
 * when check_host() for its host's own addresses (A, AAAA) gives pass:
 * such a server sends straight to the recipients.  A provider's own
 * submission host is never taken as its sending address.
 *
 * The suggestion (SPF): the domain's records merged into one, the terms in
 * their order, invalid terms and the domain's own terms that caused the
 * failure (a dead include, void a/mx/exists) left out, the upstream's term
 * added before "all", "+all" and "?all" turned into "~all", "~all" added
 * when there is no all term (RFC 7208 4.7: none means neutral for everyone
 * else; ~all is what the providers' own guides publish).  It is then
 * checked exactly as the published record would be, and offered only if
 * that check passes.
 */
#include "acconfig.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "dmarc.h"
#include "dnscheck.h"
#include "keygen.h"
#include "spf.h"
#include "util.h"

/*
 * Providers known by their submission host.  spf: what their own setup
 * guides tell customers to publish (Mailgun: include:mailgun.org, whose
 * record includes _spf.mailgun.org and _spf.eu.mailgun.org; for the EU
 * region the Norwegian vendors' guides say include:_spf.eu.mailgun.org,
 * which is also what relayd suggests there; SendGrid: include:sendgrid.net;
 * Microsoft 365: include:spf.protection.outlook.com; Google Workspace:
 * include:_spf.google.com).  own_bounce: the provider sends with a
 * return path in a domain of its own, so SPF never aligns for DMARC
 * (Mailgun: unless its domain, named in the upstream's username, shares
 * the organizational domain of the sender).
 */
enum bounce { BOUNCE_SENDER = 0, BOUNCE_PROVIDER, BOUNCE_MAILGUN };

static const struct provider {
	const char	*name;
	const char	*host;		/* the host, or a suffix ".x" matches any name below x */
	const char	*spf;
	const char	*also[3];
	enum bounce	 bounce;
	const char	*bounce_domain;
} providers[] = {
	{ "Mailgun (EU)", ".eu.mailgun.org", "include:_spf.eu.mailgun.org",
	    { "include:eu.mailgun.org", "include:mailgun.org" }, BOUNCE_MAILGUN, "mailgun.org" },
	{ "Mailgun (US)", ".mailgun.org", "include:mailgun.org",
	    { "include:_spf.mailgun.org" }, BOUNCE_MAILGUN, "mailgun.org" },
	{ "SendGrid", ".sendgrid.net", "include:sendgrid.net", { NULL }, BOUNCE_PROVIDER,
	    "sendgrid.net" },
	{ "Office 365", ".office365.com", "include:spf.protection.outlook.com", { NULL },
	    BOUNCE_SENDER, NULL },
	{ "Office 365", ".outlook.com", "include:spf.protection.outlook.com", { NULL },
	    BOUNCE_SENDER, NULL },
	{ "Google", ".gmail.com", "include:_spf.google.com", { NULL }, BOUNCE_SENDER, NULL },
	{ "Google", ".googlemail.com", "include:_spf.google.com", { NULL }, BOUNCE_SENDER, NULL },
	{ "Google", ".google.com", "include:_spf.google.com", { NULL }, BOUNCE_SENDER, NULL },
};

/* An address no sane SPF record authorizes (240/4 is reserved): one that
 * passes it passes everyone. */
static const unsigned char probe4[4] = { 240, 0, 0, 1 };

const char *
check_status_name(enum check_status s)
{
	return s == CHECK_FAIL ? "FAIL" : s == CHECK_WARN ? "WARN" : "PASS";
}

void
dnscheck_add(struct domain_checks *d, const char *name, enum check_status st,
    const char *suggestion, const char *fmt, ...)
{
	struct check *c;
	va_list ap;

	d->c = xrealloc(d->c, (d->n + 1) * sizeof(*d->c));
	c = &d->c[d->n++];
	c->name = xstrdup(name);
	c->status = st;
	va_start(ap, fmt);
	c->reason = xvasprintf(fmt, ap);
	va_end(ap);
	c->suggestion = suggestion != NULL ? xstrdup(suggestion) : NULL;
}

void
dnscheck_free(struct domain_checks *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->c[i].name);
		free(d->c[i].reason);
		free(d->c[i].suggestion);
	}
	free(d->c);
	free(d->domain);
	memset(d, 0, sizeof(*d));
}

/*
 * value as keygen_txt_record() writes it, but any octet allowed: a record
 * offered to keep is the domain's own, and may hold what a zone file must
 * escape (RFC 1035 5.1): '"' and '\' as \" and \\, other octets outside
 * printable ASCII as \DDD.  Character-strings of KEYGEN_TXT_MAX octets.
 */
static char *
record_escaped(const char *owner, const char *value)
{
	size_t len = strlen(value), off = 0;
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "%s. IN TXT (", owner);
	do {
		size_t n = len - off < KEYGEN_TXT_MAX ? len - off : KEYGEN_TXT_MAX;

		buf_addstr(&b, off == 0 ? " \"" : "\n\t\"");
		for (size_t i = off; i < off + n; i++) {
			unsigned char ch = (unsigned char)value[i];

			if (ch == '"' || ch == '\\')
				buf_printf(&b, "\\%c", ch);
			else if (ch < 0x20 || ch > 0x7e)
				buf_printf(&b, "\\%03u", ch);
			else
				buf_add(&b, &value[i], 1);
		}
		buf_addstr(&b, "\"");
		off += n;
	} while (off < len);
	buf_addstr(&b, " )");
	return b.p;
}

char *
dnscheck_record(const char *owner, const char *value)
{
	char *o = xasprintf("%s.", owner), *r = keygen_txt_record(o, value);
	size_t n;

	free(o);
	if (r == NULL)
		return record_escaped(owner, value);
	n = strlen(r);
	if (n > 0 && r[n - 1] == '\n')
		r[n - 1] = '\0';
	return r;
}

/* ---- the upstream ------------------------------------------------------- */

static bool
host_matches(const char *host, const char *pat)
{
	size_t h = strlen(host), p = strlen(pat);

	if (pat[0] != '.')
		return ascii_strcasecmp(host, pat) == 0;
	if (ascii_strcasecmp(host, pat + 1) == 0)
		return true;
	return h > p && ascii_strcasecmp(host + h - p, pat) == 0;
}

static const struct provider *
provider_of(const struct cfg_upstream *u)
{
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
		if (host_matches(u->host, providers[i].host))
			return &providers[i];
	return NULL;
}

struct upstream_spf {
	const struct cfg_upstream *u;
	const struct provider	*prov;
	char			*want;		/* the term to add */
	char			*keys[4];	/* normalized terms that authorize it */
	size_t			 nkeys;
	bool			 by_address;	/* in-house: check_host() of its addresses */
};

static void
upstream_spf_init(struct upstream_spf *us, const struct cfg_upstream *u, const char *domain)
{
	unsigned char bin[16];
	char *k;

	memset(us, 0, sizeof(*us));
	us->u = u;
	us->prov = provider_of(u);
	if (u->spf != NULL)
		us->want = xstrdup(u->spf);
	else if (us->prov != NULL)
		us->want = xstrdup(us->prov->spf);
	else {
		us->by_address = true;
		if (inet_pton(AF_INET, u->host, bin) == 1)
			us->want = xasprintf("ip4:%s", u->host);
		else if (inet_pton(AF_INET6, u->host, bin) == 1)
			us->want = xasprintf("ip6:%s", u->host);
		else
			us->want = xasprintf("a:%s", u->host);
	}
	if ((k = spf_term_key(us->want, domain)) != NULL)
		us->keys[us->nkeys++] = k;
	for (size_t i = 0; u->spf == NULL && us->prov != NULL && i < 3 && us->prov->also[i]; i++)
		if ((k = spf_term_key(us->prov->also[i], domain)) != NULL)
			us->keys[us->nkeys++] = k;
}

static void
upstream_spf_free(struct upstream_spf *us)
{
	free(us->want);
	for (size_t i = 0; i < us->nkeys; i++)
		free(us->keys[i]);
}

/* "upstream mailgun (smtp.eu.mailgun.org, Mailgun (EU))" */
static void
upstream_name(const struct upstream_spf *us, struct buf *b)
{
	buf_printf(b, "upstream %s (%s%s%s)", us->u->name, us->u->host,
	    us->prov != NULL ? ", " : "", us->prov != NULL ? us->prov->name : "");
}

/* ---- SPF ---------------------------------------------------------------- */

struct spf_verdict {
	enum check_status	 st;
	struct buf		 say[3];	/* what was found, by status */
	struct buf		 reason;	/* composed: the worst first */
	const char		**records;	/* the v=spf1 records found */
	size_t			 nrec;
	const char		**drop;		/* the domain's terms to leave out */
	size_t			 ndrop;
	bool			 fixable;	/* a record to publish can be built */
	bool			 authorized;
};

static void verdict_say(struct spf_verdict *v, enum check_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
verdict_say(struct spf_verdict *v, enum check_status st, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	buf_printf(&v->say[st], "%s%s", v->say[st].len > 0 ? "; " : "", s);
	free(s);
	if (st > v->st)
		v->st = st;
}

/* The reason: the worst problems first, then the lesser ones. */
static void
verdict_compose(struct spf_verdict *v)
{
	buf_reset(&v->reason);
	for (int st = CHECK_FAIL; st >= CHECK_PASS; st--) {
		if (v->say[st].len == 0 || (st == CHECK_PASS && v->st != CHECK_PASS))
			continue;
		buf_printf(&v->reason, "%s%s", v->reason.len > 0 ? "; also: " : "", v->say[st].p);
	}
}

/* "include:a.example 4, mx 1": what each of the record's terms costs. */
static void
lookup_costs(const struct spf_walk *w, const char *record, struct buf *b)
{
	struct spf_record rec;
	bool first = true;

	spf_parse(record, &rec);
	for (size_t i = 0; i < rec.n && i < w->nterms; i++) {
		if (w->cost[i] == 0)
			continue;
		buf_printf(b, "%s%s %d", first ? "" : ", ", rec.t[i].text, w->cost[i]);
		first = false;
	}
	spf_record_free(&rec);
}

/* The domain's own terms that only cause void lookups (they authorize nothing). */
static void
drop_void_terms(struct spf_verdict *v, const struct spf_walk *w, const struct spf_record *rec)
{
	for (size_t i = 0; i < rec->n && i < w->nterms; i++) {
		enum spf_kind k = rec->t[i].kind;

		if (w->void_of[i] > 0 && (k == SPF_A || k == SPF_MX || k == SPF_EXISTS)) {
			v->drop = xrealloc(v->drop, (v->ndrop + 1) * sizeof(*v->drop));
			v->drop[v->ndrop++] = xstrdup(rec->t[i].text);
		}
	}
}

/* Does the record authorize the upstream?  Says how, or what is missing. */
static void
spf_authorizes(struct spf_verdict *v, const struct spf_walk *w, const struct upstream_spf *us,
    const char *domain, const char *txt, const struct dns_source *dns, struct buf *how)
{
	for (size_t i = 0; i < w->nreached; i++)
		for (size_t j = 0; j < us->nkeys; j++)
			if (strcmp(w->reached[i], us->keys[j]) == 0) {
				buf_printf(how, "%s reached", w->reached[i]);
				v->authorized = true;
				return;
			}
	if (!us->by_address)
		return;
	unsigned char bin[16];
	enum dns_type types[2] = { DNS_T_A, DNS_T_AAAA };
	char why[300];

	if (inet_pton(AF_INET, us->u->host, bin) == 1 || inet_pton(AF_INET6, us->u->host, bin) == 1) {
		int af = strchr(us->u->host, ':') != NULL ? AF_INET6 : AF_INET;

		if (spf_check_host(dns, domain, txt, af, bin, why, sizeof(why)) == SPF_R_PASS) {
			buf_printf(how, "%s passes (%s)", us->u->host, why);
			v->authorized = true;
		}
		return;
	}
	for (size_t t = 0; t < 2; t++) {
		const struct dns_answer *a = dns->lookup(dns->ctx, us->u->host, types[t]);
		int af = types[t] == DNS_T_A ? AF_INET : AF_INET6;

		for (size_t i = 0; a->status == DNS_ANSWER && i < a->n; i++) {
			if (inet_pton(af, a->rr[i], bin) == 1 &&
			    spf_check_host(dns, domain, txt, af, bin, why, sizeof(why)) == SPF_R_PASS) {
				buf_printf(how, "%s's address %s passes (%s)", us->u->host,
				    a->rr[i], why);
				v->authorized = true;
				return;
			}
		}
	}
}

/* Checks one record (the only one found, or a suggestion). */
static void
spf_check_record(struct spf_verdict *v, const char *domain, const char *record, bool given,
    const struct upstream_spf *us, const struct dns_source *dns)
{
	struct spf_walk w;
	struct spf_record rec;
	struct buf how, up, costs;
	char why[400];
	enum spf_result pr;
	int all;

	buf_init(&how);
	buf_init(&up);
	buf_init(&costs);
	buf_addstr(&how, "");
	buf_addstr(&costs, "");
	upstream_name(us, &up);
	spf_parse(record, &rec);
	spf_walk(dns, domain, given ? record : NULL, &w);
	lookup_costs(&w, record, &costs);
	switch (w.err) {
	case SPF_WALK_TEMPERROR:
		verdict_say(v, CHECK_FAIL, "a lookup failed while following the record, so it "
		    "could not be checked: %s", w.why);
		v->fixable = false;
		verdict_compose(v);
		goto out;
	case SPF_WALK_PERMERROR:
		if (w.lookups > SPF_MAX_LOOKUPS)
			verdict_say(v, CHECK_FAIL, "permerror: %d DNS lookups (at most %d, RFC "
			    "7208 4.6.4; per term: %s): receivers fail SPF for every message; "
			    "remove or replace terms you no longer need", w.lookups,
			    SPF_MAX_LOOKUPS, costs.p);
		else
			verdict_say(v, CHECK_FAIL, "permerror: %s", w.why);
		if (w.voids > SPF_MAX_VOID)
			drop_void_terms(v, &w, &rec);
		else if (w.err_term >= 0 && (size_t)w.err_term < rec.n &&
		    w.lookups <= SPF_MAX_LOOKUPS && rec.t[w.err_term].kind != SPF_INVALID) {
			v->drop = xrealloc(v->drop, (v->ndrop + 1) * sizeof(*v->drop));
			v->drop[v->ndrop++] = xstrdup(rec.t[w.err_term].text);
		}
		break;
	default:
		break;
	}
	if (w.err == SPF_WALK_OK) {
		pr = spf_check_host(dns, domain, given ? record : NULL, AF_INET, probe4, why,
		    sizeof(why));
		all = spf_find_all(&rec);
		if (pr == SPF_R_PASS)
			verdict_say(v, CHECK_FAIL, "%s", all >= 0 && rec.t[all].qual == '+' ?
			    "+all lets every server on the Internet send as this domain" :
			    "it lets every server on the Internet send as this domain");
		else if (pr == SPF_R_NEUTRAL)
			verdict_say(v, CHECK_WARN, "%s", all >= 0 ? "?all: mail from servers it "
			    "does not list gets neutral, which receivers treat as no SPF at all; "
			    "~all or -all is what makes SPF count" : "it has no all term: mail from "
			    "servers it does not list gets neutral; end it with ~all or -all");
		else if (pr == SPF_R_TEMPERROR || pr == SPF_R_PERMERROR)
			verdict_say(v, CHECK_FAIL, "%s: %s", spf_result_name(pr), why);
	}
	if (w.err != SPF_WALK_TEMPERROR) {
		spf_authorizes(v, &w, us, domain, given ? record : NULL, dns, &how);
		if (!v->authorized)
			verdict_say(v, CHECK_FAIL, "it does not authorize %s: add %s", up.p, us->want);
	}
	if (v->st == CHECK_PASS)
		verdict_say(v, CHECK_PASS, "\"%s\" authorizes %s (%s); %d of %d DNS lookups",
		    record, up.p, how.p, w.lookups, SPF_MAX_LOOKUPS);
	verdict_compose(v);
	if (v->st != CHECK_PASS)
		buf_printf(&v->reason, " (the record: \"%s\")", record);
out:
	spf_walk_free(&w);
	spf_record_free(&rec);
	buf_free(&how);
	buf_free(&up);
	buf_free(&costs);
}

static void
verdict_init(struct spf_verdict *v)
{
	memset(v, 0, sizeof(*v));
	buf_init(&v->reason);
	buf_addstr(&v->reason, "");
	for (int i = 0; i < 3; i++) {
		buf_init(&v->say[i]);
		buf_addstr(&v->say[i], "");
	}
}

static void
verdict_free(struct spf_verdict *v)
{
	buf_free(&v->reason);
	for (int i = 0; i < 3; i++)
		buf_free(&v->say[i]);
	free(v->records);
	for (size_t i = 0; i < v->ndrop; i++)
		free((char *)v->drop[i]);
	free(v->drop);
}

/* The verdict on domain's SPF as published (txt NULL) or as txt would be. */
static void
spf_verdict(struct spf_verdict *v, const char *domain, const char *txt,
    const struct upstream_spf *us, const struct dns_source *dns)
{
	const struct dns_answer *a = NULL;
	struct buf up;

	verdict_init(v);
	v->fixable = true;
	if (txt != NULL) {
		v->records = xcalloc(1, sizeof(char *));
		v->records[v->nrec++] = txt;
	} else {
		a = dns->lookup(dns->ctx, domain, DNS_T_TXT);
		if (a->status == DNS_ERROR) {
			verdict_say(v, CHECK_FAIL, "lookup of TXT %s failed: %s; nothing could be "
			    "checked", domain, a->why);
			v->fixable = false;
			verdict_compose(v);
			return;
		}
		v->records = xcalloc(a->n + 1, sizeof(char *));
		for (size_t i = 0; a->status == DNS_ANSWER && i < a->n; i++)
			if (spf_is_record(a->rr[i]))
				v->records[v->nrec++] = a->rr[i];
	}
	buf_init(&up);
	upstream_name(us, &up);
	if (v->nrec == 0)
		verdict_say(v, CHECK_FAIL, "no SPF record at %s%s: receivers cannot tell that %s "
		    "may send for it", domain, a != NULL && a->status == DNS_NXDOMAIN ?
		    " (the name does not exist)" : "", up.p);
	else if (v->nrec > 1)
		verdict_say(v, CHECK_FAIL, "%zu SPF records at %s: receivers answer permerror "
		    "(RFC 7208 4.5) and SPF fails for every message; merge them into one",
		    v->nrec, domain);
	else
		spf_check_record(v, domain, v->records[0], txt != NULL, us, dns);
	if (v->nrec != 1)
		verdict_compose(v);
	buf_free(&up);
}

static void
spf_check(const struct upstream_spf *us, const char *domain, const struct dns_source *dns,
    struct domain_checks *out)
{
	struct spf_verdict v, again;
	char *cand = NULL, *sugg = NULL;

	spf_verdict(&v, domain, NULL, us, dns);
	if (us->nkeys == 0) {
		/* a `spf` setting that names no mechanism a record could reach */
		verdict_say(&v, CHECK_FAIL, "upstream %s's spf = \"%s\" (line %d of the "
		    "configuration) is not an SPF "
		    "mechanism with a '+' qualifier, so nothing can be checked against it; "
		    "write it as the provider documents it, e.g. \"include:_spf.example.net\"",
		    us->u->name, us->want, us->u->line);
		verdict_compose(&v);
		v.fixable = false;
	}
	if (v.st == CHECK_FAIL && v.fixable) {
		cand = spf_suggest(v.records, v.nrec, v.authorized ? NULL : us->want,
		    v.drop, v.ndrop);
		spf_verdict(&again, domain, cand, us, dns);
		if (again.st == CHECK_PASS)
			sugg = dnscheck_record(domain, cand);
		else if (v.nrec == 1 && strcmp(cand, v.records[0]) == 0)
			buf_printf(&v.reason, "; no record to suggest: relayd has nothing to add or "
			    "take out that would fix it");
		else
			buf_printf(&v.reason, "; no record to suggest: \"%s\" would fail too: %s",
			    cand, again.say[CHECK_FAIL].p);
		verdict_free(&again);
	}
	dnscheck_add(out, "SPF", v.st, sugg, "%s", v.reason.p);
	free(cand);
	free(sugg);
	verdict_free(&v);
}

/* ---- DMARC -------------------------------------------------------------- */

/* The domain of the return path the upstream sends with, when not the sender's. */
static const char *
foreign_bounce(const struct upstream_spf *us, const char *domain)
{
	const char *at;

	if (us->prov == NULL || us->prov->bounce == BOUNCE_SENDER)
		return NULL;
	if (us->prov->bounce == BOUNCE_PROVIDER)
		return us->prov->bounce_domain;
	at = us->u->username != NULL ? strrchr(us->u->username, '@') : NULL;
	if (at == NULL || at[1] == '\0')
		return us->prov->bounce_domain;
	return dmarc_aligned(at + 1, domain) ? NULL : at + 1;
}

/* The verdict on the one DMARC record rec, found at where (orgname: the
 * organizational domain's, whose sp= applies).  *reason is allocated. */
static enum check_status
dmarc_judge(const struct cfg_domain *sec, const struct upstream_spf *us, const char *domain,
    const char *where, bool org, const char *rec, char **reason)
{
	struct dmarc_record dr;
	enum dmarc_policy pol;
	const char *bounce;
	struct buf up;
	enum check_status st;

	if (dmarc_parse(rec, &dr) == -1) {
		*reason = xasprintf("the record at %s is not valid: %s; receivers apply no policy "
		    "(the record: \"%s\")", where, dr.why, rec);
		return CHECK_FAIL;
	}
	buf_init(&up);
	upstream_name(us, &up);
	pol = org ? dr.sp : dr.p;
	bounce = sec->ndkim == 0 ? foreign_bounce(us, domain) : NULL;
	if (bounce != NULL) {
		st = pol == DMARC_NONE ? CHECK_WARN : CHECK_FAIL;
		*reason = xasprintf("p=%s at %s, but %s sends with a return path in %s, so SPF "
		    "cannot align with %s, and relayd signs nothing for %s (no dkim block): its mail "
		    "fails DMARC%s; add DKIM: a dkim block in domain \"%s\" of relayd.conf, then "
		    "relayctl dkim-keygen %s SELECTOR, and publish the record it prints",
		    dmarc_policy_name(pol), where, up.p, bounce, domain, domain,
		    pol == DMARC_REJECT ? " and receivers refuse it" : pol == DMARC_QUARANTINE ?
		    " and receivers put it in spam" : " (p=none: delivered, but reported)",
		    sec->name, domain);
	} else if (pol == DMARC_NONE) {
		st = CHECK_WARN;
		*reason = xasprintf("p=none at %s%s: receivers only report; once the reports%s "
		    "show your mail passing, move to p=quarantine", where,
		    org ? " (the organizational domain's record)" : "",
		    dr.rua[0] ? "" : " (add rua=mailto:... to get them)");
	} else {
		st = CHECK_PASS;
		*reason = xasprintf("p=%s at %s%s%s%s", dmarc_policy_name(pol), where,
		    org ? " (the organizational domain's record)" : "",
		    dr.why[0] ? "; note: " : "", dr.why);
	}
	buf_free(&up);
	return st;
}

static void
dmarc_check(const struct cfg_domain *sec, const struct upstream_spf *us, const char *domain,
    const struct dns_source *dns, struct domain_checks *out)
{
	char org[256], *name = xasprintf("_dmarc.%s", domain), *where = name, *orgname = NULL;
	char *sugg, *value, *reason = NULL;
	const struct dns_answer *a;
	const char *rec = NULL, *keep = NULL;
	struct dmarc_record dr;
	size_t nrec = 0;
	enum check_status st;

	value = xasprintf("v=DMARC1; p=none; rua=mailto:postmaster@%s", domain);
	sugg = dnscheck_record(name, value);
	dmarc_org_domain(domain, org, sizeof(org));
	/* the domain's record, else (RFC 7489 6.6.3) the organizational domain's */
	for (int pass = 0; pass < 2 && nrec == 0; pass++) {
		if (pass == 1) {
			if (strcmp(org, domain) == 0)
				break;
			where = orgname = xasprintf("_dmarc.%s", org);
		}
		a = dns->lookup(dns->ctx, where, DNS_T_TXT);
		if (a->status == DNS_ERROR) {
			dnscheck_add(out, "DMARC", CHECK_FAIL, NULL, "lookup of TXT %s failed: %s; "
			    "the DMARC record could not be checked", where, a->why);
			goto out;
		}
		for (size_t i = 0; a->status == DNS_ANSWER && i < a->n; i++)
			if (dmarc_is_record(a->rr[i]) && nrec++ == 0)
				rec = a->rr[i];
	}
	if (nrec == 0) {
		dnscheck_add(out, "DMARC", CHECK_FAIL, sugg, "no DMARC record at %s%s%s: "
		    "receivers apply no policy and send no reports; start with p=none and "
		    "reports to a mailbox you read", name, orgname ? " nor at " : "",
		    orgname ? orgname : "");
		goto out;
	}
	if (nrec > 1) {
		/* the first valid one is offered to keep, if it passes once alone */
		for (size_t i = 0; i < a->n && keep == NULL; i++)
			if (dmarc_is_record(a->rr[i]) && dmarc_parse(a->rr[i], &dr) == 0)
				keep = a->rr[i];
		if (keep != NULL &&
		    dmarc_judge(sec, us, domain, where, orgname != NULL, keep, &reason) == CHECK_FAIL) {
			dnscheck_add(out, "DMARC", CHECK_FAIL, NULL, "%zu DMARC records at %s: "
			    "receivers apply none of them (RFC 7489 6.6.3); keep one; the first valid "
			    "one (\"%s\") would still fail: %s", nrec, where, keep, reason);
			goto out;
		}
		if (keep != NULL) {
			free(sugg);
			sugg = dnscheck_record(where, keep);
		}
		dnscheck_add(out, "DMARC", CHECK_FAIL, sugg, "%zu DMARC records at %s: receivers "
		    "apply none of them (RFC 7489 6.6.3); keep one%s", nrec, where, keep != NULL ?
		    " (the first valid one below) and delete the others" : "");
		goto out;
	}
	st = dmarc_judge(sec, us, domain, where, orgname != NULL, rec, &reason);
	/* an invalid record is replaced by a first one */
	dnscheck_add(out, "DMARC", st, st == CHECK_FAIL && dmarc_parse(rec, &dr) == -1 ? sugg :
	    NULL, "%s", reason);
out:
	free(reason);
	free(sugg);
	free(value);
	free(orgname);
	free(name);
}

/* ---- one domain ----------------------------------------------------------- */

void
dnscheck_domain(const struct cfg_domain *sec, const char *domain,
    const struct dns_source *dns, struct domain_checks *out)
{
	struct upstream_spf us;

	memset(out, 0, sizeof(*out));
	out->domain = xstrdup(domain);
	upstream_spf_init(&us, sec->upstream, domain);
	spf_check(&us, domain, dns, out);
	dkimcheck_domain(sec, domain, dns, out);
	dmarc_check(sec, &us, domain, dns, out);
	upstream_spf_free(&us);
}

bool
dnscheck_any_failed(const struct domain_checks *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < d[i].n; j++)
			if (d[i].c[j].status == CHECK_FAIL)
				return true;
	return false;
}

/* ---- output --------------------------------------------------------------- */

/* s with control characters (and DEL, and bytes past ASCII) as \xHH; tab kept if tab. */
static void
add_escaped(struct buf *b, const char *s, bool tab)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p < 0x20 && !(tab && *p == '\t')) || *p >= 0x7f)
			buf_printf(b, "\\x%02x", *p);
		else
			buf_add(b, p, 1);
	}
}

void
dnscheck_format_text(const struct domain_checks *d, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < d[i].n; j++) {
			const struct check *c = &d[i].c[j];

			buf_printf(out, "%s ", check_status_name(c->status));
			add_escaped(out, d[i].domain, false);
			buf_printf(out, " %s: ", c->name);
			add_escaped(out, c->reason, false);
			buf_addstr(out, "\n");
			if (c->status != CHECK_FAIL || c->suggestion == NULL)
				continue;
			for (const char *p = c->suggestion; *p != '\0';) {
				const char *nl = strchr(p, '\n');
				size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
				char *line = xstrndup(p, len);

				buf_addstr(out, "    ");
				add_escaped(out, line, true);
				buf_addstr(out, "\n");
				free(line);
				p += len + (nl != NULL);
			}
		}
	}
}

/* A JSON string of s: JSON wants UTF-8, so bytes past ASCII become \xHH as in the text. */
static json_t *
json_text(const char *s)
{
	struct buf b;
	json_t *j;

	buf_init(&b);
	buf_addstr(&b, "");
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p >= 0x80)
			buf_printf(&b, "\\x%02x", *p);
		else
			buf_add(&b, p, 1);
	}
	j = json_string(b.p);
	buf_free(&b);
	return j;
}

char *
dnscheck_format_json(const struct domain_checks *d, size_t n)
{
	json_t *arr = json_array();
	char *s;

	for (size_t i = 0; i < n; i++) {
		json_t *checks = json_array();

		for (size_t j = 0; j < d[i].n; j++) {
			const struct check *c = &d[i].c[j];

			json_array_append_new(checks, json_pack("{s:s, s:s, s:o, s:o}",
			    "check", c->name, "status", check_status_name(c->status),
			    "reason", json_text(c->reason), "suggestion",
			    c->status == CHECK_FAIL && c->suggestion != NULL ?
			    json_text(c->suggestion) : json_null()));
		}
		json_array_append_new(arr, json_pack("{s:o, s:o}", "domain",
		    json_text(d[i].domain), "checks", checks));
	}
	s = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(arr);
	if (s == NULL)
		s = xstrdup("[]");
	return s;
}
