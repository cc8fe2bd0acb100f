/*
 * fuzz_smtp_cmd — SMTP command lines from applications (smtp_parse.c):
 * the verb split, MAIL FROM with its parameters, RCPT TO, HELO/EHLO.
 *
 * The input is one command line without its CRLF, as smtp_server hands
 * it over (any octets, NUL included), given to every parser in a buffer
 * of exactly its length.  Properties:
 *  - the verb and argument lie inside the line; the argument has no
 *    blank at either end; a recognised verb is one of the known words;
 *  - a refusal is one reply line "ddd d.d.d text" with a 5xx code and a
 *    matching enhanced code, with no line end in it;
 *  - an accepted MAIL or RCPT address is a mailbox addr.c accepts (with
 *    UTF-8 only under SMTPUTF8), that parses back to itself as a path;
 *  - an accepted EHLO name has no control, blank or 8-bit octet.
 */
#include "acconfig.h"

#include <ctype.h>

#include "addr.h"
#include "fuzz.h"
#include "smtp_parse.h"

/* "5dd 5.d.d text": the shape of every refusal smtp_parse makes. */
static void
check_reply(const char *r)
{
	FUZZ_CHECK(r != NULL, "a refusal without a reply");
	FUZZ_CHECK(strlen(r) > 10 && r[0] == '5' && isdigit((unsigned char)r[1]) &&
	    isdigit((unsigned char)r[2]) && r[3] == ' ' && r[4] == '5' && r[5] == '.',
	    "malformed reply \"%s\"", r);
	FUZZ_CHECK(strpbrk(r, "\r\n") == NULL, "a line end in reply \"%s\"", r);
}

/* An accepted address: valid as a mailbox, and "<addr>" reads back as it. */
static void
check_addr(const char *a, bool utf8, bool null_ok)
{
	char path[ADDR_PATH_MAX + 8], again[ADDR_PATH_MAX + 1];
	const char *end;
	size_t n = strlen(a);

	if (n == 0) {
		FUZZ_CHECK(null_ok, "an empty recipient accepted");
		return;
	}
	if (strcmp(a, "postmaster") == 0)
		return;		/* RCPT TO:<Postmaster>, RFC 5321 4.1.1.3 */
	FUZZ_CHECK(addr_check_mailbox(a, utf8) == ADDR_OK,
	    "accepted address <%s> is no valid mailbox (utf8 %d)", a, utf8);
	FUZZ_CHECK(n + 2 <= ADDR_PATH_MAX, "accepted address <%s> is too long", a);
	snprintf(path, sizeof(path), "<%s>", a);
	FUZZ_CHECK(addr_parse_path(path, n + 2, false, utf8, again, &end) == ADDR_OK &&
	    end == path + n + 2 && strcmp(again, a) == 0,
	    "accepted address <%s> does not read back as itself", a);
}

static void
fuzz_mail(const char *arg, size_t len)
{
	struct smtp_mail_args m;
	const char *reply = NULL;

	if (smtp_parse_mail(arg, len, &m, &reply)) {
		check_addr(m.addr, m.smtputf8, true);
		FUZZ_CHECK(m.has_size || m.size == 0, "SIZE value without SIZE");
	} else {
		check_reply(reply);
		FUZZ_CHECK(m.addr[0] == '\0', "a refused MAIL left address <%s>", m.addr);
	}
}

static void
fuzz_rcpt(const char *arg, size_t len, bool utf8)
{
	struct smtp_rcpt_args r;
	const char *reply = NULL;

	if (smtp_parse_rcpt(arg, len, utf8, &r, &reply))
		check_addr(r.addr, utf8, false);
	else {
		check_reply(reply);
		FUZZ_CHECK(r.addr[0] == '\0', "a refused RCPT left address <%s>", r.addr);
	}
}

static void
fuzz_helo(const char *arg, size_t len)
{
	const char *reply = NULL;

	if (!smtp_parse_helo(arg, len, &reply)) {
		check_reply(reply);
		return;
	}
	FUZZ_CHECK(len > 0, "an empty EHLO name accepted");
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK((unsigned char)arg[i] > 32 && (unsigned char)arg[i] < 127,
		    "EHLO name with octet 0x%02x accepted", (unsigned char)arg[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_dup(data, size, false);
	struct smtp_command c;

	smtp_parse_command(line, size, &c);
	FUZZ_CHECK(c.verb == line && c.verblen <= size, "verb outside the line");
	FUZZ_CHECK(c.arglen == 0 || (c.arg >= line + c.verblen && c.arg + c.arglen <= line + size),
	    "argument outside the line");
	if (c.arglen > 0)
		FUZZ_CHECK(c.arg[0] != ' ' && c.arg[0] != '\t' && c.arg[c.arglen - 1] != ' ' &&
		    c.arg[c.arglen - 1] != '\t', "blank at an end of the argument");
	if (c.cmd != SMTP_CMD_UNKNOWN)
		FUZZ_CHECK(c.verblen >= 4 && c.verblen <= 8, "a %zu-octet verb recognised",
		    c.verblen);

	/* Each parser on the argument as the session would give it, and on
	 * the whole line, so that a mutation reaches them directly. */
	fuzz_mail(c.arg, c.arglen);
	fuzz_mail(line, size);
	fuzz_rcpt(c.arg, c.arglen, false);
	fuzz_rcpt(line, size, true);
	fuzz_helo(c.arg, c.arglen);
	fuzz_helo(line, size);
	free(line);
	return 0;
}
