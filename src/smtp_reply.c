/*
 * smtp_reply — reading an upstream's reply lines into replies, and an EHLO
 * reply into extensions (see smtp_reply.h for the promises).
 *
 * Why line by line: a multi-line reply joined into one string and split
 * again into words loses the line structure the protocol gives.  That is
 * how a bare "SIZE" line once swallowed the "STARTTLS" line after it, and
 * how a word of the server's greeting text counted as an extension.
 */
#include "acconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"
#include "util.h"

void
smtp_reply_init(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->text);
}

void
smtp_reply_reset(struct smtp_reply *r)
{
	for (size_t i = 0; i < r->nlines; i++)
		free(r->lines[i]);
	free(r->lines);
	r->lines = NULL;
	r->nlines = 0;
	r->code = 0;
	r->enh[0] = '\0';
	r->size = 0;
	buf_reset(&r->text);
}

void
smtp_reply_free(struct smtp_reply *r)
{
	smtp_reply_reset(r);
	buf_free(&r->text);
}

const char *
smtp_reply_str(const struct smtp_reply *r)
{
	return r->text.p != NULL ? r->text.p : "";
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Length of an enhanced status code at s ("d.ddd.ddd", RFC 3463's digit
 * counts) followed by a space or the end, or 0 if there is none.
 */
static size_t
enh_len(const char *s, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 3; part++) {
		size_t start = i, max = part == 0 ? 1 : 3;

		while (i < n && is_digit(s[i]) && i - start < max)
			i++;
		if (i == start)
			return 0;
		if (part < 2) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && s[i] != ' ')
		return 0;
	return (s[0] == '2' || s[0] == '4' || s[0] == '5') ? i : 0;
}

enum smtp_reply_rc
smtp_reply_add(struct smtp_reply *r, const char *line, size_t len, char *err, size_t errlen)
{
	if (len > SMTP_REPLY_LINE_MAX) {
		snprintf(err, errlen, "a reply line longer than %d octets", SMTP_REPLY_LINE_MAX);
		return SMTP_REPLY_BAD;
	}
	if (r->nlines >= SMTP_REPLY_LINES_MAX || r->size + len > SMTP_REPLY_MAX) {
		snprintf(err, errlen, "a reply of more than %d lines or %d octets",
		    SMTP_REPLY_LINES_MAX, SMTP_REPLY_MAX);
		return SMTP_REPLY_BAD;
	}
	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
	    (len > 3 && line[3] != ' ' && line[3] != '-')) {
		/* the line is len octets, not a C string */
		snprintf(err, errlen, "a malformed reply: %.*s", (int)(len < 200 ? len : 200), line);
		return SMTP_REPLY_BAD;
	}
	bool more = len > 3 && line[3] == '-';
	const char *text = len > 4 ? line + 4 : "";
	size_t tlen = len > 4 ? len - 4 : 0;
	size_t e = enh_len(text, tlen);
	char *copy = xstrndup(text, tlen);

	/* a NUL would cut the C string short: a space is as good for logs */
	for (size_t i = 0; i < tlen; i++)
		if (copy[i] == '\0')
			copy[i] = ' ';
	r->lines = xrealloc(r->lines, (r->nlines + 1) * sizeof(*r->lines));
	r->lines[r->nlines++] = copy;
	r->size += len;
	r->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');

	if (r->nlines == 1) {
		if (e > 0 && e < sizeof(r->enh))
			snprintf(r->enh, sizeof(r->enh), "%.*s", (int)e, copy);
		buf_add(&r->text, line, 3);
		if (tlen > 0) {
			buf_add(&r->text, " ", 1);
			buf_add(&r->text, copy, tlen);
		}
	} else {
		/* the text starts with the reply's code, the last line's */
		memcpy(r->text.p, line, 3);
		/* continuation lines repeat the enhanced code: keep it once */
		const char *t = copy + (e > 0 ? e + (e < tlen) : 0);

		if (*t != '\0') {
			buf_add(&r->text, " ", 1);
			buf_addstr(&r->text, t);
		}
	}
	buf_add(&r->text, "", 1);	/* keep it a C string ... */
	r->text.len--;			/* ... without counting the NUL */
	return more ? SMTP_REPLY_MORE : SMTP_REPLY_DONE;
}

/* Appends a mechanism name to the list shown in log lines, bounded. */
static void
auth_note(struct smtp_ext *x, const char *w, size_t n)
{
	size_t have = strlen(x->auth_offered);

	if (have + n + 2 > sizeof(x->auth_offered))
		return;
	if (have > 0)
		x->auth_offered[have++] = ' ';
	memcpy(x->auth_offered + have, w, n);
	x->auth_offered[have + n] = '\0';
}

/* The AUTH line's mechanisms (space separated, after "AUTH" or "AUTH="). */
static void
ehlo_auth(struct smtp_ext *x, const char *p)
{
	static const struct { const char *name; unsigned bit; } mechs[] = {
		{ "PLAIN", SMTP_AUTH_PLAIN },
		{ "LOGIN", SMTP_AUTH_LOGIN },
		{ "XOAUTH2", SMTP_AUTH_XOAUTH2 },
	};

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");

		if (n == 0)
			break;
		for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
			if (strlen(mechs[i].name) == n && ascii_strncasecmp(p, mechs[i].name, n) == 0)
				x->auth |= mechs[i].bit;
		auth_note(x, p, n);
		p += n;
	}
}

/* Does the line start with keyword kw, followed by its end, a space or '='? */
static bool
keyword_is(const char *line, const char *kw, const char **params)
{
	size_t n = strlen(kw);

	if (ascii_strncasecmp(line, kw, n) != 0)
		return false;
	if (line[n] != '\0' && line[n] != ' ' && line[n] != '=')
		return false;
	*params = line + n + (line[n] != '\0');
	return true;
}

void
smtp_reply_ehlo(const struct smtp_reply *r, struct smtp_ext *x)
{
	memset(x, 0, sizeof(*x));
	/* lines[0] is "<domain> [greeting text]": never an extension */
	for (size_t i = 1; i < r->nlines; i++) {
		const char *l = r->lines[i], *p;

		if (keyword_is(l, "PIPELINING", &p))
			x->pipelining = true;
		else if (keyword_is(l, "STARTTLS", &p))
			x->starttls = true;
		else if (keyword_is(l, "8BITMIME", &p))
			x->eightbitmime = true;
		else if (keyword_is(l, "SMTPUTF8", &p))
			x->smtputf8 = true;
		else if (keyword_is(l, "SIZE", &p)) {
			/* RFC 1870: "SIZE" alone or "SIZE <number>"; 0 = no limit */
			x->size = true;
			x->size_limit = is_digit(*p) ? strtoull(p, NULL, 10) : 0;
		} else if (keyword_is(l, "AUTH", &p))
			ehlo_auth(x, p);
	}
}
