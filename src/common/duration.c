/*
 * duration.c - durations (see duration.h). Integer arithmetic only, no
 * strtod: the static evmon-init links this too and stays small.
 */
#include "duration.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define FRACTION_DIGITS 9

static uint64_t unit_ms(const char *u)
{
	static const struct {
		const char *name;
		uint64_t ms;
	} units[] = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60000}, {"h", 3600000}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(u, units[i].name))
			return units[i].ms;
	return 0;
}

int cli_parse_duration(const char *s, uint64_t *ms)
{
	uint64_t whole = 0, frac = 0, scale = 1;
	const char *c = s;
	bool big = false;
	for (; *c >= '0' && *c <= '9'; c++) {
		whole = whole * 10 + (uint64_t)(*c - '0');
		if (whole > DURATION_MAX_MS)
			big = true, whole = DURATION_MAX_MS + 1;
	}
	bool digits = c > s;
	if (*c == '.') {
		for (c++; *c >= '0' && *c <= '9'; c++, digits = true) {
			if (scale < 1000000000ull) {
				frac = frac * 10 + (uint64_t)(*c - '0');
				scale *= 10;
			}
		}
	}
	uint64_t unit = unit_ms(c);
	if (!digits || !unit)
		return -EINVAL;
	if (big || whole > DURATION_MAX_MS / unit)
		return -ERANGE;
	/* frac * unit * 2 < 10^9 * 3.6e6 * 2: no overflow */
	uint64_t v = whole * unit + (frac * unit * 2 / scale + 1) / 2;
	if (v == 0 && frac)
		v = 1; /* "0.0004": not 0, which means none (no timeout, no watchdog) */
	if (v > DURATION_MAX_MS)
		return -ERANGE;
	*ms = v;
	return 0;
}
