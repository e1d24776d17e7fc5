/* placeholder while the core is brought up; replaced by the supervision engine */
#include "internal.h"
void evm__services_free(struct evm_loop *loop) { (void)loop; }
size_t evm__services_busy(const struct evm_loop *loop) { (void)loop; return 0; }
