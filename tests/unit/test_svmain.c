/*
 * test_svmain.c - evm_service_set_main: another process of a service's
 * tree becomes its main process (its pid, its stop, its exit), and a pid
 * outside the tree is refused. Without a cgroup here (the session the
 * service leads); the cgroup case is in tests/integration/test_track.py.
 * The loop is a reaper, so the orphaned new main is reaped here, with its
 * status.
 */
#include "evmtest.h"

#include <sys/prctl.h>
#include <sys/socket.h>

struct rec {
	enum evm_state state;
	bool has_exit;
	pid_t pid;
	int signal;
	char msg[160];
};

static struct rec evs[64];
static size_t nev;

static void on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	if (ev->type != EVM_EV_SERVICE || nev >= 64)
		return;
	struct rec *r = &evs[nev++];
	r->state = ev->state;
	r->has_exit = ev->exit != NULL;
	r->pid = ev->exit ? ev->exit->pid : ev->pid;
	r->signal = ev->exit ? ev->exit->signal : 0;
	snprintf(r->msg, sizeof(r->msg), "%s", ev->message ? ev->message : "");
}

static int setup(void **state)
{
	nev = 0;
	if (t_setup_flags(state, EVM_LOOP_REAPER) < 0)
		return -1;
	return evm_subscribe(T_LOOP(state), EVM_EV_SERVICE, on_event, NULL, NULL) < 0 ? -1 : 0;
}

/*
 * A datagram socket standing for the daemon's notify socket: the test queues
 * a pid (a MAINPID=) before the main process's exit reaches the loop, and
 * only before_exit reads it, as the daemon drains its socket.
 */
static int q[2] = {-1, -1};
static int hook_calls, hook_result;
static pid_t hook_exit_pid;

static void hook(struct evm_service *svc, const struct evm_exit *e, void *data)
{
	assert_ptr_equal(data, &q);
	hook_calls++;
	hook_exit_pid = e->pid;
	/* the process is reaped, its exit not the service's yet */
	assert_int_not_equal(evm_service_state(svc), EVM_STATE_EXITED);
	assert_int_equal(evm_proc_pid(evm_service_proc(svc)), e->pid);
	pid_t pid;
	if (recv(q[0], &pid, sizeof(pid), MSG_DONTWAIT) == (ssize_t)sizeof(pid))
		hook_result = evm_service_set_main(svc, pid);
}

/* how a test's service runs: kill_mode TREE when 0, SIGTERM kills its main unless ignore_term */
struct how {
	bool hook, ignore_term;
	enum evm_kill_mode kill_mode;
	unsigned flags; /* spawn flags */
};

static struct evm_service *service_how(struct evm_loop *loop, pid_t *main, pid_t *child,
				       const struct how *how);

static struct evm_service *service_with(struct evm_loop *loop, pid_t *main, pid_t *child,
					 bool with_hook)
{
	return service_how(loop, main, child, &(struct how){.hook = with_hook});
}

/* a service in its own session whose main process forked a child that ignores SIGTERM */
static struct evm_service *session_svc(struct evm_loop *loop, pid_t *main, pid_t *child)
{
	return service_with(loop, main, child, false);
}

static struct evm_service *service_how(struct evm_loop *loop, pid_t *main, pid_t *child,
				       const struct how *how)
{
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	char *argv[] = {t_helper, "group", "1", "pause", NULL};
	char *ignoring[] = {t_helper, "ignore", "15", "group", "1", "pause", NULL};
	struct evm_service_opts o = {
		.name = "m",
		.spawn = {.argv = how->ignore_term ? ignoring : argv,
			  .flags = how->flags,
			  .stdio = {{0}, {EVM_STDIO_FD, pp[1]}, {0}}},
		.restart = EVM_RESTART_NEVER,
		.set = EVM_SVC_START_MS | EVM_SVC_STOP_TIMEOUT,
		.start_ms = 0,
		.stop_timeout_ms = 100,
		.kill_mode = how->kill_mode ? how->kill_mode : EVM_KILL_TREE,
	};
	if (how->hook) {
		o.before_exit = hook;
		o.before_exit_data = &q;
	}
	struct evm_service *s = NULL;
	assert_int_equal(evm_service_new(loop, &o, &s), 0);
	assert_int_equal(evm_service_start(s), 0);
	close(pp[1]);
	FILE *f = fdopen(pp[0], "r");
	assert_int_equal(fscanf(f, " grandchild %d", child), 1);
	fclose(f);
	struct evm_service_info info;
	evm_service_info(s, &info);
	*main = info.pid;
	assert_int_equal(info.state, EVM_STATE_RUNNING);
	return s;
}

/* Stop s: the stop ends with the exit of pid (it ignores SIGTERM: SIGKILL), its last event */
static void stop_kills(struct evm_loop *loop, struct evm_service *s, pid_t pid)
{
	assert_int_equal(evm_service_stop(s), 0);
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_STOPPED, 5000);
	const struct rec *r = &evs[nev - 1];
	assert_true(r->has_exit);
	assert_int_equal(r->pid, pid);
	assert_int_equal(r->signal, SIGKILL);
}

static void test_set_main_takes_a_process_of_its_session(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t main, child;
	struct evm_service *s = session_svc(loop, &main, &child);
	assert_int_equal(evm_service_set_main(s, main), 0); /* already: nothing changes */
	size_t before = nev;
	assert_int_equal(evm_service_set_main(s, child), 0);
	assert_int_equal(nev, before + 1);
	assert_int_equal(evs[before].state, EVM_STATE_RUNNING);
	assert_int_equal(evs[before].pid, child);
	char want[160];
	snprintf(want, sizeof(want), "main process is now pid %d (was %d)", (int)child, (int)main);
	assert_string_equal(evs[before].msg, want);
	struct evm_service_info info;
	evm_service_info(s, &info);
	assert_int_equal(info.pid, child);

	/* the old main's exit is not the service's */
	assert_int_equal(kill(main, SIGKILL), 0);
	RUN_UNTIL(loop, t_proc_state(main) == 0, 5000);
	assert_int_equal(evm_service_state(s), EVM_STATE_RUNNING);
	assert_int_equal(nev, before + 1);

	/* the stop reaches the new main (SIGTERM ignored: SIGKILL), and its exit ends it */
	stop_kills(loop, s, child);
	RUN_UNTIL(loop, t_proc_state(child) == 0, 5000);
	evm_service_remove(s);
}

/*
 * The old main, alive after handing over and leading the service's session,
 * is still a process the loop tracks: a stop's SIGKILL sweep of the session
 * takes it too (it was skipped as if its pid had been reused), with
 * everything else of the session, though it ignores SIGTERM.
 */
static void test_stop_kills_the_old_main_it_handed_over_from(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t main, child;
	struct evm_service *s = service_how(loop, &main, &child, &(struct how){.ignore_term = true});
	assert_int_equal(evm_service_set_main(s, child), 0);
	/* its parent (the old main) does not reap it: its status is unknown to us */
	assert_int_equal(evm_service_stop(s), 0);
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_STOPPED, 5000);
	assert_int_equal(evs[nev - 1].pid, child);
	RUN_UNTIL(loop, t_proc_state(main) == 0, 5000); /* reaped here: the loop is its parent */
	RUN_UNTIL(loop, t_proc_state(child) == 0, 5000);
	evm_service_remove(s);
}

/* A child of the test's in a session of its own (no service's), killed with the test */
static pid_t foreign_session(void)
{
	pid_t other = fork();
	assert_true(other >= 0);
	if (other == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		setsid();
		for (;;)
			pause();
	}
	WAIT_FOR(getsid(other) == other, 5000);
	return other;
}

static void test_set_main_refuses_what_is_not_its_own(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t main, child;
	struct evm_service *s = session_svc(loop, &main, &child);
	/* a process of another session: ours */
	pid_t other = foreign_session();
	assert_int_equal(evm_service_set_main(s, other), -EPERM);
	assert_int_equal(evm_service_set_main(s, getpid()), -EPERM);
	assert_int_equal(kill(other, SIGKILL), 0);
	assert_int_equal(waitpid(other, NULL, 0), other);
	assert_int_equal(evm_service_set_main(s, other), -ESRCH); /* gone */
	assert_int_equal(evm_service_set_main(s, 0), -EINVAL);
	assert_int_equal(evm_service_set_main(NULL, child), -EINVAL);
	struct evm_service_info info;
	evm_service_info(s, &info);
	assert_int_equal(info.pid, main);

	assert_int_equal(evm_service_stop(s), 0);
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_STOPPED, 5000);
	RUN_UNTIL(loop, t_proc_state(child) == 0, 5000);
	/* not running: nothing to replace */
	assert_int_equal(evm_service_set_main(s, child), -ESRCH);
	evm_service_remove(s);
}

static int hook_setup(void **state)
{
	hook_calls = 0;
	hook_result = 1;
	hook_exit_pid = 0;
	if (setup(state) < 0)
		return -1;
	return socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, q);
}

static int hook_teardown(void **state)
{
	close(q[0]);
	close(q[1]);
	return t_teardown(state);
}

/*
 * The race MAINPID= has with the exit of the process that sent it: the new
 * main's pid is queued before the old main dies, and nothing but
 * before_exit reads it. The service runs on under its new main; without
 * the hook's set_main taking the exit off it, it would be exited.
 */
static void test_before_exit_hands_the_exit_to_a_new_main(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t main, child;
	struct evm_service *s = service_with(loop, &main, &child, true);
	assert_int_equal(send(q[1], &child, sizeof(child), 0), (ssize_t)sizeof(child));
	size_t before = nev;
	assert_int_equal(kill(main, SIGKILL), 0);
	RUN_UNTIL(loop, hook_calls == 1, 5000);
	assert_int_equal(hook_exit_pid, main);
	assert_int_equal(hook_result, 0);
	assert_int_equal(evm_service_state(s), EVM_STATE_RUNNING);
	struct evm_service_info info;
	evm_service_info(s, &info);
	assert_int_equal(info.pid, child);
	assert_int_equal(nev, before + 1); /* "main process is now", no exit */
	assert_false(evs[before].has_exit);
	char want[160];
	snprintf(want, sizeof(want), "main process is now pid %d (was %d, killed by signal %d)",
		 (int)child, (int)main, SIGKILL);
	assert_string_equal(evs[before].msg, want);

	/* the new main's stop and exit are the service's (SIGTERM ignored: SIGKILL) */
	stop_kills(loop, s, child);
	assert_int_equal(hook_calls, 2); /* and the hook heard that one too */
	assert_int_equal(hook_exit_pid, child);
	RUN_UNTIL(loop, t_proc_state(child) == 0, 5000);
	evm_service_remove(s);
}

/* how's service: MAINPID= of its child in before_exit keeps it running under the child */
static void hand_over_at_exit(struct evm_loop *loop, const struct how *how)
{
	pid_t main, child;
	int calls = hook_calls;
	hook_result = 1;
	struct evm_service *s = service_how(loop, &main, &child, how);
	assert_int_equal(send(q[1], &child, sizeof(child), 0), (ssize_t)sizeof(child));
	assert_int_equal(kill(main, SIGKILL), 0);
	RUN_UNTIL(loop, hook_calls == calls + 1, 5000);
	assert_int_equal(hook_result, 0);
	assert_int_equal(evm_service_state(s), EVM_STATE_RUNNING);
	struct evm_service_info info;
	evm_service_info(s, &info);
	assert_int_equal(info.pid, child);
	stop_kills(loop, s, child);
	RUN_UNTIL(loop, t_proc_state(child) == 0, 5000);
	evm_service_remove(s);
}

/*
 * Not kill_mode tree (no session of the service's is kept): in before_exit
 * the main has exited, and the session or process group it led is what the
 * new main must be in (it was refused: nothing left to compare with).
 */
static void test_before_exit_hands_over_without_a_tree(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	/* the library's group: the main leads a process group (SETPGID) */
	hand_over_at_exit(loop, &(struct how){.hook = true, .kill_mode = EVM_KILL_GROUP});
	/* the daemon's kill_mode = group and process: every service leads its own session */
	hand_over_at_exit(loop, &(struct how){.hook = true, .kill_mode = EVM_KILL_GROUP,
					      .flags = EVM_SPAWN_SETSID});
	hand_over_at_exit(loop, &(struct how){.hook = true, .kill_mode = EVM_KILL_PROCESS,
					      .flags = EVM_SPAWN_SETSID});
}

/* nothing queued, or a pid that is not the service's: the exit is the service's as ever */
static void test_before_exit_without_a_new_main(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t main, child;
	struct evm_service *s = service_with(loop, &main, &child, true);
	pid_t self = getpid(); /* never the service's */
	assert_int_equal(send(q[1], &self, sizeof(self), 0), (ssize_t)sizeof(self));
	assert_int_equal(kill(main, SIGKILL), 0);
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_EXITED, 5000);
	assert_int_equal(hook_calls, 1);
	assert_int_equal(hook_result, -EPERM);
	const struct rec *r = &evs[nev - 1];
	assert_true(r->has_exit);
	assert_int_equal(r->pid, main);
	assert_int_equal(r->signal, SIGKILL);
	/* its session's stragglers die with it, as without a hook */
	RUN_UNTIL(loop, t_proc_state(child) == 0, 5000);
	evm_service_remove(s);

	/* an empty queue: the same */
	hook_result = 1;
	s = service_with(loop, &main, &child, true);
	assert_int_equal(kill(main, SIGKILL), 0);
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_EXITED, 5000);
	assert_int_equal(hook_calls, 2);
	assert_int_equal(hook_result, 1); /* set_main never called */
	RUN_UNTIL(loop, t_proc_state(child) == 0, 5000);
	evm_service_remove(s);
}

static char pidfile[64];

static struct evm_service *forking_svc_as(struct evm_loop *loop, char **args,
					  enum evm_kill_mode kill_mode, unsigned flags)
{
	char *argv[8] = {t_helper};
	for (int i = 0; args[i] && i < 6; i++)
		argv[i + 1] = args[i];
	struct evm_service_opts o = {
		.name = "d",
		.spawn = {.argv = argv, .flags = flags},
		.restart = EVM_RESTART_NEVER,
		.set = EVM_SVC_START_MS | EVM_SVC_STOP_TIMEOUT,
		.start_ms = 0,
		.stop_timeout_ms = 2000,
		.kill_mode = kill_mode,
		.pidfile = pidfile,
	};
	struct evm_service *s = NULL;
	assert_int_equal(evm_service_new(loop, &o, &s), 0);
	assert_int_equal(evm_service_start(s), 0);
	return s;
}

static struct evm_service *forking_svc(struct evm_loop *loop, char **args)
{
	return forking_svc_as(loop, args, EVM_KILL_TREE, 0);
}

static const struct rec *find_msg(const char *part)
{
	for (size_t i = 0; i < nev; i++)
		if (strstr(evs[i].msg, part))
			return &evs[i];
	return NULL;
}

/* The pid the pidfile names, which s runs as its main process (RUNNING). */
static pid_t runs_pidfiles_pid(struct evm_service *s)
{
	FILE *f = fopen(pidfile, "r");
	int daemon_pid = 0;
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &daemon_pid), 1);
	fclose(f);
	struct evm_service_info info;
	evm_service_info(s, &info);
	assert_int_equal(info.state, EVM_STATE_RUNNING);
	assert_int_equal(info.pid, daemon_pid);
	return daemon_pid;
}

/* a daemon that forks, its first process exiting 0: the pid it writes is the main one */
static void test_pidfile_names_the_new_main(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	snprintf(pidfile, sizeof(pidfile), "/tmp/evm-svmain-%d.pid", (int)getpid());
	unlink(pidfile);
	char *args[] = {"daemonize", "pidlog", pidfile, "pause", NULL};
	struct evm_service *s = forking_svc(loop, args);
	RUN_UNTIL(loop, find_msg("from pidfile") != NULL, 10000);
	pid_t daemon_pid = runs_pidfiles_pid(s);
	struct evm_service_info info;
	evm_service_info(s, &info);
	assert_true(info.has_exit); /* the first process's */
	assert_int_equal(evm_service_stop(s), 0);
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_STOPPED, 10000);
	const struct rec *r = &evs[nev - 1];
	assert_true(r->has_exit);
	assert_int_equal(r->pid, daemon_pid);
	assert_int_equal(r->signal, SIGTERM);
	unlink(pidfile);
	evm_service_remove(s);
}

/*
 * The same with the session or the group the first process led, whatever
 * the kill_mode: the daemon it forked is in it after its exit. Only TREE
 * was taken: the others checked against the first process, gone by then
 * ("pid N is not the service's: refused"), and did not wait for a pidfile
 * written late.
 */
static void test_pidfile_names_the_new_main_in_every_kill_mode(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	static const struct {
		enum evm_kill_mode mode;
		unsigned flags;
	} runs[] = {{EVM_KILL_GROUP, EVM_SPAWN_SETSID}, {EVM_KILL_PROCESS, EVM_SPAWN_SETSID},
		    {EVM_KILL_GROUP, EVM_SPAWN_SETPGID}, {EVM_KILL_PROCESS, EVM_SPAWN_SETPGID}};
	snprintf(pidfile, sizeof(pidfile), "/tmp/evm-svmain-%d.pid", (int)getpid());
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		unlink(pidfile);
		nev = 0;
		/* written 100 ms after the first process's exit: waited for */
		char *args[] = {"daemonize", "sleep", "100", "pidlog", pidfile, "pause", NULL};
		struct evm_service *s = forking_svc_as(loop, args, runs[i].mode, runs[i].flags);
		RUN_UNTIL(loop, find_msg("from pidfile") != NULL || find_msg("refused") != NULL ||
				    evm_service_state(s) == EVM_STATE_EXITED, 10000);
		pid_t daemon_pid = runs_pidfiles_pid(s);
		assert_int_equal(evm_service_stop(s), 0);
		RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_STOPPED, 10000);
		RUN_UNTIL(loop, t_proc_state(daemon_pid) == 0, 5000);
		evm_service_remove(s);
		RUN_UNTIL(loop, !evm_service_find(loop, "d"), 5000);
	}
	unlink(pidfile);
}

/* a pidfile naming a process that is not the service's: never taken, never signalled */
static void test_pidfile_naming_a_foreign_pid_is_refused(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t other = foreign_session();
	snprintf(pidfile, sizeof(pidfile), "/tmp/evm-svmain-%d.pid", (int)getpid());
	FILE *f = fopen(pidfile, "w");
	assert_non_null(f);
	fprintf(f, "%d\n", (int)other);
	fclose(f);
	char *args[] = {"daemonize", "pause", NULL};
	struct evm_service *s = forking_svc(loop, args);
	/* refused until the wait ends, then the first exit is the service's: its session killed */
	RUN_UNTIL(loop, evm_service_state(s) == EVM_STATE_EXITED, 20000);
	char want[128];
	snprintf(want, sizeof(want), "pidfile %s: pid %d is not the service's: refused", pidfile,
		 (int)other);
	const struct rec *r = find_msg(want);
	assert_non_null(r);
	assert_int_equal(r->state, EVM_STATE_EXITED);
	assert_null(find_msg("main process is now"));
	assert_int_equal(t_proc_state(other) != 0 && t_proc_state(other) != 'Z', 1);
	assert_int_equal(kill(other, SIGKILL), 0);
	assert_int_equal(waitpid(other, NULL, 0), other);
	RUN_UNTIL(loop, t_count_children() == 0, 5000); /* the daemon child, killed and reaped here */
	unlink(pidfile);
	evm_service_remove(s);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_set_main_takes_a_process_of_its_session, setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_set_main_refuses_what_is_not_its_own, setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_stop_kills_the_old_main_it_handed_over_from, setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_before_exit_hands_the_exit_to_a_new_main,
						hook_setup, hook_teardown),
		cmocka_unit_test_setup_teardown(test_before_exit_without_a_new_main, hook_setup,
						hook_teardown),
		cmocka_unit_test_setup_teardown(test_before_exit_hands_over_without_a_tree, hook_setup,
						hook_teardown),
		cmocka_unit_test_setup_teardown(test_pidfile_names_the_new_main, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_pidfile_names_the_new_main_in_every_kill_mode, setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_pidfile_naming_a_foreign_pid_is_refused, setup,
						t_teardown),
	};
	return cmocka_run_group_tests_name("svmain", tests, NULL, NULL);
}
