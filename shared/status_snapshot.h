#pragma once
// StatusSnapshot: a consistent, owning copy of what the admin CLI shows.
//
// The supervisor fills it from shared memory (shm records written by the
// workers) and the admin renderers turn it into the text of REFERENCE.md
// section 3 or into JSON. Both renderings read this one value, so they cannot
// drift. Plain values only: no pointers into the segment.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/address.h"
#include "shared/command_tally.h"
#include "shared/config.h"
#include "shared/rtt_histogram.h"

namespace rtpc {

struct MemberSnapshot {
  uint16_t index = 0;                 // slot in the cluster (stable while the member exists)
  std::string name;
  SocketAddress address;              // rendered as host:port, [v6]:port or the unix path
  std::string wan_address;            // empty = not set
  std::string lan_address;
  std::string cmd_out_address;
  uint32_t weight = 0;
  uint32_t capacity = 0;
  AdminStatus status = AdminStatus::kActive;  // ACTIVE / SUSPENDED / DRAINING
  bool online = false;                        // health, separate from status
  std::optional<double> active_sessions;      // smoothed Ib value; empty = UNKNOWN
  uint32_t bound_sessions = 0;                // calls the cluster routes to it
  double utilisation = 0.0;                   // 0..1 (printed as a percentage)
  double rtt_seconds = 0.0;                   // "average rtpc delay"
  uint16_t capabilities = 0;                  // probed VF bits
  bool stats_unsupported = false;             // answers I/G with an error (rtpengine)
  uint64_t commands = 0;
  uint64_t timeouts = 0;
  uint64_t failovers = 0;
  // Added for the shared-memory records (shm_segment.h):
  uint8_t health = 0;             // the worker's HealthState value (worker/member_health.h)
  uint64_t deferred_deletes = 0;  // D queued while it was offline
  RttHistogram rtt_histogram;     // command round trips (metrics only)
};

struct ClusterSnapshot {
  uint16_t index = 0;  // "Cluster: #N": position in the config
  std::string name;
  SocketAddress address;  // control socket
  int32_t worker_pid = 0;
  uint32_t worker_restarts = 0;
  uint64_t worker_started_unix_ms = 0;
  uint64_t commands = 0;
  uint64_t created = 0;
  uint64_t broadcasts = 0;
  uint64_t failovers = 0;
  uint64_t cluster_errors = 0;
  uint64_t parse_errors = 0;
  uint32_t tracked_calls = 0;
  // Added for the shared-memory records (shm_segment.h):
  uint32_t slot = 0;                 // cluster slot in the segment
  uint32_t generation = 0;           // of that slot; changes when the slot changes hands
  uint64_t answered_locally = 0;
  uint64_t routed = 0;
  uint64_t late_offers = 0;
  uint64_t deleted_calls = 0;        // recently deleted calls, still routable
  uint64_t published_unix_ms = 0;    // worker's last publication; 0 = never
  bool consistent = true;            // false: a record was mid-write (writer killed)
  CommandTally tally;                // answers by command type/result and error code (metrics only)
  std::vector<MemberSnapshot> members;  // in slot order
};

struct StatusSnapshot {
  uint64_t taken_unix_ms = 0;
  std::vector<ClusterSnapshot> clusters;  // in config order
};

}  // namespace rtpc
