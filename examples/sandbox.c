/*
 * sandbox.c - a child in its own namespaces (Go's SysProcAttr Cloneflags,
 * UidMappings, Hostname): new user, PID and UTS namespaces, our uid mapped
 * to root inside, a host name of its own. Works unprivileged where the
 * kernel allows user namespaces.
 *
 *   ./sandbox         prints "inside: pid 1, uid 0, host sandbox" and
 *                     "outside: pid N exited 0"; exits 2 with the reason when
 *                     the kernel refuses the namespaces
 */
#include <evmon.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_exit_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)data;
	printf("outside: pid %d exited %d\n", (int)evm_proc_pid(p), evm_exit_shell_code(e));
}

int main(void)
{
	struct evm_loop *loop;
	if (evm_loop_new(&loop, NULL) < 0)
		return 1;
	struct evm_id_map uid = {.inside = 0, .outside = getuid(), .count = 1};
	struct evm_id_map gid = {.inside = 0, .outside = getgid(), .count = 1};
	char *argv[] = {"sh", "-c", "echo \"inside: pid $$, uid $(id -u), host $(hostname)\"", NULL};
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {.argv = argv, .on_exit = on_exit_cb,
				   .namespaces = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWUTS,
				   .uid_map = &uid, .nuid_map = 1, .gid_map = &gid, .ngid_map = 1,
				   .hostname = "sandbox", .error = &err};
	fflush(stdout); /* the child writes to the same stdout: keep the lines in order */
	int r = evm_spawn(loop, &o, NULL);
	if (r < 0) {
		fprintf(stderr, "sandbox: %s: %s\n", evm_spawn_stage_name(err.stage), strerror(-r));
		return 2;
	}
	while (evm_loop_alive(loop))
		evm_loop_run_once(loop, -1);
	evm_loop_free(loop);
	return 0;
}
