#include "worker/reply_cache.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rtpc {
namespace {

using State = ReplyCache::State;
constexpr uint64_t kSecond = 1'000'000'000ULL;

// Client keys as the listener builds them: family, port, address bytes.
const std::string kClientA("\x02\x13\xc4\x7f\x00\x00\x01", 7);
const std::string kClientB("\x02\x13\xc5\x7f\x00\x00\x01", 7);

TEST(ReplyCacheTest, CommandGoesFromMissToInFlightToAnswered) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  EXPECT_EQ(cache.find(kClientA, "123_4", 0).state, State::kNew);
  EXPECT_EQ(cache.begin(kClientA, "123_4", 0).state, State::kNew);
  EXPECT_EQ(cache.begin(kClientA, "123_4", kSecond).state, State::kInFlight);
  EXPECT_TRUE(cache.complete(kClientA, "123_4", "40144 127.0.0.1", kSecond));
  const auto hit = cache.begin(kClientA, "123_4", 2 * kSecond);
  EXPECT_EQ(hit.state, State::kAnswered);
  EXPECT_EQ(hit.reply, "40144 127.0.0.1");
  EXPECT_EQ(cache.size(), 1u);
}

TEST(ReplyCacheTest, EmptyReplyIsStoredAsEmpty) {
  // `G` with no names answers an empty body; that must not look like a miss.
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  cache.begin(kClientA, "c", 0);
  ASSERT_TRUE(cache.complete(kClientA, "c", "", 0));
  const auto hit = cache.begin(kClientA, "c", 1);
  EXPECT_EQ(hit.state, State::kAnswered);
  EXPECT_EQ(hit.reply, "");
}

TEST(ReplyCacheTest, SameCookieFromAnotherAddressIsAnotherEntry) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  cache.begin(kClientA, "1_1", 0);
  ASSERT_TRUE(cache.complete(kClientA, "1_1", "20040107", 0));
  EXPECT_EQ(cache.begin(kClientB, "1_1", 1).state, State::kNew);
  ASSERT_TRUE(cache.complete(kClientB, "1_1", "E50", 1));
  EXPECT_EQ(cache.find(kClientA, "1_1", 2).reply, "20040107");
  EXPECT_EQ(cache.find(kClientB, "1_1", 2).reply, "E50");
  // A key that is a prefix of another is not the same key.
  EXPECT_EQ(cache.find(kClientA.substr(0, 6), "1_1", 2).state, State::kNew);
  EXPECT_EQ(cache.find(kClientA, "1_", 2).state, State::kNew);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(ReplyCacheTest, EntryExpiresAfterTheRetention) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  cache.begin(kClientA, "k", 0);
  cache.complete(kClientA, "k", "0", 5 * kSecond);  // retention counts from the answer
  EXPECT_EQ(cache.find(kClientA, "k", 35 * kSecond - 1).state, State::kAnswered);
  EXPECT_EQ(cache.find(kClientA, "k", 35 * kSecond).state, State::kNew);
  EXPECT_EQ(cache.begin(kClientA, "k", 35 * kSecond).state, State::kNew);  // runs again
  EXPECT_EQ(cache.evictedEarly(), 0u);
}

TEST(ReplyCacheTest, ExpireReleasesEveryOldEntry) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  for (int i = 0; i < 100; ++i) {
    const std::string cookie = "c" + std::to_string(i);
    cache.begin(kClientA, cookie, static_cast<uint64_t>(i));
    cache.complete(kClientA, cookie, "0", static_cast<uint64_t>(i));
  }
  EXPECT_EQ(cache.size(), 100u);
  cache.expire(30 * kSecond + 50);  // entries answered at 0..50 are gone
  EXPECT_EQ(cache.size(), 49u);
  EXPECT_EQ(cache.find(kClientA, "c50", 30 * kSecond + 50).state, State::kNew);
  EXPECT_EQ(cache.find(kClientA, "c51", 30 * kSecond + 50).state, State::kAnswered);
  cache.expire(100 * kSecond);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(ReplyCacheTest, RingWrapsManyTimesKeepingTheNewestAndNeverMixingReplies) {
  // 16 KiB of ring for 20,000 commands: the ring laps hundreds of times.
  ReplyCache cache(16 << 10, 1000 * kSecond, 1);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string cookie = std::to_string(i) + "_" + std::string(static_cast<size_t>(i % 37), 'x');
    const uint64_t now = static_cast<uint64_t>(i);
    ASSERT_EQ(cache.begin(kClientA, cookie, now).state, State::kNew) << i;
    ASSERT_TRUE(cache.complete(kClientA, cookie, "reply " + std::to_string(i), now));
  }
  EXPECT_GT(cache.evictedEarly(), 0u);  // all of them were young
  EXPECT_LE(cache.size(), cache.indexSlots());
  int present = 0;
  for (int i = 0; i < n; ++i) {
    const std::string cookie = std::to_string(i) + "_" + std::string(static_cast<size_t>(i % 37), 'x');
    const auto hit = cache.find(kClientA, cookie, n);
    if (hit.state == State::kAnswered) {
      ++present;
      ASSERT_EQ(hit.reply, "reply " + std::to_string(i));
    } else {
      ASSERT_EQ(hit.state, State::kNew);
    }
  }
  EXPECT_EQ(static_cast<size_t>(present), cache.size());
  EXPECT_GT(present, 50);
  // The newest ones survive: aging is FIFO.
  for (int i = n - 20; i < n; ++i) {
    const std::string cookie = std::to_string(i) + "_" + std::string(static_cast<size_t>(i % 37), 'x');
    EXPECT_EQ(cache.find(kClientA, cookie, n).state, State::kAnswered) << i;
  }
}

TEST(ReplyCacheTest, InFlightEntryEvictedBeforeItsAnswerIsStillStored) {
  ReplyCache cache(8 << 10, 1000 * kSecond, 1);
  cache.begin(kClientA, "slow", 0);
  for (int i = 0; i < 1000; ++i) cache.begin(kClientB, std::to_string(i), 1);
  EXPECT_EQ(cache.find(kClientA, "slow", 2).state, State::kNew);  // pushed out
  EXPECT_TRUE(cache.complete(kClientA, "slow", "0", 2));
  EXPECT_EQ(cache.find(kClientA, "slow", 3).reply, "0");
}

TEST(ReplyCacheTest, OverLongReplyIsNotStoredAndTheCommandCanRunAgain) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  cache.begin(kClientA, "big", 0);
  EXPECT_FALSE(cache.complete(kClientA, "big", std::string(ReplyCache::kMaxReplyBytes + 1, 'x'), 0));
  EXPECT_EQ(cache.rejectedTooLong(), 1u);
  EXPECT_EQ(cache.begin(kClientA, "big", 1).state, State::kNew);
  // Exactly the limit is fine.
  EXPECT_TRUE(cache.complete(kClientA, "big", std::string(ReplyCache::kMaxReplyBytes, 'y'), 1));
  EXPECT_EQ(cache.find(kClientA, "big", 2).reply.size(), ReplyCache::kMaxReplyBytes);
}

TEST(ReplyCacheTest, RecordLargerThanAnEighthOfTheRingIsRefused) {
  ReplyCache cache(ReplyCache::kMinBytes, 30 * kSecond, 1);  // records up to 512 bytes
  EXPECT_EQ(cache.begin(kClientA, std::string(600, 'c'), 0).state, State::kUncacheable);
  EXPECT_EQ(cache.size(), 0u);
  cache.begin(kClientA, "c", 0);
  EXPECT_FALSE(cache.complete(kClientA, "c", std::string(600, 'r'), 0));
  EXPECT_EQ(cache.find(kClientA, "c", 0).state, State::kNew);
  EXPECT_EQ(cache.begin(std::string(ReplyCache::kMaxClientKeyBytes + 1, 'a'), "c", 0).state,
            State::kUncacheable);
}

TEST(ReplyCacheTest, CancelForgetsAnInFlightCommandButNotAnAnsweredOne) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  cache.begin(kClientA, "gone", 0);
  cache.cancel(kClientA, "gone");
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.begin(kClientA, "gone", 1).state, State::kNew);

  cache.begin(kClientA, "done", 0);
  cache.complete(kClientA, "done", "0", 0);
  cache.cancel(kClientA, "done");
  EXPECT_EQ(cache.find(kClientA, "done", 1).state, State::kAnswered);
  cache.cancel(kClientB, "never-seen");  // harmless
  EXPECT_EQ(cache.size(), 2u);
}

TEST(ReplyCacheTest, IndexStaysConsistentUnderChurnOfCancelsAndAnswers) {
  // Backward-shift deletion with a tiny index: every surviving entry must stay findable.
  ReplyCache cache(ReplyCache::kMinBytes, 1000 * kSecond, 7);
  for (int i = 0; i < 5000; ++i) {
    const std::string cookie = "k" + std::to_string(i);
    cache.begin(kClientA, cookie, static_cast<uint64_t>(i));
    if (i % 3 == 0) {
      cache.cancel(kClientA, cookie);
    } else if (i % 3 == 1) {
      cache.complete(kClientA, cookie, cookie, static_cast<uint64_t>(i));
    }
  }
  size_t found = 0;
  for (int i = 0; i < 5000; ++i) {
    const std::string cookie = "k" + std::to_string(i);
    const auto hit = cache.find(kClientA, cookie, 5000);
    if (hit.state == State::kAnswered) {
      ASSERT_EQ(i % 3, 1);
      ASSERT_EQ(hit.reply, cookie);
    }
    if (hit.state != State::kNew) ++found;
    if (i % 3 == 0) {
      ASSERT_EQ(hit.state, State::kNew);
    }
  }
  EXPECT_EQ(found, cache.size());
  EXPECT_GT(found, 0u);
}

// The listener's path: begin() hands out a ticket, complete(ticket, ...)
// writes a short reply into the in-flight record instead of a second record.
TEST(ReplyCacheTest, ATicketCompletesAShortReplyInPlace) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  const auto started = cache.begin(kClientA, "t1", 0);
  ASSERT_EQ(started.state, State::kNew);
  ASSERT_NE(started.ticket, ReplyCache::kNoTicket);
  EXPECT_TRUE(cache.complete(started.ticket, kClientA, "t1", "40144 127.0.0.1", kSecond));
  EXPECT_EQ(cache.completedInPlace(), 1u);
  EXPECT_EQ(cache.size(), 1u);
  const auto hit = cache.begin(kClientA, "t1", 2 * kSecond);
  EXPECT_EQ(hit.state, State::kAnswered);
  EXPECT_EQ(hit.reply, "40144 127.0.0.1");
  // Retention counts from the answer here too.
  EXPECT_EQ(cache.find(kClientA, "t1", 31 * kSecond - 1).state, State::kAnswered);
  EXPECT_EQ(cache.find(kClientA, "t1", 31 * kSecond).state, State::kNew);
}

TEST(ReplyCacheTest, ATicketWithAReplyTooLongForItsRoomStillStoresTheReply) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  const std::string stats(ReplyCache::kInlineReplyBytes + 40, 's');
  const auto started = cache.begin(kClientA, "q", 0);
  EXPECT_TRUE(cache.complete(started.ticket, kClientA, "q", stats, 1));
  EXPECT_EQ(cache.completedInPlace(), 0u);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.find(kClientA, "q", 2).reply, stats);
}

TEST(ReplyCacheTest, ACancelledTicketDoesNotComeBackInPlace) {
  ReplyCache cache(1 << 20, 30 * kSecond, 1);
  const auto started = cache.begin(kClientA, "c", 0);
  cache.cancel(kClientA, "c");
  cache.complete(started.ticket, kClientA, "c", "0", 1);
  EXPECT_EQ(cache.completedInPlace(), 0u);
  // A ticket for another key never writes into this record either.
  const auto other = cache.begin(kClientA, "d", 2);
  cache.complete(other.ticket, kClientB, "d", "0", 3);
  EXPECT_EQ(cache.completedInPlace(), 0u);
  EXPECT_EQ(cache.find(kClientA, "d", 4).state, State::kInFlight);
}

TEST(ReplyCacheTest, ATicketWhoseRecordWasOverwrittenFallsBackToALookup) {
  // A tiny ring: the in-flight record is pushed out by later commands while
  // its command runs; the reply must still be stored, keyed, not in place.
  ReplyCache cache(ReplyCache::kMinBytes, 1000 * kSecond, 3);
  const auto started = cache.begin(kClientA, "slow", 0);
  for (int i = 0; i < 200; ++i) {
    const std::string cookie = "f" + std::to_string(i);
    const auto t = cache.begin(kClientB, cookie, 1);
    cache.complete(t.ticket, kClientB, cookie, "0", 1);
  }
  ASSERT_EQ(cache.find(kClientA, "slow", 2).state, State::kNew);  // it is gone
  const uint64_t in_place = cache.completedInPlace();
  EXPECT_TRUE(cache.complete(started.ticket, kClientA, "slow", "1234 127.0.0.1", 2));
  EXPECT_EQ(cache.completedInPlace(), in_place);
  EXPECT_EQ(cache.find(kClientA, "slow", 3).reply, "1234 127.0.0.1");
}

}  // namespace
}  // namespace rtpc
