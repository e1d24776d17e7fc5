/*
 * reexec.c - `evmon ctl reexec` and SIGUSR2: the daemon execs its binary
 * (the one now at its path: an upgrade) in place, and every service keeps
 * running, with its pid.
 *
 * The exec keeps the pid, so the services stay our children: the new image
 * adopts them (evm_proc_adopt) and reaps their exits with their status,
 * those that happened during the exec included (zombies wait for it). What
 * crosses the exec: the state record (state.h) in a memfd named by
 * $EVMON_REEXEC_STATE, plus the descriptors it names, whose FD_CLOEXEC is
 * cleared just before: the control socket's listener and lock (connections
 * that arrive meanwhile wait in its backlog: it never refuses one), the
 * services' output pipes (what they write meanwhile waits in the pipe: no
 * line is lost), and the requesting client's connection, which the new image
 * answers, and the events followers (ctl events, ctl wait) between two
 * requests, with their patterns: the new image follows them on, after a
 * "reexec" event; so do the other clients between two requests (a request
 * sent meanwhile waits in the socket, answered by the new image). Everything else is close-on-exec and made again: the
 * other clients' connections close, the metrics listener is bound again,
 * the log files are opened again at the next line.
 *
 * An exec that fails (the binary is gone, not executable) returns here: the
 * descriptors are close-on-exec again and the daemon carries on, with an
 * error in the reply. So does a binary that cannot read the state we would
 * pass (a downgrade): it is asked first (`evmon daemon --state-format`,
 * which a binary older than the question does not know either). The spawn helper is stopped first (it would outlive
 * the exec as a stray child) and starts again when needed.
 */
#include "daemon.h"

#include "cgroups.h"
#include "daemonlog.h"
#include "notify.h"
#include "state.h"
#include "stdsink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Our binary: the path /proc/self/exe names (what is there now, after an upgrade). */
static int exe_path(char *buf, size_t len, char *err, size_t errlen)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n < 0) {
		snprintf(err, errlen, "/proc/self/exe: %s", strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	/* replaced by an upgrade: the old file is gone, its path holds the new one */
	static const char deleted[] = " (deleted)";
	size_t dl = sizeof(deleted) - 1;
	if ((size_t)n > dl && !strcmp(buf + n - dl, deleted))
		buf[n - dl] = '\0';
	if (access(buf, X_OK) < 0) {
		snprintf(err, errlen, "cannot re-execute %s: %s: the daemon carries on", buf,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Can the binary at exe read the state we pass? It says which format it
 * reads up to; one that cannot tell (too old to know the option, broken) is
 * not exec'ed either: an older image could ignore the state and start every
 * service a second time. The loop waits for it (a few ms, at most 5 s).
 */
static int check_format(const char *exe, char *err, size_t errlen)
{
	char *argv[] = {(char *)exe, "daemon", "--state-format", NULL};
	struct evm_spawn_error se = {0};
	struct evm_spawn_opts o = {.argv = argv, .timeout_ms = 5000, .capture_max = 64,
				   .error = &se};
	o.stdio[0].mode = EVM_STDIO_NULL;
	o.stdio[2].mode = EVM_STDIO_NULL;
	struct evm_run_result res;
	int r = evm_run(&o, &res);
	if (r < 0) {
		snprintf(err, errlen, "cannot run %s to ask its state format: %s: %s: the daemon "
			 "carries on", exe, evm_spawn_stage_name(se.stage), strerror(-r));
		return -1;
	}
	int v = 0, end = 0;
	bool said = res.exit.code == 0 && res.out &&
		    sscanf(res.out, "%d%n", &v, &end) == 1 && res.out[end] == '\n';
	evm_run_result_free(&res);
	if (!said)
		snprintf(err, errlen, "%s does not say which state format it reads (older than "
			 "evmon's --state-format?): not re-executing it, it could start second copies "
			 "of the services: the daemon carries on", exe);
	else if (v < STATE_VERSION)
		snprintf(err, errlen, "%s reads state format %d, older than this daemon's (%d): not "
			 "re-executing it (a downgrade would lose the state): the daemon carries on",
			 exe, v, STATE_VERSION);
	return said && v >= STATE_VERSION ? 0 : -1;
}

struct keep {
	int *fds;
	size_t n, cap;
};

static void keep_add(struct keep *k, int fd)
{
	if (fd < 0)
		return;
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 64;
		int *p = realloc(k->fds, cap * sizeof(*p));
		if (!p)
			return; /* that pipe is lost to the new image: its service gets a new one */
		k->fds = p;
		k->cap = cap;
	}
	k->fds[k->n++] = fd;
}

static void keep_cloexec(const struct keep *k, bool on)
{
	for (size_t i = 0; i < k->n; i++)
		fcntl(k->fds[i], F_SETFD, on ? FD_CLOEXEC : 0);
}

struct followers {
	FILE *f;
	struct keep *k;
	int except;
};

/*
 * "exec follower FD [PATTERN, ...]": an events follower, to go on after the
 * exec; "exec conn FD": a client between requests, answered by the new image
 */
static void write_follower(int fd, bool subscribed, const char *const *patterns, size_t n,
			   void *data)
{
	struct followers *w = data;
	if (fd == w->except) /* the one asking: "exec client" */
		return;
	if (!subscribed) {
		fprintf(w->f, "exec conn %d\n", fd);
		keep_add(w->k, fd);
		return;
	}
	cJSON *a = n ? cJSON_CreateStringArray(patterns, (int)n) : cJSON_CreateArray();
	char *s = a ? cJSON_PrintUnformatted(a) : NULL;
	if (s) {
		fprintf(w->f, "exec follower %d %s\n", fd, s);
		keep_add(w->k, fd);
	}
	free(s);
	cJSON_Delete(a);
}

/* The state and the descriptors it names into f; the ones to keep into k. */
static void write_state(struct daemon *d, FILE *f, int client, struct keep *k)
{
	int lfd, lockfd;
	size_t n = state_print(d, f);
	control_fds(d->ctl, &lfd, &lockfd);
	fprintf(f, "exec ctl %d %d\n", lfd, lockfd);
	keep_add(k, lfd);
	keep_add(k, lockfd);
	if (client >= 0) {
		fprintf(f, "exec client %d\n", client);
		keep_add(k, client);
	}
	if (d->cg)
		fprintf(f, "exec cghome %s\n", cgroups_home(d->cg));
	control_followers(d->ctl, write_follower, &(struct followers){f, k, client});
	for (struct unit *u = d->first; u; u = u->next) {
		int fds[4];
		if (!u->out || !u->svc)
			continue;
		output_fds(u->out, fds);
		fprintf(f, "exec pipe %s %d %d %d %d\n", u->name, fds[0], fds[1], fds[2], fds[3]);
		for (int i = 0; i < 4; i++)
			keep_add(k, fds[i]);
	}
	fprintf(f, "end %zu\n", n);
}

int daemon_reexec(struct daemon *d, struct client *cl, char *err, size_t errlen)
{
	char exe[PATH_MAX], env[32];
	if (d->stopping || !d->started) {
		snprintf(err, errlen, "the daemon is %s: not re-executing",
			 d->stopping ? "shutting down" : "still starting its services");
		return -1;
	}
	if (exe_path(exe, sizeof(exe), err, errlen) < 0 || check_format(exe, err, errlen) < 0) {
		dlog("re-exec: %s", err);
		return -1;
	}
	int mfd = memfd_create("evmon-state", MFD_CLOEXEC);
	FILE *f = mfd >= 0 ? fdopen(dup(mfd), "w") : NULL;
	if (!f) {
		snprintf(err, errlen, "memfd: %s: the daemon carries on", strerror(errno));
		if (mfd >= 0)
			close(mfd);
		return -1;
	}
	struct keep k = {0};
	int client = control_client_fd(cl);
	write_state(d, f, client, &k);
	bool ok = fflush(f) == 0 && !ferror(f);
	ok = fclose(f) == 0 && ok;
	if (!ok) {
		snprintf(err, errlen, "memfd: cannot write the state: the daemon carries on");
		close(mfd);
		free(k.fds);
		return -1;
	}
	keep_add(&k, mfd);
	state_write_now(d); /* on disk too: if the new image dies, the next daemon takes over */
	char *argv[] = {"evmon", "daemon", "-c", (char *)d->cfg_path, "-S", (char *)d->socket,
			d->reaper ? "--reaper" : NULL, NULL};
	snprintf(env, sizeof(env), "%d", mfd);
	setenv("EVMON_REEXEC_STATE", env, 1);
	notify_export(true);
	evm_loop_prepare_exec(d->loop);
	dlog("re-executing %s: %zu services keep running", exe, d->nunits);
	stdsink_flush(); /* what waits for a slow stdout/stderr would not cross the exec */
	fflush(NULL);
	keep_cloexec(&k, false);
	execv(exe, argv);
	int e = errno;
	keep_cloexec(&k, true);
	unsetenv("EVMON_REEXEC_STATE");
	notify_export(false);
	close(mfd);
	free(k.fds);
	snprintf(err, errlen, "exec %s: %s: the daemon carries on", exe, strerror(e));
	dlog("re-exec: %s", err);
	return -1;
}

void reexec_answer(struct daemon *d, int fd, size_t kept)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "{\"ok\":true,\"pid\":%d,\"version\":\"%s\",\"services\":%zu,"
			 "\"kept\":%zu}\n", (int)getpid(), evm_version(), d->nunits, kept);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	ssize_t w = write(fd, buf, (size_t)n); /* a few bytes to an empty socket: whole or lost */
	(void)w;
	close(fd);
}

void reexec_done(struct daemon *d, struct record *r, size_t kept)
{
	size_t followers = 0;
	for (size_t i = 0; i < r->nfollowers; i++) {
		int fd = r->followers[i].fd;
		r->followers[i].fd = -1; /* ours now, or closed */
		if (!r->followers[i].patterns) { /* a client between requests */
			control_take_follower(d->ctl, fd, false, NULL, 0);
			continue;
		}
		cJSON *a = cJSON_Parse(r->followers[i].patterns);
		int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
		const char **p = n > 0 ? calloc((size_t)n, sizeof(*p)) : NULL;
		for (int k = 0; p && k < n; k++)
			p[k] = cJSON_GetStringValue(cJSON_GetArrayItem(a, k));
		if (n == 0 || p)
			followers += control_take_follower(d->ctl, fd, true, p, (size_t)n) == 0;
		else
			close(fd);
		free(p);
		cJSON_Delete(a);
	}
	/* what the followers see first: the exec itself (no service changed) */
	char msg[200];
	snprintf(msg, sizeof(msg), "re-executed: evmon %s, %zu of %zu services kept running",
		 evm_version(), kept, d->nunits);
	cJSON *ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "event", "reexec");
	cJSON_AddStringToObject(ev, "message", msg);
	cJSON_AddNumberToObject(ev, "pid", getpid());
	cJSON_AddStringToObject(ev, "version", evm_version());
	cJSON_AddNumberToObject(ev, "services", (double)d->nunits);
	cJSON_AddNumberToObject(ev, "kept", (double)kept);
	cJSON_AddNumberToObject(ev, "followers", (double)followers);
	events_publish(d, NULL, ev);
}
