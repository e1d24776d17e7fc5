/*
 * sockfile.h - the control socket's file (sockfile.c): a Unix stream
 * socket bound 0600 under a private name and renamed into place, and a
 * lock file beside it (PATH.lock, a POSIX record lock held for the daemon's
 * lifetime, never by its children) that tells a live daemon from a stale
 * socket. One sockfile a path per process: closing any other descriptor of
 * PATH.lock in this process would drop the lock (sockfile.c).
 */
#ifndef EVMON_SOCKFILE_H
#define EVMON_SOCKFILE_H

#include <stddef.h>

struct sockfile {
	char *path, *lock_path;
	int fd;	    /* listening, non-blocking, close-on-exec */
	int lockfd;
};

/*
 * Take the lock, replace a stale socket (refusing anything else at path),
 * listen. Returns 0, or -1 with the reason in err (nothing is left open).
 */
int sockfile_open(struct sockfile *sf, const char *path, char *err, size_t errlen);

/*
 * Could a daemon serve path? Not if it is too long for a socket address
 * (its temporary name included: -ENAMETOOLONG) or is something else than a
 * socket (-1): 0, or < 0 with the reason in err. For --check; sockfile_open
 * says the same.
 */
int sockfile_check_path(const char *path, char *err, size_t errlen);

/*
 * Take over a listener and its lock kept open across an exec of ourselves
 * (evmon ctl reexec): no moment without a listener. 0, or -1 with err.
 */
int sockfile_inherit(struct sockfile *sf, const char *path, int fd, int lockfd, char *err,
		     size_t errlen);

/* Close the socket and remove both files. */
void sockfile_close(struct sockfile *sf);

#endif
