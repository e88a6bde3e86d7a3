#pragma once
// MemberLink: the worker's control connection to one RTPproxy member.
//
// It sends a command and calls back exactly once per command: with the
// member's reply, or with a failure (deadline passed, link broken). The
// router never sees cookies, retransmissions or framing:
//  - udp/udp6: a fresh cookie of the link's own for every command (rtpproxy
//    caches replies by cookie alone for 35 s, so a cookie must never be reused
//    for another command, not even by a restarted worker: each link mixes a
//    random nonce into its cookies). Retransmission with the same cookie: first
//    retry early (from the smoothed round-trip time), then doubling, until the
//    command's deadline.
//  - unix: one connection per command; the command ends with a newline and
//    the reply at its newline or where the member closes, as the reference
//    reads it: works with rtpproxy's `unix:` (closes after each answer) and
//    `cunix:` (persistent).
//  - cunix/tcp/tcp6: one persistent connection, newline-framed, replies in
//    order. A timeout there desynchronises the stream, so the connection is
//    closed, every command in it fails, and the next send reconnects.
// `cmd_out_address` binds the source address of the control socket.

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "shared/address.h"
#include "shared/rtt_histogram.h"
#include "worker/loop_stall.h"

namespace rtpc {

enum class LinkOutcome : uint8_t {
  kReply,    // body holds the reply (cookie and trailing newline removed)
  kTimeout,  // no reply before the deadline
  kError,    // connect/send failed or the link broke; body holds a reason
};

// Receives the outcome of every command sent through a link.
class MemberLinkClient {
 public:
  virtual ~MemberLinkClient() = default;
  // `token` is what the caller passed to send(). `body` is valid only during the call.
  // The callback may send() again on the same link, or cancelAll(), but must
  // not destroy the link that is calling it.
  virtual void onMemberReply(uint64_t token, LinkOutcome outcome, std::string_view body) = 0;
};

struct MemberLinkOptions {
  SocketAddress address;                 // the member's control socket
  // The address already resolved (a host name the worker looked up without
  // blocking). Unset: an IP literal, "localhost" or a unix path is resolved
  // here; a host name is not (no getaddrinfo on the worker's loop): every
  // command then fails with kError until a link with `target` replaces this one.
  std::optional<ResolvedAddress> target;
  // The same for cmd_out_address (a host name is never looked up here).
  std::optional<ResolvedAddress> source;
  std::string cmd_out_address;           // source address to bind (IP transports); empty = any
  std::chrono::milliseconds first_retry{60};  // before any RTT is measured
  std::chrono::milliseconds min_retry{10};
  std::chrono::milliseconds max_retry{400};
  uint32_t max_retransmits = 3;          // udp: sends after the first one
  // The worker's stall clock, or null: a deadline that passed while the
  // worker's loop did not run is postponed (LoopStall) instead of failing.
  LoopStall* stall = nullptr;
};

struct MemberLinkCounters {
  uint64_t sent = 0;
  uint64_t retransmits = 0;
  uint64_t replies = 0;
  uint64_t timeouts = 0;
  uint64_t errors = 0;
  uint64_t malformed = 0;  // replies that matched no command or were not text
  uint64_t late = 0;       // udp: replies to a command no longer pending (timed out,
                           // cancelled, or answered already by an earlier copy)
  RttHistogram rtt;        // round trips of commands answered without a retransmission
};

// cmd_out_address as an address of the member's transport, port 0 ("[v6]" unbracketed).
SocketAddress cmdOutSocketAddress(const SocketAddress& member, const std::string& cmd_out_address);

class MemberLink {
 public:
  // What an I command's reply looks like on a stream link, where a multi-line
  // reply has no delimiter: rtpproxy prints 5 lines (6 with `l`), or one E line.
  enum class ReplyShape : uint8_t { kLine, kInfo, kInfoWithLoad };

  static std::unique_ptr<MemberLink> create(event_base* base, const MemberLinkOptions& options,
                                            MemberLinkClient* client);
  // Never null. An address (or cmd_out_address) that does not resolve gives a
  // link whose every command fails with kError naming the problem.
  // Destroying a link drops its commands in flight without calling back.
  virtual ~MemberLink() = default;

  // Sends `command` (no cookie, no newline). The client is called back exactly
  // once with `token`, possibly before send() returns when it fails at once.
  virtual void send(std::string_view command, std::chrono::milliseconds timeout, uint64_t token,
                    ReplyShape shape = ReplyShape::kLine) = 0;
  // Fails every command in flight with kError (used when the member is removed).
  // A stream link also closes its connection: the replies still to come would
  // otherwise be taken for those of later commands.
  virtual void cancelAll() = 0;

  // Smoothed round-trip time of answered, never-retransmitted commands; 0 before the first.
  // (Stream links measure every reply, queueing behind earlier ones included.)
  virtual std::chrono::microseconds smoothedRtt() const = 0;
  virtual const MemberLinkCounters& counters() const = 0;
  virtual size_t inFlight() const = 0;
};

}  // namespace rtpc
