/*
 * envfile.h - a service's env_file (envfile.c): systemd's EnvironmentFile=
 * syntax read into KEY=VALUE strings.
 */
#ifndef EVMON_ENVFILE_H
#define EVMON_ENVFILE_H

#include <stddef.h>

#define ENVFILE_MAX_BYTES (1 << 20)

/*
 * Read path: KEY=VALUE lines; blank lines and lines starting with # or ;
 * are skipped; blanks around the key and before the value are dropped;
 * the value may be quoted ('...' literal, "..." with \" \\ \$ \` escapes)
 * and parts join ("a"'b'c); outside quotes a backslash escapes the next
 * character and blanks at the end are dropped; a backslash at the end of
 * a line continues the value on the next. Nothing is expanded.
 *
 * Returns the number of variables with *out a NULL-terminated block of
 * "KEY=VALUE" (one free()); or -errno with the reason in err: the file
 * cannot be read (-ENOENT: missing), is larger than ENVFILE_MAX_BYTES, a
 * root daemon's file someone else may change (-EPERM), or a mistake
 * (-EINVAL, "line N: ...", among them a variable longer than execve passes).
 */
int envfile_read(const char *path, char ***out, char *err, size_t errlen);

/*
 * env with each of add's variables set (replacing one of the same name,
 * else appended): a new block (one free()), or NULL when out of memory.
 * Either may be NULL.
 */
char **envfile_merge(char **env, char **add);

#endif
