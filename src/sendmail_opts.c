/*
 * sendmail_opts — the pure logic of relayd-sendmail (see sendmail_opts.h):
 * the command line, the message read from stdin, recipients from the
 * header, the header fixes, dot-stuffing and exit statuses.
 *
 * Promises: no I/O and no global state; what goes out is CRLF text whose
 * header section always ends with an empty line; a malformed recipient is
 * an error, never silently dropped, because a mail that goes to fewer
 * people than its author meant is worse than one that is refused.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <openssl/evp.h>

#include "addr.h"
#include "msghdr.h"
#include "sendmail_opts.h"
#include "util.h"

#define SENDMAIL_EW_CHUNK	45	/* octets per RFC 2047 word: 60 base64 chars, 72 in all */

/* ---- command line ---------------------------------------------------- */

static void
sendmail_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sendmail_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Refuses a -b mode; only -bm (deliver mail, the default) exists here. */
static int
sendmail_check_mode(const char *mode, char *err, size_t errlen)
{
	if (strcmp(mode, "m") == 0)
		return 0;
	if (strcmp(mode, "p") == 0)
		sendmail_err(err, errlen, "-bp: relayd-sendmail keeps no queue; "
		    "use \"relayctl queue\"");
	else if (strcmp(mode, "i") == 0)
		sendmail_err(err, errlen, "-bi: relayd has no aliases database");
	else if (strcmp(mode, "s") == 0)
		sendmail_err(err, errlen, "-bs: SMTP on stdin is not supported; "
		    "submit over SMTP to relayd directly");
	else
		sendmail_err(err, errlen, "-b%s is not supported", mode);
	return -1;
}

int
sendmail_parse_args(int argc, char *const argv[], struct sendmail_opts *o,
    char *err, size_t errlen)
{
	int i = 1;

	memset(o, 0, sizeof(*o));
	while (i < argc) {
		const char *a = argv[i];

		if (a[0] != '-' || a[1] == '\0')
			break;
		i++;
		if (strcmp(a, "--") == 0)
			break;
		for (const char *c = a + 1; *c != '\0'; c++) {
			const char *val;

			switch (*c) {
			case 't':
				o->extract = true;
				continue;
			case 'i':
				o->ignore_dots = true;
				continue;
			case 'v':
				o->verbose = true;
				continue;
			case 'm':	/* send to me too: no aliases here */
			case 'n':	/* no aliasing */
			case 'U':	/* initial user submission */
			case 'G':	/* gateway submission */
				continue;
			case 'o':
				/* -oX...: the rest of the word; only -oi matters */
				if (c[1] == 'i')
					o->ignore_dots = true;
				break;
			case 'e':	/* -eX: old form of -oeX, error mode */
				break;
			case 'b':
				if (sendmail_check_mode(c + 1, err, errlen) == -1)
					return -1;
				break;
			case 'q':
				sendmail_err(err, errlen, "-q: relayd-sendmail keeps no queue; "
				    "use \"relayctl flush\"");
				return -1;
			case 'I':
				sendmail_err(err, errlen, "-I: relayd has no aliases database");
				return -1;
			case 'f': case 'r': case 'F': case 'C':
			case 'B': case 'N': case 'R': case 'V':
			case 'h': case 'L': case 'O': case 'X':
				if (c[1] != '\0') {
					val = c + 1;
				} else if (i < argc) {
					val = argv[i++];
				} else {
					sendmail_err(err, errlen, "option -%c needs a value", *c);
					return -1;
				}
				if (*c == 'f' || *c == 'r')
					o->sender = val;
				else if (*c == 'F')
					o->fullname = val;
				else if (*c == 'C')
					o->config = val;
				/* the others (body type, DSN, hop count, ...) are not ours */
				break;
			default:
				sendmail_err(err, errlen, "unknown option -%c", *c);
				return -1;
			}
			break;	/* the option took the rest of the word */
		}
	}
	o->args = argv + i;
	o->nargs = (size_t)(argc - i);
	return 0;
}

/* ---- recipients ------------------------------------------------------ */

void
sendmail_rcpts_init(struct sendmail_rcpts *r)
{
	memset(r, 0, sizeof(*r));
}

void
sendmail_rcpts_add(struct sendmail_rcpts *r, const char *addr)
{
	for (size_t i = 0; i < r->n; i++)
		if (ascii_strcasecmp(r->v[i], addr) == 0)
			return;
	if (r->n == r->cap) {
		r->cap = r->cap == 0 ? 8 : r->cap * 2;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n++] = xstrdup(addr);
}

void
sendmail_rcpts_free(struct sendmail_rcpts *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* ---- address lists -------------------------------------------------- */

/* One address-list being read. */
struct alist {
	const char		*s;
	size_t			 n, i;
	const char		*domain;
	struct sendmail_rcpts	*out;
	int			 added;
	/* the address being collected */
	struct buf		 plain;		/* outside <>, comments dropped */
	struct buf		 angle;		/* inside <> */
	bool			 has_angle;
	bool			 after_angle;	/* text after '>' (other than space) */
	bool			 in_group;
};

static bool
sendmail_is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips a comment starting at s[i] == '('; false if it is not closed. */
static bool
alist_skip_comment(struct alist *a)
{
	int depth = 0;

	for (; a->i < a->n; a->i++) {
		char c = a->s[a->i];

		if (c == '\\' && a->i + 1 < a->n)
			a->i++;
		else if (c == '(')
			depth++;
		else if (c == ')' && --depth == 0) {
			a->i++;
			return true;
		}
	}
	return false;
}

/* Copies a quoted string or a domain literal starting at s[i] (the opening
 * '"' or '[') to b, as written; false if it is not closed. */
static bool
alist_copy_quoted(struct alist *a, struct buf *b)
{
	char close = a->s[a->i] == '"' ? '"' : ']';

	buf_add(b, a->s + a->i, 1);
	for (a->i++; a->i < a->n; a->i++) {
		char c = a->s[a->i];

		if (c == '\r' || c == '\n')
			continue;	/* folding inside a quoted string */
		if (c == '\\' && a->i + 1 < a->n) {
			buf_add(b, a->s + a->i, 2);
			a->i++;
			continue;
		}
		buf_add(b, &c, 1);
		if (c == close) {
			a->i++;
			return true;
		}
	}
	return false;
}

/*
 * An addr-spec written without <>: white space around '@' and '.' is
 * obsolete syntax and dropped; white space left between two words means
 * this is no address ("John Doe").  Quoted strings and literals are kept.
 * Returns false for such a leftover space.
 */
static bool
alist_squeeze(const char *p, size_t n, struct buf *out)
{
	char quote = 0;

	buf_reset(out);
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (quote != 0) {
			buf_add(out, &c, 1);
			if (c == '\\' && i + 1 < n)
				buf_add(out, p + ++i, 1);
			else if (c == quote)
				quote = 0;
			continue;
		}
		if (c == '"')
			quote = '"';
		else if (c == '[')
			quote = ']';
		if (c != ' ') {
			buf_add(out, &c, 1);
			continue;
		}
		/* a space: fine next to '@' or '.', or at either end */
		size_t j = i;
		while (j < n && p[j] == ' ')
			j++;
		if (out->len == 0 || j == n)
			;
		else if (out->p[out->len - 1] == '@' || out->p[out->len - 1] == '.' ||
		    p[j] == '@' || p[j] == '.')
			;
		else
			return false;
		i = j - 1;
	}
	return true;
}

/* The address collected so far is complete (at ',', ';' or the end). */
static int
alist_finish(struct alist *a, char *err, size_t errlen)
{
	struct buf addr;
	const char *p;
	size_t n;
	int rc = 0;

	buf_init(&addr);
	if (a->has_angle) {
		if (a->after_angle) {
			sendmail_err(err, errlen, "text after <%s>",
			    a->angle.len > 0 ? a->angle.p : "");
			rc = -1;
			goto out;
		}
		p = a->angle.p;
		n = a->angle.len;
		/* obsolete source route "@a,@b:" before the mailbox */
		if (n > 0 && p[0] == '@') {
			const char *colon = memchr(p, ':', n);

			if (colon == NULL) {
				sendmail_err(err, errlen, "malformed address <%s>", a->angle.p);
				rc = -1;
				goto out;
			}
			n -= (size_t)(colon + 1 - p);
			p = colon + 1;
		}
		buf_add(&addr, p, n);
	} else {
		/* trim, then squeeze the obsolete spaces */
		p = a->plain.p;
		n = a->plain.len;
		while (n > 0 && *p == ' ') {
			p++;
			n--;
		}
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (!alist_squeeze(p, n, &addr)) {
			sendmail_err(err, errlen, "\"%.*s\" is not an address", (int)n, p);
			rc = -1;
			goto out;
		}
	}
	if (addr.len == 0)
		goto out;	/* "<>", or nothing between two commas */
	if (memchr(addr.p, '@', addr.len) == NULL && a->domain != NULL)
		buf_printf(&addr, "@%s", a->domain);
	switch (addr_check_mailbox(addr.p, true)) {
	case ADDR_OK:
		sendmail_rcpts_add(a->out, addr.p);
		a->added++;
		break;
	case ADDR_TOO_LONG:
		sendmail_err(err, errlen, "address too long: <%s>", addr.p);
		rc = -1;
		break;
	default:
		sendmail_err(err, errlen, "malformed address <%s>", addr.p);
		rc = -1;
		break;
	}
out:
	buf_free(&addr);
	buf_reset(&a->plain);
	buf_reset(&a->angle);
	a->has_angle = false;
	a->after_angle = false;
	return rc;
}

/* Reads <...> starting at s[i] == '<' into angle. */
static int
alist_read_angle(struct alist *a, char *err, size_t errlen)
{
	if (a->has_angle) {
		sendmail_err(err, errlen, "two <addresses> without a comma between them");
		return -1;
	}
	a->has_angle = true;
	for (a->i++; a->i < a->n; ) {
		char c = a->s[a->i];

		if (c == '>') {
			a->i++;
			return 0;
		}
		if (c == '"' || c == '[') {
			if (!alist_copy_quoted(a, &a->angle))
				break;
		} else if (c == '(') {
			if (!alist_skip_comment(a))
				break;
		} else if (c == '<' || c == ';' ||
		    (c == ',' && (a->angle.len == 0 || a->angle.p[0] != '@'))) {
			break;	/* ',' only in a source route "<@a,@b:u@x>" */
		} else {
			if (!sendmail_is_wsp(c))
				buf_add(&a->angle, &c, 1);
			a->i++;
		}
	}
	sendmail_err(err, errlen, "unbalanced '<'");
	return -1;
}

int
sendmail_parse_addrlist(const char *s, size_t n, const char *domain,
    struct sendmail_rcpts *out, char *err, size_t errlen)
{
	struct alist a;
	int rc = -1;

	memset(&a, 0, sizeof(a));
	a.s = s;
	a.n = n;
	a.domain = domain;
	a.out = out;
	buf_init(&a.plain);
	buf_init(&a.angle);
	while (a.i < a.n) {
		char c = s[a.i];

		switch (c) {
		case '(':
			if (!alist_skip_comment(&a)) {
				sendmail_err(err, errlen, "unbalanced '('");
				goto out;
			}
			buf_addstr(&a.plain, " ");
			continue;
		case '"':
		case '[':
			if (a.has_angle)
				a.after_angle = true;
			if (!alist_copy_quoted(&a, &a.plain)) {
				sendmail_err(err, errlen, "unbalanced '%c'", c);
				goto out;
			}
			continue;
		case '<':
			if (alist_read_angle(&a, err, errlen) == -1)
				goto out;
			continue;
		case '>':
			sendmail_err(err, errlen, "unbalanced '>'");
			goto out;
		case ':':
			if (a.has_angle || a.in_group) {
				sendmail_err(err, errlen, "unexpected ':'");
				goto out;
			}
			/* what came before was a group's display name */
			a.in_group = true;
			buf_reset(&a.plain);
			a.i++;
			continue;
		case ';':
		case ',':
			if (alist_finish(&a, err, errlen) == -1)
				goto out;
			if (c == ';')
				a.in_group = false;
			a.i++;
			continue;
		default:
			if (sendmail_is_wsp(c)) {
				buf_addstr(&a.plain, " ");
			} else {
				if (a.has_angle)
					a.after_angle = true;
				buf_add(&a.plain, &c, 1);
			}
			a.i++;
			continue;
		}
	}
	if (alist_finish(&a, err, errlen) == -1)
		goto out;
	rc = a.added;
out:
	buf_free(&a.plain);
	buf_free(&a.angle);
	return rc;
}

int
sendmail_sender(const char *arg, const char *domain, char **out, char *err,
    size_t errlen)
{
	struct sendmail_rcpts one;
	size_t n = strlen(arg);
	int rc;

	*out = NULL;
	while (n > 0 && (*arg == ' ' || *arg == '\t')) {
		arg++;
		n--;
	}
	while (n > 0 && (arg[n - 1] == ' ' || arg[n - 1] == '\t'))
		n--;
	if (n == 0 || (n == 2 && memcmp(arg, "<>", 2) == 0)) {
		*out = xstrdup("");
		return 0;
	}
	sendmail_rcpts_init(&one);
	rc = sendmail_parse_addrlist(arg, n, domain, &one, err, errlen);
	if (rc == 1 && one.n == 1) {
		*out = xstrdup(one.v[0]);
	} else if (rc >= 0) {
		sendmail_err(err, errlen, "sender \"%.*s\" is not one address", (int)n, arg);
		rc = -1;
	}
	sendmail_rcpts_free(&one);
	return *out != NULL ? 0 : -1;
}

/* ---- input ------------------------------------------------------------ */

void
sendmail_input_init(struct sendmail_input *in, bool ignore_dots)
{
	memset(in, 0, sizeof(*in));
	in->ignore_dots = ignore_dots;
	buf_init(&in->text);
	buf_init(&in->line);
}

/*
 * The line in in->line (without its LF) is complete.  A CR inside it ends
 * a line too: relayd's DATA decoder takes it for one, so the header
 * fields (a Bcc: to remove) and the dots to stuff are found here where
 * relayd will find them.  The lone-dot rule is the LF line's, as in
 * sendmail.
 */
static void
sendmail_input_line(struct sendmail_input *in)
{
	const char *p = in->line.p;
	size_t n = in->line.len;

	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (!in->ignore_dots && n == 1 && p[0] == '.') {
		in->done = true;
	} else {
		for (const char *cr; (cr = memchr(p, '\r', n)) != NULL; ) {
			buf_add(&in->text, p, (size_t)(cr - p));
			buf_add(&in->text, "\r\n", 2);
			n -= (size_t)(cr - p) + 1;
			p = cr + 1;
		}
		buf_add(&in->text, p, n);
		buf_add(&in->text, "\r\n", 2);
	}
	buf_reset(&in->line);
}

size_t
sendmail_input_feed(struct sendmail_input *in, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && !in->done) {
		const char *nl = memchr(p + i, '\n', n - i);

		if (nl == NULL) {
			buf_add(&in->line, p + i, n - i);
			return n;
		}
		buf_add(&in->line, p + i, (size_t)(nl - (p + i)));
		i = (size_t)(nl - p) + 1;
		sendmail_input_line(in);
	}
	return i;
}

void
sendmail_input_finish(struct sendmail_input *in)
{
	if (!in->done && in->line.len > 0)
		sendmail_input_line(in);
}

void
sendmail_input_free(struct sendmail_input *in)
{
	buf_free(&in->text);
	buf_free(&in->line);
}

/* ---- the message ----------------------------------------------------- */

struct hfield {
	size_t	off;
	size_t	len;		/* with its CRLF and continuation lines */
};

/* True if the line (p, n, without CRLF) starts a header field "Name:". */
static bool
sendmail_is_field(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] > ' ' && p[i] < 127 && p[i] != ':')
		i++;
	if (i == 0)
		return false;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return i < n && p[i] == ':';
}

/* The value of a field: after its colon, without the final CRLF. */
static void
sendmail_field_value(const char *f, size_t n, const char **v, size_t *vn)
{
	const char *colon = memchr(f, ':', n);

	*v = colon + 1;
	*vn = n - (size_t)(*v - f);
	if (*vn >= 2 && (*v)[*vn - 2] == '\r' && (*v)[*vn - 1] == '\n')
		*vn -= 2;
}

/* NAME as an RFC 5322 display name: as is if only atoms, else quoted, or
 * RFC 2047 encoded-words if not ASCII.  Controls become spaces. */
static void
sendmail_add_display_name(struct buf *b, const char *name)
{
	static const char atext_special[] = "!#$%&'*+-/=?^_`{|}~ ";
	struct buf clean;
	bool atoms = true, ascii = true;

	buf_init(&clean);
	for (const char *c = name; *c != '\0'; c++) {
		unsigned char u = (unsigned char)*c;

		if (u < 32 || u == 127)
			u = ' ';
		if (u >= 128)
			ascii = false;
		else if (!((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
		    (u >= '0' && u <= '9') || strchr(atext_special, u) != NULL))
			atoms = false;
		buf_add(&clean, &u, 1);
	}
	if (!ascii) {
		/* encoded-words of whole UTF-8 characters, folded between them */
		size_t i = 0;

		while (i < clean.len) {
			unsigned char enc[4 * SENDMAIL_EW_CHUNK / 3 + 4];
			size_t k = clean.len - i < SENDMAIL_EW_CHUNK ? clean.len - i :
			    SENDMAIL_EW_CHUNK;

			while (k > 1 && i + k < clean.len &&
			    ((unsigned char)clean.p[i + k] & 0xc0) == 0x80)
				k--;
			EVP_EncodeBlock(enc, (const unsigned char *)clean.p + i, (int)k);
			buf_printf(b, "%s=?UTF-8?B?%s?=", i > 0 ? "\r\n " : "", enc);
			i += k;
		}
	} else if (atoms && clean.p[0] != ' ' && clean.p[clean.len - 1] != ' ') {
		buf_add(b, clean.p, clean.len);
	} else {
		buf_addstr(b, "\"");
		for (size_t i = 0; i < clean.len; i++) {
			if (clean.p[i] == '"' || clean.p[i] == '\\')
				buf_addstr(b, "\\");
			buf_add(b, clean.p + i, 1);
		}
		buf_addstr(b, "\"");
	}
	buf_free(&clean);
}

static bool
sendmail_blank(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s > ' ' && *s != 127)
			return false;
	return true;
}

int
sendmail_msg_build(const char *text, size_t n, const char *sender,
    const char *fullname, const char *domain, struct sendmail_rcpts *rcpts,
    struct sendmail_msg *out, char *err, size_t errlen)
{
	struct hfield *fields = NULL;
	size_t nfields = 0, cap = 0, pos = 0, body;
	bool has_from = false, resent = false;

	memset(out, 0, sizeof(*out));
	buf_init(&out->text);
	if (text == NULL)
		text = "";	/* an empty buf */

	/* an mbox "From " envelope line is not part of the message */
	if (n >= 5 && memcmp(text, "From ", 5) == 0) {
		const char *nl = memchr(text, '\n', n);

		pos = nl != NULL ? (size_t)(nl - text) + 1 : n;
	}
	body = n;
	while (pos < n) {
		const char *nl = memchr(text + pos, '\n', n - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) + 1 : n;
		size_t len = end - pos;
		size_t clen = len;	/* without the line end */

		if (clen > 0 && text[pos + clen - 1] == '\n')
			clen--;
		if (clen > 0 && text[pos + clen - 1] == '\r')
			clen--;
		if (clen == 0) {			/* the empty line */
			body = end;
			break;
		}
		if (text[pos] == ' ' || text[pos] == '\t') {
			if (nfields == 0) {		/* not a header at all */
				body = pos;
				break;
			}
			fields[nfields - 1].len += len;
		} else if (sendmail_is_field(text + pos, clen)) {
			if (nfields == cap) {
				cap = cap == 0 ? 32 : cap * 2;
				fields = xrealloc(fields, cap * sizeof(*fields));
			}
			fields[nfields].off = pos;
			fields[nfields].len = len;
			nfields++;
		} else {				/* the body began at once */
			body = pos;
			break;
		}
		pos = end;
	}

	for (size_t i = 0; i < nfields; i++) {
		const char *f = text + fields[i].off;
		size_t fl = fields[i].len;

		if (msghdr_is(f, fl, "From"))
			has_from = true;
		if (msghdr_is(f, fl, "Resent-To") || msghdr_is(f, fl, "Resent-Cc") ||
		    msghdr_is(f, fl, "Resent-Bcc"))
			resent = true;
	}

	for (size_t i = 0; i < nfields; i++) {
		const char *f = text + fields[i].off;
		size_t fl = fields[i].len;
		bool bcc = msghdr_is(f, fl, "Bcc") || msghdr_is(f, fl, "Resent-Bcc");

		if (rcpts != NULL && (resent ?
		    msghdr_is(f, fl, "Resent-To") || msghdr_is(f, fl, "Resent-Cc") ||
		    msghdr_is(f, fl, "Resent-Bcc") :
		    msghdr_is(f, fl, "To") || msghdr_is(f, fl, "Cc") ||
		    msghdr_is(f, fl, "Bcc"))) {
			const char *v;
			size_t vn;
			char why[256];

			sendmail_field_value(f, fl, &v, &vn);
			if (sendmail_parse_addrlist(v, vn, domain, rcpts, why,
			    sizeof(why)) == -1) {
				sendmail_err(err, errlen, "%.*s: header: %s",
				    (int)((const char *)memchr(f, ':', fl) - f), f, why);
				free(fields);
				buf_free(&out->text);
				return -1;
			}
		}
		if (!bcc)
			buf_add(&out->text, f, fl);
	}
	free(fields);

	if (!has_from && sender != NULL && sender[0] != '\0') {
		buf_addstr(&out->text, "From: ");
		if (fullname != NULL && !sendmail_blank(fullname)) {
			sendmail_add_display_name(&out->text, fullname);
			buf_addstr(&out->text, " ");
		}
		buf_printf(&out->text, "<%s>\r\n", sender);
	}
	buf_addstr(&out->text, "\r\n");
	out->hdrlen = out->text.len;
	buf_add(&out->text, text + body, n - body);

	for (size_t i = 0; i < out->text.len; i++) {
		if ((unsigned char)out->text.p[i] >= 0x80) {
			out->eightbit = true;
			if (i < out->hdrlen)
				out->hdr_eightbit = true;
			if (i >= out->hdrlen || out->hdr_eightbit)
				break;
		}
	}
	return 0;
}

void
sendmail_msg_free(struct sendmail_msg *m)
{
	buf_free(&m->text);
}

void
sendmail_dot_stuff(const char *text, size_t n, struct buf *out)
{
	size_t pos = 0;

	while (pos < n) {
		const char *nl = memchr(text + pos, '\n', n - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) + 1 : n;

		if (text[pos] == '.')
			buf_addstr(out, ".");
		buf_add(out, text + pos, end - pos);
		pos = end;
	}
	if (n > 0 && text[n - 1] != '\n')
		buf_addstr(out, "\r\n");
	buf_addstr(out, ".\r\n");
}

/* ---- exit statuses -------------------------------------------------- */

int
sendmail_exit_status(enum sendmail_stage stage, int code, const char *enh)
{
	if (code >= 400 && code <= 499)
		return EX_TEMPFAIL;
	if (code < 500 || code > 599)
		return EX_PROTOCOL;
	switch (stage) {
	case SENDMAIL_RCPT:
		return EX_NOUSER;
	case SENDMAIL_MAIL:
		if (enh != NULL && strncmp(enh, "5.7.", 4) == 0)
			return EX_NOPERM;
		return EX_DATAERR;
	case SENDMAIL_EOD:
		return EX_DATAERR;
	default:
		return EX_UNAVAILABLE;
	}
}
