/*
 * wait.c - every blocking call: spawns from threads other than the loop's,
 * evm_proc_wait and evm_spawn_wait.
 *
 * A worker's spawn request is queued under loop->mu and the loop is woken
 * through its eventfd; the loop thread runs the spawn (all loop state stays
 * single-threaded) and signals loop->cv. Blocked threads are counted in
 * nwaiters so that evm_loop_free can wait for them to leave. Exit waits
 * sleep elsewhere (below): a proc may outlive its loop.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct evm__xreq {
	const struct evm_spawn_opts *opts; /* borrowed from the blocked caller */
	bool want_proc;
	struct evm_proc *proc;
	int result;
	bool done;
	struct evm__xreq *next;
};

void evm__xreq_run_all(struct evm_loop *loop)
{
	pthread_mutex_lock(&loop->mu);
	struct evm__xreq *list = loop->xreqs;
	bool closing = loop->closing;
	loop->xreqs = NULL;
	pthread_mutex_unlock(&loop->mu);
	if (!list)
		return;
	for (struct evm__xreq *x = list; x; x = x->next)
		x->result = closing ? -ECANCELED
				    : evm__spawn_local(loop, x->opts, x->want_proc ? &x->proc : NULL, true);
	pthread_mutex_lock(&loop->mu);
	for (struct evm__xreq *x = list, *next; x; x = next) {
		next = x->next; /* x belongs to its thread once done is set */
		x->done = true;
	}
	pthread_cond_broadcast(&loop->cv);
	pthread_mutex_unlock(&loop->mu);
}

/* evm_spawn from a thread other than the loop's: the loop thread spawns. */
int evm__xreq_spawn(struct evm_loop *loop, const struct evm_spawn_opts *opts, struct evm_proc **out)
{
	struct evm__xreq x = {.opts = opts, .want_proc = out != NULL};
	/* not the loop's thread, and the only one: the loop's has exited, nobody would answer */
	if (evm__single_threaded() == 1)
		return -EDEADLK;
	pthread_mutex_lock(&loop->mu);
	if (loop->closing) {
		pthread_mutex_unlock(&loop->mu);
		return -ECANCELED;
	}
	struct evm__xreq **tail = &loop->xreqs;
	while (*tail)
		tail = &(*tail)->next;
	*tail = &x;
	atomic_fetch_add(&loop->nwaiters, 1);
	evm__wake(loop);
	while (!x.done)
		pthread_cond_wait(&loop->cv, &loop->mu);
	atomic_fetch_sub(&loop->nwaiters, 1);
	if (loop->closing)
		pthread_cond_broadcast(&loop->cv);
	pthread_mutex_unlock(&loop->mu);
	if (out && x.result == 0)
		*out = x.proc;
	return x.result;
}

/*
 * 1 when the caller is the process's only thread, else 0 (also: unknown).
 * From /proc/self/status; where it cannot be opened (no fd left at the
 * limit) unshare(CLONE_THREAD), which needs none: it fails with EINVAL
 * exactly when the thread group has other threads and does nothing
 * otherwise (the SIGCHLD warning then fits the program).
 */
int evm__single_threaded(void)
{
	char buf[1024];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return unshare(CLONE_THREAD) == 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	const char *t = strstr(buf, "\nThreads:");
	return t && atoi(t + sizeof("\nThreads:") - 1) == 1;
}

/*
 * Only the loop thread reports exits. Waiting there outside a callback
 * (the loop is not running) never returns. Before any thread has run the
 * loop its creator counts as the loop thread, but a thread it started may
 * be about to run it: the wait is hopeless only if there is no other
 * thread. And so is any wait by a process's only thread: the one that ran
 * the loop may have exited.
 */
bool evm__wait_would_hang(struct evm_loop *loop)
{
	if (evm__tls_dispatching == loop)
		return true;
	if (evm__on_loop_thread(loop) && atomic_load(&loop->bound))
		return true;
	return evm__single_threaded() == 1;
}

int evm_spawn_wait(struct evm_loop *loop, const struct evm_spawn_opts *opts, struct evm_exit *out)
{
	if (!loop)
		return -EINVAL;
	if (evm__wait_would_hang(loop))
		return -EDEADLK;
	struct evm_proc *p;
	int r = evm_spawn(loop, opts, &p);
	if (r < 0)
		return r;
	r = evm_proc_wait(p, out, -1);
	if (r == 0) {
		/* EVM_SPAWN_NOWAIT: a failure before the exec is returned here all the same */
		struct evm_spawn_error dummy, *err = opts->error ? opts->error : &dummy;
		int e = evm_proc_spawn_error(p, err);
		if (e < 0)
			r = e;
	}
	evm_proc_unref(p);
	return r;
}

/*
 * Exit waits sleep on one process-wide condition variable, not the loop's: a
 * waiter holds a reference on the proc, not on the loop, and evm_loop_free
 * may run meanwhile on another thread. Waiters of other exits wake for
 * nothing now and then; each checks its own proc.
 */
static pthread_mutex_t exit_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t exit_cv;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static atomic_uint exit_waiters;

static void exit_cv_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&exit_cv, &ca);
	pthread_condattr_destroy(&ca);
}

void evm__exit_barrier(void)
{
	pthread_mutex_lock(&exit_mu);
	pthread_mutex_unlock(&exit_mu);
}

void evm__proc_signal_done(struct evm_proc *p)
{
	/* seq_cst pairs with evm_proc_wait: either it sees done, or we see it waiting */
	atomic_store(&p->done, true);
	if (atomic_load(&exit_waiters) > 0) {
		pthread_mutex_lock(&exit_mu);
		pthread_cond_broadcast(&exit_cv);
		pthread_mutex_unlock(&exit_mu);
	}
}

static void copy_record(const struct evm_proc *p, struct evm_exit *out)
{
	if (!out)
		return;
	if (p->exit) {
		*out = *p->exit;
	} else {
		memset(out, 0, sizeof(*out));
		out->pid = p->pid;
		out->status = p->status;
		out->code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
		out->signal = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
		out->timed_out = p->timed_out;
	}
}

int evm_proc_wait(struct evm_proc *p, struct evm_exit *out, int timeout_ms)
{
	if (!p)
		return -EINVAL;
	if (atomic_load(&p->done)) {
		copy_record(p, out);
		return 0;
	}
	/* from a callback, nobody else can report the exit (no read of the loop: it may be freed) */
	if (evm__tls_dispatching == p->loop)
		return -EDEADLK;
	struct timespec dl;
	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
	}
	int r = 0;
	pthread_once(&exit_once, exit_cv_init);
	pthread_mutex_lock(&exit_mu);
	/*
	 * The loop is alive here: evm_loop_free marks every proc done, then
	 * takes exit_mu (evm__exit_barrier) before it frees the loop.
	 */
	if (!atomic_load(&p->done) && evm__wait_would_hang(p->loop)) {
		pthread_mutex_unlock(&exit_mu);
		return -EDEADLK;
	}
	atomic_fetch_add(&exit_waiters, 1);
	while (!atomic_load(&p->done)) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&exit_cv, &exit_mu);
		} else if (pthread_cond_timedwait(&exit_cv, &exit_mu, &dl) == ETIMEDOUT) {
			if (!atomic_load(&p->done))
				r = -ETIMEDOUT;
			break;
		}
	}
	atomic_fetch_sub(&exit_waiters, 1);
	pthread_mutex_unlock(&exit_mu);
	if (r == 0)
		copy_record(p, out);
	return r;
}
