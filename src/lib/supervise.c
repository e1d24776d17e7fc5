/*
 * supervise.c - a service's state machine: the state x event table, the
 * actions of its cells, and the one way a service changes state
 * (evm__sv_enter). The steps the actions take live beside it: svexit.c
 * decides what an exit means (the cells of "exit" and "cgroup empty": the
 * restart policy, max_retries, the hold for an empty cgroup), svstart.c runs
 * the process (spawn, readiness timers, its exit, the restart backoff),
 * svstop.c stops it (signals to the process, group or cgroup; SIGKILL at
 * stop_timeout) and svcalls.c holds the public calls, an event each. What a
 * service is (options, list, name index, accessors) lives in service.c;
 * evm_shutdown in shutdown.c.
 *
 * Every change of state is one cell of a state x event table (sv_table
 * below), and every event goes through one function, evm__sv_dispatch: the
 * public calls, the process's exit, the three timers and a failed spawn. A
 * cell's action does the work and enters one of the states the cell names
 * (a test counts any other transition); an action may raise an event of its
 * own (a start whose spawn fails raises "spawn failed"), dispatched as the
 * cell of the state the service is in then. Other events are ignored. An
 * exit while evm_shutdown runs ends in STOPPED, whatever the policy.
 *
 * The table as text (`make supervise-table` prints it from sv_table;
 * test_supervise fails when this block and the table disagree):
 *
 * TABLE-BEGIN
 * state     event              next                          what
 * STOPPED   start, restart  -> STARTING|RUNNING|STOPPING     spawn (RUNNING: started, start_ms 0); STOPPING first while its cgroup holds processes
 *           stop            -> (stays)                       noted: stopped by the user; a waiting restart dropped
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 *           adopt           -> STARTING|RUNNING|STOPPING     take over a running process (STARTING: one not ready yet; STOPPING: one being stopped)
 *           resume          -> BACKOFF|EXITED|FATAL|(stays)  counters and state of an earlier supervisor
 * STARTING  start           -> (stays)                       nothing: it runs
 *           stop            -> STOPPING                      stop_signal; SIGKILL at stop_timeout
 *           restart         -> STOPPING                      stop, then start after the exit
 *           remove          -> STOPPING                      stop, then removed after the exit
 *           detach          -> (stays)                       name released, runs on; its exit is its end
 *           exit            -> STOPPED|BACKOFF|STOPPING|EXITED|FATAL|(removed)|(stays) failed start, unless policy is done; a restart waits for an empty cgroup; detached: its end
 *           start_ms up     -> RUNNING                       ready (ready = started)
 *           stop_timeout    -> (stays)                       SIGKILL (not ready, stopped)
 *           ready           -> RUNNING                       ready
 *           ready_timeout   -> (stays)                       stop; its exit is a failed start
 *           cgroup empty    -> STOPPED|BACKOFF|STOPPING|EXITED|FATAL|(removed)|(stays) after a held exit: as the exit
 *           trigger         -> (stays)                       stop; its exit is a failed start
 * RUNNING   start           -> (stays)                       nothing: it runs
 *           stop            -> STOPPING                      stop_signal; SIGKILL at stop_timeout
 *           restart         -> STOPPING                      stop, then start after the exit
 *           remove          -> STOPPING                      stop, then removed after the exit
 *           detach          -> (stays)                       name released, runs on; its exit is its end
 *           exit            -> STOPPED|BACKOFF|STOPPING|EXITED|FATAL|(removed)|(stays) restart policy and max_retries; a restart waits for an empty cgroup; detached: its end
 *           stop_timeout    -> (stays)                       SIGKILL (watchdog, stopped)
 *           watchdog up     -> (stays)                       stop; its exit is a failure
 *           cgroup empty    -> STOPPED|BACKOFF|STOPPING|EXITED|FATAL|(removed)|(stays) after a held exit: as the exit
 *           trigger         -> (stays)                       stop; its exit is a failure
 *           reload          -> RELOADING                     its reload signal; wait for reloading, ready
 *           reloading       -> RELOADING                     the service reloads
 * BACKOFF   start, restart  -> STARTING|RUNNING|STOPPING     spawn (RUNNING: started, start_ms 0); STOPPING first while its cgroup holds processes
 *           stop            -> STOPPED|STOPPING              cancel the restart; stop what is left
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 *           backoff up      -> STARTING|RUNNING              spawn again
 *           policy          -> EXITED|FATAL|(stays)          a turn after set_policy: cancelled if the new policy would not restart after that exit, FATAL past a lower max_retries
 * STOPPING  start           -> (stays)                       start after the exit
 *           stop            -> (stays)                       no start after the exit
 *           restart         -> (stays)                       start after the exit
 *           remove, detach  -> (stays)                       removed after the exit
 *           exit            -> STOPPED|(removed)|(stays)     and its cgroup empty: removed, or restarted at its spawn turn, if asked
 *           stop_timeout    -> (stays)                       SIGKILL (cgroup.kill)
 *           cgroup empty    -> STOPPED|(removed)|(stays)     after the exit: as the exit
 * EXITED    start, restart  -> STARTING|RUNNING|STOPPING     spawn (RUNNING: started, start_ms 0); STOPPING first while its cgroup holds processes
 *           stop            -> STOPPED|STOPPING              STOPPING while its cgroup holds processes
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 * FATAL     start, restart  -> STARTING|RUNNING|STOPPING     spawn (RUNNING: started, start_ms 0); STOPPING first while its cgroup holds processes
 *           stop            -> STOPPED|STOPPING              STOPPING while its cgroup holds processes
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 * RELOADING start           -> (stays)                       nothing: it runs
 *           stop            -> STOPPING                      stop_signal; SIGKILL at stop_timeout
 *           restart         -> STOPPING                      stop, then start after the exit
 *           remove          -> STOPPING                      stop, then removed after the exit
 *           detach          -> (stays)                       name released, runs on; its exit is its end
 *           exit            -> STOPPED|BACKOFF|STOPPING|EXITED|FATAL|(removed)|(stays) as RUNNING's exit
 *           stop_timeout    -> (stays)                       SIGKILL (watchdog, stopped)
 *           ready           -> RUNNING|(stays)               reloaded, if it said reloading (else an earlier ready)
 *           watchdog up     -> (stays)                       stop; its exit is a failure
 *           cgroup empty    -> STOPPED|BACKOFF|STOPPING|EXITED|FATAL|(removed)|(stays) after a held exit: as the exit
 *           trigger         -> (stays)                       stop; its exit is a failure
 *           reload          -> (stays)                       refused (-EBUSY): it reloads
 *           reloading       -> (stays)                       noted: its next ready ends it
 *           reload timeout  -> RUNNING                       running again, the reload failed
 * TABLE-END
 *
 * To add a state (ready, healthy, adopted, ...): add it to enum evm_state,
 * evm_state_name and EVM__SV_NSTATES, then write its row in sv_table. To add
 * an event (a readiness notice, a health check result, the cgroup emptied):
 * add it to enum evm__sv_event and evm__sv_event_names, raise it with
 * evm__sv_dispatch where it happens, and fill its cells in the rows where it
 * means something. A condition to wait for (stopped only once the cgroup is
 * empty) is a state that waits plus the event that ends it. Then paste the
 * new text above.
 *
 * Readiness: a service is STARTING until it is ready, RUNNING after. With
 * ready = started that is start_ms up (the grace timer); with ready =
 * declared the caller says so (evm_service_ready), within ready_timeout_ms
 * or it is stopped and its exit is a failed start. The watchdog (RUNNING)
 * stops a service that gives no sign of life for watchdog_ms; its exit is a
 * failure. Either way `failing` says why, and the exit's cell reads it.
 *
 * Reloading (systemd's notify-reload): RELOADING is RUNNING while the
 * service reloads, entered by its own word (evm_service_reloading) or by a
 * reload asked of it (evm_service_reload: its signal, then a ready counts
 * only once it said it reloads); ready ends it, and its own timer
 * (reload_timer, beside the watchdog's s->timer, which still runs) ends it
 * as a failed reload, the service left running.
 *
 * One timer per service at most: the start grace or the ready timeout
 * (STARTING), the watchdog (RUNNING), the backoff (BACKOFF) or the kill
 * escalation (STOPPING, or STARTING/RUNNING once stopped as failing). A service never spins: every
 * restart goes through the backoff, which doubles from at least 10 ms.
 *
 * A new policy (evm_service_set_policy) is only noted: a restart waiting in
 * BACKOFF after an exit is judged again by it a loop turn later ("policy",
 * by its own policy_timer beside the backoff's; any new state before cancels
 * it), never inside the call: its caller may be half way through a change of
 * its own (the daemon's reload gives the unit its new settings after it).
 *
 * Events are emitted after the state changed, so a callback sees the new state
 * and may call anything here, including evm_service_remove on this service
 * (freed at the end of the iteration).
 */
#include "service.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

static void emit(struct evm_service *s, enum evm_state old, const struct evm_exit *exit, int error,
		 uint64_t delay_ms, bool removed)
{
	struct evm_event ev = {
		.type = EVM_EV_SERVICE,
		.pid = s->proc ? evm_proc_pid(s->proc) : (exit ? exit->pid : 0),
		.proc = s->proc,
		.name = s->name,
		.exit = exit,
		.error = error,
		.message = s->msg[0] ? s->msg : NULL,
		.service = s,
		.state = s->state,
		.old_state = old,
		.restarts = s->restarts,
		.delay_ms = delay_ms,
		.stage = error ? s->last_error.stage : EVM_STAGE_NONE,
		.removed = removed,
	};
	ev.time = evm__ns_to_ts(evm__real_ns());
	/* a callback that removes s must not free it under us: freed at the outermost leave */
	struct evm_loop *loop = s->loop;
	evm__dispatch_enter(loop);
	if (s->on_event)
		s->on_event(loop, &ev, s->data);
	evm__emit(loop, &ev);
	s->msg[0] = 0;
	evm__dispatch_leave(loop);
}

static void set_state(struct evm_service *s, enum evm_state st, const struct evm_exit *exit,
		      int error, uint64_t delay_ms)
{
	enum evm_state old = s->state;
	s->state = st;
	s->since_mono = evm__mono_ns();
	s->since_real = evm__real_ns();
	emit(s, old, exit, error, delay_ms, false);
}

/* not a transition: the state stays, its event tells what changed (s->msg) */
void evm__sv_tell(struct evm_service *s)
{
	emit(s, s->state, NULL, 0, 0, false);
}

/* ------------------------------------------------------------ transitions */

unsigned long evm__sv_off_table;

/*
 * Every transition is checked against the cell running: one per cell (a
 * later one belongs to an event of its own), to a state the cell names.
 */
static void on_table(struct evm_service *s, unsigned to)
{
	if (!s->cell || !(s->cell->to & to))
		__atomic_fetch_add(&evm__sv_off_table, 1, __ATOMIC_RELAXED);
	s->cell = NULL;
}

/* the one way a service changes state */
void evm__sv_enter(struct evm_service *s, enum evm_state st, const struct evm_exit *exit,
		   int error, uint64_t delay_ms)
{
	on_table(s, EVM__SV_TO(st));
	evm_timer_cancel(s->policy_timer); /* a new state: its check is moot (a new exit was judged anew) */
	if (st != EVM_STATE_RELOADING)
		evm_timer_cancel(s->reload_timer); /* the reload is over, one way or another */
	set_state(s, st, exit, error, delay_ms);
}

/* The end of a removed service: its last event, then freed when the iteration ends. */
void evm__sv_unlink(struct evm_service *s, const struct evm_exit *exit)
{
	enum evm_state old = s->state;
	on_table(s, EVM__SV_TO(EVM__SV_REMOVED));
	s->gone = true;
	s->state = EVM_STATE_STOPPED;
	emit(s, old, exit, 0, 0, true);
	evm__svc_unlink(s);
}

/* ----------------------------------------------------------- the actions */

void evm__sv_adopted_run(struct evm_service *s)
{
	/*
	 * OOM kills from now on (those before the take-over are not seen), or,
	 * across an exec of ourselves, since the run began (the old image's base)
	 */
	if (s->oom_kept) {
		s->oom_known = s->oom_kept_known;
		s->oom_base = s->oom_kept_base;
		s->oom_kept = false;
	} else {
		s->oom_known = s->cg && evm__cg_oom_kills(s->cg, &s->oom_base) == 0;
	}
	s->stopped_by_user = false;
	s->start_failures = 0;
	s->failing = FAILING_NO;
	s->watchdog_run_ms = s->watchdog_ms;
}

/*
 * A process left running (by a supervisor that died, or across an exec of
 * ourselves) becomes the service's: RUNNING at once, as it has been up for
 * who knows how long. Refused (-ESRCH, ...) it stays STOPPED.
 */
static int act_adopt(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (!a->adopt)
		return a->exit ? evm__sv_adopt_tree(s, a->exit) : -EINVAL; /* svmain.c */
	evm_timer_cancel(s->timer); /* a restart's start, if one waits (svexit.c) */
	s->start_after_stop = false;
	const struct evm_adopt_opts *in = a->adopt;
	/* field by field: deadline_ms is read only with its flag (an older caller's struct ends before) */
	struct evm_adopt_opts o = {.pid = in->pid, .flags = in->flags, .pidfd = in->pidfd,
				   .start_time = in->start_time};
	bool stopping = o.flags & EVM_ADOPT_STOPPING, starting = o.flags & EVM_ADOPT_STARTING;
	bool kept = o.flags & EVM_ADOPT_DEADLINE, failing = o.flags & EVM_ADOPT_FAILING;
	if ((stopping && (starting || failing)) || (kept && !stopping && !starting && !failing))
		return -EINVAL;
	uint64_t left_ms = kept ? in->deadline_ms : 0;
	/* left_ms counts from the call, not from after the adoption's pidfd and /proc reads */
	uint64_t now = evm__mono_ns();
	/* the service's flags, not the process's */
	o.flags &= ~(unsigned)(EVM_ADOPT_STOPPING | EVM_ADOPT_STARTING | EVM_ADOPT_DEADLINE |
			       EVM_ADOPT_FAILING);
	struct evm_proc *p = NULL;
	int r = evm_proc_adopt(s->loop, &o, &p);
	if (r < 0)
		return r;
	p->owner_cb = evm__sv_on_proc_exit;
	p->owner = s;
	s->proc = p;
	evm__sv_note_session(s, p, true);
	s->started_mono = p->start_mono;
	evm__sv_adopted_run(s);
	if (left_ms > UINT64_MAX / 2000000)
		left_ms = UINT64_MAX / 2000000;
	if (stopping) {
		/* its stop signal was sent by whoever stopped it: only the SIGKILL is left */
		snprintf(s->msg, sizeof(s->msg), "adopted pid %d, being stopped", (int)p->pid);
		s->stopped_by_user = true;
		evm__sv_send_stop(s, true);
		if (kept && s->timer) { /* the SIGKILL when it was due, not stop_timeout from now */
			s->deadline_mono = evm__after_ms(now, left_ms);
			evm_timer_cancel(s->timer);
			evm__sv_arm_kill(s);
		}
		evm__sv_enter(s, EVM_STATE_STOPPING, NULL, 0, 0);
		return 0;
	}
	if (failing) {
		/* its stop for a failure was under way: only the SIGKILL is left, its exit a failure */
		snprintf(s->msg, sizeof(s->msg), "adopted pid %d, being stopped for a failure",
			 (int)p->pid);
		s->failing = starting ? FAILING_NOT_READY : FAILING_ADOPTED;
		evm__sv_send_stop(s, true);
		if (kept && s->timer) {
			s->deadline_mono = evm__after_ms(now, left_ms);
			evm_timer_cancel(s->timer);
			evm__sv_arm_kill(s);
		}
		evm__sv_enter(s, starting ? EVM_STATE_STARTING : EVM_STATE_RUNNING, NULL, 0, 0);
		return 0;
	}
	/*
	 * start_ms ends start_ms after its start (no one extends it: a kept deadline
	 * says the same); against the clock after the adoption, which may have
	 * placed that start after the call (a start before a suspend)
	 */
	bool graced = evm__after_ms(s->started_mono, s->start_ms) <= evm__mono_ns();
	if (starting && (s->ready == EVM_READY_DECLARED || !graced)) {
		/* not ready yet: its readiness is awaited, with the time left from its start */
		snprintf(s->msg, sizeof(s->msg), "adopted pid %d, not ready yet", (int)p->pid);
		/* the ready timeout as the earlier supervisor had it (extended, maybe), else from its start */
		s->deadline_mono = kept ? evm__after_ms(now, left_ms)
					: evm__after_ms(s->started_mono, s->ready_timeout_ms);
		evm__sv_enter(s, EVM_STATE_STARTING, NULL, 0, 0);
		evm__sv_rearm(s);
		return 0;
	}
	snprintf(s->msg, sizeof(s->msg), "adopted pid %d", (int)p->pid);
	evm__sv_became_ready(s);
	return 0;
}

/* carry on where an earlier supervisor left it: counters, then its state */
static int act_resume(struct evm_service *s, const struct evm__sv_arg *a)
{
	const struct evm_service_resume *r = a->resume;
	if (!r)
		return -EINVAL;
	evm_timer_cancel(s->timer); /* a restart's start, if one waits (svexit.c) */
	s->start_after_stop = false;
	s->restarts = r->restarts;
	s->failures = r->failures;
	s->start_failures = r->start_failures;
	s->backoff_step = r->backoff_step;
	if (r->state == EVM_STATE_STOPPED)
		return 0;
	snprintf(s->msg, sizeof(s->msg), "%s", r->message ? r->message : "");
	if (r->state == EVM_STATE_BACKOFF)
		return evm__sv_backoff_for(s, r->delay_ms);
	evm__sv_enter(s, r->state, NULL, 0, 0);
	return 0;
}

static int act_start(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm_timer_cancel(s->timer); /* the backoff's, or a restart's start (svexit.c) */
	s->start_after_stop = false;
	s->restarts = 0;
	s->failures = 0;
	s->start_failures = 0;
	s->backoff_step = 0;
	s->stopped_by_user = false;
	evm__sv_spawn(s);
	return 0;
}

static int act_start_after_stop(struct evm_service *s, const struct evm__sv_arg *a)
{
	s->start_after_stop = true;
	return 0;
}

static int act_stop_noted(struct evm_service *s, const struct evm__sv_arg *a)
{
	s->start_after_stop = false;
	s->stopped_by_user = true;
	return 0;
}

/* STOPPED: a restart's start may wait for its turn in s->timer (svexit.c): not any more */
static int act_stop_stopped(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm_timer_cancel(s->timer);
	return act_stop_noted(s, a);
}

static int act_stop_idle(struct evm_service *s, const struct evm__sv_arg *a)
{
	act_stop_noted(s, a);
	evm_timer_cancel(s->timer); /* the backoff's */
	evm__sv_enter(s, EVM_STATE_STOPPED, NULL, 0, 0);
	return 0;
}

static int act_stop_proc(struct evm_service *s, const struct evm__sv_arg *a)
{
	act_stop_noted(s, a);
	/* a restart's hold for an empty cgroup (svexit.c): the rest has its stop, and its
	 * SIGKILL keeps its deadline; the held exit ends the stop */
	if (!(s->exit_held && !s->proc && s->main_wait == MAIN_WAIT_NO))
		evm__sv_send_stop(s, false);
	evm__sv_enter(s, EVM_STATE_STOPPING, NULL, 0, 0);
	return 0;
}

/* No process, but its cgroup holds some (left by an exit): stopped like a running one. */
static int act_stop_idle_cg(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (evm__sv_cg_busy(s))
		return act_stop_proc(s, a);
	return act_stop_idle(s, a);
}

static int act_restart_after_stop(struct evm_service *s, const struct evm__sv_arg *a)
{
	s->stopped_by_user = false;
	s->start_after_stop = true;
	return 0;
}

/*
 * A start without a process while its cgroup holds what an earlier run left
 * (an exit the policy did not restart: EXITED, FATAL): those are stopped
 * first and the start comes after, as a restart's does: one tree at a time.
 */
static int act_start_idle(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (!evm__sv_cg_busy(s))
		return act_start(s, a);
	act_stop_proc(s, a);
	return act_restart_after_stop(s, a);
}

static int act_restart_proc(struct evm_service *s, const struct evm__sv_arg *a)
{
	act_stop_proc(s, a);
	return act_restart_after_stop(s, a);
}

static void mark_removing(struct evm_service *s)
{
	if (!s->removing)
		evm__svc_unindex(s); /* the name is free at once */
	s->removing = true;
	s->start_after_stop = false;
}

static int act_remove_idle(struct evm_service *s, const struct evm__sv_arg *a)
{
	mark_removing(s);
	evm_timer_cancel(s->timer);
	evm__sv_unlink(s, NULL);
	return 0;
}

static int act_remove_proc(struct evm_service *s, const struct evm__sv_arg *a)
{
	mark_removing(s);
	return act_stop_proc(s, a);
}

static int act_remove_after_stop(struct evm_service *s, const struct evm__sv_arg *a)
{
	mark_removing(s);
	return 0;
}

/*
 * evm_service_detach: the name goes, the process runs on; its exit is its end
 * (svexit.c). Nothing tells it any more (the caller let go of the name its
 * notifications came by): no watchdog, no ready timeout, which would stop it
 * as failing. A stop for a failure under way keeps its deadline.
 */
static int act_detach(struct evm_service *s, const struct evm__sv_arg *a)
{
	(void)a;
	mark_removing(s);
	if (s->proc && !s->failing) {
		evm_timer_cancel(s->timer);
		s->timer = NULL;
		s->watchdog_run_ms = 0;
	}
	return 0;
}

static int act_spawn_failed(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm__sv_failed_start(s, NULL, a->error);
	return 0;
}

/* start_ms up, or the service said it is ready */
static int act_ready(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->failing)
		return 0; /* too late: it is being stopped */
	evm__sv_became_ready(s);
	return 0;
}

/*
 * A stop for a failure begins (why: FAILING_*): said now, as a warning that
 * names the service, not only at the exit; the state stays, so nothing else
 * would tell (a supervisor writing a record of its stops needs to know).
 */
static void stop_failing(struct evm_service *s, int why)
{
	s->failing = why;
	evm__sv_send_stop(s, false);
	char text[160], msg[256];
	evm__sv_failing_text(s, text, sizeof(text));
	snprintf(msg, sizeof(msg), "%s: stopping it (its exit is a failure)", text);
	struct evm_event ev = {.type = EVM_EV_WARNING, .name = s->name, .service = s,
			       .pid = s->proc ? evm_proc_pid(s->proc) : 0, .proc = s->proc,
			       .state = s->state, .old_state = s->state, .message = msg};
	ev.time = evm__ns_to_ts(evm__real_ns());
	evm__emit(s->loop, &ev);
}

/* not ready in time, or no sign of life: stopped, and its exit is a failure */
static int act_stop_failing(struct evm_service *s, const struct evm__sv_arg *a)
{
	stop_failing(s, s->state == EVM_STATE_STARTING ? FAILING_NOT_READY : FAILING_WATCHDOG);
	return 0;
}

/* the service says it failed (sd_notify WATCHDOG=trigger): stopped, its exit a failure */
static int act_trigger(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->failing)
		return 0; /* being stopped already */
	if (a->why)
		snprintf(s->fail_why, sizeof(s->fail_why), "%s", a->why);
	stop_failing(s, a->why ? FAILING_TOLD : FAILING_TRIGGERED);
	return 0;
}

/* RUNNING: ask for a reload (its signal), then wait for its RELOADING and READY */
static int act_reload(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (a->sig > 0) {
		int r = evm__sv_signal_to(s, a->sig, false);
		if (r < 0)
			return r;
	}
	s->reload_noted = false;
	evm__sv_reload_arm(s, a->timeout_ms); /* no timer (out of memory): no limit */
	if (a->sig > 0)
		snprintf(s->msg, sizeof(s->msg), "reload asked (signal %d)", a->sig);
	else
		snprintf(s->msg, sizeof(s->msg), "reload asked");
	evm__sv_enter(s, EVM_STATE_RELOADING, NULL, 0, 0);
	return 0;
}

static int act_reload_busy(struct evm_service *s, const struct evm__sv_arg *a)
{
	return -EBUSY;
}

/* the service says it reloads (RELOADING=1): its next ready ends the reload */
static int act_reloading(struct evm_service *s, const struct evm__sv_arg *a)
{
	s->reload_noted = true;
	if (s->state == EVM_STATE_RELOADING)
		return 0; /* asked by a reload: its timer runs already */
	evm__sv_reload_arm(s, a->timeout_ms);
	evm__sv_enter(s, EVM_STATE_RELOADING, NULL, 0, 0);
	return 0;
}

/* RELOADING: ready again; a ready before the service's own RELOADING is an earlier one */
static int act_reloaded(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->failing || !s->reload_noted)
		return 0;
	snprintf(s->msg, sizeof(s->msg), "reloaded");
	evm__sv_enter(s, EVM_STATE_RUNNING, NULL, 0, 0);
	return 0;
}

/* RELOADING too long: running as it was, the reload failed (systemd does not stop it either) */
static int act_reload_timeout(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->failing || !s->proc)
		return 0;
	snprintf(s->msg, sizeof(s->msg), "reload not done in %llu ms",
		 (unsigned long long)((evm__mono_ns() - s->since_mono) / 1000000));
	evm__sv_enter(s, EVM_STATE_RUNNING, NULL, -ETIMEDOUT, 0);
	return 0;
}

static int act_backoff_done(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm_timer_cancel(s->timer); /* likewise */
	s->restarts++;
	evm__sv_spawn(s);
	return 0;
}

static int act_kill(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm__sv_stop_send(s, SIGKILL);
	return 0;
}

/* ------------------------------------------------------------ the table */

const char *const evm__sv_event_names[EVM__SV_NEVENTS] = {
	[EVM__SV_START] = "start",
	[EVM__SV_STOP] = "stop",
	[EVM__SV_RESTART] = "restart",
	[EVM__SV_REMOVE] = "remove",
	[EVM__SV_DETACH] = "detach",
	[EVM__SV_SPAWN_FAILED] = "spawn failed",
	[EVM__SV_EXIT] = "exit",
	[EVM__SV_GRACE] = "start_ms up",
	[EVM__SV_BACKOFF_DONE] = "backoff up",
	[EVM__SV_STOP_TIMEOUT] = "stop_timeout",
	[EVM__SV_ADOPT] = "adopt",
	[EVM__SV_READY] = "ready",
	[EVM__SV_READY_TIMEOUT] = "ready_timeout",
	[EVM__SV_WATCHDOG] = "watchdog up",
	[EVM__SV_EMPTIED] = "cgroup empty",
	[EVM__SV_RESUME] = "resume",
	[EVM__SV_TRIGGER] = "trigger",
	[EVM__SV_RELOAD] = "reload",
	[EVM__SV_RELOADING] = "reloading",
	[EVM__SV_RELOAD_TIMEOUT] = "reload timeout",
	[EVM__SV_POLICY] = "policy",
};

#define TO(st) EVM__SV_TO(EVM_STATE_##st)
#define GONE EVM__SV_TO(EVM__SV_REMOVED)
#define SPAWNS TO(STARTING) | TO(RUNNING)
#define RETRIES TO(BACKOFF) | TO(FATAL)
#define POLICY TO(STOPPED) | TO(BACKOFF) | TO(EXITED) | TO(FATAL)
/* a detached service's exit: removed, or STOPPING while its cgroup holds processes */
#define ENDS TO(STOPPING) | GONE

/* the cells every state without a process shares */
#define IDLE_ROW(stop_act, stop_to, stop_what)                                                     \
	[EVM__SV_START] = {act_start_idle, SPAWNS | TO(STOPPING),                                  \
			   "spawn (RUNNING: started, start_ms 0); STOPPING first while its cgroup holds processes"}, \
	[EVM__SV_STOP] = {stop_act, stop_to, stop_what},                                           \
	[EVM__SV_RESTART] = {act_start_idle, SPAWNS | TO(STOPPING),                                \
			     "spawn (RUNNING: started, start_ms 0); STOPPING first while its cgroup holds processes"}, \
	[EVM__SV_REMOVE] = {act_remove_idle, GONE, "removed at once"},                             \
	[EVM__SV_SPAWN_FAILED] = {act_spawn_failed, RETRIES, "FATAL past start_retries"}

/* and those of a state with a process, STARTING and RUNNING */
#define PROC_ROW                                                                                   \
	[EVM__SV_START] = {NULL, 0, "nothing: it runs"},                                           \
	[EVM__SV_STOP] = {act_stop_proc, TO(STOPPING), "stop_signal; SIGKILL at stop_timeout"}, \
	[EVM__SV_RESTART] = {act_restart_proc, TO(STOPPING), "stop, then start after the exit"},   \
	[EVM__SV_REMOVE] = {act_remove_proc, TO(STOPPING), "stop, then removed after the exit"},     \
	[EVM__SV_DETACH] = {act_detach, EVM__SV_STAYS, "name released, runs on; its exit is its end"}

const struct evm__sv_cell evm__sv_table[EVM__SV_NSTATES][EVM__SV_NEVENTS] = {
	[EVM_STATE_STOPPED] = {
		IDLE_ROW(act_stop_stopped, 0, "noted: stopped by the user; a waiting restart dropped"),
		[EVM__SV_ADOPT] = {act_adopt, TO(RUNNING) | TO(STARTING) | TO(STOPPING),
				   "take over a running process (STARTING: one not ready yet; STOPPING: one being stopped)"},
		[EVM__SV_RESUME] = {act_resume, TO(BACKOFF) | TO(EXITED) | TO(FATAL) | EVM__SV_STAYS,
				    "counters and state of an earlier supervisor"},
	},
	[EVM_STATE_STARTING] = {
		PROC_ROW,
		[EVM__SV_EXIT] = {evm__sv_act_exit_starting, POLICY | ENDS | EVM__SV_STAYS,
				  "failed start, unless policy is done; a restart waits for an empty cgroup; detached: its end"},
		[EVM__SV_EMPTIED] = {evm__sv_act_emptied_held, POLICY | ENDS | EVM__SV_STAYS,
				     "after a held exit: as the exit"},
		[EVM__SV_GRACE] = {act_ready, TO(RUNNING), "ready (ready = started)"},
		[EVM__SV_READY] = {act_ready, TO(RUNNING), "ready"},
		[EVM__SV_READY_TIMEOUT] = {act_stop_failing, 0, "stop; its exit is a failed start"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL (not ready, stopped)"},
		[EVM__SV_TRIGGER] = {act_trigger, 0, "stop; its exit is a failed start"},
	},
	[EVM_STATE_RUNNING] = {
		PROC_ROW,
		[EVM__SV_EXIT] = {evm__sv_act_exit_running, POLICY | ENDS | EVM__SV_STAYS,
				  "restart policy and max_retries; a restart waits for an empty cgroup; detached: its end"},
		[EVM__SV_EMPTIED] = {evm__sv_act_emptied_held, POLICY | ENDS | EVM__SV_STAYS,
				     "after a held exit: as the exit"},
		[EVM__SV_WATCHDOG] = {act_stop_failing, 0, "stop; its exit is a failure"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL (watchdog, stopped)"},
		[EVM__SV_TRIGGER] = {act_trigger, 0, "stop; its exit is a failure"},
		[EVM__SV_RELOAD] = {act_reload, TO(RELOADING), "its reload signal; wait for reloading, ready"},
		[EVM__SV_RELOADING] = {act_reloading, TO(RELOADING), "the service reloads"},
	},
	[EVM_STATE_RELOADING] = {
		PROC_ROW,
		[EVM__SV_EXIT] = {evm__sv_act_exit_running, POLICY | ENDS | EVM__SV_STAYS, "as RUNNING's exit"},
		[EVM__SV_EMPTIED] = {evm__sv_act_emptied_held, POLICY | ENDS | EVM__SV_STAYS,
				     "after a held exit: as the exit"},
		[EVM__SV_READY] = {act_reloaded, TO(RUNNING) | EVM__SV_STAYS,
				   "reloaded, if it said reloading (else an earlier ready)"},
		[EVM__SV_RELOADING] = {act_reloading, EVM__SV_STAYS, "noted: its next ready ends it"},
		[EVM__SV_RELOAD] = {act_reload_busy, 0, "refused (-EBUSY): it reloads"},
		[EVM__SV_RELOAD_TIMEOUT] = {act_reload_timeout, TO(RUNNING), "running again, the reload failed"},
		[EVM__SV_WATCHDOG] = {act_stop_failing, 0, "stop; its exit is a failure"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL (watchdog, stopped)"},
		[EVM__SV_TRIGGER] = {act_trigger, 0, "stop; its exit is a failure"},
	},
	[EVM_STATE_BACKOFF] = {
		IDLE_ROW(act_stop_idle_cg, TO(STOPPED) | TO(STOPPING), "cancel the restart; stop what is left"),
		[EVM__SV_BACKOFF_DONE] = {act_backoff_done, SPAWNS, "spawn again"},
		[EVM__SV_POLICY] = {evm__sv_act_policy_backoff, TO(EXITED) | TO(FATAL) | EVM__SV_STAYS,
				    "a turn after set_policy: cancelled if the new policy would not restart after that exit, "
				    "FATAL past a lower max_retries"},
	},
	[EVM_STATE_STOPPING] = {
		[EVM__SV_START] = {act_start_after_stop, 0, "start after the exit"},
		[EVM__SV_STOP] = {act_stop_noted, 0, "no start after the exit"},
		[EVM__SV_RESTART] = {act_restart_after_stop, 0, "start after the exit"},
		[EVM__SV_REMOVE] = {act_remove_after_stop, 0, "removed after the exit"},
		[EVM__SV_DETACH] = {act_remove_after_stop, 0, "removed after the exit"},
		[EVM__SV_EXIT] = {evm__sv_act_exit_stopping, TO(STOPPED) | GONE | EVM__SV_STAYS,
				  "and its cgroup empty: removed, or restarted at its spawn turn, if asked"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL (cgroup.kill)"},
		[EVM__SV_EMPTIED] = {evm__sv_act_emptied, TO(STOPPED) | GONE | EVM__SV_STAYS,
				     "after the exit: as the exit"},
	},
	[EVM_STATE_EXITED] = {IDLE_ROW(act_stop_idle_cg, TO(STOPPED) | TO(STOPPING),
				       "STOPPING while its cgroup holds processes")},
	[EVM_STATE_FATAL] = {IDLE_ROW(act_stop_idle_cg, TO(STOPPED) | TO(STOPPING),
				      "STOPPING while its cgroup holds processes")},
};

int evm__sv_dispatch(struct evm_service *s, enum evm__sv_event ev, const struct evm__sv_arg *a)
{
	static const struct evm__sv_arg none;
	if (evm__forked(s->loop)) /* the parent's service: its processes, epoll, timers */
		return -ECHILD;
	/* a service on its way out starts no more; its removal is its last event */
	if (s->removing && (ev == EVM__SV_START || ev == EVM__SV_RESTART))
		return -ESHUTDOWN;
	if (s->gone || (unsigned)s->state >= EVM__SV_NSTATES || (unsigned)ev >= EVM__SV_NEVENTS)
		return 0;
	const struct evm__sv_cell *c = &evm__sv_table[s->state][ev];
	if (!c->act)
		return 0;
	/* an action's callbacks may remove s: it stays allocated until the leave */
	struct evm_loop *loop = s->loop;
	const struct evm__sv_cell *outer = s->cell;
	evm__dispatch_enter(loop);
	s->cell = c;
	int r = c->act(s, a ? a : &none);
	s->cell = outer;
	evm__dispatch_leave(loop);
	return r;
}
