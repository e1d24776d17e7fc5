/*
 * listenaddr.c - parse "ADDR:PORT" (listenaddr.h).
 */
#include "listenaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_port(const char *s, unsigned *port)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > 65535)
		return false;
	*port = (unsigned)v;
	return true;
}

int listen_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
		      size_t errlen)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	unsigned port;
	memset(ss, 0, sizeof(*ss));
	if (!colon || !parse_port(colon + 1, &port)) {
		snprintf(err, errlen, "'%s' is not ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100)", s);
		return -1;
	}
	size_t hl = (size_t)(colon - s);
	bool v6 = hl >= 2 && s[0] == '[' && s[hl - 1] == ']';
	if (v6) {
		s++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host)) {
		snprintf(err, errlen, "'%.*s' is not a numeric IP address", (int)hl, s);
		return -1;
	}
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) == 1) {
			*len = sizeof(*a);
			return 0;
		}
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) == 1) {
			*len = sizeof(*a);
			return 0;
		}
	}
	snprintf(err, errlen, "'%s' is not a numeric IP%s address%s", host, v6 ? "v6" : "v4",
		 v6 || !strchr(host, ':') ? "" : " (write an IPv6 address in brackets: [::1]:9100)");
	return -1;
}
