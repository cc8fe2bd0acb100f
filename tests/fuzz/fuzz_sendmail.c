/*
 * fuzz_sendmail — relayd-sendmail's pure half (sendmail_opts.c): the
 * command line, the message read on stdin, recipients taken from the
 * header (-t), the header fixes (Bcc: removed, From: added) and the
 * dot-stuffing of what goes to relayd.
 *
 * Input: one octet, the number of command-line words (0 to 15); that many
 * NUL-terminated words (argv[1...]); the rest is stdin, fed in chunks
 * whose sizes come from the first word's octets.  The program's steps
 * follow: the sender (-f, or "user"), the recipient arguments, the
 * message build.  Properties:
 *  - the options point into argv, the recipients into nothing else;
 *  - the text read has CRLF line ends only, whatever the chunking, and a
 *    lone "." line ends it only without -i;
 *  - every recipient is a valid mailbox, once (no case-insensitive
 *    duplicate); the message's header has no Bcc: or Resent-Bcc: field,
 *    a From: field whenever the sender is not the null one, and ends
 *    with its empty line; the 8-bit flags say what the text holds;
 *  - what relayd receives is what was meant: the dot-stuffed text, read
 *    back by relayd's own DATA decoder, is the message, ending exactly
 *    at the terminator.
 */
#include "acconfig.h"

#include "addr.h"
#include "data.h"
#include "fuzz.h"
#include "msghdr.h"
#include "sendmail_opts.h"
#include "util.h"

#define DOMAIN	"relay.example.org"

static void
collect(void *ctx, const char *p, size_t n)
{
	buf_add(ctx, p, n);
}

static void
check_rcpts(const struct sendmail_rcpts *r)
{
	for (size_t i = 0; i < r->n; i++) {
		FUZZ_CHECK(addr_check_mailbox(r->v[i], true) == ADDR_OK,
		    "recipient <%s> is no valid mailbox", r->v[i]);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(ascii_strcasecmp(r->v[i], r->v[j]) != 0,
			    "recipient <%s> twice", r->v[i]);
	}
}

static void
read_input(struct sendmail_input *in, bool ignore_dots, const char *p, size_t n,
    uint32_t seed, unsigned bits)
{
	struct fuzz_chunker ch;
	size_t off = 0;

	sendmail_input_init(in, ignore_dots);
	fuzz_chunker_init(&ch, seed, bits);
	while (off < n && !in->done) {
		size_t k = bits ? fuzz_chunk(&ch, n - off) : n - off;
		char *c = fuzz_dup(p + off, k, false);
		size_t got = sendmail_input_feed(in, c, k);

		free(c);
		FUZZ_CHECK(got == k || in->done, "input stopped early");
		off += got;
	}
	sendmail_input_finish(in);
}

static void
check_text(const struct buf *t)
{
	for (size_t i = 0; i < t->len; i++)
		if (t->p[i] == '\n')
			FUZZ_CHECK(i > 0 && t->p[i - 1] == '\r', "a bare LF read at %zu", i);
	FUZZ_CHECK(t->len == 0 || (t->len >= 2 && t->p[t->len - 1] == '\n'),
	    "the text read does not end with CRLF");
}

/* The header's fields, as relayd will read them (a CR alone ends a line
 * there): none is a Bcc:, one is a From: (if required). */
static void
check_header(const struct sendmail_msg *m, bool need_from)
{
	struct buf norm;
	const char *h;
	size_t n;
	bool from = false;

	buf_init(&norm);
	buf_addstr(&norm, "");
	for (size_t i = 0; i < m->hdrlen; i++) {
		buf_add(&norm, m->text.p + i, 1);
		if (m->text.p[i] == '\r' && (i + 1 == m->hdrlen || m->text.p[i + 1] != '\n'))
			buf_add(&norm, "\n", 1);
	}
	h = norm.p;
	n = norm.len;

	FUZZ_CHECK(m->hdrlen <= m->text.len, "the header is longer than the message");
	FUZZ_CHECK(n >= 2 && memcmp(h + n - 2, "\r\n", 2) == 0 &&
	    (n == 2 || (n >= 4 && memcmp(h + n - 4, "\r\n\r\n", 4) == 0) ||
	    h[n - 3] == '\n'), "the header does not end with its empty line");
	for (size_t pos = 0; pos < n; ) {
		const char *nl = memchr(h + pos, '\n', n - pos);
		size_t end = nl ? (size_t)(nl - h) + 1 : n;

		if (h[pos] != ' ' && h[pos] != '\t') {
			FUZZ_CHECK(!msghdr_is(h + pos, end - pos, "Bcc") &&
			    !msghdr_is(h + pos, end - pos, "Resent-Bcc"),
			    "a Bcc field left in: %.*s", (int)(end - pos), h + pos);
			from |= msghdr_is(h + pos, end - pos, "From");
		}
		pos = end;
	}
	FUZZ_CHECK(from || !need_from, "no From: field");
	buf_free(&norm);
	n = m->hdrlen;

	bool eight = false, height = false;
	for (size_t i = 0; i < m->text.len; i++)
		if ((unsigned char)m->text.p[i] >= 0x80) {
			eight = true;
			height |= i < n;
		}
	FUZZ_CHECK(m->eightbit == eight && m->hdr_eightbit == height, "8-bit flags wrong");
}

/* Stuffed and read back by relayd's decoder: the message, exactly; a bare
 * CR is taken as a line end by relayd, so it counts as CRLF here. */
static void
check_roundtrip(const struct sendmail_msg *m)
{
	struct buf stuffed, got, want;
	struct data_dec d;

	buf_init(&stuffed);
	buf_init(&got);
	buf_init(&want);
	sendmail_dot_stuff(m->text.p, m->text.len, &stuffed);
	for (size_t i = 0; i < m->text.len; i++) {
		buf_add(&want, m->text.p + i, 1);
		if (m->text.p[i] == '\r' && (i + 1 == m->text.len || m->text.p[i + 1] != '\n'))
			buf_add(&want, "\n", 1);
	}
	if (want.len > 0 && want.p[want.len - 1] != '\n')
		buf_add(&want, "\r\n", 2);
	data_dec_init(&d, collect, &got, 0, UINT64_MAX);
	size_t used = data_dec_feed(&d, stuffed.p, stuffed.len);
	FUZZ_CHECK(d.done && used == stuffed.len, "relayd's decoder ended after %zu of %zu "
	    "octets (done %d)", used, stuffed.len, d.done);
	FUZZ_CHECK(got.len == want.len && (got.len == 0 || memcmp(got.p, want.p, got.len) == 0),
	    "relayd would receive another message (%zu octets, not %zu)", got.len, want.len);
	buf_free(&stuffed);
	buf_free(&got);
	buf_free(&want);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	unsigned nwords = fuzz_byte(&in) % 16;
	char *argv[18], err[512], *sender = NULL;
	int argc = 1;
	uint32_t seed = 0;
	struct sendmail_opts o;
	struct sendmail_rcpts rcpts;

	argv[0] = fuzz_dup("sendmail", 8, true);
	for (unsigned i = 0; i < nwords; i++) {
		size_t len;
		const uint8_t *w = fuzz_field(&in, '\0', &len);

		argv[argc++] = fuzz_dup(w, len, true);
		for (size_t k = 0; k < len && i == 0; k++)
			seed = seed * 31 + w[k];
	}
	argv[argc] = NULL;

	sendmail_rcpts_init(&rcpts);
	if (sendmail_parse_args(argc, argv, &o, err, sizeof(err)) == 0) {
		FUZZ_CHECK(o.nargs <= (size_t)argc - 1 &&
		    (o.nargs == 0 || (o.args >= argv + 1 && o.args + o.nargs == argv + argc)),
		    "recipient arguments outside argv");
		if (sendmail_sender(o.sender ? o.sender : "user", DOMAIN, &sender, err,
		    sizeof(err)) == 0)
			FUZZ_CHECK(sender[0] == '\0' || addr_check_mailbox(sender, true) == ADDR_OK,
			    "sender <%s> is no valid mailbox", sender);
		for (size_t i = 0; i < o.nargs; i++)
			if (sendmail_parse_addrlist(o.args[i], strlen(o.args[i]), DOMAIN, &rcpts, err,
			    sizeof(err)) < 0)
				break;
		check_rcpts(&rcpts);

		struct sendmail_input one, cut;
		read_input(&one, o.ignore_dots, (const char *)in.p, in.n, 0, 0);
		read_input(&cut, o.ignore_dots, (const char *)in.p, in.n, seed, 6);
		check_text(&one.text);
		FUZZ_CHECK(one.done == cut.done && one.text.len == cut.text.len &&
		    (one.text.len == 0 || memcmp(one.text.p, cut.text.p, one.text.len) == 0),
		    "the chunking changed the text read");
		FUZZ_CHECK(!one.done || !o.ignore_dots, "a \".\" line ended the input under -i");

		struct sendmail_msg m;
		if (sender != NULL && sendmail_msg_build(one.text.p, one.text.len, sender,
		    o.fullname, DOMAIN, o.extract ? &rcpts : NULL, &m, err, sizeof(err)) == 0) {
			check_rcpts(&rcpts);
			check_header(&m, sender[0] != '\0');
			check_roundtrip(&m);
			sendmail_msg_free(&m);
		}
		sendmail_input_free(&one);
		sendmail_input_free(&cut);
	}
	sendmail_rcpts_free(&rcpts);
	free(sender);
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return 0;
}
