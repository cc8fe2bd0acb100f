/*
 * fakedns — a zone in memory behind a struct dns_source, for the unit
 * tests of the check-dns checkers (no network).  Answers as a recursive
 * resolver would: CNAMEs followed, NXDOMAIN for a name with nothing at or
 * below it, NODATA otherwise; a record of type FAKE_SERVFAIL makes every
 * lookup of its name fail.
 */
#ifndef RELAYD_TEST_FAKEDNS_H
#define RELAYD_TEST_FAKEDNS_H

#include "resolve.h"

#define FAKE_SERVFAIL	0

struct fake_rr {
	const char	*name;
	int		 type;		/* enum dns_type, or FAKE_SERVFAIL */
	const char	*value;		/* TXT joined; MX "host" (in order) */
};

struct fakedns {
	const struct fake_rr	*zone;
	struct dns_answer	**answers;	/* made so far, freed by fakedns_free */
	size_t			  nanswers;
	int			  lookups;	/* how many were asked */
};

struct dns_source fakedns_source(struct fakedns *f, const struct fake_rr *zone);
void fakedns_free(struct fakedns *f);

#endif
