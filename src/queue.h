/*
 * queue — the in-memory index of queued messages (the spool is the truth on
 * disk; this is what the daemon knows about it).  Delivery scheduling,
 * per-upstream limits and retries belong here (relaying issue).
 */
#ifndef RELAYD_QUEUE_H
#define RELAYD_QUEUE_H

#include <stddef.h>

#include "spool.h"

struct queue;

struct queue *queue_new(void);
/* Takes ownership of env. */
void queue_add(struct queue *q, struct spool_envelope *env);
size_t queue_count(const struct queue *q);
void queue_free(struct queue *q);

#endif
