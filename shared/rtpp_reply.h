#pragma once
// RTPproxy replies: split the cookie off a datagram, classify the body, and
// rewrite the address of a U/L answer. Pure functions, no allocation.
// PROTOCOL.md sections 2-4 give the reply forms.

#include <cstdint>
#include <string_view>

#include "shared/fixed_buffer.h"
#include "shared/rtpp_command.h"

namespace rtpc {

// Replies rtpproxy sends fit in 1024 bytes; the extra room is for the cookie
// and for what the cluster adds (merged I/G answers, rewritten addresses).
inline constexpr size_t kReplyBufferBytes = 2048;
using ReplyBuffer = FixedBuffer<kReplyBufferBytes>;

enum class ReplyKind : uint8_t {
  kError,      // "E<n>"
  kNumber,     // a single integer: "0", "1", "20040107", a D/S/R/N/X result, a VF answer
  kPort,       // "<port> <addr> [6]" (U/L, C with p); port may be 0 as in rtpengine's "0 0.0.0.0"
  kMultiline,  // the I reply ("key: value" lines)
  kText,       // anything else that is well-formed text (Q, G values)
  kMalformed,  // empty, NUL bytes, non-printable garbage, over-long
};

struct RtppReply {
  ReplyKind kind = ReplyKind::kMalformed;
  std::string_view body;        // the reply without cookie and without trailing separators
  int error_code = 0;           // kError
  int64_t number = 0;           // kNumber
  uint32_t port = 0;            // kPort, or kNumber when it fits a port (U/L "0" / "<port>")
  std::string_view address;     // kPort: the address token (may be empty: "<port>" alone)
  bool ipv6 = false;            // kPort: a trailing "6" token (rtpengine may add "4")
  std::string_view subresults;  // text after the first " && " (without it), if any
};

// Splits "<cookie> <body>" (a UDP reply). Returns false when there is no
// separator after the cookie or the cookie is empty.
bool splitReplyCookie(std::string_view datagram, std::string_view& cookie, std::string_view& body);

// Classifies a reply body (no cookie). Never fails: garbage is kMalformed.
RtppReply classifyReply(std::string_view body);

// Whether the reply is a positive answer to a command of this type, i.e. one
// that proves the member knows the session:
// U/L: a port > 0; D/S/R/N/P: "0"; C: "0" or a port; Q: not an error;
// V: 20040107; others: not an error and not malformed.
bool isPositiveReply(CommandType type, const RtppReply& reply);

// U/L negative answer that must be passed on as "0" (also rtpengine's "0 0.0.0.0").
bool isNegativeUlReply(const RtppReply& reply);

// Writes a U/L reply with its address replaced (wan_address). Keeps the port
// and the subresults; appends nothing else (no cookie, no "\n"). The "6" token
// follows the replacement: set for an IPv6 literal, cleared for an IPv4 one,
// kept as the member sent it for a host name. A "<port>"-only (kNumber) reply
// gains the address; a negative "0" stays "0". False for other reply kinds.
bool formatReplyWithAddress(const RtppReply& reply, std::string_view address, ReplyBuffer& out);

}  // namespace rtpc
