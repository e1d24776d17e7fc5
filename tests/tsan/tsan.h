/*
 * tsan.h - what the ThreadSanitizer builds of the library's unit tests
 * (tests/tsan/test_X.c, make tsan-test) change in them: every spawn goes the
 * direct way. The spawn helper is a process cloned with CLONE_VM that runs
 * our code beside our threads without being one; TSan cannot follow that
 * (its clone interceptor aborts: "CHECK failed ... thr->slot"), so the
 * tests' "helper" modes run direct here. The helper path is covered by the
 * ASan build and valgrind instead (docs/RELIABILITY.md).
 *
 * Include this before anything else: it renames setenv in the files that
 * follow, so that the tests' t_set_mode() asks for the direct path.
 */
#ifndef EVMON_TSAN_H
#define EVMON_TSAN_H

#define setenv evm_tsan_setenv
#include <stdlib.h>
#include <string.h>

extern int evm_tsan_real_setenv(const char *name, const char *value, int replace) __asm__("setenv");

int evm_tsan_setenv(const char *name, const char *value, int replace)
{
	if (!strcmp(name, "EVM_SPAWN_MODE"))
		value = "direct";
	return evm_tsan_real_setenv(name, value, replace);
}

#endif
