#pragma once
// LoopStall: tells the worker's own silence from a relay's.
//
// When the worker's loop does not run (SIGSTOP, a busy host, a slow disk
// under the log), every command in flight passes its deadline at once while
// the relays' replies sit unread in the member sockets. Those deadlines say
// nothing about the relays. The loop observes the monotonic clock often (a
// timer every few tens of ms, and every timeout decision); a gap longer than
// the threshold between two observations was a stall: a window [start, end]
// during which nothing was read. A deadline that passed in that window (or
// during the pass that follows it, `slack`) is postponed to `end + grace`,
// so that the replies already queued are read first and a lost datagram has
// its retransmission; a command gets another postponement only if the loop
// stalled again across its new deadline.
//
// Pure: times are uint64_t milliseconds of CLOCK_MONOTONIC, passed in.

#include <cstdint>
#include <optional>

namespace rtpc {

class LoopStall {
 public:
  struct Window {
    uint64_t start_ms = 0;  // the last observation before the gap
    uint64_t end_ms = 0;    // the first one after it
  };

  // How often the worker observes the clock when nothing else does.
  static constexpr uint64_t kTickMs = 25;
  // A gap longer than this between two observations is a stall. Four ticks:
  // a busy host delays a timer by a few ms, not by 100.
  static constexpr uint64_t kThresholdMs = 100;

  explicit LoopStall(uint64_t grace_ms = 800, uint64_t threshold_ms = kThresholdMs)
      : grace_ms_(grace_ms), threshold_ms_(threshold_ms) {}

  // Time a postponed deadline gets after the stall's end (the command timeout).
  void setGrace(uint64_t grace_ms) { grace_ms_ = grace_ms; }
  uint64_t grace() const { return grace_ms_; }

  // The loop runs at now_ms. True when the gap since the previous
  // observation was a stall (then last() is that window).
  bool observe(uint64_t now_ms) {
    if (last_seen_ms_ != 0 && now_ms > last_seen_ms_ + threshold_ms_) {
      last_ = Window{last_seen_ms_, now_ms};
      ++count_;
      total_ms_ += now_ms - last_seen_ms_;
      last_seen_ms_ = now_ms;
      return true;
    }
    if (now_ms > last_seen_ms_) last_seen_ms_ = now_ms;
    return false;
  }

  // A deadline that has passed at now_ms (observed first). When the loop was
  // not running at it, the deadline to use instead; nullopt: a real timeout.
  std::optional<uint64_t> postpone(uint64_t deadline_ms, uint64_t now_ms) {
    observe(now_ms);
    if (count_ == 0) return std::nullopt;
    // The pass right after a stall runs the expired timers before it reads
    // any socket: a deadline that passes during that pass is the stall's too.
    const uint64_t slack = threshold_ms_;
    const uint64_t until = last_.end_ms + grace_ms_;
    if (deadline_ms >= last_.start_ms && deadline_ms <= last_.end_ms + slack && deadline_ms < until) return until;
    return std::nullopt;
  }

  uint64_t count() const { return count_; }       // stalls seen
  uint64_t totalMs() const { return total_ms_; }  // their summed length
  const Window& last() const { return last_; }

 private:
  uint64_t grace_ms_;
  uint64_t threshold_ms_;
  uint64_t last_seen_ms_ = 0;
  uint64_t count_ = 0;
  uint64_t total_ms_ = 0;
  Window last_;
};

}  // namespace rtpc
