/*
 * hashmap.h - the one hash table of the evmon command: string keys, FNV-1a,
 * separate chaining, intrusive (the entry embeds a struct hnode, so adding
 * allocates nothing but the occasional bucket array).
 *
 * The key is borrowed: it must stay valid, unchanged, while the node is in
 * a table (it is usually the name stored in the entry itself).
 */
#ifndef EVMON_HASHMAP_H
#define EVMON_HASHMAP_H

#include <stddef.h>

struct hnode {
	struct hnode *next;
	const char *key;
	size_t hash;
};

struct hashmap {
	struct hnode **buckets;
	size_t nbuckets; /* 0 or a power of two */
	size_t n;
};

#define HMAP_ENTRY(node, type, member) \
	((type *)(void *)((char *)(node) - offsetof(type, member)))

size_t hmap_hash(const char *s); /* FNV-1a */

/* The node of key, or NULL. */
struct hnode *hmap_get(const struct hashmap *m, const char *key);

/* Add n under key (not checked for duplicates). 0, or -ENOMEM (n not added). */
int hmap_add(struct hashmap *m, struct hnode *n, const char *key);

/* Take n (which is in m) out of m. */
void hmap_del(struct hashmap *m, struct hnode *n);

/*
 * Iteration in no particular order: hmap_next(m, NULL) is the first node,
 * NULL after the last. The node passed may be freed once its successor is
 * known; other nodes must not be added or removed meanwhile.
 */
struct hnode *hmap_next(const struct hashmap *m, const struct hnode *n);

/* Free the buckets (not the entries); m is empty and reusable. */
void hmap_clear(struct hashmap *m);

#endif
