/*
 * wait.c - spawning and waiting from threads other than the loop's.
 *
 * A worker's spawn request is queued under loop->mu and the loop is woken
 * through its eventfd; the loop thread runs the spawn (all loop state stays
 * single-threaded) and signals loop->cv. Blocked threads are counted in
 * nwaiters so that evm_loop_free can wait for them to leave. evm_proc_wait
 * (proc.c) sleeps elsewhere: a proc may outlive its loop.
 */
#include "internal.h"

#include <errno.h>

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
				    : evm__spawn_local(loop, x->opts, x->want_proc ? &x->proc : NULL);
	pthread_mutex_lock(&loop->mu);
	for (struct evm__xreq *x = list, *next; x; x = next) {
		next = x->next; /* x belongs to its thread once done is set */
		x->done = true;
	}
	pthread_cond_broadcast(&loop->cv);
	pthread_mutex_unlock(&loop->mu);
}

int evm_spawn(struct evm_loop *loop, const struct evm_spawn_opts *opts, struct evm_proc **out)
{
	if (!loop)
		return -EINVAL;
	if (evm__on_loop_thread(loop))
		return evm__spawn_local(loop, opts, out);

	struct evm__xreq x = {.opts = opts, .want_proc = out != NULL};
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

int evm_spawn_wait(struct evm_loop *loop, const struct evm_spawn_opts *opts, struct evm_exit *out)
{
	if (!loop)
		return -EINVAL;
	if (evm__on_loop_thread(loop))
		return -EDEADLK;
	struct evm_proc *p;
	int r = evm_spawn(loop, opts, &p);
	if (r < 0)
		return r;
	r = evm_proc_wait(p, out, -1);
	evm_proc_unref(p);
	return r;
}
