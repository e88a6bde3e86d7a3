#pragma once
// Free text (error messages, admin command lines, answers) as a value in a
// key=value log line: `error={}` with logQuoted(text) writes `error="..."`
// escaped by appendEscaped(), so a `"` in the text cannot end the value
// early and a newline cannot start a fake line. Never cut: the whole error
// is the point of the line. Formats straight into spdlog's buffer.

#include <fmt/format.h>

#include <string_view>

#include "shared/quote.h"

namespace rtpc {

struct LogQuoted {
  std::string_view text;
};

// The view must outlive the log call only (pass temporaries freely).
inline LogQuoted logQuoted(std::string_view text) { return LogQuoted{text}; }

// A cluster or member name as a log value: bare when it is one plain token
// (`cluster=c1`, as before), quoted like logQuoted() when it is empty or
// holds a space, a quote, a backslash or '=' (`cluster="Core 1"`), so a
// free-text name (REFERENCE.md section 2) cannot split the key=value line.
struct LogName {
  std::string_view text;
};
inline LogName logName(std::string_view name) { return LogName{name}; }

constexpr bool isPlainLogToken(std::string_view text) {
  if (text.empty()) return false;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '=') return false;
  }
  return true;
}

}  // namespace rtpc

template <>
struct fmt::formatter<rtpc::LogQuoted> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }

  template <typename FormatContext>
  auto format(const rtpc::LogQuoted& value, FormatContext& ctx) const {
    auto out = ctx.out();
    *out++ = '"';
    out = rtpc::appendEscaped(out, value.text);
    *out++ = '"';
    return out;
  }
};

template <>
struct fmt::formatter<rtpc::LogName> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }

  template <typename FormatContext>
  auto format(const rtpc::LogName& value, FormatContext& ctx) const {
    auto out = ctx.out();
    if (rtpc::isPlainLogToken(value.text)) {
      for (const char c : value.text) *out++ = c;
      return out;
    }
    *out++ = '"';
    out = rtpc::appendEscaped(out, value.text);
    *out++ = '"';
    return out;
  }
};
