#pragma once
// ReplyCache: the upstream UDP reply cache (PROTOCOL.md section 7,
// ARCHITECTURE.md "One command, end to end" step 2). The signalling
// retransmits a command with the same cookie after 1 s when it saw no answer;
// the retransmission must get the first answer again, byte for byte, and must
// never run the command a second time. Keyed by client address + cookie: two
// Kamailio instances may well pick the same cookie.
//
// Pure: no sockets, the time is passed in (any monotonic nanosecond clock).
//
// Memory is fixed at construction and nothing is allocated per entry:
//  - a ring log of records (header, client key, cookie, reply) in arrival
//    order. Appending overwrites the oldest records, so FIFO aging needs no
//    bookkeeping, and since records are appended with the current time the
//    oldest record is also the first to expire;
//  - an open-addressed index (linear probing, backward-shift deletion) of
//    (hash, log position). Log positions only grow, so a record that was
//    overwritten is recognised by its position falling behind the ring's
//    tail; evicting a record removes its index slot, so the index never holds
//    stale slots.
// A command is recorded "in flight" when it arrives, with room for a short
// reply (kInlineReplyBytes). When the caller hands back the ticket begin()
// gave it and the reply fits that room (U, L, D, V answers do), the reply is
// written into the same record: one record, one index slot, no second hash
// lookup. A longer reply gets a second, "answered", record and the index then
// points at it. With Kamailio-sized keys (20-byte cookie, IPv4 client) a
// command takes about 136 bytes, so the default 64 MiB hold about 490,000
// commands: 30 s of retention at about 16,000 commands/s. Faster than that,
// entries leave before the retention and evictedEarly() counts them: the sign
// that the cache is too small. The index takes bytes/4 more (16 bytes per 64
// bytes of ring).
//
// Lookups always compare the full key, so a hash collision can never answer
// one client with another client's reply. The hash is seeded per instance.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

namespace rtpc {

class ReplyCache {
 public:
  static constexpr size_t kDefaultBytes = size_t{64} << 20;
  static constexpr uint64_t kDefaultRetentionNs = 30'000'000'000ULL;
  // Longest reply body kept. rtpproxy's replies fit in 1024 bytes; the
  // cluster's merged answers fit in a ReplyBuffer (2048).
  static constexpr size_t kMaxReplyBytes = 4096;
  static constexpr size_t kMaxClientKeyBytes = 64;
  static constexpr size_t kMaxCookieBytes = 65535;
  static constexpr size_t kMinBytes = 4096;
  // Room kept in the in-flight record for the reply ("35010 192.0.2.1" and
  // the like): most replies then complete in place.
  static constexpr size_t kInlineReplyBytes = 64;
  static constexpr uint64_t kNoTicket = UINT64_MAX;

  enum class State : uint8_t {
    kNew,          // not seen before: now recorded as in flight, run the command
    kInFlight,     // the same command is being executed: drop the duplicate
    kAnswered,     // answered before: `reply` is the stored reply
    kUncacheable,  // key too long to store: run the command, nothing recorded
  };
  struct Lookup {
    State state = State::kNew;
    std::string_view reply;  // kAnswered: valid until the next non-const call
    uint64_t ticket = kNoTicket;  // kNew from begin(): the in-flight record, for complete()
  };

  // `bytes` is the ring size (at least kMinBytes, rounded down to 8); the
  // index adds bytes/4. `seed` 0 picks a random one.
  explicit ReplyCache(size_t bytes = kDefaultBytes, uint64_t retention_ns = kDefaultRetentionNs,
                      uint64_t seed = 0);
  ReplyCache(const ReplyCache&) = delete;
  ReplyCache& operator=(const ReplyCache&) = delete;

  // Looks the command up; on a miss records it as in flight (kNew).
  // `client` is opaque bytes that identify the sender (address family, port,
  // address), at most kMaxClientKeyBytes.
  Lookup begin(std::string_view client, std::string_view cookie, uint64_t now_ns);
  // Stores the reply of a command (normally one begin() returned kNew for).
  // Returns false when the reply is too long to keep (longer than
  // kMaxReplyBytes or an eighth of the ring); the in-flight mark is then
  // dropped, so a retransmission runs the command again rather than being
  // dropped until the retention ends.
  bool complete(std::string_view client, std::string_view cookie, std::string_view reply,
                uint64_t now_ns);
  // The same, with the ticket begin() returned: the reply goes into the
  // in-flight record when it fits (no lookup); otherwise as above.
  bool complete(uint64_t ticket, std::string_view client, std::string_view cookie,
                std::string_view reply, uint64_t now_ns);
  // complete() calls that stored the reply in the in-flight record.
  uint64_t completedInPlace() const { return completed_in_place_; }
  // Forgets an in-flight command (its client is gone, or it got no answer), so
  // that a retransmission runs it again. An answered entry is left alone.
  void cancel(std::string_view client, std::string_view cookie);
  // Starts loading the index slot a later begin() of this key reads (a batch
  // of datagrams then takes its cache misses side by side).
  void prefetch(std::string_view client, std::string_view cookie) const;
  // Read-only lookup; never records anything (kNew means "not present").
  Lookup find(std::string_view client, std::string_view cookie, uint64_t now_ns) const;
  // Drops every entry older than the retention. begin() and complete() call
  // it, so calling it is only needed to release a quiet cache.
  void expire(uint64_t now_ns);

  size_t size() const { return live_; }  // entries reachable through the index
  size_t capacityBytes() const { return capacity_; }
  size_t indexSlots() const { return mask_ + 1; }
  uint64_t retentionNs() const { return retention_ns_; }
  // Entries pushed out by newer ones before the retention passed.
  uint64_t evictedEarly() const { return evicted_early_; }
  // complete() calls refused for an over-long reply.
  uint64_t rejectedTooLong() const { return rejected_too_long_; }

 private:
  // kCancelled: an in-flight record whose index slot cancel() removed; its
  // ticket must no longer complete it.
  enum class Kind : uint8_t { kInFlight = 1, kAnswered = 2, kWrap = 3, kCancelled = 4 };
  struct Header {
    uint64_t time_ns;
    uint64_t hash;
    uint32_t size;  // the whole record, a multiple of 8
    uint32_t reply_length;
    uint16_t cookie_length;
    uint8_t key_length;
    Kind kind;
    uint32_t unused;
  };
  struct Slot {
    uint64_t hash;
    uint64_t position_plus_one;  // 0 = empty
  };
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  static constexpr size_t kNotFound = SIZE_MAX;

  uint64_t hashKey(std::string_view client, std::string_view cookie) const;
  static size_t recordBytes(size_t key_length, size_t cookie_length, size_t reply_length);
  Header headerAt(uint64_t position) const;
  const char* bytesAt(uint64_t position) const { return ring_.get() + position % capacity_; }
  size_t findSlot(uint64_t hash, std::string_view client, std::string_view cookie) const;
  size_t findSlotByPosition(uint64_t hash, uint64_t position) const;
  void insertSlot(uint64_t hash, uint64_t position);
  void eraseSlot(size_t index);
  // Writes a record at the head, evicting the oldest ones to make room;
  // returns its log position.
  uint64_t append(Kind kind, uint64_t hash, std::string_view client, std::string_view cookie,
                  std::string_view reply, size_t reserve, uint64_t now_ns);
  void setKind(uint64_t position, Kind kind);
  void popOldest(uint64_t now_ns);
  Lookup lookupAt(size_t slot, uint64_t now_ns) const;

  size_t capacity_;
  uint64_t retention_ns_;
  uint64_t seed_;
  size_t max_record_bytes_;
  std::unique_ptr<char[], FreeDeleter> ring_;
  std::unique_ptr<Slot[], FreeDeleter> slots_;
  size_t mask_;
  size_t max_live_;
  // Log positions: [tail_, head_) holds records; position p lives at byte
  // p % capacity_ of the ring.
  uint64_t head_ = 0;
  uint64_t tail_ = 0;
  size_t live_ = 0;
  uint64_t evicted_early_ = 0;
  uint64_t rejected_too_long_ = 0;
  uint64_t completed_in_place_ = 0;
};

}  // namespace rtpc
