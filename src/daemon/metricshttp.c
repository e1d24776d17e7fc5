/*
 * metricshttp.c - GET /metrics over HTTP on metrics_listen, from the
 * daemon's own loop (metrics.h).
 *
 * The HTTP side is libmicrohttpd's, in its external-event-loop mode with
 * epoll and no thread: its epoll fd sits in our loop, which calls MHD_run
 * when it is readable or when MHD's own timeout (idle connections) is due.
 * Requests are answered inside MHD_run, on the loop thread, so the body is
 * rendered from the live state with no lock. MHD's sockets and its epoll fd
 * are close-on-exec: services do not inherit them.
 *
 * libmicrohttpd is opened (dlopen) when metrics_listen asks for it, not
 * linked: it brings GnuTLS, p11-kit, nettle, gmp and six more libraries
 * whose loading and constructors (GnuTLS reads its system configuration)
 * every `evmon init`, `evmon ctl` and daemon without metrics paid at exec.
 */
#include "metrics.h"

#include "daemon.h"
#include "daemonlog.h"
#include "listenaddr.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define METRICS_CONNECTIONS 64 /* at once: scrapers are few */
/*
 * From one address: a client holding every slot (slowly, each for
 * METRICS_REQUEST_SECS below, and again after each cut) kept every other
 * scraper out; now it holds a quarter. MHD refuses the rest at accept.
 */
#define METRICS_PER_ADDRESS 16
#define METRICS_IDLE_SECS 10   /* a connection silent this long is closed */
/*
 * A connection has this long, from its start or the end of its last request,
 * to finish a request (read it and take the whole reply). MHD's timeout is
 * idle time only: 64 clients sending a header byte every few seconds (or
 * reading the reply a byte at a time) held every slot for as long as they
 * liked. Prometheus gives up on a scrape after 10 s by default.
 */
#define METRICS_REQUEST_SECS 10
#define METRICS_REQUEST_NS ((uint64_t)METRICS_REQUEST_SECS * 1000000000u)
#define SCRAPE_BLOCK (16 * 1024) /* the body's pieces: one per connection and loop iteration */

/* the functions of libmicrohttpd used here, from its dlopen */
#define MHD_FUNCS(X)                                                                               \
	X(MHD_start_daemon) X(MHD_stop_daemon) X(MHD_run) X(MHD_get_timeout)                       \
	X(MHD_get_daemon_info) X(MHD_create_response_from_buffer) X(MHD_add_response_header)       \
	X(MHD_queue_response) X(MHD_destroy_response) X(MHD_create_response_from_callback)        \
	X(MHD_get_connection_info)
#define MHD_FIELD(f) __typeof__(f) *f;
static struct {
	void *lib;
	MHD_FUNCS(MHD_FIELD)
} mhd;

/* Open libmicrohttpd once (kept open: the daemon may listen again after a reload). */
static int mhd_load(char *err, size_t errlen)
{
	if (mhd.lib)
		return 0;
	void *lib = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		lib = dlopen("libmicrohttpd.so", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(err, errlen, "libmicrohttpd: %s (install libmicrohttpd12)", dlerror());
		return -1;
	}
#define MHD_LOAD(f)                                                                                \
	if (!(*(void **)&mhd.f = dlsym(lib, #f))) {                                                \
		snprintf(err, errlen, "libmicrohttpd: no %s", #f);                                 \
		dlclose(lib);                                                                      \
		return -1;                                                                         \
	}
	MHD_FUNCS(MHD_LOAD)
	mhd.lib = lib;
	return 0;
}

/* an open connection and since when it has had no finished request */
struct conn {
	struct conn *prev, *next;
	int fd;
	uint64_t since_ns;
	bool cut; /* shut down for taking too long: MHD closes it at its next run */
};

struct metrics_http {
	struct daemon *d;
	struct conn *conns;
	struct MHD_Daemon *mhd;
	struct evm_io *io;
	struct evm_timer *timer; /* MHD's next timeout, or NULL */
	char addr[80];
	char last_error[300]; /* MHD's last message, for a failed start */
	bool at_limit;	      /* METRICS_CONNECTIONS open after a run: see run() */
	unsigned logged;      /* MHD's messages while running (logged at powers of 2) */
	unsigned cuts;	      /* connections cut for a slow request (logged at powers of 2) */
};

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode what)
{
	struct metrics_http *m = cls;
	struct conn *k = *socket_context;
	if (what == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *i =
			mhd.MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		k = i ? calloc(1, sizeof(*k)) : NULL;
		if (!k)
			return; /* out of memory: this one has MHD's idle timeout only */
		k->fd = i->connect_fd;
		k->since_ns = mono_ns();
		k->next = m->conns;
		if (k->next)
			k->next->prev = k;
		m->conns = k;
		*socket_context = k;
	} else if (what == MHD_CONNECTION_NOTIFY_CLOSED && k) {
		if (k->prev)
			k->prev->next = k->next;
		else
			m->conns = k->next;
		if (k->next)
			k->next->prev = k->prev;
		free(k);
		*socket_context = NULL;
	}
}

/* A request was answered (or failed): the connection's next one has the time again. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)con_cls;
	(void)toe;
	const union MHD_ConnectionInfo *i = mhd.MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *k = i ? i->socket_context : NULL;
	if (k)
		k->since_ns = mono_ns();
}

/*
 * Shut down the connections past their time (MHD sees the end of the
 * stream and closes them; the fd stays MHD's). True if any was.
 */
static bool cut_slow(struct metrics_http *m, uint64_t now)
{
	unsigned n = 0;
	for (struct conn *k = m->conns; k; k = k->next) {
		if (k->cut || now - k->since_ns < METRICS_REQUEST_NS)
			continue;
		shutdown(k->fd, SHUT_RDWR);
		k->cut = true;
		n++;
		m->cuts++;
		if (!(m->cuts & (m->cuts - 1)))
			dlog("metrics: closed a connection that took over %d s for a request "
			     "(%u so far)", METRICS_REQUEST_SECS, m->cuts);
	}
	return n > 0;
}

/* ms until the first connection's time is up, or -1 */
static long long next_cut_ms(const struct metrics_http *m, uint64_t now)
{
	long long best = -1;
	for (const struct conn *k = m->conns; k; k = k->next) {
		if (k->cut)
			continue;
		uint64_t end = k->since_ns + METRICS_REQUEST_NS;
		long long ms = end <= now ? 0 : (long long)((end - now + 999999) / 1000000);
		if (best < 0 || ms < best)
			best = ms;
	}
	return best;
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
			     const char *type)
{
	if (!r)
		return MHD_NO;
	mhd.MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		mhd.MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ok = mhd.MHD_queue_response(c, status, r);
	mhd.MHD_destroy_response(r);
	return ok;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
			     const char *type)
{
	return queue(c, status, mhd.MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT),
		     type);
}

/* The body, a piece each time MHD has room for one (at most one per loop iteration). */
static ssize_t body_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	ssize_t n = metrics_scrape_read(cls, buf, max);
	return n > 0 ? n : n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void body_free(void *cls)
{
	metrics_scrape_free(cls);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **con_cls)
{
	struct metrics_http *m = cls;
	static char not_found[] = "evmon: not found: the metrics are at /metrics\n";
	static char not_allowed[] = "evmon: only GET and HEAD\n";
	(void)version;
	(void)upload;
	(void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, sizeof(not_allowed) - 1,
			     "text/plain; charset=utf-8");
	if (*upload_len) /* a body with a GET: ignore it */
		*upload_len = 0;
	if (strcmp(url, "/metrics"))
		return reply(c, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
			     "text/plain; charset=utf-8");
	/* built as it is sent (metrics.h): 10,000 services in one go held the loop 40-80 ms */
	struct metrics_scrape *s = metrics_scrape_new(m->d);
	if (!s)
		return MHD_NO; /* out of memory: close the connection */
	struct MHD_Response *r = mhd.MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SCRAPE_BLOCK,
								       body_read, s, body_free);
	if (!r)
		metrics_scrape_free(s);
	return queue(c, MHD_HTTP_OK, r, "text/plain; version=0.0.4; charset=utf-8");
}

static void on_timer(struct evm_timer *t, void *data);

/* MHD wants to run again within its timeout (0: at once), or only on I/O. */
static void schedule(struct metrics_http *m)
{
	MHD_UNSIGNED_LONG_LONG ms;
	evm_timer_cancel(m->timer); /* clears m->timer */
	long long cut = next_cut_ms(m, mono_ns());
	bool mhd_wants = mhd.MHD_get_timeout(m->mhd, &ms) == MHD_YES;
	if (cut >= 0 && (!mhd_wants || (unsigned long long)cut < ms)) {
		ms = (MHD_UNSIGNED_LONG_LONG)cut;
		mhd_wants = true;
	}
	if (mhd_wants && evm_timer_add(m->d->loop, ms, on_timer, m, &m->timer) < 0)
		dlog("metrics: cannot arm a timer: idle connections close at the next request");
}

static unsigned connections(struct metrics_http *m)
{
	const union MHD_DaemonInfo *i =
		mhd.MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return i ? i->num_connections : 0;
}

/*
 * At its connection limit MHD takes its listening socket out of its epoll
 * set, and puts it back only at the start of a later MHD_run: when the
 * connections close, nothing wakes us for that run (the epoll fd holds
 * nothing, and MHD wants no timeout without connections), and the port
 * answered no one again. So a run that brought the count below the limit
 * is followed by another.
 */
static void run(struct metrics_http *m)
{
	mhd.MHD_run(m->mhd);
	if (cut_slow(m, mono_ns()))
		mhd.MHD_run(m->mhd);
	if (m->at_limit && connections(m) < METRICS_CONNECTIONS) {
		m->at_limit = false;
		mhd.MHD_run(m->mhd);
	}
	if (connections(m) >= METRICS_CONNECTIONS)
		m->at_limit = true;
	schedule(m);
}

static void on_timer(struct evm_timer *t, void *data)
{
	(void)t;
	run(data);
}

static void on_io(struct evm_io *io, int fd, unsigned revents, void *data)
{
	(void)io;
	(void)fd;
	(void)revents;
	run(data);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct metrics_http *m = cls;
	vsnprintf(m->last_error, sizeof(m->last_error), fmt, ap);
	m->last_error[strcspn(m->last_error, "\n")] = '\0';
	if (!m->io)
		return; /* starting: a failure is the caller's to say */
	/* each bad request of anyone who reaches the port: said at 1, 2, 4, 8, ... */
	m->logged++;
	if (!(m->logged & (m->logged - 1)))
		dlog("metrics: %s (%u message%s of the HTTP server so far)", m->last_error, m->logged,
		     m->logged == 1 ? "" : "s");
}

static void bound_address(struct metrics_http *m, const struct sockaddr_storage *ss)
{
	const union MHD_DaemonInfo *pi = mhd.MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
	unsigned port = pi ? pi->port : 0;
	char host[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof(host));
		snprintf(m->addr, sizeof(m->addr), "[%s]:%u", host, port);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
		snprintf(m->addr, sizeof(m->addr), "%s:%u", host, port);
	}
}

int metrics_http_open(struct daemon *d, const char *addr, struct metrics_http **out, char *err,
		      size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (listen_addr_parse(addr, &ss, &sl, err, errlen) < 0 || mhd_load(err, errlen) < 0)
		return -1;
	struct metrics_http *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	m->d = d;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						      : ((struct sockaddr_in *)&ss)->sin_port);
	m->mhd = mhd.MHD_start_daemon(flags, port, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, &ss,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)METRICS_PER_ADDRESS,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_SECS,
				  MHD_OPTION_NOTIFY_CONNECTION, on_connection, m,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, m,
				  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, m, MHD_OPTION_END);
	const union MHD_DaemonInfo *ei = m->mhd ? mhd.MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	if (!ei || evm_io_add(d->loop, ei->epoll_fd, EVM_READ, on_io, m, &m->io) < 0) {
		snprintf(err, errlen, "%s: %s", addr, m->last_error[0] ? m->last_error : "cannot listen");
		metrics_http_close(m);
		return -1;
	}
	bound_address(m, &ss);
	schedule(m);
	*out = m;
	return 0;
}

const char *metrics_http_address(const struct metrics_http *m)
{
	return m->addr;
}

void metrics_http_close(struct metrics_http *m)
{
	if (!m)
		return;
	evm_timer_cancel(m->timer);
	evm_io_free(m->io);
	if (m->mhd)
		mhd.MHD_stop_daemon(m->mhd);
	while (m->conns) { /* told of every close by MHD_stop_daemon; in case one was not */
		struct conn *k = m->conns;
		m->conns = k->next;
		free(k);
	}
	free(m);
}
