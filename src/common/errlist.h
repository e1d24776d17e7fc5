/*
 * errlist.h - a list of "file:line: message" strings collected while
 * validating, so every mistake is reported at once.
 */
#ifndef EVMON_ERRLIST_H
#define EVMON_ERRLIST_H

#include <stddef.h>

/*
 * Messages kept: past it they are counted, not kept (a config of a million
 * bad lines, or an include that reads a binary, must not become a reply of
 * a million messages, nor their memory), like a compiler's -fmax-errors.
 */
#define ERRLIST_MAX 1000

struct errlist {
	char **msgs;
	long long *keys; /* of each message, for errlist_sort: rank, then line */
	size_t n, cap;
	size_t more;	 /* messages added past ERRLIST_MAX, not kept */
	int rank;	 /* given to the messages added from now on (the config: its file's index) */
};

/* Messages added: n kept plus those past ERRLIST_MAX. */
static inline size_t errlist_total(const struct errlist *e)
{
	return e->n + e->more;
}

/*
 * Append "file:line: message" (line 0: "file: message"; no file: the message); past ERRLIST_MAX
 * only counted. Allocation failures are ignored.
 */
void errlist_add(struct errlist *e, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Messages from index `from` on by rank, then line (stable: one line's keep their order). */
void errlist_sort(struct errlist *e, size_t from);
/* Append the messages of from to e as they are (its count past ERRLIST_MAX too). */
void errlist_append(struct errlist *e, const struct errlist *from);
void errlist_free(struct errlist *e);

#endif
