// rtp_cluster: for now the command line and the configuration check (-d);
// the daemon itself lands with the supervisor.

#include <iostream>
#include <string>

#include "supervisor/config_check.h"
#include "supervisor/options.h"

#ifndef RTPC_VERSION
#define RTPC_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  const std::string program = "rtp_cluster";
  const rtpc::OptionsResult parsed = rtpc::parseOptions(argc, argv);
  switch (parsed.action) {
    case rtpc::OptionsAction::kError:
      std::cerr << program << ": " << parsed.error << '\n'
                << "Try '" << program << " --help' for more information.\n";
      return 1;
    case rtpc::OptionsAction::kHelp:
      std::cout << rtpc::usageText(program);
      return 0;
    case rtpc::OptionsAction::kVersion:
      std::cout << program << " " << RTPC_VERSION << '\n';
      return 0;
    case rtpc::OptionsAction::kRun:
      break;
  }
  if (parsed.options.check_config) return rtpc::checkConfig(parsed.options.config_file, std::cout, std::cerr);
  std::cerr << program << ": the daemon is not implemented in this build; only -d (check the configuration) works\n";
  return 1;
}
