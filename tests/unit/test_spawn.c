/*
 * test_spawn.c - every spawn option, and every way a spawn can fail, in each
 * spawn path: direct clone and the spawn helper, each with pidfds and with
 * the SIGCHLD fallback (EVM_SPAWN_MODE, EVM_NO_PIDFD; the whole group runs
 * once per mode).
 *
 * Options are checked from inside the child: evm-helper prints what it sees
 * (argv, env, cwd, umask, ids, rlimits, signal masks, open fds) or pauses
 * while the test reads /proc/PID. Checks that change process-wide state
 * (dispositions, credentials, cwd) run in a forked sub-test.
 */
#include "evmtest.h"

#include <grp.h>
#include <pthread.h>
#include <sys/mman.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static const struct t_mode *mode;

static bool helper_mode(void)
{
	return !strcmp(mode->spawn, "helper");
}

static int setup(void **state)
{
	t_set_mode(mode);
	int r = t_setup(state);
	t_clear_mode();
	return r;
}

static int setup_local_cpu(void **state)
{
	t_set_mode(mode);
	int r = t_setup_flags(state, EVM_LOOP_SPAWN_LOCAL_CPU);
	t_clear_mode();
	return r;
}

/* ------------------------------------------------------------- argv, env */

static void test_argv(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	static char out[200000];
	static char big[100000];
	memset(big, 'a', sizeof(big) - 1);
	t_output(loop, HARGV("argv", "", " two  words ", "tab\there", "ünï€ode", big), NULL, out,
		 sizeof(out), NULL);
	char want[1024];
	snprintf(want, sizeof(want), "[0] \n[12]  two  words \n[8] tab\there\n[11] ünï€ode\n[%zu] ",
		 sizeof(big) - 1);
	assert_memory_equal(out, want, strlen(want));
	assert_int_equal(strlen(out), strlen(want) + sizeof(big) - 1 + 1);

	/* many arguments */
	enum { N = 500 };
	char *argv[N + 3];
	static char nums[N][12];
	argv[0] = t_helper;
	argv[1] = "argv";
	for (int i = 0; i < N; i++) {
		snprintf(nums[i], sizeof(nums[i]), "%d", i);
		argv[i + 2] = nums[i];
	}
	argv[N + 2] = NULL;
	size_t len = t_output(loop, argv, NULL, out, sizeof(out), NULL);
	int lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += out[i] == '\n';
	assert_int_equal(lines, N);
	assert_non_null(strstr(out, "[3] 499\n"));
}

static void test_file_and_argv0(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char *argv[] = {"renamed-zero", "pause", NULL};
	struct evm_spawn_opts o = {.file = t_helper};
	struct evm_proc *p = t_spawn_opts(loop, argv, &o);
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)evm_proc_pid(p));
	/*
	 * evm_spawn returns once the child has passed the point of no return of
	 * its exec, but the new argv appears in /proc a moment later.
	 */
	ssize_t k = 0;
	uint64_t dl = t_now_ms() + T_MS(10000);
	while (k <= 0) {
		assert_true(t_now_ms() < dl);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		k = read(fd, buf, sizeof(buf));
		close(fd);
	}
	assert_int_equal(k, sizeof("renamed-zero") + sizeof("pause"));
	assert_memory_equal(buf, "renamed-zero\0pause\0", (size_t)k);
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	evm_proc_unref(p);
}

static void test_env(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[4096];
	char *envp[] = {"EVT_A=1", "EVT_B=two words", NULL};
	struct evm_spawn_opts o = {.envp = envp};
	t_output(loop, HARGV("env", "EVT_A", "env", "EVT_B", "env", "HOME", "env", "PATH"), &o, out,
		 sizeof(out), NULL);
	assert_string_equal(out, "EVT_A=1\nEVT_B=two words\nHOME unset\nPATH unset\n");

	/* inherited: environ at spawn time, not at loop creation */
	setenv("EVT_INHERIT", "first", 1);
	t_output(loop, HARGV("env", "EVT_INHERIT"), NULL, out, sizeof(out), NULL);
	assert_string_equal(out, "EVT_INHERIT=first\n");
	setenv("EVT_INHERIT", "second", 1);
	t_output(loop, HARGV("env", "EVT_INHERIT"), NULL, out, sizeof(out), NULL);
	unsetenv("EVT_INHERIT");
	assert_string_equal(out, "EVT_INHERIT=second\n");
	t_output(loop, HARGV("env", "EVT_INHERIT"), NULL, out, sizeof(out), NULL);
	assert_string_equal(out, "EVT_INHERIT unset\n");
}

/*
 * env_extra over envp: an extra replaces every entry of its key (one without
 * '=' is all key), the last extra of a key wins; envp's others keep their
 * order (duplicates too), then the extras that win, in theirs.
 */
static void test_env_extra_merge(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[4096];
	char *envp[] = {"A=1", "B=2", "A=3", "NOEQ", "AB=4", "C=5", "ABC=6", "=odd", NULL};
	char *extra[] = {"C=x", "D=1", "B=y", "D=2", "NOEQ=set", "E=", "AB==z", NULL};
	struct evm_spawn_opts o = {.envp = envp, .env_extra = extra};
	t_output(loop, HARGV("environ"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "A=1\nA=3\nABC=6\n=odd\nC=x\nB=y\nD=2\nNOEQ=set\nE=\nAB==z\n");

	/* no extras: envp as it is */
	char *none[] = {NULL};
	o.env_extra = none;
	t_output(loop, HARGV("environ"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "A=1\nB=2\nA=3\nNOEQ\nAB=4\nC=5\nABC=6\n=odd\n");
}

/*
 * The same with tens of thousands of each (an env_file's worth): keys
 * K00000... in envp; extras for the upper half of them and as many new ones,
 * given in descending order, then a second value for every other of the
 * upper half (the one that wins, in its later place).
 */
static void test_env_extra_merge_large(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	enum { N = 20000, NE = N + N / 4 };
	static char store[(N + NE) * 16], out[(N + NE) * 16], want[(N + NE) * 16];
	static char *envp[N + 1], *extra[NE + 1];
	char *at = store, *w = want;
	for (int i = 0; i < N; i++)
		at += sprintf(envp[i] = at, "K%05d=base", i) + 1;
	int ne = 0;
	for (int i = N + N / 2 - 1; i >= N / 2; i--)
		at += sprintf(extra[ne++] = at, "K%05d=e1", i) + 1;
	for (int i = N / 2; i < N; i += 2)
		at += sprintf(extra[ne++] = at, "K%05d=e2", i) + 1;
	assert_int_equal(ne, NE);
	for (int i = 0; i < N / 2; i++)
		w += sprintf(w, "K%05d=base\n", i);
	for (int i = N + N / 2 - 1; i >= N / 2; i--)
		if (i >= N || i % 2)
			w += sprintf(w, "K%05d=e1\n", i);
	for (int i = N / 2; i < N; i += 2)
		w += sprintf(w, "K%05d=e2\n", i);
	struct evm_spawn_opts o = {.envp = envp, .env_extra = extra};
	size_t n = t_output(loop, HARGV("environ"), &o, out, sizeof(out), NULL);
	assert_int_equal(n, (size_t)(w - want));
	assert_true(!memcmp(out, want, n)); /* not assert_string_equal: it would print 400 kB */
}

/* PATH search: in the child's PATH (envp's, else ours), "" = current dir, NO_PATH. */
static void test_path_search(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_exit rec;
	char out[4096];
	char dir[PATH_MAX + 32], *slash;
	snprintf(dir, sizeof(dir), "%s", t_helper);
	slash = strrchr(dir, '/');
	*slash = 0;
	char pathvar[PATH_MAX + 64];
	snprintf(pathvar, sizeof(pathvar), "PATH=/nonexistent:%s", dir);
	char *envp[] = {pathvar, NULL};
	char *argv[] = {"evm-helper", "print", "found", NULL};
	struct evm_spawn_opts o = {.envp = envp};
	t_output(loop, argv, &o, out, sizeof(out), &rec);
	assert_string_equal(out, "found\n");

	/* an empty element is the current directory (the child's, after cwd) */
	char *envp_dot[] = {"PATH=/nonexistent::/nonexistent2", NULL};
	struct evm_spawn_opts od = {.envp = envp_dot, .cwd = dir};
	t_output(loop, argv, &od, out, sizeof(out), &rec);
	assert_string_equal(out, "found\n");

	/* not in PATH */
	char *envp_none[] = {"PATH=/nonexistent", NULL};
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts on = {.envp = envp_none, .argv = argv, .error = &err};
	assert_int_equal(evm_spawn(loop, &on, NULL), -ENOENT);
	assert_int_equal(err.stage, EVM_STAGE_EXEC);
	assert_int_equal(err.error, ENOENT);

	/* NO_PATH: a bare name is relative to the (new) working directory */
	struct evm_spawn_opts np = {.argv = argv, .flags = EVM_SPAWN_NO_PATH, .error = &err};
	assert_int_equal(evm_spawn(loop, &np, NULL), -ENOENT);
	struct evm_spawn_opts npc = {.flags = EVM_SPAWN_NO_PATH, .cwd = dir};
	t_output(loop, argv, &npc, out, sizeof(out), &rec);
	assert_string_equal(out, "found\n");

	/* PATH elements longer than the child's small buffer, and one longer than PATH_MAX (skipped) */
	char longdir[PATH_MAX], link[PATH_MAX + 32];
	snprintf(longdir, sizeof(longdir), "/tmp/evt-path-XXXXXX");
	assert_non_null(mkdtemp(longdir));
	char *top = strdup(longdir);
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(longdir);
		snprintf(longdir + n, sizeof(longdir) - n, "/%0120d", i);
		assert_int_equal(mkdir(longdir, 0700), 0);
	}
	snprintf(link, sizeof(link), "%s/evm-helper", longdir);
	assert_int_equal(symlink(t_helper, link), 0);
	char *huge = malloc(PATH_MAX + 1024);
	memset(huge, 'x', PATH_MAX + 1000);
	int hn = snprintf(huge, PATH_MAX + 1024, "PATH=/");
	huge[hn] = 'x';
	snprintf(huge + PATH_MAX + 900, 100, ":%s", "/nonexistent");
	char *lp = malloc(strlen(huge) + strlen(longdir) + 2);
	sprintf(lp, "%s:%s", huge, longdir);
	char *envp_long[] = {lp, NULL};
	struct evm_spawn_opts ol = {.envp = envp_long};
	t_output(loop, argv, &ol, out, sizeof(out), &rec);
	unlink(link);
	for (int i = 0; i < 3; i++) {
		rmdir(longdir);
		*strrchr(longdir, '/') = 0;
	}
	rmdir(top);
	free(top);
	free(huge);
	free(lp);
	assert_true(strlen(link) > 300);
	assert_string_equal(out, "found\n");

	/* our own PATH when envp has none */
	char *argv_true[] = {"true", NULL};
	char *envp_nopath[] = {"X=1", NULL};
	struct evm_spawn_opts ot = {.envp = envp_nopath};
	t_output(loop, argv_true, &ot, out, sizeof(out), &rec);
	assert_int_equal(rec.code, 0);
}

/* ------------------------------------------------------------ failures */

static char tmpdir[PATH_MAX];

static void make_file(const char *name, const char *content, mode_t m)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, m);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	chmod(path, m);
}

static int spawn_events;

static void on_spawn_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	(void)data;
	if (ev->type == EVM_EV_SPAWN)
		spawn_events++;
}

static void expect_fail(struct evm_loop *loop, struct evm_spawn_opts *o, int err,
			enum evm_spawn_stage stage, const char *what)
{
	struct evm_spawn_error e = {.stage = 99, .error = 99};
	struct evm_proc *p = NULL;
	struct t_exit x = {0};
	o->error = &e;
	o->on_exit = t_on_exit;
	o->data = &x;
	if (!o->pdeath_signal)
		o->pdeath_signal = SIGKILL;
	int before = spawn_events;
	int r = evm_spawn(loop, o, &p);
	if (r != -err || (int)e.stage != (int)stage || e.error != err)
		fail_msg("%s: got %d (%s) stage %s error %d, want -%d stage %s", what, r,
			 strerror(-r), evm_spawn_stage_name(e.stage), e.error, err,
			 evm_spawn_stage_name(stage));
	assert_null(p);
	assert_int_equal(spawn_events, before);
	/* a failed spawn is over when evm_spawn returns: no child, no exit later */
	assert_int_equal(t_count_children() - (helper_mode() && loop->spawner ? 1 : 0), 0);
	evm_loop_run_once(loop, 0);
	assert_int_equal(x.n, 0);
}

static void test_exec_failures(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_subscribe(loop, EVM_EV_ALL, on_spawn_event, NULL, NULL), 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/evmtest-spawn-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	make_file("noexec", "#!/bin/sh\nexit 0\n", 0644);
	make_file("garbage", "this is not a program\n", 0755);
	make_file("badinterp", "#!/nonexistent/interpreter\n", 0755);
	char path[PATH_MAX + 64], pathvar[PATH_MAX + 64];

#define ARGV1(s) ((char *[]){(s), NULL})
	struct evm_spawn_opts o;

	o = (struct evm_spawn_opts){.argv = ARGV1("/nonexistent/program")};
	expect_fail(loop, &o, ENOENT, EVM_STAGE_EXEC, "missing program");

	snprintf(path, sizeof(path), "%s/noexec", tmpdir);
	o = (struct evm_spawn_opts){.argv = ARGV1(path)};
	expect_fail(loop, &o, EACCES, EVM_STAGE_EXEC, "not executable");

	snprintf(path, sizeof(path), "%s/garbage", tmpdir);
	o = (struct evm_spawn_opts){.argv = ARGV1(path)};
	expect_fail(loop, &o, ENOEXEC, EVM_STAGE_EXEC, "not a program (no sh fallback)");

	snprintf(path, sizeof(path), "%s/badinterp", tmpdir);
	o = (struct evm_spawn_opts){.argv = ARGV1(path)};
	expect_fail(loop, &o, ENOENT, EVM_STAGE_EXEC, "missing interpreter");

	o = (struct evm_spawn_opts){.argv = ARGV1(tmpdir)};
	expect_fail(loop, &o, EACCES, EVM_STAGE_EXEC, "a directory");

	o = (struct evm_spawn_opts){.argv = ARGV1("/etc/passwd/x")};
	expect_fail(loop, &o, ENOTDIR, EVM_STAGE_EXEC, "through a file");

	/* PATH search: only a non-executable match is EACCES, not ENOENT */
	snprintf(pathvar, sizeof(pathvar), "PATH=/nonexistent:%s", tmpdir);
	o = (struct evm_spawn_opts){.argv = ARGV1("noexec"), .envp = (char *[]){pathvar, NULL}};
	expect_fail(loop, &o, EACCES, EVM_STAGE_EXEC, "PATH: not executable");
	o = (struct evm_spawn_opts){.argv = ARGV1("garbage"), .envp = (char *[]){pathvar, NULL}};
	expect_fail(loop, &o, ENOEXEC, EVM_STAGE_EXEC, "PATH: not a program");

	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .cwd = "/nonexistent"};
	expect_fail(loop, &o, ENOENT, EVM_STAGE_CWD, "missing cwd");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .cwd = "/etc/passwd"};
	expect_fail(loop, &o, ENOTDIR, EVM_STAGE_CWD, "cwd not a directory");

	struct evm_rlimit bad_rl = {RLIMIT_NOFILE, {200, 100}};
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .rlimits = &bad_rl, .nrlimits = 1};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_RLIMIT, "soft limit above hard");

	/* a group in another session (init's) cannot be joined */
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .flags = EVM_SPAWN_SETPGID,
				    .pgid = 999999}; /* above pid_max: no such group */
	expect_fail(loop, &o, EPERM, EVM_STAGE_SESSION, "foreign process group");

	int closed = 10000; /* high: no fd the library opens meanwhile can take it */
	assert_int_equal(fcntl(closed, F_GETFD), -1);
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0")};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, closed};
	/* found before any clone: a bad argument of the caller's */
	expect_fail(loop, &o, EBADF, EVM_STAGE_SETUP, "closed stdio fd");

	/* refused before anything starts */
	o = (struct evm_spawn_opts){.argv = NULL};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "no argv");
	o = (struct evm_spawn_opts){.argv = (char *[]){NULL}};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "empty argv");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .flags = 1u << 30};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "unknown flag");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .pdeath_signal = 1000};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "bad pdeath signal");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .file = ""};
	expect_fail(loop, &o, ENOENT, EVM_STAGE_SETUP, "empty file");
	/* (uid_t)-1 would mean "no change" to setresuid: refused, as setuid(2) does */
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .flags = EVM_SPAWN_SETUID,
				    .uid = (uid_t)-1};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "uid -1");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .flags = EVM_SPAWN_SETGID,
				    .gid = (gid_t)-1};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "gid -1");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"),
				    .env_extra = (char *[]){"A=1", "NOEQUALS", NULL}};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "env_extra entry without '='");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"),
				    .env_extra = (char *[]){"=x", NULL}};
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "env_extra entry without a KEY");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0")};
	o.stdio[2].mode = (enum evm_stdio_mode)77;
	expect_fail(loop, &o, EINVAL, EVM_STAGE_SETUP, "bad stdio mode");
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0")};
	o.stdio[1].mode = EVM_STDIO_PIPE; /* without out */
	struct evm_spawn_error e;
	o.error = &e;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0")};
	o.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, -1};
	o.error = &e;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EBADF);
	assert_int_equal(evm_spawn(NULL, &o, NULL), -EINVAL);

	assert_string_equal(evm_spawn_stage_name(EVM_STAGE_EXEC), "exec");
	assert_string_equal(evm_spawn_stage_name(EVM_STAGE_CWD), "chdir");
	assert_string_equal(evm_spawn_stage_name((enum evm_spawn_stage)1000), "unknown");

	for (const char *n = "noexec\0garbage\0badinterp\0"; *n; n += strlen(n) + 1) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, n);
		unlink(path);
	}
	rmdir(tmpdir);
}

/* ------------------------------------------------------------- cwd, umask */

static void test_cwd(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[PATH_MAX + 8];
	struct evm_spawn_opts o = {.cwd = "/tmp"};
	t_output(loop, HARGV("cwd"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "/tmp\n");
}

struct cwd_arg {
	const struct t_mode *m;
	char out[2][PATH_MAX + 8];
	unsigned umasks[2];
};

static void cwd_umask_after_change(void *arg)
{
	struct cwd_arg *a = arg;
	struct evm_loop *loop;
	t_set_mode(a->m);
	umask(022);
	CHECK(chdir("/") == 0);
	CHECK(evm_loop_new(&loop, NULL) == 0);
	for (int round = 0; round < 2; round++) {
		/* round 1 changes both after the loop (and its helper) started */
		if (round == 1) {
			CHECK(chdir("/tmp") == 0);
			umask(077);
		}
		int pp[2];
		CHECK(pipe2(pp, O_CLOEXEC) == 0);
		char *argv[] = {t_helper, "cwd", "umask", NULL};
		struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
		o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
		struct evm_proc *p;
		CHECK(evm_spawn(loop, &o, &p) == 0);
		close(pp[1]);
		char buf[PATH_MAX + 32] = "";
		size_t len = 0;
		ssize_t k;
		while ((k = read(pp[0], buf + len, sizeof(buf) - 1 - len)) > 0)
			len += (size_t)k;
		close(pp[0]);
		buf[len] = 0;
		CHECK(sscanf(buf, "%s %o", a->out[round], &a->umasks[round]) == 2);
		CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
		evm_proc_unref(p);
	}
	evm_loop_free(loop);
}

/*
 * A child inherits the working directory and umask the caller has at spawn
 * time. The spawn helper is a copy of the process made when it started, so
 * it would hand its children a stale cwd and umask.
 */
static void test_cwd_umask_inherited_at_spawn_time(void **state)
{
	(void)state;
	static struct cwd_arg a;
	memset(&a, 0, sizeof(a));
	a.m = mode;
	/* results travel back through a shared mapping */
	struct cwd_arg *shared = mmap(NULL, sizeof(a), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shared != MAP_FAILED);
	*shared = a;
	t_forked(cwd_umask_after_change, shared);
	a = *shared;
	munmap(shared, sizeof(a));
	assert_string_equal(a.out[0], "/");
	assert_int_equal(a.umasks[0], 022);
	/* also through the helper, which started before the change */
	assert_string_equal(a.out[1], "/tmp");
	assert_int_equal(a.umasks[1], 077);
}

static size_t drain(int fd, char *buf, size_t cap);

/*
 * Through the helper, with no fd left to send it our cwd: the spawn fails
 * (EMFILE, in the parent's setup) or the child starts in our cwd, never in
 * the helper's (it started in "/", we are in /tmp by then).
 */
static void cwd_without_fds(void *arg)
{
	const struct t_mode *m = arg;
	t_set_mode(m);
	CHECK(chdir("/") == 0);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	char *true_argv[] = {t_helper, "exit", "0", NULL};
	struct evm_spawn_opts to = {.argv = true_argv, .pdeath_signal = SIGKILL};
	struct evm_proc *p;
	CHECK(evm_spawn(loop, &to, &p) == 0); /* the helper starts, in "/" */
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
	CHECK(chdir("/tmp") == 0);
	int pp[2];
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	/* every fd taken, and no higher limit to raise to */
	int top = 0;
	for (int fd = 0; fd < 4096; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			top = fd + 1;
	struct rlimit rl = {(rlim_t)top + 8, (rlim_t)top + 8};
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	while (open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0)
		;
	CHECK(errno == EMFILE);
	char *argv[] = {t_helper, "cwd", NULL};
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL, .error = &err};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	int r = evm_spawn(loop, &o, &p);
	close(pp[1]);
	if (r < 0) {
		if (r != -EMFILE || err.stage != EVM_STAGE_SETUP)
			fprintf(stderr, "spawn: %s, stage %d\n", strerror(-r), (int)err.stage);
		CHECK(r == -EMFILE && err.stage == EVM_STAGE_SETUP);
	} else {
		char buf[PATH_MAX + 8];
		drain(pp[0], buf, sizeof(buf));
		if (strcmp(buf, "/tmp\n"))
			fprintf(stderr, "the child's cwd: %s", buf);
		CHECK(!strcmp(buf, "/tmp\n"));
		CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
		evm_proc_unref(p);
	}
	close(pp[0]);
	evm_loop_free(loop);
}

static void test_cwd_without_fds(void **state)
{
	(void)state;
	if (!helper_mode())
		skip(); /* a direct child inherits our cwd: nothing to send */
	t_forked(cwd_without_fds, (void *)mode);
}

static void test_umask_option(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[64];
	struct evm_spawn_opts o = {.flags = EVM_SPAWN_UMASK, .umask = 027};
	t_output(loop, HARGV("umask"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "0027\n");
	o.umask = 0; /* 0 is a value: the flag says it is set */
	t_output(loop, HARGV("umask"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "0000\n");
}

/* ------------------------------------------------------------------ stdio */

static void test_stdio_modes(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	struct evm_spawn_opts o = {0};
	o.stdio[0].mode = EVM_STDIO_NULL;
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	o.stdio[2].mode = EVM_STDIO_INHERIT;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("pause"), &o);
	pid_t pid = evm_proc_pid(p);
	char a[256], b[256];
	assert_string_equal(t_fd_target(pid, 0, a, sizeof(a)), "/dev/null");
	assert_string_equal(t_fd_target(pid, 1, a, sizeof(a)), t_fd_target(getpid(), pp[1], b, sizeof(b)));
	assert_string_equal(t_fd_target(pid, 2, a, sizeof(a)), t_fd_target(getpid(), 2, b, sizeof(b)));
	assert_int_equal(evm_proc_stdio_fd(p, 0), -EBADF); /* not a pipe */
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	close(pp[0]);
	close(pp[1]);
	evm_proc_unref(p);
}

static void test_stdio_pipes(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_opts o = {0};
	struct t_exit x = {0};
	o.stdio[0].mode = EVM_STDIO_PIPE;
	o.stdio[1].mode = EVM_STDIO_PIPE;
	o.stdio[2].mode = EVM_STDIO_PIPE; /* never taken: closed with the proc */
	o.on_exit = t_on_exit;
	o.data = &x;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("cat", "eprint", "done"), &o);
	int in = evm_proc_stdio_fd(p, 0), out = evm_proc_stdio_fd(p, 1);
	assert_true(in >= 0 && out >= 0);
	assert_int_equal(evm_proc_stdio_fd(p, 0), -EBADF); /* ownership passed */
	assert_int_equal(evm_proc_stdio_fd(p, 3), -EBADF);
	assert_int_equal(evm_proc_stdio_fd(p, -1), -EBADF);
	assert_int_equal(evm_proc_stdio_fd(NULL, 1), -EBADF);
	for (int fd = in; fd >= 0; fd = fd == in ? out : -1) {
		assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	}
	/* the child's ends are blocking */
	char path[64], info[512];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/0", (int)evm_proc_pid(p));
	int fi = open(path, O_RDONLY | O_CLOEXEC);
	if (fi >= 0) {
		ssize_t k = read(fi, info, sizeof(info) - 1);
		close(fi);
		unsigned flags = 0;
		info[k > 0 ? k : 0] = 0;
		char *f = strstr(info, "flags:");
		assert_non_null(f);
		sscanf(f, "flags: %o", &flags);
		assert_false(flags & O_NONBLOCK);
	}
	assert_int_equal(write(in, "hello\n", 6), 6);
	close(in);
	char buf[64];
	t_read_all(out, buf, sizeof(buf), 10000);
	close(out);
	assert_string_equal(buf, "hello\n");
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 0);
	evm_proc_unref(p);
}

/* Our O_NONBLOCK on a given fd is not what the child gets. */
static void test_stdio_nonblock_cleared(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC | O_NONBLOCK), 0);
	struct evm_spawn_opts o = {0};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("pause"), &o);
	char path[64], info[512];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/1", (int)evm_proc_pid(p));
	int fi = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fi >= 0);
	ssize_t k = read(fi, info, sizeof(info) - 1);
	close(fi);
	info[k > 0 ? k : 0] = 0;
	unsigned flags = 0;
	assert_int_equal(sscanf(strstr(info, "flags:"), "flags: %o", &flags), 1);
	assert_false(flags & O_NONBLOCK);
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	evm_proc_unref(p);
	close(pp[0]);
	close(pp[1]);
}

struct swap_arg {
	const struct t_mode *m;
};

static size_t drain(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t k;
	while ((k = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)k;
	buf[len] = 0;
	return len;
}

/* In a fork: our own 0/1/2 are replaced, so stdio can be swapped and rotated. */
static void stdio_swap(void *arg)
{
	struct swap_arg *a = arg;
	int p0[2], p1[2], p2[2];
	int err_keep = dup(2); /* where CHECK messages go at the end */
	CHECK(err_keep >= 0);
	CHECK(pipe(p0) == 0 && pipe(p1) == 0 && pipe(p2) == 0);
	/* our stdin reads p0, stdout writes p1, stderr writes p2 */
	CHECK(dup2(p0[0], 0) == 0 && dup2(p1[1], 1) == 1 && dup2(p2[1], 2) == 2);
	close(p0[0]);
	close(p1[1]);
	close(p2[1]);
	t_set_mode(a->m);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);

	/* child stdout = our 2, stderr = our 1: each dup2 must not clobber the other */
	char *argv[] = {t_helper, "print", "to-out", "eprint", "to-err", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, 2};
	o.stdio[2] = (struct evm_stdio){EVM_STDIO_FD, 1};
	struct evm_proc *p;
	CHECK(evm_spawn(loop, &o, &p) == 0);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);

	/* all three given, each from another slot: stdin <- our 1, stdout <- 2, stderr <- 1 */
	char *argv2[] = {t_helper, "print", "rot-out", "eprint", "rot-err", NULL};
	struct evm_spawn_opts r = {.argv = argv2, .pdeath_signal = SIGKILL};
	r.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, 1};
	r.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, 2};
	r.stdio[2] = (struct evm_stdio){EVM_STDIO_FD, 1};
	CHECK(evm_spawn(loop, &r, &p) == 0);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	CHECK(evm_proc_exit_record(p)->code == 0);
	evm_proc_unref(p);
	evm_loop_free(loop);

	/* read back what went where; restore stderr so CHECK can speak */
	close(1);
	close(2);
	char out[256], err[256];
	drain(p1[0], out, sizeof(out));
	drain(p2[0], err, sizeof(err));
	dup2(err_keep, 2);
	CHECK(!strcmp(out, "to-err\nrot-err\n"));
	CHECK(!strcmp(err, "to-out\nrot-out\n"));
}

static void test_stdio_swap(void **state)
{
	(void)state;
	struct swap_arg a = {mode};
	t_forked(stdio_swap, &a);
}

/* Our stdout, as a child inherits it, with FD_CLOEXEC set on our side. */
static void inherit_cloexec_stdio(void *arg)
{
	struct swap_arg *a = arg;
	int pp[2];
	CHECK(pipe(pp) == 0);
	int err_keep = dup(2);
	CHECK(dup3(pp[1], 1, O_CLOEXEC) == 1); /* e.g. a log file opened onto fd 1 */
	close(pp[1]);
	t_set_mode(a->m);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	char *argv[] = {t_helper, "print", "inherited", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
	struct evm_proc *p;
	CHECK(evm_spawn(loop, &o, &p) == 0);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
	evm_loop_free(loop);
	close(1);
	char buf[64];
	drain(pp[0], buf, sizeof(buf));
	dup2(err_keep, 2);
	if (strcmp(buf, "inherited\n"))
		fprintf(stderr, "child's stdout got '%s'\n", buf);
	CHECK(!strcmp(buf, "inherited\n"));
}

/* EVM_STDIO_INHERIT: the child gets our fd 1 even though we marked it close-on-exec. */
static void test_stdio_inherit_cloexec(void **state)
{
	(void)state;
	struct swap_arg a = {mode};
	t_forked(inherit_cloexec_stdio, &a);
}

/*
 * Our stdin closed after the loop started: the descriptors the loop opens at
 * its first spawn (its /proc/self/status, /dev/null, the spawn helper's
 * socket, the cwd sent to it) and the pidfd of a child still running stay
 * above 2, so a child that inherits stdin finds it closed, not one of ours,
 * in every spawn mode.
 */
static void closed_stdin_stays_closed(void *arg)
{
	struct swap_arg *a = arg;
	t_set_mode(a->m);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	int pipes[2][2];
	for (int i = 0; i < 2; i++)
		CHECK(pipe2(pipes[i], O_CLOEXEC) == 0);
	close(0); /* the lowest free fd from now on */
	char *pause_argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts po = {.argv = pause_argv, .pdeath_signal = SIGKILL};
	po.stdio[0] = (struct evm_stdio){EVM_STDIO_NULL, -1};
	po.stdio[1] = (struct evm_stdio){EVM_STDIO_PIPE, -1}; /* our read end: not on fd 0 either */
	struct evm_proc *first; /* running through both spawns: its pidfd and pipe stay open */
	CHECK(evm_spawn(loop, &po, &first) == 0);
	for (int i = 0; i < 2; i++) {
		int *pp = pipes[i];
		char *argv[] = {t_helper, "fds", NULL};
		struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
		o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
		struct evm_proc *p;
		CHECK(evm_spawn(loop, &o, &p) == 0);
		close(pp[1]);
		char buf[512];
		drain(pp[0], buf, sizeof(buf));
		close(pp[0]);
		CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
		evm_proc_unref(p);
		if (strstr(buf, "fd 0\n") || !strstr(buf, "fd 1\n")) {
			fprintf(stderr, "spawn %d: the child's fds:\n%s", i, buf);
			CHECK(!"stdin closed, stdout ours");
		}
	}
	CHECK(evm_proc_signal(first, SIGKILL) == 0);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(first), 10000);
	evm_proc_unref(first);
	evm_loop_free(loop);
}

static void test_closed_stdin_stays_closed(void **state)
{
	(void)state;
	struct swap_arg a = {mode};
	t_forked(closed_stdin_stays_closed, &a);
}

/* No fd of ours but 0/1/2 reaches a child, CLOEXEC or not. */
static void test_no_fd_leak_into_child(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int leak[4];
	int pp[2];
	leak[0] = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
	assert_int_equal(pipe(pp), 0);
	leak[1] = pp[0];
	leak[2] = pp[1];
	leak[3] = fcntl(leak[0], F_DUPFD, 700);
	for (int i = 0; i < 4; i++)
		assert_true(leak[i] >= 0 && !(fcntl(leak[i], F_GETFD) & FD_CLOEXEC));
	char out[4096];
	struct evm_spawn_opts o = {0};
	o.stdio[0].mode = EVM_STDIO_NULL;
	t_output(loop, HARGV("fds"), &o, out, sizeof(out), NULL);
	for (int i = 0; i < 4; i++)
		close(leak[i]);
	assert_string_equal(out, "fd 0\nfd 1\nfd 2\n");
}

/* FDSize of /proc/PID/status: how many fds the process's table has room for */
static long fd_table_size(pid_t pid)
{
	char v[512];
	return t_proc_status(pid, "FDSize", v, sizeof(v)) ? strtol(v, NULL, 10) : -1;
}

/*
 * The child's fd table is not a copy of ours: a clone copies every fd (one
 * pidfd per child of the loop) and the exec then closes each copy, two
 * passes over all of them per spawn. Shared at the clone (CLONE_FILES), the
 * child copies only the fds it uses: our close-on-exec fd 900 never enters
 * its table, which stays at the kernel's smallest size (64 here; a copy is
 * sized to hold fd 900). The clone() path (valgrind, no clone3) still copies.
 */
static void test_child_fd_table_not_copied(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int high = fcntl(2, F_DUPFD_CLOEXEC, 900);
	assert_true(high >= 900);
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
	for (int i = 0; i < 3; i++)
		o.stdio[i] = (struct evm_stdio){EVM_STDIO_NULL, -1};
	struct evm_proc *p;
	assert_int_equal(evm_spawn(loop, &o, &p), 0);
	long size = fd_table_size(evm_proc_pid(p)); /* exec'd: evm_spawn returns after it */
	close(high);
	assert_int_equal(evm_proc_signal(p, SIGKILL), 0);
	RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
	if (loop->no_clone3)
		T_SKIP("no clone3 here (valgrind, or Linux before 5.5): clone() copies the table");
	if (size < 0 || size > 256)
		fprintf(stderr, "the child's FDSize: %ld\n", size);
	assert_true(size > 0 && size <= 256);
}

/* FDSize from /proc/self/status opened as sfd: reading it opens no fd */
static long fd_table_size_at(int sfd)
{
	char buf[4096];
	ssize_t n = pread(sfd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	char *v = strstr(buf, "\nFDSize:");
	return v ? strtol(v + 9, NULL, 10) : -1;
}

/*
 * The kernel makes a pidfd inside clone3, where the child shares our fd
 * table (CLONE_FILES): a table grown there waits for an RCU grace period
 * (10-30 ms a doubling: the launch of 1,000 children took 40% longer). A
 * spawn whose pidfd leaves fewer than 16 free slots above it grows the
 * table right after, when nothing shares it, so the next spawn's pipes and
 * pidfd find room without a wait. In a fork: a fresh loop, and a table
 * sized by the fds open now, not by earlier tests.
 */
static void grown_ahead(void *arg)
{
	char *skip = arg; /* shared with the test: why nothing could be checked */
	struct evm_loop *loop;
	t_set_mode(mode);
	CHECK(evm_loop_new(&loop, NULL) == 0);
	t_clear_mode();
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
	struct evm_proc *p;
	/* a first spawn opens what the loop opens once (/proc/self/status) */
	CHECK(evm_spawn(loop, &o, &p) == 0);
	CHECK(evm_proc_signal(p, SIGKILL) == 0);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
	int sfd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	CHECK(sfd >= 0);
	long size = fd_table_size_at(sfd);
	if (size <= 0 || size > 1024) {
		snprintf(skip, 128, "our fd table is already large (%ld): valgrind's fds", size);
		close(sfd);
		evm_loop_free(loop);
		return;
	}
	/* every slot but the last 10 in use: the pidfd takes the first of them */
	int *held = calloc((size_t)size, sizeof(int)), n = 0;
	CHECK(held);
	for (;;) {
		int fd = fcntl(2, F_DUPFD_CLOEXEC, 0);
		CHECK(fd >= 0 && fd < size);
		if (fd == size - 10) {
			close(fd);
			break;
		}
		held[n++] = fd;
	}
	CHECK(evm_spawn(loop, &o, &p) == 0);
	long after = fd_table_size_at(sfd);
	close(sfd);
	bool pidfd = fcntl((int)size - 10, F_GETFD) >= 0;
	while (n)
		close(held[--n]);
	free(held);
	CHECK(evm_proc_signal(p, SIGKILL) == 0);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
	evm_loop_free(loop);
	if (!pidfd) {
		snprintf(skip, 128, "the child has no pidfd");
		return;
	}
	if (after < 2 * size)
		fprintf(stderr, "our FDSize: %ld before the spawn, %ld after\n", size, after);
	CHECK(after >= 2 * size);
}

static void test_fd_table_grown_ahead(void **state)
{
	(void)state;
	if (helper_mode())
		T_SKIP("the spawn helper's pidfds are made in our table, not in a clone");
	char *skip = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(skip != MAP_FAILED);
	t_forked(grown_ahead, skip);
	char why[128];
	snprintf(why, sizeof(why), "%s", skip);
	munmap(skip, 4096);
	if (why[0])
		T_SKIP("%s", why);
}

/* a seccomp filter on this (forked) process: syscalls a and b fail with err */
static void refuse_syscalls(long a, long b, int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)a, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)b, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
}

/*
 * A seccomp filter that refuses close_range and unshare (EPERM), as an old
 * container runtime's may: the first child cannot take a table of its own,
 * exits having touched none of ours, and is cloned again with a copy; so
 * are all later ones. Its stdout is ours, given by number: the spawn works;
 * and without close_range our fd not marked close-on-exec is closed one by
 * one, in the child and in the spawn helper's table.
 */
static void no_table_of_its_own(void *arg)
{
	(void)arg;
	refuse_syscalls(SYS_close_range, SYS_unshare, EPERM);
	CHECK(syscall(SYS_unshare, 0) < 0 && errno == EPERM);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	int leak = fcntl(2, F_DUPFD, 3); /* not close-on-exec: closed one by one without close_range */
	CHECK(leak >= 3);
	for (int i = 0; i < 2; i++) {
		int pp[2];
		CHECK(pipe2(pp, O_CLOEXEC) == 0);
		char *argv[] = {t_helper, "fds", NULL};
		struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
		o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
		struct evm_spawn_error err = {0};
		o.error = &err;
		struct evm_proc *p;
		int r = evm_spawn(loop, &o, &p);
		if (r < 0)
			fprintf(stderr, "spawn %d: %s at %s\n", i, strerror(-r), evm_spawn_stage_name(err.stage));
		CHECK(r == 0);
		close(pp[1]);
		char buf[512];
		drain(pp[0], buf, sizeof(buf));
		close(pp[0]);
		CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
		if (strcmp(buf, "fd 0\nfd 1\nfd 2\n"))
			fprintf(stderr, "the child's fds: %s", buf);
		CHECK(evm_proc_exit_record(p)->code == 0 && !strcmp(buf, "fd 0\nfd 1\nfd 2\n"));
		evm_proc_unref(p);
	}
	close(leak);
	CHECK(loop->no_share_files || loop->no_clone3 || helper_mode());
	evm_loop_free(loop);
}

static void test_spawn_without_close_range_or_unshare(void **state)
{
	(void)state;
	t_forked(no_table_of_its_own, NULL);
}

/*
 * A seccomp filter that refuses clone3 with EPERM, as Docker's and
 * containerd's default profiles did before they settled on ENOSYS: the
 * spawn falls back to clone() (tini, which uses fork, ran there; evmon
 * started nothing: "fork: Operation not permitted"). The spawn helper's
 * clone3 is refused the same way, and the loop spawns directly.
 */
static void clone3_refused(void *arg)
{
	(void)arg;
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
	refuse_syscalls(SYS_clone3, SYS_clone3, EPERM);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	for (int i = 0; i < 2; i++) {
		char *argv[] = {t_helper, "exit", "7", NULL};
		struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
		struct evm_spawn_error err = {0};
		o.error = &err;
		struct evm_proc *p;
		int r = evm_spawn(loop, &o, &p);
		if (r < 0)
			fprintf(stderr, "spawn %d: %s at %s\n", i, strerror(-r), evm_spawn_stage_name(err.stage));
		CHECK(r == 0);
		CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
		CHECK(evm_proc_exit_record(p)->code == 7);
		evm_proc_unref(p);
	}
	CHECK(loop->no_clone3 || (helper_mode() && loop->no_helper));
	evm_loop_free(loop);
}

static void test_spawn_with_clone3_refused_by_a_filter(void **state)
{
	(void)state;
#ifdef EVMON_TSAN_H
	/* its clone() interceptor fails a CLONE_VM child (tsan_rtl.cpp CHECK in ForkAfter) */
	T_SKIP("not under ThreadSanitizer: the fallback is clone()");
#endif
	t_forked(clone3_refused, NULL);
}

/*
 * Many children in the default mode: a direct child shares our fd table and
 * copies only the fds below the highest it uses, so past
 * HELPER_LIVE_THRESHOLD (512 live) the loop still clones directly while
 * those are low, and does not start the spawn helper, whose round trip
 * would cost more (docs/BENCHMARKS.md, S10). A spawn with a high fd (it
 * would copy hundreds), or where a child had to copy the whole table
 * (unshare, close_range refused: a kernel before 5.9), goes through the
 * helper past the threshold. An EVM_SPAWN_NOWAIT child copies our table at
 * the clone, so past the threshold it is waited for.
 */
#define MANY 520
static void many_children(void *arg)
{
	bool whole = arg != NULL;
	if (whole)
		refuse_syscalls(SYS_close_range, SYS_close_range, ENOSYS); /* as before Linux 5.9 */
	setenv("EVM_SPAWN_MODE", "auto", 1);
	setenv("EVM_NO_PIDFD", "0", 1);
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = rl.rlim_max; /* a pidfd each */
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	int pp[2];
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	struct evm_proc **p = calloc(MANY + 1, sizeof(*p));
	CHECK(p);
	char *argv[] = {t_helper, "cat", NULL};
	for (int i = 0; i <= MANY; i++) {
		struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
		o.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, pp[0]};
		o.stdio[1] = o.stdio[2] = (struct evm_stdio){EVM_STDIO_NULL, -1};
		if (i == 0 || i == MANY)
			o.flags |= EVM_SPAWN_NOWAIT;
		CHECK(evm_spawn(loop, &o, &p[i]) == 0);
	}
	bool nowait_first = p[0]->kind & EVM__K_NOWAIT, nowait_last = p[MANY]->kind & EVM__K_NOWAIT;
	bool clone3 = !loop->no_clone3 && !loop->no_share_files, helper = !loop->no_helper;
	bool auto_mode = loop->spawn_mode == EVM__SPAWN_AUTO; /* not under TSan (tsan.h: direct) */
	bool whole_tables = loop->whole_tables, spawner = loop->spawner != NULL;
	/* a child whose stdin is a high fd would copy every fd below it: the helper's way */
	int high = fcntl(pp[0], F_DUPFD_CLOEXEC, 700);
	CHECK(high >= 700);
	struct evm_spawn_opts ho = {.argv = argv, .pdeath_signal = SIGKILL};
	ho.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, high};
	ho.stdio[1] = ho.stdio[2] = (struct evm_stdio){EVM_STDIO_NULL, -1};
	struct evm_proc *hp;
	CHECK(evm_spawn(loop, &ho, &hp) == 0);
	close(high);
	bool spawner_high = loop->spawner != NULL;
	close(pp[0]);
	close(pp[1]); /* EOF: every cat exits */
	int left = MANY + 2;
	while (left) {
		evm_loop_run_once(loop, 1000);
		left = !evm_proc_exited(hp);
		for (int i = 0; i <= MANY; i++)
			left += !evm_proc_exited(p[i]);
	}
	CHECK(evm_proc_exit_record(hp)->code == 0);
	evm_proc_unref(hp);
	for (int i = 0; i <= MANY; i++) {
		CHECK(evm_proc_exit_record(p[i])->code == 0);
		evm_proc_unref(p[i]);
	}
	free(p);
	evm_loop_free(loop);
	if (!clone3 || !auto_mode)
		return; /* valgrind or an old kernel: clone() copies tables, the helper's choice stands */
	CHECK(whole_tables == whole);
	CHECK(spawner == (whole && helper));
	CHECK(spawner_high == helper);
	if (evm__nowait_supported() && !whole) {
		CHECK(nowait_first);
		CHECK(!nowait_last);
	}
}

static void test_many_children_no_helper(void **state)
{
	(void)state;
	if (strcmp(mode->name, "direct"))
		T_SKIP("the default (auto) mode, run once");
	t_forked(many_children, NULL);
	t_forked(many_children, "whole");
}

/*
 * EVM_SPAWN_INHERIT_FDS: our fds without CLOEXEC reach the child, at their
 * numbers (also in helper mode: such spawns are direct); a CLOEXEC one and
 * every fd of the loop's (epoll, pidfds, signalfd, the helper's socket) do not.
 */
static void test_inherit_fds(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int keep[4];
	keep[0] = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
	assert_int_equal(pipe(keep + 1), 0);
	keep[3] = fcntl(keep[0], F_DUPFD, 700);
	int cloexec = fcntl(keep[0], F_DUPFD_CLOEXEC, 3);
	/* a few children first: the loop holds pidfds (and the helper) while we spawn */
	struct t_exit x = {0};
	struct evm_proc *bg[3];
	for (int i = 0; i < 3; i++)
		bg[i] = t_spawn(loop, HARGV("sleep", "10000"), &x);
	/* ours, and whatever our own parent left us without CLOEXEC */
	char with[4096], without[4096], want[4096] = "fd 0\nfd 1\nfd 2\n";
	for (int fd = 3; fd < 1024; fd++) {
		int fl = fcntl(fd, F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC))
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "fd %d\n", fd);
	}
	struct evm_spawn_opts o = {.flags = EVM_SPAWN_INHERIT_FDS};
	o.stdio[0].mode = EVM_STDIO_NULL;
	t_output(loop, HARGV("fds"), &o, with, sizeof(with), NULL);
	o.flags = 0;
	t_output(loop, HARGV("fds"), &o, without, sizeof(without), NULL);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(evm_proc_signal(bg[i], SIGKILL), 0);
		evm_proc_unref(bg[i]);
	}
	RUN_UNTIL(loop, x.n == 3, 10000);
	for (int i = 0; i < 4; i++)
		close(keep[i]);
	close(cloexec);
	assert_true(keep[0] >= 3 && keep[1] >= 3 && keep[2] >= 3 && keep[3] == 700 && cloexec >= 3);
	char line[32];
	for (int i = 0; i < 4; i++) {
		snprintf(line, sizeof(line), "fd %d\n", keep[i]);
		assert_non_null(strstr(want, line));
	}
	snprintf(line, sizeof(line), "fd %d\n", cloexec);
	assert_null(strstr(want, line));
	assert_string_equal(with, want);
	assert_string_equal(without, "fd 0\nfd 1\nfd 2\n");
}

/* EVM_SPAWN_LISTEN_PID: LISTEN_PID is the child's own pid, whatever envp and env_extra say. */
static void test_listen_pid(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[4096];
	char *envp[] = {"LISTEN_PID=1", "LISTEN_FDS=2", NULL};
	char *extra[] = {"EVT_X=1", "LISTEN_PID=7", NULL};
	for (int k = 0; k < 3; k++) {
		struct evm_spawn_opts o = {.flags = EVM_SPAWN_LISTEN_PID};
		if (k >= 1)
			o.envp = envp;
		if (k == 2)
			o.env_extra = extra;
		t_output(loop, HARGV("pgid", "env", "LISTEN_PID", "env", "LISTEN_FDS", "env", "EVT_X"), &o, out,
			 sizeof(out), NULL);
		int pid = 0, lp = -1;
		assert_int_equal(sscanf(out, "pid %d", &pid), 1);
		char *at = strstr(out, "LISTEN_PID=");
		assert_non_null(at);
		assert_int_equal(sscanf(at, "LISTEN_PID=%d\n", &lp), 1);
		assert_true(pid > 0);
		assert_int_equal(lp, pid);
		assert_non_null(strstr(out, k >= 1 ? "LISTEN_FDS=2\n" : "LISTEN_FDS unset\n"));
		assert_non_null(strstr(out, k == 2 ? "EVT_X=1\n" : "EVT_X unset\n"));
	}
}

/* --------------------------------------------------------- signal state */

struct sig_arg {
	const struct t_mode *m;
};

static void on_usr2(int sig)
{
	(void)sig;
}

static void check_child_signals(struct evm_loop *loop)
{
	int pp[2];
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	char *argv[] = {t_helper, "status", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	struct evm_proc *p;
	CHECK(evm_spawn(loop, &o, &p) == 0);
	close(pp[1]);
	char buf[4096];
	drain(pp[0], buf, sizeof(buf));
	close(pp[0]);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
	/* (caught signals are reset by exec itself; only these two survive it) */
	if (!strstr(buf, "SigBlk:\t0000000000000000\n") || !strstr(buf, "SigIgn:\t0000000000000000\n")) {
		fprintf(stderr, "child signal state:\n%s", buf);
		CHECK(!"empty mask, no ignored signals");
	}
}

/*
 * We block signals (SIGCHLD too, in the SIGCHLD modes), ignore SIGPIPE and
 * SIGHUP, and catch SIGUSR2: the child starts with an empty mask and
 * default dispositions, also when we change them after the loop (and its
 * helper) started.
 */
/*
 * SIG_IGN on glibc's internal signals 32 and 33, which its sigaction()
 * refuses to touch: GNU make leaves them ignored in every command it runs,
 * and an ignored signal survives exec.
 */
static void ignore_raw(int sig)
{
	struct {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		uint64_t mask;
	} k = {SIG_IGN, 0, NULL, 0};
	CHECK(syscall(SYS_rt_sigaction, sig, &k, NULL, sizeof(k.mask)) == 0);
}

static void sig_state(void *arg)
{
	struct sig_arg *a = arg;
	ignore_raw(32);
	ignore_raw(33);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGRTMIN + 2);
	CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_usr2};
	sigaction(SIGUSR2, &sa, NULL);
	t_set_mode(a->m);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	check_child_signals(loop);
	signal(SIGINT, SIG_IGN);
	sigaction(SIGWINCH, &sa, NULL);
	sigaddset(&set, SIGQUIT);
	CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
	check_child_signals(loop);
	evm_loop_free(loop);
}

static void test_child_signal_state(void **state)
{
	(void)state;
	struct sig_arg a = {mode};
	t_forked(sig_state, &a);
}

static void *park(void *arg)
{
	char c;
	(void)!read(*(int *)arg, &c, 1); /* until the pipe's write end closes */
	return NULL;
}

/*
 * With a second thread the child cannot take its parent's status for its
 * own (that thread could change a disposition before the exec): it reads
 * its own, and still starts with nothing ignored and nothing blocked.
 */
static void sig_state_threaded(void *arg)
{
	struct sig_arg *a = arg;
	int pp[2];
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, park, &pp[0]) == 0);
	ignore_raw(33);
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
	t_set_mode(a->m);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	check_child_signals(loop);
	evm_loop_free(loop);
	close(pp[1]);
	CHECK(pthread_join(th, NULL) == 0);
	close(pp[0]);
}

static void test_child_signal_state_threaded(void **state)
{
	(void)state;
	struct sig_arg a = {mode};
	t_forked(sig_state_threaded, &a);
}

struct two_spawns {
	struct evm_loop *loop;
	struct evm_proc *p[2];
	int out[2];
};

static void spawn_status_to_pipe(struct two_spawns *t, int i)
{
	int pp[2];
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	char *argv[] = {t_helper, "status", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	CHECK(evm_spawn(t->loop, &o, &t->p[i]) == 0);
	close(pp[1]);
	t->out[i] = pp[0];
}

/* in a timer callback, no iteration in between: spawn, ignore signals, spawn */
static void spawn_ignore_spawn(struct evm_timer *tm, void *data)
{
	struct two_spawns *t = data;
	(void)tm;
	spawn_status_to_pipe(t, 0);
	signal(SIGHUP, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	spawn_status_to_pipe(t, 1);
	evm_loop_stop(t->loop);
}

static void sig_state_in_iteration(void *arg)
{
	struct sig_arg a = *(struct sig_arg *)arg;
	static struct two_spawns t;
	t_set_mode(a.m);
	CHECK(evm_loop_new(&t.loop, NULL) == 0);
	CHECK(evm_timer_add(t.loop, 0, spawn_ignore_spawn, &t, NULL) == 0);
	CHECK(evm_loop_run(t.loop) == 0);
	for (int i = 0; i < 2; i++) {
		char buf[4096];
		drain(t.out[i], buf, sizeof(buf));
		close(t.out[i]);
		if (!strstr(buf, "SigIgn:\t0000000000000000\n")) {
			fprintf(stderr, "child %d:\n%s", i, buf);
			CHECK(!"no ignored signals in the child");
		}
		CHILD_RUN_UNTIL(t.loop, evm_proc_exited(t.p[i]), 10000);
		evm_proc_unref(t.p[i]);
	}
	evm_loop_free(t.loop);
}

/*
 * Dispositions changed by a callback between two spawns of one iteration:
 * the second child must not inherit the new SIG_IGNs either (nothing that
 * describes our signal state may be cached across a callback).
 */
static void test_child_signal_state_changed_in_callback(void **state)
{
	(void)state;
	struct sig_arg a = {mode};
	t_forked(sig_state_in_iteration, &a);
}

/*
 * The child learns what to reset from a /proc/PID/status text (one read
 * instead of 62 rt_sigaction), in one pass: the parser finds each of the
 * five lines, refuses a missing, cut or malformed one (the child then
 * resets everything), and agrees with sigaction() and getpid() on our own
 * status.
 */
static const char status_text[] = "Name:\tx\nTgid:\t4321\nPid:\t4321\nThreads:\t1\nSigQ:\t0/100\n"
				  "SigPnd:\t0000000000000000\nSigBlk:\t0000000000010000\n"
				  "SigIgn:\t0000000180001000\nSigCgt:\t00000000000004ec\nCap";

/* status_text with `from` (its first occurrence) replaced by `to` */
static bool parse_edited(const char *from, const char *to, struct evm__status *st)
{
	char buf[512];
	const char *at = strstr(status_text, from);
	assert_non_null(at);
	int n = snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - status_text), status_text, to,
			 at + strlen(from));
	return evm__status_parse(buf, (size_t)n, st);
}

static void test_status_parse(void **state)
{
	(void)state;
	struct evm__status st;
	size_t n = sizeof(status_text) - 1;
	memset(&st, 0, sizeof(st));
	assert_true(evm__status_parse(status_text, n, &st));
	assert_true(st.tgid == 4321 && st.threads == 1);
	assert_true(st.blk == 0x10000 && st.ign == 0x180001000ULL && st.cgt == 0x4ec);
	/* each line missing, malformed or cut makes the whole text unusable */
	assert_false(parse_edited("SigCgt:", "SigXyz:", &st));
	assert_false(parse_edited("Tgid:", "TGID:", &st));
	assert_false(parse_edited("Threads:\t1", "Threads:\t", &st));
	assert_false(parse_edited("Threads:\t1\n", "Threads:\t1x\n", &st));
	assert_false(parse_edited("0000000180001000", "00000000000g0000", &st));
	assert_false(parse_edited("0000000180001000", "000000018000100", &st));
	assert_false(parse_edited("0000000180001000", "00000001800010000", &st));
	const char *cut = strstr(status_text, "SigCgt:") + 12;
	assert_false(evm__status_parse(status_text, (size_t)(cut - status_text), &st));
	cut = strstr(status_text, "Threads:") + 10; /* "Threads:\t1" without its newline */
	assert_false(evm__status_parse(status_text, (size_t)(cut - status_text), &st));
	/* the mask line may end the text: found whole */
	cut = strstr(status_text, "SigCgt:") + 8 + 16;
	assert_true(evm__status_parse(status_text, (size_t)(cut - status_text), &st));
	/* "Threads:\t12" is read as 12, not 1 */
	assert_true(parse_edited("Threads:\t1\n", "Threads:\t12\n", &st));
	assert_true(st.threads == 12);
	/* another line starting alike is not taken for one of ours */
	assert_true(parse_edited("SigQ:", "Tgidx:\t9\nSigQ:", &st));
	assert_true(st.tgid == 4321);

	/* our own status, with a signal ignored for the test */
	struct sigaction old;
	assert_int_equal(sigaction(SIGURG, NULL, &old), 0);
	signal(SIGURG, SIG_IGN);
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		sigaction(SIGURG, &old, NULL);
		T_SKIP("no /proc/self/status");
	}
	ssize_t got = read(fd, buf, sizeof(buf));
	close(fd);
	sigaction(SIGURG, &old, NULL);
	assert_true(got > 0);
	assert_true(evm__status_parse(buf, (size_t)got, &st));
	assert_true(st.tgid == (unsigned long)getpid());
	assert_true(st.ign >> (SIGURG - 1) & 1);
	for (int sig = 1; sig < 32; sig++) {
		struct sigaction sa;
		if (sig == SIGURG)
			continue;
		assert_int_equal(sigaction(sig, NULL, &sa), 0);
		assert_int_equal((int)(st.ign >> (sig - 1) & 1), sa.sa_handler == SIG_IGN);
	}
}

/*
 * Bench S2 counts the bytes per child: a proc is 176 bytes on 64-bit (a
 * 192-byte malloc chunk), what few use (capture, timeout) allocated aside.
 */
static void test_proc_size(void **state)
{
	(void)state;
	if (sizeof(void *) != 8)
		T_SKIP("sizes are for 64-bit");
	assert_true(sizeof(struct evm_proc) <= 176);
}

/* --------------------------------------------------- sessions and groups */

static void parse_pgid(const char *out, int *pid, int *ppid, int *pgid, int *sid)
{
	assert_int_equal(sscanf(out, "pid %d ppid %d pgid %d sid %d", pid, ppid, pgid, sid), 4);
}

static void test_session_and_groups(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[256];
	int pid, ppid, pgid, sid;

	struct evm_spawn_opts o = {.flags = EVM_SPAWN_SETSID};
	t_output(loop, HARGV("pgid"), &o, out, sizeof(out), NULL);
	parse_pgid(out, &pid, &ppid, &pgid, &sid);
	assert_int_equal(ppid, getpid()); /* our child, in both spawn paths */
	assert_int_equal(sid, pid);
	assert_int_equal(pgid, pid);

	o = (struct evm_spawn_opts){.flags = EVM_SPAWN_SETPGID, .pgid = 0};
	t_output(loop, HARGV("pgid"), &o, out, sizeof(out), NULL);
	parse_pgid(out, &pid, &ppid, &pgid, &sid);
	assert_int_equal(pgid, pid);
	assert_int_equal(sid, getsid(0));

	o = (struct evm_spawn_opts){0};
	t_output(loop, HARGV("pgid"), &o, out, sizeof(out), NULL);
	parse_pgid(out, &pid, &ppid, &pgid, &sid);
	assert_int_equal(pgid, getpgrp());

	/* join the group another child leads */
	struct evm_spawn_opts lo = {.flags = EVM_SPAWN_SETPGID};
	struct evm_proc *leader = t_spawn_opts(loop, HARGV("pause"), &lo);
	o = (struct evm_spawn_opts){.flags = EVM_SPAWN_SETPGID, .pgid = evm_proc_pid(leader)};
	t_output(loop, HARGV("pgid"), &o, out, sizeof(out), NULL);
	parse_pgid(out, &pid, &ppid, &pgid, &sid);
	assert_int_equal(pgid, evm_proc_pid(leader));
	assert_int_equal(evm_proc_signal(leader, SIGKILL), 0);
	evm_proc_unref(leader);
}

static void test_signal_group(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.flags = EVM_SPAWN_SETSID, .on_exit = t_on_exit, .data = &x};
	o.stdio[1].mode = EVM_STDIO_PIPE;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("group", "2", "print", "ready", "pause"), &o);
	int out = evm_proc_stdio_fd(p, 1);
	char buf[256] = "";
	size_t len = 0;
	uint64_t dl = t_now_ms() + T_MS(10000);
	while (!strstr(buf, "ready\n")) {
		assert_true(t_now_ms() < dl);
		struct pollfd pfd = {.fd = out, .events = POLLIN};
		poll(&pfd, 1, 100);
		ssize_t k = read(out, buf + len, sizeof(buf) - 1 - len);
		if (k > 0)
			len += (size_t)k;
		buf[len] = 0;
	}
	close(out);
	int g[2];
	assert_int_equal(sscanf(buf, "grandchild %d\ngrandchild %d", &g[0], &g[1]), 2);

	struct evm_proc *plain = t_spawn(loop, HARGV("pause"), NULL);
	assert_int_equal(evm_proc_signal_group(plain, SIGKILL), -EPERM);
	assert_int_equal(evm_proc_signal_group(NULL, SIGKILL), -EINVAL);
	assert_int_equal(evm_proc_signal_group(p, -1), -EINVAL);
	assert_int_equal(evm_proc_signal_group(p, 0), 0);

	assert_int_equal(evm_proc_signal_group(p, SIGKILL), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.signal, SIGKILL);
	for (int i = 0; i < 2; i++) /* dead (maybe not yet reaped by whoever adopted them) */
		WAIT_FOR(t_proc_state(g[i]) == 0 || t_proc_state(g[i]) == 'Z', 10000);
	assert_int_equal(evm_proc_signal_group(p, SIGKILL), -ESRCH);
	assert_int_equal(evm_proc_signal(plain, SIGKILL), 0);
	evm_proc_unref(plain);
	evm_proc_unref(p);
}

/* --------------------------------------------------- the helper killed */

struct killer {
	atomic_bool quit;
	char comm[32]; /* ours: the helper's, and a child's until it execs */
	int kills;
};

/* the contents of a small /proc file, NUL-terminated; "" if unreadable */
static void read_proc(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : 0;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
}

/* SIGKILL every child of ours that has not exec'd (the helper, mostly), at random moments */
static void *helper_killer(void *arg)
{
	struct killer *k = arg;
	unsigned seed = 1;
	while (!atomic_load(&k->quit)) {
		usleep(rand_r(&seed) % 2000);
		char path[64], buf[4096];
		/* the loop runs on the main thread: the helper is its child */
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", getpid(), getpid());
		read_proc(path, buf, sizeof(buf));
		/*
		 * Our children with our comm are the helper and the children it is
		 * cloning (ours by CLONE_PARENT, not yet exec'd). Kill only the
		 * helper, the oldest of them: a child can exec between our reading
		 * its comm and our kill, and a run killed after it logged would
		 * count as a second run.
		 */
		pid_t helper = 0;
		unsigned long long oldest = ~0ULL;
		for (char *save, *s = strtok_r(buf, " \n", &save); s; s = strtok_r(NULL, " \n", &save)) {
			char comm[32], stat[1024];
			snprintf(path, sizeof(path), "/proc/%s/comm", s);
			read_proc(path, comm, sizeof(comm));
			snprintf(path, sizeof(path), "/proc/%s/stat", s);
			read_proc(path, stat, sizeof(stat));
			const char *f = strrchr(stat, ')'); /* then: state ... field 22 starttime */
			unsigned long long start = 0;
			if (f && sscanf(f + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
					   "%*d %*d %*d %*d %llu", &start) == 1 && !strcmp(comm, k->comm) &&
			    t_proc_state(atoi(s)) != 'Z' && start < oldest) {
				oldest = start;
				helper = atoi(s);
			}
		}
		if (helper > 0 && kill(helper, SIGKILL) == 0)
			k->kills++;
	}
	return NULL;
}

/*
 * Someone SIGKILLs the spawn helper while it works. A helper that dies after
 * it cloned a child, before it replied, must not make us spawn the program
 * a second time: each run of the program is one reported exit.
 */
static void test_helper_killed_mid_spawn(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	if (!helper_mode() || strcmp(mode->nopidfd, "0"))
		T_SKIP("only through the spawn helper with pidfds (mode %s)", mode->name);
#ifdef EVMON_TSAN_H
	/*
	 * Spawns go direct there (tsan.h): what the killer takes for the helper
	 * is a CLONE_VM child before its exec, whose instrumented code shares the
	 * runtime's state; killed in it, it left a lock held and the test hung.
	 */
	T_SKIP("not under ThreadSanitizer: no helper to kill, only a CLONE_VM child");
#endif
	char log[PATH_MAX + 64];
	snprintf(log, sizeof(log), "%s/tests/helper-killed.%d", t_build, (int)getpid());
	unlink(log);
	struct killer k = {0};
	read_proc("/proc/self/comm", k.comm, sizeof(k.comm));
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, helper_killer, &k), 0);
	int clean = 0;
	for (int i = 0; i < (T_SAN ? 100 : 300); i++) {
		struct t_exit x = {0};
		struct evm_spawn_opts o = {.argv = HARGV("pidlog", log), .on_exit = t_on_exit, .data = &x};
		if (evm_spawn(loop, &o, NULL) < 0)
			continue;
		RUN_UNTIL(loop, x.n == 1, 10000);
		if (x.rec.code == 0 && x.rec.signal == 0)
			clean++;
	}
	atomic_store(&k.quit, true);
	pthread_join(th, NULL);
	int runs = 0;
	FILE *f = fopen(log, "re");
	for (char line[64]; f && fgets(line, sizeof(line), f);)
		runs++;
	if (f)
		fclose(f);
	unlink(log);
	print_message("helper killed %d times; %d runs, %d clean exits\n", k.kills, runs, clean);
	assert_int_equal(runs, clean);
}

/* ------------------------------------------------------------ credentials */

static void test_credentials(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	if (!t_real_root())
		T_SKIP("needs root: other uids and gids");
	char out[512];
	gid_t groups[] = {65534, 100, 4};
	struct evm_spawn_opts o = {.flags = EVM_SPAWN_SETUID | EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS,
				   .uid = 65534, .gid = 65533, .groups = groups, .ngroups = 3};
	t_output(loop, HARGV("ids"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "uid 65534 gid 65533 groups 4,100,65534\n");

	/* dropping to a user without SETGROUPS must not keep root's groups */
	o = (struct evm_spawn_opts){.flags = EVM_SPAWN_SETUID, .uid = 1234};
	t_output(loop, HARGV("ids"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "uid 1234 gid 0 groups \n");

	/* SETGROUPS with none: an empty list */
	o = (struct evm_spawn_opts){.flags = EVM_SPAWN_SETGROUPS | EVM_SPAWN_SETGID, .gid = 5};
	t_output(loop, HARGV("ids"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "uid 0 gid 5 groups \n");

	/* uid 0 is a value too */
	o = (struct evm_spawn_opts){.flags = EVM_SPAWN_SETUID | EVM_SPAWN_SETGID, .uid = 0, .gid = 0};
	t_output(loop, HARGV("ids"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "uid 0 gid 0 groups \n");
}

struct cred_arg {
	const struct t_mode *m;
};

static void check_fail(struct evm_loop *loop, struct evm_spawn_opts *o, int err, int stage)
{
	struct evm_spawn_error e = {0};
	o->error = &e;
	int r = evm_spawn(loop, o, NULL);
	if (r != -err || (int)e.stage != stage || e.error != err) {
		fprintf(stderr, "got %d stage %s error %d, want %d stage %s\n", r,
			evm_spawn_stage_name(e.stage), e.error, -err,
			evm_spawn_stage_name((enum evm_spawn_stage)stage));
		CHECK(!"spawn failure as expected");
	}
}

/* As an unprivileged user: credential changes fail at their stage; NPROC at fork. */
static void unprivileged(void *arg)
{
	struct cred_arg *a = arg;
	CHECK(setgroups(0, NULL) == 0);
	CHECK(setresgid(65534, 65534, 65534) == 0);
	CHECK(setresuid(65534, 65534, 65534) == 0);
	t_set_mode(a->m);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	char *argv[] = {t_helper, "exit", "0", NULL};
	gid_t g = 0;
	struct evm_spawn_opts o;
	o = (struct evm_spawn_opts){.argv = argv, .flags = EVM_SPAWN_SETUID, .uid = 0};
	check_fail(loop, &o, EPERM, EVM_STAGE_UID);
	o = (struct evm_spawn_opts){.argv = argv, .flags = EVM_SPAWN_SETGID, .gid = 0};
	check_fail(loop, &o, EPERM, EVM_STAGE_GID);
	o = (struct evm_spawn_opts){.argv = argv, .flags = EVM_SPAWN_SETGROUPS, .groups = &g, .ngroups = 1};
	check_fail(loop, &o, EPERM, EVM_STAGE_GROUPS);
	struct evm_rlimit raise_hard = {RLIMIT_NOFILE, {RLIM_INFINITY, RLIM_INFINITY}};
	o = (struct evm_spawn_opts){.argv = argv, .rlimits = &raise_hard, .nrlimits = 1};
	check_fail(loop, &o, EPERM, EVM_STAGE_RLIMIT);
	CHECK(t_count_children() <= (strcmp(a->m->spawn, "helper") ? 0 : 1));
	/* no process allowed for this user: the clone itself fails */
	struct rlimit zero = {0, 0};
	CHECK(setrlimit(RLIMIT_NPROC, &zero) == 0);
	evm_loop_free(loop);
	CHECK(evm_loop_new(&loop, NULL) == 0);
	o = (struct evm_spawn_opts){.argv = argv};
	check_fail(loop, &o, EAGAIN, EVM_STAGE_FORK);
	evm_loop_free(loop);
	CHECK(t_count_children() == 0);
}

static void test_unprivileged_failures(void **state)
{
	(void)state;
	if (!t_real_root())
		T_SKIP("needs root: other uids and gids");
	struct cred_arg a = {mode};
	t_forked(unprivileged, &a);
}

/* -------------------------------------------------- rlimits and pdeath */

static void test_rlimits(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[256];
	struct evm_rlimit rl[] = {
		{RLIMIT_CORE, {0, 0}},
		{RLIMIT_NOFILE, {100, 200}},
	};
	struct evm_spawn_opts o = {.rlimits = rl, .nrlimits = 2};
	t_output(loop, HARGV("rlimit", "core", "rlimit", "nofile"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "rlimit core 0 0\nrlimit nofile 100 200\n");
}

static void test_pdeath_option(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char out[64];
	struct evm_spawn_opts o = {.pdeath_signal = SIGUSR1};
	t_output(loop, HARGV("pdeath"), &o, out, sizeof(out), NULL);
	assert_string_equal(out, "pdeath 10\n");

	/* none by default (t_output would set one: spawn by hand) */
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	struct t_exit x = {0};
	struct evm_spawn_opts n = {.argv = HARGV("pdeath"), .on_exit = t_on_exit, .data = &x};
	n.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	assert_int_equal(evm_spawn(loop, &n, NULL), 0);
	close(pp[1]);
	t_read_all(pp[0], out, sizeof(out), 10000);
	close(pp[0]);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_string_equal(out, "pdeath 0\n");
}

struct pdeath_arg {
	const struct t_mode *m;
	pid_t pid;
};

static void *loop_thread(void *arg)
{
	struct pdeath_arg *a = arg;
	struct evm_loop *loop;
	t_set_mode(a->m);
	if (evm_loop_new(&loop, NULL) < 0)
		return NULL;
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGTERM};
	struct evm_proc *p;
	if (evm_spawn(loop, &o, &p) == 0)
		a->pid = evm_proc_pid(p);
	/* the thread ends with the loop still open: the child must get SIGTERM */
	return NULL;
}

static void pdeath_thread(void *arg)
{
	struct pdeath_arg *a = arg;
	pthread_t th;
	CHECK(pthread_create(&th, NULL, loop_thread, a) == 0);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(a->pid > 0);
	int st;
	CHECK(waitpid(a->pid, &st, __WALL) == a->pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
}

/* PR_SET_PDEATHSIG fires when the loop's thread ends, not only the process. */
static void test_pdeath_fires(void **state)
{
	(void)state;
	struct pdeath_arg a = {mode, 0};
	t_forked(pdeath_thread, &a);
}

/* ------------------------------------------------- signals, events, fds */

static void test_proc_signal(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_proc *p = t_spawn(loop, HARGV("pause"), &x);
	assert_int_equal(evm_proc_signal(p, 0), 0);
	assert_int_equal(evm_proc_signal(p, -1), -EINVAL);
	assert_int_equal(evm_proc_signal(p, 100000), -EINVAL);
	assert_int_equal(evm_proc_signal(NULL, 0), -EINVAL);
	assert_false(evm_proc_exited(p));
	assert_null(evm_proc_exit_record(p));
	assert_int_equal(evm_proc_signal(p, SIGTERM), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_true(evm_proc_exited(p));
	assert_int_equal(x.rec.signal, SIGTERM);
	/* exited: never a signal to whatever reuses the pid */
	assert_int_equal(evm_proc_signal(p, SIGTERM), -ESRCH);
	assert_int_equal(evm_proc_signal(p, 0), -ESRCH);
	evm_proc_unref(p);
}

struct spawn_ev {
	int n;
	pid_t pid;
	struct evm_proc *proc;
	char name[32];
};

static void on_spawn(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct spawn_ev *s = data;
	(void)loop;
	s->n++;
	s->pid = ev->pid;
	s->proc = ev->proc;
	snprintf(s->name, sizeof(s->name), "%s", ev->name ? ev->name : "(null)");
}

static void test_spawn_event(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct spawn_ev s = {0};
	assert_int_equal(evm_subscribe(loop, EVM_EV_SPAWN, on_spawn, &s, NULL), 0);
	struct evm_spawn_opts o = {.handler = "jobs/one"};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("exit", "0"), &o);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.pid, evm_proc_pid(p));
	assert_ptr_equal(s.proc, p);
	assert_string_equal(s.name, "jobs/one");
	assert_string_equal(evm_proc_handler(p), "jobs/one");
	RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	evm_proc_unref(p);
}

/* Many spawn/exit cycles leave our fd count where it was. */
static void test_parent_fds_stable(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int n = T_SAN ? 60 : 200;
	int fds0 = -1;
	for (int i = 0; i < n; i++) {
		struct evm_spawn_opts o = {0};
		o.stdio[0].mode = EVM_STDIO_NULL;
		o.stdio[1].mode = EVM_STDIO_PIPE;
		o.stdio[2].mode = i % 2 ? EVM_STDIO_PIPE : EVM_STDIO_INHERIT;
		struct t_exit x = {0};
		o.on_exit = t_on_exit;
		o.data = &x;
		struct evm_proc *p = t_spawn_opts(loop, HARGV("exit", "3"), &o);
		if (i % 3 == 0) {
			int fd = evm_proc_stdio_fd(p, 1);
			assert_true(fd >= 0);
			close(fd);
		}
		RUN_UNTIL(loop, x.n == 1, 10000);
		assert_int_equal(x.rec.code, 3);
		evm_proc_unref(p);
		if (i == 1) /* after the first spawns: /dev/null, the helper if any */
			fds0 = t_count_fds();
	}
	assert_int_equal(t_count_fds(), fds0);
}

/* ------------------------------------------------------- the child's CPU */

static void cpus_of(pid_t pid, char *buf, size_t cap)
{
	assert_true(t_proc_status(pid, "Cpus_allowed_list", buf, cap));
}

static void kill_and_reap(struct evm_loop *loop, struct evm_proc **p, int n)
{
	for (int i = 0; i < n; i++)
		evm_proc_signal(p[i], SIGKILL);
	for (int i = 0; i < n; i++) {
		RUN_UNTIL(loop, evm_proc_exited(p[i]), 10000);
		evm_proc_unref(p[i]);
	}
}

/* skip where spawns do not clone directly (pin_here is clone_vfork3's) */
static bool can_pin(cpu_set_t *all)
{
	assert_int_equal(sched_getaffinity(0, sizeof(*all), all), 0);
	return CPU_COUNT(all) >= 2 && !helper_mode();
}

/* p[0]: a child that lives on, so the next spawns pin; false (none left) without clone3 */
static bool first_child(struct evm_loop *loop, struct evm_proc **p, struct t_exit *x)
{
	p[0] = t_spawn(loop, HARGV("sleep", "30"), x);
	if (!loop->no_clone3)
		return true;
	kill_and_reap(loop, p, 1);
	return false;
}

/* p[0] started (skipped where nothing can be narrowed): the next spawns may narrow */
static void first_of_pinned(struct evm_loop *loop, cpu_set_t *all, struct evm_proc **p,
			    struct t_exit *x)
{
	if (!can_pin(all))
		T_SKIP("one CPU, or through the spawn helper: nothing narrowed");
	if (!first_child(loop, p, &x[0]))
		T_SKIP("no clone3 here (valgrind, or Linux before 5.5)");
}

/*
 * EVM_LOOP_SPAWN_LOCAL_CPU: while another child lives, a child sets itself up on our CPU (our mask
 * narrowed to it for the clone), takes our whole mask back before its exec,
 * and we take it back after: nobody sees the narrowing but for the clone's
 * time. With a mask of one CPU there is nothing to narrow, and the child
 * keeps that CPU.
 */
static void test_child_sets_up_on_our_cpu(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	cpu_set_t all, now;
	struct evm_proc *p[3];
	struct t_exit x[3] = {{0}};
	first_of_pinned(loop, &all, p, x);
	uint64_t pinned = evm__pinned_spawns(loop);
	p[1] = t_spawn(loop, HARGV("sleep", "30"), &x[1]);
	assert_true(evm__pinned_spawns(loop) == pinned + 1);
	char want[512], got[512];
	cpus_of(getpid(), want, sizeof(want));
	cpus_of(evm_proc_pid(p[1]), got, sizeof(got));
	assert_string_equal(got, want);
	assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
	assert_true(CPU_EQUAL(&now, &all));

	int last = -1;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &all))
			last = c;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(last, &one);
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	p[2] = t_spawn(loop, HARGV("sleep", "30"), &x[2]);
	int narrowed = sched_setaffinity(0, sizeof(all), &all); /* ours back before any assert */
	assert_int_equal(narrowed, 0);
	assert_true(evm__pinned_spawns(loop) == pinned + 1);
	snprintf(want, sizeof(want), "%d", last);
	cpus_of(evm_proc_pid(p[2]), got, sizeof(got));
	assert_string_equal(got, want);
	kill_and_reap(loop, p, 3);
}

/* without EVM_LOOP_SPAWN_LOCAL_CPU the spawning thread's mask is never touched */
static void test_spawn_any_cpu(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	cpu_set_t all;
	if (!can_pin(&all))
		T_SKIP("one CPU, or through the spawn helper: nothing narrowed");
	struct evm_proc *p[2];
	struct t_exit x[2] = {{0}};
	p[0] = t_spawn(loop, HARGV("sleep", "30"), &x[0]);
	p[1] = t_spawn(loop, HARGV("sleep", "30"), &x[1]);
	assert_true(evm__pinned_spawns(loop) == 0);
	kill_and_reap(loop, p, 2);
}

/*
 * A child that cannot take our mask back (a seccomp filter refusing
 * sched_setaffinity, a cpuset changed meanwhile; here an empty mask given
 * to it: EINVAL) exits before its exec; the spawn is made again without
 * the narrowing and works, and so are the loop's later ones.
 */
static void test_child_refused_our_cpus(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	cpu_set_t all;
	struct evm_proc *p[3];
	struct t_exit x[3] = {{0}};
	first_of_pinned(loop, &all, p, x);
	uint64_t pinned = evm__pinned_spawns(loop);
	int kids = t_count_children(), fds = t_count_fds();
	loop->test_refuse_cpus = true;
	p[1] = t_spawn(loop, HARGV("sleep", "30"), &x[1]);
	p[2] = t_spawn(loop, HARGV("sleep", "30"), &x[2]);
	loop->test_refuse_cpus = false;
	assert_true(loop->no_pin);
	assert_true(evm__pinned_spawns(loop) == pinned);
	/* the refused child reaped, its pidfd closed: two children more, their two pidfds */
	assert_int_equal(t_count_children(), kids + 2);
	assert_true(t_count_fds() <= fds + 2);
	char want[512], got[512];
	cpus_of(getpid(), want, sizeof(want));
	for (int i = 1; i < 3; i++) {
		cpus_of(evm_proc_pid(p[i]), got, sizeof(got));
		assert_string_equal(got, want);
		assert_int_equal(t_proc_state(evm_proc_pid(p[i])) != 0, 1);
	}
	kill_and_reap(loop, p, 3);
	assert_int_equal(x[1].n, 1);
	assert_int_equal(x[1].rec.signal, SIGKILL); /* the retry, not the refused child (127) */
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_argv, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_file_and_argv0, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_env, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_env_extra_merge, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_env_extra_merge_large, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_path_search, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_exec_failures, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_cwd, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_cwd_umask_inherited_at_spawn_time, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_cwd_without_fds, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_umask_option, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stdio_modes, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stdio_pipes, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stdio_nonblock_cleared, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stdio_swap, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stdio_inherit_cloexec, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_no_fd_leak_into_child, setup, t_teardown),
		cmocka_unit_test(test_fd_table_grown_ahead),
		cmocka_unit_test_setup_teardown(test_child_fd_table_not_copied, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_without_close_range_or_unshare, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_with_clone3_refused_by_a_filter, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_many_children_no_helper, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_closed_stdin_stays_closed, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_inherit_fds, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_listen_pid, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_child_signal_state, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_child_signal_state_changed_in_callback, setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_child_signal_state_threaded, setup, t_teardown),
		cmocka_unit_test(test_status_parse),
		cmocka_unit_test(test_proc_size),
		cmocka_unit_test_setup_teardown(test_session_and_groups, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_signal_group, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_helper_killed_mid_spawn, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_credentials, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_unprivileged_failures, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_rlimits, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_pdeath_option, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_pdeath_fires, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_proc_signal, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_event, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_parent_fds_stable, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_child_sets_up_on_our_cpu, setup_local_cpu,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_any_cpu, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_child_refused_our_cpus, setup_local_cpu,
						t_teardown),
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		char name[64];
		mode = &t_modes[i];
		snprintf(name, sizeof(name), "spawn [%s]", mode->name);
		print_message("== mode %s\n", mode->name);
		failed += _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), NULL,
						  NULL);
	}
	return failed;
}
