// Admin answers rendered from a StatusSnapshot: the reference's exact `ls`
// and `ls <cluster>` screens (REFERENCE.md section 3) for every member state,
// address form and optional line; the JSON versions parsed back by a real
// JSON parser (python3); the worker listing.

#include "shared/admin_render.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>

namespace rtpc {
namespace {

SocketAddress udp(const char* host, uint16_t port) { return SocketAddress{Transport::kUdp, host, port, {}}; }
SocketAddress udp6(const char* host, uint16_t port) { return SocketAddress{Transport::kUdp6, host, port, {}}; }
SocketAddress unixPath(const char* path) { return SocketAddress{Transport::kUnix, {}, 0, path}; }

MemberSnapshot member(uint16_t index, const char* name, SocketAddress address, bool online, AdminStatus status) {
  MemberSnapshot m;
  m.index = index;
  m.name = name;
  m.address = std::move(address);
  m.weight = 100;
  m.capacity = 2500;
  m.status = status;
  m.online = online;
  if (online) m.active_sessions = 0.0;
  return m;
}

// The cluster of the reference's own test (tests/basic_network), after one
// member was suspended.
StatusSnapshot basicNetwork() {
  StatusSnapshot s;
  s.taken_unix_ms = 1700000000000;
  ClusterSnapshot c;
  c.index = 0;
  c.name = "basic_network";
  c.address = udp("127.0.0.1", 32324);
  c.members.push_back(member(0, "RTPPROXY2", udp6("::1", 32322), true, AdminStatus::kActive));
  c.members.push_back(member(1, "RTPPROXY3", udp6("::1", 32323), false, AdminStatus::kActive));
  c.members.push_back(member(2, "RTPPROXY1", udp("127.0.0.1", 32323), true, AdminStatus::kSuspended));
  c.members.push_back(member(3, "RTPPROXY0", unixPath("/tmp/rtpp0.sock"), true, AdminStatus::kActive));
  s.clusters.push_back(c);
  return s;
}

// basicNetwork()'s block of the `ls` screen.
constexpr std::string_view kBasicNetworkListed =
    "Cluster: #0\n"
    "    name = basic_network\n"
    "    address = 127.0.0.1:32324\n"
    "    online members = 3 (2 active, 1 suspended, 0 draining)\n"
    "    offline members = 1\n";

// The blocks of the `ls <cluster>` screen for member()'s members (weight
// 100, capacity 2500), built independently of the renderer.
// EmptyOfflineSectionIsFollowedByAnEmptyLine spells one out in full.
std::string line(std::string_view key, std::string_view value) {
  return "        " + std::string(key) + " = " + std::string(value) + "\n";
}

std::string blockHead(int position, std::string_view name, std::string_view address,
                      std::string_view optional_lines) {
  return "    RTPproxy: #" + std::to_string(position) + "\n" + line("name", name) + line("address", address) +
         std::string(optional_lines) + line("weight", "100") + line("capacity", "2500");
}

std::string offlineBlock(int position, std::string_view name, std::string_view address,
                         std::string_view optional_lines = {}) {
  return blockHead(position, name, address, optional_lines) + line("state", "offline");
}

struct Runtime {
  const char* status = "ACTIVE";
  const char* sessions = "0";
  const char* utilization = "0.000000";
  const char* delay = "0.000000";
};

std::string onlineBlock(int position, std::string_view name, std::string_view address, Runtime r = {},
                        std::string_view optional_lines = {}) {
  return blockHead(position, name, address, optional_lines) + line("state", "online") +
         line("active sessions", r.sessions) + line("capacity utilization", std::string(r.utilization) + "%") +
         line("average rtpc delay", std::string(r.delay) + " sec") + line("status", r.status);
}

TEST(AdminRenderTest, ClusterListMatchesTheReferenceScreen) {
  EXPECT_EQ(renderClusterList(basicNetwork()), std::string(kBasicNetworkListed) + "OK\n");
}

TEST(AdminRenderTest, ClusterListSeparatesClustersByOneEmptyLineAndPrintsUnixPaths) {
  StatusSnapshot s = basicNetwork();
  ClusterSnapshot c;
  c.index = 1;
  c.name = "local";
  c.address = unixPath("/var/run/rtpproxy.sock");
  c.members.push_back(member(0, "a", udp("10.0.0.1", 22222), true, AdminStatus::kDraining));
  c.members.push_back(member(1, "b", udp("10.0.0.2", 22222), false, AdminStatus::kDraining));
  c.members.push_back(member(2, "c", udp("10.0.0.3", 22222), false, AdminStatus::kSuspended));
  s.clusters.push_back(c);
  ClusterSnapshot v6;
  v6.index = 2;
  v6.name = "six";
  v6.address = udp6("::1", 22222);
  s.clusters.push_back(v6);
  EXPECT_EQ(renderClusterList(s),
            std::string(kBasicNetworkListed) +
            "\n"
            "Cluster: #1\n"
            "    name = local\n"
            "    address = /var/run/rtpproxy.sock\n"
            "    online members = 1 (0 active, 0 suspended, 1 draining)\n"
            "    offline members = 2\n"
            "\n"
            "Cluster: #2\n"
            "    name = six\n"
            "    address = [::1]:22222\n"
            "    online members = 0 (0 active, 0 suspended, 0 draining)\n"
            "    offline members = 0\n"
            "OK\n");
}

TEST(AdminRenderTest, ClusterListWithoutClustersIsJustOk) { EXPECT_EQ(renderClusterList(StatusSnapshot{}), "OK\n"); }

TEST(AdminRenderTest, MembersSortOnlineByNameThenListOfflineInSlotOrder) {
  StatusSnapshot s = basicNetwork();
  ClusterSnapshot& c = s.clusters[0];
  c.members[0].wan_address = "1.2.3.4";
  c.members[0].lan_address = "127.0.0.1";
  c.members[0].active_sessions = 312.9;  // %d in the reference: the integer part
  c.members[0].utilisation = 0.125;
  c.members[0].rtt_seconds = 0.000412;
  c.members[2].active_sessions.reset();  // before the first heartbeat answer
  c.members[2].cmd_out_address = "10.0.0.1";
  c.members.push_back(member(4, "RTPPROXY9", udp("127.0.0.1", 9), false, AdminStatus::kSuspended));
  c.members.back().wan_address = "5.6.7.8";
  c.members.push_back(member(5, "RTPPROXY8", unixPath("/run/r8.sock"), false, AdminStatus::kDraining));
  c.members.push_back(member(6, "RTPPROXY7", udp("127.0.0.1", 7), true, AdminStatus::kDraining));
  EXPECT_EQ(renderClusterMembers(s, "basic_network"),
            "Online members of the cluster #0:\n" +
            onlineBlock(0, "RTPPROXY0", "/tmp/rtpp0.sock") + "\n" +
            onlineBlock(1, "RTPPROXY1", "127.0.0.1:32323", {.status = "SUSPENDED", .sessions = "UNKNOWN"},
                        line("cmd_out_address", "10.0.0.1")) +
            "\n" +
            onlineBlock(2, "RTPPROXY2", "[::1]:32322",
                        {.sessions = "312", .utilization = "12.500000", .delay = "0.000412"},
                        line("wan_address", "1.2.3.4") + line("lan_address", "127.0.0.1")) +
            "\n" + onlineBlock(3, "RTPPROXY7", "127.0.0.1:7", {.status = "DRAINING"}) +
            "\n"
            "Offline members of the cluster #0:\n" +
            offlineBlock(0, "RTPPROXY3", "[::1]:32323") + "\n" +
            offlineBlock(1, "RTPPROXY9", "127.0.0.1:9", line("wan_address", "5.6.7.8")) + "\n" +
            offlineBlock(2, "RTPPROXY8", "/run/r8.sock") + "OK\n");
}

TEST(AdminRenderTest, EmptyOfflineSectionIsFollowedByAnEmptyLine) {
  StatusSnapshot s = basicNetwork();
  ClusterSnapshot& c = s.clusters[0];
  c.members.erase(c.members.begin() + 1, c.members.end());  // only RTPPROXY2, online
  EXPECT_EQ(renderClusterMembers(s, "basic_network"),
            "Online members of the cluster #0:\n"
            "    RTPproxy: #0\n"
            "        name = RTPPROXY2\n"
            "        address = [::1]:32322\n"
            "        weight = 100\n"
            "        capacity = 2500\n"
            "        state = online\n"
            "        active sessions = 0\n"
            "        capacity utilization = 0.000000%\n"
            "        average rtpc delay = 0.000000 sec\n"
            "        status = ACTIVE\n"
            "\n"
            "Offline members of the cluster #0:\n"
            "\n"
            "OK\n");
}

TEST(AdminRenderTest, NoOnlineMembersLeavesAnEmptyOnlineSection) {
  StatusSnapshot s = basicNetwork();
  ClusterSnapshot& c = s.clusters[0];
  c.index = 3;
  c.members.erase(c.members.begin());
  c.members.erase(c.members.begin() + 1, c.members.end());  // only RTPPROXY3, offline
  EXPECT_EQ(renderClusterMembers(s, "basic_network"),
            "Online members of the cluster #3:\n"
            "\n"
            "Offline members of the cluster #3:\n" +
                offlineBlock(0, "RTPPROXY3", "[::1]:32323") + "OK\n");
  c.members.clear();
  EXPECT_EQ(renderClusterMembers(s, "basic_network"),
            "Online members of the cluster #3:\n"
            "\n"
            "Offline members of the cluster #3:\n"
            "\n"
            "OK\n");
}

TEST(AdminRenderTest, UnknownClusterIsTheReferenceError) {
  const StatusSnapshot s = basicNetwork();
  EXPECT_EQ(renderClusterMembers(s, "nope"), "ERROR: nope: cluster not found\n");
  EXPECT_EQ(renderClusterMembersJson(s, "basic"), "ERROR: basic: cluster not found\n");
}

// basicNetwork() with its worker running (pid 4242, 2 restarts, up for
// `uptime_ms`) and a second cluster "down" whose worker is stopped.
StatusSnapshot withWorkers(uint64_t uptime_ms, uint32_t stopped_restarts) {
  StatusSnapshot s = basicNetwork();
  s.clusters[0].worker_pid = 4242;
  s.clusters[0].worker_restarts = 2;
  s.clusters[0].worker_started_unix_ms = s.taken_unix_ms - uptime_ms;
  ClusterSnapshot stopped;
  stopped.index = 1;
  stopped.name = "down";
  stopped.worker_restarts = stopped_restarts;
  s.clusters.push_back(stopped);
  return s;
}

TEST(AdminRenderTest, WorkersShowPidRestartsAndUptime) {
  const StatusSnapshot s = withWorkers(3723999, 7);
  EXPECT_EQ(renderWorkers(s),
            "Worker: #0\n"
            "    cluster = basic_network\n"
            "    pid = 4242\n"
            "    restarts = 2\n"
            "    uptime = 3723 sec\n"
            "\n"
            "Worker: #1\n"
            "    cluster = down\n"
            "    pid = none\n"
            "    restarts = 7\n"
            "    uptime = UNKNOWN\n"
            "OK\n");
  EXPECT_EQ(renderWorkers(StatusSnapshot{}), "OK\n");
}

// --- JSON, checked by a real parser -----------------------------------------

// The system interpreter when there is one: a version-manager shim on PATH
// can cost a second per start.
const std::string& pythonBinary() {
  static const std::string binary = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  return binary;
}

bool havePython() {
  static const bool found = std::system((pythonBinary() + " -c pass >/dev/null 2>&1").c_str()) == 0;
  return found;
}

// Runs `code` with `d` bound to the parsed JSON; returns what it prints, or
// "PARSE ERROR..." when the document is not valid JSON.
std::string python(const std::string& json, const std::string& code) {
  char dir_template[] = "/tmp/rtpc_admin_render.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return "mkdtemp failed";
  const std::string dir = dir_template;
  std::ofstream(dir + "/doc.json", std::ios::binary) << json;
  std::ofstream(dir + "/check.py") << "import json, sys\n"
                                      "try:\n"
                                      "    d = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))\n"
                                      "except Exception as e:\n"
                                      "    print('PARSE ERROR', e)\n"
                                      "    sys.exit(0)\n"
                                   << code << "\n";
  const std::string cmd = pythonBinary() + " " + dir + "/check.py " + dir + "/doc.json 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
  }
  std::remove((dir + "/doc.json").c_str());
  std::remove((dir + "/check.py").c_str());
  rmdir(dir.c_str());
  return out;
}

// A JSON answer is one line of JSON and then the OK line.
std::string jsonPart(const std::string& answer) {
  EXPECT_GE(answer.size(), 4u);
  EXPECT_EQ(answer.substr(answer.size() - 4), "\nOK\n");
  const std::string json = answer.substr(0, answer.size() - 4);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  return json;
}

TEST(AdminRenderJsonTest, ClusterListCarriesTheTextScreensCounts) {
  if (!havePython()) GTEST_SKIP() << "python3 not available";
  StatusSnapshot s = basicNetwork();
  s.clusters[0].tracked_calls = 17;
  s.clusters[0].commands = 12345678901234ull;
  const std::string json = jsonPart(renderClusterListJson(s));
  EXPECT_EQ(python(json,
                   "c = d['clusters'][0]\n"
                   "print(d['taken_unix_ms'], len(d['clusters']), c['index'], c['name'], c['protocol'], c['address'],\n"
                   "      c['online_members'], c['online_active'], c['online_suspended'], c['online_draining'],\n"
                   "      c['offline_members'], c['tracked_calls'], c['commands'])"),
            "1700000000000 1 0 basic_network udp 127.0.0.1:32324 3 2 1 0 1 17 12345678901234\n");
  EXPECT_EQ(python(jsonPart(renderClusterListJson(StatusSnapshot{})), "print(d)"),
            "{'taken_unix_ms': 0, 'clusters': []}\n");
}

TEST(AdminRenderJsonTest, MembersComeInTheTextOrderWithEveryField) {
  if (!havePython()) GTEST_SKIP() << "python3 not available";
  StatusSnapshot s = basicNetwork();
  ClusterSnapshot& c = s.clusters[0];
  c.members[0].wan_address = "1.2.3.4";
  c.members[0].active_sessions = 312.9;
  c.members[0].utilisation = 0.125;
  c.members[0].rtt_seconds = 0.000412;
  c.members[0].bound_sessions = 300;
  c.members[0].capabilities = 0x1f;
  c.members[0].stats_unsupported = true;
  c.members[0].commands = 99;
  c.members[0].timeouts = 3;
  c.members[0].failovers = 1;
  c.members[2].active_sessions.reset();
  c.members[3].rtt_seconds = std::numeric_limits<double>::quiet_NaN();
  const std::string json = jsonPart(renderClusterMembersJson(s, "basic_network"));
  EXPECT_EQ(python(json, "print([(m['name'], m['state'], m['status'], m['index']) for m in d['cluster']['members']])"),
            "[('RTPPROXY0', 'online', 'ACTIVE', 3), ('RTPPROXY1', 'online', 'SUSPENDED', 2), "
            "('RTPPROXY2', 'online', 'ACTIVE', 0), ('RTPPROXY3', 'offline', 'ACTIVE', 1)]\n");
  EXPECT_EQ(python(json,
                   "m = d['cluster']['members'][2]\n"
                   "print(m['protocol'], m['address'], m['wan_address'], m['lan_address'], m['cmd_out_address'],\n"
                   "      m['weight'], m['capacity'], m['active_sessions'], m['bound_sessions'],\n"
                   "      m['capacity_utilization_percent'], m['average_rtpc_delay_sec'], m['capabilities'],\n"
                   "      m['stats_unsupported'], m['commands'], m['timeouts'], m['failovers'])"),
            "udp6 [::1]:32322 1.2.3.4 None None 100 2500 312 300 12.5 0.000412 31 True 99 3 1\n");
  EXPECT_EQ(python(json,
                   "ms = d['cluster']['members']\n"
                   "print(ms[1]['active_sessions'], ms[0]['average_rtpc_delay_sec'], ms[0]['address'],\n"
                   "      ms[0]['protocol'], d['cluster']['online_members'])"),
            "None None /tmp/rtpp0.sock unix 3\n");
}

TEST(AdminRenderJsonTest, WorkersJsonUsesNullForAStoppedWorker) {
  if (!havePython()) GTEST_SKIP() << "python3 not available";
  const StatusSnapshot s = withWorkers(5000, 0);
  EXPECT_EQ(python(jsonPart(renderWorkersJson(s)), "print([sorted(w.items()) for w in d['workers']])"),
            "[[('cluster', 'basic_network'), ('index', 0), ('pid', 4242), ('restarts', 2), "
            "('started_unix_ms', 1699999995000), ('uptime_sec', 5)], "
            "[('cluster', 'down'), ('index', 1), ('pid', None), ('restarts', 0), ('started_unix_ms', None), "
            "('uptime_sec', None)]]\n");
}

TEST(AdminRenderJsonTest, HostileNamesStayValidJsonAndRoundTrip) {
  if (!havePython()) GTEST_SKIP() << "python3 not available";
  // Names come from shared memory: quotes, backslashes, control and
  // non-UTF-8 bytes must not break the document.
  const std::string hostile = std::string("a\"b\\c\n\t\x01\x7f\xc3\xa9\xff", 12) + "</script>";
  StatusSnapshot s = basicNetwork();
  s.clusters[0].name = hostile;
  s.clusters[0].members[0].name = hostile;
  s.clusters[0].members[0].wan_address = hostile;
  const std::string list = jsonPart(renderClusterListJson(s));
  const std::string members = jsonPart(renderClusterMembersJson(s, hostile));
  // UTF-8 (é) arrives as the character it is; the stray byte 0xff as U+FFFD.
  const std::string expected = "[97, 34, 98, 92, 99, 10, 9, 1, 127, 233, 65533, 60, 47]\n";
  const std::string code = "print([ord(ch) for ch in NAME][:13])";
  EXPECT_EQ(python(list, "NAME = d['clusters'][0]['name']\n" + code), expected);
  EXPECT_EQ(python(members, "NAME = d['cluster']['members'][2]['wan_address']\n" + code), expected);
  EXPECT_EQ(jsonString("x\"\\\n"), "\"x\\\"\\\\\\n\"");
}

// Issue 10: `café` came out as `cafÃ©` (each byte escaped as a code point).
TEST(AdminRenderJsonTest, Utf8NamesAreCarriedIntactAndOnlyWhatJsonRequiresIsEscaped) {
  EXPECT_EQ(jsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(jsonString("Core 1 \xe4\xb8\xad\xe7\xbb\xa7 \xf0\x9f\x93\x9e"), "\"Core 1 \xe4\xb8\xad\xe7\xbb\xa7 \xf0\x9f\x93\x9e\"");
  EXPECT_EQ(jsonString("a\"b\\c\n\r\t\x01\x7f/"), "\"a\\\"b\\\\c\\n\\r\\t\\u0001\x7f/\"");
  EXPECT_EQ(jsonString("x\xc3"), "\"x\\ufffd\"");  // truncated sequence
  StatusSnapshot s = basicNetwork();
  s.clusters[0].name = "caf\xc3\xa9 1";
  s.clusters[0].members[0].name = "relay \xe2\x82\xac";
  const std::string list = renderClusterListJson(s);
  EXPECT_NE(list.find("\"name\":\"caf\xc3\xa9 1\""), std::string::npos) << list;
  const std::string members = renderClusterMembersJson(s, "caf\xc3\xa9 1");
  EXPECT_NE(members.find("\"name\":\"relay \xe2\x82\xac\""), std::string::npos) << members;
  // The text screens print names as they are.
  EXPECT_NE(renderClusterList(s).find("    name = caf\xc3\xa9 1\n"), std::string::npos);
  EXPECT_NE(renderClusterMembers(s, "caf\xc3\xa9 1").find("        name = relay \xe2\x82\xac\n"), std::string::npos);
  // A name echoed in an error is cut after 64 bytes, between characters.
  EXPECT_EQ(renderClusterMembers(s, std::string(200, 'q')), "ERROR: " + std::string(64, 'q') + "...: cluster not found\n");
}

TEST(AdminRenderJsonTest, ThePythonCheckRejectsInvalidJson) {
  if (!havePython()) GTEST_SKIP() << "python3 not available";
  // Guards the guard: a broken document must not pass silently.
  EXPECT_EQ(python("{\"a\":1,}", "print('parsed')").rfind("PARSE ERROR", 0), 0u);
  EXPECT_EQ(python("{\"a\":\"\xff\"}", "print('parsed')").rfind("PARSE ERROR", 0), 0u);
}

}  // namespace
}  // namespace rtpc
