# init.mk - `evmon init` extras (docs/INIT.md).
#
#   make static          a static, stripped $(BUILD)/evmon-init: src/init/*.c, signame.c and
#                        libevmon only (no inih, no cJSON), built -Os without sanitizers
#   make init-dynamic    $(BUILD)/dynamic/evmon-init: the same objects linked against the
#                        shared libc only; what `make install` installs as evmon-init
#   make init-test       only the init integration tests (tests/integration/test_init.py)
#   make compat          the init tests against evmon, Debian's tini and dumb-init
#                        (installed if missing); regenerates the compatibility table
#                        in docs/INIT.md and fails on an undocumented difference
#   make init-footprint  binary sizes and RSS of a running init, both evmon-init next to
#                        tini, dumb-init and catatonit, into docs/INIT.md; then init-size
#   make init-size       fails if the static evmon-init is bigger than Debian's tini-static
#   make runtime-test    evmon-init and tini-static under runc, crun and podman; evmon daemon
#                        as a container's PID 1 (tests/integration/test_runtimes.py)
#   make init-soak       1,000,000 orphans reaped by one init; its RSS must not grow
#                        (INIT_SOAK_ORPHANS=N to change; takes minutes)

INIT_STATIC := $(BUILD)/evmon-init
INIT_STATIC_DIR := $(BUILD)/static
# The init runs one thread and spawns one child: libevmon without its spawn
# helper and locks (EVM_NO_SPAWN_HELPER, EVM_SINGLE_THREAD: src/lib/internal.h),
# 64 epoll events a wait (EVM_MAX_EVENTS), the spawn stack's pages given back
# after the child's exec (EVM_RELEASE_SPAWN_STACK), and link-time optimisation,
# so that it is no bigger than tini-static, on disk and in memory, and the
# dynamic one no bigger than tini in RSS (docs/INIT.md).
INIT_STATIC_CFLAGS := -std=c11 -Os -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
	-ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables -flto \
	-DEVM_NO_SPAWN_HELPER -DEVM_SINGLE_THREAD -DEVM_MAX_EVENTS=64 -DEVM_RELEASE_SPAWN_STACK
INIT_STATIC_LIB_OBJ := $(LIB_SRC:src/lib/%.c=$(INIT_STATIC_DIR)/lib/%.o)
INIT_STATIC_CLI_SRC := $(wildcard src/init/*.c) src/common/signame.c src/common/duration.c \
	src/common/pathfind.c
INIT_STATIC_CLI_OBJ := $(INIT_STATIC_CLI_SRC:src/%.c=$(INIT_STATIC_DIR)/%.o)
INIT_SOAK_ORPHANS ?= 1000000
INIT_COMPAT := evmon tini dumb-init

.PHONY: static init-dynamic init-test compat init-footprint init-size init-soak runtime-test

static: $(INIT_STATIC)
	@size=$$(stat -c %s $(INIT_STATIC)); echo "$(INIT_STATIC): static, stripped, $$size bytes"

$(INIT_STATIC_DIR)/lib/%.o: src/lib/%.c include/evmon.h $(wildcard src/lib/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(INIT_STATIC_CFLAGS) -DEVM_BUILDING_LIBRARY -c $< -o $@

$(INIT_STATIC_DIR)/%.o: src/%.c include/evmon.h $(CLI_HDR) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(call cli_inc,$<) $(INIT_STATIC_CFLAGS) -DEVMON_INIT_STANDALONE -c $< -o $@

$(INIT_STATIC_DIR)/libevmon.a: $(INIT_STATIC_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(INIT_STATIC): $(INIT_STATIC_CLI_OBJ) $(INIT_STATIC_DIR)/libevmon.a
	$(CC) -static -flto -Os -Wl,--gc-sections -s -o $@ $(INIT_STATIC_CLI_OBJ) $(INIT_STATIC_DIR)/libevmon.a

# The dynamic init: the static build's objects, linked against libc.so alone. `evmon init`
# through the evmon binary maps that binary's 350 kB of daemon and ctl code and loads inih
# and cJSON at every start: 1,600 kB RSS against tini's 1,300. -z noseparate-code: its
# headers, code and constants in one mapping, a page less of a 52 kB file (docs/INIT.md).
INIT_DYNAMIC := $(BUILD)/dynamic/evmon-init

init-dynamic: $(INIT_DYNAMIC)
	@size=$$(stat -c %s $(INIT_DYNAMIC)); echo "$(INIT_DYNAMIC): dynamic (libc only), stripped, $$size bytes"

$(INIT_DYNAMIC): $(INIT_STATIC_CLI_OBJ) $(INIT_STATIC_DIR)/libevmon.a
	@mkdir -p $(dir $@)
	$(CC) -flto -Os -Wl,--gc-sections -Wl,--as-needed -Wl,-z,noseparate-code -s -o $@ \
		$(INIT_STATIC_CLI_OBJ) $(INIT_STATIC_DIR)/libevmon.a

init-test: all
	$(TEST_ENV) exec tests/isolate.sh $(PYTEST) $(PYTEST_ARGS) -m "not scale" tests/integration/test_init.py

compat: all
	@bash scripts/deps.sh tini dumb-init
	@set -e; for impl in $(INIT_COMPAT); do \
		echo "== init tests against $$impl"; \
		$(TEST_ENV) EVMON_INIT_IMPL=$$impl tests/isolate.sh $(PYTEST) -q \
			-p no:cacheprovider tests/integration/test_init.py \
			--junitxml=$(BUILD)/compat-$$impl.xml || true; \
	done
	/usr/bin/python3 tests/integration/test_init.py --report docs/INIT.md \
		$(INIT_COMPAT:%=$(BUILD)/compat-%.xml)

init-footprint: $(INIT_STATIC) $(INIT_DYNAMIC) all
	@bash scripts/deps.sh tini dumb-init catatonit
	EVMON_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/integration/test_init.py \
		--footprint docs/INIT.md $(INIT_STATIC)

init-size: $(INIT_STATIC)
	@bash scripts/deps.sh tini
	@/usr/bin/python3 tests/integration/test_init.py --size $(INIT_STATIC)

init-soak: all
	$(TEST_ENV) EVMON_INIT_SOAK_ORPHANS=$(INIT_SOAK_ORPHANS) \
		exec tests/isolate.sh $(PYTEST) -q -s -p no:cacheprovider tests/integration/test_init.py -k test_memory_flat

# The OCI runtime tests (tests/integration/test_runtimes.py) put the static init in a
# busybox rootfs next to tini-static; `make test` builds it so they do not skip, and
# the dynamic one for test_init.py's test_dynamic_build.
integration: $(INIT_STATIC) $(INIT_DYNAMIC)

runtime-test: all $(INIT_STATIC)
	@bash scripts/deps.sh runc crun busybox-static tini podman
	$(TEST_ENV) exec tests/isolate.sh $(PYTEST) $(PYTEST_ARGS) tests/integration/test_runtimes.py
