/*
 * proc.c - process objects: lifetime, signals, and the report of an exit
 * (threads blocked in evm_proc_wait are woken through wait.c).
 *
 * A proc holds one reference for the loop from spawn until the iteration in
 * which its exit was reported, plus one for each caller reference. The pidfd
 * pins the pid while the child is unreaped, so a signal sent through it can
 * never reach a process that reused the pid.
 *
 * Exit dispatch order: the proc's callback, its named handler, subscribers
 * (EVM_EV_EXIT), the internal owner (a service's policy), then threads
 * blocked in evm_proc_wait.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

pthread_mutex_t evm__sig_mu = PTHREAD_MUTEX_INITIALIZER;

struct evm_proc *evm__proc_new(struct evm_loop *loop)
{
	struct evm_proc *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->w.cb = evm__reap_pidfd;
	p->loop = loop;
	p->pidfd = -1;
	p->pipes[0] = p->pipes[1] = p->pipes[2] = -1;
	atomic_init(&p->refs, 1);
	atomic_init(&p->done, false);
	return p;
}

struct evm__proc_more *evm__proc_more(struct evm_proc *p)
{
	if (!p->more)
		p->more = calloc(1, sizeof(*p->more));
	return p->more;
}

/* Track a running child. Takes ownership of pidfd (-1: watch through SIGCHLD). */
void evm__proc_attach(struct evm_proc *p, pid_t pid, int pidfd)
{
	struct evm_loop *loop = p->loop;
	p->pid = pid;
	p->pidfd = pidfd;
	p->serial = ++loop->proc_serial;
	if (!p->start_mono) {
		p->start_mono = evm__mono_ns();
		p->start_real = evm__real_ns();
	}
	/* one-shot: a pidfd becomes readable once, and a disarmed one needs no DEL */
	if (pidfd >= 0 && evm__epoll_add(loop, pidfd, EPOLLIN | EPOLLONESHOT, &p->w) < 0) {
		/* epoll is out of memory (max_user_watches): fall back to SIGCHLD */
		close(pidfd);
		p->pidfd = -1;
		if (evm__sigchld_enable(loop) < 0)
			evm__warn(loop, -ENOMEM, "pid %d: cannot watch it (no epoll slot, no signalfd)",
				  (int)pid);
	}
	if (p->pidfd < 0) {
		p->kind |= EVM__K_NOPIDFD;
		loop->nnopidfd++;
	}
	if (evm__pidmap_put(&loop->pids, pid, p) < 0 && (p->kind & EVM__K_NOPIDFD))
		evm__warn(loop, -ENOMEM, "pid %d: no memory to track it; its exit may be reported as an orphan", (int)pid);
	p->next = loop->live;
	if (p->next)
		p->next->prev = p;
	loop->live = p;
	loop->nlive++;
}

static void detach(struct evm_proc *p)
{
	struct evm_loop *loop = p->loop;
	pthread_mutex_lock(&evm__sig_mu);
	p->gone = true; /* before the pidfd number can be reused */
	pthread_mutex_unlock(&evm__sig_mu);
	if (p->pidfd >= 0) {
		/*
		 * Closing our fd ends the epoll registration only if no other copy
		 * of the pidfd exists, and a fork() elsewhere in the process may
		 * hold one: an armed registration would then report to a freed
		 * proc. After the one-shot event it is disarmed and the close is
		 * enough; before it (reaped by a scan, or at teardown), DEL first.
		 */
		if (!(p->flags & EVM__P_FIRED) && !(p->kind & EVM__K_NOPIDFD))
			evm__epoll_del(loop, p->pidfd); /* a NOPIDFD one is evm_proc_pidfd's, never added */
		close(p->pidfd);
		p->pidfd = -1;
	}
	if (p->kind & EVM__K_NOPIDFD)
		loop->nnopidfd--;
	evm__pidmap_del(&loop->pids, p->pid);
	if (p->prev)
		p->prev->next = p->next;
	else
		loop->live = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
	loop->nlive--;
}

void evm__fill_status(struct evm_exit *rec, const siginfo_t *si)
{
	rec->code = -1;
	rec->signal = 0;
	rec->core_dumped = false;
	switch (si->si_code) {
	case CLD_EXITED:
		rec->code = si->si_status;
		rec->status = (si->si_status & 0xff) << 8;
		break;
	case CLD_DUMPED:
		rec->core_dumped = true;
		/* fallthrough */
	case CLD_KILLED:
		rec->signal = si->si_status;
		rec->status = (si->si_status & 0x7f) | (rec->core_dumped ? 0x80 : 0);
		break;
	default:
		rec->status_unknown = true;
		break;
	}
}

/*
 * The loop drops its reference at the end of the dispatch that reported the
 * exit. What ties the proc to the loop goes with it, so the caller's last
 * unref, from any thread, never touches the loop.
 */
static void proc_released(struct evm__release *r)
{
	struct evm_proc *p = evm__container_of(r, struct evm_proc, rel);
	if (p->route) {
		evm__route_put(p->loop, p->route);
		p->route = NULL;
	}
	evm_proc_unref(p);
}

/* the deadline's signal to the child, or to the group it leads */
static void timeout_signal(struct evm_proc *p, int sig)
{
	if (p->kind & EVM__K_GROUP)
		evm_proc_signal_group(p, sig);
	else
		evm_proc_signal(p, sig);
}

static void timeout_kill(struct evm_timer *t, void *data)
{
	(void)t;
	timeout_signal(data, SIGKILL);
}

/*
 * Has p exited, its exit not reaped yet? Its pidfd (or its pid: ours, not
 * reaped, so not reused) says so without reaping it.
 */
static bool exited_unseen(struct evm_proc *p)
{
	siginfo_t si = {0};
	pthread_mutex_lock(&evm__sig_mu);
	bool done = p->gone;
	if (!done && p->pidfd >= 0)
		done = waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
		       si.si_pid;
	else if (!done && !(p->kind & EVM__K_FOREIGN))
		done = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
		       si.si_pid;
	pthread_mutex_unlock(&evm__sig_mu);
	return done;
}

static void timeout_fired(struct evm_timer *t, void *data)
{
	struct evm_proc *p = data;
	(void)t;
	/*
	 * Exited in time, its exit still to be read (more fds were ready than one
	 * wait returns, or the loop was held up): not timed out. Its exit comes
	 * at the next turn.
	 */
	if (exited_unseen(p))
		return;
	p->timed_out = true;
	timeout_signal(p, p->more->timeout_signal);
	if (p->more->timeout_signal != SIGKILL)
		evm_timer_add(p->loop, p->more->timeout_kill_ms, timeout_kill, p, &p->more->deadline);
}

int evm__proc_timeout(struct evm_proc *p, const struct evm_spawn_opts *o)
{
	if (!o->timeout_ms)
		return 0;
	struct evm__proc_more *m = evm__proc_more(p);
	if (!m)
		return -ENOMEM;
	m->timeout_signal = o->timeout_signal ? o->timeout_signal : SIGTERM;
	m->timeout_kill_ms = o->timeout_kill_ms ? o->timeout_kill_ms : 5000;
	return evm_timer_add(p->loop, o->timeout_ms, timeout_fired, p, &m->deadline);
}

void evm__proc_exited(struct evm_proc *p, const siginfo_t *si, const struct rusage *ru)
{
	struct evm_loop *loop = p->loop;
	if (p->more) /* the timer names p, which the loop releases soon */
		evm_timer_cancel(p->more->deadline);
	detach(p);
	evm__capture_drain(p); /* before the callbacks, which may read it */
	if (p->kind & EVM__K_NOWAIT)
		evm__nowait_exited(loop, p); /* why it failed before its exec, if it did */
	p->flags |= EVM__P_EXITED;

	struct evm_exit stackrec, *rec = calloc(1, sizeof(*rec));
	if (!rec) {
		memset(&stackrec, 0, sizeof(stackrec));
		rec = &stackrec;
	}
	rec->pid = p->pid;
	rec->adopted = p->kind & EVM__K_ADOPTED;
	if (si) {
		evm__fill_status(rec, si);
	} else {
		rec->status_unknown = true;
		rec->code = -1;
	}
	if (ru)
		rec->rusage = *ru;
	rec->timed_out = p->timed_out;
	int64_t end_real = evm__real_ns();
	uint64_t end_mono = evm__mono_ns();
	rec->start_time = evm__ns_to_ts(p->start_real);
	rec->end_time = evm__ns_to_ts(end_real);
	rec->runtime_ns = end_mono - p->start_mono;
	p->status = rec->status;
	if (rec != &stackrec)
		p->exit = rec;
	/*
	 * Final now: callbacks looking at the proc must see it exited, with its
	 * record. Blocked waiters are still woken last, by evm__proc_signal_done.
	 */
	atomic_store(&p->done, true);

	if (!loop->closing) {
		if (p->cb)
			p->cb(p, rec, p->data);
		if (p->route)
			evm__route_dispatch(loop, p->route, p, rec);
		struct evm_event ev = {.type = EVM_EV_EXIT,
				       .pid = p->pid,
				       .proc = p,
				       .name = p->route ? evm__route_name(p->route) : NULL,
				       .exit = rec};
		evm__emit(loop, &ev);
	}
	if (p->owner_cb)
		p->owner_cb(p, rec, p->owner);
	evm__proc_signal_done(p);
	/* callbacks later in this iteration may still look at it */
	evm__release(loop, &p->rel, proc_released);
}

pid_t evm_proc_pid(const struct evm_proc *p)
{
	return p ? p->pid : -1;
}

void *evm_proc_data(const struct evm_proc *p)
{
	return p ? p->data : NULL;
}

const char *evm_proc_handler(const struct evm_proc *p)
{
	return p && p->route ? evm__route_name(p->route) : NULL;
}

bool evm_proc_exited(const struct evm_proc *p)
{
	return p && atomic_load(&((struct evm_proc *)p)->done);
}

const struct evm_exit *evm_proc_exit_record(const struct evm_proc *p)
{
	return p && atomic_load(&((struct evm_proc *)p)->done) ? p->exit : NULL;
}

int evm_proc_stdio_fd(struct evm_proc *p, int slot)
{
	if (!p || slot < 0 || slot > 2 || p->pipes[slot] < 0)
		return -EBADF;
	int fd = p->pipes[slot];
	p->pipes[slot] = -1;
	return fd;
}

int evm_proc_signal(struct evm_proc *p, int sig)
{
	if (!p || sig < 0 || sig >= NSIG)
		return -EINVAL;
	int r = -1;
	errno = ENOSYS;
	/* any thread: the loop thread cannot reap it or close its pidfd meanwhile */
	pthread_mutex_lock(&evm__sig_mu);
	if (p->gone) {
		pthread_mutex_unlock(&evm__sig_mu);
		return -ESRCH;
	}
	/* unreaped, so its loop is not freed yet (a free reaps every child first, under the lock) */
	if (evm__forked(p->loop)) {
		pthread_mutex_unlock(&evm__sig_mu);
		return -ECHILD; /* the parent's child, through a pidfd we share: not ours to signal */
	}
	if (p->pidfd >= 0)
		r = pidfd_send_signal(p->pidfd, sig, NULL, 0);
	/* no pidfd, or a sandbox (valgrind, old seccomp) without pidfd_send_signal:
	 * the child is unreaped, so its pid cannot have been reused yet (not so
	 * for an adopted process someone else reaps) */
	if (r < 0 && errno == ENOSYS && !(p->kind & EVM__K_FOREIGN))
		r = kill(p->pid, sig);
	int e = r < 0 ? -errno : 0;
	pthread_mutex_unlock(&evm__sig_mu);
	return e;
}

int evm_proc_signal_group(struct evm_proc *p, int sig)
{
	if (!p || sig < 0 || sig >= NSIG)
		return -EINVAL;
	if (!(p->kind & EVM__K_GROUP)) /* set before the proc is handed out, never changed */
		return -EPERM;
	pthread_mutex_lock(&evm__sig_mu);
	/*
	 * The leader is unreaped, so its pid, which is the group id, is pinned.
	 * An adopted leader we do not reap is checked alive through its pidfd
	 * first: the group id cannot be reused while the group has a member,
	 * so only a leader reaped (and a whole group gone, and the id taken by
	 * a new group) between the check and killpg could be missed.
	 */
	int r = p->gone ? -ESRCH : evm__forked(p->loop) ? -ECHILD : 0;
	if (r == 0 && (p->kind & EVM__K_FOREIGN)) {
		if (p->pidfd < 0)
			r = -ESRCH;
		else if (pidfd_send_signal(p->pidfd, 0, NULL, 0) < 0 && errno != EPERM)
			r = -ESRCH;
	}
	if (r == 0 && killpg(p->pid, sig) < 0)
		r = -errno;
	pthread_mutex_unlock(&evm__sig_mu);
	return r;
}

struct evm_proc *evm_proc_ref(struct evm_proc *p)
{
	if (p)
		atomic_fetch_add(&p->refs, 1);
	return p;
}

void evm_proc_unref(struct evm_proc *p)
{
	if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	for (int i = 0; i < 3; i++)
		if (p->pipes[i] >= 0)
			close(p->pipes[i]);
	evm__capture_free(p);
	free(p->more);
	free(p->exit);
	free(p);
}

int evm_exit_shell_code(const struct evm_exit *e)
{
	if (!e || e->status_unknown)
		return -1;
	if (e->signal)
		return 128 + e->signal;
	return e->code;
}
