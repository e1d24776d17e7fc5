/*
 * svmain.c - a service's main process changing while the service runs:
 * evm_service_set_main (sd_notify's MAINPID=, a pidfile's pid) takes over
 * another process of the service as the one whose exit, pid and signals
 * are the service's.
 *
 * A pid is only ever taken from the service's own tree: with a cgroup, a
 * process of that cgroup (or below it); without one, a process of the
 * session the service leads (kill_mode tree), or else of the current main
 * process's session. The pid is pinned by a pidfd before /proc is read, so
 * the process checked is the one adopted (adopt.c), never a reused pid.
 */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

/* Is pid (pinned) in the service's cgroup, or in no cgroup we can tell? 0, -EPERM */
static int in_cgroup(const struct evm_service *s, pid_t pid)
{
	if (s->cg->rel)
		return evm__cg_member(pid, s->cg->rel) ? 0 : -EPERM;
	/* the mount does not show our cgroups' names: its cgroup.procs */
	enum { CAP = 4096 };
	pid_t *pids = malloc(CAP * sizeof(*pids));
	if (!pids)
		return -ENOMEM;
	int n = evm_cgroup_procs(s->cg, pids, CAP), r = -EPERM;
	for (int i = 0; i < n && i < CAP; i++)
		if (pids[i] == pid)
			r = 0;
	free(pids);
	return r;
}

/* pid (pinned) belongs to the service's tree: 0, or -EPERM (-ESRCH: gone) */
static int belongs(const struct evm_service *s, pid_t pid)
{
	if (s->cg)
		return in_cgroup(s, pid);
	struct evm__pstat st, main;
	int r = evm__proc_stat(pid, &st);
	if (r < 0)
		return r;
	if (s->sid)
		return st.sid == s->sid ? 0 : -EPERM;
	if (s->proc && !s->proc->gone && evm__proc_stat(s->proc->pid, &main) == 0)
		return st.sid == main.sid ? 0 : -EPERM;
	return -EPERM; /* nothing to check it against */
}

int evm__sv_take_main(struct evm_service *s, pid_t pid)
{
	if (s->proc && s->proc->pid == pid)
		return 0;
	pid_t was = s->proc ? s->proc->pid : s->last_exit.pid;
	if (pid == getpid())
		return -EPERM;
	int pidfd = pidfd_open(pid, 0);
	if (pidfd < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	int r = belongs(s, pid);
	struct evm_proc *p = NULL;
	if (r == 0)
		r = evm_proc_adopt(s->loop,
				   &(struct evm_adopt_opts){.pid = pid, .flags = EVM_ADOPT_PIDFD,
							    .pidfd = pidfd},
				   &p);
	if (r < 0) {
		close(pidfd);
		return r;
	}
	struct evm_proc *old = s->proc;
	p->owner_cb = evm__sv_on_proc_exit;
	p->owner = s;
	s->proc = p;
	if (old) {
		/* it runs on as any process of the service; its exit is no longer the service's */
		old->owner_cb = NULL;
		old->owner = NULL;
		evm_proc_unref(old);
	}
	snprintf(s->msg, sizeof(s->msg), "main process is now pid %d (was %d)", (int)pid, (int)was);
	return 1;
}

int evm_service_set_main(struct evm_service *s, pid_t pid)
{
	if (!s || s->dead || pid <= 0)
		return -EINVAL;
	if (!s->proc || (s->state != EVM_STATE_STARTING && s->state != EVM_STATE_RUNNING &&
			 s->state != EVM_STATE_RELOADING))
		return -ESRCH;
	int r = evm__sv_take_main(s, pid);
	if (r > 0)
		evm__sv_tell(s);
	return r < 0 ? r : 0;
}
