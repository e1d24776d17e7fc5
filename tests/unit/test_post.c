/*
 * test_post.c - control from other threads: evm_loop_post (runs on the loop
 * thread, once each, in order; from a callback it waits for the next
 * iteration; pending posts run in evm_loop_free; refused after), evm_async
 * (sends coalesce, from a signal handler too; freed from its own callback),
 * and evm_proc_signal / evm_proc_signal_group from a worker thread, racing
 * the loop thread's reaping.
 */
#include "evmtest.h"

#include <pthread.h>

struct rec {
	pthread_t loop_thread;
	int order[64];
	atomic_int n;
	atomic_int wrong_thread;
};

struct item {
	struct rec *r;
	int id;
};

static void record(struct evm_loop *loop, void *data)
{
	struct item *it = data;
	(void)loop;
	if (!pthread_equal(pthread_self(), it->r->loop_thread))
		atomic_fetch_add(&it->r->wrong_thread, 1);
	it->r->order[atomic_fetch_add(&it->r->n, 1)] = it->id;
}

struct poster {
	struct evm_loop *loop;
	struct item items[32];
	atomic_int result;
};

static void *post_many(void *arg)
{
	struct poster *p = arg;
	int r = 0;
	for (int i = 0; i < 32 && r == 0; i++)
		r = evm_loop_post(p->loop, record, &p->items[i]);
	atomic_store(&p->result, r);
	return NULL;
}

static void *post_one(void *arg)
{
	struct poster *p = arg;
	atomic_store(&p->result, evm_loop_post(p->loop, record, &p->items[0]));
	return NULL;
}

/* Posts from another thread run on the loop thread, once each, in order. */
static void test_post_from_thread(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct rec r = {.loop_thread = pthread_self()};
	struct poster p = {.loop = loop};
	for (int i = 0; i < 32; i++)
		p.items[i] = (struct item){&r, i};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, post_many, &p), 0);
	RUN_UNTIL(loop, atomic_load(&r.n) == 32, 10000);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&p.result), 0);
	assert_int_equal(atomic_load(&r.wrong_thread), 0);
	for (int i = 0; i < 32; i++)
		assert_int_equal(r.order[i], i);
	/* nothing runs twice; a wake-up left by a later post may still count as an event */
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(atomic_load(&r.n), 32);
	assert_int_equal(evm_loop_post(NULL, record, NULL), -EINVAL);
	assert_int_equal(evm_loop_post(loop, NULL, NULL), -EINVAL);
}

struct chain {
	struct evm_loop *loop;
	int runs;
	int iteration_of[3];
	int iteration;
};

static void chained(struct evm_loop *loop, void *data)
{
	struct chain *c = data;
	c->iteration_of[c->runs++] = c->iteration;
	if (c->runs < 3)
		assert_int_equal(evm_loop_post(loop, chained, c), 0);
}

/* A post made by a posted function runs in a later iteration, not in a loop within this one. */
static void test_post_from_callback(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct chain c = {.loop = loop};
	assert_int_equal(evm_loop_post(loop, chained, &c), 0);
	for (c.iteration = 0; c.iteration < 10 && c.runs < 3; c.iteration++)
		assert_true(evm_loop_run_once(loop, 1000) >= 0);
	assert_int_equal(c.runs, 3);
	assert_true(c.iteration_of[0] < c.iteration_of[1]);
	assert_true(c.iteration_of[1] < c.iteration_of[2]);
}

static void free_data(struct evm_loop *loop, void *data)
{
	(void)loop;
	(*(int *)data)++;
}

static int repost_result = 1;

static void repost(struct evm_loop *loop, void *data)
{
	repost_result = evm_loop_post(loop, free_data, data);
}

/* Posts still pending run in evm_loop_free; once it has begun, posts are refused. */
static void test_post_pending_at_free(void **state)
{
	(void)state;
	struct evm_loop *loop;
	int ran = 0;
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	assert_int_equal(evm_loop_post(loop, free_data, &ran), 0);
	assert_int_equal(evm_loop_post(loop, repost, &ran), 0);
	assert_int_equal(evm_loop_post(loop, free_data, &ran), 0);
	evm_loop_free(loop);
	assert_int_equal(ran, 2);
	assert_int_equal(repost_result, -ECANCELED);
}

static struct evm_async *sig_async;

static void on_usr1(int sig)
{
	(void)sig;
	evm_async_send(sig_async);
}

static void count_async(struct evm_loop *loop, void *data)
{
	(void)loop;
	(*(int *)data)++;
}

/* Sends coalesce; a send from a signal handler wakes a loop blocked forever. */
static void test_async(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int calls = 0;
	struct evm_async *a;
	assert_int_equal(evm_async_new(loop, count_async, &calls, &a), 0);
	for (int i = 0; i < 5; i++)
		evm_async_send(a);
	RUN_UNTIL(loop, calls >= 1, 10000);
	assert_int_equal(evm_loop_run_once(loop, 0), 0);
	assert_int_equal(calls, 1); /* five sends before the callback: one call */

	sig_async = a;
	struct sigaction sa = {.sa_handler = on_usr1}, old;
	sigaction(SIGUSR1, &sa, &old);
	assert_int_equal(raise(SIGUSR1), 0);
	assert_true(evm_loop_run_once(loop, -1) >= 1); /* would block forever without the send */
	assert_int_equal(calls, 2);
	sigaction(SIGUSR1, &old, NULL);
	evm_async_free(a);
	evm_async_free(NULL);
	assert_int_equal(evm_async_new(loop, NULL, NULL, &a), -EINVAL);
}

struct self_free {
	struct evm_async *a;
	int calls;
};

static void free_self(struct evm_loop *loop, void *data)
{
	struct self_free *s = data;
	(void)loop;
	s->calls++;
	evm_async_free(s->a);
	evm_async_send(s->a); /* still allocated until the dispatch ends; never runs */
}

static void test_async_free_in_callback(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct self_free s = {0};
	struct evm_async *other;
	int other_calls = 0;
	assert_int_equal(evm_async_new(loop, free_self, &s, &s.a), 0);
	assert_int_equal(evm_async_new(loop, count_async, &other_calls, &other), 0);
	evm_async_send(s.a);
	evm_async_send(other);
	RUN_UNTIL(loop, s.calls == 1 && other_calls == 1, 10000);
	evm_async_send(other);
	RUN_UNTIL(loop, other_calls == 2, 10000);
	assert_int_equal(s.calls, 1);
	/* `other` is left for evm_loop_free (teardown checks nothing leaks) */
}

struct release_race {
	struct evm_async *doomed;
	struct item first, second;
	bool ran;
};

static void post_then_release(struct evm_loop *loop, void *data)
{
	struct release_race *rr = data;
	assert_int_equal(evm_loop_post(loop, record, &rr->first), 0); /* queued for the next wake-up */
	evm_async_free(rr->doomed); /* released when this dispatch ends, with the post still queued */
	rr->ran = true;
}

/*
 * A post queued when the dispatch's releases run survives them: a post made
 * after them (from this or another thread) runs after it, not instead of it
 * (evm__release_all once reset the post queue's tail, outside its lock, and
 * the next post overwrote the queued one, lost and leaked).
 */
static void test_post_survives_releases(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct rec r = {.loop_thread = pthread_self()};
	struct release_race rr = {.first = {&r, 1}, .second = {&r, 2}};
	assert_int_equal(evm_async_new(loop, count_async, NULL, &rr.doomed), 0);
	/* a post's posts wait for the next wake-up: the first stays queued past this iteration */
	assert_int_equal(evm_loop_post(loop, post_then_release, &rr), 0);
	RUN_UNTIL(loop, rr.ran, 10000); /* no iteration after it: the first post is still queued */
	struct poster p = {.loop = loop, .items = {rr.second}};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, post_one, &p), 0);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&p.result), 0);
	RUN_UNTIL(loop, atomic_load(&r.n) >= 1 && r.order[atomic_load(&r.n) - 1] == 2, 10000);
	assert_int_equal(atomic_load(&r.n), 2);
	assert_int_equal(r.order[0], 1);
	assert_int_equal(r.order[1], 2);
}

struct killer {
	struct evm_proc *proc;
	int sig;
	atomic_int result;
	bool group;
};

static void *kill_from_thread(void *arg)
{
	struct killer *k = arg;
	atomic_store(&k->result, k->group ? evm_proc_signal_group(k->proc, k->sig)
					  : evm_proc_signal(k->proc, k->sig));
	return NULL;
}

/* A worker kills its own child; after the exit the signal is -ESRCH from any thread. */
static void test_signal_from_thread(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .flags = EVM_SPAWN_SETSID};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("pause"), &o);
	struct killer k = {.proc = p, .sig = SIGTERM};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, kill_from_thread, &k), 0);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&k.result), 0);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.signal, SIGTERM);
	for (int g = 0; g < 2; g++) {
		k.group = g;
		assert_int_equal(pthread_create(&t, NULL, kill_from_thread, &k), 0);
		pthread_join(t, NULL);
		assert_int_equal(atomic_load(&k.result), -ESRCH);
	}
	evm_proc_unref(p);
}

struct racer {
	struct evm_proc *proc;
	atomic_bool stop;
	atomic_int bad;
};

static void *signal_until_gone(void *arg)
{
	struct racer *r = arg;
	while (!atomic_load(&r->stop)) {
		int e = evm_proc_signal(r->proc, 0);
		if (e != 0 && e != -ESRCH)
			atomic_fetch_add(&r->bad, 1);
		if (e == -ESRCH)
			break;
	}
	return NULL;
}

/* Signals from a thread while the loop thread reaps: never an error but ESRCH. */
static void test_signal_races_reap(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	for (int round = 0; round < 20; round++) {
		struct t_exit x = {0};
		struct racer r = {0};
		r.proc = t_spawn(loop, HARGV("sleep", "5"), &x);
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, signal_until_gone, &r), 0);
		assert_int_equal(evm_proc_signal(r.proc, SIGKILL), 0);
		RUN_UNTIL(loop, x.n == 1, 10000);
		pthread_join(t, NULL);
		assert_int_equal(atomic_load(&r.bad), 0);
		assert_int_equal(evm_proc_signal(r.proc, 0), -ESRCH);
		evm_proc_unref(r.proc);
	}
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_post_from_thread, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_post_from_callback, t_setup, t_teardown),
		cmocka_unit_test(test_post_pending_at_free),
		cmocka_unit_test_setup_teardown(test_async, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_async_free_in_callback, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_post_survives_releases, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_signal_from_thread, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_signal_races_reap, t_setup, t_teardown),
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("post", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed;
}
