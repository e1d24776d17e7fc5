/*
 * seed.c - the libevmon seed scenario: one loop watches five children, and
 * in reaper mode also reaps an orphan that none of them waits for.
 *
 *   ./seed            run it (prints one line per event)
 *
 * Child 0 forks a grandchild and exits at once, so the grandchild becomes
 * an orphan re-parented to us (we are a child subreaper): the loop reports
 * it as "orphan reaped" when it dies.
 */
#include <evmon.h>
#include <stdio.h>

static int exited;

static void on_exit_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	printf("child %d (%s) exited: code %d signal %d, ran %.1f ms\n", (int)e->pid,
	       (const char *)data, e->code, e->signal, (double)e->runtime_ns / 1e6);
	exited++;
}

static void on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	int *orphans = data;
	if (ev->type == EVM_EV_ORPHAN) {
		printf("orphan %d reaped: code %d\n", (int)ev->pid, ev->exit->code);
		(*orphans)++;
	}
	if (exited == 5 && *orphans >= 1)
		evm_loop_stop(loop);
}

int main(void)
{
	struct evm_loop *loop;
	struct evm_loop_opts lo = {.flags = EVM_LOOP_REAPER};
	int orphans = 0;
	if (evm_loop_new(&loop, &lo) < 0)
		return 1;
	evm_subscribe(loop, EVM_EV_EXIT | EVM_EV_ORPHAN, on_event, &orphans, NULL);

	char *const cmds[5][4] = {
		{"sh", "-c", "sleep 0.2 & exit 0", NULL}, /* leaves an orphan behind */
		{"true", NULL},
		{"false", NULL},
		{"sleep", "0.1", NULL},
		{"sh", "-c", "kill -TERM $$", NULL},
	};
	for (int i = 0; i < 5; i++) {
		struct evm_spawn_opts o = {.argv = cmds[i], .on_exit = on_exit_cb, .data = cmds[i][0]};
		int r = evm_spawn(loop, &o, NULL);
		if (r < 0)
			fprintf(stderr, "spawn %s: error %d\n", cmds[i][0], r);
	}
	int r = evm_loop_run(loop);
	evm_loop_free(loop);
	return r < 0;
}
