/*
 * waits.c - the deferred replies of start/stop/restart/add with "wait"
 * (see waits.h).
 *
 * A waiter keeps the names (units may be removed meanwhile) and is checked
 * after every service event. Its scan position only moves forward, so
 * waiting for 10,000 services costs O(N) over the whole wait, not per
 * event. A client that goes away takes its waiter with it (control_defer's
 * gone callback).
 */
#include "waits.h"

#include "daemon.h"
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_WAIT_MS 120000
#define MAX_WAIT_S 1000000000ull /* 31 years */

struct waiter {
	struct daemon *d;
	struct client *cl;
	enum wait_kind kind;
	struct wait_entry *e;
	size_t n, pos;
	cJSON *errors; /* per-service failures of the request itself */
	cJSON *warnings; /* the request's, or NULL */
	struct evm_timer *timer;
	bool timed_out;
	struct waiter *next;
};

static bool is_active(enum evm_state s)
{
	return s == EVM_STATE_STARTING || s == EVM_STATE_RUNNING || s == EVM_STATE_RELOADING;
}

static bool settled(const struct waiter *w, const struct wait_entry *e, struct unit *u)
{
	if (!u || !u->svc || u->removed)
		return true; /* removed, or cannot be created */
	enum evm_state s = evm_service_state(u->svc);
	if (w->kind == W_RELOAD)
		return s != EVM_STATE_RELOADING; /* a reload asked of it is over, one way or another */
	if (w->kind == W_STOP && u->stops_undone != e->stops_undone)
		return true; /* a start asked after took it out of its stop: it will not come */
	if (w->kind == W_STOP) /* and what its stop took down first (deps_stop_over), and its
				  old copy (a reload replaced it) */
		return (s == EVM_STATE_STOPPED || s == EVM_STATE_EXITED || s == EVM_STATE_FATAL) &&
		       deps_stop_over(w->d, u) && !draining_waited(w->d, u);
	if ((s == EVM_STATE_RUNNING || s == EVM_STATE_RELOADING) && e->was_active)
		return true;
	if (u->blocked && u->transitions != e->transitions)
		return true; /* a dependency kept it from starting */
	/*
	 * To start still: after its old copy (a reload replaced it while the
	 * wait went on: the new copy is stopped, its counters the old one's;
	 * on_event starts it before the waits look), or once its dependencies
	 * allow. Not want_start alone: a start done leaves it set at times.
	 */
	if (unit_deferred(u) || u->pending)
		return false;
	if (u->starts_undone != e->starts_undone && s == EVM_STATE_STOPPED)
		return true; /* a stop asked after took it out of its start (and not started since) */
	/* states older than the request must not end the wait; nor the stop half of a restart */
	if (s == EVM_STATE_FATAL)
		return u->transitions != e->transitions;
	/*
	 * A spawn that failed: said at once, although the policy retries it
	 * (for EAGAIN or EMFILE, for as long as the machine is short).
	 */
	if (s == EVM_STATE_BACKOFF && u->spawn_failures != e->spawn_failures)
		return true;
	return u->starts != e->starts && (s == EVM_STATE_RUNNING || s == EVM_STATE_EXITED ||
					  s == EVM_STATE_STOPPED);
}

static bool exit_ok(const struct unit *u, const struct evm_service_info *info)
{
	if (!info->has_exit || info->last_exit.signal || info->last_exit.code < 0)
		return !info->has_exit;
	int c = info->last_exit.code;
	if (!u->conf->pol.codes_set)
		return c == 0;
	return c < 256 && (u->conf->pol.codes[c / 64] & (1ull << (c % 64)));
}

/* Out of the list, its timer stopped, freed (the reply is the caller's business). */
static void waiter_free(struct waiter *w)
{
	for (struct waiter **pp = &w->d->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	if (w->timer)
		evm_timer_cancel(w->timer);
	for (size_t i = 0; i < w->n; i++)
		free(w->e[i].name);
	free(w->e);
	free(w);
}

/* The client went away before its answer. */
static void waiter_gone(void *data)
{
	struct waiter *w = data;
	cJSON_Delete(w->errors);
	cJSON_Delete(w->warnings);
	waiter_free(w);
}

/* ", NAME (STATE WHY)" onto the list of what failed (the first without its ", ") */
static void add_failed(char *failed, size_t size, const char *name, const char *state,
		       const char *why)
{
	size_t l = strlen(failed);
	snprintf(failed + l, size - l, "%s%s (%s%s)", l ? ", " : "", name, state, why);
}

/* The request's warnings (taken) into reply r, if there are any */
static void add_warnings(cJSON *r, cJSON *warnings)
{
	if (cJSON_GetArraySize(warnings))
		cJSON_AddItemToObject(r, "warnings", warnings);
	else
		cJSON_Delete(warnings);
}

static void waiter_finish(struct waiter *w)
{
	struct daemon *d = w->d;
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_CreateArray();
	char failed[1024] = "";
	size_t nfailed = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct unit *u = unit_find(d, w->e[i].name);
		if (!u || u->removed) { /* removed meanwhile: stopped, but neither started nor reloaded */
			if (w->kind != W_STOP && nfailed++ < 8)
				add_failed(failed, sizeof(failed), w->e[i].name, "removed", "");
			continue;
		}
		cJSON_AddItemToArray(arr, events_status(d, u));
		struct evm_service_info info;
		memset(&info, 0, sizeof(info));
		if (u->svc)
			evm_service_info(u->svc, &info);
		bool bad = w->kind == W_START && (!u->svc || info.state == EVM_STATE_FATAL ||
						  info.state == EVM_STATE_STOPPED ||
						  info.state == EVM_STATE_BACKOFF ||
						  (info.state == EVM_STATE_EXITED && !exit_ok(u, &info)));
		if (w->kind == W_RELOAD)
			bad = !u->svc || (info.state != EVM_STATE_RUNNING && info.state != EVM_STATE_STARTING) ||
			      u->reload_failures != w->e[i].reload_failures;
		bool undone = w->kind == W_STOP && u->stops_undone != w->e[i].stops_undone &&
			      info.state != EVM_STATE_STOPPED && info.state != EVM_STATE_EXITED &&
			      info.state != EVM_STATE_FATAL;
		bool stopped = w->kind == W_START && u->starts_undone != w->e[i].starts_undone &&
			       bad && info.state == EVM_STATE_STOPPED;
		if ((w->timed_out && !settled(w, &w->e[i], u)) || undone)
			bad = true;
		if (bad && nfailed++ < 8) {
			char why[200] = "";
			if (undone)
				snprintf(why, sizeof(why), ": a start or restart asked since took it "
					 "out of its stop");
			else if (stopped)
				snprintf(why, sizeof(why), ": a stop asked since took it out of its "
					 "start");
			else if (u->svc && info.last_error.stage == EVM_STAGE_SETUP &&
			    u->conf->ids_unresolved && u->conf->problem) /* as status says it */
				snprintf(why, sizeof(why), ": %s", u->conf->problem);
			else if (u->svc && info.last_error.stage != EVM_STAGE_NONE)
				snprintf(why, sizeof(why), ": %s: %s",
					 evm_spawn_stage_name(info.last_error.stage),
					 strerror(info.last_error.error));
			add_failed(failed, sizeof(failed), u->name,
				   u->svc ? evm_state_name(info.state) : "not created", why);
		}
	}
	cJSON_AddItemToObject(r, "services", arr);
	int nerr = cJSON_GetArraySize(w->errors);
	if (nerr)
		cJSON_AddItemToObject(r, "errors", w->errors);
	else
		cJSON_Delete(w->errors);
	if (nfailed || nerr || w->timed_out) {
		char msg[1200];
		snprintf(msg, sizeof(msg), "%s%s%s%s", w->timed_out ? "timed out waiting: " : "",
			 !nfailed ? "" : w->kind == W_START ? "not running: " :
			 w->kind == W_RELOAD ? "not reloaded: " : "not stopped: ",
			 failed, nerr && !nfailed ? "some services failed" : "");
		cJSON_AddFalseToObject(r, "ok");
		cJSON_AddStringToObject(r, "error", msg);
	} else {
		cJSON_AddTrueToObject(r, "ok");
	}
	add_warnings(r, w->warnings);
	control_reply(w->cl, r);
	cJSON_Delete(r);
	waiter_free(w);
}

static bool waiter_done(struct waiter *w)
{
	while (w->pos < w->n) {
		struct unit *u = unit_find(w->d, w->e[w->pos].name);
		if (!settled(w, &w->e[w->pos], u))
			return false;
		w->pos++;
	}
	return true;
}

void waiters_check(struct daemon *d)
{
	for (struct waiter *w = d->waiters, *next; w; w = next) {
		next = w->next;
		if (waiter_done(w))
			waiter_finish(w);
	}
}

void waiters_finish(struct daemon *d)
{
	while (d->waiters)
		waiter_finish(d->waiters);
}

static void on_wait_timeout(struct evm_timer *t, void *data)
{
	struct waiter *w = data;
	(void)t;
	w->timer = NULL;
	w->timed_out = true;
	waiter_finish(w);
}

struct wait_entry wait_snapshot(const struct unit *u, bool restart)
{
	return (struct wait_entry){
		.transitions = u->transitions,
		.starts = u->starts,
		.spawn_failures = u->spawn_failures,
		.reload_failures = u->reload_failures,
		.stops_undone = u->stops_undone,
		.starts_undone = u->starts_undone,
		.was_active = !restart && u->svc && is_active(evm_service_state(u->svc)),
	};
}

int waits_check(struct client *cl, const cJSON *req)
{
	const cJSON *wait = cJSON_GetObjectItemCaseSensitive(req, "wait");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "timeout");
	if (wait && !cJSON_IsBool(wait)) {
		control_reply_error(cl, "\"wait\" must be true or false");
		return -1;
	}
	/* NaN is not above 0 either */
	if (t && !(cJSON_IsNumber(t) && t->valuedouble > 0)) {
		control_reply_error(cl, "\"timeout\" must be a number of seconds above 0");
		return -1;
	}
	/* a thousand waits of a year each locked every `evmon ctl status` out */
	if (cJSON_IsTrue(wait) && control_lasting(cl, true) < 0) {
		control_reply_error(cl, "%s (nothing done)", CONTROL_NO_LASTING_SLOT);
		return -1;
	}
	return 0;
}

void waits_reply(struct daemon *d, struct client *cl, const cJSON *req, enum wait_kind kind,
		 struct unit **units, size_t n, const struct wait_entry *snap, cJSON *errors,
		 cJSON *warnings)
{
	const cJSON *wait = cJSON_GetObjectItemCaseSensitive(req, "wait");
	if (!cJSON_IsTrue(wait)) {
		cJSON *r = cJSON_CreateObject();
		cJSON *arr = cJSON_AddArrayToObject(r, "services");
		for (size_t i = 0; i < n; i++)
			cJSON_AddItemToArray(arr, events_status(d, units[i]));
		if (cJSON_GetArraySize(errors)) {
			cJSON_AddFalseToObject(r, "ok");
			cJSON_AddStringToObject(r, "error",
						cJSON_GetArrayItem(errors, 0)->valuestring);
			cJSON_AddItemToObject(r, "errors", errors);
		} else {
			cJSON_Delete(errors);
		}
		if (!cJSON_GetObjectItemCaseSensitive(r, "ok"))
			cJSON_AddTrueToObject(r, "ok");
		add_warnings(r, warnings);
		control_reply(cl, r);
		cJSON_Delete(r);
		return;
	}
	struct waiter *w = calloc(1, sizeof(*w));
	if (w)
		w->e = calloc(n ? n : 1, sizeof(*w->e));
	if (!w || !w->e) {
		free(w);
		cJSON_Delete(errors);
		cJSON_Delete(warnings);
		control_reply_error(cl, "out of memory");
		return;
	}
	w->d = d;
	w->cl = cl;
	w->kind = kind;
	w->errors = errors;
	w->warnings = warnings;
	for (size_t i = 0; i < n; i++) {
		w->e[w->n] = snap[i];
		w->e[w->n].name = strdup(units[i]->name);
		if (w->e[w->n].name)
			w->n++;
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "timeout");
	uint64_t ms = DEFAULT_WAIT_MS;
	/* bounded before the cast: 1e999 parses as inf, and a double out of range is UB */
	if (t) /* waits_check: above 0 */
		ms = t->valuedouble < MAX_WAIT_S ? (uint64_t)(t->valuedouble * 1000) : MAX_WAIT_S * 1000;
	control_defer(cl, waiter_gone, w);
	w->next = d->waiters;
	d->waiters = w;
	if (waiter_done(w)) {
		waiter_finish(w);
		return;
	}
	evm_timer_add(d->loop, ms, on_wait_timeout, w, &w->timer);
}
