/*
 * output.c - a service's stdio and the capture of its output (see output.h).
 *
 * Reading: a captured stream is a pipe; the daemon keeps both ends for the
 * unit's life (so the pipe never reaches EOF and every new process gets
 * the same write end) and watches the read end, non-blocking, on the loop.
 * Each chunk read (CHUNK bytes at most; a few per readiness while the pipe
 * stays full, less for a small log_max_bytes: logfile_burst) is written to
 * the file before the next: the daemon never holds more than one chunk,
 * and a service writing faster than the disk fills its pipe and blocks
 * there. That bound holds however many services
 * write at once. A pipe starts at the kernel's 64 KiB and grows to
 * BUSY_PIPE once its service has filled it.
 *
 * Lines: only whole lines are written, so evmon's lines, rotation and the
 * timestamps always fall between lines. An unfinished line is held (per
 * stream, only its bytes) until its newline; past LINE_MAX it is written
 * with a newline added, and at an exit it is written as it is, with a
 * newline. Bytes are never interpreted otherwise: binary output passes
 * through unchanged.
 *
 * Descriptors: 2 per pipe, 1 pipe per service when stderr is merged into
 * stdout (2 when kept apart); files are opened only while output flows
 * (logfile.c).
 *
 * Console (stdout/stderr = console, for a container's PID 1): the same
 * capture, but the lines go to the daemon's own stdout (or stderr), each
 * with the service's prefix ("web | "), coloured when that is a terminal.
 * They go through the fd's sink (stdsink.c), in whole lines only, so two
 * services' lines never mix and a reader that does not keep up costs
 * dropped lines (counted, and said), never a blocked loop. evmon's own
 * lines are the daemon's log there already: they are not repeated.
 */
#include "output.h"

#include "cli.h"
#include "fdreserve.h"
#include "proto.h"
#include "spawnwhy.h"
#include "stdsink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)	  /* read per readiness: one default pipe's worth */
#define LINE_MAX_BYTES (64 * 1024) /* an unfinished line held longer than this is cut */
#define DRAIN_MAX (2 * BUSY_PIPE) /* read at an exit, at most, before evmon's line */
#define TS_LEN 24		  /* "2026-11-27T11:06:15.830Z" */
#define BUSY_PIPE (1024 * 1024)	  /* the pipe of a service that fills it */
#define BUSY_CHUNKS 4		  /* chunks read per readiness from a busy pipe */

struct capture {
	struct svc_output *o;
	int rfd, wfd;		/* -1 when this stream is not captured */
	struct evm_io *io;
	struct logfile *file;	/* NULL for the console */
	int console;		/* 1 or 2: the daemon's fd the lines go to; -1: a log file */
	char *prefix;		/* the console's prefix, colour included, or NULL */
	size_t prefix_len;
	char *part;		/* an unfinished line */
	uint32_t plen;
	bool grown;		/* F_SETPIPE_SZ done */
};

struct svc_output {
	unsigned refs;
	bool timestamps;
	unsigned shape;		/* what is captured (output_fits) */
	struct capture cap[2];	/* stdout (or both, merged), stderr */
	struct spawn_facts facts; /* of its definition, to say what a failed spawn's errno hides */
};

enum { SHAPE_OUT = 1, SHAPE_ERR = 2, SHAPE_MERGED = 4, SHAPE_CON_OUT = 8, SHAPE_CON_ERR = 16 };

static unsigned shape_of(const struct svc_conf *c)
{
	unsigned s = 0;
	if (OUT_CAPTURED(c->pol.out[0]))
		s |= SHAPE_OUT | (c->pol.out[0] == OUT_CONSOLE ? SHAPE_CON_OUT : 0);
	if (OUT_CAPTURED(c->pol.out[1]))
		s |= SHAPE_ERR | (c->pol.out[1] == OUT_CONSOLE ? SHAPE_CON_ERR : 0);
	if (OUT_CAPTURED(c->pol.out[0]) && c->pol.out[1] == OUT_STDOUT)
		s |= SHAPE_MERGED;
	return s;
}

bool output_captures(const struct svc_conf *c)
{
	return shape_of(c) != 0;
}

bool output_fits(const struct svc_output *o, const struct svc_conf *c)
{
	return o->shape == shape_of(c);
}

/* ------------------------------------------------------------ writing */

#define PREFIX_BYTES (OUT_PREFIX_MAX + 160 + 16) /* the name and the colour codes */

/* Lines with a timestamp or a prefix are assembled here; the daemon has one loop, one buffer. */
static struct {
	char buf[PREFIX_BYTES + TS_LEN + 1 + LINE_MAX_BYTES + CHUNK + 1];
	size_t len;
	struct capture *c;
} ob;

static void ob_flush(void)
{
	if (ob.len && ob.c->console >= 0)
		stdsink_write(ob.c->console, ob.buf, ob.len);
	else if (ob.len)
		logfile_write(ob.c->file, ob.buf, ob.len);
	ob.len = 0;
}

/* One line (p without its newline) into the buffer, with c's prefix and ts (or NULL) in front. */
static void ob_line(struct capture *c, const char *ts, const char *p, size_t n)
{
	size_t need = c->prefix_len + (ts ? TS_LEN + 1 : 0) + n + 1;
	if (ob.len && (ob.c != c || ob.len + need > sizeof(ob.buf)))
		ob_flush();
	ob.c = c;
	char *d = ob.buf + ob.len;
	if (c->prefix_len) {
		memcpy(d, c->prefix, c->prefix_len);
		d += c->prefix_len;
	}
	if (ts) {
		memcpy(d, ts, TS_LEN);
		d[TS_LEN] = ' ';
		d += TS_LEN + 1;
	}
	memcpy(d, p, n);
	d[n] = '\n';
	ob.len += need;
}

/* Whole lines p[0..n) (n > 0, p[n-1] == '\n'). */
static void emit(struct capture *c, const char *p, size_t n, const char *ts)
{
	if (!ts && !c->prefix_len && c->console < 0) {
		ob_flush();
		logfile_write(c->file, p, n);
		return;
	}
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t k = (size_t)(nl - p);
		ob_line(c, ts, p, k);
		p += k + 1;
		n -= k + 1;
	}
	ob_flush();
}

static void keep(struct capture *c, const char *p, size_t n)
{
	if (!n) {
		free(c->part);
		c->part = NULL;
		c->plen = 0;
		return;
	}
	char *q = realloc(c->part, n);
	if (!q) {
		/* no memory to hold it: better written cut than lost */
		ob_line(c, NULL, p, n);
		ob_flush();
		free(c->part);
		c->part = NULL;
		c->plen = 0;
		return;
	}
	memcpy(q, p, n);
	c->part = q;
	c->plen = (uint32_t)n;
}

static const char *timestamp(const struct svc_output *o, char *buf, size_t len)
{
	if (!o->timestamps)
		return NULL;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return proto_time(&ts, buf, len);
}

/* buf = the held line + what was just read: write the whole lines, hold the rest. */
static void take(struct capture *c, char *buf, size_t len)
{
	char tsb[40];
	const char *ts = timestamp(c->o, tsb, sizeof(tsb));
	const char *nl = memrchr(buf, '\n', len);
	size_t whole = nl ? (size_t)(nl - buf) + 1 : 0, off = 0;
	if (whole) {
		/* only the first line, the held one, can be longer than LINE_MAX: cut it the same way */
		size_t first = (size_t)((const char *)memchr(buf, '\n', whole) - buf);
		for (; first - off > LINE_MAX_BYTES; off += LINE_MAX_BYTES)
			ob_line(c, ts, buf + off, LINE_MAX_BYTES);
		emit(c, buf + off, whole - off, ts);
	}
	const char *rest = buf + whole;
	size_t rlen = len - whole;
	for (; rlen >= LINE_MAX_BYTES; rest += LINE_MAX_BYTES, rlen -= LINE_MAX_BYTES)
		ob_line(c, ts, rest, LINE_MAX_BYTES);
	ob_flush();
	keep(c, rest, rlen);
}

/* The held line, as it is, with a newline: its writer is gone. */
static void flush_partial(struct capture *c)
{
	if (!c->plen)
		return;
	char tsb[40];
	ob_line(c, timestamp(c->o, tsb, sizeof(tsb)), c->part, c->plen);
	ob_flush();
	keep(c, NULL, 0);
}

/* Read one chunk of want bytes at most; returns the bytes read, 0 when the pipe is empty, or -errno. */
static ssize_t read_chunk(struct capture *c, size_t want)
{
	static char rbuf[LINE_MAX_BYTES + CHUNK];
	size_t plen = c->plen;
	if (plen)
		memcpy(rbuf, c->part, plen);
	ssize_t n;
	do
		n = read(c->rfd, rbuf + plen, want);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (n == 0)
		return 0; /* no writer left: cannot happen while we hold one */
	take(c, rbuf, plen + (size_t)n);
	return n;
}

static void on_readable(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct capture *c = data;
	(void)io;
	(void)revents;
	/* a small log_max_bytes: about a file's worth per wake-up (logfile_burst) */
	size_t most = c->file ? logfile_burst(c->file, BUSY_CHUNKS * CHUNK) : BUSY_CHUNKS * CHUNK;
	for (size_t got = 0; got < most;) {
		size_t want = most - got < CHUNK ? most - got : CHUNK;
		ssize_t n = read_chunk(c, want);
		if (n < (ssize_t)want)
			break;
		got += want;
		/* a full chunk: the writer is ahead of us */
		if (!c->grown && want == CHUNK) {
			/*
			 * A bigger pipe for a service that writes that much: 16 times
			 * fewer wake-ups of it and of us per MB. Only busy pipes grow,
			 * so the kernel memory a full pipe holds stays small for the
			 * rest. Best effort: the per-user pipe limit may refuse it.
			 * Not for one read a little per wake-up: a bigger pipe would
			 * save no wake-up, and its drain at an exit would be longer.
			 */
			c->grown = true;
			fcntl(fd, F_SETPIPE_SZ, BUSY_PIPE);
		}
	}
}

/* Everything the pipe holds now (bounded: other writers may keep adding), then the held line. */
static void drain(struct capture *c)
{
	if (c->rfd < 0)
		return;
	for (size_t got = 0; got < DRAIN_MAX;) {
		ssize_t n = read_chunk(c, CHUNK);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	flush_partial(c);
}

/* ------------------------------------------------------- evmon's lines */

static struct logfile *main_file(const struct svc_output *o)
{
	return o->cap[0].file ? o->cap[0].file : o->cap[1].file;
}

static void note(struct svc_output *o, const struct timespec *when, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void note(struct svc_output *o, const struct timespec *when, const char *fmt, ...)
{
	struct logfile *f = main_file(o);
	if (!f) /* console only: the daemon's log says it */
		return;
	char line[768], t[40];
	int n = snprintf(line, sizeof(line) - 1, "%s evmon: ", proto_time(when, t, sizeof(t)));
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - 1 - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	ob_flush();
	logfile_write(f, line, len);
}

static bool is_up(enum evm_state s)
{
	return s == EVM_STATE_STARTING || s == EVM_STATE_RUNNING || s == EVM_STATE_RELOADING;
}

/* "exited with code 1", "killed by signal TERM (core dumped)" */
static void how(const struct evm_exit *x, char *buf, size_t len)
{
	proto_exit_how(x->status_unknown ? 0 : x->signal,
		       x->signal ? cli_signal_name(x->signal) : NULL, x->core_dumped,
		       x->status_unknown ? -1 : x->code, buf, len);
}

/* What happens next, after an exit or a failed start. */
static void next_step(const struct evm_event *ev, char *buf, size_t len)
{
	char d[32];
	switch (ev->state) {
	case EVM_STATE_BACKOFF:
		snprintf(buf, len, "restarting in %s (restart %u)",
			 proto_duration(ev->delay_ms, d, sizeof(d)), ev->restarts + 1);
		break;
	case EVM_STATE_STOPPED:
		snprintf(buf, len, ev->removed ? "stopped; removed" : "stopped");
		break;
	case EVM_STATE_EXITED:
		snprintf(buf, len, "not restarted");
		break;
	case EVM_STATE_FATAL:
		/* the library's message says "gave up after ..." itself: once */
		if (ev->message && strstr(ev->message, "gave up"))
			snprintf(buf, len, "%s", ev->message);
		else
			snprintf(buf, len, "gave up%s%s", ev->message ? ": " : "",
				 ev->message ? ev->message : "");
		break;
	default:
		snprintf(buf, len, "%s", evm_state_name(ev->state));
		break;
	}
}

void output_on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct svc_output *o = data;
	char h[96], next[400], d[32];
	(void)loop;
	if (ev->exit) {
		/* the exit was seen after the process wrote its last byte: all of it is in the pipes */
		drain(&o->cap[0]);
		drain(&o->cap[1]);
		how(ev->exit, h, sizeof(h));
		next_step(ev, next, sizeof(next));
		note(o, &ev->exit->end_time, "pid %d %s after %s; %s", (int)ev->exit->pid, h,
		     proto_duration(ev->exit->runtime_ns / 1000000, d, sizeof(d)), next);
	} else if (ev->old_state == EVM_STATE_RELOADING && ev->state == EVM_STATE_RUNNING) {
		note(o, &ev->time, "%s", ev->message ? ev->message : "reloaded");
	} else if (ev->error) {
		/* "exec X: Exec format error; gave up after 4 failed starts in a row": the
		 * library's message has the next step of a fatal one already */
		bool told = ev->state == EVM_STATE_FATAL && ev->message &&
			    strstr(ev->message, "gave up") && strncmp(ev->message, "gave up", 7);
		const char *msg = ev->message && strncmp(ev->message, "gave up", 7) ? ev->message
										 : strerror(-ev->error);
		char why[400], more[1200];
		if (spawn_why(&o->facts, ev->stage, ev->error, why, sizeof(why))) {
			spawn_why_insert(msg, ev->error, why, more, sizeof(more));
			msg = more;
		}
		next_step(ev, next, sizeof(next));
		note(o, &ev->time, "cannot start it: %s%s%s", msg, told ? "" : "; ", told ? "" : next);
	} else if (is_up(ev->state) && !is_up(ev->old_state) && ev->pid > 0) {
		bool adopted = ev->message && !strncmp(ev->message, "adopted", 7);
		note(o, &ev->time, "%s pid %d", adopted ? "adopted" : "started", (int)ev->pid);
	}
	if (ev->removed)
		output_unref(o);
}

/* ------------------------------------------------------------ lifetime */

static void capture_close(struct capture *c)
{
	if (c->rfd >= 0) {
		drain(c);
		evm_io_free(c->io);
		close(c->rfd);
		close(c->wfd);
	}
	free(c->part);
	free(c->prefix);
	if (c->file)
		logfile_put(c->file);
	memset(c, 0, sizeof(*c));
	c->rfd = c->wfd = -1;
	c->console = -1;
}

/*
 * tmpl with {name} replaced, in one of six colours (by the name, so a
 * service keeps its colour) when fd is a terminal and NO_COLOR is unset.
 */
static int console_prefix(struct capture *c, const char *tmpl, const char *name, int fd)
{
	char buf[PREFIX_BYTES];
	size_t n = 0;
	bool colour = isatty(fd) && !getenv("NO_COLOR");
	if (colour) {
		unsigned h = 5381;
		for (const char *s = name; *s && *s != ':'; s++) /* instances share one */
			h = h * 33 + (unsigned char)*s;
		n += (size_t)snprintf(buf, sizeof(buf), "\033[%um", 31 + h % 6);
	}
	for (const char *s = tmpl ? tmpl : "{name} | "; *s && n < sizeof(buf) - 8;) {
		if (!strncmp(s, "{name}", 6)) {
			int w = snprintf(buf + n, sizeof(buf) - 8 - n, "%s", name);
			n = w < 0 ? n : n + (size_t)w < sizeof(buf) - 8 ? n + (size_t)w : sizeof(buf) - 9;
			s += 6;
		} else {
			buf[n++] = *s++;
		}
	}
	if (colour)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\033[0m");
	c->prefix = malloc(n + 1);
	if (!c->prefix)
		return -ENOMEM;
	memcpy(c->prefix, buf, n);
	c->prefix[n] = '\0';
	c->prefix_len = n;
	return 0;
}

static int capture_open(struct capture *c, struct evm_loop *loop, struct logs *logs,
			const char *name, bool err, int console, const char *prefix,
			const int *kept, char *msg, size_t len)
{
	int p[2] = {kept ? kept[0] : -1, kept ? kept[1] : -1};
	char fname[256];
	if (p[0] >= 0 && p[1] >= 0) {
		/* kept across an exec of ourselves: what the service wrote meanwhile is in it */
		fcntl(p[0], F_SETFD, FD_CLOEXEC);
		fcntl(p[1], F_SETFD, FD_CLOEXEC);
	} else if (pipe2(p, O_CLOEXEC) < 0) {
		int e = errno;
		snprintf(msg, len, "pipe: %s", strerror(e));
		return -e;
	}
	c->rfd = p[0];
	c->wfd = p[1];
	/* the read end only: it is a file description of its own, the child's end stays blocking */
	fcntl(c->rfd, F_SETFL, O_NONBLOCK);
	int r = 0;
	c->console = console;
	if (console >= 0) {
		r = console_prefix(c, prefix, name, console);
	} else {
		snprintf(fname, sizeof(fname), "%s%s", name, err ? ".err.log" : ".log");
		c->file = logfile_get(logs, fname, name);
		r = c->file ? 0 : -ENOMEM;
	}
	if (r == 0)
		r = evm_io_add(loop, c->rfd, EVM_READ, on_readable, c, &c->io);
	if (r < 0) {
		snprintf(msg, len, "cannot watch the pipe: %s", strerror(-r));
		return r;
	}
	return 0;
}

struct svc_output *output_new(struct evm_loop *loop, struct logs *logs, const struct svc_conf *c,
			      const char *name, const char *prefix, const int *kept, int *error,
			      char *msg, size_t len)
{
	struct svc_output *o = calloc(1, sizeof(*o));
	if (!o) {
		*error = -ENOMEM;
		snprintf(msg, len, "out of memory");
		return NULL;
	}
	o->facts.nofile = -1; /* until output_configure */
	o->refs = 1;
	o->shape = shape_of(c);
	for (int i = 0; i < 2; i++) {
		o->cap[i].o = o;
		o->cap[i].rfd = o->cap[i].wfd = -1;
		o->cap[i].console = -1;
	}
	for (int i = 0; i < 2; i++) {
		if (!(o->shape & (i ? SHAPE_ERR : SHAPE_OUT))) {
			for (int k = 0; kept && k < 2; k++) /* kept pipes are ours: one not needed now */
				if (kept[2 * i + k] >= 0)
					close(kept[2 * i + k]);
			continue;
		}
		bool con = o->shape & (i ? SHAPE_CON_ERR : SHAPE_CON_OUT);
		int r = capture_open(&o->cap[i], loop, logs, name, i == 1, con ? i + 1 : -1, prefix,
				     kept ? kept + 2 * i : NULL, msg, len);
		if (r < 0) {
			*error = r;
			output_unref(o);
			return NULL;
		}
	}
	output_configure(o, c);
	return o;
}

void output_fds(struct svc_output *o, int fds[4])
{
	for (int i = 0; i < 2; i++) {
		struct capture *c = &o->cap[i];
		fds[2 * i] = c->rfd;
		fds[2 * i + 1] = c->wfd;
		if (c->rfd >= 0)
			drain(c); /* what it holds, and an unfinished line: nothing stays in our memory */
	}
	ob_flush();
}

void output_configure(struct svc_output *o, const struct svc_conf *c)
{
	o->timestamps = c->pol.log_timestamps;
	spawn_facts_free(&o->facts);
	spawn_facts_of(c, &o->facts);
	for (int i = 0; i < 2; i++)
		if (o->cap[i].file)
			logfile_set_limits(o->cap[i].file, c->pol.log_max_bytes, c->pol.log_backups);
}

/* Nowhere: the daemon's own /dev/null, so a spawn at the fd limit needs none (fdreserve.h). */
static void to_null(struct evm_stdio *s)
{
	int fd = fdres_devnull();
	s->mode = fd >= 0 ? EVM_STDIO_FD : EVM_STDIO_NULL;
	s->fd = fd;
}

void output_stdio(const struct svc_output *o, const struct svc_conf *c, struct evm_stdio stdio[3])
{
	to_null(&stdio[0]);
	for (int i = 0; i < 2; i++) {
		struct evm_stdio *s = &stdio[i + 1];
		enum out_mode m = c->pol.out[i];
		int i_src = i;
		if (m == OUT_STDOUT) {
			m = c->pol.out[0];
			i_src = 0;
		}
		switch (m) {
		case OUT_INHERIT:
			if (i_src == i) {
				s->mode = EVM_STDIO_INHERIT;
			} else {
				s->mode = EVM_STDIO_FD; /* stderr = stdout = the daemon's stdout */
				s->fd = 1;
			}
			break;
		case OUT_LOG:
		case OUT_CONSOLE:
			if (o && o->cap[i_src].wfd >= 0) {
				s->mode = EVM_STDIO_FD;
				s->fd = o->cap[i_src].wfd;
			} else {
				to_null(s); /* the capture could not be made (reported) */
			}
			break;
		case OUT_NULL:
		case OUT_STDOUT:
			to_null(s);
			break;
		}
	}
}

struct logfile *output_file(const struct svc_output *o, bool err)
{
	return o ? o->cap[err ? 1 : 0].file : NULL;
}

struct svc_output *output_ref(struct svc_output *o)
{
	o->refs++;
	return o;
}

void output_unref(struct svc_output *o)
{
	if (!o || --o->refs > 0)
		return;
	capture_close(&o->cap[0]);
	capture_close(&o->cap[1]);
	spawn_facts_free(&o->facts);
	free(o);
}
