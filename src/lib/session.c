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

/*
 * One read of /proc, indexed: by_sid and by_ppid hold the entries' indices
 * sorted by session and by parent, so a search walks only the trees it
 * marks (a binary search per member) and not the whole table: a shutdown
 * stopping 10,000 services in one dispatch shares one read, and searched
 * all of it 10,000 times (1.5 s).
 */
struct ptable {
	struct evm__pstat *p;
	uint32_t *by_sid, *by_ppid; /* by_sid's block holds by_ppid and mark too, cap each */
	uint32_t *mark; /* the last search's marked entries, in the order found */
	bool *in;	/* p[i] is marked */
	size_t n, cap, nmark;
	uint64_t reads;	 /* table_read calls */
	uint64_t visits; /* entries a search looked at (for tests: the cost) */
};

static void table_free(struct ptable *t)
{
	free(t->p);
	free(t->by_sid);
	free(t->in);
	*t = (struct ptable){0};
}

static int table_grow(struct ptable *t)
{
	size_t cap = t->cap ? t->cap * 2 : 256;
	struct evm__pstat *p = realloc(t->p, cap * sizeof(*p));
	if (p)
		t->p = p;
	/* the three index arrays: made again at each read (table_read), nothing to keep */
	uint32_t *idx = realloc(t->by_sid, 3 * cap * sizeof(*idx));
	if (idx) {
		t->by_sid = idx;
		t->by_ppid = idx + cap;
		t->mark = idx + 2 * cap;
	}
	bool *in = realloc(t->in, cap * sizeof(*in));
	if (in)
		t->in = in;
	if (!p || !idx || !in)
		return -ENOMEM;
	t->cap = cap;
	return 0;
}

static pid_t key_of(const struct ptable *t, uint32_t i, bool sid)
{
	return sid ? t->p[i].sid : t->p[i].ppid;
}

struct sorting {
	const struct ptable *t;
	bool sid;
};

static int by_key(const void *a, const void *b, void *data)
{
	const struct sorting *s = data;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	pid_t x = key_of(s->t, i, s->sid), y = key_of(s->t, j, s->sid);
	return x != y ? (x < y ? -1 : 1) : (i > j) - (i < j);
}

/* Every process of /proc now, indexed. */
static int table_read(struct ptable *t)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -errno;
	int r = 0;
	struct dirent *e;
	t->n = t->nmark = 0;
	t->reads++;
	while (r == 0 && (e = readdir(d))) {
		char *end;
		long v = strtol(e->d_name, &end, 10);
		if (*end || v <= 0)
			continue;
		if (t->n == t->cap && (r = table_grow(t)) < 0)
			break;
		if (evm__proc_stat((pid_t)v, &t->p[t->n]) == 0)
			t->n++;
	}
	closedir(d);
	if (r < 0) {
		t->n = 0;
		return r;
	}
	for (size_t i = 0; i < t->n; i++) {
		t->by_sid[i] = t->by_ppid[i] = (uint32_t)i;
		t->in[i] = false;
	}
	qsort_r(t->by_sid, t->n, sizeof(*t->by_sid), by_key, &(struct sorting){t, true});
	qsort_r(t->by_ppid, t->n, sizeof(*t->by_ppid), by_key, &(struct sorting){t, false});
	return 0;
}

/* mark p[i] (never self), queued for its children's search */
static void mark(struct ptable *t, uint32_t i, pid_t self)
{
	t->visits++;
	if (t->in[i] || t->p[i].pid == self)
		return;
	t->in[i] = true;
	t->mark[t->nmark++] = i;
}

/* mark every entry whose session (sid) or parent (!sid) is key */
static void mark_key(struct ptable *t, bool sid, pid_t key, pid_t self)
{
	const uint32_t *idx = sid ? t->by_sid : t->by_ppid;
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (key_of(t, idx[mid], sid) < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < t->n && key_of(t, idx[lo], sid) == key; lo++)
		mark(t, idx[lo], self);
}

/*
 * Mark the trees: the members of the sessions sids[0..nsids), or with sids
 * NULL the caller's children; then whoever's parent is marked (t->mark is
 * also the queue of that search), never self.
 */
static void table_mark(struct ptable *t, const pid_t *sids, size_t nsids, pid_t self)
{
	for (size_t i = 0; i < t->nmark; i++)
		t->in[t->mark[i]] = false;
	t->nmark = 0;
	if (!sids)
		mark_key(t, false, self, self);
	for (size_t i = 0; sids && i < nsids; i++)
		mark_key(t, true, sids[i], self);
	for (size_t q = 0; q < t->nmark; q++)
		mark_key(t, false, t->p[t->mark[q]].pid, self);
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
 * sig to every process of the sessions sids[0..nsids) (sids NULL: of our
 * descendants). t holds a read of /proc already when have: the first pass
 * uses it.
 */
static int signal_trees(struct ptable *t, bool have, const pid_t *sids, size_t nsids, int sig)
{
	struct evm__pidmap seen = {0};
	pid_t self = getpid();
	int sent = 0, error = 0, r = 0;
	/* SIGKILL: again until a pass meets nobody new (a killed process cannot fork) */
	for (int pass = 0; pass < (sig == SIGKILL ? KILL_PASSES : 1); pass++) {
		if ((pass > 0 || !have) && (r = table_read(t)) < 0)
			break;
		table_mark(t, sids, nsids, self);
		int fresh = 0;
		for (size_t k = 0; k < t->nmark; k++) {
			const struct evm__pstat *p = &t->p[t->mark[k]];
			if (evm__pidmap_get(&seen, p->pid))
				continue;
			fresh++;
			if (evm__pidmap_reserve(&seen) == 0)
				evm__pidmap_put(&seen, p->pid, (struct evm_proc *)t);
			int e = signal_pinned(p, sig);
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

int evm_tree_signal(pid_t sid, int sig)
{
	if (sid < 0 || sig < 0 || sig >= NSIG)
		return -EINVAL;
	struct ptable t = {0};
	int r = signal_trees(&t, false, sid > 0 ? &sid : NULL, 1, sig);
	table_free(&t);
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
	pid_t *sweep; /* trees_release's sessions (capkill of them) */
	uint64_t reads; /* of /proc, all passes: what the batching saves */
};

/* sig to sids' trees, tr->snap the table (read once here unless have) */
static int trees_signal(struct evm__trees *tr, bool have, const pid_t *sids, size_t nsids, int sig)
{
	uint64_t before = tr->snap.reads;
	int r = signal_trees(&tr->snap, have, sids, nsids, sig);
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
		if (!p || p->serial <= tr->kill[i].since)
			tr->sweep[n++] = sid;
	}
	/* read now: every exit that queued a session came before it */
	if (n)
		trees_signal(tr, false, tr->sweep, n, SIGKILL);
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
	int r = trees_signal(tr, tr->valid, &sid, 1, sig);
	tr->valid = r >= 0;
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
		if (k)
			tr->kill = k;
		pid_t *s = realloc(tr->sweep, cap * sizeof(*s));
		if (s)
			tr->sweep = s;
		if (k && s)
			tr->capkill = cap;
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
	table_free(&tr->snap);
	for (size_t i = 0; i < tr->nkill; i++) /* queued, the dispatch never ended: not sent */
		if (tr->kill[i].then)
			evm_proc_unref(tr->kill[i].then);
	free(tr->kill);
	free(tr->sweep);
	free(tr);
	loop->trees = NULL;
}

uint64_t evm__tree_reads(const struct evm_loop *loop)
{
	return loop->trees ? loop->trees->reads : 0;
}

uint64_t evm__tree_visits(const struct evm_loop *loop)
{
	return loop->trees ? loop->trees->snap.visits : 0;
}
