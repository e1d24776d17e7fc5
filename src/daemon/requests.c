/*
 * requests.c - what the daemon does for each control request
 * (docs/PROTOCOL.md), and the waits of start/stop/restart with "wait".
 *
 * A wait is a deferred reply: the waiter keeps the names (units may be
 * removed meanwhile) and is checked after every service event. Its scan
 * position only moves forward, so waiting for 10,000 services costs O(N)
 * over the whole wait, not per event.
 */
#include "daemon.h"

#include "argv.h"
#include "cli.h"
#include "daemonlog.h"
#include "logtail.h"
#include "proto.h"

#include <errno.h>
#include <fnmatch.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_WAIT_MS 120000
#define MAX_WAIT_S 1000000000ull /* 31 years */

enum wait_kind { W_START, W_STOP };

struct wait_entry {
	char *name;
	unsigned transitions; /* the unit's counters when the wait began */
	unsigned starts;
	bool was_active;      /* starting or running when the wait began */
};

struct waiter {
	struct daemon *d;
	struct client *cl;
	enum wait_kind kind;
	struct wait_entry *e;
	size_t n, pos;
	cJSON *errors; /* per-service failures of the request itself */
	struct evm_timer *timer;
	bool timed_out;
	struct waiter *next;
};

/* --------------------------------------------------------------- status */

static cJSON *exit_json(const struct evm_exit *x)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "pid", x->pid);
	if (x->status_unknown)
		cJSON_AddNullToObject(o, "code");
	else if (x->signal)
		cJSON_AddNullToObject(o, "code");
	else
		cJSON_AddNumberToObject(o, "code", x->code);
	if (x->signal) {
		cJSON_AddNumberToObject(o, "signal", x->signal);
		const char *sn = cli_signal_name(x->signal);
		cJSON_AddStringToObject(o, "signal_name", sn ? sn : "?");
	} else {
		cJSON_AddNullToObject(o, "signal");
	}
	if (x->core_dumped)
		cJSON_AddTrueToObject(o, "core_dumped");
	if (x->status_unknown)
		cJSON_AddTrueToObject(o, "status_unknown");
	daemon_add_time(o, "time", &x->end_time);
	cJSON_AddNumberToObject(o, "runtime_ms", (double)(x->runtime_ns / 1000000));
	return o;
}

cJSON *unit_status(const struct unit *u)
{
	struct evm_service_info info;
	memset(&info, 0, sizeof(info));
	if (u->svc)
		evm_service_info(u->svc, &info);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", u->name);
	if (u->conf->instances > 1) {
		cJSON_AddStringToObject(o, "group", u->conf->name);
		cJSON_AddNumberToObject(o, "instance", u->instance);
	}
	cJSON_AddStringToObject(o, "state", evm_state_name(info.state));
	if (info.pid > 0)
		cJSON_AddNumberToObject(o, "pid", info.pid);
	else
		cJSON_AddNullToObject(o, "pid");
	cJSON_AddNumberToObject(o, "uptime_ms", (double)info.uptime_ms);
	cJSON_AddNumberToObject(o, "restarts", info.restarts);
	cJSON_AddNumberToObject(o, "failures", info.failures);
	if (info.since.tv_sec)
		daemon_add_time(o, "since", &info.since);
	cJSON_AddStringToObject(o, "restart", config_restart_name(u->conf->pol.restart));
	cJSON_AddBoolToObject(o, "autostart", u->conf->pol.autostart);
	if (u->added)
		cJSON_AddTrueToObject(o, "added");
	if (info.has_exit)
		cJSON_AddItemToObject(o, "last_exit", exit_json(&info.last_exit));
	if (info.state == EVM_STATE_BACKOFF)
		cJSON_AddNumberToObject(o, "next_start_ms", (double)info.next_start_ms);
	char err[256];
	if (!u->svc && u->create_error) {
		snprintf(err, sizeof(err), "not created: %s", strerror(-u->create_error));
		cJSON_AddStringToObject(o, "error", err);
	} else if (info.last_error.stage != EVM_STAGE_NONE) {
		snprintf(err, sizeof(err), "%s: %s", evm_spawn_stage_name(info.last_error.stage),
			 strerror(info.last_error.error));
		cJSON_AddStringToObject(o, "error", err);
	}
	return o;
}

/* ----------------------------------------------------------- replying */

static void reply_error(struct client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_error(struct client *cl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	control_reply(cl, r);
	cJSON_Delete(r);
}

static void reply_ok(struct client *cl, cJSON *r)
{
	if (!cJSON_GetObjectItemCaseSensitive(r, "ok"))
		cJSON_AddTrueToObject(r, "ok");
	control_reply(cl, r);
	cJSON_Delete(r);
}

/* --------------------------------------------------------- selections */

static bool has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

struct selection {
	struct unit **u;
	size_t n, cap;
};

static int sel_push(struct selection *s, struct unit *u)
{
	if (u->mark)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct unit **v = realloc(s->u, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->u = v;
		s->cap = cap;
	}
	u->mark = true;
	s->u[s->n++] = u;
	return 0;
}

/* The patterns of a request: "names": [...] or "name": "...". */
static int patterns(const cJSON *req, const char ***out, size_t *n)
{
	const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "names");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
	*out = NULL;
	*n = 0;
	if (cJSON_IsString(name)) {
		*out = malloc(sizeof(char *));
		if (!*out)
			return -ENOMEM;
		(*out)[0] = name->valuestring;
		*n = 1;
		return 0;
	}
	if (name && !cJSON_IsNull(name))
		return -EINVAL;
	if (!names || cJSON_IsNull(names))
		return 0;
	if (!cJSON_IsArray(names))
		return -EINVAL;
	size_t k = (size_t)cJSON_GetArraySize(names);
	*out = calloc(k ? k : 1, sizeof(char *));
	if (!*out)
		return -ENOMEM;
	const cJSON *it;
	cJSON_ArrayForEach(it, names) {
		if (!cJSON_IsString(it)) {
			free(*out);
			*out = NULL;
			return -EINVAL;
		}
		(*out)[(*n)++] = it->valuestring;
	}
	return 0;
}

/*
 * Resolve a request's names: an exact service name, the NAME of a definition
 * with instances (all of them), or a glob ("web:*", "*"). Every name must
 * match something. No names: all services if all_if_none, else an error.
 */
static int select_units(struct daemon *d, struct client *cl, const cJSON *req, bool all_if_none,
			struct selection *sel)
{
	const char **pats;
	size_t np;
	memset(sel, 0, sizeof(*sel));
	int r = patterns(req, &pats, &np);
	if (r == -EINVAL) {
		reply_error(cl, "\"names\" must be an array of strings (or \"name\" a string)");
		return -1;
	}
	if (r < 0) {
		reply_error(cl, "out of memory");
		return -1;
	}
	if (np == 0 && !all_if_none) {
		free(pats);
		reply_error(cl, "which service? give \"names\"");
		return -1;
	}
	for (size_t i = 0; i < np && r == 0; i++) {
		const char *p = pats[i];
		struct unit *u = unit_find(d, p);
		if (u) {
			r = sel_push(sel, u);
			continue;
		}
		bool any = false, glob = has_glob(p);
		for (u = d->first; u && r == 0; u = u->next) {
			if (glob ? !fnmatch(p, u->name, 0)
				 : (u->conf->instances > 1 && !strcmp(u->conf->name, p))) {
				any = true;
				r = sel_push(sel, u);
			}
		}
		if (!any && r == 0) {
			reply_error(cl, "no such service: %s", p);
			r = -1;
		}
	}
	if (np == 0)
		for (struct unit *u = d->first; u && r == 0; u = u->next)
			r = sel_push(sel, u);
	for (size_t i = 0; i < sel->n; i++)
		sel->u[i]->mark = false;
	free(pats);
	if (r == -ENOMEM)
		reply_error(cl, "out of memory");
	if (r < 0) {
		free(sel->u);
		sel->u = NULL;
		return -1;
	}
	return 0;
}

static cJSON *statuses(struct unit **u, size_t n)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, unit_status(u[i]));
	return arr;
}

/* -------------------------------------------------------------- waiting */

static bool is_active(enum evm_state s)
{
	return s == EVM_STATE_STARTING || s == EVM_STATE_RUNNING;
}

static bool settled(const struct waiter *w, const struct wait_entry *e, struct unit *u)
{
	if (!u || !u->svc)
		return true; /* removed, or cannot be created */
	enum evm_state s = evm_service_state(u->svc);
	if (w->kind == W_STOP)
		return s == EVM_STATE_STOPPED || s == EVM_STATE_EXITED || s == EVM_STATE_FATAL;
	if (s == EVM_STATE_RUNNING && e->was_active)
		return true;
	/* states older than the request must not end the wait; nor the stop half of a restart */
	if (s == EVM_STATE_FATAL)
		return u->transitions != e->transitions;
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

static void waiter_finish(struct waiter *w)
{
	struct daemon *d = w->d;
	for (struct waiter **pp = &d->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	if (w->timer)
		evm_timer_cancel(w->timer);
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_CreateArray();
	char failed[512] = "";
	size_t nfailed = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct unit *u = unit_find(d, w->e[i].name);
		if (!u)
			continue;
		cJSON_AddItemToArray(arr, unit_status(u));
		struct evm_service_info info;
		memset(&info, 0, sizeof(info));
		if (u->svc)
			evm_service_info(u->svc, &info);
		bool bad = w->kind == W_START && (!u->svc || info.state == EVM_STATE_FATAL ||
						  info.state == EVM_STATE_STOPPED ||
						  (info.state == EVM_STATE_EXITED && !exit_ok(u, &info)));
		if (w->timed_out && !settled(w, &w->e[i], u))
			bad = true;
		if (bad && nfailed++ < 8) {
			size_t l = strlen(failed);
			snprintf(failed + l, sizeof(failed) - l, "%s%s (%s)", l ? ", " : "", u->name,
				 u->svc ? evm_state_name(info.state) : "not created");
		}
	}
	cJSON_AddItemToObject(r, "services", arr);
	int nerr = cJSON_GetArraySize(w->errors);
	if (nerr)
		cJSON_AddItemToObject(r, "errors", w->errors);
	else
		cJSON_Delete(w->errors);
	if (nfailed || nerr || w->timed_out) {
		char msg[700];
		snprintf(msg, sizeof(msg), "%s%s%s%s", w->timed_out ? "timed out waiting: " : "",
			 nfailed ? (w->kind == W_START ? "not running: " : "not stopped: ") : "",
			 failed, nerr && !nfailed ? "some services failed" : "");
		cJSON_AddFalseToObject(r, "ok");
		cJSON_AddStringToObject(r, "error", msg);
	} else {
		cJSON_AddTrueToObject(r, "ok");
	}
	control_reply(w->cl, r);
	cJSON_Delete(r);
	control_client_unref(w->cl);
	for (size_t i = 0; i < w->n; i++)
		free(w->e[i].name);
	free(w->e);
	free(w);
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

/* Reply now, or when the selected services have settled if the request says "wait". */
static void reply_or_wait(struct daemon *d, struct client *cl, const cJSON *req, enum wait_kind kind,
			  struct unit **units, size_t n, const struct wait_entry *snap, cJSON *errors)
{
	const cJSON *wait = cJSON_GetObjectItemCaseSensitive(req, "wait");
	if (!cJSON_IsTrue(wait)) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToObject(r, "services", statuses(units, n));
		if (cJSON_GetArraySize(errors)) {
			cJSON_AddFalseToObject(r, "ok");
			cJSON_AddStringToObject(r, "error",
						cJSON_GetArrayItem(errors, 0)->valuestring);
			cJSON_AddItemToObject(r, "errors", errors);
		} else {
			cJSON_Delete(errors);
		}
		reply_ok(cl, r);
		return;
	}
	struct waiter *w = calloc(1, sizeof(*w));
	if (w)
		w->e = calloc(n ? n : 1, sizeof(*w->e));
	if (!w || !w->e) {
		free(w);
		cJSON_Delete(errors);
		reply_error(cl, "out of memory");
		return;
	}
	w->d = d;
	w->cl = cl;
	w->kind = kind;
	w->errors = errors;
	for (size_t i = 0; i < n; i++) {
		w->e[w->n] = snap[i];
		w->e[w->n].name = strdup(units[i]->name);
		if (w->e[w->n].name)
			w->n++;
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "timeout");
	uint64_t ms = DEFAULT_WAIT_MS;
	/* bounded before the cast: 1e999 parses as inf, and a double out of range is UB */
	if (cJSON_IsNumber(t) && t->valuedouble > 0)
		ms = t->valuedouble < MAX_WAIT_S ? (uint64_t)(t->valuedouble * 1000) : MAX_WAIT_S * 1000;
	control_defer(cl);
	w->next = d->waiters;
	d->waiters = w;
	if (waiter_done(w)) {
		waiter_finish(w);
		return;
	}
	evm_timer_add(d->loop, ms, on_wait_timeout, w, &w->timer);
}

/* ------------------------------------------------------------- commands */

static void add_error(cJSON *errors, const char *name, int err, const char *what)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "%s: %s", name, what ? what : strerror(-err));
	cJSON_AddItemToArray(errors, cJSON_CreateString(msg));
}

static void cmd_status(struct daemon *d, struct client *cl, const cJSON *req)
{
	struct selection sel;
	if (select_units(d, cl, req, true, &sel) < 0)
		return;
	cJSON *r = cJSON_CreateObject();
	cJSON_AddItemToObject(r, "services", statuses(sel.u, sel.n));
	free(sel.u);
	reply_ok(cl, r);
	/*
	 * A big answer was a tree of many small allocations, now free but
	 * scattered: hand the pages back, or the daemon's resident size
	 * keeps the peak of its largest status forever.
	 */
	if (sel.n >= 256)
		malloc_trim(0);
}

static void cmd_startstop(struct daemon *d, struct client *cl, const cJSON *req, const char *cmd)
{
	struct selection sel;
	bool stop = !strcmp(cmd, "stop"), restart = !strcmp(cmd, "restart");
	if (!stop && d->stopping) {
		reply_error(cl, "the daemon is shutting down");
		return;
	}
	if (select_units(d, cl, req, false, &sel) < 0)
		return;
	struct wait_entry *snap = calloc(sel.n ? sel.n : 1, sizeof(*snap));
	cJSON *errors = cJSON_CreateArray();
	if (!snap) {
		free(sel.u);
		cJSON_Delete(errors);
		reply_error(cl, "out of memory");
		return;
	}
	for (size_t i = 0; i < sel.n; i++) {
		struct unit *u = sel.u[i];
		snap[i] = (struct wait_entry){.transitions = u->transitions, .starts = u->starts};
		snap[i].was_active = !restart && u->svc && is_active(evm_service_state(u->svc));
		int r = 0;
		if (stop) {
			u->want_start = false;
			if (u->svc)
				r = evm_service_stop(u->svc);
		} else if (!u->svc) {
			u->want_start = true;
			r = unit_create(d, u); /* it failed before: try again */
		} else {
			r = restart ? evm_service_restart(u->svc) : evm_service_start(u->svc);
		}
		if (r < 0)
			add_error(errors, u->name, r, NULL);
	}
	reply_or_wait(d, cl, req, stop ? W_STOP : W_START, sel.u, sel.n, snap, errors);
	free(snap);
	free(sel.u);
}

static void cmd_signal(struct daemon *d, struct client *cl, const cJSON *req)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(req, "signal");
	int sig = -1;
	char num[16];
	if (cJSON_IsString(s))
		sig = cli_parse_signal(s->valuestring, true);
	else if (cJSON_IsNumber(s) && s->valueint >= 0) {
		snprintf(num, sizeof(num), "%d", s->valueint);
		sig = cli_parse_signal(num, true);
	}
	if (sig < 0) {
		reply_error(cl, "\"signal\" must name a signal (\"HUP\", \"SIGUSR1\", 15)");
		return;
	}
	struct selection sel;
	if (select_units(d, cl, req, false, &sel) < 0)
		return;
	cJSON *errors = cJSON_CreateArray(), *done = cJSON_CreateArray();
	for (size_t i = 0; i < sel.n; i++) {
		struct unit *u = sel.u[i];
		int r = u->svc ? evm_service_signal(u->svc, sig) : -ESRCH;
		if (r == -ESRCH)
			add_error(errors, u->name, r, "not running");
		else if (r < 0)
			add_error(errors, u->name, r, NULL);
		else
			cJSON_AddItemToArray(done, cJSON_CreateString(u->name));
	}
	free(sel.u);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddItemToObject(r, "signaled", done);
	if (cJSON_GetArraySize(errors)) {
		cJSON_AddFalseToObject(r, "ok");
		cJSON_AddStringToObject(r, "error", cJSON_GetArrayItem(errors, 0)->valuestring);
		cJSON_AddItemToObject(r, "errors", errors);
	} else {
		cJSON_Delete(errors);
	}
	reply_ok(cl, r);
}

/* A JSON value as the text a config file would hold for it. */
static char *value_text(const cJSON *v)
{
	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (cJSON_IsBool(v))
		return strdup(cJSON_IsTrue(v) ? "true" : "false");
	if (cJSON_IsNumber(v))
		return cJSON_PrintUnformatted(v);
	if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
		return NULL;
	/* arrays and objects become shell-quoted words: ["a b", 2] -> 'a b' 2, {"K":"V"} -> K=V */
	size_t len = 0, cap = 64;
	char *out = malloc(cap);
	const cJSON *it;
	if (!out)
		return NULL;
	out[0] = '\0';
	cJSON_ArrayForEach(it, v) {
		char *word = NULL, *q;
		if (cJSON_IsObject(v)) {
			char *val = value_text(it);
			if (!val || asprintf(&word, "%s=%s", it->string, val) < 0)
				word = NULL;
			free(val);
		} else {
			word = value_text(it);
		}
		q = word ? cli_quote(word) : NULL;
		free(word);
		if (!q) {
			free(out);
			return NULL;
		}
		size_t ql = strlen(q);
		if (len + ql + 2 > cap) {
			while (len + ql + 2 > cap)
				cap *= 2;
			char *o2 = realloc(out, cap);
			if (!o2) {
				free(q);
				free(out);
				return NULL;
			}
			out = o2;
		}
		if (len)
			out[len++] = ' ';
		memcpy(out + len, q, ql + 1);
		len += ql;
		free(q);
	}
	return out;
}

static void cmd_add(struct daemon *d, struct client *cl, const cJSON *req)
{
	if (d->stopping) {
		reply_error(cl, "the daemon is shutting down");
		return;
	}
	const cJSON *svc = cJSON_GetObjectItemCaseSensitive(req, "service");
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(svc, "name");
	if (!cJSON_IsObject(svc) || !cJSON_IsString(nm)) {
		reply_error(cl, "add needs \"service\": {\"name\": ..., \"command\": ...}");
		return;
	}
	size_t n = (size_t)cJSON_GetArraySize(svc), k = 0;
	struct conf_kv *kv = calloc(n ? n : 1, sizeof(*kv));
	char **texts = calloc(n ? n : 1, sizeof(*texts));
	struct errlist errs = {0};
	const cJSON *it;
	cJSON_ArrayForEach(it, svc) {
		if (!kv || !texts || !strcmp(it->string, "name") || cJSON_IsNull(it))
			continue;
		texts[k] = value_text(it);
		if (!texts[k]) {
			errlist_add(&errs, "add", 0, "%s: unsupported value", it->string);
			continue;
		}
		kv[k].key = it->string;
		kv[k].value = texts[k];
		k++;
	}
	struct svc_conf *c = NULL;
	if (!kv || !texts)
		errlist_add(&errs, "add", 0, "out of memory");
	else if (!errs.n)
		c = config_service(d->cfg, nm->valuestring, kv, k, "add", &errs);
	for (size_t i = 0; i < k; i++)
		free(texts[i]);
	free(texts);
	free(kv);
	char name[256];
	for (unsigned i = 0; c && i < c->instances && !errs.n; i++) {
		unit_instance_name(c, i, name, sizeof(name));
		if (unit_find(d, name))
			errlist_add(&errs, "add", 0, "service %s already exists", name);
	}
	if (errs.n) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddFalseToObject(r, "ok");
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = 0; i < errs.n; i++) {
			const char *m = errs.msgs[i]; /* "add: msg" -> "msg" */
			cJSON_AddItemToArray(arr, cJSON_CreateString(strncmp(m, "add: ", 5) ? m : m + 5));
		}
		cJSON_AddStringToObject(r, "error", cJSON_GetArrayItem(arr, 0)->valuestring);
		cJSON_AddItemToObject(r, "errors", arr);
		control_reply(cl, r);
		cJSON_Delete(r);
		errlist_free(&errs);
		svc_conf_unref(c);
		return;
	}
	struct unit **units = calloc(c->instances, sizeof(*units));
	struct wait_entry *snap = calloc(c->instances, sizeof(*snap));
	size_t nu = 0;
	for (unsigned i = 0; units && snap && i < c->instances; i++) {
		struct unit *u = unit_add(d, c, i, true);
		if (u) {
			dlog("service %s: added", u->name);
			units[nu++] = u;
		}
	}
	/* zero counters: the creation itself counts as the start to wait for */
	reply_or_wait(d, cl, req, c->pol.autostart ? W_START : W_STOP, units, nu, snap,
		      cJSON_CreateArray());
	free(units);
	free(snap);
	svc_conf_unref(c);
}

static void cmd_remove(struct daemon *d, struct client *cl, const cJSON *req)
{
	struct selection sel;
	if (select_units(d, cl, req, false, &sel) < 0)
		return;
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(r, "removed");
	for (size_t i = 0; i < sel.n; i++) {
		cJSON_AddItemToArray(arr, cJSON_CreateString(sel.u[i]->name));
		unit_remove(d, sel.u[i]);
	}
	free(sel.u);
	reply_ok(cl, r);
	waiters_check(d); /* waited-for services may be gone */
}

static void cmd_events(struct daemon *d, struct client *cl, const cJSON *req)
{
	const char **pats;
	size_t np;
	(void)d;
	if (patterns(req, &pats, &np) < 0) {
		reply_error(cl, "\"names\" must be an array of strings");
		return;
	}
	int r = control_subscribe(cl, pats, np);
	free(pats);
	if (r < 0) {
		reply_error(cl, "out of memory");
		return;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddTrueToObject(o, "events");
	reply_ok(cl, o);
}

static const char *out_name(enum out_mode m)
{
	switch (m) {
	case OUT_INHERIT: return "inherit";
	case OUT_NULL: return "null";
	case OUT_LOG: return "log";
	case OUT_STDOUT: return "stdout";
	}
	return "?";
}

/* The file a logs request is about, or NULL after replying with the reason. */
static struct logfile *logs_file(struct daemon *d, struct client *cl, const cJSON *req)
{
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(req, "name");
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(req, "stream");
	if (!cJSON_IsString(nm)) {
		reply_error(cl, "logs needs \"name\": one service");
		return NULL;
	}
	if (st && !cJSON_IsNull(st) &&
	    (!cJSON_IsString(st) || (strcmp(st->valuestring, "stdout") && strcmp(st->valuestring, "stderr")))) {
		reply_error(cl, "\"stream\" must be \"stdout\" or \"stderr\"");
		return NULL;
	}
	const char *name = nm->valuestring;
	struct unit *u = unit_find(d, name);
	if (!u) {
		for (u = d->first; u; u = u->next) {
			if (u->conf->instances > 1 && !strcmp(u->conf->name, name)) {
				reply_error(cl, "%s has %u instances: name one (%s:0 to %s:%u)", name,
					    u->conf->instances, name, name, u->conf->instances - 1);
				return NULL;
			}
		}
		reply_error(cl, "no such service: %s", name);
		return NULL;
	}
	const struct svc_policy *p = &u->conf->pol;
	if (!output_captures(u->conf)) {
		reply_error(cl, "service %s does not log its output (stdout = %s, stderr = %s): "
				"set stdout = log", name, out_name(p->out[0]), out_name(p->out[1]));
		return NULL;
	}
	if (!u->out) {
		reply_error(cl, "service %s: its output could not be captured (see the daemon's log)",
			    name);
		return NULL;
	}
	bool want_err = cJSON_IsString(st) && !strcmp(st->valuestring, "stderr");
	bool want_out = cJSON_IsString(st) && !strcmp(st->valuestring, "stdout");
	struct logfile *f = want_err ? output_file(u->out, true)
			    : want_out ? output_file(u->out, false)
				       : output_file(u->out, false) ? output_file(u->out, false)
								    : output_file(u->out, true);
	if (!f) {
		int i = want_err ? 1 : 0;
		if (want_err && p->out[1] == OUT_STDOUT)
			reply_error(cl, "service %s: stderr = stdout: it is in the stdout log", name);
		else
			reply_error(cl, "service %s does not log its %s (%s = %s)", name,
				    i ? "stderr" : "stdout", i ? "stderr" : "stdout", out_name(p->out[i]));
	}
	return f;
}

static void cmd_logs(struct daemon *d, struct client *cl, const cJSON *req)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(req, "lines");
	const cJSON *fo = cJSON_GetObjectItemCaseSensitive(req, "follow");
	unsigned long lines = 10;
	if (n && !cJSON_IsNull(n)) {
		if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble > 1e9) {
			reply_error(cl, "\"lines\" must be a number from 0 to 1000000000");
			return;
		}
		lines = (unsigned long)n->valuedouble;
	}
	if (fo && !cJSON_IsNull(fo) && !cJSON_IsBool(fo)) {
		reply_error(cl, "\"follow\" must be true or false");
		return;
	}
	struct logfile *f = logs_file(d, cl, req);
	if (!f)
		return;
	struct logtail *t;
	char err[400];
	if (logtail_open(f, lines, cJSON_IsTrue(fo), &t, err, sizeof(err)) < 0) {
		reply_error(cl, "%s", err);
		return;
	}
	cJSON *r = cJSON_CreateObject();
	char path[4400];
	snprintf(path, sizeof(path), "%s/%s", logs_dir(d->logs) ? logs_dir(d->logs) : "",
		 logfile_name(f));
	cJSON_AddStringToObject(r, "file", path);
	cJSON_AddTrueToObject(r, "ok");
	control_reply(cl, r);
	cJSON_Delete(r);
	if (control_client_closed(cl))
		logtail_free(t);
	else
		logtail_start(t, cl); /* the connection now carries the file's bytes */
}

static void cmd_reopen_logs(struct daemon *d, struct client *cl)
{
	char err[400];
	int n = units_reopen_logs(d, err, sizeof(err));
	if (n < 0) {
		reply_error(cl, "%s", err);
		return;
	}
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "closed", n);
	if (logs_dir(d->logs))
		cJSON_AddStringToObject(r, "log_dir", logs_dir(d->logs));
	else
		cJSON_AddNullToObject(r, "log_dir");
	reply_ok(cl, r);
}

void requests_handle(struct client *cl, const cJSON *req, void *data)
{
	struct daemon *d = data;
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	if (!cJSON_IsString(c)) {
		reply_error(cl, "missing \"cmd\" (status, start, stop, restart, signal, add, remove, "
				"reload, events, logs, reopen-logs, shutdown, ping)");
		return;
	}
	const char *cmd = c->valuestring;
	if (!strcmp(cmd, "status")) {
		cmd_status(d, cl, req);
	} else if (!strcmp(cmd, "start") || !strcmp(cmd, "stop") || !strcmp(cmd, "restart")) {
		cmd_startstop(d, cl, req, cmd);
	} else if (!strcmp(cmd, "signal")) {
		cmd_signal(d, cl, req);
	} else if (!strcmp(cmd, "add")) {
		cmd_add(d, cl, req);
	} else if (!strcmp(cmd, "remove")) {
		cmd_remove(d, cl, req);
	} else if (!strcmp(cmd, "reload")) {
		if (d->stopping) {
			reply_error(cl, "the daemon is shutting down");
			return;
		}
		cJSON *r = cJSON_CreateObject();
		units_reload(d, r);
		control_reply(cl, r);
		cJSON_Delete(r);
		waiters_check(d); /* waited-for services may be gone */
	} else if (!strcmp(cmd, "events")) {
		cmd_events(d, cl, req);
	} else if (!strcmp(cmd, "logs")) {
		cmd_logs(d, cl, req);
	} else if (!strcmp(cmd, "reopen-logs")) {
		cmd_reopen_logs(d, cl);
	} else if (!strcmp(cmd, "shutdown")) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddNumberToObject(r, "pid", getpid());
		reply_ok(cl, r);
		daemon_request_shutdown(d, "shutdown requested by a client");
	} else if (!strcmp(cmd, "ping")) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddStringToObject(r, "version", evm_version());
		cJSON_AddNumberToObject(r, "pid", getpid());
		cJSON_AddNumberToObject(r, "services", (double)d->nunits);
		cJSON_AddNumberToObject(r, "clients", control_clients(d->ctl));
		cJSON_AddStringToObject(r, "config", d->cfg_path);
		reply_ok(cl, r);
	} else {
		reply_error(cl, "unknown command \"%.64s\"", cmd);
	}
}
