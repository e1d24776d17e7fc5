/*
 * test_proto.c - what daemon and ctl share (src/common/proto.c): line framing,
 * durations and times, and the human form of events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proto.h"

#include <stdlib.h>
#include <string.h>

static void test_linebuf(void **state)
{
	(void)state;
	struct linebuf b = {0};
	assert_int_equal(linebuf_line(&b), -1);
	assert_int_equal(linebuf_append(&b, "abc", 3), 0);
	assert_int_equal(linebuf_line(&b), -1);
	assert_int_equal(linebuf_append(&b, "\nde\nf", 5), 0);
	assert_int_equal(linebuf_line(&b), 3);
	assert_memory_equal(linebuf_start(&b), "abc", 3);
	linebuf_consume(&b, 4);
	assert_int_equal(linebuf_line(&b), 2);
	assert_memory_equal(linebuf_start(&b), "de", 2);
	linebuf_consume(&b, 3);
	assert_int_equal(linebuf_line(&b), -1);
	assert_int_equal(b.len, 1);
	/* growth keeps the unconsumed bytes and moves them to the front */
	char big[100000];
	memset(big, 'x', sizeof(big));
	assert_int_equal(linebuf_append(&b, big, sizeof(big)), 0);
	assert_int_equal(linebuf_append(&b, "\n", 1), 0);
	assert_int_equal(linebuf_line(&b), (ssize_t)sizeof(big) + 1);
	assert_int_equal(linebuf_start(&b)[0], 'f');
	linebuf_consume(&b, b.len);
	assert_int_equal(b.len, 0);
	assert_null(b.data); /* a big idle buffer is given back */
	char *dst = linebuf_space(&b, 10);
	assert_non_null(dst);
	memcpy(dst, "0123456789", 10);
	b.len += 10;
	assert_memory_equal(linebuf_start(&b), "0123456789", 10);
	linebuf_free(&b);
}

static void test_duration(void **state)
{
	(void)state;
	char buf[32];
	assert_string_equal(proto_duration(0, buf, sizeof(buf)), "0.0s");
	assert_string_equal(proto_duration(1250, buf, sizeof(buf)), "1.2s");
	assert_string_equal(proto_duration(12500, buf, sizeof(buf)), "12s");
	assert_string_equal(proto_duration(65000, buf, sizeof(buf)), "1m05s");
	assert_string_equal(proto_duration(3600000 * 2 + 60000 * 3, buf, sizeof(buf)), "2h03m");
	assert_string_equal(proto_duration(86400000ull * 3 + 3600000 * 4, buf, sizeof(buf)), "3d04h");
}

static void test_time(void **state)
{
	(void)state;
	char buf[40];
	struct timespec ts = {.tv_sec = 86400 * 365, .tv_nsec = 123456789};
	assert_string_equal(proto_time(&ts, buf, sizeof(buf)), "1971-01-01T00:00:00.123Z");
}

static void line_of(const char *json, const char *want)
{
	cJSON *ev = cJSON_Parse(json);
	assert_non_null(ev);
	char buf[512];
	proto_event_line(ev, buf, sizeof(buf));
	assert_string_equal(buf, want);
	cJSON_Delete(ev);
}

static void test_event_lines(void **state)
{
	(void)state;
	line_of("{\"event\":\"state\",\"service\":\"web\",\"state\":\"running\",\"old_state\":\"starting\","
		"\"pid\":42,\"restarts\":0}",
		"service web: starting -> running, pid 42");
	line_of("{\"event\":\"state\",\"service\":\"c\",\"state\":\"backoff\",\"old_state\":\"running\","
		"\"pid\":7,\"restarts\":2,\"delay_ms\":400}",
		"service c: running -> backoff, pid 7, next start in 0.4s (restarts: 2)");
	line_of("{\"event\":\"state\",\"service\":\"x\",\"state\":\"backoff\",\"old_state\":\"stopped\","
		"\"restarts\":0,\"delay_ms\":100,\"error\":\"exec: No such file or directory\","
		"\"message\":\"exec /x: No such file or directory\"}",
		"service x: stopped -> backoff, next start in 0.1s: exec /x: No such file or "
		"directory"); /* the error once: the message has it */
	line_of("{\"event\":\"state\",\"service\":\"r\",\"state\":\"fatal\",\"old_state\":\"starting\","
		"\"restarts\":0,\"error\":\"Connection timed out\",\"message\":\"not ready\"}",
		"service r: starting -> fatal: not ready: Connection timed out");
	line_of("{\"event\":\"state\",\"service\":\"old\",\"state\":\"stopped\","
		"\"old_state\":\"stopping\",\"pid\":5,\"restarts\":0,\"removed\":true}",
		"service old: stopping -> stopped (removed), pid 5");
	line_of("{\"event\":\"state\",\"service\":\"old\",\"state\":\"stopped\","
		"\"old_state\":\"stopped\",\"restarts\":0,\"removed\":true}",
		"service old: removed");
	/* an old copy a reload replaced: its successor goes on by that name */
	line_of("{\"event\":\"state\",\"service\":\"r\",\"state\":\"stopped\","
		"\"old_state\":\"stopping\",\"pid\":5,\"restarts\":0,\"removed\":true,"
		"\"replaced\":true}",
		"service r: stopping -> stopped (old copy, replaced), pid 5");
	line_of("{\"event\":\"state\",\"service\":\"r\",\"state\":\"stopped\","
		"\"old_state\":\"stopped\",\"restarts\":0,\"removed\":true,\"replaced\":true}",
		"service r: old copy (replaced) removed");
	/* a restart's stop: the service comes back */
	line_of("{\"event\":\"state\",\"service\":\"w\",\"state\":\"stopping\","
		"\"old_state\":\"running\",\"pid\":5,\"restarts\":0,\"restarting\":true}",
		"service w: running -> stopping (restarting), pid 5");
	line_of("{\"event\":\"exit\",\"service\":\"web\",\"pid\":42,\"code\":3,\"signal\":null,"
		"\"runtime_ms\":1500}",
		"service web: pid 42 exited with code 3 after 1.5s");
	line_of("{\"event\":\"exit\",\"service\":\"web\",\"pid\":42,\"code\":null,\"signal\":9,"
		"\"signal_name\":\"KILL\",\"core_dumped\":true,\"runtime_ms\":61000}",
		"service web: pid 42 killed by signal KILL (core dumped) after 1m01s");
	line_of("{\"event\":\"orphan\",\"pid\":9,\"code\":0,\"signal\":null}",
		"reaped orphan pid 9: exited with code 0");
	line_of("{\"event\":\"warning\",\"message\":\"fd limit\",\"error\":\"Too many open files\"}",
		"warning: fd limit: Too many open files");
	line_of("{\"event\":\"reload\",\"message\":\"1 added\"}", "reload: 1 added");
	line_of("{\"x\":1}", "(not an event)");
}

static void test_default_socket(void **state)
{
	(void)state;
	setenv("EVMON_SOCKET", "/tmp/x.sock", 1);
	assert_string_equal(proto_default_socket(), "/tmp/x.sock");
	unsetenv("EVMON_SOCKET");
	const char *p = proto_default_socket();
	assert_true(p[0] == '/');
	assert_non_null(strstr(p, "evmon"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linebuf),	     cmocka_unit_test(test_duration),
		cmocka_unit_test(test_time),	     cmocka_unit_test(test_event_lines),
		cmocka_unit_test(test_default_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
