/*
 * msghdr — splits message text, as it streams out of the data decoder
 * (CRLF lines, dot-stuffing already removed), into header fields and body,
 * and reads addresses out of header fields.
 *
 * The splitter hands every input byte, in order, to exactly one callback:
 *  - field(): one complete header field, with its folded continuation lines
 *    and its final CRLF ("Subject: a\r\n b\r\n");
 *  - eoh(): once, with the empty line ending the header section ("\r\n"),
 *    or with nothing (n = 0) when the section ends otherwise (a line that
 *    is not a header field starts the body; or the text ends);
 *  - body(): the rest, in chunks as they come.
 * So the concatenation of all callback bytes equals the input.  A field is
 * buffered until it is complete; one longer than MSGHDR_FIELD_MAX ends the
 * header section (it and what follows go to body()), which keeps memory
 * bounded whatever a client sends.
 */
#ifndef RELAYD_MSGHDR_H
#define RELAYD_MSGHDR_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define MSGHDR_FIELD_MAX (64u << 10)

struct msghdr_cb {
	void	(*field)(void *ctx, const char *p, size_t n);
	void	(*eoh)(void *ctx, const char *p, size_t n);
	void	(*body)(void *ctx, const char *p, size_t n);
	void	 *ctx;
};

struct hdrsplit {
	struct msghdr_cb cb;
	/* private */
	int		 st;
	struct buf	 field;
	bool		 in_body;
};

void msghdr_init(struct hdrsplit *h, const struct msghdr_cb *cb);
/* Feeds text; may be called with any chunking. */
void msghdr_feed(struct hdrsplit *h, const char *p, size_t n);
/* The text ended: flushes a pending field and calls eoh() if it did not come. */
void msghdr_finish(struct hdrsplit *h);
void msghdr_free(struct hdrsplit *h);

/* True if the field (as passed to field()) has this name, compared
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

/*
 * What signing needs of the From: fields (RFC 5322 3.6 wants exactly one):
 * called for every header field, counts the From: fields in *nfrom and
 * keeps the domain of the first one's mailbox in domain, as
 * msghdr_addr_domain() gives it ("" if it holds none, or several).
 */
void msghdr_note_from(const char *field, size_t n, unsigned *nfrom, char *domain,
    size_t domainlen);

#endif
