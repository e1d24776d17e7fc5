/*
 * confdeps.c - the checks of the dependencies of a config (requires and
 * after, see config.h): every name is a service of the same file, no
 * service names itself, and the graph of both keys has no cycle (a cycle
 * would leave each of its services waiting for another forever).
 *
 * A word is NAME (a definition: with instances, all of them) or, in
 * requires, NAME:COND with COND the state to wait for (ready, healthy).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_dep_name_len(const char *word, bool after)
{
	const char *colon = strchr(word, ':');
	if (!colon)
		return (int)strlen(word);
	if (after || (strcmp(colon + 1, "ready") && strcmp(colon + 1, "healthy")))
		return -1;
	return (int)(colon - word);
}

const char *config_dep_word_error(const char *word, bool after)
{
	const char *colon = strchr(word, ':');
	if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1))
		return "an instance cannot be named: the definition's name stands for all its "
		       "instances";
	return after ? "after takes names only" : "the condition can be :ready or :healthy";
}

const char *config_dep_cond(const char *word)
{
	const char *colon = strchr(word, ':');
	return colon ? colon + 1 : "ready";
}

struct dnode {
	struct hnode node;
	char *name;
	int color; /* 0 new, 1 on the path, 2 done */
};

/* The index of the service a word names, or -1. */
static long word_target(const struct hashmap *m, const struct dnode *nodes, const char *w, bool after)
{
	int len = config_dep_name_len(w, after);
	if (len < 0 || len > 128)
		return -1;
	char name[130];
	memcpy(name, w, (size_t)len);
	name[len] = '\0';
	struct hnode *h = hmap_get(m, name);
	return h ? HMAP_ENTRY(h, struct dnode, node) - nodes : -1;
}

/* Unknown names, itself, bad conditions: said once per word. */
static void check_words(const struct config *cfg, const struct hashmap *m, const struct dnode *nodes,
			struct errlist *errs)
{
	static const char *const key[2] = {"requires", "after"};
	for (size_t i = 0; i < cfg->nsvcs; i++) {
		const struct svc_conf *s = cfg->svcs[i];
		char **lists[2] = {s->requires, s->after};
		for (int k = 0; k < 2; k++) {
			for (char **w = lists[k]; w && *w; w++) {
				int len = config_dep_name_len(*w, k == 1);
				long t = word_target(m, nodes, *w, k == 1);
				if (len < 0)
					errlist_add(errs, s->file ? s->file : cfg->path, s->dep_line[k],
						    "%s: '%s': %s", key[k], *w,
						    config_dep_word_error(*w, k == 1));
				else if (t < 0)
					errlist_add(errs, s->file ? s->file : cfg->path, s->dep_line[k],
						    "%s: unknown service '%.*s'", key[k], len, *w);
				else if ((size_t)t == i)
					errlist_add(errs, s->file ? s->file : cfg->path, s->dep_line[k],
						    "%s: service %s depends on itself", key[k], s->name);
			}
		}
	}
}

/* The i-th dependency of s (requires first, then after), or NULL past the last; *after set. */
static const char *nth_word(const struct svc_conf *s, size_t i, bool *after, int *line)
{
	size_t n = 0;
	for (char **w = s->requires; w && *w; w++, n++)
		if (n == i) {
			*after = false;
			*line = s->dep_line[0];
			return *w;
		}
	for (char **w = s->after; w && *w; w++, n++)
		if (n == i) {
			*after = true;
			*line = s->dep_line[1];
			return *w;
		}
	return NULL;
}

/* "a -> b -> c -> a": the path from the stack entry of t to the top, then t. */
static void report_cycle(const struct config *cfg, const size_t *stack, size_t depth, size_t t,
			 int line, bool after, struct errlist *errs)
{
	char msg[600];
	size_t used = 0, from = depth;
	while (from > 0 && stack[from - 1] != t)
		from--;
	if (from > 0)
		from--;
	for (size_t k = from; k < depth && used < sizeof(msg) - 140; k++)
		used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s -> ",
					 cfg->svcs[stack[k]]->name);
	snprintf(msg + used, sizeof(msg) - used, "%s", cfg->svcs[t]->name);
	const struct svc_conf *last = cfg->svcs[stack[depth - 1]]; /* whose key closes it */
	errlist_add(errs, last->file ? last->file : cfg->path, line, "%s: dependency cycle: %s",
		    after ? "after" : "requires", msg);
}

/* Depth first, without recursion (a chain of 10,000 services is fine). */
static void find_cycles(const struct config *cfg, const struct hashmap *m, struct dnode *nodes,
			struct errlist *errs)
{
	size_t *stack = calloc(cfg->nsvcs + 1, sizeof(*stack));
	size_t *edge = calloc(cfg->nsvcs + 1, sizeof(*edge));
	if (!stack || !edge) {
		errlist_add(errs, cfg->path, 0, "out of memory");
		free(stack);
		free(edge);
		return;
	}
	for (size_t root = 0; root < cfg->nsvcs; root++) {
		if (nodes[root].color)
			continue;
		size_t depth = 1;
		stack[0] = root;
		edge[0] = 0;
		nodes[root].color = 1;
		while (depth) {
			size_t i = stack[depth - 1];
			bool after;
			int line;
			const char *w = nth_word(cfg->svcs[i], edge[depth - 1]++, &after, &line);
			if (!w) {
				nodes[i].color = 2;
				depth--;
				continue;
			}
			long t = word_target(m, nodes, w, after);
			if (t < 0 || (size_t)t == i || nodes[t].color == 2)
				continue;
			if (nodes[t].color == 1) {
				report_cycle(cfg, stack, depth, (size_t)t, line, after, errs);
				continue;
			}
			nodes[t].color = 1;
			stack[depth] = (size_t)t;
			edge[depth] = 0;
			depth++;
		}
	}
	free(stack);
	free(edge);
}

void config_check_deps(const struct config *cfg, struct errlist *errs)
{
	bool any = false;
	for (size_t i = 0; i < cfg->nsvcs && !any; i++)
		any = cfg->svcs[i]->requires || cfg->svcs[i]->after;
	if (!any)
		return;
	struct dnode *nodes = calloc(cfg->nsvcs, sizeof(*nodes));
	struct hashmap m = {0};
	for (size_t i = 0; nodes && i < cfg->nsvcs; i++) {
		nodes[i].name = cfg->svcs[i]->name;
		if (hmap_add(&m, &nodes[i].node, nodes[i].name) < 0) {
			free(nodes);
			nodes = NULL;
		}
	}
	if (!nodes) {
		errlist_add(errs, cfg->path, 0, "out of memory");
		hmap_clear(&m);
		return;
	}
	check_words(cfg, &m, nodes, errs);
	find_cycles(cfg, &m, nodes, errs);
	hmap_clear(&m);
	free(nodes);
}
