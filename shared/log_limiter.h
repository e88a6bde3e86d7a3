#pragma once
// LogLimiter: at most `burst` lines of one event per window, so that an
// outage that fails every command (CLUSTER_ERROR, SESSION_FAILOVER, the
// NOTIFY_* warnings ...) logs a few lines a second instead of one per command. The first line let
// through after a suppressed spell carries how many lines were dropped, so
// the log still says how much happened. Pure: the caller passes the time.

#include <cstdint>

namespace rtpc {

class LogLimiter {
 public:
  explicit LogLimiter(uint32_t burst = 10, uint64_t window_ms = 1000) : burst_(burst), window_ms_(window_ms) {}

  // True when this line may be logged; `suppressed` is then the number of
  // lines refused since the last one allowed (0 when none).
  bool allow(uint64_t now_ms, uint64_t& suppressed) {
    if (now_ms >= window_start_ms_ + window_ms_ || now_ms < window_start_ms_) {
      window_start_ms_ = now_ms;
      in_window_ = 0;
    }
    if (in_window_ >= burst_) {
      ++suppressed_;
      return false;
    }
    ++in_window_;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  uint32_t burst_;
  uint64_t window_ms_;
  uint64_t window_start_ms_ = 0;
  uint32_t in_window_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace rtpc
