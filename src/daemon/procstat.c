/*
 * procstat.c - /proc/PID/stat's parent and start time (procstat.h).
 */
#include "procstat.h"

#include <stdio.h>
#include <string.h>

int proc_stat(pid_t pid, pid_t *ppid, uint64_t *start)
{
	char path[64], data[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(data, 1, sizeof(data) - 1, f);
	fclose(f);
	data[n] = 0;
	const char *p = strrchr(data, ')'); /* the command may hold anything but that */
	int pp;
	unsigned long long st;
	if (!p || sscanf(p + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
			 "%*d %*d %*d %llu", &pp, &st) != 2)
		return -1;
	if (ppid)
		*ppid = pp;
	if (start)
		*start = st;
	return 0;
}
