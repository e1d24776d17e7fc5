/*
 * reexec.c - `evmon ctl reexec` and SIGUSR2: the daemon execs its binary
 * (the one now at its path: an upgrade) in place, and every service keeps
 * running, with its pid.
 *
 * The exec keeps the pid, so the services stay our children: the new image
 * adopts them and reaps their exits with their status, those that happened
 * during the exec included (zombies wait for it). What crosses the exec:
 * the state record (state.h) in a memfd named by $EVMON_REEXEC_STATE, plus
 * the descriptors it names, whose FD_CLOEXEC is cleared just before: the
 * control socket's listener and lock (connections that arrive meanwhile
 * wait in its backlog: it never refuses one), the services' output pipes
 * (what they write meanwhile waits in the pipe: no line is lost), the
 * pidfd of each service's process (the new image adopts through it with
 * EVM_ADOPT_KEPT: no /proc read per service), the inotify fd of the
 * cgroup watches with what each service knew of its cgroup (the new image
 * neither reads nor watches a cgroup again), the services' notify socket
 * (their NOTIFY_SOCKET names it: what they send meanwhile waits in it; from
 * format 8), the requesting client's
 * connection, which the new image answers (with its request's id, and its
 * events subscription), and every other client between two requests:
 * events followers with their patterns (they follow on after a "reexec"
 * event), and the others, each with what it sent that no request took yet
 * (a request half read: the new image reads on). A client whose reply
 * waits (a wait) crosses too, and the new image says its wait was cut.
 * The clients in a stream (logs -f), a reply in pieces, or with output
 * not read yet close with the exec; the metrics listener is bound again
 * (port 0: another free port, as evmon.ini(5) says; not handed over), the log files are opened again at the next line.
 *
 * The state is passed in the newest format both binaries read (the new
 * one's answer, down to STATE_REEXEC_OLDEST), without the lines and what
 * only they could carry (write_state).
 *
 * The pause (the loop serves nobody) runs from the exec timer's turn to the
 * new image's first turn; the new image logs its parts. Before it, the
 * binary is asked whether it can read the state we pass (`evmon daemon
 * --state-format`: a downgrade, or a binary older than the question, is
 * refused) by a child of the loop, which serves on meanwhile. An exec that
 * fails (the binary is gone, not executable) returns here: the descriptors
 * are close-on-exec again and the daemon carries on, with an error in the
 * reply. The spawn helper is stopped first (it would outlive the exec as a
 * stray child) and starts again when needed.
 */
#include "daemon.h"

#include "cgroups.h"
#include "daemonlog.h"
#include "notify.h"
#include "notifysock.h"
#include "ready.h"
#include "state.h"
#include "stdsink.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Our binary: the path /proc/self/exe names (what is there now, after an upgrade). */
static int exe_path(char *buf, size_t len, char *err, size_t errlen)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n < 0) {
		snprintf(err, errlen, "/proc/self/exe: %s", strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	/* replaced by an upgrade: the old file is gone, its path holds the new one */
	static const char deleted[] = " (deleted)";
	size_t dl = sizeof(deleted) - 1;
	if ((size_t)n > dl && !strcmp(buf + n - dl, deleted))
		buf[n - dl] = '\0';
	if (access(buf, X_OK) < 0) {
		snprintf(err, errlen, "cannot re-execute %s: %s: the daemon carries on", buf,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * A re-exec under way: the binary at exe is asked which state format it
 * reads (`evmon daemon --state-format`) while the loop goes on serving (a
 * binary that starts in 30 ms on a loaded machine held every client that
 * long); its answer execs it, from a timer of the loop (after every exit
 * reaped in that iteration has been dispatched), or answers why not.
 */
struct reexec {
	struct daemon *d;
	struct client *cl;	 /* who asked (answered by the new image), or NULL */
	struct evm_proc *check;	 /* the format question, then the config's check, while it runs */
	struct evm_timer *timer; /* the exec, once the answer is in */
	bool cancelled;		 /* the daemon shuts down: the check was killed */
	int format;		 /* of the state to pass: the newest both binaries read */
	uint64_t t_req;		 /* CLOCK_MONOTONIC ns: the request */
	char exe[PATH_MAX];
	char err[PATH_MAX + 200];
};

#define CHECK_TIMEOUT_MS 5000

static void reexec_free(struct reexec *rx)
{
	evm_timer_cancel(rx->timer);
	evm_proc_unref(rx->check);
	free(rx);
}

/* A re-exec that did not happen: why, to the log and to who asked. */
static void reexec_failed(struct reexec *rx, const char *err)
{
	dlog("re-exec: %s", err);
	if (rx->cl)
		control_reply_error(rx->cl, "%s", err);
	rx->cl = NULL;
}

static void reexec_end(struct reexec *rx)
{
	rx->d->reexec = NULL;
	reexec_free(rx);
}

static void requester_gone(void *data)
{
	struct reexec *rx = data;
	rx->cl = NULL; /* the re-exec goes on, as one asked for by a signal */
}

/*
 * Can the binary read the state we pass? It says which format it reads up
 * to; one that cannot tell (too old to know the option, broken) is not
 * exec'ed either: an older image could ignore the state and start every
 * service a second time.
 */
static bool format_ok(struct reexec *rx, struct evm_proc *p, const struct evm_exit *x)
{
	size_t n = 0;
	const char *out = evm_proc_output(p, 1, &n, NULL);
	char buf[64];
	int v = 0, end = 0;
	bool said = false;
	if (out && n < sizeof(buf) && !x->signal && !x->status_unknown && x->code == 0) {
		memcpy(buf, out, n);
		buf[n] = '\0';
		said = sscanf(buf, "%d%n", &v, &end) == 1 && end > 0 && !strcmp(buf + end, "\n");
	}
	if (!said)
		snprintf(rx->err, sizeof(rx->err), "%s does not say which state format it reads "
			 "(older than evmon's --state-format?%s): not re-executing it, it could start "
			 "second copies of the services: the daemon carries on", rx->exe,
			 x->timed_out ? " no answer in 5 s" : "");
	else if (v < STATE_REEXEC_OLDEST)
		snprintf(rx->err, sizeof(rx->err), "%s reads state format %d, older than any a "
			 "re-exec can pass (%d to %d): not re-executing it (it would lose the state): "
			 "the daemon carries on", rx->exe, v, STATE_REEXEC_OLDEST, STATE_VERSION);
	/* a downgrade gets the state in its own format, without what that format lacks */
	rx->format = v < STATE_VERSION ? v : STATE_VERSION;
	return said && v >= STATE_REEXEC_OLDEST;
}

static int exec_now(struct reexec *rx);

static void on_exec_timer(struct evm_timer *t, void *data)
{
	struct reexec *rx = data;
	(void)t;
	rx->timer = NULL; /* the loop frees a timer that fired */
	exec_now(rx);
	reexec_failed(rx, rx->err); /* returns only when it failed */
	reexec_end(rx);
}

/* The exec, at the loop's next turn: not from inside the probe's exit callback. */
static int arm_exec(struct reexec *rx)
{
	if (evm_timer_add(rx->d->loop, 0, on_exec_timer, rx, &rx->timer) < 0) {
		rx->timer = NULL;
		snprintf(rx->err, sizeof(rx->err), "out of memory for a timer: not re-executing: "
			 "the daemon carries on");
		return -1;
	}
	return 0;
}

/*
 * A question to the new binary answered (ok: the re-exec may go on): over
 * if the daemon shuts down meanwhile, failed with rx->err, or on to next.
 */
static void probe_done(struct reexec *rx, bool ok, int (*next)(struct reexec *rx))
{
	if (rx->cancelled) {
		reexec_end(rx);
		return;
	}
	if (rx->d->stopping) { /* reexec_cancel has not run yet: the shutdown wins */
		reexec_failed(rx, "the daemon is shutting down: not re-executing");
		reexec_end(rx);
		return;
	}
	if (!ok || next(rx) < 0) {
		reexec_failed(rx, rx->err);
		reexec_end(rx);
	}
}

/*
 * The config as the new image reads it: one it refuses (a mistake saved
 * and never reloaded, a key it does not know) would make it exit at once,
 * its services left running with nobody watching, the socket, the record
 * and the cgroups behind. Its `--check` says so first, with the reason.
 */
static void on_config(struct evm_proc *p, const struct evm_exit *x, void *data)
{
	struct reexec *rx = data;
	rx->check = NULL;
	bool ok = !x->signal && !x->status_unknown && x->code == 0;
	if (!ok && !rx->cancelled) {
		size_t n = 0;
		const char *out = evm_proc_output(p, 2, &n, NULL);
		const char *nl = out ? memchr(out, '\n', n) : NULL;
		int len = (int)(nl ? (size_t)(nl - out) : n);
		snprintf(rx->err, sizeof(rx->err), "%s daemon --check -c %s %s: %.*s: not "
			 "re-executing (it would not start): the daemon carries on", rx->exe,
			 rx->d->cfg_path, x->timed_out ? "gave no answer in 5 s" : "refuses the config",
			 len > 300 ? 300 : len, out && len ? out : "no reason given");
	}
	evm_proc_unref(p);
	probe_done(rx, ok, arm_exec);
}

static int ask_config(struct reexec *rx);

static void on_format(struct evm_proc *p, const struct evm_exit *x, void *data)
{
	struct reexec *rx = data;
	rx->check = NULL;
	bool ok = !rx->cancelled && format_ok(rx, p, x);
	evm_proc_unref(p);
	probe_done(rx, ok, ask_config);
}

/*
 * Old copies of replaced or removed services still stopping (their stop
 * signal sent, their SIGKILL not due yet): the state names them (old=
 * words) and a new image of format 9 takes their stops over; an older one
 * would kill them at once, cutting a graceful stop (a database shutting
 * down) short. Neither can keep the pipe one writes its output into when
 * only the old copy holds it (a removed service, or one whose output
 * changed: the unit's own pipes cross the exec), and the record names at
 * most STATE_OLDS_MAX of a name. A re-exec that would cut one short waits
 * for none: it is refused, said with how many, and can be asked again once
 * they are gone. So is one held until an old copy requiring it is gone
 * (draining.c): the new image would stop it at once, out of its order.
 * *all: every old copy; *held: the held ones.
 */
static size_t cut_short(struct daemon *d, int format, size_t *all, size_t *held)
{
	size_t n = 0;
	*all = *held = 0;
	for (const char *nm = NULL; (nm = units_next_draining(d, nm));) {
		size_t k = 0, apart = 0;
		bool a;
		for (; units_old(d, nm, k, &a); k++) {
			apart += a;
			*held += units_old_held(d, nm, k, NULL, NULL);
		}
		*all += k;
		n += format < STATE_OLDS ? k : apart + (k > STATE_OLDS_MAX);
	}
	return n + *held;
}

static int refuse_stopping(struct daemon *d, const struct reexec *rx, char *err, size_t errlen)
{
	size_t all, held, n = cut_short(d, rx->format, &all, &held);
	if (!n)
		return 0;
	if (held) /* the new image would stop them at once, out of their order */
		snprintf(err, errlen, "%zu replaced or removed service%s held until what requires "
			 "%s stops: not re-executing: the daemon carries on; try again once %s gone",
			 held, held == 1 ? " is" : "s are", held == 1 ? "it" : "them",
			 held == 1 ? "it is" : "they are");
	else if (rx->format < STATE_OLDS)
		snprintf(err, errlen, "%zu replaced or removed service%s still stopping and %.1024s "
			 "reads state format %d (older than %d: the exec would cut the stop short): not "
			 "re-executing: the daemon carries on; try again once %s gone", all,
			 all == 1 ? " is" : "s are", rx->exe, rx->format, STATE_OLDS,
			 all == 1 ? "it is" : "they are");
	else
		snprintf(err, errlen, "%zu replaced or removed service%s still stopping and writing "
			 "into a pipe only %s holds (the exec would close it), or more than %d of one "
			 "name: not re-executing: the daemon carries on; try again once %s gone", n,
			 n == 1 ? " is" : "s are", n == 1 ? "its old copy" : "their old copies",
			 STATE_OLDS_MAX, n == 1 ? "it is" : "they are");
	return -1;
}

/*
 * The new image's argv[0]: ours (a path ending in evmon: what ps and
 * pgrep -f showed of the daemon before shows after), or "evmon" (the
 * binary's own name may be anything, "evmon-1.0" behind a symlink, and a
 * name but evmon's runs the init).
 */
static char *arg0(void)
{
	const char *me = program_invocation_name, *base = strrchr(me, '/');
	return !strcmp(base ? base + 1 : me, "evmon") ? program_invocation_name : "evmon";
}

/*
 * Run exe with argv (argv[0] "evmon": the binary's own name may be
 * anything, "evmon-1.0" behind a symlink, and a name but evmon's is the
 * init's), its fd out captured (cap bytes), the rest to /dev/null, killed
 * with its process group after CHECK_TIMEOUT_MS; cb carries on. 0, or -1
 * with err, which says what it was run for.
 */
static int probe(struct reexec *rx, char **argv, int out, size_t cap, evm_exit_cb cb,
		 const char *what, char *err, size_t errlen)
{
	struct evm_spawn_error se = {0};
	/* a group of its own: a binary that hangs is killed with what it started */
	struct evm_spawn_opts o = {.argv = argv, .file = rx->exe, .flags = EVM_SPAWN_SETPGID,
				   .timeout_ms = CHECK_TIMEOUT_MS, .timeout_signal = SIGKILL,
				   .capture_max = cap, .on_exit = cb, .data = rx, .error = &se};
	for (int fd = 0; fd < 3; fd++)
		o.stdio[fd].mode = fd == out ? EVM_STDIO_CAPTURE : EVM_STDIO_NULL;
	int r = evm_spawn(rx->d->loop, &o, &rx->check);
	if (r < 0) {
		rx->check = NULL;
		snprintf(err, errlen, "cannot run %s to %s: %s: %s: the daemon carries on", rx->exe,
			 what, evm_spawn_stage_name(se.stage), strerror(-r));
		return -1;
	}
	return 0;
}

/* Ask exe its state format; on_format carries on. 0, or -1 with err. */
static int ask_format(struct reexec *rx, char *err, size_t errlen)
{
	char *argv[] = {"evmon", "daemon", "--state-format", NULL};
	return probe(rx, argv, 1, 64, on_format, "ask its state format", err, errlen);
}

/* Have exe check the config; on_config carries on. 0, or -1 with rx->err. */
static int ask_config(struct reexec *rx)
{
	/* --strict: the new image is strict too (below), and would refuse what this refuses */
	char *argv[] = {"evmon", "daemon", "--check", "-c", (char *)rx->d->cfg_path, "-S",
			rx->d->socket, rx->d->strict ? "--strict" : NULL, NULL};
	return probe(rx, argv, 2, 4096, on_config, "check the config", rx->err, sizeof(rx->err));
}

int daemon_reexec(struct daemon *d, struct client *cl, char *err, size_t errlen)
{
	if (d->stopping || !d->started || d->reexec) {
		snprintf(err, errlen, "%s: not re-executing", d->reexec ? "a re-exec is under way"
			 : d->stopping ? "the daemon is shutting down"
				       : "the daemon is still starting its services");
		return -1;
	}
	struct reexec *rx = calloc(1, sizeof(*rx));
	if (!rx) {
		snprintf(err, errlen, "out of memory: the daemon carries on");
		return -1;
	}
	rx->d = d;
	rx->t_req = mono_ns();
	if (exe_path(rx->exe, sizeof(rx->exe), err, errlen) < 0 || ask_format(rx, err, errlen) < 0) {
		free(rx);
		return -1;
	}
	rx->cl = cl;
	if (cl)
		control_defer(cl, requester_gone, rx);
	d->reexec = rx;
	return 0;
}

void reexec_cancel(struct daemon *d)
{
	struct reexec *rx = d->reexec;
	if (!rx || rx->cancelled)
		return;
	reexec_failed(rx, "the daemon is shutting down: not re-executing");
	if (!rx->check) {
		reexec_end(rx);
		return;
	}
	rx->cancelled = true; /* on_format ends it, or reexec_release after the loop */
	evm_proc_signal_group(rx->check, SIGKILL); /* it leads a group: what it started too */
}

void reexec_release(struct daemon *d)
{
	if (d->reexec)
		reexec_end(d->reexec);
}

struct keep {
	int *fds;
	size_t n, cap;
};

static void keep_add(struct keep *k, int fd)
{
	if (fd < 0)
		return;
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 64;
		int *p = realloc(k->fds, cap * sizeof(*p));
		if (!p)
			return; /* that pipe is lost to the new image: its service gets a new one */
		k->fds = p;
		k->cap = cap;
	}
	k->fds[k->n++] = fd;
}

static void keep_cloexec(const struct keep *k, bool on)
{
	for (size_t i = 0; i < k->n; i++)
		fcntl(k->fds[i], F_SETFD, on ? FD_CLOEXEC : 0);
}

struct followers {
	FILE *f;
	struct keep *k;
	int format;
};

/* "exec input FD HEX": what the connection on fd sent that no request took yet */
static void write_input(FILE *f, int fd, const char *p, size_t n)
{
	if (!n)
		return;
	fprintf(f, "exec input %d ", fd);
	for (size_t i = 0; i < n; i++) {
		fputc("0123456789abcdef"[(unsigned char)p[i] >> 4], f);
		fputc("0123456789abcdef"[(unsigned char)p[i] & 15], f);
	}
	fputc('\n', f);
}

/* The patterns of an events subscriber as one JSON array (malloc'ed), or NULL. */
static char *patterns_json(const struct control_handover *h)
{
	cJSON *a = h->n ? cJSON_CreateStringArray(h->patterns, (int)h->n) : cJSON_CreateArray();
	char *s = a ? cJSON_PrintUnformatted(a) : NULL;
	cJSON_Delete(a);
	return s;
}

/*
 * "exec follower FD [PATTERN, ...]": an events follower, to go on after the
 * exec; "exec conn FD": a client between requests, answered by the new image
 */
static void write_follower(const struct control_handover *h, void *data)
{
	struct followers *w = data;
	/* format 2 cannot carry a request half read: that connection closes, as it did then */
	if (h->inlen && w->format < 3)
		return;
	/* nor can 3 a reply that waits: it closes too, as it did then */
	if (h->waiting && w->format < 4)
		return;
	char *s = h->subscribed ? patterns_json(h) : NULL;
	if (h->subscribed && !s)
		return; /* out of memory: it closes with the exec */
	if (s)
		fprintf(w->f, "exec follower %d %s\n", h->fd, s);
	else
		fprintf(w->f, "exec conn %d\n", h->fd);
	keep_add(w->k, h->fd);
	write_input(w->f, h->fd, h->input, h->inlen);
	cJSON_free(s);
	/* "exec cut FD ID": its reply waits (a wait): the new image says the wait was cut */
	if (h->waiting) {
		s = h->id ? cJSON_PrintUnformatted(h->id) : NULL;
		fprintf(w->f, "exec cut %d %s\n", h->fd, s ? s : "null");
		cJSON_free(s);
	}
}

/*
 * "exec client FD": who asked, answered by the new image; from format 3
 * with what it sent behind its request, from 4 with the request's "id"
 * ("exec client-id JSON") and its events subscription ("exec client-sub
 * [PATTERN, ...]"). Format 2's image answers it and closes it.
 */
static void write_gone(const char *unit, void *data)
{
	fprintf(data, "exec gone %s\n", unit);
}

static void write_client(FILE *f, struct client *cl, struct keep *k, int format)
{
	struct control_handover h;
	if (!control_client_handover(cl, &h))
		return;
	fprintf(f, "exec client %d\n", h.fd);
	keep_add(k, h.fd);
	if (format >= 3)
		write_input(f, h.fd, h.input, h.inlen); /* requests sent after reexec */
	const cJSON *id = format >= 4 ? control_client_request_id(cl) : NULL;
	char *s = id ? cJSON_PrintUnformatted(id) : NULL;
	if (s)
		fprintf(f, "exec client-id %s\n", s);
	cJSON_free(s);
	s = format >= 4 && h.subscribed ? patterns_json(&h) : NULL;
	if (s)
		fprintf(f, "exec client-sub %s\n", s);
	cJSON_free(s);
}

/*
 * "exec cg NAME made WD POPULATED OOM" or "exec cg NAME unmade" (evm_cgroup_kept);
 * OOM: its run's base, "-" none (no memory.events when it began), "?" unknown;
 * from format 6 " INO DEV" after it: the file WD watches (the new image
 * compares it with the fd's list instead of a stat of the cgroup's file)
 */
static void write_cg(FILE *f, const char *name, const struct evm_cgroup_kept *k, int format)
{
	if (!(k->flags & EVM_CGROUP_KEPT_MADE)) {
		fprintf(f, "exec cg %s unmade\n", name);
		return;
	}
	bool watch = k->flags & EVM_CGROUP_KEPT_WATCH;
	fprintf(f, "exec cg %s made %d %d ", name, watch ? k->wd : -1,
		k->flags & EVM_CGROUP_KEPT_POPULATED ? 1 : 0);
	if (k->flags & EVM_CGROUP_KEPT_OOM)
		fprintf(f, "%" PRIu64, k->oom_kills);
	else
		fputc(k->flags & EVM_CGROUP_KEPT_NO_OOM ? '-' : '?', f);
	if (format >= 6 && watch && (k->flags & EVM_CGROUP_KEPT_INO))
		fprintf(f, " %" PRIu64 " %" PRIu64, k->ino, k->dev);
	fputc('\n', f);
}

/* The state and the descriptors it names into f, in format v; the ones to keep into k. */
static void write_state(struct daemon *d, FILE *f, struct client *cl, struct keep *k,
			const uint64_t times[3], int v)
{
	int lfd, lockfd;
	size_t n = state_print(d, f, v);
	if (v >= 3)
		fprintf(f, "exec times %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", times[0], times[1],
			times[2]);
	control_fds(d->ctl, &lfd, &lockfd);
	fprintf(f, "exec ctl %d %d\n", lfd, lockfd);
	keep_add(k, lfd);
	keep_add(k, lockfd);
	if (cl)
		write_client(f, cl, k, v);
	if (d->cg)
		fprintf(f, "exec cghome %s\n", cgroups_home(d->cg));
	/* kill_mode = process leftovers of removed services: still theirs, not strays */
	if (v >= 10)
		cgroups_each_gone(d->cg, write_gone, f);
	unsigned closing = control_followers(d->ctl, cl, write_follower, &(struct followers){f, k, v});
	if (closing)
		dlog("re-exec: %u connection%s with a stream or a reply under way (ctl logs -f, "
		     "ctl metrics, output not read yet) close with the exec", closing,
		     closing == 1 ? "" : "s");
	/* the cgroup watches, with what each service knew of its cgroup (below) */
	int ifd = v >= 5 && d->cg ? evm_cgroup_watch_fd(d->loop) : -1;
	if (ifd >= 0) {
		fprintf(f, "exec cgwatch %d\n", ifd);
		keep_add(k, ifd);
	}
	/* the services' notify socket: what they send meanwhile waits in it */
	int nfd = v >= 8 ? notifysock_fd(d) : -1;
	if (nfd >= 0) {
		fprintf(f, "exec notify %d\n", nfd);
		keep_add(k, nfd);
	}
	for (struct unit *u = d->first; u; u = u->next) {
		int fds[4];
		if (!u->svc)
			continue;
		if (u->out) {
			output_fds(u->out, fds);
			fprintf(f, "exec pipe %s %d %d %d %d\n", u->name, fds[0], fds[1], fds[2],
				fds[3]);
			for (int i = 0; i < 4; i++)
				keep_add(k, fds[i]);
		}
		/*
		 * The pidfd of the process its line names: the new image adopts it
		 * without opening another or reading /proc (EVM_ADOPT_KEPT); format
		 * 2's opens its own and checks the start time.
		 */
		struct evm_proc *p = evm_service_proc(u->svc);
		int pidfd = p && u->rec_pid > 0 && evm_proc_pid(p) == u->rec_pid ? evm_proc_pidfd(p) : -1;
		if (pidfd >= 0 && v >= 3) {
			fprintf(f, "exec pidfd %s %d %d\n", u->name, (int)u->rec_pid, pidfd);
			keep_add(k, pidfd);
		}
		/* a run not ready yet: the new image watches its fd:N pipe on */
		int rfd = v >= 8 && pidfd >= 0 ? ready_pipe_fd(u) : -1;
		if (rfd >= 0) {
			fprintf(f, "exec readyfd %s %d\n", u->name, rfd);
			keep_add(k, rfd);
		}
		struct evm_cgroup_kept kc;
		if (v >= 5 && d->cg && evm_service_cgroup_export(u->svc, &kc) == 0)
			write_cg(f, u->name, &kc, v);
	}
	fprintf(f, "end %zu\n", n);
}

/*
 * Exec rx->exe, every service kept: returns only when it failed (rx->err
 * says why, the daemon as it was). The loop serves nobody from here until
 * the new image's takeover is done: the pause a re-exec costs, which the
 * new image logs with its parts.
 */
/* A stream on a copy of fd (closed with it), or NULL: the copy is not left open. */
static FILE *fdopen_dup(int fd, const char *mode)
{
	int c = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	FILE *f = c >= 0 ? fdopen(c, mode) : NULL;
	if (!f && c >= 0)
		close(c);
	return f;
}

/*
 * A shutdown began (asked in the same loop turn, or by a message applied
 * while refuse_closing waited: an essential service ended): it wins.
 */
static int refuse_shutdown(struct daemon *d, char *err, size_t errlen)
{
	if (!d->stopping)
		return 0;
	snprintf(err, errlen, "the daemon is shutting down: not re-executing");
	return -1;
}

/*
 * Descriptors a sender passed to the notify socket still being closed by
 * the closer thread (a kernel before Linux 6.16): the exec would wait for
 * that thread, and a close of a hung FUSE or NFS file never ends. Given a
 * moment (one just passed closes at once), then refused.
 */
static int refuse_closing(struct daemon *d, char *err, size_t errlen)
{
	unsigned long n = notifysock_closing(d);
	for (int i = 0; n && i < 100; i++, n = notifysock_closing(d))
		nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
	if (!n)
		return 0;
	snprintf(err, errlen, "%lu descriptor%s passed to the notify socket %s not closed yet (a "
		 "close that waits: a file of a FUSE or NFS server that does not answer?): not "
		 "re-executing: the daemon carries on; try again once %s closed", n, n == 1 ? "" : "s",
		 n == 1 ? "is" : "are", n == 1 ? "it is" : "they are");
	return -1;
}

static int exec_now(struct reexec *rx)
{
	struct daemon *d = rx->d;
	char env[32];
	if (refuse_shutdown(d, rx->err, sizeof(rx->err)) < 0)
		return -1;
	if (refuse_stopping(d, rx, rx->err, sizeof(rx->err)) < 0) /* the binary's format is known now */
		return -1;
	if (refuse_closing(d, rx->err, sizeof(rx->err)) < 0 ||
	    refuse_shutdown(d, rx->err, sizeof(rx->err)) < 0)
		return -1;
	uint64_t t_stop = mono_ns();
	state_write_now(d); /* on disk too: if the new image dies, the next daemon takes over */
	evm_loop_prepare_exec(d->loop);
	int mfd = memfd_create("evmon-state", MFD_CLOEXEC);
	FILE *f = mfd >= 0 ? fdopen_dup(mfd, "w") : NULL;
	if (!f) {
		snprintf(rx->err, sizeof(rx->err), "memfd: %s: the daemon carries on", strerror(errno));
		if (mfd >= 0)
			close(mfd);
		return -1;
	}
	struct keep k = {0};
	uint64_t times[3] = {rx->t_req, t_stop, mono_ns()};
	write_state(d, f, rx->cl, &k, times, rx->format);
	bool ok = fflush(f) == 0 && !ferror(f);
	ok = fclose(f) == 0 && ok;
	if (!ok) {
		snprintf(rx->err, sizeof(rx->err), "memfd: cannot write the state: the daemon carries on");
		close(mfd);
		free(k.fds);
		return -1;
	}
	/* read back as the new image will: a state it cannot read would leave no daemon */
	char why[200] = "cannot read it";
	FILE *g = lseek(mfd, 0, SEEK_SET) == 0 ? fdopen_dup(mfd, "re") : NULL;
	ok = g && state_check(g, why, sizeof(why)) == 0;
	if (g)
		fclose(g);
	if (!ok) {
		snprintf(rx->err, sizeof(rx->err), "the state written does not read back (%s): "
			 "not re-executing: the daemon carries on", why);
		close(mfd);
		free(k.fds);
		return -1;
	}
	keep_add(&k, mfd);
	char *argv[] = {arg0(), "daemon", "-c", (char *)d->cfg_path, "-S", (char *)d->socket,
			NULL, NULL, NULL};
	int na = 6; /* the options it was given: its reloads stay strict */
	if (d->reaper)
		argv[na++] = "--reaper";
	if (d->strict)
		argv[na++] = "--strict";
	snprintf(env, sizeof(env), "%d", mfd);
	setenv("EVMON_REEXEC_STATE", env, 1);
	notify_export(true);
	size_t up = 0; /* with a process: what keeps running, the rest is kept as it is */
	for (struct unit *u = d->first; u; u = u->next)
		up += u->svc && evm_service_proc(u->svc);
	/* 8 lacks only the old copies' stops, and a re-exec into it waits for them */
	if (rx->format < 8)
		dlog("re-executing %s: %zu of %zu services keep running (state format %d, the newest it "
		     "reads: without %s%s%s%s%sthe notify socket (bound anew) and the fd:N pipes of "
		     "services not ready yet)", rx->exe, up, d->nunits, rx->format,
		     rx->format < 3 ? "the pidfds (it checks each process in /proc), the "
				      "connections with a request half read (closed), the times, "
				    : "",
		     rx->format < 4 ? "the requester's request id and events subscription, the "
				      "requests waiting for their services (closed), "
				    : "",
		     rx->format < 5 ? "the cgroup watches (each cgroup is read and watched anew), "
				    : "",
		     rx->format < 6 ? "the files of the watches (each is checked anew), " : "",
		     rx->format < 7 ? "the starts still waiting, the stops waiting for dependents "
				      "and the restarts under way (not done), "
				    : "");
	else
		dlog("re-executing %s: %zu of %zu services keep running", rx->exe, up, d->nunits);
	stdsink_flush(); /* what waits for a slow stdout/stderr would not cross the exec */
	fflush(NULL);
	keep_cloexec(&k, false);
	execv(rx->exe, argv);
	int e = errno;
	keep_cloexec(&k, true);
	unsetenv("EVMON_REEXEC_STATE");
	notify_export(false);
	close(mfd);
	free(k.fds);
	snprintf(rx->err, sizeof(rx->err), "exec %s: %s: the daemon carries on", rx->exe, strerror(e));
	return -1;
}

/* A handed-over subscriber's patterns, parsed from their JSON array. */
struct patterns {
	cJSON *a;
	const char **p;
};

/* json's patterns into h (subscribed): false when they cannot be read. */
static bool patterns_take(const char *json, struct control_handover *h, struct patterns *ps)
{
	ps->a = cJSON_Parse(json);
	int n = cJSON_IsArray(ps->a) ? cJSON_GetArraySize(ps->a) : -1;
	ps->p = n > 0 ? calloc((size_t)n, sizeof(*ps->p)) : NULL;
	bool ok = n == 0 || ps->p;
	int k = 0;
	const cJSON *it;
	/* one walk: cJSON_GetArrayItem walks from the first each time (8,000 patterns of
	 * 1,000 subscribers: minutes of a frozen loop) */
	const cJSON *arr = ps->p ? ps->a : NULL;
	cJSON_ArrayForEach(it, arr)
		ok = (ps->p[k++] = cJSON_GetStringValue(it)) && ok;
	h->subscribed = true;
	h->patterns = ps->p;
	h->n = n > 0 ? (size_t)n : 0;
	return ok;
}

static void patterns_free(struct patterns *ps)
{
	free(ps->p);
	cJSON_Delete(ps->a);
}

void reexec_answer(struct daemon *d, struct record *r, size_t kept)
{
	struct control_handover h = {.fd = r->client_fd, .input = r->client_in,
				     .inlen = r->client_inlen};
	struct patterns ps = {0};
	struct client *cl;
	r->client_fd = -1; /* ours now, or closed */
	/* it followed events before it asked: it goes on following them */
	if (r->client_sub && !patterns_take(r->client_sub, &h, &ps)) {
		dlog("re-exec: cannot read the events patterns of who asked: it follows none now");
		h.subscribed = false;
	}
	int e = control_take_follower(d->ctl, &h, &cl);
	patterns_free(&ps);
	if (e < 0)
		return;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddTrueToObject(o, "ok");
	cJSON_AddNumberToObject(o, "pid", getpid());
	cJSON_AddStringToObject(o, "version", evm_version());
	cJSON_AddNumberToObject(o, "services", (double)d->nunits);
	cJSON_AddNumberToObject(o, "kept", (double)kept);
	cJSON *id = r->client_id ? cJSON_Parse(r->client_id) : NULL; /* echoed, as in every reply */
	if (id)
		cJSON_AddItemToObject(o, "id", id);
	control_reply(cl, o); /* sent from the loop; then its next requests, if it sent any */
	cJSON_Delete(o);
}

/*
 * Where the pause went: the times of the re-exec's steps (CLOCK_MONOTONIC,
 * the same clock on both sides of the exec), logged once the new image's
 * first turn has served what waited.
 */
struct pause {
	uint64_t t[8]; /* request, last turn, memfd, main, config, state, units, takeover */
};

static void on_served(struct evm_timer *tm, void *data)
{
	struct pause *p = data;
	uint64_t *t = p->t, now = mono_ns();
	(void)tm;
#define MS(a, b) (((b) > (a) ? (b) - (a) : 0) / 1e6)
	dlog("re-exec: the loop served again %.1f ms after its last turn (the state written "
	     "%.1f, exec and start %.1f, config read %.1f, state read %.1f, services made %.1f, "
	     "takeover %.1f, first turn %.1f ms); %.1f ms before it, asking the binary its state "
	     "format, the loop served on", MS(t[1], now), MS(t[1], t[2]), MS(t[2], t[3]),
	     MS(t[3], t[4]), MS(t[4], t[5]), MS(t[5], t[6]), MS(t[6], t[7]), MS(t[7], now),
	     MS(t[0], t[1]));
#undef MS
	free(p);
}

/*
 * A request that waited for its reply across the exec (start/stop/... with
 * "wait"): its action was done, its wait is not carried over: said, with
 * its id, before whatever it sent after it is answered.
 */
static void answer_cut(struct client *cl, const char *id)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddFalseToObject(o, "ok");
	cJSON_AddStringToObject(o, "error", "the daemon re-executed itself (evmon ctl reexec) while "
				"this request waited for its services: what it asked for was done, its "
				"wait was not carried over (evmon ctl status shows where they are)");
	cJSON *j = cJSON_Parse(id);
	if (j && !cJSON_IsNull(j))
		cJSON_AddItemToObject(o, "id", j);
	else
		cJSON_Delete(j);
	control_reply(cl, o);
	cJSON_Delete(o);
}

void reexec_done(struct daemon *d, struct record *r, size_t kept)
{
	size_t followers = 0;
	for (size_t i = 0; i < r->nfollowers; i++) {
		struct rec_follower *rf = &r->followers[i];
		struct control_handover h = {.fd = rf->fd, .input = rf->input, .inlen = rf->inlen};
		struct patterns ps = {0};
		struct client *cl = NULL;
		rf->fd = -1; /* ours now, or closed */
		if (rf->patterns && !patterns_take(rf->patterns, &h, &ps)) {
			close(h.fd);
		} else if (control_take_follower(d->ctl, &h, &cl) == 0) {
			followers += h.subscribed;
			if (rf->cut_id)
				answer_cut(cl, rf->cut_id);
		}
		patterns_free(&ps);
	}
	/* what the followers see first: the exec itself (no service changed) */
	char msg[200];
	snprintf(msg, sizeof(msg), "re-executed: evmon %s, %zu of %zu services kept running",
		 evm_version(), kept, d->nunits);
	cJSON *ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "event", "reexec");
	cJSON_AddStringToObject(ev, "message", msg);
	cJSON_AddNumberToObject(ev, "pid", getpid());
	cJSON_AddStringToObject(ev, "version", evm_version());
	cJSON_AddNumberToObject(ev, "services", (double)d->nunits);
	cJSON_AddNumberToObject(ev, "kept", (double)kept);
	cJSON_AddNumberToObject(ev, "followers", (double)followers);
	events_publish(d, NULL, ev);
	struct pause *p = r->t_stop ? malloc(sizeof(*p)) : NULL;
	if (p) {
		uint64_t t[] = {r->t_req, r->t_stop, r->t_write, d->t_main, d->t_config, d->t_read,
				d->t_units, mono_ns()};
		memcpy(p->t, t, sizeof(t));
		if (evm_timer_add(d->loop, 0, on_served, p, NULL) < 0)
			free(p);
	}
}
