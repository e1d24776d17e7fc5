/*
 * confcheck.c - what can only be checked of a service once all its keys
 * are read (see confkeys.h): its directory and program exist, its
 * env_file lines are read into its environment, its user and group are
 * known (looked up again before each start while they are not), its
 * backoff and output keys agree. A missing program, directory, user or
 * group is an environment problem (env_bad), not a mistake.
 */
#include "confkeys.h"
#include "confvalue.h"

#include "envfile.h"
#include "pathfind.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static const char *env_get(char **env, const char *name)
{
	size_t n = strlen(name);
	for (char **e = env; e && *e; e++)
		if (!strncmp(*e, name, n) && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

/* Why prog (run as s runs) cannot be executed, into why; false if it can. */
static bool program_missing(const struct svc_conf *s, const char *prog, char *why, size_t len)
{
	if (strchr(prog, '/')) {
		char *full = prog[0] == '/' || !s->directory ? strdup(prog) : conf_abs_path(s->directory, prog);
		bool bad = full && !cli_path_executable(full);
		if (bad)
			snprintf(why, len, "%s: %s", prog,
				 access(full, F_OK) ? strerror(errno) : "not an executable file");
		free(full);
		return bad;
	}
	char buf[PATH_MAX];
	if (cli_path_find(prog, env_get(s->env, "PATH"), buf, sizeof(buf)))
		return false;
	snprintf(why, len, "%s: not found in PATH", prog);
	return true;
}

/* The command must name an executable file, as the library's exec would find it. */
static void check_command(struct conf_ctx *c, struct svc_conf *s)
{
	char why[PATH_MAX + 64];
	c->key = "command";
	c->line = c->line_of[CK_COMMAND] ? c->line_of[CK_COMMAND] : c->line;
	if (program_missing(s, s->argv[0], why, sizeof(why)))
		env_bad(c, "%s", why);
}

/* The program of a check (health_cmd, ready = exec:): missing, the service runs and the checks fail. */
static void check_tool(struct conf_ctx *c, const struct svc_conf *s, char **argv, enum conf_key k,
		       const char *key, const char *then, int line)
{
	char why[PATH_MAX + 64];
	if (!c->notes || !argv || !argv[0] || !program_missing(s, argv[0], why, sizeof(why)))
		return;
	errlist_add(c->notes, c->file, c->line_of[k] ? c->line_of[k] : line, "%s: %s (%s)", key, why, then);
}

/* The line of key k, or of the section when the key came from elsewhere. */
static int key_line(const struct conf_ctx *c, enum conf_key k, int section_line)
{
	return c->line_of[k] ? c->line_of[k] : section_line;
}

/*
 * Could name be a user or group at all? Not with a blank or a leading '-',
 * nor as a number past the ids ("-1", "4294967296", "root root" were only
 * "unknown user" warnings: a machine lacking it, not a mistake).
 */
static bool id_name_ok(const char *name)
{
	if (!*name || strpbrk(name, " \t") || name[0] == '-')
		return false;
	if (strspn(name, "0123456789") == strlen(name)) {
		unsigned long n;
		return conf_parse_uint(name, UINT_MAX - 1, &n);
	}
	return true;
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
	} else if (conf_parse_uint(s->user, UINT_MAX - 1, &n)) {
		s->uid = (uid_t)n;
		s->set_uid = true;
		struct passwd *byid = getpwuid((uid_t)n); /* user = 33: www-data's group, as by name */
		if (byid) {
			s->gid = byid->pw_gid;
			*uname = byid->pw_name;
			s->set_gid = true;
		} else if (!s->group) {
			conf_bad(c, "uid %s has no passwd entry: also give group", s->user);
		}
	} else if (!id_name_ok(s->user)) {
		conf_bad(c, "'%s' is neither a user name nor a uid (0-%u)", s->user, UINT_MAX - 1);
		return false;
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
	} else if (conf_parse_uint(s->group, UINT_MAX - 1, &n)) {
		s->gid = (gid_t)n;
	} else if (!id_name_ok(s->group)) {
		conf_bad(c, "'%s' is neither a group name nor a gid (0-%u)", s->group, UINT_MAX - 1);
		return false;
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

static bool has_gid(const gid_t *g, size_t n, gid_t x)
{
	for (size_t i = 0; i < n; i++)
		if (g[i] == x)
			return true;
	return false;
}

/*
 * Are s's supplementary groups the daemon's own (either side may list the
 * gid or not)? If not, the first that differs in why ("group 27 missing").
 */
static bool same_groups(const struct svc_conf *s, char *why, size_t len)
{
	gid_t egid = getegid(), *mine = NULL;
	int n = getgroups(0, NULL);
	if (n > 0 && (mine = malloc((size_t)n * sizeof(*mine))) && (n = getgroups(n, mine)) < 0)
		n = 0;
	if (n < 0 || (n > 0 && !mine))
		n = 0;
	bool same = true;
	for (size_t i = 0; same && i < s->ngroups; i++)
		if (s->groups[i] != egid && !has_gid(mine, (size_t)n, s->groups[i])) {
			snprintf(why, len, "it has not group %u", (unsigned)s->groups[i]);
			same = false;
		}
	for (int i = 0; same && i < n; i++)
		if (mine[i] != egid && !has_gid(s->groups, s->ngroups, mine[i])) {
			snprintf(why, len, "it has group %u besides", (unsigned)mine[i]);
			same = false;
		}
	free(mine);
	return same;
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
	if (me == 0)
		return;
	c->key = s->user ? "user" : "group";
	c->line = key_line(c, s->user ? CK_USER : CK_GROUP, line0);
	if ((s->set_uid && s->uid != me) || (s->set_gid && s->gid != getegid())) {
		conf_bad(c, "the daemon runs as uid %u and cannot switch to another user or group",
		    (unsigned)me);
		return;
	}
	/* its own ids: nothing to switch, but a user's groups it lacks (or has beyond them) it cannot set */
	char extra[80];
	if (uname && !same_groups(s, extra, sizeof(extra)))
		conf_bad(c, "the daemon runs as uid %u and cannot set supplementary groups: user "
		    "%s's groups differ from the daemon's (%s)", (unsigned)me, uname, extra);
	else
		s->ids_own = true;
}

int conf_resolve_ids(struct svc_conf *s, char *msg, size_t len)
{
	struct errlist errs = {0};
	struct conf_ctx c = {.file = "", .errs = &errs, .svc = s, .pol = &s->pol};
	free(s->groups);
	s->groups = NULL;
	s->ngroups = 0;
	s->set_uid = s->set_gid = s->ids_unresolved = s->ids_own = false;
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

/*
 * The variables the daemon sets itself (config.c's extra_env): one in
 * environment or an env_file is replaced, said as a warning (--strict: a
 * mistake). Not for `ctl add` (no list for them): the state record's
 * definitions are read by it too, and must still load.
 */
static void check_own_vars(struct conf_ctx *c, const struct svc_conf *s, char **vars,
			   const char *where, int line)
{
	static const char *const own[] = {"EVMON_SERVICE", "EVMON_DAEMON_ID", "EVMON_INSTANCE",
					  "EVMON_CHECK"};
	for (size_t i = 0; c->notes && i < sizeof(own) / sizeof(own[0]); i++) {
		/* EVMON_INSTANCE only with instances: else the service's own is passed on */
		if (!env_get(vars, own[i]) || (i == 2 && s->instances <= 1))
			continue;
		errlist_add(c->notes, c->file, line, "service %s: %s: %s is set by the daemon: "
			    "this value is not used", s->name, where, own[i]);
	}
}

/* env_file: each file's variables over environment's, in order (systemd's rule) */
static void read_env_files(struct conf_ctx *c, struct svc_conf *s, int line)
{
	c->key = "env_file";
	c->line = key_line(c, CK_ENV_FILE, line);
	for (char **f = s->env_files; f && *f; f++) {
		bool optional = (*f)[0] == '-';
		char *path = conf_abs_path(c->base, *f + optional), err[400] = "out of memory", **vars = NULL;
		int r = path ? envfile_read(path, &vars, err, sizeof(err)) : -ENOMEM;
		if (r >= 0) {
			char where[PATH_MAX + 16];
			snprintf(where, sizeof(where), "env_file %s", path);
			check_own_vars(c, s, vars, where, c->line);
		}
		char **merged = r >= 0 ? envfile_merge(s->env, vars) : NULL;
		if (r >= 0 && merged) {
			free(s->env);
			s->env = merged;
		} else if (!(r == -ENOENT && optional)) {
			conf_bad(c, "%s: %s", path ? path : *f + optional, r >= 0 ? "out of memory" : err);
		}
		free(vars);
		free(path);
	}
}

/* the readiness keys that mean nothing for this service's kind of ready */
static void check_ready(struct conf_ctx *c, struct svc_conf *s, int line)
{
	static const struct {
		enum conf_key k;
		const char *name, *needs;
		bool ok[4]; /* by enum ready_kind */
	} only[] = {
		{CK_READY_TIMEOUT, "ready_timeout", "notify, fd:N or exec: (started: start_secs)",
		 {false, true, true, true}},
		{CK_READY_INTERVAL, "ready_interval", "exec:", {false, false, false, true}},
		{CK_READY_CHECK_TIMEOUT, "ready_check_timeout", "exec:", {false, false, false, true}},
		{CK_WATCHDOG_SEC, "watchdog_sec", "notify", {false, true, false, false}},
	};
	for (size_t i = 0; i < sizeof(only) / sizeof(only[0]); i++)
		if (c->seen[only[i].k] && !only[i].ok[s->ready])
			errlist_add(c->errs, c->file, c->line_of[only[i].k] ? c->line_of[only[i].k] : line,
				    "service %s: %s needs ready = %s", s->name, only[i].name,
				    only[i].needs);
	if (s->ready == READY_EXEC && !s->ready_interval_ms)
		errlist_add(c->errs, c->file, c->line_of[CK_READY_INTERVAL] ? c->line_of[CK_READY_INTERVAL] : line,
			    "service %s: ready_interval must be more than 0", s->name);
	/* fd:N past its own limit_nofile: the spawn could not give it ("stdio: Invalid argument") */
	for (size_t i = 0; s->ready == READY_FD && i < s->nrlimits; i++)
		if (s->rlimits[i].resource == RLIMIT_NOFILE &&
		    s->rlimits[i].limit.rlim_cur != RLIM_INFINITY &&
		    (rlim_t)s->ready_fd >= s->rlimits[i].limit.rlim_cur)
			errlist_add(c->errs, c->file, c->line_of[CK_READY] ? c->line_of[CK_READY] : line,
				    "service %s: ready = fd:%d is past its limit_nofile (%llu): the "
				    "service could not be given that fd", s->name, s->ready_fd,
				    (unsigned long long)s->rlimits[i].limit.rlim_cur);
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
	check_own_vars(c, s, s->env, "environment", key_line(c, CK_ENVIRONMENT, line));
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
	check_ready(c, s, line);
	if (s->ready == READY_EXEC)
		check_tool(c, s, s->ready_check, CK_READY, "ready",
			   "the service starts, and is not ready until it is there: ready_timeout", line);
	check_tool(c, s, s->health.argv, CK_HEALTH_CMD, "health_cmd",
		   "the service runs; its checks fail until it is there", line);
	if (s->health.argv && s->health.probe.kind) {
		enum conf_key k = s->health.probe.kind == PROBE_TCP ? CK_HEALTH_TCP : CK_HEALTH_HTTP;
		int later = c->line_of[k] > c->line_of[CK_HEALTH_CMD] ? c->line_of[k] : c->line_of[CK_HEALTH_CMD];
		errlist_add(c->errs, c->file, later ? later : line,
			    "service %s: a service has one health check: health_cmd, health_tcp or "
			    "health_http", s->name);
	}
	/* the keys of a health check, without one: said, they were taken without a word */
	static const struct {
		enum conf_key k;
		const char *name;
	} health_keys[] = {
		{CK_HEALTH_INTERVAL, "health_interval"}, {CK_HEALTH_TIMEOUT, "health_timeout"},
		{CK_HEALTH_RETRIES, "health_retries"}, {CK_HEALTH_START_PERIOD, "health_start_period"},
		{CK_HEALTH_START_INTERVAL, "health_start_interval"}, {CK_HEALTH_ACTION, "health_action"},
	};
	for (size_t i = 0; c->notes && !s->health.argv && !s->health.probe.kind &&
			   i < sizeof(health_keys) / sizeof(health_keys[0]); i++)
		if (c->seen[health_keys[i].k])
			errlist_add(c->notes, c->file, key_line(c, health_keys[i].k, line),
				    "service %s: %s has no effect without a health check (health_cmd, "
				    "health_tcp or health_http)", s->name, health_keys[i].name);
	/* the later of stdout and stderr */
	int out_line = c->line_of[CK_STDOUT] > c->line_of[CK_STDERR] ? c->line_of[CK_STDOUT]
								      : c->line_of[CK_STDERR];
	if ((s->pol.out[0] == OUT_LOG || s->pol.out[1] == OUT_LOG) && !log_dir)
		errlist_add(c->errs, c->file, out_line ? out_line : line,
			    "service %s: stdout/stderr = log needs log_dir in [evmon]", s->name);
}

