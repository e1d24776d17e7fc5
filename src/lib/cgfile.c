/*
 * cgfile.c - a cgroup's interface files: its directory (the handle's fd, or
 * one opened for the call, made first for a handle of evm_cgroup_create_later),
 * whole reads, one write, and the parsing the files share ("key value" lines,
 * cgroup.procs).
 *
 * Interface files are opened without O_CREAT, ever: on cgroupfs a missing
 * controller file means "controller not enabled", and creating it fails
 * with a misleading EACCES. So ENOENT on a controller file is EOPNOTSUPP,
 * unless the cgroup itself is gone (evm__cg_missing tells which).
 *
 * Every fd opened here is O_CLOEXEC and closed before the call returns,
 * except the handle's own (cg->dfd), which evm__cg_dir_done leaves open.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read a whole (small) file into buf, NUL-terminated: length or -errno. */
ssize_t evm__cg_read(int dfd, const char *name, char *buf, size_t cap)
{
	return evm__cg_read_id(dfd, name, buf, cap, NULL);
}

ssize_t evm__cg_read_id(int dfd, const char *name, char *buf, size_t cap, struct evm__file_id *id)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (id && fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (id)
		*id = (struct evm__file_id){.ino = st.st_ino, .dev = st.st_dev};
	size_t len = 0;
	while (len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	return (ssize_t)len;
}

/* Read a file of any size into a malloc'ed string (*out); length or -errno. */
ssize_t evm__cg_read_all(int dfd, const char *name, char **out)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	ssize_t r = -ENOMEM;
	while (buf) {
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0) {
			buf[len] = 0;
			*out = buf;
			close(fd);
			return (ssize_t)len;
		}
		len += (size_t)n;
	}
	free(buf);
	close(fd);
	return r;
}

/* One write of s to an existing file (never O_CREAT). */
int evm__cg_write(int dfd, const char *name, const char *s)
{
	int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = strlen(s);
	ssize_t n;
	while ((n = write(fd, s, len)) < 0 && errno == EINTR)
		;
	int r = n < 0 ? -errno : (size_t)n == len ? 0 : -EIO;
	close(fd);
	return r;
}

/* ENOENT on an interface file: the cgroup is gone, or the file's controller is off. */
int evm__cg_missing(int dfd)
{
	return faccessat(dfd, "cgroup.procs", F_OK, 0) < 0 ? -ENOENT : -EOPNOTSUPP;
}

/* The next line of text after l, or NULL at the end. */
const char *evm__cg_next_line(const char *l)
{
	const char *nl = strchr(l, '\n');
	return nl && nl[1] ? nl + 1 : NULL;
}

/* "key value" lines (cpu.stat, memory.events, cgroup.events): the value of key. */
bool evm__cg_key(const char *text, const char *key, uint64_t *out)
{
	size_t kl = strlen(key);
	for (const char *l = *text ? text : NULL; l; l = evm__cg_next_line(l)) {
		if (strncmp(l, key, kl) == 0 && l[kl] == ' ') {
			*out = strtoull(l + kl + 1, NULL, 10);
			return true;
		}
	}
	return false;
}

bool evm__cg_unmade(const struct evm_cgroup *cg)
{
	int made = atomic_load(&cg->made);
	if (made < 0) { /* another thread may look at the same time: both see the same */
		struct stat st;
		int unknown = -1;
		atomic_compare_exchange_strong(&((struct evm_cgroup *)cg)->made, &unknown,
					       stat(cg->path, &st) == 0);
		made = atomic_load(&cg->made);
	}
	return made == 0;
}

/* The directory: the fd the handle holds, else one opened now (-errno). */
int evm__cg_dir(const struct evm_cgroup *cg)
{
	int fd = atomic_load(&cg->dfd);
	if (fd >= 0)
		return fd;
	if (evm__cg_unmade(cg))
		return -ENOENT;
	fd = evm__above_stdio(open(cg->path, O_PATH | O_DIRECTORY | O_CLOEXEC)); /* may be kept */
	return fd < 0 ? -errno : fd;
}

/* The directory, made first when it is a handle's to make later. */
int evm__cg_dir_made(const struct evm_cgroup *cg)
{
	if (evm__cg_unmade(cg)) {
		if (mkdir(cg->path, 0755) < 0 && errno != EEXIST)
			return -errno;
		atomic_store(&((struct evm_cgroup *)cg)->made, 1);
	}
	return evm__cg_dir(cg);
}

/* Done with what evm__cg_dir gave: closed unless the handle holds it. */
void evm__cg_dir_done(const struct evm_cgroup *cg, int fd)
{
	if (fd >= 0 && fd != atomic_load(&cg->dfd))
		close(fd);
}

/* cgroup.procs of dfd, parsed: count (pids up to cap), or -errno */
int evm__cg_procs_at(int dfd, pid_t *pids, size_t cap)
{
	char *text;
	ssize_t len = evm__cg_read_all(dfd, "cgroup.procs", &text);
	if (len < 0)
		return (int)len;
	int n = 0;
	for (char *s = text, *end; *s; s = end + strspn(end, "\n")) {
		long v = strtol(s, &end, 10);
		if (end == s)
			break;
		if (v > 0) { /* 0: a process outside our pid namespace */
			if ((size_t)n < cap)
				pids[n] = (pid_t)v;
			n++;
		}
	}
	free(text);
	return n;
}
