/*
 * proto.h - the control protocol shared by `evmon daemon` and `evmon ctl`:
 * JSON lines over a Unix stream socket (docs/PROTOCOL.md), the default
 * socket path, line framing, and the one-line human form of events.
 */
#ifndef EVMON_PROTO_H
#define EVMON_PROTO_H

#include "cjson.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define PROTO_MAX_REQUEST (64 * 1024) /* bytes in one request line, newline excluded */
/* arrays and objects inside one another in a request: cJSON's own limit (CJSON_NESTING_LIMIT) */
#define PROTO_MAX_DEPTH 1000

/*
 * The socket path when none is given: $EVMON_SOCKET, else /run/evmon.sock
 * for root, else $XDG_RUNTIME_DIR/evmon.sock, else evmon.sock in the
 * user's private directory ${TMPDIR:-/tmp}/evmon-UID. Static buffer.
 */
const char *proto_default_socket(void);

/* That private directory when the default socket is in one, else NULL. Static buffer. */
const char *proto_default_dir(void);

/*
 * dir is a directory that the caller's euid owns with mode 0700 (made so
 * when create and it is missing): 0, else -errno with the reason in err
 * (-EPERM: it exists but is not private; -ENOENT: missing).
 */
int proto_private_dir(const char *dir, bool create, char *err, size_t len);

/* "2026-01-31T12:00:00.123Z" into buf (>= 32 bytes); returns buf. */
char *proto_time(const struct timespec *ts, char *buf, size_t len);

/* "1h02m", "3m05s", "12.4s" into buf; returns buf. */
char *proto_duration(uint64_t ms, char *buf, size_t len);

/*
 * How a process ended, into buf: "killed by signal TERM (core dumped)" (sig
 * above 0; sname its name, or NULL or "?" for none: then its number),
 * "exited with code 1" (code 0 or above), else "exited (status unknown)".
 */
void proto_exit_how(int sig, const char *sname, bool core, int code, char *buf, size_t len);

/*
 * The one-line human form of an event object (as streamed by the daemon),
 * without time, into buf: "service web: starting -> running, pid 42".
 */
void proto_event_line(const cJSON *ev, char *buf, size_t len);

/* ------------------------------------------------------- line framing */

/* A growing byte buffer consumed from the front. */
struct linebuf {
	char *data;
	size_t off, len, cap; /* live bytes are data[off .. off+len) */
};

int linebuf_append(struct linebuf *b, const char *p, size_t n); /* 0 or -ENOMEM */
/* Reserve room for n more bytes; returns where to write them, or NULL. */
char *linebuf_space(struct linebuf *b, size_t n);
void linebuf_consume(struct linebuf *b, size_t n);
/* Length of the first line (without '\n'), or -1 if no complete line yet. */
ssize_t linebuf_line(const struct linebuf *b);
static inline char *linebuf_start(const struct linebuf *b)
{
	return b->data + b->off;
}
void linebuf_free(struct linebuf *b);

#endif
