/*
 * net — pure helpers for network address notation: "host:port" forms as
 * written in relayd.conf, CIDR prefixes for the allow list, and formatting
 * of socket addresses for logs.  No sockets are opened here.
 */
#ifndef RELAYD_NET_H
#define RELAYD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NET_HOST_MAX 256

struct hostport {
	char		host[NET_HOST_MAX];	/* without brackets for IPv6 */
	uint16_t	port;
};

/*
 * Parses "127.0.0.1:2525", "[::1]:2525", "localhost:2525", "host" (when
 * default_port != 0) into out.  A bare IPv6 address must be bracketed when a
 * port follows.  Returns 0, or -1 with a human-readable reason in err.
 */
int net_parse_hostport(const char *s, uint16_t default_port, struct hostport *out,
    char *err, size_t errlen);

struct cidr {
	int	family;		/* AF_INET or AF_INET6 */
	uint8_t	addr[16];	/* network byte order; 4 bytes used for AF_INET */
	int	prefix;		/* 0..32 or 0..128 */
};

/*
 * Parses "127.0.0.0/8", "::1/128", or a bare address (full-length prefix).
 * Host bits set beyond the prefix are an error ("10.0.0.1/8"), as a typo
 * there usually means the admin meant something else.  Returns 0 or -1 + err.
 */
int net_parse_cidr(const char *s, struct cidr *out, char *err, size_t errlen);

/* True if sa falls in c.  An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * matches IPv4 prefixes. */
bool net_cidr_match(const struct cidr *c, const struct sockaddr *sa);

/* Numeric address of sa into ip (>= 46 bytes) and its port into *port. */
void net_format_addr(const struct sockaddr *sa, char *ip, size_t iplen, uint16_t *port);

#endif
