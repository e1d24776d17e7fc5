/*
 * logfile.h - the services' log files: the log directory (held open as an
 * fd), files created in it without following anything planted there,
 * appended whole lines at a time, rotated by size (NAME.log.1 .. .N), kept
 * open only while output flows, and watched by `evmon ctl logs -f`.
 *
 * The directory is the one at the path: removed or renamed while we run, it
 * is made again (logdir.c, logs__check_dir). A file that cannot be written
 * (directory missing or read-only, a symlink or someone else's file in the
 * way, disk full) never blocks a service: its output is counted and
 * discarded, reported once through the report callback, retried every few
 * seconds, and the count is written into the file when it works again.
 */
#ifndef EVMON_LOGFILE_H
#define EVMON_LOGFILE_H

#include <evmon.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct logs;
struct logfile;

/*
 * A problem (error < 0) or a recovery (error 0) of the file of service
 * (NULL: the directory itself, file NULL too).
 */
typedef void (*logs_report_cb)(const char *service, const char *file, int error, const char *msg,
			       void *data);

struct logs *logs_new(struct evm_loop *loop, logs_report_cb report, void *data);
/* Every logfile must have been put back (watchers too). */
void logs_free(struct logs *L);

/*
 * Use path (absolute; NULL: none) as the log directory: every open file is
 * closed and later writes go to the new place. Returns 0, or -errno with
 * the reason in err (the directory is then retried at each write).
 */
int logs_set_dir(struct logs *L, const char *path, char *err, size_t errlen);

/*
 * Close every open file and open the directory again, so that the next
 * write creates NAME.log afresh (after logrotate moved it). Returns the
 * number of files that were open, or -errno with err.
 */
int logs_reopen(struct logs *L, char *err, size_t errlen);

const char *logs_dir(const struct logs *L); /* NULL when none */

/*
 * Out of descriptors elsewhere: close the least recently written file (it
 * is reopened at its next line). False when none is open.
 */
bool logs_close_one(struct logs *L);

/*
 * The file called name in the log directory (one object per name, shared
 * by every stream writing it), for service (named in reports). A new
 * reference; NULL when out of memory.
 */
struct logfile *logfile_get(struct logs *L, const char *name, const char *service);
struct logfile *logfile_ref(struct logfile *f);
void logfile_put(struct logfile *f);
const char *logfile_name(const struct logfile *f);

/* Rotate beyond max_bytes (0: never) keeping backups files (0: truncate). */
void logfile_set_limits(struct logfile *f, uint64_t max_bytes, unsigned backups);
unsigned logfile_backups(const struct logfile *f);
/*
 * At most how much of most bytes to hand over at one wake-up: about one
 * file's worth, so that the loop does a rotation or two between its turns.
 */
size_t logfile_burst(const struct logfile *f, size_t most);

/*
 * Append p[0..n), which is whole lines (it ends with '\\n'). Rotation
 * happens between lines: a file never grows past max_bytes unless it holds
 * a single line longer than that.
 */
void logfile_write(struct logfile *f, const char *p, size_t n);

/*
 * Open NAME.log (backup 0) or NAME.log.N for reading, with the checks of
 * writing (no symlink, a regular file of ours). Returns the fd, or -errno
 * (-ENOENT when there is no such file) with err.
 */
int logfile_open_read(struct logfile *f, unsigned backup, char *err, size_t errlen);

/* Someone following a file: called with every byte appended to it. */
struct logwatch {
	void (*cb)(struct logwatch *w, const char *p, size_t n);
	struct logwatch *prev, *next;
};
void logfile_watch(struct logfile *f, struct logwatch *w);
void logfile_unwatch(struct logfile *f, struct logwatch *w);

#endif
