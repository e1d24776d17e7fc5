/*
 * conn.h - `evmon ctl`'s connection to the daemon (conn.c): connect, send
 * one request, read the answer's lines.
 */
#ifndef EVMON_CTL_CONN_H
#define EVMON_CTL_CONN_H

#include "cjson.h"
#include "proto.h"

#include <stdbool.h>
#include <stddef.h>

#define CTL_EXIT_NODAEMON 3 /* no daemon to talk to, or the connection broke */

struct ctl {
	const char *socket;
	bool json;
	double timeout; /* seconds to wait for services with start/stop/restart; 0: no wait */
	bool timeout_set; /* -t given: also how long another command waits for the answer */
	int fd;
	struct linebuf in;
	size_t last;	/* bytes of in taken by the line ctl_read_line returned */
	size_t lines;	/* lines read on this connection (an answer came) */
	/* why the default socket's directory is not used (not ours, not private), or
	 * NULL: said at the connection, so each command fails as with no daemon */
	const char *refused;
	bool watch_out; /* a read ends (-3) when stdout is a pipe that is over (out_gone) */
};

/*
 * Connect, send req (taken), read the answer into *resp (a JSON object;
 * *raw is its line, valid until the next read). Returns 0, or the exit
 * code after saying what went wrong on stderr.
 */
int ctl_call(struct ctl *c, cJSON *req, cJSON **resp, const char **raw, int timeout_ms);

/*
 * Read one line into *line (NUL-terminated in the buffer, valid until the
 * next call). timeout_ms < 0: forever. 0 ok, -1 error or EOF (reported),
 * -3 stdout's reader gone (with watch_out; not reported).
 */
int ctl_read_line(struct ctl *c, char **line, int timeout_ms);
/* The same, but a timeout returns -2 and says nothing. */
int ctl_read_line_quiet(struct ctl *c, char **line, int timeout_ms);
/* Send req (taken) on the connection ctl_call opened: 0, or -1 (said on stderr). */
int ctl_send(struct ctl *c, cJSON *req);

#endif
