/*
 * confsetlife.c - setters of the keys of a service's lifecycle: its restart
 * policy and exit codes, how it is stopped (stop_signal, kill_mode), what it
 * requires, whether it is essential, when it is ready and what its health
 * checks do (see confset.h).
 */
#include "confset.h"
#include "confvalue.h"

#include "argv.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>

void conf_set_restart(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	(void)field; /* on-failure:N sets max_retries too */
	if (!conf_parse_restart(v, c->pol))
		conf_bad(c, "'%s' is not one of on-failure, on-failure:N, always, never, unless-stopped", v);
}

void conf_set_codes(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!conf_parse_codes(v, field))
		conf_bad(c, "'%s' is not a list of exit codes 0-255 (e.g. 0,2)", v);
	c->pol->codes_set = true;
}

void conf_set_signal(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	int sig = cli_parse_signal(v, false);
	if (sig < 0)
		conf_bad(c, "'%s' is not a signal", v);
	*(int *)field = sig < 0 ? 0 : sig;
}

/* kill_group, the older spelling: true is kill_mode = group, false process */
void conf_set_kill_group(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	bool b;
	if (!conf_parse_bool(v, &b))
		conf_bad(c, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
	else
		*(enum evm_kill_mode *)field = b ? EVM_KILL_GROUP : EVM_KILL_PROCESS;
}

void conf_set_kill_mode(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	static const char *const names[] = {[EVM_KILL_PROCESS] = "process",
					    [EVM_KILL_GROUP] = "group", [EVM_KILL_TREE] = "tree"};
	for (int i = EVM_KILL_PROCESS; i <= EVM_KILL_TREE; i++) {
		if (!strcmp(v, names[i])) {
			*(enum evm_kill_mode *)field = (enum evm_kill_mode)i;
			return;
		}
	}
	conf_bad(c, "'%s' is not one of process, group, tree", v);
}

void conf_set_track(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	if (!strcmp(v, "main") || !strcmp(v, "tree"))
		*(enum evm_track *)field = v[0] == 'm' ? EVM_TRACK_MAIN : EVM_TRACK_TREE;
	else
		conf_bad(c, "'%s' is not one of main, tree", v);
}

/* requires/after: service names, split like a command; the line is kept for later checks. */
void conf_set_deps(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	char ***words = field;
	const char *err = NULL;
	int n = cli_split(v, words, &err);
	if (n < 0)
		conf_bad(c, "%s", err);
	if (n == 0) {
		free(*words);
		*words = NULL;
	}
	c->svc->dep_line[k->arg] = c->line;
}

/* essential = true (when it fails for good) | exit (whenever it exits) | false */
void conf_set_essential(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	bool b;
	if (!strcmp(v, "exit"))
		*(enum essential *)field = ESS_EXIT;
	else if (conf_parse_bool(v, &b))
		*(enum essential *)field = b ? ESS_FAIL : ESS_NO;
	else
		conf_bad(c, "'%s' is not true, false or exit", v);
}

/* ready = started | notify | fd:N | exec:COMMAND */
void conf_set_ready(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	(void)k;
	struct svc_conf *s = c->svc;
	unsigned long n = 0;
	free(s->ready_check);
	s->ready_check = NULL;
	if (!strcmp(v, "started")) {
		s->ready = READY_STARTED;
	} else if (!strcmp(v, "notify")) {
		s->ready = READY_NOTIFY;
	} else if (!strncmp(v, "fd:", 3)) {
		s->ready = READY_FD;
		if (!conf_parse_uint(v + 3, 1023, &n) || n < 3)
			conf_bad(c, "fd:%s: the notification fd is a number from 3 to 1023", v + 3);
		s->ready_fd = (int)n;
	} else if (!strncmp(v, "exec:", 5)) {
		const char *err = NULL;
		s->ready = READY_EXEC;
		int w = cli_split(v + 5, &s->ready_check, &err);
		if (w < 0)
			conf_bad(c, "exec: %s", err);
		else if (w == 0)
			conf_bad(c, "exec: needs a command");
		if (w <= 0) {
			free(s->ready_check);
			s->ready_check = NULL;
		}
	} else {
		conf_bad(c, "'%s' is not started, notify, fd:N or exec:COMMAND", v);
	}
	(void)field;
}

/* health_tcp = HOST:PORT, health_http = http://HOST[:PORT][/PATH] (k->arg: which) */
void conf_set_health_probe(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	struct probe_target *t = field;
	char err[300];
	if (t->kind) { /* the other one was given too: confcheck says so */
		conf_bad(c, "a service has one health check: health_cmd, health_tcp or health_http");
		return;
	}
	if (probe_target_parse((enum probe_kind)k->arg, v, t, err, sizeof(err)) < 0)
		conf_bad(c, "%s", err);
}

/* health_action = none | restart | stop */
void conf_set_health_action(struct conf_ctx *c, const struct keydef *k, const char *v, void *field)
{
	static const char *const words[] = {"none", "restart", "stop"};
	(void)k;
	for (int i = 0; i < 3; i++)
		if (!strcmp(v, words[i])) {
			*(enum health_action *)field = (enum health_action)i;
			return;
		}
	conf_bad(c, "'%s' is not none, restart or stop", v);
}
