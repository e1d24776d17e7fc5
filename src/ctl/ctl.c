/*
 * ctl.c - `evmon ctl`: send one request to a running daemon and show the
 * answer (show.c: a table, a line per service; or the raw JSON with
 * --json); `events` follows the stream until interrupted.
 *
 * Options go anywhere (GNU style: `ctl status --json`, `ctl logs web -n 3`):
 * the global ones (-S, --json, -t) before or after the command, the
 * command's own after it. For `add`, the options end at the command to run
 * (its first word after NAME, or what follows --), whose own options are
 * its business.
 *
 * Exit codes: 0 done, 1 the daemon reported a failure, 2 usage,
 * 3 no daemon to talk to (or the connection broke). `status NAME...` and
 * `is-active NAME...` answer with the state instead, as an LSB init
 * script's status and systemctl is-active do: 0 running, 3 not running,
 * 4 unknown (no such service, no daemon). What cannot be written to
 * stdout fails the command (1; 4 for a state), but for a reader gone
 * (`| head`): that ends ctl quietly, with the status it had (out.h).
 */
#include "cli.h"

#include "argv.h"
#include "conn.h"
#include "out.h"
#include "proto.h"
#include "safe.h"
#include "show.h"
#include "wait.h"

#include <errno.h>
#include <evmon.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_NODAEMON CTL_EXIT_NODAEMON
#define EXIT_NOT_RUNNING 3 /* status NAME, is-active: LSB's "program is not running" */
#define EXIT_UNKNOWN 4	   /* LSB's "program or service status is unknown" */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: evmon ctl [-S SOCKET] [--json] [-t SECONDS] COMMAND [ARGS...]\n"
		"\n"
		"commands:\n"
		"  status [NAME...]          state of every (or the named) service\n"
		"  is-active NAME...         print the state of each (running, stopped, ...)\n"
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
		"  reload NAME...            send each its reload_signal (default HUP); with\n"
		"                            ready = notify, wait for its RELOADING=1, READY=1\n"
		"  events [NAME...]          follow state changes and exits as they happen\n"
		"  logs [OPTIONS] NAME       the last lines of a service's log (stdout = log)\n"
		"      -n, --lines N         this many lines (default 10; 0: none)\n"
		"      -f, --follow          then print what it writes, until interrupted\n"
		"      -e, --stderr          its stderr log (with stderr = log), not stdout's\n"
		"      --raw                 its bytes as they are also to a terminal (else\n"
		"                            control characters are escaped there)\n"
		"  reopen-logs               close the log files; the next lines create them\n"
		"                            again (after logrotate; like SIGUSR1)\n"
		"  metrics                   the daemon's and services' metrics (Prometheus text)\n"
		"  shutdown                  stop every service and the daemon\n"
		"  reexec                    the daemon execs its binary again (an upgrade) in\n"
		"                            place: every service keeps running (like SIGUSR2)\n"
		"  wait NAME... [--for STATE]  until each is running (default), ready, healthy,\n"
		"                            stopped or exited: 0 reached, 1 it cannot be\n"
		"                            (fatal, exited, stopped, blocked), 3 after -t SECONDS\n"
		"  health NAME               0 healthy (or ready, without a health check), else 1\n"
		"  ping                      is the daemon there?\n"
		"\n"
		"NAME is a service, the NAME of a definition with instances (all of them),\n"
		"or a glob ('web:*'); logs takes one service.\n"
		"\n"
		"  -S, --socket PATH   the daemon's socket (default: $EVMON_SOCKET, /run/evmon.sock\n"
		"                      for root, else $XDG_RUNTIME_DIR/evmon.sock, else\n"
		"                      ${TMPDIR:-/tmp}/evmon-UID/evmon.sock)\n"
		"      --json          print the daemon's JSON answer as it is\n"
		"  -t, --timeout SECS  how long start/stop/restart wait (default 120; 0: do not wait),\n"
		"                      and another command for its answer (default 60)\n"
		"  -V, --version       print the version\n"
		"  -h, --help          print this help\n"
		"Options may also follow the command (evmon ctl status --json); for add, they\n"
		"end at the command to run.\n"
		"\n"
		"exit status: 0 done, 1 failed, 2 usage error, 3 no daemon; status NAME... and\n"
		"is-active: 0 every one is running, 3 one is not, 4 unknown (no such service,\n"
		"no daemon)\n");
}

/* ------------------------------------------------------------- options */

enum { OPT_JSON = 0x100, OPT_NO_START, OPT_SERVICE_JSON, OPT_RAW };

#define GLOBAL_SHORT "S:t:hV"
/* and --json, which add takes with an argument */
#define GLOBAL_LONG                                                                        \
	{"socket", required_argument, NULL, 'S'}, {"timeout", required_argument, NULL, 't'}, \
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}
#define JSON_FLAG {"json", no_argument, NULL, OPT_JSON}

/* A command's own options, besides the global ones; handle returns 0, or an exit code. */
struct cmd_opts {
	const char *shorts;
	const struct option *longs; /* GLOBAL_LONG, then the command's (and JSON_FLAG) */
	int (*handle)(struct ctl *c, int opt, const char *arg, void *data);
	void *data;
	int last_operand; /* after this many operands the rest is taken as it is (0: never) */
};

/* -S, --json, -t, -h, -V: 0 to go on, else the exit code (-1: done, exit 0). */
static int global_option(struct ctl *c, int opt, const char *arg)
{
	char *end;
	switch (opt) {
	case 'S': c->socket = arg; return 0;
	case OPT_JSON: c->json = true; return 0;
	case 't':
		/* seconds as written: digits and one '.' (strtod took 1e1, 0x10, " 5") */
		c->timeout = arg[strspn(arg, "0123456789.")] || strchr(arg, '.') != strrchr(arg, '.')
				     ? -1 : strtod(arg, &end);
		if ((c->timeout >= 0 && (*end || end == arg)) || !(c->timeout >= 0 && c->timeout <= 86400)) {
			fprintf(stderr, "evmon ctl: bad timeout '%s': seconds from 0 to 86400 (0: do "
				"not wait)\n", arg);
			return EXIT_USAGE;
		}
		c->timeout_set = true;
		return 0;
	case 'h': usage(stdout); return -1;
	case 'V': printf("evmon ctl %s\n", evm_version()); return -1;
	default: usage(stderr); return EXIT_USAGE;
	}
}

/*
 * The operands of argv[1..] into ops (*n of them), the options handled
 * wherever they are: "-" makes getopt hand back each operand in order, so
 * the options between them are seen too, whatever POSIXLY_CORRECT says.
 * "--" ends the options, and so does operand number last_operand; *at is
 * where that one is in argv (argc if there is none). Returns -1 to go on,
 * else the exit code.
 */
static int parse_args(struct ctl *c, int argc, char **argv, const struct cmd_opts *co, char **ops,
		      int *n, int *at)
{
	char shorts[64];
	snprintf(shorts, sizeof(shorts), "-%s%s", GLOBAL_SHORT, co->shorts ? co->shorts : "");
	int o;
	*n = 0;
	*at = argc;
	optind = 0; /* a full restart of getopt: each command parses afresh */
	/* getopt's messages start with argv[0]: "evmon ctl", or "evmon ctl start" */
	char me[96], *arg0 = argv[0];
	snprintf(me, sizeof(me), "evmon ctl%s%.80s", strcmp(arg0, "ctl") ? " " : "",
		 strcmp(arg0, "ctl") ? arg0 : "");
	argv[0] = me;
	while ((o = getopt_long(argc, argv, shorts, co->longs, NULL)) != -1) {
		int rc = 0;
		if (o == 1) {
			ops[(*n)++] = optarg;
			if (co->last_operand && *n == co->last_operand) {
				*at = optind - 1;
				break;
			}
		} else if (o == 'S' || o == 't' || o == 'h' || o == 'V' || o == '?' || o == OPT_JSON ||
			   !co->handle) {
			rc = global_option(c, o, optarg);
		} else {
			rc = co->handle(c, o, optarg, co->data);
		}
		if (rc) {
			argv[0] = arg0;
			return rc < 0 ? 0 : rc;
		}
	}
	argv[0] = arg0;
	if (co->last_operand && *n < co->last_operand && optind + co->last_operand - 1 - *n < argc)
		*at = optind + co->last_operand - 1 - *n; /* after "--" */
	while (optind < argc)
		ops[(*n)++] = argv[optind++];
	return -1;
}

static const struct option global_longs[] = {GLOBAL_LONG, JSON_FLAG, {NULL, 0, NULL, 0}};

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

/* How long an answer may take: -t N bounds it (ctl -t 5 ping: a liveness probe), else 60 s */
static int answer_ms(const struct ctl *c)
{
	if (!c->timeout_set || c->timeout <= 0)
		return 60000;
	int ms = (int)(c->timeout * 1000);
	return ms > 0 ? ms : 1;
}

static int timeout_ms(const struct ctl *c, bool waits)
{
	/* the daemon answers a wait when it ends; leave it room to say so */
	return waits ? (int)(c->timeout * 1000) + 30000 : answer_ms(c);
}

/* A reply's "warnings" (an add's definition): said whether the services started or not */
static void print_warnings(const cJSON *resp)
{
	const cJSON *w;
	cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(resp, "warnings"))
		if (cJSON_IsString(w))
			fprintf(stderr, "evmon ctl: warning: %s\n", w->valuestring);
}

static int finish(struct ctl *c, cJSON *resp, const char *raw, show_fn show)
{
	int rc = 0;
	if (!c->json && show != show_reload) /* a reload's: said after what it changed */
		print_warnings(resp);
	if (c->json) {
		safe_put_json(raw);
		rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")) ? 0 : EXIT_FAILED;
	} else if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"))) {
		rc = show_failure(resp, show);
	} else if (show) {
		rc = show(resp);
	}
	cJSON_Delete(resp);
	return rc;
}

/* A request, its answer within ms, shown */
static int simple(struct ctl *c, cJSON *req, int ms, show_fn show)
{
	cJSON *resp;
	const char *raw;
	int rc = ctl_call(c, req, &resp, &raw, ms);
	return rc ? rc : finish(c, resp, raw, show);
}

/*
 * A request whose answer opens a stream (events, logs): -1 when the daemon
 * said yes (what follows on the connection is the stream), else the exit code.
 */
static int open_stream(struct ctl *c, cJSON *req)
{
	cJSON *resp;
	const char *raw;
	int rc = ctl_call(c, req, &resp, &raw, answer_ms(c));
	if (rc)
		return rc;
	rc = -1;
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")))
		rc = c->json ? (safe_put_json(raw), EXIT_FAILED) : show_failure(resp, NULL);
	cJSON_Delete(resp);
	return rc;
}

/* start/stop/restart/add: wait for the services unless -t 0 */
static void add_wait(const struct ctl *c, cJSON *req)
{
	if (c->timeout > 0) {
		cJSON_AddTrueToObject(req, "wait");
		cJSON_AddNumberToObject(req, "timeout", c->timeout);
	}
}

static int do_startstop(struct ctl *c, const char *cmd, char **names, int n)
{
	if (n < 1) {
		fprintf(stderr, "evmon ctl %s: which service? (a name, or a glob like 'web:*')\n", cmd);
		return EXIT_USAGE;
	}
	cJSON *req = request(cmd, names, n);
	add_wait(c, req);
	return simple(c, req, timeout_ms(c, c->timeout > 0), show_services);
}

static int do_signal(struct ctl *c, char **args, int n)
{
	if (n < 2) {
		fprintf(stderr, "evmon ctl signal: usage: signal NAME... SIGNAL\n");
		return EXIT_USAGE;
	}
	const char *sig = args[n - 1];
	if (cli_parse_signal(sig, true) < 0) {
		fprintf(stderr, "evmon ctl signal: '%s' is not a signal\n", sig);
		return EXIT_USAGE;
	}
	cJSON *req = request("signal", args, n - 1);
	cJSON_AddStringToObject(req, "signal", sig);
	return simple(c, req, answer_ms(c), show_signal);
}

struct add_opts {
	cJSON *svc, *env;
	cJSON *fromjson; /* --json SERVICE-JSON */
	cJSON *by;	 /* each key set so far: the option that set it, as named to the user */
	char given[128]; /* the options given, for --json's refusal */
};

/*
 * key is to be set by opt: 0, or EXIT_USAGE (said) when it is set already.
 * Each key once: the daemon refuses a key twice in its own words
 * ("duplicate key 'restart'") where the user typed -r twice; and -s
 * name=... would rename the service NAME is.
 */
static int claim_key(struct add_opts *a, const char *key, const char *opt)
{
	const char *was = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a->by, key));
	if (was && !strcmp(was, opt))
		fprintf(stderr, "evmon ctl add: %s given twice\n", opt);
	else if (was)
		fprintf(stderr, "evmon ctl add: %s and %s both set '%s'\n", was, opt, key);
	else if (!strcmp(key, "name") || !strcmp(key, "command"))
		fprintf(stderr, "evmon ctl add: %s: the %s is %s (add [OPTIONS] NAME [--] COMMAND "
			"[ARG...])\n", opt, key, *key == 'n' ? "NAME" : "what follows NAME");
	if (was || !strcmp(key, "name") || !strcmp(key, "command"))
		return EXIT_USAGE;
	cJSON_AddStringToObject(a->by, key, opt);
	return 0;
}

/* key = value, set by opt (claim_key) */
static int set_key(struct add_opts *a, const char *key, const char *opt, const char *value)
{
	int rc = claim_key(a, key, opt);
	if (!rc)
		cJSON_AddStringToObject(a->svc, key, value);
	return rc;
}

static int add_kv(struct add_opts *a, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv) {
		fprintf(stderr, "evmon ctl add: '%s' is not KEY=VALUE\n", kv);
		return EXIT_USAGE;
	}
	char opt[80];
	snprintf(opt, sizeof(opt), "-s %.*s", (int)(eq - kv < 64 ? eq - kv : 64), kv);
	char *key = strndup(kv, (size_t)(eq - kv));
	int rc = key ? set_key(a, key, opt, eq + 1) : EXIT_FAILED;
	free(key);
	return rc;
}

/* the option's name for the messages: -r/--restart */
static const char *add_option_name(int opt)
{
	switch (opt) {
	case 'r': return "-r/--restart";
	case 'e': return "-e/--env";
	case 'u': return "-u/--user";
	case 'n': return "-n/--instances";
	case 's': return "-s/--set";
	case 'w': return "-w/--workdir";
	case OPT_NO_START: return "--no-start";
	default: return "--json";
	}
}

static int add_option(struct ctl *c, int opt, const char *arg, void *data)
{
	struct add_opts *a = data;
	const char *name = add_option_name(opt);
	(void)c;
	if (opt != OPT_SERVICE_JSON && !strstr(a->given, name))
		snprintf(a->given + strlen(a->given), sizeof(a->given) - strlen(a->given), "%s%s",
			 *a->given ? ", " : "", name);
	switch (opt) {
	case 'r': return set_key(a, "restart", name, arg);
	case 'e': {
		const char *was = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a->by, "environment"));
		if (!was || strcmp(was, name)) { /* repeatable: claimed by the first */
			int rc = claim_key(a, "environment", name);
			if (rc)
				return rc;
		}
		cJSON_AddItemToArray(a->env, cJSON_CreateString(arg));
		return 0;
	}
	case 'u': return set_key(a, "user", name, arg);
	case 'n': return set_key(a, "instances", name, arg);
	case OPT_NO_START:
		if (claim_key(a, "autostart", name))
			return EXIT_USAGE;
		cJSON_AddFalseToObject(a->svc, "autostart");
		return 0;
	case 's': return add_kv(a, arg);
	case 'w': {
		char *abs = NULL, *cwd = getcwd(NULL, 0);
		if (arg[0] != '/' && cwd && asprintf(&abs, "%s/%s", cwd, arg) < 0)
			abs = NULL;
		int rc = set_key(a, "directory", name, abs ? abs : arg);
		free(abs);
		free(cwd);
		return rc;
	}
	case OPT_SERVICE_JSON:
		if (a->fromjson) {
			fprintf(stderr, "evmon ctl add: --json given twice\n");
			return EXIT_USAGE;
		}
		a->fromjson = cJSON_Parse(arg);
		if (!cJSON_IsObject(a->fromjson)) {
			fprintf(stderr, "evmon ctl add: --json needs a JSON object\n");
			return EXIT_USAGE;
		}
		return 0;
	default: usage(stderr); return EXIT_USAGE;
	}
}

/* NAME, then the command (its words as they are) into a->svc. */
static int add_command(struct add_opts *a, char **ops, int n)
{
	if (a->fromjson) {
		if (n) {
			fprintf(stderr, "evmon ctl add: --json takes no other arguments\n");
			return EXIT_USAGE;
		}
		/* the JSON is the whole service: an option beside it would be dropped */
		if (*a->given) {
			fprintf(stderr, "evmon ctl add: --json is the whole service: %s too (put %s in "
				"the JSON object)\n", a->given, strchr(a->given, ',') ? "them" : "it");
			return EXIT_USAGE;
		}
		cJSON_Delete(a->svc);
		a->svc = a->fromjson;
		a->fromjson = NULL;
		return 0;
	}
	if (n < 2) {
		fprintf(stderr, n ? "evmon ctl add: no command\n"
				  : "evmon ctl add: usage: add [OPTIONS] NAME [--] COMMAND [ARG...]\n");
		return EXIT_USAGE;
	}
	cJSON_AddStringToObject(a->svc, "name", ops[0]);
	cJSON *cmd = cJSON_AddArrayToObject(a->svc, "command");
	for (int i = 1; i < n; i++)
		cJSON_AddItemToArray(cmd, cJSON_CreateString(ops[i]));
	if (cJSON_GetArraySize(a->env)) {
		cJSON_AddItemToObject(a->svc, "environment", a->env);
		a->env = NULL;
	}
	return 0;
}

static int do_add(struct ctl *c, int argc, char **argv, char **ops)
{
	static const struct option longs[] = {
		GLOBAL_LONG,
		{"restart", required_argument, NULL, 'r'}, {"env", required_argument, NULL, 'e'},
		{"workdir", required_argument, NULL, 'w'}, {"user", required_argument, NULL, 'u'},
		{"set", required_argument, NULL, 's'},	   {"instances", required_argument, NULL, 'n'},
		{"no-start", no_argument, NULL, OPT_NO_START},
		{"json", required_argument, NULL, OPT_SERVICE_JSON}, /* not --json's meaning here */
		{NULL, 0, NULL, 0},
	};
	struct add_opts a = {cJSON_CreateObject(), cJSON_CreateArray(), NULL, cJSON_CreateObject(), ""};
	/* the options end at the command's first word: its own options are its */
	struct cmd_opts co = {"r:e:w:u:s:n:", longs, add_option, &a, 2};
	int n, at, rc = parse_args(c, argc, argv, &co, ops, &n, &at);
	if (rc < 0 && (rc = add_command(&a, ops, n)) == 0) {
		cJSON *req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", "add");
		cJSON_AddItemToObject(req, "service", a.svc);
		a.svc = NULL;
		add_wait(c, req);
		rc = simple(c, req, timeout_ms(c, c->timeout > 0), show_services);
	}
	cJSON_Delete(a.svc);
	cJSON_Delete(a.env);
	cJSON_Delete(a.fromjson);
	cJSON_Delete(a.by);
	return rc;
}

/* A follower's end at a failed write to stdout (err): the reader gone (| head) is its end. */
static int stream_out_failed(int err)
{
	return out_failed(err) == -EPIPE ? 0 : EXIT_FAILED;
}

static int do_events(struct ctl *c, char **names, int n)
{
	int rc = open_stream(c, request("events", names, n));
	if (rc >= 0)
		return rc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	c->watch_out = true; /* `| head -1` on a quiet daemon: ended when head is */
	for (;;) {
		char *line;
		rc = ctl_read_line(c, &line, -1);
		if (rc == -3)
			return stream_out_failed(EPIPE);
		if (rc < 0)
			return EXIT_NODAEMON;
		errno = 0;
		if (c->json) {
			safe_put_json(line);
		} else {
			cJSON *ev = cJSON_Parse(line);
			safe_tree(ev);
			char text[1024];
			proto_event_line(ev, text, sizeof(text));
			const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "time"));
			printf("%s %s\n", t ? t : "-", text);
			cJSON_Delete(ev);
		}
		/* line-buffered: the line was written (or failed: errno says why) at its newline */
		if (ferror(stdout))
			return stream_out_failed(errno);
	}
}

/* 0, or -errno */
static int write_out(const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(1, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Log bytes to stdout: as they are, or (shown: a terminal) with what a
 * terminal acts on escaped (safe_terminal), a cut character kept in k.
 * 0, or -errno.
 */
static int write_log(const char *p, size_t n, bool shown, struct safe_carry *k, bool last)
{
	static char out[4 * (65536 + 4) + 1];
	while (shown && (n || (last && k->n))) {
		size_t take = n < 65536 ? n : 65536;
		size_t o = safe_terminal(k, p, take, out, sizeof(out), last && take == n);
		int r = write_out(out, o);
		if (r < 0)
			return r;
		p += take;
		n -= take;
		if (!n)
			return 0;
	}
	return shown ? 0 : write_out(p, n);
}

/*
 * After the answer, the connection carries the log file's bytes: copied as
 * they are, but to a terminal (unless raw) with its control characters
 * escaped: a service's output must not drive the terminal of whoever reads it.
 */
static int copy_stream(struct ctl *c, bool follow, bool raw)
{
	bool shown = !raw && isatty(1);
	struct safe_carry k = {.n = 0};
	/* what came with the answer, then the rest */
	linebuf_consume(&c->in, c->last);
	c->last = 0;
	int w = c->in.len ? write_log(linebuf_start(&c->in), c->in.len, shown, &k, false) : 0;
	if (w < 0)
		return stream_out_failed(-w); /* our reader went away (| head): that is the end */
	linebuf_consume(&c->in, c->in.len);
	char buf[65536];
	for (;;) {
		/* -f to a pipe: the reader's exit ends it, not only the next write (out.h) */
		struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = out_pipe_fd()}};
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			fprintf(stderr, "evmon ctl: poll: %s\n", strerror(errno));
			return EXIT_FAILED;
		}
		if (out_gone(p[1].revents))
			return stream_out_failed(EPIPE);
		if (!p[0].revents)
			continue;
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "evmon ctl: %s: %s\n", c->socket, strerror(errno));
			return EXIT_NODAEMON;
		}
		if (n == 0 && follow) {
			/* tail -f ends only when it is told to: say why it did */
			fprintf(stderr, "evmon ctl: %s: the daemon ended the stream (it stopped or "
				"re-executed itself, or this reader fell behind: see its log; follow "
				"again)\n", c->socket);
			return EXIT_NODAEMON;
		}
		/* at the end, a character it cut, escaped */
		w = write_log(n ? buf : "", (size_t)n, shown, &k, n == 0);
		if (w < 0)
			return stream_out_failed(-w);
		if (n == 0)
			return 0;
	}
}

struct logs_opts {
	long lines;
	bool follow, err, raw;
};

static int logs_option(struct ctl *c, int opt, const char *arg, void *data)
{
	struct logs_opts *l = data;
	char *end;
	(void)c;
	switch (opt) {
	case 'n':
		errno = 0;
		l->lines = strtol(arg, &end, 10);
		if (*end || errno || l->lines < 0 || l->lines > 1000000000) {
			fprintf(stderr, "evmon ctl logs: bad number of lines '%s'\n", arg);
			return EXIT_USAGE;
		}
		return 0;
	case 'f': l->follow = true; return 0;
	case 'e': l->err = true; return 0;
	case OPT_RAW: l->raw = true; return 0;
	default: usage(stderr); return EXIT_USAGE;
	}
}

static int do_logs(struct ctl *c, int argc, char **argv, char **ops)
{
	static const struct option longs[] = {
		GLOBAL_LONG, JSON_FLAG,
		{"lines", required_argument, NULL, 'n'}, {"follow", no_argument, NULL, 'f'},
		{"stderr", no_argument, NULL, 'e'},	 {"raw", no_argument, NULL, OPT_RAW},
		{NULL, 0, NULL, 0},
	};
	struct logs_opts l = {.lines = 10};
	struct cmd_opts co = {"n:fe", longs, logs_option, &l, 0};
	int n, at, rc = parse_args(c, argc, argv, &co, ops, &n, &at);
	if (rc >= 0)
		return rc;
	if (n != 1) {
		fprintf(stderr, "evmon ctl logs: usage: logs [-n LINES] [-f] [--stderr] [--raw] NAME\n");
		return EXIT_USAGE;
	}
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "logs");
	cJSON_AddStringToObject(req, "name", ops[0]);
	cJSON_AddNumberToObject(req, "lines", (double)l.lines);
	if (l.follow)
		cJSON_AddTrueToObject(req, "follow");
	if (l.err)
		cJSON_AddStringToObject(req, "stream", "stderr");
	rc = open_stream(c, req);
	return rc >= 0 ? rc : copy_stream(c, l.follow, l.raw);
}

static void print_states(const cJSON *resp)
{
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(resp, "services")) {
		const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "state"));
		puts(st ? st : "?");
	}
}

/*
 * status NAME... and is-active NAME...: the exit code is the state, so a
 * script can ask (0 every named service is running, 3 one is not, 4 the
 * state is unknown: no such service, no daemon, a refused request).
 */
static int do_state(struct ctl *c, const char *cmd, char **names, int n)
{
	if (n < 1) {
		fprintf(stderr, "evmon ctl %s: which service?\n", cmd);
		return EXIT_USAGE;
	}
	cJSON *resp;
	const char *raw;
	if (ctl_call(c, request("status", names, n), &resp, &raw, answer_ms(c)))
		return EXIT_UNKNOWN;
	bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"));
	const cJSON *svcs = cJSON_GetObjectItemCaseSensitive(resp, "services"), *s;
	int rc = ok && cJSON_GetArraySize(svcs) > 0 ? 0 : EXIT_UNKNOWN;
	cJSON_ArrayForEach(s, svcs) {
		const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "state"));
		if (!rc && (!st || (strcmp(st, "running") && strcmp(st, "reloading"))))
			rc = EXIT_NOT_RUNNING;
	}
	if (c->json)
		safe_put_json(raw);
	else if (!ok)
		show_failure(resp, NULL);
	else if (!strcmp(cmd, "is-active"))
		print_states(resp);
	else
		show_status(resp), show_health_checks(resp);
	cJSON_Delete(resp);
	return out_end(rc, EXIT_UNKNOWN); /* its state not told: unknown */
}

static int wait_option(struct ctl *c, int opt, const char *arg, void *data)
{
	int *t = data;
	(void)c;
	if (opt != 'f')
		return EXIT_USAGE;
	*t = ctl_wait_target(arg);
	if (*t < 0) {
		fprintf(stderr, "evmon ctl wait: --for %s: one of running, ready, healthy, stopped, "
			"exited\n", arg);
		return EXIT_USAGE;
	}
	return 0;
}

static int do_wait(struct ctl *c, int argc, char **argv, char **ops)
{
	static const struct option longs[] = {
		GLOBAL_LONG, JSON_FLAG, {"for", required_argument, NULL, 'f'}, {NULL, 0, NULL, 0},
	};
	int t = WAIT_RUNNING;
	struct cmd_opts co = {"f:", longs, wait_option, &t, 0};
	int n, at, rc = parse_args(c, argc, argv, &co, ops, &n, &at);
	if (rc >= 0)
		return rc;
	if (n < 1) {
		fprintf(stderr, "evmon ctl wait: usage: wait NAME... [--for running|ready|healthy|"
			"stopped|exited] [-t SECONDS]\n");
		return EXIT_USAGE;
	}
	return ctl_wait(c, ops, n, (enum wait_for)t);
}

/* The commands with no options of their own: the operands are names (or nothing). */
static int do_simple(struct ctl *c, const char *cmd, char **ops, int n)
{
	static const struct {
		const char *name;
		show_fn show;
		int min, max; /* operands */
	} t[] = {
		{"status", show_status, 0, INT_MAX},	{"remove", show_removed, 1, INT_MAX},
		{"reload", show_reload, 0, 0},		{"shutdown", NULL, 0, 0},
		{"ping", show_ping, 0, 0},		{"reopen-logs", show_reopened, 0, 0},
		{"metrics", show_metrics, 0, 0},	{"reexec", show_reexec, 0, 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (strcmp(cmd, t[i].name))
			continue;
		if (n < t[i].min) {
			fprintf(stderr, "evmon ctl %s: which service?\n", cmd);
			return EXIT_USAGE;
		}
		if (n > t[i].max) {
			fprintf(stderr, "evmon ctl %s: takes no arguments\n", cmd);
			return EXIT_USAGE;
		}
		/* reexec: answered by the new image, after its questions (5 s each) and the
		 * exec: a short -t would give up on a re-exec that goes on */
		int ms = answer_ms(c);
		if (!strcmp(cmd, "reexec") && ms < 60000)
			ms = 60000;
		return simple(c, request(cmd, ops, n), ms, t[i].show);
	}
	fprintf(stderr, "evmon ctl: unknown command '%s' (try: evmon ctl --help)\n", cmd);
	return EXIT_USAGE;
}

/* argv[0] is the command; its operands go to ops (room for argc). */
static int run_command(struct ctl *c, int argc, char **argv, char **ops)
{
	const char *cmd = argv[0];
	if (!strcmp(cmd, "add"))
		return do_add(c, argc, argv, ops);
	if (!strcmp(cmd, "logs"))
		return do_logs(c, argc, argv, ops);
	if (!strcmp(cmd, "wait"))
		return do_wait(c, argc, argv, ops);
	struct cmd_opts co = {NULL, global_longs, NULL, NULL, 0};
	int n, at, rc = parse_args(c, argc, argv, &co, ops, &n, &at);
	if (rc >= 0)
		return rc;
	if (!strcmp(cmd, "start") || !strcmp(cmd, "stop") || !strcmp(cmd, "restart") ||
	    (!strcmp(cmd, "reload") && n > 0))
		return do_startstop(c, cmd, ops, n);
	if (!strcmp(cmd, "signal"))
		return do_signal(c, ops, n);
	if (!strcmp(cmd, "events"))
		return do_events(c, ops, n);
	if (!strcmp(cmd, "health")) {
		if (n != 1) {
			fprintf(stderr, "evmon ctl health: usage: health NAME\n");
			return EXIT_USAGE;
		}
		return ctl_health(c, ops[0]);
	}
	if ((!strcmp(cmd, "status") && n > 0) || !strcmp(cmd, "is-active"))
		return do_state(c, cmd, ops, n);
	return do_simple(c, cmd, ops, n);
}

int cmd_ctl(int argc, char **argv)
{
	struct ctl c = {.timeout = 120, .fd = -1};
	char **ops = calloc((size_t)argc + 1, sizeof(*ops));
	if (!ops) {
		fprintf(stderr, "evmon ctl: out of memory\n");
		return EXIT_FAILED;
	}
	/* the global options before the command; the command takes the rest */
	struct cmd_opts co = {NULL, global_longs, NULL, NULL, 1};
	int n, at, rc = parse_args(&c, argc, argv, &co, ops, &n, &at);
	if (rc < 0 && n == 0) {
		usage(stderr);
		rc = EXIT_USAGE;
	}
	static char refused[600];
	if (rc < 0 && !c.socket) {
		c.socket = proto_default_socket();
		const char *dir = proto_default_dir();
		/* not a daemon of ours: each command ends as with no daemon (its own code) */
		if (dir && proto_private_dir(dir, false, refused, sizeof(refused)) == -EPERM)
			c.refused = refused;
	}
	if (rc < 0) {
		/* a closed socket is an error to report, and a closed stdout EPIPE (out.h) */
		signal(SIGPIPE, SIG_IGN);
		/* the command and what follows it, with the command as argv[0] */
		rc = run_command(&c, argc - at, argv + at, ops);
	}
	if (c.fd >= 0)
		close(c.fd);
	linebuf_free(&c.in);
	free(ops);
	/* what every command printed (the help too) must have reached stdout */
	return out_end(rc, rc ? rc : EXIT_FAILED);
}
