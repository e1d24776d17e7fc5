/*
 * adopt.c - taking over a process the loop did not spawn: a survivor of a
 * supervisor that crashed, or our own child across an exec of ourselves.
 *
 * Identity: a pid alone names nothing (it may have been reused), so the
 * caller gives the start time it recorded (field 22 of /proc/PID/stat, clock
 * ticks since boot), and the check is made race-free by a pidfd opened first:
 * while the pidfd's process is alive (a zombie included) its pid cannot be
 * reused, so a stat read between pidfd_open and a successful liveness check
 * through the pidfd describes that very process.
 *
 * The exit is watched through the pidfd, as for a spawned child. When we are
 * the parent (the adopter exec'd itself), waitid(P_PIDFD) reaps it with its
 * status; otherwise the real parent reaps it and waitid says ECHILD: the
 * exit record then has status_unknown and adopted set.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The pid a pidfd refers to (its fdinfo: -1 once reaped) in *pid; 0 or -errno. */
static int pidfd_pid(int pidfd, pid_t *pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return -EIO;
	buf[k] = 0;
	const char *p = strstr(buf, "\nPid:");
	if (!p)
		return -EINVAL; /* not a pidfd */
	*pid = (pid_t)atoi(p + 5);
	return 0;
}

/* When it started, on our clocks, from its start time in ticks since boot. */
static void set_start(struct evm_proc *p, uint64_t ticks)
{
	struct timespec bt;
	long hz = sysconf(_SC_CLK_TCK);
	uint64_t mono = evm__mono_ns();
	int64_t real = evm__real_ns();
	p->start_mono = mono;
	p->start_real = real;
	if (hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &bt) < 0)
		return;
	uint64_t boot_ns = (uint64_t)bt.tv_sec * 1000000000u + (uint64_t)bt.tv_nsec;
	uint64_t start_ns = ticks / (uint64_t)hz * 1000000000u +
			    ticks % (uint64_t)hz * (1000000000u / (uint64_t)hz);
	uint64_t age = boot_ns > start_ns ? boot_ns - start_ns : 0;
	if (age < mono) /* CLOCK_MONOTONIC leaves out suspends: never before its 0 */
		p->start_mono = mono - age;
	p->start_real = real - (int64_t)age;
}

/* Check who pidfd names; fills *f. 0 or -errno (-ESRCH: gone or not it). */
static int check_identity(const struct evm_adopt_opts *o, int pidfd, struct evm__pstat *f)
{
	if (o->flags & EVM_ADOPT_PIDFD) {
		pid_t who = 0;
		int r = pidfd_pid(pidfd, &who);
		if (r < 0)
			return r == -ENOENT ? -EBADF : r;
		if (who != o->pid)
			return who <= 0 ? -ESRCH : -EINVAL; /* -1: it was reaped */
	}
	int r = evm__proc_stat(o->pid, f);
	if (r < 0)
		return r;
	/* alive after the read: the stat was that of the pidfd's process */
	if ((r = evm__pidfd_alive(pidfd)) < 0)
		return r;
	if ((o->flags & EVM_ADOPT_START_TIME) && f->start != o->start_time)
		return -ESRCH;
	return 0;
}

/*
 * EVM_ADOPT_KEPT: the caller's own pidfd of pid, kept across its exec, and
 * the start time it recorded: nothing to check, nothing read from /proc
 * (two files per process made most of a re-exec's takeover). What the
 * stat would have said comes from system calls on the pinned pid: whether
 * it is our child (waitid without reaping: ECHILD if not), its group and
 * its session.
 */
static int kept_identity(const struct evm_adopt_opts *o, int pidfd, pid_t self,
			 struct evm__pstat *f)
{
	siginfo_t si = {0};
	f->pid = o->pid;
	f->start = o->start_time;
	f->state = 'S';
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0)
		f->ppid = self;
	else if (errno == ECHILD)
		f->ppid = 0; /* another's child: its exit status will be unknown */
	else
		return errno == EBADF ? -EBADF : -errno;
	/* a zombie keeps its ids until it is reaped: our child's is ours to reap */
	f->pgid = getpgid(o->pid);
	f->sid = getsid(o->pid);
	if (f->pgid < 0 || f->sid < 0)
		return -ESRCH; /* reaped by another: gone */
	/*
	 * Another's child (one adopted after a crash, then kept across an
	 * exec) is not pinned by its zombie for us: reaped by its parent
	 * meanwhile, its pid may name another process by the reads above.
	 * Alive (or a zombie) after them: they were its.
	 */
	return f->ppid ? 0 : evm__pidfd_alive(pidfd);
}

/*
 * Our ancestors, read once: a process can gain none (an orphan goes to a
 * subreaper above it or to the namespace's init, both ancestors already),
 * only lose them, and the start time tells a dead one's pid reused. Out of
 * memory, or a /proc we cannot read: the ones read so far (the parent at
 * least is checked apart).
 */
static void read_ancestors(struct evm_loop *loop)
{
	loop->ancestors_read = true;
	struct evm__pstat st;
	if (evm__proc_stat(getpid(), &st) < 0)
		return;
	uint64_t child = st.start;
	/* 0: a parent outside our pid namespace; 1: init, refused apart */
	for (pid_t x = getppid(); x > 1 && loop->nancestors < 4096; x = st.ppid) {
		/* younger than its child: the ancestor died as we read, its pid reused */
		if (evm__proc_stat(x, &st) < 0 || st.start > child)
			return;
		child = st.start;
		struct evm__ancestor *a = realloc(loop->ancestors, (loop->nancestors + 1) * sizeof(*a));
		if (!a)
			return;
		loop->ancestors = a;
		a[loop->nancestors++] = (struct evm__ancestor){.pid = x, .start = st.start};
	}
}

static bool is_ancestor(struct evm_loop *loop, pid_t pid, uint64_t start)
{
	if (pid == getppid())
		return true;
	if (!loop->ancestors_read)
		read_ancestors(loop);
	for (unsigned i = 0; i < loop->nancestors; i++)
		if (loop->ancestors[i].pid == pid && loop->ancestors[i].start == start)
			return true;
	return false;
}

int evm_proc_adopt(struct evm_loop *loop, const struct evm_adopt_opts *o, struct evm_proc **out)
{
	const unsigned kept = EVM_ADOPT_KEPT | EVM_ADOPT_PIDFD | EVM_ADOPT_START_TIME;
	if (out)
		*out = NULL;
	if (!loop || !o || o->pid <= 0 ||
	    (o->flags & ~(unsigned)(EVM_ADOPT_PIDFD | EVM_ADOPT_START_TIME | EVM_ADOPT_KEPT)) ||
	    ((o->flags & EVM_ADOPT_PIDFD) && o->pidfd < 0) ||
	    ((o->flags & EVM_ADOPT_KEPT) && (o->flags & kept) != kept))
		return -EINVAL;
	if (evm__pidmap_get(&loop->pids, o->pid))
		return -EEXIST;
	int pidfd = o->pidfd;
	if (!(o->flags & EVM_ADOPT_PIDFD) && (pidfd = evm__above_stdio(pidfd_open(o->pid, 0))) < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	struct evm__pstat f;
	pid_t self = getpid(); /* once: a re-exec adopts thousands */
	int r = o->flags & EVM_ADOPT_KEPT ? kept_identity(o, pidfd, self, &f)
					  : check_identity(o, pidfd, &f);
	/*
	 * Ourselves, an ancestor (the parent, the shell or runtime above it),
	 * init: evm_loop_free would SIGKILL them (the caller first). After the
	 * identity check: a recorded pid that now names one of them (reused: a
	 * restart of a container) is -ESRCH, "gone", as for any other process.
	 */
	if (r == 0 && (o->pid == self || o->pid == 1 ||
		       (f.ppid != self && is_ancestor(loop, o->pid, f.start)))) /* a child is none */
		r = -EINVAL;
	struct evm_proc *p = NULL;
	if (r == 0 && (evm__pidmap_reserve(&loop->pids) < 0 || !(p = evm__proc_new(loop))))
		r = -ENOMEM;
	if (r == 0 && o->handler && !(p->route = evm__route_get(loop, o->handler)))
		r = -ENOMEM;
	if (r < 0) {
		if (!(o->flags & EVM_ADOPT_PIDFD))
			close(pidfd);
		if (p)
			evm_proc_unref(p);
		return r;
	}
	p->cb = o->on_exit;
	p->data = o->data;
	p->kind |= EVM__K_ADOPTED;
	if (f.ppid != self)
		p->kind |= EVM__K_FOREIGN;
	if (f.pgid == o->pid)
		p->kind |= EVM__K_GROUP;
	p->adopt_sid = f.sid;
	set_start(p, f.start);
	evm__proc_keep_start(p, f.start); /* checked (read while it lived, or kept) */
	/* ours now; one kept across an exec came without FD_CLOEXEC */
	if (o->flags & EVM_ADOPT_PIDFD)
		(void)fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	evm__proc_attach(p, o->pid, pidfd);
	if (p->pidfd < 0) {
		/* no epoll slot: a foreign process cannot be watched through SIGCHLD */
		if (p->kind & EVM__K_FOREIGN)
			evm__warn(loop, -ENOMEM, "pid %d: adopted, but its exit cannot be watched",
				  (int)o->pid);
	}
	if (out)
		*out = evm_proc_ref(p);
	return 0;
}

bool evm_proc_adopted(const struct evm_proc *p)
{
	return p && (p->kind & EVM__K_ADOPTED);
}

int evm_proc_pidfd(const struct evm_proc *cp)
{
	if (!cp)
		return -EBADF;
	struct evm_proc *p = (struct evm_proc *)cp; /* the caller's view is const, the cache is not */
	pthread_mutex_lock(&evm__sig_mu);
	/*
	 * A child watched through SIGCHLD (reaper mode, or out of fds) gets
	 * one now: unreaped, its pid is still its own, and the reap that
	 * would free it takes this lock first (sets gone). The loop closes it
	 * with the proc's other state; it is not in epoll (SIGCHLD reaps).
	 */
	if (p->pidfd < 0 && !p->gone && p->pid > 0 && (p->kind & EVM__K_NOPIDFD) &&
	    !(p->kind & EVM__K_FOREIGN))
		p->pidfd = evm__above_stdio(pidfd_open(p->pid, 0));
	int fd = p->gone || p->pidfd < 0 ? -EBADF : p->pidfd; /* written after gone only */
	pthread_mutex_unlock(&evm__sig_mu);
	return fd;
}

int evm_loop_prepare_exec(struct evm_loop *loop)
{
	if (!loop)
		return -EINVAL;
	evm__spawner_stop(loop);
	return 0;
}

/*
 * evm_loop_free of a process we cannot reap: SIGKILL, then wait (through
 * the pidfd) until it is dead, so nothing is left running on return.
 */
void evm__adopt_kill_sync(struct evm_proc *p)
{
	if (p->pidfd >= 0 && evm_proc_signal(p, SIGKILL) == 0) {
		struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
		while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
			;
	}
	evm__proc_exited(p, NULL, NULL);
}
