/*
 * msghdr — splits message text, as it streams out of the data decoder
 * (CRLF lines, dot-stuffing already removed), into header fields and body,
 * and reads addresses out of header fields.
 *
 * The splitter hands every input byte, in order, to exactly one callback:
 *  - field(): a header field, in pieces as it arrives.  The first piece
 *    (flag MSGHDR_START) is exactly its name and colon ("Subject:", or
 *    "FROM :" with the obsolete white space); the next ones are its value,
 *    folding and line ends included, cut wherever the input was cut.  Once
 *    the field is known to be complete (the next line does not start with
 *    white space, or the text ends), one more call says so: n = 0, flag
 *    MSGHDR_END.  So a whole field is START, any pieces, END, and a field
 *    always ends with its LF (CRLF from the data decoder), except when the
 *    text itself ends inside its last line, which the decoder never does;
 *  - eoh(): once, with the empty line ending the header section ("\r\n"),
 *    or with nothing (n = 0) when the section ends otherwise (a line that
 *    is not a header field starts the body; or the text ends);
 *  - body(): the rest, in chunks as they come.
 * So the concatenation of all callback bytes equals the input.
 *
 * Memory is bounded whatever a client sends: only a field's name is
 * buffered (at most MSGHDR_NAME_MAX octets; a longer one is no field name,
 * and that line starts the body), never its value.  What to keep of a
 * field, and how much, is the caller's business (see dkim_hdrs in dkim.h).
 */
#ifndef RELAYD_MSGHDR_H
#define RELAYD_MSGHDR_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Name, white space and colon: the decoder breaks lines at 998 octets. */
#define MSGHDR_NAME_MAX	998

#define MSGHDR_START	1u	/* this piece is the field's name and colon */
#define MSGHDR_END	2u	/* the field is complete (n = 0) */

struct msghdr_cb {
	void	(*field)(void *ctx, const char *p, size_t n, unsigned flags);
	void	(*eoh)(void *ctx, const char *p, size_t n);
	void	(*body)(void *ctx, const char *p, size_t n);
	void	 *ctx;
};

struct hdrsplit {
	struct msghdr_cb cb;
	/* private */
	int		 st;
	struct buf	 name;		/* the name being read, or a lone CR */
};

void msghdr_init(struct hdrsplit *h, const struct msghdr_cb *cb);
/* Feeds text; may be called with any chunking. */
void msghdr_feed(struct hdrsplit *h, const char *p, size_t n);
/* The text ended: ends a field still open and calls eoh() if it did not come. */
void msghdr_finish(struct hdrsplit *h);
void msghdr_free(struct hdrsplit *h);

/* True if the field (or its START piece) has this name, compared
 * case-insensitively; white space before the colon is tolerated, as RFC
 * 5322's obsolete syntax allows ("FROM : x" is a From field). */
bool msghdr_is(const char *field, size_t n, const char *name);

/*
 * Extracts the domain of the single mailbox of a From:-like field
 * ("From: Ann <ann@Example.COM>", "From: ann@example.com (Ann)",
 * "From: \"Doe, J\" <j@x.org>"), unfolded, comments and quoted display
 * names skipped, into out (lower-cased, at most outlen - 1 octets).
 * Returns false if the field holds no mailbox, or more than one.
 */
bool msghdr_addr_domain(const char *field, size_t n, char *out, size_t outlen);

#endif
