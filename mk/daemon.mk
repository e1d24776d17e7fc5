# daemon.mk - unit tests of `evmon daemon` / `evmon ctl` code (src/cli).
#
# The generic rule links a unit test with libevmon.a and cmocka only; these
# tests also need the CLI sources they test and libinih/libcjson, so they
# get explicit rules (an explicit rule beats the pattern rule).

DAEMON_TEST_SRC := src/cli/argv.c src/cli/config.c src/cli/errlist.c src/cli/signame.c \
	src/cli/proto.c src/cli/control.c
DAEMON_TESTS := $(BUILD)/tests/test_argv $(BUILD)/tests/test_config $(BUILD)/tests/test_proto \
	$(BUILD)/tests/test_control

$(DAEMON_TESTS): $(BUILD)/tests/test_%: tests/unit/test_%.c $(DAEMON_TEST_SRC) $(wildcard src/cli/*.h) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/cli -Itests/unit $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< \
		$(DAEMON_TEST_SRC) $(STATIC_LIB) $(PKG_LIBS) $(CMOCKA_LIBS) -lpthread
