#pragma once
// Choosing the member for a new session (REFERENCE.md section 5). A pure
// function over a small array of candidate views; the router builds the
// views from the member records and retries with the tried members excluded.
//
//   utilisation = max(smoothed active sessions, bound sessions) / capacity
//   share       = weight * (1 - utilisation)
// 1. Only online, ACTIVE, not excluded members are eligible (SUSPENDED and
//    DRAINING members keep serving their calls but take no new ones).
// 2. Members with weight > 0 and share > 0: picked at random in proportion
//    to share.
// 3. Else backups (weight 0) with utilisation < 1: in proportion to their
//    spare capacity 1 - utilisation.
// 4. Else with a soft limit: the eligible member with the highest share
//    anyway, weighted members before backups (among backups: the lowest
//    utilisation); with a hard limit: none (the router answers E998).
//
// Bound sessions count because the heartbeat lags: a burst of new calls
// raises the bound count at once, and a member that cannot report its load
// (rtpengine answers Ib with E8) is measured by it alone.
//
// Hot path: no allocation; two passes over at most kMaxMembersPerCluster views.

#include <bitset>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "shared/config.h"

namespace rtpc {

struct CandidateView {
  uint16_t index = 0;             // the member's index in its cluster
  uint32_t weight = 0;            // 0 = backup member
  uint32_t capacity = 0;          // sessions; 0 counts as full
  std::optional<double> active_sessions;  // smoothed heartbeat value, if known
  uint32_t bound_sessions = 0;    // live calls the session table binds to it
  bool online = false;
  AdminStatus status = AdminStatus::kActive;
};

// Members already tried for this command, by index.
using MemberMask = std::bitset<kMaxMembersPerCluster>;

enum class SelectionOutcome : uint8_t {
  kPicked,          // a member with room (primary or backup)
  kOverflow,        // soft limit: every eligible member is full, the best one taken anyway
  kNoEligibleMember,  // none online, ACTIVE and not excluded
  kAllFull,         // hard limit: eligible members exist, none has room
};
// "picked", "overflow", "no_eligible_member", "all_full": for log lines.
std::string_view selectionOutcomeName(SelectionOutcome outcome);

struct Selection {
  std::optional<uint16_t> index;  // CandidateView::index of the chosen member
  SelectionOutcome outcome = SelectionOutcome::kNoEligibleMember;
};

// utilisation as defined above (>= 0; may exceed 1).
double memberUtilisation(const CandidateView& c);

// random01: a uniform value in [0, 1) from the caller's generator (values
// outside are clamped).
Selection selectMember(std::span<const CandidateView> candidates, CapacityLimit limit,
                       const MemberMask& excluded, double random01);

}  // namespace rtpc
