/*
 * svcalls.c - the public calls that drive a service: each is one event of
 * the table (evm__sv_dispatch), refused (-EINVAL) for a NULL or removed
 * service. evm_service_watchdog, evm_service_set_watchdog,
 * evm_service_extend_timeout and evm_service_signal are not events: they move a deadline or send a
 * signal, and the state stays.
 */
#include "service.h"

#include <errno.h>
#include <signal.h>

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

/* a process (a->adopt) or a tree (a->exit: its main's) taken over: from STOPPED only */
static int adopt(struct evm_service *s, const struct evm__sv_arg *a)
{
	if (s->state != EVM_STATE_STOPPED || s->removing)
		return -EBUSY;
	return evm__sv_dispatch(s, EVM__SV_ADOPT, a);
}

int evm_service_adopt(struct evm_service *s, const struct evm_adopt_opts *opts)
{
	return s && opts ? adopt(s, &(struct evm__sv_arg){.adopt = opts}) : -EINVAL;
}

int evm_service_adopt_tree(struct evm_service *s, const struct evm_exit *main_exit)
{
	return s && main_exit ? adopt(s, &(struct evm__sv_arg){.exit = main_exit}) : -EINVAL;
}

bool evm_service_runs_on_tree(const struct evm_service *s)
{
	/* not while STARTING or stopped for a failure: the takeover would lose it (a reload may go) */
	return s && !s->dead && !s->proc && s->exit_held && s->main_wait == MAIN_WAIT_TREE &&
	       (s->state == EVM_STATE_RUNNING || s->state == EVM_STATE_RELOADING) && !s->failing;
}

bool evm_service_start_pending(const struct evm_service *s)
{
	/* STOPPED too: after the stop, until the spawn's turn comes (svexit.c) */
	return s && !s->dead && !s->removing && s->start_after_stop &&
	       (s->state == EVM_STATE_STOPPING || s->state == EVM_STATE_STOPPED);
}

int evm_service_resume(struct evm_service *s, const struct evm_service_resume *r)
{
	if (!s || !r || s->dead)
		return -EINVAL;
	if (r->state != EVM_STATE_STOPPED && r->state != EVM_STATE_BACKOFF &&
	    r->state != EVM_STATE_EXITED && r->state != EVM_STATE_FATAL)
		return -EINVAL;
	if (s->state != EVM_STATE_STOPPED || s->removing)
		return -EBUSY;
	return evm__sv_dispatch(s, EVM__SV_RESUME, &(struct evm__sv_arg){.resume = r});
}

int evm_service_resume_history(struct evm_service *s, const struct evm_service_history *h)
{
	if (!s || !h || s->dead || h->last_error.error < 0 || h->since.tv_sec < 0 ||
	    h->since.tv_nsec < 0 || h->since.tv_nsec >= 1000000000L)
		return -EINVAL;
	if (s->has_exit)
		return -EBUSY; /* an exit of its own is newer than anything carried over */
	if (h->has_exit) {
		s->has_exit = true;
		s->last_exit = h->last_exit;
	}
	if (h->last_error.stage != EVM_STAGE_NONE)
		s->last_error = h->last_error;
	if (h->since.tv_sec > 0) {
		/* the state's age, on both clocks (the monotonic one says how long in messages) */
		int64_t real = (int64_t)h->since.tv_sec * 1000000000 + h->since.tv_nsec;
		int64_t ago = evm__real_ns() - real;
		uint64_t mono = evm__mono_ns();
		if (ago >= 0 && (uint64_t)ago < mono) {
			s->since_real = real;
			s->since_mono = mono - (uint64_t)ago;
		}
	}
	return 0;
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

int evm_service_detach(struct evm_service *s)
{
	if (!s || s->dead)
		return -EINVAL;
	if (s->removing)
		return 0;
	if (s->state != EVM_STATE_STARTING && s->state != EVM_STATE_RUNNING &&
	    s->state != EVM_STATE_RELOADING && s->state != EVM_STATE_STOPPING)
		return -ESRCH;
	return evm__sv_dispatch(s, EVM__SV_DETACH, NULL);
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

int evm_service_watchdog_trigger(struct evm_service *s)
{
	return evm_service_fail(s, NULL);
}

int evm_service_fail(struct evm_service *s, const char *why)
{
	if (!s || s->dead)
		return -EINVAL;
	if (!s->proc || (s->state != EVM_STATE_STARTING && s->state != EVM_STATE_RUNNING &&
			 s->state != EVM_STATE_RELOADING))
		return -ESRCH;
	return evm__sv_dispatch(s, EVM__SV_TRIGGER, &(struct evm__sv_arg){.why = why});
}

/* not an event: the watchdog's period for this run, from now */
int evm_service_set_watchdog(struct evm_service *s, uint64_t ms)
{
	if (!s || s->dead)
		return -EINVAL;
	if (!s->proc || s->failing ||
	    (s->state != EVM_STATE_STARTING && s->state != EVM_STATE_RUNNING &&
	     s->state != EVM_STATE_RELOADING))
		return -ESRCH;
	s->watchdog_run_ms = ms;
	s->alive_mono = evm__mono_ns();
	if (s->state == EVM_STATE_STARTING)
		return 0; /* armed when it is ready */
	/* RUNNING or RELOADING and not failing: s->timer can only be the watchdog's */
	evm_timer_cancel(s->timer);
	return ms ? evm_timer_add(s->loop, ms, evm__sv_watchdog_fire, s, &s->timer) : 0;
}

int evm_service_reload(struct evm_service *s, int sig, uint64_t timeout_ms)
{
	if (!s || s->dead || sig < 0 || sig >= NSIG)
		return -EINVAL;
	if (s->state == EVM_STATE_RELOADING)
		return -EBUSY;
	if (!s->proc || s->failing || s->state != EVM_STATE_RUNNING)
		return -ESRCH;
	return evm__sv_dispatch(s, EVM__SV_RELOAD,
				&(struct evm__sv_arg){.sig = sig, .timeout_ms = timeout_ms});
}

int evm_service_reloading(struct evm_service *s, uint64_t timeout_ms)
{
	if (!s || s->dead)
		return -EINVAL;
	if (!s->proc || s->failing ||
	    (s->state != EVM_STATE_RUNNING && s->state != EVM_STATE_RELOADING))
		return -ESRCH;
	return evm__sv_dispatch(s, EVM__SV_RELOADING, &(struct evm__sv_arg){.timeout_ms = timeout_ms});
}

/* a RELOADING service's reload timeout, at least ms from now */
static int extend_reload(struct evm_service *s, uint64_t ms)
{
	if (!s->reload_timer)
		return -ESRCH;
	uint64_t now = evm__mono_ns();
	if (ms > UINT64_MAX / 2000000)
		ms = UINT64_MAX / 2000000;
	if (evm__after_ms(now, ms) <= s->reload_deadline_mono)
		return 0;
	return evm__sv_reload_arm(s, ms);
}

/* not an event: the state stays, only the deadline of the timer it has moves */
int evm_service_extend_timeout(struct evm_service *s, uint64_t ms)
{
	if (!s || s->dead)
		return -EINVAL;
	if (s->state == EVM_STATE_RELOADING && !s->failing)
		return extend_reload(s, ms);
	bool ready_wait = s->state == EVM_STATE_STARTING && s->ready == EVM_READY_DECLARED &&
			  !s->failing && s->ready_timeout_ms;
	bool kill_wait = s->state == EVM_STATE_STOPPING || s->failing;
	if (!s->timer || !(ready_wait || kill_wait))
		return -ESRCH;
	uint64_t now = evm__mono_ns();
	if (ms > UINT64_MAX / 2000000)
		ms = UINT64_MAX / 2000000;
	if (evm__after_ms(now, ms) <= s->deadline_mono)
		return 0;
	evm_timer_cancel(s->timer);
	s->deadline_mono = evm__after_ms(now, ms);
	return evm_timer_add(s->loop, ms, ready_wait ? evm__sv_ready_timeout_fire : evm__sv_kill_fire, s, &s->timer);
}

int evm_service_deadline(const struct evm_service *s, uint64_t *ms_left)
{
	if (!s || s->dead || !ms_left)
		return -EINVAL;
	uint64_t end;
	int kind = EVM_DEADLINE_READY;
	struct evm_timer *timer = s->timer;
	if (s->state == EVM_STATE_RELOADING && !s->failing) {
		end = s->reload_deadline_mono; /* its reload's timeout, as extended */
		timer = s->reload_timer;
	} else if (s->state == EVM_STATE_STOPPING ||
	    (s->failing && (s->state == EVM_STATE_STARTING || s->state == EVM_STATE_RUNNING))) {
		end = s->deadline_mono; /* the SIGKILL's */
		kind = EVM_DEADLINE_KILL;
	} else if (s->state == EVM_STATE_STARTING && s->ready == EVM_READY_DECLARED &&
		   s->ready_timeout_ms) {
		end = s->deadline_mono;
	} else if (s->state == EVM_STATE_STARTING && s->ready == EVM_READY_STARTED) {
		end = evm__after_ms(s->started_mono, s->start_ms);
	} else {
		return -ESRCH;
	}
	if (!timer)
		return -ESRCH; /* none armed (no timeout, or out of memory): nothing to hand over */
	uint64_t now = evm__mono_ns();
	*ms_left = end > now ? (end - now + 999999) / 1000000 : 0;
	return kind;
}

int evm_service_signal(struct evm_service *s, int sig)
{
	if (!s || s->dead || sig < 0 || sig >= NSIG)
		return -EINVAL;
	if (evm__forked(s->loop))
		return -ECHILD;
	return evm__sv_signal_to(s, sig, s->kill_mode == EVM_KILL_GROUP);
}
