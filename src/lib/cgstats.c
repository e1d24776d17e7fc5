/*
 * cgstats.c - what a cgroup used: CPU time (cpu.stat), memory now and at
 * its peak, OOM events (memory.events), pids.current and the number of its
 * processes (cgroup.procs), read in one call.
 *
 * Each figure is there only if its file could be read (out->have says which:
 * a controller not enabled leaves its figures out, it is no error); a cgroup
 * that is gone is -ENOENT, and a handle not made yet reads as empty (no
 * syscall). Nothing is cached: every call reads the files again.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool read_u64(int dfd, const char *file, uint64_t *out)
{
	char buf[64];
	if (evm__cg_read(dfd, file, buf, sizeof(buf)) <= 0)
		return false;
	*out = strtoull(buf, NULL, 10);
	return true;
}

static int stats_at(int dfd, struct evm_cgroup_stats *out)
{
	memset(out, 0, sizeof(*out));
	char buf[2048];
	if (evm__cg_read(dfd, "cpu.stat", buf, sizeof(buf)) > 0 &&
	    evm__cg_key(buf, "usage_usec", &out->cpu_usage_usec)) {
		evm__cg_key(buf, "user_usec", &out->cpu_user_usec);
		evm__cg_key(buf, "system_usec", &out->cpu_system_usec);
		out->have |= EVM_CGROUP_STAT_CPU;
	}
	if (read_u64(dfd, "memory.current", &out->memory_current))
		out->have |= EVM_CGROUP_STAT_MEMORY;
	if (read_u64(dfd, "memory.peak", &out->memory_peak))
		out->have |= EVM_CGROUP_STAT_PEAK;
	if (evm__cg_read(dfd, "memory.events", buf, sizeof(buf)) > 0) {
		evm__cg_key(buf, "oom", &out->oom);
		evm__cg_key(buf, "oom_kill", &out->oom_kill);
		out->have |= EVM_CGROUP_STAT_OOM;
	}
	if (read_u64(dfd, "pids.current", &out->pids_current))
		out->have |= EVM_CGROUP_STAT_PIDS;
	int n = evm__cg_procs_at(dfd, NULL, 0);
	if (n >= 0) {
		out->procs = (uint64_t)n;
		out->have |= EVM_CGROUP_STAT_PROCS;
	}
	if (!out->have && evm__cg_missing(dfd) == -ENOENT)
		return -ENOENT;
	return 0;
}

int evm_cgroup_stats(const struct evm_cgroup *cg, struct evm_cgroup_stats *out)
{
	if (!cg || !out)
		return -EINVAL;
	int dfd = evm__cg_dir(cg);
	if (dfd == -ENOENT && atomic_load(&cg->unmade)) {
		memset(out, 0, sizeof(*out)); /* not made yet: empty */
		out->have = EVM_CGROUP_STAT_PROCS;
		return 0;
	}
	if (dfd < 0)
		return dfd;
	int r = stats_at(dfd, out);
	evm__cg_dir_done(cg, dfd);
	return r;
}
