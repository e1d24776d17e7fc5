/*
 * textsafe.c - valid UTF-8 and escaped control characters (textsafe.h).
 */
#include "textsafe.h"

#include <stdio.h>
#include <string.h>

size_t utf8_seq(const unsigned char *s, size_t n)
{
	if (!n)
		return 0;
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range (RFC 3629) */
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* past U+10FFFF */
	} else {
		return 0; /* a continuation byte, C0/C1 overlongs, F5-FF */
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* 1 for a character printed as it is (k its length), else 0 */
static bool plain(const unsigned char *s, size_t k)
{
	return k && s[0] >= 0x20 && s[0] != 0x7f && !(k == 2 && s[0] == 0xc2 && s[1] <= 0x9f);
}

bool text_needs_escape(const char *in, size_t n)
{
	const unsigned char *s = (const unsigned char *)in;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(s + i, n - i);
		if (!plain(s + i, k))
			return true;
		i += k;
	}
	return false;
}

void utf8_scrub(char *s, size_t n)
{
	unsigned char *u = (unsigned char *)s;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(u + i, n - i);
		if (!k) {
			u[i++] = '?';
			continue;
		}
		i += k;
	}
}

size_t text_escape(const char *in, size_t n, char *out, size_t outlen, unsigned flags)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		char esc[8];
		size_t k = utf8_seq(s + i, n - i), w;
		const char *piece;
		if ((plain(s + i, k) && !(flags & TEXT_BACKSLASH && s[i] == '\\')) ||
		    (flags & TEXT_LINES && (s[i] == '\n' || s[i] == '\t'))) {
			piece = (const char *)s + i;
			w = k;
		} else {
			if (s[i] == '\\')
				snprintf(esc, sizeof(esc), "\\\\");
			else if (k == 2) /* C1 */
				snprintf(esc, sizeof(esc), "\\u%04x", s[i + 1]);
			else if (s[i] == '\n' || s[i] == '\t' || s[i] == '\r')
				snprintf(esc, sizeof(esc), "\\%c", s[i] == '\n' ? 'n' : s[i] == '\t' ? 't' : 'r');
			else
				snprintf(esc, sizeof(esc), "\\x%02x", s[i]);
			k = k ? k : 1;
			piece = esc;
			w = strlen(esc);
		}
		if (o + w >= outlen)
			break;
		memcpy(out + o, piece, w);
		o += w;
		i += k;
	}
	out[o] = '\0';
	return o;
}
