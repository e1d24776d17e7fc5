/*
 * notifysock.h - the socket services with ready = notify talk to
 * (notifysock.c): the sd_notify protocol, from the manager's side. Not
 * notify.h, which is the daemon talking to its own manager.
 */
#ifndef EVMON_NOTIFYSOCK_H
#define EVMON_NOTIFYSOCK_H

#include <stdbool.h>
#include <sys/types.h>

struct daemon;
struct unit;

/* A unit with ready = notify exists: open the socket if it is not (logged if it cannot be). */
void notifysock_use(struct daemon *d);
/*
 * Before the units are made, the socket of the daemon before us, so that
 * the services it started (their NOTIFY_SOCKET names it) still reach us:
 * fd, kept open across a re-exec (taken on success, else the caller's), or
 * after a crash name, the name it had, bound again: its path (only this
 * daemon's own, the control socket's with ".notify") or an abstract name
 * ("@" and hex digits, as versions before recorded). 0, or -1 (said in the
 * log; the socket is then made at first use).
 */
int notifysock_inherit(struct daemon *d, int fd, const char *name);
/* name is one notifysock_name could have given: an absolute path without spaces
   that fits a socket address, or "@" and 1 to 14 hex digits */
bool notifysock_name_ok(const char *name);
/* The socket, for a re-exec to keep open across the exec, or -1. */
int notifysock_fd(struct daemon *d);
/* NOTIFY_SOCKET's value (a path, or "@..." abstract name), or NULL when there is no socket. */
const char *notifysock_name(struct daemon *d);
/*
 * The unit with ready = notify whose process pid is: by its cgroup when
 * cgroups are on, else by its parents up to the service's main process
 * (which a MAINPID= may have changed). NULL: none.
 */
struct unit *notifysock_unit_of(struct daemon *d, pid_t pid);
/* Read every message queued (up to 1024) now: before a main process's exit is applied. */
void notifysock_drain(struct daemon *d);
/*
 * Descriptors senders passed (a kernel before Linux 6.16) that the closer
 * thread has not closed yet, plus one for a message the taker is taking: a
 * re-exec waits for none (notifysock.c). A take that ended meanwhile has its
 * message applied here (the loop does not run while a re-exec waits).
 */
unsigned long notifysock_closing(struct daemon *d);
/* At a clean exit, every service down, with the control socket's lock held: the socket's file removed. */
void notifysock_remove(struct daemon *d);
void notifysock_close(struct daemon *d);

#endif
