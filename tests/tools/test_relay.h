#pragma once
// rtpp_test_relay: an RTPproxy double for integration tests and benchmarks.
// Control sockets (udp, udp6, unix, cunix, tcp) in front of RelayEngine, an
// rtpproxy-style UDP reply cache, session-timeout notifications, and faults
// that can be set on the command line or at run time over an admin socket.
// One thread, one libevent loop.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/tools/relay_engine.h"

namespace rtpc {

// Faults applied by the I/O layer (answer faults are in RelayAnswerFaults).
struct RelayIoFaults {
  uint32_t delay_ms = 0;
  double drop_percent = 0.0;
  bool mute = false;
  bool garbage = false;
};

struct RelayOptions {
  RelayConfig config;
  std::vector<std::string> listen;  // -s
  std::string admin;                // --admin
  RelayIoFaults io_faults;
  RelayAnswerFaults answer_faults;
  size_t cache_entries = 1u << 19;
};

// Parses the command line; returns an error message, or "" (help sets `help`).
std::string parseRelayOptions(int argc, char** argv, RelayOptions& out, bool& help);
std::string relayUsage();

// Parses "E98"/"98"/"off" for refuse; -1 when invalid.
int parseRefuseCode(std::string_view text);

class TestRelay {
 public:
  explicit TestRelay(RelayOptions options);
  ~TestRelay();
  TestRelay(const TestRelay&) = delete;
  TestRelay& operator=(const TestRelay&) = delete;

  // Binds everything and prints `LISTENING <uri>` / `ADMIN <uri>` / `READY`.
  bool start(std::string& error);
  // Runs until SIGTERM/SIGINT; returns the exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rtpc
