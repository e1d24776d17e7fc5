/*
 * show.h - how `evmon ctl` shows the daemon's answers (show.c): the status
 * table, a line per service, name lists, and failures on stderr. Nothing
 * here trusts the answer's shape: a missing or odd field prints "?" or
 * nothing, never a made-up value.
 */
#ifndef EVMON_SHOW_H
#define EVMON_SHOW_H

#include "cjson.h"

/* Print what a successful answer says; returns the exit code (0). */
typedef int (*show_fn)(const cJSON *resp);

int show_status(const cJSON *resp);   /* the table of "services" */
/* Each service's last health check and its output (status NAME). */
void show_health_checks(const cJSON *resp);
int show_services(const cJSON *resp); /* "web: running, pid 42" per service */
int show_reload(const cJSON *resp);
int show_signal(const cJSON *resp);
int show_removed(const cJSON *resp);
int show_ping(const cJSON *resp);
int show_reexec(const cJSON *resp);
int show_metrics(const cJSON *resp);
int show_reopened(const cJSON *resp);

/*
 * The daemon said no. When it acted on some services anyway (a start that
 * ended fatal, a signal some could not get) show prints what it did;
 * when it refused the request, only the error is printed. Returns 1.
 */
int show_failure(const cJSON *resp, show_fn show);

#endif
