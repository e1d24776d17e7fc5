/*
 * reload.c - reload: the difference between the running units and a
 * freshly read config, applied (SIGHUP, `evmon ctl reload`).
 *
 * Invariants: a config that does not load changes nothing (the reply says
 * why); otherwise every instance of the new file is added, kept, given its
 * new policy in place, or replaced (released, then created again), and
 * every unit not in it is removed; the reply names each by what happened.
 */
#include "daemon.h"

#include "cgroups.h"
#include "confkeys.h"
#include "daemonlog.h"
#include "fdreserve.h"
#include "notify.h"
#include "ready.h"
#include "state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static void add_name(cJSON *arr, const char *name)
{
	cJSON_AddItemToArray(arr, cJSON_CreateString(name));
}

/* " (a, b and 3 more)" for a log line, "" for none */
static const char *name_list(const cJSON *arr, char *buf, size_t len)
{
	int n = cJSON_GetArraySize(arr), i = 0;
	size_t used = 0;
	buf[0] = '\0';
	if (!n || len < 40)
		return buf;
	used = (size_t)snprintf(buf, len, " (");
	const cJSON *it;
	cJSON_ArrayForEach(it, arr) {
		const char *name = cJSON_GetStringValue(it);
		size_t need = strlen(name ? name : "?") + 2;
		/* room for this name, the separator and "and N more)" */
		if (used + need + 24 > len)
			break;
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
					 name ? name : "?");
		i++;
	}
	if (i < n)
		snprintf(buf + used, len - used, "%sand %d more)", i ? " " : "", n - i);
	else
		snprintf(buf + used, len - used, ")");
	return buf;
}

/* The new config, unless it has mistakes or takes a name `ctl add` took. */
static int reload_read(struct daemon *d, struct config **out, struct errlist *errs)
{
	char name[256];
	struct config *cfg;
	if (config_load(d->cfg_path, &cfg, errs) < 0)
		return -1;
	/* a name taken by a service added at run time is a conflict, not a takeover */
	for (size_t k = 0; k < cfg->nsvcs; k++) {
		struct svc_conf *c = cfg->svcs[k];
		for (unsigned i = 0; i < c->instances; i++) {
			unit_instance_name(c, i, name, sizeof(name));
			struct unit *u = unit_find(d, name);
			if (u && u->added)
				errlist_add(errs, cfg->path, c->line,
					    "service %s: a service of that name was added with "
					    "`evmon ctl add`: remove it first",
					    name);
		}
		/* the same name with another count of instances ("x" against "x:0", "x:1") */
		struct unit *u = unit_of_definition(d, c->name);
		if (u && u->added && (u->conf->instances > 1) != (c->instances > 1))
			errlist_add(errs, cfg->path, c->line,
				    "service %s: a service of that name was added with `evmon ctl "
				    "add`: remove it first", c->name);
	}
	/* what an added service requires stays: as `ctl remove` refuses to remove it */
	for (struct unit *u = d->first; u; u = u->next) {
		if (!u->added || u->inst_prev) /* once a definition: its first instance left */
			continue;
		for (char **w = u->conf->requires; w && *w; w++) {
			int len = config_dep_name_len(*w, false);
			if (len < 0 || len >= (int)sizeof(name))
				continue;
			snprintf(name, sizeof(name), "%.*s", len, *w);
			bool kept = false;
			for (size_t k = 0; k < cfg->nsvcs && !kept; k++)
				kept = !strcmp(cfg->svcs[k]->name, name);
			struct unit *t = kept ? NULL : unit_of_definition(d, name);
			if (!kept && !(t && t->added))
				errlist_add(errs, cfg->path, 0,
					    "service %s: it was added with `evmon ctl add` and requires %s, "
					    "which this file no longer has: remove %s first, or keep %s",
					    u->conf->name, name, u->conf->name, name);
		}
	}
	/* --strict: its problems and warnings are mistakes, at a reload as at the start */
	if (d->strict) {
		errlist_append(errs, &cfg->problems);
		errlist_append(errs, &cfg->notes);
	}
	if (errlist_total(errs)) {
		config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

static void reload_refused(struct daemon *d, cJSON *resp, struct errlist *errs)
{
	cJSON *arr = cJSON_AddArrayToObject(resp, "errors");
	for (size_t i = 0; i < errs->n; i++) {
		dlog("reload: %s", errs->msgs[i]);
		add_name(arr, errs->msgs[i]);
	}
	if (errs->more) { /* past ERRLIST_MAX: counted, as an event's cut list is */
		dlog("reload: ... and %zu more errors", errs->more);
		cJSON_AddNumberToObject(resp, "errors_omitted", (double)errs->more);
	}
	cJSON *ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "event", "reload");
	char msg[900];
	snprintf(msg, sizeof(msg), "%s: %zu error%s, the running configuration is kept: %s",
		 d->cfg_path, errlist_total(errs), errlist_total(errs) == 1 ? "" : "s", errs->msgs[0]);
	cJSON_AddStringToObject(ev, "message", msg);
	cJSON_AddStringToObject(ev, "error", errs->msgs[0]);
	cJSON_AddItemToObject(ev, "errors", cJSON_Duplicate(arr, 1));
	if (errs->more)
		cJSON_AddNumberToObject(ev, "errors_omitted", (double)errs->more);
	events_publish(d, NULL, ev);
	if (d->started) /* else the start's READY=1 is still to come (daemon_started) */
		notify_send("READY=1\nSTATUS=reload failed: %s", errs->msgs[0]);
	cJSON_AddFalseToObject(resp, "ok");
	cJSON_AddStringToObject(resp, "error", errs->msgs[0]);
}

/* The services keep running: only where their lines go changes. */
static void reload_log_dir(struct daemon *d, const struct config *cfg)
{
	if (same_str(cfg->log_dir, d->cfg->log_dir))
		return;
	char err[400], msg[700];
	int r = logs_set_dir(d->logs, cfg->log_dir, err, sizeof(err));
	dlog("reload: log_dir %s -> %s", d->cfg->log_dir ? d->cfg->log_dir : "(none)",
	     cfg->log_dir ? cfg->log_dir : "(none)");
	if (r < 0) {
		snprintf(msg, sizeof(msg), "%s: the output of services with stdout or stderr "
			 "= log is discarded until it can be written", err);
		events_log(d, NULL, NULL, r, msg);
	}
}

/* What a reload did, by name. */
struct reload_diff {
	cJSON *added, *removed, *changed, *updated;
	unsigned unchanged;
};

/* Only policy keys differ: the new policy applies to the running service, which stays. */
static int reload_policy(struct daemon *d, struct unit *u, struct svc_conf *c, unsigned i)
{
	struct svc_build b;
	int r = config_build(c, i, &b);
	if (r == 0) {
		r = evm_service_set_policy(u->svc, &b.opts);
		config_build_free(&b);
	}
	if (r < 0)
		dlog("service %s: cannot change its policy: %s: restarting it", u->name, strerror(-r));
	return r;
}

/* Instance i of the new definition c: added, kept (unchanged) or replaced (changed). */
static void reload_unit(struct daemon *d, struct svc_conf *c, unsigned i, struct reload_diff *r)
{
	char name[256];
	unit_instance_name(c, i, name, sizeof(name));
	struct unit *u = unit_find(d, name);
	if (!u) {
		u = unit_add(d, c, i, false);
		if (u)
			u->mark = true;
		add_name(r->added, name);
		return;
	}
	u->mark = true;
	bool same = svc_conf_equal(u->conf, c);
	if (same || (u->svc && svc_conf_same_run(u->conf, c) && reload_policy(d, u, c, i) == 0)) {
		svc_conf_unref(u->conf); /* the same process: adopt the new copy */
		u->conf = svc_conf_ref(c);
		if (u->out)
			output_configure(u->out, c); /* log settings apply live */
		health_configure(d, u);		     /* so do the health keys */
		if (same)
			r->unchanged++;
		else
			add_name(r->updated, name);
		return;
	}
	/* unless-stopped: a service the user stopped stays down */
	struct evm_service_info info;
	memset(&info, 0, sizeof(info));
	if (u->svc)
		evm_service_info(u->svc, &info);
	bool keep_down = u->svc && info.stopped_by_user &&
			 u->conf->pol.restart == EVM_RESTART_UNLESS_STOPPED;
	/* one running (or about to) is started again, autostart or not: a changed service
	 * that a user had started was stopped and left down */
	bool up = (u->pending || unit_deferred(u) ||
		   (u->svc && (info.state == EVM_STATE_STARTING || info.state == EVM_STATE_RUNNING ||
			       info.state == EVM_STATE_RELOADING || info.state == EVM_STATE_BACKOFF ||
			       (info.state == EVM_STATE_STOPPING && u->start_after)))) &&
		  !u->want_stop; /* a stop asked for and still waiting: not started again */
	unit_release(d, u);
	svc_conf_unref(u->conf);
	u->conf = svc_conf_ref(c);
	u->instance = i;
	u->want_start = (c->pol.autostart || up) && !keep_down;
	unit_create(d, u);
	if (u->old && u->want_start && u->svc)
		deps_tell_deferred(d, u); /* until its old copy is gone, as status says */
	add_name(r->changed, name);
}

/* The answer, the event (its log line shows the first few names), STATUS=. */
static void reload_report(struct daemon *d, cJSON *resp, struct reload_diff *r)
{
	int na = cJSON_GetArraySize(r->added), nr = cJSON_GetArraySize(r->removed),
	    nc = cJSON_GetArraySize(r->changed), nu = cJSON_GetArraySize(r->updated);
	cJSON *ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "event", "reload");
	char msg[1200], l_add[220], l_rem[220], l_chg[220], l_upd[260], status[700];
	l_upd[0] = '\0';
	if (nu) { /* ", 2 updated (a, b)": only when a policy changed in place */
		char names[220];
		snprintf(l_upd, sizeof(l_upd), ", %d updated%s", nu,
			 name_list(r->updated, names, sizeof(names)));
	}
	snprintf(msg, sizeof(msg), "%s: %d added%s, %d removed%s, %d changed%s%s, %u unchanged",
		 d->cfg_path, na, name_list(r->added, l_add, sizeof(l_add)), nr,
		 name_list(r->removed, l_rem, sizeof(l_rem)), nc,
		 name_list(r->changed, l_chg, sizeof(l_chg)), l_upd, r->unchanged);
	cJSON_AddStringToObject(ev, "message", msg);
	cJSON_AddItemToObject(ev, "added", cJSON_Duplicate(r->added, 1));
	cJSON_AddItemToObject(ev, "removed", cJSON_Duplicate(r->removed, 1));
	cJSON_AddItemToObject(ev, "changed", cJSON_Duplicate(r->changed, 1));
	cJSON_AddItemToObject(ev, "updated", cJSON_Duplicate(r->updated, 1));
	cJSON_AddNumberToObject(ev, "unchanged", r->unchanged);
	cJSON_AddTrueToObject(resp, "ok");
	cJSON_AddItemToObject(resp, "added", r->added);
	cJSON_AddItemToObject(resp, "removed", r->removed);
	cJSON_AddItemToObject(resp, "changed", r->changed);
	cJSON_AddItemToObject(resp, "updated", r->updated);
	cJSON_AddNumberToObject(resp, "unchanged", r->unchanged);
	events_publish(d, NULL, ev);
	events_summary(d, status, sizeof(status));
	if (d->started) /* else the start's READY=1 is still to come (daemon_started) */
		notify_send("READY=1\nSTATUS=reloaded: %d added, %d removed, %d changed, "
			    "%d updated, %u unchanged; %s", na, nr, nc, nu, r->unchanged, status);
}

/* A warning of the file read: msg in the answer, log (else "warning: msg") in the log. */
static void reload_warn(cJSON *warnings, const char *msg, const char *log)
{
	if (log)
		dlog("reload: %s", log);
	else
		dlog("reload: warning: %s", msg);
	cJSON_AddItemToArray(warnings, cJSON_CreateString(msg));
}

int units_reload(struct daemon *d, cJSON *resp)
{
	struct errlist errs = {0};
	struct config *cfg = NULL;
	char status[700];
	snprintf(status, sizeof(status), "reloading %s", d->cfg_path);
	if (d->started) /* a reload while it starts: the manager waits for READY=1 still */
		notify_reloading(status);
	if (reload_read(d, &cfg, &errs) < 0) {
		reload_refused(d, resp, &errs);
		errlist_free(&errs);
		return -1;
	}
	/* said in the log and in the answer: `ctl reload` printed "changed: a" and exit 0 for a
	 * command that no longer exists, the warning only in the daemon's log */
	cJSON *warnings = cJSON_AddArrayToObject(resp, "warnings");
	char log[2048];
	for (size_t i = 0; i < cfg->problems.n; i++) {
		snprintf(log, sizeof(log), "warning: %s (the service starts in a failed state)",
			 cfg->problems.msgs[i]);
		reload_warn(warnings, cfg->problems.msgs[i], log);
	}
	for (size_t i = 0; i < cfg->notes.n; i++)
		reload_warn(warnings, cfg->notes.msgs[i], NULL);
	if (cfg->problems.more) {
		char more[64];
		snprintf(more, sizeof(more), "... and %zu more", cfg->problems.more);
		snprintf(log, sizeof(log), "... and %zu more warnings", cfg->problems.more);
		reload_warn(warnings, more, log);
	}
	if (!same_str(cfg->socket, d->at_start.socket) && !d->socket_from_cli)
		reload_warn(warnings, "socket: changes at the next start of the daemon",
			    "the control socket changes at the next start of the daemon");
	if (!same_str(cfg->metrics_listen, d->at_start.metrics_listen))
		reload_warn(warnings, "metrics_listen: changes at the next start of the daemon",
			    "metrics_listen changes at the next start of the daemon");
	/* read once, by the control socket and the cgroups made at the start */
	const struct { const char *key; bool changed; } at_start[] = {
		{"max_clients", cfg->max_clients != d->at_start.max_clients},
		{"events_buffer_total", cfg->events_buffer_total != d->at_start.events_buffer_total},
		{"idle_timeout", cfg->idle_timeout_ms != d->at_start.idle_timeout_ms},
		{"cgroup", cfg->cgroup != d->at_start.cgroup},
	};
	for (size_t i = 0; i < sizeof(at_start) / sizeof(at_start[0]); i++) {
		if (!at_start[i].changed)
			continue;
		char msg[96];
		snprintf(msg, sizeof(msg), "%s: changes at the next start of the daemon", at_start[i].key);
		reload_warn(warnings, msg, NULL);
	}
	if (!cJSON_GetArraySize(warnings))
		cJSON_DeleteItemFromObjectCaseSensitive(resp, "warnings");
	reload_log_dir(d, cfg);
	struct reload_diff r = {cJSON_CreateArray(), cJSON_CreateArray(), cJSON_CreateArray(),
				cJSON_CreateArray(), 0};
	for (struct unit *u = d->first; u; u = u->next)
		u->mark = false;
	struct config *old = d->cfg;
	d->cfg = cfg; /* new log_dir for the services created below */
	d->defer_start = true; /* started once all exist: a new service may require another */
	draining_hold_begin(d); /* old copies (replaced, removed) stop in dependency order */
	for (size_t k = 0; k < cfg->nsvcs; k++)
		for (unsigned i = 0; i < cfg->svcs[k]->instances; i++)
			reload_unit(d, cfg->svcs[k], i, &r);
	for (struct unit *u = d->first, *next; u; u = next) {
		next = u->next;
		if (!u->mark && !u->added) {
			add_name(r.removed, u->name);
			unit_remove(d, u);
		} else {
			u->mark = false; /* scratch: selections expect it clear */
		}
	}
	draining_hold_end(d);
	d->defer_start = false;
	deps_forget(d, NULL); /* kept services may depend on others now */
	deps_start_wanted(d);
	deps_retry_stops(d); /* a stop waiting for a dependent the new graph has not */
	config_free(old);
	reload_report(d, resp, &r);
	return 0;
}
