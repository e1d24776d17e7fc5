/*
 * test_capture.c - EVM_STDIO_CAPTURE and evm_run: stdout and stderr
 * collected through the loop and read with the exit, the capture_max bound,
 * a big output that would block a child on a full pipe, and evm_run's exit,
 * output and spawn errors; EVM_STDIO_STDOUT (2>&1): both streams in one
 * capture in the order written, or on the caller's fd.
 */
#include "evmtest.h"

static void test_capture_both(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x};
	o.stdio[1].mode = EVM_STDIO_CAPTURE;
	o.stdio[2].mode = EVM_STDIO_CAPTURE;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("print", "out", "eprint", "err", "exit", "4"), &o);
	size_t len;
	bool trunc = true;
	assert_null(evm_proc_output(p, 1, &len, NULL)); /* not before the exit */
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 4);
	const char *s = evm_proc_output(p, 1, &len, &trunc);
	assert_int_equal(len, 4);
	assert_memory_equal(s, "out\n", 4);
	assert_false(trunc);
	s = evm_proc_output(p, 2, &len, NULL);
	assert_int_equal(len, 4);
	assert_memory_equal(s, "err\n", 4);
	assert_null(evm_proc_output(p, 0, &len, NULL));
	evm_proc_unref(p);
}

/* 1 MB through a 64 kB pipe: the loop reads as it comes; capture_max keeps 1000 bytes. */
static void test_capture_bounded(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .capture_max = 1000};
	o.stdio[1].mode = EVM_STDIO_CAPTURE;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("bytes", "1000000"), &o);
	RUN_UNTIL(loop, x.n == 1, 30000);
	assert_int_equal(x.rec.code, 0);
	size_t len;
	bool trunc = false;
	const char *s = evm_proc_output(p, 1, &len, &trunc);
	assert_int_equal(len, 1000);
	assert_true(trunc);
	assert_int_equal(s[0], 'x');
	assert_int_equal(s[999], 'x');
	evm_proc_unref(p);
}

/* stderr where stdout goes: one capture (slot 1) in the order written, none in slot 2. */
static void test_capture_merged(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .capture_max = 12};
	o.stdio[1].mode = EVM_STDIO_CAPTURE;
	o.stdio[2].mode = EVM_STDIO_STDOUT;
	struct evm_proc *p = t_spawn_opts(
		loop, HARGV("fdprint", "1", "out", "fdprint", "2", "err", "fdprint", "1", "out2", "fdprint",
			    "2", "cut"), &o);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 0);
	size_t len;
	bool trunc = false;
	const char *s = evm_proc_output(p, 1, &len, &trunc);
	assert_int_equal(len, 12); /* capture_max bounds the two together */
	assert_memory_equal(s, "out\nerr\nout2", 12);
	assert_true(trunc);
	assert_null(evm_proc_output(p, 2, &len, NULL));
	evm_proc_unref(p);
}

/* stderr where stdout goes when that is the caller's fd; refused for slots 0 and 1. */
static void test_stdout_mode_on_fd(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
	o.stdio[2].mode = EVM_STDIO_STDOUT;
	evm_proc_unref(t_spawn_opts(loop, HARGV("fdprint", "2", "e", "fdprint", "1", "o"), &o));
	close(pp[1]);
	RUN_UNTIL(loop, x.n == 1, 10000);
	char buf[16];
	assert_int_equal(read(pp[0], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "e\no\n", 4);
	close(pp[0]);
	struct evm_spawn_opts bad = {.argv = HARGV("exit", "0")};
	for (int i = 0; i < 2; i++) {
		bad.stdio[i].mode = EVM_STDIO_STDOUT;
		assert_int_equal(evm_spawn(loop, &bad, NULL), -EINVAL);
		bad.stdio[i].mode = EVM_STDIO_INHERIT;
	}
}

static void test_capture_stdin_refused(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0")};
	o.stdio[0].mode = EVM_STDIO_CAPTURE;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
}

static void test_run(void **state)
{
	(void)state;
	struct evm_run_result r;
	struct evm_spawn_opts o = {.argv = HARGV("print", "hello", "eprint", "oops", "exit", "2"),
				   .pdeath_signal = SIGKILL};
	assert_int_equal(evm_run(&o, &r), 0);
	assert_int_equal(r.exit.code, 2);
	assert_string_equal(r.out, "hello\n");
	assert_int_equal(r.out_len, 6);
	assert_string_equal(r.err, "oops\n");
	evm_run_result_free(&r);
	/* stdout elsewhere: not captured */
	o.stdio[1].mode = EVM_STDIO_NULL;
	assert_int_equal(evm_run(&o, &r), 0);
	assert_null(r.out);
	assert_string_equal(r.err, "oops\n");
	evm_run_result_free(&r);
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts bad = {.argv = (char *[]){"/nonexistent/x", NULL}, .error = &err};
	assert_int_equal(evm_run(&bad, &r), -ENOENT);
	assert_int_equal(err.stage, EVM_STAGE_EXEC);
	evm_run_result_free(&r);
	assert_int_equal(evm_run(NULL, &r), -EINVAL);
	/* a pipe's end would be nobody's: a child writing 100 KB into it hung evm_run */
	for (int i = 0; i < 3; i++) {
		struct evm_spawn_opts piped = {.argv = HARGV("exit", "0"), .pdeath_signal = SIGKILL};
		piped.stdio[i].mode = EVM_STDIO_PIPE;
		assert_int_equal(evm_run(&piped, &r), -EINVAL);
	}
	assert_int_equal(t_count_children(), 0);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_capture_both, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_capture_bounded, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_capture_merged, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_stdout_mode_on_fd, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_capture_stdin_refused, t_setup, t_teardown),
		cmocka_unit_test(test_run),
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("capture", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed;
}
