/*
 * notifysock.c - the sd_notify socket of the services (ready = notify).
 *
 * One AF_UNIX datagram socket for the whole daemon, with SO_PASSCRED, bound
 * to the control socket's path with ".notify" (mode 0666: services run as
 * any user; a message's sender is told by the kernel, below). Where that
 * path cannot be (too long, or a root daemon's directory others cannot
 * search), an autobound abstract name ("@" + 5 hex digits). Only
 * services with ready = notify get NOTIFY_SOCKET in their environment.
 *
 * Who sent a message is the kernel's word, never the message's: the pid of
 * SCM_CREDENTIALS names the sender, and the sender belongs to a service when
 * it is in that service's cgroup (cgroups on), or when the service's main
 * process (which a MAINPID= may have changed) is the sender or one of its
 * parents.
 * Anything else (another service's pid, a forged MAINPID, a process that
 * exited before we looked) is dropped and counted; the count is logged at
 * 1, 2, 4, 8, ... so a flood costs a few lines.
 *
 * A hostile sender cannot grow memory nor stall the loop: each message is
 * read into one fixed buffer (a bigger one is cut by the kernel and
 * dropped), at most BUDGET per loop iteration (the socket stays readable,
 * the loop comes back after serving the rest), and file descriptors are
 * refused: evmon keeps none (no FDSTORE), and the close of one can block
 * the closer (the last close of a TCP socket with SO_LINGER and a full send
 * buffer; any close of a file of a FUSE server that never answers its
 * FLUSH, or of a hung NFS server), so a descriptor any user sends could stop
 * the loop. Linux 6.16's SO_PASSRIGHTS off makes such a send fail (EPERM)
 * in the sender. Before it, each message is peeked at first, with no room
 * for descriptors (the kernel drops none for good then: the message keeps
 * its references); one that carries some is taken off the socket by a
 * thread with a descriptor table of its own (fdtaker.c), which closes them
 * there, and the socket is read on once it is taken (a close that never
 * returns holds that thread only). Where that thread cannot be, the
 * message is read here and what it carries closed here, a socket with a
 * reset (no linger): a file of a hung FUSE or NFS server can block that.
 *
 * Before the exit of a notify service's main process is applied, the socket
 * is read to its end (notifysock_drain, from the service's before_exit): a
 * forking daemon sends MAINPID= of its child and exits at once, and the
 * loop may see the exit first (its pidfd ready in the same wait, or the
 * datagram behind BUDGET others). Its sender is then still the service's
 * main process (the exit is not applied yet), so the message is attributed
 * and the MAINPID= taken before the exit could end the service.
 *
 * The services keep the name they were given for their whole run, so the
 * socket outlives the daemon (notifysock_inherit): a re-exec passes it
 * open, and a daemon started after a crash binds the name the record gives
 * again. The path is why it is a path: between a crash and that bind, only
 * a process that may write in the control socket's directory could take
 * it, where an abstract name (listed in /proc/net/unix) is anyone's for
 * the taking; the services started before then could not reach us.
 */
#include "notifysock.h"

#include "cgroups.h"
#include "daemon.h"
#include "daemonlog.h"
#include "fdtaker.h"
#include "procstat.h"
#include "ready.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MSG_MAX 4096	/* systemd's NOTIFY_BUFFER_MAX */
#define FDS_MAX 253	/* SCM_MAX_FD: all one message carries, closed by us (not refused: < 6.16) */
#define BUDGET 64	/* messages per loop iteration */
#define DRAIN_MAX 1024	/* messages read before a main process's exit (the kernel queues 512
			   by default: net.unix.max_dgram_qlen) */
#define TREE_DEPTH 64	/* parents walked up from a sender */
#define PIDFD_BUDGET 8	/* senders gone before they were read, placed per iteration */
#define TAKE_WAIT_MS 100 /* notifysock_drain's wait for a message taken (fdtaker.c) */

#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83 /* Linux 6.16 */
#endif

/* Who sent a message: the kernel's word (SCM_CREDENTIALS, SCM_PIDFD). */
struct sender {
	struct ucred cred;
	bool have_cred;
	int pidfd;	  /* -1: none (yet) */
	bool id_known;	  /* the cgroup it was in when the taker read it: id */
	uint64_t id;
};

static struct {
	int fd;
	struct evm_io *io;
	char name[110];	    /* a path (sun_path: 108 bytes), or "@xxxxx" */
	char base[4096];    /* the services' cgroup base as /proc/PID/cgroup shows it, or "" */
	unsigned long dropped;
	unsigned pidfd_walks; /* unit_of_pidfd's this iteration */
	bool failed;	    /* could not open: said once */
	bool passrights;    /* descriptors may come (a kernel before SO_PASSRIGHTS): peek first */
	bool waiting;	    /* the message at the head is the taker's: not read until taken */
	bool inline_said;   /* no taker: said once */
	unsigned long stuck_said; /* descriptors not closed yet, said at 64, 256, 1024, ... */
	struct sender pend;	  /* the sender of the message the taker takes (S.waiting) */
	ssize_t pend_n;		  /* and its length (the message is in msg) */
	struct evm_io *taken_io; /* the taker's "taken" */
} S = {.fd = -1};

/* ------------------------------------------------------------ attribution */

/* The "0::PATH" line of /proc/pid/cgroup into buf; false when pid is gone. */
static bool pid_cgroup(pid_t pid, char *buf, size_t cap)
{
	char path[64], data[4096];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	bool ok = false;
	while (!ok && fgets(data, sizeof(data), f)) {
		if (strncmp(data, "0::", 3))
			continue;
		data[strcspn(data, "\n")] = 0;
		snprintf(buf, cap, "%s", data + 3);
		ok = true;
	}
	fclose(f);
	return ok;
}

/* base/<NAME>.service[/...] -> the unit NAME */
static struct unit *unit_of_cgroup(struct daemon *d, pid_t pid)
{
	char cg[4096], name[300];
	size_t bl = strlen(S.base);
	if (!pid_cgroup(pid, cg, sizeof(cg)) || strncmp(cg, S.base, bl) || cg[bl] != '/')
		return NULL;
	const char *leaf = cg + bl + 1;
	size_t n = strcspn(leaf, "/");
	if (n <= 8 || n >= sizeof(name) || strncmp(leaf + n - 8, ".service", 8))
		return NULL;
	memcpy(name, leaf, n - 8);
	name[n - 8] = 0;
	return unit_find(d, name);
}

/* The parent of pid, or 0 */
static pid_t parent_of(pid_t pid)
{
	pid_t ppid;
	return proc_stat(pid, &ppid, NULL) == 0 ? ppid : 0;
}

/* A notify unit whose main process (the one it started, or a MAINPID= taken) is pid. */
static struct unit *unit_of_main(struct daemon *d, pid_t pid)
{
	for (struct unit *u = d->first; u; u = u->next) {
		if (!u->rd || u->conf->ready != READY_NOTIFY || !u->svc)
			continue;
		struct evm_proc *p = evm_service_proc(u->svc);
		if (p && evm_proc_pid(p) == pid)
			return u;
	}
	return NULL;
}

/*
 * A notify unit whose cgroup the sender's pidfd (SCM_PIDFD) names: a sender
 * gone already (systemd-notify from a script, reaped by the time we read)
 * has no /proc any more, but the kernel keeps the cgroup it died in (6.15).
 * The id is its cgroup directory's inode: compared with each notify unit's
 * that runs (a few; only for such a sender). Before 6.16 a message comes
 * with its pidfd only when its sender is not placed otherwise (the peek
 * for descriptors: take_with_pidfd).
 */
static struct unit *unit_of_cgroup_id(struct daemon *d, uint64_t id)
{
	/*
	 * Only for a sender /proc did not place (gone by now), and at most
	 * PIDFD_BUDGET an iteration: a hostile sender that forks short-lived
	 * ones costs us a walk of the units each.
	 */
	if (!S.base[0] || S.pidfd_walks >= PIDFD_BUDGET)
		return NULL;
	S.pidfd_walks++;
	for (struct unit *u = d->first; u; u = u->next)
		if (u->rd && u->conf->ready == READY_NOTIFY && u->svc && evm_service_proc(u->svc) &&
		    ready_cgroup_id(u) == id)
			return u;
	return NULL;
}

static struct unit *unit_of_pidfd(struct daemon *d, int pidfd)
{
	uint64_t id;
	if (pidfd < 0 || !S.base[0] || syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0 ||
	    errno != ESRCH || evm_pidfd_cgroup_id(pidfd, &id) < 0)
		return NULL;
	return unit_of_cgroup_id(d, id);
}

struct unit *notifysock_unit_of(struct daemon *d, pid_t pid)
{
	struct unit *u = NULL;
	if (S.base[0]) {
		/* a main process reaped already (its exit held for notifysock_drain) has no cgroup */
		u = unit_of_cgroup(d, pid);
		if (!u)
			u = unit_of_main(d, pid);
	} else {
		pid_t self = getpid();
		for (int i = 0; i < TREE_DEPTH && pid > 1 && pid != self && !u; i++) {
			u = unit_of_main(d, pid);
			pid = parent_of(pid);
		}
	}
	if (!u || !u->rd || u->conf->ready != READY_NOTIFY || !u->svc || !evm_service_proc(u->svc))
		return NULL;
	return u;
}

static void dropped(pid_t pid, const char *why)
{
	S.dropped++;
	if (S.dropped & (S.dropped - 1))
		return; /* logged at 1, 2, 4, 8, ... */
	dlog("notify socket: message from pid %d ignored: %s (%lu ignored so far)", (int)pid, why,
	     S.dropped);
}

/* ------------------------------------------------------------ the taker */

static void taken(struct daemon *d);

static void on_taken(struct evm_io *io, int fd, unsigned ev, void *data)
{
	(void)io;
	(void)fd;
	(void)ev;
	if (fdtaker_taken(0) && S.waiting) /* read in any case, or it stays ready */
		taken(data);
}

/*
 * The message peeked at carries descriptors: the taker's to read. False
 * when there is no taker (said once): then it is read here.
 */
static bool hand_to_taker(struct daemon *d)
{
	int e = fdtaker_start(S.fd);
	if (!e && !S.taken_io && evm_io_add(d->loop, fdtaker_done_fd(), EVM_READ, on_taken, d,
					    &S.taken_io) < 0)
		e = -ENOMEM;
	if (e) {
		if (!S.inline_said)
			dlog("notify socket: descriptors a sender passed are closed by the loop itself "
			     "(no thread for them: %s): a close that waits (a file of a FUSE or NFS "
			     "server that does not answer) would hold it", strerror(-e));
		S.inline_said = true;
		return false;
	}
	unsigned long n = fdtaker_closing();
	if (n >= 64 && n >= 4 * S.stuck_said) {
		dlog("notify socket: %lu descriptors that senders passed are not closed yet (a close "
		     "that waits: a file of a FUSE or NFS server that does not answer?)", n);
		S.stuck_said = n;
	}
	fdtaker_request();
	S.waiting = true;
	evm_io_modify(S.io, 0);
	return true;
}

unsigned long notifysock_closing(struct daemon *d)
{
	if (S.waiting && fdtaker_taken(0)) /* else only the loop, which waits for us, would see it */
		taken(d);
	return fdtaker_closing() + S.waiting; /* a take under way has not counted its own yet */
}

/* ------------------------------------------------------------ receiving */

/*
 * The message at the head, peeked at (it carries no descriptor, and nobody
 * else reads), taken off with its sender's pidfd: SO_PASSPIDFD is off
 * otherwise before Linux 6.16 (see watch). The pidfd, or -1.
 */
static int take_with_pidfd(void)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int))];
	} ctl;
	char c;
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
			    .msg_controllen = sizeof(ctl)};
	ssize_t n = fdtaker_recv_with_pidfd(S.fd, &mh);
	int pidfd = -1;
	for (struct cmsghdr *h = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; h; h = CMSG_NXTHDR(&mh, h))
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_PIDFD &&
		    h->cmsg_len >= CMSG_LEN(sizeof(int)))
			memcpy(&pidfd, CMSG_DATA(h), sizeof(pidfd));
	return pidfd;
}

static char msg[MSG_MAX + 1]; /* the message read, or peeked at */

/*
 * The message in msg (n bytes, as the kernel said: more than MSG_MAX were
 * cut), to its unit. *head: it is still at the socket's head, to be taken
 * off here (with the sender's pidfd when /proc cannot place the sender).
 */
static void apply(struct daemon *d, ssize_t n, struct sender *s, bool *head, int nfds)
{
	struct unit *u = NULL;
	if (!s->have_cred || s->cred.pid <= 0) {
		dropped(0, "no sender credentials");
	} else if ((size_t)n > MSG_MAX) {
		dropped(s->cred.pid, "longer than 4096 bytes");
	} else if (!(u = notifysock_unit_of(d, s->cred.pid))) {
		if (*head) { /* gone? its pidfd (6.15 keeps the cgroup it died in) */
			s->pidfd = take_with_pidfd();
			*head = false;
		}
		u = s->id_known ? unit_of_cgroup_id(d, s->id) : unit_of_pidfd(d, s->pidfd);
		if (!u)
			dropped(s->cred.pid, "not a process of a service with ready = notify");
	}
	if (*head) /* off the socket before anything runs that could read it */
		recv(S.fd, NULL, 0, MSG_DONTWAIT | MSG_TRUNC);
	*head = false;
	if (s->pidfd >= 0)
		close(s->pidfd);
	s->pidfd = -1;
	if (!u)
		return;
	msg[n] = 0;
	ready_notify(d, u, s->cred.pid, msg, (size_t)n, nfds);
}

/* The message peeked at (msg) taken by the taker: applied, and the socket read again. */
static void taken(struct daemon *d)
{
	bool head = false;
	struct sender s = S.pend;
	S.waiting = false;
	evm_io_modify(S.io, EVM_READ);
	s.id_known = fdtaker_sender_cgroup(&s.id); /* gone since, it still places it */
	apply(d, S.pend_n, &s, &head, 1);
}

/*
 * One message: 1 read (or handed to the taker), 0 nothing left or the head
 * is the taker's (drain waits a moment for it; the loop reads on once it
 * is taken: on_taken).
 */
static int receive_one(struct daemon *d, bool drain)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)) +
		       CMSG_SPACE(sizeof(int) * FDS_MAX)];
	} ctl;
	if (S.waiting) {
		if (!drain || !fdtaker_taken(TAKE_WAIT_MS))
			return 0;
		taken(d);
	}
	/*
	 * Before Linux 6.16, a peek with room for the credentials only (no
	 * SCM_PIDFD then, see watch): MSG_CTRUNC says it carries descriptors.
	 */
	bool peek = S.passrights && !S.inline_said;
	struct iovec iov = {.iov_base = msg, .iov_len = MSG_MAX};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
			    .msg_controllen = peek ? CMSG_SPACE(sizeof(struct ucred)) : sizeof(ctl)};
	ssize_t n = recvmsg(S.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC | (peek ? MSG_PEEK : 0));
	if (n < 0)
		return errno == EINTR ? 1 : 0;
	struct sender s = {.pidfd = -1};
	int nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(s.cred))) {
			memcpy(&s.cred, CMSG_DATA(c), sizeof(s.cred));
			s.have_cred = true;
		} else if (c->cmsg_type == SCM_PIDFD && c->cmsg_len >= CMSG_LEN(sizeof(int)) &&
			   s.pidfd < 0) {
			memcpy(&s.pidfd, CMSG_DATA(c), sizeof(s.pidfd)); /* the sender's, from the kernel */
		} else if (c->cmsg_type == SCM_RIGHTS) { /* no taker: closed here */
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				fdtaker_close(fd);
			}
			nfds += (int)k;
		}
	}
	if (peek && (mh.msg_flags & MSG_CTRUNC)) {
		if (hand_to_taker(d)) { /* applied once taken, with what the taker saw of the sender */
			S.pend = s;
			S.pend_n = n;
		}
		return 1; /* else read again, whole, without a peek */
	}
	bool head = peek;
	apply(d, n, &s, &head, nfds);
	return 1;
}

static void on_readable(struct evm_io *io, int fd, unsigned ev, void *data)
{
	(void)io;
	(void)fd;
	(void)ev;
	S.pidfd_walks = 0;
	for (int i = 0; i < BUDGET && receive_one(data, false); i++)
		;
}

void notifysock_drain(struct daemon *d)
{
	static bool draining;
	if (S.fd < 0 || draining)
		return;
	draining = true; /* never inside itself: messages are handled in the order sent */

	for (int i = 0; i < DRAIN_MAX && receive_one(d, true); i++)
		;
	draining = false;
}

/* ------------------------------------------------------------ the socket */

/* The base of the services' cgroups as /proc/PID/cgroup shows it: our own cgroup's parent. */
static void find_base(struct daemon *d)
{
	S.base[0] = 0;
	if (!d->cg || !pid_cgroup(getpid(), S.base, sizeof(S.base)))
		return;
	char *slash = strrchr(S.base, '/');
	if (slash && !strcmp(slash, "/evmon.daemon"))
		*slash = 0;
	else
		S.base[0] = 0; /* not where cgroups.c puts us: by parents then */
}

/* fd's name into S.name (a path, or "@" and what follows an abstract name's NUL): 0, or -1 with err */
static int take_name(int fd, char *err, size_t len)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t al = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
		snprintf(err, len, "%s", strerror(errno));
		return -1;
	}
	size_t nl = al - offsetof(struct sockaddr_un, sun_path);
	if (a.sun_family == AF_UNIX && nl >= 2 && nl <= sizeof(a.sun_path) && a.sun_path[0] == '/') {
		size_t pl = strnlen(a.sun_path, nl); /* a path: NUL-terminated, or cut at sun_path's end */
		memcpy(S.name, a.sun_path, pl);
		S.name[pl] = 0;
		return 0;
	}
	if (a.sun_family != AF_UNIX || nl < 2 || nl > sizeof(S.name) - 1 || a.sun_path[0] ||
	    memchr(a.sun_path + 1, 0, nl - 1)) {
		snprintf(err, len, "unexpected address");
		return -1;
	}
	S.name[0] = '@';
	memcpy(S.name + 1, a.sun_path + 1, nl - 1);
	S.name[nl] = 0;
	return 0;
}

/* Watch fd, a bound socket whose name S.name has: 0, or -1 with err (fd is ours still). */
static int watch(struct daemon *d, int fd, char *err, size_t len)
{
	int zero = 0; /* descriptors refused: see the top (before Linux 6.16 this fails) */
	/* EVMON_TEST_PASSRIGHTS: the tests' way to the path of a kernel before it */
	const char *t = getenv("EVMON_TEST_PASSRIGHTS");
	S.passrights = (t && !strcmp(t, "1")) ||
		       setsockopt(fd, SOL_SOCKET, SO_PASSRIGHTS, &zero, sizeof(zero)) < 0;
	if (S.passrights) /* the kernel puts a pidfd after the descriptors: the peek could not tell */
		setsockopt(fd, SOL_SOCKET, SO_PASSPIDFD, &zero, sizeof(zero));
	if (evm_io_add(d->loop, fd, EVM_READ, on_readable, d, &S.io) < 0) {
		snprintf(err, len, "cannot watch it: out of memory");
		return -1;
	}
	S.fd = fd;
	find_base(d);
	return 0;
}

/*
 * The path the services are given: the control socket's with ".notify",
 * next to its lock and state record, in a directory the daemon already
 * trusts with both. False (why in err) when it cannot be: a path too long
 * for a socket address, a character the record's words cannot carry, or, for a
 * root daemon, a directory on the way that others cannot search (a service
 * run as another user could not reach the socket there).
 */
static bool path_for(struct daemon *d, char *out, size_t cap, char *err, size_t len)
{
	const char *sock = d->socket;
	char cwd[4096] = "";
	/* relative to our working directory (the daemon never changes it), not the services' */
	if (!sock || (sock[0] != '/' && !getcwd(cwd, sizeof(cwd)))) {
		snprintf(err, len, "the control socket's directory is unknown");
		return false;
	}
	int n = snprintf(out, cap, "%s%s%s.notify", cwd, cwd[0] ? "/" : "", sock);
	if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, len, "%s%s%s.notify: longer than a socket address can be", cwd,
			 cwd[0] ? "/" : "", sock);
		return false;
	}
	for (const char *c = out; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			snprintf(err, len, "%s: a space or control character in the path", out);
			return false;
		}
	if (geteuid() != 0)
		return true; /* its services all run as us */
	char dir[sizeof(S.name)];
	memcpy(dir, out, (size_t)n + 1);
	for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
		*slash = 0;
		struct stat st;
		const char *at = dir[0] ? dir : "/";
		if (stat(at, &st) < 0 || !(st.st_mode & S_IXOTH)) {
			snprintf(err, len, "%s: not searchable by other users (a service with user = "
				 "could not reach the socket)", at);
			return false;
		}
	}
	return true;
}

/*
 * Bind fd to path, a socket anyone may send to (sendto needs write
 * permission on the file; an abstract name had no permissions at all). A
 * socket of ours already there is the daemon's before us (we hold the
 * control socket's lock): replaced. Anything else is left as it is.
 */
static int bind_path(int fd, const char *path, char *err, size_t len)
{
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
			snprintf(err, len, "%s exists and is not a socket of ours: left as it is", path);
			return -1;
		}
		unlink(path);
	}
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, path, strlen(path) + 1);
	mode_t old = umask(0111); /* 0666 from the start; the daemon has no other thread */
	int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	int e = errno;
	umask(old);
	if (r < 0) {
		snprintf(err, len, "bind %s: %s", path, strerror(e));
		return -1;
	}
	return 0;
}

/*
 * A new socket bound to name: a path (the one path_for gives), "@..." (an
 * abstract name, as a daemon before this version recorded it), or when
 * name is NULL, path_for's path and else a free abstract name.
 */
static int open_socket(struct daemon *d, const char *name, char *err, size_t len)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, len, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	/* best effort (Linux 6.5): a sender's pidfd, for one gone by the time we read */
	setsockopt(fd, SOL_SOCKET, SO_PASSPIDFD, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		snprintf(err, len, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	char path[sizeof(S.name)], why[300];
	int bound = -1;
	if (name && name[0] == '/') {
		bound = bind_path(fd, name, err, len);
	} else if (!name) {
		/* a path: after a crash only the daemon can bind it again (an abstract name, anyone) */
		if (path_for(d, path, sizeof(path), why, sizeof(why)) &&
		    bind_path(fd, path, why, sizeof(why)) == 0)
			bound = 0;
		else
			dlog("notify socket: %s: an abstract name is used (after a crash another "
			     "process could take it first)", why);
	}
	if (bound < 0 && (!name || name[0] == '@')) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		/* autobind: an address length of just the family picks a free abstract name */
		socklen_t al = sizeof(sa_family_t);
		if (name) {
			size_t nl = strlen(name);
			memcpy(a.sun_path + 1, name + 1, nl - 1); /* "@" is the leading NUL */
			al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + nl);
		}
		bound = bind(fd, (struct sockaddr *)&a, al);
		if (bound < 0)
			snprintf(err, len, "%s", strerror(errno));
	}
	if (bound < 0 || take_name(fd, err, len) < 0 || watch(d, fd, err, len) < 0) {
		close(fd);
		return -1;
	}
	return 0;
}

void notifysock_use(struct daemon *d)
{
	char err[400];
	if (S.fd >= 0 || S.failed)
		return;
	if (open_socket(d, NULL, err, sizeof(err)) < 0) {
		S.failed = true;
		dlog("notify socket: %s: services with ready = notify are ready at ready_timeout, "
		     "if at all", err);
	}
}

bool notifysock_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (name[0] == '/') {
		for (const char *c = name; *c; c++)
			if ((unsigned char)*c <= ' ' || *c == 0x7f)
				return false;
		return n < sizeof(((struct sockaddr_un *)0)->sun_path);
	}
	if (name[0] != '@' || n < 2 || n > 15)
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return true;
}

int notifysock_inherit(struct daemon *d, int fd, const char *name)
{
	char err[400];
	if (S.fd >= 0)
		return -1;
	if (fd >= 0) {
		int type = 0, one = 1;
		socklen_t tl = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_DGRAM) {
			dlog("re-exec: the notify socket passed (fd %d) is not a datagram socket: "
			     "services with ready = notify cannot reach this daemon", fd);
			return -1;
		}
		/* kept across the exec: close-on-exec again, and as the socket was made */
		setsockopt(fd, SOL_SOCKET, SO_PASSPIDFD, &one, sizeof(one));
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
		    take_name(fd, err, sizeof(err)) < 0 || watch(d, fd, err, sizeof(err)) < 0) {
			dlog("re-exec: the notify socket passed (fd %d): %s: services with ready = "
			     "notify cannot reach this daemon", fd, err);
			return -1;
		}
		return 0;
	}
	if (!name || !notifysock_name_ok(name))
		return -1;
	char path[sizeof(S.name)], why[300];
	if (name[0] == '/' && (!path_for(d, path, sizeof(path), why, sizeof(why)) || strcmp(name, path))) {
		/* another control socket's (the record is ours: its name says where it is) */
		dlog("notify socket: the daemon that died had %s, not this daemon's: its services "
		     "with ready = notify cannot reach this daemon", name);
		return -1;
	}
	if (open_socket(d, name, err, sizeof(err)) < 0) {
		dlog("notify socket: cannot bind %s again (the daemon that died had it): %s: its "
		     "services with ready = notify cannot reach this daemon (a watchdog_sec stops "
		     "them; ctl restart gives them the new socket)", name, err);
		return -1;
	}
	return 0;
}

int notifysock_fd(struct daemon *d)
{
	(void)d;
	return S.fd;
}

const char *notifysock_name(struct daemon *d)
{
	(void)d;
	return S.fd >= 0 ? S.name : NULL;
}

void notifysock_remove(struct daemon *d)
{
	(void)d;
	struct stat st;
	/* we still hold the control socket's lock: no other daemon bound it since */
	if (S.fd >= 0 && S.name[0] == '/' && lstat(S.name, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_uid == geteuid())
		unlink(S.name);
}

void notifysock_close(struct daemon *d)
{
	(void)d;
	evm_io_free(S.io);
	S.io = NULL;
	evm_io_free(S.taken_io);
	S.taken_io = NULL;
	S.waiting = false;
	fdtaker_retire(); /* its threads stay, idle, with a copy of this socket: no new one */
	if (S.fd >= 0)
		close(S.fd);
	S.fd = -1;
	S.failed = false;
	S.dropped = 0;
}
