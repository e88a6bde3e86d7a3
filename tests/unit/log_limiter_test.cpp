// LogLimiter: a burst per window, then silence, then the count of what was
// dropped on the next line allowed.

#include "shared/log_limiter.h"

#include <gtest/gtest.h>

namespace rtpc {
namespace {

TEST(LogLimiter, LetsABurstThroughPerWindowAndReportsTheSuppressedCount) {
  LogLimiter limiter(3, 1000);
  uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.allow(5000, suppressed)) << i;
    EXPECT_EQ(suppressed, 0u);
  }
  for (int i = 0; i < 7; ++i) EXPECT_FALSE(limiter.allow(5500, suppressed)) << i;
  EXPECT_FALSE(limiter.allow(5999, suppressed));
  // A new window: the first line says how many were dropped, the next ones none.
  EXPECT_TRUE(limiter.allow(6000, suppressed));
  EXPECT_EQ(suppressed, 8u);
  EXPECT_TRUE(limiter.allow(6001, suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(LogLimiter, AClockThatGoesBackStartsANewWindowInsteadOfSilencingForever) {
  LogLimiter limiter(1, 1000);
  uint64_t suppressed = 0;
  EXPECT_TRUE(limiter.allow(10000, suppressed));
  EXPECT_FALSE(limiter.allow(10001, suppressed));
  EXPECT_TRUE(limiter.allow(500, suppressed));
  EXPECT_EQ(suppressed, 1u);
}

}  // namespace
}  // namespace rtpc
