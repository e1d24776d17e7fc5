# daemon.mk - unit tests of `evmon daemon` / `evmon ctl` code (src/daemon, src/common).
#
# The generic rule links a unit test with libevmon.a and cmocka only; these
# tests also need the CLI sources they test, libinih and cjson.c (which opens libcjson), so they
# get explicit rules (an explicit rule beats the pattern rule).

DAEMON_TEST_SRC := src/common/argv.c src/daemon/config.c src/daemon/confread.c src/daemon/confkeys.c $(wildcard src/daemon/confset*.c) src/daemon/confvalue.c src/daemon/confcheck.c src/daemon/confdeps.c src/daemon/envfile.c src/daemon/rootalone.c src/common/errlist.c src/common/signame.c \
	src/common/proto.c $(wildcard src/daemon/control*.c) src/daemon/sockfile.c src/common/hashmap.c \
	src/common/duration.c src/common/pathfind.c src/daemon/listenaddr.c src/daemon/probetarget.c \
	src/common/cjson.c src/common/textsafe.c src/ctl/safe.c
DAEMON_TESTS := $(BUILD)/tests/test_argv $(BUILD)/tests/test_config $(BUILD)/tests/test_proto \
	$(BUILD)/tests/test_control $(BUILD)/tests/test_common $(BUILD)/tests/test_confread

$(DAEMON_TESTS): $(BUILD)/tests/test_%: tests/unit/test_%.c $(DAEMON_TEST_SRC) $(CLI_HDR) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/common -Isrc/daemon -Isrc/ctl -Itests/unit $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< \
		$(DAEMON_TEST_SRC) $(STATIC_LIB) $(PKG_LIBS) $(CMOCKA_LIBS) -lpthread
