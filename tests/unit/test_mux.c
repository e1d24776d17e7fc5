/*
 * test_mux.c - where exits go: the per-process callback, named handlers
 * (exact name, longest "prefix/", "" default; replaced, removed, changed
 * from inside a handler; routing decided at exit time), subscribers (masks,
 * subscribe/unsubscribe during a dispatch), the dispatch order, and the
 * fields of SPAWN, EXIT and WARNING events.
 */
#include "evmtest.h"

#define MAXLOG 64

static struct {
	int n;
	char what[MAXLOG][48]; /* "cb:name", "h:pattern:name", "ev:TYPE:name" */
} lg;

static void logf_(const char *fmt, const char *a, const char *b)
{
	assert_true(lg.n < MAXLOG);
	snprintf(lg.what[lg.n++], sizeof(lg.what[0]), fmt, a, b ? b : "(null)");
}

static int setup(void **state)
{
	memset(&lg, 0, sizeof(lg));
	return t_setup(state);
}

static bool logged(const char *s)
{
	for (int i = 0; i < lg.n; i++)
		if (!strcmp(lg.what[i], s))
			return true;
	return false;
}

/* a handler registered under pattern (its data) logs "h:pattern:name" */
static void handler(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)e;
	logf_("h:%s:%s", data, evm_proc_handler(p));
}

static void handler2(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)e;
	logf_("h2:%s:%s", data, evm_proc_handler(p));
}

static struct evm_proc *spawn_named(struct evm_loop *loop, const char *name, const char *code)
{
	struct evm_spawn_opts o = {.handler = name};
	return t_spawn_opts(loop, HARGV("exit", (char *)code), &o);
}

static void run_exits(struct evm_loop *loop, struct evm_proc **p, int n)
{
	for (int i = 0; i < n; i++) {
		RUN_UNTIL(loop, evm_proc_exited(p[i]), 10000);
		evm_proc_unref(p[i]);
	}
	evm_loop_run_once(loop, 0); /* the end of the iteration that reported the last */
}

static void test_routing(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_handle(loop, "db", handler, "db"), 0);
	assert_int_equal(evm_handle(loop, "jobs/", handler, "jobs/"), 0);
	assert_int_equal(evm_handle(loop, "jobs/nightly/", handler, "jobs/nightly/"), 0);
	assert_int_equal(evm_handle(loop, "", handler, "default"), 0);
	static const char *const names[] = {"db",	 "jobs/backup", "jobs/nightly/x",
					    "jobs",	 "other",	"dbx",
					    "jobs/",	 "jobsx/y",	"jobs/nightly"};
	static const char *const want[] = {
		"h:db:db",		   "h:jobs/:jobs/backup", "h:jobs/nightly/:jobs/nightly/x",
		"h:default:jobs",	   "h:default:other",	  "h:default:dbx",
		"h:jobs/:jobs/",	   "h:default:jobsx/y",	  "h:jobs/:jobs/nightly",
	};
	enum { N = sizeof(names) / sizeof(names[0]) };
	struct evm_proc *p[N];
	for (int i = 0; i < N; i++)
		p[i] = spawn_named(loop, names[i], "0");
	run_exits(loop, p, N);
	assert_int_equal(lg.n, N);
	for (int i = 0; i < N; i++)
		if (!logged(want[i]))
			fail_msg("%s was not routed to %s", names[i], want[i]);
	/* no handler name: no handler, not even the default */
	memset(&lg, 0, sizeof(lg));
	struct evm_proc *q = t_spawn(loop, HARGV("exit", "0"), NULL);
	run_exits(loop, &q, 1);
	assert_int_equal(lg.n, 0);
}

/* Routing happens at exit time: replace, add and remove between spawn and exit. */
static void test_replace_and_remove(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_handle(loop, "jobs/", handler, "jobs/"), 0);
	assert_int_equal(evm_handle(loop, "jobs/nightly/", handler, "jobs/nightly/"), 0);
	assert_int_equal(evm_handle(loop, "", handler, "default"), 0);
	struct evm_spawn_opts o = {.handler = "jobs/nightly/x"};
	struct evm_proc *p[4];
	p[0] = t_spawn_opts(loop, HARGV("pause"), &o);
	o.handler = "db";
	p[1] = t_spawn_opts(loop, HARGV("pause"), &o);
	o.handler = "misc";
	p[2] = t_spawn_opts(loop, HARGV("pause"), &o);
	o.handler = "late";
	p[3] = t_spawn_opts(loop, HARGV("pause"), &o);

	assert_int_equal(evm_handle(loop, "jobs/nightly/", NULL, NULL), 0); /* falls back to jobs/ */
	assert_int_equal(evm_handle(loop, "db", handler, "db"), 0);
	assert_int_equal(evm_handle(loop, "db", handler2, "db"), 0); /* replaces */
	assert_int_equal(evm_handle(loop, "", NULL, NULL), 0);	      /* misc: nobody */
	assert_int_equal(evm_handle(loop, "late", handler, "late"), 0);
	assert_int_equal(evm_handle(loop, "never-registered", NULL, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(evm_proc_signal(p[i], SIGTERM), 0);
	run_exits(loop, p, 4);
	assert_int_equal(lg.n, 3);
	assert_true(logged("h:jobs/:jobs/nightly/x"));
	assert_true(logged("h2:db:db"));
	assert_true(logged("h:late:late"));
	assert_int_equal(evm_handle(NULL, "x", handler, NULL), -EINVAL);
	assert_int_equal(evm_handle(loop, NULL, handler, NULL), -EINVAL);
}

static struct evm_loop *self_loop;

/* removes itself and registers the default from inside its own dispatch */
static void handler_rewires(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	handler(p, e, data);
	assert_int_equal(evm_handle(self_loop, "svc/", NULL, NULL), 0);
	assert_int_equal(evm_handle(self_loop, "", handler, "default"), 0);
	/* the name must stay valid for the rest of this dispatch */
	assert_string_equal(evm_proc_handler(p), "svc/a");
}

static void test_change_handlers_in_handler(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	self_loop = loop;
	assert_int_equal(evm_handle(loop, "svc/", handler_rewires, "svc/"), 0);
	struct evm_proc *p = spawn_named(loop, "svc/a", "0");
	run_exits(loop, &p, 1);
	p = spawn_named(loop, "svc/b", "0");
	run_exits(loop, &p, 1);
	assert_int_equal(lg.n, 2);
	assert_string_equal(lg.what[0], "h:svc/:svc/a");
	assert_string_equal(lg.what[1], "h:default:svc/b");
}

static void on_exit_log(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)e;
	(void)data;
	logf_("cb:%s%s", "", evm_proc_handler(p));
}

static void sub_log(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	static const char *const types[] = {"SPAWN", "EXIT", "ORPHAN", "WARNING", "SERVICE"};
	int t = __builtin_ctz((unsigned)ev->type);
	char tag[32];
	snprintf(tag, sizeof(tag), "ev%s:%s", (const char *)data, types[t]);
	logf_("%s:%s", tag, ev->name);
}

/* The per-process callback, then the handler, then subscribers in subscription order. */
static void test_dispatch_order(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_subscribe(loop, EVM_EV_ALL, sub_log, "1", NULL), 0);
	assert_int_equal(evm_subscribe(loop, EVM_EV_EXIT, sub_log, "2", NULL), 0);
	assert_int_equal(evm_subscribe(loop, EVM_EV_SPAWN, sub_log, "3", NULL), 0);
	assert_int_equal(evm_handle(loop, "n", handler, "n"), 0);
	struct evm_spawn_opts o = {.handler = "n", .on_exit = on_exit_log};
	struct evm_proc *p = t_spawn_opts(loop, HARGV("exit", "0"), &o);
	run_exits(loop, &p, 1);
	static const char *const want[] = {"ev1:SPAWN:n", "ev3:SPAWN:n", "cb:n",
					   "h:n:n",	  "ev1:EXIT:n",	 "ev2:EXIT:n"};
	assert_int_equal(lg.n, 6);
	for (int i = 0; i < 6; i++)
		assert_string_equal(lg.what[i], want[i]);
}

static struct evm_sub *subs[3];

static void sub_unsub(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	int i = (int)(intptr_t)data;
	char tag[16];
	snprintf(tag, sizeof(tag), "s%d", i);
	sub_log(loop, ev, tag);
	if (i == 0 && ev->type == EVM_EV_EXIT) {
		evm_unsubscribe(subs[0]); /* itself */
		evm_unsubscribe(subs[2]); /* one later in the list: not called for this event */
		evm_unsubscribe(subs[2]); /* twice: harmless */
		/* a new one joins; it sees events from now on */
		assert_int_equal(evm_subscribe(loop, EVM_EV_EXIT, sub_log, "new", NULL), 0);
	}
}

static void test_unsubscribe_during_dispatch(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	for (int i = 0; i < 3; i++)
		assert_int_equal(evm_subscribe(loop, EVM_EV_EXIT, sub_unsub, (void *)(intptr_t)i,
					       &subs[i]),
				 0);
	struct evm_proc *p = spawn_named(loop, "a", "0");
	run_exits(loop, &p, 1);
	assert_true(logged("evs0:EXIT:a"));
	assert_true(logged("evs1:EXIT:a"));
	assert_false(logged("evs2:EXIT:a"));
	int first = lg.n;
	p = spawn_named(loop, "b", "0");
	run_exits(loop, &p, 1);
	assert_false(logged("evs0:EXIT:b"));
	assert_true(logged("evs1:EXIT:b"));
	assert_false(logged("evs2:EXIT:b"));
	assert_true(logged("evnew:EXIT:b"));
	assert_int_equal(lg.n - first, 2);
	/* outside any dispatch: freed at once */
	evm_unsubscribe(subs[1]);
	evm_unsubscribe(NULL);
	p = spawn_named(loop, "c", "0");
	run_exits(loop, &p, 1);
	assert_false(logged("evs1:EXIT:c"));
	assert_true(logged("evnew:EXIT:c"));
}

static void test_subscribe_args(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_subscribe(loop, 0, sub_log, NULL, NULL), -EINVAL);
	assert_int_equal(evm_subscribe(loop, 1u << 20, sub_log, NULL, NULL), -EINVAL);
	assert_int_equal(evm_subscribe(loop, EVM_EV_EXIT, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(evm_subscribe(NULL, EVM_EV_EXIT, sub_log, NULL, NULL), -EINVAL);
}

struct evrec {
	int n;
	struct evm_event ev;
	struct evm_exit exit;
	char name[32], msg[256];
};

static void sub_keep(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct evrec *r = data;
	(void)loop;
	r->n++;
	r->ev = *ev;
	if (ev->exit)
		r->exit = *ev->exit;
	snprintf(r->name, sizeof(r->name), "%s", ev->name ? ev->name : "");
	snprintf(r->msg, sizeof(r->msg), "%s", ev->message ? ev->message : "");
}

static void test_event_fields(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evrec sp = {0}, ex = {0};
	assert_int_equal(evm_subscribe(loop, EVM_EV_SPAWN, sub_keep, &sp, NULL), 0);
	assert_int_equal(evm_subscribe(loop, EVM_EV_EXIT, sub_keep, &ex, NULL), 0);
	struct evm_proc *p = spawn_named(loop, "fields", "6");
	pid_t pid = evm_proc_pid(p);
	assert_int_equal(sp.n, 1);
	assert_int_equal(sp.ev.type, EVM_EV_SPAWN);
	assert_int_equal(sp.ev.pid, pid);
	assert_ptr_equal(sp.ev.proc, p);
	assert_string_equal(sp.name, "fields");
	assert_null(sp.ev.exit);
	assert_true(sp.ev.time.tv_sec > 0);
	RUN_UNTIL(loop, ex.n == 1, 10000);
	assert_int_equal(ex.ev.type, EVM_EV_EXIT);
	assert_int_equal(ex.ev.pid, pid);
	assert_ptr_equal(ex.ev.proc, p);
	assert_string_equal(ex.name, "fields");
	assert_int_equal(ex.exit.code, 6);
	assert_int_equal(ex.exit.pid, pid);
	assert_int_equal(ex.ev.error, 0);
	assert_true(ex.ev.time.tv_sec > 0);
	evm_proc_unref(p);
}

/* A WARNING: the spawn helper dies; the loop says so and starts another when needed. */
static void test_warning_event(void **state)
{
	(void)state;
	t_set_mode(&t_modes[1]); /* helper */
	struct evm_loop *loop;
	assert_int_equal(evm_loop_new(&loop, NULL), 0);
	t_clear_mode();
	struct evrec w = {0};
	assert_int_equal(evm_subscribe(loop, EVM_EV_WARNING, sub_keep, &w, NULL), 0);
	struct evm_proc *p = t_spawn(loop, HARGV("pause"), NULL);
	/* the helper is our other child */
	char path[64], buf[256] = "";
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[k > 0 ? k : 0] = 0;
	pid_t helper = 0;
	for (char *s = strtok(buf, " \n"); s; s = strtok(NULL, " \n"))
		if (atoi(s) != evm_proc_pid(p))
			helper = atoi(s);
	assert_true(helper > 0);
	assert_int_equal(kill(helper, SIGKILL), 0);
	RUN_UNTIL(loop, w.n == 1, 10000);
	assert_int_equal(w.ev.type, EVM_EV_WARNING);
	assert_int_equal(w.ev.error, -ECHILD);
	assert_non_null(strstr(w.msg, "spawn helper"));
	assert_int_equal(w.ev.pid, 0);
	assert_null(w.ev.proc);
	/* the next spawn starts a new helper */
	struct t_exit x = {0};
	struct evm_proc *q = t_spawn(loop, HARGV("exit", "2"), &x);
	RUN_UNTIL(loop, x.n == 1, 10000);
	assert_int_equal(x.rec.code, 2);
	evm_proc_unref(q);
	evm_proc_unref(p);
	evm_loop_free(loop);
	assert_int_equal(t_count_children(), 0);
}

/* An exit routed to a name nobody registered: one WARNING per name, not per exit. */
static void sub_log_warning(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)loop;
	(void)data;
	assert_int_equal(ev->type, EVM_EV_WARNING);
	assert_int_equal(ev->error, -ENOENT);
	assert_non_null(ev->proc);
	assert_int_equal(ev->pid, evm_proc_pid(ev->proc));
	assert_non_null(strstr(ev->message, ev->name));
	logf_("w:%s:%s", "unrouted", ev->name);
}

static void test_unrouted_warning(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	assert_int_equal(evm_subscribe(loop, EVM_EV_WARNING, sub_log_warning, NULL, NULL), 0);
	assert_int_equal(evm_handle(loop, "db", handler, "db"), 0);
	struct evm_proc *p[] = {spawn_named(loop, "typo", "0"), spawn_named(loop, "typo", "1"),
				spawn_named(loop, "db", "0"), spawn_named(loop, "other", "0")};
	run_exits(loop, p, 4);
	assert_true(logged("h:db:db"));
	assert_true(logged("w:unrouted:typo"));
	assert_true(logged("w:unrouted:other"));
	assert_int_equal(lg.n, 3); /* typo once, though two of its exits were dropped */
	/* still once per name in later iterations; a default handler routes everything */
	struct evm_proc *q = spawn_named(loop, "typo", "0");
	run_exits(loop, &q, 1);
	assert_int_equal(lg.n, 3);
	assert_int_equal(evm_handle(loop, "", handler, "default"), 0);
	q = spawn_named(loop, "third", "0");
	run_exits(loop, &q, 1);
	assert_true(logged("h:default:third"));
	assert_int_equal(lg.n, 4);
}

/* The handler name lives until the end of the iteration that reported the exit. */
static char seen_name[32];

static void remember_name(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)e;
	(void)data;
	snprintf(seen_name, sizeof(seen_name), "%s", evm_proc_handler(p));
}

static void test_handler_name_lifetime(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_opts o = {.handler = "tmp/one", .on_exit = remember_name};
	char name[16] = "tmp/one";
	o.handler = name;
	struct evm_proc *p = t_spawn_opts(loop, HARGV("exit", "0"), &o);
	memset(name, 'x', sizeof(name) - 1); /* the name was copied */
	RUN_UNTIL(loop, evm_proc_exited(p), 10000);
	assert_string_equal(seen_name, "tmp/one");
	/* after that iteration the route is released; the proc no longer names it */
	assert_null(evm_proc_handler(p));
	evm_proc_unref(p);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_routing, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_replace_and_remove, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_change_handlers_in_handler, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_dispatch_order, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_unsubscribe_during_dispatch, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_args, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_event_fields, setup, t_teardown),
		cmocka_unit_test(test_warning_event),
		cmocka_unit_test_setup_teardown(test_unrouted_warning, setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_handler_name_lifetime, setup, t_teardown),
	};
	return cmocka_run_group_tests_name("mux", tests, NULL, NULL);
}
