/*
 * spawn.c - starting a child: checking options, its environment and stdio,
 * the request the child reads, and the proc that watches it.
 *
 * evm_spawn runs on the loop's thread (or queues there, xreq); the clone
 * itself and its fallbacks are spawnclone.c's, the child's side child.c's.
 * Invariants: a spawn either returns 0 with the child attached to a proc
 * (pid map, pidfd or SIGCHLD, its timeout armed) and its EVM_EV_SPAWN
 * emitted (a service's: by svstart.c once the service is in its new state),
 * or -errno with nothing left open and no child running; the pid
 * map has room before the child exists (a reaper's scan must find it).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

const char *evm_spawn_stage_name(enum evm_spawn_stage stage)
{
	static const char *const names[] = {
		[EVM_STAGE_NONE] = "none",	 [EVM_STAGE_SETUP] = "setup",
		[EVM_STAGE_FORK] = "fork",	 [EVM_STAGE_PIDFD] = "pidfd",
		[EVM_STAGE_SESSION] = "setsid",	 [EVM_STAGE_RLIMIT] = "setrlimit",
		[EVM_STAGE_GROUPS] = "setgroups", [EVM_STAGE_GID] = "setgid",
		[EVM_STAGE_UID] = "setuid",	 [EVM_STAGE_CWD] = "chdir",
		[EVM_STAGE_STDIO] = "stdio",	 [EVM_STAGE_PDEATHSIG] = "pdeathsig",
		[EVM_STAGE_EXEC] = "exec",	 [EVM_STAGE_CGROUP] = "cgroup",
		[EVM_STAGE_NICE] = "nice",	 [EVM_STAGE_OOM_SCORE_ADJ] = "oom_score_adj",
		[EVM_STAGE_NAMESPACE] = "namespace", [EVM_STAGE_IDMAP] = "idmap",
		[EVM_STAGE_SETNS] = "setns",	 [EVM_STAGE_HOSTNAME] = "sethostname",
		[EVM_STAGE_CTTY] = "ctty",
	};
	if ((unsigned)stage >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[stage];
}

static const unsigned known_flags = EVM_SPAWN_SETSID | EVM_SPAWN_SETPGID | EVM_SPAWN_SETUID |
				    EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS | EVM_SPAWN_UMASK |
				    EVM_SPAWN_NO_PATH | EVM_SPAWN_KEEP_NOFILE | EVM_SPAWN_INHERIT_FDS |
				    EVM_SPAWN_LISTEN_PID | EVM_SPAWN_CGROUP | EVM_SPAWN_NICE |
				    EVM_SPAWN_OOM_SCORE_ADJ | EVM_SPAWN_SETCTTY | EVM_SPAWN_NOWAIT;

int evm__spawn_check_opts(const struct evm_spawn_opts *o, bool have_out, bool check_fds)
{
	if (!o || !o->argv || !o->argv[0])
		return -EINVAL;
	if (o->flags & ~known_flags)
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_SETGROUPS) && o->ngroups && !o->groups)
		return -EINVAL;
	if (o->nrlimits && !o->rlimits)
		return -EINVAL;
	if (o->pdeath_signal < 0 || o->pdeath_signal >= NSIG)
		return -EINVAL;
	if (o->timeout_signal < 0 || o->timeout_signal >= NSIG)
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_NICE) && (o->nice < -20 || o->nice > 19))
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_OOM_SCORE_ADJ) && (o->oom_score_adj < -1000 || o->oom_score_adj > 1000))
		return -EINVAL;
	if (o->file && !*o->file)
		return -ENOENT;
	/* (uid_t)-1 means "no change" to setresuid: the child would keep our ids */
	if ((o->flags & EVM_SPAWN_SETUID) && o->uid == (uid_t)-1)
		return -EINVAL;
	if ((o->flags & EVM_SPAWN_SETGID) && o->gid == (gid_t)-1)
		return -EINVAL;
	for (char *const *e = o->env_extra; e && *e; e++)
		if (!strchr(*e, '=') || **e == '=') /* KEY=VALUE, a KEY of one character at least */
			return -EINVAL;
	/* the child keeps a copy of each on its small stack */
	if ((o->nextra_fds && !o->extra_fds) || o->nextra_fds > 1024)
		return -EINVAL;
	for (size_t i = 0; i < o->nextra_fds; i++) {
		if (o->extra_fds[i].target < 3)
			return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (o->extra_fds[j].target == o->extra_fds[i].target)
				return -EINVAL;
		if (check_fds && (o->extra_fds[i].fd < 0 || fcntl(o->extra_fds[i].fd, F_GETFD) < 0))
			return -EBADF;
	}
	int r = evm__ns_check(o);
	if (r < 0)
		return r;
	for (int i = 0; i < 3; i++) {
		switch (o->stdio[i].mode) {
		case EVM_STDIO_INHERIT:
		case EVM_STDIO_NULL:
			break;
		case EVM_STDIO_FD:
			if (check_fds && (o->stdio[i].fd < 0 || fcntl(o->stdio[i].fd, F_GETFD) < 0))
				return -EBADF;
			break;
		case EVM_STDIO_PIPE:
			if (!have_out)
				return -EINVAL;
			break;
		case EVM_STDIO_CAPTURE:
			if (i == 0)
				return -EINVAL;
			break;
		case EVM_STDIO_STDOUT:
			if (i != 2)
				return -EINVAL;
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static const char *find_path(char *const *envp)
{
	if (envp) {
		for (char *const *e = envp; *e; e++)
			if (strncmp(*e, "PATH=", 5) == 0)
				return *e + 5;
	}
	const char *p = getenv("PATH");
	return p ? p : DEFAULT_PATH;
}

/* <0, 0, >0 as KEY a sorts before, with or after KEY b (a key ends at its first '=', or the end) */
static int key_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = *a == '=' ? 0 : (unsigned char)*a, y = *b == '=' ? 0 : (unsigned char)*b;
		if (x != y || !x)
			return (x > y) - (x < y);
	}
}

/* elements are pointers into one vector: &extra[j] */
static int by_key(const void *a, const void *b)
{
	return key_cmp(**(char *const *const *)a, **(char *const *const *)b);
}

static int by_key_then_place(const void *a, const void *b)
{
	int c = by_key(a, b);
	char *const *x = *(char *const *const *)a, *const *y = *(char *const *const *)b;
	return c ? c : (x > y) - (x < y);
}

/*
 * base + extra, an extra replacing every base entry of the same key (the
 * last extra of a key wins): base's others in their order, then extra's
 * winners in theirs. Sorted, not compared pairwise: an env_file may hold
 * tens of thousands of variables, and this runs on the loop at each spawn.
 */
static char **merge_env(char *const *base, char *const *extra)
{
	size_t nb = 0, ne = 0, k = 0;
	while (base[nb])
		nb++;
	while (extra[ne])
		ne++;
	/* one block (the caller frees the result): the result, extra's entries by key, which win */
	char **v = malloc((nb + ne + 1 + ne) * sizeof(*v) + ne);
	if (!v)
		return NULL;
	char *const **idx = (void *)(v + nb + ne + 1);
	bool *wins = (void *)(idx + ne);
	for (size_t j = 0; j < ne; j++)
		idx[j] = &extra[j];
	qsort(idx, ne, sizeof(*idx), by_key_then_place);
	for (size_t i = 0; i < nb; i++) {
		char *const *key = &base[i];
		if (!bsearch(&key, idx, ne, sizeof(*idx), by_key))
			v[k++] = base[i];
	}
	/* the last of each key's run */
	for (size_t j = 0; j < ne; j++)
		wins[idx[j] - extra] = j + 1 == ne || key_cmp(*idx[j], *idx[j + 1]);
	for (size_t j = 0; j < ne; j++)
		if (wins[j])
			v[k++] = extra[j];
	v[k] = NULL;
	return v;
}

static int devnull(struct evm_loop *loop)
{
	if (loop->devnull < 0)
		loop->devnull = evm__above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC)); /* kept */
	return loop->devnull;
}

/* The request the child reads: our options, in the form it needs them. */
static void req_init(struct evm_loop *loop, const struct evm_spawn_opts *o, struct evm__spawn_req *req)
{
	*req = (struct evm__spawn_req){
		.file = o->file ? o->file : o->argv[0],
		.argv = o->argv,
		.envp = o->envp ? o->envp : environ,
		.cwd = o->cwd,
		.flags = o->flags,
		.pgid = o->pgid,
		.uid = o->uid,
		.gid = o->gid,
		.groups = o->groups,
		.ngroups = o->ngroups,
		.umask = o->umask,
		.rlimits = o->rlimits,
		.nrlimits = o->nrlimits,
		.nice = o->nice,
		.oom_score_adj = o->oom_score_adj,
		.pdeath_signal = o->pdeath_signal,
		.cgroup_fd = (o->flags & EVM_SPAWN_CGROUP) ? o->cgroup_fd : -1,
		.extra = o->extra_fds,
		.nextra = o->nextra_fds,
		.ns = o->namespaces,
		.uid_map = o->uid_map,
		.nuid_map = o->nuid_map,
		.gid_map = o->gid_map,
		.ngid_map = o->ngid_map,
		.syncfd = -1,
		.setns_fds = o->setns_fds,
		.nsetns = o->nsetns_fds,
		.hostname = o->hostname,
		.ctty = o->ctty,
		.parent_pid = loop->pid,
		.fds = {-1, -1, -1},
		.cwd_fd = -1,
		.errfd = -1,
		.parent_statusfd = -1,
		.nowait_slot = -1,
	};
	req->restore_nofile = loop->nofile_raised && !(o->flags & EVM_SPAWN_KEEP_NOFILE);
	for (size_t i = 0; i < o->nrlimits; i++)
		if (o->rlimits[i].resource == RLIMIT_NOFILE)
			req->user_nofile = true;
	if (req->user_nofile)
		req->restore_nofile = false;
	req->nofile = loop->nofile0;
}

/*
 * env_extra and LISTEN_PID merged into the environment (*merged, to free;
 * it points to the strings, not copies), then PATH looked up in the result.
 * listen_pid is the caller's buffer "LISTEN_PID=" with room for the digits.
 */
static int req_env(const struct evm_spawn_opts *o, struct evm__spawn_req *req, char *listen_pid,
		   char ***merged)
{
	char *const lp_extra[] = {listen_pid, NULL};
	*merged = NULL;
	for (int k = 0; k < 2; k++) {
		char *const *extra = k == 0 ? o->env_extra : (o->flags & EVM_SPAWN_LISTEN_PID) ? lp_extra : NULL;
		if (!extra)
			continue;
		char **m = merge_env(req->envp, extra);
		free(*merged);
		if (!(*merged = m))
			return -ENOMEM;
		req->envp = *merged;
	}
	if (o->flags & EVM_SPAWN_LISTEN_PID)
		req->listen_pid = listen_pid + sizeof("LISTEN_PID=") - 1;
	/* a file with a slash is run as it is (child.c's exec_search): no PATH to find */
	req->path = (o->flags & EVM_SPAWN_NO_PATH) || strchr(req->file, '/') ? NULL : find_path(req->envp);
	return 0;
}

/* The child's stdio: /dev/null, a given fd, or one end of a new pipe (ours[i] keeps the other). */
static int stdio_prepare(struct evm_loop *loop, const struct evm_spawn_opts *o,
			 struct evm__spawn_req *req, int ours[3], int theirs[3])
{
	for (int i = 0; i < 3; i++) {
		switch (o->stdio[i].mode) {
		case EVM_STDIO_INHERIT:
			break;
		case EVM_STDIO_NULL:
			if ((req->fds[i] = devnull(loop)) < 0)
				return -errno;
			break;
		case EVM_STDIO_FD:
			req->fds[i] = o->stdio[i].fd;
			break;
		case EVM_STDIO_PIPE:
		case EVM_STDIO_CAPTURE: {
			int pp[2], pe;
			/* not on 0-2 (a program that closed its stdin): a later child would inherit it */
			if ((pe = evm__pipe_above_stdio(pp)) < 0)
				return pe;
			ours[i] = i == 0 ? pp[1] : pp[0];
			theirs[i] = i == 0 ? pp[0] : pp[1];
			fcntl(ours[i], F_SETFL, O_NONBLOCK);
			req->fds[i] = theirs[i];
			break;
		}
		case EVM_STDIO_STDOUT:
			/* after slot 1: its fd, or our fd 1 it inherits (-2: closed, as that one) */
			req->fds[i] = req->fds[1] >= 0 ? req->fds[1] : fcntl(1, F_GETFD) >= 0 ? 1 : -2;
			break;
		}
	}
	return 0;
}


/* The child runs: our ends of its pipes, its callback, and the pid map and epoll. */
static void proc_attach(struct evm_loop *loop, struct evm_proc *p, const struct evm_spawn_opts *o,
			pid_t pid, int pidfd, int ours[3], int theirs[3])
{
	for (int i = 0; i < 3; i++) {
		if (theirs[i] >= 0)
			close(theirs[i]);
		if (o->stdio[i].mode == EVM_STDIO_CAPTURE && evm__capture_start(p, i, ours[i], o->capture_max) < 0)
			ours[i] = (close(ours[i]), -1); /* no memory: the child gets EPIPE */
		else if (o->stdio[i].mode != EVM_STDIO_CAPTURE)
			p->pipes[i] = ours[i];
	}
	p->cb = o->on_exit;
	p->data = o->data;
	if ((o->flags & (EVM_SPAWN_SETSID | EVM_SPAWN_SETCTTY)) ||
	    ((o->flags & EVM_SPAWN_SETPGID) && o->pgid == 0))
		p->kind |= EVM__K_GROUP;
	if (pidfd >= 0)
		loop->high_fd = pidfd;
	evm__proc_attach(p, pid, pidfd);
}

/* A spawn that failed: close what it opened and drop the proc. */
static void spawn_undo(struct evm_loop *loop, struct evm_proc *p, int ours[3], int theirs[3])
{
	for (int i = 0; i < 3; i++) {
		if (ours[i] >= 0)
			close(ours[i]);
		if (theirs[i] >= 0)
			close(theirs[i]);
	}
	if (p) {
		if (p->more)
			evm_timer_cancel(p->more->deadline);
		if (p->route)
			evm__route_put(loop, p->route);
		p->route = NULL;
		evm_proc_unref(p);
	}
}

void evm__spawn_announce(struct evm_loop *loop, struct evm_proc *p, const char *name)
{
	struct evm_event ev = {.type = EVM_EV_SPAWN,
			       .pid = p->pid,
			       .proc = p,
			       .name = name ? name : p->route ? evm__route_name(p->route) : NULL};
	evm__emit(loop, &ev);
}

int evm__spawn_local(struct evm_loop *loop, const struct evm_spawn_opts *o, struct evm_proc **out,
		     bool announce)
{
	if (evm__forked(loop)) /* services spawn here too: not into the parent's epoll */
		return -ECHILD;
	struct evm_spawn_error errbuf = {0}, *err = o && o->error ? o->error : &errbuf;
	err->stage = EVM_STAGE_SETUP;
	err->error = 0;
	int r = evm__spawn_check_opts(o, out != NULL, true);
	if (r == 0 && (o->flags & EVM_SPAWN_CGROUP) && o->cgroup_fd < 0) {
		err->stage = EVM_STAGE_CGROUP;
		r = -EBADF;
	}
	if (r < 0) {
		err->error = -r;
		return r;
	}

	struct evm__spawn_req req;
	req_init(loop, o, &req);
	char **merged;
	/* EVM_SPAWN_LISTEN_PID: the child writes its pid after the '=' (room for any pid_t) */
	char listen_pid[sizeof("LISTEN_PID=") + 11] = "LISTEN_PID=";
	if ((r = req_env(o, &req, listen_pid, &merged)) < 0) {
		err->error = -r;
		return r;
	}

	int ours[3] = {-1, -1, -1}, theirs[3] = {-1, -1, -1};
	int pidfd = -1;
	struct evm_proc *p = evm__proc_new(loop);
	if (!p || (o->handler && !(p->route = evm__route_get(loop, o->handler)))) {
		r = -ENOMEM;
		goto fail;
	}
	/*
	 * Room in the pid map before there is a child: a child we could not
	 * look up by pid would be taken for an orphan by a reaper's scan.
	 */
	if (evm__pidmap_reserve(&loop->pids) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = stdio_prepare(loop, o, &req, ours, theirs)) < 0)
		goto fail;

	/* the child's time starts now: evm_spawn may take a while to return */
	p->start_mono = evm__mono_ns();
	p->start_real = evm__real_ns();
	/* armed before the child exists: it cannot fire before we return to the loop */
	if ((r = evm__proc_timeout(p, o)) < 0)
		goto fail;
	pid_t pid = evm__spawn_clone(loop, &req, &pidfd, err);
	if (pid < 0) {
		r = pid;
		goto fail;
	}
	proc_attach(loop, p, o, pid, pidfd, ours, theirs);
	if (req.nowait_slot >= 0)
		evm__nowait_bind(loop, req.nowait_slot, p);
	err->stage = EVM_STAGE_NONE;

	if (announce)
		evm__spawn_announce(loop, p, NULL);
	if (out)
		*out = evm_proc_ref(p);
	free(merged);
	return 0;

fail:
	free(merged);
	if (err->stage == EVM_STAGE_NONE || err->stage == EVM_STAGE_SETUP)
		err->stage = EVM_STAGE_SETUP;
	err->error = -r;
	spawn_undo(loop, p, ours, theirs);
	return r;
}

int evm_spawn(struct evm_loop *loop, const struct evm_spawn_opts *opts, struct evm_proc **out)
{
	if (!loop)
		return -EINVAL;
	if (evm__forked(loop))
		return -ECHILD;
	if (atomic_load(&loop->bound)) {
		if (evm__on_loop_thread(loop))
			return evm__spawn_local(loop, opts, out, true);
		return evm__xreq_spawn(loop, opts, out);
	}
	if (!evm__on_loop_thread(loop))
		return evm__xreq_spawn(loop, opts, out);
	/*
	 * The creator, and no thread has run the loop yet: one may be starting
	 * to (main creates the loop, starts a thread running it, spawns at
	 * once). Spawn here under claim_mu, which that thread's first iteration
	 * waits for; once it has bound the loop, queue to it instead.
	 */
	pthread_mutex_lock(&loop->claim_mu);
	if (!atomic_load(&loop->bound)) {
		int r = evm__spawn_local(loop, opts, out, true);
		pthread_mutex_unlock(&loop->claim_mu);
		return r;
	}
	pthread_mutex_unlock(&loop->claim_mu);
	return evm__xreq_spawn(loop, opts, out);
}
