/*
 * check_net — host:port and CIDR notation, allow-list matching, and address
 * formatting for logs.  Socket addresses are built by hand; nothing is
 * opened or resolved.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "net.h"
#include "suites.h"

/* ---- host:port ---------------------------------------------------------- */

struct hp_ok {
	const char	*in;
	uint16_t	 def;
	const char	*host;
	uint16_t	 port;
};

static const struct hp_ok hp_good[] = {
	{ "127.0.0.1:2525", 0, "127.0.0.1", 2525 },
	{ "[::1]:2525", 0, "::1", 2525 },
	{ "[2001:db8::25]:587", 25, "2001:db8::25", 587 },
	{ "[::1]", 25, "::1", 25 },
	{ "[fe80::1%eth0]:25", 0, "fe80::1%eth0", 25 },
	{ "localhost:2525", 0, "localhost", 2525 },
	{ "smtp.eu.mailgun.org", 587, "smtp.eu.mailgun.org", 587 },
	{ "smtp.eu.mailgun.org:465", 587, "smtp.eu.mailgun.org", 465 },
	{ "mail-1.example_x.com.:1", 0, "mail-1.example_x.com.", 1 },
	{ "h:65535", 0, "h", 65535 },
	{ "h:00025", 0, "h", 25 },
	/* Unbracketed IPv6 only where no port can follow. */
	{ "2001:db8::1", 25, "2001:db8::1", 25 },
	{ "::1", 2525, "::1", 2525 },
};

START_TEST(test_hostport_good)
{
	const struct hp_ok	*t = &hp_good[_i];
	struct hostport		 hp;
	char			 err[256] = "";

	memset(&hp, 0xa5, sizeof(hp));
	ck_assert_msg(net_parse_hostport(t->in, t->def, &hp, err, sizeof(err)) == 0,
	    "\"%s\" rejected: %s", t->in, err);
	ck_assert_str_eq(hp.host, t->host);
	ck_assert_uint_eq(hp.port, t->port);
}
END_TEST

struct hp_bad {
	const char	*in;
	uint16_t	 def;
	const char	*reason;	/* must appear in the message */
};

static const struct hp_bad hp_bad[] = {
	{ "", 25, "empty" },
	{ ":2525", 0, "empty host" },
	{ "localhost:0", 0, "bad port \"0\"" },
	{ "localhost:65536", 0, "bad port \"65536\"" },
	{ "localhost:99999999999999999999", 0, "bad port" },
	{ "localhost:abc", 0, "bad port \"abc\"" },
	{ "localhost:", 25, "bad port" },
	{ "localhost:+25", 0, "bad port" },
	{ "localhost:25 ", 0, "bad port" },
	{ "localhost", 0, "missing port" },
	{ "::1:2525", 0, "in brackets" },
	{ "2001:db8::1:25", 0, "in brackets" },
	{ "a:b:c", 25, "in brackets" },
	{ "[::1]", 0, "missing port" },
	{ "[::1", 25, "missing ']'" },
	{ "[::1]2525", 0, "expected ':port'" },
	{ "[::1]:", 0, "bad port" },
	{ "[localhost]:25", 0, "IPv6" },
	{ "[]:25", 0, "IPv6" },
	{ "bad host:25", 0, "invalid host" },
	{ "exa/mple:25", 0, "invalid host" },
};

START_TEST(test_hostport_bad)
{
	const struct hp_bad	*t = &hp_bad[_i];
	struct hostport		 hp;
	char			 err[256] = "";

	memset(&hp, 0, sizeof(hp));
	strcpy(hp.host, "untouched");
	ck_assert_msg(net_parse_hostport(t->in, t->def, &hp, err, sizeof(err)) == -1,
	    "\"%s\" accepted", t->in);
	ck_assert_msg(strstr(err, t->reason) != NULL,
	    "\"%s\": message \"%s\" lacks \"%s\"", t->in, err, t->reason);
	/* A failed parse leaves the output alone. */
	ck_assert_str_eq(hp.host, "untouched");
}
END_TEST

START_TEST(test_hostport_long)
{
	char		s[NET_HOST_MAX + 8];
	struct hostport	hp;
	char		err[512] = "";

	memset(s, 'a', NET_HOST_MAX - 1);
	strcpy(s + NET_HOST_MAX - 1, ":25");
	ck_assert_int_eq(net_parse_hostport(s, 0, &hp, err, sizeof(err)), 0);
	ck_assert_uint_eq(strlen(hp.host), NET_HOST_MAX - 1);
	memset(s, 'a', NET_HOST_MAX);
	strcpy(s + NET_HOST_MAX, ":25");
	ck_assert_int_eq(net_parse_hostport(s, 0, &hp, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "too long"));
	/* A NULL or small err buffer is fine. */
	ck_assert_int_eq(net_parse_hostport("x:0", 0, &hp, NULL, 0), -1);
	ck_assert_int_eq(net_parse_hostport("x:0", 0, &hp, err, 4), -1);
	ck_assert_uint_eq(strlen(err), 3);
}
END_TEST

/* ---- CIDR -------------------------------------------------------------- */

static struct sockaddr_storage
sa4(const char *ip, uint16_t port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage
sa6(const char *ip, uint16_t port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return ss;
}

/* Matches ip (v4 or v6, by its form) against the network s. */
static bool
match(const char *s, const char *ip)
{
	struct cidr		c;
	struct sockaddr_storage	ss;
	char			err[256] = "";

	ck_assert_msg(net_parse_cidr(s, &c, err, sizeof(err)) == 0,
	    "\"%s\" rejected: %s", s, err);
	ss = strchr(ip, ':') != NULL ? sa6(ip, 25) : sa4(ip, 25);
	return net_cidr_match(&c, (struct sockaddr *)&ss);
}

START_TEST(test_cidr_parse)
{
	struct cidr	c;
	char		err[256] = "";
	uint8_t		want4[4] = { 127, 0, 0, 0 };
	uint8_t		want6[16] = { 0x20, 0x01, 0x0d, 0xb8 };

	ck_assert_int_eq(net_parse_cidr("127.0.0.0/8", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_int_eq(c.prefix, 8);
	ck_assert_mem_eq(c.addr, want4, 4);

	ck_assert_int_eq(net_parse_cidr("10.1.2.3", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_int_eq(c.prefix, 32);

	ck_assert_int_eq(net_parse_cidr("::1/128", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_int_eq(c.prefix, 128);
	ck_assert_uint_eq(c.addr[15], 1);

	ck_assert_int_eq(net_parse_cidr("::1", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.prefix, 128);

	ck_assert_int_eq(net_parse_cidr("2001:db8::/32", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_int_eq(c.prefix, 32);
	ck_assert_mem_eq(c.addr, want6, 16);

	ck_assert_int_eq(net_parse_cidr("0.0.0.0/0", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.prefix, 0);
	ck_assert_int_eq(net_parse_cidr("::/0", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.prefix, 0);
	ck_assert_int_eq(net_parse_cidr("192.168.1.128/25", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.prefix, 25);
}
END_TEST

struct cidr_bad {
	const char	*in;
	const char	*msg;	/* must appear in the message */
};

static const struct cidr_bad cidr_bad[] = {
	{ "10.0.0.1/8", "10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)" },
	{ "192.168.1.129/25", "did you mean 192.168.1.128/25?" },
	{ "2001:db8::1/32", "2001:db8::1/32 has host bits set (did you mean 2001:db8::/32?)" },
	{ "::1/0", "did you mean ::/0?" },
	{ "1.2.3.4/33", "bad prefix length \"33\" (expected 0-32)" },
	{ "::1/129", "bad prefix length \"129\" (expected 0-128)" },
	{ "1.2.3.4/-1", "bad prefix length" },
	{ "1.2.3.4/", "bad prefix length" },
	{ "1.2.3.4/abc", "bad prefix length" },
	{ "1.2.3.4/8/8", "bad prefix length" },
	{ "1.2.3/24", "is not an IPv4 address" },
	{ "256.1.1.1", "is not an IPv4 address" },
	{ "localhost", "is not an IPv4 address" },
	{ "1::2::3", "is not an IPv6 address" },
	{ "/8", "not an IP address" },
	{ "", "empty" },
};

START_TEST(test_cidr_bad)
{
	const struct cidr_bad	*t = &cidr_bad[_i];
	struct cidr		 c;
	char			 err[256] = "";

	ck_assert_msg(net_parse_cidr(t->in, &c, err, sizeof(err)) == -1,
	    "\"%s\" accepted", t->in);
	ck_assert_msg(strstr(err, t->msg) != NULL,
	    "\"%s\": message \"%s\" lacks \"%s\"", t->in, err, t->msg);
}
END_TEST

START_TEST(test_cidr_match_v4)
{
	ck_assert(match("127.0.0.0/8", "127.0.0.1"));
	ck_assert(match("127.0.0.0/8", "127.255.255.255"));
	ck_assert(!match("127.0.0.0/8", "128.0.0.1"));
	ck_assert(!match("127.0.0.0/8", "126.255.255.255"));
	ck_assert(match("192.168.1.128/25", "192.168.1.200"));
	ck_assert(!match("192.168.1.128/25", "192.168.1.127"));
	ck_assert(match("10.1.2.3", "10.1.2.3"));
	ck_assert(!match("10.1.2.3", "10.1.2.4"));
	ck_assert(match("0.0.0.0/0", "203.0.113.9"));
	/* An IPv4 rule is not an IPv6 one. */
	ck_assert(!match("127.0.0.0/8", "::1"));
	ck_assert(!match("0.0.0.0/0", "2001:db8::1"));
}
END_TEST

START_TEST(test_cidr_match_v6)
{
	ck_assert(match("::1/128", "::1"));
	ck_assert(!match("::1/128", "::2"));
	ck_assert(match("2001:db8::/32", "2001:db8:ffff::1"));
	ck_assert(!match("2001:db8::/32", "2001:db9::1"));
	ck_assert(match("fe80::/10", "febf::1"));
	ck_assert(!match("fe80::/10", "fec0::1"));
	ck_assert(match("::/0", "2001:db8::1"));
	/* ::1 is not 127.0.0.1. */
	ck_assert(!match("::1/128", "127.0.0.1"));
}
END_TEST

/* A client on a dual-stack socket: ::ffff:a.b.c.d. */
START_TEST(test_cidr_match_mapped)
{
	ck_assert(match("127.0.0.0/8", "::ffff:127.0.0.1"));
	ck_assert(match("10.0.0.0/8", "::ffff:10.20.30.40"));
	ck_assert(!match("10.0.0.0/8", "::ffff:11.0.0.1"));
	ck_assert(match("0.0.0.0/0", "::ffff:1.2.3.4"));
	/* Not mapped: the IPv4 bits in another place do not count. */
	ck_assert(!match("127.0.0.0/8", "::127.0.0.1"));
	ck_assert(!match("127.0.0.0/8", "64:ff9b::127.0.0.1"));
	/* And the other way: an IPv4 client under an IPv6 rule for mapped space. */
	ck_assert(match("::ffff:0:0/96", "192.0.2.1"));
	ck_assert(match("::ffff:192.0.2.0/120", "192.0.2.77"));
	ck_assert(!match("::ffff:192.0.2.0/120", "192.0.3.77"));
	ck_assert(!match("2001:db8::/32", "192.0.2.1"));
}
END_TEST

START_TEST(test_cidr_match_other)
{
	struct cidr		c;
	struct sockaddr_un	sun;
	char			err[64];

	ck_assert_int_eq(net_parse_cidr("0.0.0.0/0", &c, err, sizeof(err)), 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert(!net_cidr_match(&c, (struct sockaddr *)&sun));
	ck_assert(!net_cidr_match(&c, NULL));
}
END_TEST

/* ---- formatting ---------------------------------------------------------- */

START_TEST(test_format_addr)
{
	struct sockaddr_storage	ss;
	struct sockaddr_un	sun;
	char			ip[64];
	uint16_t		port = 0;

	ss = sa4("203.0.113.5", 587);
	net_format_addr((struct sockaddr *)&ss, ip, sizeof(ip), &port);
	ck_assert_str_eq(ip, "203.0.113.5");
	ck_assert_uint_eq(port, 587);

	ss = sa6("2001:db8:0:0::1", 2525);
	net_format_addr((struct sockaddr *)&ss, ip, sizeof(ip), &port);
	ck_assert_str_eq(ip, "2001:db8::1");
	ck_assert_uint_eq(port, 2525);

	ss = sa6("::1", 65535);
	net_format_addr((struct sockaddr *)&ss, ip, sizeof(ip), &port);
	ck_assert_str_eq(ip, "::1");
	ck_assert_uint_eq(port, 65535);

	/* Mapped IPv4 reads as IPv4 in the logs. */
	ss = sa6("::ffff:127.0.0.1", 40000);
	net_format_addr((struct sockaddr *)&ss, ip, sizeof(ip), &port);
	ck_assert_str_eq(ip, "127.0.0.1");
	ck_assert_uint_eq(port, 40000);

	/* The longest IPv6 form fits the promised 46 bytes. */
	ss = sa6("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 1);
	net_format_addr((struct sockaddr *)&ss, ip, 46, &port);
	ck_assert_str_eq(ip, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");

	/* Port only. */
	ss = sa4("10.0.0.1", 25);
	port = 0;
	net_format_addr((struct sockaddr *)&ss, NULL, 0, &port);
	ck_assert_uint_eq(port, 25);

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	port = 99;
	net_format_addr((struct sockaddr *)&sun, ip, sizeof(ip), &port);
	ck_assert_str_eq(ip, "unknown");
	ck_assert_uint_eq(port, 0);

	/* Too small a buffer gives a truncated marker, not garbage. */
	ss = sa6("2001:db8::1", 25);
	net_format_addr((struct sockaddr *)&ss, ip, 5, &port);
	ck_assert_str_eq(ip, "unkn");
}
END_TEST

Suite *
net_suite(void)
{
	Suite	*s = suite_create("net");
	TCase	*tc;

	tc = tcase_create("hostport");
	tcase_add_loop_test(tc, test_hostport_good, 0,
	    (int)(sizeof(hp_good) / sizeof(hp_good[0])));
	tcase_add_loop_test(tc, test_hostport_bad, 0,
	    (int)(sizeof(hp_bad) / sizeof(hp_bad[0])));
	tcase_add_test(tc, test_hostport_long);
	suite_add_tcase(s, tc);

	tc = tcase_create("cidr");
	tcase_add_test(tc, test_cidr_parse);
	tcase_add_loop_test(tc, test_cidr_bad, 0,
	    (int)(sizeof(cidr_bad) / sizeof(cidr_bad[0])));
	tcase_add_test(tc, test_cidr_match_v4);
	tcase_add_test(tc, test_cidr_match_v6);
	tcase_add_test(tc, test_cidr_match_mapped);
	tcase_add_test(tc, test_cidr_match_other);
	suite_add_tcase(s, tc);

	tc = tcase_create("format");
	tcase_add_test(tc, test_format_addr);
	suite_add_tcase(s, tc);
	return s;
}
