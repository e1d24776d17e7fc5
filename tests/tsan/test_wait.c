/* test_wait.c - tests/unit/test_wait.c under ThreadSanitizer (see tsan.h). */
#include "tsan.h"

#include "../unit/test_wait.c"
