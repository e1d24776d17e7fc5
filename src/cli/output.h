/*
 * output.h - where a service's stdout and stderr go: inherited from the
 * daemon, /dev/null, or appended to a file in the log directory
 * (LOG_DIR/NAME.stdout.log, LOG_DIR/NAME.stderr.log). stdin is /dev/null.
 */
#ifndef EVMON_OUTPUT_H
#define EVMON_OUTPUT_H

#include "config.h"

#include <evmon.h>
#include <stddef.h>

struct svc_output {
	int fd[2]; /* open log files for stdout, stderr; -1 when not logged */
};

void output_init(struct svc_output *o);

/* Open what c asks for. Returns 0, or -errno with a message in err. */
int output_open(struct svc_output *o, const struct svc_conf *c, const char *name,
		const char *log_dir, char *err, size_t errlen);

/* The stdio slots of the spawn options (the fds stay ours: keep them open). */
void output_stdio(const struct svc_output *o, const struct svc_conf *c, struct evm_stdio stdio[3]);

/*
 * Reopen the log files under their names (after logrotate moved them),
 * keeping the fd numbers the service was created with. Returns 0 or -errno.
 */
int output_reopen(struct svc_output *o, const char *name, const char *log_dir, char *err,
		  size_t errlen);

void output_close(struct svc_output *o);

#endif
