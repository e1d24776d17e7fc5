/*
 * confread.c - the config file and its includes into sections (see
 * confread.h).
 *
 * libinih tokenizes each file and we keep every key = value with its line,
 * per section, untouched; our line reader watches the raw lines as well,
 * because inih's handler gets no line numbers and is not called for
 * section headers (so empty or repeated sections would go unnoticed) nor
 * for lines it cannot parse (it reports only the first).
 *
 * A NUL byte anywhere is a mistake (reported with its file:line): a text
 * reader would see the line end there and drop the rest unnoticed.
 *
 * Inline comments are off (like Python 3's configparser): "a ; b" in a
 * command stays a command. Comments are lines starting with ; or #.
 * An indented line continues the previous value (joined with a space).
 *
 * include = PATTERN... (in [evmon], or before a file's first section):
 * once the file is read, each pattern's files (glob(3), sorted; relative
 * to the including file's directory) are read in turn, their sections
 * after the includer's. A file already on the include stack is a loop; a
 * file read twice is refused too (its services would be duplicates).
 *
 * The daemon's loop waits for a read (a reload's too), so a read is
 * bounded: only regular files are read (a FIFO or a device would block or
 * never end), opened without blocking, and the whole read stops at
 * CONF_MAX_BYTES, CONF_MAX_FILES, and CONF_GLOB_ENTRIES a pattern.
 */
#include "confread.h"
#include "confkeys.h"
#include "rootalone.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LINE 65536

struct include {
	char *patterns;	/* the value, as written */
	int line;
};

/* The state of reading one file; the sections go to out, shared by every file. */
struct reader {
	FILE *f;
	const char *path;
	size_t file;	     /* index in out->files */
	struct conf_read *out;
	struct errlist *errs;
	int line;	     /* line of the text being parsed */
	int lines_done;	     /* newlines consumed */
	bool at_start;	     /* the next piece starts a line */
	size_t line_len;     /* bytes of the current line so far */
	bool too_long;	     /* current line already reported */
	bool nul;	     /* current line has a NUL byte (reported) */
	bool continuation;   /* current line continues the previous value */
	bool have_prev_key;  /* an indented line continues a value (look_at_line) */
	int key_line;	     /* the line of that value's key */
	char key_name[64];   /* and its name */
	size_t key_indent;   /* and how far its line was indented */
	int first_syntax;    /* first syntax error line we reported, 0 if none */
	size_t secs0;	     /* this file's first section in out->secs */
	struct include *incs; /* this file's include lines */
	size_t nincs, capincs;
	bool oom;
};

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t c = *cap ? *cap * 2 : 16;
	void *p = realloc(*v, c * size);
	if (!p)
		return false;
	*v = p;
	*cap = c;
	return true;
}

static struct conf_section *new_section(struct reader *r, const char *name, size_t len, int line)
{
	struct conf_read *o = r->out;
	if (!grow((void **)&o->secs, &o->capsecs, o->nsecs, sizeof(*o->secs))) {
		r->oom = true;
		return NULL;
	}
	struct conf_section *s = &o->secs[o->nsecs];
	memset(s, 0, sizeof(*s));
	s->name = strndup(name, len);
	if (!s->name) {
		r->oom = true;
		return NULL;
	}
	s->line = line;
	s->file = r->file;
	o->nsecs++;
	return s;
}

/*
 * "  restart = always" (a key of ours, a blank, '='): written as a key of
 * its own, not as a word of the value above, which it would be. Not under
 * environment, whose words are KEY=VALUE (user=alice is one), nor without
 * the blank ("--user=admin" style words).
 */
static bool indented_key(const char *start, const char *above)
{
	size_t n = strspn(start, "abcdefghijklmnopqrstuvwxyz0123456789_");
	const char *q = start + n;
	if (!strcmp(above, "environment") || (*q != ' ' && *q != '\t'))
		return false;
	while (*q == ' ' || *q == '\t')
		q++;
	return *q == '=' && conf_is_key(start, n);
}

/*
 * Look at a raw line the way inih will (ini.c: comment, continuation,
 * section, pair), and decide for it where inih would guess: a line indented
 * deeper than its key's continues the value above (INI_ALLOW_MULTILINE), blank lines and
 * comments between included, as configparser (supervisord) has it, but
 * never when it is a section header; else its indentation is taken off (s
 * is the line's first piece, changed in place) so that inih reads it as a
 * line of its own. An indented "key = value" of one of our keys under a
 * value is a mistake: it would silently be words of that value (a
 * service's restart, say, part of its command).
 */
static void look_at_line(struct reader *r, char *s)
{
	char *p = s;
	if (r->line == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
	    (unsigned char)p[2] == 0xBF)
		p += 3;
	char *start = p;
	while (*start && isspace((unsigned char)*start))
		start++;
	r->continuation = false;
	if (!*start || *start == ';' || *start == '#') /* a value goes on past them (configparser too) */
		return;
	bool header = *start == '[' && strchr(start + 1, ']');
	/* deeper than its key's line, as configparser has it: a file indented as a whole reads */
	size_t indent = (size_t)(start - p);
	bool deeper = r->have_prev_key && indent > r->key_indent;
	if (header && deeper) {
		/* indented, "[::1]:8080" is a word of the value; "[service:b]" (maybe a comment) a header */
		const char *rest = strchr(start + 1, ']') + 1;
		rest += strspn(rest, " \t\r\n");
		header = !*rest || *rest == ';' || *rest == '#';
	}
	if (deeper && !header) {
		r->continuation = true;
		if (indented_key(start, r->key_name))
			errlist_add(r->errs, r->path, r->line, "indented '%.*s' continues the value of "
				    "line %d; write it unindented to set %.*s (or quote it)",
				    (int)strcspn(start, "\r\n"), start, r->key_line,
				    (int)strspn(start, "abcdefghijklmnopqrstuvwxyz0123456789_"), start);
		return;
	}
	if (start > p) {
		memmove(p, start, strlen(start) + 1);
		start = p;
	}
	if (*start == '[') {
		const char *end = strchr(start + 1, ']');
		if (!end) {
			errlist_add(r->errs, r->path, r->line, "section header without ']'");
			if (!r->first_syntax)
				r->first_syntax = r->line;
			return;
		}
		const char *rest = end + 1;
		while (*rest && isspace((unsigned char)*rest))
			rest++;
		if (*rest && *rest != ';' && *rest != '#') { /* "[service:a]]", "[service:a] x" */
			errlist_add(r->errs, r->path, r->line, "text after the section header: '%.*s'",
				    (int)strcspn(rest, "\r\n"), rest);
			if (!r->first_syntax)
				r->first_syntax = r->line;
		}
		new_section(r, start + 1, (size_t)(end - start - 1), r->line);
		r->have_prev_key = false;
		return;
	}
	const char *delim = strpbrk(start, "=:");
	if (delim && *delim == ':') { /* inih takes "key: value" too; the documented form is "=" */
		errlist_add(r->errs, r->path, r->line, "expected 'key = value', got '%.*s' (':' is "
			    "not a delimiter here)", (int)strcspn(start, "\r\n"), start);
		if (!r->first_syntax)
			r->first_syntax = r->line;
	}
	if (!delim) {
		errlist_add(r->errs, r->path, r->line,
			    "expected 'key = value', '[section]' or a comment, got '%.*s'",
			    (int)strcspn(start, "\r\n"), start);
		if (!r->first_syntax)
			r->first_syntax = r->line;
		return;
	}
	r->have_prev_key = true;
	r->key_line = r->line;
	r->key_indent = indent;
	size_t kl = strcspn(start, "=: \t");
	snprintf(r->key_name, sizeof(r->key_name), "%.*s", (int)kl, start);
}

/*
 * fgets for inih, except that a NUL byte is not the end of the line: it
 * is reported (a config with one is refused) and read as a blank, so that
 * "command = x\0 y" can never quietly run "x".
 */
static char *get_piece(char *buf, int size, FILE *f, bool *nul)
{
	int n = 0, ch = 0;
	while (n < size - 1 && ch != '\n' && (ch = getc_unlocked(f)) != EOF) {
		if (ch == '\0') {
			*nul = true;
			ch = ' ';
		}
		buf[n++] = (char)ch;
	}
	buf[n] = '\0';
	return n ? buf : NULL;
}

static char *read_piece(char *buf, int size, void *stream)
{
	struct reader *r = stream;
	if (r->out->bytes >= CONF_MAX_BYTES) {
		if (!r->out->too_big)
			errlist_add(r->errs, r->path, r->lines_done + 1, "stopped reading here: the "
				    "config and its includes hold more than %d MiB", CONF_MAX_BYTES >> 20);
		r->out->too_big = true;
		return NULL;
	}
	bool nul = false;
	char *s = get_piece(buf, size, r->f, &nul);
	if (!s)
		return NULL;
	r->out->bytes += strlen(s);
	if (r->at_start) {
		r->line = r->lines_done + 1;
		r->line_len = 0;
		r->too_long = false;
		r->nul = false;
		look_at_line(r, s); /* may take off its indentation */
	}
	size_t len = strlen(s);
	if (nul && !r->nul) {
		r->nul = true;
		errlist_add(r->errs, r->path, r->line, "NUL byte in the line: a config file is text");
	}
	/* its text: a line of 65533 bytes and its newline was "longer than 65533 bytes" */
	r->line_len += len - (len && s[len - 1] == '\n');
	if (r->line_len >= MAX_LINE - 2 && !r->too_long) {
		r->too_long = true;
		errlist_add(r->errs, r->path, r->line, "line longer than %d bytes", MAX_LINE - 3);
		if (!r->first_syntax)
			r->first_syntax = r->line;
	}
	r->at_start = len > 0 && s[len - 1] == '\n';
	if (r->at_start)
		r->lines_done++;
	return s;
}

/* include = ...: kept for when the file is read (in [evmon] or before any section). */
static void on_include(struct reader *r, const char *value, bool in_section)
{
	const struct conf_section *s = in_section ? &r->out->secs[r->out->nsecs - 1] : NULL;
	if (s && strcmp(s->name, "evmon")) {
		errlist_add(r->errs, r->path, r->line, "include: only allowed in [evmon] or before "
			    "the first section of a file");
		return;
	}
	if (!grow((void **)&r->incs, &r->capincs, r->nincs, sizeof(*r->incs)) ||
	    !(r->incs[r->nincs].patterns = strdup(value ? value : ""))) {
		r->oom = true;
		return;
	}
	r->incs[r->nincs++].line = r->line;
}

static void more_include(struct reader *r, const char *value)
{
	char *joined;
	if (asprintf(&joined, "%s %s", r->incs[r->nincs - 1].patterns, value ? value : "") < 0) {
		r->oom = true;
		return;
	}
	free(r->incs[r->nincs - 1].patterns);
	r->incs[r->nincs - 1].patterns = joined;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct reader *r = user;
	(void)section; /* we track sections ourselves, with their lines */
	if (r->too_long)
		return 1;
	bool in_section = r->out->nsecs > r->secs0;
	if (!strcmp(name, "include")) {
		if (!r->continuation)
			on_include(r, value, in_section);
		else if (r->nincs) /* more patterns on the next line */
			more_include(r, value);
		return 1;
	}
	if (!in_section) {
		errlist_add(r->errs, r->path, r->line,
			    "'%s' outside of any section (start with [evmon] or [service:NAME])", name);
		return 1;
	}
	struct conf_section *s = &r->out->secs[r->out->nsecs - 1];
	if (r->continuation && s->n > 0 && !strcmp(s->kv[s->n - 1].key, name)) {
		/* appended in place, room doubling: a value of many lines costs linear time */
		struct conf_pair *kv = &s->kv[s->n - 1];
		size_t add = strlen(value ? value : ""), need = kv->vlen + 1 + add + 1;
		if (need > kv->vcap) {
			size_t cap = need > 2 * kv->vcap ? need : 2 * kv->vcap;
			char *v = realloc((char *)kv->value, cap);
			if (!v) {
				r->oom = true;
				return 1;
			}
			kv->value = v;
			kv->vcap = cap;
		}
		char *v = (char *)kv->value;
		size_t sep = kv->vlen > 0; /* "key =" then a line: the line alone, no blank first */
		v[kv->vlen] = ' ';
		memcpy(v + kv->vlen + sep, value ? value : "", add + 1);
		kv->vlen += sep + add;
		return 1;
	}
	if (!grow((void **)&s->kv, &s->cap, s->n, sizeof(*s->kv))) {
		r->oom = true;
		return 1;
	}
	char *k = strdup(name), *v = strdup(value ? value : "");
	if (!k || !v) {
		free(k);
		free(v);
		r->oom = true;
		return 1;
	}
	size_t vlen = strlen(v);
	s->kv[s->n++] = (struct conf_pair){.key = k, .value = v, .line = r->line, .vlen = vlen,
					   .vcap = vlen + 1};
	return 1;
}

static char *dir_of(const char *path)
{
	char *abs = realpath(path, NULL);
	if (!abs)
		return NULL;
	char *slash = strrchr(abs, '/');
	if (slash == abs)
		slash[1] = '\0';
	else
		*slash = '\0';
	return abs;
}

#define RULE "a root daemon runs only a config that root alone can change"

/*
 * A root daemon runs the commands of its config as whoever the config says:
 * a config someone else can change is a way to root (sshd's StrictModes).
 * The file (f, opened) must be root's and writable by root alone, and so
 * must the way to it (rootalone.h, env_file's rule): whoever may write a
 * directory on it could put another file there, or a symlink to one of
 * root's secrets, whose lines the mistakes would then show (/etc/shadow's).
 */
static bool trusted(FILE *f, const char *path, struct errlist *errs)
{
	struct stat st, walked;
	if (geteuid() != 0 || fstat(fileno(f), &st) < 0)
		return true;
	char why[PATH_MAX + 200];
	int r;
	if (st.st_uid != 0)
		errlist_add(errs, path, 0, "is owned by uid %u, not root: " RULE, (unsigned)st.st_uid);
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		errlist_add(errs, path, 0, "is writable by %s (mode %04o): " RULE,
			    st.st_mode & S_IWOTH ? "every user" : "its group",
			    (unsigned)(st.st_mode & 07777));
	else if ((r = root_alone(path, RULE, &walked, why, sizeof(why))) < 0)
		errlist_add(errs, path, 0, "%s", r == -EPERM ? why : strerror(-r));
	else if (walked.st_dev != st.st_dev || walked.st_ino != st.st_ino)
		errlist_add(errs, path, 0, "it changed while it was checked: " RULE);
	else
		return true;
	return false;
}

static const char *not_regular(mode_t mode)
{
	return S_ISDIR(mode)  ? strerror(EISDIR) /* "Is a directory", as opening one to write says */
	       : S_ISFIFO(mode) ? "is a FIFO, not a regular file"
	       : S_ISCHR(mode)  ? "is a character device, not a regular file"
	       : S_ISBLK(mode)  ? "is a block device, not a regular file"
	       : S_ISSOCK(mode) ? "is a socket, not a regular file"
				: "is not a regular file";
}

/*
 * The file, if it may be read: a regular file (O_NONBLOCK: opening a FIFO
 * would wait for a writer), a root daemon's root's alone.
 */
static FILE *open_config(const char *path, struct errlist *errs)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		errlist_add(errs, path, 0, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		errlist_add(errs, path, 0, "%s", not_regular(st.st_mode));
		close(fd);
		return NULL;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		errlist_add(errs, path, 0, "%s", strerror(errno));
		close(fd);
		return NULL;
	}
	if (!trusted(f, path, errs)) {
		fclose(f);
		return NULL;
	}
	return f;
}

/* Every section and key = value of f into r->out, and the syntax errors. */
static void parse(struct reader *r)
{
	/* inih's settings are process globals (Debian builds them as variables) */
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_initial_alloc = 4096;
	ini_max_line = MAX_LINE;
	ini_allow_multiline = true;
	ini_allow_inline_comments = false;
	ini_stop_on_first_error = false;
	ini_allow_no_value = false;

	int rc = ini_parse_stream(read_piece, r, on_pair, r);
	if (ferror(r->f)) /* a read error ends the file early: what came before is not all of it */
		errlist_add(r->errs, r->path, 0, "read error after line %d: %s", r->lines_done,
			    strerror(errno));
	if (rc > 0 && !r->first_syntax)
		errlist_add(r->errs, r->path, rc, "syntax error");
	else if (rc < 0 || r->oom)
		errlist_add(r->errs, r->path, 0, "out of memory");
}

static void read_file(struct conf_read *o, const char *path, size_t from, int from_line, int depth,
		      struct errlist *errs);

/*
 * glob(3)'s directory reading, counted: a pattern may look at
 * CONF_GLOB_ENTRIES entries, then it sees no more (a star per level through
 * /proc/N/root, a link back to /, would list the machine again and again).
 * glob has no argument for it, and a read is on one thread at a time.
 */
static size_t glob_left;

static struct dirent *counted_readdir(void *dir)
{
	if (!glob_left)
		return NULL;
	glob_left--;
	return readdir(dir);
}

static void *glob_opendir(const char *path)
{
	return opendir(path);
}

static void glob_closedir(void *dir)
{
	closedir(dir);
}

static int bounded_glob(const char *pat, int flags, glob_t *g, bool *cut)
{
	memset(g, 0, sizeof(*g));
	g->gl_opendir = glob_opendir;
	g->gl_readdir = counted_readdir;
	g->gl_closedir = glob_closedir;
	g->gl_stat = stat;
	g->gl_lstat = lstat;
	glob_left = CONF_GLOB_ENTRIES;
	int rc = glob(pat, flags | GLOB_ALTDIRFUNC, NULL, g);
	*cut = glob_left == 0;
	return rc;
}

/* The words of one include line, each a path or a glob: their files, sorted, read in turn. */
static void read_includes(struct conf_read *o, size_t file, const struct include *inc, int depth,
			  struct errlist *errs)
{
	char *words = strdup(inc->patterns), *save = NULL;
	int n = 0;
	for (char *w = words ? strtok_r(words, " \t", &save) : NULL; w; w = strtok_r(NULL, " \t", &save)) {
		char *pat = NULL;
		n++;
		if (asprintf(&pat, "%s%s%s", w[0] == '/' ? "" : o->files[file].dir,
			     w[0] == '/' ? "" : "/", w) < 0)
			break;
		glob_t g;
		bool cut;
		/* a plain path comes back as it is, to be refused if missing; a pattern may match nothing */
		int rc = bounded_glob(pat, strpbrk(w, "*?[") ? 0 : GLOB_NOCHECK, &g, &cut);
		errs->rank = (int)file;
		if (rc == GLOB_NOSPACE || rc == GLOB_ABORTED)
			errlist_add(errs, o->files[file].path, inc->line, "include: %s: %s", w,
				    rc == GLOB_NOSPACE ? "out of memory" : "cannot read the directory");
		if (cut) { /* what it matched so far is not all: none of it is read */
			errlist_add(errs, o->files[file].path, inc->line, "include: %s: the pattern "
				    "looks at more than %d directory entries (only the file name "
				    "should have a wildcard: conf.d/*.ini)", w, CONF_GLOB_ENTRIES);
			if (rc == 0)
				globfree(&g);
			rc = -1;
		}
		for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++)
			read_file(o, g.gl_pathv[i], file, inc->line, depth + 1, errs);
		if (rc == 0)
			globfree(&g);
		free(pat);
	}
	errs->rank = (int)file;
	if (!words)
		errlist_add(errs, o->files[file].path, inc->line, "out of memory");
	else if (!n)
		errlist_add(errs, o->files[file].path, inc->line, "include: no file named");
	free(words);
}

/* Said at the include line that names path (or of path itself, for the main file). */
static void refuse(struct errlist *errs, const struct conf_read *o, size_t from, int from_line,
		   const char *path, const char *msg)
{
	if (from == (size_t)-1)
		errlist_add(errs, path, 0, "%s", msg);
	else
		errlist_add(errs, o->files[from].path, from_line, "include: %s: %s", path, msg);
}

/* An included file seen before: a loop if it is being read, else a second reading. */
static bool seen_before(struct conf_read *o, const struct stat *st, size_t from, int from_line,
			const char *path, struct errlist *errs)
{
	for (size_t i = 0; i < o->nfiles; i++) {
		if (o->files[i].dev != st->st_dev || o->files[i].ino != st->st_ino)
			continue;
		char msg[600];
		snprintf(msg, sizeof(msg), o->files[i].reading ? "include loop: %s is being read"
							       : "already read (as %s)",
			 o->files[i].path);
		refuse(errs, o, from, from_line, path, msg);
		return true;
	}
	return false;
}

static void read_file(struct conf_read *o, const char *path, size_t from, int from_line, int depth,
		      struct errlist *errs)
{
	struct errlist mine = {0}; /* open_config's reasons, said at the include line */
	bool over = o->too_big || o->nfiles >= CONF_MAX_FILES;
	FILE *f = depth > CONF_INCLUDE_DEPTH || over ? NULL : open_config(path, &mine);
	struct stat st;
	errs->rank = from == (size_t)-1 ? 0 : (int)from;
	if (depth > CONF_INCLUDE_DEPTH)
		refuse(errs, o, from, from_line, path, "includes nested too deep (more than 16)");
	else if (o->nfiles >= CONF_MAX_FILES && !o->too_many) {
		char msg[80];
		snprintf(msg, sizeof(msg), "not read: the config includes more than %d files",
			 CONF_MAX_FILES);
		refuse(errs, o, from, from_line, path, msg);
		o->too_many = true;
	}
	for (size_t i = 0; i < mine.n; i++) {
		/* "path: reason" (open_config's form): the reason, at the include line */
		const char *m = mine.msgs[i] + strlen(path);
		refuse(errs, o, from, from_line, path, m[0] == ':' && m[1] == ' ' ? m + 2 : mine.msgs[i]);
	}
	errlist_free(&mine);
	if (!f)
		return;
	if (fstat(fileno(f), &st) < 0 || seen_before(o, &st, from, from_line, path, errs) ||
	    !grow((void **)&o->files, &o->capfiles, o->nfiles, sizeof(*o->files))) {
		fclose(f);
		return;
	}
	size_t idx = o->nfiles;
	struct conf_file *cf = &o->files[idx];
	*cf = (struct conf_file){.path = strdup(path), .dir = dir_of(path), .dev = st.st_dev,
				 .ino = st.st_ino, .reading = true};
	if (!cf->path || !cf->dir) {
		free(cf->path);
		free(cf->dir);
		refuse(errs, o, from, from_line, path, "out of memory");
		fclose(f);
		return;
	}
	o->nfiles++;
	struct reader r = {.f = f, .path = cf->path, .file = idx, .out = o, .errs = errs,
			   .at_start = true, .secs0 = o->nsecs};
	errs->rank = (int)idx;
	parse(&r);
	fclose(f);
	for (size_t i = 0; i < r.nincs; i++) {
		read_includes(o, idx, &r.incs[i], depth, errs);
		free(r.incs[i].patterns);
	}
	free(r.incs);
	o->files[idx].reading = false;
}

int conf_read(const char *path, struct conf_read *out, struct errlist *errs)
{
	int rank = errs->rank;
	memset(out, 0, sizeof(*out));
	read_file(out, path, (size_t)-1, 0, 0, errs);
	errs->rank = rank;
	return out->nfiles ? 0 : -1;
}

void conf_read_free(struct conf_read *r)
{
	for (size_t i = 0; i < r->nsecs; i++) {
		for (size_t j = 0; j < r->secs[i].n; j++) {
			free((char *)r->secs[i].kv[j].key);
			free((char *)r->secs[i].kv[j].value);
		}
		free(r->secs[i].kv);
		free(r->secs[i].name);
	}
	free(r->secs);
	for (size_t i = 0; i < r->nfiles; i++) {
		free(r->files[i].path);
		free(r->files[i].dir);
	}
	free(r->files);
	memset(r, 0, sizeof(*r));
}

void conf_read_where(const struct conf_read *r, size_t from, size_t at, int line, char *buf,
		     size_t len)
{
	if (from == at)
		snprintf(buf, len, "on line %d", line);
	else
		snprintf(buf, len, "at %s:%d", r->files[at].path, line);
}
