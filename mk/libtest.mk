# libtest.mk - the libevmon core test suite (tests/unit/test_*.c, tests/integration/test_lib*.py).
#
# tests/helpers/evm-reaper.c runs a reaper-mode loop, so unlike the other
# helpers it links libevmon: this explicit rule takes precedence over the
# generic tests/helpers rule of the Makefile.
#
#   make test-lib          the core's unit tests, then its integration tests
#   make test-lib SAN=1    the same under ASan+UBSan

$(BUILD)/tests/evm-reaper: tests/helpers/evm-reaper.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC_LIB) -lpthread

LIBTEST_UNITS := $(addprefix $(BUILD)/tests/,test_loop test_timer test_io test_spawn test_reap \
	test_mux test_wait test_pidmap test_adopt)

.PHONY: test-lib
test-lib: all
	@$(TEST_ENV) exec tests/run-units.sh $(LIBTEST_UNITS)
	$(TEST_ENV) exec tests/isolate.sh $(PYTEST) $(PYTEST_ARGS) -m "not scale" \
		$(wildcard tests/integration/test_lib*.py)

# test_supervise checks the table text at the top of supervise.c against the
# table itself, so it reads the source; `make supervise-table` prints the text.
$(BUILD)/tests/test_supervise: private CPPFLAGS += -DT_SRCDIR=\"$(CURDIR)\"

.PHONY: supervise-table
supervise-table: $(BUILD)/tests/test_supervise
	@$< --table
