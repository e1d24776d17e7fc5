/*
 * internal.h - structures shared by the files of libevmon. Not installed.
 *
 * Threading: everything here is touched by the loop thread only, except the
 * fields marked "any thread" (atomics, or under loop->mu).
 */
#ifndef EVMON_INTERNAL_H
#define EVMON_INTERNAL_H

#include "evmon.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#define EVM_HIDDEN __attribute__((visibility("hidden")))

#ifdef EVM_SINGLE_THREAD
/*
 * Built for a program with one thread (the static evmon-init of `make
 * static`): the locks compile away, and with them glibc's mutex and
 * condition variable code (16 kB of a static binary). Nothing could wake a
 * blocking wait there (evm_proc_wait of a running process, evm_spawn_wait),
 * so one aborts instead of hanging. (EVM_NO_SPAWN_HELPER and
 * EVM_RELEASE_SPAWN_STACK, spawnclone.c, and EVM_MAX_EVENTS, epoll.c, are
 * the init's other build knobs.)
 */
#include <stdlib.h>
static inline int evm__st_nothing(const void *p)
{
	(void)p;
	return 0;
}
static inline int evm__st_same(void)
{
	return 1;
}
static inline int evm__st_block(void)
{
	abort();
}
static inline int evm__st_once(pthread_once_t *once, void (*fn)(void))
{
	if (!*once) {
		*once = 1;
		fn();
	}
	return 0;
}
#define pthread_mutex_init(m, a) evm__st_nothing(m)
#define pthread_mutex_destroy(m) evm__st_nothing(m)
#define pthread_mutex_lock(m) evm__st_nothing(m)
#define pthread_mutex_unlock(m) evm__st_nothing(m)
#define pthread_cond_init(c, a) evm__st_nothing(c)
#define pthread_cond_destroy(c) evm__st_nothing(c)
#define pthread_cond_broadcast(c) evm__st_nothing(c)
#define pthread_cond_signal(c) evm__st_nothing(c)
#define pthread_cond_wait(c, m) evm__st_block()
#define pthread_cond_timedwait(c, m, t) evm__st_block()
#define pthread_once(o, f) evm__st_once(o, f)
#define pthread_equal(a, b) evm__st_same() /* every call is on the loop thread */
/*
 * The attributes of locks that are not there, the one thread's id and
 * mask: no call into glibc's thread code at all, whose pages a program
 * with one thread would otherwise map only for these (RSS, docs/INIT.md).
 */
static inline int evm__st_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	return sigprocmask(how, set, old) < 0 ? errno : 0;
}
#define pthread_mutexattr_init(a) evm__st_nothing(a)
#define pthread_mutexattr_settype(a, t) evm__st_nothing(a)
#define pthread_mutexattr_destroy(a) evm__st_nothing(a)
#define pthread_condattr_init(a) evm__st_nothing(a)
#define pthread_condattr_setclock(a, c) evm__st_nothing(a)
#define pthread_condattr_destroy(a) evm__st_nothing(a)
#define pthread_self() ((pthread_t)0)
#define pthread_sigmask(h, s, o) evm__st_sigmask(h, s, o)
#endif

/*
 * Code that runs in a vfork-style child shares the parent's memory and runs
 * on a small private stack, with the parent's thread pointer: keep
 * sanitizers out of it. ThreadSanitizer's state is per thread, in TLS: the
 * child would update the parent's (clang's no_sanitize("thread") still
 * calls the runtime at each function's entry and exit, hence
 * disable_sanitizer_instrumentation where clang has it).
 */
#if defined(__clang__)
#if __has_attribute(disable_sanitizer_instrumentation)
#define EVM_NO_INSTRUMENTATION __attribute__((disable_sanitizer_instrumentation))
#else
#define EVM_NO_INSTRUMENTATION
#endif
#define EVM_CHILD_CODE                                                                          \
	__attribute__((no_sanitize("address", "undefined", "thread"))) EVM_NO_INSTRUMENTATION \
		__attribute__((noinline))
#else
#define EVM_CHILD_CODE                                                                    \
	__attribute__((no_sanitize_address, no_sanitize_undefined, no_sanitize_thread)) \
		__attribute__((noinline))
#endif

/* --------------------------------------------------------- deferred release */

/*
 * Objects a callback frees (a proc's loop reference, an I/O watcher, a
 * subscription, a service, a cgroup watch) may still be named up the stack
 * or in this iteration's events array. They are marked dead at once and
 * released through this node when the outermost dispatch ends (at once when
 * none runs): the one deferred-free path of the library.
 */
struct evm__release {
	struct evm__release *next;
	void (*fn)(struct evm__release *r);
};
EVM_HIDDEN void evm__release(struct evm_loop *loop, struct evm__release *r,
			     void (*fn)(struct evm__release *r));
/* run the queue now (evm_loop_free) */
EVM_HIDDEN void evm__release_all(struct evm_loop *loop);
#define evm__container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---------------------------------------------------------------- watches */

/* Every epoll registrant starts with this, so data.ptr dispatches anything. */
struct evm__watch {
	void (*cb)(struct evm_loop *loop, struct evm__watch *w, uint32_t events);
	unsigned prio; /* EVM__PRIO_*: higher runs first within an iteration */
};

enum {
	EVM__PRIO_NORMAL = 0,
	/*
	 * SIGCHLD: read before the pidfds are reaped, it can tell whether it
	 * came from a child we will see through its pidfd anyway.
	 */
	EVM__PRIO_FIRST = 1,
};

/* epoll.c: the only caller of epoll_* */
EVM_HIDDEN int evm__epoll_open(struct evm_loop *loop);
EVM_HIDDEN void evm__epoll_close(struct evm_loop *loop);
EVM_HIDDEN int evm__epoll_add(struct evm_loop *loop, int fd, uint32_t events, struct evm__watch *w);
EVM_HIDDEN int evm__epoll_mod(struct evm_loop *loop, int fd, uint32_t events, struct evm__watch *w);
EVM_HIDDEN void evm__epoll_del(struct evm_loop *loop, int fd);
/* wait up to timeout_ms, dispatch by priority; returns watches run, or -errno */
EVM_HIDDEN int evm__epoll_wait(struct evm_loop *loop, int timeout_ms);
EVM_HIDDEN void evm__io_free_all(struct evm_loop *loop);

/* ----------------------------------------------------------------- timers */

struct evm_timer {
	struct evm_loop *loop;
	uint64_t deadline; /* CLOCK_MONOTONIC ns */
	uint64_t seq;	   /* FIFO among equal deadlines */
	size_t idx;	   /* position in the heap, SIZE_MAX when not in it */
	struct evm_timer **owner; /* the caller's handle (out), cleared when it is gone */
	evm_timer_cb cb;
	void *data;
	bool spawns;	/* its callback spawns: at most a turn's worth per iteration */
	bool waiting;	/* due, out of the heap, in the loop's spawn queue */
	struct evm_timer *prev_waiting, *next_waiting;
};

EVM_HIDDEN uint64_t evm__mono_ns(void);
/* ms in ns, saturated (timers' delays and the deadlines below) */
static inline uint64_t evm__ms_to_ns(uint64_t ms)
{
	return ms > UINT64_MAX / 1000000 ? UINT64_MAX : ms * 1000000;
}
/* base_ns + ms, saturated: a deadline past 2^64 ns is "never", not a wrap */
static inline uint64_t evm__after_ms(uint64_t base_ns, uint64_t ms)
{
	uint64_t ns = evm__ms_to_ns(ms);
	return base_ns > UINT64_MAX - ns ? UINT64_MAX : base_ns + ns;
}
/* Are we a fork()ed child of the process that made loop? (loop.c) */
EVM_HIDDEN bool evm__forked(const struct evm_loop *loop);
EVM_HIDDEN int64_t evm__real_ns(void);
EVM_HIDDEN struct timespec evm__ns_to_ts(int64_t ns);
EVM_HIDDEN uint64_t evm__heap_next(const struct evm_loop *loop); /* UINT64_MAX if none */
EVM_HIDDEN int evm__timers_wait_ms(const struct evm_loop *loop, int timeout_ms);
EVM_HIDDEN void evm__timerfd_sync(struct evm_loop *loop);
EVM_HIDDEN int evm__timerfd_start(struct evm_loop *loop);
EVM_HIDDEN void evm__timerfd_close(struct evm_loop *loop);
EVM_HIDDEN int evm__timers_run(struct evm_loop *loop); /* returns callbacks run (<= budget) */
EVM_HIDDEN void evm__timers_free(struct evm_loop *loop);
EVM_HIDDEN int evm__timer_add_ns(struct evm_loop *loop, uint64_t delay_ns, evm_timer_cb cb,
				 void *data, struct evm_timer **out);
/*
 * A timer whose callback spawns a process (a service's restart): at most
 * EVM__SPAWN_TURN of them, and no more once EVM__SPAWN_SLICE_NS have gone
 * by since the first, run in one iteration; the others due wait, in the
 * order they came due, for the next iterations (ready fds and the other
 * timers are served in between). Cancelled like any timer.
 */
#define EVM__SPAWN_TURN 16
#define EVM__SPAWN_SLICE_NS (20 * 1000000ull)
EVM_HIDDEN int evm__timer_add_spawn(struct evm_loop *loop, uint64_t delay_ms, evm_timer_cb cb,
				    void *data, struct evm_timer **out);

/* ------------------------------------------------------------- processes */

/* struct evm_proc's flags: the loop thread's alone, changed while the proc is out */
enum {
	EVM__P_EXITED = 1u << 0,   /* reaped and reported */
	EVM__P_FIRED = 1u << 1,	   /* its one-shot pidfd event came: epoll has disarmed it */
	EVM__P_TERMED = 1u << 2,   /* sent SIGTERM by evm_shutdown */
};

/*
 * struct evm_proc's kind: set before the proc is handed out, never changed
 * after, so any thread may read it (evm_proc_signal_group, evm_proc_pidfd);
 * a word of its own, because the loop thread writes flags meanwhile.
 */
enum {
	EVM__K_NOPIDFD = 1u << 0,  /* tracked by SIGCHLD + waitid(P_PID), not a pidfd in epoll */
	EVM__K_GROUP = 1u << 1,	   /* leads its own process group */
	EVM__K_ADOPTED = 1u << 2,  /* evm_proc_adopt: not spawned by this loop */
	EVM__K_FOREIGN = 1u << 3,  /* adopted and not our child: someone else reaps it */
	EVM__K_NOWAIT = 1u << 4,   /* EVM_SPAWN_NOWAIT: its slot is read back at its exit (nowait.c) */
};

struct evm__route;

/*
 * What few procs use (a captured stdio, a timeout_ms), allocated on first
 * use so that every other child's proc stays small (bench S2).
 */
struct evm__proc_more {
	struct evm__capture *cap[3]; /* EVM_STDIO_CAPTURE slots 1, 2 (capture.c) */
	/* timeout_ms: the pending deadline (then the kill), and the signals */
	struct evm_timer *deadline;
	uint64_t timeout_kill_ms;
	int timeout_signal;
	/* EVM_SPAWN_NOWAIT: why the child failed before its exec (evm_proc_spawn_error) */
	int spawn_err, spawn_stage;
	/* its /proc start time once read (evm_proc_start_time_of) */
	uint64_t start_ticks;
	bool start_known;
};

/* Ordered by size, no holes: 176 bytes on 64-bit (a 192-byte malloc chunk). */
struct evm_proc {
	struct evm__watch w; /* pidfd readable */
	struct evm_loop *loop;
	pid_t pid;
	int pidfd; /* -1 with EVM__K_NOPIDFD or after the exit */
	unsigned flags; /* EVM__P_*: the loop thread's */
	atomic_uint refs;  /* any thread */
	int status;	   /* wait status, kept even when exit is not allocated */
	pid_t adopt_sid;   /* adopted: the session it was in then (evm__sv_note_session) */
	int pipes[3];	   /* our pipe ends not yet taken, or -1 */
	atomic_bool done;  /* any thread: exit record is final */
	bool gone;	   /* under evm__sig_mu: reaped, its pid may be reused */
	bool timed_out;	   /* its timeout_ms fired */
	uint8_t kind;	   /* EVM__K_*: fixed once handed out, any thread */
	uint64_t start_mono;
	int64_t start_real; /* ns since the epoch */
	evm_exit_cb cb;
	void *data;
	struct evm__route *route;
	/* internal owner (a service): called after the public callbacks */
	void (*owner_cb)(struct evm_proc *proc, const struct evm_exit *exit, void *owner);
	void *owner;
	struct evm_exit *exit; /* allocated at exit */
	struct evm__proc_more *more; /* NULL until a capture or a timeout needs it */
	uint64_t serial; /* loop->proc_serial when the loop began tracking it (session.c) */
	struct evm_proc *prev, *next; /* live list */
	struct evm__release rel; /* drops the loop's reference */
};


EVM_HIDDEN struct evm_proc *evm__proc_new(struct evm_loop *loop);
EVM_HIDDEN void evm__proc_attach(struct evm_proc *proc, pid_t pid, int pidfd);
/* proc->more, allocated if need be; NULL when out of memory */
EVM_HIDDEN struct evm__proc_more *evm__proc_more(struct evm_proc *proc);
/* Reaped: report it to everyone. si/ru NULL for unknown status. */
EVM_HIDDEN void evm__proc_exited(struct evm_proc *proc, const siginfo_t *si, const struct rusage *ru);
EVM_HIDDEN void evm__fill_status(struct evm_exit *rec, const siginfo_t *si);
struct evm__capture;
/* capture.c: watch our end fd of slot's pipe; read the rest and close at the exit; free */
EVM_HIDDEN int evm__capture_start(struct evm_proc *proc, int slot, int fd, size_t max);
EVM_HIDDEN void evm__capture_drain(struct evm_proc *proc);
EVM_HIDDEN void evm__capture_free(struct evm_proc *proc);
/* arm opts->timeout_ms for a started child; -ENOMEM (the caller kills it) */
EVM_HIDDEN int evm__proc_timeout(struct evm_proc *proc, const struct evm_spawn_opts *opts);
/*
 * evm_proc_signal runs on any thread: it holds evm__sig_mu while it uses a
 * proc's pid or pidfd, and every waitid that may reap a tracked child holds
 * it too and marks the proc gone before the lock is dropped, so no signal
 * reaches a reused pid or a closed (reused) pidfd number.
 */
EVM_HIDDEN extern pthread_mutex_t evm__sig_mu;

/* pid -> proc map (open addressing, linear probing) */
struct evm__pidmap {
	struct evm__pidslot {
		pid_t pid;
		struct evm_proc *proc;
	} *slots;
	size_t cap, len;
};

EVM_HIDDEN int evm__pidmap_put(struct evm__pidmap *m, pid_t pid, struct evm_proc *proc);
/* room for one more put, which then cannot fail; -ENOMEM */
EVM_HIDDEN int evm__pidmap_reserve(struct evm__pidmap *m);
EVM_HIDDEN struct evm_proc *evm__pidmap_get(const struct evm__pidmap *m, pid_t pid);
EVM_HIDDEN void evm__pidmap_del(struct evm__pidmap *m, pid_t pid);
EVM_HIDDEN void evm__pidmap_free(struct evm__pidmap *m);

/* what /proc/PID/stat says of a process (session.c) */
struct evm__pstat {
	pid_t pid, ppid, pgid, sid;
	char state;
	uint64_t start; /* field 22: clock ticks since boot */
};

/* -ESRCH when there is no such process */
EVM_HIDDEN int evm__proc_stat(pid_t pid, struct evm__pstat *out);

/* starttime.c: what evm_proc_start_time_of answers from now on */
EVM_HIDDEN void evm__proc_keep_start(struct evm_proc *p, uint64_t ticks);
/* the process behind pidfd is alive or a zombie (its pid pinned): 0, -ESRCH */
EVM_HIDDEN int evm__pidfd_alive(int pidfd);
/* CLOCK_BOOTTIME in clock ticks (/proc's start time unit); 0 when not to be used */
EVM_HIDDEN uint64_t evm__boot_tick(void);
/*
 * p was spawned between two evm__boot_tick readings lo and hi: when they
 * are the same tick that is its start time, kept without a /proc read.
 * Loop thread.
 */
EVM_HIDDEN void evm__proc_started_within(struct evm_proc *p, uint64_t lo, uint64_t hi);

/*
 * session.c, for services' trees without a cgroup: one /proc read per
 * dispatch shared by every stop signal sent in it (single pass: a process
 * forked after the read is not signalled, as with any read), and SIGKILL
 * to sessions queued and sent at the end of the dispatch, every queued
 * session in each read (repeated until a read meets nobody new).
 */
EVM_HIDDEN int evm__tree_signal_shared(struct evm_loop *loop, pid_t sid, int sig);
/*
 * SIGKILL to session sid's tree at the end of the dispatch; then (if not
 * NULL, a reference taken) SIGKILL to that process, or its group with
 * group: after the sweep, which finds a setsid child through its parent.
 */
EVM_HIDDEN void evm__tree_kill_later(struct evm_loop *loop, pid_t sid, struct evm_proc *then,
				     bool group);
EVM_HIDDEN void evm__trees_free(struct evm_loop *loop);
/* reads of /proc those two made for loop's services, and the entries their
 * searches looked at (for tests) */
EVM_HIDDEN uint64_t evm__tree_reads(const struct evm_loop *loop);
EVM_HIDDEN uint64_t evm__tree_visits(const struct evm_loop *loop);

/* ----------------------------------------------------------------- reaping */

/* A fork()ed child's reaper slot and SIGCHLD wake-up are its own (loop.c's atfork). */
EVM_HIDDEN void evm__reap_forked(void);
EVM_HIDDEN int evm__reap_init(struct evm_loop *loop);
EVM_HIDDEN int evm__sigchld_enable(struct evm_loop *loop); /* lazily, for NOPIDFD children */
EVM_HIDDEN void evm__reap_fini(struct evm_loop *loop);
EVM_HIDDEN void evm__reap_sigchld(struct evm_loop *loop, struct evm__watch *w, uint32_t events);
EVM_HIDDEN void evm__reap_pidfd(struct evm_loop *loop, struct evm__watch *w, uint32_t events);
EVM_HIDDEN void evm__reap_scan(struct evm_loop *loop); /* reap what is reapable, up to the budget */
/* Watch the next child through SIGCHLD alone, without a pidfd (reaper mode, few children)? */
EVM_HIDDEN bool evm__reap_by_sigchld(struct evm_loop *loop);
/* SIG_IGN or SA_NOCLDWAIT: the kernel reaps our children itself and sends no SIGCHLD */
EVM_HIDDEN bool evm__sigchld_ignored(void);
/* Kill (SIGKILL) and reap synchronously; for loop teardown and failed spawns. */
EVM_HIDDEN void evm__reap_kill_sync(struct evm_proc *proc);
/* the same for an adopted process that is not our child (adopt.c) */
EVM_HIDDEN void evm__adopt_kill_sync(struct evm_proc *proc);

/* ---------------------------------------------------------------- spawning */

/* A spawn request with everything resolved, readable by the child. */
struct evm__spawn_req {
	const char *file;
	char *const *argv;
	char *const *envp;
	const char *path; /* PATH to search when file has no '/', or NULL */
	const char *cwd;
	int fds[3];	  /* source fd for 0/1/2; -1 inherit, -2 close */
	const struct evm_fd_map *extra; /* extra_fds */
	size_t nextra;
	unsigned flags;
	pid_t pgid;
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
	mode_t umask;
	const struct evm_rlimit *rlimits;
	size_t nrlimits;
	bool restore_nofile;
	bool user_nofile; /* RLIMIT_NOFILE is among rlimits */
	struct rlimit nofile;
	int nice;	  /* EVM_SPAWN_NICE */
	int oom_score_adj; /* EVM_SPAWN_OOM_SCORE_ADJ */
	int pdeath_signal;
	int cgroup_fd;	    /* EVM_SPAWN_CGROUP, else -1 */
	bool cgroup_in_child; /* no CLONE_INTO_CGROUP: the child moves itself */
	pid_t parent_pid;
	bool reset_signals; /* ignored and caught signals back to SIG_DFL (not needed from the helper) */
	bool handlers_cleared; /* CLONE_CLEAR_SIGHAND: only the ignored ones are left to reset */
	int parent_statusfd;   /* CLONE_VFORK: the loop's /proc/self/status, else -1 (child.c) */
	int cwd_fd;	/* helper path: our cwd (O_PATH), to fchdir before chdir(cwd) */
	int errfd;	/* clone() fallback: the child writes {errno, stage} here */
	/*
	 * clone3 fast path: cloned with CLONE_FILES, the child copies only the
	 * fds below keep_fds into a table of its own (child.c's own_fd_table),
	 * and closes its own pidfd there (*pidfd_at, written by the kernel).
	 * 0: not shared.
	 */
	unsigned keep_fds;
	const volatile int *pidfd_at;
	/* spawnclone.c's pin_here: the CPU mask the child widens to before its exec, or NULL */
	const cpu_set_t *cpus;
	char *listen_pid; /* EVM_SPAWN_LISTEN_PID: room for the digits of "LISTEN_PID=" */
	int nowait_slot;  /* EVM_SPAWN_NOWAIT carried out: the child's slot (nowait.c), else -1 */
	/* namespaces (ns.c): CLONE_NEW* for the clone, then joins, host name, ctty */
	unsigned ns;
	const struct evm_id_map *uid_map, *gid_map;
	size_t nuid_map, ngid_map;
	int syncfd, syncfd_w;  /* CLONE_NEWUSER: the child reads a byte once its maps are written */
	bool setgroups_denied; /* we wrote "deny" to its setgroups */
	const int *setns_fds;
	size_t nsetns;
	const char *hostname;
	int ctty; /* EVM_SPAWN_SETCTTY */
	/* written by the child: that it ran at all, and why it failed */
	volatile int started;
	volatile int err;
	volatile int stage;
	volatile int whole_table; /* own_fd_table had to copy all of ours (unshare: before Linux 5.9) */
	volatile int cpus_refused; /* the child could not take cpus back: it exited, not exec'd */
	/*
	 * Helper path, written by the kernel: the child's pid at clone
	 * (CLONE_PARENT_SETTID), and in_mm, set by us, cleared when the child
	 * execs or exits (CLONE_CHILD_CLEARTID). If the helper dies before it
	 * replies, they say whether a child exists and when it is off our memory.
	 */
	volatile pid_t child_pid;
	volatile int in_mm;
};

EVM_HIDDEN int evm__spawn_child(void *arg); /* the child's entry point */
EVM_HIDDEN unsigned evm__fd_table_size(void); /* FDSize: every open fd is below it; 0 unknown */
/* loop.c: a child's stack of size bytes (its lowest page a guard), to munmap; NULL if none */
EVM_HIDDEN char *evm__stack_map(size_t size);
/*
 * nowait.c: EVM_SPAWN_NOWAIT. evm__nowait_clone: the pid (req->nowait_slot
 * set), -errno of the clone, or 0 when this spawn must wait after all (the
 * caller then takes the waiting path). evm__nowait_bind gives the slot its
 * proc; evm__nowait_exited reads the slot back before the proc's exit is
 * reported.
 */
EVM_HIDDEN pid_t evm__nowait_clone(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
				   bool want_pidfd);
EVM_HIDDEN void evm__nowait_bind(struct evm_loop *loop, int slot, struct evm_proc *p);
EVM_HIDDEN void evm__nowait_exited(struct evm_loop *loop, struct evm_proc *p);
EVM_HIDDEN void evm__nowait_free(struct evm_loop *loop);
EVM_HIDDEN bool evm__nowait_supported(void);			  /* tests: the flag is carried out */
EVM_HIDDEN bool evm__nowait_idle(const struct evm_loop *loop); /* tests: every slot read back */
EVM_HIDDEN void evm__sig_default(int sig);  /* SIG_DFL, glibc's own signals included */
/* what a child reads of /proc/PID/status to reset its signal state */
struct evm__status {
	unsigned long tgid, threads; /* Tgid:, Threads: */
	uint64_t blk, ign, cgt;	     /* SigBlk:, SigIgn:, SigCgt: */
};
/* all five lines of buf[0..n), whole and well-formed, in one pass (child-safe) */
EVM_HIDDEN bool evm__status_parse(const char *buf, size_t n, struct evm__status *st);

/* a clone3 error that is about the CLONE_INTO_CGROUP target, not the fork */
static inline bool evm__cgroup_errno(int e)
{
	return e == EBADF || e == ENODEV || e == ENOENT || e == EACCES || e == EPERM ||
	       e == EBUSY || e == EOPNOTSUPP;
}

/* ns.c: namespace options, checked in the parent; the uid/gid maps written for the child */
EVM_HIDDEN int evm__ns_check(const struct evm_spawn_opts *o);
/* the spawn helper cannot do it: a user namespace's maps, or fds to join */
static inline bool evm__ns_direct_only(const struct evm__spawn_req *r)
{
	return (r->ns & CLONE_NEWUSER) || r->nsetns;
}
EVM_HIDDEN int evm__userns_pipe(struct evm__spawn_req *r, int *sync_w);
EVM_HIDDEN int evm__pipe_above_stdio(int p[2]); /* spawnclone.c: O_CLOEXEC, both ends >= 3 */
/*
 * spawnclone.c: fd itself if it is above 0-2 (or < 0), else a close-on-exec
 * copy >= 3 with fd closed (-1 and errno if none). A descriptor of ours on
 * 0-2, where a program that closed its stdio left a hole, would be what a
 * child inheriting that stdio gets (and what the program's writes to stdout
 * reach). The rule for every fd the library keeps past a call: epoll, the
 * eventfds, the signalfd, the timerfd, inotify, pidfds, pipes, cgroup
 * directories, the spawn helper's socket (test_loop's
 * test_internal_fds_above_stdio).
 */
EVM_HIDDEN int evm__above_stdio(int fd);
/* spawnclone.c: clone the child of req (direct or through the helper); its pid or -errno */
EVM_HIDDEN pid_t evm__spawn_clone(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd,
				  struct evm_spawn_error *err);
/* spawns whose child set itself up on the loop thread's CPU (pin_here; for tests) */
EVM_HIDDEN uint64_t evm__pinned_spawns(const struct evm_loop *loop);
EVM_HIDDEN int evm__userns_release(pid_t pid, struct evm__spawn_req *r, int sync_w);

/* the stage of a failed clone: the cgroup or the namespaces it was asked for, or the fork */
static inline enum evm_spawn_stage evm__clone_stage(unsigned ns, bool cgroup, int e)
{
	if (ns && (e == EPERM || e == EINVAL || e == ENOSPC || e == EUSERS))
		return EVM_STAGE_NAMESPACE;
	return cgroup && evm__cgroup_errno(e) ? EVM_STAGE_CGROUP : EVM_STAGE_FORK;
}

/* struct clone_args of clone3(2), the kernel's stable layout (v2) */
struct clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
		set_tid, set_tid_size, cgroup;
};
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
/* child runs fn(arg) on args->stack; pid, or -errno (-ENOSYS: no trampoline here) */
EVM_HIDDEN pid_t evm__clone3(struct clone_args *args, int (*fn)(void *), void *arg);

/* spawn helper ("spawner"): a small process that clones our children */
struct evm__spawner;
EVM_HIDDEN int evm__spawner_start(struct evm_loop *loop);
/* does a clone's copy of our fd table cost more than a spawn helper's round trip? */
EVM_HIDDEN bool evm__fd_table_big(const struct evm_loop *loop);
EVM_HIDDEN void evm__spawner_stop(struct evm_loop *loop);
/*
 * Returns pid > 0 and the child's pidfd in *pidfd (-1 if none could be
 * received), or -errno; -ENOTCONN: no usable helper (spawn directly). The
 * helper reads req in place and rewrites its fd fields; a child that fails
 * writes err and stage into it.
 */
EVM_HIDDEN pid_t evm__spawner_spawn(struct evm_loop *loop, struct evm__spawn_req *req,
				    struct evm_spawn_error *err, int *pidfd);

/*
 * announce: emit its EVM_EV_SPAWN before returning; a service's spawn does
 * not, and announces it once the service is in its new state (svstart.c).
 */
EVM_HIDDEN int evm__spawn_local(struct evm_loop *loop, const struct evm_spawn_opts *opts,
				struct evm_proc **out, bool announce);
/* The EVM_EV_SPAWN of p (name: the service's, NULL for its route's if any). */
EVM_HIDDEN void evm__spawn_announce(struct evm_loop *loop, struct evm_proc *p, const char *name);
/* The spawn options' own mistakes (-EINVAL, -EBADF, ...), as evm_spawn and evm_service_new see them. */
EVM_HIDDEN int evm__spawn_check_opts(const struct evm_spawn_opts *o, bool have_out, bool check_fds);

/* ------------------------------------------------------------ mux, events */

EVM_HIDDEN struct evm__route *evm__route_get(struct evm_loop *loop, const char *name);
EVM_HIDDEN void evm__route_put(struct evm_loop *loop, struct evm__route *r);
EVM_HIDDEN const char *evm__route_name(const struct evm__route *r);
EVM_HIDDEN void evm__route_dispatch(struct evm_loop *loop, struct evm__route *r,
				    struct evm_proc *proc, const struct evm_exit *exit);
EVM_HIDDEN void evm__mux_free(struct evm_loop *loop);

EVM_HIDDEN void evm__emit(struct evm_loop *loop, struct evm_event *ev);
EVM_HIDDEN void evm__warn(struct evm_loop *loop, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------- cross-thread */

struct evm__xreq; /* a spawn request posted from another thread */
struct evm__post;
EVM_HIDDEN int evm__xreq_spawn(struct evm_loop *loop, const struct evm_spawn_opts *opts,
			       struct evm_proc **out);
EVM_HIDDEN void evm__xreq_run_all(struct evm_loop *loop);
EVM_HIDDEN void evm__wake(struct evm_loop *loop);
EVM_HIDDEN bool evm__on_loop_thread(const struct evm_loop *loop);
/* 1 if this process has one thread, 0 if more or unknown */
EVM_HIDDEN int evm__single_threaded(void);
/* would this thread wait forever for an exit of loop? (loop must be alive) */
EVM_HIDDEN bool evm__wait_would_hang(struct evm_loop *loop);
/* evm_loop_free: every proc of the loop is done; waiters stop reading it */
EVM_HIDDEN void evm__exit_barrier(void);
/* the loop this thread is dispatching callbacks of (innermost), or NULL */
EVM_HIDDEN extern _Thread_local struct evm_loop *evm__tls_dispatching;
EVM_HIDDEN void evm__dispatch_enter(struct evm_loop *loop);
EVM_HIDDEN void evm__dispatch_leave(struct evm_loop *loop); /* the outermost releases */
EVM_HIDDEN void evm__proc_signal_done(struct evm_proc *proc);
/* post.c: run what other threads posted and asyncs sent (on a wake-up) */
EVM_HIDDEN void evm__post_run(struct evm_loop *loop);
/* evm_loop_free: run the posts left and refuse new ones */
EVM_HIDDEN void evm__post_close(struct evm_loop *loop);
EVM_HIDDEN void evm__async_free_all(struct evm_loop *loop);

/* ------------------------------------------------------------ services */

struct evm__svclist {
	struct evm_service *first, *last;
	size_t n;
	/* by name: open addressing, linear probing, load <= 1/2; removed ones are not in it */
	struct evm_service **index;
	size_t icap, ilen;
};
EVM_HIDDEN void evm__services_free(struct evm_loop *loop);

/* --------------------------------------------------------------- cgroups */

struct evm_cgroup {
	atomic_uint refs; /* the owner's, and each service's using it */
	atomic_int dfd; /* O_PATH | O_DIRECTORY once evm_cgroup_fd asked for it, else -1 */
	/*
	 * 1: its directory exists; 0: evm_cgroup_create_later's, not made yet;
	 * -1: not looked at yet (evm__cg_unmade stats it the first time it matters)
	 */
	atomic_int made;
	char *path; /* filesystem path */
	char *rel;  /* as in /proc/PID/cgroup; NULL when the mount does not show it */
	/*
	 * cgstats.c: the controller files found absent (EVM_CGROUP_STAT_* bits:
	 * the controller is not enabled), not opened again until absent_at
	 * (CLOCK_MONOTONIC s) + EVM__CG_ABSENT_SECS (controllers are enabled
	 * rarely, by an administrator); 0 when not read yet.
	 */
	atomic_uint absent;
	atomic_llong absent_at;
};
#define EVM__CG_ABSENT_SECS 30
/* evm_cgroup_create_later's, not made yet (cgfile.c) */
EVM_HIDDEN bool evm__cg_unmade(const struct evm_cgroup *cg);
/* memory.events oom_kill through the directory (cgstats.c): 0, or -errno (-EOPNOTSUPP: absent) */
EVM_HIDDEN int evm__cg_oom_kills(const struct evm_cgroup *cg, uint64_t *out);

/* its directory: the handle's fd or one opened now; give it back to evm__cg_dir_done */
EVM_HIDDEN int evm__cg_dir(const struct evm_cgroup *cg);   /* -ENOENT: not made yet */
EVM_HIDDEN int evm__cg_dir_made(const struct evm_cgroup *cg); /* made first if it was not */
EVM_HIDDEN void evm__cg_dir_done(const struct evm_cgroup *cg, int fd);
/* is pid (pinned by a pidfd) in the cgroup rel (as /proc/PID/cgroup names it) or below? */
EVM_HIDDEN bool evm__cg_member(pid_t pid, const char *rel);
/* evm_cgroup_signal of sig, then of then (0: none), to each member in one walk */
EVM_HIDDEN int evm__cgroup_signal2(struct evm_cgroup *cg, int sig, int then);
/* another reference to cg (dropped by evm_cgroup_free): a service keeps its cgroup */
EVM_HIDDEN struct evm_cgroup *evm__cgroup_ref(struct evm_cgroup *cg);
/* interface files (cgfile.c): never created (O_CREAT); -errno */
EVM_HIDDEN ssize_t evm__cg_read(int dfd, const char *name, char *buf, size_t cap);
/* which file: st_ino and st_dev */
struct evm__file_id {
	uint64_t ino, dev;
};
/* evm__cg_read, and the file's identity (an fstat of the fd it read) into *id unless NULL */
EVM_HIDDEN ssize_t evm__cg_read_id(int dfd, const char *name, char *buf, size_t cap,
				   struct evm__file_id *id);
EVM_HIDDEN ssize_t evm__cg_read_all(int dfd, const char *name, char **out); /* malloc'ed */
EVM_HIDDEN int evm__cg_write(int dfd, const char *name, const char *s);
/* after ENOENT on an interface file: -ENOENT (cgroup gone) or -EOPNOTSUPP (controller off) */
EVM_HIDDEN int evm__cg_missing(int dfd);
EVM_HIDDEN bool evm__cg_key(const char *text, const char *key, uint64_t *out);
EVM_HIDDEN const char *evm__cg_next_line(const char *l);
/* cgroup.procs of dfd, parsed: count (pids up to cap), or -errno (cgfile.c) */
EVM_HIDDEN int evm__cg_procs_at(int dfd, pid_t *pids, size_t cap);
/* the part of path below prefix ("" for prefix itself), or NULL */
EVM_HIDDEN const char *evm__cg_below(const char *path, const char *prefix);
EVM_HIDDEN int evm__cgroup_populated_at(int dfd, const char *events); /* 1, 0, -errno */
/* the same, and which file it read (evm__cg_read_id) into *id unless NULL */
EVM_HIDDEN int evm__cgroup_populated_id(int dfd, const char *events, struct evm__file_id *id);
EVM_HIDDEN int evm__cgroup_kill_loop(struct evm_cgroup *cg); /* kill without cgroup.kill */

struct evm__cgwatchers; /* the loop's inotify fd and its watches (cgwatch.c) */
EVM_HIDDEN void evm__cgwatch_free_all(struct evm_loop *loop);
/* cgwatch.c: the owner read populated = 1 itself: a later 0 is reported (a change) */
EVM_HIDDEN void evm__cgwatch_saw_populated(struct evm_cgroup_watch *w);
/*
 * A watch of cg taken back from the inherited fd by the descriptor, last
 * value and (EVM_CGROUP_KEPT_INO) file identity of record k
 * (evm_service_opts.cgroup_kept, with EVM_CGROUP_KEPT_WATCH): 0, -ENOENT
 * (watch anew: no inherited fd, its first turn is over, or k->wd is not a
 * watch of it, is taken already or watches another file), -ENOMEM
 */
EVM_HIDDEN int evm__cgroup_watch_kept(struct evm_loop *loop, const struct evm_cgroup *cg,
				      const struct evm_cgroup_kept *k, evm_cgroup_cb cb,
				      void *data, struct evm_cgroup_watch **out);
/* Its descriptor, or -1 once unwatched. */
EVM_HIDDEN int evm__cgwatch_wd(const struct evm_cgroup_watch *w);
/* The file its descriptor watches (its cgroup.events when the watch was made): true, or unknown */
EVM_HIDDEN bool evm__cgwatch_id(const struct evm_cgroup_watch *w, struct evm__file_id *id);

/* ------------------------------------------------------------------ loop */

enum evm__spawn_mode { EVM__SPAWN_AUTO, EVM__SPAWN_DIRECT, EVM__SPAWN_HELPER };

struct evm_loop {
	int epfd;
	unsigned flags;
	unsigned budget; /* evm_loop_opts.budget, 0: none */
	unsigned call_reaps; /* reaped by scans in this evm_loop_run_once */
	bool scan_pending; /* the budget cut a scan short: the next wake-up scans */
	/*
	 * The loop thread (read by any thread): the creator until a thread runs
	 * the loop (bound), then the last thread that ran it. The creator's
	 * spawns before that hold claim_mu, which a thread's first iteration
	 * takes to bind, so a loop handed to a new thread is never used by two.
	 */
	_Atomic(pthread_t) thread;
	atomic_bool bound;
	pthread_mutex_t claim_mu; /* recursive: a spawn's callbacks may spawn */
	uint64_t now;	  /* cached CLOCK_MONOTONIC ns */
	uint64_t iterations; /* evm_loop_run_once calls that ran (metrics) */
	unsigned dispatching; /* evm__dispatch_enter nesting: callbacks may run */
	struct evm__release *releasing, **release_tail; /* FIFO, run at the outermost leave */
	struct evm_loop *tls_outer; /* evm__tls_dispatching before the outermost enter */

	/* cross-thread wake-ups and stop (any thread) */
	int wakefd;
	struct evm__watch wake_w;
	atomic_bool stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;	    /* exits and finished cross-thread requests */
	atomic_uint nwaiters;	    /* threads in evm_spawn from another thread */
	struct evm__xreq *xreqs;    /* under mu */
	bool closing;		    /* under mu: evm_loop_free has begun */
	struct evm__post *posts, **posts_tail; /* under mu: evm_loop_post's FIFO */
	bool posts_closed;	    /* under mu: evm_loop_free ran the last posts */
	atomic_bool async_pending;  /* any thread: some evm_async was sent */
	struct evm_async *asyncs;   /* loop thread */

	/* timers */
	struct evm_timer **heap;
	size_t nheap, capheap;
	uint64_t timer_seq;
	struct evm_timer *waiting, *waiting_tail; /* spawning timers due, not run yet (FIFO) */
	size_t nwaiting;
	int timerfd; /* -1 until evm_loop_fd() asks for it */
	struct evm__watch timer_w;
	uint64_t timerfd_armed; /* deadline it is armed for, UINT64_MAX: disarmed */

	/* processes */
	struct evm_proc *live; /* doubly linked */
	size_t nlive;
	struct evm__pidmap pids;
	size_t nnopidfd; /* live children without a pidfd */
	uint64_t proc_serial; /* processes tracked so far: each one's serial */

	/* reaping */
	int sigfd; /* SIGCHLD signalfd, -1 when not needed */
	struct evm__watch sig_w;
	struct evm__watch chld_w; /* SIGCHLD caught by another thread (reap.c) */
	bool chld_watching;
	sigset_t oldmask; /* mask_thread's mask before we blocked SIGCHLD */
	pthread_t mask_thread; /* the thread that made the loop: its mask was changed */
	bool sigmask_changed;
	bool subreaper;		/* we called PR_SET_CHILD_SUBREAPER */
	struct evm_timer *scan_timer; /* deferred orphan scan */
	bool warned_nopidfd;
	bool warned_nopidfd_ign; /* the SIGCHLD-ignored refusal, said once */
	bool force_nopidfd; /* EVM_NO_PIDFD=1: test the SIGCHLD path */
	bool reaper_pidfds; /* a pidfd per child in reaper mode too: EVM_REAPER_PIDFDS=1, no pidfd_open */

	/* spawning */
	enum evm__spawn_mode spawn_mode;
	int high_fd;	    /* the last pidfd number: how big our fd table is */
	char *stack;	    /* child stack for direct spawns */
	size_t stack_size;
	struct evm__nowait **nowait; /* EVM_SPAWN_NOWAIT's slots (nowait.c), nnowait of them */
	unsigned nnowait;
	pid_t pid;	    /* getpid() at creation */
	/* our ancestors (pid, start time), read at the first adoption (adopt.c) */
	struct evm__ancestor {
		pid_t pid;
		uint64_t start;
	} *ancestors;
	unsigned nancestors;
	bool ancestors_read;
	unsigned forks;	    /* evm__forks at creation: another value, we are a fork()ed child */
	int devnull;	    /* /dev/null, opened on first use */
	int statusfd;	    /* /proc/self/status, for the SigIgn mask */
	bool no_clone3;	    /* clone3 or CLONE_CLEAR_SIGHAND unavailable */
	bool clone3_worked; /* so a later EINVAL is about the request, not the kernel */
	bool no_share_files; /* a child could not take a table of its own (a seccomp filter) */
	bool no_pin;	     /* spawns leave our CPU mask alone (no EVM_LOOP_SPAWN_LOCAL_CPU, or refused) */
	bool pin_known;	     /* pin_mask read: the loop thread's mask, every online CPU */
	cpu_set_t pin_mask;
	uint64_t pinned;     /* spawns whose child set up on our CPU (evm__pinned_spawns) */
	bool test_refuse_cpus; /* tests: the child is given an empty mask to take back (EINVAL) */
	bool whole_tables;   /* a child took a copy of all of ours, not of the fds it uses */
	bool no_helper;	    /* the spawn helper cannot work here (valgrind, old kernel) */
	int reserve_fd;	    /* kept free for the SIGCHLD signalfd when fds run out */
	int pidfd_max;	    /* pidfds below this number leave the application its reserve */
	int fd_room;	    /* our fd table's size as far as we know (spawnclone.c's fd_table_ahead) */
	struct rlimit nofile0; /* RLIMIT_NOFILE when the loop was created */
	bool nofile_raised;
	struct evm__spawner *spawner;
	/*
	 * The helper's pidfd watch lives here, not in the spawner: a helper
	 * stopped during an iteration may still be named in its events array.
	 */
	struct evm__watch spawner_w;

	/* io watchers, for evm_loop_free */
	struct evm_io *ios;

	/* mux and subscribers */
	struct evm__route **routes;
	size_t nroutes, caproutes;
	char **unrouted; /* handler names already warned about (mux.c) */
	size_t nunrouted, capunrouted;
	struct evm_sub *subs;

	/* services */
	struct evm__svclist svcs;
	bool shutting_down;	       /* evm_shutdown runs: no restarts */

	struct evm__cgwatchers *cgw; /* cgroup populated watches, on first use */
	struct evm__trees *trees;    /* session.c's shared /proc read and kill queue, on first use */
};


#endif
