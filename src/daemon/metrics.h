/*
 * metrics.h - the daemon's metrics, in the Prometheus text format:
 * rendered by metrics.c (`evmon ctl metrics`, the endpoint's body) and
 * served over HTTP on metrics_listen by metricshttp.c, from the loop.
 */
#ifndef EVMON_METRICS_H
#define EVMON_METRICS_H

#include <evmon.h>
#include <stddef.h>
#include <sys/types.h>

struct daemon;
struct metrics_http;

/*
 * The exposition text, built in pieces as it is read (the HTTP endpoint,
 * `ctl metrics`): each
 * read takes at most a bounded number of services, so no loop iteration
 * holds the whole scrape. metrics_scrape_read gives the next bytes (at
 * most max; 0 at the end, -1 out of memory).
 */
struct metrics_scrape;
struct unit;
struct metrics_scrape *metrics_scrape_new(struct daemon *d);
ssize_t metrics_scrape_read(struct metrics_scrape *s, char *buf, size_t max);
void metrics_scrape_free(struct metrics_scrape *s);
/* u is about to be freed: scrapes under way move past it. */
void metrics_unit_gone(struct unit *u);

/* Answer `ctl metrics` on cl: the same text as JSON lines, in pieces (metricsctl.c). */
struct client;
void metrics_ctl_reply(struct daemon *d, struct client *cl);

/*
 * Serve GET /metrics on addr ("IPv4:PORT" or "[IPv6]:PORT"; port 0 picks
 * one) from d's loop: libmicrohttpd in its external-event-loop mode, no
 * thread. Returns 0, or -1 with a message in err.
 */
int metrics_http_open(struct daemon *d, const char *addr, struct metrics_http **out, char *err,
		      size_t errlen);
/* "127.0.0.1:9100", with the port actually bound. */
const char *metrics_http_address(const struct metrics_http *m);
void metrics_http_close(struct metrics_http *m);

#endif
