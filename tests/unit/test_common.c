/*
 * test_common.c - what the evmon command's programs share (src/common):
 * the hash table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hashmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct item {
	char name[16];
	int value;
	struct hnode node;
};

static struct item *find(struct hashmap *m, const char *name)
{
	struct hnode *n = hmap_get(m, name);
	return n ? HMAP_ENTRY(n, struct item, node) : NULL;
}

static void test_hashmap(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct hashmap m = {0};
	struct item *items = calloc(N, sizeof(*items));
	assert_non_null(items);
	assert_null(find(&m, "x"));
	for (int i = 0; i < N; i++) {
		snprintf(items[i].name, sizeof(items[i].name), "s%d", i);
		items[i].value = i;
		assert_int_equal(hmap_add(&m, &items[i].node, items[i].name), 0);
	}
	assert_int_equal(m.n, N);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", i);
		struct item *it = find(&m, name);
		assert_non_null(it);
		assert_int_equal(it->value, i);
	}
	assert_null(find(&m, "s5000"));
	/* every node once in an iteration */
	size_t seen = 0;
	long sum = 0;
	for (struct hnode *n = hmap_next(&m, NULL); n; n = hmap_next(&m, n)) {
		seen++;
		sum += HMAP_ENTRY(n, struct item, node)->value;
	}
	assert_int_equal(seen, N);
	assert_int_equal(sum, (long)N * (N - 1) / 2);
	/* the odd ones out: the even ones stay */
	for (int i = 1; i < N; i += 2)
		hmap_del(&m, &items[i].node);
	assert_int_equal(m.n, N / 2);
	assert_null(find(&m, "s1"));
	assert_non_null(find(&m, "s2"));
	hmap_clear(&m);
	assert_null(find(&m, "s2"));
	free(items);
}

static void test_fnv1a(void **state)
{
	(void)state;
	/* the published FNV-1a 64-bit test values */
	if (sizeof(size_t) == 8) {
		assert_true(hmap_hash("") == (size_t)0xcbf29ce484222325ull);
		assert_true(hmap_hash("a") == (size_t)0xaf63dc4c8601ec8cull);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hashmap),
		cmocka_unit_test(test_fnv1a),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
