#include "shared/rtpp_stats.h"

#include <charconv>

namespace rtpc {

namespace {

constexpr bool isSeparator(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSeparator(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSeparator(s.back())) s.remove_suffix(1);
  return s;
}

bool parseU64(std::string_view s, uint64_t& v) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool parseDouble(std::string_view s, double& v) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// printf("%f"): fixed, 6 decimals, no locale.
template <size_t N>
bool appendFixed(double v, FixedBuffer<N>& out) {
  char tmp[400];  // DBL_MAX in fixed notation is 309 digits + 7
  const auto [ptr, ec] = std::to_chars(tmp, tmp + sizeof tmp, v, std::chars_format::fixed, 6);
  if (ec != std::errc()) return false;
  return out.append(std::string_view(tmp, static_cast<size_t>(ptr - tmp)));
}

constexpr std::string_view kIntegerStats[] = {
    "nsess_created", "nsess_destroyed", "nsess_timeout", "nsess_complete", "nsess_nortp",
    "nsess_owrtp", "nsess_nortcp", "nsess_owrtcp", "nplrs_created", "nplrs_destroyed",
    "npkts_rcvd", "npkts_played", "npkts_relayed", "npkts_resizer_in", "npkts_resizer_out",
    "npkts_resizer_discard", "npkts_discard", "ncmds_rcvd", "ncmds_rcvd_ndups", "ncmds_succd",
    "ncmds_errs", "ncmds_repld", "rtpa_nsent", "rtpa_nrcvd", "rtpa_ndups", "rtpa_nlost",
    "rtpa_perrs",
};

bool hasVerbose(const RtppCommand& cmd) {
  for (char c : cmd.modifiers) {
    if (c == 'v' || c == 'V') return true;
  }
  return false;
}

std::string_view statName(const RtppCommand& cmd, size_t i) {
  return cmd.token(static_cast<size_t>(cmd.extra_first) + i);
}

struct InfoKey {
  std::string_view key;
  uint64_t InfoStats::*field;
};

constexpr InfoKey kInfoKeys[] = {
    {"sessions created", &InfoStats::sessions_created},
    {"active sessions", &InfoStats::active_sessions},
    {"active streams", &InfoStats::active_streams},
    {"packets received", &InfoStats::packets_received},
    {"packets transmitted", &InfoStats::packets_transmitted},
};

}  // namespace

InfoStats& InfoStats::operator+=(const InfoStats& other) {
  sessions_created += other.sessions_created;
  active_sessions += other.active_sessions;
  active_streams += other.active_streams;
  packets_received += other.packets_received;
  packets_transmitted += other.packets_transmitted;
  average_load += other.average_load;
  has_load = has_load || other.has_load;
  return *this;
}

bool parseInfoReply(std::string_view body, InfoStats& out) {
  InfoStats s;
  bool have_active = false;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string_view::npos) end = body.size();
    const std::string_view line = trim(body.substr(start, end - start));
    start = end + 1;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (key == "average load") {
      if (!parseDouble(value, s.average_load)) return false;
      s.has_load = true;
      continue;
    }
    for (const InfoKey& k : kInfoKeys) {
      if (key != k.key) continue;
      if (!parseU64(value, s.*k.field)) return false;
      if (k.field == &InfoStats::active_sessions) have_active = true;
      break;
    }
  }
  if (!have_active) return false;
  out = s;
  return true;
}

bool formatInfoReply(const InfoStats& s, bool with_load, ReplyBuffer& out) {
  const size_t mark = out.size();
  bool ok = true;
  for (const InfoKey& k : kInfoKeys) {
    ok = ok && out.append(k.key) && out.append(": ") && out.appendUnsigned(s.*k.field) &&
         out.append('\n');
  }
  if (ok && with_load) {
    ok = out.append("average load: ") && appendFixed(s.average_load, out) && out.append('\n');
  }
  if (!ok) out.truncate(mark);
  return ok;
}

bool isDoubleStat(std::string_view name) { return name == "total_duration" || name == "pps_in"; }

bool isKnownStat(std::string_view name) {
  if (isDoubleStat(name)) return true;
  for (std::string_view known : kIntegerStats) {
    if (name == known) return true;
  }
  return false;
}

bool parseStatsReply(const RtppCommand& cmd, std::string_view body, StatsValues& out) {
  if (cmd.type != CommandType::kStats || cmd.extra_count > kMaxStatNames) return false;
  const bool verbose = hasVerbose(cmd);
  const std::string_view text = trim(body);
  StatsValues parsed;
  size_t i = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && isSeparator(text[pos])) ++pos;
    if (pos == text.size()) break;
    const size_t start = pos;
    while (pos < text.size() && !isSeparator(text[pos])) ++pos;
    std::string_view value = text.substr(start, pos - start);
    if (i == cmd.extra_count) return false;
    const std::string_view name = statName(cmd, i);
    if (verbose) {
      if (value.size() <= name.size() + 1 || value.substr(0, name.size()) != name ||
          value[name.size()] != '=') {
        return false;
      }
      value.remove_prefix(name.size() + 1);
    }
    StatValue& v = parsed.values[i];
    v.is_double = isDoubleStat(name);
    if (v.is_double ? !parseDouble(value, v.real) : !parseU64(value, v.integer)) return false;
    ++i;
  }
  if (i != cmd.extra_count) return false;
  parsed.count = static_cast<uint8_t>(i);
  out = parsed;
  return true;
}

bool addStats(StatsValues& a, const StatsValues& b) {
  if (a.count != b.count || a.count > kMaxStatNames) return false;
  for (size_t i = 0; i < a.count; ++i) {
    if (a.values[i].is_double != b.values[i].is_double) return false;
  }
  for (size_t i = 0; i < a.count; ++i) {
    a.values[i].integer += b.values[i].integer;
    a.values[i].real += b.values[i].real;
  }
  return true;
}

bool formatStatsReply(const RtppCommand& cmd, const StatsValues& values, ReplyBuffer& out) {
  if (cmd.type != CommandType::kStats || values.count != cmd.extra_count ||
      values.count > kMaxStatNames) {
    return false;
  }
  const bool verbose = hasVerbose(cmd);
  const size_t mark = out.size();
  bool ok = true;
  for (size_t i = 0; ok && i < values.count; ++i) {
    const StatValue& v = values.values[i];
    if (i != 0) ok = out.append(' ');
    if (ok && verbose) ok = out.append(statName(cmd, i)) && out.append('=');
    if (ok) ok = v.is_double ? appendFixed(v.real, out) : out.appendUnsigned(v.integer);
  }
  if (!ok) out.truncate(mark);
  return ok;
}

}  // namespace rtpc
