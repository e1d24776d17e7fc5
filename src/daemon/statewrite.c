/*
 * statewrite.c - writing the state record (state.h): a line per service
 * built without printf (every service at every write), written to a
 * temporary file renamed over the record, at most once per loop iteration
 * in which a service changed (state_changed arms a timer), spaced further
 * for a big record; removed at a clean exit (state_fini).
 *
 * Never fsync'ed: the record is for a crash of the daemon, and a crash of
 * the machine takes the services with it. A write that fails is logged once
 * (until one succeeds again); the daemon runs on.
 */
#include "state.h"

#include "daemon.h"
#include "daemonlog.h"
#include "health.h"
#include "notifysock.h"
#include "ready.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* " V" before p (the line is built from its end) */
static char *put_dec(char *p, uint64_t v)
{
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	*--p = ' ';
	return p;
}

static char *put_word(char *p, const char *w)
{
	for (size_t n = strlen(w); n;)
		*--p = w[--n];
	*--p = ' ';
	return p;
}

/*
 * " PID START IDENT FLAGS STATE RESTARTS FAILURES START_FAILURES STEP NEXT[ INTENT]
 * [ health=STATUS:FAILURES][ deadline=MS][ failing][ watchdog=MS]
 * [ why=TEXT][ since=MS][ err=STAGE:ERRNO][ exit=PID:STATUS:FLAGS:END_MS:RUN_MS][ starts=N]
 * [ old=...]\n"
 * as "%d %" PRIu64 " %016" PRIx64 " %s ..." would: every service at each write
 */
static void put_line_tail(FILE *f, pid_t pid, uint64_t start, uint64_t ident, const char *flags,
			  const struct evm_service_info *info, uint64_t next, const char *intent,
			  const struct unit *u, const char *olds)
{
	char buf[1280], *p = buf + sizeof(buf);
	*--p = '\n';
	uint64_t left;
	if (*olds) /* last: a reader of any format leaves words it does not know */
		p = put_word(p, olds);
	if (u->starts) { /* its starts_total, kept by the next daemon (an older one leaves the word) */
		char w[24];
		snprintf(w, sizeof(w), "starts=%u", u->starts);
		p = put_word(p, w);
	}
	/* what status shows of its past: why it is fatal, the last exit, the last spawn error, since when */
	if (info->state == EVM_STATE_FATAL && u->fatal_why && *u->fatal_why) {
		/*
		 * One word: a space, '%' and a control byte as %XX (state.c reads it
		 * back); 127 bytes at most, the longest word an older reader takes
		 * whole (it would read the rest as words of their own).
		 */
		char w[128] = "why=";
		size_t n = 4;
		const unsigned char *c = (const unsigned char *)u->fatal_why;
		for (size_t i = 0; c[i] && n + 3 < sizeof(w); i++)
			if (c[i] <= ' ' || c[i] == '%' || c[i] == 0x7f)
				n += (size_t)snprintf(w + n, sizeof(w) - n, "%%%02X", c[i]);
			else
				w[n++] = (char)c[i];
		w[n] = '\0';
		p = put_word(p, w);
	}
	if (info->has_exit) {
		const struct evm_exit *x = &info->last_exit;
		char w[128];
		unsigned fl = (x->status_unknown ? 1u : 0) | (x->adopted ? 2u : 0) | (x->oom_killed ? 4u : 0);
		snprintf(w, sizeof(w), "exit=%d:%d:%u:%" PRId64 ":%" PRIu64, (int)x->pid, x->status, fl,
			 (int64_t)x->end_time.tv_sec * 1000 + x->end_time.tv_nsec / 1000000,
			 x->runtime_ns / 1000000);
		p = put_word(p, w);
	}
	if (info->last_error.stage != EVM_STAGE_NONE) {
		char w[48];
		snprintf(w, sizeof(w), "err=%d:%d", (int)info->last_error.stage, info->last_error.error);
		p = put_word(p, w);
	}
	if (info->since.tv_sec > 0) {
		char w[48];
		snprintf(w, sizeof(w), "since=%" PRId64,
			 (int64_t)info->since.tv_sec * 1000 + info->since.tv_nsec / 1000000);
		p = put_word(p, w);
	}
	if (ready_watchdog(u, &left)) {
		char w[48];
		snprintf(w, sizeof(w), "watchdog=%" PRIu64, left);
		p = put_word(p, w);
	}
	int kind = evm_service_deadline(u->svc, &left);
	if (kind == EVM_DEADLINE_KILL && info->state != EVM_STATE_STOPPING)
		p = put_word(p, "failing"); /* being stopped for a failure: a SIGKILL, a failed exit */
	if (evm_service_runs_on_tree(u->svc))
		p = put_word(p, "tree"); /* its main exited (exit=), its cgroup's processes run on */
	if (kind > 0) {
		char w[48];
		snprintf(w, sizeof(w), "deadline=%" PRIu64, state_boot_ms() + left);
		p = put_word(p, w);
	}
	enum health_status hs = health_of(u);
	if (hs == HEALTH_HEALTHY || hs == HEALTH_UNHEALTHY) {
		char w[48];
		snprintf(w, sizeof(w), "health=%s:%u", health_status_name(hs), health_streak(u));
		p = put_word(p, w);
	}
	if (intent)
		p = put_word(p, intent);
	p = put_dec(p, next);
	p = put_dec(p, info->backoff_step);
	p = put_dec(p, info->start_failures);
	p = put_dec(p, info->failures);
	p = put_dec(p, info->restarts);
	p = put_word(p, evm_state_name(info->state));
	p = put_word(p, flags);
	for (int k = 0; k < 16; k++, ident >>= 4)
		*--p = "0123456789abcdef"[ident & 15];
	*--p = ' ';
	p = put_dec(p, start);
	unsigned long v = pid < 0 ? 0ul - (unsigned long)pid : (unsigned long)pid;
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	if (pid < 0)
		*--p = '-';
	*--p = ' ';
	fwrite(p, 1, (size_t)(buf + sizeof(buf) - p), f);
}

/*
 * " old=PID:STARTTIME:MS" words for name's old copies still stopping (at
 * most STATE_OLDS_MAX: more than one is rare, a reload flip-flopping faster
 * than the stops; the others are killed after a crash, as before, and a
 * re-exec waits for them: reexec.c), without their first space, into buf
 * (room for STATE_OLDS_MAX words); "" for none. One whose process is gone
 * (its exit on its way) is left out.
 */
static void old_words(struct daemon *d, const char *name, char *buf, size_t cap)
{
	struct evm_service *old;
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < STATE_OLDS_MAX && (old = units_old(d, name, i, NULL)); i++) {
		struct evm_proc *p = evm_service_proc(old);
		pid_t pid = p ? evm_proc_pid(p) : 0;
		uint64_t start, left;
		if (pid <= 0 || evm_proc_start_time(pid, &start) < 0)
			continue;
		uint64_t kill = evm_service_deadline(old, &left) == EVM_DEADLINE_KILL
					? state_boot_ms() + left : 0;
		int sig;
		uint64_t ms;
		int w = units_old_held(d, name, i, &sig, &ms)
				? snprintf(buf + len, cap - len, "%sheld=%d:%" PRIu64 ":%d:%" PRIu64,
					   len ? " " : "", (int)pid, start, sig, ms)
				: snprintf(buf + len, cap - len, "%sold=%d:%" PRIu64 ":%" PRIu64,
					   len ? " " : "", (int)pid, start, kill);
		if (w < 0 || (size_t)w >= cap - len) {
			buf[len] = '\0';
			break;
		}
		len += (size_t)w;
	}
}

/* A line of its own for name's old copies: no service of that name has one */
static size_t old_line(struct daemon *d, FILE *f, const char *name, char *olds, size_t cap)
{
	old_words(d, name, olds, cap);
	if (!*olds)
		return 0;
	fprintf(f, "service %s 0 0 0000000000000000 %s %s 0 0 0 0 0 %s\n", name,
		rec_flag_names[REC_DOWN], evm_state_name(EVM_STATE_STOPPED), olds);
	return 1;
}

/* down: stopped by a user, or over (exited, fatal): not started again */
static bool info_down(const struct evm_service_info *info)
{
	return (info->state == EVM_STATE_STOPPED && info->stopped_by_user) ||
	       info->state == EVM_STATE_EXITED || info->state == EVM_STATE_FATAL;
}

size_t state_shutdown_begins(struct daemon *d)
{
	size_t n = 0;
	for (struct unit *u = d->first; u; u = u->next) {
		struct evm_service_info info;
		if (u->svc)
			evm_service_info(u->svc, &info);
		u->shutdown_stops = u->svc && !info_down(&info);
		n += u->shutdown_stops && info.state != EVM_STATE_STOPPED;
	}
	return n;
}

size_t state_print(struct daemon *d, FILE *f, int version)
{
	char olds[STATE_OLDS_MAX * 64];
	size_t n = 0;
	/*
	 * Formats 2 to 6 write the same here (their differences are "exec" lines);
	 * 7 adds flags, which the older ones carry as a last word on the line: an
	 * evmon that reads only those formats ignores what follows NEXT (every
	 * reader of format 2 since it exists), so a record on disk (format 2)
	 * carries them across a crash without locking out a downgrade.
	 */
	/* the services' notify socket: a daemon started after a crash binds its name again */
	const char *nsock = notifysock_name(d);
	fprintf(f, "evmon-state %d\ndaemon %d%s%s id=%016" PRIx64 "\n", version, (int)getpid(),
		nsock ? " notify=" : "", nsock ? nsock : "", d->lineage);
	for (struct unit *u = d->first; u; u = u->next) {
		if (!u->svc) { /* its new definition's service could not be made */
			if (units_draining(d, u->name))
				n += old_line(d, f, u->name, olds, sizeof(olds));
			continue;
		}
		struct evm_service_info info;
		evm_service_info(u->svc, &info);
		pid_t pid = info.pid;
		/* the main's start time as the library read it (one read a start, not two) */
		struct evm_proc *p = evm_service_proc(u->svc);
		if (pid > 0 && pid != u->rec_pid &&
		    (p && evm_proc_pid(p) == pid ? evm_proc_start_time_of(p, &u->rec_start)
						 : evm_proc_start_time(pid, &u->rec_start)) < 0)
			pid = 0; /* gone already: its exit is on its way */
		u->rec_pid = pid;
		/*
		 * Down, but not when the shutdown stopped it: its stop made it "stopped
		 * by a user", and a daemon started after a crash in the shutdown left
		 * every service it had stopped already down.
		 */
		bool down = info_down(&info) && !(d->stopping && u->shutdown_stops);
		enum rec_flags flags = info.state == EVM_STATE_STOPPING ? REC_STOPPING
				       : down ? REC_DOWN : REC_RUN;
		/*
		 * What it waits for (format 7's flags, state.h): asked to start and
		 * waiting for its dependencies or its turn; stopping, or stopped
		 * until its spawn turn, to start again; to stop once its dependents
		 * are down, or at its turn. Older formats end the line with it.
		 */
		enum rec_flags intent = REC_RUN; /* none */
		bool restart = !u->want_stop && !d->stopping; /* a start after its stop still stands */
		if ((u->pending || unit_deferred(u)) && !pid)
			intent = REC_START;
		else if (u->start_after && restart &&
			 (info.state == EVM_STATE_STOPPING || (info.state == EVM_STATE_STOPPED && !pid)))
			intent = REC_RESTART;
		else if (u->pending && info.state == EVM_STATE_STOPPING)
			intent = REC_RESTART; /* a restart waiting for what it requires, deps.c */
		else if (evm_service_start_pending(u->svc) && restart)
			intent = REC_RESTART; /* the library's start after the stop (a start meanwhile) */
		else if (u->want_stop && pid && info.state != EVM_STATE_STOPPING && !d->stopping)
			intent = REC_STOP; /* not the shutdown's: a daemon started after it runs them */
		else if (d->stopping && info.state == EVM_STATE_STOPPING && u->conf->pol.autostart)
			/*
			 * The shutdown's stop: a daemon started after a crash now lets it
			 * end, then starts the service as any start of the daemon does
			 * (it stayed stopped, as if a user had stopped it, while one
			 * whose process died meanwhile was started again).
			 */
			intent = REC_RESTART;
		if (intent != REC_RUN && version >= 7) {
			flags = intent;
			intent = REC_RUN;
		} else if (intent == REC_STOP && u->queued) {
			flags = REC_STOPPING; /* what an older evmon does best with it: its turn only */
		}
		uint64_t next = info.state == EVM_STATE_BACKOFF ? state_boot_ms() + info.next_start_ms : 0;
		olds[0] = '\0';
		if (units_draining(d, u->name))
			old_words(d, u->name, olds, sizeof(olds));
		fputs("service ", f);
		fputs(u->name, f);
		put_line_tail(f, pid, pid > 0 ? u->rec_start : 0, state_ident(u->conf),
			      rec_flag_names[flags], &info, next,
			      intent != REC_RUN ? rec_flag_names[intent] : NULL, u, olds);
		n++;
		/* the instances of one added definition are next to each other: once */
		if (u->conf->added_def && (!u->prev || u->prev->conf != u->conf))
			fprintf(f, "added %s\n", u->conf->added_def);
	}
	/* removed services still stopping, when no service of their name is defined now */
	for (const char *name = NULL; (name = units_next_draining(d, name));)
		if (!unit_find(d, name))
			n += old_line(d, f, name, olds, sizeof(olds));
	return n;
}

int state_write_now(struct daemon *d)
{
	char tmp[PATH_MAX];
	int e = 0;
	uint64_t t0 = mono_ns();
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->state_path);
	/* a new file of ours: not one another user left there for us to fill and rename */
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		e = errno;
		if (fd >= 0)
			close(fd);
	} else {
		fprintf(f, "end %zu\n", state_print(d, f, STATE_DISK_VERSION));
		bool ok = fflush(f) == 0 && !ferror(f);
		e = errno;
		ok = fclose(f) == 0 && ok;
		if (ok && rename(tmp, d->state_path) == 0)
			e = 0;
		else if (!e)
			e = errno ? errno : EIO;
		if (e)
			unlink(tmp);
	}
	if (e && !d->state_failed)
		dlog("state record %s: %s: a daemon started after a crash may start services a "
		     "second time", d->state_path, strerror(e));
	d->state_failed = e != 0;
	/*
	 * A big record costs (10,000 services: ~0.5 MB, a file created and
	 * renamed): the writes of a busy daemon are spaced by 1 ms per 100
	 * services, so a crash-looping 10,000 does not rewrite it every
	 * iteration; while the daemon starts its services, also by 10 times
	 * what this write took (at the start of 1,000 services on a loaded
	 * machine the record took as much of the daemon's time as the spawns),
	 * and the record is written at once when all have started
	 * (state_started). The gap is a window in which a crash forgets a new
	 * pid; with cgroups that process is still found (and killed, not
	 * duplicated) by the sweep.
	 */
	uint64_t took_ms = d->started ? 0 : (mono_ns() - t0) / 100000; /* 10 times, in ms */
	uint64_t delay = d->nunits / 100 > took_ms ? d->nunits / 100 : took_ms;
	d->state_delay_ms = delay < 1000 ? delay : 1000;
	return -e;
}

static void on_state_timer(struct evm_timer *t, void *data)
{
	(void)t;
	state_write_now(data);
}

void state_changed(struct daemon *d)
{
	if (!d->state_path || d->state_timer || d->state_closed)
		return;
	/* one write per iteration, however many services changed in it */
	if (evm_timer_add(d->loop, d->state_delay_ms, on_state_timer, d, &d->state_timer) < 0)
		state_write_now(d);
}

void state_started(struct daemon *d)
{
	if (!d->state_path || d->state_closed)
		return;
	evm_timer_cancel(d->state_timer);
	state_write_now(d);
}

void state_fini(struct daemon *d)
{
	evm_timer_cancel(d->state_timer);
	d->state_closed = true;
	if (d->state_path)
		unlink(d->state_path);
	free(d->state_path);
	d->state_path = NULL;
	record_free(d->rec);
	d->rec = NULL;
}
