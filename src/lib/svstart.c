/*
 * svstart.c - a service's run, as the table's actions drive it: the spawn,
 * the timer of its start (the start grace, or the ready timeout), the
 * watchdog once it runs, what its exit leaves behind, and the restart
 * backoff. No step here picks a state on its own: it enters one of the
 * states of the cell that runs (evm__sv_enter, supervise.c), or raises an
 * event through evm__sv_dispatch (a timer fired, the exit, a failed spawn).
 *
 * A service has one timer at most (s->timer), cancelled before another is
 * armed, here or by the action that calls in; RELOADING has its own
 * (reload_timer) beside the watchdog's, and a new policy's check its own
 * (policy_timer, supervise.c) beside the backoff's. Every restart goes through
 * the backoff, which doubles from at least MIN_DOUBLING_MS: no spinning.
 */
#include "service.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_DOUBLING_MS 10

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
	if (s->backoff_step > 0 && d < MIN_DOUBLING_MS)
		d = MIN_DOUBLING_MS; /* a backoff_max_ms below it (0) must not make a spin */
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
void evm__sv_schedule_restart(struct evm_service *s, const struct evm_exit *exit, int error)
{
	uint64_t delay = backoff_delay(s);
	s->backoff_exit = exit != NULL; /* a new policy may cancel it (evm__sv_act_policy_backoff) */
	s->next_start_mono = evm__after_ms(evm__mono_ns(), delay);
	if (evm__timer_add_spawn(s->loop, delay, backoff_fire, s, &s->timer) < 0) {
		snprintf(s->msg, sizeof(s->msg), "cannot schedule a restart: out of memory");
		evm__sv_enter(s, EVM_STATE_FATAL, exit, -ENOMEM, 0);
		return;
	}
	evm__sv_enter(s, EVM_STATE_BACKOFF, exit, error, delay);
}

int evm__sv_backoff_for(struct evm_service *s, uint64_t delay_ms)
{
	s->backoff_exit = false; /* resumed: why it waits is not known, its restart stays */
	s->next_start_mono = evm__after_ms(evm__mono_ns(), delay_ms);
	if (evm__timer_add_spawn(s->loop, delay_ms, backoff_fire, s, &s->timer) < 0)
		return -ENOMEM;
	evm__sv_enter(s, EVM_STATE_BACKOFF, NULL, 0, delay_ms);
	return 0;
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
void evm__sv_failed_start(struct evm_service *s, const struct evm_exit *exit, int error)
{
	s->failures++;
	if (!machine_short(exit, error))
		s->start_failures++;
	if (s->start_failures > s->start_retries) {
		size_t n = strlen(s->msg);
		snprintf(s->msg + n, sizeof(s->msg) - n, "%sgave up after %u failed starts in a row",
			 n ? "; " : "", s->start_failures);
		evm__sv_enter(s, EVM_STATE_FATAL, exit, error, 0);
		return;
	}
	evm__sv_schedule_restart(s, exit, error);
}

/* --------------------------------------------------------------- running */

static void grace_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_GRACE, NULL);
}

void evm__sv_ready_timeout_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_READY_TIMEOUT, NULL);
}

/*
 * The watchdog's timer is armed once per period, not per sign of life: a
 * service that says it is alive only moves alive_mono, and the timer, when
 * it fires early, waits for the rest.
 */
void evm__sv_watchdog_fire(struct evm_timer *t, void *data)
{
	struct evm_service *s = data;
	uint64_t now = evm__mono_ns(), due = evm__after_ms(s->alive_mono, s->watchdog_run_ms);
	if (!s->watchdog_run_ms)
		return; /* turned off for this run */
	if (due > now) {
		/* out of memory: no watchdog for this run rather than a false alarm */
		evm_timer_add(s->loop, (due - now + 999999) / 1000000, evm__sv_watchdog_fire, s,
			      &s->timer);
		return;
	}
	evm__sv_dispatch(s, EVM__SV_WATCHDOG, NULL);
}

void evm__sv_reload_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_RELOAD_TIMEOUT, NULL);
}

/* RELOADING's own timer: the watchdog keeps s->timer */
int evm__sv_reload_arm(struct evm_service *s, uint64_t timeout_ms)
{
	evm_timer_cancel(s->reload_timer);
	if (!timeout_ms)
		return 0;
	if (timeout_ms > UINT64_MAX / 2000000)
		timeout_ms = UINT64_MAX / 2000000;
	s->reload_deadline_mono = evm__after_ms(evm__mono_ns(), timeout_ms);
	return evm_timer_add(s->loop, timeout_ms, evm__sv_reload_fire, s, &s->reload_timer);
}

/* STARTING (or STOPPED, adopting) -> RUNNING: the start succeeded */
void evm__sv_became_ready(struct evm_service *s)
{
	evm_timer_cancel(s->timer); /* the start grace's or the ready timeout's */
	s->start_failures = 0;
	if (s->watchdog_run_ms) {
		s->alive_mono = evm__mono_ns();
		evm_timer_add(s->loop, s->watchdog_run_ms, evm__sv_watchdog_fire, s, &s->timer);
	}
	evm__sv_enter(s, EVM_STATE_RUNNING, NULL, 0, 0);
}

/* What every exit leaves behind, whatever the state: then the cell decides. */
void evm__sv_on_proc_exit(struct evm_proc *p, const struct evm_exit *e, void *owner)
{
	struct evm_service *s = owner;
	if (s->before_exit && !s->gone && !s->dead) {
		/*
		 * What it said before it exited and the loop has not read yet is
		 * heard first (a forking daemon's MAINPID= of its child, then its
		 * exit: both queued when the loop looks): a new main process takes
		 * this exit off the service (evm__sv_take_main let go of p).
		 */
		s->exiting = e;
		s->before_exit(s, e, s->before_exit_data);
		s->exiting = NULL;
		if (s->proc != p)
			return;
	}
	evm_timer_cancel(s->timer);
	evm_timer_cancel(s->reload_timer); /* a reload ends with the process */
	s->exit_group = (p->kind & EVM__K_GROUP) != 0;
	s->proc = NULL;
	evm_proc_unref(p);
	s->has_exit = true;
	s->last_exit = *e;
	uint64_t kills;
	s->last_exit.oom_killed = s->oom_known && evm__cg_oom_kills(s->cg, &kills) == 0 &&
				  kills > s->oom_base;
	/* oom_known stays: a pidfile's daemon may carry the run on (the next spawn resets it) */
	s->last_error.stage = EVM_STAGE_NONE;
	s->last_error.error = 0;
	if (evm__sv_pidfile_wait(s))
		return; /* the daemon it forked may be the main process now: its leftovers live */
	evm__sv_exit_decide(s);
}

void evm__sv_exit_decide(struct evm_service *s)
{
	const struct evm_exit *e = &s->last_exit;
	/* stragglers of the group (ESRCH when none). The main process is reaped (a pidfile
	 * wait may have taken seconds), or a zombie of another parent (adopted: its exit
	 * came by its pidfd, and it holds the number): a live process with its pid means
	 * the group emptied and the number is another's, maybe a group leader of its own */
	struct evm__pstat st;
	int there = s->kill_group && s->exit_group ? evm__proc_stat(e->pid, &st) : 1;
	if (there == -ESRCH || (there == 0 && st.state == 'Z'))
		killpg(e->pid, SIGKILL);
	if (!s->cg && evm__sv_session(s)) /* and of its session, wherever they went (end of the dispatch) */
		evm__tree_kill_later(s->loop, s->sid, NULL, false);
	/*
	 * A stable run resets the backoff: at least MIN_DOUBLING_MS up, whatever
	 * stable_ms says (at 0 every run was stable, and a process that fails at
	 * once, with backoff_initial_ms 0, was restarted at once, forever).
	 */
	uint64_t stable = s->stable_ms > MIN_DOUBLING_MS ? s->stable_ms : MIN_DOUBLING_MS;
	if (e->runtime_ns / 1000000 >= stable) {
		s->backoff_step = 0;
		s->failures = 0;
	}
	evm__sv_dispatch(s, EVM__SV_EXIT, &(struct evm__sv_arg){.exit = e});
}

/* A run's timer with what is left of it: the main process changed, or left its tree running. */
void evm__sv_rearm(struct evm_service *s)
{
	uint64_t now = evm__mono_ns();
	evm_timer_cancel(s->timer);
	if (s->failing)
		return; /* the kill's: armed by the stop */
	if (s->state == EVM_STATE_STARTING && s->ready == EVM_READY_DECLARED) {
		if (s->ready_timeout_ms)
			evm_timer_add(s->loop, s->deadline_mono > now ? (s->deadline_mono - now) / 1000000 : 0,
				      evm__sv_ready_timeout_fire, s, &s->timer);
	} else if (s->state == EVM_STATE_STARTING) {
		uint64_t end = evm__after_ms(s->started_mono, s->start_ms);
		evm_timer_add(s->loop, end > now ? (end - now) / 1000000 : 0, grace_fire, s, &s->timer);
	} else if (s->state == EVM_STATE_RUNNING && s->watchdog_run_ms) {
		s->alive_mono = now;
		evm_timer_add(s->loop, s->watchdog_run_ms, evm__sv_watchdog_fire, s, &s->timer);
	}
}

void evm__sv_spawn(struct evm_service *s)
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
	int r = evm__svc_spawn_cgroup(s, &o);
	/* before the run can begin: an OOM kill is oom_kill growing from here */
	s->oom_known = r == 0 && s->cg && evm__cg_oom_kills(s->cg, &s->oom_base) == 0;
	s->oom_kept = false; /* an earlier image's base is for the run it adopts, not a new one */
	/* its start time (the session's and the daemon's record's PID-reuse check) on the clock */
	uint64_t before = evm__boot_tick();
	if (r == 0)
		r = evm__spawn_local(s->loop, &o, &p, false);
	if (r == 0)
		evm__proc_started_within(p, before, evm__boot_tick());
	evm__svc_spawn_done(s, &o);
	if (r < 0) {
		const char *what = s->file ? s->file : s->argv[0];
		snprintf(s->msg, sizeof(s->msg), "%s %s: %s", evm_spawn_stage_name(s->last_error.stage),
			 s->last_error.stage == EVM_STAGE_CWD && s->cwd ? s->cwd : what, strerror(-r));
		evm__sv_dispatch(s, EVM__SV_SPAWN_FAILED, &(struct evm__sv_arg){.error = r});
		return;
	}
	p->owner_cb = evm__sv_on_proc_exit;
	p->owner = s;
	s->proc = p;
	s->main_wait = MAIN_WAIT_NO;
	s->handed_over = false;
	evm__sv_note_session(s, p, false);
	s->started_mono = evm__mono_ns();
	s->failing = FAILING_NO;
	s->watchdog_run_ms = s->watchdog_ms;
	/*
	 * Its EVM_EV_SPAWN once it is in its new state, its process its own: a
	 * subscriber may stop, restart or remove it from there (before, the
	 * service had no process yet: a remove freed it under its start timer,
	 * a restart spawned a second process, a stop was lost). Its own ref: a
	 * callback of the state's event may drop the service's.
	 */
	struct evm_proc *spawned = evm_proc_ref(p);
	if (s->ready == EVM_READY_DECLARED) {
		/* no timer (out of memory): it waits for its word without a limit */
		if (s->ready_timeout_ms) {
			s->deadline_mono = evm__after_ms(s->started_mono, s->ready_timeout_ms);
			evm_timer_add(s->loop, s->ready_timeout_ms, evm__sv_ready_timeout_fire, s, &s->timer);
		}
		evm__sv_enter(s, EVM_STATE_STARTING, NULL, 0, 0);
	} else if (s->start_ms == 0) {
		evm__sv_became_ready(s);
	} else {
		/* no timer (out of memory): it stays STARTING until it exits */
		evm_timer_add(s->loop, s->start_ms, grace_fire, s, &s->timer);
		evm__sv_enter(s, EVM_STATE_STARTING, NULL, 0, 0);
	}
	evm__spawn_announce(s->loop, spawned, s->name);
	evm_proc_unref(spawned);
}
