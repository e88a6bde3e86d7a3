#pragma once
// SessionTable: call-id -> member of one cluster, kept in a caller-provided
// block of (shared) memory so that a restarted worker routes existing calls
// exactly as before (ARCHITECTURE.md "Shared memory").
//
// Layout: this object IS the header of the block (placement-created at its
// start); the slots follow at a fixed offset. No pointers, only indices, so
// the block may be mapped at any address, copied or attached by another
// process.
//
// Keys: a call-id is reduced to a 64-bit wyhash fingerprint (seed stored in
// the header, chosen by the creator) and only the fingerprint is stored. Two
// different call-ids are confused only if their fingerprints are equal: with
// n tracked calls a new call-id collides with probability n / 2^64, i.e.
// 5.4e-14 per command at n = 1,000,000 -- about one misroute per 2e13 new
// calls. Both candidate buckets are derived from the fingerprint, so no other
// kind of collision exists.
//
// Structure: bucketed cuckoo hashing (at most one relocation step). A
// bucket is 4 slots of 16 bytes = one cache line; each fingerprint has two
// candidate buckets (different ones whenever the table has >= 2 buckets);
// the table has 2 slots per configured call (32 bytes per call, plus a 1.1
// KiB header). lookup and markDeleted touch those 2 cache lines; bind too,
// plus up to 8 more in the rare case that both candidate buckets are full.
//
// Aging (bucket-local LRU): a new call-id goes to a free slot of the emptier
// of its two candidate buckets. When all 8 candidate slots are occupied:
//   1. a deleted entry whose TTL has run out is reused (no eviction),
//   2. else one entry is moved to its other candidate bucket if that has a
//      free slot (one cuckoo step; nothing is lost),
//   3. else an entry is evicted: the deleted entry deleted longest ago,
//   4. else the live entry with the oldest last use (bind or lookup).
// So an entry is only displaced by a new call-id that has the entry's bucket
// among its candidates, a live call is never evicted while one of those 8
// slots holds a deleted call or a live call used less recently, and the new
// call is always the most recent of them. Up to max_calls live calls (load
// <= 50%) nothing is evicted in practice (the test binds 1,000,000 calls
// into bytesFor(1,000,000) and checks that every one is kept); beyond that
// the table degrades to approximate LRU instead of refusing calls.
//
// Deleted calls stay routable for deleted_ttl_s (default 600 s) counted from
// markDeleted(); lookups do not extend it, so a storm of retransmitted
// deletes cannot keep a dead call alive. Live calls never expire by time.
//
// Crash safety (the single writer can be SIGKILLed at any instruction):
// - A slot is {fingerprint, meta}; meta packs state, a check byte derived
//   from the fingerprint, the member and the last use into ONE 64-bit word.
//   Updating an existing entry (refresh, rebind, delete) is one atomic store.
// - Putting a new fingerprint into a slot is: meta := kWriting, then the
//   fingerprint, then meta := final state (release). A killed writer leaves
//   at most one slot in kWriting.
// - A cuckoo move writes the complete copy first, then overwrites the source
//   as above; a crash in between leaves two identical entries.
// - attach() clears kWriting slots and any slot that does not validate (bad
//   state or member, check byte not matching the fingerprint, fingerprint in
//   a bucket that is not one of its candidates), keeps one of two copies that
//   name the same member and drops both if they differ, then recomputes
//   every counter from the slots. A cleared call is merely forgotten (the
//   router then finds it by broadcast); no lookup can return a member that
//   was never bound to that call-id (fingerprint collisions aside).
// attach() must run while no writer is alive (the supervisor restarts a
// worker only after reaping it). Other processes may read the header counters
// (size, boundCount, evictions) at any time; they never read slots.
//
// Time is passed in as milliseconds of a monotonic clock shared by the
// processes (CLOCK_MONOTONIC); entries store whole seconds.
//
// Hot path: no allocation, no syscall; one hash of the call-id per operation
// (tests/bench/session_table_bench: ~20 ns per lookup at 1k calls, ~100 ns at
// 1M where the buckets miss the cache). One writer thread only.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace rtpc {

// 64-bit wyhash (final version 4 mixing) of a byte string.
uint64_t hashCallId(std::string_view call_id, uint64_t seed);

class SessionTable {
 public:
  static constexpr uint16_t kMaxMembers = 256;
  static constexpr uint64_t kMagic = 0x3142545343505452ull;  // "RTPCSTB1" little-endian
  static constexpr uint32_t kLayoutVersion = 1;
  static constexpr uint32_t kDefaultDeletedTtlS = 600;
  static constexpr uint64_t kDefaultHashSeed = 0x6a09e667f3bcc908ull;
  static constexpr uint32_t kSlotsPerBucket = 4;
  static constexpr uint32_t kMaxCalls = 1u << 30;
  // The block must be aligned at least this much (64 keeps buckets on cache lines).
  static constexpr size_t kRequiredAlignment = 64;

  // Slot states (low byte of meta).
  enum SlotState : uint8_t { kEmpty = 0, kLive = 1, kDeleted = 2, kWriting = 3 };

  struct Slot {
    uint64_t fingerprint;
    uint64_t meta;  // state | check << 8 | member << 16 | last_use_s << 32
  };

  // Bytes needed for max_calls (0 if max_calls is 0 or above kMaxCalls).
  static size_t bytesFor(uint32_t max_calls);

  // Initialises an empty table over mem (at least bytesFor(max_calls) bytes,
  // kRequiredAlignment-aligned). Returns nullptr when the block does not fit.
  // A random hash_seed per segment keeps call-ids crafted to collide in
  // buckets from evicting other calls.
  static SessionTable* create(void* mem, size_t bytes, uint32_t max_calls,
                              uint64_t hash_seed = kDefaultHashSeed);

  // Takes over a table another process created (or left behind when it was
  // killed). nullptr on bad magic, layout version, sizes or alignment.
  // Repairs half-written and invalid slots, recomputes the counters.
  static SessionTable* attach(void* mem, size_t bytes);

  // The member of a live or recently deleted call; refreshes a live call's
  // last use.
  std::optional<uint16_t> lookup(std::string_view call_id, uint64_t now_ms);
  // Starts loading the buckets a later lookup/bind of `call_id` reads, so
  // that a batch of commands takes its cache misses side by side.
  void prefetch(std::string_view call_id) const;

  // Inserts or updates call_id -> member as live (a deleted call revives).
  // May evict another entry (see the header comment). false only for
  // member >= kMaxMembers.
  bool bind(std::string_view call_id, uint16_t member, uint64_t now_ms);

  // Moves a live call to the deleted generation: it stays routable for the
  // TTL but no longer counts in boundCount(). A call already deleted keeps
  // its original deletion time. false when the call is not tracked.
  bool markDeleted(std::string_view call_id, uint64_t now_ms);

  // Drops every entry (live and deleted) of a member that was removed.
  // O(capacity): an admin operation, not for the hot path.
  uint32_t forgetMember(uint16_t member);

  // Frees deleted entries whose TTL ran out, scanning at most max_slots slots
  // from where the previous call stopped (a timer spreads the full scan).
  // Expired entries are also reused and ignored without it; this only makes
  // size() exact. Returns the number freed.
  uint32_t sweepExpired(uint64_t now_ms, uint32_t max_slots);

  void setDeletedTtlSeconds(uint32_t seconds);
  uint32_t deletedTtlSeconds() const { return deleted_ttl_s_; }

  // Counters, safe to read from another process while the writer runs.
  uint32_t boundCount(uint16_t member) const;  // live calls of member
  uint64_t liveCount() const;
  uint64_t deletedCount() const;  // including expired ones not yet reused/swept
  uint64_t size() const { return liveCount() + deletedCount(); }
  uint64_t capacity() const { return uint64_t{bucket_count_} * kSlotsPerBucket; }  // slots
  uint32_t maxCalls() const { return max_calls_; }
  uint64_t liveEvictions() const;     // live calls displaced by new ones
  uint64_t deletedEvictions() const;  // deleted (not expired) calls displaced
  // Slots cleared by the attach() that returned this table.
  uint32_t lastAttachRepairs() const { return last_attach_repairs_; }

  // Raw layout access for tools and tests (crash simulation): the slot array
  // starts slotsOffset() bytes after the start of the block.
  static constexpr size_t slotsOffset();
  // Index of the slot holding call_id, if tracked (does not refresh).
  std::optional<uint32_t> slotIndexOf(std::string_view call_id) const;
  uint64_t fingerprintOf(std::string_view call_id) const { return hashCallId(call_id, hash_seed_); }
  static uint64_t packMeta(SlotState state, uint64_t fingerprint, uint16_t member, uint32_t last_use_s);

  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

 private:
  SessionTable() = default;

  Slot* slots();
  const Slot* slots() const;
  void candidateBuckets(uint64_t fp, uint32_t& b1, uint32_t& b2) const;
  Slot* find(uint64_t fp);
  const Slot* find(uint64_t fp) const;
  bool expired(uint64_t meta, uint32_t now_s) const;
  void clearSlot(Slot& slot, uint64_t meta);
  void writeNew(Slot& slot, uint64_t fp, uint64_t final_meta);
  void recount();
  uint32_t repairSlots();

  // Counter updates: one writer, so load+store (no locked RMW) is enough.
  static void bump(uint64_t& counter, int64_t delta);
  static void bump32(uint32_t& counter, int32_t delta);
  void countIn(uint64_t meta);
  void countOut(uint64_t meta);

  // --- header, in the shared block; fixed-size integers only ---
  uint64_t magic_;
  uint32_t layout_version_;
  uint32_t header_bytes_;
  uint64_t total_bytes_;
  uint32_t max_calls_;
  uint32_t bucket_count_;
  uint64_t hash_seed_;
  uint32_t deleted_ttl_s_;
  uint32_t sweep_cursor_;
  uint32_t last_attach_repairs_;
  uint32_t reserved0_;
  uint64_t live_count_;
  uint64_t deleted_count_;
  uint64_t live_evictions_;
  uint64_t deleted_evictions_;
  uint32_t bound_[kMaxMembers];
};

constexpr size_t SessionTable::slotsOffset() {
  return (sizeof(SessionTable) + kRequiredAlignment - 1) / kRequiredAlignment * kRequiredAlignment;
}

}  // namespace rtpc
