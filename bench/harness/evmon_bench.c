/*
 * evmon_bench.c - the evmon side of every library-level scenario (S1-S4),
 * written the way a user would: the public API of include/evmon.h, one loop,
 * a per-process exit callback. Commands and output: see common.h.
 *
 * Two more commands exercise the services API (S7):
 *
 *   evmon_bench crashloop CHILD N CAP_MS SECS
 *       N services restarting CHILD (which exits at once) forever, every
 *       restart delayed by the backoff cap; their starts are spread over
 *       one cap, then after one cap of warm-up we measure our own CPU time
 *       for SECS seconds.
 *   evmon_bench restart CHILD RUNS
 *       one service running "CHILD n" (tiny's 12 ms nap: a run under 10 ms
 *       is never stable, and a crash loop's restarts wait 10 ms at least),
 *       restarted with zero delay: exit event -> next spawn event, RUNS
 *       times; then the same number of bare vfork+exec of "CHILD n", each
 *       after the last one's nap as the restarts are (vfork returns once the
 *       child has exec'd: the kernel's spawn cost).
 *
 * EVM_SPAWN_MODE (direct|helper|auto) and EVM_NO_PIDFD are read by the
 * library itself, so the runner measures each path with the same binary.
 * EVMON_BENCH_CGROUP=PATH (a cgroup v2 directory) spawns every child into
 * that cgroup (evm_spawn_opts.cgroup_fd: clone3 CLONE_INTO_CGROUP), for the
 * cost of placing children in a cgroup at birth (S11). EVMON_BENCH_NOWAIT=1
 * spawns with EVM_SPAWN_NOWAIT (the loop does not wait for each exec).
 */
#include "common.h"

#include <evmon.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

static struct evm_loop *loop;
static char *child_argv[3];
static struct evm_spawn_opts sopts;
static long started, finished, target;
static struct seen_rec *seen;
static struct trace tr; /* EVMON_BENCH_TRACE: see common.h */

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
		trace_exit(&tr, finished, e->pid, seen[finished].ns, (long)evm_loop_iterations(loop));
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
	/* EVMON_BENCH_SETSID=1: each child in a session of its own, as the daemon's services
	 * (with autogroups on, every session is also a scheduler group of its own) */
	if (getenv("EVMON_BENCH_SETSID"))
		sopts.flags |= EVM_SPAWN_SETSID;
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
	storm_releaser_reap();
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
		char *mode = mode_w;
		trace_init(&tr, n, &mode);
		int w = start_blocked(n, mode, &spawn_ns);
		trace_release0(&tr);
		close(w);
		trace_release1(&tr);
		evm_timer_add(loop, 60000, stop_on_timer, NULL, NULL);
		run_loop();
		trace_write(&tr, file, finished);
		storm_releaser_reap();
	}
	fwrite(seen, sizeof(*seen), (size_t)finished, mf);
	fclose(mf);
	close(cf);
	printf("ok n=%ld observed=%ld\n", n, finished);
	return 0;
}

/* ------------------------------------------------------------- services */

static struct evm_service **svcs;
static long nsvcs, next_start, spawns;

static void start_next(struct evm_timer *t, void *data)
{
	evm_service_start(svcs[next_start++]);
}

static void count_spawns(struct evm_loop *l, const struct evm_event *ev, void *data)
{
	spawns++;
}

static struct evm_service *new_service(long i, uint64_t delay_ms, bool reset_backoff)
{
	char name[32];
	struct evm_service_opts o = {0};
	struct evm_service *svc;
	snprintf(name, sizeof(name), "s%ld", i);
	o.name = name;
	o.spawn.argv = child_argv;
	o.restart = EVM_RESTART_ALWAYS;
	/* no start grace (a child that exits at once is not a failed start), no give-up */
	o.set = EVM_SVC_START_MS | EVM_SVC_BACKOFF_INITIAL | EVM_SVC_BACKOFF_MAX;
	o.backoff_initial_ms = o.backoff_max_ms = delay_ms;
	if (reset_backoff) {
		o.set |= EVM_SVC_STABLE_MS; /* every run counts as stable: the delay stays 0 */
		o.stable_ms = 0;
	}
	int r = evm_service_new(loop, &o, &svc);
	if (r < 0) {
		fprintf(stderr, "bench: evmon: service %s: %s\n", name, strerror(-r));
		exit(2);
	}
	return svc;
}

static double cpu_secs(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void run_for(uint64_t ms)
{
	evm_timer_add(loop, ms, stop_on_timer, NULL, NULL);
	run_loop();
}

static int cmd_crashloop(long n, long cap_ms, long secs)
{
	svcs = calloc((size_t)n, sizeof(*svcs));
	nsvcs = n;
	for (long i = 0; i < n; i++) {
		svcs[i] = new_service(i, (uint64_t)cap_ms, false);
		evm_timer_add(loop, (uint64_t)(i * cap_ms / n), start_next, NULL, NULL);
	}
	evm_subscribe(loop, EVM_EV_SPAWN, count_spawns, NULL, NULL);
	run_for((uint64_t)cap_ms * 2); /* spread, then one full cycle at the cap */
	long spawns0 = spawns;
	double c0 = cpu_secs();
	uint64_t t0 = now_ns();
	run_for((uint64_t)secs * 1000);
	double wall = (double)(now_ns() - t0) / 1e9, cpu = cpu_secs() - c0;
	long restarts = spawns - spawns0;
	printf("ok n=%ld cap_ms=%ld secs=%.3f restarts=%ld restarts_per_sec=%.1f cpu_pct=%.4f "
	       "cpu_us_per_restart=%.2f\n",
	       n, cap_ms, wall, restarts, (double)restarts / wall, cpu * 100 / wall,
	       restarts ? cpu * 1e6 / (double)restarts : 0.0);
	evm_shutdown(loop, 0);
	return 0;
}

static uint64_t t_exit;
static long nlat, want_lat;
static uint64_t *lat;

static void on_restart_event(struct evm_loop *l, const struct evm_event *ev, void *data)
{
	uint64_t t = now_ns();
	if (ev->type == EVM_EV_EXIT) {
		t_exit = t;
	} else if (ev->type == EVM_EV_SPAWN && t_exit) {
		lat[nlat++] = t - t_exit;
		t_exit = 0;
		if (nlat == want_lat)
			evm_loop_stop(loop);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

extern char **environ;

static int cmd_restart(long runs)
{
	want_lat = runs;
	lat = calloc((size_t)runs, sizeof(*lat));
	uint64_t *raw = calloc((size_t)runs, sizeof(*raw));
	child_argv[1] = "n"; /* stable runs: no restart waits for the crash-loop floor */
	struct evm_service *svc = new_service(0, 0, true);
	evm_subscribe(loop, EVM_EV_EXIT | EVM_EV_SPAWN, on_restart_event, NULL, NULL);
	evm_service_start(svc);
	run_loop();
	evm_service_stop(svc);
	evm_shutdown(loop, 0);
	for (long i = 0; i < runs; i++) {
		uint64_t t0 = now_ns();
		pid_t pid = vfork();
		if (pid == 0) {
			execve(child_argv[0], child_argv, environ);
			_exit(127);
		}
		raw[i] = now_ns() - t0;
		waitpid(pid, NULL, 0);
	}
	qsort(lat, (size_t)nlat, sizeof(*lat), cmp_u64);
	qsort(raw, (size_t)runs, sizeof(*raw), cmp_u64);
	double p50 = (double)lat[nlat / 2] / 1e3, k50 = (double)raw[runs / 2] / 1e3;
	printf("ok runs=%ld restart_p50_us=%.2f restart_p99_us=%.2f vfork_exec_p50_us=%.2f "
	       "restart_over_spawn=%.3f\n",
	       nlat, p50, (double)lat[nlat * 99 / 100] / 1e3, k50, p50 / k50);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		usage(argv[0]);
	raise_nofile();
	/* EVMON_BENCH_REAPER: the loop in reaper mode (subreaper), as `evmon init` and the daemon run it */
	const char *reaper = getenv("EVMON_BENCH_REAPER");
	struct evm_loop_opts lopts = {.flags = reaper && *reaper ? EVM_LOOP_REAPER : 0};
	/* EVMON_BENCH_LOCAL_CPU: children set themselves up on the loop's CPU (opt-in) */
	const char *local = getenv("EVMON_BENCH_LOCAL_CPU");
	if (local && *local)
		lopts.flags |= EVM_LOOP_SPAWN_LOCAL_CPU;
	int r = evm_loop_new(&loop, &lopts);
	if (r < 0) {
		fprintf(stderr, "bench: evmon: loop: %s\n", strerror(-r));
		return 2;
	}
	child_argv[0] = argv[2];
	sopts.argv = child_argv;
	const char *nowait = getenv("EVMON_BENCH_NOWAIT");
	if (nowait && *nowait)
		sopts.flags |= EVM_SPAWN_NOWAIT;
	const char *cgpath = getenv("EVMON_BENCH_CGROUP");
	struct evm_cgroup *cg = NULL;
	if (cgpath && *cgpath) {
		if ((r = evm_cgroup_open(cgpath, &cg)) < 0 || (r = evm_cgroup_fd(cg)) < 0) {
			fprintf(stderr, "bench: evmon: cgroup %s: %s\n", cgpath, strerror(-r));
			return 2;
		}
		sopts.flags |= EVM_SPAWN_CGROUP;
		sopts.cgroup_fd = r;
	}
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
	else if (strcmp(cmd, "crashloop") == 0 && argc == 6)
		r = cmd_crashloop(n, atol(argv[4]), atol(argv[5]));
	else if (strcmp(cmd, "restart") == 0)
		r = cmd_restart(n);
	else
		usage(argv[0]);
	fflush(stdout);
	evm_loop_free(loop);
	evm_cgroup_free(cg);
	return r;
}
