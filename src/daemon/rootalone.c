/*
 * rootalone.c - may no one but root change what a path names (see
 * rootalone.h)? A file's owner and mode are not enough: whoever may write
 * a directory on the way may put another file there, or a symlink to one
 * of root's (a secret the daemon would then read as if it were its config
 * or a service's environment, and say in its mistakes).
 */
#include "rootalone.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LINKS_MAX 40 /* the kernel's own limit of a path's symlinks */

int root_alone(const char *path, const char *rule, struct stat *file, char *err, size_t errlen)
{
	char todo[2 * PATH_MAX], cur[PATH_MAX] = "", link[PATH_MAX];
	int links = 0;
	if (path[0] != '/' && !getcwd(cur, sizeof(cur))) /* relative: the walk starts at / too */
		return -errno;
	if ((size_t)snprintf(todo, sizeof(todo), "%s/%s", path[0] == '/' ? "" : cur, path) >=
	    sizeof(todo))
		return -ENAMETOOLONG;
	cur[0] = '\0';
	struct stat st;
	if (stat("/", &st) == 0 && (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))) {
		snprintf(err, errlen, "/ is not root's alone: %s", rule);
		return -EPERM;
	}
	for (char *p = todo;;) {
		while (*p == '/')
			p++;
		if (!*p)
			return stat(cur[0] ? cur : "/", file) < 0 ? -errno : 0;
		char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p), at = strlen(cur);
		bool more = *end != '\0';
		if (n == 1 && p[0] == '.') {
			p = end;
			continue;
		}
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			char *slash = strrchr(cur, '/');
			if (slash)
				*slash = '\0';
			p = end;
			continue;
		}
		if (at + 1 + n >= sizeof(cur))
			return -ENAMETOOLONG;
		cur[at] = '/';
		memcpy(cur + at + 1, p, n);
		cur[at + 1 + n] = '\0';
		p = end;
		if (lstat(cur, &st) < 0)
			return -errno; /* missing: nothing to open, nothing made there meanwhile */
		if (st.st_uid != 0) {
			snprintf(err, errlen, "%s is owned by uid %u: %s", cur, (unsigned)st.st_uid, rule);
			return -EPERM;
		}
		if (S_ISLNK(st.st_mode)) {
			ssize_t k = readlink(cur, link, sizeof(link) - 1);
			if (k < 0)
				return -errno;
			if (++links > LINKS_MAX)
				return -ELOOP;
			link[k] = '\0';
			char rest[2 * PATH_MAX];
			if ((size_t)snprintf(rest, sizeof(rest), "%s%s%s", link, more ? "/" : "", p) >=
			    sizeof(rest))
				return -ENAMETOOLONG;
			memcpy(todo, rest, strlen(rest) + 1);
			p = todo;
			if (link[0] == '/')
				cur[0] = '\0';
			else
				cur[at] = '\0'; /* relative to the link's directory */
			continue;
		}
		if (S_ISDIR(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
			snprintf(err, errlen, "%s is writable by others (mode %04o): %s", cur,
				 (unsigned)(st.st_mode & 07777), rule);
			return -EPERM;
		}
	}
}
