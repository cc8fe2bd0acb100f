/*
 * smtp_client — one SMTP session to an upstream, delivering one message at
 * a time; the queue decides what to send, and over which session.
 *
 * A session resolves the host (every A/AAAA address tried in turn),
 * connects, reads the greeting, says EHLO (HELO if EHLO is refused; the
 * reply read line by line, one extension per line), starts
 * TLS as configured (STARTTLS through a bufferevent_openssl filter, or
 * implicit TLS; TLS 1.2 minimum; chain and host name verified with SNI
 * unless tls_verify = false; "starttls" never continues in plain text),
 * authenticates (PLAIN, LOGIN or XOAUTH2; also without TLS when tls = "none"),
 * then sends MAIL (with SIZE=, BODY=, SMTPUTF8 as needed), one RCPT per
 * recipient and DATA, pipelined when the upstream offers PIPELINING, and,
 * only after a 354, the text dot-stuffed.  Each recipient gets its own
 * outcome (delivery.h decides what a reply or a failure means; the reason
 * names the command a reply answered).  After a
 * message the session stays open for the next one (RSET first), until it
 * has been idle for a short while; then QUIT.
 *
 * Secrets: AUTH arguments are never logged, not even with -v (they show as
 * "***"); nor is a token.  A refused AUTH is reported with auth_refused set
 * in the status (the owner drops a token the upstream would not take).
 */
#ifndef RELAYD_SMTP_CLIENT_H
#define RELAYD_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "delivery.h"

struct smtp_client;

/* What all sessions share. */
struct smtp_client_env {
	struct event_base	*base;
	struct evdns_base	*dns;
	const char		*helo;		/* our EHLO name (config hostname) */
	int			 idle_sec;	/* keep an idle session this long */
	struct smtp_client	*quitting;	/* sessions saying QUIT (private) */
	/*
	 * How to reach an upstream: NULL (relayd) resolves its host and
	 * connects over TCP.  Tests set it to hand over one end of a
	 * socketpair (a connected socket, or -1 with errno); the session then
	 * starts as if TCP had just connected (with TLS: the handshake).
	 */
	evutil_socket_t		(*connect)(void *arg, const struct cfg_upstream *up);
	void			*connect_arg;
};

/* One message to deliver.  Strings and fd stay valid until the result. */
struct smtp_client_msg {
	const char	 *id;		/* queue id, for logs */
	const char	 *sender;	/* "" for <> */
	const char	**rcpts;
	size_t		  nrcpt;
	const char	 *head;		/* sent before the text, NULL if nothing: the
					 * DKIM-Signature fields of a message that
					 * keeps them apart (SPOOL_F_SIGPEND) */
	size_t		  headlen;
	int		  fd;		/* the text: pread(fd, .., len, off) */
	uint64_t	  off;
	uint64_t	  len;
	bool		  eightbit;
	bool		  smtputf8;
	const char	 *token;	/* auth = "xoauth2": the access token for a
					 * session that still has to authenticate
					 * (secret; NULL otherwise) */
};

/*
 * The outcome of one attempt: res[i] for rcpts[i]; relay is
 * "upstream[host]:port" for the log line.  Called exactly once per
 * smtp_client_deliver().  The callback may call smtp_client_deliver() or
 * smtp_client_quit() on the client.
 */
typedef void (*smtp_client_result_fn)(void *arg, struct smtp_client *c,
    const struct dlv_status *res, size_t n);

/* The session is gone (idle timeout, the upstream closed it, or a failure
 * after the result was reported).  The owner drops its pointer; the client
 * frees itself after this returns. */
typedef void (*smtp_client_closed_fn)(void *arg, struct smtp_client *c);

/* ssl_ctx: the upstream's context (NULL for tls = "none"); not owned. */
struct smtp_client *smtp_client_new(struct smtp_client_env *env,
    const struct cfg_upstream *up, SSL_CTX *ssl_ctx, smtp_client_closed_fn closed,
    void *arg);

/* Delivers m over this session, connecting first if needed.  Only on a new
 * or idle client. */
void smtp_client_deliver(struct smtp_client *c, const struct smtp_client_msg *m,
    smtp_client_result_fn done, void *arg);

/* True if the session is connected and waiting for a message. */
bool smtp_client_idle(const struct smtp_client *c);

/* Ends the session (QUIT if connected and idle) and frees it in the
 * background; closed() is not called.  Only on a new or idle client. */
void smtp_client_quit(struct smtp_client *c);

/* Frees a client at once, without QUIT or callbacks (shutdown). */
void smtp_client_abort(struct smtp_client *c);
/* Frees every session still saying QUIT (shutdown). */
void smtp_client_abort_all(struct smtp_client_env *env);

/* "upstream[host]:port", for log lines. */
const char *smtp_client_relay(const struct smtp_client *c);

/*
 * Builds the TLS context for an upstream: TLS 1.2 minimum; unless
 * tls_verify is false, peer verification against tls_ca_file or the system
 * store.  Returns NULL with a reason in err.
 */
SSL_CTX *smtp_client_ssl_ctx(const struct cfg_upstream *up, char *err, size_t errlen);

#endif
