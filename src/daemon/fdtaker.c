/*
 * fdtaker.c - taking the messages that carry descriptors off the notify
 * socket without letting one into the loop's descriptor table (a kernel
 * before Linux 6.16, whose sockets cannot refuse them: notifysock.c).
 *
 * Any user may send to the notify socket, and a descriptor they pass is
 * ours to close; a close can wait for as long as the sender likes (any
 * close of a file of a FUSE server that never answers its FLUSH, the last
 * close of a TCP socket set to linger with unsent data). So the loop only
 * peeks at such a message (the kernel then drops nothing for good: the
 * message keeps its own references) and hands its taking to a thread, the
 * taker, whose descriptor table is its own (close_range with
 * CLOSE_RANGE_UNSHARE: the loop's descriptors are not in it but for the
 * three it needs), and which hands what it took to a second thread, the
 * closer, sharing that table. A close that never returns holds the closer;
 * the taker goes on, and the loop never waits: no spawn copies those
 * descriptors either (a child copies the loop's table), and a POSIX lock
 * of the loop's stays (a lock is its table's: closing our copies there
 * leaves it alone).
 *
 * Until a message is taken, the loop does not read the socket (the order
 * of the messages is kept); the taker says it is done through an eventfd.
 * A socket is closed by the taker itself (after a reset of its linger, its
 * close does not wait); anything else goes to the closer, in order, and
 * one close that never returns holds the rest open in the threads' table
 * (counted: fdtaker_closing) until it does. What a determined sender can
 * still do, with a FUSE server that never answers: fill that table to
 * RLIMIT_NOFILE, past which the kernel drops what a message carries in the
 * taker's recvmsg, a lingering socket's close with it, and the taker waits
 * there: the socket's reading stops (notifications wait), the loop runs on.
 * A closer that waits holds the process too: its exit (and a core dump's)
 * completes, and a re-exec can start, only once that close returns (the
 * FUSE connection aborted: /sys/fs/fuse/connections/N/abort, its server
 * killed, or fs.fuse.max_request_timeout, Linux 6.14).
 */
#include "fdtaker.h"

#include "evmon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

#define FDS_MAX 253	   /* SCM_MAX_FD: all one message carries */
#define START_WAIT_MS 2000 /* for the taker's first words */

static struct {
	int sock, req, done;  /* in both tables: the socket, "take one", "taken" */
	int pipe[2];	      /* the taker's to the closer, in the threads' table */
	int up;		      /* 1 started, -1 could not or retired (atomic: the taker's word) */
	int err;	      /* why it could not (errno), the taker's */
	unsigned long taken;  /* descriptors taken (atomic: the taker's count) */
	unsigned long closed; /* of those, closed (atomic: the closer's count) */
	bool known;	      /* the last message's sender's cgroup is known: cgroup_id (atomic) */
	uint64_t cgroup_id;
} T = {.sock = -1, .req = -1, .done = -1, .pipe = {-1, -1}};

/*
 * A descriptor a sender passed, closed; a socket set to linger (SO_LINGER
 * with a time) with a reset instead. The option is the socket's, which the
 * sender shares: one that does not linger is left as it is. getsockopt
 * fails on anything else (ENOTSOCK).
 */
void fdtaker_close(int fd)
{
	static const struct linger now = {.l_onoff = 1, .l_linger = 0};
	struct linger l;
	socklen_t len = sizeof(l);
	if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 && l.l_onoff && l.l_linger > 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
	close(fd);
}

static void *closer_main(void *arg)
{
	(void)arg;
	int fd;
	ssize_t n;
	while ((n = read(T.pipe[0], &fd, sizeof(fd))) == (ssize_t)sizeof(fd) || (n < 0 && errno == EINTR))
		if (n > 0) {
			fdtaker_close(fd);
			__atomic_add_fetch(&T.closed, 1, __ATOMIC_RELEASE);
		}
	return NULL;
}

/*
 * fn on a detached thread of a small stack, with every signal blocked:
 * they are the loop's (signalfd), and a close must not be cut short. 0, or
 * an errno.
 */
static int start_thread(void *(*fn)(void *))
{
	sigset_t all, old;
	pthread_attr_t at;
	pthread_t t;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	int e = pthread_create(&t, &at, fn, NULL);
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return e;
}

static void say(int fd)
{
	uint64_t one = 1;
	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/*
 * Our own table, holding only T.sock, T.req and T.done: 0, or -1 (errno).
 * The unshare copies the descriptors below its bound (up to the table's
 * next size: 64 at least) and closes those above the highest we keep; the
 * copies below it are closed here: each a close of ours (an NFS file's
 * flush), none the loop's (a POSIX lock is the table's that took it).
 */
static int own_table(void)
{
	int keep[3] = {T.sock, T.req, T.done};
	for (int i = 0; i < 3; i++) /* in order */
		for (int j = i + 1; j < 3; j++)
			if (keep[j] < keep[i]) {
				int t = keep[i];
				keep[i] = keep[j];
				keep[j] = t;
			}
	if (syscall(SYS_close_range, (unsigned)keep[2] + 1, ~0U, CLOSE_RANGE_UNSHARE) < 0)
		return -1;
	for (int i = 0, from = 0; i < 3; from = keep[i++] + 1)
		if (keep[i] > from && syscall(SYS_close_range, (unsigned)from, (unsigned)keep[i] - 1, 0) < 0)
			return -1;
	return 0;
}

ssize_t fdtaker_recv_with_pidfd(int sock, struct msghdr *mh)
{
	static const int one = 1, zero = 0;
	bool on = setsockopt(sock, SOL_SOCKET, SO_PASSPIDFD, &one, sizeof(one)) == 0;
	ssize_t n = recvmsg(sock, mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
	if (on)
		setsockopt(sock, SOL_SOCKET, SO_PASSPIDFD, &zero, sizeof(zero));
	return n;
}

/*
 * Take the message at the socket's head: its descriptors to the closer, and
 * the cgroup of its sender kept (from its pidfd: Linux 6.13, and 6.15 for
 * one gone already), which places a sender gone by the time the loop looks
 * (notifysock.c). SO_PASSPIDFD is on for this read only (the loop peeks
 * without it, and does not read meanwhile).
 */
static void take_one(void)
{
	char data[1];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)) +
		       CMSG_SPACE(sizeof(int) * FDS_MAX)];
	} ctl;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
			    .msg_controllen = sizeof(ctl)};
	ssize_t got = fdtaker_recv_with_pidfd(T.sock, &mh);
	int pidfd = -1;
	for (struct cmsghdr *c = got >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_PIDFD && c->cmsg_len >= CMSG_LEN(sizeof(int)) && pidfd < 0) {
			memcpy(&pidfd, CMSG_DATA(c), sizeof(pidfd));
			continue;
		}
		if (c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			int type;
			socklen_t len = sizeof(type);
			if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
				fdtaker_close(fd); /* a socket: a reset, and no wait */
				continue;
			}
			/* else the closer's, in order; the pipe full (16,384 waiting): left open */
			__atomic_add_fetch(&T.taken, 1, __ATOMIC_RELEASE);
			(void)!write(T.pipe[1], &fd, sizeof(fd));
		}
	}
	uint64_t id = 0;
	bool known = pidfd >= 0 && evm_pidfd_cgroup_id(pidfd, &id) == 0;
	if (pidfd >= 0)
		close(pidfd);
	__atomic_store_n(&T.cgroup_id, id, __ATOMIC_RELAXED);
	__atomic_store_n(&T.known, known, __ATOMIC_RELEASE);
}

static void *taker_main(void *arg)
{
	(void)arg;
	int ok = own_table() == 0 && pipe2(T.pipe, O_CLOEXEC) == 0 &&
		 fcntl(T.pipe[1], F_SETFL, O_NONBLOCK) == 0;
	T.err = ok ? 0 : errno;
	if (ok) {
		T.err = start_thread(closer_main); /* it shares our table */
		ok = !T.err;
	}
	__atomic_store_n(&T.up, ok ? 1 : -1, __ATOMIC_RELEASE);
	say(T.done);
	if (!ok)
		return NULL; /* our table, and its copies, go with us */
	for (;;) {
		uint64_t n;
		if (read(T.req, &n, sizeof(n)) != (ssize_t)sizeof(n))
			continue; /* EINTR */
		while (n--) {
			take_one();
			say(T.done);
		}
	}
	return NULL;
}

/* done's count read (nonblocking): how many requests ended since the last read */
static uint64_t done_count(void)
{
	uint64_t n = 0;
	if (read(T.done, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return 0;
	return n;
}

int fdtaker_start(int sock)
{
	int up = __atomic_load_n(&T.up, __ATOMIC_ACQUIRE);
	if (up > 0)
		return sock == T.sock ? 0 : -EBUSY; /* its copy is of one socket */
	if (up < 0)
		return -EAGAIN;
	T.sock = sock;
	T.req = eventfd(0, EFD_CLOEXEC);
	T.done = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int e = T.req < 0 || T.done < 0 ? errno : 0;
	if (!e)
		e = start_thread(taker_main);
	if (!e) {
		/* its first words: a few system calls away, but for a flush of an NFS copy */
		if (!fdtaker_taken(START_WAIT_MS))
			e = ETIMEDOUT;
		else if (__atomic_load_n(&T.up, __ATOMIC_ACQUIRE) < 0)
			e = T.err ? T.err : EINVAL; /* ENOSYS, EINVAL: CLOSE_RANGE_UNSHARE is Linux 5.9 */
	}
	if (e) {
		/* for good: the eventfds stay, a taker that could not start (or late) may hold them */
		__atomic_store_n(&T.up, -1, __ATOMIC_RELEASE);
		return -e;
	}
	return 0;
}

void fdtaker_retire(void)
{
	if (__atomic_load_n(&T.up, __ATOMIC_ACQUIRE) > 0) /* its copy is of a socket that is gone */
		__atomic_store_n(&T.up, -1, __ATOMIC_RELEASE);
}

int fdtaker_done_fd(void)
{
	return __atomic_load_n(&T.up, __ATOMIC_ACQUIRE) > 0 ? T.done : -1;
}

void fdtaker_request(void)
{
	say(T.req);
}

bool fdtaker_taken(int timeout_ms)
{
	struct pollfd p = {.fd = T.done, .events = POLLIN};
	if (timeout_ms && poll(&p, 1, timeout_ms) <= 0)
		return false;
	return done_count() > 0;
}

bool fdtaker_sender_cgroup(uint64_t *cgroup_id)
{
	if (!__atomic_load_n(&T.known, __ATOMIC_ACQUIRE))
		return false;
	*cgroup_id = __atomic_load_n(&T.cgroup_id, __ATOMIC_RELAXED);
	return true;
}

unsigned long fdtaker_closing(void)
{
	if (T.done < 0)
		return 0; /* never started (a retired one may still close) */
	unsigned long closed = __atomic_load_n(&T.closed, __ATOMIC_ACQUIRE);
	return __atomic_load_n(&T.taken, __ATOMIC_ACQUIRE) - closed;
}
