#include "worker/member_selector.h"

#include <algorithm>
#include <cmath>

namespace rtpc {

namespace {

bool eligible(const CandidateView& c, const MemberMask& excluded) {
  if (!c.online || c.status != AdminStatus::kActive) return false;
  return !(c.index < excluded.size() && excluded[c.index]);
}

// How much a member weighs in its random draw; <= 0 = not in the draw.
double primaryShare(const CandidateView& c) { return c.weight * (1.0 - memberUtilisation(c)); }
double backupSpare(const CandidateView& c) { return 1.0 - memberUtilisation(c); }

// Index of the pick for target in [0, total) over the positive amounts.
template <typename Amount>
uint16_t draw(std::span<const CandidateView> candidates, const MemberMask& excluded, bool backups,
              double target, Amount amount) {
  double cumulative = 0.0;
  uint16_t last = 0;
  for (const CandidateView& c : candidates) {
    if (!eligible(c, excluded) || (c.weight == 0) != backups) continue;
    const double a = amount(c);
    if (!(a > 0.0)) continue;
    cumulative += a;
    last = c.index;
    if (target < cumulative) return c.index;
  }
  return last;  // rounding left target at the very top
}

}  // namespace

std::string_view selectionOutcomeName(SelectionOutcome outcome) {
  switch (outcome) {
    case SelectionOutcome::kPicked: return "picked";
    case SelectionOutcome::kOverflow: return "overflow";
    case SelectionOutcome::kNoEligibleMember: return "no_eligible_member";
    case SelectionOutcome::kAllFull: return "all_full";
  }
  return "unknown";
}

double memberUtilisation(const CandidateView& c) {
  double load = c.bound_sessions;
  if (c.active_sessions && std::isfinite(*c.active_sessions)) load = std::max(load, *c.active_sessions);
  if (c.capacity == 0) return std::max(load, 1.0);  // no room at all, but still ordered by load
  return load / c.capacity;
}

Selection selectMember(std::span<const CandidateView> candidates, CapacityLimit limit,
                       const MemberMask& excluded, double random01) {
  double r = random01;
  if (!(r >= 0.0)) r = 0.0;  // also NaN
  if (r >= 1.0) r = std::nextafter(1.0, 0.0);

  bool any_eligible = false;
  double primary_total = 0.0;
  double backup_total = 0.0;
  const CandidateView* best_primary = nullptr;
  double best_primary_share = 0.0;
  const CandidateView* best_backup = nullptr;
  double best_backup_spare = 0.0;
  for (const CandidateView& c : candidates) {
    if (!eligible(c, excluded)) continue;
    any_eligible = true;
    if (c.weight > 0) {
      const double s = primaryShare(c);
      if (s > 0.0) primary_total += s;
      if (best_primary == nullptr || s > best_primary_share) {
        best_primary = &c;
        best_primary_share = s;
      }
    } else {
      const double s = backupSpare(c);
      if (s > 0.0) backup_total += s;
      if (best_backup == nullptr || s > best_backup_spare) {
        best_backup = &c;
        best_backup_spare = s;
      }
    }
  }

  if (!any_eligible) return {std::nullopt, SelectionOutcome::kNoEligibleMember};
  if (primary_total > 0.0) {
    return {draw(candidates, excluded, false, r * primary_total, primaryShare), SelectionOutcome::kPicked};
  }
  if (backup_total > 0.0) {
    return {draw(candidates, excluded, true, r * backup_total, backupSpare), SelectionOutcome::kPicked};
  }
  if (limit == CapacityLimit::kSoft) {
    const CandidateView* best = best_primary != nullptr ? best_primary : best_backup;
    return {best->index, SelectionOutcome::kOverflow};
  }
  return {std::nullopt, SelectionOutcome::kAllFull};
}

}  // namespace rtpc
