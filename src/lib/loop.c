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
#include <unistd.h>

#ifndef EVM_VERSION_STRING
#define EVM_VERSION_STRING "0.0.0"
#endif

const char *evm_version(void)
{
	return EVM_VERSION_STRING;
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
	evm__post_run(loop);
	if (loop->scan_pending) {
		loop->scan_pending = false;
		evm__reap_scan(loop);
	}
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

/*
 * fork() copies a loop, but not what it stands on: the epoll set and the
 * children's pidfds are shared with the parent. The child's run would take
 * the parent's events, its free would SIGKILL the parent's children and
 * take their watches out of the parent's epoll. A count of fork()s (an
 * atfork handler) tells the child that the loop is not its own.
 */
static atomic_uint forks;
static pthread_once_t forks_once = PTHREAD_ONCE_INIT;

static void fork_child(void)
{
	atomic_fetch_add(&forks, 1);
	evm__reap_forked();
}

static void forks_init(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

bool evm__forked(const struct evm_loop *loop)
{
	return loop->forks != atomic_load_explicit(&forks, memory_order_relaxed);
}

int evm_loop_new(struct evm_loop **out, const struct evm_loop_opts *opts)
{
	if (!out)
		return -EINVAL;
	unsigned flags = opts ? opts->flags : 0;
	unsigned budget = opts ? opts->budget : 0;
	if (flags & ~(unsigned)(EVM_LOOP_REAPER | EVM_LOOP_NO_SUBREAPER | EVM_LOOP_SPAWN_LOCAL_CPU))
		return -EINVAL;

	struct evm_loop *loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->flags = flags;
	loop->budget = budget;
	loop->release_tail = &loop->releasing;
	loop->posts_tail = &loop->posts;
	atomic_init(&loop->thread, pthread_self());
	loop->epfd = loop->wakefd = loop->sigfd = loop->timerfd = -1;
	loop->devnull = loop->reserve_fd = loop->statusfd = -1;
	loop->timerfd_armed = UINT64_MAX;
	loop->high_fd = -1;
	loop->spawn_mode = spawn_mode_from_env();
	loop->no_pin = !(flags & EVM_LOOP_SPAWN_LOCAL_CPU);
	const char *np = secure_getenv("EVM_NO_PIDFD");
	loop->force_nopidfd = np && *np && strcmp(np, "0") != 0;
	const char *rp = secure_getenv("EVM_REAPER_PIDFDS");
	loop->reaper_pidfds = rp && *rp && strcmp(rp, "0") != 0;
	getrlimit(RLIMIT_NOFILE, &loop->nofile0);
	loop->now = evm__mono_ns();
	loop->pid = getpid();
	pthread_once(&forks_once, forks_init);
	loop->forks = atomic_load(&forks);

	int r = -ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&loop->mu, NULL);
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&loop->claim_mu, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_cond_init(&loop->cv, &ca);
	pthread_condattr_destroy(&ca);

	/* the direct-spawn child runs on this stack while we wait (vfork) */
	loop->stack_size = 256 * 1024;
	if (!(loop->stack = evm__stack_map(loop->stack_size)))
		goto fail;

	if ((r = evm__epoll_open(loop)) < 0)
		goto fail;
	loop->wakefd = evm__above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (loop->wakefd < 0)
		goto fail_errno;
	loop->wake_w.cb = on_wake;
	r = evm__epoll_add(loop, loop->wakefd, EPOLLIN, &loop->wake_w);
	if (r < 0)
		goto fail;
	loop->reserve_fd = evm__above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
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

void evm__release(struct evm_loop *loop, struct evm__release *r, void (*fn)(struct evm__release *))
{
	r->fn = fn;
	if (loop->dispatching == 0) {
		fn(r);
		return;
	}
	r->next = NULL;
	*loop->release_tail = r;
	loop->release_tail = &r->next;
}

void evm__release_all(struct evm_loop *loop)
{
	/* a release may queue another (a service's drops its proc): FIFO to the end */
	while (loop->releasing) {
		struct evm__release *r = loop->releasing;
		if (!(loop->releasing = r->next))
			loop->release_tail = &loop->releasing;
		r->fn(r);
	}
}

/*
 * Callbacks run between evm__dispatch_enter and evm__dispatch_leave: one
 * iteration, and the public calls that emit events or walk lists a callback
 * may change. What a callback frees stays allocated until the outermost
 * leave, so no caller up the stack is left holding freed memory, and the
 * loop never runs inside itself (run_once from a callback: -EDEADLK).
 */
void evm__dispatch_enter(struct evm_loop *loop)
{
	if (loop->dispatching++ > 0)
		return;
	/* for evm_proc_wait, which must not read the loop */
	loop->tls_outer = evm__tls_dispatching;
	evm__tls_dispatching = loop;
}

void evm__dispatch_leave(struct evm_loop *loop)
{
	if (--loop->dispatching > 0)
		return;
	evm__tls_dispatching = loop->tls_outer;
	evm__release_all(loop);
}

/*
 * The thread running the loop becomes the loop thread, before it reads any
 * loop state: it waits for a spawn the creator has under way (evm_spawn).
 */
static void bind_thread(struct evm_loop *loop)
{
	if (atomic_load(&loop->bound) && evm__on_loop_thread(loop))
		return;
	pthread_mutex_lock(&loop->claim_mu);
	atomic_store(&loop->thread, pthread_self());
	atomic_store(&loop->bound, true);
	pthread_mutex_unlock(&loop->claim_mu);
}

int evm_loop_run_once(struct evm_loop *loop, int timeout_ms)
{
	if (!loop)
		return -EINVAL;
	if (evm__forked(loop))
		return -ECHILD;
	bind_thread(loop);
	if (loop->dispatching)
		return -EDEADLK;
	evm__dispatch_enter(loop);
	loop->iterations++;
	loop->now = evm__mono_ns();
	loop->call_reaps = 0;
	int dispatched = evm__epoll_wait(loop, evm__timers_wait_ms(loop, timeout_ms));
	if (dispatched >= 0) {
		loop->now = evm__mono_ns();
		dispatched += evm__timers_run(loop);
		evm__timerfd_sync(loop);
	}
	evm__dispatch_leave(loop);
	return dispatched;
}

int evm_loop_run(struct evm_loop *loop)
{
	if (!loop)
		return -EINVAL;
	if (evm__forked(loop))
		return -ECHILD; /* before bind_thread: nothing of the parent's loop is touched */
	bind_thread(loop);
	if (loop->dispatching)
		return -EDEADLK;
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
	int r = evm__timerfd_start(loop);
	return r < 0 ? r : loop->epfd;
}

int evm_loop_timeout(struct evm_loop *loop)
{
	if (!loop)
		return -1;
	loop->now = evm__mono_ns();
	return evm__timers_wait_ms(loop, -1);
}

uint64_t evm_loop_now(const struct evm_loop *loop)
{
	return loop ? loop->now : 0;
}

uint64_t evm_loop_iterations(const struct evm_loop *loop)
{
	return loop ? loop->iterations : 0;
}

size_t evm_loop_alive(const struct evm_loop *loop)
{
	if (!loop)
		return 0;
	/* the deferred orphan scan is bookkeeping, not work of the caller's */
	return loop->nlive + loop->nheap + loop->nwaiting - (loop->scan_timer ? 1 : 0);
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

char *evm__stack_map(size_t size)
{
	char *s = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (s == MAP_FAILED)
		return NULL;
	mprotect(s, 4096, PROT_NONE); /* guard page */
	return s;
}

void evm_loop_free(struct evm_loop *loop)
{
	if (!loop || evm__forked(loop))
		return; /* the parent's: left to our exit or exec (every fd is close-on-exec) */
	/* what other threads posted runs first, as if in one last iteration */
	evm__dispatch_enter(loop);
	evm__post_close(loop);
	evm__dispatch_leave(loop);
	loop->dispatching++; /* what is released below waits for evm__release_all */
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
	evm__exit_barrier();
	evm__nowait_free(loop); /* every child that ran on its stacks is reaped now */
	evm__spawner_stop(loop);
	evm__reap_fini(loop);
	evm__io_free_all(loop);
	/* before the routes, subscribers and cgroup watches it may unlink are freed */
	evm__release_all(loop);
	evm__trees_free(loop);
	evm__async_free_all(loop);
	evm__cgwatch_free_all(loop);
	evm__timers_free(loop);
	evm__mux_free(loop);
	evm__pidmap_free(&loop->pids);

	/* threads blocked in evm_spawn or evm_proc_wait must leave first */
	evm__xreq_run_all(loop);
	pthread_mutex_lock(&loop->mu);
	while (atomic_load(&loop->nwaiters) > 0)
		pthread_cond_wait(&loop->cv, &loop->mu);
	pthread_mutex_unlock(&loop->mu);

	evm__timerfd_close(loop);
	if (loop->devnull >= 0)
		close(loop->devnull);
	if (loop->statusfd >= 0)
		close(loop->statusfd);
	if (loop->reserve_fd >= 0)
		close(loop->reserve_fd);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	evm__epoll_close(loop);
	if (loop->stack)
		munmap(loop->stack, loop->stack_size);
	free(loop->ancestors);
	pthread_cond_destroy(&loop->cv);
	pthread_mutex_destroy(&loop->mu);
	pthread_mutex_destroy(&loop->claim_mu);
	free(loop);
}
