/*
 * delivery — what an upstream's answer means for a recipient, decided in
 * one place (as Postfix's smtp_trouble.c does), and the retry arithmetic.
 * Pure functions: no I/O, no clock.
 *
 * Rules (interface.md, "SMTP towards upstreams"):
 *  - 2xx: sent.
 *  - 4xx, connection or DNS failure, timeout, TLS failure: deferred.
 *  - 5xx to MAIL, RCPT, DATA or the end of data: bounced (for the
 *    recipients it concerns).
 *  - Any 4xx/5xx to AUTH, or the configured mechanism not offered: an
 *    upstream configuration problem, deferred with 4.7.x, never bounced.
 *  - A 4xx or 5xx greeting, 421 at any point, a 4xx/5xx to EHLO/HELO or
 *    STARTTLS: deferred (the relay cannot talk to its upstream; no fault
 *    of the message).
 *  - Message larger than the upstream's SIZE: bounced 5.3.4.  Needs
 *    SMTPUTF8 the upstream lacks: bounced 5.6.7 (RFC 6531, never
 *    downgraded).
 *  - After the last attempt a deferral becomes a bounce that keeps the
 *    last attempt's 4.x.x status, except a configuration problem
 *    (authentication, a token, SendAsDenied, a domain no section routes):
 *    that is never bounced, and is retried at the schedule's longest
 *    delay until the admin fixes it (or removes the mail).
 */
#ifndef RELAYD_DELIVERY_H
#define RELAYD_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum dlv_fate { DLV_SENT = 0, DLV_DEFER, DLV_BOUNCE };

/* What a reply answered: the greeting, or the command relayd sent. */
enum dlv_stage {
	DLV_STAGE_GREETING = 0,
	DLV_STAGE_EHLO,
	DLV_STAGE_HELO,
	DLV_STAGE_STARTTLS,
	DLV_STAGE_AUTH,
	DLV_STAGE_RSET,
	DLV_STAGE_MAIL,
	DLV_STAGE_RCPT,
	DLV_STAGE_DATA,		/* the DATA command */
	DLV_STAGE_DOT,		/* the end of the message text */
};

#define DLV_REASON_MAX 512

struct dlv_status {
	enum dlv_fate	fate;
	char		dsn[16];		/* "2.0.0", "4.4.1", "5.1.1" */
	char		reason[DLV_REASON_MAX];	/* for logs and the DSN; never a secret */
	bool		config_problem;		/* auth failure etc.: log loudly */
	bool		auth_refused;		/* the upstream refused AUTH (a token it
						 * refused is not used again) */
};

/* "sent", "deferred", "bounced": the status= of the log line. */
const char *dlv_fate_name(enum dlv_fate fate);

/* Name of the command a stage answers, for "(in reply to RCPT TO command)". */
const char *dlv_stage_command(enum dlv_stage st);

/*
 * Classifies an upstream reply.  code is the 3-digit code, enh the
 * enhanced status code from the reply ("5.1.1") or NULL, text the whole
 * reply as the upstream sent it (multi-line replies joined with a space),
 * relay the "host[ip]:port" it came from.  reason becomes, for a 2xx, the
 * reply itself, otherwise "host[ip]:port said: <reply> (in reply to X
 * command)"; for AUTH, "authentication failed: <reply>"; for the greeting,
 * "host[ip]:port refused to talk to us: <reply>".
 * Without an enhanced code, one is derived from the code class (x.0.0).
 * A code other than 2xx/4xx/5xx is a protocol error: deferred, 4.5.0; so
 * is a 2xx to DATA, where only 354 lets the text go (a 2xx there is not a
 * delivery: no text was sent).
 */
void dlv_classify_reply(enum dlv_stage st, int code, const char *enh, const char *text,
    const char *relay, struct dlv_status *out);

/*
 * Words an admin can act on for replies whose meaning is known (Exchange
 * Online's, mostly), appended to st->reason as "(hint: ...)":
 *   535 5.7.139        SMTP AUTH disabled for the tenant or the mailbox
 *   535 5.7.3          with XOAUTH2: the app is not allowed to send as the
 *                      mailbox (SMTP.SendAsApp, service principal, mailbox
 *                      permission); with a password: wrong credentials
 *   5xx 5.7.30         to PLAIN/LOGIN: basic authentication is off
 *   554 5.2.252        SendAsDenied: the mailbox may not send as the sender;
 *                      a configuration problem, so deferred (4.2.252, loud),
 *                      not bounced
 * xoauth2: the upstream authenticates with auth = "xoauth2".
 */
void dlv_explain(struct dlv_status *st, enum dlv_stage stage, int code, const char *enh,
    bool xoauth2);

/*
 * What went wrong outside a reply, as the place that saw it names it; what
 * it means for the recipients (fate, status code, whether it is the
 * admin's to fix) is decided here alone, as Postfix's smtp_trouble.c does,
 * never by the call site.  Which recipients it concerns (the session's,
 * the message's) is the call site's to say.
 */
enum dlv_trouble {
	DLV_T_DNS = 0,		/* the upstream's name does not resolve: 4.4.3 */
	DLV_T_CONNECT,		/* no address took the connection: 4.4.1 */
	DLV_T_TLS,		/* handshake or certificate failed: 4.7.5 */
	DLV_T_NO_STARTTLS,	/* tls = "starttls", not offered: 4.7.4, config */
	DLV_T_NO_AUTH,		/* the configured mechanism not offered: 4.7.0, config */
	DLV_T_TIMEOUT,		/* no reply, or the text did not drain, in time: 4.4.2 */
	DLV_T_LOST,		/* the upstream closed the connection: 4.4.2 */
	DLV_T_PROTOCOL,		/* a reply that breaks the protocol: 4.5.0 */
	DLV_T_TOO_BIG,		/* larger than the upstream's SIZE: bounced 5.3.4 */
	DLV_T_NEEDS_SMTPUTF8,	/* the upstream lacks SMTPUTF8: bounced 5.6.7 */
	DLV_T_SPOOL,		/* the message cannot be read from the spool: 4.3.0 */
	DLV_T_UNROUTABLE,	/* no domain section for it (any more): 4.3.5, config */
	DLV_T_UNSIGNED,		/* it cannot be signed again: 4.7.0, config */
	DLV_T_TOKEN,		/* no OAuth 2.0 token could be had: 4.7.0, config */
};

/* reason: words an admin can act on, for the log and the DSN. */
void dlv_trouble(enum dlv_trouble what, const char *reason, struct dlv_status *out);

/* Seconds to wait after the attempts_made-th attempt failed:
 * delay * backoff^(attempts_made - 1), capped at max_delay. */
int64_t dlv_retry_delay(const struct cfg_retry *r, unsigned attempts_made);

/* Turns a deferral after the last allowed attempt into a bounce, keeping
 * the dsn, unless it is a configuration problem; no-op otherwise.  Returns
 * true if it did. */
bool dlv_final(const struct cfg_retry *r, unsigned attempts_made, struct dlv_status *st);

#endif
