/*
 * out.c - write errors on `evmon ctl`'s stdout (see out.h). SIGPIPE is
 * ignored (a closed socket to the daemon is an error to report, not a
 * death), so a reader gone is EPIPE, seen here like any other error.
 */
#include "out.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool failed;
static int failed_err; /* the first failure's errno (0: not known) */

int out_failed(int err)
{
	if (!failed) {
		failed = true;
		failed_err = err;
		if (err == EPIPE)
			; /* `| head`: the reader has what it wanted */
		else if (err)
			fprintf(stderr, "evmon ctl: stdout: %s\n", strerror(err));
		else
			fprintf(stderr, "evmon ctl: stdout: write error\n");
	}
	return failed_err == EPIPE ? -EPIPE : -(failed_err ? failed_err : EIO);
}

int out_check(void)
{
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return failed ? out_failed(0) : 0;
	/*
	 * stdio keeps no errno: a failed flush leaves it set, but a write that
	 * failed earlier (a full buffer flushed mid-printf) and left nothing
	 * buffered behind it is known only by ferror; a pipe with no reader
	 * says so to poll (POLLERR), so `| head` stays quiet then too.
	 */
	int err = errno;
	struct pollfd p = {.fd = 1, .events = 0};
	if (!err && poll(&p, 1, 0) == 1 && (p.revents & POLLERR))
		err = EPIPE;
	return out_failed(err);
}

int out_end(int rc, int fail)
{
	int r = out_check();
	return r && r != -EPIPE ? fail : rc;
}

int out_pipe_fd(void)
{
	struct stat st;
	return fstat(1, &st) == 0 && S_ISFIFO(st.st_mode) ? 1 : -1;
}

bool out_gone(short revents)
{
	return revents & (POLLERR | POLLHUP | POLLNVAL);
}
