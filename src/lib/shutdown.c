/*
 * shutdown.c - evm_shutdown: the end of a loop's life as a supervisor. Every
 * service is stopped through its state table (a stop event; no policy
 * restarts anything meanwhile, see supervise.c), optionally one at a time in
 * reverse order of creation; plain processes get SIGTERM, then SIGKILL after
 * SHUTDOWN_PROC_TIMEOUT_MS. It runs the loop itself, so only at top level.
 */
#include "service.h"

#include <errno.h>
#include <signal.h>

#define SHUTDOWN_PROC_TIMEOUT_MS 10000

static bool svc_busy(const struct evm_service *s)
{
	return s->state == EVM_STATE_STARTING || s->state == EVM_STATE_RUNNING ||
	       s->state == EVM_STATE_RELOADING || s->state == EVM_STATE_STOPPING;
}

static void shutdown_kill_procs(struct evm_timer *t, void *data)
{
	struct evm_loop *loop = t->loop;
	for (struct evm_proc *p = loop->live; p; p = p->next)
		if (!p->owner_cb)
			evm_proc_signal(p, SIGKILL);
}

/*
 * (Re)issue the stops: a policy must not restart anything meanwhile. True if
 * a service is still to be waited for. A callback may remove any service:
 * the removed ones stay allocated, with their links, until the leave.
 */
static bool shutdown_pass(struct evm_loop *loop, bool reverse)
{
	bool waiting = false;
	evm__dispatch_enter(loop);
	for (struct evm_service *s = reverse ? loop->svcs.last : loop->svcs.first, *next; s; s = next) {
		next = reverse ? s->prev : s->next;
		if (s->dead)
			continue;
		if (s->state == EVM_STATE_BACKOFF || (svc_busy(s) && s->state != EVM_STATE_STOPPING))
			evm__sv_dispatch(s, EVM__SV_STOP, NULL);
		if (!s->dead && svc_busy(s)) {
			waiting = true;
			if (reverse)
				break; /* one at a time, last created first */
		}
	}
	evm__dispatch_leave(loop);
	return waiting;
}

/*
 * Plain processes (not a service's): SIGTERM once, SIGKILL when the timer
 * fires; also those a callback spawns while the shutdown runs. True if any
 * is left.
 */
static bool term_plain(struct evm_loop *loop, struct evm_timer **kt)
{
	bool left = false;
	for (struct evm_proc *p = loop->live; p; p = p->next) {
		if (p->owner_cb)
			continue;
		left = true;
		if (!(p->flags & EVM__P_TERMED)) {
			p->flags |= EVM__P_TERMED;
			evm_proc_signal(p, SIGTERM);
		}
	}
	if (left && !*kt)
		evm_timer_add(loop, SHUTDOWN_PROC_TIMEOUT_MS, shutdown_kill_procs, NULL, kt);
	return left;
}

int evm_shutdown(struct evm_loop *loop, unsigned flags)
{
	if (!loop || (flags & ~(unsigned)EVM_SHUTDOWN_REVERSE))
		return -EINVAL;
	if (evm__forked(loop))
		return -ECHILD; /* the parent's children, through shared pidfds */
	if (loop->dispatching)
		return -EDEADLK; /* it runs the loop: top level only */
	struct evm_timer *kt = NULL;
	term_plain(loop, &kt);
	loop->shutting_down = true;
	int r = 0;
	for (;;) {
		bool waiting = shutdown_pass(loop, flags & EVM_SHUTDOWN_REVERSE);
		bool plain_left = term_plain(loop, &kt);
		if (!waiting && !plain_left)
			break;
		r = evm_loop_run_once(loop, -1);
		if (r < 0)
			break;
		r = 0;
	}
	evm_timer_cancel(kt);
	loop->shutting_down = false;
	return r;
}
