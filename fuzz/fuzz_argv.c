/*
 * fuzz_argv.c - the command-line splitter (src/common/argv.c): a `command =`
 * or `environment =` value of the config file, or of `evmon ctl add`.
 *
 * Properties, beyond "no memory error": a failure has a message and no
 * result; every word, quoted by cli_quote, splits back to itself alone; and
 * all the quoted words joined by blanks split back to the same words.
 */
#include "fuzz.h"

#include "argv.h"

static void check_roundtrip(char **words, int n)
{
	size_t cap = 64, len = 0;
	char *joined = malloc(cap);
	FUZZ_CHECK(joined);
	joined[0] = '\0';
	for (int i = 0; i < n; i++) {
		char *q = cli_quote(words[i]);
		FUZZ_CHECK(q);
		char **again;
		const char *err = NULL;
		int m = cli_split(q, &again, &err);
		FUZZ_CHECK(m == 1 && !strcmp(again[0], words[i]) && again[1] == NULL);
		free(again);
		size_t ql = strlen(q);
		while (len + ql + 2 > cap)
			cap *= 2;
		joined = realloc(joined, cap);
		FUZZ_CHECK(joined);
		if (len)
			joined[len++] = ' ';
		memcpy(joined + len, q, ql + 1);
		len += ql;
		free(q);
	}
	char **all;
	const char *err = NULL;
	int m = cli_split(joined, &all, &err);
	FUZZ_CHECK(m == n);
	for (int i = 0; i < n; i++)
		FUZZ_CHECK(!strcmp(all[i], words[i]));
	FUZZ_CHECK(all[n] == NULL);
	free(all);
	free(joined);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size);
	char **words = (char **)1;
	const char *err = NULL;
	int n = cli_split(s, &words, &err);
	if (n < 0) {
		FUZZ_CHECK(n == -1 && err && *err && words == NULL);
	} else {
		FUZZ_CHECK(words && words[n] == NULL);
		for (int i = 0; i < n; i++)
			FUZZ_CHECK(words[i] != NULL);
		check_roundtrip(words, n);
		free(words);
	}
	free(s);
	return 0;
}
