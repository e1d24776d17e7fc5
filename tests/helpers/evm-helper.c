/*
 * evm-helper - one child program with named behaviours, for every test.
 *
 *   evm-helper CMD [ARGS] [CMD [ARGS]] ...
 *
 * Commands run in order; each takes a fixed number of arguments:
 *   exit N            _exit(N)
 *   kill SIG          die by signal SIG (disposition reset first)
 *   sleep MS          sleep MS milliseconds
 *   pause             wait forever (until a signal kills us)
 *   ignore SIG        ignore SIG (e.g. ignore 15, then pause)
 *   trap              catch every catchable signal: print "signal N" for
 *                     each; exit 0 on SIGTERM... use with pause; SIGUSR2
 *                     is printed too; exit happens on "trap-exit" signal
 *   trap-exit SIG     like trap, but exit with 0 after printing SIG
 *   status            print SigBlk/SigIgn/SigCgt lines of /proc/self/status
 *   fds               print "fd N" for each open fd but the dir listing it
 *   ids               print "uid U gid G groups A,B,..."
 *   pgid              print "pid P ppid Q pgid G sid S"
 *   hostname          print the host name
 *   ctty              print "ctty yes" when /dev/tty opens and is stdin's
 *                     terminal, whose session is ours; else "ctty no"
 *   cwd               print the working directory
 *   umask             print the umask in octal
 *   rlimit R          print "rlimit R SOFT HARD" (R: nofile, nproc, core, as)
 *   pdeath            print "pdeath N" (PR_GET_PDEATHSIG)
 *   env NAME          print NAME=value, or "NAME unset"
 *   environ           print each entry of the environment, in its order, a line each
 *   argv              print each argument after "argv" as "[len] value"
 *   print TEXT        write TEXT and a newline to stdout
 *   eprint TEXT       write TEXT and a newline to stderr
 *   fdprint N TEXT    write TEXT and a newline to fd N
 *   cat               copy stdin to stdout until EOF
 *   lines N           print N numbered lines
 *   talk MS           print "line 1", "line 2", ... forever, one each MS ms,
 *                     each in one write (a logger that forks nothing per line)
 *   bytes N           write N bytes of 'x' (no newline) to stdout
 *   orphans N         fork N children that sleep 50 ms then exit, and
 *                     do not wait for them (they become orphans when we exit)
 *   group N           fork N children that ignore SIGTERM and pause, same group
 *   daemonize         fork, parent exits at once, child carries on (an orphan)
 *                     once it is re-parented (up to 10 s)
 *   stamp             print CLOCK_MONOTONIC ns
 *   closeout          close stdout
 *   stop              raise SIGSTOP
 *   burst N           fork N children that block on a pipe only we hold open:
 *                     when this process exits they all exit at the same
 *                     instant, as orphans
 *   linger MS         on SIGTERM print "term", wait MS ms, print "bye" and
 *                     exit 0 (a slow, polite shutdown; use with pause)
 *   orphan-storm N    make N orphans quickly: batches of children that each
 *                     fork up to 100 grandchildren exiting at once, then exit
 *                     (we reap the children only); prints "storm N" at the end
 *   pidlog FILE       append "PID\n" to FILE in one write (O_APPEND): a record,
 *                     independent of the monitor, of every process that ran
 *   notify MSG        send MSG ("\n" written as backslash-n) to $NOTIFY_SOCKET
 *   notify-fds MSG K  the same with K fds (of /dev/null) attached (FDSTORE)
 *   waitfile PATH     wait until PATH exists (looked for every 10 ms)
 *   watchdog MS       send "WATCHDOG=1\nSTATUS=ping K" every MS ms (K = 1, 2,
 *                     ...), forever; a send that fails prints "watchdog: ERROR"
 *                     to stderr, and the next one is tried
 *   notify-child MSG  a child sends MSG, prints "sent", then pauses until we die
 *   notify-fork F MSG fork: the child carries on; the parent waits for file F ("-": no
 *                     wait), sends "MAINPID=<child>\nMSG" and exits 0 (a forking daemon)
 *   notify-fork-stays MSG  fork: the child carries on; the parent sends
 *                     "MAINPID=<child>\nMSG" and pauses (an old main that stays)
 *   nosys NR          from now on (children and exec'd programs too), system call
 *                     NR fails with ENOSYS (a seccomp filter: a sandbox, an old
 *                     kernel); e.g. 434, pidfd_open on every architecture
 *   exec PROG ARGS... exec PROG with the rest of the command line (last command)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t exit_on;

static void msleep(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void on_signal(int sig)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "signal %d\n", sig);
	ssize_t w = write(1, buf, (size_t)n);
	(void)w;
	if (sig == exit_on)
		_exit(0);
}

static void trap_all(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD)
			sigaction(s, &sa, NULL);
}

static long linger_ms;

static void on_term_linger(int sig)
{
	(void)sig;
	ssize_t w = write(1, "term\n", 5);
	msleep(linger_ms);
	w = write(1, "bye\n", 4);
	(void)w;
	_exit(0);
}

/* fork, retrying while the pid space or RLIMIT_NPROC is exhausted by zombies not yet reaped */
static pid_t fork_retry(void)
{
	for (;;) {
		pid_t p = fork();
		if (p >= 0 || errno != EAGAIN)
			return p;
		msleep(1);
	}
}

static void orphan_storm(long n)
{
	long made = 0;
	while (made < n) {
		long batch = n - made < 100 ? n - made : 100;
		pid_t mid = fork_retry();
		if (mid < 0) {
			perror("evm-helper: fork");
			_exit(1);
		}
		if (mid == 0) {
			for (long k = 0; k < batch; k++)
				if (fork_retry() == 0)
					_exit(0);
			_exit(0);
		}
		while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
			;
		made += batch;
	}
	printf("storm %ld\n", made);
}

static void print_status(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "SigBlk", 6) || !strncmp(line, "SigIgn", 6) ||
		    !strncmp(line, "SigCgt", 6) || !strncmp(line, "Groups", 6) ||
		    !strncmp(line, "Uid", 3) || !strncmp(line, "Gid", 3))
			fputs(line, stdout);
	fclose(f);
}

static void print_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	if (!d)
		return;
	int self = dirfd(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && atoi(e->d_name) != self)
			printf("fd %s\n", e->d_name);
	closedir(d);
}

static int rlimit_res(const char *name)
{
	if (!strcmp(name, "nofile"))
		return RLIMIT_NOFILE;
	if (!strcmp(name, "nproc"))
		return RLIMIT_NPROC;
	if (!strcmp(name, "core"))
		return RLIMIT_CORE;
	if (!strcmp(name, "as"))
		return RLIMIT_AS;
	return -1;
}

/* sd_notify(3) by hand: MSG with "\\n" for newlines, K fds attached; -errno on failure */
static int notify_send(const char *msg, int nfds)
{
	const char *e = getenv("NOTIFY_SOCKET");
	if (!e || !*e) {
		fprintf(stderr, "notify: no NOTIFY_SOCKET\n");
		exit(1);
	}
	char buf[8192];
	size_t n = 0;
	for (const char *p = msg; *p && n < sizeof(buf) - 1; p++) {
		if (p[0] == '\\' && p[1] == 'n') {
			buf[n++] = '\n';
			p++;
		} else {
			buf[n++] = *p;
		}
	}
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t l = strlen(e);
	if (l >= sizeof(a.sun_path))
		exit(1);
	memcpy(a.sun_path, e, l);
	if (a.sun_path[0] == '@')
		a.sun_path[0] = 0;
	socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + (e[0] == '@' ? 0 : 1));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct iovec iov = {.iov_base = buf, .iov_len = n};
	struct msghdr mh = {.msg_name = &a, .msg_namelen = al, .msg_iov = &iov, .msg_iovlen = 1};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * 64)];
	} ctl;
	if (nfds > 0) {
		if (nfds > 64)
			nfds = 64;
		mh.msg_control = &ctl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		for (int k = 0; k < nfds; k++) {
			int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
			memcpy(CMSG_DATA(c) + k * sizeof(int), &f, sizeof(int));
		}
	}
	int r = fd < 0 || sendmsg(fd, &mh, 0) < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	return r;
}

/* notify_send, exiting 1 on failure */
static void notify(const char *msg, int nfds)
{
	int r = notify_send(msg, nfds);
	if (r < 0) {
		fprintf(stderr, "notify: %s\n", strerror(-r));
		exit(1);
	}
}

/* System call nr fails with ENOSYS from now on, here and in what we start. */
static void nosys(long nr)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
		fprintf(stderr, "evm-helper: nosys %ld: %s\n", nr, strerror(errno));
		exit(2);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *c = argv[i];
		const char *a = i + 1 < argc ? argv[i + 1] : "0";
		fflush(stdout);
		if (!strcmp(c, "exit")) {
			fflush(NULL);
			_exit(atoi(a));
		} else if (!strcmp(c, "kill")) {
			fflush(NULL);
			signal(atoi(a), SIG_DFL);
			sigset_t s;
			sigemptyset(&s);
			sigaddset(&s, atoi(a));
			sigprocmask(SIG_UNBLOCK, &s, NULL);
			raise(atoi(a));
			_exit(99);
		} else if (!strcmp(c, "sleep")) {
			msleep(atol(a));
			i++;
		} else if (!strcmp(c, "pause")) {
			for (;;)
				pause();
		} else if (!strcmp(c, "ignore")) {
			signal(atoi(a), SIG_IGN);
			i++;
		} else if (!strcmp(c, "trap")) {
			trap_all();
		} else if (!strcmp(c, "trap-exit")) {
			exit_on = atoi(a);
			trap_all();
			i++;
		} else if (!strcmp(c, "status")) {
			print_status();
		} else if (!strcmp(c, "fds")) {
			print_fds();
		} else if (!strcmp(c, "ids")) {
			gid_t g[64];
			int n = getgroups(64, g);
			printf("uid %d gid %d groups ", (int)getuid(), (int)getgid());
			for (int k = 0; k < n; k++)
				printf(k ? ",%d" : "%d", (int)g[k]);
			printf("\n");
		} else if (!strcmp(c, "pgid")) {
			printf("pid %d ppid %d pgid %d sid %d\n", (int)getpid(), (int)getppid(),
			       (int)getpgrp(), (int)getsid(0));
		} else if (!strcmp(c, "hostname")) {
			char h[256] = "?";
			gethostname(h, sizeof(h) - 1);
			printf("%s\n", h);
		} else if (!strcmp(c, "ctty")) {
			int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
			bool yes = fd >= 0 && tcgetsid(0) == getsid(0);
			printf("ctty %s\n", yes ? "yes" : "no");
			if (fd >= 0)
				close(fd);
		} else if (!strcmp(c, "cwd")) {
			char buf[PATH_MAX];
			printf("%s\n", getcwd(buf, sizeof(buf)) ? buf : "?");
		} else if (!strcmp(c, "umask")) {
			mode_t m = umask(0);
			umask(m);
			printf("%04o\n", (unsigned)m);
		} else if (!strcmp(c, "rlimit")) {
			struct rlimit rl;
			getrlimit(rlimit_res(a), &rl);
			printf("rlimit %s %lld %lld\n", a, (long long)rl.rlim_cur, (long long)rl.rlim_max);
			i++;
		} else if (!strcmp(c, "pdeath")) {
			int s = 0;
			prctl(PR_GET_PDEATHSIG, &s);
			printf("pdeath %d\n", s);
		} else if (!strcmp(c, "env")) {
			const char *v = getenv(a);
			if (v)
				printf("%s=%s\n", a, v);
			else
				printf("%s unset\n", a);
			i++;
		} else if (!strcmp(c, "environ")) {
			for (char **e = environ; *e; e++)
				printf("%s\n", *e);
		} else if (!strcmp(c, "argv")) {
			for (i++; i < argc; i++)
				printf("[%zu] %s\n", strlen(argv[i]), argv[i]);
		} else if (!strcmp(c, "print")) {
			printf("%s\n", a);
			i++;
		} else if (!strcmp(c, "notify")) {
			notify(a, 0);
			i++;
		} else if (!strcmp(c, "waitfile")) {
			struct timespec ts = {0, 10 * 1000000};
			while (access(a, F_OK) < 0)
				nanosleep(&ts, NULL);
			i++;
		} else if (!strcmp(c, "watchdog")) {
			for (unsigned long k = 1;; k++) { /* a failed send is said, and the next one tried */
				char m[64];
				snprintf(m, sizeof(m), "WATCHDOG=1\\nSTATUS=ping %lu", k);
				int r = notify_send(m, 0);
				if (r < 0)
					fprintf(stderr, "watchdog: %s\n", strerror(-r));
				struct timespec ts = {atoi(a) / 1000, (long)(atoi(a) % 1000) * 1000000};
				nanosleep(&ts, NULL);
			}
		} else if (!strcmp(c, "notify-fds")) {
			notify(a, i + 2 < argc ? atoi(argv[i + 2]) : 0);
			i += 2;
		} else if (!strcmp(c, "notify-child")) {
			pid_t parent = getpid();
			pid_t p = fork();
			if (p == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				if (getppid() != parent)
					_exit(0);
				notify(a, 0);
				printf("sent\n");
				fflush(stdout);
				for (;;)
					pause();
			}
			i++;
		} else if (!strcmp(c, "fdprint")) {
			dprintf(atoi(a), "%s\n", i + 2 < argc ? argv[i + 2] : "");
			i += 2;
		} else if (!strcmp(c, "eprint")) {
			fprintf(stderr, "%s\n", a);
			i++;
		} else if (!strcmp(c, "cat")) {
			char buf[65536];
			ssize_t n;
			while ((n = read(0, buf, sizeof(buf))) > 0)
				if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
					break;
		} else if (!strcmp(c, "lines")) {
			long n = atol(a);
			for (long k = 1; k <= n; k++)
				printf("line %ld\n", k);
			i++;
		} else if (!strcmp(c, "talk")) {
			long ms = atol(a);
			struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
			char line[32];
			for (long k = 1;; k++) {
				int len = snprintf(line, sizeof(line), "line %ld\n", k);
				if (write(1, line, (size_t)len) != len)
					_exit(1);
				nanosleep(&ts, NULL);
			}
		} else if (!strcmp(c, "bytes")) {
			long n = atol(a);
			char buf[65536];
			memset(buf, 'x', sizeof(buf));
			while (n > 0) {
				size_t k = n > (long)sizeof(buf) ? sizeof(buf) : (size_t)n;
				if (fwrite(buf, 1, k, stdout) != k)
					break;
				n -= (long)k;
			}
			i++;
		} else if (!strcmp(c, "orphans")) {
			int n = atoi(a);
			for (int k = 0; k < n; k++) {
				pid_t p = fork();
				if (p == 0) {
					msleep(50);
					_exit(0);
				}
			}
			i++;
		} else if (!strcmp(c, "group")) {
			int n = atoi(a);
			/* ignored before the fork: once its line is printed, SIGTERM cannot kill it */
			void (*was)(int) = signal(SIGTERM, SIG_IGN);
			for (int k = 0; k < n; k++) {
				pid_t p = fork();
				if (p == 0) {
					for (;;)
						pause();
				}
				printf("grandchild %d\n", (int)p);
			}
			signal(SIGTERM, was);
			i++;
		} else if (!strcmp(c, "notify-fork")) {
			/*
			 * a forking daemon that says so: the child goes on with the
			 * rest; the parent waits until file a exists (unless "-"),
			 * sends MAINPID=<child> and the message, and exits 0 at once
			 */
			const char *rest = i + 2 < argc ? argv[i + 2] : "";
			fflush(NULL);
			pid_t child = fork();
			if (child < 0) {
				perror("evm-helper: fork");
				return 1;
			}
			if (child > 0) {
				while (strcmp(a, "-") && access(a, F_OK) != 0)
					usleep(10000);
				char msg[4096];
				snprintf(msg, sizeof(msg), "MAINPID=%d\\n%s", (int)child, rest);
				notify(msg, 0);
				_exit(0);
			}
			i += 2;
		} else if (!strcmp(c, "notify-fork-stays")) {
			/*
			 * a main process that hands over and stays: the child goes
			 * on with the rest; the parent sends MAINPID=<child> and
			 * the message a, then pauses (one more process of the service)
			 */
			fflush(NULL);
			pid_t child = fork();
			if (child < 0) {
				perror("evm-helper: fork");
				return 1;
			}
			if (child > 0) {
				char msg[4096];
				snprintf(msg, sizeof(msg), "MAINPID=%d\\n%s", (int)child, a);
				notify(msg, 0);
				for (;;)
					pause();
			}
			i++;
		} else if (!strcmp(c, "daemonize")) {
			pid_t parent = getpid();
			fflush(NULL);
			if (fork() > 0)
				_exit(0);
			/* carry on as the orphan: once re-parented (what comes next may print ppid) */
			for (int n = 0; getppid() == parent && n < 10000; n++)
				usleep(1000);
		} else if (!strcmp(c, "pidlog")) {
			char line[32];
			int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
			int fd = open(a, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
			if (fd < 0 || write(fd, line, (size_t)n) != n)
				_exit(99);
			close(fd);
			i++;
		} else if (!strcmp(c, "stamp")) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
		} else if (!strcmp(c, "closeout")) {
			fflush(stdout);
			close(1);
		} else if (!strcmp(c, "stop")) {
			raise(SIGSTOP);
		} else if (!strcmp(c, "burst")) {
			int n = atoi(a), pp[2];
			if (pipe(pp) < 0) {
				perror("evm-helper: pipe");
				return 1;
			}
			fflush(NULL);
			for (int k = 0; k < n; k++) {
				pid_t p = fork_retry();
				if (p == 0) {
					char b;
					close(pp[1]);
					while (read(pp[0], &b, 1) < 0 && errno == EINTR)
						;
					_exit(0);
				}
			}
			close(pp[0]); /* pp[1] stays open until we exit */
			i++;
		} else if (!strcmp(c, "linger")) {
			linger_ms = atol(a);
			struct sigaction sa = {.sa_handler = on_term_linger};
			sigemptyset(&sa.sa_mask);
			sigaction(SIGTERM, &sa, NULL);
			i++;
		} else if (!strcmp(c, "orphan-storm")) {
			fflush(NULL);
			orphan_storm(atol(a));
			i++;
		} else if (!strcmp(c, "nosys")) {
			nosys(atol(a));
			i++;
		} else if (!strcmp(c, "exec")) {
			fflush(NULL);
			execv(argv[i + 1], argv + i + 1);
			fprintf(stderr, "evm-helper: exec %s: %s\n", argv[i + 1] ? argv[i + 1] : "(none)",
				strerror(errno));
			return 127;
		} else {
			fprintf(stderr, "evm-helper: unknown command '%s'\n", c);
			return 2;
		}
	}
	fflush(NULL);
	return 0;
}
