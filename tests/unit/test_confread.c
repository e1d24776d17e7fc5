/*
 * test_confread.c - what a config reads besides its own lines (issue 18.22):
 * include (globs sorted, each file's FILE:LINE in messages, loops refused),
 * env_file (systemd's EnvironmentFile= syntax), and the keys of the
 * process's limits: limit_*, nice, oom_score_adj.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config.h"
#include "confread.h"
#include "envfile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/evmon-test-confread-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* dir/name with text; returns the path (static: one at a time) */
static const char *put(const char *name, const char *text)
{
	static char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	mkdir(p, 0755);
	*slash = '/';
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static struct config *load(const char *main_text, struct errlist *errs)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s", put("main.ini", main_text));
	struct config *cfg = NULL;
	config_load(p, &cfg, errs);
	return cfg;
}

static struct config *load_ok(const char *main_text)
{
	struct errlist errs = {0};
	struct config *cfg = load(main_text, &errs);
	for (size_t i = 0; i < errs.n; i++)
		print_message("unexpected: %s\n", errs.msgs[i]);
	assert_int_equal(errs.n, 0);
	assert_non_null(cfg);
	return cfg;
}

/* message i is "DIR/file:line: ...fragment..." */
static void expect(const struct errlist *e, size_t i, const char *file, int line, const char *fragment)
{
	char prefix[PATH_MAX + 80];
	snprintf(prefix, sizeof(prefix), "%s/%s:%d: ", dir, file, line);
	if (i >= e->n || strncmp(e->msgs[i], prefix, strlen(prefix)) || !strstr(e->msgs[i], fragment)) {
		for (size_t k = 0; k < e->n; k++)
			print_message("got %zu: %s\n", k, e->msgs[k]);
		fail_msg("message %zu is not '%s...%s'", i, prefix, fragment);
	}
}

static const char *env_of(const struct svc_conf *s, const char *key)
{
	size_t n = strlen(key);
	for (char **e = s->env; e && *e; e++)
		if (!strncmp(*e, key, n) && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

static void test_include_sorted_after_the_includer(void **state)
{
	(void)state;
	put("conf.d/20-b.ini", "[service:b]\ncommand = true\n");
	put("conf.d/10-a.ini", "[service:a]\ncommand = true\n");
	put("conf.d/notes.txt", "not ini\n");
	put("more.ini", "include = sub/*.ini\n[service:m]\ncommand = true\ndirectory = sub\n");
	put("sub/x.ini", "[service:x]\ncommand = true\n");
	/* a pattern on a line of its own continues the include (it was "outside of any section") */
	struct config *cfg = load_ok("[evmon]\ninclude = conf.d/*.ini\n  more.ini none.d/*.ini\n"
				     "stop_timeout = 2\n[service:main]\ncommand = true\n");
	const char *want[] = {"main", "a", "b", "m", "x"};
	assert_int_equal(cfg->nsvcs, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(cfg->svcs[i]->name, want[i]);
	/* [evmon]'s defaults reach them; relative paths are the included file's */
	assert_int_equal(cfg->svcs[1]->pol.stop_timeout_ms, 2000);
	char sub[PATH_MAX + 8];
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_string_equal(cfg->svcs[3]->directory, sub);
	config_free(cfg);
}

static void test_include_mistakes_name_their_file(void **state)
{
	(void)state;
	put("conf.d/a.ini", "[service:a]\ncommand = true\nbogus = 1\n");
	put("conf.d/b.ini", "include = ../main.ini\n[service:main]\ncommand = true\n");
	put("conf.d/c.ini", "[service:c]\ncommand = true\ninclude = x.ini\n");
	struct errlist errs = {0};
	struct config *cfg = load("[evmon]\ninclude = conf.d/*.ini missing.ini\n"
				  "[service:main]\ncommand = true\nwat = 2\n", &errs);
	assert_null(cfg);
	assert_int_equal(errs.n, 6);
	/* file by file, in the order read; each file's by line */
	expect(&errs, 0, "main.ini", 2, "include: ");
	assert_non_null(strstr(errs.msgs[0], "missing.ini: No such file or directory"));
	expect(&errs, 1, "main.ini", 5, "unknown key 'wat'");
	expect(&errs, 2, "conf.d/a.ini", 3, "unknown key 'bogus'");
	expect(&errs, 3, "conf.d/b.ini", 1, "include loop: ");
	char first[PATH_MAX + 80];
	snprintf(first, sizeof(first), "duplicate service 'main' (first at %s/main.ini:3)", dir);
	expect(&errs, 4, "conf.d/b.ini", 2, first);
	expect(&errs, 5, "conf.d/c.ini", 3, "include: only allowed in [evmon] or before");
	errlist_free(&errs);
}

static void test_include_twice_and_self(void **state)
{
	(void)state;
	put("one.ini", "[service:one]\ncommand = true\n");
	struct errlist errs = {0};
	assert_null(load("include = one.ini\ninclude = one.ini main.ini\n[evmon]\n", &errs));
	assert_int_equal(errs.n, 2);
	expect(&errs, 0, "main.ini", 2, "already read (as ");
	expect(&errs, 1, "main.ini", 2, "include loop: ");
	errlist_free(&errs);
	put("deep.ini", "include = deep2.ini\n");
	put("deep2.ini", "include = deep.ini\n");
	assert_null(load("include = deep.ini\n", &errs));
	assert_int_equal(errs.n, 1);
	expect(&errs, 0, "deep2.ini", 1, "include loop: ");
	errlist_free(&errs);
	assert_null(load("include =\n", &errs));
	expect(&errs, 0, "main.ini", 1, "include: no file named");
	errlist_free(&errs);
}

/*
 * The daemon's loop waits for a read (a reload's too): a FIFO or a device
 * is refused without being opened for long, the main file's as well.
 */
static void test_only_regular_files_are_read(void **state)
{
	(void)state;
	struct errlist errs = {0};
	char fifo[PATH_MAX + 16];
	put("conf.d/a.ini", "[service:a]\ncommand = true\n");
	snprintf(fifo, sizeof(fifo), "%s/conf.d/b.ini", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	alarm(30); /* the old reader waited here forever */
	assert_null(load("include = conf.d/*.ini /dev/null\n[evmon]\n", &errs));
	assert_int_equal(errs.n, 2);
	expect(&errs, 0, "main.ini", 1, "/conf.d/b.ini: is a FIFO, not a regular file");
	expect(&errs, 1, "main.ini", 1, "include: /dev/null: is a character device, not a regular file");
	errlist_free(&errs);
	struct config *cfg = NULL;
	assert_int_equal(config_load(fifo, &cfg, &errs), -1);
	alarm(0);
	assert_null(cfg);
	assert_int_equal(errs.n, 1);
	if (!strstr(errs.msgs[0], "b.ini: is a FIFO, not a regular file"))
		fail_msg("got '%s'", errs.msgs[0]);
	errlist_free(&errs);
}

/*
 * A pattern with a star per level through a link back to its own
 * directory (as /proc/N/root is to /) would list the same entries without
 * end: it stops at CONF_GLOB_ENTRIES and none of what it found is read; the
 * other words of the line are.
 */
static void test_include_glob_is_bounded(void **state)
{
	(void)state;
	struct errlist errs = {0};
	char link[PATH_MAX + 16];
	put("loop/x.ini", "[service:x]\ncommand = true\n");
	put("ok.ini", "[service:ok]\ncommand = true\n");
	for (const char *c = "abcde"; *c; c++) {
		snprintf(link, sizeof(link), "%s/loop/%c", dir, *c);
		assert_int_equal(symlink(".", link), 0);
	}
	assert_null(load("include = loop/*/*/*/*/*/*/*/*/*/*/*.ini ok.ini\n[evmon]\n", &errs));
	assert_int_equal(errs.n, 1);
	expect(&errs, 0, "main.ini", 1, "include: loop/*/*/*/*/*/*/*/*/*/*/*.ini: the pattern "
	       "looks at more than 65536 directory entries");
	errlist_free(&errs);
	/* a pattern within bounds through the same links is read (each file once) */
	struct config *cfg = load_ok("include = loop/a/*.ini ok.ini\n[evmon]\n");
	assert_int_equal(cfg->nsvcs, 2);
	config_free(cfg);
}

/* The main file and its includes are read up to CONF_MAX_BYTES in all. */
static void test_read_is_bounded_in_bytes(void **state)
{
	(void)state;
	struct errlist errs = {0};
	const char *p = put("big.ini", "[service:big]\ncommand = true\n");
	assert_int_equal(truncate(p, (off_t)CONF_MAX_BYTES + 4096), 0); /* sparse: NULs */
	put("after.ini", "[service:after]\ncommand = true\n");
	assert_null(load("include = big.ini after.ini\n[evmon]\n", &errs));
	bool said = false;
	for (size_t i = 0; i < errs.n; i++)
		said |= strstr(errs.msgs[i], "big.ini:3: stopped reading here: the config and its "
					     "includes hold more than 64 MiB") != NULL;
	if (!said)
		for (size_t i = 0; i < errs.n; i++)
			print_message("got %zu: %s\n", i, errs.msgs[i]);
	assert_true(said);
	errlist_free(&errs);
}

/* Past ERRLIST_MAX messages are counted, not kept: the load still fails, and says how many. */
static void test_errors_past_the_cap_are_counted(void **state)
{
	(void)state;
	struct errlist errs = {0};
	size_t bad = ERRLIST_MAX + 200;
	char *text = malloc(bad * 16 + 64), *t = text;
	assert_non_null(text);
	t += sprintf(t, "[service:a]\ncommand = true\n");
	for (size_t i = 0; i < bad; i++)
		t += sprintf(t, "junk %zu\n", i);
	assert_null(load(text, &errs));
	free(text);
	assert_int_equal(errs.n, ERRLIST_MAX);
	assert_int_equal(errs.more, 200);
	assert_int_equal(errlist_total(&errs), bad);
	expect(&errs, 0, "main.ini", 3, "expected 'key = value', '[section]' or a comment, got 'junk 0'");
	errlist_free(&errs);
	assert_int_equal(errlist_total(&errs), 0);
}

static void test_env_file_syntax(void **state)
{
	(void)state;
	const char *p = put("web.env", "# a comment\n"
				       "; another\n"
				       "\n"
				       "PLAIN=value\n"
				       "  SPACED = two words  \n"
				       "SQ='it''s $HOME \\n'\n"
				       "DQ=\"say \\\"hi\\\" \\\\ \\$x \\n\"\n"
				       "JOIN=a\"b c\"'d'e\\ f\n"
				       "CONT=first \\\n"
				       "second\n"
				       "MULTI=\"line1\n"
				       "line2\"\n"
				       "EMPTY=\n"
				       "PLAIN=again\n"
				       "CRLF=x\r\n");
	char **v, err[200];
	int n = envfile_read(p, &v, err, sizeof(err));
	assert_int_equal(n, 10);
	const char *want[] = {"PLAIN=value", "SPACED=two words", "SQ=its $HOME \\n",
			      "DQ=say \"hi\" \\ $x \\n", "JOIN=ab cde f", "CONT=first second",
			      "MULTI=line1\nline2", "EMPTY=", "PLAIN=again", "CRLF=x"};
	for (int i = 0; i < n; i++)
		assert_string_equal(v[i], want[i]);
	assert_null(v[n]);
	/* merged over environment: replaced in place, the rest appended; the last wins */
	char *base[] = {"PLAIN=env", "KEEP=1", NULL};
	char **m = envfile_merge(base, v);
	assert_string_equal(m[0], "PLAIN=again");
	assert_string_equal(m[1], "KEEP=1");
	assert_string_equal(m[2], "SPACED=two words");
	size_t k = 0;
	while (m[k])
		k++;
	assert_int_equal(k, 10);
	free(m);
	free(v);

	struct {
		const char *text, *why;
	} bad[] = {
		{"A=1\nnot a pair\n", "line 2: not KEY=VALUE: no '=' on the line"},
		{"1X=2\n", "line 1: not KEY=VALUE: the key starts with a digit"},
		{"K E=1\n", "line 1: not KEY=VALUE: the text before the '=' is not a key"},
		{"B=2\n =1\n", "line 2: not KEY=VALUE: no key before the '='"},
		{"A=1\nB=\"open\n\nC=3\n", "line 2: unterminated double quote"},
		{"A='x\n", "line 1: unterminated single quote"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = put("bad.env", bad[i].text);
		assert_int_equal(envfile_read(p, &v, err, sizeof(err)), -EINVAL);
		assert_null(v);
		if (strncmp(err, bad[i].why, strlen(bad[i].why)))
			fail_msg("'%s' does not start with '%s'", err, bad[i].why);
	}
	/* a byte-order mark first (an editor's): skipped, as in the config file */
	p = put("bom.env", "\xef\xbb\xbf" "C=3\n");
	assert_int_equal(envfile_read(p, &v, err, sizeof(err)), 1);
	assert_string_equal(v[0], "C=3");
	free(v);
	/* a NUL byte: named with its own line */
	char nulpath[PATH_MAX + 16];
	snprintf(nulpath, sizeof(nulpath), "%s/nul.env", dir);
	FILE *f = fopen(nulpath, "w");
	assert_non_null(f);
	fwrite("A=1\n\nB=2\nC=x\0y\nD=4\n", 1, 19, f);
	fclose(f);
	assert_int_equal(envfile_read(nulpath, &v, err, sizeof(err)), -EINVAL);
	assert_null(v);
	assert_string_equal(err, "line 4: NUL byte: an env_file is text");
	char missing[PATH_MAX + 16];
	snprintf(missing, sizeof(missing), "%s/nope.env", dir);
	assert_int_equal(envfile_read(missing, &v, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "No such file or directory");
	/* a FIFO is refused at once: opening it must not wait for a writer */
	snprintf(missing, sizeof(missing), "%s/fifo.env", dir);
	assert_int_equal(mkfifo(missing, 0600), 0);
	alarm(30);
	assert_int_equal(envfile_read(missing, &v, err, sizeof(err)), -EINVAL);
	alarm(0);
	assert_string_equal(err, "not a regular file");
}

static void expect_vec(char **got, const char *const *want)
{
	size_t i = 0;
	for (; want[i]; i++) {
		assert_non_null(got[i]);
		assert_string_equal(got[i], want[i]);
	}
	assert_null(got[i]);
}

/* each key once, in the place it first had (environment's own duplicates too), its last value */
static void test_env_file_merge(void **state)
{
	(void)state;
	char *env[] = {"A=1", "B=2", "A=3", "AB=4", NULL};
	char *add[] = {"C=1", "B=x", "C=2", "D=", "A==eq", NULL};
	char **m = envfile_merge(env, add);
	expect_vec(m, (const char *[]){"A==eq", "B=x", "AB=4", "C=2", "D=", NULL});
	free(m);
	m = envfile_merge(NULL, add);
	expect_vec(m, (const char *[]){"C=2", "B=x", "D=", "A==eq", NULL});
	free(m);
	m = envfile_merge(env, NULL);
	expect_vec(m, (const char *[]){"A=3", "B=2", "AB=4", NULL});
	free(m);
	m = envfile_merge(NULL, NULL);
	expect_vec(m, (const char *[]){NULL});
	free(m);

	/*
	 * An env_file's worth: keys K19999 down to K00000 in env; the file sets
	 * the upper half of them and as many new ones, then every other of the
	 * upper half again.
	 */
	enum { N = 20000, NA = N + N / 4 };
	static char store[(N + NA) * 16], want_store[(N + N / 2) * 16];
	static char *e[N + 1], *a[NA + 1];
	static const char *want[N + N / 2 + 1];
	char *at = store, *w = want_store;
	for (int i = N - 1; i >= 0; i--)
		at += sprintf(e[N - 1 - i] = at, "K%05d=env", i) + 1;
	int na = 0;
	for (int i = N / 2; i < N + N / 2; i++)
		at += sprintf(a[na++] = at, "K%05d=f1", i) + 1;
	for (int i = N / 2; i < N; i += 2)
		at += sprintf(a[na++] = at, "K%05d=f2", i) + 1;
	assert_int_equal(na, NA);
	int k = 0;
	for (int i = N - 1; i >= 0; i--) {
		const char *val = i < N / 2 ? "env" : i % 2 ? "f1" : "f2";
		want[k++] = w;
		w += sprintf(w, "K%05d=%s", i, val) + 1;
	}
	for (int i = N; i < N + N / 2; i++) {
		want[k++] = w;
		w += sprintf(w, "K%05d=f1", i) + 1;
	}
	want[k] = NULL;
	m = envfile_merge(e, a);
	assert_non_null(m);
	for (int i = 0; i < k; i++)
		if (!m[i] || strcmp(m[i], want[i]))
			fail_msg("entry %d: '%s', not '%s'", i, m[i] ? m[i] : "(end)", want[i]);
	assert_null(m[k]);
	free(m);
}

static void test_env_file_key(void **state)
{
	(void)state;
	put("e/web.env", "QUEUE=fromfile\nPATH=/nonexistent-evmon-dir\n");
	put("e/more.env", "QUEUE=second\n");
	struct errlist errs = {0};
	/* PATH from the file is the one the command is looked up in (a problem, not a mistake) */
	struct config *cfg = load_ok("[service:w]\ncommand = true\nenvironment = QUEUE=env A=1\n"
				     "env_file = e/web.env\n");
	expect(&cfg->problems, 0, "main.ini", 2, "true: not found in PATH");
	config_free(cfg);
	put("e/web.env", "QUEUE=fromfile\n");
	cfg = load_ok("[service:w]\ncommand = true\nenvironment = QUEUE=env A=1\n"
				     "env_file = e/web.env -e/missing.env 'e/more.env'\n");
	assert_string_equal(env_of(cfg->svcs[0], "QUEUE"), "second");
	assert_string_equal(env_of(cfg->svcs[0], "A"), "1");
	config_free(cfg);
	assert_null(load("[service:w]\ncommand = true\nenv_file = e/missing.env\n", &errs));
	expect(&errs, 0, "main.ini", 3, "env_file: ");
	assert_non_null(strstr(errs.msgs[0], "e/missing.env: No such file or directory"));
	errlist_free(&errs);
	put("e/bad.env", "OK=1\nbroken line\n");
	assert_null(load("[service:w]\ncommand = true\nenv_file = e/bad.env\n", &errs));
	expect(&errs, 0, "main.ini", 3, "e/bad.env: line 2: not KEY=VALUE: no '=' on the line");
	errlist_free(&errs);
}

static void test_limits_nice_oom(void **state)
{
	(void)state;
	struct config *cfg = load_ok("[service:w]\ncommand = true\nlimit_nofile = 1k\n"
				     "limit_core = 0:infinity\nlimit_cpu = unlimited\nnice = -5\n"
				     "oom_score_adj = 500\n[service:plain]\ncommand = true\n");
	const struct svc_conf *s = cfg->svcs[0];
	assert_int_equal(s->nrlimits, 3);
	assert_int_equal(s->rlimits[0].resource, RLIMIT_NOFILE);
	assert_true(s->rlimits[0].limit.rlim_cur == 1024 && s->rlimits[0].limit.rlim_max == 1024);
	assert_int_equal(s->rlimits[1].resource, RLIMIT_CORE);
	assert_true(s->rlimits[1].limit.rlim_cur == 0 && s->rlimits[1].limit.rlim_max == RLIM_INFINITY);
	assert_true(s->rlimits[2].limit.rlim_cur == RLIM_INFINITY);
	assert_true(s->set_nice && s->nice == -5 && s->set_oom && s->oom_score_adj == 500);
	assert_false(cfg->svcs[1]->set_nice || cfg->svcs[1]->set_oom || cfg->svcs[1]->nrlimits);
	struct svc_build b;
	assert_int_equal(config_build(s, 0, &b), 0);
	assert_true(b.opts.spawn.flags & EVM_SPAWN_NICE);
	assert_true(b.opts.spawn.flags & EVM_SPAWN_OOM_SCORE_ADJ);
	assert_int_equal(b.opts.spawn.nice, -5);
	assert_int_equal(b.opts.spawn.oom_score_adj, 500);
	assert_int_equal(b.opts.spawn.nrlimits, 3);
	config_build_free(&b);
	/* a changed limit is another way to run it */
	assert_false(svc_conf_equal(cfg->svcs[0], cfg->svcs[1]));
	config_free(cfg);

	struct errlist errs = {0};
	assert_null(load("[service:w]\ncommand = true\n"
			 "limit_nofile = 10:5\n"	     /* 3 */
			 "limit_bogus = 1\n"		     /* 4 */
			 "limit_core = lots\n"		     /* 5 */
			 "nice = 20\n"			     /* 6 */
			 "oom_score_adj = -1001\n"	     /* 7 */
			 "limit_nofile = 5\n"		     /* 8 */
			 "[evmon]\nnice = 1\n", &errs));     /* 10 */
	assert_int_equal(errs.n, 7);
	expect(&errs, 0, "main.ini", 3, "limit_nofile: '10:5' is not a limit");
	expect(&errs, 1, "main.ini", 4, "unknown key 'limit_bogus' (limit_ is followed by one of as,");
	expect(&errs, 2, "main.ini", 5, "limit_core: 'lots' is not a limit");
	expect(&errs, 3, "main.ini", 6, "nice: '20' is not a number from -20 to 19");
	expect(&errs, 4, "main.ini", 7, "oom_score_adj: '-1001' is not a number from -1000 to 1000");
	expect(&errs, 5, "main.ini", 8, "duplicate key 'limit_nofile' (first set on line 3)");
	expect(&errs, 6, "main.ini", 10, "nice: only allowed in a [service:NAME] section");
	errlist_free(&errs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_include_sorted_after_the_includer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_include_mistakes_name_their_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_include_twice_and_self, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_regular_files_are_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_include_glob_is_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_is_bounded_in_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_past_the_cap_are_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_file_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_file_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_file_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_nice_oom, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
