/*
 * smtp_client — SMTP sessions to upstreams (see smtp_client.h).
 *
 * The dialogue is driven by a queue of expected replies: every command
 * sent pushes what its reply means (greeting, EHLO, MAIL, RCPT #i, ...),
 * every complete reply pops one.  With PIPELINING, MAIL, the RCPTs and
 * DATA go out together and their replies are matched in order; without
 * it, one at a time — the same code either way.
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
#include <ctype.h>
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
#include "util.h"

#define REPLY_LINE_MAX	4096	/* octets; RFC 5321 says 512, be lenient */
#define REPLY_MAX	65536	/* a whole multi-line reply */
#define TEXT_CHUNK	(64u << 10)
#define OUT_LOW		(64u << 10)
#define QUIT_WAIT_SEC	5

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

enum expect {
	X_GREETING,
	X_EHLO,
	X_HELO,
	X_STARTTLS,
	X_AUTH,		/* AUTH PLAIN <...> or AUTH LOGIN */
	X_AUTH_USER,	/* LOGIN: the 334 after which the user goes */
	X_AUTH_PASS,
	X_RSET,
	X_MAIL,
	X_RCPT,
	X_DATA,
	X_DOT,
	X_QUIT,
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
	bool				 tls_active;
	bool				 used;		/* a transaction ran: RSET first */

	/* what the upstream offered (EHLO) */
	bool				 esmtp;
	bool				 x_pipelining, x_starttls, x_8bitmime, x_smtputf8;
	bool				 x_size;
	uint64_t			 size_limit;	/* 0 = none */
	bool				 auth_plain, auth_login;
	char				 auth_offered[128];

	/* reply assembly */
	struct buf			 reply;		/* joined text of the reply so far */
	int				 reply_code;
	bool				 secret_next;	/* next command is a secret: log *** */

	/* expectations */
	struct { enum expect what; size_t idx; } *xq;
	size_t				 xq_head, xq_len, xq_cap;

	/* the message in progress */
	const struct smtp_client_msg	*m;
	smtp_client_result_fn		 done;
	void				*done_arg;
	struct dlv_status		*res;
	bool				*final;		/* res[i] decided */
	bool				*accepted;	/* RCPT got 2xx */
	size_t				 naccepted;
	bool				 mail_failed;
	struct dlv_status		 mail_status;
	uint64_t			 text_sent;
	bool				 text_bol;	/* at beginning of a line */
	char				 text_last;	/* last octet sent */
};

static void client_fail(struct smtp_client *c, enum dlv_fate fate, const char *dsn,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void client_start_message(struct smtp_client *c);
static void client_close(struct smtp_client *c, bool notify);
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
x_push(struct smtp_client *c, enum expect what, size_t idx)
{
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
	c->xq[t].what = what;
	c->xq[t].idx = idx;
	c->xq_len++;
}

static bool
x_pop(struct smtp_client *c, enum expect *what, size_t *idx)
{
	if (c->xq_len == 0)
		return false;
	*what = c->xq[c->xq_head].what;
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
send_cmd(struct smtp_client *c, enum expect what, size_t idx, const char *shown,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
send_cmd(struct smtp_client *c, enum expect what, size_t idx, const char *shown,
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
	free(line);
	x_push(c, what, idx);
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
	free(c->accepted);
	c->res = NULL;
	c->final = NULL;
	c->accepted = NULL;
	c->m = NULL;
	c->done = NULL;
}

/* Reports the message's outcome (all recipients settled). */
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

	c->state = C_IDLE;
	c->used = true;
	evtimer_add(c->idle_ev, &tv);
	report(c);
}

/*
 * A failure that ends the session: settle what is open, report if a
 * message was in progress, then close (and tell the owner).
 */
static void
client_fail(struct smtp_client *c, enum dlv_fate fate, const char *dsn, const char *fmt, ...)
{
	struct dlv_status st;
	char reason[DLV_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	dlv_local(fate, dsn, reason, &st);
	if (c->m) {
		settle_rest(c, &st);
		/* the owner may try another session; this one is gone */
		smtp_client_result_fn done = c->done;
		void *arg = c->done_arg;
		struct dlv_status *res = c->res;
		size_t n = c->m->nrcpt;

		c->res = NULL;
		message_free(c);
		c->state = C_QUITTING;	/* no deliver() on it from the callback */
		done(arg, c, res, n);
		free(res);
	} else {
		log_info("%s: %s", c->relay, reason);
	}
	client_close(c, true);
}

/* Applies a reply-based status to every open recipient, then ends. */
static void
fail_with_reply(struct smtp_client *c, const struct dlv_status *st, bool close_after)
{
	settle_rest(c, st);
	if (close_after) {
		smtp_client_result_fn done = c->done;
		void *arg = c->done_arg;
		struct dlv_status *res = c->res;
		size_t n = c->m->nrcpt;

		c->res = NULL;
		message_free(c);
		c->state = C_QUITTING;
		done(arg, c, res, n);
		free(res);
		client_close(c, true);
		return;
	}
	transaction_end(c);
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
	buf_free(&c->reply);
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

static void on_reply(struct smtp_client *c, int code, const char *text);

/* Parses "ddd-..." / "ddd ..." lines into whole replies. */
static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	bool gone = false, *outer = c->gone;

	/* Several replies may have come in one read (PIPELINING): handle
	 * them all, but stop if handling one ended the session. */
	c->gone = &gone;
	while (c->state == C_DIALOGUE || c->state == C_TEXT || c->state == C_IDLE) {
		size_t eol_len = 0;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);

		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > REPLY_LINE_MAX)
				client_fail(c, DLV_DEFER, "4.5.0",
				    "%s sent a reply line longer than %d octets", c->peer,
				    REPLY_LINE_MAX);
			break;
		}
		if ((size_t)eol.pos > REPLY_LINE_MAX) {
			client_fail(c, DLV_DEFER, "4.5.0",
			    "%s sent a reply line longer than %d octets", c->peer, REPLY_LINE_MAX);
			break;
		}
		char line[REPLY_LINE_MAX + 1];
		size_t len = (size_t)eol.pos;

		evbuffer_remove(in, line, len + eol_len);
		line[len] = '\0';
		if (c->state == C_IDLE) {
			/* unsolicited: typically "421 idle timeout" before closing */
			log_debug("%s: %s < %s", c->relay, c->peer, line);
			continue;
		}
		if (log_debug_enabled())
			log_debug("%s: %s < %s", log_id(c), c->peer, line);
		if (len < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) || !isdigit((unsigned char)line[2]) ||
		    (len > 3 && line[3] != ' ' && line[3] != '-')) {
			client_fail(c, DLV_DEFER, "4.5.0", "%s sent a malformed reply: %.200s",
			    c->peer, line);
			break;
		}
		int code = atoi(line);
		bool more = len > 3 && line[3] == '-';
		const char *text = len > 4 ? line + 4 : "";

		if (c->reply.len == 0) {
			buf_printf(&c->reply, "%.3s", line);
			c->reply_code = code;
		}
		if (c->reply.len + len + 1 > REPLY_MAX) {
			client_fail(c, DLV_DEFER, "4.5.0", "%s sent an overlong reply", c->peer);
			break;
		}
		/* Continuation lines repeat the enhanced code; keep it once. */
		if (c->reply.len > 3) {
			const char *t = text;
			int a, b, d, n = 0;

			if (sscanf(t, "%1d.%3d.%3d%n", &a, &b, &d, &n) == 3 && (t[n] == ' ' || !t[n]))
				t += n + (t[n] == ' ');
			if (*t)
				buf_printf(&c->reply, " %s", t);
		} else if (*text) {
			buf_printf(&c->reply, " %s", text);
		}
		if (more)
			continue;
		char *full = xstrndup(c->reply.p, c->reply.len);
		buf_reset(&c->reply);
		on_reply(c, code, full);
		free(full);
		if (gone)
			break;
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

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	bool implicit = c->up->tls == CFG_TLS_IMPLICIT;

	if (c->state == C_CONNECTING) {
		if (what & BEV_EVENT_CONNECTED) {
			/* for implicit TLS this comes after the handshake */
			drain_ssl_errors(c, NULL, 0);
			c->tls_active = implicit;
			c->state = C_DIALOGUE;
			x_push(c, X_GREETING, 0);
			return;
		}
		int e = EVUTIL_SOCKET_ERROR();

		if (implicit && !(what & BEV_EVENT_TIMEOUT) && tls_failed(c, e)) {
			char reason[DLV_REASON_MAX];

			tls_reason(c, reason, sizeof(reason));
			client_fail(c, DLV_DEFER, "4.7.5", "%s", reason);
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
		char reason[DLV_REASON_MAX];

		if (what & BEV_EVENT_CONNECTED) {
			drain_ssl_errors(c, NULL, 0);
			c->tls_active = true;
			c->state = C_DIALOGUE;
			/* RFC 3207: forget what was said before, EHLO again */
			send_cmd(c, X_EHLO, 0, NULL, "EHLO %s", c->env->helo);
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
		client_fail(c, DLV_DEFER, "4.7.5", "%s", reason);
		return;
	}
	if (c->state == C_IDLE || c->state == C_QUITTING) {
		drain_ssl_errors(c, NULL, 0);
		client_close(c, c->state == C_IDLE);
		return;
	}
	/* In the dialogue or sending text. */
	drain_ssl_errors(c, NULL, 0);
	if (what & BEV_EVENT_TIMEOUT)
		client_fail(c, DLV_DEFER, "4.4.2", "conversation with %s timed out while %s",
		    c->peer, c->state == C_TEXT ? "sending the message text" : "waiting for a reply");
	else
		client_fail(c, DLV_DEFER, "4.4.2", "lost connection with %s while %s", c->peer,
		    c->state == C_TEXT ? "sending the message text" : "waiting for a reply");
}

/* ---- connecting -------------------------------------------------------- */

static void
client_try_connect(struct smtp_client *c)
{
	struct timeval tv = { c->up->timeout > 30 ? 30 : c->up->timeout, 0 };

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

		if (c->up->tls == CFG_TLS_IMPLICIT) {
			SSL *ssl = client_ssl_new(c);

			c->bev = bufferevent_openssl_socket_new(c->env->base, -1, ssl,
			    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
		} else {
			c->bev = bufferevent_socket_new(c->env->base, -1, BEV_OPT_CLOSE_ON_FREE);
		}
		bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		c->state = C_CONNECTING;
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
	client_fail(c, DLV_DEFER, "4.4.1", "%s", c->last_connect_error[0] ?
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
		client_fail(c, DLV_DEFER, "4.4.3", "DNS lookup of %s failed: %s", c->up->host,
		    evutil_gai_strerror(result));
		return;
	}
	c->ai = res;
	c->ai_next = res;
	client_try_connect(c);
}

static void
client_connect(struct smtp_client *c)
{
	struct evutil_addrinfo hints;
	char port[8];

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

static void
parse_ehlo(struct smtp_client *c, const char *text)
{
	/* text: "250 host greets Keyword Keyword ..." joined by spaces; the
	 * keywords were separate lines, so scan word by word. */
	char *dup = xstrdup(text + (strlen(text) > 4 ? 4 : strlen(text)));
	char *save = NULL;

	c->x_pipelining = c->x_starttls = c->x_8bitmime = c->x_smtputf8 = c->x_size = false;
	c->size_limit = 0;
	c->auth_plain = c->auth_login = false;
	c->auth_offered[0] = '\0';
	bool in_auth = false;
	for (char *w = strtok_r(dup, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (in_auth) {
			if (!ascii_strcasecmp(w, "PLAIN"))
				c->auth_plain = true;
			else if (!ascii_strcasecmp(w, "LOGIN"))
				c->auth_login = true;
			if (strlen(c->auth_offered) + strlen(w) + 2 < sizeof(c->auth_offered)) {
				if (c->auth_offered[0])
					strcat(c->auth_offered, " ");
				strcat(c->auth_offered, w);
			}
		}
		if (!ascii_strcasecmp(w, "PIPELINING"))
			c->x_pipelining = true, in_auth = false;
		else if (!ascii_strcasecmp(w, "STARTTLS"))
			c->x_starttls = true, in_auth = false;
		else if (!ascii_strcasecmp(w, "8BITMIME"))
			c->x_8bitmime = true, in_auth = false;
		else if (!ascii_strcasecmp(w, "SMTPUTF8"))
			c->x_smtputf8 = true, in_auth = false;
		else if (!ascii_strcasecmp(w, "AUTH") || !ascii_strncasecmp(w, "AUTH=", 5))
			in_auth = true;
		else if (!ascii_strcasecmp(w, "SIZE")) {
			c->x_size = true;
			in_auth = false;
			char *n = strtok_r(NULL, " ", &save);
			if (n && isdigit((unsigned char)*n))
				c->size_limit = strtoull(n, NULL, 10);
			else if (n && !ascii_strcasecmp(n, "PIPELINING"))
				c->x_pipelining = true;
		}
	}
	free(dup);
}

/* The EHLO lines arrive joined; re-read them from the raw keywords. */
static void
after_ehlo(struct smtp_client *c)
{
	if (c->up->tls == CFG_TLS_STARTTLS && !c->tls_active) {
		if (!c->x_starttls) {
			client_fail(c, DLV_DEFER, "4.7.4",
			    "%s does not offer STARTTLS, and upstream %s requires it (tls = \"starttls\"); "
			    "not sending mail in plain text", c->peer, c->up->name);
			return;
		}
		send_cmd(c, X_STARTTLS, 0, NULL, "STARTTLS");
		return;
	}
	if (c->up->auth != CFG_AUTH_NONE) {
		char *u = c->up->username ? c->up->username : "";
		char *p = c->up->password ? c->up->password : "";

		if (c->up->auth == CFG_AUTH_PLAIN && c->auth_plain) {
			size_t ul = strlen(u), pl = strlen(p);
			unsigned char *raw = xmalloc(ul + pl + 2);
			char *b64 = xmalloc(4 * ((ul + pl + 2 + 2) / 3) + 1);

			raw[0] = '\0';
			memcpy(raw + 1, u, ul);
			raw[1 + ul] = '\0';
			memcpy(raw + 2 + ul, p, pl);
			EVP_EncodeBlock((unsigned char *)b64, raw, (int)(ul + pl + 2));
			send_cmd(c, X_AUTH, 0, "AUTH PLAIN ***", "AUTH PLAIN %s", b64);
			OPENSSL_cleanse(raw, ul + pl + 2);
			OPENSSL_cleanse(b64, strlen(b64));
			free(raw);
			free(b64);
			return;
		}
		if (c->up->auth == CFG_AUTH_LOGIN && c->auth_login) {
			send_cmd(c, X_AUTH, 0, NULL, "AUTH LOGIN");
			return;
		}
		client_fail(c, DLV_DEFER, "4.7.0",
		    "authentication failed: %s does not offer AUTH %s (offers: %s)", c->peer,
		    c->up->auth == CFG_AUTH_PLAIN ? "PLAIN" : "LOGIN",
		    c->auth_offered[0] ? c->auth_offered : "no AUTH at all");
		return;
	}
	client_start_message(c);
}

static void
send_b64_secret(struct smtp_client *c, enum expect what, const char *s)
{
	size_t n = strlen(s);
	char *b64 = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)s, (int)n);
	send_cmd(c, what, 0, "***", "%s", b64);
	OPENSSL_cleanse(b64, strlen(b64));
	free(b64);
}

/* Starts MAIL/RCPT/DATA for c->m (connected, greeted, authenticated). */
static void
client_start_message(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->m;
	struct dlv_status st;

	c->state = C_DIALOGUE;
	if (m->smtputf8 && !c->x_smtputf8) {
		dlv_local(DLV_BOUNCE, "5.6.7", "", &st);
		snprintf(st.reason, sizeof(st.reason),
		    "message needs SMTPUTF8 (RFC 6531), which %s does not offer; not downgraded",
		    c->peer);
		settle_rest(c, &st);
		transaction_end(c);
		return;
	}
	uint64_t size = m->headlen + m->len;

	if (c->size_limit > 0 && size > c->size_limit) {
		dlv_local(DLV_BOUNCE, "5.3.4", "", &st);
		snprintf(st.reason, sizeof(st.reason),
		    "message size %llu exceeds the limit of %llu octets that %s announces",
		    (unsigned long long)size, (unsigned long long)c->size_limit, c->peer);
		settle_rest(c, &st);
		transaction_end(c);
		return;
	}
	bool pipe = c->x_pipelining;
	char params[128] = "";

	if (c->x_size)
		snprintf(params + strlen(params), sizeof(params) - strlen(params), " SIZE=%llu",
		    (unsigned long long)size);
	if (m->eightbit && c->x_8bitmime)
		strcat(params, " BODY=8BITMIME");
	if (m->smtputf8)
		strcat(params, " SMTPUTF8");
	if (c->used)
		send_cmd(c, X_RSET, 0, NULL, "RSET");
	if (c->used && !pipe)
		return;	/* MAIL follows the RSET reply */
	send_cmd(c, X_MAIL, 0, NULL, "MAIL FROM:<%s>%s", m->sender, params);
	if (!pipe)
		return;
	for (size_t i = 0; i < m->nrcpt; i++)
		send_cmd(c, X_RCPT, i, NULL, "RCPT TO:<%s>", m->rcpts[i]);
	send_cmd(c, X_DATA, 0, NULL, "DATA");
}

static void
send_mail_after_rset(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->m;
	char params[128] = "";

	if (c->x_size)
		snprintf(params, sizeof(params), " SIZE=%llu", (unsigned long long)m->len);
	if (m->eightbit && c->x_8bitmime)
		strcat(params, " BODY=8BITMIME");
	if (m->smtputf8)
		strcat(params, " SMTPUTF8");
	send_cmd(c, X_MAIL, 0, NULL, "MAIL FROM:<%s>%s", m->sender, params);
}

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
			client_fail(c, DLV_DEFER, "4.3.0", "cannot read the message from the spool: %s",
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
		    (unsigned long long)(m->headlen + m->len));
	evbuffer_add(out, ".\r\n", 3);
	x_push(c, X_DOT, 0);
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

/* All replies up to DATA are in: what next? */
static void
after_rcpts(struct smtp_client *c)
{
	if (c->mail_failed) {
		settle_rest(c, &c->mail_status);
		transaction_end(c);
		return;
	}
	if (c->naccepted == 0) {
		/* every RCPT refused: each has its own status already */
		transaction_end(c);
		return;
	}
	if (!c->x_pipelining)
		send_cmd(c, X_DATA, 0, NULL, "DATA");
}

/* The upstream refused our credentials: a configuration problem, said
 * loudly, and every recipient deferred (delivery.c). */
static void
auth_failed(struct smtp_client *c, int code, const char *enh, const char *text)
{
	struct dlv_status st;

	dlv_classify_reply(DLV_STAGE_AUTH, code, enh[0] ? enh : NULL, text, c->peer, &st);
	log_err("%s: upstream %s: %s (check username and password for this upstream)",
	    log_id(c), c->up->name, st.reason);
	fail_with_reply(c, &st, true);
}

static void
on_reply(struct smtp_client *c, int code, const char *text)
{
	enum expect what;
	size_t idx;
	struct dlv_status st;
	char enh[16] = "";
	int a, b, d, n = 0;

	if (!x_pop(c, &what, &idx)) {
		client_fail(c, DLV_DEFER, "4.5.0", "%s sent an unexpected reply: %.200s", c->peer, text);
		return;
	}
	if (strlen(text) > 4 && sscanf(text + 4, "%1d.%3d.%3d%n", &a, &b, &d, &n) == 3 &&
	    (text[4 + n] == ' ' || text[4 + n] == '\0'))
		snprintf(enh, sizeof(enh), "%d.%d.%d", a, b, d);

	/* 421 anywhere: the upstream is closing; everything open defers. */
	if (code == 421 && what != X_QUIT) {
		dlv_classify_reply(what == X_GREETING ? DLV_STAGE_GREETING : DLV_STAGE_MAIL, code,
		    enh[0] ? enh : NULL, text, c->peer, &st);
		st.fate = DLV_DEFER;
		if (c->m) {
			fail_with_reply(c, &st, true);
		} else {
			log_info("%s: %s", c->relay, st.reason);
			client_close(c, true);
		}
		return;
	}

	switch (what) {
	case X_GREETING:
		if (code / 100 != 2) {
			dlv_classify_reply(DLV_STAGE_GREETING, code, enh[0] ? enh : NULL, text, c->peer,
			    &st);
			fail_with_reply(c, &st, true);
			return;
		}
		send_cmd(c, X_EHLO, 0, NULL, "EHLO %s", c->env->helo);
		return;
	case X_EHLO:
		if (code / 100 == 2) {
			c->esmtp = true;
			parse_ehlo(c, text);
			after_ehlo(c);
			return;
		}
		if (code / 100 == 5 && !c->tls_active) {
			c->esmtp = false;
			send_cmd(c, X_HELO, 0, NULL, "HELO %s", c->env->helo);
			return;
		}
		dlv_classify_reply(DLV_STAGE_EHLO, code, enh[0] ? enh : NULL, text, c->peer, &st);
		fail_with_reply(c, &st, true);
		return;
	case X_HELO:
		if (code / 100 != 2) {
			dlv_classify_reply(DLV_STAGE_EHLO, code, enh[0] ? enh : NULL, text, c->peer, &st);
			fail_with_reply(c, &st, true);
			return;
		}
		parse_ehlo(c, "250 ");
		after_ehlo(c);
		return;
	case X_STARTTLS: {
		if (code != 220) {
			dlv_classify_reply(DLV_STAGE_STARTTLS, code, enh[0] ? enh : NULL, text, c->peer,
			    &st);
			st.fate = DLV_DEFER;
			fail_with_reply(c, &st, true);
			return;
		}
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
			client_fail(c, DLV_DEFER, "4.7.5", "TLS: cannot start with %s", c->peer);
			return;
		}
		bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
		bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		c->state = C_TLS;
		return;
	}
	case X_AUTH:
		if (code == 334 && c->up->auth == CFG_AUTH_LOGIN) {
			send_b64_secret(c, X_AUTH_USER, c->up->username ? c->up->username : "");
			return;
		}
		/* FALLTHROUGH */
	case X_AUTH_PASS:
		if (code == 235) {
			client_start_message(c);
			return;
		}
		auth_failed(c, code, enh, text);
		return;
	case X_AUTH_USER:
		if (code == 334) {
			send_b64_secret(c, X_AUTH_PASS, c->up->password ? c->up->password : "");
			return;
		}
		auth_failed(c, code, enh, text);
		return;
	case X_RSET:
		if (code / 100 != 2) {
			dlv_classify_reply(DLV_STAGE_MAIL, code, enh[0] ? enh : NULL, text, c->peer, &st);
			st.fate = DLV_DEFER;
			fail_with_reply(c, &st, true);
			return;
		}
		if (!c->x_pipelining)
			send_mail_after_rset(c);
		return;
	case X_MAIL:
		if (code / 100 != 2) {
			c->mail_failed = true;
			dlv_classify_reply(DLV_STAGE_MAIL, code, enh[0] ? enh : NULL, text, c->peer,
			    &c->mail_status);
			if (!c->x_pipelining)
				after_rcpts(c);
			return;
		}
		if (!c->x_pipelining)
			send_cmd(c, X_RCPT, 0, NULL, "RCPT TO:<%s>", c->m->rcpts[0]);
		return;
	case X_RCPT:
		if (!c->mail_failed) {
			if (code / 100 == 2) {
				c->accepted[idx] = true;
				c->naccepted++;
			} else {
				dlv_classify_reply(DLV_STAGE_RCPT, code, enh[0] ? enh : NULL, text, c->peer,
				    &c->res[idx]);
				c->final[idx] = true;
			}
		}
		if (c->x_pipelining)
			return;	/* DATA's reply comes next */
		if (idx + 1 < c->m->nrcpt) {
			send_cmd(c, X_RCPT, idx + 1, NULL, "RCPT TO:<%s>", c->m->rcpts[idx + 1]);
			return;
		}
		after_rcpts(c);
		return;
	case X_DATA:
		if (c->x_pipelining && (c->mail_failed || c->naccepted == 0)) {
			if (code == 354) {
				/* nobody to deliver to, but the server wants text */
				x_push(c, X_DOT, 0);
				evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
				settle_rest(c, c->mail_failed ? &c->mail_status : &st);
				return;
			}
			after_rcpts(c);
			return;
		}
		if (code != 354) {
			dlv_classify_reply(DLV_STAGE_DATA, code, enh[0] ? enh : NULL, text, c->peer, &st);
			settle_rest(c, &st);
			transaction_end(c);
			return;
		}
		start_text(c);
		return;
	case X_DOT:
		dlv_classify_reply(DLV_STAGE_DOT, code, enh[0] ? enh : NULL, text, c->peer, &st);
		settle_rest(c, &st);
		transaction_end(c);
		return;
	case X_QUIT:
		return;
	}
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
	buf_init(&c->reply);
	c->idle_ev = evtimer_new(env->base, idle_cb, c);
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
	c->accepted = xcalloc(m->nrcpt, sizeof(*c->accepted));
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
