/*
 * fdreserve.h - descriptors the daemon holds back for its own needs.
 *
 * The library takes a pidfd per running process and every captured service
 * holds a pipe, until RLIMIT_NOFILE is reached; past that the daemon could
 * no longer accept an `evmon ctl` connection nor open a log file. So it
 * holds a few placeholders (/dev/null) and gives one up exactly when it
 * needs a descriptor and none is left; closing one of its own takes a
 * placeholder back, and so does every spawn of a service first: a pidfd
 * would otherwise take for good the descriptor the reserve gave away
 * (a refused client, a restart at the limit). When descriptors are plentiful this costs nothing but
 * the placeholders.
 *
 * A spawn needs no descriptor of its own but the child's pidfd (without
 * one the library watches through SIGCHLD): a service's stdin, and any
 * stream that goes nowhere, is one /dev/null held from the start, so a
 * daemon at its fd limit still starts every service.
 */
#ifndef EVMON_FDRESERVE_H
#define EVMON_FDRESERVE_H

#include <stdbool.h>

/*
 * Before any descriptor of ours: /dev/null on each of 0-2 that whoever
 * started us left closed, so that nothing of ours (the socket, a log file,
 * the loop's) lands there, to become a service's inherited stdin or what
 * our messages to stderr are written into. Inherited by services and
 * across a re-exec, as 0-2 are.
 */
void fdres_stdio(void);
/* Hold n placeholders (at most 256). */
void fdres_init(unsigned n);
/* Close one placeholder so that the next open succeeds: false when none is left. */
bool fdres_give(void);
/* After closing a descriptor of ours: take placeholders back up to n. */
void fdres_take(void);
void fdres_free(void);
/* Placeholders held now, and how many are wanted (metrics). */
unsigned fdres_held(void);
unsigned fdres_wanted(void);
/* /dev/null, read-write, opened by fdres_init and kept: -1 if that failed. */
int fdres_devnull(void);

#endif
