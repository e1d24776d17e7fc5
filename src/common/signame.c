/*
 * signame.c - signal names <-> numbers for command lines and config files.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* names in place, not pointers: a table of pointers is relocated data (size of the static init) */
static const struct {
	char name[7];
	unsigned char sig;
} table[] = {
	{"HUP", SIGHUP},   {"INT", SIGINT},	  {"QUIT", SIGQUIT},   {"ILL", SIGILL},
	{"TRAP", SIGTRAP}, {"ABRT", SIGABRT},	  {"IOT", SIGIOT},     {"BUS", SIGBUS},
	{"FPE", SIGFPE},   {"KILL", SIGKILL},	  {"USR1", SIGUSR1},   {"SEGV", SIGSEGV},
	{"USR2", SIGUSR2}, {"PIPE", SIGPIPE},	  {"ALRM", SIGALRM},   {"TERM", SIGTERM},
	{"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CLD", SIGCHLD},    {"CONT", SIGCONT},
	{"STOP", SIGSTOP}, {"TSTP", SIGTSTP},	  {"TTIN", SIGTTIN},   {"TTOU", SIGTTOU},
	{"URG", SIGURG},   {"XCPU", SIGXCPU},	  {"XFSZ", SIGXFSZ},   {"VTALRM", SIGVTALRM},
	{"PROF", SIGPROF}, {"WINCH", SIGWINCH},	  {"IO", SIGIO},       {"POLL", SIGPOLL},
	{"PWR", SIGPWR},   {"SYS", SIGSYS},
};

/*
 * ASCII case-insensitive: is s the n characters of upper (n 0: all of it,
 * and nothing more)? No strncasecmp: its copies for each CPU add 25 kB to
 * the static evmon-init.
 */
static bool is(const char *s, const char *upper, size_t n)
{
	size_t i = 0;
	for (; upper[i] && (!n || i < n); i++)
		if (s[i] != upper[i] && !(upper[i] >= 'A' && upper[i] <= 'Z' && s[i] == upper[i] - 'A' + 'a'))
			return false;
	return n || !s[i];
}

static int parse_uint(const char *s)
{
	if (!*s || strlen(s) > 3)
		return -1;
	for (const char *c = s; *c; c++)
		if (*c < '0' || *c > '9')
			return -1;
	return atoi(s);
}

int cli_parse_signal(const char *s, bool allow_zero)
{
	if (!s || !*s)
		return -1;
	int n = parse_uint(s);
	if (n >= 0)
		return (n == 0 && !allow_zero) || n >= NSIG ? -1 : n;
	if (is(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (is(s, table[i].name, 0))
			return table[i].sig;
	if (is(s, "RTMIN", 5) || is(s, "RTMAX", 5)) {
		bool min = is(s, "RTMIN", 5);
		const char *rest = s + 5;
		int off = 0;
		if (*rest) {
			if (*rest != (min ? '+' : '-'))
				return -1;
			off = parse_uint(rest + 1);
			if (off < 0)
				return -1;
		}
		int sig = min ? SIGRTMIN + off : SIGRTMAX - off;
		return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : -1;
	}
	return -1;
}

const char *cli_signal_name(int sig)
{
	static char rt[16];
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].sig == sig)
			return table[i].name;
	if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
		snprintf(rt, sizeof(rt), "RTMIN+%d", sig - SIGRTMIN);
		return rt;
	}
	return NULL;
}
