/*
 * daemonlog.h - the daemon's own log: one line per event on stderr,
 * "2026-01-31T12:00:00.123Z evmon daemon: service web: starting -> running, pid 42".
 *
 * The lines go through stderr's sink (stdsink.h): a stderr nobody reads
 * never stops the supervisor, and a console line of a service on stderr
 * is never cut by one of these.
 */
#ifndef EVMON_DAEMONLOG_H
#define EVMON_DAEMONLOG_H

void dlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
