/*
 * cgkill.c - ending what runs in a cgroup: signalling its members without
 * hitting a reused pid, killing the whole tree (cgroup.kill, or a loop of
 * SIGKILLs where the kernel has none), and removing the cgroups.
 *
 * cgroup.procs lists pids, which may be reused between the read and the
 * signal. So each pid is opened as a pidfd, which pins the process, and
 * its cgroup is checked before the signal goes through the pidfd: the
 * pidfd's own cgroup id (PIDFD_GET_INFO, Linux 6.13) against the directory's
 * (its inode number on cgroup2), else its /proc/PID/cgroup (an open, a read
 * of rendered text and a close: most of a `ctl stop` of 3,000 services).
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* PIDFD_GET_INFO's first version (Linux 6.13; Debian 12's headers lack it): 64 bytes */
struct pidfd_info0 {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t ids[11]; /* pid, tgid, ppid, the uids and gids: not asked for */
	uint32_t spare;
};
#define PIDFD_GET_INFO0 _IOWR(0xFF, 11, struct pidfd_info0)
#define PIDFD_INFO0_CGROUPID (1ull << 2)
#define PIDFD_INFO0_EXIT (1ull << 3) /* Linux 6.15: a reaped process's too */

/* -1: the kernel has no PIDFD_GET_INFO (older than 6.13): not asked again */
/* "." or "..": a child cgroup's name may start with a dot (a service ".web") */
static bool dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

static int pidfd_info_works;

/* Is pid (which must be pinned by a pidfd) in the cgroup rel or below it? */
static bool still_member(pid_t pid, const char *rel)
{
	if (!rel)
		return true; /* cannot tell: trust cgroup.procs */
	return evm__cg_member(pid, rel);
}

bool evm__cg_member(pid_t pid, const char *rel)
{
	char path[48], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	ssize_t n = evm__cg_read(AT_FDCWD, path, buf, sizeof(buf));
	if (n <= 0)
		return false;
	for (char *l = buf; l; l = (char *)evm__cg_next_line(l)) {
		if (strncmp(l, "0::", 3) != 0)
			continue;
		l[strcspn(l, "\n")] = 0;
		return evm__cg_below(l + 3, rel) != NULL;
	}
	return false;
}

struct sigwalk {
	const char *rel; /* the top cgroup's */
	bool v2;	 /* the walk is on cgroup2, whose ids the pidfds give (else /proc) */
	uint64_t cgid;	 /* the cgroup being walked: its id (inode number), or 0 */
	int sig;
	int then;		   /* a second signal right after sig (SIGCONT), or 0 */
	int sent;
	int error;		   /* the first failure other than ESRCH */
	struct evm__pidmap *seen;  /* kill loop: pids already killed */
	int fresh;		   /* kill loop: pids not seen before */
};

/*
 * Is the process of pidfd in the cgroup of id cgid? false when the kernel
 * cannot say, or says another: the caller then asks /proc (which also takes
 * a member of a child cgroup, moved there since cgroup.procs was read).
 */
/* PIDFD_GET_INFO's cgroup id, asking for mask: 0, -ENOSYS (no such ioctl), -ESRCH or -errno */
static int pidfd_cgid(int pidfd, uint64_t mask, uint64_t *id)
{
	if (__atomic_load_n(&pidfd_info_works, __ATOMIC_RELAXED) < 0)
		return -ENOSYS;
	struct pidfd_info0 info = {.mask = mask};
	if (ioctl(pidfd, PIDFD_GET_INFO0, &info) < 0) {
		if (errno == ENOTTY || ((errno == EINVAL || errno == EOPNOTSUPP) &&
					mask == PIDFD_INFO0_CGROUPID)) {
			__atomic_store_n(&pidfd_info_works, -1, __ATOMIC_RELAXED);
			return -ENOSYS;
		}
		return -errno;
	}
	if (!(info.mask & PIDFD_INFO0_CGROUPID))
		return -ESRCH;
	*id = info.cgroupid;
	return 0;
}

static bool pidfd_member(int pidfd, uint64_t cgid)
{
	uint64_t id;
	return cgid && pidfd_cgid(pidfd, PIDFD_INFO0_CGROUPID, &id) == 0 && id == cgid;
}

int evm_pidfd_cgroup_id(int pidfd, uint64_t *id)
{
	if (pidfd < 0 || !id)
		return -EINVAL;
	/* with the exit's information (6.15); a kernel before that may refuse the flag */
	int r = pidfd_cgid(pidfd, PIDFD_INFO0_CGROUPID | PIDFD_INFO0_EXIT, id);
	return r == -EINVAL || r == -EOPNOTSUPP ? pidfd_cgid(pidfd, PIDFD_INFO0_CGROUPID, id) : r;
}

static void signal_pid(struct sigwalk *sw, pid_t pid)
{
	if (sw->seen) {
		/*
		 * Met once is enough, signalled or not (gone, moved out,
		 * EPERM): the kill loop ends when a pass meets nobody new.
		 */
		if (evm__pidmap_get(sw->seen, pid))
			return;
		sw->fresh++;
		if (evm__pidmap_reserve(sw->seen) == 0)
			evm__pidmap_put(sw->seen, pid, (struct evm_proc *)sw);
	}
	/*
	 * The pidfd pins the process: if it is still a member now, the signal
	 * reaches that member, even if the pid was reused after we read it.
	 */
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) {
		if (errno != ESRCH && !sw->error)
			sw->error = -errno;
		return;
	}
	if (pidfd_member(fd, sw->cgid) || still_member(pid, sw->rel)) {
		if (syscall(SYS_pidfd_send_signal, fd, sw->sig, NULL, 0) == 0)
			sw->sent++;
		else if (errno != ESRCH && !sw->error)
			sw->error = -errno;
		if (sw->then)
			(void)syscall(SYS_pidfd_send_signal, fd, sw->then, NULL, 0);
	}
	close(fd);
}

/* Signal the members of dfd, then of its child cgroups, depth first. */
static int signal_tree(struct sigwalk *sw, int dfd, int depth)
{
	char *text;
	/*
	 * The directory's inode number is its cgroup's id (a 64-bit ino_t), and
	 * its link count 2 + its child cgroups (kernfs): with none, no readdir
	 * (an open, two getdents and a close per service stopped).
	 */
	struct stat st;
	struct statfs fs;
	bool leaf = false;
	sw->cgid = 0;
	if (depth == 0) /* ids are per hierarchy: a v1 one's could match a v2 id */
		sw->v2 = fstatfs(dfd, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
	if (sw->v2 && fstat(dfd, &st) == 0) {
		if (sizeof(st.st_ino) >= sizeof(uint64_t))
			sw->cgid = (uint64_t)st.st_ino;
		leaf = st.st_nlink == 2;
	}
	ssize_t len = evm__cg_read_all(dfd, "cgroup.procs", &text);
	if (len < 0)
		return (int)len;
	for (char *s = text, *end; *s; s = end + strspn(end, "\n")) {
		long v = strtol(s, &end, 10);
		if (end == s)
			break;
		if (v > 0)
			signal_pid(sw, (pid_t)v);
	}
	free(text);
	if (depth > 64 || leaf)
		return 0;
	int lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
	if (!d) {
		if (lfd >= 0)
			close(lfd);
		return 0;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || dot_or_dotdot(e->d_name))
			continue;
		int cfd = openat(dirfd(d), e->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (cfd >= 0) {
			signal_tree(sw, cfd, depth + 1);
			close(cfd);
		}
	}
	closedir(d);
	return 0;
}

int evm_cgroup_signal(struct evm_cgroup *cg, int sig)
{
	return evm__cgroup_signal2(cg, sig, 0);
}

/*
 * sig, then (if not 0) then, to each member in one walk: a stop's
 * stop_signal and SIGCONT took two walks of the tree (a dozen system calls
 * each: `ctl stop` of 3,000 services held the daemon's loop ~370 ms).
 */
int evm__cgroup_signal2(struct evm_cgroup *cg, int sig, int then)
{
	if (!cg || sig < 0 || sig >= NSIG || then < 0 || then >= NSIG)
		return -EINVAL;
	struct sigwalk sw = {.rel = cg->rel, .sig = sig, .then = then};
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	int r = signal_tree(&sw, dfd, 0);
	evm__cg_dir_done(cg, dfd);
	if (r < 0)
		return r;
	return sw.sent || !sw.error ? sw.sent : sw.error;
}

#define KILL_PASSES 1000

/* Without cgroup.kill: SIGKILL until a pass meets nobody new. */
int evm__cgroup_kill_loop(struct evm_cgroup *cg)
{
	struct evm__pidmap seen = {0};
	struct sigwalk sw = {.rel = cg->rel, .sig = SIGKILL, .seen = &seen};
	int r = -EAGAIN, dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	for (int pass = 0; pass < KILL_PASSES; pass++) {
		sw.fresh = 0;
		int e = signal_tree(&sw, dfd, 0);
		if (e < 0) {
			r = e;
			break;
		}
		if (sw.fresh == 0) {
			r = sw.sent || !sw.error ? 0 : sw.error;
			break;
		}
	}
	evm__pidmap_free(&seen);
	evm__cg_dir_done(cg, dfd);
	return r;
}

int evm_cgroup_kill(struct evm_cgroup *cg)
{
	if (!cg)
		return -EINVAL;
	const char *force = secure_getenv("EVM_CGROUP_NO_KILL");
	if (!force || !*force || !strcmp(force, "0")) {
		int dfd = evm__cg_dir(cg);
		if (dfd < 0)
			return dfd;
		int r = evm__cg_write(dfd, "cgroup.kill", "1");
		/* ENOENT: the cgroup is gone, or a kernel without the file */
		bool gone = r == -ENOENT && evm__cg_missing(dfd) == -ENOENT;
		evm__cg_dir_done(cg, dfd);
		if (r != -ENOENT || gone)
			return r;
	}
	return evm__cgroup_kill_loop(cg);
}

/* -------------------------------------------------------------- removal */

/* rmdir the child cgroups of dfd, deepest first; the first error */
static int remove_children(int dfd, int depth)
{
	int lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lfd < 0)
		return errno == ENOENT ? 0 : -errno;
	DIR *d = fdopendir(lfd);
	if (!d) {
		close(lfd);
		return -ENOMEM;
	}
	int r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || dot_or_dotdot(e->d_name))
			continue;
		int cfd = openat(dirfd(d), e->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC);
		int c = cfd < 0 ? 0 : depth > 64 ? -ELOOP : remove_children(cfd, depth + 1);
		if (cfd >= 0)
			close(cfd);
		if (c == 0 && unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			c = -errno;
		if (c < 0 && r == 0)
			r = c;
	}
	closedir(d);
	return r;
}

/* Wait up to ms (-1: forever) for populated 0 (cgroup.events raises POLLPRI on change). */
static void wait_empty(int dfd, int ms)
{
	int fd = openat(dfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[256];
	uint64_t v = 1;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = 0;
		evm__cg_key(buf, "populated", &v);
	}
	struct pollfd pfd = {.fd = fd, .events = POLLPRI};
	/* empty but still busy (a child's removal in flight): a short pause */
	poll(v ? &pfd : NULL, v ? 1 : 0, v ? ms : (ms < 0 || ms > 10 ? 10 : ms));
	close(fd);
}

int evm_cgroup_remove(struct evm_cgroup *cg, int timeout_ms)
{
	if (!cg)
		return -EINVAL;
	uint64_t deadline = evm__after_ms(evm__mono_ns(), (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms));
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd == -ENOENT ? 0 : dfd; /* removed already */
	int r;
	for (;;) {
		r = remove_children(dfd, 0);
		if (r == 0 && rmdir(cg->path) < 0 && errno != ENOENT)
			r = -errno;
		uint64_t now = evm__mono_ns();
		if (r != -EBUSY || (timeout_ms >= 0 && now >= deadline))
			break;
		int left = timeout_ms < 0 ? -1 : (int)((deadline - now + 999999) / 1000000);
		wait_empty(dfd, left);
	}
	evm__cg_dir_done(cg, dfd);
	return r;
}

