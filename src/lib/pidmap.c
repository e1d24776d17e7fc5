/*
 * pidmap.c - pid -> live proc, for exits found by pid rather than by pidfd
 * (reaper mode, children without a pidfd). Open addressing with linear
 * probing and backward-shift deletion: no tombstones, so lookups stay short
 * however many children come and go. Load factor <= 1/2.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(pid_t pid, size_t cap)
{
	/* Fibonacci hashing: sequential pids spread over the table */
	return (size_t)(((uint64_t)(uint32_t)pid * 11400714819323198485ull) >> 32) & (cap - 1);
}

static int grow(struct evm__pidmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct evm__pidslot *s = calloc(cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].proc)
			continue;
		size_t j = slot_of(m->slots[i].pid, cap);
		while (s[j].proc)
			j = (j + 1) & (cap - 1);
		s[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = s;
	m->cap = cap;
	return 0;
}

int evm__pidmap_reserve(struct evm__pidmap *m)
{
	return (m->len + 1) * 2 > m->cap ? grow(m) : 0;
}

int evm__pidmap_put(struct evm__pidmap *m, pid_t pid, struct evm_proc *proc)
{
	if (evm__pidmap_reserve(m) < 0)
		return -ENOMEM;
	size_t i = slot_of(pid, m->cap);
	while (m->slots[i].proc && m->slots[i].pid != pid)
		i = (i + 1) & (m->cap - 1);
	if (!m->slots[i].proc)
		m->len++;
	m->slots[i].pid = pid;
	m->slots[i].proc = proc;
	return 0;
}

struct evm_proc *evm__pidmap_get(const struct evm__pidmap *m, pid_t pid)
{
	if (!m->cap)
		return NULL;
	size_t i = slot_of(pid, m->cap);
	while (m->slots[i].proc) {
		if (m->slots[i].pid == pid)
			return m->slots[i].proc;
		i = (i + 1) & (m->cap - 1);
	}
	return NULL;
}

void evm__pidmap_del(struct evm__pidmap *m, pid_t pid)
{
	if (!m->cap)
		return;
	size_t mask = m->cap - 1, i = slot_of(pid, m->cap);
	while (m->slots[i].proc && m->slots[i].pid != pid)
		i = (i + 1) & mask;
	if (!m->slots[i].proc)
		return;
	m->len--;
	/* shift back later entries of the run that hash at or before the hole */
	size_t hole = i;
	for (size_t j = (i + 1) & mask; m->slots[j].proc; j = (j + 1) & mask) {
		size_t home = slot_of(m->slots[j].pid, m->cap);
		/* move j into hole unless home lies cyclically in (hole, j] */
		bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (!stays) {
			m->slots[hole] = m->slots[j];
			hole = j;
		}
	}
	m->slots[hole].proc = NULL;
	m->slots[hole].pid = 0;
}

void evm__pidmap_free(struct evm__pidmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->len = 0;
}
