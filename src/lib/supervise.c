/*
 * supervise.c - services: a process plus a policy that decides what happens
 * after it dies (restart, back off, give up), and how it is stopped.
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
 * STOPPED   start, restart  -> STARTING|RUNNING              spawn (RUNNING if start_ms is 0)
 *           stop            -> (stays)                       noted: stopped by the user
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 * STARTING  start           -> (stays)                       nothing: it runs
 *           stop            -> STOPPING                      stop_signal; SIGKILL at stop_timeout
 *           restart         -> STOPPING                      stop, then start after the exit
 *           remove          -> STOPPING                      stop, then removed after the exit
 *           exit            -> STOPPED|BACKOFF|EXITED|FATAL  failed start, unless policy is done
 *           start_ms up     -> RUNNING                       started
 * RUNNING   start           -> (stays)                       nothing: it runs
 *           stop            -> STOPPING                      stop_signal; SIGKILL at stop_timeout
 *           restart         -> STOPPING                      stop, then start after the exit
 *           remove          -> STOPPING                      stop, then removed after the exit
 *           exit            -> STOPPED|BACKOFF|EXITED|FATAL  restart policy and max_retries
 * BACKOFF   start, restart  -> STARTING|RUNNING              spawn (RUNNING if start_ms is 0)
 *           stop            -> STOPPED                       cancel the restart
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 *           backoff up      -> STARTING|RUNNING              spawn again
 * STOPPING  start           -> (stays)                       start after the exit
 *           stop            -> (stays)                       no start after the exit
 *           restart         -> (stays)                       start after the exit
 *           remove          -> (stays)                       removed after the exit
 *           exit            -> STOPPED|(removed)             removed, or started again, if asked
 *           stop_timeout    -> (stays)                       SIGKILL
 * EXITED    start, restart  -> STARTING|RUNNING              spawn (RUNNING if start_ms is 0)
 *           stop            -> STOPPED                       stopped by the user
 *           remove          -> (removed)                     removed at once
 *           spawn failed    -> BACKOFF|FATAL                 FATAL past start_retries
 * FATAL     start, restart  -> STARTING|RUNNING              spawn (RUNNING if start_ms is 0)
 *           stop            -> STOPPED                       stopped by the user
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
 * One timer per service at most: the start grace (STARTING), the backoff
 * (BACKOFF) or the kill escalation (STOPPING). A service never spins: every
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

#define DEF_START_MS 1000
#define DEF_START_RETRIES 3
#define DEF_BACKOFF_INITIAL_MS 100
#define DEF_BACKOFF_MAX_MS 30000
#define DEF_STABLE_MS 10000
#define DEF_STOP_TIMEOUT_MS 10000
#define MIN_DOUBLING_MS 10
#define SHUTDOWN_PROC_TIMEOUT_MS 10000

struct evm_service {
	struct evm_loop *loop;
	char *name;

	/* what to run: a deep copy of the caller's spawn options */
	struct evm_spawn_opts spawn;
	char **argv, **envp, **env_extra, *file, *cwd;
	gid_t *groups;
	struct evm_rlimit *rlimits;

	/* policy */
	enum evm_restart restart;
	unsigned max_retries;
	uint32_t success[8]; /* bitmap of exit codes 0..255 */
	uint64_t start_ms, backoff_initial_ms, backoff_max_ms, stable_ms, stop_timeout_ms;
	unsigned start_retries, jitter;
	int stop_signal;
	bool kill_group;
	evm_event_cb on_event;
	void *data;

	/* state */
	enum evm_state state;
	struct evm_proc *proc; /* our reference while it runs */
	struct evm_timer *timer;
	unsigned restarts, failures, start_failures, backoff_step;
	uint64_t started_mono, since_mono, next_start_mono;
	int64_t since_real;
	bool stopped_by_user;
	bool start_after_stop; /* restart(), or start() while STOPPING */
	bool removing;	       /* free once stopped */
	bool gone;	       /* its removal is under way: every event is ignored */
	bool dead;	       /* unlinked; freed through the loop's release queue */
	const struct evm__sv_cell *cell; /* the cell running; NULL once it changed the state */
	struct evm__release rel;
	bool has_exit;
	struct evm_exit last_exit;
	struct evm_spawn_error last_error;
	char msg[160];

	struct evm_service *prev, *next;
};


static void spawn_now(struct evm_service *s);
static void unlink_svc(struct evm_service *s, const struct evm_exit *exit);

/* ------------------------------------------------------------ name index */

static size_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return (size_t)h;
}

static size_t index_slot(const struct evm__svclist *l, const char *name)
{
	size_t mask = l->icap - 1, i = name_hash(name) & mask;
	while (l->index[i] && strcmp(l->index[i]->name, name) != 0)
		i = (i + 1) & mask;
	return i;
}

static int index_put(struct evm__svclist *l, struct evm_service *s)
{
	if ((l->ilen + 1) * 2 > l->icap) {
		size_t cap = l->icap ? l->icap * 2 : 64;
		struct evm_service **old = l->index;
		size_t oldcap = l->icap;
		if (!(l->index = calloc(cap, sizeof(*l->index)))) {
			l->index = old;
			return -ENOMEM;
		}
		l->icap = cap;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i])
				l->index[index_slot(l, old[i]->name)] = old[i];
		free(old);
	}
	l->index[index_slot(l, s->name)] = s;
	l->ilen++;
	return 0;
}

static struct evm_service *index_get(const struct evm__svclist *l, const char *name)
{
	return l->icap ? l->index[index_slot(l, name)] : NULL;
}

static void index_del(struct evm__svclist *l, struct evm_service *s)
{
	if (!l->icap)
		return;
	size_t mask = l->icap - 1, hole = index_slot(l, s->name);
	if (l->index[hole] != s)
		return;
	l->ilen--;
	/* backward shift: no tombstones */
	for (size_t j = (hole + 1) & mask; l->index[j]; j = (j + 1) & mask) {
		size_t home = name_hash(l->index[j]->name) & mask;
		bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (!stays) {
			l->index[hole] = l->index[j];
			hole = j;
		}
	}
	l->index[hole] = NULL;
}

/* ------------------------------------------------------------- helpers */

static bool success_code(const struct evm_service *s, int code)
{
	return code >= 0 && code < 256 && (s->success[code / 32] >> (code % 32) & 1u);
}

static char **dup_vec(char *const *v)
{
	if (!v)
		return NULL;
	size_t n = 0;
	while (v[n])
		n++;
	char **d = calloc(n + 1, sizeof(*d));
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!(d[i] = strdup(v[i]))) {
			while (i--)
				free(d[i]);
			free(d);
			return NULL;
		}
	}
	return d;
}

static void free_vec(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static void svc_free(struct evm_service *s)
{
	free(s->name);
	free_vec(s->argv);
	free_vec(s->envp);
	free_vec(s->env_extra);
	free(s->file);
	free(s->cwd);
	free(s->groups);
	free(s->rlimits);
	free(s);
}

static void svc_released(struct evm__release *r)
{
	svc_free(evm__container_of(r, struct evm_service, rel));
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

static int send_signal(struct evm_service *s, int sig)
{
	if (!s->proc)
		return -ESRCH;
	if (s->kill_group) {
		int r = evm_proc_signal_group(s->proc, sig);
		if (r != -EPERM)
			return r;
	}
	return evm_proc_signal(s->proc, sig);
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
	if (s->start_ms == 0) {
		s->start_failures = 0;
		enter(s, EVM_STATE_RUNNING, NULL, 0, 0);
		return;
	}
	/* no timer (out of memory): it stays STARTING until it exits */
	evm_timer_add(s->loop, s->start_ms, grace_fire, s, &s->timer);
	enter(s, EVM_STATE_STARTING, NULL, 0, 0);
}

/* ----------------------------------------------------------- the actions */

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
	evm_timer_cancel(s->timer);
	if (s->stop_timeout_ms == 0 || s->stop_signal == SIGKILL) {
		send_signal(s, SIGKILL);
	} else {
		send_signal(s, s->stop_signal);
		/* a stopped (SIGSTOP) process would sit on the signal until continued */
		if (s->stop_signal != SIGCONT)
			send_signal(s, SIGCONT);
		if (evm_timer_add(s->loop, s->stop_timeout_ms, kill_fire, s, &s->timer) < 0)
			send_signal(s, SIGKILL);
	}
	enter(s, EVM_STATE_STOPPING, NULL, 0, 0);
	return 0;
}

static int act_restart_proc(struct evm_service *s, const struct evm__sv_arg *a)
{
	act_stop_proc(s, a);
	s->stopped_by_user = false;
	s->start_after_stop = true;
	return 0;
}

static int act_restart_after_stop(struct evm_service *s, const struct evm__sv_arg *a)
{
	s->stopped_by_user = false;
	s->start_after_stop = true;
	return 0;
}

static void mark_removing(struct evm_service *s)
{
	if (!s->removing)
		index_del(&s->loop->svcs, s); /* the name is free at once */
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
	bool ok = exit_ok(s, e), again = policy_again(s, ok);
	if (again || !ok)
		snprintf(s->msg, sizeof(s->msg), "exited during its start period (%llu ms)",
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
	bool ok = exit_ok(s, e);
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

static int act_grace(struct evm_service *s, const struct evm__sv_arg *a)
{
	evm_timer_cancel(s->timer); /* fired already, unless a test dispatched the event */
	s->start_failures = 0;
	enter(s, EVM_STATE_RUNNING, NULL, 0, 0);
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
	send_signal(s, SIGKILL);
	return 0;
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
};

#define TO(st) EVM__SV_TO(EVM_STATE_##st)
#define GONE EVM__SV_TO(EVM__SV_REMOVED)
#define SPAWNS TO(STARTING) | TO(RUNNING)
#define RETRIES TO(BACKOFF) | TO(FATAL)
#define POLICY TO(STOPPED) | TO(BACKOFF) | TO(EXITED) | TO(FATAL)

/* the cells every state without a process shares */
#define IDLE_ROW(stop_act, stop_to, stop_what)                                                     \
	[EVM__SV_START] = {act_start, SPAWNS, "spawn (RUNNING if start_ms is 0)"},         \
	[EVM__SV_STOP] = {stop_act, stop_to, stop_what},                                           \
	[EVM__SV_RESTART] = {act_start, SPAWNS, "spawn (RUNNING if start_ms is 0)"},       \
	[EVM__SV_REMOVE] = {act_remove_idle, GONE, "removed at once"},                             \
	[EVM__SV_SPAWN_FAILED] = {act_spawn_failed, RETRIES, "FATAL past start_retries"}

/* and those of a state with a process, STARTING and RUNNING */
#define PROC_ROW                                                                                   \
	[EVM__SV_START] = {NULL, 0, "nothing: it runs"},                                           \
	[EVM__SV_STOP] = {act_stop_proc, TO(STOPPING), "stop_signal; SIGKILL at stop_timeout"}, \
	[EVM__SV_RESTART] = {act_restart_proc, TO(STOPPING), "stop, then start after the exit"},   \
	[EVM__SV_REMOVE] = {act_remove_proc, TO(STOPPING), "stop, then removed after the exit"}

const struct evm__sv_cell evm__sv_table[EVM__SV_NSTATES][EVM__SV_NEVENTS] = {
	[EVM_STATE_STOPPED] = {IDLE_ROW(act_stop_noted, 0, "noted: stopped by the user")},
	[EVM_STATE_STARTING] = {
		PROC_ROW,
		[EVM__SV_EXIT] = {act_exit_starting, POLICY, "failed start, unless policy is done"},
		[EVM__SV_GRACE] = {act_grace, TO(RUNNING), "started"},
	},
	[EVM_STATE_RUNNING] = {
		PROC_ROW,
		[EVM__SV_EXIT] = {act_exit_running, POLICY, "restart policy and max_retries"},
	},
	[EVM_STATE_BACKOFF] = {
		IDLE_ROW(act_stop_idle, TO(STOPPED), "cancel the restart"),
		[EVM__SV_BACKOFF_DONE] = {act_backoff_done, SPAWNS, "spawn again"},
	},
	[EVM_STATE_STOPPING] = {
		[EVM__SV_START] = {act_start_after_stop, 0, "start after the exit"},
		[EVM__SV_STOP] = {act_stop_noted, 0, "no start after the exit"},
		[EVM__SV_RESTART] = {act_restart_after_stop, 0, "start after the exit"},
		[EVM__SV_REMOVE] = {act_remove_after_stop, 0, "removed after the exit"},
		[EVM__SV_EXIT] = {act_exit_stopping, TO(STOPPED) | GONE, "removed, or started again, if asked"},
		[EVM__SV_STOP_TIMEOUT] = {act_kill, 0, "SIGKILL"},
	},
	[EVM_STATE_EXITED] = {IDLE_ROW(act_stop_idle, TO(STOPPED), "stopped by the user")},
	[EVM_STATE_FATAL] = {IDLE_ROW(act_stop_idle, TO(STOPPED), "stopped by the user")},
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

/* ---------------------------------------------------------------- public */

static int copy_opts(struct evm_service *s, const struct evm_service_opts *o)
{
	const struct evm_spawn_opts *so = &o->spawn;
	s->spawn = *so;
	s->spawn.on_exit = NULL;
	s->spawn.data = NULL;
	s->spawn.handler = NULL;
	s->spawn.error = NULL;
	if (!(s->argv = dup_vec(so->argv)) || (so->envp && !(s->envp = dup_vec(so->envp))) ||
	    (so->env_extra && !(s->env_extra = dup_vec(so->env_extra))) ||
	    (so->file && !(s->file = strdup(so->file))) || (so->cwd && !(s->cwd = strdup(so->cwd))))
		return -ENOMEM;
	if (so->ngroups) {
		if (!(s->groups = malloc(so->ngroups * sizeof(gid_t))))
			return -ENOMEM;
		memcpy(s->groups, so->groups, so->ngroups * sizeof(gid_t));
	}
	if (so->nrlimits) {
		if (!(s->rlimits = malloc(so->nrlimits * sizeof(*s->rlimits))))
			return -ENOMEM;
		memcpy(s->rlimits, so->rlimits, so->nrlimits * sizeof(*s->rlimits));
	}
	s->spawn.argv = s->argv;
	s->spawn.envp = s->envp;
	s->spawn.env_extra = s->env_extra;
	s->spawn.file = s->file;
	s->spawn.cwd = s->cwd;
	s->spawn.groups = s->groups;
	s->spawn.rlimits = s->rlimits;
	if (o->kill_group && !(so->flags & EVM_SPAWN_SETSID)) {
		s->spawn.flags |= EVM_SPAWN_SETPGID;
		s->spawn.pgid = 0;
	}
	return 0;
}

static bool policy_valid(const struct evm_service_opts *o)
{
	if ((unsigned)o->restart > EVM_RESTART_UNLESS_STOPPED || o->backoff_jitter > 100 ||
	    o->stop_signal < 0 || o->stop_signal >= NSIG || (o->nsuccess_codes && !o->success_codes))
		return false;
	for (size_t i = 0; i < o->nsuccess_codes; i++)
		if (o->success_codes[i] < 0 || o->success_codes[i] > 255)
			return false;
	return true;
}

/* What decides the service's fate, not what it runs: may change while it runs. */
static void set_policy(struct evm_service *s, const struct evm_service_opts *o)
{
	s->restart = o->restart;
	s->max_retries = o->max_retries;
	memset(s->success, 0, sizeof(s->success));
	if (o->nsuccess_codes) {
		for (size_t i = 0; i < o->nsuccess_codes; i++)
			s->success[o->success_codes[i] / 32] |= 1u << (o->success_codes[i] % 32);
	} else {
		s->success[0] = 1; /* exit 0 */
	}
#define PICK(field, flag, def) (((o->set & (flag)) || o->field) ? o->field : (def))
	s->start_ms = PICK(start_ms, EVM_SVC_START_MS, DEF_START_MS);
	s->start_retries = PICK(start_retries, EVM_SVC_START_RETRIES, DEF_START_RETRIES);
	s->backoff_initial_ms = PICK(backoff_initial_ms, EVM_SVC_BACKOFF_INITIAL, DEF_BACKOFF_INITIAL_MS);
	s->backoff_max_ms = PICK(backoff_max_ms, EVM_SVC_BACKOFF_MAX, DEF_BACKOFF_MAX_MS);
	s->stable_ms = PICK(stable_ms, EVM_SVC_STABLE_MS, DEF_STABLE_MS);
	s->stop_timeout_ms = PICK(stop_timeout_ms, EVM_SVC_STOP_TIMEOUT, DEF_STOP_TIMEOUT_MS);
#undef PICK
	s->jitter = o->backoff_jitter;
	s->stop_signal = o->stop_signal ? o->stop_signal : SIGTERM;
}

int evm_service_new(struct evm_loop *loop, const struct evm_service_opts *o, struct evm_service **out)
{
	if (!loop || !o || !o->name || !*o->name || !o->spawn.argv || !o->spawn.argv[0])
		return -EINVAL;
	if (!policy_valid(o))
		return -EINVAL;
	for (int i = 0; i < 3; i++)
		if (o->spawn.stdio[i].mode == EVM_STDIO_PIPE)
			return -EINVAL; /* a new pipe per restart: use EVM_STDIO_FD with your own */
	if (evm_service_find(loop, o->name))
		return -EEXIST;

	struct evm_service *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	if (!(s->name = strdup(o->name)) || copy_opts(s, o) < 0) {
		svc_free(s);
		return -ENOMEM;
	}
	set_policy(s, o);
	s->kill_group = o->kill_group;
	s->on_event = o->on_event;
	s->data = o->data;
	s->state = EVM_STATE_STOPPED;
	s->since_mono = evm__mono_ns();
	s->since_real = evm__real_ns();

	struct evm__svclist *l = &loop->svcs;
	if (index_put(l, s) < 0) {
		svc_free(s);
		return -ENOMEM;
	}
	s->prev = l->last;
	if (l->last)
		l->last->next = s;
	else
		l->first = s;
	l->last = s;
	l->n++;
	if (out)
		*out = s;
	return 0;
}

int evm_service_set_policy(struct evm_service *s, const struct evm_service_opts *o)
{
	if (!s || s->dead || !o || !policy_valid(o))
		return -EINVAL;
	set_policy(s, o);
	return 0;
}

struct evm_service *evm_service_find(struct evm_loop *loop, const char *name)
{
	if (!loop || !name)
		return NULL;
	return index_get(&loop->svcs, name);
}


/* The end of a removed service: its last event, then freed when the iteration ends. */
static void unlink_svc(struct evm_service *s, const struct evm_exit *exit)
{
	enum evm_state old = s->state;
	on_table(s, EVM__SV_TO(EVM__SV_REMOVED));
	s->gone = true;
	s->state = EVM_STATE_STOPPED;
	emit(s, old, exit, 0, 0, true);
	struct evm__svclist *l = &s->loop->svcs;
	if (s->prev)
		s->prev->next = s->next;
	else
		l->first = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->last = s->prev;
	l->n--;
	s->dead = true;
	/*
	 * Callers up the stack may still hold it, or walk on from it: its links
	 * stay as they are, and it is freed when the outermost dispatch ends.
	 */
	evm__release(s->loop, &s->rel, svc_released);
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

int evm_service_signal(struct evm_service *s, int sig)
{
	if (!s || s->dead || sig < 0 || sig >= NSIG)
		return -EINVAL;
	return send_signal(s, sig);
}

/* The end of a removed service: its last event, then freed when the iteration ends. */
void evm_service_info(const struct evm_service *s, struct evm_service_info *info)
{
	memset(info, 0, sizeof(*info));
	if (!s)
		return;
	uint64_t now = evm__mono_ns();
	info->name = s->name;
	info->state = s->state;
	info->pid = s->proc ? evm_proc_pid(s->proc) : 0;
	info->restarts = s->restarts;
	info->failures = s->failures;
	info->start_failures = s->start_failures;
	info->stopped_by_user = s->stopped_by_user;
	info->since = evm__ns_to_ts(s->since_real);
	if (s->proc)
		info->uptime_ms = (now - s->started_mono) / 1000000;
	info->has_exit = s->has_exit;
	if (s->has_exit)
		info->last_exit = s->last_exit;
	info->last_error = s->last_error;
	if (s->state == EVM_STATE_BACKOFF && s->next_start_mono > now)
		info->next_start_ms = (s->next_start_mono - now + 999999) / 1000000;
}

void *evm_service_data(const struct evm_service *s)
{
	return s ? s->data : NULL;
}

enum evm_state evm_service_state(const struct evm_service *s)
{
	return s ? s->state : EVM_STATE_STOPPED;
}

const char *evm_service_name(const struct evm_service *s)
{
	return s ? s->name : NULL;
}

struct evm_proc *evm_service_proc(const struct evm_service *s)
{
	return s ? s->proc : NULL;
}

void evm_service_foreach(struct evm_loop *loop, void (*fn)(struct evm_service *, void *), void *data)
{
	if (!loop || !fn)
		return;
	evm__dispatch_enter(loop); /* fn may remove any service: they stay allocated */
	for (struct evm_service *s = loop->svcs.first, *next; s; s = next) {
		next = s->next; /* a service fn creates is not visited */
		if (!s->dead && !s->removing)
			fn(s, data);
	}
	evm__dispatch_leave(loop);
}

const char *evm_state_name(enum evm_state st)
{
	static const char *const names[] = {
		[EVM_STATE_STOPPED] = "stopped", [EVM_STATE_STARTING] = "starting",
		[EVM_STATE_RUNNING] = "running", [EVM_STATE_BACKOFF] = "backoff",
		[EVM_STATE_STOPPING] = "stopping", [EVM_STATE_EXITED] = "exited",
		[EVM_STATE_FATAL] = "fatal",
	};
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "unknown";
}

/* ---------------------------------------------------------- loop hooks */

void evm__services_free(struct evm_loop *loop)
{
	/* the loop kills and reaps the processes next; nothing may call back here */
	for (struct evm_service *s = loop->svcs.first; s; s = s->next) {
		evm_timer_cancel(s->timer);
		if (s->proc) {
			s->proc->owner_cb = NULL;
			evm_proc_unref(s->proc);
			s->proc = NULL;
		}
	}
	while (loop->svcs.first) {
		struct evm_service *s = loop->svcs.first;
		loop->svcs.first = s->next;
		svc_free(s);
	}
	loop->svcs.last = NULL;
	loop->svcs.n = 0;
	free(loop->svcs.index);
	loop->svcs.index = NULL;
	loop->svcs.icap = loop->svcs.ilen = 0;
}

/* ------------------------------------------------------------- shutdown */

static bool svc_busy(const struct evm_service *s)
{
	return s->state == EVM_STATE_STARTING || s->state == EVM_STATE_RUNNING ||
	       s->state == EVM_STATE_STOPPING;
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
