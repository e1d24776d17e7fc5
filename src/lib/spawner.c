/*
 * spawner.c - the spawn helper: a small process that clones our children
 * once our own fd table is large, for the spawns whose child could not
 * share it and copy only a few fds (see spawnclone.c for why), or when
 * EVM_SPAWN_MODE is "helper".
 *
 * It is cloned from the loop thread with CLONE_VM but without CLONE_FILES:
 * it shares our memory (so it costs no copy of our heap, and reads a spawn
 * request where we built it) but has its own fd table, which it shrinks to
 * its socket. Then it loops: receive a request, clone3(CLONE_VM|CLONE_VFORK|
 * CLONE_PARENT|CLONE_PIDFD) the child (the child's parent is the loop's
 * process, its fd table a copy of the helper's tiny one), reply with the pid
 * and the pidfd. The loop thread waits for the reply, so the request on its
 * stack stays put, and the child writes an exec error straight into it.
 *
 * Sharing our memory, the helper must not touch thread-local storage (errno,
 * the stack protector's canary): the thread that cloned it may exit and free
 * it. So it makes raw system calls only (x86_64 and aarch64 here; elsewhere
 * there is no helper and spawns stay direct), has no stack protector, and
 * dies with that thread (PR_SET_PDEATHSIG), to be restarted on next use.
 *
 * The pidfd must come from the clone itself: a pidfd_open of ours after the
 * reply could come too late, when the child has already exited and been
 * reaped by someone else (SIGCHLD ignored, another library's waitpid(-1)),
 * and its pid is free for reuse. EOF on the socket (the loop is gone) ends
 * the helper.
 */
#include "internal.h"
#include "rawsys.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define HELPER_STACK (64u << 10)
#define CHILD_STACK (256u << 10)

struct evm__spawner {
	pid_t pid;
	int pidfd;
	int sock;	/* our end */
	int peer;	/* its end: read by the helper, so never rewritten once it runs */
	bool peer_open; /* still open in our fd table */
	char *hstack;	/* the helper's stack */
	char *cstack;	/* the stack its children run on until exec */
	unsigned close_to; /* without close_range, the helper closes fds one by one up to here */
};

#if defined(__x86_64__) || defined(__aarch64__)
#define HAVE_HELPER 1

#if defined(__has_attribute)
#if __has_attribute(no_stack_protector)
#define NO_SSP __attribute__((no_stack_protector))
#endif
#endif
#ifndef NO_SSP
#define NO_SSP
#endif

/* A system call that never touches errno: -errno on failure (rawsys.h). */
EVM_CHILD_CODE NO_SSP static long raw(long n, long a, long b, long c, long d, long e)
{
	return evm__raw(n, a, b, c, d, e, 0);
}

/* ------------------------------------------------------------- the helper */

EVM_CHILD_CODE NO_SSP static void helper_reply(int s, int32_t reply, int pidfd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {.iov_base = &reply, .iov_len = sizeof(reply)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (reply > 0 && pidfd >= 0) {
		for (size_t i = 0; i < sizeof(cm.buf); i++)
			cm.buf[i] = 0;
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		*(int *)CMSG_DATA(c) = pidfd;
	}
	while (raw(SYS_sendmsg, s, (long)&mh, MSG_NOSIGNAL, 0, 0) == -EINTR)
		;
}

EVM_CHILD_CODE NO_SSP static int helper_main(void *arg)
{
	struct evm__spawner *sp = arg;
	static const unsigned long zero_action[4]; /* SIG_DFL, no flags, empty mask */
	unsigned long all = ~0UL;
	raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0);
	/* our children inherit these: all default, so they need no resetting */
	for (long sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			raw(SYS_rt_sigaction, sig, (long)zero_action, 0, 8, 0);
	raw(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	int s = 3;
	if (sp->peer != s && raw(SYS_dup3, sp->peer, s, O_CLOEXEC, 0, 0) < 0)
		raw(SYS_exit_group, 1, 0, 0, 0, 0);
	/* every other fd of ours it got a copy of: before Linux 5.9 (or under a filter) one by one */
	if (raw(SYS_close_range, 0, 2, 0, 0, 0) < 0)
		for (long fd = 0; fd < 3; fd++)
			raw(SYS_close, fd, 0, 0, 0, 0);
	if (raw(SYS_close_range, 4, ~0U, 0, 0, 0) < 0)
		for (long fd = 4; fd < (long)sp->close_to; fd++)
			raw(SYS_close, fd, 0, 0, 0, 0);

	for (;;) {
		struct evm__spawn_req *req;
		int fds[5];
		union {
			char buf[CMSG_SPACE(sizeof(fds))];
			struct cmsghdr align;
		} cm;
		struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
				    .msg_controllen = sizeof(cm.buf)};
		long n = raw(SYS_recvmsg, s, (long)&mh, MSG_CMSG_CLOEXEC, 0, 0);
		if (n == -EINTR)
			continue;
		if (n != (long)sizeof(req))
			raw(SYS_exit_group, 0, 0, 0, 0, 0); /* EOF: the loop is gone */
		int nfds = 0;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < nfds && i < 5; i++)
				fds[i] = ((int *)CMSG_DATA(c))[i];
		}
		/* in the request, fds >= 0 stand for the attached ones, in order */
		int k = 0;
		for (int i = 0; i < 3; i++)
			if (req->fds[i] >= 0)
				req->fds[i] = k < nfds ? fds[k++] : -2;
		if (req->cwd_fd >= 0)
			req->cwd_fd = k < nfds ? fds[k++] : -1;
		bool cg = req->cgroup_fd >= 0;
		if (cg)
			req->cgroup_fd = k < nfds ? fds[k++] : -1;
		bool into = cg && !req->cgroup_in_child;
		int pidfd = -1;
		struct clone_args a = {
			.flags = CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_PIDFD |
				 CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | req->ns |
				 (into ? CLONE_INTO_CGROUP : 0),
			.cgroup = into ? (uint64_t)req->cgroup_fd : 0,
			.pidfd = (uint64_t)(uintptr_t)&pidfd,
			.parent_tid = (uint64_t)(uintptr_t)&req->child_pid,
			.child_tid = (uint64_t)(uintptr_t)&req->in_mm,
			.exit_signal = 0, /* with CLONE_PARENT: the helper's, which is none */
			.stack = (uint64_t)(uintptr_t)sp->cstack,
			.stack_size = CHILD_STACK,
		};
		/* never start a child outside the cgroup it was meant for */
		int32_t reply = cg && req->cgroup_fd < 0 ? -EBADF
							 : evm__clone3(&a, evm__spawn_child, req);
		for (int i = 0; i < nfds; i++)
			raw(SYS_close, fds[i], 0, 0, 0, 0);
		helper_reply(s, reply, pidfd);
		if (pidfd >= 0)
			raw(SYS_close, pidfd, 0, 0, 0, 0);
	}
	return 0;
}
#endif /* x86_64 || aarch64 */

/* ------------------------------------------------------------ our side */

static void on_helper_exit(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	struct evm__spawner *sp = loop->spawner;
	(void)w;
	(void)events;
	/*
	 * The event may be a stale one: this helper was found dead and
	 * replaced earlier in the iteration. Only a readable pidfd of the
	 * current helper means it died.
	 */
	struct pollfd pfd = {.fd = sp ? sp->pidfd : -1, .events = POLLIN};
	if (!sp || poll(&pfd, 1, 0) <= 0)
		return;
	evm__warn(loop, -ECHILD, "spawn helper (pid %d) exited; it is restarted when needed",
		  (int)sp->pid);
	evm__spawner_stop(loop);
}

static void spawner_free(struct evm__spawner *sp)
{
	if (sp->hstack && sp->hstack != MAP_FAILED)
		munmap(sp->hstack, HELPER_STACK);
	if (sp->cstack && sp->cstack != MAP_FAILED)
		munmap(sp->cstack, CHILD_STACK);
	if (sp->sock >= 0)
		close(sp->sock);
	if (sp->peer_open)
		close(sp->peer);
	free(sp);
}

int evm__spawner_start(struct evm_loop *loop)
{
#ifndef HAVE_HELPER
	(void)loop;
	return -ENOSYS;
#else
	if (loop->spawner)
		return 0;
	if (loop->no_helper)
		return -ENOSYS;
	struct evm__spawner *sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	loop->spawner_w.cb = on_helper_exit;
	sp->sock = sp->peer = sp->pidfd = -1;
	int r, sv[2];
	sp->hstack = mmap(NULL, HELPER_STACK, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	sp->cstack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (sp->hstack == MAP_FAILED || sp->cstack == MAP_FAILED)
		goto fail_errno;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail_errno;
	/*
	 * Above 0-2, both ends: a program that closed its stdin before its
	 * first spawn would otherwise find the helper's end at the helper's
	 * fd 0, which every child inheriting stdin got.
	 */
	sp->sock = evm__above_stdio(sv[0]);
	sp->peer = evm__above_stdio(sv[1]);
	sp->peer_open = sp->peer >= 0;
	if (sp->sock < 0 || sp->peer < 0)
		goto fail_errno;
	/* every open fd is below FDSize (and, unless the limit was lowered since, the limit) */
	struct rlimit rl;
	sp->close_to = evm__fd_table_size();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > sp->close_to && rl.rlim_cur < (1U << 20))
		sp->close_to = (unsigned)rl.rlim_cur;
	if (sp->close_to == 0)
		sp->close_to = 1U << 20;
	/* no exit signal: our children inherit it via CLONE_PARENT until exec,
	 * and the helper's own exit is seen through its pidfd */
	sp->pid = clone(helper_main, sp->hstack + HELPER_STACK, CLONE_VM | CLONE_PIDFD, sp, &sp->pidfd);
	if (sp->pid < 0) {
		/* e.g. under valgrind, which refuses CLONE_VM without threads */
		loop->no_helper = true;
		goto fail_errno;
	}
	close(sp->peer); /* the helper has its own fd table, with its copy */
	sp->peer_open = false;
	if (sp->pidfd < 3) { /* above 0-2 too if there is room (the helper never sees it) */
		int up = fcntl(sp->pidfd, F_DUPFD_CLOEXEC, 3);
		if (up >= 0) {
			close(sp->pidfd);
			sp->pidfd = up;
		}
	}
	r = evm__epoll_add(loop, sp->pidfd, EPOLLIN, &loop->spawner_w);
	loop->spawner = sp;
	if (r < 0) {
		evm__spawner_stop(loop);
		return r;
	}
	return 0;

fail_errno:
	r = -errno;
	spawner_free(sp);
	return r;
#endif
}

void evm__spawner_stop(struct evm_loop *loop)
{
	struct evm__spawner *sp = loop->spawner;
	if (!sp)
		return;
	loop->spawner = NULL;
	close(sp->sock); /* EOF: the helper exits */
	sp->sock = -1;
	if (sp->pidfd >= 0) {
		siginfo_t si;
		evm__epoll_del(loop, sp->pidfd);
		/* it runs on our memory: wait for it before freeing its stacks */
		while (waitid(P_PIDFD, (id_t)sp->pidfd, &si, WEXITED | __WALL) < 0 && errno == EINTR)
			;
		close(sp->pidfd);
	}
	spawner_free(sp);
}

/*
 * The helper died (killed by someone) after it cloned the child, before it
 * replied. The child is ours (CLONE_PARENT) and unreaped (exit signal 0: no
 * waitpid(-1) takes it), so its pid is stable: take it over rather than spawn
 * the program a second time. Until it execs or exits it runs on the helper's
 * child stack, which evm__spawner_stop unmaps: wait for that first.
 */
static pid_t orphaned_child(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd)
{
	pid_t pid = req->child_pid;
	while (req->in_mm)
		syscall(SYS_futex, &req->in_mm, FUTEX_WAIT, 1, NULL, NULL, 0);
	*pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* -1 (EMFILE): watched without, as below */
	evm__spawner_stop(loop); /* restarted on next use */
	return pid; /* an exec error is in req->err, as usual */
}

/*
 * The fds travel with the request: req's stdio, cwd and cgroup fds become
 * indexes into fds ("one of the attached fds"), in that order. Inherit means
 * "our current fd i"; one we do not have open is closed in the child too.
 */
static int attach_fds(struct evm__spawn_req *req, int fds[5])
{
	int nfds = 0;
	for (int i = 0; i < 3; i++) {
		int fd = req->fds[i];
		if (fd == -1 && fcntl(i, F_GETFD) >= 0)
			fd = i;
		if (fd >= 0) {
			fds[nfds++] = fd;
			req->fds[i] = 0;
		} else {
			req->fds[i] = -2;
		}
	}
	if (req->cwd_fd >= 0) {
		fds[nfds++] = req->cwd_fd;
		req->cwd_fd = 0; /* attached, after the stdio ones */
	}
	if (req->cgroup_fd >= 0) {
		fds[nfds++] = req->cgroup_fd;
		req->cgroup_fd = 0; /* attached, last */
	}
	return nfds;
}

/* The request (a pointer: the helper shares our memory) with its fds. */
static ssize_t send_request(struct evm__spawner *sp, struct evm__spawn_req *req, const int *fds,
			    int nfds)
{
	union {
		char buf[CMSG_SPACE(5 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	memset(&cm, 0, sizeof(cm));
	struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	ssize_t n;
	while ((n = sendmsg(sp->sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return n;
}

/* The helper's reply: the pid or -errno, and the child's pidfd attached (*pidfd, or -1). */
static int32_t recv_reply(struct evm__spawner *sp, int *pidfd)
{
	int32_t reply = -ENOTCONN;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} rcm;
	struct iovec riov = {.iov_base = &reply, .iov_len = sizeof(reply)};
	struct msghdr rmh = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rcm.buf,
			     .msg_controllen = sizeof(rcm.buf)};
	ssize_t n;
	while ((n = recvmsg(sp->sock, &rmh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	/* no pidfd attached (MSG_CTRUNC: no fd was free for it): the caller copes */
	struct cmsghdr *rc = n > 0 ? CMSG_FIRSTHDR(&rmh) : NULL;
	if (rc && rc->cmsg_level == SOL_SOCKET && rc->cmsg_type == SCM_RIGHTS &&
	    rc->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(pidfd, CMSG_DATA(rc), sizeof(int));
	if (n != sizeof(reply))
		reply = -ENOTCONN;
	if (reply <= 0 && *pidfd >= 0) {
		close(*pidfd);
		*pidfd = -1;
	}
	return reply;
}

pid_t evm__spawner_spawn(struct evm_loop *loop, struct evm__spawn_req *req,
			 struct evm_spawn_error *err, int *pidfd)
{
	*pidfd = -1;
	struct evm__spawner *sp = loop->spawner;
	if (!sp)
		return -ENOTCONN;

	bool cg = req->cgroup_fd >= 0;
	int fds[5];
	int nfds = attach_fds(req, fds);
	req->child_pid = 0;
	req->in_mm = 1;
	int32_t reply = -ENOTCONN;
	if (send_request(sp, req, fds, nfds) > 0)
		reply = recv_reply(sp, pidfd);
	if (reply == -ENOTCONN && req->child_pid > 0)
		return orphaned_child(loop, req, pidfd);
	if (reply == -ENOTCONN) {
		evm__spawner_stop(loop); /* restarted on next use */
		return -ENOTCONN;
	}
	if (cg && (reply == -EINVAL || reply == -E2BIG)) {
		/* no CLONE_INTO_CGROUP in this kernel: the direct path copes */
		return -ENOTCONN;
	}
	if (req->ns && reply == -EINVAL)
		return -ENOTCONN; /* maybe a namespace this kernel lacks: the direct path says */
	if (reply == -ENOSYS || reply == -EINVAL || (reply == -EPERM && !req->ns && !cg)) {
		/* no clone3 in this kernel, or a filter refuses it (EPERM
		 * without a namespace: none of the request's own): spawn
		 * directly from now on, which falls back to clone() */
		loop->no_helper = true;
		evm__spawner_stop(loop);
		return -ENOTCONN;
	}
	if (reply < 0)
		err->stage = evm__clone_stage(req->ns, cg, -reply);
	return reply; /* a failed child wrote its error into req itself */
}
