/*
 * notify.c - readiness and status for a service manager (systemd's
 * sd_notify protocol), without libsystemd.
 *
 * The protocol: the manager sets $NOTIFY_SOCKET to an AF_UNIX datagram
 * socket (a path, or '@' for a name in the abstract namespace); the daemon
 * sends it newline-separated KEY=VALUE assignments, one datagram per
 * message. The variable is removed from the environment at once, so the
 * services (who inherit the daemon's environment) do not talk to the
 * daemon's manager in its name.
 *
 * $WATCHDOG_USEC (systemd's WatchdogSec=) asks for WATCHDOG=1 at least
 * that often: notify_watchdog_ms() says how often to send it; the daemon
 * sends it from a timer on its loop, so a loop that hangs stops it and the
 * manager restarts the daemon. Both watchdog variables are removed too.
 *
 * Sending never blocks and never fails the daemon: the socket is
 * non-blocking, a failure is logged once and the rest is dropped (a
 * manager that stopped listening is not a reason to stop supervising).
 */
#include "notify.h"

#include "daemonlog.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct {
	int fd; /* -1: no manager to tell */
	struct sockaddr_un addr;
	socklen_t addrlen;
	char where[sizeof(((struct sockaddr_un *)0)->sun_path) + 1]; /* for messages */
	int failed; /* errno of the first failed send, then quiet */
	uint64_t watchdog_usec; /* 0: no watchdog */
} N = {.fd = -1};

/* WATCHDOG_USEC, if it is meant for this process (WATCHDOG_PID unset or ours) */
static uint64_t read_watchdog(void)
{
	const char *u = getenv("WATCHDOG_USEC"), *p = getenv("WATCHDOG_PID");
	uint64_t usec = 0;
	if (u && (!p || strtol(p, NULL, 10) == (long)getpid())) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(u, &end, 10);
		if (!errno && end != u && !*end && u[0] != '-')
			usec = v;
	}
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return usec;
}

int notify_init(char *err, size_t errlen)
{
	N.watchdog_usec = read_watchdog();
	const char *e = getenv("NOTIFY_SOCKET");
	if (!e) {
		N.watchdog_usec = 0; /* nowhere to send it */
		return 0;
	}
	char path[sizeof(N.where)];
	snprintf(path, sizeof(path), "%s", e);
	unsetenv("NOTIFY_SOCKET"); /* before any service can inherit it */
	size_t len = strlen(path);
	snprintf(N.where, sizeof(N.where), "%s", path);
	memset(&N.addr, 0, sizeof(N.addr));
	N.addr.sun_family = AF_UNIX;
	if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof(N.addr.sun_path)) {
		snprintf(err, errlen, "NOTIFY_SOCKET=%s: not an absolute path or an @abstract "
			 "name that fits a Unix socket address: readiness is not reported", e);
		N.watchdog_usec = 0;
		return -EINVAL;
	}
	memcpy(N.addr.sun_path, path, len);
	if (path[0] == '@') {
		N.addr.sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
		N.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		N.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	N.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (N.fd < 0) {
		int r = -errno;
		snprintf(err, errlen, "NOTIFY_SOCKET=%s: socket: %s: readiness is not reported", e,
			 strerror(errno));
		N.watchdog_usec = 0;
		return r;
	}
	N.failed = 0;
	return 1;
}

bool notify_enabled(void)
{
	return N.fd >= 0;
}

uint64_t notify_watchdog_ms(void)
{
	if (N.fd < 0 || !N.watchdog_usec)
		return 0;
	/* half the interval, as sd_watchdog_enabled(3) advises; at least 1 ms */
	uint64_t ms = N.watchdog_usec / 2000;
	return ms ? ms : 1;
}

void notify_send(const char *fmt, ...)
{
	if (N.fd < 0)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
	ssize_t w;
	do
		w = sendto(N.fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&N.addr,
			   N.addrlen);
	while (w < 0 && errno == EINTR);
	if (w < 0 && !N.failed) {
		N.failed = errno;
		dlog("notify: %s: %s: further notifications that fail are not logged", N.where,
		     strerror(errno));
	}
}

void notify_reloading(const char *status)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* MONOTONIC_USEC lets systemd (Type=notify-reload) match this to its own SIGHUP */
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
		    (unsigned long long)ts.tv_sec * 1000000ull +
			    (unsigned long long)ts.tv_nsec / 1000ull,
		    status);
}

void notify_export(bool set)
{
	char usec[32], pid[32];
	if (!set) {
		unsetenv("NOTIFY_SOCKET");
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
		return;
	}
	if (N.fd < 0)
		return;
	setenv("NOTIFY_SOCKET", N.where, 1);
	if (N.watchdog_usec) {
		snprintf(usec, sizeof(usec), "%llu", (unsigned long long)N.watchdog_usec);
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		setenv("WATCHDOG_USEC", usec, 1);
		setenv("WATCHDOG_PID", pid, 1);
	}
}

void notify_free(void)
{
	if (N.fd >= 0)
		close(N.fd);
	N.fd = -1;
}
