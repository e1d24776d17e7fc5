/*
 * assert.c - the assert() handler of the standalone evmon-init, in place of
 * glibc's. A static glibc program always links __assert_fail (libc_start_main
 * may assert), and glibc's formats its message with the wide-character printf
 * and gettext: 33 kB of evmon-init, more than init's own code, for a message
 * that should never be seen. This one writes the same line glibc would
 * ("PROG: FILE:LINE: FUNC: Assertion `EXPR' failed.") with write(2) alone,
 * then aborts, as glibc's does.
 *
 * Safe in a static link: the linker takes an archive member only for a symbol
 * still undefined, so glibc's assert.o is left out; anything that needed
 * another symbol of assert.o would bring it back and the link would fail on
 * the duplicate __assert_fail, never pick one silently. In the evmon binary
 * (dynamic, glibc's handler) this file is empty.
 */
#ifdef EVMON_INIT_STANDALONE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void __assert_fail(const char *expr, const char *file, unsigned int line, const char *func);

void __assert_fail(const char *expr, const char *file, unsigned int line, const char *func)
{
	char num[12], *p = num + sizeof(num);
	*--p = '\0';
	do
		*--p = (char)('0' + line % 10);
	while ((line /= 10) && p > num);
	const char *part[] = {"evmon-init: ", file, ":", p, ": ", func ? func : "", func ? ": " : "",
			      "Assertion `", expr, "' failed.\n"};
	for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
		if (part[i] && write(STDERR_FILENO, part[i], strlen(part[i])) < 0)
			break;
	abort();
}
#else
typedef int evmon_init_assert_unused; /* ISO C wants a declaration in every file */
#endif
