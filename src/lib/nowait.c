/*
 * nowait.c - EVM_SPAWN_NOWAIT: a child cloned without CLONE_VFORK, so the
 * loop goes on while the child sets itself up and execs.
 *
 * The waiting path (spawnclone.c) sleeps from the clone until the child's
 * exec has released our memory: one child's setup at a time, about one CPU
 * of a spawn storm (docs/BENCHMARKS.md, "Not waiting for the exec"). Here
 * the child still shares our memory (CLONE_VM), but we do not wait, so it
 * gets for as long as it runs what the waiting path lends it from the
 * caller: a stack of its own, and a copy of the request and of everything
 * the request points to (argv, the environment, PATH, cwd, the rlimits,
 * groups and fd maps), which the caller may free or change as soon as
 * evm_spawn returns. Its fd table is copied at the clone (no CLONE_FILES):
 * the caller may close the fds it handed over. The child code makes raw
 * system calls only (child.c, rawsys.h), since our thread pointer is its
 * thread pointer and our errno the loop thread's, which runs meanwhile;
 * and it reads its own /proc/self/status for the signal reset (the copy
 * made at the clone: exact whatever we do next).
 *
 * Each such child runs on a slot: a stack and the request copy. The kernel
 * clears the slot's tid word when the child lets go of our memory, at its
 * exec or its exit (CLONE_CHILD_CLEARTID), and only then is the slot read:
 * a failure before the exec is in the copy (err, stage), and goes to the
 * proc (evm_proc_spawn_error) before its exit is reported, or when the slot
 * is looked at for another spawn, whichever comes first. At most SLOTS
 * children at once are between their clone and their exec; a spawn past
 * that waits, as without the flag.
 */
#include "internal.h"
#include "rawsys.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#define SLOTS 32
#define STACK (64 * 1024) /* the child's deepest path: a PATH_MAX name, 1,024 extra fds */

/*
 * ThreadSanitizer's per-thread state is reached through the thread pointer
 * too; and the static evmon-init (EVM_NO_SPAWN_HELPER) spawns one child
 * without the flag, so its build leaves this out (size).
 */
#if defined(__SANITIZE_THREAD__) || defined(EVM_NO_SPAWN_HELPER)
#define NOWAIT_OK 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NOWAIT_OK 0
#endif
#endif
#ifndef NOWAIT_OK
#define NOWAIT_OK EVM_RAWSYS
#endif

struct evm__nowait {
	int tid;	       /* nonzero from before the clone until the kernel clears it */
	bool busy;	       /* a child was started on it and the slot not read back yet */
	struct evm_proc *proc; /* a reference, from evm__nowait_bind until read back */
	char *stack;	       /* STACK bytes, the lowest a guard page (evm__stack_map) */
	char *arena;	       /* the copy's strings and arrays */
	size_t arena_cap;
	struct evm__spawn_req req;
};

/* has the child let go of our memory (exec'd or exited)? */
static bool let_go(const struct evm__nowait *s)
{
	return __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE) == 0;
}

/* read the slot back: its child's failure goes to the proc, and the slot is free */
static void read_back(struct evm_loop *loop, struct evm__nowait *s)
{
	struct evm_proc *p = s->proc;
	if (p && s->req.err) {
		struct evm__proc_more *m = evm__proc_more(p);
		if (m) {
			m->spawn_err = s->req.err;
			m->spawn_stage = s->req.stage;
		} else {
			evm__warn(loop, -ENOMEM, "pid %d: failed before its exec (%s: %s), and no memory "
				  "is left to keep why", (int)p->pid,
				  evm_spawn_stage_name((enum evm_spawn_stage)s->req.stage), strerror(s->req.err));
		}
	}
	s->proc = NULL;
	s->busy = false;
	if (p)
		evm_proc_unref(p);
}

static struct evm__nowait *slot_new(void)
{
	struct evm__nowait *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (!(s->stack = evm__stack_map(STACK))) {
		free(s);
		return NULL;
	}
	return s;
}

/* a free slot (reading back those whose child let go), a new one, or -1 */
static int slot_free(struct evm_loop *loop)
{
	int found = -1;
	for (unsigned i = 0; i < loop->nnowait; i++) {
		struct evm__nowait *s = loop->nowait[i];
		if (s->busy && let_go(s))
			read_back(loop, s);
		if (!s->busy && found < 0)
			found = (int)i;
	}
	if (found >= 0 || loop->nnowait == SLOTS)
		return found;
	if (!loop->nowait && !(loop->nowait = calloc(SLOTS, sizeof(*loop->nowait))))
		return -1;
	struct evm__nowait *s = slot_new();
	if (!s)
		return -1;
	loop->nowait[loop->nnowait] = s;
	return (int)loop->nnowait++;
}

/* The copy: sizes first (need), then the bytes (at), in the same order. */
struct arena {
	char *at;
	size_t need;
};

static void *take(struct arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	void *p = a->at ? a->at + a->need : NULL;
	a->need += n;
	return p;
}

static const char *str(struct arena *a, const char *s, size_t room)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = take(a, n + room);
	if (p)
		memcpy(p, s, n);
	return p;
}

static const void *array(struct arena *a, const void *v, size_t n, size_t size)
{
	if (!v)
		return NULL;
	void *p = take(a, n * size);
	if (p && n)
		memcpy(p, v, n * size);
	return p;
}

/* argv or envp; lp: EVM_SPAWN_LISTEN_PID's entry, whose copy gets room for the digits */
static char *const *vec(struct arena *a, char *const *v, const char *lp, char **lp_copy)
{
	size_t n = 0;
	while (v[n])
		n++;
	char **out = take(a, (n + 1) * sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		uintptr_t at = (uintptr_t)v[i];
		bool is_lp = lp && (uintptr_t)lp >= at && (uintptr_t)lp <= at + strlen(v[i]);
		const char *c = str(a, v[i], is_lp ? 12 : 0);
		if (out)
			out[i] = (char *)c;
		if (out && is_lp)
			*lp_copy = (char *)c + ((uintptr_t)lp - at);
	}
	if (out)
		out[n] = NULL;
	return out;
}

/* everything r points to, in one pass of a (sizing when a->at is NULL) */
static void copy_into(struct arena *a, const struct evm__spawn_req *r, struct evm__spawn_req *c)
{
	char *lp = NULL;
	c->file = str(a, r->file, 0);
	c->argv = vec(a, r->argv, NULL, NULL);
	c->envp = vec(a, r->envp, r->listen_pid, &lp);
	c->listen_pid = lp;
	c->path = str(a, r->path, 0);
	c->cwd = str(a, r->cwd, 0);
	c->extra = array(a, r->extra, r->nextra, sizeof(*r->extra));
	c->groups = array(a, r->groups, r->ngroups, sizeof(*r->groups));
	c->rlimits = array(a, r->rlimits, r->nrlimits, sizeof(*r->rlimits));
}

/* the child's own copy of r in slot s: false without memory */
static bool copy_req(struct evm__nowait *s, const struct evm__spawn_req *r)
{
	struct evm__spawn_req c = *r;
	struct arena a = {0};
	copy_into(&a, r, &c);
	if (a.need > s->arena_cap) {
		char *n = malloc(a.need);
		if (!n)
			return false;
		free(s->arena);
		s->arena = n;
		s->arena_cap = a.need;
	}
	a = (struct arena){.at = s->arena};
	copy_into(&a, r, &c);
	if (r->listen_pid && !c.listen_pid)
		return false; /* not in the environment after all: the waiting path writes it */
	s->req = c;
	return true;
}

pid_t evm__nowait_clone(struct evm_loop *loop, struct evm__spawn_req *req, int *pidfd, bool want_pidfd)
{
	/* a big table: its copy at the clone would cost more than the wait (the waiting path shares it) */
	if (!NOWAIT_OK || !(req->flags & EVM_SPAWN_NOWAIT) || req->ns || req->nsetns || req->hostname ||
	    req->cgroup_fd >= 0 || evm__fd_table_big(loop))
		return 0;
	int i = slot_free(loop);
	if (i < 0)
		return 0;
	struct evm__nowait *s = loop->nowait[i];
	if (!copy_req(s, req))
		return 0; /* the waiting path needs no memory */
	s->req.reset_signals = true;
	s->req.handlers_cleared = true;
	s->req.parent_statusfd = -1; /* we do not wait: its own status, as cloned */
	s->req.keep_fds = 0;	     /* its own copy of the table */
	s->req.pidfd_at = NULL;
	s->req.errfd = -1;
	s->req.started = s->req.err = s->req.stage = 0;
	__atomic_store_n(&s->tid, 1, __ATOMIC_RELEASE);
	struct clone_args a = {
		.flags = CLONE_VM | CLONE_CLEAR_SIGHAND | CLONE_CHILD_CLEARTID | (want_pidfd ? CLONE_PIDFD : 0),
		.pidfd = (uint64_t)(uintptr_t)pidfd,
		.child_tid = (uint64_t)(uintptr_t)&s->tid,
		.exit_signal = SIGCHLD,
		.stack = (uint64_t)(uintptr_t)s->stack,
		.stack_size = STACK,
	};
	pid_t pid = evm__clone3(&a, evm__spawn_child, &s->req);
	if (pid < 0) {
		__atomic_store_n(&s->tid, 0, __ATOMIC_RELEASE);
		/* clone3's own refusals (old kernel, a filter) are the waiting path's to sort out */
		return pid == -ENOSYS || pid == -EINVAL || pid == -E2BIG || pid == -EPERM ? 0 : pid;
	}
	s->busy = true;
	req->nowait_slot = i;
	loop->clone3_worked = true;
	return pid;
}

void evm__nowait_bind(struct evm_loop *loop, int slot, struct evm_proc *p)
{
	struct evm__nowait *s = loop->nowait[slot];
	s->proc = evm_proc_ref(p);
	p->kind |= EVM__K_NOWAIT;
}

void evm__nowait_exited(struct evm_loop *loop, struct evm_proc *p)
{
	/* reaped, so it let go of our memory: the kernel cleared the word before its exit */
	for (unsigned i = 0; i < loop->nnowait; i++)
		if (loop->nowait[i]->busy && loop->nowait[i]->proc == p && let_go(loop->nowait[i]))
			read_back(loop, loop->nowait[i]);
}

void evm__nowait_free(struct evm_loop *loop)
{
	for (unsigned i = 0; i < loop->nnowait; i++) {
		struct evm__nowait *s = loop->nowait[i];
		/* every child was killed and reaped before: this waits for nothing, or not long */
		for (int k = 0; k < 100 && !let_go(s); k++) {
			struct timespec ts = {0, 10 * 1000 * 1000};
			syscall(SYS_futex, &s->tid, FUTEX_WAIT, 1, &ts, NULL, 0);
		}
		if (!let_go(s))
			continue; /* still on the stack: leave it be rather than pull it away */
		if (s->busy)
			read_back(loop, s);
		munmap(s->stack, STACK);
		free(s->arena);
		free(s);
	}
	free(loop->nowait);
	loop->nowait = NULL;
	loop->nnowait = 0;
}

bool evm__nowait_supported(void)
{
	return NOWAIT_OK;
}

bool evm__nowait_idle(const struct evm_loop *loop)
{
	for (unsigned i = 0; i < loop->nnowait; i++)
		if (loop->nowait[i]->busy) /* a proc is held only while busy */
			return false;
	return true;
}

int evm_proc_spawn_error(const struct evm_proc *p, struct evm_spawn_error *err)
{
	int e = p && evm_proc_exited(p) && p->more ? p->more->spawn_err : 0;
	if (err) {
		err->error = e;
		err->stage = e ? (enum evm_spawn_stage)p->more->spawn_stage : EVM_STAGE_NONE;
	}
	return -e;
}
