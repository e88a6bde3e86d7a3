#pragma once
// I / Ib / Il and G / Gv replies: parse, sum across members, format back
// exactly as rtpproxy prints them (PROTOCOL.md section 4).

#include <cstdint>
#include <string_view>

#include "shared/rtpp_command.h"
#include "shared/rtpp_reply.h"

namespace rtpc {

struct InfoStats {
  uint64_t sessions_created = 0;
  uint64_t active_sessions = 0;
  uint64_t active_streams = 0;
  uint64_t packets_received = 0;
  uint64_t packets_transmitted = 0;
  double average_load = 0.0;
  bool has_load = false;  // the reply had an "average load:" line

  // Sums every field, the load too (rtpproxy always reports 0; a caller that
  // wants a mean divides by the member count).
  InfoStats& operator+=(const InfoStats& other);
};

// Parses the "key: value" lines of an I reply. Unknown keys are ignored (a
// newer rtpproxy may add lines); returns false when a known key has a bad
// value or "active sessions" is missing.
bool parseInfoReply(std::string_view body, InfoStats& out);

// rtpproxy's exact text, each line ending in "\n"; the load line only when
// with_load (the `l` modifier).
bool formatInfoReply(const InfoStats& s, bool with_load, ReplyBuffer& out);

// A stat value: integer counters print as %llu, the double ones (total_duration,
// pps_in: the only G counters rtpproxy prints with %f) as %f.
struct StatValue {
  bool is_double = false;
  uint64_t integer = 0;
  double real = 0.0;
};

// Whether a G counter name is printed as a double by rtpproxy.
bool isDoubleStat(std::string_view name);
// Whether the name is a G counter rtpproxy knows (PROTOCOL.md section 4).
bool isKnownStat(std::string_view name);

struct StatsValues {
  uint8_t count = 0;
  StatValue values[kMaxStatNames];
};

// Parses a G reply for the names requested in cmd (cmd.type == kStats): the
// same count of space-separated values, "name=value" when cmd has the `v`
// modifier. Returns false on any mismatch.
bool parseStatsReply(const RtppCommand& cmd, std::string_view body, StatsValues& out);

// Adds b into a value by value (same count required; returns false otherwise).
bool addStats(StatsValues& a, const StatsValues& b);

// Formats the values as rtpproxy would answer cmd (with names for `v`), no "\n".
bool formatStatsReply(const RtppCommand& cmd, const StatsValues& values, ReplyBuffer& out);

}  // namespace rtpc
