/*
 * smtp_server — SMTP sessions towards local applications.
 *
 * Each client is a struct smtp_session driven by an explicit state.  The
 * input loop takes one command line at a time out of the bufferevent and
 * handles it in two steps, check (syntax, order, limits: on failure send
 * the reply and change nothing) and proceed, so that PIPELINING works by
 * construction: replies are appended in command order, however many
 * commands arrived in one read and wherever a read boundary fell.
 *
 * Bounded memory whatever the client does:
 *  - input is read up to IN_HIGH bytes ahead; a command line longer than
 *    LINE_MAX is answered 500 5.5.2 and discarded as it streams in;
 *  - once OUT_HIGH bytes of replies wait unread, input processing stops
 *    until the client reads (a client that never reads stalls only itself);
 *  - message text goes through the data decoder into a spool body, which
 *    spills to a temporary file past a small size, and stops growing at
 *    max_message_size;
 *  - of the header, only the fields a signature covers are kept until its
 *    end (dkim_hdrs: 100 KB together at most); the others stream through.
 *
 * Bounded time, too: a command line must arrive whole within `timeout`
 * seconds of the reply before it, however busily it trickles in (each octet
 * restarting a timer would let a client dripping a byte a second hold its
 * session for ever), and message text must keep coming at DATA_MIN_RATE
 * octets a second on average: each octet buys 1/DATA_MIN_RATE s more, never
 * more than `timeout` ahead (Postfix's smtpd_per_request_deadline and
 * smtpd_min_data_rate).  Silence for `timeout` ends a session as before.
 *
 * The reply to the end of DATA is sent only from the spool's commit
 * callback, i.e. once the message is durably on disk.
 */
#include "acconfig.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "addr.h"
#include "data.h"
#include "dkim.h"
#include "log.h"
#include "msghdr.h"
#include "net.h"
#include "qid.h"
#include "router.h"
#include "smtp_parse.h"
#include "smtp_server.h"
#include "util.h"
#include "workers.h"

#define LINE_MAX_OCTETS	2048		/* command line incl. CRLF (Postfix: 2048) */
#define DATA_LINE_MAX	998		/* RFC 5322 2.1.1, see data.h */
#define IN_HIGH		(64u << 10)	/* read-ahead per session */
#define OUT_HIGH	(16u << 10)	/* unread replies before input pauses */
#define OUT_LOW		(4u << 10)
#define HARD_ERROR_LIMIT 20		/* errors before 421 (Postfix smtpd_hard_error_limit) */
#define REPLY_MAX	512		/* a reply line with its CRLF (RFC 5321 4.5.3.1.5) */
#define DATA_MIN_RATE	500		/* octets/s of message text (Postfix's default) */
/* to a client over max_clients or short of descriptors, in place of the greeting */
#define BUSY_REPLY	"421 4.7.0 %s Error: too many connections, try again later"
#define FD_KEEP_MIN	64		/* descriptors relayd keeps for itself (see fd_room) */

enum smtp_state {
	SS_INIT,	/* greeted, no HELO/EHLO yet */
	SS_IDLE,	/* HELO/EHLO done, no transaction */
	SS_MAIL,	/* MAIL accepted */
	SS_RCPT,	/* at least one RCPT accepted */
	SS_DATA,	/* receiving message text */
	SS_SIGNING,	/* the DKIM signatures are computed while the spool
			 * makes the message durable (see data_end) */
	SS_COMMIT,	/* waiting for the spool */
	SS_CLOSING,	/* flushing the last reply, then closing */
};

struct smtp_session {
	struct smtp_server	*srv;
	struct config		*cfg;		/* a reference: the snapshot it started with */
	struct bufferevent	*bev;
	struct smtp_session	*prev, *next;

	char			 ip[64];
	char			 name[16];	/* "localhost" or "unknown" */
	uint16_t		 port;
	char			 helo[256];
	bool			 esmtp;
	enum smtp_state		 state;
	bool			 discarding;	/* inside an over-long command line */
	bool			 eof;		/* client gone while the spool works */
	bool			 paused;	/* waiting for the client to read */
	unsigned		 errors;
	struct event		*deadline_ev;	/* the client's time to send more is up */
	int64_t			 deadline;	/* when (CLOCK_MONOTONIC, us) */
	uint64_t		 lines;		/* command lines taken so far */
	uint64_t		 data_octets;	/* octets of message text taken so far */

	/* the transaction */
	char			 id[QID_SIZE];
	struct smtp_mail_args	 mail;
	char			**rcpts;
	size_t			 nrcpt;
	bool			 rcpt_tried;	/* a RCPT came, accepted or not */
	struct data_dec		 dec;
	struct hdrsplit		 hdr;		/* splits the text into fields and body */
	struct dkim_hdrs	 hdrs;		/* the fields signing and routing need,
						 * until the end of the header */
	bool			 in_body;
	struct buf		 added;		/* Date:/Message-ID: fields relayd adds */
	struct dkim_signer	*signer;	/* NULL: not signing */
	const char		*reject;	/* a reply decided while receiving */
	struct buf		 sigs;		/* DKIM-Signature fields, once computed */
	int			 sign_error;
	char			 sign_reason[256];
	struct spool_body	*body;		/* NULL once handed to the spool */
	struct spool_envelope	*env;		/* being committed */
	struct buf		 prefix;
	/* SS_SIGNING: the signing and the commit, each reporting on the loop */
	unsigned		 pending;	/* of the two, still running */
	int			 commit_error;
	struct spool_loc	 commit_loc;
};

struct smtp_server {
	struct event_base	*base;
	struct config		*cfg;		/* a reference */
	struct spool		*spool;
	struct queue		*queue;
	struct workers		*workers;
	struct smtp_session	*sessions;
	size_t			 nsessions;
	bool			 shutting_down;
};

static void session_process(struct smtp_session *s);
static void session_free(struct smtp_session *s);
static void deadline_restart(struct smtp_session *s);

/* ---- replies ----------------------------------------------------------- */

/*
 * Every reply line leaves through here.  Some quote what a client sent (a
 * sender address, a From: domain), so the formatted text has its control
 * characters escaped as the log does (log_escape(): "\r", "\n", "\x01"):
 * a reply is one line whatever it quotes, and says what the log says.
 * Cut to REPLY_MAX with its CRLF.  A multi-line reply is one call per line.
 */
static void
reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char text[REPLY_MAX * 2], line[REPLY_MAX - 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text))
		n = (int)sizeof(text) - 1;
	evbuffer_add(out, line, log_escape(line, sizeof(line), text, (size_t)n));
	evbuffer_add(out, "\r\n", 2);
}

static void
reply_str(struct smtp_session *s, const char *line)
{
	reply(s, "%s", line);
}

/* An error reply: counts toward the hard error limit. */
static void
reply_error(struct smtp_session *s, const char *line)
{
	reply_str(s, line);
	if (++s->errors >= HARD_ERROR_LIMIT && s->state != SS_CLOSING) {
		log_info("too many errors from %s[%s]:%u, disconnecting", s->name, s->ip,
		    s->port);
		reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
		s->state = SS_CLOSING;
	}
}

/* Sends a final reply and closes once it has left the buffer. */
static void
session_close_after(struct smtp_session *s, const char *line)
{
	reply_str(s, line);
	s->state = SS_CLOSING;
}

/* ---- transaction ------------------------------------------------------- */

static void
txn_reset(struct smtp_session *s)
{
	for (size_t i = 0; i < s->nrcpt; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpt = 0;
	s->rcpt_tried = false;
	spool_body_free(s->body);
	s->body = NULL;
	msghdr_free(&s->hdr);
	dkim_hdrs_free(&s->hdrs);
	dkim_hdrs_init(&s->hdrs);
	s->in_body = false;
	buf_free(&s->added);
	buf_free(&s->sigs);
	dkim_signer_free(s->signer);
	s->signer = NULL;
	s->reject = NULL;
	s->sign_error = 0;
	spool_envelope_free(s->env);
	s->env = NULL;
	buf_free(&s->prefix);
	memset(&s->mail, 0, sizeof(s->mail));
	s->id[0] = '\0';
}

/* ---- commands ---------------------------------------------------------- */

static void
cmd_helo(struct smtp_session *s, const struct smtp_command *c, bool esmtp)
{
	const char *err;

	if (!smtp_parse_helo(c->arg, c->arglen, &err)) {
		reply_error(s, err);
		return;
	}
	txn_reset(s);
	snprintf(s->helo, sizeof(s->helo), "%.*s", (int)c->arglen, c->arg);
	s->esmtp = esmtp;
	s->state = SS_IDLE;
	if (!esmtp) {
		reply(s, "250 %s", s->cfg->hostname);
		return;
	}
	reply(s, "250-%s", s->cfg->hostname);
	reply_str(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)s->cfg->max_message_size);
	reply_str(s, "250-8BITMIME");
	reply_str(s, "250-ENHANCEDSTATUSCODES");
	reply_str(s, "250 SMTPUTF8");
}

static void
cmd_mail(struct smtp_session *s, const struct smtp_command *c)
{
	const char *err;
	struct smtp_mail_args m;

	/* check */
	if (s->state == SS_INIT) {
		reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->state != SS_IDLE) {
		reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (!smtp_parse_mail(c->arg, c->arglen, &m, &err)) {
		reply_error(s, err);
		return;
	}
	if (m.has_size && m.size > s->cfg->max_message_size) {
		reply_error(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (m.addr[0] != '\0') {
		const char *dom = addr_domain(m.addr);

		if (router_lookup(s->cfg, dom) == NULL) {
			log_info("reject: MAIL from %s[%s]:%u: sender domain %s not configured, from=<%s>",
			    s->name, s->ip, s->port, dom, m.addr);
			reply(s, "550 5.7.1 <%s>: Sender address rejected: domain %s is not "
			    "configured on this relay", m.addr, dom);
			if (++s->errors >= HARD_ERROR_LIMIT) {
				reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
				s->state = SS_CLOSING;
			}
			return;
		}
	}
	/* proceed */
	s->mail = m;
	qid_next(s->id);
	s->state = SS_MAIL;
	log_info("%s: client=%s[%s]:%u", s->id, s->name, s->ip, s->port);
	reply_str(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct smtp_session *s, const struct smtp_command *c)
{
	const char *err;
	struct smtp_rcpt_args r;

	if (s->state != SS_MAIL && s->state != SS_RCPT) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	s->rcpt_tried = true;
	if (!smtp_parse_rcpt(c->arg, c->arglen, s->mail.smtputf8, &r, &err)) {
		reply_error(s, err);
		return;
	}
	for (size_t i = 0; i < s->nrcpt; i++) {
		if (strcmp(s->rcpts[i], r.addr) == 0) {
			/* A duplicate gets one copy, as Postfix's cleanup does. */
			reply_str(s, "250 2.1.5 Ok");
			return;
		}
	}
	if (s->nrcpt >= (size_t)s->cfg->max_recipients) {
		reply_str(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	s->rcpts = xrealloc(s->rcpts, (s->nrcpt + 1) * sizeof(*s->rcpts));
	s->rcpts[s->nrcpt++] = xstrdup(r.addr);
	s->state = SS_RCPT;
	reply_str(s, "250 2.1.5 Ok");
}

/*
 * A piece of a header field: to the spool at once, like all the text, and
 * to the keeper, which keeps only what signing and routing need: whose
 * keys sign is known only at the end of the header (the From: domain's).
 */
static void
field_out(void *ctx, const char *p, size_t n, unsigned flags)
{
	struct smtp_session *s = ctx;

	dkim_hdrs_add(&s->hdrs, p, n, flags);
	if (n > 0)
		(void)spool_body_write(s->body, p, n);
}

/* The domain section whose keys sign: the From: domain's (DMARC checks
 * that one).  NULL if it has no keys. */
static const struct cfg_domain *
signing_section(const struct smtp_session *s)
{
	return router_signing_section(s->cfg, s->hdrs.from_domain);
}

/* Would this message be signed if its From: were right?  (The sender's
 * own domain has keys, or the first From: domain's has.) */
static bool
signing_expected(const struct smtp_session *s)
{
	const char *dom = s->mail.addr[0] ? addr_domain(s->mail.addr) : s->hdrs.from_domain;
	const struct cfg_domain *d = router_lookup(s->cfg, dom);

	return (d && d->ndkim > 0) || signing_section(s) != NULL;
}

/* The end of the header: decide about signing and start it. */
static void
header_end(struct smtp_session *s)
{
	const struct dkim_hdrs *h = &s->hdrs;
	char err[256];

	/* RFC 5322 3.6: a Date: and a Message-ID: (added, as Postfix does for
	 * local submissions, so that the signature covers them too) */
	if (!h->has_date) {
		char date[64];

		rfc5322_date(now_us() / 1000000, date, sizeof(date));
		buf_printf(&s->added, "Date: %s\r\n", date);
	}
	if (!h->has_msgid)
		buf_printf(&s->added, "Message-ID: <%s@%s>\r\n", s->id, s->cfg->hostname);
	if (h->from_lost || (h->overflow && signing_expected(s))) {
		/* too much to sign, or the From: to route or sign by was
		 * beyond the bound: nothing sure to go on */
		s->reject = "552 5.3.4 Error: header fields to sign (From:, To:, Cc:, Subject:, "
		    "...) too large: over 100 KB together";
		return;
	}
	if (!signing_expected(s))
		return;
	if (h->nfrom != 1) {
		s->reject = h->nfrom == 0 ?
		    "550 5.6.0 Error: message has no From: header; it cannot be signed (RFC 5322 "
		    "3.6 requires exactly one)" :
		    "550 5.6.0 Error: message has more than one From: header; it cannot be signed "
		    "(RFC 5322 3.6 requires exactly one)";
		return;
	}
	const struct cfg_domain *d = signing_section(s);
	if (d == NULL) {
		/* the sender's domain signs, but the From: domain has no keys:
		 * not ours to sign, relayed unsigned as the admin configured */
		return;
	}
	s->signer = dkim_signer_new(s->cfg->dkim, d, h->from_domain, s->id, err, sizeof(err));
	if (s->signer == NULL) {
		s->sign_error = 1;
		snprintf(s->sign_reason, sizeof(s->sign_reason), "%s", err);
		return;
	}
	/* the added fields first (they precede the client's in the text) */
	const char *p = s->added.p, *end = s->added.p + s->added.len;
	while (p && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);

		(void)dkim_signer_header(s->signer, p, n);
		p += n;
	}
	/* then the client's that the signature covers, in their order */
	(void)dkim_signer_hdrs(s->signer, h);
	dkim_hdrs_free(&s->hdrs);
}

static void
eoh_out(void *ctx, const char *p, size_t n)
{
	struct smtp_session *s = ctx;

	s->in_body = true;
	header_end(s);
	(void)spool_body_write(s->body, p, n);
}

static void
text_out(void *ctx, const char *p, size_t n)
{
	struct smtp_session *s = ctx;

	if (s->signer)
		(void)dkim_signer_body(s->signer, p, n);
	(void)spool_body_write(s->body, p, n);
}

/* The decoder's output goes through the header splitter to the body. */
static void
data_out(void *ctx, const char *p, size_t n)
{
	struct smtp_session *s = ctx;

	msghdr_feed(&s->hdr, p, n);
}

static void
cmd_data(struct smtp_session *s, const struct smtp_command *c)
{
	char date[64];

	if (s->state == SS_MAIL && s->rcpt_tried) {
		/* RCPTs came but none was accepted (Postfix's wording). */
		reply_error(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->state != SS_RCPT) {
		reply_error(s, "503 5.5.1 Error: need RCPT command");
		return;
	}
	if (c->arglen > 0) {
		reply_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	s->body = spool_body_new(s->srv->spool);
	data_dec_init(&s->dec, data_out, s, DATA_LINE_MAX, s->cfg->max_message_size);
	struct msghdr_cb hcb = { field_out, eoh_out, text_out, s };
	msghdr_init(&s->hdr, &hcb);

	/* The trace header this relay adds (RFC 5321 4.4); "for" only when it
	 * names the single recipient, as Postfix does. */
	rfc5322_date(now_us() / 1000000, date, sizeof(date));
	buf_init(&s->prefix);
	buf_printf(&s->prefix, "Received: from %.200s (%s [%s])\r\n\tby %s (relayd) with %s id %s",
	    s->helo, s->name, s->ip, s->cfg->hostname,
	    s->mail.smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP", s->id);
	if (s->nrcpt == 1)
		buf_printf(&s->prefix, "\r\n\tfor <%s>", s->rcpts[0]);
	buf_printf(&s->prefix, "; %s\r\n", date);

	s->state = SS_DATA;
	reply_str(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* The message is durable (error 0) or could not be queued: the reply. */
static void
commit_finished(struct smtp_session *s, int error, const struct spool_loc *loc)
{
	if (error != 0) {
		log_err("%s: cannot queue message from %s[%s]:%u: %s", s->id, s->name, s->ip,
		    s->port, strerror(error));
		if (!s->eof)
			reply_str(s, error == EFBIG ?
			    "552 5.3.4 Error: message file too big" :
			    "452 4.3.1 Insufficient system storage");
	} else {
		struct spool_envelope *env = s->env;

		s->env = NULL;
		env->loc = *loc;
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu, dkim=%s", env->id, env->sender,
		    (unsigned long long)spool_envelope_size(env), env->nrcpt,
		    s->signer ? dkim_signer_selectors(s->signer) : "none");
		queue_add(s->srv->queue, env);
		if (!s->eof)
			reply(s, "250 2.0.0 Ok: queued as %s", s->id);
	}
	txn_reset(s);
	if (s->eof) {
		session_free(s);
		return;
	}
	s->state = SS_IDLE;
	if (s->srv->shutting_down) {
		session_close_after(s, "421 4.3.2 Service shutting down, closing transmission channel");
		return;
	}
	deadline_restart(s);
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

static void sign_joined(struct smtp_session *s);

/* The spool's callback: a commit finished (for a signed message, one of
 * its two paths). */
static void
committed(void *arg, int error, const struct spool_loc *loc)
{
	struct smtp_session *s = arg;

	if (s->state != SS_SIGNING) {
		commit_finished(s, error, loc);
		return;
	}
	s->commit_error = error;
	if (error == 0)
		s->commit_loc = *loc;
	if (--s->pending == 0)
		sign_joined(s);
}

/* Builds the envelope of the message just received (s->env). */
static void
build_envelope(struct smtp_session *s)
{
	struct spool_envelope *env = spool_envelope_new();
	const char *dom = s->mail.addr[0] ? addr_domain(s->mail.addr) : s->hdrs.from_domain;
	const struct cfg_domain *d = router_lookup(s->cfg, dom);
	const char *bcc = d ? d->bcc : NULL;

	memcpy(env->id, s->id, QID_SIZE);
	if (s->mail.addr[0] == '\0' && s->hdrs.from_domain[0] != '\0')
		env->route = xstrdup(s->hdrs.from_domain);
	env->arrival = now_us();
	env->sender = xstrdup(s->mail.addr);
	env->flags = (s->dec.eightbit || s->mail.body == SMTP_BODY_8BITMIME ? SPOOL_F_8BIT : 0) |
	    (s->mail.smtputf8 ? SPOOL_F_SMTPUTF8 : 0);
	env->rcpts = xcalloc(s->nrcpt + 1, sizeof(*env->rcpts));
	for (size_t i = 0; i < s->nrcpt; i++) {
		env->rcpts[env->nrcpt++].addr = xstrdup(s->rcpts[i]);
		if (bcc && ascii_strcasecmp(s->rcpts[i], bcc) == 0)
			bcc = NULL;
	}
	/* the domain's archive copy: a recipient like any other */
	if (bcc)
		env->rcpts[env->nrcpt++].addr = xstrdup(bcc);
	s->env = env;
}

/*
 * Hands s->env, what relayd adds before the client's text (trace, missing
 * Date:/Message-ID:) and the body to the spool; committed() follows on the
 * event loop.  (Signatures are not part of it: they are computed
 * meanwhile, see data_end.)
 */
static void
submit_message(struct smtp_session *s)
{
	struct spool_body *body = s->body;
	struct buf prefix;

	buf_init(&prefix);
	buf_add(&prefix, s->prefix.p, s->prefix.len);
	if (s->added.len)
		buf_add(&prefix, s->added.p, s->added.len);
	s->body = NULL;		/* the spool owns it now */
	spool_commit_message(s->srv->spool, s->env, prefix.p, prefix.len, body, committed, s);
	buf_free(&prefix);
}

/* An unsigned message: straight to the spool. */
static void
commit_message(struct smtp_session *s)
{
	build_envelope(s);
	s->state = SS_COMMIT;
	bufferevent_disable(s->bev, EV_READ);
	submit_message(s);
}

/* A worker thread (or the loop, see sign_here): the private-key operations.
 * It touches only the signer, s->sigs and the sign_* fields; the loop
 * leaves those alone meanwhile. */
static bool
sign_work(void *arg)
{
	struct smtp_session *s = arg;

	buf_init(&s->sigs);
	if (dkim_signer_finish(s->signer, &s->sigs, s->sign_reason, sizeof(s->sign_reason)) < 0)
		s->sign_error = 1;
	return true;
}

/* Event loop: the worker is done. */
static void
sign_done(void *arg)
{
	struct smtp_session *s = arg;

	if (--s->pending == 0)
		sign_joined(s);
}

/* Event loop: a message that was durable but could not be signed is
 * retired again; now the 451. */
static void
sign_failed_retired(void *arg, int error, const struct spool_loc *loc)
{
	struct smtp_session *s = arg;

	(void)loc;
	if (error != 0)
		log_err("%s: cannot retire the unsigned message from the spool: %s; should relayd "
		    "restart before its spool segment is deleted, it would be signed again and "
		    "sent, although its client was told 451", s->id, strerror(error));
	spool_envelope_free(s->env);
	s->env = NULL;
	txn_reset(s);
	if (s->eof) {
		session_free(s);
		return;
	}
	reply_str(s, "451 4.7.0 Error: DKIM signing failed, try again later");
	s->state = SS_IDLE;
	deadline_restart(s);
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

/* Event loop: both paths of a signed message are done. */
static void
sign_joined(struct smtp_session *s)
{
	if (s->sign_error) {
		log_err("%s: DKIM signing failed: %s; not accepted (mail from a domain with keys "
		    "is never relayed unsigned)", s->id, s->sign_reason);
		if (s->commit_error == 0) {
			/* on disk already: take it back before answering */
			s->env->loc = s->commit_loc;
			s->state = SS_COMMIT;
			spool_commit_done(s->srv->spool, s->env, sign_failed_retired, s);
			return;
		}
		sign_failed_retired(s, 0, NULL);
		return;
	}
	if (s->commit_error == 0) {
		/* the envelope carries the signatures until their own record
		 * is durable (queue_add writes it) */
		s->env->sigs = s->sigs.p;
		s->env->siglen = s->sigs.len;
		buf_init(&s->sigs);
	}
	commit_finished(s, s->commit_error, &s->commit_loc);
}

/*
 * Whether to sign on the event loop itself: when this is the only client
 * and no delivery is under way, the loop has nothing else to do while the
 * signature is computed (0.25 ms for RSA-2048), and handing it to a worker
 * only adds two thread wake-ups to the client's wait (0.05-0.08 ms each way
 * on a 2-vCPU VM: 350 instead of 390-500 us from the end of DATA to the 250
 * here).  Whatever arrives meanwhile (a new client, relayctl, a timer)
 * waits that long.  With other sessions or deliveries under way the
 * workers sign, on every core, and the loop stays free for them.
 */
static bool
sign_here(const struct smtp_session *s)
{
	return s->srv->nsessions == 1 && queue_active(s->srv->queue) == 0;
}

static void
data_end(struct smtp_session *s)
{
	msghdr_finish(&s->hdr);
	if (!s->in_body) {
		/* the text ended inside the header: the header ends here */
		s->in_body = true;
		header_end(s);
	}
	int err = spool_body_error(s->body);

	if (s->dec.overflow) {
		log_info("%s: reject: message from %s[%s]:%u larger than max_message_size (%llu)",
		    s->id, s->name, s->ip, s->port, (unsigned long long)s->cfg->max_message_size);
		reply_error(s, "552 5.3.4 Error: message file too big");
		goto reset;
	}
	if (err != 0) {
		log_err("%s: cannot receive message from %s[%s]:%u: spool %s: %s", s->id, s->name,
		    s->ip, s->port, s->cfg->spool, strerror(err));
		reply_str(s, "452 4.3.1 Insufficient system storage");
		goto reset;
	}
	if (s->reject) {
		log_info("%s: reject: message from %s[%s]:%u: %s%s%s%s", s->id, s->name, s->ip,
		    s->port, s->reject + 10, s->hdrs.overflow ? " (the first over it: " : "",
		    s->hdrs.too_long, s->hdrs.overflow ? ")" : "");
		reply_str(s, s->reject);
		goto reset;
	}

	/* A null sender is routed by the From: domain (else the catch-all):
	 * refuse now what could never be routed. */
	if (s->mail.addr[0] == '\0' && router_lookup(s->cfg, s->hdrs.from_domain) == NULL) {
		log_info("%s: reject: null-sender message from %s[%s]:%u: From: domain %s is not "
		    "configured", s->id, s->name, s->ip, s->port,
		    s->hdrs.from_domain[0] ? s->hdrs.from_domain : "(none)");
		reply(s, "550 5.7.1 Error: null sender, and the From: domain %s is not configured "
		    "on this relay", s->hdrs.from_domain[0] ? s->hdrs.from_domain : "(none)");
		goto reset;
	}
	if (s->sign_error) {
		log_err("%s: DKIM signing failed: %s; not accepted (mail from a domain with keys "
		    "is never relayed unsigned)", s->id, s->sign_reason);
		reply_str(s, "451 4.7.0 Error: DKIM signing failed, try again later");
		goto reset;
	}
	if (s->signer) {
		/*
		 * Both at once: the signatures are computed (0.25 ms for
		 * RSA-2048; on a worker, or see sign_here) while the spool
		 * makes the message durable without them (an fdatasync,
		 * 0.1-0.3 ms), so the client waits for the slower of the two
		 * instead of both.  The signatures follow in
		 * a SIG record of their own (SPOOL_F_SIGPEND), written with the
		 * next commit; a crash before that means signing again, never
		 * sending unsigned.  The 250 waits for both.
		 */
		build_envelope(s);
		s->env->flags |= SPOOL_F_SIGPEND;
		s->state = SS_SIGNING;
		s->pending = 2;
		s->commit_error = 0;
		bufferevent_disable(s->bev, EV_READ);
		if (sign_here(s)) {
			submit_message(s);	/* the committer starts first */
			(void)sign_work(s);
			sign_done(s);		/* the commit reports later */
			return;
		}
		workers_submit(s->srv->workers, sign_work, sign_done, s);
		submit_message(s);
		return;
	}
	commit_message(s);
	return;
reset:
	txn_reset(s);
	s->state = SS_IDLE;
}

static void
session_command(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_command c;

	smtp_parse_command(line, len, &c);
	switch (c.cmd) {
	case SMTP_CMD_HELO:
		cmd_helo(s, &c, false);
		break;
	case SMTP_CMD_EHLO:
		cmd_helo(s, &c, true);
		break;
	case SMTP_CMD_MAIL:
		cmd_mail(s, &c);
		break;
	case SMTP_CMD_RCPT:
		cmd_rcpt(s, &c);
		break;
	case SMTP_CMD_DATA:
		cmd_data(s, &c);
		break;
	case SMTP_CMD_RSET:
		if (c.arglen > 0) {
			reply_error(s, "501 5.5.4 Syntax: RSET");
			break;
		}
		txn_reset(s);
		if (s->state != SS_INIT)
			s->state = SS_IDLE;
		reply_str(s, "250 2.0.0 Ok");
		break;
	case SMTP_CMD_NOOP:
		reply_str(s, "250 2.0.0 Ok");
		break;
	case SMTP_CMD_QUIT:
		session_close_after(s, "221 2.0.0 Bye");
		break;
	case SMTP_CMD_HELP:
		reply_str(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY");
		break;
	case SMTP_CMD_VRFY:
		reply_str(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
		break;
	case SMTP_CMD_EXPN:
	case SMTP_CMD_STARTTLS:
	case SMTP_CMD_AUTH:
	case SMTP_CMD_BDAT:
		reply_error(s, "502 5.5.1 Error: command not implemented");
		break;
	case SMTP_CMD_UNKNOWN:
	default:
		reply_error(s, "500 5.5.1 Error: command not recognized");
		break;
	}
}

/* ---- input loop -------------------------------------------------------- */

/* Feeds message text to the decoder; returns false if more input is needed. */
static bool
session_data(struct smtp_session *s, struct evbuffer *in)
{
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = data_dec_feed(&s->dec, v.iov_base, v.iov_len);
		evbuffer_drain(in, used);
		s->data_octets += used;
		if (s->dec.done) {
			data_end(s);
			return true;
		}
	}
	return false;
}

/* Takes one command line out of in; returns false if none is complete. */
static bool
session_line(struct smtp_session *s, struct evbuffer *in)
{
	size_t eol_len = 0;
	struct evbuffer_ptr eol;

	if (s->discarding) {
		eol = evbuffer_search(in, "\n", 1, NULL);
		if (eol.pos < 0) {
			evbuffer_drain(in, evbuffer_get_length(in));
			return false;
		}
		evbuffer_drain(in, (size_t)eol.pos + 1);
		s->discarding = false;
		s->lines++;
		return true;
	}
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) >= LINE_MAX_OCTETS) {
			/* An unterminated line already over the limit: answer now
			 * and throw the rest away as it arrives. */
			evbuffer_drain(in, evbuffer_get_length(in));
			s->discarding = true;
			reply_error(s, "500 5.5.2 Error: line too long");
			return true;
		}
		return false;
	}
	if ((size_t)eol.pos + eol_len > LINE_MAX_OCTETS) {
		evbuffer_drain(in, (size_t)eol.pos + eol_len);
		s->lines++;
		reply_error(s, "500 5.5.2 Error: line too long");
		return true;
	}
	char line[LINE_MAX_OCTETS + 1];
	size_t len = (size_t)eol.pos;

	evbuffer_remove(in, line, len + eol_len);
	line[len] = '\0';
	s->lines++;
	session_command(s, line, len);
	return true;
}

/*
 * Sends the replies now, rather than on the event loop's next turn: the
 * client hears them before anything else this turn writes (a delivery the
 * 250 just started, say).  libevent still owns the buffer: what the socket
 * does not take, it writes when it can.  Not while paused (its write
 * callback resumes reading) nor closing (its write callback frees).
 */
static void
session_flush(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (s->paused || s->state == SS_CLOSING || evbuffer_get_length(out) == 0)
		return;
	/* a socket bufferevent keeps its output's start frozen */
	evbuffer_unfreeze(out, 1);
	(void)evbuffer_write(out, bufferevent_getfd(s->bev));
	evbuffer_freeze(out, 1);
}

static void deadline_credit(struct smtp_session *s, uint64_t octets);

static void
session_process(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	uint64_t lines = s->lines, octets = s->data_octets;
	bool was_data = s->state == SS_DATA;

	for (;;) {
		if (s->state == SS_CLOSING || s->state == SS_COMMIT || s->state == SS_SIGNING)
			break;
		if (evbuffer_get_length(out) >= OUT_HIGH) {
			/* The client is not reading its replies: stop reading its
			 * commands until it does (write callback resumes). */
			s->paused = true;
			bufferevent_disable(s->bev, EV_READ);
			break;
		}
		bool progress = s->state == SS_DATA ? session_data(s, in) : session_line(s, in);
		if (!progress)
			break;
	}
	if (s->state == SS_CLOSING) {
		bufferevent_disable(s->bev, EV_READ);
		if (evbuffer_get_length(out) == 0)
			session_free(s);
		return;
	}
	/* A command taken, the text begun or ended: what comes next is due
	 * `timeout` from now.  Text keeps coming: it buys time. */
	if (s->lines != lines || was_data != (s->state == SS_DATA))
		deadline_restart(s);
	else if (s->state == SS_DATA && s->data_octets != octets)
		deadline_credit(s, s->data_octets - octets);
	session_flush(s);
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SS_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			session_free(s);
		return;
	}
	if (s->paused) {
		s->paused = false;
		bufferevent_enable(bev, EV_READ);
		session_process(s);
	}
}

/*
 * The client took too long (its deadline, or its replies left unread for
 * `timeout`): 421 4.4.2, and the session closes once that has gone out
 * (10 s at most).  Returns false if the session was freed.
 */
static bool
session_timeout(struct smtp_session *s)
{
	struct bufferevent *bev = s->bev;

	if (s->state == SS_COMMIT || s->state == SS_SIGNING) {
		/* Our own wait, not the client's slowness. */
		bufferevent_enable(bev, EV_WRITE);
		deadline_restart(s);
		return true;
	}
	if (s->state == SS_CLOSING) {
		session_free(s);
		return false;
	}
	log_info("timeout after %s from %s[%s]:%u", s->state == SS_DATA ? "DATA" : "command",
	    s->name, s->ip, s->port);
	txn_reset(s);
	evtimer_del(s->deadline_ev);
	struct timeval tv = { 10, 0 };
	bufferevent_set_timeouts(bev, NULL, &tv);
	bufferevent_disable(bev, EV_READ);
	session_close_after(s, "421 4.4.2 Error: timeout exceeded");
	bufferevent_enable(bev, EV_WRITE);
	return true;
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)session_timeout(arg);
}

static void
deadline_set(struct smtp_session *s, int64_t now)
{
	int64_t left = s->deadline - now;
	struct timeval tv = { left / 1000000, left % 1000000 };

	evtimer_add(s->deadline_ev, &tv);
}

/* The client has `timeout` seconds from now for its next command line. */
static void
deadline_restart(struct smtp_session *s)
{
	int64_t now = mono_us();

	s->deadline = now + (int64_t)s->cfg->timeout * 1000000;
	deadline_set(s, now);
}

/* Message text came in: each octet buys 1/DATA_MIN_RATE s, up to `timeout`
 * ahead of now. */
static void
deadline_credit(struct smtp_session *s, uint64_t octets)
{
	int64_t now = mono_us(), cap = now + (int64_t)s->cfg->timeout * 1000000;

	if (octets > (uint64_t)s->cfg->timeout * DATA_MIN_RATE)
		s->deadline = cap;
	else if ((s->deadline += (int64_t)octets * 1000000 / DATA_MIN_RATE) > cap)
		s->deadline = cap;
	if (s->deadline < now)
		s->deadline = now;
	deadline_set(s, now);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (what & BEV_EVENT_TIMEOUT) {
		(void)session_timeout(s);
		return;
	}
	/* EOF or error: the client is gone. */
	if (s->state == SS_COMMIT || s->state == SS_SIGNING) {
		/* The spool or a worker still holds a reference; free on its callback. */
		s->eof = true;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		return;
	}
	if (s->state == SS_DATA || s->state == SS_MAIL || s->state == SS_RCPT)
		log_info("%s: lost connection from %s[%s]:%u during the transaction", s->id,
		    s->name, s->ip, s->port);
	session_free(s);
}

/* ---- session lifetime -------------------------------------------------- */

static void
session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;

	log_info("disconnect from %s[%s]:%u", s->name, s->ip, s->port);
	txn_reset(s);
	if (s->deadline_ev)
		event_free(s->deadline_ev);
	if (s->bev) {
		bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(s->bev);
	}
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	config_free(s->cfg);
	free(s);
}

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

/*
 * A client refused before it has a session (shutting down, not in allow,
 * over max_clients): one write of the reply and the connection is closed
 * at once, so that it holds no max_clients slot, whatever it does next.
 * A freshly accepted socket's send buffer is empty: the line fits.
 */
static void
refuse(evutil_socket_t fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
refuse(evutil_socket_t fd, const char *fmt, ...)
{
	char line[REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	memcpy(line + n, "\r\n", 2);
	(void)!write(fd, line, (size_t)n + 2);
	evutil_closesocket(fd);
}

/*
 * Whether a client on descriptor fd leaves relayd enough descriptors for
 * its own work.  A client may hold two: its socket and, once its message
 * passes spool.c's BODY_MEM_MAX (32 KiB), the file the body spills to;
 * FD_KEEP_MIN more stay for spool segments, upstream connections and
 * relayctl.  So clients get (limit - FD_KEEP_MIN) / 2 descriptors at most.
 * Descriptors are numbered lowest first, so fd says how many are in use.
 * The limit is read each time: an admin may change it under a running
 * relayd (prlimit).
 */
static bool
fd_room(evutil_socket_t fd, unsigned long *limit)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return true;
	*limit = (unsigned long)rl.rlim_cur;
	return (rlim_t)fd * 2 + FD_KEEP_MIN < rl.rlim_cur;
}

void
smtp_server_refuse_busy(struct smtp_server *srv, evutil_socket_t fd, const struct sockaddr *sa)
{
	char ip[64];
	uint16_t port = 0;

	net_format_addr(sa, ip, sizeof(ip), &port);
	log_warn("connect from %s[%s]:%u refused: no descriptor left (raise LimitNOFILE or "
	    "lower max_clients)", is_loopback(sa) ? "localhost" : "unknown", ip, port);
	refuse(fd, BUSY_REPLY, srv->cfg->hostname);
}

void
smtp_server_accept(struct smtp_server *srv, evutil_socket_t fd, const struct sockaddr *sa,
    socklen_t salen)
{
	struct config *cfg = srv->cfg;
	unsigned long limit = 0;
	char ip[64];
	uint16_t port = 0;
	bool allowed = false;

	net_format_addr(sa, ip, sizeof(ip), &port);
	const char *name = is_loopback(sa) ? "localhost" : "unknown";

	if (srv->shutting_down) {
		refuse(fd, "421 4.3.2 %s Service shutting down", cfg->hostname);
		return;
	}
	for (size_t i = 0; i < cfg->nallow && !allowed; i++)
		allowed = net_cidr_match(&cfg->allow[i], sa);
	if (!allowed) {
		log_warn("reject: connect from %s[%s]:%u: client not in allow list", name, ip, port);
		refuse(fd, "554 5.7.1 %s Error: access denied for %s", cfg->hostname, ip);
		return;
	}
	if (srv->nsessions >= (size_t)cfg->max_clients) {
		log_warn("connect from %s[%s]:%u refused: max_clients (%d) reached", name, ip, port,
		    cfg->max_clients);
		refuse(fd, BUSY_REPLY, cfg->hostname);
		return;
	}
	if (!fd_room(fd, &limit)) {
		log_warn("connect from %s[%s]:%u refused: %d descriptors in use, too close to the "
		    "limit of %lu (raise LimitNOFILE or lower max_clients)", name, ip, port, (int)fd,
		    limit);
		refuse(fd, BUSY_REPLY, cfg->hostname);
		return;
	}

	struct smtp_session *s = xcalloc(1, sizeof(*s));
	int one = 1;

	s->srv = srv;
	s->cfg = config_ref(cfg);
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->port = port;
	buf_init(&s->prefix);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, IN_HIGH);
	bufferevent_setwatermark(s->bev, EV_WRITE, OUT_LOW, 0);
	/* replies left unread; the client's own slowness: deadline_ev */
	struct timeval tv = { cfg->timeout, 0 };
	bufferevent_set_timeouts(s->bev, NULL, &tv);
	s->deadline_ev = evtimer_new(srv->base, deadline_cb, s);
	deadline_restart(s);

	s->next = srv->sessions;
	if (s->next)
		s->next->prev = s;
	srv->sessions = s;
	srv->nsessions++;

	log_info("connect from %s[%s]:%u", name, ip, port);
	s->state = SS_INIT;
	reply(s, "220 %s ESMTP relayd", cfg->hostname);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	session_flush(s);
	(void)salen;
}

/* ---- server ------------------------------------------------------------ */

struct smtp_server *
smtp_server_new(struct event_base *base, struct config *cfg, struct spool *spool,
    struct queue *queue, struct workers *workers)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->workers = workers;
	srv->cfg = config_ref(cfg);
	srv->spool = spool;
	srv->queue = queue;
	return srv;
}

void
smtp_server_set_config(struct smtp_server *srv, struct config *cfg)
{
	config_ref(cfg);
	config_free(srv->cfg);
	srv->cfg = cfg;
}

size_t
smtp_server_nsessions(const struct smtp_server *srv)
{
	return srv->nsessions;
}

void
smtp_server_shutdown(struct smtp_server *srv)
{
	struct smtp_session *s, *next;

	srv->shutting_down = true;
	for (s = srv->sessions; s; s = next) {
		next = s->next;
		/* Transactions in progress finish (bounded by the caller);
		 * the rest are told and closed. */
		if (s->state == SS_INIT || s->state == SS_IDLE) {
			session_close_after(s, "421 4.3.2 Service shutting down, closing transmission channel");
			bufferevent_disable(s->bev, EV_READ);
			if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
				session_free(s);
		}
	}
}

void
smtp_server_free(struct smtp_server *srv)
{
	if (srv == NULL)
		return;
	while (srv->sessions)
		session_free(srv->sessions);
	config_free(srv->cfg);
	free(srv);
}
