/*
 * test_pidmap.c - the pid -> proc map: random put/get/delete against a plain
 * array as the reference, with pids packed densely enough that probe runs
 * collide, wrap around the end of the table, and are shifted back on delete.
 */
#include "evmtest.h"

enum { RANGE = 4096 };

static struct evm_proc *ref[RANGE]; /* the reference: pid -> proc or NULL */
static size_t ref_len;

/* fake, never dereferenced proc pointers */
static struct evm_proc *fake(pid_t pid, unsigned gen)
{
	return (struct evm_proc *)(uintptr_t)(((uintptr_t)pid << 8) | (gen & 0xff) | 0x1000000);
}

static void check_all(const struct evm__pidmap *m)
{
	assert_int_equal(m->len, ref_len);
	assert_true(m->cap == 0 || (m->len + 0) * 2 <= m->cap);
	for (pid_t pid = 0; pid < RANGE; pid++)
		assert_ptr_equal(evm__pidmap_get(m, pid), ref[pid]);
}

static void test_random(void **state)
{
	(void)state;
	struct evm__pidmap m = {0};
	memset(ref, 0, sizeof(ref));
	ref_len = 0;
	assert_null(evm__pidmap_get(&m, 1)); /* empty, never allocated */
	evm__pidmap_del(&m, 1);
	srand(3);
	for (int round = 0; round < 20000; round++) {
		/* a working set that grows then shrinks, so the table grows and empties */
		int span = round < 10000 ? 64 + round / 8 : 64 + (20000 - round) / 8;
		pid_t pid = (pid_t)(rand() % span) + 1;
		int op = rand() % 3;
		if (op < 2) {
			struct evm_proc *p = fake(pid, (unsigned)round);
			assert_int_equal(evm__pidmap_put(&m, pid, p), 0);
			if (!ref[pid])
				ref_len++;
			ref[pid] = p;
		} else {
			evm__pidmap_del(&m, pid);
			if (ref[pid])
				ref_len--;
			ref[pid] = NULL;
		}
		if (round % 97 == 0)
			check_all(&m);
	}
	check_all(&m);
	for (pid_t pid = 0; pid < RANGE; pid++) {
		evm__pidmap_del(&m, pid);
		if (ref[pid])
			ref_len--;
		ref[pid] = NULL;
	}
	check_all(&m);
	evm__pidmap_free(&m);
	assert_int_equal(m.cap, 0);
}

/*
 * Many pids in one probe run: every deletion order must leave the others
 * findable (backward-shift deletion moves entries across the table's end).
 */
static void test_dense_delete_orders(void **state)
{
	(void)state;
	for (int order = 0; order < 3; order++) {
		struct evm__pidmap m = {0};
		enum { N = 31 }; /* stays in a 64-slot table: long runs, wrap-around */
		for (pid_t pid = 1; pid <= N; pid++)
			assert_int_equal(evm__pidmap_put(&m, pid * 64, fake(pid, 0)), 0);
		assert_int_equal(m.cap, 64);
		bool gone[N + 1] = {false};
		for (int k = 0; k < N; k++) {
			pid_t pid = order == 0 ? k + 1 : order == 1 ? N - k : (pid_t)((k * 7) % N) + 1;
			evm__pidmap_del(&m, pid * 64);
			gone[pid] = true;
			for (pid_t q = 1; q <= N; q++)
				assert_ptr_equal(evm__pidmap_get(&m, q * 64), gone[q] ? NULL : fake(q, 0));
		}
		assert_int_equal(m.len, 0);
		evm__pidmap_free(&m);
	}
}

static void test_replace(void **state)
{
	(void)state;
	struct evm__pidmap m = {0};
	assert_int_equal(evm__pidmap_put(&m, 42, fake(42, 1)), 0);
	assert_int_equal(evm__pidmap_put(&m, 42, fake(42, 2)), 0);
	assert_int_equal(m.len, 1);
	assert_ptr_equal(evm__pidmap_get(&m, 42), fake(42, 2));
	evm__pidmap_del(&m, 43); /* absent: no-op */
	assert_int_equal(m.len, 1);
	evm__pidmap_free(&m);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_dense_delete_orders),
		cmocka_unit_test(test_replace),
	};
	return cmocka_run_group_tests_name("pidmap", tests, NULL, NULL);
}
