/*
 * fuzz_dns — DNS answers as `relayctl check-dns` reads them (resolve.c):
 * the packet decoded by ldns (ldns_wire2pkt), then relayd's reading of
 * it (dns_answer_read): the RCODE, the CNAME chain, the records of the
 * type asked for, TXT strings joined.
 *
 * Input: one octet picks the type asked for (A, AAAA, CNAME, MX, TXT);
 * the rest is the packet as a name server sends it.  The name asked for
 * is the packet's question, as a resolver would have asked it.
 * Properties:
 *  - the status and the records agree: records only with DNS_ANSWER, an
 *    error with a reason, NXDOMAIN only with that RCODE;
 *  - the CNAME chain is at most DNS_MAX_CNAME names, lower case, without
 *    the final dot, and a name to ask next is its last;
 *  - TXT records are printable ASCII (other octets written \DDD);
 *    addresses are addresses of their family; MX names are lower case.
 */
#include "acconfig.h"

#include <arpa/inet.h>
#include <ctype.h>

#include <ldns/ldns.h>

#include "fuzz.h"
#include "resolve.h"
#include "util.h"

static void
check_name(const char *n, const char *what)
{
	size_t len = strlen(n);

	for (const char *c = n; *c; c++)
		FUZZ_CHECK(!isupper((unsigned char)*c), "%s \"%s\" not lower case", what, n);
	FUZZ_CHECK(len <= 1 || n[len - 1] != '.' || (len >= 2 && n[len - 2] == '\\'),
	    "%s \"%s\" ends with a dot", what, n);
}

static void
check_answer(const struct dns_answer *a, enum dns_type type, ldns_pkt_rcode rc,
    const char *follow)
{
	unsigned char bin[16];

	FUZZ_CHECK(a->nchain <= DNS_MAX_CNAME, "a chain of %zu names", a->nchain);
	for (size_t i = 0; i < a->nchain; i++)
		check_name(a->chain[i], "CNAME target");
	if (follow != NULL) {
		FUZZ_CHECK(a->nchain > 0 && strcmp(follow, a->chain[a->nchain - 1]) == 0 &&
		    a->n == 0, "asked to follow \"%s\", not the chain's end", follow);
		return;
	}
	FUZZ_CHECK((a->n > 0) == (a->status == DNS_ANSWER), "%zu records, status %d", a->n,
	    a->status);
	FUZZ_CHECK(a->status != DNS_NXDOMAIN || rc == LDNS_RCODE_NXDOMAIN, "NXDOMAIN from %d",
	    rc);
	FUZZ_CHECK(a->status != DNS_ERROR || a->why[0] != '\0', "an error without a reason");
	for (size_t i = 0; i < a->n; i++) {
		const char *r = a->rr[i];

		switch (type) {
		case DNS_T_TXT:
			for (const char *c = r; *c; c++)
				FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "TXT octet 0x%02x not escaped",
				    (unsigned char)*c);
			break;
		case DNS_T_A:
			FUZZ_CHECK(inet_pton(AF_INET, r, bin) == 1, "A record \"%s\"", r);
			break;
		case DNS_T_AAAA:
			FUZZ_CHECK(inet_pton(AF_INET6, r, bin) == 1, "AAAA record \"%s\"", r);
			break;
		case DNS_T_MX:
		case DNS_T_CNAME:
			check_name(r, "name");
			break;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum dns_type types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_CNAME, DNS_T_MX,
	    DNS_T_TXT };
	struct fuzz_in in = { data, size };
	enum dns_type type = types[fuzz_byte(&in) % 5];
	uint8_t *wire = (uint8_t *)fuzz_dup(in.p, in.n, false);
	ldns_pkt *pkt = NULL;

	if (ldns_wire2pkt(&pkt, wire, in.n) == LDNS_STATUS_OK) {
		const ldns_rr_list *q = ldns_pkt_question(pkt);
		char *name = NULL;

		if (ldns_rr_list_rr_count(q) > 0) {
			name = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(q, 0)));
			if (name != NULL && strlen(name) > 1 && name[strlen(name) - 1] == '.')
				name[strlen(name) - 1] = '\0';
		}
		struct dns_answer *a = xcalloc(1, sizeof(*a));
		char *follow = dns_answer_read(pkt, name ? name : "example.org", type,
		    "192.0.2.53", a);

		check_answer(a, type, ldns_pkt_get_rcode(pkt), follow);
		free(follow);
		free(name);
		dns_answer_free(a);
		ldns_pkt_free(pkt);
	}
	free(wire);
	return 0;
}
