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
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* A pipe whose read end (not close-on-exec) the storm children get as stdin. */
static inline void storm_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe2");
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
#endif
