/*
 * config.c - the daemon's INI configuration (see config.h).
 *
 * Two phases. Reading: libinih tokenizes the file and we keep every
 * key = value with its line, per section, untouched; our line reader watches
 * the raw lines as well, because inih's handler gets no line numbers and is
 * not called for section headers (so empty or repeated sections would go
 * unnoticed) nor for lines it cannot parse (it reports only the first).
 * Interpreting: [evmon] first (its policy keys are defaults, wherever the
 * section is in the file), then each [service:NAME]. Nothing stops at the
 * first mistake: all of them are collected with file:line.
 *
 * Inline comments are off (like Python 3's configparser): "a ; b" in a
 * command stays a command. Comments are lines starting with ; or #.
 * An indented line continues the previous value (joined with a space).
 */
#include "config.h"

#include "argv.h"
#include "cli.h"
#include "duration.h"
#include "pathfind.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LINE 65536
#define MAX_INSTANCES 100000

/* ------------------------------------------------------------- reading */

struct rkv {
	char *key, *val;
	int line;
};

struct rsec {
	char *name;
	int line;
	struct rkv *kv;
	size_t n, cap;
};

struct reader {
	FILE *f;
	const char *path;
	struct errlist *errs;
	int line;	     /* line of the text being parsed */
	int lines_done;	     /* newlines consumed */
	bool at_start;	     /* the next piece starts a line */
	size_t line_len;     /* bytes of the current line so far */
	bool too_long;	     /* current line already reported */
	bool continuation;   /* current line continues the previous value */
	bool have_prev_key;  /* inih would treat an indented line as continuation */
	int first_syntax;    /* first syntax error line we reported, 0 if none */
	struct rsec *secs;
	size_t nsecs, capsecs;
	bool oom;
};

static struct rsec *new_section(struct reader *r, const char *name, size_t len, int line)
{
	if (r->nsecs == r->capsecs) {
		size_t cap = r->capsecs ? r->capsecs * 2 : 16;
		struct rsec *s = realloc(r->secs, cap * sizeof(*s));
		if (!s) {
			r->oom = true;
			return NULL;
		}
		r->secs = s;
		r->capsecs = cap;
	}
	struct rsec *s = &r->secs[r->nsecs];
	memset(s, 0, sizeof(*s));
	s->name = strndup(name, len);
	if (!s->name) {
		r->oom = true;
		return NULL;
	}
	s->line = line;
	r->nsecs++;
	return s;
}

/* Look at a raw line the way inih will (ini.c: comment, continuation, section, pair). */
static void look_at_line(struct reader *r, const char *s)
{
	const char *p = s;
	if (r->line == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
	    (unsigned char)p[2] == 0xBF)
		p += 3;
	const char *start = p;
	while (*start && isspace((unsigned char)*start))
		start++;
	r->continuation = false;
	if (!*start || *start == ';' || *start == '#')
		return;
	if (start > p && r->have_prev_key) {
		r->continuation = true;
		return;
	}
	if (*start == '[') {
		const char *end = strchr(start + 1, ']');
		if (!end) {
			errlist_add(r->errs, r->path, r->line, "section header without ']'");
			if (!r->first_syntax)
				r->first_syntax = r->line;
			return;
		}
		new_section(r, start + 1, (size_t)(end - start - 1), r->line);
		r->have_prev_key = false;
		return;
	}
	if (!strpbrk(start, "=:")) {
		errlist_add(r->errs, r->path, r->line,
			    "expected 'key = value', '[section]' or a comment, got '%.*s'",
			    (int)strcspn(start, "\r\n"), start);
		if (!r->first_syntax)
			r->first_syntax = r->line;
		return;
	}
	r->have_prev_key = true;
}

static char *read_piece(char *buf, int size, void *stream)
{
	struct reader *r = stream;
	char *s = fgets(buf, size, r->f);
	if (!s)
		return NULL;
	size_t len = strlen(s);
	if (r->at_start) {
		r->line = r->lines_done + 1;
		r->line_len = 0;
		r->too_long = false;
		look_at_line(r, s);
	}
	r->line_len += len;
	if (r->line_len >= MAX_LINE - 2 && !r->too_long) {
		r->too_long = true;
		errlist_add(r->errs, r->path, r->line, "line longer than %d bytes", MAX_LINE - 3);
		if (!r->first_syntax)
			r->first_syntax = r->line;
	}
	r->at_start = len > 0 && s[len - 1] == '\n';
	if (r->at_start)
		r->lines_done++;
	return s;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct reader *r = user;
	(void)section; /* we track sections ourselves, with their lines */
	if (r->too_long)
		return 1;
	if (r->nsecs == 0) {
		errlist_add(r->errs, r->path, r->line,
			    "'%s' outside of any section (start with [evmon] or [service:NAME])", name);
		return 1;
	}
	struct rsec *s = &r->secs[r->nsecs - 1];
	if (r->continuation && s->n > 0 && !strcmp(s->kv[s->n - 1].key, name)) {
		struct rkv *kv = &s->kv[s->n - 1];
		char *joined = NULL;
		if (asprintf(&joined, "%s %s", kv->val, value) < 0) {
			r->oom = true;
			return 1;
		}
		free(kv->val);
		kv->val = joined;
		return 1;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct rkv *kv = realloc(s->kv, cap * sizeof(*kv));
		if (!kv) {
			r->oom = true;
			return 1;
		}
		s->kv = kv;
		s->cap = cap;
	}
	struct rkv *kv = &s->kv[s->n];
	kv->key = strdup(name);
	kv->val = strdup(value ? value : "");
	kv->line = r->line;
	if (!kv->key || !kv->val) {
		free(kv->key);
		free(kv->val);
		r->oom = true;
		return 1;
	}
	s->n++;
	return 1;
}

static void free_sections(struct rsec *secs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < secs[i].n; j++) {
			free(secs[i].kv[j].key);
			free(secs[i].kv[j].val);
		}
		free(secs[i].kv);
		free(secs[i].name);
	}
	free(secs);
}

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
	else if (is_stderr && !strcmp(s, "stdout"))
		*m = OUT_STDOUT;
	else
		return false;
	return true;
}

/* ------------------------------------------------------------- keys */

enum scope { S_SERVICE = 1, S_EVMON = 2, S_BOTH = 3 };

struct ctx {
	const char *file; /* for messages */
	const char *base; /* directory for relative paths, or NULL */
	struct errlist *errs;
	struct svc_policy *pol;
	struct svc_conf *svc;	 /* NULL in [evmon] */
	struct config *cfg;	 /* [evmon] only */
	bool command_seen;	 /* a command key was given (maybe a bad one) */
	/* lines of the keys checked after the section is read (0: not given) */
	int l_command, l_directory, l_user, l_group, l_out;
	int line;
	const char *key;
};

static void bad(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(struct ctx *c, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	errlist_add(c->errs, c->file, c->line, "%s: %s", c->key, msg);
}

static char *abs_path(const char *base, const char *p)
{
	char *out = NULL;
	if (p[0] == '/' || !base)
		return strdup(p);
	return asprintf(&out, "%s/%s", base, p) < 0 ? NULL : out;
}

static void k_duration(struct ctx *c, const char *v, uint64_t *field, unsigned flag)
{
	uint64_t ms = 0;
	if (cli_parse_duration(v, &ms) < 0)
		bad(c, "'%s' is not a duration (seconds, or a number with ms, s, m or h)", v);
	*field = ms;
	c->pol->set |= flag;
}

static void k_count(struct ctx *c, const char *v, unsigned long max, unsigned *field, unsigned flag)
{
	unsigned long n = 0;
	if (!parse_uint(v, max, &n))
		bad(c, "'%s' is not a whole number from 0 to %lu", v, max);
	*field = (unsigned)n;
	c->pol->set |= flag;
}

static void k_bool(struct ctx *c, const char *v, bool *field)
{
	if (!parse_bool(v, field))
		bad(c, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
}

static void set_key(struct ctx *c, const char *k, const char *v)
{
	struct svc_policy *p = c->pol;
	struct svc_conf *s = c->svc;
	const char *err = NULL;
	if (!strcmp(k, "restart")) {
		if (!parse_restart(v, p))
			bad(c, "'%s' is not one of on-failure, on-failure:N, always, never, "
			       "unless-stopped", v);
	} else if (!strcmp(k, "exit_codes")) {
		if (!parse_codes(v, p->codes))
			bad(c, "'%s' is not a list of exit codes 0-255 (e.g. 0,2)", v);
		p->codes_set = true;
	} else if (!strcmp(k, "start_secs")) {
		k_duration(c, v, &p->start_ms, EVM_SVC_START_MS);
	} else if (!strcmp(k, "start_retries")) {
		k_count(c, v, 1000000, &p->start_retries, EVM_SVC_START_RETRIES);
	} else if (!strcmp(k, "backoff_initial")) {
		k_duration(c, v, &p->backoff_initial_ms, EVM_SVC_BACKOFF_INITIAL);
	} else if (!strcmp(k, "backoff_max")) {
		k_duration(c, v, &p->backoff_max_ms, EVM_SVC_BACKOFF_MAX);
	} else if (!strcmp(k, "backoff_jitter")) {
		k_count(c, v, 100, &p->backoff_jitter, 0);
	} else if (!strcmp(k, "stable_secs")) {
		k_duration(c, v, &p->stable_ms, EVM_SVC_STABLE_MS);
	} else if (!strcmp(k, "max_retries")) {
		k_count(c, v, UINT_MAX, &p->max_retries, EVM_SVC_MAX_RETRIES);
	} else if (!strcmp(k, "stop_signal")) {
		int sig = cli_parse_signal(v, false);
		if (sig < 0)
			bad(c, "'%s' is not a signal", v);
		p->stop_signal = sig < 0 ? 0 : sig;
	} else if (!strcmp(k, "stop_timeout")) {
		k_duration(c, v, &p->stop_timeout_ms, EVM_SVC_STOP_TIMEOUT);
	} else if (!strcmp(k, "kill_group")) {
		k_bool(c, v, &p->kill_group);
	} else if (!strcmp(k, "autostart")) {
		k_bool(c, v, &p->autostart);
	} else if (!strcmp(k, "umask")) {
		unsigned long m;
		char *end;
		errno = 0;
		m = strtoul(v, &end, 8);
		if (!*v || *end || errno || m > 0777)
			bad(c, "'%s' is not an octal umask (e.g. 022)", v);
		p->umask = (mode_t)m;
		p->set_umask = true;
	} else if (!strcmp(k, "stdout") || !strcmp(k, "stderr")) {
		bool is_err = k[3] == 'e';
		c->l_out = c->line;
		if (!parse_out(v, is_err, &p->out[is_err]))
			bad(c, "'%s' is not one of inherit, null, log%s", v, is_err ? ", stdout" : "");
	} else if (!strcmp(k, "log_max_bytes")) {
		size_t n = 0;
		if (!parse_size(v, &n))
			bad(c, "'%s' is not a size (bytes, or with k, M, G; 0: never rotate)", v);
		p->log_max_bytes = n;
	} else if (!strcmp(k, "log_backups")) {
		k_count(c, v, 1000, &p->log_backups, 0);
	} else if (!strcmp(k, "log_timestamps")) {
		k_bool(c, v, &p->log_timestamps);
	} else if (s && !strcmp(k, "command")) {
		c->command_seen = true;
		c->l_command = c->line;
		int n = cli_split(v, &s->argv, &err);
		if (n < 0)
			bad(c, "%s", err);
		else if (n == 0) {
			/* no argv[0] to check or run: as if there were no command */
			bad(c, "empty command");
			free(s->argv);
			s->argv = NULL;
		}
	} else if (s && !strcmp(k, "environment")) {
		int n = cli_split(v, &s->env, &err);
		if (n < 0)
			bad(c, "%s", err);
		for (int i = 0; i < n; i++) {
			const char *eq = strchr(s->env[i], '=');
			if (!eq || eq == s->env[i])
				bad(c, "'%s' is not KEY=VALUE", s->env[i]);
		}
		if (n == 0) {
			free(s->env);
			s->env = NULL;
		}
	} else if (s && !strcmp(k, "directory")) {
		c->l_directory = c->line;
		free(s->directory);
		s->directory = abs_path(c->base, v);
	} else if (s && !strcmp(k, "user")) {
		c->l_user = c->line;
		free(s->user);
		s->user = strdup(v);
	} else if (s && !strcmp(k, "group")) {
		c->l_group = c->line;
		free(s->group);
		s->group = strdup(v);
	} else if (s && !strcmp(k, "instances")) {
		unsigned long n = 0;
		if (!parse_uint(v, MAX_INSTANCES, &n) || n == 0)
			bad(c, "'%s' is not a number from 1 to %d", v, MAX_INSTANCES);
		s->instances = n ? (unsigned)n : 1;
	} else if (!s && !strcmp(k, "socket")) {
		free(c->cfg->socket);
		c->cfg->socket = abs_path(c->base, v);
	} else if (!s && !strcmp(k, "max_clients")) {
		unsigned long n = 0;
		if (!parse_uint(v, 100000, &n) || n == 0)
			bad(c, "'%s' is not a number from 1 to 100000", v);
		c->cfg->max_clients = (unsigned)n;
	} else if (!s && !strcmp(k, "client_buffer")) {
		if (!parse_size(v, &c->cfg->client_buffer) || c->cfg->client_buffer < 4096)
			bad(c, "'%s' is not a size of at least 4k (bytes, or with k, M, G)", v);
	} else if (!s && !strcmp(k, "log_dir")) {
		free(c->cfg->log_dir);
		c->cfg->log_dir = abs_path(c->base, v);
	} else if (!s && (!strcmp(k, "command") || !strcmp(k, "environment") ||
			  !strcmp(k, "directory") || !strcmp(k, "user") || !strcmp(k, "group") ||
			  !strcmp(k, "instances"))) {
		errlist_add(c->errs, c->file, c->line,
			    "%s: only allowed in a [service:NAME] section", k);
	} else if (s && (!strcmp(k, "socket") || !strcmp(k, "log_dir") || !strcmp(k, "max_clients") ||
			 !strcmp(k, "client_buffer"))) {
		errlist_add(c->errs, c->file, c->line, "%s: only allowed in [evmon]", k);
	} else {
		errlist_add(c->errs, c->file, c->line, "unknown key '%s'", k);
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
static void check_command(struct ctx *c, struct svc_conf *s)
{
	const char *prog = s->argv[0];
	c->key = "command";
	c->line = c->l_command ? c->l_command : c->line;
	if (strchr(prog, '/')) {
		char *full = prog[0] == '/' || !s->directory ? strdup(prog) : abs_path(s->directory, prog);
		if (full && !cli_path_executable(full))
			bad(c, "%s: %s", prog, access(full, F_OK) ? strerror(errno) : "not an executable file");
		free(full);
		return;
	}
	char buf[PATH_MAX];
	if (!cli_path_find(prog, env_get(s->env, "PATH"), buf, sizeof(buf)))
		bad(c, "%s: not found in PATH", prog);
}

static void resolve_ids(struct ctx *c, struct svc_conf *s)
{
	const char *uname = NULL;
	int line0 = c->line;
	if (s->user) {
		c->key = "user";
		c->line = c->l_user ? c->l_user : c->line;
		struct passwd *pw = getpwnam(s->user);
		unsigned long n;
		if (pw) {
			s->uid = pw->pw_uid;
			s->gid = pw->pw_gid;
			uname = pw->pw_name;
			s->set_uid = s->set_gid = true;
		} else if (parse_uint(s->user, UINT_MAX - 1, &n)) {
			s->uid = (uid_t)n;
			s->set_uid = true;
			if (!s->group)
				bad(c, "uid %s has no passwd entry: also give group", s->user);
		} else {
			bad(c, "unknown user '%s'", s->user);
			return;
		}
	}
	if (s->group) {
		c->key = "group";
		c->line = c->l_group ? c->l_group : c->line;
		struct group *gr = getgrnam(s->group);
		unsigned long n;
		if (gr) {
			s->gid = gr->gr_gid;
		} else if (parse_uint(s->group, UINT_MAX - 1, &n)) {
			s->gid = (gid_t)n;
		} else {
			bad(c, "unknown group '%s'", s->group);
			return;
		}
		s->set_gid = true;
	}
	if (!s->set_uid && !s->set_gid)
		return;
	/* initgroups semantics: the user's groups plus the chosen gid */
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
	uid_t me = geteuid();
	if (me != 0 && ((s->set_uid && s->uid != me) || (s->set_gid && s->gid != getegid()))) {
		c->key = s->user ? "user" : "group";
		c->line = (s->user ? c->l_user : c->l_group) ? (s->user ? c->l_user : c->l_group) : line0;
		bad(c, "the daemon runs as uid %u and cannot switch to another user or group",
		    (unsigned)me);
	}
}

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

static void default_policy(struct svc_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->autostart = true;
	p->log_max_bytes = 10u << 20;
	p->log_backups = 5;
}

static struct svc_conf *service_new(const char *name, const struct svc_policy *defaults, int line)
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

static void check_service(struct ctx *c, struct svc_conf *s, const char *log_dir, int line)
{
	c->line = line;
	if (!s->argv) {
		if (!c->command_seen)
			errlist_add(c->errs, c->file, line, "service %s: missing 'command'", s->name);
		return;
	}
	if (s->directory) {
		struct stat st;
		c->key = "directory";
		c->line = c->l_directory ? c->l_directory : line;
		if (stat(s->directory, &st) < 0)
			bad(c, "%s: %s", s->directory, strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			bad(c, "%s: not a directory", s->directory);
	}
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
	if ((s->pol.out[0] == OUT_LOG || s->pol.out[1] == OUT_LOG) && !log_dir)
		errlist_add(c->errs, c->file, c->l_out ? c->l_out : line,
			    "service %s: stdout/stderr = log needs log_dir in [evmon]", s->name);
}

/* every key of a section, in order; a repeated key is a mistake */
static void apply_section(struct ctx *c, const struct rsec *sec)
{
	for (size_t i = 0; i < sec->n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(sec->kv[j].key, sec->kv[i].key)) {
				errlist_add(c->errs, c->file, sec->kv[i].line,
					    "duplicate key '%s' (first set on line %d)", sec->kv[i].key,
					    sec->kv[j].line);
				goto next;
			}
		}
		c->line = sec->kv[i].line;
		c->key = sec->kv[i].key;
		set_key(c, sec->kv[i].key, sec->kv[i].val);
next:;
	}
}

static char *dir_of(const char *path)
{
	char *abs = realpath(path, NULL);
	if (!abs)
		return NULL;
	char *slash = strrchr(abs, '/');
	if (slash == abs)
		slash[1] = '\0';
	else
		*slash = '\0';
	return abs;
}

/*
 * A root daemon runs the commands of its config as whoever the config says:
 * a config someone else can change is a way to root (sshd's StrictModes).
 */
static bool trusted(FILE *f, const char *path, struct errlist *errs)
{
	struct stat st;
	if (geteuid() != 0 || fstat(fileno(f), &st) < 0)
		return true;
	if (st.st_uid != 0)
		errlist_add(errs, path, 0, "is owned by uid %u, not root: a root daemon runs only "
			    "a config that root alone can change", (unsigned)st.st_uid);
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		errlist_add(errs, path, 0, "is writable by %s (mode %04o): a root daemon runs only "
			    "a config that root alone can change",
			    st.st_mode & S_IWOTH ? "every user" : "its group",
			    (unsigned)(st.st_mode & 07777));
	else
		return true;
	return false;
}

/* Append s to cfg's services (which take it), growing the array by doubling. */
static int push_service(struct config *cfg, size_t *cap, struct svc_conf *s)
{
	if (cfg->nsvcs == *cap) {
		size_t n = *cap ? *cap * 2 : 16;
		struct svc_conf **v = realloc(cfg->svcs, n * sizeof(*v));
		if (!v) {
			svc_conf_unref(s);
			return -ENOMEM;
		}
		cfg->svcs = v;
		*cap = n;
	}
	cfg->svcs[cfg->nsvcs++] = s;
	return 0;
}

int config_load(const char *path, struct config **out, struct errlist *errs)
{
	*out = NULL;
	size_t nerr0 = errs->n;
	FILE *f = fopen(path, "re");
	if (!f) {
		errlist_add(errs, path, 0, "%s", strerror(errno));
		return -1;
	}
	struct stat fst;
	if (fstat(fileno(f), &fst) == 0 && S_ISDIR(fst.st_mode)) {
		/* fopen takes a directory and reading it fails: it would look empty */
		errlist_add(errs, path, 0, "%s", strerror(EISDIR));
		fclose(f);
		return -1;
	}
	if (!trusted(f, path, errs)) {
		fclose(f);
		return -1;
	}
	struct config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg || !(cfg->path = strdup(path)) || !(cfg->dir = dir_of(path))) {
		fclose(f);
		config_free(cfg);
		errlist_add(errs, path, 0, "out of memory");
		return -1;
	}
	default_policy(&cfg->defaults);

	/* inih's settings are process globals (Debian builds them as variables) */
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_initial_alloc = 4096;
	ini_max_line = MAX_LINE;
	ini_allow_multiline = true;
	ini_allow_inline_comments = false;
	ini_stop_on_first_error = false;
	ini_allow_no_value = false;

	struct reader r = {.f = f, .path = path, .errs = errs, .at_start = true};
	int rc = ini_parse_stream(read_piece, &r, on_pair, &r);
	if (ferror(f)) /* a read error ends the file early: what came before is not all of it */
		errlist_add(errs, path, 0, "read error after line %d: %s", r.lines_done,
			    strerror(errno));
	fclose(f);
	if (rc > 0 && !r.first_syntax)
		errlist_add(errs, path, rc, "syntax error");
	else if (rc < 0 || r.oom)
		errlist_add(errs, path, 0, "out of memory");

	struct ctx c = {.file = path, .base = cfg->dir, .errs = errs, .cfg = cfg};
	struct hashmap names = {0}; /* the services so far */
	size_t cap = 0;
	/* [evmon] first: its policy keys are every service's defaults */
	int evmon_line = 0;
	for (size_t i = 0; i < r.nsecs; i++) {
		if (strcmp(r.secs[i].name, "evmon"))
			continue;
		if (evmon_line) {
			errlist_add(errs, path, r.secs[i].line,
				    "duplicate section [evmon] (first on line %d)", evmon_line);
			continue;
		}
		evmon_line = r.secs[i].line;
		c.pol = &cfg->defaults;
		apply_section(&c, &r.secs[i]);
	}
	for (size_t i = 0; i < r.nsecs; i++) {
		const struct rsec *sec = &r.secs[i];
		if (!strcmp(sec->name, "evmon"))
			continue;
		if (strncmp(sec->name, "service:", 8)) {
			errlist_add(errs, path, sec->line,
				    "unknown section [%s] (expected [evmon] or [service:NAME])", sec->name);
			continue;
		}
		const char *name = sec->name + 8;
		if (!config_valid_name(name)) {
			errlist_add(errs, path, sec->line,
				    "bad service name '%s' (1-128 letters, digits, _ . @ -)", name);
			continue;
		}
		struct hnode *first = hmap_get(&names, name);
		if (first) {
			errlist_add(errs, path, sec->line, "duplicate service '%s' (first on line %d)",
				    name, HMAP_ENTRY(first, struct svc_conf, node)->line);
			continue;
		}
		struct svc_conf *s = service_new(name, &cfg->defaults, sec->line);
		if (!s || push_service(cfg, &cap, s) < 0 || hmap_add(&names, &s->node, s->name) < 0) {
			errlist_add(errs, path, sec->line, "out of memory");
			continue;
		}
		c.svc = s;
		c.pol = &s->pol;
		c.command_seen = false;
		c.l_command = c.l_directory = c.l_user = c.l_group = c.l_out = 0;
		apply_section(&c, sec);
		check_service(&c, s, cfg->log_dir, sec->line);
		c.svc = NULL;
		cfg->ninstances += s->instances;
	}
	hmap_clear(&names);
	free_sections(r.secs, r.nsecs);
	if (errs->n > nerr0) {
		errlist_sort(errs, nerr0);
		config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

struct svc_conf *config_service(const struct config *cfg, const char *name, const struct conf_kv *kv,
				size_t nkv, const char *where, struct errlist *errs)
{
	size_t nerr0 = errs->n;
	if (!config_valid_name(name)) {
		errlist_add(errs, where, 0, "bad service name '%s' (1-128 letters, digits, _ . @ -)",
			    name);
		return NULL;
	}
	struct svc_policy defaults;
	if (cfg)
		defaults = cfg->defaults;
	else
		default_policy(&defaults);
	struct svc_conf *s = service_new(name, &defaults, 0);
	if (!s) {
		errlist_add(errs, where, 0, "out of memory");
		return NULL;
	}
	struct ctx c = {.file = where, .base = cfg ? cfg->dir : NULL, .errs = errs, .svc = s,
			.pol = &s->pol};
	for (size_t i = 0; i < nkv; i++) {
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = !strcmp(kv[i].key, kv[j].key);
		if (dup) {
			/* reported and not applied, as in a file: a second command would leak the first */
			errlist_add(errs, where, 0, "duplicate key '%s'", kv[i].key);
			continue;
		}
		c.key = kv[i].key;
		set_key(&c, kv[i].key, kv[i].value);
	}
	check_service(&c, s, cfg ? cfg->log_dir : NULL, 0);
	if (errs->n > nerr0) {
		svc_conf_unref(s);
		return NULL;
	}
	return s;
}

/* ------------------------------------------------------------ lifetime */

struct svc_conf *svc_conf_ref(struct svc_conf *c)
{
	c->refs++;
	return c;
}

void svc_conf_unref(struct svc_conf *c)
{
	if (!c || --c->refs > 0)
		return;
	free(c->name);
	free(c->argv);
	free(c->env);
	free(c->directory);
	free(c->user);
	free(c->group);
	free(c->groups);
	free(c);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nsvcs; i++)
		svc_conf_unref(cfg->svcs[i]);
	free(cfg->svcs);
	free(cfg->path);
	free(cfg->dir);
	free(cfg->socket);
	free(cfg->log_dir);
	free(cfg);
}

/* ---------------------------------------------------------- comparing */

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static bool words_eq(char **a, char **b)
{
	if (!a || !b)
		return a == b;
	for (; *a && *b; a++, b++)
		if (strcmp(*a, *b))
			return false;
	return !*a && !*b;
}

static bool policy_eq(const struct svc_policy *a, const struct svc_policy *b)
{
	return a->restart == b->restart && a->set == b->set && a->max_retries == b->max_retries &&
	       !memcmp(a->codes, b->codes, sizeof(a->codes)) && a->codes_set == b->codes_set &&
	       a->start_ms == b->start_ms && a->start_retries == b->start_retries &&
	       a->backoff_initial_ms == b->backoff_initial_ms &&
	       a->backoff_max_ms == b->backoff_max_ms && a->backoff_jitter == b->backoff_jitter &&
	       a->stable_ms == b->stable_ms && a->stop_signal == b->stop_signal &&
	       a->stop_timeout_ms == b->stop_timeout_ms && a->kill_group == b->kill_group &&
	       a->autostart == b->autostart && a->set_umask == b->set_umask &&
	       a->umask == b->umask && a->out[0] == b->out[0] && a->out[1] == b->out[1];
	/* log_max_bytes, log_backups, log_timestamps: applied to the running service */
}

bool svc_conf_equal(const struct svc_conf *a, const struct svc_conf *b)
{
	return words_eq(a->argv, b->argv) && words_eq(a->env, b->env) &&
	       str_eq(a->directory, b->directory) && a->set_uid == b->set_uid &&
	       a->set_gid == b->set_gid && a->uid == b->uid && a->gid == b->gid &&
	       a->ngroups == b->ngroups &&
	       (!a->ngroups || !memcmp(a->groups, b->groups, a->ngroups * sizeof(gid_t))) &&
	       policy_eq(&a->pol, &b->pol);
}

/* ------------------------------------------------------------ building */

/*
 * The environment overrides: the [service] environment, then EVMON_SERVICE
 * (the service's name) and, for instances, EVMON_INSTANCE. One block:
 * pointers, then our strings (the configured ones are borrowed; the
 * library copies them all).
 */
static char **extra_env(const struct svc_conf *c, const char *name, unsigned instance)
{
	char own[2][192];
	size_t nown = 1, n = 0;
	snprintf(own[0], sizeof(own[0]), "EVMON_SERVICE=%s", name);
	if (c->instances > 1) {
		snprintf(own[1], sizeof(own[1]), "EVMON_INSTANCE=%u", instance);
		nown = 2;
	}
	size_t owned_bytes = 0;
	for (size_t i = 0; i < nown; i++)
		owned_bytes += strlen(own[i]) + 1;
	for (char **e = c->env; e && *e; e++)
		n++;
	char **out = malloc((n + nown + 1) * sizeof(*out) + owned_bytes);
	if (!out)
		return NULL;
	char *store = (char *)(out + n + nown + 1);
	size_t k = 0;
	for (char **e = c->env; e && *e; e++)
		out[k++] = *e;
	for (size_t i = 0; i < nown; i++) {
		size_t l = strlen(own[i]) + 1;
		memcpy(store, own[i], l);
		out[k++] = store;
		store += l;
	}
	out[k] = NULL;
	return out;
}

int config_build(const struct svc_conf *c, unsigned instance, struct svc_build *b)
{
	memset(b, 0, sizeof(*b));
	int r = c->instances > 1 ? asprintf(&b->name, "%s:%u", c->name, instance)
				 : ((b->name = strdup(c->name)) ? 0 : -1);
	if (r < 0) {
		b->name = NULL;
		return -ENOMEM;
	}
	b->env = extra_env(c, b->name, instance);
	if (!b->env) {
		free(b->name);
		b->name = NULL;
		return -ENOMEM;
	}
	struct evm_service_opts *o = &b->opts;
	const struct svc_policy *p = &c->pol;
	o->name = b->name;
	o->spawn.argv = c->argv;
	/*
	 * Its own session: a Ctrl-C or SIGHUP meant for the daemon's terminal
	 * or process group must not reach the services behind the daemon's back
	 * (the daemon stops them by their stop_signal and stop_timeout).
	 */
	o->spawn.flags |= EVM_SPAWN_SETSID;
	o->spawn.env_extra = b->env;
	o->spawn.cwd = c->directory;
	if (c->set_uid) {
		o->spawn.flags |= EVM_SPAWN_SETUID;
		o->spawn.uid = c->uid;
	}
	if (c->set_gid) {
		o->spawn.flags |= EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS;
		o->spawn.gid = c->gid;
		o->spawn.groups = c->groups;
		o->spawn.ngroups = c->ngroups;
	}
	if (p->set_umask) {
		o->spawn.flags |= EVM_SPAWN_UMASK;
		o->spawn.umask = p->umask;
	}
	o->restart = p->restart;
	o->set = p->set;
	o->max_retries = p->max_retries;
	if (p->codes_set) {
		size_t n = 0;
		for (int i = 0; i < 256; i++)
			if (p->codes[i / 64] & (1ull << (i % 64)))
				b->codes[n++] = i;
		o->success_codes = b->codes;
		o->nsuccess_codes = n;
	}
	o->start_ms = p->start_ms;
	o->start_retries = p->start_retries;
	o->backoff_initial_ms = p->backoff_initial_ms;
	o->backoff_max_ms = p->backoff_max_ms;
	o->backoff_jitter = p->backoff_jitter;
	o->stable_ms = p->stable_ms;
	o->stop_signal = p->stop_signal;
	o->stop_timeout_ms = p->stop_timeout_ms;
	o->kill_group = p->kill_group;
	return 0;
}

void config_build_free(struct svc_build *b)
{
	free(b->name);
	free(b->env);
	memset(b, 0, sizeof(*b));
}
