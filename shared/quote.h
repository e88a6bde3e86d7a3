#pragma once
// Quoting untrusted text (config values, command-line arguments) into a
// one-line error message: a hostile or mistyped value must not be able to
// split the message over several lines or flood the log.

#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

#include "shared/utf8.h"

namespace rtpc {

inline constexpr size_t kMaxQuotedBytes = 64;

// Appends `text` to `out` with `"` and `\` backslash-escaped and bytes below
// 0x20 and 0x7f as \xNN, so that the quoted value cannot end early or break
// the line. Other bytes (UTF-8 names) pass as they are. The one escaping rule
// of messages and log lines.
template <typename Out>
Out appendEscaped(Out out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      *out++ = '\\';
      *out++ = ch;
    } else if (c < 0x20 || c == 0x7f) {
      *out++ = '\\';
      *out++ = 'x';
      *out++ = kHex[c >> 4];
      *out++ = kHex[c & 0xf];
    } else {
      *out++ = ch;
    }
  }
  return out;
}

// `"value"` escaped as appendEscaped() does, and values longer than
// kMaxQuotedBytes cut with `...` after the quote (between characters, so a
// cut UTF-8 value stays UTF-8).
inline std::string quoteForMessage(std::string_view text) {
  const bool cut = text.size() > kMaxQuotedBytes;
  if (cut) text = text.substr(0, utf8CutLength(text, kMaxQuotedBytes));
  std::string out;
  out.reserve(text.size() + 5);
  out += '"';
  appendEscaped(std::back_inserter(out), text);
  out += '"';
  if (cut) out += "...";
  return out;
}

// A name echoed bare in an admin answer, as the reference does
// (`ERROR: <name>: cluster not found`), but cut like a quoted value: the
// first kMaxQuotedBytes and `...`, so a 4 KiB word is not echoed whole.
// Control bytes (which no name holds) become \xNN.
inline std::string nameForMessage(std::string_view name) {
  const bool cut = name.size() > kMaxQuotedBytes;
  if (cut) name = name.substr(0, utf8CutLength(name, kMaxQuotedBytes));
  std::string out;
  out.reserve(name.size() + 3);
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  if (cut) out += "...";
  return out;
}

}  // namespace rtpc
