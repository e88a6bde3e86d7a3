#pragma once
// The layout of the shared-memory segment: the one versioned definition every
// process that maps it agrees on (ARCHITECTURE.md "Shared memory").
//
//   [ShmHeader, padded to a page]
//   [ClusterRecord x cluster_slots, each padded to a page (cluster_stride)]
//   [table arena: session-table blocks, page aligned]
//
// Plain fixed-size structs, no pointers (the segment is mapped at a different
// address in every process): text is char[N] NUL-terminated, places are byte
// offsets from the start of the segment. Any change to these structs changes
// a static_assert below and must bump kShmLayoutVersion; ShmSegment::open()
// refuses a segment whose header disagrees, so a new binary never misreads a
// segment left by an old one.
//
// Who writes what (one writer per part, so a seqlock suffices):
// - ShmHeader: the creator (supervisor), once, before any other process maps
//   it; immutable afterwards.
// - ClusterRecord slot part (slot_seq): the supervisor only.
// - ClusterRecord counters part (counters_seq) and the MemberRecords: the
//   cluster's worker only (the supervisor clears them while no worker runs).
// - The session-table block: the worker (SessionTable's own crash rules).
//
// Why a seqlock rather than an interprocess mutex: readers (the supervisor
// answering `ls`, tests) must never stop or slow the worker, and a worker can
// be SIGKILLed at any instruction. A mutex held by a killed worker would stay
// locked (robust mutexes recover, but then the reader still has to decide
// what the half-written record means). With a seqlock the writer never waits
// on anybody; a reader copies the record and retries when the sequence was
// odd or changed during the copy, a bounded number of times. A writer killed
// mid-record leaves the sequence odd: readers then give up after the bound
// and flag the copy as inconsistent, and the supervisor resets the sequence
// (ShmSegment::recoverCluster) after reaping the worker, before the next one
// starts.
//
// Memory model: every field a reader copies while a writer may run is an
// atomic (numbers: std::atomic, lock-free and therefore address-free, i.e.
// valid across processes; text: std::atomic_ref<char>), accessed relaxed
// between the sequence fences. That is the data-race-free seqlock of
// H.-J. Boehm, "Can seqlocks get along with programming language memory
// models?" (MSPC 2012): writer = seq odd (relaxed), release fence, data
// (relaxed), seq even (release); reader = seq (acquire), data (relaxed),
// acquire fence, seq (relaxed) unchanged and even.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shared/address.h"
#include "shared/command_tally.h"
#include "shared/config.h"
#include "shared/rtt_histogram.h"
#include "shared/session_table.h"

namespace rtpc {

inline constexpr uint64_t kShmMagic = 0x314d485343505452ull;  // "RTPCSHM1" little-endian
// 2: answers by command type/result and by error code (ClusterRecord), rtt
//    histogram (MemberRecord).
// 3: names of up to 255 bytes (UTF-8 text), rtt histogram buckets up to 10 s.
inline constexpr uint32_t kShmLayoutVersion = 3;

inline constexpr size_t kShmPageBytes = 4096;
inline constexpr uint32_t kDefaultClusterSlots = 64;
inline constexpr uint32_t kMaxClusterSlots = 1024;

// Text field sizes, NUL included.
inline constexpr size_t kShmNameBytes = kMaxNameBytes + 1;  // cluster and member names
// A host name (<= 253 bytes by DNS rules) or IP literal, no port.
inline constexpr size_t kShmHostBytes = 256;
// SocketAddress::uri(): "udp6:[" + host + "]:65535", or "cunix:" + unix path.
inline constexpr size_t kShmUriBytes = 272;
static_assert(kShmUriBytes >= 6 + 253 + 7 + 1);
static_assert(kShmUriBytes >= 6 + kMaxUnixPathBytes + 1);
static_assert(kShmUriBytes >= kShmHostBytes && kShmUriBytes >= kShmNameBytes);  // the longest text field

// Session-table blocks start on a page: fallocate/hole punching work in pages
// and SessionTable wants cache-line alignment.
inline constexpr size_t kTableBlockAlignment = kShmPageBytes;
static_assert(kTableBlockAlignment % SessionTable::kRequiredAlignment == 0);

// Cross-process atomics must be lock-free (a lock-based atomic keeps its lock
// in the process, not in the segment).
static_assert(std::atomic<uint8_t>::is_always_lock_free);
static_assert(std::atomic<uint16_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<int32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<double>::is_always_lock_free);
static_assert(std::atomic_ref<char>::is_always_lock_free);

// Sequence counter of one record. Even = stable, odd = a write in progress.
class ShmSeqLock {
 public:
  void writeBegin() {
    seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
  }
  void writeEnd() { seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }

  uint32_t readBegin() const { return seq_.load(std::memory_order_acquire); }
  // True when the copy made since readBegin() returned `begin` is consistent.
  bool readValid(uint32_t begin) const {
    std::atomic_thread_fence(std::memory_order_acquire);
    return (begin & 1u) == 0 && seq_.load(std::memory_order_relaxed) == begin;
  }

  // Only when no writer can be running (it was reaped): makes an odd sequence
  // left by a killed writer even again. Returns true if it was odd.
  bool recover() {
    const uint32_t s = seq_.load(std::memory_order_relaxed);
    if ((s & 1u) == 0) return false;
    seq_.store(s + 1, std::memory_order_release);
    return true;
  }
  uint32_t raw() const { return seq_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint32_t> seq_{0};
};
static_assert(sizeof(ShmSeqLock) == 4);

// Fixed at creation. Plain integers: nobody writes them after the magic.
struct alignas(64) ShmHeader {
  uint64_t magic;               // written last by the creator
  uint32_t layout_version;
  uint32_t header_bytes;        // sizeof(ShmHeader)
  uint64_t total_bytes;         // size of the whole segment
  int32_t creator_pid;
  uint32_t cluster_slots;
  uint64_t created_unix_ms;
  uint32_t cluster_record_bytes;  // sizeof(ClusterRecord)
  uint32_t member_record_bytes;   // sizeof(MemberRecord)
  uint32_t members_per_cluster;   // kMaxMembersPerCluster
  uint32_t reserved0;
  uint64_t clusters_offset;     // first ClusterRecord
  uint64_t cluster_stride;      // bytes between ClusterRecords (page multiple)
  uint64_t arena_offset;        // session-table arena (page aligned)
  uint64_t arena_bytes;
};
static_assert(std::is_trivially_copyable_v<ShmHeader>);
static_assert(std::is_standard_layout_v<ShmHeader>);
static_assert(sizeof(ShmHeader) == 128, "layout change: bump kShmLayoutVersion");
static_assert(offsetof(ShmHeader, magic) == 0 && offsetof(ShmHeader, layout_version) == 8 &&
              offsetof(ShmHeader, total_bytes) == 16);

// One member of a cluster, published by the worker.
struct alignas(64) MemberRecord {
  ShmSeqLock seq;
  std::atomic<uint32_t> in_use;
  std::atomic<uint32_t> weight;
  std::atomic<uint32_t> capacity;
  std::atomic<uint8_t> admin_status;       // AdminStatus
  std::atomic<uint8_t> online;             // health verdict, 0/1
  std::atomic<uint8_t> health;             // the worker's HealthState value
  std::atomic<uint8_t> active_known;       // 0 = active sessions UNKNOWN
  std::atomic<uint8_t> stats_unsupported;  // 0/1
  std::atomic<uint8_t> reserved0;
  std::atomic<uint16_t> capabilities;      // probed VF bits
  std::atomic<uint32_t> bound_sessions;
  std::atomic<uint32_t> reserved1;
  std::atomic<double> active_sessions;     // smoothed heartbeat value
  std::atomic<double> utilisation;         // 0..1
  std::atomic<uint64_t> rtt_us;
  std::atomic<uint64_t> commands;
  std::atomic<uint64_t> timeouts;
  std::atomic<uint64_t> failovers;
  std::atomic<uint64_t> deferred_deletes;
  char name[kShmNameBytes];
  char uri[kShmUriBytes];                  // SocketAddress::uri()
  char wan_address[kShmHostBytes];         // empty = not set
  char lan_address[kShmHostBytes];
  char cmd_out_address[kShmHostBytes];
  // Round-trip times (RttHistogram): per-bucket counts, not cumulative.
  std::atomic<uint64_t> rtt_buckets[RttHistogram::kBuckets];
  std::atomic<uint64_t> rtt_sum_us;
};
static_assert(std::is_standard_layout_v<MemberRecord>);
static_assert(sizeof(MemberRecord) == 1536, "layout change: bump kShmLayoutVersion");
static_assert(offsetof(MemberRecord, name) == 88);

// One cluster slot. The slot part belongs to the supervisor, the counters part
// and the members to the cluster's worker.
struct alignas(64) ClusterRecord {
  // --- slot part (slot_seq; supervisor) ---
  ShmSeqLock slot_seq;
  std::atomic<uint32_t> in_use;
  std::atomic<uint32_t> generation;        // +1 whenever the slot changes hands
  std::atomic<uint32_t> config_index;      // position in the config ("Cluster: #N")
  std::atomic<int32_t> worker_pid;         // 0 = none running
  std::atomic<uint32_t> restarts;
  std::atomic<uint64_t> worker_started_unix_ms;
  std::atomic<uint64_t> table_offset;      // from the start of the segment; 0 = no block
  std::atomic<uint64_t> table_bytes;
  std::atomic<uint32_t> table_max_calls;
  std::atomic<uint32_t> reserved0;
  char name[kShmNameBytes];
  char control_uri[kShmUriBytes];

  // --- counters part (counters_seq; worker) ---
  alignas(64) ShmSeqLock counters_seq;
  std::atomic<uint32_t> reserved1;
  std::atomic<uint64_t> commands;
  std::atomic<uint64_t> answered_locally;
  std::atomic<uint64_t> routed;
  std::atomic<uint64_t> created;
  std::atomic<uint64_t> broadcasts;
  std::atomic<uint64_t> failovers;
  std::atomic<uint64_t> parse_errors;
  std::atomic<uint64_t> cluster_errors;
  std::atomic<uint64_t> late_offers;
  std::atomic<uint64_t> tracked_calls;     // live calls in the session table
  std::atomic<uint64_t> deleted_calls;     // recently deleted, still routable
  std::atomic<uint64_t> published_unix_ms; // when the worker last published
  // Answers sent (CommandTally): [row][CommandResult], then by error slot.
  std::atomic<uint64_t> answers_by_type[kTallyRows][kCommandResultCount];
  std::atomic<uint64_t> answers_by_error[kErrorSlots];

  // --- members (each its own seqlock; worker) ---
  MemberRecord members[kMaxMembersPerCluster];
};
static_assert(std::is_standard_layout_v<ClusterRecord>);
static_assert(offsetof(ClusterRecord, counters_seq) == 640);
static_assert(offsetof(ClusterRecord, members) == 1856);
static_assert(sizeof(ClusterRecord) == 1856 + kMaxMembersPerCluster * sizeof(MemberRecord),
              "layout change: bump kShmLayoutVersion");

inline constexpr uint64_t shmRoundUp(uint64_t value, uint64_t to) { return (value + to - 1) / to * to; }
inline constexpr uint64_t kShmClustersOffset = shmRoundUp(sizeof(ShmHeader), kShmPageBytes);
inline constexpr uint64_t kShmClusterStride = shmRoundUp(sizeof(ClusterRecord), kShmPageBytes);

}  // namespace rtpc
