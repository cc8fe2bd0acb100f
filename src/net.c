/*
 * net — address notation helpers (API in net.h).  Pure functions: they parse
 * and format text, never resolve names or open sockets.
 *
 * Promises: every rejection comes with a reason an admin can act on, naming
 * the text at fault; nothing is accepted that could mean two things (an IPv6
 * address followed by a port must be bracketed, a CIDR prefix with host bits
 * set is refused rather than silently masked).
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "net.h"

static void
net_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
net_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Decimal number of 1..max digits only (no sign, no spaces), at most max.
 * Returns 0 and the value, or -1.
 */
static int
net_parse_uint(const char *s, size_t n, unsigned long max, unsigned long *v)
{
	unsigned long	x = 0;
	size_t		i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (unsigned long)(s[i] - '0');
		if (x > max)
			return -1;
	}
	*v = x;
	return 0;
}

static int
net_parse_port(const char *s, const char *whole, uint16_t *port, char *err,
    size_t errlen)
{
	unsigned long	v;

	if (net_parse_uint(s, strlen(s), 65535, &v) == -1 || v == 0) {
		net_err(err, errlen, "\"%s\": bad port \"%s\" (expected 1-65535)",
		    whole, s);
		return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

/* A host name or IPv4 literal: letters, digits, '-', '_', '.'. */
static bool
net_valid_hostname(const char *s, size_t n)
{
	size_t	i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* An IPv6 literal, optionally with a zone ("fe80::1%eth0"). */
static bool
net_valid_ipv6(const char *s, size_t n)
{
	char		 buf[NET_HOST_MAX];
	struct in6_addr	 a;
	char		*pct;

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if ((pct = strchr(buf, '%')) != NULL) {
		if (!net_valid_hostname(pct + 1, strlen(pct + 1)))
			return false;
		*pct = '\0';
	}
	return inet_pton(AF_INET6, buf, &a) == 1;
}

static int
net_set_host(struct hostport *out, const char *h, size_t n, const char *whole,
    char *err, size_t errlen)
{
	if (n >= sizeof(out->host)) {
		net_err(err, errlen, "\"%s\": host name too long", whole);
		return -1;
	}
	memcpy(out->host, h, n);
	out->host[n] = '\0';
	return 0;
}

/*
 * Without brackets, a string of two or more colons can only be an IPv6
 * address without a port: "::1:2525" is a valid address, so a port cannot
 * be told from the last group.  It is therefore accepted only where the
 * port is optional, and refused with a hint where a port is required.
 */
int
net_parse_hostport(const char *s, uint16_t default_port, struct hostport *out,
    char *err, size_t errlen)
{
	const char	*colon, *end;
	struct hostport	 hp;

	memset(&hp, 0, sizeof(hp));
	if (s == NULL || *s == '\0') {
		net_err(err, errlen, "empty address");
		return -1;
	}

	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL) {
			net_err(err, errlen, "\"%s\": missing ']'", s);
			return -1;
		}
		if (!net_valid_ipv6(s + 1, (size_t)(end - s - 1))) {
			net_err(err, errlen,
			    "\"%s\": brackets must hold an IPv6 address", s);
			return -1;
		}
		if (net_set_host(&hp, s + 1, (size_t)(end - s - 1), s, err,
		    errlen) == -1)
			return -1;
		if (end[1] == '\0') {
			if (default_port == 0) {
				net_err(err, errlen, "\"%s\": missing port "
				    "(write [address]:port)", s);
				return -1;
			}
			hp.port = default_port;
		} else if (end[1] != ':') {
			net_err(err, errlen, "\"%s\": expected ':port' after ']'",
			    s);
			return -1;
		} else if (net_parse_port(end + 2, s, &hp.port, err,
		    errlen) == -1)
			return -1;
		*out = hp;
		return 0;
	}

	colon = strchr(s, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		if (default_port != 0 && net_valid_ipv6(s, strlen(s))) {
			if (net_set_host(&hp, s, strlen(s), s, err, errlen) == -1)
				return -1;
			hp.port = default_port;
			*out = hp;
			return 0;
		}
		net_err(err, errlen, "\"%s\": an IPv6 address must be written "
		    "in brackets when a port follows, e.g. [::1]:2525", s);
		return -1;
	}

	end = colon != NULL ? colon : s + strlen(s);
	if (end == s) {
		net_err(err, errlen, "\"%s\": empty host", s);
		return -1;
	}
	if (!net_valid_hostname(s, (size_t)(end - s))) {
		net_err(err, errlen, "\"%s\": invalid host name", s);
		return -1;
	}
	if (net_set_host(&hp, s, (size_t)(end - s), s, err, errlen) == -1)
		return -1;
	if (colon == NULL) {
		if (default_port == 0) {
			net_err(err, errlen, "\"%s\": missing port (write "
			    "host:port)", s);
			return -1;
		}
		hp.port = default_port;
	} else if (net_parse_port(colon + 1, s, &hp.port, err, errlen) == -1)
		return -1;
	*out = hp;
	return 0;
}

static size_t
net_family_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* True if the first prefix bits of a and b agree. */
static bool
net_prefix_equal(const uint8_t *a, const uint8_t *b, int prefix)
{
	int	full = prefix / 8, rest = prefix % 8;
	uint8_t	mask;

	if (memcmp(a, b, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return ((a[full] ^ b[full]) & mask) == 0;
}

/* Clears every bit after the first prefix bits of addr. */
static void
net_mask(uint8_t *addr, size_t alen, int prefix)
{
	size_t	i;
	int	bits;

	for (i = 0; i < alen; i++) {
		bits = prefix - (int)i * 8;
		if (bits >= 8)
			continue;
		addr[i] &= bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
	}
}

int
net_parse_cidr(const char *s, struct cidr *out, char *err, size_t errlen)
{
	char		 a[INET6_ADDRSTRLEN + 1], masked[INET6_ADDRSTRLEN];
	const char	*slash;
	struct cidr	 c;
	uint8_t		 m[16];
	unsigned long	 v;
	size_t		 n, alen;
	int		 maxp;

	memset(&c, 0, sizeof(c));
	if (s == NULL || *s == '\0') {
		net_err(err, errlen, "empty network address");
		return -1;
	}
	slash = strchr(s, '/');
	n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(a)) {
		net_err(err, errlen, "\"%s\": not an IP address or network", s);
		return -1;
	}
	memcpy(a, s, n);
	a[n] = '\0';
	c.family = memchr(a, ':', n) != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(c.family, a, c.addr) != 1) {
		net_err(err, errlen, "\"%s\": \"%s\" is not an IP%s address", s,
		    a, c.family == AF_INET ? "v4" : "v6");
		return -1;
	}
	alen = net_family_len(c.family);
	maxp = (int)alen * 8;
	if (slash == NULL)
		c.prefix = maxp;
	else if (net_parse_uint(slash + 1, strlen(slash + 1), (unsigned long)maxp,
	    &v) == -1) {
		net_err(err, errlen, "\"%s\": bad prefix length \"%s\" "
		    "(expected 0-%d)", s, slash + 1, maxp);
		return -1;
	} else
		c.prefix = (int)v;

	memcpy(m, c.addr, sizeof(m));
	net_mask(m, alen, c.prefix);
	if (memcmp(m, c.addr, alen) != 0) {
		if (inet_ntop(c.family, m, masked, sizeof(masked)) == NULL)
			masked[0] = '\0';
		net_err(err, errlen, "%s has host bits set (did you mean %s/%d?)",
		    s, masked, c.prefix);
		return -1;
	}
	*out = c;
	return 0;
}

static const uint8_t net_v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/*
 * A client on a dual-stack socket shows up as ::ffff:a.b.c.d; an IPv4 rule
 * must still apply to it.  Conversely an IPv4 client is compared with an
 * IPv6 rule as its mapped form, so ::ffff:0:0/96 and ::/0 cover it too.
 */
bool
net_cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	uint8_t	a[16];
	int	family;

	if (c == NULL || sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		family = AF_INET;
		memcpy(a, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		family = AF_INET6;
		memcpy(a, &sin6->sin6_addr, 16);
	} else
		return false;

	if (c->family == AF_INET && family == AF_INET6) {
		if (memcmp(a, net_v4mapped, sizeof(net_v4mapped)) != 0)
			return false;
		memmove(a, a + 12, 4);
		family = AF_INET;
	} else if (c->family == AF_INET6 && family == AF_INET) {
		memmove(a + 12, a, 4);
		memcpy(a, net_v4mapped, sizeof(net_v4mapped));
		family = AF_INET6;
	}
	if (family != c->family)
		return false;
	return net_prefix_equal(a, c->addr, c->prefix);
}

/*
 * An IPv4-mapped IPv6 address is written as plain IPv4, as Postfix does, so
 * one client reads the same in the logs whichever socket it came through.
 * Anything that is not IPv4 or IPv6 (a UNIX socket) is written "unknown",
 * port 0.
 */
void
net_format_addr(const struct sockaddr *sa, char *ip, size_t iplen, uint16_t *port)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	const uint8_t			*b;
	const char			*r = NULL;
	uint16_t			 pt = 0;
	bool				 want_ip = ip != NULL && iplen > 0;

	if (sa != NULL && sa->sa_family == AF_INET) {
		pt = ntohs(sin->sin_port);
		if (want_ip)
			r = inet_ntop(AF_INET, &sin->sin_addr, ip,
			    (socklen_t)iplen);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		pt = ntohs(sin6->sin6_port);
		b = sin6->sin6_addr.s6_addr;
		if (want_ip && memcmp(b, net_v4mapped, sizeof(net_v4mapped)) == 0)
			r = inet_ntop(AF_INET, b + 12, ip, (socklen_t)iplen);
		else if (want_ip)
			r = inet_ntop(AF_INET6, b, ip, (socklen_t)iplen);
	}
	if (want_ip && r == NULL)
		snprintf(ip, iplen, "%s", "unknown");
	if (port != NULL)
		*port = pt;
}
