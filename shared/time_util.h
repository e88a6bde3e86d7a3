#pragma once
// Small time conversions every process needs: wall-clock milliseconds for
// the shared-memory records, and libevent's timeval from milliseconds.

#include <sys/time.h>

#include <chrono>
#include <cstdint>

namespace rtpc {

inline uint64_t unixNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

inline timeval msToTimeval(uint64_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

}  // namespace rtpc
