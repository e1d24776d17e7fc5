/*
 * cgstats.c - what a cgroup used: CPU time (cpu.stat), memory now and at
 * its peak, OOM events (memory.events), pids.current and the number of its
 * processes (cgroup.procs), read in one call.
 *
 * Each figure is there only if its file could be read (out->have says which:
 * a controller not enabled leaves its figures out, it is no error); a cgroup
 * that is gone is -ENOENT, and a handle not made yet reads as empty (no
 * syscall). Every call reads the files again, but for those found absent
 * (a controller not enabled), which are tried again only every
 * EVM__CG_ABSENT_SECS, and those the caller did not ask for
 * (evm_cgroup_stats_only: a metrics scrape of 10,000 cgroups reads two
 * files of each, and cgroup.procs is one it has no use for).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * The files of controllers that are not enabled (memory.*, pids.current on a
 * hierarchy without them, as on this kind of host) are absent; a failed open
 * is most of what a read of a service's figures cost (four of six opens,
 * ~50 us a running service a scrape). So an absent one is remembered on the
 * handle and skipped, and all are tried again every EVM__CG_ABSENT_SECS.
 */
/* the figures each read from a file of its own */
#define EVM__CG_STAT_FILES                                                                          \
	(EVM_CGROUP_STAT_CPU | EVM_CGROUP_STAT_MEMORY | EVM_CGROUP_STAT_PEAK | EVM_CGROUP_STAT_OOM | \
	 EVM_CGROUP_STAT_PIDS)

static unsigned absent_now(const struct evm_cgroup *cg, long long now)
{
	long long at = atomic_load(&cg->absent_at);
	return at && now - at < EVM__CG_ABSENT_SECS ? atomic_load(&cg->absent) : 0;
}

static void absent_set(const struct evm_cgroup *cg, unsigned absent, long long now, bool checked)
{
	struct evm_cgroup *w = (struct evm_cgroup *)cg; /* a cache: the handle is logically const */
	atomic_store(&w->absent, absent);
	if (checked || !atomic_load(&w->absent_at))
		atomic_store(&w->absent_at, now ? now : 1);
}

static long long mono_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec;
}

/* One controller file (bit) unless known absent: its text's length, or -errno (absent: added). */
static ssize_t read_file(int dfd, const char *file, unsigned bit, unsigned skip, unsigned *absent,
			 char *buf, size_t cap)
{
	if (skip & bit) {
		*absent |= bit;
		return -ENOENT;
	}
	ssize_t n = evm__cg_read(dfd, file, buf, cap);
	if (n == -ENOENT)
		*absent |= bit;
	return n;
}

static bool read_u64(int dfd, const char *file, unsigned bit, unsigned skip, unsigned *absent,
		     uint64_t *out)
{
	char buf[64];
	if (read_file(dfd, file, bit, skip, absent, buf, sizeof(buf)) <= 0)
		return false;
	*out = strtoull(buf, NULL, 10);
	return true;
}

/*
 * Where the files are: the directory's fd, or (dir set) full paths from
 * AT_FDCWD, which spares the directory's open and close when one file is read.
 */
struct at {
	int dfd;
	const char *dir;
	char path[PATH_MAX];
};

static const char *at_name(struct at *a, const char *file)
{
	if (!a->dir)
		return file;
	snprintf(a->path, sizeof(a->path), "%s/%s", a->dir, file); /* fits: checked by the caller */
	return a->path;
}

static int at_missing(struct at *a)
{
	return faccessat(a->dfd, at_name(a, "cgroup.procs"), F_OK, 0) < 0 ? -ENOENT : -EOPNOTSUPP;
}

static int stats_at(const struct evm_cgroup *cg, struct at *a, unsigned want, unsigned known,
		    long long now, struct evm_cgroup_stats *out)
{
	memset(out, 0, sizeof(*out));
	unsigned absent = 0;
	int dfd = a->dfd;
	/* a file not wanted is skipped like an absent one, but not marked absent */
	unsigned skip = known | ~want;
	char buf[2048];
	if ((want & EVM_CGROUP_STAT_CPU) && evm__cg_read(dfd, at_name(a, "cpu.stat"), buf, sizeof(buf)) > 0 &&
	    evm__cg_key(buf, "usage_usec", &out->cpu_usage_usec)) {
		evm__cg_key(buf, "user_usec", &out->cpu_user_usec);
		evm__cg_key(buf, "system_usec", &out->cpu_system_usec);
		out->have |= EVM_CGROUP_STAT_CPU;
	}
	if (read_u64(dfd, at_name(a, "memory.current"), EVM_CGROUP_STAT_MEMORY, skip, &absent, &out->memory_current))
		out->have |= EVM_CGROUP_STAT_MEMORY;
	if (read_u64(dfd, at_name(a, "memory.peak"), EVM_CGROUP_STAT_PEAK, skip, &absent, &out->memory_peak))
		out->have |= EVM_CGROUP_STAT_PEAK;
	if (read_file(dfd, at_name(a, "memory.events"), EVM_CGROUP_STAT_OOM, skip, &absent, buf, sizeof(buf)) > 0) {
		evm__cg_key(buf, "oom", &out->oom);
		evm__cg_key(buf, "oom_kill", &out->oom_kill);
		out->have |= EVM_CGROUP_STAT_OOM;
	}
	if (read_u64(dfd, at_name(a, "pids.current"), EVM_CGROUP_STAT_PIDS, skip, &absent, &out->pids_current))
		out->have |= EVM_CGROUP_STAT_PIDS;
	int n = want & EVM_CGROUP_STAT_PROCS ? evm__cg_procs_at(dfd, NULL, 0) : -1; /* never by path */
	if (n >= 0) {
		out->procs = (uint64_t)n;
		out->have |= EVM_CGROUP_STAT_PROCS;
	}
	/*
	 * Gone, or removed between two reads (a service's cgroup at its exit): its
	 * missing files tell nothing about its controllers, and remembering them
	 * absent would hide a re-made cgroup's figures for EVM__CG_ABSENT_SECS.
	 */
	if ((!out->have || (absent & ~skip)) && at_missing(a) == -ENOENT) /* a file opened, not there */
		return -ENOENT;
	/* what was tried, and what was known of the rest */
	absent_set(cg, (absent & want) | (known & ~want), now, !known);
	return 0;
}

int evm__cg_oom_kills(const struct evm_cgroup *cg, uint64_t *out)
{
	*out = 0;
	long long now = mono_secs();
	unsigned skip = absent_now(cg, now), absent = skip & ~EVM_CGROUP_STAT_OOM;
	if (skip & EVM_CGROUP_STAT_OOM)
		return -EOPNOTSUPP;
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	char buf[512];
	ssize_t n = read_file(dfd, "memory.events", EVM_CGROUP_STAT_OOM, 0, &absent, buf, sizeof(buf));
	if (n == -ENOENT)
		n = evm__cg_missing(dfd);
	if (n == -EOPNOTSUPP)
		absent_set(cg, absent, now, false);
	evm__cg_dir_done(cg, dfd);
	if (n < 0)
		return (int)n;
	evm__cg_key(buf, "oom_kill", out);
	return 0;
}

int evm_cgroup_stats(const struct evm_cgroup *cg, struct evm_cgroup_stats *out)
{
	return evm_cgroup_stats_only(cg, EVM__CG_STAT_FILES | EVM_CGROUP_STAT_PROCS, out);
}

int evm_cgroup_stats_only(const struct evm_cgroup *cg, unsigned want, struct evm_cgroup_stats *out)
{
	if (!cg || !out || (want & ~(unsigned)(EVM__CG_STAT_FILES | EVM_CGROUP_STAT_PROCS)))
		return -EINVAL;
	long long now = mono_secs();
	unsigned known = absent_now(cg, now);
	struct at a = {.dfd = AT_FDCWD, .dir = cg->path};
	/*
	 * One file to read (cpu.stat, where no controller is enabled: a metrics
	 * scrape of 10,000 cgroups) and no directory fd held: open it by its path.
	 */
	unsigned files = want & ~known & ~(unsigned)EVM_CGROUP_STAT_PROCS & EVM__CG_STAT_FILES;
	if (!(want & EVM_CGROUP_STAT_PROCS) && (files & (files - 1)) == 0 &&
	    atomic_load(&cg->dfd) < 0 && !evm__cg_unmade(cg) &&
	    strlen(cg->path) + sizeof("/memory.current") <= sizeof(a.path))
		return stats_at(cg, &a, want, known, now, out);
	int dfd = evm__cg_dir(cg);
	if (dfd == -ENOENT && evm__cg_unmade(cg)) {
		memset(out, 0, sizeof(*out)); /* not made yet: empty */
		out->have = want & EVM_CGROUP_STAT_PROCS;
		return 0;
	}
	if (dfd < 0)
		return dfd;
	a.dfd = dfd;
	a.dir = NULL;
	int r = stats_at(cg, &a, want, known, now, out);
	evm__cg_dir_done(cg, dfd);
	return r;
}
