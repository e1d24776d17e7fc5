/*
 * test_adopt.c - evm_proc_adopt: our own child (reaped with its status, also
 * as a zombie, also in reaper mode), another process's child (status
 * unknown, adopted), the identity checks (start time, given pidfd, pid
 * already tracked), EVM_ADOPT_KEPT (a pidfd kept across one's exec: taken
 * as it is), signals, and evm_loop_free of an adopted process; and
 * evm_proc_start_time_of (read once, kept past the reap; a service's known
 * from the clock around its spawn); and
 * evm_loop_prepare_exec, which stops the spawn helper before an exec of
 * oneself (else it outlives the exec as a stray child).
 */
#include "evmtest.h"

#include <sys/pidfd.h>
#include <sys/prctl.h>

/* A child outside the loop that exits with code once go is written (or closed). */
struct kid {
	pid_t pid;
	int go; /* write end */
};

static struct kid fork_kid(int code)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[1]);
		char c;
		ssize_t k = read(p[0], &c, 1);
		(void)k;
		_exit(code);
	}
	close(p[0]);
	return (struct kid){pid, p[1]};
}

static void test_adopt_own_child_reaped_with_code(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct kid k = fork_kid(7);
	uint64_t st;
	assert_int_equal(evm_proc_start_time(k.pid, &st), 0);
	struct t_exit x = {0};
	struct evm_adopt_opts o = {.pid = k.pid, .flags = EVM_ADOPT_START_TIME, .start_time = st,
				   .on_exit = t_on_exit, .data = &x};
	struct evm_proc *p;
	assert_int_equal(evm_proc_adopt(loop, &o, &p), 0);
	assert_true(evm_proc_adopted(p));
	assert_int_equal(evm_proc_pid(p), k.pid);
	assert_true(evm_proc_pidfd(p) >= 0);
	assert_true(evm_loop_alive(loop) >= 1);
	close(k.go);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_true(x.rec.adopted);
	assert_false(x.rec.status_unknown);
	assert_int_equal(x.rec.code, 7);
	assert_int_equal(x.rec.pid, k.pid);
	assert_true(x.rec.start_time.tv_sec > 0);
	assert_int_equal(evm_proc_pidfd(p), -EBADF);
	evm_proc_unref(p);
}

/* Exited before the adoption (as during an exec of the adopter): reported at once, with code. */
static void test_adopt_zombie_child(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct kid k = fork_kid(5);
	uint64_t st;
	assert_int_equal(evm_proc_start_time(k.pid, &st), 0);
	close(k.go);
	WAIT_FOR(t_proc_state(k.pid) == 'Z', 10000);
	struct t_exit x = {0};
	struct evm_adopt_opts o = {.pid = k.pid, .flags = EVM_ADOPT_START_TIME, .start_time = st,
				   .on_exit = t_on_exit, .data = &x};
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 5);
	assert_true(x.rec.adopted);
}

/* A reaper loop's scan must not take an adopted zombie for an orphan. */
static void on_orphan(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	(void)ev;
	(*(int *)data)++;
}

static void test_adopt_zombie_child_reaper(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int orphans = 0;
	assert_int_equal(evm_subscribe(loop, EVM_EV_ORPHAN, on_orphan, &orphans, NULL), 0);
	struct kid k = fork_kid(9);
	close(k.go);
	WAIT_FOR(t_proc_state(k.pid) == 'Z', 10000);
	struct t_exit x = {0};
	struct evm_adopt_opts o = {.pid = k.pid, .on_exit = t_on_exit, .data = &x};
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 9);
	assert_int_equal(orphans, 0);
}

/* P, a child of ours outside the loop, whose child C the loop adopts. */
struct foreign {
	pid_t parent, child;
};

static struct foreign fork_foreign(void)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t parent = fork();
	assert_true(parent >= 0);
	if (parent == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		pid_t c = fork();
		if (c == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			/* a group of its own, so it can be signalled as one */
			setpgid(0, 0);
			for (;;)
				pause();
		}
		ssize_t w = write(p[1], &c, sizeof(c));
		(void)w;
		int st;
		waitpid(c, &st, 0);
		_exit(WIFSIGNALED(st) ? 100 + WTERMSIG(st) : 1);
	}
	close(p[1]);
	pid_t child = 0;
	assert_int_equal(read(p[0], &child, sizeof(child)), (ssize_t)sizeof(child));
	close(p[0]);
	/* the child's setpgid may come later than its pid */
	WAIT_FOR(getpgid(child) == child, 10000);
	return (struct foreign){parent, child};
}

static int reap(pid_t pid)
{
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_adopt_foreign_status_unknown(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct foreign f = fork_foreign();
	struct t_exit x = {0};
	struct evm_adopt_opts o = {.pid = f.child, .on_exit = t_on_exit, .data = &x};
	struct evm_proc *p;
	assert_int_equal(evm_proc_adopt(loop, &o, &p), 0);
	assert_int_equal(evm_proc_signal(p, 0), 0);
	assert_int_equal(evm_proc_signal_group(p, SIGTERM), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_true(x.rec.adopted);
	assert_true(x.rec.status_unknown);
	assert_int_equal(x.rec.code, -1);
	assert_int_equal(evm_exit_shell_code(&x.rec), -1);
	assert_int_equal(evm_proc_signal(p, SIGTERM), -ESRCH);
	/* its real parent saw the SIGTERM the group got */
	assert_int_equal(reap(f.parent), 100 + SIGTERM);
	evm_proc_unref(p);
}

/* evm_loop_free kills what it adopted and returns once it is dead. */
static void test_adopt_foreign_killed_by_loop_free(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct foreign f = fork_foreign();
	struct evm_adopt_opts o = {.pid = f.child};
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), 0);
	int pidfd = pidfd_open(f.child, 0);
	assert_true(pidfd >= 0);
	evm_loop_free(loop);
	((struct t_fx *)*state)->loop = NULL;
	/* dead already: its pidfd is readable without waiting */
	struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 0), 1);
	close(pidfd);
	assert_int_equal(reap(f.parent), 100 + SIGKILL);
	assert_int_equal(evm_loop_new(&((struct t_fx *)*state)->loop, NULL), 0);
}

/* A record naming a pid now used by another process: nothing is touched. */
static void test_adopt_start_time_mismatch(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct kid k = fork_kid(0);
	uint64_t st;
	assert_int_equal(evm_proc_start_time(k.pid, &st), 0);
	int fds = t_count_fds();
	struct evm_adopt_opts o = {.pid = k.pid, .flags = EVM_ADOPT_START_TIME, .start_time = st + 1};
	struct evm_proc *p = (struct evm_proc *)1;
	assert_int_equal(evm_proc_adopt(loop, &o, &p), -ESRCH);
	assert_null(p);
	assert_int_equal(t_count_fds(), fds);
	assert_int_equal(evm_loop_alive(loop), 0);
	/* still running, still ours to reap */
	assert_int_equal(kill(k.pid, 0), 0);
	close(k.go);
	assert_int_equal(reap(k.pid), 0);
	/* and once gone, its pid names nothing */
	assert_int_equal(evm_proc_start_time(k.pid, &st), -ESRCH);
	o.flags = 0;
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -ESRCH);
}

/*
 * In a grandchild of ours, a loop's adoption of us (its grandparent): the
 * error as its exit status (128 + -error, or 0 when adopted: then it exits
 * at once, its loop not freed, which would SIGKILL us).
 */
static int adopt_grandparent(void)
{
	pid_t gp = getpid(), c = fork();
	if (c < 0)
		return -1;
	if (c == 0) {
		pid_t g = fork();
		if (g == 0) {
			struct evm_loop *l;
			if (evm_loop_new(&l, NULL) < 0)
				_exit(1);
			struct evm_adopt_opts o = {.pid = gp};
			int r = evm_proc_adopt(l, &o, NULL);
			_exit(r < 0 ? 128 + -r : 0);
		}
		int st = 0;
		while (g > 0 && waitpid(g, &st, 0) < 0 && errno == EINTR)
			;
		_exit(g > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 2);
	}
	int st = 0;
	while (waitpid(c, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * Ourselves, an ancestor, init: adopted, evm_loop_free SIGKILLed them (the
 * caller first; the grandparent was adopted: a shell, a runtime's shim).
 */
static void test_adopt_refuses_ourselves_and_our_parent(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t who[] = {getpid(), getppid(), 1};
	for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
		struct evm_adopt_opts o = {.pid = who[i]};
		struct evm_proc *p = (struct evm_proc *)1;
		assert_int_equal(evm_proc_adopt(loop, &o, &p), -EINVAL);
		assert_null(p);
		/* a recorded pid reused by one of them (another start time): gone, as any other */
		uint64_t st;
		assert_int_equal(evm_proc_start_time(who[i], &st), 0);
		o.flags = EVM_ADOPT_START_TIME;
		o.start_time = st + 1;
		assert_int_equal(evm_proc_adopt(loop, &o, &p), -ESRCH);
	}
	assert_int_equal(evm_loop_alive(loop), 0);
	assert_int_equal(adopt_grandparent(), 128 + EINVAL);
}

static void test_adopt_given_pidfd(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct kid a = fork_kid(3), b = fork_kid(4);
	int pfa = pidfd_open(a.pid, 0);
	assert_true(pfa >= 0);
	/* a pidfd of another process */
	struct evm_adopt_opts o = {.pid = b.pid, .flags = EVM_ADOPT_PIDFD, .pidfd = pfa};
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EINVAL);
	/* not a pidfd at all */
	o.pidfd = a.go;
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EINVAL);
	assert_int_equal(fcntl(pfa, F_GETFD), FD_CLOEXEC); /* still the caller's */
	struct t_exit x = {0};
	o = (struct evm_adopt_opts){.pid = a.pid, .flags = EVM_ADOPT_PIDFD, .pidfd = pfa,
				    .on_exit = t_on_exit, .data = &x};
	struct evm_proc *p;
	assert_int_equal(evm_proc_adopt(loop, &o, &p), 0);
	assert_int_equal(evm_proc_pidfd(p), pfa); /* taken over */
	/* the same pid twice */
	o.flags = 0;
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EEXIST);
	close(a.go);
	close(b.go);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 3);
	assert_int_equal(reap(b.pid), 4);
	evm_proc_unref(p);
}

/*
 * EVM_ADOPT_KEPT: the caller's own pidfd and recorded start time are taken
 * as they are (no /proc): what the stat would say comes from the pinned
 * pid. Our child is reaped with its code.
 */
static void test_adopt_kept_own_child(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct kid k = fork_kid(6);
	uint64_t st;
	assert_int_equal(evm_proc_start_time(k.pid, &st), 0);
	int pfd = pidfd_open(k.pid, 0);
	assert_true(pfd >= 0);
	struct evm_adopt_opts o = {.pid = k.pid, .flags = EVM_ADOPT_KEPT, .pidfd = pfd,
				   .start_time = st};
	/* only with both: the pidfd, and the start time it goes with */
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EINVAL);
	o.flags = EVM_ADOPT_KEPT | EVM_ADOPT_PIDFD;
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EINVAL);
	assert_int_equal(fcntl(pfd, F_GETFD), FD_CLOEXEC); /* still the caller's */
	struct t_exit x = {0};
	o.flags = EVM_ADOPT_KEPT | EVM_ADOPT_PIDFD | EVM_ADOPT_START_TIME;
	o.on_exit = t_on_exit;
	o.data = &x;
	struct evm_proc *p;
	assert_int_equal(evm_proc_adopt(loop, &o, &p), 0);
	assert_int_equal(evm_proc_pidfd(p), pfd); /* taken over */
	assert_true(evm_proc_adopted(p));
	/* fork_kid's child leads no group: no group signal */
	assert_int_equal(evm_proc_signal_group(p, 0), -EPERM);
	close(k.go);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_true(x.rec.adopted);
	assert_false(x.rec.status_unknown); /* our child: waitid said so */
	assert_int_equal(x.rec.code, 6);
	assert_true(x.rec.start_time.tv_sec > 0);
	evm_proc_unref(p);
}

/* Kept, but another's child: status unknown; its group (getpgid) can be signalled. */
static void test_adopt_kept_foreign(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct foreign f = fork_foreign();
	uint64_t st;
	assert_int_equal(evm_proc_start_time(f.child, &st), 0);
	int pfd = pidfd_open(f.child, 0);
	assert_true(pfd >= 0);
	struct t_exit x = {0};
	struct evm_adopt_opts o = {.pid = f.child, .pidfd = pfd, .start_time = st,
				   .flags = EVM_ADOPT_KEPT | EVM_ADOPT_PIDFD | EVM_ADOPT_START_TIME,
				   .on_exit = t_on_exit, .data = &x};
	struct evm_proc *p;
	assert_int_equal(evm_proc_adopt(loop, &o, &p), 0);
	assert_int_equal(evm_proc_signal_group(p, SIGTERM), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_true(x.rec.adopted);
	assert_true(x.rec.status_unknown);
	assert_int_equal(reap(f.parent), 100 + SIGTERM);
	evm_proc_unref(p);
}

static void test_adopt_spawned_pid_is_tracked(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_proc *p = t_spawn(loop, HARGV("sleep", "30"), &x);
	struct evm_adopt_opts o = {.pid = evm_proc_pid(p)};
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EEXIST);
	assert_false(evm_proc_adopted(p));
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_false(x.rec.adopted);
	evm_proc_unref(p);
}

/*
 * evm_proc_start_time_of: read once and kept, so it still answers after the
 * reap; never read after it (the pid may be another's); read by the library
 * itself for an adopted process and for a service's main process leading its
 * session without a cgroup (the daemon records that one: one read a start).
 */
static void test_start_time_of(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	uint64_t st = 0, got = 0;
	struct t_exit x = {0}, y = {0};
	struct evm_proc *p = t_spawn(loop, HARGV("sleep", "30"), &x);
	struct evm_proc *q = t_spawn(loop, HARGV("sleep", "30"), &y);
	assert_int_equal(evm_proc_start_time_of(NULL, &got), -EINVAL);
	assert_int_equal(evm_proc_start_time_of(p, NULL), -EINVAL);
	assert_int_equal(evm_proc_start_time(evm_proc_pid(p), &st), 0);
	assert_int_equal(evm_proc_start_time_of(p, &got), 0);
	assert_true(got == st);
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	assert_int_equal(evm_proc_signal(q, SIGKILL), 0);
	RUN_UNTIL(loop, x.n == 1 && y.n == 1, 10000);
	got = 0;
	assert_int_equal(evm_proc_start_time_of(p, &got), 0);
	assert_true(got == st);
	assert_int_equal(evm_proc_start_time_of(q, &got), -ESRCH);
	evm_proc_unref(p);
	evm_proc_unref(q);

	/* adopted, another's child: the adoption's checked read */
	struct foreign f = fork_foreign();
	assert_int_equal(evm_proc_start_time(f.child, &st), 0);
	struct evm_adopt_opts o = {.pid = f.child, .on_exit = t_on_exit, .data = &x};
	assert_int_equal(evm_proc_adopt(loop, &o, &p), 0);
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	RUN_UNTIL(loop, x.n == 2, 10000);
	assert_int_equal(reap(f.parent), 100 + SIGKILL);
	got = 0;
	assert_int_equal(evm_proc_start_time_of(p, &got), 0);
	assert_true(got == st);
	evm_proc_unref(p);

	/* a service's main process in a session of its own, no cgroup: read at its start */
	struct evm_service_opts so = {
		.name = "s",
		.spawn = {.argv = HARGV("sleep", "30")},
		.restart = EVM_RESTART_NEVER,
		.kill_mode = EVM_KILL_TREE,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	p = evm_proc_ref(evm_service_proc(svc));
	assert_int_equal(evm_proc_start_time(evm_proc_pid(p), &st), 0);
	assert_int_equal(evm_service_stop(svc), 0);
	RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_STOPPED, 10000);
	assert_true(evm_proc_exited(p));
	got = 0;
	assert_int_equal(evm_proc_start_time_of(p, &got), 0);
	assert_true(got == st);
	evm_proc_unref(p);
	evm_service_remove(svc);
}

/*
 * A spawned child's start time from the clock (starttime.c): the kernel sets
 * it inside the clone, so two evm__boot_tick readings in the same tick around
 * a spawn are /proc's field 22 exactly; a service's starts check the first
 * few against /proc, then keep the clock's without a read; brackets across
 * a tick boundary read /proc.
 */
static void test_start_time_from_the_clock(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	/* the arithmetic: a plain fork between two readings in one tick */
	int same = 0;
	for (int i = 0; i < 20 && !same; i++) {
		uint64_t lo = evm__boot_tick(), st = 0;
		struct kid k = fork_kid(0);
		uint64_t hi = evm__boot_tick();
		assert_true(lo > 0 && hi >= lo);
		assert_int_equal(evm_proc_start_time(k.pid, &st), 0);
		assert_true(st >= lo && st <= hi);
		same = lo == hi;
		if (same)
			assert_true(st == lo);
		close(k.go);
		waitpid(k.pid, NULL, 0);
	}
	assert_true(same);

	/* a service's starts: each the /proc value, checked or kept (enough in one tick to pass the checks) */
	struct evm_service_opts so = {
		.name = "s",
		.spawn = {.argv = HARGV("sleep", "30")},
		.restart = EVM_RESTART_NEVER,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	for (int i = 0; i < 24; i++) {
		uint64_t st = 0, got = 0;
		assert_int_equal(evm_service_start(svc), 0);
		struct evm_proc *p = evm_service_proc(svc);
		assert_int_equal(evm_proc_start_time_of(p, &got), 0);
		assert_int_equal(evm_proc_start_time(evm_proc_pid(p), &st), 0);
		assert_true(got == st);
		assert_int_equal(evm_service_stop(svc), 0);
		RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_STOPPED, 10000);
	}
	evm_service_remove(svc);

	/* past the checks a bracket is kept as it is (a made-up one shows it was not read) */
	struct t_exit x = {0};
	struct evm_proc *p = t_spawn(loop, HARGV("sleep", "30"), &x);
	uint64_t st = 0, got = 0;
	assert_int_equal(evm_proc_start_time(evm_proc_pid(p), &st), 0);
	evm__proc_started_within(p, st + 7, st + 7);
	assert_int_equal(evm_proc_start_time_of(p, &got), 0);
	assert_true(got == st + 7);
	evm_proc_unref(p);
	/* across a tick boundary: read */
	struct t_exit y = {0};
	p = t_spawn(loop, HARGV("sleep", "30"), &y);
	assert_int_equal(evm_proc_start_time(evm_proc_pid(p), &st), 0);
	evm__proc_started_within(p, st, st + 1);
	assert_int_equal(evm_proc_start_time_of(p, &got), 0);
	assert_true(got == st);
	evm_proc_unref(p);
}

static void test_adopt_bad_args(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_adopt_opts o = {.pid = 0};
	uint64_t st;
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EINVAL);
	assert_int_equal(evm_proc_adopt(loop, NULL, NULL), -EINVAL);
	o.pid = getpid();
	o.flags = 1u << 30;
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EINVAL);
	o.flags = EVM_ADOPT_PIDFD;
	o.pidfd = -1;
	assert_int_equal(evm_proc_adopt(loop, &o, NULL), -EINVAL);
	assert_int_equal(evm_proc_start_time(0, &st), -EINVAL);
	assert_int_equal(evm_proc_start_time(getpid(), NULL), -EINVAL);
	assert_int_equal(evm_proc_start_time(getpid(), &st), 0);
	assert_false(evm_proc_adopted(NULL));
	assert_int_equal(evm_proc_pidfd(NULL), -EBADF);
}

static void on_svc(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	if (ev->type == EVM_EV_SERVICE && ev->state == EVM_STATE_STOPPED && ev->exit)
		*(struct evm_exit *)data = *ev->exit;
}

/* A service takes over a survivor: RUNNING at once, stopped like its own. */
static void test_service_adopts_foreign(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct foreign f = fork_foreign();
	struct evm_exit last = {0};
	struct evm_service_opts so = {.name = "web", .spawn = {.argv = HARGV("exit", "0")},
				      .restart = EVM_RESTART_ALWAYS, .kill_group = true,
				      .on_event = on_svc, .data = &last};
	struct evm_service *s;
	assert_int_equal(evm_service_new(loop, &so, &s), 0);
	uint64_t st;
	assert_int_equal(evm_proc_start_time(f.child, &st), 0);
	struct evm_adopt_opts o = {.pid = f.child, .flags = EVM_ADOPT_START_TIME, .start_time = st + 5};
	assert_int_equal(evm_service_adopt(s, &o), -ESRCH);
	assert_int_equal(evm_service_state(s), EVM_STATE_STOPPED);
	o.start_time = st;
	assert_int_equal(evm_service_adopt(s, &o), 0);
	assert_int_equal(evm_service_state(s), EVM_STATE_RUNNING);
	assert_int_equal(evm_proc_pid(evm_service_proc(s)), f.child);
	assert_int_equal(evm_service_adopt(s, &o), -EBUSY);
	assert_int_equal(evm_service_stop(s), 0);
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_STOPPED, 10000);
	assert_true(last.adopted);
	assert_true(last.status_unknown);
	assert_int_equal(reap(f.parent), 100 + SIGTERM);
	evm_service_remove(s);
}

/* ------------------------------------------------- evm_loop_prepare_exec */

/* The pids listed in /proc/PID/task/PID/children (a single-threaded process), 0-ended. */
static int children_of(pid_t pid, pid_t *out, int max)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[k > 0 ? k : 0] = 0;
	int n = 0;
	for (char *s = strtok(buf, " \n"); s && n < max; s = strtok(NULL, " \n"))
		out[n++] = atoi(s);
	out[n] = 0;
	return n;
}

static int setup_helper(void **state)
{
	setenv("EVM_SPAWN_MODE", "helper", 1);
	int r = t_setup(state);
	unsetenv("EVM_SPAWN_MODE");
	return r;
}

static void kill_and_reap(struct evm_loop *loop, struct evm_proc *p, struct t_exit *x)
{
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	RUN_UNTIL(loop, x->n == 1, 10000);
	assert_int_equal(x->rec.signal, SIGKILL);
	evm_proc_unref(p);
}

/*
 * In the process itself: the helper (a child of ours while it runs) is
 * stopped and reaped, the children it spawned stay, and the next spawn
 * starts a new helper.
 */
static void test_prepare_exec_stops_the_helper(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit xa = {0}, xb = {0};
	struct evm_proc *a = t_spawn(loop, HARGV("pause"), &xa);
	pid_t kids[8];
	if (!loop->spawner)
		T_SKIP("no spawn helper on this machine (valgrind, or not x86_64/aarch64)");
	assert_int_equal(children_of(getpid(), kids, 7), 2); /* the helper and a */
	pid_t helper = kids[0] == evm_proc_pid(a) ? kids[1] : kids[0];
	assert_int_equal(evm_loop_prepare_exec(loop), 0);
	assert_null(loop->spawner);
	assert_int_equal(children_of(getpid(), kids, 7), 1);
	assert_int_equal(kids[0], evm_proc_pid(a));
	assert_int_equal(kill(helper, 0), -1); /* reaped, not a zombie */
	assert_int_equal(errno, ESRCH);
	assert_int_equal(evm_proc_signal(a, 0), 0); /* a is still ours and watched */
	/* the loop carries on (the exec may fail): a spawn starts a new helper */
	struct evm_proc *b = t_spawn(loop, HARGV("pause"), &xb);
	assert_non_null(loop->spawner);
	assert_int_equal(children_of(getpid(), kids, 7), 3);
	assert_int_equal(evm_loop_prepare_exec(loop), 0);
	assert_int_equal(evm_loop_prepare_exec(loop), 0); /* nothing to stop: a no-op */
	kill_and_reap(loop, a, &xa);
	kill_and_reap(loop, b, &xb);
	assert_int_equal(evm_loop_prepare_exec(NULL), -EINVAL);
}

/* Not reaped: gone once its parent is (we may be its subreaper: reap it then). */
static void wait_gone(pid_t pid)
{
	WAIT_FOR((waitpid(pid, NULL, WNOHANG), kill(pid, 0) < 0 && errno == ESRCH), 10000);
}

/*
 * Across a real exec: a process with a loop in helper mode spawns a child,
 * prepares and execs evm-helper; the new image has that child (same pid,
 * still its own) and no helper. Without evm_loop_prepare_exec the helper is
 * there too, a second child the new image knows nothing of.
 */
static void test_prepare_exec_then_exec(void **state)
{
	(void)state;
	for (int prepare = 0; prepare < 2; prepare++) {
		int p[2];
		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		pid_t c = fork();
		assert_true(c >= 0);
		if (c == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			setenv("EVM_SPAWN_MODE", "helper", 1);
			struct evm_loop *loop;
			struct evm_proc *kid;
			char *argv[] = {t_helper, "pause", NULL};
			struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
			pid_t info[2] = {0, 0};
			if (evm_loop_new(&loop, NULL) < 0 || evm_spawn(loop, &o, &kid) < 0)
				_exit(2);
			pid_t kids[8];
			info[0] = evm_proc_pid(kid);
			if (loop->spawner && children_of(getpid(), kids, 7) == 2) /* kid, the helper */
				info[1] = kids[0] == info[0] ? kids[1] : kids[0];
			if (prepare && evm_loop_prepare_exec(loop) < 0)
				_exit(3);
			if (write(p[1], info, sizeof(info)) != sizeof(info))
				_exit(4);
			unsetenv("EVM_SPAWN_MODE");
			execv(t_helper, (char *[]){"evm-helper", "pause", NULL});
			_exit(5);
		}
		close(p[1]);
		pid_t info[2] = {0, 0};
		assert_int_equal(read(p[0], info, sizeof(info)), sizeof(info));
		char c1;
		assert_int_equal(read(p[0], &c1, 1), 0); /* EOF: the exec happened (close-on-exec) */
		close(p[0]);
		pid_t kids[8];
		int n = children_of(c, kids, 7);
		if (!info[1]) {
			T_SKIP("no spawn helper on this machine (valgrind, or not x86_64/aarch64)");
		} else if (prepare) {
			assert_int_equal(n, 1);
			assert_int_equal(kids[0], info[0]);
		} else { /* the control: what the function prevents */
			assert_int_equal(n, 2);
			assert_true((kids[0] == info[1] && kids[1] == info[0]) ||
				    (kids[0] == info[0] && kids[1] == info[1]));
		}
		kill(c, SIGKILL); /* its children die with it (pdeath; the helper: EOF or pdeath) */
		assert_int_equal(reap(c), -1);
		wait_gone(info[0]);
		if (info[1])
			wait_gone(info[1]);
	}
}

static int setup_reaper(void **state)
{
	return t_setup_flags(state, EVM_LOOP_REAPER);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_adopt_own_child_reaped_with_code, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_zombie_child, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_zombie_child_reaper, setup_reaper, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_foreign_status_unknown, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_foreign_killed_by_loop_free, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_start_time_mismatch, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_refuses_ourselves_and_our_parent, t_setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_given_pidfd, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_kept_own_child, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_kept_foreign, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_spawned_pid_is_tracked, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_bad_args, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_start_time_of, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_start_time_from_the_clock, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_service_adopts_foreign, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_prepare_exec_stops_the_helper, setup_helper, t_teardown),
		cmocka_unit_test_setup_teardown(test_prepare_exec_then_exec, t_setup, t_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
