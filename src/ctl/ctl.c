/*
 * ctl.c - `evmon ctl`: send one request to a running daemon and show the
 * answer (a table, a line per service, or the raw JSON with --json);
 * `events` follows the stream until interrupted.
 *
 * Exit codes: 0 done, 1 the daemon reported a failure, 2 usage,
 * 3 no daemon to talk to (or the connection broke).
 */
#include "cli.h"

#include "argv.h"
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* a JSON number is cast only when in range: 1e999 parses as inf, and such a cast is UB */
#define MAX_MS 1e15

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_NODAEMON 3

struct ctl {
	const char *socket;
	bool json;
	double timeout; /* seconds to wait for services with start/stop/restart; 0: no wait */
	int fd;
	struct linebuf in;
	size_t last;	/* bytes of in taken by the line read_line returned */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: evmon ctl [-S SOCKET] [--json] [-t SECONDS] COMMAND [ARGS...]\n"
		"\n"
		"commands:\n"
		"  status [NAME...]          state of every (or the named) service\n"
		"  start NAME...             start, and wait until running or failed\n"
		"  stop NAME...              stop, and wait until stopped\n"
		"  restart NAME...           stop then start, and wait\n"
		"  signal NAME... SIGNAL     send a signal (HUP, USR1, 15, ...)\n"
		"  add [OPTIONS] NAME [--] COMMAND [ARG...]\n"
		"                            add and start a service (not in the config file)\n"
		"      -r, --restart POLICY  on-failure (default), always, never, unless-stopped\n"
		"      -e, --env KEY=VALUE   environment (repeatable)\n"
		"      -w, --workdir DIR     working directory\n"
		"      -u, --user USER       run as USER\n"
		"      -s, --set KEY=VALUE   any [service:NAME] key (repeatable)\n"
		"      -n, --instances N     N copies, NAME:0..N-1\n"
		"          --no-start        add it stopped\n"
		"  add --json SERVICE-JSON   add from a JSON object (see docs/PROTOCOL.md)\n"
		"  remove NAME...            stop and forget services\n"
		"  reload                    re-read the config file (like SIGHUP)\n"
		"  events [NAME...]          follow state changes and exits as they happen\n"
		"  logs [OPTIONS] NAME       the last lines of a service's log (stdout = log)\n"
		"      -n, --lines N         this many lines (default 10; 0: none)\n"
		"      -f, --follow          then print what it writes, until interrupted\n"
		"      -e, --stderr          its stderr log (with stderr = log), not stdout's\n"
		"  reopen-logs               close the log files; the next lines create them\n"
		"                            again (after logrotate; like SIGUSR1)\n"
		"  shutdown                  stop every service and the daemon\n"
		"  ping                      is the daemon there?\n"
		"\n"
		"NAME is a service, the NAME of a definition with instances (all of them),\n"
		"or a glob ('web:*'); logs takes one service.\n"
		"\n"
		"  -S, --socket PATH   the daemon's socket (default: $EVMON_SOCKET, /run/evmon.sock\n"
		"                      for root, else $XDG_RUNTIME_DIR/evmon.sock)\n"
		"      --json          print the daemon's JSON answer as it is\n"
		"  -t, --timeout SECS  how long start/stop/restart wait (default 120; 0: do not wait)\n"
		"\n"
		"exit status: 0 done, 1 failed, 2 usage error, 3 no daemon\n");
}

/* ----------------------------------------------------------- talking */

static int connect_daemon(struct ctl *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(c->socket) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "evmon ctl: %s: socket path too long\n", c->socket);
		return -1;
	}
	strcpy(sa.sun_path, c->socket);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "evmon ctl: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			fprintf(stderr,
				"evmon ctl: no daemon at %s: %s\n"
				"evmon ctl: start one with: evmon daemon -c FILE [-S %s]\n",
				c->socket, strerror(e), c->socket);
		else
			fprintf(stderr, "evmon ctl: cannot connect to %s: %s\n", c->socket,
				strerror(e));
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

static int send_request(struct ctl *c, cJSON *req)
{
	char *s = cJSON_PrintUnformatted(req);
	if (!s)
		return -1;
	int rc = 0;
	struct part {
		const char *p;
		size_t n;
	} parts[2] = {{s, strlen(s)}, {"\n", 1}};
	for (int i = 0; i < 2 && rc == 0; i++) {
		size_t off = 0;
		while (off < parts[i].n) {
			ssize_t w = send(c->fd, parts[i].p + off, parts[i].n - off, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = -1; /* reported if no answer explains it */
				break;
			}
			off += (size_t)w;
		}
	}
	cJSON_free(s);
	return rc;
}

/*
 * Read one line into *line (NUL-terminated in the buffer, valid until the
 * next call). timeout_ms < 0: forever. 0 ok, -1 error or EOF (reported).
 */
static int read_line(struct ctl *c, char **line, int timeout_ms)
{
	if (c->last) {
		linebuf_consume(&c->in, c->last);
		c->last = 0;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		ssize_t n = linebuf_line(&c->in);
		if (n >= 0) {
			*line = linebuf_start(&c->in);
			(*line)[n] = '\0';
			c->last = (size_t)n + 1;
			return 0;
		}
		int wait = -1;
		if (timeout_ms >= 0) {
			struct timespec t;
			clock_gettime(CLOCK_MONOTONIC, &t);
			long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
			wait = el >= timeout_ms ? 0 : timeout_ms - (int)el;
		}
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		int r = poll(&p, 1, wait);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			fprintf(stderr, "evmon ctl: %s: no answer after %d s\n", c->socket,
				timeout_ms / 1000);
			return -1;
		}
		char *dst = linebuf_space(&c->in, 65536);
		ssize_t k = dst ? read(c->fd, dst, 65536) : -1;
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fprintf(stderr, "evmon ctl: %s: %s\n", c->socket,
				k == 0 ? "the daemon closed the connection" : strerror(errno));
			return -1;
		}
		c->in.len += (size_t)k;
	}
}

/* Send req (taken), read the answer into *resp. Returns 0, or an exit code. */
static int call(struct ctl *c, cJSON *req, cJSON **resp, const char **raw, int timeout_ms)
{
	*resp = NULL;
	if (connect_daemon(c) < 0) {
		cJSON_Delete(req);
		return EXIT_NODAEMON;
	}
	int r = send_request(c, req);
	cJSON_Delete(req);
	char *line;
	/* a refused connection gets its reason before the daemon hangs up: read it anyway */
	if (read_line(c, &line, r < 0 ? 1000 : timeout_ms) < 0)
		return EXIT_NODAEMON;
	*raw = line;
	*resp = cJSON_Parse(line);
	if (!cJSON_IsObject(*resp)) {
		fprintf(stderr, "evmon ctl: %s: not a JSON object from the daemon: %.200s\n",
			c->socket, line);
		cJSON_Delete(*resp);
		*resp = NULL;
		return EXIT_NODAEMON;
	}
	return 0;
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* The daemon said no: print its message(s). */
static int report_failure(const cJSON *resp)
{
	const cJSON *errs = cJSON_GetObjectItemCaseSensitive(resp, "errors"), *it;
	if (cJSON_IsArray(errs) && cJSON_GetArraySize(errs) > 0) {
		cJSON_ArrayForEach(it, errs)
			if (cJSON_IsString(it))
				fprintf(stderr, "evmon ctl: %s\n", it->valuestring);
		const char *e = jstr(resp, "error");
		const cJSON *first = cJSON_GetArrayItem(errs, 0);
		if (e && cJSON_GetArraySize(errs) == 1 && cJSON_IsString(first) &&
		    !strcmp(e, first->valuestring))
			return EXIT_FAILED;
	}
	const char *e = jstr(resp, "error");
	fprintf(stderr, "evmon ctl: %s\n", e ? e : "request failed");
	return EXIT_FAILED;
}

/* ------------------------------------------------------------ output */

static void last_exit(const cJSON *s, char *buf, size_t len)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, "last_exit");
	if (!cJSON_IsObject(x)) {
		snprintf(buf, len, "-");
		return;
	}
	const char *sn = jstr(x, "signal_name");
	if (sn)
		snprintf(buf, len, "signal %s", sn);
	else if (jnum(x, "code", -1) >= 0 && jnum(x, "code", -1) <= INT_MAX)
		snprintf(buf, len, "code %d", (int)jnum(x, "code", -1));
	else
		snprintf(buf, len, "unknown");
}

static void info_text(const cJSON *s, char *buf, size_t len)
{
	const char *err = jstr(s, "error");
	double next = jnum(s, "next_start_ms", -1);
	char d[32];
	if (next >= 0 && next <= MAX_MS)
		snprintf(buf, len, "next start in %s%s%s", proto_duration((uint64_t)next, d, sizeof(d)),
			 err ? "; " : "", err ? err : "");
	else
		snprintf(buf, len, "%s", err ? err : "");
}

struct row {
	char name[160], state[16], pid[16], uptime[24], restarts[16], exit[32], info[300];
};

static void print_table(const cJSON *services)
{
	size_t n = (size_t)cJSON_GetArraySize(services), i = 0;
	struct row *rows = calloc(n + 1, sizeof(*rows));
	if (!rows)
		return;
	snprintf(rows[0].name, sizeof(rows[0].name), "NAME");
	snprintf(rows[0].state, sizeof(rows[0].state), "STATE");
	snprintf(rows[0].pid, sizeof(rows[0].pid), "PID");
	snprintf(rows[0].uptime, sizeof(rows[0].uptime), "UPTIME");
	snprintf(rows[0].restarts, sizeof(rows[0].restarts), "RESTARTS");
	snprintf(rows[0].exit, sizeof(rows[0].exit), "LAST EXIT");
	snprintf(rows[0].info, sizeof(rows[0].info), "INFO");
	const cJSON *s;
	cJSON_ArrayForEach(s, services) {
		struct row *r = &rows[++i];
		const char *name = jstr(s, "name"), *state = jstr(s, "state");
		snprintf(r->name, sizeof(r->name), "%s", name ? name : "?");
		snprintf(r->state, sizeof(r->state), "%s", state ? state : "?");
		double pid = jnum(s, "pid", 0);
		snprintf(r->pid, sizeof(r->pid), pid > 0 ? "%.0f" : "-", pid);
		double up = jnum(s, "uptime_ms", 0);
		if (up > 0 && up <= MAX_MS)
			proto_duration((uint64_t)up, r->uptime, sizeof(r->uptime));
		else
			snprintf(r->uptime, sizeof(r->uptime), "-");
		snprintf(r->restarts, sizeof(r->restarts), "%.0f", jnum(s, "restarts", 0));
		last_exit(s, r->exit, sizeof(r->exit));
		info_text(s, r->info, sizeof(r->info));
	}
	int w[6] = {0};
	for (size_t k = 0; k <= n; k++) {
		const char *cols[6] = {rows[k].name, rows[k].state, rows[k].pid, rows[k].uptime,
				       rows[k].restarts, rows[k].exit};
		for (int j = 0; j < 6; j++) {
			int l = (int)strlen(cols[j]);
			if (l > w[j])
				w[j] = l;
		}
	}
	for (size_t k = 0; k <= n; k++) {
		struct row *r = &rows[k];
		char line[1024];
		snprintf(line, sizeof(line), "%-*s  %-*s  %*s  %*s  %*s  %-*s  %s", w[0], r->name, w[1],
			 r->state, w[2], r->pid, w[3], r->uptime, w[4], r->restarts, w[5], r->exit,
			 r->info);
		size_t l = strlen(line);
		while (l && line[l - 1] == ' ')
			line[--l] = '\0';
		puts(line);
	}
	free(rows);
}

/* "web: running, pid 42" for each service of an answer */
static void print_services(const cJSON *resp)
{
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(resp, "services")) {
		const char *name = jstr(s, "name"), *state = jstr(s, "state");
		char info[300], ex[32];
		double pid = jnum(s, "pid", 0);
		info_text(s, info, sizeof(info));
		last_exit(s, ex, sizeof(ex));
		printf("%s: %s", name ? name : "?", state ? state : "?");
		if (pid > 0)
			printf(", pid %.0f", pid);
		if (state && (!strcmp(state, "exited") || !strcmp(state, "fatal")) && strcmp(ex, "-"))
			printf(", last exit: %s", ex);
		if (*info)
			printf(" (%s)", info);
		putchar('\n');
	}
}

static void print_names(const char *label, const cJSON *arr)
{
	const cJSON *it;
	if (!cJSON_GetArraySize(arr))
		return;
	printf("%s:", label);
	cJSON_ArrayForEach(it, arr)
		if (cJSON_IsString(it))
			printf(" %s", it->valuestring);
	putchar('\n');
}

/* ------------------------------------------------------------ commands */

static cJSON *request(const char *cmd, char **names, int n)
{
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", cmd);
	if (n > 0) {
		cJSON *arr = cJSON_AddArrayToObject(req, "names");
		for (int i = 0; i < n; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
	}
	return req;
}

static int timeout_ms(const struct ctl *c, bool waits)
{
	/* the daemon answers a wait when it ends; leave it room to say so */
	return waits ? (int)(c->timeout * 1000) + 30000 : 60000;
}

static int finish(struct ctl *c, cJSON *resp, const char *raw, int (*show)(const cJSON *))
{
	int rc = 0;
	if (c->json) {
		puts(raw);
		rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")) ? 0 : EXIT_FAILED;
	} else if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"))) {
		if (show)
			show(resp);
		rc = report_failure(resp);
	} else if (show) {
		rc = show(resp);
	}
	cJSON_Delete(resp);
	return rc;
}

static int show_status(const cJSON *resp)
{
	print_table(cJSON_GetObjectItemCaseSensitive(resp, "services"));
	return 0;
}

static int show_services(const cJSON *resp)
{
	print_services(resp);
	return 0;
}

static int show_reload(const cJSON *resp)
{
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")))
		return 0;
	print_names("added", cJSON_GetObjectItemCaseSensitive(resp, "added"));
	print_names("removed", cJSON_GetObjectItemCaseSensitive(resp, "removed"));
	print_names("changed", cJSON_GetObjectItemCaseSensitive(resp, "changed"));
	printf("unchanged: %.0f\n", jnum(resp, "unchanged", 0));
	return 0;
}

static int show_signal(const cJSON *resp)
{
	print_names("signaled", cJSON_GetObjectItemCaseSensitive(resp, "signaled"));
	return 0;
}

static int show_removed(const cJSON *resp)
{
	print_names("removed", cJSON_GetObjectItemCaseSensitive(resp, "removed"));
	return 0;
}

static int show_ping(const cJSON *resp)
{
	const char *v = jstr(resp, "version"), *cfg = jstr(resp, "config");
	printf("evmon daemon %s, pid %.0f, %.0f services, config %s\n", v ? v : "?",
	       jnum(resp, "pid", 0), jnum(resp, "services", 0), cfg ? cfg : "?");
	return 0;
}

static int simple(struct ctl *c, cJSON *req, bool waits, int (*show)(const cJSON *))
{
	cJSON *resp;
	const char *raw;
	int rc = call(c, req, &resp, &raw, timeout_ms(c, waits));
	return rc ? rc : finish(c, resp, raw, show);
}

static int do_startstop(struct ctl *c, const char *cmd, int argc, char **argv)
{
	if (argc < 1) {
		fprintf(stderr, "evmon ctl %s: which service? (a name, or a glob like 'web:*')\n", cmd);
		return EXIT_USAGE;
	}
	cJSON *req = request(cmd, argv, argc);
	bool waits = c->timeout > 0;
	if (waits) {
		cJSON_AddTrueToObject(req, "wait");
		cJSON_AddNumberToObject(req, "timeout", c->timeout);
	}
	return simple(c, req, waits, show_services);
}

static int do_signal(struct ctl *c, int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "evmon ctl signal: usage: signal NAME... SIGNAL\n");
		return EXIT_USAGE;
	}
	const char *sig = argv[argc - 1];
	if (cli_parse_signal(sig, true) < 0) {
		fprintf(stderr, "evmon ctl signal: '%s' is not a signal\n", sig);
		return EXIT_USAGE;
	}
	cJSON *req = request("signal", argv, argc - 1);
	cJSON_AddStringToObject(req, "signal", sig);
	return simple(c, req, false, show_signal);
}

static int add_kv(cJSON *svc, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv) {
		fprintf(stderr, "evmon ctl add: '%s' is not KEY=VALUE\n", kv);
		return -1;
	}
	char *key = strndup(kv, (size_t)(eq - kv));
	cJSON_DeleteItemFromObjectCaseSensitive(svc, key);
	cJSON_AddStringToObject(svc, key, eq + 1);
	free(key);
	return 0;
}

static int do_add(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"restart", required_argument, NULL, 'r'}, {"env", required_argument, NULL, 'e'},
		{"workdir", required_argument, NULL, 'w'}, {"user", required_argument, NULL, 'u'},
		{"set", required_argument, NULL, 's'},	   {"instances", required_argument, NULL, 'n'},
		{"no-start", no_argument, NULL, 'N'},	   {"json", required_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	cJSON *svc = cJSON_CreateObject(), *env = cJSON_CreateArray();
	cJSON *fromjson = NULL;
	int o, rc = EXIT_USAGE;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+r:e:w:u:s:n:", opts, NULL)) != -1) {
		switch (o) {
		case 'r': cJSON_AddStringToObject(svc, "restart", optarg); break;
		case 'e': cJSON_AddItemToArray(env, cJSON_CreateString(optarg)); break;
		case 'u': cJSON_AddStringToObject(svc, "user", optarg); break;
		case 'n': cJSON_AddStringToObject(svc, "instances", optarg); break;
		case 'N': cJSON_AddFalseToObject(svc, "autostart"); break;
		case 'w': {
			char *abs = NULL;
			char *cwd = getcwd(NULL, 0);
			if (optarg[0] != '/' && cwd && asprintf(&abs, "%s/%s", cwd, optarg) < 0)
				abs = NULL;
			cJSON_AddStringToObject(svc, "directory", abs ? abs : optarg);
			free(abs);
			free(cwd);
			break;
		}
		case 's':
			if (add_kv(svc, optarg) < 0)
				goto out;
			break;
		case 'j':
			fromjson = cJSON_Parse(optarg);
			if (!cJSON_IsObject(fromjson)) {
				fprintf(stderr, "evmon ctl add: --json needs a JSON object\n");
				goto out;
			}
			break;
		default: goto out;
		}
	}
	if (fromjson) {
		if (optind < argc) {
			fprintf(stderr, "evmon ctl add: --json takes no other arguments\n");
			goto out;
		}
		cJSON_Delete(svc);
		svc = fromjson;
		fromjson = NULL;
	} else {
		if (optind + 1 >= argc) {
			fprintf(stderr, "evmon ctl add: usage: add [OPTIONS] NAME [--] COMMAND [ARG...]\n");
			goto out;
		}
		cJSON_AddStringToObject(svc, "name", argv[optind++]);
		if (!strcmp(argv[optind], "--"))
			optind++;
		if (optind >= argc) {
			fprintf(stderr, "evmon ctl add: no command\n");
			goto out;
		}
		cJSON *cmd = cJSON_CreateArray();
		for (int i = optind; i < argc; i++)
			cJSON_AddItemToArray(cmd, cJSON_CreateString(argv[i]));
		cJSON_AddItemToObject(svc, "command", cmd);
		if (cJSON_GetArraySize(env)) {
			cJSON_AddItemToObject(svc, "environment", env);
			env = NULL;
		}
	}
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "add");
	cJSON_AddItemToObject(req, "service", svc);
	svc = NULL;
	bool waits = c->timeout > 0;
	if (waits) {
		cJSON_AddTrueToObject(req, "wait");
		cJSON_AddNumberToObject(req, "timeout", c->timeout);
	}
	rc = simple(c, req, waits, show_services);
out:
	cJSON_Delete(svc);
	cJSON_Delete(env);
	cJSON_Delete(fromjson);
	return rc;
}

static int do_events(struct ctl *c, int argc, char **argv)
{
	cJSON *resp;
	const char *raw;
	int rc = call(c, request("events", argv, argc), &resp, &raw, 60000);
	if (rc)
		return rc;
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"))) {
		rc = c->json ? (puts(raw), EXIT_FAILED) : report_failure(resp);
		cJSON_Delete(resp);
		return rc;
	}
	cJSON_Delete(resp);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		char *line;
		if (read_line(c, &line, -1) < 0)
			return EXIT_NODAEMON;
		if (c->json) {
			puts(line);
			continue;
		}
		cJSON *ev = cJSON_Parse(line);
		char text[1024];
		proto_event_line(ev, text, sizeof(text));
		const char *t = jstr(ev, "time");
		printf("%s %s\n", t ? t : "-", text);
		cJSON_Delete(ev);
	}
}

static int write_out(const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(1, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* After the answer, the connection carries the log file's bytes: copy them as they are. */
static int do_logs(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"lines", required_argument, NULL, 'n'}, {"follow", no_argument, NULL, 'f'},
		{"stderr", no_argument, NULL, 'e'},	 {NULL, 0, NULL, 0},
	};
	long lines = 10;
	bool follow = false, err = false;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+n:fe", opts, NULL)) != -1) {
		switch (o) {
		case 'n': {
			char *end;
			errno = 0;
			lines = strtol(optarg, &end, 10);
			if (*end || errno || lines < 0 || lines > 1000000000) {
				fprintf(stderr, "evmon ctl logs: bad number of lines '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'f': follow = true; break;
		case 'e': err = true; break;
		default: return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "evmon ctl logs: usage: logs [-n LINES] [-f] [--stderr] NAME\n");
		return EXIT_USAGE;
	}
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "logs");
	cJSON_AddStringToObject(req, "name", argv[optind]);
	cJSON_AddNumberToObject(req, "lines", (double)lines);
	if (follow)
		cJSON_AddTrueToObject(req, "follow");
	if (err)
		cJSON_AddStringToObject(req, "stream", "stderr");
	cJSON *resp;
	const char *raw;
	int rc = call(c, req, &resp, &raw, 60000);
	if (rc)
		return rc;
	bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"));
	if (!ok) {
		rc = c->json ? (puts(raw), EXIT_FAILED) : report_failure(resp);
		cJSON_Delete(resp);
		return rc;
	}
	cJSON_Delete(resp);
	/* what came with the answer, then the rest */
	linebuf_consume(&c->in, c->last);
	c->last = 0;
	if (c->in.len && write_out(linebuf_start(&c->in), c->in.len) < 0)
		return 0; /* our reader went away (| head): that is the end */
	linebuf_consume(&c->in, c->in.len);
	char buf[65536];
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "evmon ctl: %s: %s\n", c->socket, strerror(errno));
			return EXIT_NODAEMON;
		}
		if (n == 0)
			return 0;
		if (write_out(buf, (size_t)n) < 0)
			return 0;
	}
}

static int show_reopened(const cJSON *resp)
{
	const char *dir = jstr(resp, "log_dir");
	if (dir)
		printf("closed %.0f open log files; they are created again in %s at the next write\n",
		       jnum(resp, "closed", 0), dir);
	else
		printf("no log_dir: nothing to reopen\n");
	return 0;
}

int cmd_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 'S'}, {"json", no_argument, NULL, 'J'},
		{"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct ctl c = {.timeout = 120, .fd = -1};
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+S:t:h", opts, NULL)) != -1) {
		switch (o) {
		case 'S': c.socket = optarg; break;
		case 'J': c.json = true; break;
		case 't': {
			char *end;
			c.timeout = strtod(optarg, &end);
			if (*end || c.timeout < 0 || c.timeout > 86400) {
				fprintf(stderr, "evmon ctl: bad timeout '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!c.socket)
		c.socket = proto_default_socket();
	signal(SIGPIPE, SIG_IGN);
	const char *cmd = argv[optind];
	int n = argc - optind - 1;
	char **args = argv + optind + 1;
	int rc;
	if (!strcmp(cmd, "status"))
		rc = simple(&c, request("status", args, n), false, show_status);
	else if (!strcmp(cmd, "start") || !strcmp(cmd, "stop") || !strcmp(cmd, "restart"))
		rc = do_startstop(&c, cmd, n, args);
	else if (!strcmp(cmd, "signal"))
		rc = do_signal(&c, n, args);
	else if (!strcmp(cmd, "add"))
		rc = do_add(&c, n + 1, args - 1);
	else if (!strcmp(cmd, "remove")) {
		if (n < 1) {
			fprintf(stderr, "evmon ctl remove: which service?\n");
			return EXIT_USAGE;
		}
		rc = simple(&c, request("remove", args, n), false, show_removed);
	} else if (!strcmp(cmd, "reload") || !strcmp(cmd, "shutdown") || !strcmp(cmd, "ping")) {
		if (n > 0) {
			fprintf(stderr, "evmon ctl %s: takes no arguments\n", cmd);
			return EXIT_USAGE;
		}
		rc = simple(&c, request(cmd, NULL, 0), false,
			    !strcmp(cmd, "reload") ? show_reload : !strcmp(cmd, "ping") ? show_ping : NULL);
	} else if (!strcmp(cmd, "events"))
		rc = do_events(&c, n, args);
	else if (!strcmp(cmd, "logs"))
		rc = do_logs(&c, n + 1, args - 1);
	else if (!strcmp(cmd, "reopen-logs")) {
		if (n > 0) {
			fprintf(stderr, "evmon ctl %s: takes no arguments\n", cmd);
			return EXIT_USAGE;
		}
		rc = simple(&c, request(cmd, NULL, 0), false, show_reopened);
	}
	else {
		fprintf(stderr, "evmon ctl: unknown command '%s' (try: evmon ctl --help)\n", cmd);
		rc = EXIT_USAGE;
	}
	if (c.fd >= 0)
		close(c.fd);
	linebuf_free(&c.in);
	return rc;
}
