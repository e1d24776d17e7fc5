/*
 * wait.c - `evmon ctl wait NAME... [--for STATE]` and `evmon ctl health
 * NAME` (see wait.h).
 *
 * wait subscribes to the services' events first, then asks for their
 * status on the same connection: the status answer comes after every
 * event published before it and before any published after it (the
 * daemon keeps one order per connection), so the answer is the starting
 * point and each later event moves it on; nothing can fall between the
 * two. Nothing polls: it sleeps in poll() until a line or the deadline.
 */
#include "wait.h"

#include "conn.h"
#include "safe.h"
#include "show.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_REACHED 0
#define EXIT_UNREACHABLE 1
#define EXIT_TIMEOUT 3

struct watched {
	char *name;
	char state[16];
	char health[16]; /* "" without a health check */
	char why[200];	 /* why it cannot reach the target, once it cannot */
	bool fell;	 /* stopped (or removed) while we waited */
};

static const char *const targets[] = {"running", "ready", "healthy", "stopped", "exited"};

int ctl_wait_target(const char *s)
{
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (!strcmp(s, targets[i]))
			return (int)i;
	return -1;
}

static bool is(const char *st, const char *a, const char *b, const char *c)
{
	return !strcmp(st, a) || (b && !strcmp(st, b)) || (c && !strcmp(st, c));
}

static bool reached(const struct watched *w, enum wait_for t)
{
	switch (t) {
	/* reloading: ready, and serving, while it reloads (systemd: still active) */
	case WAIT_RUNNING: return is(w->state, "starting", "running", "reloading");
	case WAIT_READY: return is(w->state, "running", "reloading", NULL);
	case WAIT_HEALTHY:
		return is(w->state, "running", "reloading", NULL) &&
		       (!w->health[0] || !strcmp(w->health, "healthy"));
	case WAIT_STOPPED: return is(w->state, "stopped", "exited", "fatal");
	case WAIT_EXITED: return is(w->state, "exited", "fatal", NULL);
	}
	return false;
}

/* The daemon will not bring it there by itself: gave up, done, blocked, stopped, gone. */
static bool unreachable(const struct watched *w, enum wait_for t)
{
	if (t == WAIT_STOPPED)
		return !strcmp(w->state, "removed");
	if (t == WAIT_EXITED) /* stopped while waited for: it stays so, not exited */
		return !strcmp(w->state, "removed") || (w->fell && !strcmp(w->state, "stopped"));
	return is(w->state, "fatal", "exited", "removed") || w->why[0] ||
	       (w->fell && !strcmp(w->state, "stopped"));
}

static void take_state(struct watched *w, const cJSON *o, bool event)
{
	const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "state"));
	const char *err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "error"));
	const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "health"));
	if (st)
		snprintf(w->state, sizeof(w->state), "%s", st);
	if (h)
		snprintf(w->health, sizeof(w->health), "%s", h);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "removed"))) {
		snprintf(w->state, sizeof(w->state), "removed");
		w->fell = true;
	}
	/* a restart's stop is no fall: it starts again */
	if (event && st && !strcmp(st, "stopped") &&
	    !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "restarting")))
		w->fell = true;
	/* a dependency kept it from starting */
	if (st && !strcmp(st, "stopped") && err && !strncmp(err, "not started", 11))
		snprintf(w->why, sizeof(w->why), "%s", err);
	else if (event && st && strcmp(st, "stopped"))
		w->why[0] = '\0';
}

static struct watched *find(struct watched *v, size_t n, const char *name)
{
	for (size_t i = 0; name && i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

/* 0 all there, 1 one never will be, -1 not yet. */
static int verdict(struct watched *v, size_t n, enum wait_for t, bool quiet)
{
	bool all = true;
	for (size_t i = 0; i < n; i++) {
		if (reached(&v[i], t))
			continue;
		if (unreachable(&v[i], t)) {
			if (!quiet)
				fprintf(stderr, "evmon ctl wait: %s is %s%s%s: it cannot become %s\n",
					v[i].name, v[i].state, v[i].why[0] ? ": " : "", v[i].why,
					targets[t]);
			return EXIT_UNREACHABLE;
		}
		all = false;
	}
	return all ? EXIT_REACHED : -1;
}

static long remaining_ms(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms > 0 ? ms : 0;
}

static cJSON *names_request(const char *cmd, char **names, int n)
{
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", cmd);
	cJSON *arr = cJSON_AddArrayToObject(req, "names");
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
	return req;
}

/* The status answer: who to watch, as they are now. */
static int take_status(const cJSON *resp, struct watched **v, size_t *n)
{
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")))
		return show_failure(resp, NULL);
	const cJSON *svcs = cJSON_GetObjectItemCaseSensitive(resp, "services"), *s;
	size_t k = (size_t)cJSON_GetArraySize(svcs);
	*v = calloc(k ? k : 1, sizeof(**v));
	if (!*v)
		return EXIT_UNREACHABLE;
	cJSON_ArrayForEach(s, svcs) {
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "name"));
		if (!name || !((*v)[*n].name = strdup(name)))
			continue;
		take_state(&(*v)[(*n)++], s, false);
	}
	return -1;
}

static void report_timeout(const struct watched *v, size_t n, enum wait_for t, double secs)
{
	fprintf(stderr, "evmon ctl wait: timed out after %g s:", secs);
	for (size_t i = 0, shown = 0; i < n && shown < 8; i++) {
		if (reached(&v[i], t))
			continue;
		fprintf(stderr, "%s %s is %s", shown++ ? "," : "", v[i].name, v[i].state);
	}
	fprintf(stderr, " (waiting for %s)\n", targets[t]);
}

/*
 * --json: what the wait ended on, one object (the messages of the text mode
 * go to stderr in it too): {"ok", "for", "result": "reached", "unreachable"
 * or "timeout", "services": [{"name", "state", "health", "reached", "why"}]}.
 */
static void put_result(const struct watched *v, size_t n, enum wait_for t, int rc)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "ok", rc == EXIT_REACHED);
	cJSON_AddStringToObject(o, "for", targets[t]);
	cJSON_AddStringToObject(o, "result", rc == EXIT_REACHED	    ? "reached"
					     : rc == EXIT_TIMEOUT   ? "timeout"
								    : "unreachable");
	cJSON *a = cJSON_AddArrayToObject(o, "services");
	for (size_t i = 0; i < n; i++) {
		cJSON *s = cJSON_CreateObject();
		cJSON_AddStringToObject(s, "name", v[i].name);
		cJSON_AddStringToObject(s, "state", v[i].state);
		if (v[i].health[0])
			cJSON_AddStringToObject(s, "health", v[i].health);
		cJSON_AddBoolToObject(s, "reached", reached(&v[i], t));
		if (v[i].why[0])
			cJSON_AddStringToObject(s, "why", v[i].why);
		cJSON_AddItemToArray(a, s);
	}
	char *line = cJSON_PrintUnformatted(o);
	if (line)
		safe_put_json(line);
	cJSON_free(line);
	cJSON_Delete(o);
}

int ctl_wait(struct ctl *c, char **names, int n, enum wait_for t)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)c->timeout;
	deadline.tv_nsec += (long)((c->timeout - (double)(time_t)c->timeout) * 1e9);
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	cJSON *resp;
	const char *raw;
	/* the daemon keeps at most 1,024 names a subscription: past that, all events, and
	 * the status below still checks every name (find() keeps those asked for) */
	cJSON *req = names_request("events", names, n > 1024 ? 0 : n);
	cJSON_AddTrueToObject(req, "brief"); /* it ends by itself: max_clients' request slots */
	int rc = ctl_call(c, req, &resp, &raw, 60000);
	if (rc)
		return rc;
	bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"));
	if (!ok && c->json)
		safe_put_json(raw); /* a refusal is the daemon's answer, as it is */
	if (!ok)
		rc = show_failure(resp, NULL);
	cJSON_Delete(resp);
	if (!ok)
		return rc;
	if (ctl_send(c, names_request("status", names, n)) < 0)
		return CTL_EXIT_NODAEMON;
	struct watched *v = NULL;
	size_t nv = 0;
	bool have = false, refused = false, gone = false;
	rc = -1;
	while (rc < 0) {
		char *line;
		/* the status answer comes whatever the timeout (-t 0: one look, no wait) */
		long ms = remaining_ms(&deadline);
		int r = ctl_read_line_quiet(c, &line, have ? (int)ms : (int)(ms > 60000 ? ms : 60000));
		if (r == -2) {
			report_timeout(v, nv, t, c->timeout);
			rc = EXIT_TIMEOUT;
			break;
		}
		if (r < 0) {
			rc = CTL_EXIT_NODAEMON;
			gone = true;
			break;
		}
		cJSON *o = cJSON_Parse(line);
		const char *ev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "event"));
		if (!ev && !have) {
			have = true; /* the events before it are older than it */
			rc = take_status(o, &v, &nv);
			refused = rc >= 0;
			if (refused && c->json)
				safe_put_json(line);
		} else if (ev && have && (!strcmp(ev, "state") || !strcmp(ev, "health"))) {
			const char *svc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "service"));
			struct watched *w = find(v, nv, svc);
			/* an old copy's (a reload replaced it): its successor goes on by that name */
			if (w && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "replaced")))
				take_state(w, o, true);
		}
		cJSON_Delete(o);
		if (rc < 0 && have)
			rc = verdict(v, nv, t, false);
	}
	if (c->json && have && !refused && !gone) /* gone: only the message (stderr) */
		put_result(v, nv, t, rc);
	for (size_t i = 0; i < nv; i++)
		free(v[i].name);
	free(v);
	return rc;
}

int ctl_health(struct ctl *c, const char *name)
{
	char *names[1] = {(char *)name};
	cJSON *resp;
	const char *raw;
	int rc = ctl_call(c, names_request("status", names, 1), &resp, &raw, 60000);
	if (rc)
		return rc;
	struct watched *v = NULL;
	size_t nv = 0;
	rc = take_status(resp, &v, &nv);
	if (rc < 0) {
		bool ok = nv > 0;
		for (size_t i = 0; i < nv; i++) {
			bool h = reached(&v[i], WAIT_HEALTHY);
			ok = ok && h;
			if (!c->json)
				printf("%s: %s\n", v[i].name, v[i].health[0] ? v[i].health
							   : h ? "ready (no health check)"
							       : v[i].state);
		}
		rc = ok ? 0 : 1;
	}
	if (c->json && resp)
		safe_put_json(raw);
	for (size_t i = 0; i < nv; i++)
		free(v[i].name);
	free(v);
	cJSON_Delete(resp);
	return rc;
}
