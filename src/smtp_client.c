/*
 * smtp_client — SMTP sessions to upstreams (see smtp_client.h).
 *
 * How the dialogue is kept (Postfix's smtp_proto.c and OpenSMTPD's
 * mta_session.c keep it the same way): every command sent pushes the step
 * it starts onto a queue of expected replies, and every whole reply pops
 * one.  The table `steps` says, for each step, the stage a reply answers
 * (so a log line names the command that was really sent), which replies
 * let the dialogue go on, whom a refusal concerns (the session, the
 * message, one recipient), and the one function that decides what comes
 * next.  With PIPELINING, MAIL, the RCPTs and DATA go out together and
 * their replies are matched in order; without it, one at a time: the same
 * steps either way.
 *
 * Failures without a reply (DNS, connect, TLS, a timeout, a lost or
 * garbled connection, a missing extension) are named here by what
 * happened (enum dlv_trouble); delivery.c alone decides what each means.
 * Replies are read line by line (smtp_reply.c) and an EHLO reply keyword
 * by keyword, never joined and split again.
 *
 * Timeouts: the bufferevent's timeouts catch silence, but every octet that
 * arrives restarts them, so a reply dripping an octet (or a continuation
 * line) at a time would hold the attempt for hours.  Each reply therefore
 * has a deadline of its own, `timeout` seconds from the moment it is due
 * (its command queued, or the reply before it read), and so have a TLS
 * handshake and the wait for QUIT's reply (reply_ev).
 *
 * TLS traps handled here (from libevent's and OpenSSL's trackers):
 *  - STARTTLS: nothing is sent after the STARTTLS command until the
 *    handshake is done, and plaintext the server sent after its 220 is
 *    discarded, not read as a TLS-protected reply; EHLO is repeated and the
 *    earlier extension list forgotten.
 *  - with BEV_OPT_CLOSE_ON_FREE the bufferevent owns (and frees) the SSL.
 *  - OpenSSL's error queue is drained after every TLS event, so one
 *    session's errors never show up in another's.
 *  - host names are verified with SSL_set1_host (IP literals with
 *    X509_VERIFY_PARAM_set1_ip_asc) and sent as SNI.
 */
#include "acconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "smtp_client.h"
#include "smtp_reply.h"
#include "util.h"

#define TEXT_CHUNK	(64u << 10)
#define OUT_LOW		(64u << 10)
#define QUIT_WAIT_SEC	5
#define AUTH_ROUNDS_MAX	4	/* 334 challenges one AUTH may take */

enum cstate {
	C_NEW,		/* nothing yet */
	C_RESOLVING,
	C_CONNECTING,
	C_TLS,		/* handshake in progress */
	C_DIALOGUE,	/* waiting for replies */
	C_TEXT,		/* sending the message text */
	C_IDLE,		/* connected, waiting for a message */
	C_QUITTING,
};

/* What a reply answers: the command that was sent. */
enum step {
	S_GREETING,
	S_EHLO,
	S_HELO,
	S_STARTTLS,
	S_AUTH,		/* AUTH <mech> [initial response], and each answer to a 334 */
	S_RSET,
	S_MAIL,
	S_RCPT,
	S_DATA,
	S_DOT,		/* the end of the message text */
};

struct smtp_client {
	struct smtp_client_env		*env;
	struct smtp_client		*qprev, *qnext;	/* in env->quitting */
	bool				*gone;		/* set when freed, for loops that
							 * call back into the owner */
	bool				 in_quitting;
	const struct cfg_upstream	*up;
	SSL_CTX				*ssl_ctx;
	smtp_client_closed_fn		 closed;
	void				*closed_arg;
	char				 relay[NET_HOST_MAX + 80];	/* upstream[host]:port */
	char				 peer[NET_HOST_MAX + 80];	/* host[ip]:port */

	enum cstate			 state;
	struct bufferevent		*bev;
	struct evdns_getaddrinfo_request *dnsreq;
	struct evutil_addrinfo		*ai, *ai_next;
	char				 last_connect_error[DLV_REASON_MAX];
	char				 tls_err[256];	/* first OpenSSL error seen */
	char				 tls_alert[96];	/* last TLS alert, "received: ..." */
	struct event			*idle_ev;
	struct event			*reply_ev;	/* the deadline of what is awaited:
							 * a reply, a handshake, QUIT's end */
	bool				 tls_active;
	bool				 used;		/* a transaction ran: RSET first */

	struct smtp_ext			 ext;		/* what the upstream offered (EHLO) */
	struct smtp_reply		 reply;		/* the reply being read */
	unsigned			 auth_rounds;	/* 334s answered in this AUTH */

	/* the steps whose replies are due, oldest first (a ring) */
	struct { enum step step; size_t idx; } *xq;
	size_t				 xq_head, xq_len, xq_cap;

	/* the message in progress */
	const struct smtp_client_msg	*m;
	smtp_client_result_fn		 done;
	void				*done_arg;
	struct dlv_status		*res;
	bool				*final;		/* res[i] decided */
	size_t				 naccepted;	/* RCPTs that got a 2xx */
	bool				 mail_failed;
	struct dlv_status		 mail_status;
	uint64_t			 text_sent;
	bool				 text_bol;	/* at beginning of a line */
	char				 text_last;	/* last octet sent */
};

static void client_start_message(struct smtp_client *c);
static void client_close(struct smtp_client *c, bool notify);
static void deadline_arm(struct smtp_client *c, int sec);
static void client_try_connect(struct smtp_client *c);
static void text_push(struct smtp_client *c);

/* ---- small helpers ---------------------------------------------------- */

const char *
smtp_client_relay(const struct smtp_client *c)
{
	return c->relay;
}

bool
smtp_client_idle(const struct smtp_client *c)
{
	return c->state == C_IDLE;
}

static void
x_push(struct smtp_client *c, enum step step, size_t idx)
{
	if (c->xq_len == 0)
		deadline_arm(c, c->up->timeout);	/* this reply is now due */
	if (c->xq_len == c->xq_cap) {
		size_t ncap = c->xq_cap ? c->xq_cap * 2 : 8;
		void *n = xcalloc(ncap, sizeof(*c->xq));

		for (size_t i = 0; i < c->xq_len; i++)
			memcpy((char *)n + i * sizeof(*c->xq),
			    &c->xq[(c->xq_head + i) % c->xq_cap], sizeof(*c->xq));
		free(c->xq);
		c->xq = n;
		c->xq_cap = ncap;
		c->xq_head = 0;
	}
	size_t t = (c->xq_head + c->xq_len) % c->xq_cap;
	c->xq[t].step = step;
	c->xq[t].idx = idx;
	c->xq_len++;
}

static bool
x_pop(struct smtp_client *c, enum step *step, size_t *idx)
{
	if (c->xq_len == 0)
		return false;
	*step = c->xq[c->xq_head].step;
	*idx = c->xq[c->xq_head].idx;
	c->xq_head = (c->xq_head + 1) % c->xq_cap;
	c->xq_len--;
	return true;
}

static const char *
log_id(const struct smtp_client *c)
{
	return c->m ? c->m->id : c->relay;
}

/* Sends one command line; `shown` is what -v logs (NULL: the line itself). */
static void
send_cmd(struct smtp_client *c, enum step step, size_t idx, const char *shown,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
send_cmd(struct smtp_client *c, enum step step, size_t idx, const char *shown,
    const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;
	char *line;

	va_start(ap, fmt);
	line = xvasprintf(fmt, ap);
	va_end(ap);
	if (log_debug_enabled())
		log_debug("%s: %s > %s", log_id(c), c->peer, shown ? shown : line);
	evbuffer_add(out, line, strlen(line));
	evbuffer_add(out, "\r\n", 2);
	OPENSSL_cleanse(line, strlen(line));	/* it may have been a secret */
	free(line);
	x_push(c, step, idx);
}

static void
drain_ssl_errors(struct smtp_client *c, char *out, size_t outlen)
{
	unsigned long e;

	if (out && outlen)
		out[0] = '\0';
	/* The first error that names a library and reason is the useful one
	 * ("unsupported protocol", "wrong version number"); libevent also
	 * queues bare SSL_get_error() values (library 0), which say nothing. */
	for (;;) {
		e = c->bev ? bufferevent_get_openssl_error(c->bev) : 0;
		if (e == 0)
			e = ERR_get_error();
		if (e == 0)
			break;
		if (out && outlen && out[0] == '\0' && ERR_GET_LIB(e) != 0) {
			const char *r = ERR_reason_error_string(e);

			if (r != NULL)
				snprintf(out, outlen, "%s", r);
			else
				ERR_error_string_n(e, out, outlen);
		}
	}
	ERR_clear_error();
}

/* ---- results ----------------------------------------------------------- */

/* Gives every recipient not yet decided the status st. */
static void
settle_rest(struct smtp_client *c, const struct dlv_status *st)
{
	if (c->m == NULL)
		return;
	for (size_t i = 0; i < c->m->nrcpt; i++) {
		if (c->final[i])
			continue;
		c->res[i] = *st;
		c->final[i] = true;
	}
}

static void
message_free(struct smtp_client *c)
{
	free(c->res);
	free(c->final);
	c->res = NULL;
	c->final = NULL;
	c->m = NULL;
	c->done = NULL;
}

/* Hands the settled outcome to the owner; the message is forgotten. */
static void
report(struct smtp_client *c)
{
	smtp_client_result_fn done = c->done;
	void *arg = c->done_arg;
	struct dlv_status *res = c->res;
	size_t n = c->m->nrcpt;

	c->res = NULL;
	message_free(c);
	done(arg, c, res, n);
	free(res);
}

static void
idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;

	if (c->state != C_IDLE)
		return;
	log_debug("%s: closing idle session", c->relay);
	client_close(c, true);
}

/* The transaction ended with every recipient settled: report, go idle. */
static void
transaction_end(struct smtp_client *c)
{
	struct timeval tv = { c->env->idle_sec, 0 };

	evtimer_del(c->reply_ev);
	c->state = C_IDLE;
	c->used = true;
	evtimer_add(c->idle_ev, &tv);
	report(c);
}

/* The message, but not the session, failed: every open recipient gets st. */
static void
message_fail(struct smtp_client *c, const struct dlv_status *st)
{
	settle_rest(c, st);
	transaction_end(c);
}

/*
 * The session failed: every open recipient gets st, the owner hears of
 * the message (if one was in progress), and the session closes (the owner
 * is told, and may try another session from its callbacks).
 */
static void
session_fail(struct smtp_client *c, const struct dlv_status *st)
{
	if (c->m) {
		settle_rest(c, st);
		c->state = C_QUITTING;	/* no deliver() on it from the callback */
		report(c);
	} else {
		log_info("%s: %s", c->relay, st->reason);
	}
	client_close(c, true);
}

/* A failure without a reply (see enum dlv_trouble) that ends the session. */
static void
trouble(struct smtp_client *c, enum dlv_trouble what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
trouble(struct smtp_client *c, enum dlv_trouble what, const char *fmt, ...)
{
	struct dlv_status st;
	char reason[DLV_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	dlv_trouble(what, reason, &st);
	session_fail(c, &st);
}

/* ---- closing ----------------------------------------------------------- */

static void
client_free(struct smtp_client *c)
{
	if (c->gone)
		*c->gone = true;
	if (c->in_quitting) {
		if (c->qprev)
			c->qprev->qnext = c->qnext;
		else
			c->env->quitting = c->qnext;
		if (c->qnext)
			c->qnext->qprev = c->qprev;
	}
	if (c->dnsreq)
		evdns_getaddrinfo_cancel(c->dnsreq);
	if (c->bev) {
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		drain_ssl_errors(c, NULL, 0);
		bufferevent_free(c->bev);
	}
	if (c->ai)
		evutil_freeaddrinfo(c->ai);
	if (c->idle_ev)
		event_free(c->idle_ev);
	if (c->reply_ev)
		event_free(c->reply_ev);
	smtp_reply_free(&c->reply);
	free(c->xq);
	message_free(c);
	free(c);
}

static void
quit_event_cb(struct bufferevent *bev, short what, void *arg)
{
	client_free(arg);
}

static void
quit_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	/* the 221 (or anything): done */
	if (evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF).pos >= 0)
		client_free(arg);
}

/* Sends QUIT, then frees on the reply, EOF, error or a short timeout. */
static void
client_quit_and_free(struct smtp_client *c)
{
	struct timeval tv = { QUIT_WAIT_SEC, 0 };

	if (c->bev == NULL || c->state != C_IDLE) {
		client_free(c);
		return;
	}
	c->state = C_QUITTING;
	evtimer_del(c->idle_ev);
	c->in_quitting = true;
	c->qprev = NULL;
	c->qnext = c->env->quitting;
	if (c->qnext)
		c->qnext->qprev = c;
	c->env->quitting = c;
	if (log_debug_enabled())
		log_debug("%s: %s > QUIT", c->relay, c->peer);
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	evbuffer_add(bufferevent_get_output(c->bev), "QUIT\r\n", 6);
	bufferevent_setcb(c->bev, quit_read_cb, NULL, quit_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	deadline_arm(c, QUIT_WAIT_SEC);
	/* last: enabling a TLS bufferevent may read the peer's close at
	 * once and run quit_event_cb, which frees c */
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
client_close(struct smtp_client *c, bool notify)
{
	smtp_client_closed_fn closed = c->closed;
	void *arg = c->closed_arg;

	if (notify && closed)
		closed(arg, c);
	client_quit_and_free(c);
}

void
smtp_client_quit(struct smtp_client *c)
{
	client_quit_and_free(c);
}

void
smtp_client_abort(struct smtp_client *c)
{
	client_free(c);
}

void
smtp_client_abort_all(struct smtp_client_env *env)
{
	while (env->quitting)
		client_free(env->quitting);
}

/* ---- TLS --------------------------------------------------------------- */

SSL_CTX *
smtp_client_ssl_ctx(const struct cfg_upstream *up, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (up->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = up->tls_ca_file ?
		    SSL_CTX_load_verify_locations(ctx, up->tls_ca_file, NULL) :
		    SSL_CTX_set_default_verify_paths(ctx);
		if (!ok) {
			char e[256];

			ERR_error_string_n(ERR_get_error(), e, sizeof(e));
			ERR_clear_error();
			snprintf(err, errlen, "upstream %s: cannot load CA certificates%s%s: %s",
			    up->name, up->tls_ca_file ? " from " : "",
			    up->tls_ca_file ? up->tls_ca_file : "", e);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

/* Remembers TLS alerts: often the only words for why a handshake failed
 * ("protocol version" from a server that cannot do TLS 1.2). */
static void
ssl_info_cb(const SSL *ssl, int where, int ret)
{
	struct smtp_client *c = SSL_get_app_data(ssl);

	if (c == NULL || !(where & SSL_CB_ALERT))
		return;
	if (SSL_alert_type_string(ret)[0] != 'F' && (ret & 0xff) == 0)
		return;	/* a close_notify warning is not a reason */
	snprintf(c->tls_alert, sizeof(c->tls_alert), "%s TLS alert \"%s\"",
	    (where & SSL_CB_READ) ? "upstream sent" : "we sent", SSL_alert_desc_string_long(ret));
}

static SSL *
client_ssl_new(struct smtp_client *c)
{
	SSL *ssl = SSL_new(c->ssl_ctx);
	struct in6_addr a6;
	struct in_addr a4;
	bool literal = inet_pton(AF_INET, c->up->host, &a4) == 1 ||
	    inet_pton(AF_INET6, c->up->host, &a6) == 1;

	if (ssl == NULL)
		return NULL;
	SSL_set_app_data(ssl, c);
	SSL_set_info_callback(ssl, ssl_info_cb);
	if (!literal)
		SSL_set_tlsext_host_name(ssl, c->up->host);
	if (c->up->tls_verify) {
		if (literal)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->up->host);
		else
			SSL_set1_host(ssl, c->up->host);
	}
	return ssl;
}

/* Why a handshake failed, in words an admin can act on. */
static void
tls_reason(struct smtp_client *c, char *out, size_t outlen)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	char e[256];

	drain_ssl_errors(c, e, sizeof(e));
	if (e[0] == '\0' && c->tls_err[0] != '\0')
		snprintf(e, sizeof(e), "%s", c->tls_err);
	/* libevent sometimes queues a bare SSL_get_error() value (library 0),
	 * which OpenSSL prints as "lib(0)::reason(1)": worthless to an admin */
	if (strstr(e, ":lib(0)") != NULL)
		e[0] = '\0';
	if (vr != X509_V_OK)
		snprintf(out, outlen, "TLS: certificate verify failed (%s), %s",
		    X509_verify_cert_error_string(vr), c->peer);
	else if (c->tls_alert[0])
		snprintf(out, outlen, "TLS: handshake with %s failed: %s%s%s", c->peer,
		    c->tls_alert, e[0] ? ": " : "", e);
	else if (e[0])
		snprintf(out, outlen, "TLS: handshake with %s failed: %s", c->peer, e);
	else
		snprintf(out, outlen, "TLS: handshake with %s failed: connection closed", c->peer);
}


/* ---- reply reading ----------------------------------------------------- */

static void on_reply(struct smtp_client *c, const struct smtp_reply *r);

/*
 * Takes the next whole line out of in, if there is one: 1 (line set, len
 * octets, its line end removed from in), 0 (not yet), -1 (a line longer
 * than SMTP_REPLY_LINE_MAX: nothing is copied).  A line ends at LF, with
 * or without CR before it.
 */
static int
next_line(struct evbuffer *in, char *line, size_t *len)
{
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);

	if (eol.pos < 0) {
		/* no end yet: a partial line (and a CR that may end it) */
		return evbuffer_get_length(in) > SMTP_REPLY_LINE_MAX + 1 ? -1 : 0;
	}
	if ((size_t)eol.pos > SMTP_REPLY_LINE_MAX)
		return -1;
	*len = (size_t)eol.pos;
	evbuffer_remove(in, line, *len);
	evbuffer_drain(in, eol_len);
	line[*len] = '\0';
	return 1;
}

/* Reads whole replies and hands each to on_reply. */
static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	bool gone = false, *outer = c->gone;
	char line[SMTP_REPLY_LINE_MAX + 1], err[256];
	size_t len;
	int got;

	/* Several replies may have come in one read (PIPELINING): handle
	 * them all, but stop if handling one ended the session. */
	c->gone = &gone;
	while (!gone && (c->state == C_DIALOGUE || c->state == C_TEXT || c->state == C_IDLE)) {
		if ((got = next_line(in, line, &len)) == 0)
			break;
		if (got < 0) {
			trouble(c, DLV_T_PROTOCOL, "%s sent a reply line longer than %d octets",
			    c->peer, SMTP_REPLY_LINE_MAX);
			break;
		}
		if (c->state == C_IDLE) {
			/* unsolicited: typically "421 idle timeout" before closing */
			log_debug("%s: %s < %s", c->relay, c->peer, line);
			continue;
		}
		if (log_debug_enabled())
			log_debug("%s: %s < %s", log_id(c), c->peer, line);
		switch (smtp_reply_add(&c->reply, line, len, err, sizeof(err))) {
		case SMTP_REPLY_MORE:
			continue;
		case SMTP_REPLY_BAD:
			smtp_reply_reset(&c->reply);
			trouble(c, DLV_T_PROTOCOL, "%s sent %s", c->peer, err);
			break;
		case SMTP_REPLY_DONE:
			on_reply(c, &c->reply);
			if (!gone)
				smtp_reply_reset(&c->reply);
			break;
		}
	}
	if (gone) {
		if (outer)
			*outer = true;
		return;
	}
	c->gone = outer;
}

/*
 * For implicit TLS, did a failed connection fail in TLS or in TCP?  A TCP
 * failure leaves a socket error (refused, unreachable) and no TLS error;
 * anything else (a TLS error, a failed verification, or the peer closing
 * the connection mid-handshake) is a TLS failure.
 */
static bool
tls_failed(struct smtp_client *c, int sockerr)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	unsigned long e;

	if (ssl == NULL)
		return false;
	if ((e = bufferevent_get_openssl_error(c->bev)) != 0) {
		if (ERR_GET_LIB(e) != 0 && ERR_reason_error_string(e) != NULL)
			snprintf(c->tls_err, sizeof(c->tls_err), "%s", ERR_reason_error_string(e));
		drain_ssl_errors(c, c->tls_err[0] ? NULL : c->tls_err, sizeof(c->tls_err));
		return true;
	}
	return SSL_get_verify_result(ssl) != X509_V_OK || sockerr == 0;
}

/* The TCP connection (and, for implicit TLS, the handshake) is up. */
static void
connected(struct smtp_client *c)
{
	drain_ssl_errors(c, NULL, 0);
	c->tls_active = c->up->tls == CFG_TLS_IMPLICIT;
	c->state = C_DIALOGUE;
	x_push(c, S_GREETING, 0);
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	char reason[DLV_REASON_MAX];

	if (c->state == C_CONNECTING) {
		if (what & BEV_EVENT_CONNECTED) {
			/* for implicit TLS this comes after the handshake */
			connected(c);
			return;
		}
		int e = EVUTIL_SOCKET_ERROR();

		if (c->up->tls == CFG_TLS_IMPLICIT && !(what & BEV_EVENT_TIMEOUT) &&
		    tls_failed(c, e)) {
			tls_reason(c, reason, sizeof(reason));
			trouble(c, DLV_T_TLS, "%s", reason);
			return;
		}
		snprintf(c->last_connect_error, sizeof(c->last_connect_error),
		    "connect to %s: %s", c->peer,
		    (what & BEV_EVENT_TIMEOUT) ? "Connection timed out" :
		    e ? evutil_socket_error_to_string(e) : "Connection closed");
		log_info("%s", c->last_connect_error);
		drain_ssl_errors(c, NULL, 0);
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(c->bev);
		c->bev = NULL;
		client_try_connect(c);
		return;
	}
	if (c->state == C_TLS) {
		if (what & BEV_EVENT_CONNECTED) {
			drain_ssl_errors(c, NULL, 0);
			c->tls_active = true;
			c->state = C_DIALOGUE;
			/* RFC 3207: forget what was said before, EHLO again */
			memset(&c->ext, 0, sizeof(c->ext));
			send_cmd(c, S_EHLO, 0, NULL, "EHLO %s", c->env->helo);
			if (log_debug_enabled()) {
				SSL *ssl = bufferevent_openssl_get_ssl(bev);
				log_debug("%s: TLS with %s: %s, %s", log_id(c), c->peer,
				    SSL_get_version(ssl), SSL_get_cipher_name(ssl));
			}
			return;
		}
		if (what & BEV_EVENT_TIMEOUT)
			snprintf(reason, sizeof(reason), "TLS: handshake with %s timed out", c->peer);
		else
			tls_reason(c, reason, sizeof(reason));
		trouble(c, DLV_T_TLS, "%s", reason);
		return;
	}
	if (c->state == C_IDLE || c->state == C_QUITTING) {
		drain_ssl_errors(c, NULL, 0);
		client_close(c, c->state == C_IDLE);
		return;
	}
	/* In the dialogue or sending text. */
	drain_ssl_errors(c, NULL, 0);
	const char *doing = c->state == C_TEXT ? "sending the message text" : "waiting for a reply";

	if (what & BEV_EVENT_TIMEOUT)
		trouble(c, DLV_T_TIMEOUT, "conversation with %s timed out while %s", c->peer, doing);
	else
		trouble(c, DLV_T_LOST, "lost connection with %s while %s", c->peer, doing);
}

/*
 * The deadline passed: what is awaited took too long, however busily it
 * dripped in.  It ends as the bufferevent's own timeout would have.
 */
static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;

	if (c->state == C_QUITTING) {
		client_free(c);
		return;
	}
	if (c->bev != NULL && (c->state == C_CONNECTING || c->state == C_TLS ||
	    c->state == C_DIALOGUE))
		client_event_cb(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, c);
}

static void
deadline_arm(struct smtp_client *c, int sec)
{
	struct timeval tv = { sec, 0 };

	evtimer_add(c->reply_ev, &tv);
}

/* ---- connecting -------------------------------------------------------- */

/* A bufferevent for fd (-1: a new socket), plain or implicit TLS. */
static struct bufferevent *
client_bev_new(struct smtp_client *c, evutil_socket_t fd)
{
	struct bufferevent *bev;

	if (c->up->tls == CFG_TLS_IMPLICIT) {
		bev = bufferevent_openssl_socket_new(c->env->base, fd, client_ssl_new(c),
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(c->env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	return bev;
}

static void
client_bev_start(struct smtp_client *c)
{
	struct timeval tv = { c->up->timeout > 30 ? 30 : c->up->timeout, 0 };

	bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	c->state = C_CONNECTING;
	/* implicit TLS: the handshake, which may drip too, within the same */
	deadline_arm(c, (int)tv.tv_sec);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);	/* last: may run callbacks */
}

static void
client_try_connect(struct smtp_client *c)
{
	while (c->ai_next) {
		struct evutil_addrinfo *ai = c->ai_next;
		char ip[64] = "?";

		c->ai_next = ai->ai_next;
		if (ai->ai_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof(ip));
		else if (ai->ai_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip,
			    sizeof(ip));
		else
			continue;
		snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", c->up->host, ip, c->up->port);
		c->bev = client_bev_new(c, -1);
		client_bev_start(c);
		if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0)
			return;
		int e = EVUTIL_SOCKET_ERROR();
		snprintf(c->last_connect_error, sizeof(c->last_connect_error), "connect to %s: %s",
		    c->peer, evutil_socket_error_to_string(e));
		log_info("%s", c->last_connect_error);
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		drain_ssl_errors(c, NULL, 0);
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	trouble(c, DLV_T_CONNECT, "%s", c->last_connect_error[0] ?
	    c->last_connect_error : "no address to connect to");
}

static void
dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct smtp_client *c = arg;

	c->dnsreq = NULL;
	if (result == EVUTIL_EAI_CANCEL)
		return;
	if (result != 0 || res == NULL) {
		if (res)
			evutil_freeaddrinfo(res);
		trouble(c, DLV_T_DNS, "DNS lookup of %s failed: %s", c->up->host,
		    evutil_gai_strerror(result));
		return;
	}
	c->ai = res;
	c->ai_next = res;
	client_try_connect(c);
}

/* A connection handed over by env->connect (tests): as if TCP connected. */
static void
client_adopt(struct smtp_client *c)
{
	evutil_socket_t fd = c->env->connect(c->env->connect_arg, c->up);

	snprintf(c->peer, sizeof(c->peer), "%s[test]:%u", c->up->host, c->up->port);
	if (fd < 0) {
		trouble(c, DLV_T_CONNECT, "connect to %s: %s", c->peer, strerror(errno));
		return;
	}
	evutil_make_socket_nonblocking(fd);
	c->bev = client_bev_new(c, fd);
	client_bev_start(c);
	if (c->up->tls != CFG_TLS_IMPLICIT)
		connected(c);	/* with TLS, the handshake's end says so */
}

static void
client_connect(struct smtp_client *c)
{
	struct evutil_addrinfo hints;
	char port[8];

	if (c->env->connect != NULL) {
		client_adopt(c);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%u", c->up->port);
	snprintf(c->peer, sizeof(c->peer), "%s[?]:%u", c->up->host, c->up->port);
	c->state = C_RESOLVING;
	/* may call dns_cb before returning (numeric hosts, /etc/hosts) */
	struct evdns_getaddrinfo_request *req =
	    evdns_getaddrinfo(c->env->dns, c->up->host, port, &hints, dns_cb, c);
	if (c->state == C_RESOLVING)
		c->dnsreq = req;
}

/* ---- the dialogue ------------------------------------------------------ */

/* Whom a refusal concerns when the step's own function does not decide. */
enum scope {
	SC_SESSION,	/* the session can go no further: every open recipient */
	SC_STEP,	/* the step's function decides (message, recipient, fallback) */
};

/* What comes after a step's reply: ok says whether the reply is one that
 * lets the step go on, st what it means for the recipients it concerns. */
typedef void step_fn(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st);

static step_fn greeted, ehlo_done, helo_done, starttls_done, auth_done, rset_done, mail_done,
    rcpt_done, data_done, dot_done;

/* The replies that let a step go on. */
enum want {
	W_2XX,		/* any 2xx */
	W_354,		/* exactly 354: DATA (RFC 5321 4.2.2) */
	W_2XX_334,	/* 2xx, or a 334 challenge: AUTH */
};

static const struct step_def {
	enum dlv_stage	stage;		/* what the reply answers, for reasons and logs */
	enum want	want;
	enum scope	scope;
	step_fn		*next;		/* called with every reply but a session-ending one */
} steps[] = {
	[S_GREETING]	= { DLV_STAGE_GREETING,	W_2XX,		SC_SESSION,	greeted },
	[S_EHLO]	= { DLV_STAGE_EHLO,	W_2XX,		SC_STEP,	ehlo_done },
	[S_HELO]	= { DLV_STAGE_HELO,	W_2XX,		SC_SESSION,	helo_done },
	[S_STARTTLS]	= { DLV_STAGE_STARTTLS,	W_2XX,		SC_SESSION,	starttls_done },
	[S_AUTH]	= { DLV_STAGE_AUTH,	W_2XX_334,	SC_SESSION,	auth_done },
	[S_RSET]	= { DLV_STAGE_RSET,	W_2XX,		SC_SESSION,	rset_done },
	[S_MAIL]	= { DLV_STAGE_MAIL,	W_2XX,		SC_STEP,	mail_done },
	[S_RCPT]	= { DLV_STAGE_RCPT,	W_2XX,		SC_STEP,	rcpt_done },
	[S_DATA]	= { DLV_STAGE_DATA,	W_354,		SC_STEP,	data_done },
	[S_DOT]		= { DLV_STAGE_DOT,	W_2XX,		SC_STEP,	dot_done },
};

static bool
wanted(enum want w, int code)
{
	switch (w) {
	case W_2XX:
		return code / 100 == 2;
	case W_354:
		return code == 354;
	case W_2XX_334:
		return code / 100 == 2 || code == 334;
	}
	return false;
}

/*
 * Every whole reply: what it answers comes from the queue of steps sent,
 * never from a guess.  A 421 ends the session wherever it comes (the
 * upstream is closing); a refusal of a session step ends it too; the
 * rest is the step's to decide.
 */
static void
on_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	enum step step;
	size_t idx;
	struct dlv_status st;

	if (!x_pop(c, &step, &idx)) {
		trouble(c, DLV_T_PROTOCOL, "%s sent a reply nobody asked for: %.200s", c->peer,
		    smtp_reply_str(r));
		return;
	}
	/* the next reply (pipelined) is due from now on */
	if (c->xq_len > 0)
		deadline_arm(c, c->up->timeout);
	else
		evtimer_del(c->reply_ev);
	const struct step_def *sd = &steps[step];
	bool ok = wanted(sd->want, r->code);

	dlv_classify_reply(sd->stage, r->code, r->enh[0] ? r->enh : NULL, smtp_reply_str(r),
	    c->peer, &st);
	if (!ok)
		dlv_explain(&st, sd->stage, r->code, r->enh, c->up->auth == CFG_AUTH_XOAUTH2);
	if (!ok && (r->code == 421 || sd->scope == SC_SESSION)) {
		if (st.config_problem)
			log_err("%s: upstream %s: %s%s", log_id(c), c->up->name, st.reason,
			    sd->stage != DLV_STAGE_AUTH || strstr(st.reason, "(hint: ") ? "" :
			    c->up->auth == CFG_AUTH_XOAUTH2 ?
			    " (check the app's permissions and this upstream's oauth2 section)" :
			    " (check username and password for this upstream)");
		session_fail(c, &st);
		return;
	}
	sd->next(c, r, idx, ok, &st);
}

static void
greeted(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	send_cmd(c, S_EHLO, 0, NULL, "EHLO %s", c->env->helo);
}

static void after_ehlo(struct smtp_client *c);

/* EHLO or, when EHLO was refused, HELO. */
static void
ehlo_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	if (!ok) {
		/* a server that does not know EHLO (5xx) gets HELO; never
		 * inside TLS, where EHLO is what STARTTLS was for */
		if (r->code / 100 == 5 && !c->tls_active) {
			send_cmd(c, S_HELO, 0, NULL, "HELO %s", c->env->helo);
			return;
		}
		session_fail(c, st);
		return;
	}
	smtp_reply_ehlo(r, &c->ext);
	after_ehlo(c);
}

/* HELO: a server without extensions. */
static void
helo_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	memset(&c->ext, 0, sizeof(c->ext));
	after_ehlo(c);
}

/* -- STARTTLS and AUTH -- */

/* An AUTH mechanism: how it starts, and its answer to the n-th 334. */
struct auth_mech {
	enum cfg_auth	 cfg;
	unsigned	 offered;	/* the SMTP_AUTH_* bit EHLO must show */
	const char	*name;
	void		(*start)(struct smtp_client *c);
	bool		(*challenge)(struct smtp_client *c, unsigned n);	/* false: none due */
};

/* Sends base64(p, n) as the argument of "prefix", showing "prefix***" to -v. */
static void
send_b64_secret(struct smtp_client *c, const char *prefix, const unsigned char *p, size_t n)
{
	char *b64 = xmalloc(4 * ((n + 2) / 3) + 1);
	char *shown = xasprintf("%s***", prefix);

	EVP_EncodeBlock((unsigned char *)b64, p, (int)n);
	send_cmd(c, S_AUTH, 0, shown, "%s%s", prefix, b64);
	OPENSSL_cleanse(b64, strlen(b64));
	free(b64);
	free(shown);
}

/* RFC 4616: "\0user\0password", base64, as AUTH PLAIN's argument or answer. */
static void
plain_send(struct smtp_client *c, const char *prefix)
{
	const char *u = c->up->username ? c->up->username : "";
	const char *p = c->up->password ? c->up->password : "";
	size_t ul = strlen(u), pl = strlen(p), n = ul + pl + 2;
	unsigned char *raw = xmalloc(n);

	raw[0] = '\0';
	memcpy(raw + 1, u, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, p, pl);
	send_b64_secret(c, prefix, raw, n);
	OPENSSL_cleanse(raw, n);
	free(raw);
}

static void
plain_start(struct smtp_client *c)
{
	plain_send(c, "AUTH PLAIN ");	/* with the initial response (RFC 4954 4) */
}

static bool
plain_challenge(struct smtp_client *c, unsigned n)
{
	/* a server that ignored the initial response asks for it */
	if (n > 1)
		return false;
	plain_send(c, "");
	return true;
}

static void
login_start(struct smtp_client *c)
{
	send_cmd(c, S_AUTH, 0, NULL, "AUTH LOGIN");
}

static bool
login_challenge(struct smtp_client *c, unsigned n)
{
	const char *s = n == 1 ? c->up->username : c->up->password;

	if (n > 2)
		return false;
	s = s ? s : "";
	send_b64_secret(c, "", (const unsigned char *)s, strlen(s));
	return true;
}

/* The SASL XOAUTH2 initial response (Google's and Microsoft's): base64 of
 * "user=" username "\1auth=Bearer " token "\1\1". */
static void
xoauth2_start(struct smtp_client *c)
{
	const char *u = c->up->username ? c->up->username : "";
	char *raw = xasprintf("user=%s\001auth=Bearer %s\001\001", u,
	    c->m->token ? c->m->token : "");

	send_b64_secret(c, "AUTH XOAUTH2 ", (const unsigned char *)raw, strlen(raw));
	OPENSSL_cleanse(raw, strlen(raw));
	free(raw);
}

static bool
xoauth2_challenge(struct smtp_client *c, unsigned n)
{
	/* the 334 carries the error as base64 JSON: an empty line answers
	 * it, and the final reply (535, ...) is what counts */
	if (n > 1)
		return false;
	send_cmd(c, S_AUTH, 0, NULL, "%s", "");
	return true;
}

static const struct auth_mech auth_mechs[] = {
	{ CFG_AUTH_PLAIN, SMTP_AUTH_PLAIN, "PLAIN", plain_start, plain_challenge },
	{ CFG_AUTH_LOGIN, SMTP_AUTH_LOGIN, "LOGIN", login_start, login_challenge },
	{ CFG_AUTH_XOAUTH2, SMTP_AUTH_XOAUTH2, "XOAUTH2", xoauth2_start, xoauth2_challenge },
};

static const struct auth_mech *
auth_mech(enum cfg_auth a)
{
	for (size_t i = 0; i < sizeof(auth_mechs) / sizeof(auth_mechs[0]); i++)
		if (auth_mechs[i].cfg == a)
			return &auth_mechs[i];
	return NULL;
}

/* Greeted and EHLO'd: STARTTLS, AUTH or the message, as configured. */
static void
after_ehlo(struct smtp_client *c)
{
	if (c->up->tls == CFG_TLS_STARTTLS && !c->tls_active) {
		if (!c->ext.starttls) {
			trouble(c, DLV_T_NO_STARTTLS, "%s does not offer STARTTLS, and upstream %s "
			    "requires it (tls = \"starttls\"); not sending mail in plain text", c->peer,
			    c->up->name);
			return;
		}
		send_cmd(c, S_STARTTLS, 0, NULL, "STARTTLS");
		return;
	}
	if (c->up->auth != CFG_AUTH_NONE) {
		const struct auth_mech *am = auth_mech(c->up->auth);

		if (am == NULL || !(c->ext.auth & am->offered)) {
			trouble(c, DLV_T_NO_AUTH,
			    "authentication failed: %s does not offer AUTH %s (offers: %s)", c->peer,
			    am ? am->name : "?",
			    c->ext.auth_offered[0] ? c->ext.auth_offered : "no AUTH at all");
			return;
		}
		c->auth_rounds = 0;
		am->start(c);
		return;
	}
	client_start_message(c);
}

static void
starttls_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	/* Anything the server pipelined after its 220 is plaintext
	 * injection; drop it before the handshake. */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	SSL *ssl = client_ssl_new(c);
	struct bufferevent *under = c->bev;
	struct timeval tv = { c->up->timeout, 0 };

	bufferevent_setcb(under, NULL, NULL, NULL, NULL);
	c->bev = bufferevent_openssl_filter_new(c->env->base, under, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		c->bev = under;
		trouble(c, DLV_T_TLS, "TLS: cannot start with %s", c->peer);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	c->state = C_TLS;
	deadline_arm(c, c->up->timeout);	/* the whole handshake */
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);	/* last: may run callbacks */
}

/* A 235 (done) or a 334 (the mechanism's next answer is due). */
static void
auth_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	if (r->code == 334) {
		const struct auth_mech *am = auth_mech(c->up->auth);

		if (++c->auth_rounds > AUTH_ROUNDS_MAX || !am->challenge(c, c->auth_rounds)) {
			trouble(c, DLV_T_PROTOCOL, "authentication failed: %s sent an unexpected "
			    "challenge: %.200s", c->peer, smtp_reply_str(r));
		}
		return;
	}
	client_start_message(c);
}

/* -- the transaction -- */

/* The size announced with SIZE= and checked against the upstream's limit:
 * what will be sent, the signature fields kept apart included. */
static uint64_t
msg_size(const struct smtp_client_msg *m)
{
	return m->headlen + m->len;
}

/* MAIL FROM with its parameters; with PIPELINING the RCPTs and DATA too. */
static void
send_mail(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->m;
	char params[128] = "";

	if (c->ext.size)
		snprintf(params, sizeof(params), " SIZE=%llu", (unsigned long long)msg_size(m));
	if (m->eightbit && c->ext.eightbitmime)
		strcat(params, " BODY=8BITMIME");
	if (m->smtputf8)
		strcat(params, " SMTPUTF8");
	send_cmd(c, S_MAIL, 0, NULL, "MAIL FROM:<%s>%s", m->sender, params);
	if (!c->ext.pipelining)
		return;
	for (size_t i = 0; i < m->nrcpt; i++)
		send_cmd(c, S_RCPT, i, NULL, "RCPT TO:<%s>", m->rcpts[i]);
	send_cmd(c, S_DATA, 0, NULL, "DATA");
}

/* Starts MAIL/RCPT/DATA for c->m (connected, greeted, authenticated). */
static void
client_start_message(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->m;
	struct dlv_status st;
	char why[DLV_REASON_MAX];

	c->state = C_DIALOGUE;
	if (m->smtputf8 && !c->ext.smtputf8) {
		snprintf(why, sizeof(why), "message needs SMTPUTF8 (RFC 6531), which %s does not "
		    "offer; not downgraded", c->peer);
		dlv_trouble(DLV_T_NEEDS_SMTPUTF8, why, &st);
		message_fail(c, &st);
		return;
	}
	if (c->ext.size_limit > 0 && msg_size(m) > c->ext.size_limit) {
		snprintf(why, sizeof(why), "message size %llu exceeds the limit of %llu octets "
		    "that %s announces", (unsigned long long)msg_size(m),
		    (unsigned long long)c->ext.size_limit, c->peer);
		dlv_trouble(DLV_T_TOO_BIG, why, &st);
		message_fail(c, &st);
		return;
	}
	if (c->used) {
		send_cmd(c, S_RSET, 0, NULL, "RSET");
		if (!c->ext.pipelining)
			return;	/* MAIL follows the RSET reply */
	}
	send_mail(c);
}

static void
rset_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	if (!c->ext.pipelining)
		send_mail(c);
}

/* Without PIPELINING, after the last RCPT's reply: DATA, or the end. */
static void
after_rcpts(struct smtp_client *c)
{
	if (c->mail_failed) {
		message_fail(c, &c->mail_status);
		return;
	}
	if (c->naccepted == 0) {
		/* every RCPT refused: each has its own status already */
		transaction_end(c);
		return;
	}
	send_cmd(c, S_DATA, 0, NULL, "DATA");
}

static void
mail_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	if (!ok) {
		/* every recipient gets this; with PIPELINING the RCPT and
		 * DATA replies still come and are read first */
		c->mail_failed = true;
		c->mail_status = *st;
		if (!c->ext.pipelining)
			after_rcpts(c);
		return;
	}
	if (!c->ext.pipelining)
		send_cmd(c, S_RCPT, 0, NULL, "RCPT TO:<%s>", c->m->rcpts[0]);
}

static void
rcpt_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	if (!c->mail_failed) {
		if (ok) {
			c->naccepted++;
		} else {
			c->res[idx] = *st;
			c->final[idx] = true;
		}
	}
	if (c->ext.pipelining)
		return;	/* the next reply is already on its way */
	if (idx + 1 < c->m->nrcpt) {
		send_cmd(c, S_RCPT, idx + 1, NULL, "RCPT TO:<%s>", c->m->rcpts[idx + 1]);
		return;
	}
	after_rcpts(c);
}

static void start_text(struct smtp_client *c);

/* Only 354 lets the text go (RFC 5321 4.2.2, 4.3.2). */
static void
data_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	if (c->mail_failed || c->naccepted == 0) {
		/* pipelined, and nobody to deliver to */
		if (c->mail_failed)
			settle_rest(c, &c->mail_status);
		if (ok) {
			/* the server wants text anyway: an empty one ends it;
			 * its reply changes nothing (dot_done) */
			evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
			x_push(c, S_DOT, 0);
			return;
		}
		transaction_end(c);
		return;
	}
	if (!ok) {
		/* A 2xx or 3xx other than 354: the server and relayd disagree
		 * about where the dialogue is, so this session is not used
		 * again; a 4xx or 5xx refuses the message, nothing more. */
		if (r->code / 100 == 2 || r->code / 100 == 3)
			session_fail(c, st);
		else
			message_fail(c, st);
		return;
	}
	start_text(c);
}

/* The reply to the end of the text decides for every open recipient. */
static void
dot_done(struct smtp_client *c, const struct smtp_reply *r, size_t idx, bool ok,
    const struct dlv_status *st)
{
	message_fail(c, st);
}

/* -- the text -- */

static void
text_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	if (c->state == C_TEXT)
		text_push(c);
}

/* Streams the text, dot-stuffed, as the output drains; then ".". */
static void
text_push(struct smtp_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const struct smtp_client_msg *m = c->m;
	static __thread char chunk[TEXT_CHUNK];

	while (evbuffer_get_length(out) < OUT_LOW && c->text_sent < m->len) {
		size_t want = m->len - c->text_sent < TEXT_CHUNK ? (size_t)(m->len - c->text_sent) :
		    TEXT_CHUNK;
		ssize_t n = pread(m->fd, chunk, want, (off_t)(m->off + c->text_sent));

		if (n <= 0) {
			trouble(c, DLV_T_SPOOL, "cannot read the message from the spool: %s",
			    n < 0 ? strerror(errno) : "unexpected end of file");
			return;
		}
		/* dot-stuff: a '.' at the start of a line goes out doubled */
		size_t start = 0;
		for (size_t i = 0; i < (size_t)n; i++) {
			if (c->text_bol && chunk[i] == '.') {
				evbuffer_add(out, chunk + start, i - start);
				evbuffer_add(out, ".", 1);
				start = i;
			}
			c->text_bol = chunk[i] == '\n';
		}
		evbuffer_add(out, chunk + start, (size_t)n - start);
		c->text_last = chunk[n - 1];
		c->text_sent += (uint64_t)n;
	}
	if (c->text_sent < m->len)
		return;
	/* the text always ends with CRLF (data.c); be safe anyway */
	if (m->len > 0 && c->text_last != '\n')
		evbuffer_add(out, "\r\n", 2);
	bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
	c->state = C_DIALOGUE;
	if (log_debug_enabled())
		log_debug("%s: %s > (%llu octets of text) .", m->id, c->peer,
		    (unsigned long long)msg_size(m));
	evbuffer_add(out, ".\r\n", 3);
	x_push(c, S_DOT, 0);
}

static void
start_text(struct smtp_client *c)
{
	c->state = C_TEXT;
	c->text_sent = 0;
	c->text_bol = true;
	c->text_last = '\n';
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_setcb(c->bev, client_read_cb, text_write_cb, client_event_cb, c);
	/* header fields relayd made: no line of them starts with a dot */
	if (c->m->headlen > 0)
		evbuffer_add(bufferevent_get_output(c->bev), c->m->head, c->m->headlen);
	text_push(c);
}

/* ---- the API ----------------------------------------------------------- */

struct smtp_client *
smtp_client_new(struct smtp_client_env *env, const struct cfg_upstream *up,
    SSL_CTX *ssl_ctx, smtp_client_closed_fn closed, void *arg)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));

	c->env = env;
	c->up = up;
	c->ssl_ctx = ssl_ctx;
	c->closed = closed;
	c->closed_arg = arg;
	c->state = C_NEW;
	smtp_reply_init(&c->reply);
	c->idle_ev = evtimer_new(env->base, idle_cb, c);
	c->reply_ev = evtimer_new(env->base, deadline_cb, c);
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%u", up->name, up->host, up->port);
	snprintf(c->peer, sizeof(c->peer), "%s[?]:%u", up->host, up->port);
	return c;
}

void
smtp_client_deliver(struct smtp_client *c, const struct smtp_client_msg *m,
    smtp_client_result_fn done, void *arg)
{
	c->m = m;
	c->done = done;
	c->done_arg = arg;
	c->res = xcalloc(m->nrcpt, sizeof(*c->res));
	c->final = xcalloc(m->nrcpt, sizeof(*c->final));
	c->naccepted = 0;
	c->mail_failed = false;
	c->xq_head = c->xq_len = 0;
	if (c->state == C_IDLE) {
		evtimer_del(c->idle_ev);
		client_start_message(c);
		return;
	}
	client_connect(c);
}
