/*
 * logtail.h - `evmon ctl logs`: the last lines of a log file, then (with
 * follow) everything appended to it, streamed raw to a control client.
 */
#ifndef EVMON_LOGTAIL_H
#define EVMON_LOGTAIL_H

#include "control.h"
#include "logfile.h"

#include <stdbool.h>
#include <stddef.h>

struct logtail;

/*
 * Find the last `lines` lines of f (in its backups too when the file has
 * fewer). Returns 0 and *out, or -errno with the reason in err (nothing
 * has been sent: reply with the error).
 */
int logtail_open(struct logfile *f, unsigned long lines, bool follow, struct logtail **out,
		 char *err, size_t errlen);

/*
 * After the reply: stream to cl, which is switched to raw bytes. t then
 * belongs to the connection and is freed when it closes.
 */
void logtail_start(struct logtail *t, struct client *cl);

/* Free a tail that was not started. */
void logtail_free(struct logtail *t);

#endif
