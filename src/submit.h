/*
 * submit — one SMTP submission to relayd (see submit.c): the client of
 * relayd-sendmail and of `relayctl test`.
 */
#ifndef RELAYD_SUBMIT_H
#define RELAYD_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "net.h"
#include "sendmail_opts.h"

struct submit_job {
	const char			*prog;		/* for messages, e.g. "relayd-sendmail" */
	const char			*helo;
	const char			*sender;	/* "" for the null sender */
	const struct sendmail_rcpts	*rcpts;
	const struct sendmail_msg	*msg;		/* the text, CRLF, not dot-stuffed */
	bool				 verbose;	/* the dialogue on stderr */
	char				*qid;		/* out: the queue id of the (last) 250, or NULL */
	size_t				 qidlen;
};

/*
 * Submits the message.  Recipients the relay defers with 452 (too many
 * recipients) after it accepted some go in a further transaction (RFC 5321
 * 3.3).  Returns 0 if every recipient and the message were accepted, else
 * the sysexits.h status of the first failure (each failure on stderr).
 */
int submit_message(const struct hostport *hp, const struct submit_job *job);

#endif
