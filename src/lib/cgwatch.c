/*
 * cgwatch.c - the populated watch: a callback when a cgroup's "populated"
 * flag (cgroup.events) goes 0 or 1.
 *
 * One inotify fd per loop, in epoll, serves every watch: the kernel reports
 * a change of cgroup.events as IN_MODIFY, and we re-read the file to learn
 * the new value. The alternative, one cgroup.events fd per cgroup in epoll
 * with EPOLLPRI (kernfs raises it on change; a pread re-arms it), costs an
 * fd and an epoll registration per cgroup: 10,000 services would add
 * 10,000 fds to a table every direct spawn copies. inotify costs one fd,
 * and a watch descriptor per cgroup (counted against
 * fs.inotify.max_user_watches). Two watches on one file share the kernel's
 * watch descriptor, so the table maps a descriptor to a chain of watches.
 *
 * The kernel sends no IN_IGNORED when a watched cgroup is removed, so a
 * watch lives until evm_cgroup_unwatch, whatever happens to its cgroup.
 *
 * Across an exec of ourselves the inotify fd can be kept (evm_cgroup_watch_fd,
 * evm_cgroup_watch_inherit): its watches live on in the kernel, and so do
 * the changes they saw that were not read yet; the new image takes each
 * watch back by its descriptor and last value (evm__cgroup_watch_kept).
 * The descriptor comes from the old image's state, so it is checked
 * against the fd's own list (/proc/self/fdinfo, read once at the
 * inheritance: each watch's descriptor and inode): one the fd does not
 * have (a stale state: no event would ever come), one taken already, or
 * one on another file than the cgroup's cgroup.events is refused, and the
 * cgroup watched anew. Which file a watch is on is learnt when it is made
 * (an fstat of the fd that reads the first value) and carried in the
 * record (EVM_CGROUP_KEPT_INO), so taking a watch back costs no system
 * call: at 10,000 services a stat each was ~100 ms of the re-exec's pause
 * (an older image's record without it still costs one). The watches no
 * service took back by the
 * loop's first turn (a service gone from the config, a creation that
 * failed) are removed then: else each would count against
 * fs.inotify.max_user_watches until the fd closes, over re-exec after
 * re-exec.
 *
 * Callbacks may unwatch anything: an unwatched watch is marked dead at once,
 * and unlinked and freed through the loop's release queue (when the
 * outermost dispatch ends).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct evm_cgroup_watch {
	struct evm__cgwatchers *set;
	char *events;	/* path of cgroup.events */
	int wd;
	bool populated;
	bool dead;
	bool id_known;
	struct evm__file_id id; /* the file wd watches, when id_known */
	evm_cgroup_cb cb;
	void *data;
	struct evm_cgroup_watch *hnext; /* same bucket */
	struct evm__release rel;
};

/* A watch of the inherited fd, as /proc/self/fdinfo listed it */
struct kept_wd {
	int wd;
	bool taken; /* by a service (evm__cgroup_watch_kept), or removed since */
	struct evm__file_id id;
};

struct evm__cgwatchers {
	struct evm__watch w; /* the inotify fd readable */
	struct evm_loop *loop;
	int ifd;
	struct evm_cgroup_watch **buckets; /* by wd; cap is a power of 2 */
	size_t cap, n;
	/*
	 * ifd was kept across an exec: the watches it had, by wd, until the
	 * loop's first turn (kept_end); NULL after, or when fdinfo could not
	 * be read (then none is taken back: each is watched anew)
	 */
	struct kept_wd *kept;
	size_t nkept;
};

static struct evm_cgroup_watch **bucket(struct evm__cgwatchers *s, int wd)
{
	return &s->buckets[(unsigned)wd & (s->cap - 1)];
}

static int grow(struct evm__cgwatchers *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	struct evm_cgroup_watch **nb = calloc(cap, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++) {
		while (s->buckets[i]) {
			struct evm_cgroup_watch *w = s->buckets[i];
			s->buckets[i] = w->hnext;
			w->hnext = nb[(unsigned)w->wd & (cap - 1)];
			nb[(unsigned)w->wd & (cap - 1)] = w;
		}
	}
	free(s->buckets);
	s->buckets = nb;
	s->cap = cap;
	return 0;
}

static void unlink_watch(struct evm__cgwatchers *s, struct evm_cgroup_watch *w)
{
	for (struct evm_cgroup_watch **pp = bucket(s, w->wd); *pp; pp = &(*pp)->hnext) {
		if (*pp == w) {
			*pp = w->hnext;
			s->n--;
			return;
		}
	}
}

static void free_watch(struct evm_cgroup_watch *w)
{
	free(w->events);
	free(w);
}

/* Re-read the flag; call back if it changed. */
static void check(struct evm_cgroup_watch *w)
{
	int p = evm__cgroup_populated_at(AT_FDCWD, w->events);
	/* a cgroup that is gone holds no process */
	bool now = p > 0;
	if (p < 0 && p != -ENOENT && p != -ENODEV)
		return;
	if (now == w->populated)
		return;
	w->populated = now;
	w->cb(w, now, w->data);
}

static void check_all(struct evm__cgwatchers *s)
{
	for (size_t i = 0; i < s->cap; i++)
		for (struct evm_cgroup_watch *w = s->buckets[i]; w; w = w->hnext)
			if (!w->dead)
				check(w);
}

static void on_inotify(struct evm_loop *loop, struct evm__watch *ww, uint32_t events)
{
	struct evm__cgwatchers *s = (struct evm__cgwatchers *)ww;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	(void)loop;
	(void)events;
	for (;;) {
		ssize_t n = read(s->ifd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				check_all(s); /* events were lost: look at everything */
				continue;
			}
			if (!(ev->mask & IN_MODIFY) || !s->cap)
				continue;
			/* a callback may unlink watches of this chain: they stay, marked dead */
			for (struct evm_cgroup_watch *w = *bucket(s, ev->wd); w; w = w->hnext)
				if (w->wd == ev->wd && !w->dead)
					check(w);
		}
	}
}

static int watchers(struct evm_loop *loop, struct evm__cgwatchers **out)
{
	if (loop->cgw) {
		*out = loop->cgw;
		return 0;
	}
	struct evm__cgwatchers *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->w.cb = on_inotify;
	s->ifd = evm__above_stdio(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
	int r = s->ifd < 0 ? -errno : evm__epoll_add(loop, s->ifd, EPOLLIN, &s->w);
	if (r < 0) {
		if (s->ifd >= 0)
			close(s->ifd);
		free(s);
		return r;
	}
	*out = loop->cgw = s;
	return 0;
}

/* A watch of cg, not in the table yet (w->wd to set): NULL when out of memory. */
static struct evm_cgroup_watch *watch_new(struct evm_loop *loop, struct evm__cgwatchers *s,
					  const struct evm_cgroup *cg, evm_cgroup_cb cb, void *data)
{
	/* no rehash while a dispatch walks a chain: chains just get longer */
	if ((!s->cap || (s->n + 1 > s->cap && !loop->dispatching)) && grow(s) < 0)
		return NULL;
	struct evm_cgroup_watch *w = calloc(1, sizeof(*w));
	size_t len = strlen(cg->path);
	if (!w || !(w->events = malloc(len + sizeof("/cgroup.events")))) {
		free(w);
		return NULL;
	}
	memcpy(w->events, cg->path, len);
	memcpy(w->events + len, "/cgroup.events", sizeof("/cgroup.events"));
	w->set = s;
	w->cb = cb;
	w->data = data;
	return w;
}

static void watch_insert(struct evm__cgwatchers *s, struct evm_cgroup_watch *w,
			 struct evm_cgroup_watch **out)
{
	w->hnext = *bucket(s, w->wd);
	*bucket(s, w->wd) = w;
	s->n++;
	if (out)
		*out = w;
}

int evm_cgroup_watch(struct evm_loop *loop, const struct evm_cgroup *cg, evm_cgroup_cb cb,
		     void *data, struct evm_cgroup_watch **out)
{
	if (!loop || !cg || !cb)
		return -EINVAL;
	struct evm__cgwatchers *s;
	int r = watchers(loop, &s);
	if (r < 0)
		return r;
	struct evm_cgroup_watch *w = watch_new(loop, s, cg, cb, data);
	if (!w)
		return -ENOMEM;
	/*
	 * watch first, then read: a change in between is reported, not lost;
	 * the read's fd says which file is watched (for a later exec)
	 */
	w->wd = inotify_add_watch(s->ifd, w->events, IN_MODIFY);
	r = w->wd < 0 ? -errno : evm__cgroup_populated_id(AT_FDCWD, w->events, &w->id);
	if (r < 0) {
		/* another watch may share the wd: leave the kernel's watch alone */
		free_watch(w);
		return r;
	}
	w->populated = r > 0;
	w->id_known = true;
	watch_insert(s, w, out);
	return 0;
}

static int kept_cmp(const void *a, const void *b)
{
	int x = ((const struct kept_wd *)a)->wd, y = ((const struct kept_wd *)b)->wd;
	return (x > y) - (x < y);
}

static struct kept_wd *kept_find(struct evm__cgwatchers *s, int wd)
{
	struct kept_wd key = {.wd = wd};
	return s->kept ? bsearch(&key, s->kept, s->nkept, sizeof(key), kept_cmp) : NULL;
}

/* s begins with key and hex digits: their value into *v, and what follows; else NULL */
static const char *hex_field(const char *s, const char *key, uint64_t *v)
{
	size_t n = strlen(key);
	if (strncmp(s, key, n))
		return NULL;
	s += n;
	uint64_t x = 0;
	const char *at = s;
	for (;; s++) {
		unsigned d = (unsigned)*s - '0' < 10 ? (unsigned)*s - '0'
			   : (unsigned)(*s | 0x20) - 'a' < 6 ? (unsigned)(*s | 0x20) - 'a' + 10
							     : 16;
		if (d == 16)
			break;
		if (x >> 60)
			return NULL;
		x = x << 4 | d;
	}
	if (s == at)
		return NULL;
	*v = x;
	return s;
}

/*
 * The watches of inotify fd fd, from /proc/self/fdinfo ("inotify wd:%x
 * ino:%lx sdev:%x ..." a line each), sorted by wd: 0, or -errno (no /proc).
 * Parsed by hand: sscanf measures the whole rest of the buffer (strlen)
 * at each call, ~10 us a line at 10,000 watches.
 */
static int kept_read(int fd, struct kept_wd **out, size_t *n)
{
	char path[64], *buf;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	ssize_t len = evm__cg_read_all(AT_FDCWD, path, &buf);
	if (len < 0)
		return (int)len;
	struct kept_wd *k = NULL;
	size_t nk = 0, capk = 0;
	int r = 0;
	for (const char *line = buf; line; line = evm__cg_next_line(line)) {
		uint64_t wd, ino, sdev;
		const char *p = hex_field(line, "inotify wd:", &wd);
		if (!p || wd > INT_MAX || !(p = hex_field(p, " ino:", &ino)) ||
		    !hex_field(p, " sdev:", &sdev) || sdev > UINT32_MAX)
			continue;
		if (nk == capk) {
			capk = capk ? capk * 2 : 64;
			struct kept_wd *nb = realloc(k, capk * sizeof(*k));
			if (!nb) {
				r = -ENOMEM;
				break;
			}
			k = nb;
		}
		/* the kernel's dev_t: 12 bits of major above 20 of minor */
		k[nk++] = (struct kept_wd){
			.wd = (int)wd,
			.id = {.ino = ino, .dev = makedev((unsigned)sdev >> 20, (unsigned)sdev & 0xfffff)},
		};
	}
	free(buf);
	if (r < 0) {
		free(k);
		return r;
	}
	if (nk)
		qsort(k, nk, sizeof(*k), kept_cmp);
	*out = k;
	*n = nk;
	return 0;
}

/* A live watch of ours has this descriptor. */
static bool wd_watched(struct evm__cgwatchers *s, int wd)
{
	for (struct evm_cgroup_watch *w = s->cap ? *bucket(s, wd) : NULL; w; w = w->hnext)
		if (w->wd == wd && !w->dead)
			return true;
	return false;
}

/*
 * The loop's first turn after the inheritance: the services are made.
 * The kept watches none took back are removed from the kernel (not one a
 * watch of ours shares: evm_cgroup_watch of the same file returns it);
 * from now on nothing is taken back.
 */
static void kept_end(struct evm_loop *loop, void *data)
{
	(void)data;
	struct evm__cgwatchers *s = loop->cgw;
	if (!s || !s->kept)
		return;
	for (size_t i = 0; i < s->nkept; i++)
		if (!s->kept[i].taken && !wd_watched(s, s->kept[i].wd))
			inotify_rm_watch(s->ifd, s->kept[i].wd);
	free(s->kept);
	s->kept = NULL;
	s->nkept = 0;
}

int evm__cgroup_watch_kept(struct evm_loop *loop, const struct evm_cgroup *cg,
			   const struct evm_cgroup_kept *rec, evm_cgroup_cb cb, void *data,
			   struct evm_cgroup_watch **out)
{
	struct evm__cgwatchers *s = loop->cgw;
	/*
	 * Not a watch of the inherited fd (none inherited, the list is gone
	 * or unread, the fd does not have it: a stale state), or another
	 * service's already: watch anew
	 */
	struct kept_wd *k = s && rec->wd >= 0 ? kept_find(s, rec->wd) : NULL;
	if (!k || k->taken)
		return -ENOENT;
	/*
	 * Of another file than the record's: watch anew. The record says
	 * which file its watch was made on; without that (an older image's
	 * record), the cgroup's cgroup.events is looked at now.
	 */
	struct evm__file_id id = {rec->ino, rec->dev};
	struct evm_cgroup_watch *w = watch_new(loop, s, cg, cb, data);
	if (!w)
		return -ENOMEM;
	if (!(rec->flags & EVM_CGROUP_KEPT_INO)) {
		struct stat st;
		id.ino = UINT64_MAX; /* gone: none is */
		if (stat(w->events, &st) == 0)
			id = (struct evm__file_id){st.st_ino, st.st_dev};
	}
	if (id.ino != k->id.ino || id.dev != k->id.dev) {
		free_watch(w);
		return -ENOENT;
	}
	k->taken = true;
	/*
	 * The watch never stopped: a change since the old image read the
	 * file waits in the fd, and is compared with this value when read
	 */
	w->wd = rec->wd;
	w->populated = rec->flags & EVM_CGROUP_KEPT_POPULATED;
	w->id = id;
	w->id_known = true;
	watch_insert(s, w, out);
	return 0;
}

int evm__cgwatch_wd(const struct evm_cgroup_watch *w)
{
	return w->dead ? -1 : w->wd;
}

bool evm__cgwatch_id(const struct evm_cgroup_watch *w, struct evm__file_id *id)
{
	if (w->dead || !w->id_known)
		return false;
	*id = w->id;
	return true;
}

int evm_cgroup_watch_fd(struct evm_loop *loop)
{
	if (!loop)
		return -EINVAL;
	return loop->cgw ? loop->cgw->ifd : -ENOENT;
}

int evm_cgroup_watch_inherit(struct evm_loop *loop, int fd)
{
	char what[64];
	char path[64];
	if (!loop || fd < 0)
		return -EINVAL;
	if (loop->cgw)
		return -EBUSY;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, what, sizeof(what) - 1);
	if (n < 0)
		return errno == ENOENT ? -EINVAL : -errno;
	what[n] = '\0';
	if (strcmp(what, "anon_inode:inotify"))
		return -EINVAL;
	struct evm__cgwatchers *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->w.cb = on_inotify;
	s->ifd = fd;
	/* without /proc none is taken back, and none removed: each cgroup is watched anew */
	int r = kept_read(fd, &s->kept, &s->nkept);
	if (r == -ENOMEM) {
		free(s);
		return r;
	}
	int fl = fcntl(fd, F_GETFL);
	r = fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno
							     : evm__epoll_add(loop, fd, EPOLLIN, &s->w);
	if (r == 0 && s->kept && (r = evm_loop_post(loop, kept_end, NULL)) < 0)
		evm__epoll_del(loop, fd);
	if (r < 0) {
		free(s->kept);
		free(s);
		return r;
	}
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC); /* a later exec must not carry it unnamed */
	loop->cgw = s;
	return 0;
}

bool evm_cgroup_watch_populated(const struct evm_cgroup_watch *w)
{
	return w && w->populated;
}

/*
 * Its owner read the flag itself (evm_cgroup_populated) and saw it set. The
 * change that set it may not be reported yet (kernfs notifies from a work
 * item), and if the cgroup empties before that report is read, the kernel's
 * two IN_MODIFY merge into one that reads 0, the value we had: the emptying
 * would be lost. From now on a 0 read is a change, and is reported.
 */
void evm__cgwatch_saw_populated(struct evm_cgroup_watch *w)
{
	if (w && !w->dead)
		w->populated = true;
}

static void watch_released(struct evm__release *r)
{
	struct evm_cgroup_watch *w = evm__container_of(r, struct evm_cgroup_watch, rel);
	unlink_watch(w->set, w);
	free_watch(w);
}

void evm_cgroup_unwatch(struct evm_cgroup_watch *w)
{
	if (!w || w->dead)
		return;
	struct evm__cgwatchers *s = w->set;
	w->dead = true;
	bool shared = false;
	for (struct evm_cgroup_watch *o = *bucket(s, w->wd); o && !shared; o = o->hnext)
		shared = o != w && o->wd == w->wd && !o->dead;
	if (!shared) {
		inotify_rm_watch(s->ifd, w->wd);
		struct kept_wd *k = kept_find(s, w->wd);
		if (k)
			k->taken = true; /* gone from the kernel: no service may take it back now */
	}
	evm__release(s->loop, &w->rel, watch_released);
}

void evm__cgwatch_free_all(struct evm_loop *loop)
{
	struct evm__cgwatchers *s = loop->cgw;
	if (!s)
		return;
	loop->cgw = NULL;
	for (size_t i = 0; i < s->cap; i++) {
		while (s->buckets[i]) {
			struct evm_cgroup_watch *w = s->buckets[i];
			s->buckets[i] = w->hnext;
			free_watch(w);
		}
	}
	free(s->buckets);
	free(s->kept);
	evm__epoll_del(loop, s->ifd);
	close(s->ifd);
	free(s);
}
