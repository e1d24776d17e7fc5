/* test_loop.c - tests/unit/test_loop.c under ThreadSanitizer (see tsan.h). */
#include "tsan.h"

#include "../unit/test_loop.c"
