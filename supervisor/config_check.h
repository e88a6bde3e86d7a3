#pragma once
// `rtp_cluster -d`: load and validate the configuration, report in one line.

#include <iosfwd>
#include <string>

#include "shared/config.h"

namespace rtpc {

// "FILE: configuration OK: 2 clusters, 3 RTP proxies"
std::string configSummary(const Config& config);

// Loads `path`; on success writes configSummary() + '\n' to `out` and returns
// 0, otherwise writes the loader's error line + '\n' to `err` and returns 1
// (the process exit code).
int checkConfig(const std::string& path, std::ostream& out, std::ostream& err);

}  // namespace rtpc
