/*
 * stdsink.c - the daemon's stdout and stderr, written without blocking the
 * loop (see stdsink.h).
 *
 * How an fd is written depends on what it is. A regular file takes writes
 * directly. A socket (journald) gets non-blocking sends. A pipe or a
 * terminal is opened again through /proc/self/fd, non-blocking: a file
 * description of our own, because O_NONBLOCK on fd 1 itself would reach
 * whoever shares it (the shell, the container runtime). Where that open
 * fails, a pipe gets a write only when poll says a slot is free (then a
 * write of at most PIPE_BUF bytes cannot block).
 *
 * What is not taken waits in a bounded buffer, drained by an EVM_WRITE
 * watcher. When a write would pass the bound, the lines that do not fit
 * are dropped, and so is everything after them until the buffer is empty:
 * then one line tells how much was lost, where it was lost. The rest of a
 * line the fd took half of is always kept, so no line is ever cut.
 *
 * When stdout and stderr are the same file (2>&1, a container's terminal)
 * they share one sink, so a line half written on one is finished before
 * the other writes.
 */
#include "stdsink.h"

#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum kind { K_DIRECT, K_OWN, K_PIPE, K_SOCKET };

struct sink {
	int fd;			/* 1 or 2 */
	int wfd;		/* what writes go to: fd, or our non-blocking open of it */
	enum kind kind;
	struct evm_io *io;	/* while something waits */
	struct linebuf pending;
	bool dropping;		/* until pending is empty */
	uint64_t lost_bytes, lost_lines; /* since the last notice */
	uint64_t dropped;	/* in all */
};

static struct {
	bool detected;
	bool shared;		/* fd 2 is fd 1's file: one sink */
	struct evm_loop *loop;
	struct sink s[2];
} S = {.s = {{.fd = 1, .wfd = 1}, {.fd = 2, .wfd = 2}}};

static void detect(struct sink *s, const struct stat *st)
{
	s->kind = K_DIRECT;
	if (S_ISSOCK(st->st_mode)) {
		s->kind = K_SOCKET;
	} else if (S_ISFIFO(st->st_mode) || S_ISCHR(st->st_mode)) {
		char path[32];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
		int w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (w >= 0) {
			s->wfd = w;
			s->kind = K_OWN;
		} else if (S_ISFIFO(st->st_mode)) {
			s->kind = K_PIPE;
		}
	}
}

static struct sink *sink_of(int fd)
{
	if (!S.detected) {
		struct stat st1, st2;
		bool ok1 = fstat(1, &st1) == 0, ok2 = fstat(2, &st2) == 0;
		S.detected = true;
		S.shared = ok1 && ok2 && st1.st_dev == st2.st_dev && st1.st_ino == st2.st_ino &&
			   st1.st_rdev == st2.st_rdev;
		if (ok1)
			detect(&S.s[0], &st1);
		if (ok2 && !S.shared)
			detect(&S.s[1], &st2);
	}
	return &S.s[fd == 2 && !S.shared];
}

/* Write what the fd takes now; returns the bytes written, or -1 when it is gone. */
static ssize_t write_some(struct sink *s, const char *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w;
		if (s->kind == K_SOCKET) {
			w = send(s->fd, p + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		} else if (s->kind == K_PIPE) {
			struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};
			if (poll(&pfd, 1, 0) <= 0 || !(pfd.revents & POLLOUT))
				break;
			w = write(s->fd, p + done, n - done < PIPE_BUF ? n - done : PIPE_BUF);
		} else {
			w = write(s->wfd, p + done, n - done);
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

static void drop(struct sink *s, const char *p, size_t n)
{
	s->dropping = true;
	s->lost_bytes += n;
	s->dropped += n;
	for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
		s->lost_lines++;
}

/* The line that tells what was lost, where it was lost. */
static void notice(struct sink *s)
{
	char line[200];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	proto_time(&ts, line, 40);
	size_t n = strlen(line);
	int k = snprintf(line + n, sizeof(line) - n,
			 " evmon daemon: %llu bytes (%llu lines) dropped: %s was not read\n",
			 (unsigned long long)s->lost_bytes, (unsigned long long)s->lost_lines,
			 s->fd == 1 ? "stdout" : "stderr");
	s->dropping = false;
	s->lost_bytes = s->lost_lines = 0;
	if (k > 0)
		linebuf_append(&s->pending, line, n + (size_t)k);
}

static void on_writable(struct evm_io *io, int fd, unsigned revents, void *data);

static void watch(struct sink *s)
{
	if (!S.loop)
		return;
	if (s->pending.len && !s->io) {
		int fd = s->kind == K_OWN ? s->wfd : s->fd;
		if (evm_io_add(S.loop, fd, EVM_WRITE, on_writable, s, &s->io) < 0)
			s->io = NULL; /* not pollable: the next write retries */
	} else if (!s->pending.len && s->io) {
		evm_io_free(s->io);
		s->io = NULL;
	}
}

static void flush(struct sink *s)
{
	while (s->pending.len) {
		ssize_t w = write_some(s, linebuf_start(&s->pending), s->pending.len);
		if (w < 0) {
			/* the reader is gone: nobody to tell */
			s->dropped += s->pending.len;
			linebuf_consume(&s->pending, s->pending.len);
			break;
		}
		if (w == 0)
			break;
		linebuf_consume(&s->pending, (size_t)w);
		if (!s->pending.len && s->dropping)
			notice(s);
	}
	watch(s);
}

static void on_writable(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct sink *s = data;
	(void)io;
	(void)fd;
	if (revents & (EVM_ERROR | EVM_HANGUP)) {
		s->dropped += s->pending.len;
		linebuf_consume(&s->pending, s->pending.len);
	}
	flush(s);
}

/* Into the buffer, up to its bound; begun: p starts with the rest of a line the fd took half of. */
static void queue(struct sink *s, const char *p, size_t n, bool begun)
{
	size_t room = s->pending.len < STDSINK_MAX ? STDSINK_MAX - s->pending.len : 0;
	size_t take = n;
	if (s->dropping) {
		take = 0;
	} else if (n > room) {
		const char *nl = room ? memrchr(p, '\n', room) : NULL;
		take = nl ? (size_t)(nl - p) + 1 : 0;
	}
	if (begun && take < n) {
		size_t first = (size_t)((const char *)memchr(p, '\n', n) - p) + 1;
		take = take > first ? take : first;
	}
	if (take && linebuf_append(&s->pending, p, take) < 0)
		take = 0;
	if (take < n)
		drop(s, p + take, n - take);
}

void stdsink_write(int fd, const char *p, size_t n)
{
	struct sink *s = sink_of(fd);
	if (!n)
		return;
	if (s->dropping && !s->pending.len)
		notice(s); /* the loss was not for want of room (no memory): say so now */
	if (s->pending.len || s->dropping) {
		queue(s, p, n, false);
	} else {
		ssize_t w = write_some(s, p, n);
		if (w < 0) {
			s->dropped += n;
			return;
		}
		if ((size_t)w == n)
			return;
		queue(s, p + w, n - (size_t)w, w > 0 && p[w - 1] != '\n');
	}
	flush(s);
}

void stdsink_attach(struct evm_loop *loop)
{
	S.loop = loop;
	for (int i = 0; i < 2; i++)
		flush(&S.s[i]);
}

void stdsink_flush(void)
{
	for (int round = 0; round < 20 && (S.s[0].pending.len || S.s[1].pending.len); round++) {
		struct pollfd pfd[2];
		nfds_t n = 0;
		for (int i = 0; i < 2; i++)
			if (S.s[i].pending.len)
				pfd[n++] = (struct pollfd){
					.fd = S.s[i].kind == K_OWN ? S.s[i].wfd : S.s[i].fd,
					.events = POLLOUT};
		poll(pfd, n, 50);
		for (int i = 0; i < 2; i++)
			flush(&S.s[i]);
	}
}

void stdsink_detach(void)
{
	for (int i = 0; i < 2; i++) {
		evm_io_free(S.s[i].io);
		S.s[i].io = NULL;
	}
	S.loop = NULL;
	stdsink_flush();
	for (int i = 0; i < 2; i++)
		linebuf_free(&S.s[i].pending);
}

uint64_t stdsink_dropped(int fd)
{
	struct sink *s = sink_of(fd);
	return fd == 2 && S.shared ? 0 : s->dropped; /* counted once, as stdout's */
}
