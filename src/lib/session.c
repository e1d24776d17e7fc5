/*
 * session.c - a service's process tree without a cgroup: what /proc says
 * belongs to its session.
 *
 * A service without a cgroup runs in a session of its own (its main process
 * leads it). Its descendants keep that session id even once re-parented to
 * us (the subreaper) or to init, unless they call setsid. So a search at
 * stop time takes every process of the session, then every descendant of
 * those by parent pid: a setsid under a live member is found through its
 * parent. Not found: one that called setsid and whose parent is gone before
 * the search (nothing links it to the service any more).
 *
 * /proc is read only when a stop needs it, never on a timer. pids may be
 * reused between the read and the signal, so each one is pinned with a pidfd
 * and its start time read again before the signal goes through the pidfd.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KILL_PASSES 1000

int evm__proc_stat(pid_t pid, struct evm__pstat *out)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	int e = errno;
	close(fd);
	if (k < 0)
		return e == ESRCH ? -ESRCH : -e;
	buf[k] = 0;
	/* comm (field 2) may hold spaces and ')': the fields start after the last ')' */
	char *s = strrchr(buf, ')');
	if (!s)
		return -EIO;
	s++;
	/* s is " S ppid pgrp session ...": field 3 is the state */
	int ppid, pgid, sid;
	if (sscanf(s, " %c %d %d %d", &out->state, &ppid, &pgid, &sid) != 4)
		return -EIO;
	for (int field = 3; field < 22; field++) {
		s = strchr(s + 1, ' ');
		if (!s)
			return -EIO;
	}
	if (sscanf(s, " %" SCNu64, &out->start) != 1)
		return -EIO;
	out->pid = pid;
	out->ppid = ppid;
	out->pgid = pgid;
	out->sid = sid;
	return 0;
}

struct ptable {
	struct evm__pstat *p;
	bool *in;
	size_t n, cap;
	uint64_t reads; /* table_read calls */
};

static int table_add(struct ptable *t, pid_t pid)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct evm__pstat *p = realloc(t->p, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->p = p;
		t->cap = cap;
	}
	if (evm__proc_stat(pid, &t->p[t->n]) == 0)
		t->n++;
	return 0;
}

/* Every process of /proc now. */
static int table_read(struct ptable *t)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -errno;
	int r = 0;
	struct dirent *e;
	t->n = 0;
	t->reads++;
	while (r == 0 && (e = readdir(d))) {
		char *end;
		long v = strtol(e->d_name, &end, 10);
		if (*end || v <= 0)
			continue;
		r = table_add(t, (pid_t)v);
	}
	closedir(d);
	free(t->in);
	t->in = r == 0 ? calloc(t->n ? t->n : 1, sizeof(bool)) : NULL;
	return r < 0 ? r : t->in ? 0 : -ENOMEM;
}

/*
 * Mark the trees: with sids, the members of those sessions, else the
 * caller's children; then, until nothing changes, whoever's parent is marked.
 */
static void table_mark(struct ptable *t, const struct evm__pidmap *sids, pid_t self)
{
	struct evm__pidmap m = {0};
	for (size_t i = 0; i < t->n; i++) {
		t->in[i] = t->p[i].pid != self &&
			   (sids ? evm__pidmap_get(sids, t->p[i].sid) != NULL : t->p[i].ppid == self);
		if (t->in[i] && evm__pidmap_reserve(&m) == 0)
			evm__pidmap_put(&m, t->p[i].pid, (struct evm_proc *)t);
	}
	for (bool more = true; more;) {
		more = false;
		for (size_t i = 0; i < t->n; i++) {
			if (t->in[i] || t->p[i].pid == self || !evm__pidmap_get(&m, t->p[i].ppid))
				continue;
			t->in[i] = more = true;
			if (evm__pidmap_reserve(&m) == 0)
				evm__pidmap_put(&m, t->p[i].pid, (struct evm_proc *)t);
		}
	}
	evm__pidmap_free(&m);
}

/* sig to p if it is still the process read (pinned by a pidfd): 1 sent, 0 not, -errno */
static int signal_pinned(const struct evm__pstat *p, int sig)
{
	int fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	if (fd < 0)
		return errno == ESRCH ? 0 : -errno;
	struct evm__pstat now;
	int r = 0;
	/* a zombie (or one being reaped) is over: nothing to signal, nothing to count */
	if (evm__proc_stat(p->pid, &now) == 0 && now.start == p->start && now.state != 'Z' &&
	    now.state != 'X')
		r = syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0 ? 1 : errno == ESRCH ? 0 : -errno;
	close(fd);
	return r;
}

/*
 * sig to every process of the sessions in sids (NULL: of our descendants).
 * t holds a read of /proc already when have: the first pass uses it.
 */
static int signal_trees(struct ptable *t, bool have, const struct evm__pidmap *sids, int sig)
{
	struct evm__pidmap seen = {0};
	pid_t self = getpid();
	int sent = 0, error = 0, r = 0;
	/* SIGKILL: again until a pass meets nobody new (a killed process cannot fork) */
	for (int pass = 0; pass < (sig == SIGKILL ? KILL_PASSES : 1); pass++) {
		if ((pass > 0 || !have) && (r = table_read(t)) < 0)
			break;
		table_mark(t, sids, self);
		int fresh = 0;
		for (size_t i = 0; i < t->n; i++) {
			if (!t->in[i] || evm__pidmap_get(&seen, t->p[i].pid))
				continue;
			fresh++;
			if (evm__pidmap_reserve(&seen) == 0)
				evm__pidmap_put(&seen, t->p[i].pid, (struct evm_proc *)t);
			int e = signal_pinned(&t->p[i], sig);
			if (e > 0)
				sent++;
			else if (e < 0 && !error)
				error = e;
		}
		if (!fresh)
			break;
	}
	evm__pidmap_free(&seen);
	if (r < 0)
		return r;
	return sent || !error ? sent : error;
}

/* the set {sid} in m */
static int one_sid(struct evm__pidmap *m, pid_t sid)
{
	int r = evm__pidmap_reserve(m);
	if (r == 0)
		r = evm__pidmap_put(m, sid, (struct evm_proc *)m);
	return r;
}

int evm_tree_signal(pid_t sid, int sig)
{
	if (sid < 0 || sig < 0 || sig >= NSIG)
		return -EINVAL;
	struct ptable t = {0};
	struct evm__pidmap sids = {0};
	int r = sid > 0 ? one_sid(&sids, sid) : 0;
	if (r == 0)
		r = signal_trees(&t, false, sid > 0 ? &sids : NULL, sig);
	free(t.p);
	free(t.in);
	evm__pidmap_free(&sids);
	return r;
}

/*
 * A loop's services stopping without cgroups: stopping 1,000 of them, or
 * their 1,000 exits, cost one read of /proc each (each read a few thousand
 * syscalls: quadratic, 2.5 min for 500 services here). Within one dispatch
 * (an iteration of the loop, or one public call) the stop signals share one
 * read, and the SIGKILL sweeps wait for its end, where one read per pass
 * serves every session queued.
 */
struct evm__trees {
	struct evm_loop *loop;
	struct ptable snap; /* read in this dispatch (valid): stop signals */
	bool valid;
	struct tree_kill {
		pid_t sid;
		uint64_t since; /* loop->proc_serial when it was queued */
		struct evm_proc *then; /* SIGKILLed after the sweep (a reference), or NULL */
		bool group;	       /* then's group */
	} *kill; /* sessions to sweep at the end of the dispatch */
	size_t nkill, capkill;
	bool queued; /* rel is queued */
	struct evm__release rel;
	uint64_t reads; /* of /proc, all passes: what the batching saves */
};

/* sig to sids' trees, tr->snap the table (read once here unless have) */
static int trees_signal(struct evm__trees *tr, bool have, const struct evm__pidmap *sids, int sig)
{
	uint64_t before = tr->snap.reads;
	int r = signal_trees(&tr->snap, have, sids, sig);
	tr->reads += tr->snap.reads - before;
	return r;
}

static void kill_then(struct evm_proc *p, bool group)
{
	if (!p)
		return;
	if (!group || evm_proc_signal_group(p, SIGKILL) == -EPERM)
		evm_proc_signal(p, SIGKILL);
	evm_proc_unref(p);
}

static void trees_release(struct evm__release *rel)
{
	struct evm__trees *tr = evm__container_of(rel, struct evm__trees, rel);
	struct evm__pidmap sids = {0};
	size_t n = 0, nkill = tr->nkill;
	tr->queued = false;
	tr->valid = false;
	for (size_t i = 0; i < nkill; i++) {
		/*
		 * A pid is not reused while a process has it as its session id,
		 * and when the sweep was queued the session was one of a live
		 * service's (the number was held). So a process of ours with the
		 * number that we began tracking since then has reused it: that
		 * session is over, and this one is another service's (or the next
		 * run's). One tracked from before is the session's leader, still
		 * alive (a main that handed over with MAINPID=, one stuck in D
		 * state): its session is swept, the leader with it.
		 */
		pid_t sid = tr->kill[i].sid;
		struct evm_proc *p = evm__pidmap_get(&tr->loop->pids, sid);
		if (p && p->serial > tr->kill[i].since)
			continue;
		if (one_sid(&sids, sid) < 0) {
			evm_tree_signal(sid, SIGKILL);
			continue;
		}
		n++;
	}
	/* read now: every exit that queued a session came before it */
	if (n)
		trees_signal(tr, false, &sids, SIGKILL);
	evm__pidmap_free(&sids);
	tr->nkill = 0; /* a kill below queues nothing: its exit is seen later */
	for (size_t i = 0; i < nkill; i++)
		kill_then(tr->kill[i].then, tr->kill[i].group);
}

static struct evm__trees *trees_of(struct evm_loop *loop)
{
	if (!loop->trees && (loop->trees = calloc(1, sizeof(*loop->trees))))
		loop->trees->loop = loop;
	return loop->trees;
}

/* the read and the queue end with the dispatch (at once outside of one) */
static void trees_arm(struct evm__trees *tr)
{
	if (tr->queued)
		return;
	tr->queued = true;
	evm__release(tr->loop, &tr->rel, trees_release);
}

int evm__tree_signal_shared(struct evm_loop *loop, pid_t sid, int sig)
{
	struct evm__trees *tr = trees_of(loop);
	if (!tr || sid <= 0 || sig == SIGKILL)
		return evm_tree_signal(sid, sig);
	struct evm__pidmap sids = {0};
	int r = one_sid(&sids, sid);
	if (r == 0) {
		r = trees_signal(tr, tr->valid, &sids, sig);
		tr->valid = r >= 0;
	}
	evm__pidmap_free(&sids);
	if (tr->valid)
		trees_arm(tr);
	return r;
}

void evm__tree_kill_later(struct evm_loop *loop, pid_t sid, struct evm_proc *then, bool group)
{
	struct evm__trees *tr = trees_of(loop);
	if (tr && tr->nkill == tr->capkill) {
		size_t cap = tr->capkill ? tr->capkill * 2 : 16;
		struct tree_kill *k = realloc(tr->kill, cap * sizeof(*k));
		if (k) {
			tr->kill = k;
			tr->capkill = cap;
		}
	}
	if (!tr || tr->nkill == tr->capkill) {
		evm_tree_signal(sid, SIGKILL); /* out of memory: now, alone */
		kill_then(then ? evm_proc_ref(then) : NULL, group);
		return;
	}
	tr->kill[tr->nkill] = (struct tree_kill){.sid = sid, .since = loop->proc_serial,
						 .then = then ? evm_proc_ref(then) : NULL,
						 .group = group};
	tr->nkill++;
	trees_arm(tr);
}

void evm__trees_free(struct evm_loop *loop)
{
	struct evm__trees *tr = loop->trees;
	if (!tr)
		return;
	free(tr->snap.p);
	free(tr->snap.in);
	for (size_t i = 0; i < tr->nkill; i++) /* queued, the dispatch never ended: not sent */
		if (tr->kill[i].then)
			evm_proc_unref(tr->kill[i].then);
	free(tr->kill);
	free(tr);
	loop->trees = NULL;
}

uint64_t evm__tree_reads(const struct evm_loop *loop)
{
	return loop->trees ? loop->trees->reads : 0;
}
