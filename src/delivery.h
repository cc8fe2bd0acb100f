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
 *    last attempt's 4.x.x status.
 */
#ifndef RELAYD_DELIVERY_H
#define RELAYD_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum dlv_fate { DLV_SENT = 0, DLV_DEFER, DLV_BOUNCE };

/* Where in the dialogue an answer or failure came. */
enum dlv_stage {
	DLV_STAGE_DNS = 0,
	DLV_STAGE_CONNECT,
	DLV_STAGE_GREETING,
	DLV_STAGE_EHLO,
	DLV_STAGE_STARTTLS,
	DLV_STAGE_TLS,		/* handshake or certificate */
	DLV_STAGE_AUTH,
	DLV_STAGE_MAIL,
	DLV_STAGE_RCPT,
	DLV_STAGE_DATA,		/* the DATA command */
	DLV_STAGE_DOT,		/* the end of the message text */
	DLV_STAGE_LOCAL,	/* relayd's own check (SIZE, SMTPUTF8, spool read) */
};

#define DLV_REASON_MAX 512

struct dlv_status {
	enum dlv_fate	fate;
	char		dsn[16];		/* "2.0.0", "4.4.1", "5.1.1" */
	char		reason[DLV_REASON_MAX];	/* for logs and the DSN; never a secret */
	bool		config_problem;		/* auth failure etc.: log loudly */
};

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
 * A code other than 2xx/4xx/5xx is a protocol error: deferred, 4.5.0.
 */
void dlv_classify_reply(enum dlv_stage st, int code, const char *enh, const char *text,
    const char *relay, struct dlv_status *out);

/* A failure before or outside a reply (connect refused, DNS, timeout, TLS,
 * local checks): fate and dsn given by the caller, reason as written. */
void dlv_local(enum dlv_fate fate, const char *dsn, const char *reason, struct dlv_status *out);

/* Seconds to wait after the attempts_made-th attempt failed:
 * delay * backoff^(attempts_made - 1), capped at max_delay. */
int64_t dlv_retry_delay(const struct cfg_retry *r, unsigned attempts_made);

/* Turns a deferral after the last allowed attempt into a bounce, keeping
 * the dsn; no-op otherwise.  Returns true if it did. */
bool dlv_final(const struct cfg_retry *r, unsigned attempts_made, struct dlv_status *st);

#endif
