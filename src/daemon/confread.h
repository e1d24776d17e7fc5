/*
 * confread.h - reading the daemon's config file, and the files its
 * include lines name, into sections of key = value pairs with their
 * file:line (confread.c). What the keys mean is confkeys.c's.
 */
#ifndef EVMON_CONFREAD_H
#define EVMON_CONFREAD_H

#include "confkeys.h"
#include "errlist.h"

#include <stdbool.h>
#include <sys/types.h>

#define CONF_INCLUDE_DEPTH 16 /* include lines nested deeper are refused */
/*
 * What one read (a start, a --check, a reload) takes at most: include
 * patterns can reach the whole machine (a star per level, /proc's symbolic
 * links back to / included) and the daemon's loop waits for the read.
 */
#define CONF_MAX_BYTES (64 << 20)	/* the main file and every include, in all */
#define CONF_MAX_FILES 32768		/* files read */
#define CONF_GLOB_ENTRIES 65536		/* directory entries one include pattern may look at */

struct conf_file {
	char *path;	/* as reached: the main file's as given, an included one's as globbed */
	char *dir;	/* its directory (absolute): the base of its relative paths */
	dev_t dev;
	ino_t ino;
	bool reading;	/* on the include stack: including it again is a loop */
};

struct conf_section {
	char *name;
	int line;
	size_t file;	/* index in files */
	struct conf_pair *kv; /* our copies */
	size_t n, cap;
};

struct conf_read {
	struct conf_file *files; /* files[0] is the main file; then in the order read */
	size_t nfiles, capfiles;
	struct conf_section *secs; /* every file's, in the order read */
	size_t nsecs, capsecs;
	size_t bytes;		/* read so far, every file's */
	bool too_big, too_many;	/* CONF_MAX_BYTES / CONF_MAX_FILES reached (said once) */
};

/*
 * Read path and, depth first, each file its include lines match (sorted),
 * right after the file that includes them. Every mistake goes to errs with
 * its file:line; errs->rank is the index of the file a message is about,
 * so errlist_sort orders them file by file. Returns 0, or -1 when path
 * itself could not be read (nothing else was). Free *out with
 * conf_read_free either way.
 */
int conf_read(const char *path, struct conf_read *out, struct errlist *errs);
void conf_read_free(struct conf_read *r);

/* "on line N" or "at FILE:N" for a message in file `from` about something in file `at`. */
void conf_read_where(const struct conf_read *r, size_t from, size_t at, int line, char *buf,
		     size_t len);

#endif
