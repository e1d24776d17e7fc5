/*
 * fuzz_config.c - the daemon's config file (src/daemon/config.c on libinih):
 * whatever the bytes, config_load either returns a config or fails with
 * messages that all name the file (or a file it includes); a loaded config builds the spawn
 * options of its first and last instance, and compares equal to itself.
 *
 * The input goes into one file on /dev/shm, rewritten for each run.
 */
#include "fuzz.h"

#include "config.h"

#include <fcntl.h>
#include <unistd.h>

static char path[64];
static int fd = -1;

static void cleanup(void)
{
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(path, sizeof(path), "/dev/shm/evmon-fuzz-config-%d.ini", (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		abort();
	}
	atexit(cleanup);
	return 0;
}

static void check_config(struct config *cfg)
{
	size_t n = 0;
	for (size_t i = 0; i < cfg->nsvcs; i++) {
		struct svc_conf *c = cfg->svcs[i];
		FUZZ_CHECK(c->argv && c->argv[0] && c->instances >= 1);
		FUZZ_CHECK(config_valid_name(c->name));
		FUZZ_CHECK(svc_conf_equal(c, c));
		unsigned last[2] = {0, c->instances - 1};
		for (int k = 0; k < (c->instances > 1 ? 2 : 1); k++) {
			struct svc_build b;
			FUZZ_CHECK(config_build(c, last[k], &b) == 0);
			FUZZ_CHECK(b.opts.name && b.opts.spawn.argv == c->argv);
			size_t ne = 0;
			for (char **e = b.env; *e; e++, ne++)
				FUZZ_CHECK(strchr(*e, '='));
			FUZZ_CHECK(ne >= 1);
			config_build_free(&b);
		}
		n += c->instances;
	}
	FUZZ_CHECK(n == cfg->ninstances);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/*
	 * An include's glob reaches the whole machine (a star between each of
	 * three slashes reads every file three levels down, /proc's too). The
	 * read is bounded (CONF_GLOB_ENTRIES a pattern, CONF_MAX_BYTES in all),
	 * but one such input still takes up to a second, and what it finds
	 * differs from one machine to the next: not fuzzed here
	 * (tests/unit/test_confread.c has the globs and the bounds).
	 */
	if (memmem(data, size, "include", 7) && (memchr(data, '*', size) || memchr(data, '?', size)))
		return 0;
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	struct errlist errs = {0};
	struct config *cfg = (struct config *)1;
	int r = config_load(path, &cfg, &errs);
	if (r == 0) {
		FUZZ_CHECK(cfg && errs.n == 0);
		check_config(cfg);
		config_free(cfg);
	} else {
		FUZZ_CHECK(r == -1 && cfg == NULL && errs.n > 0);
		size_t pl = strlen(path);
		for (size_t i = 0; i < errs.n; i++) {
			const char *m = errs.msgs[i];
			if (!strncmp(m, path, pl) && m[pl] == ':')
				continue;
			/* or a file it included (include = /bin/sleep): named by its absolute path */
			const char *colon = strchr(m, ':');
			FUZZ_CHECK(m[0] == '/' && colon && colon > m + 1 && memmem(data, size, "include", 7));
		}
	}
	errlist_free(&errs);
	return 0;
}
