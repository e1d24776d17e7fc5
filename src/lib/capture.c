/*
 * capture.c - EVM_STDIO_CAPTURE: a child's stdout/stderr collected by the
 * loop into a bounded buffer that comes with the exit (evm_proc_output), and
 * evm_run, fork+exec+wait with the output for simple callers.
 *
 * The loop reads the pipe as data comes (so the child never blocks on a full
 * pipe), keeps up to capture_max bytes and drops the rest (truncated). When
 * the exit is reported, what the child wrote before it exited is already in
 * the pipe: it is read then, without waiting for a grandchild that may hold
 * the pipe open, and the pipe is closed.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX (1u << 20)

struct evm__capture {
	struct evm__watch w; /* first: the watch dispatches to it */
	struct evm_loop *loop;
	int fd;
	char *buf;
	size_t len, cap, max;
	bool truncated;
};

static void close_capture(struct evm__capture *c)
{
	if (c->fd < 0)
		return;
	evm__epoll_del(c->loop, c->fd);
	close(c->fd);
	c->fd = -1;
}

/* read what is there now; false at EOF or on an error */
static bool read_some(struct evm__capture *c)
{
	for (;;) {
		char scratch[4096], *dst = scratch;
		size_t room = sizeof(scratch);
		if (c->len < c->max) {
			if (c->cap - c->len < 4096 && c->cap < c->max) {
				size_t ncap = c->cap ? c->cap * 2 : 4096;
				if (ncap > c->max)
					ncap = c->max;
				char *nb = realloc(c->buf, ncap);
				if (nb) {
					c->buf = nb;
					c->cap = ncap;
				}
			}
			if (c->cap > c->len) {
				dst = c->buf + c->len;
				room = c->cap - c->len;
			}
		}
		ssize_t n = read(c->fd, dst, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		if (n == 0)
			return false;
		if (dst == scratch)
			c->truncated = true; /* past capture_max (or out of memory): dropped */
		else
			c->len += (size_t)n;
	}
}

static void on_readable(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	struct evm__capture *c = (struct evm__capture *)w;
	(void)loop;
	(void)events;
	if (c->fd >= 0 && !read_some(c))
		close_capture(c);
}

int evm__capture_start(struct evm_proc *p, int slot, int fd, size_t max)
{
	struct evm__proc_more *m = evm__proc_more(p);
	struct evm__capture *c = m ? calloc(1, sizeof(*c)) : NULL;
	if (!c)
		return -ENOMEM;
	c->w.cb = on_readable;
	c->loop = p->loop;
	c->fd = fd;
	c->max = max ? max : DEFAULT_MAX;
	m->cap[slot] = c;
	/* without a watch (no epoll memory) the pipe is read at the exit only */
	evm__epoll_add(p->loop, fd, EPOLLIN, &c->w);
	return 0;
}

void evm__capture_drain(struct evm_proc *p)
{
	for (int i = 1; i < 3 && p->more; i++) {
		struct evm__capture *c = p->more->cap[i];
		if (c && c->fd >= 0) {
			read_some(c);
			close_capture(c);
		}
	}
}

void evm__capture_free(struct evm_proc *p)
{
	for (int i = 1; i < 3 && p->more; i++) {
		struct evm__capture *c = p->more->cap[i];
		if (!c)
			continue;
		if (c->fd >= 0)
			close(c->fd); /* not reached through the loop: its loop is gone */
		free(c->buf);
		free(c);
		p->more->cap[i] = NULL;
	}
}

const char *evm_proc_output(const struct evm_proc *p, int slot, size_t *len, bool *truncated)
{
	const struct evm__capture *c = p && slot >= 1 && slot <= 2 && evm_proc_exited(p) && p->more
					       ? p->more->cap[slot] : NULL;
	if (len)
		*len = c ? c->len : 0;
	if (truncated)
		*truncated = c && c->truncated;
	return c && c->buf ? c->buf : c ? "" : NULL;
}

static char *take(struct evm_proc *p, int slot, size_t *len, bool *truncated)
{
	struct evm__capture *c = p->more ? p->more->cap[slot] : NULL;
	*len = 0;
	*truncated = false;
	if (!c)
		return NULL;
	char *s = malloc(c->len + 1);
	if (s) {
		if (c->len)
			memcpy(s, c->buf, c->len);
		s[c->len] = 0;
		*len = c->len;
	}
	*truncated = c->truncated || !s;
	return s;
}

int evm_run(const struct evm_spawn_opts *opts, struct evm_run_result *res)
{
	if (!opts || !res)
		return -EINVAL;
	memset(res, 0, sizeof(*res));
	/* a pipe's end would stay in a proc the caller never sees: a child filling it hangs us */
	for (int i = 0; i < 3; i++)
		if (opts->stdio[i].mode == EVM_STDIO_PIPE)
			return -EINVAL;
	struct evm_spawn_opts o = *opts;
	for (int i = 1; i < 3; i++)
		if (o.stdio[i].mode == EVM_STDIO_INHERIT)
			o.stdio[i].mode = EVM_STDIO_CAPTURE;
	o.on_exit = NULL;
	o.handler = NULL;
	o.flags &= ~(unsigned)EVM_SPAWN_NOWAIT; /* its failures are this call's to return */
	struct evm_loop *loop;
	int r = evm_loop_new(&loop, NULL);
	if (r < 0)
		return r;
	struct evm_proc *p;
	r = evm_spawn(loop, &o, &p);
	if (r == 0) {
		while (!evm_proc_exited(p) && (r = evm_loop_run_once(loop, -1)) >= 0)
			;
		if (r >= 0) {
			r = 0;
			evm_proc_wait(p, &res->exit, 0); /* exited: copies the record */
			res->out = take(p, 1, &res->out_len, &res->out_truncated);
			res->err = take(p, 2, &res->err_len, &res->err_truncated);
		}
		evm_proc_unref(p);
	}
	evm_loop_free(loop);
	return r;
}

void evm_run_result_free(struct evm_run_result *res)
{
	if (!res)
		return;
	free(res->out);
	free(res->err);
	res->out = res->err = NULL;
}
