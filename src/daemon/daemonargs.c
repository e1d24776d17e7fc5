/*
 * daemonargs.c - `evmon daemon`'s command line: its options, usage, and
 * --check (the file validated, the environment looked at, nothing started).
 *
 * Nothing here touches a loop or a service: --check loads the file, prints
 * its mistakes and what would go wrong at start (log_dir, the socket's
 * directory), and exits; the daemon proper is daemon.c's.
 */
#include "daemonargs.h"

#include "cli.h"
#include "config.h"
#include "logfile.h"
#include "proto.h"
#include "sockfile.h"
#include "state.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: evmon daemon -c FILE [-S SOCKET] [--reaper] [--strict]\n"
		"       evmon daemon --check [--strict] -c FILE [-S SOCKET]\n"
		"       evmon daemon --state-format\n"
		"\n"
		"Supervise the services of FILE in the foreground; control it with evmon ctl.\n"
		"\n"
		"  -c, --config FILE   the configuration (INI; see examples/demo.ini)\n"
		"  -S, --socket PATH   control socket (default: [evmon] socket, $EVMON_SOCKET,\n"
		"                      /run/evmon.sock for root, else $XDG_RUNTIME_DIR/evmon.sock,\n"
		"                      else ${TMPDIR:-/tmp}/evmon-UID/evmon.sock)\n"
		"      --reaper        reap orphaned descendants (child subreaper); on as PID 1\n"
		"      --check         validate FILE, print the mistakes (and warnings about\n"
		"                      log_dir, the socket's directory, and services whose\n"
		"                      program, directory, user or group is missing), and exit\n"
		"      --strict        those missing things are errors too (else such a\n"
		"                      service starts in a failed state, the others normally)\n"
		"      --state-format  print the newest state record format this binary\n"
		"                      reads (a re-exec asks the new binary first)\n"
		"  -h, --help          this help\n"
		"  -V, --version       print the version\n"
		"\n"
		"Signals: TERM/INT stop every service and exit 0; HUP reloads FILE;\n"
		"USR1 reopens the services' log files; USR2 re-executes the daemon's binary\n"
		"in place (evmon ctl reexec), every service kept running.\n");
}

/*
 * What would go wrong at start although the file is valid: the daemon
 * starts anyway (and says it again), but --check is where one looks.
 */
static unsigned check_environment(const struct config *cfg, const char *socket, unsigned *mistakes)
{
	unsigned n = 0;
	char err[600];
	/* too long for a socket address: the file's (or -S's) mistake, said as the start says it */
	if (sockfile_check_path(socket, err, sizeof(err)) == -ENAMETOOLONG) {
		fprintf(stderr, "evmon daemon: control socket %s\n", err);
		(*mistakes)++;
	}
	size_t logged = 0;
	for (size_t k = 0; k < cfg->nsvcs; k++)
		if (cfg->svcs[k]->pol.out[0] == OUT_LOG || cfg->svcs[k]->pol.out[1] == OUT_LOG)
			logged += cfg->svcs[k]->instances;
	if (cfg->log_dir && logged) {
		struct logs *L = logs_new(NULL, NULL, NULL); /* no file is opened: no loop needed */
		if (L && logs_set_dir(L, cfg->log_dir, err, sizeof(err)) < 0) {
			fprintf(stderr, "evmon daemon: %s: warning: %s: the output of %zu service%s with "
				"stdout or stderr = log would be discarded\n", cfg->path, err, logged,
				logged == 1 ? "" : "s");
			n++;
		}
		logs_free(L);
	}
	/* the default socket's private directory: the daemon makes it, but not over someone else's */
	const char *pdir = proto_default_dir();
	if (pdir && !strcmp(socket, proto_default_socket())) {
		if (proto_private_dir(pdir, false, err, sizeof(err)) == -EPERM) {
			fprintf(stderr, "evmon daemon: %s: warning: control socket %s: %s: the daemon would "
				"not start\n", cfg->path, socket, err);
			n++;
		}
		return n;
	}
	if (!*mistakes && sockfile_check_path(socket, err, sizeof(err)) < 0) {
		fprintf(stderr, "evmon daemon: %s: warning: control socket %s: the daemon would not "
			"start\n", cfg->path, err);
		n++;
	}
	/* the socket's directory: the daemon creates the socket, not its parents */
	char *dir = strdup(socket);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	if (slash && slash != dir) {
		*slash = '\0';
		if (access(dir, W_OK | X_OK) < 0) {
			fprintf(stderr, "evmon daemon: %s: warning: control socket %s: %s: %s: the daemon "
				"would not start\n", cfg->path, socket, dir, strerror(errno));
			n++;
		}
	}
	free(dir);
	return n;
}

/* The environment problems of cfg, on stderr; with strict, they are errors. */
void daemon_print_problems(const struct config *cfg, bool strict)
{
	for (size_t i = 0; i < cfg->problems.n; i++)
		fprintf(stderr, "evmon daemon: %s%s%s\n", strict ? "" : "warning: ",
			cfg->problems.msgs[i],
			strict ? "" : " (the service starts in a failed state; its policy retries it)");
	if (cfg->problems.more)
		fprintf(stderr, "evmon daemon: ... and %zu more %s\n", cfg->problems.more,
			strict ? "errors" : "warnings");
	for (size_t i = 0; i < cfg->notes.n; i++)
		fprintf(stderr, "evmon daemon: %s%s\n", strict ? "" : "warning: ", cfg->notes.msgs[i]);
}

void daemon_print_errors(const struct errlist *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "evmon daemon: %s\n", errs->msgs[i]);
	if (errs->more)
		fprintf(stderr, "evmon daemon: ... and %zu more errors (the first %d are shown)\n",
			errs->more, ERRLIST_MAX);
}

int daemon_check_only(const char *path, const char *sock_opt, bool strict)
{
	struct errlist errs = {0};
	struct config *cfg;
	if (config_load(path, &cfg, &errs) < 0) {
		daemon_print_errors(&errs);
		fprintf(stderr, "evmon daemon: %s: %zu error%s\n", path, errlist_total(&errs),
			errlist_total(&errs) == 1 ? "" : "s");
		errlist_free(&errs);
		return 1;
	}
	daemon_print_problems(cfg, strict);
	/* every problem said before the verdict: the environment's too (a log_dir, the socket) */
	const char *socket = sock_opt ? sock_opt : cfg->socket ? cfg->socket : proto_default_socket();
	unsigned mistakes = 0, env = check_environment(cfg, socket, &mistakes);
	unsigned warnings = env + (unsigned)errlist_total(&cfg->problems) +
			    (unsigned)errlist_total(&cfg->notes);
	/* with --strict, what would fail a start, stop the daemon or lose output */
	unsigned n = mistakes + (strict ? warnings : 0);
	if (n) {
		fprintf(stderr, "evmon daemon: %s: %u error%s%s\n", path, n, n == 1 ? "" : "s",
			strict && warnings ? " (--strict)" : "");
		config_free(cfg);
		return 1;
	}
	printf("%s: OK: %zu service%s from %zu definition%s; control socket %s; log_dir %s%s\n",
	       path, cfg->ninstances, cfg->ninstances == 1 ? "" : "s", cfg->nsvcs,
	       cfg->nsvcs == 1 ? "" : "s", socket, cfg->log_dir ? cfg->log_dir : "(none)",
	       warnings ? " (see the warnings)" : "");
	config_free(cfg);
	return 0;
}

/* -h, -V, --state-format and a bad option end the parse: what they print, their code */
static int options_end(int c)
{
	switch (c) {
	case 'h': usage(stdout); return 0;
	case 'V': printf("evmon daemon %s\n", evm_version()); return 0;
	case 'F': printf("%d\n", STATE_VERSION); return 0;
	default: usage(stderr); return 2;
	}
}

int daemon_parse_options(int argc, char **argv, struct daemon_options *o)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"socket", required_argument, NULL, 'S'},
		{"reaper", no_argument, NULL, 'r'},	  {"check", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},	  {"version", no_argument, NULL, 'V'},
		{"strict", no_argument, NULL, 's'},	  {"state-format", no_argument, NULL, 'F'},
		{NULL, 0, NULL, 0},
	};
	int c;
	*o = (struct daemon_options){.reaper = getpid() == 1};
	optind = 1;
	static char me[] = "evmon daemon"; /* getopt's messages start with argv[0] */
	char *arg0 = argv[0];
	argv[0] = me;
	while ((c = getopt_long(argc, argv, "+c:S:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o->cfg_path = optarg; break;
		case 'S': o->socket = optarg; break;
		case 'r': o->reaper = true; break;
		case 'C': o->check = true; break;
		case 's': o->strict = true; break;
		default: argv[0] = arg0; return options_end(c);
		}
	}
	argv[0] = arg0;
	if (optind < argc || !o->cfg_path) {
		fprintf(stderr, optind < argc ? "evmon daemon: unexpected argument '%s'\n"
					      : "evmon daemon: no config file (-c FILE)%s\n",
			optind < argc ? argv[optind] : "");
		usage(stderr);
		return 2;
	}
	return -1;
}
