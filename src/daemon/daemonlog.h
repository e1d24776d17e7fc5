/*
 * daemonlog.h - the daemon's own log: one line per event on stderr,
 * "2026-01-31T12:00:00.123Z evmon: service web: starting -> running, pid 42".
 *
 * A stderr nobody reads (a full pipe) must not stop the supervisor: lines
 * that cannot be written at once wait in a bounded buffer, flushed from the
 * loop; beyond the bound they are counted and dropped.
 */
#ifndef EVMON_DAEMONLOG_H
#define EVMON_DAEMONLOG_H

#include <evmon.h>

/* Start flushing through the loop (before: lines are written directly). */
void dlog_attach(struct evm_loop *loop);
/* Back to direct writes, flushing what is pending (blocking). */
void dlog_detach(void);

void dlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
