#include "shared/config.h"

namespace rtpc {
namespace {

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

std::string_view adminStatusName(AdminStatus status) {
  switch (status) {
    case AdminStatus::kActive:
      return "ACTIVE";
    case AdminStatus::kSuspended:
      return "SUSPENDED";
    case AdminStatus::kDraining:
      return "DRAINING";
  }
  return "?";
}

std::optional<AdminStatus> parseAdminStatus(std::string_view text) {
  if (equalsIgnoreCase(text, "ACTIVE")) return AdminStatus::kActive;
  if (equalsIgnoreCase(text, "SUSPENDED")) return AdminStatus::kSuspended;
  return std::nullopt;
}

std::string_view capacityLimitName(CapacityLimit limit) {
  return limit == CapacityLimit::kHard ? "hard" : "soft";
}

const MemberConfig* ClusterConfig::findMember(std::string_view member_name) const {
  for (const auto& m : members) {
    if (m.name == member_name) return &m;
  }
  return nullptr;
}

const ClusterConfig* Config::findCluster(std::string_view cluster_name) const {
  for (const auto& c : clusters) {
    if (c.name == cluster_name) return &c;
  }
  return nullptr;
}

size_t Config::memberCount() const {
  size_t n = 0;
  for (const auto& c : clusters) n += c.members.size();
  return n;
}

}  // namespace rtpc
