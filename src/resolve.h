/*
 * resolve — DNS lookups for `relayctl check-dns`, through ldns's stub
 * resolver (no packet is built or parsed here).
 *
 * What it promises:
 *  - one answer per (name, type), kept for the life of the resolver, so a
 *    name the SPF walk, the suggestion's re-check and DMARC all need is
 *    asked once;
 *  - an answer says which of four things happened: records, the name
 *    exists without records of that type (NODATA), the name does not exist
 *    (NXDOMAIN), or the lookup failed (timeout, SERVFAIL, REFUSED, network
 *    error).  A failure is never reported as a missing record;
 *  - CNAMEs are followed (at most DNS_MAX_CNAME), the names passed through
 *    are kept in the answer (a CNAME to a missing name is told apart from
 *    a missing name);
 *  - UDP with a bounded wait (DNS_TIMEOUT_SEC, DNS_TRIES tries), then TCP
 *    when the answer was truncated;
 *  - after DNS_GIVE_UP consecutive timeouts every later lookup fails at
 *    once, saying so, instead of waiting again for a resolver that is gone.
 *
 * The types below are plain data, so that the pure checkers (spf, dmarc,
 * dnscheck) and their unit tests use them without ldns: a check sees DNS
 * only through a struct dns_source.
 */
#ifndef RELAYD_RESOLVE_H
#define RELAYD_RESOLVE_H

#include <stddef.h>

#define DNS_TIMEOUT_SEC	2
#define DNS_TRIES	2
#define DNS_GIVE_UP	2
#define DNS_MAX_CNAME	8

enum dns_type {
	DNS_T_A = 1,
	DNS_T_CNAME = 5,
	DNS_T_MX = 15,
	DNS_T_TXT = 16,
	DNS_T_AAAA = 28
};

enum dns_status {
	DNS_ANSWER = 0,		/* rr[0..n) hold the records */
	DNS_NODATA,		/* the name exists, no record of the type */
	DNS_NXDOMAIN,		/* the name (or the end of its CNAME chain) does not exist */
	DNS_ERROR		/* the lookup failed: why says how */
};

struct dns_answer {
	enum dns_status	  status;
	/*
	 * TXT: each record's character-strings joined (RFC 7208 3.3, RFC 6376
	 * 3.6.2.2), bytes outside printable ASCII written as \DDD as in a zone
	 * file; A, AAAA: the address in text; MX: the exchange's name, lower
	 * case without the final dot, in preference order; CNAME: the target.
	 */
	char		**rr;
	size_t		  n;
	char		**chain;	/* CNAME targets followed from the name, in order */
	size_t		  nchain;
	char		  why[256];	/* DNS_ERROR: e.g. "timed out: no answer from
					 * 127.0.0.1 in 2 tries of 2 s" */
};

/* What a checker looks names up with; the answer belongs to the source. */
struct dns_source {
	const struct dns_answer *(*lookup)(void *ctx, const char *name, enum dns_type type);
	void	*ctx;
};

/* "TXT", "A", ... */
const char *dns_type_name(enum dns_type type);

struct resolver;

/*
 * A resolver asking server ("IP", "IP:PORT", "[IPv6]:PORT"), or when
 * server is NULL the name servers of /etc/resolv.conf (or of the file
 * named by RELAYD_RESOLV_CONF, as for relayd).  NULL with a reason in err.
 */
struct resolver *resolver_new(const char *server, char *err, size_t errlen);
void resolver_free(struct resolver *r);

/* The resolver as a struct dns_source (valid while r lives). */
struct dns_source resolver_source(struct resolver *r);

/* Who answers, for messages: "127.0.0.1:5353", "192.0.2.53 (from /etc/resolv.conf)". */
const char *resolver_describe(const struct resolver *r);

/*
 * Reads one answer packet to the question (name, type) into a, the way
 * lookups do: the RCODE (an error says so in why, naming server), the
 * CNAMEs at the front followed from name (added to a->chain), then the
 * records of type at the end of that chain.  Returns NULL when a is
 * complete, or, when the chain stops at a name the packet says nothing
 * more of, that name (allocated; a holds no status yet): the caller asks
 * for it and reads that answer into a too.  Pure (no network): the
 * lookups use it, and so do the fuzz targets (tests/fuzz/fuzz_dns.c),
 * on packets made of any bytes.
 */
struct ldns_struct_pkt;
char *dns_answer_read(const struct ldns_struct_pkt *pkt, const char *name, enum dns_type type,
    const char *server, struct dns_answer *a);

/* Frees an answer allocated zeroed (calloc) and all it holds; lookups
 * free their own with the resolver. */
void dns_answer_free(struct dns_answer *a);

#endif
