/*
 * data — the DATA stream decoder.  Fed the client's bytes in arbitrary
 * chunks, it finds the end of the message, removes dot-stuffing, and
 * normalises line ends, with no memory of its own beyond a few bytes of state.
 *
 * Promises (interface.md, "SMTP towards applications"):
 *  - Only the exact sequence <CR><LF>.<CR><LF> ends the message.  The CRLF
 *    that opens it may be the one ending the DATA command (an empty message).
 *  - A bare LF or a bare CR is written out as CRLF; it never ends a message,
 *    and "\n.\n" or "\r\n.\n" are content ("." lines), never the end.
 *  - A line longer than max_line octets (without its line end) is broken by
 *    inserting CRLF + SPACE, as Postfix's smtp_line_length_limit does, so
 *    that what is signed is what an upstream will accept unchanged.
 *  - Every output line ends with CRLF; the final CRLF before the terminating
 *    dot belongs to the message.
 *  - Output stops once max_size octets were produced (overflow is flagged),
 *    but scanning for the end goes on, so the session stays in sync.
 */
#ifndef RELAYD_DATA_H
#define RELAYD_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*data_out_fn)(void *ctx, const char *p, size_t n);

struct data_dec {
	data_out_fn	 out;
	void		*ctx;
	size_t		 max_line;	/* octets per line before a break is inserted */
	uint64_t	 max_size;	/* octets of output before overflow */
	/* results */
	uint64_t	 size;		/* octets produced (or that would have been) */
	bool		 overflow;	/* size exceeded max_size */
	bool		 eightbit;	/* an octet >= 0x80 was seen */
	bool		 bare_lf;	/* a bare LF or CR was normalised */
	bool		 done;		/* terminator seen */
	/* private state */
	int		 st;
	size_t		 linelen;
};

void data_dec_init(struct data_dec *d, data_out_fn out, void *ctx, size_t max_line,
    uint64_t max_size);

/*
 * Consumes input from p (len bytes) and returns how many were consumed.  It
 * stops right after the terminator (d->done set): bytes after it are the
 * client's next pipelined commands and are not consumed.  Output is passed to
 * d->out in as few calls as possible (pieces of the input where it needs no
 * change).
 */
size_t data_dec_feed(struct data_dec *d, const char *p, size_t len);

#endif
