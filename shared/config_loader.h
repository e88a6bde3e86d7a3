#pragma once
// Loads and validates rtp_cluster.xml (the reference's format plus our
// extensions; docs/config.md). Either a complete Config or exactly one error
// line "FILE:LINE: what is wrong", so a failed reload can report it and keep
// the running configuration. Never throws.

#include <optional>
#include <string>
#include <string_view>

#include "shared/config.h"

namespace rtpc {

struct LoadResult {
  std::optional<Config> config;
  std::string error;  // set iff !config
  bool ok() const { return config.has_value(); }
};

// Reads the file; the path, as given, names the file in messages and becomes
// Config::source_path.
LoadResult loadConfigFile(const std::string& path);

// Parses a document held in memory; display_name stands for the file name.
LoadResult loadConfigText(std::string_view xml, std::string_view display_name);

}  // namespace rtpc
