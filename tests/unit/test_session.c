/*
 * test_session.c - evm_tree_signal: a process tree found in /proc without a
 * cgroup (a session and the descendants of its members, or the caller's
 * descendants), a fork bomb killed to the last process, and what it cannot
 * find (a setsid whose parent was gone); services stopping together share
 * their reads of /proc. The loop is a reaper, so the
 * orphans come to this process and are reaped here.
 */
#include "evmtest.h"

#include <inttypes.h>
#include <sys/prctl.h>

struct tagged {
	int tag, pid;
};

static void report(int fd, char tag)
{
	struct tagged t = {tag, (int)getpid()};
	if (write(fd, &t, sizeof(t)) != (ssize_t)sizeof(t))
		_exit(1);
}

static pid_t child(void)
{
	pid_t p = fork();
	if (p == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	return p;
}

/*
 * Members of the trees below: no parent-death signal, or killing their
 * leader would kill them too (they would be zombies, skipped, by the time
 * evm_tree_signal reached them) and the test could not tell who ended them.
 * If a test fails half-way, isolate.sh's PID namespace ends them.
 */
static pid_t member(void)
{
	return fork();
}

static void hold(void)
{
	for (;;)
		pause();
}

/*
 * A leads a session; B runs in it; C calls setsid under A (found through its
 * parent); E is in it, its parent D gone; F calls setsid, its parent gone.
 */
static pid_t make_tree(int fd)
{
	pid_t a = child();
	assert_true(a >= 0);
	if (a)
		return a;
	setsid();
	if (member() == 0) {
		report(fd, 'B');
		hold();
	}
	if (member() == 0) {
		setsid();
		report(fd, 'C');
		hold();
	}
	if (member() == 0) {
		if (fork() == 0) {
			report(fd, 'E');
			hold();
		}
		_exit(0);
	}
	if (member() == 0) {
		if (fork() == 0) {
			setsid();
			report(fd, 'F');
			hold();
		}
		_exit(0);
	}
	report(fd, 'A');
	hold();
	return 0;
}

static pid_t ppid_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[k > 0 ? k : 0] = 0;
	char *rp = strrchr(buf, ')');
	int ppid = -1;
	if (rp)
		sscanf(rp + 1, " %*c %d", &ppid);
	return ppid;
}

static bool gone(pid_t pid)
{
	return t_proc_state(pid) == 0;
}

static void test_session_and_its_descendants(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t a = make_tree(p[1]);
	close(p[1]);
	pid_t pid['Z'] = {0};
	for (int i = 0; i < 5; i++) {
		struct tagged t;
		assert_int_equal(read(p[0], &t, sizeof(t)), (ssize_t)sizeof(t));
		assert_true(t.tag >= 'A' && t.tag <= 'F');
		pid[t.tag] = t.pid;
	}
	close(p[0]);
	assert_int_equal(pid['A'], a);
	/* F's parent has exited: F is ours now (the loop's subreaper), in a session of its own */
	WAIT_FOR(ppid_of(pid['F']) == getpid(), 10000);
	assert_int_equal(evm_tree_signal(-1, SIGKILL), -EINVAL);
	assert_int_equal(evm_tree_signal(a, NSIG), -EINVAL);
	/* signal 0 reaches, harms none: A, B, C, E (and D if not reaped yet) */
	assert_true(evm_tree_signal(a, 0) >= 4);
	assert_true(evm_tree_signal(a, SIGKILL) >= 4);
	for (int c = 'A'; c <= 'E'; c++)
		if (pid[c])
			RUN_UNTIL(loop, gone(pid[c]), 10000);
	/* what it cannot find: F left the session, and no parent links it to it */
	assert_true(t_proc_state(pid['F']) != 0 && t_proc_state(pid['F']) != 'Z');
	/* our descendants (sid 0): F is one */
	assert_int_equal(evm_tree_signal(0, SIGKILL), 1);
	RUN_UNTIL(loop, gone(pid['F']), 10000);
}

/* processes of session sid now, zombies included */
static int session_size(pid_t sid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d))) {
		char path[300], buf[512];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		int fd = e->d_name[0] >= '1' && e->d_name[0] <= '9' ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		if (fd < 0)
			continue;
		ssize_t k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[k > 0 ? k : 0] = 0;
		char *rp = strrchr(buf, ')');
		int s = -1;
		if (rp && sscanf(rp + 1, " %*c %*d %*d %d", &s) == 1 && s == sid)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

/* A session that forks without end (bounded: 3 x 150 processes); killed to the last. */
static void test_forkbomb(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t a = child();
	assert_true(a >= 0);
	if (a == 0) {
		setsid();
		report(p[1], 'A');
		for (int i = 0; i < 150; i++) {
			if (member() == 0) {
				/* each child forks too, so the kill races two generations */
				if (member() == 0)
					hold();
				if (member() == 0)
					hold();
				hold();
			}
			usleep(1000);
		}
		hold();
	}
	close(p[1]);
	struct tagged t;
	assert_int_equal(read(p[0], &t, sizeof(t)), (ssize_t)sizeof(t));
	close(p[0]);
	WAIT_FOR(session_size(a) > 30, 10000);
	assert_true(evm_tree_signal(a, SIGKILL) > 30);
	/* every member got SIGKILL: none can fork again; the zombies are reaped here */
	RUN_UNTIL(loop, session_size(a) == 0, 10000);
}

static int t_setup_reaper(void **state)
{
	return t_setup_flags(state, EVM_LOOP_REAPER);
}

#define NSVC 12

static void stop_all(struct evm_loop *loop, void *data)
{
	struct evm_service **svc = data;
	for (int i = 0; i < NSVC; i++)
		assert_int_equal(evm_service_stop(svc[i]), 0);
}

/*
 * Services without a cgroup stopped together: their stop signals share one
 * read of /proc, and the SIGKILL sweeps of their sessions (each main's
 * child ignores SIGTERM and outlives it) are made at the end of each
 * iteration, every session in each read, not one read per service (1,000
 * services: 1,000 reads of 1,000 processes, 6 min to shut down).
 */
/* NSVC services, kill_mode TREE without a cgroup: a main and its child each (kid) */
static void start_services(struct evm_loop *loop, struct evm_service **svc, pid_t *main, pid_t *kid)
{
	for (int i = 0; i < NSVC; i++) {
		int pp[2];
		assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
		/* "ready": the main takes SIGTERM again (its child ignores it) */
		char *argv[] = {t_helper, "group", "1", "print", "ready", "pause", NULL};
		char name[16];
		snprintf(name, sizeof(name), "s%d", i);
		struct evm_service_opts o = {
			.name = name,
			.spawn = {.argv = argv, .stdio = {{0}, {EVM_STDIO_FD, pp[1]}, {0}}},
			.restart = EVM_RESTART_NEVER,
			.set = EVM_SVC_START_MS | EVM_SVC_STOP_TIMEOUT,
			.start_ms = 0,
			.stop_timeout_ms = 60000,
			.kill_mode = EVM_KILL_TREE,
		};
		assert_int_equal(evm_service_new(loop, &o, &svc[i]), 0);
		assert_int_equal(evm_service_start(svc[i]), 0);
		close(pp[1]);
		FILE *f = fdopen(pp[0], "r");
		assert_int_equal(fscanf(f, " grandchild %d ready", &kid[i]), 1);
		fclose(f);
		struct evm_service_info info;
		evm_service_info(svc[i], &info);
		main[i] = info.pid;
	}
}

static void test_services_share_reads(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *svc[NSVC];
	pid_t main[NSVC], kid[NSVC];
	start_services(loop, svc, main, kid);
	uint64_t reads = evm__tree_reads(loop);
	/* one dispatch stops them all: SIGTERM and SIGCONT to 12 sessions, one read */
	assert_int_equal(evm_loop_post(loop, stop_all, svc), 0);
	RUN_UNTIL(loop, evm_service_state(svc[NSVC - 1]) != EVM_STATE_RUNNING, 5000);
	assert_int_equal(evm__tree_reads(loop), reads + 1);
	/* the mains die of SIGTERM; each iteration that saw exits sweeps all their sessions at once */
	reads = evm__tree_reads(loop);
	uint64_t iterations = evm_loop_iterations(loop);
	for (int i = 0; i < NSVC; i++)
		RUN_UNTIL(loop, evm_service_state(svc[i]) == EVM_STATE_STOPPED, 10000);
	for (int i = 0; i < NSVC; i++) {
		RUN_UNTIL(loop, gone(kid[i]), 10000);
		assert_int_equal(session_size(main[i]), 0);
		evm_service_remove(svc[i]);
	}
	/* a read finds the survivors, one more meets nobody new */
	uint64_t sweeps = evm__tree_reads(loop) - reads;
	assert_true(sweeps >= 1);
	assert_true(sweeps <= 2 * (evm_loop_iterations(loop) - iterations));
	assert_true(sweeps < 2 * NSVC || evm_loop_iterations(loop) - iterations >= NSVC);
}

#define BYSTANDERS 300

/*
 * A stop's search of the shared read walks the trees it marks, not the
 * whole table: a daemon's shutdown stopping 10,000 services in one dispatch
 * searched all of the read once per service (1.5 s for 10,000 x 10,000
 * entries). Here the stops of 12 services among 300 other processes look at
 * a few entries each (7,200 and more before: two signals a stop).
 */
static void test_a_stop_looks_at_its_trees_only(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t by[BYSTANDERS];
	for (int i = 0; i < BYSTANDERS; i++) {
		by[i] = child();
		assert_true(by[i] >= 0);
		if (by[i] == 0)
			hold();
	}
	struct evm_service *svc[NSVC];
	pid_t main[NSVC], kid[NSVC];
	start_services(loop, svc, main, kid);
	uint64_t reads = evm__tree_reads(loop), visits = evm__tree_visits(loop);
	assert_int_equal(evm_loop_post(loop, stop_all, svc), 0);
	RUN_UNTIL(loop, evm_service_state(svc[NSVC - 1]) != EVM_STATE_RUNNING, 5000);
	assert_int_equal(evm__tree_reads(loop), reads + 1);
	/* each session: its main and kid, and a search of each one's children */
	visits = evm__tree_visits(loop) - visits;
	for (int i = 0; i < BYSTANDERS; i++)
		kill(by[i], SIGKILL);
	for (int i = 0; i < NSVC; i++) {
		RUN_UNTIL(loop, evm_service_state(svc[i]) == EVM_STATE_STOPPED, 10000);
		RUN_UNTIL(loop, gone(kid[i]), 10000);
		evm_service_remove(svc[i]);
	}
	for (int i = 0; i < BYSTANDERS; i++)
		RUN_UNTIL(loop, gone(by[i]), 10000);
	if (visits > 16 * NSVC)
		fail_msg("the stops of %d services looked at %" PRIu64 " entries of a read of "
			 "more than %d processes", NSVC, visits, BYSTANDERS);
}

static void sleepy(struct evm_timer *t, void *data)
{
	(void)t;
	(void)data;
	usleep(100000);
}

/*
 * kill_mode TREE without a cgroup: a stop's SIGKILL went to the main
 * process at once, and its session was swept at the end of the dispatch;
 * by then the child the main had made call setsid was re-parented, nothing
 * linked it to the service, and it ran on. A callback that takes 100 ms in
 * the same dispatch (a timer due with the SIGKILL) made that certain. The
 * main is killed after the sweep now.
 */
static void test_tree_stop_reaches_a_setsid_child(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	char *argv[] = {"/bin/sh", "-c", "trap '' TERM; setsid sh -c 'echo $$; exec sleep 1000' & wait",
			NULL};
	struct evm_service_opts o = {
		.name = "t",
		.spawn = {.argv = argv, .stdio = {{0}, {EVM_STDIO_FD, pp[1]}, {0}}},
		.restart = EVM_RESTART_NEVER,
		.set = EVM_SVC_START_MS | EVM_SVC_STOP_TIMEOUT,
		.start_ms = 0,
		.stop_timeout_ms = 50,
		.kill_mode = EVM_KILL_TREE,
	};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &o, &svc), 0);
	assert_int_equal(evm_service_start(svc), 0);
	close(pp[1]);
	FILE *f = fdopen(pp[0], "r");
	pid_t kid;
	assert_int_equal(fscanf(f, "%d", &kid), 1);
	fclose(f);
	assert_int_equal(evm_service_stop(svc), 0);
	struct evm_timer *t;
	assert_int_equal(evm_timer_add(loop, 50, sleepy, NULL, &t), 0);
	usleep(100000); /* both due: the SIGKILL's timer first */
	RUN_UNTIL(loop, evm_service_state(svc) == EVM_STATE_STOPPED, 5000);
	RUN_UNTIL(loop, gone(kid), 5000);
	evm_service_remove(svc);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_session_and_its_descendants, t_setup_reaper,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_forkbomb, t_setup_reaper, t_teardown),
		cmocka_unit_test_setup_teardown(test_services_share_reads, t_setup_reaper, t_teardown),
		cmocka_unit_test_setup_teardown(test_a_stop_looks_at_its_trees_only, t_setup_reaper,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_tree_stop_reaches_a_setsid_child, t_setup_reaper,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_tree_stop_reaches_a_setsid_child, t_setup,
						t_teardown),
	};
	return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
