# evmon - top-level build.
#
#   make              build the library, the evmon binary, examples, test programs
#   make test         build, then run the unit and integration tests: the functional
#                     suite, a few minutes on a loaded 2-core machine
#   make test-scale   the scale tests: 10,000-child storms, 20,000 orphans, 1,000-process
#                     trees, a 1,000-service crash-loop herd (slow; .ci/run runs it)
#   make run          build, then start the supervisor on examples/demo.ini
#   make SAN=1 test   the same under AddressSanitizer + UBSan (separate build dir)
#   make CC=clang     build with clang (separate build dir)
#   make clean
#
# Missing Debian packages are installed first (scripts/deps.sh; needs root).
# Components add targets in mk/*.mk; sources are picked up by wildcard.

VERSION := $(shell cat VERSION)
MAJOR := $(word 1,$(subst ., ,$(VERSION)))
MINOR := $(word 2,$(subst ., ,$(VERSION)))

CC ?= cc
SAN ?=
CCNAME := $(notdir $(firstword $(CC)))
BUILD ?= build/$(CCNAME)$(if $(SAN),-san)

OPT ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CSTD := -std=c11
CPPFLAGS += -Iinclude -Isrc/lib -D_GNU_SOURCE -DEVM_VERSION_STRING=\"$(VERSION)\"
ifneq ($(SAN),)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
endif
ALL_CFLAGS = $(CSTD) $(OPT) $(WARN) $(SANFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)
LIB_CFLAGS := -fPIC -fvisibility=hidden -DEVM_BUILDING_LIBRARY
# The evmon binary is also `evmon init`: a running init's RSS counts every page of the
# binary it maps, and a fault maps up to 16 pages from it (or from its mapping's start).
# A function per section, and src/init/layout.ld (scripts/init-layout.py) puts the code
# the init runs in a mapping of its own, its constants with the headers and its variables
# where .data ends: 84 KiB of the binary mapped instead of 168 (and 268 before any of it).
# Relative relocations packed (DT_RELR; ignored by a linker or libc without it): 14 KiB
# of them become 200 bytes.
LAYOUT_CFLAGS := -ffunction-sections
EVMON_LAYOUT := src/init/layout.ld
EVMON_LDFLAGS := -Wl,-T,$(EVMON_LAYOUT) -Wl,-z,pack-relative-relocs

# libmicrohttpd is opened at run time, by metrics_listen only (src/daemon/metricshttp.c), and
# libcjson by the daemon and ctl (src/common/cjson.h); inih is linked statically where its
# archive is installed (Debian's libinih-dev has it): `evmon init` loads no library but libc
INIH_A := $(wildcard $(shell pkg-config --variable=libdir inih 2>/dev/null)/libinih.a)
PKG_LIBS := $(or $(INIH_A),$(shell pkg-config --libs inih 2>/dev/null || echo -linih)) -ldl
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
PYTEST := /usr/bin/python3 -m pytest

LIB_SRC := $(wildcard src/lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
# the evmon command: src/main.c dispatches to init, daemon and ctl, which
# share src/common; each folder sees only its own headers and common's
CLI_DIRS := common init daemon ctl
CLI_SRC := src/main.c $(foreach d,$(CLI_DIRS),$(wildcard src/$(d)/*.c))
CLI_HDR := $(foreach d,$(CLI_DIRS),$(wildcard src/$(d)/*.h))
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
cli_inc = -Isrc/common $(foreach d,init daemon ctl,$(if $(filter src/$(d)/%,$(1)),-Isrc/$(d)))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_SRC := $(wildcard tests/helpers/*.c)
HELPER_BIN := $(HELPER_SRC:tests/helpers/%.c=$(BUILD)/tests/%)
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)

STATIC_LIB := $(BUILD)/libevmon.a
SHARED_LIB := $(BUILD)/libevmon.so.$(MAJOR).$(MINOR)
EVMON := $(BUILD)/evmon
DEPS_STAMP := build/.deps-ok

.PHONY: all deps test unit integration test-scale unit-scale integration-scale run clean
.DEFAULT_GOAL := all

all: $(DEPS_STAMP) $(STATIC_LIB) $(SHARED_LIB) $(if $(CLI_SRC),$(EVMON)) $(HELPER_BIN) $(EXAMPLE_BIN) $(UNIT_BIN)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@bash scripts/deps.sh
	@mkdir -p $(dir $@) && touch $@
# The stamp is read as a makefile (it is empty): when make has just made it, make reads
# this Makefile again, and what the install brought (libinih.a for INIH_A) counts on a
# fresh machine's first `make test` too. `make clean` installs nothing.
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
-include $(DEPS_STAMP)
endif

$(BUILD)/src/lib/%.o: src/lib/%.c include/evmon.h $(wildcard src/lib/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LIB_CFLAGS) $(LAYOUT_CFLAGS) -c $< -o $@

$(BUILD)/src/%.o: src/%.c include/evmon.h $(CLI_HDR) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(call cli_inc,$<) $(ALL_CFLAGS) $(LAYOUT_CFLAGS) -c $< -o $@

$(STATIC_LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(SHARED_LIB): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libevmon.so.$(MAJOR) $(ALL_LDFLAGS) -o $@ $^ -lpthread
	ln -sf $(notdir $@) $(BUILD)/libevmon.so.$(MAJOR)
	ln -sf $(notdir $@) $(BUILD)/libevmon.so

$(EVMON): $(CLI_OBJ) $(STATIC_LIB) $(EVMON_LAYOUT)
	$(CC) $(ALL_LDFLAGS) $(EVMON_LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC_LIB) $(PKG_LIBS) -lpthread

$(BUILD)/tests/%: tests/helpers/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

$(BUILD)/tests/test_%: tests/unit/test_%.c $(STATIC_LIB) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC_LIB) $(CMOCKA_LIBS) -lpthread

$(BUILD)/examples/%: examples/%.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC_LIB) -lpthread

# Every test program runs in its own PID namespace (tests/isolate.sh): whatever
# it starts dies with it, and with make (even on kill -9). tests/run-units.sh
# runs every unit binary, then lists all failures and skip reasons. Deadlines
# scale with EVMON_TEST_SLOW=N (x3 under SAN=1). `exec` makes the runner
# make's own child, so that it dies with make.
TEST_ENV = EVMON_BUILD=$(abspath $(BUILD)) EVMON_SAN=$(SAN)
# binaries with a scale group (EVMON_TEST_SCALE=1 runs only that group)
SCALE_UNITS := test_reap test_supervise
PYTEST_ARGS := -q -p no:cacheprovider -rs

unit: all
	@$(TEST_ENV) exec tests/run-units.sh $(UNIT_BIN)

integration: all
	$(TEST_ENV) exec tests/isolate.sh $(PYTEST) $(PYTEST_ARGS) -m "not scale" tests/integration

test: unit integration

unit-scale: all
	@$(TEST_ENV) EVMON_TEST_SCALE=1 exec tests/run-units.sh $(SCALE_UNITS:%=$(BUILD)/tests/%)

integration-scale: all
	$(TEST_ENV) EVMON_TEST_SCALE=1 exec tests/isolate.sh $(PYTEST) $(PYTEST_ARGS) -m scale tests/integration

test-scale: unit-scale integration-scale

clean:
	rm -rf build

-include $(sort $(wildcard mk/*.mk))

# `make run`: the supervisor on the demo config, in the foreground (Ctrl-C stops
# every service and exits). Talk to it from another terminal with evmon ctl.
DEMO_SOCK = $(abspath $(BUILD))/demo.sock
run: all
	@mkdir -p build/demo-logs
	@echo "evmon daemon on examples/demo.ini (logs in build/demo-logs); from another terminal:"
	@echo "  $(abspath $(EVMON)) ctl -S $(DEMO_SOCK) status"
	@echo "  $(abspath $(EVMON)) ctl -S $(DEMO_SOCK) events"
	@echo "  $(abspath $(EVMON)) ctl -S $(DEMO_SOCK) logs web:0 -f"
	@echo "  $(abspath $(EVMON)) ctl -S $(DEMO_SOCK) restart web"
	@echo "  $(abspath $(EVMON)) ctl -S $(DEMO_SOCK) add hello -- sleep 600"
	@echo "Ctrl-C stops every service and the daemon."
	$(EVMON) daemon -c examples/demo.ini -S $(DEMO_SOCK)
