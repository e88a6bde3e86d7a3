#include "supervisor/reload_plan.h"

namespace rtpc {

bool needsRestart(const ClusterConfig& running, const ClusterConfig& next) {
  return !(running.control == next.control) || !(running.tuning == next.tuning) ||
         running.capacity_limit != next.capacity_limit || !(running.disconnect_notify == next.disconnect_notify);
}

ReloadPlan planReload(const Config& running, const Config& next) {
  ReloadPlan plan;
  for (const ClusterConfig& old : running.clusters) {
    if (next.findCluster(old.name) == nullptr) plan.removed.push_back(old.name);
  }
  for (const ClusterConfig& cluster : next.clusters) {
    const ClusterConfig* old = running.findCluster(cluster.name);
    if (old == nullptr) {
      plan.added.push_back(cluster.name);
    } else if (needsRestart(*old, cluster)) {
      plan.restarted.push_back(cluster.name);
    } else if (!(old->members == cluster.members)) {
      plan.members_changed.push_back(cluster.name);
    } else {
      plan.unchanged.push_back(cluster.name);
    }
  }
  return plan;
}

}  // namespace rtpc
