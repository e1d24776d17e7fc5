/*
 * test_common.c - what the evmon command's programs share (src/common):
 * the hash table, the duration grammar.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "duration.h"
#include "hashmap.h"

#include <errno.h>

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

static uint64_t dur(const char *s)
{
	uint64_t ms = 12345;
	int r = cli_parse_duration(s, &ms);
	if (r < 0)
		fail_msg("'%s' refused: %d", s, r);
	return ms;
}

static void test_duration(void **state)
{
	(void)state;
	assert_int_equal(dur("0"), 0);
	assert_int_equal(dur("2"), 2000);
	assert_int_equal(dur("2.5"), 2500);
	assert_int_equal(dur("2.5s"), 2500);
	assert_int_equal(dur(".5"), 500);
	assert_int_equal(dur("5."), 5000);
	assert_int_equal(dur("250ms"), 250);
	assert_int_equal(dur("1.5ms"), 2); /* nearest, half up */
	assert_int_equal(dur("1.4ms"), 1);
	assert_int_equal(dur("0.0005"), 1);
	assert_int_equal(dur("2m"), 120000);
	assert_int_equal(dur("1.5m"), 90000);
	assert_int_equal(dur("1h"), 3600000);
	assert_int_equal(dur("0.0000009h"), 3);
	assert_int_equal(dur("1.9999999999999s"), 2000);
	assert_true(dur("1000000000000000ms") == DURATION_MAX_MS);
	assert_true(dur("277777.7h") == 999999720000ull);
	const char *bad[] = {"", ".", "s", "ms", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1..2",
			     "1.2.3", "5d", "1S", "1sec", "inf", "nan", "1mss", NULL};
	for (const char **b = bad; *b; b++) {
		uint64_t ms = 7;
		if (cli_parse_duration(*b, &ms) != -EINVAL)
			fail_msg("'%s' accepted", *b);
		assert_int_equal(ms, 7);
	}
	uint64_t ms;
	assert_int_equal(cli_parse_duration("1000000000000001ms", &ms), -ERANGE);
	assert_int_equal(cli_parse_duration("1000000000001s", &ms), -ERANGE);
	assert_int_equal(cli_parse_duration("300000000h", &ms), -ERANGE);
	assert_int_equal(cli_parse_duration("99999999999999999999999999", &ms), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hashmap),
		cmocka_unit_test(test_fnv1a),
		cmocka_unit_test(test_duration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
