/*
 * smtp_server — SMTP sessions towards local applications, on the event loop.
 *
 * One struct smtp_session per client, driven by an explicit state enum.
 * Each command is handled in two steps: check (syntax, order, limits; on
 * failure send the reply and change nothing) then proceed.  Replies go out
 * in command order, so PIPELINING clients can send many commands per read.
 * Memory per session is bounded: input is read only while the output side
 * is drained, lines longer than the limit are discarded, message bodies
 * past a small threshold go to the spool's temporary file, and of the
 * header only the fields DKIM signs are kept (100 KB at most).
 */
#ifndef RELAYD_SMTP_SERVER_H
#define RELAYD_SMTP_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "config.h"
#include "queue.h"
#include "spool.h"
#include "workers.h"

struct smtp_server;

/* Takes its own reference to cfg. */
struct smtp_server *smtp_server_new(struct event_base *base, struct config *cfg,
    struct spool *spool, struct queue *queue, struct workers *workers);
/* Hands a freshly accepted, non-blocking client socket to the server, which
 * owns it from now on. */
void smtp_server_accept(struct smtp_server *srv, evutil_socket_t fd,
    const struct sockaddr *sa, socklen_t salen);
/* A client relayd has no descriptor to spare for (accepted with its very
 * last one): answered 421 4.7.0 as over max_clients, and closed at once. */
void smtp_server_refuse_busy(struct smtp_server *srv, evutil_socket_t fd,
    const struct sockaddr *sa);
/* New sessions use cfg from now on; sessions in progress keep the one they
 * started with (each holds a reference) until they end. */
void smtp_server_set_config(struct smtp_server *srv, struct config *cfg);
size_t smtp_server_nsessions(const struct smtp_server *srv);
/* Stop: new input is no longer read after the current transaction; idle
 * sessions get 421 4.3.2 and are closed. */
void smtp_server_shutdown(struct smtp_server *srv);
void smtp_server_free(struct smtp_server *srv);

#endif
