/*
 * evmtest.h - what the libevmon core unit tests share: the helper program's
 * path, a loop fixture that checks for leaked children and fds, running the
 * loop until a condition holds, reading pipes, and forked sub-tests for
 * checks that change process-wide state (rlimits, credentials, dispositions).
 *
 * Every wait is bounded (RUN_UNTIL fails the test after its deadline) and
 * every test runs under alarm(), so a hung test kills the binary instead of
 * the suite. Long-lived children are spawned with pdeath_signal SIGKILL, so
 * they die with the test binary even if it crashes.
 */
#ifndef EVMTEST_H
#define EVMTEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Sanitizer builds (ASan, TSan) are slower and heavier: big tests scale down
 * (and say so) and get longer alarms. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SAN 1
#endif
#endif
#ifndef T_SAN
#define T_SAN 0
#endif

/*
 * One slowness factor for every deadline: EVMON_TEST_SLOW=N (a whole number,
 * default 1) for a loaded or slow machine, times 3 in a sanitizer build.
 * Deadlines only bound waits for something that must happen; a test never
 * asserts that something was fast.
 */
static inline int t_slow(void)
{
	static int slow;
	if (!slow) {
		const char *s = getenv("EVMON_TEST_SLOW");
		int n = s && *s ? atoi(s) : 1;
		slow = (n < 1 ? 1 : n) * (T_SAN ? 3 : 1);
	}
	return slow;
}

/* a deadline of ms milliseconds on an unloaded machine, scaled */
#define T_MS(ms) ((uint64_t)(ms) * (uint64_t)t_slow())

/* seconds a single test may take before SIGALRM kills the binary */
#define T_ALARM (120 * t_slow())

/*
 * EVMON_TEST_SCALE=1 (make test-scale): a binary with a scale group (10,000
 * children, 1,000 services) runs only that group; without it only the
 * functional groups, which must pass on a loaded 2-core machine.
 */
static inline bool t_scale(void)
{
	const char *s = getenv("EVMON_TEST_SCALE");
	return s && *s && strcmp(s, "0");
}

/*
 * Root with every uid mapped: other uids and gids exist. Not the root of a
 * user namespace, which is what tests/isolate.sh gives a non-root user.
 */
static inline bool t_real_root(void)
{
	if (geteuid() != 0)
		return false;
	char buf[128] = "";
	int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true; /* no user namespaces at all */
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unsigned long inside, outside, count;
	buf[k > 0 ? k : 0] = 0;
	return sscanf(buf, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 &&
	       outside == 0 && count == 4294967295ul;
}

/*
 * Skip the running test, saying why: tests/run-units.sh lists these lines
 * in its summary next to the skipped test's name.
 */
#define T_SKIP(...)                                                                      \
	do {                                                                             \
		print_message("SKIP %s: ", __func__);                                    \
		print_message(__VA_ARGS__);                                              \
		print_message("\n");                                                     \
		skip();                                                                  \
	} while (0)

static char t_helper[PATH_MAX + 32]; /* absolute path of evm-helper */
static char t_build[PATH_MAX];	/* absolute build directory */

/* evm-helper argv: HARGV("exit", "3") */
#define HARGV(...) ((char *[]){t_helper, __VA_ARGS__, NULL})

static inline void t_init(void)
{
	const char *b = getenv("EVMON_BUILD");
	if (!b || !*b)
		b = "build/cc";
	if (!realpath(b, t_build)) {
		fprintf(stderr, "evmtest: build directory %s: %s\n", b, strerror(errno));
		exit(1);
	}
	snprintf(t_helper, sizeof(t_helper), "%s/tests/evm-helper", t_build);
	if (access(t_helper, X_OK) != 0) {
		fprintf(stderr, "evmtest: %s: %s (run make)\n", t_helper, strerror(errno));
		exit(1);
	}
	/* a hung child must not keep the output pipe of `make test` open forever */
	signal(SIGPIPE, SIG_DFL);
	/* EVMTEST_FILTER=test_name* runs only the matching tests (for debugging) */
	const char *f = getenv("EVMTEST_FILTER");
	if (f && *f)
		cmocka_set_test_filter(f);
}

static inline uint64_t t_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Until cond holds, step after step; fail the test after ms milliseconds. */
#define T_UNTIL_(cond, text, ms, step)                                                   \
	do {                                                                             \
		uint64_t t_dl_ = t_now_ms() + T_MS(ms);                                  \
		while (!(cond)) {                                                        \
			if (t_now_ms() > t_dl_)                                          \
				fail_msg("timed out after %d ms waiting for: %s",        \
					 (int)T_MS(ms), text);                           \
			step;                                                            \
		}                                                                        \
	} while (0)

/* One loop iteration of RUN_UNTIL's (at most 20 ms): an error fails the test. */
static inline void t_run_step(struct evm_loop *loop)
{
	int r = evm_loop_run_once(loop, 20);
	if (r < 0)
		fail_msg("evm_loop_run_once: %s", strerror(-r));
}

/* Run the loop until cond holds; fail the test after ms milliseconds. */
#define RUN_UNTIL(loop, cond, ms) T_UNTIL_(cond, #cond, ms, t_run_step(loop))

/* Poll a plain condition (no loop), e.g. a /proc state; fail after ms. */
#define WAIT_FOR(cond, ms) T_UNTIL_(cond, #cond, ms, usleep(2000))

/* ------------------------------------------------------------ exit records */

struct t_exit {
	int n;		     /* how many times the callback ran */
	struct evm_exit rec; /* the last record */
	struct evm_proc *proc;
};

static inline void t_on_exit(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	struct t_exit *x = data;
	x->n++;
	x->rec = *e;
	x->proc = p;
}

/* ------------------------------------------------------------- /proc, fds */

static inline int t_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* Number of children (zombies included) of this process, over all threads. */
static inline int t_count_children(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], buf[4096];
		snprintf(path, sizeof(path), "/proc/self/task/%s/children", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (k <= 0)
			continue;
		buf[k] = 0;
		for (char *s = strtok(buf, " \n"); s; s = strtok(NULL, " \n"))
			n++;
	}
	closedir(d);
	return n;
}

/* The state letter of /proc/PID/stat ('R', 'S', 'Z', ...), or 0 if gone. */
static inline char t_proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return 0;
	buf[k] = 0;
	char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' ? rp[2] : 0;
}

/* A "Key:" line's value from /proc/PID/status, into buf; false if absent. */
static inline bool t_proc_status(pid_t pid, const char *key, char *buf, size_t cap)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	bool found = false;
	if (!f)
		return false;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			char *v = line + kl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = 0;
			snprintf(buf, cap, "%s", v);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

/* What /proc/PID/fd/N points to, into buf ("" when closed). */
static inline const char *t_fd_target(pid_t pid, int fd, char *buf, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	ssize_t k = readlink(path, buf, cap - 1);
	buf[k > 0 ? k : 0] = 0;
	return buf;
}

/* Read fd until EOF (or ms pass, which fails the test) into buf; returns the length. */
static inline size_t t_read_all(int fd, char *buf, size_t cap, int ms)
{
	size_t len = 0;
	uint64_t dl = t_now_ms() + T_MS(ms);
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int left = (int)(dl > t_now_ms() ? dl - t_now_ms() : 0);
		int r = poll(&pfd, 1, left);
		if (r == 0)
			fail_msg("timed out reading fd %d (%zu bytes so far)", fd, len);
		if (r < 0 && errno == EINTR)
			continue;
		assert_true(r > 0);
		ssize_t k = read(fd, buf + len, cap - 1 - len);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		assert_true(k >= 0);
		if (k == 0 || len + (size_t)k >= cap - 1) {
			len += (size_t)(k > 0 ? k : 0);
			break;
		}
		len += (size_t)k;
	}
	buf[len] = 0;
	return len;
}

/* ------------------------------------------------------------ spawn modes */

/*
 * The spawn path and the exit-watching path are chosen from the environment
 * at evm_loop_new: main() runs a group once per mode.
 */
struct t_mode {
	const char *name;
	const char *spawn; /* EVM_SPAWN_MODE */
	const char *nopidfd; /* EVM_NO_PIDFD */
};

static const struct t_mode t_modes[] = {
	{"direct", "direct", "0"},
	{"helper", "helper", "0"},
	{"direct+sigchld", "direct", "1"},
	{"helper+sigchld", "helper", "1"},
};

static inline void t_set_mode(const struct t_mode *m)
{
	setenv("EVM_SPAWN_MODE", m->spawn, 1);
	setenv("EVM_NO_PIDFD", m->nopidfd, 1);
}

static inline void t_clear_mode(void)
{
	unsetenv("EVM_SPAWN_MODE");
	unsetenv("EVM_NO_PIDFD");
}

/* --------------------------------------------------- the per-test fixture */

/*
 * A fresh loop per test. Teardown frees it (which must kill and reap every
 * child it still has) and then checks that the test left no child and no fd
 * behind.
 */
struct t_fx {
	struct evm_loop *loop;
	int fds0;
};

static inline int t_setup_flags(void **state, unsigned flags)
{
	static struct t_fx fx;
	alarm(T_ALARM);
	memset(&fx, 0, sizeof(fx));
	fx.fds0 = t_count_fds();
	struct evm_loop_opts o = {.flags = flags};
	int r = evm_loop_new(&fx.loop, &o);
	if (r < 0) {
		fprintf(stderr, "evm_loop_new: %s\n", strerror(-r));
		return -1;
	}
	*state = &fx;
	return 0;
}

static inline int t_setup(void **state)
{
	return t_setup_flags(state, 0);
}

static inline int t_teardown(void **state)
{
	struct t_fx *fx = *state;
	evm_loop_free(fx->loop);
	fx->loop = NULL;
	int kids = t_count_children(), fds = t_count_fds();
	alarm(0);
	if (kids != 0 || fds != fx->fds0) {
		fprintf(stderr, "teardown: %d children left, %d fds (was %d)\n", kids, fds, fx->fds0);
		return -1;
	}
	return 0;
}

#define T_LOOP(state) (((struct t_fx *)*(state))->loop)

/* ------------------------------------------------------------- spawning */

/*
 * Spawn argv with the given options template (may be NULL); fails the test on
 * error. Children die with the test binary (pdeath SIGKILL) unless the
 * template sets another pdeath signal.
 */
static inline struct evm_proc *t_spawn_opts(struct evm_loop *loop, char *const *argv,
					    const struct evm_spawn_opts *tmpl)
{
	struct evm_spawn_opts o = {0};
	if (tmpl)
		o = *tmpl;
	o.argv = argv;
	if (!o.pdeath_signal)
		o.pdeath_signal = SIGKILL;
	struct evm_spawn_error err = {0};
	if (!o.error)
		o.error = &err;
	struct evm_proc *p = NULL;
	int r = evm_spawn(loop, &o, &p);
	if (r < 0)
		fail_msg("evm_spawn %s %s: %s (stage %s)", argv[0], argv[1] ? argv[1] : "",
			 strerror(-r), evm_spawn_stage_name(o.error->stage));
	assert_non_null(p);
	return p;
}

static inline struct evm_proc *t_spawn(struct evm_loop *loop, char *const *argv,
				       struct t_exit *x)
{
	struct evm_spawn_opts o = {.on_exit = x ? t_on_exit : NULL, .data = x};
	return t_spawn_opts(loop, argv, &o);
}

/*
 * Spawn argv with stdout on a pipe, wait for it to exit, and return its
 * output in buf (and its exit record in *rec if not NULL).
 */
static inline size_t t_output(struct evm_loop *loop, char *const *argv,
			      const struct evm_spawn_opts *tmpl, char *buf, size_t cap,
			      struct evm_exit *rec)
{
	struct evm_spawn_opts o = {0};
	struct t_exit x = {0};
	if (tmpl)
		o = *tmpl;
	o.stdio[1].mode = EVM_STDIO_PIPE;
	o.on_exit = t_on_exit;
	o.data = &x;
	struct evm_proc *p = t_spawn_opts(loop, argv, &o);
	int fd = evm_proc_stdio_fd(p, 1);
	assert_true(fd >= 0);
	size_t n = t_read_all(fd, buf, cap, 10000);
	close(fd);
	RUN_UNTIL(loop, x.n == 1, 10000);
	if (rec)
		*rec = x.rec;
	evm_proc_unref(p);
	return n;
}

/* ----------------------------------------------------- forked sub-tests */

/*
 * Checks that change process-wide state run in a forked child: CHECK there
 * prints the failed condition and exits 1; t_forked fails the test unless
 * the child exited 0.
 */
#define CHECK(c)                                                                          \
	do {                                                                              \
		if (!(c)) {                                                               \
			fprintf(stderr, "%s:%d: check failed: %s (errno %s)\n", __FILE__, \
				__LINE__, #c, strerror(errno));                           \
			fflush(stderr);                                                   \
			_exit(1);                                                         \
		}                                                                         \
	} while (0)

static inline void t_forked(void (*fn)(void *), void *arg)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka's handlers would longjmp into the runner and go on in the fork */
		static const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
		for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
			signal(faults[i], SIG_DFL);
		alarm(T_ALARM / 2);
		fn(arg);
		fflush(NULL);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("forked sub-test: %s %d", WIFEXITED(st) ? "exit" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* In a forked sub-test: run the loop until cond or ms pass (then exit 1). */
#define CHILD_RUN_UNTIL(loop, cond, ms)                                                  \
	do {                                                                             \
		uint64_t t_dl_ = t_now_ms() + T_MS(ms);                                  \
		while (!(cond)) {                                                        \
			CHECK(t_now_ms() <= t_dl_);                                      \
			CHECK(evm_loop_run_once((loop), 20) >= 0);                       \
		}                                                                        \
	} while (0)

#endif
