/*
 * waits.h - start, stop, restart and add with "wait" (waits.c): the reply
 * is deferred until every selected service has settled, or the wait's
 * timeout.
 */
#ifndef EVMON_WAITS_H
#define EVMON_WAITS_H

#include "cjson.h"
#include "control.h"

#include <stdbool.h>
#include <stddef.h>

struct daemon;
struct unit;

enum wait_kind { W_START, W_STOP, W_RELOAD };

/* A unit as it was when the request began (its counters only move forward). */
struct wait_entry {
	char *name;
	unsigned transitions;
	unsigned starts;
	unsigned spawn_failures;
	unsigned reload_failures;
	unsigned stops_undone;
	unsigned starts_undone;
	bool was_active; /* starting or running */
};

/* The snapshot of u for a wait; a restart never counts as already running. */
struct wait_entry wait_snapshot(const struct unit *u, bool restart);

/*
 * Before the action of a request that may say "wait": its "wait" and
 * "timeout" are valid, and a wait has a slot among the connections that
 * stay (control_lasting: one waiting up to its timeout holds its connection
 * as long as a subscriber). 0, or -1 with the error replied and nothing done.
 */
int waits_check(struct client *cl, const cJSON *req);

/*
 * Reply to cl now with the status of units (and errors, taken: the failures
 * of the request itself; and warnings, taken, or NULL: strings the reply
 * carries as "warnings" when there are any), or, if req says "wait", once
 * they have settled. snap[i] is units[i] before the request.
 */
void waits_reply(struct daemon *d, struct client *cl, const cJSON *req, enum wait_kind kind,
		 struct unit **units, size_t n, const struct wait_entry *snap, cJSON *errors,
		 cJSON *warnings);

/* After any change of state: answer the waits that are over. */
void waiters_check(struct daemon *d);
/* Answer every wait now (shutting down). */
void waiters_finish(struct daemon *d);

#endif
