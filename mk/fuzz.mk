# fuzz.mk - fuzzing (fuzz/, docs/RELIABILITY.md).
#
#   make fuzz               every target for FUZZ_SECONDS (default 60) each, with
#                           libFuzzer (clang, ASan+UBSan), from the seeds in
#                           fuzz/corpus/TARGET; new inputs go to build/fuzz/corpus,
#                           findings to build/fuzz/artifacts; a table of executions,
#                           time, coverage and corpus size is printed at the end
#   make fuzz-ci            the reproducers and seeds once, then each target for
#                           FUZZ_CI_SECONDS (default 5)
#   make fuzz-regress       only the reproducers (fuzz/regress/TARGET) and the seeds
#   make fuzz-build         only build build/fuzz/fuzz_TARGET
#   make fuzz FUZZ_TARGETS="proto config" FUZZ_SECONDS=600
#
# Without clang the same harnesses are linked with fuzz/replay.c by the normal
# build ($(BUILD)/fuzz/replay_TARGET, part of `all`), and `make test` runs the
# seeds and reproducers through them (tests/integration/test_fuzz_replay.py).
# The CLI sources are linked from an archive without main(), so a harness
# that includes a .c file for its static functions does not clash with it.

FUZZ_TARGETS ?= argv signal config proto event init_args
FUZZ_BUILD ?= build/fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 5
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := $(CSTD) -O1 -g $(WARN) $(FUZZ_SAN)
FUZZ_LIB_OBJ := $(LIB_SRC:src/lib/%.c=$(FUZZ_BUILD)/lib/%.o)
FUZZ_CLI_SRC := $(filter-out src/main.c src/init/standalone.c,$(CLI_SRC))
FUZZ_CLI_OBJ := $(FUZZ_CLI_SRC:src/%.c=$(FUZZ_BUILD)/cli/%.o)
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_DEPS := fuzz/fuzz.h include/evmon.h $(CLI_SRC) $(CLI_HDR)
# per target: every exec of the control protocol target runs /bin/sleep (see fuzz_proto.c)
FUZZ_LDFLAGS_proto := -Wl,--wrap=execve
# per target: the largest input (libFuzzer's default is 4096)
FUZZ_MAXLEN_proto := 16384
FUZZ_MAXLEN_config := 8192
FUZZ_RUN_FLAGS := -timeout=30 -rss_limit_mb=2048 -close_fd_mask=3 -print_final_stats=1

REPLAY_DIR := $(BUILD)/fuzz
REPLAY_CLI_OBJ := $(FUZZ_CLI_SRC:%.c=$(BUILD)/%.o)
REPLAY_BINS := $(FUZZ_TARGETS:%=$(REPLAY_DIR)/replay_%)

.PHONY: fuzz fuzz-ci fuzz-regress fuzz-build
all: $(REPLAY_BINS)

# ------------------------------------------------------------ libFuzzer build

$(FUZZ_BUILD)/lib/%.o: src/lib/%.c include/evmon.h $(wildcard src/lib/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -DEVM_BUILDING_LIBRARY -c $< -o $@

$(FUZZ_BUILD)/cli/%.o: src/%.c include/evmon.h $(CLI_HDR) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(call cli_inc,$<) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libevmon.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/libcli.a: $(FUZZ_CLI_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_DEPS) $(FUZZ_BUILD)/libcli.a $(FUZZ_BUILD)/libevmon.a
	$(FUZZ_CC) $(CPPFLAGS) -Isrc/common -Isrc/init -Isrc/daemon -Isrc/ctl -Ifuzz $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
		$(FUZZ_BUILD)/libcli.a $(FUZZ_BUILD)/libevmon.a $(PKG_LIBS) -lpthread $(FUZZ_LDFLAGS_$*)

fuzz-build: $(FUZZ_BINS)

# One target: $(1) name, $(2) seconds. New inputs go to the build's corpus
# (first directory), the seeds in the repository are only read.
define fuzz_run
	mkdir -p $(FUZZ_BUILD)/corpus/$(1) $(FUZZ_BUILD)/artifacts $(FUZZ_BUILD)/logs
	echo "== fuzz_$(1): $(2) s"
	$(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(2) $(FUZZ_RUN_FLAGS) \
		$(if $(FUZZ_MAXLEN_$(1)),-max_len=$(FUZZ_MAXLEN_$(1))) \
		$(if $(wildcard fuzz/dict/$(1).dict),-dict=fuzz/dict/$(1).dict) \
		-artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)- \
		$(FUZZ_BUILD)/corpus/$(1) fuzz/corpus/$(1) > $(FUZZ_BUILD)/logs/$(1).log 2>&1 || \
		{ tail -60 $(FUZZ_BUILD)/logs/$(1).log; echo "fuzz_$(1): FAILED (input in $(FUZZ_BUILD)/artifacts/)"; exit 1; }
	sh fuzz/summary.sh $(1) $(FUZZ_BUILD)/logs/$(1).log | tee -a $(FUZZ_BUILD)/summary.txt

endef

fuzz: $(FUZZ_BINS)
	@rm -f $(FUZZ_BUILD)/summary.txt
	@$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_SECONDS)))
	@echo "== summary ($(FUZZ_BUILD)/summary.txt)"; sh fuzz/summary.sh --header; cat $(FUZZ_BUILD)/summary.txt

# The reproducers of past findings and the seeds, each run once.
fuzz-regress: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
		dirs="fuzz/corpus/$$t"; [ -d fuzz/regress/$$t ] && dirs="$$dirs fuzz/regress/$$t"; \
		echo "== fuzz_$$t: $$dirs"; \
		$(FUZZ_BUILD)/fuzz_$$t -runs=0 -close_fd_mask=3 $$dirs > $(FUZZ_BUILD)/regress-$$t.log 2>&1 || \
			{ tail -40 $(FUZZ_BUILD)/regress-$$t.log; exit 1; }; \
	done

fuzz-ci: fuzz-regress
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS)

# ------------------------------------------------- replay build (any compiler)

$(REPLAY_DIR)/libcli.a: $(REPLAY_CLI_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

$(REPLAY_DIR)/replay_%: fuzz/fuzz_%.c fuzz/replay.c $(FUZZ_DEPS) $(REPLAY_DIR)/libcli.a $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/common -Isrc/init -Isrc/daemon -Isrc/ctl -Ifuzz $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< fuzz/replay.c \
		$(REPLAY_DIR)/libcli.a $(STATIC_LIB) $(PKG_LIBS) -lpthread $(FUZZ_LDFLAGS_$*)
