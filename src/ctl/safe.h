/*
 * safe.h - what ctl takes from the socket reaches the terminal without
 * control characters: a server may be an impostor or echo a service's
 * bytes, and an escape sequence can rewrite the screen or the title.
 */
#ifndef EVMON_CTL_SAFE_H
#define EVMON_CTL_SAFE_H

#include "cjson.h"

#include <stdbool.h>
#include <stddef.h>

/* Raw control bytes of a received line become '?' (the daemon's JSON never holds any). */
void safe_line(char *line, size_t n);

/*
 * Every string in the tree with a C0/C1 control character, DEL or a byte
 * of no UTF-8 character gets it escaped (\n, \t, \x1b, \u009b, \xff) in
 * place; the strings stay valid UTF-8.
 */
void safe_tree(cJSON *item);

/*
 * A line of the daemon's JSON to stdout as it is (--json), but with each C1
 * control as \u00NN and each stray byte as \ufffd: still JSON, now valid
 * UTF-8, and nothing an 8-bit terminal acts on (safe_line took C0 already).
 */
void safe_put_json(const char *line);

/* A UTF-8 sequence cut by the end of one piece of a stream, for the next. */
struct safe_carry {
	unsigned char b[4];
	size_t n;
};

/*
 * A piece of a service's log on its way to a terminal (logs, when stdout is
 * one): n bytes of p, after what k carried from the piece before, into out
 * (outlen at least 4 * (n + 4) + 1), escaped as text_escape does with
 * TEXT_LINES (newline and tab kept, each other C0 control, DEL, C1 and byte
 * of no UTF-8 character escaped): a service cannot send the terminal an
 * escape sequence (a title, the clipboard, a cleared screen). A sequence
 * cut by the end waits in k, unless last. Returns out's length.
 */
size_t safe_terminal(struct safe_carry *k, const char *p, size_t n, char *out, size_t outlen,
		     bool last);

#endif
