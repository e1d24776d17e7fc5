/*
 * post.c - running a function on the loop thread from anywhere:
 * evm_loop_post (any thread, each post runs once, in order) and evm_async
 * (a handle made on the loop thread, sent from any thread or a signal
 * handler; sends coalesce, like uv_async).
 *
 * Both wake the loop through its eventfd (loop.c's on_wake). Posts are a
 * FIFO under loop->mu; a send only sets two atomic flags and writes the
 * eventfd, which is what makes it safe in a signal handler.
 */
#include "internal.h"

#include <stdlib.h>

struct evm__post {
	evm_post_cb fn;
	void *data;
	struct evm__post *next;
};

struct evm_async {
	struct evm_loop *loop;
	evm_post_cb cb;
	void *data;
	atomic_bool pending; /* any thread: sent, not yet run */
	bool dead;	     /* freed; released at the end of the dispatch */
	struct evm_async *prev, *next;
	struct evm__release rel;
};

int evm_loop_post(struct evm_loop *loop, evm_post_cb fn, void *data)
{
	if (!loop || !fn)
		return -EINVAL;
	struct evm__post *p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->data = data;
	p->next = NULL;
	pthread_mutex_lock(&loop->mu);
	if (loop->posts_closed) {
		pthread_mutex_unlock(&loop->mu);
		free(p);
		return -ECANCELED;
	}
	*loop->posts_tail = p;
	loop->posts_tail = &p->next;
	pthread_mutex_unlock(&loop->mu);
	evm__wake(loop);
	return 0;
}

/* Run the posts queued so far; ones they post run at the next wake-up. */
static void run_posts(struct evm_loop *loop, bool close)
{
	pthread_mutex_lock(&loop->mu);
	struct evm__post *list = loop->posts;
	loop->posts = NULL;
	loop->posts_tail = &loop->posts;
	if (close)
		loop->posts_closed = true;
	pthread_mutex_unlock(&loop->mu);
	while (list) {
		struct evm__post *p = list;
		list = p->next;
		p->fn(loop, p->data);
		free(p);
	}
}

static void run_asyncs(struct evm_loop *loop)
{
	if (!atomic_exchange(&loop->async_pending, false))
		return;
	/* an async freed by an earlier callback stays linked (dead) until the dispatch ends */
	for (struct evm_async *a = loop->asyncs; a; a = a->next)
		if (!a->dead && atomic_exchange(&a->pending, false))
			a->cb(loop, a->data);
}

void evm__post_run(struct evm_loop *loop)
{
	run_asyncs(loop);
	run_posts(loop, false);
}

void evm__post_close(struct evm_loop *loop)
{
	run_posts(loop, true);
}

int evm_async_new(struct evm_loop *loop, evm_post_cb cb, void *data, struct evm_async **out)
{
	if (!loop || !cb || !out)
		return -EINVAL;
	struct evm_async *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->loop = loop;
	a->cb = cb;
	a->data = data;
	atomic_init(&a->pending, false);
	a->next = loop->asyncs;
	if (a->next)
		a->next->prev = a;
	loop->asyncs = a;
	*out = a;
	return 0;
}

void evm_async_send(struct evm_async *a)
{
	if (!a || atomic_exchange(&a->pending, true))
		return; /* already pending: this send coalesces with it */
	atomic_store(&a->loop->async_pending, true);
	evm__wake(a->loop);
}

static void async_released(struct evm__release *r)
{
	struct evm_async *a = evm__container_of(r, struct evm_async, rel);
	struct evm_loop *loop = a->loop;
	if (a->prev)
		a->prev->next = a->next;
	else
		loop->asyncs = a->next;
	if (a->next)
		a->next->prev = a->prev;
	free(a);
}

void evm_async_free(struct evm_async *a)
{
	if (!a || a->dead)
		return;
	a->dead = true;
	evm__release(a->loop, &a->rel, async_released);
}

void evm__async_free_all(struct evm_loop *loop)
{
	while (loop->asyncs) {
		struct evm_async *a = loop->asyncs;
		loop->asyncs = a->next;
		free(a);
	}
}
