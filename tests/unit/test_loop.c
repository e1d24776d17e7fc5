/*
 * test_loop.c - the loop itself: creation arguments, run_once timeouts, stop
 * (from a callback, from another thread, before run), embedding through
 * evm_loop_fd (exits and timers wake a poll()), the cached clock, alive
 * counts, and evm_loop_free with work outstanding: live children are killed
 * and reaped, caller references stay usable, callbacks cannot keep it alive.
 */
#include "evmtest.h"

#include <pthread.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>

static void test_new_args(void **state)
{
	(void)state;
	struct evm_loop *loop;
	struct evm_loop_opts bad = {.flags = 1u << 20};
	assert_int_equal(evm_loop_new(NULL, NULL), -EINVAL);
	assert_int_equal(evm_loop_new(&loop, &bad), -EINVAL);
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	evm_loop_free(loop);
	evm_loop_free(NULL);
	assert_int_equal(evm_loop_run(NULL), -EINVAL);
	assert_int_equal(evm_loop_run_once(NULL, 0), -EINVAL);
	assert_int_equal(evm_loop_fd(NULL), -EINVAL);
	evm_loop_stop(NULL);
	assert_int_equal(evm_loop_alive(NULL), 0);
	const char *v = evm_version();
	int a, b, c;
	assert_int_equal(sscanf(v, "%d.%d.%d", &a, &b, &c), 3);
}

static void test_run_once_timeout(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	uint64_t it = evm_loop_iterations(loop);
	assert_int_equal(evm_loop_run_once(loop, 0), 0);
	assert_true(evm_loop_iterations(loop) == it + 1);
	uint64_t t0 = t_now_ms();
	assert_int_equal(evm_loop_run_once(loop, 30), 0);
	assert_true(t_now_ms() - t0 >= 29); /* slept, did not spin */
	uint64_t n1 = evm_loop_now(loop);
	assert_int_equal(evm_loop_run_once(loop, 5), 0);
	assert_true(evm_loop_now(loop) > n1);
}

static void stop_cb(struct evm_timer *t, void *data)
{
	(void)t;
	evm_loop_stop(data);
}

static void count_cb(struct evm_timer *t, void *data)
{
	(void)t;
	(*(int *)data)++;
}

/* evm_loop_run returns after the iteration that stopped it, and can run again. */
static void test_stop_from_callback(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int n = 0;
	for (int round = 0; round < 2; round++) {
		assert_int_equal(evm_timer_add(loop, 5, stop_cb, loop, NULL), 0);
		assert_int_equal(evm_timer_add(loop, 100000, count_cb, &n, NULL), 0);
		assert_int_equal(evm_loop_run(loop), 0);
	}
	assert_int_equal(n, 0);
	assert_int_equal(evm_loop_alive(loop), 2); /* the two long timers */
}

static void *stopper(void *arg)
{
	usleep(50 * 1000);
	evm_loop_stop(arg);
	return NULL;
}

static void test_stop_from_thread(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pthread_t th;
	int n = 0;
	/* nothing else would ever wake it: only the stop can end run */
	assert_int_equal(evm_timer_add(loop, 100000, count_cb, &n, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, stopper, loop), 0);
	assert_int_equal(evm_loop_run(loop), 0);
	pthread_join(th, NULL);
	assert_int_equal(n, 0);
}

static void test_stop_before_run(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	evm_loop_stop(loop);
	assert_int_equal(evm_loop_run(loop), 0);
	/* the stop was consumed: a later run waits for the next one */
	assert_int_equal(evm_timer_add(loop, 10, stop_cb, loop, NULL), 0);
	assert_int_equal(evm_loop_run(loop), 0);
	assert_int_equal(evm_loop_alive(loop), 0);
}

static bool readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	return r > 0;
}

/* Embedding: poll() on evm_loop_fd sees a child's exit; run_once(0) reports it. */
static void test_loop_fd_exit(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int fd = evm_loop_fd(loop);
	struct t_exit x = {0};
	struct evm_proc *p = t_spawn(loop, HARGV("sleep", "20", "exit", "4"), &x);
	uint64_t dl = t_now_ms() + T_MS(10000);
	while (x.n == 0) {
		assert_true(t_now_ms() < dl);
		if (readable(fd, 1000))
			assert_true(evm_loop_run_once(loop, 0) >= 0);
	}
	assert_int_equal(x.rec.code, 4);
	assert_false(readable(fd, 0));
	evm_proc_unref(p);
}

static void test_alive(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_timer *t;
	assert_int_equal(evm_loop_alive(loop), 0);
	struct evm_proc *p = t_spawn(loop, HARGV("exit", "0"), &x);
	assert_int_equal(evm_timer_add(loop, 100000, count_cb, NULL, &t), 0);
	assert_int_equal(evm_loop_alive(loop), 2);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(evm_loop_alive(loop), 1);
	evm_timer_cancel(t);
	assert_int_equal(evm_loop_alive(loop), 0);
	evm_proc_unref(p);
}

/*
 * evm_loop_free with live children: every one is killed and reaped before
 * it returns (our own pidfds show them gone, and nothing is left to wait
 * for), and references the caller still holds show the exit.
 */
static void free_with_children(const struct t_mode *m)
{
	enum { N = 5 };
	struct evm_loop *loop;
	struct evm_proc *p[N];
	int pidfd[N];
	if (m)
		t_set_mode(m);
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	t_clear_mode();
	for (int i = 0; i < N; i++) {
		struct evm_spawn_opts o = {.flags = i == 0 ? EVM_SPAWN_SETSID : 0};
		p[i] = t_spawn_opts(loop, i % 2 ? HARGV("ignore", "15", "pause") : HARGV("pause"), &o);
		pidfd[i] = (int)syscall(SYS_pidfd_open, evm_proc_pid(p[i]), 0);
		assert_true(pidfd[i] >= 0);
	}
	evm_loop_free(loop);
	for (int i = 0; i < N; i++) {
		siginfo_t si;
		/* gone: exited, and already reaped by the loop */
		assert_true(readable(pidfd[i], 0));
		assert_int_equal(waitid(P_PIDFD, (id_t)pidfd[i], &si, WEXITED | WNOHANG | __WALL), -1);
		assert_int_equal(errno, ECHILD);
		close(pidfd[i]);
		assert_true(evm_proc_exited(p[i]));
		const struct evm_exit *e = evm_proc_exit_record(p[i]);
		assert_non_null(e);
		assert_int_equal(e->signal, SIGKILL);
		assert_int_equal(evm_proc_signal(p[i], 0), -ESRCH);
		struct evm_exit out;
		assert_int_equal(evm_proc_wait(p[i], &out, 0), 0);
		assert_int_equal(out.pid, evm_proc_pid(p[i]));
		assert_null(evm_proc_handler(p[i]));
		evm_proc_unref(p[i]);
	}
	assert_int_equal(t_count_children(), 0);
}

static void test_free_kills_children(void **state)
{
	(void)state;
	int fds0 = t_count_fds();
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++)
		free_with_children(&t_modes[i]);
	assert_int_equal(t_count_fds(), fds0);
}

/*
 * A fork()ed child shares the loop's epoll set and its children's pidfds
 * with us: its run took our events, its evm_loop_free SIGKILLed our
 * children and took their watches out of our epoll (no exit was ever
 * reported here). There the loop answers -ECHILD and its free leaves it.
 */
static void noop_timer(struct evm_timer *t, void *data)
{
	(void)t;
	(void)data;
}

static void test_a_forked_child_leaves_the_loop_alone(void **state)
{
	(void)state;
	struct evm_loop *loop;
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	struct evm_proc *p[3];
	for (int i = 0; i < 3; i++)
		p[i] = t_spawn(loop, HARGV("pause"), NULL);
	pid_t kid = fork();
	assert_true(kid >= 0);
	if (kid == 0) {
		struct evm_spawn_opts o = {.argv = HARGV("exit", "0")};
		struct evm_timer *t;
		int a = evm_loop_run_once(loop, 0), b = evm_spawn(loop, &o, NULL);
		int c = evm_shutdown(loop, 0), d = evm_proc_signal(p[0], SIGKILL);
		int e = evm_timer_add(loop, 1, noop_timer, NULL, &t);
		evm_loop_free(loop);
		_exit(a == -ECHILD && b == -ECHILD && c == -ECHILD && d == -ECHILD && e == -ECHILD ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(kid, &st, 0), kid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (int i = 0; i < 3; i++) {
		int ps = t_proc_state(evm_proc_pid(p[i]));
		assert_true(ps != 0 && ps != 'Z'); /* alive: not killed */
		assert_int_equal(evm_proc_signal(p[i], SIGTERM), 0);
	}
	for (int i = 0; i < 3; i++) {
		RUN_UNTIL(loop, evm_proc_exited(p[i]), 10000); /* every exit still reported here */
		assert_int_equal(evm_proc_exit_record(p[i])->signal, SIGTERM);
		evm_proc_unref(p[i]);
	}
	evm_loop_free(loop);
}

/*
 * "Use a new loop in the child": a reaper loop too. The parent's reaper slot
 * came with the fork, and the child's evm_loop_new(EVM_LOOP_REAPER) was
 * refused with -EBUSY even after evm_loop_free of the copy.
 */
static void test_a_forked_child_makes_a_reaper_loop_of_its_own(void **state)
{
	(void)state;
	struct evm_loop *loop;
	struct evm_loop_opts lo = {.flags = EVM_LOOP_REAPER};
	assert_int_equal(evm_loop_new(&loop, &lo), 0);
	struct evm_proc *p = t_spawn(loop, HARGV("pause"), NULL);
	pid_t kid = fork();
	assert_true(kid >= 0);
	if (kid == 0) {
		evm_loop_free(loop);
		struct evm_loop *mine;
		if (evm_loop_new(&mine, &lo) != 0)
			_exit(2);
		struct evm_spawn_opts o = {.argv = HARGV("exit", "7")};
		struct evm_proc *q;
		if (evm_spawn(mine, &o, &q) != 0)
			_exit(3);
		for (int i = 0; i < 1000 && !evm_proc_exited(q); i++)
			if (evm_loop_run_once(mine, 50) < 0)
				_exit(4);
		int ok = evm_proc_exited(q) && evm_proc_exit_record(q)->code == 7;
		evm_proc_unref(q);
		evm_loop_free(mine);
		_exit(ok ? 0 : 5);
	}
	int st;
	assert_int_equal(waitpid(kid, &st, 0), kid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(evm_proc_signal(p, SIGTERM), 0);
	RUN_UNTIL(loop, evm_proc_exited(p), 10000); /* ours still reported here */
	evm_proc_unref(p);
	evm_loop_free(loop);
}

static void *run_once_elsewhere(void *arg)
{
	evm_loop_run_once(arg, 0); /* the loop is this thread's from here */
	return NULL;
}

/*
 * A reaper loop blocks SIGCHLD in the thread that makes it (its signalfd
 * sees only blocked signals). Made by main, run by another thread, freed by
 * main: main's mask stayed blocked, and so did every child main started
 * after (their SIGCHLD never came).
 */
static void test_free_gives_the_creating_thread_its_mask_back(void **state)
{
	(void)state;
	sigset_t before, after;
	pthread_sigmask(SIG_SETMASK, NULL, &before);
	assert_false(sigismember(&before, SIGCHLD));
	struct evm_loop *loop;
	struct evm_loop_opts lo = {.flags = EVM_LOOP_REAPER};
	assert_int_equal(evm_loop_new(&loop, &lo), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, run_once_elsewhere, loop), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	evm_loop_free(loop);
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	assert_false(sigismember(&after, SIGCHLD));
}

static int respawns;

/* a supervisor-style callback: start it again whenever it exits */
static void respawn_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	struct evm_loop *loop = data;
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts o = {.argv = argv, .on_exit = respawn_cb, .data = loop,
				   .pdeath_signal = SIGKILL};
	(void)p;
	(void)e;
	if (++respawns < 1000)
		(void)evm_spawn(loop, &o, NULL);
}

static void free_respawning(void *arg)
{
	(void)arg;
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts o = {.argv = argv, .on_exit = respawn_cb, .data = loop,
				   .pdeath_signal = SIGKILL};
	CHECK(evm_spawn(loop, &o, NULL) == 0);
	evm_loop_free(loop);
	/* the respawned children must not outlive the loop either */
	CHECK(t_count_children() == 0);
	/* and teardown did not turn into kill, respawn, kill, respawn ... */
	CHECK(respawns <= 1);
}

/*
 * evm_loop_free kills the children; an exit callback that restarts whatever
 * exits must not keep the teardown going (or leave a child running).
 */
static void test_free_with_respawning_callback(void **state)
{
	(void)state;
	t_forked(free_respawning, NULL);
}

static void ignore_populated(struct evm_cgroup_watch *w, bool populated, void *data)
{
	(void)w;
	(void)populated;
	(void)data;
}

/* 0-2 still closed; else say what is there (on err, our stderr's copy). */
static bool stdio_still_closed(int err, const char *when)
{
	bool ok = true;
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0)
			continue;
		char path[32], to[256] = "?";
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, to, sizeof(to) - 1);
		to[n > 0 ? n : 1] = 0;
		dprintf(err, "%s: fd %d is %s\n", when, fd, to);
		ok = false;
	}
	return ok;
}

/*
 * A program that closed 0-2 never gets one of the library's own fds there,
 * whenever it is made: epoll, the wake-up eventfd and the fd reserve
 * (evm_loop_new), evm_loop_fd's timerfd, reaper mode's signalfd and SIGCHLD eventfd, a spawn's
 * /dev/null, /proc/self/status and helper socket, a cgroup's directory and
 * the inotify fd of the first cgroup watch. On 0-2 it would be the stdin
 * (or stdout) of every child that inherits ours, and what our writes to
 * stdout go to.
 */
/* CHECK, said on err_fd: stderr is closed */
static int err_fd = 2;
#define ECHECK(c)                                                                          \
	do {                                                                               \
		if (!(c)) {                                                                \
			dprintf(err_fd, "%s:%d: check failed: %s (errno %s)\n", __FILE__,    \
				__LINE__, #c, strerror(errno));                            \
			_exit(1);                                                          \
		}                                                                          \
	} while (0)

static void internal_fds(void *arg)
{
	(void)arg;
	int err = fcntl(2, F_DUPFD_CLOEXEC, 3);
	CHECK(err >= 0);
	err_fd = err;
	for (int fd = 0; fd < 3; fd++)
		close(fd);
	bool ok = true;
	for (size_t m = 0; m < sizeof(t_modes) / sizeof(t_modes[0]); m++) {
		t_set_mode(&t_modes[m]);
		struct evm_loop *loop;
		struct evm_loop_opts lo = {.flags = EVM_LOOP_REAPER};
		ECHECK(evm_loop_new(&loop, &lo) == 0);
		ECHECK(evm_loop_fd(loop) >= 3); /* and its timerfd, for embedding */
		ok &= stdio_still_closed(err, "evm_loop_new");
		struct evm_spawn_opts o = {.argv = HARGV("exit", "0"), .pdeath_signal = SIGKILL};
		struct evm_proc *p;
		ECHECK(evm_spawn(loop, &o, &p) == 0);
		CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
		evm_proc_unref(p);
		ok &= stdio_still_closed(err, t_modes[m].name);
		/* a cgroup of our own (the root has no cgroup.events), if we may make one */
		struct evm_cgroup *self = NULL, *cg;
		char name[48];
		snprintf(name, sizeof(name), "evmtest-fds.%d.%zu", (int)getpid(), m);
		if (evm_cgroup_open_self(&self) == 0 && evm_cgroup_writable(self) == 0 &&
		    evm_cgroup_create(self, name, &cg) == 0) {
			struct evm_cgroup_watch *w;
			ECHECK(evm_cgroup_fd(cg) >= 0);
			ECHECK(evm_cgroup_watch(loop, cg, ignore_populated, NULL, &w) == 0);
			ok &= stdio_still_closed(err, "cgroup");
			evm_cgroup_unwatch(w);
			ECHECK(evm_cgroup_remove(cg, 1000) == 0);
			evm_cgroup_free(cg);
		} else if (m == 0) {
			dprintf(err, "(no cgroup of our own: its fds not checked)\n");
		}
		if (self)
			evm_cgroup_free(self);
		evm_loop_free(loop);
	}
	ECHECK(ok);
}

static void test_internal_fds_above_stdio(void **state)
{
	(void)state;
	t_forked(internal_fds, NULL);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_args),
		cmocka_unit_test_setup_teardown(test_run_once_timeout, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stop_from_callback, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stop_from_thread, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stop_before_run, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_loop_fd_exit, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_alive, t_setup, t_teardown),
		cmocka_unit_test(test_free_kills_children),
		cmocka_unit_test(test_free_with_respawning_callback),
		cmocka_unit_test(test_internal_fds_above_stdio),
		cmocka_unit_test(test_a_forked_child_leaves_the_loop_alone),
		cmocka_unit_test(test_a_forked_child_makes_a_reaper_loop_of_its_own),
		cmocka_unit_test(test_free_gives_the_creating_thread_its_mask_back),
	};
	return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
