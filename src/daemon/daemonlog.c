/*
 * daemonlog.c - the daemon's log lines on stderr (see daemonlog.h).
 *
 * A regular file or a terminal takes writes directly. A pipe or a socket
 * (docker, journald, `| logger`) may be full: a socket gets non-blocking
 * sends; a pipe gets a write only when poll says a slot is free (then a
 * write of at most PIPE_BUF bytes cannot block). The rest waits in a
 * bounded buffer that an EVM_WRITE watcher on fd 2 drains.
 */
#include "daemonlog.h"

#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING (1u << 20)

enum kind { K_UNKNOWN, K_DIRECT, K_PIPE, K_SOCKET };

static struct {
	enum kind kind;
	struct evm_loop *loop;
	struct evm_io *io;
	struct linebuf pending;
	unsigned long dropped;
} L;

static void detect(void)
{
	struct stat st;
	if (fstat(2, &st) < 0)
		L.kind = K_DIRECT;
	else if (S_ISFIFO(st.st_mode))
		L.kind = K_PIPE;
	else if (S_ISSOCK(st.st_mode))
		L.kind = K_SOCKET;
	else
		L.kind = K_DIRECT;
}

/* Write what fd 2 takes now; returns bytes written, or -1 when stderr is gone. */
static ssize_t write_some(const char *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w;
		if (L.kind == K_SOCKET) {
			w = send(2, p + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		} else if (L.kind == K_PIPE) {
			struct pollfd pfd = {.fd = 2, .events = POLLOUT};
			if (poll(&pfd, 1, 0) <= 0 || !(pfd.revents & POLLOUT))
				break;
			size_t k = n - done < PIPE_BUF ? n - done : PIPE_BUF;
			w = write(2, p + done, k);
		} else {
			w = write(2, p + done, n - done);
		}
		if (w > 0)
			done += (size_t)w;
		else if (w < 0 && errno == EINTR)
			continue;
		else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		else
			return -1;
	}
	return (ssize_t)done;
}

static void on_writable(struct evm_io *io, int fd, unsigned revents, void *data);

static void flush_pending(void)
{
	while (L.pending.len) {
		ssize_t w = write_some(linebuf_start(&L.pending), L.pending.len);
		if (w < 0) {
			linebuf_consume(&L.pending, L.pending.len); /* nobody to tell */
			break;
		}
		if (w == 0)
			break;
		linebuf_consume(&L.pending, (size_t)w);
		if (!L.pending.len && L.dropped) {
			char msg[96];
			int n = snprintf(msg, sizeof(msg),
					 "evmon daemon: %lu log lines dropped: stderr was not read\n",
					 L.dropped);
			L.dropped = 0;
			linebuf_append(&L.pending, msg, (size_t)n);
		}
	}
	if (!L.loop)
		return;
	if (L.pending.len && !L.io) {
		if (evm_io_add(L.loop, 2, EVM_WRITE, on_writable, NULL, &L.io) < 0)
			L.io = NULL; /* not pollable: the next line retries */
	} else if (!L.pending.len && L.io) {
		evm_io_free(L.io);
		L.io = NULL;
	}
}

static void on_writable(struct evm_io *io, int fd, unsigned revents, void *data)
{
	(void)io;
	(void)fd;
	(void)data;
	if (revents & (EVM_ERROR | EVM_HANGUP)) {
		linebuf_consume(&L.pending, L.pending.len);
		evm_io_free(L.io);
		L.io = NULL;
		return;
	}
	flush_pending();
}

void dlog(const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	proto_time(&ts, line, 40);
	size_t n = strlen(line);
	n += (size_t)snprintf(line + n, sizeof(line) - n, " evmon daemon: ");
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = k < 0 ? n : n + (size_t)k >= sizeof(line) - 1 ? sizeof(line) - 2 : n + (size_t)k;
	line[n++] = '\n';
	if (L.kind == K_UNKNOWN)
		detect();
	if (!L.pending.len) {
		ssize_t w = write_some(line, n);
		if (w < 0 || (size_t)w == n)
			return;
		linebuf_append(&L.pending, line + w, n - (size_t)w);
	} else if (L.pending.len + n > MAX_PENDING) {
		L.dropped++;
		return;
	} else {
		linebuf_append(&L.pending, line, n);
	}
	flush_pending();
}

void dlog_attach(struct evm_loop *loop)
{
	if (L.kind == K_UNKNOWN)
		detect();
	L.loop = loop;
	flush_pending();
}

void dlog_detach(void)
{
	if (L.io)
		evm_io_free(L.io);
	L.io = NULL;
	L.loop = NULL;
	/* at exit, wait a little for a slow reader, never forever */
	for (int i = 0; i < 20 && L.pending.len; i++) {
		struct pollfd pfd = {.fd = 2, .events = POLLOUT};
		poll(&pfd, 1, 50);
		flush_pending();
	}
	linebuf_free(&L.pending);
}
