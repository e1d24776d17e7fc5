/*
 * svstop.c - how a service is stopped: stop_signal to its process, its
 * process group or every process of its cgroup, or of its session without
 * one (kill_mode), SIGCONT after
 * it, and SIGKILL at stop_timeout (cgroup.kill with a cgroup). A stop
 * enters no state on its own: the cell that calls it enters STOPPING, and
 * the exit (with a cgroup, and its emptying) ends the stop.
 */
#include "service.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

/* sig to the process, or first to its group (refused there: to the process) */
int evm__sv_signal_to(struct evm_service *s, int sig, bool group)
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
	return evm__sv_signal_to(s, sig, s->kill_group);
}

/*
 * Some process of it is left in its cgroup (read now: the watch may lag).
 * Unwatched (no fd was left), nothing would tell when it empties. Busy, the
 * watch is told: an exit held until the cgroup empties waits for its report,
 * which must come even if the report of the filling was not read yet.
 */
bool evm__sv_cg_busy(const struct evm_service *s)
{
	if (!s->cgw || evm_cgroup_populated(s->cg) <= 0)
		return false;
	evm__cgwatch_saw_populated(s->cgw);
	return true;
}

/*
 * TREE without a cgroup: the service's tree is the session its main process
 * leads (a spawn with SETSID, or an adopted session leader), found in /proc
 * when a stop needs it (evm_tree_signal): its members wherever they were
 * re-parented, and their descendants. What called setsid and lost its
 * parent before that is out of reach. An adopted main that does not lead
 * its session (one an earlier main handed over to: MAINPID=, a pidfile,
 * then a re-exec or a crash of ours) is in the session the service's first
 * main made, when the service's spawns make their own (never ours).
 */
void evm__sv_note_session(struct evm_service *s, struct evm_proc *p, bool adopted)
{
	bool leads = adopted ? p->adopt_sid == p->pid
			     : (s->spawn.flags & (EVM_SPAWN_SETSID | EVM_SPAWN_SETCTTY)) != 0;
	s->main_leads = leads			  ? MAIN_LEADS_SESSION
			: p->kind & EVM__K_GROUP ? MAIN_LEADS_GROUP
						  : MAIN_LEADS_NOTHING;
	s->leader = p->pid;
	s->sid = 0;
	if (s->cg || s->kill_mode != EVM_KILL_TREE)
		return;
	if (leads)
		s->sid = p->pid;
	else if (adopted && p->adopt_sid > 0 &&
		 (s->spawn.flags & (EVM_SPAWN_SETSID | EVM_SPAWN_SETCTTY)) && p->adopt_sid != getsid(0))
		s->sid = p->adopt_sid;
	s->sid_start = 0;
	/* its leader gone already: the members keep the number (sid_start 0) */
	if (s->sid && (s->sid == p->pid ? evm_proc_start_time_of(p, &s->sid_start)
					: evm_proc_start_time(s->sid, &s->sid_start)) < 0)
		s->sid_start = 0;
}

/*
 * The session is known by its number only, kept after the main process's
 * exit and through a main process taken from MAINPID= or a pidfile. A
 * number is not reused while any process is in that session, so a process
 * with that pid and another start time than its leader's (or any, when it
 * had none when noted) means the session emptied: the number is another
 * session's now, and signalling it would reach strangers.
 */
pid_t evm__sv_session(struct evm_service *s)
{
	uint64_t start;
	if (s->sid && evm_proc_start_time(s->sid, &start) == 0 && start != s->sid_start)
		s->sid = 0;
	return s->sid;
}

/*
 * A stop's signal: every process of its cgroup or session (TREE), else the
 * process (or group). A session's SIGKILL goes at the end of the dispatch,
 * with every other session's (session.c): the process's and group's now.
 * then (if not 0) follows sig to each process: in the same cgroup walk.
 */
static void stop_send2(struct evm_service *s, int sig, int then)
{
	int r = -1;
	if (!s->cg)
		evm__sv_session(s);
	if (!s->cg && s->sid && sig == SIGKILL) {
		/* the main process too, after the sweep: killed first, the child it
		 * made call setsid would be re-parented, out of the sweep's reach */
		evm__tree_kill_later(s->loop, s->sid, s->proc, s->kill_group);
		return;
	} else if (!s->cg && s->sid) {
		r = evm__tree_signal_shared(s->loop, s->sid, sig);
		if (then)
			evm__tree_signal_shared(s->loop, s->sid, then);
	} else if (s->cg && s->kill_mode == EVM_KILL_TREE)
		r = sig == SIGKILL ? evm_cgroup_kill(s->cg) : evm__cgroup_signal2(s->cg, sig, then);
	if (r <= 0 || sig == SIGKILL) { /* the main process was not among them */
		send_signal(s, sig);
		if (then)
			send_signal(s, then);
	}
}

void evm__sv_stop_send(struct evm_service *s, int sig)
{
	stop_send2(s, sig, 0);
}

void evm__sv_kill_fire(struct evm_timer *t, void *data)
{
	evm__sv_dispatch(data, EVM__SV_STOP_TIMEOUT, NULL);
}

/* SIGKILL at deadline_mono: (again) after an exit that left the cgroup busy */
void evm__sv_arm_kill(struct evm_service *s)
{
	uint64_t now = evm__mono_ns();
	uint64_t ms = s->deadline_mono > now ? (s->deadline_mono - now + 999999) / 1000000 : 0;
	if (evm_timer_add(s->loop, ms, evm__sv_kill_fire, s, &s->timer) < 0)
		evm__sv_stop_send(s, SIGKILL);
}

/*
 * stop_signal now (unless sent: by whoever stopped it before we took it
 * over), SIGKILL at stop_timeout (evm__sv_kill_fire); at once without one.
 * The caller changes the state.
 */
void evm__sv_send_stop(struct evm_service *s, bool sent)
{
	evm_timer_cancel(s->timer);
	s->exit_held = false;
	if (s->stop_timeout_ms == 0 || s->stop_signal == SIGKILL) {
		evm__sv_stop_send(s, SIGKILL);
		return;
	}
	/* a stopped (SIGSTOP) process would sit on the signal until continued */
	if (!sent)
		stop_send2(s, s->stop_signal, s->stop_signal != SIGCONT ? SIGCONT : 0);
	s->deadline_mono = evm__after_ms(evm__mono_ns(), s->stop_timeout_ms);
	evm__sv_arm_kill(s);
}
