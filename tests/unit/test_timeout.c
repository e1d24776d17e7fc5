/*
 * test_timeout.c - evm_spawn_opts.timeout_ms: the signal at the deadline,
 * SIGKILL after the grace for a child that ignores it, the record's
 * timed_out (callbacks, evm_proc_wait, evm_spawn_wait), no effect on a child
 * that exits first (its timer is gone with it), the group of a leader, and
 * the argument checks.
 */
#include "evmtest.h"

/*
 * Read fd until it has given n lines. The loop is not running meanwhile, so
 * a deadline cannot fire before the child has got this far.
 */
static void read_lines(int fd, int n)
{
	char c;
	while (n > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		assert_true(poll(&pfd, 1, (int)T_MS(10000)) == 1);
		ssize_t k = read(fd, &c, 1);
		if (k < 0 && errno == EAGAIN)
			continue;
		assert_int_equal(k, 1);
		n -= c == '\n';
	}
}

static struct evm_proc *spawn_to(struct evm_loop *loop, char *const *argv, struct t_exit *x,
				 uint64_t ms, int sig, uint64_t kill_ms, unsigned flags)
{
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = x, .timeout_ms = ms,
				   .timeout_signal = sig, .timeout_kill_ms = kill_ms,
				   .flags = flags};
	return t_spawn_opts(loop, argv, &o);
}

static void test_timeout_term(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_proc *p = spawn_to(loop, HARGV("pause"), &x, 50, 0, 0, 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.signal, SIGTERM);
	assert_true(x.rec.timed_out);
	assert_true(x.rec.runtime_ns >= 50 * 1000000ull); /* never before the deadline */
	assert_true(evm_proc_exit_record(p)->timed_out);
	assert_int_equal(evm_loop_alive(loop), 0);
	evm_proc_unref(p);
}

/* A child that ignores the signal gets SIGKILL after timeout_kill_ms. */
static void test_timeout_kill_after_grace(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .timeout_ms = 20,
				   .timeout_kill_ms = 50};
	o.stdio[1].mode = EVM_STDIO_PIPE;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("ignore", "15", "print", "x", "pause"), &o);
	int fd = evm_proc_stdio_fd(p, 1);
	read_lines(fd, 1); /* SIGTERM is ignored now */
	close(fd);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.signal, SIGKILL);
	assert_true(x.rec.timed_out);
	assert_true(x.rec.runtime_ns >= 70 * 1000000ull);
	evm_proc_unref(p);
}

static void test_timeout_custom_signal(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_proc *p = spawn_to(loop, HARGV("pause"), &x, 10, SIGINT, 0, 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.signal, SIGINT);
	assert_true(x.rec.timed_out);
	evm_proc_unref(p);
}

/* An exit before the deadline: not timed out, and the deadline is gone with the child. */
static void test_exit_before_timeout(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_proc *p = spawn_to(loop, HARGV("exit", "3"), &x, 600000, 0, 0, 0);
	assert_int_equal(evm_loop_alive(loop), 2); /* the child and its deadline */
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 3);
	assert_false(x.rec.timed_out);
	assert_int_equal(evm_loop_alive(loop), 0);
	evm_proc_unref(p);
}

/* Wait until p has exited, without reaping it (the loop does). */
static void exited(struct evm_proc *p)
{
	siginfo_t si;
	assert_int_equal(waitid(P_PID, (id_t)evm_proc_pid(p), &si, WEXITED | WNOWAIT), 0);
}

/*
 * A child that exited before its deadline, whose exit the loop has not read
 * when the deadline's timer runs (here: budget 1, another exit taken first):
 * not timed out. It was (the loop held up: a SIGSTOP, a freezer, a busy turn).
 */
static void test_exit_unseen_at_the_deadline_is_not_a_timeout(void **state)
{
	(void)state;
	struct evm_loop *loop;
	struct evm_loop_opts lo = {.budget = 1};
	assert_int_equal(evm_loop_new(&loop, &lo), 0);
	struct t_exit a = {0}, b = {0};
	struct evm_proc *pa = spawn_to(loop, HARGV("exit", "0"), &a, 0, 0, 0, 0);
	exited(pa); /* its pidfd is ready first */
	struct evm_proc *pb = spawn_to(loop, HARGV("exit", "4"), &b, 20, 0, 0, 0);
	exited(pb);
	usleep(60 * 1000); /* past b's deadline, the loop not running */
	RUN_UNTIL(loop, a.n == 1 && b.n == 1, 10000);
	assert_int_equal(b.rec.code, 4);
	assert_int_equal(b.rec.signal, 0);
	assert_false(b.rec.timed_out);
	evm_proc_unref(pa);
	evm_proc_unref(pb);
	evm_loop_free(loop);
}

/* A group leader's deadline reaches the whole group. */
static void test_timeout_group(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	/* the leader forks 2 members that ignore SIGTERM and hold the pipe's write end */
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .timeout_ms = 30,
				   .timeout_signal = SIGKILL, .flags = EVM_SPAWN_SETSID};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, fds[1]};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("group", "2", "pause"), &o);
	close(fds[1]);
	read_lines(fds[0], 2); /* both members forked */
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.signal, SIGKILL);
	assert_true(x.rec.timed_out);
	char buf[4096];
	t_read_all(fds[0], buf, sizeof(buf), 10000); /* EOF: every member is gone */
	close(fds[0]);
	evm_proc_unref(p);
}

static void test_timeout_wait_and_args(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_opts o = {.argv = HARGV("pause"), .timeout_ms = 10, .timeout_signal = -1};
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	o.timeout_signal = NSIG;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	o.timeout_signal = SIGKILL;
	o.pdeath_signal = SIGKILL;
	struct evm_proc *p;
	assert_int_equal(evm_spawn(loop, &o, &p), 0);
	RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	struct evm_exit e;
	assert_int_equal(evm_proc_wait(p, &e, 0), 0);
	assert_true(e.timed_out);
	assert_int_equal(e.signal, SIGKILL);
	evm_proc_unref(p);
}

/* A service's runs each get the deadline. */
static void test_timeout_service(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service_opts so = {.name = "t", .restart = EVM_RESTART_NEVER};
	so.spawn.argv = HARGV("pause");
	so.spawn.pdeath_signal = SIGKILL;
	so.spawn.timeout_ms = 20;
	so.spawn.timeout_signal = SIGKILL;
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	struct evm_service_info info;
	RUN_UNTIL(loop, (evm_service_info(svc, &info), info.has_exit), 10000);
	assert_true(info.last_exit.timed_out);
	assert_int_equal(info.last_exit.signal, SIGKILL);
	evm_service_remove(svc);
	RUN_UNTIL(loop, evm_loop_alive(loop) == 0, 10000);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_timeout_term, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_timeout_kill_after_grace, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_timeout_custom_signal, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_exit_before_timeout, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_exit_unseen_at_the_deadline_is_not_a_timeout, t_setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_timeout_group, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_timeout_wait_and_args, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_timeout_service, t_setup, t_teardown),
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("timeout", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed;
}
