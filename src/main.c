/*
 * main.c - the evmon command: dispatch to a subcommand.
 *
 * Called by any other name than "evmon" (evmon-init, a symlink, podman's
 * /run/podman-init, docker-init), and as "evmon -- CMD", it is "evmon init",
 * so it can replace tini in an ENTRYPOINT or as a runtime's --init-path.
 */
#include "cjson.h"
#include "cli.h"

#include <evmon.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *summary;
} cmds[] = {
	{"init", cmd_init, "run a command as a container init (PID 1): reap zombies, forward signals"},
	{"daemon", cmd_daemon, "supervise the services of a config file"},
	{"ctl", cmd_ctl, "talk to a running daemon"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: evmon COMMAND [ARGS...]\n"
		   "       evmon -- CMD [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "  %-8s %s\n", "help", "show this help, or a command's: evmon help COMMAND");
	fprintf(f, "  %-8s %s\n", "version", "print the version");
	fprintf(f, "\nevmon COMMAND --help shows the options of a command. evmon -- CMD, and the\n"
		   "binary called by any other name than evmon (evmon-init, podman-init), is evmon init.\n");
}

int main(int argc, char **argv)
{
	/* no basename(3): libgen's may write into argv[0], which ps shows */
	const char *self = argc > 0 && argv[0] ? argv[0] : "evmon";
	if (strrchr(self, '/'))
		self = strrchr(self, '/') + 1;
	/* runtimes run an init as "NAME -- CMD" (podman: /run/podman-init) */
	if ((*self && strcmp(self, "evmon")) || (argc > 1 && !strcmp(argv[1], "--")))
		return cmd_init(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *c = argv[1];
	if (!strcmp(c, "version") || !strcmp(c, "--version") || !strcmp(c, "-V")) {
		printf("evmon %s\n", evm_version());
		return 0;
	}
	if (!strcmp(c, "help") || !strcmp(c, "--help") || !strcmp(c, "-h")) {
		if (argc > 2) {
			for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
				if (!strcmp(argv[2], cmds[i].name)) {
					char *hargv[] = {argv[2], "--help", NULL};
					return cmds[i].fn(2, hargv);
				}
			}
			fprintf(stderr, "evmon: unknown command '%s'\n", argv[2]);
			return 2;
		}
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(c, cmds[i].name))
			continue;
		/* the daemon and ctl speak JSON: libcjson is opened here, not linked (cjson.h) */
		char err[300];
		if (cmds[i].fn != cmd_init && cjson_open(err, sizeof(err)) < 0) {
			fprintf(stderr, "evmon: %s\n", err);
			return 1;
		}
		return cmds[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "evmon: unknown command '%s' (try: evmon help)\n", c);
	return 2;
}
