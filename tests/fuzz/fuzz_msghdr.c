/*
 * fuzz_msghdr — message headers as a client sends them: msghdr.c's
 * header/body splitter (field names, folding, 8-bit octets, the empty
 * line), its From: address reader (msghdr_addr_domain), and dkim.c's
 * keeper of the fields a signature covers (dkim_hdrs), which takes the
 * splitter's pieces.
 *
 * Input: four octets seed the chunk sizes; the rest is message text, fed
 * in one piece and in chunks of 1 to 32 octets.  Properties:
 *  - every input octet reaches exactly one callback, in order;
 *  - the calls are well formed: a field is START (exactly "Name:", the
 *    name printable ASCII, white space before the colon allowed), pieces,
 *    END; its lines after the first start with a space or a tab; eoh()
 *    comes once, with "\r\n" or nothing, before any body();
 *  - the chunking changes nothing but where pieces are cut;
 *  - msghdr_addr_domain gives a lower-case domain without CR, LF or NUL;
 *  - dkim_hdrs keeps exactly the signed fields that fit, whole and in
 *    order, within DKIM_HDRS_MAX, and its From: domain is the first
 *    From: field's.
 */
#include "acconfig.h"

#include "dkim.h"
#include "fuzz.h"
#include "msghdr.h"
#include "util.h"

struct split {
	struct buf	 all;		/* every octet, in callback order */
	struct buf	 events;	/* "S<name>" "V<field>" "H" "B": the calls, pieces joined */
	struct buf	 field;		/* the field being received */
	struct buf	 kept;		/* the signed fields, as dkim_hdrs should keep them */
	struct dkim_hdrs hdrs;
	bool		 open, eoh, signed_field, overflow;
	unsigned	 nfrom;
	char		 first_from[256];
	bool		 first_from_ok, first_from_lost;
};

static void
ev(struct split *s, char tag, const char *p, size_t n)
{
	buf_add(&s->events, &tag, 1);
	buf_printf(&s->events, "%zu:", n);
	buf_add(&s->events, p, n);
}

/* A whole field arrived: check it, and see what dkim_hdrs should do. */
static void
field_done(struct split *s)
{
	const char *f = s->field.p;
	size_t n = s->field.len;
	char dom[256];

	for (size_t i = 0; i + 1 < n; i++)
		if (f[i] == '\n')
			FUZZ_CHECK(f[i + 1] == ' ' || f[i + 1] == '\t',
			    "a field line does not start with white space");
	ev(s, 'V', f, n);
	if (msghdr_addr_domain(f, n, dom, sizeof(dom))) {
		FUZZ_CHECK(dom[0] != '\0' && strpbrk(dom, "\r\n") == NULL,
		    "From: domain \"%s\" empty or with a line end", dom);
		for (const char *d = dom; *d; d++)
			FUZZ_CHECK(*d < 'A' || *d > 'Z', "From: domain \"%s\" not lower case", dom);
	}
	bool first_from = msghdr_is(f, n, "From") && s->nfrom++ == 0;
	bool fits = s->kept.len + n <= DKIM_HDRS_MAX;

	if (s->signed_field && fits)
		buf_add(&s->kept, f, n);
	s->overflow |= s->signed_field && !fits;
	if (first_from) {
		s->first_from_lost = s->signed_field && !fits;
		s->first_from_ok = msghdr_addr_domain(f, n, s->first_from, sizeof(s->first_from));
	}
}

static void
on_field(void *ctx, const char *p, size_t n, unsigned flags)
{
	struct split *s = ctx;

	FUZZ_CHECK(!s->eoh, "a field after the end of the header");
	dkim_hdrs_add(&s->hdrs, p, n, flags);
	if (flags & MSGHDR_START) {
		FUZZ_CHECK(!s->open, "START inside a field");
		FUZZ_CHECK(n >= 2 && p[n - 1] == ':', "START piece is not \"Name:\"");
		size_t k = 0;
		while (k < n - 1 && (unsigned char)p[k] > 32 && (unsigned char)p[k] < 127 &&
		    p[k] != ':')
			k++;
		FUZZ_CHECK(k > 0, "a field without a name");
		while (k < n - 1 && (p[k] == ' ' || p[k] == '\t'))
			k++;
		FUZZ_CHECK(k == n - 1, "START piece \"%.*s\" is not a name and a colon", (int)n, p);
		s->open = true;
		s->signed_field = dkim_field_signed(p, n);
		buf_reset(&s->field);
		buf_add(&s->field, p, n);
		ev(s, 'S', p, n);
	} else if (flags & MSGHDR_END) {
		FUZZ_CHECK(s->open && n == 0, "END outside a field, or with octets");
		field_done(s);
		s->open = false;
	} else {
		FUZZ_CHECK(s->open, "a field piece outside a field");
		buf_add(&s->field, p, n);
	}
	buf_add(&s->all, p, n);
}

static void
on_eoh(void *ctx, const char *p, size_t n)
{
	struct split *s = ctx;

	FUZZ_CHECK(!s->eoh && !s->open, "eoh twice, or inside a field");
	FUZZ_CHECK(n == 0 || (n == 2 && memcmp(p, "\r\n", 2) == 0), "eoh with %zu octets", n);
	s->eoh = true;
	buf_add(&s->all, p, n);
	ev(s, 'H', p, n);
}

static void
on_body(void *ctx, const char *p, size_t n)
{
	struct split *s = ctx;

	FUZZ_CHECK(s->eoh, "body before the end of the header");
	buf_add(&s->all, p, n);
}

static void
split(struct split *s, const char *p, size_t n, uint32_t seed, unsigned bits)
{
	struct msghdr_cb cb = { on_field, on_eoh, on_body, s };
	struct hdrsplit h;
	struct fuzz_chunker ch;
	size_t off = 0;

	memset(s, 0, sizeof(*s));
	buf_init(&s->all);
	buf_init(&s->events);
	buf_init(&s->field);
	buf_init(&s->kept);
	dkim_hdrs_init(&s->hdrs);
	msghdr_init(&h, &cb);
	fuzz_chunker_init(&ch, seed, bits);
	while (off < n) {
		size_t k = bits ? fuzz_chunk(&ch, n - off) : n - off;
		char *c = fuzz_dup(p + off, k, false);

		msghdr_feed(&h, c, k);
		free(c);
		off += k;
	}
	msghdr_finish(&h);
	msghdr_free(&h);
	FUZZ_CHECK(s->eoh && !s->open, "finished without the end of the header");
	FUZZ_CHECK(s->all.len == n && (n == 0 || memcmp(s->all.p, p, n) == 0),
	    "the callbacks did not give back the input (%zu of %zu octets)", s->all.len, n);
}

/* What dkim_hdrs kept, against what the calls say it should have. */
static void
check_hdrs(struct split *s)
{
	struct dkim_hdrs *h = &s->hdrs;
	size_t sum = 0;

	FUZZ_CHECK(h->text.len <= DKIM_HDRS_MAX, "%zu octets kept", h->text.len);
	for (size_t i = 0; i < h->n; i++)
		sum += h->len[i];
	FUZZ_CHECK(sum == h->text.len, "the kept fields' lengths do not add up");
	FUZZ_CHECK(h->overflow == s->overflow, "overflow %d, expected %d", h->overflow,
	    s->overflow);
	FUZZ_CHECK(h->text.len == s->kept.len &&
	    (s->kept.len == 0 || memcmp(h->text.p, s->kept.p, s->kept.len) == 0),
	    "dkim_hdrs kept other fields than the signed ones that fit");
	FUZZ_CHECK(h->nfrom == s->nfrom, "%u From: fields counted, %u seen", h->nfrom, s->nfrom);
	FUZZ_CHECK(h->from_lost == s->first_from_lost, "from_lost %d, expected %d",
	    h->from_lost, s->first_from_lost);
	if (s->nfrom > 0 && !h->from_lost)
		FUZZ_CHECK(strcmp(h->from_domain, s->first_from_ok ? s->first_from : "") == 0,
		    "From: domain \"%s\", the first From: field says \"%s\"", h->from_domain,
		    s->first_from_ok ? s->first_from : "");
}

static void
split_free(struct split *s)
{
	buf_free(&s->all);
	buf_free(&s->events);
	buf_free(&s->field);
	buf_free(&s->kept);
	dkim_hdrs_free(&s->hdrs);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint32_t seed = (uint32_t)fuzz_le(&in, 4);
	struct split one, cut;

	split(&one, (const char *)in.p, in.n, 0, 0);
	check_hdrs(&one);
	split(&cut, (const char *)in.p, in.n, seed, 5);
	FUZZ_CHECK(one.events.len == cut.events.len &&
	    (one.events.len == 0 || memcmp(one.events.p, cut.events.p, one.events.len) == 0),
	    "the chunking changed the fields or the end of the header");
	FUZZ_CHECK(cut.hdrs.text.len == one.hdrs.text.len &&
	    strcmp(cut.hdrs.from_domain, one.hdrs.from_domain) == 0,
	    "the chunking changed what dkim_hdrs kept");
	split_free(&one);
	split_free(&cut);
	return 0;
}
