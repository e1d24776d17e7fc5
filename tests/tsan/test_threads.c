/*
 * test_threads.c - the thread-safe API hammered from many threads at once,
 * for ThreadSanitizer (make tsan-test): evm_spawn + evm_proc_wait and
 * evm_spawn_wait from 8 threads, references taken and dropped on several
 * threads around the exit, and evm_loop_stop called from another thread
 * all the while (the loop thread runs the loop again each time it stops);
 * the same on a reaper loop, whose children have no pidfd until a worker
 * asks evm_proc_pidfd for one, racing their exits; on an owned loop with
 * group leaders a worker signals the group as the loop reaps the leader;
 * and a loop handed to a new thread while its creator spawns at once.
 * Every exit code must come back to the thread that asked for it.
 */
#include "tsan.h"

#include "evmtest.h"

#include <pthread.h>
#include <stdatomic.h>

enum { THREADS = 8, ROUNDS = 60 };

struct shared {
	struct evm_loop *loop;
	atomic_bool done;
	atomic_uint stops;
	atomic_uint failures;
	enum { POKE_NONE, POKE_PIDFD, POKE_GROUP } poke; /* from the worker, racing the exit */
	/* a proc handed from a worker to the dropper thread, which unrefs it */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct evm_proc *handoff[THREADS * ROUNDS];
	size_t nhandoff, ndropped;
};

struct worker {
	struct shared *s;
	int id;
};

static void *loop_thread(void *arg)
{
	struct shared *s = arg;
	while (!atomic_load(&s->done))
		evm_loop_run(s->loop); /* returns at each evm_loop_stop */
	return NULL;
}

static void *stopper(void *arg)
{
	struct shared *s = arg;
	while (!atomic_load(&s->done)) {
		evm_loop_stop(s->loop);
		atomic_fetch_add(&s->stops, 1);
		usleep(500);
	}
	return NULL;
}

static void *dropper(void *arg)
{
	struct shared *s = arg;
	pthread_mutex_lock(&s->lock);
	while (s->ndropped < (size_t)THREADS * ROUNDS) {
		while (s->ndropped == s->nhandoff)
			pthread_cond_wait(&s->cond, &s->lock);
		struct evm_proc *p = s->handoff[s->ndropped++];
		pthread_mutex_unlock(&s->lock);
		evm_proc_unref(p); /* maybe before, maybe after the exit is seen */
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void note_failure(struct shared *s, const char *what, int id, int i, int r, int code, int want)
{
	fprintf(stderr, "worker %d round %d: %s: r=%d code=%d want=%d\n", id, i, what, r, code, want);
	atomic_fetch_add(&s->failures, 1);
}

static void *worker(void *arg)
{
	struct worker *w = arg;
	struct shared *s = w->s;
	for (int i = 0; i < ROUNDS; i++) {
		int want = (w->id * 7 + i) % 100;
		char code[8];
		snprintf(code, sizeof(code), "%d", want);
		char *argv[] = {t_helper, "exit", code, NULL};
		struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
		if (s->poke == POKE_GROUP)
			o.flags = EVM_SPAWN_SETPGID; /* pgid 0: a group of its own, led by the child */
		struct evm_exit e = {0};
		struct evm_proc *p = NULL;
		int r;
		if (i % 2) {
			r = evm_spawn_wait(s->loop, &o, &e);
			if (r != 0 || e.code != want)
				note_failure(s, "evm_spawn_wait", w->id, i, r, e.code, want);
			/* keep the dropper's count right */
			r = evm_spawn(s->loop, &o, &p);
			if (r != 0) {
				note_failure(s, "evm_spawn", w->id, i, r, -1, 0);
				continue;
			}
		} else {
			r = evm_spawn(s->loop, &o, &p);
			if (r != 0) {
				note_failure(s, "evm_spawn", w->id, i, r, -1, 0);
				continue;
			}
		}
		if (s->poke == POKE_PIDFD) {
			int fd = evm_proc_pidfd(p); /* opened now on a reaper loop, maybe just as it exits */
			r = evm_proc_signal(p, 0);
			if ((fd < 0 && fd != -EBADF) || (r != 0 && r != -ESRCH))
				note_failure(s, "evm_proc_pidfd / evm_proc_signal", w->id, i, fd < 0 ? fd : r, 0, 0);
		} else if (s->poke == POKE_GROUP) {
			/* reads what the proc is while the loop marks its pidfd event and exit */
			r = evm_proc_signal_group(p, 0);
			if (r != 0 && r != -ESRCH)
				note_failure(s, "evm_proc_signal_group", w->id, i, r, 0, 0);
		}
		evm_proc_ref(p); /* one for the dropper, one for us */
		pthread_mutex_lock(&s->lock);
		s->handoff[s->nhandoff++] = p;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		r = evm_proc_wait(p, &e, 30000);
		if (r != 0 || e.code != want || e.pid != evm_proc_pid(p))
			note_failure(s, "evm_proc_wait", w->id, i, r, e.code, want);
		evm_proc_unref(p);
	}
	return NULL;
}

static void run_threads(void **state, int poke)
{
	static struct shared s;
	memset(&s, 0, sizeof(s));
	s.loop = T_LOOP(state);
	s.poke = poke;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	pthread_t lt, st, dt, wt[THREADS];
	struct worker w[THREADS];
	assert_int_equal(pthread_create(&lt, NULL, loop_thread, &s), 0);
	/* until the loop thread has run once, this thread counts as the loop's */
	WAIT_FOR(!evm__on_loop_thread(s.loop), 10000);
	assert_int_equal(pthread_create(&st, NULL, stopper, &s), 0);
	assert_int_equal(pthread_create(&dt, NULL, dropper, &s), 0);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.s = &s, .id = i};
		assert_int_equal(pthread_create(&wt[i], NULL, worker, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(wt[i], NULL);
	pthread_join(dt, NULL);
	atomic_store(&s.done, true);
	pthread_join(st, NULL);
	evm_loop_stop(s.loop);
	pthread_join(lt, NULL);
	assert_int_equal(atomic_load(&s.failures), 0);
	assert_true(atomic_load(&s.stops) > 0);
	assert_int_equal(s.ndropped, (size_t)THREADS * ROUNDS);
	while (evm_loop_alive(s.loop))
		evm_loop_run_once(s.loop, 1000);
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
}

static void test_threads(void **state)
{
	run_threads(state, POKE_NONE);
}

static void test_threads_group(void **state)
{
	run_threads(state, POKE_GROUP);
}

static int reaper_setup(void **state)
{
	return t_setup_flags(state, EVM_LOOP_REAPER);
}

static void test_threads_reaper(void **state)
{
	run_threads(state, POKE_PIDFD);
}

/*
 * The natural hand-off, 20 rounds: main creates the loop, starts a thread
 * that runs it and spawns at once, before or while that thread's first
 * iteration starts (issue 20: the loop thread was decided by whichever ran
 * the loop last, so both used the loop at once). Then it waits for the exits.
 */
static void *run_until_stopped(void *arg)
{
	evm_loop_run(arg);
	return NULL;
}

static void test_handoff(void **state)
{
	(void)state;
	for (int round = 0; round < 20; round++) {
		struct evm_loop *loop;
		assert_int_equal(evm_loop_new(&loop, NULL), 0);
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, run_until_stopped, loop), 0);
		struct evm_proc *p[4];
		for (int i = 0; i < 4; i++) {
			char code[8];
			snprintf(code, sizeof(code), "%d", round + i);
			char *argv[] = {t_helper, "exit", code, NULL};
			struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
			assert_int_equal(evm_spawn(loop, &o, &p[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			struct evm_exit e;
			assert_int_equal(evm_proc_wait(p[i], &e, -1), 0);
			assert_int_equal(e.code, round + i);
			evm_proc_unref(p[i]);
		}
		evm_loop_stop(loop);
		pthread_join(th, NULL);
		evm_loop_free(loop);
	}
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_threads, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_threads_reaper, reaper_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_threads_group, t_setup, t_teardown),
		cmocka_unit_test(test_handoff),
	};
	int failed = 0;
	for (int i = 0; i < 4; i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("threads", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed;
}
