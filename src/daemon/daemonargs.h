/*
 * daemonargs.h - `evmon daemon`'s command line and --check (daemonargs.c).
 */
#ifndef EVMON_DAEMONARGS_H
#define EVMON_DAEMONARGS_H

#include <stdbool.h>

struct config;
struct errlist;

struct daemon_options {
	const char *cfg_path, *socket;
	bool reaper, check, strict;
};

/* Returns -1 to go on, else the exit code (help, version, a usage error). */
int daemon_parse_options(int argc, char **argv, struct daemon_options *o);
/* --check: validate path and its environment; the exit code. */
int daemon_check_only(const char *path, const char *sock_opt, bool strict);
/* The environment problems of cfg, on stderr; with strict, they are errors. */
void daemon_print_problems(const struct config *cfg, bool strict);
/* Each message of errs, then how many more were not kept (errlist.h), on stderr. */
void daemon_print_errors(const struct errlist *errs);

#endif
