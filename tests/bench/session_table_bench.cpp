// ns per SessionTable operation at 1k and 1M calls. Not a test: prints
// numbers for docs/ (run: build/tests/bench/session_table_bench).

#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "shared/session_table.h"

namespace {

using Clock = std::chrono::steady_clock;

double nsPer(Clock::time_point start, size_t ops) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / static_cast<double>(ops);
}

void run(uint32_t max_calls) {
  const size_t bytes = rtpc::SessionTable::bytesFor(max_calls);
  void* mem = ::operator new(bytes, std::align_val_t(64));
  rtpc::SessionTable* table = rtpc::SessionTable::create(mem, bytes, max_calls);

  // Call-ids shaped like Kamailio's (random hex + host), made beforehand.
  std::mt19937_64 rng(1);
  std::vector<std::string> ids;
  ids.reserve(2 * size_t{max_calls});
  char buf[64];
  for (size_t i = 0; i < 2 * size_t{max_calls}; ++i) {
    std::snprintf(buf, sizeof buf, "%016llx-%08x@192.0.2.10", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned>(i));
    ids.emplace_back(buf);
  }
  // Ids are visited in allocation order so that the numbers show the table's
  // own cache misses (its buckets are random by hashing), not the test's: a
  // real call-id sits in the datagram just received.
  std::vector<uint32_t> order(max_calls);
  for (uint32_t i = 0; i < max_calls; ++i) order[i] = i;

  uint64_t now_ms = 1000;
  auto t0 = Clock::now();
  for (uint32_t i = 0; i < max_calls; ++i) table->bind(ids[i], static_cast<uint16_t>(i % 16), now_ms);
  const double bind_new = nsPer(t0, max_calls);

  const int rounds = max_calls < 100000 ? 1000 : 3;
  size_t found = 0;
  t0 = Clock::now();
  for (int r = 0; r < rounds; ++r) {
    now_ms += 1000;
    for (uint32_t i : order) found += table->lookup(ids[i], now_ms).has_value();
  }
  const double lookup_hit = nsPer(t0, size_t{max_calls} * rounds);

  t0 = Clock::now();
  for (int r = 0; r < rounds; ++r) {
    for (uint32_t i : order) found += table->lookup(ids[max_calls + i], now_ms).has_value();
  }
  const double lookup_miss = nsPer(t0, size_t{max_calls} * rounds);

  t0 = Clock::now();
  for (int r = 0; r < rounds; ++r) {
    for (uint32_t i : order) table->bind(ids[i], static_cast<uint16_t>(r % 16), now_ms);
  }
  const double bind_existing = nsPer(t0, size_t{max_calls} * rounds);

  // Twice max_calls new calls: the table runs full and evicts.
  now_ms += 1000;
  t0 = Clock::now();
  for (size_t i = max_calls; i < ids.size(); ++i) table->bind(ids[i], 1, now_ms++);
  const double bind_pressure = nsPer(t0, ids.size() - max_calls);

  std::printf(
      "max_calls=%-8u bytes/call=%.1f  bind(new)=%.1f ns  lookup(hit)=%.1f ns  lookup(miss)=%.1f ns  "
      "bind(existing)=%.1f ns  bind(full table)=%.1f ns  evictions=%llu  (found %zu)\n",
      max_calls, static_cast<double>(bytes) / max_calls, bind_new, lookup_hit, lookup_miss, bind_existing,
      bind_pressure, static_cast<unsigned long long>(table->liveEvictions()), found);
  ::operator delete(mem, std::align_val_t(64));
}

}  // namespace

int main() {
  run(1000);
  run(1000000);
  return 0;
}
