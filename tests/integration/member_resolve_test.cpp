// Member host names: resolved on the worker's loop without blocking it,
// retried until they resolve, logged with the resolver's error, and never
// taken for a relay that failed its probes (reason=unresolved, not
// probe_timeout). The resolver reads a hosts file and a resolv.conf of the
// test's own (the name server it names answers nothing).

#include <event2/event.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/test_loop.h"
#include "tests/integration/test_support.h"
#include "worker/cluster_worker.h"
#include "worker/member_resolver.h"

namespace rtpc {
namespace {

using namespace rtpc::testing;

// Captures the log lines of one test.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096)), previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const {
    std::string all;
    for (const std::string& line : sink_->last_formatted()) all += line;
    return all;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

void writeText(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

// A resolv.conf whose name server is a UDP socket that never answers, with a
// short timeout: every lookup not in the hosts file fails, quickly.
struct ResolverSetup {
  explicit ResolverSetup(const TempDir& dir) {
    silent = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(silent, reinterpret_cast<sockaddr*>(&in), sizeof in);
    socklen_t length = sizeof in;
    getsockname(silent, reinterpret_cast<sockaddr*>(&in), &length);
    files.resolv_conf = dir.file("resolv.conf");
    files.hosts = dir.file("hosts");
    writeText(files.resolv_conf, "nameserver 127.0.0.1:" + std::to_string(ntohs(in.sin_port)) +
                                     "\noptions timeout:0.2 attempts:1\n");
    writeText(files.hosts, "127.0.0.1 localhost\n");
  }
  ~ResolverSetup() { close(silent); }
  int silent = -1;
  ResolverFiles files;
};

ClusterConfig clusterWith(const SocketAddress& member_address) {
  ClusterConfig c;
  c.name = "c1";
  c.control = SocketAddress{Transport::kUdp, "127.0.0.1", 0, ""};
  c.tuning.heartbeat_interval_ms = 200;
  c.tuning.command_timeout_ms = 150;
  c.tuning.offline_probe_interval_ms = 200;
  c.tuning.session_table_size = 4096;
  MemberConfig m;
  m.name = "r1";
  m.address = member_address;
  m.weight = 100;
  m.capacity = 100;
  c.members.push_back(m);
  return c;
}

bool memberOnline(const ClusterWorker& w) {
  const auto members = w.members();
  return !members.empty() && members.front().online;
}

TEST(MemberResolve, RetryDelayDoublesUpToTheCap) {
  EXPECT_EQ(resolveRetryDelayMs(1, 1000, 60000), 1000u);
  EXPECT_EQ(resolveRetryDelayMs(2, 1000, 60000), 2000u);
  EXPECT_EQ(resolveRetryDelayMs(3, 1000, 60000), 4000u);
  EXPECT_EQ(resolveRetryDelayMs(7, 1000, 60000), 60000u);
  EXPECT_EQ(resolveRetryDelayMs(1000, 1000, 60000), 60000u);
}

TEST(MemberResolve, ANameThatDoesNotResolveAtStartComesOnlineOnceItDoes) {
  TempDir dir;
  ResolverSetup resolver(dir);
  TestRelay relay;
  ASSERT_TRUE(relay.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  LogCapture log;
  TestLoop loop;
  // How long one pass of the loop takes at most: a blocking lookup shows here.
  struct Gap {
    std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
    std::chrono::milliseconds longest{0};
  } gap;
  event* ticker = event_new(
      loop.base(), -1, EV_PERSIST,
      [](evutil_socket_t, short, void* arg) {
        auto* g = static_cast<Gap*>(arg);
        const auto now = std::chrono::steady_clock::now();
        g->longest = std::max(g->longest, std::chrono::duration_cast<std::chrono::milliseconds>(now - g->last));
        g->last = now;
      },
      &gap);
  const timeval tv{0, 10000};
  event_add(ticker, &tv);

  ClusterWorker::Options options;
  options.config = clusterWith(SocketAddress{Transport::kUdp, "relay-one.test", relay.address().port, ""});
  options.random_seed = 7;
  options.resolver_files = resolver.files;
  options.name_watch.first_retry_ms = 100;
  options.name_watch.max_retry_ms = 400;
  std::string error;
  auto worker = ClusterWorker::create(loop.base(), options, error);
  ASSERT_TRUE(worker) << error;

  // Unresolved: retried (several attempts), offline for that reason, never probed.
  gap.last = std::chrono::steady_clock::now();  // measured while the loop runs
  ASSERT_TRUE(loop.runUntil([&] { return log.text().find("attempt=3 ") != std::string::npos; }, milliseconds(10000)))
      << log.text();
  EXPECT_FALSE(memberOnline(*worker));
  EXPECT_EQ(worker->members().front().commands, 0u);
  const std::string before = log.text();
  EXPECT_NE(before.find("MEMBER_RESOLVE_FAILED cluster=c1 member=r1 host=\"relay-one.test\" error="), std::string::npos)
      << before;
  EXPECT_NE(before.find("MEMBER_OFFLINE cluster=c1 member=r1 reason=unresolved"), std::string::npos) << before;
  EXPECT_EQ(before.find("probe_timeout"), std::string::npos) << before;

  // The name appears: the member resolves and passes its probes.
  writeText(resolver.files.hosts, "127.0.0.1 localhost\n127.0.0.1 relay-one.test\n");
  gap.last = std::chrono::steady_clock::now();
  ASSERT_TRUE(loop.runUntil([&] { return memberOnline(*worker); }, milliseconds(10000))) << log.text();
  EXPECT_NE(log.text().find("MEMBER_RESOLVED cluster=c1 member=r1 host=\"relay-one.test\" address=127.0.0.1:" +
                            std::to_string(relay.address().port)),
            std::string::npos)
      << log.text();
  // A lookup on the loop would hold it for the resolver's timeout (seconds);
  // the margin is for a loaded machine.
  EXPECT_LT(gap.longest, std::chrono::milliseconds(1500)) << "the loop was blocked";
  worker.reset();
  event_free(ticker);
}

// cmd_out_address may be a host name too: resolved the same way, and the
// member is probed once both its names resolved.
TEST(MemberResolve, ACmdOutAddressNameIsResolvedWithoutBlockingToo) {
  TempDir dir;
  ResolverSetup resolver(dir);
  TestRelay relay;
  ASSERT_TRUE(relay.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  LogCapture log;
  TestLoop loop;
  ClusterWorker::Options options;
  options.config = clusterWith(relay.address());
  options.config.members.front().cmd_out_address = "source.test";
  options.resolver_files = resolver.files;
  options.name_watch.first_retry_ms = 100;
  options.name_watch.max_retry_ms = 200;
  std::string error;
  auto worker = ClusterWorker::create(loop.base(), options, error);
  ASSERT_TRUE(worker) << error;
  ASSERT_TRUE(loop.runUntil([&] { return log.text().find("attempt=2 ") != std::string::npos; }, milliseconds(10000)))
      << log.text();
  EXPECT_NE(log.text().find("MEMBER_RESOLVE_FAILED cluster=c1 member=r1 host=\"source.test\""), std::string::npos);
  EXPECT_FALSE(memberOnline(*worker));
  writeText(resolver.files.hosts, "127.0.0.1 source.test\n");
  ASSERT_TRUE(loop.runUntil([&] { return memberOnline(*worker); }, milliseconds(10000))) << log.text();
  EXPECT_EQ(log.text().find("probe_timeout"), std::string::npos) << log.text();
}

TEST(MemberResolve, ANameThatResolvesToTheClustersOwnControlSocketIsNotUsed) {
  TempDir dir;
  ResolverSetup resolver(dir);
  writeText(resolver.files.hosts, "127.0.0.1 self.test\n");
  const uint16_t port = freeLoopbackPort(SOCK_DGRAM);
  LogCapture log;
  TestLoop loop;
  ClusterWorker::Options options;
  options.config = clusterWith(SocketAddress{Transport::kUdp, "self.test", port, ""});
  options.config.control.port = port;
  options.resolver_files = resolver.files;
  options.name_watch.first_retry_ms = 100;
  options.name_watch.max_retry_ms = 200;
  std::string error;
  auto worker = ClusterWorker::create(loop.base(), options, error);
  ASSERT_TRUE(worker) << error;
  ASSERT_TRUE(loop.runUntil([&] { return log.text().find("attempt=2 ") != std::string::npos; }, milliseconds(10000)))
      << log.text();
  EXPECT_NE(log.text().find("MEMBER_RESOLVE_FAILED cluster=c1 member=r1 host=\"self.test\" error=\"self loop: resolves "
                            "to the cluster's own control socket udp:127.0.0.1:" +
                            std::to_string(port)),
            std::string::npos)
      << log.text();
  EXPECT_FALSE(memberOnline(*worker));
  EXPECT_EQ(worker->members().front().commands, 0u);
  EXPECT_EQ(worker->counters().commands, 0u) << "nothing looped back";
}

}  // namespace
}  // namespace rtpc
