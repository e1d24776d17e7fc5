/*
 * conn.c - `evmon ctl`'s connection to the daemon (see conn.h).
 */
#include "conn.h"

#include "out.h"
#include "safe.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int connect_daemon(struct ctl *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (c->refused) {
		fprintf(stderr, "evmon ctl: %s\n", c->refused);
		return -1;
	}
	if (strlen(c->socket) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "evmon ctl: %s: socket path too long\n", c->socket);
		return -1;
	}
	strcpy(sa.sun_path, c->socket);
	c->lines = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "evmon ctl: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			fprintf(stderr,
				"evmon ctl: no daemon at %s: %s\n"
				"evmon ctl: start one with: evmon daemon -c FILE [-S %s]\n",
				c->socket, strerror(e), c->socket);
		else
			fprintf(stderr, "evmon ctl: cannot connect to %s: %s\n", c->socket,
				strerror(e));
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	/*
	 * Nothing (an add's secrets) goes to a server that is neither root nor
	 * us; root may talk to any user's daemon, on the path it names.
	 */
	struct ucred cr = {.uid = (uid_t)-1};
	socklen_t crlen = sizeof(cr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 ||
	    (cr.uid != 0 && cr.uid != geteuid() && geteuid() != 0)) {
		fprintf(stderr, "evmon ctl: %s: served by uid %u, neither root nor you (uid %u): "
			"refusing to talk to it\n", c->socket, (unsigned)cr.uid, (unsigned)geteuid());
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

static int send_request(struct ctl *c, cJSON *req)
{
	char *s = cJSON_PrintUnformatted(req);
	if (!s)
		return -1;
	int rc = 0;
	struct part {
		const char *p;
		size_t n;
	} parts[2] = {{s, strlen(s)}, {"\n", 1}};
	for (int i = 0; i < 2 && rc == 0; i++) {
		size_t off = 0;
		while (off < parts[i].n) {
			ssize_t w = send(c->fd, parts[i].p + off, parts[i].n - off, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = -1; /* reported if no answer explains it */
				break;
			}
			off += (size_t)w;
		}
	}
	cJSON_free(s);
	return rc;
}

int ctl_read_line(struct ctl *c, char **line, int timeout_ms)
{
	int r = ctl_read_line_quiet(c, line, timeout_ms);
	if (r == -2)
		fprintf(stderr, "evmon ctl: %s: no answer after %d s\n", c->socket, timeout_ms / 1000);
	return r == -2 ? -1 : r;
}

int ctl_send(struct ctl *c, cJSON *req)
{
	int r = send_request(c, req);
	cJSON_Delete(req);
	if (r < 0)
		fprintf(stderr, "evmon ctl: %s: %s\n", c->socket, strerror(errno));
	return r;
}

#define CTL_LINE_MAX (256 << 20)

int ctl_read_line_quiet(struct ctl *c, char **line, int timeout_ms)
{
	if (c->last) {
		linebuf_consume(&c->in, c->last);
		c->last = 0;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t seen = 0; /* bytes of the line looked at already: each byte is searched once */
	for (;;) {
		const char *start = linebuf_start(&c->in);
		const char *nl = c->in.len > seen ? memchr(start + seen, '\n', c->in.len - seen) : NULL;
		ssize_t n = nl ? nl - start : -1;
		seen = c->in.len;
		if (n < 0 && c->in.len > CTL_LINE_MAX) {
			/* the daemon's biggest line, a status of 100,000 services, is tens of MB */
			fprintf(stderr, "evmon ctl: %s: a line of over %d MiB without its end: not an "
				"answer of evmon's\n", c->socket, CTL_LINE_MAX >> 20);
			return -1;
		}
		if (n >= 0) {
			*line = linebuf_start(&c->in);
			(*line)[n] = '\0';
			safe_line(*line, (size_t)n);
			c->last = (size_t)n + 1;
			c->lines++;
			return 0;
		}
		int wait = -1;
		if (timeout_ms >= 0) {
			struct timespec t;
			clock_gettime(CLOCK_MONOTONIC, &t);
			long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
			wait = el >= timeout_ms ? 0 : timeout_ms - (int)el;
		}
		struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
				      {.fd = c->watch_out ? out_pipe_fd() : -1}};
		int r = poll(p, 2, wait);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -2;
		if (out_gone(p[1].revents))
			return -3;
		if (!p[0].revents)
			continue;
		char *dst = linebuf_space(&c->in, 65536);
		ssize_t k = dst ? read(c->fd, dst, 65536) : -1;
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fprintf(stderr, "evmon ctl: %s: %s\n", c->socket,
				k != 0	   ? strerror(errno)
				: c->lines ? "the daemon closed the connection (it stopped, or "
					     "dropped this client: see its log)"
					   : "the daemon closed the connection before it answered "
					     "(it stopped, or cut the reply: see its log)");
			return -1;
		}
		c->in.len += (size_t)k;
	}
}

int ctl_call(struct ctl *c, cJSON *req, cJSON **resp, const char **raw, int timeout_ms)
{
	*resp = NULL;
	if (connect_daemon(c) < 0) {
		cJSON_Delete(req);
		return CTL_EXIT_NODAEMON;
	}
	int r = send_request(c, req);
	cJSON_Delete(req);
	char *line;
	/* a refused connection gets its reason before the daemon hangs up: read it anyway */
	if (ctl_read_line(c, &line, r < 0 ? 1000 : timeout_ms) < 0)
		return CTL_EXIT_NODAEMON;
	*raw = line;
	*resp = cJSON_Parse(line);
	safe_tree(*resp);
	if (!cJSON_IsObject(*resp)) {
		fprintf(stderr, "evmon ctl: %s: not a JSON object from the daemon: %.200s\n",
			c->socket, line);
		cJSON_Delete(*resp);
		*resp = NULL;
		return CTL_EXIT_NODAEMON;
	}
	return 0;
}
