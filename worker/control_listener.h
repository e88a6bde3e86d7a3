#pragma once
// ControlListener: a control socket the signalling talks to, of one of the
// RTPproxy transports (PROTOCOL.md section 1):
//  - udp/udp6: one datagram = one command; the reply echoes the client's
//    cookie. A ReplyCache keyed by client address + cookie answers a
//    retransmission again without running the command twice, and drops a
//    duplicate whose command is still in flight.
//  - unix: one command per connection (one read; "\n" optional, Kamailio
//    sends none), answer, close.
//  - cunix/tcp/tcp6: persistent, "\n"-framed; answers go out in command order
//    even when later commands finish first; nothing follows an answer's "\n".
// The listening socket is either bound here or inherited from the parent
// process (the supervisor binds before it forks, so a worker restart loses
// no datagram).
//
// The listener owns each ControlRequest from arrival until reply(): the
// command text lives in the request, so the parsed RtppCommand's views stay
// valid while the router forwards it asynchronously. Requests come from a
// pool that only grows (to the in-flight limit), so a steady load allocates
// nothing per command.
//
// Malformed input: the listener does NOT answer it itself. Every command,
// well-formed or not, goes to the handler, which answers E<parse.error_code>
// for !parse.ok (and counts it with the router's other errors). That keeps one
// reply path (cache, cookie echo, ordering on streams) for everything. Cases:
//  - empty or blank datagram: parse.has_cookie is false, command.cookie is
//    empty, and the reply goes out without a cookie: a bare "E5\n";
//  - a datagram with a cookie only, a NUL, or more than kMaxCommandBytes
//    (counted in `oversized` too): "<cookie> E5\n";
//  - a stream line longer than kMaxCommandBytes: the request holds its first
//    kMaxCommandBytes + 1 bytes (so parse says E5), the rest of the line up to
//    the next "\n" is skipped, and the stream goes on from there.
//
// Replies: a body given to reply() loses any trailing "\n" (the listener adds
// exactly one), so nothing ever follows the reply's "\n" (OpenSIPS marks a
// node bad otherwise). UDP: "<cookie> <body>\n", or "<body>\n" with no cookie.
// Streams: "<body>\n"; unix: then the connection is closed.
//
// Clients that go away: a reply or cancel for a request whose stream
// connection has closed is accepted and dropped. A stream client that shuts
// down its sending side still gets the answers to what it sent before.
// The handler must not call reply()/cancel() after the listener is destroyed.

#include <event2/event.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "shared/address.h"
#include "shared/rtpp_command.h"

namespace rtpc {

class ControlListener;

struct ControlRequest {
  ControlListener* listener = nullptr;
  RtppCommand command;   // parsed; views point into `text`
  ParseResult parse;     // !parse.ok: the router answers E<parse.error_code>
  std::string_view text; // the raw command as received (the request's own copy)
  uint64_t received_ns = 0;  // CLOCK_MONOTONIC at arrival (for latency accounting)
};

// What the listener hands every well-formed or malformed command to.
class CommandHandler {
 public:
  virtual ~CommandHandler() = default;
  // The handler must eventually call request->listener->reply(request, ...)
  // exactly once, or cancel(request) when the client is gone.
  virtual void onCommand(ControlRequest* request) = 0;
  // A hint before a batch of datagrams is handled: a command naming this
  // call-id (maybe not a call-id at all: the third word) is coming.
  virtual void prefetchCall(std::string_view /*call_id*/) {}
};

struct ControlListenerCounters {
  uint64_t received = 0;
  uint64_t answered = 0;
  uint64_t cache_hits = 0;        // udp retransmission answered from the cache
  uint64_t duplicates_dropped = 0;// udp retransmission of a command in flight
  uint64_t malformed = 0;         // answered with a parse error
  uint64_t oversized = 0;
  uint64_t connections = 0;       // stream transports
  uint64_t send_errors = 0;
  uint64_t overload_dropped = 0;  // udp: dropped, max_in_flight requests already pending
  uint64_t idle_timeouts = 0;     // stream connections closed for sending nothing in time
  uint64_t connections_evicted = 0;  // idle stream connections closed to make room at max_connections
  uint64_t cache_evicted_early = 0;  // reply cache entries pushed out before the retention
};

struct ControlListenerOptions {
  // UDP reply cache (see worker/reply_cache.h for what this holds).
  size_t reply_cache_bytes = size_t{64} << 20;
  uint64_t reply_cache_retention_ms = 30'000;
  // Requests handed to the handler and not yet answered, per listener. A
  // datagram beyond it is dropped (the client retransmits); a stream
  // connection stops being read until requests are released.
  size_t max_in_flight = 8192;
  // Per cunix/tcp connection (at most 256): the connection is not read while
  // this many of its commands are unanswered.
  size_t max_in_flight_per_connection = 256;
  // Open stream connections. At the limit a new client closes the
  // connection idle the longest (nothing in flight, nothing unsent; logged
  // CONTROL_CONNECTION_EVICTED, rate-limited); only when every connection is
  // busy do new ones wait in the backlog.
  size_t max_connections = 512;
  // unix: a client that sends no command in this time is closed.
  uint32_t command_timeout_ms = 5000;
  // cunix/tcp: an idle connection is closed after this long; 0 = never
  // (OpenSIPS keeps its connections open between commands).
  uint32_t idle_timeout_ms = 0;
};

class ControlListener {
 public:
  // Binds the address (unix paths: a stale socket file is replaced, a live
  // one another process listens on is refused).
  // Returns nullptr and sets error on failure.
  // The listener removes a unix socket file it created when it is destroyed
  // (unless the file was replaced meanwhile).
  static std::unique_ptr<ControlListener> bind(event_base* base, const SocketAddress& address,
                                               CommandHandler* handler, std::string& error,
                                               const ControlListenerOptions& options = {});
  // Takes over an already bound (and, for streams, listening) socket, which
  // must match the transport of `address`; the listener closes it when
  // destroyed but never removes a unix socket file it did not create (the
  // supervisor owns it across worker restarts). On failure fd stays open.
  static std::unique_ptr<ControlListener> adopt(event_base* base, const SocketAddress& address,
                                                int fd, CommandHandler* handler,
                                                std::string& error,
                                                const ControlListenerOptions& options = {});
  virtual ~ControlListener() = default;

  // Sends the reply body (no cookie, no trailing "\n": both are added here)
  // and releases the request.
  virtual void reply(ControlRequest* request, std::string_view body) = 0;
  // Releases a request without answering it. UDP: the cache forgets it, so a
  // retransmission runs the command again. unix/cunix/tcp: the connection is
  // closed, since a stream client can only match answers by their order.
  virtual void cancel(ControlRequest* request) = 0;
  virtual const ControlListenerCounters& counters() const = 0;
  virtual const SocketAddress& address() const = 0;
  // The bound port, for tests that bind port 0.
  virtual uint16_t boundPort() const = 0;
};

}  // namespace rtpc
