/*
 * deps.c - starting and stopping services in the order of their
 * dependencies (requires and after, config.h).
 *
 * A unit to start is "pending" until every service it requires is ready
 * (running; or exited with a success code: a job that has done its work;
 * NAME:healthy: running and its health check passed, health.c; unhealthy
 * is a failure, like compose's service_healthy)
 * and every service it starts after has settled (is not starting); then
 * it is started. A required service that cannot become ready (fatal,
 * exited with a failure, stopped, not started itself) keeps it from
 * starting: it is "blocked", with the reason in its status. Nothing polls:
 * a pending unit is looked at again when one of its dependencies changes
 * state (deps_changed, from every service event), or will not start after
 * all without an event of the library (blocked, stopped or removed while
 * pending: it was STOPPED already).
 *
 * Stopping is the reverse: a unit to stop ("want_stop") is stopped once
 * every dependent being stopped too is down. `ctl stop A` stops what
 * requires A first; the shutdown stops everything that way, so
 * independent services stop in parallel and chains from their end. A unit
 * waiting for a restart (BACKOFF) is stopped at once, whether it was there
 * when asked or went there while its dependents stopped: it has no process
 * to keep up, and its backoff timer would start it again meanwhile.
 * Within shutdown_timeout, a unit stopped with a chain of N units still to
 * stop after it (itself included) gets at most 1/N of the time left before
 * SIGKILL: the dependencies' turn comes before the deadline, not with it.
 *
 * Starts and stops go in bursts (START_BATCH, START_SLICE_NS): when 3,000
 * services start after one and it comes up, they start over the next
 * iterations, not all in this one (2 s without an answer to anything); a
 * `ctl stop` of 3,000 walked 3,000 cgroups in one (~300 ms). A unit let go
 * and not yet started, or free to stop and not yet stopped, is "queued":
 * still pending (or to stop) to its dependents, its status and the waits,
 * so nothing counts it as started or stopped meanwhile. The shutdown's
 * stops do not queue (they share one dispatch: deps_stop_all), nor does a
 * stop without a process to signal (BACKOFF: its restart must not come).
 *
 * The graph is resolved from the names of the config into unit pointers
 * (deps, rdeps) lazily, after units came or went (deps_forget). Names are
 * definitions: requiring a definition with instances requires all of them.
 */
#include "daemon.h"

#include "daemonlog.h"
#include "events.h"
#include "state.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the graph */

static void drop_graph(struct daemon *d)
{
	for (struct unit *u = d->first; u; u = u->next) {
		free(u->deps);
		free(u->rdeps);
		u->deps = NULL;
		u->rdeps = NULL;
		u->ndeps = u->nrdeps = 0;
	}
}

static int push_dep(struct unit *u, struct unit *t, enum dep_kind kind, size_t *cap)
{
	if (u->ndeps == *cap) {
		size_t n = *cap ? *cap * 2 : 4;
		struct dep *v = realloc(u->deps, n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		u->deps = v;
		*cap = n;
	}
	u->deps[u->ndeps++] = (struct dep){t, kind};
	t->nrdeps++; /* counted now, filled in the second pass */
	return 0;
}

/* Every unit of the definition a word names (NAME, or its instances NAME:i left). */
static int resolve_word(struct daemon *d, struct unit *u, const char *w, enum dep_kind kind,
			size_t *cap)
{
	int len = config_dep_name_len(w, kind == DEP_AFTER);
	char name[300];
	if (len < 0 || len > 128)
		return 0; /* the config check said so */
	snprintf(name, sizeof(name), "%.*s", len, w);
	struct unit *t = unit_find(d, name);
	if (t && t->conf->instances <= 1)
		return t == u ? 0 : push_dep(u, t, kind, cap);
	for (t = unit_first_instance(d, name); t; t = t->inst_next)
		if (t != u && push_dep(u, t, kind, cap) < 0)
			return -ENOMEM;
	return 0;
}

static int by_target(const void *a, const void *b)
{
	const struct dep *x = *(const struct dep *const *)a, *y = *(const struct dep *const *)b;
	uintptr_t p = (uintptr_t)x->u, q = (uintptr_t)y->u;
	return p < q ? -1 : p > q ? 1 : x < y ? -1 : x > y; /* then in the config's order */
}

/*
 * One edge per target, of the strongest kind (healthy, ready, after), where
 * it first came: a name in both requires and after was listed twice in
 * waiting_for and counted twice among the target's dependents.
 */
static int merge_deps(struct unit *u)
{
	if (u->ndeps < 2)
		return 0;
	struct dep **v = malloc(u->ndeps * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < u->ndeps; i++)
		v[i] = &u->deps[i];
	qsort(v, u->ndeps, sizeof(*v), by_target);
	for (size_t i = 1, keep = 0; i < u->ndeps; i++) {
		if (v[i]->u != v[keep]->u) {
			keep = i;
			continue;
		}
		if (v[i]->kind > v[keep]->kind)
			v[keep]->kind = v[i]->kind;
		v[i]->u->nrdeps--;
		v[i]->u = NULL;
	}
	free(v);
	size_t n = 0;
	for (size_t i = 0; i < u->ndeps; i++)
		if (u->deps[i].u)
			u->deps[n++] = u->deps[i];
	u->ndeps = n;
	return 0;
}

static int build_graph(struct daemon *d)
{
	for (struct unit *u = d->first; u; u = u->next) {
		size_t cap = 0;
		for (char **w = u->conf->requires; w && *w; w++)
			if (resolve_word(d, u, *w, strcmp(config_dep_cond(*w), "healthy") ? DEP_READY
							   : DEP_HEALTHY, &cap) < 0)
				return -ENOMEM;
		for (char **w = u->conf->after; w && *w; w++)
			if (resolve_word(d, u, *w, DEP_AFTER, &cap) < 0)
				return -ENOMEM;
		if (merge_deps(u) < 0)
			return -ENOMEM;
	}
	for (struct unit *u = d->first; u; u = u->next) {
		if (u->nrdeps && !(u->rdeps = calloc(u->nrdeps, sizeof(*u->rdeps))))
			return -ENOMEM;
		u->nrdeps = 0;
	}
	for (struct unit *u = d->first; u; u = u->next)
		for (size_t i = 0; i < u->ndeps; i++)
			u->deps[i].u->rdeps[u->deps[i].u->nrdeps++] = u;
	return 0;
}

static void ensure_graph(struct daemon *d)
{
	if (!d->deps_dirty)
		return;
	drop_graph(d);
	d->deps_dirty = false;
	d->deps_gen++;
	if (build_graph(d) < 0) {
		drop_graph(d); /* out of memory: every service as if it had no dependencies */
		dlog("out of memory resolving the dependencies: they are not followed");
	}
}

/* u out of the queue (see "the queue" below), if it is in */
static void go_unlink(struct daemon *d, struct unit *u)
{
	if (!u->queued)
		return;
	u->queued = false;
	if (u->go_prev)
		u->go_prev->go_next = u->go_next;
	else
		d->go_first = u->go_next;
	if (u->go_next)
		u->go_next->go_prev = u->go_prev;
	else
		d->go_last = u->go_prev;
	u->go_prev = u->go_next = NULL;
}

static void go_append(struct daemon *d, struct unit *u)
{
	u->queued = true;
	u->go_prev = d->go_last;
	if (d->go_last)
		d->go_last->go_next = u;
	else
		d->go_first = u;
	d->go_last = u;
}

void deps_forget(struct daemon *d, struct unit *u)
{
	if (u)
		go_unlink(d, u); /* a unit that goes leaves the queue */
	/* no pointer to a unit that goes may stay behind; once dropped, nothing is (O(1) per unit) */
	if (!d->deps_dirty)
		drop_graph(d);
	d->deps_dirty = true;
	d->deps_gen++; /* loops over the arrays just freed stop */
}

/* The name a requires or after word names into buf (room 300), or false when it is not one. */
static bool dep_name(const char *w, bool after, char *buf)
{
	int len = config_dep_name_len(w, after);
	if (len < 0 || len > 128)
		return false;
	snprintf(buf, 300, "%.*s", len, w);
	return true;
}

/*
 * Does the service called from depend, through any chain of requires and
 * after, on one called name? The services as they are now, which the
 * config's check (confdeps.c) never saw: an added one may close a cycle
 * (add p, add q requiring p, remove p, add p requiring q), and then a stop
 * of q, and the daemon's shutdown, waited on each other for good.
 */
static bool depends_on(struct daemon *d, const char *from, const char *name)
{
	char buf[300];
	struct unit *first = unit_of_definition(d, from);
	if (!first)
		return false;
	/* breadth first: every unit reached, in order, marked while it is in all */
	size_t n = 0, head = 0, cap = 16;
	struct unit **all = malloc(cap * sizeof(*all));
	bool found = false;
	if (!all)
		return false;
	all[n++] = first;
	first->mark = true;
	while (head < n && !found) {
		struct unit *u = all[head++];
		char **lists[2] = {u->conf->requires, u->conf->after};
		for (int k = 0; k < 2 && !found; k++) {
			for (char **w = lists[k]; w && *w && !found; w++) {
				if (!dep_name(*w, k == 1, buf))
					continue;
				found = !strcmp(buf, name);
				struct unit *t = found ? NULL : unit_of_definition(d, buf);
				if (!t || t->mark)
					continue;
				if (n == cap) {
					struct unit **bigger = realloc(all, 2 * cap * sizeof(*all));
					if (!bigger)
						continue; /* out of memory: not followed */
					all = bigger;
					cap *= 2;
				}
				t->mark = true;
				all[n++] = t;
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		all[i]->mark = false;
	free(all);
	return found;
}

void deps_check_added(struct daemon *d, const struct svc_conf *c, struct errlist *errs)
{
	static const char *const key[2] = {"requires", "after"};
	char **lists[2] = {c->requires, c->after};
	char name[300];
	for (int k = 0; k < 2; k++) {
		for (char **w = lists[k]; w && *w; w++) {
			int len = config_dep_name_len(*w, k == 1);
			if (len < 0 || len > 128) {
				errlist_add(errs, "add", 0, "%s: '%s': %s", key[k], *w,
					    config_dep_word_error(*w, k == 1));
				continue;
			}
			snprintf(name, sizeof(name), "%.*s", len, *w);
			if (!strcmp(name, c->name))
				errlist_add(errs, "add", 0, "%s: service %s depends on itself", key[k],
					    c->name);
			else if (!unit_of_definition(d, name))
				errlist_add(errs, "add", 0, "%s: unknown service '%.*s'", key[k], len, *w);
			else if (depends_on(d, name, c->name))
				errlist_add(errs, "add", 0, "%s: '%.*s' depends on %s: a dependency cycle",
					    key[k], len, *w, c->name);
		}
	}
}

struct unit *deps_still_required(struct daemon *d, struct unit **sel, size_t n, struct unit **by)
{
	ensure_graph(d);
	for (size_t i = 0; i < n; i++)
		sel[i]->mark = true;
	struct unit *hit = NULL;
	for (struct unit *v = d->first; v && !hit; v = v->next) {
		for (size_t i = 0; i < v->ndeps && !v->mark && !hit; i++) {
			struct unit *t = v->deps[i].u;
			if (v->deps[i].kind == DEP_AFTER || !t->mark)
				continue;
			/* requires NAME: any instance of it left is enough */
			bool left = false;
			for (size_t k = 0; k < v->ndeps && !left; k++)
				left = v->deps[k].u->conf == t->conf && !v->deps[k].u->mark;
			if (!left) {
				hit = t;
				*by = v;
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		sel[i]->mark = false;
	return hit;
}

/* -------------------------------------------------------------- states */

static enum evm_state state(const struct unit *u)
{
	return u->svc ? evm_service_state(u->svc) : EVM_STATE_STOPPED;
}

static bool active(const struct unit *u)
{
	enum evm_state s = state(u);
	return s == EVM_STATE_STARTING || s == EVM_STATE_RUNNING || s == EVM_STATE_RELOADING ||
	       s == EVM_STATE_BACKOFF || s == EVM_STATE_STOPPING;
}

/* Stopped for good, exited, fatal or never created: nothing to wait for. */
static bool down(const struct unit *u)
{
	return !u->pending && !active(u);
}

static bool exited_ok(const struct unit *u)
{
	struct evm_service_info info;
	evm_service_info(u->svc, &info);
	if (!info.has_exit || info.last_exit.signal || info.last_exit.status_unknown)
		return false;
	int c = info.last_exit.code;
	if (!u->conf->pol.codes_set)
		return c == 0;
	return c >= 0 && c < 256 && (u->conf->pol.codes[c / 64] & (1ull << (c % 64)));
}

const char *deps_state_name(const struct unit *u)
{
	/* deferred: a start waiting for its old copy's end, as one for a dependency */
	return u->pending || unit_deferred(u) ? "waiting" : evm_state_name(state(u));
}

/* ------------------------------------------------------------- events */

static void publish_state(struct daemon *d, struct unit *u, const char *st, const char *old,
			  const char *key, const char *text)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", "state");
	cJSON_AddStringToObject(o, "service", u->name);
	cJSON_AddStringToObject(o, "state", st);
	cJSON_AddStringToObject(o, "old_state", old);
	if (text)
		cJSON_AddStringToObject(o, key, text);
	events_publish(d, u->name, o);
}

void deps_tell_deferred(struct daemon *d, struct unit *u)
{
	publish_state(d, u, "waiting", evm_state_name(state(u)), NULL, NULL);
}

/* ------------------------------------------------------------- starting */

enum verdict { GO, WAIT, FAIL };

/* May t let u start? Says why not (to buf) when never. */
static enum verdict judge(const struct dep *dp, char *buf, size_t len)
{
	const struct unit *t = dp->u;
	enum evm_state s = state(t);
	/* start_after: STOPPED only until its spawn turn (a restart, a start while stopping);
	 * old and want_start: a replacement that starts once its old copy is gone;
	 * want_stop: running, but to stop once its dependents are down (or at its turn):
	 * one started meanwhile would be left running without it */
	bool coming = t->pending || t->start_after || unit_deferred(t) || t->want_stop;
	if (dp->kind == DEP_AFTER)
		return coming || s == EVM_STATE_STARTING || s == EVM_STATE_BACKOFF ||
				       s == EVM_STATE_STOPPING
			       ? WAIT
			       : GO;
	if (coming || s == EVM_STATE_STARTING || s == EVM_STATE_BACKOFF || s == EVM_STATE_STOPPING)
		return WAIT;
	if (s == EVM_STATE_RELOADING)
		s = EVM_STATE_RUNNING; /* still ready: it serves while it reloads */
	if (s == EVM_STATE_RUNNING && dp->kind == DEP_HEALTHY) {
		/* healthy: its check passed (without a check, ready is enough) */
		enum health_status h = health_of(t);
		if (h == HEALTH_HEALTHY || (h == HEALTH_NONE && !t->health))
			return GO;
		if (h != HEALTH_UNHEALTHY)
			return WAIT;
		snprintf(buf, len, "requires %s to be healthy, which is unhealthy", t->name);
		return FAIL;
	}
	if (s == EVM_STATE_RUNNING || (s == EVM_STATE_EXITED && exited_ok(t)))
		return GO;
	if (!t->svc)
		snprintf(buf, len, "requires %s, which could not be created", t->name);
	else if (t->blocked) /* "not started: requires x, ...": its why, not said twice */
		snprintf(buf, len, "requires %s, which was not started: %s", t->name,
			 t->blocked + (strncmp(t->blocked, "not started: ", 13) ? 0 : 13));
	else
		snprintf(buf, len, "requires %s, which is %s", t->name, evm_state_name(s));
	return FAIL;
}

static void set_blocked(struct daemon *d, struct unit *u, const char *why)
{
	free(u->blocked);
	u->blocked = NULL;
	if (asprintf(&u->blocked, "not started: %s", why) < 0)
		u->blocked = NULL;
	u->transitions++; /* a start that ended: waits see it */
	publish_state(d, u, evm_state_name(state(u)), "waiting", "error",
		      u->blocked ? u->blocked : why);
}

/* ---------------------------------------------------------- the queue */

static int start_now(struct daemon *d, struct unit *u)
{
	if (u->old) {
		/*
		 * An old copy of it (replaced, or removed and added again) still
		 * stops: never two side by side, and with a cgroup its stop would
		 * kill the new one. Every start comes here (a user's `ctl start`,
		 * a dependency's, its turn): it goes once the old one is gone
		 * (units_start_successor), and a waiting `ctl start` waits for it.
		 */
		if (!u->want_start && !u->pending) /* else said (run_batch, let_go) */
			deps_tell_deferred(d, u);
		if (!u->pending) /* else make_pending said whose start it is */
			u->asked = d->asking;
		u->pending = false;
		u->want_start = true;
		return 0;
	}
	u->leaving_wait = u->pending;
	u->pending = false;
	d->go_slice.n++;
	int r = u->svc ? evm_service_start(u->svc) : -ENOENT;
	u->leaving_wait = false;
	if (r < 0)
		dlog("service %s: cannot start it: %s", u->name, strerror(-r));
	else if (evm_service_state(u->svc) == EVM_STATE_STOPPING)
		unit_note_start_after(d, u); /* an earlier run's leftovers stop first: coming */
	return r;
}

static void go_burst(struct evm_timer *t, void *data);

/* May one more start go in this burst? The first of a burst opens it (and its timer). */
static bool burst_allows(struct daemon *d)
{
	if (!d->go_timer) {
		if (evm_timer_add(d->loop, 0, go_burst, d, &d->go_timer) < 0) {
			d->go_timer = NULL;
			return true; /* out of memory for the timer: no burst, no queue */
		}
		start_slice_open(&d->go_slice);
		return true;
	}
	return start_slice_room(&d->go_slice);
}

static void stop_now(struct daemon *d, struct unit *u);

/* The next iteration: a new burst, from the head of the queue. */
static void go_burst(struct evm_timer *t, void *data)
{
	struct daemon *d = data;
	(void)t;
	d->go_timer = NULL;
	while (d->go_first && !d->stopping && burst_allows(d)) {
		struct unit *u = d->go_first;
		go_unlink(d, u);
		if (u->pending) /* else stopped or removed meanwhile */
			start_now(d, u);
		else if (u->want_stop) { /* else started again meanwhile */
			d->go_slice.n++;
			stop_now(d, u);
		}
	}
}

/* u may start: now if this burst has room, else at its turn. 0 or -errno of a start now. */
static int let_go(struct daemon *d, struct unit *u)
{
	if (u->queued)
		return 0;
	if (!d->go_first && burst_allows(d))
		return start_now(d, u);
	/* waiting for its turn: said like a wait for dependencies (run_batch says those) */
	if (!u->pending || !u->ndeps)
		publish_state(d, u, "waiting", evm_state_name(state(u)), NULL, NULL);
	u->pending = true;
	go_append(d, u);
	state_changed(d); /* in the record as waiting to start (a crash keeps it) */
	return 0;
}

/*
 * The walks over the graph keep their path on the heap, not on the C stack:
 * a chain of 20,000 requires, walked by recursion, overflowed it (SIGSEGV).
 * Each walk pushes a unit at most once, so it holds at most every unit.
 */
struct frame {
	struct unit *u;
	size_t i;   /* the next edge of u to look at */
	unsigned n; /* stop_chain: the longest chain found so far */
};

struct walk {
	struct frame *v;
	size_t n, cap;
	bool oom;
	struct frame small[16]; /* most walks are short: no allocation */
};

static void walk_init(struct walk *w)
{
	w->v = w->small;
	w->n = 0;
	w->cap = sizeof(w->small) / sizeof(w->small[0]);
	w->oom = false;
}

static bool walk_push(struct walk *w, struct unit *u)
{
	if (w->n == w->cap) {
		size_t cap = w->cap * 2;
		struct frame *v = w->v == w->small ? malloc(cap * sizeof(*v))
						   : realloc(w->v, cap * sizeof(*v));
		if (!v) {
			if (!w->oom)
				dlog("out of memory walking the dependencies: some services are not "
				     "looked at again");
			w->oom = true;
			return false;
		}
		if (w->v == w->small)
			memcpy(v, w->small, sizeof(w->small));
		w->v = v;
		w->cap = cap;
	}
	w->v[w->n++] = (struct frame){u, 0, 1};
	return true;
}

static void walk_free(struct walk *w)
{
	if (w->v != w->small)
		free(w->v);
}

/* The next edge of the walk down what units require or start after: NULL once it is over. */
static const struct dep *walk_next_dep(struct walk *w)
{
	while (w->n) {
		struct frame *f = &w->v[w->n - 1];
		if (f->i < f->u->ndeps)
			return &f->u->deps[f->i++];
		w->n--;
	}
	return NULL;
}

static bool try_start_one(struct daemon *d, struct unit *u);

/*
 * Who waits to start for u: u moved (started, stopped, gave up). False when
 * a start resolved the graph again meanwhile (u's rdeps are gone). One that
 * cannot start (blocked) is moved too: its own dependents next, depth first
 * (the order of the recursion this was), then its essential check.
 */
static bool retry_dependents(struct daemon *d, struct unit *u)
{
	unsigned gen = d->deps_gen;
	struct walk w;
	walk_init(&w);
	walk_push(&w, u);
	while (w.n) {
		struct frame *f = &w.v[w.n - 1];
		struct unit *v = f->u;
		if (gen == d->deps_gen && f->i < v->nrdeps) {
			struct unit *x = v->rdeps[f->i++];
			if (x->pending && !d->stopping && try_start_one(d, x) && !walk_push(&w, x))
				daemon_essential_blocked(d, x, x->asked);
			continue;
		}
		if (--w.n) /* blocked by try_start_one, its dependents told */
			daemon_essential_blocked(d, v, v->asked);
	}
	walk_free(&w);
	return gen == d->deps_gen;
}

/* A pending unit: start it, leave it waiting, or block it (true: then its dependents' turn). */
static bool try_start_one(struct daemon *d, struct unit *u)
{
	char why[400] = "";
	enum verdict v = GO;
	if (u->queued)
		return false; /* let go already */
	for (size_t i = 0; i < u->ndeps && v != FAIL; i++) {
		enum verdict x = judge(&u->deps[i], why, sizeof(why));
		if (x != GO)
			v = x;
	}
	if (v == WAIT)
		return false;
	if (v == FAIL) {
		u->pending = false;
		set_blocked(d, u, why);
		return true;
	}
	let_go(d, u);
	return false;
}

static void try_start(struct daemon *d, struct unit *u)
{
	if (!try_start_one(d, u))
		return;
	retry_dependents(d, u); /* it will not start */
	daemon_essential_blocked(d, u, u->asked);
}

void deps_status(const struct unit *u, cJSON *o)
{
	if (u->pending && !u->queued) { /* queued: waiting for its turn only */
		cJSON *arr = cJSON_AddArrayToObject(o, "waiting_for");
		for (size_t i = 0; i < u->ndeps; i++) {
			char why[8];
			if (judge(&u->deps[i], why, sizeof(why)) == WAIT)
				cJSON_AddItemToArray(arr, cJSON_CreateString(u->deps[i].u->name));
		}
	}
	if (u->blocked)
		cJSON_AddStringToObject(o, "error", u->blocked);
}

/* The units made pending by one request, to announce and try once all are marked. */
struct batch {
	struct unit **v;
	size_t n, cap;
	bool oom;
	bool asked; /* for a client's start or restart (unit.asked) */
};

static bool batch_push(struct batch *b, struct unit *u)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct unit **v = realloc(b->v, cap * sizeof(*v));
		if (!v) {
			b->oom = true;
			return false;
		}
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = u;
	return true;
}

/* u becomes pending (false: out of memory) */
static bool make_pending_one(struct batch *b, struct unit *u)
{
	if (!batch_push(b, u))
		return false;
	u->pending = true;
	u->asked = b->asked;
	u->want_stop = false;
	free(u->blocked);
	u->blocked = NULL;
	return true;
}

/* A requirement that make_pending starts: down, not started already, not a job done */
static bool down_required(const struct dep *dp)
{
	const struct unit *t = dp->u;
	return dp->kind != DEP_AFTER && t->svc && !t->pending && !active(t) &&
	       !(state(t) == EVM_STATE_EXITED && exited_ok(t));
}

/*
 * u becomes pending: what it requires is asked to start too (not what it
 * starts after), depth first. No cycle: the config has none, and pending ends it.
 * With !self, u is left as it is (it runs) and only what it requires, down, starts.
 */
static void make_pending(struct batch *b, struct unit *u, bool self)
{
	struct walk w;
	walk_init(&w);
	if (!self || make_pending_one(b, u))
		walk_push(&w, u);
	for (const struct dep *dp; (dp = walk_next_dep(&w));)
		if (down_required(dp) && make_pending_one(b, dp->u) && !walk_push(&w, dp->u))
			b->oom = true;
	walk_free(&w);
}

/* Say who waits, then start what may start (which may start the others in turn). */
static void run_batch(struct daemon *d, struct batch *b)
{
	if (b->oom)
		dlog("out of memory ordering the starts: some services wait for a dependency "
		     "that changes state");
	for (size_t i = 0; i < b->n; i++)
		if (b->v[i]->pending && b->v[i]->ndeps)
			publish_state(d, b->v[i], "waiting", evm_state_name(state(b->v[i])), NULL, NULL);
	unsigned gen = d->deps_gen;
	for (size_t i = 0; i < b->n && gen == d->deps_gen; i++)
		if (b->v[i]->pending)
			try_start(d, b->v[i]);
	free(b->v);
}

/*
 * u waited to stop (its dependents, or its turn), or stops: not any more, a
 * start came after (it starts again once stopped: the caller's). A `ctl
 * stop` waiting for it is told at once (waits.c), not at its timeout.
 */
static void cancel_stop(struct daemon *d, struct unit *u)
{
	if (u->want_stop) {
		go_unlink(d, u);
		u->stops_undone++;
	} else if (u->svc && state(u) == EVM_STATE_STOPPING && !u->start_after && !u->pending) {
		u->stops_undone++;
	}
	u->want_stop = false;
}

/* Does u require a service that is down (and would be started by make_pending)? */
static bool requires_down(const struct unit *u)
{
	for (size_t i = 0; i < u->ndeps; i++)
		if (down_required(&u->deps[i]))
			return true;
	return false;
}

/* Make u (self) and what it requires, down, pending; start what may; keep it in the record. */
static void pend(struct daemon *d, struct unit *u, bool self)
{
	struct batch b = {.asked = d->asking};
	make_pending(&b, u, self);
	run_batch(d, &b);
	state_changed(d); /* waiting to start: in the record, so a crash keeps it */
}

/*
 * Does u require one not ready yet that a restart must wait for: down, to
 * start, or stopping (to start again after, keep_requirements)?
 */
static bool requires_waiting(const struct unit *u)
{
	for (size_t i = 0; i < u->ndeps; i++)
		if (u->deps[i].kind != DEP_AFTER &&
		    (u->deps[i].u->pending || state(u->deps[i].u) == EVM_STATE_STOPPING))
			return true;
	return requires_down(u);
}

/*
 * u is asked to start (or restart): what it requires that is to stop keeps
 * running (its stop is dropped), and what is stopping starts again once its
 * process is gone, theirs in turn. The start wins, as a start once the stop
 * is over does (make_pending starts what is down), and as systemctl start
 * replaces the stop job of a Requires= unit. Left to stop, it went down
 * under u started again, or u waited for it and was refused.
 */
static void keep_requirements(struct daemon *d, struct unit *u)
{
	struct walk w;
	walk_init(&w);
	walk_push(&w, u);
	for (const struct dep *dp; (dp = walk_next_dep(&w));) {
		struct unit *t = dp->u;
		if (dp->kind == DEP_AFTER || !t->svc)
			continue;
		struct evm_service_info info;
		evm_service_info(t->svc, &info);
		if (t->want_stop) {
			cancel_stop(d, t);
		} else if (info.state == EVM_STATE_STOPPING && info.stopped_by_user && !t->start_after &&
			   !t->pending) {
			/* a stop asked for; one for a failure restarts by its policy, waited for */
			cancel_stop(d, t);
			evm_service_start(t->svc); /* again once its process is gone */
			unit_note_start_after(d, t);
		} else {
			continue; /* not to stop: nothing to keep below it either */
		}
		/* each one changed once (no stop left to drop): a diamond ends, out of memory too */
		walk_push(&w, t);
		state_changed(d); /* no stop in the record: a crash now does not stop it */
	}
	walk_free(&w);
}

/*
 * u runs and is asked to start: what it requires and is down starts (it
 * exited, failed, was removed and added again), as systemctl start pulls in
 * the Requires= of an active unit.
 */
static void start_requirements(struct daemon *d, struct unit *u)
{
	if (requires_down(u))
		pend(d, u, false);
}

int deps_restart(struct daemon *d, struct unit *u)
{
	if (!active(u)) /* down or waiting: a start, after what it requires */
		return deps_start(d, u);
	ensure_graph(d);
	if (d->asking) /* a client's: not a reload's, a health check's (a stop asked stays) */
		keep_requirements(d, u);
	if (u->pending)
		return 0; /* stopping, held to start after what it requires (below) */
	if (u->svc && requires_waiting(u)) {
		/* a stop, then a start after what it requires (which starts now) */
		cancel_stop(d, u);
		u->start_after = false; /* not the library's: after what it requires */
		int r = evm_service_stop(u->svc);
		if (r < 0)
			return r;
		pend(d, u, true);
		return 0;
	}
	cancel_stop(d, u);
	u->start_after = true; /* its stopping event, told inside, says it starts again */
	int r = u->svc ? evm_service_restart(u->svc) : -ENOENT;
	unit_note_start_after(d, u);
	return r;
}

int deps_start(struct daemon *d, struct unit *u)
{
	ensure_graph(d);
	cancel_stop(d, u);
	if (d->asking) /* a client's, also deferred (units_start_successor): not a reload's */
		keep_requirements(d, u);
	if (u->pending && active(u))
		return 0; /* stopping, held to start after what it requires (deps_restart) */
	if (active(u)) {
		free(u->blocked);
		u->blocked = NULL;
		int r = u->svc ? evm_service_start(u->svc) : -ENOENT;
		if (r >= 0)
			start_requirements(d, u);
		return r;
	}
	if (!u->ndeps) {
		free(u->blocked);
		u->blocked = NULL;
		return let_go(d, u); /* `ctl start` of 10,000: in bursts too */
	}
	if (u->pending)
		return 0;
	pend(d, u, true);
	return 0;
}

/*
 * Every unit with want_start becomes pending, then each is started when it
 * may: independent units at once, the others as their dependencies become
 * ready (deps_changed).
 */
void deps_start_wanted(struct daemon *d)
{
	ensure_graph(d);
	struct batch b = {0};
	for (struct unit *u = d->first; u; u = u->next) {
		if (u->want_start && u->svc && !u->old) { /* u->old: units_on_event starts it */
			u->want_start = false;
			if (!active(u) && !u->pending)
				make_pending(&b, u, true);
			else if (active(u)) {
				cancel_stop(d, u);
				evm_service_start(u->svc); /* STOPPING: started again after */
				unit_note_start_after(d, u);
			}
		}
	}
	run_batch(d, &b);
	deps_retry_starts(d); /* after a reload, those still waiting may wait for less */
}

void deps_retry_starts(struct daemon *d)
{
	ensure_graph(d);
	unsigned gen = d->deps_gen;
	/* a rebuilt graph may have freed u: its next is read only while gen holds */
	for (struct unit *u = d->first; u; u = gen == d->deps_gen ? u->next : NULL)
		if (u->pending)
			try_start(d, u);
}

/* ------------------------------------------------------------- stopping */

static void grace_kill(struct evm_timer *t, void *data)
{
	struct unit *u = data;
	(void)t;
	u->grace_timer = NULL;
	if (!u->svc || state(u) == EVM_STATE_STOPPED)
		return;
	dlog("service %s: its share of shutdown_timeout passed: SIGKILL (%u to stop after it)",
	     u->name, u->stop_chain - 1);
	evm_service_signal(u->svc, SIGKILL);
	if (u->cg) /* what left the process group too */
		evm_cgroup_kill(u->cg);
}

/* While shutting down within shutdown_timeout: SIGKILL at u's share of what is left. */
static void grace_arm(struct daemon *d, struct unit *u)
{
	if (!d->shutdown_end_ns || u->stop_chain < 2 || !u->svc || state(u) != EVM_STATE_STOPPING)
		return; /* the last of its chain: shutdown_timeout itself */
	uint64_t now = evm_loop_now(d->loop);
	uint64_t left = d->shutdown_end_ns > now ? d->shutdown_end_ns - now : 0;
	uint64_t share = left / u->stop_chain / 1000000u;
	uint64_t own = u->conf->pol.stop_timeout_ms ? u->conf->pol.stop_timeout_ms : 10000;
	if (share < own && !u->grace_timer &&
	    evm_timer_add(d->loop, share, grace_kill, u, &u->grace_timer) < 0)
		u->grace_timer = NULL; /* out of memory: shutdown_timeout still ends it */
}

static void stop_now(struct daemon *d, struct unit *u)
{
	u->want_stop = false;
	u->start_after = false; /* a stop cancels a start after the exit */
	if (u->svc) {
		evm_service_stop(u->svc);
		grace_arm(d, u);
	}
}

/* u may stop: now if nothing waits in the queue and this burst has room, else at its turn. */
static void stop_go(struct daemon *d, struct unit *u)
{
	enum evm_state s = state(u);
	bool walk = s == EVM_STATE_STARTING || s == EVM_STATE_RUNNING || s == EVM_STATE_RELOADING;
	if (u->queued && walk)
		return; /* at its turn */
	go_unlink(d, u);
	if (!walk || d->stopping) { /* no process to signal, or the shutdown's: at once */
		stop_now(d, u);
		return;
	}
	if (!d->go_first && burst_allows(d)) {
		d->go_slice.n++;
		stop_now(d, u);
		return;
	}
	go_append(d, u);
}

/*
 * Stop u now if no dependent being stopped is still up. One waiting for a
 * restart (BACKOFF) has no process to keep up for them: it is stopped at
 * once, or its backoff would start it again while they stop.
 */
static void try_stop(struct daemon *d, struct unit *u)
{
	for (size_t i = 0; i < u->nrdeps && state(u) != EVM_STATE_BACKOFF; i++) {
		const struct unit *v = u->rdeps[i];
		if (!down(v) && (v->want_stop || state(v) == EVM_STATE_STOPPING))
			return;
	}
	/* an old copy of a dependent (replaced, removed) still stops: its end retries */
	if (state(u) != EVM_STATE_BACKOFF && draining_needs(d, u))
		return;
	stop_go(d, u);
}

/*
 * A dependent still to stop keeps a unit from stopping (try_stop), so
 * usually u down means they are. Not when u was in BACKOFF: stopped at
 * once, before them (and so may be a dependent of theirs): the walk goes
 * through every dependent that is down, each unit once (a diamond is not
 * walked twice), and finds any still stopping.
 */
static bool stop_over(struct daemon *d, struct unit *u)
{
	bool over = true;
	struct walk w;
	walk_init(&w);
	u->stop_seen = d->stop_walks;
	walk_push(&w, u);
	while (w.n && over) {
		struct frame *f = &w.v[w.n - 1];
		if (f->i == f->u->nrdeps) {
			w.n--;
			continue;
		}
		struct unit *v = f->u->rdeps[f->i++];
		if (!down(v) && (v->want_stop || state(v) == EVM_STATE_STOPPING))
			over = false;
		else if (down(v) && v->stop_seen != d->stop_walks) {
			v->stop_seen = d->stop_walks;
			walk_push(&w, v); /* out of memory: not followed */
		}
	}
	walk_free(&w);
	return over;
}

bool deps_stop_over(struct daemon *d, struct unit *u)
{
	ensure_graph(d);
	d->stop_walks++;
	return stop_over(d, u);
}

/* Units stopping after u, itself included, along its longest chain (memoized). */
static unsigned stop_chain(struct unit *u)
{
	struct walk w;
	walk_init(&w);
	if (!u->stop_chain && !walk_push(&w, u))
		u->stop_chain = 1;
	while (w.n) {
		struct frame *f = &w.v[w.n - 1];
		if (f->i == f->u->ndeps) {
			f->u->stop_chain = f->n;
			w.n--;
			continue;
		}
		struct unit *v = f->u->deps[f->i].u;
		if (!v->want_stop) {
			f->i++;
		} else if (v->stop_chain) { /* known, or just found: back from it */
			f->n = 1 + v->stop_chain > f->n ? 1 + v->stop_chain : f->n;
			f->i++;
		} else if (!walk_push(&w, v)) {
			v->stop_chain = 1; /* out of memory: a share too large, not a hang */
		}
	}
	walk_free(&w);
	return u->stop_chain;
}

/* What mark_stop did to u, cause the one it requires that stops (NULL: u itself asked). */
static void mark_stop_one(struct daemon *d, struct unit *u, const struct unit *cause,
			  struct batch *b, struct batch *dropped)
{
	bool was_pending = u->pending;
	if (was_pending || unit_deferred(u))
		u->starts_undone++; /* a `ctl start` waiting for it is told at once (waits.c) */
	u->want_stop = true;
	u->want_start = false;
	u->pending = false;
	go_unlink(d, u);
	batch_push(b, u);
	if (was_pending) {
		char why[400];
		if (cause)
			snprintf(why, sizeof(why), "not started: requires %s, which was stopped",
				 cause->name);
		else
			snprintf(why, sizeof(why), "not started: stopped while waiting");
		publish_state(d, u, evm_state_name(state(u)), "waiting", "message", why);
		batch_push(dropped, u); /* deps_stop retries what waits after it */
	}
}

/*
 * u and what requires it, to stop; each newly marked one into b (deps_stop
 * tries those), depth first. One waiting to start (asked, or pulled
 * in by a dependent's start) will not: said as a state change of its own
 * ("waiting" is the daemon's state, not the library's, so no event of the
 * library tells it), for the stopped one and for each dependent, which
 * a `ctl wait` on it would otherwise wait on in vain; and into dropped:
 * what starts after it waits for it no more.
 */
static void mark_stop(struct daemon *d, struct unit *u, struct batch *b, struct batch *dropped)
{
	if (u->want_stop)
		return;
	struct walk w;
	walk_init(&w);
	mark_stop_one(d, u, NULL, b, dropped);
	walk_push(&w, u);
	while (w.n) {
		struct frame *f = &w.v[w.n - 1];
		if (f->i == f->u->nrdeps) {
			w.n--;
			continue;
		}
		struct unit *t = f->u, *v = t->rdeps[f->i++];
		if (v->want_stop)
			continue;
		for (size_t k = 0; k < v->ndeps; k++) {
			if (v->deps[k].u == t && v->deps[k].kind != DEP_AFTER &&
			    (active(v) || v->pending || unit_deferred(v))) {
				mark_stop_one(d, v, t, b, dropped);
				if (!walk_push(&w, v))
					b->oom = true; /* deps_stop then tries every one to stop */
				break; /* one edge per target (merge_deps) */
			}
		}
	}
	walk_free(&w);
}

int deps_stop(struct daemon *d, struct unit *u)
{
	ensure_graph(d);
	struct batch b = {0}, dropped = {0};
	mark_stop(d, u, &b, &dropped);
	/*
	 * The dependents first, the deepest first: they may be down already. Only
	 * those marked now: marking adds no way to stop for one marked before
	 * (deps_changed tries it when a dependent goes down). Every unit per stop
	 * made `ctl stop` of 3,000 quadratic.
	 */
	unsigned gen = d->deps_gen;
	for (size_t i = b.oom ? 0 : b.n; i-- > 1 && gen == d->deps_gen;) /* b.v[0] is u */
		if (b.v[i]->want_stop)
			try_stop(d, b.v[i]);
	if (b.oom || gen != d->deps_gen) /* out of memory, or units came or went: all, as before */
		for (struct unit *v = d->first; v; v = v->next)
			if (v->want_stop && v != u)
				try_stop(d, v);
	free(b.v);
	if (u->want_stop)
		try_stop(d, u);
	/*
	 * Those dropped will not start: what starts after them (after, ordering
	 * only) waits no more. No event of the library says so (they were
	 * STOPPED already), and such a one stayed waiting for nothing, for good.
	 */
	for (size_t i = 0; i < dropped.n && gen == d->deps_gen; i++)
		retry_dependents(d, dropped.v[i]);
	if (dropped.oom || gen != d->deps_gen)
		deps_retry_starts(d);
	free(dropped.v);
	state_changed(d); /* waiting to stop: in the record, so a crash keeps it */
	return 0;
}

/* the first stops of deps_stop_all: whatever no active unit depends on */
static void stop_wave(struct evm_loop *loop, void *data)
{
	struct daemon *d = data;
	(void)loop;
	for (struct unit *u = d->first; u; u = u->next)
		if (u->want_stop)
			try_stop(d, u);
}

void deps_stop_all(struct daemon *d)
{
	ensure_graph(d);
	draining_release_all(d); /* old copies held for others stop with them */
	evm_timer_cancel(d->go_timer);
	d->go_timer = NULL;
	for (struct unit *u = d->first; u; u = u->next) {
		go_unlink(d, u);
		u->pending = false;
		u->want_start = false;
		u->want_stop = u->svc && active(u);
		u->stop_chain = 0;
	}
	for (struct unit *u = d->first; u; u = u->next)
		if (u->want_stop)
			stop_chain(u);
	/* no restart from here on: a pending one would come before the wave below */
	for (struct unit *u = d->first; u; u = u->next)
		if (u->want_stop && state(u) == EVM_STATE_BACKOFF)
			try_stop(d, u);
	/*
	 * The others from the loop: the stops then share one dispatch, so services
	 * without a cgroup share one read of /proc (each stop its own: quadratic).
	 */
	if (evm_loop_post(d->loop, stop_wave, d) < 0)
		stop_wave(d->loop, d);
	for (;;) {
		bool left = false;
		for (struct unit *u = d->first; u && !left; u = u->next)
			left = u->want_stop || (u->svc && state(u) == EVM_STATE_STOPPING);
		if (!left || evm_loop_run_once(d->loop, -1) < 0)
			break;
	}
}

/* ------------------------------------------------------------- changes */

void deps_retry_stops(struct daemon *d)
{
	ensure_graph(d);
	unsigned gen = d->deps_gen;
	for (struct unit *u = d->first; u; u = gen == d->deps_gen ? u->next : NULL)
		if (u->want_stop)
			try_stop(d, u); /* one queued for its turn stays queued */
}

void deps_changed(struct daemon *d, struct unit *u)
{
	ensure_graph(d);
	if (!retry_dependents(d, u))
		return;
	unsigned gen = d->deps_gen;
	if (u->want_stop && state(u) == EVM_STATE_BACKOFF) {
		/* its process ended while it waited for its dependents: no restart */
		try_stop(d, u);
		return;
	}
	if (!down(u))
		return;
	evm_timer_cancel(u->grace_timer); /* stopped within its share */
	u->grace_timer = NULL;
	/* who waits to stop: one of its dependents is down */
	for (size_t i = 0; i < u->ndeps && gen == d->deps_gen; i++)
		if (u->deps[i].u->want_stop)
			try_stop(d, u->deps[i].u);
}
