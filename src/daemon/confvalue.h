/*
 * confvalue.h - the value grammars of the daemon's configuration
 * (confvalue.c): booleans, counts, sizes, exit code lists, restart
 * policies, output modes, umasks, adjustments, cgroup limits, resource
 * limits. Each reads one value and says yes or no; what a key does with
 * it, and the message when it is wrong, are confkeys.c's. Durations are
 * cli_parse_duration's (duration.c), shared with init.
 */
#ifndef EVMON_CONFVALUE_H
#define EVMON_CONFVALUE_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

/* true/yes/on/1, false/no/off/0 (any case) */
bool conf_parse_bool(const char *s, bool *out);
/* Decimal digits only, at most max. */
bool conf_parse_uint(const char *s, unsigned long max, unsigned long *out);
/* "65536", "64k", "4M", "1G" -> bytes (at most 1 TiB) */
bool conf_parse_size(const char *s, size_t *out);
/* "0, 2" -> a bitmap of exit codes 0-255; at least one. */
bool conf_parse_codes(const char *s, uint64_t codes[4]);
/* on-failure[:N], always, never/no, unless-stopped into p (:N sets max_retries). */
bool conf_parse_restart(const char *s, struct svc_policy *p);
/* inherit, null, log, console; and stdout when is_stderr. */
bool conf_parse_output(const char *s, bool is_stderr, enum out_mode *m);
/* An octal file mode mask, 0-0777. */
bool conf_parse_umask(const char *s, mode_t *out);
/* A whole number from lo to hi (may be negative). */
bool conf_parse_int(const char *s, long lo, long hi, int *out);
/* auto, yes, no */
bool conf_parse_cgroup_mode(const char *s, enum cgroup_mode *out);
/*
 * A cgroup limit (which: enum evm_cgroup_limit) in the kernel's syntax:
 * bytes with K, M, G or max; a count or max; a weight 1-10000; cpu.max's
 * "max" or "QUOTA PERIOD". what: how to say the expected form.
 */
bool conf_parse_cgroup_limit(const char *s, unsigned which, const char **what);
/*
 * The resource of limit_NAME (NAME: nofile, core, ...): its RLIMIT_*, or
 * -1. The names: CONF_RLIMIT_NAMES, for messages.
 */
int conf_rlimit_resource(const char *name);
#define CONF_RLIMIT_NAMES "as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, " \
	"nproc, rss, rtprio, rttime, sigpending, stack"
/* N or SOFT:HARD, each a size (k, M, G) or infinity/unlimited; SOFT <= HARD. */
bool conf_parse_rlimit(const char *s, struct rlimit *out);

#endif
