/*
 * smtp_reply — an upstream's replies as the protocol shapes them: lines
 * ("ddd-text" ... "ddd text") gathered into one reply, and an EHLO reply
 * read as a list of extensions, one keyword and its parameters per line
 * (RFC 5321 4.1.1.1, 4.2).  Pure: no I/O; smtp_client feeds it lines.
 *
 * Promises:
 *  - Bounded: a line over SMTP_REPLY_LINE_MAX octets, a reply over
 *    SMTP_REPLY_MAX octets or SMTP_REPLY_LINES_MAX lines is refused
 *    (SMTP_REPLY_BAD with a reason), never stored.
 *  - A line that does not start with three digits and then a space, a
 *    hyphen or its end is refused; a NUL octet in a line becomes a space
 *    (C strings), other octets are kept as sent: the log emitter escapes
 *    control characters, and delivery.c cleans reasons for DSNs.
 *  - The code of a reply is the code of its last line (as Postfix reads
 *    it), and the text starts with that code, whatever the other lines
 *    had; the enhanced status code is the first line's, when it has one
 *    (RFC 2034: "d.ddd.ddd" after the code).
 *  - The EHLO reader looks at the keyword that starts each line after the
 *    first (the first is the server's name and greeting text: a word there
 *    is never an extension); a bare SIZE (RFC 1870 allows it) means "no
 *    limit announced" and never swallows the next line.
 */
#ifndef RELAYD_SMTP_REPLY_H
#define RELAYD_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SMTP_REPLY_LINE_MAX	4096	/* octets of one line, without its CRLF; RFC 5321
					 * says 512, real servers send longer */
#define SMTP_REPLY_MAX		65536	/* octets of all lines of one reply */
#define SMTP_REPLY_LINES_MAX	256	/* lines of one reply */

struct smtp_reply {
	int		 code;		/* 0 until the first line */
	char		 enh[16];	/* "5.1.1" from the first line, or "" */
	struct buf	 text;		/* "ddd [enh ]text text ...": the lines joined by
					 * spaces, the reply's code once, a continuation line's
					 * repeated enhanced code left out; NUL-terminated */
	char		**lines;	/* each line's text after "ddd-" / "ddd " */
	size_t		 nlines;
	size_t		 size;		/* octets of the lines so far */
};

enum smtp_reply_rc {
	SMTP_REPLY_MORE,	/* a continuation line: the reply goes on */
	SMTP_REPLY_DONE,	/* the last line: the reply is whole */
	SMTP_REPLY_BAD,		/* a protocol error: the reason is in err */
};

void smtp_reply_init(struct smtp_reply *r);
/* Empties r for the next reply (keeps its memory). */
void smtp_reply_reset(struct smtp_reply *r);
void smtp_reply_free(struct smtp_reply *r);

/*
 * Adds one line (len octets, without its line end).  After SMTP_REPLY_DONE
 * the reply is read from r until smtp_reply_reset(); after SMTP_REPLY_BAD
 * r must be reset before it is used again.
 */
enum smtp_reply_rc smtp_reply_add(struct smtp_reply *r, const char *line, size_t len,
    char *err, size_t errlen);

/* The reply as one string: "ddd text ..." (never NULL once DONE). */
const char *smtp_reply_str(const struct smtp_reply *r);

/* Authentication mechanisms relayd can use, as a bit set. */
#define SMTP_AUTH_PLAIN		0x1u
#define SMTP_AUTH_LOGIN		0x2u
#define SMTP_AUTH_XOAUTH2	0x4u

/* What an EHLO reply offers. */
struct smtp_ext {
	bool		pipelining;
	bool		starttls;
	bool		eightbitmime;
	bool		smtputf8;
	bool		size;		/* SIZE offered (SIZE= may be sent) */
	uint64_t	size_limit;	/* its limit; 0: none announced (bare SIZE, SIZE 0) */
	unsigned	auth;		/* SMTP_AUTH_* */
	char		auth_offered[128];	/* the mechanisms as listed, for log lines */
};

/* Reads the extensions from a whole 2xx EHLO reply; x is cleared first. */
void smtp_reply_ehlo(const struct smtp_reply *r, struct smtp_ext *x);

#endif
