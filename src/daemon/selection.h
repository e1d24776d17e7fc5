/*
 * selection.h - the services a control request names (selection.c).
 */
#ifndef EVMON_SELECTION_H
#define EVMON_SELECTION_H

#include "daemon.h"

/* Names with a wildcard in one request: each is a walk of every service. */
#define SELECTION_MAX_GLOBS 64
/* Names of one events subscription, kept for as long as it stays. */
#define SUBSCRIBE_MAX_NAMES 1024

struct selection {
	struct unit **u; /* free(u) when done */
	size_t n, cap;
};

/* The patterns of a request: "names": [...] or "name": "..." (*out to free; its strings are req's). */
int selection_patterns(const cJSON *req, const char ***out, size_t *n);

/*
 * Resolve a request's names: an exact service name, the NAME of a definition
 * with instances (all of them), or a glob ("web:*", "*"). Every name must
 * match something. No names: all services if all_if_none, else an error.
 * 0, or -1 after replying the error to cl.
 */
int selection_get(struct daemon *d, struct client *cl, const cJSON *req, bool all_if_none,
		  struct selection *sel);

#endif
