/*
 * safe.c - escape control characters of the daemon's answers (see safe.h).
 */
#include "safe.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void safe_line(char *line, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
}

/* Bytes of the control character at s (C0, DEL, or C1 as UTF-8 C2 80..9F), else 0. */
static size_t control_at(const unsigned char *s)
{
	if (*s < 0x20 || *s == 0x7f)
		return 1;
	if (s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f)
		return 2;
	return 0;
}

static char *escaped(const char *in)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t need = 1;
	bool any = false;
	for (size_t i = 0; s[i]; i++) {
		size_t k = control_at(s + i);
		need += k ? 6 : 1;
		any |= k != 0;
		i += k ? k - 1 : 0;
	}
	if (!any)
		return NULL;
	char *out = cJSON_malloc(need), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; s[i]; i++) {
		size_t k = control_at(s + i);
		if (!k) {
			*o++ = (char)s[i];
		} else if (k == 2) {
			o += sprintf(o, "\\u%04x", s[i + 1]);
			i++;
		} else if (s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
			*o++ = '\\';
			*o++ = s[i] == '\n' ? 'n' : s[i] == '\t' ? 't' : 'r';
		} else {
			o += sprintf(o, "\\x%02x", s[i]);
		}
	}
	*o = '\0';
	return out;
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
