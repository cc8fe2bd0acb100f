/*
 * smtp_parse — the grammar of the commands applications send us, as pure
 * functions over one line (without CRLF).  See smtp_parse.h.
 *
 * Promises: no allocation, no I/O, no read past the length given (lines are
 * not NUL-terminated), and every refusal comes back as one complete static
 * reply line with an enhanced status code (RFC 3463), so that the session
 * only sends it and changes no state.
 *
 * Where RFC 5321 and practice differ we follow Postfix's lenient side only
 * where real clients need it (one space after "FROM:", underscores in EHLO
 * names) and stay strict on addresses: a bad address refused here is an
 * error the application sees, one relayed is a bounce it never sees.
 */
#include <stdint.h>
#include <string.h>

#include "smtp_parse.h"
#include "util.h"

#define R_MAIL_SYNTAX	"501 5.5.4 Syntax: MAIL FROM:<address>"
#define R_RCPT_SYNTAX	"501 5.5.4 Syntax: RCPT TO:<address>"
#define R_HELO_SYNTAX	"501 5.5.4 Syntax: EHLO hostname"
#define R_BAD_SENDER	"501 5.1.3 Bad sender address syntax"
#define R_BAD_RCPT	"501 5.1.3 Bad recipient address syntax"
#define R_NEEDS_UTF8	"553 5.6.7 Address needs SMTPUTF8"
#define R_PARAM_SYNTAX	"501 5.5.4 Bad MAIL parameter syntax"
#define R_PARAM_DUP	"501 5.5.4 Duplicate MAIL parameter"
#define R_PARAM_UNK	"555 5.5.4 Unsupported MAIL parameter"
#define R_RCPT_PARAM	"555 5.5.4 Unsupported RCPT parameter"
#define R_SIZE		"501 5.5.4 Bad SIZE parameter"
#define R_BODY		"501 5.5.4 Unsupported BODY type"
#define R_UTF8_VALUE	"501 5.5.4 SMTPUTF8 takes no value"
#define R_AUTH		"501 5.5.4 Bad AUTH parameter"

static const struct {
	const char	*name;
	enum smtp_cmd	 cmd;
} smtp_verbs[] = {
	{ "HELO", SMTP_CMD_HELO },
	{ "EHLO", SMTP_CMD_EHLO },
	{ "MAIL", SMTP_CMD_MAIL },
	{ "RCPT", SMTP_CMD_RCPT },
	{ "DATA", SMTP_CMD_DATA },
	{ "RSET", SMTP_CMD_RSET },
	{ "NOOP", SMTP_CMD_NOOP },
	{ "QUIT", SMTP_CMD_QUIT },
	{ "HELP", SMTP_CMD_HELP },
	{ "VRFY", SMTP_CMD_VRFY },
	{ "EXPN", SMTP_CMD_EXPN },
	{ "STARTTLS", SMTP_CMD_STARTTLS },
	{ "AUTH", SMTP_CMD_AUTH },
	{ "BDAT", SMTP_CMD_BDAT },
};

/* RFC 5321 separates with SP; HTAB is tolerated as Postfix does. */
static bool
smtp_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* True if s (n bytes) equals the NUL-terminated word w, ignoring ASCII case. */
static bool
smtp_word_is(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && ascii_strncasecmp(s, w, n) == 0;
}

void
smtp_parse_command(const char *line, size_t len, struct smtp_command *out)
{
	size_t i = 0, vlen, a;

	while (i < len && !smtp_is_blank(line[i]))
		i++;
	vlen = i;
	out->cmd = SMTP_CMD_UNKNOWN;
	out->verb = line;
	out->verblen = vlen;
	for (size_t k = 0; k < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); k++)
		if (smtp_word_is(line, vlen, smtp_verbs[k].name)) {
			out->cmd = smtp_verbs[k].cmd;
			break;
		}
	while (i < len && smtp_is_blank(line[i]))
		i++;
	a = i;
	while (len > a && smtp_is_blank(line[len - 1]))
		len--;
	if (len > a) {
		out->arg = line + a;
		out->arglen = len - a;
	} else {
		/* A valid pointer even if line is not NUL-terminated. */
		out->arg = "";
		out->arglen = 0;
	}
}

/*
 * "FROM:" / "TO:" then at most one space (RFC 5321 wants none; Postfix and
 * many clients put one).  Returns the offset of the path, or 0 if the
 * keyword is missing.
 */
static size_t
smtp_skip_keyword(const char *arg, size_t len, const char *kw)
{
	size_t n = strlen(kw);

	if (len < n || ascii_strncasecmp(arg, kw, n) != 0)
		return 0;
	if (n < len && arg[n] == ' ')
		n++;
	return n;
}

/* SIZE=<1*20 digits>, within uint64_t. */
static bool
smtp_parse_size(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (v[i] < '0' || v[i] > '9')
			return false;
		d = (unsigned)(v[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool
smtp_is_keyword(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || c != '-'))
			return false;
	}
	return n > 0;
}

/*
 * esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 octets as RFC 6531
 * allows; we only look at the values we understand, so for the others it
 * is enough to refuse controls, SP and '='.
 */
static bool
smtp_is_value(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 33 || c == '=' || c == 127)
			return false;
	}
	return n > 0;
}

enum { P_SIZE = 1, P_BODY = 2, P_UTF8 = 4, P_AUTH = 8 };

/*
 * The Mail-parameters after the path: keyword[=value] separated by spaces.
 * Fills out and returns NULL, or returns the reply.
 */
static const char *
smtp_parse_mail_params(const char *s, size_t len, struct smtp_mail_args *out)
{
	unsigned	 seen = 0;
	size_t		 i = 0;

	for (;;) {
		const char	*kw, *val = NULL, *eq;
		size_t		 kwlen, vlen = 0, start;
		unsigned	 bit;

		while (i < len && smtp_is_blank(s[i]))
			i++;
		if (i >= len)
			return NULL;
		start = i;
		while (i < len && !smtp_is_blank(s[i]))
			i++;
		kw = s + start;
		kwlen = i - start;
		if ((eq = memchr(kw, '=', kwlen)) != NULL) {
			val = eq + 1;
			vlen = kwlen - (size_t)(val - kw);
			kwlen = (size_t)(eq - kw);
			if (!smtp_is_value(val, vlen))
				return R_PARAM_SYNTAX;
		}
		if (!smtp_is_keyword(kw, kwlen))
			return R_PARAM_SYNTAX;

		if (smtp_word_is(kw, kwlen, "SIZE"))
			bit = P_SIZE;
		else if (smtp_word_is(kw, kwlen, "BODY"))
			bit = P_BODY;
		else if (smtp_word_is(kw, kwlen, "SMTPUTF8"))
			bit = P_UTF8;
		else if (smtp_word_is(kw, kwlen, "AUTH"))
			bit = P_AUTH;
		else
			return R_PARAM_UNK;
		if (seen & bit)
			return R_PARAM_DUP;
		seen |= bit;

		switch (bit) {
		case P_SIZE:
			if (val == NULL || !smtp_parse_size(val, vlen, &out->size))
				return R_SIZE;
			out->has_size = true;
			break;
		case P_BODY:
			/*
			 * BINARYMIME needs CHUNKING (RFC 3030), which we do not
			 * advertise, so it is as unknown as any other value.
			 */
			if (val != NULL && smtp_word_is(val, vlen, "7BIT"))
				out->body = SMTP_BODY_7BIT;
			else if (val != NULL && smtp_word_is(val, vlen, "8BITMIME"))
				out->body = SMTP_BODY_8BITMIME;
			else
				return R_BODY;
			break;
		case P_UTF8:
			if (val != NULL)
				return R_UTF8_VALUE;
			out->smtputf8 = true;
			break;
		case P_AUTH:
			/*
			 * RFC 4954 5: a server that does not trust the client's
			 * AUTH= claim accepts it and does not pass it on.
			 */
			if (val == NULL)
				return R_AUTH;
			break;
		}
	}
}

bool
smtp_parse_mail(const char *arg, size_t len, struct smtp_mail_args *out,
    const char **reply)
{
	enum addr_status	 st;
	const char		*end;
	size_t			 ps, p;

	out->addr[0] = '\0';
	out->size = 0;
	out->has_size = false;
	out->body = SMTP_BODY_UNSPEC;
	out->smtputf8 = false;

	if ((ps = smtp_skip_keyword(arg, len, "FROM:")) == 0 || ps >= len) {
		*reply = R_MAIL_SYNTAX;
		return false;
	}
	/*
	 * SMTPUTF8 may follow the address, so parse the path allowing UTF-8
	 * first (to find where it ends), read the parameters, and only then
	 * decide whether UTF-8 in the address was allowed.
	 */
	st = addr_parse_path(arg + ps, len - ps, true, true, out->addr, &end);
	if (st != ADDR_OK) {
		*reply = R_BAD_SENDER;
		return false;
	}
	p = (size_t)(end - arg);
	if (p < len && !smtp_is_blank(arg[p])) {
		out->addr[0] = '\0';
		*reply = R_MAIL_SYNTAX;		/* "<a@b>x" */
		return false;
	}
	if ((*reply = smtp_parse_mail_params(arg + p, len - p, out)) != NULL) {
		out->addr[0] = '\0';
		return false;
	}
	if (!out->smtputf8 &&
	    addr_parse_path(arg + ps, len - ps, true, false, out->addr, &end) !=
	    ADDR_OK) {
		/* Valid with UTF-8 allowed, so the only failure left is this. */
		out->addr[0] = '\0';
		*reply = R_NEEDS_UTF8;
		return false;
	}
	return true;
}

bool
smtp_parse_rcpt(const char *arg, size_t len, bool smtputf8,
    struct smtp_rcpt_args *out, const char **reply)
{
	enum addr_status	 st;
	const char		*end;
	size_t			 p;

	out->addr[0] = '\0';
	if ((p = smtp_skip_keyword(arg, len, "TO:")) == 0 || p >= len) {
		*reply = R_RCPT_SYNTAX;
		return false;
	}
	/* RFC 5321 4.1.1.3: "<Postmaster>" without a domain must be accepted. */
	if (len - p >= 12 && ascii_strncasecmp(arg + p, "<postmaster>", 12) == 0) {
		strcpy(out->addr, "postmaster");
		end = arg + p + 12;
	} else {
		/* The null path is never a recipient. */
		st = addr_parse_path(arg + p, len - p, false, smtputf8,
		    out->addr, &end);
		if (st != ADDR_OK) {
			out->addr[0] = '\0';
			*reply = st == ADDR_NEEDS_UTF8 ? R_NEEDS_UTF8 : R_BAD_RCPT;
			return false;
		}
	}
	p = (size_t)(end - arg);
	if (p < len && !smtp_is_blank(arg[p])) {
		out->addr[0] = '\0';
		*reply = R_RCPT_SYNTAX;
		return false;
	}
	while (p < len && smtp_is_blank(arg[p]))
		p++;
	if (p < len) {
		/* We advertise no extension with RCPT parameters (no DSN). */
		out->addr[0] = '\0';
		*reply = R_RCPT_PARAM;
		return false;
	}
	return true;
}

bool
smtp_parse_helo(const char *arg, size_t len, const char **reply)
{
	size_t i;

	if (len == 0) {
		*reply = R_HELO_SYNTAX;
		return false;
	}
	/*
	 * Postfix accepts nearly anything here by default, and applications
	 * send names like "WIN_BOX01" or "localhost.localdomain"; the name
	 * only ends up in Received:.  Refuse what cannot be a host name at
	 * all: controls, spaces (two arguments), 8-bit bytes, and a bracket
	 * form that is not a valid address literal.
	 */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)arg[i];

		if (c <= 32 || c >= 127) {
			*reply = R_HELO_SYNTAX;
			return false;
		}
	}
	if (arg[0] == '[' || arg[len - 1] == ']') {
		char		 buf[ADDR_PATH_MAX + 1];
		char		 path[ADDR_PATH_MAX + 8];
		const char	*end;

		/* Reuse the address parser on "<x@[literal]>". */
		if (len > ADDR_PATH_MAX - 4) {
			*reply = R_HELO_SYNTAX;
			return false;
		}
		memcpy(path, "<x@", 3);
		memcpy(path + 3, arg, len);
		path[3 + len] = '>';
		if (arg[0] != '[' || addr_parse_path(path, len + 4, false, false,
		    buf, &end) != ADDR_OK || end != path + len + 4) {
			*reply = R_HELO_SYNTAX;
			return false;
		}
	}
	return true;
}
