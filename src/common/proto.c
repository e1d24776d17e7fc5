/*
 * proto.c - what the daemon and ctl share about the control protocol
 * (see proto.h and docs/PROTOCOL.md).
 */
#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The private directory of a non-root user's default socket, or NULL when the default is elsewhere. */
const char *proto_default_dir(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("EVMON_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	if ((env && *env) || geteuid() == 0 || (xdg && *xdg))
		return NULL;
	const char *tmp = getenv("TMPDIR");
	snprintf(buf, sizeof(buf), "%s/evmon-%u", tmp && *tmp == '/' ? tmp : "/tmp",
		 (unsigned)geteuid());
	return buf;
}

const char *proto_default_socket(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("EVMON_SOCKET");
	if (env && *env)
		return env;
	if (geteuid() == 0)
		return "/run/evmon.sock";
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/evmon.sock", xdg);
	else
		snprintf(buf, sizeof(buf), "%s/evmon.sock", proto_default_dir());
	return buf;
}

int proto_private_dir(const char *dir, bool create, char *err, size_t len)
{
	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, len, "%s: cannot create it: %s", dir, strerror(errno));
		return -1;
	}
	struct stat st;
	if (lstat(dir, &st) < 0) {
		int e = errno;
		snprintf(err, len, "%s: %s", dir, strerror(e));
		return -e;
	}
	/* someone else's directory (or a link to one) would let them squat or impersonate */
	if (!S_ISDIR(st.st_mode))
		snprintf(err, len, "%s: not a directory: refusing to use it", dir);
	else if (st.st_uid != geteuid())
		snprintf(err, len, "%s: owned by uid %u, not by you (uid %u): refusing to use it",
			 dir, (unsigned)st.st_uid, (unsigned)geteuid());
	else if (st.st_mode & 077)
		snprintf(err, len, "%s: mode %04o, not private (0700): refusing to use it", dir,
			 (unsigned)(st.st_mode & 07777));
	else
		return 0;
	return -EPERM;
}

char *proto_time(const struct timespec *ts, char *buf, size_t len)
{
	struct tm tm;
	time_t t = ts->tv_sec;
	gmtime_r(&t, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts->tv_nsec / 1000000);
	return buf;
}

char *proto_duration(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;
	if (s >= 86400)
		snprintf(buf, len, "%llud%02lluh", (unsigned long long)(s / 86400),
			 (unsigned long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else if (ms >= 10000)
		snprintf(buf, len, "%llus", (unsigned long long)s);
	else
		snprintf(buf, len, "%.1fs", (double)ms / 1000);
	return buf;
}

#define MAX_MS 1e15 /* durations in ms: 31,700 years */

static const char *str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool num(const cJSON *o, const char *k, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	if (!cJSON_IsNumber(v))
		return false;
	*out = v->valuedouble;
	return true;
}

/*
 * A number field from 0 to max, as an integer; false when absent or out of
 * range (a line is bytes from a socket, and casting a double the target type
 * cannot hold is undefined behaviour).
 */
static bool count(const cJSON *o, const char *k, double max, uint64_t *out)
{
	double v;
	if (!num(o, k, &v) || !(v >= 0 && v <= max))
		return false;
	*out = (uint64_t)v;
	return true;
}

void proto_exit_how(int sig, const char *sname, bool core, int code, char *buf, size_t len)
{
	const char *dumped = core ? " (core dumped)" : "";
	if (sig > 0 && sname && *sname && strcmp(sname, "?"))
		snprintf(buf, len, "killed by signal %s%s", sname, dumped);
	else if (sig > 0) /* 32 and 33: libc's own, below SIGRTMIN, no name */
		snprintf(buf, len, "killed by signal %d%s", sig, dumped);
	else if (code >= 0)
		snprintf(buf, len, "exited with code %d", code);
	else
		snprintf(buf, len, "exited (status unknown)");
}

/* An event's exit, as proto_exit_how says it. */
static void how(const cJSON *ev, char *buf, size_t len)
{
	double sig;
	uint64_t code;
	bool has_sig = num(ev, "signal", &sig) && sig > 0 && sig < 1024;
	bool has_code = count(ev, "code", INT_MAX, &code);
	proto_exit_how(has_sig ? (int)sig : 0, str(ev, "signal_name"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "core_dumped")),
		       has_code ? (int)code : -1, buf, len);
}

/*
 * Is err ("exec: Exec format error") said by msg already ("exec /x: Exec
 * format error; gave up ...")? Then the line says it once.
 */
static bool said(const char *msg, const char *err)
{
	const char *why = err ? strrchr(err, ':') : NULL;
	why = why ? why + 1 : err;
	while (why && *why == ' ')
		why++;
	return msg && why && *why && strstr(msg, why);
}

void proto_event_line(const cJSON *ev, char *buf, size_t len)
{
	const char *type = str(ev, "event"), *svc = str(ev, "service");
	const char *msg = str(ev, "message"), *err = str(ev, "error");
	char h[96], d[32];
	if (said(msg, err))
		err = NULL;
	uint64_t pid = 0, v;
	count(ev, "pid", INT_MAX, &pid);
	buf[0] = '\0';
	if (!type) {
		snprintf(buf, len, "(not an event)");
	} else if (!strcmp(type, "state")) {
		const char *st = str(ev, "state"), *old = str(ev, "old_state");
		bool removed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "removed"));
		bool replaced = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "replaced"));
		if (removed && st && old && !strcmp(st, old)) {
			snprintf(buf, len, "service %s: %sremoved", svc ? svc : "?",
				 replaced ? "old copy (replaced) " : "");
			return;
		}
		bool restarting = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "restarting"));
		int n = snprintf(buf, len, "service %s: %s -> %s%s", svc ? svc : "?", old ? old : "?",
				 st ? st : "?", replaced ? " (old copy, replaced)"
						: removed    ? " (removed)"
						: restarting ? " (restarting)"
							     : "");
		if (n < 0 || (size_t)n >= len)
			return;
		if (pid > 0)
			n += snprintf(buf + n, len - (size_t)n, ", pid %d", (int)pid);
		if ((size_t)n < len && count(ev, "delay_ms", MAX_MS, &v))
			n += snprintf(buf + n, len - (size_t)n, ", next start in %s",
				      proto_duration(v, d, sizeof(d)));
		if ((size_t)n < len && count(ev, "restarts", INT_MAX, &v) && v > 0)
			n += snprintf(buf + n, len - (size_t)n, " (restarts: %d)", (int)v);
		if ((size_t)n < len && (err || msg))
			snprintf(buf + n, len - (size_t)n, ": %s%s%s", msg ? msg : "",
				 msg && err ? ": " : "", err ? err : "");
	} else if (!strcmp(type, "exit")) {
		how(ev, h, sizeof(h));
		int n = snprintf(buf, len, "service %s: pid %d %s", svc ? svc : "?", (int)pid, h);
		if (n >= 0 && (size_t)n < len && count(ev, "runtime_ms", MAX_MS, &v))
			snprintf(buf + n, len - (size_t)n, " after %s",
				 proto_duration(v, d, sizeof(d)));
	} else if (!strcmp(type, "health")) {
		/* "service db: health starting -> unhealthy: exit 1: <its first line>" */
		const char *st = str(ev, "health"), *old = str(ev, "old_health");
		const char *out = str(ev, "output");
		int n = snprintf(buf, len, "service %s: health %s%s%s", svc ? svc : "?", old ? old : "",
				 old ? " -> " : "", st ? st : "?");
		if (n >= 0 && (size_t)n < len && count(ev, "exit_code", INT_MAX, &v) && v > 0)
			n += snprintf(buf + n, len - (size_t)n, ": exit %d", (int)v);
		if (n >= 0 && (size_t)n < len && out && *out && st && strcmp(st, "healthy"))
			snprintf(buf + n, len - (size_t)n, ": %.*s", (int)strcspn(out, "\r\n"), out);
	} else if (!strcmp(type, "orphan")) {
		how(ev, h, sizeof(h));
		snprintf(buf, len, "reaped orphan pid %d: %s", (int)pid, h);
	} else if (!strcmp(type, "log")) {
		if (svc)
			snprintf(buf, len, "service %s: log: %s", svc, msg ? msg : "");
		else
			snprintf(buf, len, "log: %s", msg ? msg : "");
	} else if (!strcmp(type, "warning") && svc) {
		snprintf(buf, len, "service %s: %s%s%s", svc, msg ? msg : "", err ? ": " : "",
			 err ? err : "");
	} else if (!strcmp(type, "warning")) {
		snprintf(buf, len, "warning: %s%s%s", msg ? msg : "", err ? ": " : "", err ? err : "");
	} else if (!strcmp(type, "notify")) {
		/* "service web: pid 12 says: stopping (STATUS=draining)" */
		const char *what = str(ev, "notify"), *text = str(ev, "status_text");
		snprintf(buf, len, "service %s: pid %d says: %s%s%s%s", svc ? svc : "?", (int)pid,
			 what ? what : "?", text ? " (STATUS=" : "", text ? text : "", text ? ")" : "");
	} else {
		snprintf(buf, len, "%s: %s", type, msg ? msg : "");
	}
}

/* ------------------------------------------------------- line framing */

char *linebuf_space(struct linebuf *b, size_t n)
{
	if (b->off + b->len + n > b->cap) {
		if (b->off > 0) {
			memmove(b->data, b->data + b->off, b->len);
			b->off = 0;
		}
		if (b->len + n > b->cap) {
			size_t cap = b->cap ? b->cap : 4096;
			while (cap < b->len + n)
				cap *= 2;
			char *d = realloc(b->data, cap);
			if (!d)
				return NULL;
			b->data = d;
			b->cap = cap;
		}
	}
	return b->data + b->off + b->len;
}

int linebuf_append(struct linebuf *b, const char *p, size_t n)
{
	char *dst = linebuf_space(b, n);
	if (!dst)
		return -ENOMEM;
	memcpy(dst, p, n);
	b->len += n;
	return 0;
}

void linebuf_consume(struct linebuf *b, size_t n)
{
	if (n >= b->len) {
		b->off = b->len = 0;
		/* an idle connection should not keep a big buffer */
		if (b->cap > 65536) {
			free(b->data);
			b->data = NULL;
			b->cap = 0;
		}
		return;
	}
	b->off += n;
	b->len -= n;
}

ssize_t linebuf_line(const struct linebuf *b)
{
	if (!b->len)
		return -1;
	const char *nl = memchr(b->data + b->off, '\n', b->len);
	return nl ? nl - (b->data + b->off) : -1;
}

void linebuf_free(struct linebuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}
