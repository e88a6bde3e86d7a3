#pragma once
// Small time conversions every process needs: wall-clock milliseconds for
// the shared-memory records, monotonic nanoseconds for ages and rates, and
// libevent's timeval from milliseconds.

#include <sys/time.h>
#include <time.h>

#include <chrono>
#include <cstdint>

namespace rtpc {

inline uint64_t unixNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// CLOCK_MONOTONIC in nanoseconds (a vDSO read, no syscall).
inline uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

inline timeval msToTimeval(uint64_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

}  // namespace rtpc
