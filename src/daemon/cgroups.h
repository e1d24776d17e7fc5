/*
 * cgroups.h - the daemon's cgroup v2 tree ([evmon] cgroup = auto|yes|no):
 *
 *   <the daemon's own cgroup>/evmon.<socket name>/    the base, ours
 *       evmon.daemon/                               the daemon itself
 *       <service>.service/                          one per service, made at its first start,
 *                                                   removed once a removed service's last copy is gone
 *
 * The daemon moves into the leaf evmon.daemon so the base may enable
 * controllers for the services (the kernel's no-internal-process rule).
 * At exit it moves back, kills whatever is left in the base and removes
 * every cgroup it made: nothing of it stays behind.
 */
#ifndef EVMON_CGROUPS_H
#define EVMON_CGROUPS_H

#include "config.h"

#include <evmon.h>
#include <stdbool.h>
#include <stddef.h>

struct cgroups;

/*
 * Set up the tree for a daemon whose control socket is socket. Returns 0
 * with *out set, or 0 with *out NULL when cgroups are off: mode no, or
 * mode auto and not possible (why says why). Mode yes and not possible:
 * -1, with why. home: the cgroup to go back to at exit, when it is not the
 * one we are in (a re-exec starts in the leaf), else NULL. keep: a tree
 * left by an earlier run is kept (its services are taken over, then
 * cgroups_sweep), else what is in it is killed.
 */
int cgroups_open(enum cgroup_mode mode, const char *socket, const char *home, bool keep,
		 struct cgroups **out, char *why, size_t whylen);

/*
 * Whether cgroups_open could use our own cgroup (a cheap look, before the
 * loop: without cgroups the daemon is a subreaper instead). False for no.
 */
bool cgroups_possible(enum cgroup_mode mode);

/* The path of the cgroup the daemon goes back to at exit. */
const char *cgroups_home(const struct cgroups *g);

/* True when the tree of an earlier run was there and kept. */
bool cgroups_kept(const struct cgroups *g);

/*
 * After a takeover: decide(unit, data) for each service cgroup of the base
 * (unit: the service's name) says what becomes of it and its processes.
 */
enum { CGROUPS_SWEEP_KEEP, CGROUPS_SWEEP_KILL, CGROUPS_SWEEP_REMOVE };
void cgroups_sweep(struct cgroups *g, int (*decide)(const char *unit, void *data), void *data);

/* The base's path, for messages. */
const char *cgroups_base(const struct cgroups *g);

/* The controllers the services' cgroups can use (EVM_CGROUP_* bits). */
unsigned cgroups_controllers(const struct cgroups *g);

/*
 * The cgroup of service unit (opened when it is there, else made at the
 * service's first start or limit): the caller owns *out. 0 or -errno.
 */
int cgroups_service(struct cgroups *g, const char *unit, struct evm_cgroup **out);

/*
 * Service unit is gone for good (no unit of that name, no copy of it still
 * stopping): its cgroup is removed, at once when empty, else tried again on
 * a timer of loop (nothing is killed) until it is, or until cgroups_service
 * asks for that name again. NULL g is a no-op.
 */
void cgroups_service_gone(struct cgroups *g, struct evm_loop *loop, const char *unit);
/*
 * fn(unit, data) for each unit whose cgroup cgroups_service_gone still
 * tries to remove (unit is valid during the call only). NULL g: none.
 */
void cgroups_each_gone(const struct cgroups *g, void (*fn)(const char *unit, void *data),
		       void *data);

/*
 * Back to the daemon's own cgroup; kill what is left; remove the tree. NULL
 * is a no-op. After the loop is freed (the retries' timers went with it).
 */
void cgroups_close(struct cgroups *g);

#endif
