/*
 * state.c - the state record (see state.h): what its fields mean (the
 * identity of a definition, the clock of a backoff's next start) and reading
 * it at start, from the file a daemon that died left or from what a re-exec
 * passed. Writing it as services change is statewrite.c; taking over what it
 * names is takeover.c.
 *
 * A record is read whole or not at all: a line that does not parse, or an
 * end line missing or wrong (truncated), and it is ignored with its reason
 * logged; one of a newer format stops the daemon instead (state.h). A
 * service line names a process by pid and start time: takeover.c adopts it
 * only if both still match.
 */
#include "state.h"

#include "cgroups.h"
#include "daemon.h"
#include "daemonlog.h"
#include "health.h"
#include "notifysock.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REEXEC_ENV "EVMON_REEXEC_STATE"

/* ------------------------------------------------------ identity, clock */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211u;
	return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

/*
 * The strings do not change once the definition is built, the ids may
 * (an unknown user is looked up again before each start): the strings'
 * hash is kept in the definition, as each record write hashes every
 * service (at the start of 10,000 it was a tenth of the daemon's CPU).
 */
uint64_t state_ident(struct svc_conf *c)
{
	uint64_t h = c->ident_strings;
	if (!h) {
		h = 14695981039346656037u;
		for (char **w = c->argv; w && *w; w++)
			h = fnv_str(h, *w);
		h = fnv_str(h, "\1env");
		for (char **w = c->env; w && *w; w++)
			h = fnv_str(h, *w);
		h = fnv_str(h, c->directory);
		h = fnv_str(h, c->user);
		h = fnv_str(h, c->group);
		c->ident_strings = h;
	}
	int nums[] = {c->set_uid, (int)c->uid, c->set_gid, (int)c->gid, c->pol.set_umask,
		      (int)c->pol.umask, (int)c->pol.out[0], (int)c->pol.out[1]};
	return fnv(h, nums, sizeof(nums));
}

/* CLOCK_BOOTTIME in ms: the same clock before and after an exec, or a crash */
uint64_t state_boot_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t state_ms_until(uint64_t boot_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	uint64_t now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	if (boot_ms > UINT64_MAX / 1000 - 1) /* a record's garbage: far off, not wrapped */
		boot_ms = UINT64_MAX / 1000 - 1;
	uint64_t end_us = boot_ms * 1000;
	return end_us > now_us ? (end_us - now_us + 500) / 1000 : 0;
}

/* ------------------------------------------------------------- reading */

static void drop_fd(int *fd, bool close_it)
{
	if (*fd >= 0 && close_it)
		close(*fd);
	*fd = -1;
}

/* Every descriptor a re-exec's record names (those nobody took), closed or only forgotten. */
static void record_fds(struct record *r, bool close_them)
{
	for (size_t i = 0; i < r->n; i++) {
		for (int k = 0; k < 4; k++) /* a reexec's pipes no service took */
			drop_fd(&r->svcs[i].fds[k], close_them);
		drop_fd(&r->svcs[i].pidfd, close_them); /* and pidfds */
		drop_fd(&r->svcs[i].ready_fd, close_them);
	}
	drop_fd(&r->ctl_fd, close_them);
	drop_fd(&r->lock_fd, close_them);
	drop_fd(&r->client_fd, close_them);
	drop_fd(&r->cgw_fd, close_them);
	drop_fd(&r->notify_fd, close_them);
	for (size_t i = 0; i < r->nfollowers; i++)
		drop_fd(&r->followers[i].fd, close_them);
}

void record_free(struct record *r)
{
	if (!r)
		return;
	record_fds(r, true);
	for (size_t i = 0; i < r->n; i++) {
		free(r->svcs[i].name);
		free(r->svcs[i].olds);
	}
	for (size_t i = 0; i < r->nadded; i++) {
		free(r->added[i]);
		free(r->added_names[i]);
	}
	free(r->added_names);
	for (size_t i = 0; i < r->nfollowers; i++) {
		free(r->followers[i].patterns);
		free(r->followers[i].input);
		free(r->followers[i].cut_id);
	}
	free(r->client_in);
	free(r->client_id);
	free(r->client_sub);
	free(r->followers);
	free(r->added);
	hmap_clear(&r->idx);
	hmap_clear(&r->added_idx);
	hmap_clear(&r->gone_idx);
	free(r->svcs);
	free(r->cg_home);
	for (size_t i = 0; i < r->ngone; i++)
		free(r->gone[i]);
	free(r->gone);
	free(r);
}

const char *const rec_flag_names[REC_RESTART + 1] = {"run", "stopping", "down", "start", "stop",
						    "restart"};

static int parse_flags(const char *w, int version, enum rec_flags *out)
{
	for (int i = 0; i <= (version >= 7 ? REC_RESTART : REC_DOWN); i++)
		if (!strcmp(w, rec_flag_names[i])) {
			*out = (enum rec_flags)i;
			return 0;
		}
	return -1;
}

static struct rec_svc *rec_push(struct record *r)
{
	if ((r->n & (r->n - 1)) == 0 || !r->n) {
		size_t cap = r->n ? r->n * 2 : 16;
		struct rec_svc *s = realloc(r->svcs, cap * sizeof(*s));
		if (!s)
			return NULL;
		r->svcs = s;
	}
	struct rec_svc *s = &r->svcs[r->n];
	memset(s, 0, sizeof(*s));
	s->fds[0] = s->fds[1] = s->fds[2] = s->fds[3] = -1;
	s->pidfd = s->ready_fd = -1;
	return s;
}

/* "added JSON\n": the definition of a service added with ctl add (without the newline) */
static struct rec_name *rec_name_new(const char *name)
{
	size_t len = strlen(name) + 1;
	struct rec_name *n = calloc(1, sizeof(*n) + len);
	if (n)
		memcpy(n->name, name, len);
	return n;
}

static int parse_added(struct record *r, const char *json)
{
	char **a = realloc(r->added, (r->nadded + 1) * sizeof(*a));
	if (!a)
		return -1;
	r->added = a;
	struct rec_name **nm = realloc(r->added_names, (r->nadded + 1) * sizeof(*nm));
	if (!nm)
		return -1;
	r->added_names = nm;
	/* kept as the definition: with its newline, the next record had an empty line */
	if (!(a[r->nadded] = strndup(json, strcspn(json, "\n"))))
		return -1;
	/* its name, read once: units_load asks for each service of the file (state_added_claims) */
	cJSON *svc = cJSON_Parse(a[r->nadded]);
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(svc, "name"));
	nm[r->nadded] = name ? rec_name_new(name) : NULL;
	cJSON_Delete(svc);
	if (name && !nm[r->nadded]) {
		free(a[r->nadded]);
		return -1;
	}
	r->nadded++;
	return 0;
}

static enum evm_state state_by_name(const char *name)
{
	for (int i = EVM_STATE_STOPPED; i <= EVM_STATE_RELOADING; i++)
		if (!strcmp(evm_state_name((enum evm_state)i), name))
			return (enum evm_state)i;
	return (enum evm_state)-1;
}


/* "exec follower FD JSON": an events follower handed over; json NULL: "exec conn FD" */
static int parse_follower(struct record *r, int fd, const char *json)
{
	struct rec_follower *f = realloc(r->followers, (r->nfollowers + 1) * sizeof(*f));
	if (!f)
		return -1;
	r->followers = f;
	f[r->nfollowers].fd = fd;
	f[r->nfollowers].patterns = NULL;
	f[r->nfollowers].input = NULL;
	f[r->nfollowers].inlen = 0;
	f[r->nfollowers].cut_id = NULL;
	if (json && !(f[r->nfollowers].patterns = strndup(json, strcspn(json, "\n"))))
		return -1;
	r->nfollowers++;
	return 0;
}

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "exec input FD HEX": the unread input of the connection on fd (handed over above) */
static int parse_input(struct record *r, int fd, const char *hex)
{
	size_t n = strcspn(hex, "\n");
	char **dst = NULL;
	size_t *len = NULL;
	if (fd >= 0 && fd == r->client_fd) {
		dst = &r->client_in;
		len = &r->client_inlen;
	}
	for (size_t i = r->nfollowers; !dst && i-- > 0;)
		if (r->followers[i].fd == fd) {
			dst = &r->followers[i].input;
			len = &r->followers[i].inlen;
		}
	if (!dst || *dst || !n || n % 2 || !(*dst = malloc(n / 2)))
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		(*dst)[i] = (char)(hi << 4 | lo);
	}
	*len = n / 2;
	return 0;
}

/* "exec cut FD ID": the connection on fd (handed over above) waited for a reply */
static int parse_cut(struct record *r, int fd, const char *id)
{
	for (size_t i = r->nfollowers; i-- > 0;)
		if (r->followers[i].fd == fd && !r->followers[i].cut_id)
			return (r->followers[i].cut_id = strndup(id, strcspn(id, "\n"))) ? 0 : -1;
	return -1;
}

/*
 * The service of an "exec" line: they are written in the order of the
 * service lines, so the search resumes where the last one stopped.
 */
static struct rec_svc *exec_svc(struct record *r, const char *name)
{
	for (size_t k = 0; k < r->n; k++, r->pipe_at = (r->pipe_at + 1) % r->n)
		if (!strcmp(r->svcs[r->pipe_at].name, name))
			return &r->svcs[r->pipe_at];
	return NULL;
}

/*
 * "exec cg NAME made WD POPULATED OOM" (WD -1: not watched; OOM "-": its
 * run counts none, no memory.events when it began; "?": unknown, read at
 * the adoption), from format 6 followed by " INO DEV" when the file its
 * watch watches is known, or "exec cg NAME unmade": what the old image
 * knew of its cgroup
 */
static int parse_cg(struct record *r, const char *line)
{
	char name[300], made[8], oom[24];
	int wd, pop, at = 0, tail = 0;
	struct evm_cgroup_kept k = {0};
	if (sscanf(line, "%299s unmade%n", name, &at) == 1 && at && line[at] == '\n') {
		/* not made: no flag */
	} else if (sscanf(line, "%299s %7s %d %d %23s%n", name, made, &wd, &pop, oom, &at) == 5 &&
		   !strcmp(made, "made") && wd >= -1 && (pop == 0 || pop == 1)) {
		k.flags = EVM_CGROUP_KEPT_MADE;
		if (wd >= 0) {
			k.flags |= EVM_CGROUP_KEPT_WATCH | (pop ? EVM_CGROUP_KEPT_POPULATED : 0);
			k.wd = wd;
		}
		/* format 5 read what follows OOM as nothing: so does it still */
		if (r->version >= 6 && line[at] != '\n' &&
		    (wd < 0 || sscanf(line + at, " %" SCNu64 " %" SCNu64 "%n", &k.ino, &k.dev, &tail) != 2 ||
		     line[at + tail] != '\n'))
			return -1;
		if (tail)
			k.flags |= EVM_CGROUP_KEPT_INO;
		if (!strcmp(oom, "-")) {
			k.flags |= EVM_CGROUP_KEPT_NO_OOM;
		} else if (strcmp(oom, "?")) {
			char *end;
			errno = 0;
			k.oom_kills = strtoull(oom, &end, 10);
			if (errno || *end || end == oom)
				return -1;
			k.flags |= EVM_CGROUP_KEPT_OOM;
		}
	} else {
		return -1;
	}
	struct rec_svc *s = exec_svc(r, name);
	if (!s || s->has_cg)
		return -1;
	s->has_cg = true;
	s->cg = k;
	return 0;
}

static struct timespec ms_to_ts(int64_t ms)
{
	return (struct timespec){.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
}

/* " why=TEXT": %XX back to its byte; a bad escape ends it */
static void parse_why(struct rec_svc *s, const char *v)
{
	size_t n = 0;
	for (; *v && n + 1 < sizeof(s->why); v++) {
		unsigned x;
		if (*v != '%')
			s->why[n++] = *v;
		else if (sscanf(v + 1, "%2x", &x) == 1 && isxdigit((unsigned char)v[1]) &&
			 isxdigit((unsigned char)v[2]) && x) /* any byte statewrite.c escaped */
			s->why[n++] = (char)x, v += 2;
		else
			break;
	}
	s->why[n] = '\0';
}

/* since=MS, err=STAGE:ERRNO, exit=PID:STATUS:FLAGS:END_MS:RUN_MS (statewrite.c); others are left */
static void parse_past(struct rec_svc *s, const char *w)
{
	if (!strncmp(w, "why=", 4)) {
		parse_why(s, w + 4);
		return;
	}
	int64_t ms, end;
	int stage, err, pid, status;
	unsigned fl;
	uint64_t run;
	char rest;
	if (sscanf(w, "since=%" SCNd64 "%c", &ms, &rest) == 1 && ms > 0) {
		s->past.since = ms_to_ts(ms);
		s->has_past = true;
	} else if (sscanf(w, "err=%d:%d%c", &stage, &err, &rest) == 2 && stage > 0 &&
		   stage <= EVM_STAGE_CTTY && err > 0) {
		s->past.last_error = (struct evm_spawn_error){.stage = (enum evm_spawn_stage)stage,
							      .error = err};
		s->has_past = true;
	} else if (sscanf(w, "exit=%d:%d:%u:%" SCNd64 ":%" SCNu64 "%c", &pid, &status, &fl, &end,
			  &run, &rest) == 5 && pid > 0 && end > 0) {
		struct evm_exit *x = &s->past.last_exit;
		memset(x, 0, sizeof(*x));
		x->pid = pid;
		x->status = status;
		x->status_unknown = fl & 1;
		x->adopted = fl & 2;
		x->oom_killed = fl & 4;
		if (!x->status_unknown && WIFEXITED(status)) {
			x->code = WEXITSTATUS(status);
		} else if (!x->status_unknown && WIFSIGNALED(status)) {
			x->code = -1;
			x->signal = WTERMSIG(status);
			x->core_dumped = WCOREDUMP(status);
		} else {
			x->code = -1;
		}
		x->end_time = ms_to_ts(end);
		x->runtime_ns = run > UINT64_MAX / 1000000 ? UINT64_MAX : run * 1000000;
		x->start_time = ms_to_ts(end - (int64_t)(run < (uint64_t)end ? run : 0));
		s->past.has_exit = true;
		s->has_past = true;
	}
}

/* One line of the record into r; exec: the reexec lines are allowed. 0 or -1. */
static int parse_line(struct record *r, char *line, bool exec)
{
	if (!strncmp(line, "added {", 7) && r->version >= 2)
		return parse_added(r, line + 6);
	char name[300], flags[16], path[PATH_MAX];
	int pid, a, b, f[4];
	uint64_t start, ident;
	char st[16];
	unsigned c[4];
	uint64_t next;
	int tail = 0;
	int got = sscanf(line, "service %299s %d %" SCNu64 " %" SCNx64 " %15s %15s %u %u %u %u %" SCNu64 "%n",
		       name, &pid, &start, &ident, flags, st, &c[0], &c[1], &c[2], &c[3], &next, &tail);
	if (got == 5 || (got == 11 && r->version >= 2)) {
		struct rec_svc *s = rec_push(r);
		if (!s || pid < 0 || parse_flags(flags, r->version, &s->flags) < 0 || !(s->name = strdup(name)))
			return -1;
		/*
		 * Formats 2 to 6 may end the line with format 7's flag (statewrite.c):
		 * it is what the service waited for. Anything else there is left, as
		 * every reader of these formats has done.
		 */
		char intent[16];
		enum rec_flags f7;
		if (got == 11 && r->version < 7 && sscanf(line + tail, " %15s", intent) == 1 &&
		    parse_flags(intent, 7, &f7) == 0 && f7 >= REC_START)
			s->flags = f7;
		/* and its health, after that in every format */
		char w[512];
		int used;
		for (const char *p = line + tail; got == 11 && sscanf(p, " %511s%n", w, &used) == 1;
		     p += used) {
			char st_name[16];
			unsigned streak;
			uint64_t ms;
			parse_past(s, w);
			if (sscanf(w, "deadline=%" SCNu64, &ms) == 1)
				s->deadline = ms;
			if (!strcmp(w, "failing"))
				s->failing = true;
			if (!strcmp(w, "tree"))
				s->tree = true;
			struct rec_old o;
			char end;
			o.held = false;
			o.deadline = 0;
			if (((sscanf(w, "old=%d:%" SCNu64 ":%" SCNu64 "%c", &o.pid, &o.start, &o.deadline,
				     &end) == 3) ||
			     (sscanf(w, "held=%d:%" SCNu64 ":%d:%" SCNu64 "%c", &o.pid, &o.start,
				     &o.stop_signal, &o.stop_ms, &end) == 4 &&
			      o.stop_signal > 0 && o.stop_signal < NSIG && (o.held = true))) &&
			    o.pid > 1 && s->nolds < 64) {
				struct rec_old *v = realloc(s->olds, (s->nolds + 1) * sizeof(*v));
				if (v) { /* else left to the sweep, as before the old= words */
					s->olds = v;
					v[s->nolds++] = o;
				}
			}
			unsigned n;
			if (sscanf(w, "starts=%u%c", &n, &end) == 1) {
				s->has_starts = true;
				s->starts = n;
			}
			if (sscanf(w, "watchdog=%" SCNu64, &ms) == 1) {
				s->has_watchdog = true;
				s->watchdog_ms = ms;
			}
			if (sscanf(w, "health=%15[a-z]:%u", st_name, &streak) == 2) {
				s->health = !strcmp(st_name, "healthy")	  ? HEALTH_HEALTHY
					    : !strcmp(st_name, "unhealthy") ? HEALTH_UNHEALTHY
									    : 0;
				s->health_streak = streak;
			}
		}
		s->pid = pid;
		s->start = start;
		s->ident = ident;
		r->n++;
		if (got == 11 && (int)(s->state = state_by_name(st)) < 0)
			return -1;
		s->has_policy = got == 11;
		s->restarts = c[0];
		s->failures = c[1];
		s->start_failures = c[2];
		s->backoff_step = c[3];
		s->next_start = next;
		return 0;
	}
	if (sscanf(line, "daemon %d%n", &pid, &tail) == 1) {
		r->daemon = pid;
		/* anything else after the pid is left, as every reader has done */
		char w[256];
		int used;
		for (const char *p = line + tail; sscanf(p, " %255s%n", w, &used) == 1; p += used) {
			if (!strncmp(w, "notify=", 7) && notifysock_name_ok(w + 7) &&
			    strlen(w + 7) < sizeof(r->notify))
				memcpy(r->notify, w + 7, strlen(w + 7) + 1);
			else if (!strncmp(w, "id=", 3) && strlen(w) == 3 + 16)
				r->lineage = strtoull(w + 3, NULL, 16);
		}
		return 0;
	}
	if (!exec)
		return -1;
	if (sscanf(line, "exec ctl %d %d", &a, &b) == 2) {
		r->ctl_fd = a;
		r->lock_fd = b;
		return 0;
	}
	if (r->version >= 3 && sscanf(line, "exec times %" SCNu64 " %" SCNu64 " %" SCNu64,
				      &r->t_req, &r->t_stop, &r->t_write) == 3)
		return 0;
	if (r->version >= 4 && !strncmp(line, "exec client-id ", 15))
		return r->client_id || !(r->client_id = strndup(line + 15, strcspn(line + 15, "\n")))
			       ? -1 : 0;
	if (r->version >= 4 && !strncmp(line, "exec client-sub [", 17))
		return r->client_sub || !(r->client_sub = strndup(line + 16, strcspn(line + 16, "\n")))
			       ? -1 : 0;
	if (sscanf(line, "exec client %d", &a) == 1) {
		r->client_fd = a;
		return 0;
	}
	if (sscanf(line, "exec follower %d %n", &a, &b) == 1 && line[b] == '[')
		return parse_follower(r, a, line + b);
	if (sscanf(line, "exec conn %d", &a) == 1)
		return parse_follower(r, a, NULL);
	if (r->version >= 3 && sscanf(line, "exec input %d %n", &a, &b) == 1 && b > 0)
		return parse_input(r, a, line + b);
	if (r->version >= 4 && sscanf(line, "exec cut %d %n", &a, &b) == 1 && b > 0)
		return parse_cut(r, a, line + b);
	if (sscanf(line, "exec cghome %4095s", path) == 1)
		return (r->cg_home = strdup(path)) ? 0 : -1;
	struct rec_svc *s;
	if (sscanf(line, "exec pipe %299s %d %d %d %d", name, &f[0], &f[1], &f[2], &f[3]) == 5) {
		if (!(s = exec_svc(r, name)))
			return -1;
		memcpy(s->fds, f, sizeof(f));
		return 0;
	}
	if (r->version >= 3 && sscanf(line, "exec pidfd %299s %d %d", name, &a, &b) == 3) {
		if (!(s = exec_svc(r, name)) || s->pid != a || b < 0)
			return -1;
		s->pidfd = b;
		return 0;
	}
	if (r->version >= 5 && sscanf(line, "exec cgwatch %d", &a) == 1) {
		if (r->cgw_fd >= 0 || a < 0)
			return -1;
		r->cgw_fd = a;
		return 0;
	}
	if (r->version >= 8 && sscanf(line, "exec readyfd %299s %d", name, &a) == 2) {
		if (!(s = exec_svc(r, name)) || s->ready_fd >= 0 || a < 0)
			return -1;
		s->ready_fd = a;
		return 0;
	}
	if (r->version >= 8 && sscanf(line, "exec notify %d", &a) == 1) {
		if (r->notify_fd >= 0 || a < 0)
			return -1;
		r->notify_fd = a;
		return 0;
	}
	if (r->version >= 5 && !strncmp(line, "exec cg ", 8))
		return parse_cg(r, line + 8);
	if (r->version >= 10 && sscanf(line, "exec gone %299s", name) == 1) {
		struct rec_name **v = realloc(r->gone, (r->ngone + 1) * sizeof(*v));
		if (!v)
			return -1;
		r->gone = v;
		if (!(r->gone[r->ngone] = rec_name_new(name)))
			return -1;
		r->ngone++;
		return 0;
	}
	return -1;
}

/*
 * The record in f: NULL with why when it is not a whole one (a bad magic,
 * a line that does not parse, no "end N" or the wrong N: truncated), and
 * *newer its format's version when that is newer than ours, else 0.
 */
/*
 * The record's sets, once it is read (its arrays move no more): the
 * services by name, the added definitions' names (each marked claimed when
 * a service line is one of its instances: NAME, or NAME:N), and the gone
 * ones. O(lines): a takeover of 10,000 services asks each set 10,000 times.
 */
static int record_index(struct record *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (hmap_add(&r->idx, &r->svcs[i].node, r->svcs[i].name) < 0)
			return -1;
	for (size_t i = 0; i < r->nadded; i++)
		if (r->added_names[i] &&
		    hmap_add(&r->added_idx, &r->added_names[i]->node, r->added_names[i]->name) < 0)
			return -1;
	for (size_t i = 0; i < r->ngone; i++)
		if (hmap_add(&r->gone_idx, &r->gone[i]->node, r->gone[i]->name) < 0)
			return -1;
	for (size_t i = 0; r->added_idx.n && i < r->n; i++) {
		const char *s = r->svcs[i].name, *colon = strrchr(s, ':');
		struct hnode *hn = hmap_get(&r->added_idx, s);
		char def[300];
		size_t len = colon ? (size_t)(colon - s) : 0;
		if (!hn && colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
		    len < sizeof(def)) {
			memcpy(def, s, len);
			def[len] = '\0';
			hn = hmap_get(&r->added_idx, def);
		}
		if (hn)
			HMAP_ENTRY(hn, struct rec_name, node)->claimed = true;
	}
	return 0;
}

static struct record *record_parse(FILE *f, bool exec, int *newer, char *why, size_t whylen)
{
	struct record *r = calloc(1, sizeof(*r));
	char *line = NULL; /* an added service's definition may be long */
	size_t cap = 0;
	ssize_t got;
	unsigned lineno = 1;
	size_t end = SIZE_MAX;
	if (!r) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	r->ctl_fd = r->lock_fd = r->client_fd = r->cgw_fd = r->notify_fd = -1;
	r->reexec = exec;
	got = getline(&line, &cap, f);
	int v = 0, at = 0;
	*newer = 0;
	if (got > 0 && sscanf(line, "evmon-state %d%n", &v, &at) == 1 && !strcmp(line + at, "\n") &&
	    v >= 1 && v <= STATE_VERSION)
		r->version = v;
	if (!r->version && v > STATE_VERSION) {
		*newer = v;
		snprintf(why, whylen, "format %d, newer than this evmon's (%d)", v, STATE_VERSION);
		goto bad;
	}
	if (!r->version) {
		snprintf(why, whylen, "line 1: not 'evmon-state N' (N from 1 to %d)", STATE_VERSION);
		goto bad;
	}
	while ((got = getline(&line, &cap, f)) >= 0) {
		lineno++;
		size_t len = (size_t)got;
		if (!len || line[len - 1] != '\n' || strlen(line) != len) {
			snprintf(why, whylen, "line %u: cut short", lineno);
			goto bad;
		}
		if (end != SIZE_MAX) {
			snprintf(why, whylen, "line %u: after the end", lineno);
			goto bad;
		}
		if (sscanf(line, "end %zu", &end) == 1)
			continue;
		if (parse_line(r, line, exec) < 0) {
			line[len - 1] = '\0';
			snprintf(why, whylen, "line %u: cannot read '%.80s'", lineno, line);
			goto bad;
		}
	}
	if (end != r->n) {
		snprintf(why, whylen, "%s", end == SIZE_MAX ? "truncated (no end line)"
				      : "truncated (fewer services than its end line says)");
		goto bad;
	}
	if (record_index(r) < 0) {
		snprintf(why, whylen, "out of memory");
		goto bad;
	}
	free(line);
	return r;
bad:
	free(line);
	record_free(r);
	return NULL;
}

/*
 * What a daemon does with a record it cannot read because it is newer (a
 * downgrade): its services may be running, so it does not start them again.
 */
static void refuse_newer(const char *what, int version)
{
	fprintf(stderr, "evmon daemon: %s is of state format %d, newer than this evmon %s reads "
		"(%d): the services it names may still be running, and are not started a second "
		"time: not starting; run the evmon that wrote it (or, if its services are gone, "
		"remove the record)\n", what, version, evm_version(), STATE_VERSION);
}

/*
 * The state a reexec passed us (its memfd, named in the environment), or
 * NULL; *newer as record_parse's.
 */
static struct record *read_reexec(struct daemon *d, int *newer)
{
	const char *e = getenv(REEXEC_ENV);
	if (!e)
		return NULL;
	int fd = atoi(e);
	unsetenv(REEXEC_ENV); /* the services must not inherit it */
	FILE *f = fd > 2 && lseek(fd, 0, SEEK_SET) == 0 ? fdopen(fd, "re") : NULL;
	if (!f) {
		dlog("reexec: cannot read the state passed in %s=%s: %s: services still running "
		     "are taken over from %s", REEXEC_ENV, e, strerror(errno), d->state_path);
		return NULL;
	}
	char why[200];
	struct record *r = record_parse(f, true, newer, why, sizeof(why));
	fclose(f);
	if (!r && !*newer)
		dlog("reexec: the state passed in %s: %s: services still running are taken over "
		     "from %s", REEXEC_ENV, why, d->state_path);
	return r;
}

int state_check(FILE *f, char *why, size_t whylen)
{
	int newer = 0;
	struct record *r = record_parse(f, true, &newer, why, whylen);
	if (!r)
		return -1;
	/* the descriptors it names are the daemon's own, still in use: only the memory goes */
	record_fds(r, false);
	record_free(r);
	return 0;
}

int state_init(struct daemon *d)
{
	int newer = 0;
	if (asprintf(&d->state_path, "%s.state", d->socket) < 0) {
		d->state_path = NULL;
		fprintf(stderr, "evmon daemon: out of memory\n");
		return -1;
	}
	d->rec = read_reexec(d, &newer);
	d->t_read = mono_ns();
	if (newer) { /* the old image asked us (--state-format) unless it is older than that */
		refuse_newer("the state passed by the re-exec", newer);
		d->state_newer = true; /* the services are our children: they live on */
		return -1;
	}
	return 0;
}

int state_load(struct daemon *d)
{
	int newer = 0;
	if (d->rec || !d->state_path)
		return 0;
	/* not a link: a root daemon would read (and act on) what it points to */
	int fd = open(d->state_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
	if (!f) {
		if (errno != ENOENT)
			dlog("state record %s: %s: services left running by a daemon that died (if "
			     "any) are not taken over", d->state_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 0;
	}
	/*
	 * Only a record this daemon's user wrote: in a directory others may
	 * write to (a control socket in /tmp), another user could leave one
	 * naming any process, which the takeover would adopt or kill.
	 */
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    st.st_nlink != 1 || (st.st_mode & 022)) {
		dlog("state record %s: not a regular file of uid %u with one name, writable by it "
		     "alone: ignored and left as it is; services left running by a daemon that "
		     "died (if any) are not taken over", d->state_path, (unsigned)geteuid());
		fclose(f);
		return 0;
	}
	char why[200];
	d->rec = record_parse(f, false, &newer, why, sizeof(why));
	fclose(f);
	if (newer) {
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "state record %s", d->state_path);
		refuse_newer(what, newer);
		d->state_newer = true;
		return -1;
	}
	if (!d->rec)
		dlog("state record %s: %s: ignored; services left running by a daemon that died "
		     "(if any) are not taken over", d->state_path, why);
	else
		dlog("state record %s: left by daemon %d, which died: taking over its %zu "
		     "service%s", d->state_path, (int)d->rec->daemon, d->rec->n,
		     d->rec->n == 1 ? "" : "s");
	return 0;
}

struct rec_svc *state_find(struct daemon *d, const char *name)
{
	struct hnode *n = d->rec ? hmap_get(&d->rec->idx, name) : NULL;
	struct rec_svc *s = n ? HMAP_ENTRY(n, struct rec_svc, node) : NULL;
	return s && !s->used ? s : NULL;
}
