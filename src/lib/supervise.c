/*
 * supervise.c - a service's state machine: its process, and the policy that
 * decides what happens after it dies (restart, back off, give up) and how it
 * is stopped. What a service is (options, list, name index, accessors) lives
 * in service.c; evm_shutdown in shutdown.c.
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
 * STOPPED   start, restart  -> STARTING|RUNNING              spawn (RUNNING: started, start_ms 0)
 *           stop            -> (stays)                       noted: stopped by the user
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 *           adopt           -> RUNNING                       take over a running process
 * STARTING  start           -> (stays)                       nothing: it runs
 *           stop            -> STOPPING                      stop_signal; SIGKILL at stop_timeout
 *           restart         -> STOPPING                      stop, then start after the exit
 *           remove          -> STOPPING                      stop, then removed after the exit
 *           exit            -> STOPPED|BACKOFF|EXITED|FATAL  failed start, unless policy is done
 *           start_ms up     -> RUNNING                       ready (ready = started)
 *           stop_timeout    -> (stays)                       SIGKILL (not ready, stopped)
 *           ready           -> RUNNING                       ready
 *           ready_timeout   -> (stays)                       stop; its exit is a failed start
 * RUNNING   start           -> (stays)                       nothing: it runs
 *           stop            -> STOPPING                      stop_signal; SIGKILL at stop_timeout
 *           restart         -> STOPPING                      stop, then start after the exit
 *           remove          -> STOPPING                      stop, then removed after the exit
 *           exit            -> STOPPED|BACKOFF|EXITED|FATAL  restart policy and max_retries
 *           stop_timeout    -> (stays)                       SIGKILL (watchdog, stopped)
 *           watchdog up     -> (stays)                       stop; its exit is a failure
 * BACKOFF   start, restart  -> STARTING|RUNNING              spawn (RUNNING: started, start_ms 0)
 *           stop            -> STOPPED|STOPPING              cancel the restart; stop what is left
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 *           backoff up      -> STARTING|RUNNING              spawn again
 * STOPPING  start           -> (stays)                       start after the exit
 *           stop            -> (stays)                       no start after the exit
 *           restart         -> (stays)                       start after the exit
 *           remove          -> (stays)                       removed after the exit
 *           exit            -> STOPPED|(removed)|(stays)     and its cgroup empty: removed, or restarted, if asked
 *           stop_timeout    -> (stays)                       SIGKILL (cgroup.kill)
 *           cgroup empty    -> STOPPED|(removed)|(stays)     after the exit: as the exit
 * EXITED    start, restart  -> STARTING|RUNNING              spawn (RUNNING: started, start_ms 0)
 *           stop            -> STOPPED|STOPPING              STOPPING while its cgroup holds processes
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 * FATAL     start, restart  -> STARTING|RUNNING              spawn (RUNNING: started, start_ms 0)
 *           stop            -> STOPPED|STOPPING              STOPPING while its cgroup holds processes
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
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
 * One timer per service at most: the start grace or the ready timeout
 * (STARTING), the watchdog (RUNNING), the backoff (BACKOFF) or the kill
 * escalation (STOPPING, or STARTING/RUNNING once stopped as failing). A service never spins: every
 * restart goes through the backoff, which doubles from at least 10 ms.
 * Events are emitted after the state changed, so a callback sees the new state
 * and may call anything here, including evm_service_remove on this service
 * (freed at the end of the iteration).
 */
#include "service.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIN_DOUBLING_MS 10

/* why we stopped a service that did not stop by itself: its exit is a failure */
enum { FAILING_NO, FAILING_NOT_READY, FAILING_WATCHDOG };

static void spawn_now(struct evm_service *s);
static void became_ready(struct evm_service *s);
static void ready_timeout_fire(struct evm_timer *t, void *data);
static void unlink_svc(struct evm_service *s, const struct evm_exit *exit);

/* ------------------------------------------------------------- helpers */

static bool success_code(const struct evm_service *s, int code)
{
	return code >= 0 && code < 256 && (s->success[code / 32] >> (code % 32) & 1u);
}

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
static void enter(struct evm_service *s, enum evm_state st, const struct evm_exit *exit, int error,
		  uint64_t delay_ms)
{
	on_table(s, EVM__SV_TO(st));
	set_state(s, st, exit, error, delay_ms);
}

static int signal_to(struct evm_service *s, int sig, bool group)
{
	if (!s->proc)
		return -ESRCH;
	if (group) {
		int r = evm_proc_signal_group(s->proc, sig);
		if (r != -EPERM)
			return r;
	}
	return evm_proc_signal(s->proc, sig);
}

/* A stop's signal to the process, or to its group (GROUP, TREE without a cgroup) */
static int send_signal(struct evm_service *s, int sig)
{
	return signal_to(s, sig, s->kill_group);
}

/*
 * Some process of it is left in its cgroup (read now: the watch may lag).
 * Unwatched (no fd was left), nothing would tell when it empties.
 */
static bool cg_busy(const struct evm_service *s)
{
	return s->cgw && evm_cgroup_populated(s->cg) > 0;
}

/* A stop's signal: every process of its cgroup (TREE), else the process (or group). */
static void stop_send(struct evm_service *s, int sig)
{
	int r = !s->cg || s->kill_mode != EVM_KILL_TREE ? -1 : sig == SIGKILL ? evm_cgroup_kill(s->cg) : evm_cgroup_signal(s->cg, sig);
	if (r <= 0 || sig == SIGKILL) /* the main process was not among them */
		send_signal(s, sig);
}

/* ------------------------------------------------------------ backoff */

static uint64_t backoff_delay(struct evm_service *s)
{
	uint64_t d = s->backoff_initial_ms;
	if (s->backoff_step > 0) {
		uint64_t base = d < MIN_DOUBLING_MS ? MIN_DOUBLING_MS : d;
		unsigned shift = s->backoff_step - 1 + (d < MIN_DOUBLING_MS ? 0 : 1);
		d = shift >= 64 || base > (UINT64_MAX >> shift) ? UINT64_MAX : base << shift;
	}
	if (d > s->backoff_max_ms)
		d = s->backoff_max_ms;
	if (s->jitter && d) {
		/* spread a herd of services that crashed together */
		uint64_t span = d * s->jitter / 100;
		if (span)
			d += (uint64_t)random() % (span + 1);
	}
	s->backoff_step++;
	return d;
}

static void backoff_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_BACKOFF_DONE, NULL);
}

/* The process is gone (or never started): restart later, or give up. */
static void schedule_restart(struct evm_service *s, const struct evm_exit *exit, int error)
{
	uint64_t delay = backoff_delay(s);
	s->next_start_mono = evm__mono_ns() + delay * 1000000;
	if (evm_timer_add(s->loop, delay, backoff_fire, s, &s->timer) < 0) {
		snprintf(s->msg, sizeof(s->msg), "cannot schedule a restart: out of memory");
		enter(s, EVM_STATE_FATAL, exit, -ENOMEM, 0);
		return;
	}
	enter(s, EVM_STATE_BACKOFF, exit, error, delay);
}

/*
 * A spawn that failed for want of processes, memory or fds (EAGAIN under
 * RLIMIT_NPROC, ENOMEM, EMFILE, ENFILE) says nothing about the service: the
 * machine is short. Retry with backoff for as long as it lasts, never FATAL.
 */
static bool machine_short(const struct evm_exit *exit, int error)
{
	return !exit && (error == -EAGAIN || error == -ENOMEM || error == -EMFILE || error == -ENFILE);
}

/* A failed start (died during start_ms, or could not be spawned). */
static void failed_start(struct evm_service *s, const struct evm_exit *exit, int error)
{
	s->failures++;
	if (!machine_short(exit, error))
		s->start_failures++;
	if (s->start_failures > s->start_retries) {
		size_t n = strlen(s->msg);
		snprintf(s->msg + n, sizeof(s->msg) - n, "%sgave up after %u failed starts in a row",
			 n ? "; " : "", s->start_failures);
		enter(s, EVM_STATE_FATAL, exit, error, 0);
		return;
	}
	schedule_restart(s, exit, error);
}

/* --------------------------------------------------------------- running */

static void grace_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_GRACE, NULL);
}

static void kill_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_STOP_TIMEOUT, NULL);
}

static void ready_timeout_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_READY_TIMEOUT, NULL);
}

/*
 * The watchdog's timer is armed once per period, not per sign of life: a
 * service that says it is alive only moves alive_mono, and the timer, when
 * it fires early, waits for the rest.
 */
static void watchdog_fire(struct evm_timer *t, void *data)
{
	struct evm_service *s = data;
	uint64_t now = evm__mono_ns(), due = s->alive_mono + s->watchdog_ms * 1000000;
	if (due > now) {
		/* out of memory: no watchdog for this run rather than a false alarm */
		evm_timer_add(s->loop, (due - now + 999999) / 1000000, watchdog_fire, s, &s->timer);
		return;
	}
	evm__sv_dispatch(s, EVM__SV_WATCHDOG, NULL);
}

/* STARTING (or STOPPED, adopting) -> RUNNING: the start succeeded */
static void became_ready(struct evm_service *s)
{
	evm_timer_cancel(s->timer); /* the start grace's or the ready timeout's */
	s->start_failures = 0;
	if (s->watchdog_ms) {
		s->alive_mono = evm__mono_ns();
		evm_timer_add(s->loop, s->watchdog_ms, watchdog_fire, s, &s->timer);
	}
	enter(s, EVM_STATE_RUNNING, NULL, 0, 0);
}

/* SIGKILL at deadline_mono: (again) after an exit that left the cgroup busy */
static void arm_kill(struct evm_service *s)
{
	uint64_t now = evm__mono_ns();
	uint64_t ms = s->deadline_mono > now ? (s->deadline_mono - now + 999999) / 1000000 : 0;
	if (evm_timer_add(s->loop, ms, kill_fire, s, &s->timer) < 0)
		stop_send(s, SIGKILL);
}

/* stop_signal now, SIGKILL at stop_timeout (kill_fire); the caller changes the state */
static void send_stop(struct evm_service *s)
{
	evm_timer_cancel(s->timer);
	s->exit_held = false;
	if (s->stop_timeout_ms == 0 || s->stop_signal == SIGKILL) {
		stop_send(s, SIGKILL);
		return;
	}
	stop_send(s, s->stop_signal);
	/* a stopped (SIGSTOP) process would sit on the signal until continued */
	if (s->stop_signal != SIGCONT)
		stop_send(s, SIGCONT);
	s->deadline_mono = evm__mono_ns() + s->stop_timeout_ms * 1000000;
	arm_kill(s);
}

/* What every exit leaves behind, whatever the state: then the cell decides. */
static void on_proc_exit(struct evm_proc *p, const struct evm_exit *e, void *owner)
{
	struct evm_service *s = owner;
	evm_timer_cancel(s->timer);
	if (s->kill_group && (p->flags & EVM__P_GROUP))
		killpg(p->pid, SIGKILL); /* stragglers of the group; ESRCH when none */
	s->proc = NULL;
	evm_proc_unref(p);
	s->has_exit = true;
	s->last_exit = *e;
	s->last_error.stage = EVM_STAGE_NONE;
	s->last_error.error = 0;
	if (e->runtime_ns / 1000000 >= s->stable_ms) {
		s->backoff_step = 0;
		s->failures = 0;
	}
	evm__sv_dispatch(s, EVM__SV_EXIT, &(struct evm__sv_arg){.exit = e});
}

static void spawn_now(struct evm_service *s)
{
	struct evm_spawn_opts o = s->spawn;
	struct evm_proc *p = NULL;
	if (s->before_spawn) {
		char why[sizeof(s->msg)] = "";
		int r = s->before_spawn(s, &o, why, sizeof(why), s->before_spawn_data);
		if (r < 0) {
			s->last_error.stage = EVM_STAGE_SETUP;
			s->last_error.error = -r;
			snprintf(s->msg, sizeof(s->msg), "%s", why[0] ? why : strerror(-r));
			evm__sv_dispatch(s, EVM__SV_SPAWN_FAILED, &(struct evm__sv_arg){.error = r});
			return;
		}
	}
	o.error = &s->last_error;
	int r = evm__spawn_local(s->loop, &o, &p);
	if (r < 0) {
		const char *what = s->file ? s->file : s->argv[0];
		snprintf(s->msg, sizeof(s->msg), "%s %s: %s", evm_spawn_stage_name(s->last_error.stage),
			 s->last_error.stage == EVM_STAGE_CWD && s->cwd ? s->cwd : what, strerror(-r));
		evm__sv_dispatch(s, EVM__SV_SPAWN_FAILED, &(struct evm__sv_arg){.error = r});
		return;
	}
	p->owner_cb = on_proc_exit;
	p->owner = s;
	s->proc = p;
	s->started_mono = evm__mono_ns();
	s->failing = FAILING_NO;
	if (s->ready == EVM_READY_DECLARED) {
		/* no timer (out of memory): it waits for its word without a limit */
		if (s->ready_timeout_ms) {
			s->deadline_mono = s->started_mono + s->ready_timeout_ms * 1000000;
			evm_timer_add(s->loop, s->ready_timeout_ms, ready_timeout_fire, s, &s->timer);
		}
		enter(s, EVM_STATE_STARTING, NULL, 0, 0);
		return;
	}
	if (s->start_ms == 0) {
		became_ready(s);
		return;
	}
	/* no timer (out of memory): it stays STARTING until it exits */
	evm_timer_add(s->loop, s->start_ms, grace_fire, s, &s->timer);
	enter(s, EVM_STATE_STARTING, NULL, 0, 0);
}

/* ----------------------------------------------------------- the actions */

/*
 * A process left running (by a supervisor that died, or across an exec of
 * ourselves) becomes the service's: RUNNING at once, as it has been up for
 * who knows how long. Refused (-ESRCH, ...) it stays STOPPED.
 */
static int act_adopt(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (!a->adopt)
		return -EINVAL;
	struct evm_adopt_opts o = *a->adopt;
	o.on_exit = NULL;
	o.data = NULL;
	o.handler = NULL;
	struct evm_proc *p = NULL;
	int r = evm_proc_adopt(s->loop, &o, &p);
	if (r < 0)
		return r;
	p->owner_cb = on_proc_exit;
	p->owner = s;
	s->proc = p;
	s->started_mono = p->start_mono;
	s->stopped_by_user = false;
	s->start_failures = 0;
	s->failing = FAILING_NO;
	snprintf(s->msg, sizeof(s->msg), "adopted pid %d", (int)p->pid);
	became_ready(s);
	return 0;
}

static int act_start(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm_timer_cancel(s->timer); /* the backoff's */
	s->restarts = 0;
	s->failures = 0;
	s->start_failures = 0;
	s->backoff_step = 0;
	s->stopped_by_user = false;
	spawn_now(s);
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

static int act_stop_idle(struct evm_service *s, const struct evm__sv_arg *a)
{
	act_stop_noted(s, a);
	evm_timer_cancel(s->timer); /* the backoff's */
	enter(s, EVM_STATE_STOPPED, NULL, 0, 0);
	return 0;
}

static int act_stop_proc(struct evm_service *s, const struct evm__sv_arg *a)
{
	act_stop_noted(s, a);
	send_stop(s);
	enter(s, EVM_STATE_STOPPING, NULL, 0, 0);
	return 0;
}

/* No process, but its cgroup holds some (left by an exit): stopped like a running one. */
static int act_stop_idle_cg(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (cg_busy(s))
		return act_stop_proc(s, a);
	return act_stop_idle(s, a);
}

static int act_restart_after_stop(struct evm_service *s, const struct evm__sv_arg *a)
{
	s->stopped_by_user = false;
	s->start_after_stop = true;
	return 0;
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
	unlink_svc(s, NULL);
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

static int act_spawn_failed(struct evm_service *s, const struct evm__sv_arg *a)
{
	failed_start(s, NULL, a->error);
	return 0;
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

static int act_exit_starting(struct evm_service *s, const struct evm__sv_arg *a)
{
	const struct evm_exit *e = a->exit;
	if (s->loop->shutting_down) {
		enter(s, EVM_STATE_STOPPED, e, 0, 0);
		return 0;
	}
	bool ok = exit_ok(s, e) && !s->failing, again = policy_again(s, ok);
	if (s->failing)
		snprintf(s->msg, sizeof(s->msg), "not ready within ready_timeout (%llu ms)",
			 (unsigned long long)s->ready_timeout_ms);
	else if (again || !ok)
		snprintf(s->msg, sizeof(s->msg), "exited %s (%llu ms)",
			 s->ready == EVM_READY_DECLARED ? "before it was ready" : "during its start period",
			 (unsigned long long)(e->runtime_ns / 1000000));
	if (again)
		failed_start(s, e, 0);
	else
		enter(s, EVM_STATE_EXITED, e, 0, 0);
	return 0;
}

static int act_exit_running(struct evm_service *s, const struct evm__sv_arg *a)
{
	const struct evm_exit *e = a->exit;
	if (s->loop->shutting_down) {
		enter(s, EVM_STATE_STOPPED, e, 0, 0);
		return 0;
	}
	bool ok = exit_ok(s, e) && !s->failing;
	if (s->failing)
		snprintf(s->msg, sizeof(s->msg), "watchdog: no sign of life for %llu ms",
			 (unsigned long long)s->watchdog_ms);
	if (!policy_again(s, ok)) {
		enter(s, EVM_STATE_EXITED, e, 0, 0);
		return 0;
	}
	if (ok)
		s->failures = 0; /* "in a row" */
	else
		s->failures++;
	if (!ok && s->max_retries && s->failures > s->max_retries) {
		snprintf(s->msg, sizeof(s->msg), "gave up after %u failures in a row", s->failures);
		enter(s, EVM_STATE_FATAL, e, 0, 0);
		return 0;
	}
	schedule_restart(s, e, 0);
	return 0;
}

static int act_exit_stopping(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (cg_busy(s)) {
		/* stopped once the cgroup is empty; the kill still comes at stop_timeout */
		s->exit_held = a->exit != NULL;
		if (s->stop_timeout_ms && s->stop_signal != SIGKILL)
			arm_kill(s);
		return 0;
	}
	evm_timer_cancel(s->timer);
	s->exit_held = false;
	if (s->removing) {
		unlink_svc(s, a->exit);
		return 0;
	}
	enter(s, EVM_STATE_STOPPED, a->exit, 0, 0);
	if (s->start_after_stop) {
		s->start_after_stop = false;
		if (!s->loop->shutting_down)
			evm__sv_dispatch(s, EVM__SV_START, NULL); /* a restart asked before the shutdown */
	}
	return 0;
}

/* start_ms up, or the service said it is ready */
static int act_ready(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->failing)
		return 0; /* too late: it is being stopped */
	became_ready(s);
	return 0;
}

/* not ready in time, or no sign of life: stopped, and its exit is a failure */
static int act_stop_failing(struct evm_service *s, const struct evm__sv_arg *a)
{
	s->failing = s->state == EVM_STATE_STARTING ? FAILING_NOT_READY : FAILING_WATCHDOG;
	send_stop(s);
	return 0;
}

static int act_backoff_done(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm_timer_cancel(s->timer); /* likewise */
	s->restarts++;
	spawn_now(s);
	return 0;
}

static int act_kill(struct evm_service *s, const struct evm__sv_arg *a)
{
	stop_send(s, SIGKILL);
	return 0;
}

/* The last process of its cgroup is gone: the stop is over once the main one is reaped. */
static int act_emptied(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->proc)
		return 0; /* its exit, still to come, ends the stop */
	struct evm__sv_arg held = {.exit = s->exit_held ? &s->last_exit : NULL};
	return act_exit_stopping(s, &held);
}

/* ------------------------------------------------------------ the table */

const char *const evm__sv_event_names[EVM__SV_NEVENTS] = {
	[EVM__SV_START] = "start",
	[EVM__SV_STOP] = "stop",
	[EVM__SV_RESTART] = "restart",
	[EVM__SV_REMOVE] = "remove",
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
};

#define TO(st) EVM__SV_TO(EVM_STATE_##st)
#define GONE EVM__SV_TO(EVM__SV_REMOVED)
#define SPAWNS TO(STARTING) | TO(RUNNING)
#define RETRIES TO(BACKOFF) | TO(FATAL)
#define POLICY TO(STOPPED) | TO(BACKOFF) | TO(EXITED) | TO(FATAL)

/* the cells every state without a process shares */
#define IDLE_ROW(stop_act, stop_to, stop_what)                                                     \
	[EVM__SV_START] = {act_start, SPAWNS, "spawn (RUNNING: started, start_ms 0)"},         \
	[EVM__SV_STOP] = {stop_act, stop_to, stop_what},                                           \
	[EVM__SV_RESTART] = {act_start, SPAWNS, "spawn (RUNNING: started, start_ms 0)"},       \
	[EVM__SV_REMOVE] = {act_remove_idle, GONE, "removed at once"},                             \
	[EVM__SV_SPAWN_FAILED] = {act_spawn_failed, RETRIES, "FATAL past start_retries"}

/* and those of a state with a process, STARTING and RUNNING */
#define PROC_ROW                                                                                   \
	[EVM__SV_START] = {NULL, 0, "nothing: it runs"},                                           \
	[EVM__SV_STOP] = {act_stop_proc, TO(STOPPING), "stop_signal; SIGKILL at stop_timeout"}, \
	[EVM__SV_RESTART] = {act_restart_proc, TO(STOPPING), "stop, then start after the exit"},   \
	[EVM__SV_REMOVE] = {act_remove_proc, TO(STOPPING), "stop, then removed after the exit"}

const struct evm__sv_cell evm__sv_table[EVM__SV_NSTATES][EVM__SV_NEVENTS] = {
	[EVM_STATE_STOPPED] = {
		IDLE_ROW(act_stop_noted, 0, "noted: stopped by the user"),
		[EVM__SV_ADOPT] = {act_adopt, TO(RUNNING), "take over a running process"},
	},
	[EVM_STATE_STARTING] = {
		PROC_ROW,
		[EVM__SV_EXIT] = {act_exit_starting, POLICY, "failed start, unless policy is done"},
		[EVM__SV_GRACE] = {act_ready, TO(RUNNING), "ready (ready = started)"},
		[EVM__SV_READY] = {act_ready, TO(RUNNING), "ready"},
		[EVM__SV_READY_TIMEOUT] = {act_stop_failing, 0, "stop; its exit is a failed start"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL (not ready, stopped)"},
	},
	[EVM_STATE_RUNNING] = {
		PROC_ROW,
		[EVM__SV_EXIT] = {act_exit_running, POLICY, "restart policy and max_retries"},
		[EVM__SV_WATCHDOG] = {act_stop_failing, 0, "stop; its exit is a failure"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL (watchdog, stopped)"},
	},
	[EVM_STATE_BACKOFF] = {
		IDLE_ROW(act_stop_idle_cg, TO(STOPPED) | TO(STOPPING), "cancel the restart; stop what is left"),
		[EVM__SV_BACKOFF_DONE] = {act_backoff_done, SPAWNS, "spawn again"},
	},
	[EVM_STATE_STOPPING] = {
		[EVM__SV_START] = {act_start_after_stop, 0, "start after the exit"},
		[EVM__SV_STOP] = {act_stop_noted, 0, "no start after the exit"},
		[EVM__SV_RESTART] = {act_restart_after_stop, 0, "start after the exit"},
		[EVM__SV_REMOVE] = {act_remove_after_stop, 0, "removed after the exit"},
		[EVM__SV_EXIT] = {act_exit_stopping, TO(STOPPED) | GONE | EVM__SV_STAYS,
				  "and its cgroup empty: removed, or restarted, if asked"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL (cgroup.kill)"},
		[EVM__SV_EMPTIED] = {act_emptied, TO(STOPPED) | GONE | EVM__SV_STAYS,
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

/* ---------------------------------------------------------------- public */

/* The end of a removed service: its last event, then freed when the iteration ends. */
static void unlink_svc(struct evm_service *s, const struct evm_exit *exit)
{
	enum evm_state old = s->state;
	on_table(s, EVM__SV_TO(EVM__SV_REMOVED));
	s->gone = true;
	s->state = EVM_STATE_STOPPED;
	emit(s, old, exit, 0, 0, true);
	evm__svc_unlink(s);
}

static int call(struct evm_service *s, enum evm__sv_event ev)
{
	if (!s || s->dead)
		return -EINVAL;
	return evm__sv_dispatch(s, ev, NULL);
}

int evm_service_start(struct evm_service *s)
{
	return call(s, EVM__SV_START);
}

int evm_service_adopt(struct evm_service *s, const struct evm_adopt_opts *opts)
{
	if (!s || !opts)
		return -EINVAL;
	if (s->state != EVM_STATE_STOPPED || s->removing)
		return -EBUSY;
	return evm__sv_dispatch(s, EVM__SV_ADOPT, &(struct evm__sv_arg){.adopt = opts});
}

int evm_service_stop(struct evm_service *s)
{
	return call(s, EVM__SV_STOP);
}

int evm_service_restart(struct evm_service *s)
{
	return call(s, EVM__SV_RESTART);
}

void evm_service_remove(struct evm_service *s)
{
	call(s, EVM__SV_REMOVE);
}

int evm_service_ready(struct evm_service *s)
{
	if (!s || s->dead)
		return -EINVAL;
	if (!s->proc || s->state == EVM_STATE_STOPPING)
		return -ESRCH;
	return evm__sv_dispatch(s, EVM__SV_READY, NULL);
}

int evm_service_watchdog(struct evm_service *s)
{
	if (!s || s->dead)
		return -EINVAL;
	s->alive_mono = evm__mono_ns();
	return 0;
}

/* not an event: the state stays, only the deadline of the timer it has moves */
int evm_service_extend_timeout(struct evm_service *s, uint64_t ms)
{
	if (!s || s->dead)
		return -EINVAL;
	bool ready_wait = s->state == EVM_STATE_STARTING && s->ready == EVM_READY_DECLARED &&
			  !s->failing && s->ready_timeout_ms;
	bool kill_wait = s->state == EVM_STATE_STOPPING || s->failing;
	if (!s->timer || !(ready_wait || kill_wait))
		return -ESRCH;
	uint64_t now = evm__mono_ns();
	if (ms > UINT64_MAX / 2000000)
		ms = UINT64_MAX / 2000000;
	if (now + ms * 1000000 <= s->deadline_mono)
		return 0;
	evm_timer_cancel(s->timer);
	s->deadline_mono = now + ms * 1000000;
	return evm_timer_add(s->loop, ms, ready_wait ? ready_timeout_fire : kill_fire, s, &s->timer);
}

int evm_service_signal(struct evm_service *s, int sig)
{
	if (!s || s->dead || sig < 0 || sig >= NSIG)
		return -EINVAL;
	return signal_to(s, sig, s->kill_mode == EVM_KILL_GROUP);
}
