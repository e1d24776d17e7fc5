/*
 * listenaddr.h - "ADDR:PORT" for a TCP listener (metrics_listen): a numeric
 * IPv4 address, or an IPv6 one in brackets, and a port (0: any free one).
 * No names: nothing to resolve, so the config check and the bind agree.
 */
#ifndef EVMON_LISTENADDR_H
#define EVMON_LISTENADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* 0 and the address in *ss (*len bytes), or -1 with the reason in err. */
int listen_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
		      size_t errlen);

#endif
