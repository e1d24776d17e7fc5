/*
 * units.c - the daemon's table of services: one unit per service instance,
 * in creation order and in a hash by name; reload (the difference between
 * the running units and a freshly read config) is reload.c's.
 *
 * Invariants: a unit name is in the table at most once; u->svc, when set, is
 * the library service of that name created for u->conf. Removing a service
 * releases its name in the library at once (it finishes stopping in the
 * background), so a changed service's replacement is created right away.
 */
#include "daemon.h"

#include "cgroups.h"
#include "confkeys.h"
#include "daemonlog.h"
#include "fdreserve.h"
#include "notify.h"
#include "ready.h"
#include "spawnwhy.h"
#include "state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>


struct unit *unit_find(struct daemon *d, const char *name)
{
	struct hnode *n = hmap_get(&d->units, name);
	return n ? HMAP_ENTRY(n, struct unit, node) : NULL;
}

/*
 * The instances of a definition, by its NAME: whichever are left (`ctl
 * remove web:0` leaves web:1 and web:2, which a lookup of "web:0" missed).
 * Only instances are in it: a unit called NAME, its definition's one
 * service, may be there beside them while a reload replaces it.
 */
struct unit_def {
	struct hnode node;
	struct unit *first, *last;
	char name[]; /* the key */
};

static int def_join(struct daemon *d, struct unit *u)
{
	if (!strchr(u->name, ':'))
		return 0;
	struct hnode *n = hmap_get(&d->defs, u->conf->name);
	struct unit_def *e = n ? HMAP_ENTRY(n, struct unit_def, node) : NULL;
	if (!e) {
		size_t len = strlen(u->conf->name) + 1;
		if (!(e = calloc(1, sizeof(*e) + len)))
			return -ENOMEM;
		memcpy(e->name, u->conf->name, len);
		if (hmap_add(&d->defs, &e->node, e->name) < 0) {
			free(e);
			return -ENOMEM;
		}
	}
	u->def = e;
	u->inst_prev = e->last;
	if (e->last)
		e->last->inst_next = u;
	else
		e->first = u;
	e->last = u;
	return 0;
}

static void def_leave(struct daemon *d, struct unit *u)
{
	struct unit_def *e = u->def;
	if (!e)
		return;
	if (u->inst_prev)
		u->inst_prev->inst_next = u->inst_next;
	else
		e->first = u->inst_next;
	if (u->inst_next)
		u->inst_next->inst_prev = u->inst_prev;
	else
		e->last = u->inst_prev;
	u->def = NULL;
	u->inst_prev = u->inst_next = NULL;
	if (!e->first) {
		hmap_del(&d->defs, &e->node);
		free(e);
	}
}

struct unit *unit_first_instance(struct daemon *d, const char *name)
{
	struct hnode *n = hmap_get(&d->defs, name);
	return n ? HMAP_ENTRY(n, struct unit_def, node)->first : NULL;
}

struct unit *unit_of_definition(struct daemon *d, const char *name)
{
	struct unit *u = unit_find(d, name);
	if (u && !strcmp(u->conf->name, name))
		return u;
	return unit_first_instance(d, name);
}

/*
 * A unit of definition name exists, whichever instances: the record may
 * have kept w:1 and w:2 of an added w, not w:0 (unit_of_definition's).
 */
static bool definition_made(struct daemon *d, const char *name)
{
	for (struct unit *u = d->first; u; u = u->next)
		if (!strcmp(u->conf->name, name))
			return true;
	return false;
}

void unit_instance_name(const struct svc_conf *c, unsigned i, char *buf, size_t len)
{
	if (c->instances > 1)
		snprintf(buf, len, "%s:%u", c->name, i);
	else
		snprintf(buf, len, "%s", c->name);
}

/* ------------------------------------------------------------- counters */

void unit_note_start_after(struct daemon *d, struct unit *u)
{
	u->start_after = u->svc && evm_service_state(u->svc) == EVM_STATE_STOPPING;
	state_changed(d); /* the record says so: a crash now keeps the restart */
}

/* Each unit of name's definition under its other form (NAME for NAME:i, NAME:i for NAME). */
static void other_form(struct daemon *d, const char *name,
		       void (*fn)(struct daemon *d, struct unit *u, void *arg), void *arg)
{
	const char *colon = strchr(name, ':');
	if (colon) {
		char def[256];
		snprintf(def, sizeof(def), "%.*s", (int)(colon - name), name);
		struct unit *u = unit_find(d, def);
		if (u)
			fn(d, u, arg);
		return;
	}
	/* its instances, not the unit called name: that may be the one going (its old conf) */
	for (struct unit *v = unit_first_instance(d, name); v; v = v->inst_next)
		fn(d, v, arg);
}

/* One of the other form waited for the old copy that ended (arg: its service). */
static void wake_one(struct daemon *d, struct unit *u, void *arg)
{
	if (u->old != arg)
		return;
	u->old = draining_waited(d, u);
	if (!u->old && u->want_start && u->svc)
		d->wake_wanted = true; /* on_event: deps_start_wanted, after this event is told */
}

/*
 * One of the other form not started yet waits for a new old copy (arg): a
 * reload adds web before it releases web:0 and web:1.
 */
static void claim_one(struct daemon *d, struct unit *u, void *arg)
{
	if (!u->old && u->svc && evm_service_state(u->svc) == EVM_STATE_STOPPED) {
		u->old = arg;
		if (u->want_start)
			deps_tell_deferred(d, u);
	}
}

/*
 * Name is gone for good: no unit has it, no old copy of it still stops
 * (a copy's removal comes once its cgroup is empty): its cgroup goes. A
 * unit of that name added while an old copy stops keeps it.
 */
static void unit_cgroup_gone(struct daemon *d, const char *name)
{
	if (d->cg && !unit_find(d, name) && !units_draining(d, name))
		cgroups_service_gone(d->cg, d->loop, name);
}

struct unit *units_on_event(struct daemon *d, const struct evm_event *ev)
{
	/*
	 * A cgroup service's spawn was given a placeholder for its directory,
	 * closed again once the clone is done: the reserve is made whole here
	 * (every spawn and failed spawn is an event), not at the next spawn,
	 * where a client accepted meanwhile would have kept it one short.
	 */
	fdres_take();
	if (ev->removed)
		draining_done(d, ev);
	struct unit *u = ev->name ? unit_find(d, ev->name) : NULL;
	if (ev->removed && ev->name)
		other_form(d, ev->name, wake_one, ev->service);
	if (ev->removed && ev->name && !u)
		unit_cgroup_gone(d, ev->name);
	if (u && ev->removed && u->old == ev->service) {
		/* the replaced service is gone (and its cgroup empty): its successor may start,
		 * unless another of its name still stops */
		u->old = draining_waited(d, u);
		return !u->old && u->want_start && u->svc && !d->defer_start ? u : NULL;
	}
	if (!u || u->svc != ev->service)
		return NULL;
	u->transitions++;
	/* STOPPED too: the restart's start may wait for its spawn turn (the library's) */
	if (ev->state != EVM_STATE_STOPPING && ev->state != EVM_STATE_STOPPED)
		u->start_after = false; /* started again */
	bool was = ev->old_state == EVM_STATE_STARTING || ev->old_state == EVM_STATE_RUNNING ||
		   ev->old_state == EVM_STATE_RELOADING;
	bool is = ev->state == EVM_STATE_STARTING || ev->state == EVM_STATE_RUNNING ||
		  ev->state == EVM_STATE_RELOADING;
	if (is && !was)
		u->starts++;
	if (ev->state == EVM_STATE_BACKOFF && ev->error && !ev->exit)
		u->spawn_failures++;
	if (ev->error && !ev->exit && ev->stage != EVM_STAGE_NONE) {
		/* before the event is told (events.c): its line and status say it */
		struct spawn_facts f;
		char why[400];
		spawn_facts_of(u->conf, &f);
		free(u->spawn_why);
		u->spawn_why = spawn_why(&f, ev->stage, ev->error, why, sizeof(why)) ? strdup(why) : NULL;
		spawn_facts_free(&f);
	}
	if (ev->old_state == EVM_STATE_RELOADING && ev->state == EVM_STATE_RUNNING && ev->error)
		u->reload_failures++;
	/* "not ready within ready_timeout ...; gave up ...": status says it, not the log only */
	if (ev->state != EVM_STATE_FATAL || ev->message) {
		free(u->fatal_why);
		u->fatal_why = ev->state == EVM_STATE_FATAL ? strdup(ev->message) : NULL;
	}
	ready_on_event(d, u, ev);
	return NULL;
}

void units_start_successor(struct daemon *d, struct unit *u)
{
	if (!u->want_start || !u->svc || u->old || d->defer_start)
		return;
	u->want_start = false;
	bool asking = d->asking;
	d->asking = u->asked; /* a client's start, deferred: still the client's */
	int r = deps_start(d, u);
	d->asking = asking;
	if (r < 0)
		dlog("service %s: cannot start it: %s", u->name, strerror(-r));
}

/* ------------------------------------------------------------ lifecycle */

/*
 * The capture of the unit's output: kept across re-creations of its service
 * while it fits the definition (the old process may still be stopping and
 * writing: its last lines land in the same pipe, before the new process's).
 * Without one (out of descriptors), logged streams go to /dev/null and an
 * event says so.
 */
static void unit_output(struct daemon *d, struct unit *u)
{
	if (u->out && !output_fits(u->out, u->conf)) {
		output_unref(u->out);
		u->out = NULL;
	}
	if (!u->out && output_captures(u->conf)) {
		char err[300], msg[400];
		int e = 0;
		struct rec_svc *rs = state_find(d, u->name); /* its pipes, across a reexec */
		u->out = output_new(d->loop, d->logs, u->conf, u->name, d->cfg->console_prefix,
				    rs && rs->fds[0] >= 0 ? rs->fds : NULL, &e, err, sizeof(err));
		if (rs)
			rs->fds[0] = rs->fds[1] = rs->fds[2] = rs->fds[3] = -1; /* ours now, or closed */
		if (!u->out) {
			snprintf(msg, sizeof(msg), "cannot capture its output: %s: it goes to /dev/null",
				 err);
			events_log(d, u->name, NULL, e, msg);
		}
	}
	if (u->out)
		output_configure(u->out, u->conf);
}

/*
 * The limits of its definition, on its cgroup. One that cannot be applied
 * is said (the service runs without it): no cgroups, or a controller the
 * daemon's cgroup does not delegate.
 */
static void unit_limits(struct daemon *d, struct unit *u)
{
	char msg[400];
	for (int l = EVM_CGROUP_MEMORY_MAX; l <= EVM_CGROUP_IO_WEIGHT; l++) {
		const char *v = u->conf->limits[l], *file = evm_cgroup_limit_file(l);
		int r = v && u->cg ? evm_cgroup_set_limit(u->cg, l, v) : 0;
		if (v && !u->cg)
			snprintf(msg, sizeof(msg), "%s = %s not applied: no cgroup (%s)", file, v,
				 d->cg ? "it could not be made" : "cgroups are off: see the daemon's start");
		else if (r == -EOPNOTSUPP)
			snprintf(msg, sizeof(msg), "%s = %s not applied: controller %s not available "
				 "(not in %s/cgroup.controllers: delegate it to the daemon's cgroup)", file,
				 v, evm_cgroup_controller_name(evm_cgroup_limit_controller(l)),
				 cgroups_base(d->cg));
		else if (r < 0)
			snprintf(msg, sizeof(msg), "%s = %s not applied", file, v);
		if (v && (!u->cg || r < 0))
			events_log(d, u->name, NULL, u->cg ? r : -EOPNOTSUPP, msg);
	}
}

/* Its cgroup, made once: a re-created service starts in the same one. */
static void unit_cgroup(struct daemon *d, struct unit *u)
{
	int r = d->cg && !u->cg ? cgroups_service(d->cg, u->name, &u->cg) : 0;
	if (r < 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "cannot create its cgroup in %s: it runs without one",
			 cgroups_base(d->cg));
		events_log(d, u->name, NULL, r, msg);
		u->cg = NULL;
	}
	unit_limits(d, u);
}

/*
 * Before each attempt (the first, a restart, ctl start): the fd reserve is
 * topped up, and a user or group unknown when the file was read is looked
 * up again, which fails (and the policy retries) until it resolves.
 */
static int unit_before_spawn(struct evm_service *svc, struct evm_spawn_opts *o, char *msg,
			     size_t len, void *data)
{
	struct unit *u = data;
	struct svc_conf *c = u->conf;
	(void)svc;
	fdres_take(); /* what was freed goes back to the reserve, not to this child's pidfd */
	if (u->cg)
		fdres_give(); /* the spawn opens its cgroup's directory for the clone, then closes it */
	if (c->ids_unresolved && conf_resolve_ids(c, msg, len) < 0)
		return -ENOENT;
	int r = ready_before_spawn(u, o, msg, len);
	if (r < 0)
		return r;
	if (c->set_uid && !c->ids_own) {
		o->flags |= EVM_SPAWN_SETUID;
		o->uid = c->uid;
	}
	if (c->set_gid && !c->ids_own) {
		o->flags |= EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS;
		o->gid = c->gid;
		o->groups = c->groups;
		o->ngroups = c->ngroups;
	}
	return 0;
}

int unit_create(struct daemon *d, struct unit *u)
{
	unit_output(d, u);
	unit_cgroup(d, u);
	struct svc_build b;
	int r = ready_unit_init(d, u);
	if (r == 0)
		r = config_build(u->conf, u->instance, &b);
	if (r == 0) {
		ready_service_opts(d, u, &b.opts);
		output_stdio(u->out, u->conf, b.opts.spawn.stdio);
		b.opts.cgroup = u->cg;
		if (u->out) {
			b.opts.on_event = output_on_event;
			b.opts.data = output_ref(u->out); /* dropped with the service's last event */
		}
		b.opts.before_spawn = unit_before_spawn;
		b.opts.before_spawn_data = u;
		/*
		 * After a re-exec: its cgroup as the old image knew it, not looked
		 * at again. Once, made or not: the record lives on, and a service
		 * made again (a reload, a ctl start retrying a failed creation)
		 * must not take a watch or an OOM count that is long gone.
		 */
		struct rec_svc *rs = u->cg && d->rec ? state_find(d, u->name) : NULL;
		if (rs && rs->has_cg) {
			rs->has_cg = false;
			b.opts.cgroup_kept = &rs->cg;
		}
		r = evm_service_new(d->loop, &b.opts, &u->svc);
		if (r < 0 && u->out)
			output_unref(u->out);
		config_build_free(&b);
	}
	if (r < 0) {
		u->svc = NULL;
		if (u->create_error != r)
			dlog("service %s: cannot create it: %s", u->name, strerror(-r));
		u->create_error = r;
		return r;
	}
	u->create_error = 0;
	health_configure(d, u);
	if (u->want_start && !d->defer_start && !u->old) {
		u->want_start = false;
		r = deps_start(d, u);
		if (r < 0)
			dlog("service %s: cannot start it: %s", u->name, strerror(-r));
	}
	return 0;
}

struct unit *unit_add(struct daemon *d, struct svc_conf *c, unsigned i, bool added)
{
	char name[256];
	unit_instance_name(c, i, name, sizeof(name));
	struct unit *u = calloc(1, sizeof(*u));
	if (!u || !(u->name = strdup(name)) || hmap_add(&d->units, &u->node, u->name) < 0) {
		if (u)
			free(u->name);
		free(u);
		dlog("service %s: out of memory", name);
		return NULL;
	}
	u->conf = svc_conf_ref(c);
	if (def_join(d, u) < 0) {
		hmap_del(&d->units, &u->node);
		svc_conf_unref(u->conf);
		free(u->name);
		free(u);
		dlog("service %s: out of memory", name);
		return NULL;
	}
	u->instance = i;
	u->added = added;
	u->seq = ++d->units_made;
	u->want_start = c->pol.autostart;
	u->prev = d->last;
	if (d->last)
		d->last->next = u;
	else
		d->first = u;
	d->last = u;
	d->nunits++;
	deps_forget(d, u);
	u->old = draining_waited(d, u); /* started at its removal (units_on_event) */
	unit_create(d, u);
	if (u->old && u->want_start && u->svc)
		deps_tell_deferred(d, u); /* as status says: waiting */
	return u;
}

/* Let go of the library service (it stops and is freed in the background). */
void unit_release(struct daemon *d, struct unit *u)
{
	struct evm_service *s = u->svc;
	u->svc = NULL;
	ready_unit_free(u); /* made again for the next definition's kind */
	if (!s)
		return;
	health_released(u); /* its events no longer reach the unit: no check for it */
	/*
	 * A successor waits for its removal: never two copies side by side
	 * (and with a cgroup, the old stop ends every process in it). The
	 * state record names it (statewrite.c): a daemon started after a crash
	 * lets its stop go on (takeover.c).
	 */
	enum evm_state st = evm_service_state(s);
	if (st == EVM_STATE_STARTING || st == EVM_STATE_RUNNING || st == EVM_STATE_RELOADING ||
	    st == EVM_STATE_STOPPING) {
		u->old = draining_stop(d, u, s);
		other_form(d, u->name, claim_one, s);
		return;
	}
	evm_service_remove(s);
}

/* gone: for good (its cgroup goes once its last copy has stopped), not the daemon's exit */
static void unit_remove_as(struct daemon *d, struct unit *u, bool gone)
{
	u->removed = true; /* a wait told of its release's events: removed, not "not created" */
	if (d->start_next == u)
		d->start_next = u->next;
	metrics_unit_gone(u);
	deps_forget(d, u);
	u->pending = u->want_stop = false;
	evm_timer_cancel(u->grace_timer);
	u->grace_timer = NULL;
	health_unit_gone(d, u);
	unit_release(d, u);
	output_unref(u->out);
	u->out = NULL;
	evm_cgroup_free(u->cg); /* the service keeps its own reference while it stops */
	if (u->prev)
		u->prev->next = u->next;
	else
		d->first = u->next;
	if (u->next)
		u->next->prev = u->prev;
	else
		d->last = u->prev;
	hmap_del(&d->units, &u->node);
	def_leave(d, u);
	d->nunits--;
	deps_forget(d, u); /* its removal's events may have resolved it again */
	svc_conf_unref(u->conf);
	free(u->blocked);
	free(u->fatal_why);
	free(u->spawn_why);
	if (gone) /* out of the table now: a service removed at once was told inside it */
		unit_cgroup_gone(d, u->name);
	free(u->name);
	free(u);
}

void unit_remove(struct daemon *d, struct unit *u)
{
	unit_remove_as(d, u, true);
}

/*
 * Every unit is created (with its pipes) before any is started: when
 * descriptors are short, the pipes get them and the library watches the
 * processes it has no pidfd for through SIGCHLD, rather than services
 * losing their logs.
 */
int units_load(struct daemon *d)
{
	int r = 0;
	size_t pipes = 0;
	d->defer_start = true;
	state_take_over_olds(d); /* old copies still stopping: their units wait for them */
	/*
	 * A name the record's ctl add took (the file has it again since, or it
	 * was removed from the file and added): the added one keeps it, as a
	 * reload refused the file before (reload.c); the file's only if the
	 * added one cannot be made again.
	 */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < d->cfg->nsvcs && r == 0; k++) {
			struct svc_conf *c = d->cfg->svcs[k];
			bool claimed = state_added_claims(d, c->name);
			if (pass ? !claimed || definition_made(d, c->name) : claimed)
				continue;
			if (pass)
				dlog("service %s: the definition added with ctl add is not made again: "
				     "the config file's is", c->name);
			pipes += (size_t)c->instances *
				 (OUT_CAPTURED(c->pol.out[0]) + OUT_CAPTURED(c->pol.out[1]));
			for (unsigned i = 0; i < c->instances && r == 0; i++)
				if (!unit_add(d, c, i, false))
					r = -ENOMEM;
		}
		if (!pass)
			state_readd(d); /* what ctl add added, from the record */
	}
	d->defer_start = false;
	d->t_units = mono_ns();
	state_take_over(d); /* before any start: a survivor is never started twice */
	struct rlimit rl;
	size_t need = 2 * pipes + d->nunits + 128;
	if (pipes && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
	    need > rl.rlim_max)
		dlog("%zu services with %zu log pipes need about %zu file descriptors (2 per pipe, "
		     "1 per running process): RLIMIT_NOFILE is %llu; raise it (LimitNOFILE= of the "
		     "unit, ulimit -n)%s", d->nunits, pipes, need, (unsigned long long)rl.rlim_max,
		     pipes > d->nunits ? ", or merge stderr into stdout (stderr = stdout)" : "");
	/*
	 * With dependencies anywhere, deps.c orders every start (an "after"
	 * needs to know what starts too): all at once, as before. Without, in
	 * batches from the loop.
	 */
	bool deps = false;
	for (struct unit *u = d->first; u && !deps; u = u->next)
		deps = u->conf->requires || u->conf->after;
	if (deps) {
		deps_start_wanted(d);
		daemon_started(d);
		return r;
	}
	d->start_next = d->first;
	units_start_batch(NULL, d);
	return r;
}

/*
 * The start of the daemon, START_BATCH services per loop iteration, fewer
 * when they take more than START_SLICE_NS (a spawn took 15 ms on a loaded
 * machine: 64 of them held a request for a second): between two batches the
 * loop serves the control socket, signals and exits, so a daemon with
 * 10,000 services answers `ctl ping` and stops on SIGTERM while it starts them.
 * The fd reserve is filled before each spawn: between two slices log files
 * and clients give fds back, and a child's pidfd would take them for good. Services with requires or after start last, in the order
 * their dependencies allow (deps.c). Then the daemon is "started" (READY=1).
 */
void units_start_batch(struct evm_timer *t, void *data)
{
	struct daemon *d = data;
	(void)t;
	d->start_timer = NULL;
	struct start_slice sl;
	start_slice_open(&sl);
	while (d->start_next && !d->stopping && start_slice_room(&sl)) {
		struct unit *u = d->start_next;
		d->start_next = u->next;
		/* u->old: an old copy still stopping (taken over after a crash): started at its end */
		if (!u->want_start || !u->svc || u->old || u->conf->requires || u->conf->after)
			continue;
		u->want_start = false;
		struct evm_service_info info;
		evm_service_info(u->svc, &info);
		/* started, or stopped by a request meanwhile */
		if (info.state != EVM_STATE_STOPPED || info.stopped_by_user)
			continue;
		sl.n++;
		int e = evm_service_start(u->svc);
		if (e < 0)
			dlog("service %s: cannot start it: %s", u->name, strerror(-e));
	}
	if (d->stopping) {
		d->start_next = NULL;
		return;
	}
	if (d->start_next && evm_timer_add(d->loop, 0, units_start_batch, d, &d->start_timer) == 0)
		return;
	d->start_next = NULL; /* out of memory for the timer: the rest at once, below */
	deps_start_wanted(d);
	daemon_started(d);
}

void units_free(struct daemon *d)
{
	while (d->first)
		unit_remove_as(d, d->first, false); /* cgroups_close removes the tree */
	hmap_clear(&d->units);
	hmap_clear(&d->defs);
	draining_free(d);
}

int units_reopen_logs(struct daemon *d, char *err, size_t errlen)
{
	int n = logs_reopen(d->logs, err, errlen);
	if (n < 0) {
		char msg[700];
		snprintf(msg, sizeof(msg), "%s: the output of services with stdout or stderr = log "
			 "is discarded until it can be written", err);
		events_log(d, NULL, NULL, n, msg);
		return -1;
	}
	if (logs_dir(d->logs))
		dlog("closed %d open log files: they are created again in %s at the next write", n,
		     logs_dir(d->logs));
	return n;
}
