/*
 * rootalone.h - may no one but root change what a path names (rootalone.c)?
 * What a root daemon reads to decide what runs, and as whom (its config
 * and includes, an env_file), must be root's alone: not only the file, but
 * every directory on the way to it and every symlink followed.
 */
#ifndef EVMON_ROOTALONE_H
#define EVMON_ROOTALONE_H

#include <stddef.h>
#include <sys/stat.h>

/*
 * Walk path from / (a relative path from the working directory), symlinks
 * followed hop by hop as the kernel will: each name on the way must be
 * root's, and each directory writable by root alone, or sticky (/tmp:
 * others cannot rename or remove root's names there). 0 with the stat of
 * what path names in *file (the open that follows must find the same file),
 * or -errno (-ENOENT: a name is missing); for -EPERM err says which name
 * and why, then ": " and rule ("a root daemon reads only ...").
 */
int root_alone(const char *path, const char *rule, struct stat *file, char *err, size_t errlen);

#endif
