/*
 * evmon.h - libevmon, an evented process monitor for Linux.
 *
 * One thread, one epoll loop, N children: spawn processes, learn about every
 * exit (callback, named handler, subscribers, blocking waits from other
 * threads), restart them by policy, stop them with escalation, and, in reaper
 * mode, reap every orphaned descendant too.
 *
 * Conventions
 *  - Functions return >= 0 on success and a negative errno value on failure.
 *  - Handles are opaque. Option structs are valid when zeroed; a zero field
 *    means "the default". Where zero is a legal value (uid 0, delay 0) a flag
 *    bit says the field is set.
 *  - Pointers inside option structs are borrowed for the duration of the call;
 *    the library copies what it keeps.
 *  - Records passed to callbacks are valid only during the callback.
 *  - Unless a function says "any thread", call it on the loop thread (the
 *    thread running evm_loop_run / evm_loop_run_once, or the creator while the
 *    loop is not running). Callbacks run on the loop thread and may call any
 *    function here, including ones that free the object being dispatched
 *    (it is freed when the dispatch ends), but never run the loop inside
 *    itself: evm_loop_run, evm_loop_run_once and evm_shutdown return
 *    -EDEADLK from a callback, and evm_loop_free must not be called there.
 *  - The library never prints and never exits the process.
 *  - A loop belongs to the process that made it. A fork()ed child shares its
 *    epoll set, timerfd and its children's pidfds with the parent, so there
 *    what would act on them returns -ECHILD (evm_loop_run, evm_loop_run_once,
 *    evm_spawn, evm_shutdown, evm_timer_add, evm_io_add, evm_proc_signal,
 *    evm_proc_signal_group, the evm_service_* actions) and evm_loop_free
 *    leaves the loop as it is (its fds are close-on-exec); use a new loop in
 *    the child.
 *
 * ABI
 *  - The SONAME is libevmon.so.MAJOR (MAJOR of the VERSION file). Struct
 *    layouts are part of the ABI: option structs are allocated by the
 *    caller, so a binary built against an older header passes a smaller
 *    one. Hence: new fields are only ever appended at the end of a struct
 *    (never inserted, never reordered, never removed), enum values only
 *    appended, and every release that appends a field to a struct or
 *    changes a prototype bumps MAJOR. A release that only adds functions,
 *    flags or enum values keeps it.
 *  - SONAME 1 (VERSION 1.0.0) is the first under this rule: SONAME 0 had
 *    fields inserted into evm_spawn_opts (cgroup_fd, timeout_*, extra_fds,
 *    capture_max, nice, oom_score_adj) without a bump, so nothing built
 *    against a 0.x header may run with it.
 */
#ifndef EVMON_H
#define EVMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(EVM_BUILDING_LIBRARY)
#define EVM_API __attribute__((visibility("default")))
#else
#define EVM_API
#endif

/* The library version, "MAJOR.MINOR.PATCH". Static string. */
EVM_API const char *evm_version(void);

struct evm_loop;
struct evm_proc;
struct evm_timer;
struct evm_io;
struct evm_sub;
struct evm_service;

/* ------------------------------------------------------------------ loop */

enum {
	/*
	 * Reaper mode: reap every child of this process, not only the ones
	 * spawned through the loop. If the process is not PID 1 it becomes a
	 * child subreaper (PR_SET_CHILD_SUBREAPER), so orphaned descendants
	 * are re-parented to it and reported as EVM_EV_ORPHAN. Blocks SIGCHLD
	 * in the calling thread (create the loop before other threads, or
	 * block SIGCHLD in them too), until evm_loop_free from that thread
	 * gives it its mask back. Only one loop per process may use it, and
	 * it reaps the children of other loops of the process too (they get
	 * status_unknown): a reaper loop is best the process's only one.
	 * Nothing else in the process may wait for children (waitpid(-1),
	 * wait()), nor set SIGCHLD to SIG_IGN: while fewer than 256 children
	 * live, the loop watches a child through SIGCHLD alone (no pidfd:
	 * cheaper per short-lived child) and signals it by pid, which stays
	 * its own until the loop reaps it.
	 */
	EVM_LOOP_REAPER = 1u << 0,
	/* In reaper mode, do not become a subreaper when not PID 1. */
	EVM_LOOP_NO_SUBREAPER = 1u << 1,
	/*
	 * Children set themselves up on the spawning thread's CPU: while other
	 * children of the loop live, a spawn narrows the spawning thread's
	 * affinity to the CPU it runs on for the clone, so the child sets
	 * itself up there (where the thread sleeps until the child's exec)
	 * rather than on another CPU the kernel picks for it; the child widens
	 * its mask to every CPU just before its exec (the kernel clamps it to
	 * the cpuset, as at any fork), and the thread after the clone, unless
	 * someone changed it meanwhile. Only while the thread's mask is every
	 * online CPU (nobody narrowed it), and not with namespaces or
	 * EVM_SPAWN_SETCTTY. A trade, hence not the default: for children that
	 * do little after their exec (exit at once, or sleep) 15-20% more
	 * spawns a second, and several times more on a loaded machine; for
	 * children with work of their own to do after it (a dynamically linked
	 * program's start-up) 40% fewer, as they start on the spawning CPU and
	 * the kernel spreads them only later (docs/BENCHMARKS.md, "Where the
	 * time goes"). Another thread reading the spawning thread's affinity
	 * during a spawn sees one CPU.
	 */
	EVM_LOOP_SPAWN_LOCAL_CPU = 1u << 2,
};

struct evm_loop_opts {
	unsigned flags; /* EVM_LOOP_* */
	/*
	 * Fairness for a loop embedded in another one: one evm_loop_run_once
	 * handles at most budget ready fds (exits, I/O, wake-ups), at most
	 * budget due timers (restarts included) and reaps at most budget
	 * orphans; the rest waits for the next call, and evm_loop_fd stays
	 * readable meanwhile. 0: 1,024 fds and every due timer. Whatever
	 * the budget, services' restarts (each a spawn, which holds the loop
	 * until the child has exec'd) are bounded on their own: at most 16
	 * start in one call, fewer once 20 ms have passed since the first;
	 * the others due wait, in the order they came due, for the next calls.
	 */
	unsigned budget;
};

/*
 * Create a loop. opts may be NULL. On success *out is a loop the caller owns
 * (free with evm_loop_free). In reaper mode, fails with -EBUSY when another
 * reaper loop exists in the process.
 */
EVM_API int evm_loop_new(struct evm_loop **out, const struct evm_loop_opts *opts);

/*
 * Free the loop and everything it owns. Not from a callback of this loop.
 * Children still running get SIGKILL
 * and are reaped before this returns, so nothing is left behind (use
 * evm_shutdown first for a graceful stop). Pipe ends handed to the caller
 * stay open. Process references held by the caller stay valid until
 * released, but their loop is gone.
 */
EVM_API void evm_loop_free(struct evm_loop *loop);

/*
 * Run until evm_loop_stop. Returns 0, or -errno if the loop failed; -EDEADLK
 * from a callback of this loop (the loop never runs inside itself).
 */
EVM_API int evm_loop_run(struct evm_loop *loop);

/*
 * Wait up to timeout_ms (-1: forever, 0: do not block) for work, run it, and
 * return the number of events handled (>= 0; internal ones included) or
 * -errno (-EDEADLK from a callback of this loop). evm_loop_stop wakes it; it
 * does not otherwise affect it. evm_loop_opts.budget bounds one call.
 */
EVM_API int evm_loop_run_once(struct evm_loop *loop, int timeout_ms);

/*
 * Make evm_loop_run return after the current iteration (or at once, if it is
 * not running: the next evm_loop_run returns at once). Any thread.
 */
EVM_API void evm_loop_stop(struct evm_loop *loop);

/*
 * A file descriptor that becomes readable when evm_loop_run_once(loop, 0)
 * has something to do, timers included, for embedding the loop in another
 * event loop (put it in your poll set). The loop owns it.
 */
EVM_API int evm_loop_fd(struct evm_loop *loop);

/*
 * Milliseconds until the next timer is due (0 if one is due, -1 if none).
 * An alternative to evm_loop_fd's timerfd for embedders with their own timers.
 */
EVM_API int evm_loop_timeout(struct evm_loop *loop);

/* The loop's cached CLOCK_MONOTONIC time in nanoseconds (updated each iteration). */
EVM_API uint64_t evm_loop_now(const struct evm_loop *loop);

/* Iterations evm_loop_run_once has made (evm_loop_run's included): a counter for metrics. */
EVM_API uint64_t evm_loop_iterations(const struct evm_loop *loop);

/*
 * The number of things keeping the loop busy: live processes, services not
 * stopped, pending timers. 0 means nothing will ever happen unless you add
 * something (I/O watchers and orphans are not counted).
 */
EVM_API size_t evm_loop_alive(const struct evm_loop *loop);

/* ------------------------------------------------- from other threads */

/*
 * Thread rules, in one place. Any thread: evm_loop_stop, evm_loop_post,
 * evm_async_send (also from a signal handler), evm_spawn, evm_spawn_wait,
 * evm_proc_signal, evm_proc_signal_group, evm_proc_wait, evm_proc_ref and
 * evm_proc_unref, evm_proc_pid, evm_proc_exited, and the cgroup functions
 * that take no loop. Everything else: the loop thread, which is where posted
 * functions run, so a worker thread reaches the rest of the API through
 * evm_loop_post.
 */

typedef void (*evm_post_cb)(struct evm_loop *loop, void *data);

/*
 * Run fn(loop, data) once on the loop thread, in its next iteration (posts
 * run in the order they were made). Any thread, but not a signal handler (it
 * allocates: use an evm_async there). -ENOMEM, or -ECANCELED once
 * evm_loop_free has begun. Posts still pending when evm_loop_free starts run
 * there, first, so data they own is never leaked.
 */
EVM_API int evm_loop_post(struct evm_loop *loop, evm_post_cb fn, void *data);

struct evm_async;

/*
 * An async handle, like uv_async_t: evm_async_send from any thread or from a
 * signal handler makes cb(loop, data) run on the loop thread. Sends coalesce:
 * several before the callback runs give one call; a send while the callback
 * runs gives another call later. Create and free it on the loop thread
 * (evm_loop_free frees what is left); free it only once no thread can send.
 */
EVM_API int evm_async_new(struct evm_loop *loop, evm_post_cb cb, void *data,
			  struct evm_async **out);
/* Any thread; async-signal-safe (two atomic flags and a write(2) to an eventfd). */
EVM_API void evm_async_send(struct evm_async *async);
/* Loop thread, also from its own callback. NULL is a no-op. */
EVM_API void evm_async_free(struct evm_async *async);

/* ---------------------------------------------------------------- timers */

typedef void (*evm_timer_cb)(struct evm_timer *timer, void *data);

/*
 * One-shot timer firing after delay_ms on CLOCK_MONOTONIC. The loop owns the
 * timer; it is freed after its callback returns or when cancelled.
 *
 * out (optional) is where you keep the handle, and the library keeps it
 * right: *out is set to the timer, and back to NULL when the timer fires
 * (before its callback runs, so the callback may add a new timer under the
 * same handle) or is cancelled, and on failure. So evm_timer_cancel(*out) is
 * always safe. *out must stay valid while the timer is pending (keep it next
 * to the data the callback uses); evm_loop_free does not clear it.
 */
EVM_API int evm_timer_add(struct evm_loop *loop, uint64_t delay_ms, evm_timer_cb cb,
			  void *data, struct evm_timer **out);

/*
 * Cancel and free a pending timer, and clear its handle. NULL, and the timer
 * whose callback is running, are no-ops. Pass the handle kept through out
 * (cleared when the timer is gone), not a copy of it taken earlier.
 */
EVM_API void evm_timer_cancel(struct evm_timer *timer);

/* ------------------------------------------------------------- I/O watchers */

enum { EVM_READ = 1u << 0, EVM_WRITE = 1u << 1 };
/*
 * revents may also carry these, whatever was asked for. EVM_PEER_CLOSED
 * (with EVM_READ, for a socket): the peer has shut down its side, so what
 * is unread now is all that will come (EPOLLRDHUP): a reader may stop after
 * reading it, without a read for the EOF.
 */
enum { EVM_ERROR = 1u << 2, EVM_HANGUP = 1u << 3, EVM_PEER_CLOSED = 1u << 4 };

typedef void (*evm_io_cb)(struct evm_io *io, int fd, unsigned revents, void *data);

/*
 * Watch fd (level-triggered) for EVM_READ and/or EVM_WRITE. The fd stays the
 * caller's; the watcher is the loop's until evm_io_free. Free the watcher
 * before closing the fd.
 */
EVM_API int evm_io_add(struct evm_loop *loop, int fd, unsigned events, evm_io_cb cb, void *data,
		       struct evm_io **out);
EVM_API int evm_io_modify(struct evm_io *io, unsigned events);
EVM_API void evm_io_free(struct evm_io *io);

/* --------------------------------------------------------------- spawning */

enum evm_stdio_mode {
	EVM_STDIO_INHERIT = 0, /* the child gets our fd 0/1/2 */
	EVM_STDIO_NULL,	       /* /dev/null */
	EVM_STDIO_FD,	       /* the caller's fd (borrowed; it is dup'ed in the child, which
				* clears O_NONBLOCK: on the open file, so on the caller's fd
				* too; give a non-blocking socket or pipe of your own a dup
				* opened anew, e.g. /proc/self/fd/N, if that matters) */
	EVM_STDIO_PIPE,	       /* a pipe; our end is returned by evm_proc_stdio_fd */
	EVM_STDIO_CAPTURE,     /* stdout/stderr only: the loop collects it (evm_proc_output) */
	EVM_STDIO_STDOUT,      /* stderr only: where stdout goes, like 2>&1 (one pipe, one capture
				* in slot 1 with both, in the order written) */
};

struct evm_stdio {
	enum evm_stdio_mode mode;
	int fd; /* EVM_STDIO_FD only */
};

struct evm_rlimit {
	int resource; /* RLIMIT_* */
	struct rlimit limit;
};

/* An extra fd for the child (Go's ExtraFiles): our fd becomes its fd target. */
struct evm_fd_map {
	int fd;	    /* ours, borrowed (dup'ed in the child) */
	int target; /* its number in the child, >= 3 */
};

enum {
	EVM_SPAWN_SETSID = 1u << 0,    /* new session (implies a new process group) */
	EVM_SPAWN_SETPGID = 1u << 1,   /* join process group pgid (0: a new group of its own) */
	EVM_SPAWN_SETUID = 1u << 2,    /* run as uid */
	EVM_SPAWN_SETGID = 1u << 3,    /* run as gid */
	EVM_SPAWN_SETGROUPS = 1u << 4, /* supplementary groups = groups[0..ngroups) */
	EVM_SPAWN_UMASK = 1u << 5,     /* set umask */
	EVM_SPAWN_NO_PATH = 1u << 6,   /* do not search PATH for a file without '/' */
	/*
	 * Keep the caller's RLIMIT_NOFILE soft limit in the child. By default a
	 * child gets the soft limit the process had before the loop raised it,
	 * so select()-based programs keep working.
	 */
	EVM_SPAWN_KEEP_NOFILE = 1u << 7,
	/*
	 * Keep the caller's fds above 2 that are not close-on-exec open in the
	 * child, as fork+exec would (an init passing on a runtime's
	 * --preserve-fds or socket activation's LISTEN_FDS). By default the
	 * child gets only 0-2. Every fd libevmon opens is close-on-exec, so
	 * none of the loop's leaks. Such spawns never go through the spawn
	 * helper, which does not hold the caller's fds.
	 */
	EVM_SPAWN_INHERIT_FDS = 1u << 8,
	/*
	 * Set LISTEN_PID to the child's own pid in its environment (replacing
	 * any LISTEN_PID), for socket activation, where sd_listen_fds(3)
	 * checks it; the pid is written between clone and exec.
	 */
	EVM_SPAWN_LISTEN_PID = 1u << 9,
	/*
	 * Start the child in the cgroup v2 cgroup_fd (evm_cgroup_fd), with
	 * clone3 CLONE_INTO_CGROUP (Linux 5.7): it is in the cgroup from its
	 * first instruction, so nothing it forks can escape. Where the kernel
	 * cannot, the child moves itself before it runs anything else.
	 */
	EVM_SPAWN_CGROUP = 1u << 10,
	EVM_SPAWN_NICE = 1u << 11,	    /* setpriority(PRIO_PROCESS) to nice */
	EVM_SPAWN_OOM_SCORE_ADJ = 1u << 12, /* /proc/self/oom_score_adj = oom_score_adj */
	/*
	 * Make the child's fd ctty (0-2 or an extra_fds target, a terminal)
	 * its controlling terminal, like Go's SysProcAttr.Setctty + Ctty:
	 * TIOCSCTTY after the fds are in place. Implies EVM_SPAWN_SETSID.
	 */
	EVM_SPAWN_SETCTTY = 1u << 13,
	/*
	 * Do not wait for the child's exec: evm_spawn returns once the child
	 * exists, and the loop goes on while the child sets itself up and
	 * execs (by default the calling thread sleeps through both: one child
	 * at a time). A failure of the child between its clone and its exec
	 * (the exec's ENOENT, a chdir, a credential change, ...) is then not
	 * evm_spawn's return value: the child exits with status 127, and
	 * evm_proc_spawn_error says why once its exit is reported. Where the
	 * library cannot do without the wait (through the spawn helper, with
	 * namespaces or EVM_SPAWN_CGROUP, without clone3, on an architecture
	 * other than x86-64 and aarch64, under valgrind) or should not (with
	 * hundreds of children, where the child's copy of the fd table would
	 * cost more than the wait), it waits as without
	 * the flag and returns such a failure as usual: handle both. Argument
	 * arrays, strings and fds may be released when the call returns (the
	 * child has its own copies).
	 */
	EVM_SPAWN_NOWAIT = 1u << 14,
};

/* Where a failed spawn failed (see struct evm_spawn_error). */
enum evm_spawn_stage {
	EVM_STAGE_NONE = 0,
	EVM_STAGE_SETUP,     /* in the parent: arguments, pipes, memory, fds */
	EVM_STAGE_FORK,	     /* clone/vfork (EAGAIN under RLIMIT_NPROC, ENOMEM) */
	EVM_STAGE_PIDFD,     /* no fd for the pidfd (EMFILE), and SIGCHLD ignored or no
			      * signalfd to watch the child without one */
	EVM_STAGE_SESSION,   /* setsid/setpgid */
	EVM_STAGE_RLIMIT,    /* setrlimit */
	EVM_STAGE_GROUPS,    /* setgroups */
	EVM_STAGE_GID,	     /* setgid */
	EVM_STAGE_UID,	     /* setuid */
	EVM_STAGE_CWD,	     /* chdir */
	EVM_STAGE_STDIO,     /* dup2 onto 0/1/2 */
	EVM_STAGE_PDEATHSIG, /* prctl(PR_SET_PDEATHSIG) */
	EVM_STAGE_EXEC,	     /* execve (ENOENT, EACCES, ENOEXEC, ...) */
	EVM_STAGE_CGROUP,    /* placing it in cgroup_fd (EBADF, ENODEV: removed, EBUSY:
				controllers on and children below, EOPNOTSUPP: threaded,
				EACCES) */
	EVM_STAGE_NICE,	     /* setpriority (EACCES: a lower nice needs privilege) */
	EVM_STAGE_OOM_SCORE_ADJ, /* writing /proc/self/oom_score_adj (EACCES: lowering it
				    needs privilege) */
	EVM_STAGE_NAMESPACE, /* the clone could not make the namespaces asked for (EPERM:
				no privilege, ENOSPC/EUSERS: a limit of
				/proc/sys/user, EINVAL: not in this kernel) */
	EVM_STAGE_IDMAP,     /* writing the child's uid_map, setgroups or gid_map (EPERM:
				a mapping this process may not make) */
	EVM_STAGE_SETNS,     /* setns of a setns_fds entry (EPERM, EINVAL) */
	EVM_STAGE_HOSTNAME,  /* sethostname */
	EVM_STAGE_CTTY,	     /* ioctl TIOCSCTTY (ENOTTY: not a terminal, EPERM: it is
				another session's controlling terminal) */
};

/* A short name for a stage ("exec", "chdir", ...). Static string. */
EVM_API const char *evm_spawn_stage_name(enum evm_spawn_stage stage);

struct evm_spawn_error {
	enum evm_spawn_stage stage;
	int error; /* positive errno */
};

/* One line of a user namespace's uid_map or gid_map (Go's SysProcIDMap). */
struct evm_id_map {
	uint32_t inside;  /* first id in the new namespace */
	uint32_t outside; /* the id it stands for in ours */
	uint32_t count;	  /* how many ids from there */
};

struct evm_exit;
typedef void (*evm_exit_cb)(struct evm_proc *proc, const struct evm_exit *exit, void *data);

struct evm_spawn_opts {
	const char *file;     /* program to run; NULL: argv[0]. Searched in PATH if it has no '/' */
	char *const *argv;    /* required, NULL-terminated, argv[0] required */
	char *const *envp;    /* NULL: inherit environ at spawn time */
	char *const *env_extra; /* "KEY=VALUE" entries added to envp (or the inherited
				   environ), replacing entries with the same KEY;
				   an entry without '=', or with an empty
				   KEY: -EINVAL */
	const char *cwd;      /* NULL: inherit */
	struct evm_stdio stdio[3];
	unsigned flags;	      /* EVM_SPAWN_* */
	pid_t pgid;	      /* EVM_SPAWN_SETPGID */
	uid_t uid;	      /* EVM_SPAWN_SETUID; (uid_t)-1: -EINVAL */
	gid_t gid;	      /* EVM_SPAWN_SETGID; (gid_t)-1: -EINVAL */
	const gid_t *groups;  /* EVM_SPAWN_SETGROUPS */
	size_t ngroups;
	mode_t umask;	      /* EVM_SPAWN_UMASK */
	const struct evm_rlimit *rlimits;
	size_t nrlimits;
	/*
	 * Set like rlimits, before the credentials change (lowering either
	 * needs privilege): nice -20..19, oom_score_adj -1000..1000.
	 */
	int nice;	      /* EVM_SPAWN_NICE */
	int oom_score_adj;    /* EVM_SPAWN_OOM_SCORE_ADJ */
	int pdeath_signal;    /* 0: none. Sent when the loop's thread exits */

	/* Exit reporting. All optional. */
	evm_exit_cb on_exit;  /* called first, with data, on the loop thread:
				 possibly before evm_spawn returns on another */
	void *data;
	const char *handler;  /* name routed through evm_handle() (copied) */

	/* Optional out: on failure, where it failed and why. */
	struct evm_spawn_error *error;

	/*
	 * EVM_SPAWN_CGROUP: an fd of the cgroup's directory (O_PATH is enough).
	 * Borrowed; a service borrows it at each start, so keep it open while
	 * the service exists (like an EVM_STDIO_FD fd).
	 */
	int cgroup_fd;

	/*
	 * A deadline, like Go's exec.CommandContext with WaitDelay: timeout_ms
	 * after the start the child gets timeout_signal (0: SIGTERM), and
	 * SIGKILL timeout_kill_ms later (0: 5000) if it is still running. Both
	 * go to its process group when it leads one (SETSID, SETPGID 0). Its
	 * exit record then has timed_out set. 0: no deadline. A service applies
	 * it to each run.
	 */
	uint64_t timeout_ms;
	int timeout_signal;
	uint64_t timeout_kill_ms;

	/*
	 * Extra fds: extra_fds[i].fd is open in the child as extra_fds[i].target
	 * (not close-on-exec); every other fd above 2 is still closed (unless
	 * EVM_SPAWN_INHERIT_FDS). Up to 1,024, targets >= 3 and distinct, sources open:
	 * else -EINVAL / -EBADF before anything starts; a failed dup2 in the
	 * child is stage "stdio". Such spawns never go through the spawn
	 * helper. Borrowed; a service copies the array but borrows the fds
	 * at each start, so keep those open while the service exists.
	 */
	const struct evm_fd_map *extra_fds;
	size_t nextra_fds;
	/* EVM_STDIO_CAPTURE: bytes kept per stream, the rest dropped (0: 1 MiB) */
	size_t capture_max;

	/*
	 * Fields from here on were added in SONAME 1 (see ABI at the top).
	 *
	 * Namespaces (Go's SysProcAttr.Cloneflags): CLONE_NEWPID, CLONE_NEWNS,
	 * CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER and
	 * CLONE_NEWCGROUP bits of <sched.h>, made by the clone itself (any
	 * other bit: -EINVAL). In a new PID namespace the child is its pid 1;
	 * its pid in the exit record and evm_proc_pid is the one we see.
	 * Without CLONE_NEWUSER most need CAP_SYS_ADMIN. A refusal is stage
	 * EVM_STAGE_NAMESPACE.
	 */
	unsigned namespaces;
	/*
	 * CLONE_NEWUSER: the maps (up to 340 lines each) are written by us
	 * before the child runs anything, so it starts with its ids mapped
	 * (unmapped, it is uid/gid 65534 there). With a gid_map, the child's
	 * /proc/PID/setgroups is set to "deny" first (what an unprivileged
	 * process must do, and then setgroups fails inside) unless flags has
	 * EVM_SPAWN_SETGROUPS. Such spawns wait for the child's exec (no
	 * vfork sharing) and never go through the spawn helper. Failures are
	 * stage EVM_STAGE_IDMAP. Arrays borrowed (copied by a service).
	 */
	const struct evm_id_map *uid_map;
	size_t nuid_map;
	const struct evm_id_map *gid_map;
	size_t ngid_map;
	/*
	 * The child's host name, set before exec: needs CLONE_NEWUTS or a UTS
	 * namespace among setns_fds (never the host's own): else -EINVAL.
	 */
	const char *hostname;
	/*
	 * Join existing namespaces (fds of /proc/PID/ns/ files): setns in the
	 * child, in order, first thing after the clone, so after the new
	 * namespaces above are made. Not a user namespace (a vfork-style child
	 * cannot enter one: -EINVAL). A joined PID namespace applies to the
	 * child's children, not to itself. Such spawns never go through the
	 * spawn helper. Fds borrowed; the array is copied by a service.
	 */
	const int *setns_fds;
	size_t nsetns_fds;
	int ctty; /* EVM_SPAWN_SETCTTY: the child's fd number */
};

/*
 * Start a process. Returns 0 and, if out is not NULL, a new reference to the
 * process in *out (release it with evm_proc_unref). Exec failures are
 * reported here, synchronously, as -errno (ENOENT, EACCES, ...), never as an
 * exit 127; opts->error tells the stage (but see EVM_SPAWN_NOWAIT).
 * EVM_STDIO_PIPE requires out.
 *
 * Any thread. The loop thread is the one that created the loop until another
 * thread runs it (evm_loop_run/run_once), then the last one that ran it. From
 * any other thread the request is carried out by the loop thread, which must
 * be running the loop, and this call blocks until it is done (-EDEADLK if the
 * caller is the process's only thread: the loop's has exited). The creator may
 * hand the loop to a new thread and spawn at once, with no handshake: until
 * that thread's first iteration the spawn runs here, and the iteration waits
 * for it; after, the spawn is carried out by that thread.
 *
 * Order: opts->on_exit (and handlers, subscribers) run on the loop thread.
 * Called from another thread, evm_spawn may return after on_exit has already
 * run for a child that exited at once; *out is valid either way (it holds a
 * reference), but data on_exit needs must be set up before the call.
 *
 * Once there are hundreds of children, spawns that would copy hundreds of
 * fds (one of theirs is a high-numbered fd; or, before Linux 5.9 or under a
 * seccomp filter refusing close_range, every spawn) go through a helper
 * process created from a snapshot of this one (see README): the child gets this
 * process's current environment, cwd, umask and RLIMIT_NOFILE, but other
 * process attributes (nice, CPU affinity, cgroup, other rlimits) as they
 * were when the helper started. So a process that moves itself to another
 * cgroup should give EVM_SPAWN_CGROUP (or move before its first spawn).
 */
EVM_API int evm_spawn(struct evm_loop *loop, const struct evm_spawn_opts *opts,
		      struct evm_proc **out);

/* ---------------------------------------------------------------- exits */

struct evm_exit {
	pid_t pid;
	int status;	      /* wait(2)-style status: WIFEXITED() etc. work on it */
	int code;	      /* exit code, or -1 if killed by a signal */
	int signal;	      /* terminating signal, or 0 */
	bool core_dumped;
	bool status_unknown;  /* reaped by someone else (SIGCHLD ignored, foreign waitpid,
				 an adopted process whose parent we are not) */
	bool timed_out;	      /* its spawn's timeout_ms passed and it was signalled for it */
	bool adopted;	      /* the process was taken over with evm_proc_adopt */
	/*
	 * A service's exit (evm_service): its cgroup's memory.events oom_kill
	 * grew during the run (read at the spawn and at the exit, when the
	 * memory controller is enabled): the OOM killer killed its main process
	 * or another of its tree. Always false elsewhere.
	 */
	bool oom_killed;
	struct rusage rusage; /* the child's resource usage (zero for unknown status) */
	struct timespec start_time; /* CLOCK_REALTIME at spawn; zero for orphans */
	struct timespec end_time;   /* CLOCK_REALTIME when the exit was observed */
	uint64_t runtime_ns;	    /* end - start on CLOCK_MONOTONIC; 0 for orphans */
};

/*
 * A child started with EVM_SPAWN_NOWAIT that failed between its clone and
 * its exec (it exited with status 127): -errno of that failure, and *err
 * (if not NULL) its stage and errno, as evm_spawn would have returned them.
 * 0 for any other process, one that exec'd, and before its exit is
 * reported (on_exit, handlers, after evm_proc_wait). Valid while the proc
 * is; any thread once the exit is reported.
 */
EVM_API int evm_proc_spawn_error(const struct evm_proc *proc, struct evm_spawn_error *err);

/*
 * A shell-like exit code for an exit record: code, or 128+signal. -1 for an
 * unknown status.
 */
EVM_API int evm_exit_shell_code(const struct evm_exit *exit);

/*
 * What an EVM_STDIO_CAPTURE slot (1 or 2) collected: its bytes (not
 * NUL-terminated) and their number in *len, *truncated when more than
 * capture_max came. Once the exit is reported (on_exit, handlers, after
 * evm_proc_wait); NULL before, and for a slot not captured. Valid while the
 * proc is. Everything the child wrote before it exited is in it; a
 * grandchild still holding the pipe is not waited for.
 */
EVM_API const char *evm_proc_output(const struct evm_proc *proc, int slot, size_t *len,
				    bool *truncated);

struct evm_run_result {
	struct evm_exit exit;
	char *out, *err; /* NUL-terminated (may hold NULs), or NULL when not captured */
	size_t out_len, err_len;
	bool out_truncated, err_truncated;
};

/*
 * For simple callers (Go's cmd.Output/CombinedOutput, Python's
 * subprocess.run): run one command on a private loop and wait for it.
 * stdout and stderr left at EVM_STDIO_INHERIT are captured (capture_max
 * each); on_exit, handler and EVM_SPAWN_NOWAIT are ignored; EVM_STDIO_PIPE
 * is -EINVAL (its end would be nobody's). Returns 0 with the exit record
 * and the output in *res (evm_run_result_free it), or the spawn's -errno
 * (opts->error says the stage). Any thread; blocks.
 */
EVM_API int evm_run(const struct evm_spawn_opts *opts, struct evm_run_result *res);
EVM_API void evm_run_result_free(struct evm_run_result *res);

/* ------------------------------------------------------------- processes */

EVM_API pid_t evm_proc_pid(const struct evm_proc *proc);
EVM_API void *evm_proc_data(const struct evm_proc *proc);
/*
 * The handler name given at spawn, or NULL. Loop thread; valid until the end
 * of the iteration that reported the exit.
 */
EVM_API const char *evm_proc_handler(const struct evm_proc *proc);

/* True once the exit has been observed (loop thread; any thread after evm_proc_wait). */
EVM_API bool evm_proc_exited(const struct evm_proc *proc);

/* The exit record, or NULL while running. Valid while the proc is. */
EVM_API const struct evm_exit *evm_proc_exit_record(const struct evm_proc *proc);

/*
 * Our end of a EVM_STDIO_PIPE for stdio slot 0, 1 or 2 (O_CLOEXEC|O_NONBLOCK),
 * or -EBADF. Ownership passes to the caller on the first call, which must
 * close it; later calls return -EBADF.
 */
EVM_API int evm_proc_stdio_fd(struct evm_proc *proc, int slot);

/*
 * Send sig (0 only checks) with pidfd_send_signal: it can never reach another
 * process that reused the pid. -ESRCH once the process has been reaped. Any
 * thread (a worker may kill the child it asked for): the loop thread does
 * not reap it meanwhile.
 */
EVM_API int evm_proc_signal(struct evm_proc *proc, int sig);

/*
 * Send sig to the process group the process leads (spawned with SETSID or
 * SETPGID 0). -ESRCH when the group is gone, -EPERM when the process does
 * not lead a group of its own. Any thread.
 */
EVM_API int evm_proc_signal_group(struct evm_proc *proc, int sig);

/* References. Any thread. evm_proc_ref returns proc. */
EVM_API struct evm_proc *evm_proc_ref(struct evm_proc *proc);
EVM_API void evm_proc_unref(struct evm_proc *proc);

/*
 * Block until the process has exited and copy its record into *out
 * (optional). timeout_ms -1 waits forever. For threads other than the one
 * running the loop: the exit is reported by that thread. -EDEADLK, whatever
 * the timeout, when nobody could report the exit: from a callback of the
 * loop, on the loop thread while the loop is not running, or on the
 * process's only thread (the creator before any thread ran the loop, or
 * once the thread that ran it has exited).
 * Needs a reference held by the caller; -ETIMEDOUT on timeout. The loop may be freed meanwhile (evm_loop_free kills and reaps
 * every child, so the wait returns with that exit).
 */
EVM_API int evm_proc_wait(struct evm_proc *proc, struct evm_exit *out, int timeout_ms);

/*
 * fork+exec+waitpid through the loop: spawn, wait for the exit, fill *out.
 * Any thread but the loop's; the loop thread must be running the loop.
 * -EDEADLK where evm_proc_wait would return it (nothing is spawned). A
 * failure before the exec is returned as -errno (opts->error: the stage),
 * with EVM_SPAWN_NOWAIT too.
 */
EVM_API int evm_spawn_wait(struct evm_loop *loop, const struct evm_spawn_opts *opts,
			   struct evm_exit *out);

/* ------------------------------------------------------------- adoption */

/*
 * Take over a process the loop did not spawn: a survivor of a supervisor
 * that crashed, or one's own child across an exec of oneself (a re-exec
 * keeps the pid, so children stay children). Its exit is watched through a
 * pidfd and reported like a spawned child's, with exit->adopted set: with
 * its status when this process is its parent, else (its parent reaps it)
 * with status_unknown. Signals go through the pidfd, so a reused pid is
 * never hit.
 */
enum {
	EVM_ADOPT_PIDFD = 1u << 0,	/* pidfd is a pidfd of pid: taken over on success */
	EVM_ADOPT_START_TIME = 1u << 1, /* refuse it (-ESRCH) unless it started at start_time */
	/*
	 * With both above: the pidfd is known to be pid's, and start_time its
	 * start, because the caller opened it itself (its own, kept open
	 * across its exec) and read the start then: nothing is checked or
	 * read from /proc (a re-exec adopting 10,000 children skips 20,000
	 * file reads). Wrong values are the caller's bug: the process is
	 * still watched and signalled through the pidfd, never by pid.
	 */
	EVM_ADOPT_KEPT = 1u << 2,
	/*
	 * evm_service_adopt only (evm_proc_adopt: -EINVAL): the process is
	 * being stopped already (its stop signal was sent by the supervisor
	 * that left it): the service takes it in STOPPING, with "adopted pid
	 * N, being stopped", sends no stop signal again and SIGKILLs it at
	 * stop_timeout_ms from now, as a stop by the user (no restart after).
	 */
	EVM_ADOPT_STOPPING = 1u << 3,
	/*
	 * evm_service_adopt only (evm_proc_adopt: -EINVAL): the process was
	 * not ready yet (STARTING when its supervisor left it): the service
	 * takes it in STARTING, with "adopted pid N, not ready yet", and waits
	 * for it as for a run it spawned, counted from the process's start:
	 * EVM_READY_DECLARED until evm_service_ready (ready_timeout_ms from
	 * then), else until start_ms from then (ready at once if that is
	 * past). Its exit before that is a failed start.
	 */
	EVM_ADOPT_STARTING = 1u << 4,
	/*
	 * With EVM_ADOPT_STARTING or EVM_ADOPT_STOPPING (evm_service_adopt
	 * only): deadline_ms is what was left of the earlier supervisor's
	 * deadline (evm_service_deadline), kept instead of counted anew: the
	 * ready timeout (as extended) of EVM_READY_DECLARED, or the SIGKILL.
	 * (start_ms ends start_ms after the process's start either way.)
	 * Without one of those, or EVM_ADOPT_FAILING: -EINVAL.
	 */
	EVM_ADOPT_DEADLINE = 1u << 5,
	/*
	 * evm_service_adopt only: the process was being stopped for a failure
	 * (a missed watchdog, a ready timeout, a trigger: its stop signal was
	 * sent): it stays RUNNING (STARTING with EVM_ADOPT_STARTING), with
	 * "adopted pid N, being stopped for a failure", no stop signal again,
	 * SIGKILL at stop_timeout_ms (or deadline_ms), and its exit is a
	 * failure for the policy. With EVM_ADOPT_STOPPING: -EINVAL.
	 */
	EVM_ADOPT_FAILING = 1u << 6,
};

struct evm_adopt_opts {
	pid_t pid;	     /* required */
	unsigned flags;	     /* EVM_ADOPT_* */
	int pidfd;	     /* EVM_ADOPT_PIDFD (e.g. kept open across exec); else pidfd_open */
	uint64_t start_time; /* EVM_ADOPT_START_TIME: as evm_proc_start_time gave it */
	evm_exit_cb on_exit; /* optional, as in evm_spawn_opts */
	void *data;
	const char *handler; /* copied */
	/*
	 * EVM_ADOPT_DEADLINE: ms from the call (not from the end of the
	 * adoption's checks, which take time of their own). Added after 1.0:
	 * read only with that flag, so a caller built against an older header
	 * (a shorter struct) is never read past its end.
	 */
	uint64_t deadline_ms;
};

/*
 * Adopt opts->pid. The identity check is race-free (the pidfd is opened
 * before /proc/PID/stat is read, and the process is seen alive through it
 * after). -ESRCH: no such process, or another one (start time differs, or a
 * given pidfd's process is gone); -EEXIST: the loop already tracks that pid;
 * -EINVAL: a given pidfd names another pid, or pid is the caller, one of
 * its ancestors (its parent, the shell or runtime above it) or pid 1
 * (evm_loop_free would kill it). On failure a given pidfd stays
 * the caller's. *out (optional) gets a reference, as from evm_spawn. A
 * process that leads its own process group can be signalled as a group.
 * Loop thread.
 */
EVM_API int evm_proc_adopt(struct evm_loop *loop, const struct evm_adopt_opts *opts,
			   struct evm_proc **out);

/*
 * The start time of process pid: field 22 of /proc/PID/stat (clock ticks
 * since boot). With the pid it names one process for as long as the
 * machine runs. -ESRCH when there is no such process. Any thread.
 */
EVM_API int evm_proc_start_time(pid_t pid, uint64_t *out);

/*
 * evm_proc_start_time of proc's process, read once and kept: the library
 * may know it already (a service's main process: from the clock around its
 * spawn, or read; an adopted process), and asking again reads nothing.
 * 0; -ESRCH once the process was reaped before it was read (its pid may be
 * another's), -ECHILD in a forked copy of the program (unless read before
 * the fork). With EVM_ADOPT_KEPT it is the start_time the caller gave.
 * Loop thread.
 */
EVM_API int evm_proc_start_time_of(struct evm_proc *proc, uint64_t *out);

/*
 * Signal a process tree found in /proc, for when there is no cgroup: with
 * sid > 0 every process of session sid (a service that leads its own
 * session: the main process's pid) and every descendant of those by parent
 * pid; with sid 0 every descendant of the caller (a subreaper's re-parented
 * orphans included). Never the caller. With SIGKILL the search repeats
 * until a pass finds nobody new, so a fork bomb cannot outrun it (a killed
 * process cannot fork). Each process is pinned with a pidfd and its start
 * time checked before the signal: a reused pid is never hit. Cannot find a
 * process that called setsid and whose parent was gone before the search
 * (nothing links it to the session any more). Zombies are skipped (over
 * already), so sig 0 counts the tree's live processes. Returns how many were
 * signalled, or -errno (the first error when none was). Any thread.
 */
EVM_API int evm_tree_signal(pid_t sid, int sig);

/* True for a process taken over with evm_proc_adopt. */
EVM_API bool evm_proc_adopted(const struct evm_proc *proc);

/*
 * The pidfd of the process (borrowed: the loop closes it once the exit is
 * reported), or -EBADF (exited, or none could be opened). A child the loop
 * watches through SIGCHLD (reaper mode, or out of descriptors) gets one on
 * the first call. E.g. to keep it across an exec (clear FD_CLOEXEC just
 * before) and adopt with it after. Any thread.
 */
EVM_API int evm_proc_pidfd(const struct evm_proc *proc);

/*
 * Before exec'ing oneself in place (a re-exec that keeps its children: they
 * keep their pids and stay ours, to adopt with evm_proc_adopt after): stops
 * the spawn helper, which would otherwise outlive the exec as a stray
 * child. Nothing else changes; if the exec fails the loop carries on (the
 * helper starts again when needed). Keep the pidfds you want across the
 * exec yourself (clear FD_CLOEXEC); every other fd of the loop is
 * close-on-exec. Loop thread. 0 or -EINVAL.
 */
EVM_API int evm_loop_prepare_exec(struct evm_loop *loop);

/* ------------------------------------------------------- named handlers */

/*
 * Route exits of processes spawned with opts.handler to cb, like an HTTP
 * router. A pattern is an exact name ("db"), or a prefix ending in '/'
 * ("jobs/" matches "jobs/backup"; the longest pattern wins), or "" for
 * every name without a better match. Registering a pattern again replaces
 * its handler; cb NULL removes it. Routing happens at exit time. The
 * pattern is copied.
 * An exit whose name no pattern matches goes to no handler; the first one of
 * each name emits an EVM_EV_WARNING (error -ENOENT, name, pid, proc).
 */
EVM_API int evm_handle(struct evm_loop *loop, const char *pattern, evm_exit_cb cb, void *data);

/* --------------------------------------------------------------- events */

enum evm_event_type {
	/* a process was started; a service's once the service is in its new state
	 * (after its EVM_EV_SERVICE), name the service's */
	EVM_EV_SPAWN = 1u << 0,
	EVM_EV_EXIT = 1u << 1,	  /* a process we spawned exited */
	EVM_EV_ORPHAN = 1u << 2,  /* reaper mode: a process we did not spawn was reaped */
	EVM_EV_WARNING = 1u << 3, /* something degraded; message and error say what */
	EVM_EV_SERVICE = 1u << 4, /* a service changed state */
	EVM_EV_ALL = 0x1f,
};

enum evm_state {
	EVM_STATE_STOPPED = 0, /* not running, not asked to run */
	EVM_STATE_STARTING,    /* running, not ready yet (start_ms not up, or not declared) */
	EVM_STATE_RUNNING,     /* running and ready */
	EVM_STATE_BACKOFF,     /* waiting before the next start attempt */
	EVM_STATE_STOPPING,    /* stop signal sent, waiting for the exit */
	EVM_STATE_EXITED,      /* exited and the policy says not to restart */
	EVM_STATE_FATAL,       /* gave up: too many failed starts or retries */
	EVM_STATE_RELOADING,   /* running, reloading its configuration (RELOADING=1) */
};

/* "stopped", "starting", ... Static string; "unknown" out of range. */
EVM_API const char *evm_state_name(enum evm_state state);

struct evm_event {
	enum evm_event_type type;
	struct timespec time;	     /* CLOCK_REALTIME */
	pid_t pid;		     /* 0 when no process is involved */
	struct evm_proc *proc;	     /* SPAWN, EXIT, and SERVICE when it has one */
	const char *name;	     /* handler or service name, or NULL */
	const struct evm_exit *exit; /* EXIT, ORPHAN, SERVICE after an exit; else NULL */
	int error;		     /* WARNING / SERVICE failures: negative errno, else 0 */
	const char *message;	     /* WARNING / SERVICE: human-readable detail, else NULL */
	/* EVM_EV_SERVICE only */
	struct evm_service *service;
	enum evm_state state;	     /* the new state */
	enum evm_state old_state;
	unsigned restarts;	     /* restarts so far */
	uint64_t delay_ms;	     /* BACKOFF: the delay before the next start */
	enum evm_spawn_stage stage;  /* a spawn failure's stage, else 0 */
	bool removed;		     /* the service's last event: it is freed after this */
};
/*
 * An exit is carried by exactly one EVM_EV_SERVICE event: the transition it
 * caused (RUNNING -> BACKOFF, STOPPING -> STOPPED, ...). Other service events
 * have exit == NULL.
 */

typedef void (*evm_event_cb)(struct evm_loop *loop, const struct evm_event *ev, void *data);

/*
 * Receive every event whose type is in mask. The loop owns the
 * subscription; *out (optional) is for evm_unsubscribe.
 */
EVM_API int evm_subscribe(struct evm_loop *loop, unsigned mask, evm_event_cb cb, void *data,
			  struct evm_sub **out);
EVM_API void evm_unsubscribe(struct evm_sub *sub);

/* ------------------------------------------------------------ services */

enum evm_restart {
	EVM_RESTART_ON_FAILURE = 0, /* restart on an exit code not in success_codes, or a signal */
	EVM_RESTART_ALWAYS,	    /* restart after any exit */
	EVM_RESTART_NEVER,	    /* never restart */
	EVM_RESTART_UNLESS_STOPPED, /* like always; the difference is for whoever starts
				       services (e.g. on reload): after an explicit stop,
				       evm_service_info's stopped_by_user says to leave it down */
};

/* When a service counts as ready (STARTING -> RUNNING). */
enum evm_ready {
	EVM_READY_STARTED = 0, /* once up for start_ms (supervisord's startsecs); an exit the
				  loop sees start_ms or more after the spawn is a run's, even
				  when the loop was too late to see it RUNNING first */
	EVM_READY_DECLARED,    /* once evm_service_ready says so (sd_notify READY=1, s6's
				  notification fd, a check that passed: the caller's to watch) */
};

/* Which evm_service_opts fields are set even when zero. */
enum {
	EVM_SVC_START_MS = 1u << 0,
	EVM_SVC_START_RETRIES = 1u << 1,
	EVM_SVC_BACKOFF_INITIAL = 1u << 2,
	EVM_SVC_BACKOFF_MAX = 1u << 3,
	EVM_SVC_STABLE_MS = 1u << 4,
	EVM_SVC_STOP_TIMEOUT = 1u << 5,
	EVM_SVC_MAX_RETRIES = 1u << 6,
};

/*
 * What a stop (stop_signal, then SIGKILL at stop_timeout_ms) reaches:
 *   PROCESS  the main process only; the service is STOPPED when it exits,
 *            whatever it started lives on.
 *   GROUP    the main process's process group (it gets one: SETPGID 0
 *            unless the spawn asks for SETSID); when the main process
 *            exits, what is left of the group gets SIGKILL. Misses what
 *            left the group (setsid, setpgid: a double-forking daemon).
 *   TREE     with evm_service_opts.cgroup: every process of the cgroup,
 *            cgroup.kill at stop_timeout, and STOPPED only once it is empty
 *            (nothing escapes: setsid, double forks, fork bombs). Without a
 *            cgroup, the session the main process leads (SETSID is added
 *            unless the spawn sets SETSID or SETPGID): evm_tree_signal on
 *            it at the stop, and SIGKILL when the main process exits and at
 *            stop_timeout. Misses what called setsid and lost its parent
 *            first; a loop in reaper mode at least reaps it.
 * evm_service_signal reaches the process group with GROUP, else the main
 * process.
 */
enum evm_kill_mode {
	EVM_KILL_AUTO = 0,
	EVM_KILL_PROCESS,
	EVM_KILL_GROUP,
	EVM_KILL_TREE,
};

/*
 * What the service's life is (systemd's Type=forking, with or without
 * PIDFile=):
 *   MAIN  its main process: its exit is the service's exit.
 *   TREE  with a watched cgroup and kill_mode TREE: a successful exit of
 *         the main process while the cgroup holds processes (a daemon that
 *         forked and whose first process returned) is held: the service
 *         stays STARTING/RUNNING, with no main process, until the cgroup
 *         is empty, and the held exit is then decided by the policy (a
 *         restart starts a fresh tree). A failed exit is decided at once
 *         (a restart still waits for an empty cgroup). Without a watched
 *         cgroup nothing tells when the tree ends: as MAIN, but for the
 *         pidfile below.
 * With a pidfile (either mode), a successful exit of the first main
 * process makes the service read the file (retried every 20 ms for up to
 * 5 s while its tree lives) and take its pid as the main process
 * (evm_service_set_main: only a process of its cgroup, or without one of
 * its session); that process's exit is then the service's. A pid not the
 * service's is refused and said in the event's message.
 */
enum evm_track {
	EVM_TRACK_AUTO = 0, /* MAIN */
	EVM_TRACK_MAIN,
	EVM_TRACK_TREE,
};

struct evm_service_opts {
	const char *name; /* required, copied */
	/*
	 * How to start it. on_exit, data, handler and error are ignored.
	 * Ownership: evm_service_new copies every string and array spawn
	 * points to (argv, envp, env_extra, file, cwd, groups, rlimits,
	 * extra_fds, uid_map, gid_map, setns_fds, hostname): free yours when it
	 * returns. The fds are not copied: stdio[].fd, extra_fds[].fd,
	 * setns_fds[] and cgroup_fd are borrowed at each start, so they must
	 * stay open, on the same files, while the service exists (the cgroup
	 * field below is not: the service holds a reference of its own).
	 */
	struct evm_spawn_opts spawn;
	enum evm_restart restart;
	unsigned set;		  /* EVM_SVC_*: fields below that are set even when 0 */
	unsigned max_retries;	  /* give up (FATAL) after this many restarts in a row that
				     followed a failure (any restart policy); 0 = no limit, the
				     default, also with EVM_SVC_MAX_RETRIES (which says only that
				     0 was asked for: no restart at all is restart NEVER) */
	const int *success_codes; /* exit codes that count as success; default {0} */
	size_t nsuccess_codes;
	uint64_t start_ms;	  /* up this long = started (supervisord startsecs); default 1000 */
	unsigned start_retries;	  /* retries of a failed start: FATAL at the next; default 3 */
	/*
	 * Restart delays: the first restart after a stable run waits
	 * backoff_initial_ms (may be 0); each further restart in a row doubles
	 * the delay, from at least 10 ms, up to backoff_max_ms (and never below
	 * 10 ms, whatever backoff_max_ms says). A run is stable when it was up
	 * stable_ms, and at least 10 ms. So a crash loop can never become a
	 * fork bomb.
	 */
	uint64_t backoff_initial_ms; /* default 100 */
	uint64_t backoff_max_ms;     /* default 30000 */
	unsigned backoff_jitter;     /* percent of the delay added at random, 0-100; default 0 */
	uint64_t stable_ms;	  /* up this long resets the backoff; default 10000 */
	int stop_signal;	  /* default SIGTERM */
	uint64_t stop_timeout_ms; /* then SIGKILL; default 10000 */
	/*
	 * Readiness. With EVM_READY_DECLARED start_ms is not used: the service
	 * is STARTING until evm_service_ready; past ready_timeout_ms (0: no
	 * limit) it is stopped (stop_signal, SIGKILL at stop_timeout_ms) and its
	 * exit is a failed start, retried by start_retries. watchdog_ms (0: none,
	 * any ready mode): once RUNNING, a service that lets that long pass
	 * without evm_service_watchdog is stopped the same way and its exit is a
	 * failure for the restart policy (systemd's WatchdogSec).
	 */
	enum evm_ready ready;
	uint64_t ready_timeout_ms;
	uint64_t watchdog_ms;
	bool kill_group;	  /* signal the whole process group (implies SETPGID 0
				     unless the spawn options ask for SETSID); when the
				     main process exits, what is left of its group gets
				     SIGKILL: kill_mode EVM_KILL_GROUP, which wins */
	/* Optional per-service event callback (EVM_EV_SERVICE events of this service). */
	evm_event_cb on_event;
	void *data;
	/*
	 * Optional: called before each spawn of the service (start, restart,
	 * retry) with this attempt's copy of the spawn options, which it may
	 * change (what it points them to must stay valid until it returns
	 * again or the service is freed). A -errno fails the attempt like a
	 * failed spawn (stage EVM_STAGE_SETUP), which the policy retries; msg
	 * (msglen bytes) then says why in the event's message. It must not
	 * start, stop or remove the service.
	 */
	int (*before_spawn)(struct evm_service *svc, struct evm_spawn_opts *spawn, char *msg,
			    size_t msglen, void *data);
	void *before_spawn_data;
	/*
	 * Optional: called when the main process has exited (reaped, its
	 * record in exit), before that exit is the service's: the last chance
	 * to hear what the process said before it exited and the loop has not
	 * read yet (a datagram of the sd_notify protocol saying MAINPID= of
	 * the child it forked, queued before the exit was seen). If it calls
	 * evm_service_set_main (which takes a process of the service's tree
	 * even now), the exit is not the service's: it goes on under its new
	 * main process. It may call any evm_service_* function on any
	 * service, as an event callback may.
	 */
	void (*before_exit)(struct evm_service *svc, const struct evm_exit *exit, void *data);
	void *before_exit_data;
	/*
	 * Optional: the service's own cgroup v2. The service keeps a reference
	 * of its own until it is gone (a removal still stopping), so the
	 * caller may free its handle at any time. Its processes start in it (EVM_SPAWN_CGROUP), a stop
	 * sends stop_signal to every process in it and cgroup.kill at
	 * stop_timeout, and the service is STOPPED only once the cgroup is empty
	 * (nothing it started is left: background children, setsid, double
	 * forks). A stop of an EXITED, FATAL or BACKOFF service whose cgroup
	 * still holds processes goes through STOPPING too. When no fd is left
	 * to watch it (EMFILE), the processes still start in it but the service
	 * is stopped by its process, as without a cgroup.
	 */
	struct evm_cgroup *cgroup;
	/*
	 * What a stop ends (evm_kill_mode). EVM_KILL_AUTO (0): kill_group ?
	 * GROUP : cgroup ? TREE : PROCESS, as before this field existed.
	 */
	enum evm_kill_mode kill_mode;
	/* What ends the service: its main process or its tree (evm_track); default MAIN */
	enum evm_track track;
	/* Optional (copied): the file a forking daemon writes its pid into (evm_track) */
	const char *pidfile;
	/*
	 * Optional, with cgroup (read during the call only): what an earlier
	 * image knew of that cgroup (its evm_service_cgroup_export, across an
	 * exec of ourselves, evm_cgroup_kept). Whether the directory exists is
	 * taken from it (unless the handle looked itself); the service takes
	 * its watch back (a watch of the fd given to evm_cgroup_watch_inherit,
	 * before the loop's first turn: checked against that fd's own list
	 * and a stat of the cgroup's cgroup.events; one the fd does not have,
	 * one of another file or one taken back already is refused, and the
	 * cgroup watched anew, as without an inherited fd) and, when it
	 * adopts its process
	 * (evm_service_adopt), its OOM baseline (OOM) or that it has none
	 * (NO_OOM; with neither, memory.events is read at the adoption). A
	 * failed evm_service_new keeps nothing of it. -EINVAL for unknown
	 * flags, WATCH or POPULATED without MADE, WATCH with wd < 0, OOM with
	 * NO_OOM, or without cgroup.
	 */
	const struct evm_cgroup_kept *cgroup_kept;
};

/*
 * Create a service in state STOPPED. The loop owns it until evm_service_remove
 * has finished. Fails with -EINVAL for bad options, -EEXIST for a name in use.
 */
EVM_API int evm_service_new(struct evm_loop *loop, const struct evm_service_opts *opts,
			    struct evm_service **out);

/*
 * Change the policy of a service in place, whatever its state: restart,
 * set, max_retries, success_codes, start_ms, start_retries, the backoff
 * fields, stable_ms, stop_signal, stop_timeout_ms, ready, ready_timeout_ms
 * and watchdog_ms of opts (the rest is ignored: what it runs, kill_group,
 * on_event and data stay). A timer already running (start grace, ready
 * timeout, watchdog, backoff delay, stop escalation) keeps its
 * deadline; the next one uses the new values. But a service in BACKOFF
 * after an exit that the new policy would not restart (restart NEVER, or
 * ON_FAILURE after an exit its new success_codes call a success) is not
 * restarted: at the loop's next turn (never within this call) it is EXITED,
 * an event, unless it changed state meanwhile; FATAL ("gave up") the same
 * way when its failures in a row are past a new, lower max_retries. A BACKOFF after a failed
 * spawn, or resumed (evm_service_resume), keeps its restart. -EINVAL for
 * bad options, -ENOMEM (nothing changed) when that check cannot be queued.
 */
EVM_API int evm_service_set_policy(struct evm_service *svc, const struct evm_service_opts *opts);

/* Find a service by name, or NULL. */
EVM_API struct evm_service *evm_service_find(struct evm_loop *loop, const char *name);

/*
 * Start (from STOPPED, EXITED, FATAL, or BACKOFF at once; a no-op when already
 * starting or running; after the stop when STOPPING). Resets the restart
 * count, the failure counters and the backoff. A spawn failure does not fail
 * this call: it is an event, and the policy retries with backoff.
 */
EVM_API int evm_service_start(struct evm_service *svc);

/*
 * Take over a running process as the service's (a survivor of a supervisor
 * that died, or a child kept across an exec of ourselves; see
 * evm_proc_adopt, whose on_exit, data and handler are ignored here): from
 * STOPPED straight to RUNNING, with message "adopted pid N" (to STOPPING
 * with EVM_ADOPT_STOPPING: one that was being stopped; to STARTING with
 * EVM_ADOPT_STARTING: one not ready yet; -EINVAL with both). Its exit then
 * goes through the restart policy like any other (with status_unknown when
 * we are not its parent). -EBUSY unless STOPPED; evm_proc_adopt's errors
 * (-ESRCH: gone, or another process now has the pid), the service staying
 * STOPPED.
 */
EVM_API int evm_service_adopt(struct evm_service *svc, const struct evm_adopt_opts *opts);

/*
 * A service whose main process exited while its tree lives on (track TREE
 * with a watched cgroup, kill_mode TREE: RUNNING with no main process until
 * the cgroup is empty): true while it is so and RUNNING or RELOADING (not
 * STARTING, nor being stopped for a failure). What evm_service_adopt_tree
 * takes over (as RUNNING) in the next supervisor.
 */
EVM_API bool evm_service_runs_on_tree(const struct evm_service *svc);

/*
 * Take over such a service (evm_service_runs_on_tree in the supervisor that
 * died or exec'd itself): from STOPPED straight to RUNNING with no process,
 * main_exit (copied: its main process's exit, as that supervisor saw it) the
 * service's last exit, decided by the restart policy once the cgroup is
 * empty; a stop ends the cgroup's processes. -EBUSY unless STOPPED; -EINVAL
 * (NULL, or not track TREE, kill_mode TREE with a cgroup); -ENOENT: its
 * cgroup is not watched (no fd for cgroup.events); -ESRCH: the cgroup is
 * empty (the tree ended meanwhile), the service staying STOPPED.
 */
EVM_API int evm_service_adopt_tree(struct evm_service *svc, const struct evm_exit *main_exit);

/*
 * To be started once its stop ends (evm_service_restart, a start asked
 * during the stop, or a start that stops what an earlier run left in its
 * cgroup first): STOPPING, or STOPPED until the start's turn comes. What a
 * record of it for the next supervisor must say, or the start is lost.
 */
EVM_API bool evm_service_start_pending(const struct evm_service *svc);

/*
 * What a service carries over from an earlier supervisor of it (one's own
 * image before a re-exec, or one that crashed): its counters, and where its
 * policy had got to, so that a re-exec neither restarts a service in
 * backoff at once nor gives a crash-looping one a fresh count.
 */
struct evm_service_resume {
	enum evm_state state;	/* STOPPED (counters only), BACKOFF, EXITED or FATAL */
	unsigned restarts, failures, start_failures, backoff_step; /* as evm_service_info's */
	uint64_t delay_ms;	/* BACKOFF: ms until its next start (0: in the next iteration) */
	const char *message;	/* the state event's message, or NULL */
};

/*
 * Resume a service just created (STOPPED, never started): set its counters
 * and enter state (an event, old state STOPPED); from BACKOFF it starts
 * after delay_ms as after any backoff, EXITED and FATAL stay until started.
 * To carry on with a running process: resume with STOPPED, then
 * evm_service_adopt (which keeps the counters). -EINVAL (another state),
 * -EBUSY unless STOPPED and never started, -ENOMEM.
 */
EVM_API int evm_service_resume(struct evm_service *svc, const struct evm_service_resume *r);

/*
 * What a service carried over shows of its past, as an earlier supervisor
 * recorded it: evm_service_info's last_exit (when has_exit), last_error
 * (when its stage is not NONE) and since (when not zero: a CLOCK_REALTIME
 * time in the past). Call it after evm_service_resume and
 * evm_service_adopt, which set since to now. -EINVAL (bad values), -EBUSY
 * once the service has an exit of its own.
 */
struct evm_service_history {
	bool has_exit;
	struct evm_exit last_exit;
	struct evm_spawn_error last_error;
	struct timespec since;
};
EVM_API int evm_service_resume_history(struct evm_service *svc, const struct evm_service_history *h);

/*
 * Stop: stop_signal, then SIGKILL after stop_timeout_ms. Cancels a pending
 * restart. The service ends in STOPPED. A no-op when not running.
 */
EVM_API int evm_service_stop(struct evm_service *svc);

/*
 * Stop (if running) then start again. Like docker restart: an explicit start
 * or restart resets the restart count and the backoff; only restarts made by
 * the policy count. The start after the exit goes with the loop's other
 * restarts, a bounded number per iteration: the service may show STOPPED
 * for an iteration in between (a stop then cancels the start).
 */
EVM_API int evm_service_restart(struct evm_service *svc);

/*
 * The service is ready: STARTING -> RUNNING (whatever its ready mode; a
 * ready=started service may say so before start_ms is up). 0 also when it
 * is RUNNING already; -ESRCH when it has no process or is stopping.
 */
EVM_API int evm_service_ready(struct evm_service *svc);

/*
 * The service is alive (sd_notify WATCHDOG=1): the watchdog deadline is
 * watchdog_ms from now. Cheap (no timer moved); a no-op without watchdog_ms.
 */
EVM_API int evm_service_watchdog(struct evm_service *svc);

/*
 * The service says it failed (sd_notify WATCHDOG=trigger): stopped at once
 * as for a missed watchdog deadline (stop_signal, SIGKILL at
 * stop_timeout_ms), with or without watchdog_ms; its exit is a failure
 * for the restart policy (a failed start when it was STARTING). -ESRCH
 * unless STARTING or RUNNING. Loop thread.
 */
EVM_API int evm_service_watchdog_trigger(struct evm_service *svc);

/*
 * The same for a failure the caller found (a health check, say): why
 * (copied, cut at 111 bytes; NULL: as evm_service_watchdog_trigger) is what
 * the stop's warning and the exit's event say. Loop thread.
 */
EVM_API int evm_service_fail(struct evm_service *svc, const char *why);

/*
 * A new watchdog period for this run (sd_notify WATCHDOG_USEC=): the
 * deadline is ms from now (0: no watchdog for the rest of the run); the
 * next start goes back to watchdog_ms. Works without watchdog_ms too. In
 * STARTING it applies once ready. -ESRCH unless STARTING or RUNNING and
 * not being stopped. Loop thread.
 */
EVM_API int evm_service_set_watchdog(struct evm_service *svc, uint64_t ms);

/*
 * The service reloads (sd_notify RELOADING=1, systemd's Type=notify-reload):
 * RUNNING -> RELOADING until evm_service_ready says it is done (-> RUNNING),
 * or timeout_ms (0: no limit) passes (-> RUNNING, the event's error
 * -ETIMEDOUT: the reload failed). The watchdog still applies; an exit is
 * an exit of a running service. 0 also when RELOADING already; -ESRCH
 * unless RUNNING or RELOADING. Loop thread.
 */
EVM_API int evm_service_reloading(struct evm_service *svc, uint64_t timeout_ms);

/*
 * Ask a RUNNING service to reload: sig (0: none) to its main process, then
 * RELOADING as evm_service_reloading, done at the first evm_service_ready
 * after the service's own evm_service_reloading (a READY=1 sent before it
 * is not this reload's). -ESRCH unless RUNNING, -EBUSY when RELOADING
 * already, or the signal's error (the state stays). Loop thread.
 */
EVM_API int evm_service_reload(struct evm_service *svc, int sig, uint64_t timeout_ms);

/*
 * More time (sd_notify EXTEND_TIMEOUT_USEC): a STARTING service's ready
 * timeout, a RELOADING one's reload timeout, or a STOPPING one's kill, is
 * at least ms from now. -ESRCH when no
 * such deadline runs.
 */
EVM_API int evm_service_extend_timeout(struct evm_service *svc, uint64_t ms);

/*
 * The time left (ms, 0 when due) until the deadline svc's state waits for,
 * and which: EVM_DEADLINE_READY in STARTING, the ready timeout
 * (EVM_READY_DECLARED with ready_timeout_ms, as extended) or the end of
 * start_ms (EVM_READY_STARTED), and in RELOADING the reload's timeout
 * (evm_service_reloading, as extended); EVM_DEADLINE_KILL in STOPPING, or
 * in STARTING or RUNNING when stopped for a failure, its SIGKILL. -ESRCH
 * when none runs. For a supervisor that hands its services over (a re-exec:
 * EVM_ADOPT_DEADLINE, and EVM_ADOPT_FAILING for a KILL outside STOPPING).
 * Loop thread.
 */
enum { EVM_DEADLINE_READY = 1, EVM_DEADLINE_KILL = 2 };
EVM_API int evm_service_deadline(const struct evm_service *svc, uint64_t *ms_left);

/* Send sig to the running process (its group with EVM_KILL_GROUP). -ESRCH when not running. */
EVM_API int evm_service_signal(struct evm_service *svc, int sig);

/*
 * Another process of the service is its main process from now on: its pid
 * is the service's, signals and stops go to it, and its exit is the
 * service's exit (with status_unknown when we are not its parent nor its
 * subreaper). For sd_notify's MAINPID= and for a pidfile (a daemon that
 * forked and whose first process exits): daemons should go through this
 * call, which checks the pid. Only a process of the service's own tree is
 * taken: with a cgroup, one of that cgroup or below it; without one, one of
 * the session the service leads (kill_mode tree), else of the session or
 * process group the main process leads (spawned with SETSID or SETPGID: this
 * holds in before_exit too, after the main's exit), else of the current main
 * process's session. The pid is pinned by a pidfd before it is checked, so
 * a reused pid is never taken. The old main process runs on as any other
 * process of the service. An EVM_EV_SERVICE event of the same state says
 * "main process is now pid N (was M)" (", which exited with code C" when
 * called from before_exit). 0 (also when pid is the main
 * process already); -ESRCH: not STARTING, RUNNING or RELOADING with a process, or no
 * such pid; -EPERM: pid is not the service's (or is the caller); -EEXIST:
 * the loop tracks pid already (another service's). Loop thread.
 */
EVM_API int evm_service_set_main(struct evm_service *svc, pid_t pid);

/*
 * Stop the service if needed and free it once it has stopped. Its name is
 * released at once: evm_service_find no longer finds it, foreach skips it,
 * and a new service may take the name while the old one is still stopping.
 * Its last event has removed = true; the handle is invalid after that event
 * (and at once if you do not run the loop again).
 */
EVM_API void evm_service_remove(struct evm_service *svc);

/*
 * The first half of evm_service_remove: its name is released at once (as
 * there) and its process runs on, unstopped, off the restart policy: an
 * exit is its end (its last event has removed = true; what its cgroup still
 * holds is stopped first, STOPPING meanwhile); no watchdog or ready timeout
 * stops it any more. evm_service_remove stops it
 * when the caller is ready to (a supervisor stopping what depended on it
 * first); evm_shutdown stops it as any other. The handle stays valid until
 * that removed event. 0 (also when it is being removed already); -ESRCH
 * when it has no process to run on (STOPPED, BACKOFF, EXITED, FATAL: remove
 * it); -EINVAL for NULL. Loop thread.
 */
EVM_API int evm_service_detach(struct evm_service *svc);

/* The data given in evm_service_opts.data. */
EVM_API void *evm_service_data(const struct evm_service *svc);

struct evm_service_info {
	const char *name;
	enum evm_state state;
	pid_t pid;		/* 0 when not running */
	unsigned restarts;	/* automatic restarts since the last explicit start */
	unsigned failures;	/* failures in a row (reset by a stable run) */
	unsigned start_failures; /* failed starts in a row (reset on reaching RUNNING) */
	enum evm_ready ready;	/* the ready mode (STARTING means not declared ready yet) */
	bool stopped_by_user;	/* the last stop was evm_service_stop, not the policy */
	struct timespec since;	/* CLOCK_REALTIME of the last state change */
	uint64_t uptime_ms;	/* time in STARTING/RUNNING, else 0 */
	bool has_exit;
	struct evm_exit last_exit;
	struct evm_spawn_error last_error; /* last spawn failure, stage 0 if none */
	uint64_t next_start_ms; /* BACKOFF: ms until the next start */
	unsigned backoff_step;	/* restarts the backoff has doubled for (evm_service_resume) */
};

/* Fill *info. Strings are valid while the service is. */
EVM_API void evm_service_info(const struct evm_service *svc, struct evm_service_info *info);

EVM_API enum evm_state evm_service_state(const struct evm_service *svc);
EVM_API const char *evm_service_name(const struct evm_service *svc);
EVM_API struct evm_proc *evm_service_proc(const struct evm_service *svc); /* borrowed, or NULL */

/* Call fn for every service, in creation order. */
EVM_API void evm_service_foreach(struct evm_loop *loop,
				 void (*fn)(struct evm_service *svc, void *data), void *data);

enum {
	EVM_SHUTDOWN_REVERSE = 1u << 0, /* stop services one by one, in reverse creation order */
};

/*
 * Stop every service (in parallel, or in reverse order) and every other
 * process the loop spawned (SIGTERM, then SIGKILL after 10 s), run the loop
 * until all of them have exited and been reported, then return 0. Nothing
 * started through the loop is left running.
 *
 * A top-level call, like evm_loop_run: from a callback it returns -EDEADLK
 * (call evm_loop_stop there, and evm_shutdown once evm_loop_run returned).
 */
EVM_API int evm_shutdown(struct evm_loop *loop, unsigned flags);

/* --------------------------------------------------------------- cgroups */

/*
 * cgroup v2 containment: a process tree placed in its own cgroup cannot
 * escape it (fork, setsid, double fork), can be listed, signalled and killed
 * as a whole, and tells when it is empty.
 *
 * A struct evm_cgroup names one directory of the cgroup2 hierarchy (the
 * mount is found in /proc/self/mountinfo: /sys/fs/cgroup, or
 * /sys/fs/cgroup/unified on a hybrid host) by its path: it holds no fd of
 * the directory unless evm_cgroup_fd is asked for one, so 10,000 handles
 * cost no fds (each call opens the directory for itself). The caller owns
 * it (evm_cgroup_free); freeing it never removes the cgroup. These functions
 * do not touch a loop and may be called from any thread, but not on the same
 * handle at once; only the watch functions need the loop thread.
 *
 * The kernel's rules apply: a cgroup with processes of its own cannot enable
 * controllers for children (the no-internal-process rule; the root is
 * exempt), so a supervisor moves itself into a leaf first, e.g.
 *   base = <own cgroup>/evmon.<instance>, self -> base/evmon.daemon,
 *   services -> base/<name>.service
 * (evm_cgroup_create, evm_cgroup_attach(leaf, 0), evm_cgroup_enable).
 * Do not spawn into a frozen cgroup: the spawn would block until it thaws.
 */
struct evm_cgroup;
struct evm_cgroup_watch;

/* Controllers, as bits. Others (cpuset, hugetlb, ...) are not tracked here. */
enum {
	EVM_CGROUP_CPU = 1u << 0,
	EVM_CGROUP_IO = 1u << 1,
	EVM_CGROUP_MEMORY = 1u << 2,
	EVM_CGROUP_PIDS = 1u << 3,
};

/* "cpu", "io", "memory", "pids" for one bit; "unknown" otherwise. Static string. */
EVM_API const char *evm_cgroup_controller_name(unsigned controller);

/*
 * Copy the cgroup2 mount point into buf. -ENOENT when cgroup2 is not
 * mounted (cgroup v1 only), -ERANGE when buf is too small.
 */
EVM_API int evm_cgroup_mount(char *buf, size_t size);

/*
 * Open the cgroup of the calling process (the "0::" line of
 * /proc/self/cgroup). -ENOENT when there is no cgroup2 mount or our cgroup
 * is not visible under it. On success the caller owns *out.
 */
EVM_API int evm_cgroup_open_self(struct evm_cgroup **out);

/* Open the cgroup at an absolute path of a cgroup2 mount (-ENOTDIR, -EINVAL
 * when it is not one). The caller owns *out. */
EVM_API int evm_cgroup_open(const char *path, struct evm_cgroup **out);

/*
 * Create the child cgroup name of parent, or open it when it exists:
 * returns 0 when created, 1 when it existed (it may still hold processes of
 * an earlier run). name is one path component, not "cgroup.*". The caller
 * owns *out.
 */
EVM_API int evm_cgroup_create(struct evm_cgroup *parent, const char *name,
			      struct evm_cgroup **out);

/*
 * A handle for the child cgroup name of parent, made (mkdir) only when
 * something needs its directory: evm_cgroup_fd, evm_cgroup_open_dir (a
 * service's spawn), evm_cgroup_set_limit, evm_cgroup_attach. Until then it
 * reads as an empty cgroup, at no syscall (the others see -ENOENT, as for a
 * removed one). For a supervisor with thousands of services: a mkdir costs
 * 50-250 us, paid at each one's first start instead of all at once. One that
 * exists already is used as it is. 0 or -errno; the caller owns *out.
 */
EVM_API int evm_cgroup_create_later(struct evm_cgroup *parent, const char *name,
				    struct evm_cgroup **out);

/* Close the handle (the cgroup stays). NULL is a no-op. A service given it
 * (evm_service_opts.cgroup) holds its own reference: the handle is closed
 * when the last of them is gone. */
EVM_API void evm_cgroup_free(struct evm_cgroup *cg);

/* The cgroup's filesystem path. Valid while the handle is. */
EVM_API const char *evm_cgroup_path(const struct evm_cgroup *cg);

/*
 * The O_PATH directory fd, for evm_spawn_opts.cgroup_fd: opened at the
 * first call and held by the handle from then on (borrowed: the handle owns
 * it). -errno when the directory cannot be opened (gone: -ENOENT).
 */
EVM_API int evm_cgroup_fd(const struct evm_cgroup *cg);

/*
 * A new O_PATH fd of the cgroup's directory, the caller's to close: for one
 * spawn into it (evm_spawn_opts.cgroup_fd, needed only until evm_spawn
 * returns) without the handle holding an fd. A service opens one this way
 * for each of its spawns. -errno as evm_cgroup_fd.
 */
EVM_API int evm_cgroup_open_dir(const struct evm_cgroup *cg);

/*
 * 0 when this process may create child cgroups in cg and move processes
 * into them (root on the host, systemd Delegate=yes, a container with its
 * own cgroup namespace), else -EACCES, -EROFS, ...
 */
EVM_API int evm_cgroup_writable(const struct evm_cgroup *cg);

/* The controllers cg can use (its cgroup.controllers) as EVM_CGROUP_* bits. */
EVM_API int evm_cgroup_controllers(const struct evm_cgroup *cg, unsigned *out);

/*
 * Enable controllers for cg's children (cgroup.subtree_control), those of
 * the wanted ones that cg has. *enabled (optional) receives what is enabled
 * afterwards. Returns 0 even when some wanted controller is not available
 * (compare *enabled); -EBUSY when cg holds processes (move them to a leaf).
 */
EVM_API int evm_cgroup_enable(struct evm_cgroup *cg, unsigned controllers, unsigned *enabled);

/* Move process pid (0: the calling process, all its threads) into cg. */
EVM_API int evm_cgroup_attach(struct evm_cgroup *cg, pid_t pid);

/*
 * The processes in cg itself (cgroup.procs, not its descendants): up to cap
 * pids are stored in pids (may be NULL when cap is 0). Returns how many
 * there are, which may exceed cap, or -errno.
 */
EVM_API int evm_cgroup_procs(const struct evm_cgroup *cg, pid_t *pids, size_t cap);

/* 1 when cg or a descendant has a live process (zombies do not count), 0 if not, or -errno. */
EVM_API int evm_cgroup_populated(const struct evm_cgroup *cg);

/*
 * Send sig to every process in cg and its descendants. Each pid read from
 * cgroup.procs is opened as a pidfd and checked to be still in the cgroup
 * before the signal, so a reused pid is never hit. Returns the number of
 * processes signalled, or -errno when none could be (e.g. -EPERM). Processes
 * forked meanwhile may be missed: use evm_cgroup_kill to end a tree.
 */
EVM_API int evm_cgroup_signal(struct evm_cgroup *cg, int sig);

/*
 * SIGKILL every process in cg and its descendants, atomically with respect
 * to fork (cgroup.kill, Linux 5.14). Without cgroup.kill (or with
 * EVM_CGROUP_NO_KILL=1 in the environment) it signals the members again and
 * again until a pass finds no process it has not killed yet: a killed process
 * cannot fork, so this ends even for a fork bomb. Returns at once: the
 * processes may still be exiting (wait for populated 0). The caller must not
 * be in cg. After a cgroup.kill, Linux (6.18 at least) SIGKILLs at birth every
 * child cloned into cg with CLONE_INTO_CGROUP; evm_spawn notices (the child
 * never ran) and starts it again, the child moving itself in.
 */
EVM_API int evm_cgroup_kill(struct evm_cgroup *cg);

/*
 * The cgroup (v2) id of the process pidfd names: its cgroup directory's
 * inode number (stat(2) of the directory says the same). Also of a process
 * that exited and was reaped since, with the cgroup it died in (Linux 6.15:
 * e.g. the pidfd of a message's sender, SCM_PIDFD, to tell whose a
 * short-lived sender was). 0; -ENOSYS before Linux 6.13; -ESRCH when the
 * kernel keeps nothing of a reaped one. Any thread.
 */
EVM_API int evm_pidfd_cgroup_id(int pidfd, uint64_t *id);

/*
 * Remove cg and its descendant cgroups (rmdir, deepest first). They must
 * be empty: up to timeout_ms (-1: no limit) it waits for them to empty (it
 * kills nothing) and retries while the kernel reports them busy; then
 * -EBUSY. A cgroup already gone counts as removed. The handle stays the
 * caller's to free.
 */
EVM_API int evm_cgroup_remove(struct evm_cgroup *cg, int timeout_ms);

/* Resource limits (the file each one writes, and its controller). */
enum evm_cgroup_limit {
	EVM_CGROUP_MEMORY_MAX = 1, /* memory.max: bytes, K/M/G suffixes, or "max" */
	EVM_CGROUP_MEMORY_HIGH,	   /* memory.high: the same; throttles instead of OOM */
	EVM_CGROUP_PIDS_MAX,	   /* pids.max: a number or "max" */
	EVM_CGROUP_CPU_WEIGHT,	   /* cpu.weight: 1-10000, default 100 */
	EVM_CGROUP_CPU_MAX,	   /* cpu.max: "QUOTA PERIOD" in us, or "max" */
	EVM_CGROUP_IO_WEIGHT,	   /* io.weight: 1-10000, default 100 */
};

/* "memory.max", ... for a limit; NULL when out of range. Static string. */
EVM_API const char *evm_cgroup_limit_file(enum evm_cgroup_limit limit);
/* The EVM_CGROUP_* controller a limit needs; 0 when out of range. */
EVM_API unsigned evm_cgroup_limit_controller(enum evm_cgroup_limit limit);

/*
 * Write value (in the kernel's syntax, see the enum) to the limit's file.
 * -EOPNOTSUPP when the controller is not available to cg (not enabled in its
 * parent's cgroup.subtree_control: evm_cgroup_limit_controller names it),
 * -EINVAL for a value the kernel refuses, -ENOENT when cg is gone.
 */
EVM_API int evm_cgroup_set_limit(struct evm_cgroup *cg, enum evm_cgroup_limit limit,
				 const char *value);

/* Read a limit back into buf (without the newline); errors as evm_cgroup_set_limit, -ERANGE. */
EVM_API int evm_cgroup_get_limit(const struct evm_cgroup *cg, enum evm_cgroup_limit limit,
				 char *buf, size_t size);

/* Which evm_cgroup_stats fields were readable. */
enum {
	EVM_CGROUP_STAT_CPU = 1u << 0,	   /* cpu.stat: always there */
	EVM_CGROUP_STAT_MEMORY = 1u << 1,  /* memory.current */
	EVM_CGROUP_STAT_PEAK = 1u << 2,	   /* memory.peak (Linux 5.19) */
	EVM_CGROUP_STAT_OOM = 1u << 3,	   /* memory.events */
	EVM_CGROUP_STAT_PIDS = 1u << 4,	   /* pids.current */
	EVM_CGROUP_STAT_PROCS = 1u << 5,   /* cgroup.procs */
};

struct evm_cgroup_stats {
	unsigned have;		 /* EVM_CGROUP_STAT_*; fields not in it are 0 */
	uint64_t cpu_usage_usec; /* cpu.stat, cg and its descendants */
	uint64_t cpu_user_usec;
	uint64_t cpu_system_usec;
	uint64_t memory_current; /* bytes */
	uint64_t memory_peak;	 /* bytes */
	uint64_t oom;		 /* memory.events: times the limit made reclaim fail */
	uint64_t oom_kill;	 /* memory.events: processes the OOM killer killed */
	uint64_t pids_current;	 /* tasks (threads), cg and its descendants */
	uint64_t procs;		 /* processes in cg itself */
};

/*
 * Read what is readable. Missing controller files are not errors (see
 * have); -ENOENT when cg is gone (or went during the call). An OOM kill
 * shows as oom_kill growing: read it when a process starts and when it
 * exits (a service's exit says it:
 * evm_exit.oom_killed). A file found missing (its controller not enabled)
 * is not opened again for 30 s: a controller enabled meanwhile shows up
 * within that time.
 */
EVM_API int evm_cgroup_stats(const struct evm_cgroup *cg, struct evm_cgroup_stats *out);

/*
 * evm_cgroup_stats reading only the files of the figures in want
 * (EVM_CGROUP_STAT_*): each is a file opened and read per call, which adds
 * up when many cgroups are read in a row (a metrics scrape). have is a subset
 * of want; a file not wanted is neither read nor remembered as absent.
 * -EINVAL for a bit that is not an EVM_CGROUP_STAT_* value.
 */
EVM_API int evm_cgroup_stats_only(const struct evm_cgroup *cg, unsigned want,
				  struct evm_cgroup_stats *out);

typedef void (*evm_cgroup_cb)(struct evm_cgroup_watch *w, bool populated, void *data);

/*
 * Watch cg's "populated" flag (cgroup.events) in the loop: cb runs when it
 * changes, with the new value. The initial value is evm_cgroup_watch_populated;
 * quick changes may coalesce (cb sees the current value when it differs
 * from the last one reported). populated goes 0 when the last process
 * exits, which may be before its parent has reaped it. The watch keeps what
 * it needs: cg may be freed first. The loop owns the watch until
 * evm_cgroup_unwatch or evm_loop_free; *out is optional. All the watches of
 * a loop share one inotify fd; -ENOSPC when fs.inotify.max_user_watches is
 * reached. Loop thread.
 */
EVM_API int evm_cgroup_watch(struct evm_loop *loop, const struct evm_cgroup *cg,
			     evm_cgroup_cb cb, void *data, struct evm_cgroup_watch **out);

/* The last value seen (what the last callback said, or the initial one). */
EVM_API bool evm_cgroup_watch_populated(const struct evm_cgroup_watch *w);

/* Stop watching and free the watch (also from its own callback). */
EVM_API void evm_cgroup_unwatch(struct evm_cgroup_watch *w);

/*
 * Across an exec of ourselves that keeps the services (evm_loop_prepare_exec),
 * what the old image knew of each service's cgroup, so that the new one
 * neither reads the cgroup's files nor watches it again (an inotify watch,
 * cgroup.events and memory.events read: per service, most of what a
 * re-exec with cgroups cost). The old image keeps the inotify fd of its
 * watches open across the exec (evm_cgroup_watch_fd, FD_CLOEXEC cleared
 * just before) and writes down evm_service_cgroup_export of each service;
 * the new one gives the fd to its loop (evm_cgroup_watch_inherit) before
 * any watch, and each record to the service made again with that cgroup
 * (evm_service_opts.cgroup_kept). A change of a cgroup during the exec
 * is not lost: it waits in the kept fd, and is read at the new loop's first
 * turn. A watch is taken back only if the fd has it, no other service took
 * it, and it watches the file the record says (ino and dev, compared with
 * the fd's own list: nothing is read per service); a record without
 * EVM_CGROUP_KEPT_INO costs a stat of the cgroup's cgroup.events instead.
 */
struct evm_cgroup_kept {
	unsigned flags;	    /* EVM_CGROUP_KEPT_* */
	int wd;		    /* EVM_CGROUP_KEPT_WATCH: its watch's descriptor in the kept fd */
	uint64_t oom_kills; /* EVM_CGROUP_KEPT_OOM: memory.events oom_kill when its run began */
	/* EVM_CGROUP_KEPT_INO: the file wd watches (its cgroup.events when the watch was made) */
	uint64_t ino, dev;  /* st_ino, st_dev */
};
enum {
	EVM_CGROUP_KEPT_MADE = 1u << 0,	     /* its directory exists (else: not made yet) */
	EVM_CGROUP_KEPT_WATCH = 1u << 1,     /* its emptying is watched: wd */
	EVM_CGROUP_KEPT_POPULATED = 1u << 2, /* with WATCH: it held processes, last it was read */
	EVM_CGROUP_KEPT_OOM = 1u << 3,	     /* oom_kills is known (the memory controller is on) */
	/*
	 * its run counts no OOM kill (no memory.events when it began): its
	 * adoption does not look again (OOM and NO_OOM: neither is kept)
	 */
	EVM_CGROUP_KEPT_NO_OOM = 1u << 4,
	EVM_CGROUP_KEPT_INO = 1u << 5, /* with WATCH: ino and dev are known */
};

/* The inotify fd of the loop's cgroup watches (borrowed), or -ENOENT (none yet). */
EVM_API int evm_cgroup_watch_fd(struct evm_loop *loop);

/*
 * Before the loop's first cgroup watch: its watches use fd, the old
 * image's evm_cgroup_watch_fd kept across the exec (the loop owns it on
 * success, and sets its FD_CLOEXEC again; on failure the caller still
 * does). The fd's watches are listed (/proc/self/fdinfo) for the services
 * to take back (evm_service_opts.cgroup_kept) until the loop's first
 * turn, which removes those none took back. -EBUSY when the loop watches
 * already, -EINVAL when fd is not an inotify fd, -ENOMEM. Loop thread.
 */
EVM_API int evm_cgroup_watch_inherit(struct evm_loop *loop, int fd);

/* What svc knows of its cgroup, into out. 0, -ENOENT (it has none), -EINVAL. */
EVM_API int evm_service_cgroup_export(const struct evm_service *svc, struct evm_cgroup_kept *out);


#ifdef __cplusplus
}
#endif
#endif /* EVMON_H */
