#pragma once
// MemberHealth: the health state machine of one member (REFERENCE.md section
// 6, PROTOCOL.md section 7). Pure: it never sends, reads a clock or logs. The
// prober (I/O) calls start(), then feeds back every probe reply or timeout,
// the router's command outcomes and a timer, and each call returns an Action:
// what to send now, when to call onTimer() next, and the state change to log
// (`MEMBER_ONLINE cluster=.. member=.. reason=probes_passed`).
//
//   kProbing ──V=20040107──> kCapabilities ──last VF answered──> kOnline
//      │                          │                                 │
//      └── N failures ──> kOffline <──────── N failures ────────────┘
//                           │  V every offline_probe_interval
//                           └──V=20040107──> kCapabilities ...
//
// A failure is a probe timeout, a reply that is not a well-formed answer to
// the probe (a V answered with anything but 20040107, garbage), or a
// forwarded command the router reports as failed. N in a row
// (failures_before_offline) take the member offline; any good reply, probe
// or command, resets the count. An `Ib` answered with an E-code (rtpengine's
// E8) is a good reply: the member stays online, flagged stats_unsupported,
// and its load is then the sessions the cluster has bound to it.
//
// One probe is outstanding at a time. Its deadline is in the Action; the
// prober reports onTimeout() when its own retransmits give up, and onTimer()
// at or after the deadline counts as the timeout too, so a lost callback
// cannot wedge a member. A reply or timeout for a probe that is not
// outstanding (a late answer after the member went offline) is ignored.
//
// A stall of the worker itself (its loop did not run: SIGSTOP, a busy host)
// is not the relay's failure. The worker reports it with onLoopStall(): an
// outstanding probe whose deadline fell in the stall gets a new deadline a
// full probe timeout after its end (its answer may be queued unread), and a
// command that began before the stall ended and failed afterwards is not
// counted: the burst of them is one event that says nothing certain about
// the relay, so it asks the relay instead (an Ib at once, when the member is
// online and no probe was sent since the stall). Offline then follows from
// probes, the evidence about the relay.
//
// Time: uint64_t milliseconds of a monotonic clock, passed in.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "shared/config.h"
#include "shared/rtpp_reply.h"
#include "shared/rtpp_stats.h"

namespace rtpc {

enum class HealthState : uint8_t { kProbing, kCapabilities, kOnline, kOffline };
// "probing", "capabilities", "online", "offline"
std::string_view healthStateName(HealthState state);

enum class ProbeKind : uint8_t { kNone, kVersion, kFeature, kHeartbeat };

// Why a transition happened; the names are stable log values (reason=...).
enum class HealthReason : uint8_t {
  kVersionOk,         // version_ok: V answered 20040107
  kProbesPassed,      // probes_passed: every VF answered
  kProbeTimeout,      // probe_timeout: V or VF unanswered
  kHeartbeatTimeout,  // heartbeat_timeout: Ib unanswered
  kBadVersion,        // bad_version: V answered, but not 20040107
  kMalformedReply,    // malformed_reply: garbage instead of an answer
  kCommandFailures,   // command_failures: forwarded commands failed
};
std::string_view healthReasonName(HealthReason reason);

// Capabilities probed with VF, as bits.
enum Capability : uint16_t {
  kCapMultiStream = 1u << 0,  // 20050322: Kamailio and OpenSIPS refuse a relay without it
  kCapRepacketize = 1u << 1,  // 20071116: Kamailio asks it (optional)
  kCapCopy = 1u << 2,         // 20071218: C command
  kCapStats = 1u << 3,        // 20080403: Q command
  kCapCodecs = 1u << 4,       // 20081102: Kamailio asks it (optional)
  kCapNotify = 1u << 5,       // 20081224: notify arguments of U (-n given)
  kCapSourceBind = 1u << 6,   // 20090810: automatic bridging
  kCapNotifySelf = 1u << 7,   // 20150617: %%CC_SELF%% as notify target
};

struct CapabilityInfo {
  uint16_t bit;
  uint32_t date;
  std::string_view name;   // "multistream", "copy", ...: for `ls` and logs
  std::string_view probe;  // the VF command: "VF 20050322"
};
// Every probed capability, in probe order.
std::span<const CapabilityInfo> probedCapabilities();
// The bit a VF date stands for (the router answers VF for the cluster).
std::optional<uint16_t> capabilityForDate(uint32_t date);

struct HealthTransition {
  HealthState from;
  HealthState to;
  HealthReason reason;
};

struct HealthAction {
  ProbeKind send = ProbeKind::kNone;
  std::string_view command;         // wire text of the probe ("V", "VF 20050322", "Ib"); static
  uint64_t reply_deadline_ms = 0;   // the prober gives up on the probe then (send != kNone)
  uint64_t next_timer_ms = 0;       // call onTimer() then (always set after start())
  std::optional<HealthTransition> transition;
};

struct HealthPolicy {
  uint64_t heartbeat_interval_ms = 1000;       // Ib cadence; also the retry pace of V/VF while probing
  uint32_t failures_before_offline = 3;
  uint64_t offline_probe_interval_ms = 2000;   // V cadence while offline (the reference: 60 s)
  uint64_t probe_timeout_ms = 800;             // one probe's deadline, retransmits included
  // Weight of a new heartbeat sample in the smoothed active-session count.
  // At one sample a second, 0.3 follows a step in load to 83% within 5 s yet
  // moves only 30% towards one odd sample. Quick reactions to a burst of new
  // calls come from the bound-session count, which the selector also uses.
  double load_smoothing = 0.3;
};

// The cluster's <tuning> values (probe timeout = command timeout).
HealthPolicy healthPolicyFrom(const ClusterTuning& tuning);

class MemberHealth {
 public:
  explicit MemberHealth(const HealthPolicy& policy = {});

  // Begins (or restarts) probing: sends V.
  HealthAction start(uint64_t now_ms);
  // The answer to an outstanding probe; body without cookie.
  HealthAction onReply(ProbeKind kind, const RtppReply& reply, uint64_t now_ms);
  HealthAction onReply(ProbeKind kind, std::string_view body, uint64_t now_ms);
  // The prober gave up on an outstanding probe.
  HealthAction onTimeout(ProbeKind kind, uint64_t now_ms);
  HealthAction onTimer(uint64_t now_ms);
  // Outcome of a command the router forwarded to this member. A success
  // resets the failure count, and brings an offline member's next V forward.
  HealthAction onCommandSuccess(uint64_t now_ms);
  // `began_ms`: when the failed command was first sent (a failure that began
  // before the last stall ended is excused, see above).
  HealthAction onCommandFailure(uint64_t now_ms, uint64_t began_ms);
  HealthAction onCommandFailure(uint64_t now_ms) { return onCommandFailure(now_ms, now_ms); }
  // The worker's loop did not run from start_ms to end_ms.
  HealthAction onLoopStall(uint64_t start_ms, uint64_t end_ms);

  HealthState state() const { return state_; }
  bool online() const { return state_ == HealthState::kOnline; }
  uint16_t capabilities() const { return capabilities_; }
  bool supports(uint16_t caps) const { return (capabilities_ & caps) == caps; }
  bool statsUnsupported() const { return stats_unsupported_; }
  // Smoothed "active sessions" of the heartbeats; empty before the first one,
  // while the member answers Ib with an error, and after it went offline.
  std::optional<double> activeSessions() const;
  // The last parsed heartbeat (the cluster sums them to answer Ib).
  const std::optional<InfoStats>& lastStats() const { return last_stats_; }
  uint32_t consecutiveFailures() const { return failures_; }
  std::optional<uint64_t> lastRttMs() const { return last_rtt_ms_; }
  ProbeKind outstanding() const { return outstanding_; }
  // Command failures not counted because they began before a stall ended.
  uint64_t excusedFailures() const { return excused_; }
  const HealthPolicy& policy() const { return policy_; }

 private:
  HealthAction send(ProbeKind kind, uint64_t now_ms);
  HealthAction wait() const;
  HealthAction succeeded(uint64_t now_ms);
  HealthAction failed(HealthReason reason, uint64_t now_ms);
  HealthAction probeTimedOut(uint64_t now_ms);
  HealthAction enter(HealthState to, HealthReason reason, uint64_t now_ms);
  uint64_t retryAt(uint64_t now_ms) const;

  HealthPolicy policy_;
  HealthState state_ = HealthState::kProbing;
  ProbeKind outstanding_ = ProbeKind::kNone;
  uint64_t sent_at_ms_ = 0;      // of the outstanding or last probe
  uint64_t deadline_ms_ = 0;     // of the outstanding probe
  uint64_t next_send_ms_ = 0;    // when the next probe goes out (no probe outstanding)
  uint32_t failures_ = 0;
  uint8_t feature_index_ = 0;    // VF being probed
  uint16_t capabilities_ = 0;
  bool started_ = false;
  bool stats_unsupported_ = false;
  bool have_load_ = false;
  double smoothed_active_ = 0.0;
  std::optional<InfoStats> last_stats_;
  std::optional<uint64_t> last_rtt_ms_;
  uint64_t stall_end_ms_ = 0;    // end of the last stall of the worker's loop; 0 = none
  uint64_t excused_ = 0;
};

}  // namespace rtpc
