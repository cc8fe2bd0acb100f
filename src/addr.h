/*
 * addr — mailbox and path syntax (RFC 5321 section 4.1.2, RFC 6531 for
 * UTF-8).  Pure functions: no allocation, no I/O.
 */
#ifndef RELAYD_ADDR_H
#define RELAYD_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX	64	/* octets, RFC 5321 4.5.3.1.1 */
#define ADDR_DOMAIN_MAX	255	/* octets, RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX	256	/* octets incl. <>, RFC 5321 4.5.3.1.3 */

enum addr_status {
	ADDR_OK = 0,
	ADDR_SYNTAX,		/* malformed: 501 5.1.3 */
	ADDR_NEEDS_UTF8,	/* valid only with SMTPUTF8, which was not given: 553 5.6.7 */
	ADDR_TOO_LONG,		/* over the RFC 5321 limits: 501 5.1.3 */
};

/*
 * Parses a Reverse-path / Forward-path starting at s (len bytes): "<>" (only
 * if allow_null), "<local@domain>", "<@a,@b:local@domain>" (source route,
 * accepted and dropped).  Local part: dot-atom or quoted string; domain: a
 * host name (LDH labels, or U-labels with utf8) or an address literal
 * "[192.0.2.1]" / "[IPv6:...]".  On ADDR_OK the mailbox without brackets
 * ("" for the null path) is written to out (>= ADDR_PATH_MAX + 1 bytes,
 * NUL-terminated) and *end points just past the closing '>'.
 * With utf8 false, any octet >= 0x80 gives ADDR_NEEDS_UTF8 if the address is
 * otherwise valid under RFC 6531.
 */
enum addr_status addr_parse_path(const char *s, size_t len, bool allow_null, bool utf8,
    char *out, const char **end);

/* Validates a bare mailbox "local@domain" (no brackets), as above. */
enum addr_status addr_check_mailbox(const char *s, bool utf8);

/* Pointer to the domain part of a mailbox (after the last '@'), or "" if none. */
const char *addr_domain(const char *mailbox);

#endif
