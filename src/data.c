/*
 * data — the SMTP DATA stream decoder (promises in data.h).
 *
 * The decoder works on runs: bytes that go out unchanged are not copied
 * but handed to d->out as one piece of the caller's buffer, so an ordinary
 * message with CRLF lines and no leading dots costs one memchr-driven scan
 * and one out() call per chunk.  A run is cut only where the output must
 * differ from the input: a dot to remove, a bare line end to complete, a
 * long line to break, the terminator, or the end of the chunk.
 *
 * Decisions that need a byte not yet received (a CR, or a dot at the start
 * of a line, at the end of a chunk) are parked in d->st; nothing of the
 * input is kept.  The result never depends on how the input was chunked.
 *
 * Terms used below: a "real" line end is CR LF; a "bare" one is a LF not
 * preceded by CR, or a CR not followed by LF.  The start of the data counts
 * as following a real line end, since the DATA command line ended with one.
 */
#include "config.h"

#include <string.h>

#include "data.h"

enum data_state {
	DATA_ST_BOL,		/* start of a line, after a real CRLF */
	DATA_ST_BOL_BARE,	/* start of a line, after a bare line end */
	DATA_ST_TEXT,		/* inside a line; d->linelen octets written */
	DATA_ST_CR,		/* a CR ended the last chunk (and was written) */
	DATA_ST_DOT,		/* "." after a real CRLF ended the last chunk */
	DATA_ST_DOT_CR,		/* ".\r" after a real CRLF ended the last chunk */
	DATA_ST_DOT_BARE,	/* "." after a bare line end ended the last chunk */
	DATA_ST_DONE
};

/*
 * Every output octet goes through here.  Output is cut at exactly max_size
 * octets, whatever the piece boundaries, so that what the caller received
 * before the overflow does not depend on the chunking either.
 */
static void
data_emit(struct data_dec *d, const char *p, size_t n)
{
	uint64_t	room;

	if (n == 0)
		return;
	if (d->overflow) {
		d->size += n;
		return;
	}
	room = d->max_size - d->size;
	d->size += n;
	if (n <= room) {
		d->out(d->ctx, p, n);
		return;
	}
	if (room > 0)
		d->out(d->ctx, p, (size_t)room);
	d->overflow = true;
}

/* Sets eightbit if any octet of p[0..n) has its high bit set. */
static void
data_scan_eightbit(struct data_dec *d, const char *p, size_t n)
{
	const unsigned char	*u = (const unsigned char *)p;
	unsigned char		 acc = 0;
	size_t			 i;

	/* No early exit: this form is vectorised by the compiler. */
	for (i = 0; i < n; i++)
		acc |= u[i];
	if (acc & 0x80)
		d->eightbit = true;
}

/* First CR or LF in p[0..n), or p + n. */
static const char *
data_find_eol(const char *p, size_t n)
{
	const char	*cr, *lf;

	cr = memchr(p, '\r', n);
	lf = memchr(p, '\n', cr != NULL ? (size_t)(cr - p) : n);
	if (lf != NULL)
		return lf;
	return cr != NULL ? cr : p + n;
}

/*
 * A line of max_line 0 is never broken.  A limit below 2 would leave no
 * room on a continuation line for anything but its leading space, so it is
 * raised to 2 (the decoder must always make progress).
 */
void
data_dec_init(struct data_dec *d, data_out_fn out, void *ctx, size_t max_line,
    uint64_t max_size)
{
	memset(d, 0, sizeof(*d));
	d->out = out;
	d->ctx = ctx;
	d->max_line = (max_line == 1) ? 2 : max_line;
	d->max_size = max_size;
	d->st = DATA_ST_BOL;
	d->linelen = 0;
}

/*
 * Resolves a decision parked at the end of the previous chunk, using the
 * first byte(s) of this one (len >= 1).  Returns how many bytes it consumed
 * (they were written, or the terminator was found); the caller goes on from
 * there in the state left in d->st.
 */
static size_t
data_resume(struct data_dec *d, const char *p, size_t len)
{
	switch (d->st) {
	case DATA_ST_CR:
		/* (A LF here is handled by the caller, as part of a run.) */
		data_emit(d, "\n", 1);
		d->bare_lf = true;
		d->st = DATA_ST_BOL_BARE;
		return 0;
	case DATA_ST_DOT:
		if (p[0] == '\r') {
			if (len < 2) {
				d->st = DATA_ST_DOT_CR;
				return 1;
			}
			if (p[1] == '\n') {
				d->st = DATA_ST_DONE;
				d->done = true;
				return 2;
			}
		}
		if (p[0] == '\r' || p[0] == '\n') {
			/* A line of just ".", ended by a bare line end. */
			data_emit(d, ".", 1);
			d->linelen = 1;
		} else
			d->linelen = 0;		/* the stuffed dot goes */
		d->st = DATA_ST_TEXT;
		return 0;
	case DATA_ST_DOT_CR:
		if (p[0] == '\n') {
			d->st = DATA_ST_DONE;
			d->done = true;
			return 1;
		}
		data_emit(d, ".\r\n", 3);
		d->bare_lf = true;
		d->st = DATA_ST_BOL_BARE;
		return 0;
	case DATA_ST_DOT_BARE:
		if (p[0] == '\r' || p[0] == '\n') {
			data_emit(d, ".", 1);
			d->linelen = 1;
		} else
			d->linelen = 0;
		d->st = DATA_ST_TEXT;
		return 0;
	default:
		return 0;
	}
}

size_t
data_dec_feed(struct data_dec *d, const char *p, size_t len)
{
	const char	*run;		/* start of the bytes to write unchanged */
	size_t		 i, room, lim, k;

	if (d->done || len == 0)
		return 0;

	if (d->st == DATA_ST_CR && p[0] == '\n') {
		/* The CR went out with the last chunk; its LF starts a run. */
		d->st = DATA_ST_BOL;
		i = 1;
		run = p;
	} else {
		i = data_resume(d, p, len);
		if (d->st == DATA_ST_DONE)
			return i;
		run = p + i;
	}

	while (i < len) {
		switch (d->st) {
		case DATA_ST_BOL:
		case DATA_ST_BOL_BARE:
			if (p[i] != '.') {
				d->st = DATA_ST_TEXT;
				d->linelen = 0;
				break;
			}
			if (i + 1 == len) {
				/* Whether this dot stays is up to the next chunk. */
				data_emit(d, run, (size_t)(p + i - run));
				d->st = d->st == DATA_ST_BOL ? DATA_ST_DOT :
				    DATA_ST_DOT_BARE;
				return len;
			}
			if (d->st == DATA_ST_BOL && p[i + 1] == '\r') {
				if (i + 2 == len) {
					data_emit(d, run, (size_t)(p + i - run));
					d->st = DATA_ST_DOT_CR;
					return len;
				}
				if (p[i + 2] == '\n') {
					/* The CRLF before the dot is the message's. */
					data_emit(d, run, (size_t)(p + i - run));
					d->st = DATA_ST_DONE;
					d->done = true;
					return i + 3;
				}
			}
			d->st = DATA_ST_TEXT;
			d->linelen = 0;
			if (p[i + 1] != '\r' && p[i + 1] != '\n') {
				/* Dot-stuffing: the first dot goes. */
				data_emit(d, run, (size_t)(p + i - run));
				i++;
				run = p + i;
			}
			/* Otherwise the line is "." with a bare end: the dot stays. */
			break;

		case DATA_ST_TEXT:
			/* The longest stretch that needs no decision. */
			lim = len - i;
			if (d->max_line != 0) {
				room = d->max_line > d->linelen ?
				    d->max_line - d->linelen : 0;
				if (room < lim)
					lim = room;
			}
			k = (size_t)(data_find_eol(p + i, lim) - p);
			if (!d->eightbit)
				data_scan_eightbit(d, p + i, k - i);
			d->linelen += k - i;
			i = k;
			if (i == len)
				break;
			if (p[i] == '\n') {
				data_emit(d, run, (size_t)(p + i - run));
				data_emit(d, "\r\n", 2);
				d->bare_lf = true;
				d->st = DATA_ST_BOL_BARE;
				i++;
				run = p + i;
			} else if (p[i] == '\r') {
				i++;
				if (i == len) {
					/* The CR is written; its LF may follow. */
					d->st = DATA_ST_CR;
					break;
				}
				if (p[i] == '\n') {
					i++;
					d->st = DATA_ST_BOL;
				} else {
					data_emit(d, run, (size_t)(p + i - run));
					data_emit(d, "\n", 1);
					d->bare_lf = true;
					d->st = DATA_ST_BOL_BARE;
					run = p + i;
				}
			} else {
				/*
				 * The line is full and more text follows.  The
				 * space keeps the break from ever reading as a
				 * line start, so it cannot make a terminator.
				 */
				data_emit(d, run, (size_t)(p + i - run));
				data_emit(d, "\r\n ", 3);
				d->linelen = 1;
				run = p + i;
			}
			break;

		default:
			/* Not reached: parked states exist only between chunks. */
			return i;
		}
	}
	data_emit(d, run, (size_t)(p + len - run));
	return len;
}
