/*
 * queue — the in-memory index of queued messages, keyed by queue id.
 * For now it only holds what was accepted or recovered; delivery
 * scheduling comes with the relaying issue.
 */
#include "acconfig.h"

#include <stdlib.h>

#include "idmap.h"
#include "queue.h"
#include "util.h"

struct queue {
	struct idmap	*msgs;	/* qid value -> struct spool_envelope (owned) */
};

struct queue *
queue_new(void)
{
	struct queue *q = xcalloc(1, sizeof(*q));

	q->msgs = idmap_new();
	return q;
}

void
queue_add(struct queue *q, struct spool_envelope *env)
{
	uint64_t v;

	if (!qid_decode(env->id, &v) || v == 0) {
		spool_envelope_free(env);
		return;
	}
	spool_envelope_free(idmap_put(q->msgs, v, env));
}

size_t
queue_count(const struct queue *q)
{
	return idmap_count(q->msgs);
}

static void
free_entry(void *arg, uint64_t key, void *val)
{
	spool_envelope_free(val);
}

void
queue_free(struct queue *q)
{
	if (q == NULL)
		return;
	idmap_foreach(q->msgs, free_entry, NULL);
	idmap_free(q->msgs);
	free(q);
}
