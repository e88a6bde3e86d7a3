// The rtp_cluster daemon end to end: the real binaries (rtp_cluster,
// rtp_cluster_client, rtpp_test_relay) on loopback. Admin screens, admin
// round trips, reload, worker fault isolation (kill -9 while both clusters
// carry traffic), single instance, clean shutdown, daemon mode.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "shared/admin_command.h"
#include "shared/shm_layout.h"
#include "supervisor/daemon.h"
#include "tests/integration/test_support.h"

namespace rtpc::testing {
namespace {

std::string daemonBin() { return envOr("RTP_CLUSTER_BIN", "supervisor/rtp_cluster"); }
std::string clientBin() { return envOr("RTP_CLUSTER_CLIENT", "cli/rtp_cluster_client"); }

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

// A member line of the config.
std::string memberXml(const std::string& name, const std::string& protocol, const std::string& address,
                      const std::string& status = "ACTIVE", const std::string& extra = "") {
  return "    <rtpproxy><name>" + name + "</name><protocol>" + protocol + "</protocol><address>" + address +
         "</address><weight>100</weight><capacity>100</capacity><status>" + status + "</status>" + extra +
         "</rtpproxy>\n";
}

// Fast health timers so that online/offline changes show within a second.
const char* kTuning =
    "    <tuning><heartbeat_interval>200</heartbeat_interval><command_timeout>150</command_timeout>"
    "<heartbeat_failures>2</heartbeat_failures><offline_probe_interval>200</offline_probe_interval>"
    "<session_table_size>65536</session_table_size></tuning>\n";

std::string clusterXml(const std::string& name, const std::string& protocol, const std::string& address,
                       const std::string& members) {
  return "  <rtp_cluster>\n    <name>" + name + "</name><protocol>" + protocol + "</protocol><address>" + address +
         "</address>\n" + kTuning + members + "  </rtp_cluster>\n";
}

std::string configXml(const std::string& clusters) {
  return "<rtp_cluster_config>\n" + clusters + "</rtp_cluster_config>\n";
}

std::string hostPort(const SocketAddress& a) { return a.display(); }


// The daemon in the foreground, in a temp dir of its own.
class DaemonUnderTest {
 public:
  explicit DaemonUnderTest(const TempDir& dir)
      : config_(dir.file("rtp_cluster.xml")),
        pid_file_(dir.file("rtp_cluster.pid")),
        admin_(dir.file("admin.sock")),
        log_(dir.file("rtp_cluster.log")) {}
  // SIGTERM, so that even a failed test leaves no shared-memory segment.
  ~DaemonUnderTest() { process_.stop(SIGTERM, milliseconds(5000)); }
  DaemonUnderTest(const DaemonUnderTest&) = delete;
  DaemonUnderTest& operator=(const DaemonUnderTest&) = delete;

  bool start(const std::string& xml) {
    writeFile(config_, xml);
    return process_.start({daemonBin(), "-f", "-c", config_, "-P", pid_file_, "-s", admin_, "-L", log_,
                           "--restart-backoff", "20:200"},
                          "READY pid=");
  }
  void writeConfig(const std::string& xml) const { writeFile(config_, xml); }

  RunResult client(const std::string& command) const {
    std::vector<std::string> args = {clientBin(), "-s", admin_};
    std::istringstream words(command);
    for (std::string w; words >> w;) args.push_back(w);
    return run(args);
  }
  // The answer text of a command that must succeed.
  std::string ok(const std::string& command) const {
    RunResult r = client(command);
    EXPECT_EQ(r.status, 0) << command << " -> " << r.out << r.err;
    return r.out;
  }

  // The worker pid of cluster #index from `workers`; 0 when none.
  pid_t workerPid(size_t index) const {
    const std::string text = client("workers").out;
    const std::string head = "Worker: #" + std::to_string(index) + "\n";
    const size_t at = text.find(head);
    if (at == std::string::npos) return 0;
    const size_t pid_at = text.find("    pid = ", at);
    if (pid_at == std::string::npos) return 0;
    return static_cast<pid_t>(std::atoi(text.c_str() + pid_at + 10));
  }

  // SIGKILLs the worker of cluster #index; the pid of the worker the
  // supervisor starts in its place, or 0 when none came.
  pid_t killWorker(size_t index) const {
    const pid_t victim = workerPid(index);
    if (victim <= 0) return 0;
    kill(victim, SIGKILL);
    pid_t next = 0;
    const bool restarted = eventually([&] {
      next = workerPid(index);
      return next > 0 && next != victim;
    });
    return restarted ? next : 0;
  }

  const ChildProcess& process() const { return process_; }
  ChildProcess& process() { return process_; }
  const std::string& pidFile() const { return pid_file_; }
  const std::string& adminPath() const { return admin_; }
  const std::string& configPath() const { return config_; }
  std::string shmPath() const { return "/dev/shm/" + Daemon::shmNameFor(pid_file_); }

 private:
  std::string config_;
  std::string pid_file_;
  std::string admin_;
  std::string log_;
  ChildProcess process_;
};

// Replaces the round-trip time (it varies) so whole screens compare exactly.
std::string maskDelays(const std::string& text) {
  static const std::regex delay("average rtpc delay = [0-9.]+ sec");
  return std::regex_replace(text, delay, "average rtpc delay = X sec");
}

// The heartbeat's session count is smoothed: in one member's block the
// active sessions and utilization are masked too.
std::string maskMember(const std::string& text, const std::string& member) {
  const size_t from = text.find("        name = " + member + "\n");
  if (from == std::string::npos) return text;
  const size_t to = text.find("status = ", from);
  static const std::regex sessions("active sessions = [0-9]+\n");
  static const std::regex utilisation("capacity utilization = [0-9.]+%");
  std::string block = text.substr(from, to - from);
  block = std::regex_replace(block, sessions, "active sessions = N\n");
  block = std::regex_replace(block, utilisation, "capacity utilization = X%");
  return text.substr(0, from) + block + text.substr(to);
}

bool allOnline(const DaemonUnderTest& d, const std::string& cluster, int online) {
  const std::string text = d.client("ls").out;
  const size_t at = text.find("name = " + cluster + "\n");
  if (at == std::string::npos) return false;
  const size_t line = text.find("online members = ", at);
  return line != std::string::npos && std::atoi(text.c_str() + line + 17) == online;
}

// ---------------------------------------------------------------------------

TEST(Daemon, LsScreensShowEveryStateAndTransportExactly) {
  TempDir dir;
  TestRelay r1, r2, r3;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  ASSERT_TRUE(r2.start("udp6:[::1]:0", dir.file("r2.adm")));
  ASSERT_TRUE(r3.start("unix:" + dir.file("r3.sock"), dir.file("r3.adm"), {"-l", "127.0.0.3"}));
  const uint16_t dead = freeLoopbackPort(SOCK_DGRAM);
  uint16_t dead2 = freeLoopbackPort(SOCK_DGRAM);
  while (dead2 == dead) dead2 = freeLoopbackPort(SOCK_DGRAM);
  const std::string members =
      memberXml("r1", "udp", hostPort(r1.address()), "ACTIVE", "<wan_address>192.0.2.10</wan_address>") +
      memberXml("r2", "udp6", hostPort(r2.address()), "SUSPENDED") + memberXml("r3", "unix", dir.file("r3.sock")) +
      memberXml("r4", "udp", "127.0.0.1:" + std::to_string(dead)) +
      memberXml("r5", "udp", "127.0.0.1:" + std::to_string(dead2), "SUSPENDED");
  const uint16_t control = freeLoopbackPort(SOCK_DGRAM);
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "udp", "127.0.0.1:" + std::to_string(control), members))));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 3); }));

  // A call bound to r3 keeps it DRAINING after `delete`: made while r1 is
  // paused, so that r3 is the only member taking new sessions.
  const SocketAddress control_address{Transport::kUdp, "127.0.0.1", control, ""};
  ControlClient cluster(control_address);
  EXPECT_EQ(d.ok("modify c1 pause r1"), "OK\n");
  ASSERT_NE(cluster.command("U held 192.0.2.1 4000 ft").find("127.0.0.3"), std::string::npos);
  EXPECT_EQ(d.ok("modify c1 resume r1"), "OK\n");
  EXPECT_EQ(d.ok("modify c1 delete r3"), "OK\n");

  EXPECT_EQ(d.ok("ls"), "Cluster: #0\n"
                        "    name = c1\n"
                        "    address = 127.0.0.1:" + std::to_string(control) + "\n"
                        "    online members = 3 (1 active, 1 suspended, 1 draining)\n"
                        "    offline members = 2\n"
                        "OK\n");
  EXPECT_EQ(maskMember(maskDelays(d.ok("ls c1")), "r3"),
            "Online members of the cluster #0:\n"
            "    RTPproxy: #0\n"
            "        name = r1\n"
            "        address = " + hostPort(r1.address()) + "\n"
            "        wan_address = 192.0.2.10\n"
            "        weight = 100\n"
            "        capacity = 100\n"
            "        state = online\n"
            "        active sessions = 0\n"
            "        capacity utilization = 0.000000%\n"
            "        average rtpc delay = X sec\n"
            "        status = ACTIVE\n"
            "\n"
            "    RTPproxy: #1\n"
            "        name = r2\n"
            "        address = " + hostPort(r2.address()) + "\n"
            "        weight = 100\n"
            "        capacity = 100\n"
            "        state = online\n"
            "        active sessions = 0\n"
            "        capacity utilization = 0.000000%\n"
            "        average rtpc delay = X sec\n"
            "        status = SUSPENDED\n"
            "\n"
            "    RTPproxy: #2\n"
            "        name = r3\n"
            "        address = " + dir.file("r3.sock") + "\n"
            "        weight = 100\n"
            "        capacity = 100\n"
            "        state = online\n"
            "        active sessions = N\n"
            "        capacity utilization = X%\n"
            "        average rtpc delay = X sec\n"
            "        status = DRAINING\n"
            "\n"
            "Offline members of the cluster #0:\n"
            "    RTPproxy: #0\n"
            "        name = r4\n"
            "        address = 127.0.0.1:" + std::to_string(dead) + "\n"
            "        weight = 100\n"
            "        capacity = 100\n"
            "        state = offline\n"
            "\n"
            "    RTPproxy: #1\n"
            "        name = r5\n"
            "        address = 127.0.0.1:" + std::to_string(dead2) + "\n"
            "        weight = 100\n"
            "        capacity = 100\n"
            "        state = offline\n"
            "OK\n");
  // The offline members' admin status shows in JSON.
  const std::string json = d.ok("ls c1 json");
  EXPECT_NE(json.find("\"name\":\"r5\""), std::string::npos);
  EXPECT_NE(json.find("\"status\":\"SUSPENDED\""), std::string::npos);
  EXPECT_NE(json.find("\"state\":\"offline\""), std::string::npos);
  // The draining member goes once its call ends.
  EXPECT_EQ(cluster.command("D held ft"), "0");
  EXPECT_TRUE(eventually([&] { return d.client("ls c1").out.find("name = r3") == std::string::npos; }));
}

TEST(Daemon, ModifyRoundTripsThroughTheClientAndSurviveAWorkerCrash) {
  TempDir dir;
  TestRelay r1, r2;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  ASSERT_TRUE(r2.start("udp:127.0.0.1:0", dir.file("r2.adm")));
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                           memberXml("r1", "udp", hostPort(r1.address()))))));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 1); }));

  EXPECT_EQ(d.ok("modify c1 add name=r2,protocol=udp,address=" + hostPort(r2.address()) + ",capacity=10,weight=5"),
            "OK\n");
  EXPECT_EQ(d.ok("modify c1 pause r1"), "OK\n");
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 2); }));
  EXPECT_NE(d.ok("ls").find("online members = 2 (1 active, 1 suspended, 0 draining)"), std::string::npos);

  RunResult r = d.client("modify c1 add name=r2,protocol=udp,address=127.0.0.1:9,capacity=10,weight=5");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "ERROR: r2: RTPproxy already exists\n");
  r = d.client("modify c1 resume nosuch");
  EXPECT_EQ(r.out, "ERROR: nosuch: RTPproxy not found\n");
  r = d.client("modify nosuch pause r1");
  EXPECT_EQ(r.out, "ERROR: nosuch: cluster not found\n");
  r = d.client("ls nosuch");
  EXPECT_EQ(r.out, "ERROR: nosuch: cluster not found\n");

  // The restarted worker starts from the changed member set, not the file's.
  ASSERT_GT(d.killWorker(0), 0);
  // Until the new worker publishes, ls shows its predecessor's records; then
  // its members are probing for a few ms: wait for the settled state.
  std::string after_restart;
  EXPECT_TRUE(eventually([&] {
    after_restart = d.ok("ls");
    return after_restart.find("online members = 2 (1 active, 1 suspended, 0 draining)") != std::string::npos;
  })) << after_restart;
  EXPECT_NE(d.ok("workers").find("restarts = 1\n"), std::string::npos);

  EXPECT_EQ(d.ok("modify c1 resume r1"), "OK\n");
  EXPECT_EQ(d.ok("modify c1 delete r2"), "OK\n");
  EXPECT_TRUE(eventually([&] { return d.client("ls").out.find("online members = 1 (1 active, 0 suspended, 0 draining)") != std::string::npos; }));
}

// Members added and deleted at run time shift the order of the member set; a
// restarted worker must still give every member the index its calls are bound
// to in the shared table, or it forgets them (and broadcasts every command).
TEST(Daemon, ARestartedWorkerKeepsTheCallsOfMembersAddedAtRunTime) {
  TempDir dir;
  TestRelay r1, r2, r3;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  ASSERT_TRUE(r2.start("udp:127.0.0.1:0", dir.file("r2.adm")));
  ASSERT_TRUE(r3.start("udp:127.0.0.1:0", dir.file("r3.adm")));
  const uint16_t control = freeLoopbackPort(SOCK_DGRAM);
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "udp", "127.0.0.1:" + std::to_string(control),
                                           memberXml("r1", "udp", hostPort(r1.address())) +
                                               memberXml("r2", "udp", hostPort(r2.address()))))));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 2); }));
  // r1 goes (it has no calls: at once) and r3 takes its index.
  EXPECT_EQ(d.ok("modify c1 delete r1"), "OK\n");
  EXPECT_EQ(d.ok("modify c1 add name=r3,protocol=udp,address=" + hostPort(r3.address()) + ",capacity=100,weight=100"),
            "OK\n");
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 2) && d.ok("ls c1").find("name = r1") == std::string::npos; }));

  constexpr int kCalls = 20;
  ControlClient cluster(SocketAddress{Transport::kUdp, "127.0.0.1", control, ""});
  for (int i = 0; i < kCalls; ++i) ASSERT_NE(cluster.command("U kept" + std::to_string(i) + " 192.0.2.1 4000 ft"), "");
  ASSERT_GT(r2.stat("sessions"), 0u);
  ASSERT_GT(r3.stat("sessions"), 0u);

  ASSERT_GT(d.killWorker(0), 0);
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 2); }));

  // Every D goes straight to the call's relay: none is broadcast.
  const uint64_t d_before = r2.stat("cmd_D") + r3.stat("cmd_D");
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(cluster.command("D kept" + std::to_string(i) + " ft"), "0") << i;
  EXPECT_TRUE(eventually([&] { return r2.stat("sessions") + r3.stat("sessions") == 0; }));
  EXPECT_EQ(r2.stat("cmd_D") + r3.stat("cmd_D") - d_before, static_cast<uint64_t>(kCalls));
}

// Everything one connection gets until the server closes it.
std::string unixConversation(const std::string& path, const std::string& text) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof un) == 0 &&
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())) {
    char chunk[4096];
    ssize_t n;
    while (waitReadable(fd, 5000) && (n = read(fd, chunk, sizeof chunk)) > 0) reply.append(chunk, static_cast<size_t>(n));
  }
  close(fd);
  return reply;
}

TEST(Daemon, SeveralCommandsOnOneConnectionAreAnsweredInOrder) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                           memberXml("r1", "udp", hostPort(r1.address()))))));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 1); }));
  const std::string ls = d.ok("ls");
  const std::string all = unixConversation(
      d.adminPath(), "modify c1 pause r1\nbogus\nmodify c1 resume r1\r\nls\nhelp\nquit\nls\n");
  EXPECT_EQ(all, "OK\nERROR: unknown command\nOK\n" + ls + helpText()) << "nothing after quit";

  // A line without its end, longer than the limit: an error, then the connection closes.
  EXPECT_EQ(unixConversation(d.adminPath(), std::string(5000, 'x')), "ERROR: command line is longer than 4096 bytes\n");
  EXPECT_EQ(d.ok("ls"), ls) << "still serving";
}

TEST(Daemon, AStuckWorkerGivesAnErrorWithinASecondAndLsStillAnswers) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                           memberXml("r1", "udp", hostPort(r1.address()))))));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 1); }));
  const pid_t worker = d.workerPid(0);
  ASSERT_GT(worker, 0);
  kill(worker, SIGSTOP);
  const auto t0 = Clock::now();
  const RunResult r = d.client("modify c1 pause r1");
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "ERROR: cluster c1: its worker did not answer within 1000 ms\n");
  EXPECT_GE(took.count(), 900);
  EXPECT_LT(took.count(), 4000);
  EXPECT_NE(d.ok("ls").find("name = c1"), std::string::npos) << "ls does not ask the worker";
  kill(worker, SIGCONT);
  // The pause went through late; the next command finds the worker well.
  EXPECT_EQ(d.ok("modify c1 resume r1"), "OK\n");
  EXPECT_EQ(d.workerPid(0), worker);
}

TEST(Daemon, ReloadAddsRemovesAndChangesClustersAndABadFileChangesNothing) {
  TempDir dir;
  TestRelay r1, r2;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  ASSERT_TRUE(r2.start("udp:127.0.0.1:0", dir.file("r2.adm")));
  const std::string m1 = memberXml("r1", "udp", hostPort(r1.address()));
  const std::string m2 = memberXml("r2", "udp", hostPort(r2.address()));
  const std::string a = clusterXml("a", "unix", dir.file("a.sock"), m1);
  const std::string b = clusterXml("b", "unix", dir.file("b.sock"), m1);
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(a + b)));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "a", 1) && allOnline(d, "b", 1); }));
  const pid_t a_pid = d.workerPid(0);

  // a: a member more (pushed to the running worker); b: removed; c: new.
  const std::string a2 = clusterXml("a", "unix", dir.file("a.sock"), m1 + m2);
  const std::string c = clusterXml("c", "unix", dir.file("c.sock"), m2);
  d.writeConfig(configXml(a2 + c));
  EXPECT_EQ(d.ok("reload"), "Loaded 2 clusters and 3 RTP proxies\nOK\n");
  EXPECT_TRUE(eventually([&] { return allOnline(d, "a", 2) && allOnline(d, "c", 1); }));
  EXPECT_EQ(d.workerPid(0), a_pid) << "a member change does not restart the worker";
  EXPECT_TRUE(eventually([&] { return !exists(dir.file("b.sock")); })) << "removed cluster's socket";
  EXPECT_TRUE(eventually([&] { return d.client("ls").out.find("name = b\n") == std::string::npos; }));
  ControlClient to_c(SocketAddress{Transport::kUnix, {}, 0, dir.file("c.sock")});
  EXPECT_EQ(to_c.command("V"), "20040107");

  // A broken file: the loader's message, and everything keeps running.
  const std::string before = d.ok("ls");
  const std::string workers_before = d.ok("workers");
  d.writeConfig(configXml(a2 + c).replace(configXml(a2 + c).find("<weight>100</weight>"), 20, "<weight>x</weight>"));
  RunResult bad = d.client("reload");
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.out.rfind("ERROR: " + d.configPath() + ":", 0), 0u) << bad.out;
  EXPECT_EQ(std::count(bad.out.begin(), bad.out.end(), '\n'), 1);
  EXPECT_EQ(d.ok("ls"), before);
  // (uptime ticks meanwhile: compare everything else)
  auto withoutUptime = [](std::string text) {
    for (size_t at; (at = text.find("uptime = ")) != std::string::npos;)
      text.erase(at, text.find('\n', at) + 1 - at);
    return text;
  };
  EXPECT_EQ(withoutUptime(d.ok("workers")), withoutUptime(workers_before));

  // SIGHUP reloads too: a control address change restarts the cluster.
  d.writeConfig(configXml(clusterXml("a", "unix", dir.file("a2.sock"), m1 + m2) + c));
  d.process().signal(SIGHUP);
  EXPECT_TRUE(eventually([&] { return exists(dir.file("a2.sock")) && !exists(dir.file("a.sock")); }));
  EXPECT_TRUE(eventually([&] {
    const pid_t now = d.workerPid(0);
    return now > 0 && now != a_pid;
  }));
  ControlClient to_a(SocketAddress{Transport::kUnix, {}, 0, dir.file("a2.sock")});
  EXPECT_TRUE(eventually([&] { return to_a.command("V") == "20040107"; }));
}

TEST(Daemon, ARelayThatDiesShowsOfflineAndComesBackOnline) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                           memberXml("r1", "udp", hostPort(r1.address()))))));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 1); }));
  r1.stop();
  EXPECT_TRUE(eventually([&] { return d.client("ls").out.find("offline members = 1\n") != std::string::npos; }));
  EXPECT_NE(d.ok("ls c1").find("Offline members of the cluster #0:\n    RTPproxy: #0\n        name = r1\n"),
            std::string::npos);
  ASSERT_TRUE(r1.restart());
  EXPECT_TRUE(eventually([&] { return allOnline(d, "c1", 1); }));
}

// Kills cluster A's worker again and again while both clusters carry
// traffic: B never notices, A's commands are answered once its worker is
// back, and A's calls keep going to the relay that has them (the session
// table survives in shared memory) without any broadcast.
TEST(Daemon, KillingOneClustersWorkerNeitherDisturbsTheOtherNorLosesItsCalls) {
  TempDir dir;
  TestRelay ra1, ra2, rb;
  ASSERT_TRUE(ra1.start("udp:127.0.0.1:0", dir.file("ra1.adm"), {"-l", "127.0.0.1"}));
  ASSERT_TRUE(ra2.start("udp:127.0.0.1:0", dir.file("ra2.adm"), {"-l", "127.0.0.2"}));
  ASSERT_TRUE(rb.start("udp:127.0.0.1:0", dir.file("rb.adm")));
  const uint16_t port_a = freeLoopbackPort(SOCK_DGRAM);
  const uint16_t port_b = freeLoopbackPort(SOCK_DGRAM);
  DaemonUnderTest d(dir);
  // Realistic timers (no relay dies here): with kTuning's 150 ms command
  // timeout a loaded host that leaves a relay double or a worker without CPU
  // for 150 ms made B answer E997 (and after two missed heartbeats E999),
  // which has nothing to do with A's worker being killed (reproduced under
  // three CPU hogs: 7 to 40 such answers per run, no datagram lost), and
  // made the L/D checks of A's calls after the kills answer E997. No
  // retransmits to the relays: the exact per-relay L/D counts below would
  // count a retransmitted D twice (seen under load with the default 3).
  std::string cluster_a = clusterXml("A", "udp", "127.0.0.1:" + std::to_string(port_a),
                                     memberXml("a1", "udp", hostPort(ra1.address())) + memberXml("a2", "udp", hostPort(ra2.address())));
  std::string cluster_b = clusterXml("B", "udp", "127.0.0.1:" + std::to_string(port_b), memberXml("b1", "udp", hostPort(rb.address())));
  const std::string realistic =
      "<tuning><heartbeat_interval>4000</heartbeat_interval><command_timeout>3000</command_timeout>"
      "<heartbeat_failures>3</heartbeat_failures><offline_probe_interval>200</offline_probe_interval>"
      "<command_retries>0</command_retries><session_table_size>65536</session_table_size></tuning>";
  const std::string fast = std::string(kTuning).substr(4, std::string(kTuning).size() - 5);
  for (std::string* cluster : {&cluster_a, &cluster_b}) {
    ASSERT_NE(cluster->find(fast), std::string::npos);
    cluster->replace(cluster->find(fast), fast.size(), realistic);
  }
  ASSERT_TRUE(d.start(configXml(cluster_a + cluster_b)));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "A", 2) && allOnline(d, "B", 1); }));

  const SocketAddress addr_a{Transport::kUdp, "127.0.0.1", port_a, ""};
  const SocketAddress addr_b{Transport::kUdp, "127.0.0.1", port_b, ""};

  // Calls on A, and where each went.
  constexpr int kCalls = 20;
  std::map<std::string, std::string> owner;  // call -> "a1"/"a2"
  {
    ControlClient a(addr_a);
    for (int i = 0; i < kCalls; ++i) {
      const std::string call = "kept" + std::to_string(i);
      const std::string reply = a.command("U " + call + " 192.0.2.1 4000 ft" + std::to_string(i));
      ASSERT_NE(reply, "") << call;
      owner[call] = reply.find("127.0.0.2") != std::string::npos ? "a2" : "a1";
    }
  }
  ASSERT_GT(std::count_if(owner.begin(), owner.end(), [](const auto& e) { return e.second == "a2"; }), 0);

  // A command answered even across restarts: same cookie, retransmitted.
  const auto patient = [](ControlClient& c, const std::string& cookie, const std::string& text) {
    const auto deadline = Clock::now() + milliseconds(6000);
    while (Clock::now() < deadline) {
      const std::string reply = c.datagram(cookie, text, 250);
      if (!reply.empty()) return reply;
    }
    return std::string();
  };

  std::atomic<bool> done{false};
  std::atomic<int> b_sent{0}, b_answered{0}, a_sent{0}, a_answered{0};
  std::mutex b_lost_mutex;
  std::string b_lost, a_lost;  // what the commands not answered got
  std::thread to_b([&] {
    ControlClient b(addr_b);
    for (int i = 0; !done.load() || i < 50; ++i) {
      ++b_sent;
      // No retransmission: B's worker must answer the first datagram, and
      // its relay must have made the session.
      const std::string reply = b.datagram("b" + std::to_string(i), "U bcall" + std::to_string(i) + " 192.0.2.1 4000 ft", 5000);
      if (!reply.empty() && reply[0] != 'E') {
        ++b_answered;
      } else {
        const std::lock_guard<std::mutex> lock(b_lost_mutex);
        b_lost += "bcall" + std::to_string(i) + " -> \"" + reply + "\"\n";
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
  });
  std::thread to_a([&] {
    ControlClient a(addr_a);
    for (int i = 0; !done.load(); ++i) {
      ++a_sent;
      // Any answer counts: a restarted worker answers new sessions E999
      // until its members passed their first probes.
      if (!patient(a, "a" + std::to_string(i), "U fresh" + std::to_string(i) + " 192.0.2.1 4000 ft").empty()) {
        ++a_answered;
      } else {
        a_lost += "fresh" + std::to_string(i) + "\n";
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
  });

  constexpr int kKills = 10;
  const pid_t b_worker = d.workerPid(1);
  for (int k = 0; k < kKills; ++k) {
    ASSERT_GT(d.killWorker(0), 0) << "kill " << k;
    std::this_thread::sleep_for(milliseconds(200));
  }
  done = true;
  to_b.join();
  to_a.join();

  EXPECT_EQ(b_answered.load(), b_sent.load()) << "every command to B answered without a retransmission:\n" << b_lost;
  EXPECT_EQ(a_answered.load(), a_sent.load()) << "every command to A answered once its worker was back:\n" << a_lost;
  EXPECT_GT(a_sent.load(), 0);
  EXPECT_EQ(d.workerPid(1), b_worker) << "B's worker never restarted";
  EXPECT_NE(d.ok("workers").find("restarts = " + std::to_string(kKills) + "\n"), std::string::npos);

  // The calls made before the kills: each L and D only to its own relay.
  ASSERT_TRUE(eventually([&] { return allOnline(d, "A", 2); }));
  const uint64_t l1 = ra1.stat("cmd_L"), l2 = ra2.stat("cmd_L"), d1 = ra1.stat("cmd_D"), d2 = ra2.stat("cmd_D");
  int on_a1 = 0;
  ControlClient a(addr_a);
  for (const auto& [call, relay] : owner) {
    const std::string i = call.substr(4);
    const std::string reply = a.command("L " + call + " 192.0.2.2 5000 ft" + i + " tt" + i);
    EXPECT_NE(reply.find(relay == "a2" ? "127.0.0.2" : "127.0.0.1"), std::string::npos) << call << " " << reply;
    EXPECT_EQ(a.command("D " + call + " ft" + i), "0") << call;
    on_a1 += relay == "a1" ? 1 : 0;
  }
  EXPECT_EQ(ra1.stat("cmd_L") - l1, static_cast<uint64_t>(on_a1));
  EXPECT_EQ(ra2.stat("cmd_L") - l2, static_cast<uint64_t>(kCalls - on_a1));
  EXPECT_EQ(ra1.stat("cmd_D") - d1, static_cast<uint64_t>(on_a1));
  EXPECT_EQ(ra2.stat("cmd_D") - d2, static_cast<uint64_t>(kCalls - on_a1));
}

TEST(Daemon, ASecondInstanceWithTheSamePidFileIsRefused) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  const std::string xml =
      configXml(clusterXml("c1", "unix", dir.file("c1.sock"), memberXml("r1", "udp", hostPort(r1.address()))));
  ASSERT_TRUE(d.start(xml));
  const RunResult second = run({daemonBin(), "-f", "-c", d.configPath(), "-P", d.pidFile(), "-s",
                                dir.file("admin2.sock"), "-L", dir.file("log2")});
  EXPECT_EQ(second.status, 1);
  // With -f stderr is also the log: the STARTUP_FAILED line comes first (DaemonLog tests).
  EXPECT_NE(second.err.find("\nrtp_cluster: another rtp_cluster is running (pid " + std::to_string(d.process().pid()) +
                            ", pid file " + d.pidFile() + ")\n"),
            std::string::npos)
      << second.err;
  EXPECT_FALSE(exists(dir.file("admin2.sock")));
  EXPECT_TRUE(exists(d.adminPath())) << "the running instance is untouched";
  EXPECT_EQ(d.ok("ls").substr(0, 12), "Cluster: #0\n");
}

// A second instance (its own pid file, so its own segment) given the running
// one's admin or control socket path must refuse to start and leave that
// socket alone; before, it took the path over and deleted it when it stopped.
TEST(Daemon, ASecondInstanceOnTheSameAdminOrControlSocketIsRefusedAndTouchesNothing) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  const std::string xml =
      configXml(clusterXml("c1", "unix", dir.file("c1.sock"), memberXml("r1", "udp", hostPort(r1.address()))));
  ASSERT_TRUE(d.start(xml));
  struct stat admin_before {}, control_before {};
  ASSERT_EQ(lstat(d.adminPath().c_str(), &admin_before), 0);
  ASSERT_EQ(lstat(dir.file("c1.sock").c_str(), &control_before), 0);

  // The same admin socket.
  const RunResult same_admin = run({daemonBin(), "-f", "-c", d.configPath(), "-P", dir.file("second.pid"), "-s",
                                    d.adminPath(), "-L", dir.file("log2")});
  EXPECT_EQ(same_admin.status, 1);
  EXPECT_NE(same_admin.err.find("admin socket: " + d.adminPath() +
                                " is in use: another process accepts connections on it"),
            std::string::npos)
      << same_admin.err;

  // Its own admin socket, the same cluster control socket.
  const std::string config2 = dir.file("second.xml");
  writeFile(config2, xml);
  const RunResult same_control = run({daemonBin(), "-f", "-c", config2, "-P", dir.file("third.pid"), "-s",
                                      dir.file("admin3.sock"), "-L", dir.file("log3")});
  EXPECT_EQ(same_control.status, 1);
  EXPECT_NE(same_control.err.find("cluster c1: control socket: " + dir.file("c1.sock") +
                                  " is in use: another process accepts connections on it"),
            std::string::npos)
      << same_control.err;
  EXPECT_FALSE(exists(dir.file("admin3.sock")));

  // The running instance still owns both files and answers on both.
  struct stat admin_after {}, control_after {};
  ASSERT_EQ(lstat(d.adminPath().c_str(), &admin_after), 0) << "the second instance removed the admin socket";
  ASSERT_EQ(lstat(dir.file("c1.sock").c_str(), &control_after), 0) << "the third instance removed c1.sock";
  EXPECT_EQ(admin_after.st_ino, admin_before.st_ino);
  EXPECT_EQ(control_after.st_ino, control_before.st_ino);
  EXPECT_EQ(d.ok("ls").substr(0, 12), "Cluster: #0\n");
  EXPECT_EQ(unixRequestLine(dir.file("c1.sock"), "V"), "20040107\n");
}

// <tuning><control_idle_timeout> reaches the worker's cunix listener: a quiet
// connection is closed after it (off by default: OpenSIPS keeps its own open).
TEST(Daemon, ControlIdleTimeoutClosesAQuietCunixConnection) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  std::string xml =
      configXml(clusterXml("c1", "cunix", dir.file("c1.sock"), memberXml("r1", "udp", hostPort(r1.address()))));
  const size_t at = xml.find("</tuning>");
  ASSERT_NE(at, std::string::npos);
  xml.insert(at, "<control_idle_timeout>300</control_idle_timeout>");
  ASSERT_TRUE(d.start(xml));
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un un = unixAddress(dir.file("c1.sock"));
  ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&un), sizeof un), 0);
  ASSERT_EQ(write(fd, "V\n", 2), 2);
  std::string got;
  const auto start = std::chrono::steady_clock::now();
  bool eof = false;
  while (!eof && waitReadable(fd, 5000)) {
    char chunk[256];
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n <= 0) eof = true;
    else got.append(chunk, static_cast<size_t>(n));
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  close(fd);
  EXPECT_EQ(got, "20040107\n");
  EXPECT_TRUE(eof);
  EXPECT_GE(waited, milliseconds(250));
}

// A member that is the cluster's own control socket would bounce every
// command back into the cluster forever: refused by the config check, by a
// reload and by `modify add`, whichever way the address is written.
TEST(Daemon, AMemberThatIsTheClustersOwnControlSocketIsRefusedEverywhere) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const uint16_t control = freeLoopbackPort(SOCK_DGRAM);
  const std::string port = std::to_string(control);
  const std::string good =
      configXml(clusterXml("c1", "udp", "0.0.0.0:" + port, memberXml("r1", "udp", hostPort(r1.address()))));
  const std::string looped =
      configXml(clusterXml("c1", "udp", "0.0.0.0:" + port,
                           memberXml("r1", "udp", hostPort(r1.address())) + memberXml("self", "udp", "127.0.0.1:" + port)));
  const std::string expected_error = "cluster \"c1\": rtpproxy \"self\" address udp:127.0.0.1:" + port +
                                     " is the cluster's own control socket udp:0.0.0.0:" + port +
                                     " (its commands would loop back to the cluster)";

  // The config check names the file, the cluster and the member.
  const std::string bad_file = dir.file("looped.xml");
  writeFile(bad_file, looped);
  const RunResult check = run({daemonBin(), "-d", "-c", bad_file});
  EXPECT_EQ(check.status, 1);
  EXPECT_NE(check.err.find(bad_file + ":"), std::string::npos) << check.err;
  EXPECT_NE(check.err.find(expected_error), std::string::npos) << check.err;

  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(good));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "c1", 1); }));

  // modify add, as localhost, as 127.0.0.1 and through the wildcard itself.
  for (const std::string host : {"localhost", "127.0.0.1", "0.0.0.0"}) {
    const RunResult r =
        d.client("modify c1 add name=self,protocol=udp,address=" + host + ":" + port + ",capacity=10,weight=5");
    EXPECT_EQ(r.status, 1) << host;
    EXPECT_EQ(r.out, "ERROR: rtpproxy \"self\" address udp:" + host + ":" + port +
                         " is the cluster's own control socket udp:0.0.0.0:" + port +
                         " (its commands would loop back to the cluster)\n");
  }
  EXPECT_EQ(d.ok("ls c1").find("name = self"), std::string::npos);

  // reload: refused, nothing changes.
  d.writeConfig(looped);
  const RunResult reload = d.client("reload");
  EXPECT_EQ(reload.status, 1);
  EXPECT_NE(reload.out.find(expected_error), std::string::npos) << reload.out;
  EXPECT_EQ(d.ok("ls c1").find("name = self"), std::string::npos);

  // The cluster still works, with r1 alone.
  ControlClient cluster(SocketAddress{Transport::kUdp, "127.0.0.1", control, ""});
  const std::string offer = cluster.command("U call1 192.0.2.1 4000 ft");
  EXPECT_FALSE(offer.empty() || offer[0] == 'E') << offer;
  EXPECT_EQ(cluster.command("D call1 ft"), "0");
  EXPECT_EQ(r1.stat("sessions"), 0u);
}

TEST(Daemon, SigtermStopsWorkersAndLeavesNoSocketPidFileOrSegment) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                           memberXml("r1", "udp", hostPort(r1.address()))) +
                                clusterXml("c2", "cunix", dir.file("c2.sock"),
                                           memberXml("r1", "udp", hostPort(r1.address()))))));
  ASSERT_TRUE(eventually([&] { return d.workerPid(0) > 0 && d.workerPid(1) > 0; }));
  const pid_t w0 = d.workerPid(0), w1 = d.workerPid(1);
  for (const std::string& path : {d.adminPath(), d.pidFile(), dir.file("c1.sock"), dir.file("c2.sock"), d.shmPath()}) {
    EXPECT_TRUE(exists(path)) << path;
  }
  EXPECT_EQ(readFile(d.pidFile()), std::to_string(d.process().pid()) + "\n");
  const int status = d.process().stop(SIGTERM, milliseconds(5000));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (const std::string& path : {d.adminPath(), d.pidFile(), dir.file("c1.sock"), dir.file("c2.sock"), d.shmPath()}) {
    EXPECT_FALSE(exists(path)) << path;
  }
  EXPECT_NE(kill(w0, 0), 0);
  EXPECT_NE(kill(w1, 0), 0);
}

TEST(Daemon, TellsTheServiceManagerReadyReloadingAndStopping) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const std::string notify_path = dir.file("notify.sock");
  const int notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, notify_path.c_str(), sizeof un.sun_path - 1);
  ASSERT_EQ(bind(notify, reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
  const auto next = [notify]() -> std::string {
    char buf[256];
    if (!waitReadable(notify, 5000)) return "";
    const ssize_t n = recv(notify, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  };
  setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
  DaemonUnderTest d(dir);
  const bool started = d.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                                    memberXml("r1", "udp", hostPort(r1.address())))));
  unsetenv("NOTIFY_SOCKET");
  ASSERT_TRUE(started);
  EXPECT_EQ(next(), "READY=1");
  EXPECT_EQ(d.ok("reload"), "Loaded 1 clusters and 1 RTP proxies\nOK\n");
  EXPECT_EQ(next(), "RELOADING=1");
  EXPECT_EQ(next(), "READY=1");
  d.process().signal(SIGTERM);
  EXPECT_EQ(next(), "STOPPING=1");
  close(notify);
}

TEST(Daemon, WithoutForegroundItDetachesLogsToTheFileAndReportsStartupErrors) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const std::string config = dir.file("c.xml");
  writeFile(config, configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                         memberXml("r1", "udp", hostPort(r1.address())))));
  const std::vector<std::string> args = {daemonBin(), "-c", config, "-P", dir.file("pid"), "-s",
                                         dir.file("admin.sock"), "-L", dir.file("log")};
  const RunResult started = run(args);
  ASSERT_EQ(started.status, 0) << started.err;
  const pid_t daemon = static_cast<pid_t>(std::atoi(readFile(dir.file("pid")).c_str()));
  ASSERT_GT(daemon, 0);
  struct StopAtExit {
    pid_t pid;
    ~StopAtExit() { kill(pid, SIGTERM); }
  } stop_at_exit{daemon};
  EXPECT_EQ(kill(daemon, 0), 0);
  EXPECT_TRUE(eventually([&] { return readFile(dir.file("log")).find("SUPERVISOR_READY") != std::string::npos; }));
  EXPECT_TRUE(eventually([&] { return readFile(dir.file("log")).find("WORKER_READY cluster=c1") != std::string::npos; }));

  // SIGUSR1 after the file was moved away: a new file gets the log.
  rename(dir.file("log").c_str(), dir.file("log.1").c_str());
  kill(daemon, SIGUSR1);
  EXPECT_TRUE(eventually([&] { return readFile(dir.file("log")).find("LOG_REOPENED") != std::string::npos; }));

  kill(daemon, SIGTERM);
  EXPECT_TRUE(eventually([&] { return kill(daemon, 0) != 0; }));
  EXPECT_FALSE(exists(dir.file("pid")));

  // A control socket that cannot be bound: exit 1 with the reason, nothing left behind.
  writeFile(config, configXml(clusterXml("c1", "unix", "/nonexistent/dir/c1.sock",
                                         memberXml("r1", "udp", hostPort(r1.address())))));
  const RunResult failed = run(args);
  EXPECT_EQ(failed.status, 1);
  EXPECT_NE(failed.err.find("cluster c1: control socket"), std::string::npos) << failed.err;
  EXPECT_FALSE(exists(dir.file("pid")));
  EXPECT_FALSE(exists(dir.file("admin.sock")));
}

// ---------------------------------------------------------------------------
// The Prometheus endpoint (docs/metrics.md), scraped with a plain TCP GET.


// The value of the sample `series` (name and labels as rendered); -1 if absent.
double sample(const std::string& response, const std::string& series) {
  const size_t at = response.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::atof(response.c_str() + at + 1 + series.size() + 1);
}

TEST(Daemon, MetricsEndpointIsScrapedDuringTraffic) {
  TempDir dir;
  TestRelay relay;
  ASSERT_TRUE(relay.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const uint16_t control = freeLoopbackPort(SOCK_DGRAM);
  const uint16_t metrics = freeLoopbackPort(SOCK_STREAM);
  DaemonUnderTest d(dir);
  const std::string clusters =
      clusterXml("m", "udp", "127.0.0.1:" + std::to_string(control), memberXml("r1", "udp", hostPort(relay.address())));
  ASSERT_TRUE(d.start("<rtp_cluster_config>\n  <metrics><address>127.0.0.1:" + std::to_string(metrics) +
                      "</address></metrics>\n" + clusters + "</rtp_cluster_config>\n"));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "m", 1); }));

  const std::string online = "rtp_cluster_member_online{cluster=\"m\",member=\"r1\"}";
  const std::string bound = "rtp_cluster_member_bound_sessions{cluster=\"m\",member=\"r1\"}";
  const std::string sent = "rtp_cluster_member_commands_total{cluster=\"m\",member=\"r1\"}";
  const std::string created = "rtp_cluster_commands_total{cluster=\"m\",kind=\"created\"}";

  // Scrapes while calls are set up and torn down: each one complete and well formed.
  constexpr int kCalls = 30;
  constexpr int kDeleted = 10;
  std::atomic<bool> done{false};
  std::thread traffic([&] {
    ControlClient c(SocketAddress{Transport::kUdp, "127.0.0.1", control, ""});
    for (int i = 0; i < kCalls; ++i) c.command("U mcall" + std::to_string(i) + " 192.0.2.1 4000 ft" + std::to_string(i));
    for (int i = 0; i < kDeleted; ++i) c.command("D mcall" + std::to_string(i) + " ft" + std::to_string(i));
    done = true;
  });
  int scrapes = 0;
  while (!done.load() || scrapes == 0) {
    const std::string r = httpGet(metrics, "/metrics");
    ASSERT_EQ(r.rfind("HTTP/1.0 200 OK\r\n", 0), 0U) << r.substr(0, 200);
    ASSERT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
    ASSERT_EQ(r.back(), '\n');
    ASSERT_EQ(sample(r, online), 1) << r;
    ++scrapes;
  }
  traffic.join();

  // The workers publish their counters periodically: the last values arrive soon.
  std::string last;
  EXPECT_TRUE(eventually([&] {
    last = httpGet(metrics, "/metrics");
    return sample(last, bound) == kCalls - kDeleted && sample(last, created) >= kCalls;
  })) << last;
  EXPECT_GE(sample(last, sent), kCalls + kDeleted);
  EXPECT_EQ(sample(last, "rtp_cluster_tracked_calls{cluster=\"m\"}"), kCalls - kDeleted);
  EXPECT_EQ(sample(last, "rtp_cluster_member_admin_status{cluster=\"m\",member=\"r1\",status=\"ACTIVE\"}"), 1);
  EXPECT_EQ(sample(last, "rtp_cluster_worker_restarts_total{cluster=\"m\"}"), 0);
  EXPECT_EQ(sample(last, "rtp_cluster_answers_total{cluster=\"m\",command=\"U\",result=\"ok\"}"), kCalls);
  EXPECT_EQ(sample(last, "rtp_cluster_answers_total{cluster=\"m\",command=\"D\",result=\"ok\"}"), kDeleted);
  EXPECT_EQ(sample(last, "rtp_cluster_answers_total{cluster=\"m\",command=\"U\",result=\"error\"}"), 0);
  EXPECT_EQ(sample(last, "rtp_cluster_error_answers_total{cluster=\"m\",code=\"E999\"}"), 0);
  // Every forwarded command and heartbeat gives a round-trip sample.
  const std::string rtt = "rtp_cluster_member_command_rtt_seconds";
  const std::string r1 = "{cluster=\"m\",member=\"r1\"";
  EXPECT_GE(sample(last, rtt + "_count" + r1 + "}"), kCalls + kDeleted);
  EXPECT_EQ(sample(last, rtt + "_bucket" + r1 + ",le=\"+Inf\"}"), sample(last, rtt + "_count" + r1 + "}"));
  EXPECT_GT(sample(last, rtt + "_sum" + r1 + "}"), 0);

  // Errors by code: one the parser answers, one the cluster answers.
  {
    ControlClient c(SocketAddress{Transport::kUdp, "127.0.0.1", control, ""});
    EXPECT_EQ(c.command("K"), "E0");
    EXPECT_EQ(c.command("Ux mcall0 192.0.2.1 4000 ft0"), "E35");
  }
  EXPECT_TRUE(eventually([&] {
    last = httpGet(metrics, "/metrics");
    return sample(last, "rtp_cluster_error_answers_total{cluster=\"m\",code=\"E0\"}") == 1;
  })) << last;
  EXPECT_EQ(sample(last, "rtp_cluster_answers_total{cluster=\"m\",command=\"unparsed\",result=\"error\"}"), 2);
  EXPECT_EQ(sample(last, "rtp_cluster_error_answers_total{cluster=\"m\",code=\"E35\"}"), 1);

  EXPECT_EQ(httpGet(metrics, "/").rfind("HTTP/1.0 404", 0), 0U);
  EXPECT_EQ(httpGet(metrics, "/metricsx").rfind("HTTP/1.0 404", 0), 0U);

  // A suspended member shows at the next scrape (the admin status comes from shm).
  d.ok("modify m suspend r1");
  EXPECT_TRUE(eventually([&] {
    return sample(httpGet(metrics, "/metrics"),
                  "rtp_cluster_member_admin_status{cluster=\"m\",member=\"r1\",status=\"SUSPENDED\"}") == 1;
  }));
}


// Timeouts and failovers, scraped from a daemon whose first relay stalls:
// the counters an operator alerts on must move when a relay goes bad.
TEST(Daemon, MetricsCountTheTimeoutsAndFailoversOfAStalledRelay) {
  TempDir dir;
  TestRelay slow;
  TestRelay good;
  ASSERT_TRUE(slow.start("udp:127.0.0.1:0", dir.file("slow.adm")));
  ASSERT_TRUE(good.start("udp:127.0.0.1:0", dir.file("good.adm")));
  const uint16_t control = freeLoopbackPort(SOCK_DGRAM);
  const uint16_t metrics = freeLoopbackPort(SOCK_STREAM);
  DaemonUnderTest d(dir);
  const std::string clusters =
      clusterXml("f", "udp", "127.0.0.1:" + std::to_string(control),
                 memberXml("slow", "udp", hostPort(slow.address())) + memberXml("good", "udp", hostPort(good.address())));
  ASSERT_TRUE(d.start("<rtp_cluster_config>\n  <metrics><address>127.0.0.1:" + std::to_string(metrics) +
                      "</address></metrics>\n" + clusters + "</rtp_cluster_config>\n"));
  ASSERT_TRUE(eventually([&] { return allOnline(d, "f", 2); }));

  // Every create that picks `slow` first times out there and is retried on
  // `good`, inside the client's deadline. With equal weights, 16 new calls
  // all avoiding `slow` before it is declared offline has odds of 2^-16.
  slow.admin("delay 3000");
  constexpr int kCalls = 16;
  {
    ControlClient c(SocketAddress{Transport::kUdp, "127.0.0.1", control, ""});
    for (int i = 0; i < kCalls; ++i) {
      const std::string answer = c.command("U fcall" + std::to_string(i) + " 192.0.2.1 4000 ft" + std::to_string(i));
      ASSERT_FALSE(answer.empty());
      EXPECT_NE(answer[0], 'E') << answer;
    }
  }
  const std::string cluster = "{cluster=\"f\"}";
  const std::string on_slow = "{cluster=\"f\",member=\"slow\"}";
  const std::string on_good = "{cluster=\"f\",member=\"good\"}";
  std::string last;
  EXPECT_TRUE(eventually([&] {
    last = httpGet(metrics, "/metrics");
    return sample(last, "rtp_cluster_failovers_total" + cluster) >= 1 &&
           sample(last, "rtp_cluster_member_timeouts_total" + on_slow) >= 1 &&
           sample(last, "rtp_cluster_member_online" + on_slow) == 0;
  })) << last;
  EXPECT_GE(sample(last, "rtp_cluster_member_failovers_total" + on_slow), 1) << last;
  EXPECT_EQ(sample(last, "rtp_cluster_member_failovers_total" + on_good), 0) << last;
  EXPECT_EQ(sample(last, "rtp_cluster_member_timeouts_total" + on_good), 0) << last;
  EXPECT_EQ(sample(last, "rtp_cluster_member_bound_sessions" + on_good), kCalls) << last;
  EXPECT_EQ(sample(last, "rtp_cluster_answers_total{cluster=\"f\",command=\"U\",result=\"ok\"}"), kCalls);
  slow.admin("delay 0");
}

// ---------------------------------------------------------------------------
// Log lines: what SIGUSR1 claims, escaped values, one STARTUP_FAILED per
// failed start, and the journal's priority prefix (docs/operation.md
// section 5).

// The lines of `text` that contain `key`.
std::vector<std::string> linesWith(const std::string& text, const std::string& key) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(key) != std::string::npos) out.push_back(line);
  }
  return out;
}

// The value of `key="..."` at the end of `line`, unescaped; nullopt unless
// the quoted value is well formed and ends the line (an unescaped `"`
// inside it ends the value early and fails this).
std::optional<std::string> quotedValueAtEnd(const std::string& line, const std::string& key) {
  static const std::regex escaped(R"re("(?:[^"\\]|\\.)*"$)re");
  const size_t at = line.find(" " + key + "=\"");
  if (at == std::string::npos) return std::nullopt;
  const std::string quoted = line.substr(at + key.size() + 2);
  if (!std::regex_match(quoted, escaped)) return std::nullopt;
  std::string out;
  for (size_t i = 1; i + 1 < quoted.size(); ++i) {
    if (quoted[i] != '\\') {
      out += quoted[i];
    } else if (quoted[i + 1] == 'x' && i + 3 < quoted.size()) {
      out += static_cast<char>(std::stoi(quoted.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      out += quoted[++i];
    }
  }
  return out;
}

// "DEVICE:INODE" of a file, as systemd writes JOURNAL_STREAM.
std::string streamId(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  return std::to_string(static_cast<uint64_t>(st.st_dev)) + ":" + std::to_string(static_cast<uint64_t>(st.st_ino));
}

// rtp_cluster with stdout and stderr appended to files (so that a test can
// name stderr's inode in JOURNAL_STREAM). `journal_stream` empty: the
// variable is unset in the daemon.
pid_t spawnToFiles(const std::vector<std::string>& args, const std::string& out, const std::string& err,
                   const std::string& journal_stream) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (o < 0 || e < 0) _exit(126);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    if (journal_stream.empty()) {
      unsetenv("JOURNAL_STREAM");
    } else {
      setenv("JOURNAL_STREAM", journal_stream.c_str(), 1);
    }
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// The exit code of `pid` once it ended within `limit`; -1 otherwise (then killed).
int waitExit(pid_t pid, milliseconds limit = kWait) {
  int status = 0;
  if (!eventually([&] { return waitpid(pid, &status, WNOHANG) == pid; }, limit, milliseconds(10))) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// SIGTERM at scope exit, for a daemon the test only knows by pid.
struct TermAtExit {
  pid_t pid = 0;
  ~TermAtExit() {
    if (pid > 0) kill(pid, SIGTERM);
  }
};

TEST(DaemonLog, ForegroundSigusr1ReopensNothingAndSaysSoAtDebugLevel) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  writeFile(dir.file("c.xml"), configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                                    memberXml("r1", "udp", hostPort(r1.address())))));
  const pid_t pid = spawnToFiles({daemonBin(), "-f", "--log-level", "debug", "-c", dir.file("c.xml"), "-P",
                                  dir.file("pid"), "-s", dir.file("admin.sock"), "-L", dir.file("unused.log")},
                                 dir.file("out"), dir.file("err"), "");
  TermAtExit stop{pid};
  ASSERT_TRUE(eventually([&] { return readFile(dir.file("out")).find("READY pid=") != std::string::npos; }));
  kill(pid, SIGUSR1);
  ASSERT_TRUE(eventually([&] { return !linesWith(readFile(dir.file("err")), "LOG_REOPEN_SKIPPED").empty(); }));
  // A later event, so that anything SIGUSR1 logged is in the file by now.
  kill(pid, SIGTERM);
  EXPECT_EQ(waitExit(pid), 0);
  stop.pid = 0;
  const std::string err = readFile(dir.file("err"));
  const std::vector<std::string> skipped = linesWith(err, "LOG_REOPEN_SKIPPED");
  ASSERT_EQ(skipped.size(), 1U) << err;
  EXPECT_NE(skipped[0].find("] debug LOG_REOPEN_SKIPPED reason=foreground"), std::string::npos) << skipped[0];
  EXPECT_TRUE(linesWith(err, "LOG_REOPENED").empty()) << err;
  EXPECT_FALSE(exists(dir.file("unused.log"))) << "-L is not used with -f";
}

TEST(DaemonLog, AFailedReopenIsLoggedOnceByEachProcessAndNeverCalledReopened) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  writeFile(dir.file("c.xml"), configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                                    memberXml("r1", "udp", hostPort(r1.address())))));
  ASSERT_EQ(mkdir(dir.file("logs").c_str(), 0755), 0);
  const std::string log = dir.file("logs/rtp_cluster.log");
  const RunResult started = run({daemonBin(), "-c", dir.file("c.xml"), "-P", dir.file("pid"), "-s",
                                 dir.file("admin.sock"), "-L", log});
  ASSERT_EQ(started.status, 0) << started.err;
  const pid_t daemon = static_cast<pid_t>(std::atoi(readFile(dir.file("pid")).c_str()));
  ASSERT_GT(daemon, 0);
  TermAtExit stop{daemon};
  ASSERT_TRUE(eventually([&] { return readFile(log).find("WORKER_READY cluster=c1") != std::string::npos; }));

  // The directory is gone: the reopen fails, logging goes on into the old file.
  ASSERT_EQ(rename(dir.file("logs").c_str(), dir.file("moved").c_str()), 0);
  const std::string old_log = dir.file("moved/rtp_cluster.log");
  kill(daemon, SIGUSR1);
  EXPECT_TRUE(eventually([&] { return linesWith(readFile(old_log), "LOG_REOPEN_FAILED").size() == 2; }))
      << readFile(old_log);
  // Anything the SIGUSR1 handlers logged precedes this line.
  kill(daemon, SIGHUP);
  EXPECT_TRUE(eventually([&] { return readFile(old_log).find("RELOAD_RESULT") != std::string::npos; }));

  const std::string text = readFile(old_log);
  EXPECT_TRUE(linesWith(text, "LOG_REOPENED").empty()) << text;
  const std::vector<std::string> by_supervisor = linesWith(text, "[" + std::to_string(daemon) + "] error LOG_REOPEN_FAILED");
  ASSERT_EQ(by_supervisor.size(), 1U) << text;
  EXPECT_NE(by_supervisor[0].find(" file=" + log + " error=\""), std::string::npos) << by_supervisor[0];
  EXPECT_EQ(linesWith(text, "LOG_REOPEN_FAILED file=" + log).size(), 2U) << "the worker reports its own" << text;
  EXPECT_FALSE(exists(log));
}

TEST(DaemonLog, FreeTextValuesEscapeQuotesAndBackslashesAndReadBackExactly) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const std::string good = configXml(clusterXml("c1", "unix", dir.file("c1.sock"),
                                                memberXml("r1", "udp", hostPort(r1.address()))));
  writeFile(dir.file("c.xml"), good);
  const pid_t pid = spawnToFiles({daemonBin(), "-f", "-c", dir.file("c.xml"), "-P", dir.file("pid"), "-s",
                                  dir.file("admin.sock")},
                                 dir.file("out"), dir.file("err"), "");
  TermAtExit stop{pid};
  ASSERT_TRUE(eventually([&] { return readFile(dir.file("out")).find("READY pid=") != std::string::npos; }));

  // The config error quotes the bad value, which itself has `"` and `\`.
  std::string bad = good;
  bad.replace(bad.find("<weight>100</weight>"), 20, "<weight>a\"b\\c</weight>");
  writeFile(dir.file("c.xml"), bad);
  const std::string admin_answer = run({clientBin(), "-s", dir.file("admin.sock"), "reload"}).out;
  ASSERT_EQ(admin_answer.rfind("ERROR: ", 0), 0U) << admin_answer;
  ASSERT_NE(admin_answer.find("\"r1\""), std::string::npos) << admin_answer;
  const std::string error = admin_answer.substr(7, admin_answer.size() - 8);
  kill(pid, SIGHUP);
  ASSERT_TRUE(eventually([&] { return !linesWith(readFile(dir.file("err")), "RELOAD_RESULT").empty(); }));
  // An admin command line with both, logged as received (the client quotes
  // the word that holds them, docs/admin.md "Quoting").
  const std::string command = "modify c1 delete \"no\\\"such\\\\member\"";
  run({clientBin(), "-s", dir.file("admin.sock"), "modify", "c1", "delete", "no\"such\\member"});
  ASSERT_TRUE(eventually([&] { return !linesWith(readFile(dir.file("err")), "ADMIN_COMMAND command=\"modify").empty(); }));

  const std::string err = readFile(dir.file("err"));
  const std::vector<std::string> failed = linesWith(err, "RELOAD_FAILED");
  ASSERT_EQ(failed.size(), 2U) << err;
  for (const std::string& line : failed) EXPECT_EQ(quotedValueAtEnd(line, "error"), error) << line;
  const std::vector<std::string> result = linesWith(err, "RELOAD_RESULT");
  ASSERT_EQ(result.size(), 1U) << err;
  EXPECT_EQ(quotedValueAtEnd(result[0], "answer"), "ERROR: " + error) << result[0];
  const std::vector<std::string> logged = linesWith(err, "ADMIN_COMMAND command=\"modify");
  ASSERT_EQ(logged.size(), 1U) << err;
  EXPECT_EQ(quotedValueAtEnd(logged[0], "command"), command) << logged[0];
}

// One failed start: how it is made to fail, and the STARTUP_FAILED reason.
struct FailedStart {
  const char* name;
  bool foreground;
  const char* cause;  // "config", "second_instance", "socket"
  const char* reason;
};

TEST(DaemonLog, EveryFailedStartLogsOneStartupFailedLineAndNoSupervisorStopped) {
  const FailedStart cases[] = {
      {"config error, -f", true, "config", "config"},
      {"config error, detached", false, "config", "config"},
      {"second instance, -f", true, "second_instance", "pid_file"},
      {"second instance, detached", false, "second_instance", "pid_file"},
      {"control socket, -f", true, "socket", "setup"},
      {"control socket, detached", false, "socket", "setup"},
  };
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const std::string member = memberXml("r1", "udp", hostPort(r1.address()));
  DaemonUnderTest first(dir);
  ASSERT_TRUE(first.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"), member))));
  int n = 0;
  for (const FailedStart& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string tag = std::to_string(n++);
    const std::string config = dir.file("c" + tag + ".xml");
    const std::string log = dir.file("log" + tag);
    const std::string cause = c.cause;
    const std::string control = cause == "socket" ? "/nonexistent/dir/c.sock" : dir.file("s" + tag + ".sock");
    std::string xml = configXml(clusterXml("x", "unix", control, member));
    if (cause == "config") xml.replace(xml.find("<weight>100"), 11, "<weight>-1");
    writeFile(config, xml);
    std::vector<std::string> args = {daemonBin(), "-c", config, "-P",
                                     cause == "second_instance" ? first.pidFile() : dir.file("p" + tag),
                                     "-s", dir.file("a" + tag + ".sock"), "-L", log};
    if (c.foreground) args.push_back("-f");
    const RunResult r = run(args);
    EXPECT_EQ(r.status, 1);

    // -f: stderr is the log. Detached: the log file is, and stderr gets the
    // reason alone from the waiting parent.
    const std::string text = c.foreground ? r.err : readFile(log);
    const std::vector<std::string> lines = linesWith(text, "STARTUP_FAILED");
    ASSERT_EQ(lines.size(), 1U) << text;
    EXPECT_NE(lines[0].find("] error STARTUP_FAILED reason=" + std::string(c.reason) + " error=\""), std::string::npos)
        << lines[0];
    EXPECT_TRUE(linesWith(text, "SUPERVISOR_STOPPED").empty()) << text;
    const std::optional<std::string> error = quotedValueAtEnd(lines[0], "error");
    ASSERT_TRUE(error) << lines[0];
    if (c.foreground) {
      EXPECT_EQ(linesWith(r.err, "rtp_cluster: " + *error).size(), 1U) << r.err;
      EXPECT_FALSE(exists(log));
    } else {
      EXPECT_EQ(r.err, "rtp_cluster: " + *error + "\n");
    }
    if (cause == "second_instance") {
      EXPECT_EQ(error->rfind("another rtp_cluster is running (pid " + std::to_string(first.process().pid()), 0), 0U);
    }
  }
  EXPECT_EQ(first.ok("ls").substr(0, 12), "Cluster: #0\n") << "the running instance is untouched";
}

// Where stderr goes and whether JOURNAL_STREAM names it.
struct JournalCase {
  const char* name;
  bool foreground;
  const char* journal;  // "none": unset, "stderr": stderr's dev:ino, "other": another file's
  bool prefixed;
};

// The syslog priority digit that journald must see for a level word.
char priorityOf(const std::string& level) {
  if (level == "critical") return '2';
  if (level == "error") return '3';
  if (level == "warning") return '4';
  if (level == "info") return '6';
  return '7';
}

TEST(DaemonLog, EveryLineCarriesItsSyslogPriorityExactlyWhenStderrIsTheJournal) {
  const JournalCase cases[] = {
      {"-f, stderr is the journal", true, "stderr", true},
      {"-f, no JOURNAL_STREAM", true, "none", false},
      {"-f, JOURNAL_STREAM of another file (stderr redirected)", true, "other", false},
      {"detached: the log file is stderr, not the journal", false, "stderr", false},
  };
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const std::string dead = "127.0.0.1:" + std::to_string(freeLoopbackPort(SOCK_DGRAM));
  int n = 0;
  for (const JournalCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string tag = std::to_string(n++);
    const std::string config = dir.file("c" + tag + ".xml");
    const std::string good = configXml(clusterXml(
        "c1", "unix", dir.file("c" + tag + ".sock"),
        memberXml("r1", "udp", hostPort(r1.address())) + memberXml("dead", "udp", dead)));
    writeFile(config, good);
    const std::string out = dir.file("out" + tag);
    const std::string err = dir.file("err" + tag);
    const std::string log = dir.file("log" + tag);
    writeFile(err, "");
    writeFile(dir.file("other"), "");
    const std::string journal = std::string(c.journal) == "none"     ? ""
                                : std::string(c.journal) == "stderr" ? streamId(err)
                                                                     : streamId(dir.file("other"));
    std::vector<std::string> args = {daemonBin(), "--log-level", "debug", "-c", config, "-P",
                                     dir.file("p" + tag), "-s", dir.file("a" + tag + ".sock"), "-L", log};
    if (c.foreground) args.push_back("-f");
    const pid_t launched = spawnToFiles(args, out, err, journal);
    pid_t daemon = launched;
    TermAtExit stop{launched};
    if (c.foreground) {
      ASSERT_TRUE(eventually([&] { return readFile(out).find("READY pid=") != std::string::npos; }));
    } else {
      ASSERT_EQ(waitExit(launched), 0) << readFile(err);
      daemon = static_cast<pid_t>(std::atoi(readFile(dir.file("p" + tag)).c_str()));
      ASSERT_GT(daemon, 0);
      stop.pid = daemon;
    }
    const std::string logged = c.foreground ? err : log;
    // warning (a worker's), then debug or info (SIGUSR1), then error (a bad reload).
    ASSERT_TRUE(eventually([&] { return readFile(logged).find("MEMBER_OFFLINE cluster=c1 member=dead") != std::string::npos; }));
    kill(daemon, SIGUSR1);
    writeFile(config, configXml("<oops/>"));
    kill(daemon, SIGHUP);
    ASSERT_TRUE(eventually([&] { return readFile(logged).find("RELOAD_RESULT") != std::string::npos; }));
    kill(daemon, SIGTERM);
    ASSERT_TRUE(eventually([&] { return readFile(logged).find("SUPERVISOR_STOPPED") != std::string::npos; }));
    if (c.foreground) {
      EXPECT_EQ(waitExit(launched), 0);
    }
    stop.pid = 0;

    static const std::regex shape(R"re(^(<[0-9]>)?\d{4}-\d\d-\d\dT[0-9:.]+ \[(\d+)\] (\w+) .*)re");
    std::istringstream in(readFile(logged));
    std::set<char> priorities;
    std::set<std::string> pids;
    std::string wrong;  // lines whose prefix is missing, unwanted or not their level's
    size_t count = 0;
    for (std::string line; std::getline(in, line); ++count) {
      std::smatch m;
      ASSERT_TRUE(std::regex_match(line, m, shape)) << line;
      const bool right = c.prefixed ? m[1].matched && m[1].str()[1] == priorityOf(m[3].str()) : !m[1].matched;
      if (!right) wrong += line + "\n";
      if (m[1].matched) priorities.insert(m[1].str()[1]);
      pids.insert(m[2].str());
    }
    EXPECT_EQ(wrong, "");
    EXPECT_GT(count, 5U);
    EXPECT_GE(pids.size(), 2U) << "the supervisor's and the worker's lines";
    if (c.prefixed) {
      EXPECT_EQ(priorities, (std::set<char>{'3', '4', '6', '7'}));
    }
  }
}


// ---------------------------------------------------------------------------
// Start-up readiness, reload of a non-regular file, un-draining.

// A unix datagram socket standing in for systemd's NOTIFY_SOCKET.
class FakeNotifySocket {
 public:
  explicit FakeNotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&un), sizeof un) == 0;
  }
  ~FakeNotifySocket() { close(fd_); }
  FakeNotifySocket(const FakeNotifySocket&) = delete;
  FakeNotifySocket& operator=(const FakeNotifySocket&) = delete;
  bool bound() const { return bound_; }
  // The next state datagram, "" when none came within limit_ms.
  std::string next(int limit_ms = 10000) const {
    char buf[256];
    if (!waitReadable(fd_, limit_ms)) return "";
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

// READY=1 means "serving": by the time it arrives every worker has logged
// WORKER_READY (it reports to the supervisor after that line) and every
// control socket answers at once. It used to be sent right after the forks,
// while the workers were still creating their session tables.
TEST(DaemonReady, ReadyIsSentOnlyOnceEveryWorkerServes) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  FakeNotifySocket notify(dir.file("notify.sock"));
  ASSERT_TRUE(notify.bound());
  // Default session tables (1,048,576 calls, 32 MiB each to set up) make a
  // worker take a while before it serves.
  constexpr int kClusters = 4;
  std::string clusters;
  std::vector<SocketAddress> controls;
  for (int i = 0; i < kClusters; ++i) {
    const uint16_t port = freeLoopbackPort(SOCK_DGRAM);
    controls.push_back(SocketAddress{Transport::kUdp, "127.0.0.1", port, ""});
    clusters += "  <rtp_cluster>\n    <name>c" + std::to_string(i) + "</name><protocol>udp</protocol><address>127.0.0.1:" +
                std::to_string(port) + "</address>\n" + memberXml("r1", "udp", hostPort(r1.address())) +
                "  </rtp_cluster>\n";
  }
  writeFile(dir.file("c.xml"), configXml(clusters));
  setenv("NOTIFY_SOCKET", dir.file("notify.sock").c_str(), 1);
  const pid_t pid = spawnToFiles({daemonBin(), "-f", "-c", dir.file("c.xml"), "-P", dir.file("pid"), "-s",
                                  dir.file("admin.sock")},
                                 dir.file("out"), dir.file("err"), "");
  unsetenv("NOTIFY_SOCKET");
  TermAtExit stop{pid};
  ASSERT_EQ(notify.next(), "READY=1");
  // Read at once: nothing the workers log later may count.
  const std::string log = readFile(dir.file("err"));
  EXPECT_EQ(linesWith(log, "WORKER_READY cluster=").size(), static_cast<size_t>(kClusters)) << log;
  const std::vector<std::string> ready = linesWith(log, "SUPERVISOR_READY");
  ASSERT_EQ(ready.size(), 1U) << log;
  EXPECT_GT(log.find("SUPERVISOR_READY"), log.rfind("WORKER_READY cluster=")) << log;
  for (const SocketAddress& control : controls) {
    ControlClient c(control);
    EXPECT_EQ(c.datagram("v1", "V", 2000), "20040107") << control.uri();
  }
  // `READY pid=` on stdout (-f) follows the same rule.
  EXPECT_TRUE(eventually([&] { return readFile(dir.file("out")) == "READY pid=" + std::to_string(pid) + "\n"; }))
      << readFile(dir.file("out"));
  kill(pid, SIGTERM);
  EXPECT_EQ(waitExit(pid), 0);
  stop.pid = 0;
}

// A FIFO at the config path: `reload` answers an error at once (opening it
// used to wait for a writer for ever, after which the supervisor neither
// stopped on SIGTERM nor restarted a killed worker).
TEST(Daemon, AFifoReplacingTheConfigFailsTheReloadAndTheDaemonKeepsWorking) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  DaemonUnderTest d(dir);
  ASSERT_TRUE(d.start(configXml(clusterXml("c1", "unix", dir.file("c1.sock"), memberXml("r1", "udp", hostPort(r1.address()))))));
  ASSERT_EQ(unlink(d.configPath().c_str()), 0);
  ASSERT_EQ(mkfifo(d.configPath().c_str(), 0600), 0);
  const auto before = Clock::now();
  const RunResult reload = d.client("reload");
  EXPECT_LT(Clock::now() - before, milliseconds(5000));
  EXPECT_EQ(reload.out, "ERROR: " + d.configPath() + ": not a regular file\n") << reload.err;
  d.process().signal(SIGHUP);  // the same through the signal
  EXPECT_GT(d.killWorker(0), 0) << "a killed worker is still restarted";
  EXPECT_EQ(d.ok("ls").substr(0, 12), "Cluster: #0\n");
  const int status = d.process().stop(SIGTERM, milliseconds(5000));
  ASSERT_TRUE(WIFEXITED(status)) << "SIGTERM still stops it: " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// A member the previous reload removed (draining: it still had calls) and
// this reload brings back logs MEMBER_UNDRAINED, like every other change of
// a member's status.
TEST(DaemonLog, AReloadThatBringsBackADrainingMemberLogsIt) {
  TempDir dir;
  TestRelay r1, r2;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  ASSERT_TRUE(r2.start("udp:127.0.0.1:0", dir.file("r2.adm"), {"-l", "127.0.0.2"}));
  const uint16_t port = freeLoopbackPort(SOCK_DGRAM);
  const std::string both = memberXml("r1", "udp", hostPort(r1.address())) + memberXml("r2", "udp", hostPort(r2.address()));
  const std::string only_r1 = memberXml("r1", "udp", hostPort(r1.address()));
  writeFile(dir.file("c.xml"), configXml(clusterXml("c1", "udp", "127.0.0.1:" + std::to_string(port), both)));
  const pid_t pid = spawnToFiles({daemonBin(), "-f", "-c", dir.file("c.xml"), "-P", dir.file("pid"), "-s",
                                  dir.file("admin.sock")},
                                 dir.file("out"), dir.file("err"), "");
  TermAtExit stop{pid};
  ASSERT_TRUE(eventually([&] { return readFile(dir.file("out")).find("READY pid=") != std::string::npos; }));
  const auto client = [&](const std::string& command) {
    return run({clientBin(), "-s", dir.file("admin.sock"), command}).out;
  };
  ASSERT_TRUE(eventually([&] { return client("ls").find("online members = 2 (") != std::string::npos; }));
  // Calls until one is on r2.
  ControlClient c(SocketAddress{Transport::kUdp, "127.0.0.1", port, ""});
  bool on_r2 = false;
  for (int i = 0; i < 40 && !on_r2; ++i) {
    on_r2 = c.command("U undrain" + std::to_string(i) + " 192.0.2.1 4000 ft").find("127.0.0.2") != std::string::npos;
  }
  ASSERT_TRUE(on_r2);
  writeFile(dir.file("c.xml"), configXml(clusterXml("c1", "udp", "127.0.0.1:" + std::to_string(port), only_r1)));
  ASSERT_EQ(client("reload"), "Loaded 1 clusters and 1 RTP proxies\nOK\n");
  ASSERT_TRUE(eventually([&] { return !linesWith(readFile(dir.file("err")), "MEMBER_DRAINING cluster=c1 member=r2").empty(); }));
  writeFile(dir.file("c.xml"), configXml(clusterXml("c1", "udp", "127.0.0.1:" + std::to_string(port), both)));
  ASSERT_EQ(client("reload"), "Loaded 1 clusters and 2 RTP proxies\nOK\n");
  const std::vector<std::string> lines = linesWith(readFile(dir.file("err")), "MEMBER_UNDRAINED");
  ASSERT_EQ(lines.size(), 1U) << readFile(dir.file("err"));
  EXPECT_NE(lines[0].find("] info MEMBER_UNDRAINED cluster=c1 member=r2 status=ACTIVE"), std::string::npos) << lines[0];
  kill(pid, SIGTERM);
  EXPECT_EQ(waitExit(pid), 0);
  stop.pid = 0;
}

// Garbage written into a running daemon's segment (/dev/shm): the header,
// a slot record's table offset and size, the session table's header. The
// supervisor works from its private copy, answers `ls`, logs and rewrites
// what was scribbled; a worker restarted over a garbage table starts a new
// one. Nothing crashes.
TEST(DaemonLog, GarbageInTheSharedSegmentIsRepairedAndCrashesNothing) {
  TempDir dir;
  TestRelay r1;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  const uint16_t port = freeLoopbackPort(SOCK_DGRAM);
  writeFile(dir.file("c.xml"), configXml(clusterXml("c1", "udp", "127.0.0.1:" + std::to_string(port),
                                                    memberXml("r1", "udp", hostPort(r1.address())))));
  const pid_t pid = spawnToFiles({daemonBin(), "-f", "-c", dir.file("c.xml"), "-P", dir.file("pid"), "-s",
                                  dir.file("admin.sock"), "--restart-backoff", "20:200"},
                                 dir.file("out"), dir.file("err"), "");
  TermAtExit stop{pid};
  ASSERT_TRUE(eventually([&] { return readFile(dir.file("out")).find("READY pid=") != std::string::npos; }));
  const auto client = [&](const std::string& command) {
    return run({clientBin(), "-s", dir.file("admin.sock"), command}).out;
  };
  const SocketAddress control{Transport::kUdp, "127.0.0.1", port, ""};
  ASSERT_TRUE(eventually([&] { return client("ls").find("online members = 1 (") != std::string::npos; }));
  {
    ControlClient c(control);
    ASSERT_NE(c.command("U garbage1 192.0.2.1 4000 ft"), "");
  }
  const std::string shm = "/dev/shm/" + Daemon::shmNameFor(dir.file("pid"));
  const int fd = open(shm.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << shm;
  ShmHeader header{};
  ASSERT_EQ(pread(fd, &header, sizeof header, 0), static_cast<ssize_t>(sizeof header));
  uint64_t table_offset = 0;
  ASSERT_EQ(pread(fd, &table_offset, 8, static_cast<off_t>(header.clusters_offset + offsetof(ClusterRecord, table_offset))), 8);
  ASSERT_GE(table_offset, header.arena_offset);
  const auto scribble = [fd](uint64_t offset, uint64_t value) {
    ASSERT_EQ(pwrite(fd, &value, sizeof value, static_cast<off_t>(offset)), 8);
  };

  // The header: slot count, stride, arena, total size.
  scribble(offsetof(ShmHeader, cluster_slots), 0xffffffffffffffffull);
  scribble(offsetof(ShmHeader, cluster_stride), 0x7fffffffffffull);
  scribble(offsetof(ShmHeader, arena_offset), 0xfffffffffffff000ull);
  scribble(offsetof(ShmHeader, total_bytes), 1);
  // Slot 0's table block, as if it lay beyond the segment; a phantom slot 5.
  scribble(header.clusters_offset + offsetof(ClusterRecord, table_offset), 0xfffffffffffff000ull);
  scribble(header.clusters_offset + offsetof(ClusterRecord, table_bytes), 0x10000000000ull);
  scribble(header.clusters_offset + 5 * header.cluster_stride + offsetof(ClusterRecord, in_use), 1);
  // The session table's header (geometry and magic).
  for (uint64_t at = 8; at < 64; at += 8) scribble(table_offset + at, 0x00ff00ff00ff00ffull);

  const std::string ls = client("ls");
  EXPECT_NE(ls.find("name = c1\n"), std::string::npos) << ls;
  EXPECT_EQ(ls.find("Cluster: #1"), std::string::npos) << "no phantom cluster: " << ls;
  ASSERT_TRUE(eventually([&] { return !linesWith(readFile(dir.file("err")), "SHM_SEGMENT_REPAIRED").empty(); }));
  const std::vector<std::string> repaired = linesWith(readFile(dir.file("err")), "SHM_SEGMENT_REPAIRED");
  EXPECT_NE(repaired[0].find("rewritten=\"header, slot 0, slot 5\""), std::string::npos) << repaired[0];
  ShmHeader after{};
  ASSERT_EQ(pread(fd, &after, sizeof after, 0), static_cast<ssize_t>(sizeof after));
  EXPECT_EQ(std::memcmp(&after, &header, sizeof header), 0) << "the header is rewritten";

  // The worker, restarted over the scribbled session table, starts a new
  // one and serves; the supervisor is still there.
  const std::string workers = client("workers");
  const size_t at = workers.find("    pid = ");
  ASSERT_NE(at, std::string::npos) << workers;
  const pid_t worker = static_cast<pid_t>(std::atoi(workers.c_str() + at + 10));
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return linesWith(readFile(dir.file("err")), "WORKER_READY cluster=c1").size() == 2; }));
  ControlClient c(control);
  EXPECT_EQ(c.command("V"), "20040107");
  EXPECT_NE(c.command("U garbage2 192.0.2.1 4000 ft"), "");
  EXPECT_EQ(kill(pid, 0), 0);
  close(fd);
  kill(pid, SIGTERM);
  EXPECT_EQ(waitExit(pid), 0);
  stop.pid = 0;
  const std::string log = readFile(dir.file("err"));
  EXPECT_EQ(linesWith(log, "WORKER_EXITED").size(), 1U) << "only the worker killed here exited: " << log;
  EXPECT_EQ(linesWith(log, "SESSION_TABLE_INVALID").size(), 1U) << log;
}

}  // namespace
}  // namespace rtpc::testing
