/*
 * epoll.c - the epoll backend: the only file that calls epoll_create1,
 * epoll_ctl and epoll_wait.
 *
 * Every registrant starts with a struct evm__watch, so an event's data.ptr
 * dispatches anything. Within one wait, watches run by priority, highest
 * first, then in the kernel's order. A watch named in the events array stays
 * allocated until the iteration ends (the loop releases freed objects only
 * then), so a callback may free a watch whose event is still to come.
 */
#include "internal.h"

#include <errno.h>
#include <unistd.h>

/* events per epoll_wait, on the stack; the static evmon-init, which watches a
   handful of fds, builds with fewer: 12 kB less stack (RSS) */
#ifndef EVM_MAX_EVENTS
#define EVM_MAX_EVENTS 1024
#endif

int evm__epoll_open(struct evm_loop *loop)
{
	loop->epfd = evm__above_stdio(epoll_create1(EPOLL_CLOEXEC));
	return loop->epfd < 0 ? -errno : 0;
}

void evm__epoll_close(struct evm_loop *loop)
{
	if (loop->epfd >= 0)
		close(loop->epfd);
	loop->epfd = -1;
}

int evm__epoll_add(struct evm_loop *loop, int fd, uint32_t events, struct evm__watch *w)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};
	return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int evm__epoll_mod(struct evm_loop *loop, int fd, uint32_t events, struct evm__watch *w)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};
	return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void evm__epoll_del(struct evm_loop *loop, int fd)
{
	/* ENOENT/EBADF here means the caller closed first: a bug, but harmless */
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int evm__epoll_wait(struct evm_loop *loop, int timeout_ms)
{
	struct epoll_event events[EVM_MAX_EVENTS];
	/* the kernel hands out the rest (and rotates level-triggered ones) next time */
	int max = loop->budget && loop->budget < EVM_MAX_EVENTS ? (int)loop->budget : EVM_MAX_EVENTS;
	int n = epoll_wait(loop->epfd, events, max, timeout_ms);
	/*
	 * A stop and continue of the process (SIGSTOP, a cgroup freezer: docker
	 * pause) ends the wait with EINTR: what became ready meanwhile (a health
	 * check's exit, READY=1, WATCHDOG=1) is taken before the timers that
	 * expired meanwhile judge it missing.
	 */
	if (n < 0 && errno == EINTR && timeout_ms != 0)
		n = epoll_wait(loop->epfd, events, max, 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	loop->now = evm__mono_ns();
	int dispatched = 0;
	for (unsigned prio = EVM__PRIO_FIRST + 1; prio-- > 0;) {
		for (int i = 0; i < n; i++) {
			struct evm__watch *w = events[i].data.ptr;
			if (w->prio != prio)
				continue;
			w->cb(loop, w, events[i].events);
			dispatched++;
		}
	}
	return dispatched;
}
