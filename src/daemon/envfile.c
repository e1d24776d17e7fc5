/*
 * envfile.c - env_file = PATH (see envfile.h), in systemd's
 * EnvironmentFile= syntax, so the files written for a unit (or
 * /etc/default/NAME files of KEY=VALUE lines) work as they are.
 */
#include "envfile.h"
#include "rootalone.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct parse {
	const char *p, *end;
	int line;
	char *err;
	size_t errlen;
};

static int fail(struct parse *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct parse *ps, int line, const char *fmt, ...)
{
	int n = snprintf(ps->err, ps->errlen, "line %d: ", line);
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < ps->errlen)
		vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#define RULE "a root daemon reads only an env_file that root alone can change"

/* The file's bytes, NUL-terminated; a root daemon reads only root's own. */
static int slurp(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	struct stat walked;
	bool root = geteuid() == 0;
	if (root) {
		int r = root_alone(path, RULE, &walked, err, errlen);
		if (r < 0) {
			if (r != -EPERM)
				snprintf(err, errlen, "%s", strerror(-r));
			return r;
		}
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK); /* a FIFO: no wait for a writer */
	struct stat st;
	int e = 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		e = errno;
	} else if (root && (st.st_dev != walked.st_dev || st.st_ino != walked.st_ino)) {
		e = EPERM; /* what the checked path named changed before the open */
		snprintf(err, errlen, "it changed while it was checked: %s", RULE);
	} else if (!S_ISREG(st.st_mode)) {
		e = EINVAL;
		snprintf(err, errlen, "not a regular file");
	} else if (st.st_size > ENVFILE_MAX_BYTES) {
		e = EFBIG;
		snprintf(err, errlen, "larger than %d bytes", ENVFILE_MAX_BYTES);
	} else if (geteuid() == 0 && (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))) {
		/* it sets LD_PRELOAD as well as anything: whoever may change it runs code */
		e = EPERM;
		snprintf(err, errlen, "%s: %s", st.st_uid != 0 ? "not owned by root" : "writable by others",
			 RULE);
	}
	if (!e && !(*buf = malloc((size_t)st.st_size + 1)))
		e = ENOMEM;
	size_t n = 0;
	while (!e && n < (size_t)st.st_size) {
		ssize_t r = read(fd, *buf + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			e = r < 0 ? errno : 0;
			break;
		}
		n += (size_t)r;
	}
	if (fd >= 0)
		close(fd);
	if (e) {
		if (e != EINVAL && e != EFBIG && e != EPERM)
			snprintf(err, errlen, "%s", strerror(e));
		if (*buf)
			free(*buf);
		*buf = NULL;
		return -e;
	}
	(*buf)[n] = '\0';
	*len = n;
	return 0;
}

/* The value from ps->p to the end of its (last continued) line, unquoted, into out. */
static int value(struct parse *ps, char *out, size_t *outlen)
{
	const char *p = ps->p;
	size_t n = 0, keep = 0; /* keep: length without unquoted trailing blanks */
	int start = ps->line;
	char q = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	for (; p < ps->end; p++) {
		char ch = *p;
		if (q && ch == '\n')
			ps->line++; /* a quoted value goes on */
		if (q == '\'') {
			if (ch == '\'')
				q = 0;
			else
				out[n++] = ch;
			keep = n;
		} else if (q == '"') {
			if (ch == '"') {
				q = 0;
			} else if (ch == '\\' && p + 1 < ps->end && strchr("\"\\`$\n", p[1])) {
				if (*++p == '\n')
					ps->line++;
				else
					out[n++] = *p;
			} else {
				out[n++] = ch;
			}
			keep = n;
		} else if (ch == '\n') {
			break;
		} else if (ch == '\'' || ch == '"') {
			q = ch;
		} else if (ch == '\\' && p + 1 < ps->end) {
			if (*++p == '\n')
				ps->line++; /* continued on the next line */
			else
				out[n++] = *p, keep = n;
		} else if (ch != '\\') {
			out[n++] = ch;
			if (ch != ' ' && ch != '\t' && ch != '\r')
				keep = n;
		}
	}
	if (q)
		return fail(ps, start, "unterminated %s quote", q == '"' ? "double" : "single");
	ps->p = p < ps->end ? p + 1 : p;
	ps->line++;
	*outlen = keep;
	return 0;
}

/*
 * Why the line from k (its first non-blank; klen: the key's length there)
 * is not KEY=VALUE, without its text: a root daemon reads files its client
 * may not read (ctl add -s env_file=/etc/shadow), and the mistake goes back
 * to that client.
 */
static const char *not_pair(const char *k, size_t klen, const char *end)
{
	const char *eol = memchr(k, '\n', (size_t)(end - k));
	if (!memchr(k, '=', (size_t)((eol ? eol : end) - k)))
		return "no '=' on the line";
	if (*k == '=')
		return "no key before the '='";
	if (isdigit((unsigned char)*k))
		return "the key starts with a digit";
	return "the text before the '=' is not a key (letters, digits and _)";
}

/* One KEY=VALUE into out as "KEY=VALUE"; 1, or 0 for a blank or comment line. */
/* The kernel's MAX_ARG_STRLEN: 32 pages, a variable's NUL counted */
static size_t max_var(void)
{
	long page = sysconf(_SC_PAGESIZE);
	return 32 * (size_t)(page > 0 ? page : 4096);
}

static int entry(struct parse *ps, char *out)
{
	const char *p = ps->p;
	while (p < ps->end && isspace((unsigned char)*p) && *p != '\n')
		p++;
	if (p == ps->end || *p == '\n' || *p == '#' || *p == ';') {
		const char *nl = memchr(p, '\n', (size_t)(ps->end - p));
		ps->p = nl ? nl + 1 : ps->end;
		ps->line++;
		return 0;
	}
	const char *k = p;
	int first = ps->line; /* a value may go on over lines */
	while (p < ps->end && (isalnum((unsigned char)*p) || *p == '_'))
		p++;
	size_t klen = (size_t)(p - k);
	while (p < ps->end && (*p == ' ' || *p == '\t'))
		p++;
	if (!klen || isdigit((unsigned char)*k) || p == ps->end || *p != '=')
		return fail(ps, ps->line, "not KEY=VALUE: %s", not_pair(k, klen, ps->end));
	memcpy(out, k, klen);
	out[klen] = '=';
	ps->p = p + 1;
	size_t vlen = 0;
	int r = value(ps, out + klen + 1, &vlen);
	if (r < 0)
		return r;
	out[klen + 1 + vlen] = '\0';
	/* execve would fail the start with E2BIG (MAX_ARG_STRLEN): said now, where it is */
	size_t max = max_var();
	if (klen + 1 + vlen + 1 > max)
		return fail(ps, first, "a variable longer than the %zu bytes the kernel passes one "
			    "(KEY=VALUE): the service could not start", max - 1);
	return 1;
}

int envfile_read(const char *path, char ***out, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	*out = NULL;
	int r = slurp(path, &buf, &len, err, errlen);
	if (r < 0)
		return r;
	/* no entry is longer than the file: pointers, then the strings */
	size_t max = len / 2 + 2;
	char **v = malloc(max * sizeof(*v) + len + max);
	if (!v) {
		free(buf);
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	char *store = (char *)(v + max);
	struct parse ps = {.p = buf, .end = buf + len, .line = 1, .err = err, .errlen = errlen};
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		ps.p += 3; /* a byte-order mark, as an editor may write: the config file's is skipped too */
	int n = 0;
	/* once, not before each line: the rest of a large file at each was quadratic */
	const char *nul = memchr(ps.p, '\0', (size_t)(ps.end - ps.p));
	if (nul) {
		int line = 1;
		for (const char *c = ps.p; c < nul; c++)
			line += *c == '\n';
		r = fail(&ps, line, "NUL byte: an env_file is text");
	}
	while (r >= 0 && ps.p < ps.end) {
		r = entry(&ps, store);
		if (r < 0)
			break;
		if (r > 0) {
			v[n++] = store;
			store += strlen(store) + 1;
		}
	}
	free(buf);
	if (r < 0) {
		free(v);
		return r;
	}
	v[n] = NULL;
	*out = v;
	return n;
}

/* <0, 0, >0 as KEY a sorts before, with or after KEY b (a key ends at its first '=', or the end) */
static int key_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = *a == '=' ? 0 : (unsigned char)*a, y = *b == '=' ? 0 : (unsigned char)*b;
		if (x != y || !x)
			return (x > y) - (x < y);
	}
}

/* one variable of env then add: its string, and its place (or, merged, its key's first place) */
struct slot {
	const char *s;
	size_t at;
};

static int by_place(const void *a, const void *b)
{
	const struct slot *x = a, *y = b;
	return (x->at > y->at) - (x->at < y->at);
}

static int by_key_then_place(const void *a, const void *b)
{
	const struct slot *x = a, *y = b;
	int c = key_cmp(x->s, y->s);
	return c ? c : by_place(a, b);
}

/*
 * Each key once, in the place it first had, with the value it last had.
 * Sorted, not compared pairwise: an env_file may hold tens of thousands
 * of variables (its size limit allows them).
 */
char **envfile_merge(char **env, char **add)
{
	size_t n = 0, k = 0, bytes = 0;
	for (char **e = env; e && *e; e++)
		n++;
	for (char **e = add; e && *e; e++)
		n++;
	struct slot *t = malloc((n + 1) * sizeof(*t));
	if (!t)
		return NULL;
	for (int pass = 0; pass < 2; pass++)
		for (char **e = pass ? add : env; e && *e; e++, k++)
			t[k] = (struct slot){*e, k};
	qsort(t, n, sizeof(*t), by_key_then_place);
	k = 0;
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && !key_cmp(t[j].s, t[i].s); j++)
			;
		struct slot one = {t[j - 1].s, t[i].at};
		t[k++] = one;
		bytes += strlen(one.s) + 1;
	}
	qsort(t, k, sizeof(*t), by_place);
	char **v = malloc((k + 1) * sizeof(*v) + bytes);
	if (v) {
		char *store = (char *)(v + k + 1);
		for (size_t i = 0; i < k; i++) {
			size_t l = strlen(t[i].s) + 1;
			v[i] = memcpy(store, t[i].s, l);
			store += l;
		}
		v[k] = NULL;
	}
	free(t);
	return v;
}
