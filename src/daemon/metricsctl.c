/*
 * metricsctl.c - `evmon ctl metrics`: the exposition that the HTTP endpoint
 * serves (the same builder, metrics_scrape), sent on the control socket as
 * one JSON reply, {"ok":true,"lines":[...]}, one string a line: lines, not
 * one text, because ctl escapes control characters (newlines included) in
 * what it prints.
 *
 * At 10,000 services the text is ~2.8 MB and took 100-260 ms of the loop
 * in one go (issue 19: exits and pings waited that long), so the reply is
 * built in pieces as the client takes it (control_reply_stream): a piece
 * reads at most a bounded number of services (metrics.c), and a loop
 * iteration builds as many as 2 ms of CPU allow (2 to 16). A piece of text
 * may end inside a line: the JSON string it is in stays open until its
 * newline.
 */
#include "metrics.h"

#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PIECE (16 * 1024) /* of the text; its JSON is a little longer */

struct ctl_scrape {
	struct metrics_scrape *s;
	bool started; /* a line was begun */
	bool in_line; /* inside a line's JSON string */
};

/* bytes of the text as the members of JSON strings, one a line (0, or -ENOMEM) */
static int put_text(struct client *cl, struct ctl_scrape *c, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0; /* p[start .. i) needs no escape and is not written yet */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (!c->in_line) { /* a line starts at i (start == i: a newline was just written) */
			if (control_raw_write(cl, c->started ? ",\"" : "\"", c->started ? 2 : 1) < 0)
				return -ENOMEM;
			c->started = c->in_line = true;
		}
		if (ch != '\n' && ch != '"' && ch != '\\' && ch >= 0x20)
			continue;
		if (i > start && control_raw_write(cl, p + start, i - start) < 0)
			return -ENOMEM;
		start = i + 1;
		char e[6] = {'\\', (char)ch};
		size_t k = 2;
		if (ch == '\n') {
			e[0] = '"';
			k = 1;
			c->in_line = false;
		} else if (ch < 0x20) {
			memcpy(e + 1, "u00", 3);
			e[4] = hex[ch >> 4];
			e[5] = hex[ch & 15];
			k = 6;
		}
		if (control_raw_write(cl, e, k) < 0)
			return -ENOMEM;
	}
	if (n > start && control_raw_write(cl, p + start, n - start) < 0)
		return -ENOMEM;
	return 0;
}

static bool fill(struct client *cl, size_t want, void *data)
{
	struct ctl_scrape *c = data;
	char buf[PIECE];
	ssize_t n = metrics_scrape_read(c->s, buf, want < sizeof(buf) ? want : sizeof(buf));
	int r = n < 0 ? -1 : put_text(cl, c, buf, (size_t)n);
	if (r == 0 && n == 0) /* the end: a last line without its newline is closed too */
		r = control_raw_write(cl, c->in_line ? "\"]}" : "]}", c->in_line ? 3 : 2);
	if (r != 0) {
		control_drop(cl, "out of memory for the metrics");
		return false;
	}
	return n > 0;
}

static void gone(void *data)
{
	struct ctl_scrape *c = data;
	metrics_scrape_free(c->s);
	free(c);
}

void metrics_ctl_reply(struct daemon *d, struct client *cl)
{
	/* a reply written over many loop turns: event lines would land inside it */
	if (control_subscribed(cl)) {
		control_reply_error(cl, "this connection follows events: ask for metrics on another "
				    "connection");
		return;
	}
	struct ctl_scrape *c = calloc(1, sizeof(*c));
	if (c && !(c->s = metrics_scrape_new(d))) {
		free(c);
		c = NULL;
	}
	if (!c) {
		control_reply_error(cl, "out of memory");
		return;
	}
	control_reply_stream(cl, fill, gone, c);
	static const char head[] = "\"ok\":true,\"lines\":[";
	if (control_raw_write(cl, head, sizeof(head) - 1) < 0)
		control_drop(cl, "out of memory for its reply");
}
