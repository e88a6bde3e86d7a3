// rtpp_loadgen: see tests/tools/load_generator.h.
#include <cstdio>
#include <string>

#include "tests/tools/load_generator.h"

int main(int argc, char** argv) {
  rtpc::LoadOptions options;
  bool help = false;
  const std::string error = rtpc::parseLoadOptions(argc, argv, options, help);
  if (help) {
    std::fputs(rtpc::loadUsage().c_str(), stdout);
    return 0;
  }
  if (!error.empty()) {
    std::fprintf(stderr, "rtpp_loadgen: %s\n%s", error.c_str(), rtpc::loadUsage().c_str());
    return 2;
  }
  rtpc::LoadResult result;
  std::string run_error;
  if (!rtpc::runLoad(options, result, run_error)) {
    std::fprintf(stderr, "rtpp_loadgen: %s\n", run_error.c_str());
    return 1;
  }
  std::fputs(rtpc::formatHuman(result).c_str(), stdout);
  std::printf("%s\n", rtpc::formatMachine(result).c_str());
  return result.commands == 0 ? 1 : 0;
}
