#pragma once
// ShmSegment: the supervisor's shared-memory segment (layout in
// shared/shm_layout.h), and the helpers that publish into it and take
// snapshots out of it.
//
// Mapping: a plain boost::interprocess::shared_memory_object + mapped_region,
// not managed_shared_memory. The layout is fixed and computed by us, so a
// managed heap would only add what we must avoid: its allocator takes an
// interprocess mutex inside the segment, and a worker SIGKILLed while holding
// it would block every other process. Our only allocation (session-table
// blocks from the arena) is done by the supervisor alone.
//
// Memory: /dev/shm is tmpfs, whose pages exist only once touched or
// fallocated, so the segment is sized generously (every slot, an arena for
// tables of every slot) and costs only what is used. Measured with
// SegmentPlan::forConfig for one cluster (64 slots, 1M-call tables: 2099 MiB
// of address space): 260 KiB of /dev/shm after create() (the header page and
// the first page of each slot, which every scan reads); +304 KiB per allocated
// slot (its member records); +32 MiB for a 1,048,576-call table block; back
// to 260 KiB after freeCluster (ShmSegment.CreateIsSparseAndPagesFollowAllocation
// in tests/unit/shm_segment_test.cpp). A process's RSS counts only the pages it
// touched. Used ranges are fallocate()d when they are handed out, so a full
// /dev/shm is a clear error at allocation instead of a SIGBUS in a worker
// later; freed ranges are hole-punched back to the system.
//
// Arena allocation: first fit between the blocks that cluster records
// currently own (their table_offset/table_bytes). No separate free list exists
// to get out of step with the records: the records are the allocation state.
// O(slots log slots) per allocation, an admin operation.
//
// Threading: one writer per record part (see shm_layout.h). allocateCluster,
// freeCluster and recoverCluster are the supervisor's and must not run while
// the slot's worker is alive (except allocateCluster of an existing slot whose
// table size is unchanged, which changes nothing the worker uses).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config.h"
#include "shared/shm_layout.h"
#include "shared/status_snapshot.h"

namespace boost::interprocess {
class shared_memory_object;
class mapped_region;
}  // namespace boost::interprocess

namespace rtpc {

// Size of a session-table block for max_calls: SessionTable::bytesFor rounded
// up to kTableBlockAlignment. 0 if max_calls is invalid.
uint64_t tableBlockBytes(uint32_t max_calls);

struct SegmentPlan {
  uint32_t cluster_slots = kDefaultClusterSlots;  // 1..kMaxClusterSlots
  uint64_t arena_bytes = 0;                       // session-table arena

  // Room for every configured table, plus one table of the largest configured
  // size (at least the default 1,048,576 calls) per slot, so that a reload can
  // add clusters up to the slot count or resize each once without running
  // out. Address space only; see the memory note above.
  static SegmentPlan forConfig(const Config& config, uint32_t cluster_slots = kDefaultClusterSlots);
};

// What allocateCluster hands back.
struct ClusterSlot {
  uint32_t index = 0;
  uint32_t generation = 0;
  // true: the slot existed with the same table size and keeps its block (the
  // worker attaches and calls survive); false: a zeroed block (the worker
  // creates a new table).
  bool table_kept = false;
};

class ShmSegment {
 public:
  // Creates the segment `name` (a /dev/shm name, no '/'), removing a stale one
  // of that name first (a crashed run). nullptr with a message on failure.
  static std::unique_ptr<ShmSegment> create(const std::string& name, const SegmentPlan& plan,
                                            std::string& error);
  // Maps an existing segment read-write and checks its header (magic, layout
  // version, record sizes, total size against the real size).
  static std::unique_ptr<ShmSegment> open(const std::string& name, std::string& error);
  // Removes the name (mappings stay valid until unmapped). false if absent.
  static bool remove(const std::string& name);

  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  // The creator removes the name on destruction by default; a process that
  // only opened it never does. Only the creating pid removes, so a forked child
  // that runs destructors does not pull the segment from under its parent.
  void setRemoveOnDestroy(bool remove) { remove_on_destroy_ = remove; }

  const std::string& name() const { return name_; }
  // The private, validated copy of the header taken at create/open: every
  // offset, count and stride this object uses comes from it, never from the
  // shared mapping, which anything with write access to /dev/shm can scribble
  // on.
  const ShmHeader& header() const { return layout_; }
  uint32_t clusterSlots() const { return layout_.cluster_slots; }
  uint64_t totalBytes() const { return layout_.total_bytes; }

  // "" when `h` describes a segment of this binary's layout that is
  // `real_size` bytes long, else what is wrong. Pure; overflow-safe.
  static std::string checkHeader(const ShmHeader& h, uint64_t real_size);
  // True when [offset, offset + bytes) is a page-aligned, non-empty range
  // inside the arena of `layout`.
  static bool tableBlockValid(const ShmHeader& layout, uint64_t offset, uint64_t bytes);

  // Creator only (the supervisor, on a timer): compares the shared header and
  // every slot part with what this object allocated and rewrites what
  // differs (a scribbled segment is rebuilt from the private copy, never
  // trusted). Returns a description of what was rewritten ("" = intact):
  // "header", "slot N" items separated by ", ".
  std::string repair();

  // nullptr when out of range.
  ClusterRecord* cluster(uint32_t index);
  const ClusterRecord* cluster(uint32_t index) const;
  MemberRecord* member(uint32_t index, uint32_t member);
  const MemberRecord* member(uint32_t index, uint32_t member) const;
  // The session-table block of an allocated slot (nullptr, bytes = 0 if none).
  void* sessionMemory(uint32_t index, size_t& bytes);

  // Slot of the in-use cluster called `name`.
  std::optional<uint32_t> findCluster(std::string_view name) const;
  // Gives `name` a slot and a table block for max_calls. An existing slot of
  // that name is reused: same max_calls keeps the block, another size moves
  // it to a fresh zeroed block (old calls are lost: the table changed size).
  // Errors: bad name, no free slot, arena or /dev/shm full.
  std::optional<ClusterSlot> allocateCluster(std::string_view name, uint32_t max_calls,
                                             std::string& error);
  // Releases the slot and its block (pages returned). false if not in use.
  bool freeCluster(uint32_t index);
  // After the slot's worker was reaped: makes sequences a killed writer left
  // odd even again, so readers see its records as consistent. Returns how
  // many were reset.
  uint32_t recoverCluster(uint32_t index);

  uint64_t arenaUsedBytes() const;
  // Bytes of /dev/shm actually backing the segment (st_blocks), for tests and
  // diagnostics.
  uint64_t residentBytes() const;

 private:
  ShmSegment() = default;
  unsigned char* base() const { return base_; }
  int fd() const;
  bool reserveRange(uint64_t offset, uint64_t bytes, std::string& error);
  void zeroRange(uint64_t offset, uint64_t bytes);
  std::optional<uint64_t> findArenaGap(uint64_t bytes, uint32_t ignore_slot) const;

  // A slot's allocation as this object made it (creator) or validated it at
  // open (opener): the arena is managed from these, not from the records.
  struct SlotAllocation {
    bool in_use = false;
    uint32_t generation = 0;
    uint32_t max_calls = 0;
    uint64_t table_offset = 0;
    uint64_t table_bytes = 0;
    std::string name;
  };
  uint64_t recordOffset(uint32_t index) const {
    return layout_.clusters_offset + uint64_t{index} * layout_.cluster_stride;
  }
  void writeSlot(uint32_t index);  // the record's slot part from slots_[index]

  std::string name_;
  std::unique_ptr<boost::interprocess::shared_memory_object> shm_;
  std::unique_ptr<boost::interprocess::mapped_region> region_;
  unsigned char* base_ = nullptr;
  ShmHeader layout_{};
  std::vector<SlotAllocation> slots_;
  bool creator_ = false;
  bool remove_on_destroy_ = false;
  int creator_pid_ = 0;
};

// --- publishing (each writes one record under its seqlock) ---

// The live part of a member as the worker knows it; plain values so that
// shared/ does not depend on worker/.
struct MemberLiveStatus {
  AdminStatus status = AdminStatus::kActive;
  uint8_t health = 0;  // the worker's HealthState value
  bool online = false;
  std::optional<double> active_sessions;  // empty = UNKNOWN
  uint32_t bound_sessions = 0;
  double utilisation = 0.0;
  uint64_t rtt_us = 0;
  uint16_t capabilities = 0;
  bool stats_unsupported = false;
  uint64_t commands = 0;
  uint64_t timeouts = 0;
  uint64_t failovers = 0;
  uint64_t deferred_deletes = 0;
  RttHistogram rtt_histogram;
};

// The worker's counters (worker/cluster_worker.h WorkerCounters) plus the
// session table's size.
struct ClusterCounters {
  uint64_t commands = 0;
  uint64_t answered_locally = 0;
  uint64_t routed = 0;
  uint64_t created = 0;
  uint64_t broadcasts = 0;
  uint64_t failovers = 0;
  uint64_t parse_errors = 0;
  uint64_t cluster_errors = 0;
  uint64_t late_offers = 0;
  uint64_t tracked_calls = 0;
  uint64_t deleted_calls = 0;
  CommandTally tally;
};

// Worker side. Text longer than its field is cut (names are limited to
// kMaxNameBytes by the loader; addresses fit unless a host name exceeds DNS
// limits).
void publishMember(MemberRecord& record, const MemberConfig& config, const MemberLiveStatus& live);
void clearMember(MemberRecord& record);  // the member was removed
void publishCounters(ClusterRecord& record, const ClusterCounters& counters, uint64_t now_unix_ms);

// Supervisor side (slot part).
void publishClusterInfo(ClusterRecord& record, uint32_t config_index, const SocketAddress& control);
void publishWorker(ClusterRecord& record, int32_t pid, uint32_t restarts, uint64_t started_unix_ms);

// --- reading ---

// Seqlock copies of single records; false when no stable copy was obtained
// (the sequence stayed odd ~100 ms: a writer killed mid-write; impatient: a few
// spins only): `out` then holds a best-effort copy. MemberSnapshot::index is
// left to the caller; ClusterSnapshot::index is the record's config index.
bool readMember(const MemberRecord& record, MemberSnapshot& out, bool& in_use, bool patient = true);
bool readClusterSlot(const ClusterRecord& record, ClusterSnapshot& out, bool& in_use,
                     bool patient = true);
bool readCounters(const ClusterRecord& record, ClusterSnapshot& out, bool patient = true);

// Every in-use cluster (ordered by config index, then slot), each record read
// consistently; members in slot order. A cluster with a record that could not
// be read consistently has consistent = false.
StatusSnapshot takeSnapshot(const ShmSegment& segment);

}  // namespace rtpc
