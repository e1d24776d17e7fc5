/*
 * group.c - the end: the main child has exited; what is left of its
 * process group gets SIGTERM, then SIGKILL after the grace, and we exit when
 * no live process is left in the group (or shortly after the SIGKILL).
 * With -a the same holds for every other process: as PID 1 the whole PID
 * namespace, otherwise our descendants (we are their subreaper), so a
 * daemon that left the group with setsid is waited for too.
 *
 * tini exits at once and dumb-init sends SIGTERM and exits at once; as PID 1
 * either way means the kernel SIGKILLs the rest, with no time to clean up.
 * We give the rest the grace first (-t 0 restores dumb-init's behaviour;
 * -c without -t or -a, tini's).
 *
 * Knowing when they are gone: the rest need not be our children (a
 * grandchild's exit goes to its own parent), and a zombie still counts for
 * kill(-pgid, 0). So we list the live ones from /proc once, watch each
 * through a pidfd (readable when it exits, child or not), and list again
 * when all of them have exited, since they can fork. With -a, signals go
 * through those pidfds too: each listing signals what it finds, so a
 * process forked after one listing gets its signal from the next. The lists
 * and watchers exist only during the end, and are freed before exit.
 */
#include "cli.h"
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#define KILL_WAIT_MS 1000 /* after SIGKILL: a process stuck in the kernel may not die */
#define POLL_MS 50	  /* when some member could not be watched (no fd left) */
#define PF_KTHREAD 0x00200000 /* /proc/PID/stat flags: a kernel thread (PID 1 of a host) */

struct member {
	int pidfd;
	struct evm_io *io;
};

/* what a /proc/PID/stat says about a process */
struct pstat {
	pid_t pid, ppid, pgrp;
	bool live;
	bool ours; /* -a, not PID 1: a descendant of ours */
};

struct init_group {
	struct init *in;
	struct member *m;
	size_t n, cap, live;
	struct evm_timer *timer; /* grace, then the wait after SIGKILL */
	struct evm_timer *poll;	 /* blind: recheck every POLL_MS */
	bool killed;
	bool blind;
	bool noproc; /* /proc is not ours (missing, empty, another namespace's): kill(..., 0) polls */
	pid_t self;
	char what[48]; /* "process group N", for messages */
};

static void finish(struct init_group *g, const char *why)
{
	init_log(g->in, V_INFO, "%s: %s", g->what, why);
	g->in->done = true;
}

/* "pid (comm) S ppid pgrp ... flags ... num_threads" (no sscanf: it would
   double the size of the static evmon-init) */
static bool read_stat(pid_t pid, struct pstat *st)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return false;
	long f[21] = {0};
	char state = 0;
	int field = 2;
	for (p++; *p && field < 20;) {
		while (*p == ' ')
			p++;
		if (++field == 3)
			state = *p;
		else
			f[field] = strtol(p, NULL, 10);
		while (*p && *p != ' ')
			p++;
	}
	if (field < 20)
		return false;
	*st = (struct pstat){.pid = pid, .ppid = (pid_t)f[4], .pgrp = (pid_t)f[5]};
	/* a zombie leader with live threads is still running; kernel threads never exit */
	st->live = ((state != 'Z' && state != 'X') || f[20] > 1) && !(f[9] & PF_KTHREAD);
	return true;
}

static int end_signal(const struct init_group *g)
{
	return g->killed ? SIGKILL : SIGTERM;
}

static void unwatch(struct member *m)
{
	if (m->io)
		evm_io_free(m->io);
	if (m->pidfd >= 0)
		close(m->pidfd);
	m->io = NULL;
	m->pidfd = -1;
}

static void unwatch_all(struct init_group *g)
{
	for (size_t i = 0; i < g->n; i++)
		unwatch(&g->m[i]);
	g->n = g->live = 0;
}

static void recheck(struct init_group *g, bool signal);

static void on_member_exit(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct init_group *g = data;
	(void)io;
	(void)revents;
	for (size_t i = 0; i < g->n; i++) {
		if (g->m[i].pidfd == fd) {
			unwatch(&g->m[i]);
			if (--g->live == 0)
				recheck(g, true); /* what is found now was forked since */
			return;
		}
	}
}

/* Is it (still) one of those we wait for? was: what the listing said. */
static bool still_member(const struct init_group *g, const struct pstat *was)
{
	struct pstat now;
	if (!read_stat(was->pid, &now) || !now.live)
		return false;
	if (!g->in->all)
		return now.pgrp == g->in->pgid;
	/* the same descendant, or re-parented to us since: not a stranger that reused the pid */
	return g->in->pid1 || now.ppid == was->ppid || now.ppid == g->self;
}

static void watch(struct init_group *g, const struct pstat *st, bool signal)
{
	int fd = pidfd_open(st->pid, 0);
	if (fd < 0) {
		if (errno != ESRCH) {
			g->blind = true; /* out of fds: fall back to polling */
			if (signal && g->in->all)
				kill(st->pid, end_signal(g)); /* just listed: the pid is hardly reused yet */
		}
		return;
	}
	/* the pid was read before the pidfd pinned it: make sure it is still one of them */
	if (!still_member(g, st)) {
		close(fd);
		return;
	}
	if (signal && g->in->all) {
		pidfd_send_signal(fd, end_signal(g), NULL, 0);
		if (!g->killed) /* a stopped one would sit on its SIGTERM until the SIGKILL */
			pidfd_send_signal(fd, SIGCONT, NULL, 0);
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		struct member *m = realloc(g->m, cap * sizeof(*m));
		if (!m) {
			close(fd);
			g->blind = true;
			return;
		}
		g->m = m;
		g->cap = cap;
	}
	struct member *m = &g->m[g->n];
	m->pidfd = fd;
	if (evm_io_add(g->in->loop, fd, EVM_READ, on_member_exit, g, &m->io) < 0) {
		close(fd);
		g->blind = true;
		return;
	}
	g->n++;
	g->live++;
}

static int by_pid(const void *a, const void *b)
{
	pid_t x = ((const struct pstat *)a)->pid, y = ((const struct pstat *)b)->pid;
	return (x > y) - (x < y);
}

/* -a when not PID 1: mark our descendants (live processes have live parents, or us) */
static void mark_ours(struct pstat *t, size_t n, pid_t self)
{
	qsort(t, n, sizeof(*t), by_pid);
	for (bool more = true; more;) {
		more = false;
		for (size_t i = 0; i < n; i++) {
			if (t[i].ours)
				continue;
			struct pstat key = {.pid = t[i].ppid};
			const struct pstat *parent = bsearch(&key, t, n, sizeof(*t), by_pid);
			if (t[i].ppid == self || (parent && parent->ours))
				more = t[i].ours = true;
		}
	}
}

/*
 * A /proc entry's name as a number, -1 if it is not one. Not strtol: the
 * listing of /proc/self/fd after the spawn would be the one call that maps
 * its part of libc (and the locale tables it reads) into a running init,
 * 60-120 kB of RSS that tini does not have (docs/INIT.md).
 */
static long proc_number(const char *s)
{
	long n = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || n > (LONG_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*s - '0');
	}
	return n;
}

bool init_list_proc(const char *dir, void (*fn)(long n, void *data), void *data)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char buf[1024] __attribute__((aligned(8)));
	ssize_t len;
	while ((len = getdents64(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < len;) {
			struct dirent64 *e = (struct dirent64 *)(buf + off);
			long n = proc_number(e->d_name);
			off += e->d_reclen;
			if (n >= 0)
				fn(n, data);
		}
	}
	close(fd);
	return len == 0;
}

struct listing {
	struct init_group *g;
	bool signal;
	struct pstat *t; /* -a: every live process, to find the members among */
	size_t n, cap;
};

static void list_one(long pid, void *data)
{
	struct listing *l = data;
	struct init_group *g = l->g;
	struct pstat st;
	if (pid <= 0 || pid == g->self || !read_stat((pid_t)pid, &st) || !st.live)
		return;
	if (!g->in->all) {
		if (st.pgrp == g->in->pgid)
			watch(g, &st, l->signal);
		return;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct pstat *bigger = realloc(l->t, cap * sizeof(*bigger));
		if (!bigger) {
			g->blind = true;
			return;
		}
		l->t = bigger;
		l->cap = cap;
	}
	l->t[l->n++] = st;
}

/*
 * Is /proc ours? Missing or an empty directory (a runtime's spec without
 * the mount, a chroot), or another PID namespace's (unshare -p without
 * --mount-proc), its listing would say the group is empty at once: /proc/self
 * names us by our pid only in a /proc of our namespace.
 */
static bool proc_is_ours(pid_t self)
{
	char buf[32], want[32];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	snprintf(want, sizeof(want), "%d", (int)self);
	return !strcmp(buf, want);
}

/* What the end reaches is CMD's process group (else -a's listing, or as PID 1 everyone) */
static bool group_only(const struct init *in, bool noproc)
{
	return !in->all || (noproc && !in->pid1);
}

/* Without /proc: anyone left (zombies too, which we reap), polled; -a as PID 1: everyone. */
static size_t scan_noproc(struct init_group *g, bool signal)
{
	bool everyone = g->in->all && g->in->pid1;
	if (signal && everyone) {
		kill(-1, end_signal(g));
		if (!g->killed)
			kill(-1, SIGCONT);
	}
	bool left = everyone ? kill(-1, 0) == 0 : killpg(g->in->pgid, 0) == 0;
	g->blind = left; /* nothing to watch: poll until no one is left */
	return left;
}

/* List and watch the live ones (with -a and signal, signal them); returns how many. */
static size_t scan(struct init_group *g, bool signal)
{
	unwatch_all(g);
	g->blind = false;
	if (g->noproc)
		return scan_noproc(g, signal);
	struct listing l = {.g = g, .signal = signal};
	if (!init_list_proc("/proc", list_one, &l))
		g->blind = true;
	if (g->in->all && !g->in->pid1)
		mark_ours(l.t, l.n, g->self);
	for (size_t i = 0; i < l.n; i++)
		if (g->in->pid1 || l.t[i].ours)
			watch(g, &l.t[i], signal);
	free(l.t);
	return g->live;
}

static void on_poll(struct evm_timer *t, void *data)
{
	struct init_group *g = data;
	(void)t;
	g->poll = NULL;
	recheck(g, false); /* blind: the members are listed again, not signalled again */
}

static void recheck(struct init_group *g, bool signal)
{
	if (g->in->done)
		return;
	size_t n = scan(g, signal);
	if (n == 0 && !g->blind) {
		finish(g, g->killed ? "empty after SIGKILL" : "empty");
		return;
	}
	init_log(g->in, V_TRACE, "%s: %zu live processes watched%s", g->what, n,
		 g->blind ? ", some unwatchable" : "");
	if (g->blind && !g->poll)
		evm_timer_add(g->in->loop, POLL_MS, on_poll, g, &g->poll);
}

static void on_timer(struct evm_timer *t, void *data)
{
	struct init_group *g = data;
	(void)t;
	g->timer = NULL;
	if (g->killed) {
		init_log(g->in, V_WARN, "%s: processes left %d ms after SIGKILL; exiting anyway", g->what,
			 KILL_WAIT_MS);
		finish(g, "given up");
		return;
	}
	g->killed = true;
	init_log(g->in, V_INFO, "%s: grace of %llu ms over, sending SIGKILL", g->what,
		 (unsigned long long)g->in->grace_ms);
	if (group_only(g->in, g->noproc) && killpg(g->in->pgid, SIGKILL) < 0 && errno == ESRCH) {
		finish(g, "empty");
		return;
	}
	if (g->in->all && g->in->pid1)
		kill(-1, SIGKILL); /* all at once, also what forked since the last listing */
	if (evm_timer_add(g->in->loop, KILL_WAIT_MS, on_timer, g, &g->timer) < 0) {
		finish(g, "no timer to wait after SIGKILL");
		return;
	}
	recheck(g, true); /* with -a, SIGKILL to each one listed */
}

void init_group_end(struct init *in)
{
	if (in->end_at_once) {
		init_log(in, V_INFO, "exiting at once, leaving the rest as they are (-c without -t)");
		in->done = true;
		return;
	}
	/*
	 * The leader is reaped, but its pid stays reserved while any process
	 * still uses it as a process group id, so killpg cannot hit a stranger
	 * here unless the group is empty and the pid was reused within
	 * microseconds, which would take a wrap-around of the pid space.
	 */
	pid_t self = getpid();
	bool noproc = !proc_is_ours(self);
	if (group_only(in, noproc) && killpg(in->pgid, SIGTERM) < 0) {
		init_log(in, V_TRACE, "process group %d: empty", (int)in->pgid);
		in->done = true;
		return;
	}
	if (group_only(in, noproc))
		killpg(in->pgid, SIGCONT); /* a stopped one would sit on its SIGTERM until the SIGKILL */
	if (noproc)
		init_log(in, V_WARN, "/proc is not this PID namespace's (or is missing): %s",
			 in->all && !in->pid1 ? "only CMD's process group is signalled and waited for"
					      : "the processes left are polled for, not listed");
	struct init_group *g = calloc(1, sizeof(*g));
	if (!g) {
		init_log(in, V_WARN, "process group %d: out of memory; exiting without waiting", (int)in->pgid);
		in->done = true;
		return;
	}
	g->in = in;
	g->self = self;
	g->noproc = noproc;
	in->ending = g;
	if (!in->all)
		snprintf(g->what, sizeof(g->what), "process group %d", (int)in->pgid);
	else
		snprintf(g->what, sizeof(g->what), in->pid1 ? "the other processes" : "our descendants");
	size_t n = scan(g, true); /* with -a, SIGTERM to each */
	if (in->grace_ms == 0) {
		init_log(in, V_INFO, "%s: sent SIGTERM, not waiting (-t 0)", g->what);
		in->done = true;
		return;
	}
	if (n == 0 && !g->blind) {
		finish(g, "empty");
		return;
	}
	if (g->noproc)
		init_log(in, V_INFO, "%s: sent SIGTERM; SIGKILL in %llu ms", g->what,
			 (unsigned long long)in->grace_ms);
	else
		init_log(in, V_INFO, "%s: sent SIGTERM to %zu remaining processes%s; SIGKILL in %llu ms",
			 g->what, n, g->blind ? " (and some it cannot watch)" : "",
			 (unsigned long long)in->grace_ms);
	if (evm_timer_add(in->loop, in->grace_ms, on_timer, g, &g->timer) < 0) {
		/* no way to end the wait: end it now */
		g->killed = true;
		if (!in->all)
			killpg(in->pgid, SIGKILL);
		else
			scan(g, true);
		finish(g, "SIGKILL at once (no timer)");
		return;
	}
	if (g->blind)
		evm_timer_add(in->loop, POLL_MS, on_poll, g, &g->poll);
}

void init_group_poke(struct init *in)
{
	/* a reaped orphan may have been the last (zombie-holding) member */
	struct init_group *g = in->ending;
	if (g && g->blind && !in->done)
		recheck(g, false);
}

void init_group_free(struct init *in)
{
	struct init_group *g = in->ending;
	if (!g)
		return;
	if (g->timer)
		evm_timer_cancel(g->timer);
	if (g->poll)
		evm_timer_cancel(g->poll);
	unwatch_all(g);
	free(g->m);
	free(g);
	in->ending = NULL;
}
