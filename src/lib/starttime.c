/*
 * starttime.c - a process's start time: field 22 of /proc/PID/stat, clock
 * ticks since boot, which with the pid names one process for as long as
 * the machine runs (the PID-reuse check of sessions, adoption and the
 * daemon's state record).
 *
 * Reading it costs a /proc path walk, an open and the kernel's rendering of
 * the whole stat line: about a tenth of what a daemon spends starting a
 * service. For a child we just spawned it can be known without /proc: the
 * kernel sets the child's start to CLOCK_BOOTTIME inside the clone, so a
 * clock read before the spawn and one after it bracket it, and when both
 * fall in the same tick that tick is the field exactly (the kernel's
 * nsec_to_clock_t truncates, as the division here does; in a time namespace
 * both the vDSO clock and /proc add the reader's boottime offset). Across a
 * tick boundary (a spawn of ~100 us against a 10 ms tick: about 1% of
 * spawns) the field is read as before. The first few brackets are checked
 * against /proc and one that disagrees (a kernel or an emulation that
 * counts otherwise) turns the shortcut off for good.
 */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/pidfd.h>
#include <time.h>
#include <unistd.h>

int evm_proc_start_time(pid_t pid, uint64_t *out)
{
	if (pid <= 0 || !out)
		return -EINVAL;
	struct evm__pstat f;
	int r = evm__proc_stat(pid, &f);
	if (r == 0)
		*out = f.start;
	return r;
}

void evm__proc_keep_start(struct evm_proc *p, uint64_t ticks)
{
	struct evm__proc_more *m = evm__proc_more(p);
	if (m) { /* not kept when out of memory: read when asked */
		m->start_ticks = ticks;
		m->start_known = true;
	}
}

/* The process behind pidfd is alive or a zombie (its pid is pinned). */
int evm__pidfd_alive(int pidfd)
{
	if (pidfd_send_signal(pidfd, 0, NULL, 0) == 0 || errno == EPERM)
		return 0;
	return errno == ESRCH ? -ESRCH : -errno;
}

int evm_proc_start_time_of(struct evm_proc *p, uint64_t *out)
{
	if (!p || !out)
		return -EINVAL;
	if (!p->more || !p->more->start_known) {
		/* unreaped (under the lock, as a signal): the pid is still its own */
		pthread_mutex_lock(&evm__sig_mu);
		int r = p->gone ? -ESRCH : evm__forked(p->loop) ? -ECHILD : 0;
		struct evm__pstat f;
		if (r == 0)
			r = evm__proc_stat(p->pid, &f);
		/* another's child (adopted), or ours reaped behind our back (SIGCHLD
		 * ignored, a stray waitpid), may be gone and its pid reused: the read
		 * was its own if it is alive (or a zombie) after it */
		if (r == 0 && p->pidfd >= 0)
			r = evm__pidfd_alive(p->pidfd);
		else if (r == 0 && (p->kind & EVM__K_FOREIGN))
			r = -ESRCH;
		pthread_mutex_unlock(&evm__sig_mu);
		if (r < 0)
			return r;
		evm__proc_keep_start(p, f.start);
		*out = f.start;
		return 0;
	}
	*out = p->more->start_ticks;
	return 0;
}

/* brackets still to check against /proc before they are trusted; -1: off */
static atomic_int checks_left = 4;

uint64_t evm__boot_tick(void)
{
	static atomic_long tick_ns; /* ns per clock tick; -1: not a whole number */
	long ns = atomic_load_explicit(&tick_ns, memory_order_relaxed);
	if (ns == 0) {
		long hz = sysconf(_SC_CLK_TCK);
		ns = hz > 0 && 1000000000L % hz == 0 ? 1000000000L / hz : -1;
		atomic_store_explicit(&tick_ns, ns, memory_order_relaxed);
	}
	struct timespec t;
	if (ns < 0 || atomic_load_explicit(&checks_left, memory_order_relaxed) < 0 ||
	    clock_gettime(CLOCK_BOOTTIME, &t) < 0)
		return 0;
	return ((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec) / (uint64_t)ns;
}

void evm__proc_started_within(struct evm_proc *p, uint64_t lo, uint64_t hi)
{
	if (!lo || lo != hi || (p->more && p->more->start_known))
		return;
	int left = atomic_load_explicit(&checks_left, memory_order_relaxed);
	if (left < 0)
		return;
	if (left == 0) {
		evm__proc_keep_start(p, lo);
		return;
	}
	uint64_t read;
	if (evm_proc_start_time_of(p, &read) < 0)
		return; /* gone already: nothing learnt */
	if (read != lo)
		atomic_store_explicit(&checks_left, -1, memory_order_relaxed);
	else
		atomic_compare_exchange_strong(&checks_left, &left, left - 1);
}
