/*
 * events.h - what the daemon tells (events.c): its events as JSON records
 * (a service's exit and state change, an orphan, a library warning, a
 * problem with the logs, a reload), the status record of a service, the
 * one-line summary, and publishing.
 *
 * Publishing an event writes its line to the daemon's log at once and
 * sends the record to every `evmon ctl events` subscriber. While a request
 * is handled (events_hold .. events_release) that fan-out is queued, so
 * the request's reply is written before any event it caused.
 */
#ifndef EVMON_EVENTS_H
#define EVMON_EVENTS_H

#include "cjson.h"

#include <evmon.h>
#include <time.h>

struct daemon;
struct unit;
struct queued_event;

/* The fan-out waiting for the end of a request (in struct daemon). */
struct event_queue {
	struct queued_event *first, *last;
	unsigned hold;
};

/* The records of a library event: a service's exit and new state, an orphan, a warning. */
void events_from_library(struct daemon *d, const struct evm_event *ev);
/* A "log" event: a problem (error < 0) or recovery of the output of service (or NULL). */
void events_log(struct daemon *d, const char *service, const char *file, int error,
		const char *msg);
/* Log and send ev (takes it); "time" is added when missing. service NULL: for every subscriber. */
void events_publish(struct daemon *d, const char *service, cJSON *ev);

void events_hold(struct daemon *d);
void events_release(struct daemon *d); /* the queued fan-out goes out */
void events_free(struct daemon *d);    /* drop what is queued */

/* The status record of a service (`evmon ctl status`). */
cJSON *events_status(struct daemon *d, const struct unit *u);
/* "12 services: 10 running, 1 backoff, 1 fatal" (STATUS=, the reload line) */
void events_summary(struct daemon *d, char *buf, size_t len);
void events_add_time(cJSON *obj, const char *key, const struct timespec *ts);

#endif
