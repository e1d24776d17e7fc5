/*
 * cgroup.c - cgroup v2 handles: discovery, creation, controllers and
 * membership. Beside it: cgfile.c (the interface files, read and written),
 * cglimit.c (limits), cgstats.c (statistics), cgkill.c (signals, kill,
 * removal) and cgwatch.c (the populated watch).
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
 * Interface files are opened without O_CREAT, ever (see cgfile.c).
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
	atomic_init(&cg->made, 1);
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
	/*
	 * Made already (an earlier run's)? It may hold processes, so it is
	 * read; looked at when that first matters (evm__cg_unmade), or told
	 * (evm_service_opts.cgroup_kept: a re-exec's 1,000 services, 1,000
	 * stats fewer).
	 */
	atomic_init(&cg->made, -1);
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

int evm_cgroup_procs(const struct evm_cgroup *cg, pid_t *pids, size_t cap)
{
	if (!cg || (cap && !pids))
		return -EINVAL;
	int dfd = evm__cg_dir(cg);
	if (dfd < 0)
		return dfd;
	int r = evm__cg_procs_at(dfd, pids, cap);
	evm__cg_dir_done(cg, dfd);
	return r;
}

int evm__cgroup_populated_at(int dfd, const char *events)
{
	return evm__cgroup_populated_id(dfd, events, NULL);
}

int evm__cgroup_populated_id(int dfd, const char *events, struct evm__file_id *id)
{
	char buf[256];
	uint64_t v;
	ssize_t n = evm__cg_read_id(dfd, events, buf, sizeof(buf), id);
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
