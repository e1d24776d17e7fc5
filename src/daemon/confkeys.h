/*
 * confkeys.h - the keys of the daemon's configuration: one table that says
 * for each key its section, how its value is read (a grammar of
 * confvalue.c) and where it goes, and applying a section's keys
 * (confkeys.c); the checks of a service once all its keys are known
 * (confcheck.c). config.c feeds it from two sources: the sections of a
 * file and the key/value pairs of `evmon ctl add`.
 */
#ifndef EVMON_CONFKEYS_H
#define EVMON_CONFKEYS_H

#include "config.h"

/* log_max_bytes's least (but 0): a file smaller than a line rotates at each line */
#define CONF_LOG_MIN_BYTES 4096

/* One key = value, with the line it is on (0: not from a file). */
struct conf_pair {
	const char *key;
	const char *value;
	int line;
	size_t vlen, vcap; /* confread.c: value's length and room while lines join */
};

enum conf_key {
	CK_RESTART, CK_EXIT_CODES, CK_START_SECS, CK_START_RETRIES, CK_BACKOFF_INITIAL,
	CK_BACKOFF_MAX, CK_BACKOFF_JITTER, CK_STABLE_SECS, CK_MAX_RETRIES, CK_STOP_SIGNAL,
	CK_STOP_TIMEOUT, CK_KILL_GROUP, CK_KILL_MODE, CK_TRACK, CK_PIDFILE, CK_AUTOSTART, CK_ADOPT, CK_UMASK, CK_STDOUT,
	CK_STDERR,
	CK_LOG_MAX_BYTES, CK_LOG_BACKUPS, CK_LOG_TIMESTAMPS,
	CK_COMMAND, CK_ENVIRONMENT, CK_DIRECTORY, CK_USER, CK_GROUP, CK_INSTANCES,
	CK_REQUIRES, CK_AFTER, CK_ESSENTIAL,
	CK_ENV_FILE, CK_NICE, CK_OOM_SCORE_ADJ, CK_RLIMIT, /* limit_*: a family, one row */
	CK_READY, CK_READY_TIMEOUT, CK_READY_INTERVAL, CK_READY_CHECK_TIMEOUT, CK_WATCHDOG_SEC,
	CK_SOCKET, CK_LOG_DIR, CK_MAX_CLIENTS, CK_CLIENT_BUFFER, CK_IDLE_TIMEOUT, CK_EVENTS_BUFFER_TOTAL,
	CK_CGROUP, CK_METRICS_LISTEN, CK_CONSOLE_PREFIX, CK_SHUTDOWN_TIMEOUT,
	CK_MEMORY_MAX, CK_MEMORY_HIGH, CK_PIDS_MAX, CK_CPU_WEIGHT, CK_CPU_MAX, CK_IO_WEIGHT,
	CK_HEALTH_CMD, CK_HEALTH_INTERVAL, CK_HEALTH_TIMEOUT, CK_HEALTH_RETRIES,
	CK_HEALTH_START_PERIOD, CK_HEALTH_START_INTERVAL, CK_HEALTH_ACTION, CK_RELOAD_SIGNAL,
	CK_HEALTH_TCP, CK_HEALTH_HTTP,
	CK_COUNT
};

/* Where the keys of one section go, and what was seen of them. */
struct conf_ctx {
	const char *file;	 /* for messages */
	const char *base;	 /* directory for relative paths, or NULL */
	struct errlist *errs;
	struct errlist *problems; /* environment problems (or NULL: mistakes, in errs) */
	struct errlist *notes;	  /* warnings: a check's missing program, a variable the daemon
				   * sets (or NULL: not said) */
	struct svc_policy *pol;	 /* the service's, or [evmon]'s defaults */
	struct svc_conf *svc;	 /* NULL in [evmon] */
	struct config *cfg;	 /* [evmon] only */
	bool seen[CK_COUNT];	 /* given in this section (maybe with a bad value) */
	int line_of[CK_COUNT];	 /* and on which line (0: not from a file) */
	int line;		 /* of the key being read or checked, for messages */
	const char *key;
};

/*
 * Every pair, in order, into the section c is set up for (seen and line_of
 * are reset first). A repeated key is a mistake and is not applied.
 */
void conf_apply(struct conf_ctx *c, const struct conf_pair *kv, size_t n);

/*
 * A mistake in the value of the key being read (c->key at c->line):
 * "KEY: message" into c->errs.
 */
void conf_bad(struct conf_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* p relative to base (a config file's directory; NULL: as is), malloc'ed. */
char *conf_abs_path(const char *base, const char *p);

/*
 * What can only be checked with every key of service s known; line: its
 * section's (confcheck.c).
 */
void conf_check_service(struct conf_ctx *c, struct svc_conf *s, const char *log_dir, int line);

/*
 * Look s's user and group up again (a service whose ids_unresolved): 0 with
 * s's uid, gid and groups set, or -ENOENT with the reason in msg.
 */
int conf_resolve_ids(struct svc_conf *s, char *msg, size_t len);

void conf_default_policy(struct svc_policy *p);
struct svc_conf *conf_service_new(const char *name, const struct svc_policy *defaults, int line);

/* The name of key k as written in a file (for tests and documentation checks). */
const char *conf_key_name(enum conf_key k);

/* Is name[0..len) a key of the configuration (include too)? */
bool conf_is_key(const char *name, size_t len);

#endif
