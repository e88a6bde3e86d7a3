#pragma once
// UTF-8 checks for names: cluster and member names are free text, as in the
// reference (spaces and any UTF-8), so what the loader and the admin parser
// refuse is only what no one could mean: bytes that are not UTF-8 text and
// control characters. Cutting a name for a message keeps whole characters,
// so a cut name is still valid UTF-8 (and still valid in JSON).

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rtpc {

// Length of the well-formed UTF-8 sequence at text[i] (1..4), or 0 when it is
// not one (stray continuation byte, overlong form, surrogate, > U+10FFFF,
// truncated). Follows the table of well-formed sequences in Unicode 15, 3.9.
constexpr size_t utf8SequenceLength(std::string_view text, size_t i) {
  const auto byte = [&text](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  uint8_t lo = 0x80;
  uint8_t hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;  // overlong
    if (b0 == 0xed) hi = 0x9f;  // surrogates
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;  // overlong
    if (b0 == 0xf4) hi = 0x8f;  // > U+10FFFF
  } else {
    return 0;
  }
  if (text.size() - i < n) return 0;
  const uint8_t b1 = byte(i + 1);
  if (b1 < lo || b1 > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return n;
}

constexpr bool isValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8SequenceLength(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// A control character of Unicode's Cc category: C0 (U+0000..U+001F), DEL and
// C1 (U+0080..U+009F, encoded C2 80..C2 9F). Expects valid UTF-8.
constexpr bool hasControlCharacter(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xc2 && i + 1 < text.size() && static_cast<uint8_t>(text[i + 1]) <= 0x9f) return true;
  }
  return false;
}

// The largest prefix length <= max that does not end inside a multi-byte
// character (for text that is not UTF-8 it may still cut one).
constexpr size_t utf8CutLength(std::string_view text, size_t max) {
  if (text.size() <= max) return text.size();
  size_t cut = max;
  // Step back over continuation bytes (at most 3) to the start of the character.
  for (size_t k = 0; k < 3 && cut > 0 && (static_cast<uint8_t>(text[cut]) & 0xc0) == 0x80; ++k) --cut;
  return cut;
}

}  // namespace rtpc
