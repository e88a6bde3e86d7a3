#include "worker/reply_cache.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <random>

namespace rtpc {

namespace {

uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

size_t roundUp8(size_t n) { return (n + 7) & ~size_t{7}; }

}  // namespace

ReplyCache::ReplyCache(size_t bytes, uint64_t retention_ns, uint64_t seed)
    : capacity_(std::max(bytes, kMinBytes) & ~size_t{7}),
      retention_ns_(retention_ns),
      seed_(seed),
      max_record_bytes_(capacity_ / 8) {
  if (seed_ == 0) {
    std::random_device rd;
    seed_ = (uint64_t{rd()} << 32) ^ rd() ^ 0x9e3779b97f4a7c15ULL;
  }
  size_t slots = 64;
  while (slots < capacity_ / 64) slots <<= 1;
  mask_ = slots - 1;
  max_live_ = slots / 4 * 3;
  // malloc/calloc rather than new[]: pages of a large ring that is never
  // filled are never touched, and calloc gets the index zeroed for free.
  ring_.reset(static_cast<char*>(std::malloc(capacity_)));
  slots_.reset(static_cast<Slot*>(std::calloc(slots, sizeof(Slot))));
  if (!ring_ || !slots_) throw std::bad_alloc();
}

uint64_t ReplyCache::hashKey(std::string_view client, std::string_view cookie) const {
  uint64_t h = fnv1a(0xcbf29ce484222325ULL ^ seed_, client);
  h ^= client.size();
  h *= 0x100000001b3ULL;
  return mix64(fnv1a(h, cookie) ^ seed_);
}

size_t ReplyCache::recordBytes(size_t key_length, size_t cookie_length, size_t reply_length) {
  return roundUp8(sizeof(Header) + key_length + cookie_length + reply_length);
}

ReplyCache::Header ReplyCache::headerAt(uint64_t position) const {
  Header h;
  std::memcpy(&h, bytesAt(position), sizeof h);
  return h;
}

size_t ReplyCache::findSlot(uint64_t hash, std::string_view client,
                            std::string_view cookie) const {
  for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
    const Slot& slot = slots_[i];
    if (slot.position_plus_one == 0) return kNotFound;
    if (slot.hash != hash) continue;
    const uint64_t position = slot.position_plus_one - 1;
    const Header h = headerAt(position);
    if (h.key_length != client.size() || h.cookie_length != cookie.size()) continue;
    const char* p = bytesAt(position) + sizeof(Header);
    if (std::memcmp(p, client.data(), client.size()) == 0 &&
        std::memcmp(p + client.size(), cookie.data(), cookie.size()) == 0) {
      return i;
    }
  }
}

size_t ReplyCache::findSlotByPosition(uint64_t hash, uint64_t position) const {
  for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
    const Slot& slot = slots_[i];
    if (slot.position_plus_one == 0) return kNotFound;
    if (slot.position_plus_one == position + 1) return i;
  }
}

void ReplyCache::insertSlot(uint64_t hash, uint64_t position) {
  size_t i = hash & mask_;
  while (slots_[i].position_plus_one != 0) i = (i + 1) & mask_;
  slots_[i] = Slot{hash, position + 1};
}

void ReplyCache::eraseSlot(size_t index) {
  // Backward-shift deletion keeps every probe chain unbroken without tombstones.
  size_t hole = index;
  for (size_t j = (hole + 1) & mask_; slots_[j].position_plus_one != 0; j = (j + 1) & mask_) {
    const size_t home = slots_[j].hash & mask_;
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const bool home_after_hole =
        hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_after_hole) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = Slot{0, 0};
}

void ReplyCache::popOldest(uint64_t now_ns) {
  if (tail_ >= head_) {
    tail_ = head_;
    return;
  }
  const size_t offset = tail_ % capacity_;
  if (capacity_ - offset < sizeof(Header) || headerAt(tail_).kind == Kind::kWrap) {
    tail_ += capacity_ - offset;
    return;
  }
  const Header h = headerAt(tail_);
  const size_t slot = findSlotByPosition(h.hash, tail_);
  if (slot != kNotFound) {
    eraseSlot(slot);
    --live_;
    if (now_ns < h.time_ns + retention_ns_) ++evicted_early_;
  }
  tail_ += h.size;
  // The next record to go is the next command's eviction: start the index
  // miss it will take now (its header is next to this one, so cheap to read).
  if (tail_ < head_ && capacity_ - tail_ % capacity_ >= sizeof(Header)) {
    __builtin_prefetch(&slots_[headerAt(tail_).hash & mask_]);
  }
}

void ReplyCache::expire(uint64_t now_ns) {
  while (tail_ < head_) {
    const size_t offset = tail_ % capacity_;
    const bool padding =
        capacity_ - offset < sizeof(Header) || headerAt(tail_).kind == Kind::kWrap;
    if (!padding && headerAt(tail_).time_ns + retention_ns_ > now_ns) break;
    popOldest(now_ns);
  }
}

uint64_t ReplyCache::append(Kind kind, uint64_t hash, std::string_view client,
                            std::string_view cookie, std::string_view reply, size_t reserve,
                            uint64_t now_ns) {
  const size_t size = recordBytes(client.size(), cookie.size(), reply.size() + reserve);
  while (live_ >= max_live_) popOldest(now_ns);

  // A record never wraps: when it does not fit before the end of the ring it
  // starts the next lap, and the rest of this lap becomes padding.
  const size_t offset = head_ % capacity_;
  uint64_t start = head_;
  if (capacity_ - offset < size) start = head_ + (capacity_ - offset);
  while (start + size - tail_ > capacity_) {
    if (tail_ >= head_) {  // empty: skip the padding altogether
      tail_ = head_ = start;
      break;
    }
    popOldest(now_ns);
  }
  if (start != head_ && capacity_ - offset >= sizeof(Header)) {
    Header wrap{};
    wrap.kind = Kind::kWrap;
    std::memcpy(ring_.get() + offset, &wrap, sizeof wrap);
  }

  Header h{};
  h.time_ns = now_ns;
  h.hash = hash;
  h.size = static_cast<uint32_t>(size);
  h.reply_length = static_cast<uint32_t>(reply.size());
  h.cookie_length = static_cast<uint16_t>(cookie.size());
  h.key_length = static_cast<uint8_t>(client.size());
  h.kind = kind;
  char* p = ring_.get() + start % capacity_;
  std::memcpy(p, &h, sizeof h);
  p += sizeof h;
  std::memcpy(p, client.data(), client.size());
  p += client.size();
  std::memcpy(p, cookie.data(), cookie.size());
  p += cookie.size();
  if (!reply.empty()) std::memcpy(p, reply.data(), reply.size());
  head_ = start + size;
  return start;
}

void ReplyCache::setKind(uint64_t position, Kind kind) {
  char* p = ring_.get() + position % capacity_ + offsetof(Header, kind);
  std::memcpy(p, &kind, sizeof kind);
}

ReplyCache::Lookup ReplyCache::lookupAt(size_t slot, uint64_t now_ns) const {
  const uint64_t position = slots_[slot].position_plus_one - 1;
  const Header h = headerAt(position);
  if (h.time_ns + retention_ns_ <= now_ns) return {State::kNew, {}};
  if (h.kind == Kind::kInFlight) return {State::kInFlight, {}};
  const char* reply = bytesAt(position) + sizeof(Header) + h.key_length + h.cookie_length;
  return {State::kAnswered, std::string_view(reply, h.reply_length)};
}

ReplyCache::Lookup ReplyCache::begin(std::string_view client, std::string_view cookie,
                                     uint64_t now_ns) {
  if (client.size() > kMaxClientKeyBytes || cookie.size() > kMaxCookieBytes ||
      recordBytes(client.size(), cookie.size(), 0) > max_record_bytes_) {
    return {State::kUncacheable, {}};
  }
  expire(now_ns);
  const uint64_t hash = hashKey(client, cookie);
  const size_t slot = findSlot(hash, client, cookie);
  if (slot != kNotFound) return lookupAt(slot, now_ns);
  // The reply's room only where a record that size is allowed (tiny rings).
  const size_t reserve =
      recordBytes(client.size(), cookie.size(), kInlineReplyBytes) <= max_record_bytes_
          ? kInlineReplyBytes
          : 0;
  const uint64_t position = append(Kind::kInFlight, hash, client, cookie, {}, reserve, now_ns);
  insertSlot(hash, position);
  ++live_;
  return {State::kNew, {}, position};
}

bool ReplyCache::complete(uint64_t ticket, std::string_view client, std::string_view cookie,
                          std::string_view reply, uint64_t now_ns) {
  // A ticket behind the tail names a record already overwritten; one that
  // was cancelled or already completed has another kind.
  if (ticket != kNoTicket && ticket >= tail_ && ticket < head_) {
    Header h = headerAt(ticket);
    const size_t room = h.size - sizeof(Header) - h.key_length - h.cookie_length;
    if (h.kind == Kind::kInFlight && h.key_length == client.size() &&
        h.cookie_length == cookie.size() && reply.size() <= room) {
      char* p = ring_.get() + ticket % capacity_;
      const char* key = p + sizeof(Header);
      if (std::memcmp(key, client.data(), client.size()) == 0 &&
          std::memcmp(key + client.size(), cookie.data(), cookie.size()) == 0) {
        if (!reply.empty()) {
          std::memcpy(p + sizeof(Header) + client.size() + cookie.size(), reply.data(),
                      reply.size());
        }
        // Retention counts from the answer, as for an appended record. The
        // ring stays in time order within a command's run time (under the
        // client's 1 s deadline), which only delays expiry, never hastens it.
        h.time_ns = std::max(h.time_ns, now_ns);
        h.reply_length = static_cast<uint32_t>(reply.size());
        h.kind = Kind::kAnswered;
        std::memcpy(p, &h, sizeof h);
        ++completed_in_place_;
        return true;
      }
    }
  }
  return complete(client, cookie, reply, now_ns);
}

bool ReplyCache::complete(std::string_view client, std::string_view cookie,
                          std::string_view reply, uint64_t now_ns) {
  if (client.size() > kMaxClientKeyBytes || cookie.size() > kMaxCookieBytes) return false;
  if (reply.size() > kMaxReplyBytes ||
      recordBytes(client.size(), cookie.size(), reply.size()) > max_record_bytes_) {
    ++rejected_too_long_;
    const size_t slot = findSlot(hashKey(client, cookie), client, cookie);
    if (slot != kNotFound) {
      const uint64_t position = slots_[slot].position_plus_one - 1;
      if (headerAt(position).kind == Kind::kInFlight) setKind(position, Kind::kCancelled);
      eraseSlot(slot);
      --live_;
    }
    return false;
  }
  expire(now_ns);
  const uint64_t hash = hashKey(client, cookie);
  // Appending first: it may evict the in-flight record (and its slot) itself.
  const uint64_t position = append(Kind::kAnswered, hash, client, cookie, reply, 0, now_ns);
  const size_t slot = findSlot(hash, client, cookie);
  if (slot != kNotFound) {
    slots_[slot].position_plus_one = position + 1;
  } else {
    insertSlot(hash, position);
    ++live_;
  }
  return true;
}

void ReplyCache::cancel(std::string_view client, std::string_view cookie) {
  if (client.size() > kMaxClientKeyBytes || cookie.size() > kMaxCookieBytes) return;
  const size_t slot = findSlot(hashKey(client, cookie), client, cookie);
  if (slot == kNotFound) return;
  const uint64_t position = slots_[slot].position_plus_one - 1;
  if (headerAt(position).kind != Kind::kInFlight) return;
  setKind(position, Kind::kCancelled);
  eraseSlot(slot);
  --live_;
}

void ReplyCache::prefetch(std::string_view client, std::string_view cookie) const {
  if (client.size() > kMaxClientKeyBytes || cookie.size() > kMaxCookieBytes) return;
  __builtin_prefetch(&slots_[hashKey(client, cookie) & mask_]);
}

ReplyCache::Lookup ReplyCache::find(std::string_view client, std::string_view cookie,
                                    uint64_t now_ns) const {
  if (client.size() > kMaxClientKeyBytes || cookie.size() > kMaxCookieBytes) {
    return {State::kNew, {}};
  }
  const size_t slot = findSlot(hashKey(client, cookie), client, cookie);
  if (slot == kNotFound) return {State::kNew, {}};
  return lookupAt(slot, now_ns);
}

}  // namespace rtpc
