/*
 * loop.c - the loop: creation, one iteration, run/stop, embedding, teardown.
 *
 * One iteration: sleep in epoll until an fd is ready or the earliest timer is
 * due (no timer: sleep forever, so an idle loop makes zero wake-ups), then
 * dispatch ready watches, run due timers, and finally release what callbacks
 * freed during the iteration (deferred, because the events array may still
 * name it).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifndef EVM_VERSION_STRING
#define EVM_VERSION_STRING "0.0.0"
#endif

#define MAX_EVENTS 1024

const char *evm_version(void)
{
	return EVM_VERSION_STRING;
}

uint64_t evm__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t evm__real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec evm__ns_to_ts(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	return ts;
}

_Thread_local struct evm_loop *evm__tls_dispatching;

bool evm__on_loop_thread(const struct evm_loop *loop)
{
	return pthread_equal(atomic_load(&((struct evm_loop *)loop)->thread), pthread_self());
}

void evm__wake(struct evm_loop *loop)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already non-zero: a wake-up is pending */
	ssize_t r = write(loop->wakefd, &one, sizeof(one));
	(void)r;
}

static void on_wake(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	uint64_t v;
	(void)w;
	(void)events;
	while (read(loop->wakefd, &v, sizeof(v)) > 0)
		;
	evm__xreq_run_all(loop);
}

static void on_timerfd(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	uint64_t v;
	(void)w;
	(void)events;
	ssize_t r = read(loop->timerfd, &v, sizeof(v));
	(void)r;
	loop->timerfd_armed = UINT64_MAX; /* expired; evm__timerfd_sync re-arms */
}

/* Keep the embedding timerfd armed for the earliest deadline. */
void evm__timerfd_sync(struct evm_loop *loop)
{
	if (loop->timerfd < 0)
		return;
	uint64_t next = evm__heap_next(loop);
	if (next == loop->timerfd_armed)
		return;
	struct itimerspec its = {0};
	if (next != UINT64_MAX) {
		its.it_value.tv_sec = (time_t)(next / 1000000000u);
		its.it_value.tv_nsec = (long)(next % 1000000000u);
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1; /* all-zero would disarm */
	}
	if (timerfd_settime(loop->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		loop->timerfd_armed = next;
}

static int spawn_mode_from_env(void)
{
	const char *m = secure_getenv("EVM_SPAWN_MODE");
	if (m && strcmp(m, "direct") == 0)
		return EVM__SPAWN_DIRECT;
	if (m && strcmp(m, "helper") == 0)
		return EVM__SPAWN_HELPER;
	return EVM__SPAWN_AUTO;
}

int evm_loop_new(struct evm_loop **out, const struct evm_loop_opts *opts)
{
	if (!out)
		return -EINVAL;
	unsigned flags = opts ? opts->flags : 0;
	if (flags & ~(unsigned)(EVM_LOOP_REAPER | EVM_LOOP_NO_SUBREAPER))
		return -EINVAL;

	struct evm_loop *loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->flags = flags;
	atomic_init(&loop->thread, pthread_self());
	loop->epfd = loop->wakefd = loop->sigfd = loop->timerfd = -1;
	loop->devnull = loop->reserve_fd = loop->statusfd = -1;
	loop->timerfd_armed = UINT64_MAX;
	loop->high_fd = -1;
	loop->spawn_mode = spawn_mode_from_env();
	const char *np = secure_getenv("EVM_NO_PIDFD");
	loop->force_nopidfd = np && *np && strcmp(np, "0") != 0;
	getrlimit(RLIMIT_NOFILE, &loop->nofile0);
	loop->now = evm__mono_ns();
	loop->pid = getpid();

	int r = -ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&loop->mu, NULL);
	pthread_cond_init(&loop->cv, &ca);
	pthread_condattr_destroy(&ca);

	/* the direct-spawn child runs on this stack while we wait (vfork) */
	loop->stack_size = 256 * 1024;
	loop->stack = mmap(NULL, loop->stack_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (loop->stack == MAP_FAILED) {
		loop->stack = NULL;
		goto fail;
	}
	mprotect(loop->stack, 4096, PROT_NONE); /* guard page */

	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		goto fail_errno;
	loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->wakefd < 0)
		goto fail_errno;
	loop->wake_w.cb = on_wake;
	r = evm__epoll_add(loop, loop->wakefd, EPOLLIN, &loop->wake_w);
	if (r < 0)
		goto fail;
	loop->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	r = evm__reap_init(loop);
	if (r < 0)
		goto fail;
	*out = loop;
	return 0;

fail_errno:
	r = -errno;
fail:
	evm_loop_free(loop);
	return r;
}

void evm__defer_unref(struct evm_loop *loop, struct evm_proc *proc)
{
	if (loop->ndead == loop->capdead) {
		size_t cap = loop->capdead ? loop->capdead * 2 : 64;
		struct evm_proc **d = realloc(loop->dead, cap * sizeof(*d));
		if (!d) {
			/* cannot defer: leak rather than free something still in use */
			return;
		}
		loop->dead = d;
		loop->capdead = cap;
	}
	loop->dead[loop->ndead++] = proc;
}

static void sweep(struct evm_loop *loop)
{
	/* inner iterations (evm_shutdown) leave freeing to the outermost */
	if (loop->depth > 1)
		return;
	for (size_t i = 0; i < loop->ndead; i++)
		evm__proc_release(loop->dead[i]);
	loop->ndead = 0;
	evm__io_sweep(loop);
	evm__subs_sweep(loop);
	evm__services_sweep(loop);
}

static int wait_ms(struct evm_loop *loop, int timeout_ms)
{
	uint64_t next = evm__heap_next(loop);
	if (next == UINT64_MAX)
		return timeout_ms;
	if (next <= loop->now)
		return 0;
	/* round up: waking a little late is fine, early means a useless wake-up */
	uint64_t ms = (next - loop->now + 999999) / 1000000;
	if (ms > INT32_MAX)
		ms = INT32_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < ms)
		return timeout_ms;
	return (int)ms;
}

int evm_loop_run_once(struct evm_loop *loop, int timeout_ms)
{
	struct epoll_event events[MAX_EVENTS];
	if (!loop)
		return -EINVAL;
	atomic_store(&loop->thread, pthread_self());
	loop->depth++;
	struct evm_loop *outer = evm__tls_dispatching;
	evm__tls_dispatching = loop;
	loop->now = evm__mono_ns();
	int n = epoll_wait(loop->epfd, events, MAX_EVENTS, wait_ms(loop, timeout_ms));
	if (n < 0) {
		int e = errno;
		evm__tls_dispatching = outer;
		loop->depth--;
		return e == EINTR ? 0 : -e;
	}
	loop->now = evm__mono_ns();
	int dispatched = 0;
	/*
	 * SIGCHLD first: reading it before the pidfds are reaped lets us tell
	 * whether it came from a child we will see through its pidfd anyway.
	 */
	for (int i = 0; i < n; i++) {
		if (events[i].data.ptr == &loop->sig_w) {
			evm__reap_sigchld(loop, &loop->sig_w, events[i].events);
			events[i].data.ptr = NULL;
			dispatched++;
		}
	}
	for (int i = 0; i < n; i++) {
		struct evm__watch *w = events[i].data.ptr;
		if (!w)
			continue;
		w->cb(loop, w, events[i].events);
		dispatched++;
	}
	loop->now = evm__mono_ns();
	dispatched += evm__timers_run(loop);
	evm__timerfd_sync(loop);
	sweep(loop);
	evm__tls_dispatching = outer;
	loop->depth--;
	return dispatched;
}

int evm_loop_run(struct evm_loop *loop)
{
	if (!loop)
		return -EINVAL;
	while (!atomic_load(&loop->stop)) {
		int r = evm_loop_run_once(loop, -1);
		if (r < 0)
			return r;
	}
	atomic_store(&loop->stop, false);
	return 0;
}

void evm_loop_stop(struct evm_loop *loop)
{
	if (!loop)
		return;
	atomic_store(&loop->stop, true);
	evm__wake(loop);
}

int evm_loop_fd(struct evm_loop *loop)
{
	if (!loop)
		return -EINVAL;
	if (loop->timerfd < 0) {
		int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (fd < 0)
			return -errno;
		loop->timer_w.cb = on_timerfd;
		int r = evm__epoll_add(loop, fd, EPOLLIN, &loop->timer_w);
		if (r < 0) {
			close(fd);
			return r;
		}
		loop->timerfd = fd;
		evm__timerfd_sync(loop);
	}
	return loop->epfd;
}

int evm_loop_timeout(struct evm_loop *loop)
{
	if (!loop)
		return -1;
	loop->now = evm__mono_ns();
	return wait_ms(loop, -1);
}

uint64_t evm_loop_now(const struct evm_loop *loop)
{
	return loop ? loop->now : 0;
}

size_t evm_loop_alive(const struct evm_loop *loop)
{
	if (!loop)
		return 0;
	/* the deferred orphan scan is bookkeeping, not work of the caller's */
	return loop->nlive + loop->nheap - (loop->scan_timer ? 1 : 0);
}

void evm__warn(struct evm_loop *loop, int error, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct evm_event ev = {.type = EVM_EV_WARNING, .error = error, .message = msg};
	evm__emit(loop, &ev);
}

void evm_loop_free(struct evm_loop *loop)
{
	if (!loop)
		return;
	loop->depth++; /* no deferred sweeps from here on: we free directly */
	evm__services_free(loop);
	/*
	 * Closing before the kills: their exits are not reported, and other
	 * threads' spawns are refused, so an exit callback that starts a new
	 * process cannot keep this loop killing and respawning forever.
	 */
	pthread_mutex_lock(&loop->mu);
	loop->closing = true;
	pthread_mutex_unlock(&loop->mu);
	/* nothing is left behind: kill and reap every child we still watch */
	while (loop->live)
		evm__reap_kill_sync(loop->live);
	for (size_t i = 0; i < loop->ndead; i++)
		evm__proc_release(loop->dead[i]);
	free(loop->dead);
	evm__spawner_stop(loop);
	evm__reap_fini(loop);
	evm__io_free_all(loop);
	evm__timers_free(loop);
	evm__mux_free(loop);
	evm__pidmap_free(&loop->pids);

	/* threads blocked in evm_spawn or evm_proc_wait must leave first */
	evm__xreq_run_all(loop);
	pthread_mutex_lock(&loop->mu);
	while (atomic_load(&loop->nwaiters) > 0)
		pthread_cond_wait(&loop->cv, &loop->mu);
	pthread_mutex_unlock(&loop->mu);

	if (loop->timerfd >= 0)
		close(loop->timerfd);
	if (loop->devnull >= 0)
		close(loop->devnull);
	if (loop->statusfd >= 0)
		close(loop->statusfd);
	if (loop->reserve_fd >= 0)
		close(loop->reserve_fd);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	if (loop->stack)
		munmap(loop->stack, loop->stack_size);
	pthread_cond_destroy(&loop->cv);
	pthread_mutex_destroy(&loop->mu);
	free(loop);
}
