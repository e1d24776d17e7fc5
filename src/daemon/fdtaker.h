/*
 * fdtaker.h - the threads that take the messages carrying descriptors off
 * the notify socket, in a descriptor table of their own (fdtaker.c): for a
 * kernel before Linux 6.16, whose sockets cannot refuse descriptors.
 */
#ifndef EVMON_FDTAKER_H
#define EVMON_FDTAKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76 /* Linux 6.5; Debian 12's headers lack it */
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

/*
 * The taker for sock (a copy of it goes into its table), started on the
 * first call and kept: 0, or -errno (then for good; sock stays ours).
 */
int fdtaker_start(int sock);
/* No more requests: the socket the taker has a copy of is closed (its threads stay). */
void fdtaker_retire(void);
/* Readable once a request is done (fdtaker_taken reads it); -1 before a start. */
int fdtaker_done_fd(void);
/* Take the message at the socket's head (the caller peeked at it and reads nothing meanwhile). */
void fdtaker_request(void);
/* Whether a request was done, waiting up to timeout_ms for it (0: not at all). */
bool fdtaker_taken(int timeout_ms);
/*
 * Whether the cgroup of the last message's sender is known (its pidfd's,
 * when the taker read it: Linux 6.13; 6.15 for one gone already): then
 * into *cgroup_id.
 */
bool fdtaker_sender_cgroup(uint64_t *cgroup_id);
/* Descriptors taken and not closed yet (a close that waits holds the rest). */
unsigned long fdtaker_closing(void);
/*
 * recvmsg of the message at sock's head (MSG_DONTWAIT, MSG_CMSG_CLOEXEC,
 * MSG_TRUNC) with SO_PASSPIDFD on for it, which is off otherwise before
 * Linux 6.16 (notifysock.c): its length, or -1.
 */
ssize_t fdtaker_recv_with_pidfd(int sock, struct msghdr *mh);
/* Close fd, a descriptor a sender passed: a lingering socket with a reset. */
void fdtaker_close(int fd);

#endif
