# Thin wrapper over meson: meson stays the build.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
CONFIG ?= packaging/rtp_cluster.xml
BENCH_BUILD ?= build-release
BENCH_ARGS ?=
DEB_OUT ?= build-deb

.PHONY: all test check sanitize fuzz install run clean bench deb

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

test: all
	meson test -C $(BUILD) --print-errorlogs

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize:
	[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(ASAN_BUILD)
	meson test -C $(ASAN_BUILD) --print-errorlogs

# Each libFuzzer target for FUZZ_SECONDS, starting from the seed corpus.
fuzz:
	[ -f $(FUZZ_BUILD)/build.ninja ] || CXX=clang++ meson setup $(FUZZ_BUILD) -Dfuzz=true -Dtests=disabled -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(FUZZ_BUILD)
	tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Everything CI runs.
check: test sanitize fuzz

# Worker benchmark (docs/benchmarks.md): release build, relays + worker on
# loopback, ~4 minutes. E.g. make bench BENCH_ARGS="--repeat 1 --duration 2".
bench:
	[ -f $(BENCH_BUILD)/build.ninja ] || meson setup $(BENCH_BUILD) --buildtype=release
	ninja -C $(BENCH_BUILD) tests/tools/rtpp_test_relay tests/tools/rtpp_loadgen tests/tools/udp_forwarder worker/rtp_cluster_worker
	python3 tests/bench/worker_bench.py --build $(BENCH_BUILD) $(BENCH_ARGS)

# Debian package (docs/install.md) into DEB_OUT; a few minutes. The packaged
# build is also a test: RTPC_TEST_DEB=1 meson test -C build deb_package_test.
deb:
	packaging/build-deb.sh $(DEB_OUT)

install: all
	meson install -C $(BUILD)

# The daemon in the foreground in front of two local relay doubles, a little
# traffic, `rtp_cluster_client ls`, then everything stopped (scripts/demo.sh).
run: all
	$(BUILD)/supervisor/rtp_cluster -d -c $(CONFIG)
	scripts/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
