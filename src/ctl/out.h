/*
 * out.h - `evmon ctl`'s standard output (out.c): a write there that fails
 * ends ctl. A reader gone (EPIPE: `| head -1`) ends it quietly, with the
 * command's own status; any other error (a full disk, EIO) is said on
 * stderr, once, and fails the command.
 */
#ifndef EVMON_CTL_OUT_H
#define EVMON_CTL_OUT_H

#include <stdbool.h>

/*
 * A write to stdout failed with err (0: not known). Returns -EPIPE (the
 * reader went away: stop, say nothing) or -err (said on stderr); the
 * first failure is kept, and said once.
 */
int out_failed(int err);

/* stdout flushed: 0, or out_failed's answer for what went wrong, now or before. */
int out_check(void);

/*
 * 1 when stdout is a pipe, else -1: polled with no events besides (poll
 * skips -1), out_gone(revents) says its reader is gone, so a follower
 * waiting for the next line (events, logs -f) ends at `| head`'s exit, not
 * at its next write.
 */
int out_pipe_fd(void);

/*
 * stdout's revents from such a poll: true when it is over. POLLERR: its
 * reader is gone; POLLHUP: it is a pipe's read end with no writer left,
 * and POLLNVAL: it was closed. The last two stay set: taken as nothing,
 * each poll returned at once (100% CPU until the next line).
 */
bool out_gone(short revents);

/* rc, once stdout is flushed: fail if a write failed, but for a reader gone. */
int out_end(int rc, int fail);

#endif
