/*
 * procstat.h - a process's parent and start time from /proc/PID/stat
 * (procstat.c), for the daemon's walks of processes it did not start.
 */
#ifndef EVMON_PROCSTAT_H
#define EVMON_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

/*
 * pid's parent (field 4) and start time (field 22, clock ticks since boot,
 * as evm_proc_start_time gives it) into those not NULL: 0, or -1 when it
 * is gone (or the text cannot be read).
 */
int proc_stat(pid_t pid, pid_t *ppid, uint64_t *start);

#endif
