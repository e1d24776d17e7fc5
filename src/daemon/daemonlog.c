/*
 * daemonlog.c - the daemon's log lines on stderr (see daemonlog.h): a
 * timestamp, "evmon daemon: ", the message, on one line of at most 2 KiB.
 */
#include "daemonlog.h"

#include "proto.h"
#include "stdsink.h"
#include "textsafe.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void dlog(const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	proto_time(&ts, line, 40);
	size_t n = strlen(line);
	n += (size_t)snprintf(line + n, sizeof(line) - n, " evmon daemon: ");
	char msg[sizeof(line)];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* on one line, and nothing a terminal acts on: messages carry services' bytes */
	size_t len = k < 0 ? 0 : (size_t)k >= sizeof(msg) ? sizeof(msg) - 1 : (size_t)k;
	n += text_escape(msg, len, line + n, sizeof(line) - n - 1, 0);
	line[n++] = '\n';
	stdsink_write(2, line, n);
}
