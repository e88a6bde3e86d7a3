// CommandTally and RttHistogram: which answers count as errors, which slot a
// code lands in, and which bucket a round trip lands in.

#include "shared/command_tally.h"

#include <gtest/gtest.h>

#include "shared/rtt_histogram.h"

namespace rtpc {
namespace {

TEST(CommandTally, AnswerErrorCodeReadsOnlyAMainErrorResult) {
  const struct {
    const char* body;
    int code;
  } cases[] = {
      {"E0", 0},           {"E72", 72},         {"E999", 999},  {"E5\n", 5},     {"E50 trailing", 50},
      {"0", -1},           {"1234 127.0.0.1", -1}, {"", -1},    {"E", -1},       {"Ex", -1},
      {"E7x", -1},         {"40000 1.2.3.4 && E3", -1},         {"20040107", -1},
  };
  for (const auto& c : cases) EXPECT_EQ(answerErrorCode(c.body), c.code) << c.body;
  // A huge code saturates instead of overflowing and lands in "other".
  EXPECT_EQ(errorCodeSlot(answerErrorCode("E99999999999999999999")), kErrorOtherSlot);
}

TEST(CommandTally, ErrorSlotsCoverRelayAndClusterCodesAndOneOther) {
  EXPECT_EQ(errorCodeSlot(0), 0u);
  EXPECT_EQ(errorCodeSlot(99), 99u);
  EXPECT_EQ(errorCodeSlot(993), 100u);
  EXPECT_EQ(errorCodeSlot(999), 106u);
  EXPECT_EQ(errorCodeSlot(100), kErrorOtherSlot);
  EXPECT_EQ(errorCodeSlot(992), kErrorOtherSlot);
  EXPECT_EQ(errorCodeSlot(1000), kErrorOtherSlot);
  EXPECT_EQ(errorCodeSlot(-3), kErrorOtherSlot);
  for (size_t slot = 0; slot < kErrorOtherSlot; ++slot) EXPECT_EQ(errorCodeSlot(errorCodeOfSlot(slot)), slot);
  EXPECT_EQ(errorCodeOfSlot(kErrorOtherSlot), -1);
}

TEST(CommandTally, CountSplitsByRowAndResult) {
  CommandTally t;
  t.count(static_cast<size_t>(CommandType::kUpdate), "1234 127.0.0.1");
  t.count(static_cast<size_t>(CommandType::kUpdate), "E98");
  t.count(static_cast<size_t>(CommandType::kDelete), "0");
  t.count(kTallyUnparsedRow, "E1");
  EXPECT_EQ(t.by_type[static_cast<size_t>(CommandType::kUpdate)][0], 1u);
  EXPECT_EQ(t.by_type[static_cast<size_t>(CommandType::kUpdate)][1], 1u);
  EXPECT_EQ(t.by_type[static_cast<size_t>(CommandType::kDelete)][0], 1u);
  EXPECT_EQ(t.by_type[kTallyUnparsedRow][1], 1u);
  EXPECT_EQ(t.by_error[98], 1u);
  EXPECT_EQ(t.by_error[1], 1u);
  EXPECT_EQ(t.by_error[0], 0u);
}

TEST(CommandTally, RowNamesAreTheWireCommands) {
  EXPECT_EQ(tallyRowName(static_cast<size_t>(CommandType::kUpdate)), "U");
  EXPECT_EQ(tallyRowName(static_cast<size_t>(CommandType::kVersionFeature)), "VF");
  EXPECT_EQ(tallyRowName(static_cast<size_t>(CommandType::kDeleteAll)), "X");
  EXPECT_EQ(tallyRowName(kTallyUnparsedRow), "unparsed");
}

TEST(RttHistogram, BoundsAreInclusiveUpperLimits) {
  RttHistogram h;
  h.observe(1);
  h.observe(100);      // == first bound: first bucket
  h.observe(101);      // second bucket
  h.observe(10000000);  // last bound: 10 s, the longest <command_timeout>
  h.observe(10000001);  // +Inf
  h.observe(9000000);   // 9 s: a finite bucket, not +Inf (issue 10)
  EXPECT_EQ(h.counts[0], 2u);
  EXPECT_EQ(h.counts[1], 1u);
  EXPECT_EQ(RttHistogram::kBoundsUs.back(), 10000000u);
  EXPECT_EQ(h.counts[RttHistogram::kBuckets - 2], 2u);
  EXPECT_EQ(h.counts[RttHistogram::kBuckets - 1], 1u);
  EXPECT_EQ(h.total(), 6u);
  EXPECT_EQ(h.sum_us, 1 + 100 + 101 + 10000000 + 10000001u + 9000000u);
}

}  // namespace
}  // namespace rtpc
