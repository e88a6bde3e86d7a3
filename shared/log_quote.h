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
