/*
 * argv.h - shell-like splitting of a command line into words, without a shell.
 */
#ifndef EVMON_ARGV_H
#define EVMON_ARGV_H

#include <stddef.h>

/*
 * Split s into words the way sh would tokenize a simple command: blanks
 * separate words; '...' is literal; "..." is literal except for \" \\ \$ \`
 * and backslash-newline; a backslash outside quotes escapes the next
 * character; adjacent parts join ("a"'b'c is one word). Nothing is expanded.
 * Unquoted shell syntax (| & ; < > ( ) ` and $NAME, ${, $( ) is refused,
 * because nothing will interpret it: say `sh -c '...'` to get a shell.
 *
 * On success returns the number of words and sets *out to a NULL-terminated
 * array allocated as one block (free it with free()). On failure returns -1,
 * sets *err to a static message and *out to NULL.
 */
int cli_split(const char *s, char ***out, const char **err);

/*
 * Quote one word so that cli_split gives it back unchanged. Returns a
 * malloc'ed string, or NULL on allocation failure.
 */
char *cli_quote(const char *word);

#endif
