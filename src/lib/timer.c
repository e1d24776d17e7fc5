/*
 * timer.c - time: the clocks, one-shot timers on CLOCK_MONOTONIC in a binary
 * min-heap, how long the loop may sleep, and the timerfd that tells an
 * embedding event loop when the next timer is due.
 *
 * Invariants: heap[i]->idx == i; a parent is due no later than its children
 * (ties broken by creation order, so equal deadlines fire FIFO). Nothing
 * here ever polls: the loop sleeps until the root's deadline, or forever.
 *
 * A timer can always be cancelled through the handle it was created with:
 * the library clears that handle (*owner) when the timer fires, before the
 * callback, and when it is cancelled, so a kept handle is either pending or
 * NULL, and evm_timer_cancel(NULL) does nothing.
 *
 * Timers that spawn (a service's restart) are bounded per iteration: a
 * spawn holds the loop until the child has exec'd (milliseconds, tens on a
 * busy machine), and 1,000 services crashing together made one iteration
 * run 1,000 spawns while nothing else was served (control requests, the
 * daemon's start batches, health checks, log pipes). At most
 * EVM__SPAWN_TURN of them run in one iteration, fewer once
 * EVM__SPAWN_SLICE_NS have passed since the first (at least one: they
 * always progress); the others due wait in loop->waiting, a FIFO in the
 * order they came due, and go first in the next iteration, after the ready
 * fds. A waiting timer is still pending for its owner (cancel frees it).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <unistd.h>

uint64_t evm__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t evm__real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec evm__ns_to_ts(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	return ts;
}

static bool before(const struct evm_timer *a, const struct evm_timer *b)
{
	return a->deadline != b->deadline ? a->deadline < b->deadline : a->seq < b->seq;
}

static void place(struct evm_loop *loop, size_t i, struct evm_timer *t)
{
	loop->heap[i] = t;
	t->idx = i;
}

static void sift_up(struct evm_loop *loop, size_t i)
{
	struct evm_timer *t = loop->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!before(t, loop->heap[parent]))
			break;
		place(loop, i, loop->heap[parent]);
		i = parent;
	}
	place(loop, i, t);
}

static void sift_down(struct evm_loop *loop, size_t i)
{
	struct evm_timer *t = loop->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= loop->nheap)
			break;
		if (c + 1 < loop->nheap && before(loop->heap[c + 1], loop->heap[c]))
			c++;
		if (!before(loop->heap[c], t))
			break;
		place(loop, i, loop->heap[c]);
		i = c;
	}
	place(loop, i, t);
}

static void heap_remove(struct evm_loop *loop, struct evm_timer *t)
{
	size_t i = t->idx;
	struct evm_timer *last = loop->heap[--loop->nheap];
	t->idx = SIZE_MAX;
	if (last == t)
		return;
	place(loop, i, last);
	sift_down(loop, i);
	sift_up(loop, last->idx);
}

uint64_t evm__heap_next(const struct evm_loop *loop)
{
	/* a waiting timer came due before any still in the heap */
	if (loop->waiting)
		return loop->waiting->deadline;
	return loop->nheap ? loop->heap[0]->deadline : UINT64_MAX;
}

static void wait_push(struct evm_loop *loop, struct evm_timer *t)
{
	t->waiting = true;
	t->next_waiting = NULL;
	t->prev_waiting = loop->waiting_tail;
	if (loop->waiting_tail)
		loop->waiting_tail->next_waiting = t;
	else
		loop->waiting = t;
	loop->waiting_tail = t;
	loop->nwaiting++;
}

static void wait_remove(struct evm_loop *loop, struct evm_timer *t)
{
	if (t->prev_waiting)
		t->prev_waiting->next_waiting = t->next_waiting;
	else
		loop->waiting = t->next_waiting;
	if (t->next_waiting)
		t->next_waiting->prev_waiting = t->prev_waiting;
	else
		loop->waiting_tail = t->prev_waiting;
	t->waiting = false;
	t->prev_waiting = t->next_waiting = NULL;
	loop->nwaiting--;
}

/* The timer is gone (fired or cancelled): its handle must not name it any more. */
static void disown(struct evm_timer *t)
{
	/* unless the caller has since put another timer there */
	if (t->owner && *t->owner == t)
		*t->owner = NULL;
	t->owner = NULL;
}

static int add(struct evm_loop *loop, uint64_t delay_ns, evm_timer_cb cb, void *data,
	       struct evm_timer **out, bool spawns)
{
	if (out)
		*out = NULL;
	if (!loop || !cb)
		return -EINVAL;
	if (loop->nheap == loop->capheap) {
		size_t cap = loop->capheap ? loop->capheap * 2 : 16;
		struct evm_timer **h = realloc(loop->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		loop->heap = h;
		loop->capheap = cap;
	}
	struct evm_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->loop = loop;
	t->owner = out;
	/* the deadline is taken from a fresh clock: a timer added late in a long
	 * iteration must not fire early */
	uint64_t now = evm__mono_ns();
	/* UINT64_MAX is the empty heap's "no timer": the latest deadline is one below */
	t->deadline = delay_ns >= UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + delay_ns;
	t->seq = loop->timer_seq++;
	t->cb = cb;
	t->data = data;
	t->spawns = spawns;
	loop->heap[loop->nheap] = t;
	t->idx = loop->nheap++;
	sift_up(loop, t->idx);
	if (t->idx == 0)
		evm__timerfd_sync(loop);
	if (out)
		*out = t;
	return 0;
}

int evm__timer_add_ns(struct evm_loop *loop, uint64_t delay_ns, evm_timer_cb cb, void *data,
		      struct evm_timer **out)
{
	return add(loop, delay_ns, cb, data, out, false);
}

int evm__timer_add_spawn(struct evm_loop *loop, uint64_t delay_ms, evm_timer_cb cb, void *data,
			 struct evm_timer **out)
{
	return add(loop, evm__ms_to_ns(delay_ms), cb, data, out, true);
}

int evm_timer_add(struct evm_loop *loop, uint64_t delay_ms, evm_timer_cb cb, void *data,
		  struct evm_timer **out)
{
	if (loop && evm__forked(loop))
		return -ECHILD; /* the timerfd is the parent's too */
	return add(loop, evm__ms_to_ns(delay_ms), cb, data, out, false);
}

void evm_timer_cancel(struct evm_timer *t)
{
	if (!t)
		return;
	struct evm_loop *loop = t->loop;
	if (t->waiting) {
		bool first = loop->waiting == t;
		wait_remove(loop, t);
		disown(t);
		if (first)
			evm__timerfd_sync(loop);
		free(t);
		return;
	}
	/* out of the heap: its callback runs, and evm__timers_run frees it after */
	if (t->idx == SIZE_MAX)
		return;
	bool first = t->idx == 0 && !loop->waiting;
	heap_remove(loop, t);
	disown(t);
	if (first)
		evm__timerfd_sync(loop);
	free(t);
}

static void fire(struct evm_timer *t)
{
	disown(t); /* before the callback, which may add a timer under the same handle */
	t->cb(t, t->data);
	free(t);
}

/* The spawns of one evm__timers_run: may one more run now? */
struct spawn_turn {
	unsigned n;
	uint64_t until;
};

static bool turn_allows(struct spawn_turn *turn)
{
	if (turn->n >= EVM__SPAWN_TURN)
		return false;
	if (turn->n == 0)
		turn->until = evm__mono_ns() + EVM__SPAWN_SLICE_NS;
	else if (evm__mono_ns() >= turn->until)
		return false;
	turn->n++;
	return true;
}

int evm__timers_run(struct evm_loop *loop)
{
	int n = 0;
	struct spawn_turn turn = {0};
#define ROOM (!loop->budget || (unsigned)n < loop->budget)
	/* first the spawns that waited, in the order they came due */
	while (loop->waiting && ROOM && turn_allows(&turn)) {
		struct evm_timer *t = loop->waiting;
		wait_remove(loop, t);
		fire(t);
		n++;
	}
	/* only timers due at the start: a callback re-adding a 0 ms timer
	 * must not starve I/O */
	uint64_t now = loop->now;
	while (loop->nheap && loop->heap[0]->deadline <= now && ROOM) {
		struct evm_timer *t = loop->heap[0];
		heap_remove(loop, t);
		/* behind those waiting already (FIFO), or past this turn: waits */
		if (t->spawns && (loop->waiting || !turn_allows(&turn))) {
			wait_push(loop, t);
			continue;
		}
		fire(t);
		n++;
	}
#undef ROOM
	return n;
}

/* evm_loop_free: the handles are not cleared (their memory may be gone) */
void evm__timers_free(struct evm_loop *loop)
{
	for (size_t i = 0; i < loop->nheap; i++)
		free(loop->heap[i]);
	while (loop->waiting) {
		struct evm_timer *t = loop->waiting;
		wait_remove(loop, t);
		free(t);
	}
	free(loop->heap);
	loop->heap = NULL;
	loop->nheap = loop->capheap = 0;
}

/* How long the loop may sleep: timeout_ms, shortened to the next deadline. */
int evm__timers_wait_ms(const struct evm_loop *loop, int timeout_ms)
{
	uint64_t next = evm__heap_next(loop);
	if (next == UINT64_MAX)
		return timeout_ms;
	if (next <= loop->now)
		return 0;
	/* round up: waking a little late is fine, early means a useless wake-up */
	uint64_t ms = (next - loop->now + 999999) / 1000000;
	if (ms > INT32_MAX)
		ms = INT32_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < ms)
		return timeout_ms;
	return (int)ms;
}

/* ------------------------------------------------- the embedding timerfd */

static void on_timerfd(struct evm_loop *loop, struct evm__watch *w, uint32_t events)
{
	uint64_t v;
	(void)w;
	(void)events;
	ssize_t r = read(loop->timerfd, &v, sizeof(v));
	(void)r;
	loop->timerfd_armed = UINT64_MAX; /* expired; evm__timerfd_sync re-arms */
}

/* Keep the embedding timerfd armed for the earliest deadline. */
void evm__timerfd_sync(struct evm_loop *loop)
{
	if (loop->timerfd < 0)
		return;
	uint64_t next = evm__heap_next(loop);
	if (next == loop->timerfd_armed)
		return;
	struct itimerspec its = {0};
	if (next != UINT64_MAX) {
		its.it_value.tv_sec = (time_t)(next / 1000000000u);
		its.it_value.tv_nsec = (long)(next % 1000000000u);
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1; /* all-zero would disarm */
	}
	if (timerfd_settime(loop->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		loop->timerfd_armed = next;
}

/* evm_loop_fd: from now on the epoll fd also wakes up for timers. */
int evm__timerfd_start(struct evm_loop *loop)
{
	if (loop->timerfd >= 0)
		return 0;
	int fd = evm__above_stdio(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	if (fd < 0)
		return -errno;
	loop->timer_w.cb = on_timerfd;
	int r = evm__epoll_add(loop, fd, EPOLLIN, &loop->timer_w);
	if (r < 0) {
		close(fd);
		return r;
	}
	loop->timerfd = fd;
	evm__timerfd_sync(loop);
	return 0;
}

void evm__timerfd_close(struct evm_loop *loop)
{
	if (loop->timerfd >= 0)
		close(loop->timerfd);
	loop->timerfd = -1;
}
