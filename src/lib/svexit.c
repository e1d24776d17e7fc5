/*
 * svexit.c - what a service's exit decides, the cells of the exit and of
 * "cgroup empty" in supervise.c's table: whether the restart policy starts
 * it again (policy_again; an exit is a success by its success codes, never
 * when we stopped it as failing: watchdog, ready timeout, trigger), after
 * the backoff, or FATAL past max_retries; EXITED when it does not; STOPPED
 * (or removed, or started again if asked) when a stop ends; and a new
 * policy's word on a restart waiting in BACKOFF (the cell of "policy").
 *
 * Invariants: an exit while evm_shutdown runs ends in STOPPED, whatever the
 * policy. A restart, like a stop, waits for the service's cgroup to be empty
 * (the exit is held: s->exit_held, s->last_exit) and "cgroup empty" then
 * runs the exit's cell; nothing here spawns (svstart.c does, through the
 * backoff or a START event). Every state change goes through evm__sv_enter
 * or, for a removed service, evm__sv_unlink (supervise.c).
 */
#include "service.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static bool success_code(const struct evm_service *s, int code)
{
	return code >= 0 && code < 256 && (s->success[code / 32] >> (code % 32) & 1u);
}

/* does the policy restart after this exit? */
static bool policy_again(const struct evm_service *s, bool ok)
{
	switch (s->restart) {
	case EVM_RESTART_ALWAYS:
	case EVM_RESTART_UNLESS_STOPPED:
		return true;
	case EVM_RESTART_NEVER:
		return false;
	case EVM_RESTART_ON_FAILURE:
	default:
		return !ok;
	}
}

static bool exit_ok(const struct evm_service *s, const struct evm_exit *e)
{
	return !e->status_unknown && e->signal == 0 && success_code(s, e->code);
}

/*
 * A restart waits for the cgroup to be empty, as a stop does: what the run
 * left (a watchdog's or ready timeout's stop under way, children of a main
 * process that exited) would otherwise run beside the next one. The rest
 * is stopped (a stop under way keeps its deadline; else stop_signal, and
 * SIGKILL at stop_timeout) and the exit waits for "cgroup empty". last:
 * the policy gives up then (FATAL) instead of restarting: said so.
 */
static bool held_for_empty(struct evm_service *s, bool again, bool last)
{
	if (!again || !evm__sv_cg_busy(s))
		return false;
	if (s->failing)
		evm__sv_arm_kill(s);
	else
		evm__sv_send_stop(s, false);
	s->exit_held = true;
	/* said: the state stays, with no process, until the cgroup is empty */
	const struct evm_exit *e = &s->last_exit;
	size_t n = strlen(s->msg);
	char how[48];
	if (e->signal)
		snprintf(how, sizeof(how), "killed by signal %d", e->signal);
	else
		snprintf(how, sizeof(how), "code %d", e->code);
	snprintf(s->msg + n, sizeof(s->msg) - n,
		 "%smain process %d exited (%s): what it left in its cgroup is stopped before %s",
		 n ? "; " : "", (int)e->pid, how, last ? "it is given up on" : "the restart");
	evm__sv_tell(s);
	return true;
}

void evm__sv_failing_text(const struct evm_service *s, char *buf, size_t len)
{
	if (s->failing == FAILING_NOT_READY)
		snprintf(buf, len, "not ready within ready_timeout (%llu ms)",
			 (unsigned long long)s->ready_timeout_ms);
	else if (s->failing == FAILING_WATCHDOG)
		snprintf(buf, len, "watchdog: no sign of life for %llu ms",
			 (unsigned long long)s->watchdog_run_ms);
	else if (s->failing == FAILING_TRIGGERED)
		snprintf(buf, len, "watchdog: the service said it failed");
	else if (s->failing == FAILING_ADOPTED)
		snprintf(buf, len, "stopped for a failure before it was taken over");
	else if (s->failing == FAILING_TOLD)
		snprintf(buf, len, "%s", s->fail_why);
}

/* why we stopped it (s->failing), for its exit's event */
static void failing_msg(struct evm_service *s)
{
	evm__sv_failing_text(s, s->msg, sizeof(s->msg));
}

/*
 * A detached service (evm_service_detach) is not restarted: its exit is its
 * end, as a removal's stop would have been. What its cgroup still holds is
 * stopped as a stop's rest is (stop_signal, SIGKILL at stop_timeout) and the
 * service is STOPPING until the cgroup empties.
 */
static int exit_detached(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (evm__sv_cg_busy(s)) {
		if (s->failing) /* its stop's deadline stands */
			evm__sv_arm_kill(s);
		else
			evm__sv_send_stop(s, false);
		s->exit_held = a->exit != NULL;
		evm__sv_enter(s, EVM_STATE_STOPPING, NULL, 0, 0);
		return 0;
	}
	evm_timer_cancel(s->timer);
	s->exit_held = false;
	evm__sv_unlink(s, a->exit);
	return 0;
}

int evm__sv_act_exit_starting(struct evm_service *s, const struct evm__sv_arg *a)
{
	const struct evm_exit *e = a->exit;
	if (s->removing)
		return exit_detached(s, a);
	if (s->loop->shutting_down) {
		evm__sv_enter(s, EVM_STATE_STOPPED, e, 0, 0);
		return 0;
	}
	/*
	 * Up for its start period, and only the loop was late to see the
	 * period's timer (stalled, or the exit and the timer in one turn): a run
	 * that ended, not a failed start ("exited during its start period" of
	 * 1500 ms with start_ms 1000 said both). The exit's time is when the
	 * loop saw it, as supervisord's startsecs judges it. Not one stopped
	 * for a failure while STARTING (evm_service_fail): a failed start.
	 */
	if (s->ready != EVM_READY_DECLARED && s->start_ms && !s->failing &&
	    e->runtime_ns / 1000000 >= s->start_ms) {
		s->start_failures = 0; /* as on reaching RUNNING: not failed starts in a row */
		return evm__sv_act_exit_running(s, a);
	}
	bool ok = exit_ok(s, e) && !s->failing, again = policy_again(s, ok);
	/* evm__sv_failed_start's verdict, once the cgroup is empty */
	bool last = s->start_failures + 1 > s->start_retries;
	if (evm__sv_tree_hold(s, ok) || held_for_empty(s, again, last))
		return 0;
	if (s->failing)
		failing_msg(s);
	else if (again || !ok)
		snprintf(s->msg, sizeof(s->msg), "exited %s (%llu ms)",
			 s->ready == EVM_READY_DECLARED ? "before it was ready" : "during its start period",
			 (unsigned long long)(e->runtime_ns / 1000000));
	if (again)
		evm__sv_failed_start(s, e, 0);
	else
		evm__sv_enter(s, EVM_STATE_EXITED, e, 0, 0);
	return 0;
}

int evm__sv_act_exit_running(struct evm_service *s, const struct evm__sv_arg *a)
{
	const struct evm_exit *e = a->exit;
	if (s->removing)
		return exit_detached(s, a);
	if (s->loop->shutting_down) {
		evm__sv_enter(s, EVM_STATE_STOPPED, e, 0, 0);
		return 0;
	}
	bool ok = exit_ok(s, e) && !s->failing;
	bool last = !ok && s->max_retries && s->failures + 1 > s->max_retries; /* as below */
	if (evm__sv_tree_hold(s, ok) || held_for_empty(s, policy_again(s, ok), last))
		return 0;
	if (s->failing)
		failing_msg(s);
	if (!policy_again(s, ok)) {
		evm__sv_enter(s, EVM_STATE_EXITED, e, 0, 0);
		return 0;
	}
	if (ok)
		s->failures = 0; /* "in a row" */
	else
		s->failures++;
	if (!ok && s->max_retries && s->failures > s->max_retries) {
		snprintf(s->msg, sizeof(s->msg), "gave up after %u failures in a row", s->failures);
		evm__sv_enter(s, EVM_STATE_FATAL, e, 0, 0);
		return 0;
	}
	evm__sv_schedule_restart(s, e, 0);
	return 0;
}

/*
 * BACKOFF, a loop turn after evm_service_set_policy: a restart the old
 * policy scheduled after an exit that the new one would not do (restart
 * never, or on-failure after what its success codes now call a success) is
 * cancelled: EXITED, as the exit would have left it under the new policy.
 * Judged again from the last exit, with the codes in force now; a backoff
 * after a failed spawn (no exit) or resumed (evm__sv_backoff_for: why is not
 * known) keeps its restart; evm_shutdown stops it anyway (STOPPED).
 */
int evm__sv_act_policy_backoff(struct evm_service *s, const struct evm__sv_arg *a)
{
	(void)a;
	if (!s->backoff_exit || !s->has_exit || s->loop->shutting_down)
		return 0;
	/* s->failing holds until the next spawn: a watchdog's or ready timeout's exit fails */
	bool ok = exit_ok(s, &s->last_exit) && !s->failing;
	if (policy_again(s, ok)) {
		/* a lower max_retries: the failures so far are past it (as the exit would judge) */
		if (ok || !s->max_retries || s->failures <= s->max_retries)
			return 0;
		evm_timer_cancel(s->timer);
		snprintf(s->msg, sizeof(s->msg), "gave up after %u failures in a row (max_retries "
			 "is now %u)", s->failures, s->max_retries);
		evm__sv_enter(s, EVM_STATE_FATAL, NULL, 0, 0);
		return 0;
	}
	evm_timer_cancel(s->timer); /* the backoff's */
	snprintf(s->msg, sizeof(s->msg), "restart cancelled: the new policy (restart = %s) "
		 "does not restart after that exit", s->restart == EVM_RESTART_NEVER ? "never" : "on-failure");
	evm__sv_enter(s, EVM_STATE_EXITED, NULL, 0, 0);
	return 0;
}

/* A restart's turn to spawn (evm__sv_act_exit_stopping). */
static void restart_turn(struct evm_timer *t, void *data)
{
	struct evm_service *s = data;
	(void)t;
	if (!s->start_after_stop || s->state != EVM_STATE_STOPPED)
		return;
	s->start_after_stop = false;
	if (!s->loop->shutting_down)
		evm__sv_dispatch(s, EVM__SV_START, NULL);
}

int evm__sv_act_exit_stopping(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (evm__sv_cg_busy(s)) {
		/* stopped once the cgroup is empty; the kill still comes at stop_timeout */
		s->exit_held = a->exit != NULL;
		if (s->stop_timeout_ms && s->stop_signal != SIGKILL)
			evm__sv_arm_kill(s);
		return 0;
	}
	evm_timer_cancel(s->timer);
	s->exit_held = false;
	if (s->removing) {
		evm__sv_unlink(s, a->exit);
		return 0;
	}
	evm__sv_enter(s, EVM_STATE_STOPPED, a->exit, 0, 0);
	if (!s->start_after_stop)
		return 0;
	/*
	 * A restart's start goes with the loop's other spawns, EVM__SPAWN_TURN an
	 * iteration (timer.c): 3,000 services restarted together were 3,000
	 * spawns in the iteration of their exits (2 s of a loop that served
	 * nothing). It waits in s->timer, unused while STOPPED; a start, stop,
	 * adoption or removal meanwhile cancels it.
	 */
	if (s->state == EVM_STATE_STOPPED && !s->loop->shutting_down &&
	    evm__timer_add_spawn(s->loop, 0, restart_turn, s, &s->timer) == 0)
		return 0;
	s->start_after_stop = false; /* started meanwhile, shutting down, or no timer: as before */
	if (!s->loop->shutting_down)
		evm__sv_dispatch(s, EVM__SV_START, NULL); /* a restart asked before the shutdown */
	return 0;
}

/*
 * A held exit is decided now: an OOM kill in its cgroup since the main's
 * exit (of a process its tree kept running) is its reason too.
 */
void evm__sv_held_oom(struct evm_service *s)
{
	uint64_t kills;
	if (s->oom_known && !s->last_exit.oom_killed && evm__cg_oom_kills(s->cg, &kills) == 0 &&
	    kills > s->oom_base)
		s->last_exit.oom_killed = true;
}

/* The last process of its cgroup is gone: the stop is over once the main one is reaped. */
int evm__sv_act_emptied(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->proc)
		return 0; /* its exit, still to come, ends the stop */
	if (s->exit_held)
		evm__sv_held_oom(s);
	struct evm__sv_arg held = {.exit = s->exit_held ? &s->last_exit : NULL};
	return evm__sv_act_exit_stopping(s, &held);
}

/* STARTING, RUNNING: the cgroup an exit waited for is empty: the exit's cell now */
int evm__sv_act_emptied_held(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->proc || !s->exit_held)
		return 0;
	evm_timer_cancel(s->timer);
	s->exit_held = false;
	evm__sv_held_oom(s);
	struct evm__sv_arg held = {.exit = &s->last_exit};
	return s->state == EVM_STATE_STARTING ? evm__sv_act_exit_starting(s, &held)
					      : evm__sv_act_exit_running(s, &held); /* RUNNING, RELOADING */
}
