/*
 * stdsink.h - the daemon's own stdout and stderr as sinks that never block
 * the loop (stdsink.c). The daemon's log (stderr) and the services'
 * console lines (stdout = console, stderr = console) go through them.
 *
 * A reader that does not keep up (docker logs paused, a pipe nobody reads,
 * a terminal on hold) must not stop the supervisor: what the fd does not
 * take at once waits in a bounded buffer that the loop flushes; beyond the
 * bound whole lines are dropped, counted, and a line says so once the
 * reader has caught up. Lines are never cut or mixed: what one call gives
 * is written, or queued, or dropped, in whole lines and in order.
 */
#ifndef EVMON_STDSINK_H
#define EVMON_STDSINK_H

#include <evmon.h>
#include <stddef.h>
#include <stdint.h>

#define STDSINK_MAX (1u << 20) /* bytes waiting per fd before lines are dropped */

/*
 * Whole lines p[0..n) (p[n-1] == '\n') to fd 1 or 2: as much as it takes
 * now, the rest queued (up to STDSINK_MAX) or dropped and counted.
 */
void stdsink_write(int fd, const char *p, size_t n);

/* Start flushing through the loop (before: what waits is retried at the next write). */
void stdsink_attach(struct evm_loop *loop);
/* Back to direct writes: flush what waits, waiting a little for a slow reader, never forever. */
void stdsink_detach(void);

/*
 * What waits, written now, waiting for a slow reader up to about a second
 * (before an exec of the daemon: the new image does not have it).
 */
void stdsink_flush(void);

/* Bytes dropped on fd (1 or 2) so far (on stdout's count when they are one file). */
uint64_t stdsink_dropped(int fd);

#endif
