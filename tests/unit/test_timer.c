/*
 * test_timer.c - timers: deadline order, FIFO among equal deadlines, cancel
 * (before, from its own callback, of another timer from a callback, through
 * a handle the library cleared when the timer went), timers
 * added from callbacks, the heap under random insert/cancel, the loop's
 * timeout, and the timerfd behind evm_loop_fd.
 *
 * Order tests drive the heap directly (evm__timers_run with a chosen "now")
 * so they never wait for real time; the rest run the loop with short delays.
 */
#include "evmtest.h"

#include <sys/timerfd.h>

#define MAXFIRED 4096

static struct {
	int n;
	int id[MAXFIRED];
	uint64_t deadline[MAXFIRED];
	uint64_t seq[MAXFIRED];
} fired;

static void record(struct evm_timer *t, void *data)
{
	assert_true(fired.n < MAXFIRED);
	fired.id[fired.n] = (int)(intptr_t)data;
	fired.deadline[fired.n] = t->deadline;
	fired.seq[fired.n] = t->seq;
	fired.n++;
}

static int setup(void **state)
{
	memset(&fired, 0, sizeof(fired));
	return t_setup(state);
}

/* Real delays: the loop fires them in deadline order, whatever the add order. */
static void test_order(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	static const int delays[] = {40, 10, 30, 0, 20};
	for (int i = 0; i < 5; i++)
		assert_int_equal(evm_timer_add(loop, (uint64_t)delays[i], record,
					       (void *)(intptr_t)delays[i], NULL), 0);
	assert_int_equal(evm_loop_alive(loop), 5);
	RUN_UNTIL(loop, fired.n == 5, 5000);
	for (int i = 0; i < 5; i++)
		assert_int_equal(fired.id[i], i * 10);
	assert_int_equal(evm_loop_alive(loop), 0);
}

/*
 * Equal deadlines fire in the order they were added. The deadlines are set
 * to exactly equal values per bucket (see below), so this checks the heap's
 * tie-break, not clock resolution.
 */
static void test_fifo_ties(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	enum { N = 600, BUCKETS = 4 };
	struct evm_timer *t[N];
	int bucket[N];
	srand(1);
	for (int i = 0; i < N; i++) {
		bucket[i] = rand() % BUCKETS;
		/* a bucket is a whole number of hours: no two buckets can overlap */
		assert_int_equal(evm_timer_add(loop, (uint64_t)(bucket[i] + 1) * 3600000u, record,
					       (void *)(intptr_t)i, &t[i]),
				 0);
	}
	/*
	 * Rewrite each deadline to its bucket number. Within a bucket the real
	 * deadlines grew with the add order, so the heap's (deadline, seq) order
	 * is unchanged by the rewrite and the heap stays valid; only the
	 * tie-break can now order timers of one bucket.
	 */
	for (int i = 0; i < N; i++)
		t[i]->deadline = (uint64_t)bucket[i];
	loop->now = BUCKETS;
	assert_int_equal(evm__timers_run(loop), N);
	assert_int_equal(fired.n, N);
	int k = 0;
	for (int b = 0; b < BUCKETS; b++)
		for (int i = 0; i < N; i++)
			if (bucket[i] == b)
				assert_int_equal(fired.id[k++], i);
	assert_int_equal(loop->nheap, 0);
}

/* Random inserts and cancels: what fires is exactly what was not cancelled, sorted. */
static void test_heap_random(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	enum { N = 3000 };
	static struct evm_timer *t[N];
	static bool cancelled[N];
	srand(2);
	memset(cancelled, 0, sizeof(cancelled));
	int live = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(evm_timer_add(loop, (uint64_t)(rand() % 50) * 3600000u, record,
					       (void *)(intptr_t)i, &t[i]),
				 0);
		live++;
		/* cancel an earlier random timer now and then: removal from the middle */
		if (i % 3 == 0) {
			int j = rand() % (i + 1);
			if (!cancelled[j]) {
				evm_timer_cancel(t[j]);
				cancelled[j] = true;
				live--;
			}
		}
	}
	assert_int_equal(loop->nheap, (size_t)live);
	for (size_t i = 0; i < loop->nheap; i++)
		assert_int_equal(loop->heap[i]->idx, i);
	loop->now = UINT64_MAX - 1;
	assert_int_equal(evm__timers_run(loop), live);
	assert_int_equal(fired.n, live);
	for (int i = 0; i < fired.n; i++) {
		assert_false(cancelled[fired.id[i]]);
		if (i > 0) {
			bool ordered = fired.deadline[i - 1] < fired.deadline[i] ||
				       (fired.deadline[i - 1] == fired.deadline[i] &&
					fired.seq[i - 1] < fired.seq[i]);
			assert_true(ordered);
		}
	}
}

static void test_cancel_pending(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_timer *a, *b;
	assert_int_equal(evm_timer_add(loop, 10, record, (void *)1, &a), 0);
	assert_int_equal(evm_timer_add(loop, 20, record, (void *)2, &b), 0);
	evm_timer_cancel(a);
	evm_timer_cancel(NULL); /* a no-op */
	assert_int_equal(evm_loop_alive(loop), 1);
	RUN_UNTIL(loop, fired.n == 1, 5000);
	assert_int_equal(fired.id[0], 2);
	assert_int_equal(evm_loop_alive(loop), 0);
}

static void cancel_self(struct evm_timer *t, void *data)
{
	record(t, data);
	evm_timer_cancel(t); /* legal inside its own callback: freed when it returns */
}

static void test_cancel_self(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_timer_add(loop, 0, cancel_self, (void *)7, NULL), 0);
	RUN_UNTIL(loop, fired.n == 1, 5000);
	assert_int_equal(evm_loop_alive(loop), 0);
}

static struct evm_timer *victims[2];

static void cancel_others(struct evm_timer *t, void *data)
{
	record(t, data);
	for (int i = 0; i < 2; i++)
		evm_timer_cancel(victims[i]); /* clears victims[i] */
}

/* A callback cancels a timer due in the same iteration and one due later. */
static void test_cancel_other(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_timer *first;
	assert_int_equal(evm_timer_add(loop, 1, cancel_others, (void *)1, &first), 0);
	assert_int_equal(evm_timer_add(loop, 1, record, (void *)2, &victims[0]), 0);
	assert_int_equal(evm_timer_add(loop, 10000, record, (void *)3, &victims[1]), 0);
	/* all three due for the heap: the first runs first and cancels the others */
	loop->now = first->deadline + 11000ull * 1000000;
	evm__timers_run(loop);
	assert_int_equal(fired.n, 1);
	assert_int_equal(fired.id[0], 1);
	assert_null(victims[0]);
	assert_null(victims[1]);
	assert_int_equal(evm_loop_alive(loop), 0);
}

static struct evm_timer *periodic;
static int periodic_n;

static void tick(struct evm_timer *t, void *data)
{
	record(t, data);
	assert_null(periodic); /* cleared before the callback runs */
	if (++periodic_n < 3)
		assert_int_equal(evm_timer_add(t->loop, 0, tick, data, &periodic), 0);
}

/* The handle kept through out is cleared when the timer is gone: cancelling it is always safe. */
static void test_handle_cleared(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_timer *h;
	assert_int_equal(evm_timer_add(loop, 0, record, (void *)1, &h), 0);
	assert_non_null(h);
	RUN_UNTIL(loop, fired.n == 1, 5000);
	assert_null(h);
	evm_timer_cancel(h); /* after it fired: a no-op, no use after free */
	assert_int_equal(evm_timer_add(loop, 60000, record, (void *)2, &h), 0);
	evm_timer_cancel(h);
	assert_null(h);
	evm_timer_cancel(h);
	/* a failed add clears it too */
	h = (struct evm_timer *)&h;
	assert_int_equal(evm_timer_add(loop, 1, NULL, NULL, &h), -EINVAL);
	assert_null(h);
	/* a callback may add the next timer under its own handle */
	periodic_n = 0;
	assert_int_equal(evm_timer_add(loop, 0, tick, (void *)3, &periodic), 0);
	RUN_UNTIL(loop, periodic_n == 3, 5000);
	assert_null(periodic);
	/* a handle overwritten by a newer timer keeps naming the newer one */
	assert_int_equal(evm_timer_add(loop, 0, record, (void *)4, &h), 0);
	struct evm_timer *older = h;
	assert_int_equal(evm_timer_add(loop, 60000, record, (void *)5, &h), 0);
	assert_ptr_not_equal(h, older);
	RUN_UNTIL(loop, fired.id[fired.n - 1] == 4, 5000);
	assert_non_null(h);
	evm_timer_cancel(h);
	assert_null(h);
	assert_int_equal(evm_loop_alive(loop), 0);
}

static int readd_count;

static void readd(struct evm_timer *t, void *data)
{
	record(t, data);
	if (++readd_count < 3)
		assert_int_equal(evm_timer_add(t->loop, 0, readd, data, NULL), 0);
}

/* A 0 ms timer added by a callback waits for the next iteration (no starvation). */
static void test_readd_zero(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	readd_count = 0;
	assert_int_equal(evm_timer_add(loop, 0, readd, (void *)1, NULL), 0);
	int iterations = 0;
	while (fired.n < 3) {
		assert_true(evm_loop_run_once(loop, 1000) >= 0);
		assert_true(++iterations <= 100);
		assert_true(fired.n <= iterations);
	}
	assert_int_equal(evm_loop_alive(loop), 0);
}

static struct evm_timer *nested_self;

/*
 * A callback cannot run the loop (-EDEADLK: no nested iterations), and may
 * cancel the timer that is firing (a no-op).
 */
static void nested_outer(struct evm_timer *t, void *data)
{
	record(t, data);
	assert_int_equal(evm_loop_run_once(t->loop, 0), -EDEADLK);
	assert_int_equal(evm_loop_run(t->loop), -EDEADLK);
	evm_timer_cancel(nested_self);
}

static void test_no_nested_run_and_cancel_self(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_timer_add(loop, 0, nested_outer, (void *)1, &nested_self), 0);
	RUN_UNTIL(loop, fired.n == 1, 5000);
	assert_int_equal(fired.id[0], 1);
	assert_int_equal(evm_loop_alive(loop), 0);
	/* at top level again, the loop runs */
	assert_true(evm_loop_run_once(loop, 0) >= 0);
}

static void test_timeout(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_loop_timeout(loop), -1);
	struct evm_timer *t;
	assert_int_equal(evm_timer_add(loop, 5000, record, NULL, &t), 0);
	int ms = evm_loop_timeout(loop);
	assert_true(ms > 0 && ms <= 5000);
	evm_timer_cancel(t);
	assert_int_equal(evm_loop_timeout(loop), -1);
	/* decades away: clamped to an int, never negative */
	assert_int_equal(evm_timer_add(loop, 1000000000000ull, record, NULL, &t), 0);
	assert_int_equal(evm_loop_timeout(loop), INT32_MAX);
	evm_timer_cancel(t);
	/* the end of time (the deadline saturates): never due, but a timer (not -1, "none") */
	assert_int_equal(evm_timer_add(loop, UINT64_MAX, record, NULL, &t), 0);
	assert_int_equal(evm_loop_timeout(loop), INT32_MAX);
	evm_timer_cancel(t);
	assert_int_equal(evm_timer_add(loop, 0, record, NULL, NULL), 0);
	assert_int_equal(evm_loop_timeout(loop), 0);
	assert_int_equal(evm_timer_add(NULL, 1, record, NULL, NULL), -EINVAL);
	assert_int_equal(evm_timer_add(loop, 1, NULL, NULL, NULL), -EINVAL);
}

static bool fd_readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	return r > 0 && (p.revents & POLLIN);
}

/* evm_loop_fd: poll() on it wakes for a due timer; a cancelled one does not wake it. */
static void test_loop_fd_timers(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int fd = evm_loop_fd(loop);
	assert_true(fd >= 0);
	assert_int_equal(evm_loop_fd(loop), fd); /* stable */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_false(fd_readable(fd, 0));

	assert_int_equal(evm_timer_add(loop, 30, record, (void *)1, NULL), 0);
	assert_true(fd_readable(fd, 10000));
	while (fired.n == 0)
		assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_false(fd_readable(fd, 0));

	/* two timers: after the first fires, the fd is re-armed for the second */
	assert_int_equal(evm_timer_add(loop, 10, record, (void *)2, NULL), 0);
	assert_int_equal(evm_timer_add(loop, 40, record, (void *)3, NULL), 0);
	while (fired.n < 3) {
		assert_true(fd_readable(fd, 10000));
		assert_true(evm_loop_run_once(loop, 0) >= 0);
	}
	assert_int_equal(fired.id[1], 2);
	assert_int_equal(fired.id[2], 3);

	/* cancelled before its deadline: the fd stays quiet past it */
	struct evm_timer *t;
	assert_int_equal(evm_timer_add(loop, 20, record, (void *)4, &t), 0);
	evm_timer_cancel(t);
	assert_false(fd_readable(fd, 80));
	assert_int_equal(fired.n, 3);
}

/* Timers added before evm_loop_fd is first called are seen by the timerfd too. */
static void test_loop_fd_late(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_timer_add(loop, 20, record, (void *)1, NULL), 0);
	int fd = evm_loop_fd(loop);
	assert_true(fd_readable(fd, 10000));
	while (fired.n == 0)
		assert_true(evm_loop_run_once(loop, 0) >= 0);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_fifo_ties, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_heap_random, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_pending, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_self, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_handle_cleared, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_other, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_readd_zero, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_no_nested_run_and_cancel_self, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_loop_fd_timers, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_loop_fd_late, setup, t_teardown),
	};
	return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
