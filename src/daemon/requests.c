/*
 * requests.c - what the daemon does for each control request
 * (docs/PROTOCOL.md): which services a request names, and each command.
 * Which services a request names is selection.c's; waits (start/stop/
 * restart/add with "wait") are waits.c's.
 *
 * A request is a straight line: it acts, replies (now, or later through a
 * wait), and the events it caused are sent to subscribers after the reply.
 */
#include "daemon.h"

#include "events.h"
#include "selection.h"
#include "state.h"
#include "waits.h"

#include "argv.h"
#include "cli.h"
#include "daemonlog.h"
#include "logtail.h"
#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <fnmatch.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ----------------------------------------------------------- replying */

static void reply_ok(struct client *cl, cJSON *r)
{
	if (!cJSON_GetObjectItemCaseSensitive(r, "ok"))
		cJSON_AddTrueToObject(r, "ok");
	control_reply(cl, r);
	cJSON_Delete(r);
}

static cJSON *statuses(struct daemon *d, struct unit **u, size_t n)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, events_status(d, u[i]));
	return arr;
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
	if (selection_get(d, cl, req, true, &sel) < 0)
		return;
	cJSON *r = cJSON_CreateObject();
	cJSON_AddItemToObject(r, "services", statuses(d, sel.u, sel.n));
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

/*
 * The services req names, with a snapshot slot each for the reply's wait
 * (waits.c) and an array for the errors: 0, or -1 with the reply sent.
 */
static int select_to_wait(struct daemon *d, struct client *cl, const cJSON *req,
			  struct selection *sel, struct wait_entry **snap, cJSON **errors)
{
	if (selection_get(d, cl, req, false, sel) < 0)
		return -1;
	*snap = calloc(sel->n ? sel->n : 1, sizeof(**snap));
	*errors = cJSON_CreateArray();
	if (!*snap || !*errors) {
		free(sel->u);
		free(*snap);
		cJSON_Delete(*errors);
		control_reply_error(cl, "out of memory");
		return -1;
	}
	return 0;
}

static void cmd_startstop(struct daemon *d, struct client *cl, const cJSON *req, const char *cmd)
{
	struct selection sel;
	bool stop = !strcmp(cmd, "stop"), restart = !strcmp(cmd, "restart");
	if (!stop && d->stopping) {
		control_reply_error(cl, "the daemon is shutting down");
		return;
	}
	struct wait_entry *snap;
	cJSON *errors;
	if (waits_check(cl, req) < 0 || select_to_wait(d, cl, req, &sel, &snap, &errors) < 0)
		return;
	d->asking = !stop;
	for (size_t i = 0; i < sel.n; i++) {
		struct unit *u = sel.u[i];
		snap[i] = wait_snapshot(u, restart);
		int r = 0;
		if (stop) {
			u->want_start = false;
			r = deps_stop(d, u);
		} else if (!u->svc) {
			u->want_start = true;
			r = unit_create(d, u); /* it failed before: try again */
		} else {
			if (restart) {
				r = deps_restart(d, u);
			} else {
				r = deps_start(d, u);
				unit_note_start_after(d, u);
			}
		}
		if (r < 0)
			add_error(errors, u->name, r, NULL);
	}
	d->asking = false;
	if (!stop && d->waiters)
		waiters_check(d); /* a stop waited for may be undone by this start (deps.c) */
	waits_reply(d, cl, req, stop ? W_STOP : W_START, sel.u, sel.n, snap, errors, NULL);
	free(snap);
	free(sel.u);
}

/*
 * reload NAME...: the service's reload_signal (default SIGHUP); a ready =
 * notify service is RELOADING until its RELOADING=1 then READY=1 (within
 * ready_timeout), and the reply waits for it (systemd's notify-reload).
 */
static int reload_one(struct unit *u)
{
	int sig = u->conf->pol.reload_signal ? u->conf->pol.reload_signal : SIGHUP;
	if (!u->svc)
		return -ESRCH;
	if (u->conf->ready == READY_NOTIFY)
		return evm_service_reload(u->svc, sig, u->conf->ready_timeout_ms);
	enum evm_state s = evm_service_state(u->svc);
	if (s != EVM_STATE_RUNNING && s != EVM_STATE_STARTING)
		return -ESRCH;
	return evm_service_signal(u->svc, sig);
}

static void cmd_reload_services(struct daemon *d, struct client *cl, const cJSON *req)
{
	struct selection sel;
	struct wait_entry *snap;
	cJSON *errors;
	if (waits_check(cl, req) < 0 || select_to_wait(d, cl, req, &sel, &snap, &errors) < 0)
		return;
	size_t n = 0; /* the reloads under way, waited for; the others are errors */
	for (size_t i = 0; i < sel.n; i++) {
		struct unit *u = sel.u[i];
		snap[n] = wait_snapshot(u, false);
		int r = reload_one(u);
		if (r < 0)
			add_error(errors, u->name, r,
				  r == -ESRCH ? "not running" : r == -EBUSY ? "reloading already" : NULL);
		else
			sel.u[n++] = u;
	}
	waits_reply(d, cl, req, W_RELOAD, sel.u, n, snap, errors, NULL);
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
	else if (cJSON_IsNumber(s) && s->valueint >= 0 && s->valuedouble == (double)s->valueint) {
		snprintf(num, sizeof(num), "%d", s->valueint);
		sig = cli_parse_signal(num, true);
	}
	if (sig < 0) {
		control_reply_error(cl, "\"signal\" must name a signal (\"HUP\", \"SIGUSR1\", 15)");
		return;
	}
	struct selection sel;
	if (selection_get(d, cl, req, false, &sel) < 0)
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

/* daemon.h; also the state record's definitions of added services (state.c) */
struct svc_conf *requests_add_conf(struct daemon *d, const cJSON *svc, const char *name,
				   struct errlist *errs, struct errlist *notes)
{
	size_t n = (size_t)cJSON_GetArraySize(svc), k = 0;
	struct conf_kv *kv = calloc(n ? n : 1, sizeof(*kv));
	char **texts = calloc(n ? n : 1, sizeof(*texts));
	const cJSON *it;
	cJSON_ArrayForEach(it, svc) {
		if (!kv || !texts || !strcmp(it->string, "name") || cJSON_IsNull(it))
			continue;
		texts[k] = value_text(it);
		if (!texts[k]) {
			errlist_add(errs, "add", 0, "%s: unsupported value", it->string);
			continue;
		}
		kv[k].key = it->string;
		kv[k].value = texts[k];
		k++;
	}
	struct svc_conf *c = NULL;
	if (!kv || !texts)
		errlist_add(errs, "add", 0, "out of memory");
	else if (!errs->n)
		c = config_service(d->cfg, name, kv, k, "add", errs, notes);
	for (size_t i = 0; i < k; i++)
		free(texts[i]);
	free(texts);
	free(kv);
	if (c)
		deps_check_added(d, c, errs);
	char uname[256];
	for (unsigned i = 0; c && i < c->instances && !errs->n; i++) {
		unit_instance_name(c, i, uname, sizeof(uname));
		if (unit_find(d, uname))
			errlist_add(errs, "add", 0, "service %s already exists", uname);
	}
	/* the name of a definition with other instances: what it names would change */
	if (c && !errs->n && unit_of_definition(d, c->name))
		errlist_add(errs, "add", 0, "service %s already exists (%s)", c->name,
			    c->instances > 1 ? "as one service, not instances"
					     : "as a definition with instances");
	if (errs->n) {
		svc_conf_unref(c);
		return NULL;
	}
	return c;
}

/* {"ok": false, "error": the first, "errors": [every one]}, without the "add: " of each. */
static void reply_add_errors(struct client *cl, const struct errlist *errs)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < errs->n; i++) {
		const char *m = errs->msgs[i];
		cJSON_AddItemToArray(arr, cJSON_CreateString(strncmp(m, "add: ", 5) ? m : m + 5));
	}
	cJSON_AddStringToObject(r, "error", cJSON_GetArrayItem(arr, 0)->valuestring);
	cJSON_AddItemToObject(r, "errors", arr);
	if (errs->more)
		cJSON_AddNumberToObject(r, "errors_omitted", (double)errs->more);
	control_reply(cl, r);
	cJSON_Delete(r);
}

static void cmd_add(struct daemon *d, struct client *cl, const cJSON *req)
{
	if (d->stopping) {
		control_reply_error(cl, "the daemon is shutting down");
		return;
	}
	if (waits_check(cl, req) < 0)
		return;
	const cJSON *svc = cJSON_GetObjectItemCaseSensitive(req, "service");
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(svc, "name");
	if (!cJSON_IsObject(svc) || !cJSON_IsString(nm)) {
		control_reply_error(cl, "add needs \"service\": {\"name\": ..., \"command\": ...}");
		return;
	}
	/* here, not in requests_add_conf: one added before (an older evmon) is taken back */
	if (config_reserved_name(nm->valuestring)) {
		control_reply_error(cl, "service name '%s' is reserved: %s", nm->valuestring,
				    config_reserved_name(nm->valuestring));
		return;
	}
	struct errlist errs = {0}, notes = {0};
	struct svc_conf *c = requests_add_conf(d, svc, nm->valuestring, &errs, &notes);
	if (c && !(c->added_def = cJSON_PrintUnformatted(svc))) {
		svc_conf_unref(c);
		c = NULL;
		errlist_add(&errs, "add", 0, "out of memory");
	}
	if (!c) {
		reply_add_errors(cl, &errs);
		errlist_free(&errs);
		errlist_free(&notes);
		return;
	}
	/* as a reload says them: in the log and in the answer */
	cJSON *warnings = cJSON_CreateArray();
	for (size_t i = 0; i < notes.n; i++) {
		const char *m = notes.msgs[i];
		m += strncmp(m, "add: ", 5) ? 0 : 5;
		dlog("add: warning: %s", m);
		cJSON_AddItemToArray(warnings, cJSON_CreateString(m));
	}
	errlist_free(&notes);
	struct unit **units = calloc(c->instances, sizeof(*units));
	struct wait_entry *snap = calloc(c->instances, sizeof(*snap));
	size_t nu = 0;
	d->defer_start = true; /* each instance once all exist */
	for (unsigned i = 0; units && snap && i < c->instances; i++) {
		struct unit *u = unit_add(d, c, i, true);
		if (u) {
			dlog("service %s: added", u->name);
			units[nu++] = u;
		}
	}
	d->defer_start = false;
	deps_start_wanted(d);
	/* the record names the definition: a crash keeps it, also with no start (no event) */
	if (nu)
		state_changed(d);
	/* zero counters: the creation itself counts as the start to wait for */
	waits_reply(d, cl, req, c->pol.autostart ? W_START : W_STOP, units, nu, snap,
		    cJSON_CreateArray(), warnings);
	free(units);
	free(snap);
	svc_conf_unref(c);
}

static void cmd_remove(struct daemon *d, struct client *cl, const cJSON *req)
{
	struct selection sel;
	if (d->stopping) { /* the shutdown stops them, in order */
		control_reply_error(cl, "the daemon is shutting down");
		return;
	}
	if (selection_get(d, cl, req, false, &sel) < 0)
		return;
	/* as a reload refuses a file whose services require one that is gone */
	struct unit *by, *req_u = deps_still_required(d, sel.u, sel.n, &by);
	if (req_u) {
		control_reply_error(cl, "%s is required by %s: remove %s too, or first", req_u->name,
				    by->name, by->name);
		free(sel.u);
		return;
	}
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(r, "removed");
	draining_hold_begin(d); /* removed together: stopped in dependency order */
	for (size_t i = 0; i < sel.n; i++) {
		cJSON_AddItemToArray(arr, cJSON_CreateString(sel.u[i]->name));
		unit_remove(d, sel.u[i]);
	}
	draining_hold_end(d);
	free(sel.u);
	deps_retry_stops(d); /* a stop that waited for one of them */
	deps_retry_starts(d); /* a start after one of them, which will not come */
	reply_ok(cl, r);
	waiters_check(d); /* waited-for services may be gone */
}

static void cmd_events(struct daemon *d, struct client *cl, const cJSON *req)
{
	const char **pats;
	size_t np;
	/* a second one replaced the first's names in silence: a connection follows one selection */
	if (control_subscribed(cl)) {
		control_reply_error(cl, "this connection follows events already: one subscription "
				    "a connection (open another for other names)");
		return;
	}
	if (selection_patterns(req, &pats, &np) < 0) {
		control_reply_error(cl, "\"names\" must be an array of strings");
		return;
	}
	if (np > SUBSCRIBE_MAX_NAMES) { /* kept as long as it stays: a bound on its memory */
		free(pats);
		control_reply_error(cl, "%zu names: at most %d in one subscription (a glob names more)",
				    np, SUBSCRIBE_MAX_NAMES);
		return;
	}
	/* each name must match a service now, as for every request: a typo never waits in silence */
	struct selection sel = {0};
	if (np && selection_get(d, cl, req, true, &sel) < 0) {
		free(pats);
		return;
	}
	free(sel.u);
	/*
	 * brief: one that ends by itself (ctl wait): never idle, so it takes a
	 * slot that stays as any subscriber's (a thousand that never ended
	 * locked every `evmon ctl status` out); what it changes is how a
	 * stalled reader is treated (control.c).
	 */
	const cJSON *brief = cJSON_GetObjectItemCaseSensitive(req, "brief");
	if (brief && !cJSON_IsBool(brief)) {
		free(pats);
		control_reply_error(cl, "\"brief\" must be true or false");
		return;
	}
	if (control_lasting(cl, cJSON_IsTrue(brief)) < 0) {
		free(pats);
		control_reply_error(cl, "%s", CONTROL_NO_LASTING_SLOT);
		return;
	}
	int r = control_subscribe(cl, pats, np);
	free(pats);
	if (r < 0) {
		control_reply_error(cl, "out of memory");
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
	case OUT_CONSOLE: return "console";
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
		control_reply_error(cl, "logs needs \"name\": one service");
		return NULL;
	}
	if (st && !cJSON_IsNull(st) &&
	    (!cJSON_IsString(st) || (strcmp(st->valuestring, "stdout") && strcmp(st->valuestring, "stderr")))) {
		control_reply_error(cl, "\"stream\" must be \"stdout\" or \"stderr\"");
		return NULL;
	}
	const char *name = nm->valuestring;
	struct unit *u = unit_find(d, name);
	if (!u) {
		/* in creation order: the lowest and highest numbers left, whatever came when */
		struct unit *first = unit_first_instance(d, name), *lo = first, *hi = first;
		size_t n = 0;
		for (struct unit *v = first; v; v = v->inst_next, n++) {
			lo = v->instance < lo->instance ? v : lo;
			hi = v->instance > hi->instance ? v : hi;
		}
		if (n == 1)
			control_reply_error(cl, "%s has one instance left: %s", name, first->name);
		else if (n)
			control_reply_error(cl, "%s has %zu instances: name one (%s to %s)", name, n,
					    lo->name, hi->name);
		else
			control_reply_error(cl, "no such service: %s", name);
		return NULL;
	}
	const struct svc_policy *p = &u->conf->pol;
	if (!output_captures(u->conf)) {
		control_reply_error(cl, "service %s does not log its output (stdout = %s, stderr = %s): "
				"set stdout = log", name, out_name(p->out[0]), out_name(p->out[1]));
		return NULL;
	}
	if (!u->out) {
		control_reply_error(cl, "service %s: its output could not be captured (see the daemon's log)",
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
			control_reply_error(cl, "service %s: stderr = stdout: it is in the stdout log", name);
		else
			control_reply_error(cl, "service %s does not log its %s (%s = %s)", name,
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
			control_reply_error(cl, "\"lines\" must be a number from 0 to 1000000000");
			return;
		}
		lines = (unsigned long)n->valuedouble;
	}
	if (fo && !cJSON_IsNull(fo) && !cJSON_IsBool(fo)) {
		control_reply_error(cl, "\"follow\" must be true or false");
		return;
	}
	struct logfile *f = logs_file(d, cl, req);
	if (!f)
		return;
	if (cJSON_IsTrue(fo) && control_lasting(cl, false) < 0) {
		control_reply_error(cl, "%s", CONTROL_NO_LASTING_SLOT);
		return;
	}
	struct logtail *t;
	char err[400];
	if (logtail_open(f, lines, cJSON_IsTrue(fo), &t, err, sizeof(err)) < 0) {
		control_reply_error(cl, "%s", err);
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
		control_reply_error(cl, "%s", err);
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

static void dispatch(struct daemon *d, struct client *cl, const cJSON *req)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	if (!cJSON_IsString(c)) {
		control_reply_error(cl, "missing \"cmd\" (status, start, stop, restart, signal, add, remove, "
				"reload, events, logs, reopen-logs, metrics, shutdown, ping, reexec)");
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
			control_reply_error(cl, "the daemon is shutting down");
			return;
		}
		if (cJSON_GetObjectItemCaseSensitive(req, "names") ||
		    cJSON_GetObjectItemCaseSensitive(req, "name")) {
			cmd_reload_services(d, cl, req);
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
	} else if (!strcmp(cmd, "metrics")) {
		metrics_ctl_reply(d, cl);
	} else if (!strcmp(cmd, "reexec")) {
		char err[PATH_MAX + 200];
		/* under way: the new image answers on this connection (or this one, why not) */
		if (daemon_reexec(d, cl, err, sizeof(err)) < 0) {
			dlog("reexec: %s", err);
			control_reply_error(cl, "%s", err);
		}
	} else if (!strcmp(cmd, "ping")) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddStringToObject(r, "version", evm_version());
		cJSON_AddNumberToObject(r, "pid", getpid());
		cJSON_AddNumberToObject(r, "services", (double)d->nunits);
		cJSON_AddNumberToObject(r, "clients", control_clients(d->ctl));
		cJSON_AddStringToObject(r, "config", d->cfg_path);
		if (d->metrics)
			cJSON_AddStringToObject(r, "metrics", metrics_http_address(d->metrics));
		reply_ok(cl, r);
	} else {
		control_reply_error(cl, "unknown command \"%.64s\"", cmd);
	}
}

/* The events a request causes reach subscribers after its reply (events.h). */
void requests_handle(struct client *cl, const cJSON *req, void *data)
{
	struct daemon *d = data;
	events_hold(d);
	dispatch(d, cl, req);
	events_release(d);
}
