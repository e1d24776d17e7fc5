/*
 * health.c - health checks (see health.h), Docker's HEALTHCHECK in the
 * daemon's one loop.
 *
 * A check is a child of the loop like the services (evm_spawn: no thread,
 * no blocking), with the service's environment, directory, user and
 * cgroup, in a session of its own so that its timeout kills the whole
 * process group (SIGKILL: a check has nothing to clean up). Its stdout and
 * stderr go into one pipe (2>&1: in the order written, like Docker's one
 * buffer) read by the loop, bounded (HEALTH_OUTPUT_MAX), and the last
 * check's output is kept for the status and the events.
 *
 * What a check costs the daemon besides the clone (bench/README.md): while
 * the service's process is up, its health keeps the pipe (read end watched
 * once, not per check) and its cgroup's directory (for CLONE_INTO_CGROUP),
 * so a check opens, registers and closes nothing. A check's output is read
 * as it comes and once more at its exit; what comes while no check runs is
 * from something a check left behind: that pipe is dropped (its writes fail,
 * as they did when each check had its own pipe) and a new one made for the
 * next check. (What such a process writes while a later check runs is read
 * as that check's output: nothing tells its writes from the check's.) These fds are kept only while the daemon's table is below
 * half of RLIMIT_NOFILE (10,000 checked services would need 30,000): past
 * that a check opens its directory and gets a pipe of its own, as before.
 *
 * One check at a time per service; the next one is due health_interval
 * (health_start_interval while starting in the start period) after the
 * last one ended. When the process goes down the running check
 * is killed and marked stale (its result is dropped); nothing runs until
 * the process is up again. A unit that goes while its check still runs
 * leaves the struct behind (an orphan) until that check's exit comes.
 *
 * A probe (health_tcp, health_http: probe.c) takes the place of the process:
 * no pipe, no cgroup directory, no queue (it spawns nothing); stopping the
 * service closes a probe under way at once, and its verdict comes like a
 * check's exit (exit code 0 passed, 1 failed, none when it timed out).
 *
 * The daemon hears of each verdict: a "health" event when the status
 * changes, the dependents waiting for healthy (deps.c), and
 * health_action for a service that became unhealthy.
 */
#include "health.h"

#include "daemon.h"
#include "daemonlog.h"
#include "state.h"
#include "textsafe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_OUTPUT_MAX 4096 /* bytes of a check's output kept, like Docker's */

struct health {
	struct daemon *d;
	struct unit *u;		  /* NULL once the unit is gone and its check still runs */
	enum health_status status;
	enum health_status announced; /* the last status a "health" event told */
	bool up;		  /* the service's process is up: checks are scheduled */
	pid_t pid;		  /* that process */
	unsigned streak;	  /* failures in a row */
	uint64_t up_since_ms;	  /* CLOCK_MONOTONIC of its start: health_start_period */
	uint64_t interval_ms;	  /* the one the pending timer was armed with */
	struct evm_timer *timer;  /* the next check, or NULL */
	struct evm_proc *check;	  /* the check running, or NULL */
	struct probe *probe;	  /* the probe running (health_tcp, health_http), or NULL */
	bool stale;		  /* that check is for a process that went down: dropped */
	bool due;		  /* a check is due once the stale one has ended */
	/* kept while the process is up (see the top): -1 and NULL when not */
	int cg_fd;		  /* its cgroup's directory */
	int out_r, out_w;	  /* the checks' stdout and stderr: read end, write end */
	struct evm_io *out_io;	  /* out_r, watched */
	bool out_kept;		  /* the pipe outlives the check (else closed at its exit) */
	char *cur;		  /* the running check's output so far (out_r), or NULL */
	size_t cur_len;
	bool cur_cut;		  /* more came than HEALTH_OUTPUT_MAX */
	/* the last check */
	bool has_last;
	int last_code;		  /* exit code; -1: killed, timed out or could not run */
	bool last_timed_out;
	struct timespec last_time; /* CLOCK_REALTIME of its end */
	uint64_t last_ms;	  /* how long it ran */
	char *output;		  /* its stdout and stderr, NUL-terminated, or NULL */
	bool truncated;
	unsigned long long runs, failed;
	struct health *next_orphan;
	bool queued;		  /* due, waiting in the turn queue (below) */
	struct health *prev_queued, *next_queued;
};

static const char *const names[] = {NULL, "starting", "healthy", "unhealthy"};

const char *health_status_name(enum health_status s)
{
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : NULL;
}

static void run_check(struct health *h);

/*
 * At most HEALTH_CHECKS_PER_TURN checks start in one loop iteration; the
 * others due then wait in a queue (in the order they came due) for the
 * next iterations, each of which first serves the fds that are ready.
 * A spawn returns only once its child has exec'd (milliseconds when the
 * CPUs are busy), and the loop runs every due timer in one iteration: with
 * 1,000 services checked every second, iterations of 0.3-0.7 s each started
 * hundreds of checks, and `ctl metrics`, whose reply goes out a piece per
 * iteration, took 15-35 s (ctl status 3-4 s) at load 6-8 (2026-12-04).
 */
#define HEALTH_CHECKS_PER_TURN 16

static struct health *queue_head, *queue_tail; /* doubly linked: a mass stop unqueues in O(1) each */
static struct evm_timer *queue_timer;
static uint64_t turn_iteration;	  /* the loop iteration turn_started counts */
static unsigned turn_started;

/* May a check start in this iteration of the loop (counted if so)? */
static bool turn_allows(struct daemon *d)
{
	uint64_t it = evm_loop_iterations(d->loop);
	if (it != turn_iteration) {
		turn_iteration = it;
		turn_started = 0;
	}
	if (turn_started >= HEALTH_CHECKS_PER_TURN)
		return false;
	turn_started++;
	return true;
}

static void unqueue(struct health *h)
{
	if (!h->queued)
		return;
	if (h->prev_queued)
		h->prev_queued->next_queued = h->next_queued;
	else
		queue_head = h->next_queued;
	if (h->next_queued)
		h->next_queued->prev_queued = h->prev_queued;
	else
		queue_tail = h->prev_queued;
	h->queued = false;
	h->prev_queued = h->next_queued = NULL;
}

static void on_queue(struct evm_timer *t, void *data);

/* The queue goes on in the next iteration (a 0 ms timer: ready fds are served first). */
static void queue_kick(struct daemon *d)
{
	if (!queue_timer && queue_head &&
	    evm_timer_add(d->loop, 0, on_queue, d, &queue_timer) < 0)
		queue_timer = NULL; /* out of memory: the next check's timer kicks it again */
}

static void on_queue(struct evm_timer *t, void *data)
{
	struct daemon *d = data;
	(void)t;
	queue_timer = NULL;
	if (d->stopping) { /* the daemon stops: no check starts any more */
		while (queue_head)
			unqueue(queue_head);
		return;
	}
	while (queue_head && turn_allows(d)) {
		struct health *h = queue_head;
		unqueue(h);
		run_check(h); /* queued only while up with no check running: unqueued otherwise */
	}
	queue_kick(d);
}

/* h is due: its check now, or in a later iteration (a probe, which spawns nothing: now). */
static void check_due(struct health *h)
{
	if (h->queued || h->d->stopping) /* stopping: no check starts any more */
		return;
	if (h->u->conf->health.probe.kind || (!queue_head && turn_allows(h->d))) {
		run_check(h);
		return;
	}
	h->queued = true;
	h->prev_queued = queue_tail;
	h->next_queued = NULL;
	if (queue_tail)
		queue_tail->next_queued = h;
	else
		queue_head = h;
	queue_tail = h;
	queue_kick(h->d);
}

static void on_timer(struct evm_timer *t, void *data)
{
	struct health *h = data;
	(void)t;
	if (!h->up || h->probe)
		return;
	if (h->check) { /* the last process's check is still dying: right after it */
		h->due = true;
		return;
	}
	check_due(h);
}

/*
 * Docker 25's start_interval: while it is starting, inside the start
 * period, checks come this often, so a dependent waiting for healthy is not
 * held a whole health_interval after the service is up.
 */
static uint64_t next_interval(const struct health *h)
{
	const struct health_conf *hc = &h->u->conf->health;
	if (h->status != HEALTH_STARTING || mono_ms() - h->up_since_ms >= hc->start_period_ms)
		return hc->interval_ms;
	if (hc->start_interval_ms)
		return hc->start_interval_ms;
	return hc->interval_ms < HEALTH_DEFAULT_START_INTERVAL_MS ? hc->interval_ms
								   : HEALTH_DEFAULT_START_INTERVAL_MS;
}

/*
 * The next check is due the interval after the last one ended, rounded up
 * to a multiple of HEALTH_GROUP_MS (1/32 of the interval below 512 ms) on
 * the monotonic clock: checks due within a few ms of each other start in
 * the same loop iteration, one wake-up for many. With 1,000 services
 * checked every second, each check otherwise woke the daemon on its own:
 * a wake-up costs about as much as a probe's connect.
 */
#define HEALTH_GROUP_MS 16

static uint64_t due_in_ms(uint64_t interval_ms)
{
	uint64_t grid = interval_ms / 32;
	if (grid > HEALTH_GROUP_MS)
		grid = HEALTH_GROUP_MS;
	if (grid < 2 || interval_ms > UINT64_MAX / 4000000) /* not on a grid, nor wrapped past 2^64 ns */
		return interval_ms;
	uint64_t now = mono_ns();
	uint64_t g = grid * 1000000, due = now + interval_ms * 1000000;
	due += (g - due % g) % g;
	/* down to the ms: the loop fires at most 1 ms before the grid's mark, rounding its
	 * sleep up, so those due at one mark fire together */
	return (due - now) / 1000000;
}

static void schedule(struct health *h)
{
	if (!h->up || h->timer || !h->u)
		return;
	h->interval_ms = next_interval(h);
	if (evm_timer_add(h->d->loop, due_in_ms(h->interval_ms), on_timer, h, &h->timer) < 0)
		dlog("service %s: out of memory: its health check stops", h->u->name);
}

/* ------------------------------------------------------------- verdicts */

/* A "health" event when the status differs from the last one told (none is not told). */
static void announce(struct health *h)
{
	if (h->status == h->announced || h->status == HEALTH_NONE || !h->u) {
		if (h->status == HEALTH_NONE)
			h->announced = HEALTH_NONE;
		return;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", "health");
	cJSON_AddStringToObject(o, "service", h->u->name);
	cJSON_AddStringToObject(o, "health", names[h->status]);
	if (h->announced != HEALTH_NONE)
		cJSON_AddStringToObject(o, "old_health", names[h->announced]);
	cJSON_AddNumberToObject(o, "failing_streak", h->streak);
	if (h->has_last && h->status != HEALTH_STARTING) {
		if (h->last_code >= 0)
			cJSON_AddNumberToObject(o, "exit_code", h->last_code);
		else
			cJSON_AddNullToObject(o, "exit_code");
		cJSON_AddStringToObject(o, "output", h->output ? h->output : "");
	}
	h->announced = h->status;
	events_publish(h->d, h->u->name, o);
	state_changed(h->d); /* the record carries it (a re-exec, a crash) */
}

/* The status changed: tell, let dependents move, act on unhealthy. */
static void changed(struct health *h)
{
	struct daemon *d = h->d;
	struct unit *u = h->u;
	announce(h);
	if (h->status != HEALTH_UNHEALTHY || d->stopping || !u->svc) {
		deps_changed(d, u);
		return;
	}
	/* first the action: a dependent waiting for healthy then sees it restart, not fail */
	switch (u->conf->health.action) {
	case HEALTH_ACTION_NONE:
		break;
	case HEALTH_ACTION_RESTART:
		dlog("service %s: unhealthy: restarting it (health_action = restart)", u->name);
		/*
		 * A failure for its policy, as a missed watchdog: started again
		 * after the backoff, counted against max_retries. An explicit
		 * restart reset both, and one never healthy was restarted every
		 * check period forever. Its policy never restarts: at once.
		 */
		if (u->conf->pol.restart == EVM_RESTART_NEVER ||
		    evm_service_fail(u->svc, "unhealthy (health_action = restart)") < 0)
			deps_restart(d, u);
		break;
	case HEALTH_ACTION_STOP:
		dlog("service %s: unhealthy: stopping it (health_action = stop)", u->name);
		u->failed_stop = true; /* an essential one's stop ends the daemon (daemon.c) */
		deps_stop(d, u);
		break;
	}
	if (u->health) /* still there: the action's events did not remove it */
		deps_changed(d, u);
}

static void verdict(struct health *h, bool ok)
{
	const struct health_conf *hc = &h->u->conf->health;
	enum health_status old = h->status;
	h->runs++;
	if (ok) {
		h->streak = 0;
		h->status = HEALTH_HEALTHY;
	} else {
		h->failed++;
		/* Docker: while starting, failures in the start period do not count */
		bool grace = h->status == HEALTH_STARTING && mono_ms() - h->up_since_ms < hc->start_period_ms;
		if (!grace && ++h->streak >= hc->retries)
			h->status = HEALTH_UNHEALTHY;
	}
	if (h->status != old)
		changed(h);
}

/* ---------------------------------------------------------------- output */

/* Cut a UTF-8 sequence that the bound split, and NULs (the record is a C string). */
static void clean_text(char *s, size_t *len)
{
	size_t n = *len, k = 0;
	while (k < 4 && k < n && ((unsigned char)s[n - 1 - k] & 0xc0) == 0x80)
		k++;
	if (k < n) {
		unsigned char lead = (unsigned char)s[n - 1 - k];
		size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
		if (lead >= 0xc0 && need > k + 1)
			n -= k + 1;
	}
	for (size_t i = 0; i < n; i++)
		if (!s[i])
			s[i] = ' ';
	s[n] = '\0';
	*len = n;
}

/* The check's output (s, n bytes; cut: more came), HEALTH_OUTPUT_MAX bytes at most; prefix (or NULL) first. */
static void keep_output(struct health *h, const char *s, size_t n, bool cut, const char *prefix)
{
	h->truncated = false;
	/* the buffer stays from one check to the next: no allocation per check */
	char *buf = h->output ? h->output : malloc(HEALTH_OUTPUT_MAX + 1);
	h->output = NULL;
	if (!buf)
		return;
	size_t len = prefix ? (size_t)snprintf(buf, HEALTH_OUTPUT_MAX + 1, "%s", prefix) : 0;
	if (len > HEALTH_OUTPUT_MAX)
		len = HEALTH_OUTPUT_MAX;
	h->truncated = cut;
	if (s && n > HEALTH_OUTPUT_MAX - len) {
		n = HEALTH_OUTPUT_MAX - len;
		h->truncated = true;
	}
	if (s)
		memcpy(buf + len, s, n);
	len += s ? n : 0;
	clean_text(buf, &len);
	utf8_scrub(buf, len); /* it goes into JSON (status, events) */
	h->output = buf;
}

/* ------------------------------------------------------ the kept fds */

/*
 * May the health keep fd (just opened) for the checks to come? Not once the
 * daemon's table is half full: services need their pidfds, clients and log
 * files more than a check needs to save an open.
 */
static bool may_keep(int fd)
{
	struct rlimit rl;
	return getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY ||
						     (rlim_t)fd < rl.rlim_cur / 2);
}

/* Read what is in the pipe now: kept up to HEALTH_OUTPUT_MAX (if keep), the rest dropped. */
static void read_output(struct health *h, bool keep)
{
	char buf[16384];
	for (;;) {
		ssize_t n = read(h->out_r, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* EAGAIN: empty (its write end is ours: no EOF) */
		size_t k = keep ? HEALTH_OUTPUT_MAX - h->cur_len : 0;
		if (k > (size_t)n)
			k = (size_t)n;
		if (k && !h->cur && !(h->cur = malloc(HEALTH_OUTPUT_MAX)))
			k = 0; /* out of memory: dropped, said truncated */
		if (k)
			memcpy(h->cur + h->cur_len, buf, k);
		h->cur_len += k;
		if (keep && k < (size_t)n)
			h->cur_cut = true;
		if ((size_t)n < sizeof(buf))
			return; /* empty now: no read for the EAGAIN */
	}
}

static void drop_output(struct health *h)
{
	free(h->cur);
	h->cur = NULL;
	h->cur_len = 0;
	h->cur_cut = false;
}

static void close_pipe(struct health *h)
{
	evm_io_free(h->out_io);
	h->out_io = NULL;
	if (h->out_r >= 0)
		close(h->out_r);
	if (h->out_w >= 0)
		close(h->out_w);
	h->out_r = h->out_w = -1;
}

static void on_output(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct health *h = data;
	(void)io;
	(void)fd;
	if (h->check) {
		read_output(h, !h->stale);
		return;
	}
	/* no check runs: read at its exit already, or written by what one left behind */
	size_t had = h->cur_len;
	bool cut = h->cur_cut;
	read_output(h, true);
	if (h->cur_len != had || h->cur_cut != cut || (revents & EVM_ERROR))
		close_pipe(h); /* its writes fail from now on; the next check gets a new pipe */
	drop_output(h);
}

/* The pipe for the next check: the kept one, or a new one (kept if there is room). */
static int open_pipe(struct health *h)
{
	if (h->out_w >= 0)
		return 0;
	int p[2], r = 0;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	for (int i = 0; i < 2; i++)
		if (p[i] < 3) { /* not on 0-2 (a daemon started with one closed) */
			int k = fcntl(p[i], F_DUPFD_CLOEXEC, 3);
			if (k < 0 && !r)
				r = -errno;
			close(p[i]);
			p[i] = k;
		}
	/* our end only: the check's stdout stays blocking */
	if (!r && fcntl(p[0], F_SETFL, O_NONBLOCK) < 0)
		r = -errno;
	if (!r)
		r = evm_io_add(h->d->loop, p[0], EVM_READ, on_output, h, &h->out_io);
	if (r < 0) {
		h->out_io = NULL;
		for (int i = 0; i < 2; i++)
			if (p[i] >= 0)
				close(p[i]);
		return r;
	}
	h->out_r = p[0];
	h->out_w = p[1];
	h->out_kept = may_keep(p[1]);
	return 0;
}

/* The cgroup directory for the next check: kept if there is room (-1: none, the spawn opens it). */
static int cgroup_dir(struct health *h, bool *kept)
{
	*kept = h->cg_fd >= 0;
	if (h->cg_fd >= 0)
		return h->cg_fd;
	int fd = evm_cgroup_open_dir(h->u->cg);
	if (fd >= 0 && may_keep(fd)) {
		h->cg_fd = fd;
		*kept = true;
	}
	return fd;
}

static void close_kept(struct health *h)
{
	close_pipe(h);
	drop_output(h);
	if (h->cg_fd >= 0)
		close(h->cg_fd);
	h->cg_fd = -1;
}

/* ---------------------------------------------------------------- checks */

static void drop_orphan(struct daemon *d, struct health *h)
{
	for (struct health **pp = &d->health_orphans; *pp; pp = &(*pp)->next_orphan)
		if (*pp == h) {
			*pp = h->next_orphan;
			break;
		}
}

static void free_health(struct health *h)
{
	unqueue(h);
	probe_cancel(h->probe);
	evm_timer_cancel(h->timer);
	evm_proc_unref(h->check);
	close_kept(h);
	free(h->output);
	free(h);
}

static void on_check_exit(struct evm_proc *p, const struct evm_exit *x, void *data)
{
	struct health *h = data;
	if (!h->u) { /* its unit is gone */
		drop_orphan(h->d, h);
		free_health(h);
		return;
	}
	h->check = NULL;
	if (h->stale) {
		h->stale = false;
		drop_output(h); /* its pipe was closed with the process's stop */
		evm_proc_unref(p);
		if (h->due && h->up && !h->d->stopping) {
			h->due = false;
			check_due(h);
		} else {
			schedule(h);
		}
		return;
	}
	const struct health_conf *hc = &h->u->conf->health;
	char msg[160];
	bool ok = !x->timed_out && !x->signal && !x->status_unknown && x->code == 0;
	h->has_last = true;
	h->last_code = x->signal || x->status_unknown || x->timed_out ? -1 : x->code;
	h->last_timed_out = x->timed_out;
	h->last_time = x->end_time;
	h->last_ms = x->runtime_ns / 1000000;
	if (x->timed_out)
		snprintf(msg, sizeof(msg), "health check timed out after %llu ms: killed\n",
			 (unsigned long long)hc->timeout_ms);
	else if (x->signal)
		snprintf(msg, sizeof(msg), "health check killed by signal %d\n", x->signal);
	if (h->out_r >= 0) /* what the check wrote before its exit is in the pipe */
		read_output(h, true);
	keep_output(h, h->cur ? h->cur : "", h->cur_len, h->cur_cut,
		    x->timed_out || x->signal ? msg : NULL);
	drop_output(h);
	if (!h->out_kept)
		close_pipe(h);
	evm_proc_unref(p);
	verdict(h, ok);
	schedule(h); /* not when the verdict's action took the process down */
}

/* A check that could not run is a failed check, with the reason as its output. */
static void spawn_failed(struct health *h, const struct evm_spawn_error *e, int r)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "cannot run the health check: %s%s%s", e->stage ?
		 evm_spawn_stage_name(e->stage) : "", e->stage ? ": " : "", strerror(-r));
	h->has_last = true;
	h->last_code = -1;
	h->last_timed_out = false;
	clock_gettime(CLOCK_REALTIME, &h->last_time);
	h->last_ms = 0;
	keep_output(h, NULL, 0, false, msg);
	verdict(h, false);
	schedule(h);
}

/* The daemon's umask: it never changes it after its start. */
static mode_t daemon_umask(void)
{
	static mode_t mask = (mode_t)-1;
	if (mask == (mode_t)-1) {
		mask = umask(022);
		umask(mask);
	}
	return mask;
}

/*
 * The daemon's directory, absolute (it never changes it): a check without
 * a directory of its own gets it by path, so the spawn helper's path does
 * not open and close "." at each check to hand it over. NULL if unknown,
 * or once that path failed (the directory was removed or renamed: the
 * inherited one still works).
 */
static int cwd_state; /* 0: not read yet, 1: in cwd_buf, -1: inherit it */
static char cwd_buf[4096];

static const char *daemon_cwd(void)
{
	if (!cwd_state)
		cwd_state = getcwd(cwd_buf, sizeof(cwd_buf)) && cwd_buf[0] == '/' ? 1 : -1;
	return cwd_state > 0 ? cwd_buf : NULL;
}

/* A probe's verdict (probe.c): like a check's exit; exit code 0 healthy, 1 not, null timed out. */
static void on_probe_done(struct probe *p, const struct probe_result *r, void *data)
{
	struct health *h = data;
	(void)p;
	h->probe = NULL;
	h->has_last = true;
	h->last_code = r->timed_out ? -1 : r->ok ? 0 : 1;
	h->last_timed_out = r->timed_out;
	clock_gettime(CLOCK_REALTIME, &h->last_time);
	h->last_ms = r->ms;
	keep_output(h, r->output, r->len, r->truncated, NULL);
	verdict(h, r->ok);
	schedule(h);
}

static void run_probe(struct health *h)
{
	const struct health_conf *hc = &h->u->conf->health;
	int r = probe_start(h->d->loop, &hc->probe, hc->timeout_ms, on_probe_done, h, &h->probe);
	if (r < 0) {
		h->probe = NULL;
		spawn_failed(h, &(struct evm_spawn_error){0}, r);
	}
}

static void run_check(struct health *h)
{
	struct unit *u = h->u;
	const struct health_conf *hc = &u->conf->health;
	struct evm_spawn_error err = {0};
	if (hc->probe.kind) {
		run_probe(h);
		return;
	}
	struct svc_build b;
	int r = open_pipe(h);
	if (r < 0)
		err.stage = EVM_STAGE_SETUP;
	else if ((r = config_build_check(u->conf, u->instance, "health", &b)) == 0) {
		/* what the service runs with (environment, directory, user, limits), but: */
		struct evm_spawn_opts o = b.opts.spawn;
		o.file = NULL;
		o.argv = hc->argv;
		if (!o.cwd)
			o.cwd = daemon_cwd();
		o.stdio[0].mode = EVM_STDIO_NULL;
		o.stdio[1].mode = EVM_STDIO_FD; /* read by on_output */
		o.stdio[1].fd = h->out_w;
		o.stdio[2].mode = EVM_STDIO_STDOUT; /* one pipe */
		o.flags = (o.flags & ~(unsigned)EVM_SPAWN_SETPGID) | EVM_SPAWN_SETSID;
		o.timeout_ms = hc->timeout_ms;
		o.timeout_signal = SIGKILL; /* to its group: what it started dies with it */
		o.on_exit = on_check_exit;
		o.data = h;
		o.error = &err;
		bool kept = false;
		if (u->cg) {
			o.flags |= EVM_SPAWN_CGROUP;
			o.cgroup_fd = cgroup_dir(h, &kept);
		}
		if (!(o.flags & EVM_SPAWN_UMASK)) {
			/* said, or the library reads /proc/self/status at each spawn for it */
			o.flags |= EVM_SPAWN_UMASK;
			o.umask = daemon_umask();
		}
		r = evm_spawn(h->d->loop, &o, &h->check);
		if (r < 0 && err.stage == EVM_STAGE_CWD && o.cwd == cwd_buf) {
			cwd_state = -1; /* our directory is no longer at that path */
			o.cwd = NULL;
			r = evm_spawn(h->d->loop, &o, &h->check);
		}
		if (r < 0 && err.stage == EVM_STAGE_CGROUP && kept) {
			/* the kept directory is not the cgroup's any more: open it again */
			close(h->cg_fd);
			h->cg_fd = -1;
			o.cgroup_fd = cgroup_dir(h, &kept);
			err = (struct evm_spawn_error){0};
			r = evm_spawn(h->d->loop, &o, &h->check);
		}
		if (u->cg && !kept && o.cgroup_fd >= 0)
			close(o.cgroup_fd);
		config_build_free(&b);
	}
	if (r < 0) {
		h->check = NULL;
		if (!h->out_kept)
			close_pipe(h);
		spawn_failed(h, &err, r);
	}
}

/* ------------------------------------------------------------ lifecycle */

/* The service's process came up: a new health, starting. */
static void start(struct health *h, pid_t pid)
{
	h->up = true;
	h->pid = pid;
	h->status = HEALTH_STARTING;
	h->streak = 0;
	h->up_since_ms = mono_ms();
	h->due = false;
	evm_timer_cancel(h->timer);
	schedule(h);
}

/* Its process went down: no health, and the running check is killed. */
static void stop(struct health *h)
{
	h->up = false;
	h->status = HEALTH_NONE;
	h->streak = 0;
	h->due = false;
	evm_timer_cancel(h->timer);
	unqueue(h);
	probe_cancel(h->probe); /* nothing of it stays: no result comes */
	h->probe = NULL;
	if (h->check && !h->stale) {
		h->stale = true;
		if (evm_proc_signal_group(h->check, SIGKILL) == -EPERM)
			evm_proc_signal(h->check, SIGKILL);
	}
	close_kept(h); /* no check until it is up again: a down service holds no fd */
}

static bool process_up(enum evm_state s)
{
	return s == EVM_STATE_STARTING || s == EVM_STATE_RUNNING || s == EVM_STATE_RELOADING;
}

void health_on_event(struct daemon *d, struct unit *u, const struct evm_event *ev)
{
	struct health *h = u->health;
	(void)d;
	if (!h)
		return;
	bool up = process_up(ev->state);
	if (up && !h->up)
		start(h, ev->pid);
	else if (!up && h->up)
		stop(h);
	else if (up && ev->pid > 0)
		h->pid = ev->pid; /* a new main process of the same run (MAINPID=, a pidfile):
				     its health goes on (a new run always passes a state down) */
}

unsigned health_streak(const struct unit *u)
{
	return u->health ? u->health->streak : 0;
}

void health_resume(struct unit *u, enum health_status st, unsigned streak)
{
	struct health *h = u->health;
	if (!h || !h->up || (st != HEALTH_HEALTHY && st != HEALTH_UNHEALTHY))
		return;
	/*
	 * An unhealthy one with an action had it when it became unhealthy (its
	 * stop may be under way, and its SIGKILL is not carried over): from
	 * "starting" again, so that it gets the action again if it stays so.
	 */
	if (st == HEALTH_UNHEALTHY && u->conf->health.action != HEALTH_ACTION_NONE)
		return;
	h->status = h->announced = st;
	h->streak = st == HEALTH_UNHEALTHY ? streak : 0;
}

void health_announce(struct daemon *d, struct unit *u)
{
	(void)d;
	if (u->health)
		announce(u->health);
}

void health_configure(struct daemon *d, struct unit *u)
{
	struct health *h = u->health;
	if (!u->conf->health.argv && !u->conf->health.probe.kind) {
		if (h) /* the check dropped by a reload */
			health_unit_gone(d, u);
		return;
	}
	if (!h) {
		if (!(h = calloc(1, sizeof(*h)))) {
			dlog("service %s: out of memory: no health check", u->name);
			return;
		}
		h->d = d;
		h->u = u;
		h->cg_fd = h->out_r = h->out_w = -1;
		u->health = h;
		if (u->svc && process_up(evm_service_state(u->svc))) {
			struct evm_service_info info;
			evm_service_info(u->svc, &info);
			start(h, info.pid);
			announce(h);
		}
		return;
	}
	/* now a probe: the checks' pipe and cgroup directory are not needed any more */
	if (u->conf->health.probe.kind && !h->check)
		close_kept(h);
	/* a new interval applies from now; a new command, probe or timeout from the next check */
	if (h->timer && h->interval_ms != next_interval(h)) {
		evm_timer_cancel(h->timer);
		schedule(h);
	}
}

void health_released(struct unit *u)
{
	if (u->health && u->health->up)
		stop(u->health);
}

void health_unit_gone(struct daemon *d, struct unit *u)
{
	struct health *h = u->health;
	if (!h)
		return;
	u->health = NULL;
	stop(h);
	if (!h->check) {
		free_health(h);
		return;
	}
	h->u = NULL; /* freed when its check's exit comes */
	h->next_orphan = d->health_orphans;
	d->health_orphans = h;
}

void health_free_all(struct daemon *d)
{
	evm_timer_cancel(queue_timer);
	queue_timer = NULL;
	while (d->health_orphans) {
		struct health *h = d->health_orphans;
		d->health_orphans = h->next_orphan;
		free_health(h);
	}
	probe_spares_free();
}

/* ------------------------------------------------------------- reading */

enum health_status health_of(const struct unit *u)
{
	return u->health ? u->health->status : HEALTH_NONE;
}

void health_counts(const struct unit *u, unsigned long long *runs, unsigned long long *failed)
{
	*runs = u->health ? u->health->runs : 0;
	*failed = u->health ? u->health->failed : 0;
}

void health_status(const struct unit *u, cJSON *o)
{
	const struct health *h = u->health;
	if (!h)
		return;
	if (h->status != HEALTH_NONE)
		cJSON_AddStringToObject(o, "health", names[h->status]);
	cJSON *c = cJSON_AddObjectToObject(o, "health_check");
	if (h->u) {
		const struct probe_target *t = &h->u->conf->health.probe;
		cJSON_AddStringToObject(c, "kind", t->kind ? probe_kind_name(t->kind) : "cmd");
		if (t->kind)
			cJSON_AddStringToObject(c, "target", t->text);
	}
	cJSON_AddNumberToObject(c, "failing_streak", h->streak);
	cJSON_AddNumberToObject(c, "runs", (double)h->runs);
	cJSON_AddNumberToObject(c, "failures", (double)h->failed);
	if (h->up) /* the interval now: health_start_interval or health_interval */
		cJSON_AddNumberToObject(c, "interval_ms", (double)next_interval(h));
	if (!h->has_last)
		return;
	cJSON *l = cJSON_AddObjectToObject(c, "last");
	events_add_time(l, "time", &h->last_time);
	if (h->last_code >= 0)
		cJSON_AddNumberToObject(l, "exit_code", h->last_code);
	else
		cJSON_AddNullToObject(l, "exit_code");
	if (h->last_timed_out)
		cJSON_AddTrueToObject(l, "timed_out");
	cJSON_AddNumberToObject(l, "duration_ms", (double)h->last_ms);
	cJSON_AddStringToObject(l, "output", h->output ? h->output : "");
	if (h->truncated)
		cJSON_AddTrueToObject(l, "output_truncated");
}
