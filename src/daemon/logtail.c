/*
 * logtail.c - `evmon ctl logs` (see logtail.h).
 *
 * The tail is a list of file ranges fixed when the request arrives (the
 * file as it is then, and backups when it has too few lines), read as the
 * client takes them, so a long tail is never copied into memory. What is
 * written afterwards arrives through a logwatch: the daemon writes its
 * files itself, on this one thread, so nothing falls between the ranges
 * and the watch, and nothing is sent twice. Live bytes wait in a buffer
 * bounded by client_buffer while the tail is being sent or the client is
 * slow; a client that falls further behind is dropped, never waited for.
 */
#include "logtail.h"

#include "fdreserve.h"
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 16 /* the current file and up to 15 backups */
/*
 * The search for where the last N lines start reads backwards, on the
 * loop: at most this many bytes per request (a 1 GB log asked for a
 * billion lines stalled every client for a second). A tail that needs
 * more starts at the first line within the window.
 */
#define TAIL_SCAN_MAX (16 << 20)

struct seg {
	int fd;
	off_t off, end;
};

struct logtail {
	struct logwatch w; /* first: the watch callback finds us from it */
	struct client *cl;
	struct logfile *file;
	struct seg segs[MAX_FILES];
	size_t nsegs, cur;
	struct linebuf pending;
	size_t max_pending;
	bool follow, watching;
};

/* Descriptors held by tails, all clients together, and their bound (set_cap). */
static unsigned tail_fds, tail_fds_max;

static void set_cap(void)
{
	struct rlimit rl;
	if (tail_fds_max)
		return;
	tail_fds_max = 4 * MAX_FILES;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / 4 > tail_fds_max)
		tail_fds_max = (unsigned)(rl.rlim_cur / 4 > 65536 ? 65536 : rl.rlim_cur / 4);
}

static void close_seg(struct seg *s)
{
	if (s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
	tail_fds--;
	fdres_take();
}

/* The start of the first line that begins at or after pos (a bounded look ahead), else pos. */
static off_t first_line_from(int fd, off_t pos, off_t end)
{
	char buf[4096];
	ssize_t r = pos < end ? pread(fd, buf, sizeof(buf), pos) : 0;
	char *nl = r > 0 && pos > 0 ? memchr(buf, '\n', (size_t)r) : NULL;
	return nl && pos + (nl - buf) + 1 < end ? pos + (nl - buf) + 1 : pos;
}

/*
 * Where the last *need lines of fd (end bytes long) start; *need is left
 * with the number of lines still missing (0 when found). *budget: bytes
 * it may still read; when they run out the tail starts after the first
 * newline read (or where the reading stopped) and *need is 0.
 */
static off_t tail_start(int fd, off_t end, unsigned long *need, size_t *budget)
{
	char buf[65536];
	off_t pos = end;
	/*
	 * More lines asked than the file has bytes, and too many bytes to
	 * count its lines within the budget: all of it. *need stays an upper
	 * bound (a backup before it may give a few lines more than asked for
	 * a tail of over TAIL_SCAN_MAX lines, where "all" was meant).
	 */
	if (*need > (unsigned long)end && (size_t)end > *budget)
		return 0;
	while (pos > 0 && *need) {
		if (!*budget) {
			*need = 0;
			return first_line_from(fd, pos, end);
		}
		size_t k = pos > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)pos;
		if (k > *budget)
			k = *budget;
		*budget -= k;
		off_t at = pos - (off_t)k;
		if (pread(fd, buf, k, at) != (ssize_t)k)
			return pos; /* shrank under us: what we scanned is the tail */
		for (size_t i = k; i-- > 0;) {
			/* a newline ends a line; the line after it starts at i + 1 (the last one ends the file) */
			if (buf[i] != '\n' || at + (off_t)i == end - 1)
				continue;
			if (--*need == 0)
				return at + (off_t)i + 1;
		}
		pos = at;
	}
	if (end > 0 && *need)
		(*need)--; /* the first line of the file */
	return 0;
}

void logtail_free(struct logtail *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nsegs; i++)
		close_seg(&t->segs[i]);
	if (t->watching)
		logfile_unwatch(t->file, &t->w);
	logfile_put(t->file);
	linebuf_free(&t->pending);
	free(t);
}

int logtail_open(struct logfile *f, unsigned long lines, bool follow, struct logtail **out,
		 char *err, size_t errlen)
{
	struct logtail *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	t->file = logfile_ref(f);
	t->follow = follow;
	struct seg found[MAX_FILES];
	size_t n = 0, budget = TAIL_SCAN_MAX;
	unsigned long need = lines;
	unsigned last = logfile_backups(f);
	if (last > MAX_FILES - 1)
		last = MAX_FILES - 1;
	set_cap();
	for (unsigned b = 0; need && b <= last; b++) {
		if (tail_fds >= tail_fds_max) {
			if (b > 0)
				break; /* a shorter tail, from the files it has */
			snprintf(err, errlen, "too many log readers: their %u open files are the "
				 "limit (a quarter of RLIMIT_NOFILE); try again later", tail_fds);
			logtail_free(t);
			return -EMFILE;
		}
		int fd = logfile_open_read(f, b, err, errlen);
		if (fd == -ENOENT)
			break;
		if (fd < 0) {
			if (b == 0) {
				logtail_free(t);
				return fd;
			}
			break; /* an unreadable backup ends the tail, it does not fail it */
		}
		tail_fds++;
		struct stat st;
		off_t end = fstat(fd, &st) == 0 ? st.st_size : 0;
		found[n].fd = fd;
		found[n].end = end;
		found[n].off = tail_start(fd, end, &need, &budget);
		n++;
	}
	/* oldest first */
	for (size_t i = 0; i < n; i++)
		t->segs[i] = found[n - 1 - i];
	t->nsegs = n;
	*out = t;
	return 0;
}

static bool fill(struct client *cl, size_t want, void *data)
{
	struct logtail *t = data;
	char buf[65536];
	while (want) {
		if (t->cur < t->nsegs) {
			struct seg *s = &t->segs[t->cur];
			if (s->off >= s->end) {
				close_seg(s);
				t->cur++;
				continue;
			}
			size_t k = sizeof(buf) < want ? sizeof(buf) : want;
			if ((off_t)k > s->end - s->off)
				k = (size_t)(s->end - s->off);
			ssize_t r = pread(s->fd, buf, k, s->off);
			if (r <= 0) {
				s->off = s->end; /* truncated under us (no backups): what is gone is gone */
				continue;
			}
			if (control_raw_write(cl, buf, (size_t)r) < 0)
				return false;
			s->off += r;
			want -= (size_t)r < want ? (size_t)r : want;
			continue;
		}
		if (!t->pending.len)
			break;
		size_t k = t->pending.len < want ? t->pending.len : want;
		if (control_raw_write(cl, linebuf_start(&t->pending), k) < 0)
			return false;
		linebuf_consume(&t->pending, k);
		want -= k;
		control_hold_aside(cl, t->pending.len ? t->pending.cap : 0);
	}
	return t->follow || t->cur < t->nsegs || t->pending.len;
}

static void on_data(struct logwatch *w, const char *p, size_t n)
{
	struct logtail *t = (struct logtail *)w;
	if (t->pending.len + n > t->max_pending) {
		char why[96];
		snprintf(why, sizeof(why), "%zu bytes of log output not read", t->pending.len + n);
		control_drop(t->cl, why); /* frees t */
		return;
	}
	if (linebuf_append(&t->pending, p, n) < 0) {
		control_drop(t->cl, "out of memory for its log output");
		return;
	}
	control_raw_kick(t->cl);
	/* what it has not taken counts in events_buffer_total: last, it may drop t->cl */
	control_hold_aside(t->cl, t->pending.len ? t->pending.cap : 0);
}

static void on_gone(void *data)
{
	logtail_free(data);
}

void logtail_start(struct logtail *t, struct client *cl)
{
	t->cl = cl;
	t->max_pending = control_max_pending(cl);
	if (t->follow) {
		t->w.cb = on_data;
		logfile_watch(t->file, &t->w);
		t->watching = true;
	}
	control_raw(cl, fill, on_gone, t);
}
