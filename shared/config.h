#pragma once
// The configuration as an immutable value: what config_loader produces from
// rtp_cluster.xml and what the supervisor hands to workers. Plain structs with
// equality so that a reload can diff the old and the new value member by
// member. docs/config.md documents every field, its XML element and default.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/address.h"

namespace rtpc {

// Operator's choice for a member, kept apart from its health (online/offline).
// kDraining is only ever set at run time (`modify <cluster> delete`).
enum class AdminStatus : uint8_t { kActive, kSuspended, kDraining };

// "ACTIVE", "SUSPENDED", "DRAINING": the spelling of the reference's `ls`.
std::string_view adminStatusName(AdminStatus status);
// ACTIVE or SUSPENDED in any letter case (what a config or `modify add` may
// set); DRAINING is not accepted.
std::optional<AdminStatus> parseAdminStatus(std::string_view text);

// What happens when every member is at capacity: soft = use the least loaded
// anyway, hard = answer E998.
enum class CapacityLimit : uint8_t { kSoft, kHard };
std::string_view capacityLimitName(CapacityLimit limit);  // "soft", "hard"

// Limits of the loader. Names live in fixed-size shared-memory records
// (UTF-8 text: 255 bytes are 85 to 255 characters). Weight and capacity have
// no upper bound in the reference; ours is what a member record stores.
inline constexpr size_t kMaxNameBytes = 255;
inline constexpr uint32_t kMaxWeight = UINT32_MAX;
inline constexpr uint32_t kMaxCapacity = UINT32_MAX;
// A member is stored in the session table as a small index.
inline constexpr size_t kMaxMembersPerCluster = 256;

struct DisconnectNotifyConfig {
  SocketAddress inbound_address;   // tcp or tcp6, port given
  std::string dest_socket_prefix;  // unix socket path prefix of the signalling
  bool operator==(const DisconnectNotifyConfig&) const = default;
};

// Timers and sizes of one cluster (our extension: the <tuning> element).
// Defaults keep a member command's whole retransmit schedule under the
// signalling's own 1 s retransmit timer.
struct ClusterTuning {
  uint32_t heartbeat_interval_ms = 1000;     // Ib to every online member
  uint32_t command_timeout_ms = 800;         // overall deadline of one forwarded command
  uint32_t command_retries = 3;              // retransmits within that deadline
  uint32_t heartbeat_failures = 3;           // missed heartbeats in a row before offline
  uint32_t offline_probe_interval_ms = 2000; // V probe of an offline member
  uint32_t session_table_size = 1048576;     // calls tracked (session table capacity)
  uint32_t control_idle_timeout_ms = 0;      // cunix/tcp control connection idle close; 0 = never
  bool operator==(const ClusterTuning&) const = default;
};

struct MemberConfig {
  std::string name;
  SocketAddress address;
  uint32_t weight = 0;    // 0 = backup member: only when no weighted member can take a session
  uint32_t capacity = 0;  // sessions this relay is sized for, >= 1
  AdminStatus status = AdminStatus::kActive;
  std::string wan_address;      // empty = unset
  std::string lan_address;      // empty = unset
  std::string cmd_out_address;  // empty = unset
  bool operator==(const MemberConfig&) const = default;
};

struct ClusterConfig {
  std::string name;
  SocketAddress control;
  std::optional<DisconnectNotifyConfig> disconnect_notify;
  CapacityLimit capacity_limit = CapacityLimit::kSoft;
  ClusterTuning tuning;
  std::vector<MemberConfig> members;
  bool operator==(const ClusterConfig&) const = default;

  const MemberConfig* findMember(std::string_view member_name) const;
};

struct Config {
  std::vector<ClusterConfig> clusters;
  // Prometheus endpoint (<metrics><address>): tcp or tcp6, port given. Empty = off.
  std::optional<SocketAddress> metrics_address;
  std::string source_path;  // as given on the command line; used in messages
  bool operator==(const Config&) const = default;

  const ClusterConfig* findCluster(std::string_view cluster_name) const;
  size_t memberCount() const;
};

}  // namespace rtpc
