/*
 * fuzz_init_args.c - the command line of `evmon init` (src/init/init.c,
 * included here for its static parse_args): -r FROM:TO rewrites, -e exit
 * codes, -t durations, -p signals, and the option/command boundary. The
 * input is split at NUL bytes into arguments after "evmon-init".
 *
 * Properties: parsing ends in an exit code (help, version, a mistake) or
 * leaves a command that is the tail of argv; every -r rewrite maps a real
 * signal to -1 (as is), 0 (dropped) or a real signal.
 */
#include "fuzz.h"

#include "../src/init/init.c"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!freopen("/dev/null", "w", stdout))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	char *args[MAX_ARGS + 2];
	int argc = 0;
	FUZZ_CHECK(buf);
	memcpy(buf, data, size);
	buf[size] = '\0';
	args[argc++] = "evmon-init";
	for (char *p = buf; p < buf + size && argc < MAX_ARGS; p += strlen(p) + 1)
		args[argc++] = p;
	args[argc] = NULL;

	struct init in = {.verbosity = V_FATAL, .grace_ms = DEFAULT_GRACE_MS, .sigfd = -1,
			  .exit_code = -1};
	for (int s = 0; s < NSIG; s++)
		in.rewrite[s] = -1;
	bool single = false, group = false;
	int code = parse_args(&in, argc, args, &single, &group);
	if (code < 0) {
		FUZZ_CHECK(code == -1 && in.argv && in.argv[0]);
		FUZZ_CHECK(in.argv > args && in.argv < args + argc);
		FUZZ_CHECK(in.pdeath_signal >= 0 && in.pdeath_signal < NSIG);
	} else {
		FUZZ_CHECK(code == 0 || code == 1);
	}
	for (int s = 0; s < NSIG; s++)
		FUZZ_CHECK(in.rewrite[s] >= -1 && in.rewrite[s] < NSIG);
	free(buf);
	return 0;
}
