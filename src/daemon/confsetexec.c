/*
 * confsetexec.c - setters of the keys that say what a service runs and how:
 * its command and environment, umask, outputs, nice and oom_score_adj, its
 * rlimits and its cgroup's limits (see confset.h).
 */
#include "confset.h"
#include "confvalue.h"

#include "argv.h"

#include <stdlib.h>
#include <string.h>

void conf_set_command(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char ***argv = field;
	const char *err = NULL;
	int n = cli_split(v, argv, &err);
	if (n < 0) {
		conf_bad(c, "%s", err);
	} else if (n == 0 || !(*argv)[0][0]) {
		/* no argv[0] to check or run (or '': no program has that name): as if there were
		 * no command */
		conf_bad(c, n ? "empty program name ('')" : "empty command");
		free(*argv);
		*argv = NULL;
	}
}

void conf_set_environment(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char ***env = field;
	const char *err = NULL;
	int n = cli_split(v, env, &err);
	if (n < 0)
		conf_bad(c, "%s", err);
	for (int i = 0; i < n; i++) {
		/*
		 * KEY=VALUE with a KEY of no blank (a quote gone astray). Not a
		 * shell's names only: discovery.type=single-node (Elasticsearch),
		 * my-var are what Docker and supervisord pass on too.
		 */
		const char *e = (*env)[i];
		size_t klen = strcspn(e, "= \t\n\r");
		if (!klen || e[klen] != '=')
			conf_bad(c, "'%s' is not KEY=VALUE (a KEY without blanks)", e);
	}
	if (n == 0) {
		free(*env);
		*env = NULL;
	}
}

void conf_set_umask(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_umask(v, field))
		conf_bad(c, "'%s' is not an octal umask (e.g. 022)", v);
	c->pol->set_umask = true;
}

void conf_set_output(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	bool is_err = k->arg;
	if (!conf_parse_output(v, is_err, field))
		conf_bad(c, "'%s' is not one of inherit, null, log, console%s", v, is_err ? ", stdout" : "");
}

/* nice = -20..19, oom_score_adj = -1000..1000 (arg: which) */
void conf_set_adjust(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	int lo = k->arg ? -1000 : -20, hi = k->arg ? 1000 : 19;
	if (!conf_parse_int(v, lo, hi, field)) {
		conf_bad(c, "'%s' is not a number from %d to %d", v, lo, hi);
		return;
	}
	*(k->arg ? &c->svc->set_oom : &c->svc->set_nice) = true;
}

/* limit_RESOURCE = N | SOFT:HARD (a number, with k, M or G, or infinity): systemd's LimitRESOURCE= */
void conf_set_rlimit(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
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

/* A cgroup limit (arg: enum evm_cgroup_limit), kept as written: the kernel's syntax. */
void conf_set_limit(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	char **p = field;
	const char *what;
	bool ok = conf_parse_cgroup_limit(v, (unsigned)k->arg, &what);
	if (!ok)
		conf_bad(c, "'%s' is not %s", v, what);
	free(*p);
	*p = ok ? strdup(v) : NULL;
}
