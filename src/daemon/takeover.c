/*
 * takeover.c - taking over what the state record names (state.h), every
 * unit created and none started: the services added with ctl add made
 * again, the survivors adopted, where their policy had got to resumed, and
 * what may not be adopted killed; after a re-exec the old image's other
 * children killed; with cgroups, the cgroups no adopted service owns swept.
 *
 * A pid alone could name a process that reused it, so each line has the
 * process's start time too, and the library's adoption checks both through
 * a pidfd (evm_proc_adopt): an unrelated process is never touched. What a
 * crash loses anyway: the exit status of a survivor (reported unknown: we
 * are not its parent) and its output pipe (the read end died with the
 * daemon: see evmon.ini(5), CRASHES AND RE-EXEC).
 *
 * A survivor that may not be adopted (not in the config, its definition
 * changed, adopt = no) is killed, and waited for (up to KILL_WAIT_MS) before
 * a fresh copy starts. The record is freed at the end; its file stays until
 * the new daemon's first record replaces it.
 */
#include "state.h"

#include "cgroups.h"
#include "confkeys.h"
#include "confvalue.h"
#include "daemon.h"
#include "daemonlog.h"
#include "health.h"
#include "procstat.h"
#include "ready.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KILL_WAIT_MS 5000

/*
 * A definition an older evmon took may break a rule added since: a
 * log_max_bytes below CONF_LOG_MIN_BYTES (a mistake since), refused here,
 * would have its running process killed as part of no service. It is
 * raised to the least instead, and said; true when it was (the record
 * keeps the definition so mended).
 */
static bool readd_mend(cJSON *svc, const char *name)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(svc, "log_max_bytes");
	char num[32];
	const char *t = cJSON_IsString(v) ? v->valuestring : NULL;
	size_t n = 0;
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < CONF_LOG_MIN_BYTES) {
		snprintf(num, sizeof(num), "%.0f", v->valuedouble);
		t = num;
	}
	if (!t || !conf_parse_size(t, &n) || !n || n >= CONF_LOG_MIN_BYTES)
		return false;
	char least[16];
	snprintf(least, sizeof(least), "%uk", (unsigned)CONF_LOG_MIN_BYTES >> 10);
	dlog("service %s: log_max_bytes = %s, below the %s this evmon takes: %s", name, t, least,
	     least);
	cJSON_DeleteItemFromObjectCaseSensitive(svc, "log_max_bytes"); /* t is gone */
	return cJSON_AddStringToObject(svc, "log_max_bytes", least) != NULL;
}

/*
 * The services added with ctl add, from their definitions in the record:
 * the config file does not have them. Only the instances the record names
 * (one removed since is not made again); none starts here: the takeover
 * adopts the running ones, and those the record says are down stay down.
 */
static void readd_one(struct daemon *d, const char *def)
{
	struct errlist errs = {0};
	cJSON *svc = cJSON_Parse(def);
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(svc, "name");
	struct svc_conf *c = NULL;
	bool mended = false;
	if (cJSON_IsObject(svc) && cJSON_IsString(nm)) {
		mended = readd_mend(svc, nm->valuestring);
		c = requests_add_conf(d, svc, nm->valuestring, &errs, NULL);
	} else {
		errlist_add(&errs, "add", 0, "not a definition");
	}
	if (c && !(c->added_def = mended ? cJSON_PrintUnformatted(svc) : strdup(def)))
		errlist_add(&errs, "add", 0, "out of memory");
	char name[256];
	for (unsigned i = 0; c && !errs.n && i < c->instances; i++) {
		unit_instance_name(c, i, name, sizeof(name));
		if (state_find(d, name) && unit_add(d, c, i, true))
			dlog("service %s: added with ctl add before the %s: made again", name,
			     d->rec->reexec ? "re-exec" : "crash");
	}
	for (size_t k = 0; c && !errs.n && k < d->cfg->nsvcs; k++)
		if (!strcmp(d->cfg->svcs[k]->name, c->name))
			dlog("service %s: the config file has it too: the definition added with ctl "
			     "add is kept (a reload refuses the file until `evmon ctl remove %s`)",
			     c->name, c->name);
	if (errs.n)
		dlog("service %s: added with ctl add before the %s: cannot make it again: %s",
		     cJSON_IsString(nm) ? nm->valuestring : "?", d->rec->reexec ? "re-exec" : "crash",
		     errs.msgs[0]);
	svc_conf_unref(c);
	cJSON_Delete(svc);
	errlist_free(&errs);
}

/*
 * Whether the record has a definition added with ctl add named name (a
 * definition's name: "w" for instances "w:0", "w:1") and a line for one of
 * its instances: the added service takes the name back (state_readd), as
 * before the crash or the re-exec, where a reload refused a file that used
 * it. The file's definition of that name is then not made (units_load).
 */
bool state_added_claims(struct daemon *d, const char *name)
{
	struct hnode *n = d->rec ? hmap_get(&d->rec->added_idx, name) : NULL;
	return n && HMAP_ENTRY(n, struct rec_name, node)->claimed;
}

void state_readd(struct daemon *d)
{
	for (size_t i = 0; d->rec && i < d->rec->nadded; i++)
		readd_one(d, d->rec->added[i]);
}

/*
 * An old copy of name, which a reload replaced or removed and the daemon
 * before the crash was stopping (its stop signal sent): the stop goes on
 * here, SIGKILL when it was due (its whole cgroup with cgroups, else its
 * session's tree), and a successor of its name waits for its end as it
 * did. Before the record named them, the next daemon killed them at once
 * (a database's clean shutdown cut short). Made before the units, as the
 * removed service it was: its name is free again at once, and a unit of
 * that name finds it among those still stopping (unit_add). One we cannot
 * adopt is left to the sweep (or to the search for unrecorded processes),
 * which kills it as before.
 */
static void take_over_old(struct daemon *d, const char *name, const struct rec_old *o)
{
	uint64_t start;
	if (evm_proc_start_time(o->pid, &start) < 0 || start != o->start)
		return; /* gone meanwhile (or its pid reused): nothing to wait for */
	struct evm_cgroup *cg = NULL;
	if (d->cg && cgroups_service(d->cg, name, &cg) < 0)
		cg = NULL;
	char *argv[] = {(char *)name, NULL}; /* never started: only stopped */
	struct evm_service_opts so = {
		.name = name,
		.spawn = {.argv = argv},
		.restart = EVM_RESTART_NEVER,
		/* the daemon's default: its session, or its cgroup (its own kill_mode is not
		 * recorded: one of process or group loses what it meant to leave behind) */
		.kill_mode = EVM_KILL_TREE,
		.cgroup = cg,
		/* a held one is stopped here: as its definition said */
		.stop_signal = o->held ? o->stop_signal : 0,
		.stop_timeout_ms = o->held ? o->stop_ms : 0,
		.set = o->held ? EVM_SVC_STOP_TIMEOUT : 0,
	};
	struct evm_service *svc;
	int r = evm_service_new(d->loop, &so, &svc);
	evm_cgroup_free(cg); /* the service holds its own reference */
	if (r < 0) {
		dlog("service %s: old copy pid %d, being stopped by daemon %d: cannot take its stop "
		     "over: %s", name, (int)o->pid, (int)d->rec->daemon, strerror(-r));
		return;
	}
	/* 0: its SIGKILL was sent already (or due at once), so no timer was left to say when */
	struct evm_adopt_opts ao = {
		.pid = o->pid, .start_time = o->start,
		.flags = EVM_ADOPT_START_TIME | EVM_ADOPT_STOPPING | EVM_ADOPT_DEADLINE,
		.deadline_ms = state_ms_until(o->deadline),
	};
	if (o->held) /* not stopped yet: running, and the removal below stops it */
		ao.flags = EVM_ADOPT_START_TIME;
	r = evm_service_adopt(svc, &ao);
	if (r == 0 && o->held) {
		dlog("service %s: old copy pid %d, held by daemon %d for a dependent's stop: stopped now",
		     name, (int)o->pid, (int)d->rec->daemon);
		units_take_old(d, name, svc);
	} else if (r == 0) {
		dlog("service %s: old copy pid %d, being stopped by daemon %d: its stop goes on (%s)",
		     name, (int)o->pid, (int)d->rec->daemon, ao.deadline_ms ? "SIGKILL when due" : "SIGKILL now");
		units_take_old(d, name, svc);
	} else if (r == -EEXIST) {
		dlog("service %s: old copy pid %d named twice in the record: taken over once", name,
		     (int)o->pid);
	} else if (r != -ESRCH) {
		dlog("service %s: old copy pid %d, being stopped by daemon %d: cannot adopt it: %s; "
		     "killed as a process no record names", name, (int)o->pid, (int)d->rec->daemon,
		     strerror(-r));
	}
	evm_service_remove(svc); /* stopping: removed at its end; else at once */
}

void state_take_over_olds(struct daemon *d)
{
	for (size_t i = 0; d->rec && i < d->rec->n; i++)
		for (unsigned k = 0; k < d->rec->svcs[i].nolds; k++)
			take_over_old(d, d->rec->svcs[i].name, &d->rec->svcs[i].olds[k]);
}

/* SIGKILL a survivor (its group when it leads one) and wait for its death. */
static int kill_survivor(struct daemon *d, pid_t pid, uint64_t start)
{
	struct evm_adopt_opts o = {.pid = pid, .flags = EVM_ADOPT_START_TIME, .start_time = start};
	struct evm_proc *p;
	int r = evm_proc_adopt(d->loop, &o, &p);
	if (r < 0)
		return r;
	if (evm_proc_signal_group(p, SIGKILL) < 0)
		r = evm_proc_signal(p, SIGKILL);
	struct pollfd pfd = {.fd = evm_proc_pidfd(p), .events = POLLIN};
	if (r == 0 && pfd.fd >= 0)
		poll(&pfd, 1, KILL_WAIT_MS); /* before a fresh copy starts (its port, its files) */
	evm_proc_unref(p); /* its exit (status unknown) is reported by the loop */
	return r;
}

/*
 * A survivor we could neither adopt nor kill (no pidfd_open: a sandbox, a
 * kernel before 5.3; out of fds): with cgroups the sweep ends it; without,
 * it may still run. Its service is not started again then, which would run
 * it twice; the user ends it and starts the service.
 */
static void left_alone(struct daemon *d, struct unit *u, const struct rec_svc *s, const char *what,
		       int err)
{
	if (d->cg && d->cg_kept) { /* the sweep below kills its cgroup (cgroup.kill: no pidfd) */
		dlog("service %s: pid %d, left running by daemon %d: cannot %s it: %s; its cgroup "
		     "is swept", s->name, (int)s->pid, (int)d->rec->daemon, what, strerror(-err));
		return;
	}
	if (u && u->svc) {
		u->want_start = false;
		free(u->blocked); /* its status says why (until a start) */
		if (asprintf(&u->blocked, "not started: pid %d, left running by daemon %d, may run "
			     "still (cannot %s it: %s)", (int)s->pid, (int)d->rec->daemon, what,
			     strerror(-err)) < 0)
			u->blocked = NULL;
	}
	dlog("service %s: pid %d, left running by daemon %d: cannot %s it: %s; left running, "
	     "unsupervised%s", s->name, (int)s->pid, (int)d->rec->daemon, what, strerror(-err),
	     u && u->svc ? ", and not started again (it would run twice): end it, then start the "
			   "service" : "");
}

static void kill_one(struct daemon *d, struct unit *u, struct rec_svc *s, const char *why)
{
	int r = kill_survivor(d, s->pid, s->start);
	if (r == 0)
		dlog("service %s: pid %d, left running by daemon %d, killed (%s)", s->name,
		     (int)s->pid, (int)d->rec->daemon, why);
	else if (r != -ESRCH)
		left_alone(d, u, s, "kill", r);
}

/*
 * Carry on where the policy had got to: its counters, and a backoff, an
 * exited or fatal state (as: into that state, or STOPPED for the counters
 * only). The backoff's deadline is on CLOCK_BOOTTIME: what is left of it.
 */
static void resume_one(struct daemon *d, struct unit *u, const struct rec_svc *s, enum evm_state as)
{
	if (!s->has_policy)
		return;
	struct evm_service_resume r = {
		.state = as, .restarts = s->restarts, .failures = s->failures,
		.start_failures = s->start_failures, .backoff_step = s->backoff_step,
		.delay_ms = state_ms_until(s->next_start),
		.message = d->rec->reexec ? "carried over across the re-exec"
					  : "carried over from the daemon that died",
	};
	int e = evm_service_resume(u->svc, &r);
	if (e < 0)
		dlog("service %s: cannot carry over its restart counters: %s", u->name, strerror(-e));
	else if (as != EVM_STATE_STOPPED)
		u->want_start = false;
	/* why it was given up on, not "carried over" (the resume's word, its event just told) */
	if (e >= 0 && as == EVM_STATE_FATAL && s->why[0]) {
		free(u->fatal_why);
		u->fatal_why = strdup(s->why);
	}
}

/*
 * What its status showed of its past: the last exit, the last spawn error,
 * since when it is in its state. After the adoption or the resume, which
 * set "since" to now; a unit whose definition changed starts afresh.
 */
static void past_one(struct daemon *d, const struct rec_svc *s)
{
	struct unit *u = unit_find(d, s->name);
	if (!s->has_past || !u || !u->svc || state_ident(u->conf) != s->ident)
		return;
	int e = evm_service_resume_history(u->svc, &s->past);
	if (e < 0 && e != -EBUSY)
		dlog("service %s: cannot carry over its last exit: %s", u->name, strerror(-e));
}

/*
 * Its starts since it was made (evmon_service_starts_total), after the
 * adoption, which counted as one: the same definition's, as its restarts.
 */
static void starts_one(struct daemon *d, const struct rec_svc *s)
{
	struct unit *u = unit_find(d, s->name);
	if (s->has_starts && u && u->svc && state_ident(u->conf) == s->ident)
		u->starts = s->starts;
}

/*
 * A service whose main process exited while its tree runs on (track = tree):
 * no pid to adopt; its cgroup is the service's again (kept from the sweep)
 * and the main's exit, the line's exit=, is decided when the cgroup is
 * empty. Else (the tree ended meanwhile, no exit recorded) it starts afresh,
 * what is left of it swept first.
 */
static void take_over_tree(struct daemon *d, struct unit *u, const struct rec_svc *s)
{
	if (!s->has_past || !s->past.has_exit)
		return;
	resume_one(d, u, s, EVM_STATE_STOPPED); /* its counters, kept by the adoption */
	int r = evm_service_adopt_tree(u->svc, &s->past.last_exit);
	if (r < 0) {
		dlog("service %s: cannot take over its processes (its main process %d exited before): "
		     "%s%s",
		     s->name, (int)s->past.last_exit.pid,
		     r == -ESRCH    ? "its cgroup is empty now"
		     : r == -EINVAL ? "it no longer runs in a cgroup of its own with track = tree and "
				      "kill_mode = tree"
		     : r == -ENOENT ? "its cgroup cannot be watched (no descriptor left)"
				    : strerror(-r),
		     u->want_start ? ": started afresh" : ": what is left of it ended, left stopped");
		return;
	}
	health_resume(u, (enum health_status)s->health, s->health_streak);
	u->want_start = false;
	u->adopted = true;
	if (!d->rec->reexec)
		dlog("service %s: its cgroup's processes taken over (its main process %d exited "
		     "before), left running by daemon %d",
		     s->name, (int)s->past.last_exit.pid, (int)d->rec->daemon);
}

static void take_over_one(struct daemon *d, struct rec_svc *s)
{
	struct unit *u = unit_find(d, s->name);
	bool same = u && u->svc && state_ident(u->conf) == s->ident;
	/* being stopped (or to be): not started again, adopted, gone (its exit lost in the
	 * crash) or without a process (what a track = tree main left: the sweep ends it) */
	if (u && (s->flags == REC_STOP || s->flags == REC_STOPPING))
		u->want_start = false;
	if (u && u->svc && s->flags == REC_RESTART)
		u->want_start = true; /* being restarted: started, adopted (below) or not */
	if (same && s->flags == REC_DOWN) {
		u->want_start = false; /* stopped by a user, or over: it stays stopped */
		bool over = s->state == EVM_STATE_EXITED || s->state == EVM_STATE_FATAL;
		resume_one(d, u, s, over ? s->state : EVM_STATE_STOPPED);
		/*
		 * Still stopped by a user (a stop of a stopped service only notes it):
		 * the next record says down again, and a reload keeps an unless-stopped
		 * one down. Without it a second takeover started it.
		 */
		if (evm_service_state(u->svc) == EVM_STATE_STOPPED)
			evm_service_stop(u->svc);
		return;
	}
	if (s->flags == REC_START) { /* asked to start, not started yet: still asked */
		if (u && u->svc)
			u->want_start = true; /* its counters: a start resets them anyway */
		if (!s->pid)
			return;
		/* a record written by hand: its process is taken over, never left to run twice */
	}
	if (!s->pid) {
		if (same && s->tree && s->flags == REC_RUN && u->conf->pol.adopt)
			take_over_tree(d, u, s);
		else if (same && s->flags == REC_RUN && s->state == EVM_STATE_BACKOFF)
			resume_one(d, u, s, EVM_STATE_BACKOFF); /* not started at once */
		return;
	}
	if (!same || !u->conf->pol.adopt) {
		kill_one(d, u, s, !u || !u->svc ? "it is not in the config"
			       : !same	     ? "its definition changed"
					     : "adopt = no");
		return;
	}
	struct evm_adopt_opts o = {.pid = s->pid, .flags = EVM_ADOPT_START_TIME,
				   .start_time = s->start};
	if (s->pidfd >= 0) { /* the old image's own, across the exec: no check needed */
		o.flags |= EVM_ADOPT_PIDFD | EVM_ADOPT_KEPT;
		o.pidfd = s->pidfd;
	}
	/* its stop signal was sent: a second one may mean "now" to it (a second ^C) */
	bool stopping = s->flags == REC_STOPPING || s->flags == REC_RESTART;
	if (stopping)
		o.flags |= EVM_ADOPT_STOPPING;
	if (s->ready_fd >= 0) { /* its fd:N pipe, kept across the re-exec */
		ready_take_pipe(u, s->ready_fd);
		s->ready_fd = -1;
	}
	bool starting = s->has_policy && s->state == EVM_STATE_STARTING;
	if (!stopping && s->failing && s->deadline) /* its stop for a failure goes on */
		o.flags |= EVM_ADOPT_FAILING | (starting ? EVM_ADOPT_STARTING : 0);
	/* not ready yet: awaited still (READY=1 reaches us, checks run again, its pipe) */
	else if (!stopping && starting && ready_awaitable(u))
		o.flags |= EVM_ADOPT_STARTING;
	resume_one(d, u, s, EVM_STATE_STOPPED); /* its counters, kept by the adoption */
	/* its ready timeout (as extended) or its SIGKILL, when the one before us had it */
	if ((o.flags & (EVM_ADOPT_STARTING | EVM_ADOPT_STOPPING | EVM_ADOPT_FAILING)) &&
	    s->deadline) {
		o.flags |= EVM_ADOPT_DEADLINE;
		o.deadline_ms = state_ms_until(s->deadline);
	}
	int r = evm_service_adopt(u->svc, &o);
	if (r == 0 || s->pidfd < 0)
		s->pidfd = -1; /* the loop's now */
	if (r == 0) {
		health_resume(u, (enum health_status)s->health, s->health_streak);
		if (s->has_watchdog) /* the period the service asked for, not watchdog_sec again */
			ready_set_watchdog(d, u, s->watchdog_ms);
		/* a reload under way (RELOADING=1, no READY=1 yet): awaited still, within what
		 * was left of its timeout (none: none; past: due at once) */
		if (!stopping && !s->failing && s->has_policy && s->state == EVM_STATE_RELOADING) {
			uint64_t left = s->deadline ? state_ms_until(s->deadline) : 0;
			evm_service_reloading(u->svc, !s->deadline ? 0 : left ? left : 1);
		}
		u->want_start = false;
		u->adopted = true;
		u->rec_pid = s->pid;
		u->rec_start = s->start;
		if (!d->rec->reexec) /* a re-exec's are counted in one line */
			dlog("service %s: adopted pid %d, left running by daemon %d (its exit status "
			     "will be unknown)", s->name, (int)s->pid, (int)d->rec->daemon);
		if (s->flags == REC_RESTART) { /* the start it waited for, after the exit */
			evm_service_restart(u->svc);
			unit_note_start_after(d, u);
		}
	} else if (r == -ESRCH) {
		dlog("service %s: pid %d of the record is gone (or is another process now): %s",
		     s->name, (int)s->pid,
		     u->want_start ? "started again"
		     : s->flags == REC_STOPPING || s->flags == REC_STOP ? "left stopped (it was being stopped)"
									  : "left stopped");
	} else {
		dlog("service %s: cannot adopt pid %d: %s", s->name, (int)s->pid, strerror(-r));
		kill_one(d, u, s, "it cannot be adopted"); /* else left alone, not run twice */
	}
}

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

/* The sessions of the adopted services' main processes (not ours), sorted; NULL: none */
static pid_t *adopted_sessions(struct daemon *d, size_t *n)
{
	size_t cap = 0;
	for (const char *nm = NULL; (nm = units_next_draining(d, nm));) /* old copies taken over */
		for (size_t i = 0; units_old(d, nm, i, NULL); i++)
			cap++;
	*n = 0;
	for (struct unit *u = d->first; u; u = u->next)
		cap += u->adopted;
	pid_t *sids = cap ? malloc(cap * sizeof(*sids)) : NULL, own = getsid(0);
	for (struct unit *u = d->first; sids && u; u = u->next) {
		struct evm_proc *p = u->adopted && u->svc ? evm_service_proc(u->svc) : NULL;
		pid_t sid = p ? getsid(evm_proc_pid(p)) : -1;
		if (sid > 0 && sid != own)
			sids[(*n)++] = sid;
	}
	for (const char *nm = NULL; sids && (nm = units_next_draining(d, nm));) {
		struct evm_service *old;
		for (size_t i = 0; *n < cap && (old = units_old(d, nm, i, NULL)); i++) {
			struct evm_proc *p = evm_service_proc(old);
			pid_t sid = p ? getsid(evm_proc_pid(p)) : -1;
			if (sid > 0 && sid != own)
				sids[(*n)++] = sid;
		}
	}
	if (sids)
		qsort(sids, *n, sizeof(*sids), pid_cmp);
	return sids;
}

/*
 * Whether pid's environment (as it was exec'ed) holds want ("EVMON_DAEMON_ID=..."):
 * 1, 0, or -errno when it cannot be read; its EVMON_SERVICE value into name ("?"
 * without one), and into *check (optional) whether it is a check's (EVMON_CHECK).
 */
static int env_names(pid_t pid, const char *want, char *name, size_t cap, bool *check)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	if (check)
		*check = false;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char *e = NULL;
	size_t ecap = 0;
	bool has = false;
	snprintf(name, cap, "?");
	while (getdelim(&e, &ecap, 0, f) > 0) {
		if (!strcmp(e, want))
			has = true;
		else if (!strncmp(e, "EVMON_SERVICE=", 14))
			snprintf(name, cap, "%s", e + 14);
		else if (check && !strncmp(e, "EVMON_CHECK=", 12))
			*check = true;
	}
	free(e);
	fclose(f);
	return has;
}

/*
 * After a re-exec every child of the old image is still ours: the services
 * just adopted (those added with ctl add too: state_readd), and what no
 * record names: health and readiness checks under way (EVMON_CHECK in their
 * environment), the main process of a service whose definition could not be
 * made again, an old main process that stayed after it handed over with
 * MAINPID=, and, as PID 1 or a subreaper, every orphan given to the daemon:
 * what a service left (kill_mode = process, a double fork out of its
 * session), what was started in the container from outside (docker exec).
 * Nobody would wait for the checks and the mains not made again: they are
 * killed (their group: checks lead their own, in sessions of their own) and
 * the loop reaps them. The rest is kept, as the old image kept it, tracked
 * by the loop: an old main or what a running service left (in its session,
 * or naming it: EVMON_SERVICE) is ended by the service's stop, other
 * orphans live on until they exit. The adopted ones are refused with
 * -EEXIST. Without /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN) they
 * are left, as before. Not told apart: an old main whose new main left its
 * session (setsid), with cgroups; it is killed, with its group (which the
 * new main left too).
 */
static bool stray_ends(struct daemon *d, pid_t pid, const pid_t *sids, size_t nsids)
{
	char want[64], name[300];
	pid_t sid = getsid(pid);
	if (sid > 0 && nsids && bsearch(&sid, sids, nsids, sizeof(*sids), pid_cmp))
		return false; /* in an adopted service's session */
	/* a recorded main no service took back (the adopted ones are not strays) */
	for (size_t i = 0; i < d->rec->n; i++)
		if (d->rec->svcs[i].pid == pid)
			return true;
	bool check;
	snprintf(want, sizeof(want), "EVMON_DAEMON_ID=%016" PRIx64, d->lineage);
	int ours = env_names(pid, want, name, sizeof(name), &check);
	/*
	 * Not ours: kept. Unreadable (another user's, not dumpable: ptrace's
	 * rules without CAP_SYS_PTRACE, as in a container): one that leads a
	 * session of its own may be a check (each leads its own), ended as
	 * before the mark; an orphan from elsewhere seldom is.
	 */
	return ours > 0 ? check : ours == -EACCES && sid == pid;
}

static size_t end_strays(struct daemon *d, size_t *kept)
{
	size_t n = 0, nsids = 0;
	pid_t *sids = NULL;
	bool looked = false;
	DIR *tasks = opendir("/proc/self/task");
	struct dirent *t;
	while (tasks && (t = readdir(tasks))) {
		char path[64];
		if (t->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.20s/children", t->d_name);
		FILE *f = fopen(path, "re");
		int pid;
		while (f && fscanf(f, "%d", &pid) == 1) {
			struct evm_adopt_opts o = {.pid = pid};
			struct evm_proc *p;
			if (evm_proc_adopt(d->loop, &o, &p) < 0)
				continue; /* -EEXIST: a service's; -ESRCH: gone */
			if (!looked) {
				sids = adopted_sessions(d, &nsids);
				looked = true;
			}
			if (!stray_ends(d, pid, sids, nsids)) {
				evm_proc_unref(p); /* tracked: its exit is reaped */
				(*kept)++;
				continue;
			}
			if (evm_proc_signal_group(p, SIGKILL) < 0)
				evm_proc_signal(p, SIGKILL);
			evm_proc_unref(p);
			n++;
		}
		if (f)
			fclose(f);
	}
	if (tasks)
		closedir(tasks);
	free(sids);
	return n;
}

/*
 * Without cgroups, after a crash: the processes a daemon of our line
 * started (its services and their children carry our EVMON_DAEMON_ID,
 * daemon.c) that no adopted service owns, found in /proc. One started in
 * the daemon's last loop iteration is missing from the record, and its
 * service would run twice; the rest are leftovers (checks under way, what
 * a service not adopted left). Killed with their groups, as the cgroups'
 * sweep kills what no adopted service owns; never one in an adopted
 * service's session or naming one (EVMON_SERVICE: it left the session,
 * the service runs on), nor our own children or ourselves. A process that
 * cleared or changed its environment in place is not found.
 */
static size_t end_unrecorded(struct daemon *d)
{
	char want[64];
	if (!d->rec->lineage || d->rec->lineage != d->lineage)
		return 0; /* a record older than the id: its processes cannot be told */
	snprintf(want, sizeof(want), "EVMON_DAEMON_ID=%016" PRIx64, d->lineage);
	size_t nsids = 0, n = 0;
	pid_t *sids = adopted_sessions(d, &nsids), self = getpid();
	DIR *proc = opendir("/proc");
	struct dirent *de;
	while (proc && (de = readdir(proc))) {
		char *end, name[300];
		long v = strtol(de->d_name, &end, 10);
		pid_t pid = (pid_t)v, ppid, sid;
		uint64_t start, again;
		if (*end || v <= 0 || pid == self || proc_stat(pid, &ppid, &start) < 0 || ppid == self ||
		    env_names(pid, want, name, sizeof(name), NULL) <= 0)
			continue;
		/* the environment read was that process's: the same start time after it */
		if (proc_stat(pid, &ppid, &again) < 0 || again != start || (sid = getsid(pid)) < 0 ||
		    (nsids && bsearch(&sid, sids, nsids, sizeof(*sids), pid_cmp)))
			continue;
		struct unit *u = unit_find(d, name);
		if (u && u->adopted)
			continue; /* its service's, out of its session (setsid): the service runs on */
		if (kill_survivor(d, pid, start) < 0)
			continue; /* gone meanwhile (its group's kill took it), or not ours to kill */
		n++;
		if (u && u->want_start)
			dlog("service %s: pid %d, started by daemon %d and not in its record, killed "
			     "before a fresh copy starts (it would run twice)", name, (int)pid,
			     (int)d->rec->daemon);
		else
			dlog("pid %d (EVMON_SERVICE=%s), started by daemon %d, part of no service "
			     "taken over, killed", (int)pid, name, (int)d->rec->daemon);
	}
	if (proc)
		closedir(proc);
	free(sids);
	return n;
}

/* unit is a removed service's whose cgroup the previous image waited to empty */
static bool was_gone(const struct daemon *d, const char *unit)
{
	return d->rec && hmap_get(&d->rec->gone_idx, unit);
}

/*
 * A cgroup of the base: kept if an adopted service's, or a removed one's
 * the previous image waited for (kill_mode = process leftovers; a service
 * of that name in the file again starts beside them, as in that image),
 * else its processes are killed.
 */
static int sweep_decide(const char *unit, void *data)
{
	struct daemon *d = data;
	struct unit *u = unit_find(d, unit);
	if (units_draining(d, unit))
		return CGROUPS_SWEEP_KEEP; /* an old copy's, its stop taken over */
	if (was_gone(d, unit))
		return CGROUPS_SWEEP_KEEP; /* waited for again below, or its name is back */
	if (!u)
		return CGROUPS_SWEEP_REMOVE;
	return u->adopted ? CGROUPS_SWEEP_KEEP : CGROUPS_SWEEP_KILL;
}

void state_take_over(struct daemon *d)
{
	size_t kept = 0;
	d->quiet_adopt = d->rec && d->rec->reexec;
	if (d->rec)
		for (size_t i = 0; i < d->rec->n; i++) {
			d->rec->svcs[i].used = true;
			take_over_one(d, &d->rec->svcs[i]);
			past_one(d, &d->rec->svcs[i]);
			starts_one(d, &d->rec->svcs[i]);
		}
	d->quiet_adopt = false;
	/*
	 * Those to stop (once their dependents are down, or at their turn): once
	 * all are adopted, so that the order of the stops holds on (deps.c).
	 */
	for (size_t i = 0; d->rec && i < d->rec->n; i++) {
		struct unit *u = unit_find(d, d->rec->svcs[i].name);
		if (d->rec->svcs[i].flags == REC_STOP && u && u->adopted)
			deps_stop(d, u);
	}
	for (struct unit *u = d->first; d->rec && u; u = u->next)
		kept += u->adopted;
	size_t others = 0, strays = d->rec && d->rec->reexec ? end_strays(d, &others) : 0;
	if (strays)
		dlog("%zu processes of the previous image that no record names (checks under way, "
		     "services not made again) killed", strays);
	if (others)
		dlog("%zu processes of the previous image kept (a main process that handed over with "
		     "MAINPID= and stayed, what a service left, orphans given to the daemon): reaped "
		     "when they end", others);
	if (d->cg && d->cg_kept)
		cgroups_sweep(d->cg, sweep_decide, d);
	else if (!d->cg && d->rec && !d->rec->reexec)
		end_unrecorded(d);
	for (size_t i = 0; d->cg && d->rec && i < d->rec->ngone; i++) {
		const char *gone = d->rec->gone[i]->name;
		if (!unit_find(d, gone) && !units_draining(d, gone))
			cgroups_service_gone(d->cg, d->loop, gone);
	}
	if (d->rec && d->rec->client_fd >= 0) { /* who asked for the reexec */
		reexec_answer(d, d->rec, kept);
		d->rec->client_fd = -1;
	}
	if (d->rec && d->rec->reexec)
		reexec_done(d, d->rec, kept);
	record_free(d->rec); /* the file stays until our first record replaces it */
	d->rec = NULL;
	state_changed(d);
}
