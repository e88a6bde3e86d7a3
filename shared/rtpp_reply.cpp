#include "shared/rtpp_reply.h"

namespace rtpc {

namespace {

constexpr bool isSeparator(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
constexpr bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSeparator(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSeparator(s.back())) s.remove_suffix(1);
  return s;
}

// Digits only, no sign; false on overflow past `limit`.
bool parseUnsigned(std::string_view s, uint64_t limit, uint64_t& v) {
  if (s.empty() || s.size() > 20) return false;
  v = 0;
  for (char c : s) {
    if (!isDigit(c)) return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (limit - d) / 10) return false;
    v = v * 10 + d;
  }
  return true;
}

bool parseSigned(std::string_view s, int64_t& v) {
  const bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  uint64_t u = 0;
  if (!parseUnsigned(s, static_cast<uint64_t>(INT64_MAX), u)) return false;
  v = neg ? -static_cast<int64_t>(u) : static_cast<int64_t>(u);
  return true;
}

// An address rtpproxy (or an -A advertised name) could print: an IPv6
// literal, an IPv4 dotted quad, or a host name. Excludes "0.000000" and plain
// numbers, so that two G values are not mistaken for "<port> <addr>".
bool looksLikeAddress(std::string_view s) {
  if (s.empty()) return false;
  size_t dots = 0;
  bool letter = false;
  bool colon = false;
  for (char c : s) {
    if (c == '.') {
      ++dots;
    } else if (c == ':') {
      colon = true;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      letter = true;
    } else if (!isDigit(c) && c != '-' && c != '[' && c != ']' && c != '%') {
      return false;
    }
  }
  return colon || letter || dots == 3;
}

bool isIpv4Literal(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isDigit(c) && c != '.') return false;
  }
  return true;
}

// Splits s at separators into at most max tokens; returns the count, or
// max + 1 when there are more.
size_t splitTokens(std::string_view s, std::string_view* tok, size_t max) {
  size_t count = 0;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && isSeparator(s[i])) ++i;
    if (i == s.size()) break;
    const size_t start = i;
    while (i < s.size() && !isSeparator(s[i])) ++i;
    if (count == max) return max + 1;
    tok[count++] = s.substr(start, i - start);
  }
  return count;
}

// "key: value" lines, as the I reply prints them.
bool isKeyValueText(std::string_view s) {
  size_t start = 0;
  bool any = false;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string_view::npos) end = s.size();
    const std::string_view line = trim(s.substr(start, end - start));
    if (!line.empty()) {
      const size_t colon = line.find(": ");
      if (colon == std::string_view::npos || colon == 0) return false;
      any = true;
    }
    start = end + 1;
  }
  return any;
}

}  // namespace

bool splitReplyCookie(std::string_view datagram, std::string_view& cookie, std::string_view& body) {
  size_t i = 0;
  while (i < datagram.size() && !isSeparator(datagram[i])) ++i;
  if (i == 0 || i == datagram.size()) return false;
  cookie = datagram.substr(0, i);
  body = datagram.substr(i + 1);
  return true;
}

RtppReply classifyReply(std::string_view raw) {
  RtppReply r;
  const std::string_view body = trim(raw);
  r.body = body;
  if (body.empty() || body.size() > kReplyBufferBytes) return r;
  for (char c : body) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && !isSeparator(c)) || u == 0x7f) return r;
  }

  std::string_view main = body;
  if (const size_t amp = body.find(" && "); amp != std::string_view::npos) {
    main = trim(body.substr(0, amp));
    r.subresults = trim(body.substr(amp + 4));
  }

  if (main.size() >= 2 && main[0] == 'E') {
    uint64_t code = 0;
    if (parseUnsigned(main.substr(1), 1000000, code)) {
      r.kind = ReplyKind::kError;
      r.error_code = static_cast<int>(code);
      return r;
    }
  }

  if (main.find('\n') != std::string_view::npos) {
    r.kind = isKeyValueText(main) ? ReplyKind::kMultiline : ReplyKind::kText;
    return r;
  }

  std::string_view tok[3];
  const size_t count = splitTokens(main, tok, 3);
  if (count == 1) {
    int64_t v = 0;
    if (parseSigned(tok[0], v)) {
      r.kind = ReplyKind::kNumber;
      r.number = v;
      if (v >= 0 && v <= 65535) r.port = static_cast<uint32_t>(v);
      return r;
    }
  } else if (count == 2 || (count == 3 && (tok[2] == "6" || tok[2] == "4"))) {
    // rtpengine appends the address family as "4" or "6"; rtpproxy only "6".

    uint64_t port = 0;
    if (parseUnsigned(tok[0], 65535, port) && looksLikeAddress(tok[1])) {
      r.kind = ReplyKind::kPort;
      r.port = static_cast<uint32_t>(port);
      r.address = tok[1];
      r.ipv6 = count == 3 && tok[2] == "6";
      return r;
    }
  }
  r.kind = ReplyKind::kText;
  return r;
}

bool isPositiveReply(CommandType type, const RtppReply& reply) {
  switch (type) {
    case CommandType::kUpdate:
    case CommandType::kLookup:
      return (reply.kind == ReplyKind::kPort || reply.kind == ReplyKind::kNumber) && reply.port > 0;
    case CommandType::kDelete:
    case CommandType::kNoPlay:
    case CommandType::kRecord:
    case CommandType::kNoRecord:
    case CommandType::kPlay:
      return reply.kind == ReplyKind::kNumber && reply.number == 0;
    case CommandType::kCopy:
      return (reply.kind == ReplyKind::kNumber && reply.number == 0) || reply.kind == ReplyKind::kPort;
    case CommandType::kVersion:
      return reply.kind == ReplyKind::kNumber && reply.number == 20040107;
    default:
      return reply.kind != ReplyKind::kError && reply.kind != ReplyKind::kMalformed;
  }
}

bool isNegativeUlReply(const RtppReply& reply) {
  return (reply.kind == ReplyKind::kNumber && reply.number == 0) ||
         (reply.kind == ReplyKind::kPort && reply.port == 0);
}

bool formatReplyWithAddress(const RtppReply& reply, std::string_view address, ReplyBuffer& out) {
  if (reply.kind != ReplyKind::kPort && reply.kind != ReplyKind::kNumber) return false;
  if (reply.kind == ReplyKind::kNumber && (reply.number < 0 || reply.number > 65535)) return false;
  const size_t mark = out.size();
  bool ok = out.appendUnsigned(reply.port);
  if (ok && reply.port != 0 && !address.empty()) {
    bool v6 = reply.ipv6;
    if (address.find(':') != std::string_view::npos) {
      v6 = true;
    } else if (isIpv4Literal(address)) {
      v6 = false;
    }
    ok = out.append(' ') && out.append(address) && (!v6 || out.append(" 6"));
  }
  if (ok && !reply.subresults.empty()) ok = out.append(" && ") && out.append(reply.subresults);
  if (!ok) out.truncate(mark);
  return ok;
}

}  // namespace rtpc
