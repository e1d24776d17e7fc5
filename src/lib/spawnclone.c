/*
 * spawnclone.c - the clone of a spawn: direct or through the spawn helper,
 * with or without a pidfd, into its cgroup at birth or not.
 *
 * Fast path: clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) from the loop thread:
 * no copy of our memory, the pidfd comes with the child, and we resume when
 * the child has exec'd or failed, so an exec error is returned here with its
 * errno (the child writes it into the request it shares with us).
 *
 * But a clone copies the caller's whole fd table, which holds one pidfd per
 * child: with 10,000 children every spawn would copy 10,000 fds. So the
 * child shares ours (CLONE_FILES) and takes a table of its own with the fds
 * below the highest it uses (child.c's own_fd_table, close_range's
 * UNSHARE). Once our table is large, a spawn that would copy hundreds that
 * way (it uses a high-numbered fd), or any where the child cannot do that
 * (before Linux 5.9 unshare copies the whole table; a filter may refuse
 * both), goes through the spawn helper (spawner.c): a small process with a
 * tiny fd table that clones with CLONE_PARENT, so children are still ours.
 * Either way the cost of a spawn does not grow with N.
 *
 * If no fd is left for a pidfd even after raising RLIMIT_NOFILE to its hard
 * limit, the child is still started and watched through SIGCHLD (one
 * warning event says so), rather than failing the spawn.
 *
 * EVM_SPAWN_CGROUP: clone3(CLONE_INTO_CGROUP) places the child in its cgroup
 * at birth, on both paths (the helper receives the cgroup fd with the
 * request). Without it (clone(), kernels before 5.7, and a kernel quirk after
 * cgroup.kill, see evm__spawn_clone) the child writes itself into
 * cgroup.procs before anything else: still before it can fork.
 *
 * Invariants: a started child is always watched (its pidfd, or SIGCHLD once
 * go_nopidfd ran) and a child that failed before exec is reaped here; pidfds
 * never take the last fds of RLIMIT_NOFILE (nofile_reserve).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

/* Past this many fds, a clone's copy of our fd table costs more than a round
 * trip to the spawn helper (measured: bench/README.md). */
#define HELPER_LIVE_THRESHOLD 512
#define HELPER_FD_THRESHOLD 1024
/* A direct child with fds below this to copy costs less than the round trip
 * (a copy and the exec's close of each: ~0.1 us an fd here). */
#define SHARE_KEEP_MAX 256

/* Raise RLIMIT_NOFILE's soft limit to the hard limit, once. */
static bool raise_nofile(struct evm_loop *loop)
{
	if (loop->nofile_raised)
		return false;
	loop->nofile_raised = true;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return false;
	rlim_t old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return false;
	evm__warn(loop, 0, "raised RLIMIT_NOFILE soft limit from %llu to %llu for pidfds",
		  (unsigned long long)old, (unsigned long long)rl.rlim_max);
	return true;
}

/*
 * Fds kept free for the application: pidfds stop this far short of
 * RLIMIT_NOFILE (1/16 of it, 16 to 256), and further children are watched
 * through SIGCHLD, so a program with a low hard limit still gets its own
 * open()s, and the loop its signalfd and eventfd.
 */
static int nofile_reserve(rlim_t cur)
{
	rlim_t r = cur / 16;
	return r < 16 ? 16 : r > 256 ? 256 : (int)r;
}

/* May a pidfd take fd number fd? Not inside the reserve (the soft limit is raised once first). */
static bool pidfd_room(struct evm_loop *loop, int fd)
{
	if (fd < loop->pidfd_max)
		return true;
	for (;;) {
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
			return true;
		loop->pidfd_max = rl.rlim_cur > (rlim_t)nofile_reserve(rl.rlim_cur)
				  ? (int)(rl.rlim_cur - (rlim_t)nofile_reserve(rl.rlim_cur)) : 0;
		if (fd < loop->pidfd_max)
			return true;
		if (!raise_nofile(loop))
			return false;
	}
}

/*
 * Grow our fd table before a clone has to. The kernel makes the pidfd
 * inside clone3, where the child already shares our table (CLONE_FILES),
 * and growing a shared table waits for an RCU grace period (expand_fdtable:
 * 10-30 ms here each time the table doubles past 64 fds: docs/BENCHMARKS.md).
 * Grown now, by this thread, the only user of the table between two spawns
 * (in a single-threaded program), it costs a copy and no wait. fd: the
 * pidfd just made. Grown while FD_TABLE_SLACK slots are still free above it:
 * the next spawn's pipes, made before its clone, must not fill the table
 * for its pidfd (they grow it at no cost when they need more).
 */
#define FD_TABLE_SLACK 16

static void fd_table_ahead(struct evm_loop *loop, int fd)
{
	int room = loop->fd_room ? loop->fd_room : (int)(8 * sizeof(long)); /* NR_OPEN_DEFAULT */
	loop->fd_room = room;
	if (fd < 0 || fd + 1 + FD_TABLE_SLACK < room)
		return;
	while (room <= fd + 1 + FD_TABLE_SLACK && room < INT_MAX / 2)
		room *= 2;
	loop->fd_room = room; /* tried once: past the limit the kernel cannot grow it either */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == 0)
		return;
	rlim_t top = (rlim_t)room - 1 < rl.rlim_cur ? (rlim_t)room - 1 : rl.rlim_cur - 1;
	if (top <= (rlim_t)fd)
		return;
	int t = fcntl(fd, F_DUPFD_CLOEXEC, (int)top); /* the table grows to hold it */
	if (t >= 0)
		close(t);
}

/* Out of fds for pidfds: watch further children through SIGCHLD. */
static int go_nopidfd(struct evm_loop *loop)
{
	/*
	 * Ignored, the kernel reaps the child itself and sends no SIGCHLD:
	 * without a pidfd nothing would ever tell of its exit (a wait on it
	 * would never return). No spawn then, rather than one lost for good.
	 */
	if (evm__sigchld_ignored()) {
		if (!loop->warned_nopidfd_ign) {
			loop->warned_nopidfd_ign = true;
			evm__warn(loop, -ECHILD, "SIGCHLD is ignored (SIG_IGN or SA_NOCLDWAIT) and no "
				  "file descriptor is left for a pidfd: a child's exit could not be seen, "
				  "so none is started (-EMFILE) until one is");
		}
		return -EMFILE;
	}
	if (loop->sigfd < 0 && loop->reserve_fd >= 0) {
		/* the reserve fd is there so this works when no fd is left */
		close(loop->reserve_fd);
		loop->reserve_fd = -1;
	}
	int r = evm__sigchld_enable(loop);
	if (r < 0)
		return r;
	if (!loop->warned_nopidfd) {
		loop->warned_nopidfd = true;
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		if (loop->force_nopidfd)
			evm__warn(loop, 0, "EVM_NO_PIDFD is set: watching children through SIGCHLD");
		else
			evm__warn(loop, -EMFILE,
				  "file descriptors are running out (RLIMIT_NOFILE %llu, %d kept free "
				  "for the program): watching further children through SIGCHLD instead of pidfds",
				  (unsigned long long)rl.rlim_cur, nofile_reserve(rl.rlim_cur));
	}
	return 0;
}

/* A pidfd inside the reserve: watch this child through SIGCHLD instead. */
static void pidfd_check_room(struct evm_loop *loop, int *pidfd)
{
	if (*pidfd >= 0 && !pidfd_room(loop, *pidfd) && go_nopidfd(loop) == 0) {
		close(*pidfd);
		*pidfd = -1;
	}
}

/* Reap a child that failed before exec (it has _exit'ed or is about to). */
static void reap_failed(pid_t pid, int pidfd)
{
	siginfo_t si;
	int r;
	do
		r = pidfd >= 0 ? waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL)
			       : waitid(P_PID, (id_t)pid, &si, WEXITED | __WALL);
	while (r < 0 && errno == EINTR);
	if (pidfd >= 0)
		close(pidfd);
}

/* a child that exited before its exec, touching nothing of ours: reaped, req as before it */
static void clone_again(pid_t pid, int *pidfd, struct evm__spawn_req *req)
{
	reap_failed(pid, *pidfd);
	*pidfd = -1;
	req->err = 0;
	req->stage = 0;
	req->started = 0;
}

/*
 * Our /proc/self/status, kept open (-1 without /proc or an fd); above 0-2,
 * where a program that closed its stdio would hand it to a child that
 * inherits them.
 */
static int status_fd(struct evm_loop *loop)
{
	if (loop->statusfd < 0) {
		loop->statusfd = evm__above_stdio(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
	}
	return loop->statusfd;
}

/*
 * The process's umask, for children of the spawn helper (which has the umask
 * of when it started): Umask of /proc/self/status, or the racy way without /proc.
 */
static mode_t current_umask(struct evm_loop *loop)
{
	status_fd(loop);
	char buf[4096];
	ssize_t n = loop->statusfd >= 0 ? pread(loop->statusfd, buf, sizeof(buf) - 1, 0) : -1;
	if (n > 0) {
		buf[n] = 0;
		char *at = strstr(buf, "\nUmask:");
		if (at)
			return (mode_t)strtoul(at + 7, NULL, 8);
	}
	mode_t mask = umask(022);
	umask(mask);
	return mask;
}

/*
 * A close-on-exec pipe whose ends are above 0-2, so they survive the child's
 * dup2 onto its stdio. Used for the exec error pipe (clone() without
 * CLONE_CLEAR_SIGHAND: an exec error may not come back through shared memory,
 * valgrind turns CLONE_VM|CLONE_VFORK into a fork) and a user namespace's sync.
 */
int evm__above_stdio(int fd)
{
	if (fd < 0 || fd > 2)
		return fd;
	int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	int e = errno;
	close(fd);
	errno = e;
	return up;
}

int evm__pipe_above_stdio(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	for (int i = 0; i < 2; i++)
		p[i] = evm__above_stdio(p[i]); /* must survive the child's dup2 onto 0-2 */
	if (p[0] < 0 || p[1] < 0) {
		if (p[0] >= 0)
			close(p[0]);
		if (p[1] >= 0)
			close(p[1]);
		return -EMFILE;
	}
	return 0;
}

/* one past the highest fd the child uses before its exec (at least 3: its stdio) */
static unsigned fds_used(const struct evm__spawn_req *r)
{
	int top = 2;
#define USES(fd) (top = (fd) > top ? (fd) : top)
	for (int i = 0; i < 3; i++)
		USES(r->fds[i]);
	for (size_t i = 0; i < r->nextra; i++)
		USES(r->extra[i].fd);
	for (size_t i = 0; i < r->nsetns; i++)
		USES(r->setns_fds[i]);
	USES(r->errfd);
	USES(r->cwd_fd);
	USES(r->parent_statusfd);
	USES(r->syncfd);
	USES(r->syncfd_w);
	if (r->cgroup_in_child)
		USES(r->cgroup_fd);
	if (r->flags & EVM_SPAWN_SETCTTY)
		USES(r->ctty);
#undef USES
	return (unsigned)top + 1;
}

/*
 * EVM_LOOP_SPAWN_LOCAL_CPU: the child sets itself up on our CPU, where we
 * sleep waiting for its exec, instead of on another one the kernel picks
 * for it (a fork goes to the idlest CPU; a busy one makes the child wait for
 * its turn there while ours idles): while other children live, the calling
 * thread's CPU mask is narrowed to the CPU it runs on for the clone, and the
 * child widens its own back just before its exec (child.c). 15-20% more
 * spawns a second of a child that exits at once, at 16-256 in flight, on an
 * idle machine, several times more on a loaded one; but a child with work
 * to do after its exec stays on our CPU until the kernel balances (the
 * exec does not move it), 40% fewer /bin/true a second: opt-in. With no
 * other child alive it costs more than it saves (the system calls) and is
 * skipped.
 *
 * Only for a thread nobody narrowed: its mask, the first time, is every
 * online CPU, and still the same at each spawn (else a user's affinity, a
 * cpuset, or CPUs that came or went: left alone). Both masks are widened
 * back with every bit set, which the kernel clamps to the cpuset (a child
 * joining a cgroup gets that cgroup's CPUs, as at any fork) and which, kept
 * as the "user mask" since Linux 6.2, restricts nothing later; the CPUs
 * read from sched_getaffinity would (they leave out CPUs offline then).
 * An affinity someone sets on this thread during the clone is kept: ours
 * is widened only if the mask is still the one CPU we set. Not with
 * namespaces or a cgroup the child joins itself (steps of their own), nor
 * with a controlling terminal (a refused child, below, would hang it up).
 */
static void every_cpu(cpu_set_t *s)
{
	memset(s, 0xff, sizeof(*s));
}

static bool pin_here(struct evm_loop *loop, const struct evm__spawn_req *req, int *cpu)
{
	cpu_set_t now;
	if (loop->no_pin || !loop->nlive || req->ns || req->nsetns || req->hostname ||
	    req->cgroup_in_child || (req->flags & EVM_SPAWN_SETCTTY) ||
	    sched_getaffinity(0, sizeof(now), &now) < 0)
		return false;
	if (!loop->pin_known) {
		loop->pin_known = true;
		if (CPU_COUNT(&now) < 2 || CPU_COUNT(&now) != get_nprocs()) {
			loop->no_pin = true;
			return false;
		}
		loop->pin_mask = now;
	}
	*cpu = sched_getcpu();
	if (!CPU_EQUAL(&now, &loop->pin_mask) || *cpu < 0 || *cpu >= CPU_SETSIZE ||
	    !CPU_ISSET(*cpu, &now))
		return false;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(*cpu, &one);
	return sched_setaffinity(0, sizeof(one), &one) == 0;
}

static void unpin(struct evm_loop *loop, int cpu)
{
	cpu_set_t now;
	if (sched_getaffinity(0, sizeof(now), &now) < 0 || CPU_COUNT(&now) != 1 ||
	    !CPU_ISSET(cpu, &now))
		return; /* changed meanwhile: theirs */
	cpu_set_t every;
	every_cpu(&every);
	if (sched_setaffinity(0, sizeof(every), &every) < 0) {
		loop->no_pin = true;
		evm__warn(loop, -errno, "spawn: the loop thread's CPU affinity could not be widened "
			  "back from CPU %d", cpu);
	}
}

uint64_t evm__pinned_spawns(const struct evm_loop *loop)
{
	return loop->pinned;
}

/*
 * clone3 with CLONE_VFORK (the kernel clears our handlers in the child: no
 * need to block signals around it): the pid, -errno, or 0 to try again
 * (clone3 turned off, *plain_clone, or the child moves itself to its cgroup).
 *
 * CLONE_FILES: a clone copies our whole fd table, one pidfd per child, and
 * the exec then closes every copy one by one: two passes over N fds per
 * spawn, most of what a spawn costs us beyond the bare loop's at a few
 * hundred children. Sharing the table instead, the child copies only the
 * fds it uses (keep_fds) before it touches any, and the exec has nothing
 * more to close. Not with EVM_SPAWN_INHERIT_FDS: that child keeps them all.
 */
static pid_t clone_vfork3(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
			  bool want_pidfd, bool *plain_clone)
{
	req->reset_signals = true;
	req->handlers_cleared = true;
	req->parent_statusfd = status_fd(loop); /* we wait for its exec (child.c's reset_signals) */
	bool into = req->cgroup_fd >= 0 && !req->cgroup_in_child;
	bool share = !(req->flags & EVM_SPAWN_INHERIT_FDS) && !loop->no_share_files;
	req->keep_fds = share ? fds_used(req) : 0;
	req->pidfd_at = share && want_pidfd ? pidfd : NULL;
	struct clone_args a = {
		.flags = CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND | req->ns |
			 (want_pidfd ? CLONE_PIDFD : 0) | (into ? CLONE_INTO_CGROUP : 0) |
			 (share ? CLONE_FILES : 0),
		.pidfd = (uint64_t)(uintptr_t)pidfd,
		.exit_signal = SIGCHLD,
		.stack = (uint64_t)(uintptr_t)loop->stack,
		.stack_size = loop->stack_size,
		.cgroup = into ? (uint64_t)req->cgroup_fd : 0,
	};
	cpu_set_t every, none;
	int cpu = -1;
	bool pinned = pin_here(loop, req, &cpu);
	if (pinned) {
		every_cpu(&every);
		CPU_ZERO(&none);
	}
	req->cpus = !pinned ? NULL : loop->test_refuse_cpus ? &none : &every;
	pid_t pid = evm__clone3(&a, evm__spawn_child, req);
	if (pinned)
		unpin(loop, cpu);
	req->cpus = NULL;
	req->keep_fds = 0; /* the child is past its exec: a retry through clone() shares nothing */
	req->pidfd_at = NULL;
	if (req->whole_table)
		loop->whole_tables = true; /* use_helper: a big table costs every spawn here again */
	if (pinned && pid > 0 && req->err && req->cpus_refused) {
		/*
		 * It could not widen its mask back (an LSM or seccomp rule): it
		 * exited before its exec, its changes its own; this loop's
		 * children set up anywhere from now on.
		 */
		clone_again(pid, pidfd, req);
		req->cpus_refused = 0;
		loop->no_pin = true;
		return 0;
	}
	if (pinned && pid > 0)
		loop->pinned++;
	if (share && pid > 0 && req->err && req->stage == EVM_STAGE_FORK) {
		/*
		 * Neither close_range nor unshare let it have a table of its own
		 * (a seccomp filter refuses both): it touched none of ours and
		 * exited; this loop copies tables at the clone from now on.
		 */
		clone_again(pid, pidfd, req);
		loop->no_share_files = true;
		return 0;
	}
	if (pid == -ENOSYS || ((pid == -EINVAL || pid == -EPERM) && !loop->clone3_worked)) {
		/* before any clone3 worked, EINVAL is the kernel's (no
		 * CLONE_CLEAR_SIGHAND before 5.5), and EPERM a seccomp
		 * filter's (container runtimes refused clone3 so before they
		 * settled on ENOSYS), only for a plain request; with a
		 * namespace or a cgroup it may be the request's: clone()
		 * decides this one and clone3 stays in use */
		if (pid == -ENOSYS || (!req->ns && !into))
			loop->no_clone3 = true; /* old kernel or architecture */
		else
			*plain_clone = true;
		return 0;
	}
	if (into && (pid == -EINVAL || pid == -E2BIG)) {
		/* clone3 without CLONE_INTO_CGROUP (5.3-5.6): the child moves itself */
		req->cgroup_in_child = true;
		return 0;
	}
	if (pid > 0)
		loop->clone3_worked = true;
	return pid;
}

/*
 * clone() with every signal blocked around it, the exec error through a pipe
 * (and a user namespace's child waiting on a second one for its maps): the
 * pid, -1 with *e the clone's errno, or 0 with *e the errno of its setup.
 */
static pid_t clone_plain(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
			 bool want_pidfd, int *e)
{
	int ep[2], sync = -1;
	if ((*e = -evm__pipe_above_stdio(ep)) != 0)
		return 0;
	if ((req->ns & CLONE_NEWUSER) && (*e = -evm__userns_pipe(req, &sync)) != 0) {
		close(ep[0]);
		close(ep[1]);
		return 0;
	}
	sigset_t all, old;
	sigfillset(&all);
	/* the child must not run our handlers before it resets them */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	req->reset_signals = true;
	req->handlers_cleared = false;
	/* our status tells the child what it has only while we wait for its exec */
	req->parent_statusfd = sync >= 0 ? -1 : status_fd(loop);
	req->errfd = ep[1];
	req->cgroup_in_child = req->cgroup_fd >= 0;
	int flags = CLONE_VM | (sync >= 0 ? 0 : CLONE_VFORK) | SIGCHLD | (int)req->ns |
		    (want_pidfd ? CLONE_PIDFD : 0);
	pid_t pid = clone(evm__spawn_child, loop->stack + loop->stack_size, flags, req, pidfd);
	*e = errno;
	if (sync >= 0)
		evm__userns_release(pid, req, sync);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	req->errfd = -1;
	close(ep[1]);
	int msg[2];
	if (pid > 0 && read(ep[0], msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
		req->err = msg[0];
		req->stage = msg[1];
	}
	close(ep[0]);
	req->syncfd = -1; /* the child is past it */
	return pid;
}

static pid_t clone_direct(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
			  struct evm_spawn_error *err)
{
	/* reaper mode with few children: SIGCHLD names the exit, no pidfd needed (reap.c) */
	bool by_sigchld = evm__reap_by_sigchld(loop);
	bool want_pidfd = !loop->force_nopidfd && !by_sigchld, plain_clone = false;
	for (;;) {
		if (!want_pidfd && !by_sigchld && go_nopidfd(loop) < 0) {
			err->stage = EVM_STAGE_PIDFD;
			return -EMFILE;
		}
		*pidfd = -1;
		pid_t pid;
		int e;
		/* a user namespace's child waits for its maps: clone() without CLONE_VFORK */
		if (!loop->no_clone3 && !plain_clone && !(req->ns & CLONE_NEWUSER)) {
			/* EVM_SPAWN_NOWAIT where it can be (nowait.c), else the waiting clone */
			pid = evm__nowait_clone(loop, req, pidfd, want_pidfd);
			if (pid == 0)
				pid = clone_vfork3(loop, req, pidfd, want_pidfd, &plain_clone);
			if (pid == 0)
				continue;
			e = pid < 0 ? -pid : 0;
		} else {
			pid = clone_plain(loop, req, pidfd, want_pidfd, &e);
			if (pid == 0) {
				err->stage = EVM_STAGE_SETUP;
				return -e;
			}
		}
		if (pid > 0) {
			pidfd_check_room(loop, pidfd);
			fd_table_ahead(loop, *pidfd);
			return pid;
		}
		if (e == EMFILE && want_pidfd) {
			/* no fd for the pidfd: raise the limit once, else go without */
			if (!raise_nofile(loop))
				want_pidfd = false;
			continue;
		}
		err->stage = evm__clone_stage(req->ns, req->cgroup_fd >= 0, e);
		return -e;
	}
}

static pid_t clone_helper(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
			  struct evm_spawn_error *err)
{
	/* make sure a slot is free for the pidfd before the child runs: no undoing a started child */
	int slot = -1;
	if (!loop->force_nopidfd) {
		slot = fcntl(loop->epfd, F_DUPFD_CLOEXEC, 0);
		if (slot < 0 && errno == EMFILE && raise_nofile(loop))
			slot = fcntl(loop->epfd, F_DUPFD_CLOEXEC, 0);
		if (slot >= 0 && !pidfd_room(loop, slot)) {
			close(slot); /* inside the application's reserve */
			slot = -1;
		}
	}
	if (slot < 0 && go_nopidfd(loop) < 0) {
		err->stage = EVM_STAGE_PIDFD;
		return -EMFILE;
	}
	/*
	 * The helper is a snapshot of the process when it started: hand over
	 * what commonly changes since (cwd, umask, the fd limit). Other process
	 * attributes (nice, affinity, cgroup, other rlimits) are the snapshot's.
	 */
	struct evm__spawn_req hreq = *req;
	hreq.reset_signals = false; /* the helper's dispositions are all default */
	if (!(hreq.flags & EVM_SPAWN_UMASK)) {
		hreq.flags |= EVM_SPAWN_UMASK;
		hreq.umask = current_umask(loop);
	}
	if (!hreq.user_nofile) {
		hreq.restore_nofile = true;
		if (hreq.flags & EVM_SPAWN_KEEP_NOFILE)
			getrlimit(RLIMIT_NOFILE, &hreq.nofile);
	}
	int cwd_fd = -1;
	if (!hreq.cwd || hreq.cwd[0] != '/') {
		cwd_fd = evm__above_stdio(open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)); /* not stdin */
		if (cwd_fd < 0 && errno == EMFILE && raise_nofile(loop))
			cwd_fd = evm__above_stdio(open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
		if (cwd_fd < 0) {
			/* without it the child would start in the helper's cwd, not ours */
			int e = errno;
			if (slot >= 0)
				close(slot);
			err->stage = EVM_STAGE_SETUP;
			return -e;
		}
	}
	hreq.cwd_fd = cwd_fd; /* the spawner rewrites the field: keep our copy */
	if (slot >= 0)
		close(slot); /* the pidfd arrives with the helper's reply and takes it */
	int fd;
	pid_t pid = evm__spawner_spawn(loop, &hreq, err, &fd);
	if (cwd_fd >= 0)
		close(cwd_fd);
	req->err = hreq.err;
	req->stage = hreq.stage;
	req->started = hreq.started;
	*pidfd = -1;
	if (slot < 0) {
		if (fd >= 0)
			close(fd); /* watched through SIGCHLD, as asked */
	} else if (pid > 0 && (*pidfd = fd) < 0 && go_nopidfd(loop) < 0) {
		/* another thread took the slot and nothing can watch the child */
		kill(pid, SIGKILL);
		reap_failed(pid, -1);
		err->stage = EVM_STAGE_PIDFD;
		return -EMFILE;
	}
	return pid;
}

bool evm__fd_table_big(const struct evm_loop *loop)
{
	return loop->nlive >= HELPER_LIVE_THRESHOLD || loop->high_fd >= HELPER_FD_THRESHOLD;
}

static bool use_helper(struct evm_loop *loop, const struct evm__spawn_req *req)
{
#ifdef EVM_NO_SPAWN_HELPER
	return false; /* built without it: the static evmon-init spawns one child */
#endif
	if ((req->flags & EVM_SPAWN_INHERIT_FDS) || req->nextra || evm__ns_direct_only(req))
		return false; /* the helper does not have the caller's fds, nor writes maps */
	switch (loop->spawn_mode) {
	case EVM__SPAWN_DIRECT:
		return false;
	case EVM__SPAWN_HELPER:
		break;
	case EVM__SPAWN_AUTO:
		/*
		 * Our table holds a pidfd per child, and maybe many fds of the
		 * caller's; a direct child shares it and copies the fds below
		 * the highest it uses (clone_vfork3). With a big table that is
		 * cheap only if the fds it uses are low ones: else, or where a
		 * child cannot share (a filter refusing close_range and unshare,
		 * or before Linux 5.9 an unshare copying it all), the helper's
		 * round trip is the cheaper way.
		 */
		if (!evm__fd_table_big(loop))
			return false;
		if (!loop->no_share_files && !loop->whole_tables &&
		    fds_used(req) <= SHARE_KEEP_MAX && loop->statusfd < SHARE_KEEP_MAX)
			return false;
		break;
	}
	return evm__spawner_start(loop) == 0;
}

static pid_t clone_child(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
			 struct evm_spawn_error *err)
{
	pid_t pid = -ENOTCONN;
	if (use_helper(loop, req))
		pid = clone_helper(loop, req, pidfd, err);
	if (pid == -ENOTCONN) { /* no helper after all */
		pid = clone_direct(loop, req, pidfd, err);
#ifdef EVM_RELEASE_SPAWN_STACK
		/* the child is past its exec: what it touched of the stack goes back (an init spawns once) */
		madvise(loop->stack + 4096, loop->stack_size - 4096, MADV_DONTNEED);
#endif
	}
	/*
	 * A pidfd on 0-2 (a program that closed its stdin) would be the stdin
	 * of the next child that inherits it: above them, if there is room.
	 */
	if (pid > 0 && *pidfd >= 0 && *pidfd < 3) {
		int up = fcntl(*pidfd, F_DUPFD_CLOEXEC, 3);
		if (up >= 0) {
			close(*pidfd);
			*pidfd = up;
		}
	}
	return pid;
}

/* Clone the child (again without CLONE_INTO_CGROUP if Linux killed it at birth); its pid or -errno. */
pid_t evm__spawn_clone(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
			struct evm_spawn_error *err)
{
	pid_t pid = clone_child(loop, req, pidfd, err);
	if (pid > 0 && req->cgroup_fd >= 0 && !req->cgroup_in_child && !req->started && !req->err) {
		/*
		 * Killed before its first instruction: after a cgroup.kill of
		 * the target, Linux (6.18 at least) compares its kill counter
		 * with that of *our* cgroup and SIGKILLs every child cloned
		 * into it. A child that moves itself is not affected, and it
		 * still moves before it can fork anything.
		 */
		reap_failed(pid, *pidfd);
		req->cgroup_in_child = true;
		pid = clone_child(loop, req, pidfd, err);
	}
	if (pid > 0 && req->err) {
		/* the child failed between clone and exec and told us why */
		reap_failed(pid, *pidfd);
		err->stage = req->stage;
		return -req->err;
	}
	return pid;
}
