/*
 * fuzz_proto.c - the control protocol as the daemon serves it: the bytes a
 * client sends go through the socket server (src/daemon/control.c: framing,
 * bounded buffers, JSON parsing, pipelining, deferred replies) into the
 * request handlers (requests.c, units.c, config.c for `add`), on a real
 * loop with real services, and the daemon's event subscriber (daemon.c,
 * included here for its static on_event).
 *
 * Each input is served by a fresh daemon (loop, config, socket, five
 * services, none started) so that a finding replays alone. A NUL byte splits
 * the input between two clients connected side by side (one may subscribe to
 * events while the other acts). A client writes its part, shuts down its
 * writing side and reads until the daemon hangs up, or, at a line "!close",
 * closes its connection there and then. An events subscriber that shut its
 * writing side down is kept by the daemon (it still reads its events): once
 * the loop is idle and only such clients are left, they are over too. Waits
 * still pending when the loop has
 * nothing left to do are answered the way a shutdown answers them, then every
 * service is stopped and everything is freed (LeakSanitizer checks each run).
 *
 * Safety: requests start processes, and `add` names any program. Every
 * execve of this binary is redirected to `/bin/sleep 30`
 * (-Wl,--wrap=execve), so no input ever runs anything else. An `add` with
 * more than 4 instances or its own stop_timeout is refused before the
 * handler sees it: the first would spawn up to 100,000 sleeps for one input,
 * the second could stretch the stop at the end of a run; both keys are
 * checked by fuzz_config through the same code.
 */
#include "fuzz.h"

#include "../src/daemon/daemon.c"
#include "../src/daemon/controlint.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define MAX_INSTANCES 4
#define MAX_ITERATIONS 20000

int __real_execve(const char *path, char *const argv[], char *const envp[]);
int __wrap_execve(const char *path, char *const argv[], char *const envp[]);
int __wrap_execve(const char *path, char *const argv[], char *const envp[])
{
	static char *const sleeper[] = {"sleep", "30", NULL};
	(void)path;
	(void)argv;
	return __real_execve("/bin/sleep", sleeper, envp);
}

static char dir[64], cfg_path[128], sock_path[128];

static const char config_text[] =
	"[evmon]\n"
	"start_secs = 0\n"
	"stop_timeout = 100ms\n"
	"backoff_initial = 10ms\n"
	"backoff_max = 50ms\n"
	"[service:db]\n"
	"command = /bin/true\n"
	"autostart = false\n"
	"[service:web]\n"
	"command = sleep 100\n"
	"instances = 3\n"
	"restart = always\n"
	"autostart = false\n"
	"[service:job]\n"
	"command = true --flag 'a b'\n"
	"restart = on-failure:2\n"
	"exit_codes = 0,3\n"
	"autostart = false\n"
	"stop_signal = HUP\n";

static void cleanup(void)
{
	unlink(cfg_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* spawn from this process, not through a helper cloned from it */
	setenv("EVM_SPAWN_MODE", "direct", 1);
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/evmon-fuzz-proto-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(cfg_path, sizeof(cfg_path), "%s/d.ini", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/d.sock", dir);
	FILE *f = fopen(cfg_path, "we");
	if (!f || fputs(config_text, f) < 0 || fclose(f) != 0)
		abort();
	atexit(cleanup);
	return 0;
}

/* Too many instances, or a stop_timeout of its own: answered here (see the header). */
static bool too_costly(const cJSON *req)
{
	const cJSON *svc = cJSON_GetObjectItemCaseSensitive(req, "service"), *it;
	if (!cJSON_IsObject(svc))
		return false;
	cJSON_ArrayForEach(it, svc) {
		if (!it->string)
			continue;
		if (!strcmp(it->string, "stop_timeout"))
			return true;
		if (strcmp(it->string, "instances"))
			continue;
		double v = cJSON_IsNumber(it)   ? it->valuedouble
			   : cJSON_IsString(it) ? strtod(it->valuestring, NULL)
						: 1e9;
		if (!(v <= MAX_INSTANCES))
			return true;
	}
	return false;
}

static void on_request(struct client *cl, const cJSON *req, void *data)
{
	if (too_costly(req)) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddFalseToObject(r, "ok");
		cJSON_AddStringToObject(r, "error", "fuzz: too costly");
		control_reply(cl, r);
		cJSON_Delete(r);
		return;
	}
	requests_handle(cl, req, data);
}

/*
 * One client connection: its bytes, how much is sent, whether the daemon has
 * hung up. "!close" on a line of its own closes the connection there, with
 * whatever is still unanswered (a client vanishing during a wait, say).
 */
struct conn {
	int fd;
	const uint8_t *data;
	size_t size, off;
	bool cut, hung_up;
};

static void conn_open(struct conn *c, const uint8_t *data, size_t size)
{
	static const char mark[] = "!close\n";
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock_path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	*c = (struct conn){.fd = c->fd, .data = data, .size = size};
	const uint8_t *m = memmem(data, size, mark, sizeof(mark) - 1);
	if (m && (m == data || m[-1] == '\n')) {
		c->size = (size_t)(m - data);
		c->cut = true;
	}
}

/* Send some, read what the daemon sent; true once this connection is over. */
static bool conn_step(struct conn *c)
{
	if (c->hung_up)
		return true;
	if (c->off < c->size) {
		size_t n = c->size - c->off < 4096 ? c->size - c->off : 4096;
		ssize_t w = send(c->fd, c->data + c->off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0)
			c->off += (size_t)w;
		else if (w < 0 && errno != EAGAIN && errno != EINTR)
			c->off = c->size; /* the daemon hung up */
	}
	if (c->off == c->size && c->cut) {
		c->hung_up = true; /* "!close": gone without a word, there and then */
		close(c->fd);
		c->fd = -1;
		return true;
	}
	if (c->off == c->size)
		shutdown(c->fd, SHUT_WR);
	char buf[65536];
	for (;;) {
		ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r > 0)
			continue;
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			c->hung_up = true;
		return c->hung_up;
	}
}

/* Every client the daemon still has is a subscriber with nothing to do: kept, not stuck. */
static bool only_quiet_subscribers(const struct control *ctl)
{
	for (const struct client *cl = ctl->clients; cl; cl = cl->next)
		if (!cl->aborted && (!cl->subscribed || cl->pending || cl->out.len || cl->in.len ||
				     cl->raw || cl->stream))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct daemon d = {.cfg_path = cfg_path, .socket = sock_path};
	struct errlist errs = {0};
	if (config_load(cfg_path, &d.cfg, &errs) < 0 || evm_loop_new(&d.loop, NULL) < 0)
		abort();
	char err[512];
	struct control_opts co = {.path = sock_path, .max_clients = 4, .max_pending = 1 << 20,
				  .on_request = on_request, .data = &d};
	if (control_open(d.loop, &co, &d.ctl, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_proto: %s\n", err);
		abort();
	}
	struct evm_sub *sub = NULL;
	evm_subscribe(d.loop, EVM_EV_SERVICE | EVM_EV_WARNING | EVM_EV_ORPHAN, on_event, &d, &sub);
	if (units_load(&d) < 0)
		abort();

	/* a NUL byte splits the input between two clients, served side by side */
	const uint8_t *nul = memchr(data, 0, size);
	size_t n0 = nul ? (size_t)(nul - data) : size;
	struct conn c[2];
	int nconn = nul ? 2 : 1;
	conn_open(&c[0], data, n0);
	if (nul)
		conn_open(&c[1], nul + 1, size - n0 - 1);
	bool all_done = false;
	for (int i = 0; i < MAX_ITERATIONS && !all_done; i++) {
		bool sending = false;
		all_done = true;
		for (int k = 0; k < nconn; k++) {
			all_done &= conn_step(&c[k]);
			sending |= !c[k].hung_up && c[k].off < c[k].size;
		}
		int n = evm_loop_run_once(d.loop, 0);
		if (n == 0 && !sending && !all_done) {
			if (d.waiters)
				waiters_finish(&d);
			else if (evm_loop_run_once(d.loop, 5) == 0 && only_quiet_subscribers(d.ctl))
				all_done = true; /* subscribers that half-closed: the daemon keeps them */
			/* else a child exit or a timer on its way */
		}
	}
	FUZZ_CHECK(all_done);
	for (int k = 0; k < nconn; k++)
		if (c[k].fd >= 0)
			close(c[k].fd);

	d.stopping = true;
	FUZZ_CHECK(evm_shutdown(d.loop, 0) == 0);
	waiters_finish(&d);
	evm_unsubscribe(sub);
	control_close(d.ctl);
	d.ctl = NULL;
	units_free(&d);
	evm_loop_free(d.loop);
	config_free(d.cfg);
	return 0;
}
