/*
 * events.c - the daemon's event records, status records and publishing
 * (see events.h).
 *
 * Every exit record is built by one function (add_exit), whether it goes
 * into an "exit" or "orphan" event or into a status's "last_exit", so the
 * three always say the same thing the same way.
 *
 * The daemon's log gets each line when the event happens, in the order
 * things happened; subscribers get the same records, after the reply of
 * the request that caused them (the queue below holds them meanwhile).
 */
#include "events.h"

#include "cli.h"
#include "daemon.h"
#include "daemonlog.h"
#include "proto.h"
#include "textsafe.h"
#include "ready.h"
#include "spawnwhy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct queued_event {
	struct queued_event *next;
	char *service; /* NULL: for every subscriber */
	char *line;
};

void events_add_time(cJSON *obj, const char *key, const struct timespec *ts)
{
	char buf[40];
	cJSON_AddStringToObject(obj, key, proto_time(ts, buf, sizeof(buf)));
}

/* ---------------------------------------------------------- publishing */

static void fan_out(struct daemon *d, const char *service, char *line)
{
	struct queued_event *q = d->events.hold ? malloc(sizeof(*q)) : NULL;
	if (q) {
		q->next = NULL;
		q->line = line;
		q->service = service ? strdup(service) : NULL;
		if (!service || q->service) {
			if (d->events.last)
				d->events.last->next = q;
			else
				d->events.first = q;
			d->events.last = q;
			return;
		}
		free(q);
	}
	/* not held, or no memory to queue it: late is better than lost */
	control_publish(d->ctl, service, line);
	cJSON_free(line);
}

#define EVENT_MAX (64 * 1024) /* bytes of one event line, at most a quarter of client_buffer */

/* Cut strings longer than lim at a UTF-8 boundary, saying how much went. */
static void cut_strings(cJSON *it, size_t lim)
{
	for (; it; it = it->next) {
		cut_strings(it->child, lim);
		size_t n = cJSON_IsString(it) && it->valuestring ? strlen(it->valuestring) : 0;
		if (n <= lim)
			continue;
		size_t k = lim;
		while (k > 0 && ((unsigned char)it->valuestring[k] & 0xc0) == 0x80)
			k--;
		char *s = cJSON_malloc(k + 48);
		if (!s)
			continue;
		snprintf(s, k + 48, "%.*s... [%zu bytes cut]", (int)k, it->valuestring, n - k);
		cJSON_free(it->valuestring);
		it->valuestring = s;
	}
}

/* Keep the first keep items of arr in one pass (deleting one by one from the end is quadratic). */
static int keep_first(cJSON *arr, int keep)
{
	if (keep == 0) {
		cJSON_Delete(arr->child); /* the whole chain */
		arr->child = NULL;
		return 0;
	}
	cJSON *last = cJSON_GetArrayItem(arr, keep - 1);
	cJSON *rest = last->next;
	last->next = NULL;
	arr->child->prev = last;
	if (rest) {
		rest->prev = NULL;
		cJSON_Delete(rest);
	}
	return keep;
}

/*
 * One event must fit a reader that keeps up (a reload refused with 5 MB of
 * errors dropped every subscriber): long strings are cut and the error
 * list is halved until the line fits, with "errors_omitted" saying how many.
 */
static char *print_capped(const struct daemon *d, cJSON *ev)
{
	size_t cap = EVENT_MAX, buf = d->cfg ? d->cfg->client_buffer : 0;
	if (buf && buf / 4 < cap)
		cap = buf / 4;
	char *s = cJSON_PrintUnformatted(ev);
	if (!s || strlen(s) <= cap)
		return s;
	cJSON_free(s);
	cut_strings(ev->child, cap / 8);
	cJSON *errs = cJSON_GetObjectItemCaseSensitive(ev, "errors");
	const cJSON *omitted = cJSON_GetObjectItemCaseSensitive(ev, "errors_omitted");
	double total = (cJSON_IsArray(errs) ? cJSON_GetArraySize(errs) : 0) +
		       (cJSON_IsNumber(omitted) ? omitted->valuedouble : 0); /* some left out already */
	for (;;) {
		s = cJSON_PrintUnformatted(ev);
		int n = cJSON_IsArray(errs) ? cJSON_GetArraySize(errs) : 0;
		if (!s || strlen(s) <= cap || n == 0)
			return s;
		cJSON_free(s);
		n = keep_first(errs, n / 2);
		cJSON_DeleteItemFromObjectCaseSensitive(ev, "errors_omitted");
		cJSON_AddNumberToObject(ev, "errors_omitted", total - n);
	}
}

/* ev to the log (unless !log; then note after the line) and to the subscribers; frees ev */
static void publish(struct daemon *d, const char *service, cJSON *ev, bool log, const char *note)
{
	if (!cJSON_GetObjectItemCaseSensitive(ev, "time")) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		events_add_time(ev, "time", &ts);
	}
	char line[1024];
	if (log) {
		proto_event_line(ev, line, sizeof(line));
		dlog("%s%s", line, note ? note : "");
	}
	/* printed for a subscriber only (a held event for whoever follows at its release) */
	char *s = d->ctl && (d->events.hold || control_wants_event(d->ctl, service)) ? print_capped(d, ev) : NULL;
	if (s) {
		utf8_scrub(s, strlen(s)); /* a service's bytes (health output, a command) need not be UTF-8; JSON must */
		fan_out(d, service, s);
	}
	cJSON_Delete(ev);
}

void events_publish(struct daemon *d, const char *service, cJSON *ev)
{
	publish(d, service, ev, true, NULL);
}

void events_hold(struct daemon *d)
{
	d->events.hold++;
}

static void drop_queue(struct daemon *d, bool send)
{
	while (d->events.first) {
		struct queued_event *q = d->events.first;
		d->events.first = q->next;
		if (send && d->ctl)
			control_publish(d->ctl, q->service, q->line);
		cJSON_free(q->line);
		free(q->service);
		free(q);
	}
	d->events.last = NULL;
}

void events_release(struct daemon *d)
{
	if (d->events.hold && --d->events.hold == 0)
		drop_queue(d, true);
}

void events_free(struct daemon *d)
{
	drop_queue(d, false);
	d->events.hold = 0;
}

/* ------------------------------------------------------------- records */

/* pid, code or signal, core_dumped, status_unknown: the same in every record */
static void add_exit(cJSON *o, const struct evm_exit *x)
{
	cJSON_AddNumberToObject(o, "pid", x->pid);
	if (x->signal || x->status_unknown)
		cJSON_AddNullToObject(o, "code");
	else
		cJSON_AddNumberToObject(o, "code", x->code);
	if (x->signal) {
		const char *n = cli_signal_name(x->signal);
		cJSON_AddNumberToObject(o, "signal", x->signal);
		cJSON_AddStringToObject(o, "signal_name", n ? n : "?");
	} else {
		cJSON_AddNullToObject(o, "signal");
	}
	if (x->core_dumped)
		cJSON_AddTrueToObject(o, "core_dumped");
	if (x->status_unknown)
		cJSON_AddTrueToObject(o, "status_unknown");
	if (x->adopted)
		cJSON_AddTrueToObject(o, "adopted");
	if (x->oom_killed) /* the OOM killer killed in its cgroup during the run (Docker's "oom") */
		cJSON_AddStringToObject(o, "reason", "oom");
}

static void add_runtime(cJSON *o, const struct evm_exit *x)
{
	cJSON_AddNumberToObject(o, "runtime_ms", (double)(x->runtime_ns / 1000000));
}

/* "exec: No such file or directory", and what it hides ("(its interpreter ...)") */
static void add_error(cJSON *o, enum evm_spawn_stage stage, int error, const char *why)
{
	char err[700];
	if (stage != EVM_STAGE_NONE)
		snprintf(err, sizeof(err), "%s: %s%s%s%s", evm_spawn_stage_name(stage), strerror(error),
			 why ? " (" : "", why ? why : "", why ? ")" : "");
	else
		snprintf(err, sizeof(err), "%s", strerror(error));
	cJSON_AddStringToObject(o, "error", err);
}

static void service_event(struct daemon *d, const struct evm_event *ev)
{
	const char *name = ev->name ? ev->name : "?";
	struct unit *u = ev->name ? unit_find(d, ev->name) : NULL;
	bool ours = u && u->svc == ev->service;
	/*
	 * An old copy of a unit still there (a reload changed it, a remove and an add,
	 * a crash's old copy taken over): its events are not the unit's, which goes on
	 * (ctl wait follows the unit, not the copy). A unit being removed is not one.
	 */
	bool replaced = u && !ours && !u->removed;
	/* the exit that caused this transition (the library says: exactly one event has it) */
	if (ev->exit) {
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "event", "exit");
		events_add_time(x, "time", &ev->exit->end_time);
		cJSON_AddStringToObject(x, "service", name);
		add_exit(x, ev->exit);
		add_runtime(x, ev->exit);
		if (replaced)
			cJSON_AddTrueToObject(x, "replaced");
		events_publish(d, name, x);
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", "state");
	events_add_time(o, "time", &ev->time);
	cJSON_AddStringToObject(o, "service", name);
	cJSON_AddStringToObject(o, "state", evm_state_name(ev->state));
	cJSON_AddStringToObject(o, "old_state", ours && u->leaving_wait && ev->old_state == EVM_STATE_STOPPED
						 ? "waiting" : evm_state_name(ev->old_state));
	if (ev->pid > 0)
		cJSON_AddNumberToObject(o, "pid", ev->pid);
	cJSON_AddNumberToObject(o, "restarts", ev->restarts);
	if (ev->state == EVM_STATE_BACKOFF)
		cJSON_AddNumberToObject(o, "delay_ms", (double)ev->delay_ms);
	if (ev->error)
		add_error(o, ev->stage, -ev->error, NULL);
	if (ev->message && ours && ev->error && !ev->exit && u->spawn_why) {
		char msg[1200];
		spawn_why_insert(ev->message, ev->error, u->spawn_why, msg, sizeof(msg));
		cJSON_AddStringToObject(o, "message", msg);
	} else if (ev->message) {
		cJSON_AddStringToObject(o, "message", ev->message);
	}
	if (ev->removed)
		cJSON_AddTrueToObject(o, "removed");
	if (replaced)
		cJSON_AddTrueToObject(o, "replaced");
	/* a restart's stop (or a start asked for while it stopped): it starts again after */
	if (ours && u->start_after &&
	    (ev->state == EVM_STATE_STOPPING || ev->state == EVM_STATE_STOPPED))
		cJSON_AddTrueToObject(o, "restarting");
	const char *health = ours ? health_status_name(health_of(u)) : NULL;
	if (health)
		cJSON_AddStringToObject(o, "health", health);
	events_publish(d, name, o);
}

void events_from_library(struct daemon *d, const struct evm_event *ev)
{
	if (ev->type == EVM_EV_SERVICE) {
		service_event(d, ev);
		return;
	}
	cJSON *o = cJSON_CreateObject();
	if (ev->type == EVM_EV_ORPHAN && ev->exit) {
		/*
		 * Each is an event; the log says the 1st, 2nd, 4th, 8th, ..., and
		 * every one that failed (a code, a signal): a daemon as PID 1 of a
		 * container reaps whatever its services and `exec`'d processes
		 * leave, 3,000 lines for a shell loop's orphans.
		 */
		static unsigned long reaped;
		char note[96];
		cJSON_AddStringToObject(o, "event", "orphan");
		events_add_time(o, "time", &ev->exit->end_time);
		add_exit(o, ev->exit);
		reaped++;
		snprintf(note, sizeof(note), " (%lu orphan%s reaped so far)", reaped, reaped == 1 ? "" : "s");
		bool failed = ev->exit->signal || ev->exit->code != 0;
		publish(d, ev->name, o, failed || !(reaped & (reaped - 1)), reaped > 1 ? note : NULL);
		return;
	} else {
		cJSON_AddStringToObject(o, "event", "warning");
		events_add_time(o, "time", &ev->time);
		if (ev->message)
			cJSON_AddStringToObject(o, "message", ev->message);
		if (ev->error)
			cJSON_AddStringToObject(o, "error", strerror(-ev->error));
		if (ev->name)
			cJSON_AddStringToObject(o, "service", ev->name);
	}
	events_publish(d, ev->name, o);
}

void events_log(struct daemon *d, const char *service, const char *file, int error,
		const char *msg)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", "log");
	if (service)
		cJSON_AddStringToObject(o, "service", service);
	if (file)
		cJSON_AddStringToObject(o, "file", file);
	if (error)
		cJSON_AddStringToObject(o, "error", strerror(-error));
	cJSON_AddStringToObject(o, "message", msg);
	events_publish(d, service, o);
}

/* -------------------------------------------------------------- status */

/* Its cgroup and what it holds: what is readable (the controllers it has) */
static void add_cgroup(cJSON *o, const struct evm_cgroup *cg)
{
	struct evm_cgroup_stats st;
	cJSON_AddStringToObject(o, "cgroup", evm_cgroup_path(cg));
	if (evm_cgroup_stats(cg, &st) < 0)
		return;
	if (st.have & EVM_CGROUP_STAT_PROCS)
		cJSON_AddNumberToObject(o, "processes", (double)st.procs);
	if (st.have & EVM_CGROUP_STAT_CPU)
		cJSON_AddNumberToObject(o, "cpu_usage_usec", (double)st.cpu_usage_usec);
	if (st.have & EVM_CGROUP_STAT_MEMORY)
		cJSON_AddNumberToObject(o, "memory_current", (double)st.memory_current);
	if (st.have & EVM_CGROUP_STAT_PIDS)
		cJSON_AddNumberToObject(o, "pids_current", (double)st.pids_current);
	if (st.have & EVM_CGROUP_STAT_OOM)
		cJSON_AddNumberToObject(o, "oom_kills", (double)st.oom_kill);
}

cJSON *events_status(struct daemon *d, const struct unit *u)
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
	cJSON_AddStringToObject(o, "state", deps_state_name(u));
	if (info.pid > 0)
		cJSON_AddNumberToObject(o, "pid", info.pid);
	else
		cJSON_AddNullToObject(o, "pid");
	cJSON_AddNumberToObject(o, "uptime_ms", (double)info.uptime_ms);
	cJSON_AddNumberToObject(o, "restarts", info.restarts);
	cJSON_AddNumberToObject(o, "failures", info.failures);
	if (info.since.tv_sec)
		events_add_time(o, "since", &info.since);
	cJSON_AddStringToObject(o, "restart", config_restart_name(u->conf->pol.restart));
	cJSON_AddBoolToObject(o, "autostart", u->conf->pol.autostart);
	if (u->svc && evm_proc_adopted(evm_service_proc(u->svc)))
		cJSON_AddTrueToObject(o, "adopted"); /* taken over after a crash or a re-exec */
	if (u->added)
		cJSON_AddTrueToObject(o, "added");
	/* replaced (a reload, remove and add): the new definition starts once this one is gone */
	struct evm_proc *oldp = u->old ? evm_service_proc(u->old) : NULL;
	if (oldp && evm_proc_pid(oldp) > 0) {
		cJSON_AddNumberToObject(o, "old_pid", evm_proc_pid(oldp));
		if (draining_held(d, u->old)) /* running on until what requires it stops */
			cJSON_AddTrueToObject(o, "old_held");
	}
	if (info.has_exit) {
		cJSON *x = cJSON_AddObjectToObject(o, "last_exit");
		add_exit(x, &info.last_exit);
		events_add_time(x, "time", &info.last_exit.end_time);
		add_runtime(x, &info.last_exit);
	}
	if (info.state == EVM_STATE_BACKOFF)
		cJSON_AddNumberToObject(o, "next_start_ms", (double)info.next_start_ms);
	if (u->cg)
		add_cgroup(o, u->cg);
	health_status(u, o);
	ready_status(u, o);
	if (u->blocked || u->pending) {
		deps_status(u, o);
	} else if (!u->svc && u->create_error) {
		char err[256];
		snprintf(err, sizeof(err), "not created: %s", strerror(-u->create_error));
		cJSON_AddStringToObject(o, "error", err);
	} else if (info.last_error.stage == EVM_STAGE_SETUP && u->conf->ids_unresolved &&
		   u->conf->problem) {
		cJSON_AddStringToObject(o, "error", u->conf->problem); /* "user: unknown user 'x'" */
	} else if (info.last_error.stage != EVM_STAGE_NONE) {
		add_error(o, info.last_error.stage, info.last_error.error, u->spawn_why);
	} else if (info.state == EVM_STATE_FATAL && u->fatal_why) {
		cJSON_AddStringToObject(o, "error", u->fatal_why);
	}
	return o;
}

/* "12 services: 10 running, 1 backoff, 1 fatal" */
void events_summary(struct daemon *d, char *buf, size_t len)
{
	size_t count[EVM_STATE_RELOADING + 1] = {0}, none = 0;
	for (struct unit *u = d->first; u; u = u->next) {
		if (!u->svc) {
			none++;
			continue;
		}
		enum evm_state st = evm_service_state(u->svc);
		if ((unsigned)st <= EVM_STATE_RELOADING)
			count[st]++;
	}
	int n = snprintf(buf, len, "%zu service%s", d->nunits, d->nunits == 1 ? "" : "s");
	const char *sep = ": ";
	static const enum evm_state order[] = {EVM_STATE_RUNNING, EVM_STATE_RELOADING, EVM_STATE_STARTING,
					       EVM_STATE_BACKOFF,  EVM_STATE_STOPPING,
					       EVM_STATE_EXITED,  EVM_STATE_FATAL,
					       EVM_STATE_STOPPED};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!count[order[i]] || n < 0 || (size_t)n >= len)
			continue;
		n += snprintf(buf + n, len - (size_t)n, "%s%zu %s", sep, count[order[i]],
			      evm_state_name(order[i]));
		sep = ", ";
	}
	if (none && n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "%s%zu not created", sep, none);
}
