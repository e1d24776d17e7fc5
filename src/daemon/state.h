/*
 * state.h - the daemon's state record: SOCKET.state, beside the control
 * socket, naming each service's process (pid + start time) and the
 * identity of its definition, so that a daemon started after a crash
 * (kill -9, OOM) takes over what still runs instead of starting a second
 * copy of it. The same text, with the descriptors to keep, carries the
 * state across `evmon ctl reexec` (reexec.c).
 *
 *   evmon-state 2                                the format (a re-exec's: 2 to 7)
 *   daemon PID
 *   service NAME PID STARTTIME IDENTITY FLAGS STATE RESTARTS FAILURES
 *           START_FAILURES BACKOFF_STEP NEXT_START [INTENT] [health=STATUS:FAILURES]
 *           [deadline=MS] [failing] [watchdog=MS] [why=TEXT] [since=MS]
 *           [err=STAGE:ERRNO] [exit=PID:STATUS:FLAGS:END_MS:RUN_MS] [starts=N]
 *           [old=PID:STARTTIME:MS ...]
 *                                                one per service (one line)
 *   added JSON                                   a definition from ctl add
 *   end N                                        N service lines: not truncated
 *
 * PID is 0 for a service with no process; STARTTIME is field 22 of
 * /proc/PID/stat; IDENTITY a hash of what runs (command, environment,
 * directory, user, group, umask, stdout/stderr); FLAGS one of run,
 * stopping, down (stopped by a user, exited or fatal: it stays stopped),
 * start (format 7: no process yet, but a start was asked for and waits for
 * its dependencies or its turn in the start queue), stop (format 7:
 * running, to stop once its dependents are down or at its turn in the
 * queue; the next image stops it in that order),
 * restart (format 7: stopping, or stopped and waiting for its spawn turn
 * (PID 0), to start again: `ctl restart`, health_action = restart, a start
 * while stopping). Formats 2 to 6 say "run", "stopping" or "down" there,
 * as before 7, and end the line with the format-7 flag (INTENT, one more
 * word after NEXT_START): a reader of only those formats ignores the rest
 * of the line (every one has), a newer one takes the flag. After it, in
 * every format, " health=STATUS:FAILURES" for a service with a health
 * check whose process is up (healthy or unhealthy, and its failures in a
 * row): the next daemon goes on from there instead of from "starting";
 * and " deadline=MS" for one starting or stopping: the CLOCK_BOOTTIME (ms)
 * of its ready timeout (as extended) or of its SIGKILL, which the next
 * daemon keeps (EVM_ADOPT_DEADLINE), with " failing" when that SIGKILL
 * ends a stop for a failure (EVM_ADOPT_FAILING); and " watchdog=MS" for a run whose
 * service set its own watchdog period (WATCHDOG_USEC=), which goes on; " why=",
 * " since=", " err=" and " exit=": what its status shows of its past; " starts=N"
 * for one started at least once: its evmon_service_starts_total, which the next
 * daemon keeps for the same definition (a reader before it leaves the word, and
 * counts from 0 again, or 1 for a process it adopts: no format is bumped); and one
 * " old=PID:STARTTIME:MS" per copy of the name that a reload replaced or removed
 * and that still stops, at most STATE_OLDS_MAX (its stop signal sent; MS: the
 * CLOCK_BOOTTIME of its SIGKILL, 0: due already): the next daemon takes that
 * stop over, and its successor waits for it as before the crash; " held=PID:STARTTIME:
 * SIGNAL:MS" (its stop_signal and stop_timeout) for one not stopped yet, held until an old copy that requires it is gone
 * (draining.c): the next daemon stops it (an older one kills it, as a process
 * no record names). A name removed
 * from the configuration (or whose new definition's service could not be made)
 * whose old copy still stops has a line of its own, "service NAME 0 0
 * 0000000000000000 down stopped 0 0 0 0 0 old=...": a reader that leaves the
 * old= words sees a stopped service it does not know (and kills that process as
 * one no record names). So the record on
 * disk, in format 2, carries them across a crash, and an older evmon still
 * reads it (a `ctl start` waiting is then forgotten, as it was). A
 * shutdown's stops are not written (a daemon started after it runs them).
 * The rest (version 2) is where its policy had got to, resumed by the next
 * daemon (evm_service_resume): its state's name, its counters, and in
 * backoff the CLOCK_BOOTTIME (ms) of its next start, which holds across an
 * exec and a crash alike (a crash's record is the last one written, at most
 * an iteration old); version 1 lines end after FLAGS.
 * JSON is the "service" object of a `ctl add` (one line), after the
 * service line of its first instance: the config file does not have it
 * (or has a name it took, which it keeps: takeover.c), so the next daemon
 * makes those services again from it (version 1, read
 * too, has no such lines).
 *
 * Written atomically (a temporary file renamed over it) at most once per
 * loop iteration in which a service changed, never fsync'ed: it is for a
 * crash of the daemon, and a crash of the machine takes the services with
 * it. Read at start, never deleted then (a second crash during the takeover
 * still finds it): it is overwritten by the new daemon's first record, and
 * removed at a clean exit. Only the daemon holding SOCKET.lock reads or
 * writes it, so a record found at start was left by a daemon that died.
 *
 * A record of a newer format than STATE_VERSION (an older binary after a
 * downgrade) is not ignored: its services may still run, and ignoring it
 * would start second copies; the daemon refuses to start instead. A re-exec
 * asks the binary first (`evmon daemon --state-format`) and does not exec
 * one that cannot read what it would pass.
 */
#ifndef EVMON_STATE_H
#define EVMON_STATE_H

#include "hashmap.h"

#include <evmon.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct daemon;
struct svc_conf;

/*
 * The newest format read (every older one is read too), and what each
 * added: 2 the policy fields and "added" lines, 3 the re-exec's "exec
 * times", "exec pidfd" and "exec input" lines, 4 its "exec client-id",
 * "exec client-sub" and "exec cut" lines, 5 "exec cgwatch" and "exec cg", 6
 * the file each "exec cg" line's watch watches (its inode and device), 7
 * the "start", "stop" and "restart" flags (a unit waiting to start, to
 * stop, or stopping to start again; older formats say "run", or "stopping"
 * for a stop waiting only for its turn and for a restart), 8 the "exec
 * notify" line (the services' notify socket, kept open) and "exec readyfd"
 * (the read end of the fd:N pipe of a service not ready yet), 9 nothing new
 * to write: its reader takes over the old copies still stopping that the
 * " old=" words name (any format has them; an older reader kills those
 * processes, so a re-exec into it waits until none is left), 10 the "exec
 * gone NAME" lines: removed services whose cgroups still hold processes
 * (kill_mode = process), to wait for, not to kill (an older reader kills
 * them, as every one did). In every format
 * the "daemon PID" line may end with " notify=@NAME": the abstract name of
 * that socket, which a daemon started after a crash binds again, and with
 * " id=HEX", the EVMON_DAEMON_ID its services carry, which the next one
 * keeps (a reader of "daemon %d" ignores the rest of the line: every one
 * has). A
 * re-exec passes the state in the newest format both binaries read (the
 * new one's --state-format), down to STATE_REEXEC_OLDEST, leaving out the
 * lines that format lacks (and what only they could carry: reexec.c). The
 * record on disk is written in format 2, so an older evmon started after a
 * crash still reads it; format 7's flags ride at the ends of its lines.
 */
#define STATE_VERSION 10
#define STATE_OLDS 9 /* the first format whose reader takes the old= words over */
#define STATE_OLDS_MAX 4 /* old= words on a line at most (statewrite.c) */
#define STATE_DISK_VERSION 2
#define STATE_REEXEC_OLDEST 2

enum rec_flags { REC_RUN, REC_STOPPING, REC_DOWN, REC_START, REC_STOP, REC_RESTART };
/* FLAGS as the record spells them (state.c reads, statewrite.c writes) */
extern const char *const rec_flag_names[REC_RESTART + 1];

struct rec_svc {
	char *name;
	pid_t pid;
	uint64_t start;
	uint64_t ident;
	enum rec_flags flags;
	/* version 2: where its policy had got to (evm_service_resume) */
	bool has_policy;
	enum evm_state state;
	unsigned restarts, failures, start_failures, backoff_step;
	uint64_t next_start; /* BACKOFF: CLOCK_BOOTTIME ms of its next start, else 0 */
	int fds[4]; /* reexec only: its capture's pipes (out r/w, err r/w), else -1 */
	int pidfd;  /* reexec only: the old image's pidfd of pid, else -1 */
	int ready_fd; /* reexec only: the read end of its fd:N pipe, not ready yet (format 8), else -1 */
	uint64_t deadline; /* " deadline=MS": CLOCK_BOOTTIME ms of its ready timeout or SIGKILL, else 0 */
	bool failing;	   /* " failing": being stopped for a failure (its deadline: the SIGKILL) */
	bool tree;	   /* " tree": pid 0, its main exited (exit=) and its cgroup runs on (track = tree) */
	bool has_watchdog; /* " watchdog=MS": its run's period as WATCHDOG_USEC= set it */
	uint64_t watchdog_ms;
	int health;	/* enum health_status from " health=NAME:STREAK" (any format), else 0 */
	unsigned health_streak;
	/* " since=", " err=", " exit=" (any format): what its status showed of its past */
	struct evm_service_history past;
	bool has_past;
	char why[160];	/* " why=TEXT" (%XX: a space, '%', a control byte): why it is fatal, or "" */
	bool has_starts; /* " starts=N" (any format): its starts since it was made (metrics) */
	unsigned starts;
	bool has_cg; /* reexec only: what the old image knew of its cgroup (evm_service_opts.cgroup_kept) */
	struct evm_cgroup_kept cg;
	/* " old=PID:START:MS" (any format): a replaced or removed copy of this name still
	 * stopping (its stop signal sent), and the CLOCK_BOOTTIME ms of its SIGKILL (0: due) */
	struct rec_old {
		pid_t pid;
		uint64_t start, deadline;
		/* " held=PID:START:SIG:MS": not stopped yet, held for a dependent's stop;
		 * its stop_signal and stop_timeout */
		bool held;
		int stop_signal;
		uint64_t stop_ms;
	} *olds;
	unsigned nolds;
	bool used;
	struct hnode node; /* in record.idx, by name */
};

/* A name the record lists (an added definition's, a removed service's), in a set */
struct rec_name {
	struct hnode node;
	bool claimed; /* an added definition's: a service line is one of its instances */
	char name[];
};

struct record {
	pid_t daemon;		/* who wrote it */
	char notify[110];	/* its notify socket's name (a path or "@..."), or "" */
	uint64_t lineage;	/* its EVMON_DAEMON_ID, or 0 */
	struct rec_svc *svcs;
	size_t n;
	struct hashmap idx;	/* the svcs by name */
	size_t pipe_at;		/* reading: where the last "exec pipe" line's service was */
	int version;		/* of the format: 1 to STATE_VERSION */
	char **added;		/* the "added" lines' definitions (JSON) */
	struct rec_name **added_names; /* their "name"s (read once), an entry NULL if none */
	struct hashmap added_idx; /* those names */
	size_t nadded;
	/* reexec only */
	bool reexec;
	int ctl_fd, lock_fd;	/* the control socket's listener and lock */
	int client_fd;		/* the connection that asked for it, answered at the end */
	char *client_in;	/* what it sent after its request (not read yet) */
	size_t client_inlen;
	char *client_id;	/* its request's "id" (JSON), or NULL */
	char *client_sub;	/* its events patterns (a JSON array) if it followed them, or NULL */
	char *cg_home;		/* the cgroup the daemon was started in, or NULL */
	int cgw_fd;		/* the inotify fd of the cgroup watches (format 4), or -1 */
	int notify_fd;		/* the notify socket (format 8), or -1 */
	struct rec_name **gone;	/* removed services' cgroups left to empty (format 10) */
	size_t ngone;
	struct hashmap gone_idx; /* those names */
	/* CLOCK_MONOTONIC ns: the request, the old loop's last turn, the memfd written */
	uint64_t t_req, t_stop, t_write;
	struct rec_follower {
		int fd;		/* an events follower's connection, or -1 once taken */
		char *patterns;	/* its patterns, a JSON array; NULL: a client between requests */
		char *input;	/* what it sent that no request took yet, or NULL */
		size_t inlen;
		char *cut_id;	/* its request waited for its reply: the "id" (JSON), or NULL */
	} *followers;
	size_t nfollowers;
};

/* The identity of what c runs (not its policy): a changed one is not adopted. */
uint64_t state_ident(struct svc_conf *c);

/* CLOCK_BOOTTIME in ms: the same clock before and after an exec, or a crash */
uint64_t state_boot_ms(void);

/*
 * What is left, in ms to the nearest, of a record's deadline (CLOCK_BOOTTIME
 * ms): 0 once it passed. Read right before the call it is given to: every
 * hand-over of a deadline reads the clock twice, and the time between the
 * reads would push the deadline back at each one.
 */
uint64_t state_ms_until(uint64_t boot_ms);

/*
 * Where the record lives, and the state a reexec passed (before the control
 * socket is opened: its listener may be in it). 0, or -1 (said on stderr):
 * out of memory, or that state is of a newer format than ours.
 */
int state_init(struct daemon *d);


/*
 * Holding the socket's lock: the record a daemon that died left (a bad one
 * is said and ignored), unless a reexec passed the state. -1 (said on
 * stderr) for a record of a newer format: the daemon must not start.
 */
int state_load(struct daemon *d);

/* The entry of service name in d's record (not taken over yet), or NULL. */
struct rec_svc *state_find(struct daemon *d, const char *name);

/* takeover.c */
/* Before the units: the stops of old copies (replaced, removed) the record names go on. */
void state_take_over_olds(struct daemon *d);

/*
 * Make the services added with `ctl add` the record names again (before
 * the takeover, none started), one log line each.
 */
void state_readd(struct daemon *d);

/*
 * The record has a definition named name (a definition's, not an
 * instance's) added with `ctl add`, and a line for one of its instances:
 * that one takes the name, not the config file's (made only if it cannot
 * be made again).
 */
bool state_added_claims(struct daemon *d, const char *name);

/*
 * Every unit is created, none started: adopt the survivors the record names
 * (or with adopt = no, or a changed definition, kill them), one log line
 * each; a service stopped by a user stays stopped. Then, with cgroups, kill
 * what no adopted service owns.
 */
void state_take_over(struct daemon *d);

/* statewrite.c */

/* A service changed: write the record (at the end of this iteration). */
void state_changed(struct daemon *d);

/*
 * The shutdown begins: what is not down now (stopped by a user, exited,
 * failed for good) is the shutdown's to stop, and a daemon started after a
 * crash during it starts it again as any start of the daemon does.
 * Returns how many of those are up (not stopped: never started yet, or
 * waiting for their turn), which the shutdown's log line counts.
 */
size_t state_shutdown_begins(struct daemon *d);

/* Every autostart service started: the record now, not after the start's spacing. */
void state_started(struct daemon *d);

/*
 * The record's lines but the end line into f, in format version (a
 * re-exec's, or STATE_DISK_VERSION); returns the services written.
 */
size_t state_print(struct daemon *d, FILE *f, int version);

/* Write the record now (before a reexec); 0 or -errno. */
int state_write_now(struct daemon *d);

/* Clean exit, every service stopped: no record left behind. */
void state_fini(struct daemon *d);

/* state.c */
void record_free(struct record *r);

/*
 * Does f read back as a whole re-exec state (before the exec: what the new
 * image would fail on)? 0, or -1 with why. The descriptors it names are
 * left open.
 */
int state_check(FILE *f, char *why, size_t whylen);

#endif
