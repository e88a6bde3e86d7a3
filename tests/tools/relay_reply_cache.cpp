#include "tests/tools/relay_reply_cache.h"

#include <bit>
#include <algorithm>
#include <cstring>
#include <new>

namespace rtpc {

namespace {
constexpr size_t align8(size_t n) { return (n + 7) & ~size_t{7}; }
}  // namespace

RelayReplyCache::RelayReplyCache(size_t arena_bytes, size_t max_entries, uint64_t ttl_ms)
    : arena_bytes_(align8(arena_bytes < 4096 ? 4096 : arena_bytes)),
      arena_(new uint64_t[arena_bytes_ / 8]),
      max_entries_(std::bit_ceil(max_entries < 16 ? size_t{16} : max_entries)),
      index_size_(max_entries_ * 2),
      index_(static_cast<Slot*>(std::calloc(index_size_, sizeof(Slot)))),
      mask_(index_size_ - 1),
      ttl_ms_(ttl_ms) {}

uint64_t RelayReplyCache::hashOf(std::string_view s) {
  // FNV-1a with a final mix: cookies are short, and this keeps the index
  // independent of the standard library's hash quality.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

size_t RelayReplyCache::entryBytes(size_t cookie_len, size_t reply_len) {
  return align8(sizeof(Header) + cookie_len + reply_len);
}

const RelayReplyCache::Header& RelayReplyCache::headerAt(size_t offset) const {
  return *reinterpret_cast<const Header*>(reinterpret_cast<const char*>(arena_.get()) + offset);
}

std::string_view RelayReplyCache::cookieAt(size_t offset) const {
  const Header& h = headerAt(offset);
  return {reinterpret_cast<const char*>(arena_.get()) + offset + sizeof(Header), h.cookie_len};
}

size_t RelayReplyCache::findSlot(std::string_view cookie, uint64_t hash) const {
  for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
    const Slot& s = index_.get()[i];
    if (s.offset_plus_one == 0) return index_size_;
    if (s.hash == hash && cookieAt(s.offset_plus_one - 1) == cookie) return i;
  }
}

std::optional<std::string_view> RelayReplyCache::find(std::string_view cookie, uint64_t now_ms) const {
  if (count_ == 0) return std::nullopt;
  const size_t slot = findSlot(cookie, hashOf(cookie));
  if (slot == index_size_) return std::nullopt;
  const size_t offset = index_.get()[slot].offset_plus_one - 1;
  const Header& h = headerAt(offset);
  if (h.time_ms + ttl_ms_ <= now_ms) return std::nullopt;
  return std::string_view(
      reinterpret_cast<const char*>(arena_.get()) + offset + sizeof(Header) + h.cookie_len,
      h.reply_len);
}

void RelayReplyCache::indexInsert(uint64_t hash, size_t offset) {
  size_t i = hash & mask_;
  while (index_.get()[i].offset_plus_one != 0) i = (i + 1) & mask_;
  index_.get()[i] = Slot{hash, static_cast<uint32_t>(offset + 1), 0};
}

void RelayReplyCache::indexErase(uint64_t hash, size_t offset) {
  size_t i = hash & mask_;
  while (index_.get()[i].offset_plus_one != offset + 1) {
    if (index_.get()[i].offset_plus_one == 0) return;  // not indexed (cannot happen)
    i = (i + 1) & mask_;
  }
  // Backward shift: pull later members of the probe run into the hole so that
  // lookups can stop at the first empty slot and no tombstones pile up.
  size_t hole = i;
  for (size_t j = (i + 1) & mask_; index_.get()[j].offset_plus_one != 0; j = (j + 1) & mask_) {
    const size_t home = index_.get()[j].hash & mask_;
    const bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
    if (movable) {
      index_.get()[hole] = index_.get()[j];
      hole = j;
    }
  }
  index_.get()[hole] = Slot{};
}

void RelayReplyCache::normalizeTail() {
  if (count_ == 0) return;
  if (arena_bytes_ - tail_ < sizeof(Header) || headerAt(tail_).cookie_len == kWrapMarker) tail_ = 0;
}

void RelayReplyCache::popOldest() {
  normalizeTail();
  const Header& h = headerAt(tail_);
  indexErase(h.hash, tail_);
  tail_ += entryBytes(h.cookie_len, h.reply_len);
  if (--count_ == 0) head_ = tail_ = 0;
}

bool RelayReplyCache::insert(std::string_view cookie, std::string_view reply, uint64_t now_ms) {
  const size_t need = entryBytes(cookie.size(), reply.size());
  if (need > arena_bytes_ / 4) return false;
  while (count_ >= max_entries_) popOldest();
  for (;;) {
    if (count_ == 0) head_ = tail_ = 0;
    if (count_ == 0 || head_ > tail_) {
      if (arena_bytes_ - head_ >= need) break;
      if (arena_bytes_ - head_ >= sizeof(Header)) {
        Header marker{};
        marker.cookie_len = kWrapMarker;
        std::memcpy(reinterpret_cast<char*>(arena_.get()) + head_, &marker, sizeof marker);
      }
      head_ = 0;
      continue;
    }
    if (head_ < tail_ && tail_ - head_ >= need) break;
    popOldest();
  }
  char* p = reinterpret_cast<char*>(arena_.get()) + head_;
  const Header h{now_ms, hashOf(cookie), static_cast<uint32_t>(cookie.size()),
                 static_cast<uint32_t>(reply.size())};
  std::memcpy(p, &h, sizeof h);
  std::memcpy(p + sizeof h, cookie.data(), cookie.size());
  std::memcpy(p + sizeof h + cookie.size(), reply.data(), reply.size());
  indexInsert(h.hash, head_);
  head_ += need;
  ++count_;
  return true;
}

void RelayReplyCache::expire(uint64_t now_ms) {
  while (count_ != 0) {
    normalizeTail();
    if (headerAt(tail_).time_ms + ttl_ms_ > now_ms) return;
    popOldest();
  }
}

void RelayReplyCache::clear() {
  std::fill(index_.get(), index_.get() + index_size_, Slot{});
  head_ = tail_ = count_ = 0;
}

}  // namespace rtpc
