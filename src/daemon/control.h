/*
 * control.h - the daemon's control socket: a Unix stream socket on the loop,
 * JSON lines in, JSON lines out (docs/PROTOCOL.md).
 *
 * It owns the socket file (created 0600 and moved into place atomically; a
 * lock file beside it tells a live daemon from a stale socket), the client
 * connections, their bounded buffers, peer-uid checks, and the events
 * subscriptions. What a request means is the daemon's business: each parsed
 * request object is handed to a callback, which answers with control_reply,
 * at once or later (control_defer). A client gets its responses in request
 * order; while one is deferred its next requests wait.
 */
#ifndef EVMON_CONTROL_H
#define EVMON_CONTROL_H

#include "cjson.h"

#include <evmon.h>
#include <stdbool.h>
#include <sys/types.h>

struct control;
struct client;

/* req is borrowed for the call. The callback must reply or defer. */
typedef void (*control_request_cb)(struct client *cl, const cJSON *req, void *data);
/* Whoever keeps a client for later is told when it closes; cl is invalid after. */
typedef void (*control_gone_cb)(void *data);
/* A line for the daemon's log ("client 3 (uid 0): ..."). */
typedef void (*control_log_cb)(const char *msg, void *data);

struct control_opts {
	const char *path;
	unsigned max_clients;	   /* default 1024 */
	size_t max_pending;	   /* unread output that drops an events subscriber; default 4 MiB */
	/*
	 * A client with no request for this long is closed (0: never), unless
	 * it subscribed to events, carries a raw stream or awaits a reply.
	 */
	uint64_t idle_ms;
	size_t max_total; /* unread output (events, replies) of all clients together; default 64 MiB */
	control_request_cb on_request;
	control_log_cb on_log;
	/*
	 * Optional, for a caller that holds descriptors in reserve: out of
	 * descriptors at accept, need_fd may free one (true: try again);
	 * fd_closed is called after a connection's descriptor is closed.
	 */
	bool (*need_fd)(void *data);
	void (*fd_closed)(void *data);
	void *data;
	/* inherit: serve the listener inherit_fd (locked by inherit_lock) kept across an exec */
	bool inherit;
	int inherit_fd, inherit_lock;
};

/* Create the socket and start serving. Returns 0, or -1 with a message in err. */
int control_open(struct evm_loop *loop, const struct control_opts *opts, struct control **out,
		 char *err, size_t errlen);

/* Flush what can be flushed without blocking, close every client, remove the socket. */
void control_close(struct control *ctl);

/* The listener and its lock's descriptors, to keep across an exec of ourselves. */
void control_fds(const struct control *ctl, int *listen_fd, int *lock_fd);

/* The connection's descriptor (to hand it over across an exec), or -1. */
int control_client_fd(const struct client *cl);

/* A connection handed over across an exec of ourselves. */
struct control_handover {
	int fd;
	bool subscribed;		/* an events follower, with its patterns */
	const char *const *patterns;
	size_t n;
	const char *input;		/* what it sent that no request took yet */
	size_t inlen;			/* (a request half read), or 0 */
	/*
	 * A request whose reply waits (start/stop/... with "wait"): the new
	 * image answers it (with its "id") that the wait was cut
	 */
	bool waiting;
	const cJSON *id;
};

/*
 * The client asking for the exec, as control_followers would describe it
 * (valid until it changes): false when there is none to hand over (NULL,
 * or dropped).
 */
bool control_client_handover(const struct client *cl, struct control_handover *h);
/* The "id" of its request under way (echoed in the reply), or NULL. */
const cJSON *control_client_request_id(const struct client *cl);

/*
 * Before an exec of ourselves: fn for each connection that can be handed
 * over: its output all sent (waited for, up to a second in all), between
 * requests or with a reply deferred (waiting); what it sent of its next
 * request comes along (the new image reads on from there). An events
 * follower comes with its patterns (subscribed), any other with none: a
 * client between two requests, or whose next one waits in the socket or is
 * half read, which the new image answers. The others close with the exec
 * (a raw stream, a reply in pieces, output it did not read): their number
 * is returned. The client except (who asked) is left out.
 */
typedef void (*control_follower_cb)(const struct control_handover *h, void *data);
unsigned control_followers(struct control *ctl, const struct client *except,
			   control_follower_cb fn, void *data);

/*
 * After the exec: the connection h->fd (kept open across it) is a client
 * again, subscribed to h->patterns if it was, its input read on from
 * h->input, its idle time counted again (unless it follows events). 0 and
 * the client in *out (may be NULL), or -errno with the descriptor closed.
 */
int control_take_follower(struct control *ctl, const struct control_handover *h,
			  struct client **out);

/*
 * Answer the client's current request (resp is borrowed; its "id" is set).
 * The reply joins the client's output and is sent from the loop: calling
 * this never re-enters the request callback. No-op for a dropped client.
 */
void control_reply(struct client *cl, cJSON *resp);
/* {"ok":false,"error":"..."} */
void control_reply_error(struct client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Inside the request callback: the reply will come later (control_reply).
 * If the client closes before, gone(data) is called instead, and cl must
 * not be used again.
 */
void control_defer(struct client *cl, control_gone_cb gone, void *data);

/* True if cl follows events (its output carries event lines between replies). */
bool control_subscribed(const struct client *cl);
/* Dropped: it takes no more output and is closed by the loop. */
bool control_client_closed(const struct client *cl);
unsigned control_client_id(const struct client *cl);

/*
 * Make the client an events subscriber: it receives every published line
 * whose service matches one of the patterns (fnmatch; none: everything).
 * patterns are copied.
 */
int control_subscribe(struct client *cl, const char *const *patterns, size_t n);
/*
 * cl will stay (a subscriber, a logs -f, a wait): 0, or -EBUSY when those
 * hold all but the last 16 of max_clients (kept for requests). Once per
 * client. brief: it ends by itself (ctl wait's events, a request's wait),
 * so a reader that takes none of its output is dropped as a request's is.
 */
int control_lasting(struct client *cl, bool brief);
/* What a request refused for -EBUSY by control_lasting is answered. */
#define CONTROL_NO_LASTING_SLOT \
	"too many subscribers, followers and waits: max_clients keeps its last slots for requests"

/*
 * Send line (no newline) to every subscriber interested in service
 * (NULL: a daemon-level event, for all).
 */
void control_publish(struct control *ctl, const char *service, const char *line);
/* A subscriber is connected that would take an event of service (NULL: any event)? */
bool control_wants_event(const struct control *ctl, const char *service);

/* Number of connected clients. */
unsigned control_clients(const struct control *ctl);
/* Subscribers dropped for unread events so far; *bytes: the unread bytes they held. */
uint64_t control_dropped(const struct control *ctl, uint64_t *bytes);

/*
 * Raw streams (`evmon ctl logs`): after its reply, a client may be switched
 * to carry raw bytes instead of JSON lines. Its requests are no longer
 * read. Whenever it has taken most of what was sent, fill(cl, want, data)
 * is called to append up to about want more bytes with control_raw_write;
 * it returns false once the stream has ended (the connection is closed
 * when the last byte is out). gone(data) is called once when the
 * connection closes, for whatever reason; cl is invalid after it.
 */
typedef bool (*control_fill_cb)(struct client *cl, size_t want, void *data);
void control_raw(struct client *cl, control_fill_cb fill, control_gone_cb gone, void *data);
int control_raw_write(struct client *cl, const void *p, size_t n); /* 0 or -ENOMEM */
/* There may be more to send: call fill now if the client has room. */
void control_raw_kick(struct client *cl);
/*
 * A reply too big to build in one loop iteration (`ctl metrics` at 10,000
 * services): one JSON line like any other, written in pieces as the client
 * takes it. The line starts with '{' and the request's "id" member (if it
 * had one, followed by ','); then, at most once per loop iteration and
 * while the client has taken most of what was sent, fill(cl, want, data)
 * appends about want more bytes with control_raw_write: the remaining
 * members and the closing '}' (no newline), returning false once it has
 * written them. The newline ends the reply, and the client's next request
 * is read. gone(data) is called once, when the reply has ended or the
 * connection closed before (cl is invalid after it). A fill that cannot go
 * on calls control_drop.
 */
void control_reply_stream(struct client *cl, control_fill_cb fill, control_gone_cb gone,
			  void *data);
/* Drop a client, saying why in the daemon's log (closed by the loop, after). */
void control_drop(struct client *cl, const char *why);
/* The configured max_pending (client_buffer): what a stream may queue for a client. */
size_t control_max_pending(const struct client *cl);
/*
 * cl's output held elsewhere now takes bytes (a log follower's lines not yet
 * in its output): counted in max_total with its output, so that followers
 * that never read cannot hold max_pending each past the total (grown past
 * it: the slowest readers are dropped, perhaps cl, as for events).
 */
void control_hold_aside(struct client *cl, size_t bytes);

#endif
