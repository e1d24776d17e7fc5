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
 */
#include "daemon.h"

#include "cli.h"
#include "daemonlog.h"
#include "fdreserve.h"
#include "notify.h"
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* descriptors kept for control clients and log files: an eighth of the limit, at most 64 */
#define FD_RESERVE_MAX 64

/* ------------------------------------------------------------- events */

static void status_changed(struct daemon *d);

void daemon_add_time(cJSON *obj, const char *key, const struct timespec *ts)
{
	char buf[40];
	cJSON_AddStringToObject(obj, key, proto_time(ts, buf, sizeof(buf)));
}

void daemon_publish(struct daemon *d, const char *service, cJSON *ev)
{
	if (!cJSON_GetObjectItemCaseSensitive(ev, "time")) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		daemon_add_time(ev, "time", &ts);
	}
	char line[1024];
	proto_event_line(ev, line, sizeof(line));
	dlog("%s", line);
	if (d->ctl) {
		char *s = cJSON_PrintUnformatted(ev);
		if (s) {
			control_publish(d->ctl, service, s);
			cJSON_free(s);
		}
	}
	cJSON_Delete(ev);
}

void daemon_log_event(struct daemon *d, const char *service, const char *file, int error,
		      const char *msg)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", "log");
	if (service)
		cJSON_AddStringToObject(o, "service", service);
	if (file)
		cJSON_AddStringToObject(o, "file", file);
	if (error)
		cJSON_AddStringToObject(o, "error", strerror(-error));
	cJSON_AddStringToObject(o, "message", msg);
	daemon_publish(d, service, o);
}

static void on_log_report(const char *service, const char *file, int error, const char *msg,
			  void *data)
{
	daemon_log_event(data, service, file, error, msg);
}

static void add_exit(cJSON *o, const struct evm_exit *x)
{
	if (x->signal || x->status_unknown)
		cJSON_AddNullToObject(o, "code");
	else
		cJSON_AddNumberToObject(o, "code", x->code);
	if (x->signal) {
		const char *n = cli_signal_name(x->signal);
		cJSON_AddNumberToObject(o, "signal", x->signal);
		cJSON_AddStringToObject(o, "signal_name", n ? n : "?");
	} else {
		cJSON_AddNullToObject(o, "signal");
	}
	if (x->core_dumped)
		cJSON_AddTrueToObject(o, "core_dumped");
	if (x->status_unknown)
		cJSON_AddTrueToObject(o, "status_unknown");
}

static void on_service_event(struct daemon *d, const struct evm_event *ev)
{
	const char *name = ev->name ? ev->name : "?";
	struct unit *u = ev->name ? unit_find(d, ev->name) : NULL;
	units_on_event(d, ev, u);

	/* the exit that caused this transition (the library says: exactly one event has it) */
	if (ev->exit) {
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "event", "exit");
		daemon_add_time(x, "time", &ev->exit->end_time);
		cJSON_AddStringToObject(x, "service", name);
		cJSON_AddNumberToObject(x, "pid", ev->exit->pid);
		add_exit(x, ev->exit);
		cJSON_AddNumberToObject(x, "runtime_ms", (double)(ev->exit->runtime_ns / 1000000));
		daemon_publish(d, name, x);
	}

	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", "state");
	daemon_add_time(o, "time", &ev->time);
	cJSON_AddStringToObject(o, "service", name);
	cJSON_AddStringToObject(o, "state", evm_state_name(ev->state));
	cJSON_AddStringToObject(o, "old_state", evm_state_name(ev->old_state));
	if (ev->pid > 0)
		cJSON_AddNumberToObject(o, "pid", ev->pid);
	cJSON_AddNumberToObject(o, "restarts", ev->restarts);
	if (ev->state == EVM_STATE_BACKOFF)
		cJSON_AddNumberToObject(o, "delay_ms", (double)ev->delay_ms);
	if (ev->error) {
		char err[256];
		if (ev->stage != EVM_STAGE_NONE)
			snprintf(err, sizeof(err), "%s: %s", evm_spawn_stage_name(ev->stage),
				 strerror(-ev->error));
		else
			snprintf(err, sizeof(err), "%s", strerror(-ev->error));
		cJSON_AddStringToObject(o, "error", err);
	}
	if (ev->message)
		cJSON_AddStringToObject(o, "message", ev->message);
	if (ev->removed)
		cJSON_AddTrueToObject(o, "removed");
	daemon_publish(d, name, o);
	if (d->waiters)
		waiters_check(d);
	status_changed(d);
}

static void on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct daemon *d = data;
	(void)loop;
	if (ev->type == EVM_EV_SERVICE) {
		on_service_event(d, ev);
		return;
	}
	cJSON *o = cJSON_CreateObject();
	if (ev->type == EVM_EV_ORPHAN && ev->exit) {
		cJSON_AddStringToObject(o, "event", "orphan");
		daemon_add_time(o, "time", &ev->exit->end_time);
		cJSON_AddNumberToObject(o, "pid", ev->exit->pid);
		add_exit(o, ev->exit);
	} else {
		cJSON_AddStringToObject(o, "event", "warning");
		daemon_add_time(o, "time", &ev->time);
		if (ev->message)
			cJSON_AddStringToObject(o, "message", ev->message);
		if (ev->error)
			cJSON_AddStringToObject(o, "error", strerror(-ev->error));
		if (ev->name)
			cJSON_AddStringToObject(o, "service", ev->name);
	}
	daemon_publish(d, ev->name, o);
}

/* ------------------------------------------------------ service manager */

/* "12 services: 10 running, 1 backoff, 1 fatal" for STATUS= */
void daemon_summary(struct daemon *d, char *buf, size_t len)
{
	size_t count[EVM_STATE_FATAL + 1] = {0}, none = 0;
	for (struct unit *u = d->first; u; u = u->next) {
		if (!u->svc) {
			none++;
			continue;
		}
		enum evm_state st = evm_service_state(u->svc);
		if ((unsigned)st <= EVM_STATE_FATAL)
			count[st]++;
	}
	int n = snprintf(buf, len, "%zu service%s", d->nunits, d->nunits == 1 ? "" : "s");
	const char *sep = ": ";
	static const enum evm_state order[] = {EVM_STATE_RUNNING, EVM_STATE_STARTING,
					       EVM_STATE_BACKOFF,  EVM_STATE_STOPPING,
					       EVM_STATE_EXITED,  EVM_STATE_FATAL,
					       EVM_STATE_STOPPED};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!count[order[i]] || n < 0 || (size_t)n >= len)
			continue;
		n += snprintf(buf + n, len - (size_t)n, "%s%zu %s", sep, count[order[i]],
			      evm_state_name(order[i]));
		sep = ", ";
	}
	if (none && n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "%s%zu not created", sep, none);
}

static void on_status_timer(struct evm_timer *t, void *data)
{
	struct daemon *d = data;
	char sum[256];
	(void)t;
	d->status_timer = NULL;
	if (d->stopping)
		return;
	daemon_summary(d, sum, sizeof(sum));
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

static const int handled[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};

static void signal_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
		sigaddset(set, handled[i]);
}

void daemon_request_shutdown(struct daemon *d, const char *why)
{
	if (d->stopping) {
		dlog("%s: already shutting down", why);
		return;
	}
	d->stopping = true;
	dlog("%s: stopping %zu services", why, d->nunits);
	notify_send("STOPPING=1\nSTATUS=%s: stopping %zu service%s", why, d->nunits,
		    d->nunits == 1 ? "" : "s");
	evm_loop_stop(d->loop);
}

static void on_signal(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct daemon *d = data;
	struct signalfd_siginfo si;
	(void)io;
	(void)revents;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		char why[64];
		const char *name = cli_signal_name((int)si.ssi_signo);
		snprintf(why, sizeof(why), "received SIG%s from pid %u", name ? name : "?",
			 si.ssi_pid);
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
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

static void usage(FILE *f)
{
	fprintf(f,
		"usage: evmon daemon -c FILE [-S SOCKET] [--reaper]\n"
		"       evmon daemon --check -c FILE [-S SOCKET]\n"
		"\n"
		"Supervise the services of FILE in the foreground; control it with evmon ctl.\n"
		"\n"
		"  -c, --config FILE   the configuration (INI; see examples/demo.ini)\n"
		"  -S, --socket PATH   control socket (default: [evmon] socket, $EVMON_SOCKET,\n"
		"                      /run/evmon.sock for root, else $XDG_RUNTIME_DIR/evmon.sock)\n"
		"      --reaper        reap orphaned descendants (child subreaper); on as PID 1\n"
		"      --check         validate FILE, print the mistakes (and warnings about\n"
		"                      log_dir and the socket's directory), and exit\n"
		"  -h, --help          this help\n"
		"\n"
		"Signals: TERM/INT stop every service and exit 0; HUP reloads FILE;\n"
		"USR1 reopens the services' log files.\n");
}

/*
 * What would go wrong at start although the file is valid: the daemon
 * starts anyway (and says it again), but --check is where one looks.
 */
static unsigned check_environment(const struct config *cfg, const char *socket)
{
	unsigned n = 0;
	size_t logged = 0;
	for (size_t k = 0; k < cfg->nsvcs; k++)
		if (cfg->svcs[k]->pol.out[0] == OUT_LOG || cfg->svcs[k]->pol.out[1] == OUT_LOG)
			logged += cfg->svcs[k]->instances;
	if (cfg->log_dir && logged) {
		char err[400];
		struct logs *L = logs_new(NULL, NULL, NULL); /* no file is opened: no loop needed */
		if (L && logs_set_dir(L, cfg->log_dir, err, sizeof(err)) < 0) {
			fprintf(stderr, "evmon: %s: warning: %s: the output of %zu service%s with "
				"stdout or stderr = log would be discarded\n", cfg->path, err, logged,
				logged == 1 ? "" : "s");
			n++;
		}
		logs_free(L);
	}
	/* the socket's directory: the daemon creates the socket, not its parents */
	char *dir = strdup(socket);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	if (slash && slash != dir) {
		*slash = '\0';
		if (access(dir, W_OK | X_OK) < 0) {
			fprintf(stderr, "evmon: %s: warning: control socket %s: %s: %s: the daemon "
				"would not start\n", cfg->path, socket, dir, strerror(errno));
			n++;
		}
	}
	free(dir);
	return n;
}

static int check_only(const char *path, const char *sock_opt)
{
	struct errlist errs = {0};
	struct config *cfg;
	if (config_load(path, &cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		fprintf(stderr, "evmon: %s: %zu error%s\n", path, errs.n, errs.n == 1 ? "" : "s");
		errlist_free(&errs);
		return 1;
	}
	const char *socket = sock_opt ? sock_opt : cfg->socket ? cfg->socket : proto_default_socket();
	unsigned warnings = check_environment(cfg, socket);
	printf("%s: OK: %zu service%s from %zu definition%s; control socket %s; log_dir %s%s\n",
	       path, cfg->ninstances, cfg->ninstances == 1 ? "" : "s", cfg->nsvcs,
	       cfg->nsvcs == 1 ? "" : "s", socket, cfg->log_dir ? cfg->log_dir : "(none)",
	       warnings ? " (see the warnings)" : "");
	config_free(cfg);
	return 0;
}

int cmd_daemon(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"socket", required_argument, NULL, 'S'},
		{"reaper", no_argument, NULL, 'r'},	  {"check", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},	  {NULL, 0, NULL, 0},
	};
	const char *cfg_path = NULL, *sock_opt = NULL;
	bool reaper = getpid() == 1, check = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:S:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': cfg_path = optarg; break;
		case 'S': sock_opt = optarg; break;
		case 'r': reaper = true; break;
		case 'C': check = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || !cfg_path) {
		fprintf(stderr, optind < argc ? "evmon daemon: unexpected argument '%s'\n"
					      : "evmon daemon: no config file (-c FILE)%s\n",
			optind < argc ? argv[optind] : "");
		usage(stderr);
		return 2;
	}
	if (check)
		return check_only(cfg_path, sock_opt);

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

	struct daemon d = {.cfg_path = cfg_path, .reaper = reaper};
	struct errlist errs = {0};
	if (config_load(cfg_path, &d.cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		fprintf(stderr, "evmon: %s: %zu error%s: not starting\n", cfg_path, errs.n,
			errs.n == 1 ? "" : "s");
		errlist_free(&errs);
		return 1;
	}
	d.socket = sock_opt ? sock_opt : d.cfg->socket ? d.cfg->socket : proto_default_socket();
	char nerr[400];
	int notify = notify_init(nerr, sizeof(nerr)); /* before anything can inherit NOTIFY_SOCKET */

	struct evm_loop_opts lo = {.flags = reaper ? EVM_LOOP_REAPER : 0};
	int r = evm_loop_new(&d.loop, &lo);
	if (r < 0) {
		fprintf(stderr, "evmon: daemon: cannot create the loop: %s\n", strerror(-r));
		notify_free();
		config_free(d.cfg);
		return 1;
	}
	int rc = 1;
	char err[512];
	struct control_opts co = {.path = d.socket, .max_clients = d.cfg->max_clients,
				  .max_pending = d.cfg->client_buffer, .on_request = requests_handle,
				  .on_log = control_log, .need_fd = control_need_fd,
				  .fd_closed = control_fd_closed, .data = &d};
	/*
	 * Before any pipe or pidfd: whatever takes the rest of the descriptors,
	 * `evmon ctl` and the log files keep a few (fdreserve.h).
	 */
	struct rlimit nofile;
	rlim_t hard = getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_max : 1024;
	fdres_init(hard / 8 < FD_RESERVE_MAX ? (unsigned)(hard / 8) : FD_RESERVE_MAX);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	struct evm_io *sio = NULL;
	if (sfd < 0 || evm_io_add(d.loop, sfd, EVM_READ, on_signal, &d, &sio) < 0) {
		fprintf(stderr, "evmon: daemon: signalfd: %s\n", strerror(errno));
		goto out;
	}
	if (control_open(d.loop, &co, &d.ctl, err, sizeof(err)) < 0) {
		fprintf(stderr, "evmon: daemon: control socket %s\n", err);
		goto out;
	}
	dlog_attach(d.loop);
	if (notify < 0)
		dlog("%s", nerr);
	struct evm_sub *sub = NULL;
	evm_subscribe(d.loop, EVM_EV_SERVICE | EVM_EV_WARNING | EVM_EV_ORPHAN, on_event, &d, &sub);
	d.logs = logs_new(d.loop, on_log_report, &d);
	if (!d.logs) {
		fprintf(stderr, "evmon: daemon: out of memory\n");
		goto out;
	}
	if (d.cfg->log_dir && (r = logs_set_dir(d.logs, d.cfg->log_dir, err, sizeof(err))) < 0) {
		char msg[700];
		snprintf(msg, sizeof(msg), "%s: the output of services with stdout or stderr = log "
			 "is discarded until it can be written", err);
		daemon_log_event(&d, NULL, NULL, r, msg);
	}
	if (units_load(&d) < 0)
		dlog("out of memory creating the services");
	dlog("daemon %d started: %zu services from %s, control socket %s%s", (int)getpid(),
	     d.nunits, cfg_path, d.socket, reaper ? ", reaping orphans" : "");
	/*
	 * Ready: the control socket listens and every autostart service has
	 * been spawned (or failed to be). Not "every service is RUNNING": a
	 * crash loop or a long start_secs would hold the manager's start job
	 * (and everything ordered after it) until it times out. Whoever needs
	 * one service up waits for it: evmon ctl start NAME.
	 */
	char sum[256];
	daemon_summary(&d, sum, sizeof(sum));
	d.ready = true;
	notify_send("READY=1\nSTATUS=%s", sum);
	if (notify_watchdog_ms())
		on_watchdog(NULL, &d);

	r = evm_loop_run(d.loop);
	if (r < 0)
		dlog("loop failed: %s: stopping every service", strerror(-r));
	if (!d.stopping) /* the loop failed: the shutdown was not announced */
		notify_send("STOPPING=1\nSTATUS=stopping %zu services", d.nunits);
	d.stopping = true;
	if (d.status_timer)
		evm_timer_cancel(d.status_timer);
	d.status_timer = NULL;
	r = evm_shutdown(d.loop, 0);
	if (r < 0)
		dlog("shutdown: %s", strerror(-r));
	waiters_finish(&d);
	if (d.watchdog_timer) /* kept through the shutdown: stopping services can take a while */
		evm_timer_cancel(d.watchdog_timer);
	d.watchdog_timer = NULL;
	dlog("all services stopped: exiting");
	rc = r < 0 ? 1 : 0;
	evm_unsubscribe(sub); /* freeing the units below is not news */
out:
	control_close(d.ctl);
	d.ctl = NULL;
	units_free(&d);
	logs_free(d.logs);
	if (sio)
		evm_io_free(sio);
	if (sfd >= 0)
		close(sfd);
	dlog_detach();
	evm_loop_free(d.loop);
	fdres_free();
	notify_free();
	config_free(d.cfg);
	return rc;
}
