// MemberLink against the real relay double (rtpp_test_relay) on every
// transport, plus plain sockets standing in for a member where the test must
// see or forge exact datagrams (cookies, retransmit timing, source address).
#include "worker/member_link.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "shared/rtpp_reply.h"
#include "tests/integration/test_loop.h"
#include "tests/integration/test_support.h"

namespace rtpc {
namespace {

using testing::Clock;
using testing::milliseconds;
using testing::TempDir;
using testing::TestLoop;
using testing::TestRelay;
using testing::waitReadable;

constexpr milliseconds kLateSlack{300};

// A peer the link has dropped must fail the test, not kill it.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

struct Result {
  int calls = 0;
  LinkOutcome outcome = LinkOutcome::kError;
  std::string body;
  Clock::time_point at;
};

class Collector : public MemberLinkClient {
 public:
  void onMemberReply(uint64_t token, LinkOutcome outcome, std::string_view body) override {
    Result& r = results[token];
    ++r.calls;
    r.outcome = outcome;
    r.body.assign(body);
    r.at = Clock::now();
    ++calls;
    if (after) after(token, outcome);
  }
  bool done(uint64_t token) const { return results.count(token) != 0; }
  const Result& operator[](uint64_t token) { return results[token]; }

  std::map<uint64_t, Result> results;
  size_t calls = 0;
  std::function<void(uint64_t, LinkOutcome)> after;
};

// Sends `total` commands with at most `window` in flight. Each completion
// sends the next one from inside the link's callback (re-entrant send).
class WindowDriver {
 public:
  WindowDriver(MemberLink& link, Collector& collector, std::function<std::string(size_t)> make,
               size_t total, milliseconds timeout)
      : link_(link), make_(std::move(make)), total_(total), timeout_(timeout) {
    collector.after = [this](uint64_t, LinkOutcome) { sendNext(); };
  }
  void start(size_t window) {
    for (size_t i = 0; i < window; ++i) sendNext();
  }
  void sendNext() {
    if (next_ >= total_) return;
    const size_t i = next_++;
    link_.send(make_(i), timeout_, i);
  }

 private:
  MemberLink& link_;
  std::function<std::string(size_t)> make_;
  size_t total_;
  size_t next_ = 0;
  milliseconds timeout_;
};

std::string listenSpec(Transport t, const TempDir& dir) {
  switch (t) {
    case Transport::kUdp: return "udp:127.0.0.1:0";
    case Transport::kUdp6: return "udp6:[::1]:0";
    case Transport::kUnix: return "unix:" + dir.file("ctl.sock");
    case Transport::kCunix: return "cunix:" + dir.file("ctl.sock");
    case Transport::kTcp: return "tcp:127.0.0.1:0";
    case Transport::kTcp6: return "tcp6:[::1]:0";
  }
  return "";
}

// ---------------------------------------------------------------------------
// Every transport against the relay double.

class MemberLinkTransportTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(relay_.start(listenSpec(GetParam(), dir_), dir_.file("admin.sock")));
    options_.address = relay_.address();
  }

  void makeLink() { link_ = MemberLink::create(loop_.base(), options_, &client_); }

  // Sends one command and waits for its outcome.
  Result roundTrip(const std::string& command, milliseconds timeout = milliseconds(2000),
                   MemberLink::ReplyShape shape = MemberLink::ReplyShape::kLine) {
    const uint64_t token = next_token_++;
    link_->send(command, timeout, token, shape);
    EXPECT_TRUE(loop_.runUntil([&] { return client_.done(token); }));
    return client_[token];
  }

  TestLoop loop_;  // first: outlives the link
  TempDir dir_;
  TestRelay relay_;
  Collector client_;
  MemberLinkOptions options_;
  std::unique_ptr<MemberLink> link_;
  uint64_t next_token_ = 1000000;
};

std::string createCommand(size_t i) {
  return "U call-" + std::to_string(i) + " 192.0.2.1 10000 ftag-" + std::to_string(i);
}

TEST_P(MemberLinkTransportTest, RepliesReachTheirOwnTokenUnderConcurrency) {
  // Each U creates a session with a port of its own; the same U again must
  // give that same port. A reply handed to the wrong token shows as a
  // mismatch, since the second pass runs in another order.
  constexpr size_t kTotal = 1000;
  constexpr size_t kWindow = 64;
  makeLink();
  {
    WindowDriver driver(*link_, client_, createCommand, kTotal, milliseconds(5000));
    driver.start(kWindow);
    ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == kTotal; }, milliseconds(20000)));
  }
  std::vector<std::string> first(kTotal);
  std::set<std::string> ports;
  for (size_t i = 0; i < kTotal; ++i) {
    const Result& r = client_[i];
    ASSERT_EQ(r.calls, 1) << i;
    ASSERT_EQ(r.outcome, LinkOutcome::kReply) << i << " " << r.body;
    ASSERT_EQ(classifyReply(r.body).kind, ReplyKind::kPort) << r.body;
    first[i] = r.body;
    ports.insert(r.body);
  }
  EXPECT_EQ(ports.size(), kTotal);
  EXPECT_EQ(link_->inFlight(), 0u);

  client_.results.clear();
  client_.calls = 0;
  {
    WindowDriver driver(
        *link_, client_, [](size_t i) { return createCommand(kTotal - 1 - i); }, kTotal,
        milliseconds(5000));
    driver.start(kWindow);
    ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == kTotal; }, milliseconds(20000)));
  }
  for (size_t i = 0; i < kTotal; ++i) {
    const Result& r = client_[i];
    ASSERT_EQ(r.calls, 1) << i;
    ASSERT_EQ(r.outcome, LinkOutcome::kReply) << i;
    EXPECT_EQ(r.body, first[kTotal - 1 - i]) << "token " << i;
  }
  EXPECT_EQ(link_->counters().replies, 2 * kTotal);
  EXPECT_EQ(link_->counters().malformed, 0u);
  EXPECT_EQ(relay_.stat("sessions_created"), kTotal);
}

TEST_P(MemberLinkTransportTest, MutedMemberTimesOutAtTheDeadlineNotBefore) {
  makeLink();
  EXPECT_EQ(roundTrip("V").body, "20040107");
  ASSERT_EQ(relay_.admin("mute on").rfind("OK", 0), 0u);

  constexpr milliseconds kTimeout{300};
  const auto sent = Clock::now();
  link_->send("V", kTimeout, 1);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  const Result& r = client_[1];
  EXPECT_EQ(r.outcome, LinkOutcome::kTimeout);
  EXPECT_GE(r.at - sent, kTimeout);
  EXPECT_LE(r.at - sent, kTimeout + kLateSlack);
  EXPECT_EQ(link_->counters().timeouts, 1u);
  EXPECT_EQ(link_->inFlight(), 0u);
  if (isDatagram(GetParam())) {
    // How many fit before the deadline depends on the RTT measured on a loaded machine.
    EXPECT_GE(link_->counters().retransmits, 1u);
    EXPECT_LE(link_->counters().retransmits, options_.max_retransmits);
  }

  // Nothing arrives afterwards, and the link (a stream: a new connection) works again.
  ASSERT_EQ(relay_.admin("mute off").rfind("OK", 0), 0u);
  const Result again = roundTrip("V");
  EXPECT_EQ(again.outcome, LinkOutcome::kReply);
  EXPECT_EQ(again.body, "20040107");
  EXPECT_EQ(client_[1].calls, 1);
}

TEST_P(MemberLinkTransportTest, GarbageRepliesAreCountedAndNeverCrash) {
  makeLink();
  ASSERT_EQ(relay_.admin("garbage on").rfind("OK", 0), 0u);
  constexpr size_t kTotal = 40;
  WindowDriver driver(*link_, client_, [](size_t) { return std::string("V"); }, kTotal,
                      milliseconds(200));
  driver.start(4);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == kTotal; }));
  for (size_t i = 0; i < kTotal; ++i) {
    EXPECT_EQ(client_[i].calls, 1) << i;
    // What was delivered is at least text of a sane size.
    if (client_[i].outcome == LinkOutcome::kReply) {
      EXPECT_LE(client_[i].body.size(), 2048u);
    }
  }
  EXPECT_GT(link_->counters().malformed, 0u);
  EXPECT_EQ(link_->inFlight(), 0u);

  ASSERT_EQ(relay_.admin("garbage off").rfind("OK", 0), 0u);
  loop_.runFor(milliseconds(50));  // let any junk still on its way arrive
  const Result r = roundTrip("V");
  EXPECT_EQ(r.outcome, LinkOutcome::kReply);
  EXPECT_EQ(r.body, "20040107");
}

TEST_P(MemberLinkTransportTest, KilledMemberFailsAndRestartedMemberServesAgain) {
  makeLink();
  EXPECT_EQ(roundTrip("V").outcome, LinkOutcome::kReply);
  ASSERT_EQ(relay_.admin("mute on").rfind("OK", 0), 0u);
  for (uint64_t t = 1; t <= 3; ++t) link_->send("V", milliseconds(1500), t);
  loop_.runFor(milliseconds(30));  // in flight, unanswered
  const SocketAddress same = relay_.address();
  relay_.stop();

  ASSERT_TRUE(loop_.runUntil([&] { return client_.calls >= 4; }));
  for (uint64_t t = 1; t <= 3; ++t) {
    EXPECT_EQ(client_[t].calls, 1);
    EXPECT_NE(client_[t].outcome, LinkOutcome::kReply);
  }
  // Sent while the member is down.
  const Result down = roundTrip("V", milliseconds(500));
  EXPECT_NE(down.outcome, LinkOutcome::kReply);
  EXPECT_EQ(link_->inFlight(), 0u);

  // The same address again: the port it had, or the same path.
  ASSERT_TRUE(relay_.start(same.uri(), dir_.file("admin.sock")));
  ASSERT_EQ(relay_.address(), same);
  const Result up = roundTrip("V");
  EXPECT_EQ(up.outcome, LinkOutcome::kReply) << up.body;
  EXPECT_EQ(up.body, "20040107");
}

TEST_P(MemberLinkTransportTest, SmoothedRttIsMeasured) {
  makeLink();
  EXPECT_EQ(link_->smoothedRtt().count(), 0);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(roundTrip("V").outcome, LinkOutcome::kReply);
  EXPECT_GT(link_->smoothedRtt().count(), 0);
  EXPECT_LT(link_->smoothedRtt(), std::chrono::microseconds(100000));
}

TEST_P(MemberLinkTransportTest, CancelAllFailsEveryCommandInFlightAtOnce) {
  makeLink();
  ASSERT_EQ(relay_.admin("mute on").rfind("OK", 0), 0u);
  for (uint64_t t = 1; t <= 10; ++t) link_->send("V", milliseconds(3000), t);
  loop_.runFor(milliseconds(20));
  EXPECT_EQ(link_->inFlight(), 10u);
  link_->cancelAll();
  EXPECT_EQ(client_.calls, 10u);
  for (uint64_t t = 1; t <= 10; ++t) EXPECT_EQ(client_[t].outcome, LinkOutcome::kError);
  EXPECT_EQ(link_->inFlight(), 0u);
  EXPECT_EQ(link_->counters().errors, 10u);

  ASSERT_EQ(relay_.admin("mute off").rfind("OK", 0), 0u);
  EXPECT_EQ(roundTrip("V").outcome, LinkOutcome::kReply);
  EXPECT_EQ(client_.calls, 11u);
}

TEST_P(MemberLinkTransportTest, CallbackMaySendAgainOnTheSameLink) {
  makeLink();
  // A chain: each reply's callback sends the next command, one at a time.
  constexpr uint64_t kChain = 100;
  client_.after = [&](uint64_t token, LinkOutcome) {
    if (token + 1 < kChain) link_->send("VF 20040107", milliseconds(2000), token + 1);
  };
  link_->send("VF 20040107", milliseconds(2000), 0);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == kChain; }));
  for (uint64_t t = 0; t < kChain; ++t) {
    EXPECT_EQ(client_[t].outcome, LinkOutcome::kReply);
    EXPECT_EQ(client_[t].body, "1");
  }
}

TEST_P(MemberLinkTransportTest, InfoRepliesAreFramedByTheirShape) {
  makeLink();
  using Shape = MemberLink::ReplyShape;
  // Pipelined on a stream link: the framing of one reply decides where the next starts.
  link_->send("I", milliseconds(2000), 1, Shape::kInfo);
  link_->send("Il", milliseconds(2000), 2, Shape::kInfoWithLoad);
  link_->send("Ix", milliseconds(2000), 3, Shape::kInfo);
  link_->send("V", milliseconds(2000), 4);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == 4; }));
  EXPECT_EQ(client_[1].body,
            "sessions created: 0\nactive sessions: 0\nactive streams: 0\npackets received: 0\n"
            "packets transmitted: 0");
  EXPECT_EQ(client_[2].body.substr(client_[2].body.rfind('\n') + 1), "average load: 0.000000");
  EXPECT_EQ(client_[3].body, "E18");
  EXPECT_EQ(client_[4].body, "20040107");
}

TEST_P(MemberLinkTransportTest, EmptyReplyBodyIsAReply) {
  makeLink();
  // `G` with no names answers an empty line.
  const Result r = roundTrip("G");
  EXPECT_EQ(r.outcome, LinkOutcome::kReply);
  EXPECT_EQ(r.body, "");
}

INSTANTIATE_TEST_SUITE_P(Transports, MemberLinkTransportTest,
                         ::testing::Values(Transport::kUdp, Transport::kUdp6, Transport::kUnix,
                                           Transport::kCunix, Transport::kTcp, Transport::kTcp6),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return std::string(transportName(info.param));
                         });

// ---------------------------------------------------------------------------
// udp against the relay: the reply cache is what makes retransmission safe.

class MemberLinkUdpRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(relay_.start("udp:127.0.0.1:0", dir_.file("admin.sock")));
    options_.address = relay_.address();
  }
  TestLoop loop_;
  TempDir dir_;
  TestRelay relay_;
  Collector client_;
  MemberLinkOptions options_;
};

TEST_F(MemberLinkUdpRelayTest, SlowReplyIsRetransmittedWithTheSameCookieAndExecutedOnce) {
  options_.first_retry = milliseconds(20);
  options_.max_retransmits = 3;
  auto link = MemberLink::create(loop_.base(), options_, &client_);
  // Retries at 20, 60 and 140 ms, well before the reply at 300 ms.
  ASSERT_EQ(relay_.admin("delay 300").rfind("OK", 0), 0u);
  link->send(createCommand(1), milliseconds(2000), 1);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  EXPECT_EQ(client_[1].outcome, LinkOutcome::kReply);
  EXPECT_EQ(classifyReply(client_[1].body).kind, ReplyKind::kPort);
  EXPECT_EQ(link->counters().retransmits, 3u);
  // The copies of the reply to the retransmissions arrive after it: late, not delivered.
  ASSERT_TRUE(loop_.runUntil([&] { return link->counters().late == 3; }));
  EXPECT_EQ(client_[1].calls, 1);
  EXPECT_EQ(relay_.stat("executed"), 1u);
  EXPECT_EQ(relay_.stat("dups"), 3u);
  // Karn: nothing was learnt from a retransmitted command.
  EXPECT_EQ(link->smoothedRtt().count(), 0);
}

TEST_F(MemberLinkUdpRelayTest, DroppedCommandsAreRetransmittedUntilAnsweredAndRunOnce) {
  options_.first_retry = milliseconds(20);
  options_.min_retry = milliseconds(20);
  options_.max_retry = milliseconds(80);
  options_.max_retransmits = 12;
  auto link = MemberLink::create(loop_.base(), options_, &client_);
  ASSERT_EQ(relay_.admin("drop 30").rfind("OK", 0), 0u);
  constexpr size_t kTotal = 200;
  WindowDriver driver(*link, client_, createCommand, kTotal, milliseconds(3000));
  driver.start(16);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == kTotal; }, milliseconds(15000)));
  for (size_t i = 0; i < kTotal; ++i) EXPECT_EQ(client_[i].outcome, LinkOutcome::kReply) << i;
  EXPECT_GT(link->counters().retransmits, 0u);
  EXPECT_GT(relay_.stat("dropped"), 0u);
  EXPECT_EQ(relay_.stat("executed"), kTotal);
  EXPECT_EQ(relay_.stat("sessions_created"), kTotal);
}

// ---------------------------------------------------------------------------
// udp against a plain socket: exact datagrams, forged replies.

class FakeUdpMember {
 public:
  struct Datagram {
    std::string bytes;
    sockaddr_storage from{};
    socklen_t from_len = 0;
    Clock::time_point at;
    // The kernel's receive time: gaps measured with it do not depend on
    // when the (shared, loaded) test loop got round to reading.
    std::chrono::nanoseconds kernel_at{0};
  };

  FakeUdpMember(event_base* base, int family) {
    fd_ = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    }
    bind(fd_, reinterpret_cast<sockaddr*>(&ss), len);
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    address.transport = family == AF_INET ? Transport::kUdp : Transport::kUdp6;
    address.host = family == AF_INET ? "127.0.0.1" : "::1";
    address.port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    ev_ = event_new(base, fd_, EV_READ | EV_PERSIST, &FakeUdpMember::onRead, this);
    event_add(ev_, nullptr);
  }
  ~FakeUdpMember() {
    event_free(ev_);
    close(fd_);
  }

  void reply(const Datagram& to, std::string_view text) const {
    sendto(fd_, text.data(), text.size(), 0, reinterpret_cast<const sockaddr*>(&to.from), to.from_len);
  }
  static std::string cookieOf(const Datagram& d) { return d.bytes.substr(0, d.bytes.find(' ')); }

  SocketAddress address;
  std::vector<Datagram> received;

 private:
  static void onRead(evutil_socket_t fd, short, void* arg) {
    auto* self = static_cast<FakeUdpMember*>(arg);
    for (;;) {
      Datagram d;
      char buf[9000];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
      iovec iov{buf, sizeof buf};
      msghdr h{};
      h.msg_name = &d.from;
      h.msg_namelen = sizeof d.from;
      h.msg_iov = &iov;
      h.msg_iovlen = 1;
      h.msg_control = control;
      h.msg_controllen = sizeof control;
      const ssize_t n = recvmsg(fd, &h, 0);
      if (n < 0) return;
      d.at = Clock::now();
      d.from_len = h.msg_namelen;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          timespec ts;
          std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
          d.kernel_at = std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
        }
      }
      d.bytes.assign(buf, static_cast<size_t>(n));
      self->received.push_back(std::move(d));
    }
  }
  int fd_ = -1;
  event* ev_ = nullptr;
};

class MemberLinkUdpWireTest : public ::testing::Test {
 protected:
  TestLoop loop_;
  Collector client_;
  FakeUdpMember member_{loop_.base(), AF_INET};
};

TEST_F(MemberLinkUdpWireTest, RetransmissionsRepeatTheCookieAndBackOffUntilTheDeadline) {
  MemberLinkOptions o;
  o.address = member_.address;
  o.first_retry = milliseconds(40);
  o.max_retry = milliseconds(400);
  o.max_retransmits = 3;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  const auto sent = Clock::now();
  link->send("V", milliseconds(600), 7);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(7); }));
  EXPECT_EQ(client_[7].outcome, LinkOutcome::kTimeout);
  EXPECT_GE(client_[7].at - sent, milliseconds(600));

  ASSERT_EQ(member_.received.size(), 4u);
  const std::string& first = member_.received[0].bytes;
  const std::string cookie = FakeUdpMember::cookieOf(member_.received[0]);
  EXPECT_EQ(cookie.size(), 20u);
  EXPECT_EQ(cookie.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(first, cookie + " V");
  for (const auto& d : member_.received) EXPECT_EQ(d.bytes, first);
  // 40, then 80, then 160 ms apart (each at least that; scheduling only adds).
  const milliseconds gaps[] = {milliseconds(40), milliseconds(80), milliseconds(160)};
  for (size_t i = 0; i < 3; ++i) {
    const auto gap = member_.received[i + 1].kernel_at - member_.received[i].kernel_at;
    EXPECT_GE(gap, gaps[i] - milliseconds(1)) << i;
    EXPECT_LE(gap, gaps[i] + kLateSlack) << i;
  }
}

TEST_F(MemberLinkUdpWireTest, RetriesNeverGoPastTheDeadline) {
  MemberLinkOptions o;
  o.address = member_.address;
  o.first_retry = milliseconds(60);
  o.max_retransmits = 10;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  link->send("V", milliseconds(150), 1);  // a retry at 60 ms; the next (180 ms) is past it
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  EXPECT_EQ(client_[1].outcome, LinkOutcome::kTimeout);
  EXPECT_EQ(member_.received.size(), 2u);
  EXPECT_EQ(link->counters().retransmits, 1u);
}

TEST_F(MemberLinkUdpWireTest, EveryCommandGetsAFreshCookie) {
  MemberLinkOptions o;
  o.address = member_.address;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  auto other = MemberLink::create(loop_.base(), o, &client_);
  for (uint64_t t = 0; t < 50; ++t) {
    link->send("V", milliseconds(1000), t);
    // The same slot is reused at once: only the sequence tells them apart.
    ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == t + 1; }));
    member_.reply(member_.received.back(), FakeUdpMember::cookieOf(member_.received.back()) + " 20040107\n");
    ASSERT_TRUE(loop_.runUntil([&] { return client_.done(t); }));
  }
  other->send("V", milliseconds(1000), 100);
  ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == 51; }));
  std::set<std::string> cookies;
  for (const auto& d : member_.received) cookies.insert(FakeUdpMember::cookieOf(d));
  EXPECT_EQ(cookies.size(), 51u);
  EXPECT_EQ(link->counters().replies, 50u);
}

TEST_F(MemberLinkUdpWireTest, ForeignStaleAndJunkRepliesAreCountedNotDelivered) {
  MemberLinkOptions o;
  o.address = member_.address;
  o.max_retransmits = 0;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  link->send("V", milliseconds(100), 1);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  ASSERT_EQ(client_[1].outcome, LinkOutcome::kTimeout);
  ASSERT_EQ(member_.received.size(), 1u);
  const auto& timed_out = member_.received[0];
  const std::string cookie = FakeUdpMember::cookieOf(timed_out);

  link->send("V", milliseconds(3000), 2);
  ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == 2; }));
  const auto live = member_.received[1];
  const std::string live_cookie = FakeUdpMember::cookieOf(live);

  // Answer to the command that timed out (same slot, older sequence): late.
  member_.reply(live, cookie + " 20040107\n");
  // Not ours: another nonce, a slot never used, no cookie, wrong length, binary, truncated.
  std::string foreign = live_cookie;
  foreign[0] = foreign[0] == 'a' ? 'b' : 'a';
  std::string unused_slot = live_cookie;
  unused_slot.replace(8, 4, "ffff");
  const std::string junk[] = {
      foreign + " 20040107\n",
      unused_slot + " 20040107\n",
      "20040107\n",
      "",
      live_cookie + "0 20040107\n",
      live_cookie.substr(0, 19) + "g 20040107\n",
      live_cookie + " 2004\x01" "0107\n",
      live_cookie + " " + std::string(5000, '7') + "\n",
      live_cookie,
  };
  for (const std::string& j : junk) member_.reply(live, j);
  loop_.runFor(milliseconds(100));
  EXPECT_FALSE(client_.done(2));
  EXPECT_EQ(link->counters().late, 1u);
  EXPECT_EQ(link->counters().malformed, std::size(junk));
  EXPECT_EQ(client_[1].calls, 1);

  // The live command still gets its own answer, once.
  member_.reply(live, live_cookie + " 20040107\n");
  member_.reply(live, live_cookie + " 20040107\n");
  ASSERT_TRUE(loop_.runUntil([&] { return link->counters().late == 2; }));
  EXPECT_EQ(client_[2].calls, 1);
  EXPECT_EQ(client_[2].outcome, LinkOutcome::kReply);
  EXPECT_EQ(client_[2].body, "20040107");
}

TEST_F(MemberLinkUdpWireTest, RttComesOnlyFromCommandsNeverRetransmitted) {
  MemberLinkOptions o;
  o.address = member_.address;
  o.first_retry = milliseconds(20);
  auto link = MemberLink::create(loop_.base(), o, &client_);
  link->send("V", milliseconds(2000), 1);
  ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == 2; }));
  member_.reply(member_.received[0], FakeUdpMember::cookieOf(member_.received[0]) + " 20040107\n");
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  EXPECT_EQ(link->smoothedRtt().count(), 0);

  link->send("V", milliseconds(2000), 2);
  ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == 3; }));
  member_.reply(member_.received[2], FakeUdpMember::cookieOf(member_.received[2]) + " 20040107\n");
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(2); }));
  EXPECT_GT(link->smoothedRtt().count(), 0);
  EXPECT_LT(link->smoothedRtt(), std::chrono::microseconds(1000000));
}

TEST_F(MemberLinkUdpWireTest, FirstRetryFollowsTheSmoothedRttWithinItsClamp) {
  MemberLinkOptions o;
  o.address = member_.address;
  o.first_retry = milliseconds(300);
  o.min_retry = milliseconds(30);
  o.max_retransmits = 1;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  link->send("V", milliseconds(2000), 1);
  ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == 1; }));
  member_.reply(member_.received[0], FakeUdpMember::cookieOf(member_.received[0]) + " 20040107\n");
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  ASSERT_GT(link->smoothedRtt().count(), 0);

  // Loopback RTT is far below min_retry: the retry comes after min_retry, not first_retry.
  link->send("V", milliseconds(2000), 2);
  ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == 3; }));
  const auto gap = member_.received[2].kernel_at - member_.received[1].kernel_at;
  EXPECT_GE(gap, milliseconds(28));
  EXPECT_LT(gap, milliseconds(300));
}

TEST_F(MemberLinkUdpWireTest, FullSlotTableFailsTheNextCommandAtOnce) {
  MemberLinkOptions o;
  o.address = member_.address;
  o.max_retransmits = 0;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  for (uint64_t t = 0; t < 65536; ++t) link->send("V", milliseconds(60000), t);
  EXPECT_EQ(link->inFlight(), 65536u);
  EXPECT_EQ(client_.calls, 0u);
  link->send("V", milliseconds(60000), 99999999);
  EXPECT_EQ(client_.calls, 1u);
  EXPECT_EQ(client_[99999999].outcome, LinkOutcome::kError);
  link->cancelAll();
  EXPECT_EQ(client_.calls, 65537u);
  // Slots are reusable again.
  link->send("V", milliseconds(60000), 100000000);
  EXPECT_EQ(link->inFlight(), 1u);
}

TEST_F(MemberLinkUdpWireTest, CommandsFromCallbacksDuringCancelAllSurviveIt) {
  MemberLinkOptions o;
  o.address = member_.address;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  for (uint64_t t = 0; t < 5; ++t) link->send("V", milliseconds(3000), t);
  client_.after = [&](uint64_t token, LinkOutcome) {
    if (token < 5) link->send("V", milliseconds(3000), token + 100);
  };
  link->cancelAll();
  EXPECT_EQ(client_.calls, 5u);
  EXPECT_EQ(link->inFlight(), 5u);  // the five new ones
}

TEST_F(MemberLinkUdpWireTest, RefusedPortFailsCommandsWithAnError) {
  MemberLinkOptions o;
  {
    FakeUdpMember gone(loop_.base(), AF_INET);
    o.address = gone.address;
  }  // closed: the port now answers ICMP port unreachable
  o.first_retry = milliseconds(20);
  auto link = MemberLink::create(loop_.base(), o, &client_);
  const auto sent = Clock::now();
  link->send("V", milliseconds(2000), 1);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  EXPECT_EQ(client_[1].outcome, LinkOutcome::kError);
  EXPECT_LT(client_[1].at - sent, milliseconds(1000));  // long before the deadline
}

bool canBind127002() {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string hostOf(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  }
  return buf;
}

TEST_F(MemberLinkUdpWireTest, CmdOutAddressIsTheSourceOfUdpCommands) {
  if (!canBind127002()) GTEST_SKIP() << "127.0.0.2 not usable here";
  MemberLinkOptions o;
  o.address = member_.address;
  o.cmd_out_address = "127.0.0.2";
  auto link = MemberLink::create(loop_.base(), o, &client_);
  link->send("V", milliseconds(2000), 1);
  ASSERT_TRUE(loop_.runUntil([&] { return member_.received.size() == 1; }));
  EXPECT_EQ(hostOf(member_.received[0].from), "127.0.0.2");
  member_.reply(member_.received[0], FakeUdpMember::cookieOf(member_.received[0]) + " 20040107\n");
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(1); }));
  EXPECT_EQ(client_[1].outcome, LinkOutcome::kReply);
}

// The peer's side of a stream: the link's connection, accepted while the
// loop runs; -1 when none came.
int acceptWhileRunning(TestLoop& loop, int lfd, sockaddr_storage* peer = nullptr) {
  int fd = -1;
  socklen_t len = sizeof(sockaddr_storage);
  loop.runUntil([&] {
    fd = accept(lfd, reinterpret_cast<sockaddr*>(peer), peer != nullptr ? &len : nullptr);
    return fd >= 0;
  });
  return fd;
}

// What the link wrote to the peer, once at least `size` bytes arrived (less
// on timeout).
std::string readWhileRunning(TestLoop& loop, int fd, size_t size) {
  std::string got;
  loop.runUntil([&] {
    char buf[256];
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got.size() >= size;
  });
  return got;
}

TEST(MemberLinkTcpWire, CmdOutAddressIsTheSourceOfTcpConnections) {
  if (!canBind127002()) GTEST_SKIP() << "127.0.0.2 not usable here";
  TestLoop loop;
  Collector client;
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&a), len), 0);
  ASSERT_EQ(listen(lfd, 4), 0);
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  MemberLinkOptions o;
  o.address.transport = Transport::kTcp;
  o.address.host = "127.0.0.1";
  o.address.port = ntohs(a.sin_port);
  o.cmd_out_address = "127.0.0.2";
  auto link = MemberLink::create(loop.base(), o, &client);
  link->send("V", milliseconds(2000), 1);
  sockaddr_storage peer{};
  const int cfd = acceptWhileRunning(loop, lfd, &peer);
  ASSERT_GE(cfd, 0);
  EXPECT_EQ(hostOf(peer), "127.0.0.2");
  // Answer it by hand: "V\n" in, "20040107\n" out.
  ASSERT_EQ(readWhileRunning(loop, cfd, 2), "V\n");
  ASSERT_EQ(write(cfd, "20040107\n", 9), 9);
  ASSERT_TRUE(loop.runUntil([&] { return client.done(1); }));
  EXPECT_EQ(client[1].body, "20040107");
  close(cfd);
  close(lfd);
}

// ---------------------------------------------------------------------------
// Stream framing against a hand-driven peer.

// A cunix member played by the test: the link connects to lfd_.
class MemberLinkStreamWire : public ::testing::Test {
 protected:
  void SetUp() override {
    lfd_ = testing::listenUnixStream(dir_.file("peer.sock"));
    ASSERT_GE(lfd_, 0);
  }
  void TearDown() override {
    if (lfd_ >= 0) close(lfd_);
  }
  std::unique_ptr<MemberLink> linkToPeer() {
    MemberLinkOptions o;
    o.address.transport = Transport::kCunix;
    o.address.path = dir_.file("peer.sock");
    return MemberLink::create(loop_.base(), o, &client_);
  }

  TestLoop loop_;  // first: outlives the link
  Collector client_;
  TempDir dir_;
  int lfd_ = -1;
};

TEST_F(MemberLinkStreamWire, RepliesSplitAcrossReadsAndJoinedInOneAreFramed) {
  auto link = linkToPeer();
  using Shape = MemberLink::ReplyShape;
  link->send("V", milliseconds(3000), 1);
  link->send("I", milliseconds(3000), 2, Shape::kInfo);
  link->send("G x", milliseconds(3000), 3);
  const int cfd = acceptWhileRunning(loop_, lfd_);
  ASSERT_GE(cfd, 0);
  ASSERT_EQ(readWhileRunning(loop_, cfd, 8), "V\nI\nG x\n");
  const std::string replies = "20040107\na: 1\nb: 2\nc: 3\nd: 4\ne: 5\nE68\n";
  // Byte by byte: no reply may be delivered before it is complete.
  for (char c : replies) {
    ASSERT_EQ(write(cfd, &c, 1), 1);
    loop_.runFor(milliseconds(1));
  }
  ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == 3; }));
  EXPECT_EQ(client_[1].body, "20040107");
  EXPECT_EQ(client_[2].body, "a: 1\nb: 2\nc: 3\nd: 4\ne: 5");
  EXPECT_EQ(client_[3].body, "E68");

  // A reply nobody asked for: the stream is out of step; the link resets and reconnects.
  ASSERT_EQ(write(cfd, "0\n", 2), 2);
  ASSERT_TRUE(loop_.runUntil([&] { return link->counters().malformed == 1; }));
  link->send("V", milliseconds(3000), 4);
  const int cfd2 = acceptWhileRunning(loop_, lfd_);
  ASSERT_GE(cfd2, 0);
  ASSERT_EQ(readWhileRunning(loop_, cfd2, 2), "V\n");
  ASSERT_EQ(write(cfd2, "20040107\n", 9), 9);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.done(4); }));
  EXPECT_EQ(client_[4].body, "20040107");
  close(cfd);
  close(cfd2);
}

TEST_F(MemberLinkStreamWire, TimeoutClosesTheStreamAndFailsEverythingInIt) {
  auto link = linkToPeer();
  const auto sent = Clock::now();
  link->send("V", milliseconds(150), 1);
  link->send("V", milliseconds(3000), 2);
  const int cfd = acceptWhileRunning(loop_, lfd_);
  ASSERT_GE(cfd, 0);
  ASSERT_TRUE(loop_.runUntil([&] { return client_.calls == 2; }));
  EXPECT_EQ(client_[1].outcome, LinkOutcome::kTimeout);
  EXPECT_GE(client_[1].at - sent, milliseconds(150));
  EXPECT_EQ(client_[2].outcome, LinkOutcome::kError);
  EXPECT_LT(client_[2].at - sent, milliseconds(1500));
  EXPECT_EQ(link->inFlight(), 0u);
  // The peer sees the connection closed.
  ASSERT_TRUE(waitReadable(cfd, 5000));
  char buf[64];
  ssize_t n;
  while ((n = read(cfd, buf, sizeof buf)) > 0) {
  }
  EXPECT_EQ(n, 0);
  close(cfd);
}

TEST_F(MemberLinkStreamWire, CommandWithANewlineIsRefusedAtOnce) {
  MemberLinkOptions o;
  o.address.transport = Transport::kTcp;
  o.address.host = "127.0.0.1";
  o.address.port = 9;
  auto link = MemberLink::create(loop_.base(), o, &client_);
  link->send("V\nX", milliseconds(1000), 1);
  ASSERT_EQ(client_.calls, 1u);
  EXPECT_EQ(client_[1].outcome, LinkOutcome::kError);
}

TEST(MemberLinkAddress, UnusableAddressFailsEachCommandWithAReason) {
  TestLoop loop;
  Collector client;
  for (Transport t : {Transport::kUnix, Transport::kCunix}) {
    MemberLinkOptions o;
    o.address.transport = t;
    o.address.path = std::string(200, 'x');
    auto link = MemberLink::create(loop.base(), o, &client);
    ASSERT_NE(link, nullptr);
    client.results.clear();
    link->send("V", milliseconds(1000), 1);
    ASSERT_EQ(client.results.size(), 1u);
    EXPECT_EQ(client[1].outcome, LinkOutcome::kError);
    EXPECT_NE(client[1].body.find("path"), std::string::npos) << client[1].body;
  }
  MemberLinkOptions o;
  o.address.transport = Transport::kUdp;
  o.address.host = "127.0.0.1";
  o.address.port = 9;
  o.cmd_out_address = "::1";  // IPv6 source for an IPv4 member
  auto link = MemberLink::create(loop.base(), o, &client);
  client.results.clear();
  link->send("V", milliseconds(1000), 1);
  ASSERT_EQ(client.results.size(), 1u);
  EXPECT_EQ(client[1].outcome, LinkOutcome::kError);
  EXPECT_NE(client[1].body.find("cmd_out_address"), std::string::npos) << client[1].body;
}

TEST(MemberLinkUnixWire, ConnectionRefusedIsAnError) {
  TestLoop loop;
  Collector client;
  TempDir dir;
  for (Transport t : {Transport::kUnix, Transport::kCunix}) {
    MemberLinkOptions o;
    o.address.transport = t;
    o.address.path = dir.file("nobody.sock");
    auto link = MemberLink::create(loop.base(), o, &client);
    client.results.clear();
    link->send("V", milliseconds(1000), 1);
    ASSERT_TRUE(loop.runUntil([&] { return client.done(1); }));
    EXPECT_EQ(client[1].outcome, LinkOutcome::kError);
    EXPECT_EQ(link->inFlight(), 0u);
  }
}

// ---------------------------------------------------------------------------
// A `unix` member, as the reference talks to it: the command with a newline,
// one reply taken up to its newline (its line count for I) or until the peer
// closes. So one member kind serves a relay on rtpproxy's `unix:` (answers,
// then closes) and on `cunix:` (keeps the connection open).

TEST(MemberLinkUnixMember, ServedByARelayOnAPersistentSocket) {
  TestLoop loop;  // first: outlives the link
  TempDir dir;
  TestRelay relay;
  Collector client;
  ASSERT_TRUE(relay.start("cunix:" + dir.file("ctl.sock"), dir.file("admin.sock")));
  MemberLinkOptions o;
  o.address = relay.address();
  ASSERT_EQ(o.address.transport, Transport::kCunix);
  o.address.transport = Transport::kUnix;
  auto link = MemberLink::create(loop.base(), o, &client);
  using Shape = MemberLink::ReplyShape;
  const auto sent = Clock::now();
  link->send("V", milliseconds(5000), 1);
  link->send("I", milliseconds(5000), 2, Shape::kInfo);
  link->send("Il", milliseconds(5000), 3, Shape::kInfoWithLoad);
  link->send("Ix", milliseconds(5000), 4, Shape::kInfo);
  link->send("G", milliseconds(5000), 5);
  for (uint64_t t = 0; t < 20; ++t) link->send(createCommand(t), milliseconds(5000), 100 + t);
  ASSERT_TRUE(loop.runUntil([&] { return client.calls == 25; }));
  // Answered, not timed out: the link did not wait for a close that never comes.
  EXPECT_LT(Clock::now() - sent, milliseconds(4000));
  EXPECT_EQ(client[1].outcome, LinkOutcome::kReply);
  EXPECT_EQ(client[1].body, "20040107");
  EXPECT_EQ(client[2].body,
            "sessions created: 0\nactive sessions: 0\nactive streams: 0\npackets received: 0\n"
            "packets transmitted: 0");
  EXPECT_EQ(client[3].body.substr(client[3].body.rfind('\n') + 1), "average load: 0.000000");
  EXPECT_EQ(client[4].body, "E18");
  EXPECT_EQ(client[5].outcome, LinkOutcome::kReply);
  EXPECT_EQ(client[5].body, "");
  for (uint64_t t = 100; t < 120; ++t) {
    EXPECT_EQ(client[t].outcome, LinkOutcome::kReply) << client[t].body;
    EXPECT_EQ(client[t].body.find('E'), std::string::npos) << client[t].body;
  }
  EXPECT_EQ(link->inFlight(), 0u);
}

// The same link against a hand-driven peer: a reply delivered at its newline
// while the peer keeps the connection open, an I reply only once all its
// lines are in, and a reply with no newline at all when the peer closes.
TEST(MemberLinkUnixMember, ReplyEndsAtItsNewlineOrAtTheClose) {
  TestLoop loop;
  Collector client;
  TempDir dir;
  const int lfd = testing::listenUnixStream(dir.file("peer.sock"));
  ASSERT_GE(lfd, 0);
  MemberLinkOptions o;
  o.address.transport = Transport::kUnix;
  o.address.path = dir.file("peer.sock");
  auto link = MemberLink::create(loop.base(), o, &client);
  using Shape = MemberLink::ReplyShape;

  link->send("V", milliseconds(5000), 1);
  int cfd = acceptWhileRunning(loop, lfd);
  ASSERT_GE(cfd, 0);
  ASSERT_EQ(readWhileRunning(loop, cfd, 2), "V\n");
  ASSERT_EQ(write(cfd, "20040107\n", 9), 9);
  ASSERT_TRUE(loop.runUntil([&] { return client.done(1); }, milliseconds(2000)));
  EXPECT_EQ(client[1].outcome, LinkOutcome::kReply);
  EXPECT_EQ(client[1].body, "20040107");
  // The link closes its side once it has the reply.
  ASSERT_TRUE(waitReadable(cfd, 5000));
  char buf[64];
  EXPECT_EQ(read(cfd, buf, sizeof buf), 0);
  close(cfd);

  link->send("I", milliseconds(5000), 2, Shape::kInfo);
  cfd = acceptWhileRunning(loop, lfd);
  ASSERT_GE(cfd, 0);
  ASSERT_EQ(readWhileRunning(loop, cfd, 2), "I\n");
  for (char c : std::string("a: 1\nb: 2\nc: 3\nd: 4\ne: 5\n")) {
    ASSERT_FALSE(client.done(2)) << "delivered before its fifth line";
    ASSERT_EQ(write(cfd, &c, 1), 1);
    loop.runFor(milliseconds(1));
  }
  ASSERT_TRUE(loop.runUntil([&] { return client.done(2); }));
  EXPECT_EQ(client[2].body, "a: 1\nb: 2\nc: 3\nd: 4\ne: 5");
  close(cfd);

  link->send("G x", milliseconds(5000), 3);
  cfd = acceptWhileRunning(loop, lfd);
  ASSERT_GE(cfd, 0);
  ASSERT_EQ(readWhileRunning(loop, cfd, 4), "G x\n");
  ASSERT_EQ(write(cfd, "x 7", 3), 3);
  loop.runFor(milliseconds(50));
  EXPECT_FALSE(client.done(3));
  close(cfd);
  ASSERT_TRUE(loop.runUntil([&] { return client.done(3); }));
  EXPECT_EQ(client[3].outcome, LinkOutcome::kReply);
  EXPECT_EQ(client[3].body, "x 7");
  close(lfd);
}

// The same against the real rtpproxy 3.2 (RTPC_RTPPROXY): a `unix` member
// whose relay listens on rtpproxy's `unix:` (closes after each answer) and on
// its `cunix:` (persistent) alike.
class MemberLinkUnixMemberRealRelay : public ::testing::TestWithParam<const char*> {};

TEST_P(MemberLinkUnixMemberRealRelay, AnswersEveryCommandShape) {
  const char* rtpproxy = std::getenv("RTPC_RTPPROXY");
  if (rtpproxy == nullptr || *rtpproxy == '\0') {
    GTEST_SKIP() << "RTPC_RTPPROXY is not set (the path of a real rtpproxy 3.2; `make check` builds one "
                    "when ../shared/relays exists)";
  }
  TestLoop loop;
  TempDir dir;
  Collector client;
  testing::ChildProcess relay;
  const std::string path = dir.file("rtpp.sock");
  ASSERT_TRUE(relay.start({rtpproxy, "-F", "-f", "-s", std::string(GetParam()) + ":" + path, "-l", "127.0.0.1",
                           "-m", "41000", "-M", "41099", "-d", "err"},
                          "", /*merge_stderr=*/true));
  MemberLinkOptions o;
  o.address.transport = Transport::kUnix;
  o.address.path = path;
  auto link = MemberLink::create(loop.base(), o, &client);
  // Up once V is answered (the socket appears when rtpproxy is ready).
  uint64_t token = 1;
  ASSERT_TRUE(loop.runUntil([&] {
    const uint64_t t = token++;
    link->send("V", milliseconds(500), t);
    loop.runUntil([&] { return client.done(t); });
    if (client[t].outcome == LinkOutcome::kReply) return true;
    loop.runFor(milliseconds(50));
    return false;
  }, milliseconds(10000))) << relay.output();
  using Shape = MemberLink::ReplyShape;
  const auto sent = Clock::now();
  link->send("Ib", milliseconds(3000), 101, Shape::kInfo);
  link->send("Il", milliseconds(3000), 102, Shape::kInfoWithLoad);
  link->send("U c1 127.0.0.1 5000 ft1", milliseconds(3000), 103);
  ASSERT_TRUE(loop.runUntil([&] { return client.done(101) && client.done(102) && client.done(103); }));
  link->send("D c1 ft1", milliseconds(3000), 104);
  link->send("G nsess_created", milliseconds(3000), 105);
  ASSERT_TRUE(loop.runUntil([&] { return client.done(104) && client.done(105); }));
  EXPECT_LT(Clock::now() - sent, milliseconds(2500));
  EXPECT_EQ(client[101].outcome, LinkOutcome::kReply);
  EXPECT_EQ(client[101].body.rfind("sessions created: ", 0), 0u) << client[101].body;
  EXPECT_NE(client[101].body.find("\npackets transmitted: "), std::string::npos) << client[101].body;
  EXPECT_NE(client[102].body.find("\naverage load: "), std::string::npos) << client[102].body;
  const std::string& u = client[103].body;
  EXPECT_EQ(client[103].outcome, LinkOutcome::kReply);
  EXPECT_GE(std::atoi(u.c_str()), 41000) << u;
  EXPECT_LE(std::atoi(u.c_str()), 41099) << u;
  EXPECT_EQ(client[104].body, "0");
  EXPECT_EQ(client[105].body, "1");
  EXPECT_EQ(link->inFlight(), 0u);
  relay.stop(SIGTERM);
}

INSTANTIATE_TEST_SUITE_P(RelaySockets, MemberLinkUnixMemberRealRelay, ::testing::Values("unix", "cunix"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

}  // namespace
}  // namespace rtpc
