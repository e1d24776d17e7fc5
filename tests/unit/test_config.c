/*
 * test_config.c - the daemon's INI configuration (src/daemon/config.c): values,
 * defaults, and every kind of mistake reported with its file:line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config.h"
#include "confkeys.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[PATH_MAX];
static char path[PATH_MAX + 16];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/evmon-test-config-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/t.ini", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char sub[PATH_MAX + 8];
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	rmdir(sub);
	unlink(path);
	rmdir(dir);
	return 0;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static struct config *load_ok(const char *text)
{
	struct errlist errs = {0};
	struct config *cfg = NULL;
	write_file(text);
	int r = config_load(path, &cfg, &errs);
	for (size_t i = 0; i < errs.n; i++)
		print_message("unexpected: %s\n", errs.msgs[i]);
	assert_int_equal(r, 0);
	assert_int_equal(errs.n, 0);
	assert_non_null(cfg);
	errlist_free(&errs);
	return cfg;
}

/* Load text, expect failure, and return the messages (caller frees). */
static struct errlist load_bad(const char *text)
{
	struct errlist errs = {0};
	struct config *cfg = (struct config *)1;
	write_file(text);
	assert_int_equal(config_load(path, &cfg, &errs), -1);
	assert_null(cfg);
	assert_true(errs.n > 0);
	return errs;
}

/* Some message is "path:line: ...fragment..." */
static void expect_msg(const struct errlist *e, int line, const char *fragment)
{
	char prefix[PATH_MAX + 40];
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	for (size_t i = 0; i < e->n; i++)
		if (!strncmp(e->msgs[i], prefix, strlen(prefix)) && strstr(e->msgs[i], fragment))
			return;
	for (size_t i = 0; i < e->n; i++)
		print_message("got: %s\n", e->msgs[i]);
	fail_msg("no message '%s...%s'", prefix, fragment);
}

static void test_minimal(void **state)
{
	(void)state;
	struct config *cfg = load_ok("[service:web]\ncommand = sleep 100\n");
	assert_int_equal(cfg->nsvcs, 1);
	assert_int_equal(cfg->ninstances, 1);
	struct svc_conf *c = cfg->svcs[0];
	assert_string_equal(c->name, "web");
	assert_int_equal(c->line, 1);
	assert_string_equal(c->argv[0], "sleep");
	assert_string_equal(c->argv[1], "100");
	assert_null(c->argv[2]);
	assert_null(c->env);
	assert_null(c->directory);
	assert_false(c->set_uid);
	assert_true(c->pol.autostart);
	assert_int_equal(c->pol.restart, EVM_RESTART_ON_FAILURE);
	assert_int_equal(c->pol.set, 0);
	assert_null(cfg->socket);
	struct svc_build b;
	assert_int_equal(config_build(c, 0, &b), 0);
	assert_string_equal(b.opts.name, "web");
	assert_string_equal(b.opts.spawn.env_extra[0], "EVMON_SERVICE=web");
	assert_null(b.opts.spawn.env_extra[1]);
	assert_int_equal(b.opts.kill_mode, EVM_KILL_TREE); /* a stop ends the whole tree */
	assert_null(b.opts.spawn.envp); /* the daemon's environment is inherited, not copied */
	assert_int_equal(b.opts.spawn.flags & EVM_SPAWN_SETSID, EVM_SPAWN_SETSID);
	config_build_free(&b);
	config_free(cfg);
}

static void test_all_keys(void **state)
{
	(void)state;
	struct config *cfg = load_ok(
		"# a comment\n"
		"; another\n"
		"[evmon]\n"
		"socket = run/evmon.sock\n"
		"log_dir = /var/log/x\n"
		"\n"
		"[service:job]\n"
		"command = /bin/sh -c 'exit 0; echo never'\n"
		"directory = /tmp\n"
		"environment = A=1 \"B=two words\" C=\n"
		"umask = 027\n"
		"restart = on-failure:5\n"
		"exit_codes = 0, 2,3\n"
		"start_secs = 2.5\n"
		"start_retries = 0\n"
		"backoff_initial = 250ms\n"
		"backoff_max = 1m\n"
		"backoff_jitter = 10\n"
		"stable_secs = 0\n"
		"stop_signal = SIGINT\n"
		"stop_timeout = 1h\n"
		"kill_group = yes\n"
		"autostart = off\n"
		"instances = 3\n"
		"stdout = null\n"
		"stderr = log\n");
	assert_string_equal(cfg->socket, strcat(strcpy((char[PATH_MAX + 32]){0}, dir), "/run/evmon.sock"));
	assert_string_equal(cfg->log_dir, "/var/log/x");
	struct svc_conf *c = cfg->svcs[0];
	assert_int_equal(c->line, 7);
	assert_string_equal(c->argv[2], "exit 0; echo never");
	assert_string_equal(c->directory, "/tmp");
	assert_string_equal(c->env[0], "A=1");
	assert_string_equal(c->env[1], "B=two words");
	assert_string_equal(c->env[2], "C=");
	assert_null(c->env[3]);
	const struct svc_policy *p = &c->pol;
	assert_true(p->set_umask);
	assert_int_equal(p->umask, 027);
	assert_int_equal(p->restart, EVM_RESTART_ON_FAILURE);
	assert_int_equal(p->max_retries, 5);
	assert_true(p->codes_set);
	assert_int_equal(p->codes[0], (1u << 0) | (1u << 2) | (1u << 3));
	assert_int_equal(p->start_ms, 2500);
	assert_int_equal(p->start_retries, 0);
	assert_int_equal(p->backoff_initial_ms, 250);
	assert_int_equal(p->backoff_max_ms, 60000);
	assert_int_equal(p->backoff_jitter, 10);
	assert_int_equal(p->stable_ms, 0);
	assert_int_equal(p->stop_signal, SIGINT);
	assert_int_equal(p->stop_timeout_ms, 3600000);
	assert_int_equal(p->kill_mode, EVM_KILL_GROUP); /* kill_group = yes */
	assert_false(p->autostart);
	assert_int_equal(c->instances, 3);
	assert_int_equal(cfg->ninstances, 3);
	assert_int_equal(p->out[0], OUT_NULL);
	assert_int_equal(p->out[1], OUT_LOG);
	unsigned want = EVM_SVC_START_MS | EVM_SVC_START_RETRIES | EVM_SVC_BACKOFF_INITIAL |
			EVM_SVC_BACKOFF_MAX | EVM_SVC_STABLE_MS | EVM_SVC_STOP_TIMEOUT |
			EVM_SVC_MAX_RETRIES;
	assert_int_equal(p->set, want);

	/* what the library gets */
	struct svc_build b;
	assert_int_equal(config_build(c, 2, &b), 0);
	assert_string_equal(b.opts.name, "job:2");
	assert_int_equal(b.opts.nsuccess_codes, 3);
	assert_int_equal(b.opts.success_codes[2], 3);
	assert_int_equal(b.opts.spawn.flags & EVM_SPAWN_UMASK, EVM_SPAWN_UMASK);
	assert_int_equal(b.opts.stop_signal, SIGINT);
	assert_int_equal(b.opts.kill_mode, EVM_KILL_GROUP);
	char *const *e = b.opts.spawn.env_extra;
	assert_non_null(e);
	assert_string_equal(e[0], "A=1");
	assert_string_equal(e[3], "EVMON_SERVICE=job:2");
	assert_string_equal(e[4], "EVMON_INSTANCE=2");
	assert_null(e[5]);
	assert_null(b.opts.spawn.envp);
	config_build_free(&b);
	config_free(cfg);
}

static void test_defaults_from_evmon(void **state)
{
	(void)state;
	/* [evmon] comes last but still provides the defaults; a service overrides */
	struct config *cfg = load_ok("[service:a]\ncommand = true\n"
				     "[service:b]\ncommand = true\nstop_timeout = 1\n"
				     "[evmon]\nstop_timeout = 3\nrestart = always\n");
	assert_int_equal(cfg->svcs[0]->pol.stop_timeout_ms, 3000);
	assert_int_equal(cfg->svcs[0]->pol.restart, EVM_RESTART_ALWAYS);
	assert_int_equal(cfg->svcs[1]->pol.stop_timeout_ms, 1000);
	assert_int_equal(cfg->svcs[1]->pol.restart, EVM_RESTART_ALWAYS);
	config_free(cfg);
}

/* kill_mode, its default in [evmon], and kill_group as its older spelling */
static void test_kill_mode(void **state)
{
	(void)state;
	struct config *cfg = load_ok("[evmon]\nkill_mode = process\n"
				     "[service:a]\ncommand = true\n"
				     "[service:b]\ncommand = true\nkill_mode = tree\n"
				     "[service:c]\ncommand = true\nkill_mode = group\n"
				     "[service:d]\ncommand = true\nkill_group = false\n");
	static const enum evm_kill_mode want[] = {EVM_KILL_PROCESS, EVM_KILL_TREE, EVM_KILL_GROUP,
						  EVM_KILL_PROCESS};
	for (int i = 0; i < 4; i++) {
		struct svc_build b;
		assert_int_equal(config_build(cfg->svcs[i], 0, &b), 0);
		assert_int_equal(b.opts.kill_mode, want[i]);
		config_build_free(&b);
	}
	config_free(cfg);
	struct errlist e = load_bad("[service:a]\ncommand = true\nkill_mode = all\n");
	expect_msg(&e, 3, "kill_mode: 'all' is not one of process, group, tree");
	errlist_free(&e);
}

static void test_continuation_and_comments(void **state)
{
	(void)state;
	struct config *cfg = load_ok("[service:a]\n"
				     "command = sh -c\n"
				     "   'echo one ; echo two'\n"
				     "environment = A=1\n"
				     "  B=2\n"
				     "; comment between keys\n"
				     "exit_codes = 0\n");
	struct svc_conf *c = cfg->svcs[0];
	assert_string_equal(c->argv[2], "echo one ; echo two");
	assert_string_equal(c->env[1], "B=2");
	config_free(cfg);
}

/*
 * A line indented deeper than its key's continues the value (over blank
 * lines, as configparser has it), but never as a section header: a whole indented [service:b]
 * was words of a's command. An indented "key = value" of ours under a
 * value is refused (it would be words of that value), not under
 * environment. A value of thousands of lines joins in linear time.
 */
static void test_indented_lines(void **state)
{
	(void)state;
	struct config *cfg = load_ok("[service:a]\n"
				     "command = sh -c 'exec sleep 100'\n"
				     "\n"
				     "  [service:b]\n"
				     "  command = sleep 200\n"
				     "restart = always\n"
				     "health_tcp =\n"
				     "  [::1]:8080\n" /* a value's word, not a header */
				     "    [service:c]\n"
				     "command = sleep\n"
				     "  300 --x=1\n"
				     "\n"			/* a blank line between: the value goes on */
				     "  --y\n"
				     "environment =\n"
				     "  user=alice\n"	/* a KEY=VALUE word, not the key user */
				     "  PATH=/bin\n");
	assert_int_equal(cfg->nsvcs, 3);
	assert_null(cfg->svcs[0]->argv[3]);
	assert_string_equal(cfg->svcs[1]->argv[1], "200");
	assert_null(cfg->svcs[1]->argv[2]);
	assert_int_equal(cfg->svcs[1]->pol.restart, EVM_RESTART_ALWAYS);
	assert_string_equal(cfg->svcs[2]->argv[2], "--x=1");
	assert_string_equal(cfg->svcs[2]->argv[3], "--y");
	assert_string_equal(cfg->svcs[2]->env[0], "user=alice");
	config_free(cfg);
	/* a file indented as a whole (a heredoc, a template): lines as deep as their key's are keys */
	cfg = load_ok("  [service:a]\n"
		      "  command = sleep\n"
		      "      100\n"
		      "  restart = always\n");
	assert_string_equal(cfg->svcs[0]->argv[1], "100");
	assert_null(cfg->svcs[0]->argv[2]);
	assert_int_equal(cfg->svcs[0]->pol.restart, EVM_RESTART_ALWAYS);
	config_free(cfg);
	struct errlist e = load_bad("[service:a]\n"		  /* 1 */
				    "command = sleep 100\n"	  /* 2 */
				    "  restart = always\n");	  /* 3 */
	expect_msg(&e, 3, "indented 'restart = always' continues the value of line 2; write it "
		   "unindented to set restart");
	errlist_free(&e);
	size_t n = 20000, len = 0;
	char *big = malloc(n * 40 + 64);
	assert_non_null(big);
	len += (size_t)sprintf(big, "[service:a]\ncommand = echo\n");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(big + len, "  word%zu\n", i);
	cfg = load_ok(big);
	assert_string_equal(cfg->svcs[0]->argv[n], "word19999");
	config_free(cfg);
	free(big);
}

static void test_relative_paths(void **state)
{
	(void)state;
	char sub[PATH_MAX + 8], want[PATH_MAX + 8];
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	mkdir(sub, 0755);
	struct config *cfg = load_ok("[evmon]\nlog_dir = logs\n"
				     "[service:a]\ncommand = true\ndirectory = sub\n");
	assert_string_equal(cfg->svcs[0]->directory, sub);
	snprintf(want, sizeof(want), "%s/logs", dir);
	assert_string_equal(cfg->log_dir, want);
	config_free(cfg);
}

static void test_user(void **state)
{
	(void)state;
	struct passwd *pw = getpwnam("nobody");
	if (!pw) {
		print_message("SKIP test_user: no user nobody\n");
		skip();
	}
	struct config *cfg = NULL;
	struct errlist errs = {0};
	write_file("[service:a]\ncommand = true\nuser = nobody\n");
	int r = config_load(path, &cfg, &errs);
	if (geteuid() != 0 && geteuid() != pw->pw_uid) { /* (as nobody it is no switch) */
		assert_int_equal(r, -1);
		expect_msg(&errs, 3, "cannot switch");
		errlist_free(&errs);
		return;
	}
	assert_int_equal(r, 0);
	struct svc_conf *c = cfg->svcs[0];
	assert_true(c->set_uid);
	assert_true(c->set_gid);
	assert_int_equal(c->uid, pw->pw_uid);
	assert_int_equal(c->gid, pw->pw_gid);
	assert_true(c->ngroups >= 1);
	struct svc_build b;
	assert_int_equal(config_build(c, 0, &b), 0);
	assert_int_equal(b.opts.spawn.flags & (EVM_SPAWN_SETUID | EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS),
			 EVM_SPAWN_SETUID | EVM_SPAWN_SETGID | EVM_SPAWN_SETGROUPS);
	config_build_free(&b);
	config_free(cfg);
}

static void test_every_mistake_with_line(void **state)
{
	(void)state;
	struct errlist e = load_bad("[evmon]\n"				      /* 1 */
				    "bogus = 1\n"			      /* 2 */
				    "command = x\n"			      /* 3 */
				    "[service:a]\n"			      /* 4 */
				    "command = true\n"			      /* 5 */
				    "restart = sometimes\n"		      /* 6 */
				    "start_secs = soon\n"		      /* 7 */
				    "stop_signal = SIGNOPE\n"		      /* 8 */
				    "kill_group = maybe\n"		      /* 9 */
				    "exit_codes = 0,256\n"		      /* 10 */
				    "instances = 0\n"			      /* 11 */
				    "umask = 999\n"			      /* 12 */
				    "stdout = file\n"			      /* 13 */
				    "command = false\n"			      /* 14 */
				    "[service:a]\n"			      /* 15 */
				    "command = true\n"			      /* 16 */
				    "[service:b]\n"			      /* 17 */
				    "directory = /tmp\n"		      /* 18 */
				    "[service:c]\n"			      /* 19 */
				    "command = true\n"			      /* 20 */
				    "user = no-such-user-evmon\n"	      /* 21 */
				    "[service:d]\n"			      /* 22 */
				    "command = no-such-program-evmon --x\n"   /* 23 */
				    "[service:e]\n"			      /* 24 */
				    "command = prog > out\n"		      /* 25 */
				    "[srv:f]\n"				      /* 26 */
				    "[service:bad/name]\n"		      /* 27 */
				    "[service:g]\n"			      /* 28 */
				    "command = /etc/passwd\n"		      /* 29 */
				    "directory = /no/such/dir\n"	      /* 30 */
				    "just some words\n"			      /* 31 */
				    "[service:h]\n"			      /* 32 */
				    "command = true\n"			      /* 33 */
				    "stderr = log\n"			      /* 34 */
				    "socket = /x\n"			      /* 35 */
				    "[service:i]\n"			      /* 36 */
				    "command = true\n"			      /* 37 */
				    "max_retries = 2\n"		      /* 38 */
				    "restart = on-failure:3\n"	      /* 39 */
				    "[service:j]]\n"			      /* 40 */
				    "command: true\n");		      /* 41 */
	expect_msg(&e, 2, "unknown key 'bogus'");
	expect_msg(&e, 3, "only allowed in a [service:NAME]");
	expect_msg(&e, 6, "restart: 'sometimes'");
	expect_msg(&e, 7, "start_secs: 'soon' is not a duration");
	expect_msg(&e, 8, "stop_signal: 'SIGNOPE' is not a signal");
	expect_msg(&e, 9, "kill_group: 'maybe' is not a boolean");
	expect_msg(&e, 10, "exit_codes");
	expect_msg(&e, 11, "instances");
	expect_msg(&e, 12, "umask");
	expect_msg(&e, 13, "stdout: 'file'");
	expect_msg(&e, 14, "duplicate key 'command' (first set on line 5)");
	expect_msg(&e, 15, "duplicate service 'a' (first on line 4)");
	expect_msg(&e, 17, "service b: missing 'command'");
	expect_msg(&e, 25, "sh -c");
	expect_msg(&e, 26, "unknown section [srv:f]");
	expect_msg(&e, 27, "bad service name 'bad/name'");
	expect_msg(&e, 31, "expected 'key = value'");
	expect_msg(&e, 34, "needs log_dir");
	expect_msg(&e, 35, "socket: only allowed in [evmon]");
	expect_msg(&e, 38, "max_retries: the section's restart = on-failure:3 (line 39) sets it already");
	expect_msg(&e, 40, "text after the section header: ']'");
	expect_msg(&e, 41, "expected 'key = value', got 'command: true' (':' is not a delimiter here)");
	errlist_free(&e);
	/* an empty path meant the file's directory (a socket, a pidfile there: refused later) */
	e = load_bad("[evmon]\nsocket =\n[service:a]\ncommand = true\ndirectory =\npidfile=\n");
	expect_msg(&e, 2, "socket: empty: a path is needed");
	expect_msg(&e, 5, "directory: empty: a path is needed");
	expect_msg(&e, 6, "pidfile: empty: a path is needed");
	errlist_free(&e);
	/* a key with a blank (a quote gone astray) passed on before; dots and dashes are keys */
	e = load_bad("[service:a]\ncommand = true\nenvironment = 'K E=1' discovery.type=x my-var=1\n");
	expect_msg(&e, 3, "'K E=1' is not KEY=VALUE");
	assert_int_equal(e.n, 1);
	errlist_free(&e);
	/* ids that cannot be: mistakes, not a machine lacking a user */
	e = load_bad("[service:a]\ncommand = true\nuser = -1\n"
		     "[service:b]\ncommand = true\nuser = 4294967296\ngroup = 0\n"
		     "[service:c]\ncommand = true\nuser = root root\n"
		     "[service:d]\ncommand = true\ngroup = a b\n");
	expect_msg(&e, 3, "'-1' is neither a user name nor a uid");
	expect_msg(&e, 6, "'4294967296' is neither a user name nor a uid");
	expect_msg(&e, 10, "'root root' is neither a user name nor a uid");
	expect_msg(&e, 13, "'a b' is neither a group name nor a gid");
	errlist_free(&e);
	/* a uid with a passwd entry takes its group, as its name does; without one, group is needed */
	struct config *byid = load_ok("[service:a]\ncommand = true\nuser = 0\n");
	assert_true(byid->svcs[0]->set_uid && byid->svcs[0]->uid == 0);
	assert_true(byid->svcs[0]->set_gid && byid->svcs[0]->gid == 0);
	config_free(byid);
	e = load_bad("[service:a]\ncommand = true\nuser = 4000000000\n");
	expect_msg(&e, 3, "uid 4000000000 has no passwd entry: also give group");
	errlist_free(&e);
}

/*
 * What the machine lacks is not a mistake: the file loads, each problem is
 * listed with its line, and the service knows its first one.
 */
static void test_environment_problems(void **state)
{
	(void)state;
	struct config *cfg = load_ok("[service:ok]\n"			       /* 1 */
				     "command = true\n"			       /* 2 */
				     "[service:c]\n"				       /* 3 */
				     "command = true\n"			       /* 4 */
				     "user = no-such-user-evmon\n"		       /* 5 */
				     "[service:d]\n"				       /* 6 */
				     "command = no-such-program-evmon --x\n"	       /* 7 */
				     "[service:g]\n"				       /* 8 */
				     "command = /etc/passwd\n"		       /* 9 */
				     "directory = /no/such/dir\n"		       /* 10 */
				     "[service:h]\n"				       /* 11 */
				     "command = true\n"			       /* 12 */
				     "group = no-such-group-evmon\n");	       /* 13 */
	const struct errlist *e = &cfg->problems;
	expect_msg(e, 5, "user: unknown user 'no-such-user-evmon'");
	expect_msg(e, 7, "no-such-program-evmon: not found in PATH");
	expect_msg(e, 9, "/etc/passwd: not an executable file");
	expect_msg(e, 10, "/no/such/dir: No such file or directory");
	expect_msg(e, 13, "group: unknown group 'no-such-group-evmon'");
	assert_int_equal(e->n, 5);
	assert_null(cfg->svcs[0]->problem);
	assert_false(cfg->svcs[0]->ids_unresolved);
	assert_string_equal(cfg->svcs[1]->problem, "user: unknown user 'no-such-user-evmon'");
	assert_true(cfg->svcs[1]->ids_unresolved);
	assert_false(cfg->svcs[1]->set_uid);
	assert_false(cfg->svcs[2]->ids_unresolved);
	assert_non_null(strstr(cfg->svcs[3]->problem, "directory: /no/such/dir"));
	assert_true(cfg->svcs[4]->ids_unresolved);
	/* looked up again: still unknown, with the reason */
	char msg[200];
	assert_int_equal(conf_resolve_ids(cfg->svcs[1], msg, sizeof(msg)), -ENOENT);
	assert_string_equal(msg, "user: unknown user 'no-such-user-evmon'");
	assert_true(cfg->svcs[1]->ids_unresolved);
	/* a user that exists now resolves */
	free(cfg->svcs[1]->user);
	cfg->svcs[1]->user = strdup("root");
	assert_int_equal(conf_resolve_ids(cfg->svcs[1], msg, sizeof(msg)), 0);
	assert_false(cfg->svcs[1]->ids_unresolved);
	assert_true(cfg->svcs[1]->set_uid);
	assert_int_equal(cfg->svcs[1]->uid, 0);
	config_free(cfg);
}

static void test_syntax_errors(void **state)
{
	(void)state;
	struct errlist e = load_bad("key = before any section\n"
				    "[service:a\n"
				    "[service:ok]\n"
				    "command = true\n");
	expect_msg(&e, 1, "outside of any section");
	expect_msg(&e, 2, "without ']'");
	errlist_free(&e);

	/* a line too long for the parser is reported, and later lines keep their numbers */
	size_t n = 70000;
	char *big = malloc(n + 200);
	strcpy(big, "[service:a]\ncommand = true\nenvironment = A=");
	size_t l = strlen(big);
	memset(big + l, 'x', n);
	strcpy(big + l + n, "\nbogus = 1\n");
	e = load_bad(big);
	free(big);
	expect_msg(&e, 3, "line longer than");
	expect_msg(&e, 4, "unknown key 'bogus'");
	errlist_free(&e);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct errlist errs = {0};
	struct config *cfg;
	assert_int_equal(config_load("/no/such/evmon.ini", &cfg, &errs), -1);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.msgs[0], "/no/such/evmon.ini: No such file or directory");
	errlist_free(&errs);
}

static void test_equal(void **state)
{
	(void)state;
	struct config *a = load_ok("[service:a]\ncommand = sleep 1\nstop_timeout = 2\n"
				   "[service:b]\ncommand = sleep 1\n");
	struct config *b = load_ok("[evmon]\nstop_timeout = 2\n"
				   "[service:a]\ncommand = sleep  '1'\n"
				   "[service:b]\ncommand = sleep 2\n");
	assert_true(svc_conf_equal(a->svcs[0], b->svcs[0]));   /* same content, other spelling */
	assert_false(svc_conf_equal(a->svcs[1], b->svcs[1]));  /* argv differs */
	config_free(b);
	b = load_ok("[service:a]\ncommand = sleep 1\nstop_timeout = 2\nrestart = always\n");
	assert_false(svc_conf_equal(a->svcs[0], b->svcs[0]));
	config_free(b);
	b = load_ok("[service:a]\ncommand = sleep 1\nstop_timeout = 2\nenvironment = X=1\n");
	assert_false(svc_conf_equal(a->svcs[0], b->svcs[0]));
	config_free(b);
	config_free(a);
}

static void test_from_pairs(void **state)
{
	(void)state;
	struct errlist errs = {0};
	const struct conf_kv kv[] = {{"command", "sleep 5"}, {"restart", "always"}};
	struct svc_conf *c = config_service(NULL, "added", kv, 2, "add", &errs, NULL);
	assert_non_null(c);
	assert_int_equal(errs.n, 0);
	assert_string_equal(c->argv[0], "sleep");
	assert_int_equal(c->pol.restart, EVM_RESTART_ALWAYS);
	svc_conf_unref(c);

	const struct conf_kv bad[] = {{"command", "sleep 5"}, {"wat", "1"}};
	assert_null(config_service(NULL, "x", bad, 2, "add", &errs, NULL));
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.msgs[0], "add: unknown key 'wat'");
	errlist_free(&errs);
	assert_null(config_service(NULL, "a b", kv, 2, "add", &errs, NULL));
	assert_non_null(strstr(errs.msgs[0], "bad service name"));
	errlist_free(&errs);
	assert_null(config_service(NULL, "nocmd", NULL, 0, "add", &errs, NULL));
	assert_non_null(strstr(errs.msgs[0], "missing 'command'"));
	errlist_free(&errs);
}

static void test_nul_byte(void **state)
{
	(void)state;
	/* fputs would stop at the NUL: write the bytes */
	static const char text[] = "[service:a]\ncommand = /bin/echo visible\0 hidden\n"
				   "[service:b]\ncommand = /bin/true\n#\0\0\n";
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
	fclose(f);
	struct errlist errs = {0};
	struct config *cfg = (struct config *)1;
	assert_int_equal(config_load(path, &cfg, &errs), -1);
	assert_null(cfg);
	assert_int_equal(errs.n, 2); /* one per line, however many NULs */
	expect_msg(&errs, 2, "NUL byte in the line");
	expect_msg(&errs, 5, "NUL byte in the line");
	errlist_free(&errs);
}

/* Every key of the table is documented in evmon.ini(5) as "*key* = ...". */
static void test_keys_documented(void **state)
{
	(void)state;
	FILE *f = fopen("man/evmon.ini.5.scd", "r");
	if (!f) {
		print_message("SKIP test_keys_documented: man/evmon.ini.5.scd not found (not run from the source tree)\n");
		skip();
	}
	static char man[65536];
	size_t n = fread(man, 1, sizeof(man) - 1, f);
	fclose(f);
	man[n] = '\0';
	for (int k = 0; k < CK_COUNT; k++) {
		char want[64];
		const char *name = conf_key_name((enum conf_key)k);
		size_t len = strlen(name);
		if (name[len - 1] == '*') /* a family: "*limit_RESOURCE* = " */
			snprintf(want, sizeof(want), "\n*%.*sRESOURCE* = ", (int)len - 1, name);
		else
			snprintf(want, sizeof(want), "\n*%s* = ", name);
		if (!strstr(man, want))
			fail_msg("key %s is not documented in man/evmon.ini.5.scd", conf_key_name(k));
	}
	assert_null(conf_key_name(CK_COUNT));
}

static void test_pairs_repeated(void **state)
{
	(void)state;
	struct errlist errs = {0};
	const struct conf_kv kv[] = {{"command", "sleep 5"}, {"wat", "1"}, {"command", "x"},
				     {"wat", "2"}};
	assert_null(config_service(NULL, "x", kv, 4, "add", &errs, NULL));
	assert_int_equal(errs.n, 3);
	assert_string_equal(errs.msgs[0], "add: unknown key 'wat'");
	assert_string_equal(errs.msgs[1], "add: duplicate key 'command'");
	assert_string_equal(errs.msgs[2], "add: duplicate key 'wat'");
	errlist_free(&errs);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(config_valid_name("web"));
	assert_true(config_valid_name("a-b_c.d@e9"));
	assert_false(config_valid_name(""));
	assert_false(config_valid_name("a:b"));
	assert_false(config_valid_name("a/b"));
	assert_false(config_valid_name("a b"));
	char longname[200];
	memset(longname, 'a', 129);
	longname[129] = 0;
	assert_false(config_valid_name(longname));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_minimal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults_from_evmon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_continuation_and_comments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indented_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_mistake_with_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_environment_problems, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_equal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_from_pairs, setup, teardown),
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_nul_byte, setup, teardown),
		cmocka_unit_test(test_keys_documented),
		cmocka_unit_test(test_pairs_repeated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
