/*
 * check_bounce — the DSN composer.  The composed message is taken apart
 * here with a small MIME reader of our own: line ends and lengths first,
 * then the top header, the boundary, the three parts and their headers,
 * the delivery-status fields block by block (unfolded), and the attached
 * header section.  Time is fixed (TZ=UTC) so dates can be compared.
 * (The integration tests parse DSNs with Python's email package too.)
 */
#include "acconfig.h"	/* _GNU_SOURCE: memmem, strndup */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bounce.h"
#include "suites.h"

#define NOW	1790000000	/* 2026-09-21 */
#define ARRIVAL	(NOW - 5 * 86400)

static const char orig_headers[] =
    "Received: from app (localhost [127.0.0.1])\r\n\tby relay.example.net\r\n"
    "From: Ann <ann@example.net>\r\n"
    "To: bob@example.org, carol@example.com\r\n"
    "Subject: quarterly report\r\n"
    "Message-ID: <abc@app.example.net>\r\n";

struct part {
	const char	*hdr;	/* the part's header section */
	size_t		 hdrlen;
	const char	*body;
	size_t		 bodylen;
};

struct dsn {
	struct buf	 msg;
	const char	*hdr;	/* top-level header section */
	size_t		 hdrlen;
	char		 boundary[128];
	struct part	 parts[4];
	int		 nparts;
};

static void
setup(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
}

/* CRLF only, no bare CR or LF, no line over 998 octets, ends with CRLF. */
static void
check_lines(const char *s, size_t n)
{
	size_t col = 0;

	ck_assert_msg(n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n', "does not end with CRLF");
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r') {
			ck_assert_msg(i + 1 < n && s[i + 1] == '\n', "bare CR at %zu", i);
			ck_assert_msg(col <= 998, "line of %zu octets before %zu", col, i);
			col = 0;
			i++;
		} else {
			ck_assert_msg(s[i] != '\n', "bare LF at %zu", i);
			ck_assert_msg(s[i] != '\0', "NUL at %zu", i);
			col++;
		}
	}
}

static bool
is_7bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] >= 0x80)
			return false;
	}
	return true;
}

/*
 * The unfolded value of the first field called name in the header block
 * (or NULL); the caller frees it.  Counts the matches in *count if given.
 */
static char *
field_get(const char *h, size_t n, const char *name, int *count)
{
	size_t nl = strlen(name);
	char *val = NULL;
	int found = 0;

	for (size_t i = 0; i < n; ) {
		size_t eol = i;

		while (eol + 1 < n && !(h[eol] == '\r' && h[eol + 1] == '\n'))
			eol++;
		if (eol + 1 >= n)
			eol = n;
		if (eol - i > nl && strncasecmp(h + i, name, nl) == 0 && h[i + nl] == ':') {
			found++;
			if (val == NULL) {
				struct buf v;
				size_t j = i + nl + 1, end;

				/* The value with its continuation lines, CRLFs dropped. */
				end = eol;
				while (end + 2 < n && (h[end + 2] == ' ' || h[end + 2] == '\t')) {
					end += 2;
					while (end + 1 < n && !(h[end] == '\r' && h[end + 1] == '\n'))
						end++;
				}
				while (j < end && (h[j] == ' ' || h[j] == '\t'))
					j++;
				buf_init(&v);
				for (; j < end; j++) {
					if (h[j] == '\r' && j + 1 < end && h[j + 1] == '\n')
						j++;
					else
						buf_add(&v, h + j, 1);
				}
				buf_add(&v, "", 0);
				val = v.p == NULL ? strdup("") : v.p;
			}
		}
		i = eol + 2;
	}
	if (count != NULL)
		*count = found;
	return val;
}

static void
expect_field(const char *h, size_t n, const char *name, const char *want)
{
	int count;
	char *v = field_get(h, n, name, &count);

	if (want == NULL) {
		ck_assert_msg(v == NULL, "%s: present (\"%s\"), want absent", name, v);
		return;
	}
	ck_assert_msg(v != NULL, "%s: absent", name);
	ck_assert_msg(count == 1, "%s: %d times", name, count);
	ck_assert_msg(strcmp(v, want) == 0, "%s: \"%s\", want \"%s\"", name, v, want);
	free(v);
}

/* Splits at the first empty line. */
static void
split_header(const char *s, size_t n, const char **hdr, size_t *hdrlen, const char **body,
    size_t *bodylen)
{
	const char *e = memmem(s, n, "\r\n\r\n", 4);

	if (s[0] == '\r' && n >= 2 && s[1] == '\n')
		e = s - 2;
	ck_assert_msg(e != NULL, "no empty line after a header");
	*hdr = s;
	*hdrlen = (size_t)(e - s) + 2;
	*body = e + 4;
	*bodylen = n - (size_t)(*body - s);
}

static void
compose(const struct bounce_msg *m, struct dsn *d)
{
	const char *body, *p, *q, *end;
	size_t bodylen;
	char *ct, *b;
	char delim[160], close[160];

	memset(d, 0, sizeof(*d));
	buf_init(&d->msg);
	bounce_compose(m, &d->msg);
	ck_assert_uint_gt(d->msg.len, 0);
	check_lines(d->msg.p, d->msg.len);

	split_header(d->msg.p, d->msg.len, &d->hdr, &d->hdrlen, &body, &bodylen);
	ct = field_get(d->hdr, d->hdrlen, "Content-Type", NULL);
	ck_assert_ptr_nonnull(ct);
	ck_assert_msg(strncmp(ct, "multipart/report; report-type=delivery-status;", 46) == 0,
	    "Content-Type %s", ct);
	b = strstr(ct, "boundary=\"");
	ck_assert_ptr_nonnull(b);
	b += 10;
	ck_assert_ptr_nonnull(strchr(b, '"'));
	*strchr(b, '"') = '\0';
	ck_assert_uint_gt(strlen(b), 0);
	ck_assert_uint_le(strlen(b), 70);	/* RFC 2046 */
	snprintf(d->boundary, sizeof(d->boundary), "%s", b);
	free(ct);

	/* The parts lie between "--B" lines; the last is "--B--". */
	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", d->boundary);
	snprintf(close, sizeof(close), "\r\n--%s--\r\n", d->boundary);
	end = memmem(body - 2, bodylen + 2, close, strlen(close));
	ck_assert_msg(end != NULL, "no closing delimiter");
	ck_assert_msg(end + strlen(close) == d->msg.p + d->msg.len, "text after the closing delimiter");
	p = memmem(body - 2, bodylen + 2, delim, strlen(delim));
	ck_assert_msg(p != NULL, "no first delimiter");
	while (p != NULL && p < end) {
		p += strlen(delim);
		q = memmem(p, (size_t)(end - p), delim, strlen(delim));
		if (q == NULL)
			q = end;
		ck_assert_int_lt(d->nparts, 4);
		split_header(p, (size_t)(q - p) + 2, &d->parts[d->nparts].hdr,
		    &d->parts[d->nparts].hdrlen, &d->parts[d->nparts].body,
		    &d->parts[d->nparts].bodylen);
		d->parts[d->nparts].bodylen -= 2;	/* the CRLF of the delimiter */
		d->nparts++;
		p = q == end ? NULL : q;
	}
	/* The boundary appears only in the delimiter lines. */
	{
		size_t seen = 0;
		const char *s = d->msg.p;

		while ((s = strstr(s, d->boundary)) != NULL) {
			seen++;
			s++;
		}
		ck_assert_uint_eq(seen, 1 + (size_t)d->nparts + 1);	/* header, delims, close */
	}
}

static void
dsn_free(struct dsn *d)
{
	buf_free(&d->msg);
}

/* The delivery-status body as blocks separated by empty lines. */
static int
status_blocks(const struct part *p, const char **blk, size_t *blklen, int max)
{
	const char *s = p->body, *end = p->body + p->bodylen;
	int n = 0;

	while (s < end && n < max) {
		const char *e = memmem(s, (size_t)(end - s), "\r\n\r\n", 4);

		blk[n] = s;
		blklen[n] = e == NULL ? (size_t)(end - s) : (size_t)(e - s) + 2;
		n++;
		if (e == NULL)
			break;
		s = e + 4;
	}
	return n;
}

static void
date_of(int64_t t, char *out)
{
	rfc5322_date(t, out, 64);
}

static const struct bounce_rcpt two_rcpts[] = {
	{ "bob@example.org", "5.1.1", "550 5.1.1 <bob@example.org>: Recipient address rejected",
	  "mx.example.org", NOW - 60, 1 },
	{ "carol@example.com", "4.4.1",
	  "connect to mx.example.com[192.0.2.9]:25: Connection refused", NULL, NOW - 30, 7 },
};

static void
msg_init(struct bounce_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->hostname = "relay.example.net";
	m->qid = "0Abc9XyZ123";
	m->arrival = ARRIVAL;
	m->sender = "ann@example.net";
	m->rcpts = two_rcpts;
	m->nrcpt = 2;
	m->headers = orig_headers;
	m->headerslen = sizeof(orig_headers) - 1;
	m->now = NOW;
	m->new_qid = "0Abc9XzQ456";
}

START_TEST(test_structure)
{
	struct bounce_msg m;
	struct dsn d;
	const char *blk[8];
	size_t blklen[8];
	char date[64], *v;

	msg_init(&m);
	compose(&m, &d);

	/* Top header. */
	date_of(NOW, date);
	expect_field(d.hdr, d.hdrlen, "Date", date);
	ck_assert_str_eq(date, "Mon, 21 Sep 2026 14:13:20 +0000");
	expect_field(d.hdr, d.hdrlen, "From", "Mail Delivery System <MAILER-DAEMON@relay.example.net>");
	expect_field(d.hdr, d.hdrlen, "To", "<ann@example.net>");
	expect_field(d.hdr, d.hdrlen, "Subject", "Undelivered Mail Returned to Sender");
	expect_field(d.hdr, d.hdrlen, "Message-ID", "<0Abc9XzQ456@relay.example.net>");
	expect_field(d.hdr, d.hdrlen, "Auto-Submitted", "auto-replied");
	expect_field(d.hdr, d.hdrlen, "MIME-Version", "1.0");
	expect_field(d.hdr, d.hdrlen, "Content-Transfer-Encoding", NULL);
	ck_assert(is_7bit(d.msg.p, d.msg.len));
	ck_assert_int_eq(d.nparts, 3);

	/* Part 1: for a person. */
	expect_field(d.parts[0].hdr, d.parts[0].hdrlen, "Content-Type",
	    "text/plain; charset=us-ascii");
	v = strndup(d.parts[0].body, d.parts[0].bodylen);
	ck_assert_ptr_nonnull(strstr(v, "relay.example.net"));
	ck_assert_ptr_nonnull(strstr(v, "could not be delivered"));
	ck_assert_ptr_nonnull(strstr(v, "<bob@example.org>: 550 5.1.1 <bob@example.org>: Recipient"));
	ck_assert_ptr_nonnull(strstr(v, "<carol@example.com>: connect to mx.example.com"));
	ck_assert_ptr_nonnull(strstr(v, "gave up after 7 delivery attempts, the last on"));
	ck_assert_ptr_null(strstr(v, "gave up after 1 "));	/* only for 4.x.x */
	free(v);

	/* Part 2: for programs. */
	expect_field(d.parts[1].hdr, d.parts[1].hdrlen, "Content-Type", "message/delivery-status");
	ck_assert_int_eq(status_blocks(&d.parts[1], blk, blklen, 8), 3);
	expect_field(blk[0], blklen[0], "Reporting-MTA", "dns; relay.example.net");
	expect_field(blk[0], blklen[0], "X-Relayd-Queue-ID", "0Abc9XyZ123");
	date_of(ARRIVAL, date);
	expect_field(blk[0], blklen[0], "Arrival-Date", date);
	expect_field(blk[0], blklen[0], "Final-Recipient", NULL);

	expect_field(blk[1], blklen[1], "Final-Recipient", "rfc822; bob@example.org");
	expect_field(blk[1], blklen[1], "Action", "failed");
	expect_field(blk[1], blklen[1], "Status", "5.1.1");
	expect_field(blk[1], blklen[1], "Remote-MTA", "dns; mx.example.org");
	expect_field(blk[1], blklen[1], "Diagnostic-Code",
	    "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected");
	date_of(NOW - 60, date);
	expect_field(blk[1], blklen[1], "Last-Attempt-Date", date);

	expect_field(blk[2], blklen[2], "Final-Recipient", "rfc822; carol@example.com");
	expect_field(blk[2], blklen[2], "Action", "failed");
	expect_field(blk[2], blklen[2], "Status", "4.4.1");
	expect_field(blk[2], blklen[2], "Remote-MTA", NULL);
	expect_field(blk[2], blklen[2], "Diagnostic-Code",
	    "X-Relayd; connect to mx.example.com[192.0.2.9]:25: Connection refused");
	date_of(NOW - 30, date);
	expect_field(blk[2], blklen[2], "Last-Attempt-Date", date);

	/* Part 3: the original header section, as it was. */
	expect_field(d.parts[2].hdr, d.parts[2].hdrlen, "Content-Type", "text/rfc822-headers");
	ck_assert_uint_eq(d.parts[2].bodylen, sizeof(orig_headers) - 1);
	ck_assert_int_eq(memcmp(d.parts[2].body, orig_headers, sizeof(orig_headers) - 1), 0);
	dsn_free(&d);
}
END_TEST

/* The same input gives the same octets (no hidden clock or state). */
START_TEST(test_deterministic)
{
	struct bounce_msg m;
	struct buf a, b;

	msg_init(&m);
	buf_init(&a);
	buf_init(&b);
	bounce_compose(&m, &a);
	bounce_compose(&m, &b);
	ck_assert_uint_eq(a.len, b.len);
	ck_assert_int_eq(memcmp(a.p, b.p, a.len), 0);
	/* It appends. */
	buf_reset(&b);
	buf_addstr(&b, "X");
	bounce_compose(&m, &b);
	ck_assert_uint_eq(b.len, a.len + 1);
	ck_assert_int_eq(memcmp(b.p + 1, a.p, a.len), 0);
	buf_free(&a);
	buf_free(&b);
}
END_TEST

/* A 2000-octet diagnostic: folded at spaces, unfolds to itself. */
START_TEST(test_long_diagnostic)
{
	struct bounce_rcpt r = { "bob@example.org", "5.7.1", NULL, "mx.example.org", NOW, 1 };
	struct bounce_msg m;
	struct dsn d;
	const char *blk[4];
	size_t blklen[4];
	char diag[2001], want[2100];
	const char *dc, *s;

	strcpy(diag, "550 5.7.1");
	while (strlen(diag) < 2000 - 12)
		strcat(diag, " word-12345");
	while (strlen(diag) < 2000)
		strcat(diag, "x");
	ck_assert_uint_eq(strlen(diag), 2000);
	r.diagnostic = diag;
	msg_init(&m);
	m.rcpts = &r;
	m.nrcpt = 1;
	compose(&m, &d);
	ck_assert_int_eq(status_blocks(&d.parts[1], blk, blklen, 4), 2);
	snprintf(want, sizeof(want), "smtp; %s", diag);
	expect_field(blk[1], blklen[1], "Diagnostic-Code", want);
	/* Folded at spaces into short lines, not just under 998. */
	dc = memmem(blk[1], blklen[1], "Diagnostic-Code:", 16);
	ck_assert_ptr_nonnull(dc);
	for (s = dc; s < blk[1] + blklen[1]; ) {
		const char *e = strstr(s, "\r\n");

		ck_assert_uint_le((size_t)(e - s), 78);
		s = e + 2;
		if (*s != ' ')
			break;	/* the next field */
	}
	ck_assert_ptr_nonnull(strstr(s, "Last-Attempt-Date:"));
	/* The text part wraps it too, with every word kept. */
	ck_assert_ptr_nonnull(memmem(d.parts[0].body, d.parts[0].bodylen, "\r\n    word-12345", 16));
	dsn_free(&d);
}
END_TEST

/* No space to fold at: split inside the word, lines still <= 998. */
START_TEST(test_long_word)
{
	struct bounce_rcpt r = { "bob@example.org", "5.0.0", NULL, NULL, NOW, 1 };
	struct bounce_msg m;
	struct dsn d;
	char diag[2501], *v;
	const char *blk[4];
	size_t blklen[4], kept = 0;

	memset(diag, 'z', 2500);
	diag[2500] = '\0';
	r.diagnostic = diag;
	msg_init(&m);
	m.rcpts = &r;
	m.nrcpt = 1;
	compose(&m, &d);	/* checks the line lengths */
	ck_assert_int_eq(status_blocks(&d.parts[1], blk, blklen, 4), 2);
	v = field_get(blk[1], blklen[1], "Diagnostic-Code", NULL);
	ck_assert_ptr_nonnull(v);
	ck_assert(strncmp(v, "X-Relayd; zzz", 13) == 0);
	for (const char *s = v; *s != '\0'; s++)
		kept += *s == 'z';
	ck_assert_uint_eq(kept, 2500);
	free(v);
	dsn_free(&d);
}
END_TEST

START_TEST(test_eightbit_headers)
{
	static const char h8[] = "From: J\xc3\xb6rg <j@example.net>\r\nSubject: caf\xc3\xa9\r\n";
	struct bounce_msg m;
	struct dsn d;

	msg_init(&m);
	m.headers = h8;
	m.headerslen = sizeof(h8) - 1;
	compose(&m, &d);
	ck_assert_int_eq(d.nparts, 3);
	expect_field(d.parts[2].hdr, d.parts[2].hdrlen, "Content-Type", "message/global-headers");
	expect_field(d.parts[2].hdr, d.parts[2].hdrlen, "Content-Transfer-Encoding", "8bit");
	expect_field(d.hdr, d.hdrlen, "Content-Transfer-Encoding", "8bit");
	ck_assert_uint_eq(d.parts[2].bodylen, sizeof(h8) - 1);
	ck_assert_int_eq(memcmp(d.parts[2].body, h8, sizeof(h8) - 1), 0);
	/* Only the attached headers are 8-bit. */
	ck_assert(is_7bit(d.hdr, d.hdrlen));
	ck_assert(is_7bit(d.parts[0].body, d.parts[0].bodylen));
	ck_assert(is_7bit(d.parts[1].body, d.parts[1].bodylen));
	dsn_free(&d);
}
END_TEST

/* A UTF-8 recipient: RFC 6533's utf-8-addr-xtext in the report. */
START_TEST(test_utf8_recipient)
{
	struct bounce_rcpt r = { "j\xc3\xb6rg+x=y@b\xc3\xbc" "cher.example", "5.1.1",
	    "550 5.1.1 unknown", "mx.example.org", NOW, 1 };
	struct bounce_msg m;
	struct dsn d;
	const char *blk[4];
	size_t blklen[4];

	msg_init(&m);
	m.rcpts = &r;
	m.nrcpt = 1;
	compose(&m, &d);
	ck_assert_int_eq(status_blocks(&d.parts[1], blk, blklen, 4), 2);
	expect_field(blk[1], blklen[1], "Final-Recipient",
	    "utf-8; j\\x{F6}rg\\x{2B}x\\x{3D}y@b\\x{FC}cher.example");
	ck_assert(is_7bit(d.parts[1].body, d.parts[1].bodylen));
	expect_field(d.parts[0].hdr, d.parts[0].hdrlen, "Content-Type", "text/plain; charset=utf-8");
	ck_assert_ptr_nonnull(memmem(d.parts[0].body, d.parts[0].bodylen, r.addr, strlen(r.addr)));
	dsn_free(&d);
}
END_TEST

/* Outside text cannot add header lines or break the structure. */
START_TEST(test_injection)
{
	struct bounce_rcpt r = { "bob@example.org\r\nBcc: x@evil.org", "5.1.1",
	    "550 bad\r\n\r\n--=_relayd_dsn_0Abc9XyZ123_1790000000--\r\nX-Evil: 1\n\x01",
	    "mx\r\nX-Evil: 2", NOW, 1 };
	struct bounce_msg m;
	struct dsn d;

	msg_init(&m);
	m.rcpts = &r;
	m.nrcpt = 1;
	m.sender = "ann@example.net>\r\nBcc: y@evil.org";
	m.hostname = "relay\r\nX-Evil: 3";
	compose(&m, &d);	/* checks lines and the boundary */
	ck_assert_int_eq(d.nparts, 3);
	ck_assert_ptr_null(strstr(d.msg.p, "\r\nBcc:"));
	ck_assert_ptr_null(strstr(d.msg.p, "\r\nX-Evil:"));
	/* The diagnostic's would-be delimiter made the boundary change. */
	ck_assert_str_ne(d.boundary, "=_relayd_dsn_0Abc9XyZ123_1790000000");
	dsn_free(&d);
}
END_TEST

/* The boundary is altered when the original headers contain it. */
START_TEST(test_boundary_collision)
{
	static const char h[] = "Subject: =_relayd_dsn_0Abc9XyZ123_1790000000 and "
	    "=_relayd_dsn_0Abc9XyZ123_1790000000_1\r\n";
	struct bounce_msg m;
	struct dsn d, plain;

	msg_init(&m);
	compose(&m, &plain);
	ck_assert_str_eq(plain.boundary, "=_relayd_dsn_0Abc9XyZ123_1790000000");
	m.headers = h;
	m.headerslen = sizeof(h) - 1;
	compose(&m, &d);
	ck_assert_str_eq(d.boundary, "=_relayd_dsn_0Abc9XyZ123_1790000000_2");
	ck_assert_int_eq(d.nparts, 3);
	ck_assert_int_eq(memcmp(d.parts[2].body, h, sizeof(h) - 1), 0);
	dsn_free(&d);
	dsn_free(&plain);
}
END_TEST

START_TEST(test_no_headers)
{
	struct bounce_msg m;
	struct dsn d;

	msg_init(&m);
	m.headers = NULL;
	m.headerslen = 0;
	compose(&m, &d);
	ck_assert_int_eq(d.nparts, 2);
	ck_assert(is_7bit(d.msg.p, d.msg.len));
	ck_assert_ptr_null(strstr(d.msg.p, "rfc822-headers"));
	dsn_free(&d);
}
END_TEST

/* Line ends normalised, the section cut at its empty line, long lines broken. */
START_TEST(test_header_normalising)
{
	char h[3000];
	struct bounce_msg m;
	struct dsn d;
	static const char want_start[] = "A: 1\r\nB: 2\r\nC: 3\r\n";

	strcpy(h, "A: 1\nB: 2\rC: 3\r\nX-Long: ");
	memset(h + strlen(h), 'q', 1500);
	h[24 + 1500] = '\0';
	strcat(h, "\r\n\r\nbody text\r\n");
	msg_init(&m);
	m.headers = h;
	m.headerslen = strlen(h);
	compose(&m, &d);	/* checks line lengths */
	ck_assert_int_eq(memcmp(d.parts[2].body, want_start, sizeof(want_start) - 1), 0);
	ck_assert_ptr_null(memmem(d.parts[2].body, d.parts[2].bodylen, "body text", 9));
	ck_assert_ptr_nonnull(memmem(d.parts[2].body, d.parts[2].bodylen, "qqq\r\n qqq", 9));
	dsn_free(&d);
}
END_TEST

/* Recipient without diagnostic, remote MTA or date; many recipients. */
START_TEST(test_sparse_and_many)
{
	struct bounce_rcpt rs[40];
	char addrs[40][32];
	struct bounce_msg m;
	struct dsn d;
	const char *blk[64];
	size_t blklen[64];

	for (int i = 0; i < 40; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "user%d@example.org", i);
		memset(&rs[i], 0, sizeof(rs[i]));
		rs[i].addr = addrs[i];
		rs[i].dsn = i % 2 ? "5.1.1" : NULL;
	}
	msg_init(&m);
	m.rcpts = rs;
	m.nrcpt = 40;
	m.arrival = 0;
	compose(&m, &d);
	ck_assert_int_eq(status_blocks(&d.parts[1], blk, blklen, 64), 41);
	expect_field(blk[0], blklen[0], "Arrival-Date", NULL);
	for (int i = 0; i < 40; i++) {
		char want[64];

		snprintf(want, sizeof(want), "rfc822; user%d@example.org", i);
		expect_field(blk[i + 1], blklen[i + 1], "Final-Recipient", want);
		expect_field(blk[i + 1], blklen[i + 1], "Status", i % 2 ? "5.1.1" : "5.0.0");
		expect_field(blk[i + 1], blklen[i + 1], "Diagnostic-Code", NULL);
		expect_field(blk[i + 1], blklen[i + 1], "Remote-MTA", NULL);
		expect_field(blk[i + 1], blklen[i + 1], "Last-Attempt-Date", NULL);
	}
	dsn_free(&d);
}
END_TEST

Suite *
bounce_suite(void)
{
	Suite *s = suite_create("bounce");
	TCase *tc = tcase_create("compose");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_structure);
	tcase_add_test(tc, test_deterministic);
	tcase_add_test(tc, test_long_diagnostic);
	tcase_add_test(tc, test_long_word);
	tcase_add_test(tc, test_eightbit_headers);
	tcase_add_test(tc, test_utf8_recipient);
	tcase_add_test(tc, test_injection);
	tcase_add_test(tc, test_boundary_collision);
	tcase_add_test(tc, test_no_headers);
	tcase_add_test(tc, test_header_normalising);
	tcase_add_test(tc, test_sparse_and_many);
	suite_add_tcase(s, tc);
	return s;
}
