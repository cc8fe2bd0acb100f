/*
 * sendmail_opts — the pure half of relayd-sendmail: the classic sendmail
 * command line, the message as read from stdin (line ends, the lone-dot
 * rule), recipients taken from the header (-t), the header fixes made
 * before submission, dot-stuffing, and the exit status that an SMTP reply
 * maps to.  No sockets, no configuration file, no global state: the
 * program (sendmail.c) does the I/O, the unit tests call these directly.
 */
#ifndef RELAYD_SENDMAIL_OPTS_H
#define RELAYD_SENDMAIL_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* ---- command line ------------------------------------------------------ */

struct sendmail_opts {
	bool		 extract;	/* -t: recipients from To:, Cc:, Bcc: */
	bool		 ignore_dots;	/* -i, -oi: a lone "." line is text */
	bool		 verbose;	/* -v: the SMTP dialogue on stderr */
	const char	*sender;	/* -f / -r as given, NULL if not given */
	const char	*fullname;	/* -F, NULL if not given */
	const char	*config;	/* -C, NULL: relayd's default */
	char *const	*args;		/* recipient arguments (point into argv) */
	size_t		 nargs;
};

/*
 * Parses argv (argv[0] is the program name) as sendmail does: single-letter
 * options, several may share one word ("-ti"); an option's value may be
 * attached ("-fuser@x") or the next word ("-f user@x"); "-o" takes the rest
 * of its word and only "-oi" means something; options end at "--" or at
 * the first word not starting with '-'.  Options applications pass that do
 * not matter here are accepted and ignored (-bm, -B, -h, -L, -m, -n, -N,
 * -O, -R, -U, -V, -X, -G, -o*).  Returns 0, or -1 with a reason in err for
 * an unknown option, a missing value, or a mode this program does not have
 * (-bs, -bp, -bi, -q, ...).  Pointers in *o point into argv.
 */
int sendmail_parse_args(int argc, char *const argv[], struct sendmail_opts *o,
    char *err, size_t errlen);

/* ---- addresses ------------------------------------------------------- */

/* A list of recipient addresses, bare (no <>), each allocated; no duplicates
 * (compared ASCII-case-insensitively). */
struct sendmail_rcpts {
	char	**v;
	size_t	  n;
	size_t	  cap;
};

void sendmail_rcpts_init(struct sendmail_rcpts *r);
/* Adds a copy of addr unless it is there already. */
void sendmail_rcpts_add(struct sendmail_rcpts *r, const char *addr);
void sendmail_rcpts_free(struct sendmail_rcpts *r);

/*
 * Reads an RFC 5322 address-list (s, n bytes; a header field's value or a
 * command-line argument; folded lines allowed): mailboxes with or without
 * display names, quoted strings (commas inside are not separators),
 * comments, groups ("team: a@x, b@y;", "undisclosed-recipients:;"), the
 * obsolete source route "<@a,@b:u@x>"; a ';' outside a group separates like
 * ','.  An address without '@' is qualified with "@domain".  Each mailbox
 * is checked (addr_check_mailbox, UTF-8 allowed) and added to out.  Returns
 * the number of mailboxes read (duplicates included), or -1 with a reason
 * in err if the list is malformed or holds an invalid address (out may then
 * hold the addresses before it).
 */
int sendmail_parse_addrlist(const char *s, size_t n, const char *domain,
    struct sendmail_rcpts *out, char *err, size_t errlen);

/*
 * The envelope sender from -f's value: "" or "<>" is the null sender
 * (*out = ""), "<a@b>" loses its brackets, "user" becomes "user@domain".
 * Returns 0 with *out allocated, or -1 with a reason in err.
 */
int sendmail_sender(const char *arg, const char *domain, char **out, char *err,
    size_t errlen);

/* ---- the message ------------------------------------------------------ */

/*
 * The message as it comes on stdin, in any chunking: every line end (LF,
 * CRLF, or a CR alone, which relayd takes as one) becomes CRLF, a last
 * line without one gets one, and unless
 * ignore_dots a line holding a single "." ends the input (done is set and
 * feeding stops consuming there).  text holds the message, not dot-stuffed.
 */
struct sendmail_input {
	bool		 ignore_dots;
	bool		 done;		/* a lone "." line was read */
	struct buf	 text;
	struct buf	 line;		/* a line not yet complete */
};

void sendmail_input_init(struct sendmail_input *in, bool ignore_dots);
/* Returns how many of the n bytes were consumed (all, unless done). */
size_t sendmail_input_feed(struct sendmail_input *in, const char *p, size_t n);
/* End of input: a pending partial line is completed with CRLF. */
void sendmail_input_finish(struct sendmail_input *in);
void sendmail_input_free(struct sendmail_input *in);

struct sendmail_msg {
	struct buf	 text;		/* to submit: CRLF lines, not dot-stuffed */
	size_t		 hdrlen;	/* octets of the header section with its empty line */
	bool		 eightbit;	/* an octet >= 0x80 anywhere */
	bool		 hdr_eightbit;	/* ... in the header section (needs SMTPUTF8) */
};

/*
 * Builds the message to submit from the CRLF text read on stdin:
 *  - a first line "From " (an mbox envelope line) is dropped;
 *  - Bcc: and Resent-Bcc: fields are removed (always: left in, they would
 *    show every recipient the blind copies);
 *  - without a From: field, "From: <sender>" is added, or with fullname
 *    "From: NAME <sender>" (NAME quoted, or RFC 2047-encoded if not ASCII);
 *    nothing is added for the null sender;
 *  - the header section always ends with an empty line, inserted when the
 *    text had none (no header at all, or the body began at once).
 * With rcpts (-t), the addresses of To:, Cc: and Bcc: are added to it, or
 * those of Resent-To:, Resent-Cc: and Resent-Bcc: if any of these exist
 * (a resent message goes to its new recipients only), qualified with
 * domain.  Returns 0, or -1 with a reason in err (a malformed address).
 * out is initialised here; free it with sendmail_msg_free.
 */
int sendmail_msg_build(const char *text, size_t n, const char *sender,
    const char *fullname, const char *domain, struct sendmail_rcpts *rcpts,
    struct sendmail_msg *out, char *err, size_t errlen);
void sendmail_msg_free(struct sendmail_msg *m);

/* Appends text (CRLF lines) to out dot-stuffed, then the ".\r\n" terminator. */
void sendmail_dot_stuff(const char *text, size_t n, struct buf *out);

/* ---- exit statuses -------------------------------------------------- */

enum sendmail_stage {
	SENDMAIL_GREETING,
	SENDMAIL_EHLO,
	SENDMAIL_MAIL,
	SENDMAIL_RCPT,
	SENDMAIL_DATA,		/* the DATA command */
	SENDMAIL_EOD,		/* the reply to the end of the message */
};

/*
 * The sysexits.h status for a refusal (code not 2xx/3xx) at stage:
 * 4xx -> EX_TEMPFAIL; 5xx: at RCPT EX_NOUSER; at MAIL EX_NOPERM for a
 * policy refusal (5.7.x, e.g. the sender domain is not configured), else
 * EX_DATAERR (a bad sender address, a too large message); at the end of
 * the message EX_DATAERR; at the greeting, EHLO or DATA EX_UNAVAILABLE;
 * a code that is neither 4xx nor 5xx: EX_PROTOCOL.  enh may be NULL.
 */
int sendmail_exit_status(enum sendmail_stage stage, int code, const char *enh);

#endif
