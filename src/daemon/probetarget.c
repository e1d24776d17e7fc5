/*
 * probetarget.c - what a health probe connects to, from health_tcp's
 * HOST:PORT and health_http's http://HOST[:PORT][/PATH] (probe.h): numeric
 * addresses or localhost only (no name is resolved), the HTTP request made
 * once, at the config's reading.
 */
#include "probe.h"

#include "listenaddr.h"

#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *probe_kind_name(enum probe_kind k)
{
	return k == PROBE_TCP ? "tcp" : k == PROBE_HTTP ? "http" : NULL;
}

void probe_target_free(struct probe_target *t)
{
	free(t->text);
	free(t->request);
	memset(t, 0, sizeof(*t));
}

bool probe_target_eq(const struct probe_target *a, const struct probe_target *b)
{
	return a->kind == b->kind && (a->kind == PROBE_NONE || !strcmp(a->text, b->text));
}

/*
 * HOST:PORT (HOST numeric, [IPv6] or localhost) into t->addr; want_port:
 * the port may be left out (http: 80). 0, or -1 with err.
 */
static int parse_hostport(const char *s, size_t n, unsigned default_port, struct probe_target *t,
			  char *err, size_t errlen)
{
	char hp[128];
	if (n == 0 || n >= sizeof(hp) - 8) {
		snprintf(err, errlen, "'%.*s' is not HOST:PORT", (int)n, s);
		return -1;
	}
	memcpy(hp, s, n);
	hp[n] = '\0';
	const char *close_br = hp[0] == '[' ? strchr(hp, ']') : NULL;
	const char *colon = close_br ? (close_br[1] == ':' ? close_br + 1 : NULL) : strrchr(hp, ':');
	if (!close_br && colon && strchr(hp, ':') != colon) {
		snprintf(err, errlen, "'%s': write an IPv6 address in brackets ([::1]:8080)", hp);
		return -1;
	}
	if (!colon) {
		if (!default_port || (close_br && close_br[1])) {
			snprintf(err, errlen, "'%s' is not HOST:PORT (e.g. 127.0.0.1:5432 or [::1]:5432)", hp);
			return -1;
		}
		snprintf(hp + n, sizeof(hp) - n, ":%u", default_port);
		colon = hp + n;
	}
	const char *port = colon + 1;
	if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    atoi(port) < 1 || atoi(port) > 65535) {
		snprintf(err, errlen, "'%s': the port must be a number from 1 to 65535", port);
		return -1;
	}
	size_t hl = (size_t)(colon - hp);
	if (hl == strlen("localhost") && !strncasecmp(hp, "localhost", hl)) {
		struct sockaddr_in *a = (struct sockaddr_in *)&t->addr;
		memset(&t->addr, 0, sizeof(t->addr));
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)atoi(port));
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		t->addrlen = sizeof(*a);
		return 0;
	}
	/* a name: not resolved (no DNS in the loop) */
	bool name = false;
	for (size_t i = 0; i < hl && !close_br; i++)
		if (isalpha((unsigned char)hp[i]))
			name = true;
	if (name) {
		snprintf(err, errlen, "'%.*s' is a host name: evmon resolves no names; write a numeric "
			 "address (127.0.0.1, [::1]) or localhost", (int)hl, hp);
		return -1;
	}
	char why[200];
	if (listen_addr_parse(hp, &t->addr, &t->addrlen, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	return 0;
}

int probe_target_parse(enum probe_kind kind, const char *text, struct probe_target *t, char *err,
		       size_t errlen)
{
	memset(t, 0, sizeof(*t));
	const char *auth = text, *end = text + strlen(text), *path = "/";
	if (kind == PROBE_HTTP) {
		if (!strncasecmp(text, "https://", 8)) {
			snprintf(err, errlen, "https is not supported (no TLS in the daemon): probe the port "
				 "with health_tcp, or run a client with health_cmd");
			return -1;
		}
		if (strncasecmp(text, "http://", 7)) {
			snprintf(err, errlen, "'%s' is not http://HOST[:PORT][/PATH]", text);
			return -1;
		}
		auth = text + 7;
		const char *slash = strchr(auth, '/');
		if (slash) {
			path = slash;
			end = slash;
		}
		if (memchr(auth, '@', (size_t)(end - auth))) {
			snprintf(err, errlen, "'%s': no user name or password in the URL", text);
			return -1;
		}
		for (const char *c = path; *c; c++)
			if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
				snprintf(err, errlen, "the path has a space or a control or non-ASCII "
					 "character: write it %%-encoded");
				return -1;
			}
	} else if (kind != PROBE_TCP) {
		snprintf(err, errlen, "no such probe");
		return -1;
	}
	if (parse_hostport(auth, (size_t)(end - auth), kind == PROBE_HTTP ? 80 : 0, t, err, errlen) < 0)
		return -1;
	t->kind = kind;
	t->text = strdup(text);
	if (t->text && kind == PROBE_HTTP) {
		int n = (int)(end - auth);
		size_t len = strlen(path) + (size_t)n + 128;
		if ((t->request = malloc(len)))
			snprintf(t->request, len,
				 "GET %s HTTP/1.0\r\nHost: %.*s\r\nUser-Agent: evmon/%s\r\n"
				 "Accept: */*\r\nConnection: close\r\n\r\n",
				 path, n, auth, evm_version());
	}
	if (!t->text || (kind == PROBE_HTTP && !t->request)) {
		probe_target_free(t);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

