/*
 * worker.c - control from another thread: a worker thread starts a child
 * through the loop, kills it itself when it has waited long enough, waits
 * for the exit, and posts its report to the loop thread, which prints it
 * and stops. SIGINT reaches the loop through an async handle.
 *
 *   ./worker          prints "worker: sleep 30 ended by signal 15" and exits 0
 */
#include <evmon.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static struct evm_async *interrupt;

static void on_sigint(int sig)
{
	(void)sig;
	evm_async_send(interrupt); /* async-signal-safe */
}

static void stop_loop(struct evm_loop *loop, void *data)
{
	(void)data;
	evm_loop_stop(loop);
}

static void report(struct evm_loop *loop, void *data)
{
	struct evm_exit *e = data; /* runs on the loop thread */
	printf("worker: sleep 30 ended by signal %d\n", e->signal);
	evm_loop_stop(loop);
}

static void *worker(void *arg)
{
	struct evm_loop *loop = arg;
	static struct evm_exit e;
	char *argv[] = {"sleep", "30", NULL};
	struct evm_spawn_opts o = {.argv = argv};
	struct evm_proc *p;
	if (evm_spawn(loop, &o, &p) < 0) /* carried out by the loop thread */
		return NULL;
	usleep(100 * 1000); /* "too long": the worker ends its own child */
	evm_proc_signal(p, SIGTERM);
	evm_proc_wait(p, &e, -1);
	evm_proc_unref(p);
	evm_loop_post(loop, report, &e);
	return NULL;
}

int main(void)
{
	struct evm_loop *loop;
	pthread_t t;
	if (evm_loop_new(&loop, NULL) < 0 || evm_async_new(loop, stop_loop, NULL, &interrupt) < 0)
		return 1;
	signal(SIGINT, on_sigint);
	pthread_create(&t, NULL, worker, loop);
	int r = evm_loop_run(loop);
	pthread_join(t, NULL);
	evm_loop_free(loop);
	return r < 0;
}
