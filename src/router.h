/*
 * router — which domain section (and so which upstream and DKIM keys) a
 * domain belongs to.  Pure: a lookup in the configuration snapshot.
 *
 * Order (interface.md): the exact name first; then "*.parent" patterns, the
 * most specific (longest parent) first; then "*".  "*.example.org" matches
 * any name ending in ".example.org" at any depth, never "example.org"
 * itself.  Names compare case-insensitively; a trailing dot is ignored.
 */
#ifndef RELAYD_ROUTER_H
#define RELAYD_ROUTER_H

#include "config.h"

/* The section for domain, or NULL if none applies (550 5.7.1 at MAIL FROM). */
const struct cfg_domain *router_lookup(const struct config *cfg, const char *domain);

/* The section whose DKIM keys sign a message with this From: domain (the
 * one DMARC checks): its own, if that has keys; NULL if none has or the
 * domain is "". */
const struct cfg_domain *router_signing_section(const struct config *cfg,
    const char *from_domain);

#endif
