/*
 * controlsub.c - events subscriptions on the control socket: a subscriber's
 * patterns, publishing a line to those who want it, and the followers
 * handed over across a re-exec.
 *
 * Publishing never blocks and never waits for a reader: a subscriber whose
 * unread output passes max_pending is dropped, and while all clients
 * together hold more than max_total unsent (events, and the replies of
 * those that do not read theirs) the slowest reader is dropped (control.c;
 * control__client_abort: closed by its own callback, never here).
 */
#include "controlint.h"

#include "monotime.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_glob(const char *p)
{
	return strpbrk(p, "*?[") != NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * One block for the pointers and the strings (thousands of names cost no
 * malloc each), the exact names sorted first: an event is a binary search
 * in them plus a fnmatch per glob, not a fnmatch per name (1,000
 * subscribers of 8,000 names each: 0.1 s a event).
 */
int control_subscribe(struct client *cl, const char *const *patterns, size_t n)
{
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += strlen(patterns[i]) + 1;
	char **p = n ? malloc(n * sizeof(*p) + bytes) : NULL;
	if (n && !p)
		return -ENOMEM;
	char *s = p ? (char *)(p + n) : NULL; /* none: NULL + 0 is undefined */
	size_t lo = 0, hi = n;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(patterns[i]) + 1;
		memcpy(s, patterns[i], len);
		p[is_glob(s) ? --hi : lo++] = s;
		s += len;
	}
	if (lo > 1)
		qsort(p, lo, sizeof(*p), cmp_str);
	free(cl->patterns);
	cl->patterns = p;
	cl->npatterns = n;
	cl->nexact = lo;
	cl->subscribed = true;
	return 0;
}

static bool has_exact(const struct client *cl, const char *name)
{
	return bsearch(&name, cl->patterns, cl->nexact, sizeof(*cl->patterns), cmp_str) != NULL;
}

static bool wants(const struct client *cl, const char *service)
{
	if (!cl->npatterns || !service)
		return true; /* daemon-level events go to every subscriber */
	if (has_exact(cl, service))
		return true;
	const char *colon = strchr(service, ':');
	if (colon && cl->nexact) { /* "web" also follows the instances web:0, web:1, ... */
		char def[256];
		size_t len = (size_t)(colon - service);
		if (len < sizeof(def)) {
			memcpy(def, service, len);
			def[len] = '\0';
			if (has_exact(cl, def))
				return true;
		}
	}
	for (size_t i = cl->nexact; i < cl->npatterns; i++) {
		const char *p = cl->patterns[i];
		size_t pl = strlen(p);
		if (!fnmatch(p, service, 0) || (!strncmp(service, p, pl) && service[pl] == ':'))
			return true;
	}
	return false;
}

bool control_wants_event(const struct control *ctl, const char *service)
{
	for (struct client *cl = ctl->clients; cl; cl = cl->next)
		if (cl->subscribed && !cl->aborted && wants(cl, service))
			return true;
	return false;
}

void control_publish(struct control *ctl, const char *service, const char *line)
{
	size_t n = strlen(line);
	for (struct client *cl = ctl->clients; cl; cl = cl->next) {
		if (!cl->subscribed || cl->aborted || !wants(cl, service))
			continue;
		size_t events = cl->out.len - (cl->reply_held < cl->out.len ? cl->reply_held : cl->out.len);
		if (events + n + 1 > ctl->o.max_pending) {
			control__log(ctl, "client %u (pid %d): dropped: %zu bytes of events not read", cl->id,
			             (int)cl->pid, events);
			ctl->dropped++;
			ctl->dropped_bytes += cl->out.len;
			control__client_abort(cl);
			continue;
		}
		cl->publishing = true;
		control__client_line(cl, line, n); /* all clients together: control.c hold_total */
		cl->publishing = false;
		control__client_send(cl);
		control__client_update(cl);
	}
}

/* Send what cl has unsent, waiting for it until deadline (CLOCK_MONOTONIC ms). */
static void flush_until(struct client *cl, int64_t deadline)
{
	control__client_send(cl);
	while (!cl->aborted && cl->out.len) {
		int64_t left = deadline - (int64_t)mono_ms();
		struct pollfd p = {.fd = cl->fd, .events = POLLOUT};
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		control__client_send(cl);
	}
}

unsigned control_followers(struct control *ctl, const struct client *except,
			   control_follower_cb fn, void *data)
{
	unsigned closing = 0;
	/* a follower behind on its events gets them before the exec, up to a second in all */
	int64_t deadline = (int64_t)mono_ms() + 1000;
	for (struct client *cl = ctl->clients; cl; cl = cl->next) {
		if (cl->aborted)
			continue;
		flush_until(cl, deadline); /* who asked too: the events it follows come first */
		if (cl == except)
			continue;
		/* a deferred reply (a wait): answered by the new image (it may have half-closed) */
		bool waiting = cl->pending && !cl->stream && !cl->closing && cl->defer_gone;
		/* else only between requests, with nothing unsent: a reply or a line would be cut */
		if (cl->aborted || cl->raw || cl->stream || cl->out.len || cl->closing ||
		    (!waiting && (cl->pending || (cl->eof && !cl->subscribed)))) {
			closing += !cl->aborted && (cl->raw || cl->stream || cl->pending || cl->out.len);
			continue;
		}
		struct control_handover h;
		if (control_client_handover(cl, &h)) {
			h.waiting = waiting;
			h.id = waiting ? cl->req_id : NULL;
			fn(&h, data);
		}
	}
	return closing;
}

int control_take_follower(struct control *ctl, const struct control_handover *h,
			  struct client **out)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	const char *why = NULL;
	struct client *cl = NULL;
	int r = getsockopt(h->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ? -errno : 0;
	if (out)
		*out = NULL;
	/* it crossed an exec without FD_CLOEXEC: a later exec must not keep it unnamed */
	if (r == 0 && fcntl(h->fd, F_SETFD, FD_CLOEXEC) < 0)
		r = -errno;
	if (r == 0 && !(cl = control__client_new(ctl, h->fd, &cr, &why)))
		r = -ENOMEM;
	if (r == 0 && h->inlen && linebuf_append(&cl->in, h->input, h->inlen) < 0)
		r = -ENOMEM;
	if (r == 0 && h->subscribed && (r = control_subscribe(cl, h->patterns, h->n)) == 0)
		control__count_lasting(cl); /* one handed over by a re-exec: kept, and counted */
	if (cl && r < 0) {
		control__client_abort(cl); /* closed by its callback */
		return r;
	}
	if (!cl) {
		close(h->fd);
		return r;
	}
	control__idle_update(cl); /* as for a client just accepted: it may not wait for ever */
	/*
	 * Whole requests in what it had sent are answered from the loop, even
	 * if nothing more comes: its callback runs once the socket is writable
	 */
	if (h->inlen && memchr(h->input, '\n', h->inlen) && evm_io_modify(cl->io, EVM_READ | EVM_WRITE) == 0)
		cl->events = EVM_READ | EVM_WRITE;
	if (out)
		*out = cl;
	return 0;
}
