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
 * longer one is answered with an error and the connection closed: a client
 * sending megabytes without a newline is not read to its end), and
 * we stop reading a client while its output is above OUT_SOFT or a reply is
 * pending, so a client that sends without reading only fills its
 * own socket buffer. Event lines are pushed whatever the client does, so a
 * subscriber whose unread output passes max_pending is dropped. And all
 * clients' unsent output together (events, replies: a status of 10,000
 * services is megabytes, and a client may ask and never read) stays under
 * max_total: every change of a client's output keeps the sum (ctl->held),
 * and past the limit the slowest reader is dropped (hold_total). Writes
 * use MSG_NOSIGNAL: a vanished client is an EPIPE, never a SIGPIPE.
 *
 * A client waiting for a request of its own holds a slot and an fd, so it
 * may wait only idle_ms (then it is told and closed): a thousand idle
 * connections cannot lock ctl out. Subscribers, raw streams and clients
 * awaiting a reply are not idle; a partial line is not a request.
 *
 * The socket file and its lock are sockfile.c's; accepting (and refusing)
 * clients is controlaccept.c's, subscriptions and publishing controlsub.c's;
 * the structures they share are in controlint.h.
 */
#include "controlint.h"

#include "proto.h"
#include "textsafe.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OUT_SOFT (256 * 1024) /* stop reading requests above this much unsent output */
#define READ_CHUNK 16384
#define RAW_LOW (128 * 1024)  /* a raw stream is refilled below this much unsent output */
#define STREAM_LOW (64 * 1024) /* a reply in pieces: the next when less than this is unsent */
#define STREAM_PIECE (16 * 1024)

void control__log(struct control *ctl, const char *fmt, ...)
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
void control__client_close(struct client *cl)
{
	struct control *ctl = cl->ctl;
	if (cl->gone)
		cl->gone(cl->raw_data);
	if (cl->defer_gone)
		cl->defer_gone(cl->defer_data);
	if (cl->idle)
		evm_timer_cancel(cl->idle);
	if (cl->stall)
		evm_timer_cancel(cl->stall);
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
	if (cl->lasting)
		ctl->nlasting--;
	control__held_moved(ctl, control__held(cl), 0);
	linebuf_free(&cl->in);
	linebuf_free(&cl->out);
	cJSON_Delete(cl->req_id);
	free(cl->patterns); /* one block */
	free(cl);
}

/*
 * Drop a client from anywhere, even from inside its own request: its
 * output is discarded and the socket shut down both ways, which the kernel
 * reports as a hang-up, so its callback closes it from the loop. Nothing
 * is freed here, so no caller up the stack is left holding a freed client.
 */
void control__client_abort(struct client *cl)
{
	if (cl->aborted)
		return;
	control__held_moved(cl->ctl, control__held(cl), 0);
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
	if (cl->closing)
		return !cl->out.len;
	/* a subscriber that shut its writing side down still reads its events, as a
	 * logs -f does: it ends with its connection (a hang-up, a failed send) */
	return cl->eof && !cl->subscribed && !cl->pending && !cl->out.len && !cl->in.len;
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

/*
 * A client that is not one of the lasting ones (events, logs -f), or a brief one, and has a
 * stream or events unsent: a `logs` without -f, metrics, a `ctl wait`'s
 * events. A reply made whole is under the idle clock (it counts from the
 * request); these are not, so a reader that takes none of it for idle_ms
 * (a pager left open, a client that asked and never reads) is dropped
 * instead of keeping a request slot (and a log file) for good.
 */
static bool stalls(const struct client *cl)
{
	/*
	 * A reply in pieces waits with nothing unsent too: an AF_UNIX socket takes
	 * sends until its buffer is full, but is writable again only once it is down
	 * to a quarter, so a piece all sent may leave the rest waiting for a reader
	 * that never reads (`ctl metrics` of 1,000 services was held for good).
	 */
	return (!cl->lasting || cl->brief) && (cl->raw || cl->stream || cl->subscribed) &&
	       (cl->out.len || cl->stream);
}

static void on_stall(struct evm_timer *t, void *data)
{
	struct client *cl = data;
	struct control *ctl = cl->ctl;
	(void)t;
	cl->stall = NULL; /* the loop frees a timer that fired */
	if (cl->aborted || !stalls(cl))
		return;
	uint64_t now = evm_loop_now(ctl->loop), due = cl->moved_ns + ctl->o.idle_ms * 1000000;
	if (now < due) { /* it took some since it was armed: the rest of the period */
		if (evm_timer_add(ctl->loop, (due - now + 999999) / 1000000, on_stall, cl, &cl->stall) < 0)
			cl->stall = NULL;
		return;
	}
	control__log(ctl, "client %u (pid %d): dropped: took none of its output in %llu ms (%zu "
		     "bytes unsent%s)", cl->id, (int)cl->pid, (unsigned long long)ctl->o.idle_ms,
		     cl->out.len, cl->stream ? ", and the rest of its reply not built yet" : "");
	control__client_abort(cl);
}

static void stall_update(struct client *cl)
{
	bool st = stalls(cl);
	if (!cl->ctl->o.idle_ms || st == (cl->stall != NULL))
		return;
	if (!st) {
		evm_timer_cancel(cl->stall);
		cl->stall = NULL;
	} else if (evm_timer_add(cl->ctl->loop, cl->ctl->o.idle_ms, on_stall, cl, &cl->stall) < 0) {
		cl->stall = NULL;
	}
}

/* Waiting for its next request: the idle clock runs (restarted by each request). */
void control__idle_update(struct client *cl)
{
	stall_update(cl);
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

/*
 * A request read and not yet answered, that nothing holds back any more:
 * reading stopped behind a reply over OUT_SOFT, and the socket then took
 * that reply whole. Without a wake-up it would wait for the client to send
 * more (a pipelined status behind `start` of 1,000 services: 10 s, until the
 * idle timeout answered it).
 */
static bool request_waiting(const struct client *cl)
{
	return !cl->pending && !cl->raw && !cl->stream && !cl->closing && cl->out.len < OUT_SOFT &&
	       cl->in.len && (cl->eof || linebuf_line(&cl->in) >= 0 || cl->in.len > PROTO_MAX_REQUEST);
}

/* Watch for what we can do next (a finished client is written to: its callback closes it). */
void control__client_update(struct client *cl)
{
	if (cl->aborted)
		return;
	control__idle_update(cl);
	unsigned ev = 0;
	if (!cl->eof && !cl->pending && !cl->raw && !cl->closing && cl->out.len < OUT_SOFT)
		ev |= EVM_READ;
	if (cl->out.len || client_done(cl) || cl->stream)
		ev |= EVM_WRITE; /* a reply in pieces: its next piece when the socket has room */
	if (request_waiting(cl))
		ev |= EVM_WRITE; /* writable at once: on_client answers it in the next iteration */
	if (ev != cl->events && evm_io_modify(cl->io, ev) == 0)
		cl->events = ev;
}

/* Send what the socket takes now. */
void control__client_send(struct client *cl)
{
	while (!cl->aborted && cl->out.len) {
		ssize_t w = send(cl->fd, linebuf_start(&cl->out), cl->out.len,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			size_t before = control__held(cl);
			cl->moved_ns = evm_loop_now(cl->ctl->loop);
			/* what went first counts as the replies': exact when they came first;
			 * when events came first it counts too many as events (dropped sooner,
			 * as before reply_held was kept), never too few */
			cl->reply_held -= (size_t)w < cl->reply_held ? (size_t)w : cl->reply_held;
			linebuf_consume(&cl->out, (size_t)w);
			control__held_moved(cl->ctl, before, control__held(cl));
		} else if (w < 0 && errno == EINTR)
			continue;
		else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		else
			control__client_abort(cl); /* EPIPE, ECONNRESET: it went away */
	}
}

/*
 * Whether a goes before b when all hold too much: the slower reader is the
 * one behind for longer (its output not empty since an earlier loop
 * iteration), so a reply just made, or a subscriber that keeps up, goes
 * last, and one that takes a byte now and then to look alive does not save
 * itself. Behind since the same iteration (an event that leaves stuck
 * subscribers behind, and the reply to the request that published it):
 * events before a reply, which its client has just asked for, then the one
 * holding most.
 */
static bool slower(const struct client *a, const struct client *b)
{
	if (a->behind_since != b->behind_since)
		return a->behind_since < b->behind_since;
	if (a->subscribed != b->subscribed)
		return a->subscribed;
	return a->out.len > b->out.len;
}

/*
 * The client to drop first; NULL when fewer than two hold output: one
 * client's, however big (a status it asked for), is always kept, and a
 * subscriber's alone is bounded by max_pending anyway.
 */
static struct client *slowest(struct control *ctl)
{
	/* known without a scan: a reply bigger than the total alone does not scan 1,024 clients a line */
	if (ctl->holders < 2)
		return NULL;
	struct client *worst = NULL;
	unsigned holders = 0;
	for (struct client *cl = ctl->clients; cl; cl = cl->next) {
		if (!control__held(cl))
			continue;
		holders++;
		if (!worst || slower(cl, worst))
			worst = cl;
	}
	return holders > 1 ? worst : NULL;
}

/* While all clients' unsent output passes max_total, drop the slowest reader. */
static void hold_total(struct control *ctl)
{
	struct client *worst;
	while (ctl->held > ctl->o.max_total && (worst = slowest(ctl))) {
		uint64_t ms = (evm_loop_now(ctl->loop) - worst->behind_since) / 1000000;
		control__log(ctl, "client %u (pid %d): dropped: the slowest reader (%zu bytes unsent, "
			     "behind for %llu ms): all clients hold %zu bytes of unsent output (limit %zu)",
			     worst->id, (int)worst->pid, worst->out.len, (unsigned long long)ms, ctl->held,
			     ctl->o.max_total);
		if (worst->subscribed) { /* the metrics count subscribers and their events */
			ctl->dropped++;
			ctl->dropped_bytes += worst->out.len;
		}
		control__client_abort(worst);
	}
}

/*
 * n bytes joined cl's output, which held before: the sum of all clients'
 * kept in step. Over the limit, cl first sends what its socket takes (a
 * reader that keeps up is not behind), then the slowest readers are
 * dropped (perhaps cl: a caller that goes on writing finds it aborted).
 */
static void out_grew(struct client *cl, size_t before, size_t n)
{
	struct control *ctl = cl->ctl;
	if (!cl->out.len) /* it had taken everything */
		cl->behind_since = cl->moved_ns = evm_loop_now(ctl->loop);
	if (!cl->publishing)
		cl->reply_held += n;
	cl->out.len += n;
	control__held_moved(ctl, before, control__held(cl));
	if (ctl->held > ctl->o.max_total && ctl->holders > 1) { /* one alone is kept: nothing to do */
		control__client_send(cl);
		hold_total(ctl);
	}
}

/* Refill a raw stream while the client keeps taking it, without blocking. */
static void raw_pump(struct client *cl)
{
	control__client_send(cl);
	while (!cl->aborted && !cl->raw_done && cl->out.len < RAW_LOW) {
		size_t before = cl->out.len;
		if (!cl->fill(cl, RAW_LOW - cl->out.len, cl->raw_data))
			cl->raw_done = true;
		if (cl->out.len == before)
			break; /* nothing more for now */
		control__client_send(cl);
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
	size_t before = control__held(cl);
	char *dst = linebuf_space(&cl->out, n);
	if (!dst)
		return -ENOMEM;
	memcpy(dst, p, n);
	out_grew(cl, before, n);
	return 0;
}

void control_raw_kick(struct client *cl)
{
	if (cl->aborted || !cl->raw)
		return;
	raw_pump(cl);
	control__client_update(cl);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return UINT64_MAX; /* (cannot fail) one piece, then the next iteration */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * A reply in pieces, only while the client has taken most of the last (one
 * that does not read holds at most STREAM_LOW + a piece), and per callback
 * (loop iteration) from STREAM_MIN_PIECES to STREAM_MAX_PIECES, as many as
 * fit in STREAM_BUDGET_NS of the daemon's CPU; then the loop serves
 * everyone else (issue 19: a metrics reply of 10,000 services built in
 * one go held the loop 100-260 ms). One piece per iteration was the rule
 * before: with 1,000 services checked every second an iteration also
 * starts up to 16 checks (tens of ms on a busy machine), so `ctl metrics`
 * (480 KB, 30 pieces) took ~2 s. The budget is CPU time, not wall time:
 * being preempted while building does not make a reply take more
 * iterations.
 */
#define STREAM_BUDGET_NS (2 * 1000000)
#define STREAM_MIN_PIECES 2
#define STREAM_MAX_PIECES 16

static void stream_pump(struct client *cl)
{
	uint64_t t0 = thread_cpu_ns();
	for (unsigned pieces = 0;; pieces++) {
		control__client_send(cl);
		if (cl->aborted || cl->out.len >= STREAM_LOW)
			return; /* the rest when the socket has room */
		if (pieces == STREAM_MAX_PIECES ||
		    (pieces >= STREAM_MIN_PIECES && thread_cpu_ns() - t0 >= STREAM_BUDGET_NS))
			return;
		if (!cl->fill(cl, STREAM_PIECE, cl->raw_data))
			break;
	}
	if (cl->aborted)
		return; /* its gone is called at the close */
	control__client_line(cl, "", 0); /* the newline that ends the reply */
	control_gone_cb gone = cl->gone;
	cl->stream = false;
	cl->gone = NULL;
	cl->fill = NULL;
	cl->pending = false;
	gone(cl->raw_data);
	control__client_send(cl);
}

void control_reply_stream(struct client *cl, control_fill_cb fill, control_gone_cb gone,
			  void *data)
{
	char *id = cl->req_id ? cJSON_PrintUnformatted(cl->req_id) : NULL;
	cl->stream = true;
	cl->fill = fill;
	cl->gone = gone;
	cl->raw_data = data;
	cl->defer_gone = NULL;
	cl->defer_data = NULL;
	if ((cl->req_id && !id) || control_raw_write(cl, "{", 1) < 0 ||
	    (id && (control_raw_write(cl, "\"id\":", 5) < 0 || control_raw_write(cl, id, strlen(id)) < 0 ||
		    control_raw_write(cl, ",", 1) < 0)))
		control_drop(cl, "out of memory for its reply");
	cJSON_free(id);
	cJSON_Delete(cl->req_id);
	cl->req_id = NULL;
	control__client_update(cl); /* pieces from the loop, as it is writable */
}

bool control_subscribed(const struct client *cl)
{
	return cl->subscribed;
}

void control_drop(struct client *cl, const char *why)
{
	if (cl->aborted)
		return;
	control__log(cl->ctl, "client %u (pid %d): dropped: %s", cl->id, (int)cl->pid, why);
	control__client_abort(cl);
}

void control_hold_aside(struct client *cl, size_t bytes)
{
	struct control *ctl = cl->ctl;
	size_t before = control__held(cl), was = cl->aside;
	cl->aside = bytes;
	if (cl->aborted) /* counted as nothing already */
		return;
	if (!cl->out.len && bytes && !was) /* behind from now, as when its output grows */
		cl->behind_since = cl->moved_ns = evm_loop_now(ctl->loop);
	control__held_moved(ctl, before, control__held(cl));
	if (bytes > was && ctl->held > ctl->o.max_total && ctl->holders > 1)
		hold_total(ctl);
}

size_t control_max_pending(const struct client *cl)
{
	return cl->ctl->o.max_pending;
}

void control__client_line(struct client *cl, const char *s, size_t n)
{
	if (cl->aborted)
		return;
	size_t before = control__held(cl);
	char *dst = linebuf_space(&cl->out, n + 1);
	if (!dst) {
		control_drop(cl, "out of memory for its output");
		return;
	}
	memcpy(dst, s, n);
	dst[n] = '\n';
	out_grew(cl, before, n + 1);
}

/*
 * The reply only joins the client's output: it is sent from the client's
 * callback (at the end of the request, or, for a late reply, when the loop
 * sees the socket writable), which then reads the requests queued behind
 * it. So replying never re-enters request handling.
 */
void control_reply(struct client *cl, cJSON *resp)
{
	if (cl->aborted) {
		/* the request is answered as far as its owner goes: no call back at the close */
		cl->defer_gone = NULL;
		cl->defer_data = NULL;
		return;
	}
	if (cl->req_id) {
		cJSON_DeleteItemFromObjectCaseSensitive(resp, "id");
		cJSON_AddItemToObject(resp, "id", cl->req_id);
		cl->req_id = NULL;
	}
	char *s = cJSON_PrintUnformatted(resp);
	if (!s) {
		static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}";
		control__client_line(cl, oom, sizeof(oom) - 1);
	} else {
		size_t n = strlen(s);
		utf8_scrub(s, n); /* a service's bytes need not be UTF-8; JSON must */
		control__client_line(cl, s, n);
		cJSON_free(s);
	}
	cl->pending = false;
	cl->defer_gone = NULL;
	cl->defer_data = NULL;
	control__client_update(cl);
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

/*
 * A string with an escaped NUL (\u0000): cJSON keeps the NUL, and each C
 * string made of it ends there ("KILL\u0000x" was KILL, "web\u0000..." web).
 * Escapes are only inside strings in valid JSON: the raw text says.
 */
static bool escaped_nul(const char *p, size_t n)
{
	for (size_t i = 0; i + 6 <= n; i++) {
		if (p[i] != '\\')
			continue;
		if (!memcmp(p + i + 1, "u0000", 5))
			return true;
		i++; /* what the backslash escapes (an escaped backslash starts nothing) */
	}
	return false;
}

/*
 * No number in v is infinite (1e999 parses as one): the "id" is sent back
 * as read, and cJSON writes an infinity as null, which is not what was
 * sent. Depth: at most PROTO_MAX_DEPTH.
 */
static bool all_finite(const cJSON *v)
{
	if (cJSON_IsNumber(v))
		return isfinite(v->valuedouble);
	for (const cJSON *c = v->child; c; c = c->next)
		if (!all_finite(c))
			return false;
	return true;
}

static void handle_line(struct client *cl, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
		i++;
	if (i == n)
		return; /* blank lines are ignored */
	cl->pending = true;
	control__idle_update(cl); /* a request: the next idle time counts from its reply */
	bool in_str = false, esc = false;
	int depth = 0;
	for (size_t k = i; k < n; k++) {
		/* JSON has none raw (strings escape them); cJSON takes them, and a NUL
		 * then cut a string short: "CONT<NUL>garbage" was CONT */
		unsigned char c = (unsigned char)p[k];
		if (c < 0x20 && c != '\t' && c != '\r') {
			control_reply_error(cl, "a raw control character (0x%02x at byte %zu): not JSON "
					    "(a string escapes it)", c, k);
			return;
		}
		/* too deep is cJSON's "malformed" at the bracket: said as what it is */
		if (esc) {
			esc = false;
		} else if (in_str) {
			esc = c == '\\';
			in_str = c != '"';
		} else if (c == '"') {
			in_str = true;
		} else if ((c == '[' || c == '{') && ++depth > PROTO_MAX_DEPTH) {
			control_reply_error(cl, "nested too deep (at byte %zu): at most %d arrays and "
					    "objects inside one another", k, PROTO_MAX_DEPTH);
			return;
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	const char *end = NULL;
	cJSON *req = cJSON_ParseWithLengthOpts(p, n, &end, false);
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
	while (end && end < p + n && (*end == ' ' || *end == '\t' || *end == '\r'))
		end++;
	if (end && end < p + n) { /* a second request on the line was dropped unanswered */
		cJSON_Delete(req);
		control_reply_error(cl, "text after the request's object (at byte %ld): one request "
				    "per line", (long)(end - p));
		return;
	}
	if (escaped_nul(p, n)) {
		cJSON_Delete(req);
		control_reply_error(cl, "a string with a NUL character (\\u0000): not in a request");
		return;
	}
	cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
	if (id && !all_finite(id)) {
		cJSON_Delete(req);
		control_reply_error(cl, "bad \"id\": a number beyond a double's range (such as "
				    "1e999) cannot be sent back as sent (use a string)");
		return;
	}
	cJSON_Delete(cl->req_id);
	cl->req_id = id ? cJSON_Duplicate(id, true) : NULL;
	cl->ctl->o.on_request(cl, req, cl->ctl->o.data);
	cJSON_Delete(req);
}

/*
 * A line longer than any request: answered with an error, and the connection
 * closed once that is sent. Reading on to its newline would let one client
 * keep the daemon reading (100 MB without a newline) for as long as it likes.
 */
static void refuse_long_line(struct client *cl)
{
	control__log(cl->ctl, "client %u (pid %d): request line longer than %d bytes: closing "
			      "the connection", cl->id, (int)cl->pid, PROTO_MAX_REQUEST);
	linebuf_consume(&cl->in, cl->in.len);
	linebuf_free(&cl->in);
	cl->closing = true;
	cl->pending = true;
	control_reply_error(cl, "request line longer than %d bytes: closing the connection",
			    PROTO_MAX_REQUEST);
}

/* The complete request lines, in order, while each is answered at once. */
static void process_input(struct client *cl)
{
	while (!cl->aborted && !cl->pending && !cl->raw && !cl->closing && cl->out.len < OUT_SOFT &&
	       cl->in.len) {
		ssize_t n = linebuf_line(&cl->in);
		size_t take;
		if (n < 0) {
			if (cl->in.len > PROTO_MAX_REQUEST) {
				refuse_long_line(cl);
				break;
			}
			if (!cl->eof)
				break;
			n = (ssize_t)cl->in.len; /* a last request without its newline */
			take = cl->in.len;
		} else {
			take = (size_t)n + 1;
		}
		if ((size_t)n > PROTO_MAX_REQUEST) {
			refuse_long_line(cl);
			break;
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
		control__client_abort(cl);
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
		control__client_abort(cl);
	control__client_send(cl); /* first: requests wait while the output is high */
	if (!cl->aborted && (revents & EVM_READ) && (cl->events & EVM_READ))
		client_read(cl);
	if (cl->raw)
		raw_pump(cl);
	else if (cl->stream)
		stream_pump(cl);
	if (!cl->raw && !cl->stream)
		process_input(cl); /* also right after a reply in pieces ends */
	control__client_send(cl);
	if (cl->aborted || client_done(cl))
		control__client_close(cl);
	else
		control__client_update(cl);
}

/*
 * Slots kept from clients that stay (event subscribers, logs -f): a
 * thousand subscribers that never leave would otherwise refuse every
 * `evmon ctl status`, root's too, for good.
 */
#define CONTROL_SHORT_SLOTS 16

void control__count_lasting(struct client *cl)
{
	if (!cl->lasting) {
		cl->lasting = true;
		cl->ctl->nlasting++;
	}
}

/*
 * max_clients, but a quarter of RLIMIT_NOFILE at most (32 at least): idle
 * connections up to a soft limit of 1024 (systemd's default) took every
 * descriptor, and a service's restart (its cgroup, its log pipe) failed
 * with EMFILE. Read at each new client: the library raises the soft limit
 * for pidfds as services grow.
 */
static unsigned client_cap(const struct control *ctl)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur / 4 >= ctl->o.max_clients)
		return ctl->o.max_clients;
	unsigned cap = rl.rlim_cur / 4 > 2 * CONTROL_SHORT_SLOTS ? (unsigned)(rl.rlim_cur / 4)
								 : 2 * CONTROL_SHORT_SLOTS;
	return cap < ctl->o.max_clients ? cap : ctl->o.max_clients;
}

int control_lasting(struct client *cl, bool brief)
{
	struct control *ctl = cl->ctl;
	unsigned cap = client_cap(ctl);
	unsigned room = cap > 2 * CONTROL_SHORT_SLOTS ? cap - CONTROL_SHORT_SLOTS : (cap + 1) / 2;
	if (!cl->lasting && ctl->nlasting >= room)
		return -EBUSY;
	cl->brief = cl->lasting ? cl->brief && brief : brief; /* brief while every use is */
	control__count_lasting(cl);
	return 0;
}

/* A client on fd, from a peer with credentials cr; NULL with why (fd not closed). */
struct client *control__client_new(struct control *ctl, int fd, const struct ucred *cr,
				   const char **why)
{
	unsigned cap = client_cap(ctl);
	if (ctl->nclients >= cap) {
		/* each refusal of anyone who can connect: said at 1, 2, 4, ... */
		ctl->refused++;
		if (!(ctl->refused & (ctl->refused - 1)))
			control__log(ctl, "control: refused pid %d: %u clients already connected%s "
				     "(%lu refused so far)", (int)cr->pid, ctl->nclients,
				     cap < ctl->o.max_clients ? " (max_clients, cut to a quarter of "
								"RLIMIT_NOFILE)" : "",
				     ctl->refused);
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


int control_client_fd(const struct client *cl)
{
	return cl && !cl->aborted ? cl->fd : -1;
}

bool control_client_handover(const struct client *cl, struct control_handover *h)
{
	if (!cl || cl->aborted)
		return false;
	*h = (struct control_handover){.fd = cl->fd, .subscribed = cl->subscribed,
				       .patterns = (const char *const *)cl->patterns,
				       .n = cl->npatterns, .input = linebuf_start(&cl->in),
				       .inlen = cl->in.len};
	return true;
}

const cJSON *control_client_request_id(const struct client *cl)
{
	return cl->req_id;
}
