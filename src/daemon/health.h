/*
 * health.h - a service's health check (health.c), with Docker's HEALTHCHECK
 * semantics: health_cmd runs every health_interval while the service's
 * process is up; health_retries failures in a row make it unhealthy, one
 * success healthy; failures during health_start_period do not count until
 * a first success. The status is separate from the service's state:
 *
 *   starting   the process is up, no check has passed yet
 *   healthy    the last check passed
 *   unhealthy  health_retries checks in a row failed (health_action then)
 *
 * The check is health_cmd (a process), or a probe the daemon makes itself
 * (health_tcp, health_http: probe.h), with the same states and actions.
 * A service without a check, or whose process is not up, has no health.
 */
#ifndef EVMON_HEALTH_H
#define EVMON_HEALTH_H

#include "cjson.h"

#include <evmon.h>
#include <stdbool.h>

struct daemon;
struct unit;

enum health_status { HEALTH_NONE = 0, HEALTH_STARTING, HEALTH_HEALTHY, HEALTH_UNHEALTHY };

/* "starting", "healthy", "unhealthy"; NULL for HEALTH_NONE. */
const char *health_status_name(enum health_status s);

/*
 * Follow u->conf's health keys (after the unit's creation and after a
 * reload): a check is set up, changed (from its next run) or dropped.
 */
void health_configure(struct daemon *d, struct unit *u);

/*
 * A state change of u's service (before its record is published): its
 * process came up (checks start, status starting) or went down (the
 * running check is killed, no further one runs).
 */
void health_on_event(struct daemon *d, struct unit *u, const struct evm_event *ev);

/* After the state change's record: a "health" event if the status changed. */
void health_announce(struct daemon *d, struct unit *u);

/* u's health now: HEALTH_NONE without a check or with no process up. */
enum health_status health_of(const struct unit *u);

/* u's failures in a row so far (0 without a check). */
unsigned health_streak(const struct unit *u);
/*
 * u's process was just adopted (a re-exec, or after a crash): its health as
 * the daemon before us knew it (healthy or unhealthy, with its failures in
 * a row), instead of starting again from "starting". Told to no one: it did
 * not change. No-op without a check or with any other status, and for
 * unhealthy with a health_action (which fires when it becomes unhealthy).
 */
void health_resume(struct unit *u, enum health_status st, unsigned streak);

/* Add "health" and "health_check" to u's status record (none without a check). */
void health_status(const struct unit *u, cJSON *o);

/* u's service is let go (replaced or removed): its check stops like at an exit. */
void health_released(struct unit *u);

/* u leaves: its check (if one runs) is killed; nothing of it stays. */
void health_unit_gone(struct daemon *d, struct unit *u);

/* The daemon ends: free what checks still running left behind. */
void health_free_all(struct daemon *d);

/* Checks run and checks failed, for the metrics (0 without a check). */
void health_counts(const struct unit *u, unsigned long long *runs, unsigned long long *failed);

#endif
