/*
 * raw_bench.c - the references: bare C loops with no monitoring logic, the
 * physical limit a monitor is measured against. Commands: see common.h, with
 * a method chosen first:
 *
 *   raw_bench posix_spawn|vfork|clone3 spawn CHILD RUNS INFLIGHT
 *       S1: spawn+reap. posix_spawn and vfork reap with waitpid(-1); clone3
 *       is clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK) (the cheapest way to get
 *       a pidfd with the child) reaped with waitid, then the pidfd closed.
 *   raw_bench clone3-epoll spawn CHILD RUNS INFLIGHT
 *       S1: the bare shape of an evented monitor: clone3 as above, the pidfd
 *       in an epoll set, and on readiness waitid(P_PIDFD) and close. Not one
 *       of the three reference loops: it shows what the design itself costs.
 *       With RAW_PIN=1 in the environment, also the CPU narrowing evmon's
 *       spawns make (spawnclone.c's pin_here): our affinity narrowed to our
 *       CPU for each clone, the child's taken back before its exec; always,
 *       with the mask read once (the least a loop can pay for it).
 *   raw_bench clone3-nowait spawn CHILD RUNS INFLIGHT
 *       issue 17's item 2, explored: clone3-epoll without CLONE_VFORK, so the
 *       loop does not wait for each child's exec (and could not learn its
 *       error). Not a reference either: an upper bound for such a design
 *       (docs/BENCHMARKS.md, "Where the time goes"). x86-64 only.
 *   raw_bench pidfd storm|latency ...
 *       S3/S4: children started with vfork, one pidfd each (pidfd_open of an
 *       unreaped child is race-free), one epoll set; on readiness:
 *       waitid(P_PIDFD) and close. Nothing else.
 *   raw_bench exectime RUNS CMD [ARG...] [:: CMD [ARG...]]...
 *       S5: posix_spawn+waitpid of CMD, RUNS times: mean/median/min wall time.
 *       With several commands, one run of each in turn, RUNS rounds (drift on
 *       the machine reaches them alike), and the figures of command K as
 *       mean_us_K, median_us_K, min_us_K, failed_K (K from 0).
 */
#include "common.h"

#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

extern char **environ;
static char *child_argv[3];

/* ------------------------------------------------------------------ clone3 */

struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
		set_tid, set_tid_size, cgroup;
};

static bool pin_mode; /* RAW_PIN=1 */
static cpu_set_t pin_all;

static int exec_child(void *arg)
{
	(void)arg;
	if (pin_mode)
		sched_setaffinity(0, sizeof(pin_all), &pin_all);
	execve(child_argv[0], child_argv, environ);
	_exit(127);
}

#if defined(__x86_64__)
/*
 * clone3 with CLONE_VM needs the child to start on its own stack, which C
 * cannot express: this stub calls fn(arg) on the new stack in the child and
 * returns the pid in the parent.
 */
long raw_clone3(struct clone3_args *a, size_t size, int (*fn)(void *), void *arg);
__asm__(".text\n.globl raw_clone3\n.type raw_clone3,@function\nraw_clone3:\n"
	"  mov %rdx, %r8\n  mov %rcx, %r9\n  mov $435, %eax\n  syscall\n"
	"  test %rax, %rax\n  jnz 1f\n"
	"  xor %ebp, %ebp\n  mov %r9, %rdi\n  call *%r8\n"
	"  mov %eax, %edi\n  mov $231, %eax\n  syscall\n  hlt\n"
	"1: ret\n");
#define CLONE3_VM 1
#else
#define CLONE3_VM 0
#endif

static char *cstack;
#define CSTACK_SIZE (64 * 1024)

static pid_t spawn_clone3(int *pidfd)
{
	struct clone3_args a = {0};
	a.pidfd = (uint64_t)(uintptr_t)pidfd;
	a.exit_signal = SIGCHLD;
#if CLONE3_VM
	a.flags = CLONE_PIDFD | CLONE_VM | CLONE_VFORK;
	a.stack = (uint64_t)(uintptr_t)cstack;
	a.stack_size = CSTACK_SIZE;
	bool pinned = false;
	if (pin_mode) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(sched_getcpu(), &one);
		pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
	}
	long pid = raw_clone3(&a, sizeof(a), exec_child, NULL);
	if (pinned)
		sched_setaffinity(0, sizeof(pin_all), &pin_all);
	if (pid < 0) {
		errno = (int)-pid;
		return -1;
	}
	return (pid_t)pid;
#else
	a.flags = CLONE_PIDFD;
	long pid = syscall(SYS_clone3, &a, sizeof(a));
	if (pid == 0)
		exec_child(NULL);
	return (pid_t)pid;
#endif
}

/*
 * clone3-nowait: CLONE_VM without CLONE_VFORK, so the loop goes on while the
 * child execs. The child runs on a stack of its own from a pool; the kernel
 * clears its slot's word at the child's exec (its mm released) or exit
 * (CLONE_CHILD_CLEARTID), and the slot is free again. The child shares our
 * memory and thread pointer while it runs: it calls nothing that writes
 * errno, only execve and exit as raw system calls.
 */
#if CLONE3_VM
static int nowait_child(void *arg)
{
	(void)arg;
	long r;
	__asm__ volatile("syscall" : "=a"(r)
			 : "0"((long)SYS_execve), "D"(child_argv[0]), "S"(child_argv), "d"(environ)
			 : "rcx", "r11", "memory");
	__asm__ volatile("syscall" : : "a"((long)SYS_exit), "D"(127L) : "rcx", "r11", "memory");
	__builtin_unreachable();
}

#define NOWAIT_STACK (16 * 1024)
static struct slot {
	int tid; /* nonzero while its child may run on the stack */
	char *stack;
} *slots;
static int nslots, slot_next;

static void nowait_init(long inflight)
{
	nslots = (int)(inflight < 500 ? inflight * 2 + 8 : 1008); /* a child per slot at most */
	slots = calloc((size_t)nslots, sizeof(*slots));
	if (!slots)
		die("memory");
	for (int i = 0; i < nslots; i++) {
		slots[i].stack = mmap(NULL, NOWAIT_STACK, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (slots[i].stack == MAP_FAILED)
			die("mmap");
	}
}

static pid_t spawn_nowait(int *pidfd)
{
	for (;;) {
		for (int k = 0; k < nslots; k++) {
			struct slot *sl = &slots[(slot_next + k) % nslots];
			if (__atomic_load_n(&sl->tid, __ATOMIC_ACQUIRE))
				continue;
			slot_next = (slot_next + k + 1) % nslots;
			sl->tid = 1;
			struct clone3_args a = {0};
			a.flags = CLONE_PIDFD | CLONE_VM | CLONE_CHILD_CLEARTID;
			a.pidfd = (uint64_t)(uintptr_t)pidfd;
			a.child_tid = (uint64_t)(uintptr_t)&sl->tid;
			a.exit_signal = SIGCHLD;
			a.stack = (uint64_t)(uintptr_t)sl->stack;
			a.stack_size = NOWAIT_STACK;
			long pid = raw_clone3(&a, sizeof(a), nowait_child, NULL);
			if (pid < 0) {
				sl->tid = 0;
				errno = (int)-pid;
				return -1;
			}
			return (pid_t)pid;
		}
		/* every slot's child is still before its exec: wait for the next one */
		int v = __atomic_load_n(&slots[slot_next].tid, __ATOMIC_ACQUIRE);
		if (v)
			syscall(SYS_futex, &slots[slot_next].tid, FUTEX_WAIT, v, NULL, NULL, 0);
	}
}
#endif

/* ------------------------------------------------------------------- spawn */

enum method { M_POSIX_SPAWN, M_VFORK, M_CLONE3, M_CLONE3_EPOLL, M_CLONE3_NOWAIT };
static int epfd;
static int *pidfd_of; /* indexed by pid */

static pid_t spawn_one(enum method m)
{
	pid_t pid;
	switch (m) {
	case M_POSIX_SPAWN: {
		int r = posix_spawn(&pid, child_argv[0], NULL, NULL, child_argv, environ);
		if (r) {
			errno = r;
			die("posix_spawn");
		}
		return pid;
	}
	case M_VFORK:
		pid = vfork();
		if (pid == 0) {
			execve(child_argv[0], child_argv, environ);
			_exit(127);
		}
		if (pid < 0)
			die("vfork");
		return pid;
	case M_CLONE3:
	case M_CLONE3_EPOLL:
	case M_CLONE3_NOWAIT: {
		int fd = -1;
#if CLONE3_VM
		pid = m == M_CLONE3_NOWAIT ? spawn_nowait(&fd) : spawn_clone3(&fd);
#else
		pid = spawn_clone3(&fd);
#endif
		if (pid < 0)
			die("clone3");
		pidfd_of[pid] = fd;
		if (m != M_CLONE3) {
			struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
			if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
				die("epoll_ctl");
		}
		return pid;
	}
	}
	return -1;
}

/* Returns how many children were reaped. */
static long reap_some(enum method m)
{
	if (m == M_CLONE3_EPOLL || m == M_CLONE3_NOWAIT) {
		struct epoll_event evs[256];
		int n = epoll_wait(epfd, evs, 256, -1);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		long done = 0;
		for (int i = 0; i < n; i++) {
			siginfo_t si;
			si.si_pid = 0;
			if (syscall(SYS_waitid, P_PIDFD, evs[i].data.fd, &si, WEXITED | WNOHANG, NULL) == 0 &&
			    si.si_pid) {
				close(evs[i].data.fd);
				done++;
			}
		}
		return done;
	}
	if (m == M_CLONE3) {
		siginfo_t si;
		if (waitid(P_ALL, 0, &si, WEXITED) < 0)
			die("waitid");
		close(pidfd_of[si.si_pid]);
		return 1;
	}
	int st;
	if (waitpid(-1, &st, 0) < 0)
		die("waitpid");
	return 1;
}

static long pid_max(void)
{
	long v = 32768;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "re");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 32768;
		fclose(f);
	}
	return v;
}

static int cmd_spawn(enum method m, long runs, long inflight)
{
	pidfd_of = calloc((size_t)pid_max() + 1, sizeof(int));
	cstack = mmap(NULL, CSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
		      -1, 0);
	if (!pidfd_of || cstack == MAP_FAILED)
		die("memory");
	long started = 0, done = 0;
	uint64_t t0 = now_ns();
	for (; started < inflight && started < runs; started++)
		spawn_one(m);
	while (done < runs) {
		long k = reap_some(m);
		done += k;
		for (; k > 0 && started < runs; k--, started++)
			spawn_one(m);
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	struct rusage ru; /* our own CPU, not the children's: what the loop itself costs */
	getrusage(RUSAGE_SELF, &ru);
	double self_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
			 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	printf("ok runs=%ld secs=%.6f per_sec=%.1f self_cpu_us=%.0f\n", runs, secs, (double)runs / secs,
	       self_us);
	return 0;
}

/* ------------------------------------------------- bare pidfd + epoll loop */

static long observed;
static struct seen_rec *seen;
static struct trace tr; /* EVMON_BENCH_TRACE: see common.h */

/*
 * Start a child with vfork. Its pidfd is opened later (watch_all): opening
 * them as we go would make every vfork copy an fd table that grows with N.
 */
static pid_t *pids;
static long npids;

static void start_vfork(int in_fd, int out_fd)
{
	pid_t pid = vfork();
	if (pid == 0) {
		if (in_fd >= 0)
			dup2(in_fd, 0);
		if (out_fd >= 0)
			dup2(out_fd, 1);
		execve(child_argv[0], child_argv, environ);
		_exit(127);
	}
	if (pid < 0)
		die("vfork");
	pids[npids++] = pid;
}

static void watch_all(void)
{
	for (long i = 0; i < npids; i++) {
		int fd = (int)syscall(SYS_pidfd_open, pids[i], 0);
		if (fd < 0)
			die("pidfd_open");
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
	}
	npids = 0;
}

/* Wait for exits until `until` have been observed or the watchdog fires. */
static void drain(long until, uint64_t deadline)
{
	struct epoll_event evs[1024];
	static long waits;
	while (observed < until) {
		uint64_t now = now_ns();
		if (now >= deadline)
			return;
		int n = epoll_wait(epfd, evs, 1024, (int)((deadline - now) / 1000000 + 1));
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		waits++;
		for (int i = 0; i < n; i++) {
			siginfo_t si;
			si.si_pid = 0;
			int fd = evs[i].data.fd;
			if (syscall(SYS_waitid, P_PIDFD, fd, &si, WEXITED | WNOHANG, NULL) < 0 ||
			    !si.si_pid)
				continue;
			close(fd);
			if (seen) {
				seen[observed].pid = si.si_pid;
				seen[observed].ns = (int64_t)now_ns();
				trace_exit(&tr, observed, si.si_pid, seen[observed].ns, waits);
			}
			observed++;
		}
	}
}

static int cmd_storm(long n, bool latency, const char *file)
{
	static char mode_s[] = "s", mode_w[] = "w";
	int p[2], out = -1;
	FILE *mf = NULL;
	storm_pipe(p);
	child_argv[1] = latency ? mode_w : mode_s;
	if (latency) {
		trace_init(&tr, n, &child_argv[1]);
		out = open_child_file(file);
		mf = open_mon_file(file);
		seen = calloc((size_t)n, sizeof(*seen));
	}
	uint64_t t0 = now_ns();
	pids = calloc((size_t)n, sizeof(*pids));
	for (long i = 0; i < n; i++)
		start_vfork(p[0], out);
	watch_all();
	uint64_t spawn_ns = now_ns() - t0;
	close(p[0]);
	trace_release0(&tr);
	t0 = now_ns();
	close(p[1]);
	trace_release1(&tr);
	drain(n, t0 + 60 * 1000000000ull);
	double secs = (double)(now_ns() - t0) / 1e9;
	storm_releaser_reap();
	if (latency) {
		trace_write(&tr, file, observed);
		fwrite(seen, sizeof(*seen), (size_t)observed, mf);
		fclose(mf);
		printf("ok n=%ld observed=%ld\n", n, observed);
	} else {
		printf("ok n=%ld observed=%ld lost=%ld secs=%.6f us_per_exit=%.3f spawn_secs=%.6f\n", n,
		       observed, n - observed, secs, secs * 1e6 / (double)n, (double)spawn_ns / 1e9);
	}
	return 0;
}

static int cmd_latency_idle(long n, const char *file)
{
	static char mode_t[] = "t";
	int out = open_child_file(file);
	FILE *mf = open_mon_file(file);
	seen = calloc((size_t)n, sizeof(*seen));
	child_argv[1] = mode_t;
	pids = calloc(1, sizeof(*pids));
	for (long i = 0; i < n; i++) {
		start_vfork(-1, out);
		watch_all();
		drain(i + 1, now_ns() + 10 * 1000000000ull);
	}
	fwrite(seen, sizeof(*seen), (size_t)observed, mf);
	fclose(mf);
	printf("ok n=%ld observed=%ld\n", n, observed);
	return 0;
}

/* --------------------------------------------------------------- exectime */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmd_exectime(long runs, char **cmd)
{
	enum { MAXCMD = 16 };
	char **cmds[MAXCMD] = {cmd};
	int ncmd = 1;
	for (char **a = cmd; *a; a++) {
		if (strcmp(*a, "::") == 0) {
			if (ncmd == MAXCMD)
				die("exectime: too many commands");
			*a = NULL;
			cmds[ncmd++] = a + 1;
		}
	}
	uint64_t *t = calloc((size_t)(runs * ncmd), sizeof(*t)), sum[MAXCMD] = {0};
	int bad[MAXCMD] = {0};
	if (!t || runs < 1)
		die("exectime");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	/* init programs chat on stderr when they are not PID 1: keep it quiet */
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	for (long i = 0; i < runs; i++) {
		for (int k = 0; k < ncmd; k++) {
			pid_t pid;
			int st;
			uint64_t t0 = now_ns();
			int r = posix_spawn(&pid, cmds[k][0], &fa, NULL, cmds[k], environ);
			if (r) {
				errno = r;
				die(cmds[k][0]);
			}
			if (waitpid(pid, &st, 0) < 0)
				die("waitpid");
			uint64_t d = now_ns() - t0;
			t[(size_t)k * (size_t)runs + (size_t)i] = d;
			sum[k] += d;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				bad[k]++;
		}
	}
	printf("ok runs=%ld", runs);
	for (int k = 0; k < ncmd; k++) {
		uint64_t *tk = t + (size_t)k * (size_t)runs;
		qsort(tk, (size_t)runs, sizeof(*tk), cmp_u64);
		char suffix[8] = "";
		if (ncmd > 1)
			snprintf(suffix, sizeof(suffix), "_%d", k);
		printf(" mean_us%s=%.2f median_us%s=%.2f min_us%s=%.2f failed%s=%d", suffix,
		       (double)sum[k] / (double)runs / 1e3, suffix, (double)tk[runs / 2] / 1e3, suffix,
		       (double)tk[0] / 1e3, suffix, bad[k]);
	}
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		usage(argv[0]);
	raise_nofile();
	const char *method = argv[1];
	if (strcmp(method, "exectime") == 0)
		return cmd_exectime(atol(argv[2]), argv + 3);
	const char *cmd = argv[2];
	child_argv[0] = argv[3];
	long n = argc > 4 ? atol(argv[4]) : 0;
	if (strcmp(cmd, "spawn") == 0 && argc == 6) {
		enum method m;
		if (strcmp(method, "posix_spawn") == 0)
			m = M_POSIX_SPAWN;
		else if (strcmp(method, "vfork") == 0)
			m = M_VFORK;
		else if (strcmp(method, "clone3") == 0)
			m = M_CLONE3;
		else if (strcmp(method, "clone3-epoll") == 0)
			m = M_CLONE3_EPOLL;
#if CLONE3_VM
		else if (strcmp(method, "clone3-nowait") == 0) {
			m = M_CLONE3_NOWAIT;
			nowait_init(atol(argv[5]));
		}
#endif
		else
			usage(argv[0]);
		pin_mode = m == M_CLONE3_EPOLL && getenv("RAW_PIN") && atoi(getenv("RAW_PIN")) == 1 &&
			   sched_getaffinity(0, sizeof(pin_all), &pin_all) == 0 && CPU_COUNT(&pin_all) > 1;
		if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("epoll_create1");
		return cmd_spawn(m, n, atol(argv[5]));
	}
	if (strcmp(method, "pidfd") != 0)
		usage(argv[0]);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	if (strcmp(cmd, "storm") == 0 && argc == 5)
		return cmd_storm(n, false, NULL);
	if (strcmp(cmd, "latency") == 0 && argc == 7 && strcmp(argv[5], "idle") == 0)
		return cmd_latency_idle(n, argv[6]);
	if (strcmp(cmd, "latency") == 0 && argc == 7)
		return cmd_storm(n, true, argv[6]);
	usage(argv[0]);
}
