/*
 * confkeys.c - the keys of the daemon's configuration (see confkeys.h).
 *
 * A key is a row of one table: its name, the sections it may be in, the
 * field it sets (an offset in the policy, the service or the config), the
 * setter that reads its value, and a line of what it means (evmon.ini(5)
 * says it in full). The setters live in confset*.c, grouped by what the
 * keys are about (confset.h); a setter reads its value with a grammar of
 * confvalue.c and says what is wrong with it. Applying a section is a walk
 * over its keys; a mistake is collected with its file:line and the walk
 * goes on. The checks of a whole service (the program exists, the user is
 * known, ...) come after, in confcheck.c.
 */
#include "confset.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INSTANCES 100000

/* ------------------------------------------------- messages, paths */

void conf_bad(struct conf_ctx *c, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	errlist_add(c->errs, c->file, c->line, "%s: %s", c->key, msg);
}

char *conf_abs_path(const char *base, const char *p)
{
	char *out = NULL;
	if (p[0] == '/' || !base)
		return strdup(p);
	return asprintf(&out, "%s/%s", base, p) < 0 ? NULL : out;
}

/* ---------------------------------------------------------- the table */

#define POL(f) IN_POLICY, offsetof(struct svc_policy, f)
#define SVC(f) IN_SERVICE, offsetof(struct svc_conf, f)
#define CFG(f) IN_CONFIG, offsetof(struct config, f)

/* Every key, by the section it may be in; evmon.ini(5) documents each. */
static const struct keydef keys[CK_COUNT] = {
	[CK_RESTART] = {"restart", S_BOTH, POL(restart), conf_set_restart, 0, 0,
			"on-failure[:N], always, never, unless-stopped"},
	[CK_EXIT_CODES] = {"exit_codes", S_BOTH, POL(codes), conf_set_codes, 0, 0,
			   "the exit codes that are a success"},
	[CK_START_SECS] = {"start_secs", S_BOTH, POL(start_ms), conf_set_duration, 0, EVM_SVC_START_MS,
			   "up this long: started"},
	[CK_START_RETRIES] = {"start_retries", S_BOTH, POL(start_retries), conf_set_count, 1000000,
			      EVM_SVC_START_RETRIES, "failed starts in a row before fatal"},
	[CK_BACKOFF_INITIAL] = {"backoff_initial", S_BOTH, POL(backoff_initial_ms), conf_set_duration, 0,
				EVM_SVC_BACKOFF_INITIAL, "the first restart delay"},
	[CK_BACKOFF_MAX] = {"backoff_max", S_BOTH, POL(backoff_max_ms), conf_set_duration, 0,
			    EVM_SVC_BACKOFF_MAX, "the longest restart delay"},
	[CK_BACKOFF_JITTER] = {"backoff_jitter", S_BOTH, POL(backoff_jitter), conf_set_count, 100, 0,
			       "percent of random delay added"},
	[CK_STABLE_SECS] = {"stable_secs", S_BOTH, POL(stable_ms), conf_set_duration, 0, EVM_SVC_STABLE_MS,
			    "a run this long resets the backoff"},
	[CK_MAX_RETRIES] = {"max_retries", S_BOTH, POL(max_retries), conf_set_count, UINT_MAX,
			    EVM_SVC_MAX_RETRIES, "failures in a row before fatal"},
	[CK_STOP_SIGNAL] = {"stop_signal", S_BOTH, POL(stop_signal), conf_set_signal, 0, 0,
			    "the signal that stops it"},
	[CK_RELOAD_SIGNAL] = {"reload_signal", S_BOTH, POL(reload_signal), conf_set_signal, 0, 0,
			      "the signal ctl reload NAME sends (default HUP)"},
	[CK_STOP_TIMEOUT] = {"stop_timeout", S_BOTH, POL(stop_timeout_ms), conf_set_duration, 0,
			     EVM_SVC_STOP_TIMEOUT, "stop_signal to SIGKILL"},
	[CK_KILL_GROUP] = {"kill_group", S_BOTH, POL(kill_mode), conf_set_kill_group, 0, 0,
			   "true: kill_mode = group, false: process"},
	[CK_KILL_MODE] = {"kill_mode", S_BOTH, POL(kill_mode), conf_set_kill_mode, 0, 0,
			  "what a stop ends: process, group, tree"},
	[CK_TRACK] = {"track", S_BOTH, POL(track), conf_set_track, 0, 0,
		      "what the service's life is: main (process), tree (its cgroup)"},
	[CK_PIDFILE] = {"pidfile", S_SERVICE, SVC(pidfile), conf_set_path, 0, 0,
			"a forking daemon's pid file: its pid is the main process"},
	[CK_AUTOSTART] = {"autostart", S_BOTH, POL(autostart), conf_set_bool, 0, 0,
			  "start with the daemon"},
	[CK_ADOPT] = {"adopt", S_BOTH, POL(adopt), conf_set_bool, 0, 0,
		      "after a crash of the daemon, take its process over (else kill it)"},
	[CK_UMASK] = {"umask", S_BOTH, POL(umask), conf_set_umask, 0, 0, "octal file mode mask"},
	[CK_STDOUT] = {"stdout", S_BOTH, POL(out[0]), conf_set_output, 0, 0, "inherit, null, log, console"},
	[CK_STDERR] = {"stderr", S_BOTH, POL(out[1]), conf_set_output, 1, 0,
		       "inherit, null, log, console, stdout"},
	[CK_LOG_MAX_BYTES] = {"log_max_bytes", S_BOTH, POL(log_max_bytes), conf_set_log_size,
			      CONF_LOG_MIN_BYTES, 0,
			      "rotate the log beyond this size"},
	[CK_LOG_BACKUPS] = {"log_backups", S_BOTH, POL(log_backups), conf_set_count, 1000, 0,
			    "rotated logs kept"},
	[CK_LOG_TIMESTAMPS] = {"log_timestamps", S_BOTH, POL(log_timestamps), conf_set_bool, 0, 0,
			       "prefix each log line with its time"},
	[CK_COMMAND] = {"command", S_SERVICE, SVC(argv), conf_set_command, 0, 0,
			"what to run, split like sh"},
	[CK_ENVIRONMENT] = {"environment", S_SERVICE, SVC(env), conf_set_environment, 0, 0,
			    "KEY=VALUE words"},
	[CK_DIRECTORY] = {"directory", S_SERVICE, SVC(directory), conf_set_path, 0, 0,
			  "working directory"},
	[CK_USER] = {"user", S_SERVICE, SVC(user), conf_set_name, 0, 0, "run as this user"},
	[CK_GROUP] = {"group", S_SERVICE, SVC(group), conf_set_name, 0, 0, "run as this group"},
	[CK_INSTANCES] = {"instances", S_SERVICE, SVC(instances), conf_set_positive, MAX_INSTANCES, 0,
			  "copies NAME:0 .. NAME:N-1"},
	[CK_REQUIRES] = {"requires", S_SERVICE, SVC(requires), conf_set_deps, 0, 0,
			 "start these first, once they are ready (NAME or NAME:ready)"},
	[CK_AFTER] = {"after", S_SERVICE, SVC(after), conf_set_deps, 1, 0,
		      "start after these when they start too (ordering only)"},
	[CK_ESSENTIAL] = {"essential", S_SERVICE, SVC(essential), conf_set_essential, 0, 0,
			  "its end stops every service and the daemon, with its exit code"},
	[CK_ENV_FILE] = {"env_file", S_SERVICE, SVC(env_files), conf_set_words, 0, 0,
			 "KEY=VALUE lines (systemd's EnvironmentFile=); -PATH: may be missing"},
	[CK_NICE] = {"nice", S_SERVICE, SVC(nice), conf_set_adjust, 0, 0, "its nice value, -20..19"},
	[CK_OOM_SCORE_ADJ] = {"oom_score_adj", S_SERVICE, SVC(oom_score_adj), conf_set_adjust, 1, 0,
			      "its OOM killer adjustment, -1000..1000"},
	[CK_RLIMIT] = {"limit_*", S_SERVICE, SVC(rlimits), conf_set_rlimit, 0, 0,
		      "a resource limit (limit_nofile, limit_core, ...)"},
	[CK_READY] = {"ready", S_SERVICE, SVC(ready), conf_set_ready, 0, 0,
		      "when it is ready: started, notify, fd:N, exec:COMMAND"},
	[CK_READY_TIMEOUT] = {"ready_timeout", S_SERVICE, SVC(ready_timeout_ms), conf_set_duration, 0, 0,
			      "not ready by then: a failed start (0: no limit)"},
	[CK_READY_INTERVAL] = {"ready_interval", S_SERVICE, SVC(ready_interval_ms), conf_set_duration, 0,
			       0, "exec: between two checks"},
	[CK_READY_CHECK_TIMEOUT] = {"ready_check_timeout", S_SERVICE, SVC(ready_check_timeout_ms),
				    conf_set_duration, 0, 0, "exec: a check running longer is killed"},
	[CK_WATCHDOG_SEC] = {"watchdog_sec", S_SERVICE, SVC(watchdog_ms), conf_set_duration, 0, 0,
			     "notify: WATCHDOG=1 at least this often, or it is restarted"},
	[CK_SOCKET] = {"socket", S_EVMON, CFG(socket), conf_set_path, 0, 0, "the control socket"},
	[CK_LOG_DIR] = {"log_dir", S_EVMON, CFG(log_dir), conf_set_path, 0, 0,
			"where stdout/stderr = log go"},
	[CK_MAX_CLIENTS] = {"max_clients", S_EVMON, CFG(max_clients), conf_set_positive, 100000, 0,
			    "control connections at once"},
	[CK_CLIENT_BUFFER] = {"client_buffer", S_EVMON, CFG(client_buffer), conf_set_buffer_size, 4096, 0,
			      "unread events before a client is dropped"},
	[CK_IDLE_TIMEOUT] = {"idle_timeout", S_EVMON, CFG(idle_timeout_ms), conf_set_duration, 0, 0,
			     "close a connection with no request for this long"},
	[CK_EVENTS_BUFFER_TOTAL] = {"events_buffer_total", S_EVMON, CFG(events_buffer_total),
				    conf_set_buffer_size, 4096, 0,
				    "unread output of all clients before the slowest reader is dropped"},
	[CK_CGROUP] = {"cgroup", S_EVMON, CFG(cgroup), conf_set_cgroup_mode, 0, 0,
		       "a cgroup v2 per service: auto, yes, no"},
	[CK_METRICS_LISTEN] = {"metrics_listen", S_EVMON, CFG(metrics_listen), conf_set_listen, 0, 0,
			       "serve Prometheus metrics over HTTP on ADDR:PORT"},
	[CK_SHUTDOWN_TIMEOUT] = {"shutdown_timeout", S_EVMON, CFG(shutdown_timeout_ms), conf_set_duration, 0, 0,
				 "the whole shutdown: then SIGKILL to every service left"},
	[CK_CONSOLE_PREFIX] = {"console_prefix", S_EVMON, CFG(console_prefix), conf_set_prefix, 0, 0,
			       "before each console line; {name} is the service"},
	[CK_HEALTH_CMD] = {"health_cmd", S_SERVICE, SVC(health.argv), conf_set_command, 0, 0,
			   "the health check, split like command; exit 0: healthy"},
	[CK_HEALTH_TCP] = {"health_tcp", S_SERVICE, SVC(health.probe), conf_set_health_probe, PROBE_TCP, 0,
			   "a check in the daemon: HOST:PORT accepts a connection"},
	[CK_HEALTH_HTTP] = {"health_http", S_SERVICE, SVC(health.probe), conf_set_health_probe, PROBE_HTTP,
			    0, "a check in the daemon: GET http://HOST:PORT/PATH says 2xx or 3xx"},
	[CK_HEALTH_INTERVAL] = {"health_interval", S_SERVICE, SVC(health.interval_ms), conf_set_period, 0, 0,
				"from the end of a check to the next (30s)"},
	[CK_HEALTH_TIMEOUT] = {"health_timeout", S_SERVICE, SVC(health.timeout_ms), conf_set_period, 0, 0,
			       "a check running longer is killed and fails (30s)"},
	[CK_HEALTH_RETRIES] = {"health_retries", S_SERVICE, SVC(health.retries), conf_set_positive, 1000000,
			       0, "failures in a row that make it unhealthy (3)"},
	[CK_HEALTH_START_PERIOD] = {"health_start_period", S_SERVICE, SVC(health.start_period_ms),
				    conf_set_duration, 0, 0,
				    "failures this long after the start do not count (0)"},
	[CK_HEALTH_START_INTERVAL] = {"health_start_interval", S_SERVICE, SVC(health.start_interval_ms),
				      conf_set_period, 0, 0,
				      "between checks while starting, in the start period (5s)"},
	[CK_HEALTH_ACTION] = {"health_action", S_SERVICE, SVC(health.action), conf_set_health_action, 0, 0,
			      "when unhealthy: none, restart, stop"},
#define LIMIT(ck, name, l, doc) [ck] = {name, S_SERVICE, SVC(limits[l]), conf_set_limit, l, 0, doc}
	LIMIT(CK_MEMORY_MAX, "memory_max", EVM_CGROUP_MEMORY_MAX, "cgroup memory.max"),
	LIMIT(CK_MEMORY_HIGH, "memory_high", EVM_CGROUP_MEMORY_HIGH, "cgroup memory.high"),
	LIMIT(CK_PIDS_MAX, "pids_max", EVM_CGROUP_PIDS_MAX, "cgroup pids.max"),
	LIMIT(CK_CPU_WEIGHT, "cpu_weight", EVM_CGROUP_CPU_WEIGHT, "cgroup cpu.weight"),
	LIMIT(CK_CPU_MAX, "cpu_max", EVM_CGROUP_CPU_MAX, "cgroup cpu.max"),
	LIMIT(CK_IO_WEIGHT, "io_weight", EVM_CGROUP_IO_WEIGHT, "cgroup io.weight"),
};

const char *conf_key_name(enum conf_key k)
{
	return (unsigned)k < CK_COUNT ? keys[k].name : NULL;
}

static int key_index(const char *name);

bool conf_is_key(const char *name, size_t len)
{
	char k[64];
	if (len == 0 || len >= sizeof(k))
		return false;
	memcpy(k, name, len);
	k[len] = '\0';
	return !strcmp(k, "include") || key_index(k) >= 0;
}

/* --------------------------------------------------- applying a section */

/* A family ("limit_*") takes every key with its prefix; its setter knows the rest. */
static bool is_family(int idx)
{
	return idx >= 0 && keys[idx].name[strlen(keys[idx].name) - 1] == '*';
}

static int key_index(const char *name)
{
	for (int i = 0; i < CK_COUNT; i++)
		if (!strcmp(keys[i].name, name) ||
		    (is_family(i) && !strncmp(keys[i].name, name, strlen(keys[i].name) - 1)))
			return i;
	return -1;
}

static void *key_field(struct conf_ctx *c, const struct keydef *k)
{
	char *base = k->where == IN_POLICY    ? (char *)c->pol
		     : k->where == IN_SERVICE ? (char *)c->svc
					      : (char *)c->cfg;
	return base + k->off;
}

/* Was this key given before in the section? Says so, with the line of the first. */
static bool repeated(struct conf_ctx *c, int idx, const struct conf_pair *kv, size_t i)
{
	int first = -1;
	if (idx >= 0 && !is_family(idx) && c->seen[idx]) {
		first = c->line_of[idx];
	} else if (idx < 0 || is_family(idx)) {
		/* unknown keys and families are rare: look back */
		for (size_t j = 0; j < i && first < 0; j++)
			if (!strcmp(kv[j].key, kv[i].key))
				first = kv[j].line;
	}
	if (first < 0)
		return false;
	if (kv[i].line)
		errlist_add(c->errs, c->file, kv[i].line, "duplicate key '%s' (first set on line %d)",
			    kv[i].key, first);
	else /* a second command would leak the first: reported, not applied */
		errlist_add(c->errs, c->file, 0, "duplicate key '%s'", kv[i].key);
	return true;
}

/* restart = on-failure:N sets max_retries: both in one section, one would silently win */
static void retries_twice(struct conf_ctx *c, const struct conf_pair *kv, size_t n)
{
	if (!c->seen[CK_RESTART] || !c->seen[CK_MAX_RETRIES])
		return;
	for (size_t i = 0; i < n; i++)
		if (kv[i].line == c->line_of[CK_RESTART] && !strcmp(kv[i].key, "restart") &&
		    !strncmp(kv[i].value, "on-failure:", 11))
			errlist_add(c->errs, c->file, c->line_of[CK_MAX_RETRIES],
				    "max_retries: the section's restart = %s (line %d) sets it already",
				    kv[i].value, kv[i].line);
}

void conf_apply(struct conf_ctx *c, const struct conf_pair *kv, size_t n)
{
	memset(c->seen, 0, sizeof(c->seen));
	memset(c->line_of, 0, sizeof(c->line_of));
	enum scope here = c->svc ? S_SERVICE : S_EVMON;
	for (size_t i = 0; i < n; i++) {
		int idx = key_index(kv[i].key);
		if (repeated(c, idx, kv, i))
			continue;
		c->line = kv[i].line;
		c->key = kv[i].key;
		if (idx < 0) {
			errlist_add(c->errs, c->file, c->line, "unknown key '%s'", c->key);
			continue;
		}
		c->seen[idx] = true;
		c->line_of[idx] = c->line;
		const struct keydef *k = &keys[idx];
		if (!(k->scope & here))
			errlist_add(c->errs, c->file, c->line, here == S_SERVICE
				    ? "%s: only allowed in [evmon]"
				    : "%s: only allowed in a [service:NAME] section", c->key);
		else
			k->set(c, k, kv[i].value, key_field(c, k));
	}
	retries_twice(c, kv, n);
}

/* -------------------------------------------------------------- services */

bool config_valid_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 128)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_.@-", *p))
			return false;
	return true;
}

const char *config_reserved_name(const char *name)
{
	size_t n = strlen(name);
	/* cgroups.c names cgroup.X's cgroup _cgroup.X.service (cgroupfs owns cgroup.*) */
	if (!strncmp(name, "_cgroup.", 8))
		return "_cgroup.X.service is the cgroup of service cgroup.X";
	/* output.c: NAME.err.log is NAME's stderr kept apart */
	if (n > 4 && !strcmp(name + n - 4, ".err"))
		return "NAME.err.log is the stderr log of service NAME";
	return NULL;
}

void conf_default_policy(struct svc_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->autostart = true;
	p->adopt = true;
	p->log_max_bytes = 10u << 20;
	p->log_backups = 5;
}

struct svc_conf *conf_service_new(const char *name, const struct svc_policy *defaults, int line)
{
	struct svc_conf *s = calloc(1, sizeof(*s));
	if (!s || !(s->name = strdup(name))) {
		free(s);
		return NULL;
	}
	s->refs = 1;
	s->line = line;
	s->instances = 1;
	s->pol = *defaults;
	s->health.interval_ms = HEALTH_DEFAULT_INTERVAL_MS;
	s->health.timeout_ms = HEALTH_DEFAULT_TIMEOUT_MS;
	s->health.retries = HEALTH_DEFAULT_RETRIES;
	s->ready_timeout_ms = READY_TIMEOUT_DEFAULT_MS;
	s->ready_interval_ms = READY_INTERVAL_DEFAULT_MS;
	s->ready_check_timeout_ms = READY_CHECK_TIMEOUT_DEFAULT_MS;
	return s;
}
