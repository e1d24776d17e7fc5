/*
 * test_reap.c - noticing exits: exit records (code, signal, core dump,
 * rusage, times), exactly-once reporting under load (a storm of 10,000
 * children exiting at the same instant), owned mode never reaping what is
 * not ours, exits reaped by someone else, running out of fds for pidfds,
 * reaper mode as a subreaper (orphans, storms of them; a few children
 * watched through SIGCHLD alone, storms past that), and the races of
 * callbacks that kill the next child of a scan or meet a dead spawn helper.
 *
 * Mode-dependent tests run once per spawn/watch mode (see evmtest.h).
 * Process-wide changes (rlimits, subreaper, dispositions) happen in forks.
 */
#include "evmtest.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static const struct t_mode *mode;

static int setup(void **state)
{
	t_set_mode(mode);
	int r = t_setup(state);
	t_clear_mode();
	return r;
}

static void set_mode_named(const char *name)
{
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++)
		if (!strcmp(t_modes[i].name, name))
			t_set_mode(&t_modes[i]);
}

/* ---------------------------------------------------------- exit records */

static void test_exit_records(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	static const struct {
		const char *cmd, *arg;
		int code, sig;
	} cases[] = {
		{"exit", "0", 0, 0},	{"exit", "1", 1, 0},	 {"exit", "255", 255, 0},
		{"kill", "15", -1, 15}, {"kill", "9", -1, 9},	 {"kill", "1", -1, 1},
	};
	enum { N = sizeof(cases) / sizeof(cases[0]) };
	struct t_exit x[N];
	struct evm_proc *p[N];
	memset(x, 0, sizeof(x));
	for (int i = 0; i < N; i++)
		p[i] = t_spawn(loop, HARGV((char *)cases[i].cmd, (char *)cases[i].arg), &x[i]);
	for (int i = 0; i < N; i++) {
		RUN_UNTIL(loop, x[i].n == 1, 10000);
		const struct evm_exit *e = &x[i].rec;
		assert_int_equal(e->pid, evm_proc_pid(p[i]));
		assert_int_equal(e->code, cases[i].code);
		assert_int_equal(e->signal, cases[i].sig);
		assert_false(e->status_unknown);
		assert_false(e->core_dumped);
		if (cases[i].sig) {
			assert_true(WIFSIGNALED(e->status));
			assert_int_equal(WTERMSIG(e->status), cases[i].sig);
			assert_int_equal(evm_exit_shell_code(e), 128 + cases[i].sig);
		} else {
			assert_true(WIFEXITED(e->status));
			assert_int_equal(WEXITSTATUS(e->status), cases[i].code);
			assert_int_equal(evm_exit_shell_code(e), cases[i].code);
		}
		/* the same record, kept with the proc */
		const struct evm_exit *kept = evm_proc_exit_record(p[i]);
		assert_non_null(kept);
		assert_int_equal(kept->status, e->status);
		evm_proc_unref(p[i]);
	}
	assert_int_equal(evm_exit_shell_code(NULL), -1);
}

static void test_rusage_and_times(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x};
	o.stdio[1].mode = EVM_STDIO_NULL;
	/* some CPU (writing 200 MB to /dev/null), then 50 ms asleep */
	struct evm_proc *p = t_spawn_opts(loop, HARGV("bytes", "200000000", "sleep", "50"), &o);
	RUN_UNTIL(loop, x.n == 1, 20000);
	const struct evm_exit *e = &x.rec;
	assert_int_equal(e->code, 0);
	assert_true(e->rusage.ru_maxrss > 0);
	assert_true(e->rusage.ru_utime.tv_sec + e->rusage.ru_utime.tv_usec + e->rusage.ru_stime.tv_sec +
			    e->rusage.ru_stime.tv_usec >
		    0);
	/*
	 * Not >= 50 ms: the clock starts when evm_spawn has returned, so a
	 * parent descheduled right after the exec undercounts (seen: 30 ms).
	 */
	assert_true(e->runtime_ns > 0);
	int64_t start = (int64_t)e->start_time.tv_sec * 1000000000 + e->start_time.tv_nsec;
	int64_t end = (int64_t)e->end_time.tv_sec * 1000000000 + e->end_time.tv_nsec;
	assert_true(start > 0);
	assert_true(end >= start);
	evm_proc_unref(p);
}

/* A core dump when the system allows one cheaply: core_pattern writing a file in the cwd. */
static void test_core_dump(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char pattern[256] = "";
	int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t k = read(fd, pattern, sizeof(pattern) - 1);
		pattern[k > 0 ? k : 0] = 0;
		close(fd);
	}
	pattern[strcspn(pattern, "\n")] = 0;
	if (!*pattern || pattern[0] == '|' || pattern[0] == '/') {
		T_SKIP("core_pattern '%s' is not a plain file in the cwd", pattern);
	}
	char dir[] = "/tmp/evmtest-core-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct t_exit x = {0};
	struct evm_rlimit rl = {RLIMIT_CORE, {RLIM_INFINITY, RLIM_INFINITY}};
	struct evm_spawn_opts o = {.on_exit = t_on_exit, .data = &x, .rlimits = &rl, .nrlimits = 1,
				   .cwd = dir};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("kill", "3"), &o);
	RUN_UNTIL(loop, x.n == 1, 20000);
	/* clean up whatever the kernel wrote */
	DIR *d = opendir(dir);
	struct dirent *de;
	int files = 0;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%.200s", dir, de->d_name);
		unlink(path);
		files++;
	}
	if (d)
		closedir(d);
	rmdir(dir);
	evm_proc_unref(p);
	assert_int_equal(x.rec.signal, SIGQUIT);
	if (!x.rec.core_dumped && files == 0) {
		/* e.g. ASan, which sets RLIMIT_CORE to 0 in the instrumented child */
		T_SKIP("the kernel wrote no core (pattern '%s'%s)", pattern,
		       T_SAN ? ", sanitizer build" : "");
	}
	assert_true(x.rec.core_dumped);
	assert_true(WCOREDUMP(x.rec.status));
	assert_int_equal(WTERMSIG(x.rec.status), SIGQUIT);
}

/* ----------------------------------------------------------- exactly once */

struct slot {
	pid_t pid;
	int n, code, sig;
	int want;
};

static void slot_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	struct slot *s = data;
	(void)p;
	s->n++;
	s->code = e->code;
	s->sig = e->signal;
	if (s->pid != e->pid)
		s->n += 1000; /* a record for the wrong process */
}

static int all_reported(const struct slot *s, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += s[i].n > 0;
	return k;
}

/*
 * n children block reading one pipe; closing its write end releases them
 * all at the same instant. Each exits with its own code; each must be
 * reported once, with that code.
 */
static void release_together(struct evm_loop *loop, int n, bool stdin_pipe_only)
{
	struct slot *s = calloc((size_t)n, sizeof(*s));
	assert_non_null(s);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	static char codes[256][12];
	for (int i = 0; i < 256; i++)
		snprintf(codes[i], sizeof(codes[i]), "%d", i);
	for (int i = 0; i < n; i++) {
		struct evm_spawn_opts o = {.on_exit = slot_cb, .data = &s[i]};
		o.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, pp[0]};
		if (!stdin_pipe_only)
			o.stdio[1].mode = EVM_STDIO_NULL;
		s[i].want = (i * 7) % 256;
		struct evm_proc *p = t_spawn_opts(loop, HARGV("cat", "exit", codes[s[i].want]), &o);
		s[i].pid = evm_proc_pid(p);
		evm_proc_unref(p);
		if (i % 256 == 255)
			evm_loop_run_once(loop, 0); /* nothing may be reported yet */
	}
	assert_int_equal(all_reported(s, n), 0);
	assert_int_equal(evm_loop_alive(loop), (size_t)n);
	close(pp[0]);
	close(pp[1]);
	RUN_UNTIL(loop, all_reported(s, n) == n, 60000 + 30 * n); /* generous: a loaded machine */
	/* a few more iterations (and the deferred scan) must not report anything twice */
	for (int k = 0; k < 3; k++)
		evm_loop_run_once(loop, 30);
	for (int i = 0; i < n; i++) {
		if (s[i].n != 1 || s[i].code != s[i].want || s[i].sig)
			fail_msg("child %d (pid %d): reported %d times, code %d signal %d, want code %d",
				 i, (int)s[i].pid, s[i].n, s[i].code, s[i].sig, s[i].want);
	}
	assert_int_equal(evm_loop_alive(loop), 0);
	free(s);
}

static void test_many_exit_together(void **state)
{
	release_together(T_LOOP(state), T_SAN ? 100 : 300, false);
}

/*
 * The storm, in the default mode, past HELPER_LIVE_THRESHOLD (512 live),
 * where a loop that cannot share its fd table with a child moves to the
 * spawn helper (this kernel shares: direct clones throughout): 600
 * children, and in the scale group 10,000 (1,000 under ASan, where every
 * child is an instrumented, much heavier process).
 */
static void test_storm(void **state)
{
	(void)state;
	int want = t_scale() ? (T_SAN ? 1000 : 10000) : 600, n = want;
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max < (rlim_t)n + 200) {
		print_message("storm: RLIMIT_NOFILE hard limit %llu is too small for %d pidfds; "
			      "running %llu children\n",
			      (unsigned long long)rl.rlim_max, n, (unsigned long long)rl.rlim_max - 200);
		n = (int)rl.rlim_max - 200;
	}
	if (t_scale() && T_SAN)
		print_message("storm: sanitizer build, %d children instead of 10000\n", want);
	struct evm_loop *loop;
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	uint64_t t0 = t_now_ms();
	release_together(loop, n, true);
	print_message("storm: %d children spawned, released, reported in %llu ms\n", n,
		      (unsigned long long)(t_now_ms() - t0));
	evm_loop_free(loop);
}

/* The same storm through the spawn helper only, smaller (scale group only:
 * the per-mode tests run 300 children through the helper). */
static void test_storm_helper(void **state)
{
	(void)state;
	struct evm_loop *loop;
	set_mode_named("helper");
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	t_clear_mode();
	release_together(loop, T_SAN ? 300 : 3000, true);
	evm_loop_free(loop);
}

/* ----------------------------------------------------- owned mode, foreign */

/* A child forked by other code in this process is never reaped by the loop. */
static void test_owned_does_not_steal(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t foreign = fork();
	assert_true(foreign >= 0);
	if (foreign == 0) {
		usleep(30 * 1000);
		_exit(7);
	}
	struct t_exit x[5];
	memset(x, 0, sizeof(x));
	struct evm_proc *p[5];
	for (int i = 0; i < 5; i++)
		p[i] = t_spawn(loop, HARGV("sleep", "10", "exit", "1"), &x[i]);
	RUN_UNTIL(loop, x[0].n && x[1].n && x[2].n && x[3].n && x[4].n, 10000);
	/* keep the loop running past the foreign exit and the deferred scan */
	WAIT_FOR(t_proc_state(foreign) == 'Z', 10000);
	for (int k = 0; k < 5; k++)
		evm_loop_run_once(loop, 30);
	int st;
	assert_int_equal(waitpid(foreign, &st, WNOHANG), foreign);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 7);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(x[i].n, 1);
		evm_proc_unref(p[i]);
	}
}

/*
 * A fork elsewhere in the process holds copies of our pidfds while their
 * children exit: each exit is reported once, and the registrations that
 * outlive our close (the copies keep the files open) never report again.
 */
static void test_pidfd_copies_in_a_fork(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x[20];
	memset(x, 0, sizeof(x));
	struct evm_proc *p[20];
	int go[2];
	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < 10; i++)
		p[i] = t_spawn(loop, HARGV("sleep", "50", "exit", "1"), &x[i]);
	/* the fork's fd table is a copy of ours, pidfds included */
	pid_t holder = fork();
	assert_true(holder >= 0);
	if (holder == 0) {
		char c;
		close(go[1]);
		ssize_t r = read(go[0], &c, 1); /* until the test is done */
		_exit(r < 0);
	}
	close(go[0]);
	RUN_UNTIL(loop, x[0].n && x[1].n && x[2].n && x[3].n && x[4].n && x[5].n && x[6].n &&
			    x[7].n && x[8].n && x[9].n, 10000);
	/* new children reuse the fd numbers; the old registrations must stay quiet */
	for (int i = 10; i < 20; i++)
		p[i] = t_spawn(loop, HARGV("sleep", "20", "exit", "2"), &x[i]);
	RUN_UNTIL(loop, x[10].n && x[11].n && x[12].n && x[13].n && x[14].n && x[15].n &&
			    x[16].n && x[17].n && x[18].n && x[19].n, 10000);
	for (int k = 0; k < 5; k++)
		evm_loop_run_once(loop, 10);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(x[i].n, 1);
		assert_int_equal(x[i].rec.code, i < 10 ? 1 : 2);
		evm_proc_unref(p[i]);
	}
	close(go[1]);
	int st;
	assert_int_equal(waitpid(holder, &st, 0), holder);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Our child reaped by someone else (a foreign waitpid): reported, status unknown. */
static void test_reaped_by_someone_else(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct t_exit x = {0};
	struct evm_proc *p = t_spawn(loop, HARGV("exit", "3"), &x);
	int st;
	assert_int_equal(waitpid(evm_proc_pid(p), &st, 0), evm_proc_pid(p));
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_true(x.rec.status_unknown);
	assert_int_equal(x.rec.code, -1);
	assert_int_equal(evm_exit_shell_code(&x.rec), -1);
	assert_int_equal(evm_proc_signal(p, 0), -ESRCH);
	evm_proc_unref(p);
}

struct modearg {
	const struct t_mode *m;
	int reported, warnings;
};

static void count_warnings(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	(void)ev;
	((struct modearg *)data)->warnings++;
}

/*
 * SIGCHLD ignored: the kernel reaps our children itself as they exit, so
 * each exit is reported with an unknown status. Many short-lived children,
 * so that some are gone before the spawn has even returned.
 */
static void sigchld_ignored(void *arg)
{
	struct modearg *a = arg;
	enum { N = 100 };
	signal(SIGCHLD, SIG_IGN);
	t_set_mode(a->m);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	CHECK(evm_subscribe(loop, EVM_EV_WARNING, count_warnings, a, NULL) == 0);
	char *argv[] = {t_helper, "exit", "3", NULL};
	static struct t_exit x[N];
	static pid_t pid[N];
	if (!strcmp(a->m->nopidfd, "1")) {
		/* no pidfd and no SIGCHLD: nothing could tell of the exit, so no child */
		for (int i = 0; i < 3; i++) {
			struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
			struct evm_spawn_error err = {0};
			o.error = &err;
			CHECK(evm_spawn(loop, &o, NULL) == -EMFILE && err.stage == EVM_STAGE_PIDFD);
		}
		a->reported = -1;
		evm_loop_free(loop);
		return;
	}
	for (int i = 0; i < N; i++) {
		struct evm_spawn_opts o = {.argv = argv, .on_exit = t_on_exit, .data = &x[i],
					   .pdeath_signal = SIGKILL};
		struct evm_proc *p;
		CHECK(evm_spawn(loop, &o, &p) == 0);
		pid[i] = evm_proc_pid(p);
		evm_proc_unref(p);
	}
	/*
	 * With pidfds every exit must be reported: wait for all of them. Without,
	 * none can be (the outcome the caller expects to fail): wait until the
	 * kernel has reaped every child, then past the deferred scan.
	 */
	bool pidfds = strcmp(a->m->nopidfd, "1") != 0;
	uint64_t dl = t_now_ms() + T_MS(30000), quiet = 0;
	for (;;) {
		CHECK(evm_loop_run_once(loop, 20) >= 0);
		a->reported = 0;
		for (int i = 0; i < N; i++) {
			CHECK(x[i].n <= 1);
			CHECK(x[i].n == 0 || x[i].rec.status_unknown);
			a->reported += x[i].n;
		}
		if (a->reported == N || t_now_ms() > dl)
			break;
		if (pidfds)
			continue;
		if (quiet) {
			if (t_now_ms() > quiet)
				break;
			continue;
		}
		bool gone = true;
		for (int i = 0; i < N && gone; i++)
			gone = t_proc_state(pid[i]) == 0;
		if (gone) /* then 200 ms more: ten times the deferred scan's delay */
			quiet = t_now_ms() + 200;
	}
	evm_loop_free(loop);
}

/* a thread that takes SIGCHLD when it is sent to the process */
static void *sigchld_taker(void *arg)
{
	atomic_bool *quit = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	while (!atomic_load(quit))
		usleep(500);
	return NULL;
}

/*
 * Another thread does not block SIGCHLD, so it takes the signals the loop's
 * signalfd waits for. With watching through SIGCHLD (no pidfds), each exit
 * must still be reported (within the deferred scan), one child at a time so
 * that no later signal comes to the rescue.
 */
static void test_sigchld_taken_by_another_thread(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	if (strcmp(mode->nopidfd, "1"))
		T_SKIP("only without pidfds (mode %s has them)", mode->name);
	atomic_bool quit = false;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, sigchld_taker, &quit), 0);
	for (int i = 0; i < 30; i++) {
		struct t_exit x = {0};
		struct evm_proc *p = t_spawn(loop, HARGV("exit", "7"), &x);
		RUN_UNTIL(loop, x.n == 1, 10000);
		assert_int_equal(x.rec.code, 7);
		evm_proc_unref(p);
	}
	atomic_store(&quit, true);
	pthread_join(th, NULL);
}

static void test_sigchld_ignored(void **state)
{
	(void)state;
	struct modearg *a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(a != MAP_FAILED);
	a->m = mode;
	t_forked(sigchld_ignored, a);
	struct modearg r = *a;
	munmap(a, sizeof(*a));
	if (!strcmp(mode->nopidfd, "1")) {
		/*
		 * With SIGCHLD ignored the kernel sends no SIGCHLD at all: a child
		 * watched without a pidfd would never be seen to exit (a wait on it
		 * hung), so none is started, and a warning says why, once.
		 */
		assert_int_equal(r.reported, -1);
		assert_int_equal(r.warnings, 1);
		return;
	}
	assert_int_equal(r.reported, 100);
	assert_int_equal(r.warnings, 0);
}

/* ----------------------------------------- callbacks that drop references */

static int unref_seen;

static void unref_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)data;
	assert_int_equal(e->code, 5);
	evm_proc_unref(p); /* the caller's reference, dropped inside the dispatch */
	unref_seen++;
}

static void unref_sub(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	(void)data;
	if (ev->type != EVM_EV_EXIT)
		return;
	/* still valid for the rest of the iteration */
	assert_int_equal(evm_proc_pid(ev->proc), ev->pid);
	assert_true(evm_proc_exited(ev->proc));
	assert_non_null(evm_proc_exit_record(ev->proc));
	assert_int_equal(evm_proc_exit_record(ev->proc)->code, 5);
	unref_seen++;
}

static void test_unref_during_dispatch(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	unref_seen = 0;
	assert_int_equal(evm_subscribe(loop, EVM_EV_EXIT, unref_sub, NULL, NULL), 0);
	for (int i = 0; i < 20; i++) {
		struct evm_spawn_opts o = {.on_exit = unref_cb};
		t_spawn_opts(loop, HARGV("exit", "5"), &o); /* the ref goes to the callback */
	}
	RUN_UNTIL(loop, unref_seen == 40, 10000);
}

/* ------------------------------------------------------ out of pidfds */

struct warn_rec {
	int n;
	char msg[8][256];
	int err[8];
};

static void on_warning(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct warn_rec *w = data;
	(void)loop;
	if (w->n < 8) {
		snprintf(w->msg[w->n], sizeof(w->msg[0]), "%s", ev->message ? ev->message : "");
		w->err[w->n] = ev->error;
	}
	w->n++;
}

struct nofile_arg {
	const char *mode; /* evm mode name */
	rlim_t soft, hard;
	char out[256]; /* what the rlimit-printing children said */
};

/*
 * 200 sleeping children with RLIMIT_NOFILE at 64: the library raises the
 * soft limit to the hard one if it can, else watches the rest through
 * SIGCHLD; either way a warning says so, and every exit is reported once.
 */
static void nofile(void *arg)
{
	struct nofile_arg *a = arg;
	enum { N = 200 };
	struct rlimit rl = {a->soft, a->hard};
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	set_mode_named(a->mode);
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	struct warn_rec w = {0};
	CHECK(evm_subscribe(loop, EVM_EV_WARNING, on_warning, &w, NULL) == 0);
	static struct slot s[N];
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_proc *p[N];
	for (int i = 0; i < N; i++) {
		struct evm_spawn_opts o = {.argv = argv, .on_exit = slot_cb, .data = &s[i],
					   .pdeath_signal = SIGKILL};
		o.stdio[0].mode = EVM_STDIO_NULL;
		struct evm_spawn_error err = {0};
		o.error = &err;
		int r = evm_spawn(loop, &o, &p[i]);
		if (r < 0)
			fprintf(stderr, "spawn %d: %s stage %s\n", i, strerror(-r),
				evm_spawn_stage_name(err.stage));
		CHECK(r == 0);
		s[i].pid = evm_proc_pid(p[i]);
	}
	CHECK(w.n >= 1);
	if (a->hard > 64) {
		/* the limit was raised; children still get the old soft limit */
		CHECK(strstr(w.msg[0], "raised RLIMIT_NOFILE") != NULL);
		CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == a->hard);
		int pp[2];
		CHECK(pipe2(pp, O_CLOEXEC) == 0);
		for (int keep = 0; keep < 2; keep++) {
			char *av[] = {t_helper, "rlimit", "nofile", NULL};
			struct evm_spawn_opts o = {.argv = av, .pdeath_signal = SIGKILL,
						   .flags = keep ? EVM_SPAWN_KEEP_NOFILE : 0};
			o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, pp[1]};
			struct evm_proc *q;
			CHECK(evm_spawn(loop, &o, &q) == 0);
			CHILD_RUN_UNTIL(loop, evm_proc_exited(q), 10000);
			evm_proc_unref(q);
		}
		close(pp[1]);
		size_t len = 0;
		ssize_t k;
		while ((k = read(pp[0], a->out + len, sizeof(a->out) - 1 - len)) > 0)
			len += (size_t)k;
		a->out[len] = 0;
		close(pp[0]);
	} else {
		bool said = false;
		for (int i = 0; i < w.n && i < 8; i++)
			said |= strstr(w.msg[i], "kept free for the program") != NULL && w.err[i] == -EMFILE;
		CHECK(said);
		/* and the program keeps fds of its own (64 / 16 = 16, minus the signalfd's) */
		int mine[12];
		for (int i = 0; i < 12; i++)
			CHECK((mine[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
		for (int i = 0; i < 12; i++)
			close(mine[i]);
	}
	for (int i = 0; i < N; i++)
		CHECK(evm_proc_signal(p[i], i % 2 ? SIGTERM : SIGKILL) == 0);
	CHILD_RUN_UNTIL(loop, all_reported(s, N) == N, 30000);
	for (int k = 0; k < 3; k++)
		evm_loop_run_once(loop, 30);
	for (int i = 0; i < N; i++) {
		CHECK(s[i].n == 1);
		CHECK(s[i].sig == (i % 2 ? SIGTERM : SIGKILL));
		CHECK(evm_proc_signal(p[i], 0) == -ESRCH);
		evm_proc_unref(p[i]);
	}
	evm_loop_free(loop);
	CHECK(t_count_children() == 0);
}

static void test_nofile_soft_raised(void **state)
{
	(void)state;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max < 1024)
		T_SKIP("RLIMIT_NOFILE hard limit %llu is below 1024", (unsigned long long)rl.rlim_max);
	struct nofile_arg *a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(a != MAP_FAILED);
	char want[256];
	/* by default the soft limit from before the raise; with KEEP_NOFILE ours */
	snprintf(want, sizeof(want), "rlimit nofile 64 %llu\nrlimit nofile %llu %llu\n",
		 (unsigned long long)rl.rlim_max, (unsigned long long)rl.rlim_max,
		 (unsigned long long)rl.rlim_max);
	/* the helper, started before the raise, has 64 itself: the request carries ours */
	static const char *const modes[] = {"direct", "helper"};
	for (int i = 0; i < 2; i++) {
		*a = (struct nofile_arg){modes[i], 64, rl.rlim_max, ""};
		t_forked(nofile, a);
		if (strcmp(a->out, want))
			fail_msg("[%s] got:\n%swant:\n%s", modes[i], a->out, want);
	}
	munmap(a, sizeof(*a));
}

static void test_nofile_hard_exhausted(void **state)
{
	(void)state;
	static const char *const modes[] = {"direct", "helper"};
	for (int i = 0; i < 2; i++) {
		struct nofile_arg a = {modes[i], 64, 64, ""};
		t_forked(nofile, &a);
	}
}

/* ------------------------------------------------------- reaper mode */

struct orphan_rec {
	int n, exits;
	pid_t pids[4096];
	int bad;
};

static void on_orphan(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct orphan_rec *o = data;
	(void)loop;
	if (ev->type == EVM_EV_EXIT) {
		o->exits++;
		return;
	}
	if (ev->type != EVM_EV_ORPHAN)
		return;
	if (!ev->exit || ev->exit->code != 0 || ev->proc || ev->pid != ev->exit->pid)
		o->bad++;
	for (int i = 0; i < o->n && i < 4096; i++)
		if (o->pids[i] == ev->pid)
			o->bad++; /* twice */
	if (o->n < 4096)
		o->pids[o->n] = ev->pid;
	o->n++;
}

static bool sigchld_blocked(void)
{
	sigset_t cur;
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	return sigismember(&cur, SIGCHLD);
}

struct reaper_arg {
	const char *mode;
	int children, orphans_each;
};

/*
 * Not PID 1: a reaper loop makes us a subreaper; children that leave
 * orphans behind, all exiting together, are reported once each (EXIT for
 * ours, ORPHAN for theirs), and nothing is left unreaped.
 */
static void reaper(void *arg)
{
	struct reaper_arg *a = arg;
	int is = -1;
	set_mode_named(a->mode);
	CHECK(!sigchld_blocked());
	struct evm_loop *loop, *second;
	struct evm_loop_opts ro = {.flags = EVM_LOOP_REAPER};
	CHECK(evm_loop_new(&loop, &ro) == 0);
	CHECK(evm_loop_new(&second, &ro) == -EBUSY); /* one reaper per process */
	CHECK(prctl(PR_GET_CHILD_SUBREAPER, &is) == 0 && is == 1);
	CHECK(sigchld_blocked());
	static struct orphan_rec o;
	memset(&o, 0, sizeof(o));
	CHECK(evm_subscribe(loop, EVM_EV_ORPHAN | EVM_EV_EXIT, on_orphan, &o, NULL) == 0);
	char num[16];
	snprintf(num, sizeof(num), "%d", a->orphans_each);
	char *argv[] = {t_helper, "orphans", num, "exit", "0", NULL};
	for (int i = 0; i < a->children; i++) {
		struct evm_spawn_opts so = {.argv = argv, .pdeath_signal = SIGKILL};
		CHECK(evm_spawn(loop, &so, NULL) == 0);
	}
	int want = a->children * a->orphans_each;
	CHILD_RUN_UNTIL(loop, o.n >= want && o.exits >= a->children, 60000);
	for (int k = 0; k < 3; k++)
		evm_loop_run_once(loop, 30);
	if (o.n != want || o.exits != a->children || o.bad)
		fprintf(stderr, "orphans %d (want %d), exits %d (want %d), bad %d\n", o.n, want,
			o.exits, a->children, o.bad);
	CHECK(o.n == want && o.exits == a->children && o.bad == 0);
	CHECK(t_count_children() <= (strcmp(a->mode, "helper") ? 0 : 1));
	evm_loop_free(loop);
	CHECK(t_count_children() == 0);
	CHECK(prctl(PR_GET_CHILD_SUBREAPER, &is) == 0 && is == 0);
	CHECK(!sigchld_blocked());
	/* the reaper slot is free again; NO_SUBREAPER leaves the process alone */
	ro.flags |= EVM_LOOP_NO_SUBREAPER;
	CHECK(evm_loop_new(&loop, &ro) == 0);
	CHECK(prctl(PR_GET_CHILD_SUBREAPER, &is) == 0 && is == 0);
	evm_loop_free(loop);
}

static void test_reaper_subreaper(void **state)
{
	(void)state;
	struct reaper_arg a = {"direct", 3, 5};
	t_forked(reaper, &a);
	a.mode = "helper";
	t_forked(reaper, &a);
	a.mode = "direct+sigchld";
	t_forked(reaper, &a);
}

static void test_reaper_orphan_storm(void **state)
{
	(void)state;
	/* 200 orphans; 2,000 in the scale group (500 under ASan) */
	struct reaper_arg a = {"direct", t_scale() ? (T_SAN ? 10 : 40) : 10, t_scale() ? 50 : 20};
	t_forked(reaper, &a);
	a.mode = "helper";
	t_forked(reaper, &a);
}

/*
 * Reaper mode (a subreaper or not) watches a few children through SIGCHLD
 * alone: no pidfd (no fd) per child, one on demand from evm_proc_pidfd, and exits that
 * coalesced into one SIGCHLD all reported in the iteration that reads it
 * (not SCAN_DELAY later by the deferred scan).
 */
static int fds_now(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	CHECK(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void few_by_sigchld(void *arg)
{
	set_mode_named("direct");
	struct evm_loop *loop;
	struct evm_loop_opts ro = {.flags = *(unsigned *)arg};
	CHECK(evm_loop_new(&loop, &ro) == 0);
	enum { N = 16 };
	static struct slot s[N];
	static char codes[N][12];
	struct evm_proc *first = NULL;
	int pp[2], fds = 0;
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	for (int i = 0; i < N; i++) {
		snprintf(codes[i], sizeof(codes[i]), "%d", 10 + i);
		s[i].want = 10 + i;
		struct evm_spawn_opts o = {.argv = HARGV("cat", "exit", codes[i]), .on_exit = slot_cb,
					   .data = &s[i]};
		o.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, pp[0]};
		struct evm_proc *p;
		CHECK(evm_spawn(loop, &o, &p) == 0);
		s[i].pid = evm_proc_pid(p);
		if (i == 0) {
			first = p;
			fds = fds_now(); /* the loop's own lazily opened fds are there by now */
		} else {
			evm_proc_unref(p);
		}
	}
	CHECK(fds_now() == fds); /* no fd for any of the 15 later children */
	int fd = evm_proc_pidfd(first);
	CHECK(fd >= 0 && evm_proc_pidfd(first) == fd); /* opened once, then the same */
	CHECK(syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0);
	CHECK(fds_now() == fds + 1);
	close(pp[0]);
	close(pp[1]);
	/* all exited (unreaped: WNOWAIT), so their SIGCHLDs have coalesced */
	for (int i = 0; i < N; i++) {
		siginfo_t si;
		CHECK(waitid(P_PID, (id_t)s[i].pid, &si, WEXITED | WNOWAIT) == 0);
	}
	CHECK(evm_loop_run_once(loop, 5000) >= 0);
	if (all_reported(s, N) != N)
		fprintf(stderr, "%d of %d coalesced exits reported in the first iteration\n",
			all_reported(s, N), N);
	CHECK(all_reported(s, N) == N);
	for (int i = 0; i < N; i++)
		CHECK(s[i].n == 1 && s[i].code == s[i].want && s[i].sig == 0);
	CHECK(evm_proc_pidfd(first) == -EBADF);
	evm_proc_unref(first);
	CHECK(fds_now() == fds - 2); /* the pidfd closed with the exit, and the pipe */
	CHECK(t_count_children() == 0);
	evm_loop_free(loop);
}

static void test_reaper_few_children_by_sigchld(void **state)
{
	(void)state;
	unsigned flags = EVM_LOOP_REAPER;
	t_forked(few_by_sigchld, &flags);
	/* a program whose children are all the loop's, not a subreaper */
	flags |= EVM_LOOP_NO_SUBREAPER;
	t_forked(few_by_sigchld, &flags);
}

/*
 * Past the threshold children get pidfds again: a storm of 600 in reaper
 * mode (the first ones watched through SIGCHLD, the rest through pidfds,
 * and through the spawn helper past 512) is reported once each, right.
 */
static void reaper_storm(void *arg)
{
	set_mode_named(arg);
	struct evm_loop *loop;
	struct evm_loop_opts ro = {.flags = EVM_LOOP_REAPER};
	CHECK(evm_loop_new(&loop, &ro) == 0);
	int n = T_SAN ? 300 : 600;
	struct slot *s = calloc((size_t)n, sizeof(*s));
	CHECK(s);
	static char codes[256][12];
	for (int i = 0; i < 256; i++)
		snprintf(codes[i], sizeof(codes[i]), "%d", i);
	int pp[2];
	CHECK(pipe2(pp, O_CLOEXEC) == 0);
	for (int i = 0; i < n; i++) {
		s[i].want = (i * 7) % 256;
		struct evm_spawn_opts o = {.argv = HARGV("cat", "exit", codes[s[i].want]),
					   .on_exit = slot_cb, .data = &s[i]};
		o.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, pp[0]};
		struct evm_proc *p;
		CHECK(evm_spawn(loop, &o, &p) == 0);
		s[i].pid = evm_proc_pid(p);
		evm_proc_unref(p);
	}
	close(pp[0]);
	close(pp[1]);
	CHILD_RUN_UNTIL(loop, all_reported(s, n) == n, 60000 + 30 * n);
	for (int k = 0; k < 3; k++)
		evm_loop_run_once(loop, 30);
	for (int i = 0; i < n; i++) {
		if (s[i].n != 1 || s[i].code != s[i].want || s[i].sig)
			fprintf(stderr, "child %d (pid %d): reported %d times, code %d signal %d, want %d\n",
				i, (int)s[i].pid, s[i].n, s[i].code, s[i].sig, s[i].want);
		CHECK(s[i].n == 1 && s[i].code == s[i].want && s[i].sig == 0);
	}
	CHECK(evm_loop_alive(loop) == 0);
	free(s);
	evm_loop_free(loop);
	CHECK(t_count_children() == 0);
}

static void test_reaper_storm_past_the_threshold(void **state)
{
	(void)state;
	t_forked(reaper_storm, "direct");
	t_forked(reaper_storm, "helper");
}

/* ----------------------------------- a scan's next child, dead helper */

static struct evm_proc *nest_b;
static int nest_n[3];

static void nest_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	int i = (int)(intptr_t)data;
	(void)e;
	nest_n[i]++;
	if (i != 2)
		return;
	/*
	 * While C's exit is being dispatched, B exits. The loop does not run
	 * inside a callback (it would report B under the scan's feet).
	 */
	struct evm_loop *loop = p->loop;
	CHECK(evm_proc_signal(nest_b, SIGKILL) == 0);
	while (t_proc_state(evm_proc_pid(nest_b)) != 'Z')
		usleep(1000);
	CHECK(evm_loop_run_once(loop, 0) == -EDEADLK);
	CHECK(evm_loop_run(loop) == -EDEADLK);
	CHECK(evm_shutdown(loop, 0) == -EDEADLK);
	CHECK(nest_n[1] == 0);
}

/*
 * SIGCHLD mode: a scan of our pidfd-less children dispatches C's exit; its
 * callback kills B, the next child the scan looks at, and cannot run the
 * loop. B is reported once, and the other children stay watched.
 */
static void nested_scan(void *arg)
{
	(void)arg;
	set_mode_named("direct+sigchld");
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_proc *p[3];
	for (int i = 0; i < 3; i++) {
		struct evm_spawn_opts o = {.argv = argv, .on_exit = nest_cb, .data = (void *)(intptr_t)i,
					   .pdeath_signal = SIGKILL};
		CHECK(evm_spawn(loop, &o, &p[i]) == 0);
	}
	nest_b = p[1];
	/* a foreign child's SIGCHLD first (it names a pid we do not know: scan) */
	pid_t foreign = fork();
	CHECK(foreign >= 0);
	if (foreign == 0)
		_exit(0);
	while (t_proc_state(foreign) != 'Z')
		usleep(1000);
	CHECK(evm_proc_signal(p[2], SIGKILL) == 0);
	while (t_proc_state(evm_proc_pid(p[2])) != 'Z')
		usleep(1000);
	CHILD_RUN_UNTIL(loop, nest_n[2] == 1, 10000);
	for (int k = 0; k < 3; k++)
		evm_loop_run_once(loop, 30);
	CHECK(nest_n[1] == 1);
	CHECK(evm_loop_alive(loop) == 1); /* A */
	CHECK(evm_proc_signal(p[0], SIGKILL) == 0);
	CHILD_RUN_UNTIL(loop, nest_n[0] == 1, 10000);
	for (int k = 0; k < 3; k++)
		evm_loop_run_once(loop, 30);
	CHECK(nest_n[0] == 1 && nest_n[1] == 1 && nest_n[2] == 1);
	int st;
	CHECK(waitpid(foreign, &st, WNOHANG) == foreign);
	for (int i = 0; i < 3; i++)
		evm_proc_unref(p[i]);
	evm_loop_free(loop);
}

static void test_callback_kills_the_next_child_of_a_scan(void **state)
{
	(void)state;
	t_forked(nested_scan, NULL);
}

static struct evm_proc *after_b;
static int after_exits;

static void respawn_once(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	struct evm_loop *loop = data;
	(void)e;
	after_exits++;
	if (after_b)
		return;
	char *argv[] = {t_helper, "exit", "9", NULL};
	struct evm_spawn_opts o = {.argv = argv, .on_exit = respawn_once, .data = loop,
				   .pdeath_signal = SIGKILL};
	CHECK(evm_spawn(loop, &o, &after_b) == 0);
	(void)p;
}

static pid_t other_child(pid_t not)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t k = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[k > 0 ? k : 0] = 0;
	for (char *s = strtok(buf, " \n"); s; s = strtok(NULL, " \n"))
		if (atoi(s) != not)
			return atoi(s);
	return -1;
}

/*
 * Helper mode: A's exit and the spawn helper's death are seen in the same
 * iteration, A's first. A's callback spawns: the helper is found dead and
 * replaced. The helper's own event, later in the same batch, must not
 * touch what was freed.
 */
static void dead_helper(void *arg)
{
	(void)arg;
	set_mode_named("helper");
	struct evm_loop *loop;
	CHECK(evm_loop_new(&loop, NULL) == 0);
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts o = {.argv = argv, .on_exit = respawn_once, .data = loop,
				   .pdeath_signal = SIGKILL};
	struct evm_proc *a;
	CHECK(evm_spawn(loop, &o, &a) == 0);
	pid_t helper = other_child(evm_proc_pid(a));
	CHECK(helper > 0);
	CHECK(evm_proc_signal(a, SIGKILL) == 0);
	while (t_proc_state(evm_proc_pid(a)) != 'Z')
		usleep(1000);
	CHECK(kill(helper, SIGKILL) == 0);
	while (t_proc_state(helper) != 'Z' && t_proc_state(helper) != 0)
		usleep(1000);
	CHILD_RUN_UNTIL(loop, after_exits == 2, 10000);
	CHECK(evm_proc_exit_record(after_b)->code == 9);
	evm_proc_unref(after_b);
	evm_proc_unref(a);
	evm_loop_free(loop);
	CHECK(t_count_children() == 0);
}

static void test_helper_dies_during_batch(void **state)
{
	(void)state;
	t_forked(dead_helper, NULL);
}

int main(void)
{
	t_init();
	const struct CMUnitTest per_mode[] = {
		cmocka_unit_test_setup_teardown(test_exit_records, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_rusage_and_times, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_core_dump, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_many_exit_together, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_owned_does_not_steal, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_pidfd_copies_in_a_fork, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_reaped_by_someone_else, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_sigchld_ignored, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_sigchld_taken_by_another_thread, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_unref_during_dispatch, setup, t_teardown),
	};
	const struct CMUnitTest once[] = {
		cmocka_unit_test(test_nofile_soft_raised),
		cmocka_unit_test(test_nofile_hard_exhausted),
		cmocka_unit_test(test_reaper_subreaper),
		cmocka_unit_test(test_reaper_orphan_storm),
		cmocka_unit_test(test_reaper_few_children_by_sigchld),
		cmocka_unit_test(test_reaper_storm_past_the_threshold),
		cmocka_unit_test(test_callback_kills_the_next_child_of_a_scan),
		cmocka_unit_test(test_helper_dies_during_batch),
		cmocka_unit_test(test_storm),
	};
	/* make test-scale (EVMON_TEST_SCALE=1) */
	const struct CMUnitTest scale[] = {
		cmocka_unit_test(test_reaper_orphan_storm),
		cmocka_unit_test(test_storm_helper),
		cmocka_unit_test(test_storm),
	};
	int failed = 0;
	if (t_scale()) {
		alarm(T_ALARM * 10);
		failed = cmocka_run_group_tests_name("reap scale", scale, NULL, NULL);
		alarm(0);
		return failed;
	}
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		mode = &t_modes[i];
		print_message("== mode %s\n", mode->name);
		failed += cmocka_run_group_tests_name("reap per mode", per_mode, NULL, NULL);
	}
	alarm(T_ALARM * 3);
	failed += cmocka_run_group_tests_name("reap", once, NULL, NULL);
	alarm(0);
	return failed;
}
