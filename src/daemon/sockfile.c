/*
 * sockfile.c - the control socket's file (see sockfile.h).
 *
 * Holding the lock, a leftover socket is stale (its daemon died) and is
 * replaced; failing to take it means a live daemon. Something that answers
 * on the path without the lock is not ours to replace either, unless the
 * process that listened on it is gone (below). The socket is bound under a
 * private name with umask 0177, so it is 0600 from the start, then renamed
 * over the path: no moment where others could connect.
 *
 * The lock is a POSIX record lock (fcntl F_SETLK), not flock: a record lock
 * belongs to the process, so the children we spawn never hold it. An flock
 * belongs to the open file, which a child between its clone and its exec
 * shares (O_CLOEXEC closes it only at the exec): a daemon killed with
 * SIGKILL left its lock held by such a child, and a daemon started again at
 * once was refused ("another evmon daemon is running"). The price of record
 * locks: closing ANY descriptor of the lock file in this process drops the
 * lock, so nothing else here may open it, and one process cannot hold it
 * twice (a second sockfile_open of a path in the same process is not refused).
 */
#include "sockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * The lock file must be our own plain file with one name: another user's
 * (it could hold the lock forever), a symbolic or hard link (we truncate
 * and write it: a root daemon would overwrite what it points to), or a
 * device or FIFO is refused, and left as it is.
 */
static int lock_is_ours(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, errlen, "%s: not a regular file: refusing to use it as the lock", path);
	if (st.st_uid != geteuid())
		return fail(err, errlen, "%s: owned by uid %u, not by the daemon's uid %u: refusing "
			    "to use it as the lock", path, (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_nlink != 1)
		return fail(err, errlen, "%s: has %ju links (a hard link to another file?): refusing "
			    "to use it as the lock", path, (uintmax_t)st.st_nlink);
	return 0;
}

/* The pid in the lock file (a daemon writes its own there), for messages. */
static void pid_in_file(int fd, char *pid, size_t len)
{
	ssize_t n = pread(fd, pid, len - 1, 0);
	pid[n > 0 ? n : 0] = '\0';
	pid[strcspn(pid, "\n")] = '\0';
}

/* A write lock on the whole file, held by this process, not inherited by children. */
static int record_lock(int fd)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	return fcntl(fd, F_SETLK, &fl);
}

/* Take the lock that says "a daemon serves this path". */
static int take_lock(struct sockfile *sf, char *err, size_t errlen)
{
	/* O_NONBLOCK | O_NOCTTY: opening a FIFO or a device put there must not block or act */
	int fd = open(sf->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
		      0600);
	if (fd < 0 && errno == ELOOP)
		return fail(err, errlen, "%s: a symbolic link: refusing to use it as the lock",
			    sf->lock_path);
	if (fd < 0)
		return fail(err, errlen, "%s: %s", sf->lock_path, strerror(errno));
	if (lock_is_ours(fd, sf->lock_path, err, errlen) < 0) {
		close(fd); /* not ours: not removed either */
		return -1;
	}
	if (record_lock(fd) < 0) {
		int e = errno;
		char pid[32] = "";
		struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if (fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK && who.l_pid > 0)
			snprintf(pid, sizeof(pid), "%d", (int)who.l_pid);
		else
			pid_in_file(fd, pid, sizeof(pid));
		close(fd);
		if (e == EAGAIN || e == EACCES)
			return fail(err, errlen, "%s: another evmon daemon is running (pid %s)",
				    sf->path, *pid ? pid : "?");
		return fail(err, errlen, "%s: %s", sf->lock_path, strerror(e));
	}
	sf->lockfd = fd;
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(sf->lockfd, 0) < 0 || pwrite(sf->lockfd, pid, (size_t)n, 0) < 0) {
		/* the pid is only for the message above */
	}
	return 0;
}

/* pid has ended: no such process, or a zombie (/proc/pid/stat's state after the last ')') */
static bool pid_ended(pid_t pid)
{
	if (kill(pid, 0) < 0)
		return errno == ESRCH;
	char path[64], data[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, data, sizeof(data) - 1);
	close(fd);
	data[n > 0 ? n : 0] = '\0';
	const char *p = strrchr(data, ')');
	return p && (p[1] == ' ') && (p[2] == 'Z' || p[2] == 'X');
}

/*
 * Something that answers on the path without our lock is not ours to
 * replace, unless the process that listened on it has ended: then the
 * listener is a copy a child of a killed daemon holds between its clone and
 * its exec (a connect succeeds into the backlog), gone at that exec. The
 * listener's pid is the one SO_PEERCRED gives the connecting side: the pid
 * at its listen(); 0 (not in our pid namespace) counts as alive.
 */
static bool someone_listens(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	struct ucred cr = {0};
	socklen_t l = sizeof(cr);
	if (live && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) == 0 && cr.pid > 0 &&
	    pid_ended(cr.pid))
		live = false;
	close(fd);
	return live;
}

/* bind_listen's temporary name, next to path: "~" and the pid in 5 base-36 digits (up to
 * 60,466,175; pid_max is at most 4,194,304), one width whatever the pid. False if it does not
 * fit an address. */
#define TMP_SUFFIX 6
static bool tmp_name(const char *path, char *tmp, size_t len)
{
	struct sockaddr_un ta;
	char suffix[TMP_SUFFIX + 1];
	unsigned v = (unsigned)getpid();
	suffix[0] = '~';
	for (int i = TMP_SUFFIX - 1; i >= 1; i--, v /= 36)
		suffix[i] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
	suffix[TMP_SUFFIX] = '\0';
	snprintf(tmp, len, "%s%s", path, suffix);
	return strlen(tmp) < sizeof(ta.sun_path);
}

/* the longest socket path the daemon can bind (its temporary name is TMP_SUFFIX bytes longer) */
static size_t path_max(void)
{
	struct sockaddr_un sa;
	return sizeof(sa.sun_path) - 1 - TMP_SUFFIX;
}

/* Bind a private name 0600 from the start, then rename it over the path. */
static int bind_listen(struct sockfile *sf, char *err, size_t errlen)
{
	sf->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sf->fd < 0)
		return fail(err, errlen, "socket: %s", strerror(errno));
	struct sockaddr_un ta = {.sun_family = AF_UNIX};
	char tmp[sizeof(ta.sun_path) + 32];
	if (!tmp_name(sf->path, tmp, sizeof(tmp)))
		return fail(err, errlen, "%s: socket path too long", sf->path);
	strcpy(ta.sun_path, tmp);
	unlink(tmp);
	mode_t old = umask(0177);
	int r = bind(sf->fd, (struct sockaddr *)&ta, sizeof(ta));
	umask(old);
	if (r < 0)
		return fail(err, errlen, "%s: bind: %s", tmp, strerror(errno));
	if (listen(sf->fd, SOMAXCONN) < 0 || rename(tmp, sf->path) < 0) {
		fail(err, errlen, "%s: %s", sf->path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int sockfile_check_path(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (strlen(path) > path_max()) {
		fail(err, errlen, "%s: socket path longer than %zu bytes", path, path_max());
		return -ENAMETOOLONG;
	}
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return fail(err, errlen, "%s: exists and is not a socket%s", path,
			    S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
	return 0;
}

int sockfile_open(struct sockfile *sf, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	*sf = (struct sockfile){.fd = -1, .lockfd = -1};
	if (strlen(path) > path_max())
		return fail(err, errlen, "%s: socket path longer than %zu bytes", path, path_max());
	strcpy(sa.sun_path, path);
	sf->path = strdup(path);
	if (!sf->path || asprintf(&sf->lock_path, "%s.lock", path) < 0) {
		sf->lock_path = NULL;
		fail(err, errlen, "out of memory");
		goto bad;
	}
	if (take_lock(sf, err, errlen) < 0)
		goto bad;
	struct stat st;
	if (lstat(sf->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fail(err, errlen, "%s: exists and is not a socket%s: refusing to replace it",
			     sf->path, S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
			goto bad;
		}
		if (someone_listens(&sa)) {
			fail(err, errlen, "%s: another process is listening on it", sf->path);
			goto bad;
		}
	}
	if (bind_listen(sf, err, errlen) < 0)
		goto bad;
	return 0;
bad:
	if (sf->fd >= 0)
		close(sf->fd);
	if (sf->lockfd >= 0) { /* ours (a live daemon's lock was never taken): a refused start leaves none */
		unlink(sf->lock_path);
		close(sf->lockfd);
	}
	free(sf->path);
	free(sf->lock_path);
	*sf = (struct sockfile){.fd = -1, .lockfd = -1};
	return -1;
}

int sockfile_inherit(struct sockfile *sf, const char *path, int fd, int lockfd, char *err,
		     size_t errlen)
{
	int type = 0, listening = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(listening);
	*sf = (struct sockfile){.fd = -1, .lockfd = -1};
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l2) < 0 || type != SOCK_STREAM ||
	    !listening || fcntl(lockfd, F_GETFD) < 0)
		return fail(err, errlen, "%s: the listener passed across the re-exec (fd %d, lock %d) "
			    "is not one", path, fd, lockfd);
	sf->path = strdup(path);
	if (!sf->path || asprintf(&sf->lock_path, "%s.lock", path) < 0) {
		free(sf->path);
		sf->path = NULL;
		return fail(err, errlen, "out of memory");
	}
	/*
	 * A record lock survives our exec, so this only confirms it; but a
	 * binary from before record locks held an flock on this file (kept on
	 * it, harmless: only those binaries look at it), and takes it here.
	 */
	if (record_lock(lockfd) < 0) {
		int e = errno;
		free(sf->path);
		free(sf->lock_path);
		*sf = (struct sockfile){.fd = -1, .lockfd = -1};
		return fail(err, errlen, "%s: the lock passed across the re-exec: %s", path,
			    e == EAGAIN || e == EACCES ? "held by another process" : strerror(e));
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	fcntl(lockfd, F_SETFD, FD_CLOEXEC);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	sf->fd = fd;
	sf->lockfd = lockfd;
	return 0;
}

void sockfile_close(struct sockfile *sf)
{
	close(sf->fd);
	unlink(sf->path);
	unlink(sf->lock_path);
	close(sf->lockfd);
	free(sf->path);
	free(sf->lock_path);
	*sf = (struct sockfile){.fd = -1, .lockfd = -1};
}
