/*
 * logfile.c - the services' log files (see logfile.h): appending, rotation,
 * discarding while a file cannot be written, open files, the table by name.
 *
 * Files are opened only through logdir.c (logs__open_checked: relative to
 * the checked directory fd, nothing planted there followed). Rotation
 * renames within the directory fd, so a directory swapped under us cannot
 * redirect it.
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
#include "logfileint.h"

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

void logs__close_file(struct logfile *f)
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
		logs__close_file(L->lru_last);
	arm_idle(L);
}

static void tell(struct logfile *f, int error, const char *msg)
{
	if (f->L->report)
		f->L->report(f->service, f->name, error, msg, f->L->data);
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
	logs__close_file(f);
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
	int fd = logs__open_checked(L, f->name, O_WRONLY | O_APPEND | O_CREAT, msg, sizeof(msg));
	if (fd < 0) {
		fail(f, fd, msg);
		return fd;
	}
	struct stat st;
	f->size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	if (!f->size)
		f->partial = false; /* a new file */
	if (L->nopen >= MAX_OPEN)
		logs__close_file(L->lru_last);
	f->fd = fd;
	f->last_write = now_ns(L);
	lru_front(f);
	L->nopen++;
	arm_idle(L);
	return 0; /* an episode ends with the next write (append) */
}

/*
 * How many backups NAME.log.1, .2, ... there are in a row, at most backups:
 * from the count kept, up (one fstatat, answered "not there", per rotation
 * while the chain grows). A rotation renames only those, where it renamed
 * all log_backups names, there or not: 1000 renames per rotation for a
 * new log with log_backups = 1000. A hole (a backup deleted by hand) ends
 * the chain: the rotation fills it, and older files keep their names.
 */
static unsigned count_backups(struct logfile *f)
{
	char a[512];
	struct stat st;
	unsigned k = f->chain > 0 ? (unsigned)f->chain : 0;
	if (k > f->backups)
		k = f->backups; /* lowered by a reload: the files beyond it stay as they are */
	for (; k < f->backups; k++) {
		snprintf(a, sizeof(a), "%s.%u", f->name, k + 1);
		if (fstatat(f->L->dirfd, a, &st, AT_SYMLINK_NOFOLLOW) < 0)
			break;
	}
	return k;
}

/* Make room: NAME.log.K -> .K+1, ..., NAME.log -> .1 (K backups there); or truncate with no backups. */
static int rotate(struct logfile *f)
{
	struct logs *L = f->L;
	char a[512], b[512], msg[700];
	int e = 0;
	bool gone = false; /* a file counted was not there: count again next time */
	unsigned k = 0;
	if (f->backups == 0) {
		if (ftruncate(f->fd, 0) == 0) {
			f->size = 0;
			f->partial = false;
			return 0;
		}
		e = errno;
		snprintf(msg, sizeof(msg), "%s/%s: cannot truncate it: %s", L->dir, f->name, strerror(e));
	} else {
		k = count_backups(f);
	}
	for (unsigned i = k < f->backups ? k + 1 : k; !e && i > 1; i--) {
		snprintf(a, sizeof(a), "%s.%u", f->name, i - 1);
		snprintf(b, sizeof(b), "%s.%u", f->name, i);
		if (renameat(L->dirfd, a, L->dirfd, b) == 0)
			continue;
		if (errno == ENOENT) {
			gone = true;
			continue;
		}
		e = errno;
		snprintf(msg, sizeof(msg), "%s/%s: cannot rotate it: rename %s: %s", L->dir, f->name, a,
			 strerror(e));
	}
	if (!e) {
		snprintf(b, sizeof(b), "%s.1", f->name);
		int r = renameat(L->dirfd, f->name, L->dirfd, b);
		if (r < 0 && errno == ENOENT) {
			gone = true; /* removed by hand: .1 is free now */
		} else if (r < 0) {
			e = errno;
			snprintf(msg, sizeof(msg), "%s/%s: cannot rotate it: %s", L->dir, f->name,
				 strerror(e));
		}
	}
	if (e) {
		f->chain = -1;
		/* keep appending rather than lose lines (up to a point); say so once per attempt */
		f->rotate_retry_at = now_ns(L) + RETRY_MS * NS_PER_MS;
		f->rotate_failed = true;
		tell(f, -e, msg);
		return -e;
	}
	f->chain = gone ? -1 : (int)(k < f->backups ? k + 1 : k);
	f->rotate_failed = false;
	logs__close_file(f); /* the next write creates NAME.log */
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
	logs__check_dir(f->L);
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
		/*
		 * No rotation (something in the way: a directory NAME.log.2): lines
		 * go on into the file up to twice log_max_bytes, then are discarded
		 * (counted, said when it ends) rather than fill the disk.
		 */
		if (f->rotate_failed && f->max_bytes && f->size + k > 2 * f->max_bytes) {
			char msg[600];
			snprintf(msg, sizeof(msg), "%s/%s: cannot rotate it, and it is twice "
				 "log_max_bytes", f->L->dir, f->name);
			fail(f, -EFBIG, msg);
			f->dropped += n;
			return;
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
	return logs__open_checked(f->L, name, O_RDONLY, err, errlen);
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
	f->chain = -1;
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
	logs__close_file(f);
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

/*
 * A rotation renames up to log_backups files (1000: some 20 ms): 256 KiB of
 * a fast writer's lines at once into 4 KiB files would be 64 rotations, a
 * second and more with the loop stopped. The rest waits in the pipe, and
 * the writer blocks on it: the same backpressure as a slow disk's.
 */
size_t logfile_burst(const struct logfile *f, size_t most)
{
	return f->max_bytes && f->max_bytes < most ? (size_t)f->max_bytes : most;
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

unsigned logs__close_all(struct logs *L)
{
	unsigned n = L->nopen;
	while (L->lru_last)
		logs__close_file(L->lru_last);
	/* a file that failed is tried again at its next write */
	for (struct hnode *h = hmap_next(&L->files, NULL); h; h = hmap_next(&L->files, h)) {
		struct logfile *f = HMAP_ENTRY(h, struct logfile, node);
		f->retry_at = f->rotate_retry_at = 0;
		f->chain = -1; /* logrotate may have moved them: count again */
	}
	L->dir_retry_at = 0;
	return n;
}

bool logs_close_one(struct logs *L)
{
	if (!L->lru_last)
		return false;
	logs__close_file(L->lru_last);
	return true;
}

void logs_free(struct logs *L)
{
	if (!L)
		return;
	logs__close_all(L);
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
