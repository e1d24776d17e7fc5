/*
 * test_ns.c - namespaces and a controlling terminal at spawn
 * (evm_spawn_opts.namespaces, uid_map/gid_map, hostname, setns_fds,
 * EVM_SPAWN_SETCTTY): pid 1 in a new PID namespace, a host name in a new UTS
 * namespace, root mapped in a new user namespace, joining a namespace by fd,
 * a pty as the controlling terminal, the errors with their stage; in every
 * spawn mode and through the clone() fallback. A kernel that refuses a
 * namespace skips the test and says why.
 */
#include "evmtest.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Spawn argv with o, stdout on a pipe; its output into buf. Skips when the kernel refuses. */
static void ns_output(struct evm_loop *loop, char *const *argv, struct evm_spawn_opts *o,
		      char *buf, size_t cap, struct evm_exit *rec)
{
	struct evm_spawn_error err = {0};
	struct t_exit x = {0};
	struct evm_spawn_opts s = *o;
	s.argv = argv;
	s.stdio[1].mode = EVM_STDIO_PIPE;
	s.on_exit = t_on_exit;
	s.data = &x;
	s.pdeath_signal = SIGKILL;
	s.error = &err;
	struct evm_proc *p = NULL;
	int r = evm_spawn(loop, &s, &p);
	if (r < 0 && err.stage == EVM_STAGE_NAMESPACE)
		T_SKIP("the kernel refused namespaces 0x%x: %s", o->namespaces, strerror(-r));
	if (r < 0)
		fail_msg("evm_spawn: %s (stage %s)", strerror(-r), evm_spawn_stage_name(err.stage));
	int fd = evm_proc_stdio_fd(p, 1);
	assert_true(fd >= 0);
	t_read_all(fd, buf, cap, 10000);
	close(fd);
	RUN_UNTIL(loop, x.n == 1, 10000);
	if (rec)
		*rec = x.rec;
	evm_proc_unref(p);
}

static void test_ns_pid(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_opts o = {.namespaces = CLONE_NEWPID};
	char buf[256];
	struct evm_exit e;
	ns_output(loop, HARGV("pgid"), &o, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_true(e.pid > 1); /* ours, not its own */
	int pid = -1, ppid = -1;
	assert_int_equal(sscanf(buf, "pid %d ppid %d", &pid, &ppid), 2);
	assert_int_equal(pid, 1);
	assert_int_equal(ppid, 0); /* its parent is outside the namespace */
}

static void test_ns_uts_hostname(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	char before[256], after[256], buf[256];
	assert_int_equal(gethostname(before, sizeof(before)), 0);
	struct evm_spawn_opts o = {.namespaces = CLONE_NEWUTS, .hostname = "evm-ns-test"};
	struct evm_exit e;
	ns_output(loop, HARGV("hostname"), &o, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_string_equal(buf, "evm-ns-test\n");
	assert_int_equal(gethostname(after, sizeof(after)), 0);
	assert_string_equal(before, after);
}

/* the first line of a /proc/self/{uid,gid}_map the child printed, at line */
static void map_line(const char *buf, int line, unsigned *in, unsigned *out, unsigned *n)
{
	for (int i = 0; i < line; i++) {
		buf = strchr(buf, '\n');
		assert_non_null(buf);
		buf++;
	}
	assert_int_equal(sscanf(buf, "%u %u %u", in, out, n), 3);
}

/*
 * Root inside is our uid (our kernel uid is what the child has: it must be
 * mapped, or the child is 65534); real root maps more ids besides. The maps
 * the child sees are ours, not the initial namespace's "0 0 4294967295", and
 * setgroups is denied by default.
 */
static void test_ns_user_maps_root(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_id_map um[] = {{0, getuid(), 1}, {1, 100000, 1000}};
	struct evm_id_map gm[] = {{0, getgid(), 1}, {1, 100000, 1000}};
	size_t n = t_real_root() ? 2 : 1;
	struct evm_spawn_opts o = {.namespaces = CLONE_NEWUSER, .uid_map = um, .nuid_map = n,
				   .gid_map = gm, .ngid_map = n};
	char buf[512];
	struct evm_exit e;
	char *argv[] = {"/bin/sh", "-c",
			"id -u; id -g; cat /proc/self/setgroups /proc/self/uid_map /proc/self/gid_map",
			NULL};
	ns_output(loop, argv, &o, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_memory_equal(buf, "0\n0\ndeny\n", 9);
	for (size_t i = 0; i < 2 * n; i++) {
		const struct evm_id_map *m = i < n ? &um[i] : &gm[i - n];
		unsigned in, out, count;
		map_line(buf, 3 + (int)i, &in, &out, &count);
		assert_int_equal(in, m->inside);
		assert_int_equal(out, m->outside);
		assert_int_equal(count, m->count);
	}
}

/* All at once: a user namespace owning new PID and UTS ones (what an unprivileged user can do). */
static void test_ns_user_pid_uts(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_id_map um = {0, getuid(), 1}, gm = {0, getgid(), 1};
	struct evm_spawn_opts o = {.namespaces = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWUTS,
				   .uid_map = &um, .nuid_map = 1, .gid_map = &gm, .ngid_map = 1,
				   .hostname = "inner"};
	char buf[256];
	struct evm_exit e;
	ns_output(loop, HARGV("pgid", "hostname", "ids"), &o, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_memory_equal(buf, "pid 1 ppid 0", 12);
	assert_non_null(strstr(buf, "\ninner\nuid 0 gid 0 "));
}

/* A map the kernel refuses (overlapping ranges): stage idmap, the child gone. */
static void test_ns_idmap_error(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_id_map um[] = {{0, getuid(), 1}, {0, getuid(), 1}};
	struct evm_spawn_error err = {0};
	int out[2];
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	struct evm_spawn_opts o = {.argv = HARGV("print", "ran"), .namespaces = CLONE_NEWUSER,
				   .uid_map = um, .nuid_map = 2, .error = &err};
	o.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, out[1]};
	int r = evm_spawn(loop, &o, NULL);
	close(out[1]);
	if (r < 0 && err.stage == EVM_STAGE_NAMESPACE) {
		close(out[0]);
		T_SKIP("the kernel refused a user namespace: %s", strerror(-r));
	}
	assert_int_equal(r, -EINVAL);
	assert_int_equal(err.stage, EVM_STAGE_IDMAP);
	assert_string_equal(evm_spawn_stage_name(err.stage), "idmap");
	assert_int_equal(evm_loop_alive(loop), 0);
	/* the child never got past its wait for the maps: it ran nothing */
	char buf[16];
	assert_int_equal(t_read_all(out[0], buf, sizeof(buf), 10000), 0);
	close(out[0]);
}

/* An exec error in a user namespace still comes back with its stage. */
static void test_ns_user_exec_error(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_id_map um = {0, getuid(), 1};
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = (char *[]){"/nonexistent/x", NULL},
				   .namespaces = CLONE_NEWUSER, .uid_map = &um, .nuid_map = 1,
				   .error = &err};
	int r = evm_spawn(loop, &o, NULL);
	if (r < 0 && err.stage == EVM_STAGE_NAMESPACE)
		T_SKIP("the kernel refused a user namespace: %s", strerror(-r));
	assert_int_equal(r, -ENOENT);
	assert_int_equal(err.stage, EVM_STAGE_EXEC);
}

/* Join another child's UTS namespace by fd. */
static void test_ns_setns(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts a = {.argv = HARGV("pause"), .namespaces = CLONE_NEWUTS,
				   .hostname = "joined", .pdeath_signal = SIGKILL, .error = &err};
	struct evm_proc *pa = NULL;
	int r = evm_spawn(loop, &a, &pa);
	if (r < 0 && err.stage == EVM_STAGE_NAMESPACE)
		T_SKIP("the kernel refused a UTS namespace: %s", strerror(-r));
	assert_int_equal(r, 0);
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/ns/uts", (int)evm_proc_pid(pa));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct evm_spawn_opts b = {.setns_fds = &fd, .nsetns_fds = 1};
	struct evm_exit e;
	ns_output(loop, HARGV("hostname"), &b, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_string_equal(buf, "joined\n");
	/* and with a host name of its own there, which the first child then sees */
	b.hostname = "renamed";
	ns_output(loop, HARGV("exit", "0"), &b, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	b.hostname = NULL;
	ns_output(loop, HARGV("hostname"), &b, buf, sizeof(buf), &e);
	assert_string_equal(buf, "renamed\n");
	close(fd);
	evm_proc_signal(pa, SIGKILL);
	RUN_UNTIL(loop, evm_proc_exited(pa), 10000);
	evm_proc_unref(pa);
}

static void test_ns_args(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	struct evm_id_map um = {0, 0, 1}, zero = {0, 0, 0};
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0")};
	o.namespaces = CLONE_VM;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	o.namespaces = 0;
	o.uid_map = &um;
	o.nuid_map = 1;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL); /* a map without CLONE_NEWUSER */
	o.namespaces = CLONE_NEWUSER;
	o.uid_map = &zero;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL); /* count 0 */
	o.uid_map = NULL;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL); /* no array */
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .hostname = "x"};
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL); /* never the host's own name */
	int user = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
	int bad = 1000;
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .nsetns_fds = 1};
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL); /* no array */
	o.setns_fds = &bad;
	assert_int_equal(evm_spawn(loop, &o, NULL), -EBADF);
	o.setns_fds = &user;
	if (user >= 0)
		assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	o.setns_fds = (int[]){1}; /* not a namespace */
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL);
	if (user >= 0)
		close(user);
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .flags = EVM_SPAWN_SETCTTY,
				    .ctty = 7};
	assert_int_equal(evm_spawn(loop, &o, NULL), -EINVAL); /* no fd 7 in the child */
	assert_int_equal(evm_loop_alive(loop), 0);
}

/* a pty's terminal end (not our controlling terminal), or -1 with the reason in why */
static int open_pty(int *master, char *why, size_t cap)
{
	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0 || grantpt(*master) < 0 || unlockpt(*master) < 0) {
		snprintf(why, cap, "posix_openpt: %s", strerror(errno));
		if (*master >= 0)
			close(*master);
		return -1;
	}
	int fd = open(ptsname(*master), O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, cap, "open %s: %s", ptsname(*master), strerror(errno));
		close(*master);
	}
	return fd;
}

static void test_ctty(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int master;
	char why[256], buf[256];
	int tty = open_pty(&master, why, sizeof(why));
	if (tty < 0)
		T_SKIP("no pty: %s", why);
	struct evm_spawn_opts o = {.flags = EVM_SPAWN_SETSID};
	o.stdio[0] = (struct evm_stdio){EVM_STDIO_FD, tty};
	struct evm_exit e;
	/* a session of its own has no terminal until it asks for one */
	ns_output(loop, HARGV("ctty"), &o, buf, sizeof(buf), &e);
	assert_string_equal(buf, "ctty no\n");
	o.flags = EVM_SPAWN_SETCTTY; /* implies SETSID */
	o.ctty = 0;
	ns_output(loop, HARGV("ctty", "pgid"), &o, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_memory_equal(buf, "ctty yes\n", 9);
	int pid, ppid, pgid, sid;
	assert_int_equal(sscanf(buf + 9, "pid %d ppid %d pgid %d sid %d", &pid, &ppid, &pgid, &sid), 4);
	assert_int_equal(sid, pid);
	/* as an extra fd too */
	struct evm_fd_map m = {tty, 5};
	o.stdio[0].mode = EVM_STDIO_NULL;
	o.extra_fds = &m;
	o.nextra_fds = 1;
	o.ctty = 5;
	ns_output(loop, (char *[]){"/bin/sh", "-c", "exec 0<&5; exec " "\"$0\" ctty", t_helper, NULL},
		  &o, buf, sizeof(buf), &e);
	assert_string_equal(buf, "ctty yes\n");
	/* not a terminal: stage ctty */
	struct evm_spawn_error err = {0};
	o = (struct evm_spawn_opts){.argv = HARGV("exit", "0"), .flags = EVM_SPAWN_SETCTTY,
				    .ctty = 0, .error = &err};
	o.stdio[0].mode = EVM_STDIO_NULL;
	assert_int_equal(evm_spawn(loop, &o, NULL), -ENOTTY);
	assert_int_equal(err.stage, EVM_STAGE_CTTY);
	close(tty);
	close(master);
}

/* The clone() path (no clone3: before Linux 5.5, or under valgrind) does the same. */
static void test_ns_clone_fallback(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	loop->no_clone3 = true;
	struct evm_spawn_opts o = {.namespaces = CLONE_NEWPID | CLONE_NEWUTS, .hostname = "old"};
	char buf[256];
	struct evm_exit e;
	ns_output(loop, HARGV("pgid", "hostname"), &o, buf, sizeof(buf), &e);
	assert_int_equal(e.code, 0);
	assert_memory_equal(buf, "pid 1 ppid 0", 12);
	assert_non_null(strstr(buf, "\nold\n"));
}

/*
 * Before any clone3 worked, its EINVAL may be about the request (a namespace
 * or CLONE_INTO_CGROUP the kernel lacks), not about clone3: such a spawn goes
 * through clone() and clone3 stays in use; only a plain request's EINVAL
 * turns it off. A seccomp filter makes every clone3 fail with EINVAL here, in
 * a child process so the filter dies with it.
 */
static void count_clean_exit(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)p;
	*(int *)data += e->code == 0 && e->signal == 0;
}

static int einval_child(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		return 77;
	struct evm_loop *loop;
	if (evm_loop_new(&loop, NULL) < 0)
		return 10;
	loop->spawn_mode = EVM__SPAWN_DIRECT; /* the helper would be under the filter too */
	int exits = 0;
	struct evm_spawn_opts o = {.argv = HARGV("exit", "0"), .namespaces = CLONE_NEWUTS,
				   .hostname = "x", .pdeath_signal = SIGKILL,
				   .on_exit = count_clean_exit, .data = &exits};
	struct evm_spawn_error err = {0};
	o.error = &err;
	int r = evm_spawn(loop, &o, NULL);
	if (r < 0)
		return err.stage == EVM_STAGE_NAMESPACE ? 77 : 11;
	if (loop->no_clone3)
		return 12; /* the namespace request's EINVAL turned clone3 off */
	o.namespaces = 0;
	o.hostname = NULL;
	if (evm_spawn(loop, &o, NULL) < 0)
		return 13;
	if (!loop->no_clone3)
		return 14; /* a plain request's EINVAL is the kernel's: off for good */
	for (int i = 0; i < 100 && evm_loop_alive(loop); i++)
		evm_loop_run_once(loop, 100);
	if (exits != 2)
		return 15;
	evm_loop_free(loop);
	return 0;
}

static void test_ns_clone3_einval_is_the_requests(void **state)
{
	(void)state;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(einval_child());
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77)
		T_SKIP("no seccomp filter or no UTS namespace here");
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* A service copies the namespace options (its host name here), freed by the caller after evm_service_new. */
static void test_ns_service_copies(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int out[2];
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	char *name = strdup("svc-host");
	struct evm_service_opts so = {.name = "ns", .restart = EVM_RESTART_NEVER};
	so.spawn.argv = HARGV("hostname");
	so.spawn.namespaces = CLONE_NEWUTS;
	so.spawn.hostname = name;
	so.spawn.pdeath_signal = SIGKILL;
	so.spawn.stdio[1] = (struct evm_stdio){EVM_STDIO_FD, out[1]};
	struct evm_service *svc;
	assert_int_equal(evm_service_new(loop, &so, &svc), 0);
	memset(name, 'z', strlen(name));
	free(name);
	for (int run = 0; run < 2; run++) {
		assert_int_equal(evm_service_start(svc), 0);
		struct evm_service_info info;
		RUN_UNTIL(loop, (evm_service_info(svc, &info), info.state != EVM_STATE_STARTING &&
				 info.state != EVM_STATE_RUNNING), 10000);
		if (info.last_error.stage == EVM_STAGE_NAMESPACE) {
			evm_service_remove(svc);
			RUN_UNTIL(loop, evm_loop_alive(loop) == 0, 10000);
			close(out[0]);
			close(out[1]);
			T_SKIP("the kernel refused a UTS namespace: %s", strerror(info.last_error.error));
		}
		assert_int_equal(info.state, EVM_STATE_EXITED);
	}
	evm_service_remove(svc);
	RUN_UNTIL(loop, evm_loop_alive(loop) == 0, 10000);
	close(out[1]);
	char buf[64];
	t_read_all(out[0], buf, sizeof(buf), 10000);
	assert_string_equal(buf, "svc-host\nsvc-host\n");
	close(out[0]);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ns_pid, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_uts_hostname, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_user_maps_root, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_user_pid_uts, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_idmap_error, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_user_exec_error, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_setns, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_args, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ctty, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_ns_clone_fallback, t_setup, t_teardown),
		cmocka_unit_test(test_ns_clone3_einval_is_the_requests),
		cmocka_unit_test_setup_teardown(test_ns_service_copies, t_setup, t_teardown),
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(t_modes) / sizeof(t_modes[0]); i++) {
		print_message("== mode %s\n", t_modes[i].name);
		t_set_mode(&t_modes[i]);
		failed += cmocka_run_group_tests_name("ns", tests, NULL, NULL);
	}
	t_clear_mode();
	return failed ? 1 : 0;
}
