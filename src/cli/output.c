/*
 * output.c - a service's stdio (see output.h).
 *
 * A logged stream is a file opened O_APPEND by the daemon and handed to the
 * library as EVM_STDIO_FD; the library dups it into each new process, so the
 * fd must stay open while the service may start again, and a reopen must
 * keep its number (dup3 over it).
 */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const stream_name[2] = {"stdout", "stderr"};

void output_init(struct svc_output *o)
{
	o->fd[0] = o->fd[1] = -1;
}

static int open_log(const char *log_dir, const char *name, int i, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.%s.log", log_dir, name, stream_name[i]);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	return fd;
}

int output_open(struct svc_output *o, const struct svc_conf *c, const char *name,
		const char *log_dir, char *err, size_t errlen)
{
	for (int i = 0; i < 2; i++) {
		if (c->pol.out[i] != OUT_LOG || o->fd[i] >= 0)
			continue;
		int fd = open_log(log_dir, name, i, err, errlen);
		if (fd < 0) {
			output_close(o);
			return fd;
		}
		o->fd[i] = fd;
	}
	return 0;
}

void output_stdio(const struct svc_output *o, const struct svc_conf *c, struct evm_stdio stdio[3])
{
	stdio[0].mode = EVM_STDIO_NULL;
	for (int i = 0; i < 2; i++) {
		switch (c->pol.out[i]) {
		case OUT_INHERIT:
			stdio[i + 1].mode = EVM_STDIO_INHERIT;
			break;
		case OUT_NULL:
			stdio[i + 1].mode = EVM_STDIO_NULL;
			break;
		case OUT_LOG:
			stdio[i + 1].mode = EVM_STDIO_FD;
			stdio[i + 1].fd = o->fd[i];
			break;
		}
	}
}

int output_reopen(struct svc_output *o, const char *name, const char *log_dir, char *err,
		  size_t errlen)
{
	for (int i = 0; i < 2; i++) {
		if (o->fd[i] < 0)
			continue;
		int fd = open_log(log_dir, name, i, err, errlen);
		if (fd < 0)
			return fd;
		int r = dup3(fd, o->fd[i], O_CLOEXEC);
		int e = errno;
		close(fd);
		if (r < 0) {
			snprintf(err, errlen, "%s.%s.log: %s", name, stream_name[i], strerror(e));
			return -e;
		}
	}
	return 0;
}

void output_close(struct svc_output *o)
{
	for (int i = 0; i < 2; i++) {
		if (o->fd[i] >= 0)
			close(o->fd[i]);
		o->fd[i] = -1;
	}
}
