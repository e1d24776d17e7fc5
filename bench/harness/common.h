/*
 * common.h - what every C benchmark harness shares: the command line, the
 * clock, the fd limit, and the record files of the latency scenario.
 *
 * Every harness (evmon, the raw reference loops, libuv) takes the same
 * commands, so the runner drives them all alike:
 *
 *   H spawn   CHILD RUNS INFLIGHT     spawn+reap RUNS children, INFLIGHT at a time
 *   H scale   CHILD N                 start N long-lived children ("CHILD p"), print
 *                                     "ready", idle until stdin reaches EOF, then
 *                                     kill and reap them all
 *   H storm   CHILD N                 N children ("CHILD s") block on one pipe; close
 *                                     it and time until every exit has been observed
 *   H latency CHILD N idle|storm FILE children append {pid, t_exit} to FILE ("CHILD t"
 *                                     or "CHILD w"); we append {pid, t_seen} to FILE.mon
 *
 * Results are one line of key=value pairs on stdout, starting with "ok".
 *
 * EVMON_BENCH_TRACE=1 (latency storm only; bench/stormtrace.py sets it): the
 * children run "CHILD c" (as "w", and their record's pid also carries the CPU
 * they stamped on, bits 32-47), and FILE.trace gets one struct trace_rec per
 * exit the monitor saw: which of its wake-ups saw it (evmon: the loop
 * iteration; the bare loop: the epoll_wait call) and the CPU it ran on then.
 * FILE.tinfo gets the times around the release (the close of the pipe, which
 * wakes every child) and the monitor's scheduler counters (/proc/self/sched)
 * before and after. All of it outside the timed path but one sched_getcpu
 * (glibc reads it from rseq) per exit.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Many children means many pidfds: take the whole hard limit. */
static inline void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

__attribute__((noreturn)) static inline void die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(2);
}

__attribute__((noreturn)) static inline void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s spawn CHILD RUNS INFLIGHT | scale CHILD N | storm CHILD N |\n"
		"       %s latency CHILD N idle|storm FILE\n",
		prog, prog);
	exit(2);
}

/*
 * A pipe whose read end the storm children get as stdin; closing p[1]
 * releases them. EVMON_BENCH_RELEASE=child (an experiment of
 * bench/stormtrace.py): a forked process holds the pipe's write end instead,
 * and p[1] is a second pipe to it; closing p[1] makes it close the write end
 * and exit, so the wake-up of every child is its work, not the monitor's.
 */
static inline pid_t *storm_releaser(void)
{
	static pid_t pid = -1;
	return &pid;
}

static inline void storm_pipe(int p[2])
{
	int t[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe2");
	const char *e = getenv("EVMON_BENCH_RELEASE");
	if (!e || strcmp(e, "child") != 0)
		return;
	if (pipe2(t, O_CLOEXEC) < 0)
		die("pipe2");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char c;
		close(p[0]);
		close(t[1]);
		while (read(t[0], &c, 1) < 0 && errno == EINTR)
			;
		close(p[1]);
		_exit(0);
	}
	*storm_releaser() = pid;
	close(t[0]);
	close(p[1]);
	p[1] = t[1];
}

/* After the storm: the releaser, if any, has exited; collect it. */
static inline void storm_releaser_reap(void)
{
	if (*storm_releaser() > 0)
		waitpid(*storm_releaser(), NULL, 0);
	*storm_releaser() = -1;
}

/* Block until the runner closes our stdin (the end of the idle window). */
static inline void wait_stdin_eof(void)
{
	char buf[256];
	while (read(0, buf, sizeof(buf)) > 0)
		;
}

/* The monitor's record for one exit: when our callback ran. */
struct seen_rec {
	int64_t pid;
	int64_t ns;
};

static inline FILE *open_mon_file(const char *childfile)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s.mon", childfile);
	FILE *f = fopen(path, "we");
	if (!f)
		die(path);
	return f;
}

/* The children's file: O_APPEND so that their 16-byte writes never mix. */
static inline int open_child_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path);
	return fd;
}

struct trace_rec {
	int64_t pid; /* the monitor's view: no CPU bits */
	int64_t ns;
	int32_t batch;
	int32_t cpu;
};

struct trace {
	struct trace_rec *rec; /* NULL: tracing off */
	uint64_t release0, release1;
	int cpu0;
	char sched0[512];
};

/* /proc/self/sched's counters for this thread, as " KEYsuffix=value" pairs */
static inline void trace_sched(char *out, size_t size, const char *suffix)
{
	static const char *const keys[] = {"se.sum_exec_runtime", "se.nr_migrations", "nr_switches",
					   "nr_voluntary_switches", "nr_involuntary_switches"};
	char line[256];
	size_t used = 0;
	out[0] = 0;
	FILE *f = fopen("/proc/self/sched", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			size_t kl = strlen(keys[k]);
			char *colon = strchr(line, ':');
			if (strncmp(line, keys[k], kl) != 0 || !colon || strspn(line + kl, " ") != (size_t)(colon - line - kl))
				continue;
			double v = strtod(colon + 1, NULL);
			int w = snprintf(out + used, size - used, " %s%s=%.6f", keys[k], suffix, v);
			if (w > 0 && (size_t)w < size - used)
				used += (size_t)w;
		}
	}
	fclose(f);
}

/* Tracing wanted? Then allocate n records and choose the children's mode. */
static inline void trace_init(struct trace *t, long n, char **child_mode)
{
	static char mode_c[] = "c";
	const char *e = getenv("EVMON_BENCH_TRACE");
	memset(t, 0, sizeof(*t));
	if (!e || !*e || strcmp(e, "0") == 0)
		return;
	t->rec = calloc((size_t)n, sizeof(*t->rec));
	if (!t->rec)
		die("calloc");
	*child_mode = mode_c;
}

/* Just before the release (the close that wakes every child). */
static inline void trace_release0(struct trace *t)
{
	if (!t->rec)
		return;
	trace_sched(t->sched0, sizeof(t->sched0), "_0");
	t->cpu0 = sched_getcpu();
	t->release0 = now_ns();
}

static inline void trace_release1(struct trace *t)
{
	if (t->rec)
		t->release1 = now_ns();
}

/* Exit number i was seen at ns, in the monitor's wake-up number batch. */
static inline void trace_exit(struct trace *t, long i, int64_t pid, int64_t ns, long batch)
{
	if (!t->rec)
		return;
	t->rec[i].pid = pid;
	t->rec[i].ns = ns;
	t->rec[i].batch = (int32_t)batch;
	t->rec[i].cpu = sched_getcpu();
}

static inline void trace_write(struct trace *t, const char *childfile, long seen)
{
	if (!t->rec)
		return;
	uint64_t end = now_ns();
	char path[4096], sched1[512];
	trace_sched(sched1, sizeof(sched1), "_1");
	snprintf(path, sizeof(path), "%s.trace", childfile);
	FILE *f = fopen(path, "we");
	if (!f || fwrite(t->rec, sizeof(*t->rec), (size_t)seen, f) != (size_t)seen || fclose(f) != 0)
		die(path);
	snprintf(path, sizeof(path), "%s.tinfo", childfile);
	if (!(f = fopen(path, "we")))
		die(path);
	fprintf(f, "pid=%d release0=%llu release1=%llu end=%llu cpu0=%d ncpu=%ld%s%s\n", (int)getpid(),
		(unsigned long long)t->release0, (unsigned long long)t->release1,
		(unsigned long long)end, t->cpu0, sysconf(_SC_NPROCESSORS_ONLN), t->sched0, sched1);
	if (fclose(f) != 0)
		die(path);
	free(t->rec);
	t->rec = NULL;
}
#endif
