/*
 * pathfind.c - the PATH walk (see pathfind.h), for `evmon init` (the file a
 * script without #! is given to /bin/sh as) and the daemon's config check
 * (a command that cannot be found is reported with its FILE:LINE).
 */
#include "pathfind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool cli_path_executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* The first candidate for file in search that ok says is it. */
static const char *walk(const char *file, const char *search, char *buf, size_t len,
			bool (*ok)(const char *path))
{
	if (strchr(file, '/'))
		return file;
	if (!search)
		search = getenv("PATH");
	if (!search)
		search = PATHFIND_DEFAULT;
	for (const char *p = search;;) {
		const char *end = strchrnul(p, ':');
		int n = end == p ? snprintf(buf, len, "./%s", file)
				 : snprintf(buf, len, "%.*s/%s", (int)(end - p), p, file);
		if (n > 0 && (size_t)n < len && ok(buf))
			return buf;
		if (!*end)
			return NULL;
		p = end + 1;
	}
}

const char *cli_path_find(const char *file, const char *search, char *buf, size_t len)
{
	return walk(file, search, buf, len, cli_path_executable);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

const char *cli_path_find_any(const char *file, const char *search, char *buf, size_t len)
{
	return walk(file, search, buf, len, exists);
}
