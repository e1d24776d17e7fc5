/*
 * duration.h - the one duration grammar of evmon (init's -t, the config's
 * DURATION keys): a decimal number, optionally with a fraction, then
 * optionally a unit: ms, s (the default), m or h. "2", "2.5", ".5s",
 * "250ms", "1.5m", "1h". No sign, no exponent, no blanks.
 */
#ifndef EVMON_DURATION_H
#define EVMON_DURATION_H

#include <stdint.h>

/*
 * 10^13 ms, about 317 years: in ns (the loop's timers and deadlines) it fits
 * 64 bits, which end at about 584 years. 10^15 was allowed, and any value past
 * 2^64 ns was taken as that without a word.
 */
#define DURATION_MAX_MS 10000000000000ull

/*
 * Parse s into milliseconds, rounded to the nearest (digits of the fraction
 * beyond the ninth are ignored), but a value above 0 below half a
 * millisecond is 1 ms, not 0 (which to many keys means none). Returns 0, -EINVAL when s is not a
 * duration, or -ERANGE above DURATION_MAX_MS.
 */
int cli_parse_duration(const char *s, uint64_t *ms);

#endif
