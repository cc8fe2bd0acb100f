/*
 * msghdr — the header/body splitter and two readers of header fields.
 *
 * The splitter is a byte-level state machine, so it gives the same calls
 * (up to where pieces and body() chunks are cut) whatever the chunking of
 * its input.  It buffers only a field name (until its colon shows it is
 * one) and a CR opening a line (until the next octet shows whether it is
 * the empty line); value bytes are passed on as they come, in one piece
 * per run of the input that belongs to the field.  A field is only known
 * complete when the next line starts with something other than a space or
 * tab, so its END comes with the first octet of the following line (or
 * at the end of the text).
 *
 * A line opens a field when it starts with one or more printable ASCII
 * characters other than ':', optionally followed by spaces or tabs, then
 * ':' (RFC 5322 2.2, with the obsolete white space before the colon).
 * Anything else (a line starting with white space when no field is open,
 * a line without a colon, an 8-bit octet in the name, a name over
 * MSGHDR_NAME_MAX, a bare LF line, a CR not followed by LF) ends the
 * header section: eoh() with nothing, and that line goes to body().
 */
#include <string.h>

#include "msghdr.h"

enum {
	MH_LINE = 0,	/* at a line start, no field open */
	MH_LINE_FIELD,	/* at a line start, a field open (its lines complete) */
	MH_NAME,	/* in a field name */
	MH_NAME_WSP,	/* white space after a field name, before ':' */
	MH_VALUE,	/* in a field's value, or a continuation line */
	MH_CR,		/* a CR opening a line: the empty line, probably */
	MH_BODY,
};

void
msghdr_init(struct hdrsplit *h, const struct msghdr_cb *cb)
{
	memset(h, 0, sizeof(*h));
	h->cb = *cb;
	h->st = MH_LINE;
	buf_init(&h->name);
}

void
msghdr_free(struct hdrsplit *h)
{
	buf_free(&h->name);
}

static void
mh_end_field(struct hdrsplit *h)
{
	h->cb.field(h->cb.ctx, NULL, 0, MSGHDR_END);
}

/* The section ends without an empty line; what is buffered (the start
 * of a line that is no field) is the body's first text. */
static void
mh_to_body(struct hdrsplit *h)
{
	h->cb.eoh(h->cb.ctx, NULL, 0);
	if (h->name.len > 0)
		h->cb.body(h->cb.ctx, h->name.p, h->name.len);
	buf_reset(&h->name);
	h->st = MH_BODY;
}

/* One octet of a field name (or the white space and colon after it);
 * false if that makes it longer than any name can be: then it all went to
 * body(), and the section is over. */
static bool
mh_name_add(struct hdrsplit *h, char c)
{
	buf_add(&h->name, &c, 1);
	if (h->name.len > MSGHDR_NAME_MAX) {
		mh_to_body(h);
		return false;
	}
	return true;
}

/* The colon arrived: the buffered name is a field's first piece. */
static void
mh_start_field(struct hdrsplit *h)
{
	h->cb.field(h->cb.ctx, h->name.p, h->name.len, MSGHDR_START);
	buf_reset(&h->name);
	h->st = MH_VALUE;
}

static bool
mh_is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/*
 * In a field's value: passes on, in one piece, everything up to the end
 * of the input or of the field's last line known so far.  Returns how
 * many octets of p it took.  A line end followed (in this input) by white
 * space continues the field; one at the end of the input leaves the
 * question to the next octet (MH_LINE_FIELD).
 */
static size_t
mh_value(struct hdrsplit *h, const char *p, size_t n)
{
	size_t i = 0;

	for (;;) {
		const char *lf = memchr(p + i, '\n', n - i);

		if (lf == NULL) {
			i = n;
			break;
		}
		i = (size_t)(lf - p) + 1;
		if (i == n || (p[i] != ' ' && p[i] != '\t')) {
			h->st = MH_LINE_FIELD;
			break;
		}
	}
	h->cb.field(h->cb.ctx, p, i, 0);
	return i;
}

void
msghdr_feed(struct hdrsplit *h, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = (unsigned char)p[i];

		switch (h->st) {
		case MH_LINE_FIELD:
			if (c == ' ' || c == '\t') {
				/* A continuation line of the open field. */
				h->st = MH_VALUE;
				break;
			}
			mh_end_field(h);
			h->st = MH_LINE;
			/* FALLTHROUGH */
		case MH_LINE:
			if (c == '\r') {
				h->st = MH_CR;
				i++;
			} else if (mh_is_ftext(c)) {
				h->st = MH_NAME;
			} else {
				mh_to_body(h);
			}
			break;
		case MH_CR:
			if (c == '\n') {
				h->cb.eoh(h->cb.ctx, "\r\n", 2);
				h->st = MH_BODY;
				i++;
			} else {
				buf_add(&h->name, "\r", 1);
				mh_to_body(h);
			}
			break;
		case MH_NAME:
		case MH_NAME_WSP:
			if (c == ':') {
				if (mh_name_add(h, (char)c))
					mh_start_field(h);
				i++;
			} else if (c == ' ' || c == '\t') {
				if (mh_name_add(h, (char)c))
					h->st = MH_NAME_WSP;
				i++;
			} else if (mh_is_ftext(c) && h->st == MH_NAME) {
				(void)mh_name_add(h, (char)c);
				i++;
			} else {
				mh_to_body(h);
			}
			break;
		case MH_VALUE:
			i += mh_value(h, p + i, n - i);
			break;
		case MH_BODY:
		default:
			h->cb.body(h->cb.ctx, p + i, n - i);
			i = n;
			break;
		}
	}
}

void
msghdr_finish(struct hdrsplit *h)
{
	switch (h->st) {
	case MH_LINE_FIELD:
	case MH_VALUE:
		/* (MH_VALUE: the text ended inside the field's last line.) */
		mh_end_field(h);
		/* FALLTHROUGH */
	case MH_LINE:
		h->cb.eoh(h->cb.ctx, NULL, 0);
		break;
	case MH_CR:
		buf_add(&h->name, "\r", 1);
		mh_to_body(h);
		break;
	case MH_NAME:
	case MH_NAME_WSP:
		/* An unfinished name: no field. */
		mh_to_body(h);
		break;
	default:
		break;
	}
	h->st = MH_BODY;
}

bool
msghdr_is(const char *field, size_t n, const char *name)
{
	size_t len = strlen(name), i;

	if (len == 0 || n <= len || ascii_strncasecmp(field, name, len) != 0)
		return false;
	for (i = len; i < n && (field[i] == ' ' || field[i] == '\t'); i++)
		;
	return i < n && field[i] == ':';
}

/*
 * ---- msghdr_addr_domain: an RFC 5322 address-list reader -------------
 *
 * The value is cut into tokens: atoms (runs of anything but specials,
 * white space and controls; '.' and 8-bit octets included, so a dot-atom
 * or an obsolete "a . b" both concatenate right), quoted strings, domain
 * literals and single specials.  Comments and white space (CR and LF
 * included: that unfolds) separate tokens and are otherwise dropped.
 * Then each address is read from the tokens between top-level ',' or ';',
 * a top-level ':' outside <> closing a group's display name.
 */
enum ad_tok { AD_END = 0, AD_ATOM, AD_QUOTED, AD_LITERAL, AD_SPECIAL, AD_BAD };

struct ad_lex {
	const char	*p;
	size_t		 n, i;
	/* the current token */
	enum ad_tok	 tok;
	const char	*t;
	size_t		 tlen;
};

static bool
ad_is_special(unsigned char c)
{
	return strchr("()<>[]:;@\\,\"", c) != NULL && c != '\0';
}

/* Skips white space and (nested) comments; false on an unclosed comment. */
static bool
ad_skip_cfws(struct ad_lex *lx)
{
	while (lx->i < lx->n) {
		char c = lx->p[lx->i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			lx->i++;
		} else if (c == '(') {
			int depth = 0;

			do {
				c = lx->p[lx->i];
				if (c == '\\')
					lx->i++;
				else if (c == '(')
					depth++;
				else if (c == ')')
					depth--;
				lx->i++;
			} while (depth > 0 && lx->i < lx->n);
			if (depth > 0)
				return false;
		} else {
			break;
		}
	}
	return true;
}

static void
ad_next(struct ad_lex *lx)
{
	unsigned char c;
	char close;
	size_t start;

	if (!ad_skip_cfws(lx)) {
		lx->tok = AD_BAD;
		return;
	}
	if (lx->i >= lx->n) {
		lx->tok = AD_END;
		return;
	}
	start = lx->i;
	c = (unsigned char)lx->p[lx->i];
	if (c == '"' || c == '[') {
		close = c == '"' ? '"' : ']';
		for (lx->i++; lx->i < lx->n && lx->p[lx->i] != close; lx->i++) {
			if (lx->p[lx->i] == '\\')
				lx->i++;
		}
		if (lx->i >= lx->n) {
			lx->tok = AD_BAD;
			return;
		}
		lx->i++;
		lx->tok = c == '"' ? AD_QUOTED : AD_LITERAL;
	} else if (ad_is_special(c)) {
		lx->i++;
		lx->tok = c == ')' || c == ']' || c == '\\' ? AD_BAD : AD_SPECIAL;
	} else if (c < 0x20 || c == 0x7f) {
		lx->tok = AD_BAD;
		return;
	} else {
		while (lx->i < lx->n) {
			c = (unsigned char)lx->p[lx->i];
			if (c <= ' ' || c == 0x7f || ad_is_special(c))
				break;
			lx->i++;
		}
		lx->tok = AD_ATOM;
	}
	lx->t = lx->p + start;
	lx->tlen = lx->i - start;
}

static bool
ad_special(const struct ad_lex *lx, char c)
{
	return lx->tok == AD_SPECIAL && lx->t[0] == c;
}

/*
 * Appends a domain token to out; false if it does not fit.  A domain
 * literal may be folded ("[1.2.3.4\r\n 5]", RFC 5322 3.4.1 allows FWS
 * in it): unfolding drops its CR and LF octets, keeping the white space
 * (3.2.2), so that no line end ever reaches what routing, logs and replies
 * make of the domain.
 */
static bool
ad_domain_add(char *out, size_t outlen, size_t *len, const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i] == '\r' || t[i] == '\n')
			continue;
		if (*len + 2 > outlen)
			return false;
		out[(*len)++] = t[i];
	}
	out[*len] = '\0';
	return true;
}

/*
 * True if the current token may follow a token ending in prev within a
 * dot-atom-like sequence: only with a dot between them ("a.b", "a . b",
 * "\"x\".y"); "a b" is two words, which an addr-spec cannot hold.
 */
static bool
ad_dot_joined(char prev, const struct ad_lex *lx)
{
	return prev == '\0' || prev == '.' || lx->t[0] == '.';
}

/*
 * Reads one addr-spec's domain: the tokens after the '@' that follows the
 * local part, until a token that cannot be part of a domain.  lx is on the
 * first token of the local part.  Returns false on malformed syntax.
 */
static bool
ad_addr_spec(struct ad_lex *lx, char *out, size_t outlen)
{
	size_t len = 0;
	char prev = '\0';

	while (lx->tok == AD_ATOM || lx->tok == AD_QUOTED) {
		if (!ad_dot_joined(prev, lx))
			return false;
		prev = lx->t[lx->tlen - 1];
		ad_next(lx);
	}
	if (prev == '\0' || !ad_special(lx, '@'))
		return false;
	ad_next(lx);
	if (lx->tok == AD_LITERAL) {
		if (!ad_domain_add(out, outlen, &len, lx->t, lx->tlen))
			return false;
		ad_next(lx);
	} else {
		prev = '\0';
		while (lx->tok == AD_ATOM) {
			if (!ad_dot_joined(prev, lx) ||
			    !ad_domain_add(out, outlen, &len, lx->t, lx->tlen))
				return false;
			prev = lx->t[lx->tlen - 1];
			ad_next(lx);
		}
	}
	return len > 0 && out[0] != '.' && out[len - 1] != '.';
}

bool
msghdr_addr_domain(const char *field, size_t n, char *out, size_t outlen)
{
	struct ad_lex lx;
	const char *colon;
	char dom[512];
	size_t mailboxes = 0;
	bool in_group = false;

	if (outlen > 0)
		out[0] = '\0';
	if (field == NULL || (colon = memchr(field, ':', n)) == NULL)
		return false;
	memset(&lx, 0, sizeof(lx));
	lx.p = colon + 1;
	lx.n = n - (size_t)(colon + 1 - field);
	ad_next(&lx);

	for (;;) {
		/* At the start of an address (or an empty list element). */
		if (lx.tok == AD_END)
			break;
		if (ad_special(&lx, ',')) {
			ad_next(&lx);
			continue;
		}
		if (ad_special(&lx, ';') && in_group) {
			in_group = false;
			ad_next(&lx);
			continue;
		}
		/*
		 * Words, then '<' (a name-addr), ':' (a group's display name)
		 * or '@' (an addr-spec, whose words were its local part).
		 * A look-ahead copy of the lexer decides which.
		 */
		struct ad_lex la = lx;
		bool words = false;

		while (la.tok == AD_ATOM || la.tok == AD_QUOTED) {
			words = true;
			ad_next(&la);
		}
		if (ad_special(&la, ':') && words && !in_group) {
			in_group = true;
			lx = la;
			ad_next(&lx);
			continue;
		}
		if (ad_special(&la, '<')) {
			ad_next(&la);
			if (ad_special(&la, '@')) {
				/* Obsolete route "@a,@b:" before the address. */
				while (la.tok != AD_END && la.tok != AD_BAD &&
				    !ad_special(&la, ':') && !ad_special(&la, '>'))
					ad_next(&la);
				if (!ad_special(&la, ':'))
					return false;
				ad_next(&la);
			}
			if (!ad_addr_spec(&la, dom, sizeof(dom)) || !ad_special(&la, '>'))
				return false;
			ad_next(&la);
		} else if (ad_special(&la, '@')) {
			la = lx;
			if (!ad_addr_spec(&la, dom, sizeof(dom)))
				return false;
		} else {
			return false;
		}
		/* An address ends at ',', at a group's ';', or at the end. */
		if (!(la.tok == AD_END || ad_special(&la, ',') ||
		    (in_group && ad_special(&la, ';'))))
			return false;
		mailboxes++;
		lx = la;
	}
	if (mailboxes != 1 || lx.tok == AD_BAD || in_group)
		return false;
	if (strlen(dom) + 1 > outlen)
		return false;
	memcpy(out, dom, strlen(dom) + 1);
	ascii_lower(out);
	return true;
}
