/*
 * logfileint.h - what the log files' two sources share (logdir.c: the
 * directory and checked opens; logfile.c: the files). Nothing else
 * includes it.
 *
 * Invariants: dirfd is the directory that was at dir when it was last
 * checked (dev and inode kept), or -1 with dir_err and dir_msg saying why;
 * an open logfile is on the LRU list (nopen of them, at most MAX_OPEN of logfile.c).
 */
#ifndef EVMON_LOGFILEINT_H
#define EVMON_LOGFILEINT_H

#include "logfile.h"

#include "hashmap.h"

#include <sys/types.h>

#define RETRY_MS 5000
#define NS_PER_MS 1000000ull

struct logfile {
	struct logs *L;
	char *name;		/* NAME.log, in the log directory */
	char *service;		/* for reports */
	unsigned refs;
	int fd;			/* -1 while closed */
	uint64_t size;		/* of the open file: fstat at open, then our writes */
	uint64_t max_bytes;
	unsigned backups;
	int chain;		/* NAME.log.1 .. .chain are there (no hole below); -1: count them */
	uint64_t last_write;	/* loop time (ns) of the last write or open */
	bool failing;		/* output is being discarded */
	bool partial;		/* the file ends in the middle of a line (unwrite failed) */
	uint64_t retry_at;	/* loop time of the next attempt while failing */
	uint64_t dropped;	/* bytes discarded while failing */
	char *fail_msg;		/* why, while failing */
	uint64_t rotate_retry_at; /* a failed rotation is not retried before this */
	bool rotate_failed;	/* the last rotation failed: appended on, up to twice max_bytes */
	struct logwatch *watchers;
	struct hnode node;	/* in logs.files, by name */
	struct logfile *lprev, *lnext; /* open files, most recently written first */
};

struct logs {
	struct evm_loop *loop;
	logs_report_cb report;
	void *data;
	char *dir;		/* the configured path, or NULL */
	int dirfd;		/* -1 when there is none or it failed */
	char dir_msg[300];	/* why it failed */
	int dir_err;
	uint64_t dir_retry_at;
	dev_t dir_dev;		/* the directory held, to see it moved or removed */
	ino_t dir_ino;
	mode_t dir_mode;
	uint64_t dir_checked_at; /* loop time of the last look (check_dir) */
	struct hashmap files;	/* every logfile, by name */
	struct logfile *lru_first, *lru_last;
	unsigned nopen;
	struct evm_timer *idle;
};

static inline uint64_t now_ns(const struct logs *L)
{
	return evm_loop_now(L->loop);
}

/* Open name (flags O_WRONLY... or O_RDONLY) in the directory with every check: fd or -errno, msg. */
int logs__open_checked(struct logs *L, const char *name, int flags, char *msg, size_t len);
/* Is the directory held still the one at log_dir? Made again if not (logdir.c). */
void logs__check_dir(struct logs *L);
void logs__close_file(struct logfile *f);
/* Close every open file (a failed one is retried at its next write); how many were open. */
unsigned logs__close_all(struct logs *L);

#endif
