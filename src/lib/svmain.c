/*
 * svmain.c - a service's main process changing while the service runs:
 * evm_service_set_main (sd_notify's MAINPID=, a pidfile's pid) takes over
 * another process of the service as the one whose exit, pid and signals
 * are the service's.
 *
 * A pid is only ever taken from the service's own tree: with a cgroup, a
 * process of that cgroup (or below it); without one, a process of the
 * session the service leads (kill_mode tree), or else of the session or
 * process group the main process leads (before_exit: the one that just
 * exited), or else of the current main process's session. The pid is
 * pinned by a pidfd before /proc is read, so the process checked is the
 * one adopted (adopt.c), never a reused pid.
 *
 * And a main process that exits while its tree lives on (a daemon that
 * forked, evm_track): with a pidfile, the exit is held while the file is
 * looked for (a timer of its own, main_timer, so a stop meanwhile keeps its
 * kill deadline), then its pid is the main process; with track TREE and a
 * watched cgroup, a successful exit is held until the cgroup is empty
 * ("cgroup empty" ends it, as for a restart's wait).
 */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIDFILE_STEP_MS 20
#define PIDFILE_WAIT_MS 5000

/* Is pid (pinned) in the service's cgroup, or in no cgroup we can tell? 0, -EPERM */
static int in_cgroup(const struct evm_service *s, pid_t pid)
{
	if (s->cg->rel)
		return evm__cg_member(pid, s->cg->rel) ? 0 : -EPERM;
	/* the mount does not show our cgroups' names: its cgroup.procs */
	enum { CAP = 4096 };
	pid_t *pids = malloc(CAP * sizeof(*pids));
	if (!pids)
		return -ENOMEM;
	int n = evm_cgroup_procs(s->cg, pids, CAP), r = -EPERM;
	for (int i = 0; i < n && i < CAP; i++)
		if (pids[i] == pid)
			r = 0;
	free(pids);
	return r;
}

/*
 * pid (pinned, its /proc/PID/stat in st) belongs to the service's tree: 0,
 * or -EPERM. The session or group the main process leads outlives it, so
 * this holds in before_exit too, once the main has exited: the number is
 * not reused while pid (or any process) is in that session or group.
 */
static int belongs(struct evm_service *s, const struct evm__pstat *st)
{
	const struct evm_proc *m = s->proc;
	struct evm__pstat main;
	if (evm__sv_session(s))
		return st->sid == s->sid ? 0 : -EPERM;
	/* also once the main process has exited (a pidfile's daemon): s->leader, not s->proc */
	if (s->main_leads == MAIN_LEADS_SESSION && s->leader > 0)
		return st->sid == s->leader ? 0 : -EPERM;
	if (s->main_leads == MAIN_LEADS_GROUP && s->leader > 0)
		return st->pgid == s->leader ? 0 : -EPERM;
	if (m && !m->gone && evm__proc_stat(m->pid, &main) == 0)
		return st->sid == main.sid ? 0 : -EPERM;
	return -EPERM; /* nothing to check it against */
}

/* what is left of a wait for the main process: the caller has a new one, or gives up */
static void wait_over(struct evm_service *s)
{
	evm_timer_cancel(s->main_timer);
	s->main_wait = MAIN_WAIT_NO;
	s->exit_held = false;
}

int evm__sv_take_main(struct evm_service *s, pid_t pid)
{
	if (s->proc && s->proc->pid == pid)
		return 0;
	pid_t was = s->proc ? s->proc->pid : s->last_exit.pid;
	if (pid == getpid())
		return -EPERM;
	int pidfd = evm__above_stdio(pidfd_open(pid, 0));
	if (pidfd < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	struct evm__pstat st;
	int r = s->cg ? in_cgroup(s, pid) : evm__proc_stat(pid, &st);
	if (r == 0 && !s->cg)
		r = belongs(s, &st);
	struct evm_proc *p = NULL;
	if (r == 0)
		r = evm_proc_adopt(s->loop,
				   &(struct evm_adopt_opts){.pid = pid, .flags = EVM_ADOPT_PIDFD,
							    .pidfd = pidfd},
				   &p);
	if (r < 0) {
		close(pidfd);
		return r;
	}
	struct evm_proc *old = s->proc;
	if (!old) {
		wait_over(s); /* its run goes on with this one */
		evm__sv_rearm(s);
	}
	p->owner_cb = evm__sv_on_proc_exit;
	p->owner = s;
	s->proc = p;
	s->main_leads = p->adopt_sid == pid		? MAIN_LEADS_SESSION
			: p->kind & EVM__K_GROUP	? MAIN_LEADS_GROUP
							: MAIN_LEADS_NOTHING;
	s->leader = pid;
	if (old) {
		/* it runs on as any process of the service; its exit is no longer the service's */
		old->owner_cb = NULL;
		old->owner = NULL;
		evm_proc_unref(old);
	}
	const struct evm_exit *e = old ? s->exiting : NULL; /* in before_exit: old has exited */
	int n = snprintf(s->msg, sizeof(s->msg), "main process is now pid %d (was %d", (int)pid,
			 (int)was);
	size_t k = n > 0 && (size_t)n < sizeof(s->msg) ? (size_t)n : 0;
	if (e && !e->status_unknown && e->signal)
		snprintf(s->msg + k, sizeof(s->msg) - k, ", killed by signal %d)", e->signal);
	else if (e && !e->status_unknown)
		snprintf(s->msg + k, sizeof(s->msg) - k, ", which exited with code %d)", e->code);
	else
		snprintf(s->msg + k, sizeof(s->msg) - k, e ? ", which exited)" : ")");
	return 1;
}

int evm_service_set_main(struct evm_service *s, pid_t pid)
{
	if (!s || s->dead || pid <= 0)
		return -EINVAL;
	if ((!s->proc && !s->main_wait) ||
	    (s->state != EVM_STATE_STARTING && s->state != EVM_STATE_RUNNING &&
	     s->state != EVM_STATE_RELOADING))
		return -ESRCH;
	int r = evm__sv_take_main(s, pid);
	if (r > 0)
		evm__sv_tell(s);
	return r < 0 ? r : 0;
}

/* ------------------------------------------------------------ pidfile */

/* the pid in path: a regular file (a FIFO would block), one decimal number */
/*
 * The file at path opened for reading only if it is a regular file: the
 * service may write where its pidfile is, so the name may be a symlink to a
 * device, whose open alone acts (a watchdog's arms it, a serial line's
 * raises DTR). An O_PATH descriptor looks first, then its inode is opened
 * through /proc (or, without /proc, the name again, never through a link,
 * and checked to be the same file). -errno: ESPIPE for not a regular file.
 */
static int open_regular(const char *path)
{
	int p = open(path, O_PATH | O_CLOEXEC);
	if (p < 0)
		return -errno;
	struct stat st, again;
	int e = fstat(p, &st) < 0 ? errno : !S_ISREG(st.st_mode) ? ESPIPE : 0;
	if (e) {
		close(p);
		return -e;
	}
	char self[40];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", p);
	int fd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 && errno == ENOENT) { /* no /proc */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
		if (fd >= 0 && (fstat(fd, &again) < 0 || again.st_dev != st.st_dev ||
				again.st_ino != st.st_ino)) {
			close(fd);
			fd = -1;
			errno = ESPIPE;
		}
	}
	e = errno;
	close(p);
	return fd >= 0 ? fd : -e;
}

static int read_pidfile(const char *path, pid_t *out)
{
	int fd = open_regular(path);
	if (fd < 0)
		return fd;
	char buf[32];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = 0;
	char *end;
	long v = strtol(buf, &end, 10);
	while (*end == '\n' || *end == ' ' || *end == '\t' || *end == '\r')
		end++;
	if (end == buf || *end || v <= 0 || v > 0x3fffffff)
		return -EINVAL; /* empty (being written), or not a pid */
	*out = (pid_t)v;
	return 0;
}

/* the pidfile's pid as the main process: 1 taken, else -errno with why in s->msg */
static int try_pidfile(struct evm_service *s)
{
	pid_t pid = 0;
	int r = read_pidfile(s->pidfile, &pid);
	if (r == 0)
		r = evm__sv_take_main(s, pid);
	if (r > 0) {
		s->handed_over = true;
		size_t n = strlen(s->msg);
		snprintf(s->msg + n, sizeof(s->msg) - n, " from pidfile %s", s->pidfile);
	} else if (r == -EPERM || r == -EEXIST) {
		snprintf(s->msg, sizeof(s->msg), "pidfile %s: pid %d is not the service's: refused",
			 s->pidfile, (int)pid);
	} else if (r < 0) {
		snprintf(s->msg, sizeof(s->msg), "pidfile %s: %s", s->pidfile,
			 pid ? "its pid is gone" : r == -EINVAL ? "no pid in it"
			     : r == -ESPIPE ? "not a regular file: not opened" : strerror(-r));
	}
	return r;
}

/* some process of the service outlives its main one */
static bool tree_lives(struct evm_service *s)
{
	if (s->cg)
		return evm__sv_cg_busy(s) || (!s->cgw && evm_cgroup_populated(s->cg) > 0);
	if (evm__sv_session(s))
		return evm_tree_signal(s->sid, 0) > 0;
	/* the session or group the exited main led, whatever the kill_mode */
	if (s->main_leads == MAIN_LEADS_SESSION && s->leader > 0)
		return evm_tree_signal(s->leader, 0) > 0;
	return s->main_leads == MAIN_LEADS_GROUP && s->leader > 0 && killpg(s->leader, 0) == 0;
}

static void pidfile_retry(struct evm_timer *t, void *data)
{
	struct evm_service *s = data;
	bool running = s->state == EVM_STATE_STARTING || s->state == EVM_STATE_RUNNING;
	if (running && !s->failing && try_pidfile(s) > 0) {
		evm__sv_tell(s);
		return;
	}
	if (running && !s->failing && tree_lives(s) && evm__mono_ns() < s->pidfile_until &&
	    evm_timer_add(s->loop, PIDFILE_STEP_MS, pidfile_retry, s, &s->main_timer) == 0)
		return;
	/* given up, or stopped meanwhile: the first process's exit is decided as it is */
	wait_over(s);
	if (!running && s->state != EVM_STATE_STOPPING)
		return; /* its stop is over already (the cgroup emptied) */
	if (!running || s->failing)
		s->msg[0] = 0;
	evm__sv_held_oom(s);
	evm__sv_exit_decide(s);
}

bool evm__sv_pidfile_wait(struct evm_service *s)
{
	const struct evm_exit *e = &s->last_exit;
	bool ok = !e->status_unknown && !e->signal && e->code >= 0 && e->code < 256 &&
		  (s->success[e->code / 32] >> (e->code % 32) & 1u);
	if (!s->pidfile || s->handed_over || !ok || s->failing || s->loop->shutting_down ||
	    (s->state != EVM_STATE_STARTING && s->state != EVM_STATE_RUNNING))
		return false;
	if (try_pidfile(s) > 0) {
		evm__sv_tell(s);
		return true;
	}
	if (!tree_lives(s) ||
	    evm_timer_add(s->loop, PIDFILE_STEP_MS, pidfile_retry, s, &s->main_timer) < 0)
		return false; /* its message says why */
	s->pidfile_until = evm__mono_ns() + (uint64_t)PIDFILE_WAIT_MS * 1000000;
	s->main_wait = MAIN_WAIT_PIDFILE;
	s->exit_held = true;
	return true;
}

/* ------------------------------------------------------------- track tree */

bool evm__sv_tree_hold(struct evm_service *s, bool ok)
{
	if (s->track != EVM_TRACK_TREE || !ok || s->failing || s->handed_over || !s->cgw ||
	    s->kill_mode != EVM_KILL_TREE || s->loop->shutting_down || !evm__sv_cg_busy(s))
		return false;
	s->main_wait = MAIN_WAIT_TREE;
	s->exit_held = true;
	size_t n = strlen(s->msg);
	snprintf(s->msg + n, sizeof(s->msg) - n,
		 "%smain process %d exited (code %d): it runs on while its cgroup has processes",
		 n ? "; " : "", (int)s->last_exit.pid, s->last_exit.code);
	evm__sv_rearm(s);
	evm__sv_tell(s);
	return true;
}

/*
 * evm_service_adopt_tree: what an earlier supervisor left, a service whose
 * main process exited while its tree lives on, is that again here: RUNNING
 * with no main process, the main's exit held until the cgroup is empty.
 */
int evm__sv_adopt_tree(struct evm_service *s, const struct evm_exit *e)
{
	if (s->track != EVM_TRACK_TREE || s->kill_mode != EVM_KILL_TREE || !s->cg)
		return -EINVAL;
	if (!s->cgw)
		return -ENOENT; /* no watch (no fd left): nothing would tell its end */
	if (!evm__sv_cg_busy(s))
		return -ESRCH;
	evm_timer_cancel(s->timer); /* a restart's start, if one waits (svexit.c) */
	s->start_after_stop = false;
	s->has_exit = true;
	s->last_exit = *e;
	s->main_wait = MAIN_WAIT_TREE;
	s->exit_held = true;
	s->handed_over = false;
	s->main_leads = MAIN_LEADS_NOTHING;
	s->leader = 0;
	s->sid = 0;
	/* up since its main process started, as far as the clocks tell */
	int64_t ago = evm__real_ns() - ((int64_t)e->start_time.tv_sec * 1000000000 + e->start_time.tv_nsec);
	uint64_t mono = evm__mono_ns();
	s->started_mono = ago > 0 && (uint64_t)ago < mono ? mono - (uint64_t)ago : mono;
	evm__sv_adopted_run(s);
	snprintf(s->msg, sizeof(s->msg),
		 "adopted its tree: main process %d exited (code %d), it runs on while its cgroup "
		 "has processes",
		 (int)e->pid, e->code);
	evm__sv_enter(s, EVM_STATE_RUNNING, NULL, 0, 0);
	evm__sv_rearm(s);
	return 0;
}
