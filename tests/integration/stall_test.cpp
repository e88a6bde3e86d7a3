// A stall of the worker is not a relay failure (issue 10, section 4). The
// real daemon (supervisor + worker) in front of two relays carries a closed
// loop of 32 commands in flight from rtpp_loadgen, which resends like
// Kamailio's rtpproxy module (the same datagram every second, five times).
// The worker is stopped for 3 s (SIGSTOP, as a busy host or a slow disk would
// stop it) and continued: every command still gets a good answer, no relay
// goes offline, and the worker logs one WORKER_STALL. Also over unix and
// cunix members, and as a busy host would stop it: 8 stops of 400 ms under
// health timers of a few hundred ms. Before the fix each of these answered
// some 120,000-290,000 commands with E997/E999 and took both relays offline.
//
// Runs with the relay double, and with real rtpproxy relays when
// RTPC_RTPPROXY names an rtpproxy binary (skipped, saying so, otherwise).

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/test_support.h"

namespace rtpc::testing {
namespace {

std::string daemonBin() { return envOr("RTP_CLUSTER_BIN", "supervisor/rtp_cluster"); }
std::string loadgenBin() { return envOr("RTPP_LOADGEN", "tests/tools/rtpp_loadgen"); }

size_t countOf(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The value of `key=` in a `RESULT ...` line, or -1.
long long resultValue(const std::string& out, const std::string& key) {
  const size_t line = out.find("RESULT ");
  if (line == std::string::npos) return -1;
  const size_t at = out.find(" " + key + "=", line);
  if (at == std::string::npos) return -1;
  return std::atoll(out.c_str() + at + key.size() + 2);
}

// The only child of `parent` (the worker of a one-cluster daemon); 0 if none.
pid_t onlyChild(pid_t parent) {
  const std::string path = "/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children";
  std::istringstream in(readFile(path));
  pid_t pid = 0;
  in >> pid;
  return pid;
}

char processState(pid_t pid) {
  const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '?' : stat[paren + 2];
}

// A real rtpproxy on a udp control socket of its own.
class Rtpproxy {
 public:
  ~Rtpproxy() { process_.stop(SIGKILL); }
  bool start(const std::string& bin, const TempDir& dir, const std::string& name, int min_port) {
    port_ = freeLoopbackPort(SOCK_DGRAM);
    const std::vector<std::string> args = {bin, "-f", "-F", "-s", "udp:127.0.0.1:" + std::to_string(port_), "-l",
                                           "127.0.0.1", "-m", std::to_string(min_port), "-M",
                                           std::to_string(min_port + 3999), "-p", dir.file(name + ".pid"),
                                           "-d", "ERR"};
    // rtpproxy prints nothing when it is ready: start it, then ask it V.
    process_.start(args, "\x01never", /*merge_stderr=*/true, milliseconds(200));
    const SocketAddress addr{Transport::kUdp, "127.0.0.1", port_, ""};
    return eventually([&] {
      ControlClient c(addr);
      return c.command("V", 200) == "20040107";
    });
  }
  std::string hostPort() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  ChildProcess process_;
  uint16_t port_ = 0;
};

std::string memberXml(const std::string& name, const std::string& address, const std::string& protocol = "udp") {
  return "    <rtpproxy><name>" + name + "</name><protocol>" + protocol + "</protocol><address>" + address +
         "</address><weight>100</weight><capacity>100000</capacity><status>ACTIVE</status></rtpproxy>\n";
}

// Default health timers (command timeout 800 ms, 3 failures take a member
// offline): before the fix, the commands in flight across the stall time out
// together and take both relays offline.
std::string configXml(uint16_t port, const std::string& members, const std::string& tuning) {
  return "<rtp_cluster_config>\n  <rtp_cluster>\n    <name>c1</name><protocol>udp</protocol><address>127.0.0.1:" +
         std::to_string(port) + "</address>\n" + tuning + members + "  </rtp_cluster>\n</rtp_cluster_config>\n";
}

// When the worker is stopped: each stop lasts `stop`, the next comes `gap` later.
struct Stops {
  int count = 1;
  milliseconds stop{3000};
  milliseconds gap{0};
};

// Starts the daemon over `members`, runs the load with one 3 s stop of the
// worker in it, and checks what the clients and the log saw.
void stallUnderLoad(const TempDir& dir, const std::string& members, const Stops& stops = {},
                    const std::string& tuning = "") {
  const uint16_t port = freeLoopbackPort(SOCK_DGRAM);
  const std::string config = dir.file("rtp_cluster.xml");
  const std::string log = dir.file("rtp_cluster.log");
  {
    std::ofstream out(config);
    out << configXml(port, members, tuning);
  }
  // In the foreground the daemon logs to stderr: into the file, so that
  // nothing has to read a pipe while the test stops the worker.
  ChildProcess daemon;
  ASSERT_TRUE(daemon.start({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>" + log, daemonBin(), "-f", "-c", config, "-P",
                            dir.file("rtp_cluster.pid"), "-s", dir.file("admin.sock")},
                           "READY pid="))
      << readFile(log);
  ASSERT_TRUE(eventually([&] { return countOf(readFile(log), "MEMBER_ONLINE") >= 2; })) << readFile(log);
  const pid_t worker = onlyChild(daemon.pid());
  ASSERT_GT(worker, 0);

  std::atomic<bool> stopped_seen{false};
  std::thread stall([&] {
    std::this_thread::sleep_for(milliseconds(2500));
    for (int i = 0; i < stops.count; ++i) {
      kill(worker, SIGSTOP);
      std::this_thread::sleep_for(stops.stop / 2);
      if (processState(worker) == 'T') stopped_seen = true;
      std::this_thread::sleep_for(stops.stop - stops.stop / 2);
      kill(worker, SIGCONT);
      std::this_thread::sleep_for(stops.gap);
    }
  });
  ChildProcess load;
  const bool finished = load.start({loadgenBin(), "-t", "udp:127.0.0.1:" + std::to_string(port), "-w", "32", "-d",
                                    "9", "--resend-ms", "1000", "--tries", "5"},
                                   "RESULT ", /*merge_stderr=*/true, milliseconds(60000));
  stall.join();
  load.readUntil("resends=", milliseconds(2000));
  const std::string out = load.output();
  ASSERT_TRUE(finished) << out;
  EXPECT_TRUE(stopped_seen.load()) << "the worker was stopped";

  EXPECT_EQ(resultValue(out, "errors"), 0) << "no client got an error answer\n" << out;
  EXPECT_EQ(resultValue(out, "timeouts"), 0) << "no command went unanswered after 5 tries\n" << out;
  EXPECT_GT(resultValue(out, "cmds"), 1000) << out;
  if (stops.stop >= milliseconds(1000)) {
    EXPECT_GT(resultValue(out, "resends"), 0) << "the stall made clients resend\n" << out;
  }

  // Let a late verdict show in the log before reading it.
  std::this_thread::sleep_for(milliseconds(1500));
  const std::string text = readFile(log);
  EXPECT_EQ(countOf(text, "MEMBER_OFFLINE"), 0u) << text;
  EXPECT_EQ(countOf(text, "CLUSTER_ERROR"), 0u) << text;
  EXPECT_GE(countOf(text, "WORKER_STALL"), 1u) << "the stall was seen for what it is\n" << text;
  EXPECT_EQ(onlyChild(daemon.pid()), worker) << "the worker was not replaced";
  daemon.stop(SIGTERM, milliseconds(5000));
}

TEST(Stall, AThreeSecondStopOfTheWorkerUnderLoadFailsNoCommandAndTakesNoRelayOffline) {
  TempDir dir;
  TestRelay r1, r2;
  // Answers after 10 ms, as a relay across a network would: the worker then
  // waits in epoll_wait most of the time, where a SIGSTOP usually finds it
  // (after SIGCONT, epoll_wait returns EINTR and libevent runs the expired
  // timers before it looks at any socket).
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm"), {"--delay-ms", "10"}));
  ASSERT_TRUE(r2.start("udp:127.0.0.1:0", dir.file("r2.adm"), {"--delay-ms", "10"}));
  stallUnderLoad(dir, memberXml("r1", r1.address().display()) + memberXml("r2", r2.address().display()));
}

// The same over the stream links: a unix member (a connection per command)
// and a cunix one (one connection; a timeout there would reset it and fail
// every command queued behind).
TEST(Stall, StreamMembersToo) {
  TempDir dir;
  TestRelay r1, r2;
  ASSERT_TRUE(r1.start("unix:" + dir.file("r1.sock"), dir.file("r1.adm"), {"--delay-ms", "10"}));
  ASSERT_TRUE(r2.start("cunix:" + dir.file("r2.sock"), dir.file("r2.adm"), {"--delay-ms", "10"}));
  stallUnderLoad(dir, memberXml("r1", dir.file("r1.sock"), "unix") + memberXml("r2", dir.file("r2.sock"), "cunix"));
}

// A busy host: many short stops, with health timers that react in a few
// hundred ms (a 300 ms command timeout, a heartbeat every 400 ms, 2 failures
// take a member offline).
TEST(Stall, ManyShortStopsWithFastHealthTimers) {
  TempDir dir;
  TestRelay r1, r2;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm"), {"--delay-ms", "10"}));
  ASSERT_TRUE(r2.start("udp:127.0.0.1:0", dir.file("r2.adm"), {"--delay-ms", "10"}));
  const std::string tuning =
      "    <tuning><heartbeat_interval>400</heartbeat_interval><command_timeout>300</command_timeout>"
      "<heartbeat_failures>2</heartbeat_failures><offline_probe_interval>200</offline_probe_interval></tuning>\n";
  stallUnderLoad(dir, memberXml("r1", r1.address().display()) + memberXml("r2", r2.address().display()),
                 Stops{8, milliseconds(400), milliseconds(300)}, tuning);
}

TEST(Stall, WithRealRtpproxyRelays) {
  const char* bin = std::getenv("RTPC_RTPPROXY");
  if (bin == nullptr || *bin == '\0') {
    GTEST_SKIP() << "RTPC_RTPPROXY is not set: no real rtpproxy to run against";
  }
  TempDir dir;
  Rtpproxy r1, r2;
  ASSERT_TRUE(r1.start(bin, dir, "rtpproxy1", 20000));
  ASSERT_TRUE(r2.start(bin, dir, "rtpproxy2", 24000));
  stallUnderLoad(dir, memberXml("r1", r1.hostPort()) + memberXml("r2", r2.hostPort()));
}

}  // namespace
}  // namespace rtpc::testing
