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
		text_escape(in, n, out, cap, TEXT_BACKSLASH);
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

/*
 * How many bytes at the end of s[0..n) start a UTF-8 sequence they do not
 * finish: a lead byte, then only continuation bytes, fewer than it wants.
 */
static size_t unfinished(const unsigned char *s, size_t n)
{
	for (size_t back = 1; back <= 3 && back <= n; back++) {
		unsigned char c = s[n - back];
		if ((c & 0xc0) == 0x80)
			continue; /* a continuation byte: its lead is further back */
		size_t want = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		return want > back ? back : 0;
	}
	return 0;
}

size_t safe_terminal(struct safe_carry *k, const char *p, size_t n, char *out, size_t outlen,
		     bool last)
{
	size_t o = 0;
	while (n || k->n) {
		/* the carry and as much of p as fits, one window at a time */
		char buf[65536 + sizeof(k->b)];
		size_t len = k->n, take = n < sizeof(buf) - len ? n : sizeof(buf) - len;
		memcpy(buf, k->b, k->n);
		memcpy(buf + len, p, take);
		len += take;
		p += take;
		n -= take;
		/* a character cut by the end waits for the rest, unless nothing follows */
		k->n = n || !last ? unfinished((const unsigned char *)buf, len) : 0;
		memcpy(k->b, buf + len - k->n, k->n);
		o += text_escape(buf, len - k->n, out + o, outlen - o, TEXT_LINES);
		if (k->n && !n)
			break;
	}
	return o;
}
