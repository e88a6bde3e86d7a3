#pragma once
// RttHistogram: member command round-trip times in fixed buckets, the shape
// of a Prometheus histogram (exported as rtp_cluster_member_command_rtt_seconds).
// The smoothed average alone hides the tail that makes Kamailio time out.

#include <array>
#include <cstddef>
#include <cstdint>

namespace rtpc {

struct RttHistogram {
  // Upper bounds in microseconds; a last, implicit bucket is +Inf. From a
  // loopback relay (~30 us) to the longest <command_timeout> (10 s), so that
  // no round trip a member may take lands in +Inf only.
  static constexpr std::array<uint32_t, 15> kBoundsUs = {100,    250,    500,     1000,    2500,
                                                          5000,   10000,  25000,   50000,   100000,
                                                          250000, 1000000, 2500000, 5000000, 10000000};
  static constexpr size_t kBuckets = kBoundsUs.size() + 1;

  std::array<uint64_t, kBuckets> counts{};  // per bucket, not cumulative
  uint64_t sum_us = 0;

  void observe(uint64_t us) {
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    ++counts[i];
    sum_us += us;
  }
  uint64_t total() const {
    uint64_t n = 0;
    for (uint64_t c : counts) n += c;
    return n;
  }
};

}  // namespace rtpc
