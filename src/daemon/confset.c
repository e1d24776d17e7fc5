/*
 * confset.c - setters of the kinds of value many keys share: durations,
 * counts, booleans, sizes, paths, names and lists of words (see confset.h).
 */
#include "confset.h"
#include "confvalue.h"

#include "argv.h"
#include "duration.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* v as a duration into *ms (above 0 if above0): true, or false after saying why */
static bool duration(struct conf_ctx *c, const char *v, bool above0, uint64_t *ms)
{
	int r = cli_parse_duration(v, ms);
	if (r == -ERANGE)
		conf_bad(c, "'%s' is too long a duration (at most %llu s, about 317 years)", v,
			 (unsigned long long)(DURATION_MAX_MS / 1000));
	else if (r < 0 || (above0 && *ms == 0))
		conf_bad(c, "'%s' is not a duration%s (seconds, or a number with ms, s, m or h)", v,
			 above0 ? " above 0" : "");
	else
		return true;
	return false;
}

/* A mistake leaves the field as it was: no second error from a check against a 0 */
void conf_set_duration(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	uint64_t ms = 0;
	if (!duration(c, v, false, &ms))
		return;
	*(uint64_t *)field = ms;
	c->pol->set |= k->flag;
}

void conf_set_count(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	unsigned long n = 0;
	if (!conf_parse_uint(v, k->arg, &n))
		conf_bad(c, "'%s' is not a whole number from 0 to %lu", v, k->arg);
	*(unsigned *)field = (unsigned)n;
	c->pol->set |= k->flag;
}

/* A count from 1: an invalid value leaves the field as it was. */
void conf_set_positive(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	unsigned long n = 0;
	if (!conf_parse_uint(v, k->arg, &n) || n == 0)
		conf_bad(c, "'%s' is not a number from 1 to %lu", v, k->arg);
	else
		*(unsigned *)field = (unsigned)n;
}

void conf_set_bool(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_bool(v, field))
		conf_bad(c, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
}

/* A duration above 0 (an interval of 0 would run checks back to back). */
void conf_set_period(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	uint64_t ms = 0;
	if (duration(c, v, true, &ms))
		*(uint64_t *)field = ms;
}

void conf_set_log_size(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	size_t n = 0;
	if (!conf_parse_size(v, &n)) {
		conf_bad(c, "'%s' is not a size (bytes, or with k, M, G; 0: never rotate)", v);
	} else if (n && n < k->arg) {
		/* a file smaller than a line rotates at every line, each rotation renaming them all */
		conf_bad(c, "'%s' is too small: at least %luk (0: never rotate)", v, k->arg >> 10);
		return;
	}
	*(uint64_t *)field = n;
}

void conf_set_buffer_size(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	size_t *n = field;
	if (!conf_parse_size(v, n) || *n < k->arg)
		conf_bad(c, "'%s' is not a size of at least %luk (bytes, or with k, M, G)", v, k->arg >> 10);
}

/* A path, relative to the config file's directory. */
void conf_set_path(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char **p = field;
	if (!*v) { /* it meant the file's directory: a socket or a pidfile there is refused later */
		conf_bad(c, "empty: a path is needed (leave the key out for the default)");
		return;
	}
	free(*p);
	*p = conf_abs_path(c->base, v);
}

/* A name, resolved when the service is checked. */
void conf_set_name(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)c;
	(void)k;
	char **p = field;
	free(*p);
	*p = strdup(v);
}

/* env_file = PATH...: words (quoted like environment), read when the service is checked */
void conf_set_words(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	char ***words = field;
	const char *err = NULL;
	if (cli_split(v, words, &err) < 0)
		conf_bad(c, "%s", err);
	else if (!**words)
		conf_bad(c, "no file named");
}
