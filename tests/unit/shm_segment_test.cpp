#include "shared/shm_segment.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shared/session_table.h"

namespace rtpc {
namespace {

using std::chrono::steady_clock;

// Unique per process and test, so parallel test runs never share a segment.
class ShmName {
 public:
  ShmName() {
    static int counter = 0;
    name_ = "rtpc_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
    ShmSegment::remove(name_);
  }
  ~ShmName() { ShmSegment::remove(name_); }
  const std::string& str() const { return name_; }

 private:
  std::string name_;
};

bool shmExists(const std::string& name) {
  struct stat st {};
  return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

// Raw access to a segment, behind ShmSegment's back (corruption, stale files).
struct RawShm {
  explicit RawShm(const std::string& name, bool create = false) {
    fd = ::shm_open(("/" + name).c_str(), O_RDWR | (create ? O_CREAT : 0), 0600);
  }
  ~RawShm() {
    if (fd >= 0) ::close(fd);
  }
  void write(uint64_t offset, const void* data, size_t n) const {
    ASSERT_EQ(::pwrite(fd, data, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  }
  int fd = -1;
};

SegmentPlan smallPlan(uint32_t slots = 4, uint32_t tables_of_calls = 1000, uint32_t tables = 4) {
  SegmentPlan plan;
  plan.cluster_slots = slots;
  plan.arena_bytes = tableBlockBytes(tables_of_calls) * tables;
  return plan;
}

std::unique_ptr<ShmSegment> mustCreate(const ShmName& name, const SegmentPlan& plan) {
  std::string error;
  auto seg = ShmSegment::create(name.str(), plan, error);
  EXPECT_NE(seg, nullptr) << error;
  return seg;
}

// The start of the mapping (header() is the segment's private copy, not the
// mapped header).
const unsigned char* mappingBase(const ShmSegment& seg) {
  return reinterpret_cast<const unsigned char*>(seg.cluster(0)) - seg.header().clusters_offset;
}

SocketAddress addr(Transport t, std::string_view text) {
  AddressResult r = parseAddress(t, text);
  EXPECT_TRUE(r.address) << text << ": " << r.error;
  return r.address.value_or(SocketAddress{});
}

// --- header and open() checks ---

TEST(ShmSegment, CreateWritesAHeaderThatOpenAccepts) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan(8));
  ASSERT_TRUE(seg);
  const ShmHeader& h = seg->header();
  EXPECT_EQ(h.magic, kShmMagic);
  EXPECT_EQ(h.layout_version, kShmLayoutVersion);
  EXPECT_EQ(h.creator_pid, ::getpid());
  EXPECT_EQ(h.cluster_slots, 8u);
  EXPECT_GT(h.created_unix_ms, 1600000000000u);
  EXPECT_EQ(h.arena_offset % kShmPageBytes, 0u);
  EXPECT_EQ(h.arena_offset + h.arena_bytes, h.total_bytes);
  EXPECT_GE(h.arena_bytes, smallPlan(8).arena_bytes);

  std::string error;
  auto reader = ShmSegment::open(name.str(), error);
  ASSERT_NE(reader, nullptr) << error;
  EXPECT_EQ(reader->totalBytes(), seg->totalBytes());
  EXPECT_EQ(reader->clusterSlots(), 8u);
  EXPECT_EQ(reader->cluster(8), nullptr);
  EXPECT_NE(reader->cluster(7), nullptr);
}

struct CorruptionCase {
  const char* what;
  uint64_t offset;     // into the header
  uint64_t value;      // written as 4 or 8 bytes
  size_t width;
  const char* message; // expected part of the error
};

TEST(ShmSegment, OpenRefusesACorruptHeaderWithAMessage) {
  const std::string newer_version = "layout version " + std::to_string(kShmLayoutVersion + 1);
  const CorruptionCase cases[] = {
      {"magic", offsetof(ShmHeader, magic), 0x1122334455667788ull, 8, "bad magic"},
      {"zero magic (creator died)", offsetof(ShmHeader, magic), 0, 8, "bad magic"},
      {"version", offsetof(ShmHeader, layout_version), kShmLayoutVersion + 1, 4, newer_version.c_str()},
      {"member record size", offsetof(ShmHeader, member_record_bytes), 1000, 4, "record sizes"},
      {"cluster record size", offsetof(ShmHeader, cluster_record_bytes), 1000, 4, "record sizes"},
      {"total size", offsetof(ShmHeader, total_bytes), 1u << 20, 8, "header says 1048576"},
      {"slot count", offsetof(ShmHeader, cluster_slots), 100000, 4, "inconsistent header"},
  };
  for (const CorruptionCase& c : cases) {
    SCOPED_TRACE(c.what);
    ShmName name;
    auto seg = mustCreate(name, smallPlan());
    ASSERT_TRUE(seg);
    RawShm raw(name.str());
    ASSERT_GE(raw.fd, 0);
    raw.write(c.offset, &c.value, c.width);
    std::string error;
    EXPECT_EQ(ShmSegment::open(name.str(), error), nullptr);
    EXPECT_NE(error.find(c.message), std::string::npos) << error;
    EXPECT_NE(error.find(name.str()), std::string::npos) << error;
  }
}

TEST(ShmSegment, OpenRefusesASegmentWhoseSizeDiffersFromItsHeader) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  ASSERT_TRUE(seg);
  RawShm raw(name.str());
  ASSERT_EQ(::ftruncate(raw.fd, static_cast<off_t>(seg->totalBytes() + kShmPageBytes)), 0);
  std::string error;
  EXPECT_EQ(ShmSegment::open(name.str(), error), nullptr);
  EXPECT_NE(error.find("size is " + std::to_string(seg->totalBytes() + kShmPageBytes)), std::string::npos)
      << error;
}

TEST(ShmSegment, OpenRefusesMissingTinyAndBadlyNamedSegments) {
  ShmName name;
  std::string error;
  EXPECT_EQ(ShmSegment::open(name.str(), error), nullptr);
  EXPECT_NE(error.find("cannot open"), std::string::npos) << error;

  {
    RawShm raw(name.str(), true);
    ASSERT_EQ(::ftruncate(raw.fd, 16), 0);
  }
  EXPECT_EQ(ShmSegment::open(name.str(), error), nullptr);
  EXPECT_NE(error.find("too small"), std::string::npos) << error;

  EXPECT_EQ(ShmSegment::open("a/b", error), nullptr);
  EXPECT_NE(error.find("without '/'"), std::string::npos) << error;
  EXPECT_EQ(ShmSegment::open("", error), nullptr);
}

TEST(ShmSegment, CreateReplacesAStaleSegmentOfTheSameName) {
  ShmName name;
  {
    RawShm raw(name.str(), true);
    ASSERT_GE(raw.fd, 0);
    ASSERT_EQ(::ftruncate(raw.fd, 123457), 0);
    std::vector<unsigned char> junk(123457, 0xA5);
    raw.write(0, junk.data(), junk.size());
  }
  auto seg = mustCreate(name, smallPlan());
  ASSERT_TRUE(seg);
  std::string error;
  auto reader = ShmSegment::open(name.str(), error);
  ASSERT_NE(reader, nullptr) << error;
  // Nothing of the junk survives: every slot reads free.
  for (uint32_t i = 0; i < reader->clusterSlots(); ++i) EXPECT_EQ(reader->cluster(i)->in_use.load(), 0u);
  EXPECT_TRUE(takeSnapshot(*reader).clusters.empty());
}

TEST(ShmSegment, CreatorRemovesTheNameOnDestructionUnlessToldNot) {
  ShmName a;
  mustCreate(a, smallPlan()).reset();
  EXPECT_FALSE(shmExists(a.str()));

  ShmName b;
  {
    auto seg = mustCreate(b, smallPlan());
    seg->setRemoveOnDestroy(false);
  }
  EXPECT_TRUE(shmExists(b.str()));

  // A process that only opened it never removes it.
  ShmName c;
  auto owner = mustCreate(c, smallPlan());
  std::string error;
  ShmSegment::open(c.str(), error).reset();
  EXPECT_TRUE(shmExists(c.str()));
}

TEST(ShmSegment, ForkedChildDoesNotRemoveItsParentsSegment) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    seg.reset();  // runs the destructor in the child
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(shmExists(name.str()));
}

TEST(ShmSegment, CreateRejectsBadPlans) {
  ShmName name;
  std::string error;
  SegmentPlan plan = smallPlan(0);
  EXPECT_EQ(ShmSegment::create(name.str(), plan, error), nullptr);
  EXPECT_NE(error.find("cluster slots"), std::string::npos) << error;
  plan.cluster_slots = kMaxClusterSlots + 1;
  EXPECT_EQ(ShmSegment::create(name.str(), plan, error), nullptr);
}

// --- memory use ---

TEST(ShmSegment, CreateIsSparseAndPagesFollowAllocation) {
  ShmName name;
  Config config;
  config.clusters.resize(1);
  config.clusters[0].name = "c";
  const SegmentPlan plan = SegmentPlan::forConfig(config);  // 64 slots, 1M-call tables
  EXPECT_EQ(plan.cluster_slots, kDefaultClusterSlots);
  EXPECT_GE(plan.arena_bytes, 65 * tableBlockBytes(1048576));
  auto seg = mustCreate(name, plan);
  ASSERT_TRUE(seg);
  // The header page and the first page of each slot (read by every scan).
  const uint64_t after_create = seg->residentBytes();
  EXPECT_EQ(after_create, (1 + kDefaultClusterSlots) * kShmPageBytes);

  std::string error;
  auto slot = seg->allocateCluster("c", 1048576, error);
  ASSERT_TRUE(slot) << error;
  const uint64_t after_alloc = seg->residentBytes();
  EXPECT_EQ(after_alloc, after_create + kShmClusterStride - kShmPageBytes + tableBlockBytes(1048576));

  ASSERT_TRUE(seg->freeCluster(slot->index));
  const uint64_t after_free = seg->residentBytes();
  EXPECT_EQ(after_free, after_create);
  // Scans (snapshots, lookups by name) touch no further pages.
  takeSnapshot(*seg);
  EXPECT_FALSE(seg->findCluster("nothing"));
  EXPECT_EQ(seg->residentBytes(), after_create);
  std::printf("segment: %llu MiB of address space; /dev/shm used: %llu KiB after create, "
              "%llu KiB with one 1M-call cluster, %llu KiB after freeing it\n",
              static_cast<unsigned long long>(seg->totalBytes() >> 20),
              static_cast<unsigned long long>(after_create >> 10),
              static_cast<unsigned long long>(after_alloc >> 10),
              static_cast<unsigned long long>(after_free >> 10));
}

// --- slots and the table arena ---

// Garbage written into the shared header (anything with write access to
// /dev/shm can): the creator keeps working from its private copy, never
// reading counts, offsets or strides from the mapping; an opener refuses or
// accepts a consistent header, never crashes; repair() rewrites the header.
TEST(ShmCorruption, EveryHeaderFieldScribbledNeitherCrashesTheCreatorNorAnOpenerAndIsRepaired) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  std::string error;
  auto slot = seg->allocateCluster("alpha", 1000, error);
  ASSERT_TRUE(slot) << error;
  size_t bytes = 0;
  void* const mem = seg->sessionMemory(slot->index, bytes);
  ASSERT_NE(mem, nullptr);
  ASSERT_NE(SessionTable::create(mem, bytes, 1000, 42), nullptr);
  ShmHeader original{};
  RawShm raw(name.str());
  ASSERT_EQ(::pread(raw.fd, &original, sizeof original, 0), static_cast<ssize_t>(sizeof original));
  const uint64_t patterns[] = {0, 1, 0xffffffffull, 0xffffffffffffffffull, 0x7fffffffffffff00ull,
                               uint64_t{1} << 40, seg->totalBytes() - 4096};
  for (size_t offset = 0; offset < sizeof(ShmHeader); offset += 4) {
    for (const uint64_t pattern : patterns) {
      for (const size_t width : {size_t{4}, size_t{8}}) {
        if (offset + width > sizeof(ShmHeader)) continue;
        SCOPED_TRACE("offset " + std::to_string(offset) + " width " + std::to_string(width) + " pattern " +
                     std::to_string(pattern));
        raw.write(offset, &pattern, width);
        // The creator: unchanged geometry, working allocations and snapshots.
        EXPECT_EQ(seg->clusterSlots(), 4u);
        EXPECT_EQ(std::memcmp(&seg->header(), &original, sizeof original), 0);
        size_t b = 0;
        EXPECT_EQ(seg->sessionMemory(slot->index, b), mem);
        EXPECT_EQ(b, bytes);
        EXPECT_EQ(takeSnapshot(*seg).clusters.size(), 1u);
        auto other = seg->allocateCluster("beta", 1000, error);
        ASSERT_TRUE(other) << error;
        EXPECT_TRUE(seg->freeCluster(other->index));
        // An opener: refuses, or accepts a header that checks out.
        std::string open_error;
        auto reader = ShmSegment::open(name.str(), open_error);
        if (reader) {
          EXPECT_EQ(ShmSegment::checkHeader(reader->header(), seg->totalBytes()), "");
          takeSnapshot(*reader);
          size_t rb = 0;
          void* rm = reader->sessionMemory(slot->index, rb);
          if (rm != nullptr) {
            EXPECT_NE(SessionTable::attach(rm, rb), nullptr);
          }
        } else {
          EXPECT_NE(open_error, "");
        }
        // Rebuilt from the private copy.
        const std::string repaired = seg->repair();
        ShmHeader now{};
        ASSERT_EQ(::pread(raw.fd, &now, sizeof now, 0), static_cast<ssize_t>(sizeof now));
        EXPECT_EQ(std::memcmp(&now, &original, sizeof now), 0);
        EXPECT_EQ(seg->repair(), "");
        if (std::memcmp(&pattern, reinterpret_cast<const unsigned char*>(&original) + offset, width) != 0) {
          EXPECT_EQ(repaired, "header");
        }
        EXPECT_NE(ShmSegment::open(name.str(), open_error), nullptr) << open_error;
      }
    }
  }
}

// A slot record's table offset and size scribbled (including values whose
// sum overflows): nobody maps outside the segment, allocation and freeing
// go by the creator's own records, repair() restores the slot.
TEST(ShmCorruption, ScribbledSlotRecordsAreBoundsCheckedAndRepaired) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  std::string error;
  auto slot = seg->allocateCluster("alpha", 1000, error);
  ASSERT_TRUE(slot) << error;
  size_t bytes = 0;
  void* const mem = seg->sessionMemory(slot->index, bytes);
  ASSERT_NE(mem, nullptr);
  ClusterRecord& record = *seg->cluster(slot->index);
  ClusterRecord& free_record = *seg->cluster(3);
  const uint64_t total = seg->totalBytes();
  const std::pair<uint64_t, uint64_t> blocks[] = {
      {0, 4096}, {total - 4096, UINT64_MAX}, {UINT64_MAX - 4095, 8192}, {4096, total}, {total, 4096}, {1, 1}};
  for (const auto& [offset, size] : blocks) {
    SCOPED_TRACE(std::to_string(offset) + "+" + std::to_string(size));
    for (ClusterRecord* r : {&record, &free_record}) {
      r->in_use.store(1);
      r->table_offset.store(offset);
      r->table_bytes.store(size);
      r->table_max_calls.store(0xffffffffu);
      r->slot_seq.writeBegin();  // odd, as if a writer died
    }
    size_t b = 0;
    EXPECT_EQ(seg->sessionMemory(slot->index, b), mem);
    EXPECT_EQ(seg->sessionMemory(3, b), nullptr);
    std::string open_error;
    auto reader = ShmSegment::open(name.str(), open_error);
    ASSERT_NE(reader, nullptr) << open_error;
    for (uint32_t i = 0; i < reader->clusterSlots(); ++i) {
      size_t rb = 0;
      void* rm = reader->sessionMemory(i, rb);
      if (rm == nullptr) continue;
      EXPECT_TRUE(ShmSegment::tableBlockValid(reader->header(), offset, size));
    }
    // Allocation ignores the scribbled records: a fresh block that does not
    // overlap alpha's.
    auto other = seg->allocateCluster("beta", 1000, error);
    ASSERT_TRUE(other) << error;
    size_t ob = 0;
    auto* om = static_cast<unsigned char*>(seg->sessionMemory(other->index, ob));
    ASSERT_NE(om, nullptr);
    EXPECT_TRUE(om + ob <= static_cast<unsigned char*>(mem) || om >= static_cast<unsigned char*>(mem) + bytes);
    EXPECT_TRUE(seg->freeCluster(other->index));
    const std::string repaired = seg->repair();
    EXPECT_NE(repaired.find("slot " + std::to_string(slot->index)), std::string::npos) << repaired;
    EXPECT_NE(repaired.find("slot 3"), std::string::npos) << repaired;
    EXPECT_EQ(seg->repair(), "");
    EXPECT_EQ(record.table_offset.load(), static_cast<uint64_t>(static_cast<unsigned char*>(mem) - mappingBase(*seg)));
    EXPECT_EQ(free_record.in_use.load(), 0u);
    const StatusSnapshot snap = takeSnapshot(*seg);
    ASSERT_EQ(snap.clusters.size(), 1u);
    EXPECT_EQ(snap.clusters[0].name, "alpha");
    EXPECT_TRUE(snap.clusters[0].consistent);
  }
}

TEST(ShmSegment, ReallocatingAClusterWithTheSameTableSizeKeepsItsCalls) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  std::string error;
  auto first = seg->allocateCluster("alpha", 1000, error);
  ASSERT_TRUE(first) << error;
  EXPECT_FALSE(first->table_kept);
  size_t bytes = 0;
  void* mem = seg->sessionMemory(first->index, bytes);
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(bytes, tableBlockBytes(1000));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mem) % SessionTable::kRequiredAlignment, 0u);
  EXPECT_EQ(SessionTable::attach(mem, bytes), nullptr);  // fresh block: nothing to attach
  SessionTable* table = SessionTable::create(mem, bytes, 1000, 42);
  ASSERT_NE(table, nullptr);
  ASSERT_TRUE(table->bind("call-1", 7, 0));

  auto again = seg->allocateCluster("alpha", 1000, error);
  ASSERT_TRUE(again) << error;
  EXPECT_TRUE(again->table_kept);
  EXPECT_EQ(again->index, first->index);
  EXPECT_EQ(again->generation, first->generation);
  size_t bytes2 = 0;
  EXPECT_EQ(seg->sessionMemory(again->index, bytes2), mem);
  SessionTable* attached = SessionTable::attach(mem, bytes2);
  ASSERT_NE(attached, nullptr);
  EXPECT_EQ(attached->lookup("call-1", 0), 7);

  // Another size: a new, zeroed block; the old table is gone.
  auto resized = seg->allocateCluster("alpha", 2000, error);
  ASSERT_TRUE(resized) << error;
  EXPECT_FALSE(resized->table_kept);
  EXPECT_EQ(resized->index, first->index);
  size_t bytes3 = 0;
  void* mem3 = seg->sessionMemory(resized->index, bytes3);
  ASSERT_NE(mem3, nullptr);
  EXPECT_EQ(bytes3, tableBlockBytes(2000));
  EXPECT_EQ(SessionTable::attach(mem3, bytes3), nullptr);
}

TEST(ShmSegment, TableBlocksDoNotOverlapAndFreedSpaceIsReusedZeroed) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan(4, 1000, 3));
  std::string error;
  const char* names[] = {"a", "b", "c"};
  std::vector<ClusterSlot> slots;
  std::vector<std::pair<uint64_t, uint64_t>> blocks;
  for (const char* n : names) {
    auto s = seg->allocateCluster(n, 1000, error);
    ASSERT_TRUE(s) << n << ": " << error;
    slots.push_back(*s);
    size_t bytes = 0;
    auto* mem = static_cast<unsigned char*>(seg->sessionMemory(s->index, bytes));
    ASSERT_NE(mem, nullptr);
    std::memset(mem, 0x5A, bytes);  // a worker filled it
    const uint64_t offset = static_cast<uint64_t>(mem - mappingBase(*seg));
    EXPECT_EQ(offset % kTableBlockAlignment, 0u);
    EXPECT_GE(offset, seg->header().arena_offset);
    EXPECT_LE(offset + bytes, seg->totalBytes());
    for (const auto& [o, b] : blocks) EXPECT_TRUE(offset + bytes <= o || o + b <= offset);
    blocks.emplace_back(offset, bytes);
  }
  EXPECT_EQ(seg->arenaUsedBytes(), 3 * tableBlockBytes(1000));
  EXPECT_EQ(seg->findCluster("b"), slots[1].index);

  // The arena is full now.
  EXPECT_FALSE(seg->allocateCluster("d", 1000, error));
  EXPECT_NE(error.find("arena full"), std::string::npos) << error;

  ASSERT_TRUE(seg->freeCluster(slots[1].index));
  EXPECT_FALSE(seg->freeCluster(slots[1].index));
  EXPECT_FALSE(seg->findCluster("b"));
  auto d = seg->allocateCluster("d", 1000, error);
  ASSERT_TRUE(d) << error;
  EXPECT_EQ(d->index, slots[1].index);
  EXPECT_NE(d->generation, slots[1].generation);
  size_t bytes = 0;
  auto* mem = static_cast<unsigned char*>(seg->sessionMemory(d->index, bytes));
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(static_cast<uint64_t>(mem - mappingBase(*seg)),
            blocks[1].first);
  for (size_t i = 0; i < bytes; ++i) {
    if (mem[i] != 0) FAIL() << "byte " << i << " of a reused block is not zero";
  }
}

TEST(ShmSegment, AllocationErrorsAreReported) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan(2, 1000, 4));
  std::string error;
  EXPECT_FALSE(seg->allocateCluster(std::string(kMaxNameBytes + 1, 'x'), 1000, error));
  EXPECT_NE(error.find("cluster name"), std::string::npos) << error;
  EXPECT_FALSE(seg->allocateCluster("", 1000, error));
  EXPECT_FALSE(seg->allocateCluster("z", 0, error));
  EXPECT_NE(error.find("out of range"), std::string::npos) << error;
  EXPECT_TRUE(seg->allocateCluster(std::string(kMaxNameBytes, 'x'), 1000, error)) << error;
  EXPECT_TRUE(seg->allocateCluster("two", 1000, error)) << error;
  EXPECT_FALSE(seg->allocateCluster("three", 1000, error));
  EXPECT_NE(error.find("no free cluster slot"), std::string::npos) << error;
  EXPECT_TRUE(seg->findCluster(std::string(kMaxNameBytes, 'x')));
}

// --- publishing and snapshots ---

MemberConfig memberConfig(std::string name, SocketAddress address) {
  MemberConfig m;
  m.name = std::move(name);
  m.address = std::move(address);
  m.weight = 100;
  m.capacity = 2500;
  return m;
}

TEST(ShmSnapshot, RoundTripsEveryFieldClustersInConfigOrderMembersInSlotOrder) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  std::string error;
  // Allocated in the opposite order of the config.
  auto second = seg->allocateCluster("second", 1000, error);
  auto first = seg->allocateCluster("first", 1000, error);
  auto gone = seg->allocateCluster("gone", 1000, error);
  ASSERT_TRUE(second && first && gone) << error;
  publishClusterInfo(*seg->cluster(second->index), 1, addr(Transport::kUnix, "/run/rtpc/second.sock"));
  publishClusterInfo(*seg->cluster(first->index), 0, addr(Transport::kUdp, "127.0.0.1:32324"));
  publishWorker(*seg->cluster(first->index), 4242, 3, 1700000000123);
  ASSERT_TRUE(seg->freeCluster(gone->index));

  MemberConfig m0 = memberConfig("RTPPROXY1", addr(Transport::kUdp, "127.0.0.1:32323"));
  m0.wan_address = "1.2.3.4";
  m0.lan_address = "127.0.0.1";
  m0.cmd_out_address = "relay.example.org";
  MemberLiveStatus live0;
  live0.status = AdminStatus::kSuspended;
  live0.health = 2;
  live0.online = true;
  live0.active_sessions = 12.5;
  live0.bound_sessions = 11;
  live0.utilisation = 0.005;
  live0.rtt_us = 412;
  live0.capabilities = 0x1f;
  live0.commands = 1000;
  live0.timeouts = 3;
  live0.failovers = 2;
  live0.deferred_deletes = 1;
  live0.rtt_histogram.observe(30);
  live0.rtt_histogram.observe(30);
  live0.rtt_histogram.observe(2000000);  // the +Inf bucket
  MemberConfig m5 = memberConfig("RTPPROXY3", addr(Transport::kUdp6, "[::1]:32323"));
  m5.weight = 0;
  MemberLiveStatus live5;
  live5.status = AdminStatus::kDraining;
  live5.stats_unsupported = true;  // active sessions stay UNKNOWN
  ClusterRecord& c = *seg->cluster(first->index);
  publishMember(c.members[0], m0, live0);
  publishMember(c.members[5], m5, live5);
  publishMember(c.members[3], memberConfig("removed", addr(Transport::kUdp, "127.0.0.1:1")), {});
  clearMember(c.members[3]);
  ClusterCounters counters{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, {}};
  counters.tally.count(static_cast<size_t>(CommandType::kUpdate), "1234 127.0.0.1");
  counters.tally.count(static_cast<size_t>(CommandType::kUpdate), "E72");
  counters.tally.count(kTallyUnparsedRow, "E5");
  counters.tally.count(static_cast<size_t>(CommandType::kDelete), "E999");
  publishCounters(c, counters, 1700000000999);

  std::string open_error;
  auto reader = ShmSegment::open(name.str(), open_error);
  ASSERT_NE(reader, nullptr) << open_error;
  const StatusSnapshot snap = takeSnapshot(*reader);
  ASSERT_EQ(snap.clusters.size(), 2u);
  const ClusterSnapshot& a = snap.clusters[0];
  EXPECT_EQ(a.name, "first");
  EXPECT_EQ(a.index, 0);
  EXPECT_EQ(a.slot, first->index);
  EXPECT_EQ(a.generation, first->generation);
  EXPECT_EQ(a.address.display(), "127.0.0.1:32324");
  EXPECT_EQ(a.worker_pid, 4242);
  EXPECT_EQ(a.worker_restarts, 3u);
  EXPECT_EQ(a.worker_started_unix_ms, 1700000000123u);
  EXPECT_EQ(a.commands, 1u);
  EXPECT_EQ(a.answered_locally, 2u);
  EXPECT_EQ(a.routed, 3u);
  EXPECT_EQ(a.created, 4u);
  EXPECT_EQ(a.broadcasts, 5u);
  EXPECT_EQ(a.failovers, 6u);
  EXPECT_EQ(a.parse_errors, 7u);
  EXPECT_EQ(a.cluster_errors, 8u);
  EXPECT_EQ(a.late_offers, 9u);
  EXPECT_EQ(a.tracked_calls, 10u);
  EXPECT_EQ(a.deleted_calls, 11u);
  EXPECT_EQ(a.published_unix_ms, 1700000000999u);
  EXPECT_EQ(a.tally.by_type, counters.tally.by_type);
  EXPECT_EQ(a.tally.by_error, counters.tally.by_error);
  EXPECT_EQ(a.tally.by_error[errorCodeSlot(999)], 1u);
  EXPECT_TRUE(a.consistent);
  ASSERT_EQ(a.members.size(), 2u);

  const MemberSnapshot& p = a.members[0];
  EXPECT_EQ(p.index, 0);
  EXPECT_EQ(p.name, "RTPPROXY1");
  EXPECT_EQ(p.address, m0.address);
  EXPECT_EQ(p.wan_address, "1.2.3.4");
  EXPECT_EQ(p.lan_address, "127.0.0.1");
  EXPECT_EQ(p.cmd_out_address, "relay.example.org");
  EXPECT_EQ(p.weight, 100u);
  EXPECT_EQ(p.capacity, 2500u);
  EXPECT_EQ(p.status, AdminStatus::kSuspended);
  EXPECT_TRUE(p.online);
  EXPECT_EQ(p.health, 2);
  EXPECT_EQ(p.active_sessions, 12.5);
  EXPECT_EQ(p.bound_sessions, 11u);
  EXPECT_DOUBLE_EQ(p.utilisation, 0.005);
  EXPECT_DOUBLE_EQ(p.rtt_seconds, 0.000412);
  EXPECT_EQ(p.capabilities, 0x1f);
  EXPECT_FALSE(p.stats_unsupported);
  EXPECT_EQ(p.commands, 1000u);
  EXPECT_EQ(p.timeouts, 3u);
  EXPECT_EQ(p.failovers, 2u);
  EXPECT_EQ(p.deferred_deletes, 1u);
  EXPECT_EQ(p.rtt_histogram.counts, live0.rtt_histogram.counts);
  EXPECT_EQ(p.rtt_histogram.sum_us, 2000060u);

  const MemberSnapshot& q = a.members[1];
  EXPECT_EQ(q.index, 5);
  EXPECT_EQ(q.name, "RTPPROXY3");
  EXPECT_EQ(q.address.display(), "[::1]:32323");
  EXPECT_EQ(q.address.transport, Transport::kUdp6);
  EXPECT_EQ(q.weight, 0u);
  EXPECT_EQ(q.status, AdminStatus::kDraining);
  EXPECT_FALSE(q.online);
  EXPECT_FALSE(q.active_sessions);
  EXPECT_TRUE(q.stats_unsupported);
  EXPECT_TRUE(q.wan_address.empty());

  const ClusterSnapshot& b = snap.clusters[1];
  EXPECT_EQ(b.name, "second");
  EXPECT_EQ(b.index, 1);
  EXPECT_EQ(b.address.transport, Transport::kUnix);
  EXPECT_EQ(b.address.display(), "/run/rtpc/second.sock");
  EXPECT_EQ(b.published_unix_ms, 0u);
  EXPECT_TRUE(b.members.empty());
}

TEST(ShmSnapshot, OverlongTextIsCutNotOverflowed) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  std::string error;
  auto slot = seg->allocateCluster("c", 1000, error);
  ASSERT_TRUE(slot) << error;
  MemberConfig m = memberConfig(std::string(kShmNameBytes + 50, 'n'), addr(Transport::kUdp, "127.0.0.1:1"));
  m.wan_address = std::string(1000, 'w');
  publishMember(seg->cluster(slot->index)->members[1], m, {});
  publishMember(seg->cluster(slot->index)->members[0], memberConfig("neighbour", m.address), {});
  const StatusSnapshot snap = takeSnapshot(*seg);
  ASSERT_EQ(snap.clusters.size(), 1u);
  ASSERT_EQ(snap.clusters[0].members.size(), 2u);
  EXPECT_EQ(snap.clusters[0].members[0].name, "neighbour");
  EXPECT_EQ(snap.clusters[0].members[1].name, std::string(kShmNameBytes - 1, 'n'));
  EXPECT_EQ(snap.clusters[0].members[1].wan_address, std::string(kShmHostBytes - 1, 'w'));
}

// The writer publishes records whose fields all carry the same generation k;
// a torn copy would mix two values.
// Text cycles through kHammerTexts variants (so the writer stays fast),
// numbers carry k itself.
constexpr uint64_t kHammerTexts = 61;

MemberConfig hammerConfig(uint64_t k) {
  const uint64_t t = k % kHammerTexts;
  MemberConfig m;
  m.name = "m" + std::to_string(t);
  m.address = addr(Transport::kUdp, "127.0.0.1:" + std::to_string(t + 1));
  m.weight = static_cast<uint32_t>(k);
  m.capacity = static_cast<uint32_t>(k);
  m.wan_address = std::string(t * 4 + 1, static_cast<char>('a' + t % 26));
  return m;
}

MemberLiveStatus hammerLive(uint64_t k) {
  MemberLiveStatus live;
  live.bound_sessions = static_cast<uint32_t>(k);
  live.active_sessions = static_cast<double>(k);
  live.utilisation = static_cast<double>(k);
  live.rtt_us = k;
  live.commands = k;
  live.timeouts = k;
  live.failovers = k;
  live.deferred_deletes = k;
  return live;
}

TEST(ShmSnapshot, IsConsistentPerRecordUnderAWriterInAnotherProcess) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  std::string error;
  auto slot = seg->allocateCluster("busy", 1000, error);
  ASSERT_TRUE(slot) << error;
  auto* stop = static_cast<std::atomic<uint32_t>*>(
      ::mmap(nullptr, sizeof(std::atomic<uint32_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(stop, MAP_FAILED);
  stop->store(0);

  struct StopChild {  // also when an ASSERT below returns early
    std::atomic<uint32_t>* stop;
    pid_t pid = -1;
    int status = -1;
    ~StopChild() {
      if (pid > 0) {
        stop->store(1);
        ::waitpid(pid, &status, 0);
      }
      ::munmap(stop, sizeof(std::atomic<uint32_t>));
    }
  } guard{stop};
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The worker's view: opens the segment by name, as a restarted worker would.
    std::string child_error;
    auto mine = ShmSegment::open(name.str(), child_error);
    if (!mine) ::_exit(2);
    ClusterRecord& c = *mine->cluster(slot->index);
    std::vector<MemberConfig> configs;
    for (uint64_t t = 0; t < kHammerTexts; ++t) configs.push_back(hammerConfig(t));
    for (uint64_t k = 1; stop->load(std::memory_order_relaxed) == 0; ++k) {
      MemberConfig& config = configs[k % kHammerTexts];
      config.weight = config.capacity = static_cast<uint32_t>(k);
      for (int m = 0; m < 4; ++m) publishMember(c.members[m], config, hammerLive(k));
      publishCounters(c, ClusterCounters{k, k, k, k, k, k, k, k, k, k, k, {}}, k);
    }
    ::_exit(0);
  }
  guard.pid = child;

  uint64_t snapshots = 0, distinct = 0, last_k = 0;
  const auto until = steady_clock::now() + std::chrono::milliseconds(400);
  while (steady_clock::now() < until) {
    const StatusSnapshot snap = takeSnapshot(*seg);
    ASSERT_EQ(snap.clusters.size(), 1u);
    const ClusterSnapshot& c = snap.clusters[0];
    ASSERT_TRUE(c.consistent);
    const uint64_t k = c.commands;
    for (uint64_t v : {c.answered_locally, c.routed, c.created, c.broadcasts, c.failovers, c.parse_errors,
                       c.cluster_errors, c.late_offers, uint64_t{c.tracked_calls}, c.deleted_calls,
                       c.published_unix_ms})
      ASSERT_EQ(v, k) << "torn counters record";
    for (const MemberSnapshot& m : c.members) {
      const uint64_t mk = m.weight;
      const MemberConfig expect = hammerConfig(mk);
      ASSERT_EQ(m.capacity, mk);
      ASSERT_EQ(m.bound_sessions, mk);
      ASSERT_EQ(m.active_sessions, static_cast<double>(mk));
      ASSERT_EQ(m.utilisation, static_cast<double>(mk));
      ASSERT_EQ(m.commands, mk);
      ASSERT_EQ(m.timeouts, mk);
      ASSERT_EQ(m.failovers, mk);
      ASSERT_EQ(m.deferred_deletes, mk);
      ASSERT_EQ(m.name, expect.name);
      ASSERT_EQ(m.address, expect.address);
      ASSERT_EQ(m.wan_address, expect.wan_address);
    }
    ++snapshots;
    if (k != last_k) ++distinct;
    ASSERT_GE(k, last_k);  // a snapshot never goes back in time
    last_k = k;
  }
  stop->store(1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  guard.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Otherwise the test proved nothing: the writer must have been running
  // during most snapshots.
  EXPECT_GT(snapshots, 100u);
  EXPECT_GE(distinct, 10u);
  std::printf("%llu snapshots, %llu with new values\n", static_cast<unsigned long long>(snapshots),
              static_cast<unsigned long long>(distinct));
}

TEST(ShmSnapshot, AWriterKilledMidRecordIsFlaggedUntilTheSlotIsRecovered) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan());
  std::string error;
  auto slot = seg->allocateCluster("c", 1000, error);
  ASSERT_TRUE(slot) << error;
  ClusterRecord& c = *seg->cluster(slot->index);
  for (int m = 0; m < 10; ++m) {
    publishMember(c.members[m], memberConfig("r" + std::to_string(m + 1), addr(Transport::kUdp, "127.0.0.1:5")),
                  {});
    c.members[m].seq.writeBegin();  // what a SIGKILL between the two halves leaves
  }
  c.counters_seq.writeBegin();

  const auto start = steady_clock::now();
  StatusSnapshot snap = takeSnapshot(*seg);
  // Bounded, and a dead worker's cluster costs one wait, not one per record.
  EXPECT_LT(steady_clock::now() - start, std::chrono::milliseconds(400));
  ASSERT_EQ(snap.clusters.size(), 1u);
  EXPECT_FALSE(snap.clusters[0].consistent);
  ASSERT_EQ(snap.clusters[0].members.size(), 10u);
  EXPECT_EQ(snap.clusters[0].members[9].name, "r10");  // best-effort copy

  EXPECT_EQ(seg->recoverCluster(slot->index), 11u);
  EXPECT_EQ(seg->recoverCluster(slot->index), 0u);
  snap = takeSnapshot(*seg);
  ASSERT_EQ(snap.clusters.size(), 1u);
  EXPECT_TRUE(snap.clusters[0].consistent);
}

// --- the crash test ---

// What the child reports to the parent, in memory shared between them. Each
// call c goes through generations: its call-id is "crash-c-g", bound live,
// maybe deleted, then (once deleted) replaced by generation g+1 -- so new
// fingerprints keep being inserted and expired slots reused, the writes a
// kill can interrupt. A call's state is logged after the table operation
// returned, in one store: a confirmed insert or delete.
struct CrashLog {
  static constexpr uint32_t kCalls = 2048;
  static constexpr uint32_t kLive = 1, kDeleted = 2;
  std::atomic<uint32_t> ready;
  std::atomic<uint64_t> operations;
  std::atomic<uint64_t> inserts;  // new call-ids
  std::atomic<uint64_t> now_ms;   // the child's clock: 1 ms per operation
  std::atomic<uint32_t> state[kCalls];  // generation << 2 | kLive/kDeleted; 0 = never bound
};

uint16_t memberOf(uint32_t call, uint32_t generation) {
  return static_cast<uint16_t>(((call * 2654435761u) ^ (generation * 40503u)) >> 8) % 256;
}
std::string crashCallId(uint32_t call, uint32_t generation) {
  return "crash-" + std::to_string(call) + "-" + std::to_string(generation);
}

[[noreturn]] void crashChild(void* mem, size_t bytes, CrashLog* log, uint64_t seed) {
  SessionTable* table = SessionTable::attach(mem, bytes);
  if (table == nullptr) table = SessionTable::create(mem, bytes, 8 * CrashLog::kCalls, seed);
  if (table == nullptr) ::_exit(3);
  table->setDeletedTtlSeconds(1);  // deleted calls expire after ~1000 operations
  log->ready.store(1, std::memory_order_release);
  std::mt19937_64 rng(seed);
  uint64_t now_ms = log->now_ms.load();
  char id[64];
  for (;;) {
    const uint64_t r = rng();
    const auto call = static_cast<uint32_t>(r % CrashLog::kCalls);
    const uint32_t state = log->state[call].load(std::memory_order_relaxed);
    uint32_t generation = state >> 2;
    const bool live = (state & 3u) == CrashLog::kLive;
    const bool remove = live && (r >> 32) % 10 < 3;
    if (!live) ++generation;  // never bound or deleted: the next call of this slot
    const int n = std::snprintf(id, sizeof id, "crash-%u-%u", call, generation);
    const std::string_view call_id(id, static_cast<size_t>(n));
    if (remove) {
      if (!table->markDeleted(call_id, now_ms)) ::_exit(5);
      log->state[call].store(generation << 2 | CrashLog::kDeleted, std::memory_order_release);
    } else {
      if (!table->bind(call_id, memberOf(call, generation), now_ms)) ::_exit(4);
      log->state[call].store(generation << 2 | CrashLog::kLive, std::memory_order_release);
      if (!live) log->inserts.fetch_add(1, std::memory_order_relaxed);
    }
    log->now_ms.store(++now_ms, std::memory_order_relaxed);
    log->operations.fetch_add(1, std::memory_order_relaxed);
  }
}

TEST(ShmCrash, CallsConfirmedBeforeASigkillStillRouteToTheirMember) {
  ShmName name;
  auto seg = mustCreate(name, smallPlan(2, 8 * CrashLog::kCalls, 1));
  std::string error;
  auto slot = seg->allocateCluster("crashy", 8 * CrashLog::kCalls, error);
  ASSERT_TRUE(slot) << error;
  size_t bytes = 0;
  void* mem = seg->sessionMemory(slot->index, bytes);
  ASSERT_NE(mem, nullptr);
  auto* log = static_cast<CrashLog*>(
      ::mmap(nullptr, sizeof(CrashLog), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(log, MAP_FAILED);
  log->now_ms.store(1000000);

  std::mt19937_64 rng(::getpid());
  uint32_t repairs = 0, killed_before_ready = 0, live_checked = 0;
  for (int round = 0; round < 50; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    log->ready.store(0);
    const bool wait_ready = rng() % 3 != 0;
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) crashChild(mem, bytes, log, 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(round));

    if (wait_ready) {
      const auto until = steady_clock::now() + std::chrono::seconds(5);
      while (log->ready.load(std::memory_order_acquire) == 0 && steady_clock::now() < until)
        std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
    }
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child ended by itself, status " << status;
    if (log->ready.load() == 0) ++killed_before_ready;

    // The successor's view (the parent plays the restarted worker), at the
    // dead child's clock.
    SessionTable* table = SessionTable::attach(mem, bytes);
    const uint64_t now_ms = log->now_ms.load();
    if (table == nullptr) {
      ASSERT_EQ(log->operations.load(), 0u) << "a table with confirmed calls no longer attaches";
      continue;
    }
    repairs += table->lastAttachRepairs();
    ASSERT_EQ(table->liveEvictions(), 0u) << "test premise: no live call is evicted";
    for (uint32_t call = 0; call < CrashLog::kCalls; ++call) {
      const uint32_t state = log->state[call].load();
      const uint32_t generation = state >> 2;
      if (state == 0) continue;
      const std::optional<uint16_t> member = table->lookup(crashCallId(call, generation), now_ms);
      if ((state & 3u) == CrashLog::kLive) {
        ASSERT_EQ(member, memberOf(call, generation)) << "confirmed call " << call << " lost or misrouted";
        ++live_checked;
      } else {  // deleted: routable or (once expired) forgotten, never elsewhere
        ASSERT_TRUE(!member || *member == memberOf(call, generation)) << "call " << call << " misrouted";
      }
      // The generation the child may have been inserting when it died, and the one before.
      for (uint32_t g : {generation + 1, generation - 1}) {
        if (g == 0) continue;
        const std::optional<uint16_t> other = table->lookup(crashCallId(call, g), now_ms);
        ASSERT_TRUE(!other || *other == memberOf(call, g)) << "call " << call << "-" << g << " misrouted";
      }
    }
  }
  std::printf("%llu operations (%llu new call-ids) in 50 killed writers, %u live calls checked, "
              "%u slots repaired, %u kills before the table was ready\n",
              static_cast<unsigned long long>(log->operations.load()),
              static_cast<unsigned long long>(log->inserts.load()), live_checked, repairs,
              killed_before_ready);
  // Otherwise the kills never hit a busy writer and the test proved nothing.
  EXPECT_GT(log->operations.load(), 10000u);
  EXPECT_GT(log->inserts.load(), 5000u);
  EXPECT_GT(live_checked, 10000u);
  ::munmap(log, sizeof(CrashLog));
}

}  // namespace
}  // namespace rtpc
