/*
 * spawnwhy.h - what an errno of a failed spawn hides, found by the daemon
 * after the library reported the failure (never in the child): a script
 * whose #! interpreter does not exist fails with ENOENT though the script
 * is there, one without #! with ENOEXEC, one without execute permission,
 * a directory or on a noexec mount with EACCES, a limit_nofile below 3 with
 * EBADF at stage stdio.
 */
#ifndef EVMON_SPAWNWHY_H
#define EVMON_SPAWNWHY_H

#include "config.h"

#include <evmon.h>
#include <stddef.h>

/* What a service of c needs to explain its failures, kept apart from c (which a reload frees). */
struct spawn_facts {
	char *prog;	  /* its program: a path, or a bare name searched in path; or NULL */
	char *path;	  /* its PATH for a bare name (NULL: the default search), searched
			   * only after a failure: nothing on the filesystem per service */
	long long nofile; /* its limit_nofile's soft limit, or -1 */
};

/* The facts of c (free with spawn_facts_free); all empty when NULL. */
void spawn_facts_of(const struct svc_conf *c, struct spawn_facts *f);
void spawn_facts_free(struct spawn_facts *f);

/*
 * Why a spawn failed at stage with error (-errno), beyond what strerror
 * says, into why ("its interpreter /x (#! line) does not exist"). False
 * (why "") when there is nothing more to say. Reads at most the first 256
 * bytes of a regular file, without blocking.
 */
bool spawn_why(const struct spawn_facts *f, enum evm_spawn_stage stage, int error, char *why,
	       size_t len);

/*
 * msg ("exec /x: No such file or directory; gave up ...") with " (why)" after
 * the strerror of error (at its end when msg lacks it), into out.
 */
void spawn_why_insert(const char *msg, int error, const char *why, char *out, size_t len);

#endif
