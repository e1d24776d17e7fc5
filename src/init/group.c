/*
 * group.c - the end: the main child has exited; what is left of its
 * process group gets SIGTERM, then SIGKILL after the grace, and we exit when
 * no live process is left in the group (or shortly after the SIGKILL).
 *
 * tini exits at once and dumb-init sends SIGTERM and exits at once; as PID 1
 * either way means the kernel SIGKILLs the rest, with no time to clean up.
 * We give the rest the grace first (-t 0 restores dumb-init's behaviour).
 *
 * Knowing when the group is empty: members need not be our children (a
 * grandchild's exit goes to its own parent), and a zombie still counts for
 * kill(-pgid, 0). So we list the live members from /proc once, watch each
 * through a pidfd (readable when it exits, child or not), and list again
 * when all of them have exited, since members can fork. The lists and
 * watchers exist only during the end, and are freed before exit.
 */
#include "cli.h"
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#define KILL_WAIT_MS 1000 /* after SIGKILL: a process stuck in the kernel may not die */
#define POLL_MS 50	  /* when some member could not be watched (no fd left) */

struct member {
	int pidfd;
	struct evm_io *io;
};

struct init_group {
	struct init *in;
	struct member *m;
	size_t n, cap, live;
	struct evm_timer *timer; /* grace, then the wait after SIGKILL */
	struct evm_timer *poll;	 /* blind: recheck every POLL_MS */
	bool killed;
	bool blind;
};

static void finish(struct init_group *g, const char *why)
{
	init_log(g->in, V_INFO, "process group %d: %s", (int)g->in->pgid, why);
	g->in->done = true;
}

/* "pid (comm) S ppid pgrp ...": is it a live member of pgid? */
static bool live_member(pid_t pid, pid_t pgid)
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
	/* fields after the comm: 3 state, 4 ppid, 5 pgrp, ..., 20 num_threads (no sscanf:
	   it would double the size of the static evmon-init) */
	char *p = strrchr(buf, ')');
	if (!p)
		return false;
	char state = 0;
	long pgrp = 0, threads = 0;
	int field = 2;
	for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
		field++;
		if (field == 3)
			state = tok[0];
		else if (field == 5)
			pgrp = strtol(tok, NULL, 10);
		else if (field == 20) {
			threads = strtol(tok, NULL, 10);
			break;
		}
	}
	if (field != 20)
		return false;
	if (pgrp != pgid)
		return false;
	/* a zombie leader with live threads is still a running process */
	return (state != 'Z' && state != 'X') || threads > 1;
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

static void recheck(struct init_group *g);

static void on_member_exit(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct init_group *g = data;
	(void)io;
	(void)revents;
	for (size_t i = 0; i < g->n; i++) {
		if (g->m[i].pidfd == fd) {
			unwatch(&g->m[i]);
			if (--g->live == 0)
				recheck(g);
			return;
		}
	}
}

static void watch(struct init_group *g, pid_t pid)
{
	int fd = pidfd_open(pid, 0);
	if (fd < 0) {
		if (errno != ESRCH)
			g->blind = true; /* out of fds: fall back to polling */
		return;
	}
	/* the pid was read before the pidfd pinned it: make sure it is still a member */
	if (!live_member(pid, g->in->pgid)) {
		close(fd);
		return;
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

/* List and watch the live members; returns how many there are. */
static size_t scan(struct init_group *g)
{
	unwatch_all(g);
	g->blind = false;
	DIR *d = opendir("/proc");
	if (!d) {
		g->blind = true;
		return 0;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid == getpid())
			continue;
		if (live_member((pid_t)pid, g->in->pgid))
			watch(g, (pid_t)pid);
	}
	closedir(d);
	return g->live;
}

static void on_poll(struct evm_timer *t, void *data)
{
	struct init_group *g = data;
	(void)t;
	g->poll = NULL;
	recheck(g);
}

static void recheck(struct init_group *g)
{
	if (g->in->done)
		return;
	size_t n = scan(g);
	if (n == 0 && !g->blind) {
		finish(g, g->killed ? "empty after SIGKILL" : "empty");
		return;
	}
	init_log(g->in, V_TRACE, "process group %d: %zu live members watched%s", (int)g->in->pgid, n,
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
		init_log(g->in, V_WARN, "process group %d: members left %d ms after SIGKILL; exiting anyway",
			 (int)g->in->pgid, KILL_WAIT_MS);
		finish(g, "given up");
		return;
	}
	g->killed = true;
	init_log(g->in, V_INFO, "process group %d: grace of %llu ms over, sending SIGKILL", (int)g->in->pgid,
		 (unsigned long long)g->in->grace_ms);
	if (killpg(g->in->pgid, SIGKILL) < 0 && errno == ESRCH) {
		finish(g, "empty");
		return;
	}
	if (evm_timer_add(g->in->loop, KILL_WAIT_MS, on_timer, g, &g->timer) < 0) {
		finish(g, "no timer to wait after SIGKILL");
		return;
	}
	recheck(g);
}

void init_group_end(struct init *in)
{
	/*
	 * The leader is reaped, but its pid stays reserved while any process
	 * still uses it as a process group id, so killpg cannot hit a stranger
	 * here unless the group is empty and the pid was reused within
	 * microseconds, which would take a wrap-around of the pid space.
	 */
	if (killpg(in->pgid, SIGTERM) < 0) {
		init_log(in, V_TRACE, "process group %d: empty", (int)in->pgid);
		in->done = true;
		return;
	}
	if (in->grace_ms == 0) {
		init_log(in, V_INFO, "process group %d: sent SIGTERM, not waiting (-t 0)", (int)in->pgid);
		in->done = true;
		return;
	}
	struct init_group *g = calloc(1, sizeof(*g));
	if (!g) {
		init_log(in, V_WARN, "process group %d: out of memory; exiting without waiting", (int)in->pgid);
		in->done = true;
		return;
	}
	g->in = in;
	in->ending = g;
	size_t n = scan(g);
	if (n == 0 && !g->blind) {
		finish(g, "empty");
		return;
	}
	init_log(in, V_INFO, "process group %d: sent SIGTERM to %zu remaining processes; SIGKILL in %llu ms",
		 (int)in->pgid, n, (unsigned long long)in->grace_ms);
	if (evm_timer_add(in->loop, in->grace_ms, on_timer, g, &g->timer) < 0) {
		/* no way to end the wait: end it now */
		killpg(in->pgid, SIGKILL);
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
		recheck(g);
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
