/*
 * service.c - what a service is, apart from its state machine: a deep copy
 * of the caller's options and policy, the loop's list of services and its
 * name index, and the accessors. supervise.c drives the states.
 *
 * A service is on the list from evm_service_new until its removal event;
 * its name leaves the index when the removal is asked (a new service may
 * take it at once). It is freed through the loop's release queue, never
 * under a caller that may still hold it.
 */
#include "service.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEF_START_MS 1000
#define DEF_START_RETRIES 3
#define DEF_BACKOFF_INITIAL_MS 100
#define DEF_BACKOFF_MAX_MS 30000
#define DEF_STABLE_MS 10000
#define DEF_STOP_TIMEOUT_MS 10000

/* ------------------------------------------------------------ name index */

static size_t name_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a (common/hashmap.c is above the library) */
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return (size_t)h;
}

static size_t index_slot(const struct evm__svclist *l, const char *name)
{
	size_t mask = l->icap - 1, i = name_hash(name) & mask;
	while (l->index[i] && strcmp(l->index[i]->name, name) != 0)
		i = (i + 1) & mask;
	return i;
}

static int index_put(struct evm__svclist *l, struct evm_service *s)
{
	if ((l->ilen + 1) * 2 > l->icap) {
		size_t cap = l->icap ? l->icap * 2 : 64;
		struct evm_service **old = l->index;
		size_t oldcap = l->icap;
		if (!(l->index = calloc(cap, sizeof(*l->index)))) {
			l->index = old;
			return -ENOMEM;
		}
		l->icap = cap;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i])
				l->index[index_slot(l, old[i]->name)] = old[i];
		free(old);
	}
	l->index[index_slot(l, s->name)] = s;
	l->ilen++;
	return 0;
}

static struct evm_service *index_get(const struct evm__svclist *l, const char *name)
{
	return l->icap ? l->index[index_slot(l, name)] : NULL;
}

static void index_del(struct evm__svclist *l, struct evm_service *s)
{
	if (!l->icap)
		return;
	size_t mask = l->icap - 1, hole = index_slot(l, s->name);
	if (l->index[hole] != s)
		return;
	l->ilen--;
	/* backward shift: no tombstones */
	for (size_t j = (hole + 1) & mask; l->index[j]; j = (j + 1) & mask) {
		size_t home = name_hash(l->index[j]->name) & mask;
		bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (!stays) {
			l->index[hole] = l->index[j];
			hole = j;
		}
	}
	l->index[hole] = NULL;
}

/* ------------------------------------------------------------- helpers */

static char **dup_vec(char *const *v)
{
	if (!v)
		return NULL;
	size_t n = 0;
	while (v[n])
		n++;
	char **d = calloc(n + 1, sizeof(*d));
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!(d[i] = strdup(v[i]))) {
			while (i--)
				free(d[i]);
			free(d);
			return NULL;
		}
	}
	return d;
}

static void free_vec(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static void svc_free(struct evm_service *s)
{
	evm_cgroup_unwatch(s->cgw); /* a failed creation's: else gone at the unlink */
	evm_cgroup_free(s->cg);	    /* its own reference */
	free(s->name);
	free_vec(s->argv);
	free_vec(s->envp);
	free_vec(s->env_extra);
	free(s->file);
	free(s->cwd);
	free(s->groups);
	free(s->rlimits);
	free(s->extra_fds);
	free(s->uid_map);
	free(s->gid_map);
	free(s->setns_fds);
	free(s->hostname);
	free(s->pidfile);
	free(s);
}

static void svc_released(struct evm__release *r)
{
	svc_free(evm__container_of(r, struct evm_service, rel));
}

/* ------------------------------------------------------------- creation */

static void on_cgroup(struct evm_cgroup_watch *w, bool populated, void *data)
{
	(void)w;
	if (!populated)
		evm__sv_dispatch(data, EVM__SV_EMPTIED, NULL);
}

/* k: what an earlier image knew of its cgroup (evm_service_opts.cgroup_kept), or NULL */
static int watch_cgroup(struct evm_service *s, const struct evm_cgroup_kept *k)
{
	s->cgw_later = false;
	if (s->kill_mode != EVM_KILL_TREE)
		return 0; /* placed in it, but a stop does not wait for it */
	int r;
	if (evm__cg_unmade(s->cg)) {
		r = -ENOENT; /* not made yet (evm_cgroup_create_later): empty until a spawn makes it */
	} else {
		r = k && (k->flags & EVM_CGROUP_KEPT_WATCH)
			    ? evm__cgroup_watch_kept(s->loop, s->cg, k, on_cgroup, s, &s->cgw)
			    : -ENOENT;
		if (r == -ENOENT) /* none to take back: a watch of its own */
			r = evm_cgroup_watch(s->loop, s->cg, on_cgroup, s, &s->cgw);
	}
	s->cgw_later = r == -ENOENT;
	/*
	 * No fd to read cgroup.events (the limit is reached): its processes
	 * still start in the cgroup, but it is stopped by its process, as
	 * without one, rather than not created at all.
	 */
	return r == -EMFILE || r == -ENFILE || r == -ENOENT ? 0 : r;
}

/*
 * Its processes start in cg, and its emptying is an event. The service
 * holds its own reference: a stop still ending the cgroup's processes
 * outlives the caller's handle (a removed daemon unit frees its own).
 * k: what an earlier image knew of cg (evm_service_opts.cgroup_kept), or NULL.
 */
static int use_cgroup(struct evm_service *s, struct evm_cgroup *cg, const struct evm_cgroup_kept *k)
{
	s->cg = evm__cgroup_ref(cg);
	int unknown = -1; /* what the handle saw itself wins over the record */
	if (k)
		atomic_compare_exchange_strong(&cg->made, &unknown, k->flags & EVM_CGROUP_KEPT_MADE ? 1 : 0);
	if (k && (k->flags & (EVM_CGROUP_KEPT_OOM | EVM_CGROUP_KEPT_NO_OOM))) { /* taken at the adoption */
		s->oom_kept = true;
		s->oom_kept_known = k->flags & EVM_CGROUP_KEPT_OOM;
		s->oom_kept_base = s->oom_kept_known ? k->oom_kills : 0;
	}
	return watch_cgroup(s, k);
}

static bool kept_valid(const struct evm_cgroup_kept *k)
{
	const unsigned all = EVM_CGROUP_KEPT_MADE | EVM_CGROUP_KEPT_WATCH |
			     EVM_CGROUP_KEPT_POPULATED | EVM_CGROUP_KEPT_OOM | EVM_CGROUP_KEPT_NO_OOM |
			     EVM_CGROUP_KEPT_INO;
	const unsigned oom = EVM_CGROUP_KEPT_OOM | EVM_CGROUP_KEPT_NO_OOM;
	return !(k->flags & ~all) && (k->flags & oom) != oom &&
	       (!(k->flags & (EVM_CGROUP_KEPT_WATCH | EVM_CGROUP_KEPT_POPULATED)) ||
		(k->flags & EVM_CGROUP_KEPT_MADE)) &&
	       (!(k->flags & EVM_CGROUP_KEPT_INO) || (k->flags & EVM_CGROUP_KEPT_WATCH)) &&
	       (!(k->flags & EVM_CGROUP_KEPT_WATCH) || k->wd >= 0);
}

int evm_service_cgroup_export(const struct evm_service *s, struct evm_cgroup_kept *out)
{
	if (!s || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!s->cg)
		return -ENOENT;
	if (!evm__cg_unmade(s->cg))
		out->flags |= EVM_CGROUP_KEPT_MADE;
	int wd = s->cgw ? evm__cgwatch_wd(s->cgw) : -1;
	if (wd >= 0 && (out->flags & EVM_CGROUP_KEPT_MADE)) {
		out->flags |= EVM_CGROUP_KEPT_WATCH;
		out->wd = wd;
		if (evm_cgroup_watch_populated(s->cgw))
			out->flags |= EVM_CGROUP_KEPT_POPULATED;
		struct evm__file_id id;
		if (evm__cgwatch_id(s->cgw, &id)) {
			out->flags |= EVM_CGROUP_KEPT_INO;
			out->ino = id.ino;
			out->dev = id.dev;
		}
	}
	if (s->oom_known) {
		out->flags |= EVM_CGROUP_KEPT_OOM;
		out->oom_kills = s->oom_base;
	} else if (s->proc) {
		out->flags |= EVM_CGROUP_KEPT_NO_OOM; /* its run began with no memory.events */
	}
	return 0;
}

/*
 * An fd of its cgroup's directory for one spawn, in o (EVM_SPAWN_CGROUP):
 * CLONE_INTO_CGROUP needs it at the clone and nothing after, so the
 * service holds none between spawns (evm__svc_spawn_done closes it).
 * Without a cgroup, o is left as it is. 0 or -errno (o->error says cgroup).
 */
int evm__svc_spawn_cgroup(struct evm_service *s, struct evm_spawn_opts *o)
{
	if (!s->cg)
		return 0;
	int fd = evm_cgroup_open_dir(s->cg); /* makes it, the first time */
	int r = fd < 0 ? fd : s->cgw_later ? watch_cgroup(s, NULL) : 0;
	o->flags |= EVM_SPAWN_CGROUP;
	o->cgroup_fd = fd < 0 ? -1 : fd;
	if (r < 0 && o->error) {
		o->error->stage = EVM_STAGE_CGROUP;
		o->error->error = -r;
	}
	return r;
}

void evm__svc_spawn_done(struct evm_service *s, struct evm_spawn_opts *o)
{
	if (s->cg && o->cgroup_fd >= 0)
		close(o->cgroup_fd);
}

/* a copy of n elements of size sz into *to (NULL when n is 0); false: no memory */
static bool dup_array(void *to, const void *from, size_t n, size_t sz)
{
	void *d = NULL;
	if (n && from) {
		if (!(d = malloc(n * sz)))
			return false;
		memcpy(d, from, n * sz);
	}
	memcpy(to, &d, sizeof(d));
	return true;
}

static int copy_opts(struct evm_service *s, const struct evm_service_opts *o)
{
	const struct evm_spawn_opts *so = &o->spawn;
	s->spawn = *so;
	s->spawn.on_exit = NULL;
	s->spawn.data = NULL;
	s->spawn.handler = NULL;
	s->spawn.error = NULL;
	if (!(s->argv = dup_vec(so->argv)) || (so->envp && !(s->envp = dup_vec(so->envp))) ||
	    (so->env_extra && !(s->env_extra = dup_vec(so->env_extra))) ||
	    (so->file && !(s->file = strdup(so->file))) || (so->cwd && !(s->cwd = strdup(so->cwd))))
		return -ENOMEM;
	if (!dup_array(&s->groups, so->groups, so->ngroups, sizeof(gid_t)) ||
	    !dup_array(&s->rlimits, so->rlimits, so->nrlimits, sizeof(*s->rlimits)) ||
	    !dup_array(&s->extra_fds, so->extra_fds, so->nextra_fds, sizeof(*s->extra_fds)) ||
	    !dup_array(&s->uid_map, so->uid_map, so->nuid_map, sizeof(*s->uid_map)) ||
	    !dup_array(&s->gid_map, so->gid_map, so->ngid_map, sizeof(*s->gid_map)) ||
	    !dup_array(&s->setns_fds, so->setns_fds, so->nsetns_fds, sizeof(*s->setns_fds)) ||
	    (so->hostname && !(s->hostname = strdup(so->hostname))))
		return -ENOMEM;
	s->spawn.argv = s->argv;
	s->spawn.envp = s->envp;
	s->spawn.env_extra = s->env_extra;
	s->spawn.file = s->file;
	s->spawn.cwd = s->cwd;
	s->spawn.groups = s->groups;
	s->spawn.rlimits = s->rlimits;
	s->spawn.extra_fds = s->extra_fds;
	s->spawn.uid_map = s->uid_map;
	s->spawn.gid_map = s->gid_map;
	s->spawn.setns_fds = s->setns_fds;
	s->spawn.hostname = s->hostname;
	/* a tree without a cgroup is the session its main process leads (svstop.c) */
	bool own_group = so->flags & (EVM_SPAWN_SETSID | EVM_SPAWN_SETPGID);
	if (s->kill_mode == EVM_KILL_TREE && !o->cgroup && !own_group)
		s->spawn.flags |= EVM_SPAWN_SETSID;
	else if (s->kill_group && !(so->flags & EVM_SPAWN_SETSID)) {
		s->spawn.flags |= EVM_SPAWN_SETPGID;
		s->spawn.pgid = 0;
	}
	return 0;
}

static bool policy_valid(const struct evm_service_opts *o)
{
	if ((unsigned)o->restart > EVM_RESTART_UNLESS_STOPPED || o->backoff_jitter > 100 ||
	    (unsigned)o->kill_mode > EVM_KILL_TREE || (unsigned)o->track > EVM_TRACK_TREE ||
	    (o->pidfile && !*o->pidfile) ||
	    (unsigned)o->ready > EVM_READY_DECLARED ||
	    o->stop_signal < 0 || o->stop_signal >= NSIG || (o->nsuccess_codes && !o->success_codes))
		return false;
	for (size_t i = 0; i < o->nsuccess_codes; i++)
		if (o->success_codes[i] < 0 || o->success_codes[i] > 255)
			return false;
	return true;
}

/* a loop turn after evm_service_set_policy: the new policy's word on a waiting restart */
static void policy_fire(struct evm_timer *t, void *data)
{
	(void)t;
	evm__sv_dispatch(data, EVM__SV_POLICY, NULL);
}

/* What decides the service's fate, not what it runs: may change while it runs. */
static void set_policy(struct evm_service *s, const struct evm_service_opts *o)
{
	s->restart = o->restart;
	s->max_retries = o->max_retries;
	memset(s->success, 0, sizeof(s->success));
	if (o->nsuccess_codes) {
		for (size_t i = 0; i < o->nsuccess_codes; i++)
			s->success[o->success_codes[i] / 32] |= 1u << (o->success_codes[i] % 32);
	} else {
		s->success[0] = 1; /* exit 0 */
	}
#define PICK(field, flag, def) (((o->set & (flag)) || o->field) ? o->field : (def))
	s->start_ms = PICK(start_ms, EVM_SVC_START_MS, DEF_START_MS);
	s->start_retries = PICK(start_retries, EVM_SVC_START_RETRIES, DEF_START_RETRIES);
	s->backoff_initial_ms = PICK(backoff_initial_ms, EVM_SVC_BACKOFF_INITIAL, DEF_BACKOFF_INITIAL_MS);
	s->backoff_max_ms = PICK(backoff_max_ms, EVM_SVC_BACKOFF_MAX, DEF_BACKOFF_MAX_MS);
	s->stable_ms = PICK(stable_ms, EVM_SVC_STABLE_MS, DEF_STABLE_MS);
	s->stop_timeout_ms = PICK(stop_timeout_ms, EVM_SVC_STOP_TIMEOUT, DEF_STOP_TIMEOUT_MS);
#undef PICK
	s->jitter = o->backoff_jitter;
	s->ready = o->ready;
	s->ready_timeout_ms = o->ready_timeout_ms;
	s->watchdog_ms = o->watchdog_ms;
	s->stop_signal = o->stop_signal ? o->stop_signal : SIGTERM;
}

int evm_service_new(struct evm_loop *loop, const struct evm_service_opts *o, struct evm_service **out)
{
	if (!loop || !o || !o->name || !*o->name || !o->spawn.argv || !o->spawn.argv[0])
		return -EINVAL;
	if (!policy_valid(o) || (o->cgroup_kept && (!o->cgroup || !kept_valid(o->cgroup_kept))))
		return -EINVAL;
	for (int i = 0; i < 3; i++)
		if (o->spawn.stdio[i].mode == EVM_STDIO_PIPE)
			return -EINVAL; /* a new pipe per restart: use EVM_STDIO_FD with your own */
	/* now, not at each start: those would fail one by one until FATAL (the fds are
	 * checked at each start when before_spawn may set them, which it may) */
	int r = evm__spawn_check_opts(&o->spawn, false, !o->before_spawn);
	if (r < 0)
		return r;
	if (evm_service_find(loop, o->name))
		return -EEXIST;

	struct evm_service *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->kill_mode = o->kill_mode    ? o->kill_mode
		       : o->kill_group ? EVM_KILL_GROUP
		       : o->cgroup     ? EVM_KILL_TREE
				       : EVM_KILL_PROCESS;
	/* a tree without a cgroup is its process group */
	s->kill_group = s->kill_mode == EVM_KILL_GROUP || (s->kill_mode == EVM_KILL_TREE && !o->cgroup);
	s->track = o->track == EVM_TRACK_TREE ? EVM_TRACK_TREE : EVM_TRACK_MAIN;
	if (!(s->name = strdup(o->name)) || copy_opts(s, o) < 0 ||
	    (o->pidfile && !(s->pidfile = strdup(o->pidfile)))) {
		svc_free(s);
		return -ENOMEM;
	}
	set_policy(s, o);
	r = o->cgroup ? use_cgroup(s, o->cgroup, o->cgroup_kept) : 0;
	if (r < 0) {
		svc_free(s);
		return r;
	}
	s->on_event = o->on_event;
	s->data = o->data;
	s->before_spawn = o->before_spawn;
	s->before_spawn_data = o->before_spawn_data;
	s->before_exit = o->before_exit;
	s->before_exit_data = o->before_exit_data;
	s->state = EVM_STATE_STOPPED;
	s->since_mono = evm__mono_ns();
	s->since_real = evm__real_ns();

	struct evm__svclist *l = &loop->svcs;
	if (index_put(l, s) < 0) {
		svc_free(s);
		return -ENOMEM;
	}
	s->prev = l->last;
	if (l->last)
		l->last->next = s;
	else
		l->first = s;
	l->last = s;
	l->n++;
	if (out)
		*out = s;
	return 0;
}

int evm_service_set_policy(struct evm_service *s, const struct evm_service_opts *o)
{
	if (!s || s->dead || !o || !policy_valid(o))
		return -EINVAL;
	/*
	 * A restart waiting in BACKOFF after an exit may be one the new policy would
	 * not do: checked at the loop's next turn (EVM__SV_POLICY), not here, where an
	 * event would reach a caller half way through its own change (a daemon's reload,
	 * its other settings still the old ones). A new state meanwhile cancels it.
	 */
	if (s->state == EVM_STATE_BACKOFF && s->backoff_exit && !s->policy_timer &&
	    !evm__forked(s->loop)) {
		int r = evm_timer_add(s->loop, 0, policy_fire, s, &s->policy_timer);
		if (r < 0)
			return r; /* nothing changed */
	}
	set_policy(s, o);
	return 0;
}

struct evm_service *evm_service_find(struct evm_loop *loop, const char *name)
{
	if (!loop || !name)
		return NULL;
	return index_get(&loop->svcs, name);
}

/* Off the list; freed when the outermost dispatch ends. */
void evm__svc_unlink(struct evm_service *s)
{
	struct evm__svclist *l = &s->loop->svcs;
	if (s->prev)
		s->prev->next = s->next;
	else
		l->first = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->last = s->prev;
	l->n--;
	s->dead = true;
	evm_timer_cancel(s->main_timer);
	evm_timer_cancel(s->policy_timer);
	evm_cgroup_unwatch(s->cgw);
	s->cgw = NULL;
	/*
	 * Callers up the stack may still hold it, or walk on from it: its links
	 * stay as they are, and it is freed when the outermost dispatch ends.
	 */
	evm__release(s->loop, &s->rel, svc_released);
}

void evm__svc_unindex(struct evm_service *s)
{
	index_del(&s->loop->svcs, s);
}

/* ------------------------------------------------------------ accessors */

void evm_service_info(const struct evm_service *s, struct evm_service_info *info)
{
	memset(info, 0, sizeof(*info));
	if (!s)
		return;
	uint64_t now = evm__mono_ns();
	info->name = s->name;
	info->state = s->state;
	info->pid = s->proc ? evm_proc_pid(s->proc) : 0;
	info->restarts = s->restarts;
	info->failures = s->failures;
	info->start_failures = s->start_failures;
	info->ready = s->ready;
	info->stopped_by_user = s->stopped_by_user;
	info->since = evm__ns_to_ts(s->since_real);
	if (s->proc)
		info->uptime_ms = (now - s->started_mono) / 1000000;
	info->has_exit = s->has_exit;
	if (s->has_exit)
		info->last_exit = s->last_exit;
	info->last_error = s->last_error;
	if (s->state == EVM_STATE_BACKOFF && s->next_start_mono > now)
		info->next_start_ms = (s->next_start_mono - now + 999999) / 1000000;
	info->backoff_step = s->backoff_step;
}

void *evm_service_data(const struct evm_service *s)
{
	return s ? s->data : NULL;
}

enum evm_state evm_service_state(const struct evm_service *s)
{
	return s ? s->state : EVM_STATE_STOPPED;
}

const char *evm_service_name(const struct evm_service *s)
{
	return s ? s->name : NULL;
}

struct evm_proc *evm_service_proc(const struct evm_service *s)
{
	return s ? s->proc : NULL;
}

void evm_service_foreach(struct evm_loop *loop, void (*fn)(struct evm_service *, void *), void *data)
{
	if (!loop || !fn)
		return;
	evm__dispatch_enter(loop); /* fn may remove any service: they stay allocated */
	for (struct evm_service *s = loop->svcs.first, *next; s; s = next) {
		next = s->next; /* a service fn creates is not visited */
		if (!s->dead && !s->removing)
			fn(s, data);
	}
	evm__dispatch_leave(loop);
}

const char *evm_state_name(enum evm_state st)
{
	static const char *const names[] = {
		[EVM_STATE_STOPPED] = "stopped", [EVM_STATE_STARTING] = "starting",
		[EVM_STATE_RUNNING] = "running", [EVM_STATE_BACKOFF] = "backoff",
		[EVM_STATE_STOPPING] = "stopping", [EVM_STATE_EXITED] = "exited",
		[EVM_STATE_FATAL] = "fatal", [EVM_STATE_RELOADING] = "reloading",
	};
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "unknown";
}

/* ---------------------------------------------------------- loop hooks */

void evm__services_free(struct evm_loop *loop)
{
	/* the loop kills and reaps the processes next; nothing may call back here */
	for (struct evm_service *s = loop->svcs.first; s; s = s->next) {
		evm_timer_cancel(s->timer);
		evm_timer_cancel(s->reload_timer);
		evm_timer_cancel(s->main_timer);
		evm_timer_cancel(s->policy_timer);
		evm_cgroup_unwatch(s->cgw);
		s->cgw = NULL;
		if (s->proc) {
			s->proc->owner_cb = NULL;
			evm_proc_unref(s->proc);
			s->proc = NULL;
		}
	}
	while (loop->svcs.first) {
		struct evm_service *s = loop->svcs.first;
		loop->svcs.first = s->next;
		svc_free(s);
	}
	loop->svcs.last = NULL;
	loop->svcs.n = 0;
	free(loop->svcs.index);
	loop->svcs.index = NULL;
	loop->svcs.icap = loop->svcs.ilen = 0;
}
