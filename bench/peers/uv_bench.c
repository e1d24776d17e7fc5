/*
 * uv_bench.c - the libuv peer: what a C programmer would write instead of
 * evmon. One uv_loop, uv_spawn per child with an exit callback that closes
 * and frees the handle. Commands and output as for every harness (common.h).
 * Children inherit our stdio (the cheapest setup, the same for every harness).
 */
#include "common.h"

#include <signal.h>
#include <uv.h>

static uv_loop_t *loop;
static char *child_argv[3];
static uv_stdio_container_t stdio[3];
static long started, finished, target;
static struct seen_rec *seen;
static void (*after_exit)(void);

static void on_close(uv_handle_t *h)
{
	free(h);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	if (seen) {
		seen[finished].pid = p->pid;
		seen[finished].ns = (int64_t)now_ns();
	}
	finished++;
	uv_close((uv_handle_t *)p, on_close);
	if (after_exit)
		after_exit();
}

static void spawn_one(void)
{
	uv_process_t *p = malloc(sizeof(*p));
	uv_process_options_t o = {0};
	o.file = child_argv[0];
	o.args = child_argv;
	o.exit_cb = on_exit_cb;
	o.stdio = stdio;
	o.stdio_count = 3;
	int r = uv_spawn(loop, p, &o);
	if (r < 0) {
		fprintf(stderr, "bench: libuv: spawn %s: %s\n", child_argv[0], uv_strerror(r));
		exit(2);
	}
	started++;
}

static void refill(void)
{
	if (started < target)
		spawn_one();
}

static int cmd_spawn(long runs, long inflight)
{
	target = runs;
	after_exit = refill;
	uint64_t t0 = now_ns();
	for (long i = 0; i < inflight && started < runs; i++)
		spawn_one();
	uv_run(loop, UV_RUN_DEFAULT);
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("ok runs=%ld secs=%.6f per_sec=%.1f\n", runs, secs, (double)runs / secs);
	return 0;
}

static void kill_walk(uv_handle_t *h, void *arg)
{
	if (h->type == UV_PROCESS && !uv_is_closing(h))
		uv_process_kill((uv_process_t *)h, SIGKILL);
}

static void on_stdin(uv_poll_t *h, int status, int events)
{
	char buf[256];
	if (read(0, buf, sizeof(buf)) > 0)
		return;
	uv_close((uv_handle_t *)h, NULL);
	uv_walk(loop, kill_walk, NULL); /* the loop then runs until every exit is in */
}

static int cmd_scale(long n)
{
	static char mode_p[] = "p";
	static uv_poll_t in;
	child_argv[1] = mode_p;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		spawn_one();
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("ready launched=%ld launch_secs=%.6f launch_us_per_child=%.3f\n", n, secs,
	       n ? secs * 1e6 / (double)n : 0.0);
	fflush(stdout);
	uv_poll_init(loop, &in, 0);
	uv_poll_start(&in, UV_READABLE | UV_DISCONNECT, on_stdin);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}

static void on_watchdog(uv_timer_t *t)
{
	uv_stop(loop);
}

static void stop_when_done(void)
{
	if (finished == target)
		uv_stop(loop);
}

/* Start n children blocked on one pipe, release them, run until all are seen. */
static double storm(long n, char *mode, double *spawn_secs)
{
	int p[2];
	static uv_timer_t wd;
	storm_pipe(p);
	child_argv[1] = mode;
	stdio[0].data.fd = p[0];
	target = n;
	after_exit = stop_when_done;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		spawn_one();
	*spawn_secs = (double)(now_ns() - t0) / 1e9;
	close(p[0]);
	uv_timer_init(loop, &wd);
	uv_timer_start(&wd, on_watchdog, 60000, 0);
	t0 = now_ns();
	close(p[1]);
	uv_run(loop, UV_RUN_DEFAULT);
	double secs = (double)(now_ns() - t0) / 1e9;
	uv_timer_stop(&wd);
	return secs;
}

static int cmd_storm(long n)
{
	static char mode_s[] = "s";
	double spawn_secs, secs = storm(n, mode_s, &spawn_secs);
	printf("ok n=%ld observed=%ld lost=%ld secs=%.6f us_per_exit=%.3f spawn_secs=%.6f\n", n,
	       finished, n - finished, secs, secs * 1e6 / (double)n, spawn_secs);
	return 0;
}

static int cmd_latency(long n, const char *how, const char *file)
{
	static char mode_t[] = "t", mode_w[] = "w";
	int cf = open_child_file(file);
	FILE *mf = open_mon_file(file);
	seen = calloc((size_t)n, sizeof(*seen));
	stdio[1].data.fd = cf;
	if (strcmp(how, "idle") == 0) {
		child_argv[1] = mode_t;
		for (long i = 0; i < n; i++) {
			long before = finished;
			spawn_one();
			while (finished == before)
				uv_run(loop, UV_RUN_ONCE);
		}
	} else {
		double spawn_secs;
		storm(n, mode_w, &spawn_secs);
	}
	fwrite(seen, sizeof(*seen), (size_t)finished, mf);
	fclose(mf);
	printf("ok n=%ld observed=%ld\n", n, finished);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		usage(argv[0]);
	raise_nofile();
	loop = uv_default_loop();
	child_argv[0] = argv[2];
	for (int i = 0; i < 3; i++) {
		stdio[i].flags = UV_INHERIT_FD;
		stdio[i].data.fd = i;
	}
	const char *cmd = argv[1];
	long n = atol(argv[3]);
	int r;
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
	return r;
}
