/*
 * hashmap.c - string-keyed intrusive hash table (see hashmap.h).
 *
 * The table doubles when it is three quarters full, so a lookup costs one
 * hash and a chain of about one node; each node keeps its full hash, so
 * growing rehashes nothing and a chain compares strings only on a full
 * hash match.
 */
#include "hashmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 64

size_t hmap_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull; /* FNV offset basis */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)h;
}

struct hnode *hmap_get(const struct hashmap *m, const char *key)
{
	if (!m->nbuckets)
		return NULL;
	size_t h = hmap_hash(key);
	for (struct hnode *n = m->buckets[h & (m->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && !strcmp(n->key, key))
			return n;
	return NULL;
}

static int grow(struct hashmap *m)
{
	size_t nb = m->nbuckets ? m->nbuckets * 2 : MIN_BUCKETS;
	struct hnode **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < m->nbuckets; i++) {
		for (struct hnode *n = m->buckets[i], *next; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = nb;
	return 0;
}

int hmap_add(struct hashmap *m, struct hnode *n, const char *key)
{
	if ((m->n + 1) * 4 > m->nbuckets * 3 && grow(m) < 0)
		return -ENOMEM;
	n->key = key;
	n->hash = hmap_hash(key);
	struct hnode **head = &m->buckets[n->hash & (m->nbuckets - 1)];
	n->next = *head;
	*head = n;
	m->n++;
	return 0;
}

void hmap_del(struct hashmap *m, struct hnode *n)
{
	struct hnode **pp = &m->buckets[n->hash & (m->nbuckets - 1)];
	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	n->next = NULL;
	m->n--;
}

struct hnode *hmap_next(const struct hashmap *m, const struct hnode *n)
{
	if (n && n->next)
		return n->next;
	for (size_t i = n ? (n->hash & (m->nbuckets - 1)) + 1 : 0; i < m->nbuckets; i++)
		if (m->buckets[i])
			return m->buckets[i];
	return NULL;
}

void hmap_clear(struct hashmap *m)
{
	free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = m->n = 0;
}
