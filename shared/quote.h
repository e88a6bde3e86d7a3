#pragma once
// Quoting untrusted text (config values, command-line arguments) into a
// one-line error message: a hostile or mistyped value must not be able to
// split the message over several lines or flood the log.

#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

namespace rtpc {

inline constexpr size_t kMaxQuotedBytes = 64;

// Appends `text` to `out` with `"` and `\` backslash-escaped and bytes below
// 0x20 and 0x7f as \xNN, so that the quoted value cannot end early or break
// the line. The one escaping rule of messages and log lines.
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
// kMaxQuotedBytes cut with `...` after the quote.
inline std::string quoteForMessage(std::string_view text) {
  const bool cut = text.size() > kMaxQuotedBytes;
  if (cut) text = text.substr(0, kMaxQuotedBytes);
  std::string out;
  out.reserve(text.size() + 5);
  out += '"';
  appendEscaped(std::back_inserter(out), text);
  out += '"';
  if (cut) out += "...";
  return out;
}

}  // namespace rtpc
