/* test_post.c - tests/unit/test_post.c under ThreadSanitizer (see tsan.h). */
#include "tsan.h"

#include "../unit/test_post.c"
