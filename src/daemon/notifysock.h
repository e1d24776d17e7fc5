/*
 * notifysock.h - the socket services with ready = notify talk to
 * (notifysock.c): the sd_notify protocol, from the manager's side. Not
 * notify.h, which is the daemon talking to its own manager.
 */
#ifndef EVMON_NOTIFYSOCK_H
#define EVMON_NOTIFYSOCK_H

#include <sys/types.h>

struct daemon;
struct unit;

/* A unit with ready = notify exists: open the socket if it is not (logged if it cannot be). */
void notifysock_use(struct daemon *d);
/* NOTIFY_SOCKET's value ("@..." abstract name), or NULL when there is no socket. */
const char *notifysock_name(struct daemon *d);
/*
 * The unit with ready = notify whose process pid is: by its cgroup when
 * cgroups are on, else by its parents up to the service's main process
 * (which a MAINPID= may have changed). NULL: none.
 */
struct unit *notifysock_unit_of(struct daemon *d, pid_t pid);
/* Read every message queued (up to 1024) now: before a main process's exit is applied. */
void notifysock_drain(struct daemon *d);
void notifysock_close(struct daemon *d);

#endif
