/*
 * daemon.c - `evmon daemon`: supervise the services of a config file on one
 * loop, with a control socket (control.c, requests.c), reload (units.c),
 * and a one-line log of every event on stderr (daemonlog.c).
 *
 * Runs in the foreground. TERM/INT/HUP/USR1 are blocked before anything
 * else and read from a signalfd on the loop (SIGCHLD stays the library's).
 * TERM/INT stop the loop; the services are then stopped by evm_shutdown
 * with the loop still serving the socket, so `ctl status` and `ctl events`
 * keep working while they stop. HUP reloads, USR1 reopens the log files.
 * Its command line and --check are daemonargs.c's.
 */
#include "daemon.h"

#include "cgroups.h"
#include "daemonargs.h"
#include "cli.h"
#include "daemonlog.h"
#include "fdreserve.h"
#include "notify.h"
#include "notifysock.h"
#include "proto.h"
#include "ready.h"
#include "state.h"
#include "stdsink.h"
#include "waits.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* descriptors kept for control clients and log files: an eighth of the limit, at most 64 */
#define FD_RESERVE_MAX 64

/* ------------------------------------------------------------- events */

static void status_changed(struct daemon *d);
static void essential_check(struct daemon *d, struct unit *u, const struct evm_event *ev);

static void on_log_report(const char *service, const char *file, int error, const char *msg,
			  void *data)
{
	events_log(data, service, file, error, msg);
}

/*
 * Everything the library reports: the unit's counters first (waits read
 * them), then the records, then the dependents it lets start or stop, then
 * the waits and STATUS= that may be over.
 */
static void on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct daemon *d = data;
	(void)loop;
	struct unit *successor = ev->type == EVM_EV_SERVICE ? units_on_event(d, ev) : NULL;
	struct unit *u = ev->type == EVM_EV_SERVICE && ev->name ? unit_find(d, ev->name) : NULL;
	if (u && u->svc != ev->service)
		u = NULL;
	if (u)
		health_on_event(d, u, ev); /* its record carries the new health */
	/* a re-exec's adoptions change nothing: one line says how many were kept */
	if (!(d->quiet_adopt && ev->old_state == EVM_STATE_STOPPED &&
	      (ev->state == EVM_STATE_RUNNING || ev->state == EVM_STATE_STARTING ||
	       ev->state == EVM_STATE_STOPPING)))
		events_from_library(d, ev);
	if (u) {
		health_announce(d, u);
		deps_changed(d, u); /* after its record: a dependent's start is told after */
		if (u->conf->essential)
			essential_check(d, u, ev);
	}
	/* a warning that names a service: a stop for a failure began (the record says so) */
	if (ev->type == EVM_EV_SERVICE || (ev->type == EVM_EV_WARNING && ev->service))
		state_changed(d);
	/* before the waits: one for the successor of an old copy now gone waits for its start */
	if (successor)
		units_start_successor(d, successor);
	if (ev->type == EVM_EV_SERVICE) {
		if (d->waiters)
			waiters_check(d);
		status_changed(d);
	}
	if (d->retry_stops) { /* an old copy a stop waited for is gone */
		d->retry_stops = false;
		deps_retry_stops(d);
	}
	if (d->wake_wanted && !d->defer_start && !d->stopping) { /* instances changed */
		d->wake_wanted = false;
		deps_start_wanted(d);
	}
}

/*
 * An essential service ended: every service is stopped in order and the
 * daemon exits with its code (128+N for signal N), like s6-overlay's
 * stage 2 or compose's --abort-on-container-exit. essential = true: when
 * it fails for good (fatal) or exits and its policy does not restart it;
 * essential = exit: whenever its process exits, but for a stop that was
 * asked for.
 */
static void essential_check(struct daemon *d, struct unit *u, const struct evm_event *ev)
{
	/* stopped for a failure (health_action = stop): over for good too */
	bool failed = ev->state == EVM_STATE_FATAL || (u->failed_stop && ev->state == EVM_STATE_STOPPED);
	bool end = failed || ev->state == EVM_STATE_EXITED ||
		   (u->conf->essential == ESS_EXIT && ev->exit && ev->old_state != EVM_STATE_STOPPING);
	if (ev->state == EVM_STATE_STARTING || ev->state == EVM_STATE_RUNNING)
		u->failed_stop = false;
	if (!end || d->stopping || d->exit_code >= 0)
		return;
	struct evm_service_info info;
	evm_service_info(u->svc, &info);
	const struct evm_exit *x = ev->exit ? ev->exit : info.has_exit ? &info.last_exit : NULL;
	char why[300];
	if (x && x->signal) {
		d->exit_code = 128 + x->signal;
		snprintf(why, sizeof(why), "essential service %s was killed by signal %d (%s)",
			 u->name, x->signal, evm_state_name(ev->state));
	} else if (x && !x->status_unknown) {
		d->exit_code = x->code & 0xff;
		snprintf(why, sizeof(why), "essential service %s exited with code %d (%s)", u->name,
			 x->code, evm_state_name(ev->state));
	} else {
		d->exit_code = 1; /* never ran: the spawn failed */
		snprintf(why, sizeof(why), "essential service %s is %s", u->name,
			 evm_state_name(ev->state));
	}
	/* a failure is never a success for the container: a crash loop of exits 0 gave up */
	if (failed && d->exit_code == 0) {
		d->exit_code = 1;
		size_t l = strlen(why);
		snprintf(why + l, sizeof(why) - l, ", a failure: exit status 1");
	}
	daemon_request_shutdown(d, why);
}

void daemon_essential_blocked(struct daemon *d, struct unit *u, bool asked)
{
	if (!u->conf->essential || d->stopping || d->exit_code >= 0)
		return;
	char why[600];
	snprintf(why, sizeof(why), "essential service %s cannot run: %s", u->name,
		 u->blocked ? u->blocked : "a dependency failed");
	if (asked) {
		dlog("%s: its start was a client's: the daemon carries on", why);
		return;
	}
	d->exit_code = 1;
	daemon_request_shutdown(d, why);
}

/* ------------------------------------------------------------ sd_notify */

static void on_status_timer(struct evm_timer *t, void *data)
{
	struct daemon *d = data;
	char sum[256];
	(void)t;
	d->status_timer = NULL;
	if (d->stopping)
		return;
	events_summary(d, sum, sizeof(sum));
	notify_send("STATUS=%s", sum);
}

/*
 * A state changed: tell the manager the new counts, at most once a second
 * (a storm of 10,000 transitions is one datagram, and nothing ticks while
 * nothing changes).
 */
static void status_changed(struct daemon *d)
{
	if (notify_enabled() && d->ready && !d->stopping && !d->status_timer)
		evm_timer_add(d->loop, 1000, on_status_timer, d, &d->status_timer);
}

/* WatchdogSec=: proof that the loop still turns (a hung loop misses it) */
static void on_watchdog(struct evm_timer *t, void *data)
{
	struct daemon *d = data;
	(void)t;
	notify_send("WATCHDOG=1");
	if (evm_timer_add(d->loop, notify_watchdog_ms(), on_watchdog, d, &d->watchdog_timer) < 0)
		d->watchdog_timer = NULL;
}

/* ------------------------------------------------------------ signals */

static const int handled[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};

/*
 * As PID 1 of a PID namespace, SIGQUIT and SIGPWR too: the kernel drops a
 * signal PID 1 does not handle, so a container whose stop signal is one of
 * them (STOPSIGNAL SIGQUIT, nginx's image; lxc-stop's SIGPWR) was not
 * stopped until its runtime's SIGKILL, its services killed unstopped.
 * Elsewhere they keep their default action (documented: as kill -9).
 */
static void signal_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
		sigaddset(set, handled[i]);
	if (getpid() == 1) {
		sigaddset(set, SIGQUIT);
		sigaddset(set, SIGPWR);
	}
}

void daemon_request_shutdown(struct daemon *d, const char *why)
{
	if (d->stopping) {
		dlog("%s: already shutting down", why);
		return;
	}
	d->stopping = true;
	/* those up: the essential service that ended, or one a user stopped, is not one */
	size_t n = state_shutdown_begins(d);
	if (!n) {
		dlog("%s: no service is up: exiting", why);
		notify_send("STOPPING=1\nSTATUS=%s: exiting", why);
	} else {
		dlog("%s: stopping %zu service%s", why, n, n == 1 ? "" : "s");
		notify_send("STOPPING=1\nSTATUS=%s: stopping %zu service%s", why, n,
			    n == 1 ? "" : "s");
	}
	evm_loop_stop(d->loop);
}

static void on_signal(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct daemon *d = data;
	struct signalfd_siginfo si;
	(void)io;
	(void)revents;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		char why[80];
		const char *name = cli_signal_name((int)si.ssi_signo);
		if (si.ssi_pid)
			snprintf(why, sizeof(why), "received SIG%s from pid %u", name ? name : "?",
				 si.ssi_pid);
		else /* pid 0: the kernel's (a terminal's ^C), or from outside our pid namespace */
			snprintf(why, sizeof(why), "received SIG%s from %s", name ? name : "?",
				 si.ssi_code == SI_KERNEL ? "the kernel" : "outside its pid namespace");
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
		case SIGQUIT: /* as PID 1 only (signal_set) */
		case SIGPWR:
			daemon_request_shutdown(d, why);
			break;
		case SIGHUP:
			if (d->stopping) {
				dlog("%s: shutting down, not reloading", why);
			} else {
				dlog("%s: reloading %s", why, d->cfg_path);
				cJSON *r = cJSON_CreateObject();
				units_reload(d, r);
				cJSON_Delete(r);
				waiters_check(d);
			}
			break;
		case SIGUSR1: {
			char err[400];
			dlog("%s: reopening the log files", why);
			units_reopen_logs(d, err, sizeof(err));
			break;
		}
		case SIGUSR2: {
			char err[PATH_MAX + 200];
			if (daemon_reexec(d, NULL, err, sizeof(err)) == 0)
				dlog("%s: re-executing", why);
			else /* still starting, one under way, shutting down, no binary */
				dlog("%s: %s", why, err);
			break;
		}
		}
	}
}

/* ------------------------------------------------------------- command */

static void control_log(const char *msg, void *data)
{
	(void)data;
	dlog("%s", msg);
}

/* A client to accept and no descriptor: one from the reserve, else a log file's. */
static bool control_need_fd(void *data)
{
	struct daemon *d = data;
	if (fdres_give())
		return true;
	return d->logs && logs_close_one(d->logs) && fdres_give();
}

static void control_fd_closed(void *data)
{
	(void)data;
	fdres_take();
}

/*
 * The services' cgroups (cgroups.h). After the socket: the base is named
 * after it, and only one live daemon holds it.
 */
static int daemon_cgroups(struct daemon *d)
{
	char why[600];
	struct record *rec = d->rec;
	if (cgroups_open(d->cfg->cgroup, d->socket, rec ? rec->cg_home : NULL, rec != NULL, &d->cg,
			 why, sizeof(why)) < 0) {
		fprintf(stderr, "evmon: daemon: cgroup = yes: %s\n", why);
		return -1;
	}
	if (!d->cg && d->cfg->cgroup == CGROUP_AUTO)
		dlog("no cgroups: %s: a service's processes are tracked by session%s", why,
		     d->reaper ? " (the daemon is their subreaper)" : "");
	d->cg_kept = cgroups_kept(d->cg);
	/* after a re-exec, the old image's cgroup watches, before any is made */
	if (d->cg && rec && rec->cgw_fd >= 0) {
		int r = evm_cgroup_watch_inherit(d->loop, rec->cgw_fd);
		if (r == 0)
			rec->cgw_fd = -1; /* the loop's now */
		else
			dlog("re-exec: cannot take over the cgroup watches: %s: each service's cgroup "
			     "is watched anew", strerror(-r));
	}
	if (rec && rec->cgw_fd >= 0) { /* not taken (or no cgroups now): no child may inherit it */
		close(rec->cgw_fd);
		rec->cgw_fd = -1;
	}
	return 0;
}

/*
 * EVMON_DAEMON_ID, in every service's environment: the one of the daemon
 * before us (the record's), else a new one. Services started by any daemon
 * of this line carry it, so a daemon started after a crash tells them from
 * every other process (takeover.c's end_unrecorded), where a variable a user
 * may set too (EVMON_SOCKET) could name their shell. Gone with the record
 * at a clean exit.
 */
static void daemon_lineage(struct daemon *d)
{
	uint64_t id = d->rec ? d->rec->lineage : 0;
	while (!id && getrandom(&id, sizeof(id), GRND_NONBLOCK) < 0 && errno == EINTR)
		; /* not blocking for the entropy pool: an init early at boot must not wait */
	if (!id) /* no entropy to be had: unique enough on this machine */
		id = (uint64_t)getpid() << 32 ^ (uint64_t)mono_ns();
	d->lineage = id;
	char v[32];
	snprintf(v, sizeof(v), "%016" PRIx64, id);
	setenv("EVMON_DAEMON_ID", v, 1);
	unsetenv("EVMON_CHECK"); /* a check's mark (config.c): in our environment, every service's */
}

/*
 * The notify socket of the daemon before us, before any unit is made: its
 * services' NOTIFY_SOCKET names it (READY=1, WATCHDOG=1 and the rest must
 * reach us). After the cgroups: the socket finds their base.
 */
static void daemon_notifysock(struct daemon *d)
{
	struct record *rec = d->rec;
	if (!rec)
		return;
	if (rec->notify_fd >= 0 && notifysock_inherit(d, rec->notify_fd, NULL) == 0)
		rec->notify_fd = -1; /* ours now; else record_free closes it */
	else if (rec->notify[0] && !rec->reexec)
		notifysock_inherit(d, -1, rec->notify);
}

/* The config, checked (--strict: its problems are errors): 0, or -1 (said on stderr). */
static int open_config(struct daemon *d, const struct daemon_options *o)
{
	struct errlist errs = {0};
	if (config_load(o->cfg_path, &d->cfg, &errs) < 0) {
		daemon_print_errors(&errs);
		fprintf(stderr, "evmon daemon: %s: %zu error%s: not starting\n", o->cfg_path,
			errlist_total(&errs), errlist_total(&errs) == 1 ? "" : "s");
		errlist_free(&errs);
		return -1;
	}
	const struct config *c = d->cfg;
	d->at_start.socket = c->socket ? strdup(c->socket) : NULL;
	d->at_start.metrics_listen = c->metrics_listen ? strdup(c->metrics_listen) : NULL;
	if ((c->socket && !d->at_start.socket) || (c->metrics_listen && !d->at_start.metrics_listen)) {
		fprintf(stderr, "evmon daemon: out of memory\n");
		return -1;
	}
	d->at_start.max_clients = c->max_clients;
	d->at_start.events_buffer_total = c->events_buffer_total;
	d->at_start.idle_timeout_ms = c->idle_timeout_ms;
	d->at_start.cgroup = c->cgroup;
	daemon_print_problems(d->cfg, o->strict);
	if (o->strict && (d->cfg->problems.n || d->cfg->notes.n)) {
		size_t n = errlist_total(&d->cfg->problems) + errlist_total(&d->cfg->notes);
		fprintf(stderr, "evmon daemon: %s: %zu error%s (--strict): not starting\n",
			o->cfg_path, n, n == 1 ? "" : "s");
		return -1;
	}
	return 0;
}

/* The socket's path; the default one's directory made private to us first. */
static int choose_socket(struct daemon *d, const struct daemon_options *o)
{
	char err[512];
	d->socket = strdup(o->socket ? o->socket : d->cfg->socket ? d->cfg->socket : proto_default_socket());
	if (!d->socket) {
		fprintf(stderr, "evmon daemon: out of memory\n");
		return -1;
	}
	d->socket_from_cli = o->socket != NULL;
	const char *pdir = proto_default_dir();
	if (!o->socket && !d->cfg->socket && pdir && proto_private_dir(pdir, true, err, sizeof(err)) < 0) {
		fprintf(stderr, "evmon daemon: control socket %s: %s\n"
			"evmon daemon: remove it, or choose a socket with -S PATH or $EVMON_SOCKET\n",
			d->socket, err);
		return -1;
	}
	return 0;
}

/* The loop, the fd reserve and the signals (set: blocked, read through a signalfd). */
static int open_loop(struct daemon *d, const struct daemon_options *o, const sigset_t *set)
{
	/* without cgroups, what a service leaves behind is re-parented to us (tree, below) */
	d->reaper = o->reaper || !cgroups_possible(d->cfg->cgroup);
	struct evm_loop_opts lo = {.flags = d->reaper ? EVM_LOOP_REAPER : 0};
	int r = evm_loop_new(&d->loop, &lo);
	if (r < 0) {
		fprintf(stderr, "evmon daemon: cannot create the loop: %s\n", strerror(-r));
		return -1;
	}
	/*
	 * Before any pipe or pidfd: whatever takes the rest of the descriptors,
	 * `evmon ctl` and the log files keep a few (fdreserve.h).
	 */
	struct rlimit nofile;
	rlim_t hard = getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_max : 1024;
	fdres_init(hard / 8 < FD_RESERVE_MAX ? (unsigned)(hard / 8) : FD_RESERVE_MAX);
	d->sigfd = signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d->sigfd < 0 || evm_io_add(d->loop, d->sigfd, EVM_READ, on_signal, d, &d->sigio) < 0) {
		fprintf(stderr, "evmon daemon: signalfd: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* The control socket: made, or after a re-exec the listener the old image left open. */
static int open_control(struct daemon *d)
{
	char err[512];
	struct control_opts co = {.path = d->socket, .max_clients = d->cfg->max_clients,
				  .max_pending = d->cfg->client_buffer,
				  .idle_ms = d->cfg->idle_timeout_ms,
				  .max_total = d->cfg->events_buffer_total, .on_request = requests_handle,
				  .on_log = control_log, .need_fd = control_need_fd,
				  .fd_closed = control_fd_closed, .data = d};
	if (d->rec && d->rec->reexec && d->rec->ctl_fd >= 0) { /* the listener never closed */
		co.inherit = true;
		co.inherit_fd = d->rec->ctl_fd;
		co.inherit_lock = d->rec->lock_fd;
	}
	if (control_open(d->loop, &co, &d->ctl, err, sizeof(err)) < 0) {
		fprintf(stderr, "evmon daemon: control socket %s\n", err);
		return -1;
	}
	if (d->rec)
		d->rec->ctl_fd = d->rec->lock_fd = -1; /* the control's now */
	return 0;
}

/* The services' log files; a log_dir that cannot be used now is said, not fatal. */
static int open_logs(struct daemon *d)
{
	char err[512];
	int r;
	d->logs = logs_new(d->loop, on_log_report, d);
	if (!d->logs) {
		fprintf(stderr, "evmon daemon: out of memory\n");
		return -1;
	}
	if (d->cfg->log_dir && (r = logs_set_dir(d->logs, d->cfg->log_dir, err, sizeof(err))) < 0) {
		char msg[700];
		snprintf(msg, sizeof(msg), "%s: the output of services with stdout or stderr = log "
			 "is discarded until it can be written", err);
		events_log(d, NULL, NULL, r, msg);
	}
	return 0;
}

/* The config, the loop, the signals, the socket, the logs: 0, or -1 (said on stderr). */
static int daemon_open(struct daemon *d, const struct daemon_options *o, const sigset_t *set)
{
	char err[512], nerr[400];
	if (open_config(d, o) < 0 || choose_socket(d, o) < 0)
		return -1;
	d->t_config = mono_ns();
	int notify = notify_init(nerr, sizeof(nerr)); /* before anything can inherit NOTIFY_SOCKET */
	if (open_loop(d, o, set) < 0)
		return -1;
	if (state_init(d) < 0)
		return -1;
	if (open_control(d) < 0)
		return -1;
	stdsink_attach(d->loop);
	if (notify < 0)
		dlog("%s", nerr);
	if (state_load(d) < 0) /* holding the socket's lock: the record is ours */
		return -1;
	/* not fatal: the services matter more than their metrics */
	if (d->cfg->metrics_listen &&
	    metrics_http_open(d, d->cfg->metrics_listen, &d->metrics, err, sizeof(err)) < 0)
		dlog("metrics_listen %s: no metrics endpoint", err);
	evm_subscribe(d->loop, EVM_EV_SERVICE | EVM_EV_WARNING | EVM_EV_ORPHAN, on_event, d, &d->sub);
	if (open_logs(d) < 0)
		return -1;
	if (daemon_cgroups(d) < 0)
		return -1;
	daemon_notifysock(d);
	daemon_lineage(d);
	return 0;
}

/*
 * Without cgroups the services are stopped by session: what escaped it
 * (setsid, then re-parented to us) is still our descendant, and ends
 * with us, as the cgroups' leftovers do in cgroups_close. Its zombie is
 * reaped by whoever reaps us. Not after refusing a newer state record:
 * what runs then belongs to the evmon that wrote it.
 */
static void end_escapees(struct daemon *d)
{
	if (d->cg || !d->reaper || d->state_newer)
		return;
	int n = evm_tree_signal(0, SIGKILL);
	if (n > 0)
		dlog("killed %d process%s the services left behind (out of their sessions)", n,
		     n == 1 ? "" : "es");
	/* gone before we are: whoever waits for our exit finds none of them running */
	for (int i = 0; n > 0 && i < 200 && evm_tree_signal(0, 0) > 0; i++)
		usleep(10000);
}

/*
 * shutdown_timeout passed: whatever is still running gets SIGKILL (stopped
 * first, so that no policy restarts it), so the container's runtime, which
 * kills everything at its own deadline, finds the daemon gone already.
 */
static void on_shutdown_timeout(struct evm_timer *t, void *data)
{
	struct daemon *d = data;
	char dur[32];
	(void)t;
	dlog("shutdown_timeout (%s) passed: SIGKILL to every service still running",
	     proto_duration(d->cfg->shutdown_timeout_ms, dur, sizeof(dur)));
	for (struct unit *u = d->first; u; u = u->next) {
		if (!u->svc || evm_service_state(u->svc) == EVM_STATE_STOPPED)
			continue;
		evm_service_stop(u->svc);
		evm_service_signal(u->svc, SIGKILL);
		if (u->cg) /* what left the process group too */
			evm_cgroup_kill(u->cg);
	}
	/* and the old copies of replaced or removed services still stopping (the loop waits
	 * for them too), with their cgroup: its unit's, or a removed name's */
	for (const char *nm = NULL; (nm = units_next_draining(d, nm));) {
		struct evm_service *old;
		for (size_t i = 0; (old = units_old(d, nm, i, NULL)); i++)
			evm_service_signal(old, SIGKILL);
		struct unit *u = unit_find(d, nm);
		struct evm_cgroup *cg = NULL;
		if (u && u->cg)
			evm_cgroup_kill(u->cg);
		else if (d->cg && cgroups_service(d->cg, nm, &cg) == 0)
			evm_cgroup_kill(cg);
		evm_cgroup_free(cg);
	}
}

/*
 * /proc/self names us by our pid only in a /proc of our PID namespace: not
 * after unshare -p without --mount-proc, nor in a container whose spec
 * mounts none. Said, as evmon init says it: what reads /proc reads others.
 */
static void check_proc(void)
{
	char buf[32], want[32];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);
	snprintf(want, sizeof(want), "%d", (int)getpid());
	if (n > 0 && (buf[n] = '\0', !strcmp(buf, want)))
		return;
	dlog("/proc is not this PID namespace's (or is missing): without cgroups a stop misses "
	     "what left a service's process group, and a re-exec or a takeover after a crash "
	     "reads other processes' start times; mount this namespace's /proc (unshare "
	     "--mount-proc)");
}

void daemon_started(struct daemon *d)
{
	d->started = true;
	check_proc();
	dlog("daemon %d started: %zu services from %s, control socket %s%s%s%s%s%s", (int)getpid(),
	     d->nunits, d->cfg_path, d->socket, d->reaper ? ", reaping orphans" : "",
	     d->cg ? ", cgroup " : "", d->cg ? cgroups_base(d->cg) : "",
	     d->metrics ? ", metrics on http://" : "", d->metrics ? metrics_http_address(d->metrics) : "");
	/*
	 * Ready: the control socket listens and every autostart service has
	 * been spawned (or failed to be). Not "every service is RUNNING": a
	 * crash loop or a long start_secs would hold the manager's start job
	 * (and everything ordered after it) until it times out. Whoever needs
	 * one service up waits for it: evmon ctl start NAME.
	 */
	state_started(d);
	char sum[256];
	events_summary(d, sum, sizeof(sum));
	d->ready = true;
	notify_send("READY=1\nSTATUS=%s", sum);
	if (notify_watchdog_ms())
		on_watchdog(NULL, d);
}

/* Start the services, serve until asked to stop, stop them all. The exit code. */
static int daemon_run(struct daemon *d, const struct daemon_options *o)
{
	(void)o;
	/* the services start from the loop, a batch at a time; then daemon_started */
	if (units_load(d) < 0)
		dlog("out of memory creating the services");
	int r = evm_loop_run(d->loop);
	if (r < 0)
		dlog("loop failed: %s: stopping every service", strerror(-r));
	reexec_cancel(d); /* its client is told while the loop serves the shutdown */
	if (d->start_timer) /* stopped while starting: the rest stay stopped */
		evm_timer_cancel(d->start_timer);
	d->start_timer = NULL;
	d->start_next = NULL;
	if (!d->stopping) { /* the loop failed: the shutdown was not announced */
		d->stopping = true;
		size_t n = state_shutdown_begins(d);
		notify_send("STOPPING=1\nSTATUS=stopping %zu service%s", n, n == 1 ? "" : "s");
	}
	if (d->status_timer)
		evm_timer_cancel(d->status_timer);
	d->status_timer = NULL;
	if (d->cfg->shutdown_timeout_ms &&
	    evm_timer_add(d->loop, d->cfg->shutdown_timeout_ms, on_shutdown_timeout, d,
			  &d->shutdown_timer) < 0)
		dlog("shutdown_timeout: cannot arm its timer: each service's stop_timeout applies alone");
	else if (d->cfg->shutdown_timeout_ms) {
		uint64_t now = evm_loop_now(d->loop), ms = d->cfg->shutdown_timeout_ms;
		/* saturated: a deadline past 2^64 ns is "never", not a wrap to one already past */
		d->shutdown_end_ns = ms > (UINT64_MAX - now) / 1000000 ? UINT64_MAX : now + ms * 1000000;
	}
	deps_stop_all(d); /* dependents first, sharing shutdown_timeout; the loop still serves */
	r = evm_shutdown(d->loop, 0);
	evm_timer_cancel(d->shutdown_timer); /* clears it */
	if (r < 0)
		dlog("shutdown: %s", strerror(-r));
	waiters_finish(d);
	if (d->watchdog_timer) /* kept through the shutdown: stopping services can take a while */
		evm_timer_cancel(d->watchdog_timer);
	d->watchdog_timer = NULL;
	state_fini(d); /* every service is down: nothing to take over */
	notifysock_remove(d); /* the lock still held: the file is not another daemon's yet */
	dlog("all services stopped: exiting");
	evm_unsubscribe(d->sub); /* freeing the units below is not news */
	d->sub = NULL;
	return r < 0 ? 1 : d->exit_code >= 0 ? d->exit_code : 0;
}

static void daemon_close(struct daemon *d)
{
	reexec_cancel(d);
	evm_timer_cancel(d->state_timer);
	d->state_closed = true;
	free(d->state_path);
	record_free(d->rec);
	events_free(d);
	metrics_http_close(d->metrics);
	d->metrics = NULL;
	control_close(d->ctl);
	d->ctl = NULL;
	units_free(d);
	health_free_all(d);
	ready_checks_free();
	notifysock_close(d);
	logs_free(d->logs);
	evm_io_free(d->sigio);
	if (d->sigfd >= 0)
		close(d->sigfd);
	stdsink_detach();
	evm_loop_free(d->loop);
	reexec_release(d);
	end_escapees(d); /* after the loop: its own children (spawn helper, checks) are gone */
	cgroups_close(d->cg); /* after the loop: its spawn helper may be in our leaf */
	fdres_free();
	notify_free();
	config_free(d->cfg);
	free(d->socket);
	free(d->at_start.socket);
	free(d->at_start.metrics_listen);
}

int cmd_daemon(int argc, char **argv)
{
	uint64_t t_main = mono_ns();
	fdres_stdio();
	struct daemon_options o;
	int rc = daemon_parse_options(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (o.check)
		return daemon_check_only(o.cfg_path, o.socket, o.strict);
	/*
	 * Fixed malloc thresholds: glibc raises them after each big free, so
	 * the buffers of a large status answer would stay in the heap for
	 * good. Fixed, big buffers are mmap'ed and returned when freed.
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024);
	/* before any thread or child exists, so every thread inherits the mask */
	sigset_t set;
	signal_set(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct daemon d = {.cfg_path = o.cfg_path, .reaper = o.reaper, .strict = o.strict,
			   .sigfd = -1, .exit_code = -1, .t_main = t_main};
	rc = daemon_open(&d, &o, &set) < 0 ? 1 : daemon_run(&d, &o);
	daemon_close(&d);
	return rc;
}
