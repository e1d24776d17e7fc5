/*
 * errlist.c - collected validation messages (see errlist.h).
 */
#include "errlist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void errlist_add(struct errlist *e, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;
		char **m = realloc(e->msgs, cap * sizeof(*m));
		if (!m)
			return;
		e->msgs = m;
		e->cap = cap;
	}
	char *s = NULL;
	int r = line > 0 ? asprintf(&s, "%s:%d: %s", file, line, msg)
			 : asprintf(&s, "%s: %s", file, msg);
	if (r >= 0)
		e->msgs[e->n++] = s;
}

void errlist_free(struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->msgs[i]);
	free(e->msgs);
	e->msgs = NULL;
	e->n = e->cap = 0;
}
