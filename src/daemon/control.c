/*
 * control.c - the control socket server (see control.h).
 *
 * Everything is non-blocking and on the loop. Memory per client is bounded:
 * the input buffer holds at most one request line (PROTO_MAX_REQUEST; a
 * longer one is answered with an error and skipped up to its newline), and
 * we stop reading a client while its output is above OUT_SOFT or a deferred
 * reply is pending, so a client that sends without reading only fills its
 * own socket buffer. Event lines are pushed whatever the client does, so a
 * subscriber whose unread output passes max_pending is dropped. Writes use
 * MSG_NOSIGNAL: a vanished client is an EPIPE, never a SIGPIPE.
 *
 * Liveness of the socket file: a lock file (PATH.lock) is flock'ed for the
 * daemon's lifetime. Holding the lock, a leftover socket is stale (its
 * daemon died) and is replaced; failing to take it means a live daemon.
 */
#include "control.h"

#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define OUT_SOFT (256 * 1024) /* stop reading requests above this much unsent output */
#define READ_CHUNK 16384
#define RAW_LOW (128 * 1024)  /* a raw stream is refilled below this much unsent output */

struct client {
	struct control *ctl;
	unsigned id;
	int fd;
	uid_t uid;
	pid_t pid;
	struct evm_io *io;
	unsigned events; /* what io watches */
	struct linebuf in, out;
	unsigned refs;
	bool closed, busy, eof, discarding, dispatching;
	bool resume; /* a late reply came: look at queued requests again */
	cJSON *req_id; /* "id" of the current request, echoed in the reply */
	bool subscribed;
	char **patterns;
	size_t npatterns;
	/* raw stream (control_raw) */
	bool raw, raw_done, pumping;
	control_fill_cb fill;
	control_gone_cb gone;
	void *raw_data;
	struct client *prev, *next;
};

struct control {
	struct evm_loop *loop;
	char *path, *lock_path;
	int fd, lockfd, reserve_fd;
	struct evm_io *io;
	struct control_opts o;
	struct client *clients;
	unsigned nclients, next_id;
	struct evm_timer *resume_timer;
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

static void client_free(struct client *cl)
{
	linebuf_free(&cl->in);
	linebuf_free(&cl->out);
	cJSON_Delete(cl->req_id);
	for (size_t i = 0; i < cl->npatterns; i++)
		free(cl->patterns[i]);
	free(cl->patterns);
	free(cl);
}

void control_client_unref(struct client *cl)
{
	if (cl && --cl->refs == 0)
		client_free(cl);
}

static void client_close(struct client *cl)
{
	if (cl->closed)
		return;
	cl->closed = true;
	struct control *ctl = cl->ctl;
	if (cl->gone) {
		control_gone_cb gone = cl->gone;
		cl->gone = NULL;
		gone(cl->raw_data);
	}
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
	control_client_unref(cl);
}

bool control_client_closed(const struct client *cl)
{
	return cl->closed;
}

unsigned control_client_id(const struct client *cl)
{
	return cl->id;
}

unsigned control_clients(const struct control *ctl)
{
	return ctl->nclients;
}

/* Watch for what we can do next; close when there is nothing left to do. */
static void client_update(struct client *cl)
{
	if (cl->closed)
		return;
	if ((cl->eof && !cl->busy && cl->out.len == 0 && cl->in.len == 0) ||
	    (cl->raw && cl->raw_done && cl->out.len == 0)) {
		client_close(cl);
		return;
	}
	unsigned ev = 0;
	if (!cl->eof && !cl->busy && cl->out.len < OUT_SOFT)
		ev |= EVM_READ;
	if (cl->out.len)
		ev |= EVM_WRITE;
	if (ev != cl->events && evm_io_modify(cl->io, ev) == 0)
		cl->events = ev;
}

static void raw_pump(struct client *cl);

static void client_flush(struct client *cl)
{
	while (!cl->closed && cl->out.len) {
		ssize_t w = send(cl->fd, linebuf_start(&cl->out), cl->out.len,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			linebuf_consume(&cl->out, (size_t)w);
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			client_close(cl); /* EPIPE, ECONNRESET: it went away */
			return;
		}
	}
	if (cl->raw && !cl->pumping) {
		raw_pump(cl); /* it flushes and updates */
		return;
	}
	client_update(cl);
}

/* Refill a raw stream while the client keeps taking it, without blocking. */
static void raw_pump(struct client *cl)
{
	cl->pumping = true;
	cl->refs++;
	for (;;) {
		client_flush(cl); /* sends what it can, then client_update (may close) */
		if (cl->closed || cl->raw_done || cl->out.len >= RAW_LOW)
			break; /* done, or full: EVM_WRITE brings us back */
		size_t before = cl->out.len;
		if (!cl->fill(cl, RAW_LOW - cl->out.len, cl->raw_data))
			cl->raw_done = true;
		if (cl->closed)
			break;
		if (cl->out.len == before) {
			client_update(cl); /* nothing more for now; closes a finished stream */
			break;
		}
	}
	cl->pumping = false;
	control_client_unref(cl);
}

void control_raw(struct client *cl, control_fill_cb fill, control_gone_cb gone, void *data)
{
	cl->raw = true;
	cl->busy = true; /* no more requests: what follows on the connection is not read */
	cl->fill = fill;
	cl->gone = gone;
	cl->raw_data = data;
	linebuf_consume(&cl->in, cl->in.len);
	control_raw_kick(cl);
}

int control_raw_write(struct client *cl, const void *p, size_t n)
{
	if (cl->closed)
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
	if (!cl->closed && cl->raw && !cl->pumping)
		raw_pump(cl);
}

void control_drop(struct client *cl, const char *why)
{
	if (cl->closed)
		return;
	logf_(cl->ctl, "client %u (pid %d): dropped: %s", cl->id, (int)cl->pid, why);
	client_close(cl);
}

size_t control_max_pending(const struct client *cl)
{
	return cl->ctl->o.max_pending;
}

static void client_send_line(struct client *cl, const char *s, size_t n)
{
	char *dst = linebuf_space(&cl->out, n + 1);
	if (!dst) {
		logf_(cl->ctl, "client %u: out of memory for a reply: closing it", cl->id);
		client_close(cl);
		return;
	}
	memcpy(dst, s, n);
	dst[n] = '\n';
	cl->out.len += n + 1;
}

static void process_input(struct client *cl);

static void on_resume(struct evm_timer *t, void *data)
{
	struct control *ctl = data;
	(void)t;
	ctl->resume_timer = NULL;
	/* a request may close any client: start over after each */
	for (bool again = true; again;) {
		again = false;
		for (struct client *cl = ctl->clients; cl; cl = cl->next) {
			if (cl->resume) {
				cl->resume = false;
				process_input(cl);
				again = true;
				break;
			}
		}
	}
}

void control_reply(struct client *cl, cJSON *resp)
{
	if (cl->closed)
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
	cl->busy = false;
	client_flush(cl);
	if (!cl->dispatching && !cl->closed && cl->in.len) {
		/* a late reply: queued requests go on from the loop, not from inside our caller */
		cl->resume = true;
		if (!cl->ctl->resume_timer)
			evm_timer_add(cl->ctl->loop, 0, on_resume, cl->ctl, &cl->ctl->resume_timer);
	}
}

void control_defer(struct client *cl)
{
	cl->refs++;
}

static void reply_error(struct client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_error(struct client *cl, const char *fmt, ...)
{
	char msg[256];
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

static void handle_line(struct client *cl, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
		i++;
	if (i == n)
		return; /* blank lines are ignored */
	cl->busy = true;
	cJSON *req = cJSON_ParseWithLength(p, n);
	if (!req) {
		const char *at = cJSON_GetErrorPtr();
		long off = at && at >= p && at <= p + n ? (long)(at - p) : -1;
		reply_error(cl, "malformed JSON (at byte %ld): a request is one JSON object per line",
			    off);
		return;
	}
	if (!cJSON_IsObject(req)) {
		cJSON_Delete(req);
		reply_error(cl, "a request is a JSON object, e.g. {\"cmd\":\"status\"}");
		return;
	}
	cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
	cJSON_Delete(cl->req_id);
	cl->req_id = id ? cJSON_Duplicate(id, true) : NULL;
	cl->ctl->o.on_request(cl, req, cl->ctl->o.data);
	cJSON_Delete(req);
}

static void process_input(struct client *cl)
{
	cl->refs++;
	cl->dispatching = true;
	while (!cl->closed && !cl->busy && cl->out.len < OUT_SOFT && cl->in.len) {
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
				reply_error(cl, "request line longer than %d bytes", PROTO_MAX_REQUEST);
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
			reply_error(cl, "request line longer than %d bytes", PROTO_MAX_REQUEST);
			continue;
		}
		/* the callback may reply into out, never touches in: parse in place */
		handle_line(cl, linebuf_start(&cl->in), (size_t)n);
		linebuf_consume(&cl->in, take);
	}
	cl->dispatching = false;
	if (!cl->closed)
		client_flush(cl);
	control_client_unref(cl);
}

static void on_client(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct client *cl = data;
	(void)io;
	cl->refs++;
	if (revents & (EVM_ERROR | EVM_HANGUP)) {
		client_close(cl);
	} else {
		if (revents & EVM_WRITE) {
			client_flush(cl);
			/* requests held back while the output was high */
			if (!cl->closed && !cl->busy && cl->in.len && cl->out.len < OUT_SOFT)
				process_input(cl);
		}
		if (!cl->closed && (revents & EVM_READ) && (cl->events & EVM_READ)) {
			char *dst = linebuf_space(&cl->in, READ_CHUNK);
			ssize_t r = dst ? read(fd, dst, READ_CHUNK) : -1;
			if (r > 0) {
				cl->in.len += (size_t)r;
			} else if (r == 0) {
				cl->eof = true;
			} else if (!dst || (errno != EAGAIN && errno != EINTR)) {
				client_close(cl);
			}
			if (!cl->closed) {
				process_input(cl);
				client_update(cl);
			}
		}
	}
	control_client_unref(cl);
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

void control_publish(struct control *ctl, const char *service, const char *line)
{
	size_t n = strlen(line);
	for (struct client *cl = ctl->clients, *next; cl; cl = next) {
		next = cl->next;
		if (!cl->subscribed || !wants(cl, service))
			continue;
		if (cl->out.len + n + 1 > ctl->o.max_pending) {
			logf_(ctl, "client %u (pid %d): dropped: %zu bytes of events not read", cl->id,
			      (int)cl->pid, cl->out.len);
			client_close(cl);
			continue;
		}
		client_send_line(cl, line, n);
		client_flush(cl);
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

static void accept_one(struct control *ctl, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		logf_(ctl, "control: SO_PEERCRED: %s: refusing the client", strerror(errno));
		refuse(fd, "cannot check your credentials");
		return;
	}
	if (cr.uid != 0 && cr.uid != geteuid()) {
		logf_(ctl, "control: refused pid %d: uid %u is neither root nor the daemon's uid %u",
		      (int)cr.pid, (unsigned)cr.uid, (unsigned)geteuid());
		refuse(fd, "permission denied: only root and the daemon's user may use this socket");
		return;
	}
	if (ctl->nclients >= ctl->o.max_clients) {
		logf_(ctl, "control: refused pid %d: %u clients already connected", (int)cr.pid,
		      ctl->nclients);
		refuse(fd, "too many clients");
		return;
	}
	struct client *cl = calloc(1, sizeof(*cl));
	if (!cl) {
		refuse(fd, "out of memory");
		return;
	}
	cl->ctl = ctl;
	cl->fd = fd;
	cl->uid = cr.uid;
	cl->pid = cr.pid;
	cl->id = ++ctl->next_id;
	cl->refs = 1;
	cl->events = EVM_READ;
	if (evm_io_add(ctl->loop, fd, EVM_READ, on_client, cl, &cl->io) < 0) {
		free(cl);
		refuse(fd, "daemon cannot watch the connection");
		return;
	}
	cl->next = ctl->clients;
	if (cl->next)
		cl->next->prev = cl;
	ctl->clients = cl;
	ctl->nclients++;
}

static void on_listen(struct evm_io *io, int lfd, unsigned revents, void *data)
{
	struct control *ctl = data;
	(void)io;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			accept_one(ctl, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE && ctl->o.need_fd && ctl->o.need_fd(ctl->o.data))
			continue;
		if ((errno == EMFILE || errno == ENFILE) && ctl->reserve_fd >= 0) {
			/* out of fds: free our spare one to accept and refuse, or we would spin */
			close(ctl->reserve_fd);
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				refuse(fd, "daemon out of file descriptors");
			ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			logf_(ctl, "control: out of file descriptors: refused a client");
		}
		break;
	}
}

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* Take the lock that says "a daemon serves this path". */
static int take_lock(struct control *ctl, char *err, size_t errlen)
{
	ctl->lockfd = open(ctl->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (ctl->lockfd < 0)
		return fail(err, errlen, "%s: %s", ctl->lock_path, strerror(errno));
	if (flock(ctl->lockfd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(ctl->lockfd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		int e = errno;
		close(ctl->lockfd);
		ctl->lockfd = -1;
		if (e == EWOULDBLOCK)
			return fail(err, errlen, "%s: another evmon daemon is running (pid %s)",
				    ctl->path, *pid ? pid : "?");
		return fail(err, errlen, "%s: %s", ctl->lock_path, strerror(e));
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(ctl->lockfd, 0) < 0 || pwrite(ctl->lockfd, pid, (size_t)n, 0) < 0) {
		/* the pid is only for the message above */
	}
	return 0;
}

/* Something that answers on the path without our lock is not ours to replace. */
static bool someone_listens(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return live;
}

int control_open(struct evm_loop *loop, const struct control_opts *opts, struct control **out,
		 char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char tmp[sizeof(sa.sun_path) + 32];
	*out = NULL;
	if (strlen(opts->path) >= sizeof(sa.sun_path))
		return fail(err, errlen, "%s: socket path longer than %zu bytes", opts->path,
			    sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, opts->path);
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return fail(err, errlen, "out of memory");
	ctl->loop = loop;
	ctl->o = *opts;
	if (!ctl->o.max_clients)
		ctl->o.max_clients = 1024;
	if (!ctl->o.max_pending)
		ctl->o.max_pending = 4u << 20;
	ctl->fd = ctl->lockfd = ctl->reserve_fd = -1;
	ctl->path = strdup(opts->path);
	if (!ctl->path || asprintf(&ctl->lock_path, "%s.lock", opts->path) < 0) {
		ctl->lock_path = NULL;
		fail(err, errlen, "out of memory");
		goto bad;
	}
	ctl->o.path = ctl->path;
	if (take_lock(ctl, err, errlen) < 0)
		goto bad;

	struct stat st;
	if (lstat(ctl->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fail(err, errlen, "%s: exists and is not a socket", ctl->path);
			goto bad;
		}
		if (someone_listens(&sa)) {
			fail(err, errlen, "%s: another process is listening on it", ctl->path);
			goto bad;
		}
	}

	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ctl->fd < 0) {
		fail(err, errlen, "socket: %s", strerror(errno));
		goto bad;
	}
	/* bind a private name 0600 from the start, then rename it over the path */
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", ctl->path, (int)getpid());
	struct sockaddr_un ta = {.sun_family = AF_UNIX};
	if (strlen(tmp) >= sizeof(ta.sun_path)) {
		fail(err, errlen, "%s: socket path too long", ctl->path);
		goto bad;
	}
	strcpy(ta.sun_path, tmp);
	unlink(tmp);
	mode_t old = umask(0177);
	int r = bind(ctl->fd, (struct sockaddr *)&ta, sizeof(ta));
	umask(old);
	if (r < 0) {
		fail(err, errlen, "%s: bind: %s", tmp, strerror(errno));
		goto bad;
	}
	if (listen(ctl->fd, SOMAXCONN) < 0 || rename(tmp, ctl->path) < 0) {
		fail(err, errlen, "%s: %s", ctl->path, strerror(errno));
		unlink(tmp);
		goto bad;
	}
	r = evm_io_add(loop, ctl->fd, EVM_READ, on_listen, ctl, &ctl->io);
	if (r < 0) {
		fail(err, errlen, "%s: cannot watch the socket: %s", ctl->path, strerror(-r));
		unlink(ctl->path);
		goto bad;
	}
	ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = ctl;
	return 0;
bad:
	if (ctl->fd >= 0)
		close(ctl->fd);
	if (ctl->lockfd >= 0)
		close(ctl->lockfd);
	free(ctl->path);
	free(ctl->lock_path);
	free(ctl);
	return -1;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	while (ctl->clients) {
		struct client *cl = ctl->clients;
		if (cl->out.len) {
			ssize_t w = send(cl->fd, linebuf_start(&cl->out), cl->out.len,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w;
		}
		client_close(cl);
	}
	if (ctl->resume_timer)
		evm_timer_cancel(ctl->resume_timer);
	evm_io_free(ctl->io);
	close(ctl->fd);
	unlink(ctl->path);
	unlink(ctl->lock_path);
	close(ctl->lockfd);
	if (ctl->reserve_fd >= 0)
		close(ctl->reserve_fd);
	free(ctl->path);
	free(ctl->lock_path);
	free(ctl);
}
