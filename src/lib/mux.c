/*
 * mux.c - where exits and events go besides the per-process callback:
 * named handlers (routes, like an HTTP router) and subscribers.
 *
 * Routes live in a sorted array. A route exists while a handler is
 * registered for it or a live process names it; processes resolve their
 * route at spawn (O(log n)) and are dispatched at exit by it: the exact
 * name's handler, else the longest registered "prefix/" pattern, else "".
 * Subscribers are a list; an unsubscribed one is marked dead at once and
 * unlinked through the loop's release queue, so an emit walking the list
 * never meets a freed one.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct evm__route {
	char *name;
	evm_exit_cb cb; /* NULL: no handler registered under this exact name */
	void *data;
	unsigned refs;	/* live processes that name it */
};

struct evm_sub {
	unsigned mask;
	bool dead;
	evm_event_cb cb;
	void *data;
	struct evm_loop *loop;
	struct evm_sub *prev, *next;
	struct evm__release rel;
};

/* index of name, or -(insertion point) - 1 */
static ssize_t find(const struct evm_loop *loop, const char *name, size_t len)
{
	size_t lo = 0, hi = loop->nroutes;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *m = loop->routes[mid]->name;
		int c = strncmp(m, name, len);
		if (c == 0)
			c = m[len] ? 1 : 0;
		if (c == 0)
			return (ssize_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(ssize_t)lo - 1;
}

static struct evm__route *lookup(const struct evm_loop *loop, const char *name, size_t len)
{
	ssize_t i = find(loop, name, len);
	return i >= 0 ? loop->routes[i] : NULL;
}

static struct evm__route *create(struct evm_loop *loop, const char *name)
{
	ssize_t i = find(loop, name, strlen(name));
	if (i >= 0)
		return loop->routes[i];
	size_t at = (size_t)(-i - 1);
	if (loop->nroutes == loop->caproutes) {
		size_t cap = loop->caproutes ? loop->caproutes * 2 : 8;
		struct evm__route **r = realloc(loop->routes, cap * sizeof(*r));
		if (!r)
			return NULL;
		loop->routes = r;
		loop->caproutes = cap;
	}
	struct evm__route *r = calloc(1, sizeof(*r));
	if (!r || !(r->name = strdup(name))) {
		free(r);
		return NULL;
	}
	memmove(&loop->routes[at + 1], &loop->routes[at], (loop->nroutes - at) * sizeof(*loop->routes));
	loop->routes[at] = r;
	loop->nroutes++;
	return r;
}

static void maybe_drop(struct evm_loop *loop, struct evm__route *r)
{
	if (r->cb || r->refs)
		return;
	ssize_t i = find(loop, r->name, strlen(r->name));
	if (i >= 0) {
		memmove(&loop->routes[i], &loop->routes[i + 1],
			(loop->nroutes - (size_t)i - 1) * sizeof(*loop->routes));
		loop->nroutes--;
	}
	free(r->name);
	free(r);
}

struct evm__route *evm__route_get(struct evm_loop *loop, const char *name)
{
	struct evm__route *r = create(loop, name);
	if (r)
		r->refs++;
	return r;
}

void evm__route_put(struct evm_loop *loop, struct evm__route *r)
{
	r->refs--;
	maybe_drop(loop, r);
}

const char *evm__route_name(const struct evm__route *r)
{
	return r->name;
}

/*
 * An exit named a handler nobody registered: say so once per name (a typo
 * would otherwise drop exits silently). Names are remembered up to a bound,
 * so a program naming every job differently cannot grow this without limit.
 */
#define UNROUTED_MAX 1024

static void warn_unrouted(struct evm_loop *loop, const char *name, struct evm_proc *proc)
{
	for (size_t i = 0; i < loop->nunrouted; i++)
		if (!strcmp(loop->unrouted[i], name))
			return;
	if (loop->nunrouted == UNROUTED_MAX)
		return;
	if (loop->nunrouted == loop->capunrouted) {
		size_t cap = loop->capunrouted ? loop->capunrouted * 2 : 8;
		char **u = realloc(loop->unrouted, cap * sizeof(*u));
		if (!u)
			return;
		loop->unrouted = u;
		loop->capunrouted = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return;
	loop->unrouted[loop->nunrouted++] = copy;
	char msg[256];
	snprintf(msg, sizeof(msg), "exit of pid %d: no handler registered for \"%s\"%s",
		 (int)proc->pid, name,
		 loop->nunrouted == UNROUTED_MAX ? " (names after this one are not reported)" : "");
	struct evm_event ev = {.type = EVM_EV_WARNING,
			       .pid = proc->pid,
			       .proc = proc,
			       .name = name,
			       .error = -ENOENT,
			       .message = msg};
	evm__emit(loop, &ev);
}

void evm__route_dispatch(struct evm_loop *loop, struct evm__route *r, struct evm_proc *proc,
			 const struct evm_exit *exit)
{
	struct evm__route *h = r->cb ? r : NULL;
	/* longest "prefix/" pattern: cut the name after each '/', from the right */
	for (size_t len = strlen(r->name); !h && len > 0; len--)
		if (r->name[len - 1] == '/' && (h = lookup(loop, r->name, len)) && !h->cb)
			h = NULL;
	if (!h && (h = lookup(loop, "", 0)) && !h->cb)
		h = NULL;
	if (h)
		h->cb(proc, exit, h->data);
	else
		warn_unrouted(loop, r->name, proc);
}

int evm_handle(struct evm_loop *loop, const char *pattern, evm_exit_cb cb, void *data)
{
	if (!loop || !pattern)
		return -EINVAL;
	struct evm__route *r = cb ? create(loop, pattern) : lookup(loop, pattern, strlen(pattern));
	if (!r)
		return cb ? -ENOMEM : 0;
	r->cb = cb;
	r->data = data;
	maybe_drop(loop, r);
	return 0;
}

void evm__mux_free(struct evm_loop *loop)
{
	for (size_t i = 0; i < loop->nroutes; i++) {
		free(loop->routes[i]->name);
		free(loop->routes[i]);
	}
	free(loop->routes);
	loop->routes = NULL;
	loop->nroutes = loop->caproutes = 0;
	for (size_t i = 0; i < loop->nunrouted; i++)
		free(loop->unrouted[i]);
	free(loop->unrouted);
	loop->unrouted = NULL;
	loop->nunrouted = loop->capunrouted = 0;
	while (loop->subs) {
		struct evm_sub *s = loop->subs;
		loop->subs = s->next;
		free(s);
	}
}

/* ------------------------------------------------------------ subscribers */

int evm_subscribe(struct evm_loop *loop, unsigned mask, evm_event_cb cb, void *data,
		  struct evm_sub **out)
{
	if (!loop || !cb || !mask || (mask & ~(unsigned)EVM_EV_ALL))
		return -EINVAL;
	struct evm_sub *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->mask = mask;
	s->cb = cb;
	s->data = data;
	s->loop = loop;
	struct evm_sub **tail = &loop->subs;
	while (*tail) {
		s->prev = *tail;
		tail = &(*tail)->next;
	}
	*tail = s;
	if (out)
		*out = s;
	return 0;
}

static void sub_released(struct evm__release *r)
{
	struct evm_sub *s = evm__container_of(r, struct evm_sub, rel);
	if (s->prev)
		s->prev->next = s->next;
	else
		s->loop->subs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

void evm_unsubscribe(struct evm_sub *s)
{
	if (!s || s->dead)
		return;
	s->dead = true;
	evm__release(s->loop, &s->rel, sub_released);
}

void evm__emit(struct evm_loop *loop, struct evm_event *ev)
{
	if (!ev->time.tv_sec && !ev->time.tv_nsec)
		ev->time = evm__ns_to_ts(evm__real_ns());
	evm__dispatch_enter(loop);
	for (struct evm_sub *s = loop->subs; s; s = s->next)
		if (!s->dead && (s->mask & ev->type))
			s->cb(loop, ev, s->data);
	evm__dispatch_leave(loop);
}
