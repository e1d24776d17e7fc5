/*
 * init.h - what the files of `evmon init` share: the options, the run state,
 * and the messages.
 *
 *   init.c        command line, environment, setup, the main child, exit code
 *   signals.c     the signalfd: forwarding, -r rewrites, job control, the tty
 *   group.c       after the main child: SIGTERM to what is left of its process
 *                 group (-a: of every other process), SIGKILL after the grace,
 *                 wait until none is left
 *   standalone.c  main() of the standalone static evmon-init
 */
#ifndef EVMON_CLI_INIT_H
#define EVMON_CLI_INIT_H

#include <evmon.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* tini's levels: 0 fatal only, 1 warnings (default), 2 info, 3 debug, 4 trace */
enum { V_FATAL = 0, V_WARN = 1, V_INFO = 2, V_DEBUG = 3, V_TRACE = 4 };

struct init_group;

struct init {
	/* options */
	int verbosity;
	bool subreaper_required; /* -s, TINI_SUBREAPER: failing to become one is fatal */
	bool no_subreaper;	 /* --no-subreaper: do not become one by default */
	bool group;		 /* forward to the child's process group (not -c) */
	bool warn_reap;		 /* -w */
	int pdeath_signal;	 /* -p: our own parent-death signal, then forwarded */
	uint32_t remap[8];	 /* -e: exit codes reported as 0 (bitmap of 0..255) */
	int rewrite[NSIG];	 /* -r: -1 as is, 0 drop, else the signal to send */
	uint64_t grace_ms;	 /* -t: SIGTERM to SIGKILL for what is left of the group */
	bool grace_given;	 /* -t was on the command line */
	bool all;		 /* -a: the end covers every other process, not the group only */
	bool end_at_once;	 /* -c without -t or -a: exit when CMD does, as tini */
	char **argv;		 /* CMD [ARGS...] */

	/* run state */
	struct evm_loop *loop;
	int sigfd;
	struct evm_io *sigio;
	struct evm_proc *child; /* the main child, until it exits */
	pid_t child_pid;
	pid_t pgid;		/* the child's process group (it leads one) */
	bool tty;		/* we handed stdin's terminal to the child's group */
	bool pid1;
	pid_t ppid;		/* our parent at startup, for -p */
	bool orphaned;		/* it died before -p took effect */
	int exit_code;		/* -1 while the main child runs */
	bool done;		/* nothing left to wait for: exit */
	struct init_group *ending;
	unsigned long orphans;	/* reaped processes we did not spawn */
};

/* messages: everything goes to stderr, never to the child's stdout */
void init_log(const struct init *in, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* signals.c */
int init_signals_block(void);		       /* before any thread or loop exists */
int init_signals_open(struct init *in);	       /* the signalfd, on the loop */
void init_signals_close(struct init *in);
bool init_tty_ours(void);	/* stdin is our terminal and we are its foreground */
const char *init_signame(int sig); /* "TERM", or "?" */
void init_tty_give(struct init *in);	/* make the child's group the foreground */
void init_tty_restore(struct init *in); /* take it back before we exit */
int init_forward(struct init *in, int sig);    /* to the child or its group */
/* a signal we received (from: sender pid, code: si_code): rewrite, forward, job control */
void init_signal_handle(struct init *in, int sig, pid_t from, int code);

/*
 * group.c: fn(n, data) for each numeric entry of a /proc directory. No
 * opendir: its 32 kB buffer would stay in our heap after closedir (RSS).
 * Returns false if the directory could not be read (entirely).
 */
bool init_list_proc(const char *dir, void (*fn)(long n, void *data), void *data);

/* group.c: the main child has exited; sets in->done when all is over */
void init_group_end(struct init *in);
void init_group_free(struct init *in);
void init_group_poke(struct init *in);	       /* something was reaped: recheck */

#endif
