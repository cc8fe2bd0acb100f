/*
 * addr — the syntax of envelope addresses: RFC 5321 4.1.2 Path and Mailbox,
 * extended by RFC 6531 (SMTPUTF8) with UTF-8 local parts and U-labels.
 *
 * Promises: pure functions over the bytes given, no allocation, no I/O, and
 * never a read past the length given.  An address is either accepted as a
 * whole or refused; the mailbox is returned exactly as the client wrote it
 * (a quoted local part keeps its quotes), so what we relay is what we got.
 *
 * The checks are strict on purpose: a relay that accepts a malformed address
 * only moves the rejection to the upstream, where it becomes a bounce that the
 * application never sees.  Refusing at RCPT time gives the application the
 * error while it can still act on it.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "addr.h"
#include "util.h"

/* Longest address literal body we hand to inet_pton ("IPv6:" + 45). */
#define ADDR_LITERAL_MAX	64
/* A DNS label, in its ASCII (A-label) form, RFC 1035 2.3.4 / RFC 5890. */
#define ADDR_LABEL_MAX		63

/*
 * The scanners below record what they find here rather than returning early
 * on a length problem, so that a syntax error anywhere wins over a length
 * error, and both win over "needs SMTPUTF8" (which is only meaningful for an
 * otherwise valid address).
 */
struct addr_scan {
	bool	syntax;		/* grammar violated */
	bool	too_long;	/* a length limit exceeded */
	bool	nonascii;	/* some octet >= 0x80 seen (well-formed UTF-8) */
};

static bool
addr_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
addr_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* atext of RFC 5321 / RFC 5322 3.2.3, ASCII part. */
static bool
addr_is_atext(unsigned char c)
{
	if (addr_is_alpha(c) || addr_is_digit(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* qtextSMTP of RFC 5321 4.1.2, ASCII part: printable except '"' and '\'. */
static bool
addr_is_qtext(unsigned char c)
{
	return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/*
 * Length of the well-formed UTF-8 sequence for one non-ASCII character at
 * p (at most n bytes available), or 0 if malformed (utf8_char: RFC 3629).
 * C1 controls (U+0080..U+009F) are well-formed but never belong in an
 * address (RFC 6530 section 10.1), so they count as malformed here too.
 * The code point goes to *cp.
 */
static size_t
addr_utf8_char(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t l = utf8_char(p, n, cp);

	return l != 0 && *cp > 0x9f ? l : 0;
}

/* RFC 3492 6.1 bias adaptation, with the Punycode parameters of 5. */
static uint32_t
addr_puny_adapt(uint32_t delta, uint32_t numpoints, bool first)
{
	uint32_t k = 0;

	delta = first ? delta / 700 : delta / 2;
	delta += delta / numpoints;
	while (delta > ((36 - 1) * 26) / 2) {
		delta /= 36 - 1;
		k += 36;
	}
	return k + (36 - 1 + 1) * delta / (delta + 38);
}

/*
 * Length of the A-label ("xn--" + Punycode, RFC 3492) of the label whose
 * code points are cps[0..n).  Only the length is computed: the 63-octet
 * limit of a DNS label applies to that form, not to the UTF-8 we receive,
 * and the two differ in both directions.
 */
static size_t
addr_alabel_len(const uint32_t *cps, size_t n)
{
	uint32_t	 next = 128, bias = 72, delta = 0;
	size_t		 h = 0, b, out, i;

	for (i = 0; i < n; i++)
		if (cps[i] < 128)
			h++;
	b = h;
	out = 4 + b + (b > 0 ? 1 : 0);
	while (h < n) {
		uint32_t m = UINT32_MAX;

		for (i = 0; i < n; i++)
			if (cps[i] >= next && cps[i] < m)
				m = cps[i];
		/* n <= 64 and code points <= 0x10FFFF: no overflow in 32 bits. */
		delta += (m - next) * (uint32_t)(h + 1);
		next = m;
		for (i = 0; i < n; i++) {
			if (cps[i] < next)
				delta++;
			if (cps[i] == next) {
				uint32_t q = delta, k, t;

				for (k = 36;; k += 36) {
					t = k <= bias ? 1 : k >= bias + 26 ? 26 : k - bias;
					if (q < t)
						break;
					out++;
					q = (q - t) / (36 - t);
				}
				out++;
				bias = addr_puny_adapt(delta, (uint32_t)h + 1, h == b);
				delta = 0;
				h++;
			}
		}
		delta++;
		next++;
	}
	return out;
}

/*
 * One label of a host name at s: Let-dig [Ldh-str] (RFC 5321 4.1.2), or with
 * non-ASCII characters a U-label.  Returns the bytes used; 0 with
 * sc->syntax set if there is no valid label here.
 */
static size_t
addr_scan_label(const char *s, size_t n, struct addr_scan *sc)
{
	const unsigned char	*p = (const unsigned char *)s;
	/* Enough for any label that can fit in 63 A-label octets. */
	uint32_t		 cps[ADDR_LABEL_MAX + 1];
	size_t			 i = 0, ncp = 0;
	bool			 u = false, toolong = false;

	while (i < n) {
		uint32_t	 cp;
		size_t		 l;

		if (addr_is_alpha(p[i]) || addr_is_digit(p[i]) || p[i] == '-') {
			cp = p[i];
			l = 1;
		} else if (p[i] >= 0x80) {
			if ((l = addr_utf8_char(p + i, n - i, &cp)) == 0) {
				sc->syntax = true;
				return 0;
			}
			u = true;
		} else
			break;
		if (ncp < sizeof(cps) / sizeof(cps[0]))
			cps[ncp] = cp;
		else
			toolong = true;
		ncp++;
		i += l;
	}
	if (i == 0 || p[0] == '-' || p[i - 1] == '-') {
		sc->syntax = true;
		return 0;
	}
	if (u) {
		sc->nonascii = true;
		/* An A-label has at least one octet per code point after "xn--". */
		if (toolong || addr_alabel_len(cps, ncp) > ADDR_LABEL_MAX)
			sc->too_long = true;
	} else if (i > ADDR_LABEL_MAX)
		sc->too_long = true;
	return i;
}

/*
 * An address literal at s, which starts with '[': "[IPv4]" or
 * "[IPv6:...]", both checked by inet_pton.  General-address-literal tags
 * are refused: nothing could deliver to them.
 */
static size_t
addr_scan_literal(const char *s, size_t n, struct addr_scan *sc)
{
	char			 buf[ADDR_LITERAL_MAX + 1];
	unsigned char		 bin[16];
	const char		*close;
	size_t			 blen;
	int			 af = AF_INET;

	close = memchr(s, ']', n);
	if (close == NULL || (blen = (size_t)(close - s) - 1) == 0 ||
	    blen > ADDR_LITERAL_MAX) {
		sc->syntax = true;
		return 0;
	}
	memcpy(buf, s + 1, blen);
	buf[blen] = '\0';
	if (blen > 5 && ascii_strncasecmp(buf, "IPv6:", 5) == 0)
		af = AF_INET6;
	/* inet_pton stops at a NUL; an embedded NUL must not shorten the check. */
	if (memchr(buf, '\0', blen) != NULL ||
	    inet_pton(af, af == AF_INET6 ? buf + 5 : buf, bin) != 1) {
		sc->syntax = true;
		return 0;
	}
	return blen + 2;
}

/*
 * A Domain (dot-separated labels) or, if literal_ok, an address literal.
 * Stops before the first byte that cannot continue it; the caller checks
 * what that byte is.  Returns the bytes used, 0 on a syntax error.
 */
static size_t
addr_scan_domain(const char *s, size_t n, bool literal_ok, struct addr_scan *sc)
{
	size_t i = 0, l;

	if (n > 0 && s[0] == '[') {
		if (!literal_ok) {
			sc->syntax = true;
			return 0;
		}
		return addr_scan_literal(s, n, sc);
	}
	for (;;) {
		/* An empty label (x..no, trailing dot, leading dot) fails here. */
		if ((l = addr_scan_label(s + i, n - i, sc)) == 0)
			return 0;
		i += l;
		if (i < n && s[i] == '.')
			i++;
		else
			break;
	}
	return i;
}

/*
 * A Local-part: Dot-string or Quoted-string, with UTF-8 per RFC 6531.
 * Returns the bytes used, 0 on a syntax error.
 */
static size_t
addr_scan_local(const char *s, size_t n, struct addr_scan *sc)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 i = 0, l;
	uint32_t		 cp;

	if (n > 0 && p[0] == '"') {
		for (i = 1; i < n && p[i] != '"'; ) {
			if (p[i] == '\\') {
				/* quoted-pairSMTP: backslash + printable ASCII */
				if (i + 1 >= n || p[i + 1] < 32 || p[i + 1] > 126)
					goto bad;
				i += 2;
			} else if (addr_is_qtext(p[i]))
				i++;
			else if (p[i] >= 0x80 &&
			    (l = addr_utf8_char(p + i, n - i, &cp)) != 0) {
				sc->nonascii = true;
				i += l;
			} else
				goto bad;
		}
		/*
		 * Unterminated, or "" : the grammar allows an empty quoted
		 * string, but it names no mailbox anyone can have, and
		 * upstreams refuse it; refuse it here where the sender sees why.
		 */
		if (i >= n || i == 1)
			goto bad;
		return i + 1;
	}
	for (;;) {
		size_t start = i;

		while (i < n) {
			if (addr_is_atext(p[i]))
				i++;
			else if (p[i] >= 0x80 &&
			    (l = addr_utf8_char(p + i, n - i, &cp)) != 0) {
				sc->nonascii = true;
				i += l;
			} else if (p[i] >= 0x80)
				goto bad;
			else
				break;
		}
		if (i == start)
			goto bad;	/* empty atom: ".a", "a..b", "a.", "" */
		if (i < n && p[i] == '.')
			i++;
		else
			return i;
	}
bad:
	sc->syntax = true;
	return 0;
}

/*
 * Mailbox = Local-part "@" ( Domain / address-literal ).  Returns the bytes
 * used (stopping before whatever follows the domain), 0 on a syntax error.
 */
static size_t
addr_scan_mailbox(const char *s, size_t n, struct addr_scan *sc)
{
	size_t local, dom;

	if ((local = addr_scan_local(s, n, sc)) == 0)
		return 0;
	if (local >= n || s[local] != '@') {
		sc->syntax = true;
		return 0;
	}
	dom = addr_scan_domain(s + local + 1, n - local - 1, true, sc);
	if (dom == 0)
		return 0;
	if (local > ADDR_LOCAL_MAX || dom > ADDR_DOMAIN_MAX)
		sc->too_long = true;
	return local + 1 + dom;
}

static enum addr_status
addr_verdict(const struct addr_scan *sc, bool utf8)
{
	if (sc->syntax)
		return ADDR_SYNTAX;
	if (sc->too_long)
		return ADDR_TOO_LONG;
	if (sc->nonascii && !utf8)
		return ADDR_NEEDS_UTF8;
	return ADDR_OK;
}

enum addr_status
addr_parse_path(const char *s, size_t len, bool allow_null, bool utf8,
    char *out, const char **end)
{
	struct addr_scan	 sc = { false, false, false };
	enum addr_status	 st;
	size_t			 i = 1, mb, mblen;

	if (len < 2 || s[0] != '<')
		return ADDR_SYNTAX;
	if (s[1] == '>') {
		if (!allow_null)
			return ADDR_SYNTAX;
		out[0] = '\0';
		*end = s + 2;
		return ADDR_OK;
	}
	/*
	 * A-d-l ":" (source route, RFC 5321 4.1.2 and appendix C): checked,
	 * then dropped, as 4.1.1.3 tells a receiver to.
	 */
	if (s[1] == '@') {
		for (;;) {
			size_t l;

			i++;	/* the '@' */
			l = addr_scan_domain(s + i, len - i, false, &sc);
			if (l == 0)
				return ADDR_SYNTAX;
			i += l;
			if (i < len && s[i] == ',' && i + 1 < len && s[i + 1] == '@')
				i++;
			else if (i < len && s[i] == ':') {
				i++;
				break;
			} else
				return ADDR_SYNTAX;
		}
	}
	mb = i;
	if ((mblen = addr_scan_mailbox(s + mb, len - mb, &sc)) == 0)
		return ADDR_SYNTAX;
	i = mb + mblen;
	if (i >= len || s[i] != '>')
		return ADDR_SYNTAX;	/* unbalanced, or junk inside the brackets */
	i++;
	if (i > ADDR_PATH_MAX)
		sc.too_long = true;
	if ((st = addr_verdict(&sc, utf8)) != ADDR_OK)
		return st;
	/* i <= ADDR_PATH_MAX, so mblen <= ADDR_PATH_MAX - 2: fits in out. */
	memcpy(out, s + mb, mblen);
	out[mblen] = '\0';
	*end = s + i;
	return ADDR_OK;
}

enum addr_status
addr_check_mailbox(const char *s, bool utf8)
{
	struct addr_scan	 sc = { false, false, false };
	size_t			 len = strlen(s), used;

	if ((used = addr_scan_mailbox(s, len, &sc)) == 0 || used != len)
		return ADDR_SYNTAX;
	/* A mailbox must fit in a path with its two brackets. */
	if (len + 2 > ADDR_PATH_MAX)
		sc.too_long = true;
	return addr_verdict(&sc, utf8);
}

const char *
addr_domain(const char *mailbox)
{
	const char *at = strrchr(mailbox, '@');

	return at != NULL ? at + 1 : "";
}
