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
	if (e->n >= ERRLIST_MAX) {
		e->more++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;
		char **m = realloc(e->msgs, cap * sizeof(*m));
		if (!m)
			return;
		e->msgs = m;
		long long *l = realloc(e->keys, cap * sizeof(*l));
		if (!l)
			return;
		e->keys = l;
		e->cap = cap;
	}
	char *s = NULL;
	int r = !file	  ? asprintf(&s, "%s", msg)
		: line > 0 ? asprintf(&s, "%s:%d: %s", file, line, msg)
			   : asprintf(&s, "%s: %s", file, msg);
	if (r >= 0) {
		e->keys[e->n] = (long long)e->rank << 32 | (unsigned)line;
		e->msgs[e->n++] = s;
	}
}

void errlist_append(struct errlist *e, const struct errlist *from)
{
	for (size_t i = 0; i < from->n; i++)
		errlist_add(e, NULL, 0, "%s", from->msgs[i]);
	e->more += from->more;
}

/*
 * Some mistakes are only found once a whole section is read (a missing
 * command, an unknown user): sorted, the report reads top to bottom like
 * the file. Insertion sort: a handful of messages, and it is stable.
 */
void errlist_sort(struct errlist *e, size_t from)
{
	for (size_t i = from + 1; i < e->n; i++) {
		char *m = e->msgs[i];
		long long k = e->keys[i];
		size_t j = i;
		for (; j > from && e->keys[j - 1] > k; j--) {
			e->msgs[j] = e->msgs[j - 1];
			e->keys[j] = e->keys[j - 1];
		}
		e->msgs[j] = m;
		e->keys[j] = k;
	}
}

void errlist_free(struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->msgs[i]);
	free(e->msgs);
	free(e->keys);
	e->msgs = NULL;
	e->keys = NULL;
	e->n = e->cap = e->more = 0;
	e->rank = 0;
}
