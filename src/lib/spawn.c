/*
 * spawn.c - starting a child: checking options, stdio, and the clone.
 *
 * Fast path: clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) from the loop thread:
 * no copy of our memory, the pidfd comes with the child, and we resume when
 * the child has exec'd or failed, so an exec error is returned here with its
 * errno (the child writes it into the request it shares with us).
 *
 * But clone copies the caller's whole fd table, which holds one pidfd per
 * child: with 10,000 children every spawn would copy 10,000 fds. Once our
 * table is large, spawns go through the spawn helper (spawner.c), a small
 * process with a tiny fd table that clones with CLONE_PARENT, so children
 * are still ours. Either way the cost of a spawn does not grow with N.
 *
 * If no fd is left for a pidfd even after raising RLIMIT_NOFILE to its hard
 * limit, the child is still started and watched through SIGCHLD (one
 * warning event says so), rather than failing the spawn.
 *
 * EVM_SPAWN_CGROUP: clone3(CLONE_INTO_CGROUP) places the child in its cgroup
 * at birth, on both paths (the helper receives the cgroup fd with the
 * request). Without it (clone(), kernels before 5.7, and a kernel quirk after
 * cgroup.kill, see evm__spawn_local) the child writes itself into
 * cgroup.procs before anything else: still before it can fork.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Past this many fds, a clone's copy of our fd table costs more than a round
 * trip to the spawn helper (measured: bench/README.md). */
#define HELPER_LIVE_THRESHOLD 512
#define HELPER_FD_THRESHOLD 1024

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

const char *evm_spawn_stage_name(enum evm_spawn_stage stage)
{
	static const char *const names[] = {
		[EVM_STAGE_NONE] = "none",	 [EVM_STAGE_SETUP] = "setup",
		[EVM_STAGE_FORK] = "fork",	 [EVM_STAGE_PIDFD] = "pidfd",
		[EVM_STAGE_SESSION] = "setsid",	 [EVM_STAGE_RLIMIT] = "setrlimit",
		[EVM_STAGE_GROUPS] = "setgroups", [EVM_STAGE_GID] = "setgid",
		[EVM_STAGE_UID] = "setuid",	 [EVM_STAGE_CWD] = "chdir",
		[EVM_STAGE_STDIO] = "stdio",	 [EVM_STAGE_PDEATHSIG] = "pdeathsig",
		[EVM_STAGE_EXEC] = "exec",	 [EVM_STAGE_CGROUP] = "cgroup",
		[EVM_STAGE_NICE] = "nice",	 [EVM_STAGE_OOM_SCORE_ADJ] = "oom_score_adj",
		[EVM_STAGE_NAMESPACE] = "namespace", [EVM_STAGE_IDMAP] = "idmap",
		[EVM_STAGE_SETNS] = "setns",	 [EVM_STAGE_HOSTNAME] = "sethostname",
		[EVM_STAGE_CTTY] = "ctty",
	};
	if ((unsigned)stage >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[stage];
}

static const unsigned known_flags = EVM_SPAWN_SETSID | EVM_SPAWN_SETPGID | EVM_SPAWN_SETUID |
				    EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS | EVM_SPAWN_UMASK |
				    EVM_SPAWN_NO_PATH | EVM_SPAWN_KEEP_NOFILE | EVM_SPAWN_INHERIT_FDS |
				    EVM_SPAWN_LISTEN_PID | EVM_SPAWN_CGROUP | EVM_SPAWN_NICE |
				    EVM_SPAWN_OOM_SCORE_ADJ | EVM_SPAWN_SETCTTY;

static int check_opts(const struct evm_spawn_opts *o, bool have_out)
{
	if (!o || !o->argv || !o->argv[0])
		return -EINVAL;
	if (o->flags & ~known_flags)
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_SETGROUPS) && o->ngroups && !o->groups)
		return -EINVAL;
	if (o->nrlimits && !o->rlimits)
		return -EINVAL;
	if (o->pdeath_signal < 0 || o->pdeath_signal >= NSIG)
		return -EINVAL;
	if (o->timeout_signal < 0 || o->timeout_signal >= NSIG)
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_NICE) && (o->nice < -20 || o->nice > 19))
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_OOM_SCORE_ADJ) && (o->oom_score_adj < -1000 || o->oom_score_adj > 1000))
		return -EINVAL;
	if (o->file && !*o->file)
		return -ENOENT;
	/* (uid_t)-1 means "no change" to setresuid: the child would keep our ids */
	if ((o->flags & EVM_SPAWN_SETUID) && o->uid == (uid_t)-1)
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_SETGID) && o->gid == (gid_t)-1)
		return -EINVAL;
	for (char *const *e = o->env_extra; e && *e; e++)
		if (!strchr(*e, '='))
			return -EINVAL;
	/* the child keeps a copy of each on its small stack */
	if ((o->nextra_fds && !o->extra_fds) || o->nextra_fds > 1024)
		return -EINVAL;
	for (size_t i = 0; i < o->nextra_fds; i++) {
		if (o->extra_fds[i].target < 3)
			return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (o->extra_fds[j].target == o->extra_fds[i].target)
				return -EINVAL;
		if (o->extra_fds[i].fd < 0 || fcntl(o->extra_fds[i].fd, F_GETFD) < 0)
			return -EBADF;
	}
	int r = evm__ns_check(o);
	if (r < 0)
		return r;
	for (int i = 0; i < 3; i++) {
		switch (o->stdio[i].mode) {
		case EVM_STDIO_INHERIT:
		case EVM_STDIO_NULL:
			break;
		case EVM_STDIO_FD:
			if (o->stdio[i].fd < 0 || fcntl(o->stdio[i].fd, F_GETFD) < 0)
				return -EBADF;
			break;
		case EVM_STDIO_PIPE:
			if (!have_out)
				return -EINVAL;
			break;
		case EVM_STDIO_CAPTURE:
			if (i == 0)
				return -EINVAL;
			break;
		case EVM_STDIO_STDOUT:
			if (i != 2)
				return -EINVAL;
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static const char *find_path(char *const *envp)
{
	if (envp) {
		for (char *const *e = envp; *e; e++)
			if (strncmp(*e, "PATH=", 5) == 0)
				return *e + 5;
	}
	const char *p = getenv("PATH");
	return p ? p : DEFAULT_PATH;
}

static size_t key_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : strlen(kv);
}

static bool same_key(const char *a, const char *b)
{
	size_t n = key_len(a);
	return n == key_len(b) && strncmp(a, b, n) == 0;
}

/* base + extra, an extra replacing a base entry of the same key (the last extra wins) */
static char **merge_env(char *const *base, char *const *extra)
{
	size_t nb = 0, ne = 0, k = 0;
	while (base[nb])
		nb++;
	while (extra[ne])
		ne++;
	char **v = malloc((nb + ne + 1) * sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < nb; i++) {
		bool replaced = false;
		for (size_t j = 0; j < ne && !replaced; j++)
			replaced = same_key(base[i], extra[j]);
		if (!replaced)
			v[k++] = base[i];
	}
	for (size_t j = 0; j < ne; j++) {
		bool later = false;
		for (size_t m = j + 1; m < ne && !later; m++)
			later = same_key(extra[j], extra[m]);
		if (!later)
			v[k++] = extra[j];
	}
	v[k] = NULL;
	return v;
}

static int devnull(struct evm_loop *loop)
{
	if (loop->devnull < 0)
		loop->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	return loop->devnull;
}

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

/* Out of fds for pidfds: watch further children through SIGCHLD. */
static int go_nopidfd(struct evm_loop *loop)
{
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
		struct sigaction sa;
		if (sigaction(SIGCHLD, NULL, &sa) == 0 &&
		    (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT)))
			evm__warn(loop, -ECHILD,
				  "SIGCHLD is ignored (SIG_IGN or SA_NOCLDWAIT): the kernel reaps children "
				  "without a pidfd itself, and their exits cannot be reported");
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

/*
 * The process's umask, for children of the spawn helper (which has the umask
 * of when it started): Umask of /proc/self/status, or the racy way without /proc.
 */
static mode_t current_umask(struct evm_loop *loop)
{
	if (loop->statusfd < 0)
		loop->statusfd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
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
int evm__pipe_above_stdio(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	for (int i = 0; i < 2; i++) {
		if (p[i] < 3) { /* must survive the child's dup2 onto 0-2 */
			int fd = fcntl(p[i], F_DUPFD_CLOEXEC, 3);
			close(p[i]);
			p[i] = fd;
		}
	}
	if (p[0] < 0 || p[1] < 0) {
		if (p[0] >= 0)
			close(p[0]);
		if (p[1] >= 0)
			close(p[1]);
		return -EMFILE;
	}
	return 0;
}

/*
 * clone3 with CLONE_VFORK (the kernel clears our handlers in the child: no
 * need to block signals around it): the pid, -errno, or 0 to try again
 * (clone3 turned off, *plain_clone, or the child moves itself to its cgroup).
 */
static pid_t clone_vfork3(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
			  bool want_pidfd, bool *plain_clone)
{
	req->reset_signals = true;
	bool into = req->cgroup_fd >= 0 && !req->cgroup_in_child;
	struct clone_args a = {
		.flags = CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND | req->ns |
			 (want_pidfd ? CLONE_PIDFD : 0) | (into ? CLONE_INTO_CGROUP : 0),
		.pidfd = (uint64_t)(uintptr_t)pidfd,
		.exit_signal = SIGCHLD,
		.stack = (uint64_t)(uintptr_t)loop->stack,
		.stack_size = loop->stack_size,
		.cgroup = into ? (uint64_t)req->cgroup_fd : 0,
	};
	pid_t pid = evm__clone3(&a, evm__spawn_child, req);
	if (pid == -ENOSYS || (pid == -EINVAL && !loop->clone3_worked)) {
		/* before any clone3 worked, EINVAL is the kernel's (no
		 * CLONE_CLEAR_SIGHAND before 5.5) only for a plain request;
		 * with a namespace or a cgroup it may be the request's:
		 * clone() decides this one and clone3 stays in use */
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
	bool want_pidfd = !loop->force_nopidfd, plain_clone = false;
	for (;;) {
		if (!want_pidfd && go_nopidfd(loop) < 0) {
			err->stage = EVM_STAGE_PIDFD;
			return -EMFILE;
		}
		*pidfd = -1;
		pid_t pid;
		int e;
		/* a user namespace's child waits for its maps: clone() without CLONE_VFORK */
		if (!loop->no_clone3 && !plain_clone && !(req->ns & CLONE_NEWUSER)) {
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
	if (!hreq.cwd || hreq.cwd[0] != '/')
		cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
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
		/* our table holds a pidfd per child, and maybe many fds of the caller's */
		if (loop->nlive < HELPER_LIVE_THRESHOLD && loop->high_fd < HELPER_FD_THRESHOLD)
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
	if (pid == -ENOTCONN) /* no helper after all */
		pid = clone_direct(loop, req, pidfd, err);
	return pid;
}

/* The request the child reads: our options, in the form it needs them. */
static void req_init(struct evm_loop *loop, const struct evm_spawn_opts *o, struct evm__spawn_req *req)
{
	*req = (struct evm__spawn_req){
		.file = o->file ? o->file : o->argv[0],
		.argv = o->argv,
		.envp = o->envp ? o->envp : environ,
		.cwd = o->cwd,
		.flags = o->flags,
		.pgid = o->pgid,
		.uid = o->uid,
		.gid = o->gid,
		.groups = o->groups,
		.ngroups = o->ngroups,
		.umask = o->umask,
		.rlimits = o->rlimits,
		.nrlimits = o->nrlimits,
		.nice = o->nice,
		.oom_score_adj = o->oom_score_adj,
		.pdeath_signal = o->pdeath_signal,
		.cgroup_fd = (o->flags & EVM_SPAWN_CGROUP) ? o->cgroup_fd : -1,
		.extra = o->extra_fds,
		.nextra = o->nextra_fds,
		.ns = o->namespaces,
		.uid_map = o->uid_map,
		.nuid_map = o->nuid_map,
		.gid_map = o->gid_map,
		.ngid_map = o->ngid_map,
		.syncfd = -1,
		.setns_fds = o->setns_fds,
		.nsetns = o->nsetns_fds,
		.hostname = o->hostname,
		.ctty = o->ctty,
		.parent_pid = loop->pid,
		.fds = {-1, -1, -1},
		.cwd_fd = -1,
		.errfd = -1,
	};
	req->restore_nofile = loop->nofile_raised && !(o->flags & EVM_SPAWN_KEEP_NOFILE);
	for (size_t i = 0; i < o->nrlimits; i++)
		if (o->rlimits[i].resource == RLIMIT_NOFILE)
			req->user_nofile = true;
	if (req->user_nofile)
		req->restore_nofile = false;
	req->nofile = loop->nofile0;
}

/*
 * env_extra and LISTEN_PID merged into the environment (*merged, to free;
 * it points to the strings, not copies), then PATH looked up in the result.
 * listen_pid is the caller's buffer "LISTEN_PID=" with room for the digits.
 */
static int req_env(const struct evm_spawn_opts *o, struct evm__spawn_req *req, char *listen_pid,
		   char ***merged)
{
	char *const lp_extra[] = {listen_pid, NULL};
	*merged = NULL;
	for (int k = 0; k < 2; k++) {
		char *const *extra = k == 0 ? o->env_extra : (o->flags & EVM_SPAWN_LISTEN_PID) ? lp_extra : NULL;
		if (!extra)
			continue;
		char **m = merge_env(req->envp, extra);
		free(*merged);
		if (!(*merged = m))
			return -ENOMEM;
		req->envp = *merged;
	}
	if (o->flags & EVM_SPAWN_LISTEN_PID)
		req->listen_pid = listen_pid + sizeof("LISTEN_PID=") - 1;
	req->path = (o->flags & EVM_SPAWN_NO_PATH) ? NULL : find_path(req->envp);
	return 0;
}

/* The child's stdio: /dev/null, a given fd, or one end of a new pipe (ours[i] keeps the other). */
static int stdio_prepare(struct evm_loop *loop, const struct evm_spawn_opts *o,
			 struct evm__spawn_req *req, int ours[3], int theirs[3])
{
	for (int i = 0; i < 3; i++) {
		switch (o->stdio[i].mode) {
		case EVM_STDIO_INHERIT:
			break;
		case EVM_STDIO_NULL:
			if ((req->fds[i] = devnull(loop)) < 0)
				return -errno;
			break;
		case EVM_STDIO_FD:
			req->fds[i] = o->stdio[i].fd;
			break;
		case EVM_STDIO_PIPE:
		case EVM_STDIO_CAPTURE: {
			int pp[2];
			if (pipe2(pp, O_CLOEXEC) < 0)
				return -errno;
			ours[i] = i == 0 ? pp[1] : pp[0];
			theirs[i] = i == 0 ? pp[0] : pp[1];
			fcntl(ours[i], F_SETFL, O_NONBLOCK);
			req->fds[i] = theirs[i];
			break;
		}
		case EVM_STDIO_STDOUT:
			/* after slot 1: its fd, or our fd 1 it inherits (-2: closed, as that one) */
			req->fds[i] = req->fds[1] >= 0 ? req->fds[1] : fcntl(1, F_GETFD) >= 0 ? 1 : -2;
			break;
		}
	}
	return 0;
}

/* Clone the child (again without CLONE_INTO_CGROUP if Linux killed it at birth); its pid or -errno. */
static pid_t start_child(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
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

/* The child runs: our ends of its pipes, its callback, and the pid map and epoll. */
static void proc_attach(struct evm_loop *loop, struct evm_proc *p, const struct evm_spawn_opts *o,
			pid_t pid, int pidfd, int ours[3], int theirs[3])
{
	for (int i = 0; i < 3; i++) {
		if (theirs[i] >= 0)
			close(theirs[i]);
		if (o->stdio[i].mode == EVM_STDIO_CAPTURE && evm__capture_start(p, i, ours[i], o->capture_max) < 0)
			ours[i] = (close(ours[i]), -1); /* no memory: the child gets EPIPE */
		else if (o->stdio[i].mode != EVM_STDIO_CAPTURE)
			p->pipes[i] = ours[i];
	}
	p->cb = o->on_exit;
	p->data = o->data;
	if ((o->flags & (EVM_SPAWN_SETSID | EVM_SPAWN_SETCTTY)) ||
	    ((o->flags & EVM_SPAWN_SETPGID) && o->pgid == 0))
		p->flags |= EVM__P_GROUP;
	if (pidfd >= 0)
		loop->high_fd = pidfd;
	evm__proc_attach(p, pid, pidfd);
}

/* A spawn that failed: close what it opened and drop the proc. */
static void spawn_undo(struct evm_loop *loop, struct evm_proc *p, int ours[3], int theirs[3])
{
	for (int i = 0; i < 3; i++) {
		if (ours[i] >= 0)
			close(ours[i]);
		if (theirs[i] >= 0)
			close(theirs[i]);
	}
	if (p) {
		evm_timer_cancel(p->deadline);
		if (p->route)
			evm__route_put(loop, p->route);
		p->route = NULL;
		evm_proc_unref(p);
	}
}

int evm__spawn_local(struct evm_loop *loop, const struct evm_spawn_opts *o, struct evm_proc **out)
{
	struct evm_spawn_error errbuf = {0}, *err = o && o->error ? o->error : &errbuf;
	err->stage = EVM_STAGE_SETUP;
	err->error = 0;
	int r = check_opts(o, out != NULL);
	if (r == 0 && (o->flags & EVM_SPAWN_CGROUP) && o->cgroup_fd < 0) {
		err->stage = EVM_STAGE_CGROUP;
		r = -EBADF;
	}
	if (r < 0) {
		err->error = -r;
		return r;
	}

	struct evm__spawn_req req;
	req_init(loop, o, &req);
	char **merged;
	/* EVM_SPAWN_LISTEN_PID: the child writes its pid after the '=' (room for any pid_t) */
	char listen_pid[sizeof("LISTEN_PID=") + 11] = "LISTEN_PID=";
	if ((r = req_env(o, &req, listen_pid, &merged)) < 0) {
		err->error = -r;
		return r;
	}

	int ours[3] = {-1, -1, -1}, theirs[3] = {-1, -1, -1};
	int pidfd = -1;
	struct evm_proc *p = evm__proc_new(loop);
	if (!p || (o->handler && !(p->route = evm__route_get(loop, o->handler)))) {
		r = -ENOMEM;
		goto fail;
	}
	/*
	 * Room in the pid map before there is a child: a child we could not
	 * look up by pid would be taken for an orphan by a reaper's scan.
	 */
	if (evm__pidmap_reserve(&loop->pids) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = stdio_prepare(loop, o, &req, ours, theirs)) < 0)
		goto fail;

	/* the child's time starts now: evm_spawn may take a while to return */
	p->start_mono = evm__mono_ns();
	p->start_real = evm__real_ns();
	/* armed before the child exists: it cannot fire before we return to the loop */
	if ((r = evm__proc_timeout(p, o)) < 0)
		goto fail;
	pid_t pid = start_child(loop, &req, &pidfd, err);
	if (pid < 0) {
		r = pid;
		goto fail;
	}
	proc_attach(loop, p, o, pid, pidfd, ours, theirs);
	err->stage = EVM_STAGE_NONE;

	struct evm_event ev = {.type = EVM_EV_SPAWN,
			       .pid = pid,
			       .proc = p,
			       .name = p->route ? evm__route_name(p->route) : NULL};
	evm__emit(loop, &ev);
	if (out)
		*out = evm_proc_ref(p);
	free(merged);
	return 0;

fail:
	free(merged);
	if (err->stage == EVM_STAGE_NONE || err->stage == EVM_STAGE_SETUP)
		err->stage = EVM_STAGE_SETUP;
	err->error = -r;
	spawn_undo(loop, p, ours, theirs);
	return r;
}

int evm_spawn(struct evm_loop *loop, const struct evm_spawn_opts *opts, struct evm_proc **out)
{
	if (!loop)
		return -EINVAL;
	if (atomic_load(&loop->bound)) {
		if (evm__on_loop_thread(loop))
			return evm__spawn_local(loop, opts, out);
		return evm__xreq_spawn(loop, opts, out);
	}
	if (!evm__on_loop_thread(loop))
		return evm__xreq_spawn(loop, opts, out);
	/*
	 * The creator, and no thread has run the loop yet: one may be starting
	 * to (main creates the loop, starts a thread running it, spawns at
	 * once). Spawn here under claim_mu, which that thread's first iteration
	 * waits for; once it has bound the loop, queue to it instead.
	 */
	pthread_mutex_lock(&loop->claim_mu);
	if (!atomic_load(&loop->bound)) {
		int r = evm__spawn_local(loop, opts, out);
		pthread_mutex_unlock(&loop->claim_mu);
		return r;
	}
	pthread_mutex_unlock(&loop->claim_mu);
	return evm__xreq_spawn(loop, opts, out);
}
