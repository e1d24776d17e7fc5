/*
 * service.h - what service.c (a service's definition: options, list, name
 * index, accessors) and supervise.c, svexit.c, svstart.c, svstop.c,
 * svcalls.c (its state machine) share, and what the table's test sees: the events a service
 * reacts to and the state x event table.
 *
 * Every change of a service's state is one cell of evm__sv_table, run by
 * evm__sv_dispatch; supervise.c's header shows the table as text.
 */
#ifndef EVM_SERVICE_H
#define EVM_SERVICE_H

#include "internal.h"

struct evm__sv_cell;

struct evm_service {
	struct evm_loop *loop;
	char *name;

	/* what to run: a deep copy of the caller's spawn options */
	struct evm_spawn_opts spawn;
	char **argv, **envp, **env_extra, *file, *cwd;
	gid_t *groups;
	struct evm_rlimit *rlimits;
	struct evm_fd_map *extra_fds; /* the arrays only: the fds in them stay the caller's */
	struct evm_id_map *uid_map, *gid_map;
	int *setns_fds;
	char *hostname;

	/* policy */
	enum evm_restart restart;
	unsigned max_retries;
	uint32_t success[8]; /* bitmap of exit codes 0..255 */
	uint64_t start_ms, backoff_initial_ms, backoff_max_ms, stable_ms, stop_timeout_ms;
	unsigned start_retries, jitter;
	enum evm_ready ready;
	uint64_t ready_timeout_ms, watchdog_ms;
	int stop_signal;
	bool kill_group;		/* a stop signals the group; its stragglers die with the main */
	pid_t sid;			/* TREE without a cgroup: the session the last main process
					   led (svstop.c), 0: none; kept after its exit */
	uint64_t sid_start;		/* its leader's start time when noted, 0: it had none then
					   (evm__sv_session: a later one with that pid is another's) */
	uint8_t main_leads;		/* what the main process leads: MAIN_LEADS_* (svmain.c) */
	pid_t leader;			/* that main process's pid: the session's or group's
					   number, which outlives it while they have members */
	enum evm_kill_mode kill_mode;	/* resolved: never AUTO */
	struct evm_cgroup *cg;		/* its own reference, or NULL */
	uint64_t oom_base;		/* its memory.events oom_kill when the run began */
	bool oom_known;			/* oom_base was read (memory controller enabled) */
	bool oom_kept;			/* an earlier image's oom_base (cgroup_kept): */
	bool oom_kept_known;		/* taken at the adoption of its process, not read */
	uint64_t oom_kept_base;		/* (known false: it had none, no memory.events) */
	struct evm_cgroup_watch *cgw;	/* its populated flag; NULL: not watched (EMFILE) */
	bool cgw_later;			/* cgroup not made yet: watched once a spawn made it */
	bool exit_held;			/* STOPPING: the exit waits for the cgroup to empty */
	enum evm_track track;		/* resolved: never AUTO */
	char *pidfile;			/* or NULL */
	uint8_t main_wait;		/* STARTING/RUNNING without a main process: MAIN_WAIT_* */
	bool handed_over;		/* this run's main came from the pidfile: its exit is final */
	bool exit_group;		/* the exited main led its process group */
	struct evm_timer *main_timer;	/* the pidfile's retries */
	uint64_t pidfile_until;		/* CLOCK_MONOTONIC ns: the retries end */
	evm_event_cb on_event;
	void *data;
	int (*before_spawn)(struct evm_service *, struct evm_spawn_opts *, char *, size_t, void *);
	void *before_spawn_data;
	void (*before_exit)(struct evm_service *, const struct evm_exit *, void *);
	void *before_exit_data;
	const struct evm_exit *exiting; /* in before_exit: the main process's exit */

	/* state */
	enum evm_state state;
	struct evm_proc *proc; /* our reference while it runs */
	struct evm_timer *timer;
	unsigned restarts, failures, start_failures, backoff_step;
	uint64_t started_mono, since_mono, next_start_mono;
	int64_t since_real;
	uint64_t deadline_mono;	/* of the ready timeout (STARTING) or the kill (STOPPING) */
	uint64_t alive_mono;	/* the last evm_service_watchdog (RUNNING) */
	uint64_t watchdog_run_ms; /* this run's: watchdog_ms at the spawn, or evm_service_set_watchdog's */
	uint8_t failing;	/* stopped by us (not ready in time, watchdog): its exit fails */
	/* RELOADING: its own timer (the watchdog's s->timer still runs), and whether the
	   service said RELOADING itself (a ready before that is not the reload's) */
	struct evm_timer *reload_timer;
	uint64_t reload_deadline_mono;
	bool reload_noted;
	bool stopped_by_user;
	bool start_after_stop; /* restart(), or start() while STOPPING */
	bool removing;	       /* free once stopped */
	bool gone;	       /* its removal is under way: every event is ignored */
	bool dead;	       /* unlinked; freed through the loop's release queue */
	const struct evm__sv_cell *cell; /* the cell running; NULL once it changed the state */
	struct evm__release rel;
	bool has_exit;
	struct evm_exit last_exit;
	/* BACKOFF entered after an exit (not a failed spawn, not a resume): a new policy
	 * may no longer restart after it; policy_timer: its check, a loop turn after
	 * evm_service_set_policy (never inside it: the caller may be half way through) */
	bool backoff_exit;
	struct evm_timer *policy_timer;
	struct evm_spawn_error last_error;
	char msg[160];
	char fail_why[112];	/* FAILING_TOLD: why, as evm_service_fail was told */

	struct evm_service *prev, *next;
};

/* service.c: off the list, freed at the outermost leave; its name off the index */
EVM_HIDDEN void evm__svc_unlink(struct evm_service *s);
EVM_HIDDEN void evm__svc_unindex(struct evm_service *s);
/* its cgroup's fd for one spawn into o, closed by evm__svc_spawn_done after it */
EVM_HIDDEN int evm__svc_spawn_cgroup(struct evm_service *s, struct evm_spawn_opts *o);
EVM_HIDDEN void evm__svc_spawn_done(struct evm_service *s, struct evm_spawn_opts *o);

/* what can happen to a service: a column of the table each */
enum evm__sv_event {
	EVM__SV_START,	      /* evm_service_start */
	EVM__SV_STOP,	      /* evm_service_stop; evm_shutdown */
	EVM__SV_RESTART,      /* evm_service_restart */
	EVM__SV_REMOVE,	      /* evm_service_remove */
	EVM__SV_DETACH,	      /* evm_service_detach */
	EVM__SV_SPAWN_FAILED, /* a start could not spawn the process (arg: error) */
	EVM__SV_EXIT,	      /* the process exited (arg: exit) */
	EVM__SV_GRACE,	      /* start_ms elapsed: the start succeeded */
	EVM__SV_BACKOFF_DONE, /* the backoff elapsed: start again */
	EVM__SV_STOP_TIMEOUT, /* stop_timeout elapsed: SIGKILL */
	EVM__SV_ADOPT,	      /* evm_service_adopt (arg: adopt) */
	EVM__SV_READY,	      /* evm_service_ready: the service says it is ready */
	EVM__SV_READY_TIMEOUT, /* ready_timeout_ms elapsed before it was ready */
	EVM__SV_WATCHDOG,     /* watchdog_ms elapsed without evm_service_watchdog */
	EVM__SV_EMPTIED,      /* its cgroup has no process left */
	EVM__SV_RESUME,	      /* evm_service_resume (arg: resume) */
	EVM__SV_TRIGGER,      /* evm_service_watchdog_trigger: the service says it failed */
	EVM__SV_RELOAD,	      /* evm_service_reload (arg: sig, timeout) */
	EVM__SV_RELOADING,    /* evm_service_reloading (arg: timeout) */
	EVM__SV_RELOAD_TIMEOUT, /* the reload's timeout elapsed before its ready */
	EVM__SV_POLICY,	      /* a loop turn after evm_service_set_policy: the new policy is in place */
	EVM__SV_NEVENTS
};

/* a row each: the last enum evm_state + 1 */
#define EVM__SV_NSTATES (EVM_STATE_RELOADING + 1)
/* in a cell's targets, besides the states: the service is removed (freed) */
#define EVM__SV_REMOVED EVM__SV_NSTATES
#define EVM__SV_TO(st) (1u << (st))
/* in a cell's targets: it may also stay where it is (waiting for another event) */
#define EVM__SV_STAYS EVM__SV_TO(EVM__SV_REMOVED + 1)

struct evm__sv_arg {
	const struct evm_exit *exit;
	int error;
	const struct evm_adopt_opts *adopt;
	const struct evm_service_resume *resume;
	int sig;		/* reload: the signal asking for it (0: none) */
	uint64_t timeout_ms;	/* reload, reloading: 0 for no limit */
	const char *why;	/* trigger: the failure, as the caller says it (NULL: the service's) */
};

/*
 * One (state, event) cell: act does the work and enters one of the states
 * in `to` (0: the service stays where it is). A cell with no act ignores the
 * event; `what` says in a few words what the cell does (the table's text).
 */
struct evm__sv_cell {
	int (*act)(struct evm_service *s, const struct evm__sv_arg *a);
	unsigned to;
	const char *what;
};

EVM_HIDDEN extern const struct evm__sv_cell evm__sv_table[EVM__SV_NSTATES][EVM__SV_NEVENTS];
EVM_HIDDEN extern const char *const evm__sv_event_names[EVM__SV_NEVENTS];
/* transitions no cell allowed (a bug in the table or an action): tests check it stays 0 */
EVM_HIDDEN extern unsigned long evm__sv_off_table;

/* the one way an event reaches a service; a = NULL for none */
EVM_HIDDEN int evm__sv_dispatch(struct evm_service *s, enum evm__sv_event ev,
				const struct evm__sv_arg *a);

/*
 * The steps the table's actions take: supervise.c (the table, its actions,
 * the transitions), svexit.c (what an exit decides: the restart policy),
 * svstart.c (a run: spawn, readiness, the exit, backoff) and svstop.c (a
 * stop's signals and its kill escalation).
 */

/* why we stopped a service that did not stop by itself: its exit is a failure */
enum { FAILING_NO, FAILING_NOT_READY, FAILING_WATCHDOG, FAILING_TRIGGERED, FAILING_ADOPTED,
       FAILING_TOLD /* evm_service_fail: fail_why says why */ };

/* supervise.c: the one way a service changes state */
EVM_HIDDEN void evm__sv_enter(struct evm_service *s, enum evm_state st,
			      const struct evm_exit *exit, int error, uint64_t delay_ms);

/* supervise.c: an event of the state it is in (what changed is in s->msg) */
EVM_HIDDEN void evm__sv_tell(struct evm_service *s);
/* supervise.c: a removed service's last event; freed when the iteration ends */
EVM_HIDDEN void evm__sv_unlink(struct evm_service *s, const struct evm_exit *exit);

/* svexit.c: the cells of an exit (STARTING; RUNNING and RELOADING; STOPPING) */
EVM_HIDDEN int evm__sv_act_exit_starting(struct evm_service *s, const struct evm__sv_arg *a);
EVM_HIDDEN int evm__sv_act_exit_running(struct evm_service *s, const struct evm__sv_arg *a);
EVM_HIDDEN int evm__sv_act_exit_stopping(struct evm_service *s, const struct evm__sv_arg *a);
/* svexit.c: BACKOFF's cell of "policy": the restart cancelled if the new policy would not do it */
EVM_HIDDEN int evm__sv_act_policy_backoff(struct evm_service *s, const struct evm__sv_arg *a);
/* svexit.c: a held exit's OOM kill (its cgroup's oom_kill grew since the run began) */
EVM_HIDDEN void evm__sv_held_oom(struct evm_service *s);
/* svexit.c: "cgroup empty" in STOPPING, and after a held exit (STARTING, RUNNING, RELOADING) */
EVM_HIDDEN int evm__sv_act_emptied(struct evm_service *s, const struct evm__sv_arg *a);
EVM_HIDDEN int evm__sv_act_emptied_held(struct evm_service *s, const struct evm__sv_arg *a);

/* svmain.c: pid (of its tree) is the main process now: 1, 0 (it was), or -errno */
EVM_HIDDEN int evm__sv_take_main(struct evm_service *s, pid_t pid);

/*
 * The session or process group the main process leads (spawned with SETSID or
 * SETPGID, or found so when adopted): what of the service outlives it
 * (svmain.c's MAINPID= check in before_exit, after its exit)
 */
enum { MAIN_LEADS_NOTHING, MAIN_LEADS_SESSION, MAIN_LEADS_GROUP };

/* why a STARTING/RUNNING service has no main process: its exit is held meanwhile */
enum { MAIN_WAIT_NO, MAIN_WAIT_PIDFILE, MAIN_WAIT_TREE };
/* svmain.c: the main process exited: 1 if it is held (the pidfile is looked for) */
EVM_HIDDEN bool evm__sv_pidfile_wait(struct evm_service *s);
/* svmain.c: in an exit's cell: a successful exit held while the tree lives (track TREE) */
EVM_HIDDEN bool evm__sv_tree_hold(struct evm_service *s, bool ok);
/* svstart.c: the held or fresh exit (s->last_exit) to its cell, its leftovers killed */
EVM_HIDDEN void evm__sv_exit_decide(struct evm_service *s);
/* svstart.c: a run's timer again (start grace, ready timeout, watchdog) with what is left */
EVM_HIDDEN void evm__sv_rearm(struct evm_service *s);
/* why it is stopped for a failure (s->failing), as its exit's event will say */
EVM_HIDDEN void evm__sv_failing_text(const struct evm_service *s, char *buf, size_t len);

/* svstart.c */
/* RELOADING: its timer from now (timeout_ms 0: none), and the timer's end */
EVM_HIDDEN int evm__sv_reload_arm(struct evm_service *s, uint64_t timeout_ms);
EVM_HIDDEN void evm__sv_reload_fire(struct evm_timer *t, void *data);
EVM_HIDDEN void evm__sv_spawn(struct evm_service *s);
EVM_HIDDEN void evm__sv_became_ready(struct evm_service *s);
EVM_HIDDEN void evm__sv_failed_start(struct evm_service *s, const struct evm_exit *exit,
				     int error);
EVM_HIDDEN void evm__sv_schedule_restart(struct evm_service *s, const struct evm_exit *exit,
					 int error);
/* BACKOFF with its next start in delay_ms, the step unchanged (a resume); 0 or -ENOMEM */
EVM_HIDDEN int evm__sv_backoff_for(struct evm_service *s, uint64_t delay_ms);
EVM_HIDDEN void evm__sv_on_proc_exit(struct evm_proc *p, const struct evm_exit *e, void *owner);
EVM_HIDDEN void evm__sv_ready_timeout_fire(struct evm_timer *t, void *data);
EVM_HIDDEN void evm__sv_watchdog_fire(struct evm_timer *t, void *data);

/* svstop.c */
EVM_HIDDEN int evm__sv_signal_to(struct evm_service *s, int sig, bool group);
EVM_HIDDEN bool evm__sv_cg_busy(const struct evm_service *s);
EVM_HIDDEN void evm__sv_stop_send(struct evm_service *s, int sig);
/* a new main process p (spawned, or adopted): the session it leads, if it is the tree */
EVM_HIDDEN void evm__sv_note_session(struct evm_service *s, struct evm_proc *p, bool adopted);
EVM_HIDDEN int evm__sv_adopt_tree(struct evm_service *s, const struct evm_exit *main_exit);
/* a run taken over (a process or a tree): its OOM baseline, its run's counters and watchdog */
EVM_HIDDEN void evm__sv_adopted_run(struct evm_service *s);
/* s->sid if that session may still be the service's, else 0 (and s->sid is dropped) */
EVM_HIDDEN pid_t evm__sv_session(struct evm_service *s);
EVM_HIDDEN void evm__sv_arm_kill(struct evm_service *s);
EVM_HIDDEN void evm__sv_send_stop(struct evm_service *s, bool sent);
EVM_HIDDEN void evm__sv_kill_fire(struct evm_timer *t, void *data);

#endif
