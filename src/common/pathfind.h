/*
 * pathfind.h - which file a command name runs, the way the library's exec
 * finds it (src/lib/child.c, which must do it without malloc between clone
 * and exec, so it cannot share this code): a name with a slash is a path;
 * otherwise each element of the search path in turn, an empty element being
 * the current directory.
 */
#ifndef EVMON_PATHFIND_H
#define EVMON_PATHFIND_H

#include <stdbool.h>
#include <stddef.h>

/* The library's search path when the environment has no PATH. */
#define PATHFIND_DEFAULT "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* A regular file that we may execute. */
bool cli_path_executable(const char *path);

/*
 * The first executable candidate for file in search (NULL: $PATH, or
 * PATHFIND_DEFAULT without it), written to buf; file itself when it has a
 * slash (executable or not). NULL when there is none.
 */
const char *cli_path_find(const char *file, const char *search, char *buf, size_t len);

/*
 * The same, but the first candidate that exists, executable or not: the
 * file whose EACCES execvp says at the end of its search when nothing ran.
 */
const char *cli_path_find_any(const char *file, const char *search, char *buf, size_t len);

#endif
