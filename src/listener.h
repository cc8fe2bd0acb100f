/*
 * listener — the listening sockets of the `listen` setting.  Accepts
 * connections and passes them to smtp_server.
 */
#ifndef RELAYD_LISTENER_H
#define RELAYD_LISTENER_H

#include <stddef.h>

#include <event2/event.h>

#include "config.h"
#include "smtp_server.h"

struct listener;

/* Binds every address (SO_REUSEADDR, IPV6_V6ONLY for v6); returns NULL with
 * a reason ("bind 127.0.0.1:2525: Address already in use") in err. */
struct listener *listener_open(struct event_base *base, const struct cfg_listen *specs,
    size_t n, struct smtp_server *srv, char *err, size_t errlen);
/* Listens on specs from now on: unchanged addresses keep their sockets,
 * added ones are bound first, removed ones closed last.  Returns -1 with a
 * reason, changing nothing, if an added address cannot be bound. */
int listener_reconfigure(struct listener *l, const struct cfg_listen *specs, size_t n,
    char *err, size_t errlen);
void listener_free(struct listener *l);

#endif
