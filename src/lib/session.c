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
 * Mark the tree: sid > 0, the session's members, else the caller's
 * children; then, until nothing changes, whoever's parent is marked.
 */
static void table_mark(struct ptable *t, pid_t sid, pid_t self)
{
	struct evm__pidmap m = {0};
	for (size_t i = 0; i < t->n; i++) {
		t->in[i] = t->p[i].pid != self && (sid > 0 ? t->p[i].sid == sid : t->p[i].ppid == self);
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

int evm_tree_signal(pid_t sid, int sig)
{
	if (sid < 0 || sig < 0 || sig >= NSIG)
		return -EINVAL;
	struct ptable t = {0};
	struct evm__pidmap seen = {0};
	pid_t self = getpid();
	int sent = 0, error = 0, r = 0;
	/* SIGKILL: again until a pass meets nobody new (a killed process cannot fork) */
	for (int pass = 0; pass < (sig == SIGKILL ? KILL_PASSES : 1); pass++) {
		if ((r = table_read(&t)) < 0)
			break;
		table_mark(&t, sid, self);
		int fresh = 0;
		for (size_t i = 0; i < t.n; i++) {
			if (!t.in[i] || evm__pidmap_get(&seen, t.p[i].pid))
				continue;
			fresh++;
			if (evm__pidmap_reserve(&seen) == 0)
				evm__pidmap_put(&seen, t.p[i].pid, (struct evm_proc *)&t);
			int e = signal_pinned(&t.p[i], sig);
			if (e > 0)
				sent++;
			else if (e < 0 && !error)
				error = e;
		}
		if (!fresh)
			break;
	}
	free(t.p);
	free(t.in);
	evm__pidmap_free(&seen);
	if (r < 0)
		return r;
	return sent || !error ? sent : error;
}
