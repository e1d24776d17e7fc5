/*
 * draining.c - old copies of services still stopping: replaced by a reload,
 * or removed (a reload, ctl remove). A service of the same name (the
 * replacement, or one added meanwhile: ctl remove then ctl add, two
 * reloads) must not start before its old copy is gone: never two copies side
 * by side, and with a cgroup (the same <name>.service) the old stop ends
 * every process in it. Every old copy is here, once, until its service's
 * removal event, so what acts on them all (the shutdown's SIGKILL, a
 * re-exec, the state record) walks this alone.
 *
 * Their stops keep the order of dependencies, as `ctl stop` and the
 * shutdown do: app requires db, and a reload removes (or changes) both: db
 * is stopped once app is gone, not beside it. An old copy that another old
 * copy needs (requires, or starts after) is held: running, detached from
 * its name (evm_service_detach: the replacement takes the name at once), its
 * stop asked for when the last old copy needing it is gone. The links are
 * made once per batch of releases (draining_hold_begin/end: a reload, a
 * ctl remove), when every old copy of the batch is known. A unit being
 * stopped waits for the old copies that need it too (draining_needs).
 */
#include "daemon.h"

#include "config.h"
#include "daemonlog.h"
#include "state.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct draining {
	struct hnode node;	/* the first of its name in d->draining */
	struct draining *next;	/* others of the same name (rare: see add) */
	struct evm_service *svc;
	/* the capture it writes into (its service holds a reference), or NULL */
	const struct svc_output *out;
	struct svc_conf *conf;	 /* the definition it ran (what it needs), or NULL: taken over */
	unsigned refs;		 /* 1 while in d->draining, and 1 for each entry holding it */
	unsigned batch;		 /* the batch of releases it came in */
	unsigned walk;		 /* a cycle check was here (link) */
	bool gone;		 /* its removal came: out of d->draining */
	bool held;		 /* detached, its stop not asked for yet */
	unsigned waiters;	 /* old copies still stopping that need it */
	struct draining **holds; /* the held ones it keeps running */
	size_t nholds, capholds;
	char name[];
};

/*
 * A definition name the old copies still there require or start after, with
 * how many words name it (d->needed): a unit's stop looks its own name up.
 */
struct need {
	struct hnode node;
	unsigned n;
	bool waited; /* a unit's stop waited for it: tried again when it goes */
	char name[];
};

static struct draining *find(struct daemon *d, const char *name)
{
	struct hnode *n = hmap_get(&d->draining, name);
	return n ? HMAP_ENTRY(n, struct draining, node) : NULL;
}

bool units_draining(struct daemon *d, const char *name)
{
	return d->draining.n && find(d, name) != NULL;
}

/* Each entry in d->draining, one at a time: NULL first, NULL after the last. */
static struct draining *next_entry(struct daemon *d, struct draining *g)
{
	if (g && g->next)
		return g->next;
	struct draining *first = g ? find(d, g->name) : NULL;
	struct hnode *n = hmap_next(&d->draining, first ? &first->node : NULL);
	return n ? HMAP_ENTRY(n, struct draining, node) : NULL;
}

/*
 * What u waits for: an old copy of its own name, else one of the same
 * definition under its other form, when a reload changed its instances
 * (web:0 and web:1 still stopping when web comes, or web when web:0 and
 * web:1 come): never two copies of one definition side by side.
 */
struct evm_service *draining_waited(struct daemon *d, const struct unit *u)
{
	if (!d->draining.n)
		return NULL;
	struct draining *g = find(d, u->name);
	const char *colon = strchr(u->name, ':');
	if (g)
		return g->svc;
	if (colon) { /* NAME:i: NAME's */
		char def[256];
		snprintf(def, sizeof(def), "%.*s", (int)(colon - u->name), u->name);
		g = find(d, def);
		return g ? g->svc : NULL;
	}
	size_t n = strlen(u->name); /* NAME: any NAME:i's */
	for (struct hnode *h = hmap_next(&d->draining, NULL); h; h = hmap_next(&d->draining, h)) {
		g = HMAP_ENTRY(h, struct draining, node);
		if (!strncmp(g->name, u->name, n) && g->name[n] == ':')
			return g->svc;
	}
	return NULL;
}

static bool needs_something(const struct svc_conf *c)
{
	return c && ((c->requires && *c->requires) || (c->after && *c->after));
}

/* Each definition name c's requires and after words name, into fn (duplicates too). */
static void each_need(struct daemon *d, const struct svc_conf *c,
		      void (*fn)(struct daemon *d, const char *name))
{
	char **lists[2] = {c->requires, c->after};
	for (int k = 0; k < 2; k++)
		for (char **w = lists[k]; w && *w; w++) {
			char name[300];
			int len = config_dep_name_len(*w, k == 1);
			if (len < 0 || len > 128)
				continue; /* the config check said so */
			snprintf(name, sizeof(name), "%.*s", len, *w);
			fn(d, name);
		}
}

static void need_add(struct daemon *d, const char *name)
{
	struct hnode *h = hmap_get(&d->needed, name);
	if (h) {
		HMAP_ENTRY(h, struct need, node)->n++;
		return;
	}
	size_t len = strlen(name) + 1;
	struct need *e = calloc(1, sizeof(*e) + len);
	if (!e)
		return; /* out of memory: a stop does not wait for this old copy */
	memcpy(e->name, name, len);
	e->n = 1;
	if (hmap_add(&d->needed, &e->node, e->name) < 0)
		free(e);
}

static void need_drop(struct daemon *d, const char *name)
{
	struct hnode *h = hmap_get(&d->needed, name);
	if (!h)
		return;
	struct need *e = HMAP_ENTRY(h, struct need, node);
	if (e->waited)
		d->retry_stops = true; /* on_event: deps_retry_stops */
	if (--e->n)
		return;
	hmap_del(&d->needed, h);
	free(e);
}

/*
 * One entry per stopping service, once (added twice, one entry would
 * outlive the service's removal, and the next unit of that name wait on
 * freed memory). The first of a name stays first: what its unit waits for.
 * NULL when out of memory.
 */
static struct draining *add(struct daemon *d, const char *name, struct evm_service *svc,
			    const struct svc_output *out, struct svc_conf *conf)
{
	struct draining *first = find(d, name);
	for (struct draining *g = first; g; g = g->next)
		if (g->svc == svc)
			return g;
	size_t len = strlen(name) + 1;
	struct draining *g = calloc(1, sizeof(*g) + len);
	if (!g) {
		dlog("service %s: out of memory: a service of that name may start before it stopped", name);
		return NULL;
	}
	g->svc = svc;
	g->out = out;
	g->conf = conf ? svc_conf_ref(conf) : NULL;
	g->refs = 1;
	g->batch = d->hold_batch;
	memcpy(g->name, name, len);
	if (first) {
		g->next = first->next;
		first->next = g;
	} else if (hmap_add(&d->draining, &g->node, g->name) < 0) {
		svc_conf_unref(g->conf);
		free(g);
		return NULL;
	}
	if (needs_something(g->conf)) {
		d->draining_needy++;
		each_need(d, g->conf, need_add);
	}
	return g;
}

struct evm_service *draining_stop(struct daemon *d, struct unit *u, struct evm_service *svc)
{
	enum evm_state st = evm_service_state(svc);
	struct draining *g = add(d, u->name, svc, u->out, u->conf);
	/* held until the batch's end says whether another old copy needs it */
	if (g && d->holding && st != EVM_STATE_STOPPING && evm_service_detach(svc) == 0)
		g->held = true;
	else
		evm_service_remove(svc);
	struct evm_service *first = draining_waited(d, u);
	return first ? first : svc; /* out of memory: waited for, in no list */
}

struct evm_service *units_old(struct daemon *d, const char *name, size_t i, bool *apart)
{
	struct draining *g = units_draining(d, name) ? find(d, name) : NULL;
	for (; g && i; i--)
		g = g->next;
	if (g && apart) { /* a replaced one's pipe is its unit's while the unit keeps that capture */
		struct unit *u = unit_find(d, name);
		*apart = g->out && (!u || g->out != u->out);
	}
	return g ? g->svc : NULL;
}

bool units_old_held(struct daemon *d, const char *name, size_t i, int *sig, uint64_t *ms)
{
	struct draining *g = units_draining(d, name) ? find(d, name) : NULL;
	for (; g && i; i--)
		g = g->next;
	if (!g || !g->held)
		return false;
	const struct svc_policy *p = g->conf ? &g->conf->pol : NULL;
	if (sig)
		*sig = p && p->stop_signal ? p->stop_signal : SIGTERM;
	if (ms)
		*ms = p && (p->set & EVM_SVC_STOP_TIMEOUT) ? p->stop_timeout_ms : 10000;
	return true;
}

bool draining_held(struct daemon *d, const struct evm_service *svc)
{
	const char *name = svc ? evm_service_name(svc) : NULL;
	struct draining *g = name && units_draining(d, name) ? find(d, name) : NULL;
	for (; g; g = g->next)
		if (g->svc == svc)
			return g->held;
	return false;
}

/* The names of old copies still stopping, one at a time: NULL first, NULL at the end. */
const char *units_next_draining(struct daemon *d, const char *prev)
{
	struct draining *at = prev ? find(d, prev) : NULL;
	if (prev && !at)
		return NULL; /* gone meanwhile: never start over */
	struct hnode *n = hmap_next(&d->draining, at ? &at->node : NULL);
	return n ? HMAP_ENTRY(n, struct draining, node)->name : NULL;
}

/*
 * An old copy of name that a daemon before a crash was stopping, adopted
 * again (takeover.c): stopping and removed, a successor of its name waits
 * for it as for any other.
 */
void units_take_old(struct daemon *d, const char *name, struct evm_service *svc)
{
	add(d, name, svc, NULL, NULL); /* its pipe died with the daemon before */
	struct unit *u = unit_find(d, name);
	if (u && !u->old)
		u->old = svc;
}

/* ---------------------------------------------------------- the order */

static void unref(struct draining *g)
{
	if (--g->refs)
		return;
	svc_conf_unref(g->conf);
	free(g->holds);
	free(g);
}

/* Its stop, held for the old copies that needed it, is asked for now. */
static void release(struct draining *g)
{
	g->held = false;
	evm_service_remove(g->svc);
}

/*
 * Does from keep to running, through any chain of holds? (walk marks the way)
 * Depth first with the path on the heap: a chain of 20,000 old copies is no
 * recursion as deep. Out of memory: true, a link not made (a stop not held)
 * rather than a cycle that holds for good.
 */
static bool holds_path(struct draining *from, const struct draining *to, unsigned walk)
{
	struct step {
		struct draining *g;
		size_t i;
	} *path = NULL;
	size_t n = 0, cap = 0;
	bool found = false;
	if (from == to)
		return true;
	from->walk = walk;
	for (struct draining *g = from; g && !found;) {
		if (n == cap) {
			size_t c = cap ? 2 * cap : 16;
			struct step *v = realloc(path, c * sizeof(*v));
			if (!v) {
				found = true;
				break;
			}
			path = v;
			cap = c;
		}
		path[n++] = (struct step){g, 0};
		g = NULL;
		while (n && !g && !found) {
			struct step *st = &path[n - 1];
			if (st->i == st->g->nholds) {
				n--;
				continue;
			}
			struct draining *h = st->g->holds[st->i++];
			if (h == to)
				found = true;
			else if (h->walk != walk) {
				h->walk = walk;
				g = h;
			}
		}
	}
	free(path);
	return found;
}

/* y needs x: x's stop waits for y's end. */
static void link_pair(struct daemon *d, struct draining *y, struct draining *x)
{
	/*
	 * Old copies of different batches (made from different configs) could
	 * need each other: a hold both ways would keep them running for good.
	 * Within one batch (units that were up together) the config's check, or
	 * ctl add's, refused the cycle; those links are made first, so that this
	 * check sees them.
	 */
	if (x->batch != y->batch && holds_path(x, y, ++d->hold_walks))
		return;
	if (y->nholds == y->capholds) {
		size_t cap = y->capholds ? 2 * y->capholds : 4;
		struct draining **v = realloc(y->holds, cap * sizeof(*v));
		if (!v)
			return; /* out of memory: x does not wait for y */
		y->holds = v;
		y->capholds = cap;
	}
	y->holds[y->nholds++] = x;
	x->waiters++;
	x->refs++;
}

static int by_definition(const void *a, const void *b)
{
	const struct draining *x = *(struct draining *const *)a, *y = *(struct draining *const *)b;
	return strcmp(x->conf->name, y->conf->name);
}

/* The first of held[0..n) (sorted by definition) not before the definition called name. */
static size_t first_of(struct draining **held, size_t n, const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(held[mid]->conf->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * y needs the held ones of the definition a word names: linked, if new to
 * each other; cross: those of different batches (else of this one alone).
 */
static void link_word(struct daemon *d, struct draining *y, const char *w, bool after,
		      struct draining **held, size_t n, bool cross)
{
	char name[300];
	int len = config_dep_name_len(w, after);
	if (len < 0 || len > 128)
		return; /* the config check said so */
	snprintf(name, sizeof(name), "%.*s", len, w);
	if (!strcmp(name, y->conf->name))
		return;
	for (size_t k = first_of(held, n, name); k < n && !strcmp(held[k]->conf->name, name); k++) {
		bool mine = y->batch == d->hold_batch, its = held[k]->batch == d->hold_batch;
		if (cross ? mine != its : mine && its)
			link_pair(d, y, held[k]);
	}
}

void draining_hold_begin(struct daemon *d)
{
	d->holding = true;
	d->hold_batch++;
}

/*
 * The batch's old copies are all known: each held one waits for the old
 * copies that need it (of this batch, or still stopping from an earlier
 * one); those that nothing needs stop now.
 */
void draining_hold_end(struct daemon *d)
{
	d->holding = false;
	size_t n = 0, cap = 0;
	struct draining **held = NULL;
	for (struct draining *g = next_entry(d, NULL); g; g = next_entry(d, g)) {
		if (!g->held)
			continue;
		if (n == cap) {
			size_t c = cap ? 2 * cap : 16;
			struct draining **v = realloc(held, c * sizeof(*v));
			if (!v)
				break; /* out of memory: what is not in the list stops at once, below */
			held = v;
			cap = c;
		}
		held[n++] = g;
	}
	if (n)
		qsort(held, n, sizeof(*held), by_definition);
	for (int cross = 0; cross < 2; cross++) /* this batch's links first: see link_pair */
		for (struct draining *y = n && d->draining_needy ? next_entry(d, NULL) : NULL; y;
		     y = next_entry(d, y)) {
			if (!needs_something(y->conf))
				continue;
			for (char **w = y->conf->requires; w && *w; w++)
				link_word(d, y, *w, false, held, n, cross);
			for (char **w = y->conf->after; w && *w; w++)
				link_word(d, y, *w, true, held, n, cross);
		}
	free(held);
	/* the ones nothing needs, and any the list missed (out of memory) */
	for (struct draining *g = next_entry(d, NULL); g; g = next_entry(d, g))
		if (g->held && !g->waiters)
			release(g);
	if (n)
		state_changed(d); /* held: the record says so (no event of the library did) */
}

/* The shutdown: every old copy stops now (the shutdown orders the units, not these). */
void draining_release_all(struct daemon *d)
{
	for (struct draining *g = next_entry(d, NULL); g; g = next_entry(d, g))
		if (g->held)
			release(g);
}

bool draining_needs(struct daemon *d, const struct unit *u)
{
	struct hnode *h = d->needed.n ? hmap_get(&d->needed, u->conf->name) : NULL;
	if (!h)
		return false;
	HMAP_ENTRY(h, struct need, node)->waited = true;
	return true;
}

/* g's service is gone: what it held may stop now. */
static void gone(struct daemon *d, struct draining *g)
{
	g->gone = true;
	if (needs_something(g->conf)) {
		d->draining_needy--;
		each_need(d, g->conf, need_drop);
	}
	struct draining **holds = g->holds;
	size_t n = g->nholds;
	g->holds = NULL;
	g->nholds = 0;
	for (size_t i = 0; i < n; i++) {
		struct draining *x = holds[i];
		if (!x->gone && --x->waiters == 0 && x->held)
			release(x);
		unref(x);
	}
	free(holds);
	unref(g);
}

/* The removed service's entry goes; another of its name, if any, is what is waited for next. */
void draining_done(struct daemon *d, const struct evm_event *ev)
{
	struct draining *first = ev->name ? find(d, ev->name) : NULL;
	if (!first)
		return;
	if (first->svc == ev->service) {
		hmap_del(&d->draining, &first->node);
		struct draining *next = first->next;
		if (next && hmap_add(&d->draining, &next->node, next->name) < 0) {
			/* cannot happen (a del just made room); never leave entries unreachable */
			while (next) {
				struct draining *n = next->next;
				gone(d, next);
				next = n;
			}
		}
		gone(d, first);
		return;
	}
	for (struct draining *g = first; g->next; g = g->next)
		if (g->next->svc == ev->service) {
			struct draining *x = g->next;
			g->next = x->next;
			gone(d, x);
			return;
		}
}

void draining_free(struct daemon *d)
{
	struct hnode *n;
	while ((n = hmap_next(&d->draining, NULL))) {
		hmap_del(&d->draining, n);
		struct draining *g = HMAP_ENTRY(n, struct draining, node);
		while (g) {
			struct draining *next = g->next;
			for (size_t i = 0; i < g->nholds; i++)
				unref(g->holds[i]);
			g->nholds = 0;
			unref(g);
			g = next;
		}
	}
	hmap_clear(&d->draining);
	d->draining_needy = 0;
	while ((n = hmap_next(&d->needed, NULL))) {
		hmap_del(&d->needed, n);
		free(HMAP_ENTRY(n, struct need, node));
	}
	hmap_clear(&d->needed);
}
