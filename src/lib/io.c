/*
 * io.c - the public I/O watchers, on the epoll backend (epoll.c).
 *
 * A watcher freed during an iteration may still be named in the events
 * array of that iteration, so it is removed from epoll and marked dead at
 * once, and freed through the loop's release queue.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

struct evm_io {
	struct evm__watch w;
	struct evm_loop *loop;
	int fd;
	unsigned events;
	bool dead;
	evm_io_cb cb;
	void *data;
	struct evm_io *prev, *next; /* every watcher of the loop, for evm_loop_free */
	struct evm__release rel;
};

static uint32_t to_epoll(unsigned events)
{
	return ((events & EVM_READ) ? EPOLLIN | EPOLLRDHUP : 0) | ((events & EVM_WRITE) ? EPOLLOUT : 0);
}

static void io_ready(struct evm_loop *loop, struct evm__watch *w, uint32_t ev)
{
	struct evm_io *io = (struct evm_io *)w;
	unsigned r = 0;
	(void)loop;
	if (io->dead)
		return;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
		r |= EVM_READ;
	if (ev & EPOLLOUT)
		r |= EVM_WRITE;
	if (ev & EPOLLERR)
		r |= EVM_ERROR;
	if (ev & EPOLLHUP)
		r |= EVM_HANGUP;
	if (ev & EPOLLRDHUP)
		r |= EVM_PEER_CLOSED;
	io->cb(io, io->fd, r, io->data);
}

int evm_io_add(struct evm_loop *loop, int fd, unsigned events, evm_io_cb cb, void *data,
	       struct evm_io **out)
{
	if (!loop || fd < 0 || !cb || (events & ~(unsigned)(EVM_READ | EVM_WRITE)))
		return -EINVAL;
	if (evm__forked(loop))
		return -ECHILD; /* the epoll set is the parent's too */
	struct evm_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->w.cb = io_ready;
	io->loop = loop;
	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->data = data;
	int r = evm__epoll_add(loop, fd, to_epoll(events), &io->w);
	if (r < 0) {
		free(io);
		return r;
	}
	io->next = loop->ios;
	if (io->next)
		io->next->prev = io;
	loop->ios = io;
	if (out)
		*out = io;
	return 0;
}

int evm_io_modify(struct evm_io *io, unsigned events)
{
	if (!io || io->dead || (events & ~(unsigned)(EVM_READ | EVM_WRITE)))
		return -EINVAL;
	if (events == io->events)
		return 0;
	int r = evm__epoll_mod(io->loop, io->fd, to_epoll(events), &io->w);
	if (r == 0)
		io->events = events;
	return r;
}

static void io_released(struct evm__release *r)
{
	free(evm__container_of(r, struct evm_io, rel));
}

void evm_io_free(struct evm_io *io)
{
	if (!io || io->dead)
		return;
	io->dead = true;
	evm__epoll_del(io->loop, io->fd);
	if (io->prev)
		io->prev->next = io->next;
	else
		io->loop->ios = io->next;
	if (io->next)
		io->next->prev = io->prev;
	evm__release(io->loop, &io->rel, io_released);
}

void evm__io_free_all(struct evm_loop *loop)
{
	while (loop->ios)
		evm_io_free(loop->ios);
}
