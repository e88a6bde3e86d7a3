// The configuration loader: every form the reference accepts loads with the
// same meaning, our extensions load as documented (docs/config.md), and every
// invalid file is refused with exactly one line naming file, line and fault.

#include "shared/config_loader.h"

#include <gtest/gtest.h>

#include <sstream>

#include <fstream>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

namespace rtpc {
namespace {

LoadResult load(std::string_view xml) { return loadConfigText(xml, "rtp_cluster.xml"); }

Config loadOk(std::string_view xml) {
  LoadResult r = load(xml);
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.error, "");
  return r.ok() ? std::move(*r.config) : Config{};
}

SocketAddress ip(Transport t, const char* host, uint16_t port) {
  SocketAddress a;
  a.transport = t;
  a.host = host;
  a.port = port;
  return a;
}

SocketAddress unixPath(Transport t, const char* path) {
  SocketAddress a;
  a.transport = t;
  a.path = path;
  return a;
}

// The repository root: RTPC_SOURCE_ROOT when set, else derived from this
// file's compiled-in path, which meson makes relative to the build directory
// (the executable lives in BUILD/tests/unit).
std::string sourceRoot() {
  if (const char* env = std::getenv("RTPC_SOURCE_ROOT"); env != nullptr && *env != '\0') return env;
  std::string file = __FILE__;
  if (!file.empty() && file.front() != '/') {
    char exe[4096] = {};
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    std::string build = n > 0 ? std::string(exe, static_cast<size_t>(n)) : std::string(".");
    for (int i = 0; i < 3; ++i) build = build.substr(0, build.rfind('/'));
    file = build + "/" + file;
  }
  return file.substr(0, file.rfind("/tests/unit/"));
}

// A one-cluster document; line 3 holds cluster extras, line 4 the member's
// name/protocol/address, line 5 its other fields.
std::string doc(std::string_view line3, std::string_view line4 = {}, std::string_view line5 = {}) {
  std::string s = "<rtp_cluster_config>\n"
                  "<rtp_cluster><name>c1</name><protocol>udp</protocol><address>127.0.0.1:22222</address>\n";
  s += line3;
  s += "\n<rtpproxy>";
  s += line4.empty() ? "<name>R1</name><protocol>udp</protocol><address>127.0.0.1:22300</address>" : line4;
  s += "\n";
  s += line5.empty() ? "<weight>1</weight><capacity>10</capacity><status>ACTIVE</status>" : line5;
  s += "\n</rtpproxy>\n</rtp_cluster>\n</rtp_cluster_config>\n";
  return s;
}

std::string member5(std::string_view fields) { return doc("", "", fields); }
std::string member4(std::string_view fields) { return doc("", fields, ""); }

// The member of doc() with line 5 (its fields after name/protocol/address)
// replaced; a default MemberConfig when the document does not load.
MemberConfig loadMember(std::string_view fields) {
  const Config config = loadOk(member5(fields));
  if (config.clusters.size() != 1 || config.clusters[0].members.size() != 1) return {};
  return config.clusters[0].members[0];
}

// REFERENCE.md section 2, verbatim.
constexpr std::string_view kReferenceExample = R"(<rtp_cluster_config>
  <rtp_cluster>
    <name>Supercluster#1</name>          <!-- unique among clusters -->
    <protocol>UDP</protocol>             <!-- udp | udp6 | unix  (case-insensitive) -->
    <address>192.168.222.1:44</address>  <!-- control socket the signalling talks to; udp port defaults to 22222 -->
    <disconnect_notify>                  <!-- optional, see section 6 -->
      <inbound_address>192.168.222.1:12131</inbound_address>
      <dest_socket_prefix>/var/run/b2bua.sock</dest_socket_prefix>
    </disconnect_notify>
    <capacity_limit type="hard" />       <!-- optional: soft (default) | hard -->
    <rtpproxy>                           <!-- one or more -->
      <name>RTPPROXY1</name>             <!-- unique inside its cluster -->
      <protocol>UDP</protocol>           <!-- udp | udp6 | unix -->
      <address>192.168.222.1:4444</address>
      <weight>100</weight>               <!-- integer > 0 -->
      <capacity>2500</capacity>          <!-- integer > 0: sessions this relay is sized for -->
      <status>ACTIVE</status>            <!-- ACTIVE | SUSPENDED -->
      <wan_address>1.2.3.4</wan_address> <!-- optional -->
      <lan_address>10.0.0.5</lan_address><!-- optional -->
      <cmd_out_address>10.0.0.1</cmd_out_address> <!-- optional: source address for commands to it -->
    </rtpproxy>
  </rtp_cluster>
</rtp_cluster_config>
)";

TEST(ConfigLoaderTest, LoadsTheReferenceExampleWithEveryField) {
  const Config config = loadOk(kReferenceExample);
  EXPECT_EQ(config.source_path, "rtp_cluster.xml");
  ASSERT_EQ(config.clusters.size(), 1u);
  const ClusterConfig& c = config.clusters[0];
  EXPECT_EQ(c.name, "Supercluster#1");
  EXPECT_EQ(c.control, ip(Transport::kUdp, "192.168.222.1", 44));
  ASSERT_TRUE(c.disconnect_notify.has_value());
  EXPECT_EQ(c.disconnect_notify->inbound_address, ip(Transport::kTcp, "192.168.222.1", 12131));
  EXPECT_EQ(c.disconnect_notify->dest_socket_prefix, "/var/run/b2bua.sock");
  EXPECT_EQ(c.capacity_limit, CapacityLimit::kHard);
  EXPECT_EQ(c.tuning, ClusterTuning{});
  ASSERT_EQ(c.members.size(), 1u);
  const MemberConfig& m = c.members[0];
  EXPECT_EQ(m.name, "RTPPROXY1");
  EXPECT_EQ(m.address, ip(Transport::kUdp, "192.168.222.1", 4444));
  EXPECT_EQ(m.weight, 100u);
  EXPECT_EQ(m.capacity, 2500u);
  EXPECT_EQ(m.status, AdminStatus::kActive);
  EXPECT_EQ(m.wan_address, "1.2.3.4");
  EXPECT_EQ(m.lan_address, "10.0.0.5");
  EXPECT_EQ(m.cmd_out_address, "10.0.0.1");
}

TEST(ConfigLoaderTest, LoadsThePackagedExampleFile) {
  const std::string path = sourceRoot() + "/packaging/rtp_cluster.xml";
  const LoadResult r = loadConfigFile(path);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.config->source_path, path);
  ASSERT_EQ(r.config->clusters.size(), 2u);
  EXPECT_EQ(r.config->memberCount(), 3u);
  EXPECT_EQ(r.config->clusters[1].control, unixPath(Transport::kUnix, "/run/rtp_cluster/demo.sock"));
  EXPECT_EQ(r.config->clusters[1].members[0].weight, 50u);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The reference projects' own example files, copied unchanged into
// tests/reference_configs/ (origin in its README.md).
TEST(ConfigLoaderTest, LoadsTheReferenceProjectsOwnExampleFilesUnchanged) {
  for (const char* project : {"rtp_cluster", "go-rtp_cluster"}) {
    SCOPED_TRACE(project);
    const std::string dir = sourceRoot() + "/tests/reference_configs/" + std::string(project);
    const LoadResult example = loadConfigFile(dir + "/rtp_cluster.xml");
    ASSERT_TRUE(example.ok()) << example.error;
    ASSERT_EQ(example.config->clusters.size(), 2u);
    EXPECT_EQ(example.config->clusters[0].name, "Supercluster#1");
    EXPECT_EQ(example.config->clusters[1].name, "Supercluster#2");
    EXPECT_EQ(example.config->clusters[1].control, unixPath(Transport::kUnix, "/var/run/cl2.sock"));
    EXPECT_EQ(example.config->clusters[0].members[1].status, AdminStatus::kSuspended);
    EXPECT_EQ(example.config->memberCount(), 4u);
    // The reference's test fills %%STATUS%% with sed; so does this one.
    const std::string in = readFile(dir + "/basic_network.xml.in");
    ASSERT_NE(in.find("%%STATUS%%"), std::string::npos);
    for (const char* status : {"ACTIVE", "SUSPENDED"}) {
      std::string xml = in;
      xml.replace(xml.find("%%STATUS%%"), 10, status);
      const LoadResult net = loadConfigText(xml, "basic_network.xml");
      ASSERT_TRUE(net.ok()) << net.error;
      EXPECT_EQ(net.config->clusters.at(0).members.size(), 4u);
    }
  }
}

// Issue 10: names are free text as in the reference, and numbers above the
// old limit of 1000000 are taken.
TEST(ConfigLoaderTest, NamesAreFreeTextAndLargeNumbersAreTaken) {
  const Config config = loadOk(R"(<rtp_cluster_config>
  <rtp_cluster>
    <name>Core 1</name><protocol>udp</protocol><address>127.0.0.1:5</address>
    <rtpproxy><name>relay 2</name><protocol>udp</protocol><address>127.0.0.1:6</address>
      <weight>5000000</weight><capacity>4294967295</capacity><status>ACTIVE</status></rtpproxy>
    <rtpproxy><name>caf)" "\xc3\xa9" R"( &quot;A&quot;, &lt;b&gt; &amp; #1</name><protocol>udp</protocol><address>127.0.0.1:7</address>
      <weight>1</weight><capacity>2500000</capacity><status>ACTIVE</status></rtpproxy>
  </rtp_cluster>
  <rtp_cluster>
    <name>)" "\xe4\xb8\xad\xe7\xbb\xa7 \xd0\xa1\xd0\xb5\xd1\x82\xd1\x8c" R"(</name><protocol>udp</protocol><address>127.0.0.1:8</address>
    <rtpproxy><name>relay 2</name><protocol>udp</protocol><address>127.0.0.1:6</address>
      <weight>1</weight><capacity>1</capacity><status>ACTIVE</status></rtpproxy>
  </rtp_cluster>
</rtp_cluster_config>)");
  ASSERT_EQ(config.clusters.size(), 2u);
  EXPECT_EQ(config.clusters[0].name, "Core 1");
  EXPECT_EQ(config.clusters[0].members[0].name, "relay 2");
  EXPECT_EQ(config.clusters[0].members[0].weight, 5000000u);
  EXPECT_EQ(config.clusters[0].members[0].capacity, 4294967295u);
  EXPECT_EQ(config.clusters[0].members[1].name, "caf\xc3\xa9 \"A\", <b> & #1");
  EXPECT_EQ(config.clusters[0].members[1].capacity, 2500000u);
  EXPECT_EQ(config.clusters[1].name, "\xe4\xb8\xad\xe7\xbb\xa7 \xd0\xa1\xd0\xb5\xd1\x82\xd1\x8c");
  // Spaced names are still unique names.
  const LoadResult dup = loadConfigText(R"(<rtp_cluster_config><rtp_cluster>
<name>Core 1</name><protocol>udp</protocol><address>127.0.0.1:5</address>
<rtpproxy><name>relay 2</name><protocol>udp</protocol><address>127.0.0.1:6</address><weight>1</weight><capacity>1</capacity></rtpproxy>
<rtpproxy><name> relay 2 </name><protocol>udp</protocol><address>127.0.0.1:7</address><weight>1</weight><capacity>1</capacity></rtpproxy>
</rtp_cluster></rtp_cluster_config>)",
                                        "rtp_cluster.xml");
  EXPECT_EQ(dup.error, "rtp_cluster.xml:4: cluster \"Core 1\": duplicate rtpproxy name \"relay 2\" (first at line 3)");
}

// The reference's own test configuration (tests/basic_network.xml.in), with
// its placeholder filled in: upper-case protocols, a unix member, both udp6
// forms.
TEST(ConfigLoaderTest, LoadsTheReferenceTestNetwork) {
  const Config config = loadOk(R"(<rtp_cluster_config>

  <rtp_cluster>
    <name>basic_network</name>
    <protocol>UDP</protocol>
    <address>127.0.0.1:32324</address>

    <rtpproxy>
      <name>RTPPROXY0</name>
      <protocol>UNIX</protocol>
      <address>/tmp/rtpp0.sock</address>
      <weight>100</weight>
      <capacity>2500</capacity>
      <status>ACTIVE</status>
      <wan_address>1.2.3.4</wan_address>
      <lan_address>127.0.0.1</lan_address>
    </rtpproxy>

    <rtpproxy>
      <name>RTPPROXY1</name>
      <protocol>UDP</protocol>
      <address>127.0.0.1:32323</address>
      <weight>100</weight>
      <capacity>2500</capacity>
      <status>SUSPENDED</status>
      <wan_address>1.2.3.4</wan_address>
      <lan_address>127.0.0.1</lan_address>
    </rtpproxy>

    <rtpproxy>
      <name>RTPPROXY2</name>
      <protocol>UDP6</protocol>
      <address>localhost:32322</address>
      <weight>100</weight>
      <capacity>2500</capacity>
      <status>ACTIVE</status>
      <wan_address>1.2.3.4</wan_address>
      <lan_address>127.0.0.1</lan_address>
    </rtpproxy>

    <rtpproxy>
      <name>RTPPROXY3</name>
      <protocol>UDP6</protocol>
      <address>[::1]:32323</address>
      <weight>100</weight>
      <capacity>2500</capacity>
      <status>ACTIVE</status>
    </rtpproxy>

  </rtp_cluster>

</rtp_cluster_config>
)");
  ASSERT_EQ(config.clusters.size(), 1u);
  const ClusterConfig& c = config.clusters[0];
  EXPECT_EQ(c.capacity_limit, CapacityLimit::kSoft);
  EXPECT_FALSE(c.disconnect_notify.has_value());
  ASSERT_EQ(c.members.size(), 4u);
  EXPECT_EQ(c.members[0].address, unixPath(Transport::kUnix, "/tmp/rtpp0.sock"));
  EXPECT_EQ(c.members[1].status, AdminStatus::kSuspended);
  EXPECT_EQ(c.members[2].address, ip(Transport::kUdp6, "localhost", 32322));
  EXPECT_EQ(c.members[3].address, ip(Transport::kUdp6, "::1", 32323));
  EXPECT_EQ(c.members[3].address.display(), "[::1]:32323");
  EXPECT_EQ(c.members[3].wan_address, "");
}

TEST(ConfigLoaderTest, KeywordsAreCaseInsensitiveAndPortsDefault) {
  const Config config = loadOk(R"(<rtp_cluster_config>
  <rtp_cluster>
    <name>c1</name><protocol>Udp</protocol><address>10.0.0.1</address>
    <capacity_limit type="HARD"/>
    <rtpproxy><name>a</name><protocol>uDp6</protocol><address>::1</address>
      <weight>1</weight><capacity>1</capacity><status>suspended</status></rtpproxy>
    <rtpproxy><name>b</name><protocol>udp</protocol><address>relay.example.net</address>
      <weight>1</weight><capacity>1</capacity><status>Active</status></rtpproxy>
  </rtp_cluster>
</rtp_cluster_config>)");
  ASSERT_EQ(config.clusters.size(), 1u);
  const ClusterConfig& c = config.clusters[0];
  EXPECT_EQ(c.control, ip(Transport::kUdp, "10.0.0.1", 22222));
  EXPECT_EQ(c.capacity_limit, CapacityLimit::kHard);
  EXPECT_EQ(c.members[0].address, ip(Transport::kUdp6, "::1", 22222));
  EXPECT_EQ(c.members[0].status, AdminStatus::kSuspended);
  EXPECT_EQ(c.members[1].address, ip(Transport::kUdp, "relay.example.net", 22222));
  EXPECT_EQ(c.members[1].status, AdminStatus::kActive);
}

TEST(ConfigLoaderTest, OptionalElementsTakeTheirDefaults) {
  const Config config = loadOk(R"(<rtp_cluster_config><rtp_cluster>
    <name>c1</name><protocol>unix</protocol><address>/tmp/c1.sock</address>
    <rtpproxy><name>a</name><protocol>udp</protocol><address>127.0.0.1:1</address>
      <weight>1</weight><capacity>1</capacity></rtpproxy>
  </rtp_cluster></rtp_cluster_config>)");
  ASSERT_EQ(config.clusters.size(), 1u);
  const ClusterConfig& c = config.clusters[0];
  EXPECT_EQ(c.control, unixPath(Transport::kUnix, "/tmp/c1.sock"));
  EXPECT_EQ(c.capacity_limit, CapacityLimit::kSoft);
  EXPECT_FALSE(c.disconnect_notify.has_value());
  EXPECT_EQ(c.tuning.heartbeat_interval_ms, 1000u);
  EXPECT_EQ(c.tuning.command_timeout_ms, 800u);
  EXPECT_EQ(c.tuning.command_retries, 3u);
  EXPECT_EQ(c.tuning.heartbeat_failures, 3u);
  EXPECT_EQ(c.tuning.offline_probe_interval_ms, 2000u);
  EXPECT_EQ(c.tuning.session_table_size, 1048576u);
  EXPECT_EQ(c.members[0].status, AdminStatus::kActive);
  EXPECT_EQ(c.members[0].wan_address, "");
  EXPECT_EQ(c.members[0].lan_address, "");
  EXPECT_EQ(c.members[0].cmd_out_address, "");
}

TEST(ConfigLoaderTest, LoadsTheExtensions) {
  const Config config = loadOk(R"(<rtp_cluster_config>
  <rtp_cluster>
    <name>streams</name><protocol>cunix</protocol><address>/run/rtpc/streams.sock</address>
    <tuning>
      <heartbeat_interval>500</heartbeat_interval>
      <command_timeout>300</command_timeout>
      <command_retries>0</command_retries>
      <heartbeat_failures>1</heartbeat_failures>
      <offline_probe_interval>750</offline_probe_interval>
      <session_table_size>4096</session_table_size>
    </tuning>
    <rtpproxy><name>t4</name><protocol>tcp</protocol><address>127.0.0.1:9000</address>
      <weight>10</weight><capacity>100</capacity></rtpproxy>
    <rtpproxy><name>t6</name><protocol>tcp6</protocol><address>[::1]:9001</address>
      <weight>10</weight><capacity>100</capacity></rtpproxy>
    <rtpproxy><name>cu</name><protocol>cunix</protocol><address>/run/rtpproxy.sock</address>
      <weight>10</weight><capacity>100</capacity></rtpproxy>
    <rtpproxy><name>backup</name><protocol>udp</protocol><address>127.0.0.1:9002</address>
      <weight>0</weight><capacity>100</capacity></rtpproxy>
  </rtp_cluster>
  <rtp_cluster>
    <name>tcp-control</name><protocol>tcp</protocol><address>127.0.0.1:22222</address>
    <rtpproxy><name>a</name><protocol>udp</protocol><address>127.0.0.1:9000</address>
      <weight>1</weight><capacity>1</capacity></rtpproxy>
  </rtp_cluster>
  <rtp_cluster>
    <name>udp-control</name><protocol>udp</protocol><address>127.0.0.1:22222</address>
    <rtpproxy><name>a</name><protocol>udp</protocol><address>127.0.0.1:9000</address>
      <weight>1</weight><capacity>1</capacity></rtpproxy>
  </rtp_cluster>
  <rtp_cluster>
    <name>tcp6-control</name><protocol>tcp6</protocol><address>[::1]:22222</address>
    <disconnect_notify>
      <inbound_address>[::1]:12131</inbound_address>
      <dest_socket_prefix>/var/run/b2bua.sock</dest_socket_prefix>
    </disconnect_notify>
    <rtpproxy><name>a</name><protocol>udp6</protocol><address>[::1]:9000</address>
      <weight>1</weight><capacity>1000000</capacity></rtpproxy>
  </rtp_cluster>
</rtp_cluster_config>)");
  ASSERT_EQ(config.clusters.size(), 4u);
  EXPECT_EQ(config.memberCount(), 7u);
  const ClusterConfig& s = config.clusters[0];
  EXPECT_EQ(s.control, unixPath(Transport::kCunix, "/run/rtpc/streams.sock"));
  const ClusterTuning expected_tuning{500, 300, 0, 1, 750, 4096};
  EXPECT_EQ(s.tuning, expected_tuning);
  EXPECT_EQ(s.members[0].address, ip(Transport::kTcp, "127.0.0.1", 9000));
  EXPECT_EQ(s.members[1].address, ip(Transport::kTcp6, "::1", 9001));
  EXPECT_EQ(s.members[2].address, unixPath(Transport::kCunix, "/run/rtpproxy.sock"));
  EXPECT_EQ(s.members[3].weight, 0u);
  // udp and tcp on the same port are different sockets.
  EXPECT_EQ(config.clusters[1].control, ip(Transport::kTcp, "127.0.0.1", 22222));
  EXPECT_EQ(config.clusters[2].control, ip(Transport::kUdp, "127.0.0.1", 22222));
  ASSERT_TRUE(config.clusters[3].disconnect_notify.has_value());
  EXPECT_EQ(config.clusters[3].disconnect_notify->inbound_address, ip(Transport::kTcp6, "::1", 12131));
  EXPECT_EQ(config.clusters[3].members[0].capacity, 1000000u);
}

TEST(ConfigLoaderTest, AnyElementOrderWhitespaceCdataCommentsAndDeclarations) {
  const Config config = loadOk(
      "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
      "<!DOCTYPE rtp_cluster_config SYSTEM \"Rtp_cluster_config.dtd\">\r\n"
      "<!-- leading comment -->\r\n"
      "<rtp_cluster_config>\r\n"
      "  <rtp_cluster>\r\n"
      "    <rtpproxy>\r\n"
      "      <status>\r\n  SUSPENDED \r\n</status><capacity> 7 </capacity><weight>+3</weight>\r\n"
      "      <address>\t127.0.0.1:5 </address><protocol> udp </protocol><name><![CDATA[R&1]]></name>\r\n"
      "    </rtpproxy>\r\n"
      "    <address>  127.0.0.1:6  </address><protocol>udp</protocol>\r\n"
      "    <name>\r\n      c&amp;1\r\n    </name>\r\n"
      "  </rtp_cluster>\r\n"
      "</rtp_cluster_config>\r\n");
  ASSERT_EQ(config.clusters.size(), 1u);
  const ClusterConfig& c = config.clusters[0];
  EXPECT_EQ(c.name, "c&1");
  EXPECT_EQ(c.control, ip(Transport::kUdp, "127.0.0.1", 6));
  ASSERT_EQ(c.members.size(), 1u);
  EXPECT_EQ(c.members[0].name, "R&1");
  EXPECT_EQ(c.members[0].address, ip(Transport::kUdp, "127.0.0.1", 5));
  EXPECT_EQ(c.members[0].weight, 3u);
  EXPECT_EQ(c.members[0].capacity, 7u);
  EXPECT_EQ(c.members[0].status, AdminStatus::kSuspended);
}

// Loads doc()'s member with the given wan/lan/cmd_out elements and checks
// the three values.
void expectHostFields(std::string_view elements, const std::string& wan, const std::string& lan,
                      const std::string& cmd_out) {
  const MemberConfig m = loadMember("<weight>1</weight><capacity>1</capacity>" + std::string(elements));
  EXPECT_EQ(m.name, "R1");
  EXPECT_EQ(m.wan_address, wan);
  EXPECT_EQ(m.lan_address, lan);
  EXPECT_EQ(m.cmd_out_address, cmd_out);
}

TEST(ConfigLoaderTest, EmptyOptionalAddressesStayUnset) {
  expectHostFields("<wan_address></wan_address><lan_address/>\n<cmd_out_address> </cmd_out_address>", "", "", "");
}

TEST(ConfigLoaderTest, AcceptsIpv6AndHostNameMemberAddresses) {
  expectHostFields(
      "<wan_address>2001:db8::5:1</wan_address>\n"
      "<lan_address>fd00::1</lan_address><cmd_out_address>relay-out.example.com</cmd_out_address>",
      "2001:db8::5:1", "fd00::1", "relay-out.example.com");
}

TEST(ConfigLoaderTest, NoClustersIsAValidEmptyConfig) {
  const Config config = loadOk("<rtp_cluster_config>\n</rtp_cluster_config>\n");
  EXPECT_TRUE(config.clusters.empty());
  EXPECT_EQ(config.memberCount(), 0u);
}

TEST(ConfigLoaderTest, EqualityComparesEveryMemberField) {
  const Config a = loadOk(kReferenceExample);
  Config b = loadOk(kReferenceExample);
  EXPECT_EQ(a, b);
  b.clusters[0].members[0].weight = 99;
  EXPECT_NE(a, b);
  b = a;
  b.clusters[0].members[0].cmd_out_address.clear();
  EXPECT_NE(a.clusters[0].members[0], b.clusters[0].members[0]);
  b = a;
  b.clusters[0].members[0].address.port = 4445;
  EXPECT_NE(a.clusters[0], b.clusters[0]);
  b = a;
  b.clusters[0].tuning.command_retries = 1;
  EXPECT_NE(a.clusters[0], b.clusters[0]);
  b = a;
  b.clusters[0].disconnect_notify.reset();
  EXPECT_NE(a.clusters[0], b.clusters[0]);
  ASSERT_NE(a.findCluster("Supercluster#1"), nullptr);
  EXPECT_EQ(a.findCluster("nope"), nullptr);
  ASSERT_NE(a.clusters[0].findMember("RTPPROXY1"), nullptr);
  EXPECT_EQ(a.clusters[0].findMember("RTPPROXY2"), nullptr);
}

TEST(ConfigLoaderTest, AdminStatusAndCapacityLimitNames) {
  EXPECT_EQ(adminStatusName(AdminStatus::kActive), "ACTIVE");
  EXPECT_EQ(adminStatusName(AdminStatus::kSuspended), "SUSPENDED");
  EXPECT_EQ(adminStatusName(AdminStatus::kDraining), "DRAINING");
  EXPECT_EQ(parseAdminStatus("sUsPeNdEd"), AdminStatus::kSuspended);
  EXPECT_EQ(parseAdminStatus("DRAINING"), std::nullopt);
  EXPECT_EQ(capacityLimitName(CapacityLimit::kSoft), "soft");
  EXPECT_EQ(capacityLimitName(CapacityLimit::kHard), "hard");
}

// ---------------------------------------------------------------------------
// Invalid files: the whole error line.

struct InvalidCase {
  const char* what;
  std::string xml;
  std::string error;
};

// The error line about doc()'s member, or its cluster, at `line`.
std::string memberError(int line, std::string_view what) {
  return "rtp_cluster.xml:" + std::to_string(line) + ": rtpproxy \"R1\" in cluster \"c1\": " + std::string(what);
}
std::string clusterError(int line, std::string_view what) {
  return "rtp_cluster.xml:" + std::to_string(line) + ": cluster \"c1\": " + std::string(what);
}

void expectErrors(const std::vector<InvalidCase>& cases) {
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.what);
    const LoadResult r = load(c.xml);
    EXPECT_FALSE(r.ok());
    EXPECT_FALSE(r.config.has_value());
    EXPECT_EQ(r.error, c.error);
    EXPECT_EQ(r.error.find('\n'), std::string::npos);
  }
}

TEST(ConfigLoaderErrorTest, TheValidBaseDocumentLoads) {
  // Guards the tables below: each fails for its own edit only.
  EXPECT_TRUE(load(doc("")).ok()) << load(doc("")).error;
}

TEST(ConfigLoaderErrorTest, MemberNumbers) {
  const std::string capacity = "<capacity>10</capacity>";
  const std::string weight = "<weight>1</weight>";
  const std::vector<InvalidCase> cases = {
      {"weight abc", member5("<weight>abc</weight>" + capacity), memberError(5, "<weight> must be an integer >= 0, got \"abc\"")},
      {"weight negative", member5("<weight>-1</weight>" + capacity), memberError(5, "<weight> must be an integer >= 0, got \"-1\"")},
      {"weight fraction", member5("<weight>1.5</weight>" + capacity), memberError(5, "<weight> must be an integer >= 0, got \"1.5\"")},
      {"weight empty", member5("<weight></weight>" + capacity), memberError(5, "<weight> must be an integer >= 0, got \"\"")},
      {"weight inner space", member5("<weight>1 0</weight>" + capacity), memberError(5, "<weight> must be an integer >= 0, got \"1 0\"")},
      {"weight too big", member5("<weight>4294967296</weight>" + capacity), memberError(5, "<weight> must be at most 4294967295, got \"4294967296\"")},
      {"weight overflow", member5("<weight>99999999999999999999999</weight>" + capacity), memberError(5, "<weight> must be at most 4294967295, got \"99999999999999999999999\"")},
      {"capacity zero", member5(weight + "<capacity>0</capacity>"), memberError(5, "<capacity> must be an integer >= 1, got \"0\"")},
      {"capacity text", member5(weight + "<capacity>lots</capacity>"), memberError(5, "<capacity> must be an integer >= 1, got \"lots\"")},
      {"capacity too big", member5(weight + "<capacity>4294967296</capacity>"), memberError(5, "<capacity> must be at most 4294967295, got \"4294967296\"")},
      {"status bogus", member5(weight + capacity + "<status>BOGUS</status>"), memberError(5, "<status> must be ACTIVE or SUSPENDED, got \"BOGUS\"")},
      {"status draining", member5(weight + capacity + "<status>draining</status>"), memberError(5, "<status> must be ACTIVE or SUSPENDED, got \"draining\"")},
      {"missing weight", member5(capacity), memberError(4, "missing <weight>")},
      {"missing capacity", member5(weight), memberError(4, "missing <capacity>")},
      {"duplicate weight", member5(weight + capacity + "<weight>2</weight>"), memberError(5, "duplicate <weight> (first at line 5)")},
      {"unknown element", member5(weight + capacity + "<weigth>1</weigth>"), memberError(5, "unknown element <weigth> in <rtpproxy>")},
      {"attribute on leaf", member5("<weight unit=\"x\">1</weight>" + capacity), memberError(5, "unexpected attribute \"unit\" on <weight>")},
      {"element in leaf", member5("<weight><b>1</b></weight>" + capacity), memberError(5, "<weight> must not contain elements, got <b>")},
      {"stray text", member5("hello" + weight + capacity), memberError(5, "unexpected text \"hello\" in <rtpproxy>")},
      {"wan not an address", member5(weight + capacity + "<wan_address>not an ip!</wan_address>"), memberError(5, "<wan_address> must be an IP address or host name, got \"not an ip!\"")},
      {"lan with port", member5(weight + capacity + "<lan_address>10.0.0.1:5</lan_address>"), memberError(5, "<lan_address> must be an IP address or host name, got \"10.0.0.1:5\"")},
      {"cmd_out bracketed", member5(weight + capacity + "<cmd_out_address>[::1]</cmd_out_address>"), memberError(5, "<cmd_out_address> must be an IP address or host name, got \"[::1]\"")},
  };
  expectErrors(cases);
}

TEST(ConfigLoaderErrorTest, MemberIdentity) {
  const std::vector<InvalidCase> cases = {
      {"unknown protocol", member4("<name>R1</name><protocol>sctp</protocol><address>127.0.0.1:1</address>"), memberError(4, "<protocol> must be one of udp, udp6, unix, cunix, tcp, tcp6, got \"sctp\"")},
      {"bad port", member4("<name>R1</name><protocol>udp</protocol><address>127.0.0.1:99999</address>"), memberError(4, "<address>: port must be 1..65535, got \"99999\"")},
      {"bad host", member4("<name>R1</name><protocol>udp</protocol><address>300.0.0.1:5</address>"), memberError(4, "<address>: invalid IPv4 address \"300.0.0.1\"")},
      {"empty address", member4("<name>R1</name><protocol>udp</protocol><address> </address>"), memberError(4, "<address> must not be empty")},
      {"ipv4 on udp6", member4("<name>R1</name><protocol>udp6</protocol><address>127.0.0.1:5</address>"), memberError(4, "<address>: IPv4 address needs protocol udp")},
      {"ipv6 on udp", member4("<name>R1</name><protocol>udp</protocol><address>[::1]:5</address>"), memberError(4, "<address>: IPv6 address needs protocol udp6")},
      {"unix path too long", member4("<name>R1</name><protocol>unix</protocol><address>/" + std::string(119, 'p') + "</address>"), memberError(4, "<address>: unix socket path is 120 bytes, at most 107 fit")},
      {"empty name", member4("<name> </name><protocol>udp</protocol><address>127.0.0.1:1</address>"), "rtp_cluster.xml:4: rtpproxy #1 in cluster \"c1\": <name> must not be empty"},
      {"name too long", member4("<name>" + std::string(256, 'n') + "</name><protocol>udp</protocol><address>127.0.0.1:1</address>"), "rtp_cluster.xml:4: rtpproxy \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\"... in cluster \"c1\": <name> is 256 bytes, at most 255 allowed"},
      {"name not utf-8", member4("<name>caf\xe9</name><protocol>udp</protocol><address>127.0.0.1:1</address>"), "rtp_cluster.xml:4: rtpproxy \"caf\xe9\" in cluster \"c1\": <name> must be UTF-8 text, got \"caf\xe9\""},
      {"missing name", member4("<protocol>udp</protocol><address>127.0.0.1:1</address>"), "rtp_cluster.xml:4: rtpproxy #1 in cluster \"c1\": missing <name>"},
      {"missing protocol", member4("<name>R1</name><address>127.0.0.1:1</address>"), memberError(4, "missing <protocol>")},
      {"missing address", member4("<name>R1</name><protocol>udp</protocol>"), memberError(4, "missing <address>")},
      {"duplicate name element", member4("<name>R1</name><name>R2</name><protocol>udp</protocol><address>127.0.0.1:1</address>"), memberError(4, "duplicate <name> (first at line 4)")},
      {"control character in name", member4("<name>R&#10;1</name><protocol>udp</protocol><address>127.0.0.1:1</address>"), "rtp_cluster.xml:4: rtpproxy \"R\\x0a1\" in cluster \"c1\": <name> must not contain control characters, got \"R\\x0a1\""},
  };
  expectErrors(cases);
}

TEST(ConfigLoaderErrorTest, ClusterElements) {
  const std::vector<InvalidCase> cases = {
      {"capacity_limit type", doc("<capacity_limit type=\"medium\"/>"), clusterError(3, "<capacity_limit> type must be \"soft\" or \"hard\", got \"medium\"")},
      {"capacity_limit no type", doc("<capacity_limit/>"), clusterError(3, "<capacity_limit> needs type=\"soft\" or type=\"hard\"")},
      {"capacity_limit attribute", doc("<capacity_limit type=\"soft\" size=\"1\"/>"), clusterError(3, "unexpected attribute \"size\" on <capacity_limit>")},
      {"capacity_limit text", doc("<capacity_limit type=\"soft\">hard</capacity_limit>"), clusterError(3, "unexpected text \"hard\" in <capacity_limit>")},
      {"unknown element", doc("<bogus/>"), clusterError(3, "unknown element <bogus> in <rtp_cluster>")},
      {"duplicate name", doc("<name>c2</name>"), clusterError(3, "duplicate <name> (first at line 2)")},
      {"duplicate capacity_limit", doc("<capacity_limit type=\"soft\"/><capacity_limit type=\"hard\"/>"), clusterError(3, "duplicate <capacity_limit> (first at line 3)")},
      {"attribute on cluster", "<rtp_cluster_config>\n<rtp_cluster id=\"1\"><name>c1</name></rtp_cluster></rtp_cluster_config>", clusterError(2, "unexpected attribute \"id\" on <rtp_cluster>")},
      {"inbound without port", doc("<disconnect_notify><inbound_address>127.0.0.1</inbound_address><dest_socket_prefix>/tmp/b2b</dest_socket_prefix></disconnect_notify>"), clusterError(3, "<inbound_address>: a port is required")},
      {"inbound bad", doc("<disconnect_notify><inbound_address>127.0.0.1:x</inbound_address><dest_socket_prefix>/tmp/b2b</dest_socket_prefix></disconnect_notify>"), clusterError(3, "<inbound_address>: port must be 1..65535, got \"x\"")},
      {"missing prefix", doc("<disconnect_notify><inbound_address>127.0.0.1:5</inbound_address></disconnect_notify>"), clusterError(3, "missing <dest_socket_prefix> in <disconnect_notify>")},
      {"missing inbound", doc("<disconnect_notify><dest_socket_prefix>/tmp/b2b</dest_socket_prefix></disconnect_notify>"), clusterError(3, "missing <inbound_address> in <disconnect_notify>")},
      {"empty prefix", doc("<disconnect_notify><inbound_address>127.0.0.1:5</inbound_address><dest_socket_prefix/></disconnect_notify>"), clusterError(3, "<dest_socket_prefix> must not be empty")},
      {"prefix too long", doc("<disconnect_notify><inbound_address>127.0.0.1:5</inbound_address><dest_socket_prefix>/" + std::string(106, 'p') + "</dest_socket_prefix></disconnect_notify>"), clusterError(3, "<dest_socket_prefix> is 107 bytes, at most 106 allowed")},
      {"unknown in disconnect_notify", doc("<disconnect_notify><port>5</port></disconnect_notify>"), clusterError(3, "unknown element <port> in <disconnect_notify>")},
      {"tuning not a number", doc("<tuning><heartbeat_interval>abc</heartbeat_interval></tuning>"), clusterError(3, "<heartbeat_interval> in <tuning> must be an integer >= 100, got \"abc\"")},
      {"tuning too small", doc("<tuning><session_table_size>100</session_table_size></tuning>"), clusterError(3, "<session_table_size> in <tuning> must be an integer >= 1024, got \"100\"")},
      {"tuning too big", doc("<tuning><command_retries>11</command_retries></tuning>"), clusterError(3, "<command_retries> in <tuning> must be at most 10, got \"11\"")},
      {"tuning beyond 64 bits", doc("<tuning><heartbeat_interval>18446744073709551619</heartbeat_interval></tuning>"), clusterError(3, "<heartbeat_interval> in <tuning> must be at most 60000, got \"18446744073709551619\"")},
      {"tuning zero failures", doc("<tuning><heartbeat_failures>0</heartbeat_failures></tuning>"), clusterError(3, "<heartbeat_failures> in <tuning> must be an integer >= 1, got \"0\"")},
      {"tuning timeout vs interval", doc("<tuning><command_timeout>1000</command_timeout></tuning>"), clusterError(3, "<tuning>: <command_timeout> (1000 ms) must be less than <heartbeat_interval> (1000 ms)")},
      {"tuning unknown", doc("<tuning><retries>1</retries></tuning>"), clusterError(3, "unknown element <retries> in <tuning>")},
      {"tuning duplicate", doc("<tuning><command_retries>1</command_retries><command_retries>2</command_retries></tuning>"), clusterError(3, "duplicate <command_retries> (first at line 3)")},
  };
  expectErrors(cases);
}

TEST(ConfigLoaderErrorTest, ClusterIdentityAndDocument) {
  const std::string member =
      "<rtpproxy><name>R1</name><protocol>udp</protocol><address>127.0.0.1:1</address>"
      "<weight>1</weight><capacity>1</capacity></rtpproxy>";
  const std::vector<InvalidCase> cases = {
      {"malformed", "<rtp_cluster_config>\n<rtp_cluster>\n</rtp_cluster_config>\n", "rtp_cluster.xml:3: malformed XML: Start-end tags mismatch"},
      {"unclosed", "<rtp_cluster_config>\n<rtp_cluster>\n", "rtp_cluster.xml:2: malformed XML: Start-end tags mismatch"},
      {"bad attribute syntax", "<rtp_cluster_config>\n\n<capacity_limit type=hard/>", "rtp_cluster.xml:3: malformed XML: Error parsing element attribute"},
      {"empty file", "", "rtp_cluster.xml:1: malformed XML: No document element found"},
      {"only whitespace", "\n\n  \n", "rtp_cluster.xml:4: malformed XML: No document element found"},
      {"wrong root", "<?xml version=\"1.0\"?>\n<config/>\n", "rtp_cluster.xml:2: root element must be <rtp_cluster_config>, got <config>"},
      {"two roots", "<rtp_cluster_config/>\n<rtp_cluster_config/>\n", "rtp_cluster.xml:2: more than one root element: <rtp_cluster_config>"},
      {"root attribute", "<rtp_cluster_config version=\"2\"/>", "rtp_cluster.xml:1: unexpected attribute \"version\" on <rtp_cluster_config>"},
      {"unknown top-level", "<rtp_cluster_config>\n<cluster/>\n</rtp_cluster_config>", "rtp_cluster.xml:2: unknown element <cluster> in <rtp_cluster_config>"},
      {"top-level text", "<rtp_cluster_config>\nhello\n</rtp_cluster_config>", "rtp_cluster.xml:2: unexpected text \"hello\" in <rtp_cluster_config>"},
      {"no rtpproxy", "<rtp_cluster_config>\n<rtp_cluster><name>c1</name><protocol>udp</protocol><address>127.0.0.1</address></rtp_cluster>\n</rtp_cluster_config>", clusterError(2, "needs at least one <rtpproxy>")},
      {"cluster protocol", "<rtp_cluster_config>\n<rtp_cluster><name>c1</name>\n<protocol>http</protocol><address>127.0.0.1</address>" + member + "</rtp_cluster>\n</rtp_cluster_config>", clusterError(3, "<protocol> must be one of udp, udp6, unix, cunix, tcp, tcp6, got \"http\"")},
      {"cluster missing name", "<rtp_cluster_config>\n<rtp_cluster><protocol>udp</protocol><address>127.0.0.1</address>" + member + "</rtp_cluster>\n</rtp_cluster_config>", "rtp_cluster.xml:2: cluster #1: missing <name>"},
      {"cluster empty name", "<rtp_cluster_config>\n<rtp_cluster><name/><protocol>udp</protocol><address>127.0.0.1</address>" + member + "</rtp_cluster>\n</rtp_cluster_config>", "rtp_cluster.xml:2: cluster #1: <name> must not be empty"},
      {"cluster missing address", "<rtp_cluster_config>\n<rtp_cluster><name>c1</name><protocol>udp</protocol>" + member + "</rtp_cluster>\n</rtp_cluster_config>", clusterError(2, "missing <address>")},
      {"cluster unix path too long", "<rtp_cluster_config>\n<rtp_cluster><name>c1</name><protocol>unix</protocol>\n<address>/" + std::string(107, 's') + "</address>" + member + "</rtp_cluster>\n</rtp_cluster_config>", clusterError(3, "<address>: unix socket path is 108 bytes, at most 107 fit")},
      {"duplicate cluster name",
       "<rtp_cluster_config>\n"
       "<rtp_cluster><name>c1</name><protocol>udp</protocol><address>127.0.0.1:3</address>" + member + "</rtp_cluster>\n"
       "<rtp_cluster>\n<name>c1</name><protocol>udp</protocol><address>127.0.0.1:2</address>" + member + "</rtp_cluster>\n"
       "</rtp_cluster_config>",
       "rtp_cluster.xml:4: duplicate cluster name \"c1\" (first at line 2)"},
      {"duplicate member name",
       "<rtp_cluster_config>\n<rtp_cluster><name>c1</name><protocol>udp</protocol><address>127.0.0.1:1</address>\n" + member +
           "\n" + member + "</rtp_cluster>\n</rtp_cluster_config>",
       clusterError(4, "duplicate rtpproxy name \"R1\" (first at line 3)")},
      {"duplicate control address",
       "<rtp_cluster_config>\n"
       "<rtp_cluster><name>c1</name><protocol>udp</protocol><address>127.0.0.1</address>" + member + "</rtp_cluster>\n"
       "<rtp_cluster><name>c2</name><protocol>UDP</protocol>\n<address>127.0.0.1:22222</address>" + member + "</rtp_cluster>\n"
       "</rtp_cluster_config>",
       "rtp_cluster.xml:4: cluster \"c2\": control address udp:127.0.0.1:22222 is already used by cluster \"c1\""},
      {"duplicate unix control path across unix and cunix",
       "<rtp_cluster_config>\n"
       "<rtp_cluster><name>c1</name><protocol>unix</protocol><address>/tmp/x.sock</address>" + member + "</rtp_cluster>\n"
       "<rtp_cluster><name>c2</name><protocol>cunix</protocol><address>/tmp/x.sock</address>" + member + "</rtp_cluster>\n"
       "</rtp_cluster_config>",
       "rtp_cluster.xml:3: cluster \"c2\": control address cunix:/tmp/x.sock is already used by cluster \"c1\""},
  };
  expectErrors(cases);
}

TEST(ConfigLoaderErrorTest, LineNumbersCountCrLfLinesOnce) {
  const LoadResult r = load(
      "<rtp_cluster_config>\r\n<rtp_cluster><name>c1</name><protocol>udp</protocol><address>127.0.0.1</address>\r\n"
      "<rtpproxy><name>R1</name><protocol>udp</protocol><address>127.0.0.1:1</address>\r\n"
      "<weight>abc</weight><capacity>1</capacity></rtpproxy></rtp_cluster></rtp_cluster_config>\r\n");
  EXPECT_EQ(r.error, memberError(4, "<weight> must be an integer >= 0, got \"abc\""));
}

TEST(ConfigLoaderErrorTest, SecondClusterAndMemberArePlacedByPosition) {
  const LoadResult r = load(
      "<rtp_cluster_config>\n"
      "<rtp_cluster><name>c1</name><protocol>udp</protocol><address>127.0.0.1:1</address>\n"
      "<rtpproxy><name>a</name><protocol>udp</protocol><address>127.0.0.1:1</address><weight>1</weight><capacity>1</capacity></rtpproxy>\n"
      "<rtpproxy><protocol>udp</protocol><address>127.0.0.1:1</address><weight>1</weight><capacity>1</capacity></rtpproxy>\n"
      "</rtp_cluster>\n</rtp_cluster_config>");
  EXPECT_EQ(r.error, "rtp_cluster.xml:4: rtpproxy #2 in cluster \"c1\": missing <name>");
}

TEST(ConfigLoaderErrorTest, LongHostileValuesAreCutAndEscaped) {
  const LoadResult r = load(member5("<weight>" + std::string(100, '9') + "x</weight><capacity>1</capacity>"));
  EXPECT_EQ(r.error, memberError(5, "<weight> must be an integer >= 0, got \"" + std::string(64, '9') + "\"..."));
}

TEST(ConfigLoaderErrorTest, TooManyMembers) {
  std::string xml = "<rtp_cluster_config>\n<rtp_cluster><name>big</name><protocol>udp</protocol><address>127.0.0.1</address>\n";
  for (size_t i = 0; i <= kMaxMembersPerCluster; ++i) {
    xml += "<rtpproxy><name>m" + std::to_string(i) +
           "</name><protocol>udp</protocol><address>127.0.0.1:1</address><weight>1</weight><capacity>1</capacity></rtpproxy>\n";
  }
  xml += "</rtp_cluster>\n</rtp_cluster_config>\n";
  EXPECT_EQ(load(xml).error, "rtp_cluster.xml:259: cluster \"big\": at most 256 <rtpproxy> allowed");
  // One fewer is fine.
  const size_t cut = xml.rfind("<rtpproxy>");
  xml.erase(cut, xml.find('\n', cut) + 1 - cut);
  const LoadResult ok = load(xml);
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.config->memberCount(), kMaxMembersPerCluster);
}

TEST(ConfigLoaderFileTest, MissingFileAndDirectoryAreReportedWithThePath) {
  EXPECT_EQ(loadConfigFile("/nonexistent/rtp_cluster.xml").error,
            "/nonexistent/rtp_cluster.xml: cannot open: No such file or directory");
  EXPECT_EQ(loadConfigFile(".").error, ".: not a regular file");
}

TEST(ConfigLoaderFileTest, FileErrorsNameThePathAsGiven) {
  char dir_template[] = "/tmp/rtpc_config_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string path = std::string(dir_template) + "/bad.xml";
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs(member5("<weight>abc</weight><capacity>1</capacity>").c_str(), f);
  fclose(f);
  EXPECT_EQ(loadConfigFile(path).error,
            path + ":5: rtpproxy \"R1\" in cluster \"c1\": <weight> must be an integer >= 0, got \"abc\"");
  unlink(path.c_str());
  rmdir(dir_template);
}

TEST(ConfigLoaderTest, MetricsEndpointIsOffByDefaultAndLoadsTcpAddresses) {
  EXPECT_FALSE(loadOk("<rtp_cluster_config/>").metrics_address.has_value());
  EXPECT_FALSE(loadOk(doc("")).metrics_address.has_value());
  const Config v4 = loadOk(
      "<rtp_cluster_config>\n<metrics>\n  <address> 127.0.0.1:9464 </address>\n</metrics>\n</rtp_cluster_config>\n");
  ASSERT_TRUE(v4.metrics_address.has_value());
  EXPECT_EQ(*v4.metrics_address, ip(Transport::kTcp, "127.0.0.1", 9464));
  const Config v6 = loadOk("<rtp_cluster_config><metrics><address>[::1]:9464</address></metrics></rtp_cluster_config>");
  ASSERT_TRUE(v6.metrics_address.has_value());
  EXPECT_EQ(*v6.metrics_address, ip(Transport::kTcp6, "::1", 9464));
  // Before, after or between clusters: the clusters load unchanged.
  std::string with = doc("");
  with.insert(with.find("<rtp_cluster>"), "<metrics><address>localhost:9000</address></metrics>\n");
  const Config both = loadOk(with);
  ASSERT_TRUE(both.metrics_address.has_value());
  EXPECT_EQ(both.metrics_address->host, "localhost");
  Config without = loadOk(doc(""));
  EXPECT_EQ(both.clusters, without.clusters);
  without.metrics_address = both.metrics_address;
  EXPECT_EQ(both, without);
}

TEST(ConfigLoaderErrorTest, Metrics) {
  const auto top = [](std::string_view inner) {
    return "<rtp_cluster_config>\n<metrics>\n" + std::string(inner) + "</metrics>\n</rtp_cluster_config>\n";
  };
  const std::vector<InvalidCase> cases = {
      {"no address", top(""), "rtp_cluster.xml:2: <metrics>: missing <address>"},
      {"no port", top("<address>127.0.0.1</address>"), "rtp_cluster.xml:3: <metrics>: <address>: a port is required"},
      {"bad port", top("<address>127.0.0.1:99999</address>"), "rtp_cluster.xml:3: <metrics>: <address>: port must be 1..65535, got \"99999\""},
      {"empty", top("<address/>"), "rtp_cluster.xml:3: <metrics>: <address> must not be empty"},
      {"unknown child", top("<port>1</port>"), "rtp_cluster.xml:3: <metrics>: unknown element <port> in <metrics>"},
      {"attribute", "<rtp_cluster_config>\n<metrics on=\"1\"><address>127.0.0.1:1</address></metrics>\n</rtp_cluster_config>", "rtp_cluster.xml:2: <metrics>: unexpected attribute \"on\" on <metrics>"},
      {"duplicate",
       "<rtp_cluster_config>\n<metrics><address>127.0.0.1:1</address></metrics>\n"
       "<metrics><address>127.0.0.1:2</address></metrics>\n</rtp_cluster_config>",
       "rtp_cluster.xml:3: duplicate <metrics> (first at line 2)"},
  };
  expectErrors(cases);
}

}  // namespace
}  // namespace rtpc
