/*
 * standalone.c - main() of the standalone evmon-init (`make static`), which
 * links only src/init, common/signame.c and libevmon: no config parser, no JSON.
 *
 * In the evmon binary this file is empty: src/main.c dispatches there, and also
 * runs `evmon init` when called as evmon-init.
 */
#ifdef EVMON_INIT_STANDALONE
#include "cli.h"

int main(int argc, char **argv)
{
	return cmd_init(argc, argv);
}
#else
typedef int evmon_init_main_unused; /* ISO C wants a declaration in every file */
#endif
