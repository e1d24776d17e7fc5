/*
 * controlaccept.c - the control socket's listening side: opening and
 * closing the server, accepting clients, refusing those not root or the
 * daemon's uid, and living at the fd limit.
 *
 * Out of descriptors, a spare one (reserve_fd, /dev/null) is given up to
 * accept and refuse a client with a message; with not even that, accepting
 * pauses (pause_accept) rather than spinning on a readable socket. Every
 * client fd closed is reported (fd_closed), for a caller's own reserve.
 */
#include "controlint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RESUME_MS 250	      /* accepting paused for want of fds: tried again this often */
#define CALM_MS 5000	      /* no pause for this long after an accept: the episode is over */

static void refuse(int fd, const char *msg)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "{\"ok\":false,\"error\":\"%s\"}\n", msg);
	ssize_t w = send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w;
	close(fd);
}

/* A refused client's fd may have come from the reserve: it goes back there. */
static void refuse_client(struct control *ctl, int fd, const char *msg)
{
	refuse(fd, msg);
	if (ctl->o.fd_closed)
		ctl->o.fd_closed(ctl->o.data);
}

static void accept_one(struct control *ctl, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	const char *why = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		control__log(ctl, "control: SO_PEERCRED: %s: refusing the client", strerror(errno));
		refuse_client(ctl, fd, "cannot check your credentials");
		return;
	}
	if (cr.uid != 0 && cr.uid != geteuid()) {
		/* the overflow uid: someone our user namespace does not map (another's root too) */
		bool unmapped = cr.uid == 65534;
		control__log(ctl, "control: refused pid %d: uid %u is neither root nor the daemon's uid %u%s",
		             (int)cr.pid, (unsigned)cr.uid, (unsigned)geteuid(),
			     unmapped ? " (65534: maybe a uid this user namespace does not map)" : "");
		refuse_client(ctl, fd, unmapped ? "permission denied: only root and the daemon's user "
				       "may use this socket; you are uid 65534 here, which is what a uid "
				       "the daemon's user namespace does not map looks like (root of "
				       "the host included): run evmon ctl inside the container"
				     : "permission denied: only root and the daemon's user may use this socket");
		return;
	}
	struct client *cl = control__client_new(ctl, fd, &cr, &why);
	if (!cl) {
		refuse_client(ctl, fd, why);
		return;
	}
	control__idle_update(cl);
}


static void on_listen(struct evm_io *io, int lfd, unsigned revents, void *data);

static void on_resume(struct evm_timer *t, void *data)
{
	struct control *ctl = data;
	(void)t;
	ctl->resume = NULL;
	evm_io_modify(ctl->io, EVM_READ);
}

static void on_calm(struct evm_timer *t, void *data)
{
	struct control *ctl = data;
	(void)t;
	ctl->calm = NULL;
	ctl->starved = false;
	control__log(ctl, "control: accepting clients again (out of file descriptors for %.1f s: "
		          "paused %u times)",
	             (double)(ctl->last_ns - ctl->starved_ns) / 1e9 + RESUME_MS / 1e3, ctl->pauses);
}

/*
 * No descriptor for a client, not even the spare one to refuse it (the
 * limit was lowered below what we hold): a readable listening socket would
 * wake the loop at once, forever. Stop watching it for RESUME_MS instead;
 * the client waits in the backlog until an fd is free. At the limit an
 * accept often succeeds between two pauses (an fd came free): the episode
 * is logged once when it begins and once CALM_MS after its last pause.
 */
static void pause_accept(struct control *ctl)
{
	if (!ctl->starved) {
		control__log(ctl, "control: out of file descriptors, not even one to refuse a client: "
			          "accepting again every %d ms until one is free", RESUME_MS);
		ctl->pauses = 0;
		ctl->starved_ns = evm_loop_now(ctl->loop);
	}
	ctl->starved = true;
	ctl->pauses++;
	ctl->last_ns = evm_loop_now(ctl->loop);
	evm_timer_cancel(ctl->calm);
	ctl->calm = NULL;
	if (ctl->resume || evm_timer_add(ctl->loop, RESUME_MS, on_resume, ctl, &ctl->resume) < 0)
		return; /* no timer: keep watching (spinning beats never accepting again) */
	evm_io_modify(ctl->io, 0);
}

/* accept failed for want of fds: true when a new try may succeed */
static bool out_of_fds(struct control *ctl, int lfd, int e)
{
	if (e == EMFILE && ctl->o.need_fd && ctl->o.need_fd(ctl->o.data))
		return true;
	if (ctl->reserve_fd >= 0) {
		/* free our spare one to accept and refuse */
		close(ctl->reserve_fd);
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			refuse(fd, "daemon out of file descriptors");
		ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			control__log(ctl, "control: out of file descriptors: refused a client");
			return false; /* the next one at the next readiness */
		}
	}
	pause_accept(ctl);
	return false;
}

static void on_listen(struct evm_io *io, int lfd, unsigned revents, void *data)
{
	struct control *ctl = data;
	(void)io;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			if (ctl->starved && !ctl->calm &&
			    evm_timer_add(ctl->loop, CALM_MS, on_calm, ctl, &ctl->calm) < 0)
				on_calm(NULL, ctl); /* no timer: said at once */
			if (ctl->reserve_fd < 0) /* lost when the limit was below our use */
				ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			accept_one(ctl, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && out_of_fds(ctl, lfd, errno))
			continue;
		break;
	}
}

int control_open(struct evm_loop *loop, const struct control_opts *opts, struct control **out,
		 char *err, size_t errlen)
{
	*out = NULL;
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ctl->loop = loop;
	ctl->o = *opts;
	if (!ctl->o.max_clients)
		ctl->o.max_clients = 1024;
	if (!ctl->o.max_pending)
		ctl->o.max_pending = 4u << 20;
	if (!ctl->o.max_total)
		ctl->o.max_total = (size_t)64 << 20;
	int r = opts->inherit ? sockfile_inherit(&ctl->sf, opts->path, opts->inherit_fd,
						 opts->inherit_lock, err, errlen)
			      : sockfile_open(&ctl->sf, opts->path, err, errlen);
	if (r < 0) {
		free(ctl);
		return -1;
	}
	ctl->o.path = ctl->sf.path;
	r = evm_io_add(loop, ctl->sf.fd, EVM_READ, on_listen, ctl, &ctl->io);
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot watch the socket: %s", ctl->sf.path, strerror(-r));
		sockfile_close(&ctl->sf);
		free(ctl);
		return -1;
	}
	ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = ctl;
	return 0;
}

void control_fds(const struct control *ctl, int *listen_fd, int *lock_fd)
{
	*listen_fd = ctl->sf.fd;
	*lock_fd = ctl->sf.lockfd;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	while (ctl->clients) {
		struct client *cl = ctl->clients;
		if (cl->out.len && !cl->aborted) {
			ssize_t w = send(cl->fd, linebuf_start(&cl->out), cl->out.len,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w;
		}
		control__client_close(cl);
	}
	evm_timer_cancel(ctl->resume);
	evm_timer_cancel(ctl->calm);
	evm_io_free(ctl->io);
	sockfile_close(&ctl->sf);
	if (ctl->reserve_fd >= 0)
		close(ctl->reserve_fd);
	free(ctl);
}
