// ClusterWorker end to end on loopback: the worker runs in this process on
// its own libevent loop (driven by the test thread), clients talk to it over
// real sockets from a second thread, and its members are real relay-double
// processes (tests/tools/rtpp_test_relay), each answering with its own media
// address (-l 10.0.0.<n>) so that a reply tells which member served it.
#include "worker/cluster_worker.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/test_loop.h"
#include "tests/integration/test_support.h"

namespace rtpc {
namespace {

using namespace rtpc::testing;

const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::err);  // state changes are asserted, not read
  return true;
}();

std::string mediaAddressOf(size_t member) { return "10.0.0." + std::to_string(member + 1); }

// Which member (by its -l address) answered a positive U/L reply, or -1.
int servedBy(const std::string& reply) {
  const size_t sp = reply.find(' ');
  if (sp == std::string::npos) return -1;
  const std::string addr = reply.substr(sp + 1, reply.find_first_of(" &", sp + 1) - sp - 1);
  if (addr.rfind("10.0.0.", 0) != 0) return -1;
  return std::atoi(addr.c_str() + 7) - 1;
}

// The port of a positive U/L answer, 0 for a negative one, -1 for an error.
int servedByPort(const std::string& reply) {
  if (reply.empty() || reply[0] == 'E') return -1;
  return std::atoi(reply.c_str());
}

std::string listenFor(Transport t, const TempDir& dir, const std::string& name) {
  switch (t) {
    case Transport::kUdp: return "udp:127.0.0.1:0";
    case Transport::kUdp6: return "udp6:[::1]:0";
    case Transport::kUnix: return "unix:" + dir.file(name + ".sock");
    case Transport::kCunix: return "cunix:" + dir.file(name + ".sock");
    case Transport::kTcp: return "tcp:127.0.0.1:0";
    case Transport::kTcp6: return "tcp6:[::1]:0";
  }
  return "";
}

SocketAddress controlAddressFor(Transport t, const TempDir& dir) {
  SocketAddress a;
  a.transport = t;
  if (isUnixPath(t)) {
    a.path = dir.file("cluster.sock");
  } else {
    a.host = isIpv6(t) ? "::1" : "127.0.0.1";
    a.port = 0;
  }
  return a;
}

// The worker plus the loop that runs it. Client code runs on a second thread
// (blocking sockets) while this thread dispatches the worker's events.
class Harness {
 public:
  bool start(const ClusterConfig& config, int inherited_fd = -1, void* table = nullptr,
             size_t table_bytes = 0) {
    ClusterWorker::Options options;
    options.config = config;
    options.inherited_fd = inherited_fd;
    options.session_memory = table;
    options.session_bytes = table_bytes;
    options.random_seed = 42;
    std::string error;
    worker_ = ClusterWorker::create(loop_.base(), options, error);
    EXPECT_TRUE(worker_) << error;
    if (!worker_) return false;
    address_ = worker_->listener().address();
    if (!isUnixPath(address_.transport)) address_.port = worker_->listener().boundPort();
    return true;
  }

  // Runs `client` on another thread while dispatching; returns its result.
  template <typename F>
  auto drive(F client) -> decltype(client()) {
    std::atomic<bool> done{false};
    decltype(client()) result{};
    std::thread t([&] {
      result = client();
      done = true;
    });
    while (!done) event_base_loop(loop_.base(), EVLOOP_ONCE);
    t.join();
    return result;
  }
  void driveVoid(const std::function<void()>& client) {
    drive([&] {
      client();
      return 0;
    });
  }
  // One command on a fresh client of the cluster's transport.
  std::string command(const std::string& text) {
    return drive([&] {
      ControlClient c(address_);
      return c.command(text);
    });
  }
  bool runUntil(const std::function<bool()>& done, milliseconds limit = kWait) {
    return loop_.runUntil(done, limit);
  }
  void runFor(milliseconds d) { loop_.runFor(d); }

  MemberStatus member(const std::string& name) const {
    for (const MemberStatus& m : worker_->members())
      if (m.config.name == name) return m;
    ADD_FAILURE() << "no member " << name;
    return {};
  }
  bool hasMember(const std::string& name) const {
    for (const MemberStatus& m : worker_->members())
      if (m.config.name == name) return true;
    return false;
  }
  bool allOnline() const {
    for (const MemberStatus& m : worker_->members())
      if (!m.online) return false;
    return true;
  }

  ClusterWorker& worker() { return *worker_; }
  void stopWorker() { worker_.reset(); }
  const SocketAddress& address() const { return address_; }

 private:
  TestLoop loop_;  // first: outlives the worker
  std::unique_ptr<ClusterWorker> worker_;
  SocketAddress address_;
};

ClusterTuning fastTuning() {
  ClusterTuning t;
  t.heartbeat_interval_ms = 100;
  t.heartbeat_failures = 3;
  t.offline_probe_interval_ms = 200;
  t.command_timeout_ms = 800;
  t.command_retries = 3;
  t.session_table_size = 4096;
  return t;
}

// N relays of one transport plus a worker on another, all started.
class Cluster {
 public:
  Cluster(Transport control, Transport members, size_t n, std::vector<uint32_t> weights = {},
          std::vector<std::string> relay_extra = {}) {
    for (size_t i = 0; i < n; ++i) {
      relays.push_back(std::make_unique<TestRelay>());
      std::vector<std::string> extra = {"-l", mediaAddressOf(i)};
      extra.insert(extra.end(), relay_extra.begin(), relay_extra.end());
      EXPECT_TRUE(relays.back()->start(listenFor(members, dir, "r" + std::to_string(i)),
                                       dir.file("admin" + std::to_string(i) + ".sock"), extra))
          << "relay " << i;
    }
    config.name = "c1";
    config.control = controlAddressFor(control, dir);
    config.tuning = fastTuning();
    for (size_t i = 0; i < n; ++i) config.members.push_back(memberConfig(i, weights.empty() ? 100 : weights[i]));
  }
  MemberConfig memberConfig(size_t i, uint32_t weight = 100) const {
    MemberConfig m;
    m.name = "r" + std::to_string(i);
    m.address = relays[i]->address();
    m.weight = weight;
    m.capacity = 1000;
    return m;
  }
  bool start() {
    if (!h.start(config)) return false;
    return h.runUntil([&] { return h.allOnline(); });
  }
  // A U for a new call; returns the member that took it (-1 on failure).
  int create(const std::string& call, const std::string& ftag = "ft") {
    return servedBy(h.command("U " + call + " 192.0.2.1 4000 " + ftag));
  }

  TempDir dir{"cluster_worker_test"};
  std::vector<std::unique_ptr<TestRelay>> relays;
  ClusterConfig config;
  Harness h;
};

// ---------------------------------------------------------------------------
// Routing rules, on every control transport x member transport.

struct TransportPair {
  Transport control;
  Transport members;
};

class RoutingTest : public ::testing::TestWithParam<TransportPair> {};

TEST_P(RoutingTest, EveryRoutingRule) {
  Cluster c(GetParam().control, GetParam().members, 2);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;

  // Answered by the cluster itself.
  EXPECT_EQ(h.command("V"), "20040107");
  EXPECT_EQ(h.command("VF 20050322"), "1");
  EXPECT_EQ(h.command("VF 20150617"), "1");
  EXPECT_EQ(h.command("VF 20991231"), "0");
  const uint64_t v_before = c.relays[0]->stat("cmd_V") + c.relays[1]->stat("cmd_V");
  EXPECT_EQ(h.command("V"), "20040107");
  EXPECT_EQ(c.relays[0]->stat("cmd_V") + c.relays[1]->stat("cmd_V"), v_before) << "V must not be forwarded";

  // New sessions spread over both members; later commands stay on the member.
  std::map<int, int> per_member;
  for (int i = 0; i < 40; ++i) {
    const std::string reply = h.command("U call" + std::to_string(i) + " 192.0.2.1 4000 ft");
    per_member[servedBy(reply)]++;
    EXPECT_GE(servedBy(reply), 0) << "call" << i << ": " << reply;
  }
  EXPECT_GT(per_member[0], 0);
  EXPECT_GT(per_member[1], 0);
  EXPECT_EQ(h.worker().counters().created, 40u);

  const int m = c.create("callA", "fA");
  ASSERT_GE(m, 0);
  const uint64_t broadcasts = h.worker().counters().broadcasts;
  EXPECT_EQ(servedBy(h.command("L callA 192.0.2.2 5000 fA tA")), m);
  EXPECT_EQ(servedBy(h.command("U callA 192.0.2.1 4000 fA tA")), m) << "re-INVITE stays";
  EXPECT_EQ(h.command("Q callA fA tA"), "60 0 0 0 0");
  EXPECT_EQ(h.command("S callA fA tA"), "0");
  EXPECT_EQ(h.command("N callA fA tA"), "0") << "N is routed by call-id";
  EXPECT_EQ(h.worker().counters().broadcasts, broadcasts) << "known calls never broadcast";
  EXPECT_EQ(c.relays[static_cast<size_t>(m)]->stat("cmd_N"), 1u);
  EXPECT_EQ(c.relays[static_cast<size_t>(1 - m)]->stat("cmd_N"), 0u);

  // I: the cluster's own sum of its members' heartbeats.
  // (A stream client reads its first line only: the I answer is multi-line.)
  const std::string info = h.command("I");
  EXPECT_EQ(info.rfind("sessions created: ", 0), 0u) << info;
  if (isDatagram(GetParam().control)) {
    EXPECT_NE(info.find("\nactive sessions: "), std::string::npos) << info;
  }

  // D goes to the bound member; the deleted call stays routable (a
  // retransmitted D reaches the same relay, which answers E50).
  EXPECT_EQ(h.command("D callA fA tA"), "0");
  const uint64_t d_on_member = c.relays[static_cast<size_t>(m)]->stat("cmd_D");
  EXPECT_EQ(h.command("D callA fA tA"), "E50");
  EXPECT_EQ(c.relays[static_cast<size_t>(m)]->stat("cmd_D"), d_on_member + 1);
  EXPECT_EQ(c.relays[static_cast<size_t>(1 - m)]->stat("cmd_D"), 0u);

  // X is broadcast to every member.
  EXPECT_EQ(h.command("X"), "0");
  EXPECT_EQ(c.relays[0]->stat("cmd_X"), 1u);
  EXPECT_EQ(c.relays[1]->stat("cmd_X"), 1u);
  EXPECT_EQ(c.relays[0]->stat("sessions") + c.relays[1]->stat("sessions"), 0u);
}

TEST_P(RoutingTest, UnknownCallIsBroadcastAndBoundToThePositiveMember) {
  Cluster c(GetParam().control, GetParam().members, 2);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  // A session the cluster never saw (created directly on relay 1, as after a
  // cluster restart without shared memory).
  {
    ControlClient direct(c.relays[1]->address());
    ASSERT_EQ(servedBy(h.drive([&] { return direct.command("U orphan 192.0.2.1 4000 fo"); })), 1);
  }
  const uint64_t b0 = h.worker().counters().broadcasts;
  EXPECT_EQ(servedBy(h.command("L orphan 192.0.2.2 5000 fo to")), 1);
  EXPECT_EQ(h.worker().counters().broadcasts, b0 + 1);
  // Bound now: the next command goes straight to relay 1.
  EXPECT_EQ(h.command("Q orphan fo to"), "60 0 0 0 0");
  EXPECT_EQ(h.worker().counters().broadcasts, b0 + 1);
  EXPECT_EQ(c.relays[0]->stat("cmd_Q"), 0u);

  // Unknown everywhere: L -> 0, other commands -> E995 (reference code).
  EXPECT_EQ(h.command("L nowhere 192.0.2.2 5000 fx tx"), "0");
  EXPECT_EQ(h.command("Q nowhere fx tx"), "E995");
  EXPECT_EQ(h.command("D nowhere fx"), "E995");
}

TEST_P(RoutingTest, LateOfferWithUnknownToTagCreatesTheSession) {
  Cluster c(GetParam().control, GetParam().members, 2);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  const int m = servedBy(h.command("U late 192.0.2.1 4000 fl tl"));
  ASSERT_GE(m, 0) << "a U with a to-tag nobody knows creates the session";
  EXPECT_EQ(h.worker().counters().late_offers, 1u);
  EXPECT_EQ(c.relays[static_cast<size_t>(m)]->stat("sessions"), 1u);
  EXPECT_EQ(servedBy(h.command("L late 192.0.2.2 5000 fl tl")), m);
  EXPECT_EQ(h.command("D late fl tl"), "0");
}

TEST_P(RoutingTest, CopySubcommandOfANewCallGoesToTheMemberOfTheSecondCall) {
  Cluster c(GetParam().control, GetParam().members, 2);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  for (int i = 0; i < 2; ++i) {
    // `U newN ... && C secondN f2 t2` for a call nobody knows yet must reach
    // the member of secondN, wherever the selection would have put newN.
    const std::string second = "second" + std::to_string(i);
    const int m2 = c.create(second, "f2");
    ASSERT_GE(m2, 0);
    EXPECT_EQ(servedBy(h.command("L " + second + " 192.0.2.2 5000 f2 t2")), m2);
    const uint64_t u_before = c.relays[static_cast<size_t>(m2)]->stat("cmd_U");
    // (The relay double answers a C subcommand E3; which relay got the U is
    // what counts here.)
    const std::string r = h.command("U new" + std::to_string(i) + " 192.0.2.1 4000 f1 t1 && C " + second + " f2 t2");
    EXPECT_EQ(c.relays[static_cast<size_t>(m2)]->stat("cmd_U"), u_before + 1) << r;
  }
}

TEST_P(RoutingTest, CopySubcommandNeverMovesAKnownCallToTheSecondCallsMember) {
  Cluster c(GetParam().control, GetParam().members, 2);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  // Two calls on different members.
  const int m1 = c.create("first", "f1");
  ASSERT_GE(m1, 0);
  ASSERT_GE(servedBy(h.command("L first 192.0.2.2 5000 f1 t1")), 0);
  for (int i = 0; i < 50; ++i) {
    const std::string call = "second" + std::to_string(i);
    const int m2 = c.create(call, "f2");
    if (m2 < 0 || m2 == m1) continue;
    EXPECT_EQ(servedBy(h.command("L " + call + " 192.0.2.2 5000 f2 t2")), m2);
    TestRelay& own = *c.relays[static_cast<size_t>(m1)];
    TestRelay& other = *c.relays[static_cast<size_t>(m2)];
    const uint64_t own_u = own.stat("cmd_U"), other_u = other.stat("cmd_U"), other_sessions = other.stat("sessions");
    // `U first ... && C secondN f2 t2`: first lives on m1, secondN on m2.
    // Sent to m2 it would create a second session of `first` there and leave
    // the one on m1 an orphan; it goes to first's own relay instead.
    const std::string r = h.command("U first 192.0.2.1 4000 f1 t1 && C " + call + " f2 t2");
    EXPECT_EQ(own.stat("cmd_U"), own_u + 1) << r;
    EXPECT_EQ(other.stat("cmd_U"), other_u) << r;
    EXPECT_EQ(other.stat("sessions"), other_sessions) << "no second session of `first`";
    // first is still routed to its relay, and its D ends its only session.
    EXPECT_EQ(servedBy(h.command("L first 192.0.2.2 5000 f1 t1")), m1);
    const uint64_t own_sessions = own.stat("sessions");
    EXPECT_EQ(h.command("D first f1 t1"), "0");
    EXPECT_EQ(own.stat("sessions"), own_sessions - 1);
    EXPECT_EQ(other.stat("sessions"), other_sessions);
    return;
  }
  FAIL() << "could not get two calls on different members";
}

const TransportPair kPairs[] = {
    {Transport::kUdp, Transport::kUdp},     {Transport::kUdp6, Transport::kUdp6},
    {Transport::kUnix, Transport::kUnix},   {Transport::kCunix, Transport::kCunix},
    {Transport::kTcp, Transport::kUdp},     {Transport::kUnix, Transport::kUdp},
    {Transport::kUdp, Transport::kCunix},
};

std::string pairName(const ::testing::TestParamInfo<TransportPair>& info) {
  return std::string(transportName(info.param.control)) + "_to_" +
         std::string(transportName(info.param.members));
}

INSTANTIATE_TEST_SUITE_P(Transports, RoutingTest, ::testing::ValuesIn(kPairs), pairName);

// ---------------------------------------------------------------------------
// Selection.

TEST(ClusterWorkerSelection, SharesFollowWeights) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2, {300, 100});
  ASSERT_TRUE(c.start());
  std::map<int, int> n;
  c.h.driveVoid([&] {
    ControlClient client(c.h.address());
    for (int i = 0; i < 400; ++i)
      n[servedBy(client.command("U w" + std::to_string(i) + " 192.0.2.1 4000 ft"))]++;
  });
  EXPECT_EQ(n[-1], 0);
  // 3:1 with 400 picks (and utilisation nearly 0): 300 +- 40.
  EXPECT_NEAR(n[0], 300, 40);
  EXPECT_EQ(c.h.member("r0").bound_sessions + c.h.member("r1").bound_sessions, 400u);
}

TEST(ClusterWorkerSelection, BackupMemberOnlyWhenNoWeightedMemberCanTakeIt) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2, {100, 0});
  ASSERT_TRUE(c.start());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(c.create("b" + std::to_string(i)), 0);
  c.relays[0]->admin("refuse E99");
  EXPECT_EQ(c.create("b-fail"), 1) << "primary refuses: the backup takes it";
}

TEST(ClusterWorkerSelection, NoMemberOnlineAnswersE999) {
  Cluster c(Transport::kUdp, Transport::kUdp, 1);
  ASSERT_TRUE(c.start());
  c.relays[0]->stop();
  ASSERT_TRUE(c.h.runUntil([&] { return !c.h.member("r0").online; }));
  EXPECT_EQ(c.h.command("U x 192.0.2.1 4000 ft"), "E999");
  // Issue 10: an E999 answer is counted under a command kind (the cluster
  // answered it itself: `local`), so the kinds add up to the commands, and
  // under its command in the answer tally.
  const WorkerCounters& n = c.h.worker().counters();
  EXPECT_EQ(n.answered_locally, 1u);
  EXPECT_EQ(n.created + n.broadcasts + n.routed + n.answered_locally, 1u);
  EXPECT_EQ(n.tally.by_type[static_cast<size_t>(CommandType::kUpdate)][static_cast<size_t>(CommandResult::kError)], 1u);
  EXPECT_EQ(c.h.command("G"), "E999");
  EXPECT_EQ(n.answered_locally, 2u);
  EXPECT_EQ(n.tally.by_type[static_cast<size_t>(CommandType::kStats)][static_cast<size_t>(CommandResult::kError)], 1u);
}

// ---------------------------------------------------------------------------
// Faults.

TEST(ClusterWorkerFaults, SilentRelayGoesOfflineAndComesBack) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  ASSERT_TRUE(c.start());
  c.relays[1]->admin("mute on");
  const auto t0 = Clock::now();
  ASSERT_TRUE(c.h.runUntil([&] { return !c.h.member("r1").online; }));
  // 3 missed heartbeats, each 100 ms apart and given up after the 800 ms
  // command deadline: about 2.7 s; the bound only catches gross errors.
  EXPECT_LT(Clock::now() - t0, milliseconds(4500));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(c.create("s" + std::to_string(i)), 0);

  c.relays[1]->admin("mute off");
  const auto t1 = Clock::now();
  ASSERT_TRUE(c.h.runUntil([&] { return c.h.member("r1").online; }));
  EXPECT_LT(Clock::now() - t1, milliseconds(2000)) << "re-probed every 200 ms";
  std::set<int> used;
  for (int i = 0; i < 30; ++i) used.insert(c.create("t" + std::to_string(i)));
  EXPECT_TRUE(used.count(1)) << "the member serves again";
}

TEST(ClusterWorkerFaults, KilledRelayRestartedServesAgain) {
  Cluster c(Transport::kUdp, Transport::kUnix, 2);
  ASSERT_TRUE(c.start());
  c.relays[0]->stop();
  ASSERT_TRUE(c.h.runUntil([&] { return !c.h.member("r0").online; }));
  ASSERT_TRUE(c.relays[0]->restart());
  ASSERT_TRUE(c.h.runUntil([&] { return c.h.member("r0").online; }));
}

TEST(ClusterWorkerFaults, SlowRelayNewSessionFailsOverWithinTheClientDeadline) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  ASSERT_TRUE(c.start());
  c.relays[0]->admin("delay 3000");
  int on_other = 0;
  c.h.driveVoid([&] {
    ControlClient client(c.h.address());
    for (int i = 0; i < 6; ++i) {
      const auto t = Clock::now();
      const int m = servedBy(client.command("U slow" + std::to_string(i) + " 192.0.2.1 4000 ft", 2000));
      EXPECT_LT(Clock::now() - t, milliseconds(1000)) << "answered before the client's 1 s retransmit";
      if (m == 1) ++on_other;
    }
  });
  EXPECT_EQ(on_other, 6);
  EXPECT_GT(c.h.worker().counters().failovers + 0, 0u);
  // The slow relay carries out the creates late. The calls live on r1 now, so
  // the cluster must delete those copies itself: nobody else ever will.
  c.relays[0]->admin("delay 0");
  const uint64_t tried_on_slow = c.h.member("r0").failovers;
  ASSERT_GT(tried_on_slow, 0u);
  EXPECT_TRUE(c.h.runUntil([&] { return c.relays[0]->stat("sessions_created") >= tried_on_slow; },
                           milliseconds(5000)))
      << c.relays[0]->admin("stats");
  EXPECT_TRUE(c.h.runUntil([&] { return c.relays[0]->stat("sessions") == 0; }, milliseconds(5000)))
      << "orphan sessions left on the slow relay: " << c.relays[0]->stat("sessions");
  EXPECT_EQ(c.relays[1]->stat("sessions"), 6u);
}

TEST(ClusterWorkerFaults, RefusingRelayNewSessionFailsOver) {
  for (const char* code : {"E98", "E99", "E72"}) {
    Cluster c(Transport::kUdp, Transport::kUdp, 2);
    ASSERT_TRUE(c.start());
    c.relays[0]->admin(std::string("refuse ") + code);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(c.create("r" + std::to_string(i)), 1) << code;
  }
}

TEST(ClusterWorkerFaults, GarbageFromARelayIsCountedNotFatal) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  ASSERT_TRUE(c.start());
  c.relays[0]->admin("garbage on");
  for (int i = 0; i < 10; ++i) {
    const int m = c.create("g" + std::to_string(i));
    EXPECT_EQ(m, 1) << "garbage answers fail over to the healthy member";
  }
  c.relays[0]->admin("garbage off");
  EXPECT_EQ(c.h.command("V"), "20040107");
}

TEST(ClusterWorkerFaults, ClientRetransmissionIsExecutedOnce) {
  Cluster c(Transport::kUdp, Transport::kUdp, 1);
  ASSERT_TRUE(c.start());
  c.relays[0]->admin("delay 150");
  std::vector<std::string> answers = c.h.drive([&] {
    ControlClient client(c.h.address());
    client.datagramNoWait("rtx1", "U rtx 192.0.2.1 4000 ft");
    client.datagramNoWait("rtx1", "U rtx 192.0.2.1 4000 ft");  // in flight: dropped
    std::vector<std::string> got = client.drainDatagrams(600);
    client.datagramNoWait("rtx1", "U rtx 192.0.2.1 4000 ft");  // answered: from the cache
    for (std::string& s : client.drainDatagrams(300)) got.push_back(s);
    return got;
  });
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0], answers[1]);
  EXPECT_EQ(c.h.worker().counters().commands, 1u) << "the worker ran the command once";
  EXPECT_EQ(c.h.worker().counters().created, 1u);
  EXPECT_EQ(c.relays[0]->stat("sessions_created"), 1u);
}

TEST(ClusterWorkerFaults, DeleteForAnOfflineMemberIsAnsweredAndDeliveredLater) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  ASSERT_TRUE(c.start());
  std::string bound_call;
  for (int i = 0; i < 40 && bound_call.empty(); ++i) {
    const std::string id = "off" + std::to_string(i);
    if (c.create(id, "fo") == 0) bound_call = id;
  }
  ASSERT_FALSE(bound_call.empty());
  c.relays[0]->admin("mute on");
  ASSERT_TRUE(c.h.runUntil([&] { return !c.h.member("r0").online; }));
  const auto t = Clock::now();
  EXPECT_EQ(c.h.command("D " + bound_call + " fo"), "0");
  EXPECT_LT(Clock::now() - t, milliseconds(300));
  EXPECT_EQ(c.h.member("r0").deferred_deletes, 1u);
  const uint64_t d_before = c.relays[0]->stat("cmd_D");
  c.relays[0]->admin("mute off");
  ASSERT_TRUE(c.h.runUntil([&] { return c.h.member("r0").online; }));
  ASSERT_TRUE(c.h.runUntil([&] { return c.relays[0]->stat("cmd_D") == d_before + 1; }));
}

// ---------------------------------------------------------------------------
// Operations of the admin CLI.

TEST(ClusterWorkerOps, PauseResumeDeleteAdd) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  ASSERT_TRUE(h.worker().pauseMember("r1").ok);
  EXPECT_EQ(h.member("r1").status, AdminStatus::kSuspended);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(c.create("p" + std::to_string(i)), 0);
  ASSERT_TRUE(h.worker().resumeMember("r1").ok);
  std::set<int> used;
  for (int i = 0; i < 30; ++i) used.insert(c.create("q" + std::to_string(i)));
  EXPECT_TRUE(used.count(1));

  EXPECT_FALSE(h.worker().pauseMember("nope").ok);
  EXPECT_EQ(h.worker().pauseMember("nope").message, "nope: RTPproxy not found");

  // Delete drains: r1 keeps serving its calls and leaves once they are gone.
  ASSERT_TRUE(h.worker().deleteMember("r1").ok);
  ASSERT_TRUE(h.hasMember("r1")) << "r1 has bound sessions";
  EXPECT_EQ(h.member("r1").status, AdminStatus::kDraining);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(c.create("z" + std::to_string(i)), 0);
  EXPECT_EQ(h.command("X"), "0");  // every session gone on both relays
  // Bound sessions are released by D; X clears the relays. Delete the
  // remaining bound calls explicitly so that the drain completes.
  for (int i = 0; i < 30; ++i) h.command("D q" + std::to_string(i) + " ft");
  ASSERT_TRUE(h.runUntil([&] { return !h.hasMember("r1"); }, milliseconds(5000)));

  // Add it back.
  EXPECT_TRUE(h.worker().addMember(c.memberConfig(1)).ok);
  EXPECT_EQ(h.worker().addMember(c.memberConfig(1)).message, "r1: RTPproxy already exists");
  ASSERT_TRUE(h.runUntil([&] { return h.member("r1").online; }));
}

// G is broadcast and summed; a member that does not answer contributes its
// last good answer to the same G (REFERENCE.md section 4), E994 when it has
// none, E993 when no member answered at all.
TEST(ClusterWorkerOps, StatsAreSummedAndAMissingMemberUsesItsCachedAnswer) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  c.config.tuning.heartbeat_interval_ms = 60000;  // members stay online while muted
  c.config.tuning.heartbeat_failures = 5;
  c.config.tuning.command_timeout_ms = 400;
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  std::set<int> used;
  for (int i = 0; i < 12; ++i) used.insert(c.create("g" + std::to_string(i)));
  ASSERT_EQ(used, (std::set<int>{0, 1}));
  EXPECT_EQ(h.command("Gv nsess_created"), "nsess_created=12");
  EXPECT_EQ(h.command("G nsess_created"), "12");  // each member caches its answer to this exact G

  c.relays[1]->admin("mute on");
  EXPECT_EQ(h.command("G nsess_created"), "12") << "r1's cached answer";
  EXPECT_EQ(h.command("G ncmds_rcvd"), "E994") << "r1 never answered this G";
  c.relays[0]->admin("mute on");
  EXPECT_EQ(h.command("G nsess_created"), "E993") << "cached answers alone are no answer";
  c.relays[0]->admin("mute off");
  c.relays[1]->admin("mute off");
}

// A D that never reached the cluster (lost by the signalling, or the relay
// restarted) must not keep a draining member for ever: once the relay itself
// reports no sessions for a few heartbeats, its stale bound calls go with it.
TEST(ClusterWorkerOps, DrainFinishesWhenTheRelayHasNoSessionsThoughCallsAreStillBound) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  ASSERT_TRUE(h.worker().pauseMember("r0").ok);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(c.create("stale" + std::to_string(i)), 1);
  ASSERT_TRUE(h.worker().resumeMember("r0").ok);
  ASSERT_TRUE(h.worker().deleteMember("r1").ok);

  // The relay still has the sessions: the member stays, DRAINING.
  h.runFor(milliseconds(1500));
  ASSERT_TRUE(h.hasMember("r1"));
  EXPECT_EQ(h.member("r1").status, AdminStatus::kDraining);
  EXPECT_EQ(h.member("r1").bound_sessions, 5u);

  // The sessions end behind the cluster's back (as if every D was lost).
  ControlClient direct(c.relays[1]->address());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(direct.command("D stale" + std::to_string(i) + " ft"), "0");
  ASSERT_TRUE(h.runUntil([&] { return !h.hasMember("r1"); }, milliseconds(5000)))
      << "bound " << h.member("r1").bound_sessions;
  EXPECT_TRUE(h.member("r0").online);
}

// A draining member that goes offline through failed commands (not through a
// missed heartbeat) is removed at once, like one that misses heartbeats.
TEST(ClusterWorkerOps, DrainingMemberOfflineByFailedCommandsIsRemoved) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  c.config.tuning.heartbeat_interval_ms = 60000;  // only commands can take it offline
  c.config.tuning.command_timeout_ms = 200;
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  ASSERT_TRUE(h.worker().pauseMember("r0").ok);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(c.create("off" + std::to_string(i)), 1);
  ASSERT_TRUE(h.worker().deleteMember("r1").ok);
  ASSERT_TRUE(h.hasMember("r1"));
  c.relays[1]->admin("mute on");
  for (int i = 0; i < 4 && h.hasMember("r1"); ++i) {
    h.command("L off" + std::to_string(i) + " 192.0.2.2 5000 ft tt");
  }
  EXPECT_TRUE(h.runUntil([&] { return !h.hasMember("r1"); }, milliseconds(1000)));
  c.relays[1]->admin("mute off");
}

TEST(ClusterWorkerOps, ApplyConfigKeepsUnchangedMembers) {
  Cluster c(Transport::kUdp, Transport::kUdp, 3);
  ASSERT_TRUE(c.start());
  Harness& h = c.h;
  const int m = c.create("keep");
  ClusterConfig next = c.config;
  next.members.erase(next.members.begin() + 2);  // r2 removed (no calls: at once, or drained)
  next.members[1].weight = 50;                   // r1 changed
  ASSERT_TRUE(h.worker().applyConfig(next).ok);
  EXPECT_EQ(h.member("r1").config.weight, 50u);
  EXPECT_TRUE(h.member("r0").online) << "unchanged member keeps its link and health";
  if (m != 2) {
    EXPECT_EQ(servedBy(h.command("L keep 192.0.2.2 5000 ft tt")), m);
  }
  ASSERT_TRUE(h.runUntil([&] { return !h.hasMember("r2") || h.member("r2").status == AdminStatus::kDraining; }));
}

// ---------------------------------------------------------------------------
// Sockets handed over by a parent process.

TEST(ClusterWorkerListener, InheritedUdpSocketServes) {
  Cluster c(Transport::kUdp, Transport::kUdp, 1);
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  socklen_t len = sizeof in;
  getsockname(fd, reinterpret_cast<sockaddr*>(&in), &len);
  c.config.control.port = ntohs(in.sin_port);
  ASSERT_TRUE(c.h.start(c.config, fd));
  ASSERT_TRUE(c.h.runUntil([&] { return c.h.allOnline(); }));
  EXPECT_EQ(c.h.command("V"), "20040107");
  EXPECT_EQ(c.create("inh"), 0);
}

TEST(ClusterWorkerListener, InheritedUnixSocketServes) {
  Cluster c(Transport::kUnix, Transport::kUdp, 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, c.config.control.path.c_str(), sizeof un.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
  ASSERT_EQ(listen(fd, 128), 0);
  ASSERT_TRUE(c.h.start(c.config, fd));
  ASSERT_TRUE(c.h.runUntil([&] { return c.h.allOnline(); }));
  EXPECT_EQ(c.h.command("V"), "20040107");
  EXPECT_EQ(c.create("inh"), 0);
}


// ---------------------------------------------------------------------------
// Against a relay we did not write: Debian's rtpengine in userspace mode.

namespace rtpengine {

const char* kBinary = "/usr/bin/rtpengine";


struct Instance {
  ChildProcess process;
  uint16_t port = 0;
  uint16_t cli_port = 0;

  bool start(const TempDir& dir, int n) {
    port = freeLoopbackPort(SOCK_DGRAM);
    cli_port = freeLoopbackPort(SOCK_DGRAM);
    const int media = 40000 + 2000 * n;
    // Its log goes to a file: nobody reads a pipe while the test runs.
    const std::string cmd =
        std::string("exec ") + kBinary + " --config-file=none --table=-1 --foreground --log-stderr" +
        " --log-level=5 --interface=127.0.0.1 --listen-udp=127.0.0.1:" + std::to_string(port) +
        " --listen-cli=127.0.0.1:" + std::to_string(cli_port) + " --port-min=" + std::to_string(media) +
        " --port-max=" + std::to_string(media + 1999) + " --delete-delay=0 --pidfile=" +
        dir.file("rtpengine" + std::to_string(n) + ".pid") + " >" +
        dir.file("rtpengine" + std::to_string(n) + ".log") + " 2>&1";
    return process.start({"/bin/sh", "-c", cmd}, "");
  }
  // "Current sessions total: N" from rtpengine-ctl.
  int sessions() const {
    const std::string cmd = "rtpengine-ctl -ip 127.0.0.1 -port " + std::to_string(cli_port) +
                            " list numsessions 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return -1;
    char buf[512];
    std::string out;
    while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
    pclose(p);
    const size_t at = out.find("Current sessions total: ");
    return at == std::string::npos ? -1 : std::atoi(out.c_str() + at + 24);
  }
  ~Instance() { process.stop(SIGINT); }
};

}  // namespace rtpengine

TEST(ClusterWorkerRtpengine, SessionsCreatedLookedUpAndDeletedThroughTheWorker) {
  if (access(rtpengine::kBinary, X_OK) != 0) GTEST_SKIP() << "rtpengine-daemon is not installed";
  TempDir dir("cluster_worker_rtpengine");
  rtpengine::Instance engines[2];
  ClusterConfig config;
  config.name = "rtpengine";
  config.control = controlAddressFor(Transport::kUdp, dir);
  config.tuning = fastTuning();
  for (int i = 0; i < 2; ++i) {
    engines[i].start(dir, i);
    MemberConfig m;
    m.name = "e" + std::to_string(i);
    m.address.transport = Transport::kUdp;
    m.address.host = "127.0.0.1";
    m.address.port = engines[i].port;
    m.weight = 100;
    m.capacity = 1000;
    config.members.push_back(m);
  }
  Harness h;
  ASSERT_TRUE(h.start(config));
  ASSERT_TRUE(h.runUntil([&] { return h.allOnline(); }, milliseconds(15000)))
      << "rtpengine answers V and the required VF dates";
  EXPECT_EQ(h.command("V"), "20040107");
  EXPECT_EQ(h.command("VF 20050322"), "1") << "Kamailio's start-up probe";

  // Kamailio's pattern: offer (U), answer (L with swapped roles), delete.
  std::map<std::string, std::string> offers;
  h.driveVoid([&] {
    ControlClient client(h.address());
    for (int i = 0; i < 20; ++i) {
      const std::string call = "rtpe" + std::to_string(i);
      offers[call] = client.command("U " + call + " 192.0.2.1 4000 ft;1");
      const std::string answer = client.command("L " + call + " 192.0.2.2 5000 ft;1 tt;1");
      EXPECT_GT(servedByPort(answer), 0) << call << " answer: " << answer;
    }
  });
  int total = 0;
  for (auto& [call, reply] : offers) EXPECT_GT(servedByPort(reply), 0) << call << ": " << reply;
  ASSERT_TRUE(eventually([&] { return (total = engines[0].sessions() + engines[1].sessions()) == 20; }))
      << "sessions on the engines: " << total;
  EXPECT_GT(engines[0].sessions(), 0) << "both engines take sessions";
  EXPECT_GT(engines[1].sessions(), 0);
  // rtpengine answers I/G with E8: it stays online, its load is what we bound.
  h.runFor(milliseconds(400));
  EXPECT_TRUE(h.member("e0").online);
  EXPECT_TRUE(h.member("e0").stats_unsupported);
  ASSERT_TRUE(h.member("e0").active_sessions.has_value()) << "shown as the bound count, not UNKNOWN";
  EXPECT_EQ(*h.member("e0").active_sessions, h.member("e0").bound_sessions);
  EXPECT_EQ(h.member("e0").bound_sessions + h.member("e1").bound_sessions, 20u)
      << h.member("e0").bound_sessions << "+" << h.member("e1").bound_sessions << " live=" << h.worker().sessions().liveCount() << " created=" << h.worker().counters().created << " routed=" << h.worker().counters().routed << " bc=" << h.worker().counters().broadcasts << " cmds=" << h.worker().counters().commands;

  h.driveVoid([&] {
    ControlClient client(h.address());
    for (int i = 0; i < 20; ++i) EXPECT_EQ(client.command("D rtpe" + std::to_string(i) + " ft;1 tt;1"), "0");
  });
  EXPECT_TRUE(eventually([&] { return engines[0].sessions() + engines[1].sessions() == 0; }));
  EXPECT_EQ(h.member("e0").bound_sessions + h.member("e1").bound_sessions, 0u);
  // Unknown call: rtpengine says `0 0.0.0.0` to L, the cluster answers 0.
  EXPECT_EQ(h.command("L nosuch 192.0.2.2 5000 fx;1 tx;1"), "0");
}


// ---------------------------------------------------------------------------
// Disconnect notifications relayed through the cluster (REFERENCE.md 7).


TEST(ClusterWorkerNotify, SessionTimeoutReachesTheSignallingSocketThroughTheCluster) {
  const uint16_t inbound = freeLoopbackPort(SOCK_STREAM);
  Cluster c(Transport::kUdp, Transport::kUdp, 1, {},
            {"-n", "tcp:%%CC_SELF%%:" + std::to_string(inbound)});
  DisconnectNotifyConfig dn;
  dn.inbound_address.transport = Transport::kTcp;
  dn.inbound_address.host = "127.0.0.1";
  dn.inbound_address.port = inbound;
  dn.dest_socket_prefix = c.dir.file("b2b.");
  c.config.disconnect_notify = dn;
  ASSERT_TRUE(c.start());
  ASSERT_NE(c.h.worker().notifyRelay(), nullptr);

  // The signalling's own notify socket: <prefix><suffix>.
  const std::string sink_path = c.dir.file("b2b.7");
  const int sink = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, sink_path.c_str(), sizeof un.sun_path - 1);
  ASSERT_EQ(bind(sink, reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
  ASSERT_EQ(listen(sink, 4), 0);

  // One notification through the cluster: what the signalling's socket gets.
  int conn = -1;
  auto notifyOnce = [&](const std::string& call, const std::string& tag) {
    const std::string reply = c.h.command("U " + call + " 192.0.2.1 4000 ft;1 unix:" + sink_path + " " + tag);
    EXPECT_EQ(servedBy(reply), 0) << reply;
    EXPECT_EQ(c.relays[0]->admin("notify " + call), "OK sessions=1 notifications=1\n");
    std::string got;
    c.h.runUntil([&] {
      if (conn < 0 && waitReadable(sink, 0)) conn = accept(sink, nullptr, nullptr);
      if (conn >= 0 && waitReadable(conn, 0)) {
        char buf[256];
        const ssize_t n = read(conn, buf, sizeof buf);
        if (n > 0) got.append(buf, static_cast<size_t>(n));
      }
      return got.find('\n') != std::string::npos;
    });
    return got;
  };
  EXPECT_EQ(notifyOnce("ncall", "hello%20world"), "hello world\n");
  if (conn >= 0) close(conn);
  close(sink);
  EXPECT_EQ(c.h.worker().notifyRelay()->counters().delivered, 1u);
  // A tag with a bad %-escape is refused as rtpproxy refuses it, before any
  // member sees it.
  const uint64_t u_before = c.relays[0]->stat("cmd_U");
  EXPECT_EQ(c.h.command("U ncall2 192.0.2.1 4000 ft;1 unix:" + sink_path + " 50%zz"), "E10");
  EXPECT_EQ(c.relays[0]->stat("cmd_U"), u_before);
}


// A restarted worker (the supervisor's case: the table lives in shared
// memory) routes the calls of its predecessor without a broadcast.
TEST(ClusterWorkerRestart, CallsInAnAttachedTableKeepTheirMember) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  const size_t bytes = SessionTable::bytesFor(c.config.tuning.session_table_size);
  auto* block = static_cast<uint8_t*>(::operator new[](bytes, std::align_val_t(SessionTable::kRequiredAlignment)));
  ASSERT_TRUE(c.h.start(c.config, -1, block, bytes));
  ASSERT_TRUE(c.h.runUntil([&] { return c.h.allOnline(); }));
  std::map<std::string, int> owner;
  for (int i = 0; i < 20; ++i) {
    const std::string call = "keep" + std::to_string(i);
    owner[call] = c.create(call);
    ASSERT_GE(owner[call], 0);
  }
  c.h.stopWorker();
  ASSERT_TRUE(c.h.start(c.config, -1, block, bytes));
  ASSERT_TRUE(c.h.runUntil([&] { return c.h.allOnline(); }));
  const uint64_t broadcasts = c.h.worker().counters().broadcasts;
  for (const auto& [call, m] : owner)
    EXPECT_EQ(servedBy(c.h.command("L " + call + " 192.0.2.2 5000 ft tt")), m) << call;
  EXPECT_EQ(c.h.worker().counters().broadcasts, broadcasts) << "no broadcast after the restart";
  c.h.stopWorker();
  ::operator delete[](block, std::align_val_t(SessionTable::kRequiredAlignment));
}


// Commands that arrive while a just-started worker still probes its members
// wait for the first member instead of failing with E999.
TEST(ClusterWorkerRestart, NewCallsRightAfterStartWaitForTheFirstProbe) {
  Cluster c(Transport::kUdp, Transport::kUdp, 2);
  c.relays[0]->admin("delay 20");  // the probe round (V + 8 VF) takes ~200 ms
  c.relays[1]->admin("delay 20");
  ASSERT_TRUE(c.h.start(c.config));
  ASSERT_FALSE(c.h.allOnline());
  const std::string reply = c.h.command("U early 192.0.2.1 4000 ft");
  EXPECT_GE(servedBy(reply), 0) << reply;
}


// A relay that is slow for a moment when the call hangs up must not keep the
// session: the D is answered and sent again.
TEST(ClusterWorkerFaults, DeleteThatTimesOutIsRetriedLater) {
  Cluster c(Transport::kUdp, Transport::kUdp, 1);
  ASSERT_TRUE(c.start());
  ASSERT_EQ(c.create("slowbye", "fb"), 0);
  ASSERT_EQ(c.relays[0]->stat("sessions"), 1u);
  c.relays[0]->admin("mute on");
  EXPECT_EQ(c.h.command("D slowbye fb"), "0");
  EXPECT_EQ(c.h.member("r0").deferred_deletes, 1u);
  c.relays[0]->admin("mute off");
  EXPECT_TRUE(c.h.runUntil([&] { return c.relays[0]->stat("sessions") == 0; }))
      << "the deferred D reached the relay";
}

}  // namespace
}  // namespace rtpc
