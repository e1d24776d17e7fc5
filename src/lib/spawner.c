/*
 * spawner.c - the spawn helper: a small process that clones our children
 * once our own fd table is large (see spawn.c for why).
 *
 * It is cloned from the loop thread without CLONE_VM (a copy-on-write copy of
 * us, with no exit signal), closes every fd but its socket, and then loops:
 * receive a request, clone(CLONE_VM|CLONE_VFORK|CLONE_PARENT|CLONE_PIDFD) the
 * child (so the child's parent is the loop's process, and its fd table is the
 * helper's tiny one), reply with the pid and the pidfd. It runs only
 * async-signal-safe code: the process that created it may have other threads
 * holding locks.
 *
 * The pidfd must come from the clone itself: a pidfd_open of ours after the
 * reply could come too late, when the child has already exited and been
 * reaped by someone else (SIGCHLD ignored, another library's waitpid(-1)),
 * and its pid is free for reuse.
 *
 * Requests travel in a MAP_SHARED region mapped at the same address in both
 * processes: we copy the strings and build the pointer arrays there, and the
 * child writes its exec error back there. File descriptors for stdio travel
 * as SCM_RIGHTS over a SOCK_SEQPACKET socketpair, which also carries the
 * doorbell and the reply. EOF on the socket (the loop is gone) ends it.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define REGION_SIZE (8u << 20) /* argv+envp are at most ~2 MiB on Linux anyway */
#define HELPER_STACK (64u << 10)
#define CHILD_STACK (256u << 10)

struct evm__spawner {
	pid_t pid;
	int pidfd;
	int sock;	/* our end */
	int peer;	/* its end, open in us only until it is cloned */
	char *region;	/* MAP_SHARED request area */
	char *cstack;	/* the child's stack, in the helper's copy of memory */
	size_t used;	/* arena fill */
};

extern char **environ;

/* ------------------------------------------------------------- the helper */

EVM_CHILD_CODE static int helper_main(void *arg)
{
	struct evm__spawner *sp = arg;
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* our children inherit these: all default (32 and 33 too), so they need no resetting */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			evm__sig_default(sig);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	int s = 3;
	if (sp->peer != s && dup3(sp->peer, s, O_CLOEXEC) < 0)
		_exit(1);
	syscall(SYS_close_range, 0U, 2U, 0U);
	syscall(SYS_close_range, 4U, ~0U, 0U);

	for (;;) {
		uint32_t off;
		int fds[4];
		char cbuf[CMSG_SPACE(sizeof(fds))];
		struct iovec iov = {.iov_base = &off, .iov_len = sizeof(off)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			_exit(0);
		}
		int nfds = 0;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < nfds && i < 4; i++)
				fds[i] = ((int *)CMSG_DATA(c))[i];
		}
		struct evm__spawn_req *req = (struct evm__spawn_req *)(sp->region + off);
		/* fds[] >= 0 in the request are indexes into what came with it */
		int k = 0;
		for (int i = 0; i < 3; i++)
			if (req->fds[i] >= 0)
				req->fds[i] = k < nfds ? fds[k++] : -2;
		if (req->cwd_fd >= 0)
			req->cwd_fd = k < nfds ? fds[k++] : -1;
		int pidfd = -1;
		int32_t reply = clone(evm__spawn_child, sp->cstack + CHILD_STACK,
				      CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_PIDFD, req, &pidfd);
		if (reply < 0)
			reply = -errno;
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		char rbuf[CMSG_SPACE(sizeof(int))];
		struct iovec riov = {.iov_base = &reply, .iov_len = sizeof(reply)};
		struct msghdr rmh = {.msg_iov = &riov, .msg_iovlen = 1};
		if (reply > 0 && pidfd >= 0) {
			for (size_t i = 0; i < sizeof(rbuf); i++)
				rbuf[i] = 0;
			rmh.msg_control = rbuf;
			rmh.msg_controllen = sizeof(rbuf);
			struct cmsghdr *rc = CMSG_FIRSTHDR(&rmh);
			rc->cmsg_level = SOL_SOCKET;
			rc->cmsg_type = SCM_RIGHTS;
			rc->cmsg_len = CMSG_LEN(sizeof(int));
			*(int *)CMSG_DATA(rc) = pidfd;
		}
		while (sendmsg(s, &rmh, MSG_NOSIGNAL) < 0 && errno == EINTR)
			;
		if (pidfd >= 0)
			close(pidfd);
	}
}

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

int evm__spawner_start(struct evm_loop *loop)
{
	if (loop->spawner)
		return 0;
	struct evm__spawner *sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	loop->spawner_w.cb = on_helper_exit;
	sp->sock = sp->peer = sp->pidfd = -1;
	int r;
	char *hstack = MAP_FAILED;
	int sv[2];
	sp->region = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	sp->cstack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	hstack = mmap(NULL, HELPER_STACK, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (sp->region == MAP_FAILED || sp->cstack == MAP_FAILED || hstack == MAP_FAILED)
		goto fail_errno;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail_errno;
	sp->sock = sv[0];
	sp->peer = sv[1];
	/* no exit signal: our children inherit it via CLONE_PARENT until exec,
	 * and the helper's own exit is seen through its pidfd */
	sp->pid = clone(helper_main, hstack + HELPER_STACK, CLONE_PIDFD, sp, &sp->pidfd);
	if (sp->pid < 0)
		goto fail_errno;
	/* the helper has its own copies of these now */
	munmap(hstack, HELPER_STACK);
	munmap(sp->cstack, CHILD_STACK);
	sp->cstack = NULL;
	close(sp->peer);
	sp->peer = -1;
	r = evm__epoll_add(loop, sp->pidfd, EPOLLIN, &loop->spawner_w);
	loop->spawner = sp;
	if (r < 0) {
		evm__spawner_stop(loop);
		return r;
	}
	return 0;

fail_errno:
	r = -errno;
	if (hstack != MAP_FAILED)
		munmap(hstack, HELPER_STACK);
	if (sp->cstack != MAP_FAILED)
		munmap(sp->cstack, CHILD_STACK);
	if (sp->region != MAP_FAILED)
		munmap(sp->region, REGION_SIZE);
	if (sp->sock >= 0)
		close(sp->sock);
	if (sp->peer >= 0)
		close(sp->peer);
	free(sp);
	return r;
}

void evm__spawner_stop(struct evm_loop *loop)
{
	struct evm__spawner *sp = loop->spawner;
	if (!sp)
		return;
	loop->spawner = NULL;
	if (sp->sock >= 0)
		close(sp->sock); /* EOF: the helper exits */
	if (sp->pidfd >= 0) {
		siginfo_t si;
		evm__epoll_del(loop, sp->pidfd);
		while (waitid(P_PIDFD, (id_t)sp->pidfd, &si, WEXITED | __WALL) < 0 && errno == EINTR)
			;
		close(sp->pidfd);
	}
	munmap(sp->region, REGION_SIZE);
	free(sp);
}

/* -------------------------------------------------- building a request */

static void *arena(struct evm__spawner *sp, size_t n, size_t align)
{
	size_t at = (sp->used + align - 1) & ~(align - 1);
	if (at > REGION_SIZE || n > REGION_SIZE - at)
		return NULL;
	sp->used = at + n;
	return sp->region + at;
}

static const char *copy_str(struct evm__spawner *sp, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = arena(sp, n, 1);
	if (d)
		memcpy(d, s, n);
	return d;
}

static char *const *copy_vec(struct evm__spawner *sp, char *const *v)
{
	size_t n = 0;
	while (v[n])
		n++;
	char **d = arena(sp, (n + 1) * sizeof(char *), alignof(char *));
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(d[i] = (char *)copy_str(sp, v[i])))
			return NULL;
	d[n] = NULL;
	return d;
}

static const void *copy_mem(struct evm__spawner *sp, const void *src, size_t n, size_t align)
{
	if (!src || !n)
		return src;
	void *d = arena(sp, n, align);
	if (d)
		memcpy(d, src, n);
	return d;
}

/* Copy req into the shared region; NULL when it does not fit. */
static struct evm__spawn_req *serialize(struct evm__spawner *sp, const struct evm__spawn_req *req)
{
	sp->used = 0;
	struct evm__spawn_req *d = arena(sp, sizeof(*d), alignof(struct evm__spawn_req));
	if (!d)
		return NULL;
	*d = *req;
	d->err = 0;
	d->stage = 0;
	if (!(d->file = copy_str(sp, req->file)) || !(d->argv = copy_vec(sp, req->argv)) ||
	    !(d->envp = copy_vec(sp, req->envp)))
		return NULL;
	if ((req->path && !(d->path = copy_str(sp, req->path))) ||
	    (req->cwd && !(d->cwd = copy_str(sp, req->cwd))))
		return NULL;
	if ((req->ngroups &&
	     !(d->groups = copy_mem(sp, req->groups, req->ngroups * sizeof(gid_t), alignof(gid_t)))) ||
	    (req->nrlimits && !(d->rlimits = copy_mem(sp, req->rlimits,
						      req->nrlimits * sizeof(struct evm_rlimit),
						      alignof(struct evm_rlimit)))))
		return NULL;
	return d;
}

pid_t evm__spawner_spawn(struct evm_loop *loop, const struct evm__spawn_req *req,
			 struct evm_spawn_error *err, int *pidfd)
{
	*pidfd = -1;
	struct evm__spawner *sp = loop->spawner;
	if (!sp)
		return -ENOTCONN;
	struct evm__spawn_req *d = serialize(sp, req);
	if (!d)
		return -E2BIG;

	/* the fds travel with the request; inherit means "our current fd i" */
	int fds[4], nfds = 0;
	for (int i = 0; i < 3; i++) {
		int fd = req->fds[i];
		if (fd < 0 && fcntl(i, F_GETFD) >= 0)
			fd = i;
		if (fd >= 0) {
			fds[nfds++] = fd;
			d->fds[i] = 0; /* "one of the attached fds" */
		} else {
			d->fds[i] = -2; /* ours is closed: close it in the child too */
		}
	}
	if (req->cwd_fd >= 0) {
		fds[nfds++] = req->cwd_fd;
		d->cwd_fd = 0; /* attached, after the stdio ones */
	}
	uint32_t off = (uint32_t)((char *)d - sp->region);
	char cbuf[CMSG_SPACE(sizeof(fds))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = &off, .iov_len = sizeof(off)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		mh.msg_control = cbuf;
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
	int32_t reply = -ENOTCONN;
	if (n > 0) {
		char rbuf[CMSG_SPACE(sizeof(int))];
		struct iovec riov = {.iov_base = &reply, .iov_len = sizeof(reply)};
		struct msghdr rmh = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rbuf,
				     .msg_controllen = sizeof(rbuf)};
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
	}
	if (reply == -ENOTCONN) {
		evm__spawner_stop(loop); /* restarted on next use */
		return -ENOTCONN;
	}
	if (reply < 0) {
		err->stage = EVM_STAGE_FORK;
		return reply;
	}
	/* the child's verdict, if it failed, sits in the shared request */
	struct evm__spawn_req *orig = (struct evm__spawn_req *)req;
	orig->err = d->err;
	orig->stage = d->stage;
	return reply;
}
