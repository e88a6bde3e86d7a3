#include "supervisor/config_check.h"

#include <ostream>

#include "shared/config_loader.h"

namespace rtpc {
namespace {

std::string counted(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

std::string configSummary(const Config& config) {
  return config.source_path + ": configuration OK: " + counted(config.clusters.size(), "cluster", "clusters") +
         ", " + counted(config.memberCount(), "RTP proxy", "RTP proxies");
}

int checkConfig(const std::string& path, std::ostream& out, std::ostream& err) {
  const LoadResult result = loadConfigFile(path);
  if (!result.ok()) {
    err << result.error << '\n';
    return 1;
  }
  out << configSummary(*result.config) << '\n';
  return 0;
}

}  // namespace rtpc
