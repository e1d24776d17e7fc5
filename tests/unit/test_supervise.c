/*
 * test_supervise.c - the service engine: restart policies, start grace,
 * backoff, stop escalation, process groups, shutdown, and a crash-loop herd.
 *
 * Tests assert on the sequence of EVM_EV_SERVICE events and on the delays the
 * engine scheduled (ev->delay_ms), never on how long something took. Every
 * wait has a deadline; the fixture (evmtest.h) checks that no child and no
 * fd outlive a test.
 */
#include "evmtest.h"

#include <sys/prctl.h>
#include "service.h"

#define MAXEV 4096

struct rec {
	char name[32];
	enum evm_state state, old;
	int code, signal;
	bool has_exit;
	bool removed;
	unsigned restarts;
	uint64_t delay_ms;
	uint64_t runtime_ns; /* of the exit, if any */
	int error;
	pid_t pid;
	char msg[160];
};

static struct rec evs[MAXEV];
static size_t nev;
static unsigned long off_table0; /* evm__sv_off_table when the test began */

static void on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	(void)data;
	if (ev->type != EVM_EV_SERVICE || nev >= MAXEV)
		return;
	struct rec *r = &evs[nev++];
	snprintf(r->name, sizeof(r->name), "%s", ev->name);
	r->state = ev->state;
	r->old = ev->old_state;
	r->has_exit = ev->exit != NULL;
	r->removed = ev->removed;
	r->code = ev->exit ? ev->exit->code : 0;
	r->signal = ev->exit ? ev->exit->signal : 0;
	r->runtime_ns = ev->exit ? ev->exit->runtime_ns : 0;
	r->restarts = ev->restarts;
	r->delay_ms = ev->delay_ms;
	r->error = ev->error;
	r->pid = ev->pid;
	snprintf(r->msg, sizeof(r->msg), "%s", ev->message ? ev->message : "");
}

/* run the loop until svc reaches state (counting matches), or fail after timeout_ms */
static void run_until_state(struct evm_loop *loop, struct evm_service *s, enum evm_state st,
			    int timeout_ms)
{
	uint64_t end = t_now_ms() + T_MS(timeout_ms);
	while (evm_service_state(s) != st) {
		if (t_now_ms() > end)
			fail_msg("timed out waiting for %s to be %s (is %s)", evm_service_name(s),
				 evm_state_name(st), evm_state_name(evm_service_state(s)));
		assert_true(evm_loop_run_once(loop, 50) >= 0);
	}
}

/* the fixture's checks, and that every transition was one its table cell names */
static int teardown(void **state)
{
	unsigned long off = evm__sv_off_table - off_table0;
	int r = t_teardown(state);
	if (off) {
		fprintf(stderr, "teardown: %lu transitions no cell of the state table names\n", off);
		return -1;
	}
	return r;
}

static size_t count_state(const char *name, enum evm_state st)
{
	size_t n = 0;
	for (size_t i = 0; i < nev; i++)
		if (evs[i].state == st && !strcmp(evs[i].name, name))
			n++;
	return n;
}

/* the last event of name entering st; fails the test if there is none */
static const struct rec *last_of(const char *name, enum evm_state st)
{
	for (size_t i = nev; i-- > 0;)
		if (evs[i].state == st && !strcmp(evs[i].name, name))
			return &evs[i];
	fail_msg("no %s event for %s", evm_state_name(st), name);
	return &evs[0];
}

/* the shared fixture, plus a subscriber recording every service event */
static int setup(void **state)
{
	nev = 0;
	off_table0 = evm__sv_off_table;
	if (t_setup(state) < 0)
		return -1;
	return evm_subscribe(T_LOOP(state), EVM_EV_SERVICE, on_event, NULL, NULL) < 0 ? -1 : 0;
}

/* a service running evm-helper with the given behaviour */
static struct evm_service *svc(struct evm_loop *loop, const char *name, enum evm_restart restart,
			       char **args, void (*tweak)(struct evm_service_opts *))
{
	char *argv[16] = {t_helper};
	for (int i = 0; args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	struct evm_service_opts o = {
		.name = name,
		.spawn = {.argv = argv, .pdeath_signal = SIGKILL},
		.restart = restart,
		.set = EVM_SVC_BACKOFF_INITIAL | EVM_SVC_START_MS,
		.backoff_initial_ms = 10,
		.backoff_max_ms = 80,
		.start_ms = 0,
		.start_retries = 3,
	};
	if (tweak)
		tweak(&o);
	struct evm_service *s = NULL;
	assert_int_equal(evm_service_new(loop, &o, &s), 0);
	return s;
}

static bool stopped_by_user(struct evm_service *s)
{
	struct evm_service_info info;
	evm_service_info(s, &info);
	return info.stopped_by_user;
}

static char *EXIT0[] = {"exit", "0", NULL};
static char *EXIT3[] = {"exit", "3", NULL};
static char *KILL9[] = {"kill", "9", NULL};
static char *PAUSE[] = {"pause", NULL};

static void test_never_policy(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_NEVER, EXIT3, NULL);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_EXITED, 5000);
	const struct rec *r = last_of("a", EVM_STATE_EXITED);
	assert_non_null(r);
	assert_true(r->has_exit);
	assert_int_equal(r->code, 3);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 0);
}

static void test_on_failure_success_exits(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, EXIT0, NULL);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_EXITED, 5000);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 0);
	assert_int_equal(last_of("a", EVM_STATE_EXITED)->code, 0);
}

static void retries3(struct evm_service_opts *o)
{
	o->max_retries = 3;
}

static void test_on_failure_restarts_until_max_retries(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, EXIT3, retries3);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_FATAL, 5000);
	/* first run + 3 restarts = 4 runs, the 4th failure is fatal */
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), 4);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 3);
	const struct rec *f = last_of("a", EVM_STATE_FATAL);
	assert_non_null(strstr(f->msg, "4 failures"));
	assert_int_equal(f->restarts, 3);
}

/* max_retries counts failures in a row: a success in between starts the count again */
static void test_max_retries_counts_failures_in_a_row(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char file[] = "/tmp/evmon-test-rowXXXXXX";
	int fd = mkstemp(file);
	assert_true(fd >= 0);
	close(fd);
	/* exits 3, 3, 0, 3, 3, 0, ...: two failures, then a success */
	char script[256];
	snprintf(script, sizeof(script),
		 "n=$(cat %s); n=$((${n:-0} + 1)); echo $n > %s; [ $((n %% 3)) -eq 0 ] && exit 0; exit 3",
		 file, file);
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	struct evm_service_opts o = {
		.name = "row",
		.spawn = {.argv = argv},
		.restart = EVM_RESTART_ALWAYS,
		.set = EVM_SVC_BACKOFF_INITIAL | EVM_SVC_START_MS,
		.backoff_initial_ms = 1,
		.backoff_max_ms = 5,
		.start_ms = 0,
		.max_retries = 2,
	};
	struct evm_service *s = NULL;
	assert_int_equal(evm_service_new(loop, &o, &s), 0);
	evm_service_start(s);
	RUN_UNTIL(loop, count_state("row", EVM_STATE_RUNNING) >= 9 || evm_service_state(s) == EVM_STATE_FATAL,
		  20000);
	assert_int_equal(count_state("row", EVM_STATE_FATAL), 0);
	evm_service_stop(s);
	unlink(file);
}

static void test_on_failure_signal_is_failure(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, KILL9, retries3);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_FATAL, 5000);
	assert_int_equal(last_of("a", EVM_STATE_FATAL)->signal, 9);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 3);
}

static void codes_0_3(struct evm_service_opts *o)
{
	static const int codes[] = {0, 3};
	o->success_codes = codes;
	o->nsuccess_codes = 2;
}

static void test_success_codes(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, EXIT3, codes_0_3);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_EXITED, 5000);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 0);
}

static void test_always_restarts_after_success(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT0, NULL);
	evm_service_start(a);
	RUN_UNTIL(loop, count_state("a", EVM_STATE_RUNNING) >= 5, 10000);
	assert_true(count_state("a", EVM_STATE_BACKOFF) >= 4);
	assert_int_equal(count_state("a", EVM_STATE_FATAL), 0);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
	assert_true(stopped_by_user(a));
}

/* a running process keeps running; its next exit follows the new policy */
static void test_set_policy_in_place(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, NULL);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	pid_t pid = evm_proc_pid(evm_service_proc(a));
	struct evm_service_opts bad = {.restart = 99};
	assert_int_equal(evm_service_set_policy(a, &bad), -EINVAL);
	assert_int_equal(evm_service_set_policy(NULL, &bad), -EINVAL);
	int codes[] = {9};
	struct evm_service_opts o = {.restart = EVM_RESTART_ON_FAILURE, .set = EVM_SVC_START_MS,
				     .success_codes = codes, .nsuccess_codes = 1};
	assert_int_equal(evm_service_set_policy(a, &o), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	assert_int_equal(evm_proc_pid(evm_service_proc(a)), pid);
	assert_int_equal(kill(pid, SIGKILL), 0);
	/* on-failure: a death by signal is a failure, restarted */
	RUN_UNTIL(loop, count_state("a", EVM_STATE_RUNNING) >= 2, 10000);
	o.restart = EVM_RESTART_NEVER;
	assert_int_equal(evm_service_set_policy(a, &o), 0);
	assert_int_equal(evm_service_signal(a, SIGKILL), 0);
	run_until_state(loop, a, EVM_STATE_EXITED, 5000);
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), 2);
}

static void backoff_1h(struct evm_service_opts *o)
{
	o->set |= EVM_SVC_BACKOFF_INITIAL | EVM_SVC_BACKOFF_MAX | EVM_SVC_START_MS;
	o->backoff_initial_ms = o->backoff_max_ms = 3600000;
	o->start_ms = 0; /* as svc()'s: RUNNING at once */
}

/*
 * A restart waiting in BACKOFF after an exit that the new policy would not do
 * is cancelled (EXITED) a loop turn after evm_service_set_policy, never inside
 * it: its caller may be half way through a change of its own (the daemon's
 * reload judged the EXITED event with the unit's old settings).
 */
static void test_set_policy_cancels_a_waiting_restart_a_turn_later(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT0, backoff_1h);
	struct evm_service *b = svc(loop, "b", EVM_RESTART_ALWAYS, EXIT3, backoff_1h);
	evm_service_start(a);
	evm_service_start(b);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	run_until_state(loop, b, EVM_STATE_BACKOFF, 5000);
	/* on-failure: a success is not restarted, a failure still is */
	struct evm_service_opts o = {.restart = EVM_RESTART_ON_FAILURE};
	backoff_1h(&o);
	assert_int_equal(evm_service_set_policy(a, &o), 0);
	assert_int_equal(evm_service_set_policy(b, &o), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_BACKOFF); /* not in the call */
	assert_int_equal(count_state("a", EVM_STATE_EXITED), 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_EXITED);
	const struct rec *r = last_of("a", EVM_STATE_EXITED);
	assert_int_equal(r->old, EVM_STATE_BACKOFF);
	assert_false(r->has_exit); /* no new exit: the last one stays in evm_service_info */
	assert_non_null(strstr(r->msg, "restart cancelled"));
	assert_int_equal(evm_service_state(b), EVM_STATE_BACKOFF);
	o.restart = EVM_RESTART_NEVER;
	assert_int_equal(evm_service_set_policy(b, &o), 0);
	assert_int_equal(evm_service_state(b), EVM_STATE_BACKOFF);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(b), EVM_STATE_EXITED);
	struct evm_service_info info;
	evm_service_info(b, &info);
	assert_true(info.has_exit);
	assert_int_equal(info.last_exit.code, 3);
	/* a start still starts it */
	assert_int_equal(evm_service_start(b), 0);
	run_until_state(loop, b, EVM_STATE_EXITED, 5000);
	assert_int_equal(count_state("b", EVM_STATE_RUNNING), 2);
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), 1);
}

static void backoff_1ms(struct evm_service_opts *o)
{
	o->set |= EVM_SVC_BACKOFF_INITIAL | EVM_SVC_BACKOFF_MAX | EVM_SVC_START_MS;
	o->backoff_initial_ms = 1;
	o->backoff_max_ms = 3600000;
	o->start_ms = 0;
}

/*
 * A lower max_retries than the failures in a row of one waiting in BACKOFF
 * gives up a turn later (FATAL), as its last exit would have under it: it
 * was restarted once more, and only the exit after judged by it.
 */
static void test_set_policy_lower_max_retries_gives_up_a_turn_later(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *b = svc(loop, "b", EVM_RESTART_ALWAYS, EXIT3, backoff_1ms);
	evm_service_start(b);
	RUN_UNTIL(loop, count_state("b", EVM_STATE_BACKOFF) >= 1, 5000);
	struct evm_service_opts o = {.restart = EVM_RESTART_ALWAYS};
	backoff_1h(&o); /* the next backoff: 1 h, so the second waits for us */
	assert_int_equal(evm_service_set_policy(b, &o), 0);
	RUN_UNTIL(loop, count_state("b", EVM_STATE_BACKOFF) >= 2, 5000);
	assert_int_equal(evm_service_state(b), EVM_STATE_BACKOFF);
	/* 2 failures in a row: not past 2 */
	o.max_retries = 2;
	assert_int_equal(evm_service_set_policy(b, &o), 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(b), EVM_STATE_BACKOFF);
	o.max_retries = 1;
	assert_int_equal(evm_service_set_policy(b, &o), 0);
	assert_int_equal(evm_service_state(b), EVM_STATE_BACKOFF); /* not in the call */
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(b), EVM_STATE_FATAL);
	const struct rec *r = last_of("b", EVM_STATE_FATAL);
	assert_int_equal(r->old, EVM_STATE_BACKOFF);
	assert_non_null(strstr(r->msg, "gave up after 2 failures in a row (max_retries is now 1)"));
	assert_int_equal(count_state("b", EVM_STATE_RUNNING), 2);
}

/* the exit is judged by the success codes of the new policy, not those it exited under */
static void test_set_policy_judges_the_exit_by_its_new_codes(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, EXIT3, backoff_1h);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000); /* 3: a failure, restarted */
	int codes[] = {0, 3};
	struct evm_service_opts o = {.restart = EVM_RESTART_ON_FAILURE, .success_codes = codes,
				     .nsuccess_codes = 2};
	backoff_1h(&o);
	assert_int_equal(evm_service_set_policy(a, &o), 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_EXITED);
	/* and the other way: a success under the old codes, a failure under the new ones */
	struct evm_service *b = svc(loop, "b", EVM_RESTART_ALWAYS, EXIT0, backoff_1h);
	evm_service_start(b);
	run_until_state(loop, b, EVM_STATE_BACKOFF, 5000);
	int three[] = {3};
	o.success_codes = three;
	o.nsuccess_codes = 1;
	assert_int_equal(evm_service_set_policy(b, &o), 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(b), EVM_STATE_BACKOFF);
	assert_int_equal(count_state("b", EVM_STATE_EXITED), 0);
	evm_service_stop(b);
}

static int spawns_left;
static int spawns_then_fails(struct evm_service *svc, struct evm_spawn_opts *o, char *msg,
			     size_t len, void *data)
{
	(void)svc;
	(void)o;
	(void)data;
	if (spawns_left-- > 0)
		return 0;
	snprintf(msg, len, "user: unknown user 'x'");
	return -ENOENT;
}

static void spawns_once(struct evm_service_opts *o)
{
	spawns_left = 1;
	o->before_spawn = spawns_then_fails;
}

/*
 * A BACKOFF with no exit behind it keeps its restart: after a failed spawn
 * (a retry of the start, not a restart after an exit: its last exit is an
 * earlier run's), and one resumed from an earlier supervisor (why it waited
 * is not known). And a check a new state came before is dropped: stopped or
 * removed meanwhile.
 */
static void test_set_policy_keeps_other_restarts(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT0, spawns_once);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000); /* its exit 0 */
	/* the failed spawn's backoff: an hour */
	struct evm_service_opts o = {.restart = EVM_RESTART_ALWAYS};
	backoff_1h(&o);
	assert_int_equal(evm_service_set_policy(a, &o), 0);
	RUN_UNTIL(loop, count_state("a", EVM_STATE_BACKOFF) >= 2, 5000);
	assert_int_equal(last_of("a", EVM_STATE_BACKOFF)->error, -ENOENT);
	o.restart = EVM_RESTART_NEVER;
	assert_int_equal(evm_service_set_policy(a, &o), 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_BACKOFF);
	assert_int_equal(count_state("a", EVM_STATE_EXITED), 0);

	/* resumed in BACKOFF, with the exit of the earlier supervisor's last run */
	struct evm_service *r = svc(loop, "r", EVM_RESTART_ALWAYS, EXIT0, backoff_1h);
	struct evm_service_history h = {.has_exit = true, .last_exit = {.pid = 1, .code = 0}};
	assert_int_equal(evm_service_resume_history(r, &h), 0);
	struct evm_service_resume res = {.state = EVM_STATE_BACKOFF, .delay_ms = 3600000};
	assert_int_equal(evm_service_resume(r, &res), 0);
	assert_int_equal(evm_service_state(r), EVM_STATE_BACKOFF);
	assert_int_equal(evm_service_set_policy(r, &o), 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(r), EVM_STATE_BACKOFF);

	/* stopped before the check: stays STOPPED; removed before it: nothing left to check */
	struct evm_service *s = svc(loop, "s", EVM_RESTART_ALWAYS, EXIT0, backoff_1h);
	struct evm_service *x = svc(loop, "x", EVM_RESTART_ALWAYS, EXIT0, backoff_1h);
	evm_service_start(s);
	evm_service_start(x);
	run_until_state(loop, s, EVM_STATE_BACKOFF, 5000);
	run_until_state(loop, x, EVM_STATE_BACKOFF, 5000);
	assert_int_equal(evm_service_set_policy(s, &o), 0);
	assert_int_equal(evm_service_set_policy(x, &o), 0);
	assert_int_equal(evm_service_stop(s), 0);
	evm_service_remove(x);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_true(evm_loop_run_once(loop, 0) >= 0);
	assert_int_equal(evm_service_state(s), EVM_STATE_STOPPED);
	assert_int_equal(count_state("s", EVM_STATE_EXITED), 0);
	assert_int_equal(count_state("x", EVM_STATE_EXITED), 0);
	evm_service_stop(a);
	evm_service_stop(r);
}

/* before_spawn fails the first attempt (with its reason), then lets the next one run */
static int calls;
static int fail_once(struct evm_service *svc, struct evm_spawn_opts *o, char *msg, size_t len,
		     void *data)
{
	(void)svc;
	(void)o;
	assert_ptr_equal(data, &calls);
	if (calls++ == 0) {
		snprintf(msg, len, "user: unknown user 'x'");
		return -ENOENT;
	}
	return 0;
}

static void with_hook(struct evm_service_opts *o)
{
	o->before_spawn = fail_once;
	o->before_spawn_data = &calls;
}

static void test_before_spawn_can_fail_an_attempt(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	calls = 0;
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, with_hook);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	const struct rec *r = last_of("a", EVM_STATE_BACKOFF);
	assert_int_equal(r->error, -ENOENT);
	assert_string_equal(r->msg, "user: unknown user 'x'");
	assert_int_equal(calls, 2);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

static void test_unless_stopped(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_UNLESS_STOPPED, EXIT3, NULL);
	evm_service_start(a);
	RUN_UNTIL(loop, count_state("a", EVM_STATE_BACKOFF) >= 2, 10000);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
	struct evm_service_info info;
	evm_service_info(a, &info);
	assert_true(info.stopped_by_user);
	/* stays down */
	size_t before = count_state("a", EVM_STATE_RUNNING);
	for (int i = 0; i < 5; i++)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), before);
}

static void backoff_opts(struct evm_service_opts *o)
{
	o->backoff_initial_ms = 100;
	o->backoff_max_ms = 800;
	o->set |= EVM_SVC_BACKOFF_INITIAL;
}

static void test_backoff_grows_and_caps(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT3, backoff_opts);
	evm_service_start(a);
	RUN_UNTIL(loop, count_state("a", EVM_STATE_BACKOFF) >= 6, 10000);
	uint64_t want[] = {100, 200, 400, 800, 800, 800};
	size_t k = 0;
	for (size_t i = 0; i < nev && k < 6; i++)
		if (evs[i].state == EVM_STATE_BACKOFF)
			assert_int_equal(evs[i].delay_ms, want[k++]);
	/* restarts count the policy's restarts */
	assert_int_equal(last_of("a", EVM_STATE_BACKOFF)->restarts, 5);
}

/*
 * evm_service_resume: the counters and the backoff step carry on (the next
 * delay doubles from where the earlier supervisor was), BACKOFF starts
 * after the delay given, EXITED and FATAL stay until started; only a
 * STOPPED service resumes.
 */
static void test_resume_carries_counters_and_backoff(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT3, backoff_opts);
	struct evm_service_resume r = {.state = EVM_STATE_BACKOFF, .restarts = 4, .failures = 4,
				       .backoff_step = 2, .delay_ms = 150, .message = "resumed"};
	assert_int_equal(evm_service_resume(a, &(struct evm_service_resume){.state = EVM_STATE_RUNNING}),
			 -EINVAL);
	assert_int_equal(evm_service_resume(a, &r), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_BACKOFF);
	const struct rec *b = last_of("a", EVM_STATE_BACKOFF);
	assert_int_equal(b->old, EVM_STATE_STOPPED);
	assert_int_equal(b->delay_ms, 150);
	assert_int_equal(b->restarts, 4);
	struct evm_service_info info;
	evm_service_info(a, &info);
	assert_in_range(info.next_start_ms, 1, 150);
	assert_int_equal(info.backoff_step, 2);
	assert_int_equal(evm_service_resume(a, &r), -EBUSY);
	/* the start comes after the delay, its exit's backoff is the step after 2: 400 ms */
	RUN_UNTIL(loop, count_state("a", EVM_STATE_BACKOFF) >= 2, 10000);
	b = last_of("a", EVM_STATE_BACKOFF);
	assert_int_equal(b->delay_ms, 400);
	assert_int_equal(b->restarts, 5);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);

	/* FATAL (or EXITED) stays, with its counters, until a start */
	struct evm_service *f = svc(loop, "f", EVM_RESTART_ALWAYS, EXIT3, NULL);
	size_t before = count_state("f", EVM_STATE_STARTING) + count_state("f", EVM_STATE_RUNNING);
	r = (struct evm_service_resume){.state = EVM_STATE_FATAL, .restarts = 7, .start_failures = 3};
	assert_int_equal(evm_service_resume(f, &r), 0);
	assert_int_equal(evm_service_state(f), EVM_STATE_FATAL);
	for (int i = 0; i < 5; i++)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(count_state("f", EVM_STATE_STARTING) + count_state("f", EVM_STATE_RUNNING),
			 before);
	evm_service_info(f, &info);
	assert_int_equal(info.restarts, 7);
	assert_int_equal(info.start_failures, 3);
	assert_int_equal(evm_service_start(f), 0); /* a start asked for counts afresh */
	evm_service_info(f, &info);
	assert_int_equal(info.restarts, 0);
	evm_service_stop(f);
	run_until_state(loop, f, EVM_STATE_STOPPED, 5000);

	/* STOPPED: counters only, no event */
	struct evm_service *c = svc(loop, "c", EVM_RESTART_ALWAYS, EXIT3, NULL);
	size_t n0 = nev;
	assert_int_equal(evm_service_resume(c, &(struct evm_service_resume){.restarts = 2}), 0);
	assert_int_equal(nev, n0);
	evm_service_info(c, &info);
	assert_int_equal(info.restarts, 2);
	assert_int_equal(info.state, EVM_STATE_STOPPED);
	evm_service_remove(a);
	evm_service_remove(f);
	evm_service_remove(c);
}

static void zero_initial(struct evm_service_opts *o)
{
	o->backoff_initial_ms = 0;
	o->backoff_max_ms = 40;
}

static void jitter_opts(struct evm_service_opts *o)
{
	o->backoff_jitter = 50;
	o->start_retries = 100;
}

/* jitter adds 0-50% to each delay of the doubling sequence, and does vary */
static void test_backoff_jitter_stays_in_bounds(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *s = svc(loop, "j", EVM_RESTART_ALWAYS, EXIT3, jitter_opts);
	evm_service_start(s);
	RUN_UNTIL(loop, count_state("j", EVM_STATE_BACKOFF) >= 8, 20000);
	evm_service_stop(s);
	size_t k = 0, varied = 0;
	for (size_t i = 0; i < nev && k < 8; i++) {
		if (evs[i].state != EVM_STATE_BACKOFF)
			continue;
		uint64_t base = k < 3 ? 10u << k : 80; /* 10, 20, 40, then the cap */
		k++;
		assert_in_range(evs[i].delay_ms, base, base + base / 2);
		varied += evs[i].delay_ms != base;
	}
	assert_true(varied > 0);
}

static void test_zero_initial_backoff_still_doubles(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT3, zero_initial);
	evm_service_start(a);
	RUN_UNTIL(loop, count_state("a", EVM_STATE_BACKOFF) >= 5, 10000);
	uint64_t want[] = {0, 10, 20, 40, 40};
	size_t k = 0;
	for (size_t i = 0; i < nev && k < 5; i++)
		if (evs[i].state == EVM_STATE_BACKOFF)
			assert_int_equal(evs[i].delay_ms, want[k++]);
}

/* A service taken over shows its past (last exit, last spawn error, since) until an exit of its own. */
static void test_resume_history(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *f = svc(loop, "f", EVM_RESTART_NEVER, EXIT3, NULL);
	struct evm_service_resume r = {.state = EVM_STATE_FATAL};
	assert_int_equal(evm_service_resume(f, &r), 0);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct evm_service_history h = {
		.has_exit = true,
		.last_exit = {.pid = 4242, .status = 3 << 8, .code = 3, .runtime_ns = 5000000,
			      .end_time = {now.tv_sec - 60, 0}},
		.last_error = {.stage = EVM_STAGE_EXEC, .error = ENOENT},
		.since = {now.tv_sec - 50, 0},
	};
	assert_int_equal(evm_service_resume_history(NULL, &h), -EINVAL);
	struct evm_service_history bad = h;
	bad.since.tv_nsec = 1000000000L;
	assert_int_equal(evm_service_resume_history(f, &bad), -EINVAL);
	assert_int_equal(evm_service_resume_history(f, &h), 0);
	struct evm_service_info info;
	evm_service_info(f, &info);
	assert_true(info.has_exit);
	assert_int_equal(info.last_exit.pid, 4242);
	assert_int_equal(info.last_exit.code, 3);
	assert_int_equal(info.last_error.stage, EVM_STAGE_EXEC);
	assert_int_equal(info.last_error.error, ENOENT);
	assert_int_equal(info.since.tv_sec, now.tv_sec - 50);
	/* a run of its own: its exit replaces what was carried over, and nothing more is taken */
	assert_int_equal(evm_service_start(f), 0);
	run_until_state(loop, f, EVM_STATE_EXITED, 10000);
	evm_service_info(f, &info);
	assert_int_not_equal(info.last_exit.pid, 4242);
	assert_int_equal(evm_service_resume_history(f, &h), -EBUSY);
}

static void no_max_opts(struct evm_service_opts *o)
{
	o->start_ms = 0;
	o->start_retries = 0;
	o->backoff_max_ms = 0;
	o->set |= EVM_SVC_START_MS | EVM_SVC_START_RETRIES | EVM_SVC_BACKOFF_MAX;
}

static void no_stable_opts(struct evm_service_opts *o)
{
	o->start_ms = 0;
	o->start_retries = 0;
	o->backoff_initial_ms = 0;
	o->stable_ms = 0;
	o->set |= EVM_SVC_START_MS | EVM_SVC_START_RETRIES | EVM_SVC_BACKOFF_INITIAL |
		  EVM_SVC_STABLE_MS;
}

/*
 * A crash loop never spins: backoff_max_ms = 0 capped every delay at 0, and
 * stable_ms = 0 made every run stable, so with backoff_initial_ms = 0 a
 * process that fails at once was restarted at once, 1,000+ times a second.
 * Now a restart in a row waits at least 10 ms, and only a run up 10 ms or
 * more is stable (the runs' lengths are the kernel's: checked per exit).
 */
static void test_crash_loop_never_spins(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT3, no_max_opts);
	struct evm_service *b = svc(loop, "b", EVM_RESTART_ALWAYS, EXIT3, no_stable_opts);
	evm_service_start(a);
	evm_service_start(b);
	RUN_UNTIL(loop, count_state("a", EVM_STATE_BACKOFF) >= 6 &&
			count_state("b", EVM_STATE_BACKOFF) >= 6, 20000);
	evm_service_stop(a);
	evm_service_stop(b);
	size_t ka = 0, kb = 0;
	uint64_t run = 0;
	for (size_t i = 0; i < nev; i++) {
		if (evs[i].has_exit)
			run = evs[i].runtime_ns;
		if (evs[i].state != EVM_STATE_BACKOFF)
			continue;
		if (!strcmp(evs[i].name, "a")) /* the first restart may be at once: 100 capped at 0 */
			assert_int_equal(evs[i].delay_ms, ka++ ? 10 : 0);
		else if (run < 10 * 1000000ull && kb++) /* a run too short to be stable: in a row */
			assert_true(evs[i].delay_ms >= 10);
	}
	assert_true(ka >= 6);
}

static void stable_opts(struct evm_service_opts *o)
{
	o->backoff_initial_ms = 20;
	o->backoff_max_ms = 1000;
	o->stable_ms = 150;
	o->set |= EVM_SVC_STABLE_MS;
}

static char *SLEEP200_EXIT3[] = {"sleep", "200", "exit", "3", NULL};

static void test_backoff_resets_after_stable_run(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	/* runs 200 ms (> stable 150 ms) each time: every restart waits the initial delay */
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, SLEEP200_EXIT3, stable_opts);
	evm_service_start(a);
	RUN_UNTIL(loop, count_state("a", EVM_STATE_BACKOFF) >= 3, 10000);
	for (size_t i = 0; i < nev; i++)
		if (evs[i].state == EVM_STATE_BACKOFF)
			assert_int_equal(evs[i].delay_ms, 20);
}

static void grace_opts(struct evm_service_opts *o)
{
	o->start_ms = 300;
	o->start_retries = 2;
}

/*
 * A process that exits at once must always fail its start, however slow the
 * machine: a start period of 300 ms was shorter than an exit under ASan at
 * load 60. Nothing waits the period out here, so it can be long.
 */
static void long_grace_opts(struct evm_service_opts *o)
{
	o->start_ms = 30000;
	o->start_retries = 2;
}

static void test_start_retries_to_fatal(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT0, long_grace_opts);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_FATAL, 5000);
	/* 1 start + 2 retries, all died during the start period: never RUNNING */
	assert_int_equal(count_state("a", EVM_STATE_STARTING), 3);
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), 0);
	assert_non_null(strstr(last_of("a", EVM_STATE_FATAL)->msg, "3 failed starts"));
	/* an explicit start gives it a new chance */
	size_t before = count_state("a", EVM_STATE_STARTING);
	evm_service_start(a);
	assert_int_equal(count_state("a", EVM_STATE_STARTING), before + 1);
	run_until_state(loop, a, EVM_STATE_FATAL, 5000);
}

static void test_start_grace_reaches_running(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, grace_opts);
	evm_service_start(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
	const struct rec *r = last_of("a", EVM_STATE_STOPPED);
	assert_int_equal(r->signal, SIGTERM);
}

static int grace_ready_fd = -1;

static void short_grace_opts(struct evm_service_opts *o)
{
	o->start_ms = 100;
	o->start_retries = 2;
}

/*
 * A loop late past the start period (here: not run at all) sees the exit and
 * the period's timer in one turn: a process up that long ran, its exit a
 * failure of a run (failures), not a failed start (start_failures), whichever
 * the loop looks at first.
 */
static void test_exit_seen_after_the_start_period_is_a_run(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char *args[] = {"sleep", "200", "exit", "3", NULL};
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, args, short_grace_opts);
	evm_service_start(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING);
	a->start_failures = 1; /* as if a start had failed before: a run ends the row */
	usleep(T_MS(600) * 1000); /* the loop stalls: it exits (200 ms) after its start period (100) */
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	struct evm_service_info info;
	evm_service_info(a, &info);
	assert_int_equal(info.start_failures, 0);
	assert_int_equal(info.failures, 1);
	assert_int_equal(info.last_exit.code, 3);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

static void failing_grace_opts(struct evm_service_opts *o)
{
	o->start_ms = 100;
	o->start_retries = 3;
	o->stop_timeout_ms = 300; /* it ignores SIGTERM: killed at 300 ms, past start_ms */
	o->spawn.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, grace_ready_fd};
}

/*
 * Stopped for a failure while STARTING (evm_service_fail), its exit a failed
 * start however long the stop took: past start_ms is no run then.
 */
static void test_failed_while_starting_is_a_failed_start_however_long(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	grace_ready_fd = pp[1];
	char *args[] = {"ignore", "15", "print", "ready", "pause", NULL};
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, args, failing_grace_opts);
	evm_service_start(a);
	close(pp[1]);
	char buf[7];
	assert_int_equal(t_read_all(pp[0], buf, sizeof(buf), 10000), 6); /* it ignores SIGTERM now */
	close(pp[0]);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING); /* 100 ms: the loop has not run */
	assert_int_equal(evm_service_fail(a, "test"), 0);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	struct evm_service_info info;
	evm_service_info(a, &info);
	assert_int_equal(info.last_exit.signal, SIGKILL);
	assert_true(info.last_exit.runtime_ns >= 100000000ull);
	assert_int_equal(info.start_failures, 1);
	assert_int_equal(info.failures, 1); /* a failed start is one too */
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

/*
 * evm_service_start_pending: STOPPING with a start to follow (a restart, a
 * start asked during the stop), what the daemon's record must say; a stop
 * asked after takes it back.
 */
static void test_start_pending(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_NEVER, PAUSE, NULL);
	assert_false(evm_service_start_pending(NULL));
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	assert_false(evm_service_start_pending(a));
	assert_int_equal(evm_service_stop(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_STOPPING);
	assert_false(evm_service_start_pending(a));
	assert_int_equal(evm_service_start(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_STOPPING);
	assert_true(evm_service_start_pending(a));
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	assert_false(evm_service_start_pending(a));
	assert_int_equal(evm_service_restart(a), 0);
	assert_true(evm_service_start_pending(a));
	assert_int_equal(evm_service_stop(a), 0);
	assert_false(evm_service_start_pending(a));
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

static void declared(struct evm_service_opts *o)
{
	o->ready = EVM_READY_DECLARED;
}

/* ready = declared: STARTING however long it runs, RUNNING on its word */
static void test_declared_ready_waits_for_its_word(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, declared);
	assert_int_equal(evm_service_ready(a), -ESRCH); /* no process yet */
	evm_service_start(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING);
	/* start_ms is 0: a ready = started service would be RUNNING by now */
	for (int i = 0; i < 5; i++)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING);
	assert_int_equal(evm_service_extend_timeout(a, 1000), -ESRCH); /* no ready_timeout */
	assert_int_equal(evm_service_ready(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	assert_int_equal(evm_service_ready(a), 0); /* again: nothing happens */
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), 1);
	struct evm_service_info info;
	evm_service_info(a, &info);
	assert_int_equal(info.ready, EVM_READY_DECLARED);
	evm_service_stop(a);
	assert_int_equal(evm_service_ready(a), -ESRCH);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

static void exits_unready(struct evm_service_opts *o)
{
	declared(o);
	o->set |= EVM_SVC_START_RETRIES;
	o->start_retries = 1;
}

/* an exit before the word is a failed start, whatever the code */
static void test_exit_before_ready_is_a_failed_start(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, EXIT3, exits_unready);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_FATAL, 5000);
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), 0);
	assert_non_null(strstr(last_of("a", EVM_STATE_BACKOFF)->msg, "exited before it was ready"));
}

static void ready_timeout(struct evm_service_opts *o)
{
	exits_unready(o);
	o->ready_timeout_ms = 50;
	o->stop_timeout_ms = 5000;
}

/* not ready in time: stopped (stop_signal), a failed start, retried, then FATAL */
static void test_ready_timeout_fails_the_start(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, ready_timeout);
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_FATAL, 10000);
	assert_int_equal(count_state("a", EVM_STATE_STARTING), 2); /* start_retries = 1 */
	assert_int_equal(count_state("a", EVM_STATE_RUNNING), 0);
	const struct rec *b = last_of("a", EVM_STATE_BACKOFF);
	assert_int_equal(b->signal, SIGTERM);
	assert_non_null(strstr(b->msg, "not ready within ready_timeout (50 ms)"));
	assert_non_null(strstr(last_of("a", EVM_STATE_FATAL)->msg, "not ready within"));
}

/* more time asked for (EXTEND_TIMEOUT_USEC): the ready timeout moves */
static void test_extend_timeout_moves_the_ready_deadline(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, ready_timeout);
	evm_service_start(a);
	assert_int_equal(evm_service_extend_timeout(a, 600000), 0);
	/* four times the 50 ms it had: a deadline left where it was would have fired */
	uint64_t end = t_now_ms() + 200;
	while (t_now_ms() < end)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 0);
	assert_int_equal(evm_service_extend_timeout(a, 10), 0); /* never shortens */
	assert_int_equal(evm_service_ready(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	assert_int_equal(evm_service_extend_timeout(a, 10), -ESRCH);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

static void watchdog(struct evm_service_opts *o)
{
	o->watchdog_ms = 300;
	o->stop_signal = SIGKILL;
}

/* alive within watchdog_ms keeps it RUNNING; silence is a failure the policy restarts */
static void test_watchdog_miss_restarts(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, PAUSE, watchdog);
	evm_service_start(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	/* signs of life every loop turn for three periods: no restart */
	uint64_t end = t_now_ms() + 900;
	while (t_now_ms() < end) {
		assert_int_equal(evm_service_watchdog(a), 0);
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	}
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 0);
	/* silence */
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	const struct rec *b = last_of("a", EVM_STATE_BACKOFF);
	assert_int_equal(b->signal, SIGKILL);
	assert_non_null(strstr(b->msg, "watchdog: no sign of life for 300 ms"));
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000); /* restarted by the policy */
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

static void no_watchdog(struct evm_service_opts *o)
{
	o->stop_signal = SIGKILL;
	o->set |= EVM_SVC_START_RETRIES;
	o->start_retries = 0;
}

/* WATCHDOG=trigger: stopped at once, without watchdog_ms; a failure (a failed start if STARTING) */
static void test_watchdog_trigger_fails_at_once(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, PAUSE, no_watchdog);
	assert_int_equal(evm_service_watchdog_trigger(a), -ESRCH); /* no process */
	evm_service_start(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	assert_int_equal(evm_service_watchdog_trigger(a), 0);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	const struct rec *b = last_of("a", EVM_STATE_BACKOFF);
	assert_int_equal(b->signal, SIGKILL);
	assert_non_null(strstr(b->msg, "watchdog: the service said it failed"));
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000); /* restarted by the policy */
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);

	/* while STARTING: a failed start, retried by start_retries */
	struct evm_service *b2 = svc(loop, "b", EVM_RESTART_ON_FAILURE, PAUSE, declared);
	evm_service_start(b2);
	assert_int_equal(evm_service_state(b2), EVM_STATE_STARTING);
	assert_int_equal(evm_service_watchdog_trigger(b2), 0);
	assert_int_equal(evm_service_ready(b2), 0); /* too late: it is being stopped */
	run_until_state(loop, b2, EVM_STATE_BACKOFF, 5000);
	assert_int_equal(count_state("b", EVM_STATE_RUNNING), 0);
	assert_non_null(strstr(last_of("b", EVM_STATE_BACKOFF)->msg, "the service said it failed"));
	evm_service_stop(b2);
	run_until_state(loop, b2, EVM_STATE_STOPPED, 5000);

	/* evm_service_fail: the same, with the caller's reason in its events */
	evm_service_start(a);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	size_t n = count_state("a", EVM_STATE_BACKOFF);
	assert_int_equal(evm_service_fail(a, "unhealthy (health_action = restart)"), 0);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), n + 1);
	assert_string_equal(last_of("a", EVM_STATE_BACKOFF)->msg, "unhealthy (health_action = restart)");
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

/* WATCHDOG_USEC=: a period for this run, from now, without watchdog_ms; the next run has none */
static void test_set_watchdog_for_the_run(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, PAUSE, no_watchdog);
	evm_service_start(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	assert_int_equal(evm_service_set_watchdog(a, 100), 0);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	assert_non_null(strstr(last_of("a", EVM_STATE_BACKOFF)->msg, "no sign of life for 100 ms"));
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	/* the new run is back to watchdog_ms (none): a period set and then turned off */
	assert_int_equal(evm_service_set_watchdog(a, 100), 0);
	assert_int_equal(evm_service_set_watchdog(a, 0), 0);
	uint64_t end = t_now_ms() + 400;
	while (t_now_ms() < end)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 1);
	evm_service_stop(a);
	assert_int_equal(evm_service_set_watchdog(a, 100), -ESRCH); /* stopping */
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

/*
 * A reload (systemd's notify-reload): its signal, RELOADING until the
 * service's own RELOADING then READY (a READY before it is an earlier one's);
 * the process stays the same throughout.
 */
static void test_reload_waits_for_reloading_then_ready(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, PAUSE, no_watchdog);
	/* SIGWINCH: ignored by default, so it cannot kill the process before it runs */
	assert_int_equal(evm_service_reload(a, SIGWINCH, 0), -ESRCH); /* no process */
	evm_service_start(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	pid_t pid = evm_proc_pid(evm_service_proc(a));
	assert_int_equal(evm_service_reload(a, SIGWINCH, 600000), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RELOADING);
	assert_non_null(strstr(last_of("a", EVM_STATE_RELOADING)->msg, "reload asked (signal 28)"));
	assert_int_equal(evm_service_reload(a, SIGWINCH, 600000), -EBUSY);
	assert_int_equal(evm_service_ready(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RELOADING); /* not after its RELOADING */
	assert_int_equal(evm_service_reloading(a, 0), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RELOADING);
	uint64_t left;
	/* the deadline a supervisor hands over (a re-exec): the asked reload's 600 s */
	assert_int_equal(evm_service_deadline(a, &left), EVM_DEADLINE_READY);
	assert_true(left > 590000 && left <= 600000);
	assert_int_equal(evm_service_ready(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	const struct rec *r = last_of("a", EVM_STATE_RUNNING);
	assert_int_equal(r->old, EVM_STATE_RELOADING);
	assert_int_equal(r->error, 0);
	assert_string_equal(r->msg, "reloaded");
	/* the same process runs */
	assert_int_equal(evm_proc_pid(evm_service_proc(a)), pid);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 0);

	/* the service's own RELOADING, no READY within its timeout: running again, failed */
	assert_int_equal(evm_service_reloading(a, 50), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RELOADING);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	r = last_of("a", EVM_STATE_RUNNING);
	assert_int_equal(r->error, -ETIMEDOUT);
	assert_non_null(strstr(r->msg, "reload not done in"));
	assert_int_equal(evm_proc_pid(evm_service_proc(a)), pid);

	/* EXTEND_TIMEOUT_USEC moves the reload's deadline */
	assert_int_equal(evm_service_reloading(a, 50), 0);
	assert_int_equal(evm_service_extend_timeout(a, 600000), 0);
	uint64_t end = t_now_ms() + 200;
	while (t_now_ms() < end)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RELOADING);
	assert_int_equal(evm_service_deadline(a, &left), EVM_DEADLINE_READY); /* as extended */
	assert_true(left > 590000 && left <= 600000);

	/* an exit while reloading is a running service's exit: the policy restarts it */
	assert_int_equal(evm_service_signal(a, SIGKILL), 0);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	assert_int_equal(last_of("a", EVM_STATE_BACKOFF)->old, EVM_STATE_RELOADING);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

/* the watchdog still applies while reloading (systemd): a miss is a failure */
static void test_watchdog_applies_while_reloading(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ON_FAILURE, PAUSE, watchdog);
	evm_service_start(a);
	assert_int_equal(evm_service_reloading(a, 600000), 0);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	const struct rec *b = last_of("a", EVM_STATE_BACKOFF);
	assert_int_equal(b->old, EVM_STATE_RELOADING);
	assert_non_null(strstr(b->msg, "watchdog: no sign of life for 300 ms"));
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
}

static void test_missing_binary_goes_fatal_with_error(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char *argv[] = {"/nonexistent/evmon-test-binary", NULL};
	struct evm_service_opts o = {.name = "m",
				     .spawn = {.argv = argv},
				     .set = EVM_SVC_BACKOFF_INITIAL,
				     .backoff_initial_ms = 1,
				     .start_retries = 2};
	struct evm_service *m;
	assert_int_equal(evm_service_new(loop, &o, &m), 0);
	assert_int_equal(evm_service_start(m), 0);
	run_until_state(loop, m, EVM_STATE_FATAL, 5000);
	const struct rec *b = last_of("m", EVM_STATE_BACKOFF);
	assert_non_null(b);
	assert_int_equal(b->error, -ENOENT);
	assert_non_null(strstr(b->msg, "exec /nonexistent/evmon-test-binary: No such file or directory"));
	struct evm_service_info info;
	evm_service_info(m, &info);
	assert_int_equal(info.last_error.stage, EVM_STAGE_EXEC);
	assert_int_equal(info.last_error.error, ENOENT);
}


static void fast_stop(struct evm_service_opts *o)
{
	o->stop_timeout_ms = 200;
}

/* What a subscriber of EVM_EV_SPAWN does to the service whose process it sees. */
struct on_spawn {
	const char *action; /* "stop", "restart", "remove" */
	unsigned spawns;
	pid_t first;
	char name[32];
	enum evm_state state_then;
	pid_t pid_then;
	int r;
};

static void spawn_action(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct on_spawn *a = data;
	if (a->spawns++)
		return;
	struct evm_service *s = evm_service_find(loop, "sp");
	struct evm_service_info info;
	evm_service_info(s, &info);
	a->first = ev->pid;
	snprintf(a->name, sizeof(a->name), "%s", ev->name ? ev->name : "(null)");
	a->state_then = info.state;
	a->pid_then = info.pid;
	if (!strcmp(a->action, "stop"))
		a->r = evm_service_stop(s);
	else if (!strcmp(a->action, "restart"))
		a->r = evm_service_restart(s);
	else
		evm_service_remove(s);
}

static void start_ms_50(struct evm_service_opts *o)
{
	o->start_ms = 50;
}

/*
 * A subscriber of EVM_EV_SPAWN sees the service in its new state with the
 * process its own, and may stop, restart or remove it there. The event came
 * before the service had its process: a remove freed it under its start
 * timer (use after free), a restart spawned a second process (one left
 * unowned), a stop was lost (it ran on).
 */
static void test_a_spawn_subscriber_may_stop_restart_or_remove_the_service(void **state)
{
	static const char *actions[] = {"stop", "restart", "remove"};
	struct evm_loop *loop = T_LOOP(state);
	for (size_t i = 0; i < 3; i++) {
		struct on_spawn a = {.action = actions[i]};
		struct evm_sub *sub;
		assert_int_equal(evm_subscribe(loop, EVM_EV_SPAWN, spawn_action, &a, &sub), 0);
		struct evm_service *s = svc(loop, "sp", EVM_RESTART_NEVER, PAUSE, start_ms_50);
		assert_int_equal(evm_service_start(s), 0);
		assert_int_equal(a.spawns, 1);
		assert_string_equal(a.name, "sp");
		assert_int_equal(a.state_then, EVM_STATE_STARTING);
		assert_int_equal(a.pid_then, a.first);
		assert_int_equal(a.r, 0);
		if (i == 2) {
			uint64_t end = t_now_ms() + T_MS(5000);
			while (evm_service_find(loop, "sp")) {
				assert_true(t_now_ms() < end);
				assert_true(evm_loop_run_once(loop, 50) >= 0);
			}
		} else {
			run_until_state(loop, s, i == 0 ? EVM_STATE_STOPPED : EVM_STATE_RUNNING, 5000);
		}
		/* the first process is gone, and only a restart's own is left */
		uint64_t end = t_now_ms() + T_MS(5000);
		while (kill(a.first, 0) == 0 || evm_loop_alive(loop) != (i == 1)) {
			assert_true(t_now_ms() < end);
			assert_true(evm_loop_run_once(loop, 50) >= 0);
		}
		if (i == 0)
			assert_true(stopped_by_user(s));
		if (i == 1)
			assert_int_equal(a.spawns, 2);
		evm_unsubscribe(sub);
		if (i < 2)
			evm_service_remove(s);
		while (evm_service_find(loop, "sp") || evm_loop_alive(loop)) {
			assert_true(t_now_ms() < end);
			assert_true(evm_loop_run_once(loop, 50) >= 0);
		}
	}
}

static void test_stop_escalates_to_sigkill(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe(pp), 0);
	char *argv[] = {t_helper, "ignore", "15", "print", "ready", "pause", NULL};
	struct evm_service_opts o = {.name = "a",
				     .spawn = {.argv = argv, .stdio = {{0}, {EVM_STDIO_FD, pp[1]}, {0}}},
				     .set = EVM_SVC_START_MS};
	fast_stop(&o);
	struct evm_service *a;
	assert_int_equal(evm_service_new(loop, &o, &a), 0);
	evm_service_start(a);
	close(pp[1]);
	char buf[6] = {0};
	assert_int_equal(read(pp[0], buf, 6), 6); /* it ignores SIGTERM now */
	close(pp[0]);
	evm_service_stop(a);
	assert_int_equal(evm_service_state(a), EVM_STATE_STOPPING);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
	assert_int_equal(last_of("a", EVM_STATE_STOPPED)->signal, SIGKILL);
	assert_int_equal(count_state("a", EVM_STATE_BACKOFF), 0);
}

/* a child of ours, not the loop's: it writes 'T' to fd at each SIGTERM, and waits */
static int term_fd = -1;
static void on_term(int sig)
{
	(void)sig;
	ssize_t w = write(term_fd, "T", 1);
	(void)w;
}

static pid_t counting_child(int fd)
{
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old); /* no signal before the handler is in */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		term_fd = fd;
		signal(SIGTERM, on_term);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (;;)
			pause();
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

/*
 * EVM_ADOPT_STOPPING: a process another supervisor was stopping is taken in
 * STOPPING without a second stop signal (to many a second SIGTERM is "quit
 * now"), then SIGKILLed at stop_timeout_ms; it stays stopped, unless a
 * restart is asked for, which starts it after the exit.
 */
static void test_adopt_a_process_being_stopped(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	for (int restart = 0; restart < 2; restart++) {
		int pp[2];
		assert_int_equal(pipe2(pp, O_CLOEXEC | O_NONBLOCK), 0);
		const char *name = restart ? "r" : "s";
		struct evm_service *s = svc(loop, name, EVM_RESTART_ALWAYS, PAUSE, fast_stop);
		pid_t pid = counting_child(pp[1]);
		struct evm_adopt_opts o = {.pid = pid, .flags = EVM_ADOPT_STOPPING};
		struct evm_proc *p;
		assert_int_equal(evm_proc_adopt(loop, &o, &p), -EINVAL); /* a service's flag */
		assert_int_equal(evm_service_adopt(s, &o), 0);
		assert_int_equal(evm_service_state(s), EVM_STATE_STOPPING);
		const struct rec *r = last_of(name, EVM_STATE_STOPPING);
		char msg[64];
		snprintf(msg, sizeof(msg), "adopted pid %d, being stopped", (int)pid);
		assert_string_equal(r->msg, msg);
		assert_int_equal(r->old, EVM_STATE_STOPPED);
		if (restart)
			assert_int_equal(evm_service_restart(s), 0);
		/* with a restart, STOPPED only for an iteration: its event tells */
		run_until_state(loop, s, restart ? EVM_STATE_RUNNING : EVM_STATE_STOPPED, 5000);
		assert_int_equal(last_of(name, EVM_STATE_STOPPED)->signal, SIGKILL);
		char c;
		assert_int_equal(read(pp[0], &c, 1), -1); /* no SIGTERM reached it */
		assert_int_equal(errno, EAGAIN);
		if (restart) {
			assert_int_not_equal(evm_proc_pid(evm_service_proc(s)), pid);
		} else {
			assert_true(stopped_by_user(s));
			for (int i = 0; i < 5; i++)
				evm_loop_run_once(loop, 20);
			assert_int_equal(evm_service_state(s), EVM_STATE_STOPPED);
		}
		close(pp[0]);
		close(pp[1]);
	}
}

/* a child of ours outside the loop, paused until killed (or until we die) */
static pid_t paused_child(void)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

static void declared_slow(struct evm_service_opts *o)
{
	exits_unready(o);
	o->ready_timeout_ms = 150;
}

static void graced(struct evm_service_opts *o)
{
	o->start_ms = 150;
}

/*
 * EVM_ADOPT_STARTING: a process that was not ready yet is taken in STARTING
 * and its readiness awaited, the time left counted from its start: declared
 * ready, or not in time (a failed start); with start_ms, ready once that is
 * up, at once when it is up already.
 */
static void test_adopt_a_process_not_ready_yet(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, declared_slow);
	pid_t pid = paused_child();
	struct evm_adopt_opts o = {.pid = pid, .flags = EVM_ADOPT_STARTING};
	struct evm_proc *p;
	assert_int_equal(evm_proc_adopt(loop, &o, &p), -EINVAL); /* a service's flag */
	o.flags |= EVM_ADOPT_STOPPING;
	assert_int_equal(evm_service_adopt(a, &o), -EINVAL); /* one or the other */
	o.flags = EVM_ADOPT_STARTING;
	assert_int_equal(evm_service_adopt(a, &o), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING);
	char msg[64];
	snprintf(msg, sizeof(msg), "adopted pid %d, not ready yet", (int)pid);
	assert_string_equal(last_of("a", EVM_STATE_STARTING)->msg, msg);
	assert_int_equal(evm_service_ready(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	assert_int_equal(evm_proc_pid(evm_service_proc(a)), pid);

	/* its ready_timeout, from its start, is over by the time it is adopted */
	struct evm_service *b = svc(loop, "b", EVM_RESTART_ALWAYS, PAUSE, declared_slow);
	pid = paused_child();
	usleep(300 * 1000);
	o.pid = pid;
	assert_int_equal(evm_service_adopt(b, &o), 0);
	assert_int_equal(evm_service_state(b), EVM_STATE_STARTING);
	run_until_state(loop, b, EVM_STATE_BACKOFF, 5000);
	const struct rec *r = last_of("b", EVM_STATE_BACKOFF);
	assert_int_equal(r->signal, SIGTERM);
	assert_non_null(strstr(r->msg, "not ready within ready_timeout (150 ms)"));

	/* start_ms: STARTING until it is up; RUNNING at once when it was up already */
	struct evm_service *c = svc(loop, "c", EVM_RESTART_ALWAYS, PAUSE, graced);
	o.pid = paused_child();
	assert_int_equal(evm_service_adopt(c, &o), 0);
	assert_int_equal(evm_service_state(c), EVM_STATE_STARTING);
	run_until_state(loop, c, EVM_STATE_RUNNING, 5000);
	struct evm_service *e = svc(loop, "e", EVM_RESTART_ALWAYS, PAUSE, graced);
	o.pid = paused_child();
	usleep(300 * 1000);
	assert_int_equal(evm_service_adopt(e, &o), 0);
	assert_int_equal(evm_service_state(e), EVM_STATE_RUNNING);
	assert_int_equal(count_state("e", EVM_STATE_STARTING), 0);
	for (struct evm_service **x = (struct evm_service *[]){a, b, c, e, NULL}; *x; x++) {
		evm_service_stop(*x);
		run_until_state(loop, *x, EVM_STATE_STOPPED, 5000);
	}
}

static void minute_stop(struct evm_service_opts *o)
{
	o->set |= EVM_SVC_STOP_TIMEOUT;
	o->stop_timeout_ms = 60000;
}

/*
 * EVM_ADOPT_DEADLINE: the earlier supervisor's deadline, as
 * evm_service_deadline gave it, is kept: a ready timeout it extended (the
 * process is older than ready_timeout_ms, which counted from its start
 * would have failed it), a SIGKILL due now (not stop_timeout from now).
 */
static void test_adopt_keeps_the_deadline(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, declared_slow);
	uint64_t left;
	assert_int_equal(evm_service_deadline(a, &left), -ESRCH); /* STOPPED */
	pid_t pid = paused_child();
	usleep(300 * 1000);
	struct evm_adopt_opts o = {.pid = pid, .flags = EVM_ADOPT_DEADLINE, .deadline_ms = 5000};
	assert_int_equal(evm_service_adopt(a, &o), -EINVAL); /* for STARTING or STOPPING only */
	o.flags |= EVM_ADOPT_STARTING;
	assert_int_equal(evm_service_adopt(a, &o), 0);
	for (int i = 0; i < 5; i++)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_STARTING); /* not failed: 5 s left */
	assert_int_equal(evm_service_deadline(a, &left), EVM_DEADLINE_READY);
	assert_true(left > 4000 && left <= 5000);
	assert_int_equal(evm_service_ready(a), 0);
	assert_int_equal(evm_service_deadline(a, &left), -ESRCH); /* RUNNING */

	/* being stopped, its SIGKILL due: at once, not stop_timeout (60 s) from now */
	struct evm_service *b = svc(loop, "b", EVM_RESTART_ALWAYS, PAUSE, minute_stop);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC | O_NONBLOCK), 0);
	o = (struct evm_adopt_opts){.pid = counting_child(pp[1]),
				    .flags = EVM_ADOPT_STOPPING | EVM_ADOPT_DEADLINE};
	assert_int_equal(evm_service_adopt(b, &o), 0);
	run_until_state(loop, b, EVM_STATE_STOPPED, 5000);
	assert_int_equal(last_of("b", EVM_STATE_STOPPED)->signal, SIGKILL);
	char c0;
	assert_int_equal(read(pp[0], &c0, 1), -1); /* and no SIGTERM */
	close(pp[0]);
	close(pp[1]);

	/*
	 * EVM_ADOPT_FAILING: stopped for a failure (its stop signal sent), its
	 * SIGKILL due: RUNNING until the exit, which is a failure the policy
	 * restarts; no second SIGTERM.
	 */
	struct evm_service *c = svc(loop, "c", EVM_RESTART_ON_FAILURE, PAUSE, minute_stop);
	assert_int_equal(pipe2(pp, O_CLOEXEC | O_NONBLOCK), 0);
	o = (struct evm_adopt_opts){.pid = counting_child(pp[1]),
				    .flags = EVM_ADOPT_FAILING | EVM_ADOPT_STOPPING};
	assert_int_equal(evm_service_adopt(c, &o), -EINVAL); /* a stop is a stop */
	o.flags = EVM_ADOPT_FAILING | EVM_ADOPT_DEADLINE;
	o.deadline_ms = 100;
	assert_int_equal(evm_service_adopt(c, &o), 0);
	assert_int_equal(evm_service_state(c), EVM_STATE_RUNNING);
	char msg[80];
	snprintf(msg, sizeof(msg), "adopted pid %d, being stopped for a failure", (int)o.pid);
	assert_string_equal(last_of("c", EVM_STATE_RUNNING)->msg, msg);
	assert_int_equal(evm_service_deadline(c, &left), EVM_DEADLINE_KILL);
	assert_true(left <= 100);
	run_until_state(loop, c, EVM_STATE_BACKOFF, 5000);
	const struct rec *r = last_of("c", EVM_STATE_BACKOFF);
	assert_int_equal(r->signal, SIGKILL);
	assert_non_null(strstr(r->msg, "stopped for a failure before it was taken over"));
	assert_int_equal(read(pp[0], &c0, 1), -1); /* and no SIGTERM */
	run_until_state(loop, c, EVM_STATE_RUNNING, 5000); /* restarted by its policy */
	assert_int_not_equal(evm_proc_pid(evm_service_proc(c)), o.pid);
	close(pp[0]);
	close(pp[1]);
	evm_service_stop(a);
	run_until_state(loop, a, EVM_STATE_STOPPED, 5000);
	evm_service_stop(c);
	run_until_state(loop, c, EVM_STATE_STOPPED, 5000);
}

static void group_opts(struct evm_service_opts *o)
{
	o->kill_group = true;
	o->stop_timeout_ms = 200;
}

static void test_kill_group_kills_grandchildren(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe(pp), 0);
	char *argv[] = {t_helper, "group", "3", "pause", NULL};
	struct evm_service_opts o = {.name = "g",
				     .spawn = {.argv = argv, .stdio = {{0}, {EVM_STDIO_FD, pp[1]}, {0}}},
				     .restart = EVM_RESTART_NEVER};
	group_opts(&o);
	struct evm_service *g;
	assert_int_equal(evm_service_new(loop, &o, &g), 0);
	evm_service_start(g);
	close(pp[1]);
	/* read the three grandchild pids */
	pid_t gc[3];
	FILE *f = fdopen(pp[0], "r");
	for (int i = 0; i < 3; i++)
		assert_int_equal(fscanf(f, " grandchild %d", &gc[i]), 1);
	struct evm_service_info info;
	evm_service_info(g, &info);
	for (int i = 0; i < 3; i++)
		assert_int_equal(getpgid(gc[i]), info.pid);
	evm_service_stop(g);
	run_until_state(loop, g, EVM_STATE_STOPPED, 5000);
	/*
	 * Grandchildren ignore SIGTERM; they are not our children: poll until
	 * gone (a zombie reparented to init counts as gone).
	 */
	for (int i = 0; i < 3; i++)
		WAIT_FOR(t_proc_state(gc[i]) == 0 || t_proc_state(gc[i]) == 'Z', 5000);
	fclose(f);
}

static void test_restart_resets_count(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, NULL);
	evm_service_start(a);
	pid_t first = evm_proc_pid(evm_service_proc(a));
	assert_int_equal(evm_service_restart(a), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_STOPPING);
	run_until_state(loop, a, EVM_STATE_RUNNING, 5000);
	pid_t second = evm_proc_pid(evm_service_proc(a));
	assert_int_not_equal(first, second);
	struct evm_service_info info;
	evm_service_info(a, &info);
	assert_int_equal(info.restarts, 0);
	assert_false(info.stopped_by_user);
}

static void test_remove_running_service(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, NULL);
	evm_service_start(a);
	pid_t pid = evm_proc_pid(evm_service_proc(a));
	evm_service_remove(a);
	/* the name is free at once, while the old one is still stopping */
	assert_null(evm_service_find(loop, "a"));
	struct evm_service *b = svc(loop, "a", EVM_RESTART_NEVER, PAUSE, NULL);
	assert_non_null(b);
	evm_service_start(b);
	RUN_UNTIL(loop, nev && evs[nev - 1].removed, 10000);
	const struct rec *r = &evs[nev - 1];
	assert_int_equal(r->state, EVM_STATE_STOPPED);
	assert_true(r->has_exit);
	assert_int_equal(r->signal, SIGTERM);
	assert_int_equal(kill(pid, 0), -1); /* reaped */
	assert_ptr_equal(evm_service_find(loop, "a"), b);
	assert_int_equal(evm_service_state(b), EVM_STATE_RUNNING);
	/* removing a stopped service: one last event, at once */
	size_t before = nev;
	struct evm_service *c = svc(loop, "c", EVM_RESTART_NEVER, EXIT0, NULL);
	evm_service_remove(c);
	assert_int_equal(nev, before + 1);
	assert_true(evs[before].removed);
}

/* the removed event of the service that ran pid (two may share a name), or NULL */
static const struct rec *removed_of(pid_t pid)
{
	for (size_t i = 0; i < nev; i++)
		if (evs[i].removed && evs[i].pid == pid)
			return &evs[i];
	return NULL;
}

static void test_detach_releases_the_name_and_leaves_the_process_running(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, PAUSE, NULL);
	evm_service_start(a);
	pid_t pid = evm_proc_pid(evm_service_proc(a));
	assert_int_equal(evm_service_detach(a), 0);
	assert_int_equal(evm_service_detach(a), 0); /* again: nothing more */
	assert_null(evm_service_find(loop, "a"));
	struct evm_service *b = svc(loop, "a", EVM_RESTART_NEVER, PAUSE, NULL);
	evm_service_start(b);
	pid_t pid_b = evm_proc_pid(evm_service_proc(b));
	for (int i = 0; i < 10; i++) /* not stopped: it runs on */
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(evm_service_state(a), EVM_STATE_RUNNING);
	assert_null(removed_of(pid));
	/* its exit is its end: no restart (restart = always), and b is not touched */
	size_t before = nev;
	kill(pid, SIGKILL);
	RUN_UNTIL(loop, removed_of(pid) != NULL, 10000);
	const struct rec *r = removed_of(pid);
	assert_true(r->has_exit);
	assert_int_equal(r->signal, SIGKILL);
	for (size_t i = before; i < nev; i++)
		assert_true(evs[i].removed || evs[i].pid != pid); /* no BACKOFF, no spawn */
	assert_int_equal(kill(pid_b, 0), 0);
	assert_ptr_equal(evm_service_find(loop, "a"), b);
	assert_int_equal(evm_service_state(b), EVM_STATE_RUNNING);
}

static void watchdog100(struct evm_service_opts *o)
{
	o->watchdog_ms = 100;
}

/* detached, nothing tells it any more: its watchdog does not stop it as failing */
static void test_detach_ends_the_watchdog(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *w = svc(loop, "w", EVM_RESTART_ALWAYS, PAUSE, watchdog100);
	evm_service_start(w);
	assert_int_equal(evm_service_state(w), EVM_STATE_RUNNING);
	pid_t pid = evm_proc_pid(evm_service_proc(w));
	assert_int_equal(evm_service_detach(w), 0);
	uint64_t end = t_now_ms() + 500; /* five periods of silence */
	while (t_now_ms() < end)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	assert_int_equal(evm_service_state(w), EVM_STATE_RUNNING);
	assert_int_equal(kill(pid, 0), 0);
	evm_service_remove(w);
	RUN_UNTIL(loop, removed_of(pid) != NULL, 10000);
	assert_int_equal(removed_of(pid)->signal, SIGTERM); /* the removal's stop, not a failure's */
}

static void test_detach_then_remove_stops_it(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *c = svc(loop, "c", EVM_RESTART_ALWAYS, PAUSE, NULL);
	evm_service_start(c);
	pid_t pid = evm_proc_pid(evm_service_proc(c));
	assert_int_equal(evm_service_detach(c), 0);
	evm_service_remove(c);
	assert_int_equal(evm_service_state(c), EVM_STATE_STOPPING);
	RUN_UNTIL(loop, removed_of(pid) != NULL, 10000);
	assert_int_equal(removed_of(pid)->signal, SIGTERM);
	assert_int_equal(kill(pid, 0), -1); /* reaped */
	/* nothing to run on: -ESRCH, and the service is untouched */
	struct evm_service *d = svc(loop, "d", EVM_RESTART_NEVER, EXIT0, NULL);
	assert_int_equal(evm_service_detach(d), -ESRCH);
	assert_ptr_equal(evm_service_find(loop, "d"), d);
	assert_int_equal(evm_service_detach(NULL), -EINVAL);
}

static void test_find_many(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	enum { N = 3000 };
	static struct evm_service *all[N];
	char name[32];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "svc-%d", i);
		all[i] = svc(loop, name, EVM_RESTART_NEVER, EXIT0, NULL);
	}
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "svc-%d", i);
		assert_ptr_equal(evm_service_find(loop, name), all[i]);
	}
	/* remove every third: the others are still found, the removed are not */
	for (int i = 0; i < N; i += 3)
		evm_service_remove(all[i]);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "svc-%d", i);
		if (i % 3 == 0)
			assert_null(evm_service_find(loop, name));
		else
			assert_ptr_equal(evm_service_find(loop, name), all[i]);
	}
	assert_null(evm_service_find(loop, "svc-3000"));
	assert_null(evm_service_find(loop, ""));
}

static void test_new_rejects_bad_options(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char *argv[] = {"true", NULL};
	struct evm_service_opts o = {.name = "x", .spawn = {.argv = argv}};
	struct evm_service *s;
	assert_int_equal(evm_service_new(loop, &o, &s), 0);
	assert_int_equal(evm_service_new(loop, &o, &s), -EEXIST);
	o.name = NULL;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.name = "y";
	o.backoff_jitter = 101;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.backoff_jitter = 0;
	int bad[] = {256};
	o.success_codes = bad;
	o.nsuccess_codes = 1;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.nsuccess_codes = 0;
	o.spawn.stdio[1].mode = EVM_STDIO_PIPE;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.spawn.stdio[1].mode = EVM_STDIO_INHERIT;
	/* the spawn's own mistakes, now rather than at each start until FATAL */
	char *env[] = {"NOEQUALS", NULL};
	o.spawn.env_extra = env;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.spawn.env_extra = NULL;
	struct evm_fd_map x = {.fd = 0, .target = 1};
	o.spawn.extra_fds = &x;
	o.spawn.nextra_fds = 1;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.spawn.nextra_fds = 0;
	o.spawn.flags = EVM_SPAWN_NICE;
	o.spawn.nice = 99;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.spawn.flags = 1u << 30;
	assert_int_equal(evm_service_new(loop, &o, &s), -EINVAL);
	o.spawn.flags = 0;
	assert_null(evm_service_find(loop, "y"));
	assert_int_equal(evm_service_new(loop, &o, &s), 0);
}

/* s1 of the shutdown test: says "ready" on ready_fd once it ignores SIGTERM */
static int ready_fd = -1;
static char *IGNORE_TERM_READY[] = {"ignore", "15", "print", "ready", "pause", NULL};

static void fast_stop_ready(struct evm_service_opts *o)
{
	fast_stop(o);
	o->spawn.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, ready_fd};
}

static void test_shutdown_stops_everything(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	pid_t pids[4];
	struct evm_service *s[3];
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	ready_fd = pp[1];
	s[0] = svc(loop, "s0", EVM_RESTART_ALWAYS, PAUSE, NULL);
	s[1] = svc(loop, "s1", EVM_RESTART_ALWAYS, IGNORE_TERM_READY, fast_stop_ready);
	s[2] = svc(loop, "s2", EVM_RESTART_ALWAYS, EXIT3, NULL); /* crash-looping */
	for (int i = 0; i < 3; i++)
		evm_service_start(s[i]);
	close(pp[1]);
	/* running (start_ms 0) comes before the helper's sigaction: wait for its word */
	char buf[7]; /* "ready\n" fills it: t_read_all returns without waiting for EOF */
	assert_int_equal(t_read_all(pp[0], buf, sizeof(buf), 10000), 6);
	close(pp[0]);
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts po = {.argv = argv, .pdeath_signal = SIGKILL};
	struct evm_proc *plain;
	assert_int_equal(evm_spawn(loop, &po, &plain), 0);
	for (int i = 0; i < 5; i++)
		assert_true(evm_loop_run_once(loop, 20) >= 0);
	pids[0] = evm_proc_pid(evm_service_proc(s[0]));
	pids[1] = evm_proc_pid(evm_service_proc(s[1]));
	pids[2] = evm_proc_pid(plain);
	assert_int_equal(evm_shutdown(loop, 0), 0);
	for (int i = 0; i < 3; i++) {
		enum evm_state st = evm_service_state(s[i]);
		assert_true(st == EVM_STATE_STOPPED || st == EVM_STATE_EXITED || st == EVM_STATE_FATAL);
	}
	assert_true(evm_proc_exited(plain));
	assert_int_equal(last_of("s1", EVM_STATE_STOPPED)->signal, SIGKILL); /* escalated */
	for (int i = 0; i < 3; i++)
		assert_int_equal(kill(pids[i], 0), -1);
	assert_int_equal(evm_loop_alive(loop), 0);
	evm_proc_unref(plain);
}

static void test_shutdown_reverse_order(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *s[3];
	char name[16];
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		s[i] = svc(loop, name, EVM_RESTART_ALWAYS, PAUSE, NULL);
		evm_service_start(s[i]);
	}
	nev = 0;
	assert_int_equal(evm_shutdown(loop, EVM_SHUTDOWN_REVERSE), 0);
	/* STOPPED events come last-created first, each before the next STOPPING */
	const char *order[] = {"r2", "r1", "r0"};
	size_t k = 0;
	for (size_t i = 0; i < nev; i++) {
		if (evs[i].state != EVM_STATE_STOPPED)
			continue;
		assert_string_equal(evs[i].name, order[k]);
		k++;
	}
	assert_int_equal(k, 3);
}

/* a service whose own callback removes it once it is stopped */
static void remove_when_stopped(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	(void)data;
	if (ev->type == EVM_EV_SERVICE && ev->state == EVM_STATE_STOPPED && !ev->removed)
		evm_service_remove(ev->service);
}

static void self_removing(struct evm_service_opts *o)
{
	o->on_event = remove_when_stopped;
	o->backoff_initial_ms = 60000; /* stays in backoff */
	o->backoff_max_ms = 60000;
}

/* stop from outside the loop; the service's callback removes it (ASan: no use after free) */
static void test_remove_from_own_event_outside_the_loop(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *s = svc(loop, "x", EVM_RESTART_NEVER, EXIT0, self_removing);
	evm_service_start(s);
	run_until_state(loop, s, EVM_STATE_EXITED, 5000);
	assert_int_equal(evm_service_stop(s), 0); /* EXITED -> STOPPED -> removed, outside the loop */
	assert_null(evm_service_find(loop, "x"));
	bool removed = false;
	for (size_t i = 0; i < nev; i++)
		removed |= !strcmp(evs[i].name, "x") && evs[i].removed;
	assert_true(removed);
	assert_int_equal(evm_loop_run_once(loop, 0) >= 0, 1);
}

/* shutdown: a callback removing the service being stopped does not end the pass early */
static void test_shutdown_survives_a_removal_in_a_callback(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *a = svc(loop, "a", EVM_RESTART_ALWAYS, EXIT3, self_removing);
	struct evm_service *b = svc(loop, "b", EVM_RESTART_ALWAYS, PAUSE, NULL);
	evm_service_start(a);
	evm_service_start(b);
	run_until_state(loop, a, EVM_STATE_BACKOFF, 5000);
	run_until_state(loop, b, EVM_STATE_RUNNING, 5000);
	assert_int_equal(evm_shutdown(loop, 0), 0);
	assert_null(evm_service_find(loop, "a"));
	assert_int_equal(evm_service_state(b), EVM_STATE_STOPPED);
	assert_false(evm_loop_alive(loop));
}

/* a restart under way when the shutdown begins does not start a new process */
static void test_shutdown_drops_a_pending_restart(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_service *s = svc(loop, "p", EVM_RESTART_ALWAYS, PAUSE, NULL);
	evm_service_start(s);
	run_until_state(loop, s, EVM_STATE_RUNNING, 5000);
	assert_int_equal(evm_service_restart(s), 0); /* SIGTERM sent, start_after_stop */
	nev = 0;
	assert_int_equal(evm_shutdown(loop, 0), 0);
	assert_int_equal(count_state("p", EVM_STATE_STARTING) + count_state("p", EVM_STATE_RUNNING), 0);
	assert_int_equal(evm_service_state(s), EVM_STATE_STOPPED);
	assert_false(evm_loop_alive(loop));
}

/* a callback that starts a plain process when the service begins to stop */
static struct evm_proc *late;

static void spawn_when_stopping(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)data;
	if (ev->type != EVM_EV_SERVICE || ev->state != EVM_STATE_STOPPING || late)
		return;
	char *argv[] = {t_helper, "pause", NULL};
	struct evm_spawn_opts o = {.argv = argv, .pdeath_signal = SIGKILL};
	assert_int_equal(evm_spawn(loop, &o, &late), 0);
}

static void spawner_opts(struct evm_service_opts *o)
{
	o->on_event = spawn_when_stopping;
}

/* a process spawned while the shutdown runs is stopped too, not waited for forever */
static void test_shutdown_stops_a_process_spawned_meanwhile(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	late = NULL;
	struct evm_service *s = svc(loop, "sp", EVM_RESTART_ALWAYS, PAUSE, spawner_opts);
	evm_service_start(s);
	run_until_state(loop, s, EVM_STATE_RUNNING, 5000);
	assert_int_equal(evm_shutdown(loop, 0), 0);
	assert_non_null(late);
	struct evm_exit x;
	assert_int_equal(evm_proc_wait(late, &x, 0), 0);
	assert_int_equal(x.signal, SIGTERM);
	evm_proc_unref(late);
	assert_false(evm_loop_alive(loop));
}

/* evm_shutdown and run_once from a callback are refused, in a top-level call and in the loop */
static int deadlk_seen;

static void run_from_callback(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)data;
	if (ev->type == EVM_EV_SERVICE && evm_shutdown(loop, 0) == -EDEADLK &&
	    evm_loop_run_once(loop, 0) == -EDEADLK && evm_loop_run(loop) == -EDEADLK)
		deadlk_seen++;
}

static void deadlk_opts(struct evm_service_opts *o)
{
	o->on_event = run_from_callback;
}

static void test_no_loop_run_from_a_callback(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	deadlk_seen = 0;
	struct evm_service *s = svc(loop, "d", EVM_RESTART_NEVER, EXIT0, deadlk_opts);
	assert_int_equal(evm_service_start(s), 0); /* RUNNING, reported inside the call */
	assert_int_equal(deadlk_seen, 1);
	run_until_state(loop, s, EVM_STATE_EXITED, 5000); /* reported by the loop */
	assert_int_equal(deadlk_seen, 2);
	assert_int_equal(evm_shutdown(loop, 0), 0);
}

/*
 * A herd of services crash-looping at a capped backoff: the loop still
 * answers. 50 services; 1,000 in the scale group (200 under ASan).
 */
static void ping_cb(struct evm_timer *t, void *data)
{
	(void)t;
	(*(int *)data)++;
}

static void herd_opts(struct evm_service_opts *o)
{
	o->backoff_initial_ms = 50;
	o->backoff_max_ms = 200;
	o->backoff_jitter = 20;
}

static void test_crash_loop_herd_stays_responsive(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int n = t_scale() ? (T_SAN ? 200 : 1000) : 50;
	alarm(T_ALARM + (unsigned)T_MS(120)); /* the churn below has its own deadline */
	char name[16];
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "h%d", i);
		evm_service_start(svc(loop, name, EVM_RESTART_ALWAYS, EXIT3, herd_opts));
	}
	/*
	 * A ping through the loop is answered every time while they churn, at
	 * least 10 times and until every service has been through a backoff.
	 */
	int pongs = 0;
	size_t backoffs = 0;
	uint64_t deadline = t_now_ms() + T_MS(120000);
	for (int round = 0; round < 10 || backoffs < (size_t)n; round++) {
		int before = pongs;
		assert_int_equal(evm_timer_add(loop, 1, ping_cb, &pongs, NULL), 0);
		RUN_UNTIL(loop, pongs != before, 5000);
		backoffs = 0;
		for (size_t i = 0; i < nev; i++)
			if (evs[i].state == EVM_STATE_BACKOFF)
				backoffs++;
		if (t_now_ms() > deadline)
			fail_msg("%zu backoffs of %d services in %d s", backoffs, n,
				 (int)T_MS(120000) / 1000);
	}
	assert_int_equal(evm_shutdown(loop, 0), 0);
}

static size_t count_state_all(struct evm_service **ss, int n, enum evm_state st)
{
	size_t k = 0;
	for (int i = 0; i < n; i++)
		k += evm_service_state(ss[i]) == st;
	return k;
}

static uint64_t storm_backoff_ms;

static void storm_opts(struct evm_service_opts *o)
{
	o->set |= EVM_SVC_BACKOFF_MAX;
	o->backoff_initial_ms = storm_backoff_ms;
	o->backoff_max_ms = storm_backoff_ms;
	o->backoff_jitter = 0;
}

/*
 * A restart spawns, and a spawn holds the loop until the child has exec'd
 * (tens of ms on a busy machine): 1,000 services whose restarts were due
 * together made one iteration run 1,000 spawns while nothing else was
 * served. 40 services crash, their restarts all come due while the loop is
 * not run; then each iteration starts at most EVM__SPAWN_TURN of them, in
 * the order they came due, a plain timer due as well runs in the first
 * iteration, and a restart still waiting is cancelled by a stop (no spawn).
 */
static void test_restart_storm_bounded_per_iteration(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	enum { N = 40 };
	struct evm_service *ss[N];
	char name[16];
	storm_backoff_ms = T_MS(2000); /* > the time to spawn N, mostly: all in BACKOFF at once */
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "st%d", i);
		ss[i] = svc(loop, name, EVM_RESTART_ALWAYS, EXIT3, storm_opts);
		assert_int_equal(evm_service_start(ss[i]), 0);
	}
	RUN_UNTIL(loop, count_state_all(ss, N, EVM_STATE_BACKOFF) == N, 30000);
	/* the order they came due: the order they last entered BACKOFF (one delay, no jitter) */
	const char *due[N];
	uint64_t last = 0;
	size_t k = 0;
	for (size_t i = 0; i < nev; i++) {
		if (evs[i].state != EVM_STATE_BACKOFF)
			continue;
		bool later = false;
		for (size_t j = i + 1; j < nev && !later; j++)
			later = evs[j].state == EVM_STATE_BACKOFF && !strcmp(evs[j].name, evs[i].name);
		if (!later)
			due[k++] = evs[i].name;
	}
	assert_int_equal(k, N);
	for (int i = 0; i < N; i++)
		if (ss[i]->next_start_mono > last)
			last = ss[i]->next_start_mono;
	/* not a sleep for synchronisation: waiting for the clock to pass every deadline */
	WAIT_FOR(evm__mono_ns() > last, T_MS(30000));
	int pongs = 0;
	assert_int_equal(evm_timer_add(loop, 0, ping_cb, &pongs, NULL), 0);

	size_t from = nev, started = 0, stopped_one = 0;
	const char *order[N];
	struct evm_service *victim = NULL;
	for (int it = 0; started + stopped_one < N; it++) {
		assert_true(evm_loop_run_once(loop, 0) >= 0);
		if (it == 0)
			assert_int_equal(pongs, 1); /* not behind the restarts */
		size_t this_turn = 0;
		for (; from < nev; from++)
			if (evs[from].old == EVM_STATE_BACKOFF && evs[from].state != EVM_STATE_STOPPED) {
				assert_true(started < N);
				order[started++] = evs[from].name;
				this_turn++;
			}
		if (this_turn > EVM__SPAWN_TURN)
			fail_msg("iteration %d started %zu restarts (at most %d)", it, this_turn,
				 EVM__SPAWN_TURN);
		if (it == 0) {
			/* the last due is still waiting: a stop cancels it */
			assert_true(started < N);
			victim = evm_service_find(loop, due[N - 1]);
			assert_non_null(victim);
			assert_int_equal(evm_service_state(victim), EVM_STATE_BACKOFF);
			assert_int_equal(evm_service_stop(victim), 0);
			assert_int_equal(evm_service_state(victim), EVM_STATE_STOPPED);
			stopped_one = 1;
		}
		if (it > 10 * N)
			fail_msg("%zu restarts of %d in %d iterations", started, N - 1, it);
	}
	for (size_t i = 0; i < started; i++)
		assert_string_equal(order[i], due[i]);
	assert_int_equal(started, N - 1);
	assert_int_equal(evm_service_state(victim), EVM_STATE_STOPPED);
	assert_int_equal(evm_shutdown(loop, 0), 0);
}

/*
 * evm_service_restart of many at once: the start after each exit goes with
 * the loop's other restarts, EVM__SPAWN_TURN an iteration (all 40 were spawned
 * in the iteration of their exits); one stopped while it waits for its turn
 * stays stopped.
 */
static void test_restarts_of_many_are_bounded_per_iteration(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	enum { N = 40 };
	struct evm_service *ss[N];
	pid_t pids[N];
	char name[16];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "rs%d", i);
		ss[i] = svc(loop, name, EVM_RESTART_NEVER, PAUSE, NULL);
		assert_int_equal(evm_service_start(ss[i]), 0);
	}
	RUN_UNTIL(loop, count_state_all(ss, N, EVM_STATE_RUNNING) == N, 30000);
	for (int i = 0; i < N; i++) {
		pids[i] = evm_proc_pid(evm_service_proc(ss[i]));
		assert_int_equal(evm_service_restart(ss[i]), 0);
	}
	/* every exit ready before the loop looks: all of them in its next iteration */
	for (int i = 0; i < N; i++)
		WAIT_FOR(t_proc_state(pids[i]) == 'Z', T_MS(10000));
	size_t from = nev, started = 0;
	struct evm_service *victim = NULL;
	for (int it = 0; started < N - (victim != NULL); it++) {
		assert_true(evm_loop_run_once(loop, it ? 100 : 0) >= 0);
		size_t this_turn = 0;
		for (; from < nev; from++)
			if (evs[from].old == EVM_STATE_STOPPED &&
			    (evs[from].state == EVM_STATE_STARTING || evs[from].state == EVM_STATE_RUNNING))
				this_turn++;
		started += this_turn;
		if (this_turn > EVM__SPAWN_TURN)
			fail_msg("iteration %d started %zu restarts (at most %d)", it, this_turn,
				 EVM__SPAWN_TURN);
		if (it == 0) {
			/* one still waiting for its turn (exits come in any order): a stop cancels its start */
			for (int i = 0; i < N && !victim; i++)
				if (evm_service_state(ss[i]) == EVM_STATE_STOPPED)
					victim = ss[i];
			assert_non_null(victim);
			assert_int_equal(evm_service_stop(victim), 0);
		}
		if (it > 10 * N)
			fail_msg("%zu restarts of %d in %d iterations", started, N - 1, it);
	}
	assert_int_equal(started, N - 1);
	assert_int_equal(count_state_all(ss, N, EVM_STATE_RUNNING), N - 1);
	assert_int_equal(evm_service_state(victim), EVM_STATE_STOPPED);
	assert_true(stopped_by_user(victim));
	for (int i = 0; i < N; i++)
		if (ss[i] != victim)
			assert_int_not_equal(evm_proc_pid(evm_service_proc(ss[i])), pids[i]);
	assert_int_equal(evm_shutdown(loop, 0), 0);
}

/* ------------------------------------------------------ the state table */

static const char *state_text(unsigned st)
{
	static const char *const names[] = {"STOPPED", "STARTING", "RUNNING", "BACKOFF",
					    "STOPPING", "EXITED",   "FATAL",   "RELOADING"};
	_Static_assert(sizeof(names) / sizeof(names[0]) == EVM__SV_NSTATES, "a name per state");
	return st == EVM__SV_REMOVED ? "(removed)" : st > EVM__SV_REMOVED ? "(stays)" : names[st];
}

static void targets_text(unsigned to, char *buf, size_t n)
{
	size_t len = 0;
	buf[0] = 0;
	for (unsigned st = 0; st <= EVM__SV_REMOVED + 1; st++) /* + 1: EVM__SV_STAYS */
		if (to & EVM__SV_TO(st))
			len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "%s%s", len ? "|" : "",
						state_text(st));
	if (!to)
		snprintf(buf, n, "(stays)");
}

static bool same_cell(const struct evm__sv_cell *a, const struct evm__sv_cell *b)
{
	return a->act == b->act && a->to == b->to &&
	       !strcmp(a->what ? a->what : "", b->what ? b->what : "");
}

/*
 * The table's text, as supervise.c's header shows it: a line a cell that
 * does something (or says what it does not), alike cells of a row merged.
 */
static char *table_text(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	fprintf(f, " * TABLE-BEGIN\n * %-9s %-15s    %-29s %s\n", "state", "event", "next", "what");
	for (unsigned st = 0; st < EVM__SV_NSTATES; st++) {
		bool done[EVM__SV_NEVENTS] = {false}, first = true;
		for (unsigned ev = 0; ev < EVM__SV_NEVENTS; ev++) {
			const struct evm__sv_cell *c = &evm__sv_table[st][ev];
			if (done[ev] || (!c->act && !c->what))
				continue;
			char names[64] = "", to[128];
			size_t n = 0;
			for (unsigned e2 = ev; e2 < EVM__SV_NEVENTS; e2++) {
				if (done[e2] || !same_cell(c, &evm__sv_table[st][e2]))
					continue;
				done[e2] = true;
				n += (size_t)snprintf(names + n, n < sizeof(names) ? sizeof(names) - n : 0, "%s%s",
						      n ? ", " : "", evm__sv_event_names[e2]);
			}
			targets_text(c->to, to, sizeof(to));
			fprintf(f, " * %-9s %-15s -> %-29s %s\n", first ? state_text(st) : "", names, to,
				c->what ? c->what : "");
			first = false;
		}
	}
	fprintf(f, " * TABLE-END\n");
	fclose(f);
	return buf;
}

/* the text at the top of supervise.c is the table's: `make supervise-table` prints it anew */
static void test_table_text_matches_the_table(void **state)
{
	char *want = table_text();
	FILE *f = fopen(T_SRCDIR "/src/lib/supervise.c", "r");
	if (!f)
		fail_msg("%s/src/lib/supervise.c: %s", T_SRCDIR, strerror(errno));
	char line[512], *have = NULL;
	size_t len = 0;
	FILE *h = open_memstream(&have, &len);
	bool in = false;
	while (fgets(line, sizeof(line), f)) {
		in = in || !strcmp(line, " * TABLE-BEGIN\n");
		if (in)
			fputs(line, h);
		if (in && !strcmp(line, " * TABLE-END\n"))
			break;
	}
	fclose(f);
	fclose(h);
	if (strcmp(have, want) != 0)
		fail_msg("supervise.c's table text is not the table's (make supervise-table):\n%s", want);
	free(have);
	free(want);
}

/* the states the cell test starts from, each reached with a service of its own */
static void long_grace(struct evm_service_opts *o)
{
	o->start_ms = 600000;
}

static void long_backoff(struct evm_service_opts *o)
{
	o->backoff_initial_ms = 600000;
	o->backoff_max_ms = 600000;
}

static void slow_stop(struct evm_service_opts *o)
{
	o->stop_signal = SIGWINCH; /* ignored: it stays STOPPING until killed */
	o->set |= EVM_SVC_STOP_TIMEOUT;
	o->stop_timeout_ms = 600000;
}

static void no_start_retries(struct evm_service_opts *o)
{
	long_grace(o);
	o->set |= EVM_SVC_START_RETRIES;
	o->start_retries = 0;
}

static struct evm_service *reach(struct evm_loop *loop, const char *name, enum evm_state st)
{
	static const struct {
		char **args;
		enum evm_restart restart;
		void (*tweak)(struct evm_service_opts *);
	} how[EVM__SV_NSTATES] = {
		[EVM_STATE_STOPPED] = {PAUSE, EVM_RESTART_ON_FAILURE, NULL},
		[EVM_STATE_STARTING] = {PAUSE, EVM_RESTART_ON_FAILURE, long_grace},
		[EVM_STATE_RUNNING] = {PAUSE, EVM_RESTART_ON_FAILURE, NULL},
		[EVM_STATE_BACKOFF] = {EXIT3, EVM_RESTART_ON_FAILURE, long_backoff},
		[EVM_STATE_STOPPING] = {PAUSE, EVM_RESTART_ON_FAILURE, slow_stop},
		[EVM_STATE_EXITED] = {EXIT0, EVM_RESTART_NEVER, NULL},
		[EVM_STATE_FATAL] = {EXIT3, EVM_RESTART_ON_FAILURE, no_start_retries},
		[EVM_STATE_RELOADING] = {PAUSE, EVM_RESTART_ON_FAILURE, NULL},
	};
	struct evm_service *s = svc(loop, name, how[st].restart, how[st].args, how[st].tweak);
	if (st != EVM_STATE_STOPPED)
		assert_int_equal(evm_service_start(s), 0);
	if (st == EVM_STATE_STOPPING)
		assert_int_equal(evm_service_stop(s), 0);
	if (st == EVM_STATE_RELOADING)
		assert_int_equal(evm_service_reloading(s, 600000), 0);
	RUN_UNTIL(loop, evm_service_state(s) == st, 10000);
	return s;
}

static bool removed(const char *name)
{
	for (size_t i = 0; i < nev; i++)
		if (evs[i].removed && !strcmp(evs[i].name, name))
			return true;
	return false;
}

/* raise ev as it happens: the public call, the process's death, or the timer's dispatch */
static void fire(struct evm_loop *loop, struct evm_service *s, enum evm__sv_event ev, size_t before)
{
	const struct evm__sv_cell *c = &evm__sv_table[evm_service_state(s)][ev];
	struct evm_exit e = {0};
	switch (ev) {
	case EVM__SV_START:
		assert_int_equal(evm_service_start(s), 0);
		break;
	case EVM__SV_STOP:
		assert_int_equal(evm_service_stop(s), 0);
		break;
	case EVM__SV_RESTART:
		assert_int_equal(evm_service_restart(s), 0);
		break;
	case EVM__SV_REMOVE:
		evm_service_remove(s);
		break;
	case EVM__SV_EXIT:
		if (c->act) {
			assert_int_equal(evm_service_signal(s, SIGKILL), 0);
			RUN_UNTIL(loop, nev > before, 10000);
		} else { /* no process to die: what a stray exit would do */
			assert_int_equal(evm__sv_dispatch(s, ev, &(struct evm__sv_arg){.exit = &e}), 0);
		}
		break;
	case EVM__SV_READY: {
		int r = evm_service_ready(s);
		if (c->act)
			assert_int_equal(r, 0);
		break;
	}
	case EVM__SV_ADOPT: {
		/* a process the loop did not spawn (our child: the teardown reaps it) */
		pid_t pid = paused_child();
		int r = evm_service_adopt(s, &(struct evm_adopt_opts){.pid = pid});
		if (c->act) {
			assert_int_equal(r, 0);
			assert_int_equal(evm_proc_pid(evm_service_proc(s)), pid);
		} else {
			assert_int_equal(r, -EBUSY);
			kill(pid, SIGKILL);
			assert_int_equal(waitpid(pid, NULL, 0), pid);
		}
		break;
	}
	case EVM__SV_RELOAD: {
		int r = evm_service_reload(s, 0, 600000);
		if (c->act)
			assert_int_equal(r, c->to ? 0 : -EBUSY);
		break;
	}
	case EVM__SV_RELOADING: {
		int r = evm_service_reloading(s, 600000);
		if (c->act)
			assert_int_equal(r, 0);
		break;
	}
	case EVM__SV_RESUME: {
		struct evm_service_resume r = {.state = EVM_STATE_BACKOFF, .delay_ms = 60000};
		assert_int_equal(evm_service_resume(s, &r), c->act ? 0 : -EBUSY);
		break;
	}
	default:
		assert_int_equal(evm__sv_dispatch(s, ev, &(struct evm__sv_arg){.error = -ENOENT}), 0);
		break;
	}
}

/* every (state, event) cell: the service enters a state the cell names, or stays */
static void test_every_cell_does_what_the_table_says(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	for (unsigned st = 0; st < EVM__SV_NSTATES; st++) {
		for (unsigned ev = 0; ev < EVM__SV_NEVENTS; ev++) {
			char name[32];
			snprintf(name, sizeof(name), "cell-%u-%u", st, ev);
			struct evm_service *s = reach(loop, name, st);
			const struct evm__sv_cell *c = &evm__sv_table[st][ev];
			size_t before = nev;
			fire(loop, s, ev, before);
			if (!c->to || ((c->to & EVM__SV_STAYS) && nev == before)) {
				if (nev != before || evm_service_state(s) != st)
					fail_msg("%s on %s: no transition expected, got %s", state_text(st),
						 evm__sv_event_names[ev], evm_state_name(evm_service_state(s)));
			} else {
				assert_true(nev > before);
				const struct rec *r = &evs[before];
				unsigned got = r->removed ? EVM__SV_REMOVED : (unsigned)r->state;
				if (strcmp(r->name, name) || r->old != st || !(c->to & EVM__SV_TO(got)))
					fail_msg("%s on %s: went %s -> %s", state_text(st),
						 evm__sv_event_names[ev], evm_state_name(r->old),
						 state_text(got));
			}
			if (!removed(name)) {
				evm_service_signal(s, SIGKILL);
				evm_service_remove(s);
			}
			RUN_UNTIL(loop, removed(name), 10000);
			nev = 0;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--table")) {
		char *text = table_text();
		fputs(text, stdout);
		free(text);
		return 0;
	}
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_never_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_spawn_subscriber_may_stop_restart_or_remove_the_service,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_on_failure_success_exits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_on_failure_restarts_until_max_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_retries_counts_failures_in_a_row, setup, teardown),
		cmocka_unit_test_setup_teardown(test_on_failure_signal_is_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_success_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_always_restarts_after_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unless_stopped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_policy_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_policy_cancels_a_waiting_restart_a_turn_later, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_policy_lower_max_retries_gives_up_a_turn_later, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_set_policy_judges_the_exit_by_its_new_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_policy_keeps_other_restarts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_before_spawn_can_fail_an_attempt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_grows_and_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_carries_counters_and_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_history, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_jitter_stays_in_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_initial_backoff_still_doubles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_loop_never_spins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_resets_after_stable_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_retries_to_fatal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_grace_reaches_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_seen_after_the_start_period_is_a_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_while_starting_is_a_failed_start_however_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_declared_ready_waits_for_its_word, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_before_ready_is_a_failed_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ready_timeout_fails_the_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extend_timeout_moves_the_ready_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_trigger_fails_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_waits_for_reloading_then_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_applies_while_reloading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_watchdog_for_the_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_miss_restarts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_binary_goes_fatal_with_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_escalates_to_sigkill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_a_process_being_stopped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_a_process_not_ready_yet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_keeps_the_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_group_kills_grandchildren, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_resets_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_running_service, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_releases_the_name_and_leaves_the_process_running,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_then_remove_stops_it, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_ends_the_watchdog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_rejects_bad_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_stops_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_reverse_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_from_own_event_outside_the_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_survives_a_removal_in_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_drops_a_pending_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_stops_a_process_spawned_meanwhile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_loop_run_from_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_loop_herd_stays_responsive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_storm_bounded_per_iteration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restarts_of_many_are_bounded_per_iteration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_text_matches_the_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_cell_does_what_the_table_says, setup, teardown),
	};
	/* make test-scale (EVMON_TEST_SCALE=1) */
	const struct CMUnitTest scale[] = {
		cmocka_unit_test_setup_teardown(test_crash_loop_herd_stays_responsive, setup, teardown),
	};
	if (t_scale())
		return cmocka_run_group_tests_name("supervise scale", scale, NULL, NULL);
	return cmocka_run_group_tests_name("supervise", tests, NULL, NULL);
}
