#pragma once
// NotifyRelay: the cluster's end of disconnect notifications (REFERENCE.md
// section 7). A member cannot reach the signalling's unix notify socket, so the
// worker rewrites a U's notify socket to `tcp:%%CC_SELF%%:<inbound port>` and
// its tag to quote("<suffix> <original tag>"). The member (rtpproxy) decodes
// that tag once and, when the session times out, connects to us and sends
// "<suffix> <original tag>\n". We write "<original tag>\n" to the unix stream
// socket `<dest_socket_prefix><suffix>`, exactly what rtpproxy would have sent
// there itself.
//
// Inbound (TCP, from members):
//  - only peers whose IP is exactly one of setAllowedPeers() are served; the
//    others are closed at once and counted (no list = nobody is allowed, so a
//    relay that the worker forgot to configure is closed, not open);
//  - lines are "\n"-framed, several per connection, in any number of reads;
//    a line longer than max_line_bytes is counted as malformed and skipped up
//    to its "\n", and the stream goes on;
//  - at most max_connections at a time (beyond: accepted, closed, counted);
//    a connection that sends nothing for idle_timeout_ms is closed. rtpproxy
//    keeps its notify connection open and makes a new one after an error, so
//    closing an idle one loses nothing.
//
// Outbound (unix stream, to the signalling): one connection per destination,
// kept open. A destination that has no listener (no such file, connection
// refused) drops the notification with a counter; the next notification for
// it tries again, so a signalling process that starts later gets the later
// ones. A connection that breaks with notifications pending is made again
// with exponential backoff; meanwhile notifications queue up to
// max_queue_bytes per destination (then they are dropped and counted).
//
// Suffixes are untrusted (a member sends them back): one containing '/',
// ".." or NUL, or making the path longer than a unix socket path can be, is
// rejected so that no socket outside the prefix's directory can be reached.
//
// Counters: every line read is `received`; it then ends up `delivered`
// (handed whole to the destination socket), `malformed`, `rejected_path` or
// `dropped`, or is still queued for its destination.
//
// Log lines (rate-limited per key, with the number suppressed meanwhile):
// NOTIFY_PEER_REJECTED, NOTIFY_MALFORMED, NOTIFY_PATH_REJECTED,
// NOTIFY_DROPPED, NOTIFY_CONNECTIONS_FULL.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/address.h"
#include "shared/config.h"

struct event_base;

namespace rtpc {

struct NotifyRelayCounters {
  uint64_t received = 0;       // lines read from members, good or bad
  uint64_t delivered = 0;      // "<tag>\n" written whole to its destination socket
  uint64_t rejected_peer = 0;  // connections from an address that is not an allowed peer
  uint64_t malformed = 0;      // no "<suffix> <tag>", bad escape, overlong or unterminated line
  uint64_t rejected_path = 0;  // suffix that would escape the prefix, or path too long
  uint64_t dropped = 0;        // well-formed but not delivered (no listener, queue full, lost)
  uint64_t connections = 0;    // member connections served
  uint64_t connections_refused = 0;  // over max_connections
  uint64_t idle_timeouts = 0;
};

struct NotifyRelayOptions {
  size_t max_line_bytes = 1024;  // without the "\n"
  size_t max_connections = 256;
  uint32_t idle_timeout_ms = 600'000;  // 0 = never
  size_t max_destinations = 256;       // idle ones are evicted to make room
  size_t max_queue_bytes = 64 * 1024;  // per destination, while it is (re)connecting
  uint32_t reconnect_min_ms = 100;
  uint32_t reconnect_max_ms = 5000;
  uint32_t log_interval_ms = 1000;  // at most one line per event key in this time
};

enum class NotifyLineStatus : uint8_t {
  kOk,
  kMalformed,  // no separator, empty tag, bad %-escape
  kBadSuffix,  // '/', "..", NUL: would leave the prefix's directory
};

struct NotifyLine {
  NotifyLineStatus status = NotifyLineStatus::kMalformed;
  std::string_view suffix;  // may be empty: the destination is the prefix itself
  std::string_view tag;     // sent as is: rtpproxy has already decoded it
};

// Splits one notification (without its "\n"; a trailing "\r" is ignored) at
// its first space. The tag is NOT decoded again: rtpproxy decoded the quoted
// "<suffix> <tag>" before sending it, and a second decoding would corrupt a
// tag that contains '%'. Only a line with no space at all is taken as still
// quoted (a member that sent the tag raw) and decoded into `scratch`, which
// the views may then point into.
NotifyLine parseNotifyLine(std::string_view line, std::string& scratch);

class NotifyRelay {
 public:
  // Binds and listens on config.inbound_address (tcp or tcp6; port 0 picks
  // one, see address()). A "unix:" in front of dest_socket_prefix is ignored.
  // Returns nullptr and sets error on failure.
  static std::unique_ptr<NotifyRelay> create(event_base* base, const DisconnectNotifyConfig& config,
                                             std::string& error,
                                             const NotifyRelayOptions& options = {});
  ~NotifyRelay();
  NotifyRelay(const NotifyRelay&) = delete;
  NotifyRelay& operator=(const NotifyRelay&) = delete;

  // Replaces the allowed peers by the IPs of these hosts (the members'
  // hosts): IP literals (IPv6 with or without brackets), "localhost" (both
  // 127.0.0.1 and ::1), and the addresses in `resolved` (host names the
  // worker resolved without blocking; a name itself is never looked up here).
  // Empty hosts (unix members) are skipped. Names in `hosts` are named in
  // `error` and left out; returns false if there were any.
  // IPv4-mapped IPv6 peers match their IPv4 address.
  bool setAllowedPeers(const std::vector<std::string>& hosts, std::string* error = nullptr,
                       const std::vector<ResolvedAddress>& resolved = {});
  // Same, from already resolved addresses (the port is ignored).
  void setAllowedPeers(const std::vector<ResolvedAddress>& peers);

  const NotifyRelayCounters& counters() const;
  // inbound_address with the port actually bound.
  const SocketAddress& address() const;
  uint16_t boundPort() const;
  // The unix path prefix notifications are written under ("unix:" removed).
  const std::string& destinationPrefix() const;
  // Member connections open now.
  size_t connectionCount() const;

 private:
  struct Impl;
  explicit NotifyRelay(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rtpc
