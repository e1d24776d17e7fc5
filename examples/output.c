/*
 * output.c - run a command and take its output, like Go's
 * exec.Command(...).Output(): evm_run spawns it on a private loop with
 * stdout and stderr captured (EVM_STDIO_CAPTURE), waits, and hands back the
 * exit record with both outputs. The same options as evm_spawn: an added
 * environment variable, a working directory, a deadline.
 *
 *   ./output          prints:
 *                     "stdout: hello from /"
 *                     "stderr: oops"
 *                     "exit 3"
 *                     "sleep 10: timed out by signal 15"
 *                     "no-such-program: exec: No such file or directory"
 */
#include <errno.h>
#include <evmon.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	char *argv[] = {"sh", "-c", "echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 3", NULL};
	char *env[] = {"GREETING=hello", NULL};
	struct evm_spawn_opts o = {.argv = argv, .env_extra = env, .cwd = "/", .timeout_ms = 5000};
	struct evm_run_result res;
	int r = evm_run(&o, &res);
	if (r < 0) {
		fprintf(stderr, "sh: %s\n", strerror(-r));
		return 1;
	}
	printf("stdout: %s", res.out); /* NUL-terminated; res.out_len bytes */
	printf("stderr: %s", res.err);
	printf("exit %d\n", evm_exit_shell_code(&res.exit)); /* code, or 128+signal */
	evm_run_result_free(&res);

	/* a deadline (Go's exec.CommandContext): SIGTERM when it passes */
	char *slow[] = {"sleep", "10", NULL};
	o = (struct evm_spawn_opts){.argv = slow, .timeout_ms = 100};
	if (evm_run(&o, &res) < 0)
		return 1;
	if (res.exit.timed_out)
		printf("sleep 10: timed out by signal %d\n", res.exit.signal);
	evm_run_result_free(&res);

	/* a program that cannot start fails the call, with its stage: no exit 127 */
	struct evm_spawn_error err;
	char *missing[] = {"no-such-program", NULL};
	o = (struct evm_spawn_opts){.argv = missing, .error = &err};
	r = evm_run(&o, &res);
	printf("no-such-program: %s: %s\n", evm_spawn_stage_name(err.stage), strerror(-r));
	return r == -ENOENT ? 0 : 1;
}
