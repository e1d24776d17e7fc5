/*
 * monotime.h - CLOCK_MONOTONIC as one number, for deadlines and durations
 * (never the wall clock: a user or NTP moves it).
 */
#ifndef EVMON_MONOTIME_H
#define EVMON_MONOTIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t mono_ms(void)
{
	return mono_ns() / 1000000u;
}

#endif
