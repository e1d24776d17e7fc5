/* test_spawn.c - tests/unit/test_spawn.c under ThreadSanitizer (see tsan.h). */
#include "tsan.h"

#include "../unit/test_spawn.c"
