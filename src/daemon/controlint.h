/*
 * controlint.h - what the control socket's files share (control.c: the
 * clients; controlaccept.c: the listening socket; controlsub.c: events
 * subscriptions and publishing). Nothing outside them includes it.
 *
 * Invariants: a client is freed only by control__client_close, called from
 * its own callback or by control_close; anything else that ends a client
 * calls control__client_abort (shut down, closed by its callback), so no
 * caller up the stack holds a freed client.
 */
#ifndef EVMON_CONTROLINT_H
#define EVMON_CONTROLINT_H

#include "control.h"

#include "proto.h"
#include "sockfile.h"

#include <stdint.h>
#include <sys/socket.h>

struct client {
	struct control *ctl;
	unsigned id;
	int fd;
	uid_t uid;
	pid_t pid;
	struct evm_io *io;
	unsigned events; /* what io watches */
	struct linebuf in, out;
	uint64_t behind_since; /* loop ns: its output has not been empty since (out.len > 0) */
	bool eof;
	bool closing;	 /* sent a line too long: closed once its error is sent */
	bool pending;	 /* a request has no reply yet: the next ones wait */
	bool aborted;	 /* dropped: closed at its next callback (see client_abort) */
	cJSON *req_id;	 /* "id" of the current request, echoed in the reply */
	control_gone_cb defer_gone; /* a deferred reply's owner, told if we close first */
	void *defer_data;
	bool subscribed;
	bool lasting;	 /* counted in nlasting (control_lasting) */
	bool brief;	 /* lasting, but ends by itself: dropped when it stalls */
	struct evm_timer *idle; /* armed while it waits for a request (idle_ms) */
	struct evm_timer *stall; /* armed while a short client's stream waits to be read */
	uint64_t moved_ns;	 /* loop ns: the socket last took some of its output */
	/* of out.len, about how much is replies (not events): a subscriber's own
	 * big reply (a status of 15,000) is not events it failed to read */
	size_t reply_held;
	size_t aside;	 /* memory held for it outside out (a log follower's lines to come) */
	bool publishing;	 /* control_publish is adding an event line */
	/* its subscription: one block, the exact names first (sorted, nexact), then globs */
	char **patterns;
	size_t npatterns, nexact;
	/* raw stream (control_raw), or a reply built in pieces (control_reply_stream) */
	bool raw, raw_done;
	bool stream;
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
	unsigned nlasting; /* clients that stay (events, logs -f): bounded below max_clients */
	unsigned long refused; /* connections refused at max_clients */
	uint64_t dropped, dropped_bytes; /* subscribers dropped for unread events, and those bytes */
	size_t held; /* the sum of control__held() over the clients: kept by every change of an out */
	unsigned holders; /* the clients whose control__held() is not 0: kept with held */
};

/* The memory cl's unsent output holds: its buffer's size, not the bytes in it; and aside. */
static inline size_t control__held(const struct client *cl)
{
	return cl->aborted ? 0 : (cl->out.len ? cl->out.cap : 0) + cl->aside;
}

/* A client's control__held() went from before to after: keep held and holders. */
static inline void control__held_moved(struct control *ctl, size_t before, size_t after)
{
	ctl->held = ctl->held - before + after;
	ctl->holders = ctl->holders - (before != 0) + (after != 0);
}

void control__log(struct control *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A client on fd, from a peer with credentials cr; NULL with why (fd not closed). */
struct client *control__client_new(struct control *ctl, int fd, const struct ucred *cr,
				   const char **why);
void control__client_close(struct client *cl);
void control__client_abort(struct client *cl);
/* count cl among the clients that stay, unchecked (control_lasting checks the room) */
void control__count_lasting(struct client *cl);
void control__client_send(struct client *cl);
void control__client_update(struct client *cl);
void control__client_line(struct client *cl, const char *s, size_t n);
void control__idle_update(struct client *cl);

#endif
