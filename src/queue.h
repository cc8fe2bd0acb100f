/*
 * queue — what is queued, and when and over which session each message is
 * next attempted.  The spool is the truth on disk; the queue holds every
 * live message's envelope in memory (not its text) and drives delivery.
 *
 * Scheduling: a message is due when its earliest pending recipient's next
 * attempt time has come (new mail: at once).  A due message waits in its
 * upstream's line until both a session (max_connections) and, with `rate`,
 * a send slot (at most one message every 60/rate seconds, no bursts) are
 * free; waiting is neither an attempt nor logged.  Idle sessions are reused
 * for the next message of the same upstream.
 *
 * After each attempt every recipient's state is written to the spool
 * before anything else happens to the message; a DSN for recipients that
 * failed for good is queued (durably) before their bounced state is
 * written, so a crash can duplicate a DSN but never lose one.  A message
 * whose recipients are all final is retired.
 */
#ifndef RELAYD_QUEUE_H
#define RELAYD_QUEUE_H

#include <stddef.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config.h"
#include "spool.h"

struct queue;

/* Messages can be added (from spool recovery) before queue_start(). */
struct queue *queue_new(struct event_base *base, struct evdns_base *dns,
    struct config *cfg);
/* Takes ownership of env: recovered, freshly accepted, or a DSN. */
void queue_add(struct queue *q, struct spool_envelope *env);
/* Starts delivering; the spool is where state changes go.  Returns -1
 * with a reason in err if an upstream's TLS context cannot be built. */
int queue_start(struct queue *q, struct spool *sp, char *err, size_t errlen);
/*
 * A reloaded configuration: new deliveries use it (routing, upstreams,
 * limits, retry schedule); sessions under the old one finish their
 * message and close.  Returns -1 with a reason (an upstream's TLS context
 * cannot be built) and changes nothing.
 */
int queue_set_config(struct queue *q, struct config *cfg, char *err, size_t errlen);
/* Stops starting new deliveries; sessions close as they finish. */
void queue_stop(struct queue *q);
/* Deliveries in progress. */
size_t queue_active(const struct queue *q);
size_t queue_count(const struct queue *q);
void queue_free(struct queue *q);

#endif
