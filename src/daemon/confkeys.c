/*
 * confkeys.c - the keys of the daemon's configuration (see confkeys.h).
 *
 * A key is a row of one table: its name, the sections it may be in, the
 * field it sets (an offset in the policy, the service or the config), the
 * setter that reads its value, and a line of what it means (evmon.ini(5)
 * says it in full). A setter reads its value with a grammar of
 * confvalue.c and says what is wrong with it. Applying a section is a walk
 * over its keys; a mistake is collected with its file:line and the walk
 * goes on. The checks of a whole service (the program exists, the user is
 * known, ...) come after, in confcheck.c.
 */
#include "confkeys.h"
#include "confvalue.h"

#include "argv.h"
#include "cli.h"
#include "duration.h"
#include "listenaddr.h"

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

/* ------------------------------------- setters: one per kind of value */

/* Which struct a key's field is in. */
enum where { IN_POLICY, IN_SERVICE, IN_CONFIG };
enum scope { S_SERVICE = 1, S_EVMON = 2, S_BOTH = 3 };

struct keydef;
typedef void (*key_setter)(struct conf_ctx *c, const struct keydef *k, const char *v, void *field);

struct keydef {
	const char *name;
	enum scope scope;
	enum where where;
	size_t off;	    /* of the field in its struct */
	key_setter set;
	unsigned long arg;  /* the setter's: a maximum, or which stream */
	unsigned flag;	    /* EVM_SVC_* that says the policy field is set */
	const char *doc;
};

static void set_duration(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	uint64_t ms = 0;
	if (cli_parse_duration(v, &ms) < 0)
		conf_bad(c, "'%s' is not a duration (seconds, or a number with ms, s, m or h)", v);
	*(uint64_t *)field = ms;
	c->pol->set |= k->flag;
}

static void set_count(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	unsigned long n = 0;
	if (!conf_parse_uint(v, k->arg, &n))
		conf_bad(c, "'%s' is not a whole number from 0 to %lu", v, k->arg);
	*(unsigned *)field = (unsigned)n;
	c->pol->set |= k->flag;
}

/* A count from 1: an invalid value leaves the field as it was. */
static void set_positive(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	unsigned long n = 0;
	if (!conf_parse_uint(v, k->arg, &n) || n == 0)
		conf_bad(c, "'%s' is not a number from 1 to %lu", v, k->arg);
	else
		*(unsigned *)field = (unsigned)n;
}

static void set_bool(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_bool(v, field))
		conf_bad(c, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
}

/* kill_group, the older spelling: true is kill_mode = group, false process */
static void set_kill_group(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	bool b;
	if (!conf_parse_bool(v, &b))
		conf_bad(c, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
	else
		*(enum evm_kill_mode *)field = b ? EVM_KILL_GROUP : EVM_KILL_PROCESS;
}

static void set_kill_mode(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	static const char *const names[] = {[EVM_KILL_PROCESS] = "process",
					    [EVM_KILL_GROUP] = "group", [EVM_KILL_TREE] = "tree"};
	for (int i = EVM_KILL_PROCESS; i <= EVM_KILL_TREE; i++) {
		if (!strcmp(v, names[i])) {
			*(enum evm_kill_mode *)field = (enum evm_kill_mode)i;
			return;
		}
	}
	conf_bad(c, "'%s' is not one of process, group, tree", v);
}

static void set_restart(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	(void)field; /* on-failure:N sets max_retries too */
	if (!conf_parse_restart(v, c->pol))
		conf_bad(c, "'%s' is not one of on-failure, on-failure:N, always, never, unless-stopped", v);
}

static void set_codes(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_codes(v, field))
		conf_bad(c, "'%s' is not a list of exit codes 0-255 (e.g. 0,2)", v);
	c->pol->codes_set = true;
}

static void set_signal(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	int sig = cli_parse_signal(v, false);
	if (sig < 0)
		conf_bad(c, "'%s' is not a signal", v);
	*(int *)field = sig < 0 ? 0 : sig;
}

static void set_umask(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_umask(v, field))
		conf_bad(c, "'%s' is not an octal umask (e.g. 022)", v);
	c->pol->set_umask = true;
}

static void set_output(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	bool is_err = k->arg;
	if (!conf_parse_output(v, is_err, field))
		conf_bad(c, "'%s' is not one of inherit, null, log, console%s", v, is_err ? ", stdout" : "");
}

static void set_log_size(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	size_t n = 0;
	if (!conf_parse_size(v, &n))
		conf_bad(c, "'%s' is not a size (bytes, or with k, M, G; 0: never rotate)", v);
	*(uint64_t *)field = n;
}

static void set_buffer_size(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	size_t *n = field;
	if (!conf_parse_size(v, n) || *n < k->arg)
		conf_bad(c, "'%s' is not a size of at least %luk (bytes, or with k, M, G)", v, k->arg >> 10);
}

static void set_command(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char ***argv = field;
	const char *err = NULL;
	int n = cli_split(v, argv, &err);
	if (n < 0) {
		conf_bad(c, "%s", err);
	} else if (n == 0) {
		/* no argv[0] to check or run: as if there were no command */
		conf_bad(c, "empty command");
		free(*argv);
		*argv = NULL;
	}
}

static void set_environment(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char ***env = field;
	const char *err = NULL;
	int n = cli_split(v, env, &err);
	if (n < 0)
		conf_bad(c, "%s", err);
	for (int i = 0; i < n; i++) {
		const char *eq = strchr((*env)[i], '=');
		if (!eq || eq == (*env)[i])
			conf_bad(c, "'%s' is not KEY=VALUE", (*env)[i]);
	}
	if (n == 0) {
		free(*env);
		*env = NULL;
	}
}

/* requires/after: service names, split like a command; the line is kept for later checks. */
static void set_deps(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	char ***words = field;
	const char *err = NULL;
	int n = cli_split(v, words, &err);
	if (n < 0)
		conf_bad(c, "%s", err);
	if (n == 0) {
		free(*words);
		*words = NULL;
	}
	c->svc->dep_line[k->arg] = c->line;
}

/* essential = true (when it fails for good) | exit (whenever it exits) | false */
static void set_essential(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	bool b;
	if (!strcmp(v, "exit"))
		*(enum essential *)field = ESS_EXIT;
	else if (conf_parse_bool(v, &b))
		*(enum essential *)field = b ? ESS_FAIL : ESS_NO;
	else
		conf_bad(c, "'%s' is not true, false or exit", v);
}

/* A duration above 0 (an interval of 0 would run checks back to back). */
static void set_period(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	uint64_t ms = 0;
	if (cli_parse_duration(v, &ms) < 0 || ms == 0)
		conf_bad(c, "'%s' is not a duration above 0 (seconds, or a number with ms, s, m or h)", v);
	else
		*(uint64_t *)field = ms;
}

/* health_action = none | restart | stop */
static void set_health_action(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	static const char *const words[] = {"none", "restart", "stop"};
	(void)k;
	for (int i = 0; i < 3; i++)
		if (!strcmp(v, words[i])) {
			*(enum health_action *)field = (enum health_action)i;
			return;
		}
	conf_bad(c, "'%s' is not none, restart or stop", v);
}

/* ready = started | notify | fd:N | exec:COMMAND */
static void set_ready(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	struct svc_conf *s = c->svc;
	unsigned long n = 0;
	free(s->ready_check);
	s->ready_check = NULL;
	if (!strcmp(v, "started")) {
		s->ready = READY_STARTED;
	} else if (!strcmp(v, "notify")) {
		s->ready = READY_NOTIFY;
	} else if (!strncmp(v, "fd:", 3)) {
		s->ready = READY_FD;
		if (!conf_parse_uint(v + 3, 1023, &n) || n < 3)
			conf_bad(c, "fd:%s: the notification fd is a number from 3 to 1023", v + 3);
		s->ready_fd = (int)n;
	} else if (!strncmp(v, "exec:", 5)) {
		const char *err = NULL;
		s->ready = READY_EXEC;
		int w = cli_split(v + 5, &s->ready_check, &err);
		if (w < 0)
			conf_bad(c, "exec: %s", err);
		else if (w == 0)
			conf_bad(c, "exec: needs a command");
		if (w <= 0) {
			free(s->ready_check);
			s->ready_check = NULL;
		}
	} else {
		conf_bad(c, "'%s' is not started, notify, fd:N or exec:COMMAND", v);
	}
	(void)field;
}

/* A path, relative to the config file's directory. */
static void set_path(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char **p = field;
	free(*p);
	*p = conf_abs_path(c->base, v);
}

/* Text; in double quotes to keep spaces at its ends ("{name} | "). */
static void set_prefix(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char **p = field;
	size_t n = strlen(v);
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	if (n > OUT_PREFIX_MAX) {
		conf_bad(c, "longer than %d bytes", OUT_PREFIX_MAX);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
			conf_bad(c, "control characters are not allowed");
			return;
		}
	free(*p);
	*p = strndup(v, n);
}

/* ADDR:PORT, checked now: the daemon binds it at start. */
static void set_listen(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char **p = field, err[200];
	struct sockaddr_storage ss;
	socklen_t len;
	if (listen_addr_parse(v, &ss, &len, err, sizeof(err)) < 0) {
		conf_bad(c, "%s", err);
		return;
	}
	free(*p);
	*p = strdup(v);
}

/* A name, resolved when the service is checked. */
static void set_name(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)c;
	(void)k;
	char **p = field;
	free(*p);
	*p = strdup(v);
}

static void set_cgroup_mode(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_cgroup_mode(v, field))
		conf_bad(c, "'%s' is not one of auto, yes, no", v);
}

/* A cgroup limit (arg: enum evm_cgroup_limit), kept as written: the kernel's syntax. */
static void set_limit(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	char **p = field;
	const char *what;
	bool ok = conf_parse_cgroup_limit(v, (unsigned)k->arg, &what);
	if (!ok)
		conf_bad(c, "'%s' is not %s", v, what);
	free(*p);
	*p = ok ? strdup(v) : NULL;
}

/* env_file = PATH...: words (quoted like environment), read when the service is checked */
static void set_words(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char ***words = field;
	const char *err = NULL;
	if (cli_split(v, words, &err) < 0)
		conf_bad(c, "%s", err);
	else if (!**words)
		conf_bad(c, "no file named");
}

/* nice = -20..19, oom_score_adj = -1000..1000 (arg: which) */
static void set_adjust(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	int lo = k->arg ? -1000 : -20, hi = k->arg ? 1000 : 19;
	if (!conf_parse_int(v, lo, hi, field)) {
		conf_bad(c, "'%s' is not a number from %d to %d", v, lo, hi);
		return;
	}
	*(k->arg ? &c->svc->set_oom : &c->svc->set_nice) = true;
}

/* limit_RESOURCE = N | SOFT:HARD (a number, with k, M or G, or infinity): systemd's LimitRESOURCE= */
static void set_rlimit(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	(void)field;
	int resource = conf_rlimit_resource(c->key + 6);
	if (resource < 0) {
		errlist_add(c->errs, c->file, c->line,
			    "unknown key '%s' (limit_ is followed by one of " CONF_RLIMIT_NAMES ")", c->key);
		return;
	}
	struct rlimit rl;
	if (!conf_parse_rlimit(v, &rl)) {
		conf_bad(c, "'%s' is not a limit (N or SOFT:HARD, SOFT <= HARD: numbers with k, M or G, "
			 "or infinity)", v);
		return;
	}
	struct svc_conf *s = c->svc;
	struct evm_rlimit *a = realloc(s->rlimits, (s->nrlimits + 1) * sizeof(*a));
	if (!a) {
		conf_bad(c, "out of memory");
		return;
	}
	s->rlimits = a;
	memset(&a[s->nrlimits], 0, sizeof(*a)); /* compared with memcmp: no stray padding */
	a[s->nrlimits].resource = resource;
	a[s->nrlimits++].limit = rl;
}

/* ---------------------------------------------------------- the table */

#define POL(f) IN_POLICY, offsetof(struct svc_policy, f)
#define SVC(f) IN_SERVICE, offsetof(struct svc_conf, f)
#define CFG(f) IN_CONFIG, offsetof(struct config, f)

/* Every key, by the section it may be in; evmon.ini(5) documents each. */
static const struct keydef keys[CK_COUNT] = {
	[CK_RESTART] = {"restart", S_BOTH, POL(restart), set_restart, 0, 0,
			"on-failure[:N], always, never, unless-stopped"},
	[CK_EXIT_CODES] = {"exit_codes", S_BOTH, POL(codes), set_codes, 0, 0,
			   "the exit codes that are a success"},
	[CK_START_SECS] = {"start_secs", S_BOTH, POL(start_ms), set_duration, 0, EVM_SVC_START_MS,
			   "up this long: started"},
	[CK_START_RETRIES] = {"start_retries", S_BOTH, POL(start_retries), set_count, 1000000,
			      EVM_SVC_START_RETRIES, "failed starts in a row before fatal"},
	[CK_BACKOFF_INITIAL] = {"backoff_initial", S_BOTH, POL(backoff_initial_ms), set_duration, 0,
				EVM_SVC_BACKOFF_INITIAL, "the first restart delay"},
	[CK_BACKOFF_MAX] = {"backoff_max", S_BOTH, POL(backoff_max_ms), set_duration, 0,
			    EVM_SVC_BACKOFF_MAX, "the longest restart delay"},
	[CK_BACKOFF_JITTER] = {"backoff_jitter", S_BOTH, POL(backoff_jitter), set_count, 100, 0,
			       "percent of random delay added"},
	[CK_STABLE_SECS] = {"stable_secs", S_BOTH, POL(stable_ms), set_duration, 0, EVM_SVC_STABLE_MS,
			    "a run this long resets the backoff"},
	[CK_MAX_RETRIES] = {"max_retries", S_BOTH, POL(max_retries), set_count, UINT_MAX,
			    EVM_SVC_MAX_RETRIES, "failures in a row before fatal"},
	[CK_STOP_SIGNAL] = {"stop_signal", S_BOTH, POL(stop_signal), set_signal, 0, 0,
			    "the signal that stops it"},
	[CK_STOP_TIMEOUT] = {"stop_timeout", S_BOTH, POL(stop_timeout_ms), set_duration, 0,
			     EVM_SVC_STOP_TIMEOUT, "stop_signal to SIGKILL"},
	[CK_KILL_GROUP] = {"kill_group", S_BOTH, POL(kill_mode), set_kill_group, 0, 0,
			   "true: kill_mode = group, false: process"},
	[CK_KILL_MODE] = {"kill_mode", S_BOTH, POL(kill_mode), set_kill_mode, 0, 0,
			  "what a stop ends: process, group, tree"},
	[CK_AUTOSTART] = {"autostart", S_BOTH, POL(autostart), set_bool, 0, 0,
			  "start with the daemon"},
	[CK_ADOPT] = {"adopt", S_BOTH, POL(adopt), set_bool, 0, 0,
		      "after a crash of the daemon, take its process over (else kill it)"},
	[CK_UMASK] = {"umask", S_BOTH, POL(umask), set_umask, 0, 0, "octal file mode mask"},
	[CK_STDOUT] = {"stdout", S_BOTH, POL(out[0]), set_output, 0, 0, "inherit, null, log, console"},
	[CK_STDERR] = {"stderr", S_BOTH, POL(out[1]), set_output, 1, 0,
		       "inherit, null, log, console, stdout"},
	[CK_LOG_MAX_BYTES] = {"log_max_bytes", S_BOTH, POL(log_max_bytes), set_log_size, 0, 0,
			      "rotate the log beyond this size"},
	[CK_LOG_BACKUPS] = {"log_backups", S_BOTH, POL(log_backups), set_count, 1000, 0,
			    "rotated logs kept"},
	[CK_LOG_TIMESTAMPS] = {"log_timestamps", S_BOTH, POL(log_timestamps), set_bool, 0, 0,
			       "prefix each log line with its time"},
	[CK_COMMAND] = {"command", S_SERVICE, SVC(argv), set_command, 0, 0,
			"what to run, split like sh"},
	[CK_ENVIRONMENT] = {"environment", S_SERVICE, SVC(env), set_environment, 0, 0,
			    "KEY=VALUE words"},
	[CK_DIRECTORY] = {"directory", S_SERVICE, SVC(directory), set_path, 0, 0,
			  "working directory"},
	[CK_USER] = {"user", S_SERVICE, SVC(user), set_name, 0, 0, "run as this user"},
	[CK_GROUP] = {"group", S_SERVICE, SVC(group), set_name, 0, 0, "run as this group"},
	[CK_INSTANCES] = {"instances", S_SERVICE, SVC(instances), set_positive, MAX_INSTANCES, 0,
			  "copies NAME:0 .. NAME:N-1"},
	[CK_REQUIRES] = {"requires", S_SERVICE, SVC(requires), set_deps, 0, 0,
			 "start these first, once they are ready (NAME or NAME:ready)"},
	[CK_AFTER] = {"after", S_SERVICE, SVC(after), set_deps, 1, 0,
		      "start after these when they start too (ordering only)"},
	[CK_ESSENTIAL] = {"essential", S_SERVICE, SVC(essential), set_essential, 0, 0,
			  "its end stops every service and the daemon, with its exit code"},
	[CK_ENV_FILE] = {"env_file", S_SERVICE, SVC(env_files), set_words, 0, 0,
			 "KEY=VALUE lines (systemd's EnvironmentFile=); -PATH: may be missing"},
	[CK_NICE] = {"nice", S_SERVICE, SVC(nice), set_adjust, 0, 0, "its nice value, -20..19"},
	[CK_OOM_SCORE_ADJ] = {"oom_score_adj", S_SERVICE, SVC(oom_score_adj), set_adjust, 1, 0,
			      "its OOM killer adjustment, -1000..1000"},
	[CK_RLIMIT] = {"limit_*", S_SERVICE, SVC(rlimits), set_rlimit, 0, 0,
		      "a resource limit (limit_nofile, limit_core, ...)"},
	[CK_READY] = {"ready", S_SERVICE, SVC(ready), set_ready, 0, 0,
		      "when it is ready: started, notify, fd:N, exec:COMMAND"},
	[CK_READY_TIMEOUT] = {"ready_timeout", S_SERVICE, SVC(ready_timeout_ms), set_duration, 0, 0,
			      "not ready by then: a failed start (0: no limit)"},
	[CK_READY_INTERVAL] = {"ready_interval", S_SERVICE, SVC(ready_interval_ms), set_duration, 0,
			       0, "exec: between two checks"},
	[CK_READY_CHECK_TIMEOUT] = {"ready_check_timeout", S_SERVICE, SVC(ready_check_timeout_ms),
				    set_duration, 0, 0, "exec: a check running longer is killed"},
	[CK_WATCHDOG_SEC] = {"watchdog_sec", S_SERVICE, SVC(watchdog_ms), set_duration, 0, 0,
			     "notify: WATCHDOG=1 at least this often, or it is restarted"},
	[CK_SOCKET] = {"socket", S_EVMON, CFG(socket), set_path, 0, 0, "the control socket"},
	[CK_LOG_DIR] = {"log_dir", S_EVMON, CFG(log_dir), set_path, 0, 0,
			"where stdout/stderr = log go"},
	[CK_MAX_CLIENTS] = {"max_clients", S_EVMON, CFG(max_clients), set_positive, 100000, 0,
			    "control connections at once"},
	[CK_CLIENT_BUFFER] = {"client_buffer", S_EVMON, CFG(client_buffer), set_buffer_size, 4096, 0,
			      "unread events before a client is dropped"},
	[CK_IDLE_TIMEOUT] = {"idle_timeout", S_EVMON, CFG(idle_timeout_ms), set_duration, 0, 0,
			     "close a connection with no request for this long"},
	[CK_EVENTS_BUFFER_TOTAL] = {"events_buffer_total", S_EVMON, CFG(events_buffer_total),
				    set_buffer_size, 4096, 0,
				    "unread events of all clients before the slowest is dropped"},
	[CK_CGROUP] = {"cgroup", S_EVMON, CFG(cgroup), set_cgroup_mode, 0, 0,
		       "a cgroup v2 per service: auto, yes, no"},
	[CK_METRICS_LISTEN] = {"metrics_listen", S_EVMON, CFG(metrics_listen), set_listen, 0, 0,
			       "serve Prometheus metrics over HTTP on ADDR:PORT"},
	[CK_SHUTDOWN_TIMEOUT] = {"shutdown_timeout", S_EVMON, CFG(shutdown_timeout_ms), set_duration, 0, 0,
				 "the whole shutdown: then SIGKILL to every service left"},
	[CK_CONSOLE_PREFIX] = {"console_prefix", S_EVMON, CFG(console_prefix), set_prefix, 0, 0,
			       "before each console line; {name} is the service"},
	[CK_HEALTH_CMD] = {"health_cmd", S_SERVICE, SVC(health.argv), set_command, 0, 0,
			   "the health check, split like command; exit 0: healthy"},
	[CK_HEALTH_INTERVAL] = {"health_interval", S_SERVICE, SVC(health.interval_ms), set_period, 0, 0,
				"from the end of a check to the next (30s)"},
	[CK_HEALTH_TIMEOUT] = {"health_timeout", S_SERVICE, SVC(health.timeout_ms), set_period, 0, 0,
			       "a check running longer is killed and fails (30s)"},
	[CK_HEALTH_RETRIES] = {"health_retries", S_SERVICE, SVC(health.retries), set_positive, 1000000,
			       0, "failures in a row that make it unhealthy (3)"},
	[CK_HEALTH_START_PERIOD] = {"health_start_period", S_SERVICE, SVC(health.start_period_ms),
				    set_duration, 0, 0,
				    "failures this long after the start do not count (0)"},
	[CK_HEALTH_START_INTERVAL] = {"health_start_interval", S_SERVICE, SVC(health.start_interval_ms),
				      set_period, 0, 0,
				      "between checks while starting, in the start period (5s)"},
	[CK_HEALTH_ACTION] = {"health_action", S_SERVICE, SVC(health.action), set_health_action, 0, 0,
			      "when unhealthy: none, restart, stop"},
#define LIMIT(ck, name, l, doc) [ck] = {name, S_SERVICE, SVC(limits[l]), set_limit, l, 0, doc}
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
