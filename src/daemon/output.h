/*
 * output.h - where a service's stdout and stderr go: inherited from the
 * daemon, /dev/null, stderr merged into stdout, or captured: a pipe the
 * loop reads, written line by line into LOG_DIR/NAME.log (stdout, or both
 * when merged) and LOG_DIR/NAME.err.log (stderr on its own), with evmon's
 * own lines (start, exit, restart) between the service's; or, for
 * console, to the daemon's own stdout/stderr, each line behind the prefix
 * (console_prefix: "{name} | "). stdin is /dev/null.
 *
 * A capture belongs to a unit and outlives the library services created
 * for it: the pipes are made once and their write ends handed to every new
 * process, so a restart loses nothing and costs no new descriptors.
 */
#ifndef EVMON_OUTPUT_H
#define EVMON_OUTPUT_H

#include "config.h"
#include "logfile.h"

#include <evmon.h>
#include <stdbool.h>
#include <stddef.h>

struct svc_output;

/* Does c capture a stream (stdout or stderr = log or console)? */
bool output_captures(const struct svc_conf *c);

/* Can o serve c (the same streams captured, merged or not)? */
bool output_fits(const struct svc_output *o, const struct svc_conf *c);

/*
 * The capture of service name as c asks: one pipe per captured stream
 * (kept: the 4 ends output_fds gave before an exec of ourselves, taken
 * over: those not needed are closed; else NULL).
 * Returns the caller's reference, or NULL with -errno in *error and the
 * reason in msg.
 */
struct svc_output *output_new(struct evm_loop *loop, struct logs *logs, const struct svc_conf *c,
			      const char *name, const char *prefix, const int *kept, int *error,
			      char *msg, size_t len);

/*
 * Before an exec of ourselves: the pipes' ends (stdout read, write, stderr
 * read, write; -1 when not captured), the unfinished lines written out.
 */
void output_fds(struct svc_output *o, int fds[4]);

/* Take c's log settings (rotation, timestamps): they apply at once. */
void output_configure(struct svc_output *o, const struct svc_conf *c);

/*
 * The stdio slots of c's processes. o may be NULL (nothing captured, or the
 * capture could not be made: a logged stream then goes to /dev/null). The
 * fds stay o's.
 */
void output_stdio(const struct svc_output *o, const struct svc_conf *c, struct evm_stdio stdio[3]);

/*
 * The evm_service_opts.on_event of a service created with o (its data: a
 * reference from output_ref, dropped with the service's last event). At an
 * exit it reads what the process left in the pipes before writing evmon's
 * line about the exit, so that line comes after the process's last output.
 */
void output_on_event(struct evm_loop *loop, const struct evm_event *ev, void *data);

/* The file of stdout (or merged) / of stderr when kept apart; NULL if not captured. */
struct logfile *output_file(const struct svc_output *o, bool err);

struct svc_output *output_ref(struct svc_output *o);
void output_unref(struct svc_output *o);

#endif
