/*
 * wait.h - `evmon ctl wait` and `evmon ctl health` (wait.c): wait until
 * services reach a state, on the daemon's event stream; is one healthy.
 *
 * Exit codes: 0 reached (healthy), 1 one can no longer reach it by itself
 * (fatal, exited, stopped, blocked by a dependency, removed; not healthy),
 * 3 the timeout passed (or no daemon).
 */
#ifndef EVMON_CTL_WAIT_H
#define EVMON_CTL_WAIT_H

#include "conn.h"

/* running: starting or running; ready: running; healthy: running and healthy
 * (or no health check); stopped: stopped, exited or fatal; exited: exited or fatal */
enum wait_for { WAIT_RUNNING, WAIT_READY, WAIT_HEALTHY, WAIT_STOPPED, WAIT_EXITED };

/* The target named s, or -1. */
int ctl_wait_target(const char *s);
/* Wait up to c->timeout seconds for every service of names to reach t. */
int ctl_wait(struct ctl *c, char **names, int n, enum wait_for t);
/* 0 if name is healthy (or ready, without a health check), else 1 (3: no daemon). */
int ctl_health(struct ctl *c, const char *name);

#endif
