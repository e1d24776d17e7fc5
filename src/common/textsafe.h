/*
 * textsafe.h - bytes from services and clients (a health check's output, a
 * command line, a name in a request) on their way to a terminal, a log
 * line or a JSON string: valid UTF-8, and no control character raw.
 */
#ifndef EVMON_TEXTSAFE_H
#define EVMON_TEXTSAFE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Length (1-4) of the well-formed UTF-8 sequence at s (n bytes left), or 0
 * for a byte that starts none (a stray continuation, an overlong form, a
 * surrogate, past U+10FFFF, or a sequence cut by the end).
 */
size_t utf8_seq(const unsigned char *s, size_t n);

/* Does s[0..n) hold anything text_escape would escape? */
bool text_needs_escape(const char *s, size_t n);

/* Each byte of s[0..n) that starts no well-formed sequence becomes '?'. */
void utf8_scrub(char *s, size_t n);

/* text_escape's flags */
enum {
	TEXT_BACKSLASH = 1, /* a backslash becomes \\ too */
	TEXT_LINES = 2,	    /* newline and tab stay as they are */
};

/*
 * in[0..n) into out (outlen > 0, always terminated), with C0 controls and
 * DEL as \n, \t, \r or \xNN, C1 (U+0080-U+009F) as \u00NN, and bytes of
 * no well-formed sequence as \xNN: one line, nothing a terminal acts on
 * (TEXT_LINES: lines, newline and tab kept). TEXT_BACKSLASH: a backslash
 * becomes \\ too, so that the result reads back unambiguously (a literal
 * "\x1b" is not taken for an escaped ESC). At most 4 bytes out for 1 in.
 * Cut at a whole character or escape. Returns the length written.
 */
size_t text_escape(const char *in, size_t n, char *out, size_t outlen, unsigned flags);

#endif
