/*
 * signals.c - the signals `evmon init` receives, and the terminal.
 *
 * Every catchable signal is blocked process-wide before the loop (or any
 * thread) exists, and read from our own signalfd on the loop. SIGCHLD is not
 * in that signalfd: libevmon's reaper reads it from its own. The synchronous
 * fault signals are blocked too, so that a SIGSEGV sent with kill(1) is
 * forwarded like any other (dumb-init does the same); a real fault is forced
 * through by the kernel with the default action whatever the mask says.
 *
 * Forwarding: -r rewrites first (to 0 drops); then the child's process group
 * (default, -g) or the child alone (-c). Job control follows dumb-init:
 * SIGTSTP/SIGTTIN/SIGTTOU received in group mode stop the group (forwarded as
 * SIGSTOP unless -r says otherwise), and in either mode we then stop
 * ourselves too, unless PID 1 (which cannot be stopped), so that a shell
 * that started us sees the job stop; its SIGCONT is forwarded in turn.
 *
 * The terminal follows tini: if stdin is our controlling terminal and we are
 * in its foreground, the child's process group is made the foreground group
 * (so `docker run -it ... bash` has job control and Ctrl-C/Ctrl-Z reach the
 * child directly), and it is handed back before we exit.
 */
#include "cli.h"
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

int init_signals_block(void)
{
	sigset_t all;
	sigfillset(&all); /* glibc leaves out its own two internal signals */
	return sigprocmask(SIG_BLOCK, &all, NULL);
}

const char *init_signame(int sig)
{
	const char *n = cli_signal_name(sig);
	return n ? n : "?";
}

bool init_tty_ours(void)
{
	/* fails unless stdin is our controlling terminal; 0 if its group is outside our pid namespace */
	if (tcgetpgrp(STDIN_FILENO) < 0)
		return false;
	/*
	 * Are we in its foreground? Comparing group ids fails when PID 1 of a
	 * namespace whose session began outside it (unshare --fork): both read
	 * 0. An empty read asks the terminal itself: with SIGTTIN blocked it is
	 * EIO from the background and 0 from the foreground, consuming nothing.
	 */
	char c;
	return read(STDIN_FILENO, &c, 0) == 0;
}

void init_tty_give(struct init *in)
{
	/* SIGTTOU is blocked, so this works even from the background */
	if (tcsetpgrp(STDIN_FILENO, in->pgid) < 0) {
		init_log(in, V_DEBUG, "tcsetpgrp: %s", strerror(errno));
		return;
	}
	/*
	 * The child ran before its group was the foreground one: if it touched
	 * the terminal in that window it got SIGTTIN/SIGTTOU and stopped (or is
	 * about to: a SIGCONT discards a pending stop signal). Resume it.
	 */
	if (killpg(in->pgid, SIGCONT) < 0)
		init_log(in, V_DEBUG, "SIGCONT to group %d: %s", (int)in->pgid, strerror(errno));
}

void init_tty_restore(struct init *in)
{
	if (in->tty && getpgrp() > 0 && tcgetpgrp(STDIN_FILENO) == in->pgid)
		tcsetpgrp(STDIN_FILENO, getpgrp());
}

int init_forward(struct init *in, int sig)
{
	int r;
	if (in->child)
		r = in->group ? evm_proc_signal_group(in->child, sig) : evm_proc_signal(in->child, sig);
	else if (in->ending && in->pgid > 0) /* -c too: the child led its group (init.c) */
		r = killpg(in->pgid, sig) < 0 ? -errno : 0; /* what is left of the group */
	else
		r = -ESRCH;
	if (r == 0)
		init_log(in, V_DEBUG, "forwarded SIG%s to %s %d", init_signame(sig),
			 in->group || !in->child ? "group" : "pid", (int)in->pgid);
	else if (r == -ESRCH)
		init_log(in, V_INFO, "SIG%s not forwarded: the child is gone", init_signame(sig));
	else
		init_log(in, V_WARN, "cannot forward SIG%s to %d: %s", init_signame(sig), (int)in->pgid,
			 strerror(-r));
	return r;
}

void init_signal_handle(struct init *in, int sig, pid_t from, int code)
{
	/*
	 * Ours: a SIGPIPE or SIGXFSZ from writing a message to a closed or full
	 * stderr comes back as a signal we "sent" to ourselves; it is not for
	 * the child. (Say nothing: saying it would make another one.)
	 */
	if (code == SI_USER && from == getpid())
		return;
	init_log(in, V_DEBUG, "received SIG%s from pid %d", init_signame(sig), (int)from);
	if (sig == SIGCONT && in->tty && in->child && init_tty_ours())
		init_tty_give(in); /* resumed in the foreground (fg): the child gets the terminal back */
	int to = in->rewrite[sig] >= 0 ? in->rewrite[sig] : sig;
	if (to == 0)
		init_log(in, V_DEBUG, "SIG%s dropped (-r)", init_signame(sig));
	else
		init_forward(in, to);
	if ((sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) && !in->pid1 && in->child) {
		init_log(in, V_DEBUG, "stopping ourselves after SIG%s", init_signame(sig));
		kill(getpid(), SIGSTOP);
	}
}

static void on_signals(struct evm_io *io, int fd, unsigned revents, void *data)
{
	struct init *in = data;
	struct signalfd_siginfo fi[16];
	ssize_t n;
	(void)io;
	(void)revents;
	while ((n = read(fd, fi, sizeof(fi))) > 0)
		for (size_t i = 0; i < (size_t)n / sizeof(fi[0]); i++)
			init_signal_handle(in, (int)fi[i].ssi_signo, (pid_t)fi[i].ssi_pid, fi[i].ssi_code);
}

int init_signals_open(struct init *in)
{
	sigset_t set;
	sigfillset(&set);
	sigdelset(&set, SIGCHLD); /* libevmon's: taking it would steal its exit notices */
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd >= 0 && fd < 3) {
		/* on a stdin we were started without, the program would get it as its stdin */
		int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		close(fd);
		fd = up;
	}
	if ((in->sigfd = fd) < 0)
		return -errno;
	int r = evm_io_add(in->loop, in->sigfd, EVM_READ, on_signals, in, &in->sigio);
	if (r < 0) {
		close(in->sigfd);
		in->sigfd = -1;
	}
	return r;
}

void init_signals_close(struct init *in)
{
	if (in->sigio)
		evm_io_free(in->sigio);
	in->sigio = NULL;
	if (in->sigfd >= 0)
		close(in->sigfd);
	in->sigfd = -1;
}
