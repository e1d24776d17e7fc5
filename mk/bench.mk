# bench.mk - the benchmark suite (bench/, docs/BENCHMARKS.md).
#
#   make bench            quick run (a few minutes): results in bench/results/,
#                         then docs/BENCHMARKS.md and docs/bench-*.png regenerated
#   make bench FULL=1     the full run (35 min to ~2 h on 2 cores, by host)
#   make bench-build      only build the harnesses (`make all` relinks an evmon_bench
#                         that exists, against the new libevmon.a)
#   make bench-report     regenerate the doc from the CSVs already in bench/results/
#   make bench-runtimes   S9: `runc run` with evmon-init, tini-static and no init, 30
#                         interleaved runs each (root, runc), into docs/BENCHMARKS.md
#
# The peers come from Debian (installed here if missing). Harnesses are built
# into $(BUILD)/bench/; the runner is bench/run.py (stdlib Python).

BENCH_DIR := $(BUILD)/bench
BENCH_PKGS := libuv1-dev golang-go tini dumb-init catatonit supervisor s6 runit gnuplot-nox file
BENCH_STAMP := build/.bench-deps-ok
BENCH_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE
BENCH_TINY_CFLAGS := -std=c11 -O2 -Wall -Wextra -Werror -static -nostdlib -ffreestanding \
	-fno-stack-protector -fno-pie -no-pie -fno-asynchronous-unwind-tables -s

BENCH_BINS := $(BENCH_DIR)/tiny $(BENCH_DIR)/evmon_bench $(BENCH_DIR)/raw_bench \
	$(BENCH_DIR)/uv_bench $(BENCH_DIR)/go_bench

.PHONY: bench bench-build bench-report bench-deps bench-runtimes

bench-deps: $(BENCH_STAMP)
$(BENCH_STAMP): mk/bench.mk scripts/deps.sh
	@bash scripts/deps.sh $(BENCH_PKGS)
	@mkdir -p $(dir $@) && touch $@

$(BENCH_DIR)/tiny: bench/children/tiny.c | $(BENCH_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_TINY_CFLAGS) -o $@ $<

$(BENCH_DIR)/evmon_bench: bench/harness/evmon_bench.c bench/harness/common.h $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) -o $@ $< $(STATIC_LIB) -lpthread

$(BENCH_DIR)/raw_bench: bench/harness/raw_bench.c bench/harness/common.h | $(BENCH_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $<

$(BENCH_DIR)/uv_bench: bench/peers/uv_bench.c bench/harness/common.h | $(BENCH_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -Ibench/harness -o $@ $< $$(pkg-config --libs libuv 2>/dev/null || echo -luv)

$(BENCH_DIR)/go_bench: bench/peers/go_bench.go | $(BENCH_STAMP)
	@mkdir -p $(dir $@)
	cd bench/peers && GOCACHE=$(abspath $(BUILD))/go-cache GO111MODULE=off \
		go build -o $(abspath $@) go_bench.go

bench-build: $(BENCH_BINS)

# `make all` also relinks an evmon_bench built before (the one harness with evmon's code
# in it): bench/run.py run by hand after a change to the library measured the old one.
# A harness never built stays unbuilt (its peers' packages are `make bench`'s business).
all: $(wildcard $(BENCH_DIR)/evmon_bench)

# S5 and S6 need the evmon binary (and S5 the evmon-init of `make static` and of `make
# init-dynamic`); what does not build is reported as "not available yet" and skipped.
bench: bench-build
	@$(MAKE) --no-print-directory $(EVMON) >/dev/null 2>&1 || \
		echo "bench: $(EVMON) does not build: S5 (evmon init) and S6 (daemon) will be skipped"
	@$(MAKE) --no-print-directory static >/dev/null 2>&1 || \
		echo "bench: no static evmon-init (make static): S5 measures the dynamic evmon init only"
	@$(MAKE) --no-print-directory init-dynamic >/dev/null 2>&1 || \
		echo "bench: no dynamic evmon-init (make init-dynamic): S5 skips it"
	/usr/bin/python3 bench/run.py --build $(BUILD) $(if $(FULL),--full) $(BENCH_ARGS)

bench-report:
	/usr/bin/python3 bench/report.py

bench-runtimes: $(BUILD)/evmon-init
	@bash scripts/deps.sh runc busybox-static tini
	/usr/bin/python3 bench/runtimes.py --build $(BUILD) --doc docs/BENCHMARKS.md
