/*
 * dnscheck — `relayctl check-dns`: for one sender domain, the SPF, DKIM and
 * DMARC checks that relayd's configuration makes possible (which upstream
 * sends for it, which keys sign it), each a verdict, a reason an admin can
 * act on and, on FAIL, the record to publish; and the two output forms.
 *
 * The checks see DNS only through a struct dns_source (resolve.h), so the
 * unit tests give them a zone of their own.  Every record suggested is
 * checked as if published (SPF: the whole walk and check_host() again)
 * before it is offered; one that would not pass is not offered, and the
 * reason says what else to do.
 */
#ifndef RELAYD_DNSCHECK_H
#define RELAYD_DNSCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "resolve.h"
#include "util.h"

enum check_status { CHECK_PASS = 0, CHECK_WARN, CHECK_FAIL };

struct check {
	char			*name;		/* "SPF", "DKIM", "DMARC" */
	enum check_status	 status;
	char			*reason;
	char			*suggestion;	/* zone-file record(s) to publish; NULL if none */
};

struct domain_checks {
	char		*domain;
	struct check	*c;
	size_t		 n;
};

const char *check_status_name(enum check_status s);

/* Appends a check; suggestion is copied (may be NULL). */
void dnscheck_add(struct domain_checks *d, const char *name, enum check_status st,
    const char *suggestion, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Checks domain (lower case, no final dot), which sec routes (its
 * upstream sends for it, its dkim blocks sign it), into out (free it with
 * dnscheck_free).
 */
void dnscheck_domain(const struct cfg_domain *sec, const char *domain,
    const struct dns_source *dns, struct domain_checks *out);
void dnscheck_free(struct domain_checks *d);

/* The DKIM checks of sec's selectors for domain (dkimcheck.c). */
void dkimcheck_domain(const struct cfg_domain *sec, const char *domain,
    const struct dns_source *dns, struct domain_checks *out);

/*
 * "STATUS DOMAIN CHECK: reason" lines, each FAIL's suggestion after it with
 * every line indented by four spaces; control characters in reasons are
 * written as \xHH.  Appends to out.
 */
void dnscheck_format_text(const struct domain_checks *d, size_t n, struct buf *out);

/*
 * The JSON form: [{"domain", "checks": [{"check", "status", "reason",
 * "suggestion" (string or null)}]}].  The caller frees it.
 */
char *dnscheck_format_json(const struct domain_checks *d, size_t n);

/* True if any check of d[0..n) FAILs. */
bool dnscheck_any_failed(const struct domain_checks *d, size_t n);

/*
 * The TXT record for owner (a name, the final dot added) and value in
 * zone-file form, as `relayctl dkim-keygen` prints it (keygen_txt_record),
 * without its final newline; '"', '\' and octets outside printable ASCII
 * escaped as a zone file wants them (\", \\, \DDD).  The caller frees it.
 */
char *dnscheck_record(const char *owner, const char *value);

#endif
