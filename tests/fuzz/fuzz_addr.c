/*
 * fuzz_addr — envelope address syntax (addr.c): paths "<local@domain>",
 * the null path, source routes, quoted local parts, address literals,
 * UTF-8 (RFC 6531) and the length limits.
 *
 * Input: one flags octet (bit 0: the null path allowed, bit 1: UTF-8
 * allowed), then the path, given in a buffer of exactly its length.
 * Properties:
 *  - a parsed address prints back to itself: without a source route,
 *    "<" + mailbox + ">" is exactly what was read; with one, the mailbox
 *    is what follows the route's ':';
 *  - the mailbox is valid for addr_check_mailbox, under the same UTF-8
 *    rule, fits the RFC 5321 limits, and has an octet >= 0x80 only when
 *    UTF-8 was allowed;
 *  - allowing UTF-8 never refuses what was accepted without it, and
 *    "needs SMTPUTF8" is only said of an address valid with it;
 *  - addr_check_mailbox and addr_parse_path agree on the same mailbox:
 *    one accepts it exactly when the other accepts it bracketed.
 */
#include "acconfig.h"

#include "addr.h"
#include "fuzz.h"
#include "util.h"

static void
check_path(const char *s, size_t len, bool allow_null, bool utf8)
{
	char out[ADDR_PATH_MAX + 1], again[ADDR_PATH_MAX + 1];
	const char *end = NULL;
	enum addr_status st = addr_parse_path(s, len, allow_null, utf8, out, &end);

	if (!utf8) {
		char other[ADDR_PATH_MAX + 1];
		const char *oend;
		enum addr_status st8 = addr_parse_path(s, len, allow_null, true, other, &oend);

		if (st == ADDR_OK || st == ADDR_NEEDS_UTF8)
			FUZZ_CHECK(st8 == ADDR_OK, "valid without UTF-8 (%d) but not with it (%d)",
			    st, st8);
		else
			FUZZ_CHECK(st8 == st, "UTF-8 changed a refusal from %d to %d", st, st8);
	}
	if (st != ADDR_OK)
		return;

	size_t used = (size_t)(end - s), mlen = strlen(out);

	FUZZ_CHECK(end > s && used <= len && s[used - 1] == '>', "end outside the path");
	FUZZ_CHECK(used <= ADDR_PATH_MAX, "a path of %zu octets accepted", used);
	if (mlen == 0) {
		FUZZ_CHECK(allow_null && used == 2, "an empty mailbox from a non-null path");
		return;
	}
	if (s[1] != '@')
		FUZZ_CHECK(used == mlen + 2 && memcmp(s + 1, out, mlen) == 0,
		    "mailbox <%s> is not what was read", out);
	else
		FUZZ_CHECK(mlen + 2 < used && s[used - mlen - 2] == ':' &&
		    memcmp(s + used - mlen - 1, out, mlen) == 0,
		    "mailbox <%s> is not what follows the source route", out);
	FUZZ_CHECK(memchr(out, '\0', mlen) == NULL, "a NUL in mailbox");
	FUZZ_CHECK(utf8 || !has_8bit(out, strlen(out)), "8-bit mailbox <%s> accepted without UTF-8",
	    out);
	FUZZ_CHECK(addr_check_mailbox(out, utf8) == ADDR_OK,
	    "parsed mailbox <%s> refused by addr_check_mailbox", out);
	FUZZ_CHECK(strchr(out, '@') != NULL && addr_domain(out)[0] != '\0',
	    "mailbox <%s> without a domain", out);

	/* and once more from its printed form */
	char path[ADDR_PATH_MAX + 3];
	snprintf(path, sizeof(path), "<%s>", out);
	FUZZ_CHECK(addr_parse_path(path, mlen + 2, false, utf8, again, &end) == ADDR_OK &&
	    strcmp(again, out) == 0, "<%s> does not read back as itself", out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	unsigned flags = fuzz_byte(&in);
	char *s = fuzz_dup(in.p, in.n, false);

	check_path(s, in.n, flags & 1, flags & 2);
	free(s);

	/* The same bytes as a bare mailbox: accepted only if the path
	 * parser accepts them bracketed, and then as the same mailbox. */
	if (memchr(in.p, '\0', in.n) == NULL && in.n + 2 <= ADDR_PATH_MAX + 8) {
		char *m = fuzz_dup(in.p, in.n, true), path[ADDR_PATH_MAX + 11], out[ADDR_PATH_MAX + 1];
		const char *end;
		bool utf8 = flags & 2;
		enum addr_status st = addr_check_mailbox(m, utf8);

		snprintf(path, sizeof(path), "<%s>", m);
		enum addr_status pst = addr_parse_path(path, in.n + 2, false, utf8, out, &end);

		if (in.n == 0 || m[0] == '@') {
			FUZZ_CHECK(st != ADDR_OK, "mailbox \"%s\" accepted", m);
		} else if (st == ADDR_OK || (pst == ADDR_OK && end == path + in.n + 2)) {
			/* (a path may end early, at a '>' inside: then only
			 * acceptance is compared) */
			FUZZ_CHECK(st == pst, "\"%s\": addr_check_mailbox says %d, the path %d", m, st,
			    pst);
			FUZZ_CHECK(strcmp(out, m) == 0 && end == path + in.n + 2,
			    "\"%s\" read as <%s>", m, out);
		}
		free(m);
	}
	return 0;
}
