/*
 * bounce — composes delivery status notifications (RFC 3464
 * multipart/report; report-type=delivery-status) for recipients that
 * failed for good.  Pure: builds text, sends nothing.
 *
 * The DSN goes to the original envelope sender with a null sender (MAIL
 * FROM:<>) through the upstream of the original sender's domain; the caller
 * does that.  Never called for a null original sender.
 */
#ifndef RELAYD_BOUNCE_H
#define RELAYD_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct bounce_rcpt {
	const char	*addr;		/* the recipient */
	const char	*dsn;		/* "5.1.1" or the last "4.x.x" */
	const char	*diagnostic;	/* the upstream's reply, or relayd's reason */
	const char	*remote_mta;	/* upstream host name, or NULL if never reached */
	int64_t		 last_attempt;	/* unix seconds */
	unsigned	 attempts;
};

struct bounce_msg {
	const char		*hostname;	/* Reporting-MTA, From: MAILER-DAEMON@hostname */
	const char		*qid;		/* the original's queue id */
	int64_t			 arrival;	/* unix seconds */
	const char		*sender;	/* original envelope sender, the DSN's recipient */
	const struct bounce_rcpt *rcpts;
	size_t			 nrcpt;
	const char		*headers;	/* the original's header block (CRLF lines), or NULL */
	size_t			 headerslen;
	int64_t			 now;		/* unix seconds: Date: and the MIME boundary */
	const char		*new_qid;	/* the DSN's own queue id, for Message-ID */
};

/*
 * Appends the complete DSN message (header + body, CRLF line ends, no line
 * over 998 octets, 7-bit unless the original headers are 8-bit, in which
 * case the third part is message/global-headers per RFC 6533) to out.
 * UTF-8 addresses are written as they are in To: and the text part
 * (charset utf-8), and as RFC 6533 utf-8-addr-xtext in Final-Recipient.
 */
void bounce_compose(const struct bounce_msg *m, struct buf *out);

#endif
