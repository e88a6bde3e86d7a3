// libFuzzer target: everything the cluster does with a member's reply, on
// arbitrary bytes. Parsed stats and I replies must format and parse back to
// the same text.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "shared/rtpp_reply.h"
#include "shared/rtpp_stats.h"

namespace {

using rtpc::CommandType;
using rtpc::ReplyKind;

void check(bool ok) {
  if (!ok) std::abort();
}

// Above about 1e9 the spacing of doubles nears the 6 printed decimals, so a
// printed value may not read back to the same digits.
bool printsExactly(double v) { return std::fabs(v) < 1e9; }

const CommandType kAllTypes[] = {
    CommandType::kUpdate, CommandType::kLookup,  CommandType::kDelete, CommandType::kPlay,
    CommandType::kNoPlay, CommandType::kRecord,  CommandType::kCopy,   CommandType::kNoRecord,
    CommandType::kQuery,  CommandType::kVersion, CommandType::kVersionFeature,
    CommandType::kInfo,   CommandType::kStats,   CommandType::kDeleteAll,
};

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void fuzzClassify(std::string_view body) {
  const rtpc::RtppReply r = rtpc::classifyReply(body);
  check(inside(r.body, body) && inside(r.address, body) && inside(r.subresults, body));
  for (const CommandType t : kAllTypes) (void)rtpc::isPositiveReply(t, r);
  const bool negative = rtpc::isNegativeUlReply(r);
  if (r.kind == ReplyKind::kPort) check(r.port <= 65535 && !r.address.empty());
  if (negative) check(!rtpc::isPositiveReply(CommandType::kUpdate, r));

  rtpc::ReplyBuffer out;
  if (rtpc::formatReplyWithAddress(r, "203.0.113.7", out)) {
    const rtpc::RtppReply again = rtpc::classifyReply(out.view());
    check(again.port == r.port);
    check(again.subresults == r.subresults);
    if (r.port != 0) check(again.kind == ReplyKind::kPort && again.address == "203.0.113.7" && !again.ipv6);
  }
  out.clear();
  if (rtpc::formatReplyWithAddress(r, "2001:db8::7", out) && r.port != 0) {
    const rtpc::RtppReply again = rtpc::classifyReply(out.view());
    check(again.kind == ReplyKind::kPort && again.ipv6 && again.port == r.port);
  }
}

void fuzzInfo(std::string_view body) {
  rtpc::InfoStats s;
  if (!rtpc::parseInfoReply(body, s)) return;
  rtpc::ReplyBuffer out;
  check(rtpc::formatInfoReply(s, s.has_load, out) || s.has_load);  // only a huge load can overflow
  if (out.empty()) return;
  rtpc::InfoStats back;
  check(rtpc::parseInfoReply(out.view(), back));
  check(back.sessions_created == s.sessions_created && back.active_sessions == s.active_sessions &&
        back.active_streams == s.active_streams && back.packets_received == s.packets_received &&
        back.packets_transmitted == s.packets_transmitted && back.has_load == s.has_load);
  rtpc::ReplyBuffer again;
  check(rtpc::formatInfoReply(back, back.has_load, again));
  if (printsExactly(s.average_load)) check(again.view() == out.view());
  back += s;
  check(back.active_sessions == s.active_sessions * 2);
}

void fuzzStats(std::string_view wire, std::string_view body) {
  rtpc::RtppCommand cmd;
  check(rtpc::parseCommand(wire, rtpc::Framing::kStream, cmd).ok);
  rtpc::StatsValues v;
  if (!rtpc::parseStatsReply(cmd, body, v)) return;
  check(v.count == cmd.extra_count);
  rtpc::ReplyBuffer out;
  if (!rtpc::formatStatsReply(cmd, v, out)) return;  // huge doubles may not fit
  rtpc::StatsValues back;
  check(rtpc::parseStatsReply(cmd, out.view(), back));
  bool exact = true;
  for (size_t i = 0; i < v.count; ++i) {
    check(back.values[i].is_double == v.values[i].is_double);
    if (v.values[i].is_double) {
      exact = exact && printsExactly(v.values[i].real);
    } else {
      check(back.values[i].integer == v.values[i].integer);
    }
  }
  rtpc::ReplyBuffer again;
  check(rtpc::formatStatsReply(cmd, back, again));
  if (exact) check(again.view() == out.view());
  check(rtpc::addStats(back, v));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view datagram(reinterpret_cast<const char*>(data), size);
  std::string_view cookie, body = datagram;
  if (rtpc::splitReplyCookie(datagram, cookie, body)) {
    check(!cookie.empty() && inside(cookie, datagram) && inside(body, datagram));
    check(cookie.size() + 1 + body.size() == datagram.size());
  }
  for (const std::string_view b : {datagram, body}) {
    fuzzClassify(b);
    fuzzInfo(b);
    fuzzStats("G nsess_created nsess_destroyed ncmds_rcvd pps_in total_duration", b);
    fuzzStats("Gv nsess_created npkts_rcvd total_duration pps_in", b);
    fuzzStats("G", b);
  }
  return 0;
}
