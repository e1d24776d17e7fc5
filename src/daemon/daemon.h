/*
 * daemon.h - what the files of `evmon daemon` share: the daemon, its units
 * (one per service instance: config + library service + output capture),
 * and the entry points of units.c and requests.c.
 *
 *   daemon.c    startup, signals, sd_notify, shutdown; daemonargs.c its options, --check
 *   units.c     the table of units, creating them; reload.c reload
 *   requests.c  the control requests      waits.c   their deferred replies
 *   selection.c which services a request names
 *   events.c    event and status records, publishing, the summary
 *   control.c   the socket server's clients; controlaccept.c accepting,
 *               controlsub.c events subscriptions (controlint.h)
 *   config.c, confread.c, confkeys.c (the key table), confvalue.c (value
 *   grammars), confcheck.c (whole-service checks), confdeps.c  the config
 *   output.c, logfile.c, logdir.c, logtail.c  the services' output and its files
 *   state.c     the state record: reading it; statewrite.c writing it,
 *               takeover.c taking over services after a crash or a re-exec
 *   stdsink.c   the daemon's stdout/stderr (console lines, daemonlog.c's log)
 */
#ifndef EVMON_DAEMON_H
#define EVMON_DAEMON_H

#include "cjson.h"
#include "config.h"
#include "control.h"
#include "events.h"
#include "hashmap.h"
#include "health.h"
#include "logfile.h"
#include "metrics.h"
#include "monotime.h"
#include "output.h"

#include <evmon.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/*
 * Starts in one loop iteration, at the daemon's start (units.c) and when
 * dependencies let services go (deps.c): at most START_BATCH, fewer when
 * they take more than START_SLICE_NS; the rest in the next iterations, so
 * that requests, signals and exits are served in between.
 */
#define START_BATCH 64
#define START_SLICE_NS (20 * 1000000ull)

/* One iteration's starts: how many so far, and until when more may go. */
struct start_slice {
	unsigned n;
	uint64_t until; /* CLOCK_MONOTONIC ns */
};

static inline void start_slice_open(struct start_slice *sl)
{
	sl->n = 0;
	sl->until = mono_ns() + START_SLICE_NS;
}

/* May one more start go? The first always may. */
static inline bool start_slice_room(const struct start_slice *sl)
{
	return sl->n < START_BATCH && (!sl->n || mono_ns() < sl->until);
}

struct unit {
	char *name;		 /* NAME, or NAME:i for instances */
	struct svc_conf *conf;	 /* shared by the instances of one definition */
	unsigned instance;
	struct unit_def *def;	 /* an instance: its definition's entry in daemon.defs */
	struct unit *inst_prev, *inst_next; /* ... and the other instances, in creation order */
	struct evm_service *svc; /* NULL when it could not be created */
	struct svc_output *out;	 /* the capture of its output, or NULL (output.h) */
	struct evm_cgroup *cg;	 /* its cgroup (cgroups.h), kept across re-creations, or NULL */
	/* an old copy of its name still stopping (replaced or removed): start after it;
	 * the first of units_old's */
	struct evm_service *old;
	struct ready *rd;	 /* how it becomes ready (ready.h); NULL: ready = started */
	bool added;		 /* from `ctl add`, not from the config file */
	bool removed;		 /* unit_remove under way: its events are its last */
	uint64_t seq;		 /* its place in the order units were made (metrics.c) */
	bool want_start;	 /* start as soon as it is created */
	bool mark;		 /* scratch, for selections and reload */
	int create_error;	 /* -errno of the last failed creation, else 0 */
	unsigned transitions;	 /* state changes seen */
	unsigned starts;	 /* of which from not running to STARTING or RUNNING */
	unsigned spawn_failures; /* into BACKOFF because a spawn failed (waits.c) */
	unsigned stops_undone;	 /* stops a later start took it out of (a stop's wait ends) */
	unsigned starts_undone;	 /* starts a later stop took it out of, waiting (a start's wait ends) */
	unsigned reload_failures; /* reloads that timed out (ctl reload NAME waits for it) */
	/* dependencies (deps.c), resolved from conf->requires/after while deps_gen is current */
	struct dep *deps;	 /* what it requires or starts after */
	size_t ndeps;
	struct unit **rdeps;	 /* who requires it or starts after it */
	size_t nrdeps;
	bool pending;		 /* to start once its dependencies allow */
	bool asked;		 /* pending for a client's start or restart: if a dependency
				  * keeps it from starting, not the end of an essential one */
	bool leaving_wait;	 /* being started from waiting: its stopped -> starting is said
				  * waiting -> starting (the library knows no waiting) */
	bool queued;		 /* in the queue (deps.c): let go (pending), or to stop (want_stop) */
	struct unit *go_prev, *go_next; /* the queue */
	bool want_stop;		 /* to stop once its dependents are down */
	bool start_after;	 /* STOPPING (or STOPPED, waiting for its spawn turn), asked to
				  * start after the exit (a restart): the library keeps that to
				  * itself; a re-exec passes it (state.h) */
	unsigned stop_chain;	 /* the shutdown: it and what stops after it, longest chain */
	bool shutdown_stops;	 /* up when the shutdown began: its stop is the shutdown's (state.h) */
	unsigned stop_seen;	 /* deps_stop_over's walk was here (its d->stop_walks) */
	struct evm_timer *grace_timer; /* its share of shutdown_timeout (deps.c), or NULL */
	char *blocked;		 /* why a dependency kept it from starting, or NULL */
	char *fatal_why;	 /* the library's word when it became fatal, while it is */
	char *spawn_why;	 /* what its last failed spawn's errno hides (spawnwhy.h), or NULL */
	struct health *health;	 /* its health check (health.h), or NULL without health_cmd */
	/* the state record (state.h) */
	pid_t rec_pid;		 /* the pid last written, and its start time */
	uint64_t rec_start;
	bool adopted;		 /* its process was taken over at the daemon's start */
	bool failed_stop;	 /* being stopped for a failure (health_action = stop): an
				  * essential one's stop ends the daemon */
	struct unit *prev, *next; /* creation order */
	struct hnode node;	 /* in daemon.units, by name */
};

struct waiter;
struct cgroups;
struct health;
struct record;
struct reexec;
struct ready;

struct daemon {
	struct evm_loop *loop;
	struct config *cfg;
	const char *cfg_path;
	/* its own copy: the config it may come from is freed at a reload (the notify
	 * socket's name and a re-exec's -S read it later) */
	char *socket;
	bool socket_from_cli;	 /* -S: the config's socket = does not matter */
	/* the keys read only at the start, as they were then: a reload warns of a change to
	 * them (compared with the file read last, going back to them was said as a change) */
	struct {
		char *socket, *metrics_listen; /* the config's, or NULL */
		unsigned max_clients;
		size_t events_buffer_total;
		uint64_t idle_timeout_ms;
		enum cgroup_mode cgroup;
	} at_start;
	struct control *ctl;
	struct metrics_http *metrics; /* the metrics endpoint, or NULL */
	int sigfd;		/* TERM, INT, HUP, USR1 */
	struct evm_io *sigio;
	struct evm_sub *sub;	/* the library's events */
	bool reaper;
	bool strict; /* --strict: a reload refuses a config with problems, as the start does */
	uint64_t lineage; /* EVMON_DAEMON_ID: this daemon's, carried on from the record's */
	bool stopping; /* shutdown requested */
	int exit_code; /* the daemon's, set by an essential service that ended (-1: none) */
	bool defer_start; /* creating every unit first: start them afterwards */
	bool asking;	  /* a client's start or restart is under way (unit.asked) */
	bool wake_wanted; /* an old copy ended that units of another name waited for */
	/* the start of the daemon, a batch per loop iteration (units.c): the next unit, or NULL */
	struct unit *start_next;
	struct evm_timer *start_timer;
	bool started;	  /* every autostart service has been started: "started" logged */
	bool ready;	   /* READY=1 sent (notify.h): state changes update STATUS= */
	struct evm_timer *status_timer; /* pending STATUS= update, or NULL */
	struct evm_timer *watchdog_timer; /* next WATCHDOG=1, or NULL */
	struct evm_timer *shutdown_timer; /* shutdown_timeout, while shutting down, or NULL */
	uint64_t shutdown_end_ns; /* when it passes (loop time), 0 without one */
	struct logs *logs; /* the log directory and files */
	struct cgroups *cg; /* the services' cgroups, or NULL when off (cgroups.h) */
	bool cg_kept;	    /* an earlier run's cgroups were kept for the takeover */
	/* the state record (state.h) */
	char *state_path;	  /* SOCKET.state */
	struct record *rec;	  /* what an earlier daemon left, until the takeover is done */
	struct evm_timer *state_timer; /* the pending write, or NULL */
	uint64_t state_delay_ms;  /* between writes: grows with the time a write takes */
	bool state_failed;	  /* the last write failed (said once) */
	bool state_closed;	  /* no more writes */
	bool state_newer;	  /* refused a newer state: what runs is left alone */
	struct event_queue events; /* the fan-out held back during a request */
	bool quiet_adopt;	  /* a re-exec's takeover: adoptions are not events */
	struct reexec *reexec;	  /* a re-exec under way (reexec.c), or NULL */
	/* CLOCK_MONOTONIC ns of the start's steps, for the re-exec's pause (reexec.c) */
	uint64_t t_main, t_config, t_read, t_units;

	struct unit *first, *last;
	struct hashmap units; /* by name */
	struct hashmap defs;  /* the instances (NAME:i) by their definition's NAME (units.c) */
	size_t nunits;
	struct hashmap draining; /* old copies still stopping (replaced or removed), by name */
	bool holding;		 /* a batch of releases: old copies held until its end */
	unsigned hold_batch;	 /* counts those batches */
	unsigned hold_walks;	 /* draining.c's cycle checks, to mark the entries each saw */
	size_t draining_needy;	 /* old copies with requires or after */
	struct hashmap needed;	 /* the names those require or start after (draining.c) */
	bool retry_stops;	 /* an old copy a stop waited for is gone */

	struct waiter *waiters;
	struct health *health_orphans; /* of units gone while their check ran (health.c) */
	/* the start queue (deps.c): units let go by their dependencies or a request, in order */
	struct unit *go_first, *go_last;
	struct evm_timer *go_timer; /* the next burst; armed while one runs */
	struct start_slice go_slice; /* this burst's starts and stops */
	bool deps_dirty; /* units came or went: the dependencies are resolved again */
	unsigned deps_gen; /* counts the resolutions */
	unsigned stop_walks; /* deps_stop_over's walks, to mark the units each one saw */
	uint64_t units_made; /* unit.seq of the last one */
};

/*
 * A replacement that starts once its old copy is gone (deps.c start_now): not
 * pending, not running, but coming, to the graph, a stop and the record.
 */
static inline bool unit_deferred(const struct unit *u)
{
	return u->old && u->want_start && u->svc;
}

/* daemon.c */
void daemon_request_shutdown(struct daemon *d, const char *why);
/*
 * An essential service cannot run (a dependency failed for good): the
 * daemon ends, with 1; unless the start was a client's (asked): a start
 * asked for that fails is not its end, as a stop asked for is not.
 */
void daemon_essential_blocked(struct daemon *d, struct unit *u, bool asked);
/* Every autostart service has been started (units.c): log it, READY=1. */
void daemon_started(struct daemon *d);

/* draining.c: old copies of services still stopping (replaced, or removed) */
/* An old copy of a service called name (replaced by a reload, or removed) is still stopping. */
bool units_draining(struct daemon *d, const char *name);
/*
 * The i-th old copy of name still stopping, from 0 (the one its unit waits
 * for first), or NULL after the last. *apart (if not NULL): it writes into
 * a capture of ours that no unit of name has (a removed unit's, or an
 * output that changed): only it holds that pipe, so a re-exec would close it.
 */
struct evm_service *units_old(struct daemon *d, const char *name, size_t i, bool *apart);
/*
 * units_old's i-th is held: running, its stop not asked for yet
 * (draining_stop); *sig and *ms (if not NULL): how it is to be stopped.
 */
bool units_old_held(struct daemon *d, const char *name, size_t i, int *sig, uint64_t *ms);
/* svc, an old copy, is held (not stopped yet: it stops after what requires it). */
bool draining_held(struct daemon *d, const struct evm_service *svc);
/* The names of old copies still stopping: NULL for the first; NULL after the last. */
const char *units_next_draining(struct daemon *d, const char *prev);
/* An old copy of name, stopping, taken over after a crash: waited for as a removed one. */
void units_take_old(struct daemon *d, const char *name, struct evm_service *svc);
/* The old copy u must wait for (its name's, or its definition's other form), or NULL. */
struct evm_service *draining_waited(struct daemon *d, const struct unit *u);
/*
 * u's service svc, active, becomes an old copy: stopped now, or (inside a
 * batch) held until the batch's end says what needs it. What u waits for.
 */
struct evm_service *draining_stop(struct daemon *d, struct unit *u, struct evm_service *svc);
/* A batch of releases (a reload, ctl remove): old copies stop in dependency order. */
void draining_hold_begin(struct daemon *d);
void draining_hold_end(struct daemon *d);
/* The shutdown: every held old copy stops now. */
void draining_release_all(struct daemon *d);
/* An old copy still stopping needs u (requires it, or starts after it): u's stop waits. */
bool draining_needs(struct daemon *d, const struct unit *u);
/* ev removed a service: its entry goes, and what it held may stop. */
void draining_done(struct daemon *d, const struct evm_event *ev);
void draining_free(struct daemon *d);

/* units.c */
struct unit *unit_find(struct daemon *d, const char *name);
/*
 * A unit of the definition called name (the unit name, or one of its
 * instances, whichever of them are left), or NULL.
 */
struct unit *unit_of_definition(struct daemon *d, const char *name);
/* The first of the instances NAME:i of definition name (then unit.inst_next), or NULL. */
struct unit *unit_first_instance(struct daemon *d, const char *name);
/* Create the unit for instance i of c and its service; start it if c says autostart. */
struct unit *unit_add(struct daemon *d, struct svc_conf *c, unsigned i, bool added);
int unit_create(struct daemon *d, struct unit *u);
void unit_remove(struct daemon *d, struct unit *u);
/* Let go of the library service (it stops and is freed in the background). */
void unit_release(struct daemon *d, struct unit *u);
void unit_instance_name(const struct svc_conf *c, unsigned i, char *buf, size_t len);
/* After a start or a restart of u's service: note whether it starts once its process is gone. */
void unit_note_start_after(struct daemon *d, struct unit *u);
int units_load(struct daemon *d); /* every unit of d->cfg; they start from the loop */
/* The next batch of the daemon's start (a timer callback; t may be NULL). */
void units_start_batch(struct evm_timer *t, void *data);
/* Re-read the config and apply the difference. Fills resp; returns 0 or -1. */
int units_reload(struct daemon *d, cJSON *resp);
/* Close every log file and open the directory again; -1 with err when it cannot be. */
int units_reopen_logs(struct daemon *d, char *err, size_t errlen);
void units_free(struct daemon *d);
/*
 * Called for every service event: the unit's transition counters. Returns the
 * unit whose replaced service this event removed, when it is to start now:
 * units_start_successor, once the event itself has been told (its start's
 * events come after the removal's).
 */
struct unit *units_on_event(struct daemon *d, const struct evm_event *ev);
void units_start_successor(struct daemon *d, struct unit *u);

/* deps.c: starting and stopping in the order of requires and after */
enum dep_kind { DEP_AFTER, DEP_READY, DEP_HEALTHY };
struct dep {
	struct unit *u;
	enum dep_kind kind;
};
/* Start u once what it requires is ready (starting that first); 0 or -errno. */
int deps_start(struct daemon *d, struct unit *u);
/*
 * Restart u: an active service now (evm_service_restart: stopped, then
 * started after the exit), out of a stop it waited for; one down or
 * waiting is started as deps_start does (after what it requires), and an
 * active one that requires one down is stopped, then started after it
 * (started too); 0 or -errno.
 */
int deps_restart(struct daemon *d, struct unit *u);
/* Say u waits to start: for its old copy's end ("waiting", as for a dependency). */
void deps_tell_deferred(struct daemon *d, struct unit *u);
/* Start every unit with want_start, each as soon as its dependencies allow. */
void deps_start_wanted(struct daemon *d);
/* Stop u after its dependents (those that require it are stopped too). */
int deps_stop(struct daemon *d, struct unit *u);
/*
 * u's stop is over for its waiters: what it took down with it (its
 * dependents, theirs...) is down too. u itself is checked by the caller.
 */
bool deps_stop_over(struct daemon *d, struct unit *u);
/* Stop every unit, dependents first, running the loop until all are down. */
void deps_stop_all(struct daemon *d);
/* A state of u changed: start or stop who waited for it. */
void deps_changed(struct daemon *d, struct unit *u);
/*
 * The graph changed (a reload, a removal): a unit waiting to stop until its
 * dependents are down may have none left to wait for.
 */
void deps_retry_stops(struct daemon *d);
/*
 * The same for a unit waiting to start: what it waited for may be gone
 * (a removal), or will not start any more.
 */
void deps_retry_starts(struct daemon *d);
/* u leaves the table (or a unit joins it): resolve again before the next use. */
void deps_forget(struct daemon *d, struct unit *u);
/* The names c (from `ctl add`) depends on must be services (errors to errs). */
void deps_check_added(struct daemon *d, const struct svc_conf *c, struct errlist *errs);
/*
 * Removing the n units of sel together: one of them (returned) that a unit
 * left behind (*by) requires, every unit of its definition going. NULL when
 * none. Uses and clears unit.mark.
 */
struct unit *deps_still_required(struct daemon *d, struct unit **sel, size_t n, struct unit **by);
/* "waiting" for a unit waiting for its dependencies, else the library's state name */
const char *deps_state_name(const struct unit *u);
/* Add the dependency fields of u to its status record. */
void deps_status(const struct unit *u, cJSON *o);

/*
 * reexec.c: exec our binary in place, every service kept (cl: who asked, or
 * NULL). The binary is asked its state format first, while the loop serves
 * on: 0, under way (cl's reply is deferred: the new image answers it, or
 * this one with why not), or -1 with why in err, nothing under way.
 */
int daemon_reexec(struct daemon *d, struct client *cl, char *err, size_t errlen);
/* The daemon shuts down: a re-exec under way is given up (its client told). */
void reexec_cancel(struct daemon *d);
/* After the loop is freed: what a cancelled one left. */
void reexec_release(struct daemon *d);
/* The new image took over kept of the services: answer the client who asked (r->client_fd). */
void reexec_answer(struct daemon *d, struct record *r, size_t kept);
/* Then: follow on the events followers r hands over, and tell them (a "reexec" event). */
void reexec_done(struct daemon *d, struct record *r, size_t kept);

/* requests.c: the control_request_cb of the socket */
void requests_handle(struct client *cl, const cJSON *req, void *data);
/*
 * The definition of an add request's "service" object (svc, named name),
 * checked as a config section would be, plus what only the running daemon
 * knows (its dependencies, names in use); NULL with the reasons in errs.
 * Warnings go to notes (NULL: not said).
 */
struct svc_conf *requests_add_conf(struct daemon *d, const cJSON *svc, const char *name,
				   struct errlist *errs, struct errlist *notes);

#endif
