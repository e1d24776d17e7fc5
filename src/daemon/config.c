/*
 * config.c - the daemon's INI configuration (see config.h).
 *
 * Two phases. Reading: libinih tokenizes the file and we keep every
 * key = value with its line, per section, untouched; our line reader watches
 * the raw lines as well, because inih's handler gets no line numbers and is
 * not called for section headers (so empty or repeated sections would go
 * unnoticed) nor for lines it cannot parse (it reports only the first).
 * Interpreting (the key table of confkeys.c): [evmon] first (its policy keys
 * are defaults, wherever the section is in the file), then each
 * [service:NAME]. Nothing stops at the
 * first mistake: all of them are collected with file:line.
 *
 * A NUL byte anywhere is a mistake (reported with its file:line): a text
 * reader would see the line end there and drop the rest unnoticed.
 *
 * Inline comments are off (like Python 3's configparser): "a ; b" in a
 * command stays a command. Comments are lines starting with ; or #.
 * An indented line continues the previous value (joined with a space).
 */
#include "config.h"

#include "confkeys.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LINE 65536

/* ------------------------------------------------------------- reading */

struct rsec {
	char *name;
	int line;
	struct conf_pair *kv; /* key and value: our copies */
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
	bool nul;	     /* current line has a NUL byte (reported) */
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

/*
 * fgets for inih, except that a NUL byte is not the end of the line: it
 * is reported (a config with one is refused) and read as a blank, so that
 * "command = x\0 y" can never quietly run "x".
 */
static char *get_piece(char *buf, int size, FILE *f, bool *nul)
{
	int n = 0, ch = 0;
	while (n < size - 1 && ch != '\n' && (ch = getc_unlocked(f)) != EOF) {
		if (ch == '\0') {
			*nul = true;
			ch = ' ';
		}
		buf[n++] = (char)ch;
	}
	buf[n] = '\0';
	return n ? buf : NULL;
}

static char *read_piece(char *buf, int size, void *stream)
{
	struct reader *r = stream;
	bool nul = false;
	char *s = get_piece(buf, size, r->f, &nul);
	if (!s)
		return NULL;
	size_t len = strlen(s);
	if (r->at_start) {
		r->line = r->lines_done + 1;
		r->line_len = 0;
		r->too_long = false;
		r->nul = false;
		look_at_line(r, s);
	}
	if (nul && !r->nul) {
		r->nul = true;
		errlist_add(r->errs, r->path, r->line, "NUL byte in the line: a config file is text");
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
		struct conf_pair *kv = &s->kv[s->n - 1];
		char *joined = NULL;
		if (asprintf(&joined, "%s %s", kv->value, value) < 0) {
			r->oom = true;
			return 1;
		}
		free((char *)kv->value);
		kv->value = joined;
		return 1;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct conf_pair *kv = realloc(s->kv, cap * sizeof(*kv));
		if (!kv) {
			r->oom = true;
			return 1;
		}
		s->kv = kv;
		s->cap = cap;
	}
	char *k = strdup(name), *v = strdup(value ? value : "");
	if (!k || !v) {
		free(k);
		free(v);
		r->oom = true;
		return 1;
	}
	s->kv[s->n++] = (struct conf_pair){.key = k, .value = v, .line = r->line};
	return 1;
}

static void free_sections(struct rsec *secs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < secs[i].n; j++) {
			free((char *)secs[i].kv[j].key);
			free((char *)secs[i].kv[j].value);
		}
		free(secs[i].kv);
		free(secs[i].name);
	}
	free(secs);
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

/* The file, if it may be read (not a directory; a root daemon's is root's alone). */
static FILE *open_config(const char *path, struct errlist *errs)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		errlist_add(errs, path, 0, "%s", strerror(errno));
		return NULL;
	}
	struct stat fst;
	if (fstat(fileno(f), &fst) == 0 && S_ISDIR(fst.st_mode)) {
		/* fopen takes a directory and reading it fails: it would look empty */
		errlist_add(errs, path, 0, "%s", strerror(EISDIR));
		fclose(f);
		return NULL;
	}
	if (!trusted(f, path, errs)) {
		fclose(f);
		return NULL;
	}
	return f;
}

/* Every section and key = value of f into r (which owns them after), and the syntax errors. */
static void read_sections(FILE *f, const char *path, struct reader *r, struct errlist *errs)
{
	/* inih's settings are process globals (Debian builds them as variables) */
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_initial_alloc = 4096;
	ini_max_line = MAX_LINE;
	ini_allow_multiline = true;
	ini_allow_inline_comments = false;
	ini_stop_on_first_error = false;
	ini_allow_no_value = false;

	*r = (struct reader){.f = f, .path = path, .errs = errs, .at_start = true};
	int rc = ini_parse_stream(read_piece, r, on_pair, r);
	if (ferror(f)) /* a read error ends the file early: what came before is not all of it */
		errlist_add(errs, path, 0, "read error after line %d: %s", r->lines_done,
			    strerror(errno));
	if (rc > 0 && !r->first_syntax)
		errlist_add(errs, path, rc, "syntax error");
	else if (rc < 0 || r->oom)
		errlist_add(errs, path, 0, "out of memory");
}

/* [evmon], at most once: its policy keys are every service's defaults, wherever it is. */
static void apply_evmon(struct conf_ctx *c, const struct reader *r)
{
	int evmon_line = 0;
	for (size_t i = 0; i < r->nsecs; i++) {
		if (strcmp(r->secs[i].name, "evmon"))
			continue;
		if (evmon_line) {
			errlist_add(c->errs, c->file, r->secs[i].line,
				    "duplicate section [evmon] (first on line %d)", evmon_line);
			continue;
		}
		evmon_line = r->secs[i].line;
		c->pol = &c->cfg->defaults;
		conf_apply(c, r->secs[i].kv, r->secs[i].n);
	}
}

/* Every [service:NAME], in file order, into c->cfg. */
static void apply_services(struct conf_ctx *c, const struct reader *r)
{
	struct config *cfg = c->cfg;
	struct hashmap names = {0}; /* the services so far */
	size_t cap = 0;
	for (size_t i = 0; i < r->nsecs; i++) {
		const struct rsec *sec = &r->secs[i];
		const char *name = sec->name + 8;
		if (!strcmp(sec->name, "evmon"))
			continue;
		if (strncmp(sec->name, "service:", 8)) {
			errlist_add(c->errs, c->file, sec->line,
				    "unknown section [%s] (expected [evmon] or [service:NAME])", sec->name);
			continue;
		}
		if (!config_valid_name(name)) {
			errlist_add(c->errs, c->file, sec->line,
				    "bad service name '%s' (1-128 letters, digits, _ . @ -)", name);
			continue;
		}
		struct hnode *first = hmap_get(&names, name);
		if (first) {
			errlist_add(c->errs, c->file, sec->line, "duplicate service '%s' (first on line %d)",
				    name, HMAP_ENTRY(first, struct svc_conf, node)->line);
			continue;
		}
		struct svc_conf *s = conf_service_new(name, &cfg->defaults, sec->line);
		if (!s || push_service(cfg, &cap, s) < 0 || hmap_add(&names, &s->node, s->name) < 0) {
			errlist_add(c->errs, c->file, sec->line, "out of memory");
			continue;
		}
		c->svc = s;
		c->pol = &s->pol;
		conf_apply(c, sec->kv, sec->n);
		conf_check_service(c, s, cfg->log_dir, sec->line);
		c->svc = NULL;
		cfg->ninstances += s->instances;
	}
	hmap_clear(&names);
}

int config_load(const char *path, struct config **out, struct errlist *errs)
{
	*out = NULL;
	size_t nerr0 = errs->n;
	FILE *f = open_config(path, errs);
	if (!f)
		return -1;
	struct config *cfg = calloc(1, sizeof(*cfg));
	if (cfg)
		cfg->idle_timeout_ms = CONFIG_IDLE_TIMEOUT_MS;
	if (!cfg || !(cfg->path = strdup(path)) || !(cfg->dir = dir_of(path))) {
		fclose(f);
		config_free(cfg);
		errlist_add(errs, path, 0, "out of memory");
		return -1;
	}
	conf_default_policy(&cfg->defaults);
	struct reader r;
	read_sections(f, path, &r, errs);
	fclose(f);
	struct conf_ctx c = {.file = path, .base = cfg->dir, .errs = errs, .cfg = cfg,
			     .problems = &cfg->problems};
	apply_evmon(&c, &r);
	apply_services(&c, &r);
	free_sections(r.secs, r.nsecs);
	config_check_deps(cfg, errs);
	if (errs->n > nerr0) {
		errlist_sort(errs, nerr0);
		config_free(cfg);
		return -1;
	}
	errlist_sort(&cfg->problems, 0);
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
		conf_default_policy(&defaults);
	struct svc_conf *s = conf_service_new(name, &defaults, 0);
	struct conf_pair *pairs = calloc(nkv ? nkv : 1, sizeof(*pairs));
	if (!s || !pairs) {
		svc_conf_unref(s);
		free(pairs);
		errlist_add(errs, where, 0, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < nkv; i++)
		pairs[i] = (struct conf_pair){.key = kv[i].key, .value = kv[i].value};
	struct conf_ctx c = {.file = where, .base = cfg ? cfg->dir : NULL, .errs = errs, .svc = s,
			     .pol = &s->pol};
	conf_apply(&c, pairs, nkv);
	free(pairs);
	conf_check_service(&c, s, cfg ? cfg->log_dir : NULL, 0);
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
	for (size_t i = 0; i < sizeof(c->limits) / sizeof(c->limits[0]); i++)
		free(c->limits[i]);
	free(c->groups);
	free(c->problem);
	free(c->requires);
	free(c->after);
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
	free(cfg->metrics_listen);
	free(cfg->console_prefix);
	errlist_free(&cfg->problems);
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

/* What decides the service's fate: evm_service_set_policy changes it in place. */
static bool policy_eq(const struct svc_policy *a, const struct svc_policy *b)
{
	return a->restart == b->restart && a->set == b->set && a->max_retries == b->max_retries &&
	       !memcmp(a->codes, b->codes, sizeof(a->codes)) && a->codes_set == b->codes_set &&
	       a->start_ms == b->start_ms && a->start_retries == b->start_retries &&
	       a->backoff_initial_ms == b->backoff_initial_ms &&
	       a->backoff_max_ms == b->backoff_max_ms && a->backoff_jitter == b->backoff_jitter &&
	       a->stable_ms == b->stable_ms && a->stop_signal == b->stop_signal &&
	       a->stop_timeout_ms == b->stop_timeout_ms && a->autostart == b->autostart;
	/* log_max_bytes, log_backups, log_timestamps: applied to the running service */
}

static bool limits_eq(const struct svc_conf *a, const struct svc_conf *b)
{
	for (size_t i = 0; i < sizeof(a->limits) / sizeof(a->limits[0]); i++)
		if (!str_eq(a->limits[i], b->limits[i]))
			return false;
	return true;
}

bool svc_conf_same_run(const struct svc_conf *a, const struct svc_conf *b)
{
	return words_eq(a->argv, b->argv) && words_eq(a->env, b->env) &&
	       str_eq(a->directory, b->directory) && a->set_uid == b->set_uid &&
	       a->set_gid == b->set_gid && a->uid == b->uid && a->gid == b->gid &&
	       a->ngroups == b->ngroups &&
	       (!a->ngroups || !memcmp(a->groups, b->groups, a->ngroups * sizeof(gid_t))) &&
	       a->pol.set_umask == b->pol.set_umask && a->pol.umask == b->pol.umask &&
	       a->pol.out[0] == b->pol.out[0] && a->pol.out[1] == b->pol.out[1] &&
	       a->pol.kill_group == b->pol.kill_group && limits_eq(a, b) &&
	       a->ids_unresolved == b->ids_unresolved &&
	       (!a->ids_unresolved || (str_eq(a->user, b->user) && str_eq(a->group, b->group)));
}

bool svc_conf_equal(const struct svc_conf *a, const struct svc_conf *b)
{
	return svc_conf_same_run(a, b) && policy_eq(&a->pol, &b->pol);
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
