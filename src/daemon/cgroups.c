/*
 * cgroups.c - the daemon's cgroup v2 tree (see cgroups.h).
 *
 * Possible when our own cgroup is on a cgroup2 mount (/sys/fs/cgroup, or
 * /sys/fs/cgroup/unified on a hybrid host) and writable: root on the host,
 * systemd's Delegate=yes, a container with its own cgroup namespace.
 *
 * A base left by an earlier run of the same daemon (killed before it could
 * clean up) still holds that run's services: they are killed, or two copies
 * of every service would run (unless a state record lets the next daemon
 * take them over: then only what no record claims is killed, state.c).
 * The base's name comes from the socket, which only one live daemon can
 * hold; but two sockets may map to one name ("/a-b.sock" and "/a/b.sock",
 * a relative path in two directories). So the base says whose it is: its
 * trusted.evmon.socket attribute holds its socket's absolute path, and a
 * base of another socket is never touched, its daemon alive or not (its
 * services are that daemon's to take over). Where the attribute cannot be
 * (not root: trusted.* needs CAP_SYS_ADMIN), a base whose evmon.daemon
 * holds a live evmon daemon not ours is left alone (live_owner).
 */
#include "cgroups.h"

#include "daemonlog.h"
#include "procstat.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define BASE_NAME_MAX 200
#define OWNER_XATTR "trusted.evmon.socket"
#define REMOVE_TIMEOUT_MS 5000
#define RETRY_FIRST_MS 100   /* a removed service's cgroup that still held processes */
#define RETRY_MAX_MS 60000
#define ALL_CONTROLLERS (EVM_CGROUP_CPU | EVM_CGROUP_IO | EVM_CGROUP_MEMORY | EVM_CGROUP_PIDS)

/*
 * The cgroup of a service gone for good that was not empty yet (what a
 * stop of kill_mode process or group left, or one made without a watch):
 * its rmdir is tried again on a timer, backing off; nothing is killed.
 */
struct gone {
	struct gone *next;
	struct cgroups *g;
	struct evm_cgroup *cg;
	struct evm_timer *timer;
	uint64_t delay_ms;
	char name[];
};

struct cgroups {
	struct evm_loop *loop;	 /* of the gone ones' timers (cgroups_service_gone) */
	struct gone *gone;
	struct evm_cgroup *home; /* where the daemon was: it goes back at exit */
	struct evm_cgroup *base; /* evmon.<socket name> */
	struct evm_cgroup *leaf; /* base/evmon.daemon, the daemon itself */
	unsigned controllers;	 /* enabled in the base for the services */
	bool kept;		 /* an earlier run's tree, kept for a takeover */
};

/*
 * "evmon.run-evmon.sock" for /run/evmon.sock (the path with '/' as '-', like
 * systemd's unit names); a long path keeps its end plus a hash of the whole.
 */
static void base_name(const char *socket, char *buf, size_t len)
{
	char esc[BASE_NAME_MAX + 1];
	const char *s = socket;
	while (*s == '/')
		s++;
	size_t n = strlen(s);
	if (n > BASE_NAME_MAX - 20) {
		uint32_t h = 2166136261u; /* FNV-1a */
		for (const char *p = socket; *p; p++)
			h = (h ^ (unsigned char)*p) * 16777619u;
		snprintf(esc, sizeof(esc), "%08x-%s", (unsigned)h, s + n - (BASE_NAME_MAX - 30));
	} else {
		snprintf(esc, sizeof(esc), "%s", s);
	}
	for (char *p = esc; *p; p++)
		if (*p == '/')
			*p = '-';
	snprintf(buf, len, "evmon.%s", esc);
}

/* The socket's absolute path, its directory resolved (the socket may not be made yet). */
static void socket_id(const char *socket, char *buf, size_t len)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(socket, '/'), *name = slash ? slash + 1 : socket;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - socket) : 1, slash ? socket : ".");
	if (!dir[0])
		snprintf(dir, sizeof(dir), "/");
	if (!realpath(dir, real))
		snprintf(real, sizeof(real), "%s", dir);
	int k = snprintf(buf, len, "%s/%s", strcmp(real, "/") ? real : "", name);
	if (k < 0 || (size_t)k >= len) /* past PATH_MAX: the socket could not be bound anyway */
		buf[0] = '\0';
}

/* Is pid running the binary we run (an evmon daemon, as far as one can tell)? */
static bool runs_our_binary(pid_t pid)
{
	char exe[64];
	struct stat a, b;
	snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
	return stat(exe, &a) == 0 && stat("/proc/self/exe", &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/*
 * A process in base/evmon.daemon running our binary that is neither us nor
 * our child (a re-exec keeps its spawn helper), still there after a second
 * (a killed daemon's helper follows it out): a live daemon whose socket
 * maps to this base's name too. Its pid, or 0. (An exec: ready check left
 * by a killed daemon runs there too, another program.)
 */
static pid_t live_owner(struct evm_cgroup *base)
{
	struct evm_cgroup *leaf;
	if (evm_cgroup_create(base, "evmon.daemon", &leaf) < 0)
		return 0;
	pid_t owner = 0, me = getpid();
	for (int tries = 0; tries < 10; tries++) {
		pid_t pids[16];
		int n = evm_cgroup_procs(leaf, pids, 16);
		owner = 0;
		for (int i = 0; i < n && i < 16 && !owner; i++) {
			pid_t parent = 0;
			if (pids[i] != me && proc_stat(pids[i], &parent, NULL) == 0 && parent != me &&
			    runs_our_binary(pids[i]))
				owner = pids[i];
		}
		if (!owner)
			break;
		nanosleep(&(struct timespec){0, 100 * 1000000}, NULL);
	}
	evm_cgroup_free(leaf);
	return owner;
}

/* Kill what an earlier run left in the base, and remove it (made again after). */
static void clean_stale(struct evm_cgroup *base)
{
	if (evm_cgroup_populated(base) > 0) {
		int r = evm_cgroup_kill(base);
		dlog("cgroup %s: processes of an earlier run are still there: killed them%s%s",
		     evm_cgroup_path(base), r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
	}
	int r = evm_cgroup_remove(base, REMOVE_TIMEOUT_MS);
	if (r < 0)
		dlog("cgroup %s: cannot remove what an earlier run left: %s", evm_cgroup_path(base),
		     strerror(-r));
}

/*
 * Are we in cg already (a re-exec, which keeps the tree)? A write to cgroup.procs takes
 * the kernel's cgroup_threadgroup_rwsem for writing even for a process that
 * stays where it is: 10-20 ms here (an RCU grace period), most of a small
 * daemon's re-exec pause.
 */
static bool inside(const struct evm_cgroup *cg)
{
	struct evm_cgroup *self = NULL;
	bool in = evm_cgroup_open_self(&self) == 0 && !strcmp(evm_cgroup_path(self), evm_cgroup_path(cg));
	evm_cgroup_free(self);
	return in;
}

/* The base and the leaf, with the daemon moved in. 0, or -errno with why. */
static int build(struct cgroups *g, const char *socket, bool keep, char *why, size_t whylen)
{
	char name[BASE_NAME_MAX + 16];
	base_name(socket, name, sizeof(name));
	int r = evm_cgroup_create(g->home, name, &g->base);
	if (r < 0) {
		snprintf(why, whylen, "cannot create %s/%s: %s", evm_cgroup_path(g->home), name,
			 strerror(-r));
		return r;
	}
	char id[PATH_MAX], other[PATH_MAX] = "";
	socket_id(socket, id, sizeof(id));
	if (r == 1) {
		ssize_t n = getxattr(evm_cgroup_path(g->base), OWNER_XATTR, other, sizeof(other) - 1);
		pid_t owner = n < 0 ? live_owner(g->base) : 0;
		other[n > 0 ? n : 0] = '\0';
		if (owner || (n > 0 && strcmp(other, id))) {
			char whose[PATH_MAX + 40];
			if (owner)
				snprintf(whose, sizeof(whose), "a live daemon's (pid %d)", (int)owner);
			else
				snprintf(whose, sizeof(whose), "the daemon's of socket %s", other);
			snprintf(why, whylen, "%s is %s: its socket's path maps to this name too (a "
				 "'-' for a '/', or a relative path); not touched: give this daemon "
				 "another socket path, or cgroup = no", evm_cgroup_path(g->base), whose);
			evm_cgroup_free(g->base); /* not ours: cgroups_close would empty it */
			g->base = NULL;
			return -EBUSY;
		}
	}
	if (r == 1 && keep) {
		g->kept = true;
	} else if (r == 1) {
		clean_stale(g->base);
		/* a removed base is made again */
		evm_cgroup_free(g->base);
		g->base = NULL;
		if ((r = evm_cgroup_create(g->home, name, &g->base)) < 0) {
			snprintf(why, whylen, "cannot create %s/%s: %s", evm_cgroup_path(g->home),
				 name, strerror(-r));
			return r;
		}
	}
	setxattr(evm_cgroup_path(g->base), OWNER_XATTR, id, strlen(id), 0); /* best effort: root */
	if ((r = evm_cgroup_create(g->base, "evmon.daemon", &g->leaf)) < 0 ||
	    (!(g->kept && inside(g->leaf)) && (r = evm_cgroup_attach(g->leaf, 0)) < 0)) {
		snprintf(why, whylen, "cannot move the daemon into %s/evmon.daemon: %s",
			 evm_cgroup_path(g->base), strerror(-r));
		return r;
	}
	/* what the base's parent delegates: the services' limits need it */
	unsigned have = 0;
	if (evm_cgroup_controllers(g->base, &have) == 0 && have)
		evm_cgroup_enable(g->base, have & ALL_CONTROLLERS, &g->controllers);
	return 0;
}

/* Why our own cgroup cannot hold the tree, or 0. */
static int unusable(struct cgroups *g, const char *home, char *why, size_t whylen)
{
	char mnt[512];
	int r = evm_cgroup_mount(mnt, sizeof(mnt));
	if (r < 0) {
		snprintf(why, whylen, "no cgroup2 mount (cgroup v1 only?): %s", strerror(-r));
		return r;
	}
	if (home && (r = evm_cgroup_open(home, &g->home)) < 0) {
		snprintf(why, whylen, "cgroup %s: %s", home, strerror(-r));
		return r;
	}
	if (!home && (r = evm_cgroup_open_self(&g->home)) < 0) {
		snprintf(why, whylen, "our own cgroup is not visible under %s: %s", mnt, strerror(-r));
		return r;
	}
	if ((r = evm_cgroup_writable(g->home)) < 0) {
		snprintf(why, whylen, "our cgroup %s is not writable: %s%s", evm_cgroup_path(g->home),
			 strerror(-r), r == -EROFS ? " (mounted read-only)" : " (systemd: Delegate=yes)");
		return r;
	}
	return 0;
}

bool cgroups_possible(enum cgroup_mode mode)
{
	if (mode == CGROUP_NO)
		return false;
	struct cgroups g = {0};
	char why[256];
	bool ok = unusable(&g, NULL, why, sizeof(why)) == 0;
	evm_cgroup_free(g.home);
	return ok;
}

int cgroups_open(enum cgroup_mode mode, const char *socket, const char *home, bool keep,
		 struct cgroups **out, char *why, size_t whylen)
{
	*out = NULL;
	why[0] = '\0';
	if (mode == CGROUP_NO)
		return 0;
	struct cgroups *g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(why, whylen, "out of memory");
		return mode == CGROUP_YES ? -1 : 0;
	}
	int r = unusable(g, home, why, whylen);
	if (r == 0)
		r = build(g, socket, keep, why, whylen);
	if (r < 0) {
		cgroups_close(g);
		return mode == CGROUP_YES ? -1 : 0;
	}
	*out = g;
	return 0;
}

const char *cgroups_base(const struct cgroups *g)
{
	return g ? evm_cgroup_path(g->base) : NULL;
}

const char *cgroups_home(const struct cgroups *g)
{
	return g ? evm_cgroup_path(g->home) : NULL;
}

bool cgroups_kept(const struct cgroups *g)
{
	return g && g->kept;
}

/* "web.service" -> "web", "_cgroup.x.service" -> "cgroup.x" (cgroups_service); NULL: not one */
static const char *unit_of(const char *dir, char *buf, size_t len)
{
	size_t n = strlen(dir);
	if (n <= 8 || strcmp(dir + n - 8, ".service") || n - 8 >= len)
		return NULL;
	if (!strncmp(dir, "_cgroup.", 8))
		dir++, n--;
	memcpy(buf, dir, n - 8);
	buf[n - 8] = '\0';
	return buf;
}

void cgroups_sweep(struct cgroups *g, int (*decide)(const char *unit, void *data), void *data)
{
	DIR *dir = g ? opendir(evm_cgroup_path(g->base)) : NULL;
	struct dirent *e;
	char name[300];
	while (dir && (e = readdir(dir))) {
		const char *unit = e->d_type == DT_DIR ? unit_of(e->d_name, name, sizeof(name)) : NULL;
		int what = unit ? decide(unit, data) : CGROUPS_SWEEP_KEEP;
		struct evm_cgroup *cg;
		if (what == CGROUPS_SWEEP_KEEP || evm_cgroup_create(g->base, e->d_name, &cg) < 0)
			continue;
		if (evm_cgroup_populated(cg) > 0 && evm_cgroup_kill(cg) >= 0)
			dlog("cgroup %s: processes of an earlier run no record claims: killed them",
			     evm_cgroup_path(cg));
		if (what == CGROUPS_SWEEP_REMOVE)
			evm_cgroup_remove(cg, REMOVE_TIMEOUT_MS);
		evm_cgroup_free(cg);
	}
	if (dir)
		closedir(dir);
}

unsigned cgroups_controllers(const struct cgroups *g)
{
	return g ? g->controllers : 0;
}

/* The directory of service unit: "web.service"; "_cgroup.x.service" (cgroupfs reserves "cgroup.*") */
static void service_dir(const char *unit, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s.service", strncmp(unit, "cgroup.", 7) ? "" : "_", unit);
}

/* Unlink and free e (its timer cancelled unless the loop is gone: loop_gone). */
static void gone_free(struct gone *e, bool loop_gone)
{
	struct gone **p = &e->g->gone;
	while (*p != e)
		p = &(*p)->next;
	*p = e->next;
	if (!loop_gone)
		evm_timer_cancel(e->timer);
	evm_cgroup_free(e->cg);
	free(e);
}

/* One rmdir (nothing waited for): true when e is done with, removed or not removable. */
static bool gone_try(struct gone *e)
{
	int r = evm_cgroup_remove(e->cg, 0);
	if (r == -EBUSY) {
		if (!e->delay_ms)
			dlog("cgroup %s: its service is gone but processes are left in it: removed "
			     "once they are gone", evm_cgroup_path(e->cg));
		return false;
	}
	if (r < 0)
		dlog("cgroup %s: cannot remove it: %s", evm_cgroup_path(e->cg), strerror(-r));
	return true;
}

static void gone_retry(struct evm_timer *t, void *data)
{
	struct gone *e = data;
	(void)t;
	if (gone_try(e)) {
		gone_free(e, false);
		return;
	}
	e->delay_ms = e->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : e->delay_ms * 2;
	if (evm_timer_add(e->g->loop, e->delay_ms, gone_retry, e, &e->timer) < 0)
		gone_free(e, false); /* out of memory: cgroups_close removes it */
}

int cgroups_service(struct cgroups *g, const char *unit, struct evm_cgroup **out)
{
	char name[300];
	service_dir(unit, name, sizeof(name));
	for (struct gone *e = g->gone; e; e = e->next)
		if (!strcmp(e->name, name)) { /* its name is back: its cgroup stays */
			gone_free(e, false);
			break;
		}
	/* made at its first start (or limit): not 3,000 mkdirs before the socket answers */
	return evm_cgroup_create_later(g->base, name, out);
}

void cgroups_service_gone(struct cgroups *g, struct evm_loop *loop, const char *unit)
{
	char name[300];
	service_dir(unit, name, sizeof(name));
	for (struct gone *e = g ? g->gone : NULL; e; e = e->next)
		if (!strcmp(e->name, name))
			return; /* tried again already */
	size_t len = strlen(name) + 1;
	struct gone *e = g ? calloc(1, sizeof(*e) + len) : NULL;
	if (!e)
		return; /* out of memory: cgroups_close removes it */
	memcpy(e->name, name, len);
	e->g = g;
	e->next = g->gone;
	g->gone = e;
	g->loop = loop;
	/* a handle of its own: the unit's may be gone, its service's is the library's */
	if (evm_cgroup_create_later(g->base, name, &e->cg) < 0 || gone_try(e)) {
		gone_free(e, false);
		return;
	}
	e->delay_ms = RETRY_FIRST_MS;
	if (evm_timer_add(loop, e->delay_ms, gone_retry, e, &e->timer) < 0)
		gone_free(e, false);
}

void cgroups_each_gone(const struct cgroups *g, void (*fn)(const char *unit, void *data),
		       void *data)
{
	char unit[300];
	for (const struct gone *e = g ? g->gone : NULL; e; e = e->next)
		if (unit_of(e->name, unit, sizeof(unit)))
			fn(unit, data);
}

void cgroups_close(struct cgroups *g)
{
	if (!g)
		return;
	if (g->leaf && g->home) {
		int r = evm_cgroup_attach(g->home, 0);
		if (r < 0)
			dlog("cgroup: cannot move back to %s: %s", evm_cgroup_path(g->home),
			     strerror(-r));
	}
	if (g->base) {
		/* the services are stopped: what is left escaped their stop */
		int pop = evm_cgroup_populated(g->base);
		if (pop > 0 && evm_cgroup_kill(g->base) >= 0)
			dlog("cgroup %s: killed the processes left in it", evm_cgroup_path(g->base));
		int r = evm_cgroup_remove(g->base, REMOVE_TIMEOUT_MS);
		if (r < 0)
			dlog("cgroup %s: cannot remove it: %s", evm_cgroup_path(g->base), strerror(-r));
	}
	while (g->gone) /* their timers went with the loop; the base's removal took them */
		gone_free(g->gone, true);
	evm_cgroup_free(g->leaf);
	evm_cgroup_free(g->base);
	evm_cgroup_free(g->home);
	free(g);
}
