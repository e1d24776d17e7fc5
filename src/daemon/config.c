/*
 * config.c - the daemon's INI configuration (see config.h).
 *
 * Two phases. Reading (confread.c): the file and the files it includes
 * into sections of key = value with their file:line. Interpreting (the key
 * table of confkeys.c): [evmon] first (its policy keys are defaults,
 * wherever the section is), then each [service:NAME]. Nothing stops at the
 * first mistake: all of them are collected with file:line.
 */
#include "config.h"

#include "confkeys.h"
#include "confread.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The keys of section i go to the file it is in: messages, relative paths, the sort rank. */
static void in_section(struct conf_ctx *c, const struct conf_read *r, size_t i)
{
	const struct conf_file *f = &r->files[r->secs[i].file];
	c->file = f->path;
	c->base = f->dir;
	c->errs->rank = (int)r->secs[i].file;
}

/* [evmon], at most once: its policy keys are every service's defaults, wherever it is. */
static void apply_evmon(struct conf_ctx *c, const struct conf_read *r)
{
	size_t first = (size_t)-1;
	for (size_t i = 0; i < r->nsecs; i++) {
		if (strcmp(r->secs[i].name, "evmon"))
			continue;
		in_section(c, r, i);
		if (first != (size_t)-1) {
			char where[600];
			conf_read_where(r, r->secs[i].file, r->secs[first].file, r->secs[first].line,
					where, sizeof(where));
			errlist_add(c->errs, c->file, r->secs[i].line,
				    "duplicate section [evmon] (first %s)", where);
			continue;
		}
		first = i;
		c->pol = &c->cfg->defaults;
		conf_apply(c, r->secs[i].kv, r->secs[i].n);
	}
}

/* Where the first [service:NAME] is (an error path: a walk is fine). */
static void first_service(const struct conf_read *r, size_t dup, char *buf, size_t len)
{
	for (size_t i = 0; i < dup; i++)
		if (!strcmp(r->secs[i].name, r->secs[dup].name)) {
			conf_read_where(r, r->secs[dup].file, r->secs[i].file, r->secs[i].line, buf, len);
			return;
		}
	snprintf(buf, len, "before");
}

/* Every [service:NAME], in file order, into c->cfg. */
static void apply_services(struct conf_ctx *c, const struct conf_read *r)
{
	struct config *cfg = c->cfg;
	struct hashmap names = {0}; /* the services so far */
	size_t cap = 0;
	for (size_t i = 0; i < r->nsecs; i++) {
		const struct conf_section *sec = &r->secs[i];
		const char *name = sec->name + 8;
		if (!strcmp(sec->name, "evmon"))
			continue;
		in_section(c, r, i);
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
		if (config_reserved_name(name)) {
			errlist_add(c->errs, c->file, sec->line, "service name '%s' is reserved: %s",
				    name, config_reserved_name(name));
			continue;
		}
		if (hmap_get(&names, name)) {
			char where[600];
			first_service(r, i, where, sizeof(where));
			errlist_add(c->errs, c->file, sec->line, "duplicate service '%s' (first %s)",
				    name, where);
			continue;
		}
		struct svc_conf *s = conf_service_new(name, &cfg->defaults, sec->line);
		if (!s || push_service(cfg, &cap, s) < 0 || hmap_add(&names, &s->node, s->name) < 0) {
			errlist_add(c->errs, c->file, sec->line, "out of memory");
			continue;
		}
		if (sec->file && !(s->file = strdup(c->file)))
			errlist_add(c->errs, c->file, sec->line, "out of memory");
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
	size_t nerr0 = errs->n, total0 = errlist_total(errs);
	int rank0 = errs->rank;
	struct conf_read r;
	if (conf_read(path, &r, errs) < 0) {
		conf_read_free(&r);
		return -1;
	}
	struct config *cfg = calloc(1, sizeof(*cfg));
	if (cfg)
		cfg->idle_timeout_ms = CONFIG_IDLE_TIMEOUT_MS;
	if (!cfg || !(cfg->path = strdup(path)) || !(cfg->dir = strdup(r.files[0].dir))) {
		conf_read_free(&r);
		config_free(cfg);
		errlist_add(errs, path, 0, "out of memory");
		return -1;
	}
	conf_default_policy(&cfg->defaults);
	struct conf_ctx c = {.file = path, .base = cfg->dir, .errs = errs, .cfg = cfg,
			     .problems = &cfg->problems, .notes = &cfg->notes};
	apply_evmon(&c, &r);
	apply_services(&c, &r);
	conf_read_free(&r);
	config_check_deps(cfg, errs);
	errs->rank = rank0;
	if (errlist_total(errs) > total0) {
		errlist_sort(errs, nerr0);
		config_free(cfg);
		return -1;
	}
	errlist_sort(&cfg->problems, 0);
	errlist_sort(&cfg->notes, 0);
	*out = cfg;
	return 0;
}

struct svc_conf *config_service(const struct config *cfg, const char *name, const struct conf_kv *kv,
				size_t nkv, const char *where, struct errlist *errs,
				struct errlist *notes)
{
	size_t total0 = errlist_total(errs);
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
	struct conf_ctx c = {.file = where, .base = cfg ? cfg->dir : NULL, .errs = errs,
			     .notes = notes, .svc = s, .pol = &s->pol};
	conf_apply(&c, pairs, nkv);
	free(pairs);
	conf_check_service(&c, s, cfg ? cfg->log_dir : NULL, 0);
	if (errlist_total(errs) > total0) {
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
	free(c->file);
	free(c->argv);
	free(c->ready_check);
	free(c->env);
	free(c->env_files);
	free(c->rlimits);
	free(c->directory);
	free(c->pidfile);
	free(c->user);
	free(c->group);
	for (size_t i = 0; i < sizeof(c->limits) / sizeof(c->limits[0]); i++)
		free(c->limits[i]);
	free(c->groups);
	free(c->problem);
	free(c->requires);
	free(c->after);
	free(c->health.argv);
	probe_target_free(&c->health.probe);
	free(c->added_def);
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
	errlist_free(&cfg->notes);
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
	       a->stop_timeout_ms == b->stop_timeout_ms && a->autostart == b->autostart &&
	       a->reload_signal == b->reload_signal;
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
	       a->pol.kill_mode == b->pol.kill_mode && a->pol.track == b->pol.track &&
	       str_eq(a->pidfile, b->pidfile) && limits_eq(a, b) &&
	       a->ids_unresolved == b->ids_unresolved &&
	       (!a->ids_unresolved || (str_eq(a->user, b->user) && str_eq(a->group, b->group))) &&
	       a->nrlimits == b->nrlimits &&
	       (!a->nrlimits || !memcmp(a->rlimits, b->rlimits, a->nrlimits * sizeof(*a->rlimits))) &&
	       a->set_nice == b->set_nice && a->nice == b->nice && a->set_oom == b->set_oom &&
	       a->oom_score_adj == b->oom_score_adj && a->ready == b->ready &&
	       a->ready_fd == b->ready_fd && words_eq(a->ready_check, b->ready_check) &&
	       a->ready_timeout_ms == b->ready_timeout_ms &&
	       a->ready_interval_ms == b->ready_interval_ms &&
	       a->ready_check_timeout_ms == b->ready_check_timeout_ms &&
	       a->watchdog_ms == b->watchdog_ms;
}

/* The health keys: applied to the running service too (health_configure). */
static bool health_eq(const struct health_conf *a, const struct health_conf *b)
{
	return words_eq(a->argv, b->argv) && probe_target_eq(&a->probe, &b->probe) &&
	       a->interval_ms == b->interval_ms &&
	       a->timeout_ms == b->timeout_ms && a->start_period_ms == b->start_period_ms &&
	       a->start_interval_ms == b->start_interval_ms && a->retries == b->retries && a->action == b->action;
}

bool svc_conf_equal(const struct svc_conf *a, const struct svc_conf *b)
{
	/* what it requires, or its essential, applies in place too: "updated", not "unchanged" */
	return svc_conf_same_run(a, b) && policy_eq(&a->pol, &b->pol) &&
	       health_eq(&a->health, &b->health) && words_eq(a->requires, b->requires) &&
	       words_eq(a->after, b->after) && a->essential == b->essential;
}

/* ------------------------------------------------------------ building */

/*
 * The environment overrides: the [service] environment, then EVMON_SERVICE
 * (the service's name), for instances EVMON_INSTANCE, and the daemon's
 * EVMON_DAEMON_ID (daemon.c), which an environment = of the service's must
 * not replace: after a crash it is how the next daemon knows the service's
 * processes for its own (takeover.c). One block:
 * pointers, then our strings (the configured ones are borrowed; the
 * library copies them all).
 */
static char **extra_env(const struct svc_conf *c, const char *name, unsigned instance,
			const char *check)
{
	char own[4][192];
	size_t nown = 1, n = 0;
	snprintf(own[0], sizeof(own[0]), "EVMON_SERVICE=%s", name);
	if (c->instances > 1)
		snprintf(own[nown++], sizeof(own[0]), "EVMON_INSTANCE=%u", instance);
	const char *id = getenv("EVMON_DAEMON_ID");
	if (id)
		snprintf(own[nown++], sizeof(own[0]), "EVMON_DAEMON_ID=%s", id);
	if (check)
		snprintf(own[nown++], sizeof(own[0]), "EVMON_CHECK=%s", check);
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
		if (strncmp(*e, "EVMON_CHECK=", 12)) /* a check's mark only: a service's is killed as one */
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
	return config_build_check(c, instance, NULL, b);
}

int config_build_check(const struct svc_conf *c, unsigned instance, const char *check,
		       struct svc_build *b)
{
	memset(b, 0, sizeof(*b));
	int r = c->instances > 1 ? asprintf(&b->name, "%s:%u", c->name, instance)
				 : ((b->name = strdup(c->name)) ? 0 : -1);
	if (r < 0) {
		b->name = NULL;
		return -ENOMEM;
	}
	b->env = extra_env(c, b->name, instance, check);
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
	if (c->set_uid && !c->ids_own) {
		o->spawn.flags |= EVM_SPAWN_SETUID;
		o->spawn.uid = c->uid;
	}
	if (c->set_gid && !c->ids_own) {
		o->spawn.flags |= EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS;
		o->spawn.gid = c->gid;
		o->spawn.groups = c->groups;
		o->spawn.ngroups = c->ngroups;
	}
	if (p->set_umask) {
		o->spawn.flags |= EVM_SPAWN_UMASK;
		o->spawn.umask = p->umask;
	}
	o->spawn.rlimits = c->rlimits;
	o->spawn.nrlimits = c->nrlimits;
	o->spawn.flags |= (c->set_nice ? EVM_SPAWN_NICE : 0) | (c->set_oom ? EVM_SPAWN_OOM_SCORE_ADJ : 0);
	o->spawn.nice = c->nice;
	o->spawn.oom_score_adj = c->oom_score_adj;
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
	/* the other kinds are watched by ready.c, which declares the service ready */
	if (c->ready != READY_STARTED) {
		o->ready = EVM_READY_DECLARED;
		o->ready_timeout_ms = c->ready_timeout_ms;
		o->watchdog_ms = c->watchdog_ms;
	}
	o->start_ms = p->start_ms;
	o->start_retries = p->start_retries;
	o->backoff_initial_ms = p->backoff_initial_ms;
	o->backoff_max_ms = p->backoff_max_ms;
	o->backoff_jitter = p->backoff_jitter;
	o->stable_ms = p->stable_ms;
	o->stop_signal = p->stop_signal;
	o->stop_timeout_ms = p->stop_timeout_ms;
	o->kill_mode = p->kill_mode ? p->kill_mode : EVM_KILL_TREE;
	o->track = p->track ? p->track : EVM_TRACK_TREE;
	o->pidfile = c->pidfile;
	return 0;
}

void config_build_free(struct svc_build *b)
{
	free(b->name);
	free(b->env);
	memset(b, 0, sizeof(*b));
}
