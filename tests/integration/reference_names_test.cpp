// Issue 10, "Accept every config the reference accepts": the real binaries
// (rtp_cluster, rtp_cluster_client, rtpp_test_relay) on loopback with
// - the reference projects' own example configs, unchanged
//   (tests/reference_configs/, origin in its README.md): checked with -d,
//   and the reference's test network run for real;
// - a config with spaced and non-ASCII names, at which every admin command is
//   driven through the client (quoted words), with the text, JSON and metrics
//   output and the signalling path checked.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "shared/admin_command.h"
#include "tests/integration/test_support.h"

namespace rtpc::testing {
namespace {

std::string daemonBin() { return envOr("RTP_CLUSTER_BIN", "supervisor/rtp_cluster"); }
std::string clientBin() { return envOr("RTP_CLUSTER_CLIENT", "cli/rtp_cluster_client"); }
std::string sourceRoot() { return envOr("RTPC_SOURCE_ROOT", ".."); }

// The daemon in the foreground, in a temp dir of its own.
class Daemon {
 public:
  explicit Daemon(const TempDir& dir)
      : config_(dir.file("rtp_cluster.xml")),
        pid_file_(dir.file("rtp_cluster.pid")),
        admin_(dir.file("admin.sock")),
        log_(dir.file("rtp_cluster.log")) {}
  ~Daemon() { process_.stop(SIGTERM, milliseconds(5000)); }

  // Standard error (the log, with -f) goes to a file, read by log().
  bool start(const std::string& xml) {
    writeFile(config_, xml);
    return process_.start({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>" + log_, daemonBin(), "-f", "-c", config_, "-P",
                           pid_file_, "-s", admin_},
                          "READY pid=");
  }
  std::string log() const { return readFile(log_); }
  void writeConfig(const std::string& xml) const { writeFile(config_, xml); }

  // The client with these command words, each one shell word.
  RunResult client(const std::vector<std::string>& words) const {
    std::vector<std::string> args = {clientBin(), "-s", admin_};
    args.insert(args.end(), words.begin(), words.end());
    return run(args);
  }
  std::string ok(const std::vector<std::string>& words) const {
    const RunResult r = client(words);
    std::string line;
    for (const std::string& w : words) line += w + " ";
    EXPECT_EQ(r.status, 0) << line << "-> " << r.out << r.err;
    return r.out;
  }
  // The exact answer of a line sent as it is on the admin socket.
  std::string raw(const std::string& line) const { return unixRequestLine(admin_, line); }

 private:
  std::string config_;
  std::string pid_file_;
  std::string admin_;
  std::string log_;
  ChildProcess process_;
};

int onlineMembers(const Daemon& d, const std::string& cluster) {
  const std::string text = d.client({"ls"}).out;
  const size_t at = text.find("    name = " + cluster + "\n");
  if (at == std::string::npos) return -1;
  const size_t line = text.find("online members = ", at);
  return line == std::string::npos ? -1 : std::atoi(text.c_str() + line + 17);
}

const char* const kProjects[] = {"rtp_cluster", "go-rtp_cluster"};

// `rtp_cluster -d` takes each example file as it is, and the test network
// with its placeholder filled in as the reference's own test does.
TEST(ReferenceConfigs, EveryExampleFileOfBothProjectsPassesTheCheck) {
  TempDir dir;
  for (const char* project : kProjects) {
    const std::string folder = sourceRoot() + "/tests/reference_configs/" + project;
    const RunResult example = run({daemonBin(), "-d", "-c", folder + "/rtp_cluster.xml"});
    EXPECT_EQ(example.status, 0) << project << ": " << example.out << example.err;
    std::string net = readFile(folder + "/basic_network.xml.in");
    ASSERT_NE(net.find("%%STATUS%%"), std::string::npos) << project;
    for (const char* status : {"ACTIVE", "SUSPENDED"}) {
      std::string xml = net;
      xml.replace(xml.find("%%STATUS%%"), 10, status);
      writeFile(dir.file("basic_network.xml"), xml);
      const RunResult r = run({daemonBin(), "-d", "-c", dir.file("basic_network.xml")});
      EXPECT_EQ(r.status, 0) << project << " " << status << ": " << r.out << r.err;
    }
  }
}

// The reference's test network runs as it is: its fixed addresses (control
// 127.0.0.1:32324; members /tmp/rtpp0.sock, 127.0.0.1:32323,
// localhost:32322 and [::1]:32323 over udp6) served by relay doubles.
TEST(ReferenceConfigs, TheReferenceTestNetworkRunsAndAnswersEveryAdminCommand) {
  TempDir dir;
  TestRelay r0, r1, r2, r3;
  if (!r0.start("unix:/tmp/rtpp0.sock", dir.file("r0.adm")) || !r1.start("udp:127.0.0.1:32323", dir.file("r1.adm")) ||
      !r2.start("udp6:[::1]:32322", dir.file("r2.adm")) || !r3.start("udp6:[::1]:32323", dir.file("r3.adm"))) {
    GTEST_FAIL() << "the reference network's fixed relay addresses are taken on this host";
  }
  std::string xml = readFile(sourceRoot() + "/tests/reference_configs/rtp_cluster/basic_network.xml.in");
  xml.replace(xml.find("%%STATUS%%"), 10, "ACTIVE");
  Daemon d(dir);
  ASSERT_TRUE(d.start(xml));
  ASSERT_TRUE(eventually([&] { return onlineMembers(d, "basic_network") == 4; }, milliseconds(15000)))
      << d.client({"ls", "basic_network"}).out;
  EXPECT_EQ(d.ok({"ls"}), "Cluster: #0\n"
                          "    name = basic_network\n"
                          "    address = 127.0.0.1:32324\n"
                          "    online members = 4 (4 active, 0 suspended, 0 draining)\n"
                          "    offline members = 0\n"
                          "OK\n");
  const SocketAddress control{Transport::kUdp, "127.0.0.1", 32324, ""};
  ControlClient signalling(control);
  EXPECT_NE(signalling.command("U ref-call 192.0.2.1 4000 ft"), "");
  EXPECT_EQ(d.ok({"modify", "basic_network", "pause", "RTPPROXY1"}), "OK\n");
  EXPECT_EQ(d.ok({"modify", "basic_network", "resume", "RTPPROXY1"}), "OK\n");
  EXPECT_EQ(d.ok({"ls", "basic_network", "json"}).find("\"name\":\"RTPPROXY3\"") != std::string::npos, true);
  EXPECT_EQ(d.ok({"reload"}), "Loaded 1 clusters and 4 RTP proxies\nOK\n");
  EXPECT_EQ(signalling.command("D ref-call ft"), "0");
}

// Names as the reference takes them: spaces, punctuation and any UTF-8.
const std::string kCore = "Core 1";
const std::string kCafe = "caf\xc3\xa9 Zone \xe2\x82\xac";
const std::string kRelay1 = "relay 1";
const std::string kRelay2 = "relay \"2\", \xe4\xb8\xad\xe7\xbb\xa7";  // quotes, a comma, CJK
const std::string kRelay3 = "\xd0\xa1\xd0\xb5\xd1\x82\xd1\x8c #3";

std::string xmlEscape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

std::string member(const std::string& name, const TestRelay& relay, const std::string& capacity = "2500000") {
  return "    <rtpproxy><name>" + xmlEscape(name) + "</name><protocol>udp</protocol><address>" +
         relay.address().display() + "</address><weight>100</weight><capacity>" + capacity +
         "</capacity><status>ACTIVE</status></rtpproxy>\n";
}

std::string cluster(const std::string& name, uint16_t port, const std::string& members) {
  return "  <rtp_cluster>\n    <name>" + xmlEscape(name) + "</name><protocol>udp</protocol><address>127.0.0.1:" +
         std::to_string(port) + "</address>\n" +
         "    <tuning><heartbeat_interval>200</heartbeat_interval><command_timeout>150</command_timeout>"
         "<offline_probe_interval>200</offline_probe_interval><session_table_size>65536</session_table_size>"
         "</tuning>\n" +
         members + "  </rtp_cluster>\n";
}

TEST(ReferenceNames, EveryAdminCommandAddressesSpacedAndUtf8Names) {
  TempDir dir;
  TestRelay r1, r2, r3, r4;
  ASSERT_TRUE(r1.start("udp:127.0.0.1:0", dir.file("r1.adm")));
  ASSERT_TRUE(r2.start("udp:127.0.0.1:0", dir.file("r2.adm")));
  ASSERT_TRUE(r3.start("udp:127.0.0.1:0", dir.file("r3.adm")));
  ASSERT_TRUE(r4.start("udp:127.0.0.1:0", dir.file("r4.adm")));
  const uint16_t core_port = freeLoopbackPort(SOCK_DGRAM);
  uint16_t cafe_port = freeLoopbackPort(SOCK_DGRAM);
  while (cafe_port == core_port) cafe_port = freeLoopbackPort(SOCK_DGRAM);
  const uint16_t metrics = freeLoopbackPort(SOCK_STREAM);
  const std::string head = "<rtp_cluster_config>\n  <metrics><address>127.0.0.1:" + std::to_string(metrics) +
                           "</address></metrics>\n";
  const std::string xml = head + cluster(kCore, core_port, member(kRelay1, r1) + member(kRelay2, r2)) +
                          cluster(kCafe, cafe_port, member(kRelay3, r3)) + "</rtp_cluster_config>\n";
  // Start and -d both take it (today's refusal was at both).
  writeFile(dir.file("check.xml"), xml);
  const RunResult check = run({daemonBin(), "-d", "-c", dir.file("check.xml")});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  Daemon d(dir);
  ASSERT_TRUE(d.start(xml));
  ASSERT_TRUE(eventually([&] { return onlineMembers(d, kCore) == 2 && onlineMembers(d, kCafe) == 1; },
                         milliseconds(15000)))
      << d.client({"ls"}).out;

  // ls: names printed as they are.
  const std::string list = d.ok({"ls"});
  EXPECT_NE(list.find("    name = " + kCore + "\n"), std::string::npos) << list;
  EXPECT_NE(list.find("    name = " + kCafe + "\n"), std::string::npos) << list;
  // ls CLUSTER through the client (the word is quoted on the wire) and raw.
  const std::string members = d.ok({"ls", kCore});
  EXPECT_NE(members.find("        name = " + kRelay1 + "\n"), std::string::npos) << members;
  EXPECT_NE(members.find("        name = " + kRelay2 + "\n"), std::string::npos) << members;
  EXPECT_NE(members.find("        capacity = 2500000\n"), std::string::npos) << members;
  EXPECT_EQ(d.raw("ls \"" + kCore + "\"").rfind("Online members of the cluster #0:\n", 0), 0u);
  EXPECT_EQ(d.raw("ls 'caf\xc3\xa9 Zone \xe2\x82\xac'").rfind("Online members of the cluster #1:\n", 0), 0u);
  // Unquoted, as the reference reads it: the rest of the line is the name.
  EXPECT_EQ(d.raw("ls " + kCore).rfind("Online members of the cluster #0:\n", 0), 0u);
  EXPECT_EQ(d.raw("ls Core 2"), "ERROR: ls: unexpected argument \"2\"; usage: ls [CLUSTER_NAME] [json]\n");
  EXPECT_EQ(d.raw("ls \"" + kCore), "ERROR: unterminated quote (\") opened at offset 3\n");
  // JSON carries UTF-8 intact.
  const std::string json = d.ok({"ls", kCafe, "json"});
  EXPECT_NE(json.find("\"name\":\"" + kRelay3 + "\""), std::string::npos) << json;
  EXPECT_NE(d.ok({"ls", "json"}).find("\"name\":\"" + kCafe + "\""), std::string::npos);
  EXPECT_NE(d.ok({"ls", kCore, "json"}).find("\"name\":\"relay \\\"2\\\", \xe4\xb8\xad\xe7\xbb\xa7\""),
            std::string::npos);
  const std::string workers = d.ok({"workers"});
  EXPECT_NE(workers.find(kCafe), std::string::npos) << workers;
  EXPECT_NE(d.ok({"workers", "json"}).find("\"" + kCafe + "\""), std::string::npos);

  // The signalling path works for members with such names.
  ControlClient core({Transport::kUdp, "127.0.0.1", core_port, ""});
  EXPECT_NE(core.command("U names-call 192.0.2.1 4000 ft"), "");

  // modify: pause/suspend/resume/delete/remove and add, at spaced names.
  EXPECT_EQ(d.ok({"modify", kCore, "pause", kRelay2}), "OK\n");
  EXPECT_NE(d.ok({"ls", kCore}).find("        name = " + kRelay2 + "\n"), std::string::npos);
  EXPECT_NE(d.ok({"ls", kCore, "json"}).find("\"status\":\"SUSPENDED\""), std::string::npos);
  EXPECT_EQ(d.ok({"modify", kCore, "resume", kRelay2}), "OK\n");
  EXPECT_EQ(d.ok({"modify", kCafe, "suspend", kRelay3}), "OK\n");
  EXPECT_EQ(d.ok({"modify", kCafe, "resume", kRelay3}), "OK\n");
  const std::string add = "name=relay 4 \xe2\x82\xac,protocol=udp,address=" + r4.address().display() +
                          ",capacity=3000000,weight=5";
  EXPECT_EQ(d.ok({"modify", kCafe, "add", add}), "OK\n");
  ASSERT_TRUE(eventually([&] { return onlineMembers(d, kCafe) == 2; }, milliseconds(15000)));
  EXPECT_NE(d.ok({"ls", kCafe}).find("        name = relay 4 \xe2\x82\xac\n"), std::string::npos);
  EXPECT_EQ(d.client({"modify", kCafe, "add", add}).out, "ERROR: relay 4 \xe2\x82\xac: RTPproxy already exists\n");
  EXPECT_EQ(d.ok({"modify", kCafe, "remove", "relay 4 \xe2\x82\xac"}), "OK\n");
  EXPECT_TRUE(eventually([&] { return d.client({"ls", kCafe}).out.find("relay 4") == std::string::npos; }));
  EXPECT_EQ(d.client({"modify", kCafe, "delete", "relay 4 \xe2\x82\xac"}).out,
            "ERROR: relay 4 \xe2\x82\xac: RTPproxy not found\n");
  const RunResult unknown = d.client({"ls", "Core 2"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_EQ(unknown.out, "ERROR: Core 2: cluster not found\n");

  // Echoed names are cut after 64 bytes (docs/admin.md), not sent whole.
  const std::string huge(4000, 'x');
  const std::string cut = std::string(64, 'x') + "...";
  EXPECT_EQ(d.raw("ls " + huge), "ERROR: " + cut + ": cluster not found\n");
  EXPECT_EQ(d.raw("modify " + huge + " pause r"), "ERROR: " + cut + ": cluster not found\n");
  EXPECT_EQ(d.raw("modify \"" + kCore + "\" pause " + huge), "ERROR: " + cut + ": RTPproxy not found\n");
  const std::string long_name(200, 'y');
  EXPECT_EQ(d.raw("ls " + long_name), "ERROR: " + std::string(64, 'y') + "...: cluster not found\n");
  EXPECT_EQ(d.raw("modify \"" + kCore + "\" pause " + long_name),
            "ERROR: " + std::string(64, 'y') + "...: RTPproxy not found\n");

  // Metrics: label values as they are, escaped as Prometheus requires.
  const std::string scrape = httpGet(metrics, "/metrics");
  EXPECT_NE(scrape.find("rtp_cluster_member_online{cluster=\"" + kCore + "\",member=\"relay \\\"2\\\", "
                        "\xe4\xb8\xad\xe7\xbb\xa7\"} 1"),
            std::string::npos)
      << scrape.substr(0, 2000);
  EXPECT_NE(scrape.find("rtp_cluster_member_capacity{cluster=\"" + kCafe + "\",member=\"" + kRelay3 + "\"} 2500000"),
            std::string::npos);

  // reload: a changed file with spaced names is taken (it was refused).
  d.writeConfig(head + cluster(kCore, core_port, member(kRelay1, r1) + member(kRelay2, r2) + member("relay 4", r4)) +
                cluster(kCafe, cafe_port, member(kRelay3, r3, "7000000")) + "</rtp_cluster_config>\n");
  EXPECT_EQ(d.ok({"reload"}), "Loaded 2 clusters and 4 RTP proxies\nOK\n");
  ASSERT_TRUE(eventually([&] { return onlineMembers(d, kCore) == 3; }, milliseconds(15000)));
  EXPECT_NE(d.ok({"ls", kCafe}).find("        capacity = 7000000\n"), std::string::npos);
  EXPECT_NE(d.ok({"ls", kCore}).find("        name = relay 4\n"), std::string::npos);

  // Log lines stay key=value: a name that is not one token is quoted.
  const std::string log = d.log();
  EXPECT_NE(log.find("WORKER_READY cluster=\"" + kCafe + "\" pid="), std::string::npos) << log;
  EXPECT_NE(log.find("MEMBER_ONLINE cluster=\"Core 1\" member=\"relay 1\" reason="), std::string::npos) << log;
  EXPECT_NE(log.find("MEMBER_SUSPENDED cluster=\"Core 1\" member=\"relay \\\"2\\\", \xe4\xb8\xad\xe7\xbb\xa7\" was="),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("CLUSTER_ADDED cluster=\"Core 1\" slot="), std::string::npos) << log;

  // help (from the command table, no OK) and quit.
  const RunResult help = d.client({"help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_EQ(help.out, helpText());
  EXPECT_EQ(d.client({"quit"}).status, 0);
  EXPECT_EQ(core.command("D names-call ft"), "0");
}

}  // namespace
}  // namespace rtpc::testing
