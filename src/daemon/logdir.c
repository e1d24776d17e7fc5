/*
 * logdir.c - the log directory and the checked opens of files in it.
 *
 * Safety: the directory is opened once (O_DIRECTORY|O_NOFOLLOW) and checked:
 * not writable by every user unless sticky, owned by root when we are root.
 * Every file is created relative to that fd with O_NOFOLLOW (a symlink
 * planted as NAME.log is refused, not followed) and O_NONBLOCK (a FIFO
 * planted there cannot block the open), then fstat'ed: a regular file,
 * ours, with one link (a hard link to someone else's file is refused).
 * Removed or renamed while we run, the directory is made again (check_dir).
 */
#include "logfileint.h"

#include "fdreserve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_CHECK_MS 1000

static int open_dir(struct logs *L)
{
	if (L->dirfd >= 0)
		close(L->dirfd);
	L->dirfd = -1;
	L->dir_err = 0;
	if (!L->dir) {
		L->dir_err = -ENOENT;
		snprintf(L->dir_msg, sizeof(L->dir_msg), "no log_dir configured");
		return L->dir_err;
	}
	int fd = open(L->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int e = 0;
	const char *why = NULL; /* a phrase ("is ...") or, with sep ": ", an error */
	const char *sep = ": ";
	char buf[160];
	if (fd < 0) {
		e = errno;
		why = strerror(e);
		/* O_DIRECTORY is checked first: a link to a directory fails ENOTDIR */
		if (e == ELOOP || (e == ENOTDIR && lstat(L->dir, &st) == 0 && S_ISLNK(st.st_mode))) {
			why = "is a symbolic link (give the directory it points to)";
			sep = " ";
		}
	} else if (fstat(fd, &st) < 0) {
		e = errno;
		why = strerror(e);
	} else if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		e = EPERM;
		why = "is writable by every user and not sticky: anyone could plant files in it";
		sep = " ";
	} else if (geteuid() == 0 && st.st_uid != 0) {
		e = EPERM;
		snprintf(buf, sizeof(buf), "is owned by uid %u: as root, the daemon writes logs only "
			 "into a directory owned by root", (unsigned)st.st_uid);
		why = buf;
		sep = " ";
	} else if (faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) < 0) {
		e = errno;
		why = strerror(e);
	}
	if (e) {
		if (fd >= 0)
			close(fd);
		L->dir_err = -e;
		snprintf(L->dir_msg, sizeof(L->dir_msg), "log_dir %s%s%s", L->dir, sep, why);
		return L->dir_err;
	}
	L->dirfd = fd;
	L->dir_dev = st.st_dev;
	L->dir_ino = st.st_ino;
	L->dir_mode = st.st_mode & 07777;
	L->dir_checked_at = now_ns(L);
	return 0;
}

/*
 * Is the directory we hold still the one at log_dir? Looked at as lines
 * are written, once a second at most. Removed or renamed, it is made again
 * (one level, the mode it had; the checks of open_dir apply) and the next
 * lines create new files there; if that cannot be done, output is counted
 * and discarded as with a missing log_dir, and the directory is tried
 * again every RETRY_MS. A directory put in its place is used as it is.
 */
void logs__check_dir(struct logs *L)
{
	uint64_t now = now_ns(L);
	if (L->dirfd < 0 || now < L->dir_checked_at + DIR_CHECK_MS * NS_PER_MS)
		return;
	L->dir_checked_at = now;
	struct stat held, there;
	bool removed = fstat(L->dirfd, &held) == 0 && held.st_nlink == 0;
	int r = lstat(L->dir, &there);
	if (!removed && r == 0 && there.st_dev == L->dir_dev && there.st_ino == L->dir_ino)
		return;
	const char *what = removed ? "was removed" : r < 0 ? "was renamed or moved away"
					 : "was replaced by another file or directory";
	logs__close_all(L);
	close(L->dirfd);
	L->dirfd = -1;
	/* EEXIST: someone made it first (mv logs logs.old && mkdir logs): used as it is */
	bool made = r < 0 && errno == ENOENT && mkdir(L->dir, L->dir_mode) == 0;
	mode_t mode = L->dir_mode;
	int e = open_dir(L);
	/*
	 * mkdir took the umask off. Through the fd open_dir checked, not the
	 * path: chmod would follow a symbolic link put there meanwhile.
	 */
	if (made && e == 0 && fchmod(L->dirfd, mode) == 0)
		L->dir_mode = mode;
	L->dir_retry_at = now + RETRY_MS * NS_PER_MS;
	char msg[700];
	if (e < 0)
		snprintf(msg, sizeof(msg), "log_dir %s %s while the daemon ran: %s: the output of "
			 "services with stdout or stderr = log is discarded until it can be written",
			 L->dir, what, L->dir_msg);
	else
		snprintf(msg, sizeof(msg), "log_dir %s %s while the daemon ran: %s; the files "
			 "open there are closed and the next lines create new ones", L->dir, what,
			 made ? "made it again" : "using the directory now there");
	if (L->report)
		L->report(NULL, NULL, e, msg, L->data);
}


/* Something else in the way of NAME.log: say what, in words ("DIR/NAME" + this). */
static const char *open_error(int e)
{
	switch (e) {
	case ELOOP: return " is a symbolic link: refusing to follow it";
	case ENXIO: return " is a FIFO or a socket, not a regular file";
	default: return NULL;
	}
}

/* Open name (flags O_WRONLY... or O_RDONLY) in the directory with every check. */
int logs__open_checked(struct logs *L, const char *name, int flags, char *msg, size_t len)
{
	if (L->dirfd < 0 && (!L->dir_retry_at || now_ns(L) >= L->dir_retry_at)) {
		open_dir(L);
		L->dir_retry_at = now_ns(L) + RETRY_MS * NS_PER_MS;
	}
	if (L->dirfd < 0) {
		snprintf(msg, len, "%s", L->dir_msg);
		return L->dir_err;
	}
	flags |= O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	int fd = openat(L->dirfd, name, flags, 0640);
	for (int i = 0; i < 2 && fd < 0 && errno == EMFILE; i++) {
		/*
		 * Out of descriptors: the least recently written file's, else
		 * (none open) one of the reserve. Log files never hold more
		 * than one of the reserve: the rest is for ctl and the spawns.
		 */
		if (L->lru_last) {
			logs__close_file(L->lru_last); /* its descriptor goes back to the reserve... */
			fdres_give();		 /* ...and comes out for us */
		} else if ((flags & O_ACCMODE) == O_RDONLY || !fdres_give()) {
			break; /* a reader (ctl logs) gets none of the reserve: it is for ctl and writers */
		}
		fd = openat(L->dirfd, name, flags, 0640);
	}
	if (fd < 0) {
		int e = errno;
		const char *why = open_error(e);
		snprintf(msg, len, "%s/%s%s%s", L->dir, name, why ? "" : ": ", why ? why : strerror(e));
		return -e;
	}
	struct stat st;
	char why[160] = "";
	int e = 0;
	if (fstat(fd, &st) < 0) {
		e = errno;
		snprintf(why, sizeof(why), ": %s", strerror(e));
	} else if (!S_ISREG(st.st_mode)) {
		e = EPERM;
		snprintf(why, sizeof(why), " is not a regular file");
	} else if (st.st_uid != geteuid()) {
		e = EPERM;
		snprintf(why, sizeof(why), " is owned by uid %u, not by the daemon's uid %u",
			 (unsigned)st.st_uid, (unsigned)geteuid());
	} else if (st.st_nlink > 1) {
		e = EPERM;
		snprintf(why, sizeof(why), " has %lu hard links: refusing to %s through them",
			 (unsigned long)st.st_nlink, (flags & O_ACCMODE) == O_RDONLY ? "read" : "write");
	}
	if (e) {
		close(fd);
		snprintf(msg, len, "%s/%s%s", L->dir, name, why);
		return -e;
	}
	/* regular files ignore it, but a filesystem that honours it must not fail our writes */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

int logs_set_dir(struct logs *L, const char *path, char *err, size_t errlen)
{
	logs__close_all(L);
	char *dup = path ? strdup(path) : NULL;
	if (path && !dup) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	free(L->dir);
	L->dir = dup;
	int r = open_dir(L);
	if (r < 0 && path)
		snprintf(err, errlen, "%s", L->dir_msg);
	return path ? r : 0;
}

int logs_reopen(struct logs *L, char *err, size_t errlen)
{
	unsigned n = logs__close_all(L);
	if (!L->dir)
		return (int)n;
	int r = open_dir(L);
	if (r < 0) {
		snprintf(err, errlen, "%s", L->dir_msg);
		return r;
	}
	return (int)n;
}

const char *logs_dir(const struct logs *L)
{
	return L->dir;
}
