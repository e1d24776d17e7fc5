/*
 * control.c - the control socket server (see control.h).
 *
 * Everything is non-blocking and on the loop, and nothing re-enters: a
 * client is read, answered and written only from its own callback, a
 * reply (even a late one) only joins its output, and a client dropped
 * from elsewhere is shut down and closed by its own callback (so no
 * reference counts, and no "dispatching" or "busy" guards).
 *
 * Memory per client is bounded:
 * the input buffer holds at most one request line (PROTO_MAX_REQUEST; a
 * longer one is answered with an error and skipped up to its newline), and
 * we stop reading a client while its output is above OUT_SOFT or a reply is
 * pending, so a client that sends without reading only fills its
 * own socket buffer. Event lines are pushed whatever the client does, so a
 * subscriber whose unread output passes max_pending is dropped. Writes use
 * MSG_NOSIGNAL: a vanished client is an EPIPE, never a SIGPIPE.
 *
 * A client waiting for a request of its own holds a slot and an fd, so it
 * may wait only idle_ms (then it is told and closed): a thousand idle
 * connections cannot lock ctl out. Subscribers, raw streams and clients
 * awaiting a reply are not idle; a partial line is not a request.
 *
 * The socket file and its lock are sockfile.c's.
 */
#include "control.h"

#include "proto.h"
#include "sockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUT_SOFT (256 * 1024) /* stop reading requests above this much unsent output */
#define READ_CHUNK 16384
#define RAW_LOW (128 * 1024)  /* a raw stream is refilled below this much unsent output */
#define RESUME_MS 250	      /* accepting paused for want of fds: tried again this often */
#define CALM_MS 5000	      /* no pause for this long after an accept: the episode is over */

struct client {
	struct control *ctl;
	unsigned id;
	int fd;
	uid_t uid;
	pid_t pid;
	struct evm_io *io;
	unsigned events; /* what io watches */
	struct linebuf in, out;
	bool eof, discarding;
	bool pending;	 /* a request has no reply yet: the next ones wait */
	bool aborted;	 /* dropped: closed at its next callback (see client_abort) */
	cJSON *req_id;	 /* "id" of the current request, echoed in the reply */
	control_gone_cb defer_gone; /* a deferred reply's owner, told if we close first */
	void *defer_data;
	bool subscribed;
	struct evm_timer *idle; /* armed while it waits for a request (idle_ms) */
	char **patterns;
	size_t npatterns;
	/* raw stream (control_raw) */
	bool raw, raw_done;
	control_fill_cb fill;
	control_gone_cb gone;
	void *raw_data;
	struct client *prev, *next;
};

struct control {
	struct evm_loop *loop;
	struct sockfile sf;	/* the socket and its lock file */
	int reserve_fd;
	struct evm_io *io;
	struct control_opts o;
	struct evm_timer *resume; /* armed while accepting is paused: no fd to take a client */
	struct evm_timer *calm;	  /* armed after an accept while starved (see pause_accept) */
	bool starved;		  /* an episode of pauses: its first was logged */
	unsigned pauses;	  /* in this episode */
	uint64_t starved_ns, last_ns; /* when it began, its last pause (loop time) */
	struct client *clients;
	unsigned nclients, next_id;
	uint64_t dropped, dropped_bytes; /* subscribers dropped for unread events, and those bytes */
};

static void logf_(struct control *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct control *ctl, const char *fmt, ...)
{
	if (!ctl->o.on_log)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctl->o.on_log(msg, ctl->o.data);
}

/* ------------------------------------------------------------ clients */

/*
 * The end of a client: only from its own callback (on_client), or when the
 * server closes. Whoever holds it for later (a deferred reply, a raw
 * stream) is told first.
 */
static void client_close(struct client *cl)
{
	struct control *ctl = cl->ctl;
	if (cl->gone)
		cl->gone(cl->raw_data);
	if (cl->defer_gone)
		cl->defer_gone(cl->defer_data);
	if (cl->idle)
		evm_timer_cancel(cl->idle);
	evm_io_free(cl->io);
	close(cl->fd);
	if (ctl->o.fd_closed)
		ctl->o.fd_closed(ctl->o.data);
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		ctl->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	ctl->nclients--;
	linebuf_free(&cl->in);
	linebuf_free(&cl->out);
	cJSON_Delete(cl->req_id);
	for (size_t i = 0; i < cl->npatterns; i++)
		free(cl->patterns[i]);
	free(cl->patterns);
	free(cl);
}

/*
 * Drop a client from anywhere, even from inside its own request: its
 * output is discarded and the socket shut down both ways, which the kernel
 * reports as a hang-up, so its callback closes it from the loop. Nothing
 * is freed here, so no caller up the stack is left holding a freed client.
 */
static void client_abort(struct client *cl)
{
	if (cl->aborted)
		return;
	cl->aborted = true;
	linebuf_free(&cl->out);
	shutdown(cl->fd, SHUT_RDWR);
}

bool control_client_closed(const struct client *cl)
{
	return cl->aborted;
}

unsigned control_client_id(const struct client *cl)
{
	return cl->id;
}

unsigned control_clients(const struct control *ctl)
{
	return ctl->nclients;
}

uint64_t control_dropped(const struct control *ctl, uint64_t *bytes)
{
	*bytes = ctl->dropped_bytes;
	return ctl->dropped;
}

/* Nothing left to do: the connection can close. */
static bool client_done(const struct client *cl)
{
	if (cl->raw)
		return cl->raw_done && !cl->out.len;
	return cl->eof && !cl->pending && !cl->out.len && !cl->in.len;
}

static void on_idle(struct evm_timer *t, void *data)
{
	struct client *cl = data;
	(void)t;
	cl->idle = NULL; /* the loop frees a timer that fired */
	if (cl->aborted)
		return;
	char line[160];
	int n = snprintf(line, sizeof(line), "{\"ok\":false,\"error\":\"idle: no request in %llu ms\"}\n",
			 (unsigned long long)cl->ctl->o.idle_ms);
	if (!cl->out.len) { /* a courtesy for people typing into socat; the close is what matters */
		ssize_t w = send(cl->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w;
	}
	control_drop(cl, "idle: no request");
}

/* Waiting for its next request: the idle clock runs (restarted by each request). */
static void idle_update(struct client *cl)
{
	bool waits = !cl->subscribed && !cl->raw && !cl->pending;
	if (!cl->ctl->o.idle_ms || waits == (cl->idle != NULL))
		return;
	if (!waits) {
		evm_timer_cancel(cl->idle);
		cl->idle = NULL;
	} else if (evm_timer_add(cl->ctl->loop, cl->ctl->o.idle_ms, on_idle, cl, &cl->idle) < 0) {
		cl->idle = NULL; /* no timer: it just is not timed out */
	}
}

/* Watch for what we can do next (a finished client is written to: its callback closes it). */
static void client_update(struct client *cl)
{
	if (cl->aborted)
		return;
	idle_update(cl);
	unsigned ev = 0;
	if (!cl->eof && !cl->pending && !cl->raw && cl->out.len < OUT_SOFT)
		ev |= EVM_READ;
	if (cl->out.len || client_done(cl))
		ev |= EVM_WRITE;
	if (ev != cl->events && evm_io_modify(cl->io, ev) == 0)
		cl->events = ev;
}

/* Send what the socket takes now. */
static void client_send(struct client *cl)
{
	while (!cl->aborted && cl->out.len) {
		ssize_t w = send(cl->fd, linebuf_start(&cl->out), cl->out.len,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0)
			linebuf_consume(&cl->out, (size_t)w);
		else if (w < 0 && errno == EINTR)
			continue;
		else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		else
			client_abort(cl); /* EPIPE, ECONNRESET: it went away */
	}
}

/* Refill a raw stream while the client keeps taking it, without blocking. */
static void raw_pump(struct client *cl)
{
	client_send(cl);
	while (!cl->aborted && !cl->raw_done && cl->out.len < RAW_LOW) {
		size_t before = cl->out.len;
		if (!cl->fill(cl, RAW_LOW - cl->out.len, cl->raw_data))
			cl->raw_done = true;
		if (cl->out.len == before)
			break; /* nothing more for now */
		client_send(cl);
	}
}

void control_raw(struct client *cl, control_fill_cb fill, control_gone_cb gone, void *data)
{
	cl->raw = true; /* no more requests: what follows on the connection is not read */
	cl->fill = fill;
	cl->gone = gone;
	cl->raw_data = data;
	linebuf_consume(&cl->in, cl->in.len);
	control_raw_kick(cl);
}

int control_raw_write(struct client *cl, const void *p, size_t n)
{
	if (cl->aborted)
		return 0;
	char *dst = linebuf_space(&cl->out, n);
	if (!dst)
		return -ENOMEM;
	memcpy(dst, p, n);
	cl->out.len += n;
	return 0;
}

void control_raw_kick(struct client *cl)
{
	if (cl->aborted || !cl->raw)
		return;
	raw_pump(cl);
	client_update(cl);
}

void control_drop(struct client *cl, const char *why)
{
	if (cl->aborted)
		return;
	logf_(cl->ctl, "client %u (pid %d): dropped: %s", cl->id, (int)cl->pid, why);
	client_abort(cl);
}

size_t control_max_pending(const struct client *cl)
{
	return cl->ctl->o.max_pending;
}

static void client_send_line(struct client *cl, const char *s, size_t n)
{
	if (cl->aborted)
		return;
	char *dst = linebuf_space(&cl->out, n + 1);
	if (!dst) {
		control_drop(cl, "out of memory for its output");
		return;
	}
	memcpy(dst, s, n);
	dst[n] = '\n';
	cl->out.len += n + 1;
}

/*
 * The reply only joins the client's output: it is sent from the client's
 * callback (at the end of the request, or, for a late reply, when the loop
 * sees the socket writable), which then reads the requests queued behind
 * it. So replying never re-enters request handling.
 */
void control_reply(struct client *cl, cJSON *resp)
{
	if (cl->aborted)
		return;
	if (cl->req_id) {
		cJSON_DeleteItemFromObjectCaseSensitive(resp, "id");
		cJSON_AddItemToObject(resp, "id", cl->req_id);
		cl->req_id = NULL;
	}
	char *s = cJSON_PrintUnformatted(resp);
	if (!s) {
		static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}";
		client_send_line(cl, oom, sizeof(oom) - 1);
	} else {
		client_send_line(cl, s, strlen(s));
		cJSON_free(s);
	}
	cl->pending = false;
	cl->defer_gone = NULL;
	cl->defer_data = NULL;
	client_update(cl);
}

void control_reply_error(struct client *cl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	control_reply(cl, r);
	cJSON_Delete(r);
}

void control_defer(struct client *cl, control_gone_cb gone, void *data)
{
	cl->defer_gone = gone;
	cl->defer_data = data;
}

static void handle_line(struct client *cl, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
		i++;
	if (i == n)
		return; /* blank lines are ignored */
	cl->pending = true;
	idle_update(cl); /* a request: the next idle time counts from its reply */
	cJSON *req = cJSON_ParseWithLength(p, n);
	if (!req) {
		const char *at = cJSON_GetErrorPtr();
		long off = at && at >= p && at <= p + n ? (long)(at - p) : -1;
		control_reply_error(cl, "malformed JSON (at byte %ld): a request is one JSON object "
				    "per line", off);
		return;
	}
	if (!cJSON_IsObject(req)) {
		cJSON_Delete(req);
		control_reply_error(cl, "a request is a JSON object, e.g. {\"cmd\":\"status\"}");
		return;
	}
	cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
	cJSON_Delete(cl->req_id);
	cl->req_id = id ? cJSON_Duplicate(id, true) : NULL;
	cl->ctl->o.on_request(cl, req, cl->ctl->o.data);
	cJSON_Delete(req);
}

/* The complete request lines, in order, while each is answered at once. */
static void process_input(struct client *cl)
{
	while (!cl->aborted && !cl->pending && !cl->raw && cl->out.len < OUT_SOFT && cl->in.len) {
		ssize_t n = linebuf_line(&cl->in);
		size_t take;
		if (n < 0) {
			if (cl->discarding) {
				linebuf_consume(&cl->in, cl->in.len);
				break;
			}
			if (cl->in.len > PROTO_MAX_REQUEST) {
				cl->discarding = true;
				linebuf_consume(&cl->in, cl->in.len);
				cl->pending = true;
				control_reply_error(cl, "request line longer than %d bytes", PROTO_MAX_REQUEST);
				continue;
			}
			if (!cl->eof)
				break;
			n = (ssize_t)cl->in.len; /* a last request without its newline */
			take = cl->in.len;
		} else {
			take = (size_t)n + 1;
		}
		if (cl->discarding) {
			cl->discarding = false;
			linebuf_consume(&cl->in, take);
			continue;
		}
		if ((size_t)n > PROTO_MAX_REQUEST) {
			linebuf_consume(&cl->in, take);
			cl->pending = true;
			control_reply_error(cl, "request line longer than %d bytes", PROTO_MAX_REQUEST);
			continue;
		}
		/* the callback may reply into out, never touches in: parse in place */
		handle_line(cl, linebuf_start(&cl->in), (size_t)n);
		linebuf_consume(&cl->in, take);
	}
}

static void client_read(struct client *cl)
{
	char *dst = linebuf_space(&cl->in, READ_CHUNK);
	ssize_t r = dst ? read(cl->fd, dst, READ_CHUNK) : -1;
	if (r > 0)
		cl->in.len += (size_t)r;
	else if (r == 0)
		cl->eof = true;
	else if (!dst || (errno != EAGAIN && errno != EINTR))
		client_abort(cl);
}

/*
 * Everything a client does happens here, once per readiness: send, read,
 * answer the complete requests (or refill a raw stream), send again. The
 * client is closed only at the end, when it is finished or was dropped.
 */
static void on_client(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct client *cl = data;
	(void)io;
	(void)fd;
	if (revents & (EVM_ERROR | EVM_HANGUP))
		client_abort(cl);
	client_send(cl); /* first: requests wait while the output is high */
	if (!cl->aborted && (revents & EVM_READ) && (cl->events & EVM_READ))
		client_read(cl);
	if (cl->raw)
		raw_pump(cl);
	else
		process_input(cl);
	client_send(cl);
	if (cl->aborted || client_done(cl))
		client_close(cl);
	else
		client_update(cl);
}

int control_subscribe(struct client *cl, const char *const *patterns, size_t n)
{
	char **p = n ? calloc(n, sizeof(*p)) : NULL;
	if (n && !p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!(p[i] = strdup(patterns[i]))) {
			while (i--)
				free(p[i]);
			free(p);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < cl->npatterns; i++)
		free(cl->patterns[i]);
	free(cl->patterns);
	cl->patterns = p;
	cl->npatterns = n;
	cl->subscribed = true;
	return 0;
}

static bool wants(const struct client *cl, const char *service)
{
	if (!cl->npatterns || !service)
		return true; /* daemon-level events go to every subscriber */
	for (size_t i = 0; i < cl->npatterns; i++) {
		const char *p = cl->patterns[i];
		size_t pl = strlen(p);
		/* "web" also follows the instances web:0, web:1, ... */
		if (!fnmatch(p, service, 0) || (!strncmp(service, p, pl) && service[pl] == ':'))
			return true;
	}
	return false;
}

/*
 * The memory of all subscribers' unsent output: their buffers' sizes, not
 * the bytes in them (a buffer grows by doubling, so 1,000 stuck ones held
 * half again as much as their bytes). The slowest one (most behind) in *worst.
 */
static size_t subscribers_pending(struct control *ctl, struct client **worst)
{
	size_t total = 0;
	*worst = NULL;
	for (struct client *cl = ctl->clients; cl; cl = cl->next) {
		if (!cl->subscribed || cl->aborted)
			continue;
		total += cl->out.cap;
		if (!*worst || cl->out.len > (*worst)->out.len)
			*worst = cl;
	}
	return total;
}

void control_publish(struct control *ctl, const char *service, const char *line)
{
	size_t n = strlen(line);
	struct client *worst;
	size_t total = subscribers_pending(ctl, &worst);
	for (struct client *cl = ctl->clients; cl; cl = cl->next) {
		if (!cl->subscribed || cl->aborted || !wants(cl, service))
			continue;
		if (cl->out.len + n + 1 > ctl->o.max_pending) {
			logf_(ctl, "client %u (pid %d): dropped: %zu bytes of events not read", cl->id,
			      (int)cl->pid, cl->out.len);
			total -= cl->out.len;
			ctl->dropped++;
			ctl->dropped_bytes += cl->out.len;
			client_abort(cl);
			continue;
		}
		size_t before = cl->out.cap;
		client_send_line(cl, line, n);
		client_send(cl);
		client_update(cl);
		total = total - before + (cl->aborted ? 0 : cl->out.cap);
		/* all subscribers together: the one furthest behind goes first */
		while (total > ctl->o.max_total && subscribers_pending(ctl, &worst) > ctl->o.max_total &&
		       worst) {
			logf_(ctl, "client %u (pid %d): dropped: the slowest of the subscribers, who "
			      "hold %zu bytes of unread events in all (limit %zu)", worst->id,
			      (int)worst->pid, total, ctl->o.max_total);
			total -= worst->out.cap;
			ctl->dropped++;
			ctl->dropped_bytes += worst->out.len;
			client_abort(worst);
		}
	}
}

/* ----------------------------------------------------------- accepting */

static void refuse(int fd, const char *msg)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "{\"ok\":false,\"error\":\"%s\"}\n", msg);
	ssize_t w = send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w;
	close(fd);
}

/* A refused client's fd may have come from the reserve: it goes back there. */
static void refuse_client(struct control *ctl, int fd, const char *msg)
{
	refuse(fd, msg);
	if (ctl->o.fd_closed)
		ctl->o.fd_closed(ctl->o.data);
}

/* A client on fd, from a peer with credentials cr; NULL with why (fd not closed). */
static struct client *client_new(struct control *ctl, int fd, const struct ucred *cr,
				 const char **why)
{
	if (ctl->nclients >= ctl->o.max_clients) {
		logf_(ctl, "control: refused pid %d: %u clients already connected", (int)cr->pid,
		      ctl->nclients);
		*why = "too many clients";
		return NULL;
	}
	struct client *cl = calloc(1, sizeof(*cl));
	if (!cl) {
		*why = "out of memory";
		return NULL;
	}
	cl->ctl = ctl;
	cl->fd = fd;
	cl->uid = cr->uid;
	cl->pid = cr->pid;
	cl->id = ++ctl->next_id;
	cl->events = EVM_READ;
	if (evm_io_add(ctl->loop, fd, EVM_READ, on_client, cl, &cl->io) < 0) {
		free(cl);
		*why = "daemon cannot watch the connection";
		return NULL;
	}
	cl->next = ctl->clients;
	if (cl->next)
		cl->next->prev = cl;
	ctl->clients = cl;
	ctl->nclients++;
	return cl;
}

static void accept_one(struct control *ctl, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	const char *why = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		logf_(ctl, "control: SO_PEERCRED: %s: refusing the client", strerror(errno));
		refuse_client(ctl, fd, "cannot check your credentials");
		return;
	}
	if (cr.uid != 0 && cr.uid != geteuid()) {
		logf_(ctl, "control: refused pid %d: uid %u is neither root nor the daemon's uid %u",
		      (int)cr.pid, (unsigned)cr.uid, (unsigned)geteuid());
		refuse_client(ctl, fd, "permission denied: only root and the daemon's user may use this socket");
		return;
	}
	struct client *cl = client_new(ctl, fd, &cr, &why);
	if (!cl) {
		refuse_client(ctl, fd, why);
		return;
	}
	idle_update(cl);
}

void control_followers(struct control *ctl, control_follower_cb fn, void *data)
{
	for (struct client *cl = ctl->clients; cl; cl = cl->next) {
		client_send(cl);
		/* only between requests, with nothing unsent: a request or line would be cut */
		if (!cl->subscribed || cl->aborted || cl->raw || cl->pending || cl->in.len ||
		    cl->out.len || cl->eof)
			continue;
		fn(cl->fd, (const char *const *)cl->patterns, cl->npatterns, data);
	}
}

int control_take_follower(struct control *ctl, int fd, const char *const *patterns, size_t n)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	const char *why = NULL;
	struct client *cl = NULL;
	int r = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ? -errno : 0;
	if (r == 0 && !(cl = client_new(ctl, fd, &cr, &why)))
		r = -ENOMEM;
	if (r == 0 && (r = control_subscribe(cl, patterns, n)) < 0)
		client_abort(cl); /* closed by its callback */
	if (cl)
		return r;
	close(fd);
	return r;
}

static void on_listen(struct evm_io *io, int lfd, unsigned revents, void *data);

static void on_resume(struct evm_timer *t, void *data)
{
	struct control *ctl = data;
	(void)t;
	ctl->resume = NULL;
	evm_io_modify(ctl->io, EVM_READ);
}

static void on_calm(struct evm_timer *t, void *data)
{
	struct control *ctl = data;
	(void)t;
	ctl->calm = NULL;
	ctl->starved = false;
	logf_(ctl, "control: accepting clients again (out of file descriptors for %.1f s: "
		   "paused %u times)",
	      (double)(ctl->last_ns - ctl->starved_ns) / 1e9 + RESUME_MS / 1e3, ctl->pauses);
}

/*
 * No descriptor for a client, not even the spare one to refuse it (the
 * limit was lowered below what we hold): a readable listening socket would
 * wake the loop at once, forever. Stop watching it for RESUME_MS instead;
 * the client waits in the backlog until an fd is free. At the limit an
 * accept often succeeds between two pauses (an fd came free): the episode
 * is logged once when it begins and once CALM_MS after its last pause.
 */
static void pause_accept(struct control *ctl)
{
	if (!ctl->starved) {
		logf_(ctl, "control: out of file descriptors, not even one to refuse a client: "
			   "accepting again every %d ms until one is free", RESUME_MS);
		ctl->pauses = 0;
		ctl->starved_ns = evm_loop_now(ctl->loop);
	}
	ctl->starved = true;
	ctl->pauses++;
	ctl->last_ns = evm_loop_now(ctl->loop);
	evm_timer_cancel(ctl->calm);
	ctl->calm = NULL;
	if (ctl->resume || evm_timer_add(ctl->loop, RESUME_MS, on_resume, ctl, &ctl->resume) < 0)
		return; /* no timer: keep watching (spinning beats never accepting again) */
	evm_io_modify(ctl->io, 0);
}

/* accept failed for want of fds: true when a new try may succeed */
static bool out_of_fds(struct control *ctl, int lfd, int e)
{
	if (e == EMFILE && ctl->o.need_fd && ctl->o.need_fd(ctl->o.data))
		return true;
	if (ctl->reserve_fd >= 0) {
		/* free our spare one to accept and refuse */
		close(ctl->reserve_fd);
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			refuse(fd, "daemon out of file descriptors");
		ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			logf_(ctl, "control: out of file descriptors: refused a client");
			return false; /* the next one at the next readiness */
		}
	}
	pause_accept(ctl);
	return false;
}

static void on_listen(struct evm_io *io, int lfd, unsigned revents, void *data)
{
	struct control *ctl = data;
	(void)io;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			if (ctl->starved && !ctl->calm &&
			    evm_timer_add(ctl->loop, CALM_MS, on_calm, ctl, &ctl->calm) < 0)
				on_calm(NULL, ctl); /* no timer: said at once */
			if (ctl->reserve_fd < 0) /* lost when the limit was below our use */
				ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			accept_one(ctl, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && out_of_fds(ctl, lfd, errno))
			continue;
		break;
	}
}

int control_open(struct evm_loop *loop, const struct control_opts *opts, struct control **out,
		 char *err, size_t errlen)
{
	*out = NULL;
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ctl->loop = loop;
	ctl->o = *opts;
	if (!ctl->o.max_clients)
		ctl->o.max_clients = 1024;
	if (!ctl->o.max_pending)
		ctl->o.max_pending = 4u << 20;
	if (!ctl->o.max_total)
		ctl->o.max_total = (size_t)64 << 20;
	int r = opts->inherit ? sockfile_inherit(&ctl->sf, opts->path, opts->inherit_fd,
						 opts->inherit_lock, err, errlen)
			      : sockfile_open(&ctl->sf, opts->path, err, errlen);
	if (r < 0) {
		free(ctl);
		return -1;
	}
	ctl->o.path = ctl->sf.path;
	r = evm_io_add(loop, ctl->sf.fd, EVM_READ, on_listen, ctl, &ctl->io);
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot watch the socket: %s", ctl->sf.path, strerror(-r));
		sockfile_close(&ctl->sf);
		free(ctl);
		return -1;
	}
	ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = ctl;
	return 0;
}

void control_fds(const struct control *ctl, int *listen_fd, int *lock_fd)
{
	*listen_fd = ctl->sf.fd;
	*lock_fd = ctl->sf.lockfd;
}

int control_client_fd(const struct client *cl)
{
	return cl && !cl->aborted ? cl->fd : -1;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	while (ctl->clients) {
		struct client *cl = ctl->clients;
		if (cl->out.len && !cl->aborted) {
			ssize_t w = send(cl->fd, linebuf_start(&cl->out), cl->out.len,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w;
		}
		client_close(cl);
	}
	evm_timer_cancel(ctl->resume);
	evm_timer_cancel(ctl->calm);
	evm_io_free(ctl->io);
	sockfile_close(&ctl->sf);
	if (ctl->reserve_fd >= 0)
		close(ctl->reserve_fd);
	free(ctl);
}
