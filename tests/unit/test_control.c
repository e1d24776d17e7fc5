/*
 * test_control.c - the control socket server (src/daemon/control.c) on a real
 * loop: the socket file, framing, errors that keep the connection usable,
 * ordered (and deferred) replies, bounded buffers, and client limits.
 */
#include "evmtest.h"

#include "control.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct fx {
	char dir[64];
	char path[128];
	struct evm_loop *loop;
	struct control *ctl;
	struct client *deferred;
	struct evm_timer *defer_timer;
	unsigned requests;
	unsigned gone; /* deferred clients that closed first */
};

static struct fx F;

#define BIG_REPLY (600 * 1024) /* its buffer: 1 MiB */
#define SOFT_REPLY (257 * 1024) /* just over control.c's OUT_SOFT: reading stops behind it */

static void late_reply(struct evm_timer *t, void *data)
{
	(void)t;
	(void)data;
	F.defer_timer = NULL;
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "ok");
	cJSON_AddStringToObject(r, "echo", "late");
	control_reply(F.deferred, r);
	cJSON_Delete(r);
	F.deferred = NULL;
}

/* the deferred client closed before its late reply */
static void deferred_gone(void *data)
{
	(void)data;
	if (F.defer_timer)
		evm_timer_cancel(F.defer_timer);
	F.defer_timer = NULL;
	F.deferred = NULL;
	F.gone++;
}

/* echo {"cmd":X} as {"ok":true,"echo":X}; "defer" answers 50 ms later; "sub" subscribes */
static void on_request(struct client *cl, const cJSON *req, void *data)
{
	(void)data;
	F.requests++;
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	const char *cmd = cJSON_IsString(c) ? c->valuestring : "?";
	if (!strcmp(cmd, "defer")) {
		control_defer(cl, deferred_gone, NULL);
		F.deferred = cl;
		evm_timer_add(F.loop, 1000, late_reply, NULL, &F.defer_timer); /* long enough for test_vanished_client to close first, even on a loaded machine */
		return;
	}
	if (!strcmp(cmd, "sub") || !strcmp(cmd, "flood")) {
		const char *pats[] = {"web"};
		assert_int_equal(control_subscribe(cl, pats, 1), 0);
	}
	if (!strcmp(cmd, "flood")) {
		/* events for itself, more than it may have pending: dropped inside its own request */
		char line[1024];
		memset(line, 'f', sizeof(line) - 1);
		line[sizeof(line) - 1] = 0;
		for (int i = 0; i < 200; i++)
			control_publish(F.ctl, "web", line);
		assert_true(control_client_closed(cl));
	}
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "ok");
	cJSON_AddStringToObject(r, "echo", cmd);
	if (!strcmp(cmd, "big") || !strcmp(cmd, "soft")) { /* a reply bigger than the socket takes at once */
		size_t n = cmd[0] == 'b' ? BIG_REPLY : SOFT_REPLY;
		char *big = malloc(n + 1);
		assert_non_null(big);
		memset(big, 'b', n);
		big[n] = 0;
		cJSON_AddStringToObject(r, "big", big);
		free(big);
	}
	control_reply(cl, r);
	cJSON_Delete(r);
}

static int open_ctl(unsigned max_clients, size_t max_pending, char *err, size_t errlen)
{
	struct control_opts o = {.path = F.path, .max_clients = max_clients,
				 .max_pending = max_pending, .on_request = on_request};
	return control_open(F.loop, &o, &F.ctl, err, errlen);
}

static int setup(void **state)
{
	(void)state;
	memset(&F, 0, sizeof(F));
	snprintf(F.dir, sizeof(F.dir), "/tmp/evmon-test-ctl-XXXXXX");
	if (!mkdtemp(F.dir))
		return -1;
	snprintf(F.path, sizeof(F.path), "%s/s.sock", F.dir);
	if (evm_loop_new(&F.loop, NULL) < 0)
		return -1;
	char err[256];
	if (open_ctl(0, 0, err, sizeof(err)) < 0) {
		print_message("control_open: %s\n", err);
		return -1;
	}
	alarm(T_ALARM);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	control_close(F.ctl); /* tells a deferred client's owner */
	if (F.defer_timer)
		evm_timer_cancel(F.defer_timer);
	evm_loop_free(F.loop);
	char lock[160];
	snprintf(lock, sizeof(lock), "%s.lock", F.path);
	unlink(F.path);
	unlink(lock);
	rmdir(F.dir);
	alarm(0);
	return 0;
}

static int connect_client(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, F.path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		assert_true(w > 0);
		s += w;
		n -= (size_t)w;
	}
}

/* Let the server read what was sent so far (no condition to wait for: it holds it). */
static void run_a_bit(int ms)
{
	uint64_t end = t_now_ms() + (uint64_t)ms;
	do
		evm_loop_run_once(F.loop, 5);
	while (t_now_ms() < end);
}

/* Run the loop until fd has a whole line; return it (static buffer per fd call). */
static char *read_reply(int fd)
{
	static char buf[200000];
	size_t len = 0;
	uint64_t deadline = t_now_ms() + T_MS(10000);
	for (;;) {
		char c;
		ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
		if (r == 1) {
			if (c == '\n') {
				buf[len] = 0;
				return buf;
			}
			assert_true(len < sizeof(buf) - 1);
			buf[len++] = c;
			continue;
		}
		if (r == 0)
			return NULL; /* closed */
		evm_loop_run_once(F.loop, 5);
		if (t_now_ms() > deadline)
			fail_msg("no reply within %d ms", (int)T_MS(10000));
	}
}

static void expect_reply(int fd, const char *fragment)
{
	char *r = read_reply(fd);
	assert_non_null(r);
	if (!strstr(r, fragment))
		fail_msg("reply [%s] does not contain [%s]", r, fragment);
}

/*
 * control_open of F.path in a child process with its own loop: 0, or -1 with
 * its message in msg.
 */
static int open_elsewhere(char *msg, size_t len)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct evm_loop *l;
		struct control *c;
		char err[256] = "";
		struct control_opts o = {.path = F.path, .on_request = on_request};
		int r = evm_loop_new(&l, NULL) < 0 ? -2 : control_open(l, &o, &c, err, sizeof(err));
		if (write(p[1], err, strlen(err)) < 0) {
		}
		_exit(r == 0 ? 0 : 1);
	}
	close(p[1]);
	ssize_t n = read(p[0], msg, len - 1);
	msg[n > 0 ? n : 0] = 0;
	close(p[0]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void test_socket_file(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(lstat(F.path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	char lock[160];
	snprintf(lock, sizeof(lock), "%s.lock", F.path);
	assert_int_equal(access(lock, F_OK), 0);

	/* a live daemon is refused (another process: the lock is the process's) */
	char msg[256];
	assert_int_equal(open_elsewhere(msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "another evmon daemon is running"));
	char pid[32];
	snprintf(pid, sizeof(pid), "(pid %d)", (int)getpid());
	assert_non_null(strstr(msg, pid));
	assert_int_equal(lstat(F.path, &st), 0); /* and left alone */

	/* closing removes both files */
	control_close(F.ctl);
	F.ctl = NULL;
	assert_int_equal(access(F.path, F_OK), -1);
	assert_int_equal(access(lock, F_OK), -1);
}

static void test_stale_socket_replaced(void **state)
{
	(void)state;
	control_close(F.ctl);
	F.ctl = NULL;
	/* a socket file nobody listens on and nobody holds the lock for */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, F.path);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	char err[256];
	assert_int_equal(open_ctl(0, 0, err, sizeof(err)), 0);
	int fd = connect_client();
	send_all(fd, "{\"cmd\":\"hi\"}\n", 13);
	expect_reply(fd, "\"echo\":\"hi\"");
	close(fd);

	/* a regular file at the path is not ours to replace */
	control_close(F.ctl);
	F.ctl = NULL;
	int f = open(F.path, O_CREAT | O_WRONLY, 0600);
	close(f);
	assert_int_equal(open_ctl(0, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a socket"));
	unlink(F.path);
	assert_int_equal(open_ctl(0, 0, err, sizeof(err)), 0);
}

/*
 * A daemon killed with SIGKILL while a child of it was between its clone and
 * its exec: the child has a copy of every descriptor (the lock file's, the
 * listener's) until its exec. Simulated by a fork that never execs. A daemon
 * started meanwhile takes the lock and replaces the socket at once: the lock
 * is the dead process's, not the open file's, and the listener's process
 * (SO_PEERCRED) has ended. (With flock it was refused: "another evmon daemon
 * is running".)
 */
static void test_killed_daemons_child_holds_nothing(void **state)
{
	(void)state;
	control_close(F.ctl);
	F.ctl = NULL;
	int ready[2], hold[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(hold), 0);
	pid_t daemon = fork();
	assert_true(daemon >= 0);
	if (daemon == 0) {
		struct evm_loop *l;
		struct control *c;
		char err[256];
		struct control_opts o = {.path = F.path, .on_request = on_request};
		if (evm_loop_new(&l, NULL) < 0 || control_open(l, &o, &c, err, sizeof(err)) < 0)
			_exit(1);
		pid_t child = fork(); /* "between clone and exec" for as long as hold is open */
		if (child == 0) {
			close(hold[1]);
			char x;
			while (read(hold[0], &x, 1) != 0) {
			}
			_exit(0);
		}
		if (write(ready[1], &child, sizeof(child)) != sizeof(child))
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	close(hold[0]);
	pid_t child = 0;
	assert_int_equal(read(ready[0], &child, sizeof(child)), sizeof(child));
	close(ready[0]);
	assert_int_equal(kill(daemon, SIGKILL), 0);
	assert_int_equal(waitpid(daemon, NULL, 0), daemon);
	assert_int_equal(kill(child, 0), 0); /* still holding its copies */

	char err[256] = "";
	int r = open_ctl(0, 0, err, sizeof(err));
	if (r < 0) {
		close(hold[1]);
		fail_msg("refused while the dead daemon's child lives: %s", err);
	}
	int fd = connect_client(); /* and the path is ours */
	send_all(fd, "{\"cmd\":\"hi\"}\n", 13);
	expect_reply(fd, "\"echo\":\"hi\"");
	close(fd);
	close(hold[1]); /* the child ends */
}

/* A listener of a live process without our lock is not ours to replace. */
static void test_live_listener_refused(void **state)
{
	(void)state;
	control_close(F.ctl);
	F.ctl = NULL;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, F.path);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s, 8), 0);
	char msg[256];
	assert_int_equal(open_elsewhere(msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "another process is listening on it"));
	struct stat st;
	assert_int_equal(lstat(F.path, &st), 0); /* left alone */
	close(s);
	char err[256];
	assert_int_equal(open_ctl(0, 0, err, sizeof(err)), 0); /* nobody listens now: stale */
}

static void test_request_reply_and_id(void **state)
{
	(void)state;
	int fd = connect_client();
	const char *req = "{\"cmd\":\"status\",\"id\":[1,\"x\"]}\n";
	send_all(fd, req, strlen(req));
	char *r = read_reply(fd);
	assert_non_null(r);
	cJSON *o = cJSON_Parse(r);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")));
	char *id = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "id"));
	assert_string_equal(id, "[1,\"x\"]");
	cJSON_free(id);
	cJSON_Delete(o);
	close(fd);
}

static void test_errors_keep_connection(void **state)
{
	(void)state;
	int fd = connect_client();
	send_all(fd, "{not json\n", 10);
	expect_reply(fd, "malformed JSON");
	send_all(fd, "[1,2]\n", 6);
	expect_reply(fd, "a request is a JSON object");
	send_all(fd, "\n   \n", 5); /* blank lines: no reply */
	send_all(fd, "{\"cmd\":\"after\"}\n", 16);
	expect_reply(fd, "\"echo\":\"after\"");
	/* a line longer than the limit, sent in pieces: said, and the connection closed */
	size_t n = PROTO_MAX_REQUEST + 5000;
	char *big = malloc(n);
	memset(big, 'a', n);
	send_all(fd, big, n / 2);
	run_a_bit(20);
	send_all(fd, big, n - n / 2);
	send_all(fd, "\n", 1);
	free(big);
	expect_reply(fd, "longer than 65536 bytes: closing the connection");
	RUN_UNTIL(F.loop, control_clients(F.ctl) == 0, 10000);
	close(fd);
	assert_int_equal(F.requests, 1);
}

static void test_pipelined_and_deferred_order(void **state)
{
	(void)state;
	int fd = connect_client();
	const char *reqs = "{\"cmd\":\"a\"}\n{\"cmd\":\"defer\"}\n{\"cmd\":\"b\"}\n{\"cmd\":\"c\"}\n";
	send_all(fd, reqs, strlen(reqs));
	expect_reply(fd, "\"echo\":\"a\"");
	expect_reply(fd, "\"echo\":\"late\"");
	expect_reply(fd, "\"echo\":\"b\"");
	expect_reply(fd, "\"echo\":\"c\"");
	close(fd);
}

static void test_last_request_without_newline(void **state)
{
	(void)state;
	int fd = connect_client();
	send_all(fd, "{\"cmd\":\"eof\"}", 13);
	shutdown(fd, SHUT_WR);
	expect_reply(fd, "\"echo\":\"eof\"");
	assert_null(read_reply(fd)); /* then the daemon closes */
	close(fd);
	RUN_UNTIL(F.loop, control_clients(F.ctl) == 0, 10000);
}

static void test_vanished_client(void **state)
{
	(void)state;
	int fd = connect_client();
	send_all(fd, "{\"cmd\":\"defer\"}\n", 16);
	RUN_UNTIL(F.loop, F.deferred != NULL, 30000);
	close(fd); /* gone before its late reply: its owner is told, and cancels it */
	RUN_UNTIL(F.loop, F.gone == 1, 30000);
	assert_null(F.deferred);
	assert_int_equal(F.gone, 1);
	assert_int_equal(control_clients(F.ctl), 0);
}

/* A server that drops a client with 64 KiB unread, and a client that reads little. */
static int small_reader(void)
{
	control_close(F.ctl);
	char err[256];
	assert_int_equal(open_ctl(0, 64 * 1024, err, sizeof(err)), 0);
	int fd = connect_client();
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	return fd;
}

static void test_slow_subscriber_dropped(void **state)
{
	(void)state;
	int fd = small_reader();
	send_all(fd, "{\"cmd\":\"sub\"}\n", 14);
	expect_reply(fd, "\"echo\":\"sub\"");
	int quiet = connect_client();
	RUN_UNTIL(F.loop, control_clients(F.ctl) == 2, 10000);
	char line[200];
	memset(line, 'e', sizeof(line) - 1);
	line[sizeof(line) - 1] = 0;
	/* other services' events are not for it */
	for (int i = 0; i < 5000; i++)
		control_publish(F.ctl, "db", line);
	assert_int_equal(control_clients(F.ctl), 2);
	/* "web" ones are, but it never reads: dropped once 64 KiB are pending */
	for (int i = 0; i < 5000 && control_clients(F.ctl) == 2; i++) {
		control_publish(F.ctl, i % 2 ? "web" : "web:3", line);
		evm_loop_run_once(F.loop, 0);
	}
	assert_int_equal(control_clients(F.ctl), 1);
	close(fd);
	close(quiet);
}

static void test_dropped_inside_its_own_request(void **state)
{
	(void)state;
	int fd = small_reader();
	send_all(fd, "{\"cmd\":\"flood\"}\n{\"cmd\":\"never\"}\n", 32);
	RUN_UNTIL(F.loop, F.requests && !control_clients(F.ctl), 10000);
	assert_int_equal(F.requests, 1); /* what it queued behind is not served */
	char buf[65536];
	ssize_t r;
	while ((r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		;
	assert_int_equal(r, 0); /* closed */
	close(fd);
}

static void test_client_limit(void **state)
{
	(void)state;
	control_close(F.ctl);
	char err[256];
	assert_int_equal(open_ctl(2, 0, err, sizeof(err)), 0);
	int a = connect_client(), b = connect_client();
	RUN_UNTIL(F.loop, control_clients(F.ctl) == 2, 10000); /* both accepted before the third */
	int c = connect_client();
	expect_reply(c, "too many clients");
	assert_null(read_reply(c));
	close(c);
	send_all(a, "{\"cmd\":\"x\"}\n", 12);
	expect_reply(a, "\"echo\":\"x\"");
	close(a);
	close(b);
}

/* Bytes up to and including the first newline of fd (running the loop meanwhile); 0 if closed first. */
static size_t read_whole_reply(int fd)
{
	static char buf[65536];
	size_t n = 0;
	uint64_t deadline = t_now_ms() + T_MS(10000);
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0)
			return 0;
		if (r > 0) {
			char *nl = memchr(buf, '\n', (size_t)r);
			if (nl)
				return n + (size_t)(nl - buf) + 1;
			n += (size_t)r;
			continue;
		}
		evm_loop_run_once(F.loop, 5);
		if (t_now_ms() > deadline)
			fail_msg("no whole reply within %d ms", (int)T_MS(10000));
	}
}

/*
 * Replies count in max_total as events do (a client may ask for a status of
 * 10,000 services and never read it). Past the total, the client behind for
 * longest is dropped: one that takes a little now and then (a) is still
 * behind since its reply was made, before b's; the last one holding output
 * keeps it, however big.
 */
static void test_replies_count_in_the_total(void **state)
{
	(void)state;
	control_close(F.ctl);
	char err[256];
	struct control_opts o = {.path = F.path, .max_total = 5 * 512 * 1024, .on_request = on_request};
	assert_int_equal(control_open(F.loop, &o, &F.ctl, err, sizeof(err)), 0);
	int a = connect_client(), b = connect_client(), c = connect_client();
	RUN_UNTIL(F.loop, control_clients(F.ctl) == 3, 10000);
	send_all(a, "{\"cmd\":\"big\"}\n", 14);
	RUN_UNTIL(F.loop, F.requests == 1, 10000);
	send_all(b, "{\"cmd\":\"big\"}\n", 14);
	RUN_UNTIL(F.loop, F.requests == 2, 10000);
	run_a_bit(20);
	assert_int_equal(control_clients(F.ctl), 3); /* 2 MiB held: under the total */
	/* a takes what its socket holds, and the server sends it more: it is still behind */
	char buf[65536];
	size_t took = 0;
	ssize_t r;
	while ((r = recv(a, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		took += (size_t)r;
	assert_true(took > 0 && took < BIG_REPLY);
	run_a_bit(20);
	send_all(c, "{\"cmd\":\"big\"}\n", 14);
	RUN_UNTIL(F.loop, control_clients(F.ctl) == 2, 10000); /* 3 MiB: one goes */
	assert_true(read_whole_reply(b) > BIG_REPLY);
	assert_true(read_whole_reply(c) > BIG_REPLY);
	assert_int_equal(control_clients(F.ctl), 2);
	assert_int_equal(read_whole_reply(a), 0); /* a went: what its socket held, then the end */
	close(a);
	/* alone, one client keeps a reply bigger than the total */
	control_close(F.ctl);
	o.max_total = 4096;
	assert_int_equal(control_open(F.loop, &o, &F.ctl, err, sizeof(err)), 0);
	close(b);
	close(c);
	a = connect_client();
	send_all(a, "{\"cmd\":\"big\"}\n", 14);
	assert_true(read_whole_reply(a) > BIG_REPLY);
	close(a);
}

/* a client that reads all the time, on a thread of its own: the lines it got */
struct drainer {
	int fd;
	atomic_uint lines;
	atomic_bool stop;
};

static void *drain(void *arg)
{
	struct drainer *dr = arg;
	char buf[65536];
	while (!atomic_load(&dr->stop)) {
		struct pollfd p = {.fd = dr->fd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		ssize_t r = recv(dr->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r <= 0)
			continue;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] == '\n')
				atomic_fetch_add(&dr->lines, 1);
	}
	return NULL;
}

/*
 * A request pipelined behind a reply over OUT_SOFT: reading stops behind
 * that reply, and when the socket takes all of it in the same call (its
 * client reads as fast), nothing woke the server for the request already
 * read: it waited for the client to send more (the daemon's idle timeout
 * answered it, 10 s later). The client reads on a thread, so the socket
 * often takes the reply whole; 30 rounds.
 */
static void test_request_behind_a_big_reply_is_answered(void **state)
{
	(void)state;
	struct drainer dr = {.fd = connect_client()};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, drain, &dr), 0);
	for (unsigned i = 0; i < 30; i++) {
		const char *two = "{\"cmd\":\"soft\"}\n{\"cmd\":\"after\"}\n";
		send_all(dr.fd, two, strlen(two));
		uint64_t deadline = t_now_ms() + T_MS(5000);
		while (atomic_load(&dr.lines) < 2 * (i + 1)) {
			evm_loop_run_once(F.loop, 5);
			if (t_now_ms() > deadline) {
				atomic_store(&dr.stop, true);
				pthread_join(th, NULL);
				fail_msg("round %u: the request behind the big reply was not answered "
					 "(%u lines)", i, atomic_load(&dr.lines));
			}
		}
	}
	atomic_store(&dr.stop, true);
	pthread_join(th, NULL);
	close(dr.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_daemons_child_holds_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_listener_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_reply_and_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_keep_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_and_deferred_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_last_request_without_newline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_subscriber_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dropped_inside_its_own_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replies_count_in_the_total, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_behind_a_big_reply_is_answered, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
