#include "worker/member_selector.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

namespace rtpc {
namespace {

CandidateView member(uint16_t index, uint32_t weight, uint32_t capacity = 1000,
                     std::optional<double> active = 0.0, uint32_t bound = 0) {
  CandidateView c;
  c.index = index;
  c.weight = weight;
  c.capacity = capacity;
  c.active_sessions = active;
  c.bound_sessions = bound;
  c.online = true;
  c.status = AdminStatus::kActive;
  return c;
}

// Uniform double in [0, 1) from a seeded generator, independent of the
// standard library's distribution implementation.
struct Uniform {
  std::mt19937_64 rng{12345};
  double operator()() { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
};

std::map<uint16_t, double> fractions(const std::vector<CandidateView>& members, int picks,
                                     CapacityLimit limit = CapacityLimit::kHard) {
  Uniform u;
  std::map<uint16_t, int> counts;
  for (int i = 0; i < picks; ++i) {
    const Selection s = selectMember(members, limit, {}, u());
    if (s.index) ++counts[*s.index];
  }
  std::map<uint16_t, double> f;
  for (const auto& [index, n] : counts) f[index] = static_cast<double>(n) / picks;
  return f;
}

TEST(MemberSelector, PicksInProportionToWeightAtEqualLoad) {
  const std::vector<CandidateView> members = {member(0, 100), member(1, 50), member(2, 25)};
  const auto f = fractions(members, 100000);
  const double expected[] = {100.0 / 175, 50.0 / 175, 25.0 / 175};
  for (uint16_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(f.count(i)) << i;
    EXPECT_NEAR(f.at(i), expected[i], expected[i] * 0.02) << "member " << i;
  }
}

TEST(MemberSelector, UtilisationLowersTheShare) {
  // Equal weights; member 1 is half full: shares 1.0 : 0.5.
  const std::vector<CandidateView> members = {member(0, 10, 1000, 0.0), member(1, 10, 1000, 500.0)};
  const auto f = fractions(members, 100000);
  EXPECT_NEAR(f.at(0), 2.0 / 3, 2.0 / 3 * 0.02);
  EXPECT_NEAR(f.at(1), 1.0 / 3, 1.0 / 3 * 0.02);
}

TEST(MemberSelector, BoundSessionsCountWhenHigherThanTheHeartbeat) {
  // The heartbeat says 0 but 750 calls were just bound: utilisation 0.75.
  const CandidateView lagging = member(0, 10, 1000, 0.0, 750);
  EXPECT_DOUBLE_EQ(memberUtilisation(lagging), 0.75);
  // No heartbeat value at all (Ib answered E8): bound sessions alone.
  EXPECT_DOUBLE_EQ(memberUtilisation(member(0, 10, 1000, std::nullopt, 250)), 0.25);
  EXPECT_DOUBLE_EQ(memberUtilisation(member(0, 10, 1000, 600.0, 250)), 0.6);
  const auto f = fractions({lagging, member(1, 10)}, 100000);
  EXPECT_NEAR(f.at(0), 0.25 / 1.25, 0.2 * 0.02);
}

TEST(MemberSelector, FullMembersGetNothingWhileOthersHaveRoom) {
  const std::vector<CandidateView> members = {member(0, 100, 1000, 1000.0), member(1, 1, 1000, 999.0),
                                              member(2, 100, 1000, 1500.0)};
  const auto f = fractions(members, 1000);
  EXPECT_EQ(f.size(), 1u);
  EXPECT_DOUBLE_EQ(f.at(1), 1.0);
}

TEST(MemberSelector, HardLimitWithEveryMemberFullPicksNone) {
  const std::vector<CandidateView> members = {member(0, 100, 1000, 1000.0), member(1, 50, 10, 0.0, 12)};
  const Selection s = selectMember(members, CapacityLimit::kHard, {}, 0.5);
  EXPECT_FALSE(s.index);
  EXPECT_EQ(s.outcome, SelectionOutcome::kAllFull);
  EXPECT_EQ(selectionOutcomeName(s.outcome), "all_full");
}

TEST(MemberSelector, SoftLimitOverflowTakesTheHighestShare) {
  // Shares: 100*(1-1.5) = -50, 50*(1-1.2) = -10, 10*(1-3) = -20.
  const std::vector<CandidateView> members = {member(0, 100, 100, 150.0), member(1, 50, 100, 120.0),
                                              member(2, 10, 100, 300.0)};
  for (double r : {0.0, 0.3, 0.99}) {
    const Selection s = selectMember(members, CapacityLimit::kSoft, {}, r);
    ASSERT_TRUE(s.index);
    EXPECT_EQ(*s.index, 1);
    EXPECT_EQ(s.outcome, SelectionOutcome::kOverflow);
  }
}

TEST(MemberSelector, SoftOverflowPrefersWeightedMembersThenTheLeastLoadedBackup) {
  std::vector<CandidateView> members = {member(0, 0, 100, 100.0), member(1, 10, 100, 400.0)};
  EXPECT_EQ(selectMember(members, CapacityLimit::kSoft, {}, 0.5).index, 1);
  members = {member(0, 0, 100, 300.0), member(1, 0, 100, 120.0), member(2, 0, 100, 200.0)};
  const Selection s = selectMember(members, CapacityLimit::kSoft, {}, 0.5);
  EXPECT_EQ(s.index, 1);
  EXPECT_EQ(s.outcome, SelectionOutcome::kOverflow);
}

TEST(MemberSelector, BackupsOnlyWhenNoPrimaryCanTakeTheSession) {
  std::vector<CandidateView> members = {member(0, 10, 100, 50.0), member(1, 0, 100, 0.0)};
  EXPECT_EQ(fractions(members, 10000).count(1), 0u);  // primary has room: backup never used
  members[0].active_sessions = 100.0;                // primary full
  const Selection s = selectMember(members, CapacityLimit::kHard, {}, 0.7);
  EXPECT_EQ(s.index, 1);
  EXPECT_EQ(s.outcome, SelectionOutcome::kPicked);
  members[0].online = false;  // or gone
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, 0.7).index, 1);
}

TEST(MemberSelector, BackupsShareBySpareCapacity) {
  // Spare 0.8 and 0.2 (weights do not matter for backups, they are all 0).
  const std::vector<CandidateView> members = {member(0, 10, 100, 100.0), member(1, 0, 100, 20.0),
                                              member(2, 0, 1000, 800.0), member(3, 0, 100, 100.0)};
  const auto f = fractions(members, 100000);
  EXPECT_EQ(f.count(0), 0u);
  EXPECT_EQ(f.count(3), 0u);  // a full backup is not used while another has room
  EXPECT_NEAR(f.at(1), 0.8, 0.8 * 0.02);
  EXPECT_NEAR(f.at(2), 0.2, 0.2 * 0.02);
  // Every backup full too: hard limit -> none.
  const std::vector<CandidateView> full = {member(0, 10, 100, 100.0), member(1, 0, 100, 100.0)};
  EXPECT_EQ(selectMember(full, CapacityLimit::kHard, {}, 0.1).outcome, SelectionOutcome::kAllFull);
}

TEST(MemberSelector, SuspendedDrainingAndOfflineMembersAreNeverPicked) {
  std::vector<CandidateView> members = {member(0, 100), member(1, 100), member(2, 100), member(3, 1)};
  members[0].status = AdminStatus::kSuspended;
  members[1].status = AdminStatus::kDraining;
  members[2].online = false;
  for (CapacityLimit limit : {CapacityLimit::kSoft, CapacityLimit::kHard}) {
    const auto f = fractions(members, 10000, limit);
    EXPECT_EQ(f.size(), 1u);
    EXPECT_DOUBLE_EQ(f.at(3), 1.0);
  }
  // Also not as a soft-limit overflow.
  members[3].online = false;
  const Selection s = selectMember(members, CapacityLimit::kSoft, {}, 0.5);
  EXPECT_FALSE(s.index);
  EXPECT_EQ(s.outcome, SelectionOutcome::kNoEligibleMember);
}

TEST(MemberSelector, ExcludedMembersAreSkipped) {
  const std::vector<CandidateView> members = {member(0, 100), member(7, 100), member(255, 100)};
  MemberMask tried;
  tried.set(7);
  tried.set(0);
  for (double r : {0.0, 0.5, 0.999}) EXPECT_EQ(selectMember(members, CapacityLimit::kHard, tried, r).index, 255);
  tried.set(255);
  const Selection s = selectMember(members, CapacityLimit::kSoft, tried, 0.5);
  EXPECT_FALSE(s.index);
  EXPECT_EQ(s.outcome, SelectionOutcome::kNoEligibleMember);
}

TEST(MemberSelector, NoCandidatesPicksNone) {
  const Selection s = selectMember({}, CapacityLimit::kSoft, {}, 0.5);
  EXPECT_FALSE(s.index);
  EXPECT_EQ(s.outcome, SelectionOutcome::kNoEligibleMember);
}

TEST(MemberSelector, TheDrawCoversTheWholeRangeOfRandomValues) {
  const std::vector<CandidateView> members = {member(3, 1), member(9, 1)};
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, 0.0).index, 3);
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, 0.49).index, 3);
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, 0.51).index, 9);
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, std::nextafter(1.0, 0.0)).index, 9);
  // Out-of-range values are clamped, not trusted.
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, 1.0).index, 9);
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, 7.0).index, 9);
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, -1.0).index, 3);
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, std::numeric_limits<double>::quiet_NaN()).index,
            3);
}

TEST(MemberSelector, ZeroCapacityCountsAsFullAndBadHeartbeatValuesAreIgnored) {
  EXPECT_GE(memberUtilisation(member(0, 10, 0)), 1.0);
  const std::vector<CandidateView> members = {member(0, 100, 0), member(1, 1, 10)};
  EXPECT_EQ(selectMember(members, CapacityLimit::kHard, {}, 0.0).index, 1);
  EXPECT_DOUBLE_EQ(memberUtilisation(member(0, 10, 100, std::numeric_limits<double>::quiet_NaN(), 10)), 0.1);
  EXPECT_DOUBLE_EQ(memberUtilisation(member(0, 10, 100, -5.0, 10)), 0.1);
}

}  // namespace
}  // namespace rtpc
