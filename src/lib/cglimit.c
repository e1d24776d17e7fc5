/*
 * cglimit.c - a cgroup's resource limits (memory.max, memory.high,
 * pids.max, cpu.weight, cpu.max, io.weight): which file and which
 * controller each limit is, writing one and reading it back.
 *
 * A value is written as given (the kernel's grammar: "max", "50000 100000"),
 * one line, never a newline in it; the kernel's -ERANGE is -EINVAL. A limit
 * whose controller is not enabled in the parent is -EOPNOTSUPP (its file is
 * missing), a removed cgroup -ENOENT. Setting one makes the directory of a
 * handle that is to be made later; reading one does not.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

static const struct {
	const char *file;
	unsigned controller;
} limits[] = {
	[EVM_CGROUP_MEMORY_MAX] = {"memory.max", EVM_CGROUP_MEMORY},
	[EVM_CGROUP_MEMORY_HIGH] = {"memory.high", EVM_CGROUP_MEMORY},
	[EVM_CGROUP_PIDS_MAX] = {"pids.max", EVM_CGROUP_PIDS},
	[EVM_CGROUP_CPU_WEIGHT] = {"cpu.weight", EVM_CGROUP_CPU},
	[EVM_CGROUP_CPU_MAX] = {"cpu.max", EVM_CGROUP_CPU},
	[EVM_CGROUP_IO_WEIGHT] = {"io.weight", EVM_CGROUP_IO},
};
#define NLIMITS (sizeof(limits) / sizeof(limits[0]))

const char *evm_cgroup_limit_file(enum evm_cgroup_limit limit)
{
	return (unsigned)limit < NLIMITS ? limits[limit].file : NULL;
}

unsigned evm_cgroup_limit_controller(enum evm_cgroup_limit limit)
{
	return (unsigned)limit < NLIMITS ? limits[limit].controller : 0;
}

int evm_cgroup_set_limit(struct evm_cgroup *cg, enum evm_cgroup_limit limit, const char *value)
{
	const char *file = evm_cgroup_limit_file(limit);
	if (!cg || !file || !value || !*value || strchr(value, '\n'))
		return -EINVAL;
	int dfd = evm__cg_dir_made(cg);
	if (dfd < 0)
		return dfd;
	int r = evm__cg_write(dfd, file, value);
	if (r == -ENOENT)
		r = evm__cg_missing(dfd);
	evm__cg_dir_done(cg, dfd);
	return r == -ERANGE ? -EINVAL : r;
}

int evm_cgroup_get_limit(const struct evm_cgroup *cg, enum evm_cgroup_limit limit, char *buf,
			 size_t size)
{
	const char *file = evm_cgroup_limit_file(limit);
	char tmp[256];
	if (!cg || !file || !buf || !size)
		return -EINVAL;
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	ssize_t n = evm__cg_read(dfd, file, tmp, sizeof(tmp));
	if (n == -ENOENT)
		n = evm__cg_missing(dfd);
	evm__cg_dir_done(cg, dfd);
	if (n < 0)
		return (int)n;
	tmp[strcspn(tmp, "\n")] = 0;
	if (strlen(tmp) + 1 > size)
		return -ERANGE;
	strcpy(buf, tmp);
	return 0;
}
