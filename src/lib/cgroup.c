/*
 * cgroup.c - cgroup v2 handles: discovery, creation, membership, signals,
 * kill, removal, limits and statistics (the populated watch is cgwatch.c).
 *
 * A handle is two names: the cgroup's filesystem path, and its path as
 * /proc/PID/cgroup shows it ("rel"), which is what tells whether a pid read
 * from cgroup.procs still belongs to it. It holds no fd of the directory
 * until evm_cgroup_fd asks for one: each operation opens the directory for
 * itself, and a spawn into it opens one for that spawn (evm_cgroup_open_dir).
 * A daemon with 10,000 services would otherwise hold 10,000 directory fds
 * besides their 10,000 pidfds, at the edge of a 20,000 RLIMIT_NOFILE. The
 * path is what names the cgroup: one removed and made again under that name
 * is the same cgroup to the handle.
 *
 * evm_cgroup_create_later's handle is made (mkdir) only when something needs
 * the directory: a spawn into it, an fd, a limit, a process moved in. Until
 * then it reads as an empty cgroup at no syscall. A mkdir costs 50-250 us
 * here: 3,000 services made at once kept a daemon from answering for 0.6 s.
 *
 * Interface files are opened without O_CREAT, ever: on cgroupfs a missing
 * controller file means "controller not enabled", and creating it fails
 * with a misleading EACCES. So ENOENT on a controller file is EOPNOTSUPP,
 * unless the cgroup itself is gone.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static const char *const ctl_names[] = {"cpu", "io", "memory", "pids"};
#define NCTL (sizeof(ctl_names) / sizeof(ctl_names[0]))

const char *evm_cgroup_controller_name(unsigned controller)
{
	for (unsigned i = 0; i < NCTL; i++)
		if (controller == 1u << i)
			return ctl_names[i];
	return "unknown";
}

/* ------------------------------------------------------------ file access */

/* Read a whole (small) file into buf, NUL-terminated: length or -errno. */
ssize_t evm__cg_read(int dfd, const char *name, char *buf, size_t cap)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
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

/* The directory: the fd the handle holds, else one opened now (-errno). */
int evm__cg_dir(const struct evm_cgroup *cg)
{
	int fd = atomic_load(&cg->dfd);
	if (fd >= 0)
		return fd;
	if (atomic_load(&cg->unmade))
		return -ENOENT;
	fd = open(cg->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The directory, made first when it is a handle's to make later. */
int evm__cg_dir_made(const struct evm_cgroup *cg)
{
	if (atomic_load(&cg->unmade)) {
		if (mkdir(cg->path, 0755) < 0 && errno != EEXIST)
			return -errno;
		atomic_store(&((struct evm_cgroup *)cg)->unmade, false);
	}
	return evm__cg_dir(cg);
}

/* Done with what evm__cg_dir gave: closed unless the handle holds it. */
void evm__cg_dir_done(const struct evm_cgroup *cg, int fd)
{
	if (fd >= 0 && fd != atomic_load(&cg->dfd))
		close(fd);
}

static int cg_write(const struct evm_cgroup *cg, const char *name, const char *s)
{
	int dfd = evm__cg_dir_made(cg);
	if (dfd < 0)
		return dfd;
	int r = evm__cg_write(dfd, name, s);
	evm__cg_dir_done(cg, dfd);
	return r;
}

/* ------------------------------------------------------------- discovery */

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
	char *d = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*d++ = *s;
		}
	}
	*d = 0;
}

/* The part of path below prefix ("" for prefix itself), or NULL if not below it. */
const char *evm__cg_below(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	if (n == 1 && prefix[0] == '/')
		return path[0] == '/' ? (path[1] ? path : "") : NULL;
	if (strncmp(path, prefix, n) != 0 || (path[n] && path[n] != '/'))
		return NULL;
	return path + n;
}

/*
 * Find a cgroup2 mount into mnt and root (the mount's root in the hierarchy):
 * with want_rel, one whose root contains that cgroup; with want_path, the one
 * with the longest mount point containing it; otherwise any. Among equals,
 * /sys/fs/cgroup or /sys/fs/cgroup/unified, else the first.
 */
static int find_mount(const char *want_rel, const char *want_path, char *mnt, size_t mntcap,
		      char *root, size_t rootcap)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0, best = 0;
	while (getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - ");
		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		/* id parent maj:min root mountpoint ... */
		char *fld[5], *save = NULL, *p = line;
		int k = 0;
		for (; k < 5 && (fld[k] = strtok_r(p, " ", &save)); k++)
			p = NULL;
		if (k < 5)
			continue;
		unescape(fld[3]);
		unescape(fld[4]);
		size_t score = 1;
		if (want_rel && !evm__cg_below(want_rel, fld[3]))
			continue;
		if (want_path && !evm__cg_below(want_path, fld[4]))
			continue;
		if (want_path)
			score = strlen(fld[4]) + 2;
		else if (!strcmp(fld[4], "/sys/fs/cgroup") || !strcmp(fld[4], "/sys/fs/cgroup/unified"))
			score = 2;
		if (score <= best || strlen(fld[4]) >= mntcap || strlen(fld[3]) >= rootcap)
			continue;
		best = score;
		strcpy(mnt, fld[4]);
		strcpy(root, fld[3]);
	}
	free(line);
	fclose(f);
	return best ? 0 : -ENOENT;
}

int evm_cgroup_mount(char *buf, size_t size)
{
	char mnt[PATH_MAX], root[PATH_MAX];
	if (!buf)
		return -EINVAL;
	int r = find_mount(NULL, NULL, mnt, sizeof(mnt), root, sizeof(root));
	if (r < 0)
		return r;
	if (strlen(mnt) + 1 > size)
		return -ERANGE;
	strcpy(buf, mnt);
	return 0;
}

/* Our cgroup as /proc/self/cgroup shows it (the "0::" line), into buf. */
static int self_rel(char *buf, size_t cap)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t lcap = 0;
	int r = -ENOENT;
	while (getline(&line, &lcap, f) > 0) {
		if (strncmp(line, "0::", 3) != 0)
			continue;
		line[strcspn(line, "\n")] = 0;
		if (strlen(line + 3) + 1 > cap) {
			r = -ENAMETOOLONG;
			break;
		}
		strcpy(buf, line + 3);
		r = 0;
		break;
	}
	free(line);
	fclose(f);
	return r;
}

static char *join(const char *a, const char *b)
{
	size_t la = strlen(a);
	bool slash = la && a[la - 1] == '/';
	char *s = malloc(la + 1 + strlen(b) + 1);
	if (s)
		sprintf(s, "%s%s%s", a, slash || !*b ? "" : "/", b);
	return s;
}

/* A handle for the directory at path (rel: its /proc name, or NULL). Takes nothing. */
static int make(const char *path, const char *rel, struct evm_cgroup **out)
{
	struct evm_cgroup *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return -ENOMEM;
	atomic_init(&cg->refs, 1);
	atomic_init(&cg->dfd, -1);
	atomic_init(&cg->unmade, false);
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(cg);
		return -e;
	}
	struct statfs sf;
	bool ok = fstatfs(fd, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
	close(fd);
	if (!ok) {
		evm_cgroup_free(cg);
		return -EINVAL;
	}
	cg->path = strdup(path);
	cg->rel = rel ? strdup(rel) : NULL;
	if (!cg->path || (rel && !cg->rel)) {
		evm_cgroup_free(cg);
		return -ENOMEM;
	}
	*out = cg;
	return 0;
}

/*
 * The /proc name of the directory sub (below the mount) of a mount whose
 * root is root: NULL-safe "unknown" when the mount's root lies outside our
 * cgroup namespace ("/.."), where /proc names do not match.
 */
static char *rel_name(const char *root, const char *sub)
{
	if (strstr(root, "/.."))
		return NULL;
	return join(root, *sub == '/' ? sub + 1 : sub);
}

int evm_cgroup_open_self(struct evm_cgroup **out)
{
	char rel[PATH_MAX], mnt[PATH_MAX], root[PATH_MAX];
	if (!out)
		return -EINVAL;
	int r = self_rel(rel, sizeof(rel));
	if (r < 0)
		return r;
	/* a removed cgroup shows as "/x (deleted)": not one we can use */
	if (rel[0] != '/' || strstr(rel, " (deleted)"))
		return -ENOENT;
	if ((r = find_mount(rel, NULL, mnt, sizeof(mnt), root, sizeof(root))) < 0)
		return r;
	const char *sub = evm__cg_below(rel, root);
	char *path = join(mnt, *sub == '/' ? sub + 1 : sub);
	if (!path)
		return -ENOMEM;
	r = make(path, rel, out);
	free(path);
	return r;
}

int evm_cgroup_open(const char *path, struct evm_cgroup **out)
{
	char real[PATH_MAX], mnt[PATH_MAX], root[PATH_MAX];
	if (!path || path[0] != '/' || !out)
		return -EINVAL;
	if (!realpath(path, real))
		return -errno;
	struct statfs sf;
	if (statfs(real, &sf) < 0)
		return -errno;
	if (sf.f_type != CGROUP2_SUPER_MAGIC)
		return -EINVAL;
	char *rel = NULL;
	if (find_mount(NULL, real, mnt, sizeof(mnt), root, sizeof(root)) == 0) {
		rel = rel_name(root, evm__cg_below(real, mnt));
		if (!rel && !strstr(root, "/.."))
			return -ENOMEM;
	}
	int r = make(real, rel, out);
	free(rel);
	return r;
}

static bool good_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	return n && n <= NAME_MAX && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..") && strncmp(name, "cgroup.", 7) != 0;
}

int evm_cgroup_create(struct evm_cgroup *parent, const char *name, struct evm_cgroup **out)
{
	if (!parent || !out || !good_name(name))
		return -EINVAL;
	bool existed = false;
	char *path = join(parent->path, name);
	char *rel = parent->rel ? join(parent->rel, name) : NULL;
	int r = path && (rel || !parent->rel) ? 0 : -ENOMEM;
	if (r == 0 && mkdir(path, 0755) < 0) {
		if (errno == EEXIST)
			existed = true;
		else
			r = -errno;
	}
	if (r == 0) {
		r = make(path, rel, out);
		if (r == -ENOTDIR || r == -EINVAL)
			r = -EEXIST; /* a file of that name: not a cgroup we can use */
	}
	free(path);
	free(rel);
	return r < 0 ? r : existed ? 1 : 0;
}

int evm_cgroup_create_later(struct evm_cgroup *parent, const char *name, struct evm_cgroup **out)
{
	if (!parent || !out || !good_name(name))
		return -EINVAL;
	struct evm_cgroup *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return -ENOMEM;
	atomic_init(&cg->refs, 1);
	atomic_init(&cg->dfd, -1);
	cg->path = join(parent->path, name);
	cg->rel = parent->rel ? join(parent->rel, name) : NULL;
	if (!cg->path || (parent->rel && !cg->rel)) {
		evm_cgroup_free(cg);
		return -ENOMEM;
	}
	/* made already (an earlier run's): it may hold processes, so it is read */
	struct stat st;
	atomic_init(&cg->unmade, stat(cg->path, &st) < 0);
	*out = cg;
	return 0;
}

struct evm_cgroup *evm__cgroup_ref(struct evm_cgroup *cg)
{
	atomic_fetch_add(&cg->refs, 1);
	return cg;
}

void evm_cgroup_free(struct evm_cgroup *cg)
{
	if (!cg || atomic_fetch_sub(&cg->refs, 1) > 1)
		return;
	int fd = atomic_load(&cg->dfd);
	if (fd >= 0)
		close(fd);
	free(cg->path);
	free(cg->rel);
	free(cg);
}

const char *evm_cgroup_path(const struct evm_cgroup *cg)
{
	return cg ? cg->path : NULL;
}

int evm_cgroup_fd(const struct evm_cgroup *cg)
{
	if (!cg)
		return -EINVAL;
	int fd = atomic_load(&cg->dfd);
	if (fd >= 0)
		return fd;
	if ((fd = evm__cg_dir_made(cg)) < 0)
		return fd;
	/* the handle is const to its users; its fd is opened on first demand */
	int none = -1;
	if (!atomic_compare_exchange_strong(&((struct evm_cgroup *)cg)->dfd, &none, fd)) {
		close(fd); /* another thread's came first */
		fd = none;
	}
	return fd;
}

int evm_cgroup_open_dir(const struct evm_cgroup *cg)
{
	if (!cg)
		return -EINVAL;
	int fd = evm__cg_dir_made(cg);
	if (fd < 0 || fd != atomic_load(&cg->dfd))
		return fd;
	fd = fcntl(fd, F_DUPFD_CLOEXEC, 3); /* a new one, as promised */
	return fd < 0 ? -errno : fd;
}

int evm_cgroup_writable(const struct evm_cgroup *cg)
{
	if (!cg)
		return -EINVAL;
	/* a new child needs the directory; moving a process in needs cgroup.procs
	 * of the common ancestor, which for our own children is cg itself */
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	int r = faccessat(dfd, ".", W_OK | X_OK, AT_EACCESS) < 0 ||
			faccessat(dfd, "cgroup.procs", W_OK, AT_EACCESS) < 0
		? -errno : 0;
	evm__cg_dir_done(cg, dfd);
	return r;
}

/* ----------------------------------------------------------- controllers */

static unsigned parse_controllers(const char *s)
{
	unsigned mask = 0;
	while (*s) {
		size_t n = strcspn(s, " \n");
		for (unsigned i = 0; i < NCTL; i++)
			if (n == strlen(ctl_names[i]) && !strncmp(s, ctl_names[i], n))
				mask |= 1u << i;
		s += n;
		s += strspn(s, " \n");
	}
	return mask;
}

static int read_controllers(const struct evm_cgroup *cg, const char *file, unsigned *out)
{
	char buf[512];
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	ssize_t n = evm__cg_read(dfd, file, buf, sizeof(buf));
	evm__cg_dir_done(cg, dfd);
	if (n < 0)
		return (int)n;
	*out = parse_controllers(buf);
	return 0;
}

int evm_cgroup_controllers(const struct evm_cgroup *cg, unsigned *out)
{
	if (!cg || !out)
		return -EINVAL;
	return read_controllers(cg, "cgroup.controllers", out);
}

int evm_cgroup_enable(struct evm_cgroup *cg, unsigned controllers, unsigned *enabled)
{
	unsigned have, on;
	if (!cg || (controllers & ~((1u << NCTL) - 1)))
		return -EINVAL;
	int r = read_controllers(cg, "cgroup.controllers", &have);
	if (r == 0)
		r = read_controllers(cg, "cgroup.subtree_control", &on);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < NCTL; i++) {
		unsigned bit = 1u << i;
		if (!(controllers & bit) || !(have & bit) || (on & bit))
			continue;
		char cmd[16];
		snprintf(cmd, sizeof(cmd), "+%s", ctl_names[i]);
		if ((r = cg_write(cg, "cgroup.subtree_control", cmd)) < 0)
			return r; /* EBUSY: processes in cg itself */
		on |= bit;
	}
	if (enabled)
		*enabled = on;
	return 0;
}

/* ------------------------------------------------------------ membership */

int evm_cgroup_attach(struct evm_cgroup *cg, pid_t pid)
{
	if (!cg || pid < 0)
		return -EINVAL;
	char buf[24];
	snprintf(buf, sizeof(buf), "%d", (int)pid);
	return cg_write(cg, "cgroup.procs", buf);
}

/* cgroup.procs of dfd, parsed: count (pids up to cap), or -errno */
static int procs_at(int dfd, pid_t *pids, size_t cap)
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

int evm_cgroup_procs(const struct evm_cgroup *cg, pid_t *pids, size_t cap)
{
	if (!cg || (cap && !pids))
		return -EINVAL;
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	int r = procs_at(dfd, pids, cap);
	evm__cg_dir_done(cg, dfd);
	return r;
}

int evm__cgroup_populated_at(int dfd, const char *events)
{
	char buf[256];
	uint64_t v;
	ssize_t n = evm__cg_read(dfd, events, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	return evm__cg_key(buf, "populated", &v) ? v != 0 : -EIO;
}

int evm_cgroup_populated(const struct evm_cgroup *cg)
{
	if (!cg)
		return -EINVAL;
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	int r = evm__cgroup_populated_at(dfd, "cgroup.events");
	evm__cg_dir_done(cg, dfd);
	return r;
}

/* --------------------------------------------------------------- limits */

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

/* ---------------------------------------------------------------- stats */

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
	int n = procs_at(dfd, NULL, 0);
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
