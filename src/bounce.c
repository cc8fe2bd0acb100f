/*
 * bounce — writes a delivery status notification (RFC 3464) for the
 * recipients of one message that failed for good: a multipart/report with
 *   1. text/plain: what happened, in words an end user can follow, each
 *      failed recipient with the reason;
 *   2. message/delivery-status: the same for programs (Reporting-MTA,
 *      X-Relayd-Queue-ID, Arrival-Date, then per recipient Final-Recipient,
 *      Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date);
 *   3. text/rfc822-headers (message/global-headers when 8-bit, RFC 6533):
 *      the original's header section, when the caller has it.
 * Pure: builds text into a buffer, reads no clock (m->now), sends nothing.
 *
 * Promises: every line ends with CRLF and none exceeds 998 octets (long
 * fields are folded at white space, split inside a word only when a word
 * alone is too long); the boundary occurs in no part's text; text that
 * comes from outside (diagnostics, addresses, names) cannot add lines, as
 * control characters in it become spaces or '?'.  Everything is 7-bit
 * except original 8-bit headers (part 3) and UTF-8 addresses, which are
 * written as they are in To: and part 1 (charset utf-8) and in the
 * utf-8-addr-xtext form of RFC 6533 in part 2.
 */
#include "acconfig.h"	/* _GNU_SOURCE for memmem() */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bounce.h"
#include "util.h"

#define LINE_SOFT	78	/* RFC 5322 2.1.1: SHOULD */
#define LINE_HARD	998	/* RFC 5322 2.1.1: MUST */

static bool
str_8bit(const char *s)
{
	return s != NULL && has_8bit(s, strlen(s));
}

/*
 * Appends s with control octets replaced by ctl_repl and, unless keep8,
 * 8-bit octets by '?': outside text can then neither end a line early nor
 * make a 7-bit part 8-bit.
 */
static void
add_clean(struct buf *b, const char *s, char ctl_repl, bool keep8)
{
	if (s == NULL)
		return;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			c = (unsigned char)ctl_repl;
		else if (c >= 0x80 && !keep8)
			c = '?';
		buf_add(b, &c, 1);
	}
}

/*
 * Writes s[0..n) as one logical line plus CRLF, folded: at white space
 * when the line would pass LINE_SOFT, and inside a word only when the line
 * would pass LINE_HARD.  With indent NULL it folds a header field (CRLF
 * goes before the white space, which starts the continuation line, so
 * unfolding gives back the text); with an indent it wraps plain text,
 * continuation lines starting with the indent instead of the white space.
 */
static void
add_folded(struct buf *b, const char *s, size_t n, const char *indent)
{
	size_t i = 0, col = 0, ilen = indent == NULL ? 0 : strlen(indent);

	while (i < n) {
		size_t j = i, k, p;

		while (j < n && (s[j] == ' ' || s[j] == '\t'))
			j++;
		k = j;
		while (k < n && s[k] != ' ' && s[k] != '\t')
			k++;
		/*
		 * s[i..j) white space, s[j..k) a word.  Fold before it if it
		 * does not fit, there is white space to fold at and a word
		 * after it (a continuation line of white space alone is not
		 * allowed).
		 */
		p = i;
		if (col > 0 && j > i && k > j && col + (k - i) > LINE_SOFT) {
			buf_add(b, "\r\n", 2);
			if (indent != NULL) {
				buf_add(b, indent, ilen);
				col = ilen;
				p = j;
			} else {
				col = 0;
			}
		}
		while (col + (k - p) > LINE_HARD) {
			size_t take = LINE_HARD - col;

			buf_add(b, s + p, take);
			p += take;
			buf_add(b, "\r\n", 2);
			if (indent != NULL && ilen > 0) {
				buf_add(b, indent, ilen);
				col = ilen;
			} else {
				buf_add(b, " ", 1);
				col = 1;
			}
		}
		buf_add(b, s + p, k - p);
		col += k - p;
		i = k;
	}
	buf_add(b, "\r\n", 2);
}

/* "Name: value" from the pieces, cleaned, then folded. */
static void
add_field(struct buf *b, const char *name, const char *v1, const char *v2, bool keep8)
{
	struct buf t;

	buf_init(&t);
	buf_addstr(&t, name);
	buf_addstr(&t, ": ");
	add_clean(&t, v1, ' ', keep8);
	add_clean(&t, v2, ' ', keep8);
	add_folded(b, t.p, t.len, NULL);
	buf_free(&t);
}

/*
 * Decodes one UTF-8 sequence at s (n > 0 octets); returns its length and
 * the code point, or length 1 and U+FFFD for an ill-formed octet.
 */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t v, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2, v = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, v = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, v = s[0] & 0x07, min = 0x10000;
	} else {
		goto bad;
	}
	if (len > n)
		goto bad;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			goto bad;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		goto bad;
	*cp = v;
	return len;
bad:
	*cp = 0xfffd;
	return 1;
}

/*
 * An address for Final-Recipient: "rfc822; addr" when ASCII, else
 * "utf-8; " in the 7-bit utf-8-addr-xtext form of RFC 6533 section 3:
 * non-ASCII code points, and the xtext specials SP, '+', '=', '\\' and
 * controls, as \x{HEX}.
 */
static void
add_final_recipient(struct buf *b, const char *addr)
{
	struct buf t;
	const unsigned char *s = (const unsigned char *)(addr == NULL ? "" : addr);
	size_t n = strlen((const char *)s), i = 0;

	buf_init(&t);
	if (!has_8bit((const char *)s, n)) {
		buf_addstr(&t, "Final-Recipient: rfc822; ");
		add_clean(&t, (const char *)s, '?', false);
	} else {
		buf_addstr(&t, "Final-Recipient: utf-8; ");
		while (i < n) {
			uint32_t cp;

			i += utf8_decode(s + i, n - i, &cp);
			if (cp >= 0x80)
				buf_printf(&t, "\\x{%" PRIX32 "}", cp);
			else if (cp <= 0x20 || cp == 0x7f || cp == '+' || cp == '=' || cp == '\\')
				buf_printf(&t, "\\x{%02" PRIX32 "}", cp);
			else
				buf_add(&t, s + i - 1, 1);
		}
	}
	add_folded(b, t.p, t.len, NULL);
	buf_free(&t);
}

/* "ddd", "ddd text" or "ddd-text" with a 2xx-5xx code: an SMTP reply. */
static bool
looks_like_reply(const char *s)
{
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' &&
	    s[2] >= '0' && s[2] <= '9' && (s[3] == '\0' || s[3] == ' ' || s[3] == '-');
}

static const char *
or_default(const char *s, const char *dflt)
{
	return s == NULL || *s == '\0' ? dflt : s;
}

/* Part 1: the explanation for the person who sent the message. */
static void
part_text(const struct bounce_msg *m, const char *host, struct buf *b)
{
	bool utf8 = false;
	struct buf t;
	char date[64];

	for (size_t i = 0; i < m->nrcpt; i++)
		utf8 = utf8 || str_8bit(m->rcpts[i].addr);
	buf_addstr(b, "Content-Description: Notification\r\n");
	if (utf8) {
		buf_addstr(b, "Content-Type: text/plain; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: 8bit\r\n");
	} else {
		buf_addstr(b, "Content-Type: text/plain; charset=us-ascii\r\n");
	}
	buf_addstr(b, "\r\n");

	buf_printf(b, "This is the mail delivery system at %s.\r\n\r\n", host);
	buf_addstr(b,
	    "Your message could not be delivered to one or more of its\r\n"
	    "recipients, and this system has stopped trying: it will not be\r\n"
	    "delivered to them.  For each such recipient, the reason follows,\r\n"
	    "as given by the receiving mail server or by this system.\r\n"
	    "\r\n"
	    "If a reason mentions an unknown address, please check it for\r\n"
	    "typing mistakes.  If you need help, forward this notice to your\r\n"
	    "mail administrator");
	if (m->headers != NULL && m->headerslen > 0)
		buf_addstr(b, "; the header of your message is attached for\r\n"
		    "reference.\r\n");
	else
		buf_addstr(b, ".\r\n");

	buf_init(&t);
	for (size_t i = 0; i < m->nrcpt; i++) {
		const struct bounce_rcpt *r = &m->rcpts[i];

		buf_addstr(b, "\r\n");
		buf_reset(&t);
		buf_addstr(&t, "<");
		add_clean(&t, or_default(r->addr, "(unknown)"), '?', true);
		buf_addstr(&t, ">: ");
		add_clean(&t, or_default(r->diagnostic, "delivery failed"), ' ', false);
		add_folded(b, t.p, t.len, "    ");
		if (r->dsn != NULL && r->dsn[0] == '4') {
			/* A temporary failure that lasted too long: say so. */
			buf_reset(&t);
			buf_printf(&t, "    This system gave up after %u delivery attempt%s",
			    r->attempts, r->attempts == 1 ? "" : "s");
			if (r->last_attempt > 0) {
				rfc5322_date(r->last_attempt, date, sizeof(date));
				buf_printf(&t, ", the last on %s", date);
			}
			buf_addstr(&t, ".");
			add_folded(b, t.p, t.len, "    ");
		}
	}
	buf_free(&t);
}

/* Part 2: the machine-readable report. */
static void
part_status(const struct bounce_msg *m, const char *host, struct buf *b)
{
	char date[64];

	buf_addstr(b, "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n");
	add_field(b, "Reporting-MTA", "dns; ", host, false);
	add_field(b, "X-Relayd-Queue-ID", or_default(m->qid, "unknown"), NULL, false);
	if (m->arrival > 0) {
		rfc5322_date(m->arrival, date, sizeof(date));
		add_field(b, "Arrival-Date", date, NULL, false);
	}
	for (size_t i = 0; i < m->nrcpt; i++) {
		const struct bounce_rcpt *r = &m->rcpts[i];
		const char *diag = or_default(r->diagnostic, NULL);

		buf_addstr(b, "\r\n");
		add_final_recipient(b, r->addr);
		add_field(b, "Action", "failed", NULL, false);
		add_field(b, "Status", or_default(r->dsn, "5.0.0"), NULL, false);
		if (r->remote_mta != NULL && r->remote_mta[0] != '\0')
			add_field(b, "Remote-MTA", "dns; ", r->remote_mta, false);
		if (diag != NULL)
			add_field(b, "Diagnostic-Code",
			    looks_like_reply(diag) ? "smtp; " : "X-Relayd; ", diag, false);
		if (r->last_attempt > 0) {
			rfc5322_date(r->last_attempt, date, sizeof(date));
			add_field(b, "Last-Attempt-Date", date, NULL, false);
		}
	}
}

/*
 * Part 3: the original header section, line ends made CRLF, cut at its
 * empty line if the caller included it, NULs made spaces, and lines over
 * LINE_HARD broken with CRLF SP (the data decoder already bounds them, but
 * this module's promise should not rest on that).
 */
static void
part_headers(const struct bounce_msg *m, bool eightbit, struct buf *b)
{
	const char *s = m->headers;
	size_t n = m->headerslen, col = 0;

	if (eightbit)
		buf_addstr(b, "Content-Description: Undelivered Message Headers\r\n"
		    "Content-Type: message/global-headers\r\n"
		    "Content-Transfer-Encoding: 8bit\r\n\r\n");
	else
		buf_addstr(b, "Content-Description: Undelivered Message Headers\r\n"
		    "Content-Type: text/rfc822-headers\r\n\r\n");
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '\r' || c == '\n') {
			if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
				i++;
			if (col == 0)
				break;	/* the empty line ending the section */
			buf_add(b, "\r\n", 2);
			col = 0;
			continue;
		}
		if (col == LINE_HARD) {
			buf_add(b, "\r\n ", 3);
			col = 1;
		}
		if (c == '\0')
			c = ' ';
		buf_add(b, &c, 1);
		col++;
	}
	if (col > 0)
		buf_add(b, "\r\n", 2);
}

static bool
buf_contains(const struct buf *b, const char *needle)
{
	return b->len > 0 && memmem(b->p, b->len, needle, strlen(needle)) != NULL;
}

void
bounce_compose(const struct bounce_msg *m, struct buf *out)
{
	struct buf p1, p2, p3, host, qid, to;
	bool hdr8, body8, addr8 = false;
	char date[64], boundary[128];
	unsigned tries = 0;

	buf_init(&host);
	add_clean(&host, or_default(m->hostname, "localhost"), '?', false);
	for (size_t i = 0; i < host.len; i++) {
		if (host.p[i] == ' ')
			host.p[i] = '?';
	}
	/* Only the id's letters and digits go into the boundary. */
	buf_init(&qid);
	for (const char *s = or_default(m->qid, ""); *s != '\0'; s++) {
		if (((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= 'a' && *s <= 'z')) && qid.len < 24)
			buf_add(&qid, s, 1);
	}

	hdr8 = m->headers != NULL && has_8bit(m->headers, m->headerslen);
	for (size_t i = 0; i < m->nrcpt; i++)
		addr8 = addr8 || str_8bit(m->rcpts[i].addr);
	body8 = hdr8 || addr8;

	buf_init(&p1);
	buf_init(&p2);
	buf_init(&p3);
	part_text(m, host.p, &p1);
	part_status(m, host.p, &p2);
	if (m->headers != NULL && m->headerslen > 0)
		part_headers(m, hdr8, &p3);

	/*
	 * Unique enough from the id and the time; the check makes it certain
	 * (RFC 2046 5.1.1: it must not occur in any part).
	 */
	snprintf(boundary, sizeof(boundary), "=_relayd_dsn_%s_%" PRId64,
	    qid.p == NULL ? "" : qid.p, m->now);
	while (buf_contains(&p1, boundary) || buf_contains(&p2, boundary) ||
	    buf_contains(&p3, boundary)) {
		snprintf(boundary, sizeof(boundary), "=_relayd_dsn_%s_%" PRId64 "_%u",
		    qid.p == NULL ? "" : qid.p, m->now, ++tries);
	}

	rfc5322_date(m->now, date, sizeof(date));
	buf_printf(out, "Date: %s\r\n", date);
	buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host.p);
	buf_init(&to);
	buf_addstr(&to, "To: <");
	add_clean(&to, m->sender, '?', true);
	buf_addstr(&to, ">");
	add_folded(out, to.p, to.len, NULL);
	buf_free(&to);
	buf_addstr(out, "Subject: Undelivered Mail Returned to Sender\r\n");
	buf_addstr(out, "Message-ID: <");
	add_clean(out, or_default(m->new_qid, "dsn"), '?', false);
	buf_printf(out, "@%s>\r\n", host.p);
	buf_addstr(out, "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n");
	buf_printf(out, "\tboundary=\"%s\"\r\n", boundary);
	if (body8)
		buf_addstr(out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_addstr(out, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	buf_printf(out, "--%s\r\n", boundary);
	buf_add(out, p1.p, p1.len);
	buf_printf(out, "\r\n--%s\r\n", boundary);
	buf_add(out, p2.p, p2.len);
	if (p3.len > 0) {
		buf_printf(out, "\r\n--%s\r\n", boundary);
		buf_add(out, p3.p, p3.len);
	}
	buf_printf(out, "\r\n--%s--\r\n", boundary);

	buf_free(&p1);
	buf_free(&p2);
	buf_free(&p3);
	buf_free(&host);
	buf_free(&qid);
}
