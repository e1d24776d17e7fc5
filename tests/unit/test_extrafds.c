/*
 * test_extrafds.c - evm_spawn_opts.extra_fds (Go's ExtraFiles): our fds at
 * chosen numbers in the child and no other fd above 2, sources sitting on
 * each other's targets, the error pipe of the clone() fallback out of the
 * way, the argument checks, and a service's runs.
 */
#include "evmtest.h"

static int pipe_hi(int p[2], int at)
{
	int q[2];
	if (pipe2(q, O_CLOEXEC) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		p[i] = fcntl(q[i], F_DUPFD_CLOEXEC, at + i);
		close(q[i]);
	}
	return 0;
}

/* The child sees exactly 0-2 and the targets. */
static void test_extra_fds_listed(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int a[2], b[2];
	assert_int_equal(pipe_hi(a, 40), 0);
	assert_int_equal(pipe_hi(b, 50), 0);
	struct evm_fd_map m[] = {{a[1], 3}, {b[1], 9}};
	struct evm_spawn_opts o = {.extra_fds = m, .nextra_fds = 2};
	char buf[512];
	struct evm_exit e;
	t_output(loop, HARGV("fds"), &o, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_string_equal(buf, "fd 0\nfd 1\nfd 2\nfd 3\nfd 9\n");
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
}

/* Writes to the targets reach our pipes; a's source sits on b's target and back. */
static void test_extra_fds_swap(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int a[2], b[2];
	assert_int_equal(pipe_hi(a, 60), 0);
	assert_int_equal(pipe_hi(b, 70), 0);
	/* a's write end becomes b's write end's number in the child, and b's becomes a's */
	struct evm_fd_map m[] = {{a[1], b[1]}, {b[1], a[1]}};
	char na[16], nb[16];
	snprintf(na, sizeof(na), "%d", a[1]);
	snprintf(nb, sizeof(nb), "%d", b[1]);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .extra_fds = m,
				   .nextra_fds = 2};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("fdprint", nb, "to-a", "fdprint", na, "to-b"), &o);
	close(a[1]);
	close(b[1]);
	char buf[64];
	t_read_all(a[0], buf, sizeof(buf), 10000);
	assert_string_equal(buf, "to-a\n");
	t_read_all(b[0], buf, sizeof(buf), 10000);
	assert_string_equal(buf, "to-b\n");
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 0);
	close(a[0]);
	close(b[0]);
	evm_proc_unref(p);
}

/*
 * A source among 0-2 is ours, not what the child's stdio put there: our stdin
 * (a pipe here) as the child's fd 3 while its own stdin is /dev/null. The
 * stdio went first and fd 3 got /dev/null.
 */
static void test_extra_fds_source_is_our_stdio(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int p[2], saved = fcntl(0, F_DUPFD_CLOEXEC, 10);
	assert_true(saved >= 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(dup2(p[0], 0), 0);
	struct stat want;
	assert_int_equal(fstat(0, &want), 0);
	struct evm_fd_map m[] = {{0, 3}};
	struct evm_spawn_opts o = {.extra_fds = m, .nextra_fds = 1};
	o.stdio[0].mode = EVM_STDIO_NULL;
	char buf[256], exp[256];
	struct evm_exit e;
	t_output(loop, (char *[]){"/bin/sh", "-c", "readlink /proc/self/fd/3 /proc/self/fd/0", NULL},
		 &o, buf, sizeof(buf), &e);
	dup2(saved, 0);
	close(saved);
	close(p[0]);
	close(p[1]);
	assert_int_equal(e.code, 0);
	snprintf(exp, sizeof(exp), "pipe:[%lu]\n/dev/null\n", (unsigned long)want.st_ino);
	assert_string_equal(buf, exp);
}

/* An exec failure still comes back with its stage when a target is a low fd. */
static void test_extra_fds_exec_error(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int a[2];
	assert_int_equal(pipe_hi(a, 3), 0);
	struct evm_fd_map m[] = {{a[1], 3}, {a[1], 4}, {a[1], 5}, {a[1], 6}};
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = (char *[]){"/nonexistent/x", NULL}, .extra_fds = m,
				   .nextra_fds = 4, .error = &err};
	assert_int_equal(evm_spawn(loop, &o, NULL), -ENOENT);
	assert_int_equal(err.stage, EVM_STAGE_EXEC);
	close(a[0]);
	close(a[1]);
}

static void test_extra_fds_args(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int a[2];
	assert_int_equal(pipe2(a, O_CLOEXEC), 0);
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0")};
	struct evm_fd_map low[] = {{a[1], 2}}, dup[] = {{a[1], 5}, {a[0], 5}}, bad[] = {{1000, 5}};
	o.nextra_fds = 1;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL); /* no array */
	o.extra_fds = low;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	o.extra_fds = dup;
	o.nextra_fds = 2;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	o.extra_fds = bad;
	o.nextra_fds = 1;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EBADF);
	close(a[0]);
	close(a[1]);
}

/*
 * Start svc twice, each run to its exit (a clean one), then remove it: the
 * pipe a (its write end the service's extra fd) holds "run" from each.
 */
static void run_twice(struct evm_loop *loop, struct evm_service *svc, int a[2])
{
	for (int run = 0; run < 2; run++) {
		assert_int_equal(evm_service_start(svc), 0);
		struct evm_service_info info;
		RUN_UNTIL(loop, (evm_service_info(svc, &info), info.state == EVM_STATE_EXITED), 10000);
		assert_int_equal(info.last_error.stage, EVM_STAGE_NONE);
	}
	evm_service_remove(svc);
	RUN_UNTIL(loop, evm_loop_alive(loop) == 0, 10000);
	close(a[1]);
	char buf[64];
	t_read_all(a[0], buf, sizeof(buf), 10000);
	assert_string_equal(buf, "run\nrun\n");
	close(a[0]);
}

/* A service borrows the map at each start. */
static void test_extra_fds_service(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int a[2];
	assert_int_equal(pipe_hi(a, 80), 0);
	struct evm_fd_map m[] = {{a[1], 3}};
	struct evm_service_opts so = {.name = "x", .restart = EVM_RESTART_NEVER};
	so.spawn.argv = (char *[]){"/bin/sh", "-c", "echo run >&3", NULL};
	so.spawn.pdeath_signal = SIGKILL;
	so.spawn.extra_fds = m;
	so.spawn.nextra_fds = 1;
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	run_twice(loop, svc, a);
}

/*
 * A service deep-copies what its spawn options point to: the caller's
 * arrays and strings, scribbled over and freed right after evm_service_new,
 * are not read again by its starts and restarts (only the fds are borrowed).
 */
static void test_extra_fds_service_copies(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int a[2];
	assert_int_equal(pipe_hi(a, 90), 0);
	struct evm_fd_map *m = calloc(1, sizeof(*m));
	struct evm_rlimit *rl = calloc(1, sizeof(*rl));
	char **argv = calloc(4, sizeof(*argv)), **extra = calloc(2, sizeof(*extra));
	assert_true(m && rl && argv && extra);
	*m = (struct evm_fd_map){a[1], 4};
	*rl = (struct evm_rlimit){RLIMIT_CORE, {0, 0}};
	argv[0] = strdup("/bin/sh");
	argv[1] = strdup("-c");
	argv[2] = strdup("echo \"$WORD\" >&4");
	extra[0] = strdup("WORD=run");
	struct evm_service_opts so = {.name = "x", .restart = EVM_RESTART_NEVER};
	so.spawn.argv = argv;
	so.spawn.env_extra = extra;
	so.spawn.pdeath_signal = SIGKILL;
	so.spawn.extra_fds = m;
	so.spawn.nextra_fds = 1;
	so.spawn.rlimits = rl;
	so.spawn.nrlimits = 1;
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	for (int i = 0; i < 3; i++) {
		memset(argv[i], 'z', strlen(argv[i]));
		free(argv[i]);
	}
	memset(extra[0], 'z', strlen(extra[0]));
	free(extra[0]);
	*m = (struct evm_fd_map){-1, 2};
	*rl = (struct evm_rlimit){-1, {0, 0}};
	free(argv);
	free(extra);
	free(m);
	free(rl);
	run_twice(loop, svc, a);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_extra_fds_listed, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_extra_fds_swap, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_extra_fds_source_is_our_stdio, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_extra_fds_exec_error, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_extra_fds_args, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_extra_fds_service, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_extra_fds_service_copies, t_setup, t_teardown),
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("extrafds", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed;
}
