/*
 * ready.c - a service's readiness beyond start_ms (see ready.h): the
 * notification fd of s6 (fd:N), a check run until it succeeds (exec:), and
 * what an sd_notify message attributed to a service means (notify).
 *
 * The library service of such a unit has EVM_READY_DECLARED: it stays
 * STARTING until evm_service_ready, and ready_timeout (the library's timer)
 * bounds the wait. What watches for the sign lives from the STARTING event
 * of a run to its end (or until ready): a pipe's read end, or a timer and
 * at most one check process. Nothing polls: the pipe is a watched fd, and
 * the check is a child of the loop, its exit an event.
 */
#include "ready.h"

#include "argv.h"
#include "daemon.h"
#include "daemonlog.h"
#include "notifysock.h"
#include "state.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATUS_MAX 256	    /* STATUS= kept, bytes */
#define CHECK_KILL_MS 1000  /* a check past its timeout: SIGTERM, then SIGKILL this much later */

/* a check process in flight; it outlives the unit when the unit goes first */
struct check {
	struct ready *rd; /* NULL once the unit let go of it */
	struct evm_proc *proc;
	struct check *prev, *next;
};

/* every check in flight: the loop does not report exits while it is freed */
static struct check *checks;

static void check_unlink(struct check *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		checks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	evm_proc_unref(c->proc);
	free(c);
}

void ready_checks_free(void)
{
	while (checks)
		check_unlink(checks);
}

struct ready {
	struct daemon *d;
	struct unit *u;
	/* fd:N */
	int rfd, wfd;		/* the pipe of the run being started: ours, and the child's */
	struct evm_io *io;
	struct evm_fd_map map;
	/* exec: */
	struct check *check;
	struct evm_timer *timer; /* the next check */
	/* notify */
	char **env;		/* the service's env_extra plus NOTIFY_SOCKET, WATCHDOG_USEC */
	char status[STATUS_MAX]; /* STATUS=, printable */
	const char *note;	/* "reloading", "stopping", or NULL */
	bool fdstore_said;	/* FDSTORE fds closed: logged once per unit */
	/* its messages with RELOADING=1 or MAINPID=: a bucket (notify_spend) */
	double tokens;
	uint64_t tokens_ns;	/* when tokens was last filled, 0: never (full) */
	unsigned long flooded;	/* such messages past the rate */
	bool watchdog_set;	/* this run's WATCHDOG_USEC= (watchdog_ms, 0: none), for a re-exec */
	uint64_t watchdog_ms;
	uint64_t cg_id;		/* this run's cgroup id (its directory's inode), once asked; 0 */
};

static enum ready_kind kind(const struct unit *u)
{
	return u->conf->ready;
}

/* ------------------------------------------------------------ fd:N */

static void pipe_close(struct ready *rd)
{
	evm_io_free(rd->io);
	rd->io = NULL;
	if (rd->rfd >= 0)
		close(rd->rfd);
	rd->rfd = -1;
}

static void wfd_close(struct ready *rd)
{
	if (rd->wfd >= 0)
		close(rd->wfd);
	rd->wfd = -1;
}

/*
 * A newline is the sign (s6: anything before it is ignored). EOF: every copy
 * of the fd closed before it, so it can never come: a failed start at once
 * (with ready_timeout = 0 the service waited for good), unless its process
 * is gone already (its exit says what happened).
 */
static void on_pipe(struct evm_io *io, int fd, unsigned ev, void *data)
{
	struct ready *rd = data;
	char buf[512];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	bool ready = n > 0 && memchr(buf, '\n', (size_t)n);
	if (n > 0 && !ready)
		return;
	pipe_close(rd); /* the sign, or EOF: nothing more to read */
	struct evm_service *svc = rd->u->svc;
	if (!svc)
		return;
	if (ready) {
		evm_service_ready(svc);
	} else if (evm_service_state(svc) == EVM_STATE_STARTING) {
		struct evm_proc *p = evm_service_proc(svc);
		char why[96];
		snprintf(why, sizeof(why), "fd %d closed before a newline: it cannot be ready",
			 rd->u->conf->ready_fd);
		if (p && !evm_proc_exited(p) && kill(evm_proc_pid(p), 0) == 0)
			evm_service_fail(svc, why);
	}
}

int ready_before_spawn(struct unit *u, struct evm_spawn_opts *o, char *msg, size_t len)
{
	struct ready *rd = u->rd;
	if (!rd || kind(u) != READY_FD)
		return 0;
	pipe_close(rd);
	wfd_close(rd);
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		int e = errno;
		snprintf(msg, len, "ready = fd:%d: pipe: %s", u->conf->ready_fd, strerror(e));
		return -e;
	}
	/* the child's end blocks, as a service expects of its fds */
	fcntl(p[1], F_SETFL, 0);
	rd->rfd = p[0];
	rd->wfd = p[1];
	rd->map = (struct evm_fd_map){.fd = p[1], .target = u->conf->ready_fd};
	o->extra_fds = &rd->map;
	o->nextra_fds = 1;
	return 0;
}

static void pipe_watch(struct ready *rd)
{
	wfd_close(rd); /* the child has its copy: EOF when it and its children close theirs */
	if (rd->rfd >= 0 && !rd->io &&
	    evm_io_add(rd->d->loop, rd->rfd, EVM_READ, on_pipe, rd, &rd->io) < 0) {
		events_log(rd->d, rd->u->name, NULL, -ENOMEM,
			   "cannot watch its notification fd: it is ready at ready_timeout, if at all");
		pipe_close(rd);
	}
}

/* ------------------------------------------------------------ exec: */

static void check_schedule(struct ready *rd, uint64_t ms);

static void on_check_exit(struct evm_proc *p, const struct evm_exit *e, void *data)
{
	struct check *c = data;
	struct ready *rd = c->rd;
	check_unlink(c);
	if (!rd)
		return; /* its unit is gone */
	rd->check = NULL;
	struct unit *u = rd->u;
	if (!u->svc || evm_service_state(u->svc) != EVM_STATE_STARTING)
		return;
	if (!e->status_unknown && !e->signal && e->code == 0) {
		evm_service_ready(u->svc);
		return;
	}
	check_schedule(rd, u->conf->ready_interval_ms);
}

static void check_run(struct evm_timer *t, void *data)
{
	struct ready *rd = data;
	struct unit *u = rd->u;
	const struct svc_conf *c = u->conf;
	(void)t;
	if (rd->check || !u->svc || evm_service_state(u->svc) != EVM_STATE_STARTING)
		return;
	struct check *ck = calloc(1, sizeof(*ck));
	if (!ck) {
		check_schedule(rd, c->ready_interval_ms);
		return;
	}
	ck->rd = rd;
	/*
	 * What the service runs with (environment with EVMON_SERVICE and
	 * EVMON_INSTANCE, directory, user, limits, umask), as a health check:
	 * a check of one instance must know which one it checks.
	 */
	struct svc_build b;
	int r = config_build_check(c, u->instance, "ready", &b);
	if (r == 0) {
		struct evm_spawn_opts o = b.opts.spawn;
		o.file = NULL;
		o.argv = c->ready_check;
		o.flags = (o.flags & ~(unsigned)EVM_SPAWN_SETPGID) | EVM_SPAWN_SETSID;
		for (int i = 0; i < 3; i++)
			o.stdio[i] = (struct evm_stdio){.mode = EVM_STDIO_NULL};
		o.timeout_ms = c->ready_check_timeout_ms;
		o.timeout_kill_ms = CHECK_KILL_MS;
		o.on_exit = on_check_exit;
		o.data = ck;
		/*
		 * In the service's cgroup, like its health checks: what a check
		 * leaves behind (a daemonized child) is the service's, killed with
		 * its stop, not the daemon's until the daemon exits. Without
		 * cgroups a check's stop kills its session (check_stop), as a
		 * health check's does.
		 */
		if (u->cg) {
			o.flags |= EVM_SPAWN_CGROUP;
			r = o.cgroup_fd = evm_cgroup_open_dir(u->cg);
		}
		if (r >= 0)
			r = evm_spawn(rd->d->loop, &o, &ck->proc);
		if (u->cg && o.cgroup_fd >= 0)
			close(o.cgroup_fd);
		config_build_free(&b);
	}
	if (r < 0) {
		free(ck);
		char msg[300];
		snprintf(msg, sizeof(msg), "ready check %s: %s", c->ready_check[0], strerror(-r));
		events_log(rd->d, u->name, NULL, r, msg);
		check_schedule(rd, c->ready_interval_ms);
		return;
	}
	rd->check = ck;
	ck->next = checks;
	if (checks)
		checks->prev = ck;
	checks = ck;
}

static void check_schedule(struct ready *rd, uint64_t ms)
{
	evm_timer_cancel(rd->timer);
	/* no timer (out of memory): ready_timeout ends the wait */
	evm_timer_add(rd->d->loop, ms, check_run, rd, &rd->timer);
}

/* The check in flight is killed (its exit is reported to no one); no next one. */
static void check_stop(struct ready *rd)
{
	evm_timer_cancel(rd->timer);
	if (rd->check) {
		evm_proc_signal_group(rd->check->proc, SIGKILL);
		evm_proc_signal(rd->check->proc, SIGKILL);
		rd->check->rd = NULL;
		rd->check = NULL;
	}
}

/* ------------------------------------------------------------ lifecycle */

int ready_unit_init(struct daemon *d, struct unit *u)
{
	if (kind(u) == READY_STARTED || u->rd)
		return 0;
	struct ready *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->d = d;
	rd->u = u;
	rd->rfd = rd->wfd = -1;
	u->rd = rd;
	if (kind(u) == READY_NOTIFY)
		notifysock_use(d);
	return 0;
}

static void watch_stop(struct ready *rd)
{
	pipe_close(rd);
	wfd_close(rd);
	check_stop(rd);
}

void ready_unit_free(struct unit *u)
{
	struct ready *rd = u->rd;
	if (!rd)
		return;
	watch_stop(rd);
	free(rd->env);
	free(rd);
	u->rd = NULL;
}

/*
 * Its main process exited: what the service sent before that is read first
 * (MAINPID=). data is the daemon, not the unit: a released service (a
 * removal, a reload that replaced it) stops after its unit is gone.
 */
static void before_exit(struct evm_service *svc, const struct evm_exit *e, void *data)
{
	(void)svc;
	(void)e;
	notifysock_drain(data);
}

void ready_service_opts(struct daemon *d, struct unit *u, struct evm_service_opts *o)
{
	struct ready *rd = u->rd;
	const struct svc_conf *c = u->conf;
	if (!rd || kind(u) != READY_NOTIFY)
		return;
	o->before_exit = before_exit;
	o->before_exit_data = d;
	/* the environment: the service's, NOTIFY_SOCKET and WATCHDOG_USEC (one block) */
	char own[2][128];
	size_t n = 0, nown = 0, bytes = 0;
	const char *sock = notifysock_name(d);
	if (sock)
		snprintf(own[nown++], sizeof(own[0]), "NOTIFY_SOCKET=%s", sock);
	if (c->watchdog_ms)
		snprintf(own[nown++], sizeof(own[0]), "WATCHDOG_USEC=%llu",
			 (unsigned long long)c->watchdog_ms * 1000);
	for (char *const *e = o->spawn.env_extra; e && *e; e++)
		n++;
	for (size_t i = 0; i < nown; i++)
		bytes += strlen(own[i]) + 1;
	free(rd->env);
	rd->env = malloc((n + nown + 1) * sizeof(char *) + bytes);
	if (!rd->env)
		return; /* no NOTIFY_SOCKET: it is not ready before ready_timeout */
	char *store = (char *)(rd->env + n + nown + 1);
	size_t k = 0;
	for (char *const *e = o->spawn.env_extra; e && *e; e++)
		rd->env[k++] = *e;
	for (size_t i = 0; i < nown; i++) {
		size_t l = strlen(own[i]) + 1;
		memcpy(store, own[i], l);
		rd->env[k++] = store;
		store += l;
	}
	rd->env[k] = NULL;
	o->spawn.env_extra = rd->env;
}

void ready_set_watchdog(struct daemon *d, struct unit *u, uint64_t ms)
{
	if (!u->rd || !u->svc || evm_service_set_watchdog(u->svc, ms) < 0)
		return;
	u->rd->watchdog_set = true;
	u->rd->watchdog_ms = ms;
	state_changed(d); /* the record carries it */
}

uint64_t ready_cgroup_id(struct unit *u)
{
	struct ready *rd = u->rd;
	struct stat st;
	if (!rd || !u->cg)
		return 0;
	if (!rd->cg_id && stat(evm_cgroup_path(u->cg), &st) == 0)
		rd->cg_id = (uint64_t)st.st_ino;
	return rd->cg_id;
}

bool ready_watchdog(const struct unit *u, uint64_t *ms)
{
	if (!u->rd || !u->rd->watchdog_set)
		return false;
	*ms = u->rd->watchdog_ms;
	return true;
}

int ready_pipe_fd(const struct unit *u)
{
	return u->rd && kind(u) == READY_FD ? u->rd->rfd : -1;
}

void ready_take_pipe(struct unit *u, int fd)
{
	struct ready *rd = u->rd;
	if (!rd || kind(u) != READY_FD || rd->rfd >= 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		close(fd);
		return;
	}
	rd->rfd = fd; /* watched from the STARTING event of the adoption (ready_on_event) */
}

bool ready_awaitable(const struct unit *u)
{
	return kind(u) != READY_FD || (u->rd && u->rd->rfd >= 0);
}

void ready_on_event(struct daemon *d, struct unit *u, const struct evm_event *ev)
{
	struct ready *rd = u->rd;
	if (!rd)
		return;
	wfd_close(rd); /* after the spawn, whatever became of it */
	if (ev->state == EVM_STATE_STARTING && ev->old_state != EVM_STATE_STARTING) {
		/* a new run: what the last one said is void */
		rd->status[0] = 0;
		rd->note = NULL;
		rd->watchdog_set = false;
		rd->cg_id = 0; /* its cgroup may be a new one */
		if (kind(u) == READY_FD)
			pipe_watch(rd);
		else if (kind(u) == READY_EXEC)
			check_schedule(rd, 0);
		return;
	}
	if (ev->state != EVM_STATE_STARTING)
		watch_stop(rd);
	if (ev->state != EVM_STATE_STARTING && ev->state != EVM_STATE_RUNNING &&
	    ev->state != EVM_STATE_RELOADING) {
		rd->note = NULL;
		rd->watchdog_set = false; /* the run is over: the next one has watchdog_sec */
		rd->cg_id = 0;
	}
}

void ready_status(const struct unit *u, cJSON *o)
{
	const struct ready *rd = u->rd;
	if (!rd)
		return;
	if (rd->status[0])
		cJSON_AddStringToObject(o, "status_text", rd->status);
	if (rd->note)
		cJSON_AddStringToObject(o, "notify", rd->note);
}

/* ------------------------------------------------------------ notify */

static void publish_note(struct daemon *d, struct unit *u, pid_t pid, const char *what)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", "notify");
	cJSON_AddStringToObject(o, "service", u->name);
	cJSON_AddNumberToObject(o, "pid", pid);
	cJSON_AddStringToObject(o, "notify", what);
	if (u->rd->status[0])
		cJSON_AddStringToObject(o, "status_text", u->rd->status);
	events_publish(d, u->name, o);
}

/* STATUS= as shown: printable bytes only, at most STATUS_MAX - 1 */
static void set_status(struct ready *rd, const char *v)
{
	size_t i = 0;
	for (; v[i] && i < sizeof(rd->status) - 1; i++)
		rd->status[i] = isprint((unsigned char)v[i]) ? v[i] : '?';
	rd->status[i] = 0;
}

static bool parse_u64(const char *s, unsigned long long *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && !*end;
}

/*
 * MAINPID=N: N is the service's main process from now on (its pid, stops,
 * exit), through the library's checks: a process of the service's cgroup,
 * or without cgroups of its session, pinned by a pidfd. Anything else is
 * refused and said; a refused pid is never signalled.
 */
static void set_mainpid(struct daemon *d, struct unit *u, pid_t from, const char *v, bool quiet)
{
	unsigned long long n;
	char msg[200];
	bool num = parse_u64(v, &n);
	if (!num || n < 2 || n > (unsigned long long)INT32_MAX) {
		snprintf(msg, sizeof(msg), "notify from pid %d: MAINPID=%.20s ignored: %s", (int)from,
			 v, num && n == 1 ? "pid 1 is never a service's" : "not a pid");
		if (!quiet)
			events_log(d, u->name, NULL, -EINVAL, msg);
		return;
	}
	int r = evm_service_set_main(u->svc, (pid_t)n);
	if (r == 0 || quiet)
		return; /* the service's event says "main process is now pid N" */
	enum evm_state st = evm_service_state(u->svc);
	bool up = st == EVM_STATE_STARTING || st == EVM_STATE_RUNNING || st == EVM_STATE_RELOADING;
	const char *why = r == -EPERM	 ? "not a process of this service"
			  : r == -EEXIST ? "the process of another service"
			  : r != -ESRCH	 ? strerror(-r)
			  : up		 ? "no such process"
					 : "the service is not starting or running";
	snprintf(msg, sizeof(msg), "notify from pid %d: MAINPID=%llu ignored: %s", (int)from, n, why);
	events_log(d, u->name, NULL, r, msg);
}

/*
 * A service may send as fast as it likes, and each RELOADING=1 (with the
 * READY=1 that ends it) is two state changes, each a log line, an event to
 * every subscriber and a state record written: a loop of them wrote 42 MB of
 * log in 10 s; and each refused MAINPID= is a line. So a service's messages
 * with either draw on a bucket of NOTIFY_BURST, refilled at NOTIFY_RATE a
 * second; with the bucket empty, a RELOADING=1 is ignored and a MAINPID= is
 * taken but not said when refused (a handover still happens; READY=1 still
 * ends a change under way), and the drops are said at 1, 2, 4, 8, ... The
 * rest changes nothing twice (STOPPING=1) or says nothing (WATCHDOG=1).
 */
#define NOTIFY_BURST 100.0
#define NOTIFY_RATE 20.0

static bool costly(const char *msg, size_t len)
{
	for (const char *line = msg, *end = msg + len, *nl; line < end; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			nl = end;
		size_t n = (size_t)(nl - line);
		if ((n == 11 && !memcmp(line, "RELOADING=1", 11)) || (n >= 8 && !memcmp(line, "MAINPID=", 8)))
			return true;
	}
	return false;
}

static bool notify_spend(struct daemon *d, struct unit *u, pid_t pid)
{
	struct ready *rd = u->rd;
	uint64_t now = mono_ns();
	if (!rd->tokens_ns)
		rd->tokens = NOTIFY_BURST;
	else
		rd->tokens += (double)(now - rd->tokens_ns) / 1e9 * NOTIFY_RATE;
	if (rd->tokens > NOTIFY_BURST)
		rd->tokens = NOTIFY_BURST;
	rd->tokens_ns = now;
	if (rd->tokens >= 1) {
		rd->tokens -= 1;
		return true;
	}
	unsigned long n = ++rd->flooded;
	if (!(n & (n - 1))) {
		char msg[200];
		snprintf(msg, sizeof(msg), "notify from pid %d: more than %.0f messages a second with "
			 "RELOADING=1 or MAINPID=: their RELOADING=1 ignored, a refused MAINPID= not "
			 "said (%lu so far)", (int)pid, NOTIFY_RATE, rd->flooded);
		events_log(d, u->name, NULL, -EBUSY, msg);
	}
	return false;
}

void ready_notify(struct daemon *d, struct unit *u, pid_t pid, char *msg, size_t len, int nfds)
{
	struct ready *rd = u->rd;
	const char *note = rd->note;
	bool ready = false, trigger = false, reloading = false;
	bool flood = costly(msg, len) && !notify_spend(d, u, pid);
	for (char *line = msg, *end = msg + len, *nl; line < end; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			nl = end;
		*nl = 0;
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		const char *k = line, *v = eq + 1;
		unsigned long long n;
		if (!strcmp(k, "READY") && !strcmp(v, "1")) {
			ready = true;
		} else if (!strcmp(k, "RELOADING") && !strcmp(v, "1") && !flood) {
			rd->note = "reloading";
			reloading = true;
		} else if (!strcmp(k, "STOPPING") && !strcmp(v, "1")) {
			rd->note = "stopping";
		} else if (!strcmp(k, "STATUS")) {
			set_status(rd, v);
		} else if (!strcmp(k, "MAINPID")) {
			set_mainpid(d, u, pid, v, flood);
		} else if (!strcmp(k, "WATCHDOG") && !strcmp(v, "1")) {
			evm_service_watchdog(u->svc);
		} else if (!strcmp(k, "WATCHDOG") && !strcmp(v, "trigger")) {
			trigger = true; /* after the rest of the message (its STATUS=) */
		} else if (!strcmp(k, "WATCHDOG_USEC") && parse_u64(v, &n)) {
			/* a new period from now (0: none) for this run; 1 us is 1 ms */
			ready_set_watchdog(d, u, n ? (n + 999) / 1000 : 0);
		} else if (!strcmp(k, "EXTEND_TIMEOUT_USEC") && parse_u64(v, &n)) {
			if (evm_service_extend_timeout(u->svc, n / 1000) == 0)
				state_changed(d); /* the record carries the deadline */
		}
	}
	if (nfds && !rd->fdstore_said) {
		rd->fdstore_said = true;
		events_log(d, u->name, NULL, -EOPNOTSUPP,
			   "notify: file descriptors sent (FDSTORE) are closed: evmon keeps none");
	}
	/* RUNNING -> RELOADING until READY=1, within ready_timeout (notify-reload) */
	if (reloading)
		evm_service_reloading(u->svc, u->conf->ready_timeout_ms);
	if (ready) {
		if (rd->note && strcmp(rd->note, "stopping"))
			rd->note = NULL; /* a reload is over */
		enum evm_state st = evm_service_state(u->svc);
		if (st == EVM_STATE_STARTING || st == EVM_STATE_RELOADING)
			evm_service_ready(u->svc); /* its state event says so */
		else if (note && !rd->note)
			publish_note(d, u, pid, "ready");
	}
	if (rd->note && rd->note != note)
		publish_note(d, u, pid, rd->note);
	if (trigger && evm_service_watchdog_trigger(u->svc) == 0)
		publish_note(d, u, pid, "watchdog-trigger");
}
