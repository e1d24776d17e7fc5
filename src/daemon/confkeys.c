/*
 * confkeys.c - the keys of the daemon's configuration (see confkeys.h).
 *
 * A key is a row of one table: its name, the sections it may be in, the
 * field it sets (an offset in the policy, the service or the config), the
 * setter that reads its value, and a line of what it means (evmon.ini(5)
 * says it in full). Applying a section is a walk over its keys; a mistake
 * is collected with its file:line and the walk goes on. The checks of a
 * whole service (the program exists, the user is known, ...) come after.
 */
#include "confkeys.h"

#include "argv.h"
#include "cli.h"
#include "duration.h"
#include "envfile.h"
#include "listenaddr.h"
#include "pathfind.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INSTANCES 100000

/* ------------------------------------------------------ value parsers */

static bool parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return true;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

/* "65536", "64k", "4M", "1G" -> bytes */
static bool parse_size(const char *s, size_t *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	if (*end == 'k' || *end == 'K')
		shift = 10;
	else if (*end == 'm' || *end == 'M')
		shift = 20;
	else if (*end == 'g' || *end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (errno || *end || v > (1ull << 40) >> shift)
		return false;
	*out = (size_t)(v << shift);
	return true;
}

static bool parse_codes(const char *s, uint64_t codes[4])
{
	memset(codes, 0, 4 * sizeof(codes[0]));
	char *dup = strdup(s), *save = NULL;
	bool any = false, ok = dup != NULL;
	for (char *t = dup ? strtok_r(dup, ", \t", &save) : NULL; t && ok;
	     t = strtok_r(NULL, ", \t", &save)) {
		unsigned long v;
		if (!parse_uint(t, 255, &v))
			ok = false;
		else
			codes[v / 64] |= 1ull << (v % 64), any = true;
	}
	free(dup);
	return ok && any;
}

static bool parse_restart(const char *s, struct svc_policy *p)
{
	static const struct {
		const char *name;
		enum evm_restart r;
	} t[] = {{"on-failure", EVM_RESTART_ON_FAILURE}, {"always", EVM_RESTART_ALWAYS},
		 {"never", EVM_RESTART_NEVER},		 {"no", EVM_RESTART_NEVER},
		 {"unless-stopped", EVM_RESTART_UNLESS_STOPPED}};
	if (!strncmp(s, "on-failure:", 11)) {
		unsigned long n;
		if (!parse_uint(s + 11, UINT_MAX, &n))
			return false;
		p->restart = EVM_RESTART_ON_FAILURE;
		p->max_retries = (unsigned)n;
		p->set |= EVM_SVC_MAX_RETRIES;
		return true;
	}
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (!strcmp(s, t[i].name)) {
			p->restart = t[i].r;
			return true;
		}
	}
	return false;
}

const char *config_restart_name(enum evm_restart r)
{
	switch (r) {
	case EVM_RESTART_ON_FAILURE: return "on-failure";
	case EVM_RESTART_ALWAYS: return "always";
	case EVM_RESTART_NEVER: return "never";
	case EVM_RESTART_UNLESS_STOPPED: return "unless-stopped";
	}
	return "?";
}

static bool parse_out(const char *s, bool is_stderr, enum out_mode *m)
{
	if (!strcmp(s, "inherit"))
		*m = OUT_INHERIT;
	else if (!strcmp(s, "null"))
		*m = OUT_NULL;
	else if (!strcmp(s, "log"))
		*m = OUT_LOG;
	else if (!strcmp(s, "console"))
		*m = OUT_CONSOLE;
	else if (is_stderr && !strcmp(s, "stdout"))
		*m = OUT_STDOUT;
	else
		return false;
	return true;
}

/* ----------------------------------------------------------- the keys */

static void bad(struct conf_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(struct conf_ctx *c, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	errlist_add(c->errs, c->file, c->line, "%s: %s", c->key, msg);
}

/*
 * An environment problem (a missing program or directory, an unknown user
 * or group): the file is right but the machine is not, yet. With a list
 * for them (a config file), the service starts in a failed state and its
 * policy retries it; without (`ctl add`), a mistake like any other.
 */
static void env_bad(struct conf_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void env_bad(struct conf_ctx *c, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	errlist_add(c->problems ? c->problems : c->errs, c->file, c->line, "%s: %s", c->key, msg);
	if (c->problems && c->svc && !c->svc->problem) {
		char *p = NULL;
		if (asprintf(&p, "%s: %s", c->key, msg) >= 0)
			c->svc->problem = p;
	}
}

static char *abs_path(const char *base, const char *p)
{
	char *out = NULL;
	if (p[0] == '/' || !base)
		return strdup(p);
	return asprintf(&out, "%s/%s", base, p) < 0 ? NULL : out;
}

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
		bad(c, "'%s' is not a duration (seconds, or a number with ms, s, m or h)", v);
	*(uint64_t *)field = ms;
	c->pol->set |= k->flag;
}

static void set_count(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	unsigned long n = 0;
	if (!parse_uint(v, k->arg, &n))
		bad(c, "'%s' is not a whole number from 0 to %lu", v, k->arg);
	*(unsigned *)field = (unsigned)n;
	c->pol->set |= k->flag;
}

/* A count from 1: an invalid value leaves the field as it was. */
static void set_positive(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	unsigned long n = 0;
	if (!parse_uint(v, k->arg, &n) || n == 0)
		bad(c, "'%s' is not a number from 1 to %lu", v, k->arg);
	else
		*(unsigned *)field = (unsigned)n;
}

static void set_bool(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!parse_bool(v, field))
		bad(c, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
}

static void set_restart(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	(void)field; /* on-failure:N sets max_retries too */
	if (!parse_restart(v, c->pol))
		bad(c, "'%s' is not one of on-failure, on-failure:N, always, never, unless-stopped", v);
}

static void set_codes(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!parse_codes(v, field))
		bad(c, "'%s' is not a list of exit codes 0-255 (e.g. 0,2)", v);
	c->pol->codes_set = true;
}

static void set_signal(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	int sig = cli_parse_signal(v, false);
	if (sig < 0)
		bad(c, "'%s' is not a signal", v);
	*(int *)field = sig < 0 ? 0 : sig;
}

static void set_umask(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char *end;
	errno = 0;
	unsigned long m = strtoul(v, &end, 8);
	if (!*v || *end || errno || m > 0777)
		bad(c, "'%s' is not an octal umask (e.g. 022)", v);
	*(mode_t *)field = (mode_t)m;
	c->pol->set_umask = true;
}

static void set_output(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	bool is_err = k->arg;
	if (!parse_out(v, is_err, field))
		bad(c, "'%s' is not one of inherit, null, log, console%s", v, is_err ? ", stdout" : "");
}

static void set_log_size(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	size_t n = 0;
	if (!parse_size(v, &n))
		bad(c, "'%s' is not a size (bytes, or with k, M, G; 0: never rotate)", v);
	*(uint64_t *)field = n;
}

static void set_buffer_size(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	size_t *n = field;
	if (!parse_size(v, n) || *n < k->arg)
		bad(c, "'%s' is not a size of at least %luk (bytes, or with k, M, G)", v, k->arg >> 10);
}

static void set_command(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char ***argv = field;
	const char *err = NULL;
	int n = cli_split(v, argv, &err);
	if (n < 0) {
		bad(c, "%s", err);
	} else if (n == 0) {
		/* no argv[0] to check or run: as if there were no command */
		bad(c, "empty command");
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
		bad(c, "%s", err);
	for (int i = 0; i < n; i++) {
		const char *eq = strchr((*env)[i], '=');
		if (!eq || eq == (*env)[i])
			bad(c, "'%s' is not KEY=VALUE", (*env)[i]);
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
		bad(c, "%s", err);
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
	else if (parse_bool(v, &b))
		*(enum essential *)field = b ? ESS_FAIL : ESS_NO;
	else
		bad(c, "'%s' is not true, false or exit", v);
}

/* A path, relative to the config file's directory. */
static void set_path(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char **p = field;
	free(*p);
	*p = abs_path(c->base, v);
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
		bad(c, "longer than %d bytes", OUT_PREFIX_MAX);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
			bad(c, "control characters are not allowed");
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
		bad(c, "%s", err);
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
	static const char *const names[] = {[CGROUP_AUTO] = "auto", [CGROUP_YES] = "yes",
					    [CGROUP_NO] = "no"};
	for (int i = 0; i < 3; i++) {
		if (!strcmp(v, names[i])) {
			*(enum cgroup_mode *)field = (enum cgroup_mode)i;
			return;
		}
	}
	bad(c, "'%s' is not one of auto, yes, no", v);
}

/* A number, or "max" when max_ok; then an optional unit (K, M, G) when units. */
static bool limit_word(const char *v, bool units, const char **end)
{
	if (!strncmp(v, "max", 3)) {
		*end = v + 3;
		return true;
	}
	*end = v + strspn(v, "0123456789");
	if (*end == v)
		return false;
	if (units && **end && strchr("KMG", **end))
		(*end)++;
	return true;
}

/* A cgroup limit (arg: enum evm_cgroup_limit), kept as written: the kernel's syntax. */
static void set_limit(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	static const char *const want[] = {
		[EVM_CGROUP_MEMORY_MAX] = "bytes (with K, M, G) or max",
		[EVM_CGROUP_MEMORY_HIGH] = "bytes (with K, M, G) or max",
		[EVM_CGROUP_PIDS_MAX] = "a number or max",
		[EVM_CGROUP_CPU_WEIGHT] = "a weight from 1 to 10000",
		[EVM_CGROUP_CPU_MAX] = "max, or QUOTA PERIOD in microseconds",
		[EVM_CGROUP_IO_WEIGHT] = "a weight from 1 to 10000",
	};
	char **p = field;
	const char *e;
	bool weight = k->arg == EVM_CGROUP_CPU_WEIGHT || k->arg == EVM_CGROUP_IO_WEIGHT;
	bool ok = limit_word(v, k->arg <= EVM_CGROUP_MEMORY_HIGH, &e);
	if (ok && k->arg == EVM_CGROUP_CPU_MAX && *e == ' ') /* the period: a number */
		ok = limit_word(e + 1, false, &e) && strncmp(e - 3, "max", 3);
	if (ok && weight) {
		unsigned long n = 0;
		ok = parse_uint(v, 10000, &n) && n >= 1;
	}
	ok = ok && !*e;
	if (!ok)
		bad(c, "'%s' is not %s", v, want[k->arg]);
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
		bad(c, "%s", err);
	else if (!**words)
		bad(c, "no file named");
}

/* nice = -20..19, oom_score_adj = -1000..1000 (arg: which) */
static void set_adjust(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	int lo = k->arg ? -1000 : -20, hi = k->arg ? 1000 : 19;
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < lo || n > hi) {
		bad(c, "'%s' is not a number from %d to %d", v, lo, hi);
		return;
	}
	*(int *)field = (int)n;
	*(k->arg ? &c->svc->set_oom : &c->svc->set_nice) = true;
}

static const struct {
	const char *name;
	int resource;
} rlimit_names[] = {
	{"as", RLIMIT_AS},	   {"core", RLIMIT_CORE},     {"cpu", RLIMIT_CPU},
	{"data", RLIMIT_DATA},	   {"fsize", RLIMIT_FSIZE},   {"locks", RLIMIT_LOCKS},
	{"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
	{"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC},   {"rss", RLIMIT_RSS},
	{"rtprio", RLIMIT_RTPRIO}, {"rttime", RLIMIT_RTTIME}, {"sigpending", RLIMIT_SIGPENDING},
	{"stack", RLIMIT_STACK},
};

static bool parse_rlim(const char *s, size_t len, rlim_t *out)
{
	char buf[32];
	size_t n;
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!strcmp(buf, "infinity") || !strcmp(buf, "unlimited")) {
		*out = RLIM_INFINITY;
		return true;
	}
	if (!parse_size(buf, &n))
		return false;
	*out = (rlim_t)n;
	return true;
}

/* limit_RESOURCE = N | SOFT:HARD (a number, with k, M or G, or infinity): systemd's LimitRESOURCE= */
static void set_rlimit(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	(void)field;
	const char *res = c->key + 6;
	size_t i = 0;
	while (i < sizeof(rlimit_names) / sizeof(rlimit_names[0]) && strcmp(rlimit_names[i].name, res))
		i++;
	if (i == sizeof(rlimit_names) / sizeof(rlimit_names[0])) {
		errlist_add(c->errs, c->file, c->line, "unknown key '%s' (limit_ is followed by one of "
			    "as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, "
			    "rss, rtprio, rttime, sigpending, stack)", c->key);
		return;
	}
	const char *colon = strchr(v, ':');
	struct rlimit rl;
	if (!parse_rlim(v, colon ? (size_t)(colon - v) : strlen(v), &rl.rlim_cur) ||
	    !parse_rlim(colon ? colon + 1 : v, strlen(colon ? colon + 1 : v), &rl.rlim_max) ||
	    rl.rlim_cur > rl.rlim_max) {
		bad(c, "'%s' is not a limit (N or SOFT:HARD, SOFT <= HARD: numbers with k, M or G, "
		    "or infinity)", v);
		return;
	}
	struct svc_conf *s = c->svc;
	struct evm_rlimit *a = realloc(s->rlimits, (s->nrlimits + 1) * sizeof(*a));
	if (!a) {
		bad(c, "out of memory");
		return;
	}
	s->rlimits = a;
	memset(&a[s->nrlimits], 0, sizeof(*a)); /* compared with memcmp: no stray padding */
	a[s->nrlimits].resource = rlimit_names[i].resource;
	a[s->nrlimits++].limit = rl;
}

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
	[CK_KILL_GROUP] = {"kill_group", S_BOTH, POL(kill_group), set_bool, 0, 0,
			   "signal its whole process group"},
	[CK_AUTOSTART] = {"autostart", S_BOTH, POL(autostart), set_bool, 0, 0,
			  "start with the daemon"},
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

/* ------------------------------------------------------- validation */

static const char *env_get(char **env, const char *name)
{
	size_t n = strlen(name);
	for (char **e = env; e && *e; e++)
		if (!strncmp(*e, name, n) && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

/* The command must name an executable file, as the library's exec would find it. */
static void check_command(struct conf_ctx *c, struct svc_conf *s)
{
	const char *prog = s->argv[0];
	c->key = "command";
	c->line = c->line_of[CK_COMMAND] ? c->line_of[CK_COMMAND] : c->line;
	if (strchr(prog, '/')) {
		char *full = prog[0] == '/' || !s->directory ? strdup(prog) : abs_path(s->directory, prog);
		if (full && !cli_path_executable(full))
			env_bad(c, "%s: %s", prog,
				access(full, F_OK) ? strerror(errno) : "not an executable file");
		free(full);
		return;
	}
	char buf[PATH_MAX];
	if (!cli_path_find(prog, env_get(s->env, "PATH"), buf, sizeof(buf)))
		env_bad(c, "%s: not found in PATH", prog);
}

/* The line of key k, or of the section when the key came from elsewhere. */
static int key_line(const struct conf_ctx *c, enum conf_key k, int section_line)
{
	return c->line_of[k] ? c->line_of[k] : section_line;
}

/* user = NAME or UID: the uid, and the user's gid unless group says otherwise. */
static bool resolve_user(struct conf_ctx *c, struct svc_conf *s, int line, const char **uname)
{
	unsigned long n;
	c->key = "user";
	c->line = key_line(c, CK_USER, line);
	struct passwd *pw = getpwnam(s->user);
	if (pw) {
		s->uid = pw->pw_uid;
		s->gid = pw->pw_gid;
		*uname = pw->pw_name;
		s->set_uid = s->set_gid = true;
	} else if (parse_uint(s->user, UINT_MAX - 1, &n)) {
		s->uid = (uid_t)n;
		s->set_uid = true;
		if (!s->group)
			bad(c, "uid %s has no passwd entry: also give group", s->user);
	} else {
		env_bad(c, "unknown user '%s'", s->user);
		s->ids_unresolved = true;
		return false;
	}
	return true;
}

static bool resolve_group(struct conf_ctx *c, struct svc_conf *s, int line)
{
	unsigned long n;
	c->key = "group";
	c->line = key_line(c, CK_GROUP, line);
	struct group *gr = getgrnam(s->group);
	if (gr) {
		s->gid = gr->gr_gid;
	} else if (parse_uint(s->group, UINT_MAX - 1, &n)) {
		s->gid = (gid_t)n;
	} else {
		env_bad(c, "unknown group '%s'", s->group);
		s->ids_unresolved = true;
		return false;
	}
	s->set_gid = true;
	return true;
}

/* initgroups semantics: the user's groups plus the chosen gid (only that gid without a user). */
static void supplementary_groups(struct svc_conf *s, const char *uname)
{
	int ng = 64;
	gid_t *g = malloc((size_t)ng * sizeof(*g));
	if (g && uname && getgrouplist(uname, s->gid, g, &ng) < 0) {
		gid_t *g2 = realloc(g, (size_t)ng * sizeof(*g));
		if (g2)
			g = g2;
		if (!g2 || getgrouplist(uname, s->gid, g, &ng) < 0)
			ng = 0;
	} else if (g && !uname) {
		g[0] = s->gid;
		ng = 1;
	}
	s->groups = g;
	s->ngroups = g ? (size_t)ng : 0;
}

static void resolve_ids(struct conf_ctx *c, struct svc_conf *s)
{
	const char *uname = NULL;
	int line0 = c->line;
	if (s->user && !resolve_user(c, s, line0, &uname))
		return;
	if (s->group && !resolve_group(c, s, c->line))
		return;
	if (!s->set_uid && !s->set_gid)
		return;
	supplementary_groups(s, uname);
	uid_t me = geteuid();
	if (me != 0 && ((s->set_uid && s->uid != me) || (s->set_gid && s->gid != getegid()))) {
		c->key = s->user ? "user" : "group";
		c->line = key_line(c, s->user ? CK_USER : CK_GROUP, line0);
		bad(c, "the daemon runs as uid %u and cannot switch to another user or group",
		    (unsigned)me);
	}
}

int conf_resolve_ids(struct svc_conf *s, char *msg, size_t len)
{
	struct errlist errs = {0};
	struct conf_ctx c = {.file = "", .errs = &errs, .svc = s, .pol = &s->pol};
	free(s->groups);
	s->groups = NULL;
	s->ngroups = 0;
	s->set_uid = s->set_gid = s->ids_unresolved = false;
	resolve_ids(&c, s);
	int r = 0;
	if (errs.n || s->ids_unresolved) {
		/* "": the message without the file */
		snprintf(msg, len, "%s", errs.n ? errs.msgs[0] + (errs.msgs[0][0] == ':' ? 2 : 0) : "?");
		s->set_uid = s->set_gid = false;
		s->ids_unresolved = true;
		r = -ENOENT;
	}
	errlist_free(&errs);
	return r;
}

/* env_file: each file's variables over environment's, in order (systemd's rule) */
static void read_env_files(struct conf_ctx *c, struct svc_conf *s, int line)
{
	c->key = "env_file";
	c->line = key_line(c, CK_ENV_FILE, line);
	for (char **f = s->env_files; f && *f; f++) {
		bool optional = (*f)[0] == '-';
		char *path = abs_path(c->base, *f + optional), err[400] = "out of memory", **vars = NULL;
		int r = path ? envfile_read(path, &vars, err, sizeof(err)) : -ENOMEM;
		char **merged = r >= 0 ? envfile_merge(s->env, vars) : NULL;
		if (r >= 0 && merged) {
			free(s->env);
			s->env = merged;
		} else if (!(r == -ENOENT && optional)) {
			bad(c, "%s: %s", path ? path : *f + optional, r >= 0 ? "out of memory" : err);
		}
		free(vars);
		free(path);
	}
}

void conf_check_service(struct conf_ctx *c, struct svc_conf *s, const char *log_dir, int line)
{
	c->line = line;
	if (!s->argv) {
		if (!c->seen[CK_COMMAND])
			errlist_add(c->errs, c->file, line, "service %s: missing 'command'", s->name);
		return;
	}
	if (s->directory) {
		struct stat st;
		c->key = "directory";
		c->line = c->line_of[CK_DIRECTORY] ? c->line_of[CK_DIRECTORY] : line;
		if (stat(s->directory, &st) < 0)
			env_bad(c, "%s: %s", s->directory, strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			env_bad(c, "%s: not a directory", s->directory);
	}
	c->line = line;
	read_env_files(c, s, line);
	c->line = line;
	resolve_ids(c, s);
	c->line = line;
	check_command(c, s);
	/* the library caps every delay at backoff_max: a longer initial delay would be ignored */
	uint64_t initial = s->pol.set & EVM_SVC_BACKOFF_INITIAL ? s->pol.backoff_initial_ms : 100;
	uint64_t max = s->pol.set & EVM_SVC_BACKOFF_MAX ? s->pol.backoff_max_ms : 30000;
	if (initial > max)
		errlist_add(c->errs, c->file, line,
			    "service %s: backoff_initial (%llu ms) is longer than backoff_max "
			    "(%llu ms): every restart would wait backoff_max",
			    s->name, (unsigned long long)initial, (unsigned long long)max);
	/* the later of stdout and stderr */
	int out_line = c->line_of[CK_STDOUT] > c->line_of[CK_STDERR] ? c->line_of[CK_STDOUT]
								      : c->line_of[CK_STDERR];
	if ((s->pol.out[0] == OUT_LOG || s->pol.out[1] == OUT_LOG) && !log_dir)
		errlist_add(c->errs, c->file, out_line ? out_line : line,
			    "service %s: stdout/stderr = log needs log_dir in [evmon]", s->name);
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
	return s;
}
