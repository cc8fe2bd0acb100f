/*
 * spf — SPF records (RFC 7208) as `relayctl check-dns` reads them: the
 * term parser, the lookup counter, check_host() for one address, and the
 * builder of a record to suggest.
 *
 * Pure: DNS comes only through a struct dns_source (resolve.h), so the
 * unit tests hand it a zone of their own.  Nothing here prints.
 *
 * Limits of what is evaluated (the rest is parsed and counted exactly):
 *  - a term whose domain-spec holds a macro (%{i}, %{s}, ...) is counted
 *    as a DNS lookup but neither followed nor matched: what it names
 *    depends on each message;
 *  - ptr never matches (RFC 7208 5.5: "SHOULD NOT be used");
 *  - a, mx and exists are looked up as a receiver checking an IPv4 sender
 *    would (A records) when counting void lookups.
 */
#ifndef RELAYD_SPF_H
#define RELAYD_SPF_H

#include <stdbool.h>
#include <stddef.h>

#include "resolve.h"

#define SPF_MAX_LOOKUPS	10	/* RFC 7208 4.6.4 */
#define SPF_MAX_VOID	2	/* RFC 7208 4.6.4 */
#define SPF_MAX_MX	10	/* RFC 7208 4.6.4: MX names looked at for one mx */

enum spf_kind {
	SPF_INVALID = 0,	/* a term that is not SPF: why says so */
	SPF_ALL, SPF_INCLUDE, SPF_A, SPF_MX, SPF_PTR, SPF_IP4, SPF_IP6, SPF_EXISTS,
	SPF_REDIRECT, SPF_EXP, SPF_MODIFIER	/* SPF_MODIFIER: unknown, ignored */
};

struct spf_term {
	enum spf_kind	 kind;
	char		 qual;		/* '+', '-', '~', '?' (mechanisms) */
	char		*text;		/* as written */
	char		*domain;	/* domain-spec, no final dot; NULL if none given */
	bool		 macro;		/* domain holds a macro */
	int		 cidr4, cidr6;	/* prefix lengths; 32 / 128 unless given */
	unsigned char	 addr[16];	/* ip4 (first 4 bytes), ip6 */
	char		*why;		/* SPF_INVALID: what is wrong */
};

struct spf_record {
	struct spf_term	*t;
	size_t		 n;
	int		 nbad;		/* SPF_INVALID terms, duplicate modifiers */
	char		*why;		/* the first problem, NULL if none */
};

/* True if txt is an SPF record: "v=spf1" alone or followed by a space. */
bool spf_is_record(const char *txt);

/*
 * Parses an SPF record into rec (the version is checked, not kept).
 * Returns 0 if every term is valid, -1 otherwise; either way rec holds
 * every term (the invalid ones as SPF_INVALID) and must be freed.
 */
int spf_parse(const char *txt, struct spf_record *rec);
void spf_record_free(struct spf_record *rec);

/* Index of the first "all" in rec, or -1. */
int spf_find_all(const struct spf_record *rec);

/*
 * ---- the lookup counter -------------------------------------------------
 *
 * Walks the record of domain and everything it reaches through include
 * and redirect (redirect only where there is no "all"), counting the
 * DNS-querying terms (include, a, mx, ptr, exists, redirect) and the void
 * lookups, as evaluating an address that matches nothing would.  Stops
 * following at 4 * SPF_MAX_LOOKUPS (loops).
 */
enum spf_walk_err { SPF_WALK_OK = 0, SPF_WALK_NONE, SPF_WALK_PERMERROR, SPF_WALK_TEMPERROR };

struct spf_walk {
	enum spf_walk_err err;		/* the first problem found */
	char		 why[512];
	int		 err_term;	/* the domain's own term it comes through, -1: the record itself */
	int		 lookups;
	int		 voids;
	int		*cost;		/* per term of the domain's record: lookups it causes */
	int		*void_of;	/* per term: void lookups it causes */
	size_t		 nterms;
	char		**reached;	/* normalized '+' terms reached ("include:x", "a:d", ...) */
	size_t		 nreached;
	int		 unfollowed;	/* include/redirect with macros, not followed */
};

/*
 * Counts for domain; txt, when not NULL, stands in for domain's TXT
 * records (the check of a suggestion before it is published).  Fill w,
 * free it with spf_walk_free().
 */
void spf_walk(const struct dns_source *dns, const char *domain, const char *txt,
    struct spf_walk *w);
void spf_walk_free(struct spf_walk *w);

/*
 * The normalized form of a term, as spf_walk's reached holds them:
 * "include:d", "a:d", "mx:d", "exists:d", "ip4:addr/len", "ip6:addr/len",
 * lower case, a/mx without a domain taking dflt.  NULL if term is not a
 * mechanism.  The caller frees it.
 */
char *spf_term_key(const char *term, const char *dflt);

/* ---- check_host() for one address (RFC 7208 4) ------------------------ */

enum spf_result {
	SPF_R_NONE, SPF_R_NEUTRAL, SPF_R_PASS, SPF_R_FAIL, SPF_R_SOFTFAIL,
	SPF_R_TEMPERROR, SPF_R_PERMERROR
};

const char *spf_result_name(enum spf_result r);

/*
 * The result for a message from addr (family AF_INET or AF_INET6, addr in
 * network order) with a MAIL FROM in domain; txt as for spf_walk.  why
 * says what decided it (the matching term, or the error).
 */
enum spf_result spf_check_host(const struct dns_source *dns, const char *domain,
    const char *txt, int family, const unsigned char *addr, char *why, size_t whylen);

/* ---- the suggestion ---------------------------------------------------- */

/*
 * One record made of the n records given, in order: their terms without
 * duplicates, the invalid ones and those in drop (exact text) left out,
 * add (when not NULL and not there yet) before the "all" term, the all
 * term of the first record that has one, "+all" and "?all" as "~all",
 * "~all" when none has one and no redirect stands for it; a redirect of a
 * record that has "all" is dropped (it was never used), one beside
 * another record's "all" becomes an include.  The caller frees it.
 */
char *spf_suggest(const char *const *records, size_t n, const char *add,
    const char *const *drop, size_t ndrop);

#endif
