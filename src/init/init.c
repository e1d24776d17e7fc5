/*
 * init.c - `evmon init`: run one command as a container init (PID 1) or as a
 * child subreaper, compatible with tini's and dumb-init's command lines.
 *
 * The shape: block every catchable signal before anything else exists, make
 * a reaper loop (libevmon reaps every child and reports orphans), read our
 * signals from a signalfd on that loop and forward them, spawn CMD, and when
 * it exits, settle what is left of its process group (group.c) and exit
 * with its exit code: code, or 128+signal, modulo 256, then -e remapping, as
 * tini does.
 *
 * Where we differ from tini/dumb-init on purpose, docs/INIT.md says so;
 * `make compat` measures it.
 */
#include "cli.h"
#include "duration.h"
#include "init.h"
#include "pathfind.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_GRACE_MS 3000
#define OPT_NO_SUBREAPER 0x100

/* "evmon init", or the name we were called by (evmon-init, podman-init) */
static const char *prog = "evmon init";

static bool stderr_gone; /* EPIPE once: stop writing (each try raises SIGPIPE) */

void init_log(const struct init *in, int level, const char *fmt, ...)
{
	if ((level > in->verbosity && level != V_FATAL) || stderr_gone)
		return;
	char line[1024];
	int n = snprintf(line, sizeof(line), "%s: %s", prog, level == V_WARN ? "warning: " : "");
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n += m < 0 ? 0 : m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* one write per line: lines of init and child never interleave mid-line */
	if (write(STDERR_FILENO, line, (size_t)n) < 0 && errno == EPIPE)
		stderr_gone = true;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [OPTIONS] [--] CMD [ARGS...]\n"
		"\n"
		"Run CMD under a minimal init (PID 1 of a container, or a child subreaper):\n"
		"forward the signals we get to it, reap every zombie, and exit with its exit\n"
		"code, or 128+N if signal N killed it. Takes tini's and dumb-init's options.\n"
		"\n"
		"  -g, --group              forward signals to CMD's process group (the default)\n"
		"  -c, --single-child       forward signals to CMD only (tini's default)\n"
		"  -r, --rewrite FROM:TO    forward signal FROM as TO; TO 0 drops it (repeatable)\n"
		"  -s, --subreaper          become a child subreaper, or fail (when not PID 1)\n"
		"      --no-subreaper       do not become a child subreaper by default\n"
		"  -p, --pdeath-signal SIG  get SIG (and forward it) when our parent dies\n"
		"  -e, --remap-exit CODE    exit 0 when CMD's exit code is CODE (repeatable)\n"
		"  -t, --grace DURATION     after CMD exits, SIGTERM the rest of its group and\n"
		"                           SIGKILL it after DURATION (default 3s; 0: no wait;\n"
		"                           with -c only when given: else exit at once, as tini)\n"
		"  -a, --all                the same for every other process, not only CMD's group\n"
		"                           (as PID 1: the PID namespace; else our descendants)\n"
		"  -w, --warn-reap          warn for every zombie reaped that we did not spawn\n"
		"  -v, --verbose            more messages (repeat: info, debug, trace)\n"
		"  -l, --license            version and license information\n"
		"  -V, --version            print the version\n"
		"  -h, --help               this help\n"
		"\n"
		"Signals are names or numbers (TERM, SIGTERM, 15, RTMIN+3). DURATION: 2.5, 2.5s, 500ms, 1m.\n"
		"Environment: TINI_SUBREAPER (as -s), TINI_KILL_PROCESS_GROUP (as -g),\n"
		"TINI_VERBOSITY=N, DUMB_INIT_SETSID=0 (as -c), DUMB_INIT_DEBUG=1 (as -vv);\n"
		"LISTEN_PID, LISTEN_FDS: when LISTEN_PID is ours, CMD gets its own pid there.\n"
		"Inherited fds above 2 pass to CMD.\n"
		"Exec failures exit 127 (not found) or 126 (cannot execute). See evmon-init(1).\n",
		prog);
}

/* tini's -e: a decimal 0..255 and nothing else */
static int parse_code(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < 0 || v > 255)
		return -1;
	return (int)v;
}

/*
 * dumb-init's -r FROM:TO, with names as well as numbers. 0 if done, -1 if
 * not FROM:TO, FROM if it is a signal never forwarded (KILL and STOP
 * never reach us; CHLD is how the loop learns of exits): its rewrite would
 * do nothing.
 */
static int parse_rewrite(struct init *in, const char *arg)
{
	const char *colon = strchr(arg, ':');
	if (!colon || colon == arg)
		return -1;
	char from[32];
	size_t n = (size_t)(colon - arg);
	if (n >= sizeof(from))
		return -1;
	memcpy(from, arg, n);
	from[n] = '\0';
	int f = cli_parse_signal(from, false), t = cli_parse_signal(colon + 1, true);
	if (f < 0 || t < 0)
		return -1;
	if (f == SIGKILL || f == SIGSTOP || f == SIGCHLD)
		return f;
	in->rewrite[f] = t;
	return 0;
}

static void print_license(void)
{
	printf("evmon init %s (libevmon %s): a container init compatible with tini and dumb-init.\n"
	       "MIT License. Copyright (c) 2026 The evmon authors. Provided \"as is\", without\n"
	       "warranty of any kind. Full text: the LICENSE file of the evmon sources.\n",
	       evm_version(), evm_version());
}

/* our options (no getopt_long: it adds 4 kB to the static evmon-init) */
static const struct option {
	short c;
	bool arg;
	char name[14]; /* in place: a pointer would be relocated data */
} options[] = {
	{'h', false, "help"},
	{'V', false, "version"},
	{'l', false, "license"},
	{'v', false, "verbose"},
	{'s', false, "subreaper"},
	{OPT_NO_SUBREAPER, false, "no-subreaper"},
	{'g', false, "group"},
	{'c', false, "single-child"},
	{'r', true, "rewrite"},
	{'p', true, "pdeath-signal"},
	{'e', true, "remap-exit"},
	{'w', false, "warn-reap"},
	{'t', true, "grace"},
	{'a', false, "all"},
};

/* One option c with its argument arg (or NULL). Returns -1 to go on, else the exit code. */
static int apply(struct init *in, int c, const char *arg, bool *single, bool *group)
{
	int code;
	switch (c) {
	case 'h':
		usage(stdout);
		return 0;
	case 'V':
		printf("evmon init %s\n", evm_version());
		return 0;
	case 'l':
		print_license();
		return 0;
	case 'v':
		in->verbosity++;
		break;
	case 's':
		in->subreaper_required = true;
		break;
	case OPT_NO_SUBREAPER:
		in->no_subreaper = true;
		break;
	case 'g':
		*group = true;
		break;
	case 'c':
		*single = true;
		break;
	case 'r':
		if ((code = parse_rewrite(in, arg)) < 0) {
			init_log(in, V_FATAL, "-r %s: expected FROM:TO, two signals (TO may be 0)", arg);
			return 1;
		}
		if (code > 0) {
			init_log(in, V_FATAL, "-r %s: SIGKILL, SIGSTOP and SIGCHLD are never forwarded",
				 arg);
			return 1;
		}
		break;
	case 'p':
		if ((in->pdeath_signal = cli_parse_signal(arg, false)) < 0) {
			init_log(in, V_FATAL, "-p %s: not a signal", arg);
			return 1;
		}
		break;
	case 'e':
		if ((code = parse_code(arg)) < 0) {
			init_log(in, V_FATAL, "-e %s: expected an exit code from 0 to 255", arg);
			return 1;
		}
		in->remap[code / 32] |= 1u << (code % 32);
		break;
	case 'w':
		in->warn_reap = true;
		break;
	case 't':
		code = cli_parse_duration(arg, &in->grace_ms);
		if (code == -ERANGE) {
			init_log(in, V_FATAL, "-t %s: too long a duration (at most %llu s)", arg,
				 (unsigned long long)(DURATION_MAX_MS / 1000));
			return 1;
		}
		if (code < 0) {
			init_log(in, V_FATAL, "-t %s: expected a duration (2, 2.5s, 500ms, 1m)", arg);
			return 1;
		}
		in->grace_given = true;
		break;
	case 'a':
		in->all = true;
		break;
	}
	return -1;
}

/* --NAME or an unambiguous prefix of it, up to a '=' */
static const struct option *long_option(const char *a)
{
	size_t n = strcspn(a, "=");
	const struct option *found = NULL;
	for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++) {
		if (strncmp(options[k].name, a, n))
			continue;
		if (!options[k].name[n])
			return &options[k]; /* exact */
		if (found)
			return NULL; /* ambiguous */
		found = &options[k];
	}
	return found;
}

/*
 * getopt_long's rules, in '+' mode: options end at CMD (the first argument
 * that is not one) or after "--", so CMD's own options are never taken for
 * ours; -abc clusters, -t3 or -t 3, --grace=3 or --grace 3.
 * Returns -1 to go on, else the exit code.
 */
static int parse_args(struct init *in, int argc, char **argv, bool *single, bool *group)
{
	int i = 1, r;
	while (i < argc && argv[i][0] == '-' && argv[i][1]) {
		const char *a = argv[i++];
		if (!strcmp(a, "--"))
			break;
		if (a[1] == '-') {
			const struct option *o = long_option(a + 2);
			const char *eq = strchr(a, '=');
			if (!o || (eq && !o->arg)) {
				init_log(in, V_FATAL, "unknown option %s", a);
				goto bad;
			}
			const char *arg = !o->arg ? NULL : eq ? eq + 1 : i < argc ? argv[i++] : NULL;
			if (o->arg && !arg) {
				init_log(in, V_FATAL, "option --%s needs an argument", o->name);
				goto bad;
			}
			if ((r = apply(in, o->c, arg, single, group)) >= 0)
				return r;
			continue;
		}
		for (const char *p = a + 1; *p; p++) {
			const struct option *o = NULL;
			for (size_t k = 0; k < sizeof(options) / sizeof(options[0]) && !o; k++)
				if (options[k].c == *p)
					o = &options[k];
			if (!o) {
				init_log(in, V_FATAL, "unknown option -%c", *p);
				goto bad;
			}
			const char *arg = !o->arg ? NULL : p[1] ? p + 1 : i < argc ? argv[i++] : NULL;
			if (o->arg && !arg) {
				init_log(in, V_FATAL, "option -%c needs an argument", *p);
				goto bad;
			}
			if ((r = apply(in, o->c, arg, single, group)) >= 0)
				return r;
			if (arg)
				break; /* the rest of this argument was the option's */
		}
	}
	if (i >= argc) {
		init_log(in, V_FATAL, "no command given");
		goto bad;
	}
	in->argv = argv + i;
	return -1;
bad:
	usage(stderr);
	return 1;
}

/* tini's and dumb-init's variables, read after the command line as they do */
static void parse_env(struct init *in, bool *single, bool *group)
{
	if (getenv("TINI_SUBREAPER"))
		in->subreaper_required = true;
	if (getenv("TINI_KILL_PROCESS_GROUP"))
		*group = true;
	const char *v = getenv("TINI_VERBOSITY");
	if (v)
		in->verbosity = atoi(v);
	v = getenv("DUMB_INIT_SETSID");
	if (v && !strcmp(v, "0"))
		*single = true;
	v = getenv("DUMB_INIT_DEBUG");
	if (v && !strcmp(v, "1") && in->verbosity < V_DEBUG)
		in->verbosity = V_DEBUG;
}

static int final_code(const struct init *in, int code)
{
	code %= 256;
	return (in->remap[code / 32] >> (code % 32)) & 1u ? 0 : code;
}

static void on_child_exit(struct evm_proc *proc, const struct evm_exit *e, void *data)
{
	struct init *in = data;
	(void)proc;
	int code = evm_exit_shell_code(e);
	if (code < 0) {
		init_log(in, V_WARN, "main child %d: exit status lost (reaped elsewhere)", (int)e->pid);
		code = 1;
	} else if (e->signal) {
		init_log(in, V_INFO, "main child %d killed by signal %d (%s)%s", (int)e->pid, e->signal,
			  init_signame(e->signal), e->core_dumped ? ", core dumped" : "");
	} else {
		init_log(in, V_INFO, "main child %d exited with code %d", (int)e->pid, e->code);
	}
	in->exit_code = final_code(in, code);
	if (in->exit_code != code % 256)
		init_log(in, V_INFO, "exit code %d remapped to 0 (-e)", code % 256);
	evm_proc_unref(in->child);
	in->child = NULL;
	init_group_end(in);
}

static void orphan_reaped(struct init *in, const struct evm_exit *e)
{
	in->orphans++;
	/* "(exit code N)", "(killed by signal N)" or "(status unknown)": no number then */
	init_log(in, in->warn_reap ? V_WARN : V_DEBUG, "%s %d (%s%.*d)",
		 in->warn_reap ? "reaped zombie process" : "reaped orphan", (int)e->pid,
		 e->status_unknown ? "status unknown" : e->signal ? "killed by signal " : "exit code ",
		 e->status_unknown ? 0 : -1, e->status_unknown ? 0 : e->signal ? e->signal : e->code);
}

static void on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	struct init *in = data;
	(void)loop;
	if (ev->type == EVM_EV_ORPHAN) {
		orphan_reaped(in, ev->exit);
		init_group_poke(in);
	} else if (ev->type == EVM_EV_WARNING) {
		init_log(in, V_WARN, "%s", ev->message ? ev->message : "libevmon warning");
	}
}

/* tini's reaper check: without PID 1 or a subreaper, orphans go elsewhere */
static void reaper_check(struct init *in)
{
	int bit = 0;
	if (in->pid1)
		return;
	if (prctl(PR_GET_CHILD_SUBREAPER, &bit, 0, 0, 0) == 0 && bit)
		return;
	init_log(in, V_WARN,
		 "not PID 1 and not a child subreaper: orphaned descendants are not re-parented to us, "
		 "so their zombies are not reaped here (drop --no-subreaper, use -s, or run as PID 1)");
}

static int make_loop(struct init *in)
{
	struct evm_loop_opts lo = {.flags = EVM_LOOP_REAPER};
	if (in->no_subreaper && !in->subreaper_required)
		lo.flags |= EVM_LOOP_NO_SUBREAPER;
	int r = evm_loop_new(&in->loop, &lo);
	if (r < 0 && !in->pid1 && !(lo.flags & EVM_LOOP_NO_SUBREAPER)) {
		/* only PR_SET_CHILD_SUBREAPER can fail here that NO_SUBREAPER avoids */
		if (in->subreaper_required) {
			init_log(in, V_FATAL, "cannot become a child subreaper: %s", strerror(-r));
			return -1;
		}
		lo.flags |= EVM_LOOP_NO_SUBREAPER;
		r = evm_loop_new(&in->loop, &lo);
	}
	if (r < 0) {
		init_log(in, V_FATAL, "cannot create the event loop: %s", strerror(-r));
		return -1;
	}
	if (in->subreaper_required || !(lo.flags & EVM_LOOP_NO_SUBREAPER))
		init_log(in, V_TRACE, in->pid1 ? "running as PID 1" : "registered as a child subreaper");
	reaper_check(in);
	return 0;
}

/*
 * After the spawn, drop our copies of what CMD inherited (catatonit does
 * too): a pipe's reader then sees EOF when CMD closes its end, not when we
 * exit. Every fd above 2 without close-on-exec is inherited: ours all have it.
 */
static void close_fd_inherited(long fd, void *data)
{
	int fl = fcntl((int)fd, F_GETFD);
	(void)data;
	if (fd > 2 && fl >= 0 && !(fl & FD_CLOEXEC)) /* the listing's own fd is CLOEXEC */
		close((int)fd);
}

static void close_inherited(void)
{
	init_list_proc("/proc/self/fd", close_fd_inherited, NULL);
}

/*
 * A file without #!: execvp (so tini and dumb-init) runs it with /bin/sh.
 * Not inlined: its PATH_MAX buffer would push every spawn's stack frames a
 * page deeper (RSS).
 */
__attribute__((noinline)) static int spawn_with_sh(struct init *in, struct evm_spawn_opts *o)
{
	char buf[PATH_MAX];
	/* the file execvp ran: the first executable candidate in PATH */
	const char *path = cli_path_find(in->argv[0], NULL, buf, sizeof(buf));
	size_t n = 0;
	while (in->argv[n])
		n++;
	char **shargv = path ? calloc(n + 2, sizeof(*shargv)) : NULL;
	if (!shargv)
		return -ENOEXEC;
	shargv[0] = "/bin/sh";
	shargv[1] = (char *)path;
	for (size_t i = 1; i < n; i++)
		shargv[i + 1] = in->argv[i];
	o->argv = shargv;
	o->file = "/bin/sh";
	init_log(in, V_DEBUG, "%s has no #! line: running it with /bin/sh", path);
	int r = evm_spawn(in->loop, o, &in->child);
	free(shargv);
	if (r < 0 && o->error->stage == EVM_STAGE_EXEC)
		r = -ENOEXEC; /* report the original problem, not /bin/sh's */
	return r;
}

static int spawn_child(struct init *in)
{
	struct evm_spawn_error err = {0};
	struct evm_spawn_opts o = {
		.argv = in->argv,
		.on_exit = on_child_exit,
		.data = in,
		.error = &err,
	};
	/*
	 * The child always leads a process group of its own, so its group can be
	 * signalled and cleaned up (tini does the same). In group mode without a
	 * terminal to hand over it also gets a session of its own, as with
	 * dumb-init: no terminal signal reaches it but the ones we forward. With
	 * a terminal it stays in our session, so that we can make its group the
	 * terminal's foreground group (see signals.c).
	 */
	o.flags = in->group && !in->tty ? EVM_SPAWN_SETSID : EVM_SPAWN_SETPGID;
	/*
	 * What we inherited above 2 is CMD's (a runtime's --preserve-fds,
	 * socket activation); our own fds are all close-on-exec. Sockets
	 * activated for us (LISTEN_PID is ours) are CMD's: LISTEN_PID becomes
	 * its pid, as catatonit does, or sd_listen_fds(3) would ignore them.
	 */
	o.flags |= EVM_SPAWN_INHERIT_FDS;
	const char *lp = getenv("LISTEN_PID");
	char *end = NULL;
	/* a pid and nothing else, as sd_listen_fds(3) reads it ("1abc" is nobody's) */
	if (lp && getenv("LISTEN_FDS") && *lp >= '0' && *lp <= '9' &&
	    strtol(lp, &end, 10) == (long)getpid() && *end == '\0')
		o.flags |= EVM_SPAWN_LISTEN_PID;
	int r = evm_spawn(in->loop, &o, &in->child);
	if (r == -ENOEXEC && err.stage == EVM_STAGE_EXEC)
		r = spawn_with_sh(in, &o);
	if (r == 0) {
		in->child_pid = in->pgid = evm_proc_pid(in->child);
		init_log(in, V_INFO, "spawned %s as pid %d", in->argv[0], (int)in->child_pid);
		close_inherited();
		return 0;
	}
	if (err.stage == EVM_STAGE_EXEC) {
		init_log(in, V_FATAL, "exec %s: %s", in->argv[0], strerror(-r));
		/* a shell's codes: 127 not found, 126 found but not runnable */
		return final_code(in, r == -ENOENT ? 127 : 126);
	}
	init_log(in, V_FATAL, "cannot start %s: %s: %s", in->argv[0], evm_spawn_stage_name(err.stage),
		 strerror(-r));
	return 1;
}

/* Reap what is still reapable once the loop is gone (tini does the same). */
static void drain(struct init *in)
{
	siginfo_t si;
	for (;;) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0 || !si.si_pid)
			break;
		struct evm_exit e = {.pid = si.si_pid};
		if (si.si_code == CLD_EXITED)
			e.code = si.si_status;
		else
			e.signal = si.si_status;
		orphan_reaped(in, &e);
	}
}

static int run(struct init *in)
{
	if (in->pdeath_signal) {
		if (prctl(PR_SET_PDEATHSIG, in->pdeath_signal, 0, 0, 0) < 0) {
			init_log(in, V_FATAL, "-p %s: %s", init_signame(in->pdeath_signal), strerror(errno));
			return 1;
		}
		/* tini misses a parent that died before the prctl; we deliver it late instead */
		in->orphaned = getppid() != in->ppid;
	}
	if (make_loop(in) < 0)
		return 1;
	int r = evm_subscribe(in->loop, EVM_EV_ORPHAN | EVM_EV_WARNING, on_event, in, NULL);
	if (r == 0)
		r = init_signals_open(in);
	if (r < 0) {
		init_log(in, V_FATAL, "cannot set up signal handling: %s", strerror(-r));
		return 1;
	}
	in->tty = init_tty_ours();
	int code = spawn_child(in);
	if (code > 0 || !in->child)
		return code;
	if (in->tty)
		init_tty_give(in);
	if (in->orphaned) {
		init_log(in, V_INFO, "our parent died before -p took effect");
		init_signal_handle(in, in->pdeath_signal, 0, SI_KERNEL);
	}
	/* keep no directory busy (dumb-init does this too) */
	if (chdir("/") < 0)
		init_log(in, V_DEBUG, "chdir /: %s", strerror(errno));

	while (!in->done) {
		r = evm_loop_run_once(in->loop, -1);
		if (r < 0) {
			/* never die in the loop: say it, back off, go on */
			init_log(in, V_WARN, "event loop: %s", strerror(-r));
			nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
		}
	}
	init_tty_restore(in);
	return in->exit_code;
}

int cmd_init(int argc, char **argv)
{
	struct init in = {
		.verbosity = V_WARN,
		.grace_ms = DEFAULT_GRACE_MS,
		.sigfd = -1,
		.exit_code = -1,
		.pid1 = getpid() == 1,
		.ppid = getppid(),
	};
	bool single = false, group = false;
	const char *self = argc > 0 && argv[0] ? argv[0] : "";
	if (strrchr(self, '/'))
		self = strrchr(self, '/') + 1;
	/* "init" from `evmon init`, "evmon" from `evmon -- CMD` */
	if (*self && strcmp(self, "init") && strcmp(self, "evmon"))
		prog = self;
	for (int s = 0; s < NSIG; s++)
		in.rewrite[s] = -1;
	int code = parse_args(&in, argc, argv, &single, &group);
	if (code >= 0)
		return code;
	parse_env(&in, &single, &group);
	in.group = group || !single;
	/* tini's path (-c) exits with CMD, unless the end is asked for */
	in.end_at_once = !in.group && !in.grace_given && !in.all;
	if (in.group) {
		/* dumb-init: job-control signals stop the whole group (see signals.c) */
		static const int jc[] = {SIGTSTP, SIGTTIN, SIGTTOU};
		for (size_t i = 0; i < sizeof(jc) / sizeof(jc[0]); i++)
			if (in.rewrite[jc[i]] < 0)
				in.rewrite[jc[i]] = SIGSTOP;
	}
	if (init_signals_block() < 0) {
		init_log(&in, V_FATAL, "cannot block signals: %s", strerror(errno));
		return 1;
	}

	code = run(&in);

	init_group_free(&in);
	init_signals_close(&in);
	evm_proc_unref(in.child);
	evm_loop_free(in.loop);
	drain(&in);
	if (in.orphans)
		init_log(&in, V_DEBUG, "reaped %lu orphans in all", in.orphans);
	fflush(stdout);
	return code;
}
