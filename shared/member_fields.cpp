#include "shared/member_fields.h"

#include <utility>

#include "shared/quote.h"
#include "shared/utf8.h"

namespace rtpc {
namespace {

std::string complaint(std::string_view label, std::string_view problem) {
  std::string text;
  text.reserve(label.size() + problem.size());
  text += label;
  text += problem;
  return text;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Digits with an optional leading '+' and single '_' between digits, as the
// reference's int() takes them ("2_500" is 2500 in Python 3).
bool isUnsignedDecimal(std::string_view text) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (isDigit(text[i])) continue;
    if (text[i] == '_' && i > 0 && i + 1 < text.size() && isDigit(text[i - 1]) && isDigit(text[i + 1])) continue;
    return false;
  }
  return true;
}

// Parses what isUnsignedDecimal() accepts, no larger than `max`.
bool parseUnsigned(std::string_view text, uint64_t max, uint64_t& value) {
  if (!isUnsignedDecimal(text)) return false;
  if (text.front() == '+') text.remove_prefix(1);
  uint64_t v = 0;
  for (char c : text) {
    if (c == '_') continue;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (v > (max - digit) / 10) return false;
    v = v * 10 + digit;
  }
  value = v;
  return true;
}

}  // namespace

std::optional<std::string> checkNameField(std::string_view text, std::string_view label) {
  if (text.empty()) return complaint(label, " must not be empty");
  if (text.size() > kMaxNameBytes) {
    return complaint(label, " is " + std::to_string(text.size()) + " bytes, at most " +
                                std::to_string(kMaxNameBytes) + " allowed");
  }
  if (!isValidUtf8(text)) return complaint(label, " must be UTF-8 text, got " + quoteForMessage(text));
  if (hasControlCharacter(text)) {
    return complaint(label, " must not contain control characters, got " + quoteForMessage(text));
  }
  return std::nullopt;
}

std::optional<std::string> parseProtocolField(std::string_view text, std::string_view label, Transport& out) {
  const std::optional<Transport> transport = parseTransport(text);
  if (!transport) {
    return complaint(label, " must be one of udp, udp6, unix, cunix, tcp, tcp6, got " + quoteForMessage(text));
  }
  out = *transport;
  return std::nullopt;
}

std::optional<std::string> parseAddressField(Transport transport, std::string_view text, std::string_view label,
                                             uint16_t default_port, SocketAddress& out) {
  if (text.empty()) return complaint(label, " must not be empty");
  AddressResult result = parseAddress(transport, text, default_port);
  if (!result.address) return complaint(label, ": " + result.error);
  out = std::move(*result.address);
  return std::nullopt;
}

std::optional<std::string> parseIntegerField(std::string_view text, uint32_t min, uint32_t max,
                                             std::string_view label, uint32_t& out) {
  uint64_t v = 0;
  // A number too large for 64 bits is still a number: "at most", not "an integer".
  if (!isUnsignedDecimal(text) || (parseUnsigned(text, UINT64_MAX, v) && v < min)) {
    return complaint(label, " must be an integer >= " + std::to_string(min) + ", got " + quoteForMessage(text));
  }
  if (!parseUnsigned(text, max, v)) {
    return complaint(label, " must be at most " + std::to_string(max) + ", got " + quoteForMessage(text));
  }
  out = static_cast<uint32_t>(v);
  return std::nullopt;
}

std::optional<std::string> parseStatusField(std::string_view text, std::string_view label, AdminStatus& out) {
  const std::optional<AdminStatus> status = parseAdminStatus(text);
  if (!status) return complaint(label, " must be ACTIVE or SUSPENDED, got " + quoteForMessage(text));
  out = *status;
  return std::nullopt;
}

std::optional<std::string> checkHostField(std::string_view text, std::string_view label) {
  if (text.empty()) return std::nullopt;
  // Brackets make an IPv6 literal unambiguous (no port split).
  const bool v6 = text.find(':') != std::string_view::npos;
  const AddressResult r =
      v6 ? parseAddress(Transport::kUdp6, "[" + std::string(text) + "]") : parseAddress(Transport::kUdp, text);
  if (!r.address || r.address->host != text) {
    return complaint(label, " must be an IP address or host name, got " + quoteForMessage(text));
  }
  return std::nullopt;
}

std::optional<std::string> setMemberField(MemberConfig& member, MemberField field, std::string_view text,
                                          std::string_view label) {
  switch (field) {
    case MemberField::kName:
      if (auto problem = checkNameField(text, label)) return problem;
      member.name = std::string(text);
      return std::nullopt;
    case MemberField::kProtocol:
      return parseProtocolField(text, label, member.address.transport);
    case MemberField::kAddress:
      return parseAddressField(member.address.transport, text, label, kDefaultControlPort, member.address);
    case MemberField::kWeight:
      return parseIntegerField(text, 0, kMaxWeight, label, member.weight);
    case MemberField::kCapacity:
      return parseIntegerField(text, 1, kMaxCapacity, label, member.capacity);
    case MemberField::kStatus:
      return parseStatusField(text, label, member.status);
    case MemberField::kWanAddress:
    case MemberField::kLanAddress:
    case MemberField::kCmdOutAddress: {
      if (auto problem = checkHostField(text, label)) return problem;
      std::string& target = field == MemberField::kWanAddress   ? member.wan_address
                            : field == MemberField::kLanAddress ? member.lan_address
                                                                : member.cmd_out_address;
      target = std::string(text);
      return std::nullopt;
    }
  }
  return complaint(label, " is not a member field");
}

}  // namespace rtpc
