/*
 * extrafds.c - extra fds for a child (Go's ExtraFiles): the write end of a
 * pipe becomes the child's fd 3, a "status channel" separate from its
 * stdout; the loop reads it with an I/O watcher until the child closes it.
 *
 *   ./extrafds        prints "fd 3 said: ready" and "child exited 0"
 */
#include <evmon.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static void on_status(struct evm_io *io, int fd, unsigned revents, void *data)
{
	char buf[256];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	(void)revents;
	(void)data;
	if (n > 0) {
		buf[n] = 0;
		printf("fd 3 said: %s", buf);
	} else {
		evm_io_free(io); /* EOF: the child closed its fd 3 (or exited) */
	}
}

static void on_exit_cb(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	(void)p;
	*(int *)data = e->code;
}

int main(void)
{
	struct evm_loop *loop;
	int p[2], code = -1;
	if (evm_loop_new(&loop, NULL) < 0 || pipe2(p, O_CLOEXEC) < 0)
		return 1;
	char *argv[] = {"sh", "-c", "echo ready >&3; exec 3>&-; sleep 0.1", NULL};
	struct evm_fd_map fds[] = {{.fd = p[1], .target = 3}};
	struct evm_spawn_opts o = {.argv = argv, .extra_fds = fds, .nextra_fds = 1,
				   .on_exit = on_exit_cb, .data = &code};
	struct evm_io *io;
	if (evm_spawn(loop, &o, NULL) < 0 || evm_io_add(loop, p[0], EVM_READ, on_status, NULL, &io) < 0)
		return 1;
	close(p[1]); /* the child has its own copy */
	while (evm_loop_alive(loop))
		evm_loop_run_once(loop, -1); /* fd 3's line was read by the exit's iteration at the latest */
	printf("child exited %d\n", code);
	evm_loop_free(loop);
	close(p[0]);
	return 0;
}
