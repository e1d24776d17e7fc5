/*
 * probe.c - in-loop TCP and HTTP health probes (see probe.h).
 *
 * A probe is one non-blocking socket (SOCK_NONBLOCK | SOCK_CLOEXEC) on the
 * loop and one timer: connect; for HTTP, send the request and read the
 * response into a buffer of PROBE_OUTPUT_MAX bytes (what comes beyond it is
 * not read: a server that sends a gigabyte costs one buffer and the close).
 * The verdict:
 *
 *   tcp    healthy once the connection is established (SO_ERROR 0); refused,
 *          unreachable, or not established by the timeout (SYNs dropped):
 *          failed.
 *   http   healthy when the response's status line (HTTP/x.y NNN) says 2xx
 *          or 3xx, read before the timeout; the check ends at the end of
 *          the response, once PROBE_OUTPUT_MAX bytes came, or at the timeout
 *          (a server that answers and keeps the connection open). A
 *          connection reset or any other error before the end fails it, as
 *          does a response that is not HTTP.
 *
 * The result is always told from the loop (an I/O or timer callback), never
 * from probe_start: a connect that fails at once (ECONNREFUSED on loopback)
 * is told by a timer of 0 ms.
 *
 * What a probe costs is mostly its system calls (bench/README.md, "Health
 * checks"), so it makes as few as it can. A connection to a local server
 * is usually established by the time connect returns (the handshake runs
 * in the call), so the request is sent right away: socket, connect, send,
 * one epoll_ctl to watch for the response; a send that says EAGAIN (still
 * connecting) falls back to waiting until the socket is writable. A TCP
 * probe asks the same with a send of 0 bytes (0: established, EAGAIN: not
 * yet), and when it was is told by its 0 ms timer, without a watch. The
 * response's end comes with it when the server closes at once: EPOLLRDHUP
 * (EVM_PEER_CLOSED) with the data means the short read got all of it, so
 * no read waits for the EOF. Ended probes are kept for the next (up to
 * PROBE_SPARES, with their request): nothing is allocated per probe.
 */
#include "probe.h"

#include "monotime.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* -------------------------------------------------------------- probes */

struct probe {
	struct evm_loop *loop;
	const struct probe_target *t; /* &tc: the config's may go with a reload meanwhile */
	struct probe_target tc;	/* a copy: kind, addr and the request (not text) */
	size_t req_len;		/* strlen(tc.request) */
	struct probe *next_spare;
	int fd;
	struct evm_io *io;
	struct evm_timer *timer;
	uint64_t timeout_ms;
	uint64_t start_ns;
	probe_done_cb done;
	void *data;
	int err_now;		/* connect failed at once: told by the 0 ms timer */
	bool connected;
	size_t sent;		/* HTTP: bytes of the request sent */
	size_t len;		/* of the response read */
	int status;		/* its status line's code, 0: not read (yet) */
	bool bad_status_line;	/* what came is not an HTTP status line */
	char buf[PROBE_OUTPUT_MAX + 1]; /* last: a reused probe's reset stops before it */
};

/* Ended probes kept for the next ones (the daemon has one thread). */
#define PROBE_SPARES 64
static struct probe *spares;
static unsigned nspares;

void probe_spares_free(void)
{
	while (spares) {
		struct probe *p = spares;
		spares = p->next_spare;
		free(p->tc.request);
		free(p);
	}
	nspares = 0;
}

static void addr_text(const struct probe_target *t, char *s, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (t->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&t->addr;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		port = ntohs(a->sin6_port);
		snprintf(s, n, "[%s]:%u", ip, port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&t->addr;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		port = ntohs(a->sin_port);
		snprintf(s, n, "%s:%u", ip, port);
	}
}

/*
 * Closed with a reset (SO_LINGER 0, as easeprobe's probes; the kubelet sets
 * SO_LINGER on its probes for the same reason, kubernetes#115143): a normal
 * close by the daemon would leave a TIME_WAIT socket per probe for a
 * minute, 60,000 at 1,000 probes a second, more than the ephemeral ports to
 * one address (28,232 by default), and costs two more packets. A linger
 * above 0 would block the loop in close.
 */
static void release(struct probe *p)
{
	evm_io_free(p->io);
	evm_timer_cancel(p->timer);
	if (p->fd >= 0) {
		static const struct linger now = {.l_onoff = 1, .l_linger = 0};
		setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
		close(p->fd);
	}
	p->fd = -1;
	p->io = NULL;
	if (nspares < PROBE_SPARES) { /* kept with its request: the next is likely the same */
		p->next_spare = spares;
		spares = p;
		nspares++;
		return;
	}
	free(p->tc.request);
	free(p);
}

void probe_cancel(struct probe *p)
{
	if (p)
		release(p);
}

/*
 * The end: why is NULL when the probe ran its course (HTTP: the response
 * ended, or PROBE_OUTPUT_MAX bytes came), else what went wrong (errno text,
 * "timed out").
 */
static void finish(struct probe *p, const char *why, bool timed_out)
{
	char where[80], msg[PROBE_OUTPUT_MAX + 200];
	bool quiet = p->t->kind == PROBE_HTTP && !why && p->status && !p->bad_status_line;
	if (!quiet) /* not for an answer, the common end: its output is the answer */
		addr_text(p->t, where, sizeof(where));
	struct probe_result r = {.timed_out = timed_out, .http_status = p->status,
				 .ms = (mono_ns() - p->start_ns) / 1000000};
	size_t keep = p->len > PROBE_OUTPUT_MAX ? PROBE_OUTPUT_MAX : p->len;
	r.truncated = p->len > PROBE_OUTPUT_MAX;
	if (p->t->kind == PROBE_TCP) {
		r.ok = !why && p->connected;
		if (r.ok)
			snprintf(msg, sizeof(msg), "connected to %s\n", where);
		else if (timed_out)
			snprintf(msg, sizeof(msg), "health check timed out after %llu ms: no connection "
				 "to %s\n", (unsigned long long)p->timeout_ms, where);
		else
			snprintf(msg, sizeof(msg), "connect to %s: %s\n", where, why);
		r.output = msg;
		r.len = strlen(msg);
	} else if (!why || (timed_out && p->status)) {
		/* the response (or its first PROBE_OUTPUT_MAX bytes) is the output */
		r.ok = p->status >= 200 && p->status <= 399;
		r.timed_out = false; /* answered in time; the connection was just left open */
		if (!p->status && !p->bad_status_line)
			p->bad_status_line = true; /* it ended before a whole line */
		if (!p->len) {
			snprintf(msg, sizeof(msg), "no response from %s: the connection was closed\n", where);
			r.output = msg;
			r.len = strlen(msg);
		} else if (p->bad_status_line) {
			snprintf(msg, sizeof(msg), "not an HTTP response from %s: %.*s", where, (int)keep,
				 p->buf);
			r.output = msg;
			r.len = strlen(msg);
		} else {
			r.output = p->buf;
			r.len = keep;
		}
	} else {
		int k;
		if (timed_out)
			k = snprintf(msg, sizeof(msg), "health check timed out after %llu ms: %s %s",
				     (unsigned long long)p->timeout_ms,
				     p->connected ? "no HTTP status line from" : "no connection to", where);
		else
			k = snprintf(msg, sizeof(msg), "%s %s: %s", p->connected ? "reading from" : "connect to",
				     where, why);
		if (k > 0 && (size_t)k < sizeof(msg) && keep)
			snprintf(msg + k, sizeof(msg) - (size_t)k, " after %zu bytes: %.*s", keep, (int)keep,
				 p->buf);
		else if (k > 0 && (size_t)k < sizeof(msg) - 1)
			strcat(msg, "\n");
		r.output = msg;
		r.len = strlen(msg);
	}
	p->done(p, &r, p->data); /* r may point into p: freed after */
	release(p);
}

/* Parse the status line once a whole line (or the buffer) is in. */
static void status_line(struct probe *p)
{
	if (p->status || p->bad_status_line)
		return;
	char *nl = memchr(p->buf, '\n', p->len);
	if (!nl && p->len < PROBE_OUTPUT_MAX)
		return; /* not all of it yet */
	/* HTTP/D.D NNN */
	const char *s = p->buf;
	if (p->len >= 12 && !memcmp(s, "HTTP/", 5) && isdigit((unsigned char)s[5]) && s[6] == '.' &&
	    isdigit((unsigned char)s[7]) && s[8] == ' ' && isdigit((unsigned char)s[9]) &&
	    isdigit((unsigned char)s[10]) && isdigit((unsigned char)s[11]) &&
	    (p->len == 12 || s[12] == ' ' || s[12] == '\r' || s[12] == '\n'))
		p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	else
		p->bad_status_line = true;
}

static void on_timer(struct evm_timer *t, void *data)
{
	struct probe *p = data;
	(void)t;
	p->timer = NULL;
	if (p->err_now)
		finish(p, strerror(p->err_now), false);
	else if (p->connected && p->t->kind == PROBE_TCP) /* established in probe_start */
		finish(p, NULL, false);
	else
		finish(p, "timed out", true);
}

/*
 * What came: one read. A short one took all there was (level-triggered:
 * more, or the end, wakes us again); with revents' EVM_PEER_CLOSED (and no
 * error or hang-up: a reset fails it at the next read) it was the last, so
 * no read waits for the EOF.
 */
static void read_response(struct probe *p, unsigned revents)
{
	ssize_t n;
	do
		n = read(p->fd, p->buf + p->len, sizeof(p->buf) - p->len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n < 0) {
		finish(p, strerror(errno), false);
		return;
	}
	p->len += (size_t)n;
	status_line(p);
	bool last = (revents & EVM_PEER_CLOSED) && !(revents & (EVM_ERROR | EVM_HANGUP));
	if (n == 0 || p->len == sizeof(p->buf) || last)
		finish(p, NULL, false); /* the end, or all we read of it */
}

static void send_request(struct probe *p)
{
	size_t len = p->req_len;
	while (p->sent < len) {
		ssize_t w = send(p->fd, p->t->request + p->sent, len - p->sent, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* the rest when it is writable */
		if (w < 0) {
			finish(p, strerror(errno), false);
			return;
		}
		p->sent += (size_t)w;
	}
	if (evm_io_modify(p->io, EVM_READ) < 0)
		finish(p, "cannot watch the connection", false);
}

static void on_io(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct probe *p = data;
	(void)io;
	(void)fd;
	if (!p->connected) {
		int e = 0;
		socklen_t el = sizeof(e);
		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			e = errno;
		if (!e && (revents & (EVM_ERROR | EVM_HANGUP)))
			e = ECONNRESET;
		if (e) {
			finish(p, strerror(e), false);
			return;
		}
		p->connected = true;
		if (p->t->kind == PROBE_TCP) {
			finish(p, NULL, false);
			return;
		}
	}
	if (p->sent < p->req_len) {
		send_request(p);
		return;
	}
	read_response(p, revents); /* also at a hang-up or an error: read says which */
}

/*
 * Right after the connect: for HTTP, the request (all of it, usually: the
 * connection to a local server is up by now); for TCP, a send of 0 bytes,
 * which says whether it is established (0) or not yet (EAGAIN). An error
 * (ECONNREFUSED) is the probe's end, told by the 0 ms timer.
 */
static void send_at_once(struct probe *p)
{
	bool http = p->t->kind == PROBE_HTTP;
	ssize_t w;
	do
		w = send(p->fd, http ? p->t->request : "", http ? p->req_len : 0, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w >= 0) {
		p->connected = true;
		p->sent = (size_t)w;
	} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
		p->err_now = errno;
	}
}

int probe_start(struct evm_loop *loop, const struct probe_target *t, uint64_t timeout_ms,
		probe_done_cb done, void *data, struct probe **out)
{
	*out = NULL;
	if (!t || t->kind == PROBE_NONE)
		return -EINVAL;
	struct probe *p = spares;
	if (p) {
		spares = p->next_spare;
		nspares--;
	} else if (!(p = calloc(1, sizeof(*p)))) {
		return -ENOMEM;
	}
	/* every field but buf (read only up to len: its 4 KiB are not zeroed) and tc.request (below) */
	char *req = p->tc.request;
	size_t req_len = p->req_len;
	memset(p, 0, offsetof(struct probe, buf));
	p->loop = loop;
	p->fd = -1;
	p->tc.kind = t->kind;
	p->tc.addr = t->addr;
	p->tc.addrlen = t->addrlen;
	if (req && (!t->request || strcmp(req, t->request))) {
		free(req);
		req = NULL;
	}
	if (t->request && !req) {
		if (!(req = strdup(t->request))) {
			free(p);
			return -ENOMEM;
		}
		req_len = strlen(req);
	}
	p->tc.request = req;
	p->req_len = req ? req_len : 0;
	p->t = &p->tc;
	p->timeout_ms = timeout_ms;
	p->done = done;
	p->data = data;
	p->start_ns = mono_ns();
	p->fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		int r = -errno;
		release(p);
		return r;
	}
	int r = 0;
	if (connect(p->fd, (const struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS)
		p->err_now = errno ? errno : EIO;
	else
		send_at_once(p);
	bool told = p->err_now || (p->connected && t->kind == PROBE_TCP); /* by the 0 ms timer */
	if (!told) /* the response (all sent), or the connection (then the rest of the request) */
		r = evm_io_add(loop, p->fd, p->connected && p->sent == p->req_len ? EVM_READ : EVM_WRITE,
			       on_io, p, &p->io);
	if (r == 0)
		r = evm_timer_add(loop, told ? 0 : timeout_ms, on_timer, p, &p->timer);
	if (r < 0) {
		p->timer = NULL;
		release(p);
		return r;
	}
	*out = p;
	return 0;
}
