/*
 * idmap — a hash map from 64-bit queue id values to pointers (open
 * addressing).  Used by spool recovery and by the queue's index.
 * The map does not own the values.
 */
#ifndef RELAYD_IDMAP_H
#define RELAYD_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap;

struct idmap *idmap_new(void);
void idmap_free(struct idmap *m);
/* Inserts or replaces; returns the previous value or NULL. Key 0 is reserved. */
void *idmap_put(struct idmap *m, uint64_t key, void *val);
void *idmap_get(const struct idmap *m, uint64_t key);
/* Removes; returns the value or NULL. */
void *idmap_del(struct idmap *m, uint64_t key);
size_t idmap_count(const struct idmap *m);
/* Calls fn for every entry, in no particular order; fn must not modify m. */
void idmap_foreach(const struct idmap *m, void (*fn)(void *arg, uint64_t key, void *val),
    void *arg);

#endif
