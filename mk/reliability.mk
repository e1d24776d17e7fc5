# reliability.mk - sanitizers beyond ASan, valgrind, and the soak (docs/RELIABILITY.md).
#
#   make tsan-test        the library's threaded tests (evm_spawn, evm_proc_wait,
#                         evm_spawn_wait, evm_loop_stop, evm_proc_ref/unref from other
#                         threads) built with ThreadSanitizer into build/tsan
#   make valgrind-test    the daemon and init integration tests (VALGRIND_TESTS) with every
#                         evmon process (daemon, ctl, init) under valgrind memcheck: zero
#                         errors, zero leaks (definite, indirect), no fd left open at exit
#                         but stdio; logs in $(BUILD)/valgrind/logs. Slow (~15 min): not in CI
#   make soak             SOAK_EXITS (1,000,000) exits through the daemon, each counted on
#                         its event stream; figures in $(BUILD)/soak.json
#   make reliability-test the fault injection, security, short soak and fuzz replay
#                         tests only (all of them are part of make test too)

TSAN_BUILD ?= build/tsan
TSAN_CC ?= clang
TSAN_CFLAGS := $(CSTD) -O1 -g -fno-omit-frame-pointer $(WARN) -fsanitize=thread
TSAN_UNITS ?= test_wait test_loop test_spawn test_threads test_post
TSAN_LIB_OBJ := $(LIB_SRC:src/lib/%.c=$(TSAN_BUILD)/lib/%.o)
TSAN_BINS := $(TSAN_UNITS:%=$(TSAN_BUILD)/tests/%)
# Fail at the first race. No thread-leak reports: a child that fails its exec
# calls _exit() on our memory (CLONE_VM|CLONE_VFORK), and TSan's _exit
# interceptor would check the parent's threads from there; the tests join
# their threads themselves.
TSAN_RUN_OPTIONS := halt_on_error=1 second_deadlock_stack=1 history_size=4 report_thread_leaks=0
SOAK_EXITS ?= 1000000
RELIABILITY_TESTS := tests/integration/test_faults.py tests/integration/test_security.py \
	tests/integration/test_soak.py tests/integration/test_fuzz_replay.py

VALGRIND_DIR := $(BUILD)/valgrind
VALGRIND_TESTS ?= tests/integration/test_daemon.py tests/integration/test_init.py \
	tests/integration/test_faults.py tests/integration/test_security.py
# a timing test: its 300 ms window is shorter than valgrind's start-up; valgrind
# takes a SIGILL, SIGBUS, SIGFPE or SIGSEGV sent with kill() as a fault of its own;
# the exact fd lists of init's child get valgrind's own log file (--log-file: it keeps
# that fd from the client's close_range, and the exec'd child, not traced, inherits it);
# a runtime's init name and the layout check look at the binary, which is the wrapper;
# and valgrind refuses pidfd_open, so a crash's survivor cannot be adopted (a daemon
# there leaves it alone: test_a_survivor_that_cannot_be_adopted_is_not_run_twice)
# nor can a crash's old copy still stopping be taken over or killed (both need one)
VALGRIND_DESELECT := --deselect tests/integration/test_init.py::test_end_no_wait_with_grace_zero \
	--deselect "tests/integration/test_init.py::test_forward_every_catchable_signal" \
	--deselect tests/integration/test_init.py::test_no_fd_leak \
	--deselect tests/integration/test_init.py::test_closed_stdin_stays_closed \
	--deselect tests/integration/test_init.py::test_inherited_fds_reach_cmd \
	--deselect tests/integration/test_init.py::test_invoked_as_runtime_init \
	--deselect tests/integration/test_init.py::test_init_path_first \
	--deselect tests/integration/test_faults.py::test_daemon_killed_outside_a_namespace_leaves_its_services_running \
	--deselect tests/integration/test_daemon.py::test_a_crash_lets_an_old_copy_stop_in_its_time
# --vgdb=no: vgdb's /tmp/vgdb-pipe-*-vgdb-PID-* file is per pid, and a test's pid namespace
# reuses pids: another uid's valgrind of the same pid could not make its own (EACCES)
VALGRIND_FLAGS := --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect \
	--track-fds=yes --child-silent-after-fork=yes --trace-children=no --vgdb=no

.PHONY: tsan-test tsan-build soak reliability-test valgrind-test

$(TSAN_BUILD)/lib/%.o: src/lib/%.c include/evmon.h $(wildcard src/lib/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(TSAN_CC) $(CPPFLAGS) $(TSAN_CFLAGS) -DEVM_BUILDING_LIBRARY -c $< -o $@

$(TSAN_BUILD)/libevmon.a: $(TSAN_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# the helper is a child program, not under test: built plain
$(TSAN_BUILD)/tests/evm-helper: tests/helpers/evm-helper.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(TSAN_CC) $(CPPFLAGS) $(CSTD) -O1 -g $(WARN) -o $@ $<

# tests/tsan/test_X.c is tests/unit/test_X.c with direct spawns only (see tests/tsan/tsan.h);
# tests/tsan/test_threads.c is the thread-safe API under load. test_reap is left
# out: it has no threads, and two of its tests need the spawn helper.
$(TSAN_BUILD)/tests/test_%: tests/tsan/test_%.c tests/tsan/tsan.h $(TSAN_BUILD)/libevmon.a \
		$(wildcard tests/unit/*.h tests/unit/test_*.c)
	@mkdir -p $(dir $@)
	$(TSAN_CC) $(CPPFLAGS) -Itests/unit $(TSAN_CFLAGS) -o $@ $< $(TSAN_BUILD)/libevmon.a \
		$(CMOCKA_LIBS) -lpthread

tsan-build: $(TSAN_BINS) $(TSAN_BUILD)/tests/evm-helper

tsan-test: tsan-build
	@EVMON_BUILD=$(TSAN_BUILD) TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" UNIT_TIMEOUT=900 \
		exec tests/run-units.sh $(TSAN_BINS)

soak: all
	$(TEST_ENV) EVMON_SOAK_EXITS=$(SOAK_EXITS) EVMON_SOAK_REPORT=$(abspath $(BUILD))/soak.json \
		exec tests/isolate.sh $(PYTEST) -q -s -p no:cacheprovider tests/integration/test_soak.py
	@cat $(BUILD)/soak.json

reliability-test: all
	$(TEST_ENV) exec tests/isolate.sh $(PYTEST) $(PYTEST_ARGS) -m "not scale" $(RELIABILITY_TESTS)

# The tests find evmon in $EVMON_BUILD: a directory whose evmon is a script running the
# real one under valgrind (the helpers, the children, are not). Every evmon process
# writes its own log; each must end with 0 errors and only stdio open.
valgrind-test: all
	@bash scripts/deps.sh valgrind
	rm -rf $(VALGRIND_DIR) && mkdir -p $(VALGRIND_DIR)/logs $(VALGRIND_DIR)/real
	chmod 1777 $(VALGRIND_DIR)/logs # daemons run as other uids write there too
	ln -s $(abspath $(BUILD))/tests $(VALGRIND_DIR)/tests
	ln -s $(abspath $(EVMON)) $(VALGRIND_DIR)/real/evmon-init
	sed -e 's|@REAL@|$(abspath $(EVMON))|' -e 's|@DIR@|$(abspath $(VALGRIND_DIR))|g' \
		-e 's|@FLAGS@|$(VALGRIND_FLAGS)|' tests/integration/valgrind-wrapper.sh > $(VALGRIND_DIR)/evmon
	chmod +x $(VALGRIND_DIR)/evmon
	-EVMON_BUILD=$(abspath $(VALGRIND_DIR)) EVMON_SAN=1 EVMON_VALGRIND=1 tests/isolate.sh $(PYTEST) \
		-q -p no:cacheprovider -m "not scale" $(VALGRIND_TESTS) $(VALGRIND_DESELECT) 2>&1 \
		| tee $(VALGRIND_DIR)/pytest.log
	/usr/bin/python3 tests/integration/valgrind_report.py $(VALGRIND_DIR)/logs $(VALGRIND_DIR)/pytest.log
