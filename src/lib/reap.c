/*
 * reap.c - noticing exits and collecting exit statuses.
 *
 * Owned children: each has a pidfd in epoll; readable means exited, and
 * waitid(P_PIDFD) reaps exactly that child in O(1). Nothing else is ever
 * reaped in owned mode, so system(), popen() and other libraries keep their
 * children's exits.
 *
 * SIGCHLD (a signalfd) is needed only in reaper mode (orphans re-parented to
 * us have no pidfd) and for children that could not get a pidfd (fd limit).
 * SIGCHLD coalesces, so it is only a hint that something may be reapable:
 * we then drain with WNOHANG until nothing is left. A waitid(P_ALL) walks the
 * kernel's whole child list (~0.4 ms with 10,000 children), so when the
 * signal names a child we will see through its pidfd anyway, the scan is
 * deferred by SCAN_DELAY instead of run per exit: a signal it coalesced with
 * is then handled at most SCAN_DELAY late, and a storm costs one scan per
 * SCAN_DELAY instead of one per exit.
 *
 * Reaper mode owns SIGCHLD and every child's exit (nothing else may wait for
 * one), and an unreaped child's pid cannot be reused: while few children
 * live (BY_SIGCHLD_MAX), a child is spawned without a pidfd and watched
 * through SIGCHLD alone. Its signal names it (waitid(P_PID) reaps it in
 * O(1)), and since signals coalesce each SIGCHLD is followed by a P_ALL
 * drain, cheap while the child list is short. That spares the pidfd's
 * file, its epoll registration and its close for each short-lived child
 * (docs/BENCHMARKS.md, "Where the time goes"); signals go to the pid,
 * under evm__sig_mu like every reap, and evm_proc_pidfd opens a pidfd on
 * demand. Past the threshold children get pidfds again, and the drain is
 * deferred as above once the list is long (a coalesced signal of a
 * pidfd-less child is then seen within SCAN_DELAY).
 *
 * The signalfd sees SIGCHLD only while it is pending, and a thread that does
 * not block it (one created before the loop, or one that unblocked it) takes
 * it first, where the default disposition drops it. So while some loop needs
 * SIGCHLD and the disposition is the default, a handler turns a SIGCHLD
 * caught by any thread into a write to a process-wide eventfd that each such
 * loop watches (edge-triggered, so every loop wakes at every write), and the
 * loop scans as if its signalfd had named an owned child (within SCAN_DELAY).
 * The handler stays installed while such a loop exists; it has SA_RESTART,
 * but like libuv's it can still interrupt a sleep of another thread (EINTR).
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SCAN_DELAY_NS (20 * 1000000ull)
/* reaper mode: children without a pidfd while fewer than this live; a
 * SIGCHLD drains at once while at most DRAIN_NOW_MAX live (an empty P_ALL
 * walk: 2.6 us at 256 children, 4.9 us at 512; a pidfd costs a child ~15) */
#define BY_SIGCHLD_MAX 256
#define DRAIN_NOW_MAX (2 * BY_SIGCHLD_MAX)

static atomic_bool reaper_taken;

/* SIGCHLD caught by other threads (see above); the rest under chld_mu */
static pthread_mutex_t chld_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int chld_evfd = -1; /* read by the handler */
static atomic_int chld_in_handler; /* handlers running now, on any thread */
static unsigned chld_users;	   /* loops watching chld_evfd */
static bool chld_installed;	   /* our handler replaced SIG_DFL */
static struct sigaction chld_old;  /* what it replaced, flags included */

static void on_sigchld(int sig)
{
	int saved = errno;
	uint64_t one = 1;
	(void)sig;
	atomic_fetch_add(&chld_in_handler, 1);
	int fd = atomic_load(&chld_evfd);
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is full, a wake-up is pending anyway */
	}
	atomic_fetch_sub(&chld_in_handler, 1);
	errno = saved;
}

static void chld_hint(struct evm_loop *loop, struct evm__watch *w, uint32_t events);

/* Watch chld_evfd and install the handler if nobody else handles SIGCHLD. */
static int chld_watch(struct evm_loop *loop)
{
	pthread_mutex_lock(&chld_mu);
	int r = 0;
	if (atomic_load(&chld_evfd) < 0) {
		int fd = evm__above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
		if (fd < 0)
			r = -errno;
		atomic_store(&chld_evfd, fd);
	}
	if (r == 0) {
		loop->chld_w.cb = chld_hint;
		r = evm__epoll_add(loop, atomic_load(&chld_evfd), EPOLLIN | EPOLLET, &loop->chld_w);
	}
	if (r == 0) {
		loop->chld_watching = true;
		chld_users++;
		struct sigaction old;
		if (!chld_installed && sigaction(SIGCHLD, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
		    !(old.sa_flags & SA_SIGINFO)) {
			struct sigaction sa = {.sa_handler = on_sigchld,
					       .sa_flags = SA_RESTART | (old.sa_flags & SA_NOCLDSTOP)};
			sigfillset(&sa.sa_mask);
			chld_installed = sigaction(SIGCHLD, &sa, NULL) == 0;
			chld_old = old;
		}
	} else if (chld_users == 0 && atomic_load(&chld_evfd) >= 0) {
		close(atomic_exchange(&chld_evfd, -1)); /* no handler uses it yet */
	}
	pthread_mutex_unlock(&chld_mu);
	return r;
}

static void chld_unwatch(struct evm_loop *loop)
{
	if (!loop->chld_watching)
		return;
	pthread_mutex_lock(&chld_mu);
	evm__epoll_del(loop, atomic_load(&chld_evfd));
	loop->chld_watching = false;
	if (--chld_users == 0) {
		if (chld_installed) {
			struct sigaction old;
			/* back to the default, unless someone replaced our handler meanwhile */
			if (sigaction(SIGCHLD, NULL, &old) == 0 && old.sa_handler == on_sigchld)
				sigaction(SIGCHLD, &chld_old, NULL);
			chld_installed = false;
		}
		/*
		 * No fd left behind once no loop needs it. A handler that starts
		 * from now on sees -1; one that started before is waited for, so
		 * none writes into a reused fd number.
		 */
		int fd = atomic_exchange(&chld_evfd, -1);
		while (atomic_load(&chld_in_handler) > 0)
			sched_yield();
		close(fd);
	}
	pthread_mutex_unlock(&chld_mu);
}

/* waitid with the rusage argument glibc does not expose */
static int waitid_ru(idtype_t type, id_t id, siginfo_t *si, int options, struct rusage *ru)
{
	memset(si, 0, sizeof(*si));
	memset(ru, 0, sizeof(*ru));
	long r;
	do
		r = syscall(SYS_waitid, type, id, si, options, ru);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/*
 * waitid that may reap a tracked child, under evm__sig_mu: the proc is
 * marked gone before another thread's evm_proc_signal could use its pid.
 * p NULL: P_ALL, the proc (if any) is looked up in the map.
 */
static int reap_locked(struct evm_loop *loop, struct evm_proc *p, idtype_t type, id_t id,
		       siginfo_t *si, int options, struct rusage *ru, struct evm_proc **who)
{
	pthread_mutex_lock(&evm__sig_mu);
	int r = waitid_ru(type, id, si, options, ru);
	if (r == 0 && si->si_pid && !p)
		p = evm__pidmap_get(&loop->pids, si->si_pid);
	if (r == 0 && si->si_pid && p)
		p->gone = true;
	pthread_mutex_unlock(&evm__sig_mu);
	if (who)
		*who = r == 0 && si->si_pid ? p : NULL;
	return r;
}

int evm__sigchld_enable(struct evm_loop *loop)
{
	if (loop->sigfd >= 0)
		return 0;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	/* signalfd only sees signals that are blocked */
	int r = pthread_sigmask(SIG_BLOCK, &set, &loop->oldmask);
	if (r)
		return -r;
	loop->sigmask_changed = true;
	loop->mask_thread = pthread_self();
	int fd = evm__above_stdio(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
	if (fd < 0)
		return -errno;
	loop->sig_w.cb = evm__reap_sigchld;
	loop->sig_w.prio = EVM__PRIO_FIRST;
	r = evm__epoll_add(loop, fd, EPOLLIN, &loop->sig_w);
	if (r < 0) {
		close(fd);
		return r;
	}
	loop->sigfd = fd;
	/* best effort: without it (no fd left), SIGCHLD must not reach another thread */
	int e = chld_watch(loop);
	if (e < 0 && evm__single_threaded() != 1)
		evm__warn(loop, e, "SIGCHLD: cannot hear of it from other threads; "
			  "block SIGCHLD in every thread");
	return 0;
}

bool evm__reap_by_sigchld(struct evm_loop *loop)
{
	if (!(loop->flags & EVM_LOOP_REAPER) || loop->sigfd < 0 || loop->nlive >= BY_SIGCHLD_MAX ||
	    loop->reaper_pidfds || loop->force_nopidfd /* that path, with its warning */)
		return false;
	/* ignored, the kernel reaps the child and sends no SIGCHLD: a pidfd still sees the exit */
	return !evm__sigchld_ignored();
}

bool evm__sigchld_ignored(void)
{
	struct sigaction sa;
	return sigaction(SIGCHLD, NULL, &sa) == 0 &&
	       (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT));
}

/*
 * In a fork()ed child (loop.c's atfork handler, one thread): the parent's
 * loops are not ours, nor their reaper slot (a new reaper loop there was
 * refused with -EBUSY), nor the SIGCHLD eventfd they read: shared, a loop
 * made here would take their wake-ups. Ours is made when a loop needs it;
 * the handler, inherited, writes nowhere until then.
 */
void evm__reap_forked(void)
{
	atomic_store(&reaper_taken, false);
	pthread_mutex_init(&chld_mu, NULL); /* another thread may have held it at the fork */
	int fd = atomic_exchange(&chld_evfd, -1);
	if (fd >= 0)
		close(fd); /* our copy: the parent's stays open */
	chld_users = 0;
	atomic_store(&chld_in_handler, 0);
}

int evm__reap_init(struct evm_loop *loop)
{
	if (!(loop->flags & EVM_LOOP_REAPER))
		return loop->force_nopidfd ? evm__sigchld_enable(loop) : 0;
	bool expected = false;
	if (!atomic_compare_exchange_strong(&reaper_taken, &expected, true)) {
		loop->flags &= ~(unsigned)EVM_LOOP_REAPER; /* not ours to release */
		return -EBUSY;
	}
	if (getpid() != 1 && !(loop->flags & EVM_LOOP_NO_SUBREAPER)) {
		if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
			return -errno;
		loop->subreaper = true;
	}
	/*
	 * Children watched through SIGCHLD get a pidfd from pidfd_open when asked
	 * (evm_proc_pidfd: a re-exec hands them over with it); where that call
	 * is refused (a seccomp sandbox, valgrind) they keep the clone's.
	 */
	int fd = pidfd_open(getpid(), 0);
	if (fd >= 0)
		close(fd);
	else
		loop->reaper_pidfds = true;
	return evm__sigchld_enable(loop);
}

void evm__reap_fini(struct evm_loop *loop)
{
	evm_timer_cancel(loop->scan_timer);
	chld_unwatch(loop);
	if (loop->sigfd >= 0) {
		evm__epoll_del(loop, loop->sigfd);
		close(loop->sigfd);
		loop->sigfd = -1;
	}
	/*
	 * The mask changed was the creating thread's, whichever thread ran the
	 * loop since: restored when that thread frees it (main made a loop, a
	 * thread ran it, main freed it: SIGCHLD stayed blocked in main, and in
	 * every child it forked and exec'ed from then on).
	 */
	if (loop->sigmask_changed && pthread_equal(pthread_self(), loop->mask_thread))
		pthread_sigmask(SIG_SETMASK, &loop->oldmask, NULL);
	if (loop->subreaper)
		prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
	if (loop->flags & EVM_LOOP_REAPER)
		atomic_store(&reaper_taken, false);
}

static void report_orphan(struct evm_loop *loop, const siginfo_t *si, const struct rusage *ru)
{
	struct evm_exit rec = {.pid = si->si_pid, .rusage = *ru};
	evm__fill_status(&rec, si);
	rec.end_time = evm__ns_to_ts(evm__real_ns());
	struct evm_event ev = {.type = EVM_EV_ORPHAN, .pid = si->si_pid, .exit = &rec};
	evm__emit(loop, &ev);
}

/* 1 if it was reaped (and reported) */
static int reap_one_pid(struct evm_proc *p)
{
	siginfo_t si;
	struct rusage ru;
	int r = reap_locked(p->loop, p, P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | __WALL, &ru, NULL);
	if (r == 0 && si.si_pid)
		evm__proc_exited(p, &si, &ru);
	else if (r == -ECHILD)
		evm__proc_exited(p, NULL, NULL);
	return (r == 0 && si.si_pid) || r == -ECHILD;
}

/*
 * evm_loop_opts.budget: may this call of evm_loop_run_once reap one more? If
 * not, the loop wakes itself (its fd stays readable) and the next call scans.
 */
static bool reap_budget(struct evm_loop *loop)
{
	if (!loop->budget || loop->call_reaps < loop->budget)
		return true;
	if (!loop->scan_pending) {
		loop->scan_pending = true;
		evm__wake(loop);
	}
	return false;
}

/* Reap everything reapable now (up to the budget). */
static void scan(struct evm_loop *loop)
{
	if (loop->flags & EVM_LOOP_REAPER) {
		siginfo_t si;
		struct rusage ru;
		/* no __WALL: our spawn helper (exit signal 0) is not for this loop */
		struct evm_proc *p;
		while (reap_budget(loop) &&
		       reap_locked(loop, NULL, P_ALL, 0, &si, WEXITED | WNOHANG, &ru, &p) == 0 &&
		       si.si_pid) {
			loop->call_reaps++;
			if (p)
				evm__proc_exited(p, &si, &ru);
			else
				report_orphan(loop, &si, &ru);
		}
		return;
	}
	/* owned mode: only our own pidfd-less children, one by one */
	for (struct evm_proc *p = loop->live, *next; p && loop->nnopidfd; p = next) {
		next = p->next;
		/* p's callbacks cannot reap next: the loop does not run inside them */
		if (!(p->kind & EVM__K_NOPIDFD))
			continue;
		if (!reap_budget(loop))
			break;
		loop->call_reaps += reap_one_pid(p);
	}
}

void evm__reap_scan(struct evm_loop *loop)
{
	scan(loop);
}

static void scan_later(struct evm_timer *t, void *data)
{
	struct evm_loop *loop = data;
	(void)t;
	scan(loop);
}

/*
 * Pidfd-less children in reaper mode: a SIGCHLD may stand for several of
 * their exits (coalesced), which only a scan finds; at once while the
 * kernel's child list is short.
 */
static bool drain_now(const struct evm_loop *loop)
{
	return (loop->flags & EVM_LOOP_REAPER) && loop->nnopidfd && loop->nlive <= DRAIN_NOW_MAX;
}

void evm__reap_sigchld(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	struct signalfd_siginfo fi[16];
	bool now = false, later = false;
	ssize_t n;
	(void)w;
	(void)events;
	while ((n = read(loop->sigfd, fi, sizeof(fi))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(fi[0]); i++) {
			struct evm_proc *p = evm__pidmap_get(&loop->pids, (pid_t)fi[i].ssi_pid);
			if (!p) {
				now = true; /* an orphan, or a child reaped earlier */
			} else if (p->kind & EVM__K_NOPIDFD) {
				if (reap_budget(loop))
					loop->call_reaps += reap_one_pid(p);
				later = true;
			} else {
				later = true; /* its pidfd reports it; check for others soon */
			}
		}
	}
	if (!(loop->flags & EVM_LOOP_REAPER) && !loop->nnopidfd)
		return;
	if (now || drain_now(loop)) {
		scan(loop);
	} else if (later && !loop->scan_timer) {
		evm__timer_add_ns(loop, SCAN_DELAY_NS, scan_later, loop, &loop->scan_timer);
	}
}

/* Another thread caught a SIGCHLD: some loop may have something to reap. */
static void chld_hint(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	uint64_t v;
	(void)w;
	(void)events;
	while (read(atomic_load(&chld_evfd), &v, sizeof(v)) > 0) /* edge-triggered: draining wakes no one less */
		;
	if (drain_now(loop))
		scan(loop);
	else if (!loop->scan_timer)
		evm__timer_add_ns(loop, SCAN_DELAY_NS, scan_later, loop, &loop->scan_timer);
}

void evm__reap_pidfd(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	struct evm_proc *p = (struct evm_proc *)w;
	siginfo_t si;
	struct rusage ru;
	(void)events;
	if (p->flags & EVM__P_EXITED)
		return; /* reaped by a scan earlier in this iteration */
	p->flags |= EVM__P_FIRED;
	int r = reap_locked(loop, p, P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG | __WALL, &ru,
			    NULL);
	if (r == 0 && si.si_pid) {
		evm__proc_exited(p, &si, &ru);
	} else if (r == -ECHILD) {
		evm__proc_exited(p, NULL, NULL); /* SIGCHLD ignored, or a foreign waitpid(-1) */
	} else if (evm__epoll_mod(loop, p->pidfd, EPOLLIN | EPOLLONESHOT, &p->w) == 0) {
		p->flags &= ~(unsigned)EVM__P_FIRED; /* not gone after all: re-armed */
	}
}

void evm__reap_kill_sync(struct evm_proc *p)
{
	siginfo_t si;
	struct rusage ru;
	if (p->kind & EVM__K_FOREIGN) {
		evm__adopt_kill_sync(p);
		return;
	}
	evm_proc_signal(p, SIGKILL);
	pthread_mutex_lock(&evm__sig_mu); /* evm_proc_pidfd may be opening one on another thread */
	int fd = p->pidfd;
	pthread_mutex_unlock(&evm__sig_mu);
	idtype_t type = fd >= 0 ? P_PIDFD : P_PID;
	id_t id = fd >= 0 ? (id_t)fd : (id_t)p->pid;
	/* wait for the death outside the lock, then reap under it */
	waitid_ru(type, id, &si, WEXITED | WNOWAIT | __WALL, &ru);
	int r = reap_locked(p->loop, p, type, id, &si, WEXITED | WNOHANG | __WALL, &ru, NULL);
	if (r == 0 && si.si_pid)
		evm__proc_exited(p, &si, &ru);
	else
		evm__proc_exited(p, NULL, NULL);
}
