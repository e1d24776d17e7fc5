/*
 * show.c - what `evmon ctl` prints of the daemon's answers (see show.h).
 */
#include "show.h"

#include "proto.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a JSON number is cast only when in range: 1e999 parses as inf, and such a cast is UB */
#define MAX_MS 1e15

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* The daemon's message(s), on stderr. */
static int print_errors(const cJSON *resp)
{
	const cJSON *errs = cJSON_GetObjectItemCaseSensitive(resp, "errors"), *it;
	if (cJSON_IsArray(errs) && cJSON_GetArraySize(errs) > 0) {
		cJSON_ArrayForEach(it, errs)
			if (cJSON_IsString(it))
				fprintf(stderr, "evmon ctl: %s\n", it->valuestring);
		double more = jnum(resp, "errors_omitted", 0);
		if (more > 0)
			fprintf(stderr, "evmon ctl: ... and %.0f more errors\n", more);
		const char *e = jstr(resp, "error");
		const cJSON *first = cJSON_GetArrayItem(errs, 0);
		if (e && cJSON_IsString(first) && !strcmp(e, first->valuestring))
			return 1; /* "error" repeats the first: said once */
	}
	const char *e = jstr(resp, "error");
	fprintf(stderr, "evmon ctl: %s\n", e ? e : "request failed");
	return 1;
}

/* ---------------------------------------------------------- services */

static void last_exit(const cJSON *s, char *buf, size_t len)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, "last_exit");
	if (!cJSON_IsObject(x)) {
		snprintf(buf, len, "-");
		return;
	}
	const char *sn = jstr(x, "signal_name");
	if (sn)
		snprintf(buf, len, "signal %s", sn);
	else if (jnum(x, "code", -1) >= 0 && jnum(x, "code", -1) <= INT_MAX)
		snprintf(buf, len, "code %d", (int)jnum(x, "code", -1));
	else
		snprintf(buf, len, "unknown");
	const char *why = jstr(x, "reason");
	if (why && !strcmp(why, "oom")) /* "signal KILL (oom)" */
		snprintf(buf + strlen(buf), len - strlen(buf), " (oom)");
}

static void info_text(const cJSON *s, char *buf, size_t len)
{
	const char *err = jstr(s, "error"), *health = jstr(s, "health");
	double next = jnum(s, "next_start_ms", -1);
	char d[32], h[32] = "";
	if (health) /* "healthy; ..." like docker ps's "Up 2 minutes (healthy)" */
		snprintf(h, sizeof(h), "%s%s", health, err || next >= 0 ? "; " : "");
	if (next >= 0 && next <= MAX_MS)
		snprintf(buf, len, "%snext start in %s%s%s", h,
			 proto_duration((uint64_t)next, d, sizeof(d)), err ? "; " : "", err ? err : "");
	else
		snprintf(buf, len, "%s%s", h, err ? err : "");
	size_t n = strlen(buf);
	/* replaced: its old process still stopping, the new one starts after it */
	double old = jnum(s, "old_pid", -1);
	bool held = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "old_held"));
	if (old > 0 && old <= INT_MAX && n < len)
		n += (size_t)snprintf(buf + n, len - n, "%sold pid %d %s", n ? "; " : "", (int)old,
				      held ? "running until what requires it stops" : "stopping");
	/* a waiting service: what it waits for ("waiting for db, cache") */
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(s, "waiting_for"), *dep;
	if (!cJSON_IsArray(w))
		w = NULL;
	bool first = true;
	cJSON_ArrayForEach(dep, w) {
		if (!cJSON_IsString(dep) || n >= len)
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%s%s", first ? (n ? "; waiting for " : "waiting for ")
						       : ", ", dep->valuestring);
		first = false;
	}
	/* what a ready = notify service says of itself (RELOADING=1, STATUS=) */
	const char *note = jstr(s, "notify"), *text = jstr(s, "status_text");
	if (note && n < len)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "; " : "", note);
	if (text && n < len)
		snprintf(buf + n, len - n, "%s%s", n ? "; " : "", text);
}

struct row {
	char name[160], state[16], pid[16], uptime[24], restarts[16], exit[32], info[300];
};

static void print_table(const cJSON *services)
{
	size_t n = (size_t)cJSON_GetArraySize(services), i = 0;
	struct row *rows = calloc(n + 1, sizeof(*rows));
	if (!rows)
		return;
	snprintf(rows[0].name, sizeof(rows[0].name), "NAME");
	snprintf(rows[0].state, sizeof(rows[0].state), "STATE");
	snprintf(rows[0].pid, sizeof(rows[0].pid), "PID");
	snprintf(rows[0].uptime, sizeof(rows[0].uptime), "UPTIME");
	snprintf(rows[0].restarts, sizeof(rows[0].restarts), "RESTARTS");
	snprintf(rows[0].exit, sizeof(rows[0].exit), "LAST EXIT");
	snprintf(rows[0].info, sizeof(rows[0].info), "INFO");
	const cJSON *s;
	cJSON_ArrayForEach(s, services) {
		struct row *r = &rows[++i];
		const char *name = jstr(s, "name"), *state = jstr(s, "state");
		snprintf(r->name, sizeof(r->name), "%s", name ? name : "?");
		snprintf(r->state, sizeof(r->state), "%s", state ? state : "?");
		double pid = jnum(s, "pid", 0);
		snprintf(r->pid, sizeof(r->pid), pid > 0 ? "%.0f" : "-", pid);
		double up = jnum(s, "uptime_ms", 0);
		if (up > 0 && up <= MAX_MS)
			proto_duration((uint64_t)up, r->uptime, sizeof(r->uptime));
		else
			snprintf(r->uptime, sizeof(r->uptime), "-");
		snprintf(r->restarts, sizeof(r->restarts), "%.0f", jnum(s, "restarts", 0));
		last_exit(s, r->exit, sizeof(r->exit));
		info_text(s, r->info, sizeof(r->info));
	}
	int w[6] = {0};
	for (size_t k = 0; k <= n; k++) {
		const char *cols[6] = {rows[k].name, rows[k].state, rows[k].pid, rows[k].uptime,
				       rows[k].restarts, rows[k].exit};
		for (int j = 0; j < 6; j++) {
			int l = (int)strlen(cols[j]);
			if (l > w[j])
				w[j] = l;
		}
	}
	for (size_t k = 0; k <= n; k++) {
		struct row *r = &rows[k];
		char line[1024];
		snprintf(line, sizeof(line), "%-*s  %-*s  %*s  %*s  %*s  %-*s  %s", w[0], r->name, w[1],
			 r->state, w[2], r->pid, w[3], r->uptime, w[4], r->restarts, w[5], r->exit,
			 r->info);
		size_t l = strlen(line);
		while (l && line[l - 1] == ' ')
			line[--l] = '\0';
		puts(line);
	}
	free(rows);
}

/* "web: running, pid 42" for each service of an answer */
static void print_services(const cJSON *resp)
{
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(resp, "services")) {
		const char *name = jstr(s, "name"), *state = jstr(s, "state");
		char info[300], ex[32];
		double pid = jnum(s, "pid", 0);
		info_text(s, info, sizeof(info));
		last_exit(s, ex, sizeof(ex));
		printf("%s: %s", name ? name : "?", state ? state : "?");
		if (pid > 0)
			printf(", pid %.0f", pid);
		if (state && (!strcmp(state, "exited") || !strcmp(state, "fatal")) && strcmp(ex, "-"))
			printf(", last exit: %s", ex);
		if (*info)
			printf(" (%s)", info);
		putchar('\n');
	}
}

static void print_names(const char *label, const cJSON *arr)
{
	const cJSON *it;
	if (!cJSON_GetArraySize(arr))
		return;
	printf("%s:", label);
	cJSON_ArrayForEach(it, arr)
		if (cJSON_IsString(it))
			printf(" %s", it->valuestring);
	putchar('\n');
}

/* ----------------------------------------------------------- answers */

int show_status(const cJSON *resp)
{
	print_table(cJSON_GetObjectItemCaseSensitive(resp, "services"));
	return 0;
}

/*
 * The last health check of each service that has one, below the table of
 * `status NAME`:
 *   web: health check: unhealthy, 3 failures in a row; last: exit 1, 12 ms, at TIME
 *     <its output, indented>
 * (a probe: "health check (http http://127.0.0.1:8080/healthz): ...").
 */
void show_health_checks(const cJSON *resp)
{
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(resp, "services")) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(s, "health_check");
		if (!cJSON_IsObject(c))
			continue;
		const char *name = jstr(s, "name"), *health = jstr(s, "health");
		double streak = jnum(c, "failing_streak", 0);
		const char *kind = jstr(c, "kind"), *target = jstr(c, "target");
		bool probe = kind && target && strcmp(kind, "cmd");
		printf("%s: health check%s%s%s%s%s: %s, %.0f failure%s in a row", name ? name : "?",
		       probe ? " (" : "", probe ? kind : "", probe ? " " : "", probe ? target : "",
		       probe ? ")" : "", health ? health : "not running", streak, streak == 1 ? "" : "s");
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(c, "last");
		if (!cJSON_IsObject(l)) {
			printf("; not run yet\n");
			continue;
		}
		const char *t = jstr(l, "time"), *out = jstr(l, "output");
		double code = jnum(l, "exit_code", -1);
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "timed_out")))
			printf("; last: timed out");
		else if (code >= 0)
			printf("; last: exit %.0f", code);
		else
			printf("; last: failed");
		printf(", %.0f ms%s%s%s\n", jnum(l, "duration_ms", 0), t ? ", at " : "", t ? t : "",
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "output_truncated"))
			       ? " (output truncated)" : "");
		/* one line each: its newlines arrive escaped, as \n, its backslashes as \\ (safe.h) */
		for (const char *p = out; p && *p;) {
			size_t n = 0, cr = SIZE_MAX; /* cr: where a \r escape ends the line (HTTP's CRLF) */
			bool nl = false;
			while (p[n] && !nl) {
				if (p[n] != '\\' || !p[n + 1]) {
					n++;
					continue;
				}
				nl = p[n + 1] == 'n';
				if (!nl) {
					cr = p[n + 1] == 'r' ? n : SIZE_MAX;
					n += 2;
				}
			}
			printf("    %.*s\n", (int)(cr != SIZE_MAX && cr + 2 == n ? cr : n), p);
			p += n + (nl ? 2 : 0);
		}
	}
}

int show_services(const cJSON *resp)
{
	print_services(resp);
	return 0;
}

int show_reload(const cJSON *resp)
{
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")))
		return 0;
	print_names("added", cJSON_GetObjectItemCaseSensitive(resp, "added"));
	print_names("removed", cJSON_GetObjectItemCaseSensitive(resp, "removed"));
	print_names("changed", cJSON_GetObjectItemCaseSensitive(resp, "changed"));
	print_names("updated", cJSON_GetObjectItemCaseSensitive(resp, "updated"));
	printf("unchanged: %.0f\n", jnum(resp, "unchanged", 0));
	const cJSON *w, *ws = cJSON_GetObjectItemCaseSensitive(resp, "warnings");
	cJSON_ArrayForEach(w, ws)
		if (cJSON_IsString(w))
			fprintf(stderr, "evmon ctl: reload: warning: %s\n", w->valuestring);
	return 0;
}

int show_signal(const cJSON *resp)
{
	print_names("signaled", cJSON_GetObjectItemCaseSensitive(resp, "signaled"));
	return 0;
}

int show_removed(const cJSON *resp)
{
	print_names("removed", cJSON_GetObjectItemCaseSensitive(resp, "removed"));
	return 0;
}

int show_ping(const cJSON *resp)
{
	const char *v = jstr(resp, "version"), *cfg = jstr(resp, "config");
	const char *m = jstr(resp, "metrics");
	printf("evmon daemon %s, pid %.0f, %.0f services, config %s%s%s%s\n", v ? v : "?",
	       jnum(resp, "pid", 0), jnum(resp, "services", 0), cfg ? cfg : "?",
	       m ? ", metrics on http://" : "", m ? m : "", m ? "/metrics" : "");
	return 0;
}

int show_reexec(const cJSON *resp)
{
	const char *v = jstr(resp, "version");
	printf("re-executed: evmon daemon %s, pid %.0f, %.0f of %.0f services kept running\n",
	       v ? v : "?", jnum(resp, "pid", 0), jnum(resp, "kept", 0), jnum(resp, "services", 0));
	return 0;
}

int show_metrics(const cJSON *resp)
{
	const cJSON *lines = cJSON_GetObjectItemCaseSensitive(resp, "lines"), *l;
	if (!cJSON_IsArray(lines))
		return 1;
	cJSON_ArrayForEach(l, lines)
		if (cJSON_IsString(l))
			printf("%s\n", l->valuestring);
	return 0;
}

int show_reopened(const cJSON *resp)
{
	const char *dir = jstr(resp, "log_dir");
	if (dir)
		printf("closed %.0f open log files; they are created again in %s at the next write\n",
		       jnum(resp, "closed", 0), dir);
	else
		printf("no log_dir: nothing to reopen\n");
	return 0;
}

/* Did the daemon act at all? An answer that only refuses has none of these. */
static bool acted(const cJSON *resp)
{
	static const char *const payload[] = {"services", "signaled", "removed", "added", "changed"};
	for (size_t i = 0; i < sizeof(payload) / sizeof(payload[0]); i++)
		if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(resp, payload[i])))
			return true;
	return false;
}

int show_failure(const cJSON *resp, show_fn show)
{
	if (show && acted(resp))
		show(resp);
	return print_errors(resp);
}
