/*
 * test_budget.c - evm_loop_opts.budget: one evm_loop_run_once handles at
 * most budget due timers, budget ready fds (exits) and budget orphans; the
 * rest comes in later calls, evm_loop_fd stays readable meanwhile, and
 * nothing is lost or reported twice.
 */
#include "evmtest.h"


static struct evm_loop *new_loop(unsigned flags, unsigned budget)
{
	struct evm_loop *loop;
	struct evm_loop_opts o = {.flags = flags, .budget = budget};
	assert_int_equal(evm_loop_new(&loop, &o), 0);
	return loop;
}

static void count_cb(struct evm_timer *t, void *data)
{
	(void)t;
	(*(int *)data)++;
}

static bool fd_readable(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	return poll(&pfd, 1, 0) == 1;
}

static void test_budget_timers(void **state)
{
	(void)state;
	struct evm_loop *loop = new_loop(0, 3);
	int fd = evm_loop_fd(loop), n = 0;
	for (int i = 0; i < 10; i++)
		assert_int_equal(evm_timer_add(loop, 0, count_cb, &n, NULL), 0);
	usleep(2000);
	int calls = 0;
	while (n < 10) {
		int before = n;
		assert_true(fd_readable(fd)); /* the host loop knows there is more */
		assert_true(evm_loop_run_once(loop, 0) >= 0);
		assert_true(n - before <= 3);
		assert_true(n > before);
		calls++;
	}
	assert_int_equal(calls, 4);
	evm_loop_free(loop);
}

/* Without a budget every due timer runs in one call. */
static void test_no_budget(void **state)
{
	(void)state;
	struct evm_loop *loop = new_loop(0, 0);
	int n = 0;
	for (int i = 0; i < 10; i++)
		assert_int_equal(evm_timer_add(loop, 0, count_cb, &n, NULL), 0);
	usleep(2000);
	assert_int_equal(evm_loop_run_once(loop, 0), 10);
	assert_int_equal(n, 10);
	evm_loop_free(loop);
}

static void count_exit(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)p;
	(void)e;
	(*(int *)data)++;
}

/* Six exits ready at once, budget 2: at most two per call, each once. */
static void test_budget_exits(void **state)
{
	(void)state;
	struct evm_loop *loop = new_loop(0, 2);
	int fd = evm_loop_fd(loop), n = 0;
	struct evm_proc *p[6];
	for (int i = 0; i < 6; i++) {
		struct evm_spawn_opts o = {.on_exit = count_exit, .data = &n};
		p[i] = t_spawn_opts(loop, HARGV("exit", "0"), &o);
	}
	for (int i = 0; i < 6; i++)
		WAIT_FOR(t_proc_state(evm_proc_pid(p[i])) == 'Z', 10000);
	int calls = 0;
	while (n < 6) {
		int before = n;
		/* the host's poll wakes (at once, or when the loop's
		 * deferred SIGCHLD scan is due in the sigchld modes) */
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, (int)T_MS(10000)) != 1)
			fail_msg("call %d: %d exits so far, fd not readable", calls, n);
		assert_true(evm_loop_run_once(loop, 0) >= 0);
		assert_true(n - before <= 2);
		calls++;
		assert_true(calls <= 100);
	}
	assert_true(calls >= 3);
	for (int i = 0; i < 6; i++)
		evm_proc_unref(p[i]);
	evm_loop_free(loop);
	assert_int_equal(n, 6);
}

static void count_orphan(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	if (ev->type == EVM_EV_ORPHAN)
		(*(int *)data)++;
}

/* A reaper's orphan storm is reaped budget at a time. */
static void test_budget_orphans(void **state)
{
	(void)state;
	struct evm_loop *loop = new_loop(EVM_LOOP_REAPER, 4);
	int orphans = 0;
	struct t_exit x = {0};
	assert_int_equal(evm_subscribe(loop, EVM_EV_ORPHAN, count_orphan, &orphans, NULL), 0);
	struct evm_proc *p = t_spawn(loop, HARGV("orphans", "12"), &x);
	uint64_t dl = t_now_ms() + T_MS(30000);
	while (orphans < 12 || x.n < 1) {
		int before = orphans;
		assert_true(evm_loop_run_once(loop, 50) >= 0);
		assert_true(orphans - before <= 4);
		assert_true(t_now_ms() < dl);
	}
	assert_int_equal(orphans, 12);
	evm_proc_unref(p);
	evm_loop_free(loop);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_timers),
		cmocka_unit_test(test_no_budget),
		cmocka_unit_test(test_budget_exits),
		cmocka_unit_test(test_budget_orphans),
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("budget", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed;
}
