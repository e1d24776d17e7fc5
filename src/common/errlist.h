/*
 * errlist.h - a list of "file:line: message" strings collected while
 * validating, so every mistake is reported at once.
 */
#ifndef EVMON_ERRLIST_H
#define EVMON_ERRLIST_H

#include <stddef.h>

struct errlist {
	char **msgs;
	long long *keys; /* of each message, for errlist_sort: rank, then line */
	size_t n, cap;
	int rank;	 /* given to the messages added from now on (the config: its file's index) */
};

/* Append "file:line: message" (line 0: "file: message"). Allocation failures are ignored. */
void errlist_add(struct errlist *e, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Messages from index `from` on by rank, then line (stable: one line's keep their order). */
void errlist_sort(struct errlist *e, size_t from);
void errlist_free(struct errlist *e);

#endif
