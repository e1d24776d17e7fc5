/*
 * logfile.c - the services' log files (see logfile.h).
 *
 * Safety: the directory is opened once (O_DIRECTORY|O_NOFOLLOW) and checked:
 * not writable by every user unless sticky, owned by root when we are root.
 * Every file is created relative to that fd with O_NOFOLLOW (a symlink
 * planted as NAME.log is refused, not followed) and O_NONBLOCK (a FIFO
 * planted there cannot block the open), then fstat'ed: a regular file,
 * ours, with one link (a hard link to someone else's file is refused).
 * Rotation renames within the directory fd, so a directory swapped under
 * us cannot redirect it.
 *
 * Descriptors: a file is open only while output flows into it. It is
 * closed after IDLE_MS without writes (one timer, armed only while some
 * file is open) and at most MAX_OPEN files are open at once (the least
 * recently written is closed first), so 10,000 logged services do not hold
 * 10,000 files.
 *
 * Whole lines only: a write cut short (a full disk) is cut back out of the
 * file, so the next line, or the note of what was discarded, starts a line.
 *
 * Writes are synchronous and whole: the page cache takes them, and when it
 * cannot keep up the write blocks, the daemon reads the service's pipe less
 * often, and the service blocks on its own full pipe. That is the
 * backpressure; nothing is queued here.
 */
#include "logfile.h"

#include "fdreserve.h"
#include "hashmap.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define IDLE_MS 5000
#define MAX_OPEN 256
#define RETRY_MS 5000
#define DIR_CHECK_MS 1000
#define NS_PER_MS 1000000ull

struct logfile {
	struct logs *L;
	char *name;		/* NAME.log, in the log directory */
	char *service;		/* for reports */
	unsigned refs;
	int fd;			/* -1 while closed */
	uint64_t size;		/* of the open file: fstat at open, then our writes */
	uint64_t max_bytes;
	unsigned backups;
	uint64_t last_write;	/* loop time (ns) of the last write or open */
	bool failing;		/* output is being discarded */
	bool partial;		/* the file ends in the middle of a line (unwrite failed) */
	uint64_t retry_at;	/* loop time of the next attempt while failing */
	uint64_t dropped;	/* bytes discarded while failing */
	char *fail_msg;		/* why, while failing */
	uint64_t rotate_retry_at; /* a failed rotation is not retried before this */
	struct logwatch *watchers;
	struct hnode node;	/* in logs.files, by name */
	struct logfile *lprev, *lnext; /* open files, most recently written first */
};

struct logs {
	struct evm_loop *loop;
	logs_report_cb report;
	void *data;
	char *dir;		/* the configured path, or NULL */
	int dirfd;		/* -1 when there is none or it failed */
	char dir_msg[300];	/* why it failed */
	int dir_err;
	uint64_t dir_retry_at;
	dev_t dir_dev;		/* the directory held, to see it moved or removed */
	ino_t dir_ino;
	mode_t dir_mode;
	uint64_t dir_checked_at; /* loop time of the last look (check_dir) */
	struct hashmap files;	/* every logfile, by name */
	struct logfile *lru_first, *lru_last;
	unsigned nopen;
	struct evm_timer *idle;
};

static uint64_t now_ns(const struct logs *L)
{
	return evm_loop_now(L->loop);
}

/* ------------------------------------------------------------ directory */

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
		if (e == ELOOP) {
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

static unsigned close_all(struct logs *L);

/*
 * Is the directory we hold still the one at log_dir? Looked at as lines
 * are written, once a second at most. Removed or renamed, it is made again
 * (one level, the mode it had; the checks of open_dir apply) and the next
 * lines create new files there; if that cannot be done, output is counted
 * and discarded as with a missing log_dir, and the directory is tried
 * again every RETRY_MS. A directory put in its place is used as it is.
 */
static void check_dir(struct logs *L)
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
	close_all(L);
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

/* ------------------------------------------------------------ open files */

static void lru_unlink(struct logfile *f)
{
	struct logs *L = f->L;
	if (f->lprev)
		f->lprev->lnext = f->lnext;
	else
		L->lru_first = f->lnext;
	if (f->lnext)
		f->lnext->lprev = f->lprev;
	else
		L->lru_last = f->lprev;
	f->lprev = f->lnext = NULL;
}

static void lru_front(struct logfile *f)
{
	struct logs *L = f->L;
	f->lnext = L->lru_first;
	if (f->lnext)
		f->lnext->lprev = f;
	else
		L->lru_last = f;
	L->lru_first = f;
}

static void close_file(struct logfile *f)
{
	if (f->fd < 0)
		return;
	close(f->fd);
	fdres_take();
	f->fd = -1;
	lru_unlink(f);
	f->L->nopen--;
}

static void on_idle(struct evm_timer *t, void *data);

static void arm_idle(struct logs *L)
{
	if (L->idle || !L->lru_last)
		return;
	uint64_t now = now_ns(L), due = L->lru_last->last_write + IDLE_MS * NS_PER_MS;
	uint64_t ms = due > now ? (due - now + NS_PER_MS - 1) / NS_PER_MS : 0;
	if (evm_timer_add(L->loop, ms, on_idle, L, &L->idle) < 0)
		L->idle = NULL; /* out of memory: files stay open until the next one opens */
}

static void on_idle(struct evm_timer *t, void *data)
{
	struct logs *L = data;
	(void)t;
	L->idle = NULL;
	uint64_t now = now_ns(L);
	while (L->lru_last && L->lru_last->last_write + IDLE_MS * NS_PER_MS <= now)
		close_file(L->lru_last);
	arm_idle(L);
}

static void tell(struct logfile *f, int error, const char *msg)
{
	if (f->L->report)
		f->L->report(f->service, f->name, error, msg, f->L->data);
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
static int open_checked(struct logs *L, const char *name, int flags, char *msg, size_t len)
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
			close_file(L->lru_last); /* its descriptor goes back to the reserve... */
			fdres_give();		 /* ...and comes out for us */
		} else if (!fdres_give()) {
			break;
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
		snprintf(why, sizeof(why), " has %lu hard links: refusing to write through them",
			 (unsigned long)st.st_nlink);
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

/* *done: how much went in, also when it fails (a full disk takes part of a write) */
static int write_all(int fd, struct iovec *iov, int cnt, size_t *done)
{
	*done = 0;
	while (cnt) {
		ssize_t w = writev(fd, iov, cnt);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		*done += (size_t)w;
		size_t k = (size_t)w;
		while (cnt && k >= iov->iov_len) {
			k -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= k;
		}
	}
	return 0;
}

/*
 * A write that failed half-way left part of a line: cut the file back to
 * where the write began, so it holds whole lines only (no one else appends
 * to it). Should that fail too, the next line written starts a line of its own.
 */
static void unwrite(struct logfile *f, size_t done)
{
	struct stat st;
	if (!done)
		return;
	if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size >= done &&
	    ftruncate(f->fd, st.st_size - (off_t)done) == 0)
		return;
	f->partial = true;
}

/* Start discarding (or keep on): report once per episode, try again later. */
static void fail(struct logfile *f, int error, const char *msg)
{
	close_file(f);
	f->retry_at = now_ns(f->L) + RETRY_MS * NS_PER_MS;
	if (f->failing)
		return;
	f->failing = true;
	f->dropped = 0;
	free(f->fail_msg);
	f->fail_msg = strdup(msg);
	char full[512];
	snprintf(full, sizeof(full), "%s: output is discarded until it can be written", msg);
	tell(f, error ? error : -EIO, full);
}

static void notify(struct logfile *f, const char *p, size_t n)
{
	for (struct logwatch *w = f->watchers, *next; w; w = next) {
		next = w->next; /* a watcher may unwatch itself */
		w->cb(w, p, n);
	}
}

/* The line that ends an episode: how much was lost, and why. */
static size_t discarded_note(const struct logfile *f, char *line, size_t len)
{
	char t[40];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int n = snprintf(line, len, "%s evmon: %llu bytes of output were discarded: %s\n",
			 proto_time(&ts, t, sizeof(t)), (unsigned long long)f->dropped,
			 f->fail_msg ? f->fail_msg : "?");
	if (n < 0)
		return 0;
	if ((size_t)n >= len) { /* cut: still one line */
		n = (int)len - 1;
		line[n - 1] = '\n';
	}
	return (size_t)n;
}

static void end_episode(struct logfile *f)
{
	char m[400];
	f->failing = false;
	free(f->fail_msg);
	f->fail_msg = NULL;
	snprintf(m, sizeof(m), "%s/%s: writing again; %llu bytes of output were discarded",
		 f->L->dir, f->name, (unsigned long long)f->dropped);
	tell(f, 0, m);
}

/*
 * p[0..n) (whole lines) in one write, after the note of an episode that
 * ends: note and lines go in together or not at all, so a disk with room
 * for the note only (what a cut-back write left in its last block) goes on
 * with the same episode instead of ending it and starting another.
 */
static int append(struct logfile *f, const char *p, size_t n)
{
	char note[400];
	struct iovec iov[3];
	int cnt = 0;
	size_t nlen = f->failing ? discarded_note(f, note, sizeof(note)) : 0, done;
	if (f->partial)
		iov[cnt++] = (struct iovec){.iov_base = (char *)"\n", .iov_len = 1};
	if (nlen)
		iov[cnt++] = (struct iovec){.iov_base = note, .iov_len = nlen};
	iov[cnt++] = (struct iovec){.iov_base = (char *)p, .iov_len = n};
	int r = write_all(f->fd, iov, cnt, &done);
	if (r < 0) {
		unwrite(f, done);
		char msg[300];
		snprintf(msg, sizeof(msg), "%s/%s: write: %s", f->L->dir, f->name, strerror(-r));
		fail(f, r, msg);
		return r;
	}
	if (f->partial)
		notify(f, "\n", 1);
	f->partial = false;
	f->size += done;
	f->last_write = now_ns(f->L);
	if (f->L->lru_first != f) {
		lru_unlink(f);
		lru_front(f);
	}
	if (nlen) {
		notify(f, note, nlen);
		end_episode(f);
	}
	notify(f, p, n);
	return 0;
}

static int open_for_append(struct logfile *f)
{
	struct logs *L = f->L;
	if (f->failing && now_ns(L) < f->retry_at)
		return -EAGAIN;
	char msg[400];
	int fd = open_checked(L, f->name, O_WRONLY | O_APPEND | O_CREAT, msg, sizeof(msg));
	if (fd < 0) {
		fail(f, fd, msg);
		return fd;
	}
	struct stat st;
	f->size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	if (!f->size)
		f->partial = false; /* a new file */
	if (L->nopen >= MAX_OPEN)
		close_file(L->lru_last);
	f->fd = fd;
	f->last_write = now_ns(L);
	lru_front(f);
	L->nopen++;
	arm_idle(L);
	return 0; /* an episode ends with the next write (append) */
}

/* Make room: NAME.log.(N-1) -> .N, ..., NAME.log -> .1; or truncate with no backups. */
static int rotate(struct logfile *f)
{
	struct logs *L = f->L;
	char a[512], b[512], msg[700];
	int e = 0;
	if (f->backups == 0) {
		if (ftruncate(f->fd, 0) == 0) {
			f->size = 0;
			f->partial = false;
			return 0;
		}
		e = errno;
		snprintf(msg, sizeof(msg), "%s/%s: cannot truncate it: %s", L->dir, f->name, strerror(e));
	}
	for (unsigned i = f->backups; !e && i > 1; i--) {
		snprintf(a, sizeof(a), "%s.%u", f->name, i - 1);
		snprintf(b, sizeof(b), "%s.%u", f->name, i);
		if (renameat(L->dirfd, a, L->dirfd, b) < 0 && errno != ENOENT) {
			e = errno;
			snprintf(msg, sizeof(msg), "%s/%s: cannot rotate it: rename %s: %s", L->dir,
				 f->name, a, strerror(e));
		}
	}
	if (!e) {
		snprintf(b, sizeof(b), "%s.1", f->name);
		if (renameat(L->dirfd, f->name, L->dirfd, b) < 0 && errno != ENOENT) {
			e = errno;
			snprintf(msg, sizeof(msg), "%s/%s: cannot rotate it: %s", L->dir, f->name,
				 strerror(e));
		}
	}
	if (e) {
		/* keep appending rather than lose lines; say so once per attempt */
		f->rotate_retry_at = now_ns(L) + RETRY_MS * NS_PER_MS;
		tell(f, -e, msg);
		return -e;
	}
	close_file(f); /* the next write creates NAME.log */
	return 0;
}

/* How much of p[0..n) (whole lines) goes into the current file; 0: rotate first. */
static size_t fit(const struct logfile *f, const char *p, size_t n)
{
	if (!f->max_bytes || f->size + n <= f->max_bytes || now_ns(f->L) < f->rotate_retry_at)
		return n;
	size_t room = f->size < f->max_bytes ? (size_t)(f->max_bytes - f->size) : 0;
	const char *nl = room ? memrchr(p, '\n', room) : NULL;
	if (nl)
		return (size_t)(nl - p) + 1;
	if (f->size)
		return 0;
	/* an empty file takes one line, however long */
	nl = memchr(p, '\n', n);
	return nl ? (size_t)(nl - p) + 1 : n;
}

void logfile_write(struct logfile *f, const char *p, size_t n)
{
	check_dir(f->L);
	while (n) {
		if (f->fd < 0 && open_for_append(f) < 0) {
			f->dropped += n;
			return;
		}
		size_t k = fit(f, p, n);
		struct stat st;
		if (k < n && fstat(f->fd, &st) == 0 && (uint64_t)st.st_size != f->size) {
			/* truncated behind our back (logrotate's copytruncate): count again */
			f->size = (uint64_t)st.st_size;
			k = fit(f, p, n);
		}
		if (k == 0) {
			if (rotate(f) == 0)
				continue;
			k = n;
		}
		if (append(f, p, k) < 0) {
			f->dropped += n;
			return;
		}
		p += k;
		n -= k;
	}
}

int logfile_open_read(struct logfile *f, unsigned backup, char *err, size_t errlen)
{
	char name[512];
	if (backup)
		snprintf(name, sizeof(name), "%s.%u", f->name, backup);
	else
		snprintf(name, sizeof(name), "%s", f->name);
	return open_checked(f->L, name, O_RDONLY, err, errlen);
}

/* ------------------------------------------------------------- the table */

struct logfile *logfile_get(struct logs *L, const char *name, const char *service)
{
	struct hnode *n = hmap_get(&L->files, name);
	if (n) {
		struct logfile *f = HMAP_ENTRY(n, struct logfile, node);
		f->refs++;
		return f;
	}
	struct logfile *f = calloc(1, sizeof(*f));
	if (!f || !(f->name = strdup(name)) || !(f->service = strdup(service)) ||
	    hmap_add(&L->files, &f->node, f->name) < 0) {
		if (f) {
			free(f->name);
			free(f->service);
		}
		free(f);
		return NULL;
	}
	f->L = L;
	f->refs = 1;
	f->fd = -1;
	f->backups = 5;
	return f;
}

struct logfile *logfile_ref(struct logfile *f)
{
	f->refs++;
	return f;
}

void logfile_put(struct logfile *f)
{
	if (!f || --f->refs > 0)
		return;
	struct logs *L = f->L;
	close_file(f);
	hmap_del(&L->files, &f->node);
	free(f->name);
	free(f->service);
	free(f->fail_msg);
	free(f);
}

const char *logfile_name(const struct logfile *f)
{
	return f->name;
}

void logfile_set_limits(struct logfile *f, uint64_t max_bytes, unsigned backups)
{
	f->max_bytes = max_bytes;
	f->backups = backups;
}

unsigned logfile_backups(const struct logfile *f)
{
	return f->backups;
}

void logfile_watch(struct logfile *f, struct logwatch *w)
{
	w->prev = NULL;
	w->next = f->watchers;
	if (w->next)
		w->next->prev = w;
	f->watchers = w;
}

void logfile_unwatch(struct logfile *f, struct logwatch *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		f->watchers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

/* ------------------------------------------------------------- the whole */

struct logs *logs_new(struct evm_loop *loop, logs_report_cb report, void *data)
{
	struct logs *L = calloc(1, sizeof(*L));
	if (!L)
		return NULL;
	L->loop = loop;
	L->report = report;
	L->data = data;
	L->dirfd = -1;
	snprintf(L->dir_msg, sizeof(L->dir_msg), "no log_dir configured");
	L->dir_err = -ENOENT;
	return L;
}

static unsigned close_all(struct logs *L)
{
	unsigned n = L->nopen;
	while (L->lru_last)
		close_file(L->lru_last);
	/* a file that failed is tried again at its next write */
	for (struct hnode *h = hmap_next(&L->files, NULL); h; h = hmap_next(&L->files, h)) {
		struct logfile *f = HMAP_ENTRY(h, struct logfile, node);
		f->retry_at = f->rotate_retry_at = 0;
	}
	L->dir_retry_at = 0;
	return n;
}

int logs_set_dir(struct logs *L, const char *path, char *err, size_t errlen)
{
	close_all(L);
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
	unsigned n = close_all(L);
	if (!L->dir)
		return (int)n;
	int r = open_dir(L);
	if (r < 0) {
		snprintf(err, errlen, "%s", L->dir_msg);
		return r;
	}
	return (int)n;
}

bool logs_close_one(struct logs *L)
{
	if (!L->lru_last)
		return false;
	close_file(L->lru_last);
	return true;
}

const char *logs_dir(const struct logs *L)
{
	return L->dir;
}

void logs_free(struct logs *L)
{
	if (!L)
		return;
	close_all(L);
	if (L->idle)
		evm_timer_cancel(L->idle);
	if (L->dirfd >= 0)
		close(L->dirfd);
	/* files still referenced here are a bug of the caller; free them anyway */
	for (struct hnode *n = hmap_next(&L->files, NULL), *next; n; n = next) {
		struct logfile *f = HMAP_ENTRY(n, struct logfile, node);
		next = hmap_next(&L->files, n);
		free(f->name);
		free(f->service);
		free(f->fail_msg);
		free(f);
	}
	hmap_clear(&L->files);
	free(L->dir);
	free(L);
}
