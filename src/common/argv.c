/*
 * argv.c - shell-like splitting of command lines (see argv.h).
 *
 * Two passes over the same tokenizer: the first measures (word count and
 * bytes), the second fills one allocation holding the pointer array and the
 * strings, so an argv is a single free() and a single block in memory.
 */
#include "argv.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_meta(char c)
{
	return c && strchr("|&;<>()`", c) != NULL;
}

/*
 * Tokenize s. With buf NULL only count; else write words (NUL-terminated)
 * to buf and their starts to words[]. Returns the word count or -1.
 */
/*
 * The inside of "...", from after the opening quote: literal except for
 * \" \\ \$ \` and backslash-newline. Appends to buf (when not NULL) at
 * *len; returns where the word goes on after the closing quote, or NULL.
 */
static const char *double_quoted(const char *p, char *buf, size_t *len, const char **err)
{
	for (;;) {
		char d = *p;
		if (!d) {
			*err = "unterminated double quote";
			return NULL;
		}
		if (d == '"')
			return p + 1;
		if (d == '\\' && p[1] && strchr("\"\\$`\n", p[1])) {
			p++;
			d = *p;
			if (d == '\n') {
				p++;
				continue;
			}
		}
		if (buf)
			buf[*len] = d;
		(*len)++;
		p++;
	}
}

static int tokenize(const char *s, char *buf, char **words, size_t *bytes, const char **err)
{
	int n = 0;
	size_t len = 0;
	const char *p = s;
	for (;;) {
		while (is_blank(*p))
			p++;
		if (!*p)
			break;
		if (words)
			words[n] = buf + len;
		if (*p == '#') {
			/* sh would skip the rest as a comment; passed on, they were arguments */
			*err = "'#' starts a word: sh would read a comment there, and commands do not run "
			       "in a shell (no comments in a value): quote it, or take the rest out";
			return -1;
		}
		for (;;) {
			char c = *p;
			if (!c || is_blank(c))
				break;
			if (c == '\'') {
				const char *end = strchr(p + 1, '\'');
				if (!end) {
					*err = "unterminated single quote";
					return -1;
				}
				size_t k = (size_t)(end - p - 1);
				if (buf)
					memcpy(buf + len, p + 1, k);
				len += k;
				p = end + 1;
			} else if (c == '"') {
				if (!(p = double_quoted(p + 1, buf, &len, err)))
					return -1;
			} else if (c == '\\') {
				if (!p[1]) {
					*err = "backslash at the end of the line";
					return -1;
				}
				if (p[1] != '\n') {
					if (buf)
						buf[len] = p[1];
					len++;
				}
				p += 2;
			} else if (is_meta(c) ||
				   (c == '$' && (isalpha((unsigned char)p[1]) || p[1] == '_' ||
						 p[1] == '{' || p[1] == '('))) {
				*err = "unquoted shell syntax (| & ; < > ( ) ` $); commands do not run "
				       "in a shell: quote it, or use sh -c '...'";
				return -1;
			} else {
				if (buf)
					buf[len] = c;
				len++;
				p++;
			}
		}
		if (buf)
			buf[len] = '\0';
		len++;
		n++;
	}
	*bytes = len;
	return n;
}

int cli_split(const char *s, char ***out, const char **err)
{
	size_t bytes = 0;
	*out = NULL;
	int n = tokenize(s, NULL, NULL, &bytes, err);
	if (n < 0)
		return -1;
	size_t head = ((size_t)n + 1) * sizeof(char *);
	char **words = malloc(head + bytes + 1);
	if (!words) {
		*err = "out of memory";
		return -1;
	}
	char *buf = (char *)words + head;
	tokenize(s, buf, words, &bytes, err);
	words[n] = NULL;
	*out = words;
	return n;
}

char *cli_quote(const char *w)
{
	bool plain = *w != '\0';
	for (const char *p = w; *p && plain; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_./:=@%+,", *p))
			plain = false;
	if (plain)
		return strdup(w);
	/* 'it'\''s': close, escaped quote, reopen */
	size_t n = 3;
	for (const char *p = w; *p; p++)
		n += *p == '\'' ? 4 : 1;
	char *q = malloc(n);
	if (!q)
		return NULL;
	char *o = q;
	*o++ = '\'';
	for (const char *p = w; *p; p++) {
		if (*p == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else {
			*o++ = *p;
		}
	}
	*o++ = '\'';
	*o = '\0';
	return q;
}
