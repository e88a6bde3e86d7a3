#pragma once
// What a reload does to the running clusters, decided from the running and
// the new configuration alone (pure; tests/unit/reload_plan_test.cpp).
//
// - a cluster only in the new config is started;
// - a cluster only in the running one is stopped;
// - a cluster whose control address, tuning, capacity limit or
//   disconnect-notify setting changed is restarted with the new config (its
//   worker cannot change those in place; its session table is kept when its
//   size is unchanged);
// - a cluster whose member set alone changed gets the new set pushed to its
//   worker (unchanged members keep their links, health and calls);
// - everything else is left alone.

#include <string>
#include <vector>

#include "shared/config.h"

namespace rtpc {

struct ReloadPlan {
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::vector<std::string> restarted;
  std::vector<std::string> members_changed;
  std::vector<std::string> unchanged;
};

// `running`: the clusters as they run now (members as changed at run time).
ReloadPlan planReload(const Config& running, const Config& next);

// True when the two differ in something other than their members.
bool needsRestart(const ClusterConfig& running, const ClusterConfig& next);

}  // namespace rtpc
