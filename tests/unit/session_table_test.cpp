#include "shared/session_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

namespace rtpc {
namespace {

constexpr uint64_t kSec = 1000;  // now_ms per second

struct AlignedFree {
  void operator()(void* p) const { ::operator delete(p, std::align_val_t(64)); }
};
using Block = std::unique_ptr<void, AlignedFree>;

Block allocBlock(size_t bytes) {
  void* p = ::operator new(bytes, std::align_val_t(64));
  std::memset(p, 0xA5, bytes);  // creation must not rely on zeroed memory
  return Block(p);
}

std::string callId(uint64_t i) { return "call-" + std::to_string(i) + "@example.org"; }

// A table over its own block.
struct Fixture {
  explicit Fixture(uint32_t max_calls, uint64_t seed = SessionTable::kDefaultHashSeed)
      : bytes(SessionTable::bytesFor(max_calls)), block(allocBlock(bytes)) {
    table = SessionTable::create(block.get(), bytes, max_calls, seed);
  }
  size_t bytes;
  Block block;
  SessionTable* table = nullptr;

  SessionTable::Slot& rawSlot(uint32_t index) {
    auto* base = static_cast<unsigned char*>(block.get()) + SessionTable::slotsOffset();
    return reinterpret_cast<SessionTable::Slot*>(base)[index];
  }
  // The entry as stored, without refreshing it: {state, member}.
  std::pair<uint8_t, uint16_t> peek(const std::string& id) {
    auto idx = table->slotIndexOf(id);
    if (!idx) return {SessionTable::kEmpty, 0};
    const uint64_t m = rawSlot(*idx).meta;
    return {static_cast<uint8_t>(m), static_cast<uint16_t>(m >> 16)};
  }
};

TEST(SessionTable, BindThenLookupReturnsTheMember) {
  Fixture f(100);
  ASSERT_NE(f.table, nullptr);
  EXPECT_FALSE(f.table->lookup("unknown", 0));
  ASSERT_TRUE(f.table->bind("a@x", 3, 1 * kSec));
  ASSERT_TRUE(f.table->bind("b@x", 7, 1 * kSec));
  EXPECT_EQ(f.table->lookup("a@x", 2 * kSec), 3);
  EXPECT_EQ(f.table->lookup("b@x", 2 * kSec), 7);
  EXPECT_FALSE(f.table->lookup("c@x", 2 * kSec));
  EXPECT_EQ(f.table->size(), 2u);
  EXPECT_EQ(f.table->liveCount(), 2u);
}

TEST(SessionTable, EmptyAndLongCallIdsAreDistinctKeys) {
  Fixture f(100);
  const std::string long_id(300, 'x');
  std::string long_id2 = long_id;
  long_id2[150] = 'y';
  ASSERT_TRUE(f.table->bind("", 1, 0));
  ASSERT_TRUE(f.table->bind(long_id, 2, 0));
  ASSERT_TRUE(f.table->bind(long_id2, 3, 0));
  ASSERT_TRUE(f.table->bind("abc", 4, 0));
  EXPECT_EQ(f.table->lookup("", 0), 1);
  EXPECT_EQ(f.table->lookup(long_id, 0), 2);
  EXPECT_EQ(f.table->lookup(long_id2, 0), 3);
  EXPECT_EQ(f.table->lookup("abc", 0), 4);
  EXPECT_FALSE(f.table->lookup("abd", 0));
}

TEST(SessionTable, BindRejectsMemberOutOfRange) {
  Fixture f(10);
  EXPECT_FALSE(f.table->bind("a", SessionTable::kMaxMembers, 0));
  EXPECT_TRUE(f.table->bind("a", SessionTable::kMaxMembers - 1, 0));
  EXPECT_EQ(f.table->boundCount(SessionTable::kMaxMembers - 1), 1u);
  EXPECT_EQ(f.table->boundCount(SessionTable::kMaxMembers), 0u);
}

TEST(SessionTable, RebindMovesTheCallAndItsCount) {
  Fixture f(100);
  f.table->bind("a", 1, 0);
  f.table->bind("b", 1, 0);
  EXPECT_EQ(f.table->boundCount(1), 2u);
  f.table->bind("a", 2, 1 * kSec);
  EXPECT_EQ(f.table->lookup("a", 1 * kSec), 2);
  EXPECT_EQ(f.table->boundCount(1), 1u);
  EXPECT_EQ(f.table->boundCount(2), 1u);
  EXPECT_EQ(f.table->size(), 2u);
}

TEST(SessionTable, DeletedCallStaysRoutableForTheTtlCountedFromTheDelete) {
  Fixture f(100);
  ASSERT_EQ(f.table->deletedTtlSeconds(), 600u);
  f.table->bind("a", 5, 0);
  ASSERT_TRUE(f.table->markDeleted("a", 100 * kSec));
  EXPECT_EQ(f.table->boundCount(5), 0u);
  EXPECT_EQ(f.table->deletedCount(), 1u);
  // Retransmitted deletes and queries still reach member 5 ...
  EXPECT_EQ(f.table->lookup("a", 300 * kSec), 5);
  EXPECT_TRUE(f.table->markDeleted("a", 400 * kSec));  // does not restart the TTL
  EXPECT_EQ(f.table->lookup("a", 700 * kSec + 999), 5);
  // ... and neither lookups nor repeated deletes kept it longer.
  EXPECT_FALSE(f.table->lookup("a", 702 * kSec));
  EXPECT_EQ(f.table->size(), 0u);
  EXPECT_FALSE(f.table->markDeleted("a", 702 * kSec));
}

TEST(SessionTable, ShortTtlApplies) {
  Fixture f(100);
  f.table->setDeletedTtlSeconds(10);
  f.table->bind("a", 5, 0);
  f.table->markDeleted("a", 0);
  EXPECT_EQ(f.table->lookup("a", 10 * kSec), 5);
  EXPECT_FALSE(f.table->lookup("a", 11 * kSec));
}

TEST(SessionTable, MarkDeletedOfUnknownCallReportsFalse) {
  Fixture f(100);
  EXPECT_FALSE(f.table->markDeleted("nope", 0));
  EXPECT_EQ(f.table->size(), 0u);
}

TEST(SessionTable, BindRevivesADeletedCall) {
  Fixture f(100);
  f.table->bind("a", 5, 0);
  f.table->markDeleted("a", 1 * kSec);
  f.table->bind("a", 6, 2 * kSec);
  EXPECT_EQ(f.table->boundCount(5), 0u);
  EXPECT_EQ(f.table->boundCount(6), 1u);
  EXPECT_EQ(f.table->deletedCount(), 0u);
  EXPECT_EQ(f.table->lookup("a", 5000 * kSec), 6);  // live again: no TTL
}

TEST(SessionTable, SweepFreesExpiredDeletedEntries) {
  Fixture f(100);
  f.table->setDeletedTtlSeconds(5);
  for (int i = 0; i < 20; ++i) f.table->bind(callId(i), 1, 0);
  for (int i = 0; i < 10; ++i) f.table->markDeleted(callId(i), 0);
  EXPECT_EQ(f.table->size(), 20u);
  EXPECT_EQ(f.table->sweepExpired(5 * kSec, 1000), 0u);  // not yet
  uint32_t freed = 0;
  // Small steps visit every slot exactly once per round.
  for (uint64_t k = 0; k < f.table->capacity(); k += 7) freed += f.table->sweepExpired(6 * kSec, 7);
  EXPECT_EQ(freed, 10u);
  EXPECT_EQ(f.table->size(), 10u);
  EXPECT_EQ(f.table->deletedCount(), 0u);
  EXPECT_EQ(f.table->boundCount(1), 10u);
}

// max_calls <= 4 gives exactly 2 buckets: every call-id has both as
// candidates, so the 8 slots behave as one exact LRU set.
TEST(SessionTable, FullCandidateSetEvictsTheLeastRecentlyUsedLiveCall) {
  Fixture f(4);
  ASSERT_EQ(f.table->capacity(), 8u);
  for (uint64_t i = 0; i < 8; ++i) f.table->bind(callId(i), 1, (10 + i) * kSec);
  EXPECT_EQ(f.table->liveEvictions(), 0u);
  EXPECT_EQ(f.table->lookup(callId(0), 20 * kSec), 1);  // call 0 is now the most recent
  f.table->bind("new1", 2, 21 * kSec);
  EXPECT_FALSE(f.table->lookup(callId(1), 21 * kSec));  // the least recently used went
  EXPECT_EQ(f.table->lookup(callId(0), 21 * kSec), 1);
  f.table->bind("new2", 2, 22 * kSec);
  EXPECT_FALSE(f.table->lookup(callId(2), 22 * kSec));
  for (uint64_t i = 3; i < 8; ++i) EXPECT_EQ(f.table->lookup(callId(i), 23 * kSec), 1) << i;
  EXPECT_EQ(f.table->lookup("new1", 23 * kSec), 2);
  EXPECT_EQ(f.table->lookup("new2", 23 * kSec), 2);
  EXPECT_EQ(f.table->liveEvictions(), 2u);
  EXPECT_EQ(f.table->boundCount(1), 6u);
  EXPECT_EQ(f.table->boundCount(2), 2u);
}

TEST(SessionTable, DeletedCallsAreEvictedBeforeAnyLiveCallOldestDeletedFirst) {
  Fixture f(4);
  for (uint64_t i = 0; i < 8; ++i) f.table->bind(callId(i), 1, (10 + i) * kSec);
  // The two deleted calls are more recent than every live one.
  f.table->markDeleted(callId(7), 30 * kSec);
  f.table->markDeleted(callId(6), 31 * kSec);
  f.table->bind("new1", 2, 40 * kSec);
  EXPECT_FALSE(f.table->lookup(callId(7), 40 * kSec));  // deleted longest ago
  EXPECT_EQ(f.table->lookup(callId(6), 40 * kSec), 1);
  f.table->bind("new2", 2, 41 * kSec);
  EXPECT_FALSE(f.table->lookup(callId(6), 41 * kSec));
  EXPECT_EQ(f.table->deletedEvictions(), 2u);
  EXPECT_EQ(f.table->liveEvictions(), 0u);
  EXPECT_EQ(f.table->lookup(callId(0), 41 * kSec), 1);  // the oldest live call survived
  // No deleted entry left: now a live call goes, the least recently used.
  f.table->bind("new3", 2, 42 * kSec);
  EXPECT_FALSE(f.table->lookup(callId(1), 42 * kSec));
  EXPECT_EQ(f.table->liveEvictions(), 1u);
  EXPECT_EQ(f.table->deletedCount(), 0u);
}

TEST(SessionTable, ExpiredDeletedSlotIsReusedWithoutCountingAnEviction) {
  Fixture f(4);
  f.table->setDeletedTtlSeconds(10);
  for (uint64_t i = 0; i < 8; ++i) f.table->bind(callId(i), 1, 100 * kSec);
  f.table->markDeleted(callId(3), 100 * kSec);
  f.table->bind("new", 2, 200 * kSec);
  EXPECT_FALSE(f.table->lookup(callId(3), 200 * kSec));
  EXPECT_EQ(f.table->liveEvictions(), 0u);
  EXPECT_EQ(f.table->deletedEvictions(), 0u);
  EXPECT_EQ(f.table->size(), 8u);
}

TEST(SessionTable, AtMaxCallsNothingIsEvicted) {
  constexpr uint32_t kCalls = 100000;
  Fixture f(kCalls);
  for (uint32_t i = 0; i < kCalls; ++i) f.table->bind(callId(i), static_cast<uint16_t>(i % 200), i);
  EXPECT_EQ(f.table->liveEvictions(), 0u);
  EXPECT_EQ(f.table->liveCount(), kCalls);
  for (uint32_t i = 0; i < kCalls; ++i) {
    ASSERT_EQ(f.table->lookup(callId(i), kCalls), i % 200) << i;
  }
}

TEST(SessionTable, UnderPressureRecentCallsSurviveAndTheOldestGoFirst) {
  constexpr uint32_t kCalls = 10000;
  Fixture f(kCalls);
  // Five times more calls than configured, one per second.
  constexpr uint32_t kTotal = 5 * kCalls;
  for (uint32_t i = 0; i < kTotal; ++i) f.table->bind(callId(i), 1, uint64_t{i} * kSec);
  EXPECT_EQ(f.table->liveEvictions(), kTotal - f.table->liveCount());
  EXPECT_LE(f.table->liveCount(), f.table->capacity());
  // Every one of the most recent max_calls/2 survives.
  for (uint32_t i = kTotal - kCalls / 2; i < kTotal; ++i) {
    ASSERT_EQ(f.peek(callId(i)).first, SessionTable::kLive) << i;
  }
  // Survival falls with age: the first max_calls are (almost) all gone.
  auto survivors = [&](uint32_t from, uint32_t to) {
    uint32_t n = 0;
    for (uint32_t i = from; i < to; ++i) n += f.peek(callId(i)).first == SessionTable::kLive;
    return n;
  };
  const uint32_t oldest = survivors(0, kCalls);
  const uint32_t middle = survivors(2 * kCalls, 3 * kCalls);
  const uint32_t newest = survivors(4 * kCalls, 5 * kCalls);
  std::printf("survivors per %u calls, oldest..newest: %u %u %u %u %u\n", kCalls, oldest,
              survivors(kCalls, 2 * kCalls), middle, survivors(3 * kCalls, 4 * kCalls), newest);
  EXPECT_LT(oldest, kCalls / 100);
  EXPECT_LT(oldest, middle);
  EXPECT_LT(middle, newest);
  EXPECT_GT(newest, kCalls * 99 / 100);
}

TEST(SessionTable, UnderPressureDeletedCallsGoBeforeLiveOnes) {
  constexpr uint32_t kCalls = 10000;
  Fixture f(kCalls);
  // Every slot full of live calls.
  for (uint32_t i = 0; i < 3 * kCalls; ++i) f.table->bind(callId(i), 1, uint64_t{i} * kSec);
  ASSERT_GT(f.table->liveCount(), f.table->capacity() * 99 / 100);
  const uint64_t live_evictions_before = f.table->liveEvictions();
  // Delete every second call; every live call is older than every deleted one.
  const uint64_t t_delete = 3 * uint64_t{kCalls} * kSec;
  for (uint32_t i = 0; i < 3 * kCalls; i += 2) f.table->markDeleted(callId(i), t_delete);
  const uint64_t deleted = f.table->deletedCount();
  ASSERT_GT(deleted, kCalls / 2);
  // Half as many new calls as deleted entries, within the TTL: a live call
  // goes only where none of the 8 candidate slots holds a deleted one, which
  // happens for (1 - deleted share)^8 of the inserts: 0.5^8 at the start,
  // 0.75^8 = 10% at the end, about 5% on average. Without the preference it
  // would be about half of them (the live calls are the older ones).
  const uint64_t n_new = deleted / 2;
  for (uint64_t i = 0; i < n_new; ++i) f.table->bind("new" + std::to_string(i), 2, t_delete + i);
  const uint64_t live_evicted = f.table->liveEvictions() - live_evictions_before;
  std::printf("%llu new calls: %llu deleted and %llu live evicted\n",
              static_cast<unsigned long long>(n_new),
              static_cast<unsigned long long>(f.table->deletedEvictions()),
              static_cast<unsigned long long>(live_evicted));
  EXPECT_LE(f.table->deletedEvictions() + live_evicted, n_new);
  EXPECT_GT(f.table->deletedEvictions(), n_new * 9 / 10);
  EXPECT_LT(live_evicted, n_new / 10);
}

// boundCount() must equal, at every step, the live calls the table still
// holds per member, through every kind of change.
TEST(SessionTable, BoundCountIsExactThroughEveryChange) {
  constexpr uint32_t kCalls = 64;  // small: plenty of evictions
  Fixture f(kCalls);
  std::mt19937_64 rng(42);
  std::vector<std::string> ids;
  for (int i = 0; i < 400; ++i) ids.push_back(callId(static_cast<uint64_t>(i)));
  auto check = [&](int step) {
    uint32_t expected[8] = {};
    uint64_t live = 0;
    uint64_t deleted = 0;
    for (const auto& id : ids) {
      auto [state, member] = f.peek(id);
      if (state == SessionTable::kLive) {
        ASSERT_LT(member, 8);
        ++expected[member];
        ++live;
      } else if (state == SessionTable::kDeleted) {
        ++deleted;
      }
    }
    for (uint16_t m = 0; m < 8; ++m) ASSERT_EQ(f.table->boundCount(m), expected[m]) << "step " << step;
    ASSERT_EQ(f.table->liveCount(), live) << "step " << step;
    ASSERT_EQ(f.table->deletedCount(), deleted) << "step " << step;
  };
  uint64_t now = 0;
  for (int step = 0; step < 20000; ++step) {
    now += rng() % 3 * kSec;
    const std::string& id = ids[rng() % ids.size()];
    const auto op = rng() % 100;
    if (op < 50) {
      f.table->bind(id, static_cast<uint16_t>(rng() % 8), now);
    } else if (op < 70) {
      f.table->markDeleted(id, now);
    } else if (op < 99) {
      f.table->lookup(id, now);
    } else {
      f.table->forgetMember(static_cast<uint16_t>(rng() % 8));
    }
    check(step);
  }
  EXPECT_GT(f.table->liveEvictions(), 0u);
  EXPECT_GT(f.table->deletedEvictions(), 0u);
}

TEST(SessionTable, ForgetMemberDropsLiveAndDeletedCallsOfThatMemberOnly) {
  Fixture f(100);
  f.table->bind("a", 1, 0);
  f.table->bind("b", 1, 0);
  f.table->bind("c", 2, 0);
  f.table->markDeleted("b", 0);
  EXPECT_EQ(f.table->forgetMember(1), 2u);
  EXPECT_FALSE(f.table->lookup("a", 0));
  EXPECT_FALSE(f.table->lookup("b", 0));
  EXPECT_EQ(f.table->lookup("c", 0), 2);
  EXPECT_EQ(f.table->boundCount(1), 0u);
  EXPECT_EQ(f.table->boundCount(2), 1u);
  EXPECT_EQ(f.table->size(), 1u);
}

TEST(SessionTable, AttachToACopyOfTheMemoryGivesTheSameAnswers) {
  constexpr uint32_t kCalls = 5000;
  Fixture f(kCalls, 0x1234);
  f.table->setDeletedTtlSeconds(77);
  for (uint32_t i = 0; i < 2 * kCalls; ++i) f.table->bind(callId(i), static_cast<uint16_t>(i % 9), i * kSec);
  for (uint32_t i = 0; i < 2 * kCalls; i += 3) f.table->markDeleted(callId(i), 2 * kCalls * kSec);

  Block copy = allocBlock(f.bytes);
  std::memcpy(copy.get(), f.block.get(), f.bytes);
  SessionTable* t2 = SessionTable::attach(copy.get(), f.bytes);
  ASSERT_NE(t2, nullptr);
  EXPECT_EQ(t2->lastAttachRepairs(), 0u);
  EXPECT_EQ(t2->deletedTtlSeconds(), 77u);
  EXPECT_EQ(t2->size(), f.table->size());
  EXPECT_EQ(t2->liveCount(), f.table->liveCount());
  EXPECT_EQ(t2->liveEvictions(), f.table->liveEvictions());
  for (uint16_t m = 0; m < 9; ++m) EXPECT_EQ(t2->boundCount(m), f.table->boundCount(m));
  const uint64_t now = 2 * kCalls * kSec;
  for (uint32_t i = 0; i < 2 * kCalls + 100; ++i) {
    ASSERT_EQ(t2->lookup(callId(i), now), f.table->lookup(callId(i), now)) << i;
  }
}

TEST(SessionTable, AttachRejectsForeignOrMismatchedMemory) {
  Fixture f(1000);
  ASSERT_NE(f.table, nullptr);
  auto* raw = static_cast<unsigned char*>(f.block.get());
  auto corrupt_and_attach = [&](size_t offset, size_t len, size_t bytes) {
    Block copy = allocBlock(f.bytes);
    std::memcpy(copy.get(), raw, f.bytes);
    auto* c = static_cast<unsigned char*>(copy.get());
    for (size_t i = 0; i < len; ++i) c[offset + i] ^= 0x5A;
    return SessionTable::attach(copy.get(), bytes) != nullptr;
  };
  EXPECT_TRUE(corrupt_and_attach(0, 0, f.bytes));
  EXPECT_FALSE(corrupt_and_attach(0, 1, f.bytes));        // magic
  EXPECT_FALSE(corrupt_and_attach(8, 1, f.bytes));        // layout version
  EXPECT_FALSE(corrupt_and_attach(12, 1, f.bytes));       // header size
  EXPECT_FALSE(corrupt_and_attach(16, 1, f.bytes));       // total size
  EXPECT_FALSE(corrupt_and_attach(24, 1, f.bytes));       // max_calls
  EXPECT_FALSE(corrupt_and_attach(28, 1, f.bytes));       // bucket count
  EXPECT_FALSE(corrupt_and_attach(0, 0, f.bytes - 1));    // block smaller than the table
  EXPECT_FALSE(corrupt_and_attach(0, 0, 16));
  EXPECT_EQ(SessionTable::attach(nullptr, f.bytes), nullptr);
  EXPECT_EQ(SessionTable::attach(raw + 4, f.bytes - 4), nullptr);  // misaligned
  std::vector<unsigned char> zeros(f.bytes + 64, 0);
  EXPECT_EQ(SessionTable::attach(zeros.data() + (64 - reinterpret_cast<uintptr_t>(zeros.data()) % 64),
                                 f.bytes),
            nullptr);
}

TEST(SessionTable, CreateRejectsTooSmallOrEmpty) {
  Block b = allocBlock(SessionTable::bytesFor(100));
  EXPECT_EQ(SessionTable::create(b.get(), SessionTable::bytesFor(100) - 1, 100), nullptr);
  EXPECT_EQ(SessionTable::create(b.get(), SessionTable::bytesFor(100), 0), nullptr);
  EXPECT_EQ(SessionTable::create(nullptr, SessionTable::bytesFor(100), 100), nullptr);
  EXPECT_EQ(SessionTable::bytesFor(0), 0u);
  EXPECT_EQ(SessionTable::bytesFor(SessionTable::kMaxCalls + 1), 0u);
  EXPECT_NE(SessionTable::create(b.get(), SessionTable::bytesFor(100), 100), nullptr);
}

TEST(SessionTable, AttachClearsASlotKilledWhileBeingWrittenAndNeverMisroutes) {
  // The three memory states a writer killed inside writeNew() can leave when
  // call "victim" (member 1) is being replaced by "intruder" (member 2).
  for (int crash_point = 0; crash_point < 3; ++crash_point) {
    Fixture f(4);
    for (uint64_t i = 0; i < 7; ++i) f.table->bind(callId(i), 3, 0);
    f.table->bind("victim", 1, 0);
    const uint32_t idx = *f.table->slotIndexOf("victim");
    SessionTable::Slot& s = f.rawSlot(idx);
    const uint64_t intruder_fp = f.table->fingerprintOf("intruder");
    if (crash_point == 0) {  // meta marked, fingerprint still the old one
      s.meta = SessionTable::kWriting;
    } else if (crash_point == 1) {  // fingerprint written too
      s.meta = SessionTable::kWriting;
      s.fingerprint = intruder_fp;
    } else {  // (reordered stores) new fingerprint beside the old meta
      s.fingerprint = intruder_fp;
    }
    SessionTable* t = SessionTable::attach(f.block.get(), f.bytes);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->lastAttachRepairs(), 1u) << crash_point;
    EXPECT_FALSE(t->lookup("victim", 0)) << crash_point;
    EXPECT_FALSE(t->lookup("intruder", 0)) << crash_point;
    EXPECT_EQ(t->boundCount(1), 0u);
    EXPECT_EQ(t->boundCount(2), 0u);
    EXPECT_EQ(t->boundCount(3), 7u);
    EXPECT_EQ(t->liveCount(), 7u);
    for (uint64_t i = 0; i < 7; ++i) EXPECT_EQ(t->lookup(callId(i), 0), 3);
    // The repaired slot is usable again.
    EXPECT_TRUE(t->bind("intruder", 2, 0));
    EXPECT_EQ(t->lookup("intruder", 0), 2);
    EXPECT_EQ(t->liveEvictions(), 0u);
  }
}

TEST(SessionTable, AttachClearsGarbageSlotsAndDuplicatesAndRecountsCounters) {
  Fixture f(100);
  for (uint64_t i = 0; i < 50; ++i) f.table->bind(callId(i), 4, 0);
  f.table->markDeleted(callId(0), 0);
  // A well-formed entry outside its candidate buckets.
  bool stray_placed = false;
  {
    const uint64_t fp = f.table->fingerprintOf("stray");
    f.table->bind("stray", 6, 0);
    const uint32_t home = *f.table->slotIndexOf("stray");
    f.rawSlot(home).meta = 0;
    for (uint32_t slot = 0; slot < f.table->capacity() && !stray_placed; ++slot) {
      if (f.rawSlot(slot).meta != 0 || slot / 4 == home / 4) continue;
      f.rawSlot(slot) = {fp, SessionTable::packMeta(SessionTable::kLive, fp, 6, 0)};
      stray_placed = !f.table->slotIndexOf("stray");  // not one of its candidates
      if (!stray_placed) f.rawSlot(slot).meta = 0;
    }
  }
  ASSERT_TRUE(stray_placed);
  // The same call twice, with different members.
  bool duplicated = false;
  {
    const uint64_t fp = f.table->fingerprintOf(callId(4));
    const uint32_t idx = *f.table->slotIndexOf(callId(4));
    const uint32_t bucket = idx / SessionTable::kSlotsPerBucket;
    for (uint32_t i = 0; i < SessionTable::kSlotsPerBucket && !duplicated; ++i) {
      SessionTable::Slot& s = f.rawSlot(bucket * SessionTable::kSlotsPerBucket + i);
      if (s.meta == 0) {
        s = {fp, SessionTable::packMeta(SessionTable::kLive, fp, 5, 0)};
        duplicated = true;
      }
    }
  }
  ASSERT_TRUE(duplicated);
  // A relocation cut short: two identical copies, one is kept.
  {
    const uint32_t idx = *f.table->slotIndexOf(callId(5));
    const uint32_t bucket = idx / SessionTable::kSlotsPerBucket;
    duplicated = false;
    for (uint32_t i = 0; i < SessionTable::kSlotsPerBucket && !duplicated; ++i) {
      SessionTable::Slot& s = f.rawSlot(bucket * SessionTable::kSlotsPerBucket + i);
      if (s.meta == 0) {
        s = f.rawSlot(idx);
        duplicated = true;
      }
    }
  }
  ASSERT_TRUE(duplicated);
  // In-place damage last, so that no bind above reuses the damaged slots.
  // Garbage state byte.
  f.rawSlot(*f.table->slotIndexOf(callId(1))).meta |= 0x7;
  // A member number no cluster has, with a valid check byte.
  {
    const uint64_t fp = f.table->fingerprintOf(callId(2));
    f.rawSlot(*f.table->slotIndexOf(callId(2))).meta = SessionTable::packMeta(SessionTable::kLive, fp, 999, 0);
  }
  // The header's live/deleted/per-member counters are garbage too (offsets
  // 56..71 and 88..1111 of the layout).
  auto* raw = static_cast<unsigned char*>(f.block.get());
  std::memset(raw + 56, 0xEE, 16);
  std::memset(raw + 88, 0xEE, 4 * 256);

  SessionTable* t = SessionTable::attach(f.block.get(), f.bytes);
  ASSERT_NE(t, nullptr);
  // garbage, member 999, stray, both copies of call 4, one copy of call 5
  EXPECT_EQ(t->lastAttachRepairs(), 6u);
  EXPECT_FALSE(t->lookup(callId(1), 0));
  EXPECT_FALSE(t->lookup(callId(2), 0));
  EXPECT_FALSE(t->lookup(callId(4), 0));
  EXPECT_FALSE(t->lookup("stray", 0));
  EXPECT_EQ(t->lookup(callId(0), 0), 4);  // still routable while deleted
  EXPECT_EQ(t->lookup(callId(5), 0), 4);
  EXPECT_EQ(t->boundCount(4), 46u);
  EXPECT_EQ(t->boundCount(5), 0u);
  EXPECT_EQ(t->boundCount(6), 0u);
  EXPECT_EQ(t->liveCount(), 46u);
  EXPECT_EQ(t->deletedCount(), 1u);
  for (uint16_t m = 0; m < SessionTable::kMaxMembers; ++m) {
    if (m != 4) {
      ASSERT_EQ(t->boundCount(m), 0u) << m;
    }
  }
}

// The real thing: a writer process SIGKILLed at random moments while it
// binds, rebinds, deletes and evicts; every successor must attach and find
// only bindings the writer made. Call i is only ever bound to member i % 7
// or (i % 7) + 100, so any other answer is a misroute.
TEST(SessionTable, SuccessorOfAKilledWriterNeverMisroutes) {
  constexpr uint32_t kCalls = 2000;
  const size_t bytes = SessionTable::bytesFor(kCalls);
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  ASSERT_NE(SessionTable::create(mem, bytes, kCalls), nullptr);
  std::vector<std::string> ids;
  for (uint64_t i = 0; i < 4 * kCalls; ++i) ids.push_back(callId(i));
  std::mt19937_64 rng(7);
  uint32_t total_repairs = 0;
  constexpr int kRounds = 60;
  // The writer counts its operations here, so that a kill never lands
  // before it has run at all (a loaded machine may not schedule it at once).
  auto* progress = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(static_cast<void*>(progress), MAP_FAILED);
  for (int round = 0; round < kRounds; ++round) {
    progress->store(0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      SessionTable* t = SessionTable::attach(mem, bytes);
      if (t == nullptr) _exit(2);
      std::mt19937_64 r(static_cast<uint64_t>(round));
      for (uint64_t now = 0;; ++now) {
        const uint64_t i = r() % (4 * kCalls);
        const uint16_t member = static_cast<uint16_t>(i % 7 + (r() & 1) * 100);
        const auto op = r() % 10;
        if (op < 6) t->bind(ids[i], member, now);
        else if (op < 8) t->markDeleted(ids[i], now);
        else t->lookup(ids[i], now);
        progress->fetch_add(1, std::memory_order_relaxed);
      }
    }
    for (int waited = 0; progress->load() < 1000 && waited < 10000; ++waited) usleep(1000);
    usleep(static_cast<useconds_t>(1000 + rng() % 5000));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited by itself: " << status;

    SessionTable* t = SessionTable::attach(mem, bytes);
    ASSERT_NE(t, nullptr);
    total_repairs += t->lastAttachRepairs();
    ASSERT_LE(t->lastAttachRepairs(), 1u);
    uint64_t sum = 0;
    for (uint16_t m = 0; m < SessionTable::kMaxMembers; ++m) sum += t->boundCount(m);
    ASSERT_EQ(sum, t->liveCount());
    ASSERT_GT(t->size(), 0u);
    for (uint64_t i = 0; i < 4 * kCalls; ++i) {
      const auto m = t->lookup(ids[i], 0);
      if (m) {
        ASSERT_TRUE(*m == i % 7 || *m == i % 7 + 100) << "call " << i << " -> " << *m;
      }
    }
  }
  std::printf("slots repaired over %d kills: %u\n", kRounds, total_repairs);
  munmap(progress, sizeof(std::atomic<uint64_t>));
  munmap(mem, bytes);
}

TEST(SessionTable, AMillionCallsFitInUnder200Bytes) {
  constexpr uint32_t kCalls = 1000000;
  const size_t bytes = SessionTable::bytesFor(kCalls);
  std::printf("bytesFor(%u) = %zu (%.1f bytes per call)\n", kCalls, bytes,
              static_cast<double>(bytes) / kCalls);
  ASSERT_LT(bytes, 200u * kCalls);
  Fixture f(kCalls);
  ASSERT_NE(f.table, nullptr);
  for (uint32_t i = 0; i < kCalls; ++i) f.table->bind(callId(i), static_cast<uint16_t>(i % 256), 0);
  EXPECT_EQ(f.table->liveEvictions(), 0u);
  EXPECT_EQ(f.table->liveCount(), kCalls);
  for (uint32_t i = 0; i < kCalls; ++i) ASSERT_EQ(f.table->lookup(callId(i), 0), i % 256) << i;
  for (uint16_t m = 0; m < 256; ++m) ASSERT_EQ(f.table->boundCount(m), kCalls / 256 + (m < kCalls % 256));
}

TEST(SessionTable, HashSeedChangesPlacementNotAnswers) {
  EXPECT_NE(hashCallId("abc", 1), hashCallId("abc", 2));
  EXPECT_NE(hashCallId("abc", 1), hashCallId("abd", 1));
  EXPECT_EQ(hashCallId("abc", 1), hashCallId("abc", 1));
  Fixture a(1000, 1);
  Fixture b(1000, 2);
  int moved = 0;
  for (uint64_t i = 0; i < 100; ++i) {
    a.table->bind(callId(i), 1, 0);
    b.table->bind(callId(i), 1, 0);
    moved += *a.table->slotIndexOf(callId(i)) != *b.table->slotIndexOf(callId(i));
    EXPECT_EQ(b.table->lookup(callId(i), 0), 1);
  }
  EXPECT_GT(moved, 90);
}


// Garbage in any word of the header (what a worker attaches at start): attach
// refuses it (the worker then creates a fresh table) or returns a table that
// works within its block; it never reads or writes outside the block. The
// block is followed by a guard page, so a stray access would crash here.
TEST(SessionTableCorruption, EveryHeaderWordScribbledIsRefusedOrAttachedSafely) {
  constexpr uint32_t kCalls = 1000;
  const size_t bytes = SessionTable::bytesFor(kCalls);
  const long page = sysconf(_SC_PAGESIZE);
  const size_t mapped = (bytes + static_cast<size_t>(page) - 1) / static_cast<size_t>(page) * static_cast<size_t>(page);
  void* area = mmap(nullptr, mapped + static_cast<size_t>(page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(area, MAP_FAILED);
  ASSERT_EQ(mprotect(static_cast<char*>(area) + mapped, static_cast<size_t>(page), PROT_NONE), 0);
  // The table ends exactly at the guard page when possible.
  void* mem = static_cast<char*>(area) + (mapped - bytes) / 64 * 64;
  const size_t usable = static_cast<char*>(area) + mapped - static_cast<char*>(mem);
  const uint64_t patterns[] = {0, 1, 0xffffffffull, 0xffffffffffffffffull, 0x7fffffff00000000ull, 2 * kCalls};
  int attached = 0;
  int refused = 0;
  for (size_t offset = 0; offset + 4 <= SessionTable::slotsOffset(); offset += 4) {
    for (const uint64_t pattern : patterns) {
      for (const size_t width : {size_t{4}, size_t{8}}) {
        if (offset + width > SessionTable::slotsOffset()) continue;
        SCOPED_TRACE("offset " + std::to_string(offset) + " width " + std::to_string(width) + " pattern " +
                     std::to_string(pattern));
        SessionTable* t = SessionTable::create(mem, usable, kCalls, 7);
        ASSERT_NE(t, nullptr);
        for (int i = 0; i < 50; ++i) ASSERT_TRUE(t->bind(callId(static_cast<uint64_t>(i)), static_cast<uint16_t>(i % 3), kSec));
        std::memcpy(static_cast<char*>(mem) + offset, &pattern, width);
        SessionTable* again = SessionTable::attach(mem, usable);
        if (again == nullptr) {
          ++refused;
          continue;
        }
        ++attached;
        EXPECT_LE(again->capacity() * sizeof(SessionTable::Slot) + SessionTable::slotsOffset(), usable);
        for (int i = 0; i < 200; ++i) {
          again->lookup(callId(static_cast<uint64_t>(i)), 2 * kSec);
          again->bind(callId(1000 + static_cast<uint64_t>(i)), static_cast<uint16_t>(i % 200), 2 * kSec);
        }
        again->sweepExpired(100000 * kSec, 1u << 20);
        again->forgetMember(1);
        EXPECT_LE(again->liveCount(), again->capacity());
      }
    }
  }
  EXPECT_GT(attached, 0);  // counters, seed and ttl are not geometry: still attached
  EXPECT_GT(refused, 0);   // magic, version, sizes: refused
  munmap(area, mapped + static_cast<size_t>(page));
}

}  // namespace
}  // namespace rtpc
