/*
 * confsetdaemon.c - setters of the keys only [evmon] has: the console
 * prefix, the metrics address and the cgroup mode (see confset.h).
 */
#include "confset.h"
#include "confvalue.h"

#include "listenaddr.h"

#include <stdlib.h>
#include <string.h>

/* Text; in double quotes to keep spaces at its ends ("{name} | "). */
void conf_set_prefix(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char **p = field;
	size_t n = strlen(v);
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	if (n > OUT_PREFIX_MAX) {
		conf_bad(c, "longer than %d bytes", OUT_PREFIX_MAX);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
			conf_bad(c, "control characters are not allowed");
			return;
		}
	free(*p);
	*p = strndup(v, n);
}

/* ADDR:PORT, checked now: the daemon binds it at start. */
void conf_set_listen(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char **p = field, err[200];
	struct sockaddr_storage ss;
	socklen_t len;
	if (listen_addr_parse(v, &ss, &len, err, sizeof(err)) < 0) {
		conf_bad(c, "%s", err);
		return;
	}
	free(*p);
	*p = strdup(v);
}

void conf_set_cgroup_mode(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_cgroup_mode(v, field))
		conf_bad(c, "'%s' is not one of auto, yes, no", v);
}
