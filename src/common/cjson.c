/*
 * cjson.c - libcjson opened at run time for the daemon and ctl (cjson.h).
 */
#define CJSON_NO_MACROS
#include "cjson.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

struct cjson_funcs cjson_fn;

int cjson_open(char *err, size_t errlen)
{
	if (cjson_fn.lib)
		return 0;
	/* the soname evmon was built against, then the development link */
	void *lib = dlopen("libcjson.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		lib = dlopen("libcjson.so", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(err, errlen, "cannot open libcjson: %s (install libcjson1)", dlerror());
		return -1;
	}
	struct cjson_funcs f = {.lib = lib};
#define CJSON_LOAD(name)                                                                           \
	if (!(*(void **)&f.name = dlsym(lib, #name))) {                                            \
		snprintf(err, errlen, "libcjson has no %s", #name); \
		dlclose(lib);                                                                      \
		return -1;                                                                         \
	}
	CJSON_FUNCS(CJSON_LOAD)
#undef CJSON_LOAD
	cjson_fn = f;
	return 0;
}

const struct cjson_funcs *cjson_need(void)
{
	char err[300];
	if (cjson_open(err, sizeof(err)) < 0) {
		fprintf(stderr, "evmon: %s\n", err);
		exit(1);
	}
	return &cjson_fn;
}
