/*
 * notify.h - readiness and status for systemd (sd_notify protocol, see
 * notify.c). Without $NOTIFY_SOCKET every call is a no-op.
 */
#ifndef EVMON_NOTIFY_H
#define EVMON_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Read and unset $NOTIFY_SOCKET (and $WATCHDOG_USEC, $WATCHDOG_PID). Returns 1 when notifications will be
 * sent, 0 without the variable, -errno (with err) when it is unusable.
 * Call before any service is spawned.
 */
int notify_init(char *err, size_t errlen);
bool notify_enabled(void);
/* How often to send WATCHDOG=1 (half of $WATCHDOG_USEC), or 0: no watchdog. */
uint64_t notify_watchdog_ms(void);
/* One datagram of KEY=VALUE lines ("READY=1\nSTATUS=..."); never blocks. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with MONOTONIC_USEC= (now) and STATUS=status. */
void notify_reloading(const char *status);
/*
 * Before an exec of ourselves (set): $NOTIFY_SOCKET and the watchdog back in
 * the environment, for the new image's notify_init; after a failed one
 * (!set): out again, before any service can inherit them.
 */
void notify_export(bool set);
void notify_free(void);

#endif
