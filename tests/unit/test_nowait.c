/*
 * test_nowait.c - EVM_SPAWN_NOWAIT: the loop does not wait for the exec.
 *
 * evm_spawn returns once the child exists; a failure before its exec comes
 * with its exit (status 127, evm_proc_spawn_error). The child has its own
 * copy of everything the caller lent it (argv, environment, PATH, cwd,
 * rlimits, fds; the pipes the library makes), starts with default signal
 * dispositions and an empty mask, and the slots it ran on are read back and
 * reused. Where the library must wait after all (the spawn helper;
 * ThreadSanitizer builds; valgrind, which has no clone3), the failure is
 * returned by the call as without the flag.
 */
#include "evmtest.h"

#include <pthread.h>

/* the flag is carried out in this build and on this kernel (not TSan, not valgrind) */
static bool nowait_here(struct evm_loop *loop)
{
	return evm__nowait_supported() && !loop->no_clone3;
}

static struct evm_proc *spawn_nowait(struct evm_loop *loop, struct evm_spawn_opts *o, struct t_exit *x)
{
	o->flags |= EVM_SPAWN_NOWAIT;
	o->on_exit = t_on_exit;
	o->data = x;
	return t_spawn_opts(loop, o->argv, o);
}

static void test_exit_reported(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.argv = HARGV("exit", "7")};
	struct evm_proc *p = spawn_nowait(loop, &o, &x);
	if (nowait_here(loop))
		assert_true(p->kind & EVM__K_NOWAIT); /* the path was taken */
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 7);
	struct evm_spawn_error err = {.stage = EVM_STAGE_FORK, .error = 1};
	assert_int_equal(evm_proc_spawn_error(p, &err), 0);
	assert_int_equal(err.stage, EVM_STAGE_NONE);
	assert_int_equal(err.error, 0);
	evm_proc_unref(p);
	/* a waited-for child has none either */
	struct evm_proc *q = t_spawn(loop, HARGV("exit", "0"), NULL);
	RUN_UNTIL(loop, evm_proc_exited(q), 10000);
	assert_int_equal(evm_proc_spawn_error(q, NULL), 0);
	evm_proc_unref(q);
	assert_int_equal(evm_proc_spawn_error(NULL, NULL), 0);
}

/* the exit callback: the record, and what evm_proc_spawn_error says there */
struct seen {
	struct t_exit x;
	int err;
	struct evm_spawn_error why;
};

static void on_exit_seen(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	struct seen *s = data;
	t_on_exit(p, e, &s->x);
	s->err = evm_proc_spawn_error(p, &s->why);
}

/* one spawn that fails before its exec: as the call's error, or with the exit */
static void failure(struct evm_loop *loop, struct evm_spawn_opts *o, int want, enum evm_spawn_stage stage)
{
	struct evm_spawn_error err = {0};
	o->flags |= EVM_SPAWN_NOWAIT;
	o->error = &err;
	o->pdeath_signal = SIGKILL;
	struct seen seen = {0};
	o->on_exit = on_exit_seen;
	o->data = &seen;
	struct evm_proc *p = NULL;
	int r = evm_spawn(loop, o, &p);
	if (!nowait_here(loop)) {
		assert_int_equal(r, -want);
		assert_int_equal(err.stage, stage);
		return;
	}
	assert_int_equal(r, 0);
	assert_non_null(p);
	/* not before its exit is reported; in its exit callback already */
	assert_int_equal(evm_proc_spawn_error(p, NULL), 0);
	RUN_UNTIL(loop, seen.x.n == 1, 10000);
	assert_int_equal(seen.x.rec.code, 127);
	assert_int_equal(seen.err, -want);
	assert_int_equal(seen.why.error, want);
	assert_int_equal(seen.why.stage, stage);
	memset(&err, 0, sizeof(err));
	assert_int_equal(evm_proc_spawn_error(p, &err), -want);
	assert_int_equal(err.error, want);
	assert_int_equal(err.stage, stage);
	evm_proc_unref(p);
}

static void test_failures_come_with_the_exit(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_opts o = {.argv = (char *[]){"/nonexistent/evmon-nowait", NULL}};
	failure(loop, &o, ENOENT, EVM_STAGE_EXEC);
	/* through PATH: the last candidate's error, as execvp */
	o = (struct evm_spawn_opts){.argv = (char *[]){"evmon-no-such-program", NULL},
				    .envp = (char *[]){"PATH=/nonexistent:/usr/bin", NULL}};
	failure(loop, &o, ENOENT, EVM_STAGE_EXEC);
	/* a file that is not executable */
	char path[] = "/tmp/evmon-nowait-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	o = (struct evm_spawn_opts){.argv = (char *[]){path, NULL}};
	failure(loop, &o, EACCES, EVM_STAGE_EXEC);
	unlink(path);
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .cwd = "/nonexistent/dir"};
	failure(loop, &o, ENOENT, EVM_STAGE_CWD);
	/* and the loop goes on: a good one after them */
	struct t_exit x = {0};
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "3")};
	struct evm_proc *p = spawn_nowait(loop, &o, &x);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 3);
	evm_proc_unref(p);
}

/*
 * Everything the child is given may be freed, scribbled over or closed the
 * moment evm_spawn returns, while the child may not have run yet: argv, the
 * environment (and PATH in it, searched for the helper), cwd, the rlimits,
 * the fd of its stdout.
 */
static void test_caller_may_free_everything_at_once(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char dir[sizeof(t_helper)];
	memcpy(dir, t_helper, sizeof(dir));
	*strrchr(dir, '/') = 0;
	for (int round = 0; round < 20; round++) {
		int pp[2];
		assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
		char *words[] = {"evm-helper", "env", "EVMON_A", "cwd", "rlimit", "core", "argv", "first",
				 "sec ond"};
		size_t nw = sizeof(words) / sizeof(words[0]);
		char **argv = calloc(nw + 1, sizeof(*argv));
		for (size_t i = 0; i < nw; i++)
			argv[i] = strdup(words[i]);
		char **envp = calloc(3, sizeof(*envp));
		envp[0] = strdup("EVMON_A=alpha");
		assert_true(asprintf(&envp[1], "PATH=/nonexistent:%s", dir) > 0);
		char *cwd = strdup("/tmp");
		struct evm_rlimit *rl = calloc(1, sizeof(*rl));
		rl->resource = RLIMIT_CORE;
		rl->limit = (struct rlimit){0, 0};
		struct t_exit x = {0};
		struct evm_spawn_opts o = {.argv = argv, .envp = envp, .cwd = cwd, .rlimits = rl, .nrlimits = 1};
		o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
		struct evm_proc *p = spawn_nowait(loop, &o, &x);
		/* all of it gone before the child can have exec'd */
		close(pp[1]);
		for (size_t i = 0; argv[i]; i++) {
			memset(argv[i], 'X', strlen(argv[i]));
			free(argv[i]);
		}
		free(argv);
		for (size_t i = 0; envp[i]; i++) {
			memset(envp[i], 'X', strlen(envp[i]));
			free(envp[i]);
		}
		free(envp);
		memset(cwd, 'X', strlen(cwd));
		free(cwd);
		rl->limit = (struct rlimit){RLIM_INFINITY, RLIM_INFINITY};
		rl->resource = RLIMIT_NOFILE;
		free(rl);
		char buf[512];
		size_t n = t_read_all(pp[0], buf, sizeof(buf) - 1, 10000);
		buf[n] = 0;
		close(pp[0]);
		RUN_UNTIL(loop, x.n == 1, 10000);
		assert_int_equal(x.rec.code, 0);
		assert_string_equal(buf, "EVMON_A=alpha\n/tmp\nrlimit core 0 0\n[5] first\n[7] sec ond\n");
		evm_proc_unref(p);
	}
}

/* a pipe the library makes (EVM_STDIO_CAPTURE): its write end is closed here at once, the child's copy is its own */
static void test_capture(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	for (int round = 0; round < 20; round++) {
		struct t_exit x = {0};
		struct evm_spawn_opts o = {.argv = HARGV("print", "out", "eprint", "err")};
		o.stdio[1].mode = EVM_STDIO_CAPTURE;
		o.stdio[2].mode = EVM_STDIO_CAPTURE;
		struct evm_proc *p = spawn_nowait(loop, &o, &x);
		RUN_UNTIL(loop, x.n == 1, 10000);
		assert_int_equal(x.rec.code, 0);
		size_t n;
		const char *out = evm_proc_output(p, 1, &n, NULL);
		assert_true(out && n == 4 && !memcmp(out, "out\n", 4));
		out = evm_proc_output(p, 2, &n, NULL);
		assert_true(out && n == 4 && !memcmp(out, "err\n", 4));
		evm_proc_unref(p);
	}
}

static void test_listen_pid(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.argv = HARGV("env", "LISTEN_PID", "pgid"),
				   .flags = EVM_SPAWN_LISTEN_PID,
				   .env_extra = (char *[]){"LISTEN_PID=1", NULL}};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	struct evm_proc *p = spawn_nowait(loop, &o, &x);
	close(pp[1]);
	char buf[256], want[256];
	size_t n = t_read_all(pp[0], buf, sizeof(buf) - 1, 10000);
	buf[n] = 0;
	close(pp[0]);
	RUN_UNTIL(loop, x.n == 1, 10000);
	pid_t pid = evm_proc_pid(p);
	snprintf(want, sizeof(want), "LISTEN_PID=%d\npid %d ", (int)pid, (int)pid);
	assert_memory_equal(buf, want, strlen(want));
	evm_proc_unref(p);
}

/*
 * The child's signal state is its own from the clone: our ignored signal
 * (SIGPIPE) and blocked one (SIGUSR1) reach it as defaults, even though the
 * loop goes on (and could change them) while it sets itself up.
 */
static void signals_default(void *arg)
{
	(void)arg;
	CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	int pp[2];
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	struct evm_spawn_opts o = {.argv = HARGV("status"), .flags = EVM_SPAWN_NOWAIT, .pdeath_signal = SIGKILL};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	struct evm_proc *p;
	CHECK(evm_spawn(loop, &o, &p) == 0);
	close(pp[1]);
	signal(SIGPIPE, SIG_DFL); /* meanwhile: not what the child was cloned with */
	char buf[1024] = "";
	size_t n = 0;
	ssize_t k;
	while (n < sizeof(buf) - 1 && (k = read(pp[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)k;
	buf[n] = 0;
	close(pp[0]);
	CHILD_RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	CHECK(strstr(buf, "SigIgn:\t0000000000000000\n") != NULL);
	CHECK(strstr(buf, "SigBlk:\t0000000000000000\n") != NULL);
	evm_proc_unref(p);
	evm_loop_free(loop);
}

static void test_signals_start_default(void **state)
{
	(void)state;
	t_forked(signals_default, NULL);
}

/*
 * A storm: 3,000 children, 64 at a time, each replaced from its exit
 * callback as it ends; every exit code comes back, the slots are reused (no
 * more than SLOTS of them) and all read back once the last exit is in.
 */
struct storm {
	struct evm_loop *loop;
	int started, done, bad, total;
};

static void storm_spawn(struct storm *s);

struct storm_child {
	struct storm *s;
	int want;
};

static void storm_exit_checked(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	struct storm_child *c = data;
	struct storm *s = c->s;
	s->bad += e->code != c->want || evm_proc_spawn_error(p, NULL) != 0;
	free(c);
	s->done++;
	if (s->started < s->total)
		storm_spawn(s);
}

static void storm_spawn(struct storm *s)
{
	struct storm_child *c = malloc(sizeof(*c));
	c->s = s;
	c->want = s->started % 100;
	char code[8];
	snprintf(code, sizeof(code), "%d", c->want);
	struct evm_spawn_opts o = {.argv = HARGV("exit", code), .flags = EVM_SPAWN_NOWAIT,
				   .pdeath_signal = SIGKILL, .on_exit = storm_exit_checked, .data = c};
	if (evm_spawn(s->loop, &o, NULL) < 0) {
		free(c);
		s->bad++;
		s->done++;
	}
	s->started++;
}

static void storm(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct storm s = {.loop = loop, .total = t_scale() ? 10000 : 3000};
	for (int i = 0; i < 64; i++)
		storm_spawn(&s);
	RUN_UNTIL(loop, s.done == s.total, 120000);
	assert_int_equal(s.bad, 0);
	assert_int_equal(s.started, s.total);
	if (nowait_here(loop)) {
		assert_true(loop->nnowait > 0 && loop->nnowait <= 32);
		assert_true(evm__nowait_idle(loop));
	}
}

static void test_storm(void **state)
{
	storm(state);
}

static int reaper_setup(void **state)
{
	return t_setup_flags(state, EVM_LOOP_REAPER);
}

/* in reaper mode, with few children, without pidfds (SIGCHLD names them) */
static void test_storm_reaper(void **state)
{
	storm(state);
}

/* the spawn helper waits for the exec: the failure is the call's */
static void test_helper_waits(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	loop->spawn_mode = EVM__SPAWN_HELPER;
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = (char *[]){"/nonexistent/evmon-nowait", NULL},
				   .flags = EVM_SPAWN_NOWAIT, .error = &err};
	assert_int_equal(evm_spawn(loop, &o, NULL), -ENOENT);
	assert_int_equal(err.stage, EVM_STAGE_EXEC);
}

/* evm_run and evm_spawn_wait return such a failure as their own */
static void *spawn_wait_thread(void *arg)
{
	struct evm_loop *loop = arg;
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = (char *[]){"/nonexistent/evmon-nowait", NULL},
				   .flags = EVM_SPAWN_NOWAIT, .error = &err, .pdeath_signal = SIGKILL};
	struct evm_exit e;
	int r = evm_spawn_wait(loop, &o, &e);
	return (void *)(intptr_t)(r == -ENOENT && err.stage == EVM_STAGE_EXEC);
}

static void test_run_and_spawn_wait(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = (char *[]){"/nonexistent/evmon-nowait", NULL},
				   .flags = EVM_SPAWN_NOWAIT, .error = &err};
	struct evm_run_result res;
	assert_int_equal(evm_run(&o, &res), -ENOENT);
	assert_int_equal(err.stage, EVM_STAGE_EXEC);
	pthread_t t;
	void *ok = NULL;
	/* evm_spawn_wait from another thread, this one running the loop */
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(pthread_create(&t, NULL, spawn_wait_thread, loop), 0);
	uint64_t dl = t_now_ms() + T_MS(10000);
	while (pthread_tryjoin_np(t, &ok) != 0) {
		assert_true(t_now_ms() < dl);
		evm_loop_run_once(loop, 20);
	}
	assert_true(ok != NULL);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exit_reported, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_failures_come_with_the_exit, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_caller_may_free_everything_at_once, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_capture, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_listen_pid, t_setup, t_teardown),
		cmocka_unit_test(test_signals_start_default),
		cmocka_unit_test_setup_teardown(test_storm, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_storm_reaper, reaper_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_helper_waits, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_run_and_spawn_wait, t_setup, t_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
