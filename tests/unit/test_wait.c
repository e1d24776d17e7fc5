/*
 * test_wait.c - other threads: evm_proc_wait (result, timeout, on the loop
 * thread, after the exit), evm_spawn and evm_spawn_wait from many threads at
 * once while the loop runs, references dropped off the loop thread, and
 * evm_loop_free releasing threads blocked in evm_proc_wait or evm_spawn.
 */
#include "evmtest.h"

#include <pthread.h>

struct runner {
	struct evm_loop *loop;
	pthread_t th;
};

static void *run_loop(void *arg)
{
	struct evm_loop *loop = arg;
	evm_loop_run(loop);
	return NULL;
}

/*
 * The loop runs on a thread of its own; the test thread plays "another
 * thread". Stop and join before touching the loop from the test thread.
 */
static void start_loop(struct runner *r, struct evm_loop *loop)
{
	r->loop = loop;
	assert_int_equal(pthread_create(&r->th, NULL, run_loop, loop), 0);
	/* the loop thread is whichever ran the loop last: until the runner's
	 * first iteration, this thread would still count as the loop's */
	WAIT_FOR(!evm__on_loop_thread(loop), 10000);
}

static void stop_loop(struct runner *r)
{
	evm_loop_stop(r->loop);
	pthread_join(r->th, NULL);
}

/*
 * This process's only thread? Joined threads leave /proc a moment after
 * pthread_join; ThreadSanitizer keeps a thread of its own (then false).
 */
static bool alone(void)
{
	for (int i = 0; i < 500; i++) {
		char buf[2048];
		int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		buf[n > 0 ? n : 0] = 0;
		const char *t = strstr(buf, "\nThreads:");
		if (t && atoi(t + 9) == 1)
			return true;
		usleep(2000);
	}
	return false;
}

static void test_proc_wait(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_proc *a = t_spawn(loop, HARGV("sleep", "30", "exit", "12"), NULL);
	struct evm_proc *b = t_spawn(loop, HARGV("pause"), NULL);
	/* the creator, alone, before any thread runs the loop: nobody could report it */
	if (alone()) {
		assert_int_equal(evm_proc_wait(a, NULL, 0), -EDEADLK);
		assert_int_equal(evm_proc_wait(a, NULL, -1), -EDEADLK);
	} else {
		print_message("note: not checked here: the creator's -EDEADLK (a second thread)\n");
	}
	assert_int_equal(evm_proc_wait(NULL, NULL, 0), -EINVAL);
	struct runner r;
	start_loop(&r, loop);
	struct evm_exit e;
	assert_int_equal(evm_proc_wait(a, &e, 10000), 0);
	assert_int_equal(e.code, 12);
	assert_int_equal(e.pid, evm_proc_pid(a));
	assert_true(evm_proc_exited(a));
	/* again: returns at once */
	memset(&e, 0, sizeof(e));
	assert_int_equal(evm_proc_wait(a, &e, 0), 0);
	assert_int_equal(e.code, 12);
	assert_int_equal(evm_proc_wait(a, NULL, -1), 0);
	/* b runs on: a timeout */
	assert_int_equal(evm_proc_wait(b, &e, 30), -ETIMEDOUT);
	assert_int_equal(evm_proc_wait(b, NULL, 0), -ETIMEDOUT);
	stop_loop(&r);
	assert_int_equal(evm_proc_signal(b, SIGKILL), 0);
	start_loop(&r, loop);
	assert_int_equal(evm_proc_wait(b, &e, -1), 0);
	assert_int_equal(e.signal, SIGKILL);
	stop_loop(&r);
	evm_proc_unref(a);
	evm_proc_unref(b);
}

/*
 * On the thread that ran the loop, outside the loop: -EDEADLK, whatever the
 * timeout (it would time out or hang: nobody else reports exits).
 */
static void test_proc_wait_on_loop_thread(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_proc *p = t_spawn(loop, HARGV("pause"), NULL);
	assert_int_equal(evm_loop_run_once(loop, 0), 0);
	assert_int_equal(evm_proc_wait(p, NULL, 30), -EDEADLK);
	assert_int_equal(evm_proc_wait(p, NULL, -1), -EDEADLK);
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0")};
	assert_int_equal(evm_spawn_wait(loop, &o, NULL), -EDEADLK);
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	struct evm_exit e;
	assert_int_equal(evm_proc_wait(p, &e, -1), 0); /* exited: the record, at once */
	assert_int_equal(e.signal, SIGKILL);
	evm_proc_unref(p);
}

static void *run_once_then_exit(void *arg)
{
	evm_loop_run_once(arg, 0);
	return NULL;
}

/*
 * The thread that ran the loop has exited and the waiter is now the
 * process's only thread: nobody could report the exit. It slept for good
 * with timeout -1 (and ran out a timeout for nothing).
 */
static void test_proc_wait_after_the_runner_exited(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_proc *p = t_spawn(loop, HARGV("pause"), NULL);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, run_once_then_exit, loop), 0);
	pthread_join(t, NULL);
	bool single = alone();
	if (single) {
		assert_int_equal(evm_proc_wait(p, NULL, 100), -EDEADLK);
		assert_int_equal(evm_proc_wait(p, NULL, -1), -EDEADLK);
		/* and a spawn, carried out by the loop's thread, blocked for good */
		struct evm_spawn_opts o = {.argv = HARGV("exit", "0")};
		struct evm_proc *q = NULL;
		assert_int_equal(evm_spawn(loop, &o, &q), -EDEADLK);
		assert_null(q);
	}
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
	if (!single)
		T_SKIP("this process has another thread (a sanitizer's): it could run the loop");
}

/*
 * The natural hand-off: create the loop, start a thread that runs it, spawn
 * and wait at once. Whether the runner's first iteration comes before, during
 * or after the spawn, the spawn and the wait work (no -EDEADLK, no hang).
 */
static void test_handoff_spawn_at_once(void **state)
{
	(void)state;
	for (int round = 0; round < 20; round++) {
		struct evm_loop *loop;
		assert_int_equal(evm_loop_new(&loop, NULL), 0);
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, run_loop, loop), 0);
		char code[16];
		snprintf(code, sizeof(code), "%d", round);
		struct evm_spawn_opts o = {.argv = HARGV("exit", code), .pdeath_signal = SIGKILL};
		struct evm_proc *p = NULL;
		assert_int_equal(evm_spawn(loop, &o, &p), 0);
		struct evm_exit e;
		assert_int_equal(evm_proc_wait(p, &e, -1), 0);
		assert_int_equal(e.code, round);
		assert_int_equal(evm_spawn_wait(loop, &o, &e), 0);
		assert_int_equal(e.code, round);
		evm_proc_unref(p);
		evm_loop_stop(loop);
		pthread_join(th, NULL);
		evm_loop_free(loop);
	}
	assert_int_equal(t_count_children(), 0);
}

/* ------------------------------------------------ spawning from threads */

static pthread_t loop_thread_id;
static atomic_int cb_on_other_thread;

static void cb_thread_check(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)p;
	(void)e;
	(void)data;
	if (!pthread_equal(pthread_self(), loop_thread_id))
		atomic_fetch_add(&cb_on_other_thread, 1);
}

struct worker {
	struct evm_loop *loop;
	int id, failures;
	char msg[160];
};

static void *worker_spawn_wait(void *arg)
{
	struct worker *w = arg;
	char code[8];
	for (int i = 0; i < (T_SAN ? 5 : 15); i++) {
		int want = (w->id * 31 + i) % 200;
		snprintf(code, sizeof(code), "%d", want);
		char *argv[] = {t_helper, "exit", code, NULL};
		struct evm_spawn_opts o = {.argv = argv, .on_exit = cb_thread_check,
					   .pdeath_signal = SIGKILL};
		struct evm_exit e;
		int r;
		if (i % 3 == 0) {
			/* spawn, then wait, then drop the reference here */
			struct evm_proc *p;
			r = evm_spawn(w->loop, &o, &p);
			if (r == 0) {
				r = evm_proc_wait(p, &e, 20000);
				evm_proc_unref(p);
			}
		} else {
			r = evm_spawn_wait(w->loop, &o, &e);
		}
		if (r != 0 || e.code != want) {
			w->failures++;
			snprintf(w->msg, sizeof(w->msg), "worker %d: r=%d code %d want %d", w->id, r,
				 r == 0 ? e.code : -1, want);
		}
	}
	/* a failure travels back synchronously too */
	char *bad[] = {"/nonexistent/x", NULL};
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = bad, .error = &err};
	struct evm_exit e;
	int r = evm_spawn_wait(w->loop, &o, &e);
	if (r != -ENOENT || err.stage != EVM_STAGE_EXEC) {
		w->failures++;
		snprintf(w->msg, sizeof(w->msg), "worker %d: bad spawn r=%d stage %d", w->id, r,
			 err.stage);
	}
	return NULL;
}

static void test_spawn_from_threads(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	enum { W = 8 };
	struct worker w[W];
	pthread_t th[W];
	struct runner r;
	atomic_store(&cb_on_other_thread, 0);
	start_loop(&r, loop);
	loop_thread_id = r.th;
	for (int i = 0; i < W; i++) {
		w[i] = (struct worker){.loop = loop, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, worker_spawn_wait, &w[i]), 0);
	}
	for (int i = 0; i < W; i++)
		pthread_join(th[i], NULL);
	stop_loop(&r);
	for (int i = 0; i < W; i++)
		if (w[i].failures)
			fail_msg("%s", w[i].msg);
	assert_int_equal(atomic_load(&cb_on_other_thread), 0); /* callbacks on the loop thread */
	assert_int_equal(evm_loop_alive(loop), 0);
}

static void test_spawn_wait_on_loop_thread(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0")};
	struct evm_exit e;
	assert_int_equal(evm_spawn_wait(NULL, &o, &e), -EINVAL);
	if (!alone()) {
		T_SKIP("the creator's -EDEADLK: this process has a second thread");
		return;
	}
	assert_int_equal(evm_spawn_wait(loop, &o, &e), -EDEADLK);
}

/* ------------------------------------------- evm_loop_free vs. waiters */

struct blocked {
	struct evm_loop *loop;
	struct evm_proc *proc;
	int result;
	struct evm_exit e;
	atomic_bool started;
};

static void *wait_forever(void *arg)
{
	struct blocked *b = arg;
	atomic_store(&b->started, true);
	b->result = evm_proc_wait(b->proc, &b->e, -1);
	return NULL;
}

static void *spawn_blocked(void *arg)
{
	struct blocked *b = arg;
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0"), .pdeath_signal = SIGKILL};
	struct evm_proc *p = NULL;
	atomic_store(&b->started, true);
	b->result = evm_spawn(b->loop, &o, &p);
	if (p)
		evm_proc_unref(p);
	return NULL;
}

static bool xreq_pending(struct evm_loop *loop)
{
	pthread_mutex_lock(&loop->mu);
	bool pending = loop->xreqs != NULL;
	pthread_mutex_unlock(&loop->mu);
	return pending;
}

/*
 * Freeing the loop kills the child a thread waits for (the wait returns the
 * SIGKILL exit) and cancels a spawn request no loop will ever run.
 */
static void test_free_releases_threads(void **state)
{
	(void)state;
	struct evm_loop *loop;
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	struct blocked w = {.loop = loop}, s = {.loop = loop};
	w.proc = t_spawn(loop, HARGV("pause"), NULL);
	pthread_t tw, ts;
	assert_int_equal(pthread_create(&tw, NULL, wait_forever, &w), 0);
	assert_int_equal(pthread_create(&ts, NULL, spawn_blocked, &s), 0);
	WAIT_FOR(atomic_load(&w.started) && xreq_pending(loop), 10000);
	WAIT_FOR(atomic_load(&loop->nwaiters) == 1, 10000); /* the spawner; exit waits are not the loop's */
	evm_loop_free(loop);
	pthread_join(tw, NULL);
	pthread_join(ts, NULL);
	assert_int_equal(w.result, 0);
	assert_int_equal(w.e.signal, SIGKILL);
	assert_int_equal(s.result, -ECANCELED);
	evm_proc_unref(w.proc);
	assert_int_equal(t_count_children(), 0);
}

/* Threads: in /proc/self/status, read while descriptors are plentiful. */
static int proc_threads(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "Threads:", 8))
			n = atoi(line + 8);
	if (f)
		fclose(f);
	return n;
}

static void *linger(void *arg)
{
	atomic_bool *stop = arg;
	while (!atomic_load(stop))
		usleep(1000);
	return NULL;
}

/*
 * The thread count behind the SIGCHLD warning (no other thread, nobody to
 * take the signal: no warning) needs no descriptor: with none free it still
 * tells one thread from two. It read /proc and said "not alone" before.
 */
static void threads_at_fd_limit(void *arg)
{
	(void)arg;
	int single = proc_threads() == 1;
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	struct rlimit low = {3, rl.rlim_max};
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	CHECK(open("/dev/null", O_RDONLY | O_CLOEXEC) < 0 && errno == EMFILE);
	CHECK(evm__single_threaded() == single);
	atomic_bool stop = false;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, linger, &stop) == 0);
	CHECK(evm__single_threaded() == 0);
	atomic_store(&stop, true);
	pthread_join(t, NULL);
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

static void test_single_threaded_at_fd_limit(void **state)
{
	(void)state;
#ifdef EVMON_TSAN_H
	/* the sanitizer's runtime needs descriptors of its own at a limit of 3 */
	T_SKIP("not under ThreadSanitizer");
#endif
	t_forked(threads_at_fd_limit, NULL);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_proc_wait, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_from_threads, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_wait_on_loop_thread, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_proc_wait_on_loop_thread, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_proc_wait_after_the_runner_exited, t_setup, t_teardown),
		cmocka_unit_test(test_handoff_spawn_at_once),
		cmocka_unit_test(test_free_releases_threads),
		cmocka_unit_test(test_single_threaded_at_fd_limit),
	};
	int failed = 0;
	/* the cross-thread paths in both spawn paths */
	for (int i = 0; i < 2; i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("wait", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed;
}
