/*
 * resolve — DNS lookups for `relayctl check-dns` through ldns (see
 * resolve.h for what it promises).
 *
 * Why ldns and not c-ares: check-dns is a command-line tool that asks a
 * few dozen questions one after the other, so ldns's synchronous stub
 * resolver is all it needs (c-ares would need an event loop of its own
 * for nothing).  ldns retries a truncated UDP answer with EDNS0 and then
 * over TCP by itself (ldns_resolver_send_pkt), takes a timeout and a
 * number of tries, a port, and hands back the whole answer packet with
 * its RCODE, so NXDOMAIN, NODATA and SERVFAIL stay apart and the CNAMEs a
 * recursive resolver put in front of the records can be read in order.
 *
 * Two things ldns does that a checker must not: it marks a name server
 * that timed out as unreachable for every later query (one dropped query
 * would fail every check after it), and it sleeps between name servers.
 * So each query starts with every server marked reachable and no pause;
 * relayd's own count of consecutive timeouts (DNS_GIVE_UP) decides when a
 * resolver is gone.
 */
#include "acconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <ldns/ldns.h>

#include "resolve.h"
#include "util.h"

struct cache_entry {
	char			*name;		/* lower case, no final dot */
	enum dns_type		 type;
	struct dns_answer	*ans;
};

struct resolver {
	ldns_resolver		*res;
	char			*desc;
	int			 timeouts;	/* consecutive */
	struct cache_entry	*cache;
	size_t			 ncache, capcache;
};

const char *
dns_type_name(enum dns_type type)
{
	switch (type) {
	case DNS_T_A:		return "A";
	case DNS_T_CNAME:	return "CNAME";
	case DNS_T_MX:		return "MX";
	case DNS_T_TXT:		return "TXT";
	case DNS_T_AAAA:	return "AAAA";
	}
	return "?";
}

/* "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 address into ip and port. */
static int
resolver_parse_server(const char *spec, char *ip, size_t iplen, unsigned *port)
{
	const char *colon, *p = spec;
	char *end;
	unsigned long l;
	size_t n;
	unsigned char bin[16];

	*port = 53;
	if (*p == '[') {
		const char *close = strchr(p, ']');

		if (close == NULL)
			return -1;
		n = (size_t)(close - p - 1);
		colon = close[1] == ':' ? close + 1 : NULL;
		if (close[1] != '\0' && colon == NULL)
			return -1;
		p++;
	} else if ((colon = strchr(p, ':')) != NULL && strchr(colon + 1, ':') != NULL) {
		n = strlen(p);		/* a bare IPv6 address */
		colon = NULL;
	} else {
		n = colon != NULL ? (size_t)(colon - p) : strlen(p);
	}
	if (n == 0 || n >= iplen)
		return -1;
	memcpy(ip, p, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1)
		return -1;
	if (colon != NULL) {
		errno = 0;
		l = strtoul(colon + 1, &end, 10);
		if (colon[1] == '\0' || *end != '\0' || errno != 0 || l == 0 || l > 65535)
			return -1;
		*port = (unsigned)l;
	}
	return 0;
}

static void
resolver_settings(ldns_resolver *res)
{
	struct timeval tv = { DNS_TIMEOUT_SEC, 0 };

	ldns_resolver_set_timeout(res, tv);
	ldns_resolver_set_retry(res, DNS_TRIES);
	ldns_resolver_set_retrans(res, 0);
	ldns_resolver_set_recursive(res, true);
	ldns_resolver_set_fallback(res, true);
	ldns_resolver_set_usevc(res, false);
	ldns_resolver_set_defnames(res, false);
	ldns_resolver_set_dnsrch(res, false);
	ldns_resolver_set_random(res, false);
}

struct resolver *
resolver_new(const char *server, char *err, size_t errlen)
{
	struct resolver *r;
	ldns_resolver *res = NULL;
	ldns_rdf *ns;
	ldns_status st;
	char ip[64], *s;
	unsigned port;

	if (server != NULL) {
		if (resolver_parse_server(server, ip, sizeof(ip), &port) == -1) {
			snprintf(err, errlen, "--resolver %s: not an IP address with an optional port "
			    "(192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:5353)", server);
			return NULL;
		}
		res = ldns_resolver_new();
		ns = ldns_rdf_new_frm_str(strchr(ip, ':') ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A, ip);
		if (res == NULL || ns == NULL ||
		    ldns_resolver_push_nameserver(res, ns) != LDNS_STATUS_OK) {
			snprintf(err, errlen, "--resolver %s: ldns could not use it", server);
			ldns_rdf_deep_free(ns);
			if (res != NULL)
				ldns_resolver_deep_free(res);
			return NULL;
		}
		ldns_rdf_deep_free(ns);
		ldns_resolver_set_port(res, (uint16_t)port);
		s = port == 53 ? xstrdup(ip) :
		    strchr(ip, ':') ? xasprintf("[%s]:%u", ip, port) : xasprintf("%s:%u", ip, port);
	} else {
		const char *path = getenv("RELAYD_RESOLV_CONF");

		if (path == NULL || *path == '\0')
			path = "/etc/resolv.conf";
		st = ldns_resolver_new_frm_file(&res, path);
		if (st != LDNS_STATUS_OK || ldns_resolver_nameserver_count(res) == 0) {
			snprintf(err, errlen, "no name server to ask in %s (%s); name one with "
			    "--resolver IP", path, st != LDNS_STATUS_OK ?
			    ldns_get_errorstr_by_id(st) : "no nameserver line");
			if (res != NULL)
				ldns_resolver_deep_free(res);
			return NULL;
		}
		char *first = ldns_rdf2str(ldns_resolver_nameservers(res)[0]);

		s = xasprintf("%s (from %s)", first != NULL ? first : "?", path);
		free(first);
	}
	resolver_settings(res);
	r = xcalloc(1, sizeof(*r));
	r->res = res;
	r->desc = s;
	return r;
}

void
dns_answer_free(struct dns_answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->rr[i]);
	for (size_t i = 0; i < a->nchain; i++)
		free(a->chain[i]);
	free(a->rr);
	free(a->chain);
	free(a);
}

void
resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->ncache; i++) {
		free(r->cache[i].name);
		dns_answer_free(r->cache[i].ans);
	}
	free(r->cache);
	ldns_resolver_deep_free(r->res);
	free(r->desc);
	free(r);
}

const char *
resolver_describe(const struct resolver *r)
{
	return r->desc;
}

static void
push(char ***v, size_t *n, char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = s;
}

/*
 * A domain name rdf as text: lower case, no final dot, in zone-file form
 * (RFC 1035 5.1).  ldns escapes '.', ';', '(', ')', '\\' and octets outside
 * printable ASCII, but not '"', which in a zone file would open a string:
 * that is escaped here.
 */
static char *
dname_text(const ldns_rdf *rdf)
{
	char *s = ldns_rdf2str(rdf);
	struct buf b;
	size_t n;

	if (s == NULL)
		return xstrdup("");
	n = strlen(s);
	if (n > 1 && s[n - 1] == '.')
		s[--n] = '\0';
	buf_init(&b);
	buf_add(&b, "", 0);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n) {	/* an escape ldns made: as it is */
			buf_add(&b, s + i, 2);
			i++;
		} else if (s[i] == '"') {
			buf_add(&b, "\\\"", 2);
		} else {
			buf_add(&b, s + i, 1);
		}
	}
	free(s);
	ascii_lower(b.p);
	return b.p;
}

/* A TXT record's character-strings joined, non-printable bytes as \DDD. */
static char *
txt_text(const ldns_rr *rr)
{
	struct buf b;

	buf_init(&b);
	buf_addstr(&b, "");
	for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
		const ldns_rdf *f = ldns_rr_rdf(rr, i);
		const uint8_t *d = ldns_rdf_data(f);
		size_t len = ldns_rdf_size(f);

		if (len == 0 || (size_t)d[0] + 1 > len)
			continue;
		for (size_t j = 1; j <= d[0]; j++) {
			if (d[j] >= 0x20 && d[j] < 0x7f)
				buf_add(&b, &d[j], 1);
			else
				buf_printf(&b, "\\%03u", d[j]);
		}
	}
	return b.p;
}

static char *
addr_text(const ldns_rr *rr, int af)
{
	const ldns_rdf *f = ldns_rr_rdf(rr, 0);
	char text[INET6_ADDRSTRLEN];

	if (f == NULL || ldns_rdf_size(f) != (af == AF_INET ? 4u : 16u) ||
	    inet_ntop(af, ldns_rdf_data(f), text, sizeof(text)) == NULL)
		return NULL;
	return xstrdup(text);
}

struct mx {
	unsigned	 pref;
	char		*name;
};

static int
mx_cmp(const void *a, const void *b)
{
	const struct mx *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* The records of type at owner in list, in text, into a. */
static void
collect(const ldns_rr_list *list, const char *owner, enum dns_type type, struct dns_answer *a)
{
	struct mx *mx = NULL;
	size_t nmx = 0;

	for (size_t i = 0; i < ldns_rr_list_rr_count(list); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(list, i);
		char *o, *t = NULL;

		if ((int)ldns_rr_get_type(rr) != (int)type)
			continue;
		o = dname_text(ldns_rr_owner(rr));
		if (strcmp(o, owner) == 0) {
			switch (type) {
			case DNS_T_TXT:
				t = txt_text(rr);
				break;
			case DNS_T_A:
				t = addr_text(rr, AF_INET);
				break;
			case DNS_T_AAAA:
				t = addr_text(rr, AF_INET6);
				break;
			case DNS_T_CNAME:
				t = ldns_rr_rd_count(rr) > 0 ? dname_text(ldns_rr_rdf(rr, 0)) : NULL;
				break;
			case DNS_T_MX:
				if (ldns_rr_rd_count(rr) >= 2) {
					mx = xrealloc(mx, (nmx + 1) * sizeof(*mx));
					mx[nmx].pref = ldns_rdf2native_int16(ldns_rr_rdf(rr, 0));
					mx[nmx++].name = dname_text(ldns_rr_rdf(rr, 1));
				}
				break;
			}
			if (t != NULL)
				push(&a->rr, &a->n, t);
		}
		free(o);
	}
	if (nmx > 0) {
		qsort(mx, nmx, sizeof(*mx), mx_cmp);
		for (size_t i = 0; i < nmx; i++)
			push(&a->rr, &a->n, mx[i].name);
	}
	free(mx);
}

/* The CNAME at owner in list (its target), or NULL. */
static char *
cname_at(const ldns_rr_list *list, const char *owner)
{
	for (size_t i = 0; i < ldns_rr_list_rr_count(list); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(list, i);
		char *o;
		int same;

		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_CNAME || ldns_rr_rd_count(rr) == 0)
			continue;
		o = dname_text(ldns_rr_owner(rr));
		same = strcmp(o, owner) == 0;
		free(o);
		if (same)
			return dname_text(ldns_rr_rdf(rr, 0));
	}
	return NULL;
}

static const char *
rcode_name(ldns_pkt_rcode rc)
{
	switch (rc) {
	case LDNS_RCODE_FORMERR:	return "FORMERR";
	case LDNS_RCODE_SERVFAIL:	return "SERVFAIL";
	case LDNS_RCODE_NOTIMPL:	return "NOTIMP";
	case LDNS_RCODE_REFUSED:	return "REFUSED";
	default:			return "an error";
	}
}

char *
dns_answer_read(const ldns_pkt *pkt, const char *name, enum dns_type type, const char *server,
    struct dns_answer *a)
{
	ldns_pkt_rcode rc = ldns_pkt_get_rcode(pkt);
	const ldns_rr_list *ans;
	size_t start = a->nchain;
	char *cur, *next;

	if (rc != LDNS_RCODE_NOERROR && rc != LDNS_RCODE_NXDOMAIN) {
		a->status = DNS_ERROR;
		snprintf(a->why, sizeof(a->why), "%s answered %s", server, rcode_name(rc));
		return NULL;
	}
	ans = ldns_pkt_answer(pkt);
	cur = xstrdup(name);
	ascii_lower(cur);
	while (type != DNS_T_CNAME && (next = cname_at(ans, cur)) != NULL) {
		if (a->nchain >= DNS_MAX_CNAME) {
			free(next);
			break;
		}
		push(&a->chain, &a->nchain, xstrdup(next));
		free(cur);
		cur = next;
	}
	collect(ans, cur, type, a);
	if (a->n > 0) {
		a->status = DNS_ANSWER;
	} else if (rc == LDNS_RCODE_NXDOMAIN) {
		a->status = DNS_NXDOMAIN;
	} else if (a->nchain > start && a->nchain < DNS_MAX_CNAME) {
		return cur;
	} else {
		a->status = DNS_NODATA;
	}
	free(cur);
	return NULL;
}

/*
 * Asks for (name, type) and reads the answer into a: the CNAMEs in front
 * of the records first.  A recursive resolver follows the chain itself; an
 * answer that stops at a CNAME is followed with a query of our own.
 */
static void
resolver_query(struct resolver *r, const char *name, enum dns_type type, struct dns_answer *a)
{
	ldns_pkt *pkt = NULL;
	ldns_rdf *dname;
	ldns_status st;
	char *fqdn, *next;

	if (r->timeouts >= DNS_GIVE_UP) {
		a->status = DNS_ERROR;
		snprintf(a->why, sizeof(a->why), "not asked: %s did not answer the last %d "
		    "queries", r->desc, r->timeouts);
		return;
	}
	fqdn = xasprintf("%s.", name);
	dname = ldns_dname_new_frm_str(fqdn);
	free(fqdn);
	if (dname == NULL) {
		a->status = DNS_ERROR;
		snprintf(a->why, sizeof(a->why), "\"%s\" is not a domain name that can be "
		    "looked up", name);
		return;
	}
	for (size_t i = 0; i < ldns_resolver_nameserver_count(r->res); i++)
		ldns_resolver_set_nameserver_rtt(r->res, i, LDNS_RESOLV_RTT_MIN);
	st = ldns_resolver_query_status(&pkt, r->res, dname, (ldns_rr_type)type,
	    LDNS_RR_CLASS_IN, LDNS_RD);
	ldns_rdf_deep_free(dname);
	if (st != LDNS_STATUS_OK || pkt == NULL) {
		a->status = DNS_ERROR;
		if (st == LDNS_STATUS_NETWORK_ERR || st == LDNS_STATUS_RES_NO_NS ||
		    st == LDNS_STATUS_OK) {
			r->timeouts++;
			snprintf(a->why, sizeof(a->why), "timed out: no answer from %s in %d "
			    "tries of %d s", r->desc, DNS_TRIES, DNS_TIMEOUT_SEC);
		} else {
			snprintf(a->why, sizeof(a->why), "%s (asking %s)",
			    ldns_get_errorstr_by_id(st), r->desc);
		}
		ldns_pkt_free(pkt);
		return;
	}
	r->timeouts = 0;
	next = dns_answer_read(pkt, name, type, r->desc, a);
	ldns_pkt_free(pkt);
	if (next != NULL) {
		/* the chain stops at a name the answer says nothing of: ask
		 * for it (each round adds a link, so this ends) */
		resolver_query(r, next, type, a);
		free(next);
	}
}

static const struct dns_answer *
resolver_lookup(void *ctx, const char *name, enum dns_type type)
{
	struct resolver *r = ctx;
	struct dns_answer *a;
	char *key = xstrdup(name);
	size_t n = strlen(key);

	if (n > 1 && key[n - 1] == '.')
		key[n - 1] = '\0';
	ascii_lower(key);
	for (size_t i = 0; i < r->ncache; i++)
		if (r->cache[i].type == type && strcmp(r->cache[i].name, key) == 0) {
			free(key);
			return r->cache[i].ans;
		}
	a = xcalloc(1, sizeof(*a));
	resolver_query(r, key, type, a);
	if (r->ncache == r->capcache) {
		r->capcache = r->capcache ? 2 * r->capcache : 32;
		r->cache = xrealloc(r->cache, r->capcache * sizeof(*r->cache));
	}
	r->cache[r->ncache].name = key;
	r->cache[r->ncache].type = type;
	r->cache[r->ncache++].ans = a;
	return a;
}

struct dns_source
resolver_source(struct resolver *r)
{
	struct dns_source s = { resolver_lookup, r };

	return s;
}
