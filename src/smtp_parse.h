/*
 * smtp_parse — the SMTP command grammar towards applications, as pure
 * functions over one command line (without its CRLF).  Every failure comes
 * back as a complete reply line ("501 5.1.3 ...") so that the session only
 * has to send it.  The session decides ordering (503) and limits.
 */
#ifndef RELAYD_SMTP_PARSE_H
#define RELAYD_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

enum smtp_cmd {
	SMTP_CMD_UNKNOWN = 0,
	SMTP_CMD_HELO,
	SMTP_CMD_EHLO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_HELP,
	SMTP_CMD_VRFY,
	SMTP_CMD_EXPN,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
	SMTP_CMD_BDAT,
};

struct smtp_command {
	enum smtp_cmd	 cmd;
	const char	*verb;	/* points into the line */
	size_t		 verblen;
	const char	*arg;	/* after the verb and one or more spaces; "" if none */
	size_t		 arglen;
};

/* Splits a command line into verb and argument; recognises verbs
 * case-insensitively.  Never fails: an unrecognised verb is SMTP_CMD_UNKNOWN. */
void smtp_parse_command(const char *line, size_t len, struct smtp_command *out);

enum smtp_body { SMTP_BODY_UNSPEC = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

struct smtp_mail_args {
	char		addr[ADDR_PATH_MAX + 1];	/* "" for <> */
	uint64_t	size;		/* SIZE= value, 0 if absent */
	bool		has_size;
	enum smtp_body	body;
	bool		smtputf8;
};

/*
 * Parses the argument of MAIL ("FROM:<a@b> SIZE=123 BODY=8BITMIME SMTPUTF8").
 * Accepts "FROM:" case-insensitively, with no space before '<' per RFC 5321
 * (one space tolerated, as Postfix does).  Unknown parameters are 555 5.5.4.
 * Returns true with *out filled, or false with *reply set to a static reply
 * line without CRLF.
 */
bool smtp_parse_mail(const char *arg, size_t len, struct smtp_mail_args *out,
    const char **reply);

struct smtp_rcpt_args {
	char	addr[ADDR_PATH_MAX + 1];
};

/* Parses the argument of RCPT ("TO:<a@b>"); smtputf8 says whether MAIL
 * carried SMTPUTF8.  "<postmaster>" without domain is accepted as RFC 5321
 * requires and returned as "postmaster".  Same return convention. */
bool smtp_parse_rcpt(const char *arg, size_t len, bool smtputf8,
    struct smtp_rcpt_args *out, const char **reply);

/* Validates a HELO/EHLO argument (a domain or address literal); returns
 * false with *reply ("501 5.5.4 ...") if empty or malformed. */
bool smtp_parse_helo(const char *arg, size_t len, const char **reply);

#endif
