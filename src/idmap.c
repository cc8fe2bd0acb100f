/*
 * idmap — open addressing with linear probing and backward-shift deletion
 * (no tombstones), so lookups stay short however many messages come and go.
 */
#include "acconfig.h"

#include <stdlib.h>

#include "idmap.h"
#include "util.h"

struct idmap_slot {
	uint64_t	 key;	/* 0 = empty */
	void		*val;
};

struct idmap {
	struct idmap_slot	*slots;
	size_t			 cap;	/* power of two */
	size_t			 count;
};

static size_t
idmap_hash(uint64_t k, size_t cap)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return (size_t)k & (cap - 1);
}

struct idmap *
idmap_new(void)
{
	struct idmap *m = xcalloc(1, sizeof(*m));

	m->cap = 64;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	return m;
}

void
idmap_free(struct idmap *m)
{
	if (m == NULL)
		return;
	free(m->slots);
	free(m);
}

static void
idmap_grow(struct idmap *m)
{
	struct idmap_slot *old = m->slots;
	size_t oldcap = m->cap;

	m->cap *= 2;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	for (size_t i = 0; i < oldcap; i++) {
		if (old[i].key == 0)
			continue;
		size_t j = idmap_hash(old[i].key, m->cap);
		while (m->slots[j].key != 0)
			j = (j + 1) & (m->cap - 1);
		m->slots[j] = old[i];
	}
	free(old);
}

void *
idmap_put(struct idmap *m, uint64_t key, void *val)
{
	if ((m->count + 1) * 4 > m->cap * 3)
		idmap_grow(m);
	size_t i = idmap_hash(key, m->cap);
	while (m->slots[i].key != 0) {
		if (m->slots[i].key == key) {
			void *prev = m->slots[i].val;
			m->slots[i].val = val;
			return prev;
		}
		i = (i + 1) & (m->cap - 1);
	}
	m->slots[i].key = key;
	m->slots[i].val = val;
	m->count++;
	return NULL;
}

void *
idmap_get(const struct idmap *m, uint64_t key)
{
	size_t i = idmap_hash(key, m->cap);

	while (m->slots[i].key != 0) {
		if (m->slots[i].key == key)
			return m->slots[i].val;
		i = (i + 1) & (m->cap - 1);
	}
	return NULL;
}

void *
idmap_del(struct idmap *m, uint64_t key)
{
	size_t mask = m->cap - 1;
	size_t i = idmap_hash(key, m->cap);

	while (m->slots[i].key != key) {
		if (m->slots[i].key == 0)
			return NULL;
		i = (i + 1) & mask;
	}
	void *val = m->slots[i].val;
	/* Backward-shift: move later entries of the probe run into the hole
	 * when their home slot does not lie cyclically in (hole, j]. */
	size_t hole = i, j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (m->slots[j].key == 0)
			break;
		size_t home = idmap_hash(m->slots[j].key, m->cap);
		if ((hole <= j) ? (home > hole && home <= j) : (home > hole || home <= j))
			continue;
		m->slots[hole] = m->slots[j];
		hole = j;
	}
	m->slots[hole].key = 0;
	m->slots[hole].val = NULL;
	m->count--;
	return val;
}

size_t
idmap_count(const struct idmap *m)
{
	return m->count;
}

void
idmap_foreach(const struct idmap *m, void (*fn)(void *, uint64_t, void *), void *arg)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key != 0)
			fn(arg, m->slots[i].key, m->slots[i].val);
}
