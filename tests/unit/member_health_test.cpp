#include "worker/member_health.h"
#include "worker/loop_stall.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rtpc {
namespace {

constexpr std::string_view kInfo4 =
    "sessions created: 10\nactive sessions: 4\nactive streams: 8\npackets received: 100\n"
    "packets transmitted: 90\n";

std::string info(uint64_t active) {
  return "sessions created: 100\nactive sessions: " + std::to_string(active) +
         "\nactive streams: 0\npackets received: 0\npackets transmitted: 0\n";
}

const std::vector<std::string> kFeatureProbes = {"VF 20050322", "VF 20071116", "VF 20071218",
                                                 "VF 20080403", "VF 20081102", "VF 20081224",
                                                 "VF 20090810", "VF 20150617"};

// Runs a member to online at `now`, answering every VF with "1".
struct Online {
  explicit Online(HealthPolicy p = {}) : h(p) {
    HealthAction a = h.start(now);
    EXPECT_EQ(a.command, "V");
    a = h.onReply(ProbeKind::kVersion, "20040107", now);
    while (a.send == ProbeKind::kFeature) a = h.onReply(ProbeKind::kFeature, "1", now);
    EXPECT_EQ(a.send, ProbeKind::kHeartbeat);
    EXPECT_TRUE(h.online());
    last = a;
  }
  MemberHealth h;
  uint64_t now = 10000;
  HealthAction last;
};

TEST(MemberHealth, FullProbeSequenceGoesOnlineWithEveryCapability) {
  MemberHealth h;
  HealthAction a = h.start(1000);
  EXPECT_EQ(h.state(), HealthState::kProbing);
  EXPECT_EQ(a.send, ProbeKind::kVersion);
  EXPECT_EQ(a.command, "V");
  EXPECT_EQ(a.reply_deadline_ms, 1800u);
  EXPECT_FALSE(a.transition);

  a = h.onReply(ProbeKind::kVersion, "20040107", 1010);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->from, HealthState::kProbing);
  EXPECT_EQ(a.transition->to, HealthState::kCapabilities);
  EXPECT_EQ(healthReasonName(a.transition->reason), "version_ok");
  EXPECT_EQ(*h.lastRttMs(), 10u);

  std::vector<std::string> sent;
  uint64_t now = 1010;
  while (a.send == ProbeKind::kFeature) {
    sent.emplace_back(a.command);
    EXPECT_FALSE(h.online());
    a = h.onReply(ProbeKind::kFeature, "1", ++now);
  }
  EXPECT_EQ(sent, kFeatureProbes);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->from, HealthState::kCapabilities);
  EXPECT_EQ(a.transition->to, HealthState::kOnline);
  EXPECT_EQ(healthReasonName(a.transition->reason), "probes_passed");
  EXPECT_EQ(a.command, "Ib");  // first heartbeat at once
  EXPECT_TRUE(h.online());
  EXPECT_EQ(h.capabilities(), 0xFF);
  EXPECT_TRUE(h.supports(kCapCopy | kCapStats | kCapNotify | kCapSourceBind | kCapNotifySelf |
                         kCapMultiStream));
  EXPECT_FALSE(h.activeSessions());  // UNKNOWN until the first heartbeat answers
}

TEST(MemberHealth, VfAnsweredZeroOrErrorMeansNotSupportedButStillOnline) {
  MemberHealth h;
  h.start(0);
  HealthAction a = h.onReply(ProbeKind::kVersion, "20040107", 0);
  while (a.send == ProbeKind::kFeature) {
    const std::string_view probe = a.command;
    std::string_view answer = "1";
    if (probe == "VF 20081224") answer = "0";   // rtpproxy without -n
    if (probe == "VF 20150617") answer = "E2";  // an error code counts as "no"
    if (probe == "VF 20071218") answer = "E8";
    a = h.onReply(ProbeKind::kFeature, answer, 0);
  }
  EXPECT_TRUE(h.online());
  EXPECT_EQ(h.consecutiveFailures(), 0u);
  EXPECT_FALSE(h.supports(kCapNotify));
  EXPECT_FALSE(h.supports(kCapNotifySelf));
  EXPECT_FALSE(h.supports(kCapCopy));
  EXPECT_TRUE(h.supports(kCapMultiStream | kCapStats | kCapSourceBind));
}

TEST(MemberHealth, RtpengineLikeMemberGoesOnlineWithItsThreeFeatures) {
  MemberHealth h;
  h.start(0);
  HealthAction a = h.onReply(ProbeKind::kVersion, "20040107", 0);
  while (a.send == ProbeKind::kFeature) {
    a = h.onReply(ProbeKind::kFeature, a.command == "VF 20050322" ? "1" : "0", 0);
  }
  EXPECT_TRUE(h.online());
  EXPECT_EQ(h.capabilities(), kCapMultiStream);
}

TEST(MemberHealth, WrongVersionKeepsProbingThenGoesOffline) {
  HealthPolicy p;
  MemberHealth h(p);
  h.start(0);
  HealthAction a = h.onReply(ProbeKind::kVersion, "20040108", 5);
  EXPECT_EQ(h.state(), HealthState::kProbing);
  EXPECT_FALSE(a.transition);
  EXPECT_EQ(a.send, ProbeKind::kNone);
  EXPECT_EQ(a.next_timer_ms, 1000u);  // retried at the heartbeat pace, from the send
  EXPECT_EQ(h.onTimer(999).send, ProbeKind::kNone);
  a = h.onTimer(1000);
  EXPECT_EQ(a.command, "V");
  a = h.onReply(ProbeKind::kVersion, "E1", 1001);  // an error is a wrong answer too
  EXPECT_EQ(h.state(), HealthState::kProbing);
  EXPECT_EQ(h.consecutiveFailures(), 2u);
  a = h.onTimer(2000);
  a = h.onReply(ProbeKind::kVersion, "20040108", 2001);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->from, HealthState::kProbing);
  EXPECT_EQ(a.transition->to, HealthState::kOffline);
  EXPECT_EQ(healthReasonName(a.transition->reason), "bad_version");
  EXPECT_EQ(a.next_timer_ms, 2001u + 2000u);
}

TEST(MemberHealth, GarbageRepliesAreFailuresAtEveryStage) {
  // Garbage to V.
  {
    MemberHealth h;
    h.start(0);
    h.onReply(ProbeKind::kVersion, std::string_view("\x01\x02\x03", 3), 1);
    EXPECT_EQ(h.consecutiveFailures(), 1u);
    EXPECT_EQ(h.state(), HealthState::kProbing);
  }
  // Garbage to a VF: the same VF is asked again, not skipped.
  {
    MemberHealth h;
    h.start(0);
    HealthAction a = h.onReply(ProbeKind::kVersion, "20040107", 0);
    a = h.onReply(ProbeKind::kFeature, "1", 0);
    ASSERT_EQ(a.command, "VF 20071116");
    a = h.onReply(ProbeKind::kFeature, "hello world", 10);
    EXPECT_EQ(h.consecutiveFailures(), 1u);
    EXPECT_EQ(h.state(), HealthState::kCapabilities);
    EXPECT_EQ(a.send, ProbeKind::kNone);
    a = h.onTimer(a.next_timer_ms);
    EXPECT_EQ(a.command, "VF 20071116");
    h.onReply(ProbeKind::kFeature, "", 1001);
    h.onTimer(2000);
    a = h.onReply(ProbeKind::kFeature, "12345 127.0.0.1", 2001);  // a U answer is no VF answer
    ASSERT_TRUE(a.transition);
    EXPECT_EQ(a.transition->to, HealthState::kOffline);
    EXPECT_EQ(healthReasonName(a.transition->reason), "malformed_reply");
  }
  // Garbage to Ib.
  {
    Online o;
    o.h.onReply(ProbeKind::kHeartbeat, "what is this", o.now);
    EXPECT_EQ(o.h.consecutiveFailures(), 1u);
    o.h.onTimer(o.now + 1000);
    o.h.onReply(ProbeKind::kHeartbeat, "sessions created: 1\n", o.now + 1000);  // no active line
    EXPECT_EQ(o.h.consecutiveFailures(), 2u);
    o.h.onTimer(o.now + 2000);
    const HealthAction a = o.h.onReply(ProbeKind::kHeartbeat, "20040107", o.now + 2000);
    ASSERT_TRUE(a.transition);
    EXPECT_EQ(a.transition->to, HealthState::kOffline);
    EXPECT_EQ(healthReasonName(a.transition->reason), "malformed_reply");
  }
}

TEST(MemberHealth, OnlineMemberGetsAHeartbeatEveryIntervalAndSmoothsTheLoad) {
  Online o;
  const uint64_t t0 = o.now;
  EXPECT_EQ(o.last.reply_deadline_ms, t0 + 800);
  HealthAction a = o.h.onReply(ProbeKind::kHeartbeat, kInfo4, t0 + 30);
  EXPECT_EQ(a.send, ProbeKind::kNone);
  EXPECT_EQ(a.next_timer_ms, t0 + 1000);  // from the send, not from the slow answer
  ASSERT_TRUE(o.h.activeSessions());
  EXPECT_DOUBLE_EQ(*o.h.activeSessions(), 4.0);  // the first sample is taken as is
  ASSERT_TRUE(o.h.lastStats());
  EXPECT_EQ(o.h.lastStats()->sessions_created, 10u);
  EXPECT_EQ(o.h.lastStats()->packets_transmitted, 90u);
  EXPECT_EQ(*o.h.lastRttMs(), 30u);

  EXPECT_EQ(o.h.onTimer(t0 + 999).send, ProbeKind::kNone);
  a = o.h.onTimer(t0 + 1000);
  EXPECT_EQ(a.command, "Ib");
  EXPECT_EQ(o.h.onTimer(t0 + 1001).send, ProbeKind::kNone);  // one probe at a time
  o.h.onReply(ProbeKind::kHeartbeat, info(14), t0 + 1002);
  EXPECT_DOUBLE_EQ(*o.h.activeSessions(), 4.0 + 0.3 * (14.0 - 4.0));
  o.h.onTimer(t0 + 2000);
  o.h.onReply(ProbeKind::kHeartbeat, info(0), t0 + 2001);
  EXPECT_DOUBLE_EQ(*o.h.activeSessions(), 7.0 * 0.7);
}

TEST(MemberHealth, LoadSmoothingFactorIsAPolicy) {
  HealthPolicy p;
  p.load_smoothing = 1.0;  // no smoothing
  Online o(p);
  o.h.onReply(ProbeKind::kHeartbeat, info(4), o.now);
  o.h.onTimer(o.now + 1000);
  o.h.onReply(ProbeKind::kHeartbeat, info(100), o.now + 1000);
  EXPECT_DOUBLE_EQ(*o.h.activeSessions(), 100.0);
}

TEST(MemberHealth, NMinusOneMissedHeartbeatsStayOnlineTheNthGoesOffline) {
  Online o;
  const uint64_t t0 = o.now;
  // The prober reports the timeouts.
  HealthAction a = o.h.onTimeout(ProbeKind::kHeartbeat, t0 + 800);
  EXPECT_TRUE(o.h.online());
  EXPECT_EQ(a.next_timer_ms, t0 + 1000);
  o.h.onTimer(t0 + 1000);
  a = o.h.onTimeout(ProbeKind::kHeartbeat, t0 + 1800);
  EXPECT_TRUE(o.h.online());
  EXPECT_EQ(o.h.consecutiveFailures(), 2u);
  EXPECT_FALSE(a.transition);
  o.h.onTimer(t0 + 2000);
  a = o.h.onTimeout(ProbeKind::kHeartbeat, t0 + 2800);
  EXPECT_FALSE(o.h.online());
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->from, HealthState::kOnline);
  EXPECT_EQ(a.transition->to, HealthState::kOffline);
  EXPECT_EQ(healthReasonName(a.transition->reason), "heartbeat_timeout");
}

TEST(MemberHealth, FailureCountIsAPolicy) {
  HealthPolicy p;
  p.failures_before_offline = 1;
  Online o(p);
  const HealthAction a = o.h.onTimeout(ProbeKind::kHeartbeat, o.now + 800);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->to, HealthState::kOffline);
}

TEST(MemberHealth, TimerAloneDetectsAnUnreportedTimeout) {
  Online o;
  // No onTimeout from the prober: the deadline timer counts it anyway.
  HealthAction a = o.h.onTimer(o.last.next_timer_ms);
  EXPECT_EQ(o.h.consecutiveFailures(), 1u);
  EXPECT_EQ(a.send, ProbeKind::kNone);
  a = o.h.onTimer(a.next_timer_ms);
  EXPECT_EQ(a.command, "Ib");
  a = o.h.onTimer(a.next_timer_ms);
  a = o.h.onTimer(a.next_timer_ms);
  a = o.h.onTimer(a.next_timer_ms);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(healthReasonName(a.transition->reason), "heartbeat_timeout");
  // Reported twice (prober and timer): counted once.
  Online o2;
  o2.h.onTimeout(ProbeKind::kHeartbeat, o2.now + 800);
  o2.h.onTimer(o2.now + 800);
  EXPECT_EQ(o2.h.consecutiveFailures(), 1u);
}

TEST(MemberHealth, AGoodReplyResetsTheFailureCount) {
  Online o;
  const uint64_t t0 = o.now;
  o.h.onTimeout(ProbeKind::kHeartbeat, t0 + 800);
  o.h.onTimer(t0 + 1000);
  o.h.onTimeout(ProbeKind::kHeartbeat, t0 + 1800);
  EXPECT_EQ(o.h.consecutiveFailures(), 2u);
  o.h.onTimer(t0 + 2000);
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, t0 + 2001);
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
  o.h.onTimer(t0 + 3000);
  o.h.onTimeout(ProbeKind::kHeartbeat, t0 + 3800);
  o.h.onTimer(t0 + 4000);
  o.h.onTimeout(ProbeKind::kHeartbeat, t0 + 4800);
  EXPECT_TRUE(o.h.online());
  // A forwarded command that got its answer counts as a good reply too.
  o.h.onCommandSuccess(t0 + 4900);
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
}

TEST(MemberHealth, CommandFailuresFromTheRouterCountLikeMissedHeartbeats) {
  Online o;
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, o.now);
  HealthAction a = o.h.onCommandFailure(o.now + 100);
  EXPECT_EQ(a.send, ProbeKind::kNone);
  EXPECT_EQ(a.next_timer_ms, o.now + 1000);  // the heartbeat schedule is untouched
  o.h.onTimer(o.now + 1000);
  o.h.onTimeout(ProbeKind::kHeartbeat, o.now + 1800);  // mixed kinds share the count
  EXPECT_TRUE(o.h.online());
  a = o.h.onCommandFailure(o.now + 1900);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->to, HealthState::kOffline);
  EXPECT_EQ(healthReasonName(a.transition->reason), "command_failures");
  // Failures of commands sent to an offline member change nothing.
  a = o.h.onCommandFailure(o.now + 2000);
  EXPECT_FALSE(a.transition);
  EXPECT_EQ(o.h.state(), HealthState::kOffline);
}

TEST(MemberHealth, OfflineMemberIsReprobedWithVEveryTwoSeconds) {
  Online o;
  o.h.onTimeout(ProbeKind::kHeartbeat, o.now + 800);
  o.h.onTimer(o.now + 1000);
  o.h.onTimeout(ProbeKind::kHeartbeat, o.now + 1800);
  o.h.onTimer(o.now + 2000);
  HealthAction a = o.h.onTimeout(ProbeKind::kHeartbeat, o.now + 2800);
  ASSERT_EQ(o.h.state(), HealthState::kOffline);
  const uint64_t t_off = o.now + 2800;
  EXPECT_EQ(a.next_timer_ms, t_off + 2000);
  EXPECT_EQ(o.h.onTimer(t_off + 1999).send, ProbeKind::kNone);
  a = o.h.onTimer(t_off + 2000);
  EXPECT_EQ(a.command, "V");
  // Unanswered: the next V two seconds after the previous one, and no
  // further transition (it is offline already).
  a = o.h.onTimeout(ProbeKind::kVersion, t_off + 2800);
  EXPECT_FALSE(a.transition);
  EXPECT_EQ(a.next_timer_ms, t_off + 4000);
  a = o.h.onTimer(t_off + 4000);
  EXPECT_EQ(a.command, "V");
  a = o.h.onReply(ProbeKind::kVersion, "20040108", t_off + 4001);  // wrong version: still offline
  EXPECT_EQ(o.h.state(), HealthState::kOffline);
  EXPECT_EQ(a.next_timer_ms, t_off + 6000);
}

TEST(MemberHealth, OfflineMemberComesBackThroughTheCapabilityProbes) {
  Online o;
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, o.now);
  ASSERT_TRUE(o.h.activeSessions());
  for (int i = 0; i < 3; ++i) o.h.onCommandFailure(o.now + 10);
  ASSERT_EQ(o.h.state(), HealthState::kOffline);
  EXPECT_FALSE(o.h.activeSessions());  // stale load is not shown as current
  EXPECT_FALSE(o.h.lastStats());

  HealthAction a = o.h.onTimer(o.now + 10 + 2000);
  ASSERT_EQ(a.command, "V");
  a = o.h.onReply(ProbeKind::kVersion, "20040107", o.now + 2020);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->from, HealthState::kOffline);
  EXPECT_EQ(a.transition->to, HealthState::kCapabilities);
  EXPECT_EQ(a.command, "VF 20050322");  // capabilities are checked again: it may be a new relay
  while (a.send == ProbeKind::kFeature) a = o.h.onReply(ProbeKind::kFeature, "1", o.now + 2030);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->from, HealthState::kCapabilities);
  EXPECT_EQ(a.transition->to, HealthState::kOnline);
  EXPECT_EQ(a.command, "Ib");
}

TEST(MemberHealth, SuccessfulCommandBringsTheOfflineProbeForward) {
  Online o;
  for (int i = 0; i < 3; ++i) o.h.onCommandFailure(o.now);
  ASSERT_EQ(o.h.state(), HealthState::kOffline);
  const HealthAction a = o.h.onCommandSuccess(o.now + 100);
  EXPECT_EQ(a.command, "V");
  EXPECT_EQ(o.h.state(), HealthState::kOffline);  // still has to pass the probes
  EXPECT_EQ(o.h.onCommandSuccess(o.now + 101).send, ProbeKind::kNone);  // V in flight already
}

TEST(MemberHealth, ErrorAnswerToIbKeepsTheMemberOnlineWithoutStats) {
  Online o;
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, o.now);
  ASSERT_TRUE(o.h.activeSessions());
  for (int i = 1; i <= 5; ++i) {
    o.h.onTimer(o.now + 1000 * i);
    const HealthAction a = o.h.onReply(ProbeKind::kHeartbeat, "E8", o.now + 1000 * i + 1);
    EXPECT_FALSE(a.transition);
    EXPECT_EQ(a.next_timer_ms, o.now + 1000 * (i + 1));
  }
  EXPECT_TRUE(o.h.online());
  EXPECT_TRUE(o.h.statsUnsupported());
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
  EXPECT_FALSE(o.h.activeSessions());  // the selector then uses the bound sessions
  EXPECT_FALSE(o.h.lastStats());
  // It still counts as a heartbeat: missing answers take it offline.
  o.h.onTimer(o.now + 6000);
  o.h.onTimeout(ProbeKind::kHeartbeat, o.now + 6800);
  EXPECT_EQ(o.h.consecutiveFailures(), 1u);
  // A relay that answers I again is read again.
  o.h.onTimer(o.now + 7000);
  o.h.onReply(ProbeKind::kHeartbeat, info(9), o.now + 7001);
  EXPECT_FALSE(o.h.statsUnsupported());
  EXPECT_DOUBLE_EQ(*o.h.activeSessions(), 9.0);
}

TEST(MemberHealth, RepliesNobodyWaitsForAreIgnored) {
  Online o;
  // Wrong kind while Ib is outstanding.
  HealthAction a = o.h.onReply(ProbeKind::kVersion, "20040108", o.now);
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
  EXPECT_EQ(o.h.outstanding(), ProbeKind::kHeartbeat);
  a = o.h.onTimeout(ProbeKind::kFeature, o.now);
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
  // An Ib answer after the member went offline.
  for (int i = 0; i < 3; ++i) o.h.onCommandFailure(o.now);
  ASSERT_EQ(o.h.state(), HealthState::kOffline);
  a = o.h.onReply(ProbeKind::kHeartbeat, kInfo4, o.now + 5);
  EXPECT_FALSE(a.transition);
  EXPECT_FALSE(o.h.activeSessions());
  EXPECT_EQ(o.h.state(), HealthState::kOffline);
  // A second answer to one probe.
  Online o2;
  o2.h.onReply(ProbeKind::kHeartbeat, info(3), o2.now);
  o2.h.onReply(ProbeKind::kHeartbeat, info(300), o2.now);
  EXPECT_DOUBLE_EQ(*o2.h.activeSessions(), 3.0);
}

TEST(MemberHealth, NothingHappensBeforeStart) {
  MemberHealth h;
  EXPECT_EQ(h.onTimer(100000).send, ProbeKind::kNone);
  EXPECT_EQ(h.onTimer(100000).next_timer_ms, 0u);
  EXPECT_EQ(h.onReply(ProbeKind::kVersion, "20040107", 1).send, ProbeKind::kNone);
  EXPECT_EQ(h.onCommandFailure(1).send, ProbeKind::kNone);
  EXPECT_EQ(h.state(), HealthState::kProbing);
  EXPECT_EQ(h.consecutiveFailures(), 0u);
}

TEST(MemberHealth, ProbeTimeoutWhileProbingUsesItsOwnReason) {
  MemberHealth h;
  HealthAction a = h.start(0);
  for (int i = 0; i < 3; ++i) {
    a = h.onTimeout(ProbeKind::kVersion, a.reply_deadline_ms);
    if (i < 2) a = h.onTimer(a.next_timer_ms);
  }
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->from, HealthState::kProbing);
  EXPECT_EQ(a.transition->to, HealthState::kOffline);
  EXPECT_EQ(healthReasonName(a.transition->reason), "probe_timeout");
}

TEST(MemberHealth, PolicyComesFromTheClusterTuning) {
  ClusterTuning t;
  t.heartbeat_interval_ms = 500;
  t.heartbeat_failures = 5;
  t.offline_probe_interval_ms = 3000;
  t.command_timeout_ms = 400;
  const HealthPolicy p = healthPolicyFrom(t);
  EXPECT_EQ(p.heartbeat_interval_ms, 500u);
  EXPECT_EQ(p.failures_before_offline, 5u);
  EXPECT_EQ(p.offline_probe_interval_ms, 3000u);
  EXPECT_EQ(p.probe_timeout_ms, 400u);
  // Degenerate values cannot make the prober spin or skip the failure count.
  HealthPolicy bad;
  bad.heartbeat_interval_ms = 0;
  bad.failures_before_offline = 0;
  bad.load_smoothing = -1;
  MemberHealth h(bad);
  EXPECT_EQ(h.policy().heartbeat_interval_ms, 1u);
  EXPECT_EQ(h.policy().failures_before_offline, 1u);
  EXPECT_GT(h.policy().load_smoothing, 0.0);
}

TEST(MemberHealth, CapabilityTableMapsDatesAndNames) {
  EXPECT_EQ(capabilityForDate(20071218), kCapCopy);
  EXPECT_EQ(capabilityForDate(20150617), kCapNotifySelf);
  EXPECT_FALSE(capabilityForDate(20040107));  // implied by V, not probed
  EXPECT_FALSE(capabilityForDate(19990101));
  uint16_t all = 0;
  for (const CapabilityInfo& c : probedCapabilities()) {
    EXPECT_EQ(c.probe, "VF " + std::to_string(c.date));
    EXPECT_FALSE(c.name.empty());
    EXPECT_EQ(all & c.bit, 0);
    all |= c.bit;
  }
  EXPECT_EQ(healthStateName(HealthState::kOnline), "online");
  EXPECT_EQ(healthStateName(HealthState::kOffline), "offline");
}

// ---------------------------------------------------------------------------
// Stalls of the worker's own loop (issue 10, section 4).

TEST(LoopStall, AGapLongerThanTheThresholdIsOneStallWindow) {
  LoopStall st(800, 100);
  uint64_t t = 1000;
  for (int i = 0; i < 40; ++i, t += 25) EXPECT_FALSE(st.observe(t));  // a loop that runs
  t -= 25;  // the last observation
  EXPECT_FALSE(st.observe(t + 100));  // at the threshold: not yet
  t += 100;
  EXPECT_EQ(st.count(), 0u);
  EXPECT_TRUE(st.observe(t + 3000));  // SIGSTOP for 3 s
  EXPECT_EQ(st.count(), 1u);
  EXPECT_EQ(st.last().start_ms, t);
  EXPECT_EQ(st.last().end_ms, t + 3000);
  EXPECT_EQ(st.totalMs(), 3000u);
  EXPECT_FALSE(st.observe(t + 3000));  // seen once
  EXPECT_FALSE(st.observe(t + 2000));  // a clock read taken earlier changes nothing
  EXPECT_EQ(st.count(), 1u);
}

// The loop running from `from` to `to`: it observes the clock every tick.
void runLoop(LoopStall& st, uint64_t from, uint64_t to) {
  for (uint64_t t = from; t <= to; t += LoopStall::kTickMs) EXPECT_FALSE(st.observe(t)) << t;
  EXPECT_FALSE(st.observe(to));
}

TEST(LoopStall, OnlyDeadlinesThatPassedWhileTheLoopStoodStillArePostponed) {
  // The loop ran until 10000, stood still until 13000, runs again.
  struct Case {
    uint64_t deadline;
    std::optional<uint64_t> want;
    const char* why;
  };
  const Case cases[] = {
      {9990, std::nullopt, "passed before the stall: a real timeout"},
      {10000, 13800, "passed at the stall's start"},
      {11500, 13800, "passed during the stall"},
      {13000, 13800, "passed at its end"},
      {13100, 13800, "passed in the pass that follows it (slack)"},
      {13101, std::nullopt, "passed while the loop ran again"},
      {13800, std::nullopt, "an already postponed deadline is not postponed again"},
  };
  for (const Case& c : cases) {
    LoopStall st(800, 100);
    st.observe(10000);
    ASSERT_TRUE(st.observe(13000));
    const uint64_t now = std::max<uint64_t>(c.deadline, 13000);
    runLoop(st, 13000, now);
    EXPECT_EQ(st.postpone(c.deadline, now), c.want) << c.why;
    EXPECT_EQ(st.count(), 1u);
  }
  // No stall ever: nothing is postponed.
  LoopStall calm(800, 100);
  calm.observe(10000);
  EXPECT_EQ(calm.postpone(10010, 10020), std::nullopt);
}

TEST(LoopStall, TheTimeoutDecisionItselfSeesAStallNothingElseObservedYet) {
  // After SIGCONT the expired timers may run before the worker's own tick:
  // the link's question observes the clock first.
  LoopStall st(500, 100);
  st.observe(10000);
  EXPECT_EQ(st.postpone(10800, 13000), 13500u);
  EXPECT_EQ(st.count(), 1u);
  // A second stall across the postponed deadline postpones it once more.
  runLoop(st, 13000, 13200);
  EXPECT_EQ(st.postpone(13500, 15000), 15500u);
  EXPECT_EQ(st.count(), 2u);
  // The loop runs through the new deadline: now it is the relay's.
  runLoop(st, 15000, 15600);
  EXPECT_EQ(st.postpone(15500, 15600), std::nullopt);
}

TEST(MemberHealth, AProbeOutstandingAcrossAStallGetsAFullTimeoutAfterIt) {
  Online o;  // Ib sent at now, deadline now + 800
  const uint64_t t = o.now;
  HealthAction a = o.h.onLoopStall(t + 100, t + 3100);
  EXPECT_EQ(a.send, ProbeKind::kNone);
  EXPECT_FALSE(a.transition);
  EXPECT_EQ(a.next_timer_ms, t + 3100 + 800);
  // The health timer that fires right after the stall judges nothing yet.
  a = o.h.onTimer(t + 3100);
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
  EXPECT_EQ(o.h.outstanding(), ProbeKind::kHeartbeat);
  // The answer queued during the stall is read: all is well.
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, t + 3101);
  EXPECT_TRUE(o.h.online());
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
  // Unanswered, it counts after that full timeout, not before.
  Online o2;
  o2.h.onLoopStall(o2.now + 100, o2.now + 3100);
  EXPECT_EQ(o2.h.onTimer(o2.now + 3899).send, ProbeKind::kNone);
  EXPECT_EQ(o2.h.consecutiveFailures(), 0u);
  o2.h.onTimer(o2.now + 3900);
  EXPECT_EQ(o2.h.consecutiveFailures(), 1u);
}

TEST(MemberHealth, CommandsThatTimedOutTogetherAcrossAStallAreOneEventDecidedByAProbe) {
  Online o;
  const uint64_t t = o.now;
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, t + 1);  // Ib answered; next one at t + 1000
  o.h.onLoopStall(t + 100, t + 3100);
  // 32 commands in flight when the worker stopped fail after it: no count,
  // and the first one asks the relay with an Ib at once.
  HealthAction a = o.h.onCommandFailure(t + 3900, t + 50);
  EXPECT_EQ(a.send, ProbeKind::kHeartbeat);
  EXPECT_FALSE(a.transition);
  for (int i = 1; i < 32; ++i) {
    a = o.h.onCommandFailure(t + 3900, t + 50 + i);
    EXPECT_EQ(a.send, ProbeKind::kNone) << i;
    EXPECT_FALSE(a.transition) << i;
  }
  EXPECT_TRUE(o.h.online());
  EXPECT_EQ(o.h.consecutiveFailures(), 0u);
  EXPECT_EQ(o.h.excusedFailures(), 32u);
  // The probe is the evidence: answered, the member stays online.
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, t + 3901);
  EXPECT_TRUE(o.h.online());
  // One more late failure of the same burst asks nothing more: a probe was
  // sent after the stall already.
  EXPECT_EQ(o.h.onCommandFailure(t + 3950, t + 60).send, ProbeKind::kNone);
  // Commands sent after the stall count as always: three take it offline.
  o.h.onCommandFailure(t + 5000, t + 4200);
  o.h.onCommandFailure(t + 5001, t + 4201);
  a = o.h.onCommandFailure(t + 5002, t + 4202);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(healthReasonName(a.transition->reason), "command_failures");
}

TEST(MemberHealth, ARelayThatReallyDiedDuringAStallGoesOfflineOnItsProbes) {
  HealthPolicy p;
  p.failures_before_offline = 2;
  Online o(p);
  const uint64_t t = o.now;
  o.h.onReply(ProbeKind::kHeartbeat, kInfo4, t + 1);
  o.h.onLoopStall(t + 100, t + 3100);
  HealthAction a = o.h.onCommandFailure(t + 3900, t + 50);
  ASSERT_EQ(a.send, ProbeKind::kHeartbeat);
  a = o.h.onTimeout(ProbeKind::kHeartbeat, a.reply_deadline_ms);
  EXPECT_TRUE(o.h.online());
  EXPECT_EQ(o.h.consecutiveFailures(), 1u);
  a = o.h.onTimer(a.next_timer_ms);
  ASSERT_EQ(a.send, ProbeKind::kHeartbeat);
  a = o.h.onTimeout(ProbeKind::kHeartbeat, a.reply_deadline_ms);
  ASSERT_TRUE(a.transition);
  EXPECT_EQ(a.transition->to, HealthState::kOffline);
  EXPECT_EQ(healthReasonName(a.transition->reason), "heartbeat_timeout");
}

TEST(MemberHealth, AStallBeforeStartOrWhileOfflineChangesNothingButTheRecord) {
  MemberHealth h;
  EXPECT_EQ(h.onLoopStall(10, 3010).next_timer_ms, 0u);
  EXPECT_EQ(h.onCommandFailure(4000, 5).send, ProbeKind::kNone);
  Online o;
  for (int i = 0; i < 3; ++i) o.h.onCommandFailure(o.now + 10);
  ASSERT_EQ(o.h.state(), HealthState::kOffline);
  const HealthAction a = o.h.onLoopStall(o.now + 100, o.now + 3100);
  EXPECT_FALSE(a.transition);
  EXPECT_EQ(a.send, ProbeKind::kNone);
  EXPECT_EQ(o.h.state(), HealthState::kOffline);
}

}  // namespace
}  // namespace rtpc
