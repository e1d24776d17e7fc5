/*
 * test_cgroup.c - cgroup v2 containment: discovery, creating and removing
 * cgroups, members, signals, kill (cgroup.kill and the fallback loop),
 * limits and stats (with and without controllers), the populated watch, a
 * process moving itself into a leaf.
 *
 * Needs a writable cgroup v2 hierarchy (root on the host, Delegate=yes, a
 * container with a cgroup namespace); otherwise every test is skipped and
 * says why. A run owns a cgroup evmtest.<random> below ours, held with
 * flock(2) while it runs; each test works in its own child of it, which its
 * teardown kills and removes even when the test failed. Runs of a binary
 * that died (their lock is free) are removed by the next run.
 * Tests whose processes fork run a reaper loop, so orphans are reaped here.
 */
#include "evmtest.h"
#include "service.h"

#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static struct evm_cgroup *self_cg; /* NULL: tests skip */
static struct evm_cgroup *run_cg;  /* evmtest.<random>, locked while we run */
static int run_lock = -1;
static char skip_reason[256];
static volatile int kill_fd = -1; /* cgroup.kill of the running test's cgroup */

/* A test that hangs dies of SIGALRM without its teardown: take its processes along. */
static void on_alarm(int sig)
{
	if (kill_fd >= 0) {
		ssize_t w = write(kill_fd, "1", 1);
		(void)w;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

struct cfx {
	struct t_fx *fx;
	struct evm_cgroup *base;
};

/* Skip the test (saying why) without a writable cgroup v2 hierarchy. */
#define NEED_CGROUP()                                   \
	do {                                            \
		if (!self_cg)                           \
			T_SKIP("%s", skip_reason);      \
	} while (0)

static int cg_setup_flags(void **state, unsigned flags)
{
	static struct cfx c;
	static int seq;
	memset(&c, 0, sizeof(c));
	if (t_setup_flags(state, flags) < 0)
		return -1;
	c.fx = *state;
	if (self_cg) {
		char name[64];
		snprintf(name, sizeof(name), "t%d", ++seq);
		int r = evm_cgroup_create(run_cg, name, &c.base);
		if (r != 0) {
			fprintf(stderr, "create %s: %s\n", name, strerror(r < 0 ? -r : EEXIST));
			return -1;
		}
		kill_fd = openat(evm_cgroup_fd(c.base), "cgroup.kill", O_WRONLY | O_CLOEXEC);
		signal(SIGALRM, on_alarm);
	}
	*state = &c;
	return 0;
}

static int cg_setup(void **state)
{
	return cg_setup_flags(state, 0);
}

static int cg_setup_reaper(void **state)
{
	return cg_setup_flags(state, EVM_LOOP_REAPER);
}

/* SIGKILL and reap every child this process still has; how many there were. */
static int kill_children(void)
{
	int n = 0;
	for (int round = 0; round < 100 && t_count_children() > 0; round++) {
		char buf[4096];
		int fd = open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
		ssize_t k = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		buf[k > 0 ? k : 0] = 0;
		for (char *t = strtok(buf, " \n"); t; t = strtok(NULL, " \n"))
			kill(atoi(t), SIGKILL);
		siginfo_t si;
		while (memset(&si, 0, sizeof(si)), waitid(P_ALL, 0, &si, WEXITED | WNOHANG) == 0 &&
		       si.si_pid)
			n++;
		usleep(1000);
	}
	return n;
}

/*
 * Kill what is left, remove the cgroups (which waits until they are empty),
 * free the loop (which reaps its own children), then check for leaks like
 * t_teardown. Orphans a failed test left (killed or not: a process that
 * escaped the cgroup) are ours: they are killed and reaped here, and fail
 * this teardown, not every later one.
 */
static int cg_teardown(void **state)
{
	struct cfx *c = *state;
	int r = 0;
	if (c->base) {
		evm_cgroup_kill(c->base);
		if (kill_fd >= 0)
			close(kill_fd);
		kill_fd = -1;
		if (evm_cgroup_remove(c->base, 10000) < 0) {
			fprintf(stderr, "teardown: cannot remove %s\n", evm_cgroup_path(c->base));
			r = -1;
		}
		evm_cgroup_free(c->base);
		c->base = NULL;
	}
	evm_loop_free(c->fx->loop);
	c->fx->loop = NULL;
	/* escaped grandchildren of a failed test are ours (subreaper): end them too */
	int orphans = kill_children();
	int kids = t_count_children(), fds = t_count_fds();
	alarm(0);
	if (orphans || kids || fds != c->fx->fds0) {
		fprintf(stderr, "teardown: %d orphans reaped, %d children left, %d fds (was %d)\n",
			orphans, kids, fds, c->fx->fds0);
		r = -1;
	}
	return r;
}

#define LOOP(state) (((struct cfx *)*(state))->fx->loop)
#define BASE(state) (((struct cfx *)*(state))->base)

/* ---------------------------------------------------------------- helpers */

/* Read one line from fd into buf (without the newline); fail after ms. */
static void read_line(int fd, char *buf, size_t cap, int ms)
{
	size_t len = 0;
	uint64_t dl = t_now_ms() + (uint64_t)ms;
	while (len + 1 < cap) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int left = (int)(dl > t_now_ms() ? dl - t_now_ms() : 0);
		int r = poll(&pfd, 1, left);
		if (r == 0)
			fail_msg("timed out reading a line (%zu bytes so far)", len);
		if (r < 0 && errno == EINTR)
			continue;
		char ch;
		ssize_t k = read(fd, &ch, 1);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		assert_int_equal(k, 1);
		if (ch == '\n')
			break;
		buf[len++] = ch;
	}
	buf[len] = 0;
}

static bool proc_in(pid_t pid, const struct evm_cgroup *cg)
{
	pid_t pids[256];
	int n = evm_cgroup_procs(cg, pids, 256);
	assert_true(n >= 0 && n <= 256);
	for (int i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

static bool gone(pid_t pid)
{
	char s = t_proc_state(pid);
	return s == 0;
}

/*
 * A helper held by its stdin (cat) until we have moved it into cg, then
 * running cmds; returns it with *out_fd its stdout.
 */
static struct evm_proc *held_helper(struct evm_loop *loop, struct evm_cgroup *cg, char *const *argv,
				    int *out_fd, struct t_exit *x)
{
	struct evm_spawn_opts o = {.on_exit = x ? t_on_exit : NULL, .data = x};
	o.stdio[0].mode = EVM_STDIO_PIPE;
	o.stdio[1].mode = EVM_STDIO_PIPE;
	struct evm_proc *p = t_spawn_opts(loop, argv, &o);
	assert_int_equal(evm_cgroup_attach(cg, evm_proc_pid(p)), 0);
	close(evm_proc_stdio_fd(p, 0)); /* cat sees EOF: the rest runs in cg */
	*out_fd = evm_proc_stdio_fd(p, 1);
	assert_true(*out_fd >= 0);
	return p;
}

/* ---------------------------------------------------------------- tests */

static void test_discovery(void **state)
{
	(void)state;
	NEED_CGROUP();
	char mnt[PATH_MAX], small[4];
	assert_int_equal(evm_cgroup_mount(mnt, sizeof(mnt)), 0);
	assert_int_equal(evm_cgroup_mount(small, sizeof(small)), -ERANGE);
	assert_int_equal(evm_cgroup_mount(NULL, 1), -EINVAL);
	/* our cgroup is below the mount, and opening it by path gives the same */
	const char *path = evm_cgroup_path(self_cg);
	assert_int_equal(strncmp(path, mnt, strlen(mnt)), 0);
	struct evm_cgroup *again;
	assert_int_equal(evm_cgroup_open(path, &again), 0);
	assert_string_equal(evm_cgroup_path(again), path);
	assert_int_equal(evm_cgroup_writable(again), 0);
	assert_true(evm_cgroup_fd(again) >= 0);
	struct stat a, b;
	assert_int_equal(fstat(evm_cgroup_fd(again), &a), 0);
	assert_int_equal(fstat(evm_cgroup_fd(self_cg), &b), 0);
	assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	evm_cgroup_free(again);
	/* not a cgroup, or not absolute */
	assert_int_equal(evm_cgroup_open("/tmp", &again), -EINVAL);
	assert_int_equal(evm_cgroup_open("tmp", &again), -EINVAL);
	assert_int_equal(evm_cgroup_open("/nonexistent/x", &again), -ENOENT);
	assert_int_equal(evm_cgroup_open_self(NULL), -EINVAL);
	evm_cgroup_free(NULL);
	assert_string_equal(evm_cgroup_controller_name(EVM_CGROUP_MEMORY), "memory");
	assert_string_equal(evm_cgroup_controller_name(EVM_CGROUP_PIDS | EVM_CGROUP_IO), "unknown");
}

/*
 * evm_pidfd_cgroup_id: our own cgroup's id is its directory's inode; a
 * child reaped since still has the cgroup it died in (Linux 6.15), or, on
 * an older kernel, -ESRCH (-ENOSYS before 6.13: skipped).
 */
static void test_pidfd_cgroup_id(void **state)
{
	(void)state;
	NEED_CGROUP();
	struct stat st;
	assert_int_equal(fstat(evm_cgroup_fd(self_cg), &st), 0);
	int self = (int)syscall(SYS_pidfd_open, getpid(), 0);
	assert_true(self >= 0);
	uint64_t id = 0;
	int r = evm_pidfd_cgroup_id(self, &id);
	close(self);
	if (r == -ENOSYS)
		T_SKIP("no PIDFD_GET_INFO (Linux 6.13)");
	assert_int_equal(r, 0);
	assert_true(id == (uint64_t)st.st_ino);
	assert_int_equal(evm_pidfd_cgroup_id(-1, &id), -EINVAL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	assert_true(pfd >= 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	id = 0;
	r = evm_pidfd_cgroup_id(pfd, &id);
	close(pfd);
	assert_true(r == -ESRCH || (r == 0 && id == (uint64_t)st.st_ino));
}

static void test_create_idempotent(void **state)
{
	NEED_CGROUP();
	struct evm_cgroup *base = BASE(state), *a, *b;
	assert_int_equal(evm_cgroup_create(base, "svc.service", &a), 0);
	assert_int_equal(evm_cgroup_create(base, "svc.service", &b), 1);
	assert_string_equal(evm_cgroup_path(a), evm_cgroup_path(b));
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s/svc.service", evm_cgroup_path(base));
	assert_string_equal(evm_cgroup_path(a), want);
	struct stat st;
	assert_int_equal(stat(want, &st), 0);
	/* a grandchild, so removal has to go deepest first */
	struct evm_cgroup *c;
	assert_int_equal(evm_cgroup_create(a, "inner", &c), 0);
	evm_cgroup_free(c);

	static const char *const bad[] = {"", ".", "..", "a/b", "cgroup.procs", "cgroup.x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(evm_cgroup_create(base, bad[i], &c), -EINVAL);
	assert_int_equal(evm_cgroup_create(base, NULL, &c), -EINVAL);
	/* an interface file's name that does not start with cgroup. */
	assert_int_equal(evm_cgroup_create(base, "cpu.stat", &c), -EEXIST);

	assert_int_equal(evm_cgroup_remove(a, 0), 0);
	assert_int_equal(stat(want, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(evm_cgroup_remove(b, 0), 0); /* gone already: removed */
	assert_int_equal(evm_cgroup_populated(b), -ENOENT);
	evm_cgroup_free(a);
	evm_cgroup_free(b);
}

static void test_attach_procs_populated(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "a", &cg), 0);
	assert_int_equal(evm_cgroup_populated(cg), 0);
	assert_int_equal(evm_cgroup_procs(cg, NULL, 0), 0);
	assert_int_equal(evm_cgroup_procs(cg, NULL, 1), -EINVAL);

	struct t_exit x[2];
	memset(x, 0, sizeof(x));
	struct evm_proc *p[2];
	for (int i = 0; i < 2; i++) {
		p[i] = t_spawn(loop, HARGV("pause"), &x[i]);
		assert_int_equal(evm_cgroup_attach(cg, evm_proc_pid(p[i])), 0);
	}
	assert_int_equal(evm_cgroup_attach(cg, -1), -EINVAL);
	assert_int_equal(evm_cgroup_attach(cg, 999999999), -ESRCH);
	assert_int_equal(evm_cgroup_populated(cg), 1);
	assert_int_equal(evm_cgroup_populated(BASE(state)), 1); /* counts descendants */
	pid_t one;
	assert_int_equal(evm_cgroup_procs(cg, &one, 1), 2); /* how many there are */
	assert_true(proc_in(evm_proc_pid(p[0]), cg) && proc_in(evm_proc_pid(p[1]), cg));
	assert_int_equal(evm_cgroup_procs(BASE(state), NULL, 0), 0); /* not recursive */

	struct evm_cgroup_stats st;
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_true(st.have & EVM_CGROUP_STAT_PROCS);
	assert_int_equal(st.procs, 2);

	evm_proc_signal(p[0], SIGKILL);
	RUN_UNTIL(loop, x[0].n == 1, 10000);
	assert_int_equal(evm_cgroup_procs(cg, NULL, 0), 1);
	evm_proc_signal(p[1], SIGKILL);
	RUN_UNTIL(loop, x[1].n == 1, 10000);
	assert_int_equal(evm_cgroup_populated(cg), 0);
	assert_int_equal(evm_cgroup_procs(cg, NULL, 0), 0);
	for (int i = 0; i < 2; i++)
		evm_proc_unref(p[i]);
	evm_cgroup_free(cg);
}

static void test_signal_members(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg, *sub;
	assert_int_equal(evm_cgroup_create(BASE(state), "a", &cg), 0);
	assert_int_equal(evm_cgroup_create(cg, "sub", &sub), 0);
	assert_int_equal(evm_cgroup_signal(cg, SIGTERM), 0); /* nobody there */
	struct t_exit x[3];
	memset(x, 0, sizeof(x));
	struct evm_proc *p[3];
	for (int i = 0; i < 3; i++) {
		p[i] = t_spawn(loop, HARGV("pause"), &x[i]);
		/* one in the child cgroup: signals reach descendants too */
		assert_int_equal(evm_cgroup_attach(i == 2 ? sub : cg, evm_proc_pid(p[i])), 0);
	}
	/* signal 0 checks: it reaches all, harms none */
	assert_int_equal(evm_cgroup_signal(cg, 0), 3);
	assert_int_equal(evm_cgroup_signal(sub, 0), 1);
	assert_int_equal(evm_cgroup_signal(cg, NSIG), -EINVAL);
	assert_int_equal(evm_cgroup_signal(cg, SIGTERM), 3);
	for (int i = 0; i < 3; i++) {
		RUN_UNTIL(loop, x[i].n == 1, 10000);
		assert_int_equal(x[i].rec.signal, SIGTERM);
		evm_proc_unref(p[i]);
	}
	assert_int_equal(evm_cgroup_populated(cg), 0);
	evm_cgroup_free(sub);
	evm_cgroup_free(cg);
}

/* A process that forks n grandchildren ignoring SIGTERM, all in cg; then kill. */
static void kill_tree(void **state, bool fallback)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "tree", &cg), 0);
	struct t_exit x = {0};
	int out;
	struct evm_proc *p = held_helper(loop, cg, HARGV("cat", "group", "8", "print", "ready", "pause"),
					 &out, &x);
	pid_t gc[8];
	char line[128];
	for (int i = 0; i < 8; i++) {
		read_line(out, line, sizeof(line), 10000);
		assert_int_equal(sscanf(line, "grandchild %d", &gc[i]), 1);
	}
	read_line(out, line, sizeof(line), 10000);
	assert_string_equal(line, "ready");
	close(out);
	assert_int_equal(evm_cgroup_procs(cg, NULL, 0), 9);
	for (int i = 0; i < 8; i++)
		assert_true(proc_in(gc[i], cg));
	/* SIGTERM is ignored by the grandchildren: they stay */
	assert_int_equal(evm_cgroup_signal(cg, SIGTERM), 9);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(evm_cgroup_populated(cg), 1);

	if (fallback) {
		setenv("EVM_CGROUP_NO_KILL", "1", 1);
		assert_int_equal(evm_cgroup_kill(cg), 0);
		unsetenv("EVM_CGROUP_NO_KILL");
	} else {
		assert_int_equal(evm_cgroup_kill(cg), 0);
	}
	/* the orphans are ours (reaper loop): reaped here */
	for (int i = 0; i < 8; i++)
		RUN_UNTIL(loop, gone(gc[i]), 10000);
	assert_int_equal(evm_cgroup_populated(cg), 0);
	assert_int_equal(evm_cgroup_remove(cg, 5000), 0);
	assert_int_equal(evm_cgroup_kill(cg), -ENOENT); /* gone */
	evm_proc_unref(p);
	evm_cgroup_free(cg);
}

static void test_kill_tree(void **state)
{
	kill_tree(state, false);
}

static void test_kill_tree_fallback(void **state)
{
	kill_tree(state, true);
}

/* The fallback against a shell that forks without end: a killed process cannot fork. */
/* a child of ours (an orphan handed to us, the subreaper) has exited and waits to be reaped */
static bool zombie_child(void)
{
	siginfo_t si = {0};
	return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid != 0;
}

static void test_kill_fallback_forkbomb(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "bomb", &cg), 0);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x};
	o.stdio[0].mode = EVM_STDIO_PIPE;
	struct evm_proc *p = t_spawn_opts(
		loop,
		(char *[]){"/bin/sh", "-c", "read x; i=0; while [ $i -lt 2000 ]; do sleep 100 & i=$((i+1)); done; wait",
			   NULL},
		&o);
	assert_int_equal(evm_cgroup_attach(cg, evm_proc_pid(p)), 0);
	close(evm_proc_stdio_fd(p, 0));
	RUN_UNTIL(loop, evm_cgroup_procs(cg, NULL, 0) >= 20, 10000);
	assert_int_equal(evm__cgroup_kill_loop(cg), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.signal, SIGKILL);
	RUN_UNTIL(loop, evm_cgroup_populated(cg) == 0, 10000);
	/* empty once they exited, not once reaped: the orphaned sleeps are ours to reap */
	RUN_UNTIL(loop, !zombie_child(), 10000);
	evm_proc_unref(p);
	evm_cgroup_free(cg);
}

static void test_remove_waits_until_empty(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg, *sub;
	assert_int_equal(evm_cgroup_create(BASE(state), "r", &cg), 0);
	assert_int_equal(evm_cgroup_create(cg, "sub", &sub), 0);
	struct t_exit x = {0};
	struct evm_proc *p = t_spawn(loop, HARGV("sleep", "300"), &x);
	assert_int_equal(evm_cgroup_attach(sub, evm_proc_pid(p)), 0);
	/* busy: it does not kill */
	assert_int_equal(evm_cgroup_remove(cg, 0), -EBUSY);
	assert_int_equal(evm_cgroup_remove(cg, 20), -EBUSY);
	assert_int_equal(evm_cgroup_populated(cg), 1);
	/* the process exits on its own while remove waits (the loop reaps later) */
	assert_int_equal(evm_cgroup_remove(cg, 10000), 0);
	assert_int_equal(access(evm_cgroup_path(cg), F_OK), -1);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 0);
	evm_proc_unref(p);
	evm_cgroup_free(sub);
	evm_cgroup_free(cg);
}

static const enum evm_cgroup_limit all_limits[] = {
	EVM_CGROUP_MEMORY_MAX, EVM_CGROUP_MEMORY_HIGH, EVM_CGROUP_PIDS_MAX,
	EVM_CGROUP_CPU_WEIGHT, EVM_CGROUP_CPU_MAX,     EVM_CGROUP_IO_WEIGHT,
};

static void test_limits(void **state)
{
	NEED_CGROUP();
	struct evm_cgroup *base = BASE(state), *cg;
	unsigned want = EVM_CGROUP_CPU | EVM_CGROUP_IO | EVM_CGROUP_MEMORY | EVM_CGROUP_PIDS, on = ~0u;
	unsigned have_base;
	assert_int_equal(evm_cgroup_controllers(base, &have_base), 0);
	assert_int_equal(evm_cgroup_enable(base, want, &on), 0);
	assert_int_equal(on & ~have_base, 0); /* only what base has */
	assert_int_equal(evm_cgroup_enable(base, 1u << 4, NULL), -EINVAL);
	assert_int_equal(evm_cgroup_create(base, "lim", &cg), 0);
	unsigned have;
	assert_int_equal(evm_cgroup_controllers(cg, &have), 0);
	assert_int_equal(have, on);
	print_message("controllers for the test cgroup: 0x%x\n", have);

	static const char *const good[] = {
		[EVM_CGROUP_MEMORY_MAX] = "67108864", [EVM_CGROUP_MEMORY_HIGH] = "max",
		[EVM_CGROUP_PIDS_MAX] = "100",	      [EVM_CGROUP_CPU_WEIGHT] = "50",
		[EVM_CGROUP_CPU_MAX] = "50000 100000", [EVM_CGROUP_IO_WEIGHT] = "default 50",
	};
	for (size_t i = 0; i < sizeof(all_limits) / sizeof(all_limits[0]); i++) {
		enum evm_cgroup_limit l = all_limits[i];
		const char *file = evm_cgroup_limit_file(l);
		unsigned ctl = evm_cgroup_limit_controller(l);
		assert_non_null(file);
		assert_int_equal(strncmp(file, evm_cgroup_controller_name(ctl),
					 strlen(evm_cgroup_controller_name(ctl))),
				 0);
		char buf[128];
		if (!(have & ctl)) {
			assert_int_equal(evm_cgroup_set_limit(cg, l, good[l]), -EOPNOTSUPP);
			assert_int_equal(evm_cgroup_get_limit(cg, l, buf, sizeof(buf)), -EOPNOTSUPP);
			/* never created by the attempt */
			assert_int_equal(faccessat(evm_cgroup_fd(cg), file, F_OK, 0), -1);
			continue;
		}
		assert_int_equal(evm_cgroup_set_limit(cg, l, good[l]), 0);
		assert_int_equal(evm_cgroup_get_limit(cg, l, buf, sizeof(buf)), 0);
		assert_non_null(strstr(buf, l == EVM_CGROUP_IO_WEIGHT ? "50" : good[l]));
		assert_int_equal(evm_cgroup_set_limit(cg, l, "garbage"), -EINVAL);
	}
	assert_int_equal(evm_cgroup_set_limit(cg, 0, "1"), -EINVAL);
	assert_int_equal(evm_cgroup_set_limit(cg, EVM_CGROUP_PIDS_MAX, "1\n2"), -EINVAL);
	assert_int_equal(evm_cgroup_set_limit(cg, EVM_CGROUP_PIDS_MAX, ""), -EINVAL);
	assert_null(evm_cgroup_limit_file(99));
	assert_int_equal(evm_cgroup_limit_controller(0), 0);
	/* a cgroup that is gone is not a missing controller */
	assert_int_equal(evm_cgroup_remove(cg, 0), 0);
	assert_int_equal(evm_cgroup_set_limit(cg, EVM_CGROUP_PIDS_MAX, "10"), -ENOENT);
	assert_int_equal(evm_cgroup_set_limit(cg, EVM_CGROUP_MEMORY_MAX, "10M"), -ENOENT);
	struct evm_cgroup_stats st;
	assert_int_equal(evm_cgroup_stats(cg, &st), -ENOENT);
	evm_cgroup_free(cg);
}

static void test_stats(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "st", &cg), 0);
	unsigned have;
	assert_int_equal(evm_cgroup_controllers(cg, &have), 0);
	struct t_exit x = {0};
	int out;
	/* some CPU in the cgroup: a few thousand lines through a pipe */
	struct evm_proc *p =
		held_helper(loop, cg, HARGV("cat", "lines", "20000", "closeout", "pause"), &out, &x);
	static char buf[1 << 20];
	t_read_all(out, buf, sizeof(buf), 10000);
	assert_non_null(strstr(buf, "line 20000\n"));
	close(out);
	struct evm_cgroup_stats st;
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_true(st.have & EVM_CGROUP_STAT_CPU);
	assert_true(st.cpu_usage_usec > 0);
	assert_true(st.cpu_usage_usec >= st.cpu_user_usec);
	assert_int_equal(st.procs, 1);
	assert_int_equal(!!(st.have & EVM_CGROUP_STAT_MEMORY), !!(have & EVM_CGROUP_MEMORY));
	assert_int_equal(!!(st.have & EVM_CGROUP_STAT_OOM), !!(have & EVM_CGROUP_MEMORY));
	assert_int_equal(!!(st.have & EVM_CGROUP_STAT_PIDS), !!(have & EVM_CGROUP_PIDS));
	if (have & EVM_CGROUP_MEMORY)
		assert_true(st.memory_current > 0);
	if (have & EVM_CGROUP_PIDS)
		assert_int_equal(st.pids_current, 1);
	if (!(have & EVM_CGROUP_MEMORY))
		assert_true(st.memory_current == 0 && st.oom_kill == 0);
	evm_proc_signal(p, SIGKILL);
	RUN_UNTIL(loop, x.n == 1, 10000);
	evm_proc_unref(p);
	evm_cgroup_free(cg);
}

/* ---------------------------------------------------------------- watch */

struct wrec {
	int n;		/* callbacks */
	bool last;	/* the last value */
	struct evm_cgroup_watch *w;
	bool unwatch_self;
	struct evm_cgroup_watch *unwatch_other;
};

static void on_pop(struct evm_cgroup_watch *w, bool populated, void *data)
{
	struct wrec *r = data;
	assert_ptr_equal(w, r->w);
	r->n++;
	r->last = populated;
	if (r->unwatch_other) {
		evm_cgroup_unwatch(r->unwatch_other);
		r->unwatch_other = NULL;
	}
	if (r->unwatch_self)
		evm_cgroup_unwatch(w);
}

static void test_watch_populated(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "w", &cg), 0);
	struct wrec a = {0}, b = {0};
	assert_int_equal(evm_cgroup_watch(loop, cg, on_pop, &a, &a.w), 0);
	/* two watches on one cgroup share the kernel's watch */
	assert_int_equal(evm_cgroup_watch(loop, cg, on_pop, &b, &b.w), 0);
	assert_false(evm_cgroup_watch_populated(a.w));
	assert_int_equal(evm_cgroup_watch(NULL, cg, on_pop, &a, NULL), -EINVAL);
	assert_int_equal(evm_cgroup_watch(loop, cg, NULL, &a, NULL), -EINVAL);

	struct t_exit x = {0};
	int out;
	struct evm_proc *p = held_helper(loop, cg, HARGV("cat", "print", "in", "pause"), &out, &x);
	RUN_UNTIL(loop, a.n == 1 && b.n == 1, 10000);
	assert_true(a.last && b.last && evm_cgroup_watch_populated(a.w));
	close(out);
	/* b goes away; a must keep working on the shared kernel watch */
	evm_cgroup_unwatch(b.w);
	evm_proc_signal(p, SIGKILL);
	RUN_UNTIL(loop, a.n == 2, 10000);
	assert_false(a.last);
	assert_false(evm_cgroup_watch_populated(a.w));
	RUN_UNTIL(loop, x.n == 1, 10000);
	evm_proc_unref(p);
	/* the watch keeps its own copy: the handle may go */
	evm_cgroup_free(cg);
	/* again: a second process, and a watch that unwatches itself in its callback */
	assert_int_equal(evm_cgroup_open(evm_cgroup_path(BASE(state)), &cg), 0);
	struct evm_cgroup *w2;
	assert_int_equal(evm_cgroup_create(cg, "w", &w2), 1);
	struct wrec c = {.unwatch_self = true};
	assert_int_equal(evm_cgroup_watch(loop, w2, on_pop, &c, &c.w), 0);
	memset(&x, 0, sizeof(x));
	p = held_helper(loop, w2, HARGV("cat", "pause"), &out, &x);
	close(out);
	RUN_UNTIL(loop, a.n == 3 && c.n == 1, 10000);
	assert_true(a.last && c.last);
	evm_proc_signal(p, SIGKILL);
	RUN_UNTIL(loop, x.n == 1 && a.n == 4, 10000);
	assert_false(a.last);
	assert_int_equal(c.n, 1); /* unwatched itself after the first */
	evm_proc_unref(p);
	evm_cgroup_unwatch(a.w);
	evm_cgroup_free(w2);
	evm_cgroup_free(cg);
}

/* Many cgroups, one inotify fd; a callback unwatching another watch of the same batch. */
/*
 * A process comes and goes before the loop reads the watch's reports: the
 * kernel's two IN_MODIFY merge into one that reads populated 0, the value
 * the watch had, so nothing is reported (right for the watch alone). But a
 * service that read populated 1 itself meanwhile (an exit held until the
 * cgroup empties: evm__sv_cg_busy) waits for that emptying: once it told the
 * watch (evm__cgwatch_saw_populated), the 0 is reported. Without it the held
 * exit waited forever (test_oom_kill_while_the_exit_is_held hung once).
 */
static void test_watch_told_it_saw_populated(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "told", &cg), 0);
	struct wrec a = {0};
	assert_int_equal(evm_cgroup_watch(loop, cg, on_pop, &a, &a.w), 0);
	assert_false(evm_cgroup_watch_populated(a.w));
	/* in and out of the cgroup while the loop does not run */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	assert_int_equal(evm_cgroup_attach(cg, pid), 0);
	assert_int_equal(evm_cgroup_populated(cg), 1);
	evm__cgwatch_saw_populated(a.w); /* what evm__sv_cg_busy does on that read */
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	RUN_UNTIL(loop, a.n == 1, 10000);
	assert_false(a.last);
	assert_false(evm_cgroup_watch_populated(a.w));
	evm_cgroup_unwatch(a.w);
	evm_cgroup_free(cg);
}

static void test_watch_many(void **state)
{
	NEED_CGROUP();
	enum { N = 100 };
	struct evm_loop *loop = LOOP(state);
	static struct evm_cgroup *cg[N];
	static struct wrec r[N];
	static struct t_exit x[N];
	static struct evm_proc *p[N];
	memset(r, 0, sizeof(r));
	memset(x, 0, sizeof(x));
	int fds = t_count_fds();
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "m%d", i);
		assert_int_equal(evm_cgroup_create(BASE(state), name, &cg[i]), 0);
		assert_int_equal(evm_cgroup_watch(loop, cg[i], on_pop, &r[i], &r[i].w), 0);
	}
	/* no fd per handle, and one inotify fd for all the watches */
	assert_int_equal(t_count_fds(), fds + 1);
	for (int i = 0; i < N; i++) {
		p[i] = t_spawn(loop, HARGV("pause"), &x[i]);
		assert_int_equal(evm_cgroup_attach(cg[i], evm_proc_pid(p[i])), 0);
	}
	for (int i = 0; i < N; i++)
		RUN_UNTIL(loop, r[i].n == 1, 10000);
	/* the last one's callback unwatches the first: it may or may not have fired */
	r[N - 1].unwatch_other = r[0].w;
	assert_int_equal(evm_cgroup_kill(BASE(state)), 0);
	for (int i = 1; i < N; i++) {
		RUN_UNTIL(loop, r[i].n == 2, 10000);
		assert_false(r[i].last);
	}
	assert_true(r[0].n == 1 || r[0].n == 2);
	for (int i = 0; i < N; i++) {
		RUN_UNTIL(loop, x[i].n == 1, 10000);
		evm_proc_unref(p[i]);
		evm_cgroup_free(cg[i]);
	}
	/* the others are still watched: evm_loop_free (teardown) frees them */
}

/* ------------------------------------------------------ moving ourselves */

static void move_self(void *arg)
{
	struct evm_cgroup *base = arg, *leaf, *me;
	CHECK(evm_cgroup_create(base, "evmon.daemon", &leaf) == 0);
	CHECK(evm_cgroup_attach(leaf, 0) == 0);
	CHECK(evm_cgroup_open_self(&me) == 0);
	CHECK(!strcmp(evm_cgroup_path(me), evm_cgroup_path(leaf)));
	CHECK(evm_cgroup_procs(leaf, NULL, 0) == 1);
	/* base holds no process now: controllers can be enabled for its children */
	unsigned on;
	CHECK(evm_cgroup_enable(base, EVM_CGROUP_CPU | EVM_CGROUP_MEMORY | EVM_CGROUP_PIDS, &on) == 0);
	struct evm_cgroup *svc;
	CHECK(evm_cgroup_create(base, "web.service", &svc) == 0);
	unsigned have;
	CHECK(evm_cgroup_controllers(svc, &have) == 0 && have == on);
	evm_cgroup_free(svc);
	evm_cgroup_free(me);
	evm_cgroup_free(leaf);
}

static void test_move_self_to_leaf(void **state)
{
	NEED_CGROUP();
	t_forked(move_self, BASE(state));
	/* the fork has exited: its leaf is empty */
	struct evm_cgroup *leaf;
	assert_int_equal(evm_cgroup_create(BASE(state), "evmon.daemon", &leaf), 1);
	assert_int_equal(evm_cgroup_populated(leaf), 0);
	evm_cgroup_free(leaf);
}

/* ------------------------------------------------------- spawning into */

/* "direct" (clone3 CLONE_INTO_CGROUP), "helper" (the same, via the spawn helper),
 * "clone" (clone() without clone3: the child moves itself before exec) */
static const char *spawn_path;

static int cg_setup_spawn(void **state)
{
	setenv("EVM_SPAWN_MODE", strcmp(spawn_path, "helper") ? "direct" : "helper", 1);
	int r = cg_setup_flags(state, EVM_LOOP_REAPER);
	unsetenv("EVM_SPAWN_MODE");
	if (r == 0 && !strcmp(spawn_path, "clone"))
		LOOP(state)->no_clone3 = true; /* as under valgrind or before Linux 5.5 */
	return r;
}

static void on_pop_stop(struct evm_cgroup_watch *w, bool populated, void *data)
{
	on_pop(w, populated, data);
}

/* A child that forks grandchildren: all in the cgroup; cgroup.kill ends them; the watch fires. */
static void test_spawn_into_cgroup(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "svc.service", &cg), 0);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .flags = EVM_SPAWN_CGROUP,
				   .cgroup_fd = evm_cgroup_fd(cg)};
	o.stdio[1].mode = EVM_STDIO_PIPE;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("group", "5", "print", "ready", "pause"), &o);
	int out = evm_proc_stdio_fd(p, 1);
	pid_t gc[5];
	char line[128];
	for (int i = 0; i < 5; i++) {
		read_line(out, line, sizeof(line), 10000);
		assert_int_equal(sscanf(line, "grandchild %d", &gc[i]), 1);
	}
	read_line(out, line, sizeof(line), 10000);
	assert_string_equal(line, "ready");
	close(out);
	assert_true(proc_in(evm_proc_pid(p), cg));
	for (int i = 0; i < 5; i++)
		assert_true(proc_in(gc[i], cg));
	assert_int_equal(evm_cgroup_procs(cg, NULL, 0), 6);
	assert_int_equal(evm_cgroup_procs(BASE(state), NULL, 0), 0);

	struct wrec w = {0};
	assert_int_equal(evm_cgroup_watch(loop, cg, on_pop_stop, &w, &w.w), 0);
	assert_true(evm_cgroup_watch_populated(w.w));
	assert_int_equal(evm_cgroup_kill(cg), 0);
	RUN_UNTIL(loop, w.n == 1 && x.n == 1, 10000);
	assert_false(w.last);
	assert_int_equal(x.rec.signal, SIGKILL);
	for (int i = 0; i < 5; i++)
		RUN_UNTIL(loop, gone(gc[i]), 10000);
	evm_proc_unref(p);
	/* after cgroup.kill the cgroup takes new children (Linux would kill them at birth) */
	memset(&x, 0, sizeof(x));
	o.stdio[1].mode = EVM_STDIO_INHERIT;
	p = t_spawn_opts(loop, HARGV("exit", "7"), &o);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 7);
	/* 1 then 0 again, unless both came before one read (they may coalesce) */
	RUN_UNTIL(loop, evm_cgroup_populated(cg) == 0, 10000);
	RUN_UNTIL(loop, !w.last, 10000);
	evm_cgroup_unwatch(w.w);
	evm_proc_unref(p);
	evm_cgroup_free(cg);
}

static void spawn_fails(struct evm_loop *loop, int fd, int want)
{
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0"), .flags = EVM_SPAWN_CGROUP,
				   .cgroup_fd = fd, .error = &err, .pdeath_signal = SIGKILL};
	struct evm_proc *p = NULL;
	int r = evm_spawn(loop, &o, &p);
	assert_true(r < 0);
	assert_null(p);
	if (want)
		assert_int_equal(r, want);
	assert_int_equal(err.error, -r);
	assert_int_equal(err.stage, EVM_STAGE_CGROUP);
	assert_string_equal(evm_spawn_stage_name(err.stage), "cgroup");
}

static void test_spawn_into_cgroup_errors(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	bool in_child = !strcmp(spawn_path, "clone");
	spawn_fails(loop, -1, -EBADF);
	/* a directory that is not a cgroup */
	int tmp = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(tmp >= 0);
	spawn_fails(loop, tmp, in_child ? -ENOENT : -EBADF);
	close(tmp);
	/* a cgroup removed meanwhile */
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "gone", &cg), 0);
	assert_int_equal(evm_cgroup_remove(cg, 0), 0);
	spawn_fails(loop, evm_cgroup_fd(cg), 0);
	evm_cgroup_free(cg);
	/* a cgroup with a domain controller on for its children takes no process */
	assert_int_equal(evm_cgroup_create(BASE(state), "inner", &cg), 0);
	struct evm_cgroup *leaf;
	assert_int_equal(evm_cgroup_create(cg, "leaf", &leaf), 0);
	/* any controller will do (here often only hugetlb): on down from our run's cgroup */
	char ctl[256], cmd[260];
	ssize_t n = evm__cg_read(evm_cgroup_fd(run_cg), "cgroup.controllers", ctl, sizeof(ctl));
	assert_true(n >= 0);
	ctl[strcspn(ctl, " \n")] = 0;
	snprintf(cmd, sizeof(cmd), "+%s", ctl);
	if (*ctl && evm__cg_write(evm_cgroup_fd(run_cg), "cgroup.subtree_control", cmd) == 0 &&
	    evm__cg_write(evm_cgroup_fd(BASE(state)), "cgroup.subtree_control", cmd) == 0 &&
	    evm__cg_write(evm_cgroup_fd(cg), "cgroup.subtree_control", cmd) == 0) {
		spawn_fails(loop, evm_cgroup_fd(cg), -EBUSY);
	} else {
		print_message("(no controller to enable: the EBUSY case is not checked)\n");
	}
	/* its leaf still works, and nothing was left behind by the failures */
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .flags = EVM_SPAWN_CGROUP,
				   .cgroup_fd = evm_cgroup_fd(leaf)};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("exit", "7"), &o);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 7);
	assert_int_equal(evm_cgroup_populated(BASE(state)), 0);
	evm_proc_unref(p);
	evm_cgroup_free(leaf);
	evm_cgroup_free(cg);
}

/* A service started into a cgroup: every start lands there. */
static void test_service_into_cgroup(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "web.service", &cg), 0);
	struct evm_service_opts so = {
		.name = "web",
		.spawn = {.argv = HARGV("pause"), .flags = EVM_SPAWN_CGROUP,
			  .cgroup_fd = evm_cgroup_fd(cg), .pdeath_signal = SIGKILL},
		.restart = EVM_RESTART_ALWAYS,
		.set = EVM_SVC_BACKOFF_INITIAL,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, evm_service_proc(svc) != NULL, 10000);
	pid_t first = evm_proc_pid(evm_service_proc(svc));
	assert_true(proc_in(first, cg));
	assert_int_equal(evm_cgroup_kill(cg), 0);
	RUN_UNTIL(loop,
		  evm_service_proc(svc) && evm_proc_pid(evm_service_proc(svc)) != first, 10000);
	pid_t second = evm_proc_pid(evm_service_proc(svc));
	assert_true(proc_in(second, cg));
	assert_int_equal(evm_cgroup_procs(cg, NULL, 0), 1);
	evm_service_remove(svc);
	RUN_UNTIL(loop, evm_cgroup_populated(cg) == 0, 15000);
	evm_cgroup_free(cg);
}

/*
 * A service given its cgroup (evm_service_opts.cgroup) ends every process
 * of it at a stop, and keeps the cgroup's handle while it is still
 * stopping: the caller frees its own right after the removal (as the
 * daemon's `ctl remove` does), the grandchildren ignore SIGTERM, and the
 * removal still ends them with cgroup.kill at stop_timeout.
 */
static void on_removed(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	if (ev->removed)
		*(int *)data = 1;
}

static void test_service_removed_keeps_its_cgroup(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "db.service", &cg), 0);
	int removed = 0;
	struct evm_service_opts so = {
		.name = "db",
		.spawn = {.argv = HARGV("group", "2", "pause")},
		.cgroup = cg,
		.stop_timeout_ms = 200,
		.set = EVM_SVC_STOP_TIMEOUT,
		.on_event = on_removed,
		.data = &removed,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, evm_cgroup_procs(cg, NULL, 0) == 3, 10000);
	evm_service_remove(svc);
	evm_cgroup_free(cg); /* ours; the service holds its own */
	RUN_UNTIL(loop, removed, 15000);
	assert_int_equal(evm_cgroup_create(BASE(state), "db.service", &cg), 1);
	assert_int_equal(evm_cgroup_populated(cg), 0); /* zombies do not count */
	RUN_UNTIL(loop, !zombie_child(), 10000);       /* the orphans are ours to reap */
	evm_cgroup_free(cg);
}

/* How many of our fds are open on the directory at path. */
static int fds_on(const char *path)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char target[PATH_MAX];
		ssize_t len = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = 0;
			n += !strcmp(target, path);
		}
	}
	if (d)
		closedir(d);
	return n;
}

/*
 * A service holds no fd of its cgroup's directory, running or not: each
 * spawn opens one for the clone and closes it (10,000 services would
 * otherwise hold 10,000 of them). The handle opens one only when asked.
 */
static void test_service_holds_no_cgroup_fd(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "lean.service", &cg), 0);
	const char *path = evm_cgroup_path(cg);
	assert_int_equal(fds_on(path), 0);
	struct evm_service_opts so = {
		.name = "lean",
		.spawn = {.argv = HARGV("pause"), .pdeath_signal = SIGKILL},
		.cgroup = cg,
		.restart = EVM_RESTART_ALWAYS,
		.set = EVM_SVC_BACKOFF_INITIAL,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, evm_service_proc(svc) != NULL, 10000);
	pid_t first = evm_proc_pid(evm_service_proc(svc));
	assert_true(proc_in(first, cg));
	assert_int_equal(fds_on(path), 0);
	/* a restart spawns into it again */
	assert_int_equal(evm_cgroup_kill(cg), 0);
	RUN_UNTIL(loop,
		  evm_service_proc(svc) && evm_proc_pid(evm_service_proc(svc)) != first, 10000);
	assert_true(proc_in(evm_proc_pid(evm_service_proc(svc)), cg));
	assert_int_equal(fds_on(path), 0);
	/* a new fd at each open_dir; the handle keeps the one evm_cgroup_fd opened */
	int a = evm_cgroup_open_dir(cg), b = evm_cgroup_open_dir(cg);
	assert_true(a >= 0 && b >= 0 && a != b);
	close(a);
	close(b);
	int fd = evm_cgroup_fd(cg);
	assert_true(fd >= 0);
	assert_int_equal(evm_cgroup_fd(cg), fd);
	assert_int_equal(fds_on(path), 1);
	evm_service_remove(svc);
	RUN_UNTIL(loop, evm_cgroup_populated(cg) == 0, 15000);
	evm_cgroup_free(cg);
}

static void count_removed(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	if (ev->removed)
		++*(int *)data;
}

/*
 * A detached service's main process exits while its cgroup still holds
 * processes (that ignore SIGTERM): no restart (restart = always), it is
 * STOPPING, what is left is stopped (cgroup.kill at stop_timeout), and only
 * then is it removed.
 */
static void test_detached_exit_stops_what_its_cgroup_holds(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create_later(BASE(state), "detached.service", &cg), 0);
	int removed = 0;
	struct evm_service_opts so = {
		.name = "detached",
		.spawn = {.argv = HARGV("group", "2", "pause"), .pdeath_signal = SIGKILL},
		.cgroup = cg,
		.restart = EVM_RESTART_ALWAYS,
		.stop_timeout_ms = 200,
		.set = EVM_SVC_STOP_TIMEOUT,
		.on_event = count_removed,
		.data = &removed,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, evm_cgroup_procs(cg, NULL, 0) == 3, 10000);
	assert_int_equal(evm_service_detach(svc), 0);
	kill(evm_proc_pid(evm_service_proc(svc)), SIGKILL);
	RUN_UNTIL(loop, removed || evm_service_state(svc) == EVM_STATE_STOPPING, 10000);
	assert_int_equal(removed, 0); /* its cgroup holds the two others */
	RUN_UNTIL(loop, removed == 1, 15000);
	assert_int_equal(evm_cgroup_populated(cg), 0);
	RUN_UNTIL(loop, !zombie_child(), 10000);
	evm_cgroup_free(cg);
}

/*
 * A cgroup made later: no directory until the service's first spawn, read
 * as empty until then; once made, its processes are in it and the stop
 * waits for it to empty (the watch is armed when the spawn makes it: the
 * grandchildren ignore SIGTERM, so STOPPED comes after cgroup.kill).
 */
static void test_create_later(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg, *lim;
	assert_int_equal(evm_cgroup_create_later(BASE(state), "later.service", &cg), 0);
	assert_int_equal(evm_cgroup_create_later(BASE(state), "a/b", &lim), -EINVAL);
	struct stat st;
	assert_int_equal(stat(evm_cgroup_path(cg), &st), -1);
	assert_int_equal(evm_cgroup_populated(cg), -ENOENT);
	struct evm_cgroup_stats cs;
	assert_int_equal(evm_cgroup_stats(cg, &cs), 0);
	assert_true((cs.have & EVM_CGROUP_STAT_PROCS) && cs.procs == 0);
	struct evm_service_opts so = {
		.name = "later",
		.spawn = {.argv = HARGV("group", "2", "pause"), .pdeath_signal = SIGKILL},
		.cgroup = cg,
		.stop_timeout_ms = 200,
		.set = EVM_SVC_STOP_TIMEOUT,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(stat(evm_cgroup_path(cg), &st), -1); /* a service does not make it */
	assert_int_equal(evm_service_start(svc), 0);
	assert_int_equal(stat(evm_cgroup_path(cg), &st), 0);
	RUN_UNTIL(loop, evm_cgroup_procs(cg, NULL, 0) == 3, 10000);
	assert_true(proc_in(evm_proc_pid(evm_service_proc(svc)), cg));
	assert_int_equal(evm_service_stop(svc), 0);
	RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_STOPPED, 15000);
	assert_int_equal(evm_cgroup_populated(cg), 0);
	assert_int_equal(evm_cgroup_procs(cg, NULL, 0), 0);
	RUN_UNTIL(loop, !zombie_child(), 10000); /* the killed grandchildren, ours to reap */
	evm_service_remove(svc);
	/* a limit makes it too (the controller may be off: the directory is there) */
	assert_int_equal(evm_cgroup_create_later(BASE(state), "limited.service", &lim), 0);
	int r = evm_cgroup_set_limit(lim, EVM_CGROUP_PIDS_MAX, "10");
	assert_true(r == 0 || r == -EOPNOTSUPP);
	assert_int_equal(stat(evm_cgroup_path(lim), &st), 0);
	evm_cgroup_free(lim);
	evm_cgroup_free(cg);
}

/*
 * Across an exec of ourselves (here: a second loop in the same process),
 * a service takes its cgroup back as the old image knew it: the inotify fd
 * of the watches kept (evm_cgroup_watch_inherit), and its watch, its last
 * populated value and its OOM base from evm_service_cgroup_export, with no
 * look at the cgroup (the value given is taken as it is, even when it is no
 * longer true). A change during the "exec" waits in the kept fd, and is
 * read by the new loop.
 */
static void test_cgroup_kept_across_exec(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state), *next, *other;
	struct evm_cgroup *cg, *again;
	assert_int_equal(evm_cgroup_create(BASE(state), "kept.service", &cg), 0);
	assert_int_equal(evm_cgroup_watch_fd(loop), -ENOENT); /* no watch yet */
	struct evm_service_opts so = {
		.name = "kept",
		.spawn = {.argv = HARGV("pause"), .pdeath_signal = SIGKILL},
		.cgroup = cg,
		/*
		 * killed below, its exit read by this loop after the other one
		 * took the change from the shared fd: no restart to wait for
		 */
		.restart = EVM_RESTART_NEVER,
	};
	struct evm_service *svc, *svc2;
	struct evm_cgroup_kept k;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, evm_service_cgroup_export(svc, &k) == 0 &&
			(k.flags & EVM_CGROUP_KEPT_POPULATED), 10000);
	assert_true((k.flags & EVM_CGROUP_KEPT_MADE) && (k.flags & EVM_CGROUP_KEPT_WATCH));
	assert_true(k.wd >= 0);
	pid_t pid = evm_proc_pid(evm_service_proc(svc));
	int ifd = evm_cgroup_watch_fd(loop);
	assert_true(ifd >= 0);

	/* the new image: its loop takes the fd over, the service its watch */
	int kept = fcntl(ifd, F_DUPFD_CLOEXEC, 3);
	assert_true(kept >= 0);
	struct evm_loop_opts lo = {0};
	assert_int_equal(evm_loop_new(&next, &lo), 0);
	int pipefd[2];
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	assert_int_equal(evm_cgroup_watch_inherit(next, pipefd[0]), -EINVAL); /* not inotify */
	close(pipefd[0]);
	close(pipefd[1]);
	fcntl(kept, F_SETFD, 0); /* as an exec leaves it */
	assert_int_equal(evm_cgroup_watch_inherit(next, kept), 0);
	assert_int_equal(fcntl(kept, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(evm_cgroup_watch_inherit(next, kept), -EBUSY);
	assert_int_equal(evm_cgroup_watch_fd(next), kept);
	assert_int_equal(evm_cgroup_create_later(BASE(state), "kept.service", &again), 0);
	so.cgroup = again;
	so.name = "kept2";
	struct evm_cgroup_kept bad = {.flags = EVM_CGROUP_KEPT_WATCH, .wd = k.wd};
	so.cgroup_kept = &bad;
	assert_int_equal(evm_service_new(next, &so, &svc2), -EINVAL); /* watched but not made */
	bad.flags = 1u << 9;
	assert_int_equal(evm_service_new(next, &so, &svc2), -EINVAL);
	struct evm_cgroup_kept told = k;
	told.flags |= EVM_CGROUP_KEPT_OOM | EVM_CGROUP_KEPT_NO_OOM;
	so.cgroup_kept = &told;
	assert_int_equal(evm_service_new(next, &so, &svc2), -EINVAL); /* a base and none */
	told.flags &= ~(unsigned)EVM_CGROUP_KEPT_NO_OOM;
	told.oom_kills = 7;
	so.cgroup = NULL;
	assert_int_equal(evm_service_new(next, &so, &svc2), -EINVAL); /* a record of no cgroup */
	so.cgroup = again;
	assert_int_equal(evm_service_new(next, &so, &svc2), 0);
	so.cgroup_kept = NULL;
	struct evm_cgroup_kept k2;
	assert_int_equal(evm_service_cgroup_export(svc2, &k2), 0);
	/* its watch is the same kernel watch; OOM is taken at an adoption only */
	assert_int_equal(k2.flags, k.flags & ~(unsigned)(EVM_CGROUP_KEPT_OOM | EVM_CGROUP_KEPT_NO_OOM));
	assert_int_equal(k2.wd, k.wd);

	/* the process dies during the "exec": the new loop reads the change from the fd */
	assert_int_equal(kill(pid, SIGKILL), 0);
	RUN_UNTIL(next, evm_service_cgroup_export(svc2, &k2) == 0 &&
			!(k2.flags & EVM_CGROUP_KEPT_POPULATED), 10000);
	assert_true(k2.flags & EVM_CGROUP_KEPT_WATCH);
	evm_service_remove(svc2);
	evm_loop_run_once(next, 0);
	evm_loop_free(next); /* closes kept */
	evm_cgroup_free(cg);
	evm_cgroup_free(again);

	/* a loop that inherits nothing makes its own watches of a kept handle */
	assert_int_equal(evm_loop_new(&other, &lo), 0);
	assert_int_equal(evm_cgroup_create_later(BASE(state), "kept.service", &again), 0);
	so.cgroup = again;
	so.name = "kept3";
	so.cgroup_kept = &k;
	assert_int_equal(evm_service_new(other, &so, &svc2), 0);
	so.cgroup_kept = NULL;
	assert_int_equal(evm_service_cgroup_export(svc2, &k2), 0);
	assert_true((k2.flags & EVM_CGROUP_KEPT_WATCH) && !(k2.flags & EVM_CGROUP_KEPT_POPULATED));
	assert_true(evm_cgroup_watch_fd(other) >= 0 && evm_cgroup_watch_fd(other) != ifd);
	evm_service_remove(svc2);
	evm_loop_run_once(other, 0);
	evm_loop_free(other);
	evm_cgroup_free(again);

	/* the old loop reaps its child, as the exec'ed image would */
	RUN_UNTIL(loop, evm_service_state(svc) != EVM_STATE_RUNNING, 10000);
	evm_service_remove(svc);
	RUN_UNTIL(loop, evm_service_find(loop, "kept") == NULL, 10000);
}

/*
 * A creation that fails keeps nothing of the record it was given: a
 * service made later with the same cgroup and no record (the daemon's
 * retry of a failed creation) looks at the cgroup itself. With the record
 * left on the cgroup's handle (evm_cgroup_keep, before), the retry took
 * the old image's watch and its "populated" after the cgroup had emptied
 * (and the new loop had read and dropped that change): the cgroup's
 * emptying was never reported.
 */
static void test_cgroup_kept_failed_creation(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state), *next;
	struct evm_cgroup *cg, *again;
	assert_int_equal(evm_cgroup_create(BASE(state), "failed.service", &cg), 0);
	struct evm_service_opts so = {
		.name = "old",
		.spawn = {.argv = HARGV("pause"), .pdeath_signal = SIGKILL},
		.cgroup = cg,
		.restart = EVM_RESTART_NEVER,
	};
	struct evm_service *svc, *taken, *retry;
	struct evm_cgroup_kept k, k2;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, evm_service_cgroup_export(svc, &k) == 0 &&
			(k.flags & EVM_CGROUP_KEPT_POPULATED), 10000);
	pid_t pid = evm_proc_pid(evm_service_proc(svc));
	int kept = fcntl(evm_cgroup_watch_fd(loop), F_DUPFD_CLOEXEC, 3);
	assert_true(kept >= 0);
	struct evm_loop_opts lo = {0};
	assert_int_equal(evm_loop_new(&next, &lo), 0);
	assert_int_equal(evm_cgroup_watch_inherit(next, kept), 0);
	assert_int_equal(evm_cgroup_create_later(BASE(state), "failed.service", &again), 0);

	/* its name is taken in the new loop: the creation with the record fails */
	struct evm_service_opts other = {.name = "svc", .spawn = {.argv = HARGV("pause")}};
	assert_int_equal(evm_service_new(next, &other, &taken), 0);
	so.name = "svc";
	so.cgroup = again;
	so.cgroup_kept = &k;
	assert_int_equal(evm_service_new(next, &so, &retry), -EEXIST);

	/*
	 * The new loop turns (its first turn removes the watch no service
	 * took back) and the cgroup empties: the record's "populated" is
	 * wrong now.
	 */
	assert_true(evm_loop_run_once(next, 0) >= 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	WAIT_FOR(evm_cgroup_populated(again) == 0, 10000);
	assert_true(evm_loop_run_once(next, 0) >= 0);

	/* made again, with no record: it watches and reads the cgroup itself */
	so.name = "svc2";
	so.cgroup_kept = NULL;
	assert_int_equal(evm_service_new(next, &so, &retry), 0);
	assert_int_equal(evm_service_cgroup_export(retry, &k2), 0);
	assert_true((k2.flags & EVM_CGROUP_KEPT_MADE) && (k2.flags & EVM_CGROUP_KEPT_WATCH));
	assert_false(k2.flags & EVM_CGROUP_KEPT_POPULATED);
	evm_service_remove(retry);
	evm_service_remove(taken);
	evm_loop_run_once(next, 0);
	evm_loop_free(next); /* closes kept */
	evm_cgroup_free(again);
	evm_cgroup_free(cg);
	RUN_UNTIL(loop, evm_service_state(svc) != EVM_STATE_RUNNING, 10000);
	evm_service_remove(svc);
	RUN_UNTIL(loop, evm_service_find(loop, "old") == NULL, 10000);
}

/* The watches of inotify fd fd, from /proc/self/fdinfo: how many; the first max in wds */
static int fd_watches(int fd, int *wds, int max)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	int n = 0, wd;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "inotify wd:%x", &wd) == 1 && n++ < max)
			wds[n - 1] = wd;
	fclose(f);
	return n;
}

/*
 * The watch a record names is checked against the inherited fd's own list
 * (/proc/self/fdinfo): a descriptor the fd does not have (a stale state),
 * one of another cgroup's file, or one a service took back already is
 * refused, and the cgroup watched anew: its value read, not the record's
 * (each record here says "populated" of an empty cgroup; taken back, that
 * is what the service would believe). The watches no service took back are
 * removed at the new loop's first turn, and none is taken back after it.
 */
static void test_cgroup_kept_checked(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state), *next;
	enum { A, B, C, D, N };
	static const char *const names[N] = {"a.service", "b.service", "c.service", "d.service"};
	struct evm_cgroup *cg[N];
	struct evm_cgroup_watch *w[N];
	struct wrec rec[N] = {{0}};
	int wd[N];
	for (int i = 0; i < N; i++) {
		assert_int_equal(evm_cgroup_create(BASE(state), names[i], &cg[i]), 0);
		assert_int_equal(evm_cgroup_watch(loop, cg[i], on_pop, &rec[i], &w[i]), 0);
		rec[i].w = w[i];
		wd[i] = evm__cgwatch_wd(w[i]);
	}
	int ifd = evm_cgroup_watch_fd(loop), got[8];
	assert_int_equal(fd_watches(ifd, got, 8), N);
	int bogus = 0;
	for (int i = 0; i < N; i++)
		bogus = wd[i] >= bogus ? wd[i] + 1000 : bogus;

	int kept = fcntl(ifd, F_DUPFD_CLOEXEC, 3);
	assert_true(kept >= 0);
	struct evm_loop_opts lo = {0};
	assert_int_equal(evm_loop_new(&next, &lo), 0);
	assert_int_equal(evm_cgroup_watch_inherit(next, kept), 0);
	struct evm_service_opts so = {.spawn = {.argv = HARGV("pause")}, .restart = EVM_RESTART_NEVER};
	struct evm_cgroup_kept k = {.flags = EVM_CGROUP_KEPT_MADE | EVM_CGROUP_KEPT_WATCH |
					     EVM_CGROUP_KEPT_POPULATED};
	struct evm_cgroup_kept out;
	struct evm_service *svc[6];
	so.cgroup_kept = &k;
	/* a's own watch: taken back, its value the record's */
	so.name = "a";
	so.cgroup = cg[A];
	k.wd = wd[A];
	assert_int_equal(evm_service_new(next, &so, &svc[0]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[0], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_POPULATED) && out.wd == wd[A]);
	/* a's again (another service of that cgroup): taken already, watched anew */
	so.name = "a2";
	assert_int_equal(evm_service_new(next, &so, &svc[1]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[1], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_WATCH) && !(out.flags & EVM_CGROUP_KEPT_POPULATED));
	assert_int_equal(out.wd, wd[A]); /* the same file: the kernel's same watch */
	/* b named with c's watch: another file's, watched anew */
	so.name = "b";
	so.cgroup = cg[B];
	k.wd = wd[C];
	assert_int_equal(evm_service_new(next, &so, &svc[2]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[2], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_WATCH) && !(out.flags & EVM_CGROUP_KEPT_POPULATED));
	assert_int_equal(out.wd, wd[B]);
	/* c with a descriptor the fd does not have: watched anew */
	so.name = "c";
	so.cgroup = cg[C];
	k.wd = bogus;
	assert_int_equal(evm_service_new(next, &so, &svc[3]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[3], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_WATCH) && !(out.flags & EVM_CGROUP_KEPT_POPULATED));
	assert_int_equal(out.wd, wd[C]);
	/* d's is taken by no service: removed at the first turn, and not taken back after */
	assert_int_equal(fd_watches(kept, got, 8), N);
	assert_true(evm_loop_run_once(next, 0) >= 0);
	assert_int_equal(fd_watches(kept, got, 8), N - 1);
	for (int i = 0; i < N - 1; i++)
		assert_true(got[i] != wd[D]);
	so.name = "d";
	so.cgroup = cg[D];
	k.wd = wd[D];
	assert_int_equal(evm_service_new(next, &so, &svc[4]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[4], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_WATCH) && !(out.flags & EVM_CGROUP_KEPT_POPULATED));
	assert_true(out.wd != wd[D]); /* a new watch of the kernel's */
	so.name = "a3"; /* and a's own, after the first turn: watched anew too */
	so.cgroup = cg[A];
	k.wd = wd[A];
	assert_int_equal(evm_service_new(next, &so, &svc[5]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[5], &out), 0);
	assert_true(!(out.flags & EVM_CGROUP_KEPT_POPULATED) && out.wd == wd[A]);
	assert_int_equal(fd_watches(kept, got, 8), N);

	for (int i = 0; i < 6; i++)
		evm_service_remove(svc[i]);
	evm_loop_run_once(next, 0);
	evm_loop_free(next); /* closes kept */
	for (int i = 0; i < N; i++) {
		evm_cgroup_unwatch(w[i]);
		evm_cgroup_free(cg[i]);
	}
	evm_loop_run_once(loop, 0);
}

/*
 * A record says which file its watch is on (EVM_CGROUP_KEPT_INO: learnt
 * when the watch was made, an fstat of the fd that read its first value),
 * and the watch is taken back only if the inherited fd's own list says the
 * same of that descriptor: the cgroup's files are not looked at (a stat
 * each was most of the re-exec's pause at 10,000 services). A record that
 * names another file, or another device, is refused, and the cgroup
 * watched anew; the file of a watch taken back is passed on again.
 */
static void test_cgroup_kept_ino(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state), *next;
	enum { A, B, C, N };
	static const char *const names[N] = {"a.service", "b.service", "c.service"};
	struct evm_cgroup *cg[N];
	struct evm_cgroup_watch *w[N];
	struct wrec rec[N] = {{0}};
	struct evm__file_id id[N];
	int wd[N];
	for (int i = 0; i < N; i++) {
		char path[PATH_MAX];
		struct stat st;
		assert_int_equal(evm_cgroup_create(BASE(state), names[i], &cg[i]), 0);
		assert_int_equal(evm_cgroup_watch(loop, cg[i], on_pop, &rec[i], &w[i]), 0);
		rec[i].w = w[i];
		wd[i] = evm__cgwatch_wd(w[i]);
		assert_true(evm__cgwatch_id(w[i], &id[i]));
		snprintf(path, sizeof(path), "%s/cgroup.events", evm_cgroup_path(cg[i]));
		assert_int_equal(stat(path, &st), 0);
		assert_true(id[i].ino == (uint64_t)st.st_ino && id[i].dev == (uint64_t)st.st_dev);
	}
	assert_true(id[A].ino != id[B].ino);

	int kept = fcntl(evm_cgroup_watch_fd(loop), F_DUPFD_CLOEXEC, 3);
	assert_true(kept >= 0);
	struct evm_loop_opts lo = {0};
	assert_int_equal(evm_loop_new(&next, &lo), 0);
	assert_int_equal(evm_cgroup_watch_inherit(next, kept), 0);
	struct evm_service_opts so = {.spawn = {.argv = HARGV("pause")}, .restart = EVM_RESTART_NEVER};
	/* each record says "populated" of an empty cgroup: taken back, the service believes it */
	struct evm_cgroup_kept k = {.flags = EVM_CGROUP_KEPT_MADE | EVM_CGROUP_KEPT_WATCH |
					     EVM_CGROUP_KEPT_POPULATED | EVM_CGROUP_KEPT_INO};
	struct evm_cgroup_kept out;
	struct evm_service *svc[N];
	so.cgroup_kept = &k;
	/* a: its own watch and file: taken back, and its file passed on */
	so.name = "a";
	so.cgroup = cg[A];
	k.wd = wd[A];
	k.ino = id[A].ino;
	k.dev = id[A].dev;
	assert_int_equal(evm_service_new(next, &so, &svc[A]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[A], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_POPULATED) && out.wd == wd[A]);
	assert_true((out.flags & EVM_CGROUP_KEPT_INO) && out.ino == id[A].ino && out.dev == id[A].dev);
	/* b: its own descriptor, but the record names a's file: watched anew (a stat would take it) */
	so.name = "b";
	so.cgroup = cg[B];
	k.wd = wd[B];
	k.ino = id[A].ino;
	k.dev = id[A].dev;
	assert_int_equal(evm_service_new(next, &so, &svc[B]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[B], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_WATCH) && !(out.flags & EVM_CGROUP_KEPT_POPULATED));
	assert_true(out.wd == wd[B] && out.ino == id[B].ino && out.dev == id[B].dev);
	/* c: its own descriptor and inode, on another device: watched anew */
	so.name = "c";
	so.cgroup = cg[C];
	k.wd = wd[C];
	k.ino = id[C].ino;
	k.dev = id[C].dev + 1;
	assert_int_equal(evm_service_new(next, &so, &svc[C]), 0);
	assert_int_equal(evm_service_cgroup_export(svc[C], &out), 0);
	assert_true((out.flags & EVM_CGROUP_KEPT_WATCH) && !(out.flags & EVM_CGROUP_KEPT_POPULATED));
	assert_true(out.wd == wd[C] && out.ino == id[C].ino && out.dev == id[C].dev);
	/* INO without WATCH is not a record */
	k.flags = EVM_CGROUP_KEPT_MADE | EVM_CGROUP_KEPT_INO;
	so.name = "d";
	struct evm_service *bad;
	assert_int_equal(evm_service_new(next, &so, &bad), -EINVAL);

	for (int i = 0; i < N; i++)
		evm_service_remove(svc[i]);
	evm_loop_run_once(next, 0);
	evm_loop_free(next); /* closes kept */
	for (int i = 0; i < N; i++) {
		evm_cgroup_unwatch(w[i]);
		evm_cgroup_free(cg[i]);
	}
	evm_loop_run_once(loop, 0);
}

/* -------------------------------------------------------------------- main */

/* Remove the cgroups of runs that died: evmtest.* whose lock is free. */
static void sweep_stale(void)
{
	DIR *d = opendir(evm_cgroup_path(self_cg));
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "evmtest.", 8) != 0)
			continue;
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct evm_cgroup *cg;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && evm_cgroup_create(self_cg, e->d_name, &cg) == 1) {
			evm_cgroup_kill(cg);
			evm_cgroup_remove(cg, 5000);
			evm_cgroup_free(cg);
		}
		close(fd);
	}
	closedir(d);
}

static void find_cgroup(void)
{
	int r = evm_cgroup_open_self(&self_cg);
	if (r < 0) {
		snprintf(skip_reason, sizeof(skip_reason), "no cgroup v2 hierarchy: %s", strerror(-r));
		return;
	}
	if ((r = evm_cgroup_writable(self_cg)) < 0) {
		snprintf(skip_reason, sizeof(skip_reason), "cgroup %s is not writable: %s",
			 evm_cgroup_path(self_cg), strerror(-r));
		evm_cgroup_free(self_cg);
		self_cg = NULL;
		return;
	}
	sweep_stale();
	/* a name no other run (another PID namespace, say) can have */
	uint64_t rnd;
	char name[40];
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)t_now_ms() ^ ((uint64_t)getpid() << 32);
	snprintf(name, sizeof(name), "evmtest.%016llx", (unsigned long long)rnd);
	if ((r = evm_cgroup_create(self_cg, name, &run_cg)) != 0) {
		fprintf(stderr, "create %s: %s\n", name, strerror(r < 0 ? -r : EEXIST));
		exit(1);
	}
	evm_cgroup_fd(run_cg); /* held from now on: tests count fds after it */
	run_lock = openat(evm_cgroup_fd(self_cg), name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (run_lock < 0 || flock(run_lock, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "lock %s: %s\n", name, strerror(errno));
		exit(1);
	}
}

/*
 * A handle on a fake cgroup: a plain directory (tmpfs or not) with the files
 * the test writes, for what needs no real cgroup: reading memory.events'
 * oom_kill at a service's spawn and exit, and remembering absent files.
 */
static struct evm_cgroup *fake_cg(char *dir)
{
	assert_non_null(mkdtemp(dir));
	struct evm_cgroup *cg = calloc(1, sizeof(*cg));
	assert_non_null(cg);
	atomic_init(&cg->refs, 1);
	atomic_init(&cg->made, 1);
	cg->path = strdup(dir);
	atomic_init(&cg->dfd, open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC));
	assert_true(atomic_load(&cg->dfd) >= 0);
	return cg;
}

static void fake_write(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void fake_free(struct evm_cgroup *cg, const char *dir)
{
	static const char *const files[] = {"cgroup.procs", "cpu.stat", "memory.events",
					    "memory.current", "pids.current"};
	char path[PATH_MAX];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	evm_cgroup_free(cg);
}

/* a time long enough ago that every absent file is tried again */
static void fake_age(struct evm_cgroup *cg)
{
	atomic_store(&cg->absent_at, atomic_load(&cg->absent_at) - EVM__CG_ABSENT_SECS - 1);
}

static void test_oom_kills_fake(void **state)
{
	(void)state;
	char dir[] = "/tmp/evm-fakecg-XXXXXX";
	struct evm_cgroup *cg = fake_cg(dir);
	fake_write(dir, "cgroup.procs", "");
	uint64_t n = 99;
	/* no memory controller: absent, and remembered */
	assert_int_equal(evm__cg_oom_kills(cg, &n), -EOPNOTSUPP);
	assert_int_equal(n, 0);
	fake_write(dir, "memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n");
	assert_int_equal(evm__cg_oom_kills(cg, &n), -EOPNOTSUPP); /* not opened again yet */
	fake_age(cg);
	assert_int_equal(evm__cg_oom_kills(cg, &n), 0);
	assert_int_equal(n, 1);
	/* the test's "OOM kill": the counter grows */
	fake_write(dir, "memory.events", "low 0\nhigh 0\nmax 3\noom 3\noom_kill 2\n");
	assert_int_equal(evm__cg_oom_kills(cg, &n), 0);
	assert_int_equal(n, 2);
	/* the cgroup gone: -ENOENT, not "absent" */
	fake_free(cg, dir);
	char dir2[] = "/tmp/evm-fakecg-XXXXXX", path[PATH_MAX];
	cg = fake_cg(dir2);
	fake_write(dir2, "memory.events", "oom_kill 0\n");
	assert_int_equal(evm__cg_oom_kills(cg, &n), 0);
	snprintf(path, sizeof(path), "%s/memory.events", dir2);
	unlink(path);
	assert_int_equal(evm__cg_oom_kills(cg, &n), -ENOENT); /* no cgroup.procs either */
	assert_int_equal(atomic_load(&cg->absent), 0);
	fake_free(cg, dir2);
}

/* A child of ours outside any loop, paused until killed; with its pidfd. */
static pid_t kept_child(int *pidfd)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	*pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	assert_true(*pidfd >= 0);
	return pid;
}

/*
 * A re-exec's adoption takes the OOM base its run began with from the old
 * image, or that it had none (the memory controller off then:
 * EVM_CGROUP_KEPT_NO_OOM): memory.events is not read again, so an oom_kill
 * count that is there now (a controller enabled since, kills before the
 * exec) is not taken for this run's. With neither flag it is read at the
 * adoption, and a kill after it is an OOM kill.
 */
static void test_kept_oom_base_at_adoption(void **state)
{
	(void)state;
	static const unsigned how[] = {EVM_CGROUP_KEPT_NO_OOM, EVM_CGROUP_KEPT_OOM, 0};
	for (size_t i = 0; i < sizeof(how) / sizeof(how[0]); i++) {
		char dir[] = "/tmp/evm-fakecg-XXXXXX";
		struct evm_cgroup *cg = fake_cg(dir);
		fake_write(dir, "cgroup.procs", "");
		fake_write(dir, "memory.events", "oom_kill 4\n"); /* there now, not at the run's start */
		struct evm_loop *loop;
		struct evm_loop_opts lo = {0};
		assert_int_equal(evm_loop_new(&loop, &lo), 0);
		struct evm_cgroup_kept k = {.flags = EVM_CGROUP_KEPT_MADE | how[i], .oom_kills = 4};
		struct evm_service_opts so = {
			.cgroup_kept = &k,
			.name = "oomkept",
			.spawn = {.argv = (char *const[]){"true", NULL}},
			.cgroup = cg,
			.kill_mode = EVM_KILL_PROCESS, /* no cgroup.events to watch here */
			.restart = EVM_RESTART_NEVER,
		};
		struct evm_service *svc;
		assert_int_equal(evm_service_new(loop, &so, &svc), 0);
		int pidfd;
		pid_t pid = kept_child(&pidfd);
		struct evm_adopt_opts o = {
			.pid = pid, .pidfd = pidfd,
			.flags = EVM_ADOPT_PIDFD | EVM_ADOPT_KEPT | EVM_ADOPT_START_TIME,
		};
		assert_int_equal(evm_proc_start_time(pid, &o.start_time), 0);
		assert_int_equal(evm_service_adopt(svc, &o), 0);
		/* an OOM kill during the run (by the count): the next exit is one, if counted */
		fake_write(dir, "memory.events", "oom_kill 5\n");
		assert_int_equal(kill(pid, SIGKILL), 0);
		RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_EXITED ||
				evm_service_state(svc) == EVM_STATE_STOPPED, 10000);
		struct evm_service_info info;
		evm_service_info(svc, &info);
		if (how[i] == EVM_CGROUP_KEPT_NO_OOM)
			assert_false(info.last_exit.oom_killed); /* none counted for this run */
		else
			assert_true(info.last_exit.oom_killed); /* 5 > 4: kept, or read at adoption */
		evm_service_remove(svc);
		evm_loop_run_once(loop, 0);
		evm_loop_free(loop);
		fake_free(cg, dir);
	}
}

static void test_stats_skip_absent_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/evm-fakecg-XXXXXX";
	struct evm_cgroup *cg = fake_cg(dir);
	fake_write(dir, "cgroup.procs", "1\n");
	fake_write(dir, "cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n");
	struct evm_cgroup_stats st;
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_PROCS);
	assert_int_equal(st.cpu_usage_usec, 10);
	assert_int_equal(atomic_load(&cg->absent), EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PEAK |
							   EVM_CGROUP_STAT_OOM | EVM_CGROUP_STAT_PIDS);
	/* a controller enabled now: not seen until the absent files are tried again */
	fake_write(dir, "memory.current", "4096\n");
	fake_write(dir, "pids.current", "3\n");
	fake_write(dir, "cpu.stat", "usage_usec 20\nuser_usec 6\nsystem_usec 14\n");
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_PROCS);
	assert_int_equal(st.cpu_usage_usec, 20); /* present files are read every time */
	fake_age(cg);
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_PROCS |
				  EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PIDS);
	assert_int_equal(st.memory_current, 4096);
	assert_int_equal(st.pids_current, 3);
	assert_int_equal(atomic_load(&cg->absent), EVM_CGROUP_STAT_PEAK | EVM_CGROUP_STAT_OOM);
	fake_free(cg, dir);
}

/* evm_cgroup_stats_only: only the files asked for, and the absent ones still remembered */
static void test_stats_only(void **state)
{
	(void)state;
	char dir[] = "/tmp/evm-fakecg-XXXXXX";
	struct evm_cgroup *cg = fake_cg(dir);
	fake_write(dir, "cgroup.procs", "1\n2\n");
	fake_write(dir, "cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n");
	struct evm_cgroup_stats st;
	assert_int_equal(evm_cgroup_stats_only(cg, EVM_CGROUP_STAT_CPU, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU);
	assert_int_equal(st.procs, 0); /* not read */
	assert_int_equal(st.cpu_usage_usec, 10);
	assert_int_equal(atomic_load(&cg->absent), 0); /* nothing else tried: nothing learnt */
	assert_int_equal(evm_cgroup_stats_only(cg, EVM_CGROUP_STAT_PROCS, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_PROCS);
	assert_int_equal(st.procs, 2);
	assert_int_equal(st.cpu_usage_usec, 0);
	/* what the metrics scrape asks: the absent memory and pids files learnt */
	unsigned want = EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PIDS;
	assert_int_equal(evm_cgroup_stats_only(cg, want, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU);
	assert_int_equal(atomic_load(&cg->absent), EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PIDS);
	/* a full read adds what it finds absent and keeps what was known */
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_PROCS);
	assert_int_equal(atomic_load(&cg->absent), EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PEAK |
							   EVM_CGROUP_STAT_OOM | EVM_CGROUP_STAT_PIDS);
	/* a partial read while they are known keeps them all */
	fake_write(dir, "memory.current", "4096\n");
	assert_int_equal(evm_cgroup_stats_only(cg, EVM_CGROUP_STAT_MEMORY, &st), 0);
	assert_int_equal(st.have, 0); /* still known absent: not opened */
	assert_int_equal(atomic_load(&cg->absent), EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PEAK |
							   EVM_CGROUP_STAT_OOM | EVM_CGROUP_STAT_PIDS);
	fake_age(cg);
	assert_int_equal(evm_cgroup_stats_only(cg, EVM_CGROUP_STAT_MEMORY, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_MEMORY);
	assert_int_equal(st.memory_current, 4096);
	assert_int_equal(evm_cgroup_stats_only(cg, 0, &st), 0); /* nothing asked: nothing read */
	assert_int_equal(st.have, 0);
	assert_int_equal(evm_cgroup_stats_only(cg, 1u << 20, &st), -EINVAL);
	fake_free(cg, dir);
}

/*
 * track = tree: the main process exited 0 and its daemon runs on in the
 * cgroup, so the exit is held until the cgroup is empty. An OOM kill
 * meanwhile (the daemon's) is the held exit's reason too: it was decided
 * with the flag read at the main's exit. The memory controller is not
 * enabled here, so the service reads a fake memory.events during the hold.
 */
static void test_oom_kill_while_the_exit_is_held(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "oom.service", &cg), 0);
	struct evm_service_opts so = {
		.name = "oom",
		.spawn = {.argv = HARGV("daemonize", "pause")},
		.cgroup = cg,
		.kill_mode = EVM_KILL_TREE,
		.track = EVM_TRACK_TREE,
		.restart = EVM_RESTART_NEVER,
		.set = EVM_SVC_START_MS,
		.start_ms = 0,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, svc->main_wait == MAIN_WAIT_TREE, 10000);
	pid_t daemon;
	assert_int_equal(evm_cgroup_procs(cg, &daemon, 1), 1);
	char dir[] = "/tmp/evm-fakecg-XXXXXX";
	struct evm_cgroup *fake = fake_cg(dir), *real = svc->cg;
	fake_write(dir, "memory.events", "oom 0\noom_kill 0\n");
	svc->cg = fake;
	assert_int_equal(evm__cg_oom_kills(svc->cg, &svc->oom_base), 0); /* as at a spawn */
	svc->oom_known = true;
	fake_write(dir, "memory.events", "oom 1\noom_kill 1\n"); /* the kernel's OOM kill */
	assert_int_equal(kill(daemon, SIGKILL), 0);
	RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_EXITED, 10000);
	svc->cg = real;
	struct evm_service_info info;
	evm_service_info(svc, &info);
	assert_true(info.has_exit);
	assert_int_equal(info.last_exit.code, 0); /* the main's exit, held */
	assert_true(info.last_exit.oom_killed);
	evm_service_remove(svc);
	fake_free(fake, dir);
	evm_cgroup_free(cg);
}

/*
 * evm_service_adopt_tree: a forking daemon's tree left by another supervisor
 * (its first process exited 0, its child runs on in the cgroup) is the
 * service's again: RUNNING with no process, the main's exit held until the
 * cgroup is empty; refused for a service that could not watch it so, when
 * not STOPPED, and once the cgroup is empty.
 */
static void test_adopt_tree(void **state)
{
	NEED_CGROUP();
	struct evm_loop *loop = LOOP(state);
	struct evm_cgroup *cg;
	assert_int_equal(evm_cgroup_create(BASE(state), "tree.service", &cg), 0);
	/* the earlier supervisor's run: the first process daemonizes and exits 0 */
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .flags = EVM_SPAWN_CGROUP,
				   .cgroup_fd = evm_cgroup_fd(cg)};
	evm_proc_unref(t_spawn_opts(loop, HARGV("daemonize", "pause"), &o));
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 0);
	pid_t daemon;
	assert_int_equal(evm_cgroup_procs(cg, &daemon, 1), 1);

	struct evm_service_opts so = {
		.name = "tree",
		.spawn = {.argv = HARGV("pause")},
		.cgroup = cg,
		.kill_mode = EVM_KILL_TREE,
		.track = EVM_TRACK_TREE,
		.restart = EVM_RESTART_ON_FAILURE,
	};
	struct evm_service *svc, *main_only;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	so.name = "main";
	so.track = EVM_TRACK_MAIN;
	assert_int_equal(evm_service_new(loop, &so, &main_only), 0);
	assert_int_equal(evm_service_adopt_tree(main_only, &x.rec), -EINVAL);
	assert_int_equal(evm_service_adopt_tree(svc, NULL), -EINVAL);
	assert_int_equal(evm_service_adopt_tree(NULL, &x.rec), -EINVAL);
	evm_service_remove(main_only);
	assert_false(evm_service_runs_on_tree(svc));
	assert_int_equal(evm_service_adopt_tree(svc, &x.rec), 0);
	assert_int_equal(evm_service_state(svc), EVM_STATE_RUNNING);
	assert_true(evm_service_runs_on_tree(svc));
	assert_null(evm_service_proc(svc));
	assert_int_equal(evm_service_adopt_tree(svc, &x.rec), -EBUSY);
	struct evm_service_info info;
	evm_service_info(svc, &info);
	assert_int_equal(info.pid, 0);
	assert_true(info.has_exit);
	assert_int_equal(info.last_exit.pid, x.rec.pid);
	assert_true(kill(daemon, 0) == 0); /* taken over, not touched */
	/* its end: the main's exit (0) decided by the policy, on-failure: over */
	assert_int_equal(kill(daemon, SIGKILL), 0);
	RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_EXITED, 10000);
	assert_false(evm_service_runs_on_tree(svc));
	evm_service_info(svc, &info);
	assert_int_equal(info.last_exit.code, 0);
	assert_int_equal(info.last_exit.pid, x.rec.pid);
	evm_service_remove(svc);
	/* its main gone while not ready yet (STARTING): not what a takeover may take as RUNNING */
	struct evm_cgroup *cg2;
	assert_int_equal(evm_cgroup_create(BASE(state), "starting.service", &cg2), 0);
	so.name = "starting";
	so.track = EVM_TRACK_TREE;
	so.cgroup = cg2;
	so.spawn.argv = HARGV("daemonize", "pause");
	so.set = EVM_SVC_START_MS;
	so.start_ms = 30000;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	RUN_UNTIL(loop, svc->main_wait == MAIN_WAIT_TREE || evm_service_state(svc) != EVM_STATE_STARTING, 10000);
	assert_int_equal(evm_service_state(svc), EVM_STATE_STARTING);
	assert_false(evm_service_runs_on_tree(svc));
	assert_int_equal(evm_service_stop(svc), 0);
	RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_STOPPED, 10000);
	evm_service_remove(svc);
	evm_cgroup_free(cg2);
	so.cgroup = cg;
	so.spawn.argv = HARGV("pause");
	so.set = 0;
	so.start_ms = 0;
	/* nothing left in the cgroup: nothing to take over */
	so.name = "late";
	so.track = EVM_TRACK_TREE;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	assert_int_equal(evm_service_adopt_tree(svc, &x.rec), -ESRCH);
	assert_int_equal(evm_service_state(svc), EVM_STATE_STOPPED);
	evm_service_remove(svc);
	evm_cgroup_free(cg);
}

/*
 * A cgroup removed between two of the reads (cpu.stat read, the rest gone):
 * -ENOENT, and nothing remembered absent, so the figures of the cgroup made
 * again at the same path (the service's next run) are read at once.
 */
static void test_stats_removed_between_reads(void **state)
{
	(void)state;
	char dir[] = "/tmp/evm-fakecg-XXXXXX";
	struct evm_cgroup *cg = fake_cg(dir);
	fake_write(dir, "cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"); /* no cgroup.procs */
	struct evm_cgroup_stats st;
	assert_int_equal(evm_cgroup_stats(cg, &st), -ENOENT);
	assert_int_equal(atomic_load(&cg->absent), 0);
	fake_write(dir, "cgroup.procs", "1\n");
	fake_write(dir, "memory.current", "4096\n");
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_true(st.have & EVM_CGROUP_STAT_MEMORY);
	assert_int_equal(st.memory_current, 4096);
	fake_free(cg, dir);
}

/* a handle that holds no directory fd (most, past a few thousand): one file is read by its path */
static void test_stats_by_path(void **state)
{
	(void)state;
	char dir[] = "/tmp/evm-fakecg-XXXXXX";
	struct evm_cgroup *cg = fake_cg(dir);
	close(atomic_load(&cg->dfd));
	atomic_store(&cg->dfd, -1);
	fake_write(dir, "cgroup.procs", "1\n");
	fake_write(dir, "cpu.stat", "usage_usec 30\nuser_usec 10\nsystem_usec 20\n");
	struct evm_cgroup_stats st;
	assert_int_equal(evm_cgroup_stats_only(cg, EVM_CGROUP_STAT_CPU, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU);
	assert_int_equal(st.cpu_usage_usec, 30);
	assert_int_equal(st.cpu_system_usec, 20);
	/* several files: through the directory, the absent ones learnt */
	assert_int_equal(evm_cgroup_stats(cg, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_PROCS);
	assert_int_equal(st.procs, 1);
	/* now one file again (the rest known absent), by path; then the cgroup gone */
	unsigned want = EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PIDS;
	assert_int_equal(evm_cgroup_stats_only(cg, want, &st), 0);
	assert_int_equal(st.have, EVM_CGROUP_STAT_CPU);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/cpu.stat", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	unlink(path);
	assert_int_equal(evm_cgroup_stats_only(cg, want, &st), -ENOENT);
	assert_int_equal(evm_cgroup_stats_only(cg, EVM_CGROUP_STAT_CPU, &st), -ENOENT);
	fake_free(cg, dir);
}

int main(void)
{
	t_init();
	find_cgroup();
	if (!self_cg)
		print_message("cgroup tests skip: %s\n", skip_reason);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_discovery, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_pidfd_cgroup_id, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_create_idempotent, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_attach_procs_populated, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_signal_members, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_kill_tree, cg_setup_reaper, cg_teardown),
		cmocka_unit_test_setup_teardown(test_kill_tree_fallback, cg_setup_reaper, cg_teardown),
		cmocka_unit_test_setup_teardown(test_kill_fallback_forkbomb, cg_setup_reaper, cg_teardown),
		cmocka_unit_test_setup_teardown(test_remove_waits_until_empty, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_limits, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_stats, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_watch_populated, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_watch_told_it_saw_populated, cg_setup,
						cg_teardown),
		cmocka_unit_test_setup_teardown(test_watch_many, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_move_self_to_leaf, cg_setup, cg_teardown),
	};
	const struct CMUnitTest spawn_tests[] = {
		cmocka_unit_test_setup_teardown(test_spawn_into_cgroup, cg_setup_spawn, cg_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_into_cgroup_errors, cg_setup_spawn,
						cg_teardown),
		cmocka_unit_test_setup_teardown(test_service_into_cgroup, cg_setup_spawn, cg_teardown),
		cmocka_unit_test_setup_teardown(test_service_removed_keeps_its_cgroup, cg_setup_spawn,
						cg_teardown),
		cmocka_unit_test_setup_teardown(test_service_holds_no_cgroup_fd, cg_setup_spawn,
						cg_teardown),
		cmocka_unit_test_setup_teardown(test_create_later, cg_setup_spawn, cg_teardown),
		cmocka_unit_test_setup_teardown(test_detached_exit_stops_what_its_cgroup_holds,
						cg_setup_spawn, cg_teardown),
		cmocka_unit_test_setup_teardown(test_oom_kill_while_the_exit_is_held, cg_setup_spawn,
						cg_teardown),
		cmocka_unit_test_setup_teardown(test_adopt_tree, cg_setup_spawn,
						cg_teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_kept_checked, cg_setup_spawn, cg_teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_kept_ino, cg_setup_spawn, cg_teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_kept_failed_creation, cg_setup_spawn,
						cg_teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_kept_across_exec, cg_setup_spawn,
						cg_teardown),
	};
	const struct CMUnitTest fake_tests[] = {
		cmocka_unit_test(test_oom_kills_fake),
		cmocka_unit_test(test_kept_oom_base_at_adoption),
		cmocka_unit_test(test_stats_skip_absent_files),
		cmocka_unit_test(test_stats_removed_between_reads),
		cmocka_unit_test(test_stats_only),
		cmocka_unit_test(test_stats_by_path),
	};
	int failed = cmocka_run_group_tests_name("cgroup", tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("cgroup files (a fake directory)", fake_tests, NULL, NULL);
	static const char *const paths[] = {"direct", "helper", "clone"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		char name[64];
		spawn_path = paths[i];
		snprintf(name, sizeof(name), "cgroup spawn [%s]", spawn_path);
		failed += _cmocka_run_group_tests(name, spawn_tests,
						  sizeof(spawn_tests) / sizeof(spawn_tests[0]), NULL, NULL);
	}
	if (run_cg) {
		evm_cgroup_kill(run_cg);
		if (evm_cgroup_remove(run_cg, 10000) < 0) {
			fprintf(stderr, "cannot remove %s\n", evm_cgroup_path(run_cg));
			failed++;
		}
		evm_cgroup_free(run_cg);
		close(run_lock);
	}
	evm_cgroup_free(self_cg);
	return failed;
}
