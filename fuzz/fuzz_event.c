/*
 * fuzz_event.c - the client side of the control protocol: what `evmon ctl`
 * makes of a line from the daemon (the printers of src/ctl/show.c, and
 * proto_event_line of src/common/proto.c). The daemon is
 * trusted, but a line is still bytes from a socket: any JSON value, any
 * number, any missing field must print something and never crash.
 *
 * Properties: proto_event_line always leaves a NUL-terminated line shorter
 * than its buffer, for every buffer size from 1 to 64 bytes as well as the
 * 1 KiB ctl uses.
 */
#include "fuzz.h"

#include "proto.h"
#include "show.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* the printers write to stdout and stderr: only crashes matter here */
	if (!freopen("/dev/null", "w", stdout))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cJSON *j = cJSON_ParseWithLength((const char *)data, size);
	if (!j)
		return 0;
	char line[1024];
	memset(line, 'x', sizeof(line));
	proto_event_line(j, line, sizeof(line));
	FUZZ_CHECK(memchr(line, '\0', sizeof(line)));
	char small[64];
	size_t len = 1 + (size_t)data[0] % sizeof(small);
	memset(small, 'x', sizeof(small));
	proto_event_line(j, small, len);
	FUZZ_CHECK(memchr(small, '\0', len));
	for (size_t i = len; i < sizeof(small); i++)
		FUZZ_CHECK(small[i] == 'x');

	show_status(j);
	show_services(j);
	show_reload(j);
	show_signal(j);
	show_removed(j);
	show_ping(j);
	show_reopened(j);
	show_failure(j, show_services);
	cJSON_Delete(j);
	return 0;
}
