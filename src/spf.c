/*
 * spf — SPF (RFC 7208) for `relayctl check-dns`: term parser, lookup
 * counter, check_host() and the suggestion builder (see spf.h).
 *
 * Promises: every term of RFC 7208 12's grammar is recognised, and only
 * those (a term receivers would answer with permerror is SPF_INVALID, with
 * the reason); the counter and check_host() count lookups as RFC 7208
 * 4.6.4 does (include, a, mx, ptr, exists, redirect; the void-lookup limit
 * of 2; at most 10 MX names), and neither loops: following stops at
 * 4 * SPF_MAX_LOOKUPS lookups or 20 levels.
 */
#include "acconfig.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "spf.h"
#include "util.h"

#define SPF_MAX_DEPTH	20

bool
spf_is_record(const char *txt)
{
	return ascii_strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == '\0' || txt[6] == ' ');
}

/* ---- the term parser ---------------------------------------------------- */

static bool
is_delim(char c)
{
	return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

/*
 * Checks s[0..n) as a macro-string (RFC 7208 7.1); exp allows the
 * letters only an explanation may use.  NULL if valid, else why.
 */
static const char *
check_macro_string(const char *s, size_t n, bool exp, bool *macro)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x21 || c > 0x7e)
			return "a character SPF does not allow";
		if (c != '%')
			continue;
		if (i + 1 >= n)
			return "a '%' at its end (write %% for a percent sign)";
		c = (unsigned char)s[++i];
		if (c == '%' || c == '_' || c == '-')
			continue;
		if (c != '{')
			return "a '%' not followed by {, %, _ or -";
		if (++i >= n || strchr(exp ? "slodiphcrt" : "slodiph", tolower((unsigned char)s[i]))
		    == NULL)
			return "an unknown macro letter";
		i++;
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
		if (i < n && (s[i] == 'r' || s[i] == 'R'))
			i++;
		while (i < n && is_delim(s[i]))
			i++;
		if (i >= n || s[i] != '}')
			return "a macro without its closing '}'";
		*macro = true;
	}
	return NULL;
}

/* Checks a domain-spec (RFC 7208 7.1: domain-end); NULL if valid. */
static const char *
check_domain_spec(const char *s, size_t n, bool *macro)
{
	const char *why, *last;
	size_t llen;

	if (n == 0)
		return "no domain after it";
	if ((why = check_macro_string(s, n, false, macro)) != NULL)
		return why;
	if (s[n - 1] == '}' && *macro)
		return NULL;		/* ends with a macro-expand */
	if (s[n - 1] == '.')
		n--;
	if (n == 0 || memchr(s, '.', n) == NULL)
		return "not a fully qualified domain name";
	for (size_t i = 0, start = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (i == start)
				return "an empty label in the domain";
			if (i - start > 63)
				return "a label longer than 63 bytes";
			start = i + 1;
		}
	}
	last = memrchr(s, '.', n) + 1;
	llen = (size_t)(s + n - last);
	bool alpha = false;

	for (size_t i = 0; i < llen; i++) {
		if (isalpha((unsigned char)last[i]))
			alpha = true;
		else if (!isdigit((unsigned char)last[i]) &&
		    (last[i] != '-' || i == 0 || i + 1 == llen))
			return "its last label is not a top-level domain name";
	}
	if (!alpha)
		return "its last label is all digits (not a domain name)";
	return NULL;
}

/* A prefix length "/N": 0 <= N <= max, no leading zero.  -1 if invalid. */
static int
parse_len(const char *s, size_t n, int max)
{
	int v = 0;

	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/*
 * Takes a dual-cidr-length ("/24", "//64", "/24//64") off the end of
 * s[0..*n); returns -1 if one is there but invalid.
 */
static int
take_dual_cidr(const char *s, size_t *n, struct spf_term *t)
{
	const char *slash = memrchr(s, '/', *n);
	int v;

	if (slash == NULL)
		return 0;
	if (slash > s && slash[-1] == '/') {
		if ((v = parse_len(slash + 1, (size_t)(s + *n - slash - 1), 128)) < 0)
			return -1;
		t->cidr6 = v;
		*n = (size_t)(slash - 1 - s);
		if ((slash = memrchr(s, '/', *n)) == NULL)
			return 0;
	}
	/* a '/' inside a macro-string is a literal: only digits after it make a length */
	for (const char *p = slash + 1; p < s + *n; p++)
		if (!isdigit((unsigned char)*p))
			return 0;
	if ((v = parse_len(slash + 1, (size_t)(s + *n - slash - 1), 32)) < 0)
		return -1;
	t->cidr4 = v;
	*n = (size_t)(slash - s);
	return 0;
}

static void
term_invalid(struct spf_term *t, const char *why)
{
	t->kind = SPF_INVALID;
	free(t->why);
	t->why = xstrdup(why);
}

static void
parse_ip(struct spf_term *t, const char *s, size_t n, int af)
{
	const char *slash = memchr(s, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - s) : n;
	char buf[64];
	int v;

	if (alen == 0 || alen >= sizeof(buf)) {
		term_invalid(t, af == AF_INET ? "not an IPv4 address" : "not an IPv6 address");
		return;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(af, buf, t->addr) != 1) {
		term_invalid(t, af == AF_INET ? "not an IPv4 address" : "not an IPv6 address");
		return;
	}
	if (slash != NULL) {
		v = parse_len(slash + 1, n - alen - 1, af == AF_INET ? 32 : 128);
		if (v < 0) {
			term_invalid(t, "a prefix length out of range");
			return;
		}
		if (af == AF_INET)
			t->cidr4 = v;
		else
			t->cidr6 = v;
	}
}

static const struct {
	const char	*name;
	enum spf_kind	 kind;
} mechanisms[] = {
	{ "all", SPF_ALL }, { "include", SPF_INCLUDE }, { "a", SPF_A }, { "mx", SPF_MX },
	{ "ptr", SPF_PTR }, { "ip4", SPF_IP4 }, { "ip6", SPF_IP6 }, { "exists", SPF_EXISTS },
};

static void
parse_modifier(struct spf_term *t, const char *name, size_t nlen, const char *val, size_t vlen)
{
	const char *why;

	if (t->qual != 0) {
		term_invalid(t, "a modifier cannot have a qualifier");
		return;
	}
	if (!isalpha((unsigned char)name[0])) {
		term_invalid(t, "not an SPF term");
		return;
	}
	for (size_t i = 1; i < nlen; i++)
		if (!isalnum((unsigned char)name[i]) && strchr("-_.", name[i]) == NULL) {
			term_invalid(t, "not an SPF term");
			return;
		}
	if (nlen == 8 && ascii_strncasecmp(name, "redirect", 8) == 0)
		t->kind = SPF_REDIRECT;
	else if (nlen == 3 && ascii_strncasecmp(name, "exp", 3) == 0)
		t->kind = SPF_EXP;
	else
		t->kind = SPF_MODIFIER;
	if (t->kind == SPF_MODIFIER)
		why = check_macro_string(val, vlen, false, &t->macro);
	else
		why = check_domain_spec(val, vlen, &t->macro);
	if (why != NULL) {
		term_invalid(t, why);
		return;
	}
	if (t->kind != SPF_MODIFIER)
		t->domain = xstrndup(val, vlen && val[vlen - 1] == '.' ? vlen - 1 : vlen);
}

static void
parse_term(const char *s, size_t len, struct spf_term *t)
{
	const char *p = s, *end = s + len, *name;
	size_t nlen, rlen;
	const char *why;

	memset(t, 0, sizeof(*t));
	t->text = xstrndup(s, len);
	t->cidr4 = 32;
	t->cidr6 = 128;
	if (p < end && strchr("+-~?", *p) != NULL)
		t->qual = *p++;
	name = p;
	while (p < end && *p != ':' && *p != '/' && *p != '=')
		p++;
	nlen = (size_t)(p - name);
	if (p < end && *p == '=') {
		parse_modifier(t, name, nlen, p + 1, (size_t)(end - p - 1));
		return;
	}
	if (t->qual == 0)
		t->qual = '+';
	for (size_t i = 0; i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++)
		if (strlen(mechanisms[i].name) == nlen &&
		    ascii_strncasecmp(mechanisms[i].name, name, nlen) == 0)
			t->kind = mechanisms[i].kind;
	if (t->kind == SPF_INVALID) {
		term_invalid(t, nlen == 0 ? "an empty mechanism" : "not an SPF mechanism");
		return;
	}
	rlen = (size_t)(end - p);
	switch (t->kind) {
	case SPF_ALL:
		if (rlen != 0)
			term_invalid(t, "\"all\" takes no argument");
		return;
	case SPF_IP4:
	case SPF_IP6:
		if (rlen == 0 || *p != ':')
			term_invalid(t, "needs an address after ':'");
		else
			parse_ip(t, p + 1, rlen - 1, t->kind == SPF_IP4 ? AF_INET : AF_INET6);
		return;
	case SPF_A:
	case SPF_MX:
		if (take_dual_cidr(p, &rlen, t) == -1) {
			term_invalid(t, "a prefix length out of range");
			return;
		}
		/* FALLTHROUGH */
	default:
		break;
	}
	if (rlen == 0) {
		if (t->kind == SPF_INCLUDE || t->kind == SPF_EXISTS)
			term_invalid(t, "needs a domain after ':'");
		return;
	}
	if (*p != ':') {
		term_invalid(t, "not an SPF mechanism");
		return;
	}
	if ((why = check_domain_spec(p + 1, rlen - 1, &t->macro)) != NULL) {
		term_invalid(t, why);
		return;
	}
	t->domain = xstrndup(p + 1, p[rlen - 1] == '.' ? rlen - 2 : rlen - 1);
}

static void
term_free(struct spf_term *t)
{
	free(t->text);
	free(t->domain);
	free(t->why);
}

int
spf_parse(const char *txt, struct spf_record *rec)
{
	const char *p;
	bool redirect = false, exp = false;

	memset(rec, 0, sizeof(*rec));
	if (!spf_is_record(txt)) {
		rec->nbad = 1;
		rec->why = xstrdup("it does not start with v=spf1");
		return -1;
	}
	for (p = txt + 6; *p != '\0';) {
		const char *e;
		struct spf_term *t;

		if (*p == ' ') {
			p++;
			continue;
		}
		for (e = p; *e != '\0' && *e != ' '; e++)
			;
		rec->t = xrealloc(rec->t, (rec->n + 1) * sizeof(*rec->t));
		t = &rec->t[rec->n++];
		parse_term(p, (size_t)(e - p), t);
		if (t->kind == SPF_REDIRECT && redirect)
			term_invalid(t, "a second redirect= (at most one, RFC 7208 6)");
		else if (t->kind == SPF_EXP && exp)
			term_invalid(t, "a second exp= (at most one, RFC 7208 6)");
		redirect |= t->kind == SPF_REDIRECT;
		exp |= t->kind == SPF_EXP;
		if (t->kind == SPF_INVALID) {
			if (rec->nbad++ == 0)
				rec->why = xasprintf("\"%s\" is not valid SPF: %s", t->text, t->why);
		}
		p = e;
	}
	return rec->nbad == 0 ? 0 : -1;
}

void
spf_record_free(struct spf_record *rec)
{
	for (size_t i = 0; i < rec->n; i++)
		term_free(&rec->t[i]);
	free(rec->t);
	free(rec->why);
	memset(rec, 0, sizeof(*rec));
}

int
spf_find_all(const struct spf_record *rec)
{
	for (size_t i = 0; i < rec->n; i++)
		if (rec->t[i].kind == SPF_ALL)
			return (int)i;
	return -1;
}

static int
find_kind(const struct spf_record *rec, enum spf_kind kind)
{
	for (size_t i = 0; i < rec->n; i++)
		if (rec->t[i].kind == kind)
			return (int)i;
	return -1;
}

/* addr with all bits past len cleared, in text. */
static void
masked_text(int af, const unsigned char *addr, int len, char *out, size_t outlen)
{
	unsigned char m[16];
	size_t bytes = af == AF_INET ? 4 : 16;

	memcpy(m, addr, bytes);
	for (size_t i = 0; i < bytes; i++) {
		int keep = len - (int)i * 8;

		if (keep <= 0)
			m[i] = 0;
		else if (keep < 8)
			m[i] &= (unsigned char)(0xff << (8 - keep));
	}
	inet_ntop(af, m, out, (socklen_t)outlen);
}

static char *
key_of(const struct spf_term *t, const char *dflt)
{
	char a[INET6_ADDRSTRLEN], *k, *d;
	const char *name;

	switch (t->kind) {
	case SPF_INCLUDE:
	case SPF_REDIRECT:
		name = "include";
		break;
	case SPF_EXISTS:
		name = "exists";
		break;
	case SPF_PTR:
		name = "ptr";
		break;
	case SPF_A:
		name = "a";
		break;
	case SPF_MX:
		name = "mx";
		break;
	case SPF_IP4:
		masked_text(AF_INET, t->addr, t->cidr4, a, sizeof(a));
		return xasprintf("ip4:%s/%d", a, t->cidr4);
	case SPF_IP6:
		masked_text(AF_INET6, t->addr, t->cidr6, a, sizeof(a));
		return xasprintf("ip6:%s/%d", a, t->cidr6);
	default:
		return NULL;
	}
	d = xstrdup(t->domain != NULL ? t->domain : dflt);
	ascii_lower(d);
	if ((t->kind == SPF_A || t->kind == SPF_MX) && (t->cidr4 != 32 || t->cidr6 != 128))
		k = xasprintf("%s:%s/%d//%d", name, d, t->cidr4, t->cidr6);
	else
		k = xasprintf("%s:%s", name, d);
	free(d);
	return k;
}

char *
spf_term_key(const char *term, const char *dflt)
{
	struct spf_term t;
	char *k = NULL;

	parse_term(term, strlen(term), &t);
	if (t.kind != SPF_INVALID && t.kind != SPF_ALL && t.qual == '+')
		k = key_of(&t, dflt);
	term_free(&t);
	return k;
}

/* ---- fetching a record -------------------------------------------------- */

enum fetch { FETCH_OK, FETCH_NONE, FETCH_NXDOMAIN, FETCH_MANY, FETCH_SYNTAX, FETCH_DNS };

/*
 * domain's SPF record into rec (txt, when given, stands for its TXT
 * records: one record).  why gets the DNS error or the syntax problem.
 */
static enum fetch
fetch_record(const struct dns_source *dns, const char *domain, const char *txt,
    struct spf_record *rec, char *why, size_t whylen)
{
	const struct dns_answer *a;
	const char *found = NULL;
	size_t nspf = 0;

	memset(rec, 0, sizeof(*rec));
	if (txt != NULL) {
		found = txt;
		nspf = spf_is_record(txt) ? 1 : 0;
	} else {
		a = dns->lookup(dns->ctx, domain, DNS_T_TXT);
		if (a->status == DNS_ERROR) {
			snprintf(why, whylen, "%s", a->why);
			return FETCH_DNS;
		}
		if (a->status == DNS_NXDOMAIN)
			return FETCH_NXDOMAIN;
		for (size_t i = 0; i < a->n; i++)
			if (spf_is_record(a->rr[i]) && nspf++ == 0)
				found = a->rr[i];
	}
	if (nspf == 0)
		return FETCH_NONE;
	if (nspf > 1) {
		snprintf(why, whylen, "%zu SPF records", nspf);
		return FETCH_MANY;
	}
	if (spf_parse(found, rec) == -1) {
		snprintf(why, whylen, "%s", rec->why);
		return FETCH_SYNTAX;
	}
	return FETCH_OK;
}

/* ---- the lookup counter --------------------------------------------------- */

struct walkctx {
	const struct dns_source	*dns;
	struct spf_walk		*w;
	int			 root;		/* the domain's own term being followed */
};

static void walk_fail(struct walkctx *c, enum spf_walk_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
walk_fail(struct walkctx *c, enum spf_walk_err e, const char *fmt, ...)
{
	va_list ap;

	if (c->w->err != SPF_WALK_OK)
		return;
	c->w->err = e;
	c->w->err_term = c->root;
	va_start(ap, fmt);
	vsnprintf(c->w->why, sizeof(c->w->why), fmt, ap);
	va_end(ap);
}

/* One more DNS-querying term; false once following must stop. */
static bool
walk_count(struct walkctx *c, const char *via)
{
	c->w->lookups++;
	if (c->root >= 0)
		c->w->cost[c->root]++;
	if (c->w->lookups == SPF_MAX_LOOKUPS + 1)
		walk_fail(c, SPF_WALK_PERMERROR, "more than %d DNS lookups (the 11th: %s)",
		    SPF_MAX_LOOKUPS, via);
	return c->w->lookups <= 4 * SPF_MAX_LOOKUPS;
}

/* Looks name up as a term would; counts a void lookup.  False if none. */
static bool
walk_query(struct walkctx *c, const char *name, enum dns_type type, const char *via,
    const struct dns_answer **out)
{
	const struct dns_answer *a = c->dns->lookup(c->dns->ctx, name, type);

	*out = a;
	if (a->status == DNS_ERROR) {
		walk_fail(c, SPF_WALK_TEMPERROR, "%s: lookup of %s %s failed: %s", via,
		    dns_type_name(type), name, a->why);
		return false;
	}
	if (a->status == DNS_ANSWER)
		return true;
	c->w->voids++;
	if (c->root >= 0)
		c->w->void_of[c->root]++;
	if (c->w->voids == SPF_MAX_VOID + 1)
		walk_fail(c, SPF_WALK_PERMERROR, "more than %d void lookups (RFC 7208 4.6.4; "
		    "the 3rd: %s, %s %s%s)", SPF_MAX_VOID, via, name,
		    a->status == DNS_NXDOMAIN ? "does not exist" : "has no ",
		    a->status == DNS_NXDOMAIN ? "" : dns_type_name(type));
	return false;
}

static void
walk_reach(struct walkctx *c, const struct spf_term *t, const char *domain, bool pass)
{
	char *k;

	/* a redirect has no qualifier: the target's result is the domain's */
	if (!pass || (t->qual != '+' && t->kind != SPF_REDIRECT) ||
	    (k = key_of(t, domain)) == NULL)
		return;
	c->w->reached = xrealloc(c->w->reached, (c->w->nreached + 1) * sizeof(char *));
	c->w->reached[c->w->nreached++] = k;
}

static void walk_domain(struct walkctx *c, const char *domain, const char *txt, int depth,
    const char *path, bool pass);

/* include:/redirect= target: its record, or permerror for none. */
static void
walk_into(struct walkctx *c, const struct spf_term *t, int depth, const char *path, bool pass)
{
	char *sub = path[0] != '\0' ? xasprintf("%s -> %s", path, t->text) : xstrdup(t->text);

	if (t->macro)
		c->w->unfollowed++;
	else if (depth < SPF_MAX_DEPTH)
		walk_domain(c, t->domain, NULL, depth + 1, sub, pass && t->qual != '-' &&
		    t->qual != '~' && t->qual != '?');
	free(sub);
}

static void
walk_term(struct walkctx *c, const struct spf_term *t, const char *domain, int depth,
    const char *path, bool pass)
{
	const char *name = t->domain != NULL ? t->domain : domain;
	const struct dns_answer *a;

	switch (t->kind) {
	case SPF_INCLUDE:
		walk_reach(c, t, domain, pass);
		if (walk_count(c, t->text))
			walk_into(c, t, depth, path, pass);
		break;
	case SPF_A:
	case SPF_EXISTS:
		walk_reach(c, t, domain, pass);
		if (walk_count(c, t->text) && !t->macro)
			walk_query(c, name, DNS_T_A, t->text, &a);
		break;
	case SPF_MX:
		walk_reach(c, t, domain, pass);
		if (!walk_count(c, t->text) || t->macro ||
		    !walk_query(c, name, DNS_T_MX, t->text, &a))
			break;
		if (a->n > SPF_MAX_MX) {
			walk_fail(c, SPF_WALK_PERMERROR, "%s: %s has %zu MX records (at most %d "
			    "may be looked at, RFC 7208 4.6.4)", t->text, name, a->n, SPF_MAX_MX);
			break;
		}
		for (size_t i = 0; i < a->n; i++) {
			const struct dns_answer *h;

			walk_query(c, a->rr[i], DNS_T_A, t->text, &h);
		}
		break;
	case SPF_PTR:
		walk_count(c, t->text);
		break;
	case SPF_IP4:
	case SPF_IP6:
		walk_reach(c, t, domain, pass);
		break;
	default:
		break;
	}
}

static void
walk_domain(struct walkctx *c, const char *domain, const char *txt, int depth,
    const char *path, bool pass)
{
	struct spf_record rec;
	char why[300];
	int all, redir;

	enum fetch f = fetch_record(c->dns, domain, txt, &rec, why, sizeof(why));
	const char *none = f == FETCH_NXDOMAIN ? "does not exist" : "has no SPF record";

	switch (f) {
	case FETCH_OK:
		break;
	case FETCH_NONE:
	case FETCH_NXDOMAIN:
		if (depth == 0)
			walk_fail(c, SPF_WALK_NONE, "%s %s", domain, none);
		else
			walk_fail(c, SPF_WALK_PERMERROR, "%s: %s %s (a permerror for every "
			    "receiver, RFC 7208 5.2)", path, domain, none);
		goto out;
	case FETCH_MANY:
		walk_fail(c, SPF_WALK_PERMERROR, "%s%s%s has %s (a permerror, RFC 7208 4.5)",
		    path, path[0] ? ": " : "", domain, why);
		goto out;
	case FETCH_SYNTAX:
		walk_fail(c, SPF_WALK_PERMERROR, "%s%s%s", path, path[0] ? ": " : "", why);
		goto out;
	case FETCH_DNS:
		walk_fail(c, SPF_WALK_TEMPERROR, "%s%slookup of TXT %s failed: %s", path,
		    path[0] ? ": " : "", domain, why);
		goto out;
	}
	if (depth == 0) {
		c->w->nterms = rec.n;
		c->w->cost = xcalloc(rec.n + 1, sizeof(int));
		c->w->void_of = xcalloc(rec.n + 1, sizeof(int));
	}
	all = spf_find_all(&rec);
	redir = find_kind(&rec, SPF_REDIRECT);
	for (size_t i = 0; i < rec.n && (all < 0 || (int)i < all); i++) {
		if (depth == 0)
			c->root = (int)i;
		walk_term(c, &rec.t[i], domain, depth, path, pass);
	}
	if (all < 0 && redir >= 0) {
		if (depth == 0)
			c->root = redir;
		walk_reach(c, &rec.t[redir], domain, pass);
		if (walk_count(c, rec.t[redir].text))
			walk_into(c, &rec.t[redir], depth, path, pass);
	}
out:
	spf_record_free(&rec);
}

void
spf_walk(const struct dns_source *dns, const char *domain, const char *txt,
    struct spf_walk *w)
{
	struct walkctx c = { dns, w, -1 };

	memset(w, 0, sizeof(*w));
	w->err_term = -1;
	walk_domain(&c, domain, txt, 0, "", true);
}

void
spf_walk_free(struct spf_walk *w)
{
	for (size_t i = 0; i < w->nreached; i++)
		free(w->reached[i]);
	free(w->reached);
	free(w->cost);
	free(w->void_of);
	memset(w, 0, sizeof(*w));
}

/* ---- check_host() ------------------------------------------------------- */

const char *
spf_result_name(enum spf_result r)
{
	static const char *const names[] = { "none", "neutral", "pass", "fail", "softfail",
	    "temperror", "permerror" };

	return names[r];
}

struct evalctx {
	const struct dns_source	*dns;
	int			 family;
	const unsigned char	*ip;
	int			 lookups, voids, depth;
	char			*why;
	size_t			 whylen;
};

static void eval_why(struct evalctx *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
eval_why(struct evalctx *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->why, e->whylen, fmt, ap);
	va_end(ap);
}

static bool
prefix_match(const unsigned char *a, const unsigned char *b, int len)
{
	int bytes = len / 8, bits = len % 8;

	if (memcmp(a, b, (size_t)bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	return ((a[bytes] ^ b[bytes]) & (0xff << (8 - bits))) == 0;
}

/*
 * An answer without records (a->status is not DNS_ANSWER): a failed lookup
 * is a temperror, a void one counts against the limit.  -1 (err, why set)
 * or 0.
 */
static int
eval_no_records(struct evalctx *e, const struct dns_answer *a, const struct spf_term *t,
    const char *name, enum dns_type type, enum spf_result *err)
{
	if (a->status == DNS_ERROR) {
		eval_why(e, "%s: lookup of %s %s failed: %s", t->text, dns_type_name(type), name,
		    a->why);
		*err = SPF_R_TEMPERROR;
		return -1;
	}
	if (++e->voids > SPF_MAX_VOID) {
		eval_why(e, "more than %d void lookups", SPF_MAX_VOID);
		*err = SPF_R_PERMERROR;
		return -1;
	}
	return 0;
}

/* Match of e->ip against the addresses of name; -1 temperror/permerror (why set). */
static int
eval_addrs(struct evalctx *e, const char *name, const struct spf_term *t, enum spf_result *err)
{
	enum dns_type type = e->family == AF_INET ? DNS_T_A : DNS_T_AAAA;
	const struct dns_answer *a = e->dns->lookup(e->dns->ctx, name, type);
	unsigned char bin[16];

	if (a->status != DNS_ANSWER)
		return eval_no_records(e, a, t, name, type, err);
	for (size_t i = 0; i < a->n; i++)
		if (inet_pton(e->family, a->rr[i], bin) == 1 &&
		    prefix_match(bin, e->ip, e->family == AF_INET ? t->cidr4 : t->cidr6))
			return 1;
	return 0;
}

static enum spf_result eval_domain(struct evalctx *e, const char *domain, const char *txt);

static bool
eval_count(struct evalctx *e)
{
	if (++e->lookups <= SPF_MAX_LOOKUPS)
		return true;
	eval_why(e, "more than %d DNS lookups", SPF_MAX_LOOKUPS);
	return false;
}

/* 1 match, 0 none, -1 error (*err). */
static int
eval_term(struct evalctx *e, const struct spf_term *t, const char *domain, enum spf_result *err)
{
	const char *name = t->domain != NULL ? t->domain : domain;
	const struct dns_answer *a;
	enum spf_result r;
	int m;

	switch (t->kind) {
	case SPF_ALL:
		return 1;
	case SPF_IP4:
		return e->family == AF_INET && prefix_match(t->addr, e->ip, t->cidr4);
	case SPF_IP6:
		return e->family == AF_INET6 && prefix_match(t->addr, e->ip, t->cidr6);
	case SPF_INCLUDE:
	case SPF_A:
	case SPF_MX:
	case SPF_PTR:
	case SPF_EXISTS:
		if (!eval_count(e)) {
			*err = SPF_R_PERMERROR;
			return -1;
		}
		break;
	default:
		return 0;
	}
	if (t->macro || t->kind == SPF_PTR)
		return 0;
	switch (t->kind) {
	case SPF_INCLUDE:
		r = eval_domain(e, name, NULL);
		if (r == SPF_R_PASS)
			return 1;
		if (r == SPF_R_TEMPERROR || r == SPF_R_PERMERROR || r == SPF_R_NONE) {
			if (r == SPF_R_NONE)
				eval_why(e, "%s: %s has no SPF record", t->text, name);
			*err = r == SPF_R_TEMPERROR ? r : SPF_R_PERMERROR;
			return -1;
		}
		return 0;
	case SPF_A:
		m = eval_addrs(e, name, t, err);
		return m;
	case SPF_EXISTS:
		a = e->dns->lookup(e->dns->ctx, name, DNS_T_A);
		return a->status == DNS_ANSWER ? 1 : eval_no_records(e, a, t, name, DNS_T_A, err);
	case SPF_MX:
		a = e->dns->lookup(e->dns->ctx, name, DNS_T_MX);
		if (a->status != DNS_ANSWER)
			return eval_no_records(e, a, t, name, DNS_T_MX, err);
		if (a->n > SPF_MAX_MX) {
			eval_why(e, "%s: more than %d MX records", t->text, SPF_MAX_MX);
			*err = SPF_R_PERMERROR;
			return -1;
		}
		for (size_t i = 0; i < a->n; i++)
			if ((m = eval_addrs(e, a->rr[i], t, err)) != 0)
				return m;
		return 0;
	default:
		return 0;
	}
}

static enum spf_result
qual_result(char q)
{
	switch (q) {
	case '-':	return SPF_R_FAIL;
	case '~':	return SPF_R_SOFTFAIL;
	case '?':	return SPF_R_NEUTRAL;
	default:	return SPF_R_PASS;
	}
}

static enum spf_result
eval_domain(struct evalctx *e, const char *domain, const char *txt)
{
	struct spf_record rec;
	enum spf_result r = SPF_R_NEUTRAL, err = SPF_R_NONE;
	char why[300] = "";
	int redir, m;

	if (++e->depth > SPF_MAX_DEPTH) {
		eval_why(e, "includes nested more than %d deep", SPF_MAX_DEPTH);
		return SPF_R_PERMERROR;
	}
	switch (fetch_record(e->dns, domain, txt, &rec, why, sizeof(why))) {
	case FETCH_OK:
		break;
	case FETCH_NONE:
	case FETCH_NXDOMAIN:
		eval_why(e, "%s has no SPF record", domain);
		r = SPF_R_NONE;
		goto out;
	case FETCH_DNS:
		eval_why(e, "lookup of TXT %s failed: %s", domain, why);
		r = SPF_R_TEMPERROR;
		goto out;
	default:
		eval_why(e, "%s: %s", domain, why);
		r = SPF_R_PERMERROR;
		goto out;
	}
	for (size_t i = 0; i < rec.n; i++) {
		m = eval_term(e, &rec.t[i], domain, &err);
		if (m < 0) {
			r = err;
			goto out;
		}
		if (m > 0) {
			r = qual_result(rec.t[i].qual);
			eval_why(e, "%s in the record of %s", rec.t[i].text, domain);
			goto out;
		}
	}
	if ((redir = find_kind(&rec, SPF_REDIRECT)) >= 0) {
		if (!eval_count(e)) {
			r = SPF_R_PERMERROR;
			goto out;
		}
		if (rec.t[redir].macro) {
			eval_why(e, "%s (a macro: not evaluated)", rec.t[redir].text);
			r = SPF_R_NEUTRAL;
			goto out;
		}
		r = eval_domain(e, rec.t[redir].domain, NULL);
		if (r == SPF_R_NONE) {
			eval_why(e, "%s: %s has no SPF record", rec.t[redir].text,
			    rec.t[redir].domain);
			r = SPF_R_PERMERROR;
		}
		goto out;
	}
	eval_why(e, "no term of the record of %s matched", domain);
out:
	spf_record_free(&rec);
	e->depth--;
	return r;
}

enum spf_result
spf_check_host(const struct dns_source *dns, const char *domain, const char *txt, int family,
    const unsigned char *addr, char *why, size_t whylen)
{
	struct evalctx e = { dns, family, addr, 0, 0, 0, why, whylen };

	why[0] = '\0';
	return eval_domain(&e, domain, txt);
}

/* ---- the suggestion ----------------------------------------------------- */

static bool
listed(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_strcasecmp(v[i], s) == 0)
			return true;
	return false;
}

static void
add_term(const char ***v, size_t *n, const char *s)
{
	if (listed(*v, *n, s))
		return;
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = s;
}

char *
spf_suggest(const char *const *records, size_t n, const char *add,
    const char *const *drop, size_t ndrop)
{
	struct spf_record *rec = xcalloc(n + 1, sizeof(*rec));
	const char **mech = NULL, **mods = NULL, *redirect = NULL;
	size_t nmech = 0, nmods = 0;
	char allq = 0;
	struct buf b;
	char *inc = NULL, **incs = NULL;
	size_t nincs = 0;
	bool has_exp = false;

	for (size_t r = 0; r < n; r++) {
		spf_parse(records[r], &rec[r]);
		int all = spf_find_all(&rec[r]);

		if (all >= 0 && allq == 0)
			allq = rec[r].t[all].qual;
	}
	for (size_t r = 0; r < n; r++) {
		bool has_all = spf_find_all(&rec[r]) >= 0;

		for (size_t i = 0; i < rec[r].n; i++) {
			const struct spf_term *t = &rec[r].t[i];

			if (t->kind == SPF_INVALID || t->kind == SPF_ALL ||
			    listed(drop, ndrop, t->text))
				continue;
			if (t->kind == SPF_REDIRECT) {
				if (has_all)
					continue;	/* never used */
				if (allq == 0 && redirect == NULL) {
					redirect = t->text;
					continue;
				}
				/* beside an all (or a first redirect): an include */
				inc = xasprintf("include:%s", t->domain);
				incs = xrealloc(incs, (nincs + 1) * sizeof(*incs));
				incs[nincs++] = inc;
				add_term(&mech, &nmech, inc);
			} else if (t->kind == SPF_EXP || t->kind == SPF_MODIFIER) {
				if (t->kind != SPF_EXP || !has_exp)
					add_term(&mods, &nmods, t->text);
				has_exp |= t->kind == SPF_EXP;
			} else {
				add_term(&mech, &nmech, t->text);
			}
		}
	}
	if (add != NULL)
		add_term(&mech, &nmech, add);
	buf_init(&b);
	buf_addstr(&b, "v=spf1");
	for (size_t i = 0; i < nmech; i++)
		buf_printf(&b, " %s", mech[i]);
	if (allq != 0 || redirect == NULL)
		buf_printf(&b, " %sall", allq == '-' ? "-" : "~");
	else
		buf_printf(&b, " %s", redirect);
	for (size_t i = 0; i < nmods; i++)
		buf_printf(&b, " %s", mods[i]);
	for (size_t r = 0; r < n; r++)
		spf_record_free(&rec[r]);
	for (size_t i = 0; i < nincs; i++)
		free(incs[i]);
	free(incs);
	free(rec);
	free(mech);
	free(mods);
	return b.p;
}
