#include "shared/session_table.h"

#include <atomic>
#include <cstring>
#include <new>
#include <type_traits>

namespace rtpc {

namespace {

// The block is shared between processes and between binaries built at
// different times: the header must not depend on anything but these fields.
static_assert(std::is_standard_layout_v<SessionTable>);
static_assert(sizeof(SessionTable::Slot) == 16);
static_assert(SessionTable::slotsOffset() % 64 == 0);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint64_t>::required_alignment <= SessionTable::kRequiredAlignment);

constexpr uint64_t kWyp0 = 0x2d358dccaa6c78a5ull;
constexpr uint64_t kWyp1 = 0x8bb84b93962eacc9ull;
constexpr uint64_t kWyp2 = 0x4b33a62ed433d4a3ull;
constexpr uint64_t kWyp3 = 0x4d5a2da51de1aa47ull;

__extension__ typedef unsigned __int128 Uint128;

inline void wyMum(uint64_t& a, uint64_t& b) {
  const Uint128 r = static_cast<Uint128>(a) * b;
  a = static_cast<uint64_t>(r);
  b = static_cast<uint64_t>(r >> 64);
}

inline uint64_t wyMix(uint64_t a, uint64_t b) {
  wyMum(a, b);
  return a ^ b;
}

inline uint64_t read8(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline uint64_t read4(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline uint64_t read3(const unsigned char* p, size_t k) {
  return (uint64_t{p[0]} << 16) | (uint64_t{p[k >> 1]} << 8) | p[k - 1];
}

inline uint64_t loadRelaxed(const uint64_t& x) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(x)).load(std::memory_order_relaxed);
}

inline uint32_t loadRelaxed(const uint32_t& x) {
  return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(x)).load(std::memory_order_relaxed);
}

inline void storeMeta(uint64_t& meta, uint64_t value) {
  std::atomic_ref<uint64_t>(meta).store(value, std::memory_order_release);
}

inline uint8_t stateOf(uint64_t meta) { return static_cast<uint8_t>(meta); }
inline uint8_t checkOf(uint64_t meta) { return static_cast<uint8_t>(meta >> 8); }
inline uint16_t memberOf(uint64_t meta) { return static_cast<uint16_t>(meta >> 16); }
inline uint32_t lastUseOf(uint64_t meta) { return static_cast<uint32_t>(meta >> 32); }

// Ties the meta word to the fingerprint it was written for, so that attach()
// can tell a slot whose two words do not belong together.
inline uint8_t checkByte(uint64_t fp) {
  return static_cast<uint8_t>((fp * 0x9e3779b97f4a7c15ull) >> 56);
}

inline bool occupied(uint64_t meta) {
  const uint8_t s = stateOf(meta);
  return s == SessionTable::kLive || s == SessionTable::kDeleted;
}

inline uint32_t toSeconds(uint64_t now_ms) { return static_cast<uint32_t>(now_ms / 1000); }

uint32_t bucketsFor(uint32_t max_calls) {
  // 2 slots per call: the load stays <= 50% at max_calls, where two
  // 4-slot candidate buckets are practically never both full.
  const uint64_t buckets = (uint64_t{max_calls} * 2 + SessionTable::kSlotsPerBucket - 1) /
                           SessionTable::kSlotsPerBucket;
  return static_cast<uint32_t>(buckets < 2 ? 2 : buckets);
}

}  // namespace

uint64_t hashCallId(std::string_view call_id, uint64_t seed) {
  const auto* p = reinterpret_cast<const unsigned char*>(call_id.data());
  const size_t len = call_id.size();
  seed ^= wyMix(seed ^ kWyp0, kWyp1);
  uint64_t a;
  uint64_t b;
  if (len <= 16) {
    if (len >= 4) {
      a = (read4(p) << 32) | read4(p + ((len >> 3) << 2));
      b = (read4(p + len - 4) << 32) | read4(p + len - 4 - ((len >> 3) << 2));
    } else if (len > 0) {
      a = read3(p, len);
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    size_t i = len;
    if (i > 48) {
      uint64_t see1 = seed;
      uint64_t see2 = seed;
      do {
        seed = wyMix(read8(p) ^ kWyp1, read8(p + 8) ^ seed);
        see1 = wyMix(read8(p + 16) ^ kWyp2, read8(p + 24) ^ see1);
        see2 = wyMix(read8(p + 32) ^ kWyp3, read8(p + 40) ^ see2);
        p += 48;
        i -= 48;
      } while (i > 48);
      seed ^= see1 ^ see2;
    }
    while (i > 16) {
      seed = wyMix(read8(p) ^ kWyp1, read8(p + 8) ^ seed);
      i -= 16;
      p += 16;
    }
    a = read8(p + i - 16);
    b = read8(p + i - 8);
  }
  a ^= kWyp1;
  b ^= seed;
  wyMum(a, b);
  return wyMix(a ^ kWyp0 ^ len, b ^ kWyp1);
}

size_t SessionTable::bytesFor(uint32_t max_calls) {
  if (max_calls == 0 || max_calls > kMaxCalls) return 0;
  return slotsOffset() + size_t{bucketsFor(max_calls)} * kSlotsPerBucket * sizeof(Slot);
}

uint64_t SessionTable::packMeta(SlotState state, uint64_t fingerprint, uint16_t member,
                                uint32_t last_use_s) {
  return uint64_t{state} | (uint64_t{checkByte(fingerprint)} << 8) | (uint64_t{member} << 16) |
         (uint64_t{last_use_s} << 32);
}

SessionTable* SessionTable::create(void* mem, size_t bytes, uint32_t max_calls, uint64_t hash_seed) {
  const size_t need = bytesFor(max_calls);
  if (mem == nullptr || need == 0 || bytes < need ||
      reinterpret_cast<uintptr_t>(mem) % kRequiredAlignment != 0) {
    return nullptr;
  }
  std::memset(mem, 0, need);
  auto* t = new (mem) SessionTable();
  t->magic_ = 0;
  t->layout_version_ = kLayoutVersion;
  t->header_bytes_ = static_cast<uint32_t>(slotsOffset());
  t->total_bytes_ = need;
  t->max_calls_ = max_calls;
  t->bucket_count_ = bucketsFor(max_calls);
  t->hash_seed_ = hash_seed;
  t->deleted_ttl_s_ = kDefaultDeletedTtlS;
  t->sweep_cursor_ = 0;
  t->last_attach_repairs_ = 0;
  t->reserved0_ = 0;
  t->live_count_ = 0;
  t->deleted_count_ = 0;
  t->live_evictions_ = 0;
  t->deleted_evictions_ = 0;
  std::memset(t->bound_, 0, sizeof t->bound_);
  // Magic last: a creator killed half-way leaves a block attach() refuses.
  std::atomic_thread_fence(std::memory_order_release);
  std::atomic_ref<uint64_t>(t->magic_).store(kMagic, std::memory_order_release);
  return t;
}

SessionTable* SessionTable::attach(void* mem, size_t bytes) {
  if (mem == nullptr || bytes < slotsOffset() ||
      reinterpret_cast<uintptr_t>(mem) % kRequiredAlignment != 0) {
    return nullptr;
  }
  auto* t = std::launder(reinterpret_cast<SessionTable*>(mem));
  if (loadRelaxed(t->magic_) != kMagic || t->layout_version_ != kLayoutVersion ||
      t->header_bytes_ != slotsOffset() || t->max_calls_ == 0 || t->max_calls_ > kMaxCalls ||
      t->bucket_count_ != bucketsFor(t->max_calls_) || t->total_bytes_ != bytesFor(t->max_calls_) ||
      bytes < t->total_bytes_) {
    return nullptr;
  }
  if (t->sweep_cursor_ >= t->capacity()) t->sweep_cursor_ = 0;
  t->last_attach_repairs_ = t->repairSlots();
  t->recount();
  return t;
}

SessionTable::Slot* SessionTable::slots() {
  return reinterpret_cast<Slot*>(reinterpret_cast<unsigned char*>(this) + slotsOffset());
}

const SessionTable::Slot* SessionTable::slots() const {
  return reinterpret_cast<const Slot*>(reinterpret_cast<const unsigned char*>(this) + slotsOffset());
}

void SessionTable::candidateBuckets(uint64_t fp, uint32_t& b1, uint32_t& b2) const {
  // Multiply-shift range reduction: any bucket count, no modulo, no power of
  // two rounding (which would waste up to half the memory).
  const uint64_t n = bucket_count_;
  b1 = static_cast<uint32_t>(((fp & 0xffffffffull) * n) >> 32);
  b2 = static_cast<uint32_t>(((fp >> 32) * n) >> 32);
  if (b2 == b1) b2 = (b1 + 1 == n) ? 0 : b1 + 1;
}

SessionTable::Slot* SessionTable::find(uint64_t fp) {
  return const_cast<Slot*>(static_cast<const SessionTable*>(this)->find(fp));
}

const SessionTable::Slot* SessionTable::find(uint64_t fp) const {
  uint32_t b[2];
  candidateBuckets(fp, b[0], b[1]);
  const Slot* base = slots();
  // Both cache misses in flight at once when the first bucket does not hold it.
  __builtin_prefetch(base + size_t{b[1]} * kSlotsPerBucket);
  for (uint32_t bucket : b) {
    const Slot* s = base + size_t{bucket} * kSlotsPerBucket;
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      if (loadRelaxed(s[i].fingerprint) == fp && occupied(loadRelaxed(s[i].meta))) return &s[i];
    }
  }
  return nullptr;
}

void SessionTable::prefetch(std::string_view call_id) const {
  uint32_t b1;
  uint32_t b2;
  candidateBuckets(fingerprintOf(call_id), b1, b2);
  __builtin_prefetch(slots() + size_t{b1} * kSlotsPerBucket);
  __builtin_prefetch(slots() + size_t{b2} * kSlotsPerBucket);
}

bool SessionTable::expired(uint64_t meta, uint32_t now_s) const {
  if (stateOf(meta) != kDeleted) return false;
  const uint32_t deleted_at = lastUseOf(meta);
  // A clock that went backwards keeps the entry rather than dropping it early.
  return now_s > deleted_at && now_s - deleted_at > deleted_ttl_s_;
}

void SessionTable::bump(uint64_t& counter, int64_t delta) {
  std::atomic_ref<uint64_t> c(counter);
  c.store(c.load(std::memory_order_relaxed) + static_cast<uint64_t>(delta), std::memory_order_relaxed);
}

void SessionTable::bump32(uint32_t& counter, int32_t delta) {
  std::atomic_ref<uint32_t> c(counter);
  c.store(c.load(std::memory_order_relaxed) + static_cast<uint32_t>(delta), std::memory_order_relaxed);
}

void SessionTable::countIn(uint64_t meta) {
  if (stateOf(meta) == kLive) {
    bump(live_count_, 1);
    bump32(bound_[memberOf(meta)], 1);
  } else if (stateOf(meta) == kDeleted) {
    bump(deleted_count_, 1);
  }
}

void SessionTable::countOut(uint64_t meta) {
  if (stateOf(meta) == kLive) {
    bump(live_count_, -1);
    bump32(bound_[memberOf(meta)], -1);
  } else if (stateOf(meta) == kDeleted) {
    bump(deleted_count_, -1);
  }
}

void SessionTable::clearSlot(Slot& slot, uint64_t meta) {
  storeMeta(slot.meta, 0);
  countOut(meta);
}

void SessionTable::writeNew(Slot& slot, uint64_t fp, uint64_t final_meta) {
  // Marks the slot as being written before the fingerprint changes, so that
  // a writer killed in between leaves a slot attach() recognises and clears,
  // never the old meta (member) paired with the new fingerprint.
  std::atomic_ref<uint64_t>(slot.meta).store(kWriting, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  std::atomic_ref<uint64_t>(slot.fingerprint).store(fp, std::memory_order_relaxed);
  storeMeta(slot.meta, final_meta);
}

std::optional<uint16_t> SessionTable::lookup(std::string_view call_id, uint64_t now_ms) {
  const uint64_t fp = hashCallId(call_id, hash_seed_);
  Slot* slot = find(fp);
  if (slot == nullptr) return std::nullopt;
  const uint64_t meta = loadRelaxed(slot->meta);
  const uint32_t now_s = toSeconds(now_ms);
  if (expired(meta, now_s)) {
    clearSlot(*slot, meta);
    return std::nullopt;
  }
  // Only live calls are refreshed; a deleted call's clock is its deletion.
  if (stateOf(meta) == kLive && lastUseOf(meta) != now_s) {
    storeMeta(slot->meta, packMeta(kLive, fp, memberOf(meta), now_s));
  }
  return memberOf(meta);
}

bool SessionTable::bind(std::string_view call_id, uint16_t member, uint64_t now_ms) {
  if (member >= kMaxMembers) return false;
  const uint64_t fp = hashCallId(call_id, hash_seed_);
  const uint32_t now_s = toSeconds(now_ms);
  const uint64_t meta = packMeta(kLive, fp, member, now_s);
  if (Slot* slot = find(fp)) {
    const uint64_t old = loadRelaxed(slot->meta);
    storeMeta(slot->meta, meta);
    countOut(old);
    countIn(meta);
    return true;
  }

  uint32_t b[2];
  candidateBuckets(fp, b[0], b[1]);
  Slot* base = slots();
  Slot* bucket[2] = {base + size_t{b[0]} * kSlotsPerBucket, base + size_t{b[1]} * kSlotsPerBucket};

  // A free slot in the emptier bucket (two-choice balancing keeps both full
  // buckets, and so evictions, rare).
  Slot* free_slot[2] = {nullptr, nullptr};
  uint32_t free_count[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      if (!occupied(loadRelaxed(bucket[k][i].meta))) {
        if (free_slot[k] == nullptr) free_slot[k] = &bucket[k][i];
        ++free_count[k];
      }
    }
  }
  if (free_count[0] + free_count[1] > 0) {
    writeNew(*(free_count[1] > free_count[0] ? free_slot[1] : free_slot[0]), fp, meta);
    countIn(meta);
    return true;
  }

  // Both buckets full. Cheapest first: a deleted call past its TTL is as
  // good as a free slot.
  for (Slot* bk : bucket) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      const uint64_t m = loadRelaxed(bk[i].meta);
      if (expired(m, now_s)) {
        writeNew(bk[i], fp, meta);
        countOut(m);
        countIn(meta);
        return true;
      }
    }
  }

  // One cuckoo step: move an entry to its other candidate bucket if that has
  // room, so that nothing is lost while the table is not really full.
  for (int k = 0; k < 2; ++k) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      Slot& from = bucket[k][i];
      const uint64_t moved_fp = loadRelaxed(from.fingerprint);
      const uint64_t moved_meta = loadRelaxed(from.meta);
      uint32_t c1;
      uint32_t c2;
      candidateBuckets(moved_fp, c1, c2);
      const uint32_t alt = c1 == b[k] ? c2 : c1;
      if (alt == b[0] || alt == b[1]) continue;
      Slot* target = base + size_t{alt} * kSlotsPerBucket;
      for (uint32_t j = 0; j < kSlotsPerBucket; ++j) {
        const uint64_t tm = loadRelaxed(target[j].meta);
        if (occupied(tm) && !expired(tm, now_s)) continue;
        // Copy complete before the source is overwritten: a crash in between
        // leaves two identical entries, which attach() folds into one.
        writeNew(target[j], moved_fp, moved_meta);
        countOut(tm);
        writeNew(from, fp, meta);
        countIn(meta);
        return true;
      }
    }
  }

  // Evict: the oldest deleted call, else the least recently used live one
  // (the bucket-local LRU of the header comment).
  Slot* victim = nullptr;
  bool victim_live = true;
  uint32_t victim_time = 0;
  for (Slot* bk : bucket) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      const uint64_t m = loadRelaxed(bk[i].meta);
      const bool live = stateOf(m) == kLive;
      const uint32_t t = lastUseOf(m);
      if (victim == nullptr || (victim_live && !live) || (live == victim_live && t < victim_time)) {
        victim = &bk[i];
        victim_live = live;
        victim_time = t;
      }
    }
  }
  const uint64_t old = loadRelaxed(victim->meta);
  bump(victim_live ? live_evictions_ : deleted_evictions_, 1);
  writeNew(*victim, fp, meta);
  countOut(old);
  countIn(meta);
  return true;
}

bool SessionTable::markDeleted(std::string_view call_id, uint64_t now_ms) {
  const uint64_t fp = hashCallId(call_id, hash_seed_);
  Slot* slot = find(fp);
  if (slot == nullptr) return false;
  const uint64_t old = loadRelaxed(slot->meta);
  const uint32_t now_s = toSeconds(now_ms);
  if (expired(old, now_s)) {
    clearSlot(*slot, old);
    return false;
  }
  if (stateOf(old) == kLive) {
    const uint64_t meta = packMeta(kDeleted, fp, memberOf(old), now_s);
    storeMeta(slot->meta, meta);
    countOut(old);
    countIn(meta);
  }
  return true;
}

uint32_t SessionTable::forgetMember(uint16_t member) {
  uint32_t dropped = 0;
  Slot* s = slots();
  const uint64_t n = capacity();
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t m = loadRelaxed(s[i].meta);
    if (occupied(m) && memberOf(m) == member) {
      clearSlot(s[i], m);
      ++dropped;
    }
  }
  return dropped;
}

uint32_t SessionTable::sweepExpired(uint64_t now_ms, uint32_t max_slots) {
  const uint32_t now_s = toSeconds(now_ms);
  const uint64_t n = capacity();
  Slot* s = slots();
  uint32_t freed = 0;
  uint32_t cursor = sweep_cursor_;
  for (uint32_t k = 0; k < max_slots && k < n; ++k) {
    const uint64_t m = loadRelaxed(s[cursor].meta);
    if (expired(m, now_s)) {
      clearSlot(s[cursor], m);
      ++freed;
    }
    if (++cursor == n) cursor = 0;
  }
  sweep_cursor_ = cursor;
  return freed;
}

void SessionTable::setDeletedTtlSeconds(uint32_t seconds) { deleted_ttl_s_ = seconds; }

uint32_t SessionTable::boundCount(uint16_t member) const {
  return member < kMaxMembers ? loadRelaxed(bound_[member]) : 0;
}
uint64_t SessionTable::liveCount() const { return loadRelaxed(live_count_); }
uint64_t SessionTable::deletedCount() const { return loadRelaxed(deleted_count_); }
uint64_t SessionTable::liveEvictions() const { return loadRelaxed(live_evictions_); }
uint64_t SessionTable::deletedEvictions() const { return loadRelaxed(deleted_evictions_); }

std::optional<uint32_t> SessionTable::slotIndexOf(std::string_view call_id) const {
  const Slot* slot = find(hashCallId(call_id, hash_seed_));
  if (slot == nullptr) return std::nullopt;
  return static_cast<uint32_t>(slot - slots());
}

uint32_t SessionTable::repairSlots() {
  uint32_t repaired = 0;
  Slot* s = slots();
  const auto clear = [&](Slot& slot) {
    storeMeta(slot.meta, 0);
    ++repaired;
  };
  // Pass 1: every slot must be a complete, well-formed entry in one of its
  // own candidate buckets.
  for (uint32_t bucket = 0; bucket < bucket_count_; ++bucket) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      Slot& slot = s[size_t{bucket} * kSlotsPerBucket + i];
      const uint64_t m = loadRelaxed(slot.meta);
      if (m == 0) continue;
      if (!occupied(m)) {  // kWriting (killed writer) or garbage
        clear(slot);
        continue;
      }
      const uint64_t fp = loadRelaxed(slot.fingerprint);
      uint32_t b1;
      uint32_t b2;
      candidateBuckets(fp, b1, b2);
      if (checkOf(m) != checkByte(fp) || memberOf(m) >= kMaxMembers ||
          (bucket != b1 && bucket != b2)) {
        clear(slot);
      }
    }
  }
  // Pass 2: a fingerprint held twice. Two copies naming the same member are
  // a relocation cut short (keep one); different members cannot come from
  // the write protocol and which is right is unknowable, so both are
  // forgotten rather than risk a misroute.
  for (uint64_t idx = 0; idx < capacity(); ++idx) {
    const uint64_t m = loadRelaxed(s[idx].meta);
    if (!occupied(m)) continue;
    const uint64_t fp = loadRelaxed(s[idx].fingerprint);
    uint32_t b[2];
    candidateBuckets(fp, b[0], b[1]);
    bool duplicate = false;
    for (uint32_t bucket : b) {
      for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
        Slot& other = s[size_t{bucket} * kSlotsPerBucket + i];
        if (&other == &s[idx]) continue;
        const uint64_t om = loadRelaxed(other.meta);
        if (occupied(om) && loadRelaxed(other.fingerprint) == fp) {
          if (memberOf(om) != memberOf(m)) duplicate = true;
          clear(other);
        }
      }
    }
    if (duplicate) clear(s[idx]);
  }
  return repaired;
}

void SessionTable::recount() {
  std::atomic_ref<uint64_t>(live_count_).store(0, std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(deleted_count_).store(0, std::memory_order_relaxed);
  for (uint32_t& c : bound_) std::atomic_ref<uint32_t>(c).store(0, std::memory_order_relaxed);
  const Slot* s = slots();
  const uint64_t n = capacity();
  for (uint64_t i = 0; i < n; ++i) countIn(loadRelaxed(s[i].meta));
}

}  // namespace rtpc
