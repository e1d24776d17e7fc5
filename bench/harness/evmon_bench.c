/*
 * evmon_bench.c - the evmon side of every library-level scenario (S1-S4),
 * written the way a user would: the public API of include/evmon.h, one loop,
 * a per-process exit callback. Commands and output: see common.h.
 *
 * EVM_SPAWN_MODE (direct|helper|auto) and EVM_NO_PIDFD are read by the
 * library itself, so the runner measures each path with the same binary.
 */
#include "common.h"

#include <evmon.h>
#include <signal.h>

static struct evm_loop *loop;
static char *child_argv[3];
static struct evm_spawn_opts sopts;
static long started, finished, target;
static struct seen_rec *seen;

static void spawn_one(void)
{
	int r = evm_spawn(loop, &sopts, NULL);
	if (r < 0) {
		fprintf(stderr, "bench: evmon: spawn %s: %s\n", child_argv[0], strerror(-r));
		exit(2);
	}
	started++;
}

static void on_exit_spawn(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	finished++;
	if (started < target)
		spawn_one();
	else if (finished == target)
		evm_loop_stop(loop);
}

static void on_exit_count(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	if (seen) {
		seen[finished].pid = e->pid;
		seen[finished].ns = (int64_t)now_ns();
	}
	if (++finished == target)
		evm_loop_stop(loop);
}

static void stop_on_timer(struct evm_timer *t, void *data)
{
	evm_loop_stop(loop);
}

static void run_loop(void)
{
	int r = evm_loop_run(loop);
	if (r < 0) {
		fprintf(stderr, "bench: evmon: loop: %s\n", strerror(-r));
		exit(2);
	}
}

static int cmd_spawn(long runs, long inflight)
{
	target = runs;
	sopts.on_exit = on_exit_spawn;
	uint64_t t0 = now_ns();
	for (long i = 0; i < inflight && started < runs; i++)
		spawn_one();
	run_loop();
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("ok runs=%ld secs=%.6f per_sec=%.1f\n", runs, secs, (double)runs / secs);
	return 0;
}

static void on_stdin(struct evm_io *io, int fd, unsigned revents, void *data)
{
	char buf[256];
	if (read(fd, buf, sizeof(buf)) <= 0)
		evm_loop_stop(loop);
}

static int cmd_scale(long n)
{
	static char mode_p[] = "p";
	child_argv[1] = mode_p;
	target = n;
	sopts.on_exit = on_exit_count;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		spawn_one();
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("ready launched=%ld launch_secs=%.6f launch_us_per_child=%.3f\n", n, secs,
	       n ? secs * 1e6 / (double)n : 0.0);
	fflush(stdout);
	/* idle: the only thing that can wake us is the runner closing stdin */
	struct evm_io *io;
	if (evm_io_add(loop, 0, EVM_READ, on_stdin, NULL, &io) < 0)
		die("evm_io_add");
	run_loop();
	evm_io_free(io);
	return 0; /* evm_loop_free kills and reaps the children */
}

/* Start n children blocked on one pipe; returns the write end. */
static int start_blocked(long n, char *mode, uint64_t *spawn_ns)
{
	int p[2];
	storm_pipe(p);
	child_argv[1] = mode;
	sopts.stdio[0].mode = EVM_STDIO_FD;
	sopts.stdio[0].fd = p[0];
	target = n;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		spawn_one();
	*spawn_ns = now_ns() - t0;
	close(p[0]);
	return p[1];
}

static int cmd_storm(long n)
{
	static char mode_s[] = "s";
	uint64_t spawn_ns;
	sopts.on_exit = on_exit_count;
	int w = start_blocked(n, mode_s, &spawn_ns);
	uint64_t t0 = now_ns();
	close(w); /* every child's read returns EOF at once */
	/* a watchdog, so a lost exit shows up as a count instead of a hang */
	evm_timer_add(loop, 60000, stop_on_timer, NULL, NULL);
	run_loop();
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("ok n=%ld observed=%ld lost=%ld secs=%.6f us_per_exit=%.3f spawn_secs=%.6f\n", n,
	       finished, n - finished, secs, secs * 1e6 / (double)n, (double)spawn_ns / 1e9);
	return 0;
}

static int cmd_latency(long n, const char *how, const char *file)
{
	static char mode_t[] = "t", mode_w[] = "w";
	int cf = open_child_file(file);
	FILE *mf = open_mon_file(file);
	seen = calloc((size_t)n, sizeof(*seen));
	if (!seen)
		die("calloc");
	sopts.stdio[1].mode = EVM_STDIO_FD;
	sopts.stdio[1].fd = cf;
	sopts.on_exit = on_exit_count;
	if (strcmp(how, "idle") == 0) {
		/* one child at a time, and we are asleep in epoll when it exits */
		child_argv[1] = mode_t;
		target = n;
		for (long i = 0; i < n; i++) {
			long before = finished;
			spawn_one();
			while (finished == before)
				evm_loop_run_once(loop, -1);
		}
	} else {
		uint64_t spawn_ns;
		int w = start_blocked(n, mode_w, &spawn_ns);
		close(w);
		evm_timer_add(loop, 60000, stop_on_timer, NULL, NULL);
		run_loop();
	}
	fwrite(seen, sizeof(*seen), (size_t)finished, mf);
	fclose(mf);
	close(cf);
	printf("ok n=%ld observed=%ld\n", n, finished);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		usage(argv[0]);
	raise_nofile();
	int r = evm_loop_new(&loop, NULL);
	if (r < 0) {
		fprintf(stderr, "bench: evmon: loop: %s\n", strerror(-r));
		return 2;
	}
	child_argv[0] = argv[2];
	sopts.argv = child_argv;
	const char *cmd = argv[1];
	long n = atol(argv[3]);
	if (strcmp(cmd, "spawn") == 0 && argc == 5)
		r = cmd_spawn(n, atol(argv[4]));
	else if (strcmp(cmd, "scale") == 0)
		r = cmd_scale(n);
	else if (strcmp(cmd, "storm") == 0)
		r = cmd_storm(n);
	else if (strcmp(cmd, "latency") == 0 && argc == 6)
		r = cmd_latency(n, argv[4], argv[5]);
	else
		usage(argv[0]);
	fflush(stdout);
	evm_loop_free(loop);
	return r;
}
