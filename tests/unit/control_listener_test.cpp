#include "worker/control_listener.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <new>
#include <vector>

// Counts heap allocations made while the event loop runs (the listener's
// work), to prove that a steady load allocates nothing per command.
// GCC flags the new/free pairing below, which is the point of a replacement.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<size_t> g_allocations{0};
}  // namespace

void* operator new(size_t size) {
  if (g_count_allocations.load(std::memory_order_relaxed)) ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace rtpc {
namespace {

// Answers every command at once ("did:<body>", or E<code> for a parse error),
// holds them for the test to answer, or answers after the number of
// milliseconds given as the call-id ("Q <ms> tag"), from a libevent timer.
class TestHandler : public CommandHandler {
 public:
  enum class Mode { kEcho, kHold, kDelayed, kFixed };

  explicit TestHandler(event_base* base) : base_(base) {}

  void prefetchCall(std::string_view call_id) override {
    if (mode == Mode::kFixed) return;  // allocates nothing itself
    prefetched.emplace_back(call_id);
    events.push_back("hint " + std::string(call_id));
  }

  void onCommand(ControlRequest* request) override {
    ++commands;
    if (mode != Mode::kFixed) {
      events.push_back("run " + std::string(request->command.call_id));
      texts.emplace_back(request->text);
      parses.push_back(request->parse);
    }
    switch (mode) {
      case Mode::kEcho:
        request->listener->reply(request, answerFor(*request));
        break;
      case Mode::kHold:
        held.push_back(request);
        break;
      case Mode::kFixed:  // allocates nothing itself
        request->listener->reply(request, "40144 127.0.0.1");
        break;
      case Mode::kDelayed: {
        const int ms = std::atoi(std::string(request->command.call_id).c_str());
        const timeval tv{0, ms * 1000};
        event_base_once(base_, -1, EV_TIMEOUT, &TestHandler::onTimer, request, &tv);
        break;
      }
    }
  }

  static std::string answerFor(const ControlRequest& r) {
    if (!r.parse.ok) return "E" + std::to_string(r.parse.error_code);
    return "did:" + std::string(r.command.body);
  }

  // Answers the held request i with its echo answer.
  void answer(size_t i) { held[i]->listener->reply(held[i], answerFor(*held[i])); }

  Mode mode = Mode::kEcho;
  size_t commands = 0;
  std::vector<std::string> texts;
  std::vector<std::string> prefetched;  // prefetchCall() hints, in order
  std::vector<std::string> events;      // "hint <id>" / "run <id>", in order
  std::vector<ParseResult> parses;
  std::vector<ControlRequest*> held;

 private:
  static void onTimer(evutil_socket_t, short, void* arg) {
    auto* request = static_cast<ControlRequest*>(arg);
    request->listener->reply(request, answerFor(*request));
  }
  event_base* base_;
};

class ControlListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
    char dir[] = "/tmp/rtpc_listener_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    for (const int fd : client_fds_) close(fd);
    listener_.reset();
    handler_.reset();
    event_base_free(base_);
    std::system(("rm -rf " + dir_).c_str());
  }

  ControlListener& listen(const std::string& uri, ControlListenerOptions options = {}) {
    // Port 0 (any free port) is no valid config value: parse with 1, bind with 0.
    std::string text = uri;
    const bool any_port = text.size() > 2 && text.compare(text.size() - 2, 2, ":0") == 0;
    if (any_port) text.back() = '1';
    auto parsed = parseAddressUri(text, Transport::kUnix);
    EXPECT_TRUE(parsed.address) << parsed.error;
    address_ = *parsed.address;
    if (any_port) address_.port = 0;
    handler_ = std::make_unique<TestHandler>(base_);
    std::string error;
    options.reply_cache_bytes = 1 << 20;
    listener_ = ControlListener::bind(base_, address_, handler_.get(), error, options);
    EXPECT_NE(listener_, nullptr) << error;
    return *listener_;
  }

  // Runs the event loop until `done` or two seconds.
  bool pumpUntil(const std::function<bool()>& done, int ms = 2000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      g_count_allocations = count_allocations_;
      event_base_loop(base_, EVLOOP_NONBLOCK);
      g_count_allocations = false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }
  void pumpFor(int ms) {
    pumpUntil([] { return false; }, ms);
  }

  int track(int fd) {
    client_fds_.push_back(fd);
    return fd;
  }

  int udpClient(int family) {
    const int fd = track(socket(family, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    EXPECT_GE(fd, 0);
    return fd;
  }
  sockaddr_storage serverAddress() const {
    sockaddr_storage ss{};
    if (address_.transport == Transport::kUdp6 || address_.transport == Transport::kTcp6) {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(listener_->boundPort());
      inet_pton(AF_INET6, "::1", &sin6->sin6_addr);
    } else if (isUnixPath(address_.transport)) {
      auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
      sun->sun_family = AF_UNIX;
      std::strncpy(sun->sun_path, address_.path.c_str(), sizeof sun->sun_path - 1);
    } else {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(listener_->boundPort());
      inet_pton(AF_INET, "127.0.0.1", &sin->sin_addr);
    }
    return ss;
  }
  void sendDatagram(int fd, std::string_view data) {
    const sockaddr_storage to = serverAddress();
    const socklen_t length =
        to.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    ASSERT_EQ(sendto(fd, data.data(), data.size(), 0, reinterpret_cast<const sockaddr*>(&to), length),
              static_cast<ssize_t>(data.size()));
  }
  // The next datagram, or "<none>" after `ms`.
  std::string receiveDatagram(int fd, int ms = 2000) {
    std::string got = "<none>";
    pumpUntil(
        [&] {
          char buf[70000];
          const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
          if (n < 0) return false;
          got.assign(buf, static_cast<size_t>(n));
          return true;
        },
        ms);
    return got;
  }

  int streamClient() {
    const sockaddr_storage to = serverAddress();
    const int fd = track(socket(to.ss_family, SOCK_STREAM, 0));
    const socklen_t length = to.ss_family == AF_UNIX    ? sizeof(sockaddr_un)
                             : to.ss_family == AF_INET6 ? sizeof(sockaddr_in6)
                                                        : sizeof(sockaddr_in);
    EXPECT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&to), length), 0) << strerror(errno);
    return fd;
  }
  void sendAll(int fd, std::string_view data) {
    ASSERT_EQ(send(fd, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
  }
  // Reads until `bytes` bytes arrived, or EOF, or the time is up.
  struct StreamRead {
    std::string data;
    bool eof = false;
  };
  StreamRead readStream(int fd, size_t bytes, int ms = 2000) {
    StreamRead r;
    pumpUntil(
        [&] {
          char buf[65536];
          for (;;) {
            const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n == 0) {
              r.eof = true;
              return true;
            }
            if (n < 0) return r.data.size() >= bytes;
            r.data.append(buf, static_cast<size_t>(n));
          }
        },
        ms);
    return r;
  }

  event_base* base_ = nullptr;
  std::string dir_;
  SocketAddress address_;
  std::unique_ptr<TestHandler> handler_;
  std::unique_ptr<ControlListener> listener_;
  std::vector<int> client_fds_;
  bool count_allocations_ = false;
};

// --- udp ------------------------------------------------------------------

TEST_F(ControlListenerTest, UdpReplyEchoesTheCookie) {
  listen("udp:127.0.0.1:0");
  ASSERT_NE(listener_->boundPort(), 0);
  EXPECT_EQ(listener_->address().port, listener_->boundPort());
  const int client = udpClient(AF_INET);
  sendDatagram(client, "1234_5 U call1 192.0.2.1 10000 ftag1");
  EXPECT_EQ(receiveDatagram(client), "1234_5 did:U call1 192.0.2.1 10000 ftag1\n");
  ASSERT_EQ(handler_->texts.size(), 1u);
  EXPECT_EQ(handler_->texts[0], "1234_5 U call1 192.0.2.1 10000 ftag1");
  EXPECT_EQ(listener_->counters().received, 1u);
  EXPECT_EQ(listener_->counters().answered, 1u);
}

TEST_F(ControlListenerTest, UdpReplyBodyTrailingNewlineIsNotDoubled) {
  listen("udp:127.0.0.1:0");
  handler_->mode = TestHandler::Mode::kHold;
  const int client = udpClient(AF_INET);
  sendDatagram(client, "c V");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 1; }));
  listener_->reply(handler_->held[0], "20040107\n");
  EXPECT_EQ(receiveDatagram(client), "c 20040107\n");
}

TEST_F(ControlListenerTest, UdpRetransmissionIsAnsweredFromTheCacheAndRunOnce) {
  listen("udp:127.0.0.1:0");
  handler_->mode = TestHandler::Mode::kHold;
  const int client = udpClient(AF_INET);
  sendDatagram(client, "77_1 U call1 192.0.2.1 10000 ftag1");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 1; }));
  // A retransmission while the command is in flight is dropped.
  sendDatagram(client, "77_1 U call1 192.0.2.1 10000 ftag1");
  ASSERT_TRUE(pumpUntil([&] { return listener_->counters().duplicates_dropped == 1; }));
  EXPECT_EQ(receiveDatagram(client, 50), "<none>");
  listener_->reply(handler_->held[0], "40144 127.0.0.1");
  EXPECT_EQ(receiveDatagram(client), "77_1 40144 127.0.0.1\n");
  // After the answer it gets the same answer again, byte for byte.
  sendDatagram(client, "77_1 U call1 192.0.2.1 10000 ftag1");
  EXPECT_EQ(receiveDatagram(client), "77_1 40144 127.0.0.1\n");
  EXPECT_EQ(handler_->texts.size(), 1u);
  EXPECT_EQ(listener_->counters().cache_hits, 1u);
}

TEST_F(ControlListenerTest, UdpSameCookieFromAnotherClientIsRunAgain) {
  listen("udp:127.0.0.1:0");
  const int a = udpClient(AF_INET);
  const int b = udpClient(AF_INET);
  sendDatagram(a, "same V");
  EXPECT_EQ(receiveDatagram(a), "same did:V\n");
  sendDatagram(b, "same VF 20040107");
  EXPECT_EQ(receiveDatagram(b), "same did:VF 20040107\n");
  EXPECT_EQ(handler_->texts.size(), 2u);
  EXPECT_EQ(listener_->counters().cache_hits, 0u);
}

TEST_F(ControlListenerTest, UdpCancelledCommandRunsAgainOnRetransmission) {
  listen("udp:127.0.0.1:0");
  handler_->mode = TestHandler::Mode::kHold;
  const int client = udpClient(AF_INET);
  sendDatagram(client, "k D call f");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 1; }));
  listener_->cancel(handler_->held[0]);
  EXPECT_EQ(receiveDatagram(client, 50), "<none>");
  sendDatagram(client, "k D call f");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 2; }));
  handler_->answer(1);
  EXPECT_EQ(receiveDatagram(client), "k did:D call f\n");
}

TEST_F(ControlListenerTest, UdpMalformedDatagramsGetTheParseError) {
  listen("udp:127.0.0.1:0");
  const int client = udpClient(AF_INET);
  struct Case {
    std::string datagram;
    std::string reply;
  };
  const std::string too_long = "big V " + std::string(kMaxCommandBytes, 'x');
  const std::vector<Case> cases = {
      {"", "E5\n"},                                  // nothing: no cookie to echo
      {" \t\n", "E5\n"},                             // blank
      {"ck", "ck E5\n"},                             // a cookie only
      {"ck2 \n", "ck2 E5\n"},
      {std::string("ck3 V\0x", 7), "ck3 E5\n"},      // NUL
      {too_long, "big E5\n"},                        // more than 8 KiB
      {"ck4 Z", "ck4 E0\n"},                         // unknown command
      {"two1 V\ntwo2 V\n", "two1 E1\n"},             // one datagram = one command
  };
  for (const Case& c : cases) {
    sendDatagram(client, c.datagram);
    EXPECT_EQ(receiveDatagram(client), c.reply) << c.datagram.substr(0, 40);
  }
  EXPECT_EQ(listener_->counters().malformed, cases.size());
  EXPECT_EQ(listener_->counters().oversized, 1u);
  for (const ParseResult& p : handler_->parses) EXPECT_FALSE(p.ok);
}

TEST_F(ControlListenerTest, UdpBurstIsAnsweredInFullThroughBatches) {
  listen("udp:127.0.0.1:0");
  const int client = udpClient(AF_INET);
  const int n = 200;  // more than one recvmmsg batch per wakeup
  for (int i = 0; i < n; ++i) sendDatagram(client, "b" + std::to_string(i) + " V");
  std::vector<bool> seen(n);
  int got = 0;
  for (int i = 0; i < n; ++i) {
    const std::string reply = receiveDatagram(client);
    ASSERT_NE(reply, "<none>") << i;
    const int index = std::atoi(reply.c_str() + 1);
    ASSERT_EQ(reply, "b" + std::to_string(index) + " did:V\n");
    if (!seen[static_cast<size_t>(index)]) ++got;
    seen[static_cast<size_t>(index)] = true;
  }
  EXPECT_EQ(got, n);
}

// A queued burst is read in batches; before a batch is handled the handler
// gets each command's call-id as a prefetch hint, and only real call-ids.
TEST_F(ControlListenerTest, UdpBatchesHintEveryCallIdBeforeHandling) {
  listen("udp:127.0.0.1:0");
  const int client = udpClient(AF_INET);
  const int n = 100;
  for (int i = 0; i < n; ++i) {
    sendDatagram(client, "h" + std::to_string(i) + " D  call-" + std::to_string(i) + " ft\n");
  }
  for (int i = 0; i < n; ++i) ASSERT_NE(receiveDatagram(client), "<none>") << i;
  // All were queued before the first wakeup, so nearly all came in batches
  // of more than one (a batch of one needs no hint).
  EXPECT_GE(handler_->prefetched.size(), static_cast<size_t>(n / 2));
  for (const std::string& id : handler_->prefetched) {
    ASSERT_EQ(id.rfind("call-", 0), 0u) << id;
    const int i = std::atoi(id.c_str() + 5);
    EXPECT_EQ(id, "call-" + std::to_string(i));
  }
  // Each hint comes before its command runs.
  for (const std::string& id : handler_->prefetched) {
    const auto hint = std::find(handler_->events.begin(), handler_->events.end(), "hint " + id);
    const auto run = std::find(handler_->events.begin(), handler_->events.end(), "run " + id);
    ASSERT_NE(run, handler_->events.end()) << id;
    EXPECT_LT(hint, run) << id;
  }
}

TEST_F(ControlListenerTest, Udp6OnLoopback) {
  listen("udp6:[::1]:0");
  const int client = udpClient(AF_INET6);
  sendDatagram(client, "v6 V");
  EXPECT_EQ(receiveDatagram(client), "v6 did:V\n");
}

TEST_F(ControlListenerTest, UdpInheritedSocketWorksLikeABoundOne) {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  socklen_t length = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &length);

  address_ = *parseAddressUri("udp:127.0.0.1:22222", Transport::kUdp).address;
  handler_ = std::make_unique<TestHandler>(base_);
  std::string error;
  listener_ = ControlListener::adopt(base_, address_, fd, handler_.get(), error);
  ASSERT_NE(listener_, nullptr) << error;
  EXPECT_EQ(listener_->boundPort(), ntohs(sin.sin_port));
  const int client = udpClient(AF_INET);
  sendDatagram(client, "inh V");
  EXPECT_EQ(receiveDatagram(client), "inh did:V\n");
  // Retransmissions are cached on an inherited socket too.
  sendDatagram(client, "inh V");
  EXPECT_EQ(receiveDatagram(client), "inh did:V\n");
  EXPECT_EQ(handler_->texts.size(), 1u);
}

TEST_F(ControlListenerTest, AdoptRefusesASocketOfTheWrongKind) {
  handler_ = std::make_unique<TestHandler>(base_);
  std::string error;
  const int dgram = socket(AF_INET, SOCK_DGRAM, 0);
  auto tcp = *parseAddressUri("tcp:127.0.0.1:1", Transport::kTcp).address;
  EXPECT_EQ(ControlListener::adopt(base_, tcp, dgram, handler_.get(), error), nullptr);
  EXPECT_NE(error, "");
  const int stream = socket(AF_INET, SOCK_STREAM, 0);  // not listening
  error.clear();
  EXPECT_EQ(ControlListener::adopt(base_, tcp, stream, handler_.get(), error), nullptr);
  EXPECT_NE(error.find("not listening"), std::string::npos) << error;
  auto udp6 = *parseAddressUri("udp6:[::1]:1", Transport::kUdp6).address;
  EXPECT_EQ(ControlListener::adopt(base_, udp6, dgram, handler_.get(), error), nullptr);
  // On failure the caller still owns the descriptors.
  EXPECT_EQ(fcntl(dgram, F_GETFD), 0);
  EXPECT_EQ(close(dgram), 0);
  EXPECT_EQ(close(stream), 0);
}

// --- unix: one command per connection ---------------------------------------

TEST_F(ControlListenerTest, UnixCommandWithoutNewlineIsAnsweredAndTheConnectionClosed) {
  listen("unix:" + dir_ + "/ctl.sock");
  const int client = streamClient();
  sendAll(client, "V");  // Kamailio sends no "\n"
  const StreamRead r = readStream(client, 100);
  EXPECT_EQ(r.data, "did:V\n");
  EXPECT_TRUE(r.eof);
}

TEST_F(ControlListenerTest, UnixOneReadIsOneCommand) {
  listen("unix:" + dir_ + "/ctl.sock");
  const int client = streamClient();
  sendAll(client, "V\nVF 20040107\n");
  const StreamRead r = readStream(client, 100);
  EXPECT_EQ(r.data, "E1\n");  // as rtpproxy: both lines are one command
  EXPECT_TRUE(r.eof);
}

TEST_F(ControlListenerTest, UnixClientThatSendsNothingIsClosedAfterTheTimeout) {
  ControlListenerOptions options;
  options.command_timeout_ms = 100;
  listen("unix:" + dir_ + "/ctl.sock", options);
  const int client = streamClient();
  const StreamRead r = readStream(client, 1, 1500);
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.data, "");
  EXPECT_EQ(listener_->counters().idle_timeouts, 1u);
}

TEST_F(ControlListenerTest, UnixClientGoneBeforeTheReplyIsHarmless) {
  listen("unix:" + dir_ + "/ctl.sock");
  handler_->mode = TestHandler::Mode::kHold;
  const int client = streamClient();
  sendAll(client, "D call f");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 1; }));
  shutdown(client, SHUT_RDWR);
  close(client);
  client_fds_.clear();
  pumpFor(20);
  handler_->answer(0);
  EXPECT_EQ(listener_->counters().answered, 1u);
  // The listener goes on serving.
  handler_->mode = TestHandler::Mode::kEcho;
  const int next = streamClient();
  sendAll(next, "V");
  EXPECT_EQ(readStream(next, 100).data, "did:V\n");
}

TEST_F(ControlListenerTest, UnixHalfClosedClientStillGetsItsAnswer) {
  listen("unix:" + dir_ + "/ctl.sock");
  const int client = streamClient();
  sendAll(client, "V\n");
  shutdown(client, SHUT_WR);  // what `socat` does at the end of its input
  const StreamRead r = readStream(client, 100);
  EXPECT_EQ(r.data, "did:V\n");
  EXPECT_TRUE(r.eof);
}

TEST_F(ControlListenerTest, UnixBindReplacesAStaleSocketAndRemovesItsFile) {
  const std::string path = dir_ + "/stale.sock";
  {  // a socket file left by a dead process
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
    close(fd);
  }
  listen("cunix:" + path);
  ASSERT_NE(listener_, nullptr);
  const int client = streamClient();
  sendAll(client, "V\n");
  EXPECT_EQ(readStream(client, 6).data, "did:V\n");
  listener_.reset();
  struct stat st {};
  EXPECT_NE(lstat(path.c_str(), &st), 0);
}

TEST_F(ControlListenerTest, UnixBindRefusesToReplaceARegularFile) {
  const std::string path = dir_ + "/not_a_socket";
  close(open(path.c_str(), O_CREAT | O_WRONLY, 0600));
  auto address = *parseAddressUri("unix:" + path, Transport::kUnix).address;
  handler_ = std::make_unique<TestHandler>(base_);
  std::string error;
  EXPECT_EQ(ControlListener::bind(base_, address, handler_.get(), error), nullptr);
  EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0);
}

// --- cunix / tcp: persistent, newline framed ------------------------------

TEST_F(ControlListenerTest, CunixPipelinedCommandsAreAnsweredInOrderWhenTheyFinishOutOfOrder) {
  listen("cunix:" + dir_ + "/c.sock");
  handler_->mode = TestHandler::Mode::kDelayed;
  const int client = streamClient();
  // The first takes longest, the last is quickest.
  sendAll(client, "Q 60 a\nQ 5 b\nQ 30 c\nQ 0 d\n");
  const std::string expected = "did:Q 60 a\ndid:Q 5 b\ndid:Q 30 c\ndid:Q 0 d\n";
  const StreamRead r = readStream(client, expected.size());
  EXPECT_EQ(r.data, expected);
  EXPECT_FALSE(r.eof);  // persistent
}

TEST_F(ControlListenerTest, CunixLaterAnswerWaitsForTheEarlierOne) {
  listen("cunix:" + dir_ + "/c.sock");
  handler_->mode = TestHandler::Mode::kHold;
  const int client = streamClient();
  sendAll(client, "V\nVF 20040107\n");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 2; }));
  listener_->reply(handler_->held[1], "1");
  EXPECT_EQ(readStream(client, 1, 50).data, "");
  listener_->reply(handler_->held[0], "20040107");
  EXPECT_EQ(readStream(client, 11).data, "20040107\n1\n");
}

TEST_F(ControlListenerTest, CunixFramingCrlfEmptyLinesAndSplitWrites) {
  listen("cunix:" + dir_ + "/c.sock");
  const int client = streamClient();
  sendAll(client, "V\r\n\nVF 2004");
  pumpFor(20);
  sendAll(client, "0107\n");
  const StreamRead r = readStream(client, 25);
  EXPECT_EQ(r.data, "did:V\nE5\ndid:VF 20040107\n");
}

TEST_F(ControlListenerTest, CunixOverLongLineGetsE5AndTheStreamResyncs) {
  listen("cunix:" + dir_ + "/c.sock");
  const int client = streamClient();
  std::string input = "V\n" + std::string(3 * kMaxCommandBytes, 'x') + "\nVF 20040107\n";
  // Exactly the limit is still a command.
  input += "G " + std::string(kMaxCommandBytes - 2, 'n') + "\n";
  sendAll(client, input);
  const StreamRead r = readStream(client, 25 + 4 + 2 + (kMaxCommandBytes - 2) + 1);
  EXPECT_EQ(r.data.substr(0, 25), "did:V\nE5\ndid:VF 20040107\n");
  EXPECT_EQ(r.data.size(), 25 + 4 + 2 + (kMaxCommandBytes - 2) + 1);
  EXPECT_EQ(listener_->counters().oversized, 1u);
}

TEST_F(ControlListenerTest, CunixClientDisconnectingWithCommandsInFlightIsHarmless) {
  listen("cunix:" + dir_ + "/c.sock");
  handler_->mode = TestHandler::Mode::kHold;
  const int client = streamClient();
  sendAll(client, "V\nV\nV\n");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 3; }));
  listener_->reply(handler_->held[1], "early");  // waits for held[0]
  close(client);
  client_fds_.clear();
  pumpFor(20);
  handler_->answer(0);
  listener_->cancel(handler_->held[2]);
  pumpFor(20);
  handler_->mode = TestHandler::Mode::kEcho;
  const int next = streamClient();
  sendAll(next, "V\n");
  EXPECT_EQ(readStream(next, 6).data, "did:V\n");
}

TEST_F(ControlListenerTest, CunixStopsReadingAtTheInFlightLimitAndResumes) {
  ControlListenerOptions options;
  options.max_in_flight_per_connection = 2;
  listen("cunix:" + dir_ + "/c.sock", options);
  handler_->mode = TestHandler::Mode::kHold;
  const int client = streamClient();
  sendAll(client, "Q 1 a\nQ 2 a\nQ 3 a\nQ 4 a\nQ 5 a\n");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 2; }));
  pumpFor(30);
  EXPECT_EQ(handler_->held.size(), 2u);
  for (size_t answered = 0; answered < 5; ++answered) {
    ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() > answered; }));
    handler_->answer(answered);
  }
  EXPECT_EQ(readStream(client, 50).data,
            "did:Q 1 a\ndid:Q 2 a\ndid:Q 3 a\ndid:Q 4 a\ndid:Q 5 a\n");
}

TEST_F(ControlListenerTest, CunixCancelClosesTheStream) {
  listen("cunix:" + dir_ + "/c.sock");
  handler_->mode = TestHandler::Mode::kHold;
  const int client = streamClient();
  sendAll(client, "V\n");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 1; }));
  listener_->cancel(handler_->held[0]);
  const StreamRead r = readStream(client, 1);
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.data, "");
}

TEST_F(ControlListenerTest, TcpPersistentConnection) {
  listen("tcp:127.0.0.1:0");
  const int client = streamClient();
  sendAll(client, "V\n");
  EXPECT_EQ(readStream(client, 6).data, "did:V\n");
  sendAll(client, "X\n");
  EXPECT_EQ(readStream(client, 6).data, "did:X\n");
  EXPECT_EQ(listener_->counters().connections, 1u);
}

TEST_F(ControlListenerTest, Tcp6PersistentConnection) {
  listen("tcp6:[::1]:0");
  const int client = streamClient();
  sendAll(client, "V\n");
  EXPECT_EQ(readStream(client, 6).data, "did:V\n");
}

TEST_F(ControlListenerTest, TcpInheritedListeningSocketWorksLikeABoundOne) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  address_ = *parseAddressUri("tcp:127.0.0.1:22222", Transport::kTcp).address;
  handler_ = std::make_unique<TestHandler>(base_);
  std::string error;
  listener_ = ControlListener::adopt(base_, address_, fd, handler_.get(), error);
  ASSERT_NE(listener_, nullptr) << error;
  const int client = streamClient();
  sendAll(client, "V\nV\n");
  EXPECT_EQ(readStream(client, 12).data, "did:V\ndid:V\n");
}

// 512 idle connections (an attacker's, or leaked ones) used to lock every
// other client out: now the connection idle the longest makes room.
TEST_F(ControlListenerTest, AtTheConnectionLimitTheLongestIdleClientMakesRoom) {
  // The production limit, if this process may hold both ends of it.
  ControlListenerOptions options;
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < 1200 && files.rlim_max >= 1200) {
    files.rlim_cur = 1200;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  if (files.rlim_cur < 1200) options.max_connections = (files.rlim_cur - 100) / 2;
  const size_t limit = options.max_connections;
  for (const char* transport : {"cunix:", "unix:"}) {
    SCOPED_TRACE(transport);
    for (int fd : client_fds_) close(fd);
    client_fds_.clear();
    listener_.reset();
    listen(transport + dir_ + "/full.sock", options);
    std::vector<int> idle;
    for (size_t i = 0; i < limit; ++i) {
      idle.push_back(streamClient());  // connect, send nothing
      if (i == 0) {
        ASSERT_TRUE(pumpUntil([&] { return listener_->counters().connections == 1; }));
      }
    }
    ASSERT_TRUE(pumpUntil([&] { return listener_->counters().connections == limit; }, 10000));
    const int late = streamClient();
    sendAll(late, "V\n");
    EXPECT_EQ(readStream(late, 6).data, "did:V\n");
    EXPECT_EQ(listener_->counters().connections_evicted, 1u);
    EXPECT_TRUE(readStream(idle.front(), 1, 2000).eof) << "the oldest idle connection made room";
    // The others are still open: a command on the newest is answered.
    sendAll(idle.back(), "V\n");
    EXPECT_EQ(readStream(idle.back(), 6).data, "did:V\n");
  }
}

TEST_F(ControlListenerTest, ConnectionLimitMakesNewClientsWaitWhileEveryConnectionIsBusy) {
  ControlListenerOptions options;
  options.max_connections = 1;
  listen("cunix:" + dir_ + "/c.sock", options);
  handler_->mode = TestHandler::Mode::kHold;
  const int first = streamClient();
  sendAll(first, "D call f\n");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 1; }));
  const int second = streamClient();  // sits in the backlog: the first is busy
  sendAll(second, "X\n");
  EXPECT_EQ(readStream(second, 1, 100).data, "");
  EXPECT_EQ(listener_->counters().connections_evicted, 0u);
  handler_->answer(0);  // the first gets its answer, then makes room
  const StreamRead r = readStream(first, 100, 2000);
  EXPECT_EQ(r.data, "did:D call f\n");
  EXPECT_TRUE(r.eof);
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 2; }));
  handler_->answer(1);
  EXPECT_EQ(readStream(second, 6).data, "did:X\n");
  EXPECT_EQ(listener_->counters().connections_evicted, 1u);
}

TEST_F(ControlListenerTest, CunixIdleConnectionIsClosedAfterTheIdleTimeoutButNotWhileACommandIsInFlight) {
  ControlListenerOptions options;
  options.idle_timeout_ms = 150;
  listen("cunix:" + dir_ + "/idle.sock", options);
  handler_->mode = TestHandler::Mode::kHold;
  const int busy = streamClient();
  sendAll(busy, "D call f\n");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 1; }));
  const int quiet = streamClient();
  sendAll(quiet, "V\n");
  ASSERT_TRUE(pumpUntil([&] { return handler_->held.size() == 2; }));
  handler_->answer(1);
  EXPECT_EQ(readStream(quiet, 6).data, "did:V\n");
  const StreamRead closed = readStream(quiet, 100, 3000);
  EXPECT_TRUE(closed.eof);
  EXPECT_EQ(closed.data, "");
  EXPECT_EQ(listener_->counters().idle_timeouts, 1u);
  // The one waiting for its answer is not idle, however long it waits.
  pumpFor(400);
  handler_->answer(0);
  EXPECT_EQ(readStream(busy, 13).data, "did:D call f\n");
  EXPECT_EQ(listener_->counters().idle_timeouts, 1u);
}

// --- steady state ---------------------------------------------------------

TEST_F(ControlListenerTest, SteadyUdpLoadAllocatesNothingPerCommand) {
  listen("udp:127.0.0.1:0");
  handler_->mode = TestHandler::Mode::kFixed;
  const int client = udpClient(AF_INET);
  char reply[256];
  auto roundTrip = [&](int i) {
    const std::string command = std::to_string(100000 + i) + "_cookie U call-id-long 192.0.2.1 10000 ftag1";
    sendDatagram(client, command);
    ASSERT_TRUE(pumpUntil([&] { return recv(client, reply, sizeof reply, MSG_DONTWAIT) > 0; }));
  };
  for (int i = 0; i < 50; ++i) roundTrip(i);  // the pool and buffers grow here
  count_allocations_ = true;
  g_allocations = 0;
  for (int i = 50; i < 250; ++i) roundTrip(i);
  count_allocations_ = false;
  EXPECT_EQ(g_allocations.load(), 0u);
  EXPECT_EQ(handler_->commands, 250u);
}

TEST_F(ControlListenerTest, SteadyUnixAndCunixLoadAllocatesNothingPerCommand) {
  for (const char* transport : {"unix:", "cunix:"}) {
    SCOPED_TRACE(transport);
    listen(transport + dir_ + "/steady.sock");
    handler_->mode = TestHandler::Mode::kFixed;
    const bool one_shot = std::string(transport) == "unix:";
    int persistent = one_shot ? -1 : streamClient();
    char reply[256];
    auto roundTrip = [&] {
      const int fd = one_shot ? streamClient() : persistent;
      sendAll(fd, "U call-id-long 192.0.2.1 10000 ftag1\n");
      ASSERT_TRUE(pumpUntil([&] { return recv(fd, reply, sizeof reply, MSG_DONTWAIT) > 0; }));
      if (one_shot) {
        close(fd);
        client_fds_.pop_back();
      }
    };
    for (int i = 0; i < 20; ++i) roundTrip();
    count_allocations_ = true;
    g_allocations = 0;
    for (int i = 0; i < 100; ++i) roundTrip();
    count_allocations_ = false;
    EXPECT_EQ(g_allocations.load(), 0u);
    EXPECT_EQ(handler_->commands, 120u);
  }
}

}  // namespace
}  // namespace rtpc
