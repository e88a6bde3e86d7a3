#pragma once
// The UDP reply cache of rtpproxy: cookie -> the exact reply datagram, kept
// 35 s (PROTOCOL.md section 1). Keyed by the cookie alone, as rtpproxy does.
//
// Everything is preallocated: entries live in one ring arena in insertion
// order, which is also expiry order (fixed TTL), so expiring is popping the
// oldest; a linear-probing index with backward-shift deletion finds them.
// When the arena or the index is full the oldest entries go early, so under
// extreme load the effective lifetime is shorter than the TTL.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>

namespace rtpc {

class RelayReplyCache {
 public:
  static constexpr uint64_t kDefaultTtlMs = 35'000;

  // max_entries is rounded up to a power of two; the index gets twice that.
  RelayReplyCache(size_t arena_bytes, size_t max_entries, uint64_t ttl_ms = kDefaultTtlMs);

  // The cached reply for this cookie, valid until the next insert/expire.
  std::optional<std::string_view> find(std::string_view cookie, uint64_t now_ms) const;
  // Replaces nothing: a cookie already present keeps its first reply (the
  // caller only inserts after a miss). Returns false when the entry is too big.
  bool insert(std::string_view cookie, std::string_view reply, uint64_t now_ms);
  void expire(uint64_t now_ms);
  void clear();

  size_t size() const { return count_; }

 private:
  struct Header {
    uint64_t time_ms;
    uint64_t hash;
    uint32_t cookie_len;  // kWrapMarker: the rest of the arena is unused
    uint32_t reply_len;
  };
  struct Slot {
    uint64_t hash;
    uint32_t offset_plus_one;  // 0 = empty
    uint32_t unused;
  };
  static constexpr uint32_t kWrapMarker = UINT32_MAX;

  static uint64_t hashOf(std::string_view s);
  static size_t entryBytes(size_t cookie_len, size_t reply_len);
  const Header& headerAt(size_t offset) const;
  std::string_view cookieAt(size_t offset) const;
  size_t findSlot(std::string_view cookie, uint64_t hash) const;  // index_.size() = none
  void indexInsert(uint64_t hash, size_t offset);
  void indexErase(uint64_t hash, size_t offset);
  void normalizeTail();
  void popOldest();

  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  // Neither block is touched up front: the arena is written before it is
  // read and calloc'ed zero pages come from the kernel lazily, so a relay
  // starts in milliseconds whatever the cache size.
  size_t arena_bytes_;
  std::unique_ptr<uint64_t[]> arena_;  // uint64_t for alignment of headers
  size_t head_ = 0;  // next write offset
  size_t tail_ = 0;  // oldest entry (or a wrap point)
  size_t count_ = 0;
  size_t max_entries_;
  size_t index_size_;
  std::unique_ptr<Slot, FreeDeleter> index_;
  size_t mask_;
  uint64_t ttl_ms_;
};

}  // namespace rtpc
