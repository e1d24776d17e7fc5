/*
 * state.c - the state record (see state.h): writing it as services change,
 * reading it at start, and taking over what it names.
 *
 * A pid alone could name a process that reused it, so each line has the
 * process's start time too, and the library's adoption checks both through
 * a pidfd (evm_proc_adopt): an unrelated process is never touched. What a
 * crash loses anyway: the exit status of a survivor (reported unknown: we
 * are not its parent) and its output pipe (the read end died with the
 * daemon: see evmon.ini(5), CRASHES AND RE-EXEC).
 */
#include "state.h"

#include "cgroups.h"
#include "daemon.h"
#include "daemonlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STATE_MAGIC "evmon-state 2" /* STATE_VERSION */
#define STATE_MAGIC_V1 "evmon-state 1" /* read too: no "added" lines */
#define KILL_WAIT_MS 5000
#define REEXEC_ENV "EVMON_REEXEC_STATE"

/* ------------------------------------------------------------ identity */

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

/* ------------------------------------------------------------- reading */

void record_free(struct record *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		for (int k = 0; k < 4; k++) /* a reexec's pipes no service took */
			if (r->svcs[i].fds[k] >= 0)
				close(r->svcs[i].fds[k]);
		free(r->svcs[i].name);
	}
	if (r->ctl_fd >= 0)
		close(r->ctl_fd);
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	if (r->client_fd >= 0)
		close(r->client_fd);
	for (size_t i = 0; i < r->nadded; i++)
		free(r->added[i]);
	for (size_t i = 0; i < r->nfollowers; i++) {
		if (r->followers[i].fd >= 0)
			close(r->followers[i].fd);
		free(r->followers[i].patterns);
	}
	free(r->followers);
	free(r->added);
	hmap_clear(&r->idx);
	free(r->svcs);
	free(r->cg_home);
	free(r);
}

static int parse_flags(const char *w, enum rec_flags *out)
{
	static const char *const names[] = {"run", "stopping", "down"};
	for (int i = 0; i < 3; i++)
		if (!strcmp(w, names[i])) {
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
	return s;
}

/* "added JSON": the definition of a service added with ctl add */
static int parse_added(struct record *r, const char *json)
{
	char **a = realloc(r->added, (r->nadded + 1) * sizeof(*a));
	if (!a)
		return -1;
	r->added = a;
	if (!(a[r->nadded] = strdup(json)))
		return -1;
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

/* CLOCK_BOOTTIME in ms: the same clock before and after an exec, or a crash */
static uint64_t boot_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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
	if (json && !(f[r->nfollowers].patterns = strndup(json, strcspn(json, "\n"))))
		return -1;
	r->nfollowers++;
	return 0;
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
	int got = sscanf(line, "service %299s %d %" SCNu64 " %" SCNx64 " %15s %15s %u %u %u %u %" SCNu64,
		       name, &pid, &start, &ident, flags, st, &c[0], &c[1], &c[2], &c[3], &next);
	if (got == 5 || (got == 11 && r->version >= 2)) {
		struct rec_svc *s = rec_push(r);
		if (!s || pid < 0 || parse_flags(flags, &s->flags) < 0 || !(s->name = strdup(name)))
			return -1;
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
	if (sscanf(line, "daemon %d", &pid) == 1) {
		r->daemon = pid;
		return 0;
	}
	if (!exec)
		return -1;
	if (sscanf(line, "exec ctl %d %d", &a, &b) == 2) {
		r->ctl_fd = a;
		r->lock_fd = b;
		return 0;
	}
	if (sscanf(line, "exec client %d", &a) == 1) {
		r->client_fd = a;
		return 0;
	}
	if (sscanf(line, "exec follower %d %n", &a, &b) == 1 && line[b] == '[')
		return parse_follower(r, a, line + b);
	if (sscanf(line, "exec conn %d", &a) == 1)
		return parse_follower(r, a, NULL);
	if (sscanf(line, "exec cghome %4095s", path) == 1)
		return (r->cg_home = strdup(path)) ? 0 : -1;
	if (sscanf(line, "exec pipe %299s %d %d %d %d", name, &f[0], &f[1], &f[2], &f[3]) == 5) {
		/* written in the order of the service lines: the search resumes where it stopped */
		for (size_t k = 0; k < r->n; k++, r->pipe_at = (r->pipe_at + 1) % r->n)
			if (!strcmp(r->svcs[r->pipe_at].name, name)) {
				memcpy(r->svcs[r->pipe_at].fds, f, sizeof(f));
				return 0;
			}
		return -1;
	}
	return -1;
}

/*
 * The record in f: NULL with why when it is not a whole one (a bad magic,
 * a line that does not parse, no "end N" or the wrong N: truncated), and
 * *newer its format's version when that is newer than ours, else 0.
 */
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
	r->ctl_fd = r->lock_fd = r->client_fd = -1;
	r->reexec = exec;
	got = getline(&line, &cap, f);
	r->version = got < 0 ? 0 : !strcmp(line, STATE_MAGIC "\n") ? 2 : !strcmp(line, STATE_MAGIC_V1 "\n");
	int v;
	*newer = 0;
	if (!r->version && got > 0 && sscanf(line, "evmon-state %d", &v) == 1 && v > STATE_VERSION) {
		*newer = v;
		snprintf(why, whylen, "format %d, newer than this evmon's (%d)", v, STATE_VERSION);
		goto bad;
	}
	if (!r->version) {
		snprintf(why, whylen, "line 1: not '%s' (nor '%s')", STATE_MAGIC, STATE_MAGIC_V1);
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
	for (size_t i = 0; i < r->n; i++) /* the array moves no more */
		if (hmap_add(&r->idx, &r->svcs[i].node, r->svcs[i].name) < 0) {
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

int state_init(struct daemon *d)
{
	int newer = 0;
	if (asprintf(&d->state_path, "%s.state", d->socket) < 0) {
		d->state_path = NULL;
		fprintf(stderr, "evmon daemon: out of memory\n");
		return -1;
	}
	d->rec = read_reexec(d, &newer);
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
	FILE *f = fopen(d->state_path, "re");
	if (!f) {
		if (errno != ENOENT)
			dlog("state record %s: %s: services left running by a daemon that died (if "
			     "any) are not taken over", d->state_path, strerror(errno));
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

/* ----------------------------------------------------------- take over */

/*
 * The services added with ctl add, from their definitions in the record:
 * the config file does not have them. Only the instances the record names
 * (one removed since is not made again); none starts here: the takeover
 * adopts the running ones, and those the record says are down stay down.
 */
static void readd_one(struct daemon *d, const char *def)
{
	struct errlist errs = {0};
	cJSON *svc = cJSON_Parse(def);
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(svc, "name");
	struct svc_conf *c = NULL;
	if (cJSON_IsObject(svc) && cJSON_IsString(nm))
		c = requests_add_conf(d, svc, nm->valuestring, &errs);
	else
		errlist_add(&errs, "add", 0, "not a definition");
	if (c && !(c->added_def = strdup(def)))
		errlist_add(&errs, "add", 0, "out of memory");
	char name[256];
	for (unsigned i = 0; c && !errs.n && i < c->instances; i++) {
		unit_instance_name(c, i, name, sizeof(name));
		if (state_find(d, name) && unit_add(d, c, i, true))
			dlog("service %s: added with ctl add before the %s: made again", name,
			     d->rec->reexec ? "re-exec" : "crash");
	}
	if (errs.n)
		dlog("service %s: added with ctl add before the %s: cannot make it again: %s",
		     cJSON_IsString(nm) ? nm->valuestring : "?", d->rec->reexec ? "re-exec" : "crash",
		     errs.msgs[0]);
	svc_conf_unref(c);
	cJSON_Delete(svc);
	errlist_free(&errs);
}

void state_readd(struct daemon *d)
{
	for (size_t i = 0; d->rec && i < d->rec->nadded; i++)
		readd_one(d, d->rec->added[i]);
}

/* SIGKILL a survivor (its group when it leads one) and wait for its death. */
static int kill_survivor(struct daemon *d, pid_t pid, uint64_t start)
{
	struct evm_adopt_opts o = {.pid = pid, .flags = EVM_ADOPT_START_TIME, .start_time = start};
	struct evm_proc *p;
	int r = evm_proc_adopt(d->loop, &o, &p);
	if (r < 0)
		return r;
	if (evm_proc_signal_group(p, SIGKILL) < 0)
		r = evm_proc_signal(p, SIGKILL);
	struct pollfd pfd = {.fd = evm_proc_pidfd(p), .events = POLLIN};
	if (r == 0 && pfd.fd >= 0)
		poll(&pfd, 1, KILL_WAIT_MS); /* before a fresh copy starts (its port, its files) */
	evm_proc_unref(p); /* its exit (status unknown) is reported by the loop */
	return r;
}

static void kill_one(struct daemon *d, struct rec_svc *s, const char *why)
{
	int r = kill_survivor(d, s->pid, s->start);
	if (r == 0)
		dlog("service %s: pid %d, left running by daemon %d, killed (%s)", s->name,
		     (int)s->pid, (int)d->rec->daemon, why);
	else if (r != -ESRCH)
		dlog("service %s: pid %d, left running by daemon %d: cannot kill it: %s", s->name,
		     (int)s->pid, (int)d->rec->daemon, strerror(-r));
}

/*
 * Carry on where the policy had got to: its counters, and a backoff, an
 * exited or fatal state (as: into that state, or STOPPED for the counters
 * only). The backoff's deadline is on CLOCK_BOOTTIME: what is left of it.
 */
static void resume_one(struct daemon *d, struct unit *u, const struct rec_svc *s, enum evm_state as)
{
	if (!s->has_policy)
		return;
	uint64_t now = boot_ms();
	struct evm_service_resume r = {
		.state = as, .restarts = s->restarts, .failures = s->failures,
		.start_failures = s->start_failures, .backoff_step = s->backoff_step,
		.delay_ms = s->next_start > now ? s->next_start - now : 0,
		.message = d->rec->reexec ? "carried over across the re-exec"
					  : "carried over from the daemon that died",
	};
	int e = evm_service_resume(u->svc, &r);
	if (e < 0)
		dlog("service %s: cannot carry over its restart counters: %s", u->name, strerror(-e));
	else if (as != EVM_STATE_STOPPED)
		u->want_start = false;
}

static void take_over_one(struct daemon *d, struct rec_svc *s)
{
	struct unit *u = unit_find(d, s->name);
	bool same = u && u->svc && state_ident(u->conf) == s->ident;
	if (same && s->flags == REC_DOWN) {
		u->want_start = false; /* stopped by a user, or over: it stays stopped */
		bool over = s->state == EVM_STATE_EXITED || s->state == EVM_STATE_FATAL;
		resume_one(d, u, s, over ? s->state : EVM_STATE_STOPPED);
		return;
	}
	if (!s->pid) {
		if (same && s->flags == REC_RUN && s->state == EVM_STATE_BACKOFF)
			resume_one(d, u, s, EVM_STATE_BACKOFF); /* not started at once */
		return;
	}
	if (!same || !u->conf->pol.adopt) {
		kill_one(d, s, !u || !u->svc ? "it is not in the config"
			       : !same	     ? "its definition changed"
					     : "adopt = no");
		return;
	}
	struct evm_adopt_opts o = {.pid = s->pid, .flags = EVM_ADOPT_START_TIME,
				   .start_time = s->start};
	resume_one(d, u, s, EVM_STATE_STOPPED); /* its counters, kept by the adoption */
	int r = evm_service_adopt(u->svc, &o);
	if (r == 0) {
		u->want_start = false;
		u->adopted = true;
		u->rec_pid = s->pid;
		u->rec_start = s->start;
		if (!d->rec->reexec) /* a re-exec's are counted in one line */
			dlog("service %s: adopted pid %d, left running by daemon %d (its exit status "
			     "will be unknown)", s->name, (int)s->pid, (int)d->rec->daemon);
		if (s->flags == REC_STOPPING)
			evm_service_stop(u->svc);
	} else if (r == -ESRCH) {
		dlog("service %s: pid %d of the record is gone (or is another process now): "
		     "started again", s->name, (int)s->pid);
	} else {
		dlog("service %s: cannot adopt pid %d: %s", s->name, (int)s->pid, strerror(-r));
	}
}

/*
 * After a re-exec every child of the old image is still ours: the services
 * just adopted (those added with ctl add too: state_readd), and what no
 * record names (health and readiness checks under way, a service whose
 * definition could not be made again). Nobody would wait for those: they are
 * killed (their group: checks lead their own) and the loop reaps them. The
 * adopted ones are refused with -EEXIST. Without /proc/PID/task/TID/children
 * (CONFIG_PROC_CHILDREN) they are left, as before.
 */
static size_t end_strays(struct daemon *d)
{
	size_t n = 0;
	DIR *tasks = opendir("/proc/self/task");
	struct dirent *t;
	while (tasks && (t = readdir(tasks))) {
		char path[64];
		if (t->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.20s/children", t->d_name);
		FILE *f = fopen(path, "re");
		int pid;
		while (f && fscanf(f, "%d", &pid) == 1) {
			struct evm_adopt_opts o = {.pid = pid};
			struct evm_proc *p;
			if (evm_proc_adopt(d->loop, &o, &p) < 0)
				continue; /* -EEXIST: a service's; -ESRCH: gone */
			if (evm_proc_signal_group(p, SIGKILL) < 0)
				evm_proc_signal(p, SIGKILL);
			evm_proc_unref(p);
			n++;
		}
		if (f)
			fclose(f);
	}
	if (tasks)
		closedir(tasks);
	return n;
}

/* A cgroup of the base: kept if an adopted service's, else its processes are killed. */
static int sweep_decide(const char *unit, void *data)
{
	struct daemon *d = data;
	struct unit *u = unit_find(d, unit);
	if (!u)
		return CGROUPS_SWEEP_REMOVE;
	return u->adopted ? CGROUPS_SWEEP_KEEP : CGROUPS_SWEEP_KILL;
}

void state_take_over(struct daemon *d)
{
	size_t kept = 0;
	d->quiet_adopt = d->rec && d->rec->reexec;
	if (d->rec)
		for (size_t i = 0; i < d->rec->n; i++) {
			d->rec->svcs[i].used = true;
			take_over_one(d, &d->rec->svcs[i]);
		}
	d->quiet_adopt = false;
	for (struct unit *u = d->first; d->rec && u; u = u->next)
		kept += u->adopted;
	size_t strays = d->rec && d->rec->reexec ? end_strays(d) : 0;
	if (strays)
		dlog("%zu processes of the previous image that no record names (checks under way, "
		     "services not made again) killed", strays);
	if (d->cg && d->cg_kept)
		cgroups_sweep(d->cg, sweep_decide, d);
	if (d->rec && d->rec->client_fd >= 0) { /* who asked for the reexec */
		reexec_answer(d, d->rec->client_fd, kept);
		d->rec->client_fd = -1;
	}
	if (d->rec && d->rec->reexec)
		reexec_done(d, d->rec, kept);
	record_free(d->rec); /* the file stays until our first record replaces it */
	d->rec = NULL;
	state_changed(d);
}

/* ------------------------------------------------------------- writing */

/* " V" before p (the line is built from its end) */
static char *put_dec(char *p, uint64_t v)
{
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	*--p = ' ';
	return p;
}

static char *put_word(char *p, const char *w)
{
	for (size_t n = strlen(w); n;)
		*--p = w[--n];
	*--p = ' ';
	return p;
}

/*
 * " PID START IDENT FLAGS STATE RESTARTS FAILURES START_FAILURES STEP NEXT\n"
 * as "%d %" PRIu64 " %016" PRIx64 " %s ..." would: every service at each write
 */
static void put_line_tail(FILE *f, pid_t pid, uint64_t start, uint64_t ident, const char *flags,
			  const struct evm_service_info *info, uint64_t next)
{
	char buf[160], *p = buf + sizeof(buf);
	*--p = '\n';
	p = put_dec(p, next);
	p = put_dec(p, info->backoff_step);
	p = put_dec(p, info->start_failures);
	p = put_dec(p, info->failures);
	p = put_dec(p, info->restarts);
	p = put_word(p, evm_state_name(info->state));
	p = put_word(p, flags);
	for (int k = 0; k < 16; k++, ident >>= 4)
		*--p = "0123456789abcdef"[ident & 15];
	*--p = ' ';
	p = put_dec(p, start);
	unsigned long v = pid < 0 ? 0ul - (unsigned long)pid : (unsigned long)pid;
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	if (pid < 0)
		*--p = '-';
	*--p = ' ';
	fwrite(p, 1, (size_t)(buf + sizeof(buf) - p), f);
}

size_t state_print(struct daemon *d, FILE *f)
{
	size_t n = 0;
	fprintf(f, "%s\ndaemon %d\n", STATE_MAGIC, (int)getpid());
	for (struct unit *u = d->first; u; u = u->next) {
		if (!u->svc)
			continue;
		struct evm_service_info info;
		evm_service_info(u->svc, &info);
		pid_t pid = info.pid;
		if (pid > 0 && pid != u->rec_pid && evm_proc_start_time(pid, &u->rec_start) < 0)
			pid = 0; /* gone already: its exit is on its way */
		u->rec_pid = pid;
		/* down: stopped by a user, or over (exited, fatal): not started again */
		bool down = (info.state == EVM_STATE_STOPPED && info.stopped_by_user) ||
			    info.state == EVM_STATE_EXITED || info.state == EVM_STATE_FATAL;
		const char *flags = info.state == EVM_STATE_STOPPING ? "stopping" : down ? "down" : "run";
		uint64_t next = info.state == EVM_STATE_BACKOFF ? boot_ms() + info.next_start_ms : 0;
		fputs("service ", f);
		fputs(u->name, f);
		put_line_tail(f, pid, pid > 0 ? u->rec_start : 0, state_ident(u->conf), flags, &info,
			      next);
		n++;
		/* the instances of one added definition are next to each other: once */
		if (u->conf->added_def && (!u->prev || u->prev->conf != u->conf))
			fprintf(f, "added %s\n", u->conf->added_def);
	}
	return n;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int state_write_now(struct daemon *d)
{
	char tmp[PATH_MAX];
	int e = 0;
	uint64_t t0 = mono_us();
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->state_path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		e = errno;
		if (fd >= 0)
			close(fd);
	} else {
		fprintf(f, "end %zu\n", state_print(d, f));
		bool ok = fflush(f) == 0 && !ferror(f);
		e = errno;
		ok = fclose(f) == 0 && ok;
		if (ok && rename(tmp, d->state_path) == 0)
			e = 0;
		else if (!e)
			e = errno ? errno : EIO;
		if (e)
			unlink(tmp);
	}
	if (e && !d->state_failed)
		dlog("state record %s: %s: a daemon started after a crash may start services a "
		     "second time", d->state_path, strerror(e));
	d->state_failed = e != 0;
	/*
	 * A big record costs (10,000 services: ~0.5 MB, a file created and
	 * renamed): the writes of a busy daemon are spaced by 1 ms per 100
	 * services, so a crash-looping 10,000 does not rewrite it every
	 * iteration; while the daemon starts its services, also by 10 times
	 * what this write took (at the start of 1,000 services on a loaded
	 * machine the record took as much of the daemon's time as the spawns),
	 * and the record is written at once when all have started
	 * (state_started). The gap is a window in which a crash forgets a new
	 * pid; with cgroups that process is still found (and killed, not
	 * duplicated) by the sweep.
	 */
	uint64_t took_ms = d->started ? 0 : (mono_us() - t0) / 100; /* 10 times, in ms */
	uint64_t delay = d->nunits / 100 > took_ms ? d->nunits / 100 : took_ms;
	d->state_delay_ms = delay < 1000 ? delay : 1000;
	return -e;
}

static void on_state_timer(struct evm_timer *t, void *data)
{
	(void)t;
	state_write_now(data);
}

void state_changed(struct daemon *d)
{
	if (!d->state_path || d->state_timer || d->state_closed)
		return;
	/* one write per iteration, however many services changed in it */
	if (evm_timer_add(d->loop, d->state_delay_ms, on_state_timer, d, &d->state_timer) < 0)
		state_write_now(d);
}

void state_started(struct daemon *d)
{
	if (!d->state_path || d->state_closed)
		return;
	evm_timer_cancel(d->state_timer);
	state_write_now(d);
}

void state_fini(struct daemon *d)
{
	evm_timer_cancel(d->state_timer);
	d->state_closed = true;
	if (d->state_path)
		unlink(d->state_path);
	free(d->state_path);
	d->state_path = NULL;
	record_free(d->rec);
	d->rec = NULL;
}
