// rtpp_test_relay: see tests/tools/test_relay.h.
#include <cstdio>
#include <string>

#include "tests/tools/test_relay.h"

int main(int argc, char** argv) {
  rtpc::RelayOptions options;
  bool help = false;
  const std::string error = rtpc::parseRelayOptions(argc, argv, options, help);
  if (help) {
    std::fputs(rtpc::relayUsage().c_str(), stdout);
    return 0;
  }
  if (!error.empty()) {
    std::fprintf(stderr, "rtpp_test_relay: %s\n%s", error.c_str(), rtpc::relayUsage().c_str());
    return 2;
  }
  rtpc::TestRelay relay(std::move(options));
  std::string start_error;
  if (!relay.start(start_error)) {
    std::fprintf(stderr, "rtpp_test_relay: %s\n", start_error.c_str());
    return 1;
  }
  return relay.run();
}
