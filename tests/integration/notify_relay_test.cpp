// NotifyRelay with real sockets: members' TCP notifications on loopback in,
// "<tag>\n" on real unix listening sockets under a temp dir out; and end to
// end with the relay double timing a session out.
#include "worker/notify_relay.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shared/url_quote.h"
#include "tests/integration/test_loop.h"
#include "tests/integration/test_support.h"

namespace rtpc {
namespace {

using testing::milliseconds;
using testing::TempDir;
using testing::TestLoop;
using testing::TestRelay;

const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

// ---------------------------------------------------------------------------
// parseNotifyLine: raw lines as a member sends them (without the "\n").

struct LineCase {
  const char* name;
  std::string line;
  NotifyLineStatus status;
  std::string suffix;
  std::string tag;
};

TEST(ParseNotifyLine, SplitsAtTheFirstSpaceAndRejectsEscapesAndGarbage) {
  using S = NotifyLineStatus;
  const std::vector<LineCase> cases = {
      {"plain", "b1 tag1", S::kOk, "b1", "tag1"},
      {"tag keeps its spaces", "b1 hello world;x", S::kOk, "b1", "hello world;x"},
      {"empty suffix is the prefix itself", " tag", S::kOk, "", "tag"},
      {"cr before the newline", "b1 tag\r", S::kOk, "b1", "tag"},
      {"tag is not decoded twice", "b1 50%25 a%20b", S::kOk, "b1", "50%25 a%20b"},
      {"still quoted (no space) is decoded", "b1%20hello%20world", S::kOk, "b1", "hello world"},
      {"dots inside a name are fine", "b.1 t", S::kOk, "b.1", "t"},
      {"empty", "", S::kMalformed, "", ""},
      {"no separator", "garbage", S::kMalformed, "", ""},
      {"empty tag", "b1 ", S::kMalformed, "", ""},
      {"bad escape", "b1%2", S::kMalformed, "", ""},
      {"bad hex", "b1%zz0x", S::kMalformed, "", ""},
      {"parent", "../x tag", S::kBadSuffix, "", ""},
      {"slash", "a/b tag", S::kBadSuffix, "", ""},
      {"dotdot alone", ".. tag", S::kBadSuffix, "", ""},
      {"nul", std::string("a\0b tag", 7), S::kBadSuffix, "", ""},
      {"quoted escape", "%2E%2E%2Fx%20tag", S::kBadSuffix, "", ""},
  };
  for (const LineCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::string scratch;
    const NotifyLine got = parseNotifyLine(c.line, scratch);
    EXPECT_EQ(got.status, c.status);
    if (c.status == S::kOk) {
      EXPECT_EQ(got.suffix, c.suffix);
      EXPECT_EQ(got.tag, c.tag);
    }
  }
}

// ---------------------------------------------------------------------------
// Sockets

// The signalling's notify socket: a unix stream listener that collects
// everything written to it, polled without blocking from the test loop.
class UnixSink {
 public:
  explicit UnixSink(const std::string& path, int backlog = 16)
      : path_(path), fd_(testing::listenUnixStream(path, backlog)) {}
  ~UnixSink() { shutdown(); }
  UnixSink(const UnixSink&) = delete;
  UnixSink& operator=(const UnixSink&) = delete;

  bool ok() const { return fd_ >= 0; }

  // Accepts and reads whatever is there.
  void pump() {
    if (fd_ < 0) return;
    for (int c; (c = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
      conns_.push_back(c);
      ++accepted_;
    }
    for (int c : conns_) {
      char buf[4096];
      for (ssize_t n; (n = read(c, buf, sizeof buf)) > 0;) data_.append(buf, static_cast<size_t>(n));
    }
  }
  const std::string& data() {
    pump();
    return data_;
  }
  int accepted() {
    pump();
    return accepted_;
  }
  // The signalling process goes away: listener and connections closed, file removed.
  void shutdown() {
    for (int c : conns_) close(c);
    conns_.clear();
    if (fd_ >= 0) {
      close(fd_);
      unlink(path_.c_str());
    }
    fd_ = -1;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<int> conns_;
  std::string data_;
  int accepted_ = 0;
};

// A member's notify connection (blocking; the kernel completes the handshake
// while the relay's loop is not running).
class TcpClient {
 public:
  TcpClient(uint16_t port, const char* from_ip = nullptr) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (from_ip != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      inet_pton(AF_INET, from_ip, &local.sin_addr);
      if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~TcpClient() {
    if (fd_ >= 0) close(fd_);
  }
  TcpClient(const TcpClient&) = delete;
  TcpClient& operator=(const TcpClient&) = delete;

  bool connected() const { return connected_; }
  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // True once the relay has closed the connection (EOF or reset).
  bool closedByPeer() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    char c;
    const ssize_t n = recv(fd_, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class NotifyRelayTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }

  void start(const NotifyRelayOptions& options, const std::string& prefix_name = "n.") {
    relay_.reset();
    DisconnectNotifyConfig config;
    config.inbound_address.transport = Transport::kTcp;
    config.inbound_address.host = "127.0.0.1";
    config.inbound_address.port = 0;
    config.dest_socket_prefix = dir_.file(prefix_name);
    std::string error;
    relay_ = NotifyRelay::create(loop_.base(), config, error, options);
    ASSERT_NE(relay_, nullptr) << error;
    ASSERT_NE(relay_->boundPort(), 0);
    ASSERT_TRUE(relay_->setAllowedPeers(std::vector<std::string>{"127.0.0.1"}));
  }

  const NotifyRelayCounters& counters() const { return relay_->counters(); }

  bool waitFor(const std::function<bool()>& done) { return loop_.runUntil(done); }

  // Waits until `n` lines have been accounted for one way or another.
  bool waitReceived(uint64_t n) { return waitFor([&] { return counters().received >= n; }); }

  TempDir dir_;
  TestLoop loop_;
  std::unique_ptr<NotifyRelay> relay_;
};

TEST_F(NotifyRelayTest, DeliversTheTagToTheUnixSocketNamedByTheSuffix) {
  UnixSink sink(dir_.file("n.b1"));
  ASSERT_TRUE(sink.ok());
  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(member.connected());
  ASSERT_TRUE(member.send("b1 hello world;x\n"));
  ASSERT_TRUE(waitFor([&] { return sink.data().size() >= 14; }));
  EXPECT_EQ(sink.data(), "hello world;x\n");
  EXPECT_EQ(counters().received, 1u);
  EXPECT_EQ(counters().delivered, 1u);
  EXPECT_EQ(counters().dropped, 0u);
}

TEST_F(NotifyRelayTest, SeveralNotificationsPerConnectionAndLinesSplitAcrossWrites) {
  UnixSink a(dir_.file("n.a"));
  UnixSink b(dir_.file("n.b"));
  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(member.send("a t1\nb t2\na t"));
  ASSERT_TRUE(waitReceived(2));
  loop_.runFor(milliseconds(50));
  EXPECT_EQ(counters().received, 2u);  // "a t" is not a line yet
  ASSERT_TRUE(member.send("3\nb t"));
  loop_.runFor(milliseconds(30));
  ASSERT_TRUE(member.send("4\n"));
  ASSERT_TRUE(waitFor([&] { return a.data() == "t1\nt3\n" && b.data() == "t2\nt4\n"; }))
      << "a=" << a.data() << " b=" << b.data();
  EXPECT_EQ(counters().delivered, 4u);
  // One connection per destination, kept open.
  EXPECT_EQ(a.accepted(), 1);
  EXPECT_EQ(b.accepted(), 1);
}

TEST_F(NotifyRelayTest, UnknownDestinationIsCountedAndTheRelayGoesOn) {
  UnixSink known(dir_.file("n.known"));
  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(member.send("nobody x\nknown y\n"));
  ASSERT_TRUE(waitFor([&] { return known.data() == "y\n"; }));
  EXPECT_EQ(counters().received, 2u);
  EXPECT_EQ(counters().dropped, 1u);
  EXPECT_EQ(counters().delivered, 1u);
}

TEST_F(NotifyRelayTest, DestinationThatAppearsLaterGetsTheLaterNotifications) {
  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(member.send("late early\n"));
  ASSERT_TRUE(waitFor([&] { return counters().dropped == 1; }));
  UnixSink sink(dir_.file("n.late"));
  ASSERT_TRUE(member.send("late later\n"));
  ASSERT_TRUE(waitFor([&] { return sink.data() == "later\n"; })) << sink.data();
  EXPECT_EQ(counters().delivered, 1u);
}

TEST_F(NotifyRelayTest, RestartedDestinationIsReconnected) {
  TcpClient member(relay_->boundPort());
  {
    UnixSink first(dir_.file("n.r"));
    ASSERT_TRUE(member.send("r one\n"));
    ASSERT_TRUE(waitFor([&] { return first.data() == "one\n"; }));
    first.shutdown();
  }
  UnixSink second(dir_.file("n.r"));
  // Whether the relay noticed the close first or finds out by a failed
  // write, "two" must arrive over a new connection.
  ASSERT_TRUE(member.send("r two\n"));
  ASSERT_TRUE(waitFor([&] { return second.data() == "two\n"; })) << second.data();
  EXPECT_EQ(counters().delivered, 2u);
  EXPECT_EQ(counters().dropped, 0u);
}

TEST_F(NotifyRelayTest, PeerNotListedIsClosedAndCountedEvenOnLoopback) {
  UnixSink sink(dir_.file("n.p"));
  // Exactly the listed IPs: 127.0.0.2 is allowed, 127.0.0.1 is not.
  ASSERT_TRUE(relay_->setAllowedPeers(std::vector<std::string>{"127.0.0.2"}));
  TcpClient stranger(relay_->boundPort());
  ASSERT_TRUE(stranger.connected());
  stranger.send("p forged\n");
  ASSERT_TRUE(waitFor([&] { return stranger.closedByPeer(); }));
  EXPECT_EQ(counters().rejected_peer, 1u);
  EXPECT_EQ(counters().received, 0u);

  TcpClient member(relay_->boundPort(), "127.0.0.2");
  ASSERT_TRUE(member.connected());
  ASSERT_TRUE(member.send("p real\n"));
  ASSERT_TRUE(waitFor([&] { return sink.data() == "real\n"; })) << sink.data();
  EXPECT_EQ(counters().rejected_peer, 1u);
}

TEST_F(NotifyRelayTest, NoAllowedPeersMeansNobodyIsServed) {
  relay_->setAllowedPeers(std::vector<std::string>{});
  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(waitFor([&] { return member.closedByPeer(); }));
  EXPECT_EQ(counters().rejected_peer, 1u);
}

TEST_F(NotifyRelayTest, GarbageAndOverlongLinesAreCountedAndTheStreamGoesOn) {
  UnixSink sink(dir_.file("n.g"));
  TcpClient member(relay_->boundPort());
  std::string overlong(3000, 'x');
  overlong.insert(1, " ");  // well-formed but too long
  ASSERT_TRUE(member.send("garbage\n" + overlong + "\n\n"));
  ASSERT_TRUE(member.send("g ok\n"));
  ASSERT_TRUE(waitFor([&] { return sink.data() == "ok\n"; })) << sink.data();
  EXPECT_EQ(counters().received, 4u);
  EXPECT_EQ(counters().malformed, 3u);  // garbage, overlong, empty
  EXPECT_EQ(counters().delivered, 1u);
  EXPECT_EQ(relay_->connectionCount(), 1u);
}

TEST_F(NotifyRelayTest, LineOfExactlyTheLimitIsAccepted) {
  NotifyRelayOptions options;
  options.max_line_bytes = 32;
  start(options);
  UnixSink sink(dir_.file("n.e"));
  TcpClient member(relay_->boundPort());
  const std::string tag(30, 't');  // "e " + 30 = 32 bytes
  ASSERT_TRUE(member.send("e " + tag + "\ne " + tag + "t\n"));
  ASSERT_TRUE(waitReceived(2));
  ASSERT_TRUE(waitFor([&] { return sink.data() == tag + "\n"; })) << sink.data();
  EXPECT_EQ(counters().malformed, 1u);
}

TEST_F(NotifyRelayTest, SuffixThatEscapesThePrefixDirectoryIsRejected) {
  // prefix <dir>/sub/ ; without the check "../target" would reach <dir>/target.
  ASSERT_EQ(mkdir(dir_.file("sub").c_str(), 0700), 0);
  start({}, "sub/");
  UnixSink target(dir_.file("target"));
  UnixSink inside(dir_.file("sub/ok"));
  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(member.send("../target a\n..%2Ftarget b\n%2E%2E%2Ftarget%20c\n"));
  ASSERT_TRUE(member.send(std::string("ok\0x d\nok fine\n", 15)));
  ASSERT_TRUE(waitFor([&] { return inside.data() == "fine\n"; })) << inside.data();
  EXPECT_EQ(counters().rejected_path, 4u);
  EXPECT_EQ(target.data(), "");
  EXPECT_EQ(target.accepted(), 0);
}

TEST_F(NotifyRelayTest, ConnectionsBeyondTheLimitAreClosed) {
  NotifyRelayOptions options;
  options.max_connections = 2;
  start(options);
  TcpClient m1(relay_->boundPort());
  TcpClient m2(relay_->boundPort());
  ASSERT_TRUE(waitFor([&] { return relay_->connectionCount() == 2; }));
  TcpClient m3(relay_->boundPort());
  ASSERT_TRUE(waitFor([&] { return m3.closedByPeer(); }));
  EXPECT_EQ(counters().connections_refused, 1u);
  EXPECT_FALSE(m1.closedByPeer());
}

TEST_F(NotifyRelayTest, IdleConnectionIsClosed) {
  NotifyRelayOptions options;
  options.idle_timeout_ms = 150;
  start(options);
  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(waitFor([&] { return member.closedByPeer(); }));
  EXPECT_EQ(counters().idle_timeouts, 1u);
  EXPECT_EQ(relay_->connectionCount(), 0u);
}

TEST_F(NotifyRelayTest, BusyDestinationQueuesBoundedAndGetsTheQueueAfterBackoff) {
  NotifyRelayOptions options;
  options.max_queue_bytes = 8;
  options.reconnect_min_ms = 300;
  start(options);
  // A listener with a full backlog: connect() fails with EAGAIN, it is there
  // but busy, so the relay queues and retries instead of dropping.
  UnixSink sink(dir_.file("n.f"), 0);
  const int filler = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const sockaddr_un a = testing::unixAddress(dir_.file("n.f"));
  ASSERT_EQ(connect(filler, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_NE(connect(probe, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(errno, EAGAIN);
  close(probe);

  TcpClient member(relay_->boundPort());
  ASSERT_TRUE(member.send("f aaa\nf bbb\nf ccc\n"));  // 4 + 4 bytes fit, the third does not
  ASSERT_TRUE(waitReceived(3));
  EXPECT_EQ(counters().dropped, 1u);
  EXPECT_EQ(counters().delivered, 0u);
  sink.pump();  // accepts the filler: room in the backlog again
  ASSERT_TRUE(waitFor([&] { return sink.data() == "aaa\nbbb\n"; })) << sink.data();
  EXPECT_EQ(counters().delivered, 2u);
  EXPECT_EQ(counters().dropped, 1u);
  close(filler);
}

TEST(NotifyRelayCreate, RefusesANonTcpInboundAddress) {
  TestLoop loop;
  DisconnectNotifyConfig config;
  config.inbound_address.transport = Transport::kUdp;
  config.inbound_address.host = "127.0.0.1";
  config.dest_socket_prefix = "/tmp/x";
  std::string error;
  EXPECT_EQ(NotifyRelay::create(loop.base(), config, error), nullptr);
  EXPECT_NE(error.find("tcp"), std::string::npos) << error;
}

TEST(NotifyRelayCreate, Tcp6ListensAndStripsTheUnixScheme) {
  TestLoop loop;
  DisconnectNotifyConfig config;
  config.inbound_address.transport = Transport::kTcp6;
  config.inbound_address.host = "::1";
  config.dest_socket_prefix = "unix:/tmp/x.";
  std::string error;
  auto relay = NotifyRelay::create(loop.base(), config, error);
  ASSERT_NE(relay, nullptr) << error;
  EXPECT_NE(relay->boundPort(), 0);
  EXPECT_EQ(relay->address().port, relay->boundPort());
  EXPECT_EQ(relay->destinationPrefix(), "/tmp/x.");
  std::string resolve_error;
  EXPECT_FALSE(relay->setAllowedPeers({"[::1]", "", "no-such-host.invalid"}, &resolve_error));
  EXPECT_NE(resolve_error.find("no-such-host.invalid"), std::string::npos);
}

// ---------------------------------------------------------------------------
// End to end: the relay double times a session out and calls us back.

TEST_F(NotifyRelayTest, RelayDoubleTimeoutReachesTheSignallingSocketWithTheOriginalTag) {
  const std::string port = std::to_string(relay_->boundPort());
  TestRelay member;
  ASSERT_TRUE(member.start("udp:127.0.0.1:0", dir_.file("admin.sock"),
                           {"-n", "tcp:%%CC_SELF%%:" + port, "-m", "41000", "-M", "41999"}));
  UnixSink signalling(dir_.file("n.b2b1"));

  // What the worker sends for a U whose notify socket is <prefix>b2b1 and
  // whose tag (as the signalling wrote it) is "hello%20world%3B50%25": the
  // suffix and the decoded tag, quoted together (cluster_worker.cpp formatFor).
  std::string original;
  ASSERT_TRUE(urlUnquoteAppend("hello%20world%3B50%25", original));
  std::string tag;
  urlQuoteAppend("b2b1 " + original, tag);
  testing::ControlClient control(member.address());
  const std::string reply =
      control.datagram("c1", "U e2ecall 192.0.2.1 4000 ftag;1 tcp:%%CC_SELF%%:" + port + " " + tag);
  ASSERT_FALSE(reply.empty());
  ASSERT_NE(reply[0], 'E') << reply;

  EXPECT_EQ(member.admin("notify e2ecall"), "OK sessions=1 notifications=1\n");
  ASSERT_TRUE(waitFor([&] { return signalling.data() == "hello world;50%\n"; })) << signalling.data();
  EXPECT_EQ(counters().received, 1u);
  EXPECT_EQ(counters().delivered, 1u);
}

}  // namespace
}  // namespace rtpc
