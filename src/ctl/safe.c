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

/* the length a lead byte starts (RFC 3629), 0 for none */
static size_t lead_len(unsigned char c)
{
	return c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

size_t safe_terminal(struct safe_carry *k, const char *p, size_t n, char *out, bool last)
{
	unsigned char buf[65536 + 4];
	size_t len = 0, o = 0;
	while (n || k->n) {
		/* the carry and as much of p as fits, one window at a time */
		memcpy(buf, k->b, k->n);
		len = k->n;
		k->n = 0;
		size_t take = n < sizeof(buf) - len ? n : sizeof(buf) - len;
		memcpy(buf + len, p, take);
		len += take;
		p += take;
		n -= take;
		for (size_t i = 0; i < len;) {
			size_t q = utf8_seq(buf + i, len - i), want = lead_len(buf[i]);
			if (!q && want && len - i < want && (n || !last)) {
				size_t j = i + 1;
				while (j < len && (buf[j] & 0xc0) == 0x80)
					j++;
				if (j == len) { /* cut by the end: with the next piece */
					memcpy(k->b, buf + i, len - i);
					k->n = len - i;
					break;
				}
			}
			unsigned char c = buf[i];
			if (q == 2 && c == 0xc2 && buf[i + 1] <= 0x9f) {
				o += (size_t)sprintf(out + o, "\\u%04x", buf[i + 1]);
			} else if (!q || (q == 1 && ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f))) {
				o += (size_t)sprintf(out + o, "\\x%02x", c);
				q = 1;
			} else {
				memcpy(out + o, buf + i, q);
				o += q;
			}
			i += q;
		}
		if (k->n && !n)
			break;
	}
	return o;
}
