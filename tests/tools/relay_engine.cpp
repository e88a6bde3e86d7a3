#include "tests/tools/relay_engine.h"

#include <arpa/inet.h>

#include <cstring>

#include "shared/rtpp_reply.h"
#include "shared/rtpp_stats.h"

namespace rtpc {

namespace {

constexpr bool isSeparator(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
constexpr char toUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
constexpr bool isDigit(char c) { return c >= '0' && c <= '9'; }

constexpr std::string_view kProtocolVersion = "20040107";
constexpr std::string_view kNotifyFeature = "20081224";

// cmd/rpcpv1_ver.c:52-76 (PROTOCOL.md 2.1).
constexpr std::string_view kFeatures[] = {
    "20040107", "20050322", "20060704", "20071116", "20071218", "20080403", "20081102",
    "20081224", "20090810", "20140323", "20140617", "20141004", "20150330", "20150420",
    "20150617", "20191015", "20200226", "20230205", "20230314", "20230424", "20250523",
    "20251015", "20260306", "20260308", "20260309",
};

// Q names (cmd/rpcpv1_query.c:161-244); the jitter/ipi ones print as %f.
struct QueryName {
  std::string_view name;
  bool is_double;
};
constexpr QueryName kQueryNames[] = {
    {"ttl", false},        {"npkts_ina", false},  {"npkts_ino", false},  {"longest_ipi", true},
    {"rtpa_jlast", true},  {"rtpa_jmax", true},   {"rtpa_javg", true},   {"nrelayed", false},
    {"ndropped", false},   {"rtpa_nsent", false}, {"rtpa_nrcvd", false}, {"rtpa_ndups", false},
    {"rtpa_nlost", false}, {"rtpa_perrs", false},
};

std::string_view firstToken(std::string_view text, size_t& end) {
  size_t i = 0;
  while (i < text.size() && isSeparator(text[i])) ++i;
  size_t j = i;
  while (j < text.size() && !isSeparator(text[j])) ++j;
  end = j;
  return text.substr(i, j - i);
}

bool allIn(std::string_view s, const char* allowed) {
  for (char c : s) {
    if (std::strchr(allowed, c) == nullptr) return false;
  }
  return true;
}

bool hasModifier(std::string_view mods, char upper) {
  for (char c : mods) {
    if (toUpper(c) == upper) return true;
  }
  return false;
}

// rtpproxy only accepts numeric remote addresses (AI_NUMERICHOST).
bool isNumericRemote(std::string_view ip, std::string_view port, bool v6) {
  if (ip.empty() || ip.size() >= 64 || port.empty() || port.size() > 5) return false;
  for (char c : port) {
    if (!isDigit(c)) return false;
  }
  uint32_t p = 0;
  for (char c : port) p = p * 10 + static_cast<uint32_t>(c - '0');
  if (p > 65535) return false;
  char buf[64];
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = '\0';
  unsigned char addr[16];
  return inet_pton(v6 ? AF_INET6 : AF_INET, buf, addr) == 1;
}

bool isIpv6Literal(std::string_view s) { return s.find(':') != std::string_view::npos; }

struct UlFlags {
  int error = 0;  // E11 / E12
  bool weak = false;
  bool ipv6 = false;
  bool new_port = false;
  std::string_view codecs;
  std::string_view local;  // inside l..., brackets removed; "{label}" kept
};

// Walks modifiers already validated by scanUlModifiers.
UlFlags scanFlags(std::string_view m) {
  UlFlags f;
  for (size_t i = 0; i < m.size();) {
    const char k = toUpper(m[i++]);
    switch (k) {
      case 'E': if (f.error == 0) f.error = 11; break;
      case 'I': if (f.error == 0) f.error = 12; break;
      case 'W': f.weak = true; break;
      case '6': f.ipv6 = true; break;
      case 'N': f.new_port = true; break;
      case 'Z':
        while (i < m.size() && isDigit(m[i])) ++i;
        break;
      case 'C': {
        const size_t start = i;
        while (i < m.size() && (isDigit(m[i]) || m[i] == ',')) ++i;
        f.codecs = m.substr(start, i - start);
        break;
      }
      case 'L':
      case 'R': {
        size_t start = i;
        size_t end;
        if (i < m.size() && (m[i] == '[' || m[i] == '{')) {
          const char close = m[i] == '[' ? ']' : '}';
          while (i < m.size() && m[i] != close) ++i;
          if (i < m.size()) ++i;
          end = i;
          if (m[start] == '[') {
            ++start;
            --end;
          }
        } else {
          while (i < m.size() && (isDigit(m[i]) || m[i] == '.')) ++i;
          end = i;
        }
        if (k == 'L') f.local = m.substr(start, end - start);
        break;
      }
      default: break;
    }
  }
  return f;
}

template <size_t N>
void appendFixed6(double v, FixedBuffer<N>& out) {
  char tmp[64];
  const int n = std::snprintf(tmp, sizeof tmp, "%f", v);
  if (n > 0) out.append(std::string_view(tmp, static_cast<size_t>(n)));
}

}  // namespace

size_t letterSlot(std::string_view text, Framing framing) {
  size_t end = 0;
  if (framing == Framing::kDatagram) {
    firstToken(text, end);
    text.remove_prefix(end);
  }
  const std::string_view word = firstToken(text, end);
  if (word.empty() || word == "notify") return kLetterSlots - 1;
  const char c = toUpper(word[0]);
  if (c == 'V' && word.size() >= 2 && toUpper(word[1]) == 'F') return 26;
  if (c >= 'A' && c <= 'Z') return static_cast<size_t>(c - 'A');
  return kLetterSlots - 1;
}

std::string_view letterSlotName(size_t slot) {
  static constexpr std::string_view kLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  if (slot < 26) return kLetters.substr(slot, 1);
  return slot == 26 ? "VF" : "other";
}

std::string urlDecode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

RelayEngine::RelayEngine(RelayConfig config)
    : config_(std::move(config)), sessions_(config_.port_min, config_.port_max) {
  advertised_is_v6_ = isIpv6Literal(config_.advertised);
  if (config_.advertised6.empty() && advertised_is_v6_) config_.advertised6 = config_.advertised;
}

void RelayEngine::handle(std::string_view text, Framing framing, std::string_view source_ip,
                         uint64_t now_ms, RelayReplyBuffer& out) {
  out.clear();
  ++counters_.ncmds_rcvd;
  ++counters_.ncmds_repld;

  // `notify CALLID` is the double's own command; the parser would read it as N.
  {
    std::string_view rest = text;
    size_t end = 0;
    std::string_view cookie;
    if (framing == Framing::kDatagram) {
      cookie = firstToken(rest, end);
      rest.remove_prefix(end);
    }
    const std::string_view word = firstToken(rest, end);
    if (word == "notify" && (framing == Framing::kStream || !cookie.empty())) {
      if (!cookie.empty()) out.append(cookie) && out.append(' ');
      const int code = notifyCommand(rest.substr(end), now_ms, out);
      if (code != 0) {
        ++counters_.ncmds_errs;
        out.append('E') && out.appendUnsigned(static_cast<uint64_t>(code));
      } else {
        ++counters_.ncmds_succd;
      }
      out.append('\n');
      return;
    }
  }

  RtppCommand cmd;
  const ParseResult parsed = parseCommand(text, framing, cmd);
  if (!parsed.ok) {
    ++counters_.ncmds_errs;
    if (parsed.has_cookie) out.append(cmd.cookie) && out.append(' ');
    out.append('E') && out.appendUnsigned(static_cast<uint64_t>(parsed.error_code)) && out.append('\n');
    return;
  }
  if (framing == Framing::kDatagram) out.append(cmd.cookie) && out.append(' ');
  const size_t mark = out.size();
  const int code = execute(cmd, source_ip, now_ms, out);
  if (code > 0) {
    ++counters_.ncmds_errs;
    out.truncate(mark);
    out.append('E') && out.appendUnsigned(static_cast<uint64_t>(code));
  } else if (code < 0) {
    ++counters_.ncmds_errs;  // L on an unknown session answers 0 but is an error
  } else {
    ++counters_.ncmds_succd;
  }
  if (out.size() == mark || out.view().back() != '\n') out.append('\n');
  if (out.overflowed()) {
    out.clear();
    if (framing == Framing::kDatagram) out.append(cmd.cookie) && out.append(' ');
    out.append("E25\n");
  }
}

int RelayEngine::notifyCommand(std::string_view rest, uint64_t now_ms, RelayReplyBuffer& out) {
  size_t end = 0;
  const std::string_view call_id = firstToken(rest, end);
  size_t end2 = 0;
  if (call_id.empty() || !firstToken(rest.substr(end), end2).empty()) return ecode::kArgCount;
  const size_t before = pending_.size();
  const size_t n = timeoutCall(call_id, now_ms);
  if (n == 0) return ecode::kSessionUnknown;
  out.appendUnsigned(pending_.size() - before);
  return 0;
}

size_t RelayEngine::timeoutCall(std::string_view call_id, uint64_t now_ms) {
  const size_t n = sessions_.expireCall(call_id, now_ms, [this](const RelaySession& s) {
    if (!s.notify_target.empty()) pending_.push_back({s.notify_target, s.notify_tag});
  });
  counters_.nsess_timeout += n;
  return n;
}

int RelayEngine::replyAddress(std::string_view modifiers, std::string_view& addr, bool& v6) const {
  const UlFlags f = scanFlags(modifiers);
  if (!f.local.empty()) {
    // l{label}: no labels are configured; l<addr>: must be one we have.
    if (f.local.front() == '{') return 31;
    if (f.local == config_.advertised) {
      addr = config_.advertised;
      v6 = advertised_is_v6_;
      return 0;
    }
    if (!config_.advertised6.empty() && f.local == config_.advertised6) {
      addr = config_.advertised6;
      v6 = true;
      return 0;
    }
    return 31;
  }
  if (f.ipv6) {
    if (config_.advertised6.empty()) return 36;
    addr = config_.advertised6;
    v6 = true;
    return 0;
  }
  addr = config_.advertised;
  v6 = advertised_is_v6_;
  return 0;
}

void RelayEngine::setNotify(RelaySession& s, const RtppCommand& cmd, std::string_view source_ip) {
  s.notify_target.clear();
  s.notify_tag.clear();
  if (cmd.notify_socket.empty()) return;  // a U without notify args disables the handler
  bool permitted = false;
  for (const std::string& n : config_.notify_sockets) permitted = permitted || n == cmd.notify_socket;
  if (!permitted) return;  // rtpproxy only logs it
  std::string target(cmd.notify_socket);
  static constexpr std::string_view kSelf = "%%CC_SELF%%";
  if (const size_t at = target.find(kSelf); at != std::string::npos) {
    std::string self = source_ip.empty() ? std::string("127.0.0.1") : std::string(source_ip);
    if (isIpv6Literal(self)) self = "[" + self + "]";
    target.replace(at, kSelf.size(), self);
  }
  s.notify_target = std::move(target);
  s.notify_tag = urlDecode(cmd.notify_tag);
}

int RelayEngine::checkSubcommands(const RtppCommand& cmd) const {
  for (size_t i = 0; i < cmd.subcommand_count; ++i) {
    const size_t argc = cmd.subcommand_argc[i];
    if (argc == 0) return ecode::kSubcommand;
    const std::string_view word = cmd.subcommandToken(i, 0);
    const std::string_view mods = word.substr(1);
    switch (toUpper(word[0])) {
      case 'L': {
        if (cmd.type != CommandType::kUpdate || cmd.to_tag.empty() || argc != 3) return ecode::kSubcommand;
        UlModifiers ul;
        if (scanUlModifiers(mods, ul) != 0) return ecode::kSubcommand;
        break;
      }
      case 'D':
        if (argc != 1 || !allIn(mods, "wW")) return ecode::kSubcommand;
        break;
      case 'S': {
        if (argc != 2 || !allIn(mods, "rR")) return ecode::kSubcommand;
        const std::string_view arg = cmd.subcommandToken(i, 1);
        if (!(arg.starts_with("ttl=") || arg.starts_with("tos=")) || arg.size() == 4 ||
            !allIn(arg.substr(4), "0123456789")) {
          return ecode::kSubcommand;
        }
        break;
      }
      default:
        return ecode::kSubcommand;
    }
  }
  return 0;
}

void RelayEngine::runSubcommands(const RtppCommand& cmd, std::string_view call_id, RelaySession* s,
                                 uint64_t now_ms, RelayReplyBuffer& out) {
  // ` && <text>` per subcommand; a silent success shows as ` && 0` only when
  // a later one prints (cmd/rpcpv1_ul.c:142-170); the first failure ends it.
  size_t silent = 0;
  for (size_t i = 0; i < cmd.subcommand_count; ++i) {
    const std::string_view word = cmd.subcommandToken(i, 0);
    const char k = toUpper(word[0]);
    bool ok = s != nullptr;
    char text[96];
    size_t text_len = 0;
    if (ok && k == 'L') {
      const std::string_view ip = cmd.subcommandToken(i, 1);
      const std::string_view port = cmd.subcommandToken(i, 2);
      std::string_view addr;
      bool v6 = false;
      const UlFlags f = scanFlags(word.substr(1));
      ok = f.error == 0 && replyAddress(word.substr(1), addr, v6) == 0 &&
           isNumericRemote(ip, port, f.ipv6);
      // The second leg: what `L call ip port from to` addresses.
      const uint16_t p = ok ? sessions_.legPort(*s, 1, f.new_port) : 0;
      ok = ok && p != 0 && addr.size() + 12 < sizeof text;
      if (ok) {
        FixedBuffer<96> b;
        b.appendUnsigned(p) && b.append(' ') && b.append(addr) && (!v6 || b.append(" 6"));
        std::memcpy(text, b.data(), b.size());
        text_len = b.size();
      }
    } else if (ok && k == 'D') {
      sessions_.erase(call_id, s, now_ms);
      s = nullptr;
    } else if (ok && k == 'S') {
      const std::string_view arg = cmd.subcommandToken(i, 1);
      if (arg.starts_with("ttl=")) {
        int v = 0;
        for (char c : arg.substr(4)) v = v < 1000000 ? v * 10 + (c - '0') : v;
        s->ttl_s = v;
      }
    }
    if (!ok) {
      for (; silent > 0; --silent) out.append(" && 0");
      out.append(" && -1");
      return;
    }
    if (text_len == 0) {
      ++silent;
      continue;
    }
    for (; silent > 0; --silent) out.append(" && 0");
    out.append(" && ") && out.append(std::string_view(text, text_len));
  }
}

int RelayEngine::executeUl(const RtppCommand& cmd, std::string_view source_ip, uint64_t now_ms,
                           RelayReplyBuffer& out) {
  const bool is_u = cmd.type == CommandType::kUpdate;
  const UlFlags f = scanFlags(cmd.modifiers);
  if (f.error != 0) return f.error;
  std::string_view addr;
  bool v6 = false;
  if (const int code = replyAddress(cmd.modifiers, addr, v6); code != 0) return code;
  if (!isNumericRemote(cmd.remote_ip, cmd.remote_port, f.ipv6)) return 37;
  if (is_u && !cmd.notify_socket.empty() && config_.notify_sockets.empty()) return 75;
  if (const int code = checkSubcommands(cmd); code != 0) return code;

  RelaySessions::Found found = sessions_.find(cmd.call_id, cmd.from_tag, cmd.to_tag);
  RelaySession* s = found.session;
  int leg = found.leg;
  uint16_t port = 0;
  if (s == nullptr) {
    if (!is_u) {
      out.append('0');
      return -1;
    }
    if (faults_.refuse_code != 0) return faults_.refuse_code;
    s = &sessions_.create(cmd.call_id, cmd.from_tag, now_ms);
    s->ttl_s = config_.session_ttl_s;
    leg = 0;
    port = sessions_.legPort(*s, 0, false);
    if (port == 0) {
      sessions_.erase(cmd.call_id, s, now_ms);
      return ecode::kNoPorts;
    }
  } else {
    if (!is_u) leg = 1 - leg;
    port = sessions_.legPort(*s, leg, f.new_port);
    if (port == 0) return 71;
  }
  if (is_u) {
    (f.weak ? s->weak : s->strong) = true;
    setNotify(*s, cmd, source_ip);
  }
  if (!f.codecs.empty()) s->codecs.assign(f.codecs);
  out.appendUnsigned(port) && out.append(' ') && out.append(addr) && (!v6 || out.append(" 6"));
  runSubcommands(cmd, cmd.call_id, s, now_ms, out);
  return 0;
}

int RelayEngine::executeQuery(const RtppCommand& cmd, RelaySession& s, RelayReplyBuffer& out) {
  const bool verbose = hasModifier(cmd.modifiers, 'V');
  if (cmd.extra_count == 0) {
    if (verbose) {
      out.append("ttl=") && out.appendUnsigned(static_cast<uint64_t>(s.ttl_s)) &&
          out.append(" npkts_ina=0 npkts_ino=0 nrelayed=0 ndropped=0");
    } else {
      out.appendUnsigned(static_cast<uint64_t>(s.ttl_s)) && out.append(" 0 0 0 0");
    }
    return 0;
  }
  for (size_t i = 0; i < cmd.extra_count; ++i) {
    const std::string_view name = cmd.token(cmd.extra_first + i);
    const QueryName* q = nullptr;
    for (const QueryName& candidate : kQueryNames) {
      if (candidate.name == name) q = &candidate;
    }
    if (q == nullptr) return 62;
    if (i != 0) out.append(' ');
    if (verbose) out.append(name) && out.append('=');
    if (q->name == "ttl") {
      out.appendUnsigned(static_cast<uint64_t>(s.ttl_s));
    } else if (q->is_double) {
      appendFixed6(0.0, out);
    } else {
      out.append('0');
    }
  }
  return 0;
}

int RelayEngine::executeInfo(const RtppCommand& cmd, RelayReplyBuffer& out) {
  if (faults_.rtpengine_stats) return 8;
  InfoStats s;
  s.sessions_created = sessions_.created();
  s.active_sessions = sessions_.created() - sessions_.destroyed();
  s.active_streams = sessions_.activeStreams();
  ReplyBuffer tmp;
  if (!formatInfoReply(s, hasModifier(cmd.modifiers, 'L'), tmp)) return 25;
  out.append(tmp.view());
  return 0;
}

int RelayEngine::executeStats(const RtppCommand& cmd, RelayReplyBuffer& out) {
  if (faults_.rtpengine_stats) return 8;
  StatsValues values;
  values.count = cmd.extra_count;
  for (size_t i = 0; i < cmd.extra_count; ++i) {
    const std::string_view name = cmd.token(cmd.extra_first + i);
    if (!isKnownStat(name)) return 68;
    StatValue& v = values.values[i];
    v.is_double = isDoubleStat(name);
    if (name == "total_duration") v.real = sessions_.totalDurationS();
    if (name == "nsess_created") v.integer = sessions_.created();
    if (name == "nsess_destroyed") v.integer = sessions_.destroyed();
    if (name == "nsess_timeout") v.integer = counters_.nsess_timeout;
    if (name == "ncmds_rcvd") v.integer = counters_.ncmds_rcvd;
    if (name == "ncmds_rcvd_ndups") v.integer = counters_.ncmds_rcvd_ndups;
    if (name == "ncmds_succd") v.integer = counters_.ncmds_succd;
    if (name == "ncmds_errs") v.integer = counters_.ncmds_errs;
    if (name == "ncmds_repld") v.integer = counters_.ncmds_repld;
  }
  ReplyBuffer tmp;
  if (!formatStatsReply(cmd, values, tmp)) return 25;
  out.append(tmp.view());
  return 0;
}

int RelayEngine::execute(const RtppCommand& cmd, std::string_view source_ip, uint64_t now_ms,
                         RelayReplyBuffer& out) {
  switch (cmd.type) {
    case CommandType::kUpdate:
    case CommandType::kLookup:
      return executeUl(cmd, source_ip, now_ms, out);
    case CommandType::kVersion:
      out.append(kProtocolVersion);
      return 0;
    case CommandType::kVersionFeature: {
      bool known = false;
      for (std::string_view f : kFeatures) known = known || f == cmd.feature;
      if (cmd.feature == kNotifyFeature && config_.notify_sockets.empty()) known = false;
      out.append(known ? '1' : '0');
      return 0;
    }
    case CommandType::kInfo:
      return executeInfo(cmd, out);
    case CommandType::kStats:
      return executeStats(cmd, out);
    case CommandType::kDeleteAll:
      sessions_.clear(now_ms);
      out.append('0');
      return 0;
    case CommandType::kDelete: {
      const bool weak = hasModifier(cmd.modifiers, 'W');
      if (sessions_.deleteMatching(cmd.call_id, cmd.from_tag, cmd.to_tag, weak, now_ms) == 0) {
        return ecode::kSessionUnknown;
      }
      out.append('0');
      return 0;
    }
    default:
      break;
  }
  // P S R C N Q: an existing session or E50.
  if (cmd.type == CommandType::kQuery) {
    if (const int code = checkSubcommands(cmd); code != 0) return code;
  }
  RelaySession* s = sessions_.find(cmd.call_id, cmd.from_tag, cmd.to_tag).session;
  if (s == nullptr) return ecode::kSessionUnknown;
  switch (cmd.type) {
    case CommandType::kPlay:
      if (cmd.play_name.starts_with("/nonexistent")) return 60;
      if (cmd.play_codecs == "session" && s->codecs.empty()) return 35;
      out.append('0');
      return 0;
    case CommandType::kCopy:
      if (hasModifier(cmd.modifiers, 'P')) {
        if (!cmd.copy_target.starts_with("udp:")) return 65;
        const uint16_t port = sessions_.copyPort(*s);
        if (port == 0) return 65;
        out.appendUnsigned(port) && out.append(' ') && out.append(config_.advertised) &&
            (!advertised_is_v6_ || out.append(" 6"));
        return 0;
      }
      out.append('0');
      return 0;
    case CommandType::kQuery: {
      if (const int code = executeQuery(cmd, *s, out); code != 0) return code;
      runSubcommands(cmd, cmd.call_id, s, now_ms, out);
      return 0;
    }
    default:  // S R N
      out.append('0');
      return 0;
  }
}

}  // namespace rtpc
