/*
 * router — picks the domain section for a domain (see router.h for the
 * order).  Pure: reads the snapshot, allocates nothing, touches no I/O.
 *
 * Domain section names are stored lower case by config_load(), so only the
 * looked-up name needs folding; it is compared in place, with its length
 * trimmed of the trailing dot, rather than copied.
 */
#include <string.h>

#include "router.h"
#include "util.h"

/* The section named exactly name[0..len), case-insensitively. */
static const struct cfg_domain *
router_find(const struct config *cfg, const char *prefix, const char *name, size_t len)
{
	size_t plen = strlen(prefix);

	for (size_t i = 0; i < cfg->ndomains; i++) {
		const char *d = cfg->domains[i].name;

		if (strlen(d) == plen + len && strncmp(d, prefix, plen) == 0 &&
		    ascii_strncasecmp(d + plen, name, len) == 0)
			return &cfg->domains[i];
	}
	return NULL;
}

const struct cfg_domain *
router_lookup(const struct config *cfg, const char *domain)
{
	const struct cfg_domain *d;
	size_t len;

	if (cfg == NULL)
		return NULL;
	if (domain == NULL)
		domain = "";
	len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;

	if (len > 0) {
		if ((d = router_find(cfg, "", domain, len)) != NULL)
			return d;
		/*
		 * "*.parent" for each proper parent, the longest first: walking
		 * the dots left to right visits the most specific pattern first.
		 */
		for (size_t i = 0; i < len; i++) {
			if (domain[i] != '.' || i + 1 >= len)
				continue;
			d = router_find(cfg, "*.", domain + i + 1, len - i - 1);
			if (d != NULL)
				return d;
		}
	}
	return router_find(cfg, "*", "", 0);
}

const struct cfg_domain *
router_signing_section(const struct config *cfg, const char *from_domain)
{
	const struct cfg_domain *d;

	if (from_domain[0] == '\0')
		return NULL;
	d = router_lookup(cfg, from_domain);
	return d != NULL && d->ndkim > 0 ? d : NULL;
}
