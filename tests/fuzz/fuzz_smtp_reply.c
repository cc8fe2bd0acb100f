/*
 * fuzz_smtp_reply — an upstream's replies (smtp_reply.c): reply lines
 * gathered into replies, their codes and enhanced codes, and EHLO replies
 * read as extension lists.
 *
 * Input: reply lines separated by LF (a CR before it is removed, as
 * smtp_client's line reader does); each line is given in a buffer of
 * exactly its length, without a NUL after it.  A whole reply is read as
 * an EHLO reply too.  Properties:
 *  - no stored line is over SMTP_REPLY_LINE_MAX octets or holds a NUL, a
 *    reply never holds more than SMTP_REPLY_LINES_MAX lines or
 *    SMTP_REPLY_MAX octets: what is over is refused, never stored;
 *  - the code is the last line's, the enhanced code the first line's
 *    "d.ddd.ddd" (class 2, 4 or 5) or "";
 *  - the joined text is one C string of its length, starting with the code;
 *  - a refusal gives a reason;
 *  - the EHLO reader's mechanism list stays within its buffer and names
 *    only words of the AUTH line.
 */
#include "acconfig.h"

#include <ctype.h>

#include "fuzz.h"
#include "smtp_reply.h"

static void
check_enh(const char *e)
{
	size_t i = 0;

	if (e[0] == '\0')
		return;
	FUZZ_CHECK(e[0] == '2' || e[0] == '4' || e[0] == '5', "enhanced code \"%s\"", e);
	for (int part = 0; part < 3; part++) {
		size_t start = i;

		while (isdigit((unsigned char)e[i]))
			i++;
		FUZZ_CHECK(i > start && i - start <= (part ? 3u : 1u), "enhanced code \"%s\"", e);
		if (part < 2)
			FUZZ_CHECK(e[i++] == '.', "enhanced code \"%s\"", e);
	}
	FUZZ_CHECK(e[i] == '\0', "enhanced code \"%s\"", e);
}

/* lens: the length of each line given since the reply began */
static void
check_reply(const struct smtp_reply *r, const size_t *lens, const char *last, size_t lastlen)
{
	size_t size = 0;

	FUZZ_CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX, "%zu lines", r->nlines);
	for (size_t i = 0; i < r->nlines; i++) {
		size_t n = strlen(r->lines[i]);

		FUZZ_CHECK(lens[i] <= SMTP_REPLY_LINE_MAX, "a line of %zu octets stored", lens[i]);
		FUZZ_CHECK(n == (lens[i] > 4 ? lens[i] - 4 : 0),
		    "line %zu stored as %zu octets of text: a NUL in it?", i, n);
		size += lens[i];
	}
	FUZZ_CHECK(r->size <= SMTP_REPLY_MAX && size == r->size, "a reply of %zu octets (%zu)",
	    r->size, size);
	FUZZ_CHECK(r->code == (last[0] - '0') * 100 + (last[1] - '0') * 10 + (last[2] - '0'),
	    "code %d, last line \"%.*s\"", r->code, (int)lastlen, last);
	check_enh(r->enh);
	const char *t = smtp_reply_str(r);
	FUZZ_CHECK(strlen(t) == r->text.len, "the text is not one C string of its length");
	FUZZ_CHECK(r->text.len >= 3 && t[0] == (char)('0' + r->code / 100 % 10) &&
	    isdigit((unsigned char)t[1]) && isdigit((unsigned char)t[2]),
	    "the text \"%s\" does not start with the code", t);
}

static void
check_ehlo(const struct smtp_reply *r)
{
	struct smtp_ext x;

	smtp_reply_ehlo(r, &x);
	FUZZ_CHECK(memchr(x.auth_offered, '\0', sizeof(x.auth_offered)) != NULL,
	    "the mechanism list is not terminated");
	if (x.auth_offered[0] != '\0') {
		/* every listed word is on some AUTH line */
		char copy[sizeof(x.auth_offered)], *save = NULL;

		memcpy(copy, x.auth_offered, sizeof(copy));
		for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
			bool found = false;

			for (size_t i = 1; i < r->nlines && !found; i++)
				found = strstr(r->lines[i], w) != NULL;
			FUZZ_CHECK(found, "mechanism \"%s\" on no line", w);
		}
	}
	FUZZ_CHECK(x.size || x.size_limit == 0, "a SIZE limit without SIZE");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct smtp_reply r;
	char err[256];
	static size_t lens[SMTP_REPLY_LINES_MAX];
	size_t nlens = 0;

	smtp_reply_init(&r);
	while (in.n > 0) {
		size_t len;
		const uint8_t *l = fuzz_field(&in, '\n', &len);

		if (len > 0 && l[len - 1] == '\r')
			len--;
		char *line = fuzz_dup(l, len, false);
		err[0] = '\0';
		enum smtp_reply_rc rc = smtp_reply_add(&r, line, len, err, sizeof(err));

		if (rc != SMTP_REPLY_BAD) {
			FUZZ_CHECK(nlens < SMTP_REPLY_LINES_MAX, "more than %d lines taken",
			    SMTP_REPLY_LINES_MAX);
			lens[nlens++] = len;
		}
		switch (rc) {
		case SMTP_REPLY_MORE:
			FUZZ_CHECK(len > 3 && line[3] == '-', "MORE from a last line");
			break;
		case SMTP_REPLY_DONE:
			check_reply(&r, lens, line, len);
			check_ehlo(&r);
			smtp_reply_reset(&r);
			nlens = 0;
			break;
		case SMTP_REPLY_BAD:
			/* (control octets in it are the log emitter's to escape) */
			FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL,
			    "a refused line without a reason");
			smtp_reply_reset(&r);
			nlens = 0;
			break;
		}
		free(line);
	}
	smtp_reply_free(&r);
	return 0;
}
