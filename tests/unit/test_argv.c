/*
 * test_argv.c - shell-like command splitting (src/common/argv.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "argv.h"

#include <stdlib.h>
#include <string.h>

/* split s and compare with the expected words (NULL-terminated) */
static void expect_words(const char *s, const char *const *want)
{
	char **w;
	const char *err = NULL;
	int n = cli_split(s, &w, &err);
	if (n < 0)
		fail_msg("split of [%s] failed: %s", s, err);
	int k = 0;
	while (want[k])
		k++;
	assert_int_equal(n, k);
	for (int i = 0; i < n; i++)
		assert_string_equal(w[i], want[i]);
	assert_null(w[n]);
	free(w);
}

static void expect_error(const char *s, const char *fragment)
{
	char **w = (char **)1;
	const char *err = NULL;
	assert_int_equal(cli_split(s, &w, &err), -1);
	assert_null(w);
	assert_non_null(err);
	if (!strstr(err, fragment))
		fail_msg("error for [%s] is [%s], expected it to mention [%s]", s, err, fragment);
}

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_plain_words(void **state)
{
	(void)state;
	expect_words("sleep 10", W("sleep", "10"));
	expect_words("  a\tb \n c  ", W("a", "b", "c"));
	expect_words("/usr/bin/env -i FOO=bar prog", W("/usr/bin/env", "-i", "FOO=bar", "prog"));
}

static void test_empty(void **state)
{
	(void)state;
	char **w;
	const char *err;
	assert_int_equal(cli_split("", &w, &err), 0);
	assert_null(w[0]);
	free(w);
	assert_int_equal(cli_split("   \t ", &w, &err), 0);
	free(w);
}

static void test_quotes(void **state)
{
	(void)state;
	expect_words("sh -c 'echo a; echo b | wc'", W("sh", "-c", "echo a; echo b | wc"));
	expect_words("echo \"a  b\" 'c\"d' \"e'f\"", W("echo", "a  b", "c\"d", "e'f"));
	expect_words("a'b'\"c\"d", W("abcd"));
	expect_words("'' \"\" x", W("", "", "x"));
	/* inside double quotes only \" \\ \$ \` are escapes */
	expect_words("\"a\\\"b\\\\c\\$d\\n\"", W("a\"b\\c$d\\n"));
	/* inside single quotes nothing is */
	expect_words("'a\\b $HOME'", W("a\\b $HOME"));
	expect_words("\"$HOME\"", W("$HOME"));
}

static void test_backslash(void **state)
{
	(void)state;
	expect_words("a\\ b c", W("a b", "c"));
	expect_words("\\'x", W("'x"));
	expect_words("a\\\nb", W("ab"));
	expect_words("\\|", W("|"));
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("echo 'abc", "single quote");
	expect_error("echo \"abc", "double quote");
	expect_error("echo abc\\", "backslash");
	expect_error("prog > out.txt", "shell");
	expect_error("a | b", "sh -c");
	expect_error("a && b", "shell");
	expect_error("a; b", "shell");
	expect_error("echo $HOME", "shell");
	expect_error("echo ${X}", "shell");
	expect_error("echo $(date)", "shell");
	expect_error("echo `date`", "shell");
	/* a lone $ or $1-style text is not an expansion we refuse */
	expect_words("cost 5$ $1", W("cost", "5$", "$1"));
	/* sh's comment: "sleep 100 # keep alive" passed '#', 'keep', 'alive' to sleep */
	expect_error("sleep 100 # keep alive", "'#' starts a word");
	expect_error("#x", "comment");
	expect_words("a#b '#c' \\#d \"#e\"", W("a#b", "#c", "#d", "#e"));
}

static void test_quote_roundtrip(void **state)
{
	(void)state;
	const char *words[] = {"plain", "a b", "it's", "", "$HOME", "a\"b", "x|y", "tab\there",
			       "back\\slash", "'", NULL};
	for (const char **p = words; *p; p++) {
		char *q = cli_quote(*p);
		assert_non_null(q);
		char **w;
		const char *err;
		assert_int_equal(cli_split(q, &w, &err), 1);
		assert_string_equal(w[0], *p);
		free(w);
		free(q);
	}
	char *q = cli_quote("simple-word_1.2");
	assert_string_equal(q, "simple-word_1.2");
	free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_words),  cmocka_unit_test(test_empty),
		cmocka_unit_test(test_quotes),	     cmocka_unit_test(test_backslash),
		cmocka_unit_test(test_errors),	     cmocka_unit_test(test_quote_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
