/*
 * metrics.c - the daemon's metrics in the Prometheus text exposition format
 * (version 0.0.4): what `evmon ctl metrics` prints and what the HTTP
 * endpoint (metricshttp.c) serves.
 *
 * Every family is written whole (# HELP, # TYPE, then its samples), as the
 * format requires, so the services are read once into a table and walked
 * once per family. Label values are escaped (\\, ", newline). A service that
 * could not be created has no process: its state is "none". CPU and memory
 * come from the service's cgroup, for running services that have one
 * ([evmon] cgroup): other services have no such samples.
 */
#include "metrics.h"

#include "daemon.h"
#include "fdreserve.h"
#include "stdsink.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
	for (int tries = 0; tries < 2 && !t->failed; tries++) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap : 4096;
		while (cap <= t->len + (size_t)n)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->failed = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

/* A label value: \ " and newline escaped (service names cannot hold them, but stay safe). */
static const char *label(const char *s, char *buf, size_t len)
{
	size_t j = 0;
	for (; *s && j + 3 < len; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			buf[j++] = '\\';
			buf[j++] = *s == '\n' ? 'n' : *s;
		} else {
			buf[j++] = *s;
		}
	}
	buf[j] = '\0';
	return buf;
}

/*
 * What a scrape knows of one service: a copy, since a scrape built across
 * loop iterations may outlive the unit (removed by a reload meanwhile).
 */
struct row {
	char name[160]; /* the label value: names are at most 128 bytes + ":N" */
	struct evm_service_info info;
	bool has_info, has_health, healthy;
	unsigned starts;
	unsigned long long checks, checks_failed;
	struct evm_cgroup_stats cg; /* cg.have: 0 without a cgroup */
};

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static double seconds(const struct timespec *ts)
{
	return (double)ts->tv_sec + (double)ts->tv_nsec / 1e9;
}

static void daemon_families(struct text *t, struct daemon *d, const struct row *rows, size_t n)
{
	family(t, "evmon_build_info", "gauge", "The evmon version, as a label; always 1.");
	put(t, "evmon_build_info{version=\"%s\"} 1\n", evm_version());
	family(t, "evmon_services", "gauge", "Services (instances counted one by one).");
	put(t, "evmon_services %zu\n", n); /* those of this scrape */
	family(t, "evmon_services_state", "gauge", "Services in each state.");
	size_t count[EVM_STATE_RELOADING + 1] = {0}, none = 0;
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].has_info)
			none++;
		else if ((unsigned)rows[i].info.state <= EVM_STATE_RELOADING)
			count[rows[i].info.state]++;
	}
	for (unsigned s = 0; s <= EVM_STATE_RELOADING; s++)
		put(t, "evmon_services_state{state=\"%s\"} %zu\n", evm_state_name((enum evm_state)s),
		    count[s]);
	put(t, "evmon_services_state{state=\"none\"} %zu\n", none);
	family(t, "evmon_clients", "gauge", "Control socket connections.");
	put(t, "evmon_clients %u\n", d->ctl ? control_clients(d->ctl) : 0);
	uint64_t bytes = 0, dropped = d->ctl ? control_dropped(d->ctl, &bytes) : 0;
	family(t, "evmon_subscribers_dropped_total", "counter",
	       "Event subscribers dropped because they did not read their events.");
	put(t, "evmon_subscribers_dropped_total %llu\n", (unsigned long long)dropped);
	family(t, "evmon_events_dropped_bytes_total", "counter",
	       "Bytes of events that dropped subscribers had not read.");
	put(t, "evmon_events_dropped_bytes_total %llu\n", (unsigned long long)bytes);
	family(t, "evmon_console_dropped_bytes_total", "counter",
	       "Bytes of the daemon's stdout/stderr (console lines, its log) dropped: not read.");
	put(t, "evmon_console_dropped_bytes_total{stream=\"stdout\"} %llu\n",
	    (unsigned long long)stdsink_dropped(1));
	put(t, "evmon_console_dropped_bytes_total{stream=\"stderr\"} %llu\n",
	    (unsigned long long)stdsink_dropped(2));
	family(t, "evmon_fd_reserve", "gauge",
	       "Descriptors held back for ctl clients and log files at the fd limit, "
	       "and how many are wanted.");
	put(t, "evmon_fd_reserve{held=\"now\"} %u\nevmon_fd_reserve{held=\"wanted\"} %u\n",
	    fdres_held(), fdres_wanted());
	family(t, "evmon_loop_iterations_total", "counter", "Iterations of the daemon's event loop.");
	put(t, "evmon_loop_iterations_total %llu\n", (unsigned long long)evm_loop_iterations(d->loop));
}

enum svc_metric { M_UP, M_STATE, M_RESTARTS, M_STARTS, M_FAILURES, M_UPTIME, M_EXIT_CODE, M_EXIT_SIGNAL,
		  M_EXIT_TIME, M_CPU, M_MEMORY, M_OOM_KILLS, M_TASKS, M_HEALTHY, M_HEALTH_CHECKS,
		  M_HEALTH_FAILED, M_COUNT };

static const struct {
	const char *name, *type, *help;
} svc_metrics[M_COUNT] = {
	[M_UP] = {"evmon_service_up", "gauge", "1 if the service is running (RUNNING), else 0."},
	[M_STATE] = {"evmon_service_state", "gauge",
		     "The service's state, as a label; one sample per service, always 1."},
	[M_RESTARTS] = {"evmon_service_restarts_total", "counter",
			"Automatic restarts since the last explicit start."},
	[M_STARTS] = {"evmon_service_starts_total", "counter",
		      "Starts since the service was created (explicit and automatic)."},
	[M_FAILURES] = {"evmon_service_failures", "gauge", "Failures in a row (reset by a stable run)."},
	[M_UPTIME] = {"evmon_service_uptime_seconds", "gauge",
		      "Time since the current process started (0 when not running)."},
	[M_EXIT_CODE] = {"evmon_service_last_exit_code", "gauge",
			 "Exit code of the last process (-1 if a signal killed it)."},
	[M_EXIT_SIGNAL] = {"evmon_service_last_exit_signal", "gauge",
			   "Signal that killed the last process (0 if it exited)."},
	[M_EXIT_TIME] = {"evmon_service_last_exit_time_seconds", "gauge",
			 "When the last process ended (Unix time)."},
	[M_CPU] = {"evmon_service_cpu_seconds_total", "counter",
		   "CPU time (user + system) of the service's cgroup."},
	[M_MEMORY] = {"evmon_service_memory_bytes", "gauge", "memory.current of the service's cgroup."},
	[M_OOM_KILLS] = {"evmon_service_oom_kills_total", "counter",
			 "Processes of the service's cgroup the OOM killer killed."},
	[M_TASKS] = {"evmon_service_tasks", "gauge", "Tasks (threads) in the service's cgroup."},
	[M_HEALTHY] = {"evmon_service_healthy", "gauge",
		       "1 if the service's health check passed last (healthy), else 0; "
		       "services with a health check only."},
	[M_HEALTH_CHECKS] = {"evmon_service_health_checks_total", "counter",
			     "Health checks run (services with a health check only)."},
	[M_HEALTH_FAILED] = {"evmon_service_health_checks_failed_total", "counter",
			     "Health checks that failed, timed out or could not run."},
};

static void svc_sample(struct text *t, enum svc_metric m, const struct row *r)
{
	const char *name = r->name;
	const struct evm_service_info *i = &r->info;
	switch (m) {
	case M_UP:
		put(t, "%s{service=\"%s\"} %d\n", svc_metrics[m].name, name,
		    r->has_info && (i->state == EVM_STATE_RUNNING || i->state == EVM_STATE_RELOADING));
		break;
	case M_STATE:
		put(t, "%s{service=\"%s\",state=\"%s\"} 1\n", svc_metrics[m].name, name,
		    r->has_info ? evm_state_name(i->state) : "none");
		break;
	case M_RESTARTS:
		put(t, "%s{service=\"%s\"} %u\n", svc_metrics[m].name, name, i->restarts);
		break;
	case M_STARTS:
		put(t, "%s{service=\"%s\"} %u\n", svc_metrics[m].name, name, r->starts);
		break;
	case M_FAILURES:
		put(t, "%s{service=\"%s\"} %u\n", svc_metrics[m].name, name, i->failures);
		break;
	case M_UPTIME:
		put(t, "%s{service=\"%s\"} %.3f\n", svc_metrics[m].name, name, (double)i->uptime_ms / 1e3);
		break;
	case M_EXIT_CODE:
		if (i->has_exit)
			put(t, "%s{service=\"%s\"} %d\n", svc_metrics[m].name, name,
			    i->last_exit.signal ? -1 : i->last_exit.code);
		break;
	case M_EXIT_SIGNAL:
		if (i->has_exit)
			put(t, "%s{service=\"%s\"} %d\n", svc_metrics[m].name, name, i->last_exit.signal);
		break;
	case M_EXIT_TIME:
		if (i->has_exit)
			put(t, "%s{service=\"%s\"} %.3f\n", svc_metrics[m].name, name,
			    seconds(&i->last_exit.end_time));
		break;
	case M_CPU:
		if (r->cg.have & EVM_CGROUP_STAT_CPU)
			put(t, "%s{service=\"%s\"} %.6f\n", svc_metrics[m].name, name,
			    (double)r->cg.cpu_usage_usec / 1e6);
		break;
	case M_MEMORY:
		if (r->cg.have & EVM_CGROUP_STAT_MEMORY)
			put(t, "%s{service=\"%s\"} %llu\n", svc_metrics[m].name, name,
			    (unsigned long long)r->cg.memory_current);
		break;
	case M_OOM_KILLS:
		if (r->cg.have & EVM_CGROUP_STAT_OOM)
			put(t, "%s{service=\"%s\"} %llu\n", svc_metrics[m].name, name,
			    (unsigned long long)r->cg.oom_kill);
		break;
	case M_TASKS:
		if (r->cg.have & EVM_CGROUP_STAT_PIDS)
			put(t, "%s{service=\"%s\"} %llu\n", svc_metrics[m].name, name,
			    (unsigned long long)r->cg.pids_current);
		break;
	case M_HEALTHY:
	case M_HEALTH_CHECKS:
	case M_HEALTH_FAILED:
		if (r->has_health)
			put(t, "%s{service=\"%s\"} %llu\n", svc_metrics[m].name, name,
			    m == M_HEALTHY ? (unsigned long long)r->healthy
			    : m == M_HEALTH_CHECKS ? r->checks : r->checks_failed);
		break;
	case M_COUNT:
		break;
	}
}

/*
 * A scrape is built in steps (metrics_scrape_read), each reading at most
 * STEP_ROWS services and writing about as much text as it is asked for,
 * so the endpoint's scrape of 10,000 services is spread over the loop
 * iterations that send it rather than holding one for tens of ms (issue
 * 19: exits not delayed by more than 10 ms). The services are read (and
 * their cgroup files) while the first family is written; the daemon's
 * families, which count them, come last. Units added after the scrape
 * began are left for the next (a reload's replacement would repeat a
 * name); one removed meanwhile moves the cursor on (metrics_unit_gone).
 */
#define STEP_ROWS 64

struct metrics_scrape {
	struct daemon *d;
	struct row *rows;
	size_t n, cap;
	struct unit *next;   /* the next unit to read; NULL once all are read */
	uint64_t seq;	     /* units up to this one (unit.seq) are in this scrape */
	int m;		     /* the family being written; M_COUNT: the daemon's */
	size_t i;	     /* its next row */
	bool header, done;
	struct text t;	     /* written, from off on not yet given out */
	size_t off;
	struct metrics_scrape *prev_s, *next_s; /* the scrapes under way */
};

static struct metrics_scrape *scrapes;
/*
 * The last scrape's rows stay allocated for the next: at 10,000 services
 * they are megabytes, which malloc would map (and the kernel fault in)
 * on every scrape. The daemon is single-threaded.
 */
static struct row *spare_rows;
static size_t spare_cap;

void metrics_unit_gone(struct unit *u)
{
	for (struct metrics_scrape *s = scrapes; s; s = s->next_s)
		if (s->next == u)
			s->next = u->next;
}

struct metrics_scrape *metrics_scrape_new(struct daemon *d)
{
	struct metrics_scrape *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	size_t want = d->nunits ? d->nunits : 1;
	if (spare_rows && spare_cap >= want) {
		s->rows = spare_rows;
		s->cap = spare_cap;
		spare_rows = NULL;
	} else if (!(s->rows = malloc(want * sizeof(*s->rows)))) {
		free(s);
		return NULL;
	} else {
		s->cap = want;
	}
	s->d = d;
	s->next = d->first;
	s->seq = d->last ? d->last->seq : 0;
	if ((s->next_s = scrapes))
		scrapes->prev_s = s;
	scrapes = s;
	return s;
}

void metrics_scrape_free(struct metrics_scrape *s)
{
	if (!s)
		return;
	if (s->prev_s)
		s->prev_s->next_s = s->next_s;
	else
		scrapes = s->next_s;
	if (s->next_s)
		s->next_s->prev_s = s->prev_s;
	if (!spare_rows || s->cap > spare_cap) {
		free(spare_rows);
		spare_rows = s->rows;
		spare_cap = s->cap;
	} else {
		free(s->rows);
	}
	free(s->t.p);
	free(s);
}

/* The cgroup figures the exposition has (cgroup.procs is not one: a file fewer a service) */
#define METRICS_CG_WANT                                                                             \
	(EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_OOM | EVM_CGROUP_STAT_PIDS)

static void row_fill(struct row *r, struct unit *u)
{
	if (strpbrk(u->name, "\\\"\n"))
		label(u->name, r->name, sizeof(r->name));
	else
		snprintf(r->name, sizeof(r->name), "%s", u->name);
	r->has_info = u->svc != NULL;
	if (u->svc)
		evm_service_info(u->svc, &r->info);
	else
		memset(&r->info, 0, sizeof(r->info));
	r->starts = u->starts;
	r->has_health = u->health != NULL;
	if (r->has_health) {
		r->healthy = health_of(u) == HEALTH_HEALTHY;
		health_counts(u, &r->checks, &r->checks_failed);
	}
	r->cg.have = 0;
	/* a few files each: only where a process runs (10,000 stopped ones cost 1.5 s) */
	if (u->cg && r->info.pid > 0 && evm_cgroup_stats_only(u->cg, METRICS_CG_WANT, &r->cg) < 0)
		r->cg.have = 0;
}

/* The next unit of the scrape into a new row: false once all are read. */
static bool read_next(struct metrics_scrape *s)
{
	struct unit *u = s->next;
	if (!u || u->seq > s->seq || s->n == s->cap) {
		s->next = NULL;
		return false;
	}
	row_fill(&s->rows[s->n++], u);
	s->next = u->next;
	return true;
}

/* More text: up to STEP_ROWS samples of the current family, its header, or the end. */
static void step(struct metrics_scrape *s)
{
	if (s->m == M_COUNT) {
		daemon_families(&s->t, s->d, s->rows, s->n);
		s->done = true;
		return;
	}
	if (!s->header) {
		family(&s->t, svc_metrics[s->m].name, svc_metrics[s->m].type, svc_metrics[s->m].help);
		s->header = true;
	}
	for (unsigned k = 0; k < STEP_ROWS; k++) {
		if (s->i == s->n && (s->m != 0 || !read_next(s))) {
			s->m++;
			s->i = 0;
			s->header = false;
			return;
		}
		svc_sample(&s->t, (enum svc_metric)s->m, &s->rows[s->i++]);
	}
}

ssize_t metrics_scrape_read(struct metrics_scrape *s, char *buf, size_t max)
{
	size_t n0 = s->n;
	while (s->t.len - s->off < max && !s->done && !s->t.failed && s->n - n0 < STEP_ROWS)
		step(s);
	if (s->t.failed)
		return -1;
	size_t k = s->t.len - s->off < max ? s->t.len - s->off : max;
	memcpy(buf, s->t.p + s->off, k);
	s->off += k;
	if (s->off == s->t.len)
		s->off = s->t.len = 0; /* the buffer is written again from its start */
	return (ssize_t)k;
}
