/*
 * test_common.c - what the evmon command's programs share (src/common):
 * the hash table, the duration grammar, the PATH walk, signal names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli.h"
#include "duration.h"
#include "hashmap.h"
#include "pathfind.h"
#include "safe.h"
#include "textsafe.h"

#include <errno.h>
#include <signal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct item {
	char name[16];
	int value;
	struct hnode node;
};

static struct item *find(struct hashmap *m, const char *name)
{
	struct hnode *n = hmap_get(m, name);
	return n ? HMAP_ENTRY(n, struct item, node) : NULL;
}

static void test_hashmap(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct hashmap m = {0};
	struct item *items = calloc(N, sizeof(*items));
	assert_non_null(items);
	assert_null(find(&m, "x"));
	for (int i = 0; i < N; i++) {
		snprintf(items[i].name, sizeof(items[i].name), "s%d", i);
		items[i].value = i;
		assert_int_equal(hmap_add(&m, &items[i].node, items[i].name), 0);
	}
	assert_int_equal(m.n, N);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", i);
		struct item *it = find(&m, name);
		assert_non_null(it);
		assert_int_equal(it->value, i);
	}
	assert_null(find(&m, "s5000"));
	/* every node once in an iteration */
	size_t seen = 0;
	long sum = 0;
	for (struct hnode *n = hmap_next(&m, NULL); n; n = hmap_next(&m, n)) {
		seen++;
		sum += HMAP_ENTRY(n, struct item, node)->value;
	}
	assert_int_equal(seen, N);
	assert_int_equal(sum, (long)N * (N - 1) / 2);
	/* the odd ones out: the even ones stay */
	for (int i = 1; i < N; i += 2)
		hmap_del(&m, &items[i].node);
	assert_int_equal(m.n, N / 2);
	assert_null(find(&m, "s1"));
	assert_non_null(find(&m, "s2"));
	hmap_clear(&m);
	assert_null(find(&m, "s2"));
	free(items);
}

static void test_fnv1a(void **state)
{
	(void)state;
	/* the published FNV-1a 64-bit test values */
	if (sizeof(size_t) == 8) {
		assert_true(hmap_hash("") == (size_t)0xcbf29ce484222325ull);
		assert_true(hmap_hash("a") == (size_t)0xaf63dc4c8601ec8cull);
	}
}

static uint64_t dur(const char *s)
{
	uint64_t ms = 12345;
	int r = cli_parse_duration(s, &ms);
	if (r < 0)
		fail_msg("'%s' refused: %d", s, r);
	return ms;
}

static void test_duration(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t ms;
	} good[] = {
		{"0", 0},	    {"2", 2000},	{"2.5", 2500},	   {"2.5s", 2500},
		{".5", 500},	    {"5.", 5000},	{"250ms", 250},	   {"1.5ms", 2}, /* half up */
		{"1.4ms", 1},	    {"0.0005", 1},	{"2m", 120000},	   {"1.5m", 90000},
		{"1h", 3600000},    {"0.0000009h", 3},	{"1.9999999999999s", 2000},
		/* above 0, below half a ms: 1 ms, not 0 (none, to a timeout or a watchdog) */
		{"0.0004", 1},	    {"0.4ms", 1},	{"0.0", 0},	   {"0.000ms", 0},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (dur(good[i].s) != good[i].ms)
			fail_msg("'%s': %llu ms, not %llu", good[i].s, (unsigned long long)dur(good[i].s),
				 (unsigned long long)good[i].ms);
	assert_true(dur("10000000000000ms") == DURATION_MAX_MS);
	assert_true(dur("10000000000s") == DURATION_MAX_MS);
	assert_true(dur("277777.7h") == 999999720000ull);
	const char *bad[] = {"", ".", "s", "ms", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1..2",
			     "1.2.3", "5d", "1S", "1sec", "inf", "nan", "1mss", NULL};
	for (const char **b = bad; *b; b++) {
		uint64_t ms = 7;
		if (cli_parse_duration(*b, &ms) != -EINVAL)
			fail_msg("'%s' accepted", *b);
		assert_int_equal(ms, 7);
	}
	uint64_t ms;
	assert_int_equal(cli_parse_duration("10000000000001ms", &ms), -ERANGE);
	assert_int_equal(cli_parse_duration("10000000001s", &ms), -ERANGE);
	/* past 2^64 ns: was taken (as that) */
	assert_int_equal(cli_parse_duration("18446744074s", &ms), -ERANGE);
	assert_int_equal(cli_parse_duration("1000000000000000ms", &ms), -ERANGE);
	assert_int_equal(cli_parse_duration("300000000h", &ms), -ERANGE);
	assert_int_equal(cli_parse_duration("99999999999999999999999999", &ms), -ERANGE);
}

static void touch(const char *path, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_pathfind(void **state)
{
	(void)state;
	char dir[] = "/tmp/evmon-test-path-XXXXXX", a[64], b[64], buf[256], search[160];
	assert_non_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	assert_int_equal(mkdir(a, 0700), 0);
	assert_int_equal(mkdir(b, 0700), 0);
	char plain[96], ex_a[96], ex_b[96], sub[96];
	snprintf(plain, sizeof(plain), "%s/prog", a); /* not executable: skipped, as exec does */
	snprintf(ex_b, sizeof(ex_b), "%s/prog", b);
	snprintf(ex_a, sizeof(ex_a), "%s/only-a", a);
	snprintf(sub, sizeof(sub), "%s/dir", b); /* a directory is not a program */
	touch(plain, 0644);
	touch(ex_b, 0755);
	touch(ex_a, 0700);
	assert_int_equal(mkdir(sub, 0755), 0);
	snprintf(search, sizeof(search), "/nonexistent:%s:%s", a, b);
	assert_string_equal(cli_path_find("prog", search, buf, sizeof(buf)), ex_b);
	assert_string_equal(cli_path_find("only-a", search, buf, sizeof(buf)), ex_a);
	assert_null(cli_path_find("dir", search, buf, sizeof(buf)));
	assert_null(cli_path_find("missing", search, buf, sizeof(buf)));
	/* a slash: the name itself, whatever it is */
	assert_string_equal(cli_path_find("./x/y", search, buf, sizeof(buf)), "./x/y");
	/* an empty element is the current directory */
	char cwd[256];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(b), 0);
	assert_string_equal(cli_path_find("prog", "/nonexistent:", buf, sizeof(buf)), "./prog");
	assert_string_equal(cli_path_find("prog", ":/nonexistent", buf, sizeof(buf)), "./prog");
	assert_int_equal(chdir(cwd), 0);
	/* too long for the buffer: not found rather than truncated */
	char small[8];
	assert_null(cli_path_find("prog", b, small, sizeof(small)));
	assert_true(cli_path_executable(ex_b));
	assert_false(cli_path_executable(plain));
	assert_false(cli_path_executable(sub));
	unlink(plain);
	unlink(ex_a);
	unlink(ex_b);
	rmdir(sub);
	rmdir(a);
	rmdir(b);
	rmdir(dir);
}

/* signal names in any case, with or without SIG; nothing else (digits are not letters) */
static void test_signal_names(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int sig;
	} ok[] = {{"TERM", SIGTERM}, {"term", SIGTERM}, {"SigTerm", SIGTERM}, {"sigterm", SIGTERM},
		  {"15", SIGTERM},   {"usr1", SIGUSR1},	 {"SIGUSR2", SIGUSR2},	 {"cld", SIGCHLD},
		  {"io", SIGIO},     {"VtAlrm", SIGVTALRM}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(cli_parse_signal(ok[i].s, false), ok[i].sig);
	assert_int_equal(cli_parse_signal("rtmin", false), SIGRTMIN);
	assert_int_equal(cli_parse_signal("SIGrtmin+3", false), SIGRTMIN + 3);
	assert_int_equal(cli_parse_signal("RTMAX-1", false), SIGRTMAX - 1);
	static const char *const bad[] = {"", "SIG", "TER", "TERMX", "USRQ", "USR", "usr3", "SIGSIGTERM",
					  "rtmin-1", "RTMAX+1", "RTMIN+99", " TERM", "TERM ", "t\xc9rm", "0"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cli_parse_signal(bad[i], false), -1);
	assert_int_equal(cli_parse_signal("0", true), 0);
}

/* Well-formed UTF-8 passes; controls, C1 and stray bytes come out escaped, on one line. */
static void test_textsafe(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} t[] = {
		{"plain text", "plain text"},
		{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
		{"a\nb\tc\rd", "a\\nb\\tc\\rd"},
		{"\x1b]0;title\x07\x1b[2J", "\\x1b]0;title\\x07\\x1b[2J"},
		{"del\x7f", "del\\x7f"},
		{"csi \xc2\x9b x", "csi \\u009b x"},     /* C1 as UTF-8 */
		{"raw \x9b x", "raw \\x9b x"},		     /* an 8-bit CSI: no sequence */
		{"\xff\xfe", "\\xff\\xfe"},
		{"over \xc0\xaf", "over \\xc0\\xaf"},       /* overlong '/' */
		{"sur \xed\xa0\x80", "sur \\xed\\xa0\\x80"}, /* a surrogate */
		{"big \xf4\x90\x80\x80", "big \\xf4\\x90\\x80\\x80"},
		{"cut \xe2\x82", "cut \\xe2\\x82"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[128];
		size_t n = text_escape(t[i].in, strlen(t[i].in), out, sizeof(out), 0);
		if (strcmp(out, t[i].out))
			fail_msg("text_escape(%s): %s, not %s", t[i].in, out, t[i].out);
		assert_int_equal(n, strlen(out));
	}
	/* backslash: a literal "\x1b" reads back apart from an escaped ESC */
	char out[64];
	text_escape("\\x1b\x1b", 5, out, sizeof(out), TEXT_BACKSLASH);
	assert_string_equal(out, "\\\\x1b\\x1b");
	text_escape("a\\b", 3, out, sizeof(out), 0);
	assert_string_equal(out, "a\\b");
	/* cut at a whole escape or character */
	char small[6];
	assert_int_equal(text_escape("ab\x1b", 3, small, sizeof(small), 0), 2);
	assert_string_equal(small, "ab");
	assert_int_equal(text_escape("ab\\\\", 4, small, sizeof(small), TEXT_BACKSLASH), 4);
	assert_string_equal(small, "ab\\\\");
	assert_int_equal(text_escape("a\xe2\x82\xac", 4, small, 4, 0), 1);
	assert_string_equal(small, "a");
	char scrub[] = "ok \xc3\xa9 \xff \xc2\x9b \xe2\x82";
	utf8_scrub(scrub, strlen(scrub));
	assert_string_equal(scrub, "ok \xc3\xa9 ? \xc2\x9b ??");
	assert_int_equal(utf8_seq((const unsigned char *)"", 0), 0);
}

/* ctl logs to a terminal: lines kept, the rest escaped, a character cut between reads whole */
static void test_safe_terminal(void **state)
{
	(void)state;
	static char out[4 * (65536 + 4) + 1];
	struct safe_carry k = {.n = 0};
	const char *in = "a\x1b]0;t\x07\tb\r\n\\x1b \xc2\x9b caf\xc3\xa9 \xff\n";
	size_t n = safe_terminal(&k, in, strlen(in), out, sizeof(out), false);
	out[n] = '\0';
	assert_string_equal(out, "a\\x1b]0;t\\x07\tb\\r\n\\x1b \\u009b caf\xc3\xa9 \\xff\n");
	assert_int_equal(k.n, 0);
	/* one stream, piece by piece: what comes out of each, and what waits for the next */
	static const struct {
		const char *in;
		size_t n;
		bool last;
		const char *out;
		size_t carry;
	} steps[] = {
		{"x\xe2", 2, false, "x", 1},		 /* the euro sign cut after each byte: waits */
		{"\x82", 1, false, "", 2},
		{"\xac!", 2, false, "\xe2\x82\xac!", 0}, /* then whole */
		{"\xe2\x82", 2, true, "\\xe2\\x82", 0}, /* the end: a cut character is escaped */
		{"\x82\xc3", 2, false, "\\x82", 1},	 /* a stray continuation; a lead byte waits */
		{"", 0, true, "\\xc3", 0},
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		n = safe_terminal(&k, steps[i].in, steps[i].n, out, sizeof(out), steps[i].last);
		out[n] = '\0';
		if (strcmp(out, steps[i].out) || k.n != steps[i].carry)
			fail_msg("step %zu: \"%s\", %zu carried", i, out, k.n);
	}
	/* a whole piece after a carry: every byte escaped, the most out there is */
	static char big[65536];
	memset(big, 0x01, sizeof(big));
	n = safe_terminal(&k, "\xf0\x9f", 2, out, sizeof(out), false);
	assert_int_equal(n + k.n, 2);
	n = safe_terminal(&k, big, sizeof(big), out, sizeof(out), true);
	assert_int_equal(n, 4 * (sizeof(big) + 2));
	assert_int_equal(k.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hashmap),
		cmocka_unit_test(test_safe_terminal),
		cmocka_unit_test(test_fnv1a),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_pathfind),
		cmocka_unit_test(test_textsafe),
		cmocka_unit_test(test_signal_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
