#include "shared/shm_segment.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <chrono>
#include <cstring>
#include <new>
#include <vector>

#include "shared/time_util.h"

namespace rtpc {

namespace bip = boost::interprocess;

namespace {

// Reader retry policy. A live writer keeps a record odd for about a
// microsecond, so a reader normally succeeds at once; under a writer that
// republishes back to back it keeps retrying while the sequence moves. It
// gives up (and flags the copy) only when the sequence stays on one odd value
// for kStuckLimit, which means the writer died mid-write (or was descheduled
// that long on a loaded machine), or after kReadBudget in total. An impatient
// read (the same cluster already had a stuck record: its worker is presumed
// dead) gives up after the spins, so a snapshot of a dead worker's 257
// records costs one kStuckLimit, not 257.
constexpr auto kStuckLimit = std::chrono::milliseconds(100);
constexpr auto kReadBudget = std::chrono::milliseconds(500);
constexpr int kSpinsBeforeYield = 16;


bool validName(const std::string& name, std::string& error) {
  if (name.empty() || name.size() > 200 || name.find('/') != std::string::npos) {
    error = "shared memory name \"" + name + "\" must be 1..200 characters without '/'";
    return false;
  }
  return true;
}

void storeText(char* dst, size_t capacity, std::string_view text) {
  const size_t n = std::min(text.size(), capacity - 1);
  for (size_t i = 0; i < n; ++i) std::atomic_ref<char>(dst[i]).store(text[i], std::memory_order_relaxed);
  std::atomic_ref<char>(dst[n]).store('\0', std::memory_order_relaxed);
}

void loadText(const char* src, size_t capacity, std::string& out) {
  char copy[kShmUriBytes];
  size_t n = 0;
  for (; n < capacity && n < sizeof copy; ++n) {
    copy[n] = std::atomic_ref<char>(const_cast<char&>(src[n])).load(std::memory_order_relaxed);
    if (copy[n] == '\0') break;
  }
  out.assign(copy, n);
}

bool textEquals(const char* field, size_t capacity, std::string_view text) {
  std::string stored;
  loadText(field, capacity, stored);
  return stored == text;
}

template <typename Copy>
bool readConsistent(const ShmSeqLock& lock, bool patient, Copy&& copy) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point start{}, stuck_since{};
  uint32_t last = 0;
  for (int attempt = 0;; ++attempt) {
    const uint32_t begin = lock.readBegin();
    if ((begin & 1u) == 0) {
      copy();
      if (lock.readValid(begin)) return true;
    }
    if (attempt < kSpinsBeforeYield) {
      last = begin;
      continue;
    }
    if (!patient) break;
    // Slow path only: no clock reads while copies succeed quickly.
    const Clock::time_point now = Clock::now();
    if (attempt == kSpinsBeforeYield) start = now;
    if ((begin & 1u) == 0 || begin != last || attempt == kSpinsBeforeYield) stuck_since = now;
    if (now - stuck_since >= kStuckLimit || now - start >= kReadBudget) break;
    last = begin;
    sched_yield();
  }
  copy();  // best effort; every field is an atomic, so this is merely stale
  return false;
}

constexpr auto kRelaxed = std::memory_order_relaxed;

SocketAddress addressFromUri(const std::string& uri) {
  AddressResult parsed = parseAddressUri(uri, Transport::kUdp, 0);
  if (parsed.address) return *parsed.address;
  SocketAddress fallback;  // cut or foreign text: keep it visible rather than lose it
  fallback.host = uri;
  return fallback;
}

}  // namespace

uint64_t tableBlockBytes(uint32_t max_calls) {
  const size_t bytes = SessionTable::bytesFor(max_calls);
  return bytes == 0 ? 0 : shmRoundUp(bytes, kTableBlockAlignment);
}

SegmentPlan SegmentPlan::forConfig(const Config& config, uint32_t cluster_slots) {
  SegmentPlan plan;
  plan.cluster_slots = cluster_slots;
  uint64_t largest = tableBlockBytes(ClusterTuning{}.session_table_size);
  uint64_t configured = 0;
  for (const ClusterConfig& cluster : config.clusters) {
    const uint64_t bytes = tableBlockBytes(std::max<uint32_t>(cluster.tuning.session_table_size, 16));
    configured += bytes;
    largest = std::max(largest, bytes);
  }
  plan.arena_bytes = configured + uint64_t{cluster_slots} * largest;
  return plan;
}

// --- ShmSegment ---

ShmSegment::~ShmSegment() {
  region_.reset();
  shm_.reset();
  if (remove_on_destroy_ && creator_pid_ == ::getpid()) remove(name_);
}

bool ShmSegment::remove(const std::string& name) {
  try {
    return bip::shared_memory_object::remove(name.c_str());
  } catch (const std::exception&) {
    return false;
  }
}

std::unique_ptr<ShmSegment> ShmSegment::create(const std::string& name, const SegmentPlan& plan,
                                               std::string& error) {
  if (!validName(name, error)) return nullptr;
  if (plan.cluster_slots == 0 || plan.cluster_slots > kMaxClusterSlots) {
    error = "cluster slots must be 1.." + std::to_string(kMaxClusterSlots) + ", got " +
            std::to_string(plan.cluster_slots);
    return nullptr;
  }
  const uint64_t arena_offset =
      shmRoundUp(kShmClustersOffset + uint64_t{plan.cluster_slots} * kShmClusterStride, kShmPageBytes);
  const uint64_t arena_bytes = shmRoundUp(plan.arena_bytes, kShmPageBytes);
  const uint64_t total = arena_offset + arena_bytes;

  std::unique_ptr<ShmSegment> seg(new ShmSegment());
  seg->name_ = name;
  try {
    // A segment of this name is left over from a run that did not exit
    // cleanly (the pid file guarantees no live instance owns it).
    bip::shared_memory_object::remove(name.c_str());
    seg->shm_ = std::make_unique<bip::shared_memory_object>(bip::create_only, name.c_str(),
                                                            bip::read_write, bip::permissions(0600));
    // From here on the name is ours: remove it again if setting up fails.
    seg->remove_on_destroy_ = true;
    seg->creator_pid_ = ::getpid();
    seg->shm_->truncate(static_cast<bip::offset_t>(total));
    seg->region_ = std::make_unique<bip::mapped_region>(*seg->shm_, bip::read_write);
  } catch (const std::exception& e) {
    error = "cannot create shared memory \"" + name + "\" (" + std::to_string(total) +
            " bytes): " + e.what();
    return nullptr;
  }
  seg->base_ = static_cast<unsigned char*>(seg->region_->get_address());
  if (!seg->reserveRange(0, kShmClustersOffset, error)) return nullptr;
  // The first page of each slot is read by every scan (in_use), and a read
  // fault on a tmpfs hole allocates the page anyway: reserve them up front so
  // a full /dev/shm shows here, not as a SIGBUS in a reader.
  for (uint32_t i = 0; i < plan.cluster_slots; ++i) {
    if (!seg->reserveRange(kShmClustersOffset + uint64_t{i} * kShmClusterStride, kShmPageBytes, error))
      return nullptr;
  }

  seg->creator_ = true;
  seg->slots_.resize(plan.cluster_slots);
  auto* h = new (seg->base_) ShmHeader{};
  h->layout_version = kShmLayoutVersion;
  h->header_bytes = sizeof(ShmHeader);
  h->total_bytes = total;
  h->creator_pid = ::getpid();
  h->cluster_slots = plan.cluster_slots;
  h->created_unix_ms = unixNowMs();
  h->cluster_record_bytes = sizeof(ClusterRecord);
  h->member_record_bytes = sizeof(MemberRecord);
  h->members_per_cluster = kMaxMembersPerCluster;
  h->clusters_offset = kShmClustersOffset;
  h->cluster_stride = kShmClusterStride;
  h->arena_offset = arena_offset;
  h->arena_bytes = arena_bytes;
  // Cluster records need no construction: fresh tmpfs pages are zero, which
  // is every atomic's zero value and "slot free". Magic last, so an opener
  // never accepts a half-written header.
  std::atomic_thread_fence(std::memory_order_release);
  std::atomic_ref<uint64_t>(h->magic).store(kShmMagic, std::memory_order_release);
  std::memcpy(&seg->layout_, h, sizeof(ShmHeader));
  seg->layout_.magic = kShmMagic;
  return seg;
}

std::unique_ptr<ShmSegment> ShmSegment::open(const std::string& name, std::string& error) {
  if (!validName(name, error)) return nullptr;
  std::unique_ptr<ShmSegment> seg(new ShmSegment());
  seg->name_ = name;
  bip::offset_t size = 0;
  try {
    seg->shm_ = std::make_unique<bip::shared_memory_object>(bip::open_only, name.c_str(), bip::read_write);
    if (!seg->shm_->get_size(size)) size = 0;
    if (size < static_cast<bip::offset_t>(sizeof(ShmHeader))) {
      error = "shared memory \"" + name + "\" is too small for a header (" + std::to_string(size) +
              " bytes)";
      return nullptr;
    }
    seg->region_ = std::make_unique<bip::mapped_region>(*seg->shm_, bip::read_write);
  } catch (const std::exception& e) {
    error = "cannot open shared memory \"" + name + "\": " + e.what();
    return nullptr;
  }
  seg->base_ = static_cast<unsigned char*>(seg->region_->get_address());
  // One copy, checked and used from then on: a header that changes under us
  // cannot pass the check with one value and be used with another.
  std::memcpy(&seg->layout_, seg->base_, sizeof(ShmHeader));
  seg->layout_.magic = std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(seg->base_)).load(std::memory_order_acquire);
  const uint64_t mapped = std::min<uint64_t>(static_cast<uint64_t>(size), seg->region_->get_size());
  const std::string why = checkHeader(seg->layout_, mapped);
  if (!why.empty()) {
    error = "shared memory \"" + name + "\": " + why;
    return nullptr;
  }
  // The allocations as the records say, each block checked against the arena.
  seg->slots_.resize(seg->layout_.cluster_slots);
  for (uint32_t i = 0; i < seg->layout_.cluster_slots; ++i) {
    const ClusterRecord& c = *seg->cluster(i);
    SlotAllocation& a = seg->slots_[i];
    a.in_use = c.in_use.load(kRelaxed) != 0;
    if (!a.in_use) continue;
    a.generation = c.generation.load(kRelaxed);
    a.max_calls = c.table_max_calls.load(kRelaxed);
    const uint64_t offset = c.table_offset.load(kRelaxed);
    const uint64_t bytes = c.table_bytes.load(kRelaxed);
    if (tableBlockValid(seg->layout_, offset, bytes)) {
      a.table_offset = offset;
      a.table_bytes = bytes;
    }
    loadText(c.name, sizeof c.name, a.name);
  }
  return seg;
}

std::string ShmSegment::checkHeader(const ShmHeader& h, uint64_t real_size) {
  if (h.magic != kShmMagic) return "bad magic (not an rtp_cluster segment, or its creator died while creating it)";
  if (h.layout_version != kShmLayoutVersion) {
    return "layout version " + std::to_string(h.layout_version) + ", this binary reads " +
           std::to_string(kShmLayoutVersion) + " (segment of another rtp_cluster version?)";
  }
  if (h.header_bytes != sizeof(ShmHeader) || h.cluster_record_bytes != sizeof(ClusterRecord) ||
      h.member_record_bytes != sizeof(MemberRecord) || h.members_per_cluster != kMaxMembersPerCluster ||
      h.clusters_offset != kShmClustersOffset || h.cluster_stride != kShmClusterStride) {
    return "record sizes differ from this binary's layout";
  }
  if (h.total_bytes != real_size) {
    return "size is " + std::to_string(real_size) + " bytes, header says " + std::to_string(h.total_bytes);
  }
  if (h.cluster_slots == 0 || h.cluster_slots > kMaxClusterSlots) return "inconsistent header (slots, arena)";
  // Slots are at most kMaxClusterSlots and the stride is fixed: no overflow.
  const uint64_t records_end = h.clusters_offset + uint64_t{h.cluster_slots} * h.cluster_stride;
  if (h.arena_offset < records_end || h.arena_offset % kShmPageBytes != 0 || h.arena_offset > h.total_bytes ||
      h.arena_bytes != h.total_bytes - h.arena_offset) {
    return "inconsistent header (slots, arena)";
  }
  return {};
}

bool ShmSegment::tableBlockValid(const ShmHeader& layout, uint64_t offset, uint64_t bytes) {
  return bytes != 0 && offset >= layout.arena_offset && offset % kTableBlockAlignment == 0 &&
         offset <= layout.total_bytes && bytes <= layout.total_bytes - offset;
}

int ShmSegment::fd() const { return shm_->get_mapping_handle().handle; }

bool ShmSegment::reserveRange(uint64_t offset, uint64_t bytes, std::string& error) {
  const int rc = ::posix_fallocate(fd(), static_cast<off_t>(offset), static_cast<off_t>(bytes));
  if (rc != 0) {
    error = "shared memory \"" + name_ + "\": cannot reserve " + std::to_string(bytes) +
            " bytes: " + std::strerror(rc);
    return false;
  }
  return true;
}

void ShmSegment::zeroRange(uint64_t offset, uint64_t bytes) {
  if (bytes == 0) return;
  // A hole reads back as zeros and gives the pages back to the system.
  if (::fallocate(fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(bytes)) != 0) {
    std::memset(base_ + offset, 0, bytes);
  }
}

ClusterRecord* ShmSegment::cluster(uint32_t index) {
  if (index >= layout_.cluster_slots) return nullptr;
  return std::launder(reinterpret_cast<ClusterRecord*>(base_ + recordOffset(index)));
}

const ClusterRecord* ShmSegment::cluster(uint32_t index) const {
  return const_cast<ShmSegment*>(this)->cluster(index);
}

MemberRecord* ShmSegment::member(uint32_t index, uint32_t member) {
  ClusterRecord* c = cluster(index);
  if (c == nullptr || member >= kMaxMembersPerCluster) return nullptr;
  return &c->members[member];
}

const MemberRecord* ShmSegment::member(uint32_t index, uint32_t member) const {
  return const_cast<ShmSegment*>(this)->member(index, member);
}

void* ShmSegment::sessionMemory(uint32_t index, size_t& bytes) {
  bytes = 0;
  if (index >= slots_.size()) return nullptr;
  const SlotAllocation& a = slots_[index];
  if (!a.in_use || !tableBlockValid(layout_, a.table_offset, a.table_bytes)) return nullptr;
  bytes = a.table_bytes;
  return base_ + a.table_offset;
}

std::optional<uint32_t> ShmSegment::findCluster(std::string_view name) const {
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].in_use && slots_[i].name == name) return i;
  }
  return std::nullopt;
}

uint64_t ShmSegment::arenaUsedBytes() const {
  uint64_t used = 0;
  for (const SlotAllocation& a : slots_) {
    if (a.in_use) used += a.table_bytes;
  }
  return used;
}

uint64_t ShmSegment::residentBytes() const {
  struct stat st {};
  if (::fstat(fd(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::optional<uint64_t> ShmSegment::findArenaGap(uint64_t bytes, uint32_t ignore_slot) const {
  struct Block {
    uint64_t offset, bytes;
  };
  std::vector<Block> used;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    const SlotAllocation& a = slots_[i];
    if (i == ignore_slot || !a.in_use || a.table_bytes == 0) continue;
    used.push_back({a.table_offset, a.table_bytes});
  }
  std::sort(used.begin(), used.end(), [](const Block& a, const Block& b) { return a.offset < b.offset; });
  uint64_t cursor = layout_.arena_offset;
  for (const Block& b : used) {
    if (b.offset >= cursor && b.offset - cursor >= bytes) return cursor;
    cursor = std::max(cursor, b.offset + b.bytes);
  }
  if (layout_.total_bytes - cursor >= bytes) return cursor;
  return std::nullopt;
}

void ShmSegment::writeSlot(uint32_t index) {
  ClusterRecord& c = *cluster(index);
  const SlotAllocation& a = slots_[index];
  c.slot_seq.recover();  // only this process writes the slot part: odd = scribbled
  c.slot_seq.writeBegin();
  c.in_use.store(a.in_use ? 1 : 0, kRelaxed);
  c.generation.store(a.generation, kRelaxed);
  c.table_offset.store(a.table_offset, kRelaxed);
  c.table_bytes.store(a.table_bytes, kRelaxed);
  c.table_max_calls.store(a.max_calls, kRelaxed);
  storeText(c.name, sizeof c.name, a.name);
  c.slot_seq.writeEnd();
}

std::string ShmSegment::repair() {
  if (!creator_) return {};
  std::string repaired;
  const auto add = [&repaired](const std::string& what) { repaired += (repaired.empty() ? "" : ", ") + what; };
  auto* shared = reinterpret_cast<ShmHeader*>(base_);
  if (std::memcmp(shared, &layout_, sizeof(ShmHeader)) != 0) {
    ShmHeader copy = layout_;
    copy.magic = 0;
    std::atomic_ref<uint64_t>(shared->magic).store(0, std::memory_order_relaxed);
    std::memcpy(reinterpret_cast<unsigned char*>(shared) + sizeof(uint64_t),
                reinterpret_cast<const unsigned char*>(&copy) + sizeof(uint64_t), sizeof(ShmHeader) - sizeof(uint64_t));
    std::atomic_thread_fence(std::memory_order_release);
    std::atomic_ref<uint64_t>(shared->magic).store(kShmMagic, std::memory_order_release);
    add("header");
  }
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    const ClusterRecord& c = *cluster(i);
    const SlotAllocation& a = slots_[i];
    const bool same = (c.slot_seq.raw() & 1u) == 0 && (c.in_use.load(kRelaxed) != 0) == a.in_use &&
                      c.generation.load(kRelaxed) == a.generation && c.table_offset.load(kRelaxed) == a.table_offset &&
                      c.table_bytes.load(kRelaxed) == a.table_bytes &&
                      c.table_max_calls.load(kRelaxed) == a.max_calls && textEquals(c.name, sizeof c.name, a.name);
    if (same) continue;
    writeSlot(i);
    add("slot " + std::to_string(i));
  }
  return repaired;
}

std::optional<ClusterSlot> ShmSegment::allocateCluster(std::string_view name, uint32_t max_calls,
                                                       std::string& error) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    error = "cluster name must be 1.." + std::to_string(kMaxNameBytes) + " bytes";
    return std::nullopt;
  }
  const uint64_t block = tableBlockBytes(max_calls);
  if (block == 0) {
    error = "session table size " + std::to_string(max_calls) + " is out of range";
    return std::nullopt;
  }

  if (!creator_) {
    error = "only the creator of shared memory \"" + name_ + "\" allocates in it";
    return std::nullopt;
  }
  std::optional<uint32_t> existing = findCluster(name);
  if (existing) {
    const SlotAllocation& a = slots_[*existing];
    if (a.max_calls == max_calls && a.table_bytes == block) return ClusterSlot{*existing, a.generation, true};
  }

  uint32_t index = 0;
  if (existing) {
    index = *existing;
  } else {
    bool found = false;
    for (uint32_t i = 0; i < slots_.size() && !found; ++i) {
      if (!slots_[i].in_use) {
        index = i;
        found = true;
      }
    }
    if (!found) {
      error = "no free cluster slot (all " + std::to_string(layout_.cluster_slots) + " in use)";
      return std::nullopt;
    }
  }

  // The old block of a resized cluster counts as free: it may be reused in place.
  std::optional<uint64_t> offset = findArenaGap(block, index);
  if (!offset) {
    error = "session-table arena full: " + std::to_string(block) + " bytes needed, " +
            std::to_string(arenaUsedBytes()) + " of " + std::to_string(layout_.arena_bytes) + " in use";
    return std::nullopt;
  }
  const uint64_t record_offset = recordOffset(index);
  if (!existing) {
    // The worker part of a fresh slot must read as zeros (freeCluster punched
    // it, a never-used slot is zero; this makes sure), then gets its pages.
    zeroRange(record_offset + offsetof(ClusterRecord, counters_seq),
              layout_.cluster_stride - offsetof(ClusterRecord, counters_seq));
    if (!reserveRange(record_offset, layout_.cluster_stride, error)) return std::nullopt;
  }
  // Zero first: the worker must find no table there (a stale one of the same
  // size would otherwise be attached with another cluster's calls).
  zeroRange(*offset, block);
  if (!reserveRange(*offset, block, error)) {
    zeroRange(*offset, block);
    return std::nullopt;
  }

  SlotAllocation& a = slots_[index];
  const uint64_t old_offset = a.table_offset;
  const uint64_t old_bytes = a.table_bytes;
  if (!existing) {
    ClusterRecord& c = *cluster(index);
    c.slot_seq.recover();
    c.slot_seq.writeBegin();
    c.config_index.store(0, kRelaxed);
    c.worker_pid.store(0, kRelaxed);
    c.restarts.store(0, kRelaxed);
    c.worker_started_unix_ms.store(0, kRelaxed);
    storeText(c.control_uri, sizeof c.control_uri, "");
    c.slot_seq.writeEnd();
    a.generation += 1;
    a.name = std::string(name);
  }
  a.in_use = true;
  a.table_offset = *offset;
  a.table_bytes = block;
  a.max_calls = max_calls;
  writeSlot(index);

  // Release the old block where the new one does not overlap it.
  if (existing && old_bytes != 0) {
    const uint64_t old_end = old_offset + old_bytes;
    const uint64_t new_end = *offset + block;
    if (old_offset < *offset) zeroRange(old_offset, std::min(old_end, *offset) - old_offset);
    if (old_end > new_end) {
      const uint64_t from = std::max(old_offset, new_end);
      zeroRange(from, old_end - from);
    }
  }
  return ClusterSlot{index, a.generation, false};
}

bool ShmSegment::freeCluster(uint32_t index) {
  if (index >= slots_.size() || !slots_[index].in_use) return false;
  SlotAllocation& a = slots_[index];
  const uint64_t offset = a.table_offset;
  const uint64_t bytes = a.table_bytes;
  a.in_use = false;
  a.generation += 1;
  a.table_offset = 0;
  a.table_bytes = 0;
  a.max_calls = 0;
  a.name.clear();
  writeSlot(index);
  cluster(index)->worker_pid.store(0, kRelaxed);
  if (tableBlockValid(layout_, offset, bytes)) zeroRange(offset, bytes);
  // The slot part stays (its generation must survive); the worker part goes.
  zeroRange(recordOffset(index) + offsetof(ClusterRecord, counters_seq),
            layout_.cluster_stride - offsetof(ClusterRecord, counters_seq));
  return true;
}

uint32_t ShmSegment::recoverCluster(uint32_t index) {
  ClusterRecord* c = cluster(index);
  if (c == nullptr) return 0;
  uint32_t reset = c->counters_seq.recover() ? 1 : 0;
  for (MemberRecord& m : c->members) reset += m.seq.recover() ? 1 : 0;
  return reset;
}

// --- publishing ---

void publishMember(MemberRecord& r, const MemberConfig& config, const MemberLiveStatus& live) {
  r.seq.writeBegin();
  r.in_use.store(1, kRelaxed);
  r.weight.store(config.weight, kRelaxed);
  r.capacity.store(config.capacity, kRelaxed);
  r.admin_status.store(static_cast<uint8_t>(live.status), kRelaxed);
  r.online.store(live.online ? 1 : 0, kRelaxed);
  r.health.store(live.health, kRelaxed);
  r.active_known.store(live.active_sessions ? 1 : 0, kRelaxed);
  r.active_sessions.store(live.active_sessions.value_or(0.0), kRelaxed);
  r.stats_unsupported.store(live.stats_unsupported ? 1 : 0, kRelaxed);
  r.capabilities.store(live.capabilities, kRelaxed);
  r.bound_sessions.store(live.bound_sessions, kRelaxed);
  r.utilisation.store(live.utilisation, kRelaxed);
  r.rtt_us.store(live.rtt_us, kRelaxed);
  r.commands.store(live.commands, kRelaxed);
  r.timeouts.store(live.timeouts, kRelaxed);
  r.failovers.store(live.failovers, kRelaxed);
  r.deferred_deletes.store(live.deferred_deletes, kRelaxed);
  storeText(r.name, sizeof r.name, config.name);
  storeText(r.uri, sizeof r.uri, config.address.uri());
  storeText(r.wan_address, sizeof r.wan_address, config.wan_address);
  storeText(r.lan_address, sizeof r.lan_address, config.lan_address);
  storeText(r.cmd_out_address, sizeof r.cmd_out_address, config.cmd_out_address);
  for (size_t i = 0; i < RttHistogram::kBuckets; ++i) r.rtt_buckets[i].store(live.rtt_histogram.counts[i], kRelaxed);
  r.rtt_sum_us.store(live.rtt_histogram.sum_us, kRelaxed);
  r.seq.writeEnd();
}

void clearMember(MemberRecord& r) {
  r.seq.writeBegin();
  r.in_use.store(0, kRelaxed);
  storeText(r.name, sizeof r.name, "");
  r.seq.writeEnd();
}

void publishCounters(ClusterRecord& r, const ClusterCounters& c, uint64_t now_unix_ms) {
  r.counters_seq.writeBegin();
  r.commands.store(c.commands, kRelaxed);
  r.answered_locally.store(c.answered_locally, kRelaxed);
  r.routed.store(c.routed, kRelaxed);
  r.created.store(c.created, kRelaxed);
  r.broadcasts.store(c.broadcasts, kRelaxed);
  r.failovers.store(c.failovers, kRelaxed);
  r.parse_errors.store(c.parse_errors, kRelaxed);
  r.cluster_errors.store(c.cluster_errors, kRelaxed);
  r.late_offers.store(c.late_offers, kRelaxed);
  r.tracked_calls.store(c.tracked_calls, kRelaxed);
  r.deleted_calls.store(c.deleted_calls, kRelaxed);
  r.published_unix_ms.store(now_unix_ms, kRelaxed);
  for (size_t row = 0; row < kTallyRows; ++row) {
    for (size_t res = 0; res < kCommandResultCount; ++res) {
      r.answers_by_type[row][res].store(c.tally.by_type[row][res], kRelaxed);
    }
  }
  for (size_t i = 0; i < kErrorSlots; ++i) r.answers_by_error[i].store(c.tally.by_error[i], kRelaxed);
  r.counters_seq.writeEnd();
}

void publishClusterInfo(ClusterRecord& r, uint32_t config_index, const SocketAddress& control) {
  r.slot_seq.writeBegin();
  r.config_index.store(config_index, kRelaxed);
  storeText(r.control_uri, sizeof r.control_uri, control.uri());
  r.slot_seq.writeEnd();
}

void publishWorker(ClusterRecord& r, int32_t pid, uint32_t restarts, uint64_t started_unix_ms) {
  r.slot_seq.writeBegin();
  r.worker_pid.store(pid, kRelaxed);
  r.restarts.store(restarts, kRelaxed);
  r.worker_started_unix_ms.store(started_unix_ms, kRelaxed);
  r.slot_seq.writeEnd();
}

// --- reading ---

bool readMember(const MemberRecord& r, MemberSnapshot& out, bool& in_use, bool patient) {
  std::string uri;
  const bool ok = readConsistent(r.seq, patient, [&] {
    in_use = r.in_use.load(kRelaxed) != 0;
    out.weight = r.weight.load(kRelaxed);
    out.capacity = r.capacity.load(kRelaxed);
    const uint8_t status = r.admin_status.load(kRelaxed);
    out.status = status <= static_cast<uint8_t>(AdminStatus::kDraining) ? static_cast<AdminStatus>(status)
                                                                         : AdminStatus::kActive;
    out.online = r.online.load(kRelaxed) != 0;
    out.health = r.health.load(kRelaxed);
    const bool known = r.active_known.load(kRelaxed) != 0;
    const double active = r.active_sessions.load(kRelaxed);
    out.active_sessions = known ? std::optional<double>(active) : std::nullopt;
    out.stats_unsupported = r.stats_unsupported.load(kRelaxed) != 0;
    out.capabilities = r.capabilities.load(kRelaxed);
    out.bound_sessions = r.bound_sessions.load(kRelaxed);
    out.utilisation = r.utilisation.load(kRelaxed);
    out.rtt_seconds = static_cast<double>(r.rtt_us.load(kRelaxed)) / 1e6;
    out.commands = r.commands.load(kRelaxed);
    out.timeouts = r.timeouts.load(kRelaxed);
    out.failovers = r.failovers.load(kRelaxed);
    out.deferred_deletes = r.deferred_deletes.load(kRelaxed);
    loadText(r.name, sizeof r.name, out.name);
    loadText(r.uri, sizeof r.uri, uri);
    loadText(r.wan_address, sizeof r.wan_address, out.wan_address);
    loadText(r.lan_address, sizeof r.lan_address, out.lan_address);
    loadText(r.cmd_out_address, sizeof r.cmd_out_address, out.cmd_out_address);
    for (size_t i = 0; i < RttHistogram::kBuckets; ++i) out.rtt_histogram.counts[i] = r.rtt_buckets[i].load(kRelaxed);
    out.rtt_histogram.sum_us = r.rtt_sum_us.load(kRelaxed);
  });
  // Parsed outside the retry loop: only the stable copy is worth the work.
  if (in_use) out.address = addressFromUri(uri);
  return ok;
}

bool readClusterSlot(const ClusterRecord& r, ClusterSnapshot& out, bool& in_use, bool patient) {
  std::string uri;
  uint32_t config_index = 0;
  const bool ok = readConsistent(r.slot_seq, patient, [&] {
    in_use = r.in_use.load(kRelaxed) != 0;
    out.generation = r.generation.load(kRelaxed);
    config_index = r.config_index.load(kRelaxed);
    out.worker_pid = r.worker_pid.load(kRelaxed);
    out.worker_restarts = r.restarts.load(kRelaxed);
    out.worker_started_unix_ms = r.worker_started_unix_ms.load(kRelaxed);
    loadText(r.name, sizeof r.name, out.name);
    loadText(r.control_uri, sizeof r.control_uri, uri);
  });
  out.index = static_cast<uint16_t>(std::min<uint32_t>(config_index, UINT16_MAX));
  if (in_use && !uri.empty()) out.address = addressFromUri(uri);
  return ok;
}

bool readCounters(const ClusterRecord& r, ClusterSnapshot& out, bool patient) {
  uint64_t tracked = 0;
  const bool ok = readConsistent(r.counters_seq, patient, [&] {
    out.commands = r.commands.load(kRelaxed);
    out.answered_locally = r.answered_locally.load(kRelaxed);
    out.routed = r.routed.load(kRelaxed);
    out.created = r.created.load(kRelaxed);
    out.broadcasts = r.broadcasts.load(kRelaxed);
    out.failovers = r.failovers.load(kRelaxed);
    out.parse_errors = r.parse_errors.load(kRelaxed);
    out.cluster_errors = r.cluster_errors.load(kRelaxed);
    out.late_offers = r.late_offers.load(kRelaxed);
    tracked = r.tracked_calls.load(kRelaxed);
    out.deleted_calls = r.deleted_calls.load(kRelaxed);
    out.published_unix_ms = r.published_unix_ms.load(kRelaxed);
    for (size_t row = 0; row < kTallyRows; ++row) {
      for (size_t res = 0; res < kCommandResultCount; ++res) {
        out.tally.by_type[row][res] = r.answers_by_type[row][res].load(kRelaxed);
      }
    }
    for (size_t i = 0; i < kErrorSlots; ++i) out.tally.by_error[i] = r.answers_by_error[i].load(kRelaxed);
  });
  out.tracked_calls = static_cast<uint32_t>(std::min<uint64_t>(tracked, UINT32_MAX));
  return ok;
}

StatusSnapshot takeSnapshot(const ShmSegment& segment) {
  StatusSnapshot snap;
  snap.taken_unix_ms = unixNowMs();
  for (uint32_t i = 0; i < segment.clusterSlots(); ++i) {
    const ClusterRecord& record = *segment.cluster(i);
    if (record.in_use.load(kRelaxed) == 0) continue;  // cheap skip; re-checked under the lock
    ClusterSnapshot cluster;
    bool in_use = false;
    // The slot part is the supervisor's: a stuck one says nothing about the worker.
    const bool slot_ok = readClusterSlot(record, cluster, in_use);
    if (!in_use) continue;
    cluster.slot = i;
    bool consistent = readCounters(record, cluster);
    for (uint32_t m = 0; m < kMaxMembersPerCluster; ++m) {
      const MemberRecord& mr = record.members[m];
      if (mr.in_use.load(kRelaxed) == 0 && (mr.seq.raw() & 1u) == 0) continue;
      MemberSnapshot member;
      bool member_in_use = false;
      consistent = readMember(mr, member, member_in_use, consistent) && consistent;
      if (!member_in_use) continue;
      member.index = static_cast<uint16_t>(m);
      cluster.members.push_back(std::move(member));
    }
    cluster.consistent = consistent && slot_ok;
    snap.clusters.push_back(std::move(cluster));
  }
  std::stable_sort(snap.clusters.begin(), snap.clusters.end(),
                   [](const ClusterSnapshot& a, const ClusterSnapshot& b) { return a.index < b.index; });
  return snap;
}

}  // namespace rtpc
