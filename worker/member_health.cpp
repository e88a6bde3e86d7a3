#include "worker/member_health.h"

#include <algorithm>
#include <array>

namespace rtpc {

namespace {

constexpr uint32_t kProtocolVersion = 20040107;

// Probe order: what Kamailio insists on first, so that a relay unfit for the
// signalling is visible in `ls` even if a later probe times out.
constexpr std::array<CapabilityInfo, 8> kCapabilities = {{
    {kCapMultiStream, 20050322, "multistream", "VF 20050322"},
    {kCapRepacketize, 20071116, "repacketize", "VF 20071116"},
    {kCapCopy, 20071218, "copy", "VF 20071218"},
    {kCapStats, 20080403, "stats", "VF 20080403"},
    {kCapCodecs, 20081102, "codecs", "VF 20081102"},
    {kCapNotify, 20081224, "notify", "VF 20081224"},
    {kCapSourceBind, 20090810, "source_bind", "VF 20090810"},
    {kCapNotifySelf, 20150617, "notify_cc_self", "VF 20150617"},
}};

}  // namespace

std::string_view healthStateName(HealthState state) {
  switch (state) {
    case HealthState::kProbing: return "probing";
    case HealthState::kCapabilities: return "capabilities";
    case HealthState::kOnline: return "online";
    case HealthState::kOffline: return "offline";
  }
  return "unknown";
}

std::string_view healthReasonName(HealthReason reason) {
  switch (reason) {
    case HealthReason::kVersionOk: return "version_ok";
    case HealthReason::kProbesPassed: return "probes_passed";
    case HealthReason::kProbeTimeout: return "probe_timeout";
    case HealthReason::kHeartbeatTimeout: return "heartbeat_timeout";
    case HealthReason::kBadVersion: return "bad_version";
    case HealthReason::kMalformedReply: return "malformed_reply";
    case HealthReason::kCommandFailures: return "command_failures";
  }
  return "unknown";
}

std::span<const CapabilityInfo> probedCapabilities() { return kCapabilities; }

std::optional<uint16_t> capabilityForDate(uint32_t date) {
  for (const CapabilityInfo& c : kCapabilities) {
    if (c.date == date) return c.bit;
  }
  return std::nullopt;
}

HealthPolicy healthPolicyFrom(const ClusterTuning& tuning) {
  HealthPolicy p;
  p.heartbeat_interval_ms = tuning.heartbeat_interval_ms;
  p.failures_before_offline = tuning.heartbeat_failures;
  p.offline_probe_interval_ms = tuning.offline_probe_interval_ms;
  p.probe_timeout_ms = tuning.command_timeout_ms;
  return p;
}

MemberHealth::MemberHealth(const HealthPolicy& policy) : policy_(policy) {
  // Zero intervals would make the prober spin; a zero count would take a
  // member offline without any failure.
  policy_.heartbeat_interval_ms = std::max<uint64_t>(policy_.heartbeat_interval_ms, 1);
  policy_.offline_probe_interval_ms = std::max<uint64_t>(policy_.offline_probe_interval_ms, 1);
  policy_.probe_timeout_ms = std::max<uint64_t>(policy_.probe_timeout_ms, 1);
  policy_.failures_before_offline = std::max<uint32_t>(policy_.failures_before_offline, 1);
  if (!(policy_.load_smoothing > 0.0 && policy_.load_smoothing <= 1.0)) policy_.load_smoothing = 0.3;
}

std::optional<double> MemberHealth::activeSessions() const {
  if (!have_load_) return std::nullopt;
  return smoothed_active_;
}

HealthAction MemberHealth::start(uint64_t now_ms) {
  started_ = true;
  state_ = HealthState::kProbing;
  failures_ = 0;
  capabilities_ = 0;
  feature_index_ = 0;
  stats_unsupported_ = false;
  have_load_ = false;
  last_stats_.reset();
  last_rtt_ms_.reset();
  return send(ProbeKind::kVersion, now_ms);
}

HealthAction MemberHealth::send(ProbeKind kind, uint64_t now_ms) {
  outstanding_ = kind;
  sent_at_ms_ = now_ms;
  deadline_ms_ = now_ms + policy_.probe_timeout_ms;
  HealthAction a;
  a.send = kind;
  switch (kind) {
    case ProbeKind::kVersion: a.command = "V"; break;
    case ProbeKind::kFeature: a.command = kCapabilities[feature_index_].probe; break;
    case ProbeKind::kHeartbeat: a.command = "Ib"; break;
    case ProbeKind::kNone: break;
  }
  a.reply_deadline_ms = deadline_ms_;
  a.next_timer_ms = deadline_ms_;
  return a;
}

HealthAction MemberHealth::wait() const {
  HealthAction a;
  if (started_) a.next_timer_ms = outstanding_ != ProbeKind::kNone ? deadline_ms_ : next_send_ms_;
  return a;
}

uint64_t MemberHealth::retryAt(uint64_t now_ms) const {
  // Cadence counts from the previous send, so a slow answer does not stretch it.
  const uint64_t interval = state_ == HealthState::kOffline ? policy_.offline_probe_interval_ms
                                                             : policy_.heartbeat_interval_ms;
  return std::max(now_ms, sent_at_ms_ + interval);
}

HealthAction MemberHealth::onTimer(uint64_t now_ms) {
  if (!started_) return wait();
  if (outstanding_ != ProbeKind::kNone) {
    return now_ms >= deadline_ms_ ? probeTimedOut(now_ms) : wait();
  }
  if (now_ms < next_send_ms_) return wait();
  switch (state_) {
    case HealthState::kProbing:
    case HealthState::kOffline: return send(ProbeKind::kVersion, now_ms);
    case HealthState::kCapabilities: return send(ProbeKind::kFeature, now_ms);
    case HealthState::kOnline: return send(ProbeKind::kHeartbeat, now_ms);
  }
  return wait();
}

HealthAction MemberHealth::enter(HealthState to, HealthReason reason, uint64_t now_ms) {
  const HealthTransition t{state_, to, reason};
  state_ = to;
  failures_ = 0;
  HealthAction a;
  switch (to) {
    case HealthState::kCapabilities:
      feature_index_ = 0;
      capabilities_ = 0;
      a = send(ProbeKind::kFeature, now_ms);
      break;
    case HealthState::kOnline:
      // First heartbeat at once: the load is known before the first call.
      a = send(ProbeKind::kHeartbeat, now_ms);
      break;
    case HealthState::kOffline:
      // Whatever is in flight no longer matters; its late answer is ignored.
      outstanding_ = ProbeKind::kNone;
      have_load_ = false;
      stats_unsupported_ = false;
      last_stats_.reset();
      next_send_ms_ = now_ms + policy_.offline_probe_interval_ms;
      a = wait();
      break;
    case HealthState::kProbing:
      a = send(ProbeKind::kVersion, now_ms);
      break;
  }
  a.transition = t;
  return a;
}

HealthAction MemberHealth::succeeded(uint64_t now_ms) {
  failures_ = 0;
  next_send_ms_ = retryAt(now_ms);
  return wait();
}

HealthAction MemberHealth::failed(HealthReason reason, uint64_t now_ms) {
  if (state_ != HealthState::kOffline && ++failures_ >= policy_.failures_before_offline) {
    return enter(HealthState::kOffline, reason, now_ms);
  }
  if (outstanding_ != ProbeKind::kNone) return wait();  // a command failed meanwhile
  next_send_ms_ = retryAt(now_ms);
  return now_ms >= next_send_ms_ ? onTimer(now_ms) : wait();
}

HealthAction MemberHealth::probeTimedOut(uint64_t now_ms) {
  const ProbeKind kind = outstanding_;
  outstanding_ = ProbeKind::kNone;
  return failed(kind == ProbeKind::kHeartbeat ? HealthReason::kHeartbeatTimeout
                                              : HealthReason::kProbeTimeout,
                now_ms);
}

HealthAction MemberHealth::onTimeout(ProbeKind kind, uint64_t now_ms) {
  if (!started_ || kind == ProbeKind::kNone || kind != outstanding_) return wait();
  return probeTimedOut(now_ms);
}

HealthAction MemberHealth::onReply(ProbeKind kind, std::string_view body, uint64_t now_ms) {
  return onReply(kind, classifyReply(body), now_ms);
}

HealthAction MemberHealth::onReply(ProbeKind kind, const RtppReply& reply, uint64_t now_ms) {
  if (!started_ || kind == ProbeKind::kNone || kind != outstanding_) return wait();
  outstanding_ = ProbeKind::kNone;
  last_rtt_ms_ = now_ms >= sent_at_ms_ ? now_ms - sent_at_ms_ : 0;

  switch (kind) {
    case ProbeKind::kVersion:
      if (reply.kind == ReplyKind::kNumber && reply.number == kProtocolVersion) {
        return enter(HealthState::kCapabilities, HealthReason::kVersionOk, now_ms);
      }
      return failed(reply.kind == ReplyKind::kMalformed ? HealthReason::kMalformedReply
                                                        : HealthReason::kBadVersion,
                    now_ms);

    case ProbeKind::kFeature: {
      // A number or an E-code is a real answer ("1" = yes, anything else =
      // no, as Kamailio reads it); anything else is garbage.
      if (reply.kind != ReplyKind::kNumber && reply.kind != ReplyKind::kError) {
        return failed(HealthReason::kMalformedReply, now_ms);
      }
      if (reply.kind == ReplyKind::kNumber && reply.number == 1) {
        capabilities_ |= kCapabilities[feature_index_].bit;
      }
      failures_ = 0;
      if (++feature_index_ == kCapabilities.size()) {
        feature_index_ = 0;
        return enter(HealthState::kOnline, HealthReason::kProbesPassed, now_ms);
      }
      return send(ProbeKind::kFeature, now_ms);
    }

    case ProbeKind::kHeartbeat: {
      if (reply.kind == ReplyKind::kError) {
        // Alive but without I (rtpengine: E8): the selector then goes by the
        // sessions the cluster bound to it.
        stats_unsupported_ = true;
        have_load_ = false;
        last_stats_.reset();
        return succeeded(now_ms);
      }
      InfoStats stats;
      if (reply.kind == ReplyKind::kMalformed || !parseInfoReply(reply.body, stats)) {
        return failed(HealthReason::kMalformedReply, now_ms);
      }
      const auto sample = static_cast<double>(stats.active_sessions);
      smoothed_active_ =
          have_load_ ? smoothed_active_ + policy_.load_smoothing * (sample - smoothed_active_) : sample;
      have_load_ = true;
      stats_unsupported_ = false;
      last_stats_ = stats;
      return succeeded(now_ms);
    }

    case ProbeKind::kNone: break;
  }
  return wait();
}

HealthAction MemberHealth::onCommandSuccess(uint64_t now_ms) {
  if (!started_) return wait();
  if (state_ != HealthState::kOffline) {
    failures_ = 0;
    return wait();
  }
  // It answers commands again: no need to sit out the offline interval.
  if (outstanding_ == ProbeKind::kNone && next_send_ms_ > now_ms) {
    next_send_ms_ = now_ms;
    return onTimer(now_ms);
  }
  return wait();
}

HealthAction MemberHealth::onCommandFailure(uint64_t now_ms, uint64_t began_ms) {
  if (!started_ || state_ == HealthState::kOffline) return wait();
  if (stall_end_ms_ != 0 && began_ms <= stall_end_ms_) {
    // It was in flight while the worker stood still: not the relay's fault
    // for sure. One probe sent after the stall decides (its timeout counts).
    ++excused_;
    if (state_ == HealthState::kOnline && outstanding_ == ProbeKind::kNone && sent_at_ms_ <= stall_end_ms_) {
      return send(ProbeKind::kHeartbeat, now_ms);
    }
    return wait();
  }
  return failed(HealthReason::kCommandFailures, now_ms);
}

HealthAction MemberHealth::onLoopStall(uint64_t start_ms, uint64_t end_ms) {
  if (end_ms > stall_end_ms_) stall_end_ms_ = end_ms;
  if (!started_) return wait();
  // A probe whose deadline passed (or would pass) while nothing was read gets
  // a whole probe timeout after the stall, as if it had been sent then.
  if (outstanding_ != ProbeKind::kNone && deadline_ms_ >= start_ms) {
    deadline_ms_ = std::max(deadline_ms_, end_ms + policy_.probe_timeout_ms);
  }
  return wait();
}

}  // namespace rtpc
