/*
 * timeout.c - a deadline per process (Go's exec.CommandContext): each
 * command gets 200 ms, then SIGTERM, then SIGKILL 100 ms later if it
 * ignores that; the exit record says whether the deadline ended it.
 *
 *   ./timeout         prints one line per command:
 *                     "true: exit 0", "sleep 10: timed out (signal 15)",
 *                     "stubborn: timed out (signal 9)"
 */
#include <evmon.h>
#include <stdio.h>

static void on_exit_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)p;
	if (e->timed_out)
		printf("%s: timed out (signal %d)\n", (char *)data, e->signal);
	else
		printf("%s: exit %d\n", (char *)data, evm_exit_shell_code(e));
}

int main(void)
{
	struct evm_loop *loop;
	if (evm_loop_new(&loop, NULL) < 0)
		return 1;
	char *cmds[][4] = {{"true", NULL},
			   {"sleep", "10", NULL},
			   {"sh", "-c", "trap '' TERM; sleep 10", NULL}};
	char *names[] = {"true", "sleep 10", "stubborn"};
	for (int i = 0; i < 3; i++) {
		struct evm_spawn_opts o = {.argv = cmds[i], .on_exit = on_exit_cb, .data = names[i],
					   .timeout_ms = 200, .timeout_kill_ms = 100,
					   .flags = EVM_SPAWN_SETSID}; /* the deadline hits the group */
		if (evm_spawn(loop, &o, NULL) < 0)
			return 1;
		while (evm_loop_alive(loop)) /* one at a time: the lines come in order */
			evm_loop_run_once(loop, -1);
	}
	evm_loop_free(loop);
	return 0;
}
