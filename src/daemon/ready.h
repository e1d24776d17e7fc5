/*
 * ready.h - when a service is ready (ready.c), beyond the library's
 * start_ms: the config's `ready` kinds and what each needs per unit.
 *
 *   ready = started     the library's start_ms (nothing here)
 *   ready = notify      sd_notify READY=1 on the daemon's notify socket
 *                       (notifysock.c), with STATUS=, WATCHDOG=1, ...
 *   ready = fd:N        s6's notification-fd: a newline on fd N
 *   ready = exec:CMD    a check run until it exits 0 (s6-notifyoncheck)
 *
 * The library service is made with EVM_READY_DECLARED for the last three;
 * this file watches for the sign and calls evm_service_ready.
 */
#ifndef EVMON_READY_H
#define EVMON_READY_H

#include "cjson.h"

#include <evmon.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct daemon;
struct unit;
struct ready;

/* The unit's readiness state (none for ready = started); 0 or -ENOMEM. */
int ready_unit_init(struct daemon *d, struct unit *u);
void ready_unit_free(struct unit *u);
/* Its service's environment gets NOTIFY_SOCKET and WATCHDOG_USEC (an array the unit keeps). */
void ready_service_opts(struct daemon *d, struct unit *u, struct evm_service_opts *o);
/* Before each spawn: the notification fd's pipe (fd:N). 0 or -errno with msg. */
int ready_before_spawn(struct unit *u, struct evm_spawn_opts *o, char *msg, size_t len);
/* Every library event of the unit's service: watch from STARTING, stop when it ends. */
void ready_on_event(struct daemon *d, struct unit *u, const struct evm_event *ev);
/*
 * Across a re-exec (reexec.c, takeover.c): the read end of the fd:N pipe of
 * a run not ready yet (ready_pipe_fd: -1 for none), kept open across the
 * exec, and given back to the unit before its process is adopted as
 * STARTING (ready_take_pipe takes fd).
 */
int ready_pipe_fd(const struct unit *u);
void ready_take_pipe(struct unit *u, int fd);
/*
 * Whether a process of u that was not ready when the daemon before us left
 * it can be awaited still: not with fd:N unless its pipe was passed (after a
 * crash it is gone: the process is then taken over as ready).
 */
bool ready_awaitable(const struct unit *u);
/*
 * This run's watchdog period, as WATCHDOG_USEC= set it (ms, 0: none), to
 * the library and noted for the record: ready_watchdog gives it (false when
 * the run kept watchdog_sec), ready_set_watchdog sets it again on a service
 * a re-exec or a crash handed over.
 */
void ready_set_watchdog(struct daemon *d, struct unit *u, uint64_t ms);
bool ready_watchdog(const struct unit *u, uint64_t *ms);
/* The cgroup id of u's run (its cgroup directory's inode), read once a run; 0: none. */
uint64_t ready_cgroup_id(struct unit *u);
/* Its fields in the status record: status_text, notify state. */
void ready_status(const struct unit *u, cJSON *o);

/*
 * A notify message from pid, attributed to u (notifysock.c): READY=1,
 * RELOADING=1, STOPPING=1, STATUS=, MAINPID=, WATCHDOG=1, EXTEND_TIMEOUT_USEC=.
 */
void ready_notify(struct daemon *d, struct unit *u, pid_t pid, char *msg, size_t len, int nfds);
/* The checks still running, at the daemon's end, before the loop is freed. */
void ready_checks_free(void);

#endif
