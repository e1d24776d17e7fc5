/*
 * fuzz_proto.c - the control protocol as the daemon serves it: the bytes a
 * client sends go through the socket server (src/cli/control.c: framing,
 * bounded buffers, JSON parsing, pipelining, deferred replies) into the
 * request handlers (requests.c, units.c, config.c for `add`), on a real
 * loop with real services, and the daemon's event subscriber (daemon.c,
 * included here for its static on_event).
 *
 * Each input is one connection to a fresh daemon (loop, config, socket,
 * five services, none started) so that a finding replays alone. The client
 * writes the input, shuts down its writing side and reads until the daemon
 * hangs up; waits still pending when the loop has nothing left to do are
 * answered the way a shutdown answers them, then every service is stopped
 * and everything is freed (LeakSanitizer checks each run).
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

#include "../src/cli/daemon.c"

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

/* Read what the daemon sent; true once it has hung up. */
static bool drain(int fd)
{
	char buf[65536];
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r > 0)
			continue;
		return r == 0 || (errno != EAGAIN && errno != EINTR);
	}
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

	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock_path);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	size_t off = 0;
	bool hung_up = false;
	if (size == 0)
		shutdown(c, SHUT_WR);
	for (int i = 0; i < MAX_ITERATIONS && !hung_up; i++) {
		if (off < size) {
			ssize_t w = send(c, data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				off = size; /* the daemon hung up */
			if (off == size)
				shutdown(c, SHUT_WR);
		}
		int n = evm_loop_run_once(d.loop, 0);
		hung_up = drain(c);
		if (n == 0 && off == size && !hung_up) {
			if (d.waiters)
				waiters_finish(&d);
			else
				evm_loop_run_once(d.loop, 5); /* a child exit or a timer on its way */
		}
	}
	FUZZ_CHECK(hung_up);
	close(c);

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
