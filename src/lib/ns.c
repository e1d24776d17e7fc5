/*
 * ns.c - namespaces for a new child: the checks, and a user namespace's maps.
 *
 * New namespaces are clone flags (spawnclone.c, spawner.c); joins, the host name
 * and the controlling terminal are a syscall each in the child (child.c).
 * This file holds what the parent does.
 *
 * A user namespace's uid_map and gid_map can only be written from outside,
 * once the child exists, and must be in place before it runs anything that
 * depends on its ids. So such a child is cloned without CLONE_VFORK (we must
 * run while it waits) and first reads a byte from a pipe: we write the maps,
 * then the byte. If the maps cannot be written we close the pipe instead and
 * it exits at once; the error is ours to report (stage "idmap"). We then wait
 * for its exec on the error pipe, as the clone() path always does, so it is
 * off our memory and stack when the spawn returns.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define NS_ALL                                                                                  \
	(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | \
	 CLONE_NEWCGROUP)
/* the kernel takes one write of at most a page, 340 lines */
#define MAP_LINES 340

static bool map_valid(const struct evm_id_map *m, size_t n)
{
	if (n && !m)
		return false;
	if (n > MAP_LINES)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!m[i].count)
			return false;
	return true;
}

int evm__ns_check(const struct evm_spawn_opts *o)
{
	if (o->namespaces & ~(unsigned)NS_ALL)
		return -EINVAL;
	if ((o->nuid_map || o->ngid_map) && !(o->namespaces & CLONE_NEWUSER))
		return -EINVAL;
	if (!map_valid(o->uid_map, o->nuid_map) || !map_valid(o->gid_map, o->ngid_map))
		return -EINVAL;
	if ((o->nsetns_fds && !o->setns_fds) || o->nsetns_fds > 64)
		return -EINVAL;
	bool uts = o->namespaces & CLONE_NEWUTS;
	for (size_t i = 0; i < o->nsetns_fds; i++) {
		int type = o->setns_fds[i] < 0 ? -1 : ioctl(o->setns_fds[i], NS_GET_NSTYPE);
		if (type < 0)
			return errno == EBADF || o->setns_fds[i] < 0 ? -EBADF : -EINVAL;
		if (type == CLONE_NEWUSER)
			return -EINVAL; /* setns refuses a process sharing its memory */
		uts |= type == CLONE_NEWUTS;
	}
	if (o->hostname && (!uts || !*o->hostname || strlen(o->hostname) > 64))
		return -EINVAL;
	if (o->flags & EVM_SPAWN_SETCTTY) {
		bool open = o->ctty >= 0 && o->ctty <= 2;
		for (size_t i = 0; i < o->nextra_fds && !open; i++)
			open = o->extra_fds[i].target == o->ctty;
		if (!open)
			return -EINVAL;
	}
	return 0;
}

int evm__userns_pipe(struct evm__spawn_req *r, int *sync_w)
{
	int p[2];
	int e = evm__pipe_above_stdio(p); /* the child's read end must survive its dup2 onto 0-2 */
	if (e < 0)
		return e;
	r->syncfd = p[0];
	r->syncfd_w = *sync_w = p[1];
	return 0;
}

/* /proc/PID/name := text, in one write (the kernel takes the map whole or not at all) */
static int write_proc(pid_t pid, const char *name, const char *text, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, text, len);
	int e = w == (ssize_t)len ? 0 : w < 0 ? -errno : -EIO;
	close(fd);
	return e;
}

static int write_map(pid_t pid, const char *name, const struct evm_id_map *m, size_t n)
{
	char buf[MAP_LINES * 36];
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", m[i].inside,
					m[i].outside, m[i].count);
	return write_proc(pid, name, buf, len);
}

static int write_maps(pid_t pid, struct evm__spawn_req *r)
{
	int e = 0;
	if (r->nuid_map)
		e = write_map(pid, "uid_map", r->uid_map, r->nuid_map);
	if (!e && r->ngid_map && !(r->flags & EVM_SPAWN_SETGROUPS)) {
		/* an unprivileged writer of gid_map must give up setgroups first */
		e = write_proc(pid, "setgroups", "deny", 4);
		r->setgroups_denied = e == 0;
	}
	if (!e && r->ngid_map)
		e = write_map(pid, "gid_map", r->gid_map, r->ngid_map);
	return e;
}

/*
 * After the clone: the maps, then the byte that lets the child go on (or EOF,
 * which ends it). A failure is left in r->err/stage, as a child's would be.
 * The child reads r as it runs: the pipe's fields stay until it has exec'd.
 */
int evm__userns_release(pid_t pid, struct evm__spawn_req *r, int sync_w)
{
	close(r->syncfd); /* the child has its own copy */
	int e = pid > 0 ? write_maps(pid, r) : 0;
	if (pid > 0 && !e && write(sync_w, "", 1) != 1)
		e = -errno;
	close(sync_w);
	if (e) {
		r->err = -e;
		r->stage = EVM_STAGE_IDMAP;
	}
	return e;
}
