#include "shared/rtpp_command.h"

#include <cstring>

namespace rtpc {

namespace {

// rtpproxy splits on exactly these (rtpp_util.c); anything else, including
// non-ASCII bytes, belongs to a token.
constexpr bool isSeparator(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

constexpr char toUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

constexpr bool isDigit(char c) { return c >= '0' && c <= '9'; }

constexpr bool isHexDigit(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool isAndToken(const char* p, size_t len) { return len == 2 && p[0] == '&' && p[1] == '&'; }

struct ArgRange {
  uint8_t min;
  uint8_t max;
};

// PROTOCOL.md section 2 table, argc including the command word.
ArgRange argRange(CommandType t) {
  switch (t) {
    case CommandType::kUpdate: return {5, 8};
    case CommandType::kLookup: return {5, 6};
    case CommandType::kDelete: return {3, 4};
    case CommandType::kPlay: return {5, 6};
    case CommandType::kNoPlay: return {3, 4};
    case CommandType::kRecord: return {3, 4};
    case CommandType::kCopy: return {4, 5};
    case CommandType::kNoRecord: return {3, 4};
    case CommandType::kQuery: return {3, 15};
    case CommandType::kVersion: return {1, 1};
    case CommandType::kVersionFeature: return {2, 2};
    case CommandType::kInfo: return {1, 1};
    case CommandType::kStats: return {1, static_cast<uint8_t>(1 + kMaxStatNames)};
    case CommandType::kDeleteAll: return {1, 1};
  }
  return {0, 0};
}

bool takesModifiers(CommandType t) {
  return !(t == CommandType::kVersion || t == CommandType::kVersionFeature ||
           t == CommandType::kNoPlay || t == CommandType::kDeleteAll);
}

bool takesSubcommands(CommandType t) {
  return t == CommandType::kUpdate || t == CommandType::kLookup || t == CommandType::kQuery;
}

bool commandTypeFromWord(std::string_view word, CommandType& type, size_t& letter_len) {
  letter_len = 1;
  switch (toUpper(word[0])) {
    case 'U': type = CommandType::kUpdate; return true;
    case 'L': type = CommandType::kLookup; return true;
    case 'D': type = CommandType::kDelete; return true;
    case 'P': type = CommandType::kPlay; return true;
    case 'S': type = CommandType::kNoPlay; return true;
    case 'R': type = CommandType::kRecord; return true;
    case 'C': type = CommandType::kCopy; return true;
    case 'N': type = CommandType::kNoRecord; return true;
    case 'Q': type = CommandType::kQuery; return true;
    case 'I': type = CommandType::kInfo; return true;
    case 'G': type = CommandType::kStats; return true;
    case 'X': type = CommandType::kDeleteAll; return true;
    case 'V':
      if (word.size() >= 2 && toUpper(word[1]) == 'F') {
        type = CommandType::kVersionFeature;
        letter_len = 2;
      } else {
        type = CommandType::kVersion;
      }
      return true;
    default: return false;
  }
}

bool allCharsIn(std::string_view s, const char* allowed) {
  for (char c : s) {
    if (std::strchr(allowed, c) == nullptr) return false;
  }
  return true;
}

// The modifier checks rtpproxy makes before it looks a session up
// (rtpp_command.c handle_command, cmd/rpcpv1_*.c opts parsers).
int checkModifiers(const RtppCommand& cmd) {
  std::string_view m = cmd.modifiers;
  switch (cmd.type) {
    case CommandType::kDelete:
      return allCharsIn(m, "wW") ? 0 : ecode::kDeleteMod;
    case CommandType::kStats:
      return allCharsIn(m, "vV") ? 0 : ecode::kStatsMod;
    case CommandType::kInfo:
      return allCharsIn(m, "bBlL") ? 0 : ecode::kInfoMod;
    case CommandType::kQuery:
      return allCharsIn(m, "vV") ? 0 : ecode::kQueryMod;
    case CommandType::kRecord:
      if (m.empty()) return 0;
      if (toUpper(m[0]) == 'S') return m.size() == 1 ? 0 : ecode::kRecordPlayMod;
      if (toUpper(m[0]) == 'P') return ecode::kRecordPlayMod;
      return ecode::kRecordMod;
    case CommandType::kCopy:
      return allCharsIn(m, "sSpP") ? 0 : ecode::kRecordMod;
    case CommandType::kNoRecord:
      if (m.empty()) return 0;
      if (toUpper(m[0]) == 'A') return m.size() == 1 ? 0 : ecode::kRecordPlayMod;
      return ecode::kRecordMod;
    case CommandType::kPlay:
      return allCharsIn(m, "0123456789") ? 0 : ecode::kPlayCount;
    case CommandType::kUpdate:
    case CommandType::kLookup: {
      if (cmd.type == CommandType::kUpdate && !cmd.notify_tag.empty() &&
          !isValidNotifyTag(cmd.notify_tag)) {
        return ecode::kNotifyTag;
      }
      UlModifiers ul;
      return scanUlModifiers(m, ul);
    }
    default:
      return 0;
  }
}

void assignArguments(RtppCommand& c) {
  const uint8_t n = c.argc;
  switch (c.type) {
    case CommandType::kUpdate:
    case CommandType::kLookup:
      c.call_id = c.token(1);
      c.remote_ip = c.token(2);
      c.remote_port = c.token(3);
      c.from_tag = c.token(4);
      if (n == 6 || n == 8) c.to_tag = c.token(5);
      if (n >= 7) {
        c.notify_socket = c.token(n - 2);
        c.notify_tag = c.token(n - 1);
      }
      break;
    case CommandType::kDelete:
    case CommandType::kNoPlay:
    case CommandType::kRecord:
    case CommandType::kNoRecord:
      c.call_id = c.token(1);
      c.from_tag = c.token(2);
      if (n == 4) c.to_tag = c.token(3);
      break;
    case CommandType::kPlay:
      c.call_id = c.token(1);
      c.play_name = c.token(2);
      c.play_codecs = c.token(3);
      c.from_tag = c.token(4);
      if (n == 6) c.to_tag = c.token(5);
      break;
    case CommandType::kCopy:
      c.call_id = c.token(1);
      c.copy_target = c.token(2);
      c.from_tag = c.token(3);
      if (n == 5) c.to_tag = c.token(4);
      break;
    case CommandType::kQuery:
      c.call_id = c.token(1);
      c.from_tag = c.token(2);
      if (n >= 4) c.to_tag = c.token(3);
      if (n > 4) {
        c.extra_first = 4;
        c.extra_count = static_cast<uint8_t>(n - 4);
      }
      break;
    case CommandType::kVersionFeature:
      c.feature = c.token(1);
      break;
    case CommandType::kStats:
      c.extra_first = 1;
      c.extra_count = static_cast<uint8_t>(n - 1);
      break;
    default:
      break;
  }
}

// Resets what parse() fills; the token arrays are left alone because only the
// entries below the counts are ever read.
void resetCommand(RtppCommand& c, std::string_view text) {
  c.text = text;
  c.cookie = {};
  c.body = {};
  c.type = CommandType::kUpdate;
  c.modifiers = {};
  c.call_id = {};
  c.remote_ip = {};
  c.remote_port = {};
  c.from_tag = {};
  c.to_tag = {};
  c.notify_socket = {};
  c.notify_tag = {};
  c.play_name = {};
  c.play_codecs = {};
  c.copy_target = {};
  c.feature = {};
  c.extra_first = 0;
  c.extra_count = 0;
  c.argc = 0;
  c.subcommand_count = 0;
  c.token_count = 0;
}

ParseResult fail(int code, bool has_cookie) { return ParseResult{false, code, has_cookie}; }

// One U/L modifier as rtpproxy consumes it (cmd/rpcpv1_ul.c): the letter and
// what it swallows after itself.
struct UlSegment {
  char kind;        // upper-cased letter, or '6'
  size_t offset;
  size_t length;
  bool absorbs_digits;  // ends in [0-9.,]: a following '6' would be read as part of it
};

// Reads the `<addr>` of an `l`/`r` modifier starting at i. Returns the end
// offset or 0 on a syntax error.
size_t scanModifierAddress(std::string_view m, size_t i, bool allow_label, bool& absorbs) {
  absorbs = false;
  if (i < m.size() && (m[i] == '[' || (allow_label && m[i] == '{'))) {
    const char close = m[i] == '[' ? ']' : '}';
    size_t j = i + 1;
    while (j < m.size() && m[j] != close) ++j;
    if (j == m.size() || j == i + 1) return 0;
    return j + 1;
  }
  size_t j = i;
  while (j < m.size() && (isDigit(m[j]) || m[j] == '.')) ++j;
  if (j == i) return 0;
  absorbs = true;
  return j;
}

// Splits the modifiers into segments, calling on(segment) for each. Returns 0
// or the error code of the first bad one (left to right, as rtpproxy stops).
template <typename OnSegment>
int forEachUlSegment(std::string_view m, OnSegment&& on) {
  bool have_codecs = false;
  size_t i = 0;
  while (i < m.size()) {
    const size_t start = i;
    const char k = toUpper(m[i++]);
    bool absorbs = false;
    switch (k) {
      case 'A': case 'S': case 'E': case 'I': case 'W': case 'N': case '6':
        break;
      case 'Z': {
        uint32_t v = 0;
        size_t digits = 0;
        while (i < m.size() && isDigit(m[i])) {
          if (v < 100000) v = v * 10 + static_cast<uint32_t>(m[i] - '0');
          ++i;
          ++digits;
        }
        if (digits == 0 || v < 1 || v > 999) return ecode::kPtime;
        absorbs = true;
        break;
      }
      case 'C': {
        const size_t first = i;
        while (i < m.size() && (isDigit(m[i]) || m[i] == ',')) ++i;
        if (i == first || have_codecs) return ecode::kCodecs;
        have_codecs = true;
        absorbs = true;
        break;
      }
      case 'L':
      case 'R': {
        const size_t end = scanModifierAddress(m, i, k == 'L', absorbs);
        if (end == 0) return k == 'L' ? ecode::kLocalAddrSyntax : ecode::kRemoteAddrSyntax;
        i = end;
        break;
      }
      default:
        return ecode::kBadULModifier;
    }
    on(UlSegment{k, start, i - start, absorbs});
  }
  return 0;
}

int fromTagIndex(const RtppCommand& c) {
  switch (c.type) {
    case CommandType::kUpdate:
    case CommandType::kLookup:
    case CommandType::kPlay: return 4;
    case CommandType::kCopy: return 3;
    case CommandType::kDelete:
    case CommandType::kNoPlay:
    case CommandType::kRecord:
    case CommandType::kNoRecord:
    case CommandType::kQuery: return 2;
    default: return -1;
  }
}

bool appendLocalAddress(std::string_view addr, CommandBuffer& out) {
  const bool bracket = addr.find(':') != std::string_view::npos && addr.front() != '[';
  return out.append('l') && (!bracket || out.append('[')) && out.append(addr) &&
         (!bracket || out.append(']'));
}

bool appendEditedModifiers(const RtppCommand& cmd, const CommandEdits& e, CommandBuffer& out) {
  // Flags first: '6' must not follow an IPv4 address, a ptime or a codec list.
  size_t six = 0;
  forEachUlSegment(cmd.modifiers, [&](const UlSegment& s) { six += s.kind == '6'; });
  for (size_t i = 0; i < six; ++i) {
    if (!out.append('6')) return false;
  }
  bool ok = true;
  bool local_done = e.local_address.empty();
  const int rc = forEachUlSegment(cmd.modifiers, [&](const UlSegment& s) {
    if (!ok || s.kind == '6') return;
    if (s.kind == 'L' && !e.local_address.empty()) {
      if (!local_done) ok = appendLocalAddress(e.local_address, out);
      local_done = true;
      return;
    }
    if (s.kind == 'R' && e.drop_remote_route) return;
    ok = out.append(cmd.modifiers.substr(s.offset, s.length));
  });
  if (rc != 0) return false;  // a command that parse() accepted never gets here
  if (ok && !local_done) ok = appendLocalAddress(e.local_address, out);
  return ok;
}

bool formatMain(const RtppCommand& cmd, const CommandEdits& e, CommandBuffer& out) {
  const std::string_view word = cmd.token(0);
  const char letter = e.type_letter != 0 ? e.type_letter : word[0];
  if (!out.append(letter)) return false;
  const bool ul = cmd.type == CommandType::kUpdate || cmd.type == CommandType::kLookup;
  if (ul && (!e.local_address.empty() || e.drop_remote_route)) {
    if (!appendEditedModifiers(cmd, e, out)) return false;
  } else if (!out.append(word.substr(1))) {
    return false;
  }

  const int from_idx = fromTagIndex(cmd);
  const bool has_to = !cmd.to_tag.empty();
  const bool swap = e.swap_tags && has_to && from_idx > 0;
  const bool has_notify = !cmd.notify_socket.empty();
  const bool drop_notify = e.drop_notify || toUpper(letter) == 'L';
  const int notify_idx = has_notify ? cmd.argc - 2 : -1;

  for (int i = 1; i < cmd.argc; ++i) {
    std::string_view t = cmd.token(static_cast<size_t>(i));
    if (has_notify && i >= notify_idx) {
      if (drop_notify) continue;
      if (i == notify_idx && !e.notify_socket.empty()) t = e.notify_socket;
      if (i == notify_idx + 1 && !e.notify_tag.empty()) t = e.notify_tag;
    } else if (swap && i == from_idx) {
      t = cmd.to_tag;
    } else if (swap && i == from_idx + 1) {
      t = cmd.from_tag;
    }
    if (!out.append(' ') || !out.append(t)) return false;
  }
  if (!has_notify && !drop_notify && cmd.type == CommandType::kUpdate && !e.notify_socket.empty() &&
      !e.notify_tag.empty()) {
    if (!out.append(' ') || !out.append(e.notify_socket) || !out.append(' ') ||
        !out.append(e.notify_tag)) {
      return false;
    }
  }
  return true;
}

}  // namespace

char commandLetter(CommandType type) {
  switch (type) {
    case CommandType::kUpdate: return 'U';
    case CommandType::kLookup: return 'L';
    case CommandType::kDelete: return 'D';
    case CommandType::kPlay: return 'P';
    case CommandType::kNoPlay: return 'S';
    case CommandType::kRecord: return 'R';
    case CommandType::kCopy: return 'C';
    case CommandType::kNoRecord: return 'N';
    case CommandType::kQuery: return 'Q';
    case CommandType::kVersion: return 'V';
    case CommandType::kVersionFeature: return 'V';
    case CommandType::kInfo: return 'I';
    case CommandType::kStats: return 'G';
    case CommandType::kDeleteAll: return 'X';
  }
  return '?';
}

std::string_view RtppCommand::subcommandText(size_t sub) const {
  if (sub >= subcommand_count || subcommand_argc[sub] == 0) return {};
  const TokenSpan first = tokens_[subcommand_first[sub]];
  const TokenSpan last = tokens_[subcommand_first[sub] + subcommand_argc[sub] - 1];
  return text.substr(first.offset, static_cast<size_t>(last.offset + last.length - first.offset));
}

bool isValidNotifyTag(std::string_view tag) {
  for (size_t i = 0; i < tag.size(); ++i) {
    if (tag[i] != '%') continue;
    if (i + 2 >= tag.size() || !isHexDigit(tag[i + 1]) || !isHexDigit(tag[i + 2])) return false;
    i += 2;
  }
  return true;
}

int scanUlModifiers(std::string_view modifiers, UlModifiers& out) {
  out = UlModifiers{};
  if (modifiers.size() > UINT16_MAX) return ecode::kSyntax;
  return forEachUlSegment(modifiers, [&out](const UlSegment& s) {
    switch (s.kind) {
      case '6': out.ipv6 = true; break;
      case 'W': out.weak = true; break;
      case 'N': out.new_port = true; break;
      case 'L':
        out.local_offset = static_cast<uint16_t>(s.offset);
        out.local_length = static_cast<uint16_t>(s.length);
        break;
      case 'R':
        out.remote_offset = static_cast<uint16_t>(s.offset);
        out.remote_length = static_cast<uint16_t>(s.length);
        break;
      default: break;
    }
  });
}

ParseResult parseCommand(std::string_view text, Framing framing, RtppCommand& out) {
  resetCommand(out, text);
  const char* const p = text.data();
  const size_t n = text.size();
  size_t i = 0;

  bool has_cookie = false;
  if (framing == Framing::kDatagram) {
    while (i < n && isSeparator(p[i])) ++i;
    const size_t start = i;
    // A NUL ends the cookie so that an echoed cookie never carries one.
    while (i < n && !isSeparator(p[i]) && p[i] != '\0') ++i;
    if (i == start) return fail(ecode::kSyntax, false);
    out.cookie = text.substr(start, i - start);
    has_cookie = true;
  }
  if (n > kMaxCommandBytes) return fail(ecode::kSyntax, has_cookie);
  if (std::memchr(p + i, '\0', n - i) != nullptr) return fail(ecode::kSyntax, has_cookie);

  // Tokenize: `&&` tokens open subcommands; each part holds at most kMaxTokens.
  bool dangling = false;  // `&&` with nothing after it
  bool pending = false;   // the last `&&` has no token yet
  uint8_t* part_argc = &out.argc;
  uint16_t count = 0;
  for (;;) {
    while (i < n && isSeparator(p[i])) ++i;
    if (i == n) break;
    const size_t start = i;
    while (i < n && !isSeparator(p[i])) ++i;
    const size_t len = i - start;
    if (isAndToken(p + start, len)) {
      if (pending) dangling = true;
      if (out.subcommand_count == kMaxSubcommands) return fail(ecode::kSyntax, has_cookie);
      out.subcommand_first[out.subcommand_count] = count;
      out.subcommand_argc[out.subcommand_count] = 0;
      part_argc = &out.subcommand_argc[out.subcommand_count];
      ++out.subcommand_count;
      pending = true;
      continue;
    }
    if (*part_argc == kMaxTokens) return fail(ecode::kSyntax, has_cookie);
    ++*part_argc;
    out.tokens_[count++] = TokenSpan{static_cast<uint16_t>(start), static_cast<uint16_t>(len)};
    pending = false;
  }
  out.token_count = count;
  if (pending) dangling = true;
  // No command word (nothing after the cookie, or a leading `&&`).
  if (out.argc == 0) return fail(ecode::kSyntax, has_cookie);

  const TokenSpan last = out.tokens_[count - 1];
  out.body = text.substr(out.tokens_[0].offset,
                         static_cast<size_t>(last.offset + last.length - out.tokens_[0].offset));

  const std::string_view word = out.token(0);
  size_t letter_len = 1;
  if (!commandTypeFromWord(word, out.type, letter_len)) return fail(ecode::kUnknownCommand, has_cookie);
  out.modifiers = word.substr(letter_len);

  const ArgRange range = argRange(out.type);
  if (out.argc < range.min || out.argc > range.max) return fail(ecode::kArgCount, has_cookie);
  if (!out.modifiers.empty() && !takesModifiers(out.type)) return fail(ecode::kModifiers, has_cookie);
  if (out.subcommand_count != 0 && !takesSubcommands(out.type)) {
    return fail(ecode::kSubcommand, has_cookie);
  }
  if (dangling) return fail(ecode::kSubcommand, has_cookie);

  assignArguments(out);
  if (const int code = checkModifiers(out); code != 0) return fail(code, has_cookie);
  return ParseResult{true, 0, has_cookie};
}

bool formatCommand(const RtppCommand& cmd, const CommandEdits& edits, CommandBuffer& out) {
  if (cmd.argc == 0) return false;
  const size_t mark = out.size();
  bool ok = formatMain(cmd, edits, out);
  for (size_t s = 0; ok && s < cmd.subcommand_count; ++s) {
    ok = out.append(" &&");
    for (size_t t = 0; ok && t < cmd.subcommand_argc[s]; ++t) {
      ok = out.append(' ') && out.append(cmd.subcommandToken(s, t));
    }
  }
  if (!ok) out.truncate(mark);
  return ok;
}

DatagramGlance glanceAtDatagram(std::string_view d) {
  const auto word_end = [&](size_t p) {
    while (p < d.size() && d[p] != ' ' && d[p] != '\n') ++p;
    return p;
  };
  const auto skip_spaces = [&](size_t p) {
    while (p < d.size() && d[p] == ' ') ++p;
    return p;
  };
  DatagramGlance g;
  const size_t cookie_end = word_end(0);
  g.cookie = d.substr(0, cookie_end);
  const size_t call_id_start = skip_spaces(word_end(skip_spaces(cookie_end)));
  g.call_id = d.substr(call_id_start, word_end(call_id_start) - call_id_start);
  return g;
}

}  // namespace rtpc
