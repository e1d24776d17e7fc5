/*
 * daemonlog.c - the daemon's log lines on stderr (see daemonlog.h): a
 * timestamp, "evmon daemon: ", the message, on one line of at most 2 KiB.
 */
#include "daemonlog.h"

#include "proto.h"
#include "stdsink.h"

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
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = k < 0 ? n : n + (size_t)k >= sizeof(line) - 1 ? sizeof(line) - 2 : n + (size_t)k;
	line[n++] = '\n';
	stdsink_write(2, line, n);
}
