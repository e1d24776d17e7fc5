/*
 * fuzz_signal.c - signal names and numbers (src/common/signame.c): the
 * config's stop_signal, `evmon ctl signal`, the "signal" of a control
 * request, evmon init's -r FROM:TO and -p.
 *
 * Properties: a result is -1 or a real signal (0 only when allowed); a
 * signal's name parses back to the same number, with or without "SIG",
 * in any case.
 */
#include "fuzz.h"

#include "cli.h"

#include <ctype.h>
#include <signal.h>

static void check_name(int sig)
{
	const char *name = cli_signal_name(sig);
	if (!name) {
		/* only numbers that are not signals, or those glibc keeps (32, 33), have no name */
		FUZZ_CHECK(sig <= 0 || sig >= NSIG || (sig >= 32 && sig < SIGRTMIN));
		return;
	}
	FUZZ_CHECK(sig > 0 && sig < NSIG);
	FUZZ_CHECK(cli_parse_signal(name, false) == sig);
	char buf[64];
	snprintf(buf, sizeof(buf), "sig%s", name);
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	FUZZ_CHECK(cli_parse_signal(buf, false) == sig);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size);
	int a = cli_parse_signal(s, false), b = cli_parse_signal(s, true);
	FUZZ_CHECK(a == -1 || (a > 0 && a < NSIG));
	FUZZ_CHECK(b == -1 || (b >= 0 && b < NSIG));
	FUZZ_CHECK(a == b || (a == -1 && b == 0));
	if (a > 0)
		check_name(a);
	/* any int, as a caller holding a number from elsewhere would pass it */
	if (size >= sizeof(int)) {
		int n;
		memcpy(&n, data, sizeof(n));
		check_name(n);
	}
	free(s);
	return 0;
}
