/*
 * test_io.c - I/O watchers: readiness, modify, hang-up, freeing a watcher
 * (itself, or another whose event is pending in the same iteration) from a
 * callback, and argument checks.
 */
#include "evmtest.h"

#include <sys/socket.h>

struct w {
	struct evm_io *io;
	int calls;
	unsigned revents;
	struct w *other; /* freed by our callback when set */
	bool free_self;
};

static void on_io(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct w *w = data;
	(void)fd;
	w->calls++;
	w->revents = revents;
	if (w->other && w->other->io) {
		evm_io_free(w->other->io);
		w->other->io = NULL;
	}
	if (w->free_self) {
		evm_io_free(io);
		w->io = NULL;
	}
}

static void test_read_write_hangup(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC | O_NONBLOCK), 0);
	struct w r = {0}, wr = {0};
	assert_int_equal(evm_io_add(loop, pp[0], EVM_READ, on_io, &r, &r.io), 0);
	assert_int_equal(evm_io_add(loop, pp[1], EVM_WRITE, on_io, &wr, &wr.io), 0);
	RUN_UNTIL(loop, wr.calls > 0, 5000);
	assert_true(wr.revents & EVM_WRITE);
	assert_int_equal(r.calls, 0);
	/* writable forever: stop asking */
	assert_int_equal(evm_io_modify(wr.io, 0), 0);
	assert_int_equal(evm_io_modify(wr.io, 0), 0);
	int before = wr.calls;
	assert_int_equal(write(pp[1], "x", 1), 1);
	RUN_UNTIL(loop, r.calls > 0, 5000);
	assert_true(r.revents & EVM_READ);
	assert_int_equal(wr.calls, before);
	char c;
	assert_int_equal(read(pp[0], &c, 1), 1);
	/* level-triggered: quiet once drained */
	r.calls = 0;
	assert_int_equal(evm_loop_run_once(loop, 20), 0);
	assert_int_equal(r.calls, 0);
	/* the writer goes away: hang-up on the reader */
	evm_io_free(wr.io);
	close(pp[1]);
	RUN_UNTIL(loop, r.calls > 0, 5000);
	assert_true(r.revents & EVM_HANGUP);
	evm_io_free(r.io);
	close(pp[0]);
	assert_int_equal(evm_io_modify(NULL, EVM_READ), -EINVAL);
}

/*
 * A socket's peer shuts down its side: EVM_PEER_CLOSED with the data still
 * unread (not before it, and not EVM_HANGUP: our side can still write).
 */
static void test_peer_closed(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
	struct w r = {0};
	assert_int_equal(evm_io_add(loop, sv[0], EVM_READ, on_io, &r, &r.io), 0);
	assert_int_equal(write(sv[1], "ab", 2), 2);
	RUN_UNTIL(loop, r.calls > 0, 5000);
	assert_true(r.revents & EVM_READ);
	assert_false(r.revents & (EVM_PEER_CLOSED | EVM_HANGUP));
	assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
	r.calls = 0;
	RUN_UNTIL(loop, r.calls > 0, 5000);
	assert_true(r.revents & EVM_READ);
	assert_true(r.revents & EVM_PEER_CLOSED);
	assert_false(r.revents & EVM_HANGUP);
	char buf[8];
	assert_int_equal(read(sv[0], buf, sizeof(buf)), 2); /* all of it, and then the EOF */
	assert_int_equal(read(sv[0], buf, sizeof(buf)), 0);
	evm_io_free(r.io);
	close(sv[0]);
	close(sv[1]);
}

/* Both ready in one iteration; whichever runs first frees the other: it is not called. */
static void test_free_other_in_same_iteration(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int a[2], b[2];
	assert_int_equal(pipe2(a, O_CLOEXEC), 0);
	assert_int_equal(pipe2(b, O_CLOEXEC), 0);
	struct w wa = {0}, wb = {0};
	wa.other = &wb;
	wb.other = &wa;
	assert_int_equal(evm_io_add(loop, a[0], EVM_READ, on_io, &wa, &wa.io), 0);
	assert_int_equal(evm_io_add(loop, b[0], EVM_READ, on_io, &wb, &wb.io), 0);
	assert_int_equal(write(a[1], "x", 1), 1);
	assert_int_equal(write(b[1], "x", 1), 1);
	/* (the return value counts epoll events, the freed watcher's included) */
	assert_true(evm_loop_run_once(loop, 1000) >= 1);
	assert_int_equal(wa.calls + wb.calls, 1);
	struct w *left = wa.io ? &wa : &wb;
	assert_non_null(left->io);
	evm_io_free(left->io);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
}

static void test_free_self_and_args(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	struct w s = {.free_self = true};
	assert_int_equal(evm_io_add(loop, pp[0], EVM_READ, on_io, &s, &s.io), 0);
	assert_int_equal(evm_io_add(loop, pp[0], EVM_READ, on_io, &s, NULL), -EEXIST);
	assert_int_equal(evm_io_add(loop, -1, EVM_READ, on_io, &s, NULL), -EINVAL);
	assert_int_equal(evm_io_add(loop, pp[0], 1u << 9, on_io, &s, NULL), -EINVAL);
	assert_int_equal(evm_io_add(loop, pp[0], EVM_READ, NULL, &s, NULL), -EINVAL);
	assert_int_equal(write(pp[1], "x", 1), 1);
	RUN_UNTIL(loop, s.calls == 1, 5000);
	assert_null(s.io);
	assert_int_equal(evm_loop_run_once(loop, 20), 0); /* gone: no more calls */
	assert_int_equal(s.calls, 1);
	/* registered again; EOF is readable too; it frees itself again */
	assert_int_equal(evm_io_add(loop, pp[0], EVM_READ, on_io, &s, &s.io), 0);
	evm_io_free(NULL);
	close(pp[1]);
	RUN_UNTIL(loop, s.calls == 2, 5000);
	assert_true(s.revents & (EVM_READ | EVM_HANGUP));
	close(pp[0]);
}

/* A watcher still registered when the loop is freed goes with it (ASan: no leak). */
static void test_left_registered(void **state)
{
	struct evm_loop *loop = T_LOOP(state);
	int pp[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	struct w s = {0};
	assert_int_equal(evm_io_add(loop, pp[0], EVM_READ, on_io, &s, &s.io), 0);
	evm_loop_free(loop);
	((struct t_fx *)*state)->loop = NULL;
	close(pp[0]);
	close(pp[1]);
	assert_int_equal(evm_loop_new(&((struct t_fx *)*state)->loop, NULL), 0);
}

int main(void)
{
	t_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_write_hangup, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_peer_closed, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_free_other_in_same_iteration, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_free_self_and_args, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_left_registered, t_setup, t_teardown),
	};
	return cmocka_run_group_tests_name("io", tests, NULL, NULL);
}
