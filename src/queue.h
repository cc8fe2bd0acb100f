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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/*
 * Looks for a spool segment worth emptying (spool_compact_candidate) and
 * starts moving its waiting messages to the current one; returns how many.
 * A timer does this every 30 s; a message due meanwhile is held until its
 * new copy is durable.
 */
size_t queue_compact(struct queue *q);
/* ---- for the control socket (relayctl) ---- */

/* Calls fn for every queued message, in no particular order.  active:
 * an attempt is in progress; due: unix seconds of the next attempt. */
void queue_list(const struct queue *q,
    void (*fn)(void *arg, const struct spool_envelope *env, bool active, int64_t due),
    void *arg);

/* Makes the message (id) or, with id NULL, every message due now; attempt
 * counts stay.  Returns the number of messages affected (0 for one already
 * on its way: being delivered, queued for a session, or held while it is
 * relocated), -1 if id is unknown. */
int queue_flush(struct queue *q, const char *id);

/* Deletes a message from the queue (and the spool), logging "<ID>: removed
 * by relayctl".  Returns 0 and calls done once the removal is durable; -1
 * if id is unknown, -2 if an attempt is in progress (then nothing changed
 * and done is not called: try again). */
int queue_remove(struct queue *q, const char *id, spool_done_fn done, void *arg);

/* The outcome of one delivery attempt, one line per recipient attempted. */
struct queue_outcome {
	char		 id[QID_SIZE];
	size_t		 n;
	struct queue_outcome_rcpt {
		char	*addr;
		char	*status;	/* "sent", "deferred", "bounced" */
		char	 dsn[16];
		char	*reason;
	}		*r;
};

/*
 * Calls fn once with the outcome of the message's next delivery attempt,
 * or at once with the last one if an attempt already ended (relayd keeps
 * the last few hundred outcomes), or with NULL if the message is unknown.
 * Returns a handle for queue_unwatch() while fn has not been called yet,
 * NULL if fn was called before returning.
 */
struct queue_watch;
struct queue_watch *queue_watch(struct queue *q, const char *id,
    void (*fn)(void *arg, const struct queue_outcome *o), void *arg);
void queue_unwatch(struct queue *q, struct queue_watch *w);

/* Deliveries in progress. */
size_t queue_active(const struct queue *q);
size_t queue_count(const struct queue *q);
void queue_free(struct queue *q);

#endif
