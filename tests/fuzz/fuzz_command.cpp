// libFuzzer target: parse a command in both framings, write it back with a
// set of edits, and check that the output parses to the same command.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "shared/rtpp_command.h"

namespace {

using rtpc::CommandEdits;
using rtpc::CommandType;
using rtpc::Framing;
using rtpc::ParseResult;
using rtpc::RtppCommand;

void check(bool ok) {
  if (!ok) std::abort();
}

void checkSpans(const RtppCommand& c) {
  check(c.argc >= 1 && c.argc <= rtpc::kMaxTokens);
  check(c.subcommand_count <= rtpc::kMaxSubcommands);
  size_t total = c.argc;
  for (size_t s = 0; s < c.subcommand_count; ++s) {
    check(c.subcommand_argc[s] >= 1 && c.subcommand_argc[s] <= rtpc::kMaxTokens);
    check(c.subcommand_first[s] == total);
    total += c.subcommand_argc[s];
  }
  check(total == c.token_count);
  for (size_t i = 0; i < c.token_count; ++i) {
    const rtpc::TokenSpan t = c.tokens_[i];
    check(t.length > 0 && size_t{t.offset} + t.length <= c.text.size());
  }
  check(c.body.data() >= c.text.data() && c.body.data() + c.body.size() <= c.text.data() + c.text.size());
  check(size_t{c.extra_first} + c.extra_count <= c.argc);
}

bool sameTokens(const RtppCommand& a, const RtppCommand& b) {
  if (a.token_count != b.token_count || a.argc != b.argc || a.subcommand_count != b.subcommand_count) {
    return false;
  }
  for (size_t i = 0; i < a.token_count; ++i) {
    if (a.token(i) != b.token(i)) return false;
  }
  return true;
}

CommandEdits editSet(int n, const RtppCommand& c) {
  CommandEdits e;
  switch (n) {
    case 0: break;
    case 1: e.swap_tags = true; break;
    case 2: e.local_address = "10.0.0.1"; break;
    case 3: e.local_address = "2001:db8::1"; e.drop_remote_route = true; break;
    case 4: e.drop_notify = true; break;
    case 5: e.notify_socket = "tcp:%%CC_SELF%%:22297"; e.notify_tag = "t%20x"; break;
    case 6: e.notify_socket = "unix:/run/n"; break;
    case 7:
      if (c.type == CommandType::kUpdate || c.type == CommandType::kLookup) e.type_letter = 'L';
      e.swap_tags = true;
      e.local_address = "{ext}";
      break;
    default: break;
  }
  return e;
}

int expectedArgc(const RtppCommand& c, const CommandEdits& e) {
  if (c.type != CommandType::kUpdate) return c.argc;
  const bool has_notify = !c.notify_socket.empty();
  const bool drop = e.drop_notify || e.type_letter == 'L';
  if (has_notify && drop) return c.argc - 2;
  if (!has_notify && !drop && !e.notify_socket.empty() && !e.notify_tag.empty()) return c.argc + 2;
  return c.argc;
}

void roundTrip(const RtppCommand& c) {
  rtpc::CommandBuffer plain;
  check(rtpc::formatCommand(c, {}, plain));
  RtppCommand back;
  check(rtpc::parseCommand(plain.view(), Framing::kStream, back).ok);
  check(back.type == c.type && sameTokens(c, back));
  rtpc::CommandBuffer again;
  check(rtpc::formatCommand(back, {}, again));
  check(again.view() == plain.view());

  for (int n = 1; n < 8; ++n) {
    const CommandEdits e = editSet(n, c);
    rtpc::CommandBuffer out;
    if (!rtpc::formatCommand(c, e, out)) continue;  // a very long command may not fit
    if (out.size() > rtpc::kMaxCommandBytes) continue;
    RtppCommand edited;
    const ParseResult r = rtpc::parseCommand(out.view(), Framing::kStream, edited);
    check(r.ok);
    checkSpans(edited);
    const CommandType want = e.type_letter == 'L' ? CommandType::kLookup : c.type;
    check(edited.type == want);
    check(edited.argc == expectedArgc(c, e));
    check(edited.subcommand_count == c.subcommand_count);
    if (e.swap_tags && !c.to_tag.empty() && c.type != CommandType::kVersionFeature) {
      check(edited.from_tag == c.to_tag && edited.to_tag == c.from_tag);
    }
    if (!e.local_address.empty() && (want == CommandType::kUpdate || want == CommandType::kLookup)) {
      rtpc::UlModifiers m;
      check(rtpc::scanUlModifiers(edited.modifiers, m) == 0);
      check(m.local_length != 0);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The listener's prefetch glance reads every datagram before parsing.
  const rtpc::DatagramGlance g = rtpc::glanceAtDatagram(text);
  check(g.cookie.data() == text.data() && g.cookie.size() <= size);
  check(g.call_id.empty() || (g.call_id.data() >= text.data() &&
                              g.call_id.data() + g.call_id.size() <= text.data() + size));
  for (const Framing framing : {Framing::kDatagram, Framing::kStream}) {
    RtppCommand c;
    const ParseResult r = rtpc::parseCommand(text, framing, c);
    if (framing == Framing::kStream) check(!r.has_cookie && c.cookie.empty());
    if (r.has_cookie) {
      check(!c.cookie.empty() && c.cookie.find('\0') == std::string_view::npos);
    }
    if (!r.ok) {
      check(r.error_code >= 0);
      continue;
    }
    checkSpans(c);
    rtpc::UlModifiers m;
    if (c.type == CommandType::kUpdate || c.type == CommandType::kLookup) {
      check(rtpc::scanUlModifiers(c.modifiers, m) == 0);
    }
    roundTrip(c);
  }
  return 0;
}
