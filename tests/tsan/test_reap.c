/* test_reap.c - tests/unit/test_reap.c under ThreadSanitizer (see tsan.h). */
#include "tsan.h"

#include "../unit/test_reap.c"
