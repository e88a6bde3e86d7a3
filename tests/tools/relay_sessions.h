#pragma once
// The session table of the relay double: call-id -> sessions, each keyed by
// the from_tag of the U that created it, with rtpproxy's lookup rules
// (PROTOCOL.md section 6) and an even-port allocator for the legs.
// No I/O; time is passed in.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace rtpc {

// Even ports in [min, max] (RTCP = port + 1, so max itself is never handed
// out when odd and port + 1 must be in range too).
class PortAllocator {
 public:
  PortAllocator(uint16_t min_port, uint16_t max_port);
  // 0 when the range is exhausted.
  uint16_t allocate();
  void release(uint16_t port);
  size_t inUse() const { return in_use_; }
  size_t capacity() const { return used_.size(); }

 private:
  uint16_t first_;
  std::vector<bool> used_;  // index i = port first_ + 2i
  size_t cursor_ = 0;
  size_t in_use_ = 0;
};

struct RelaySession {
  std::string from_tag;   // as the creating U sent it (may carry ";N")
  uint16_t ports[2]{};    // [0] the creating U's leg, [1] the other leg; 0 = none yet
  uint16_t copy_port = 0; // local port of a `Cp` fork
  bool strong = false;
  bool weak = false;
  int ttl_s = 60;
  std::string codecs;         // `c` list of the last U/L that had one
  std::string notify_target;  // resolved (%%CC_SELF%% replaced); empty = no handler
  std::string notify_tag;     // URL-decoded
  uint64_t created_ms = 0;
};

// Whether a stored tag is the command's tag, exactly or as `tag;N`.
bool tagMatches(std::string_view stored, std::string_view tag);

class RelaySessions {
 public:
  RelaySessions(uint16_t port_min, uint16_t port_max) : ports_(port_min, port_max) {}

  struct Found {
    RelaySession* session = nullptr;
    int leg = 0;  // 0: matched by from_tag, 1: by to_tag (rtpproxy find_stream)
  };
  // rtpproxy's find_stream. Callers other than U invert `leg`.
  Found find(std::string_view call_id, std::string_view from_tag, std::string_view to_tag);

  RelaySession& create(std::string_view call_id, std::string_view from_tag, uint64_t now_ms);

  // The port of a leg, allocated on first use (or replaced when renew); 0 when
  // the range is exhausted.
  uint16_t legPort(RelaySession& s, int leg, bool renew);
  uint16_t copyPort(RelaySession& s);

  // D semantics (PROTOCOL.md 2.3): every session of the call whose tag matches
  // from_tag or to_tag loses its strong (or, with weak, its weak) flag and is
  // freed when none is left. Returns how many matched.
  size_t deleteMatching(std::string_view call_id, std::string_view from_tag,
                        std::string_view to_tag, bool weak, uint64_t now_ms);
  // Frees one session (subcommand D, timeouts). The pointer must come from find().
  void erase(std::string_view call_id, const RelaySession* s, uint64_t now_ms);
  // Calls fn for every session of the call, then frees them all (timeout);
  // returns how many there were.
  size_t expireCall(std::string_view call_id, uint64_t now_ms,
                    const std::function<void(const RelaySession&)>& fn);
  void clear(uint64_t now_ms);

  size_t activeSessions() const { return active_; }
  size_t activeStreams() const { return streams_; }
  uint64_t created() const { return created_; }
  uint64_t destroyed() const { return destroyed_; }
  double totalDurationS() const { return static_cast<double>(total_duration_ms_) / 1000.0; }
  const PortAllocator& ports() const { return ports_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using CallMap = std::unordered_map<std::string, std::vector<RelaySession>, Hash, std::equal_to<>>;

  void release(RelaySession& s, uint64_t now_ms);

  CallMap calls_;
  PortAllocator ports_;
  size_t active_ = 0;
  size_t streams_ = 0;
  uint64_t created_ = 0;
  uint64_t destroyed_ = 0;
  uint64_t total_duration_ms_ = 0;
};

}  // namespace rtpc
