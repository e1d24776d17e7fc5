/*
 * cli.h - what the parts of the evmon command share.
 */
#ifndef EVMON_CLI_H
#define EVMON_CLI_H

#include <stdbool.h>

/* subcommands: argv[0] is the subcommand name; return the process exit code */
int cmd_init(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_ctl(int argc, char **argv);

/*
 * Signals by name or number: "TERM", "SIGTERM", "sigterm", "15", "RTMIN+3".
 * Returns the number, or -1 if s names no signal. allow_zero accepts "0".
 */
int cli_parse_signal(const char *s, bool allow_zero);

/* "TERM" for 15 (without the SIG prefix), "RTMIN+3", or NULL. Static string. */
const char *cli_signal_name(int sig);

#endif
