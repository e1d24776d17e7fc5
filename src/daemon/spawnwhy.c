/*
 * spawnwhy.c - what an errno of a failed spawn hides (spawnwhy.h).
 */
#include "spawnwhy.h"

#include "confkeys.h"
#include "pathfind.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define HEAD_MAX 256 /* the bytes read of a program: the kernel reads as many for its #! line */

static const char *env_path(char **env)
{
	for (char **e = env; e && *e; e++)
		if (!strncmp(*e, "PATH=", 5))
			return *e + 5;
	return NULL;
}

void spawn_facts_of(const struct svc_conf *c, struct spawn_facts *f)
{
	f->prog = f->path = NULL;
	f->nofile = -1;
	if (!c)
		return;
	for (size_t i = 0; i < c->nrlimits; i++)
		if (c->rlimits[i].resource == RLIMIT_NOFILE)
			f->nofile = c->rlimits[i].limit.rlim_cur == RLIM_INFINITY
					    ? LLONG_MAX
					    : (long long)c->rlimits[i].limit.rlim_cur;
	const char *prog = c->argv ? c->argv[0] : NULL, *path = env_path(c->env);
	if (!prog)
		return;
	if (strchr(prog, '/')) { /* relative: to its directory, where the child runs it */
		f->prog = prog[0] == '/' || !c->directory ? strdup(prog) : conf_abs_path(c->directory, prog);
		return;
	}
	f->prog = strdup(prog);
	if (path && !(f->path = strdup(path))) {
		free(f->prog);
		f->prog = NULL;
	}
}

void spawn_facts_free(struct spawn_facts *f)
{
	free(f->prog);
	free(f->path);
	f->prog = f->path = NULL;
}

/* The first bytes of path, a regular file (no FIFO or device held open, no wait on one). */
static ssize_t head(const char *path, char *buf, size_t len)
{
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -1;
	ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? pread(fd, buf, len - 1, 0) : -1;
	close(fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

/* "#!/bin/sh -e\n": the interpreter's word, into interp (its CR kept: the kernel keeps it). */
static bool shebang(const char *h, size_t n, char *interp, size_t len)
{
	if (n < 2 || h[0] != '#' || h[1] != '!')
		return false;
	size_t i = 2, k = 0;
	while (i < n && (h[i] == ' ' || h[i] == '\t'))
		i++;
	while (i < n && h[i] != ' ' && h[i] != '\t' && h[i] != '\n' && h[i] != '\0' && k + 1 < len)
		interp[k++] = h[i++];
	interp[k] = '\0';
	if (k + 1 == len || (i == n && n + 1 >= HEAD_MAX))
		return false; /* cut short (by interp, or by the bytes read): what it names is not known */
	/* a file's bytes into a log line: no control characters (a last CR is told apart) */
	for (size_t j = 0; j < k; j++)
		if (((unsigned char)interp[j] < 0x20 && !(j == k - 1 && interp[j] == '\r')) ||
		    interp[j] == 0x7f)
			interp[j] = '?';
	return k > 0;
}

/* Why path cannot be run (EACCES), if it shows in the file itself: "" if not. */
static const char *cannot_run(const char *path)
{
	struct stat st;
	struct statvfs vfs;
	if (stat(path, &st) < 0)
		return "";
	if (S_ISDIR(st.st_mode))
		return "it is a directory";
	if (!S_ISREG(st.st_mode))
		return "it is not a regular file";
	if (!(st.st_mode & 0111))
		return "no execute permission: chmod +x";
	if (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_NOEXEC))
		return "its file system is mounted noexec";
	return "";
}

/*
 * EACCES at exec: the program, or its #! interpreter, is not a file that
 * runs. found: the program a bare name found on the search path (NULL: the
 * command's own path, which the message says already).
 */
static bool access_why(const char *prog, const char *found, char *why, size_t len)
{
	char h[HEAD_MAX], interp[HEAD_MAX];
	const char *what = cannot_run(prog);
	if (*what) {
		snprintf(why, len, "%s%s%s", found ? found : "", found ? ": " : "", what);
		return true;
	}
	ssize_t n = head(prog, h, sizeof(h));
	if (n > 0 && shebang(h, (size_t)n, interp, sizeof(interp)) && *(what = cannot_run(interp)))
		snprintf(why, len, "its interpreter %s, named by its #! line: %s", interp, what);
	return why[0] != '\0';
}

bool spawn_why(const struct spawn_facts *f, enum evm_spawn_stage stage, int error, char *why,
	       size_t len)
{
	char h[HEAD_MAX], interp[HEAD_MAX];
	why[0] = '\0';
	if (stage == EVM_STAGE_STDIO && error == -EBADF && f->nofile >= 0 && f->nofile < 3) {
		snprintf(why, len, "limit_nofile = %lld leaves no room for its stdin, stdout and stderr, "
			 "descriptors 0 to 2", f->nofile);
		return true;
	}
	if (stage != EVM_STAGE_EXEC || !f->prog ||
	    (error != -ENOENT && error != -ENOEXEC && error != -EACCES))
		return false;
	char found[PATH_MAX];
	const char *prog = f->prog;
	if (error == -EACCES) {
		bool bare = !strchr(prog, '/');
		if (bare && !(prog = cli_path_find_any(prog, f->path, found, sizeof(found))))
			return false;
		return access_why(prog, bare ? prog : NULL, why, len);
	}
	if (!strchr(prog, '/') && !(prog = cli_path_find(prog, f->path, found, sizeof(found))))
		return false; /* not found: ENOENT says it */
	ssize_t n = head(prog, h, sizeof(h));
	if (n < 0)
		return false; /* not there (ENOENT says it), or not a file */
	bool elf = n >= 4 && !memcmp(h, "\177ELF", 4);
	bool script = shebang(h, (size_t)n, interp, sizeof(interp));
	if (error == -ENOEXEC && elf)
		snprintf(why, len, "an ELF file this machine cannot run: built for another architecture?");
	else if (error == -ENOEXEC && !script)
		snprintf(why, len, "not an executable format: a script needs a #! line");
	else if (error == -ENOENT && elf)
		snprintf(why, len, "the program is there, not the ELF interpreter, the dynamic loader "
			 "it names: built for another system?");
	else if (error == -ENOENT && script && interp[strlen(interp) - 1] == '\r')
		snprintf(why, len, "its #! line ends in a carriage return, a CRLF line end: its "
			 "interpreter %.*s\\r does not exist", (int)strlen(interp) - 1, interp);
	else if (error == -ENOENT && script && access(interp, F_OK) < 0 && errno == ENOENT)
		snprintf(why, len, "its interpreter %s, named by its #! line, does not exist", interp);
	return why[0] != '\0';
}

void spawn_why_insert(const char *msg, int error, const char *why, char *out, size_t len)
{
	const char *e = strerror(-error), *at = strstr(msg, e);
	size_t pre = at ? (size_t)(at - msg) + strlen(e) : strlen(msg);
	snprintf(out, len, "%.*s (%s)%s", (int)pre, msg, why, msg + pre);
}
