/*
 * confvalue.c - the value grammars of the daemon's configuration (see
 * confvalue.h). Pure functions of the text: no message, no side effect
 * beyond the out-parameters, so the key setters and the tests share them.
 */
#include "confvalue.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool conf_parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return true;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return true;
		}
	}
	return false;
}

bool conf_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

bool conf_parse_size(const char *s, size_t *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	if (*end == 'k' || *end == 'K')
		shift = 10;
	else if (*end == 'm' || *end == 'M')
		shift = 20;
	else if (*end == 'g' || *end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (errno || *end || v > (1ull << 40) >> shift)
		return false;
	*out = (size_t)(v << shift);
	return true;
}

bool conf_parse_codes(const char *s, uint64_t codes[4])
{
	memset(codes, 0, 4 * sizeof(codes[0]));
	char *dup = strdup(s), *save = NULL;
	bool any = false, ok = dup != NULL;
	for (char *t = dup ? strtok_r(dup, ", \t", &save) : NULL; t && ok;
	     t = strtok_r(NULL, ", \t", &save)) {
		unsigned long v;
		if (!conf_parse_uint(t, 255, &v))
			ok = false;
		else
			codes[v / 64] |= 1ull << (v % 64), any = true;
	}
	free(dup);
	return ok && any;
}

bool conf_parse_restart(const char *s, struct svc_policy *p)
{
	static const struct {
		const char *name;
		enum evm_restart r;
	} t[] = {{"on-failure", EVM_RESTART_ON_FAILURE}, {"always", EVM_RESTART_ALWAYS},
		 {"never", EVM_RESTART_NEVER},		 {"no", EVM_RESTART_NEVER},
		 {"unless-stopped", EVM_RESTART_UNLESS_STOPPED}};
	if (!strncmp(s, "on-failure:", 11)) {
		unsigned long n;
		if (!conf_parse_uint(s + 11, UINT_MAX, &n))
			return false;
		p->restart = EVM_RESTART_ON_FAILURE;
		p->max_retries = (unsigned)n;
		p->set |= EVM_SVC_MAX_RETRIES;
		return true;
	}
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (!strcmp(s, t[i].name)) {
			p->restart = t[i].r;
			return true;
		}
	}
	return false;
}

const char *config_restart_name(enum evm_restart r)
{
	switch (r) {
	case EVM_RESTART_ON_FAILURE: return "on-failure";
	case EVM_RESTART_ALWAYS: return "always";
	case EVM_RESTART_NEVER: return "never";
	case EVM_RESTART_UNLESS_STOPPED: return "unless-stopped";
	}
	return "?";
}

bool conf_parse_output(const char *s, bool is_stderr, enum out_mode *m)
{
	if (!strcmp(s, "inherit"))
		*m = OUT_INHERIT;
	else if (!strcmp(s, "null"))
		*m = OUT_NULL;
	else if (!strcmp(s, "log"))
		*m = OUT_LOG;
	else if (!strcmp(s, "console"))
		*m = OUT_CONSOLE;
	else if (is_stderr && !strcmp(s, "stdout"))
		*m = OUT_STDOUT;
	else
		return false;
	return true;
}

bool conf_parse_umask(const char *s, mode_t *out)
{
	char *end;
	errno = 0;
	unsigned long m = strtoul(s, &end, 8);
	*out = (mode_t)m;
	return *s && !*end && !errno && m <= 0777;
}

bool conf_parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long n = strtol(s, &end, 10);
	if (!*s || *end || errno || n < lo || n > hi)
		return false;
	*out = (int)n;
	return true;
}

bool conf_parse_cgroup_mode(const char *s, enum cgroup_mode *out)
{
	static const char *const names[] = {[CGROUP_AUTO] = "auto", [CGROUP_YES] = "yes",
					    [CGROUP_NO] = "no"};
	for (int i = 0; i < 3; i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum cgroup_mode)i;
			return true;
		}
	}
	return false;
}

/* "max" (*n UINT64_MAX) or a number, with K, M or G when units; false past 2^64 - 1 too. */
static bool limit_word(const char *v, bool units, const char **end, uint64_t *n)
{
	if (!strncmp(v, "max", 3)) {
		*end = v + 3;
		*n = UINT64_MAX;
		return true;
	}
	*end = v + strspn(v, "0123456789");
	if (*end == v)
		return false;
	uint64_t x = 0;
	for (const char *p = v; p < *end; p++) {
		if (x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return false; /* the kernel would refuse it at the start, not the check */
		x = x * 10 + (uint64_t)(*p - '0');
	}
	if (units && **end && strchr("KMG", **end)) {
		unsigned shift = **end == 'K' ? 10 : **end == 'M' ? 20 : 30;
		if (x > UINT64_MAX >> shift)
			return false;
		x <<= shift;
		(*end)++;
	}
	*n = x;
	return true;
}

bool conf_parse_cgroup_limit(const char *s, unsigned which, const char **what)
{
	static const char *const want[] = {
		[EVM_CGROUP_MEMORY_MAX] = "bytes (with K, M, G; under 16 EiB) or max",
		[EVM_CGROUP_MEMORY_HIGH] = "bytes (with K, M, G; under 16 EiB) or max",
		[EVM_CGROUP_PIDS_MAX] = "a number (under 2^63) or max",
		[EVM_CGROUP_CPU_WEIGHT] = "a weight from 1 to 10000",
		[EVM_CGROUP_CPU_MAX] = "max, or QUOTA PERIOD in microseconds (QUOTA max or 1000 to "
					"2^44 - 1, PERIOD 1000 to 1000000)",
		[EVM_CGROUP_IO_WEIGHT] = "a weight from 1 to 10000",
	};
	const char *e;
	uint64_t n, period;
	bool weight = which == EVM_CGROUP_CPU_WEIGHT || which == EVM_CGROUP_IO_WEIGHT;
	bool ok = limit_word(s, which <= EVM_CGROUP_MEMORY_HIGH, &e, &n);
	if (ok && which == EVM_CGROUP_PIDS_MAX)
		ok = n == UINT64_MAX || n <= INT64_MAX; /* the kernel's pids.max: an int64 */
	if (ok && which == EVM_CGROUP_CPU_MAX) {
		/* the kernel's bounds (cfs bandwidth): a quota of 1 ms to 2^44 - 1 us, a period of
		 * 1 ms to 1 s */
		ok = n == UINT64_MAX || (n >= 1000 && n < (1ull << 44));
		if (ok && *e == ' ') /* the period: a number */
			ok = limit_word(e + 1, false, &e, &period) && period != UINT64_MAX &&
			     period >= 1000 && period <= 1000000;
	}
	if (ok && weight)
		ok = n >= 1 && n <= 10000;
	*what = want[which];
	return ok && !*e;
}

static const struct {
	const char *name;
	int resource;
} rlimit_names[] = {
	{"as", RLIMIT_AS},	   {"core", RLIMIT_CORE},     {"cpu", RLIMIT_CPU},
	{"data", RLIMIT_DATA},	   {"fsize", RLIMIT_FSIZE},   {"locks", RLIMIT_LOCKS},
	{"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
	{"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC},   {"rss", RLIMIT_RSS},
	{"rtprio", RLIMIT_RTPRIO}, {"rttime", RLIMIT_RTTIME}, {"sigpending", RLIMIT_SIGPENDING},
	{"stack", RLIMIT_STACK},
};

int conf_rlimit_resource(const char *name)
{
	for (size_t i = 0; i < sizeof(rlimit_names) / sizeof(rlimit_names[0]); i++)
		if (!strcmp(rlimit_names[i].name, name))
			return rlimit_names[i].resource;
	return -1;
}

/* One side of SOFT:HARD (len bytes of s). */
static bool parse_rlim(const char *s, size_t len, rlim_t *out)
{
	char buf[32];
	size_t n;
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!strcmp(buf, "infinity") || !strcmp(buf, "unlimited")) {
		*out = RLIM_INFINITY;
		return true;
	}
	if (!conf_parse_size(buf, &n))
		return false;
	*out = (rlim_t)n;
	return true;
}

bool conf_parse_rlimit(const char *s, struct rlimit *rl)
{
	const char *colon = strchr(s, ':');
	const char *hard = colon ? colon + 1 : s;
	return parse_rlim(s, colon ? (size_t)(colon - s) : strlen(s), &rl->rlim_cur) &&
	       parse_rlim(hard, strlen(hard), &rl->rlim_max) && rl->rlim_cur <= rl->rlim_max;
}
