/*
 * config.h - the daemon's configuration: an INI file (libinih) turned into
 * validated service definitions.
 *
 *   [evmon]            socket, log_dir, max_clients, client_buffer, and
 *                      defaults for the policy keys
 *   [service:NAME]     command (required), directory, environment, user,
 *                      group, instances, and the policy keys
 *
 * A definition with instances = N > 1 stands for N services NAME:0..N-1
 * sharing one struct svc_conf.
 */
#ifndef EVMON_CONFIG_H
#define EVMON_CONFIG_H

#include "errlist.h"
#include "hashmap.h"
#include "probe.h"

#include <evmon.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Where a stream goes. OUT_STDOUT is for stderr only: wherever stdout goes, merged. */
enum out_mode { OUT_INHERIT = 0, OUT_NULL, OUT_LOG, OUT_STDOUT, OUT_CONSOLE };

#define OUT_PREFIX_MAX 64 /* console_prefix, before {name} is replaced */

/* captured through a pipe the daemon reads (output.c) */
#define OUT_CAPTURED(m) ((m) == OUT_LOG || (m) == OUT_CONSOLE)

/* What [evmon] may default for every service. */
struct svc_policy {
	enum evm_restart restart;
	unsigned set;		   /* EVM_SVC_* set explicitly (even when 0) */
	unsigned max_retries;
	uint64_t codes[4];	   /* success exit codes 0-255, a bitmap */
	bool codes_set;		   /* else the library default {0} */
	uint64_t start_ms;
	unsigned start_retries;
	uint64_t backoff_initial_ms;
	uint64_t backoff_max_ms;
	unsigned backoff_jitter;
	uint64_t stable_ms;
	int stop_signal;	   /* 0: library default */
	int reload_signal;	   /* ctl reload NAME; 0: SIGHUP */
	uint64_t stop_timeout_ms;
	enum evm_kill_mode kill_mode; /* AUTO (unset): tree */
	enum evm_track track;	   /* AUTO (unset): tree (as main without a cgroup) */
	bool autostart;
	bool adopt;		   /* taken over by a daemon started after a crash (state.h) */
	bool set_umask;
	mode_t umask;
	enum out_mode out[2];	   /* stdout, stderr */
	/* the log files (output.c); applied to running services, never restart them */
	uint64_t log_max_bytes;	   /* rotate beyond this; 0: never */
	unsigned log_backups;	   /* NAME.log.1 .. .N kept; 0: truncate instead */
	bool log_timestamps;	   /* prefix each line with an RFC 3339 time */
};

/* What an unhealthy service gets (health.h). */
enum health_action { HEALTH_ACTION_NONE = 0, HEALTH_ACTION_RESTART, HEALTH_ACTION_STOP };

/* health_* keys: Docker's HEALTHCHECK (health.c); applied to a running service in place */
struct health_conf {
	char **argv;		  /* health_cmd, split like command (one block), or NULL */
	struct probe_target probe; /* health_tcp, health_http (probe.h), or kind PROBE_NONE */
	uint64_t interval_ms;	  /* from the end of a check to the next one */
	uint64_t timeout_ms;	  /* a check running longer is killed (its process group) and fails */
	uint64_t start_period_ms; /* failures this long after the start do not count, until a success */
	uint64_t start_interval_ms; /* the interval while starting in the start period; 0: default */
	unsigned retries;	  /* failures in a row that make it unhealthy */
	enum health_action action;
};

#define HEALTH_DEFAULT_INTERVAL_MS 30000 /* Docker's defaults */
#define HEALTH_DEFAULT_TIMEOUT_MS 30000
#define HEALTH_DEFAULT_RETRIES 3
#define HEALTH_DEFAULT_START_INTERVAL_MS 5000 /* Docker 25's, or health_interval if shorter */

struct svc_conf {
	unsigned refs;
	char *name;		/* NAME of [service:NAME] (or of `ctl add`) */
	int line;		/* line of its section, 0 when added at run time */
	char *file;		/* the included file its section is in, or NULL: the config's */
	unsigned instances;	/* 1: one service called NAME; N: NAME:0..N-1 */
	char **argv;		/* one block (cli_split) */
	char **env;		/* KEY=VALUE overrides (env_file's merged in), one block, or NULL */
	char **env_files;	/* env_file's words ("-PATH": may be missing), one block, or NULL */
	struct evm_rlimit *rlimits; /* limit_* keys, in the order given, or NULL */
	size_t nrlimits;
	bool set_nice, set_oom;
	int nice, oom_score_adj;
	char *directory;	/* absolute, or NULL */
	char *pidfile;		/* absolute, or NULL: a forking daemon's (evm_track) */
	char *user;		/* as written, or NULL */
	char *group;		/* as written, or NULL */
	char *limits[EVM_CGROUP_IO_WEIGHT + 1]; /* by enum evm_cgroup_limit: memory_max ..., or NULL */
	bool set_uid, set_gid;
	uid_t uid;
	gid_t gid;
	gid_t *groups;		/* supplementary groups when set_uid/set_gid */
	size_t ngroups;
	/* a daemon not root asked for its own uid, gid and groups: nothing to set (it could not) */
	bool ids_own;
	struct svc_policy pol;
	/* dependencies (deps.c): words "NAME", "NAME:ready", "NAME:healthy" (requires), "NAME" (after) */
	char **requires;	/* start these first, and wait until they are ready */
	char **after;		/* ordering only: if they start too, after they are ready */
	int dep_line[2];	/* lines of requires and after (0: not from a file) */
	/*
	 * The first environment problem found when the file was read ("user:
	 * unknown user 'www'"), or NULL. ids_unresolved: user or group could
	 * not be looked up; they are again before each spawn (units.c).
	 */
	char *problem;
	bool ids_unresolved;
	/* state_ident's hash of the strings above (fixed once built), 0 until computed */
	uint64_t ident_strings;
	enum essential { ESS_NO, ESS_FAIL, ESS_EXIT } essential; /* its end ends the daemon */
	struct health_conf health;
	/* readiness (ready.h): STARTING until the sign, RUNNING after */
	enum ready_kind { READY_STARTED = 0, READY_NOTIFY, READY_FD, READY_EXEC } ready;
	int ready_fd;		/* fd:N */
	char **ready_check;	/* exec:COMMAND, one block (cli_split), or NULL */
	uint64_t ready_timeout_ms; /* not ready by then: a failed start; 0: no limit */
	uint64_t ready_interval_ms; /* exec: between two checks */
	uint64_t ready_check_timeout_ms; /* exec: a check running longer is killed */
	uint64_t watchdog_ms;	/* notify: WATCHDOG=1 at least this often; 0: none */
	char *added_def;	/* `ctl add`: its "service" object as JSON (the state record's), or NULL */
	struct hnode node;	/* by name, while its file is read */
};

#define CONFIG_IDLE_TIMEOUT_MS 10000 /* idle_timeout's default */
#define READY_TIMEOUT_DEFAULT_MS 90000 /* systemd's TimeoutStartSec= */
#define READY_INTERVAL_DEFAULT_MS 1000
#define READY_CHECK_TIMEOUT_DEFAULT_MS 5000

/* [evmon] cgroup: a cgroup v2 per service (cgroups.h) */
enum cgroup_mode { CGROUP_AUTO = 0, CGROUP_YES, CGROUP_NO };

struct config {
	char *path;
	char *dir;		/* directory of path: base of relative paths */
	char *socket;		/* absolute, or NULL */
	char *log_dir;		/* absolute, or NULL */
	unsigned max_clients;	/* control connections at once; 0: default */
	size_t client_buffer;	/* unread event bytes before a client is dropped; 0: default */
	size_t events_buffer_total; /* unread event bytes of all clients together; 0: default */
	uint64_t idle_timeout_ms; /* a connection with no request for this long closes; 0: never */
	enum cgroup_mode cgroup; /* per-service cgroups: when possible, required, never */
	char *metrics_listen;	/* "ADDR:PORT" of the metrics endpoint, or NULL */
	uint64_t shutdown_timeout_ms; /* the whole shutdown; past it every service gets SIGKILL; 0: none */
	char *console_prefix;	/* before each line of stdout/stderr = console; NULL: "{name} | " */
	struct svc_policy defaults;
	struct svc_conf **svcs; /* in file order */
	size_t nsvcs;
	size_t ninstances;	/* services once instances are expanded */
	/*
	 * Environment problems ("FILE:LINE: ..."): a missing program or
	 * directory, an unknown user or group. Not mistakes: those services
	 * start in a failed state, the others normally.
	 */
	struct errlist problems;
	/*
	 * Programs the checks run (health_cmd, ready = exec:) that are not
	 * there: the service runs, its checks will fail. Values that are not
	 * used (a variable the daemon sets, a health key without a check).
	 * Said as warnings (--strict: mistakes).
	 */
	struct errlist notes;
};

/* A key = value pair, for definitions that do not come from a file (ctl add). */
struct conf_kv {
	const char *key;
	const char *value;
};

/*
 * Read and validate path. Returns 0 and a config the caller owns, or -1 with
 * every mistake in errs ("file:line: message").
 */
int config_load(const char *path, struct config **out, struct errlist *errs);
void config_free(struct config *cfg);

/*
 * Build one service definition from key/value pairs, with cfg's defaults,
 * log_dir and base directory (cfg may be NULL). "where" names the source
 * in messages. Returns NULL with the mistakes in errs; warnings (a
 * check's program missing, a variable the daemon sets) go to notes, or are
 * not said if notes is NULL.
 */
struct svc_conf *config_service(const struct config *cfg, const char *name, const struct conf_kv *kv,
				size_t nkv, const char *where, struct errlist *errs,
				struct errlist *notes);

/* True when two definitions are the same (but for the log_* keys, which apply live). */
bool svc_conf_equal(const struct svc_conf *a, const struct svc_conf *b);
/*
 * True when they would start the same process the same way (command,
 * environment, directory, user, group, umask, stdout/stderr, kill_mode):
 * then the rest (the policy keys) can change without a restart.
 */
bool svc_conf_same_run(const struct svc_conf *a, const struct svc_conf *b);

struct svc_conf *svc_conf_ref(struct svc_conf *c);
void svc_conf_unref(struct svc_conf *c);

/* Is name usable as a service name (letters, digits, _ . @ -; 1-128 bytes)? */
bool config_valid_name(const char *name);
/*
 * Why a valid name cannot be a service's, or NULL: it would share a file
 * with another service (its cgroup, its log).
 */
const char *config_reserved_name(const char *name);

/* Fill the service options for instance i of c (argv, env, policy...). */
struct svc_build {
	struct evm_service_opts opts;
	char *name;	    /* NAME or NAME:i */
	char **env;	    /* environment overrides (spawn.env_extra), or NULL */
	int codes[256];
};
int config_build(const struct svc_conf *c, unsigned instance, struct svc_build *b);
/*
 * The same for a check of the service (check: "health", "ready"), which has
 * EVMON_CHECK=check too: a re-exec tells the checks under way, which it ends,
 * from the service's processes, which it keeps (takeover.c end_strays).
 */
int config_build_check(const struct svc_conf *c, unsigned instance, const char *check,
		       struct svc_build *b);
void config_build_free(struct svc_build *b);

/*
 * The dependencies of every service of cfg (confdeps.c): unknown names, a
 * service that names itself, conditions other than :ready, and cycles
 * (through requires and after) are mistakes, at the line of the key.
 */
void config_check_deps(const struct config *cfg, struct errlist *errs);
/* "db:ready", "db:healthy" -> 2 (the length of the name); -1 if the condition is unknown. */
int config_dep_name_len(const char *word, bool after);
/* The condition of a requires word: "ready" (the default) or "healthy" */
const char *config_dep_cond(const char *word);
/* Why a requires (after: false) or after word is not one config_dep_name_len takes. */
const char *config_dep_word_error(const char *word, bool after);

/* "on-failure" etc. */
const char *config_restart_name(enum evm_restart r);

#endif
