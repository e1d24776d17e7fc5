/*
 * probe.h - health probes the daemon runs itself, in its loop, without a
 * process (probe.c): health_tcp (a TCP connection is accepted) and
 * health_http (an HTTP/1.0 GET is answered with a 2xx or 3xx status line),
 * like Kubernetes' tcpSocket and httpGet probes. A process per check costs
 * ~115 us of CPU here before any monitor code (the bare clone+exec+wait);
 * a probe is a socket, a connect and a few reads.
 *
 * Addresses are numeric (IPv4, [IPv6]) or localhost (127.0.0.1): nothing is
 * resolved, so a probe never blocks the loop on DNS; a host name is a
 * config error.
 */
#ifndef EVMON_PROBE_H
#define EVMON_PROBE_H

#include <evmon.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum probe_kind { PROBE_NONE = 0, PROBE_TCP, PROBE_HTTP };

/* What a probe connects to, parsed from the config (valid when zeroed: no probe). */
struct probe_target {
	enum probe_kind kind;
	char *text;		/* the value as written: "127.0.0.1:5432", "http://[::1]:80/h" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char *request;		/* PROBE_HTTP: the request sent, NUL-terminated */
};

#define PROBE_OUTPUT_MAX 4096 /* bytes of a response kept (and read at most) */

/*
 * Parse text (health_tcp's HOST:PORT, health_http's http://HOST[:PORT][/PATH])
 * into t. 0, or -1 with the reason in err (t is then left empty).
 */
int probe_target_parse(enum probe_kind kind, const char *text, struct probe_target *t, char *err,
		       size_t errlen);
void probe_target_free(struct probe_target *t);
bool probe_target_eq(const struct probe_target *a, const struct probe_target *b);
/* "tcp", "http"; NULL for PROBE_NONE */
const char *probe_kind_name(enum probe_kind k);

struct probe_result {
	bool ok;
	bool timed_out;
	int http_status;	/* the status line's code, 0 when none was read */
	const char *output;	/* what to show: the response (HTTP) or what happened */
	size_t len;
	bool truncated;		/* the response was longer than PROBE_OUTPUT_MAX */
	uint64_t ms;		/* how long it took */
};

struct probe;
/* The probe's end; p is freed when this returns (do not cancel it). */
typedef void (*probe_done_cb)(struct probe *p, const struct probe_result *r, void *data);

/*
 * Start a probe of t on loop: done is called from the loop (never from
 * here) within timeout_ms. 0, or -errno (no socket or timer: nothing
 * started). Non-blocking, SOCK_CLOEXEC, no thread.
 */
int probe_start(struct evm_loop *loop, const struct probe_target *t, uint64_t timeout_ms,
		probe_done_cb done, void *data, struct probe **out);

/* Stop a probe under way: its socket is closed, done is not called. NULL: nothing. */
void probe_cancel(struct probe *p);

/* Free the ended probes kept for reuse (the daemon's end). */
void probe_spares_free(void);

#endif
