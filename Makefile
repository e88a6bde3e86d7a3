# Thin wrapper over meson: meson stays the build.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
CONFIG ?= packaging/rtp_cluster.xml
BENCH_BUILD ?= build-release
BENCH_ARGS ?=
DEB_OUT ?= build-deb
# Real peers for the interop and end-to-end tests, built from ../shared when it
# is there (README, "Real peers in the tests"), cached in PEERS_DIR.
SHARED_DIR ?= ../shared
PEERS_DIR ?= build-peers
RTPPROXY_BUILT = $(abspath $(PEERS_DIR))/rtpproxy/rtpproxy
OPENSIPS_BUILT = $(abspath $(PEERS_DIR))/opensips
# Evaluated when a test recipe runs, after `peers`; a value from the
# environment wins. Empty: the tests that need the peer say they are skipped.
RTPC_RTPPROXY ?= $(if $(wildcard $(RTPPROXY_BUILT)),$(RTPPROXY_BUILT))
RTPC_OPENSIPS_DIR ?= $(if $(wildcard $(OPENSIPS_BUILT)/sbin/opensips),$(OPENSIPS_BUILT))
export RTPC_RTPPROXY RTPC_OPENSIPS_DIR

.PHONY: all test check sanitize fuzz install run clean bench deb peers

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

test: all peers
	meson test -C $(BUILD) --print-errorlogs

# rtpproxy 3.2 and OpenSIPS 3.6 from $(SHARED_DIR)/relays and /signalling (a
# few minutes, once: an existing build in PEERS_DIR is reused).
peers:
	@if [ -f $(SHARED_DIR)/relays/build-rtpproxy.sh ]; then \
	  [ -x $(RTPPROXY_BUILT) ] || { echo "building rtpproxy into $(PEERS_DIR)/rtpproxy"; \
	    sh $(SHARED_DIR)/relays/build-rtpproxy.sh $(PEERS_DIR)/rtpproxy; } || exit 1; \
	else echo "peers: no $(SHARED_DIR)/relays: the tests that need a real rtpproxy will be skipped"; fi
	@if [ -f $(SHARED_DIR)/signalling/build-opensips.sh ]; then \
	  [ -x $(OPENSIPS_BUILT)/sbin/opensips ] || { echo "building OpenSIPS into $(PEERS_DIR)/opensips"; \
	    sh $(SHARED_DIR)/signalling/build-opensips.sh $(PEERS_DIR)/opensips; } || exit 1; \
	else echo "peers: no $(SHARED_DIR)/signalling: the OpenSIPS tests will be skipped"; fi

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize: peers
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
