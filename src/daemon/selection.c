/*
 * selection.c - which services a control request names (see selection.h):
 * "name" or "names", each an exact service, a definition's NAME (all its
 * instances) or a glob.
 *
 * Invariants: a selection holds each unit once, in the order first named
 * (units are marked while it is built, and every mark is cleared before it
 * returns); an error is replied to the client here and nothing is kept.
 * Its cost is that of its distinct names and the units they select: a name
 * said again is skipped (9,300 copies of a NAME of 5,000 instances held the
 * loop 4-8 s), and a NAME's instances come from the daemon's index of the
 * definitions (units.c), not from a walk of every service.
 */
#include "selection.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static int units_push(struct selection *s, struct unit *u)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct unit **v = realloc(s->u, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->u = v;
		s->cap = cap;
	}
	s->u[s->n++] = u;
	return 0;
}

static int sel_push(struct selection *s, struct unit *u)
{
	if (u->mark)
		return 0;
	int r = units_push(s, u);
	if (r == 0)
		u->mark = true;
	return r;
}

/* The patterns of a request: "names": [...] or "name": "...". */
int selection_patterns(const cJSON *req, const char ***out, size_t *n)
{
	const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "names");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
	*out = NULL;
	*n = 0;
	if (cJSON_IsString(name)) {
		*out = malloc(sizeof(char *));
		if (!*out)
			return -ENOMEM;
		(*out)[0] = name->valuestring;
		*n = 1;
		return 0;
	}
	if (name && !cJSON_IsNull(name))
		return -EINVAL;
	if (!names || cJSON_IsNull(names))
		return 0;
	if (!cJSON_IsArray(names))
		return -EINVAL;
	size_t k = (size_t)cJSON_GetArraySize(names);
	*out = calloc(k ? k : 1, sizeof(char *));
	if (!*out)
		return -ENOMEM;
	const cJSON *it;
	cJSON_ArrayForEach(it, names) {
		if (!cJSON_IsString(it)) {
			free(*out);
			*out = NULL;
			return -EINVAL;
		}
		(*out)[(*n)++] = it->valuestring;
	}
	return 0;
}

/*
 * Resolve a request's names: an exact service name, the NAME of a definition
 * with instances (all of them), or a glob ("web:*", "*"). Every name must
 * match something. No names: all services if all_if_none, else an error.
 */
int selection_get(struct daemon *d, struct client *cl, const cJSON *req, bool all_if_none,
		  struct selection *sel)
{
	const char **pats;
	size_t np;
	memset(sel, 0, sizeof(*sel));
	int r = selection_patterns(req, &pats, &np);
	if (r == -EINVAL) {
		control_reply_error(cl, "\"names\" must be an array of strings (or \"name\" a string)");
		return -1;
	}
	if (r < 0) {
		control_reply_error(cl, "out of memory");
		return -1;
	}
	if (np == 0 && !all_if_none) {
		free(pats);
		control_reply_error(cl, "which service? give \"names\"");
		return -1;
	}
	/* each glob is a walk of every service: 16,000 of them held the loop 6 s */
	size_t globs = 0;
	for (size_t i = 0; i < np; i++)
		globs += has_glob(pats[i]);
	if (globs > SELECTION_MAX_GLOBS) {
		free(pats);
		control_reply_error(cl, "%zu names with a wildcard (*?[): at most %d in one request",
				    globs, SELECTION_MAX_GLOBS);
		return -1;
	}
	/* the names resolved so far: a copy of one adds nothing, and is not resolved again */
	struct hashmap seen = {0};
	struct hnode *seen_nodes = calloc(np ? np : 1, sizeof(*seen_nodes));
	r = seen_nodes ? 0 : -ENOMEM;
	for (size_t i = 0; i < np && r == 0; i++) {
		const char *p = pats[i];
		if (hmap_get(&seen, p))
			continue;
		if ((r = hmap_add(&seen, &seen_nodes[i], p)) < 0)
			break;
		struct unit *u = unit_find(d, p);
		if (u) {
			r = sel_push(sel, u);
			continue;
		}
		bool any = false, glob = has_glob(p);
		if (!glob) { /* a definition's NAME: its instances left (units.c's index) */
			for (struct unit *v = unit_first_instance(d, p); v && r == 0; v = v->inst_next) {
				any = true;
				r = sel_push(sel, v);
			}
		} else { /* a walk of every service: at most SELECTION_MAX_GLOBS */
			for (u = d->first; u && r == 0; u = u->next) {
				if (!fnmatch(p, u->name, 0)) {
					any = true;
					r = sel_push(sel, u);
				}
			}
		}
		if (!any && r == 0) {
			control_reply_error(cl, "no such service: %s", p);
			r = -1;
		}
	}
	hmap_clear(&seen);
	free(seen_nodes);
	if (np == 0)
		for (struct unit *u = d->first; u && r == 0; u = u->next)
			r = sel_push(sel, u);
	for (size_t i = 0; i < sel->n; i++)
		sel->u[i]->mark = false;
	free(pats);
	if (r == -ENOMEM)
		control_reply_error(cl, "out of memory");
	if (r < 0) {
		free(sel->u);
		sel->u = NULL;
		return -1;
	}
	return 0;
}
