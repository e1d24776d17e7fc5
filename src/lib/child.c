/*
 * child.c - what a new child runs between clone and exec.
 *
 * It runs vfork-style: on a private stack, sharing the memory of the process
 * that cloned it (the loop, or the spawn helper), which is suspended until
 * the exec or _exit. So only async-signal-safe calls: no malloc, no stdio,
 * no locks, nothing that touches shared state except the request's err and
 * stage fields, through which an exec failure travels back synchronously.
 * Every system call is a raw one (rawsys.h): we run on the caller's thread
 * pointer, so libc's wrappers would write the caller's errno, and with
 * EVM_SPAWN_NOWAIT the caller runs on meanwhile.
 *
 * Order matters: dispositions are reset before signals are unblocked (or a
 * handler of the parent would run on this stack); credentials are dropped
 * before chdir (so the new user's permissions apply) and before
 * PR_SET_PDEATHSIG (which a credential change clears).
 */
#include "internal.h"
#include "rawsys.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* ret: a failed raw system call's -errno */
EVM_CHILD_CODE static void fail(struct evm__spawn_req *r, int stage, long ret)
{
	r->err = ret < 0 && ret > -4096 ? (int)-ret : EIO;
	r->stage = stage;
	if (r->errfd >= 0) {
		/* where the clone did not share our memory (valgrind runs it as a fork) */
		int msg[2] = {r->err, stage};
		evm__raw3(SYS_write, r->errfd, msg, sizeof(msg));
	}
	/* err and stage visible before the kernel clears the tid word at our exit (nowait.c) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	evm__raw1(SYS_exit_group, 127);
	__builtin_unreachable();
}

/* "-1000".."1000" into /proc/self/oom_score_adj, the digits by hand (no stdio here) */
EVM_CHILD_CODE static void oom_score_adj(struct evm__spawn_req *r)
{
	char buf[8];
	int n = 0, v = r->oom_score_adj < 0 ? -r->oom_score_adj : r->oom_score_adj;
	char digits[8];
	int k = 0;
	do
		digits[k++] = (char)('0' + v % 10);
	while ((v /= 10) && k < 7);
	if (r->oom_score_adj < 0)
		buf[n++] = '-';
	while (k)
		buf[n++] = digits[--k];
	long fd = evm__raw4(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC, 0);
	if (fd < 0)
		fail(r, EVM_STAGE_OOM_SCORE_ADJ, fd);
	long w = evm__raw3(SYS_write, fd, buf, n);
	if (w != n)
		fail(r, EVM_STAGE_OOM_SCORE_ADJ, w < 0 ? w : -EIO);
	evm__raw1(SYS_close, fd);
}

EVM_CHILD_CODE static size_t slen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* execve of dir (dlen bytes; empty: the current directory) + "/" + file, built in buf: -errno */
EVM_CHILD_CODE static long exec_in(struct evm__spawn_req *r, char *buf, size_t cap, const char *dir,
				   size_t dlen, size_t flen)
{
	if (dlen + 1 + flen + 1 > cap)
		return -ENAMETOOLONG;
	size_t k = 0;
	if (dlen == 0)
		buf[k++] = '.'; /* an empty PATH element is the current directory */
	for (size_t i = 0; i < dlen; i++)
		buf[k++] = dir[i];
	buf[k++] = '/';
	for (size_t i = 0; i <= flen; i++)
		buf[k++] = r->file[i];
	return evm__raw3(SYS_execve, buf, r->argv, r->envp);
}

/* a candidate too long for exec_search's buffer: rare, so its PATH_MAX stays off the usual stack */
EVM_CHILD_CODE static long exec_long(struct evm__spawn_req *r, const char *dir, size_t dlen, size_t flen)
{
	char buf[PATH_MAX];
	return exec_in(r, buf, sizeof(buf), dir, dlen, flen);
}

/*
 * execvpe without malloc, and without its ENOEXEC fallback to /bin/sh:
 * returns only when it failed, with -errno.
 * Candidates are built in a small buffer: the child's stack pages count in
 * the caller's memory (it runs in the caller's), and one page does usually.
 */
EVM_CHILD_CODE static long exec_search(struct evm__spawn_req *r)
{
	const char *file = r->file;
	for (const char *c = file; *c; c++)
		if (*c == '/')
			return evm__raw3(SYS_execve, file, r->argv, r->envp);
	if (!r->path || !*file)
		return evm__raw3(SYS_execve, file, r->argv, r->envp);
	char buf[256];
	size_t flen = slen(file);
	bool eacces = false;
	for (const char *p = r->path;;) {
		const char *end = p;
		while (*end && *end != ':')
			end++;
		size_t dlen = (size_t)(end - p);
		long e = dlen + 1 + flen + 1 <= sizeof(buf) ? exec_in(r, buf, sizeof(buf), p, dlen, flen)
							    : exec_long(r, p, dlen, flen);
		switch (-e) {
		case EACCES:
			eacces = true;
			break;
		case ENOENT:
		case ENOTDIR:
		case ESTALE:
		case ENODEV:
		case ETIMEDOUT:
		case ENAMETOOLONG:
			break;
		default:
			return e; /* found but not runnable (ENOEXEC, E2BIG, ...) */
		}
		if (!*end)
			break;
		p = end + 1;
	}
	return eacces ? -EACCES : -ENOENT;
}

EVM_CHILD_CODE static void setup_stdio(struct evm__spawn_req *r)
{
	int fds[3] = {r->fds[0], r->fds[1], r->fds[2]};
	/* a source sitting on another slot would be clobbered by that slot's dup2 */
	for (int i = 0; i < 3; i++) {
		if (fds[i] >= 0 && fds[i] < 3 && fds[i] != i) {
			long up = evm__raw3(SYS_fcntl, fds[i], F_DUPFD_CLOEXEC, 3);
			if (up < 0)
				fail(r, EVM_STAGE_STDIO, up);
			fds[i] = (int)up;
		}
	}
	for (int i = 0; i < 3; i++) {
		if (fds[i] == -1) {
			/*
			 * Inherited: the child gets our fd i even if we marked it
			 * close-on-exec (as the spawn helper, which sends it, does).
			 * The flag is per fd table, so ours keeps it.
			 */
			evm__raw3(SYS_fcntl, i, F_SETFD, 0);
			continue;
		}
		if (fds[i] == -2) {
			evm__raw1(SYS_close, i);
			continue;
		}
		/* dup3, not dup2 (not on every architecture): the two differ only when equal */
		long e = fds[i] == i ? evm__raw3(SYS_fcntl, i, F_SETFD, 0) : evm__raw3(SYS_dup3, fds[i], i, 0);
		if (e < 0)
			fail(r, EVM_STAGE_STDIO, e);
		/* most programs break on non-blocking stdio (shared with our caller) */
		long fl = evm__raw2(SYS_fcntl, i, F_GETFL);
		if (fl >= 0 && (fl & O_NONBLOCK))
			evm__raw3(SYS_fcntl, i, F_SETFL, fl & ~(long)O_NONBLOCK);
	}
}

/*
 * extra_fds: each source onto its target, not close-on-exec. Sources first
 * move above every target (a source may sit on another's target), and so
 * does the error pipe, which a target may take. The move comes before the
 * stdio's dup3s onto 0-2 (a source may be one of them: our stdout as the
 * child's fd 3), the placing after them (a target may be one a stdio source
 * sat on). moved is the caller's: vfork-style, nothing may allocate.
 */
EVM_CHILD_CODE static void extra_lift(struct evm__spawn_req *r, int *moved)
{
	if (!r->nextra)
		return;
	int top = 3;
	for (size_t i = 0; i < r->nextra; i++)
		if (r->extra[i].target >= top)
			top = r->extra[i].target + 1;
	if (r->errfd >= 0 && r->errfd < top) {
		long up = evm__raw3(SYS_fcntl, r->errfd, F_DUPFD_CLOEXEC, top);
		r->errfd = up < 0 ? -1 : (int)up; /* -1: errors still go through memory */
	}
	for (size_t i = 0; i < r->nextra; i++) {
		long up = evm__raw3(SYS_fcntl, r->extra[i].fd, F_DUPFD_CLOEXEC, top);
		if (up < 0)
			fail(r, EVM_STAGE_STDIO, up);
		moved[i] = (int)up;
	}
}

EVM_CHILD_CODE static void extra_place(struct evm__spawn_req *r, const int *moved)
{
	/* dup3: a moved source (>= every target) is never its target */
	for (size_t i = 0; i < r->nextra; i++) {
		long e = evm__raw3(SYS_dup3, moved[i], r->extra[i].target, 0);
		if (e < 0)
			fail(r, EVM_STAGE_STDIO, e);
	}
}

/*
 * Mark close-on-exec every fd from lo to hi (the exec closes them; an error
 * pipe among them stays usable until then). close_range; before Linux
 * 5.11 (no CLOSE_RANGE_CLOEXEC) closed at once instead; before 5.9, or
 * where a filter refuses close_range, one by one up to the table's end:
 * else an fd the caller opened without O_CLOEXEC would reach the child.
 */
EVM_CHILD_CODE static void close_range_from(unsigned lo, unsigned hi)
{
	if (lo > hi || evm__raw3(SYS_close_range, lo, hi, CLOSE_RANGE_CLOEXEC) == 0 ||
	    evm__raw3(SYS_close_range, lo, hi, 0U) == 0) /* 5.9, 5.10: closed at once */
		return;
	unsigned end = evm__fd_table_size();
	if (end == 0)
		end = 1U << 20; /* no /proc: the kernel's default ceiling of RLIMIT_NOFILE */
	for (unsigned fd = lo; fd <= hi && fd < end; fd++)
		evm__raw3(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
}

EVM_CHILD_CODE static void close_above_stdio(struct evm__spawn_req *r)
{
	unsigned lo = 3;
	for (;;) {
		/* the lowest target at or above lo (a handful: quadratic is fine) */
		unsigned next = ~0U;
		for (size_t i = 0; i < r->nextra; i++)
			if ((unsigned)r->extra[i].target >= lo && (unsigned)r->extra[i].target < next)
				next = (unsigned)r->extra[i].target;
		if (next == ~0U) {
			close_range_from(lo, ~0U);
			return;
		}
		if (next > lo)
			close_range_from(lo, next - 1);
		lo = next + 1;
	}
}

/*
 * SIG_DFL through the raw syscall: glibc's sigaction() refuses its internal
 * signals 32 and 33, yet a SIG_IGN on them survives exec like any other (GNU
 * make leaves both ignored in every command it runs). An all-zero kernel
 * sigaction is SIG_DFL, no flags, an empty mask, whatever the layout.
 */
EVM_CHILD_CODE void evm__sig_default(int sig)
{
	static const unsigned long zero[8];
	evm__raw4(SYS_rt_sigaction, sig, zero, NULL, (size_t)(_NSIG - 1) / 8);
}

/* decimal digits up to the line's end; false if none, too many or the line is cut */
EVM_CHILD_CODE static bool status_dec(const char *p, const char *end, unsigned long *out)
{
	unsigned long v = 0;
	int d = 0;
	for (; p < end && *p >= '0' && *p <= '9'; p++, d++)
		v = v * 10 + (unsigned long)(*p - '0');
	if (d == 0 || d > 19 || p >= end || *p != '\n')
		return false;
	*out = v;
	return true;
}

/* exactly 16 hex digits, then the line's end (or the text's end: the last line) */
EVM_CHILD_CODE static bool status_hex(const char *p, const char *end, uint64_t *out)
{
	if (end - p < 16)
		return false;
	uint64_t v = 0;
	for (int d = 0; d < 16; d++) {
		char c = p[d];
		unsigned x = c >= '0' && c <= '9' ? (unsigned)(c - '0')
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
		if (x == 16)
			return false;
		v = v << 4 | x;
	}
	if (p + 16 < end && p[16] != '\n')
		return false;
	*out = v;
	return true;
}

/* does the line at p start with key (its colon and tab included)? */
EVM_CHILD_CODE static bool status_key(const char *p, const char *end, const char *key, size_t klen)
{
	if ((size_t)(end - p) < klen)
		return false;
	for (size_t i = 0; i < klen; i++)
		if (p[i] != key[i])
			return false;
	return true;
}

/*
 * How many fds our table has room for (FDSize of /proc/self/status): every
 * open fd is below it. 0 if unknown.
 */
EVM_CHILD_CODE unsigned evm__fd_table_size(void)
{
	char buf[512]; /* FDSize is the 10th line or so */
	long fd = evm__raw4(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	long n = evm__raw3(SYS_read, fd, buf, sizeof(buf));
	evm__raw1(SYS_close, fd);
	unsigned long v;
	for (const char *p = buf, *end = buf + (n > 0 ? n : 0); p < end; p++) {
		if (status_key(p, end, "FDSize:\t", 8))
			return status_dec(p + 8, end, &v) && v < (1UL << 30) ? (unsigned)v : 0;
		while (p < end && *p != '\n')
			p++;
	}
	return 0;
}

/*
 * The lines of a /proc/PID/status text reset_signals needs, in one pass
 * that stops at the last of them (SigCgt, about 1,000 bytes in): it runs
 * between clone and exec, while the parent waits. Lines are told apart by
 * their first letter and skipped to the next newline otherwise. True when
 * all five were found whole and well-formed; a cut or malformed line makes
 * the child reset everything.
 */
EVM_CHILD_CODE bool evm__status_parse(const char *buf, size_t n, struct evm__status *st)
{
	enum { TGID = 1, THREADS = 2, BLK = 4, IGN = 8, CGT = 16, ALL = 31 };
	const char *p = buf, *end = buf + n;
	unsigned seen = 0, bad = 0;
	while (p < end && seen != ALL) {
		if (*p == 'T') {
			if (status_key(p, end, "Tgid:\t", 6)) {
				seen |= TGID;
				bad |= !status_dec(p + 6, end, &st->tgid);
			} else if (status_key(p, end, "Threads:\t", 9)) {
				seen |= THREADS;
				bad |= !status_dec(p + 9, end, &st->threads);
			}
		} else if (*p == 'S' && status_key(p, end, "Sig", 3) && end - p > 7 && p[6] == ':' &&
			   p[7] == '\t') {
			uint64_t *m = NULL;
			unsigned bit = 0;
			if (p[3] == 'B' && p[4] == 'l' && p[5] == 'k') {
				m = &st->blk;
				bit = BLK;
			} else if (p[3] == 'I' && p[4] == 'g' && p[5] == 'n') {
				m = &st->ign;
				bit = IGN;
			} else if (p[3] == 'C' && p[4] == 'g' && p[5] == 't') {
				m = &st->cgt;
				bit = CGT;
			}
			if (m) {
				seen |= bit;
				bad |= !status_hex(p + 8, end, m);
			}
		}
		while (p < end && *p != '\n')
			p++;
		if (p < end)
			p++; /* past the newline: the next line's first letter */
	}
	return seen == ALL && !bad;
}

/*
 * Set what is ignored or caught back to SIG_DFL. Which those are, and which
 * signals are blocked, we read from /proc, in 1 or 3 syscalls instead of 62
 * rt_sigaction (each 1-3 us with page-table isolation, most of a tiny
 * child's spawn):
 * - parent_statusfd (a CLONE_VFORK spawn): our parent's status, already
 *   open, when it says the parent has one thread, and so the one waiting
 *   for our exec: nothing can change its dispositions or that thread's mask
 *   until then, so they are still the ones we were cloned with;
 * - else our own /proc/self/status: the copy the kernel made at clone,
 *   exact whatever another thread of the parent does meanwhile.
 * After CLONE_CLEAR_SIGHAND the parent's handlers are not ours (the kernel
 * set them to SIG_DFL): only what is ignored is reset. Without /proc, or
 * with a status too long to read here, every disposition is reset.
 */
EVM_CHILD_CODE static void reset_signals(struct evm__spawn_req *r, bool *blocked)
{
	char buf[2048]; /* SigCgt is about 1,000 bytes in */
	struct evm__status st = {0};
	bool known = false;
	/* raw syscalls also because a sanitizer's open/read/close interceptors take locks */
	if (r->parent_statusfd >= 0) {
		long n = evm__raw4(SYS_pread64, r->parent_statusfd, buf, sizeof(buf), 0);
		known = n > 0 && evm__status_parse(buf, (size_t)n, &st) && st.threads == 1 &&
			st.tgid == (unsigned long)r->parent_pid;
	}
	if (!known) {
		long fd = evm__raw4(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC, 0);
		if (fd >= 0) {
			long n = evm__raw3(SYS_read, fd, buf, sizeof(buf));
			evm__raw1(SYS_close, fd); /* it may sit on 0-2, which setup_stdio hands on */
			known = n > 0 && evm__status_parse(buf, (size_t)n, &st);
		}
	}
	uint64_t ign = st.ign, cgt = st.cgt, blk = st.blk;
	uint64_t reset = !known ? ~(uint64_t)0 : r->handlers_cleared ? ign : ign | cgt;
	for (int s = 1; s < NSIG && s <= 64; s++)
		if (s != SIGKILL && s != SIGSTOP && (reset >> (s - 1) & 1))
			evm__sig_default(s);
	*blocked = !known || blk != 0;
}

/*
 * Namespaces: a new user namespace waits for the maps our parent writes
 * (EOF: they failed, and the parent reports why); then the joins and the
 * host name, before anything else runs in them.
 */
EVM_CHILD_CODE static void enter_namespaces(struct evm__spawn_req *r)
{
	if (r->syncfd >= 0) {
		char c;
		long n;
		evm__raw1(SYS_close, r->syncfd_w); /* our copy of the parent's end: EOF must mean the parent's is closed */
		while ((n = evm__raw3(SYS_read, r->syncfd, &c, 1)) == -EINTR)
			;
		if (n != 1)
			evm__raw1(SYS_exit_group, 127);
		evm__raw1(SYS_close, r->syncfd);
	}
	for (size_t i = 0; i < r->nsetns; i++) {
		long e = evm__raw2(SYS_setns, r->setns_fds[i], 0);
		if (e < 0)
			fail(r, EVM_STAGE_SETNS, e);
	}
	if (r->hostname) {
		long e = evm__raw2(SYS_sethostname, r->hostname, slen(r->hostname));
		if (e < 0)
			fail(r, EVM_STAGE_HOSTNAME, e);
	}
}

/*
 * Without CLONE_INTO_CGROUP (clone(), or a kernel before 5.7): move
 * ourselves first, before we can fork anything and with the privileges we
 * were started with. "0" means the writer.
 */
EVM_CHILD_CODE static void move_to_cgroup(struct evm__spawn_req *r)
{
	long fd = evm__raw4(SYS_openat, r->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC, 0);
	if (fd < 0)
		fail(r, EVM_STAGE_CGROUP, fd);
	long w = evm__raw3(SYS_write, fd, "0", 1);
	if (w != 1)
		fail(r, EVM_STAGE_CGROUP, w < 0 ? w : -EIO);
	evm__raw1(SYS_close, fd);
}

EVM_CHILD_CODE static void set_session(struct evm__spawn_req *r)
{
	long e = 0;
	if (r->flags & (EVM_SPAWN_SETSID | EVM_SPAWN_SETCTTY))
		e = evm__raw0(SYS_setsid);
	else if (r->flags & EVM_SPAWN_SETPGID)
		e = evm__raw2(SYS_setpgid, 0, r->pgid);
	if (e < 0)
		fail(r, EVM_STAGE_SESSION, e);
}

/* setrlimit: -errno */
EVM_CHILD_CODE static long set_rlimit(int resource, const struct rlimit *l)
{
#if EVM_RAWSYS
	/* prlimit64's two 64-bit words are struct rlimit on these (64-bit) architectures */
	_Static_assert(sizeof(struct rlimit) == 16, "struct rlimit is not prlimit64's");
	return evm__raw4(SYS_prlimit64, 0, resource, l, NULL);
#else
	return setrlimit((__rlimit_resource_t)resource, l) < 0 ? -errno : 0;
#endif
}

/* rlimits, nice, oom_score_adj, umask: before the credentials change, as
 * lowering the first three takes privilege we may drop */
EVM_CHILD_CODE static void set_limits(struct evm__spawn_req *r)
{
	if (r->restore_nofile) /* best effort: lowering cannot fail */
		set_rlimit(RLIMIT_NOFILE, &r->nofile);
	for (size_t i = 0; i < r->nrlimits; i++) {
		long e = set_rlimit(r->rlimits[i].resource, &r->rlimits[i].limit);
		if (e < 0)
			fail(r, EVM_STAGE_RLIMIT, e);
	}
	if (r->flags & EVM_SPAWN_NICE) {
		long e = evm__raw3(SYS_setpriority, PRIO_PROCESS, 0, r->nice);
		if (e < 0)
			fail(r, EVM_STAGE_NICE, e);
	}
	if (r->flags & EVM_SPAWN_OOM_SCORE_ADJ)
		oom_score_adj(r);
	if (r->flags & EVM_SPAWN_UMASK)
		evm__raw1(SYS_umask, r->umask);
}

/*
 * Raw syscalls here above all: glibc's set*id wrappers signal every thread
 * of the process so they all change credentials, which must not happen
 * from a child sharing the parent's memory.
 */
EVM_CHILD_CODE static void set_credentials(struct evm__spawn_req *r)
{
	long e = 0;
	if (r->flags & EVM_SPAWN_SETGROUPS)
		e = evm__raw2(SYS_setgroups, r->ngroups, r->groups);
	else if ((r->flags & (EVM_SPAWN_SETUID | EVM_SPAWN_SETGID)) && evm__raw0(SYS_geteuid) == 0 &&
		 !r->setgroups_denied)
		e = evm__raw2(SYS_setgroups, 0, NULL); /* dropping privileges must not keep root's groups */
	if (e < 0)
		fail(r, EVM_STAGE_GROUPS, e);
	if ((r->flags & EVM_SPAWN_SETGID) && (e = evm__raw3(SYS_setresgid, r->gid, r->gid, r->gid)) < 0)
		fail(r, EVM_STAGE_GID, e);
	if ((r->flags & EVM_SPAWN_SETUID) && (e = evm__raw3(SYS_setresuid, r->uid, r->uid, r->uid)) < 0)
		fail(r, EVM_STAGE_UID, e);
}

/* only now is our pid known: no snprintf here, digits by hand */
EVM_CHILD_CODE static void write_listen_pid(struct evm__spawn_req *r)
{
	char digits[16];
	int n = 0;
	for (unsigned v = (unsigned)evm__raw0(SYS_getpid); v || !n; v /= 10)
		digits[n++] = (char)('0' + v % 10);
	for (int i = 0; i < n; i++)
		r->listen_pid[i] = digits[n - 1 - i];
	r->listen_pid[n] = '\0';
}

EVM_CHILD_CODE static void set_pdeath(struct evm__spawn_req *r)
{
	long e = evm__raw2(SYS_prctl, PR_SET_PDEATHSIG, r->pdeath_signal);
	if (e < 0)
		fail(r, EVM_STAGE_PDEATHSIG, e);
	/* in a new PID namespace our parent is outside it: getppid() is 0 */
	if (!(r->ns & CLONE_NEWPID) && evm__raw0(SYS_getppid) != r->parent_pid)
		evm__raw2(SYS_kill, evm__raw0(SYS_getpid), r->pdeath_signal); /* the parent is already gone */
}

/*
 * Cloned with CLONE_FILES, we share our parent's fd table: before anything
 * here opens, dups or closes an fd, a table of our own with only the fds
 * below keep_fds in it (close_range(2)'s CLOSE_RANGE_UNSHARE copies no
 * more than that; Linux 5.9), the pidfd the clone just gave our parent
 * among them taken out. Before 5.9, a copy of the whole table, as a clone
 * without CLONE_FILES makes; the exec closes what is close-on-exec. If
 * neither works (a seccomp filter, or ENOMEM) we exit, and the parent
 * clones from then on without sharing (spawnclone.c's clone_vfork3).
 */
EVM_CHILD_CODE static void own_fd_table(struct evm__spawn_req *r)
{
	long e = evm__raw3(SYS_close_range, r->keep_fds, ~0U, CLOSE_RANGE_UNSHARE);
	if (e < 0) {
		if ((e = evm__raw1(SYS_unshare, CLONE_FILES)) < 0)
			fail(r, EVM_STAGE_FORK, e); /* touching none of its fds: the parent clones again with a copy */
		r->whole_table = 1; /* as costly as a clone's copy: the spawn helper pays off again */
	}
	if (r->pidfd_at && *r->pidfd_at >= 0 && (unsigned)*r->pidfd_at < r->keep_fds)
		evm__raw1(SYS_close, *r->pidfd_at);
}

EVM_CHILD_CODE int evm__spawn_child(void *arg)
{
	struct evm__spawn_req *r = arg;

	r->started = 1; /* not killed at birth (see evm__spawn_clone) */
	if (r->keep_fds)
		own_fd_table(r);
	if (r->syncfd >= 0 || r->nsetns || r->hostname)
		enter_namespaces(r);
	if (r->cgroup_in_child)
		move_to_cgroup(r);
	/*
	 * SIG_IGN survives exec, and without CLONE_CLEAR_SIGHAND (clone()) so do
	 * our handlers. Children of the spawn helper skip this: its dispositions
	 * are all default already.
	 */
	bool blocked = true; /* unknown: unblock everything at the end */
	if (r->reset_signals)
		reset_signals(r, &blocked);
	set_session(r);
	set_limits(r);
	set_credentials(r);

	/* after the credentials change, so the new user's permissions apply;
	 * from the helper: start from the loop's cwd, which may have changed since */
	long e;
	if (r->cwd_fd >= 0 && (e = evm__raw1(SYS_fchdir, r->cwd_fd)) < 0)
		fail(r, EVM_STAGE_CWD, e);
	if (r->cwd && (e = evm__raw1(SYS_chdir, r->cwd)) < 0)
		fail(r, EVM_STAGE_CWD, e);

	int moved[r->nextra ? r->nextra : 1];
	extra_lift(r, moved);
	setup_stdio(r);
	extra_place(r, moved);
	/* after the fds are in place: ctty is a number in the child */
	if ((r->flags & EVM_SPAWN_SETCTTY) && (e = evm__raw3(SYS_ioctl, r->ctty, TIOCSCTTY, 0)) < 0)
		fail(r, EVM_STAGE_CTTY, e);
	/* every fd beyond stdio is closed by the exec, CLOEXEC or not, unless asked */
	if (!(r->flags & EVM_SPAWN_INHERIT_FDS))
		close_above_stdio(r);
	if (r->listen_pid)
		write_listen_pid(r);
	if (r->pdeath_signal) /* after the credentials change, which clears it */
		set_pdeath(r);
	/* set up on our parent's CPU (spawnclone.c's pin_here): the exec places the program */
	if (r->cpus && (e = evm__raw3(SYS_sched_setaffinity, 0, sizeof(*r->cpus), (long)r->cpus)) < 0) {
		r->cpus_refused = 1;
		fail(r, EVM_STAGE_FORK, e);
	}
	if (blocked) {
		static const unsigned long none[8]; /* every signal, glibc's own included */
		evm__raw4(SYS_rt_sigprocmask, SIG_SETMASK, none, NULL, (size_t)(_NSIG - 1) / 8);
	}

	fail(r, EVM_STAGE_EXEC, exec_search(r));
	return 127;
}
