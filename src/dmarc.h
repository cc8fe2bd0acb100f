/*
 * dmarc — DMARC policy records (RFC 7489) as `relayctl check-dns` reads
 * them, and the organizational domain.  Pure: no DNS, no printing.
 */
#ifndef RELAYD_DMARC_H
#define RELAYD_DMARC_H

#include <stdbool.h>
#include <stddef.h>

enum dmarc_policy { DMARC_NONE = 0, DMARC_QUARANTINE, DMARC_REJECT };

struct dmarc_record {
	enum dmarc_policy	p;
	enum dmarc_policy	sp;	/* p unless sp= is given */
	bool			has_sp;
	int			pct;	/* 100 unless given */
	char			rua[256];	/* "" if none */
	char			why[256];	/* invalid: the problem; valid: "" or a note
						 * on a tag receivers will ignore */
};

/*
 * True if txt is a DMARC record at all (RFC 7489 6.6.3: it begins with
 * "v=DMARC1", the rest being tag=value pairs); others at _dmarc.DOMAIN
 * are discarded by receivers.
 */
bool dmarc_is_record(const char *txt);

/*
 * Parses a DMARC record.  0 if it is a valid policy record (v=DMARC1
 * first, then a p= of none, quarantine or reject); -1 with why otherwise.
 * A bad value of another tag leaves it valid (receivers use the default)
 * with a note in why.
 */
int dmarc_parse(const char *txt, struct dmarc_record *rec);

const char *dmarc_policy_name(enum dmarc_policy p);

/*
 * The organizational domain of domain (RFC 7489 3.2), approximated
 * without the Public Suffix List: the last two labels, or the last three
 * when the last two are one of the second-level registries under a
 * country-code domain that hand out names below them (co.uk, com.au,
 * ...: the list in dmarc.c).  Written lower case into out.
 */
void dmarc_org_domain(const char *domain, char *out, size_t outlen);

/* True if a and b have the same organizational domain (relaxed alignment). */
bool dmarc_aligned(const char *a, const char *b);

#endif
