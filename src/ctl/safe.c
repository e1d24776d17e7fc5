/*
 * safe.c - escape control characters of the daemon's answers (see safe.h).
 */
#include "safe.h"
#include "textsafe.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void safe_line(char *line, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
}

/*
 * in with its control characters and stray bytes escaped (textsafe.h), or
 * NULL: none. An escaped string's backslashes are doubled, so that its
 * escapes are told from what it said (a health check printing "\x1b");
 * a string with nothing to escape is shown as it is.
 */
static char *escaped(const char *in)
{
	size_t n = strlen(in);
	if (!text_needs_escape(in, n))
		return NULL;
	size_t cap = 6 * n + 1; /* \u009b for the 2 bytes of a C1, \xNN for 1, \\ for 1 */
	char *out = cJSON_malloc(cap);
	if (out)
		text_escape(in, n, out, cap, true);
	return out;
}

void safe_put_json(const char *line)
{
	const unsigned char *s = (const unsigned char *)line;
	size_t n = strlen(line);
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(s + i, n - i);
		if (k == 2 && s[i] == 0xc2 && s[i + 1] <= 0x9f)
			printf("\\u%04x", s[i + 1]); /* C1: only inside a string, where the escape is JSON's */
		else if (!k)
			fputs("\\ufffd", stdout); /* a stray byte: U+FFFD, the JSON stays valid */
		else
			fwrite(s + i, 1, k, stdout);
		i += k ? k : 1;
	}
	putchar('\n');
}

void safe_tree(cJSON *item)
{
	for (; item; item = item->next) {
		if (cJSON_IsString(item) && item->valuestring) {
			char *e = escaped(item->valuestring);
			if (e) {
				cJSON_free(item->valuestring);
				item->valuestring = e;
			}
		}
		safe_tree(item->child);
	}
}
