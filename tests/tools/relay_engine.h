#pragma once
// What the relay double answers: rtpproxy 3.2 command semantics over the
// session table (PROTOCOL.md sections 2-6). Pure: bytes in, reply bytes out;
// notifications to send are queued for the I/O layer.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/fixed_buffer.h"
#include "shared/rtpp_command.h"
#include "tests/tools/relay_sessions.h"

namespace rtpc {

// A reply echoes the cookie, which may be almost as long as the command.
using RelayReplyBuffer = FixedBuffer<kMaxCommandBytes + 2048>;

struct RelayConfig {
  std::string advertised = "127.0.0.1";  // -l: address in U/L/Cp replies
  std::string advertised6;               // -6: the IPv6 one (U6); defaults to -l if that is IPv6
  uint16_t port_min = 35000;
  uint16_t port_max = 65000;
  std::vector<std::string> notify_sockets;  // -n: permitted notify targets
  int session_ttl_s = 60;
};

// Faults that change answers (the I/O ones live in TestRelay).
struct RelayAnswerFaults {
  int refuse_code = 0;           // 98, 99 or 72: new U sessions are refused with it
  bool rtpengine_stats = false;  // I and G answer E8 as rtpengine does
};

struct PendingNotification {
  std::string target;  // "tcp:host:port" or "unix:/path", %%CC_SELF%% already replaced
  std::string tag;     // URL-decoded, without "\n"
};

struct RelayCounters {
  uint64_t ncmds_rcvd = 0;
  uint64_t ncmds_rcvd_ndups = 0;
  uint64_t ncmds_succd = 0;
  uint64_t ncmds_errs = 0;
  uint64_t ncmds_repld = 0;
  uint64_t nsess_timeout = 0;
};

// Index of a command's letter for per-letter counters: 'A'..'Z' -> 0..25,
// VF -> 26, anything else -> 27.
inline constexpr size_t kLetterSlots = 28;
size_t letterSlot(std::string_view text, Framing framing);
std::string_view letterSlotName(size_t slot);  // "U", "VF", "other"

// URL-decodes a notify tag (already checked by isValidNotifyTag).
std::string urlDecode(std::string_view s);

class RelayEngine {
 public:
  explicit RelayEngine(RelayConfig config);

  // One command as received (a datagram with its cookie, or one stream
  // command). Writes the whole reply, cookie echoed, ending in "\n".
  // source_ip is the sender's numeric address ("" on unix sockets); it
  // replaces %%CC_SELF%% in notify targets.
  void handle(std::string_view text, Framing framing, std::string_view source_ip, uint64_t now_ms,
              RelayReplyBuffer& out);

  // A retransmission answered from the reply cache.
  void countDuplicate() {
    ++counters_.ncmds_rcvd;
    ++counters_.ncmds_rcvd_ndups;
    ++counters_.ncmds_repld;
  }

  // Acts as if the call's sessions timed out: queues their notifications and
  // frees them. Returns the number of sessions.
  size_t timeoutCall(std::string_view call_id, uint64_t now_ms);

  std::vector<PendingNotification>& pendingNotifications() { return pending_; }
  RelayAnswerFaults& faults() { return faults_; }
  const RelayCounters& counters() const { return counters_; }
  const RelaySessions& sessions() const { return sessions_; }
  const RelayConfig& config() const { return config_; }

 private:
  struct Context;
  int execute(const RtppCommand& cmd, std::string_view source_ip, uint64_t now_ms,
              RelayReplyBuffer& out);
  int executeUl(const RtppCommand& cmd, std::string_view source_ip, uint64_t now_ms,
                RelayReplyBuffer& out);
  int executeQuery(const RtppCommand& cmd, RelaySession& s, RelayReplyBuffer& out);
  int executeInfo(const RtppCommand& cmd, RelayReplyBuffer& out);
  int executeStats(const RtppCommand& cmd, RelayReplyBuffer& out);
  int checkSubcommands(const RtppCommand& cmd) const;
  void runSubcommands(const RtppCommand& cmd, std::string_view call_id, RelaySession* s,
                      uint64_t now_ms, RelayReplyBuffer& out);
  // Picks the reply address for U/L modifiers: 0 or an error code.
  int replyAddress(std::string_view modifiers, std::string_view& addr, bool& v6) const;
  void setNotify(RelaySession& s, const RtppCommand& cmd, std::string_view source_ip);
  int notifyCommand(std::string_view rest, uint64_t now_ms, RelayReplyBuffer& out);

  RelayConfig config_;
  bool advertised_is_v6_ = false;
  RelaySessions sessions_;
  RelayAnswerFaults faults_;
  RelayCounters counters_;
  std::vector<PendingNotification> pending_;
};

}  // namespace rtpc
